/*
 * Test plugin "acl-async" (tests/integration/test_acl_async.py): ACL
 * decisions answered later, from a thread of the plugin, as a plugin that
 * asks a slow policy service would.
 *
 * For PUBLISH, RETAIN, SUBSCRIBE and WILL (the hook gets a ticket) it
 * answers MIDGE_PENDING and one helper thread calls api->complete()
 * plugin_opt_delay_ms (default 300) ms after the question was queued:
 *   topic/filter starting with plugin_opt_deny_prefix (default "deny/") -> DENY (reason 0: 0x87)
 *   anything else -> plugin_opt_verdict: "allow" (default) or "defer"
 * Topics starting with plugin_opt_sync_prefix (default "sync/") are allowed
 * at once, without going PENDING. Topics starting with "inline/" are
 * completed inside the hook (DENY when the topic contains "deny", else
 * ALLOW), which then answers PENDING: a complete() that comes before the
 * hook returns. Topics starting with "both/" are completed with DENY inside
 * the hook, which then answers ALLOW (a plugin bug: the answer wins). RECEIVE (no ticket) is DEFER, or PENDING
 * with plugin_opt_receive_pending 1 (a plugin bug the broker must survive).
 *
 * Other options:
 *   plugin_opt_order lifo   when the oldest question is due, answer every
 *                           queued one, newest first (decisions out of order)
 *   plugin_opt_never 1      never answer (timeouts, clients leaving)
 *   plugin_opt_twice 1      complete every ticket twice (the second is a plugin bug)
 *
 * Logs (debug/info; the tests run the broker with -v):
 *   "acl-async: queued seq=N action=A topic=T"
 *   "acl-async: answered seq=N action=A topic=T verdict=V complete()=RC [second=RC2]"
 * The thread is stopped and joined in cleanup; unanswered questions are freed.
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

static const char *const options[] = {"delay_ms", "order", "deny_prefix", "sync_prefix",
                                      "verdict", "never", "twice", "receive_pending", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("acl-async", "1.0", "test: answers ACL questions later, from a thread",
                             options);

/* A queued question. Owns its copy of the topic. */
struct item {
    midge_ticket *ticket;
    unsigned long seq;
    int action;
    int verdict;
    char *topic;
    struct timespec due; /* CLOCK_MONOTONIC */
    struct item *next;
};

