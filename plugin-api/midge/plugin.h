/*
 * midge plugin ABI: the one public header a plugin needs.
 *
 * A plugin is a shared object that exports a descriptor
 * (MIDGE_PLUGIN_DECLARE) and midge_plugin_init(); optionally
 * midge_plugin_cleanup(). The broker exports no symbols: everything a plugin
 * can do arrives through the `struct midge_api` table passed to init.
 *
 * Stability promise (docs/plugin-guide.md):
 *  - Within one major version the API table and every struct that crosses
 *    the boundary only grow at the end. Each starts with `uint32_t size`;
 *    test for newer API functions with MIDGE_API_HAS(api, fn) and for newer
 *    struct fields with MIDGE_HAS_FIELD(type, s, field).
 *  - A plugin built for a newer major ABI is refused at load time with a
 *    message naming both versions.
 *
 * Threads: hooks about a client run on the worker thread that owns that
 * client ([worker thread]). Every API function says which threads may call
 * it: [worker thread] (inside a hook, or a timer/fd callback of this
 * plugin), [any thread].
 *
 * Ownership: everything a hook receives is borrowed until the hook returns.
 * Copy strings you keep; take a message reference with api->message_ref().
 * Every API function says who frees what it returns, and ownership never
 * depends on the return value.
 */
#ifndef MIDGE_PLUGIN_H
#define MIDGE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIDGE_ABI_MAJOR 1
#define MIDGE_ABI_MINOR 2

#if defined(__GNUC__)
#define MIDGE_EXPORT __attribute__((visibility("default")))
#define MIDGE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MIDGE_EXPORT
#define MIDGE_PRINTF(f, a)
#endif

/* ---- Opaque handles ---------------------------------------------------- */

/* The loaded plugin instance (one per `plugin` line). Owned by the broker. */
typedef struct midge_plugin midge_plugin;
/* A connected client. Borrowed: valid during the hook that passed it. */
typedef struct midge_client midge_client;
/* A pending decision, completed with api->complete(). */
typedef struct midge_ticket midge_ticket;
/*
 * An application message. Read it with the api->message_* accessors.
 * Borrowed during the hook or callback that passed it; keep it with
 * api->message_ref(). Immutable: every holder sees the same bytes.
 */
typedef struct midge_message midge_message;
/* The pending changes to a message in the message_in hook (api->edit_*). */
typedef struct midge_message_edit midge_message_edit;
/* A timer / fd watcher on a broker loop (api->timer_start, api->fd_watch). Owned by the plugin. */
typedef struct midge_timer midge_timer;
typedef struct midge_watch midge_watch;
/* A counter, gauge or histogram (api->metric_new). Owned by the broker. */
typedef struct midge_metric midge_metric;
/* An internal subscription (api->subscribe). Owned by the broker until api->unsubscribe. */
typedef struct midge_subscription midge_subscription;
/*
 * An internal session (api->session_open): a plugin-owned MQTT session with
 * its own subscriptions, queue and inflight window, kept like a client's
 * session (expiry, persistence). Owned by the broker; the plugin's handle is
 * valid from `opened` until api->session_close() or shutdown.
 */
typedef struct midge_session midge_session;

/* ---- Results ----------------------------------------------------------- */

/* What a decision hook answers. Distinct from error codes. */
enum midge_verdict {
    MIDGE_DEFER = 0,   /* not mine: ask the next plugin in the chain */
    MIDGE_ALLOW = 1,
    MIDGE_DENY = 2,    /* with an MQTT reason code (0 lets the broker choose) */
    MIDGE_PENDING = 3, /* the plugin will call api->complete(ticket, ...) later */
    MIDGE_CONTINUE = 4, /* enhanced auth only: send AUTH 0x18 with the data set, wait for the next step */
};

/* Error codes: API functions return 0 or the negative of one of these. */
enum midge_error {
    MIDGE_EINVAL = 1,   /* bad argument */
    MIDGE_ENOMEM = 2,   /* out of memory */
    MIDGE_ENOENT = 3,   /* no such option, client, ... */
    MIDGE_ESTATE = 4,   /* not allowed now (wrong thread, ticket already completed) */
    MIDGE_ENOTSUP = 5,  /* not supported by this broker */
    MIDGE_EBUSY = 6,    /* a bounded queue is full: try again later */
};

enum midge_log_level {
    MIDGE_LOG_ERROR = 0,
    MIDGE_LOG_WARNING = 1,
    MIDGE_LOG_NOTICE = 2,
    MIDGE_LOG_INFO = 3,
    MIDGE_LOG_DEBUG = 4,
};

/* What an ACL check is about. */
enum midge_acl_action {
    MIDGE_ACL_PUBLISH = 1,   /* a client publishes to `topic` */
    MIDGE_ACL_RECEIVE = 2,   /* a message on `topic` is about to be delivered to the client */
    MIDGE_ACL_SUBSCRIBE = 3, /* the client subscribes to filter `topic` */
    MIDGE_ACL_RETAIN = 4,    /* the client publishes with RETAIN set */
    MIDGE_ACL_WILL = 5,      /* the client's CONNECT carries a will on `topic` */
};

/* fd watcher events (api->fd_watch). */
enum midge_fd_events {
    MIDGE_FD_READ = 1,
    MIDGE_FD_WRITE = 2,
};

/* Kinds of plugin metrics (api->metric_new). */
enum midge_metric_kind {
    MIDGE_METRIC_COUNTER = 1,   /* only grows: api->metric_add(m, n >= 0) */
    MIDGE_METRIC_GAUGE = 2,     /* any value: api->metric_set / api->metric_add */
    MIDGE_METRIC_HISTOGRAM = 3, /* api->metric_observe(m, v); $SYS shows count, p50, p99 */
};

/* Flags of api->session_subscribe. */
enum midge_sub_flags {
    MIDGE_SUB_NO_LOCAL = 1,              /* not the session's own publishes (bridges: no loops) */
    MIDGE_SUB_RETAIN_AS_PUBLISHED = 2,   /* keep the RETAIN flag of live messages */
    MIDGE_SUB_NO_RETAINED = 4,           /* do not send retained messages on subscribe */
};

/* What a persistence event is about (struct midge_persist_event). */
enum midge_persist_type {
    MIDGE_P_SESSION = 1,      /* session client_id exists with `expiry` (created, resumed, updated,
                                 disconnected: `connected` says which); upsert */
    MIDGE_P_SESSION_END = 2,  /* the session ended: forget client_id and everything it had */
    MIDGE_P_SUB_ADD = 3,      /* subscription `filter` with `options`, `sub_id` (upsert) */
    MIDGE_P_SUB_REMOVE = 4,   /* subscription `filter` removed */
    MIDGE_P_RETAIN_SET = 5,   /* retained message `msg` on its topic (replaces the previous) */
    MIDGE_P_RETAIN_CLEAR = 6, /* no retained message on `filter` (a topic) any more */
    MIDGE_P_MSG_QUEUED = 7,   /* delivery `delivery_id` of `msg` (id `msg_id`) to client_id with
                                 `qos`, `retain`, queued in this order */
    MIDGE_P_MSG_SENT = 8,     /* delivery_id was sent with `packet_id` (outgoing inflight) */
    MIDGE_P_MSG_RELEASED = 9, /* PUBREC received for delivery_id, PUBREL sent (QoS 2) */
    MIDGE_P_MSG_DONE = 10,    /* delivery_id is finished (acknowledged, dropped, expired) */
    MIDGE_P_QOS2_IN = 11,     /* incoming QoS 2 `packet_id` of client_id awaits PUBREL */
    MIDGE_P_QOS2_IN_DONE = 12, /* ... released */
    MIDGE_P_WILL_SET = 13,    /* client_id's will is `msg`, delayed by `expiry` seconds */
    MIDGE_P_WILL_CLEAR = 14,  /* client_id has no will (published or cancelled) */
};

