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
#include <errno.h>
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

#include "cluster.h"
#include "dedupe.h"
#include "routes.h"
#include "wire.h"

#define GROUP "midge"
#define READ_COUNT "256"
#define READ_BLOCK_MS "2000"
#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0
#define RESYNC_EVERY 5   /* ticks (seconds) between full reloads of remote routes */
#define MAX_ATTEMPTS 3   /* a forward refused by Redis (not lost with the connection) */
#define QUEUE_MAX 100000 /* jobs waiting for the thread */
#define INFLIGHT_MAX 20000 /* forwards sent to Redis and not answered: then jobs wait in the queue */
#define BUNDLE_BYTES (256 * 1024) /* one PUBLISH / XADD carries the messages of one wake up to this */
/*
 * PREFIX:owner:ID = "CONNECT_TIME_US NODE", replaced only by a later
 * connection: claims that cross (the client moved A -> B faster than A's
 * claim travelled) are settled by when the client connected, not by which
 * claim reached Redis first. Node clocks must agree to well under the time
 * a client takes to reconnect (NTP).
 */
#define OWNER_SCRIPT                                                                           \
    "local c = redis.call('GET', KEYS[1]) "                                                    \
    "if not c or tonumber(string.match(c, '^%d+')) <= tonumber(ARGV[1]) then "                 \
    "redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', 86400) end return 0"
#define HOLD_WINDOW (1u << 21) /* > holds that can be outstanding: QUEUE_MAX + INFLIGHT_MAX + buffer */

enum { C_CMD = 0, C_SUB = 1, C_RD = 2, NCONN = 3 };

struct link {
    struct cluster *cl;
    struct ev_loop *loop; /* owned; runs on `thread` */
    ev_async wake;
    ev_timer retry;
    ev_timer tick;
    pthread_t thread;
    int running;

    pthread_mutex_t lock;
    struct job *in_head;  /* Protected by lock: submitted jobs */
    struct job **in_tail; /* Protected by lock */
    size_t in_len;        /* Protected by lock */
    int stop;             /* Protected by lock */
    uint64_t hold_next;   /* Protected by lock: the last hold number given out */

    /* Everything below: the Redis thread only. */
    redisAsyncContext *ctx[NCONN]; /* owned by hiredis once connected; NULL when closed */
    int connected[NCONN];
    int up;
    int ever_up;
    int tearing_down;
    int outage_logged;
    double backoff;
    unsigned ticks;
    double hb_sent;       /* a heartbeat's send time, for the latency metric */
    struct job *buf_head; /* outage buffer, in publish order */
    struct job **buf_tail;
    size_t buf_len;
    struct dedupe *dd;
    size_t inflight;      /* forwards sent and not finished (job_start / job_end) */
    uint8_t *hold_done;   /* finished holds above hold_mark, by number % HOLD_WINDOW */
    uint64_t hold_mark;   /* every hold up to this is finished (released to the broker) */
    char read_from[64];   /* "0..." while reading this consumer's pending entries, then ">" */

    char *k_nodes;        /* PREFIX:nodes          hash node -> last heartbeat (ms) */
    char *k_routes_me;    /* PREFIX:routes:NODE    set of filters */
    char *k_stream_me;    /* PREFIX:stream:NODE    QoS 1/2 messages for NODE */
    char *k_retained;     /* PREFIX:retained       hash topic -> blob */
    char *ch_routes;      /* PREFIX:ch:routes      "+NODE\nFILTER", "-NODE\nFILTER", "*NODE" */
    char *ch_q0_me;       /* PREFIX:ch:q0:NODE     QoS 0 messages for NODE */
    char *ch_claims;      /* PREFIX:ch:claims      "NODE\nCLIENT_ID": the client connected on NODE */
    char *ch_retained;    /* PREFIX:ch:retained    retained messages set or cleared, to every node */
};

void
job_free(struct job *j)
{
    if (j == NULL) {
        return;
    }
    routes_list_free(j->targets, j->ntargets);
    free(j->filter);
    free(j->blob);
    free(j->topic);
    free(j);
}

