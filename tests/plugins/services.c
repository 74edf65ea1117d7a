/*
 * Test plugin "services" (tests/integration/test_plugin_api.py): makes the
 * ABI 1.0 services observable, mostly by publishing with api->publish.
 *
 * Blocking pool (api->run_blocking):
 *   auth: username "pool" -> the job sleeps plugin_opt_job_ms (default 300)
 *     on the pool, its done() completes the ticket on the worker: ALLOW when
 *     the password is "ok", else DENY 0x86. A full queue (-MIDGE_EBUSY) is
 *     answered at once with DENY 0x89 (server busy). Logged: "services: job
 *     queued client=ID" (worker), "services: job started client=ID" (pool
 *     thread), "services: pool busy client=ID rc=RC".
 *     done() checks it runs on the queuing thread and work() did not: a
 *     violation logs "services: BUG ...". Other usernames: DEFER (so with
 *     a user name nobody accepts the broker refuses 0x86: use no user name).
 * Timers:
 *   plugin_opt_tick_ms N > 0: a repeating main-thread timer publishes
 *     "svc/tick" payload COUNT (1, 2, ...).
 *   client id starting "oneshot": a one-shot worker timer 0.1 s after the CONNACK
 *     publishes "svc/oneshot" payload "ID same-thread=0|1" and stops itself.
 * fd watcher (main thread, on a pipe):
 *   "ctl/pipe" payload X is written into the pipe (worker thread); the
 *     watcher reads it and publishes "svc/pipe" payload X. X "pause" also
 *     stops watching (fd_watch_set 0) for 0.3 s, then publishes
 *     "svc/pipe/resumed" and watches again.
 * Per-client data:
 *   client_connected sets a "first" value, then replaces it with the client
 *     id (the first one's free_fn runs at once); client_disconnected reads it
 *     back. free_fn logs "services: client data freed tag=T client=ID".
 * Accessors: client_connected publishes "svc/connected/ID" with a JSON object
 *   {listener, ip, port, address, tls, uprops: [[k, v], ...], data_ok};
 *   client_disconnected "svc/disconnected/ID" payload "data=ID reason=R".
 * Clients by id, called from a pool thread (not a broker loop):
 *   "ctl/disconnect" payload "ID [REASON]" -> api->client_disconnect
 *   "ctl/find" payload "ID" -> api->client_find; the callback publishes
 *     "svc/find/ID" with a JSON object of the info, or "none".
 * Metrics: counter "logins" (+1 per connected client), gauge "connected",
 *   histogram "job_seconds" (pool job durations), gauge "ctl_gauge" and
 *   histogram "ctl_hist" set by "ctl/metric" payload "gauge N" / "observe V",
 *   counter "ctl_counter" by "add N". Init logs "services: metric_new
 *   bad_name=NULL|set dup=NULL|set".
 * "ctl/#" arrives through an internal subscription (api->subscribe); a
 *   "ctl/badcall" message calls api->subscribe on a worker thread and
 *   publishes "svc/badcall" payload "subscribe=NULL" or "subscribe=set".
 *   "ctl/pipe" payload "nested" makes the watcher (main thread) publish
 *   "ctl/nested": its callback publishes "svc/nested/inner", then calls
 *   api->subscribe inside the callback (forbidden) and reports as above.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "midge/plugin.h"

static const char *const options[] = {"job_ms", "tick_ms", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("services", "1.0", "test: makes the ABI 1.0 services observable",
                             options);

struct state {
    const struct midge_api *api;
    midge_plugin *self;
    long job_ms;
    long tick_ms;
    midge_timer *tick;      /* main thread */
    unsigned ticks;         /* main thread only */
    int pipefd[2];
    midge_watch *watch;     /* main thread */
    midge_timer *resume;    /* main thread: re-enables the watcher after "pause" */
    midge_subscription *ctl;
    midge_metric *logins;
    midge_metric *connected;
    midge_metric *job_seconds;
    midge_metric *ctl_gauge;
    midge_metric *ctl_hist;
    midge_metric *ctl_counter;
};

