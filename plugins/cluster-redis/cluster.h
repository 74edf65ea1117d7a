/*
 * cluster-redis: several midge nodes acting as one through Redis
 * (docs/cluster-redis.md). Shared declarations of the plugin's parts:
 *
 *   plugin.c   options, hooks (routes from subscribe events, forwarding at
 *              publish_accepted), metrics
 *   routes.c   which filters this node and the other nodes have
 *   link.c     the Redis thread: its loop, connections, outage and reconnect
 *   forward.c  jobs to Redis: bundled forwards, held acks, the outage buffer
 *   receive.c  what comes from Redis: stream entries, pub/sub, route reloads
 *   wire.c     the forwarded-message blob
 *   dedupe.c   recent message ids
 */
#ifndef CLUSTER_H
#define CLUSTER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <midge/plugin.h>

struct routes;
struct link;
struct conntimes;
struct cluster;

enum job_kind {
    JOB_ROUTE_ADD = 1, /* announce `filter` */
    JOB_ROUTE_DEL = 2, /* withdraw `filter` */
    JOB_FORWARD = 3,   /* carry `blob` to `targets` (and store/clear a retained message) */
    JOB_CLAIM = 4,     /* client `filter` (its id) connected here: other nodes drop theirs */
    JOB_HANDOVER = 5,  /* a session ended here goes to node `filter`: XADD `blob` (handover.h) */
};

/*
 * One piece of work for the Redis thread. Built by a worker's hook, then
 * owned by the link (its queue, then the commands in flight, then its
 * outage buffer) until link frees it.
 */
struct job {
    struct job *next;
    int kind;
    char *filter;       /* ROUTE_*: the filter; CLAIM: the client id; owned */
    char *blob;         /* FORWARD: wire.h blob, owned */
    size_t blob_len;
    char *topic;        /* FORWARD of a retained message: the retained hash field, owned; else NULL */
    int qos;
    int retain_clear;   /* the retained message on `topic` is cleared (empty payload) */
    char **targets;     /* node ids, owned */
    size_t ntargets;
    midge_ticket *ticket; /* QoS 1/2 without api->ack_hold: the publisher waits on it; NULL once completed */
    int hold_wanted;    /* QoS 1/2 with api->ack_hold: link_submit numbers the hold */
    uint64_t hold_seq;  /* the publisher's acknowledgement is held until this is released; 0 once done */
    int outstanding;    /* commands sent and not answered */
    int failed;
    int attempts;
    uint64_t when;      /* CLAIM: connect time, microseconds since the epoch */
    int resume;         /* CLAIM: the client connected with clean start 0 (its session moves here) */
};

void job_free(struct job *j);

/* plugin.c: session `client_id` here has `filter` now (announced if it is new on this node). [any thread] */
void cluster_route_added(struct cluster *cl, const char *client_id, const char *filter);

/* The instance. Owned by the broker's plugin slot from init to cleanup. */
struct cluster {
    midge_plugin *self;
    const struct midge_api *api;

    /* Options, fixed after init. */
    char *node_id;
    char *prefix;
    char *redis_host;   /* NULL with redis_unix */
    int redis_port;
    char *redis_unix;
    size_t buffer_max;  /* QoS 1/2 messages kept while Redis is away */
    long stream_maxlen; /* approximate cap of each node's stream */
    double node_timeout; /* seconds without heartbeat before a node is forgotten */

    char boot[24];      /* this process's start, in message ids */
    atomic_uint_fast64_t counter;

    struct routes *routes;
    struct conntimes *conntimes; /* when client ids last connected here (conntimes.h) */
    struct link *link;
    int can_hold;       /* the broker has api->ack_hold / ack_release */
    int can_take;       /* the broker has api->client_session_list / _add (ABI 1.2) */
    int can_props;      /* the broker has api->publish_message (ABI 1.2): properties cross */
    atomic_int hold_refused_logged;

    /* Metrics ($SYS/broker/plugin/INSTANCE/metric/NAME). */
    midge_metric *m_nodes;
    midge_metric *m_routes_remote;
    midge_metric *m_forwarded;
    midge_metric *m_received;
    midge_metric *m_duplicates;
    midge_metric *m_dropped;
    midge_metric *m_buffered;
    midge_metric *m_redis_up;
    midge_metric *m_latency;
    midge_metric *m_shared_elsewhere;
};

/* link.c (link_int.h: its parts in link.c, forward.c, receive.c) */

/* Creates the link (its loop and queue, not yet running). NULL when out of memory. [main thread] */
struct link *link_new(struct cluster *cl);
/* Runs the Redis thread. 0 or -1. */
int link_start(struct link *l);
/*
 * Stops the thread (if running); jobs still waiting are refused (their
 * tickets answered) and later link_submit calls fail. The memory stays valid
 * for workers still running. [main thread or the stopping worker]
 */
void link_stop(struct link *l);
/* link_stop, then frees everything. [main thread, after the workers stopped] */
void link_free(struct link *l);
/*
 * Hands a job to the Redis thread. 0, or -1 when the queue is full (the
 * caller keeps j). With j->hold_wanted, *hold_seq is the hold's number for
 * api->ack_hold (released once the job is done). [any thread]
 */
int link_submit(struct link *l, struct job *j, uint64_t *hold_seq);

#endif
