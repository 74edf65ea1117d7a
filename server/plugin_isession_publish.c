/*
 * api->session_publish_message: a plugin's message published as its
 * internal session the way a client's PUBLISH is (proto_publish.c): limits,
 * the PUBLISH/RETAIN ACL chains (which may wait for a decision), the
 * message_in hooks, routing; then the plugin is told once what the publish
 * stored is durable (persist_after on the session's stand-in connection),
 * so it can acknowledge upstream only then (a bridge's PUBACK/PUBREC).
 *
 * Order: calls are handled one after the other. While the first one waits
 * for an ACL decision the later ones wait behind it on the handle's queue,
 * and the done callbacks run in call order (persist_after keeps them in the
 * order they were held). [home worker]
 */
#include "plugin.h"
#include "plugin_isession.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "config.h"
#include "msg.h"
#include "mqtt.h"
#include "persist.h"
#include "proto.h"
#include "session.h"
#include "worker.h"

/*
 * One call. Owned by the handle's queue, then while an ACL decision waits
 * by the pending decision (plugin_acl_hold), then by the persist ring
 * (persist_after) until done ran.
 */
struct ipub {
    struct acl_hold h;  /* first: the pending decision resumes through it */
    struct ipub *next;  /* the handle's queue */
    midge_session *ms;
    struct msg *m;      /* our copy (origin_session set), one reference */
    void (*done)(void *arg, int result);
    void *arg;
    int result;         /* what done gets once durable */
};

static void pump(midge_session *ms);

/* Calls done (if any) and frees ip. */
static void
finish(struct ipub *ip, int result)
{
    if (ip->done != NULL) {
        ip->done(ip->arg, result);
    }
    msg_unref(ip->m);
    free(ip);
}

/* persist_after: what the publish stored is durable. */
static void
settled(struct conn *c, void *arg)
{
    struct ipub *ip = arg;

    (void)c;
    finish(ip, ip->ms->open ? ip->result : -MIDGE_ESTATE);
}

/* persist_after: the handle closed while it was held. */
static void
settled_dropped(void *arg)
{
    finish(arg, -MIDGE_ESTATE);
}

/*
 * The PUBLISH (then, with RETAIN, the RETAIN) ACL chain from chain position
 * `start` with the verdict so far `v` (DEFER: ask from `start`), as
 * publish_acl() in proto_publish.c. Returns PLUGIN_ALLOW, PLUGIN_DENY (*rc
 * the reason code) or PLUGIN_PENDING.
 */
static int
acl_run(midge_session *ms, struct ipub *ip, size_t start, int v, uint8_t *rc)
{
    const struct msg *m = ip->m;
    uint8_t r = *rc;

    for (;;) {
        if (v == MIDGE_DEFER) {
            int retain = ip->h.action == MIDGE_ACL_RETAIN ? 1 : m->retain;
            v = plugin_acl_wait(&ms->vconn, ip->h.action, m->topic, m->topic_len, m->qos, retain,
                                m->payload, m->payload_len, start, &r);
        }
        if (v != PLUGIN_ALLOW || ip->h.action == MIDGE_ACL_RETAIN || !m->retain) {
            break;
        }
        ip->h.action = MIDGE_ACL_RETAIN;
        start = 0;
        v = MIDGE_DEFER;
    }
    *rc = 0;
    if (v == PLUGIN_DENY) {
        *rc = r >= 0x80 ? r : MQTT_RC_NOT_AUTHORIZED;
    }
    return v;
}

/* Routes ip unless rc refuses it, then hands it to persist_after for done. */
static void
route(midge_session *ms, struct ipub *ip, uint8_t rc)
{
    uint64_t mark = persist_active ? persist_thread_mark() : 0;
    uint64_t need = 0;

    if (rc == 0) {
        if (plugins_message_in_active &&
            plugin_message_in(&ms->vconn, &ip->m, &rc) == PLUGIN_DENY) {
            /* Dropped by a plugin: rc 0 settles it as if delivered. */
        } else {
            broker_publish(ip->m, ip->m->origin_session);
        }
    }
    if (ip->done == NULL) {
        finish(ip, 0);
        return;
    }
    ip->result = rc;
    if (persist_active && persist_thread_mark() != mark) {
        need = persist_thread_mark();
    }
    if (persist_after(&ms->vconn, need, settled, settled_dropped, ip) < 0) {
        /* Out of memory holding it: it may have been routed, it is not known durable. */
        finish(ip, MQTT_RC_UNSPECIFIED);
    }
}

