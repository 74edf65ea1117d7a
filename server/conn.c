/*
 * Connection I/O on a worker loop: reading and framing input, output
 * flushing once per loop iteration, closing, handoff between workers,
 * keep alive. Protocol meaning lives in proto_*.c.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "listener.h"
#include "log.h"
#include "mqtt.h"
#include "persist.h"
#include "plugin.h"
#include "proto.h"
#include "session.h"
#include "worker.h"
#include "xport.h"

static void io_cb(struct ev_loop *loop, ev_io *io, int revents);

/*
 * Starts the connection's watcher with the events it needs now: reading
 * unless paused (back-pressure) or waiting for a plugin, writing while
 * output waits for the socket. [worker thread]
 */
static void
io_update(struct conn *c)
{
    int ev = 0;

    if (c->state != CONN_CLOSED && !c->read_paused && !c->rd_eof &&
        (c->auth_wait == NULL || c->inlen < CONN_HOLD_MAX)) {
        ev |= EV_READ;
    }
    if (c->state != CONN_CLOSED && (c->want_write || (c->xp != NULL && xport_wants_write(c)))) {
        ev |= EV_WRITE;
    }
    if (ev == c->io_events && ev_is_active(&c->io) == (ev != 0)) {
        return;
    }
    ev_io_stop(c->w->loop, &c->io);
    c->io_events = (uint8_t)ev;
    if (ev != 0) {
        ev_io_set(&c->io, c->fd, ev);
        ev_io_start(c->w->loop, &c->io);
    }
}

static void
link_conn(struct worker *w, struct conn *c)
{
    c->w = w;
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
}

static void
unlink_conn(struct worker *w, struct conn *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->next = c->prev = NULL;
}

static void
peer_read(int fd, struct peer *p)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    memset(p, 0, sizeof(*p));
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        p->family = AF_INET;
        p->port = ntohs(a->sin_port);
        memcpy(p->ip, &a->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        p->family = AF_INET6;
        p->port = ntohs(a->sin6_port);
        memcpy(p->ip, &a->sin6_addr, 16);
    }
}

/* Formats the peer address into a buffer of the calling thread. */
const char *
conn_addr(const struct conn *c)
{
    static __thread char buf[INET6_ADDRSTRLEN + 10];
    char host[INET6_ADDRSTRLEN];

    if (c->peer.family == 0) {
        return "?";
    }
    inet_ntop(c->peer.family, c->peer.ip, host, sizeof(host));
    snprintf(buf, sizeof(buf), c->peer.family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
             c->peer.port);
    return buf;
}

/*
 * Adopts a freshly accepted socket on worker w. Owns fd from now on.
 * [worker thread]
 */
struct conn *
conn_new(struct worker *w, int fd, struct listener *l)
{
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;

    if (c == NULL) {
        close(fd);
        atomic_fetch_sub(&l->nconns, 1);
        return NULL;
    }
    c->fd = fd;
    c->listener = l;
    c->state = CONN_NEW;
    c->created = c->last_rx = c->last_progress = ev_now(w->loop);
    if (broker_cfg()->set_tcp_nodelay) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    peer_read(fd, &c->peer);
    if (l->xl != NULL && xport_attach(c, l->xl) < 0) { /* issue 9: TLS / WebSockets */
        midge_log(MLOG_WARNING, "connection refused addr=%s reason=\"out of memory\"",
                  conn_addr(c));
        close(fd);
        atomic_fetch_sub(&l->nconns, 1);
        free(c);
        return NULL;
    }
    ev_io_init(&c->io, io_cb, fd, 0);
    link_conn(w, c);
    io_update(c);
    /* The client usually sent its first bytes (TLS ClientHello, CONNECT) while
     * the socket waited in the accept queue and the inbox: read them in this
     * loop iteration instead of after another epoll_wait (EAGAIN is harmless). */
    ev_feed_event(w->loop, &c->io, EV_READ);
    return c;
}

static int process_input(struct conn *c, const uint8_t *data, size_t len, int from_inbuf);