static double
now_s(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

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

/* ---- finishing forwards ---- */

/* Hold `seq` is finished: release the holds up to the first one still open. */
static void
hold_finish(struct link *l, uint64_t seq)
{
    uint64_t was = l->hold_mark;

    l->hold_done[seq % HOLD_WINDOW] = 1;
    while (l->hold_done[(l->hold_mark + 1) % HOLD_WINDOW]) {
        l->hold_done[(l->hold_mark + 1) % HOLD_WINDOW] = 0;
        l->hold_mark++;
    }
    if (l->hold_mark != was) {
        l->cl->api->ack_release(l->cl->self, l->hold_mark);
    }
}

/*
 * The job is decided: the publisher's acknowledgement goes out (a held one:
 * always; after DENY the message just did not cross, counted in `dropped`).
 */
static void
complete(struct link *l, struct job *j, int verdict, uint8_t reason)
{
    if (j->ticket != NULL) {
        l->cl->api->complete(j->ticket, verdict, reason);
        j->ticket = NULL;
    }
    if (j->hold_seq != 0) {
        hold_finish(l, j->hold_seq);
        j->hold_seq = 0;
    }
}

/* Keeps a QoS 1/2 forward for later (acknowledging the publisher now), or refuses it when full. */
static void
buffer_job(struct link *l, struct job *j)
{
    struct cluster *cl = l->cl;

    if (j->qos == 0) {
        cl->api->metric_add(cl->m_dropped, 1);
        job_free(j);
        return;
    }
    if (l->buf_len >= cl->buffer_max) {
        /* MQTT 5 publishers are told (0x97); MQTT 3 ones are acknowledged and it is dropped. */
        complete(l, j, MIDGE_DENY, 0x97);
        cl->api->metric_add(cl->m_dropped, 1);
        job_free(j);
        return;
    }
    complete(l, j, MIDGE_DEFER, 0);
    j->next = NULL;
    j->outstanding = 0;
    j->failed = 0;
    *l->buf_tail = j;
    l->buf_tail = &j->next;
    l->buf_len++;
    cl->api->metric_set(cl->m_buffered, (int64_t)l->buf_len);
}

static void send_forward(struct link *l, struct job *j);
static void ignore_reply(redisAsyncContext *ac, void *r, void *arg);
static void forward_settle(struct link *l, struct job *j);

/* A forward goes to Redis / is finished (sent, dropped or buffered): the in-flight bound. */
static void
job_start(struct link *l)
{
    l->inflight++;
}

static void
job_end(struct link *l)
{
    l->inflight--;
    if (l->inflight == INFLIGHT_MAX / 2) {
        ev_async_send(l->loop, &l->wake); /* room again: take what waits in the queue, if any */
    }
}

/* One answer (or the sending hold) less; the job finishes with its last one. */
static void
forward_settle(struct link *l, struct job *j)
{
    if (--j->outstanding > 0) {
        return;
    }
    if (!j->failed || !(j->failed == 1 && l->up && j->attempts + 1 < MAX_ATTEMPTS)) {
        job_end(l);
    }
    if (!j->failed) {
        l->cl->api->metric_add(l->cl->m_forwarded, (int64_t)j->ntargets);
        complete(l, j, MIDGE_DEFER, 0);
        job_free(j);
    } else if (j->failed == 1 && l->up && ++j->attempts < MAX_ATTEMPTS) {
        send_forward(l, j); /* receivers drop the copies that did arrive, by id */
    } else if (j->failed == 1) {
        complete(l, j, MIDGE_DENY, 0x80);
        l->cl->api->metric_add(l->cl->m_dropped, 1);
        job_free(j);
    } else {
        buffer_job(l, j); /* the connection went away: sent again when Redis is back */
    }
}

static void
forward_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    struct job *j = arg;
    redisReply *reply = r;

    if (reply == NULL) {
        j->failed = 2;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        if (!j->failed) {
            l->cl->api->log(l->cl->self, MIDGE_LOG_WARNING, "redis refused a forward: %s",
                            reply->str);
            j->failed = 1;
        }
    }
    forward_settle(l, j);
}

