/*
 * midge-bench: a pipelining MQTT load generator for loopback benchmarks.
 *
 * The tool must measure the broker, not itself, so it behaves like a set of
 * busy clients: every thread drives many non-blocking connections from one
 * epoll loop; publishers write many pre-encoded PUBLISH packets per write(),
 * subscribers read large chunks and parse every packet they hold, and the
 * acknowledgements of one read (PUBACK, PUBREC, PUBREL, PUBCOMP) leave in one
 * write. Packets are encoded by hand (MQTT 3.1.1, or 5.0 with -V 5) from a
 * template in which only the packet id and the payload header are patched.
 *
 * The payload starts with a 16-byte header: the send time (CLOCK_MONOTONIC,
 * ns), the publisher index and a sequence number. Subscribers on the same
 * machine compute the latency from it. In rate-limited mode (-r) the time
 * stamped is the time the message was scheduled, not when it left, so a
 * publisher held back by a full window or a full socket still shows the
 * delay (no coordinated omission).
 *
 * Modes: load (publishers and subscribers), storm (connect rate) and idle
 * (hold many idle connections so a script can sample the broker's RSS).
 * Every mode stops by itself; connections go to 127.0.0.1 only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000ull
#define HDR_LEN 16  /* payload header: time (8), publisher (2), run nonce (2), sequence (4) */
#define IN_CAP (256 * 1024)   /* initial read buffer of a load connection */
#define MAX_EVENTS 512
#define HIST_BUCKETS 1600
#define MAX_THREADS 64

enum mode { MODE_LOAD, MODE_STORM, MODE_IDLE };
enum topo { TOPO_PAIR, TOPO_FANIN, TOPO_FANOUT, TOPO_NM };
enum role { ROLE_PUB, ROLE_SUB, ROLE_STALL, ROLE_STORM, ROLE_IDLE };
enum cstate { CS_CONNECTING, CS_WAIT_CONNACK, CS_WAIT_SUBACK, CS_READY, CS_CLOSED };
enum phase { PH_SETUP, PH_RUN, PH_DRAIN, PH_DONE };

static const char *const mode_names[] = { "load", "storm", "idle" };
static const char *const topo_names[] = { "pair", "fanin", "fanout", "nm" };

struct opts {
    int port;
    int sub_port;    /* subscribers connect here (0: port): a cross-node hop in a cluster */
    enum mode mode;
    enum topo topo;
    int pubs;
    int subs;
    int stalled;
    int qos;
    int subqos;
    size_t size;
    double duration;
    double warmup;
    double drain;
    double rate;
    int batch;
    int window;
    int threads;
    int version;
    int conns;
    int concurrency;
    double hold;
    int keepalive;
    bool keep;
    bool persistent;
    const char *label;
};

static struct opts opt = {
    .port = 1883, .mode = MODE_LOAD, .topo = TOPO_PAIR, .pubs = -1, .subs = -1,
    .stalled = 0, .qos = 0, .subqos = -1, .size = 64, .duration = 10, .warmup = 2,
    .drain = 5, .rate = 0, .batch = 32, .window = 1000, .threads = 1, .version = 4,
    .conns = 1000, .concurrency = 100, .hold = 10, .keepalive = -1, .keep = false,
    .label = NULL,
};

/* Growable byte buffer. Pending bytes are data[off..len). Owned by its conn. */
struct buf {
    uint8_t *data;
    size_t off;
    size_t len;
    size_t cap;
};

/* Log-linear latency histogram (ns), about 3% resolution. Thread-private. */
struct hist {
    uint64_t n;
    uint64_t max;
    uint64_t b[HIST_BUCKETS];
};

struct worker;

/* One client connection; owned and freed by its worker thread. */
struct conn {
    int fd;
    enum role role;
    enum cstate state;
    int index;              /* publisher or subscriber number */
    uint32_t events;        /* current epoll interest */
    struct worker *w;
    struct buf in;
    struct buf out;
    uint64_t t_start;       /* storm: when connect() was called */
    uint64_t last_tx;       /* for PINGREQ */
    /* publisher state */
    uint8_t *tmpl;          /* one encoded PUBLISH, patched per message */
    size_t tmpl_len;
    size_t pid_off;         /* offset of the packet id, 0 for QoS 0 */
    size_t pay_off;         /* offset of the payload */
    uint8_t *idstate;       /* 65536 entries: 0 free, 1 wait ack/rec, 2 wait comp */
    uint32_t *next_seq;     /* subscriber: next sequence expected from each publisher */
    uint16_t next_id;
    uint32_t inflight;
    uint32_t seq;
};

/* Counters are written by their worker only and read by main: relaxed atomics. */
struct counters {
    _Atomic uint64_t sent;
    _Atomic uint64_t sent_win;
    _Atomic uint64_t recv;
    _Atomic uint64_t recv_win;
    _Atomic uint64_t acked;
    _Atomic uint64_t errors;
    _Atomic uint64_t gaps;      /* messages skipped inside a publisher's sequence */
    _Atomic uint64_t reorder;   /* duplicates or messages older than one seen */
    _Atomic uint64_t foreign;   /* messages of another run, not counted */
    _Atomic uint64_t done;      /* storm/idle: connections that got CONNACK */
    _Atomic uint64_t failed;    /* storm/idle: connections that failed */
};

/* One thread with its epoll loop. Owns its conns. */
struct worker {
    pthread_t tid;
    int idx;
    int ep;
    struct conn **conns;        /* load/idle: all of this thread's conns */
    int nconns;
    struct conn **pubs;
    int npubs;
    int todo;                   /* storm/idle: connections still to open */
    int active;                 /* storm/idle: connections in progress */
    int share;                  /* storm/idle: this thread's total */
    int conc;                   /* storm/idle: parallel connects */
    uint64_t last_done_ns;      /* storm: time of the last CONNACK */
    _Atomic int stopped;        /* load: has seen the end of PH_RUN, publishes no more */
    struct counters c;
    struct hist lat;
};

static struct worker *workers;
static _Atomic int g_phase = PH_SETUP;
static _Atomic int g_ready;
static _Atomic int g_fatal;
static uint64_t g_t0;           /* start of publishing; written before PH_RUN */
static uint64_t g_win_start;
static uint64_t g_win_end;
static uint64_t g_interval;     /* rate mode: ns between two messages of one publisher */
static struct sockaddr_in g_addr;
static struct sockaddr_in g_sub_addr; /* subscribers' broker (--sub-port) */
static char g_idprefix[32];
static uint16_t g_nonce;        /* tells this run's messages from a previous run's leftovers */

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void
sleep_ns(uint64_t ns)
{
    struct timespec ts = { .tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S) };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void
die(const char *what)
{
    fprintf(stderr, "midge-bench: %s\n", what);
    exit(2);
}

