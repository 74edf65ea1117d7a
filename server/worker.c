/*
 * Worker threads: one ev_loop each, an inbox for other threads, batched
 * cross-worker sends, and the once-per-iteration flush point.
 */
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "mainloop.h"
#include "msg.h"
#include "plugin.h"
#include "session.h"
#include "xport.h"

static __thread struct worker *current;

/* The worker of the calling thread, NULL on other threads. */
struct worker *
worker_current(void)
{
    return current;
}

/* Appends to an item array. Returns 0 or -1 (out of memory). */
int
witems_push(struct witems *a, const struct witem *it)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        struct witem *v = realloc(a->v, cap * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = *it;
    return 0;
}

/* Releases what an item owns without acting on it. */
void
witem_discard(struct witem *it)
{
    switch (it->kind) {
    case WI_DELIVER:
        msg_unref(it->u.m);
        free(it->ids);
        break;
    case WI_ACCEPT:
        close(it->u.fd);
        atomic_fetch_sub(&it->listener->nconns, 1);
        break;
    case WI_TICKET:
        plugin_auth_completed_discard(it->u.ptr);
        break;
    case WI_CALL:
        /* Never dropped: fn owns its argument. The main thread runs it instead. */
        main_call(it->fn, it->u.ptr);
        break;
    case WI_HANDOFF:
        close(it->u.conn->fd);
        atomic_fetch_sub(&it->u.conn->listener->nconns, 1);
        xport_free(it->u.conn); /* issue 9 */
        outbuf_clear(&it->u.conn->out);
        free(it->u.conn->inbuf);
        plugin_conn_release(it->u.conn);
        plugin_eauth_free(it->u.conn);
        free(it->u.conn->connect_uprops);
        free(it->u.conn->client_id);
        free(it->u.conn->username);
        free(it->u.conn);
        break;
    default:
        break;
    }
}

/* Appends items to worker `to`'s inbox and wakes it if it was idle. [any thread] */
static void
post_many(unsigned to, const struct witem *items, size_t n)
{
    struct worker *w = broker.workers[to];
    size_t i;
    size_t before;

    pthread_mutex_lock(&w->inbox_lock);
    if (w->dead) {
        /* Shutdown: the worker is gone; calls go to the main thread, the rest is released. */
        pthread_mutex_unlock(&w->inbox_lock);
        for (i = 0; i < n; i++) {
            struct witem it = items[i];
            witem_discard(&it);
        }
        return;
    }
    before = w->inbox.n;
    for (i = 0; i < n; i++) {
        if (witems_push(&w->inbox, &items[i]) < 0) {
            struct witem it = items[i];
            witem_discard(&it);
        }
    }
    atomic_store_explicit(&w->inbox_len, w->inbox.n, memory_order_relaxed);
    pthread_mutex_unlock(&w->inbox_lock);
    if (before == 0) {
        ev_async_send(w->loop, &w->wake);
    }
}

/* Posts one item to a worker. [any thread] */
void
worker_post(unsigned to, const struct witem *it)
{
    post_many(to, it, 1);
}

unsigned
call_target_current(void)
{
    return current != NULL ? current->id : CALL_MAIN;
}

/*
 * Workers that accept posts, published with release order once they exist:
 * a plugin thread started in init (before the workers) reads it with
 * acquire order before touching broker.workers.
 */
static atomic_uint workers_ready;

unsigned
workers_ready_count(void)
{
    return atomic_load_explicit(&workers_ready, memory_order_acquire);
}

void
call_post(unsigned target, void (*fn)(void *arg), void *arg)
{
    struct witem it;

    if (target == CALL_MAIN ||
        target >= atomic_load_explicit(&workers_ready, memory_order_acquire)) {
        main_call(fn, arg);
        return;
    }
    memset(&it, 0, sizeof(it));
    it.kind = WI_CALL;
    it.fn = fn;
    it.u.ptr = arg;
    worker_post(target, &it);
}

