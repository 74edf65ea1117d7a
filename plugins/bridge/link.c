/*
 * One bridge's connection to its remote broker, on the internal session's
 * home worker loop: resolve (blocking pool unless the host is numeric),
 * non-blocking connect, optional TLS, CONNECT/CONNACK, subscriptions, then
 * traffic; keepalive; on any failure the connection is dropped and started
 * again after an exponential backoff with decorrelated jitter, moving to the
 * next address. [home worker] for every function here.
 */
#include "bridge.h"
#include "tls.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <fcntl.h>

#define READ_CHUNK 65536
#define CONNECT_TIMEOUT 10.0

/* A getaddrinfo job on the blocking pool. Owned by the job: freed in its done callback. */
struct bridge_resolve {
    struct bridge *b;        /* NULL once the bridge gave up on it (home worker) */
    int probe;               /* for a probe of the main address, not the connection */
    char *host;
    char port[8];
    struct addrinfo *res;
    int err;
};

int
bbuf_reserve(struct bbuf *bb, size_t n)
{
    if (bb->off > 0 && (bb->off == bb->len || bb->cap - bb->len < n)) {
        memmove(bb->data, bb->data + bb->off, bb->len - bb->off);
        bb->len -= bb->off;
        bb->off = 0;
    }
    if (bb->cap - bb->len < n) {
        size_t cap = bb->cap ? bb->cap : 4096;
        uint8_t *d;
        while (cap - bb->len < n) {
            cap *= 2;
        }
        d = realloc(bb->data, cap);
        if (d == NULL) {
            return -1;
        }
        bb->data = d;
        bb->cap = cap;
    }
    return 0;
}

void
bbuf_free(struct bbuf *bb)
{
    free(bb->data);
    memset(bb, 0, sizeof(*bb));
}

static void io_cb(void *arg, int fd, int revents);
static void schedule_restart(struct bridge *b);
static void probe_connect(struct bridge *b, const struct addrinfo *ai);
static void probe_stop(struct bridge *b);
static int make_socket(struct bridge *b, const struct addrinfo *ai);
static void resolve_work(void *arg);
static void resolve_done(void *arg);

void
link_want(struct bridge *b, int events)
{
    if (b->watch != NULL && events != b->watch_events) {
        bridge_api(b)->fd_watch_set(bridge_self(b), b->watch, events);
        b->watch_events = events;
    }
}

static void
stop_timer(struct bridge *b, midge_timer **t)
{
    if (*t != NULL) {
        bridge_api(b)->timer_stop(bridge_self(b), *t);
        *t = NULL;
    }
}

/* Closes the socket and forgets the connection's state; the held messages stay. */
static void
close_socket(struct bridge *b)
{
    probe_stop(b);
    if (b->resolving != NULL) {
        b->resolving->b = NULL;
        b->resolving = NULL;
    }
    if (b->watch != NULL) {
        bridge_api(b)->fd_unwatch(bridge_self(b), b->watch);
        b->watch = NULL;
    }
    tls_free(b);
    if (b->fd >= 0) {
        close(b->fd);
        b->fd = -1;
    }
    stop_timer(b, &b->timer);
    stop_timer(b, &b->ka_timer);
    stop_timer(b, &b->idle_timer);
    b->in.len = b->in.off = 0;
    b->out.len = b->out.off = 0;
    b->ping_out = 0;
    b->acks_pending = 0;
}

int
link_send(struct bridge *b, const struct mqtt_packet *p)
{
    size_t n = mqtt_encode(p, b->version, NULL, 0);

    if (n == 0 || b->fd < 0) {
        return -1;
    }
    if (bbuf_reserve(&b->out, n) != 0) {
        return -1;
    }
    mqtt_encode(p, b->version, b->out.data + b->out.len, n);
    b->out.len += n;
    link_want(b, b->watch_events | MIDGE_FD_WRITE);
    return 0;
}