static void
fatal(struct conn *c, const char *what)
{
    if (atomic_exchange(&g_fatal, 1) == 0) {
        fprintf(stderr, "midge-bench: %s (conn role=%d index=%d errno=%s)\n", what,
                c != NULL ? (int)c->role : -1, c != NULL ? c->index : -1, strerror(errno));
    }
}

/* ---- histogram ---- */

static int
hist_index(uint64_t v)
{
    int msb;
    int shift;

    if (v < 64) {
        return (int)v;
    }
    msb = 63 - __builtin_clzll(v);
    shift = msb - 5;
    if ((shift + 1) * 32 + 31 >= HIST_BUCKETS) {
        return HIST_BUCKETS - 1;
    }
    return (shift + 1) * 32 + (int)((v >> shift) - 32);
}

static uint64_t
hist_value(int idx)
{
    int shift;
    uint64_t mant;

    if (idx < 64) {
        return (uint64_t)idx;
    }
    shift = idx / 32 - 1;
    mant = (uint64_t)(idx % 32 + 32);
    /* middle of the bucket */
    return (mant << shift) + ((1ull << shift) >> 1);
}

static void
hist_add(struct hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->n++;
    if (v > h->max) {
        h->max = v;
    }
}

static void
hist_merge(struct hist *dst, const struct hist *src)
{
    int i;

    for (i = 0; i < HIST_BUCKETS; i++) {
        dst->b[i] += src->b[i];
    }
    dst->n += src->n;
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

static double
hist_pct_us(const struct hist *h, double pct)
{
    uint64_t want;
    uint64_t seen = 0;
    int i;

    if (h->n == 0) {
        return -1;
    }
    want = (uint64_t)(pct / 100.0 * (double)h->n + 0.5);
    if (want < 1) {
        want = 1;
    }
    for (i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = hist_value(i);
            return (double)(v > h->max ? h->max : v) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

/* ---- buffers ---- */

static void
buf_reserve(struct buf *b, size_t extra)
{
    if (b->off > 0 && b->off == b->len) {
        b->off = 0;
        b->len = 0;
    }
    if (b->len + extra <= b->cap) {
        return;
    }
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) {
            return;
        }
    }
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + extra) {
        ncap *= 2;
    }
    uint8_t *n = realloc(b->data, ncap);
    if (n == NULL) {
        die("out of memory");
    }
    b->data = n;
    b->cap = ncap;
}

static void
buf_put(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static size_t
put_varint(uint8_t *p, size_t v)
{
    size_t n = 0;

    do {
        uint8_t d = v % 128;
        v /= 128;
        p[n++] = (uint8_t)(d | (v > 0 ? 0x80 : 0));
    } while (v > 0);
    return n;
}

static void
put_u16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static size_t
put_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s);

    put_u16(p, (unsigned)n);
    memcpy(p + 2, s, n);
    return n + 2;
}

/* ---- packet encoders ---- */

/* persistent: a session that outlives the connection (clean 0; v5: expiry never). */
static void
enc_connect(struct buf *b, const char *cid, int keepalive, bool persistent)
{
    uint8_t body[256];
    uint8_t hdr[5];
    size_t n = 0;

    n += put_str(body + n, "MQTT");
    body[n++] = (uint8_t)opt.version;
    body[n++] = persistent ? 0x00 : 0x02; /* clean session / clean start */
    put_u16(body + n, (unsigned)keepalive);
    n += 2;
    if (opt.version == 5 && persistent) {
        static const uint8_t expiry_never[] = { 5, 0x11, 0xff, 0xff, 0xff, 0xff };

        memcpy(body + n, expiry_never, sizeof(expiry_never));
        n += sizeof(expiry_never);
    } else if (opt.version == 5) {
        body[n++] = 0; /* no properties */
    }
    n += put_str(body + n, cid);
    hdr[0] = 0x10;
    size_t h = 1 + put_varint(hdr + 1, n);
    buf_put(b, hdr, h);
    buf_put(b, body, n);
}

static void
enc_subscribe(struct buf *b, const char *filter, int qos)
{
    uint8_t body[256];
    uint8_t hdr[5];
    size_t n = 0;

    put_u16(body, 1);
    n = 2;
    if (opt.version == 5) {
        body[n++] = 0;
    }
    n += put_str(body + n, filter);
    body[n++] = (uint8_t)qos;
    hdr[0] = 0x82;
    size_t h = 1 + put_varint(hdr + 1, n);
    buf_put(b, hdr, h);
    buf_put(b, body, n);
}

static void
enc_ack(struct buf *b, uint8_t type, unsigned id)
{
    uint8_t p[4] = { type, 2, (uint8_t)(id >> 8), (uint8_t)id };

    buf_put(b, p, 4);
}

/* Build the PUBLISH template of publisher c on topic. */
static void
pub_template(struct conn *c, const char *topic)
{
    size_t tlen = strlen(topic);
    size_t rem = 2 + tlen + (opt.qos > 0 ? 2 : 0) + (opt.version == 5 ? 1 : 0) + opt.size;
    uint8_t *p = calloc(1, rem + 5);
    size_t n;

    if (p == NULL) {
        die("out of memory");
    }
    p[0] = (uint8_t)(0x30 | (opt.qos << 1));
    n = 1 + put_varint(p + 1, rem);
    n += put_str(p + n, topic);
    if (opt.qos > 0) {
        c->pid_off = n;
        n += 2;
    }
    if (opt.version == 5) {
        p[n++] = 0;
    }
    c->pay_off = n;
    memset(p + n, 'x', opt.size);
    n += opt.size;
    c->tmpl = p;
    c->tmpl_len = n;
}

/* ---- connection plumbing ---- */

static void
conn_set_events(struct conn *c, uint32_t ev)
{
    struct epoll_event e = { .events = ev, .data.ptr = c };

    if (ev == c->events) {
        return;
    }
    if (epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &e) != 0) {
        fatal(c, "epoll_ctl");
    }
    c->events = ev;
}