static void
pub(struct state *s, const char *topic, const char *payload)
{
    int rc = s->api->publish(s->self, topic, payload, (uint32_t)strlen(payload), 0, 0);

    if (rc != 0) {
        s->api->log(s->self, MIDGE_LOG_WARNING, "services: publish to %s failed: %d", topic, rc);
    }
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Appends s as a JSON string (the test's values are plain; escape the few that matter). */
static void
json_str(char *buf, size_t cap, const char *s, size_t len)
{
    size_t n = strlen(buf);
    size_t i;

    if (n + 1 < cap) {
        buf[n++] = '"';
    }
    for (i = 0; i < len && n + 8 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    if (n + 1 < cap) {
        buf[n++] = '"';
    }
    buf[n] = '\0';
}

static void
cat(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf);

    snprintf(buf + n, cap - n, "%s", s);
}

/* ---- blocking pool: auth answered later ---- */

/* One login on the pool. Owned by the job from run_blocking until done() frees it. */
struct job {
    struct state *s;
    midge_ticket *ticket;
    int ok;
    double t0;
    pthread_t queued_on;
    pthread_t ran_on;
    char id[];
};

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void
job_work(void *arg)
{
    struct job *j = arg;

    j->ran_on = pthread_self();
    j->s->api->log(j->s->self, MIDGE_LOG_NOTICE, "services: job started client=%s", j->id);
    sleep_ms(j->s->job_ms);
}

static void
job_done(void *arg)
{
    struct job *j = arg;
    struct state *s = j->s;
    int rc;

    if (!pthread_equal(pthread_self(), j->queued_on)) {
        s->api->log(s->self, MIDGE_LOG_ERROR, "services: BUG done() ran on another thread");
    }
    if (pthread_equal(j->ran_on, j->queued_on)) {
        s->api->log(s->self, MIDGE_LOG_ERROR, "services: BUG work() ran on the worker");
    }
    s->api->metric_observe(s->job_seconds, now_s() - j->t0);
    rc = s->api->complete(j->ticket, j->ok ? MIDGE_ALLOW : MIDGE_DENY, j->ok ? 0 : 0x86);
    s->api->log(s->self, MIDGE_LOG_INFO, "services: job done client=%s complete()=%d", j->id, rc);
    free(j);
}

static int
auth(void *st, midge_client *client, const struct midge_auth_request *req, uint8_t *reason,
     midge_ticket *ticket)
{
    struct state *s = st;
    const char *id = s->api->client_id(client);
    struct job *j;
    int rc;

    if (req->username == NULL || strcmp(req->username, "pool") != 0) {
        return MIDGE_DEFER;
    }
    j = calloc(1, sizeof(*j) + strlen(id) + 1);
    if (j == NULL) {
        *reason = 0x89;
        return MIDGE_DENY;
    }
    j->s = s;
    j->ticket = ticket;
    j->ok = req->password != NULL && req->password_len == 2 && memcmp(req->password, "ok", 2) == 0;
    j->t0 = now_s();
    j->queued_on = pthread_self();
    strcpy(j->id, id);
    rc = s->api->run_blocking(s->self, job_work, job_done, j);
    if (rc != 0) {
        s->api->log(s->self, MIDGE_LOG_NOTICE, "services: pool busy client=%s rc=%d", id, rc);
        free(j);
        *reason = 0x89; /* server busy */
        return MIDGE_DENY;
    }
    s->api->log(s->self, MIDGE_LOG_NOTICE, "services: job queued client=%s", id);
    return MIDGE_PENDING;
}

/* ---- timers ---- */

static void
tick_cb(void *arg, midge_timer *t)
{
    struct state *s = arg;
    char buf[32];

    (void)t;
    snprintf(buf, sizeof(buf), "%u", ++s->ticks);
    pub(s, "svc/tick", buf);
}

/* A worker-thread one-shot timer. Owned by the timer callback, which frees it. */
struct oneshot {
    struct state *s;
    pthread_t thread;
    char id[];
};

static void
oneshot_cb(void *arg, midge_timer *t)
{
    struct oneshot *o = arg;
    char buf[300];

    snprintf(buf, sizeof(buf), "%s same-thread=%d", o->id, pthread_equal(pthread_self(), o->thread) ? 1 : 0);
    pub(o->s, "svc/oneshot", buf);
    o->s->api->timer_stop(o->s->self, t); /* a fired one-shot must still be stopped */
    free(o);
}

/* ---- fd watcher ---- */

static void
resume_cb(void *arg, midge_timer *t)
{
    struct state *s = arg;

    s->api->timer_stop(s->self, t);
    s->resume = NULL;
    pub(s, "svc/pipe/resumed", "");
    s->api->fd_watch_set(s->self, s->watch, MIDGE_FD_READ);
}

static void
pipe_cb(void *arg, int fd, int revents)
{
    struct state *s = arg;
    char buf[512];
    ssize_t n;

    if (!(revents & MIDGE_FD_READ)) {
        return;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0) {
        return;
    }
    buf[n] = '\0';
    pub(s, "svc/pipe", buf);
    if (strcmp(buf, "nested") == 0) {
        pub(s, "ctl/nested", ""); /* our own ctl/# callback runs now, on the main thread */
    }
    if (strcmp(buf, "pause") == 0 && s->resume == NULL) {
        s->api->fd_watch_set(s->self, s->watch, 0);
        s->resume = s->api->timer_start(s->self, 0.3, 0, resume_cb, s);
    }
}

/* ---- per-client data and accessors ---- */

/* What client_data_set stores. Owned by the broker's slot until free_fn. */
struct cdata {
    struct state *s;
    char tag[8];
    char id[];
};

static void
cdata_free(void *data)
{
    struct cdata *d = data;

    d->s->api->log(d->s->self, MIDGE_LOG_NOTICE, "services: client data freed tag=%s client=%s",
                   d->tag, d->id);
    free(d);
}

static struct cdata *
cdata_new(struct state *s, const char *tag, const char *id)
{
    struct cdata *d = calloc(1, sizeof(*d) + strlen(id) + 1);

    if (d != NULL) {
        d->s = s;
        snprintf(d->tag, sizeof(d->tag), "%s", tag);
        strcpy(d->id, id);
    }
    return d;
}

static void
connected(void *st, midge_client *c)
{
    struct state *s = st;
    const struct midge_api *api = s->api;
    const char *id = api->client_id(c);
    struct midge_tls_info tls;
    struct cdata *first = cdata_new(s, "first", id);
    struct cdata *d = cdata_new(s, "real", id);
    char buf[4096];
    char topic[300];
    char num[32];
    size_t pos = 0;
    const char *k;
    const char *v;
    size_t kl;
    size_t vl;
    int n = 0;
    int tls_rc;

    api->metric_add(s->logins, 1);
    api->metric_add(s->connected, 1);
    if (first != NULL && api->client_data_set(s->self, c, first, cdata_free) != 0) {
        free(first);
    }
    if (d != NULL && api->client_data_set(s->self, c, d, cdata_free) != 0) {
        free(d);
        d = NULL;
    }

    memset(&tls, 0, sizeof(tls));
    tls.size = sizeof(tls);
    tls_rc = api->client_tls(c, &tls);
    buf[0] = '\0';
    cat(buf, sizeof(buf), "{\"listener\": ");
    json_str(buf, sizeof(buf), api->client_listener_name(c), strlen(api->client_listener_name(c)));
    cat(buf, sizeof(buf), ", \"ip\": ");
    json_str(buf, sizeof(buf), api->client_peer_ip(c), strlen(api->client_peer_ip(c)));
    snprintf(num, sizeof(num), ", \"port\": %d", api->client_peer_port(c));
    cat(buf, sizeof(buf), num);
    cat(buf, sizeof(buf), ", \"address\": ");
    json_str(buf, sizeof(buf), api->client_address(c), strlen(api->client_address(c)));
    snprintf(num, sizeof(num), ", \"tls\": %d", tls_rc);
    cat(buf, sizeof(buf), num);
    cat(buf, sizeof(buf), ", \"uprops\": [");
    while (api->client_user_property_next(c, &pos, &k, &kl, &v, &vl)) {
        cat(buf, sizeof(buf), n++ ? ", [" : "[");
        json_str(buf, sizeof(buf), k, kl);
        cat(buf, sizeof(buf), ", ");
        json_str(buf, sizeof(buf), v, vl);
        cat(buf, sizeof(buf), "]");
    }
    snprintf(num, sizeof(num), "], \"data_ok\": %d}",
             d != NULL && api->client_data(s->self, c) == d ? 1 : 0);
    cat(buf, sizeof(buf), num);
    snprintf(topic, sizeof(topic), "svc/connected/%s", id);
    pub(s, topic, buf);

    if (strncmp(id, "oneshot", 7) == 0) {
        struct oneshot *o = calloc(1, sizeof(*o) + strlen(id) + 1);
        if (o != NULL) {
            o->s = s;
            o->thread = pthread_self();
            strcpy(o->id, id);
            if (api->timer_start(s->self, 0.1, 0, oneshot_cb, o) == NULL) {
                free(o);
            }
        }
    }
}

static void
disconnected(void *st, midge_client *c, int reason)
{
    struct state *s = st;
    const struct cdata *d = s->api->client_data(s->self, c);
    char topic[300];
    char buf[300];

    s->api->metric_add(s->connected, -1);
    snprintf(topic, sizeof(topic), "svc/disconnected/%s", s->api->client_id(c));
    snprintf(buf, sizeof(buf), "data=%s reason=%d", d != NULL ? d->id : "(none)", reason);
    pub(s, topic, buf);
}

/* ---- clients by id, from a pool thread ---- */

/* A ctl request run on the pool. Owned by the job; the find callback frees its copy. */
struct ctl_req {
    struct state *s;
    int reason;
    char id[];
};

static void
find_cb(void *arg, const struct midge_client_info *info)
{
    struct ctl_req *r = arg;
    struct state *s = r->s;
    char topic[300];
    char buf[1024];

    snprintf(topic, sizeof(topic), "svc/find/%s", r->id);
    if (info == NULL) {
        pub(s, topic, "none");
    } else {
        buf[0] = '\0';
        cat(buf, sizeof(buf), "{\"client_id\": ");
        json_str(buf, sizeof(buf), info->client_id, strlen(info->client_id));
        cat(buf, sizeof(buf), ", \"username\": ");
        if (info->username != NULL) {
            json_str(buf, sizeof(buf), info->username, strlen(info->username));
        } else {
            cat(buf, sizeof(buf), "null");
        }
        cat(buf, sizeof(buf), ", \"address\": ");
        if (info->address != NULL) {
            json_str(buf, sizeof(buf), info->address, strlen(info->address));
        } else {
            cat(buf, sizeof(buf), "null");
        }
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf),
                 ", \"connected\": %d, \"protocol\": %d, \"listener_port\": %d, "
                 "\"keepalive\": %d, \"clean_start\": %d, \"session_expiry\": %u, "
                 "\"subscriptions\": %u, \"queued\": %u, \"inflight\": %u}",
                 info->connected, info->protocol, info->listener_port, info->keepalive,
                 info->clean_start, (unsigned)info->session_expiry,
                 (unsigned)info->subscriptions, (unsigned)info->queued,
                 (unsigned)info->inflight);
        pub(s, topic, buf);
    }
    free(r);
}

