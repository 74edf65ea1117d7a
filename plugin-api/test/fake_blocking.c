/*
 * api->run_blocking() in the fake broker: one real worker thread per
 * instance (started on first use) runs `work` in queue order, so a plugin
 * that relies on work running on another thread is tested as it runs in the
 * broker. `done` callbacks are collected and run on the test's thread by
 * midge_test_run_done() / midge_test_wait_blocking(), the way the broker
 * runs them on the calling loop.
 *
 * Locking: the queues and counters are protected by fb->lock; a pool's
 * `cond` (with fb->lock) wakes its worker, fb->cond tells waiters a job
 * finished. work and done run without the lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

#define DEFAULT_QUEUE 1024 /* plugin_queue when the test does not set it */

/* Set on the pool's worker threads: they have no loop (no timers, no run_blocking). */
static _Thread_local int on_worker;

/* A job. Owned by its pool's queue, then by fb's done list, then freed. */
struct fake_job {
    midge_plugin *plugin;
    void (*work)(void *arg);
    void (*done)(void *arg);
    void *arg;
    struct fake_job *next;
};

/* The worker of one instance. Owned by the instance (p->pool); fields protected by fb->lock. */
struct fake_pool {
    midge_plugin *plugin;
    pthread_t thread;
    pthread_cond_t cond; /* a job was queued, the pause ended, or stop */
    struct fake_job *head;
    struct fake_job *tail;
    size_t queued;       /* waiting, not running */
    int stop;            /* run what is queued (even when paused), then exit */
};

/* 1 when the calling thread is a run_blocking worker. */
int
fake_in_blocking_worker(void)
{
    return on_worker;
}

static void *
worker_main(void *arg)
{
    struct fake_pool *pool = arg;
    midge_plugin *p = pool->plugin;
    midge_test_broker *fb = p->fb;

    on_worker = 1;
    pthread_mutex_lock(&fb->lock);
    for (;;) {
        struct fake_job *j;

        while (!pool->stop && (pool->head == NULL || p->paused)) {
            pthread_cond_wait(&pool->cond, &fb->lock);
        }
        if (pool->head == NULL) {
            break; /* stopping, and everything queued ran */
        }
        j = pool->head;
        pool->head = j->next;
        if (pool->head == NULL) {
            pool->tail = NULL;
        }
        pool->queued--;
        pthread_mutex_unlock(&fb->lock);
        j->work(j->arg);
        pthread_mutex_lock(&fb->lock);
        fb->jobs_busy--;
        if (j->done != NULL) {
            j->next = NULL;
            if (fb->done_tail != NULL) {
                fb->done_tail->next = j;
            } else {
                fb->done_head = j;
            }
            fb->done_tail = j;
        } else {
            free(j);
        }
        pthread_cond_broadcast(&fb->cond);
    }
    pthread_mutex_unlock(&fb->lock);
    return NULL;
}

/* Creates p's pool and starts its thread, with fb->lock held. 0 or -MIDGE_ENOMEM. */
static int
pool_start_locked(midge_plugin *p)
{
    struct fake_pool *pool = calloc(1, sizeof(*pool));

    if (pool == NULL) {
        return -MIDGE_ENOMEM;
    }
    pool->plugin = p;
    pthread_cond_init(&pool->cond, NULL);
    if (pthread_create(&pool->thread, NULL, worker_main, pool) != 0) {
        pthread_cond_destroy(&pool->cond);
        free(pool);
        return -MIDGE_ENOMEM;
    }
    p->pool = pool;
    return 0;
}

static int
api_run_blocking(midge_plugin *self, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
    midge_test_broker *fb;
    struct fake_job *j = NULL;
    size_t limit;
    int rc = -MIDGE_EINVAL;

    if (self == NULL || work == NULL) {
        goto out;
    }
    fb = self->fb;
    rc = -MIDGE_ESTATE;
    if (on_worker) {
        fake_bug(fb, self, "api->run_blocking() called from a run_blocking work function "
                 "(it has no loop: call it from a hook or from done)");
        goto out;
    }
    if (!self->loaded && !fake_configuring(self)) {
        fake_bug(fb, self, "api->run_blocking() called while the instance is not loaded");
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    if ((j = calloc(1, sizeof(*j))) == NULL) {
        goto out;
    }
    j->plugin = self;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&fb->lock);
    limit = self->queue_limit != 0 ? self->queue_limit : DEFAULT_QUEUE;
    if (self->pool != NULL && self->pool->queued >= limit) {
        rc = -MIDGE_EBUSY;
    } else if (self->pool == NULL && (rc = pool_start_locked(self)) != 0) {
        /* rc set */
    } else {
        if (self->pool->tail != NULL) {
            self->pool->tail->next = j;
        } else {
            self->pool->head = j;
        }
        self->pool->tail = j;
        self->pool->queued++;
        fb->jobs_busy++;
        pthread_cond_signal(&self->pool->cond);
        j = NULL;
        rc = 0;
    }
    pthread_mutex_unlock(&fb->lock);
out:
    free(j);
    return rc;
}

