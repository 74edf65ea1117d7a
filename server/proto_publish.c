/*
 * PUBLISH in (topic aliases, limits, QoS 2 duplicate suppression, acks) and
 * PUBLISH out (per-subscriber encoding around the shared message bytes).
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "msg.h"
#include "persist.h"
#include "plugin.h"
#include "proto.h"
#include "session.h"
#include "worker.h"

/* Resolves the topic of an inbound v5 PUBLISH through the connection's alias table. */
static int
resolve_alias(struct conn *c, const struct mqtt_publish *p, const char **topic, size_t *len)
{
    uint16_t a = p->props.topic_alias;

    if (a == 0 || a > c->alias_max) {
        /* [MQTT-3.3.2-8], [MQTT-3.3.2-9] */
        return proto_fail(c, MQTT_RC_TOPIC_ALIAS_INVALID, "topic alias out of range");
    }
    if (c->aliases == NULL) {
        c->aliases = calloc((size_t)c->alias_max + 1, sizeof(char *));
        if (c->aliases == NULL) {
            return proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
        }
    }
    if (p->topic.len > 0) {
        char *t = strndup((const char *)p->topic.ptr, p->topic.len);
        if (t == NULL) {
            return proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
        }
        free(c->aliases[a]);
        c->aliases[a] = t;
    } else if (c->aliases[a] == NULL) {
        /* An alias never set is a protocol error [MQTT-3.3.4-?]: MQTT 5 section 3.3.2.3.4. */
        return proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "unknown topic alias");
    }
    *topic = c->aliases[a];
    *len = strlen(c->aliases[a]);
    return PROTO_OK;
}

/* ACL for a PUBLISH (and for setting a retained message). 0 when denied, *rc set. */
static int
publish_allowed(struct conn *c, const struct mqtt_publish *p, const char *topic, size_t len,
                uint8_t *rc)
{
    uint8_t r = 0;

    if (plugin_acl(c, MIDGE_ACL_PUBLISH, topic, len, p->qos, p->retain, p->payload.ptr,
                   p->payload.len, &r) == PLUGIN_DENY ||
        (p->retain && plugin_acl(c, MIDGE_ACL_RETAIN, topic, len, p->qos, 1, p->payload.ptr,
                                 p->payload.len, &r) == PLUGIN_DENY)) {
        *rc = r >= 0x80 ? r : MQTT_RC_NOT_AUTHORIZED;
        return 0;
    }
    return 1;
}