static void
disconnect_work(void *arg)
{
    struct ctl_req *r = arg;
    int rc = r->s->api->client_disconnect(r->s->self, r->id, (uint8_t)r->reason);

    r->s->api->log(r->s->self, MIDGE_LOG_NOTICE, "services: client_disconnect(%s)=%d", r->id, rc);
    free(r);
}

static void
find_work(void *arg)
{
    struct ctl_req *r = arg;
    struct state *s = r->s;
    int rc = s->api->client_find(s->self, r->id, find_cb, r);

    s->api->log(s->self, MIDGE_LOG_NOTICE, "services: client_find=%d", rc);
    if (rc != 0) {
        free(r); /* cb not called */
    }
}

static void
ctl_clients(struct state *s, const char *what, const char *text)
{
    char id[256];
    int reason = 0;
    struct ctl_req *r;

    if (sscanf(text, "%255s %i", id, &reason) < 1) {
        return;
    }
    r = calloc(1, sizeof(*r) + strlen(id) + 1);
    if (r == NULL) {
        return;
    }
    r->s = s;
    r->reason = reason;
    strcpy(r->id, id);
    if (s->api->run_blocking(s->self, strcmp(what, "disconnect") == 0 ? disconnect_work : find_work,
                             NULL, r) != 0) {
        free(r);
    }
}