/* issue 9: reads through TLS/WebSockets when the listener has them. */
static ssize_t
conn_read(struct conn *c, void *buf, size_t len)
{
    return c->xp != NULL ? xport_read(c, buf, len) : read(c->fd, buf, len);
}

/*
 * issue 9: input decoded by TLS/WebSockets but not yet parsed gets no socket
 * event: feed one so io_cb reads it in this loop iteration.
 */
static void
kick_pending(struct conn *c)
{
    if (c->xp != NULL && c->state != CONN_CLOSED && xport_pending(c) && ev_is_active(&c->io) &&
        (c->io_events & EV_READ)) {
        ev_feed_event(c->w->loop, &c->io, EV_READ);
    }
}

/*
 * Free space a read needs: TLS decrypts whole records (up to 16 KiB), and a
 * record split across two reads would stay inside OpenSSL with no socket
 * event to announce it.
 */
static size_t
room_needed(const struct conn *c)
{
    return c->xp != NULL ? XPORT_READ_MIN : 4096;
}

/* Why the last read or write failed, for the close log line. */
static const char *
io_error(const struct conn *c)
{
    return c->xp != NULL ? xport_error(c) : strerror(errno);
}

/*
 * Makes room for one read after the input kept in c->inbuf (doubling, so
 * a large packet arriving in pieces is not copied once per piece).
 * Returns 0, or -1 when out of memory.
 */
static int
inbuf_room(struct conn *c)
{
    size_t cap;
    uint8_t *b;

    if (c->incap - c->inlen >= room_needed(c)) {
        return 0;
    }
    cap = c->incap ? (size_t)c->incap * 2 : 4096;
    if (cap < c->inlen + room_needed(c)) {
        cap = c->inlen + room_needed(c);
    }
    b = realloc(c->inbuf, cap);
    if (b == NULL) {
        return -1;
    }
    c->inbuf = b;
    c->incap = (uint32_t)cap;
    return 0;
}

/* Moves the connection to worker c->handoff_to with its unparsed input. */
static void
handoff(struct conn *c, const uint8_t *rest, size_t len, int from_inbuf)
{
    struct worker *w = c->w;
    struct witem it;

    if (from_inbuf) {
        memmove(c->inbuf, rest, len);
    } else {
        uint8_t *b = malloc(len);
        if (b == NULL) {
            conn_close(c, MQTT_RC_SERVER_BUSY, 0, "out of memory");
            return;
        }
        memcpy(b, rest, len);
        free(c->inbuf);
        c->inbuf = b;
        c->incap = (uint32_t)len;
    }
    c->inlen = (uint32_t)len;
    ev_io_stop(w->loop, &c->io);
    unlink_conn(w, c);
    memset(&it, 0, sizeof(it));
    it.kind = WI_HANDOFF;
    it.u.conn = c;
    c->w = NULL;
    worker_send(w, c->handoff_to, &it);
}

/*
 * Takes over a connection from another worker and parses the input it
 * brought (its CONNECT first). [worker thread]
 */
void
conn_adopt(struct worker *w, struct conn *c)
{
    link_conn(w, c);
    io_update(c);
    if (c->inlen > 0 && process_input(c, c->inbuf, c->inlen, 1) < 0) {
        return;
    }
    kick_pending(c); /* issue 9 */
}

/* Keeps data[0..len) as the unparsed remainder. `need` is the whole packet size if known. */
static int
keep_rest(struct conn *c, const uint8_t *data, size_t len, size_t need, int from_inbuf)
{
    size_t cap = need > len ? need : len;

    if (len == 0) {
        free(c->inbuf);
        c->inbuf = NULL;
        c->inlen = c->incap = 0;
        return 0;
    }
    if (cap < 4096) {
        cap = 4096;
    }
    if (from_inbuf) {
        memmove(c->inbuf, data, len);
        if (c->incap < cap) {
            uint8_t *b = realloc(c->inbuf, cap);
            if (b == NULL) {
                return -1;
            }
            c->inbuf = b;
            c->incap = (uint32_t)cap;
        }
    } else {
        uint8_t *b = malloc(cap);
        if (b == NULL) {
            return -1;
        }
        memcpy(b, data, len);
        free(c->inbuf);
        c->inbuf = b;
        c->incap = (uint32_t)cap;
    }
    c->inlen = (uint32_t)len;
    return 0;
}

