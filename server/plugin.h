/*
 * Plugins, broker side: loading (plugin.c), the API table handed to plugins
 * (plugin_api.c), and the hook chains with asynchronous decisions
 * (plugin_hooks.c). The public contract is plugin-api/midge/plugin.h.
 *
 * Ownership: the instance list is built at start-up by the main thread and
 * never changes afterwards (SIGHUP only swaps an instance's options), so
 * workers walk it without locks. Instances are freed at exit after the
 * workers stopped.
 */
#ifndef MIDGE_PLUGIN_INTERNAL_H
#define MIDGE_PLUGIN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "midge/plugin.h"

struct config;
struct plugin_conf;
struct conn;
struct listener;
struct worker;
struct mqtt_connect;
struct mqtt_reason;

/* Hooks whose calls the broker measures. */
enum plugin_hook_id {
    PH_AUTH = 0,
    PH_ACL = 1,
    PH_EAUTH = 2,
    PH_MSG_IN = 3,
    PH_COUNT,
};

#define PLUGIN_LAT_BUCKETS 32 /* latency histogram: bucket i holds [2^i, 2^(i+1)) ns */

/* Per-thread counters of one hook of one instance. Single writer: its thread. */
struct hook_metrics {
    atomic_uint_fast64_t calls;
    atomic_uint_fast64_t allow;
    atomic_uint_fast64_t deny;
    atomic_uint_fast64_t defer;
    atomic_uint_fast64_t pending;
    atomic_uint_fast64_t timeouts;
    atomic_uint_fast64_t lat[PLUGIN_LAT_BUCKETS];
};

/* One loaded plugin instance. Owned by the instance list (plugin.c). */
struct midge_plugin {
    char *name;            /* instance name: plugin_instance or the descriptor's name */
    char *path;            /* the file loaded */
    void *dl;
    const struct midge_plugin_descriptor *desc;
    int (*init)(midge_plugin *, const struct midge_api *, void **);
    void (*cleanup)(midge_plugin *, void *);
    const struct midge_hooks *hooks; /* set by api->hooks_set; static storage of the plugin */
    void *state;
    const struct plugin_conf *conf;  /* options in force: belongs to a config kept until exit */
    int per_listener;      /* listener_plugin: only clients of that listener */
    uint16_t listener_port;
    char *listener_address;
    atomic_uint timeout_ms;  /* plugin_timeout; SIGHUP changes it while workers read it */
    atomic_int timeout_allow; /* plugin_timeout_verdict allow */
    int initialised;
    char err[512];         /* api->set_error() during init/reload */
    struct hook_metrics *metrics; /* [nthreads][PH_COUNT] shards, see plugin_metrics() */
    unsigned metric_shards;  /* rows of `metrics` (workers + 1), fixed at load: any thread reads */
    unsigned index;        /* chain position: the slot of its per-client data */
    unsigned pool_threads; /* plugin_threads */
    unsigned pool_queue;   /* plugin_queue */
    int in_init;           /* inside init: metric_new allowed */
    atomic_int acl_sync_pending_logged; /* PENDING without a ticket was logged (once) */
    atomic_uint acl_reloads; /* reload hook runs: standing ACL answers older than this lapse */
    pthread_mutex_t svc_lock;     /* guards pool creation and the timer/watch lists */
    struct plugin_pool *pool;     /* run_blocking threads, created on first use */
    struct midge_timer *timers;   /* Protected by svc_lock: every live timer, any loop */
    struct midge_watch *watches;  /* Protected by svc_lock: every live fd watcher */
    struct midge_metric *user_metrics; /* api->metric_new(_labeled): plugin_metrics.c's metrics_lock */
    struct midge_plugin *next;
};

/*
 * 1 once every instance finished init (release order): threads plugins
 * started in init read the instance list and metric lists only then.
 */
extern atomic_int plugins_ready;