/* Writes what is buffered. Returns -1 when the connection failed (already dropped). */
static int
flush_out(struct bridge *b)
{
    while (b->out.off < b->out.len) {
        ssize_t n = tls_on(b) ? tls_write(b, b->out.data + b->out.off, b->out.len - b->out.off)
                              : send(b->fd, b->out.data + b->out.off, b->out.len - b->out.off,
                                     MSG_NOSIGNAL);
        if (n > 0) {
            b->out.off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            link_want(b, MIDGE_FD_READ | MIDGE_FD_WRITE);
            return 0;
        }
        link_drop(b, n == 0 ? "connection closed" : strerror(errno));
        return -1;
    }
    b->out.off = b->out.len = 0;
    link_want(b, MIDGE_FD_READ);
    return 0;
}

void
link_flush(struct bridge *b)
{
    if (b->fd >= 0 && b->state >= LINK_CONNACK && b->state <= LINK_UP) {
        flush_out(b);
    }
}

static void
keepalive_cb(void *arg, midge_timer *t)
{
    struct bridge *b = arg;
    struct mqtt_packet p;

    (void)t;
    if (b->ping_out) {
        link_drop(b, "keepalive timeout: no answer to PINGREQ");
        return;
    }
    memset(&p, 0, sizeof(p));
    p.type = MQTT_PINGREQ;
    b->ping_out = 1;
    link_send(b, &p);
}

static void
connect_timeout_cb(void *arg, midge_timer *t)
{
    struct bridge *b = arg;

    (void)t;
    link_drop(b, "connect timeout");
}

static void
send_connect(struct bridge *b)
{
    const struct bridge_conf *c = b->conf;
    struct mqtt_packet p;
    struct mqtt_connect *cn = &p.u.connect;
    static const char down[] = "0";
    struct origin me = {b->ctx->loop.node, 0};
    uint8_t uprops[64];
    size_t ulen;
    size_t vl;
    size_t n;
    size_t at;

    memset(&p, 0, sizeof(p));
    p.type = MQTT_CONNECT;
    b->version = c->version;
    cn->clean_start = (uint8_t)c->cleansession;
    cn->keep_alive = (uint16_t)c->keepalive;
    cn->client_id.ptr = (const uint8_t *)c->remote_clientid;
    cn->client_id.len = (uint32_t)strlen(c->remote_clientid);
    if (c->remote_username != NULL) {
        cn->has_username = 1;
        cn->username.ptr = (const uint8_t *)c->remote_username;
        cn->username.len = (uint32_t)strlen(c->remote_username);
    }
    if (c->remote_password != NULL) {
        cn->has_password = 1;
        cn->password.ptr = (const uint8_t *)c->remote_password;
        cn->password.len = (uint32_t)strlen(c->remote_password);
    }
    if (c->notifications && !c->notifications_local_only) {
        /* The remote publishes "0" on the notification topic if we vanish. */
        cn->will_flag = 1;
        cn->will_qos = 1;
        cn->will_retain = 1;
        cn->will_topic.ptr = (const uint8_t *)c->notification_topic;
        cn->will_topic.len = (uint32_t)strlen(c->notification_topic);
        cn->will_payload.ptr = (const uint8_t *)down;
        cn->will_payload.len = 1;
    }
    if (b->version == MQTT_V5) {
        /* cleansession false keeps the remote session (and its queue for `in` topics). */
        cn->props.present = MQTT_PBIT(MQTT_PROP_SESSION_EXPIRY);
        cn->props.session_expiry = c->cleansession ? 0 : 0xFFFFFFFFu;
        /* A midge remote then gives what we subscribe to a midge-origin (loop.h). */
        ulen = 0;
        uprops[ulen++] = MQTT_PROP_USER_PROPERTY;
        uprops[ulen++] = 0;
        uprops[ulen++] = (uint8_t)(sizeof(LOOP_BRIDGE_PROP) - 1);
        memcpy(uprops + ulen, LOOP_BRIDGE_PROP, sizeof(LOOP_BRIDGE_PROP) - 1);
        ulen += sizeof(LOOP_BRIDGE_PROP) - 1;
        vl = loop_format(&me, (char *)uprops + ulen + 2);
        uprops[ulen++] = 0;
        uprops[ulen++] = (uint8_t)vl;
        ulen += vl;
        cn->props.user_props.ptr = uprops;
        cn->props.user_props.len = (uint32_t)ulen;
    }
    n = mqtt_encode(&p, b->version, NULL, 0);
    if (n == 0 || bbuf_reserve(&b->out, n) != 0) {
        link_drop(b, "cannot encode CONNECT");
        return;
    }
    at = b->out.len;
    mqtt_encode(&p, b->version, b->out.data + at, n);
    b->out.len += n;
    if (c->try_private && !b->private_refused && b->version != MQTT_V5) {
        /*
         * The bridge bit (0x80) on the protocol level, as mosquitto's
         * try_private: a broker that knows it treats us as a bridge (no echo
         * of our own messages, retained flags kept). The codec writes the
         * level from `version`, so it is set here, after the fixed header
         * and the protocol name.
         */
        size_t hdr = 2;
        while (b->out.data[at + hdr - 1] & 0x80) {
            hdr++;
        }
        b->out.data[at + hdr + 2 + (b->version == MQTT_V31 ? 6 : 4)] |= 0x80;
    }
    b->state = LINK_CONNACK;
    link_want(b, MIDGE_FD_READ | MIDGE_FD_WRITE);
}

