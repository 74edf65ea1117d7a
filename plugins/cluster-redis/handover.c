/* Session takeover across nodes: the hand-over entry (handover.h). */
#include "handover.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "routes.h"
#include "wire.h"

/* ---- the old node: list, end, send ---- */

/*
 * One session on its way out. Created by handover_take, filled on the
 * session's worker by take_entry, freed by take_done (or handed to the
 * link as a job's blob).
 */
struct take {
    struct cluster *cl;
    char *owner;       /* the node the session goes to */
    int resume;        /* the client asked to resume it (clean start 0) */
    char *buf;         /* the entry's value (handover.h) */
    size_t len;
    size_t cap;
    int oom;
    unsigned subs;
    unsigned msgs;
    char id[];
};

static int
put(struct take *t, const void *p, size_t n)
{
    if (t->oom) {
        return -1;
    }
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        char *b;
        while (cap < t->len + n) {
            cap *= 2;
        }
        if ((b = realloc(t->buf, cap)) == NULL) {
            t->oom = 1;
            return -1;
        }
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
    return 0;
}

static int
put16(struct take *t, size_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return put(t, b, 2);
}

static int
put32(struct take *t, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return put(t, b, 4);
}

/* One subscription or message of the session. [the session's worker] */
static void
take_entry(void *arg, const struct midge_session_entry *e)
{
    struct take *t = arg;
    const struct midge_api *api = t->cl->api;

    if (e->kind == MIDGE_ENTRY_SUBSCRIPTION) {
        size_t n = strlen(e->filter);
        uint8_t opt = (uint8_t)e->options;
        if (n > 0xffff) {
            return;
        }
        put(t, "S", 1);
        put(t, &opt, 1);
        put32(t, e->sub_id);
        put16(t, n);
        put(t, e->filter, n);
        t->subs++;
    } else if (e->kind == MIDGE_ENTRY_MESSAGE) {
        uint32_t plen = 0;
        const void *payload = api->message_payload(e->msg, &plen);
        size_t flen = 0;
        uint32_t prlen = 0;
        const void *props = api->message_properties(e->msg, &prlen);
        char *frame = wire_encode("handover", api->message_topic(e->msg), payload, plen, e->qos,
                                  e->retain, props, prlen, api->message_expiry(e->msg), &flen);
        if (frame == NULL) {
            t->oom = 1;
            return;
        }
        put(t, "M", 1);
        put(t, frame, flen);
        free(frame);
        t->msgs++;
    }
}

static void
take_free(struct take *t)
{
    free(t->owner);
    free(t->buf);
    free(t);
}

/* The session was listed and ended here. [the session's worker] */
static void
take_done(void *arg, int found)
{
    struct take *t = arg;
    struct cluster *cl = t->cl;
    struct job *j;

    if (found != 1) { /* no session here, or a newer connection here that stays */
        take_free(t);
        return;
    }
    if (!t->resume || (t->subs == 0 && t->msgs == 0)) {
        cl->api->log(cl->self, MIDGE_LOG_NOTICE, "client=%s connected to node %s: session "
                     "ended here%s", t->id, t->owner, t->resume ? " (it was empty)" : "");
        take_free(t);
        return;
    }
    if (t->oom || (j = calloc(1, sizeof(*j))) == NULL) {
        cl->api->log(cl->self, MIDGE_LOG_ERROR, "client=%s connected to node %s: out of "
                     "memory, its session is not handed over", t->id, t->owner);
        cl->api->metric_add(cl->m_dropped, t->msgs);
        take_free(t);
        return;
    }
    j->kind = JOB_HANDOVER;
    j->filter = t->owner;
    j->blob = t->buf;
    j->blob_len = t->len;
    t->owner = NULL;
    t->buf = NULL;
    cl->api->log(cl->self, MIDGE_LOG_NOTICE, "client=%s connected to node %s: session handed "
                 "over (%u subscriptions, %u messages)", t->id, j->filter, t->subs, t->msgs);
    if (link_submit(cl->link, j, NULL) < 0) {
        cl->api->log(cl->self, MIDGE_LOG_ERROR, "client=%s: the redis queue is full, its "
                     "session is not handed over", t->id);
        cl->api->metric_add(cl->m_dropped, t->msgs);
        job_free(j);
    }
    take_free(t);
}

void
handover_take(struct cluster *cl, const char *id, const char *owner, int resume,
              uint64_t claimed_at)
{
    size_t n = strlen(id);
    struct take *t;
    int flags = MIDGE_SESSION_END;

    if (!cl->can_take) {
        /* An older broker: only the connection can be dropped. */
        cl->api->client_disconnect(cl->self, id, 0x8E);
        return;
    }
    t = calloc(1, sizeof(*t) + n + 1);
    if (t == NULL || (t->owner = strdup(owner)) == NULL) {
        free(t);
        return;
    }
    t->cl = cl;
    t->resume = resume;
    memcpy(t->id, id, n + 1);
    put(t, "H", 1);
    put16(t, n);
    put(t, id, n);
    if (!resume) {
        flags |= MIDGE_SESSION_END_WILL; /* a clean start ends the old session: its will goes */
    }
    /* On the session's worker: a connection here newer than the claim stays (claims cross). */
    if (cl->api->client_session_list(cl->self, t->id, flags, claimed_at,
                                     resume ? take_entry : NULL,
                                     take_done, t) != 0) {
        take_free(t);
    }
}