/*
 * One instance's data on one connection, and its standing ACL answers
 * (api->client_acl_standing). Owned by the connection's slot array;
 * touched only on the connection's worker.
 */
struct plugin_slot {
    void *data;
    void (*free_fn)(void *data);
    uint32_t standing_gen; /* the instance's acl_reloads when `standing` was set */
    uint16_t standing;     /* 2 bits per enum midge_acl_action: 0 none, 1 ALLOW, 2 DEFER */
};

/* Number of instances (fixed after load): size of a connection's data slots. */
extern unsigned plugins_count;

/* The instance list, in chain order. */
extern struct midge_plugin *plugins;

/* Fast-path flags: some instance has an auth / acl / event hook. Fixed after load. */
extern int plugins_auth_active;
extern int plugins_acl_active;
extern int plugins_forward_active;        /* publish_accepted */
extern int plugins_events_active;
extern int plugins_message_in_active;
extern int plugins_message_out_active;
extern int plugins_sub_events_active;     /* subscribed / unsubscribed */
extern int plugins_session_events_active; /* session_created / session_ended / will_published */

/* plugin.c */

/*
 * Loads every plugin of cfg (dlopen, descriptor, ABI, declared options,
 * unique instance names) and, when `call_init`, runs their init. `nthreads`
 * is the number of worker threads (metrics shards). On error returns -1
 * with "FILE:LINE: plugin 'NAME': reason" in err. Main thread, start-up.
 */
int plugins_load(const struct config *cfg, unsigned nthreads, int call_init, char *err,
                 size_t errlen);

/* Calls cleanup and unloads everything. Main thread, after workers stopped. */
void plugins_unload(void);

/* SIGHUP: gives each instance its new options and calls its reload hook. Main thread. */
void plugins_reload(const struct config *cfg);

/* Per-thread hooks. [that worker thread] */
void plugins_thread_start(unsigned worker);
void plugins_thread_stop(unsigned worker);

/* Once a second on the main thread: tick hooks. */
void plugins_tick(void);

/* The metrics shard of hook `h` of `p` for the calling thread. */
struct hook_metrics *plugin_metrics(struct midge_plugin *p, int h);

/* Sums an instance's metrics over threads (for $SYS). */
void plugin_metrics_sum(const struct midge_plugin *p, int h, struct hook_metrics *out);

/* plugin_services.c: run_blocking, timers, fd watchers, per-client data */

int plugin_run_blocking(midge_plugin *self, void (*work)(void *), void (*done)(void *),
                        void *arg);
midge_timer *plugin_timer_start(midge_plugin *self, double after, double repeat,
                                void (*cb)(void *, midge_timer *), void *arg);
void plugin_timer_stop(midge_plugin *self, midge_timer *t);
midge_watch *plugin_fd_watch(midge_plugin *self, int fd, int events,
                             void (*cb)(void *, int, int), void *arg);
int plugin_fd_watch_set(midge_plugin *self, midge_watch *w, int events);
void plugin_fd_unwatch(midge_plugin *self, midge_watch *w);
void *plugin_client_data(midge_plugin *self, const midge_client *c);
int plugin_client_acl_standing(midge_plugin *self, midge_client *c, int action, int verdict);
int plugin_client_data_set(midge_plugin *self, midge_client *c, void *data,
                           void (*free_fn)(void *));

/* Frees a connection's per-client data (free_fn of each). [the connection's thread] */
void plugin_conn_release(struct conn *c);

/* Shutdown, after the workers stopped: runs the queued jobs, joins the pool. Main thread. */
void plugin_services_stop(struct midge_plugin *p);

/* Frees timers and watchers the plugin left (after cleanup). Main thread. */
void plugin_services_free(struct midge_plugin *p);

/* plugin_clients.c: accessors, clients by id, ACL re-check */

const char *plugin_client_listener_name(const midge_client *c);
const char *plugin_client_peer_ip(const midge_client *c);
int plugin_client_peer_port(const midge_client *c);
int plugin_client_user_property_next(const midge_client *c, size_t *pos, const char **key,
                                     size_t *key_len, const char **value, size_t *value_len);