/* Delivery states for api->restore_message. */
enum midge_delivery_state {
    MIDGE_DELIVERY_QUEUED = 0,
    MIDGE_DELIVERY_SENT = 1,     /* PUBLISH sent with packet_id, not acknowledged */
    MIDGE_DELIVERY_RELEASED = 2, /* QoS 2: PUBREL sent with packet_id */
};

/* ---- Hook arguments (each starts with its size; fields only ever appended) */

/* CONNECT credentials for the auth hook. Borrowed. */
struct midge_auth_request {
    uint32_t size;
    const char *client_id;      /* NUL-terminated */
    const char *username;       /* NULL when the CONNECT had none */
    const uint8_t *password;    /* NULL when none; binary, not NUL-terminated */
    uint32_t password_len;
};

/* An ACL question. Borrowed. */
struct midge_acl_request {
    uint32_t size;
    int action;               /* enum midge_acl_action */
    const char *topic;        /* topic name, or filter for SUBSCRIBE */
    int qos;
    int retain;
    const uint8_t *payload;   /* PUBLISH/WILL/RECEIVE: the payload; else NULL */
    uint32_t payload_len;
    /*
     * ABI 1.2+ (MIDGE_HAS_FIELD), set in the publish_accepted hook for a
     * client's PUBLISH, else NULL/0: its MQTT 5 pass-through properties
     * encoded as api->message_properties returns them (NULL when none), and
     * its Message Expiry Interval in seconds (0: none). What a plugin that
     * carries the message elsewhere passes to api->message_new.
     */
    const void *props;
    uint32_t props_len;
    uint32_t expiry;
};

/*
 * One step of MQTT 5 enhanced authentication. Borrowed.
 *
 * Step 0 is the CONNECT carrying an Authentication Method (or, when
 * `reauth` is 1, the client's AUTH 0x19 asking to re-authenticate); each
 * AUTH 0x18 from the client after the plugin answered MIDGE_CONTINUE is the
 * next step. The plugin that answers step 0 with anything but DEFER owns the
 * exchange: later steps go to it alone.
 */
struct midge_enhanced_auth_request {
    uint32_t size;
    const char *method;       /* Authentication Method, NUL-terminated */
    const uint8_t *data;      /* Authentication Data of this step; NULL when absent */
    uint32_t data_len;
    uint32_t step;            /* 0, 1, 2, ... */
    int reauth;               /* 1: a connected client re-authenticates */
    const char *client_id;    /* NUL-terminated */
    const char *username;     /* from CONNECT; NULL when none */
    const uint8_t *password;  /* from CONNECT; NULL when none */
    uint32_t password_len;
};

/*
 * One persistence event (the `persist` hook). Borrowed during the hook:
 * copy what you keep, api->message_ref() the message. Only sessions that
 * outlive their connection (Session Expiry Interval > 0, or MQTT 3 clean
 * session 0) and their QoS 1/2 deliveries produce events; QoS 0 is never
 * persisted.
 */
struct midge_persist_event {
    uint32_t size;
    int type;                  /* enum midge_persist_type */
    uint64_t seq;              /* 1, 2, 3, ...: every event of this broker process in one order
                                  (it starts at 1 again after a restart) */
    const char *client_id;     /* NULL for RETAIN_* */
    const char *filter;        /* SUB_*: the filter; RETAIN_CLEAR: the topic */
    const midge_message *msg;  /* RETAIN_SET, MSG_QUEUED, WILL_SET */
    uint64_t msg_id;           /* api->message_id(msg): store the payload once per id */
    uint64_t delivery_id;      /* MSG_*: one delivery of one message to one session */
    uint32_t expiry;           /* SESSION: expiry interval (s, 0xFFFFFFFF never); WILL_SET: delay */
    int connected;             /* SESSION: 1 connected, 0 disconnected (expiry counts from now) */
    int protocol;              /* SESSION: 3, 4 or 5 */
    int qos;                   /* MSG_QUEUED: delivery QoS */
    int retain;                /* MSG_QUEUED: RETAIN flag to deliver with */
    int options;               /* SUB_ADD: MQTT 5 options byte (QoS, NL, RAP, RH) */
    uint32_t sub_id;           /* SUB_ADD: subscription identifier, 0 none */
    uint16_t packet_id;        /* MSG_SENT, MSG_RELEASED, QOS2_IN*: the packet id */
};

/* What api->client_find() reports about a client. Borrowed during the callback. */
struct midge_client_info {
    uint32_t size;
    const char *client_id;
    const char *username;     /* NULL: none (or no connection now) */
    const char *address;      /* "ip:port" of the connection; NULL when disconnected */
    int connected;            /* 1: a network connection is attached to the session */
    int protocol;             /* 3, 4 or 5 (of the last connection) */
    int listener_port;        /* 0 when disconnected */
    int keepalive;
    int clean_start;
    uint32_t session_expiry;  /* seconds; 0xFFFFFFFF never */
    uint32_t subscriptions;   /* number of subscriptions */
    uint32_t queued;          /* messages waiting in the session queue */
    uint32_t inflight;        /* QoS 1/2 messages sent and not yet acknowledged */
};

/* Broker-wide counters (api->stats), totals since start unless said otherwise. */
struct midge_broker_stats {
    uint32_t size;
    uint64_t clients_connected;  /* now */
    uint64_t sessions;           /* now: connected and disconnected persistent sessions */
    uint64_t subscriptions;      /* now */
    uint64_t retained;           /* now: retained messages */
    uint64_t packets_received;
    uint64_t packets_sent;
    uint64_t publish_received;
    uint64_t publish_sent;
    uint64_t publish_dropped;    /* queue limits, output caps, memory_limit, oversize, expiry */
    uint64_t bytes_received;
    uint64_t bytes_sent;
    uint64_t connects;           /* successful CONNECTs */
    uint64_t message_bytes;      /* now: bytes held by messages (memory_limit counts these) */
    double uptime;               /* seconds */
    /* ABI 1.1+ (MIDGE_HAS_FIELD): the counts above by QoS, with payload bytes. */
    uint64_t publish_received_qos[3];
    uint64_t publish_sent_qos[3];
    uint64_t payload_bytes_received_qos[3];
    uint64_t payload_bytes_sent_qos[3];
    /* ABI 1.1+: publish_dropped by reason (they add up to it). */
    uint64_t dropped_queue_limit;  /* a session's max_queued_messages / max_queued_bytes */
    uint64_t dropped_slow_client;  /* a connected client's output cap: it does not read */
    uint64_t dropped_too_large;    /* over the receiver's Maximum Packet Size */
    uint64_t dropped_refused;      /* refused at PUBLISH: ACL, size limit, a plugin's code */
    uint64_t dropped_plugin;       /* dropped by a message_in hook with reason 0 */
    uint64_t dropped_overload;     /* memory_limit reached or storage failing */
    uint64_t dropped_no_memory;    /* out of memory */
};

/*
 * The broker's measurements of one decision hook of one instance
 * (struct midge_plugin_info). ABI 1.1+
 */
