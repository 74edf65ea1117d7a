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

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "midge/plugin.h"

struct config;
struct plugin_conf;
struct conn;
struct listener;
struct mqtt_connect;

/* Hooks whose calls the broker measures. */
enum plugin_hook_id {
    PH_AUTH = 0,
    PH_ACL = 1,
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
    struct midge_plugin *next;
};

/* The instance list, in chain order. */
extern struct midge_plugin *plugins;

/* Fast-path flags: some instance has an auth / acl / event hook. Fixed after load. */
extern int plugins_auth_active;
extern int plugins_acl_active;
extern int plugins_events_active;

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

/* api->complete(): see plugin-api/midge/plugin.h. [any thread] */
int plugin_complete(midge_ticket *ticket, int verdict, uint8_t reason);

/* Inbox item WI_TICKET: a decision arrived for a pending CONNECT. [worker thread] */
void plugin_auth_completed(void *wait);

/* Releases a WI_TICKET item that will not be processed (shutdown). */
void plugin_auth_completed_discard(void *wait);

/* The connection closes while its auth is pending: forget the ticket. [worker thread] */
void plugin_auth_cancel(struct conn *c);

/*
 * Runs the ACL chain (synchronous). Returns PLUGIN_ALLOW or PLUGIN_DENY
 * (*reason set, 0 when the plugin gave none); allowed when every plugin
 * defers. `topic` need not be NUL-terminated. [worker thread]
 */
int plugin_acl(struct conn *c, int action, const char *topic, size_t topic_len, int qos,
               int retain, const uint8_t *payload, uint32_t payload_len, uint8_t *reason);

/* Event hooks. [worker thread] */
void plugin_client_connected(struct conn *c);
void plugin_client_disconnected(struct conn *c, int reason);

#endif