/*
 * Frames and handles every whole packet in data[0..len). Returns 0, or -1
 * when the connection was closed or handed off.
 */
static int
process_input(struct conn *c, const uint8_t *data, size_t len, int from_inbuf)
{
    size_t off = 0;
    size_t need = 0;
    const struct config *cfg = broker_cfg();

    while (off < len) {
        uint8_t b0;
        uint32_t rem;
        size_t hl;
        uint8_t rc = 0;
        size_t total;
        int r = mqtt_frame(data + off, len - off, &b0, &rem, &hl, &rc);

        if (r == MQTT_NEED_MORE) {
            break;
        }
        if (r == MQTT_ERROR) {
            proto_fail(c, rc, "malformed remaining length");
            return -1;
        }
        total = hl + rem;
        if (c->state == CONN_NEW && c->xp == NULL && off == 0 && len >= 3 && data[0] == 0x16 &&
            data[1] == 0x03) {
            /* issue 9: a TLS ClientHello record (0x16 0x03 ..) on a plain MQTT listener. */
            conn_close(c, 0, 0, "tls handshake on a plain listener");
            return -1;
        }
        if (c->state == CONN_NEW && (b0 >> 4) != MQTT_CONNECT &&
            !(c->eauth != NULL && (b0 >> 4) == MQTT_AUTH)) {
            /* [MQTT-3.1.0-1]: the first packet must be CONNECT. */
            conn_close(c, 0, 0, "first packet is not CONNECT");
            return -1;
        }
        if (c->state == CONN_NEW && total > CONN_CONNECT_MAX) {
            proto_fail(c, MQTT_RC_PACKET_TOO_LARGE, "packet before CONNACK larger than 1 MiB");
            return -1;
        }
        if (cfg->max_packet_size != 0 && total > cfg->max_packet_size) {
            /* [MQTT-3.2.2-15] / 3.1.1: oversized packet closes the connection. */
            proto_fail(c, MQTT_RC_PACKET_TOO_LARGE, "packet exceeds max_packet_size");
            return -1;
        }
        if (len - off < total) {
            need = total;
            break;
        }
        r = proto_packet(c, data + off, total);
        if (r == PROTO_CLOSE || c->state == CONN_CLOSED) {
            return -1;
        }
        if (r == PROTO_HANDOFF) {
            handoff(c, data + off, len - off, from_inbuf);
            return -1;
        }
        off += total;
        if (r == PROTO_WAIT) {
            /* A plugin is deciding: keep what follows, read nothing more until then. */
            io_update(c);
            if (keep_rest(c, data + off, len - off, 0, from_inbuf) < 0) {
                conn_close(c, MQTT_RC_SERVER_BUSY, 1, "out of memory");
            }
            return -1;
        }
    }
    if (keep_rest(c, data + off, len - off, need, from_inbuf) < 0) {
        conn_close(c, MQTT_RC_SERVER_BUSY, 1, "out of memory");
        return -1;
    }
    return 0;
}

/*
 * While a plugin decides (auth of the CONNECT, or an ACL decision about a
 * PUBLISH, SUBSCRIBE or will), input is kept unparsed (up to CONN_HOLD_MAX):
 * the client's packets are handled in order afterwards (conn_continue), and
 * a client that leaves is noticed at once. A connected client that only
 * shut down its side (e.g. PUBLISH, DISCONNECT, close, as mosquitto_pub
 * does at QoS 0) sent everything it meant to: its held packets are still
 * handled, as they would have been without the wait, and the connection
 * closes after them. Before CONNACK, or on a socket error, it closes at once.
 */