struct midge_hook_stats {
    uint32_t size;
    const char *hook;          /* "auth", "acl", "enhanced_auth", "message_in" */
    uint64_t calls;
    uint64_t allow;
    uint64_t deny;
    uint64_t defer;
    uint64_t pending;
    uint64_t timeouts;         /* pending decisions the plugin_timeout answered */
    /*
     * Latency histogram, not cumulative: latency_count[i] calls took less
     * than latency_le[i] seconds (and at least latency_le[i - 1]).
     */
    uint32_t latency_buckets;
    const double *latency_le;
    const uint64_t *latency_count;
};

/* One loaded plugin instance (api->plugin_list). Borrowed during the callback. ABI 1.1+ */
struct midge_plugin_info {
    uint32_t size;
    const char *instance;      /* instance name (plugin_instance, default the plugin's name) */
    const char *name;          /* the descriptor's name */
    const char *version;       /* the descriptor's version; NULL when it has none */
    const char *description;   /* NULL when none */
    const char *path;          /* the file loaded */
    const struct midge_hook_stats *hooks; /* the measured hooks it has been called for */
    uint32_t hook_count;
};

/*
 * One metric a plugin defined with api->metric_new (api->metric_list).
 * Borrowed during the callback. ABI 1.1+
 */
struct midge_metric_info {
    uint32_t size;
    const char *instance;      /* the instance that defined it */
    const char *name;
    const char *help;          /* NULL when none */
    int kind;                  /* enum midge_metric_kind */
    int64_t value;             /* counter, gauge */
    uint64_t count;            /* histogram: observations */
    double sum;                /* histogram: their sum */
    /*
     * Histogram buckets, not cumulative: bucket_count[i] observations were
     * less than bucket_le[i] (and at least bucket_le[i - 1]); the last
     * bound may be INFINITY.
     */
    uint32_t buckets;
    const double *bucket_le;
    const uint64_t *bucket_count;
    /*
     * ABI 1.2+ (MIDGE_HAS_FIELD): the label of a series made with
     * api->metric_new_labeled; both NULL for api->metric_new's metrics.
     * Series of one name share kind, help and label_name and come one after
     * the other. An exporter shows them as one family, e.g.
     * name{instance="bridge",link="cloud"}.
     */
    const char *label_name;
    const char *label_value;
};

/* The queue of an internal session (api->session_stats). ABI 1.2+ */
struct midge_session_stats {
    uint32_t size;
    uint32_t queued;          /* messages waiting in the session, not yet given to `deliver` */
    uint64_t queued_bytes;    /* their topic + payload bytes */
    uint32_t inflight;        /* QoS 1/2 deliveries given to `deliver`, not yet session_ack'ed */
};

/* What a struct midge_session_entry is (ABI 1.2+). */
enum midge_session_entry_kind {
    MIDGE_ENTRY_SUBSCRIPTION = 1,
    MIDGE_ENTRY_MESSAGE = 2,
};

/* Flags of api->client_session_list (ABI 1.2+). */
enum midge_session_list_flags {
    /*
     * After listing, end the session (in the same step on its worker: nothing
     * is added in between). A connected client is disconnected first (MQTT 5:
     * DISCONNECT 0x8E Session taken over); the session_ended hooks run.
     */
    MIDGE_SESSION_END = 1,
    /* With MIDGE_SESSION_END: publish the session's will (else it is dropped, as on a resume). */
    MIDGE_SESSION_END_WILL = 2,
};

/*
 * One subscription or one message of a client's session
 * (api->client_session_list, api->client_session_add). Borrowed during the
 * call or callback that passes it. ABI 1.2+
 */
struct midge_session_entry {
    uint32_t size;
    int kind;                  /* enum midge_session_entry_kind */
    const char *filter;        /* SUBSCRIPTION: the filter */
    int options;               /* SUBSCRIPTION: MQTT 5 options byte (QoS, NL, RAP, RH) */
    uint32_t sub_id;           /* SUBSCRIPTION: subscription identifier, 0 none */
    const midge_message *msg;  /* MESSAGE: the message */
    int qos;                   /* MESSAGE: delivery QoS (0-2, at most the message's) */
    int retain;                /* MESSAGE: RETAIN flag to deliver with */
    int state;                 /* MESSAGE: MIDGE_DELIVERY_QUEUED, or _SENT (not acknowledged);
                                  QoS 2 deliveries already released (PUBREC received) are not
                                  listed: the client has the message */
};

/* TLS details of a connection (api->client_tls). Borrowed during the hook. */
struct midge_tls_info {
    uint32_t size;
    const char *version;      /* e.g. "TLSv1.3" */
    const char *cipher;
    const char *subject;      /* client certificate subject (RFC 2253), NULL: no certificate */
    const char *san;          /* first DNS/email/URI subject alternative name, or NULL */
    int verified;             /* 1: the client certificate chain was verified */
    const char *issuer;       /* client certificate issuer (RFC 2253), NULL: no certificate */
    const char *const *sans;  /* every DNS, email, URI and IP subject alternative name */
    uint32_t san_count;
};

/*
 * Callbacks of an internal session (api->session_open), run on the
 * session's home worker thread. Copied by session_open.
 */
struct midge_session_handlers {
    uint32_t size;
    /*
     * The session is ready: `present` 1 when it existed (its subscriptions and
     * queued messages are kept), 0 when new. s is NULL when it could not be
     * opened (its client id belongs to another internal session, or no memory).
     */
    void (*opened)(void *arg, midge_session *s, int present);
    /*
     * A message for the session, delivered with QoS `qos` (<= the message's)
     * and `retain`. For QoS 1 and 2, `id` is non-zero: the message stays in
     * the session (counted in its inflight window) until the plugin calls
     * api->session_ack(s, id); `dup` is 1 when it is delivered again after
     * api->session_redeliver(). The message is borrowed (api->message_ref to
     * keep it).
     */
    void (*deliver)(void *arg, midge_session *s, const midge_message *msg, int qos, int retain,
                    uint32_t id, int dup);
    /*
     * ABI 1.1+: QoS 2 delivery `id` is in the released state (the plugin
     * called api->session_released for it, possibly before a restart that
     * restored it so): the message itself is gone; send its PUBREL again and
     * call api->session_ack(s, id) on PUBCOMP. Called where deliver would
     * be, by api->session_redeliver and when a present session opens.
     * Without this handler such deliveries stay in the session unseen.
     */
    void (*released)(void *arg, midge_session *s, uint32_t id);
};

/*
 * The hooks of one plugin instance. Pass a table with static storage to
 * api->hooks_set() in init; NULL entries mean "not interested". `state` is
 * what init stored in *state.
 */
struct midge_hooks {
    uint32_t size; /* sizeof(struct midge_hooks) as the plugin was built */

    /*
     * Authenticates a CONNECT. [worker thread] Return ALLOW, DENY (set
     * *reason to an MQTT 5 reason code such as 0x86, or 0 for 0x87), DEFER,
     * or PENDING and later api->complete(ticket, ...) from any thread. A
     * ticket is an id, never a pointer into the broker: completing it is
     * always safe, and after the plugin_timeout, after the client left, or a
     * second time it returns -MIDGE_ESTATE (the broker logs a plugin bug).
     */
    int (*auth)(void *state, midge_client *client, const struct midge_auth_request *req,
                uint8_t *reason, midge_ticket *ticket);

