/* Calls into the main thread's loop (see mainloop.h). */
#include "mainloop.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"

struct main_callrec {
    void (*fn)(void *arg);
    void *arg;
};

/* Queued calls. Everything under `lock`; the array is owned by this file. */
static struct {
    pthread_mutex_t lock;
    struct main_callrec *v;
    size_t n;
    size_t cap;
    struct ev_loop *loop; /* NULL while calls are not served from a loop */
} q = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL};

static ev_async wake;

void
main_call(void (*fn)(void *arg), void *arg)
{
    struct ev_loop *loop;

    pthread_mutex_lock(&q.lock);
    if (q.n == q.cap) {
        size_t cap = q.cap ? q.cap * 2 : 16;
        struct main_callrec *v = realloc(q.v, cap * sizeof(*v));
        if (v == NULL) {
            pthread_mutex_unlock(&q.lock);
            /* Running it here is better than losing it (a plugin would leak or hang). */
            midge_log(MLOG_ERROR, "out of memory queueing a call for the main thread: run inline");
            fn(arg);
            return;
        }
        q.v = v;
        q.cap = cap;
    }
    q.v[q.n].fn = fn;
    q.v[q.n].arg = arg;
    q.n++;
    loop = q.loop;
    if (loop != NULL) {
        ev_async_send(loop, &wake); /* under the lock: main_calls_stop cannot run meanwhile */
    }
    pthread_mutex_unlock(&q.lock);
}

void
main_calls_run(void)
{
    for (;;) {
        struct main_callrec *v;
        size_t n;
        size_t i;

        pthread_mutex_lock(&q.lock);
        v = q.v;
        n = q.n;
        q.v = NULL;
        q.n = q.cap = 0;
        pthread_mutex_unlock(&q.lock);
        if (n == 0) {
            free(v);
            return;
        }
        for (i = 0; i < n; i++) {
            v[i].fn(v[i].arg);
        }
        free(v);
    }
}

static void
wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)a;
    (void)revents;
    main_calls_run();
}

void
main_calls_start(struct ev_loop *loop)
{
    ev_async_init(&wake, wake_cb);
    ev_async_start(loop, &wake);
    pthread_mutex_lock(&q.lock);
    q.loop = loop;
    if (q.n > 0) {
        ev_async_send(loop, &wake);
    }
    pthread_mutex_unlock(&q.lock);
}

void
main_calls_stop(void)
{
    struct ev_loop *loop;

    pthread_mutex_lock(&q.lock);
    loop = q.loop;
    q.loop = NULL;
    pthread_mutex_unlock(&q.lock);
    if (loop != NULL) {
        ev_async_stop(loop, &wake);
    }
}
