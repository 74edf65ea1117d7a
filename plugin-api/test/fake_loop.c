/*
 * The event loop of the fake broker, driven by the test: timers on a manual
 * clock (midge_test_advance() fires what is due, in time order) and fd
 * watchers on real fds (midge_test_poll() polls them once and runs the
 * callbacks). Callbacks run on the thread calling those functions, which
 * plays the loop's thread.
 *
 * Stopped timers and removed watchers stay allocated (inert) until the
 * broker is freed, so a second stop or a use after stop is reported as a
 * plugin bug instead of being a use-after-free in the harness. Lists and
 * fields are protected by fb->lock; callbacks run without it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/* A timer. Owned by fb->timers (see above); the plugin holds it until timer_stop. */
struct midge_timer {
    midge_test_broker *fb;
    midge_plugin *plugin;
    double due;        /* on fb->now's clock */
    double repeat;     /* 0: one-shot */
    int live;          /* started and not stopped (nor freed at unload) */
    int armed;         /* will fire at `due` (a fired one-shot is live but not armed) */
    unsigned long seq; /* start order: ties fire in it */
    void (*cb)(void *arg, midge_timer *t);
    void *arg;
    struct midge_timer *next;
};

/* An fd watcher. Owned by fb->watches like timers. */
struct midge_watch {
    midge_test_broker *fb;
    midge_plugin *plugin;
    int fd;
    int events;        /* MIDGE_FD_READ | MIDGE_FD_WRITE */
    int live;
    void (*cb)(void *arg, int fd, int revents);
    void *arg;
    struct midge_watch *next;
};

/* 1 when `self` may use the loop now; else records why not. */
static int
loop_allowed(midge_plugin *self, const char *fn)
{
    if (fake_in_blocking_worker()) {
        fake_bug(self->fb, self, "api->%s() called from a run_blocking work function (that "
                 "thread has no loop: do it in done)", fn);
        return 0;
    }
    if (!self->loaded && !fake_configuring(self)) {
        fake_bug(self->fb, self, "api->%s() called while the instance is not loaded", fn);
        return 0;
    }
    return 1;
}

static midge_timer *
api_timer_start(midge_plugin *self, double after, double repeat,
                void (*cb)(void *arg, midge_timer *t), void *arg)
{
    midge_test_broker *fb;
    struct midge_timer *t = NULL;

    if (self == NULL || cb == NULL || !(after >= 0) || !(repeat >= 0)) {
        goto out;
    }
    fb = self->fb;
    if (!loop_allowed(self, "timer_start") || (t = calloc(1, sizeof(*t))) == NULL) {
        goto out;
    }
    t->fb = fb;
    t->plugin = self;
    t->repeat = repeat;
    t->cb = cb;
    t->arg = arg;
    t->live = 1;
    t->armed = 1;
    pthread_mutex_lock(&fb->lock);
    t->seq = ++fb->timer_seq;
    t->due = fb->now + after;
    t->next = fb->timers;
    fb->timers = t;
    pthread_mutex_unlock(&fb->lock);
out:
    return t;
}

static void
api_timer_stop(midge_plugin *self, midge_timer *t)
{
    const char *why = NULL;

    if (self == NULL || t == NULL) {
        return;
    }
    pthread_mutex_lock(&self->fb->lock);
    if (t->plugin != self) {
        why = "a timer of another instance";
    } else if (!t->live) {
        why = "a timer already stopped (or freed when the instance was unloaded)";
    } else {
        t->live = 0;
        t->armed = 0;
    }
    pthread_mutex_unlock(&self->fb->lock);
    if (why != NULL) {
        fake_bug(self->fb, self, "api->timer_stop() on %s", why);
    }
}

static midge_watch *
api_fd_watch(midge_plugin *self, int fd, int events, void (*cb)(void *arg, int fd, int revents),
             void *arg)
{
    struct midge_watch *w = NULL;

    if (self == NULL || fd < 0 || cb == NULL ||
        (events & ~(MIDGE_FD_READ | MIDGE_FD_WRITE)) != 0) {
        goto out;
    }
    if (!loop_allowed(self, "fd_watch") || (w = calloc(1, sizeof(*w))) == NULL) {
        goto out;
    }
    w->fb = self->fb;
    w->plugin = self;
    w->fd = fd;
    w->events = events;
    w->cb = cb;
    w->arg = arg;
    w->live = 1;
    pthread_mutex_lock(&self->fb->lock);
    w->next = self->fb->watches;
    self->fb->watches = w;
    pthread_mutex_unlock(&self->fb->lock);
out:
    return w;
}