static void
hold_input(struct conn *c)
{
    ssize_t n;

    if (inbuf_room(c) < 0) {
        conn_close(c, MQTT_RC_SERVER_BUSY, 1, "out of memory");
        return;
    }
    n = conn_read(c, c->inbuf + c->inlen, c->incap - c->inlen);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n == 0 && c->state == CONN_ACTIVE) {
        c->rd_eof = 1;
        io_update(c);
        return;
    }
    if (n <= 0) {
        conn_close(c, 0, 1, n == 0 ? "closed by client" : io_error(c));
        return;
    }
    c->inlen += (uint32_t)n;
    c->last_rx = ev_now(c->w->loop);
    if (c->inlen >= CONN_HOLD_MAX) {
        io_update(c);
    }
}

static void
read_ready(struct conn *c)
{
    struct worker *w = c->w;
    ssize_t n;
    int r;

    if (c->auth_wait != NULL) {
        hold_input(c);
        return;
    }
    if (c->is_publisher && worker_throttled(w)) {
        conn_pause_read(c);
        return;
    }
    if (c->inlen > 0) {
        if (inbuf_room(c) < 0) {
            conn_close(c, MQTT_RC_SERVER_BUSY, 1, "out of memory");
            return;
        }
        n = conn_read(c, c->inbuf + c->inlen, c->incap - c->inlen);
    } else {
        n = conn_read(c, w->scratch, WORKER_SCRATCH);
    }
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return;
        }
        conn_close(c, 0, 1, n == 0 ? "closed by client" : io_error(c));
        return;
    }
    c->last_rx = ev_now(w->loop);
    STAT_ADD(&w->stats, bytes_received, (uint64_t)n);
    if (c->inlen > 0) {
        r = process_input(c, c->inbuf, c->inlen + (size_t)n, 1);
    } else {
        r = process_input(c, w->scratch, (size_t)n, 0);
    }
    /* issue 9: normally nothing stays decoded inside TLS/WebSockets (reads leave room
     * for a whole record); if something does, read it in this iteration. */
    if (r == 0) {
        kick_pending(c);
    }
}

static void
io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = (struct conn *)((char *)io - offsetof(struct conn, io));

    (void)loop;
    if ((revents & EV_WRITE) && conn_flush(c) < 0) {
        return;
    }
    if (((revents & EV_READ) || (c->xp != NULL && (revents & EV_WRITE) &&
                                 xport_read_wants_write(c))) &&
        c->state != CONN_CLOSED) {
        read_ready(c);
    }
}

/*
 * Encodes p into the output buffer and schedules a flush. Returns 0 or -1.
 * [worker thread]
 */
int
conn_send(struct conn *c, const struct mqtt_packet *p)
{
    int version = c->version ? c->version : MQTT_V311;
    size_t n = mqtt_encode(p, version, NULL, 0);
    uint8_t *dst;

    if (n == 0 || c->state == CONN_CLOSED) {
        return -1;
    }
    if (c->sink != NULL) {
        return 0; /* an internal session: acks (PUBREL) have no wire */
    }
    dst = outbuf_reserve(&c->out, n);
    if (dst == NULL) {
        return -1;
    }
    mqtt_encode(p, version, dst, n);
    outbuf_commit(&c->out, n);
    STAT_ADD(&c->w->stats, msgs_sent, 1);
    conn_mark_dirty(c);
    return 0;
}

/* Puts the connection on its worker's flush list. */
void
conn_mark_dirty(struct conn *c)
{
    if (!c->on_dirty && c->state != CONN_CLOSED) {
        c->on_dirty = 1;
        c->dirty_next = c->w->dirty;
        c->w->dirty = c;
    }
}

/*
 * Writes pending output; when the buffer drains below the cap, lets the
 * session send more of its queue. Returns 0, or -1 if the connection closed.
 */