/* Handles an inbound PUBLISH. */
int
proto_publish(struct conn *c, const struct mqtt_publish *p)
{
    const struct config *cfg = broker_cfg();
    struct session *s = c->session;
    const char *topic = (const char *)p->topic.ptr;
    size_t topic_len = p->topic.len;
    struct msg *m;
    int ack_type = p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
    uint8_t ack_rc = 0;
    uint64_t mark = persist_active ? persist_thread_mark() : 0;

    STAT_ADD(&c->w->stats, pub_received, 1);
    c->is_publisher = 1;
    if (c->version == MQTT_V5 && (p->props.present & MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS))) {
        if (resolve_alias(c, p, &topic, &topic_len) != PROTO_OK) {
            return PROTO_CLOSE;
        }
    } else if (topic_len == 0) {
        return proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "empty topic without alias");
    }
    if (p->qos > cfg->max_qos) {
        /* [MQTT-3.2.2-11] */
        return proto_fail(c, MQTT_RC_QOS_NOT_SUPPORTED, "QoS above max_qos");
    }
    if (p->retain && !cfg->retain_available) {
        /* [MQTT-3.2.2-14] */
        return proto_fail(c, MQTT_RC_RETAIN_NOT_SUPPORTED, "retain not available");
    }
    if (p->qos > 0 && persist_refusing()) {
        /* Storage failing: not accepted. v5 says so (0x97); v3 gets no ack and sends again. */
        STAT_ADD(&c->w->stats, pub_dropped, 1);
        if (c->version != MQTT_V5) {
            return PROTO_OK;
        }
        return proto_send_ack(c, ack_type, p->packet_id, MQTT_RC_QUOTA_EXCEEDED) < 0
                   ? PROTO_CLOSE
                   : PROTO_OK;
    }
    if (p->qos == 2) {
        int r = session_qos2_mark(s, p->packet_id);
        if (r < 0) {
            return proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
        }
        if (r == 1) {
            /* Already received, PUBREL pending: acknowledge, do not deliver again [MQTT-4.3.3-9]. */
            return persist_send_ack(c, MQTT_PUBREC, p->packet_id, 0, 0) < 0 ? PROTO_CLOSE
                                                                               : PROTO_OK;
        }
        if (cfg->max_inflight_messages > 0 && s->in_qos2_count > (uint32_t)cfg->max_inflight_messages &&
            c->version == MQTT_V5) {
            /* More unacknowledged QoS 2 than our Receive Maximum [MQTT-3.3.4-9]. */
            return proto_fail(c, MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded");
        }
    }
    if (cfg->message_size_limit > 0 && p->payload.len > cfg->message_size_limit) {
        ack_rc = MQTT_RC_PACKET_TOO_LARGE;
    } else if (plugins_acl_active && !publish_allowed(c, p, topic, topic_len, &ack_rc)) {
        /* v5: the reason code in the ack; v3: acknowledged and dropped [MQTT-3.3.5-2]. */
    } else if (topic_len >= 4 && memcmp(topic, "$SYS", 4) == 0) {
        /* Clients do not publish into the broker's own tree. */
        ack_rc = MQTT_RC_NOT_AUTHORIZED;
    } else {
        m = msg_new(topic, topic_len, p->payload.ptr, p->payload.len, p->qos, p->retain,
                    c->version == MQTT_V5 ? &p->props : NULL, ev_now(c->w->loop));
        if (m == NULL) {
            ack_rc = MQTT_RC_SERVER_BUSY;
        } else {
            m->origin_session = s->uid;
            if (plugins_message_in_active && plugin_message_in(c, &m, &ack_rc) == PLUGIN_DENY) {
                /* Dropped by a plugin: its reason code, 0 acknowledges as if delivered. */
                STAT_ADD(&c->w->stats, pub_dropped, ack_rc == 0 ? 1 : 0);
            } else {
                broker_publish(m, s->uid);
            }
            msg_unref(m);
        }
    }
    if (ack_rc != 0) {
        STAT_ADD(&c->w->stats, pub_dropped, 1);
        if (p->qos == 2 && ack_rc >= 0x80) {
            session_qos2_release(s, p->packet_id);
        }
    }
    if (p->qos == 0) {
        return PROTO_OK;
    }
    /*
     * v3 has no reason codes: a refused message is acknowledged and dropped.
     * With persistence the ack waits until what this PUBLISH stored is durable.
     */
    return persist_send_ack(c, ack_type, p->packet_id, c->version == MQTT_V5 ? ack_rc : 0,
                            persist_active && persist_thread_mark() != mark
                                ? persist_thread_mark()
                                : 0) < 0
               ? PROTO_CLOSE
               : PROTO_OK;
}

/* PUBREL: the QoS 2 id is released; PUBCOMP answers (0x92 when unknown, v5). */
int
proto_pubrel(struct conn *c, const struct mqtt_ack *a)
{
    int known = session_qos2_release(c->session, a->packet_id);

    /* After held PUBRECs, in order (the release itself need not be durable first). */
    return persist_send_ack(c, MQTT_PUBCOMP, a->packet_id,
                            known ? 0 : MQTT_RC_PACKET_ID_NOT_FOUND, 0) < 0
               ? PROTO_CLOSE
               : PROTO_OK;
}