/* The socket is connected (and TLS done): start MQTT. */
static void
connected(struct bridge *b)
{
    send_connect(b);
}

static const char *
v3_refusal(int rc)
{
    switch (rc) {
    case 1:
        return "unacceptable protocol version";
    case 2:
        return "identifier rejected";
    case 3:
        return "server unavailable";
    case 4:
        return "bad username or password";
    case 5:
        return "not authorized";
    default:
        return "refused";
    }
}

static void
on_connack(struct bridge *b, const struct mqtt_connack *ca)
{
    const struct bridge_conf *c = b->conf;
    const struct mqtt_props *pr = &ca->props;

    if (ca->rc != 0) {
        char why[128];
        if (b->version != MQTT_V5 && ca->rc == 1 && c->try_private && !b->private_refused) {
            BLOG(b, MIDGE_LOG_NOTICE, "remote refused the bridge protocol flag (try_private): %s",
                 "connecting again without it");
            b->private_refused = 1;
        }
        snprintf(why, sizeof(why), "connection refused: %s (%d)",
                 b->version == MQTT_V5 ? mqtt_rc_name(ca->rc) : v3_refusal(ca->rc), ca->rc);
        link_drop(b, why);
        return;
    }
    b->remote_rm = 65535;
    b->remote_maxpkt = 0;
    b->remote_maxqos = 2;
    b->remote_retain = 1;
    if (b->version == MQTT_V5) {
        if (pr->present & MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM)) {
            b->remote_rm = pr->receive_maximum;
        }
        if (pr->present & MQTT_PBIT(MQTT_PROP_MAXIMUM_PACKET_SIZE)) {
            b->remote_maxpkt = pr->maximum_packet_size;
        }
        if (pr->present & MQTT_PBIT(MQTT_PROP_MAXIMUM_QOS)) {
            b->remote_maxqos = pr->maximum_qos;
        }
        if (pr->present & MQTT_PBIT(MQTT_PROP_RETAIN_AVAILABLE)) {
            b->remote_retain = pr->retain_available;
        }
        if ((pr->present & MQTT_PBIT(MQTT_PROP_SERVER_KEEP_ALIVE)) && b->ka_timer == NULL) {
            /* [MQTT-3.2.2-21] the client uses the server's keep alive. */
            b->ka_keepalive = pr->server_keep_alive;
        }
    }
    if (c->profile != BRIDGE_PROFILE_GENERIC && b->remote_maxqos > 1) {
        b->remote_maxqos = 1;
    }
    if (c->profile == BRIDGE_PROFILE_AZURE || !c->outgoing_retain) {
        b->remote_retain = 0;
    }
    stop_timer(b, &b->timer);
    if (b->ka_keepalive > 0) {
        b->ka_timer = bridge_api(b)->timer_start(bridge_self(b), b->ka_keepalive, b->ka_keepalive,
                                                 keepalive_cb, b);
    }
    b->state = LINK_SUBSCRIBING;
    BLOG(b, MIDGE_LOG_NOTICE, "connected address=%s:%u protocol=%d session_present=%d "
         "receive_maximum=%u maximum_qos=%u", c->addrs[b->addr_idx].host,
         (unsigned)c->addrs[b->addr_idx].port, b->version, ca->session_present,
         (unsigned)b->remote_rm, (unsigned)b->remote_maxqos);
    bridge_api(b)->metric_add(b->ctx->m_connects, 1);
    b->backoff = 0;
    in_link_up(b, ca->session_present);
}