static int
conn_open(struct conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct epoll_event e;

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const struct sockaddr_in *to = c->role == ROLE_SUB ? &g_sub_addr : &g_addr;

    if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->state = CS_CONNECTING;
    c->events = EPOLLOUT;
    e.events = EPOLLOUT;
    e.data.ptr = c;
    if (epoll_ctl(c->w->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
        close(fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

/* Write pending output; returns -1 on a socket error. Arms EPOLLOUT when short. */
static int
conn_flush(struct conn *c)
{
    struct buf *b = &c->out;

    while (b->off < b->len) {
        ssize_t n = send(c->fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n > 0) {
            b->off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->role != ROLE_STALL) {
                conn_set_events(c, EPOLLIN | EPOLLOUT);
            }
            return 0;
        }
        return -1;
    }
    b->off = 0;
    b->len = 0;
    if (c->events & EPOLLOUT) {
        conn_set_events(c, c->role == ROLE_STALL ? 0 : EPOLLIN);
    }
    c->last_tx = now_ns();
    return 0;
}

static void
conn_close(struct conn *c, bool polite)
{
    if (c->fd >= 0) {
        if (polite) {
            static const uint8_t disc[2] = { 0xe0, 0 };
            ssize_t r = send(c->fd, disc, 2, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)r;
        }
        epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = CS_CLOSED;
}

static void
conn_free(struct conn *c)
{
    free(c->in.data);
    free(c->out.data);
    free(c->tmpl);
    free(c->idstate);
    free(c->next_seq);
    free(c);
}

static void storm_next(struct worker *w);

/* A storm/idle connection got its CONNACK or failed. [worker thread] */
static void
storm_finish(struct conn *c, bool ok, uint64_t now)
{
    struct worker *w = c->w;

    if (ok) {
        atomic_fetch_add_explicit(&w->c.done, 1, memory_order_relaxed);
        hist_add(&w->lat, now - c->t_start);
        w->last_done_ns = now;
    } else {
        atomic_fetch_add_explicit(&w->c.failed, 1, memory_order_relaxed);
    }
    w->active--;
    if (ok && (c->role == ROLE_IDLE || opt.keep)) {
        /* keep a list so the thread can close them at the end */
        struct conn **n = realloc(w->conns, sizeof(*n) * (size_t)(w->nconns + 1));
        if (n == NULL) {
            die("out of memory");
        }
        w->conns = n;
        w->conns[w->nconns++] = c;
        c->state = CS_READY;
        atomic_fetch_add(&g_ready, 1);
    } else {
        conn_close(c, ok);
        conn_free(c);
    }
    storm_next(w);
}

/* Start as many storm/idle connects as the concurrency allows. [worker thread] */
static void
storm_next(struct worker *w)
{
    while (w->todo > 0 && w->active < w->conc && atomic_load(&g_phase) != PH_DONE) {
        struct conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            die("out of memory");
        }
        c->w = w;
        c->fd = -1;
        c->role = opt.mode == MODE_IDLE ? ROLE_IDLE : ROLE_STORM;
        c->index = w->share - w->todo;
        c->t_start = now_ns();
        w->todo--;
        w->active++;
        if (conn_open(c) != 0) {
            w->active--;
            atomic_fetch_add_explicit(&w->c.failed, 1, memory_order_relaxed);
            conn_free(c);
            continue;
        }
    }
}

static const char *
sub_filter(int j, char *tmp, size_t len)
{
    if (opt.topo == TOPO_PAIR) {
        snprintf(tmp, len, "bench/%d", j);
        return tmp;
    }
    if (opt.topo == TOPO_FANOUT) {
        return "bench/0";
    }
    return "bench/#";
}

/* TCP connected: send CONNECT. [worker thread] */
static void
conn_connected(struct conn *c)
{
    char cid[64];
    int err = 0;
    socklen_t sl = sizeof(err);
    static const char tag[] = { 'p', 's', 'x', 'c', 'i' };

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0 || err != 0) {
        errno = err;
        if (c->role == ROLE_STORM || c->role == ROLE_IDLE) {
            storm_finish(c, false, now_ns());
        } else {
            fatal(c, "connect failed");
        }
        return;
    }
    snprintf(cid, sizeof(cid), "%s%c%d-%d", g_idprefix, tag[c->role], c->w->idx, c->index);
    enc_connect(&c->out, cid, opt.keepalive, opt.persistent && c->role == ROLE_SUB);
    c->state = CS_WAIT_CONNACK;
    conn_set_events(c, EPOLLIN);
    if (conn_flush(c) != 0) {
        fatal(c, "send CONNECT");
    }
}

/* Send as many PUBLISH packets as window, rate and batch allow. [worker thread] */
static void
pub_fill(struct conn *c, uint64_t now)
{
    int rounds;

    if (c->state != CS_READY || c->out.off < c->out.len) {
        return;
    }
    for (rounds = 0; rounds < 4; rounds++) {
        int n = opt.batch;
        int i;

        if (opt.qos > 0) {
            int free_slots = opt.window - (int)c->inflight;
            int low = opt.batch < opt.window ? opt.batch : opt.window;
            if (opt.rate <= 0 && free_slots < low) {
                return;
            }
            if (free_slots < n) {
                n = free_slots;
            }
        }
        if (opt.rate > 0) {
            uint64_t due_at = g_t0 + (uint64_t)c->seq * g_interval;
            if (due_at > now) {
                return;
            }
            uint64_t due = (now - due_at) / g_interval + 1;
            if (due < (uint64_t)n) {
                n = (int)due;
            }
        }
        if (n <= 0) {
            return;
        }
        buf_reserve(&c->out, c->tmpl_len * (size_t)n);
        for (i = 0; i < n; i++) {
            uint8_t *p = c->out.data + c->out.len;
            uint64_t ts = opt.rate > 0 ? g_t0 + (uint64_t)c->seq * g_interval : now;
            uint16_t idx = (uint16_t)c->index;
            uint32_t seq = c->seq;

            memcpy(p, c->tmpl, c->tmpl_len);
            if (opt.qos > 0) {
                do {
                    c->next_id++;
                } while (c->next_id == 0 || c->idstate[c->next_id] != 0);
                c->idstate[c->next_id] = 1;
                c->inflight++;
                put_u16(p + c->pid_off, c->next_id);
            }
            if (opt.size >= HDR_LEN) {
                memcpy(p + c->pay_off, &ts, 8);
                memcpy(p + c->pay_off + 8, &idx, 2);
                memcpy(p + c->pay_off + 10, &g_nonce, 2);
                memcpy(p + c->pay_off + 12, &seq, 4);
            }
            c->out.len += c->tmpl_len;
            c->seq++;
        }
        atomic_fetch_add_explicit(&c->w->c.sent, (uint64_t)n, memory_order_relaxed);
        if (now >= g_win_start && now < g_win_end) {
            atomic_fetch_add_explicit(&c->w->c.sent_win, (uint64_t)n, memory_order_relaxed);
        }
        if (conn_flush(c) != 0) {
            fatal(c, "send PUBLISH");
            return;
        }
        if (c->out.off < c->out.len) {
            return;
        }
    }
}

static void
pub_acked(struct conn *c, unsigned id, int want, bool done)
{
    if (c->role != ROLE_PUB || c->idstate == NULL || c->idstate[id] != want) {
        atomic_fetch_add_explicit(&c->w->c.errors, 1, memory_order_relaxed);
        return;
    }
    if (done) {
        c->idstate[id] = 0;
        c->inflight--;
        atomic_fetch_add_explicit(&c->w->c.acked, 1, memory_order_relaxed);
    } else {
        c->idstate[id] = 2;
        enc_ack(&c->out, 0x62, id);
    }
}

/* Handle one received PUBLISH. p points at the variable header. [worker thread] */
static void
on_publish(struct conn *c, uint8_t flags, const uint8_t *p, size_t len, uint64_t now)
{
    int qos = (flags >> 1) & 3;
    size_t n;
    unsigned id = 0;
    struct worker *w = c->w;

    if (len < 2) {
        atomic_fetch_add_explicit(&w->c.errors, 1, memory_order_relaxed);
        return;
    }
    n = 2 + (((size_t)p[0] << 8) | p[1]);
    if (qos > 0 && n + 2 <= len) {
        id = ((unsigned)p[n] << 8) | p[n + 1];
        n += 2;
    }
    if (opt.version == 5) {
        size_t plen = 0;
        int shift = 0;
        while (n < len) {
            uint8_t d = p[n++];
            plen |= (size_t)(d & 0x7f) << shift;
            shift += 7;
            if (!(d & 0x80)) {
                break;
            }
        }
        n += plen;
    }
    if (n > len) {
        atomic_fetch_add_explicit(&w->c.errors, 1, memory_order_relaxed);
        return;
    }
    if (c->role == ROLE_SUB) {
        if (len - n >= HDR_LEN) {
            uint16_t pi;
            uint16_t nonce;
            uint32_t seq;
            memcpy(&pi, p + n + 8, 2);
            memcpy(&nonce, p + n + 10, 2);
            memcpy(&seq, p + n + 12, 4);
            if (nonce != g_nonce) {
                /* e.g. a previous run's publishes the broker was still reading */
                atomic_fetch_add_explicit(&w->c.foreign, 1, memory_order_relaxed);
                goto ack;
            }
            if (pi < (uint32_t)opt.pubs) {
                uint32_t *next = &c->next_seq[pi];
                if (seq == *next) {
                    (*next)++;
                } else if (seq > *next) {
                    atomic_fetch_add_explicit(&w->c.gaps, seq - *next, memory_order_relaxed);
                    *next = seq + 1;
                } else {
                    atomic_fetch_add_explicit(&w->c.reorder, 1, memory_order_relaxed);
                }
            }
        }
        atomic_fetch_add_explicit(&w->c.recv, 1, memory_order_relaxed);
        if (now >= g_win_start && now < g_win_end) {
            atomic_fetch_add_explicit(&w->c.recv_win, 1, memory_order_relaxed);
            if (len - n >= HDR_LEN) {
                uint64_t ts;
                memcpy(&ts, p + n, 8);
                hist_add(&w->lat, now > ts ? now - ts : 0);
            }
        }
    }
ack:
    if (qos == 1) {
        enc_ack(&c->out, 0x40, id);
    } else if (qos == 2) {
        enc_ack(&c->out, 0x50, id);
    }
}

/* Dispatch one complete packet; true when c was freed or closed. [worker thread] */
static bool
on_packet(struct conn *c, uint8_t h, const uint8_t *p, size_t len, uint64_t now)
{
    unsigned id = len >= 2 ? ((unsigned)p[0] << 8) | p[1] : 0;
    char tmp[32];

    switch (h >> 4) {
    case 2: /* CONNACK */
        if (c->state != CS_WAIT_CONNACK || len < 2 || p[1] != 0) {
            errno = 0;
            if (c->role == ROLE_STORM || c->role == ROLE_IDLE) {
                storm_finish(c, false, now);
                return true;
            }
            fatal(c, "CONNACK refused");
            return true;
        }
        if (c->role == ROLE_STORM || c->role == ROLE_IDLE) {
            storm_finish(c, true, now);
            return true;
        }
        if (c->role == ROLE_PUB) {
            c->state = CS_READY;
            atomic_fetch_add(&g_ready, 1);
            return false;
        }
        enc_subscribe(&c->out, c->role == ROLE_STALL ? "bench/#" : sub_filter(c->index, tmp,
                      sizeof(tmp)), opt.subqos);
        c->state = CS_WAIT_SUBACK;
        return false;
    case 9: /* SUBACK */
        if (c->state != CS_WAIT_SUBACK || len < 3 || p[len - 1] >= 0x80) {
            errno = 0;
            fatal(c, "SUBACK refused");
            return true;
        }
        c->state = CS_READY;
        atomic_fetch_add(&g_ready, 1);
        if (c->role == ROLE_STALL) {
            conn_set_events(c, 0); /* never read again */
        }
        return false;
    case 3:
        on_publish(c, h & 0x0f, p, len, now);
        return false;
    case 4: /* PUBACK */
        pub_acked(c, id, 1, true);
        return false;
    case 5: /* PUBREC */
        pub_acked(c, id, 1, false);
        return false;
    case 6: /* PUBREL */
        enc_ack(&c->out, 0x70, id);
        return false;
    case 7: /* PUBCOMP */
        pub_acked(c, id, 2, true);
        return false;
    case 13: /* PINGRESP */
        return false;
    case 14: /* DISCONNECT from a v5 broker */
        errno = 0;
        fatal(c, "broker sent DISCONNECT");
        return true;
    default:
        atomic_fetch_add_explicit(&c->w->c.errors, 1, memory_order_relaxed);
        return false;
    }
}

/* Read once and parse every complete packet. [worker thread] */
static void
conn_read(struct conn *c)
{
    struct buf *b = &c->in;
    uint8_t small[64];
    ssize_t n;
    uint64_t now;
    size_t pos;

    if (b->cap == 0 && (c->role == ROLE_STORM || c->role == ROLE_IDLE)) {
        /* connection-count modes: no per-conn buffer unless a packet is split */
        n = recv(c->fd, small, sizeof(small), 0);
        if (n > 0) {
            buf_put(b, small, (size_t)n);
        }
    } else {
        if (b->cap - b->len < IN_CAP / 4) {
            buf_reserve(b, b->cap < IN_CAP ? IN_CAP : b->cap);
        }
        n = recv(c->fd, b->data + b->len, b->cap - b->len, 0);
        if (n > 0) {
            b->len += (size_t)n;
        }
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (n == 0) {
            errno = ECONNRESET;
        }
        if (c->state != CS_READY && (c->role == ROLE_STORM || c->role == ROLE_IDLE)) {
            storm_finish(c, false, now_ns());
            return;
        }
        if (c->role == ROLE_STALL) {
            fprintf(stderr, "midge-bench: the broker closed the stalled subscriber\n");
        } else if (atomic_load(&g_phase) != PH_DONE) {
            fatal(c, "broker closed the connection");
        }
        conn_close(c, false);
        return;
    }
    if (n < 0) {
        return;
    }
    now = now_ns();
    pos = b->off;
    while (pos + 2 <= b->len) {
        size_t rl = 0;
        int shift = 0;
        size_t q = pos + 1;
        bool complete = false;

        while (q < b->len && q < pos + 5) {
            uint8_t d = b->data[q++];
            rl |= (size_t)(d & 0x7f) << shift;
            shift += 7;
            if (!(d & 0x80)) {
                complete = true;
                break;
            }
        }
        if (!complete || q + rl > b->len) {
            break; /* the next read appends; buf_reserve grows the buffer */
        }
        if (on_packet(c, b->data[pos], b->data + q, rl, now)) {
            return; /* conn freed or closed: do not touch it */
        }
        pos = q + rl;
    }
    b->off = pos;
    if (b->off == b->len) {
        b->off = 0;
        b->len = 0;
    }
    if (c->out.len > c->out.off && conn_flush(c) != 0) {
        fatal(c, "send ack");
    }
}

static void
conn_event(struct conn *c, uint32_t ev)
{
    if (c->state == CS_CONNECTING) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            conn_connected(c);
        }
        return;
    }
    if (ev & EPOLLOUT) {
        if (conn_flush(c) != 0) {
            fatal(c, "send");
            return;
        }
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        conn_read(c);
    }
}