/* Calls made before the workers ran (plugin init), posted by worker_start_all. */
struct early_call {
    const char *id; /* owned by arg */
    size_t len;
    void (*fn)(void *arg);
    void *arg;
};

static struct {
    pthread_mutex_t lock;
    int running;            /* the workers accept calls */
    struct early_call *v;   /* Protected by lock */
    size_t n;
} early = {PTHREAD_MUTEX_INITIALIZER, 0, NULL, 0};

void
call_post_home(const char *id, size_t len, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&early.lock);
    if (!early.running) {
        struct early_call *v = realloc(early.v, (early.n + 1) * sizeof(*v));
        if (v != NULL) {
            early.v = v;
            v[early.n].id = id;
            v[early.n].len = len;
            v[early.n].fn = fn;
            v[early.n].arg = arg;
            early.n++;
            pthread_mutex_unlock(&early.lock);
            return;
        }
        pthread_mutex_unlock(&early.lock);
        main_call(fn, arg); /* no memory: it runs without a worker (fn copes) */
        return;
    }
    pthread_mutex_unlock(&early.lock);
    call_post(broker_home_worker(id, len), fn, arg);
}

/* Posts the calls plugins made before the workers ran (see worker.h). Main thread. */
void
worker_post_early_calls(void)
{
    struct early_call *v;
    size_t k;
    size_t m;

    pthread_mutex_lock(&early.lock);
    v = early.v;
    m = early.n;
    early.v = NULL;
    early.n = 0;
    pthread_mutex_unlock(&early.lock);
    for (k = 0; k < m; k++) {
        call_post(broker_home_worker(v[k].id, v[k].len), v[k].fn, v[k].arg);
    }
    free(v);
}

/* Batches an item for another worker; posted in this worker's prepare. [worker thread] */
void
worker_send(struct worker *w, unsigned to, const struct witem *it)
{
    if (witems_push(&w->outbox[to], it) < 0) {
        struct witem copy = *it;
        witem_discard(&copy);
    }
}

static void
deliver(struct worker *w, struct witem *it)
{
    struct session *s = session_find_uid(w, it->uid);

    if (s != NULL) {
        session_deliver_id(s, it->u.m, it->qos, it->retain, it->sub_id, it->ids,
                           it->n_ids > 1 ? (uint16_t)(it->n_ids - 1) : 0, it->delivery_id);
    }
    msg_unref(it->u.m);
    free(it->ids);
}

/* Inbox lengths that pause (high) and resume (low) publishers elsewhere. */
#define BP_HIGH 65536
#define BP_LOW 16384

static int
inboxes_above(const struct worker *w, size_t limit)
{
    unsigned i;

    for (i = 0; i < broker.nworkers; i++) {
        if (i != w->id &&
            atomic_load_explicit(&broker.workers[i]->inbox_len, memory_order_relaxed) > limit) {
            return 1;
        }
    }
    return 0;
}

/* See worker.h. [worker thread] */
int
worker_throttled(struct worker *w)
{
    if (atomic_load_explicit(&broker.pressure, memory_order_relaxed) == 0 &&
        !inboxes_above(w, BP_HIGH)) {
        return 0;
    }
    if (!ev_is_active(&w->bp_timer)) {
        ev_timer_again(w->loop, &w->bp_timer);
    }
    return 1;
}

/* Resumes every paused publisher once the pressure is gone, all at once (fairness). */
static void
bp_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, bp_timer));
    struct conn *c;

    (void)revents;
    if (atomic_load_explicit(&broker.pressure, memory_order_relaxed) > 0 ||
        inboxes_above(w, BP_LOW)) {
        return;
    }
    ev_timer_stop(loop, t);
    for (c = w->conns; c != NULL && w->paused > 0; c = c->next) {
        conn_resume_read(c);
    }
}

static void graceful_stop(struct worker *w);

