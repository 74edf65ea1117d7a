/* SUBSCRIBE and UNSUBSCRIBE: trie updates, SUBACK/UNSUBACK, retained delivery. */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "msg.h"
#include "persist.h"
#include "plugin.h"
#include "proto.h"
#include "retain.h"
#include "session.h"
#include "subs.h"
#include "topic.h"
#include "worker.h"

/* Retained messages found for one filter, delivered after the SUBACK. */
struct pending_retained {
    struct msg **msgs;
    size_t n;
    uint8_t qos;
};

/*
 * One SUBSCRIBE on its way through its filters. Allocated per SUBSCRIBE;
 * while an ACL decision about a filter is pending it is owned by that
 * decision (h.raw holds a copy of the packet), then by sub_resume.
 */
struct sub_hold {
    struct acl_hold h;
    uint8_t *rcs;                 /* reason codes so far [count] */
    struct pending_retained *ret; /* retained messages per filter [count] */
    uint32_t count;
    uint32_t pos;                 /* decoder position of the next filter to handle */
    uint32_t i;                   /* filters handled */
    uint64_t mark;                /* persistence: the thread's last event before it; 0 after a wait */
};

/*
 * What follows the subscriptions: the SUBACK, the `subscribed` events, the
 * retained messages. With persistence it waits until the subscriptions are
 * durable (persist_after). Owned by that wait, then by tail_run.
 */
struct sub_tail {
    uint16_t packet_id;
    uint32_t sub_id;
    uint32_t n;                   /* filters */
    uint8_t *rcs;                 /* [n] */
    char **filters;               /* [n] granted filters for the events, or NULL */
    struct pending_retained *ret; /* [n] */
};

static void
tail_free(void *arg)
{
    struct sub_tail *t = arg;
    uint32_t k;

    for (k = 0; k < t->n; k++) {
        size_t j;
        for (j = 0; t->ret != NULL && j < t->ret[k].n; j++) {
            msg_unref(t->ret[k].msgs[j]);
        }
        if (t->ret != NULL) {
            free(t->ret[k].msgs);
        }
        if (t->filters != NULL) {
            free(t->filters[k]);
        }
    }
    free(t->ret);
    free(t->filters);
    free(t->rcs);
    free(t);
}

/* SUBACK [MQTT-3.8.4], then events, then retained messages (RETAIN 1 [MQTT-3.3.1-8]). */
static void
tail_run(struct conn *c, void *arg)
{
    struct sub_tail *t = arg;
    struct session *s = c->session;
    struct mqtt_packet ack;
    uint32_t k;

    memset(&ack, 0, sizeof(ack));
    ack.type = MQTT_SUBACK;
    ack.u.suback.packet_id = t->packet_id;
    ack.u.suback.rcs.ptr = t->rcs;
    ack.u.suback.rcs.len = t->n;
    if (conn_send(c, &ack) < 0) {
        proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
        tail_free(t);
        return;
    }
    for (k = 0; t->filters != NULL && k < t->n; k++) {
        if (t->filters[k] != NULL && c->state == CONN_ACTIVE) {
            plugin_subscribed(c, t->filters[k], t->rcs[k]);
        }
    }
    for (k = 0; k < t->n && s != NULL; k++) {
        size_t j;
        for (j = 0; j < t->ret[k].n; j++) {
            struct msg *m = t->ret[k].msgs[j];
            uint8_t q = m->qos < t->ret[k].qos ? m->qos : t->ret[k].qos;
            if (c->state == CONN_ACTIVE) {
                session_deliver(s, m, q, 1, t->sub_id, NULL, 0);
            }
        }
    }
    tail_free(t);
}

static void
sub_release(struct conn *c, struct acl_hold *h)
{
    struct sub_hold *sh = (struct sub_hold *)h;
    uint32_t k;

    (void)c; /* filters granted before the wait stay: the server may subscribe before SUBACK */
    if (sh->ret != NULL) {
        for (k = 0; k < sh->count; k++) {
            size_t j;
            for (j = 0; j < sh->ret[k].n; j++) {
                msg_unref(sh->ret[k].msgs[j]);
            }
            free(sh->ret[k].msgs);
        }
    }
    free(sh->ret);
    free(sh->rcs);
    free(h->raw);
    free(sh);
}

static void sub_resume(struct conn *c, struct acl_hold *h, size_t index, int verdict,
                       uint8_t reason);

/*
 * Handles the filters of sp from sh->pos on, then sends the SUBACK, the
 * `subscribed` events and the retained messages [MQTT-3.8.4]. When
 * `resumed`, the first filter's ACL chain goes on from chain position
 * index + 1 with `verdict` so far. Returns PROTO_WAIT (an ACL decision is
 * pending: sh is held, with a copy of raw) or PROTO_OK / PROTO_CLOSE (sh
 * freed).
 */