/*
 * round_robin false: while connected to a secondary address, try a TCP
 * connection to the first (main) address every restart_timeout cap; once
 * it answers, the bridge moves back to it (mosquitto does the same).
 */
static void
probe_stop(struct bridge *b)
{
    if (b->probe_resolving != NULL) {
        b->probe_resolving->b = NULL;
        b->probe_resolving = NULL;
    }
    if (b->probe_watch != NULL) {
        bridge_api(b)->fd_unwatch(bridge_self(b), b->probe_watch);
        b->probe_watch = NULL;
    }
    if (b->probe_fd >= 0) {
        close(b->probe_fd);
    }
    b->probe_fd = -1;
    stop_timer(b, &b->probe_timer);
}

static void
probe_io(void *arg, int fd, int revents)
{
    struct bridge *b = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    (void)revents;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    bridge_api(b)->fd_unwatch(bridge_self(b), b->probe_watch);
    b->probe_watch = NULL;
    close(b->probe_fd);
    b->probe_fd = -1;
    if (err == 0 && b->state == LINK_UP) {
        BLOG(b, MIDGE_LOG_NOTICE, "main address %s:%u answers again: moving back to it",
             b->conf->addrs[0].host, (unsigned)b->conf->addrs[0].port);
        /* link_drop moves a link that was up back to the first address (round_robin false). */
        link_drop(b, "moving back to the main address");
    }
}

static void
probe_connect(struct bridge *b, const struct addrinfo *ai)
{
    int fd = make_socket(b, ai);

    if (fd < 0) {
        return;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        return;
    }
    b->probe_fd = fd;
    b->probe_watch = bridge_api(b)->fd_watch(bridge_self(b), fd, MIDGE_FD_WRITE, probe_io, b);
    if (b->probe_watch == NULL) {
        close(fd);
        b->probe_fd = -1;
    }
}

static void
probe_cb(void *arg, midge_timer *t)
{
    struct bridge *b = arg;
    const struct bridge_addr *a = &b->conf->addrs[0];
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    struct bridge_resolve *r;
    char port[8];

    (void)t;
    if (b->probe_fd >= 0 || b->probe_resolving != NULL || b->state != LINK_UP) {
        return; /* the previous probe is still running */
    }
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(a->host, port, &hints, &res) == 0 && res != NULL) {
        probe_connect(b, res);
        freeaddrinfo(res);
        return;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->host = strdup(a->host)) == NULL) {
        free(r);
        return;
    }
    memcpy(r->port, port, sizeof(port));
    r->b = b;
    r->probe = 1;
    b->probe_resolving = r;
    if (bridge_api(b)->run_blocking(bridge_self(b), resolve_work, resolve_done, r) != 0) {
        b->probe_resolving = NULL;
        free(r->host);
        free(r);
    }
}

