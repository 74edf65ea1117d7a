/*
 * Services the broker offers plugins beyond hooks: the blocking pool
 * (api->run_blocking), timers and fd watchers on the calling thread's loop,
 * and per-client data slots. See plugin-api/midge/plugin.h for the contract.
 */
#include "plugin.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "mainloop.h"
#include "worker.h"

/* ---- run_blocking ---- */

/* One queued job. Owned by the pool's queue, then by the thread running it. */
struct pool_job {
    void (*work)(void *arg);
    void (*done)(void *arg);
    void *arg;
    unsigned target; /* where done runs: the caller's worker or CALL_MAIN */
    struct pool_job *next;
};

/* An instance's blocking pool. Owned by its instance; freed by plugin_services_stop(). */
struct plugin_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct pool_job *head; /* Protected by lock */
    struct pool_job *tail; /* Protected by lock */
    unsigned queued;       /* Protected by lock: jobs waiting (not running) */
    int stopping;          /* Protected by lock */
    unsigned nthreads;
    pthread_t *threads;
    struct midge_plugin *plugin;
};

/* Pool threads yield to the workers: a login storm must not slow message traffic. */
#define POOL_NICE 10

static void *
pool_main(void *arg)
{
    struct plugin_pool *pool = arg;

    /* Linux applies nice per thread (the tid is a process id for setpriority). */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), POOL_NICE) != 0) {
        /* Not fatal: the pool only runs at the workers' priority. */
    }
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        struct pool_job *j = pool->head;
        if (j == NULL) {
            if (pool->stopping) {
                break;
            }
            pthread_cond_wait(&pool->cond, &pool->lock);
            continue;
        }
        pool->head = j->next;
        if (pool->head == NULL) {
            pool->tail = NULL;
        }
        pool->queued--;
        pthread_mutex_unlock(&pool->lock);
        j->work(j->arg);
        if (j->done != NULL) {
            call_post(j->target, j->done, j->arg);
        }
        free(j);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Creates p's pool (under p->svc_lock). Returns NULL when threads cannot start. */