static int
subscribe_run(struct conn *c, const struct mqtt_subscribe *sp, struct sub_hold *sh,
              const uint8_t *raw, size_t raw_len, int resumed, size_t index, int verdict,
              uint8_t reason)
{
    const struct config *cfg = broker_cfg();
    struct session *s = c->session;
    struct mqtt_sub_entry e;
    uint8_t *rcs = sh->rcs;
    struct pending_retained *ret = sh->ret;
    uint32_t pos;
    uint32_t sub_id = 0;
    double now = ev_now(c->w->loop);
    int result = PROTO_OK;
    size_t k;

    if (c->version == MQTT_V5 && (sp->props.present & MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID))) {
        sub_id = sp->props.sub_id;
    }
    for (;;) {
        uint32_t here = sh->pos;
        const char *f;
        size_t flen;
        const char *group;
        const char *inner;
        size_t glen;
        size_t ilen;
        int shared;
        uint8_t qos;
        uint8_t opts;
        int existed = 0;
        uint32_t i = sh->i;

        if (!mqtt_subscribe_next(sp, &sh->pos, &e)) {
            break;
        }
        f = (const char *)e.filter.ptr;
        flen = e.filter.len;
        shared = topic_share_split(f, flen, &group, &glen, &inner, &ilen);
        qos = e.qos < cfg->max_qos ? e.qos : (uint8_t)cfg->max_qos;
        if (!topic_filter_valid(f, flen) || shared < 0) {
            rcs[sh->i++] = c->version == MQTT_V5 ? MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
            continue;
        }
        if (shared == 1 && e.no_local) {
            /* [MQTT-3.8.3-4] */
            result = proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "No Local on a shared subscription");
            goto out;
        }
        if (plugins_acl_active) {
            uint8_t r = reason;
            int v = resumed ? verdict : MIDGE_DEFER;
            if (v == MIDGE_DEFER) {
                v = plugin_acl_wait(c, MIDGE_ACL_SUBSCRIBE, f, flen, qos, 0, NULL, 0,
                                    resumed ? index + 1 : 0, &r);
            }
            resumed = 0;
            if (v == PLUGIN_PENDING) {
                /* The rest of the SUBSCRIBE (and the client's next packets) wait for it. */
                sh->pos = here;
                if (sh->h.raw == NULL) {
                    sh->h.raw = malloc(raw_len);
                    if (sh->h.raw == NULL) {
                        result = proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
                        goto out;
                    }
                    memcpy(sh->h.raw, raw, raw_len);
                    sh->h.raw_len = raw_len;
                }
                sh->h.action = MIDGE_ACL_SUBSCRIBE;
                plugin_acl_hold(c, &sh->h);
                return PROTO_WAIT;
            }
            if (v == PLUGIN_DENY) {
                rcs[sh->i++] = c->version == MQTT_V5 ? (r >= 0x80 ? r : MQTT_RC_NOT_AUTHORIZED)
                                                     : 0x80;
                continue;
            }
        }
        opts = (uint8_t)(qos | (e.no_local ? SUBOPT_NO_LOCAL : 0) |
                         (e.retain_as_published ? SUBOPT_RAP : 0) | (e.retain_handling << 4));
        if (subs_add(f, flen, s->sub, opts, sub_id, &existed) < 0 ||
            session_sub_add(s, f, flen, opts, sub_id) < 0) {
            rcs[sh->i++] = 0x80;
            continue;
        }
        rcs[i] = qos;
        if (log_enabled(MLOG_SUBSCRIBE)) {
            midge_log(MLOG_SUBSCRIBE, "subscribe client=%s topic=%.*s qos=%u", s->client_id,
                      (int)flen, f, qos);
        }
        /* Retained messages: never for shared subscriptions [MQTT-3.8.4-?], per Retain Handling. */
        if (shared == 0 && (e.retain_handling == 0 || (e.retain_handling == 1 && !existed))) {
            retain_match(f, flen, now, &ret[i].msgs, &ret[i].n);
            ret[i].qos = qos;
        }
        sh->i++;
    }
    {
        struct sub_tail *t = calloc(1, sizeof(*t));
        uint64_t need = 0;
        if (t == NULL || (t->rcs = malloc(sh->i ? sh->i : 1)) == NULL) {
            free(t);
            result = proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
            goto out;
        }
        t->packet_id = sp->packet_id;
        t->sub_id = sub_id;
        t->n = sh->i;
        memcpy(t->rcs, rcs, sh->i);
        t->ret = ret; /* moves: sub_release frees no retained list now */
        sh->ret = NULL;
        if (plugins_sub_events_active && (t->filters = calloc(t->n ? t->n : 1, sizeof(char *)))) {
            pos = 0;
            for (k = 0; k < t->n && mqtt_subscribe_next(sp, &pos, &e); k++) {
                if (rcs[k] < 0x80) {
                    t->filters[k] = strndup((const char *)e.filter.ptr, e.filter.len);
                }
            }
        }
        if (persist_active && persist_thread_mark() != sh->mark) {
            need = persist_thread_mark(); /* the subscriptions just stored */
        }
        if (persist_after(c, need, tail_run, tail_free, t) < 0) {
            tail_free(t);
            result = proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
        }
    }
