/*
 * The running bridge: shared declarations of the plugin's files.
 *
 *   plugin.c    descriptor, init/reload/cleanup, the plugin-wide state
 *   config.c    the bridges file (pure)
 *   link.c      one bridge's connection: socket, MQTT client state machine,
 *               keepalive, reconnect with backoff, address failover
 *   outgoing.c  local -> remote: the internal session's deliveries, held in
 *               order, sent within the remote's Receive Maximum, acknowledged
 *               to the session only on the remote's ack
 *   inbound.c   remote -> local: topic mapping, publishing through the hooks,
 *               QoS 1/2 acknowledged to the remote once settled locally
 *   notify.c    connection state notifications and the will
 *   metrics.c   per-link metrics (label `link`) and the address in use
 *
 * Threads: a bridge lives on its internal session's home worker. Everything
 * in struct bridge below `home-worker fields` is touched only there (from
 * the session callbacks and the timers and fd watchers started there). The
 * main thread (reload, cleanup) talks to it through `cmd` and the eventfd
 * `kick`.
 */
#ifndef BRIDGE_BRIDGE_H
#define BRIDGE_BRIDGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"
#include "metrics.h"
#include "midge/plugin.h"
#include "mqtt.h"

struct bridge;

/* Plugin-wide state (one per instance). Owned by plugin.c; freed at cleanup. */
struct bridge_ctx {
    const struct midge_api *api;
    midge_plugin *self;
    char *path;                   /* plugin_opt_bridges */
    char hostname[256];
    struct bridge *bridges;       /* main thread: the configured bridges */
    struct bridge *retired;       /* main thread: bridges stopping or stopped on their worker */
    struct bridge_gen *generations; /* main thread: every parsed file, freed at cleanup */
    midge_metric *m_sent;         /* messages sent to remotes */
    midge_metric *m_received;     /* messages received from remotes */
    midge_metric *m_dropped;      /* messages dropped (queue full, too large, QoS 0 offline) */
    midge_metric *m_connects;     /* successful connections */
    midge_metric *m_loops;        /* messages dropped as already seen (loop or duplicate) */
    midge_metric *m_connected;    /* gauge: links up now (dashboards read the state from it) */
    struct loop_state loop;
};

/* A growable byte buffer. Owns data. */
struct bbuf {
    uint8_t *data;
    size_t len;
    size_t off;  /* consumed from the front */
    size_t cap;
};

/* A QoS 1/2 message the session delivered, held until the remote acknowledges it. */
struct held {
    struct held *prev;
    struct held *next;
    const midge_message *msg;  /* a reference (api->message_ref); NULL when restored released */
    uint16_t id;               /* the session's id, also our packet id towards the remote */
    uint8_t qos;               /* delivery QoS towards the remote */
    uint8_t retain;
    uint8_t state;             /* enum held_state */
    uint8_t dup;               /* sent before: DUP on the next send */
    uint32_t bytes;            /* topic + payload, for queue_max_bytes */
    struct origin origin;      /* sent as the midge-origin property (MQTT 5) */
};

enum held_state {
    HELD_WAITING = 0,  /* not sent on this connection */
    HELD_SENT = 1,     /* PUBLISH sent, waiting for PUBACK / PUBREC */
    HELD_RELEASED = 2, /* QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP */
};

enum link_state {
    LINK_IDLE = 0,      /* session not open yet */
    LINK_RESOLVING,     /* getaddrinfo on the blocking pool */
    LINK_CONNECTING,    /* non-blocking connect in progress */
    LINK_TLS,           /* TLS handshake */
    LINK_CONNACK,       /* CONNECT sent */
    LINK_SUBSCRIBING,   /* CONNACK ok, waiting for SUBACK/UNSUBACK before publishing */
    LINK_UP,
    LINK_BACKOFF,       /* waiting to reconnect */
    LINK_STOPPED,       /* start_type once after a failure, or being removed */
    LINK_LAZY,          /* start_type lazy: not connected until `threshold` messages wait */
};

/* Commands from the main thread (struct bridge.cmd). */
enum bridge_cmd {
    CMD_NONE = 0,
    CMD_STOP = 1,     /* removed from the file: close and end the session, then retire */
    CMD_RESTART = 2,  /* changed: close, then start again with `next_conf` */
};

struct bridge_tls;
struct in_ack;

/*
 * One bridge. Created by the main thread (plugin.c); from session_open on,
 * its home-worker fields belong to the home worker. Freed by the main
 * thread (reload or cleanup) once `done` is set or the workers stopped.
 */
struct bridge {
    struct bridge_ctx *ctx;
    struct bridge *next;             /* main thread list */
    /*
     * Configurations are immutable and owned by ctx->generations (freed at
     * cleanup), so both threads may read them without a lock.
     */
    const struct bridge_conf *conf;  /* the home worker's; replaced there on CMD_RESTART */
    const struct bridge_conf *next_conf; /* set by the main thread before cmd = CMD_RESTART */
    const struct bridge_conf *latest;    /* main thread: the last one given to this bridge */
    int kick;                        /* eventfd: the main thread wakes the home worker */
    atomic_int cmd;                  /* enum bridge_cmd */
    atomic_int done;                 /* the home worker let go of everything (retire) */
    struct link_metrics lm;          /* metrics.h says which thread touches what */