static struct plugin_pool *
pool_create(struct midge_plugin *p)
{
    struct plugin_pool *pool = calloc(1, sizeof(*pool));
    sigset_t all;
    sigset_t old;
    unsigned i;

    if (pool == NULL) {
        return NULL;
    }
    pool->threads = calloc(p->pool_threads, sizeof(*pool->threads));
    if (pool->threads == NULL) {
        free(pool);
        return NULL;
    }
    pool->plugin = p;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    /* Signals belong to the main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 0; i < p->pool_threads; i++) {
        if (pthread_create(&pool->threads[i], NULL, pool_main, pool) != 0) {
            break;
        }
        pool->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pool->nthreads == 0) {
        pthread_mutex_destroy(&pool->lock);
        pthread_cond_destroy(&pool->cond);
        free(pool->threads);
        free(pool);
        return NULL;
    }
    if (pool->nthreads < p->pool_threads) {
        midge_log(MLOG_WARNING, "plugin=%s started %u of %u pool threads", p->name,
                  pool->nthreads, p->pool_threads);
    }
    return pool;
}

/* api->run_blocking. [worker thread, main thread] */
int
plugin_run_blocking(midge_plugin *self, void (*work)(void *), void (*done)(void *), void *arg)
{
    struct plugin_pool *pool;
    struct pool_job *j;

    if (self == NULL || work == NULL) {
        return -MIDGE_EINVAL;
    }
    pthread_mutex_lock(&self->svc_lock);
    if (self->pool == NULL) {
        self->pool = pool_create(self);
    }
    pool = self->pool;
    pthread_mutex_unlock(&self->svc_lock);
    if (pool == NULL) {
        return -MIDGE_ENOMEM;
    }
    j = malloc(sizeof(*j));
    if (j == NULL) {
        return -MIDGE_ENOMEM;
    }
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->target = call_target_current();
    j->next = NULL;
    pthread_mutex_lock(&pool->lock);
    if (pool->queued >= self->pool_queue || pool->stopping) {
        pthread_mutex_unlock(&pool->lock);
        free(j);
        return -MIDGE_EBUSY;
    }
    if (pool->tail != NULL) {
        pool->tail->next = j;
    } else {
        pool->head = j;
    }
    pool->tail = j;
    pool->queued++;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

/* ---- timers and fd watchers ---- */

/* A plugin timer. Owned by the plugin (freed by timer_stop, or at unload). */
struct midge_timer {
    ev_timer ev;
    struct ev_loop *loop;
    struct midge_plugin *plugin;
    void (*cb)(void *arg, midge_timer *t);
    void *arg;
    struct midge_timer *next; /* plugin's list, under svc_lock */
    struct midge_timer *prev;
};

/* A plugin fd watcher. Owned by the plugin (freed by fd_unwatch, or at unload). */
struct midge_watch {
    ev_io ev;
    struct ev_loop *loop;
    struct midge_plugin *plugin;
    void (*cb)(void *arg, int fd, int revents);
    void *arg;
    struct midge_watch *next; /* plugin's list, under svc_lock */
    struct midge_watch *prev;
};

/* The calling thread's loop: its worker's, else the main (default) loop. */
static struct ev_loop *
here_loop(void)
{
    struct worker *w = worker_current();

    return w != NULL ? w->loop : ev_default_loop(0);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *ev, int revents)
{
    midge_timer *t = (midge_timer *)((char *)ev - offsetof(midge_timer, ev));

    (void)loop;
    (void)revents;
    t->cb(t->arg, t);
}

midge_timer *
plugin_timer_start(midge_plugin *self, double after, double repeat,
                   void (*cb)(void *, midge_timer *), void *arg)
{
    midge_timer *t;

    if (self == NULL || cb == NULL || !(after >= 0) || !(repeat >= 0)) {
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->loop = here_loop();
    t->plugin = self;
    t->cb = cb;
    t->arg = arg;
    ev_timer_init(&t->ev, timer_cb, after, repeat);
    ev_timer_start(t->loop, &t->ev);
    pthread_mutex_lock(&self->svc_lock);
    t->next = self->timers;
    if (t->next != NULL) {
        t->next->prev = t;
    }
    self->timers = t;
    pthread_mutex_unlock(&self->svc_lock);
    return t;
}

void
plugin_timer_stop(midge_plugin *self, midge_timer *t)
{
    if (t == NULL) {
        return;
    }
    if (t->loop != here_loop()) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s: timer_stop on another thread than "
                  "timer_start: ignored", self->name);
        return;
    }
    ev_timer_stop(t->loop, &t->ev);
    pthread_mutex_lock(&self->svc_lock);
    if (t->prev != NULL) {
        t->prev->next = t->next;
    } else {
        self->timers = t->next;
    }
    if (t->next != NULL) {
        t->next->prev = t->prev;
    }
    pthread_mutex_unlock(&self->svc_lock);
    free(t);
}

static int
ev_events(int events)
{
    return ((events & MIDGE_FD_READ) ? EV_READ : 0) | ((events & MIDGE_FD_WRITE) ? EV_WRITE : 0);
}

static void
watch_cb(struct ev_loop *loop, ev_io *ev, int revents)
{
    midge_watch *w = (midge_watch *)((char *)ev - offsetof(midge_watch, ev));

    (void)loop;
    w->cb(w->arg, w->ev.fd,
          ((revents & EV_READ) ? MIDGE_FD_READ : 0) | ((revents & EV_WRITE) ? MIDGE_FD_WRITE : 0));
}

midge_watch *
plugin_fd_watch(midge_plugin *self, int fd, int events, void (*cb)(void *, int, int), void *arg)
{
    midge_watch *w;

    if (self == NULL || cb == NULL || fd < 0 || (events & ~(MIDGE_FD_READ | MIDGE_FD_WRITE))) {
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return NULL;
    }
    w->loop = here_loop();
    w->plugin = self;
    w->cb = cb;
    w->arg = arg;
    ev_io_init(&w->ev, watch_cb, fd, ev_events(events));
    if (events != 0) {
        ev_io_start(w->loop, &w->ev);
    }
    pthread_mutex_lock(&self->svc_lock);
    w->next = self->watches;
    if (w->next != NULL) {
        w->next->prev = w;
    }
    self->watches = w;
    pthread_mutex_unlock(&self->svc_lock);
    return w;
}

int
plugin_fd_watch_set(midge_plugin *self, midge_watch *w, int events)
{
    if (w == NULL || (events & ~(MIDGE_FD_READ | MIDGE_FD_WRITE))) {
        return -MIDGE_EINVAL;
    }
    if (w->loop != here_loop()) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s: fd_watch_set on another thread than "
                  "fd_watch", self->name);
        return -MIDGE_ESTATE;
    }
    ev_io_stop(w->loop, &w->ev);
    ev_io_set(&w->ev, w->ev.fd, ev_events(events));
    if (events != 0) {
        ev_io_start(w->loop, &w->ev);
    }
    return 0;
}