/* Drains the inbox. */
static void
wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct worker *w = (struct worker *)((char *)a - offsetof(struct worker, wake));
    struct witems batch;
    size_t i;

    (void)loop;
    (void)revents;
    pthread_mutex_lock(&w->inbox_lock);
    batch = w->inbox;
    memset(&w->inbox, 0, sizeof(w->inbox));
    atomic_store_explicit(&w->inbox_len, 0, memory_order_relaxed);
    pthread_mutex_unlock(&w->inbox_lock);

    for (i = 0; i < batch.n; i++) {
        struct witem *it = &batch.v[i];
        switch (it->kind) {
        case WI_DELIVER:
            deliver(w, it);
            break;
        case WI_ACCEPT:
            if (w->stopping) {
                witem_discard(it);
            } else {
                conn_new(w, it->u.fd, it->listener);
            }
            break;
        case WI_HANDOFF:
            if (w->stopping) {
                witem_discard(it);
            } else {
                conn_adopt(w, it->u.conn);
            }
            break;
        case WI_STOP:
            graceful_stop(w);
            break;
        case WI_TICKET:
            plugin_auth_completed(it->u.ptr);
            break;
        case WI_CALL:
            it->fn(it->u.ptr);
            break;
        default:
            break;
        }
    }
    free(batch.v);
}

/* End of a loop iteration: post batches to other workers, flush sockets, free closed conns. */
static void
prepare_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct worker *w = (struct worker *)((char *)p - offsetof(struct worker, prepare));
    unsigned i;

    (void)loop;
    (void)revents;
    for (i = 0; i < broker.nworkers; i++) {
        if (w->outbox[i].n > 0) {
            post_many(i, w->outbox[i].v, w->outbox[i].n);
            w->outbox[i].n = 0;
        }
    }
    conn_flush_dirty(w);
    conn_reap(w);
    if (w->stopping && w->conns == NULL) {
        ev_break(w->loop, EVBREAK_ALL);
    }
}

static void
tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, tick));
    double now = ev_now(loop);

    (void)revents;
    conns_tick(w, now);
    sessions_tick(w, now);
}

/*
 * Shutdown: v5 clients get DISCONNECT 0x8B [MQTT-3.14.2-1 reason list],
 * everyone's output is flushed, sockets closed. Wills are not published on a
 * graceful shutdown (docs/architecture.md).
 */
static void
graceful_stop(struct worker *w)
{
    w->stopping = 1;
    while (w->conns != NULL) {
        conn_close(w->conns, MQTT_RC_SERVER_SHUTTING_DOWN, 0, "server shutting down");
    }
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;

    current = w;
    plugins_thread_start(w->id);
    ev_run(w->loop, 0);
    plugins_thread_stop(w->id);
    /* Anything posted after the loop ended still owns resources; calls still run here. */
    for (;;) {
        struct witems rest;
        pthread_mutex_lock(&w->inbox_lock);
        rest = w->inbox;
        memset(&w->inbox, 0, sizeof(w->inbox));
        pthread_mutex_unlock(&w->inbox_lock);
        if (rest.n == 0) {
            free(rest.v);
            break;
        }
        for (size_t i = 0; i < rest.n; i++) {
            if (rest.v[i].kind == WI_CALL) {
                rest.v[i].fn(rest.v[i].u.ptr);
            } else {
                witem_discard(&rest.v[i]);
            }
        }
        free(rest.v);
    }
    conn_reap(w);
    plugin_isessions_free(w);
    sessions_free(w->sessions);
    w->sessions = NULL;
    outbuf_thread_cleanup();
    current = NULL;
    return NULL;
}