static void
ctl_metric(struct state *s, const char *text)
{
    char what[16];
    double v = 0;

    if (sscanf(text, "%15s %lf", what, &v) != 2) {
        return;
    }
    if (strcmp(what, "gauge") == 0) {
        s->api->metric_set(s->ctl_gauge, (int64_t)v);
    } else if (strcmp(what, "observe") == 0) {
        s->api->metric_observe(s->ctl_hist, v);
    } else if (strcmp(what, "add") == 0) {
        s->api->metric_add(s->ctl_counter, (int64_t)v);
    }
}

static void
dummy_cb(void *arg, const midge_message *msg)
{
    (void)arg;
    (void)msg;
}

/* The internal subscription on "ctl/#". [the publisher's worker thread] */
static void
ctl_cb(void *arg, const midge_message *msg)
{
    struct state *s = arg;
    const char *topic = s->api->message_topic(msg);
    uint32_t len = 0;
    const void *p = s->api->message_payload(msg, &len);
    char text[512];

    if (len >= sizeof(text)) {
        len = sizeof(text) - 1;
    }
    if (len > 0) {
        memcpy(text, p, len);
    }
    text[len] = '\0';
    if (strcmp(topic, "ctl/pipe") == 0) {
        if (write(s->pipefd[1], text, len) != (ssize_t)len) {
            s->api->log(s->self, MIDGE_LOG_WARNING, "services: pipe write failed");
        }
    } else if (strcmp(topic, "ctl/disconnect") == 0) {
        ctl_clients(s, "disconnect", text);
    } else if (strcmp(topic, "ctl/find") == 0) {
        ctl_clients(s, "find", text);
    } else if (strcmp(topic, "ctl/metric") == 0) {
        ctl_metric(s, text);
    } else if (strcmp(topic, "ctl/badcall") == 0 || strcmp(topic, "ctl/nested") == 0) {
        midge_subscription *bad;
        if (topic[4] == 'n') {
            /* A publish from inside the callback runs the routing again, nested. */
            pub(s, "svc/nested/inner", "");
        }
        bad = s->api->subscribe(s->self, "x/#", dummy_cb, NULL);
        pub(s, "svc/badcall", bad == NULL ? "subscribe=NULL" : "subscribe=set");
    }
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .auth = auth,
    .client_connected = connected,
    .client_disconnected = disconnected,
};