void
plugin_fd_unwatch(midge_plugin *self, midge_watch *w)
{
    if (w == NULL) {
        return;
    }
    if (w->loop != here_loop()) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s: fd_unwatch on another thread than "
                  "fd_watch: ignored", self->name);
        return;
    }
    ev_io_stop(w->loop, &w->ev);
    pthread_mutex_lock(&self->svc_lock);
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        self->watches = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    pthread_mutex_unlock(&self->svc_lock);
    free(w);
}

/* ---- per-client data ---- */

void *
plugin_client_data(midge_plugin *self, const midge_client *c)
{
    const struct conn *conn = (const struct conn *)c;

    if (conn == NULL || conn->pslots == NULL || self->index >= plugins_count) {
        return NULL;
    }
    return conn->pslots[self->index].data;
}

/* The connection's slot array, allocated on first use; NULL when out of memory. */
static struct plugin_slot *
slots_get(struct conn *conn)
{
    if (conn->pslots == NULL) {
        conn->pslots = calloc(plugins_count, sizeof(*conn->pslots));
    }
    return conn->pslots;
}

int
plugin_client_acl_standing(midge_plugin *self, midge_client *c, int action, int verdict)
{
    struct conn *conn = (struct conn *)c;
    struct plugin_slot *s;
    unsigned code;
    unsigned gen;

    if (conn == NULL || self->index >= plugins_count || action < MIDGE_ACL_PUBLISH ||
        action > MIDGE_ACL_WILL) {
        return -MIDGE_EINVAL;
    }
    switch (verdict) {
    case MIDGE_ALLOW: code = 1; break;
    case MIDGE_DEFER: code = 2; break;
    case MIDGE_PENDING: code = 0; break;
    default: return -MIDGE_EINVAL;
    }
    if (conn->pslots == NULL && code == 0) {
        return 0;
    }
    if (slots_get(conn) == NULL) {
        return -MIDGE_ENOMEM;
    }
    s = &conn->pslots[self->index];
    /* Sequentially consistent: see the reload's increment in plugins_reload. */
    gen = atomic_load(&self->acl_reloads);
    if (s->standing_gen != gen) {
        s->standing = 0; /* set before the last reload: lapsed */
        s->standing_gen = gen;
    }
    s->standing = (uint16_t)((s->standing & ~(3u << (2 * action))) | (code << (2 * action)));
    return 0;
}

int
plugin_client_data_set(midge_plugin *self, midge_client *c, void *data, void (*free_fn)(void *))
{
    struct conn *conn = (struct conn *)c;
    struct plugin_slot *s;

    if (conn == NULL || self->index >= plugins_count) {
        return -MIDGE_EINVAL;
    }
    if (conn->pslots == NULL && data == NULL) {
        return 0;
    }
    if (slots_get(conn) == NULL) {
        return -MIDGE_ENOMEM;
    }
    s = &conn->pslots[self->index];
    if (s->data != NULL && s->data != data && s->free_fn != NULL) {
        s->free_fn(s->data);
    }
    s->data = data;
    s->free_fn = free_fn;
    return 0;
}

void
plugin_conn_release(struct conn *c)
{
    unsigned i;

    if (c->pslots == NULL) {
        return;
    }
    for (i = 0; i < plugins_count; i++) {
        if (c->pslots[i].data != NULL && c->pslots[i].free_fn != NULL) {
            c->pslots[i].free_fn(c->pslots[i].data);
        }
    }
    free(c->pslots);
    c->pslots = NULL;
}

/* ---- shutdown ---- */

void
plugin_services_stop(struct midge_plugin *p)
{
    struct plugin_pool *pool = p->pool;
    unsigned i;

    if (pool == NULL) {
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1; /* the threads finish the queue, then exit */
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (i = 0; i < pool->nthreads; i++) {
        pthread_join(pool->threads[i], NULL);
    }
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->cond);
    free(pool->threads);
    free(pool);
    p->pool = NULL;
}

void
plugin_services_free(struct midge_plugin *p)
{
    struct ev_loop *main_loop = ev_default_loop(0);

    /* Worker loops are destroyed by now: only main-loop watchers need stopping. */
    while (p->timers != NULL) {
        midge_timer *t = p->timers;
        p->timers = t->next;
        if (t->loop == main_loop) {
            ev_timer_stop(main_loop, &t->ev);
        }
        free(t);
    }
    while (p->watches != NULL) {
        midge_watch *w = p->watches;
        p->watches = w->next;
        if (w->loop == main_loop) {
            ev_io_stop(main_loop, &w->ev);
        }
        free(w);
    }
}