/* Checks that w is a live watcher of self, else records a bug. With fb->lock not held. */
static int
watch_ok(midge_plugin *self, const midge_watch *w, const char *fn)
{
    const char *why = NULL;

    pthread_mutex_lock(&self->fb->lock);
    if (w->plugin != self) {
        why = "a watcher of another instance";
    } else if (!w->live) {
        why = "a watcher already removed (or freed when the instance was unloaded)";
    }
    pthread_mutex_unlock(&self->fb->lock);
    if (why != NULL) {
        fake_bug(self->fb, self, "api->%s() on %s", fn, why);
    }
    return why == NULL;
}

static int
api_fd_watch_set(midge_plugin *self, midge_watch *w, int events)
{
    if (self == NULL || w == NULL || (events & ~(MIDGE_FD_READ | MIDGE_FD_WRITE)) != 0) {
        return -MIDGE_EINVAL;
    }
    if (!watch_ok(self, w, "fd_watch_set")) {
        return -MIDGE_ESTATE;
    }
    pthread_mutex_lock(&self->fb->lock);
    w->events = events;
    pthread_mutex_unlock(&self->fb->lock);
    return 0;
}

static void
api_fd_unwatch(midge_plugin *self, midge_watch *w)
{
    if (self == NULL || w == NULL || !watch_ok(self, w, "fd_unwatch")) {
        return;
    }
    pthread_mutex_lock(&self->fb->lock);
    w->live = 0;
    pthread_mutex_unlock(&self->fb->lock);
}

/* The entries of the API table that this file implements. */
void
fake_loop_api_fill(struct midge_api *a)
{
    a->timer_start = api_timer_start;
    a->timer_stop = api_timer_stop;
    a->fd_watch = api_fd_watch;
    a->fd_watch_set = api_fd_watch_set;
    a->fd_unwatch = api_fd_unwatch;
}

/* ---- Driving the loop ------------------------------------------------------ */

/* Moves the clock and fires what is due; see plugin_test.h. */
size_t
midge_test_advance(midge_test_broker *fb, double seconds)
{
    double target;
    size_t n = 0;

    if (!(seconds >= 0)) {
        return 0;
    }
    pthread_mutex_lock(&fb->lock);
    target = fb->now + seconds;
    for (;;) {
        struct midge_timer *t;
        struct midge_timer *next = NULL;

        for (t = fb->timers; t != NULL; t = t->next) {
            if (t->armed && t->due <= target &&
                (next == NULL || t->due < next->due ||
                 (t->due == next->due && t->seq < next->seq))) {
                next = t;
            }
        }
        if (next == NULL) {
            break;
        }
        if (next->due > fb->now) {
            fb->now = next->due;
        }
        if (next->repeat > 0) {
            next->due += next->repeat;
        } else {
            next->armed = 0; /* fired: the plugin must still stop it */
        }
        pthread_mutex_unlock(&fb->lock);
        next->cb(next->arg, next);
        n++;
        pthread_mutex_lock(&fb->lock);
    }
    fb->now = target;
    pthread_mutex_unlock(&fb->lock);
    return n;
}

/* The manual clock; see plugin_test.h. */
double
midge_test_now(midge_test_broker *fb)
{
    double now;

    pthread_mutex_lock(&fb->lock);
    now = fb->now;
    pthread_mutex_unlock(&fb->lock);
    return now;
}

/* Timers of p started and not stopped; see plugin_test.h. */
size_t
midge_test_timer_count(const midge_plugin *p)
{
    const struct midge_timer *t;
    size_t n = 0;

    pthread_mutex_lock(&p->fb->lock);
    for (t = p->fb->timers; t != NULL; t = t->next) {
        n += t->plugin == p && t->live;
    }
    pthread_mutex_unlock(&p->fb->lock);
    return n;
}