static int
parse_ms(midge_plugin *self, const struct midge_api *api, const char *key, long def, long *out)
{
    const char *v = api->option(self, key);
    char *end;

    *out = def;
    if (v == NULL) {
        return 0;
    }
    errno = 0;
    *out = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || *out < 0 || *out > 600000) {
        api->set_error(self, "%s: expected milliseconds, got '%s'", key, v);
        return -MIDGE_EINVAL;
    }
    return 0;
}

static void
state_free(struct state *s)
{
    if (s->pipefd[0] >= 0) {
        close(s->pipefd[0]);
    }
    if (s->pipefd[1] >= 0) {
        close(s->pipefd[1]);
    }
    free(s);
}

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *s = calloc(1, sizeof(*s));
    midge_metric *bad;
    midge_metric *dup;

    if (s == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    s->api = api;
    s->self = self;
    s->pipefd[0] = s->pipefd[1] = -1;
    if (parse_ms(self, api, "job_ms", 300, &s->job_ms) != 0 ||
        parse_ms(self, api, "tick_ms", 0, &s->tick_ms) != 0) {
        state_free(s);
        return -MIDGE_EINVAL;
    }
    if (pipe(s->pipefd) != 0 || fcntl(s->pipefd[0], F_SETFL, O_NONBLOCK) != 0) {
        api->set_error(self, "pipe: %s", strerror(errno));
        state_free(s);
        return -MIDGE_ENOMEM;
    }
    s->logins = api->metric_new(self, "logins", MIDGE_METRIC_COUNTER, "clients connected");
    s->connected = api->metric_new(self, "connected", MIDGE_METRIC_GAUGE, "clients online");
    s->job_seconds = api->metric_new(self, "job_seconds", MIDGE_METRIC_HISTOGRAM, "pool jobs");
    s->ctl_gauge = api->metric_new(self, "ctl_gauge", MIDGE_METRIC_GAUGE, NULL);
    s->ctl_hist = api->metric_new(self, "ctl_hist", MIDGE_METRIC_HISTOGRAM, NULL);
    s->ctl_counter = api->metric_new(self, "ctl_counter", MIDGE_METRIC_COUNTER, NULL);
    bad = api->metric_new(self, "Bad-Name", MIDGE_METRIC_COUNTER, NULL);
    dup = api->metric_new(self, "logins", MIDGE_METRIC_COUNTER, NULL);
    api->log(self, MIDGE_LOG_NOTICE, "services: metric_new bad_name=%s dup=%s",
             bad == NULL ? "NULL" : "set", dup == NULL ? "NULL" : "set");
    if (s->logins == NULL || s->connected == NULL || s->job_seconds == NULL ||
        s->ctl_gauge == NULL || s->ctl_hist == NULL || s->ctl_counter == NULL) {
        api->set_error(self, "metric_new failed");
        state_free(s);
        return -MIDGE_ENOMEM;
    }
    s->watch = api->fd_watch(self, s->pipefd[0], MIDGE_FD_READ, pipe_cb, s);
    s->ctl = api->subscribe(self, "ctl/#", ctl_cb, s);
    if (s->watch == NULL || s->ctl == NULL) {
        api->set_error(self, "fd_watch or subscribe failed");
        state_free(s);
        return -MIDGE_ENOMEM;
    }
    if (s->tick_ms > 0) {
        s->tick = api->timer_start(self, s->tick_ms / 1000.0, s->tick_ms / 1000.0, tick_cb, s);
    }
    api->log(self, MIDGE_LOG_NOTICE, "services: bad timer refused=%d",
             api->timer_start(self, -1.0, 0, tick_cb, s) == NULL);
    *state = s;
    return api->hooks_set(self, &hooks);
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    struct state *s = state;

    if (s == NULL) {
        return;
    }
    /* Main-thread timers and the watcher are ours to stop; cleanup runs on the main thread. */
    if (s->tick != NULL) {
        s->api->timer_stop(self, s->tick);
    }
    if (s->resume != NULL) {
        s->api->timer_stop(self, s->resume);
    }
    s->api->fd_unwatch(self, s->watch);
    s->api->unsubscribe(self, s->ctl);
    state_free(s);
}
