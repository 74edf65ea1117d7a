/*
 * The Redis thread (cluster.h): one libev loop of its own, with hiredis's
 * libev adapter, three connections to Redis, and the queue the workers'
 * hooks fill.
 *
 *   cmd  every command that answers at once, pipelined in order: route
 *        announcements, forwarding (PUBLISH for QoS 0, XADD for QoS 1/2),
 *        the retained hash, XACK, heartbeats, resync reads
 *   sub  SUBSCRIBE to the route-change channel and this node's QoS 0 channel
 *   rd   XREADGROUP ... BLOCK on this node's stream (a blocking read would
 *        stall every command behind it on a shared connection)
 *
 * Redis away: every connection is dropped, the outage is logged once,
 * QoS 1/2 forwards wait in a bounded buffer (acknowledged to the publisher
 * once buffered), QoS 0 forwards are dropped, and the connections are
 * tried again with a growing delay. When all three are back the node
 * announces its routes again, reloads everyone else's, and sends the buffer.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>

#include "dedupe.h"
#include "link_int.h"
#include "routes.h"

static char *
key2(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);

    if (s != NULL) {
        snprintf(s, n, "%s:%s", a, b);
    }
    return s;
}

static char *
key3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *s = malloc(n);

    if (s != NULL) {
        snprintf(s, n, "%s:%s:%s", a, b, c);
    }
    return s;
}

/* ---- connection state ---- */

static void
heartbeat_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;

    (void)arg;
    if (r != NULL && l->hb_sent > 0) {
        l->cl->api->metric_observe(l->cl->m_latency, link_now() - l->hb_sent);
        l->hb_sent = 0;
    }
}

static void
heartbeat(struct link *l)
{
    l->hb_sent = link_now();
    redisAsyncCommand(l->ctx[C_CMD], heartbeat_reply, NULL, "HSET %s %s %" PRId64, l->k_nodes,
                      l->cl->node_id, (int64_t)(l->hb_sent * 1000));
}

/* All three connections are up: announce, reload, read, send what waited. */
static void
link_up(struct link *l)
{
    struct cluster *cl = l->cl;
    redisAsyncContext *ac = l->ctx[C_CMD];
    char **filters;
    size_t n;
    size_t i;
    struct job *j;

    l->up = 1;
    l->backoff = BACKOFF_MIN;
    cl->api->metric_set(cl->m_redis_up, 1);
    if (l->outage_logged) {
        cl->api->log(cl->self, MIDGE_LOG_NOTICE, "redis is back: resyncing routes, sending %zu "
                     "buffered messages", l->buf_len);
        l->outage_logged = 0;
    } else {
        cl->api->log(cl->self, MIDGE_LOG_NOTICE, "connected to redis as node %s", cl->node_id);
    }

    /* This node's routes, from scratch: what Redis had may be from before a crash. */
    filters = routes_local_snapshot(cl->routes, &n);
    redisAsyncCommand(ac, link_ignore_reply, NULL, "DEL %s", l->k_routes_me);
    for (i = 0; i < n; i++) {
        redisAsyncCommand(ac, link_ignore_reply, NULL, "SADD %s %s", l->k_routes_me, filters[i]);
    }
    routes_list_free(filters, n);
    heartbeat(l);
    redisAsyncCommand(ac, link_ignore_reply, NULL, "PUBLISH %s *%s", l->ch_routes, cl->node_id);

    redisAsyncCommand(l->ctx[C_SUB], recv_sub_message, NULL, "SUBSCRIBE %s %s %s %s", l->ch_routes,
                      l->ch_q0_me, l->ch_claims, l->ch_retained);
    redisAsyncCommand(ac, recv_group_created, NULL, "XGROUP CREATE %s %s 0 MKSTREAM", l->k_stream_me,
                      GROUP);

    /* What waited during the outage, in order. */
    j = l->buf_head;
    l->buf_head = NULL;
    l->buf_tail = &l->buf_head;
    l->buf_len = 0;
    cl->api->metric_set(cl->m_buffered, 0);
    while (j != NULL) {
        struct job *next = j->next;
        j->next = NULL;
        fwd_job_start(l);
        fwd_send(l, j);
        j = next;
    }
}

static void connect_all(struct link *l);

