/*
 * The event queue: a mutex-protected FIFO with a bound, and one condition
 * variable the writer waits on. The persist hook runs under the broker's
 * lock on a worker thread, so a push is a copy into the current block and
 * a short critical section (a new block every BLOCK_BYTES); the writer is
 * signalled only when it sleeps. A take hands the blocks over with the
 * events, so events sit next to each other in memory for the writer's
 * passes and are freed a block at a time.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue.h"

#define BLOCK_BYTES (64 * 1024)

/*
 * Delivery id -> its MSG_QUEUED event in the queue, for folding at push
 * (see queue.h). Open addressing without deletion; a slot counts only when
 * its generation is the queue's current one, so a take empties the table
 * by bumping the generation, in O(1) under the lock. Past half full the
 * pushes of that generation are queued as they are: folding is only an
 * optimisation.
 */
#define FOLD_SLOTS 16384

struct fold_slot {
    uint64_t delivery_id;
    struct psq_event *queued; /* NULL: finished (folded DONE) or not in the queue */
    uint32_t gen;
};

/* Events copied in push order. `used` bytes of the memory after the header are taken. */
struct psq_block {
    struct psq_block *next;
    size_t used;
    size_t cap;
    uint64_t pad;             /* the events after the header stay 16-byte aligned */
};

/* Owns the blocks of the queued events. Freed by psq_queue_free(). */
struct psq_queue {
    struct psq_env env;
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* CLOCK_MONOTONIC; signalled on push (when the writer sleeps) and stop */
    struct psq_taken queued;  /* events not taken yet and their blocks. Protected by lock. */
    struct psq_block *cur;    /* the block pushes fill (also in queued.blocks), or NULL. Protected by lock. */
    size_t pending;           /* queued + taken and not done. Protected by lock. */
    size_t max_pending;
    uint64_t lost_seq;        /* first refused seq, 0: none. Protected by lock. */
    int waiting;              /* the writer sleeps in cond. Protected by lock. */
    int stopping;             /* Protected by lock. */
    struct fold_slot *fold;   /* FOLD_SLOTS, owned; NULL: no folding. Protected by lock. */
    uint32_t fold_gen;        /* current generation, never 0. Protected by lock. */
    size_t fold_used;         /* slots of the current generation. Protected by lock. */
};

int64_t
psq_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
psq_wall_now(void)
{
    return (int64_t)time(NULL);
}

/* Bytes an event with these strings takes in a block (a multiple of 16). */
static size_t
event_size(size_t strings)
{
    return (sizeof(struct psq_event) + strings + 15) & ~(size_t)15;
}

/* Fills e from ev; the strings go after it. */
static void
event_copy(const struct psq_env *env, struct psq_event *e, const struct midge_persist_event *ev,
           size_t cl, size_t fl)
{
    e->next = NULL;
    e->type = ev->type;
    e->seq = ev->seq;
    e->wall = ev->type == MIDGE_P_SESSION ? psq_wall_now() : 0; /* only sessions store it */
    e->msg = ev->msg != NULL ? env->api->message_ref(ev->msg) : NULL;
    e->msg_id = ev->msg_id;
    e->delivery_id = ev->delivery_id;
    e->expiry = ev->expiry;
    e->sub_id = ev->sub_id;
    e->connected = ev->connected;
    e->protocol = ev->protocol;
    e->qos = ev->qos;
    e->retain = ev->retain;
    e->options = ev->options;
    e->packet_id = ev->packet_id;
    e->state = 0;
    e->skip = 0;
    e->client_id = NULL;
    e->filter = NULL;
    if (cl > 0) {
        memcpy(e->strings, ev->client_id, cl);
        e->client_id = e->strings;
    }
    if (fl > 0) {
        memcpy(e->strings + cl, ev->filter, fl);
        e->filter = e->strings + cl;
    }
}

void
psq_taken_append(struct psq_taken *dst, struct psq_taken *src)
{
    struct psq_block *b;

    if (src->head == NULL && src->blocks == NULL) {
        return;
    }
    if (dst->head == NULL) {
        dst->head = src->head;
    } else if (src->head != NULL) {
        dst->last->next = src->head;
    }
    if (src->last != NULL) {
        dst->last = src->last;
    }
    dst->n += src->n;
    dst->folded += src->folded;
    dst->max_seq = src->max_seq > dst->max_seq ? src->max_seq : dst->max_seq;
    /* Block order does not matter: they are only freed. */
    while ((b = src->blocks) != NULL) {
        src->blocks = b->next;
        b->next = dst->blocks;
        dst->blocks = b;
    }
    memset(src, 0, sizeof(*src));
}

