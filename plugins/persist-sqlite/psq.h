/*
 * persist-sqlite: what every file of the plugin shares.
 *
 * The plugin keeps the broker's durable state (sessions, subscriptions,
 * retained messages, queued and inflight deliveries, incoming QoS 2 ids,
 * wills) in one SQLite database, written by one writer thread from a queue
 * the persist hook fills (see plugin.c for the map of the files).
 */
#ifndef PSQ_H
#define PSQ_H

#include <stdint.h>

#include <midge/plugin.h>

/* The broker handles every file needs for logging and message accessors. Borrowed for the instance's life. */
struct psq_env {
    midge_plugin *self;
    const struct midge_api *api;
};

/* plugin_opt_durability. */
enum psq_durability {
    PSQ_DURABILITY_FULL = 0,  /* synchronous=FULL: the WAL is fsynced before events are reported durable */
    PSQ_DURABILITY_BATCH = 1, /* synchronous=NORMAL, one commit at most every batch_ms */
    PSQ_DURABILITY_NONE = 2,  /* synchronous=OFF, events reported durable as soon as the writer takes them */
};

/* Wall-clock seconds (what the database stores: it must survive a reboot). In queue.c. */
int64_t psq_wall_now(void);

/* Monotonic nanoseconds (for latencies and deadlines). In queue.c. */
int64_t psq_mono_ns(void);

#define PSQ_LOG(env, level, ...) (env)->api->log((env)->self, (level), __VA_ARGS__)

#endif