/* Append PINGREQ to conns that have been quiet for keepalive/2. [worker thread] */
static void
keepalive_tick(struct worker *w, uint64_t now)
{
    int i;
    uint64_t every = (uint64_t)opt.keepalive * NS_PER_S / 2;

    if (opt.keepalive == 0) {
        return;
    }
    for (i = 0; i < w->nconns; i++) {
        struct conn *c = w->conns[i];
        if (c->fd >= 0 && c->state == CS_READY && now - c->last_tx > every) {
            static const uint8_t ping[2] = { 0xc0, 0 };
            buf_put(&c->out, ping, 2);
            if (conn_flush(c) != 0) {
                fatal(c, "send PINGREQ");
            }
            c->last_tx = now;
        }
    }
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t last_tick = now_ns();
    int i;

    prctl(PR_SET_TIMERSLACK, 1UL);
    if (opt.mode == MODE_LOAD) {
        for (i = 0; i < w->nconns; i++) {
            if (conn_open(w->conns[i]) != 0) {
                fatal(w->conns[i], "connect");
            }
        }
    } else {
        storm_next(w);
    }
    for (;;) {
        int ph = atomic_load(&g_phase);
        uint64_t now = now_ns();
        uint64_t wait = 5 * 1000 * 1000;
        struct timespec ts;
        int n;

        if (ph == PH_DONE || atomic_load(&g_fatal)) {
            break;
        }
        if (ph == PH_DRAIN && !atomic_load_explicit(&w->stopped, memory_order_relaxed)) {
            atomic_store(&w->stopped, 1);
        }
        if (ph == PH_RUN) {
            for (i = 0; i < w->npubs; i++) {
                struct conn *c = w->pubs[i];
                if (c->state != CS_READY || c->out.off < c->out.len) {
                    continue;
                }
                if (opt.rate > 0) {
                    uint64_t due = g_t0 + (uint64_t)c->seq * g_interval;
                    if (opt.qos > 0 && (int)c->inflight >= opt.window) {
                        continue;
                    }
                    wait = due <= now ? 0 : (due - now < wait ? due - now : wait);
                } else if (opt.qos == 0 || opt.window - (int)c->inflight >=
                           (opt.batch < opt.window ? opt.batch : opt.window)) {
                    wait = 0;
                }
            }
        }
        ts.tv_sec = 0;
        ts.tv_nsec = (long)wait;
        n = epoll_pwait2(w->ep, evs, MAX_EVENTS, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            fatal(NULL, "epoll_pwait2");
            break;
        }
        for (i = 0; i < n; i++) {
            conn_event(evs[i].data.ptr, evs[i].events);
        }
        now = now_ns();
        if (ph == PH_RUN) {
            for (i = 0; i < w->npubs; i++) {
                pub_fill(w->pubs[i], now);
            }
        }
        if (now - last_tick > NS_PER_S) {
            keepalive_tick(w, now);
            last_tick = now;
        }
    }
    for (i = 0; i < w->nconns; i++) {
        conn_close(w->conns[i], true);
    }
    return NULL;
}