/* The entries of the API table that this file implements. */
void
fake_blocking_api_fill(struct midge_api *a)
{
    a->run_blocking = api_run_blocking;
}

/* Runs the finished jobs' done callbacks of p (NULL: every instance) on this thread. */
static size_t
run_done(midge_test_broker *fb, const midge_plugin *p)
{
    size_t n = 0;

    for (;;) {
        struct fake_job **pp;
        struct fake_job *j = NULL;
        struct fake_job *prev = NULL;

        pthread_mutex_lock(&fb->lock);
        for (pp = &fb->done_head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
            if (p == NULL || (*pp)->plugin == p) {
                j = *pp;
                *pp = j->next;
                if (fb->done_tail == j) {
                    fb->done_tail = prev;
                }
                break;
            }
        }
        pthread_mutex_unlock(&fb->lock);
        if (j == NULL) {
            break;
        }
        j->done(j->arg);
        free(j);
        n++;
    }
    return n;
}

/* Runs the done callbacks ready now; see plugin_test.h. */
size_t
midge_test_run_done(midge_test_broker *fb)
{
    return run_done(fb, NULL);
}

/* Waits until every job finished and every done ran; see plugin_test.h. */
int
midge_test_wait_blocking(midge_test_broker *fb, unsigned timeout_ms)
{
    struct timespec until = fake_deadline_in(timeout_ms);
    int n = 0;

    for (;;) {
        int idle;

        pthread_mutex_lock(&fb->lock);
        while (fb->jobs_busy > 0 && fb->done_head == NULL) {
            if (pthread_cond_timedwait(&fb->cond, &fb->lock, &until) == ETIMEDOUT) {
                break;
            }
        }
        idle = fb->jobs_busy == 0;
        if (!idle && fb->done_head == NULL) {
            pthread_mutex_unlock(&fb->lock);
            return MIDGE_TEST_TIMEDOUT;
        }
        pthread_mutex_unlock(&fb->lock);
        n += (int)run_done(fb, NULL);
        pthread_mutex_lock(&fb->lock);
        idle = fb->jobs_busy == 0 && fb->done_head == NULL;
        pthread_mutex_unlock(&fb->lock);
        if (idle) {
            break;
        }
    }
    return n;
}

/* Sets plugin_queue; see plugin_test.h. */
int
midge_test_set_queue_limit(midge_plugin *p, size_t limit)
{
    if (limit == 0) {
        return -MIDGE_EINVAL;
    }
    pthread_mutex_lock(&p->fb->lock);
    p->queue_limit = limit;
    pthread_mutex_unlock(&p->fb->lock);
    return 0;
}

/* Holds or releases p's worker; see plugin_test.h. */
void
midge_test_blocking_pause(midge_plugin *p, int paused)
{
    pthread_mutex_lock(&p->fb->lock);
    p->paused = paused ? 1 : 0;
    if (p->pool != NULL) {
        pthread_cond_broadcast(&p->pool->cond);
    }
    pthread_mutex_unlock(&p->fb->lock);
}

/*
 * Shuts p's worker down as the broker does before cleanup: the jobs still
 * queued run (a pause is lifted), the thread exits, then the finished jobs'
 * done callbacks run on this thread.
 */
void
fake_blocking_unload(midge_plugin *p)
{
    midge_test_broker *fb = p->fb;
    struct fake_pool *pool;

    pthread_mutex_lock(&fb->lock);
    pool = p->pool;
    if (pool != NULL) {
        pool->stop = 1;
        pthread_cond_broadcast(&pool->cond);
    }
    pthread_mutex_unlock(&fb->lock);
    if (pool != NULL) {
        pthread_join(pool->thread, NULL);
        pthread_mutex_lock(&fb->lock);
        p->pool = NULL;
        pthread_mutex_unlock(&fb->lock);
        pthread_cond_destroy(&pool->cond);
        free(pool);
    }
    run_done(fb, p);
}

/* Frees done callbacks never run (every worker stopped at unload). */
void
fake_blocking_free(midge_test_broker *fb)
{
    while (fb->done_head != NULL) {
        struct fake_job *j = fb->done_head;
        fb->done_head = j->next;
        free(j);
    }
    fb->done_tail = NULL;
}
