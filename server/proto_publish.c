/*
 * PUBLISH in (topic aliases, limits, QoS 2 duplicate suppression, acks) and
 * PUBLISH out (per-subscriber encoding around the shared message bytes).
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
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

/*
 * A PUBLISH waiting for an ACL decision. Owned by the pending decision
 * (plugin_hooks.c), then by pub_resume.
 */
struct pub_hold {
    struct acl_hold h;
    char *topic;     /* resolved through the alias table before waiting, owned */
    size_t topic_len;
    uint16_t pid;    /* QoS 2: its packet id is marked (session_qos2_mark) */
    uint8_t qos;
};

/*
 * The PUBLISH (and, when RETAIN is set, the RETAIN) ACL chains, from chain
 * position `start` of *action with the verdict so far `v` (DEFER: ask from
 * `start`). Returns PLUGIN_ALLOW, PLUGIN_DENY (*rc: the ack's reason code)
 * or PLUGIN_PENDING (*action: the chain that waits).
 */
static int
publish_acl(struct conn *c, const struct mqtt_publish *p, const char *topic, size_t len,
            int *action, size_t start, int v, uint8_t *rc)
{
    uint8_t r = *rc;

    for (;;) {
        if (v == MIDGE_DEFER && *action == PLUGIN_ACL_FORWARD) {
            v = plugin_forward_wait(c, topic, len, p, start, &r);
        } else if (v == MIDGE_DEFER) {
            int retain = *action == MIDGE_ACL_RETAIN ? 1 : p->retain;
            v = plugin_acl_wait(c, *action, topic, len, p->qos, retain, p->payload.ptr,
                                p->payload.len, start, &r);
        }
        if (v != PLUGIN_ALLOW) {
            break;
        }
        /* Allowed: then the RETAIN chain when set, then the publish_accepted hooks. */
        if (*action == MIDGE_ACL_PUBLISH && p->retain && plugins_acl_active) {
            *action = MIDGE_ACL_RETAIN;
        } else if (*action != PLUGIN_ACL_FORWARD && plugins_forward_active) {
            *action = PLUGIN_ACL_FORWARD;
        } else {
            break;
        }
        start = 0;
        v = MIDGE_DEFER;
    }
    *rc = 0;
    if (v == PLUGIN_DENY) {
        *rc = r >= 0x80 ? r : MQTT_RC_NOT_AUTHORIZED;
    }
    return v;
}

/*
 * memory_limit: 1 while messages hold more; logged once per episode.
 * Summing the counter's shards costs ~64 cache lines, so each thread looks
 * at most every 10 ms, or sooner once the messages it made since its last
 * look reach a quarter of the room left then (a fast publisher can fill
 * the room well within 10 ms). The limit is a guard, not an exact quota.
 */
int
proto_over_memory_limit(long long limit, double now)
{
    static atomic_int logged;
    static __thread double checked_at;
    static __thread int over;
    static __thread long long made_at_check;
    static __thread long long budget;
    long long made = msg_mem_made_here();
    long long used;

    if (now - checked_at < 0.01 && (over || made - made_at_check < budget)) {
        return over;
    }
    checked_at = now;
    made_at_check = made;
    used = msg_mem_in_use();
    over = used > limit;
    budget = over ? 0 : (limit - used) / 4 + 1;

    if (used <= limit) {
        if (atomic_load_explicit(&logged, memory_order_relaxed)) {
            atomic_store(&logged, 0);
            midge_log(MLOG_NOTICE, "memory_limit: below the limit again (%lld of %lld bytes): "
                      "publishes accepted", used, limit);
        }
        return 0;
    }
    if (!atomic_exchange(&logged, 1)) {
        midge_log(MLOG_WARNING, "memory_limit reached (%lld of %lld bytes): publishes refused "
                  "until memory is freed", used, limit);
    }
    return 1;
}

/* Handles an inbound PUBLISH. */
/*
 * Routes the PUBLISH unless ack_rc already refuses it, then acknowledges
 * (v5 with the reason code; v3 acknowledged and dropped [MQTT-3.3.5-2]).
 */
static int
publish_finish(struct conn *c, const struct mqtt_publish *p, const char *topic, size_t topic_len,
               uint8_t ack_rc, uint64_t mark)
{
    struct session *s = c->session;
    int ack_type = p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
    uint64_t hold = c->ack_hold; /* set by a publish_accepted hook (api->ack_hold) */
    struct msg *m;

    c->ack_hold = 0;
    if (ack_rc != 0) {
        /* Refused already: too large, or by the ACL. */
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
                /* Dropped by a plugin with its reason code; 0 acknowledges as if delivered
                 * (a non-zero one is counted below with the other refusals). */
                if (ack_rc == 0) {
                    STAT_ADD(&c->w->stats, pub_dropped[DROP_PLUGIN], 1);
                }
            } else {
                broker_publish(m, s->uid);
            }
            msg_unref(m);
        }
    }
    if (ack_rc != 0) {
        STAT_ADD(&c->w->stats, pub_dropped[DROP_REFUSED], 1);
        if (p->qos == 2 && ack_rc >= 0x80) {
            session_qos2_release(s, p->packet_id);
        }
    }
    if (p->qos == 0) {
        return PROTO_OK;
    }
    /*
     * v3 has no reason codes: a refused message is acknowledged and dropped.
     * With persistence the ack waits until what this PUBLISH stored (its QoS 2
     * id, the deliveries to persistent sessions, a retained message) is durable:
     * `mark` is this thread's last event before the PUBLISH was handled.
     */
    {
        uint64_t need = persist_active && persist_thread_mark() != mark ? persist_thread_mark() : 0;
        int r = hold != 0 ? persist_send_ack_held(c, ack_type, p->packet_id,
                                                  c->version == MQTT_V5 ? ack_rc : 0, need, hold)
                          : persist_send_ack(c, ack_type, p->packet_id,
                                             c->version == MQTT_V5 ? ack_rc : 0, need);
        return r < 0 ? PROTO_CLOSE : PROTO_OK;
    }
}

