/*
 * The event queue: a mutex-protected FIFO with a bound, and one condition
 * variable the writer waits on. The persist hook runs under the broker's
 * lock on a worker thread, so a push is one malloc, a copy and a short
 * critical section; the writer is signalled only when it sleeps.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue.h"

/* Owns the events linked from head. Freed by psq_queue_free(). */
struct psq_queue {
    struct psq_env env;
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* CLOCK_MONOTONIC; signalled on push (when the writer sleeps) and stop */
    struct psq_event *head;   /* Protected by lock. */
    struct psq_event *tail;   /* Protected by lock. */
    size_t queued;            /* events in the list. Protected by lock. */
    size_t pending;           /* queued + taken and not done. Protected by lock. */
    size_t max_pending;
    uint64_t lost_seq;        /* first refused seq, 0: none. Protected by lock. */
    int waiting;              /* the writer sleeps in cond. Protected by lock. */
    int stopping;             /* Protected by lock. */
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

/* Copies an event; see queue.h. */
struct psq_event *
psq_event_new(const struct psq_env *env, const struct midge_persist_event *ev)
{
    size_t cl = ev->client_id != NULL ? strlen(ev->client_id) + 1 : 0;
    size_t fl = ev->filter != NULL ? strlen(ev->filter) + 1 : 0;
    struct psq_event *e = malloc(sizeof(*e) + cl + fl);

    if (e == NULL) {
        return NULL;
    }
    e->next = NULL;
    e->type = ev->type;
    e->seq = ev->seq;
    e->wall = psq_wall_now();
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
    return e;
}

void
psq_event_free(const struct psq_env *env, struct psq_event *e)
{
    if (e != NULL) {
        if (e->msg != NULL) {
            env->api->message_unref(e->msg);
        }
        free(e);
    }
}

void
psq_event_list_free(const struct psq_env *env, struct psq_event *list)
{
    while (list != NULL) {
        struct psq_event *next = list->next;

        psq_event_free(env, list);
        list = next;
    }
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
        psq_event_list_free(&q->env, q->head);
        pthread_cond_destroy(&q->cond);
        pthread_mutex_destroy(&q->lock);
        free(q);
    }
}

/* Appends an event; see queue.h. */
int
psq_queue_push(struct psq_queue *q, struct psq_event *e)
{
    int rc = 0;
    int wake = 0;

    pthread_mutex_lock(&q->lock);
    if (q->lost_seq != 0 || q->pending >= q->max_pending) {
        /*
         * Over the bound the database can no longer follow the broker: an
         * event it misses would make later ones wrong. Refuse this one and
         * all later ones, so the file keeps a consistent prefix of the
         * stream and nothing after it is ever reported durable.
         */
        if (q->lost_seq == 0) {
            q->lost_seq = e->seq != 0 ? e->seq : 1;
        }
        rc = -MIDGE_EBUSY;
    } else {
        if (q->tail != NULL) {
            q->tail->next = e;
        } else {
            q->head = e;
        }
        q->tail = e;
        q->queued++;
        q->pending++;
        wake = q->waiting;
        e = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    if (wake) {
        pthread_cond_signal(&q->cond);
    }
    psq_event_free(&q->env, e);
    return rc;
}

/* Takes the queued events; see queue.h. */
struct psq_event *
psq_queue_take(struct psq_queue *q, int64_t not_before_ns, int need_events,
               struct psq_event **last, size_t *n, int *stopping)
{
    struct psq_event *list = NULL;

    pthread_mutex_lock(&q->lock);
    for (;;) {
        int64_t now = psq_mono_ns();

        if (q->stopping || (now >= not_before_ns && (q->head != NULL || !need_events))) {
            break;
        }
        q->waiting = 1;
        if (q->head == NULL && need_events) {
            pthread_cond_wait(&q->cond, &q->lock);
        } else {
            struct timespec until;

            until.tv_sec = (time_t)(not_before_ns / 1000000000);
            until.tv_nsec = (long)(not_before_ns % 1000000000);
            (void)pthread_cond_timedwait(&q->cond, &q->lock, &until);
        }
        q->waiting = 0;
    }
    list = q->head;
    *last = q->tail;
    *n = q->queued;
    q->head = NULL;
    q->tail = NULL;
    q->queued = 0;
    *stopping = q->stopping;
    pthread_mutex_unlock(&q->lock);
    return list;
}

void
psq_queue_refuse(struct psq_queue *q, uint64_t seq)
{
    pthread_mutex_lock(&q->lock);
    if (q->lost_seq == 0) {
        q->lost_seq = seq != 0 ? seq : 1;
    }
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