/* All SUBACK/UNSUBACK are in: the link carries traffic. */
/*
 * start_type lazy: no traffic (and nothing waiting for the remote) for a
 * whole idle_timeout: disconnect until `threshold` messages wait again.
 */
static void
idle_cb(void *arg, midge_timer *t)
{
    struct bridge *b = arg;

    (void)t;
    if (b->state != LINK_UP) {
        return;
    }
    if (b->activity != b->idle_seen || b->nheld > 0 || b->acks_head != NULL) {
        b->idle_seen = b->activity;
        return;
    }
    link_stop(b, "idle_timeout (start_type lazy)");
    b->state = LINK_LAZY;
    BLOG(b, MIDGE_LOG_NOTICE, "idle for %us: disconnected until %u messages wait "
         "(start_type lazy)", (unsigned)b->conf->idle_timeout, (unsigned)b->conf->threshold);
}

void
link_begin(struct bridge *b)
{
    if (b->conf->start_type != BRIDGE_START_LAZY) {
        link_start(b);
        return;
    }
    b->state = LINK_LAZY;
    BLOG(b, MIDGE_LOG_NOTICE, "waiting for %u messages before connecting (start_type lazy)",
         (unsigned)b->conf->threshold);
    link_lazy_check(b);
}

void
link_lazy_check(struct bridge *b)
{
    if (b->state == LINK_LAZY && b->nheld >= b->conf->threshold) {
        BLOG(b, MIDGE_LOG_NOTICE, "%u messages waiting: connecting (start_type lazy)",
             (unsigned)b->nheld);
        link_start(b);
    }
}

void
link_ready(struct bridge *b)
{
    const struct bridge_conf *c = b->conf;

    b->state = LINK_UP;
    if (b->conf->start_type == BRIDGE_START_LAZY && b->idle_timer == NULL) {
        b->idle_seen = b->activity;
        b->idle_timer = bridge_api(b)->timer_start(bridge_self(b), b->conf->idle_timeout,
                                                   b->conf->idle_timeout, idle_cb, b);
    }
    if (!b->conf->round_robin && b->addr_idx != 0 && b->probe_timer == NULL) {
        b->probe_timer = bridge_api(b)->timer_start(bridge_self(b), b->conf->restart_cap,
                                                    b->conf->restart_cap, probe_cb, b);
    }
    notify_state(b, 1);
    out_window(b, 1);
    out_pump(b);
    /* "connected" was the CONNACK; this is the remote's answer to the subscription changes,
     * after the local state notification: from here on both directions flow. */
    BLOG(b, MIDGE_LOG_INFO, "link up address=%s:%u", c->addrs[b->addr_idx].host,
         (unsigned)c->addrs[b->addr_idx].port);
}

static void
on_packet(struct bridge *b, const struct mqtt_packet *p)
{
    b->ping_out = 0;
    if (p->type != MQTT_PINGRESP) {
        b->activity++;
    }
    if (b->state == LINK_CONNACK) {
        if (p->type != MQTT_CONNACK) {
            link_drop(b, "protocol error: expected CONNACK");
            return;
        }
        on_connack(b, &p->u.connack);
        return;
    }
    switch (p->type) {
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        if (p->type == MQTT_SUBACK) {
            uint32_t i;
            for (i = 0; i < p->u.suback.rcs.len; i++) {
                if (p->u.suback.rcs.ptr[i] >= 0x80) {
                    BLOG(b, MIDGE_LOG_WARNING, "remote refused a subscription: %s (0x%02x)",
                         mqtt_rc_name(p->u.suback.rcs.ptr[i]), p->u.suback.rcs.ptr[i]);
                }
            }
        }
        if (b->acks_pending > 0 && --b->acks_pending == 0 && b->state == LINK_SUBSCRIBING) {
            link_ready(b);
        }
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        out_on_ack(b, p);
        break;
    case MQTT_PUBLISH:
    case MQTT_PUBREL:
        in_on_packet(b, p);
        break;
    case MQTT_PINGRESP:
        break;
    case MQTT_DISCONNECT: {
        char why[128];
        snprintf(why, sizeof(why), "remote sent DISCONNECT: %s (0x%02x)",
                 mqtt_rc_name(p->u.reason.rc), p->u.reason.rc);
        link_drop(b, why);
        break;
    }
    default: {
        char why[128];
        snprintf(why, sizeof(why), "protocol error: unexpected %s", mqtt_type_name(p->type));
        link_drop(b, why);
        break;
    }
    }
}