    /*
     * Authorizes an action. [worker thread] ALLOW, DENY (*reason: an MQTT 5
     * reason code, or 0 for 0x87), DEFER, or, when `ticket` is not NULL,
     * PENDING and later api->complete(ticket, ...) from any thread (ALLOW,
     * DENY or DEFER: the next plugin is asked), as for auth: after the
     * plugin_timeout the plugin_timeout_verdict applies, and completing after
     * the timeout, after the client left, or twice returns -MIDGE_ESTATE.
     * PUBLISH, RETAIN, SUBSCRIBE and WILL get a ticket: while the decision
     * is pending that client's packets wait (their order is kept; the PUBLISH
     * is acknowledged, the SUBACK or CONNACK sent, once it is decided) and
     * the worker serves other clients. RECEIVE (and the re-check of
     * subscriptions after a reload) gets NULL: answer at once; PENDING then
     * is taken as the plugin_timeout_verdict (logged once as a plugin bug).
     * Keep RECEIVE fast: it runs for every message delivered to the client.
     */
    int (*acl)(void *state, midge_client *client, const struct midge_acl_request *req,
               uint8_t *reason, midge_ticket *ticket);

    /* A client finished CONNECT (CONNACK success sent). [worker thread] */
    void (*client_connected)(void *state, midge_client *client);

    /*
     * A client's connection ended. `reason`: the MQTT 5 reason code the
     * broker sent (e.g. 0x8D keep alive timeout, 0x8E taken over, 0x8B
     * shutting down), else the one in the client's DISCONNECT (0 normal, 0x04
     * with will; 0 for any MQTT 3 DISCONNECT), else 0x80 when the connection
     * was lost without DISCONNECT. [worker thread]
     */
    void (*client_disconnected)(void *state, midge_client *client, int reason);

    /* Once a second on the main thread. */
    void (*tick)(void *state);

    /*
     * SIGHUP: the plugin's options were re-read (api->option() now returns
     * the new values). Return 0 to accept, negative to keep running with the
     * old state (the broker logs the message set with api->set_error()).
     * A plugin without this hook keeps its old options. [main thread]
     */
    int (*reload)(void *state);

    /* A worker thread starts / stops: per-thread state. [that worker thread] */
    void (*thread_start)(void *state, unsigned worker);
    void (*thread_stop)(void *state, unsigned worker);

    /*
     * MQTT 5 enhanced authentication (a CONNECT with an Authentication
     * Method, and re-authentication). [worker thread] Return DEFER (not my
     * method: next plugin), CONTINUE (the broker sends AUTH 0x18 with the
     * data set by api->auth_data_set and waits for the client's next AUTH),
     * ALLOW (CONNACK 0x00, or AUTH 0x00 on re-auth, with the data set, if
     * any), DENY (*reason: 0x87, 0x8C, ... or 0 for 0x87; on re-auth the
     * client is disconnected with it) or PENDING (answer later with
     * api->complete_auth). When every plugin defers the client gets 0x8C
     * (bad authentication method). A client using enhanced authentication
     * does not go through the `auth` hooks.
     */
    int (*enhanced_auth)(void *state, midge_client *client,
                         const struct midge_enhanced_auth_request *req, uint8_t *reason,
                         midge_ticket *ticket);

    /*
     * A client publishes (after the publish ACL allowed it). [worker thread]
     * Change the message with api->edit_*(edit, ...); later plugins see the
     * changed message. Return ALLOW or DEFER to let it through, DENY to drop
     * it: *reason is the v5 PUBACK/PUBREC reason code (0 acknowledges with
     * success, so the client does not know; 0x87, 0x97, ... tell it).
     * MQTT 3 clients are acknowledged normally either way.
     */
    int (*message_in)(void *state, midge_client *client, const midge_message *msg,
                      midge_message_edit *edit, uint8_t *reason);

    /*
     * A message is about to be sent to a client (after the receive ACL).
     * Observation only. [worker thread] Runs for every delivery: keep it cheap.
     */
    void (*message_out)(void *state, midge_client *client, const midge_message *msg);

    /* A subscription was granted (SUBACK sent) with QoS `qos`. [worker thread] */
    void (*subscribed)(void *state, midge_client *client, const char *filter, int qos);

    /* A subscription was removed by UNSUBSCRIBE. [worker thread] */
    void (*unsubscribed)(void *state, midge_client *client, const char *filter);

    /*
     * A session was created (CONNECT without a usable existing session) /
     * ended (expired, or discarded by clean start or at disconnect with
     * expiry 0). [the session's worker thread]
     */
    void (*session_created)(void *state, const char *client_id);
    void (*session_ended)(void *state, const char *client_id);

    /* A client's will was published. [the session's worker thread] */
    void (*will_published)(void *state, const char *client_id, const midge_message *will);

    /*
     * Persistence (one plugin per broker may have it). Every change of
     * durable state, in `seq` order: the broker calls this hook under its
     * own lock, from any worker thread, so it must only queue the event
     * (copy, message_ref) and return at once, never block and never call
     * back into the broker. The plugin writes events in seq order and calls
     * api->persist_durable(self, seq) once everything up to seq is on disk.
     * The broker holds PUBACK/PUBREC and SUBACK for operations whose events
     * are not durable yet (the worker keeps serving others).
     */
    void (*persist)(void *state, const struct midge_persist_event *ev);

    /*
     * Start-up, before any listener opens (main thread): load the stored
     * state back with the api->restore_* functions, sessions first, each
     * session's deliveries in their queue order. Return 0, or negative to
     * refuse to start (with api->set_error).
     */
    int (*restore)(void *state);

    /*
     * A client's PUBLISH passed every ACL chain (PUBLISH, and RETAIN when
     * set) and is about to be routed: the point where a plugin that carries
     * messages elsewhere (a cluster) takes them before the publisher is
     * acknowledged. [worker thread] `req` is as for the acl hook (action
     * MIDGE_ACL_PUBLISH). Return ALLOW or DEFER to go on, DENY to refuse it
     * (*reason as for acl), or PENDING and later api->complete(ticket, ...)
     * from any thread: meanwhile the PUBACK/PUBREC and the client's later
     * packets wait, exactly as for a pending ACL decision (plugin_timeout
     * and plugin_timeout_verdict apply). Appended in ABI 1.0.
     */
    int (*publish_accepted)(void *state, midge_client *client,
                            const struct midge_acl_request *req, uint8_t *reason,
                            midge_ticket *ticket);
};

/* ---- The API table ----------------------------------------------------- */

struct midge_api {
    uint32_t size;        /* bytes of this table the broker provides */
    uint16_t abi_major;   /* the broker's ABI version */
    uint16_t abi_minor;

    /* Writes one log line "plugin=INSTANCE message". [any thread] */
    void (*log)(midge_plugin *self, int level, const char *fmt, ...) MIDGE_PRINTF(3, 4);

    /*
     * Value of `plugin_opt_KEY`, or NULL when not set. Borrowed: valid until
     * init/reload returns (copy what you keep). [main thread: init, reload]
     */
    const char *(*option)(midge_plugin *self, const char *key);

    /*
     * Iterates the options: *pos starts at 0; returns 1 and sets *key and
     * *value (borrowed as above) while there is another, else 0.
     * [main thread: init, reload]
     */
    int (*option_next)(midge_plugin *self, size_t *pos, const char **key, const char **value);

    /*
     * Sets the message the broker shows when init or reload fails (copied).
     * [main thread: init, reload]
     */
    void (*set_error)(midge_plugin *self, const char *fmt, ...) MIDGE_PRINTF(2, 3);

    /*
     * Registers the instance's hooks. The table must outlive the plugin
     * (static storage); the broker reads `size` to know which hooks exist.
     * Call once, from init. Returns 0 or -MIDGE_EINVAL.
     */
    int (*hooks_set)(midge_plugin *self, const struct midge_hooks *hooks);