static void
send_forward(struct link *l, struct job *j)
{
    struct cluster *cl = l->cl;
    redisAsyncContext *ac = l->ctx[C_CMD];
    char maxlen[24];
    size_t i;

    snprintf(maxlen, sizeof(maxlen), "%ld", cl->stream_maxlen);
    j->failed = 0;
    j->outstanding = 1; /* held while sending, so no reply finishes the job early */
    if (j->topic != NULL) {
        int rc;
        j->outstanding++;
        if (j->retain_clear) {
            rc = redisAsyncCommand(ac, forward_reply, j, "HDEL %s %s", l->k_retained, j->topic);
        } else {
            rc = redisAsyncCommand(ac, forward_reply, j, "HSET %s %s %b", l->k_retained,
                                   j->topic, j->blob, j->blob_len);
        }
        if (rc != REDIS_OK) {
            j->outstanding--;
            j->failed = 2;
        }
        /*
         * Every node's store, whatever this node knows of the others now: the
         * nodes with subscribers also get it by the usual way below (QoS kept),
         * and drop the second copy by id.
         */
        redisAsyncCommand(ac, ignore_reply, NULL, "PUBLISH %s %b", l->ch_retained, j->blob,
                          j->blob_len);
    }
    for (i = 0; i < j->ntargets; i++) {
        int rc;
        j->outstanding++;
        if (j->qos == 0) {
            rc = redisAsyncCommand(ac, forward_reply, j, "PUBLISH %s:ch:q0:%s %b", cl->prefix,
                                   j->targets[i], j->blob, j->blob_len);
        } else {
            rc = redisAsyncCommand(ac, forward_reply, j,
                                   "XADD %s:stream:%s MAXLEN ~ %s * m %b", cl->prefix,
                                   j->targets[i], maxlen, j->blob, j->blob_len);
        }
        if (rc != REDIS_OK) {
            j->outstanding--;
            j->failed = 2;
        }
    }
    /* Drop the sending hold: finishes at once when nothing could be sent. */
    forward_settle(l, j);
}

/* ---- route announcements ---- */

static void
ignore_reply(redisAsyncContext *ac, void *r, void *arg)
{
    (void)ac;
    (void)r;
    (void)arg;
}

static void
announce(struct link *l, int add, const char *filter)
{
    redisAsyncContext *ac = l->ctx[C_CMD];

    redisAsyncCommand(ac, ignore_reply, NULL, add ? "SADD %s %s" : "SREM %s %s",
                      l->k_routes_me, filter);
    redisAsyncCommand(ac, ignore_reply, NULL, "PUBLISH %s %s%s\n%s", l->ch_routes,
                      add ? "+" : "-", l->cl->node_id, filter);
}

static void
run_job(struct link *l, struct job *j)
{
    if (j->kind == JOB_FORWARD) {
        if (l->up) {
            job_start(l);
            send_forward(l, j);
        } else {
            buffer_job(l, j);
        }
        return;
    }
    if (j->kind == JOB_CLAIM) {
        if (l->up) {
            /* The owner key keeps the latest connection's node (see claim_owner). */
            redisAsyncCommand(l->ctx[C_CMD], ignore_reply, NULL, "EVAL %s 1 %s:owner:%s %" PRIu64
                              " %s", OWNER_SCRIPT, l->cl->prefix, j->filter, j->when,
                              l->cl->node_id);
            redisAsyncCommand(l->ctx[C_CMD], ignore_reply, NULL, "PUBLISH %s %s\n%s",
                              l->ch_claims, l->cl->node_id, j->filter);
        }
        job_free(j);
        return;
    }
    /* Route changes while Redis is away are covered by the resync when it is back. */
    if (l->up) {
        announce(l, j->kind == JOB_ROUTE_ADD, j->filter);
    }
    job_free(j);
}

/* ---- receiving ---- */