int plugin_client_tls(const midge_client *c, struct midge_tls_info *info);
int plugin_client_disconnect(midge_plugin *self, const char *client_id, uint8_t reason);
int plugin_client_find(midge_plugin *self, const char *client_id,
                       void (*cb)(void *arg, const struct midge_client_info *info), void *arg);

/* plugin_csession.c: a client's session by id (ABI 1.2) */

int plugin_client_session_list(midge_plugin *self, const char *client_id, int flags,
                               uint64_t connected_before,
                               void (*cb)(void *arg, const struct midge_session_entry *e),
                               void (*done)(void *arg, int found), void *arg);
int plugin_client_session_add(midge_plugin *self, const char *client_id,
                              const struct midge_session_entry *e,
                              void (*done)(void *arg, int result), void *arg);

struct mqtt_props;
/* Keeps a copy of the CONNECT's user properties for plugins. Returns 0 or -1 (no memory). */
int plugin_conn_keep_user_props(struct conn *c, const struct mqtt_props *props);

/*
 * After an ACL plugin reloaded: every worker re-checks its connected
 * clients' subscriptions and removes (and logs) those now denied. Main thread.
 */
void plugin_acl_recheck_all(void);

/* plugin_isession.c: internal sessions */

int plugin_session_open(midge_plugin *self, const char *client_id, uint32_t expiry,
                        uint16_t window, const struct midge_session_handlers *h, void *arg);
int plugin_session_subscribe(midge_session *s, const char *filter, int qos, int flags);
int plugin_session_unsubscribe(midge_session *s, const char *filter);
int plugin_session_publish(midge_session *s, const char *topic, const void *payload,
                           uint32_t len, int qos, int retain);
int plugin_session_ack(midge_session *s, uint32_t id);
void plugin_session_redeliver(midge_session *s);
void plugin_session_close(midge_session *s, int end);
int plugin_session_publish_message(midge_session *s, const midge_message *msg,
                                   void (*done)(void *arg, int result), void *arg);
int plugin_session_released(midge_session *s, uint32_t id);
int plugin_session_window(midge_session *s, uint16_t window);
/* plugin_isession_stats.c (ABI 1.2) */
int plugin_session_stats(midge_session *s, struct midge_session_stats *out);

struct qentry;
/* proto_send_publish for an internal session's stand-in connection. Returns 0. [worker thread] */
int plugin_isession_deliver(struct conn *c, const struct qentry *e, uint16_t pid, int dup);
/* session_resume for a released QoS 2 delivery of an internal session (its `released` handler). */
void plugin_isession_released(struct conn *c, uint16_t pid);

/* Worker shutdown: frees the internal sessions' handles of worker w. [that worker] */
void plugin_isessions_free(struct worker *w);

struct session;
/* Describes a session for plugins (client_find, client_list). [its worker] */
void plugin_session_info(const struct session *s, struct midge_client_info *info);

/* plugin_admin.c: administration services */

int plugin_stats(midge_plugin *self, struct midge_broker_stats *out);
int plugin_client_list(midge_plugin *self, void (*cb)(void *, const struct midge_client_info *),
                       void (*done)(void *), void *arg);
int plugin_retained_list(midge_plugin *self, const char *filter,
                         int (*cb)(void *arg, const midge_message *msg), void *arg);
int plugin_reload_request(midge_plugin *self);
int plugin_plugin_list(midge_plugin *self,
                       int (*cb)(void *arg, const struct midge_plugin_info *info), void *arg);

/* plugin_metrics.c: metrics defined by plugins */