/* Reads what is available and handles every whole packet. */
static void
read_in(struct bridge *b)
{
    for (;;) {
        ssize_t n;
        size_t pos;

        if (bbuf_reserve(&b->in, READ_CHUNK) != 0) {
            link_drop(b, "out of memory");
            return;
        }
        n = tls_on(b) ? tls_read(b, b->in.data + b->in.len, b->in.cap - b->in.len)
                      : recv(b->fd, b->in.data + b->in.len, b->in.cap - b->in.len, 0);
        if (n == 0) {
            link_drop(b, "connection closed by the remote");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                break;
            }
            link_drop(b, strerror(errno));
            return;
        }
        b->in.len += (size_t)n;
        pos = b->in.off;
        while (pos < b->in.len && b->fd >= 0) {
            uint8_t first;
            uint32_t rem;
            size_t hl;
            uint8_t rc;
            struct mqtt_packet p;
            enum mqtt_status st = mqtt_frame(b->in.data + pos, b->in.len - pos, &first, &rem, &hl,
                                             &rc);
            if (st == MQTT_NEED_MORE) {
                break;
            }
            if (st == MQTT_ERROR || hl + rem > b->in.len - pos) {
                if (st == MQTT_ERROR) {
                    link_drop(b, "malformed packet from the remote");
                    return;
                }
                break;
            }
            if (mqtt_decode(b->in.data + pos, hl + rem, b->version, &p, &rc) != MQTT_OK) {
                char why[96];
                snprintf(why, sizeof(why), "invalid packet from the remote: %s", mqtt_rc_name(rc));
                link_drop(b, why);
                return;
            }
            pos += hl + rem;
            b->in.off = pos;
            on_packet(b, &p);
            if (b->fd < 0) {
                return; /* dropped while handling it */
            }
        }
        if ((size_t)n < READ_CHUNK && !tls_on(b)) {
            break; /* TLS: read until it would block, its buffer may hold more */
        }
    }
    if (b->fd >= 0 && b->out.len > b->out.off) {
        flush_out(b);
    }
}

static void
io_cb(void *arg, int fd, int revents)
{
    struct bridge *b = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    (void)fd;
    if (b->state == LINK_CONNECTING) {
        if (getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            char why[160];
            snprintf(why, sizeof(why), "connect failed: %s", strerror(err ? err : errno));
            link_drop(b, why);
            return;
        }
        if (link_tls_on(b)) {
            b->state = LINK_TLS;
            if (tls_start(b) != 0) {
                return; /* dropped */
            }
        } else {
            connected(b);
            return;
        }
    }
    if (b->state == LINK_TLS) {
        int r = tls_handshake(b);
        if (r < 0) {
            return; /* dropped */
        }
        if (r == 0) {
            return; /* wants more I/O: tls_handshake set the watch */
        }
        connected(b);
        return;
    }
    if (revents & MIDGE_FD_WRITE) {
        if (flush_out(b) != 0) {
            return;
        }
    }
    if (revents & MIDGE_FD_READ) {
        read_in(b);
    }
}