/* Publishes a forwarded message on this node. `load`: a retained message read at start. */
static void
inject(struct link *l, const char *blob, size_t len, int load)
{
    struct cluster *cl = l->cl;
    struct wire_msg m;
    char small[256];
    char *topic;

    if (wire_decode(blob, len, &m) != 0) {
        cl->api->log(cl->self, MIDGE_LOG_WARNING, "dropped an unreadable cluster message "
                     "(%zu bytes)", len);
        return;
    }
    if (!load && dedupe_seen(l->dd, m.id, m.id_len)) {
        cl->api->metric_add(cl->m_duplicates, 1);
        return;
    }
    topic = m.topic_len < sizeof(small) ? small : malloc(m.topic_len + 1);
    if (topic == NULL) {
        return;
    }
    memcpy(topic, m.topic, m.topic_len);
    topic[m.topic_len] = 0;
    /*
     * api->publish runs no client hooks, so this node's publish_accepted never
     * sees the message: what came from the cluster is not forwarded again.
     */
    if (cl->api->publish(cl->self, topic, m.payload, (uint32_t)m.payload_len, m.qos,
                         m.retain) == 0) {
        cl->api->metric_add(cl->m_received, 1);
    }
    if (topic != small) {
        free(topic);
    }
}

/* Publishes every message of a bundle (wire.h). */
static void
inject_bundle(struct link *l, const char *buf, size_t len, int load)
{
    size_t pos = 0;
    const char *blob;
    size_t n;
    int r;

    while ((r = wire_next(buf, len, &pos, &blob, &n)) == 1) {
        inject(l, blob, n, load);
    }
    if (r < 0) {
        l->cl->api->log(l->cl->self, MIDGE_LOG_WARNING, "dropped the rest of an unreadable "
                        "cluster bundle (%zu of %zu bytes)", len - pos, len);
    }
}

static void read_stream(struct link *l);

static void
stream_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    redisReply *reply = r;
    const char **argv = NULL;
    size_t *argl = NULL;
    size_t nack = 0;
    size_t n = 0;
    size_t i;

    (void)arg;
    if (reply == NULL || !l->up) {
        return; /* the connection went away: reading starts again when it is back */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* NOGROUP: Redis lost its data (restarted without appendonly). Create it again. */
        redisAsyncCommand(l->ctx[C_CMD], ignore_reply, NULL, "XGROUP CREATE %s %s 0 MKSTREAM",
                          l->k_stream_me, GROUP);
        snprintf(l->read_from, sizeof(l->read_from), "0");
        read_stream(l);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2) {
        redisReply *entries = reply->element[0]->element[1];
        n = entries->type == REDIS_REPLY_ARRAY ? entries->elements : 0;
        argv = calloc(n + 3, sizeof(*argv));
        argl = calloc(n + 3, sizeof(*argl));
        for (i = 0; i < n; i++) {
            redisReply *e = entries->element[i];
            redisReply *fields;
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING) {
                continue;
            }
            fields = e->element[1];
            /* A pending entry trimmed away by MAXLEN comes back without fields. */
            if (fields->type == REDIS_REPLY_ARRAY && fields->elements == 2 &&
                fields->element[1]->type == REDIS_REPLY_STRING) {
                inject_bundle(l, fields->element[1]->str, fields->element[1]->len, 0);
            }
            if (l->read_from[0] != '>') {
                snprintf(l->read_from, sizeof(l->read_from), "%s", e->element[0]->str);
            }
            if (argv != NULL && argl != NULL) {
                argv[3 + nack] = e->element[0]->str;
                argl[3 + nack] = e->element[0]->len;
                nack++;
            }
        }
    }
    if (nack > 0) {
        /* Acknowledged once published here: a crash before this line means a redelivery. */
        argv[0] = "XACK";
        argv[1] = l->k_stream_me;
        argv[2] = GROUP;
        for (i = 0; i < 3; i++) {
            argl[i] = strlen(argv[i]);
        }
        redisAsyncCommandArgv(l->ctx[C_CMD], ignore_reply, NULL, (int)(3 + nack), argv, argl);
    }
    if (n == 0 && l->read_from[0] != '>') {
        snprintf(l->read_from, sizeof(l->read_from), ">"); /* the backlog is done: new entries */
    }
    free(argv);
    free(argl);
    read_stream(l);
}

static void
read_stream(struct link *l)
{
    if (!l->up || l->ctx[C_RD] == NULL) {
        return;
    }
    redisAsyncCommand(l->ctx[C_RD], stream_reply, NULL,
                      "XREADGROUP GROUP %s %s COUNT " READ_COUNT " BLOCK " READ_BLOCK_MS
                      " STREAMS %s %s",
                      GROUP, l->cl->node_id, l->k_stream_me, l->read_from);
}

