/*
 * Internals shared by the files of the fake broker (plugin-api/test): the
 * structs behind the opaque handles of midge/plugin.h and midge/plugin_test.h,
 * and the cross-file functions, all prefixed fake_ and hidden from the
 * library's exported symbols (a plugin linked into a test may use any name).
 *
 * Who does what:
 *   fake_broker.c        the broker object, the API table, log/publish/bug capture
 *   fake_plugins.c       options, instances: load, reload, unload
 *   fake_clients.c       fake clients, their accessors and extras, per-client data,
 *                        client_disconnect, client_find and client_list requests
 *   fake_hooks.c         tickets, the decision hooks (auth, acl, enhanced_auth) and event hooks
 *   fake_messages.c      messages, their accessors, edits, the message hooks
 *   fake_subscriptions.c internal subscriptions and topic matching
 *   fake_loop.c          timers on a manual clock, fd watchers polled on demand
 *   fake_blocking.c      run_blocking: a worker thread per instance
 *   fake_metrics.c       plugin metrics
 *   fake_persist.c       the persist and restore hooks, persist_durable, restore_*
 *   fake_isessions.c     internal sessions (session_open and friends)
 *   fake_admin.c         stats, retained_list, reload_request
 *
 * Locking: one mutex per fake broker (fb->lock) protects every list a plugin
 * can reach from another thread; fb->cond (CLOCK_MONOTONIC) is broadcast on
 * every completion, publish and finished blocking job. Hooks and callbacks
 * are always called without the lock, so a plugin may call any API function
 * from them.
 */
#ifndef MIDGE_FAKE_INTERNAL_H
#define MIDGE_FAKE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "midge/plugin.h"
#include "midge/plugin_test.h"

#pragma GCC visibility push(hidden)

#define LINE_MAX_LEN 2048 /* longest log line kept, as in the broker */

/* 1 when p's hook table has hook `field` (within the size the plugin was built with). */
#define HOOK_HAS(p, field)                                                                   \
    ((p)->hooks != NULL &&                                                                   \
     (p)->hooks->size >= offsetof(struct midge_hooks, field) + sizeof((p)->hooks->field) &&  \
     (p)->hooks->field != NULL)

/* One option, key and value owned by the list. */
struct opt {
    char *key;
    char *value;
};

/* Options in the order first set. Owns its entries. */
struct opts {
    struct opt *v;
    size_t n;
    size_t cap;
};

/* An MQTT 5 user property; key and value owned (NUL-terminated beyond their lengths). */
struct fake_prop {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
};

/* A list of user properties in order. Owns its entries. */
struct fake_props {
    struct fake_prop *v;
    size_t n;
    size_t cap;
};

/* A captured log line. Owned by the broker's log list. */
struct log_line {
    int level;
    struct log_line *next;
    char text[];
};

/* A captured publish; `m` points into the owned copies beside it. */
struct pub {
    struct midge_test_message m;
    char *instance;
    char *session;
    char *topic;
    char *payload;
    struct pub *next;
};

enum ticket_state {
    T_RUNNING,  /* the hook is running: complete() may already arrive */
    T_PENDING,  /* the hook returned PENDING: waiting for complete() */
    T_DONE,     /* completed */
    T_CLOSED,   /* the hook returned something other than PENDING */
    T_EXPIRED,  /* midge_test_expire(), or PENDING where the broker does not wait */
    T_GONE,     /* the client left */
    T_UNLOADED, /* the instance was unloaded while the ticket was pending */
};

/*
 * One decision. Owned by the broker's ticket list and freed only with the
 * broker, so that a late or double complete() is detected, never a
 * use-after-free. Fields below `fb` are protected by fb->lock.
 */
struct midge_ticket {
    midge_test_broker *fb;
    midge_plugin *plugin;
    midge_client *client; /* NULL once the client left */
    const char *hook;     /* "auth", "acl" or "enhanced_auth" */
    int state;            /* enum ticket_state */
    int returned;         /* what the hook returned, once it did */
    int verdict;          /* completed verdict (T_DONE) */
    uint8_t reason;
    void *data;           /* Authentication Data of the answer (owned), NULL: none */
    size_t data_len;
    struct midge_ticket *next;
};

/* One instance's api->client_data_set() value on a client. Owned by the client. */
struct client_data {
    midge_plugin *plugin;
    void *data;
    void (*free_fn)(void *data);
    int standing[8];             /* api->client_acl_standing per action; 0: none */
    struct client_data *next;
};

/*
 * A fake client. Owned by the broker's client list; freed by
 * midge_test_client_free(). Fields are written by the test's main thread
 * between hooks, except `auth_ticket` (the hook's thread) and `data` (hooks).
 */
