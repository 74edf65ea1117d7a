/*
 * Waiting for the broker's client callbacks (see clients.h).
 *
 * A walk is shared by the HTTP thread, which waits for it, and the broker,
 * whose callbacks fill it: two references, the last one frees it. So the
 * HTTP thread may give up (timeout, shutdown) while the broker still holds
 * the walk. The JSON built on broker threads passes to the HTTP thread
 * whole, under the walk's lock, once the broker is done with it.
 */
#include "clients.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One client_list or client_find request. Freed by whoever drops the last reference. */
struct walk {
    atomic_int refs;
    pthread_mutex_t lock;    /* protects everything below; cb runs on several workers at once */
    pthread_cond_t cond;     /* signalled when finished */
    int finished;
    int oom;
    json_t *list;            /* client_list: the array, NULL for totals only */
    size_t limit;
    size_t seen;
    json_t *found;           /* client_find: the object, NULL when none */
    uint64_t queued;
    uint64_t inflight;
};

static struct walk *
walk_new(void)
{
    struct walk *w = calloc(1, sizeof(*w));
    pthread_condattr_t ca;

    if (w == NULL) {
        return NULL;
    }
    atomic_init(&w->refs, 2);
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    return w;
}

static void
walk_unref(struct walk *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1) {
        return;
    }
    json_decref(w->list);
    json_decref(w->found);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* The broker is done with the walk: wake the waiter and drop the broker's reference. */
static void
walk_finish(struct walk *w)
{
    pthread_mutex_lock(&w->lock);
    w->finished = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    walk_unref(w);
}

/*
 * Waits for walk_finish, in short slices so that a stopping plugin is not
 * held up. Returns 0, or -MIDGE_ESTATE on timeout or stop.
 */
static int
walk_wait(struct admin *a, struct walk *w)
{
    struct timespec now;
    double deadline;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &now);
    deadline = (double)now.tv_sec + (double)now.tv_nsec / 1e9 + a->wait_timeout;
    pthread_mutex_lock(&w->lock);
    while (!w->finished) {
        struct timespec until;
        double t;
        clock_gettime(CLOCK_MONOTONIC, &now);
        t = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
        if (t >= deadline || atomic_load(&a->stopping)) {
            rc = -MIDGE_ESTATE;
            break;
        }
        t += 0.1;
        if (t > deadline) {
            t = deadline;
        }
        until.tv_sec = (time_t)t;
        until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
        pthread_cond_timedwait(&w->cond, &w->lock, &until);
    }
    if (rc == 0 && w->oom) {
        rc = -MIDGE_ENOMEM;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

/* A client as JSON (the fields of struct midge_client_info). NULL when out of memory. */
static json_t *
client_json(const struct midge_client_info *info)
{
    json_t *o = json_object();

    if (o == NULL) {
        return NULL;
    }
#define STR(k, v) json_object_set_new(o, k, (v) != NULL ? json_string(v) : json_null())
    STR("client_id", info->client_id);
    STR("username", info->username);
    STR("address", info->address);
#undef STR
    json_object_set_new(o, "connected", json_boolean(info->connected));
    json_object_set_new(o, "protocol", json_integer(info->protocol));
    json_object_set_new(o, "listener_port", json_integer(info->listener_port));
    json_object_set_new(o, "keepalive", json_integer(info->keepalive));
    json_object_set_new(o, "clean_start", json_boolean(info->clean_start));
    json_object_set_new(o, "session_expiry", json_integer(info->session_expiry));
    json_object_set_new(o, "subscriptions", json_integer(info->subscriptions));
    json_object_set_new(o, "queued", json_integer(info->queued));
    json_object_set_new(o, "inflight", json_integer(info->inflight));
    return o;
}

/* client_list callback. [any worker, several at once] */
static void
list_cb(void *arg, const struct midge_client_info *info)
{
    struct walk *w = arg;

    pthread_mutex_lock(&w->lock);
    w->seen++;
    w->queued += info->queued;
    w->inflight += info->inflight;
    if (w->list != NULL && json_array_size(w->list) < w->limit) {
        json_t *o = client_json(info);
        if (o == NULL || json_array_append_new(w->list, o) != 0) {
            w->oom = 1;
        }
    }
    pthread_mutex_unlock(&w->lock);
}

/* client_list done. [main thread] */
static void
list_done(void *arg)
{
    walk_finish(arg);
}

/* Runs client_list into a new walk. NULL when it could not start (*rc set). */
static struct walk *
list_start(struct admin *a, int with_list, size_t limit, int *rc)
{
    struct walk *w = walk_new();

    *rc = -MIDGE_ENOMEM;
    if (w == NULL) {
        return NULL;
    }
    w->limit = limit;
    if (with_list && (w->list = json_array()) == NULL) {
        atomic_store(&w->refs, 1);
        walk_unref(w);
        return NULL;
    }
    *rc = a->api->client_list(a->self, list_cb, list_done, w);
    if (*rc != 0) {
        atomic_store(&w->refs, 1); /* the broker took no reference */
        walk_unref(w);
        return NULL;
    }
    *rc = walk_wait(a, w);
    return w;
}

int
clients_list(struct admin *a, size_t limit, json_t **out, int *truncated)
{
    int rc;
    struct walk *w = list_start(a, 1, limit, &rc);

    *out = NULL;
    *truncated = 0;
    if (w == NULL) {
        return rc;
    }
    if (rc == 0) {
        /* Taken, not shared: jansson's reference counts are not meant for two threads. */
        pthread_mutex_lock(&w->lock);
        *truncated = w->seen > json_array_size(w->list);
        *out = w->list;
        w->list = NULL;
        pthread_mutex_unlock(&w->lock);
    }
    walk_unref(w);
    return rc;
}

int
clients_totals(struct admin *a, uint64_t *queued, uint64_t *inflight)
{
    int rc;
    struct walk *w = list_start(a, 0, 0, &rc);

    if (w == NULL) {
        return rc;
    }
    if (rc == 0) {
        pthread_mutex_lock(&w->lock);
        *queued = w->queued;
        *inflight = w->inflight;
        pthread_mutex_unlock(&w->lock);
    }
    walk_unref(w);
    return rc;
}

/* client_find callback, once. [the session's worker] */
static void
find_cb(void *arg, const struct midge_client_info *info)
{
    struct walk *w = arg;

    if (info != NULL) {
        json_t *o = client_json(info);
        pthread_mutex_lock(&w->lock);
        w->found = o;
        w->oom = o == NULL;
        pthread_mutex_unlock(&w->lock);
    }
    walk_finish(w);
}

int
clients_find(struct admin *a, const char *client_id, json_t **out)
{
    struct walk *w = walk_new();
    int rc;

    *out = NULL;
    if (w == NULL) {
        return -MIDGE_ENOMEM;
    }
    rc = a->api->client_find(a->self, client_id, find_cb, w);
    if (rc != 0) {
        atomic_store(&w->refs, 1);
        walk_unref(w);
        return rc;
    }
    rc = walk_wait(a, w);
    if (rc == 0) {
        pthread_mutex_lock(&w->lock);
        *out = w->found;
        w->found = NULL;
        pthread_mutex_unlock(&w->lock);
        rc = *out != NULL ? 0 : -MIDGE_ENOENT;
    }
    walk_unref(w);
    return rc;
}
