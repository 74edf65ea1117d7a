/* SUBSCRIBE and UNSUBSCRIBE: trie updates, SUBACK/UNSUBACK, retained delivery. */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "msg.h"
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

/* Handles SUBSCRIBE [MQTT-3.8.4]. */
int
proto_subscribe(struct conn *c, const struct mqtt_subscribe *sp)
{
    const struct config *cfg = broker_cfg();
    struct session *s = c->session;
    struct mqtt_packet ack;
    struct mqtt_sub_entry e;
    struct pending_retained *ret = NULL;
    uint8_t *rcs = NULL;
    uint32_t pos = 0;
    uint32_t i = 0;
    uint32_t sub_id = 0;
    double now = ev_now(c->w->loop);
    int result = PROTO_OK;
    size_t k;

    if (c->version == MQTT_V5 && (sp->props.present & MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID))) {
        sub_id = sp->props.sub_id;
    }
    rcs = malloc(sp->count);
    ret = calloc(sp->count, sizeof(*ret));
    if (rcs == NULL || ret == NULL) {
        result = proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
        goto out;
    }
    while (mqtt_subscribe_next(sp, &pos, &e)) {
        const char *f = (const char *)e.filter.ptr;
        size_t flen = e.filter.len;
        const char *group;
        const char *inner;
        size_t glen;
        size_t ilen;
        int shared = topic_share_split(f, flen, &group, &glen, &inner, &ilen);
        uint8_t qos = e.qos < cfg->max_qos ? e.qos : (uint8_t)cfg->max_qos;
        uint8_t opts;
        int existed = 0;

        if (!topic_filter_valid(f, flen) || shared < 0) {
            rcs[i++] = c->version == MQTT_V5 ? MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
            continue;
        }
        if (shared == 1 && e.no_local) {
            /* [MQTT-3.8.3-4] */
            result = proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "No Local on a shared subscription");
            goto out;
        }
        if (plugins_acl_active) {
            uint8_t r;
            if (plugin_acl(c, MIDGE_ACL_SUBSCRIBE, f, flen, qos, 0, NULL, 0, &r) == PLUGIN_DENY) {
                rcs[i++] = c->version == MQTT_V5 ? (r >= 0x80 ? r : MQTT_RC_NOT_AUTHORIZED) : 0x80;
                continue;
            }
        }
        opts = (uint8_t)(qos | (e.no_local ? SUBOPT_NO_LOCAL : 0) |
                         (e.retain_as_published ? SUBOPT_RAP : 0) | (e.retain_handling << 4));
        if (subs_add(f, flen, s->sub, opts, sub_id, &existed) < 0 ||
            session_sub_add(s, f, flen, opts, sub_id) < 0) {
            rcs[i++] = 0x80;
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
        i++;
    }
    memset(&ack, 0, sizeof(ack));
    ack.type = MQTT_SUBACK;
    ack.u.suback.packet_id = sp->packet_id;
    ack.u.suback.rcs.ptr = rcs;
    ack.u.suback.rcs.len = i;
    if (conn_send(c, &ack) < 0) {
        result = proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
        goto out;
    }
    if (plugins_sub_events_active) {
        /* After the SUBACK, for the filters granted. */
        pos = 0;
        for (k = 0; k < i && mqtt_subscribe_next(sp, &pos, &e); k++) {
            if (rcs[k] < 0x80) {
                char *f = strndup((const char *)e.filter.ptr, e.filter.len);
                if (f != NULL) {
                    plugin_subscribed(c, f, rcs[k]);
                    free(f);
                }
            }
        }
    }
    /* Retained messages carry RETAIN 1 [MQTT-3.3.1-8] at min(message QoS, granted QoS). */
    for (k = 0; k < i; k++) {
        size_t j;
        for (j = 0; j < ret[k].n; j++) {
            struct msg *m = ret[k].msgs[j];
            uint8_t q = m->qos < ret[k].qos ? m->qos : ret[k].qos;
            if (c->state == CONN_ACTIVE) {
                session_deliver(s, m, q, 1, sub_id, NULL, 0);
            }
        }
    }
out:
    if (ret != NULL) {
        for (k = 0; k < sp->count; k++) {
            size_t j;
            for (j = 0; j < ret[k].n; j++) {
                msg_unref(ret[k].msgs[j]);
            }
            free(ret[k].msgs);
        }
    }
    free(ret);
    free(rcs);
    return result;
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