midge_metric *plugin_metric_new(midge_plugin *self, const char *name, int kind, const char *help);
void plugin_metric_add(midge_metric *m, int64_t delta);
void plugin_metric_set(midge_metric *m, int64_t value);
void plugin_metric_observe(midge_metric *m, double value);
/* ABI 1.2: labeled series, any thread (metrics_lock) */
midge_metric *plugin_metric_new_labeled(midge_plugin *self, const char *name, int kind,
                                        const char *help, const char *label_name,
                                        const char *label_value);
void plugin_metric_free(midge_metric *m);

/* Emits every metric of p as ($SYS topic, value). Main thread. */
void plugin_user_metrics_report(const struct midge_plugin *p,
                                void (*emit)(const char *topic, const char *value));
void plugin_user_metrics_free(struct midge_plugin *p);
int plugin_metric_list(midge_plugin *self,
                       int (*cb)(void *arg, const struct midge_metric_info *info), void *arg);

/* plugin_api.c */

/* The table every instance receives. */
extern const struct midge_api plugin_api;

/* 1 when hook `field` exists in p's table (within the size the plugin was built with). */
#define PLUGIN_HAS(p, field)                                                                   \
    ((p)->hooks != NULL &&                                                                     \
     (p)->hooks->size >= offsetof(struct midge_hooks, field) + sizeof((p)->hooks->field) &&    \
     (p)->hooks->field != NULL)

/* plugin_hooks.c */

/* 1 when instance p applies to clients of listener l. */
int plugin_applies(const struct midge_plugin *p, const struct listener *l);

enum plugin_result {
    PLUGIN_ALLOW = MIDGE_ALLOW,
    PLUGIN_DENY = MIDGE_DENY,
    PLUGIN_DEFER = MIDGE_DEFER,     /* every plugin deferred (or none applies) */
    PLUGIN_PENDING = MIDGE_PENDING, /* waiting: conn->auth_wait is set */
};

/*
 * Runs the auth chain for c's CONNECT from chain position `start` (0 at
 * first). `raw` is the CONNECT packet, copied when a plugin goes PENDING.
 * Returns a plugin_result; DENY sets *reason (0: broker's choice). *any is
 * set to 1 when at least one auth hook applies to c. [worker thread]
 */
int plugin_auth(struct conn *c, const struct mqtt_connect *cp, const uint8_t *raw, size_t raw_len,
                size_t start, uint8_t *reason, int *any);

/* api->complete() and api->complete_auth(): see plugin-api/midge/plugin.h. [any thread] */
int plugin_complete(midge_ticket *ticket, int verdict, uint8_t reason);
int plugin_complete_auth(midge_ticket *ticket, int verdict, uint8_t reason, const void *data,
                         uint32_t len);

/* What a pending decision is about (the `kind` of plugin_wait_begin). */
enum plugin_wait_kind {
    PLUGIN_WAIT_AUTH = 0,  /* the auth chain of a CONNECT */
    PLUGIN_WAIT_EAUTH = 1, /* an enhanced_auth step (plugin_eauth.c) */
    PLUGIN_WAIT_ACL = 2,   /* an ACL chain; the waiting packet is a struct acl_hold */
};

/*
 * A decision hook of p (chain position idx) about to run for c, and its
 * ticket (plugin_wait_ticket). Lives on the caller's stack from
 * plugin_wait_begin to plugin_wait_end.
 */
struct plugin_wait {
    uint64_t id;             /* the ticket */
    struct auth_wait *aw;    /* NULL while the ticket is only in its worker's hook slot */
    struct midge_plugin *p;
    size_t idx;
    int kind;                /* enum plugin_wait_kind */
};

/*
 * plugin_wait_begin gives pw a ticket; it costs no allocation unless the
 * hook answers PENDING. After the hook returned verdict v, plugin_wait_end()
 * arms the pending decision when v is PENDING (timeout started,
 * c->auth_wait set, a copy of `raw` kept when not NULL) or releases the
 * ticket. Both return -1 when out of memory. [worker thread]
 */
int plugin_wait_begin(struct plugin_wait *pw, struct conn *c, struct midge_plugin *p, size_t idx,
                      int kind);
