/*
 * Loop prevention between midge brokers over MQTT 5 (docs/bridge.md):
 * every message a bridge sends carries the user property
 * "midge-origin: NODE:ID" (the broker where it entered the bridged network
 * and its message id there); a broker that receives an origin it has seen
 * recently, or its own, drops it. The recent-origin window is bounded
 * (two generations of LOOP_WINDOW entries).
 *
 * A message a bridge receives keeps (or, from a remote that sent none,
 * gets) its midge-origin when published here (api->session_publish_message
 * carries properties), so wherever it goes next its origin travels with it.
 */
#ifndef BRIDGE_LOOP_H
#define BRIDGE_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "midge/plugin.h"

#define LOOP_PROP "midge-origin"
/* In a midge bridge's MQTT 5 CONNECT: "I am a midge bridge" (value: its node id). */
#define LOOP_BRIDGE_PROP "midge-bridge"
#define LOOP_PULL_MAX 1024
#define LOOP_WINDOW 32768

struct bridge_ctx;
struct bridge;

struct origin {
    uint64_t node; /* never 0 */
    uint64_t id;
};

/* A set of origins: two generations of open addressing. */
struct loop_table {
    struct origin *keys[2];
    size_t count;            /* entries in generation 0 */
};

/* Plugin-wide loop state. Owned by bridge_ctx; every table behind `lock`. */
struct loop_state {
    uint64_t node;           /* this broker's random node id */
    pthread_mutex_t lock;
    struct loop_table seen;  /* origins received recently */
    uint64_t dropped;
    /*
     * Filters that midge peers' bridges subscribed to here (their `in` side):
     * a message matching one may leave through a plain subscription, so it
     * gets its midge-origin when published (message_in), not only when one
     * of our bridges sends it. Only grows (bounded by LOOP_PULL_MAX).
     */
    char **pull;
    size_t npull;
    atomic_size_t npull_seen; /* npull, read without the lock: 0 is the fast path */
};

int loop_init(struct loop_state *ls);
void loop_free(struct loop_state *ls);

/* 1 when o was seen recently or is ours (drop it), else records it and returns 0. [any thread] */
int loop_seen(struct loop_state *ls, const struct origin *o);

/* Reads a message's midge-origin property. 1 found, 0 not. */
int loop_origin_of(const struct midge_api *api, const midge_message *m, struct origin *o);

/* A new origin for a message entering the bridged network here. [any thread] */
void loop_new_origin(struct loop_state *ls, struct origin *o);

/* A midge peer's bridge subscribed to `filter` here. [any thread] */
void loop_pull_add(struct loop_state *ls, const char *filter);
/* 1 when `topic` matches a filter of loop_pull_add. [any thread] */
int loop_pulled(struct loop_state *ls, const char *topic);

/* Parses "NODE:ID" (hex node, decimal id). 1 valid. */
int loop_parse(const char *s, size_t len, struct origin *o);
/* Writes "NODE:ID" into buf (at least 40 bytes); returns its length. */
size_t loop_format(const struct origin *o, char *buf);

/*
 * Where message `m` (delivered to a bridge's session) comes from: fills *o
 * and returns 1 when it arrived over a bridge (it has a midge-origin), else
 * sets *o to (this node, message id) and returns 0.
 */
int loop_classify(struct bridge_ctx *ctx, const midge_message *m, struct origin *o);

#endif
