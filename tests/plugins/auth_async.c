/*
 * Test plugin "auth-async" (tests/integration/test_plugins.py): asynchronous
 * auth. Every CONNECT goes PENDING; ONE helper thread per instance answers
 * the queued tickets in order, each plugin_opt_delay_ms (default 300) ms
 * after it was queued: ALLOW when the password is "async-ok", else DENY 0x86.
 *
 * This is the shape of a plugin that asks a slow database: the worker thread
 * returns at once and keeps serving its other clients; api->complete() is
 * called from a thread the broker does not know. Each queued CONNECT is
 * logged ("auth-async: queued client=ID"), and so is each answer with what
 * complete() returned ("auth-async: answered client=ID verdict=V
 * complete()=RC"; a warning when RC is not 0: the ticket timed out or its
 * client left).
 * Plugin bugs on request, by password: "bogus-sync" makes the hook return 42
 * (outside enum midge_verdict), "bogus-late" completes the ticket with 42,
 * "twice-ok" completes it with ALLOW twice (the second is refused).
 * The thread is stopped and joined in cleanup.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, pthread_condattr_setclock */
#endif
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "midge/plugin.h"

static const char *const options[] = {"delay_ms", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("auth-async", "1.0", "test: answers every CONNECT later, from a thread",
                             options);

struct item {
    midge_ticket *ticket;
    int ok;
    int verdict;         /* what complete() gets */
    int twice;           /* complete a second time */
    char *client_id;     /* copied: the client handle is only borrowed during the hook */
    struct timespec due; /* CLOCK_MONOTONIC */
    struct item *next;
};

struct state {
    const struct midge_api *api;
    midge_plugin *self;
    long delay_ms;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    struct item *head, *tail; /* FIFO; due times never decrease */
    int stop;
    int thread_started;
    pthread_t thread;
};

static void
ts_add_ms(struct timespec *ts, long ms)
{
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int
ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *
answerer(void *arg)
{
    struct state *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        struct item *it;
        struct timespec now;
        int rc;

        while (!s->stop && s->head == NULL) {
            pthread_cond_wait(&s->cond, &s->lock);
        }
        if (s->stop) {
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (ts_before(&now, &s->head->due)) {
            pthread_cond_timedwait(&s->cond, &s->lock, &s->head->due);
            continue;
        }
        it = s->head;
        s->head = it->next;
        if (s->head == NULL) {
            s->tail = NULL;
        }
        pthread_mutex_unlock(&s->lock);
        rc = s->api->complete(it->ticket, it->verdict, it->verdict == MIDGE_DENY ? 0x86 : 0);
        s->api->log(s->self, rc == 0 ? MIDGE_LOG_DEBUG : MIDGE_LOG_WARNING,
                    "auth-async: answered client=%s verdict=%d complete()=%d",
                    it->client_id != NULL ? it->client_id : "?", it->verdict, rc);
        if (it->twice) {
            rc = s->api->complete(it->ticket, it->verdict, 0);
            s->api->log(s->self, MIDGE_LOG_WARNING, "auth-async: second complete() client=%s rc=%d",
                        it->client_id != NULL ? it->client_id : "?", rc);
        }
        free(it->client_id);
        free(it);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int
password_is(const struct midge_auth_request *req, const char *pw)
{
    return req->password != NULL && req->password_len == strlen(pw) &&
           memcmp(req->password, pw, req->password_len) == 0;
}

static int
auth(void *st, midge_client *client, const struct midge_auth_request *req, uint8_t *reason,
     midge_ticket *ticket)
{
    struct state *s = st;
    struct item *it = calloc(1, sizeof(*it));
    static const char good[] = "async-ok";
    const char *id = s->api->client_id(client);

    if (it == NULL) {
        *reason = 0x89; /* server busy */
        return MIDGE_DENY;
    }
    if (password_is(req, "bogus-sync")) {
        free(it);
        return 42;
    }
    it->ticket = ticket;
    it->client_id = strdup(id != NULL ? id : "?");
    it->ok = password_is(req, good) || password_is(req, "twice-ok");
    it->verdict = password_is(req, "bogus-late") ? 42 : it->ok ? MIDGE_ALLOW : MIDGE_DENY;
    it->twice = password_is(req, "twice-ok");
    clock_gettime(CLOCK_MONOTONIC, &it->due);
    ts_add_ms(&it->due, s->delay_ms);
    pthread_mutex_lock(&s->lock);
    if (s->tail != NULL) {
        s->tail->next = it;
    } else {
        s->head = it;
    }
    s->tail = it;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    s->api->log(s->self, MIDGE_LOG_DEBUG, "auth-async: queued client=%s", id != NULL ? id : "?");
    return MIDGE_PENDING;
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .auth = auth,
};

static void
state_free(struct state *s)
{
    struct item *it;

    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = 1;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    /* Unanswered tickets: the broker stopped; they are not ours to complete now. */
    while ((it = s->head) != NULL) {
        s->head = it->next;
        free(it->client_id);
        free(it);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;
    const char *v;
    int rc;

    if (s == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    s->api = api;
    s->self = self;
    s->delay_ms = 300;
    v = api->option(self, "delay_ms");
    if (v != NULL) {
        char *end;

        errno = 0;
        s->delay_ms = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || s->delay_ms < 0 || s->delay_ms > 3600000L) {
            api->set_error(self, "delay_ms: expected milliseconds, got '%s'", v);
            free(s);
            return -MIDGE_EINVAL;
        }
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    *state = s;
    rc = pthread_create(&s->thread, NULL, answerer, s);
    if (rc != 0) {
        api->set_error(self, "cannot start the answering thread: %s", strerror(rc));
        *state = NULL;
        state_free(s);
        return -MIDGE_ENOMEM;
    }
    s->thread_started = 1;
    return api->hooks_set(self, &hooks);
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    if (state != NULL) {
        state_free(state);
    }
}