midge_ticket *plugin_wait_ticket(const struct plugin_wait *pw);
int plugin_wait_end(struct plugin_wait *pw, struct conn *c, int v, const uint8_t *raw,
                    size_t raw_len);

/* plugin_eauth.c: MQTT 5 enhanced authentication */

/* State of an enhanced authentication exchange. Owned by its connection (c->eauth). */
struct eauth;

/*
 * CONNECT with an Authentication Method: runs step 0 through the chain.
 * Returns PROTO_OK when authenticated (c->auth_state is AUTH_DONE and
 * proto_connect should go on), PROTO_WAIT while the exchange continues
 * (AUTH sent or a plugin pending), PROTO_CLOSE when refused. [worker thread]
 */
int plugin_eauth_connect(struct conn *c, const struct mqtt_connect *cp, const uint8_t *raw,
                         size_t raw_len);

/* An AUTH packet from the client (any state). Returns a PROTO_* result. [worker thread] */
int plugin_eauth_packet(struct conn *c, const struct mqtt_reason *auth);

/* A pending enhanced_auth step was completed (or timed out). [worker thread] */
void plugin_eauth_resume(struct conn *c, size_t index, int verdict, uint8_t reason,
                         const uint8_t *data, uint32_t len);

/* api->auth_data_set. [worker thread, during the enhanced_auth hook] */
int plugin_auth_data_set(midge_client *c, const void *data, uint32_t len);

/* Adds the Authentication Method/Data to a CONNACK's properties (when enhanced auth ran). */
void plugin_eauth_connack_props(struct conn *c, struct mqtt_props *props);

/* Frees c->eauth. */
void plugin_eauth_free(struct conn *c);

/* Inbox item WI_TICKET: a decision arrived for a waiting connection. [worker thread] */
void plugin_auth_completed(void *wait);

/* Releases a WI_TICKET item that will not be processed (shutdown). */
void plugin_auth_completed_discard(void *wait);

/* The connection closes while its auth is pending: forget the ticket. [worker thread] */
void plugin_auth_cancel(struct conn *c);

/*
 * Runs the ACL chain synchronously (RECEIVE, and the subscription re-check
 * after a reload): hooks get a NULL ticket, and a PENDING answer is the
 * instance's plugin_timeout_verdict (a plugin bug, logged once per
 * instance). Returns PLUGIN_ALLOW or PLUGIN_DENY (*reason set, 0 when the
 * plugin gave none); allowed when every plugin defers. `topic` is
 * NUL-terminated (a message's topic, a stored filter): RECEIVE runs per
 * delivery, so it is passed as it is, not copied. [worker thread]
 */
int plugin_acl(struct conn *c, int action, const char *topic, int qos, int retain,
               const uint8_t *payload, uint32_t payload_len, uint8_t *reason);

struct acl_hold;

/*
 * Internal action of a waiting PUBLISH (proto_publish.c): the
 * publish_accepted chain (plugin_forward_wait), run after the PUBLISH passed
 * its ACL chains (plugins see action MIDGE_ACL_PUBLISH).
 */
#define PLUGIN_ACL_FORWARD 0x100

/*
 * Runs the ACL chain for an action the client can wait for (PUBLISH,
 * RETAIN, SUBSCRIBE, WILL) from chain position `start` (0 at first); hooks
 * get a ticket. Returns PLUGIN_ALLOW (also when every plugin deferred),
 * PLUGIN_DENY (*reason set, 0 when the plugin gave none) or PLUGIN_PENDING:
 * the decision waits on c->auth_wait, and before returning PROTO_WAIT the
 * caller gives it the packet to continue with plugin_acl_hold() (or closes
 * the connection). [worker thread]
 */
int plugin_acl_wait(struct conn *c, int action, const char *topic, size_t topic_len, int qos,
                    int retain, const uint8_t *payload, uint32_t payload_len, size_t start,
                    uint8_t *reason);