/* ---- the new node: apply ---- */

/* A subscription handed over, on its way to the session's worker. */
struct sub_added {
    struct cluster *cl;
    char *filter;
    char id[];
};

/* The subscription is in the session: announce its filter like a client's own. [worker] */
static void
sub_added(void *arg, int result)
{
    struct sub_added *a = arg;

    if (result == 0) {
        cluster_route_added(a->cl, a->id, a->filter);
    } else {
        a->cl->api->log(a->cl->self, MIDGE_LOG_WARNING, "client=%s: handed-over subscription "
                        "%s not added (%s)", a->id, a->filter,
                        result == -MIDGE_ENOENT ? "the session is gone" : "out of memory");
    }
    free(a->filter);
    free(a);
}

static size_t
get16(const uint8_t *p)
{
    return ((size_t)p[0] << 8) | p[1];
}

static uint32_t
get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void
apply_sub(struct cluster *cl, const char *id, const uint8_t *p, size_t flen)
{
    struct midge_session_entry e;
    size_t n = strlen(id);
    struct sub_added *a = calloc(1, sizeof(*a) + n + 1);

    if (a == NULL || (a->filter = strndup((const char *)p + 7, flen)) == NULL) {
        free(a);
        return;
    }
    a->cl = cl;
    memcpy(a->id, id, n + 1);
    memset(&e, 0, sizeof(e));
    e.size = sizeof(e);
    e.kind = MIDGE_ENTRY_SUBSCRIPTION;
    e.filter = a->filter;
    e.options = p[0];
    e.sub_id = get32(p + 1);
    if (cl->api->client_session_add(cl->self, id, &e, sub_added, a) != 0) {
        cl->api->log(cl->self, MIDGE_LOG_WARNING, "client=%s: handed-over subscription %s "
                     "refused", id, a->filter);
        free(a->filter);
        free(a);
    }
}

static void
apply_msg(struct cluster *cl, const char *id, const char *blob, size_t len)
{
    struct wire_msg m;
    struct midge_session_entry e;
    const midge_message *msg;
    char *topic;

    if (wire_decode(blob, len, &m) != 0 || (topic = strndup(m.topic, m.topic_len)) == NULL) {
        return;
    }
    msg = cl->api->message_new(cl->self, topic, m.payload, (uint32_t)m.payload_len, m.qos,
                               m.retain, m.props, m.props_len, m.expiry, 0);
    free(topic);
    if (msg == NULL) {
        cl->api->metric_add(cl->m_dropped, 1);
        return;
    }
    memset(&e, 0, sizeof(e));
    e.size = sizeof(e);
    e.kind = MIDGE_ENTRY_MESSAGE;
    e.msg = msg;
    e.qos = m.qos;
    e.retain = m.retain;
    if (cl->api->client_session_add(cl->self, id, &e, NULL, NULL) != 0) {
        cl->api->metric_add(cl->m_dropped, 1);
    }
    cl->api->message_unref(msg);
}

void
handover_apply(struct cluster *cl, const char *buf, size_t len)
{
    const uint8_t *p = (const uint8_t *)buf;
    size_t pos;
    size_t at;
    size_t n;
    const char *blob;
    size_t blen;
    char *id;
    unsigned subs = 0;
    unsigned msgs = 0;

    if (!cl->can_take || len < 3 || p[0] != 'H' || (n = get16(p + 1)) == 0 || n > len - 3) {
        cl->api->log(cl->self, MIDGE_LOG_WARNING, "dropped an unreadable session hand-over "
                     "(%zu bytes)", len);
        return;
    }
    if ((id = strndup(buf + 3, n)) == NULL) {
        return;
    }
    pos = 3 + n;
    /* Calls for one client id run in order on its worker: subscriptions, then messages in order. */
    while (pos < len) {
        if (p[pos] == 'S' && len - pos >= 8 && get16(p + pos + 6) <= len - pos - 8) {
            size_t flen = get16(p + pos + 6);
            apply_sub(cl, id, p + pos + 1, flen);
            pos += 8 + flen;
            subs++;
        } else if (p[pos] == 'M' && (at = pos + 1, wire_next(buf, len, &at, &blob, &blen)) == 1) {
            apply_msg(cl, id, blob, blen);
            pos = at;
            msgs++;
        } else {
            cl->api->log(cl->self, MIDGE_LOG_WARNING, "client=%s: dropped the unreadable rest of "
                         "a session hand-over (%zu of %zu bytes)", id, len - pos, len);
            break;
        }
    }
    cl->api->log(cl->self, MIDGE_LOG_NOTICE, "client=%s: session taken over from another node "
                 "(%u subscriptions, %u messages)", id, subs, msgs);
    free(id);
}
