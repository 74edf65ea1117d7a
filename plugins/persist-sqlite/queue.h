/*
 * The event queue between the persist hook (any worker thread, under the
 * broker's lock: it must only copy and link) and the writer thread. Events
 * are copied into blocks of memory in push order, so the hook does not
 * malloc per event and the writer frees a batch block by block.
 */
#ifndef PSQ_QUEUE_H
#define PSQ_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "psq.h"

/*
 * One persistence event, copied out of the borrowed struct
 * midge_persist_event into a block (struct psq_taken owns it). Its strings
 * are stored after the struct; it holds one reference on `msg`, dropped by
 * psq_taken_free().
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

/* A block of events. Owned by the queue, then by the struct psq_taken it is handed over in. */
struct psq_block;

/* Events taken from the queue, in push order, and the blocks that hold them. Owns the blocks. */
struct psq_taken {
    struct psq_event *head;   /* NULL: none */
    struct psq_event *last;
    size_t n;
    uint64_t max_seq;         /* the highest seq among the events (and folded ones), 0: none */
    size_t folded;            /* events folded into a queued one by psq_queue_push: never copied */
    struct psq_block *blocks;
};

/* Moves src's events after dst's (src is left empty). */
void psq_taken_append(struct psq_taken *dst, struct psq_taken *src);

/* Drops the events' message references and frees the blocks; t is left empty. [any thread] */
void psq_taken_free(const struct psq_env *env, struct psq_taken *t);

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
 * Copies ev (its strings, a reference on its message) to the end of the
 * queue. A delivery's MSG_SENT or MSG_RELEASED whose MSG_QUEUED is still in
 * the queue (not taken) is folded into it instead (its state and packet
 * id), and its MSG_DONE marks that MSG_QUEUED skipped and is dropped: the
 * same as psq_coalesce() would do a moment later, but without copying the
 * event and without the writer ever seeing it (counted in `folded`). Returns 0, or -MIDGE_EBUSY when the bound is reached or was
 * reached before, or -MIDGE_ENOMEM: then nothing is queued, and the queue
 * refuses every later event too (the database would miss one: see
 * psq_queue_lost). Never blocks beyond the queue's short lock. [any thread]
 */
int psq_queue_push(struct psq_queue *q, const struct midge_persist_event *ev);

/*
 * Takes every queued event into *out (which must be empty), in push order,
 * once there is at least one (when `need_events`) and the monotonic time
 * `not_before_ns` passed, or at once when the queue is stopping. *stopping
 * is 1 once psq_queue_stop() ran. [writer thread]
 */
void psq_queue_take(struct psq_queue *q, int64_t not_before_ns, int need_events,
                    struct psq_taken *out, int *stopping);

/* The writer finished with `n` taken events (written or given up): they leave the bound. */
void psq_queue_done(struct psq_queue *q, size_t n);

/* Seq of the first event refused by the bound, 0 when none was. [any thread] */
uint64_t psq_queue_lost(struct psq_queue *q);

/* Events queued or being written now. [any thread] */
size_t psq_queue_pending(struct psq_queue *q);

/* Wakes the writer for good: psq_queue_take returns at once from now on. */
void psq_queue_stop(struct psq_queue *q);

#endif