/* One connection failed or closed: close the others, try again later. */
static void
link_down(struct link *l, const char *why)
{
    struct cluster *cl = l->cl;
    int i;

    if (l->tearing_down) {
        return;
    }
    l->tearing_down = 1;
    if (l->up || !l->outage_logged) {
        if (!l->outage_logged) {
            cl->api->log(cl->self, MIDGE_LOG_ERROR, "redis unavailable (%s): serving local "
                         "traffic, buffering up to %zu cross-node QoS 1/2 messages, retrying",
                         why, cl->buffer_max);
            l->outage_logged = 1;
        }
    }
    l->up = 0;
    cl->api->metric_set(cl->m_redis_up, 0);
    for (i = 0; i < NCONN; i++) {
        redisAsyncContext *ac = l->ctx[i];
        l->ctx[i] = NULL;
        l->connected[i] = 0;
        if (ac != NULL) {
            redisAsyncFree(ac); /* pending callbacks run with a NULL reply */
        }
    }
    l->tearing_down = 0;
    ev_timer_stop(l->loop, &l->retry);
    ev_timer_set(&l->retry, l->backoff, 0);
    ev_timer_start(l->loop, &l->retry);
    l->backoff = l->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : l->backoff * 2;
}

static int
slot_of(struct link *l, const redisAsyncContext *ac)
{
    int i;

    for (i = 0; i < NCONN; i++) {
        if (l->ctx[i] == ac) {
            return i;
        }
    }
    return -1;
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
    struct link *l = ac->data;
    int i = slot_of(l, ac);
    int k;

    if (i < 0) {
        return;
    }
    if (status != REDIS_OK) {
        l->ctx[i] = NULL; /* hiredis frees it after this callback */
        link_down(l, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    l->connected[i] = 1;
    for (k = 0; k < NCONN; k++) {
        if (!l->connected[k]) {
            return;
        }
    }
    link_up(l);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    struct link *l = ac->data;
    int i = slot_of(l, ac);

    (void)status;
    if (i < 0) {
        return; /* closed by link_down */
    }
    l->ctx[i] = NULL;
    link_down(l, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void
connect_all(struct link *l)
{
    struct cluster *cl = l->cl;
    int i;

    for (i = 0; i < NCONN; i++) {
        redisAsyncContext *ac = cl->redis_unix != NULL
                                    ? redisAsyncConnectUnix(cl->redis_unix)
                                    : redisAsyncConnect(cl->redis_host, cl->redis_port);
        if (ac == NULL || ac->err) {
            const char *why = ac != NULL ? ac->errstr : "out of memory";
            char copy[128];
            snprintf(copy, sizeof(copy), "%s", why);
            if (ac != NULL) {
                redisAsyncFree(ac);
            }
            link_down(l, copy);
            return;
        }
        ac->data = l;
        l->ctx[i] = ac;
        redisLibevAttach(l->loop, ac);
        redisAsyncSetConnectCallback(ac, on_connect);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
    }
}

static void
retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct link *l = w->data;

    (void)loop;
    (void)revents;
    connect_all(l);
}

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct link *l = w->data;
    struct cluster *cl = l->cl;

    (void)loop;
    (void)revents;
    if (!l->up) {
        return;
    }
    heartbeat(l);
    if (++l->ticks % RESYNC_EVERY == 0) {
        recv_resync(l);
    }
    cl->api->metric_set(cl->m_routes_remote, (int64_t)routes_remote_filters(cl->routes));
}

/* Jobs from the workers, or the stop request. */
static void
wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct link *l = w->data;
    int stop;

    (void)revents;
    fwd_drain(l);
    pthread_mutex_lock(&l->lock);
    stop = l->stop;
    pthread_mutex_unlock(&l->lock);
    if (stop) {
        int i;
        l->tearing_down = 1; /* callbacks now see NULL replies: nothing is sent any more */
        l->up = 0;
        for (i = 0; i < NCONN; i++) {
            redisAsyncContext *ac = l->ctx[i];
            l->ctx[i] = NULL;
            if (ac != NULL) {
                redisAsyncFree(ac);
            }
        }
        ev_timer_stop(loop, &l->retry);
        ev_timer_stop(loop, &l->tick);
        ev_async_stop(loop, &l->wake);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *
thread_main(void *arg)
{
    struct link *l = arg;

    connect_all(l);
    ev_run(l->loop, 0);
    return NULL;
}

struct link *
link_new(struct cluster *cl)
{
    struct link *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        return NULL;
    }
    l->cl = cl;
    l->in_tail = &l->in_head;
    l->buf_tail = &l->buf_head;
    l->backoff = BACKOFF_MIN;
    pthread_mutex_init(&l->lock, NULL);
    l->k_nodes = key2(cl->prefix, "nodes");
    l->k_routes_me = key3(cl->prefix, "routes", cl->node_id);
    l->k_stream_me = key3(cl->prefix, "stream", cl->node_id);
    l->k_retained = key2(cl->prefix, "retained");
    l->ch_routes = key2(cl->prefix, "ch:routes");
    l->ch_q0_me = key3(cl->prefix, "ch:q0", cl->node_id);
    l->ch_claims = key2(cl->prefix, "ch:claims");
    l->ch_retained = key2(cl->prefix, "ch:retained");
    l->dd = dedupe_new();
    l->hold_done = calloc(HOLD_WINDOW, 1);
    l->loop = ev_loop_new(EVFLAG_AUTO);
    if (l->k_nodes == NULL || l->k_routes_me == NULL || l->k_stream_me == NULL ||
        l->k_retained == NULL || l->ch_routes == NULL || l->ch_q0_me == NULL || l->ch_claims == NULL || l->ch_retained == NULL || l->dd == NULL ||
        l->hold_done == NULL ||
        l->loop == NULL) {
        link_free(l);
        return NULL;
    }
    ev_async_init(&l->wake, wake_cb);
    l->wake.data = l;
    ev_async_start(l->loop, &l->wake);
    ev_timer_init(&l->retry, retry_cb, 0, 0);
    l->retry.data = l;
    ev_timer_init(&l->tick, tick_cb, 1, 1);
    l->tick.data = l;
    ev_timer_start(l->loop, &l->tick);
    return l;
}

int
link_start(struct link *l)
{
    if (pthread_create(&l->thread, NULL, thread_main, l) != 0) {
        return -1;
    }
    l->running = 1;
    return 0;
}

static void
refuse_all(struct link *l, struct job *j)
{
    while (j != NULL) {
        struct job *next = j->next;
        j->hold_seq = 0; /* shutting down: the workers stop, their connections close */
        fwd_complete(l, j, MIDGE_DENY, 0x8B); /* server shutting down: not acknowledged as taken */
        job_free(j);
        j = next;
    }
}

void
link_stop(struct link *l)
{
    if (l == NULL) {
        return;
    }
    pthread_mutex_lock(&l->lock);
    l->stop = 1; /* link_submit refuses from now on: the queue below is final */
    pthread_mutex_unlock(&l->lock);
    if (l->running) {
        ev_async_send(l->loop, &l->wake);
        pthread_join(l->thread, NULL);
        l->running = 0;
    }
    refuse_all(l, l->in_head);
    l->in_head = NULL;
    l->in_tail = &l->in_head;
    l->in_len = 0;
    refuse_all(l, l->buf_head);
    l->buf_head = NULL;
    l->buf_tail = &l->buf_head;
    l->buf_len = 0;
}

void
link_free(struct link *l)
{
    if (l == NULL) {
        return;
    }
    link_stop(l);
    if (l->loop != NULL) {
        ev_loop_destroy(l->loop);
    }
    dedupe_free(l->dd);
    free(l->hold_done);
    free(l->k_nodes);
    free(l->k_routes_me);
    free(l->k_stream_me);
    free(l->k_retained);
    free(l->ch_routes);
    free(l->ch_q0_me);
    free(l->ch_claims);
    free(l->ch_retained);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

int
link_submit(struct link *l, struct job *j, uint64_t *hold_seq)
{
    int wake;

    pthread_mutex_lock(&l->lock);
    if (l->stop || l->in_len >= QUEUE_MAX) {
        pthread_mutex_unlock(&l->lock);
        return -1;
    }
    j->next = NULL;
    if (j->hold_wanted) {
        /* Numbered in queue order, which is (nearly) the order they finish in. */
        j->hold_seq = *hold_seq = ++l->hold_next;
    }
    wake = l->in_head == NULL;
    *l->in_tail = j;
    l->in_tail = &j->next;
    l->in_len++;
    pthread_mutex_unlock(&l->lock);
    if (wake) {
        ev_async_send(l->loop, &l->wake);
    }
    return 0;
}