static int
make_socket(struct bridge *b, const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    int one = 1;

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (b->conf->bind_address != NULL) {
        struct addrinfo hints;
        struct addrinfo *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = ai->ai_family;
        hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
        if (getaddrinfo(b->conf->bind_address, NULL, &hints, &res) != 0 || res == NULL ||
            bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
            if (res != NULL) {
                freeaddrinfo(res);
            }
            close(fd);
            errno = EADDRNOTAVAIL;
            return -1;
        }
        freeaddrinfo(res);
    }
    return fd;
}

static void
start_connect(struct bridge *b, const struct addrinfo *ai)
{
    char why[200];

    b->fd = make_socket(b, ai);
    if (b->fd < 0) {
        snprintf(why, sizeof(why), "socket: %s", strerror(errno));
        link_drop(b, why);
        return;
    }
    if (connect(b->fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        snprintf(why, sizeof(why), "connect failed: %s", strerror(errno));
        link_drop(b, why);
        return;
    }
    b->state = LINK_CONNECTING;
    b->watch = bridge_api(b)->fd_watch(bridge_self(b), b->fd, MIDGE_FD_WRITE, io_cb, b);
    b->watch_events = MIDGE_FD_WRITE;
    if (b->watch == NULL) {
        link_drop(b, "cannot watch the socket");
        return;
    }
    b->timer = bridge_api(b)->timer_start(bridge_self(b), CONNECT_TIMEOUT, 0, connect_timeout_cb,
                                          b);
}

static void
resolve_work(void *arg)
{
    struct bridge_resolve *r = arg;
    struct addrinfo hints;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->err = getaddrinfo(r->host, r->port, &hints, &r->res);
}

static void
resolve_done(void *arg)
{
    struct bridge_resolve *r = arg;
    struct bridge *b = r->b;

    if (b != NULL && r->probe) {
        b->probe_resolving = NULL;
        if (r->err == 0 && r->res != NULL) {
            probe_connect(b, r->res);
        }
    } else if (b != NULL) {
        b->resolving = NULL;
        if (r->err != 0 || r->res == NULL) {
            char why[200];
            snprintf(why, sizeof(why), "cannot resolve %s: %s", r->host, gai_strerror(r->err));
            link_drop(b, why);
        } else {
            start_connect(b, r->res);
        }
    }
    if (r->res != NULL) {
        freeaddrinfo(r->res);
    }
    free(r->host);
    free(r);
}

void
link_start(struct bridge *b)
{
    const struct bridge_addr *a = &b->conf->addrs[b->addr_idx];
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    struct bridge_resolve *r;
    char port[8];

    b->reason[0] = '\0';
    b->ka_keepalive = b->conf->keepalive;
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(a->host, port, &hints, &res) == 0 && res != NULL) {
        start_connect(b, res); /* a numeric address: nothing can block */
        freeaddrinfo(res);
        return;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->host = strdup(a->host)) == NULL) {
        free(r);
        link_drop(b, "out of memory");
        return;
    }
    memcpy(r->port, port, sizeof(port));
    r->b = b;
    b->state = LINK_RESOLVING;
    b->resolving = r;
    if (bridge_api(b)->run_blocking(bridge_self(b), resolve_work, resolve_done, r) != 0) {
        b->resolving = NULL;
        free(r->host);
        free(r);
        link_drop(b, "blocking pool busy: cannot resolve now");
    }
}

static void
restart_cb(void *arg, midge_timer *t)
{
    struct bridge *b = arg;

    (void)t;
    stop_timer(b, &b->timer);
    bridge_api(b)->metric_add(b->lm.reconnects, 1);
    link_start(b);
}

/*
 * Next delay: constant when base == cap, else "decorrelated jitter" as
 * mosquitto: min(cap, random between base and 3 x the previous delay).
 */