/* ---- set-up and reporting ---- */

static void
usage(FILE *f)
{
    fprintf(f,
"usage: midge-bench [options]\n"
"Pipelining MQTT load generator; connects to 127.0.0.1 only.\n"
"\n"
"common:\n"
"  -p, --port N          broker port on 127.0.0.1 (1883)\n"
"  -u, --sub-port N      subscribers connect to this port instead (another node of a\n"
"                        cluster: latency then includes the cross-node hop)\n"
"  -m, --mode M          load | storm | idle (load)\n"
"  -t, --threads N       threads, each with an epoll loop over many connections (1;\n"
"                        on a 2-core machine one thread leaves the broker the most CPU)\n"
"  -V, --mqtt 3|5        MQTT 3.1.1 (default) or 5.0 with a minimal CONNECT\n"
"  -k, --keepalive S     CONNECT keep alive; PINGREQ sent every S/2 (60; idle: 600)\n"
"  -L, --label NAME      scenario name printed in the RESULT line\n"
"\n"
"load mode:\n"
"  -T, --topo T          pair: pub i -> sub i on bench/i (pubs must equal subs)\n"
"                        fanin: N pubs on bench/i -> subs on bench/#\n"
"                        fanout: pubs on bench/0 -> N subs on bench/0\n"
"                        nm: N pubs on bench/i -> M subs on bench/#\n"
"  -P, --pubs N          publishers (pair 4, fanin 10, fanout 1, nm 4)\n"
"  -S, --subs N          subscribers (pair 4, fanin 1, fanout 10, nm 4)\n"
"  -X, --stalled N       extra subscribers on bench/# that never read (0)\n"
"  -q, --qos Q           publish QoS 0/1/2 (0)\n"
"  -Q, --sub-qos Q       subscription QoS (same as -q)\n"
"  -s, --size BYTES      payload size; >= 16 carries the latency stamp (64)\n"
"  -d, --duration S      measured seconds (10)\n"
"  -w, --warmup S        seconds of publishing before measuring (2)\n"
"  -D, --drain S         after publishing stops, wait at most S for stragglers (5)\n"
"  -r, --rate R          total msg/s, evenly paced over publishers; 0 = as fast as\n"
"                        possible (0). Latency is from the scheduled send time.\n"
"  -b, --batch N         PUBLISH packets per write (32)\n"
"  -W, --window N        max unacked QoS 1/2 messages per publisher (1000)\n"
"  -R, --persistent-subs subscribers keep their session (clean session 0; MQTT 5:\n"
"                        Session Expiry never), so a persistence plugin stores\n"
"                        their deliveries\n"
"\n"
"storm and idle modes:\n"
"  -c, --conns N         connections to open (1000)\n"
"  -C, --concurrency N   connects in progress at once, all threads together (100)\n"
"  -K, --keep            storm: keep connections open until the end (default:\n"
"                        DISCONNECT right after CONNACK)\n"
"  -H, --hold S          idle: seconds to hold the connections (10); the line\n"
"                        'IDLE_READY conns=N' is printed when all are connected\n"
"\n"
"Output: human-readable text, then one line 'RESULT key=value ...'.\n"
"Rates are counted inside the measured window only. loss = expected deliveries\n"
"(sent x subscribers per message) - received, counted after the drain.\n"
"Exit status: 0 ok, 1 the run failed (broker closed or refused), 2 bad usage.\n");
}