struct midge_client {
    midge_test_broker *fb;
    char *id;
    char *username; /* NULL: none */
    char *address;  /* "ip:port" */
    char *peer_ip;  /* the address without the port (and without [] for IPv6) */
    int peer_port;
    char *listener_name;
    int protocol;
    int port;
    int clean_start;
    int keepalive;
    uint8_t *password; /* CONNECT password for enhanced_auth requests, NULL: none */
    size_t password_len;
    struct fake_props props; /* CONNECT user properties */
    int has_tls;
    char *tls_version;
    char *tls_cipher;
    char *tls_subject;
    char *tls_san;
    int tls_verified;
    char *tls_issuer;
    char **tls_sans;        /* copies, tls_san_count of them */
    uint32_t tls_san_count;
    int connected;           /* what client_find reports */
    uint32_t session_expiry;
    uint32_t subscriptions;
    uint32_t queued;
    uint32_t inflight;
    struct client_data *data;
    midge_ticket *auth_ticket; /* the enhanced_auth step whose hook runs now, else NULL */
    atomic_uintptr_t hook_thread; /* marker of the thread running a hook about it, else 0 */
    struct midge_client *next;
};

/* A plugin instance. Owned by the broker's instance list. */
struct midge_plugin {
    midge_test_broker *fb;
    char *name_set;       /* midge_test_set_instance(), or NULL */
    const char *name;     /* in force while loaded: name_set or the descriptor's name */
    void *dl;             /* midge_test_plugin_open(): closed with the broker */
    const struct midge_plugin_descriptor *desc;
    int (*init)(midge_plugin *, const struct midge_api *, void **);
    void (*cleanup)(midge_plugin *, void *);
    char open_err[512];   /* why the file cannot be used; "" when it can */
    const struct midge_hooks *hooks;
    void *state;
    struct opts staged;   /* midge_test_option(): for the next load or reload */
    struct opts active;   /* in force after the last successful init/reload */
    int loaded;
    unsigned long load_seq; /* unload order at broker free: last loaded first */
    int in_init;            /* hooks_set() and metric_new() allowed */
    atomic_uintptr_t config_thread; /* marker of the thread in init/reload, else 0 */
    atomic_uintptr_t tick_thread;   /* marker of the thread in the tick hook, else 0 */
    atomic_uintptr_t restore_thread; /* marker of the thread in the restore hook, else 0 */
    uint64_t durable_seq;   /* api->persist_durable. Protected by fb->lock. */
    int persist_failing;    /* api->persist_failing. Protected by fb->lock. */
    char err[512];          /* midge_test_error() */
    struct fake_pool *pool; /* run_blocking's worker (fake_blocking.c), NULL until used */
    size_t queue_limit;     /* plugin_queue. Protected by fb->lock. */
    int paused;             /* midge_test_blocking_pause(). Protected by fb->lock. */
    struct midge_plugin *next;
};

struct fake_disc;
struct fake_find;
struct fake_restored;
struct fake_open;
struct fake_retained_msg;
struct fake_job;

struct midge_test_broker {
    pthread_mutex_t lock;
    pthread_cond_t cond;    /* a ticket completed, a message was published, a job finished */
    struct midge_api api;   /* handed to every instance of this broker */
    int echo;               /* MIDGE_TEST_LOG: copy log lines to stderr */
    uintptr_t main_thread;  /* the thread that created the broker plays the main thread */
    unsigned long load_seq;
    struct midge_plugin *plugins;  /* main thread only */
    struct midge_client *clients;  /* Protected by lock. */
    struct midge_ticket *tickets;  /* Protected by lock. */
    struct log_line *log_head;     /* Protected by lock. */
    struct log_line *log_tail;
    size_t log_n;
    struct pub *pub_head;          /* Protected by lock. */
    struct pub *pub_tail;
    size_t pub_n;
    unsigned bugs;                 /* Protected by lock. */
    int freeing;                   /* in midge_test_broker_free(): echo bugs. Protected by lock. */
    /* fake_clients.c. Protected by lock. */
    struct fake_disc *disc_head;
    struct fake_disc *disc_tail;
    size_t disc_n;
    struct fake_find *find_head;
    struct fake_find *find_tail;
    /* fake_messages.c: every message and edit ever made, kept until the broker is freed. */
    struct midge_message *messages;    /* Protected by lock. */
    uint64_t msg_seq;                  /* the last message id. Protected by lock. */
    struct midge_message_edit *edits;  /* Protected by lock. */
    /* fake_subscriptions.c: live and removed subscriptions. Protected by lock. */
    struct midge_subscription *subs;
    /* fake_loop.c. Protected by lock. */
    double now;                  /* the manual clock, seconds */
    unsigned long timer_seq;     /* start order of timers */
    struct midge_timer *timers;  /* live and stopped timers */
    struct midge_watch *watches; /* live and removed watchers */
    /* fake_blocking.c: finished jobs waiting for their `done`. Protected by lock. */
    struct fake_job *done_head;
    struct fake_job *done_tail;
    size_t jobs_busy;            /* queued or running, all instances */
    /* fake_metrics.c. Protected by lock. */
    struct midge_metric *metrics;
    /* fake_persist.c: what restore hooks restored. Protected by lock. */
    struct fake_restored *restored_head;
    struct fake_restored *restored_tail;
    size_t restored_n;
    /* fake_isessions.c: internal sessions, open or kept. Protected by lock. */
    struct midge_session *isessions;
    struct fake_open *opens_head; /* session_open requests not run yet */
    struct fake_open *opens_tail;
    /* fake_admin.c. Protected by lock. */
    struct midge_broker_stats stats;
    struct fake_retained_msg *retained;
    unsigned reload_requests;
};