struct mqtt_publish;
/*
 * The publish_accepted chain (PLUGIN_ACL_FORWARD), like plugin_acl_wait,
 * about a client's PUBLISH `p` (topic resolved): the request also carries the PUBLISH's pass-through properties
 * and Message Expiry Interval (ABI 1.2 fields). [worker thread]
 */
int plugin_forward_wait(struct conn *c, const char *topic, size_t topic_len,
                        const struct mqtt_publish *p, size_t start, uint8_t *reason);

/*
 * Attaches h to c's pending ACL decision (plugin_acl_wait answered
 * PENDING). The decision owns h from now on, always: when it arrives it
 * calls h->resume(); when the connection closes first, h->release(c, h).
 * [worker thread]
 */
void plugin_acl_hold(struct conn *c, struct acl_hold *h);

/* Counts one call of hook `hook` with its verdict and (when ns != 0) latency. */
void plugin_record(struct midge_plugin *p, int hook, int verdict, uint64_t ns);

struct msg;

/* Event hooks. [worker thread] */
void plugin_client_connected(struct conn *c);
void plugin_client_disconnected(struct conn *c, int reason);
void plugin_subscribed(struct conn *c, const char *filter, int qos);
void plugin_unsubscribed(struct conn *c, const char *filter);
void plugin_session_event(const char *client_id, int created);
void plugin_will_published(const char *client_id, const struct msg *will);

/* plugin_msg.c: messages, message_in/out, internal subscriptions */

/* User properties in an encoded property list, as api->message_user_property_next. */
int plugin_uprop_next(const uint8_t *props, uint32_t props_len, size_t *pos, const char **key,
                      size_t *key_len, const char **value, size_t *value_len);

const char *plugin_message_topic(const midge_message *m);
const void *plugin_message_payload(const midge_message *m, uint32_t *len);
int plugin_message_qos(const midge_message *m);
int plugin_message_retain(const midge_message *m);
int plugin_message_user_property_next(const midge_message *m, size_t *pos, const char **key,
                                      size_t *key_len, const char **value, size_t *value_len);
const midge_message *plugin_message_ref(const midge_message *m);
void plugin_message_unref(const midge_message *m);
int plugin_edit_topic(midge_message_edit *e, const char *topic);
int plugin_edit_payload(midge_message_edit *e, const void *payload, uint32_t len);
int plugin_edit_user_property_add(midge_message_edit *e, const char *key, const char *value);

/*
 * Runs the message_in chain on *mp (a message the caller owns). An edit
 * replaces *mp with the edited copy (the old reference is dropped). Returns
 * PLUGIN_ALLOW, or PLUGIN_DENY with *reason (0: acknowledge as success).
 * [worker thread]
 */
int plugin_message_in(struct conn *c, struct msg **mp, uint8_t *reason);

/* message_out hooks. [worker thread] */
void plugin_message_out(struct conn *c, const struct msg *m);

midge_subscription *plugin_subscribe(midge_plugin *self, const char *filter,
                                     void (*cb)(void *arg, const midge_message *msg), void *arg);
void plugin_unsubscribe(midge_plugin *self, midge_subscription *sub);

uint64_t plugin_message_id(const midge_message *m);
const void *plugin_message_properties(const midge_message *m, uint32_t *len);
uint32_t plugin_message_expiry(const midge_message *m);
const midge_message *plugin_message_new(midge_plugin *self, const char *topic,
                                        const void *payload, uint32_t len, int qos, int retain,
                                        const void *props, uint32_t props_len, uint32_t expiry,
                                        uint64_t id);

/* Number of internal subscriptions: publishers test it before calling plugin_internal_route. */
extern atomic_int plugin_isubs_n;

/* Calls the internal subscriptions that match m. [any thread] */
void plugin_internal_route(const struct msg *m);

/* Frees every internal subscription left. Main thread, at unload. */
void plugin_internal_subs_clear(void);

#endif