static double
next_delay(struct bridge *b)
{
    double base = b->conf->restart_base;
    double cap = b->conf->restart_cap;
    double hi;
    double d;

    if (cap <= base) {
        return base;
    }
    hi = b->backoff > 0 ? b->backoff * 3 : base;
    if (hi < base) {
        hi = base;
    }
    d = base + (hi - base) * ((double)random() / (double)RAND_MAX);
    if (d > cap) {
        d = cap;
    }
    b->backoff = d;
    return d;
}

static void
schedule_restart(struct bridge *b)
{
    double d;

    if (b->conf->start_type == BRIDGE_START_ONCE) {
        b->state = LINK_STOPPED;
        BLOG(b, MIDGE_LOG_NOTICE, "not reconnecting: %s", "start_type once");
        return;
    }
    d = next_delay(b);
    b->state = LINK_BACKOFF;
    b->timer = bridge_api(b)->timer_start(bridge_self(b), d, 0, restart_cb, b);
    BLOG(b, MIDGE_LOG_INFO, "reconnecting in %.1fs address=%s:%u", d,
         b->conf->addrs[b->addr_idx].host, (unsigned)b->conf->addrs[b->addr_idx].port);
}

void
link_drop(struct bridge *b, const char *why)
{
    int was_up = b->state == LINK_UP || b->state == LINK_SUBSCRIBING;

    if (b->state == LINK_BACKOFF || b->state == LINK_STOPPED || b->state == LINK_IDLE ||
        b->state == LINK_LAZY) {
        return;
    }
    snprintf(b->reason, sizeof(b->reason), "%s", why);
    close_socket(b);
    out_link_lost(b);
    in_link_lost(b);
    if (was_up) {
        notify_state(b, 0);
        BLOG(b, MIDGE_LOG_NOTICE, "disconnected reason=\"%s\"", why);
    } else {
        BLOG(b, MIDGE_LOG_WARNING, "connection failed address=%s:%u reason=\"%s\"",
             b->conf->addrs[b->addr_idx].host, (unsigned)b->conf->addrs[b->addr_idx].port, why);
    }
    if (!was_up || b->conf->round_robin) {
        b->addr_idx = (b->addr_idx + 1) % b->conf->naddrs;
    } else {
        b->addr_idx = 0; /* the first address is the main one */
    }
    schedule_restart(b);
}

void
link_stop(struct bridge *b, const char *why)
{
    if (b->state == LINK_UP && b->fd >= 0) {
        /* Tell the remote we are gone: v5 DISCONNECT 0x04 publishes our will ("0"). */
        struct mqtt_packet p;
        memset(&p, 0, sizeof(p));
        if (b->conf->notifications && !b->conf->notifications_local_only &&
            b->version != MQTT_V5) {
            static const char zero[] = "0";
            p.type = MQTT_PUBLISH;
            p.u.publish.retain = 1;
            p.u.publish.topic.ptr = (const uint8_t *)b->conf->notification_topic;
            p.u.publish.topic.len = (uint32_t)strlen(b->conf->notification_topic);
            p.u.publish.payload.ptr = (const uint8_t *)zero;
            p.u.publish.payload.len = 1;
            link_send(b, &p);
            memset(&p, 0, sizeof(p));
        }
        p.type = MQTT_DISCONNECT;
        p.u.reason.rc = b->conf->notifications && !b->conf->notifications_local_only
                            ? MQTT_RC_DISCONNECT_WITH_WILL : 0;
        link_send(b, &p);
        flush_out(b);
    }
    if (b->state == LINK_UP || b->state == LINK_SUBSCRIBING) {
        notify_state(b, 0);
    }
    BLOG(b, MIDGE_LOG_NOTICE, "stopped reason=\"%s\"", why);
    close_socket(b);
    out_link_lost(b);
    in_link_lost(b);
    b->state = LINK_STOPPED;
}

int
link_tls_on(const struct bridge *b)
{
    return b->conf->cafile != NULL || b->conf->capath != NULL || b->conf->psk != NULL;
}