static void
group_created(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;

    (void)r; /* BUSYGROUP is the usual answer: the group exists */
    (void)arg;
    snprintf(l->read_from, sizeof(l->read_from), "0");
    read_stream(l);
}

struct members_arg {
    char *node;
};

static void
members_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    struct members_arg *ma = arg;
    redisReply *reply = r;

    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
        char **v = calloc(reply->elements + 1, sizeof(*v));
        size_t n = 0;
        size_t i;
        for (i = 0; v != NULL && i < reply->elements; i++) {
            if (reply->element[i]->type == REDIS_REPLY_STRING) {
                v[n++] = reply->element[i]->str;
            }
        }
        if (v != NULL) {
            routes_remote_set(l->cl->routes, ma->node, v, n);
        }
        free(v);
    }
    free(ma->node);
    free(ma);
}

static void
load_members(struct link *l, const char *node)
{
    struct members_arg *ma = calloc(1, sizeof(*ma));

    if (ma == NULL || (ma->node = strdup(node)) == NULL) {
        free(ma);
        return;
    }
    if (redisAsyncCommand(l->ctx[C_CMD], members_reply, ma, "SMEMBERS %s:routes:%s",
                          l->cl->prefix, node) != REDIS_OK) {
        free(ma->node);
        free(ma);
    }
}

/* HGETALL nodes: keep the nodes with a recent heartbeat, reload their filters. */
static void
nodes_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    struct cluster *cl = l->cl;
    redisReply *reply = r;
    char **alive;
    size_t n = 0;
    size_t i;
    double now = now_s();

    (void)arg;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return;
    }
    alive = calloc(reply->elements / 2 + 1, sizeof(*alive));
    if (alive == NULL) {
        return;
    }
    for (i = 0; i + 1 < reply->elements; i += 2) {
        redisReply *k = reply->element[i];
        redisReply *v = reply->element[i + 1];
        double seen;
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            strcmp(k->str, cl->node_id) == 0) {
            continue;
        }
        seen = strtod(v->str, NULL) / 1000.0;
        if (now - seen <= cl->node_timeout) {
            alive[n++] = k->str;
        }
    }
    routes_remote_keep(cl->routes, alive, n);
    for (i = 0; i < n; i++) {
        load_members(l, alive[i]);
    }
    cl->api->metric_set(cl->m_nodes, (int64_t)n + 1);
    free(alive);
}

static void
resync_remote(struct link *l)
{
    redisAsyncCommand(l->ctx[C_CMD], nodes_reply, NULL, "HGETALL %s", l->k_nodes);
}

/* A client id claimed by another node, on its way to the session's worker here. */
struct claim {
    struct cluster *cl;
    char id[];
};

static void
claim_found(void *arg, const struct midge_client_info *info)
{
    struct claim *c = arg;

    if (info != NULL && info->connected) {
        c->cl->api->log(c->cl->self, MIDGE_LOG_NOTICE, "client=%s connected to another node: "
                        "taken over", c->id);
        c->cl->api->client_disconnect(c->cl->self, c->id, 0x8E);
    }
    free(c);
}

/* Disconnects the client with this id if it is connected here (looked up on its worker). */
static void
claim_lookup(struct cluster *cl, const char *id)
{
    size_t n = strlen(id);
    struct claim *c = malloc(sizeof(*c) + n + 1);

    if (c == NULL) {
        return;
    }
    c->cl = cl;
    memcpy(c->id, id, n + 1);
    if (cl->api->client_find(cl->self, c->id, claim_found, c) != 0) {
        free(c);
    }
}

/*
 * Another node claimed a client id. Claims can cross, so the owner key
 * (OWNER_SCRIPT: the node of the latest connection) decides: only a node
 * that is not the owner drops its connection.
 */
static void
claim_owner(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    redisReply *reply = r;
    char *id = arg;

    const char *node = reply != NULL && reply->type == REDIS_REPLY_STRING
                           ? strchr(reply->str, ' ')
                           : NULL;

    if (node != NULL && strcmp(node + 1, l->cl->node_id) != 0) {
        claim_lookup(l->cl, id);
    }
    free(id);
}