    /*
     * Completes a PENDING decision. [any thread] `verdict` is ALLOW, DENY or
     * DEFER (continue with the next plugin); any other value is applied as
     * DENY and logged as a plugin bug. Returns 0, or -MIDGE_ESTATE when the
     * ticket was already completed, timed out or its client left (logged as
     * a plugin bug and ignored).
     */
    int (*complete)(midge_ticket *ticket, int verdict, uint8_t reason);

    /* Client accessors. [worker thread, during a hook about that client] Strings borrowed. */
    const char *(*client_id)(const midge_client *c);
    const char *(*client_username)(const midge_client *c); /* NULL: none */
    int (*client_protocol)(const midge_client *c);          /* 3, 4 or 5 */
    const char *(*client_address)(const midge_client *c);   /* "ip:port" */
    int (*client_listener_port)(const midge_client *c);     /* 0: an internal session */
    int (*client_clean_start)(const midge_client *c);
    int (*client_keepalive)(const midge_client *c);

    /*
     * Publishes a message into the broker as if from the broker itself
     * (no ACL). Copies topic and payload. [any thread] Returns 0,
     * -MIDGE_EINVAL (bad topic or QoS) or -MIDGE_ENOMEM.
     */
    int (*publish)(midge_plugin *self, const char *topic, const void *payload, uint32_t len,
                   int qos, int retain);

    /* Name of this instance (plugin_instance, default the plugin's name). Borrowed for its life. */
    const char *(*instance_name)(const midge_plugin *self);

    /* ---- Messages. [any thread that holds the message] ---- */

    /* Topic, NUL-terminated. Borrowed like the message. */
    const char *(*message_topic)(const midge_message *m);
    /* Payload (not NUL-terminated; NULL when empty); its length in *len. */
    const void *(*message_payload)(const midge_message *m, uint32_t *len);
    int (*message_qos)(const midge_message *m);
    int (*message_retain)(const midge_message *m);
    /*
     * Iterates MQTT 5 user properties: *pos starts at 0; returns 1 and sets
     * key/value (not NUL-terminated, with lengths) while there is another.
     */
    int (*message_user_property_next)(const midge_message *m, size_t *pos, const char **key,
                                      size_t *key_len, const char **value, size_t *value_len);
    /* Takes a reference: the message stays valid until api->message_unref(). */
    const midge_message *(*message_ref)(const midge_message *m);
    void (*message_unref)(const midge_message *m);

    /*
     * Edits in the message_in hook (copied; applied when the hook returns).
     * Return 0, -MIDGE_EINVAL (invalid topic name, bad UTF-8) or
     * -MIDGE_ESTATE (outside the hook). [worker thread]
     */
    int (*edit_topic)(midge_message_edit *e, const char *topic);
    int (*edit_payload)(midge_message_edit *e, const void *payload, uint32_t len);
    int (*edit_user_property_add)(midge_message_edit *e, const char *key, const char *value);

    /* ---- Enhanced authentication ---- */

    /*
     * Sets the Authentication Data the broker sends with the answer of the
     * enhanced_auth hook now running for `c` (copied). [worker thread,
     * during that hook] Returns 0, -MIDGE_ESTATE or -MIDGE_ENOMEM.
     */
    int (*auth_data_set)(midge_client *c, const void *data, uint32_t len);

    /*
     * Completes a PENDING enhanced_auth step (or an auth decision) with
     * Authentication Data to send (copied; NULL/0: none); for a step it
     * replaces what api->auth_data_set stored, for a plain auth decision it
     * is ignored. `verdict` may be ALLOW, DENY, DEFER or CONTINUE (steps
     * only). Otherwise as api->complete(). [any thread]
     */
    int (*complete_auth)(midge_ticket *ticket, int verdict, uint8_t reason, const void *data,
                         uint32_t len);

    /* ---- More about a client. [worker thread, during a hook about that client] ---- */

    /* The listener's name, "ADDRESS:PORT" as in the broker's logs; NULL for an internal session. Borrowed. */
    const char *(*client_listener_name)(const midge_client *c);
    /* Peer IP address as text (no port). Borrowed until the hook returns. */
    const char *(*client_peer_ip)(const midge_client *c);
    int (*client_peer_port)(const midge_client *c);
    /* Iterates the CONNECT's user properties (MQTT 5), as message_user_property_next. */
    int (*client_user_property_next)(const midge_client *c, size_t *pos, const char **key,
                                     size_t *key_len, const char **value, size_t *value_len);
    /*
     * Fills *info for a TLS connection and returns 0; -MIDGE_ENOENT on plain
     * TCP. Set info->size = sizeof(*info) first: fields beyond it are not
     * written (an older plugin gets what it knows). Strings borrowed.
     */
    int (*client_tls)(const midge_client *c, struct midge_tls_info *info);

    /*
     * Per-client storage: one pointer per instance and connection. When the
     * connection ends (after client_disconnected) the broker calls
     * free_fn(data) if free_fn is not NULL. Setting again frees the
     * previous value the same way. [worker thread, during a hook about c]
     */
    void *(*client_data)(midge_plugin *self, const midge_client *c);
    int (*client_data_set)(midge_plugin *self, midge_client *c, void *data,
                           void (*free_fn)(void *data));

    /* ---- Timers and fd watchers on the calling thread's loop ---- */

    /*
     * Starts a timer on the loop of the calling thread (a worker, or the main
     * thread in init/reload/tick): cb runs there after `after` seconds, then
     * every `repeat` seconds if repeat > 0. Returns NULL on bad arguments or
     * out of memory. The plugin owns the timer: stop it with
     * api->timer_stop() on the same thread (this frees it; a one-shot timer
     * that fired must still be stopped). Timers still running at cleanup are
     * freed by the broker. [worker thread, main thread]
     */
    midge_timer *(*timer_start)(midge_plugin *self, double after, double repeat,
                                void (*cb)(void *arg, midge_timer *t), void *arg);
    void (*timer_stop)(midge_plugin *self, midge_timer *t);

    /*
     * Watches fd for MIDGE_FD_READ/WRITE on the calling thread's loop; cb
     * gets the events that happened. The plugin keeps owning fd. Change the
     * events with fd_watch_set, stop and free with fd_unwatch (same thread).
     */
    midge_watch *(*fd_watch)(midge_plugin *self, int fd, int events,
                             void (*cb)(void *arg, int fd, int revents), void *arg);
    int (*fd_watch_set)(midge_plugin *self, midge_watch *w, int events);
    void (*fd_unwatch)(midge_plugin *self, midge_watch *w);

    /*
     * Runs work(arg) on this instance's blocking pool (plugin_threads
     * threads, default 1, at lower scheduling priority), then done(arg) on
     * the calling thread's loop (done may be NULL). Returns 0, or
     * -MIDGE_EBUSY when plugin_queue jobs already wait. Jobs still queued at
     * shutdown run before cleanup, and so do their done callbacks (on the
     * main thread then: the workers have stopped). [worker thread, main thread]
     */
    int (*run_blocking)(midge_plugin *self, void (*work)(void *arg), void (*done)(void *arg),
                        void *arg);

    /* ---- Clients by id. [any thread] ---- */

    /*
     * Disconnects the client with this id, if connected (v5: DISCONNECT with
     * `reason`, 0 for 0x98 administrative action; the will is published).
     * Asynchronous: returns 0 once the request is queued; the log says what
     * happened.
     */
    int (*client_disconnect)(midge_plugin *self, const char *client_id, uint8_t reason);

    /*
     * Looks a session up by client id and calls cb(arg, info) on the
     * session's worker thread, info NULL when there is no such session.
     * Returns 0 once queued, -MIDGE_EINVAL or -MIDGE_ENOMEM (cb not called).
     */
    int (*client_find)(midge_plugin *self, const char *client_id,
                       void (*cb)(void *arg, const struct midge_client_info *info), void *arg);