int
conn_flush(struct conn *c)
{
    int pumped = 0;

    while (c->state != CONN_CLOSED) {
        size_t before = c->out.bytes;
        int r = c->xp != NULL ? xport_flush(c) : outbuf_flush(&c->out, c->fd);

        STAT_ADD(&c->w->stats, bytes_sent, before - c->out.bytes);
        if (c->out.bytes < before) {
            c->last_progress = ev_now(c->w->loop);
        }
        if (r < 0) {
            conn_close(c, 0, 1, io_error(c));
            return -1;
        }
        if (c->want_write != (r == 1)) {
            c->want_write = r == 1;
            io_update(c);
        }
        if (c->session != NULL && c->session->pressing) {
            session_press_update(c->session);
        }
        if (pumped || c->session == NULL || c->session->queue.count == 0 ||
            c->out.bytes >= CONN_OUT_CAP / 2) {
            return 0;
        }
        pumped = 1;
        session_pump(c->session);
        if (c->out.bytes == 0) {
            return 0;
        }
    }
    return -1;
}

/* Flushes every connection that has new output. [worker thread] */
void
conn_flush_dirty(struct worker *w)
{
    while (w->dirty != NULL) {
        struct conn *list = w->dirty;
        w->dirty = NULL;
        while (list != NULL) {
            struct conn *c = list;
            list = c->dirty_next;
            c->on_dirty = 0;
            if (c->state != CONN_CLOSED) {
                conn_flush(c);
            }
        }
    }
}

static void
conn_free(struct conn *c)
{
    unsigned i;

    outbuf_clear(&c->out);
    xport_free(c); /* issue 9 */
    free(c->inbuf);
    if (c->aliases != NULL) {
        for (i = 0; i <= c->alias_max; i++) {
            free(c->aliases[i]);
        }
        free(c->aliases);
    }
    plugin_conn_release(c);
    plugin_eauth_free(c);
    persist_conn_free(c);
    free(c->connect_uprops);
    free(c->username);
    free(c->client_id);
    free(c->addr_str);
    free(c);
}

/* Frees closed connections. [worker thread] */
void
conn_reap(struct worker *w)
{
    while (w->graveyard != NULL) {
        struct conn *c = w->graveyard;
        w->graveyard = c->grave_next;
        conn_free(c);
    }
}

/*
 * Closes a connection; see conn.h. Safe to call more than once and from
 * inside the connection's own callbacks (the struct is freed later).
 */
void
conn_close(struct conn *c, uint8_t rc, int send_will, const char *reason)
{
    struct worker *w = c->w;
    struct session *s = c->session;

    if (c->state == CONN_CLOSED) {
        return;
    }
    plugin_auth_cancel(c);
    if (c->state == CONN_ACTIVE && plugins_events_active) {
        /* The code sent, else the client's DISCONNECT code, else 0x80: connection lost. */
        plugin_client_disconnected(c, rc != 0           ? rc
                                      : c->got_disconnect ? c->disconnect_rc
                                                          : MQTT_RC_UNSPECIFIED);
    }
    if (rc != 0 && c->state == CONN_ACTIVE && c->version == MQTT_V5) {
        struct mqtt_packet p;
        memset(&p, 0, sizeof(p));
        p.type = MQTT_DISCONNECT;
        p.u.reason.rc = rc;
        conn_send(c, &p);
    }
    if (c->xp != NULL) {
        /* issue 9: last output, then close_notify / a close frame, without waiting. */
        if (c->out.bytes > 0 || xport_wants_write(c)) {
            xport_flush(c);
        }
        xport_shutdown(c);
    } else if (c->out.bytes > 0) {
        outbuf_flush(&c->out, c->fd);
    }
    if (c->state == CONN_ACTIVE) {
        STAT_ADD(&w->stats, clients_connected, -1);
        if (broker_cfg()->connection_messages) {
            midge_log(MLOG_NOTICE, "client disconnected client=%s addr=%s reason=\"%s\"",
                      c->client_id ? c->client_id : "", conn_addr(c), reason);
        }
    } else {
        midge_log(MLOG_INFO, "connection closed addr=%s reason=\"%s\"", conn_addr(c), reason);
    }
    if (c->read_paused) {
        c->read_paused = 0;
        w->paused--;
    }
    c->state = CONN_CLOSED;
    ev_io_stop(w->loop, &c->io);
    shutdown(c->fd, SHUT_RDWR);
    close(c->fd);
    c->fd = -1;
    atomic_fetch_sub(&c->listener->nconns, 1);
    outbuf_clear(&c->out);
    unlink_conn(w, c);
    c->grave_next = w->graveyard;
    w->graveyard = c;
    if (s != NULL) {
        c->session = NULL;
        s->conn = NULL;
        session_detach(s, send_will && !c->will_cancelled);
    }
}