/*
 * Encodes one subscriber's PUBLISH: private fixed header, packet id and
 * properties around the message's shared topic bytes, pass-through
 * properties and payload. Large payloads are referenced, not copied.
 */
int
proto_send_publish(struct conn *c, const struct qentry *e, uint16_t pid, int dup, double now)
{
    const struct msg *m = e->msg;
    int v5 = c->version == MQTT_V5;
    uint32_t expiry = 0;
    size_t plen = 0;
    size_t rem;
    size_t total;
    size_t head;
    int big = m->payload_len >= OUTBUF_REF_MIN;
    uint8_t *d;
    uint16_t i;

    if (c->sink != NULL) {
        return plugin_isession_deliver(c, e, pid, dup);
    }
    if (v5) {
        expiry = msg_expiry_left(m, now);
        if (expiry) {
            plen += 5;
        }
        if (e->n_ids > 0) {
            plen += 1 + mqtt_varint_size(e->sub_id);
            for (i = 0; i + 1 < e->n_ids; i++) {
                plen += 1 + mqtt_varint_size(e->more_ids[i]);
            }
        }
        plen += m->props_len;
    }
    rem = 2u + m->topic_len + (e->qos ? 2u : 0u) + m->payload_len +
          (v5 ? mqtt_varint_size((uint32_t)plen) + plen : 0);
    if (rem > MQTT_MAX_REMAINING_LENGTH) {
        return 1;
    }
    total = 1 + mqtt_varint_size((uint32_t)rem) + rem;
    if (c->max_packet_out != 0 && total > c->max_packet_out) {
        return 1;
    }
    if (plugins_acl_active && !dup) {
        uint8_t r;
        if (plugin_acl(c, MIDGE_ACL_RECEIVE, m->topic, m->topic_len, e->qos, e->retain, m->payload,
                       m->payload_len, &r) == PLUGIN_DENY) {
            return 2;
        }
    }
    if (plugins_message_out_active && !dup) {
        plugin_message_out(c, m);
    }
    head = total - (big ? m->payload_len : 0);
    d = outbuf_reserve(&c->out, head);
    if (d == NULL) {
        return -1;
    }
    {
        uint8_t *p = d;
        *p++ = (uint8_t)(0x30 | (dup ? 0x08 : 0) | (e->qos << 1) | (e->retain ? 1 : 0));
        p += mqtt_varint_write((uint32_t)rem, p);
        memcpy(p, m->topic_wire, 2u + m->topic_len);
        p += 2u + m->topic_len;
        if (e->qos) {
            *p++ = (uint8_t)(pid >> 8);
            *p++ = (uint8_t)pid;
        }
        if (v5) {
            p += mqtt_varint_write((uint32_t)plen, p);
            if (expiry) {
                *p++ = MQTT_PROP_MESSAGE_EXPIRY;
                *p++ = (uint8_t)(expiry >> 24);
                *p++ = (uint8_t)(expiry >> 16);
                *p++ = (uint8_t)(expiry >> 8);
                *p++ = (uint8_t)expiry;
            }
            if (e->n_ids > 0) {
                *p++ = MQTT_PROP_SUBSCRIPTION_ID;
                p += mqtt_varint_write(e->sub_id, p);
                for (i = 0; i + 1 < e->n_ids; i++) {
                    *p++ = MQTT_PROP_SUBSCRIPTION_ID;
                    p += mqtt_varint_write(e->more_ids[i], p);
                }
            }
            memcpy(p, m->props, m->props_len);
            p += m->props_len;
        }
        if (!big) {
            memcpy(p, m->payload, m->payload_len);
        }
    }
    outbuf_commit(&c->out, head);
    if (big && outbuf_append_ref(&c->out, (struct msg *)m, m->payload, m->payload_len) < 0) {
        return -1;
    }
    STAT_ADD(&c->w->stats, msgs_sent, 1);
    conn_mark_dirty(c);
    return 0;
}