static int
parse_int(const char *s, int lo, int hi)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "midge-bench: bad number '%s' (range %d..%d)\n", s, lo, hi);
        exit(2);
    }
    return (int)v;
}

static double
parse_num(const char *s, double lo, double hi)
{
    char *end;
    double v = strtod(s, &end);

    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "midge-bench: bad number '%s' (range %g..%g)\n", s, lo, hi);
        exit(2);
    }
    return v;
}

static int
parse_name(const char *s, const char *const *names, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            return i;
        }
    }
    fprintf(stderr, "midge-bench: unknown name '%s'\n", s);
    exit(2);
}

static void
parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        { "port", 1, NULL, 'p' }, { "mode", 1, NULL, 'm' }, { "threads", 1, NULL, 't' },
        { "mqtt", 1, NULL, 'V' }, { "keepalive", 1, NULL, 'k' }, { "label", 1, NULL, 'L' },
        { "topo", 1, NULL, 'T' }, { "pubs", 1, NULL, 'P' }, { "subs", 1, NULL, 'S' },
        { "stalled", 1, NULL, 'X' }, { "qos", 1, NULL, 'q' }, { "sub-qos", 1, NULL, 'Q' },
        { "size", 1, NULL, 's' }, { "duration", 1, NULL, 'd' }, { "warmup", 1, NULL, 'w' },
        { "drain", 1, NULL, 'D' }, { "rate", 1, NULL, 'r' }, { "batch", 1, NULL, 'b' },
        { "window", 1, NULL, 'W' }, { "conns", 1, NULL, 'c' }, { "concurrency", 1, NULL, 'C' },
        { "keep", 0, NULL, 'K' }, { "hold", 1, NULL, 'H' }, { "help", 0, NULL, 'h' },
        { "persistent-subs", 0, NULL, 'R' }, { "sub-port", 1, NULL, 'u' },
        { NULL, 0, NULL, 0 },
    };
    int ch;

    while ((ch = getopt_long(argc, argv, "p:m:t:V:k:L:T:P:S:X:q:Q:s:d:w:D:r:b:W:c:C:KH:hRu:", lo,
                             NULL)) != -1) {
        switch (ch) {
        case 'p': opt.port = parse_int(optarg, 1, 65535); break;
        case 'u': opt.sub_port = parse_int(optarg, 1, 65535); break;
        case 'm': opt.mode = (enum mode)parse_name(optarg, mode_names, 3); break;
        case 't': opt.threads = parse_int(optarg, 1, MAX_THREADS); break;
        case 'V': opt.version = parse_int(optarg, 3, 5) == 5 ? 5 : 4; break;
        case 'k': opt.keepalive = parse_int(optarg, 0, 65535); break;
        case 'L': opt.label = optarg; break;
        case 'T': opt.topo = (enum topo)parse_name(optarg, topo_names, 4); break;
        case 'P': opt.pubs = parse_int(optarg, 0, 65535); break;
        case 'S': opt.subs = parse_int(optarg, 0, 10000); break;
        case 'X': opt.stalled = parse_int(optarg, 0, 1000); break;
        case 'q': opt.qos = parse_int(optarg, 0, 2); break;
        case 'Q': opt.subqos = parse_int(optarg, 0, 2); break;
        case 's': opt.size = (size_t)parse_int(optarg, 0, 64 * 1024 * 1024); break;
        case 'd': opt.duration = parse_num(optarg, 0.1, 3600); break;
        case 'w': opt.warmup = parse_num(optarg, 0, 600); break;
        case 'D': opt.drain = parse_num(optarg, 0, 600); break;
        case 'r': opt.rate = parse_num(optarg, 0, 1e9); break;
        case 'b': opt.batch = parse_int(optarg, 1, 100000); break;
        case 'W': opt.window = parse_int(optarg, 1, 65000); break;
        case 'R': opt.persistent = true; break;
        case 'c': opt.conns = parse_int(optarg, 1, 1000000); break;
        case 'C': opt.concurrency = parse_int(optarg, 1, 100000); break;
        case 'K': opt.keep = true; break;
        case 'H': opt.hold = parse_num(optarg, 0, 3600); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        usage(stderr);
        exit(2);
    }
    if (opt.pubs < 0) {
        opt.pubs = opt.topo == TOPO_FANIN ? 10 : opt.topo == TOPO_FANOUT ? 1 : 4;
    }
    if (opt.subs < 0) {
        opt.subs = opt.topo == TOPO_FANIN ? 1 : opt.topo == TOPO_FANOUT ? 10 : 4;
    }
    if (opt.subqos < 0) {
        opt.subqos = opt.qos;
    }
    if (opt.keepalive < 0) {
        opt.keepalive = opt.mode == MODE_IDLE ? 600 : 60;
    }
    if (opt.mode == MODE_LOAD && opt.topo == TOPO_PAIR && opt.pubs != opt.subs) {
        die("pair topology needs as many publishers as subscribers");
    }
    if (opt.mode == MODE_LOAD && opt.pubs + opt.subs == 0) {
        die("nothing to do: no publishers and no subscribers");
    }
    if (opt.label == NULL) {
        opt.label = opt.mode == MODE_LOAD ? topo_names[opt.topo] : mode_names[opt.mode];
    }
}

static void
raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (opt.mode == MODE_IDLE || opt.keep) &&
        (rlim_t)opt.conns + 64 > rl.rlim_cur) {
        fprintf(stderr, "midge-bench: warning: %d connections but RLIMIT_NOFILE is %llu\n",
                opt.conns, (unsigned long long)rl.rlim_cur);
    }
}