/* One instance; options are read once at init. */
struct state {
    const struct midge_api *api;
    midge_plugin *self;
    long delay_ms;
    int lifo;
    int never;
    int twice;
    int receive_pending;
    int defer;
    char *deny_prefix;
    char *sync_prefix;
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* CLOCK_MONOTONIC */
    struct item *head, *tail; /* FIFO of questions; Protected by lock */
    unsigned long seq;        /* Protected by lock */
    int stop;                 /* Protected by lock */
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

static int
starts(const char *s, const char *prefix)
{
    return s != NULL && prefix[0] != '\0' && strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *
verdict_name(int v)
{
    return v == MIDGE_ALLOW ? "allow" : v == MIDGE_DENY ? "deny" : "defer";
}

static void
answer(struct state *s, struct item *it)
{
    int rc = s->api->complete(it->ticket, it->verdict, 0);

    if (s->twice) {
        int rc2 = s->api->complete(it->ticket, it->verdict, 0);
        s->api->log(s->self, MIDGE_LOG_INFO,
                    "acl-async: answered seq=%lu action=%d topic=%s verdict=%s complete()=%d "
                    "second=%d", it->seq, it->action, it->topic, verdict_name(it->verdict), rc, rc2);
    } else {
        s->api->log(s->self, rc == 0 ? MIDGE_LOG_INFO : MIDGE_LOG_WARNING,
                    "acl-async: answered seq=%lu action=%d topic=%s verdict=%s complete()=%d",
                    it->seq, it->action, it->topic, verdict_name(it->verdict), rc);
    }
    free(it->topic);
    free(it);
}

static void *
answerer(void *arg)
{
    struct state *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        struct item *batch;
        struct timespec now;

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
        if (s->lifo) {
            /* Everything queued, reversed: the newest question is answered first. */
            struct item *it = s->head;
            batch = NULL;
            while (it != NULL) {
                struct item *next = it->next;
                it->next = batch;
                batch = it;
                it = next;
            }
            s->head = s->tail = NULL;
        } else {
            batch = s->head;
            s->head = batch->next;
            if (s->head == NULL) {
                s->tail = NULL;
            }
            batch->next = NULL;
        }
        pthread_mutex_unlock(&s->lock);
        while (batch != NULL) {
            struct item *it = batch;
            batch = it->next;
            answer(s, it);
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int
acl(void *st, midge_client *client, const struct midge_acl_request *req, uint8_t *reason,
    midge_ticket *ticket)
{
    struct state *s = st;
    struct item *it;
    unsigned long seq;
    int deny = starts(req->topic, s->deny_prefix);

    (void)client;
    *reason = 0;
    if (req->action == MIDGE_ACL_RECEIVE) {
        return s->receive_pending ? MIDGE_PENDING : MIDGE_DEFER;
    }
    if (ticket == NULL) {
        /* Asked synchronously (e.g. the subscription re-check after a reload). */
        return deny ? MIDGE_DENY : MIDGE_DEFER;
    }
    if (starts(req->topic, s->sync_prefix)) {
        return MIDGE_ALLOW;
    }
    if (starts(req->topic, "inline/") || starts(req->topic, "both/")) {
        int both = starts(req->topic, "both/");
        int v = both || strstr(req->topic, "deny") != NULL ? MIDGE_DENY : MIDGE_ALLOW;
        int rc = s->api->complete(ticket, v, 0);

        s->api->log(s->self, MIDGE_LOG_INFO,
                    "acl-async: answered in the hook action=%d topic=%s verdict=%s complete()=%d",
                    req->action, req->topic, verdict_name(v), rc);
        return both ? MIDGE_ALLOW : MIDGE_PENDING;
    }
    it = calloc(1, sizeof(*it));
    if (it == NULL || (it->topic = strdup(req->topic != NULL ? req->topic : "")) == NULL) {
        free(it);
        *reason = 0x89; /* server busy */
        return MIDGE_DENY;
    }
    it->ticket = ticket;
    it->action = req->action;
    it->verdict = deny ? MIDGE_DENY : s->defer ? MIDGE_DEFER : MIDGE_ALLOW;
    clock_gettime(CLOCK_MONOTONIC, &it->due);
    ts_add_ms(&it->due, s->delay_ms);
    pthread_mutex_lock(&s->lock);
    it->seq = seq = ++s->seq;
    if (!s->never) {
        if (s->tail != NULL) {
            s->tail->next = it;
        } else {
            s->head = it;
        }
        s->tail = it;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    /* `it` may be answered and freed by now: log from our own copies. */
    s->api->log(s->self, MIDGE_LOG_DEBUG, "acl-async: queued seq=%lu action=%d topic=%s", seq,
                req->action, req->topic != NULL ? req->topic : "");
    if (s->never) {
        free(it->topic);
        free(it);
    }
    return MIDGE_PENDING;
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .acl = acl,
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
    while ((it = s->head) != NULL) {
        s->head = it->next;
        free(it->topic);
        free(it);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->deny_prefix);
    free(s->sync_prefix);
    free(s);
}

/* A 0/1 option; *out keeps its default when unset. */
static int
flag(midge_plugin *self, const struct midge_api *api, const char *key, int *out)
{
    const char *v = api->option(self, key);

    if (v == NULL) {
        return 0;
    }
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
        api->set_error(self, "%s: expected 0 or 1, got '%s'", key, v);
        return -1;
    }
    *out = v[0] == '1';
    return 0;
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
    v = api->option(self, "order");
    if (v != NULL && strcmp(v, "fifo") != 0 && strcmp(v, "lifo") != 0) {
        api->set_error(self, "order: expected fifo or lifo, got '%s'", v);
        free(s);
        return -MIDGE_EINVAL;
    }
    s->lifo = v != NULL && strcmp(v, "lifo") == 0;
    v = api->option(self, "verdict");
    if (v != NULL && strcmp(v, "allow") != 0 && strcmp(v, "defer") != 0) {
        api->set_error(self, "verdict: expected allow or defer, got '%s'", v);
        free(s);
        return -MIDGE_EINVAL;
    }
    s->defer = v != NULL && strcmp(v, "defer") == 0;
    if (flag(self, api, "never", &s->never) < 0 || flag(self, api, "twice", &s->twice) < 0 ||
        flag(self, api, "receive_pending", &s->receive_pending) < 0) {
        free(s);
        return -MIDGE_EINVAL;
    }
    v = api->option(self, "deny_prefix");
    s->deny_prefix = strdup(v != NULL ? v : "deny/");
    v = api->option(self, "sync_prefix");
    s->sync_prefix = strdup(v != NULL ? v : "sync/");
    if (s->deny_prefix == NULL || s->sync_prefix == NULL) {
        free(s->deny_prefix);
        free(s->sync_prefix);
        free(s);
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
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