    /* ---- Metrics, published as $SYS/broker/plugin/INSTANCE/metric/NAME ---- */

    /*
     * Creates a metric (enum midge_metric_kind). `name`: [a-z0-9_]+, unique
     * in the instance. Returns NULL on bad arguments. [main thread: init]
     */
    midge_metric *(*metric_new)(midge_plugin *self, const char *name, int kind, const char *help);
    /* Counter or gauge += delta. [any thread] */
    void (*metric_add)(midge_metric *m, int64_t delta);
    /* Gauge = value. [any thread] */
    void (*metric_set)(midge_metric *m, int64_t value);
    /* Histogram: records one value >= 0 (e.g. seconds). [any thread] */
    void (*metric_observe)(midge_metric *m, double value);

    /* ---- Internal subscriptions ---- */

    /*
     * Subscribes the plugin itself to `filter` ($share not allowed): cb(arg,
     * msg) runs for every matching message published afterwards, on the
     * publisher's worker thread (any worker: cb must be thread-safe), after
     * the message_in hooks. Returns NULL on a bad filter or out of memory.
     * [main thread: init, reload, tick]
     */
    midge_subscription *(*subscribe)(midge_plugin *self, const char *filter,
                                     void (*cb)(void *arg, const midge_message *msg), void *arg);
    /* Removes and frees it; no callback runs after this returns. [main thread] */
    void (*unsubscribe)(midge_plugin *self, midge_subscription *sub);

    /* ---- Internal sessions (bridges, queues owned by a plugin) ---- */

    /*
     * Opens the session `client_id` for this plugin, creating it or resuming
     * the one that exists (a client connected with that id is disconnected
     * with 0x8E, as by a takeover; clients cannot take it over while the
     * plugin holds it: they get CONNACK 0x85). `expiry` is its Session Expiry
     * Interval in seconds (0: it ends at session_close; 0xFFFFFFFF: never),
     * `window` how many QoS 1/2 messages may wait for session_ack (1-65535).
     * h->opened runs on the session's home worker once it is ready; every
     * other session_* call is made on that thread (from the callbacks, or
     * from timers and fd watchers started there). Returns 0 once queued,
     * -MIDGE_EINVAL or -MIDGE_ENOMEM. [any thread, also in init]
     */
    int (*session_open)(midge_plugin *self, const char *client_id, uint32_t expiry,
                        uint16_t window, const struct midge_session_handlers *h, void *arg);
    /*
     * Subscribes the session (qos 0-2, enum midge_sub_flags). Retained
     * messages matching it are delivered unless MIDGE_SUB_NO_RETAINED.
     * Returns 0 or -MIDGE_EINVAL (bad filter). [home worker]
     */
    int (*session_subscribe)(midge_session *s, const char *filter, int qos, int flags);
    /* Returns 0, or -MIDGE_ENOENT when the session had no such subscription. [home worker] */
    int (*session_unsubscribe)(midge_session *s, const char *filter);
    /*
     * Publishes as the session (its MIDGE_SUB_NO_LOCAL subscriptions do not
     * get it back; no ACL). Copies. Returns 0, -MIDGE_EINVAL or -MIDGE_ENOMEM.
     * [home worker]
     */
    int (*session_publish)(midge_session *s, const char *topic, const void *payload,
                           uint32_t len, int qos, int retain);
    /* The plugin is done with delivered message `id`. 0, or -MIDGE_ENOENT. [home worker] */
    int (*session_ack)(midge_session *s, uint32_t id);
    /* Delivers every unacknowledged message again (dup 1), in order, e.g. after a reconnect. [home worker] */
    void (*session_redeliver)(midge_session *s);
    /*
     * Releases the handle (no callback after this returns). With `end` 1 the
     * session ends now; else it stays per its expiry and queues what matches
     * its subscriptions until it is opened again. [home worker]
     */
    void (*session_close)(midge_session *s, int end);

    /* ---- More about messages. [any thread holding the message] ---- */

    /* A process-unique id (restored messages keep theirs). */
    uint64_t (*message_id)(const midge_message *m);
    /*
     * The MQTT 5 properties that travel with the message (payload format,
     * content type, response topic, correlation data, user properties),
     * encoded as in a PUBLISH without the length prefix. Borrowed.
     */
    const void *(*message_properties)(const midge_message *m, uint32_t *len);
    /* Seconds left before the message expires; 0 when it has no expiry. */
    uint32_t (*message_expiry)(const midge_message *m);
    /*
     * Builds a message (copied), e.g. to restore or to forward one: `props`
     * as message_properties returns them (validated), `expiry` seconds (0
     * none), `id` 0 for a new id or a restored message's id. Returns it with
     * one reference owned by the caller (api->message_unref), or NULL on
     * bad arguments or out of memory. [any thread]
     */
    const midge_message *(*message_new)(midge_plugin *self, const char *topic,
                                        const void *payload, uint32_t len, int qos, int retain,
                                        const void *props, uint32_t props_len, uint32_t expiry,
                                        uint64_t id);

    /* ---- Persistence (the plugin with the persist hook). ---- */

    /* Every event with seq <= `seq` is durable: held acknowledgements go out. [any thread] */
    void (*persist_durable)(midge_plugin *self, uint64_t seq);
    /*
     * Storage failed (1) or works again (0). While it fails, new QoS 1/2
     * publishes that need it are refused (MQTT 5: 0x97 Quota exceeded; MQTT
     * 3: not acknowledged, so the client sends again) and logged once.
     * [any thread]
     */
    void (*persist_failing)(midge_plugin *self, int failing);

    /*
     * Restore calls, only inside the restore hook. Each returns 0,
     * -MIDGE_EINVAL (bad data: the broker logs and skips it) or -MIDGE_ENOMEM.
     * Messages passed in are borrowed: the broker takes its own reference,
     * the plugin still unrefs the one it got from api->message_new.
     * `expires_in`: seconds the disconnected session has left (0xFFFFFFFF
     * never; ignored while expiry is 0xFFFFFFFF).
     */
    int (*restore_session)(midge_plugin *self, const char *client_id, uint32_t expiry,
                           int protocol, uint32_t expires_in);
    int (*restore_subscription)(midge_plugin *self, const char *client_id, const char *filter,
                                int options, uint32_t sub_id);
    int (*restore_retained)(midge_plugin *self, const midge_message *msg);
    int (*restore_message)(midge_plugin *self, const char *client_id, uint64_t delivery_id,
                           const midge_message *msg, int qos, int retain, int state,
                           uint16_t packet_id);
    int (*restore_qos2_in)(midge_plugin *self, const char *client_id, uint16_t packet_id);
    int (*restore_will)(midge_plugin *self, const char *client_id, const midge_message *will,
                        uint32_t delay);

    /* ---- Administration (dashboards, admin APIs) ---- */

    /* Fills *out (set out->size first; fields beyond it are not written). [any thread] */
    int (*stats)(midge_plugin *self, struct midge_broker_stats *out);
    /*
     * Calls cb(arg, info) for every session, on each session's worker thread
     * (workers run in parallel: cb must be thread-safe), then done(arg) once,
     * on the calling thread's loop, after the last cb (on the main thread
     * when the caller is a thread of the plugin's own, without a broker
     * loop). Returns 0 once queued. [any thread]
     */
    int (*client_list)(midge_plugin *self,
                       void (*cb)(void *arg, const struct midge_client_info *info),
                       void (*done)(void *arg), void *arg);
    /*
     * Calls cb(arg, msg) for each retained message whose topic matches
     * `filter`, on the calling thread, before returning; cb returns 0 to go
     * on, non-zero to stop. Returns the number of calls, or -MIDGE_EINVAL.
     * [any thread]
     */
    int (*retained_list)(midge_plugin *self, const char *filter,
                         int (*cb)(void *arg, const midge_message *msg), void *arg);
    /* Asks for a configuration reload, as SIGHUP does. [any thread] */
    int (*reload_request)(midge_plugin *self);

