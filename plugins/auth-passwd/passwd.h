/*
 * auth-passwd internals shared by plugin.c (entry points, options, reload,
 * client tracking) and auth.c (the auth hook and its verification jobs).
 */
#ifndef AUTH_PASSWD_PASSWD_H
#define AUTH_PASSWD_PASSWD_H

#include <pthread.h>
#include <stdint.h>

#include <midge/plugin.h>

#include "cache.h"
#include "clients.h"
#include "pwfile.h"
#include "ratelimit.h"

/* MQTT 5 CONNACK reason codes we answer with (the broker maps them for MQTT 3.x). */
#define RC_BAD_USER_OR_PASSWORD 0x86 /* MQTT 3.1.1: return code 4 */
#define RC_SERVER_BUSY 0x89          /* the hashing queue is full (3.1.1: 5) */
#define RC_RATE_EXCEEDED 0x9F        /* Connection rate exceeded: blocked by the limiter (3.1.1: 5) */
#define RC_ADMIN_ACTION 0x98         /* DISCONNECT after a reload removed the user */

/* Options (plugin_opt_*), parsed. Owns path. */
struct passwd_cfg {
    char *path;                /* password_file */
    size_t cache_size;         /* cache_size: entries; 0 disables the cache */
    double cache_ttl;          /* cache_ttl: seconds */
    struct pw_limit_cfg limit; /* fail_delay, fail_delay_max, max_failures, failure_window */
    double max_wait;           /* max_wait: seconds a job may wait for the pool */
    int unknown_defer;         /* unknown_user defer (1) | deny (0) */
    int disconnect;            /* disconnect_on_reload */
};

/* Metrics in $SYS/broker/plugin/INSTANCE/metric/...; NULL when the broker has none. */
struct passwd_metrics {
    midge_metric *ok, *failed, *cache_hits, *blocked, *busy, *verify_seconds;
};

struct job;

/* One instance. Created by init, freed by cleanup (or by init when it fails). */
struct passwd {
    midge_plugin *self;
    const struct midge_api *api;

    pthread_mutex_t lock;     /* guards table and cfg against reload */
    struct pw_table *table;   /* Protected by lock; replaced whole by reload. */
    struct passwd_cfg cfg;    /* Protected by lock. */

    struct pw_cache *cache;     /* for the instance's life (cache_size needs a restart) */
    struct pw_limiter *limiter; /* for the instance's life */
    struct client_map *clients; /* for the instance's life */
    struct passwd_metrics m;

    int async;                /* the broker has run_blocking */
    int timers;               /* the broker has timer_start */

    pthread_mutex_t jobs_lock;
    struct job *jobs;         /* every live job, freed at cleanup if the broker dropped it.
                                 Protected by jobs_lock. */
};

/* Monotonic seconds. */
double passwd_now(void);

/* The auth hook (auth.c). [worker thread] */
int passwd_auth(void *state, midge_client *client, const struct midge_auth_request *req,
                uint8_t *reason, midge_ticket *ticket);

/* Frees the jobs the broker never finished (cleanup, after every worker stopped). */
void passwd_jobs_free(struct passwd *pw);

#endif
