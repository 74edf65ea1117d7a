/*
 * The event queue between the persist hook (any worker thread, under the
 * broker's lock: it must only copy and link) and the writer thread.
 */
#ifndef PSQ_QUEUE_H
#define PSQ_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "psq.h"

/*
 * One persistence event, copied out of the borrowed struct
 * midge_persist_event. Owns its strings (stored after the struct) and one
 * reference on `msg`; freed with psq_event_free().
 */
struct psq_event {
    struct psq_event *next;
    int type;                 /* enum midge_persist_type */
    uint64_t seq;
    int64_t wall;             /* psq_wall_now() when the event was queued */
    const midge_message *msg; /* referenced, or NULL */
    uint64_t msg_id;
    uint64_t delivery_id;
    uint32_t expiry;
    uint32_t sub_id;
    int connected;
    int protocol;
    int qos;
    int retain;
    int options;
    uint16_t packet_id;
    int state;                /* MSG_QUEUED: the row's first state (coalesce.c folds SENT in) */
    int skip;                 /* the writer leaves it out (coalesce.c) */
    const char *client_id;    /* into strings[], or NULL */
    const char *filter;       /* into strings[], or NULL */
    char strings[];
};

/* Copies ev (strings, message reference). NULL when out of memory. [any thread] */
struct psq_event *psq_event_new(const struct psq_env *env, const struct midge_persist_event *ev);

/* Frees e and drops its message reference. NULL is ignored. [any thread] */
void psq_event_free(const struct psq_env *env, struct psq_event *e);

/* Frees a list linked by `next`. */
void psq_event_list_free(const struct psq_env *env, struct psq_event *list);

/* The queue. Owned by the plugin instance; psq_queue_free() frees what is still queued. */
struct psq_queue;

/*
 * Creates a queue holding at most `max_pending` events not yet written
 * (queued plus taken by the writer and not yet psq_queue_done()). NULL when
 * out of memory.
 */
struct psq_queue *psq_queue_new(const struct psq_env *env, size_t max_pending);
void psq_queue_free(struct psq_queue *q);

/*
 * Appends e (the queue takes it). Returns 0, or -MIDGE_EBUSY when the bound
 * is reached or was reached before: then e is freed, and the queue refuses
 * every later event too (the database would miss one: see psq_queue_lost).
 * Never blocks beyond the queue's short lock. [any thread]
 */
int psq_queue_push(struct psq_queue *q, struct psq_event *e);

/*
 * Takes every queued event, in push order, once there is at least one (when
 * `need_events`) and the monotonic time `not_before_ns` passed, or at once
 * when the queue is stopping. Returns the list (NULL: none), its last event
 * in *last and its length in *n; *stopping is 1 once psq_queue_stop() ran.
 * [writer thread]
 */
struct psq_event *psq_queue_take(struct psq_queue *q, int64_t not_before_ns, int need_events,
                                 struct psq_event **last, size_t *n, int *stopping);

/* Refuses event `seq` that could not even be copied (no memory): as past the bound. [any thread] */
void psq_queue_refuse(struct psq_queue *q, uint64_t seq);

/* The writer finished with `n` taken events (written or given up): they leave the bound. */
void psq_queue_done(struct psq_queue *q, size_t n);

/* Seq of the first event refused by the bound, 0 when none was. [any thread] */
uint64_t psq_queue_lost(struct psq_queue *q);

/* Events queued or being written now. [any thread] */
size_t psq_queue_pending(struct psq_queue *q);

/* Wakes the writer for good: psq_queue_take returns at once from now on. */
void psq_queue_stop(struct psq_queue *q);

#endif