void
psq_taken_free(const struct psq_env *env, struct psq_taken *t)
{
    struct psq_event *e;
    struct psq_block *b;

    for (e = t->head; e != NULL; e = e->next) {
        if (e->msg != NULL) {
            env->api->message_unref(e->msg);
        }
    }
    while ((b = t->blocks) != NULL) {
        t->blocks = b->next;
        free(b);
    }
    memset(t, 0, sizeof(*t));
}

struct psq_queue *
psq_queue_new(const struct psq_env *env, size_t max_pending)
{
    struct psq_queue *q = calloc(1, sizeof(*q));
    pthread_condattr_t ca;

    if (q == NULL) {
        return NULL;
    }
    q->env = *env;
    q->max_pending = max_pending;
    q->fold = calloc(FOLD_SLOTS, sizeof(*q->fold)); /* NULL: pushes are only copied */
    q->fold_gen = 1;
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    return q;
}

void
psq_queue_free(struct psq_queue *q)
{
    if (q != NULL) {
        psq_taken_free(&q->env, &q->queued);
        free(q->fold);
        pthread_cond_destroy(&q->cond);
        pthread_mutex_destroy(&q->lock);
        free(q);
    }
}

/* Room for `size` bytes at the end of the queue's current block, or a new block. Under lock. */
static void *
block_alloc(struct psq_queue *q, size_t size)
{
    struct psq_block *b = q->cur;
    void *p;

    if (b == NULL || b->cap - b->used < size) {
        size_t cap = size > BLOCK_BYTES - sizeof(*b) ? size : BLOCK_BYTES - sizeof(*b);

        b = malloc(sizeof(*b) + cap);
        if (b == NULL) {
            return NULL;
        }
        b->used = 0;
        b->cap = cap;
        b->next = q->queued.blocks;
        q->queued.blocks = b;
        q->cur = b;
    }
    p = (char *)(b + 1) + b->used;
    b->used += size;
    return p;
}

/* The slot of delivery_id in the current generation, or the free slot it would take. Under lock. */
static struct fold_slot *
fold_slot(struct psq_queue *q, uint64_t delivery_id)
{
    size_t i = (size_t)((delivery_id * 0x9e3779b97f4a7c15ULL) >> 17) & (FOLD_SLOTS - 1);

    while (q->fold[i].gen == q->fold_gen && q->fold[i].delivery_id != delivery_id) {
        i = (i + 1) & (FOLD_SLOTS - 1);
    }
    return &q->fold[i];
}

/* Remembers a queued MSG_QUEUED (the first one of its delivery in this generation). Under lock. */
static void
fold_put(struct psq_queue *q, struct psq_event *e)
{
    struct fold_slot *f;

    if (q->fold == NULL || e->delivery_id == 0 || q->fold_used >= FOLD_SLOTS / 2) {
        return;
    }
    f = fold_slot(q, e->delivery_id);
    if (f->gen != q->fold_gen) {
        f->gen = q->fold_gen;
        f->delivery_id = e->delivery_id;
        f->queued = e;
        q->fold_used++;
    }
}

/*
 * Folds a MSG_SENT, MSG_RELEASED or MSG_DONE into its delivery's queued
 * MSG_QUEUED (the rules of coalesce.c). 1 when folded: ev is not queued.
 * Under lock.
 */
static int
fold(struct psq_queue *q, const struct midge_persist_event *ev)
{
    struct fold_slot *f;
    struct psq_event *e;

    if (q->fold == NULL || ev->delivery_id == 0 ||
        (ev->type != MIDGE_P_MSG_SENT && ev->type != MIDGE_P_MSG_RELEASED &&
         ev->type != MIDGE_P_MSG_DONE)) {
        return 0;
    }
    f = fold_slot(q, ev->delivery_id);
    if (f->gen != q->fold_gen || (e = f->queued) == NULL) {
        return 0;
    }
    if (ev->type == MIDGE_P_MSG_DONE) {
        /* Queued and finished before the writer got to it: never written (psq_coalesce counts it). */
        e->skip = 1;
        f->queued = NULL;
    } else {
        e->state = ev->type == MIDGE_P_MSG_SENT ? MIDGE_DELIVERY_SENT : MIDGE_DELIVERY_RELEASED;
        e->packet_id = ev->packet_id;
    }
    q->queued.folded++;
    if (ev->seq > q->queued.max_seq) {
        q->queued.max_seq = ev->seq; /* reported durable with the batch, like a written event */
    }
    return 1;
}