    /* ---- Inventory (ABI 1.1+): what /metrics-style exporters need ---- */

    /*
     * Calls cb(arg, info) for every loaded instance in chain order (this
     * one included), on the calling thread, before returning; cb returns 0
     * to go on, non-zero to stop. Returns the number of calls, or
     * -MIDGE_ESTATE until every instance has finished init (a thread the
     * plugin started in init may ask early). [any thread]
     */
    int (*plugin_list)(midge_plugin *self,
                       int (*cb)(void *arg, const struct midge_plugin_info *info), void *arg);
    /*
     * Calls cb(arg, info) for every metric every instance defined with
     * api->metric_new (and, ABI 1.2+, every series of metric_new_labeled,
     * those of one name one after the other), as plugin_list (same order,
     * same return values). Values are read one by one with relaxed loads: a
     * histogram's count, sum and buckets may disagree by the observations
     * made meanwhile. The broker holds its metrics lock during the walk: cb
     * must not call metric_new_labeled or metric_free. [any thread]
     */
    int (*metric_list)(midge_plugin *self,
                       int (*cb)(void *arg, const struct midge_metric_info *info), void *arg);
    /* ---- ABI 1.1+ ---- */

    /*
     * Publishes `msg` (built with api->message_new: topic, payload, QoS,
     * RETAIN, properties, expiry) as internal session s, the way a client's
     * PUBLISH is handled: the `acl` hooks (MIDGE_ACL_PUBLISH, then
     * MIDGE_ACL_RETAIN when RETAIN is set; they get a ticket and may answer
     * PENDING) and the `message_in` hooks run with the session as the client
     * (api->client_id is its client id; it has no listener:
     * client_listener_name is NULL and client_listener_port 0, and plugins
     * limited to a listener do not see it); then the message is routed (the
     * session's No Local subscriptions do not get it). Topics starting with
     * '$' are refused. The message is borrowed: the broker takes its own
     * reference (a message_in hook's edit routes a changed copy).
     *
     * done(arg, result), when done is not NULL, runs exactly once, on the
     * home worker, in the order of the calls (possibly before this function
     * returns):
     *   0    routed and, with a persistence plugin, everything the publish
     *        stored (deliveries to persistent sessions, a retained message)
     *        is durable: the moment to acknowledge it upstream. Also 0 when
     *        a message_in hook dropped it with reason 0.
     *   > 0  not routed: the MQTT reason code a client would get (0x87 from
     *        an ACL or its own code, 0x97 storage failing or memory_limit,
     *        0x95 over message_size_limit, a message_in hook's code; 0x80:
     *        out of memory, maybe routed).
     *   -MIDGE_ESTATE  the handle was closed (session_close, shutdown)
     *        first: not routed if an ACL decision was pending, else routed
     *        but maybe not durable. done may then only release what arg
     *        holds (no session_* call); it runs inside session_close or on
     *        the home worker soon after.
     * Returns 0 (done will run), -MIDGE_EINVAL, -MIDGE_ESTATE (not on the
     * home worker, or closed) or -MIDGE_ENOMEM; done does not run then.
     * [home worker]
     */
    int (*session_publish_message)(midge_session *s, const midge_message *msg,
                                   void (*done)(void *arg, int result), void *arg);

    /*
     * QoS 2 delivery `id` was acknowledged with PUBREC where the plugin
     * sent it: the session records it released (persisted, so after a
     * restart it comes back through the `released` handler, never again as
     * a PUBLISH [MQTT-4.3.3-5]) and drops the message. It stays in the
     * inflight window until api->session_ack(s, id). Returns 0 (also for an
     * id that is not a QoS 2 delivery of the session: nothing is recorded)
     * or -MIDGE_ESTATE. [home worker]
     */
    int (*session_released)(midge_session *s, uint32_t id);
    /* ---- Held acknowledgements (appended in ABI 1.0, for plugins that carry messages elsewhere) ---- */

    /*
     * In the publish_accepted hook: holds the PUBACK/PUBREC of the PUBLISH
     * being handled until api->ack_release(self, n) with n >= seq. Unlike a
     * PENDING answer the client's later packets are handled meanwhile (the
     * message is routed locally at once); acknowledgements still leave in
     * order. `seq` > 0 numbers the plugin's holds and only grows; one
     * instance per broker may hold acks (the first to call). Returns 0,
     * -MIDGE_EINVAL (seq 0) or -MIDGE_ESTATE (another instance holds acks).
     * [worker thread, in publish_accepted]
     */
    int (*ack_hold)(midge_plugin *self, midge_client *client, uint64_t seq);
    /* Every hold with seq <= `seq` is released: held acknowledgements go out. [any thread] */
    void (*ack_release)(midge_plugin *self, uint64_t seq);

    /* ---- ABI 1.2+ ---- */

    /*
     * A standing answer: from now on the broker answers `verdict` (ALLOW or
     * DEFER) for this instance to every `action` check (enum
     * midge_acl_action) of `client`, without calling the acl hook, the way
     * the hook would have answered; the rest of the chain runs as usual.
     * Meant for RECEIVE, which runs for every message delivered: an ACL
     * plugin that knows no rule can deny `client` a delivery says so once
     * instead of being asked per message. MIDGE_PENDING clears it (the hook
     * is asked again). Standing answers are forgotten when the instance's
     * reload hook runs (SIGHUP) and when the client disconnects; a standing
     * RECEIVE answer also when an earlier plugin in the chain decides one of
     * the client's SUBSCRIBE checks (this one did not see that filter, so a
     * plugin may rest the answer on the subscriptions it has checked). The
     * broker's per-hook metrics do not count the calls it answered this way.
     * Returns 0, or -MIDGE_EINVAL (bad action or verdict) or -MIDGE_ENOMEM.
     * [worker thread, in a hook about `client`]
     */
    int (*client_acl_standing)(midge_plugin *self, midge_client *client, int action,
                               int verdict);

    /*
     * Changes the window of internal session s (session_open's `window`: how
     * many QoS 1/2 deliveries may wait for api->session_ack, 1-65535). What
     * does not fit waits in the session's queue in the broker, in order,
     * bounded by max_queued_messages / max_queued_bytes like a client's
     * queue, and that queue counts for back-pressure like a reading client's:
     * while the plugin acknowledges (session_ack or session_released within
     * the last second), a queue longer than half of max_queued_messages (at
     * most 1000) pauses reading from every publisher until it is shorter.
     * So a plugin that forwards to something slower than the local
     * publishers (a bridge) opens a window of its own bound while it can
     * forward, and local publishers are slowed instead of acknowledged
     * messages dropped; and a wide one while it cannot (link down): then it
     * gets everything and drops past its own bound, and since it
     * acknowledges nothing from the far side the broker is never paused for
     * it. A wider window delivers what waits soon after the call returns
     * (never inside it). Returns 0, -MIDGE_EINVAL (window 0) or
     * -MIDGE_ESTATE (not on the home worker, or closed). [home worker]
     */
    int (*session_window)(midge_session *s, uint16_t window);

