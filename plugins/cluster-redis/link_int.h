/*
 * The Redis thread's parts (cluster.h: link_*): its state and the calls
 * between link.c (connections, the loop, the queue), forward.c (jobs to
 * Redis: forwards in bundles, held acknowledgements, the outage buffer,
 * route announcements) and receive.c (what comes from Redis: stream
 * entries, pub/sub messages, route reloads, claims). Everything here runs
 * on the Redis thread unless a field says otherwise.
 */
#ifndef CLUSTER_LINK_INT_H
#define CLUSTER_LINK_INT_H

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cluster.h"

#define GROUP "midge"
#define READ_COUNT "256"
#define READ_BLOCK_MS "2000"
#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0
#define RESYNC_EVERY 5   /* ticks (seconds) between full reloads of remote routes */
#define MAX_ATTEMPTS 3   /* a forward refused by Redis (not lost with the connection) */
#define QUEUE_MAX 100000 /* jobs waiting for the thread */
#define INFLIGHT_MAX 20000 /* forwards sent to Redis and not answered: then jobs wait in the queue */
#define BUNDLE_BYTES (256 * 1024) /* one PUBLISH / XADD carries the messages of one wake up to this */
/*
 * PREFIX:owner:ID = "CONNECT_TIME_US NODE", replaced only by a later
 * connection: claims that cross (the client moved A -> B faster than A's
 * claim travelled) are settled by when the client connected, not by which
 * claim reached Redis first. Node clocks must agree to well under the time
 * a client takes to reconnect (NTP).
 */
#define OWNER_SCRIPT                                                                           \
    "local c = redis.call('GET', KEYS[1]) "                                                    \
    "if not c or tonumber(string.match(c, '^%d+')) <= tonumber(ARGV[1]) then "                 \
    "redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', 86400) end return 0"
#define HOLD_WINDOW (1u << 21) /* > holds that can be outstanding: QUEUE_MAX + INFLIGHT_MAX + buffer */

enum { C_CMD = 0, C_SUB = 1, C_RD = 2, NCONN = 3 };

struct link {
    struct cluster *cl;
    struct ev_loop *loop; /* owned; runs on `thread` */
    ev_async wake;
    ev_timer retry;
    ev_timer tick;
    pthread_t thread;
    int running;

    pthread_mutex_t lock;
    struct job *in_head;  /* Protected by lock: submitted jobs */
    struct job **in_tail; /* Protected by lock */
    size_t in_len;        /* Protected by lock */
    int stop;             /* Protected by lock */
    uint64_t hold_next;   /* Protected by lock: the last hold number given out */

    /* Everything below: the Redis thread only. */
    redisAsyncContext *ctx[NCONN]; /* owned by hiredis once connected; NULL when closed */
    int connected[NCONN];
    int up;
    int retained_read; /* the retained hash was read (once per start) */
    int tearing_down;
    int outage_logged;
    double backoff;
    unsigned ticks;
    double hb_sent;       /* a heartbeat's send time, for the latency metric */
    struct job *buf_head; /* outage buffer, in publish order */
    struct job **buf_tail;
    size_t buf_len;
    struct dedupe *dd;
    size_t inflight;      /* forwards sent and not finished (job_start / job_end) */
    uint8_t *hold_done;   /* finished holds above hold_mark, by number % HOLD_WINDOW */
    uint64_t hold_mark;   /* every hold up to this is finished (released to the broker) */
    char read_from[64];   /* "0..." while reading this consumer's pending entries, then ">" */

    char *k_nodes;        /* PREFIX:nodes          hash node -> last heartbeat (ms) */
    char *k_routes_me;    /* PREFIX:routes:NODE    set of filters */
    char *k_stream_me;    /* PREFIX:stream:NODE    QoS 1/2 messages for NODE */
    char *k_retained;     /* PREFIX:retained       hash topic -> blob */
    char *ch_routes;      /* PREFIX:ch:routes      "+NODE\nFILTER", "-NODE\nFILTER", "*NODE" */
    char *ch_q0_me;       /* PREFIX:ch:q0:NODE     QoS 0 messages for NODE */
    char *ch_claims;      /* PREFIX:ch:claims      "NODE\n" r|c CLIENT_ID: the client connected on NODE (r: clean start 0) */
    char *ch_retained;    /* PREFIX:ch:retained    retained messages set or cleared, to every node */
};

/* Seconds since the epoch, as a double. */
static inline double
link_now(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* forward.c */
/* A reply nobody waits for. */
void link_ignore_reply(redisAsyncContext *ac, void *r, void *arg);
/* Finishes a job's wait: completes its ticket (verdict), releases its held ack. */
void fwd_complete(struct link *l, struct job *j, int verdict, uint8_t reason);
/* Keeps a QoS 1/2 forward for when Redis is back (or drops it when the buffer is full). */
void fwd_buffer(struct link *l, struct job *j);
/* Sends one forward on its own (retained ones, retries, the buffer after an outage). */
void fwd_send(struct link *l, struct job *j);
/* Runs one job from the queue (not bundled). */
void fwd_run(struct link *l, struct job *j);
/* Takes the queued jobs that fit in the in-flight bound and sends them, bundled. */
void fwd_drain(struct link *l);
/* A forward goes to Redis. */
void fwd_job_start(struct link *l);

/* receive.c */
/* Pub/sub replies: subscription confirmations, QoS 0 messages, routes, claims, retained. */
void recv_sub_message(redisAsyncContext *ac, void *r, void *arg);
/* The next XREADGROUP of this node's stream. */
void recv_read_stream(struct link *l);
/* XGROUP CREATE answered: start reading (the backlog first). */
void recv_group_created(redisAsyncContext *ac, void *r, void *arg);
/* Reloads the other nodes and their filters. */
void recv_resync(struct link *l);
/* HGETALL of the retained hash at the first connect. */
void recv_retained_reply(redisAsyncContext *ac, void *r, void *arg);

#endif
