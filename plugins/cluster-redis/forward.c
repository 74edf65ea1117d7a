/*
 * Jobs to Redis (link_int.h): forwards bundled per target node, one
 * PUBLISH (QoS 0) or XADD (QoS 1/2) per bundle; the publisher's held
 * acknowledgement released once its XADDs are answered (hold numbers are
 * released as a prefix: acks leave in order); the outage buffer; route
 * announcements and claims.
 */
#include "link_int.h"

#include "routes.h"

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
void
fwd_complete(struct link *l, struct job *j, int verdict, uint8_t reason)
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
void
fwd_buffer(struct link *l, struct job *j)
{
    struct cluster *cl = l->cl;

    if (j->qos == 0) {
        cl->api->metric_add(cl->m_dropped, 1);
        job_free(j);
        return;
    }
    if (l->buf_len >= cl->buffer_max) {
        /* MQTT 5 publishers are told (0x97); MQTT 3 ones are acknowledged and it is dropped. */
        fwd_complete(l, j, MIDGE_DENY, 0x97);
        cl->api->metric_add(cl->m_dropped, 1);
        job_free(j);
        return;
    }
    fwd_complete(l, j, MIDGE_DEFER, 0);
    j->next = NULL;
    j->outstanding = 0;
    j->failed = 0;
    *l->buf_tail = j;
    l->buf_tail = &j->next;
    l->buf_len++;
    cl->api->metric_set(cl->m_buffered, (int64_t)l->buf_len);
}

static void forward_settle(struct link *l, struct job *j);

/* A forward goes to Redis / is finished (sent, dropped or buffered): the in-flight bound. */
void
fwd_job_start(struct link *l)
{
    l->inflight++;
}

static void
fwd_job_end(struct link *l)
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
        fwd_job_end(l);
    }
    if (!j->failed) {
        l->cl->api->metric_add(l->cl->m_forwarded, (int64_t)j->ntargets);
        fwd_complete(l, j, MIDGE_DEFER, 0);
        job_free(j);
    } else if (j->failed == 1 && l->up && ++j->attempts < MAX_ATTEMPTS) {
        fwd_send(l, j); /* receivers drop the copies that did arrive, by id */
    } else if (j->failed == 1) {
        fwd_complete(l, j, MIDGE_DENY, 0x80);
        l->cl->api->metric_add(l->cl->m_dropped, 1);
        job_free(j);
    } else {
        fwd_buffer(l, j); /* the connection went away: sent again when Redis is back */
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

void
fwd_send(struct link *l, struct job *j)
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
        redisAsyncCommand(ac, link_ignore_reply, NULL, "PUBLISH %s %b", l->ch_retained, j->blob,
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

void
link_ignore_reply(redisAsyncContext *ac, void *r, void *arg)
{
    (void)ac;
    (void)r;
    (void)arg;
}

static void
announce(struct link *l, int add, const char *filter)
{
    redisAsyncContext *ac = l->ctx[C_CMD];

    redisAsyncCommand(ac, link_ignore_reply, NULL, add ? "SADD %s %s" : "SREM %s %s",
                      l->k_routes_me, filter);
    redisAsyncCommand(ac, link_ignore_reply, NULL, "PUBLISH %s %s%s\n%s", l->ch_routes,
                      add ? "+" : "-", l->cl->node_id, filter);
}

void
fwd_run(struct link *l, struct job *j)
{
    if (j->kind == JOB_FORWARD) {
        if (l->up) {
            fwd_job_start(l);
            fwd_send(l, j);
        } else {
            fwd_buffer(l, j);
        }
        return;
    }
    if (j->kind == JOB_CLAIM) {
        if (l->up) {
            /* The owner key keeps the latest connection's node (see claim_owner). */
            redisAsyncCommand(l->ctx[C_CMD], link_ignore_reply, NULL, "EVAL %s 1 %s:owner:%s %" PRIu64
                              " %s", OWNER_SCRIPT, l->cl->prefix, j->filter, j->when,
                              l->cl->node_id);
            redisAsyncCommand(l->ctx[C_CMD], link_ignore_reply, NULL, "PUBLISH %s %s\n%s%s",
                              l->ch_claims, l->cl->node_id, j->resume ? "r" : "c", j->filter);
        }
        job_free(j);
        return;
    }
    if (j->kind == JOB_HANDOVER) {
        /* Into the new node's stream: kept until it read and applied it (XACK). */
        if (!l->up || redisAsyncCommand(l->ctx[C_CMD], link_ignore_reply, NULL,
                                        "XADD %s:stream:%s MAXLEN ~ %ld * h %b", l->cl->prefix,
                                        j->filter, l->cl->stream_maxlen, j->blob,
                                        j->blob_len) != REDIS_OK) {
            l->cl->api->log(l->cl->self, MIDGE_LOG_ERROR, "redis unavailable: a session hand-over "
                            "to %s is lost", j->filter);
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
void
fwd_drain(struct link *l)
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
            fwd_job_start(l);
            j->failed = 0;
            j->outstanding = 1; /* the hold, dropped below once every bundle is sent */
            if (bundle_add(l, &bundles, j) < 0) {
                j->failed = 2; /* out of memory: buffered for later by forward_settle */
            }
            held[nheld++] = j;
        } else {
            fwd_run(l, j);
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