/* fake_broker.c */
uintptr_t fake_this_thread(void);
const char *fake_verdict_name(int v);
void fake_log_append(midge_test_broker *fb, int level, const char *name, int is_bug,
                     const char *text);
void fake_bug(midge_test_broker *fb, const midge_plugin *p, const char *fmt, ...)
    MIDGE_PRINTF(3, 4);
struct timespec fake_deadline_in(unsigned ms);
int fake_topic_ok(const char *topic);
int fake_utf8_ok(const char *s, size_t n);
void *fake_memdup(const void *src, size_t n);
int fake_publish_record(midge_plugin *self, const char *session, const char *topic,
                        const void *payload, uint32_t len, int qos, int retain);

/* fake_plugins.c */
void fake_plugins_api_fill(struct midge_api *a);
int fake_configuring(const midge_plugin *p);
int fake_on_main_context(const midge_plugin *p);
void fake_plugins_free(midge_test_broker *fb);

/* fake_clients.c */
void fake_clients_api_fill(struct midge_api *a);
int fake_client_check(const midge_client *c, const char *fn);
void fake_client_data_release(midge_client *c, const midge_plugin *p);
void fake_clients_free(midge_test_broker *fb);
int fake_props_add(struct fake_props *ps, const char *key, size_t key_len, const char *value,
                   size_t value_len);
int fake_props_copy(struct fake_props *dst, const struct fake_props *src);
void fake_props_free(struct fake_props *ps);
int fake_props_next(const struct fake_props *ps, size_t *pos, const char **key, size_t *key_len,
                    const char **value, size_t *value_len);

/* fake_hooks.c */
void fake_hooks_api_fill(struct midge_api *a);
void *fake_borrowed_copy(const void *src, size_t n, int *oom);
void fake_borrowed_free(void *p, size_t n);
void fake_tickets_unload(midge_plugin *p);
void fake_tickets_free(midge_test_broker *fb);

/* fake_messages.c */
void fake_messages_api_fill(struct midge_api *a);
void fake_messages_check(midge_test_broker *fb);
int fake_message_hold(const midge_message *m);
void fake_message_drop(const midge_message *m);
void fake_messages_free(midge_test_broker *fb);

/* fake_subscriptions.c */
void fake_subs_api_fill(struct midge_api *a);
void fake_subs_unload(midge_plugin *p);
void fake_subs_free(midge_test_broker *fb);
int fake_filter_ok(const char *f);
int fake_topic_match(const char *filter, const char *topic);

/* fake_loop.c */
void fake_loop_api_fill(struct midge_api *a);
void fake_loop_unload(midge_plugin *p);
void fake_loop_free(midge_test_broker *fb);

/* fake_blocking.c */
void fake_blocking_api_fill(struct midge_api *a);
int fake_in_blocking_worker(void);
void fake_blocking_unload(midge_plugin *p);
void fake_blocking_free(midge_test_broker *fb);

/* fake_persist.c */
void fake_persist_api_fill(struct midge_api *a);
void fake_persist_free(midge_test_broker *fb);

/* fake_isessions.c */
void fake_isessions_api_fill(struct midge_api *a);
void fake_isessions_unload(midge_plugin *p);
void fake_isessions_free(midge_test_broker *fb);

/* fake_admin.c */
void fake_admin_api_fill(struct midge_api *a);
void fake_admin_free(midge_test_broker *fb);

/* fake_metrics.c */
void fake_metrics_api_fill(struct midge_api *a);
void fake_metrics_drop(midge_plugin *p);
void fake_metrics_free(midge_test_broker *fb);

#pragma GCC visibility pop

#endif