    /* home-worker fields */
    midge_session *s;
    pthread_t home;                  /* written once, before have_home becomes 1 */
    atomic_int have_home;            /* read by every worker's thread_stop: atomic */
    midge_watch *kick_watch;
    int state;                       /* enum link_state */
    int counted_up;                  /* counted in the `connected` gauge (notify_state) */
    int fd;
    midge_watch *watch;
    int watch_events;
    midge_timer *timer;              /* backoff / connect timeout */
    midge_timer *ka_timer;           /* keepalive */
    midge_timer *idle_timer;         /* start_type lazy: every idle_timeout while up */
    uint64_t activity;               /* packets in and PUBLISHes out, for idle_timeout */
    uint64_t idle_seen;              /* `activity` at the last idle check */
    int ping_out;                    /* PINGREQ sent, no packet since */
    int ka_keepalive;                /* keepalive used on this connection (server may set it) */
    size_t addr_idx;
    double backoff;                  /* last delay, for decorrelated jitter */
    int private_refused;             /* try_private was refused: connect without it */
    struct bridge_resolve *resolving;
    /* round_robin false, connected to a secondary address: probes of the first one */
    midge_timer *probe_timer;
    midge_watch *probe_watch;
    int probe_fd;
    struct bridge_resolve *probe_resolving;
    struct bridge_tls *tls;
    struct bbuf in;
    struct bbuf out;
    int version;                     /* protocol used on this connection */
    uint16_t remote_rm;              /* remote's Receive Maximum (65535 for v3) */
    uint32_t remote_maxpkt;          /* 0: none */
    uint8_t remote_maxqos;
    uint8_t remote_retain;
    uint16_t acks_pending;           /* SUBACK/UNSUBACK still expected before publishing */
    char reason[160];                /* why the last connection ended, for logs */
    /* outgoing */
    struct held *head;
    struct held *tail;
    struct held **by_id;             /* 65536 entries, allocated when the session opens */
    uint32_t nheld;
    uint64_t held_bytes;
    uint32_t inflight;               /* HELD_SENT + HELD_RELEASED on this connection */
    struct held *cursor;             /* first HELD_WAITING not yet sent, or NULL */
    uint64_t drops;
    /* inbound */
    uint8_t qos2_in[8192];           /* bitmap of QoS 2 packet ids published, awaiting PUBREL */
    struct in_ack *acks_head;        /* acknowledgements owed to the remote, in order (inbound.c) */
    struct in_ack *acks_tail;
};

/* One parsed bridges file. Owned by ctx->generations. */
struct bridge_gen {
    struct bridge_gen *next;
    struct bridge_conf *list;
};

/* link.c */
void link_want(struct bridge *b, int events);
void link_ready(struct bridge *b);
void link_start(struct bridge *b);
void link_stop(struct bridge *b, const char *why);
void link_drop(struct bridge *b, const char *why);
int link_send(struct bridge *b, const struct mqtt_packet *p);
void link_flush(struct bridge *b);
void link_on_kick(void *arg, int fd, int revents);
int link_tls_on(const struct bridge *b);
/* The first start of a bridge: connects, or with start_type lazy waits for messages. */
void link_begin(struct bridge *b);
/* start_type lazy: connects once `threshold` messages wait. */
void link_lazy_check(struct bridge *b);

/* outgoing.c */
int out_send_publish(struct bridge *b, const midge_message *msg, int qos, int retain,
                     uint16_t pid, int dup, const struct origin *o);
void out_deliver(void *arg, midge_session *s, const midge_message *msg, int qos, int retain,
                 uint32_t id, int dup);
/* The session hands back a QoS 2 delivery released before (a restart): PUBREL it again. */
void out_released(void *arg, midge_session *s, uint32_t id);
void out_pump(struct bridge *b);
void out_on_ack(struct bridge *b, const struct mqtt_packet *p);
void out_link_lost(struct bridge *b);
/*
 * The session's window for the link's state (ABI 1.2 session_window): its
 * queue_max_messages while up (what does not fit waits in the session, which
 * is what pauses local publishers), 65535 while down. See outgoing.c.
 */
void out_window(struct bridge *b, int up);
void out_free(struct bridge *b);
/*
 * The user properties of `in` without any midge-origin, then ours for `o`,
 * encoded (0x26 included) into buf. Returns the length, 0 when they do not fit.
 */
size_t bridge_user_props_with_origin(const struct mqtt_props *in, const struct origin *o,
                                     uint8_t *buf, size_t cap);

/* inbound.c */
void in_on_packet(struct bridge *b, const struct mqtt_packet *p);
void in_link_up(struct bridge *b, int session_present);
/* The connection ended (or the bridge stops): acknowledgements owed on it are dropped. */
void in_link_lost(struct bridge *b);

/* plugin.c: topic mapping (NULL when no rule applies), [any thread] */
const struct bridge_topic *bridge_rule_out(const struct bridge_conf *c, const char *local_topic);
const struct bridge_topic *bridge_rule_in(const struct bridge_conf *c, const char *remote_topic);
/* A packet id below `below` (0: from the top) that no held message uses. [home worker] */
uint16_t bridge_free_pid(const struct bridge *b, uint16_t below);

/* notify.c */
void notify_state(struct bridge *b, int up);

/* buffers (link.c) */
int bbuf_reserve(struct bbuf *bb, size_t n);
void bbuf_free(struct bbuf *bb);

#define bridge_api(b) ((b)->ctx->api)
#define bridge_self(b) ((b)->ctx->self)
#define BLOG(b, level, fmt, ...)                                                             \
    (b)->ctx->api->log((b)->ctx->self, (level), "bridge=%s " fmt, (b)->conf->name, __VA_ARGS__)

#endif