static struct conn *
new_load_conn(struct worker *w, enum role role, int index)
{
    struct conn *c = calloc(1, sizeof(*c));
    struct conn **n;

    if (c == NULL) {
        die("out of memory");
    }
    c->w = w;
    c->fd = -1;
    c->role = role;
    c->index = index;
    n = realloc(w->conns, sizeof(*n) * (size_t)(w->nconns + 1));
    if (n == NULL) {
        die("out of memory");
    }
    w->conns = n;
    w->conns[w->nconns++] = c;
    if (role == ROLE_PUB) {
        char topic[32];
        snprintf(topic, sizeof(topic), "bench/%d", opt.topo == TOPO_FANOUT ? 0 : index);
        pub_template(c, topic);
        if (opt.qos > 0) {
            c->idstate = calloc(65536, 1);
            if (c->idstate == NULL) {
                die("out of memory");
            }
        }
        n = realloc(w->pubs, sizeof(*n) * (size_t)(w->npubs + 1));
        if (n == NULL) {
            die("out of memory");
        }
        w->pubs = n;
        w->pubs[w->npubs++] = c;
    }
    if (role == ROLE_SUB) {
        c->next_seq = calloc((size_t)opt.pubs + 1, sizeof(*c->next_seq));
        if (c->next_seq == NULL) {
            die("out of memory");
        }
    }
    return c;
}

static uint64_t
sum(size_t field_off)
{
    uint64_t s = 0;
    int i;

    for (i = 0; i < opt.threads; i++) {
        s += atomic_load_explicit((_Atomic uint64_t *)((char *)&workers[i].c + field_off),
                                  memory_order_relaxed);
    }
    return s;
}

#define SUM(f) sum(offsetof(struct counters, f))

static int
run_load(void)
{
    int total = opt.pubs + opt.subs + opt.stalled;
    uint64_t deadline;
    uint64_t expected;
    uint64_t last_progress;
    uint64_t last_val = 0;
    uint64_t sent, recv, acked, drain_start;
    double loss_pct;
    struct hist lat = { 0 };
    int i;
    bool drained = false;

    for (i = 0; i < opt.pubs; i++) {
        new_load_conn(&workers[i % opt.threads], ROLE_PUB, i);
    }
    for (i = 0; i < opt.subs; i++) {
        new_load_conn(&workers[i % opt.threads], ROLE_SUB, i);
    }
    for (i = 0; i < opt.stalled; i++) {
        new_load_conn(&workers[(opt.subs + i) % opt.threads], ROLE_STALL, i);
    }
    if (opt.rate > 0 && opt.pubs > 0) {
        g_interval = (uint64_t)((double)NS_PER_S * opt.pubs / opt.rate);
        if (g_interval == 0) {
            g_interval = 1;
        }
    }
    for (i = 0; i < opt.threads; i++) {
        if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]) != 0) {
            die("pthread_create");
        }
    }
    deadline = now_ns() + 30 * NS_PER_S;
    while (atomic_load(&g_ready) < total && !atomic_load(&g_fatal) && now_ns() < deadline) {
        sleep_ns(1000000);
    }
    if (atomic_load(&g_ready) < total && !atomic_load(&g_fatal)) {
        errno = ETIMEDOUT;
        fatal(NULL, "set-up timed out (connect/subscribe)");
    }
    g_t0 = now_ns() + 1000000;
    g_win_start = g_t0 + (uint64_t)(opt.warmup * NS_PER_S);
    g_win_end = g_win_start + (uint64_t)(opt.duration * NS_PER_S);
    atomic_store(&g_phase, PH_RUN);
    while (!atomic_load(&g_fatal) && now_ns() < g_win_end) {
        sleep_ns(2000000);
    }
    atomic_store(&g_phase, PH_DRAIN);
    /* the counters are final for senders only once every worker saw the drain */
    for (i = 0; i < opt.threads; i++) {
        while (!atomic_load(&workers[i].stopped) && !atomic_load(&g_fatal)) {
            sleep_ns(100000);
        }
    }
    drain_start = now_ns();
    last_progress = drain_start;
    while (!atomic_load(&g_fatal)) {
        uint64_t now = now_ns();
        uint64_t v;
        sent = SUM(sent);
        recv = SUM(recv);
        acked = SUM(acked);
        expected = sent * (uint64_t)(opt.topo == TOPO_PAIR ? 1 : opt.subs);
        if (recv >= expected && (opt.qos == 0 || acked >= sent)) {
            drained = true;
            break;
        }
        v = recv + acked;
        if (v != last_val) {
            last_val = v;
            last_progress = now;
        }
        if (now - drain_start > (uint64_t)(opt.drain * NS_PER_S) ||
            now - last_progress > NS_PER_S) {
            break;
        }
        sleep_ns(2000000);
    }
    atomic_store(&g_phase, PH_DONE);
    for (i = 0; i < opt.threads; i++) {
        pthread_join(workers[i].tid, NULL);
        hist_merge(&lat, &workers[i].lat);
    }
    sent = SUM(sent);
    recv = SUM(recv);
    acked = SUM(acked);
    expected = sent * (uint64_t)(opt.topo == TOPO_PAIR ? 1 : opt.subs);
    loss_pct = expected ? 100.0 * ((double)expected - (double)recv) / (double)expected : 0;
    if (recv > expected) {
        loss_pct = 0;
    }
    double sent_rate = (double)SUM(sent_win) / opt.duration;
    double recv_rate = (double)SUM(recv_win) / opt.duration;
    printf("%s: topo=%s qos=%d/%d mqtt=%s pubs=%d subs=%d stalled=%d size=%zu threads=%d "
           "batch=%d window=%d rate=%s\n", opt.label, topo_names[opt.topo], opt.qos, opt.subqos,
           opt.version == 5 ? "5" : "3.1.1", opt.pubs, opt.subs, opt.stalled, opt.size,
           opt.threads, opt.batch, opt.window, opt.rate > 0 ? "paced" : "max");
    printf("  published %.0f msg/s, delivered %.0f msg/s over %.1f s (after %.1f s warm-up)\n",
           sent_rate, recv_rate, opt.duration, opt.warmup);
    printf("  total sent %" PRIu64 ", expected deliveries %" PRIu64 ", received %" PRIu64
           ", missing %" PRId64 " (%.3f%%)%s\n", sent, expected, recv,
           (int64_t)(expected - recv), loss_pct, drained ? "" : ", drain timed out");
    if (opt.qos > 0) {
        printf("  acknowledged %" PRIu64 " of %" PRIu64 " publishes\n", acked, sent);
    }
    if (lat.n > 0) {
        printf("  latency (%" PRIu64 " samples, %s): p50 %.1f us, p99 %.1f us, p99.9 %.1f us, "
               "max %.1f us\n", lat.n, opt.rate > 0 ? "from scheduled send" : "from write",
               hist_pct_us(&lat, 50), hist_pct_us(&lat, 99), hist_pct_us(&lat, 99.9),
               (double)lat.max / 1000.0);
    }
    if (SUM(gaps) + SUM(reorder) > 0) {
        printf("  sequence check: %" PRIu64 " skipped inside publisher sequences, %" PRIu64
               " duplicated or out of order\n", SUM(gaps), SUM(reorder));
    }
    if (SUM(foreign) > 0) {
        printf("  ignored %" PRIu64 " messages from another run (wrong nonce)\n", SUM(foreign));
    }
    if (SUM(errors) > 0) {
        printf("  protocol errors/unexpected packets: %" PRIu64 "\n", SUM(errors));
    }
    printf("RESULT mode=load scenario=%s topo=%s qos=%d subqos=%d mqtt=%d pubs=%d subs=%d "
           "stalled=%d size=%zu threads=%d batch=%d window=%d rate=%.0f duration=%.1f "
           "sent=%" PRIu64 " expected=%" PRIu64 " recv=%" PRIu64 " acked=%" PRIu64
           " sent_rate=%.0f recv_rate=%.0f loss=%" PRId64 " loss_pct=%.3f drained=%d "
           "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f gaps=%" PRIu64 " reorder=%" PRIu64 " foreign=%" PRIu64 " errors=%" PRIu64 " ok=%d\n",
           opt.label, topo_names[opt.topo], opt.qos, opt.subqos, opt.version == 5 ? 5 : 4,
           opt.pubs, opt.subs, opt.stalled, opt.size, opt.threads, opt.batch, opt.window,
           opt.rate, opt.duration, sent, expected, recv, acked, sent_rate, recv_rate,
           (int64_t)(expected - recv), loss_pct, drained ? 1 : 0, hist_pct_us(&lat, 50),
           hist_pct_us(&lat, 99), hist_pct_us(&lat, 99.9), (double)lat.max / 1000.0,
           SUM(gaps), SUM(reorder), SUM(foreign), SUM(errors), atomic_load(&g_fatal) ? 0 : 1);
    return atomic_load(&g_fatal) ? 1 : 0;
}