static void
claim_check(struct link *l, const char *id)
{
    char *copy = strdup(id);

    if (copy != NULL && redisAsyncCommand(l->ctx[C_CMD], claim_owner, copy, "GET %s:owner:%s",
                                          l->cl->prefix, copy) != REDIS_OK) {
        free(copy);
    }
}

/* Pub/sub: route changes of other nodes, and QoS 0 messages for this one. */
static void
sub_message(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    struct cluster *cl = l->cl;
    redisReply *reply = r;
    redisReply *ch;
    redisReply *body;
    const char *nl;

    (void)arg;
    if (!l->up || l->ctx[C_CMD] == NULL) {
        return; /* closing: the resync after reconnecting covers what is missed */
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        return;
    }
    ch = reply->element[1];
    body = reply->element[2];
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        /*
         * Listening to route changes now: read the other nodes only after this,
         * so a node announced before is in the hash and one announced after
         * arrives on the channel (no window in which a node is missed).
         */
        if (strcmp(ch->str, l->ch_routes) == 0) {
            resync_remote(l);
        }
        return;
    }
    if (strcmp(reply->element[0]->str, "message") != 0 || body->type != REDIS_REPLY_STRING) {
        return;
    }
    if (strcmp(ch->str, l->ch_q0_me) == 0 || strcmp(ch->str, l->ch_retained) == 0) {
        inject_bundle(l, body->str, body->len, 0);
        return;
    }
    if (strcmp(ch->str, l->ch_claims) == 0) {
        /* One connection per client id across the cluster: the older one goes [MQTT-3.1.4-3]. */
        nl = memchr(body->str, '\n', body->len);
        if (nl != NULL && (size_t)(nl - body->str) == strlen(cl->node_id) &&
            memcmp(body->str, cl->node_id, (size_t)(nl - body->str)) == 0) {
            return; /* our own claim */
        }
        if (nl != NULL && nl[1] != 0) {
            claim_check(l, nl + 1);
        }
        return;
    }
    if (strcmp(ch->str, l->ch_routes) != 0 || body->len < 2) {
        return;
    }
    nl = memchr(body->str, '\n', body->len);
    if (body->str[0] == '*') {
        /* A node (re)started and announced all its routes: read them. */
        if (strcmp(body->str + 1, cl->node_id) != 0) {
            load_members(l, body->str + 1);
        }
        return;
    }
    if (nl == NULL) {
        return;
    }
    {
        size_t nlen = (size_t)(nl - body->str) - 1;
        char node[256];
        if (nlen == 0 || nlen >= sizeof(node)) {
            return;
        }
        memcpy(node, body->str + 1, nlen);
        node[nlen] = 0;
        if (strcmp(node, cl->node_id) == 0) {
            return;
        }
        if (body->str[0] == '+') {
            routes_remote_add(cl->routes, node, nl + 1);
        } else if (body->str[0] == '-') {
            routes_remote_remove(cl->routes, node, nl + 1);
        }
    }
    cl->api->metric_set(cl->m_routes_remote, (int64_t)routes_remote_filters(cl->routes));
}

static void
retained_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    redisReply *reply = r;
    size_t i;

    (void)arg;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return;
    }
    for (i = 1; i < reply->elements; i += 2) {
        if (reply->element[i]->type == REDIS_REPLY_STRING) {
            inject_bundle(l, reply->element[i]->str, reply->element[i]->len, 1);
        }
    }
    l->cl->api->log(l->cl->self, MIDGE_LOG_INFO, "loaded %zu retained messages from redis",
                    reply->elements / 2);
}

/* ---- connection state ---- */

static void
heartbeat_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;

    (void)arg;
    if (r != NULL && l->hb_sent > 0) {
        l->cl->api->metric_observe(l->cl->m_latency, now_s() - l->hb_sent);
        l->hb_sent = 0;
    }
}