out:
    sub_release(NULL, &sh->h); /* last: sp may point into sh->h.raw */
    return result;
}

/* A decision about a held SUBSCRIBE's filter arrived: go on with it, then the held input. */
static void
sub_resume(struct conn *c, struct acl_hold *h, size_t index, int verdict, uint8_t reason)
{
    struct mqtt_packet pk;
    uint8_t rc = 0;

    memset(&pk, 0, sizeof(pk));
    if (mqtt_decode(h->raw, h->raw_len, c->version, &pk, &rc) != MQTT_OK) {
        sub_release(c, h);
        conn_close(c, MQTT_RC_UNSPECIFIED, 1, "stored SUBSCRIBE unreadable");
        return;
    }
    ((struct sub_hold *)h)->mark = 0; /* others' packets ran meanwhile: wait for the latest */
    if (subscribe_run(c, &pk.u.subscribe, (struct sub_hold *)h, h->raw, h->raw_len, 1, index,
                      verdict, reason) == PROTO_OK) {
        conn_continue(c);
    }
}

/* Handles SUBSCRIBE [MQTT-3.8.4]; an ACL decision may make it wait (PROTO_WAIT). */
int
proto_subscribe(struct conn *c, const struct mqtt_subscribe *sp, const uint8_t *raw,
                size_t raw_len)
{
    struct sub_hold *sh = calloc(1, sizeof(*sh));

    if (sh != NULL) {
        sh->h.resume = sub_resume;
        sh->h.release = sub_release;
        sh->count = sp->count;
        sh->mark = persist_active ? persist_thread_mark() : 0;
        sh->rcs = malloc(sp->count);
        sh->ret = calloc(sp->count, sizeof(*sh->ret));
    }
    if (sh == NULL || sh->rcs == NULL || sh->ret == NULL) {
        if (sh != NULL) {
            sub_release(NULL, &sh->h);
        }
        return proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
    }
    return subscribe_run(c, sp, sh, raw, raw_len, 0, 0, MIDGE_DEFER, 0);
}

/* Handles UNSUBSCRIBE [MQTT-3.10.4]. */
int
proto_unsubscribe(struct conn *c, const struct mqtt_unsubscribe *u)
{
    struct session *s = c->session;
    struct mqtt_packet ack;
    struct mqtt_bytes f;
    uint8_t *rcs = malloc(u->count ? u->count : 1);
    uint32_t pos = 0;
    uint32_t i = 0;
    int r;

    if (rcs == NULL) {
        return proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
    }
    while (mqtt_unsubscribe_next(u, &pos, &f)) {
        const char *fs = (const char *)f.ptr;
        if (!topic_filter_valid(fs, f.len)) {
            rcs[i++] = MQTT_RC_TOPIC_FILTER_INVALID;
            continue;
        }
        session_sub_remove(s, fs, f.len);
        rcs[i++] = subs_remove(fs, f.len, s->sub) ? 0 : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
        if (rcs[i - 1] == 0 && plugins_sub_events_active) {
            char *copy = strndup(fs, f.len);
            if (copy != NULL) {
                plugin_unsubscribed(c, copy);
                free(copy);
            }
        }
        if (log_enabled(MLOG_UNSUBSCRIBE)) {
            midge_log(MLOG_UNSUBSCRIBE, "unsubscribe client=%s topic=%.*s", s->client_id,
                      (int)f.len, fs);
        }
    }
    memset(&ack, 0, sizeof(ack));
    ack.type = MQTT_UNSUBACK;
    ack.u.suback.packet_id = u->packet_id;
    ack.u.suback.rcs.ptr = rcs;
    ack.u.suback.rcs.len = i;
    r = conn_send(c, &ack);
    free(rcs);
    return r < 0 ? proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory") : PROTO_OK;
}