/*
 * Keep alive: a client silent for 1.5 times its keep alive is disconnected
 * and its will published [MQTT-3.1.2-24]; a socket that has not completed
 * CONNECT within connect_timeout is closed. [worker thread]
 */
void
conns_tick(struct worker *w, double now)
{
    struct conn *c = w->conns;
    double timeout = broker_cfg()->connect_timeout;

    while (c != NULL) {
        struct conn *next = c->next;
        if (c->state == CONN_NEW && timeout > 0 && now - c->created >= timeout) {
            /* issue 9: name the stage a TLS/WebSocket client stalled in. */
            const char *stage = c->xp != NULL ? xport_stage(c) : NULL;
            conn_close(c, 0, 0,
                       stage == NULL                     ? "connect timeout"
                       : strcmp(stage, "tls handshake") == 0 ? "tls handshake timeout"
                                                             : "websocket upgrade timeout");
        } else if (c->state == CONN_ACTIVE && c->keepalive > 0 &&
                   now - c->last_rx > 1.5 * c->keepalive) {
            conn_close(c, MQTT_RC_KEEP_ALIVE_TIMEOUT, 1, "keep alive timeout");
        }
        c = next;
    }
}

/* 1 when the client's socket took data within the last 250 ms. */
int
conn_progressing(const struct conn *c)
{
    return ev_now(c->w->loop) - c->last_progress < 0.25;
}

/* Continues after a plugin decision; see conn.h. [worker thread] */
void
conn_continue(struct conn *c)
{
    if (c->state == CONN_CLOSED || c->auth_wait != NULL) {
        return;
    }
    if (c->inlen > 0 && process_input(c, c->inbuf, c->inlen, 1) < 0) {
        return;
    }
    if (c->rd_eof) {
        conn_close(c, 0, 1, "closed by client");
        return;
    }
    io_update(c);
    kick_pending(c); /* issue 9 */
}

/*
 * A client that sends DISCONNECT (say with Session Expiry 0) and reconnects
 * at once expects the new connection to see the old one's end, but the two
 * sockets are read in any order. So before a takeover the old connection's
 * input that already arrived is handled first. It is read into the
 * connection's own buffer: the worker's scratch may hold the new
 * connection's CONNECT. [worker thread]
 */
void
conn_drain(struct conn *c)
{
    const char *why = NULL;
    size_t budget = CONN_HOLD_MAX;

    if (c->state != CONN_ACTIVE || c->auth_wait != NULL) {
        return;
    }
    while (budget > 0) {
        ssize_t n;
        if (inbuf_room(c) < 0) {
            break;
        }
        n = conn_read(c, c->inbuf + c->inlen, c->incap - c->inlen);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            break;
        }
        if (n <= 0) {
            why = n == 0 ? "closed by client" : io_error(c);
            break;
        }
        c->inlen += (uint32_t)n;
        budget = (size_t)n < budget ? budget - (size_t)n : 0;
        c->last_rx = ev_now(c->w->loop);
        STAT_ADD(&c->w->stats, bytes_received, (uint64_t)n);
    }
    if (c->inlen > 0 && process_input(c, c->inbuf, c->inlen, 1) < 0) {
        return;
    }
    if (why != NULL) {
        conn_close(c, 0, 1, why);
    }
}

/* Stops reading from the socket (back-pressure). */
void
conn_pause_read(struct conn *c)
{
    if (!c->read_paused && c->state != CONN_CLOSED) {
        c->read_paused = 1;
        c->w->paused++;
        io_update(c);
    }
}

/* Resumes reading. */
void
conn_resume_read(struct conn *c)
{
    if (c->read_paused) {
        c->read_paused = 0;
        c->w->paused--;
        io_update(c);
        kick_pending(c); /* issue 9 */
    }
}