static void
heartbeat(struct link *l)
{
    l->hb_sent = now_s();
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
    redisAsyncCommand(ac, ignore_reply, NULL, "DEL %s", l->k_routes_me);
    for (i = 0; i < n; i++) {
        redisAsyncCommand(ac, ignore_reply, NULL, "SADD %s %s", l->k_routes_me, filters[i]);
    }
    routes_list_free(filters, n);
    heartbeat(l);
    redisAsyncCommand(ac, ignore_reply, NULL, "PUBLISH %s *%s", l->ch_routes, cl->node_id);

    redisAsyncCommand(l->ctx[C_SUB], sub_message, NULL, "SUBSCRIBE %s %s %s %s", l->ch_routes,
                      l->ch_q0_me, l->ch_claims, l->ch_retained);
    redisAsyncCommand(ac, group_created, NULL, "XGROUP CREATE %s %s 0 MKSTREAM", l->k_stream_me,
                      GROUP);
    if (!l->ever_up) {
        redisAsyncCommand(ac, retained_reply, NULL, "HGETALL %s", l->k_retained);
        l->ever_up = 1;
    }

    /* What waited during the outage, in order. */
    j = l->buf_head;
    l->buf_head = NULL;
    l->buf_tail = &l->buf_head;
    l->buf_len = 0;
    cl->api->metric_set(cl->m_buffered, 0);
    while (j != NULL) {
        struct job *next = j->next;
        j->next = NULL;
        job_start(l);
        send_forward(l, j);
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
        resync_remote(l);
    }
    cl->api->metric_set(cl->m_routes_remote, (int64_t)routes_remote_filters(cl->routes));
}

/*
 * The messages for one target node taken in one wake: one PUBLISH (QoS 0)
 * or one XADD (QoS 1/2) instead of one per message, which is what lets a
 * single Redis carry tens of thousands of messages a second. Owned by its
 * command until the reply.
 */
struct bundle {
    struct bundle *next;
    char *target;
    int qos0;
    char *buf;           /* frames (wire.h), owned */
    size_t len;
    size_t cap;
    struct job **jobs;   /* each holds one `outstanding` count for this bundle */
    size_t njobs;
    size_t jcap;
};

static void
bundle_free(struct bundle *b)
{
    free(b->target);
    free(b->buf);
    free(b->jobs);
    free(b);
}

static void
bundle_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    struct bundle *b = arg;
    redisReply *reply = r;
    size_t i;

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        l->cl->api->log(l->cl->self, MIDGE_LOG_WARNING, "redis refused a forward to %s: %s",
                        b->target, reply->str);
    }
    for (i = 0; i < b->njobs; i++) {
        struct job *j = b->jobs[i];
        if (reply == NULL) {
            j->failed = 2;
        } else if (reply->type == REDIS_REPLY_ERROR && !j->failed) {
            j->failed = 1;
        }
        forward_settle(l, j);
    }
    bundle_free(b);
}

static void
bundle_send(struct link *l, struct bundle *b)
{
    struct cluster *cl = l->cl;
    int rc;

    if (b->qos0) {
        rc = redisAsyncCommand(l->ctx[C_CMD], bundle_reply, b, "PUBLISH %s:ch:q0:%s %b",
                               cl->prefix, b->target, b->buf, b->len);
    } else {
        rc = redisAsyncCommand(l->ctx[C_CMD], bundle_reply, b,
                               "XADD %s:stream:%s MAXLEN ~ %ld * m %b", cl->prefix, b->target,
                               cl->stream_maxlen, b->buf, b->len);
    }
    if (rc != REDIS_OK) {
        size_t i;
        for (i = 0; i < b->njobs; i++) {
            b->jobs[i]->failed = 2;
            forward_settle(l, b->jobs[i]);
        }
        bundle_free(b);
    }
}