static struct worker *
worker_new(unsigned id, unsigned n)
{
    struct worker *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        return NULL;
    }
    w->id = id;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    w->scratch = malloc(WORKER_SCRATCH);
    w->outbox = calloc(n, sizeof(*w->outbox));
    w->sessions = sessions_new();
    if (w->loop == NULL || w->scratch == NULL || w->outbox == NULL || w->sessions == NULL) {
        return NULL;
    }
    pthread_mutex_init(&w->inbox_lock, NULL);
    ev_async_init(&w->wake, wake_cb);
    ev_async_start(w->loop, &w->wake);
    ev_prepare_init(&w->prepare, prepare_cb);
    ev_prepare_start(w->loop, &w->prepare);
    ev_timer_init(&w->tick, tick_cb, 1.0, 1.0);
    ev_timer_start(w->loop, &w->tick);
    ev_init(&w->bp_timer, bp_cb);
    w->bp_timer.repeat = 0.002;
    return w;
}

/* Creates and starts the workers. Start-up, main thread. */
int
worker_start_all(unsigned n)
{
    unsigned i;

    broker.workers = calloc(n, sizeof(*broker.workers));
    if (broker.workers == NULL) {
        return -1;
    }
    broker.nworkers = n;
    for (i = 0; i < n; i++) {
        broker.workers[i] = worker_new(i, n);
        if (broker.workers[i] == NULL) {
            midge_log(MLOG_ERROR, "cannot create worker %u: out of memory", i);
            return -1;
        }
    }
    for (i = 0; i < n; i++) {
        int r = pthread_create(&broker.workers[i]->thread, NULL, worker_main, broker.workers[i]);
        if (r != 0) {
            midge_log(MLOG_ERROR, "cannot start worker %u: %s", i, strerror(r));
            return -1;
        }
    }
    atomic_store_explicit(&workers_ready, n, memory_order_release);
    /* From now on calls go straight to the workers; those made in init wait for
     * worker_post_early_calls(), after the restore. */
    pthread_mutex_lock(&early.lock);
    early.running = 1;
    pthread_mutex_unlock(&early.lock);
    return 0;
}

/* Stops every worker gracefully and frees them. Main thread. */
void
worker_stop_all(void)
{
    unsigned i;
    struct witem it;

    memset(&it, 0, sizeof(it));
    it.kind = WI_STOP;
    for (i = 0; i < broker.nworkers; i++) {
        worker_post(i, &it);
    }
    for (i = 0; i < broker.nworkers; i++) {
        struct worker *w = broker.workers[i];
        unsigned j;
        struct witems rest;
        size_t k;
        pthread_join(w->thread, NULL);
        /* From now on posts to this worker are redirected (post_many). */
        pthread_mutex_lock(&w->inbox_lock);
        w->dead = 1;
        rest = w->inbox;
        memset(&w->inbox, 0, sizeof(w->inbox));
        pthread_mutex_unlock(&w->inbox_lock);
        for (k = 0; k < rest.n; k++) {
            witem_discard(&rest.v[k]);
        }
        free(rest.v);
        for (j = 0; j < broker.nworkers; j++) {
            for (k = 0; k < w->outbox[j].n; k++) {
                witem_discard(&w->outbox[j].v[k]);
            }
            free(w->outbox[j].v);
            w->outbox[j].v = NULL;
            w->outbox[j].n = 0;
        }
    }
}

/*
 * Frees the stopped workers. Kept apart from worker_stop_all() because
 * plugin pool threads may still post to them until plugins_unload() joined
 * those threads (posts to a dead worker go to the main thread). Main thread.
 */
void
worker_free_all(void)
{
    unsigned i;

    atomic_store_explicit(&workers_ready, 0, memory_order_release);
    for (i = 0; i < broker.nworkers; i++) {
        struct worker *w = broker.workers[i];
        free(w->outbox);
        free(w->inbox.v);
        free(w->matches.v);
        free(w->scratch);
        ev_loop_destroy(w->loop);
        pthread_mutex_destroy(&w->inbox_lock);
        free(w);
    }
    free(broker.workers);
    broker.workers = NULL;
}