    /*
     * Labeled metrics: one series per value of one label, e.g. a metric per
     * bridge link. Creates the series `name`{label_name="label_value"}.
     * Several series may share `name` (one family): they must then agree on
     * kind, help and label_name, and their label values must differ. A name
     * is either labeled or plain (api->metric_new), never both.
     *   name        [a-z0-9_]+, at most 64 bytes
     *   label_name  [a-z_][a-z0-9_]*, at most 64 bytes; not "instance" (the
     *               exporter's own label), "le", "quantile", nor "__..."
     *   label_value UTF-8, 1-128 bytes, no control characters
     * All three strings and help are copied. $SYS shows the series as
     * $SYS/broker/plugin/INSTANCE/metric/NAME/LABEL_VALUE (a histogram with
     * /count, /sum, /p50, /p99 below that), with '/', '+' and '#' of the
     * value written as '_'.
     * Returns the series, owned by the broker: the plugin updates it with
     * metric_add/set/observe like any metric and may drop it early with
     * api->metric_free; otherwise the broker frees it with the instance.
     * NULL on bad or conflicting arguments, a series that already exists, or
     * out of memory. [any thread; not inside a metric_list callback]
     */
    midge_metric *(*metric_new_labeled)(midge_plugin *self, const char *name, int kind,
                                        const char *help, const char *label_name,
                                        const char *label_value);
    /*
     * Drops a series made with metric_new_labeled (e.g. a bridge removed on
     * SIGHUP): it leaves metric_list at once and $SYS clears its retained
     * topics at the next publication. `m` is freed: the caller makes sure no
     * thread uses it any more (no metric_add/set/observe running or to come).
     * NULL is ignored; a plain metric (metric_new) is refused (logged as a
     * plugin bug, kept). [any thread; not inside a metric_list callback]
     */
    void (*metric_free)(midge_metric *m);
    /*
     * Fills *out with the queue of internal session s (set out->size first;
     * fields beyond it are not written). Returns 0, -MIDGE_EINVAL (out NULL
     * or out->size 0) or -MIDGE_ESTATE (not on the home worker, or the handle
     * is closed). [home worker]
     */
    int (*session_stats)(midge_session *s, struct midge_session_stats *out);

    /*
     * A client's session by id, e.g. to move it to another broker (a
     * cluster's takeover). On the session's home worker: calls cb(arg, e)
     * for each subscription, then for each message not yet acknowledged by
     * the client (sent ones first, then the queue: the order they would be
     * delivered in), then done(arg, found) once; found is 0 when there is no
     * such session (or it is a plugin's internal session: never listed nor
     * ended). With MIDGE_SESSION_END in `flags` the session ends after the
     * last cb, before done (enum midge_session_list_flags); but when
     * `connected_before` is not 0 and the session's client connected here
     * (CONNACK) after that time (microseconds since the epoch, as
     * gettimeofday), it is neither listed nor ended and done gets found 2:
     * of two takeovers that cross, the newer connection stays. cb and done run
     * on that worker (workers run in parallel: thread-safe, and quick); cb
     * may be NULL. Entries are borrowed during cb (api->message_ref to keep
     * a message). Returns 0 once queued (done will run), -MIDGE_EINVAL or
     * -MIDGE_ENOMEM. [any thread]
     */
    int (*client_session_list)(midge_plugin *self, const char *client_id, int flags,
                               uint64_t connected_before,
                               void (*cb)(void *arg, const struct midge_session_entry *e),
                               void (*done)(void *arg, int found), void *arg);
    /*
     * Adds an entry to the existing session `client_id`, as the broker's own
     * act: no ACL, no hooks (no `subscribed`), persisted like the client's
     * own. A SUBSCRIPTION is added (or replaces the one with that filter) and
     * sends no retained messages; a MESSAGE (entry state ignored) is
     * delivered as a new delivery at the end of the session's queue (sent
     * now when the client is connected; queue limits apply). The entry is
     * copied (the message referenced) before this returns; the change is
     * made on the session's home worker, in the order of the calls for one
     * client id. done(arg, result), if not NULL, then runs there: 0,
     * -MIDGE_ENOENT (no such session, or an internal one) or -MIDGE_ENOMEM.
     * Returns 0 once queued (done will run), -MIDGE_EINVAL (bad filter,
     * options or QoS) or -MIDGE_ENOMEM. [any thread]
     */
    int (*client_session_add)(midge_plugin *self, const char *client_id,
                              const struct midge_session_entry *e,
                              void (*done)(void *arg, int result), void *arg);
    /*
     * Publishes `msg` (from api->message_new: its properties and expiry
     * kept) as api->publish does: from the broker itself, no ACL, no hooks,
     * routed to every matching subscriber (and stored when RETAIN is set).
     * The message is borrowed: the broker takes its own reference. Returns 0
     * or -MIDGE_EINVAL (msg NULL). [any thread]
     */
    int (*publish_message)(midge_plugin *self, const midge_message *msg);
};

/* 1 when the broker's table has function `fn` (it lies within api->size and is set). */
#define MIDGE_API_HAS(api, fn)                                                               \
    ((api)->size >= offsetof(struct midge_api, fn) + sizeof((api)->fn) && (api)->fn != NULL)

/* 1 when a size-prefixed struct `s` of type `type` from the broker has `field`. */
#define MIDGE_HAS_FIELD(type, s, field)                                                       \
    ((s)->size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* ---- Declaring a plugin ------------------------------------------------ */

/* Exported as `midge_plugin_descriptor` by MIDGE_PLUGIN_DECLARE. */
struct midge_plugin_descriptor {
    uint32_t size;
    uint16_t abi_major; /* the ABI the plugin was built against */
    uint16_t abi_minor;
    const char *name;
    const char *version;
    const char *description;
    /* NULL-terminated list of accepted plugin_opt_ keys, or NULL: accept any. */
    const char *const *options;
};

/*
 * Declares the plugin. Use once, at file scope:
 *     MIDGE_PLUGIN_DECLARE("my-auth", "1.0", "checks users against X");
 * MIDGE_PLUGIN_DECLARE_OPTIONS additionally names the accepted options, so
 * a misspelled plugin_opt_ line is a configuration error:
 *     static const char *const opts[] = {"password_file", NULL};
 *     MIDGE_PLUGIN_DECLARE_OPTIONS("my-auth", "1.0", "...", opts);
 */
#define MIDGE_PLUGIN_DECLARE_OPTIONS(name_, version_, description_, options_)              \
    MIDGE_EXPORT const struct midge_plugin_descriptor midge_plugin_descriptor = {            \
        sizeof(struct midge_plugin_descriptor), MIDGE_ABI_MAJOR, MIDGE_ABI_MINOR, (name_),   \
        (version_), (description_), (options_)}
#define MIDGE_PLUGIN_DECLARE(name_, version_, description_)                                \
    MIDGE_PLUGIN_DECLARE_OPTIONS(name_, version_, description_, NULL)

/* The descriptor MIDGE_PLUGIN_DECLARE defines. */
MIDGE_EXPORT extern const struct midge_plugin_descriptor midge_plugin_descriptor;

/*
 * Called once at load (main thread, before any client). Return 0, or a
 * negative error after api->set_error() explains it; the broker then
 * refuses to start (or, on SIGHUP, keeps the old configuration). Store the
 * instance's state in *state, never in globals: one .so may be loaded twice.
 */
MIDGE_EXPORT int midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state);

/* Optional: called once at shutdown (main thread, after every worker stopped). */
MIDGE_EXPORT void midge_plugin_cleanup(midge_plugin *self, void *state);

#ifdef __cplusplus
}
#endif

#endif