static void
pub_release(struct conn *c, struct acl_hold *h)
{
    struct pub_hold *ph = (struct pub_hold *)h;

    if (c != NULL && c->session != NULL && ph->qos == 2) {
        /* Never acknowledged: the client sends it again, and it must not count as a duplicate. */
        session_qos2_release(c->session, ph->pid);
    }
    free(ph->topic);
    free(h->raw);
    free(ph);
}

/* A decision for a held PUBLISH arrived: finish it, then the input held meanwhile. */
static void
pub_resume(struct conn *c, struct acl_hold *h, size_t index, int verdict, uint8_t reason)
{
    struct pub_hold *ph = (struct pub_hold *)h;
    struct mqtt_packet pk;
    uint8_t rc = 0;
    int v;

    memset(&pk, 0, sizeof(pk));
    if (mqtt_decode(h->raw, h->raw_len, c->version, &pk, &rc) != MQTT_OK) {
        pub_release(c, h);
        conn_close(c, MQTT_RC_UNSPECIFIED, 1, "stored PUBLISH unreadable");
        return;
    }
    rc = reason;
    v = publish_acl(c, &pk.u.publish, ph->topic, ph->topic_len, &h->action, index + 1, verdict,
                    &rc);
    if (v == PLUGIN_PENDING) {
        plugin_acl_hold(c, h);
        return;
    }
    /* Mark 0: other packets were handled meanwhile, so the ack waits for this thread's last event. */
    if (publish_finish(c, &pk.u.publish, ph->topic, ph->topic_len, rc, 0) == PROTO_OK) {
        conn_continue(c);
    }
    pub_release(NULL, h);
}

/* Keeps the PUBLISH on the pending decision. Returns PROTO_WAIT or PROTO_CLOSE. */
static int
publish_hold(struct conn *c, const struct mqtt_publish *p, const char *topic, size_t topic_len,
             const uint8_t *raw, size_t raw_len, int action)
{
    struct pub_hold *ph = calloc(1, sizeof(*ph));

    if (ph == NULL || (ph->topic = malloc(topic_len + 1)) == NULL ||
        (ph->h.raw = malloc(raw_len)) == NULL) {
        if (ph != NULL) {
            free(ph->topic);
            free(ph);
        }
        if (p->qos == 2) {
            session_qos2_release(c->session, p->packet_id);
        }
        return proto_fail(c, MQTT_RC_SERVER_BUSY, "out of memory");
    }
    memcpy(ph->topic, topic, topic_len);
    ph->topic[topic_len] = 0;
    ph->topic_len = topic_len;
    memcpy(ph->h.raw, raw, raw_len);
    ph->h.raw_len = raw_len;
    ph->h.action = action;
    ph->h.resume = pub_resume;
    ph->h.release = pub_release;
    ph->pid = p->packet_id;
    ph->qos = p->qos;
    plugin_acl_hold(c, &ph->h);
    return PROTO_WAIT;
}

/* Handles an inbound PUBLISH; see proto.h. */
int
proto_publish(struct conn *c, const struct mqtt_publish *p, const uint8_t *raw, size_t raw_len)
{
    const struct config *cfg = broker_cfg();
    struct session *s = c->session;
    const char *topic = (const char *)p->topic.ptr;
    size_t topic_len = p->topic.len;
    uint8_t ack_rc = 0;
    uint64_t mark = persist_active ? persist_thread_mark() : 0;

    STAT_ADD(&c->w->stats, pub_received[p->qos], 1);
    STAT_ADD(&c->w->stats, pub_bytes_received[p->qos], p->payload.len);
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
    if ((p->qos > 0 && persist_refusing()) ||
        (cfg->memory_limit > 0 && proto_over_memory_limit(cfg->memory_limit, ev_now(c->w->loop)))) {
        /*
         * Storage failing or memory_limit reached: not accepted. QoS 0 is dropped;
         * v5 QoS 1/2 is told so (0x97); v3 gets no ack and sends again later.
         */
        STAT_ADD(&c->w->stats, pub_dropped[DROP_OVERLOAD], 1);
        if (p->qos == 0 || c->version != MQTT_V5) {
            return PROTO_OK;
        }
        return proto_send_ack(c, p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, p->packet_id,
                              MQTT_RC_QUOTA_EXCEEDED) < 0
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
    } else if (plugins_acl_active || plugins_forward_active) {
        /* v5: a denial is the ack's reason code; v3: acknowledged and dropped [MQTT-3.3.5-2]. */
        int action = MIDGE_ACL_PUBLISH;
        if (publish_acl(c, p, topic, topic_len, &action, 0, MIDGE_DEFER, &ack_rc) ==
            PLUGIN_PENDING) {
            /* The client waits, not the worker: its next packets are held until the decision. */
            return publish_hold(c, p, topic, topic_len, raw, raw_len, action);
        }
    }
    return publish_finish(c, p, topic, topic_len, ack_rc, mark);
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
        if (plugin_acl(c, MIDGE_ACL_RECEIVE, m->topic, e->qos, e->retain, m->payload,
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