/* Copies and appends an event; see queue.h. */
int
psq_queue_push(struct psq_queue *q, const struct midge_persist_event *ev)
{
    size_t cl = ev->client_id != NULL ? strlen(ev->client_id) + 1 : 0;
    size_t fl = ev->filter != NULL ? strlen(ev->filter) + 1 : 0;
    struct psq_event *e = NULL;
    int rc = 0;
    int wake = 0;

    if (ev->type == MIDGE_P_MSG_SENT || ev->type == MIDGE_P_MSG_RELEASED ||
        ev->type == MIDGE_P_MSG_DONE) {
        cl = 0; /* the writer needs only the delivery id of these */
    }
    pthread_mutex_lock(&q->lock);
    if (q->lost_seq == 0 && fold(q, ev)) {
        pthread_mutex_unlock(&q->lock);
        return 0;
    }
    if (q->lost_seq == 0 && q->pending < q->max_pending) {
        e = block_alloc(q, event_size(cl + fl));
    }
    if (e == NULL) {
        /*
         * Over the bound (or out of memory) the database can no longer
         * follow the broker: an event it misses would make later ones
         * wrong. Refuse this one and all later ones, so the file keeps a
         * consistent prefix of the stream and nothing after it is ever
         * reported durable.
         */
        rc = q->lost_seq == 0 && q->pending < q->max_pending ? -MIDGE_ENOMEM : -MIDGE_EBUSY;
        if (q->lost_seq == 0) {
            q->lost_seq = ev->seq != 0 ? ev->seq : 1;
        }
    } else {
        event_copy(&q->env, e, ev, cl, fl);
        if (q->queued.last != NULL) {
            q->queued.last->next = e;
        } else {
            q->queued.head = e;
        }
        q->queued.last = e;
        q->queued.n++;
        if (e->seq > q->queued.max_seq) {
            q->queued.max_seq = e->seq;
        }
        q->pending++;
        if (e->type == MIDGE_P_MSG_QUEUED) {
            fold_put(q, e);
        }
        wake = q->waiting;
    }
    pthread_mutex_unlock(&q->lock);
    if (wake) {
        pthread_cond_signal(&q->cond);
    }
    return rc;
}

/* Takes the queued events; see queue.h. */
void
psq_queue_take(struct psq_queue *q, int64_t not_before_ns, int need_events,
               struct psq_taken *out, int *stopping)
{
    pthread_mutex_lock(&q->lock);
    for (;;) {
        int64_t now = psq_mono_ns();

        if (q->stopping || (now >= not_before_ns && (q->queued.head != NULL || !need_events))) {
            break;
        }
        q->waiting = 1;
        if (q->queued.head == NULL && need_events) {
            pthread_cond_wait(&q->cond, &q->lock);
        } else {
            struct timespec until;

            until.tv_sec = (time_t)(not_before_ns / 1000000000);
            until.tv_nsec = (long)(not_before_ns % 1000000000);
            (void)pthread_cond_timedwait(&q->cond, &q->lock, &until);
        }
        q->waiting = 0;
    }
    *out = q->queued;
    memset(&q->queued, 0, sizeof(q->queued));
    q->cur = NULL;
    /* The taken events are the writer's now: no push may fold into them. */
    if (++q->fold_gen == 0) {
        if (q->fold != NULL) {
            memset(q->fold, 0, FOLD_SLOTS * sizeof(*q->fold)); /* no slot of an old generation may look current */
        }
        q->fold_gen = 1;
    }
    q->fold_used = 0;
    *stopping = q->stopping;
    pthread_mutex_unlock(&q->lock);
}

void
psq_queue_done(struct psq_queue *q, size_t n)
{
    pthread_mutex_lock(&q->lock);
    q->pending -= n <= q->pending ? n : q->pending;
    pthread_mutex_unlock(&q->lock);
}

uint64_t
psq_queue_lost(struct psq_queue *q)
{
    uint64_t seq;

    pthread_mutex_lock(&q->lock);
    seq = q->lost_seq;
    pthread_mutex_unlock(&q->lock);
    return seq;
}

size_t
psq_queue_pending(struct psq_queue *q)
{
    size_t n;

    pthread_mutex_lock(&q->lock);
    n = q->pending;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void
psq_queue_stop(struct psq_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    pthread_mutex_unlock(&q->lock);
    pthread_cond_broadcast(&q->cond);
}