/* Adds j's frame to the bundle of each of its targets. 0, or -1 when out of memory. */
static int
bundle_add(struct link *l, struct bundle **list, struct job *j)
{
    size_t t;

    for (t = 0; t < j->ntargets; t++) {
        struct bundle *b;
        int qos0 = j->qos == 0;
        for (b = *list; b != NULL; b = b->next) {
            if (b->qos0 == qos0 && strcmp(b->target, j->targets[t]) == 0) {
                break;
            }
        }
        if (b == NULL) {
            if ((b = calloc(1, sizeof(*b))) == NULL || (b->target = strdup(j->targets[t])) == NULL) {
                free(b);
                return -1;
            }
            b->qos0 = qos0;
            b->next = *list;
            *list = b;
        }
        if (b->len + j->blob_len > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            char *nb;
            while (cap < b->len + j->blob_len) {
                cap *= 2;
            }
            if ((nb = realloc(b->buf, cap)) == NULL) {
                return -1;
            }
            b->buf = nb;
            b->cap = cap;
        }
        if (b->njobs == b->jcap) {
            size_t c = b->jcap ? b->jcap * 2 : 64;
            struct job **nj = realloc(b->jobs, c * sizeof(*nj));
            if (nj == NULL) {
                return -1;
            }
            b->jobs = nj;
            b->jcap = c;
        }
        memcpy(b->buf + b->len, j->blob, j->blob_len);
        b->len += j->blob_len;
        b->jobs[b->njobs++] = j;
        j->outstanding++;
        if (b->len >= BUNDLE_BYTES) {
            /* Full: sent now; the next message for this target starts a new one. */
            struct bundle **p = list;
            while (*p != b) {
                p = &(*p)->next;
            }
            *p = b->next;
            bundle_send(l, b);
        }
    }
    return 0;
}

/* Takes the jobs that fit in the in-flight bound and runs them, bundling plain forwards. */
static void
drain_queue(struct link *l)
{
    struct job *j;
    struct job **tailp;
    struct job *rest;
    struct bundle *bundles = NULL;
    struct job **held = NULL;
    size_t nheld = 0;
    size_t budget = SIZE_MAX;
    size_t i;

    if (l->up) {
        budget = l->inflight < INFLIGHT_MAX ? INFLIGHT_MAX - l->inflight : 0;
    }
    if (budget == 0) {
        return; /* job_end wakes us when there is room */
    }
    pthread_mutex_lock(&l->lock);
    j = l->in_head;
    tailp = &l->in_head;
    for (i = 0; *tailp != NULL && i < budget; i++) {
        tailp = &(*tailp)->next;
    }
    rest = *tailp;
    *tailp = NULL;
    l->in_head = rest;
    if (rest == NULL) {
        l->in_tail = &l->in_head;
    }
    l->in_len -= i;
    pthread_mutex_unlock(&l->lock);
    if (l->up && (held = malloc(i * sizeof(*held) + 1)) == NULL) {
        l->cl->api->log(l->cl->self, MIDGE_LOG_ERROR, "out of memory: forwards sent one by one");
    }
    while (j != NULL) {
        struct job *next = j->next;
        j->next = NULL;
        if (held != NULL && j->kind == JOB_FORWARD && j->topic == NULL && l->up) {
            job_start(l);
            j->failed = 0;
            j->outstanding = 1; /* the hold, dropped below once every bundle is sent */
            if (bundle_add(l, &bundles, j) < 0) {
                j->failed = 2; /* out of memory: buffered for later by forward_settle */
            }
            held[nheld++] = j;
        } else {
            run_job(l, j);
        }
        j = next;
    }
    while (bundles != NULL) {
        struct bundle *b = bundles;
        bundles = b->next;
        bundle_send(l, b);
    }
    for (i = 0; i < nheld; i++) {
        forward_settle(l, held[i]);
    }
    free(held);
}

/* Jobs from the workers, or the stop request. */
static void
wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct link *l = w->data;
    int stop;

    (void)revents;
    drain_queue(l);
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
        complete(l, j, MIDGE_DENY, 0x8B); /* server shutting down: not acknowledged as taken */
        job_free(j);
        j = next;
    }
}

void
link_free(struct link *l)
{
    if (l == NULL) {
        return;
    }
    if (l->running) {
        pthread_mutex_lock(&l->lock);
        l->stop = 1;
        pthread_mutex_unlock(&l->lock);
        ev_async_send(l->loop, &l->wake);
        pthread_join(l->thread, NULL);
        l->running = 0;
    }
    refuse_all(l, l->in_head);
    refuse_all(l, l->buf_head);
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