/* The ACL decision for the waiting call arrived. */
static void
resume(struct conn *c, struct acl_hold *h, size_t index, int verdict, uint8_t reason)
{
    struct ipub *ip = (struct ipub *)h;
    midge_session *ms = ip->ms;
    uint8_t rc = reason;
    int v;

    (void)c;
    ms->pub_waiting = 0;
    if (!ms->open) {
        finish(ip, -MIDGE_ESTATE);
        return;
    }
    v = acl_run(ms, ip, index + 1, verdict, &rc);
    if (v == PLUGIN_PENDING) {
        ms->pub_waiting = 1;
        plugin_acl_hold(&ms->vconn, &ip->h);
        return;
    }
    route(ms, ip, rc);
    pump(ms);
}

/* The waiting call is dropped: c is not NULL when the handle closes while it waits. */
static void
release(struct conn *c, struct acl_hold *h)
{
    struct ipub *ip = (struct ipub *)h;

    if (c != NULL) {
        ip->ms->pub_waiting = 0;
    }
    finish(ip, -MIDGE_ESTATE);
}

/* Handles queued calls until one waits for an ACL decision. */
static void
pump(midge_session *ms)
{
    const struct config *cfg = broker_cfg();
    struct ipub *ip;

    while (ms->open && !ms->pub_waiting && (ip = ms->pub_head) != NULL) {
        const struct msg *m = ip->m;
        uint8_t rc = 0;

        ms->pub_head = ip->next;
        if (ms->pub_head == NULL) {
            ms->pub_tail = NULL;
        }
        ip->next = NULL;
        if ((m->qos > 0 && persist_refusing()) ||
            (cfg->memory_limit > 0 &&
             proto_over_memory_limit(cfg->memory_limit, ev_now(ms->vconn.w->loop)))) {
            rc = MQTT_RC_QUOTA_EXCEEDED;
        } else if (cfg->message_size_limit > 0 && m->payload_len > cfg->message_size_limit) {
            rc = MQTT_RC_PACKET_TOO_LARGE;
        } else if (plugins_acl_active) {
            ip->h.action = MIDGE_ACL_PUBLISH;
            if (acl_run(ms, ip, 0, MIDGE_DEFER, &rc) == PLUGIN_PENDING) {
                /* The later calls wait behind it: their order is kept. */
                ms->pub_waiting = 1;
                plugin_acl_hold(&ms->vconn, &ip->h);
                return;
            }
        }
        route(ms, ip, rc);
    }
}

int
plugin_session_publish_message(midge_session *ms, const midge_message *msg,
                               void (*done)(void *arg, int result), void *arg)
{
    const struct msg *src = (const struct msg *)msg;
    struct ipub *ip;

    if (ms == NULL || !ms->open || worker_current() != ms->vconn.w) {
        return -MIDGE_ESTATE;
    }
    if (src == NULL || src->topic[0] == '$') {
        return -MIDGE_EINVAL;
    }
    ip = calloc(1, sizeof(*ip));
    if (ip == NULL) {
        return -MIDGE_ENOMEM;
    }
    /* Our own copy: origin_session (No Local) is not the plugin's message's to change. */
    ip->m = msg_rebuild(src, src->topic, src->topic_len, src->payload, src->payload_len, NULL, 0);
    if (ip->m == NULL) {
        free(ip);
        return -MIDGE_ENOMEM;
    }
    ip->m->origin_session = ms->vconn.session->uid;
    ip->h.resume = resume;
    ip->h.release = release;
    ip->ms = ms;
    ip->done = done;
    ip->arg = arg;
    if (ms->pub_tail != NULL) {
        ms->pub_tail->next = ip;
    } else {
        ms->pub_head = ip;
    }
    ms->pub_tail = ip;
    pump(ms);
    return 0;
}

void
isession_pub_abandon(midge_session *ms)
{
    /* In call order: those waiting for durability, the one waiting for a decision, the rest. */
    persist_conn_free(&ms->vconn);
    plugin_auth_cancel(&ms->vconn);
    ms->pub_waiting = 0;
    while (ms->pub_head != NULL) {
        struct ipub *ip = ms->pub_head;
        ms->pub_head = ip->next;
        finish(ip, -MIDGE_ESTATE);
    }
    ms->pub_tail = NULL;
}