static int
run_conns(void)
{
    uint64_t start;
    uint64_t deadline;
    uint64_t end = 0;
    uint64_t done, failed;
    struct hist lat = { 0 };
    int i;
    int per = opt.conns / opt.threads;
    int cper = opt.concurrency / opt.threads;

    for (i = 0; i < opt.threads; i++) {
        workers[i].share = per + (i < opt.conns % opt.threads ? 1 : 0);
        workers[i].todo = workers[i].share;
        workers[i].conc = cper + (i < opt.concurrency % opt.threads ? 1 : 0);
        if (workers[i].conc < 1) {
            workers[i].conc = 1;
        }
    }
    start = now_ns();
    for (i = 0; i < opt.threads; i++) {
        if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]) != 0) {
            die("pthread_create");
        }
    }
    /* connect phase: bounded by 60 s, or the duration for storm */
    deadline = start + (uint64_t)((opt.mode == MODE_STORM ? opt.duration + 50 : 60) * NS_PER_S);
    do {
        sleep_ns(1000000);
        done = SUM(done);
        failed = SUM(failed);
    } while (done + failed < (uint64_t)opt.conns && now_ns() < deadline && !atomic_load(&g_fatal));
    if (opt.mode == MODE_IDLE) {
        printf("IDLE_READY conns=%" PRIu64 " failed=%" PRIu64 "\n", done, failed);
        fflush(stdout);
        sleep_ns((uint64_t)(opt.hold * NS_PER_S));
    }
    atomic_store(&g_phase, PH_DONE);
    for (i = 0; i < opt.threads; i++) {
        pthread_join(workers[i].tid, NULL);
        hist_merge(&lat, &workers[i].lat);
    }
    done = SUM(done);
    failed = SUM(failed);
    for (i = 0; i < opt.threads; i++) {
        if (workers[i].last_done_ns > end) {
            end = workers[i].last_done_ns;
        }
    }
    if (end <= start) {
        end = now_ns();
    }
    double secs = (double)(end - start) / NS_PER_S;
    double rate = secs > 0 ? (double)done / secs : 0;
    printf("%s: %" PRIu64 " connected, %" PRIu64 " failed in %.3f s: %.0f connects/s "
           "(mqtt %s, %d threads, %d in parallel%s)\n", opt.label, done, failed, secs, rate,
           opt.version == 5 ? "5" : "3.1.1", opt.threads, opt.concurrency,
           opt.mode == MODE_IDLE ? ", held" : opt.keep ? ", kept open" : ", closed after CONNACK");
    printf("  connect to CONNACK: p50 %.1f us, p99 %.1f us, max %.1f us\n", hist_pct_us(&lat, 50),
           hist_pct_us(&lat, 99), (double)lat.max / 1000.0);
    printf("RESULT mode=%s scenario=%s conns=%d connected=%" PRIu64 " failed=%" PRIu64
           " seconds=%.3f connect_rate=%.0f p50_us=%.1f p99_us=%.1f keep=%d hold=%.1f ok=%d\n",
           mode_names[opt.mode], opt.label, opt.conns, done, failed, secs, rate,
           hist_pct_us(&lat, 50), hist_pct_us(&lat, 99), opt.keep ? 1 : 0,
           opt.mode == MODE_IDLE ? opt.hold : 0.0, failed == 0 && !atomic_load(&g_fatal));
    return failed == 0 && !atomic_load(&g_fatal) ? 0 : 1;
}

int
main(int argc, char **argv)
{
    int i;
    int rc;

    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&g_addr, 0, sizeof(g_addr));
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)opt.port);
    g_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_sub_addr = g_addr;
    if (opt.sub_port != 0) {
        g_sub_addr.sin_port = htons((uint16_t)opt.sub_port);
    }
    snprintf(g_idprefix, sizeof(g_idprefix), "mb%d-", (int)getpid());
    g_nonce = (uint16_t)(getpid() ^ (now_ns() >> 10));
    workers = calloc((size_t)opt.threads, sizeof(*workers));
    if (workers == NULL) {
        die("out of memory");
    }
    for (i = 0; i < opt.threads; i++) {
        workers[i].idx = i;
        workers[i].ep = epoll_create1(EPOLL_CLOEXEC);
        if (workers[i].ep < 0) {
            die("epoll_create1");
        }
    }
    rc = opt.mode == MODE_LOAD ? run_load() : run_conns();
    for (i = 0; i < opt.threads; i++) {
        int j;
        for (j = 0; j < workers[i].nconns; j++) {
            conn_free(workers[i].conns[j]);
        }
        free(workers[i].conns);
        free(workers[i].pubs);
        close(workers[i].ep);
    }
    free(workers);
    return rc;
}