/* Watchers of p not removed; see plugin_test.h. */
size_t
midge_test_watch_count(const midge_plugin *p)
{
    const struct midge_watch *w;
    size_t n = 0;

    pthread_mutex_lock(&p->fb->lock);
    for (w = p->fb->watches; w != NULL; w = w->next) {
        n += w->plugin == p && w->live;
    }
    pthread_mutex_unlock(&p->fb->lock);
    return n;
}

/* Polls the watched fds once and runs the callbacks; see plugin_test.h. */
int
midge_test_poll(midge_test_broker *fb, unsigned timeout_ms)
{
    struct pollfd *pfd = NULL;
    struct midge_watch **ws = NULL;
    const struct midge_watch *w;
    size_t n = 0;
    size_t i;
    int ran = 0;
    int rc;

    pthread_mutex_lock(&fb->lock);
    for (w = fb->watches; w != NULL; w = w->next) {
        n += w->live && w->events != 0;
    }
    pfd = calloc(n > 0 ? n : 1, sizeof(*pfd));
    ws = calloc(n > 0 ? n : 1, sizeof(*ws));
    if (pfd == NULL || ws == NULL) {
        pthread_mutex_unlock(&fb->lock);
        ran = -MIDGE_ENOMEM;
        goto out;
    }
    i = 0;
    for (w = fb->watches; w != NULL; w = w->next) {
        if (w->live && w->events != 0) {
            ws[i] = (struct midge_watch *)w;
            pfd[i].fd = w->fd;
            pfd[i].events = (short)(((w->events & MIDGE_FD_READ) ? POLLIN : 0) |
                                    ((w->events & MIDGE_FD_WRITE) ? POLLOUT : 0));
            i++;
        }
    }
    pthread_mutex_unlock(&fb->lock);
    do {
        rc = poll(pfd, (nfds_t)n, timeout_ms > (unsigned)INT32_MAX ? -1 : (int)timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        ran = -MIDGE_EINVAL;
        goto out;
    }
    for (i = 0; i < n && rc > 0; i++) {
        struct midge_watch *x = ws[i];
        short ev = pfd[i].revents;
        int rev = 0;
        int live;

        if (ev == 0) {
            continue;
        }
        pthread_mutex_lock(&fb->lock);
        live = x->live; /* an earlier callback may have removed it */
        if ((ev & (POLLIN | POLLHUP | POLLERR)) && (x->events & MIDGE_FD_READ)) {
            rev |= MIDGE_FD_READ;
        }
        if ((ev & (POLLOUT | POLLHUP | POLLERR)) && (x->events & MIDGE_FD_WRITE)) {
            rev |= MIDGE_FD_WRITE;
        }
        pthread_mutex_unlock(&fb->lock);
        if (!live) {
            continue;
        }
        if (ev & POLLNVAL) {
            fake_bug(fb, x->plugin, "fd %d is watched but not open (api->fd_unwatch() before "
                     "close)", x->fd);
            continue;
        }
        if (rev != 0) {
            x->cb(x->arg, x->fd, rev);
            ran++;
        }
    }
out:
    free(pfd);
    free(ws);
    return ran;
}

/* The broker frees the timers and watchers p still has after cleanup. */
void
fake_loop_unload(midge_plugin *p)
{
    struct midge_timer *t;
    struct midge_watch *w;

    pthread_mutex_lock(&p->fb->lock);
    for (t = p->fb->timers; t != NULL; t = t->next) {
        if (t->plugin == p) {
            t->live = 0;
            t->armed = 0;
        }
    }
    for (w = p->fb->watches; w != NULL; w = w->next) {
        if (w->plugin == p) {
            w->live = 0;
        }
    }
    pthread_mutex_unlock(&p->fb->lock);
}

/* Frees every timer and watcher (with the broker). */
void
fake_loop_free(midge_test_broker *fb)
{
    while (fb->timers != NULL) {
        struct midge_timer *t = fb->timers;
        fb->timers = t->next;
        free(t);
    }
    while (fb->watches != NULL) {
        struct midge_watch *w = fb->watches;
        fb->watches = w->next;
        free(w);
    }
}
