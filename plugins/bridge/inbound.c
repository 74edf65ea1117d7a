/*
 * Remote -> local: the remote subscriptions of `in`/`both` topics, and the
 * messages they bring. Each is published as the bridge's internal session
 * with its MQTT 5 properties (api->session_publish_message), so it passes
 * the ACL and message_in hooks like a client's PUBLISH, and the session's
 * own `out` subscriptions, which are No Local, never send it back where it
 * came from. Every message carries a midge-origin user property from here
 * on (the remote's, or a new one naming this broker), which is what loop
 * prevention and split horizon look at downstream (loop.h).
 *
 * QoS 1/2 is acknowledged to the remote (PUBACK / PUBREC) only once the
 * broker reports the local publish settled: routed and, with a persistence
 * plugin, durable. Acknowledgements leave in the order the PUBLISHes came
 * [MQTT-4.6.0-2], through a FIFO of pending acks per connection. QoS 2 is
 * published once per packet id and released on PUBREL [MQTT-4.3.3].
 * [home worker]
 */
#include "bridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * An acknowledgement owed to the remote. Owned by the bridge's FIFO
 * (b->acks_head); an orphan (its connection ended) is owned by the pending
 * api->session_publish_message call, whose done frees it.
 */
struct in_ack {
    struct in_ack *next;
    struct bridge *b;
    uint16_t id;
    uint8_t type;     /* MQTT_PUBACK or MQTT_PUBREC */
    uint8_t rc;       /* MQTT 5 reason code */
    uint8_t ready;    /* settled: sent once those before it are */
    uint8_t send;     /* 0: settled without an ack (the remote sends it again later) */
    uint8_t orphan;   /* the connection it belongs to ended */
    uint8_t publishing; /* its done callback has not run yet */
};

static void
send_ack(struct bridge *b, int type, uint16_t id, uint8_t rc)
{
    struct mqtt_packet p;

    memset(&p, 0, sizeof(p));
    p.type = (uint8_t)type;
    p.u.ack.packet_id = id;
    p.u.ack.rc = b->version == MQTT_V5 ? rc : 0;
    link_send(b, &p);
}

static void
qos2_mark(struct bridge *b, uint16_t id, int on)
{
    if (on) {
        b->qos2_in[id >> 3] |= (uint8_t)(1u << (id & 7));
    } else {
        b->qos2_in[id >> 3] &= (uint8_t)~(1u << (id & 7));
    }
}

/* Sends the settled acknowledgements at the head of the FIFO. */
static void
acks_flush(struct bridge *b)
{
    while (b->acks_head != NULL && b->acks_head->ready) {
        struct in_ack *a = b->acks_head;
        b->acks_head = a->next;
        if (b->acks_head == NULL) {
            b->acks_tail = NULL;
        }
        if (a->send) {
            send_ack(b, a->type, a->id, a->rc);
        }
        free(a);
    }
}

/* Queues an acknowledgement for `id`; NULL when out of memory (the connection is dropped). */
static struct in_ack *
ack_new(struct bridge *b, int qos, uint16_t id)
{
    struct in_ack *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        link_drop(b, "out of memory");
        return NULL;
    }
    a->b = b;
    a->id = id;
    a->type = qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
    a->send = 1;
    if (b->acks_tail != NULL) {
        b->acks_tail->next = a;
    } else {
        b->acks_head = a;
    }
    b->acks_tail = a;
    return a;
}

/* The connection ended: pending acknowledgements are not sent (the remote sends again). */
void
in_link_lost(struct bridge *b)
{
    while (b->acks_head != NULL) {
        struct in_ack *a = b->acks_head;
        b->acks_head = a->next;
        if (a->publishing) {
            a->orphan = 1; /* freed by its done callback */
        } else {
            free(a);
        }
    }
    b->acks_tail = NULL;
}

/* api->session_publish_message settled the local publish of a QoS 1/2 message. */
static void
published(void *arg, int result)
{
    struct in_ack *a = arg;
    struct bridge *b = a->b;

    a->publishing = 0;
    if (a->orphan) {
        free(a);
        return;
    }
    a->ready = 1;
    if (result < 0) {
        a->send = 0; /* the session closed: not known durable */
    } else if (result >= 0x80) {
        /* Refused here (ACL, storage, limits). MQTT 5 says so; MQTT 3 has no reason codes:
         * acknowledged and dropped, except when storage fails (sent again later). */
        a->rc = (uint8_t)result;
        if (b->version != MQTT_V5 && result == MQTT_RC_QUOTA_EXCEEDED) {
            a->send = 0;
        }
        if (a->type == MQTT_PUBREC && (b->version == MQTT_V5 || !a->send)) {
            qos2_mark(b, a->id, 0); /* the exchange ends here: the id may be used again */
        }
    }
    if (result == 0) {
        bridge_api(b)->metric_add(b->ctx->m_received, 1);
        bridge_api(b)->metric_add(b->lm.received, 1);
    }
    if (result != -MIDGE_ESTATE) {
        acks_flush(b);
    }
}
/* Sends UNSUBSCRIBE for `out` topics (bridge_attempt_unsubscribe) and SUBSCRIBE for the others. */
void
in_link_up(struct bridge *b, int session_present)
{
    const struct bridge_conf *c = b->conf;
    struct mqtt_sub_entry *subs = NULL;
    struct mqtt_bytes *unsubs = NULL;
    uint32_t nsub = 0;
    uint32_t nunsub = 0;
    struct mqtt_packet p;
    uint16_t pid;
    size_t i;

    if (!session_present) {
        memset(b->qos2_in, 0, sizeof(b->qos2_in));
    }
    in_link_lost(b); /* nothing from an earlier connection is acknowledged on this one */
    subs = calloc(c->ntopics, sizeof(*subs));
    unsubs = calloc(c->ntopics, sizeof(*unsubs));
    if (subs == NULL || unsubs == NULL) {
        link_drop(b, "out of memory");
        goto out;
    }
    for (i = 0; i < c->ntopics; i++) {
        const struct bridge_topic *t = &c->topics[i];
        if (t->dir & BRIDGE_IN) {
            subs[nsub].filter.ptr = (const uint8_t *)t->remote_filter;
            subs[nsub].filter.len = (uint32_t)strlen(t->remote_filter);
            subs[nsub].qos = (uint8_t)t->qos;
            /* No Local: what we publish there does not come back [MQTT-3.8.3-3]. */
            subs[nsub].no_local = 1;
            subs[nsub].retain_as_published = 1;
            nsub++;
        } else if (c->attempt_unsubscribe && !c->cleansession) {
            unsubs[nunsub].ptr = (const uint8_t *)t->remote_filter;
            unsubs[nunsub].len = (uint32_t)strlen(t->remote_filter);
            nunsub++;
        }
    }
    b->acks_pending = 0;
    pid = bridge_free_pid(b, 0);
    if (nunsub > 0) {
        memset(&p, 0, sizeof(p));
        p.type = MQTT_UNSUBSCRIBE;
        p.u.unsubscribe.packet_id = pid;
        pid = bridge_free_pid(b, pid);
        p.u.unsubscribe.count = nunsub;
        p.u.unsubscribe.filters = unsubs;
        if (link_send(b, &p) == 0) {
            b->acks_pending++;
        }
    }
    if (nsub > 0) {
        memset(&p, 0, sizeof(p));
        p.type = MQTT_SUBSCRIBE;
        p.u.subscribe.packet_id = pid;
        p.u.subscribe.count = nsub;
        p.u.subscribe.entries = subs;
        if (link_send(b, &p) == 0) {
            b->acks_pending++;
        }
    }
    if (b->acks_pending == 0) {
        link_ready(b);
    } else {
        link_flush(b);
    }
out:
    free(subs);
    free(unsubs);
}

/*
 * The MQTT 5 properties that travel with an incoming message into a local
 * one, as api->message_new wants them (encoded, no length prefix): payload
 * format, content type, response topic, correlation data and the user
 * properties with our midge-origin. Returns the length, or -1 when they do
 * not fit.
 */
static long
local_props(const struct mqtt_publish *pub, const struct origin *o, uint8_t *out, size_t cap,
            uint8_t *ubuf, size_t ucap)
{
    struct mqtt_props keep;
    size_t ulen = bridge_user_props_with_origin(&pub->props, o, ubuf, ucap);
    size_t n;
    size_t pre;
    uint8_t tmp[8];

    if (ulen == 0) {
        return -1;
    }
    memset(&keep, 0, sizeof(keep));
    keep.present = pub->props.present &
                   (MQTT_PBIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PBIT(MQTT_PROP_CONTENT_TYPE) |
                    MQTT_PBIT(MQTT_PROP_RESPONSE_TOPIC) | MQTT_PBIT(MQTT_PROP_CORRELATION_DATA));
    keep.payload_format = pub->props.payload_format;
    keep.content_type = pub->props.content_type;
    keep.response_topic = pub->props.response_topic;
    keep.correlation_data = pub->props.correlation_data;
    keep.user_props.ptr = ubuf;
    keep.user_props.len = (uint32_t)ulen;
    n = mqtt_props_size(&keep);
    if (n == SIZE_MAX || n + 8 > cap) {
        return -1;
    }
    pre = mqtt_varint_write((uint32_t)n, tmp);
    if (mqtt_props_write(&keep, out) != pre + n) {
        return -1;
    }
    memmove(out, out + pre, n);
    return (long)n;
}

/*
 * Publishes an incoming message locally. `a` (QoS 1/2) is its pending
 * acknowledgement, made ready once the publish settled.
 */
static void
publish_local(struct bridge *b, const char *topic, const struct mqtt_publish *pub,
              const struct origin *o, struct in_ack *a)
{
    const struct midge_api *api = bridge_api(b);
    /* Room for what is kept of the remote's properties plus our midge-origin. */
    size_t ucap = (size_t)pub->props.user_props.len + 128;
    size_t cap = ucap + pub->props.content_type.len + pub->props.response_topic.len +
                 pub->props.correlation_data.len + 64;
    uint8_t *props = NULL;
    uint8_t *ubuf = NULL;
    const midge_message *msg;
    long plen = -1;
    int rc;

    if (topic[0] == '$') {
        /* session_publish_message refuses $ topics: published as the broker, without hooks. */
        rc = api->publish(bridge_self(b), topic, pub->payload.ptr, pub->payload.len, pub->qos,
                          pub->retain);
        if (rc == 0) {
            api->metric_add(b->ctx->m_received, 1);
            api->metric_add(b->lm.received, 1);
        } else {
            BLOG(b, MIDGE_LOG_WARNING, "cannot publish incoming message locally topic=%s "
                 "error=%d", topic, rc);
        }
        if (a != NULL) {
            a->ready = 1;
        }
        return;
    }
    if ((props = malloc(cap)) != NULL && (ubuf = malloc(ucap)) != NULL) {
        plen = local_props(pub, o, props, cap, ubuf, ucap);
    }
    msg = plen < 0 ? NULL
                   : api->message_new(bridge_self(b), topic, pub->payload.ptr, pub->payload.len,
                                      pub->qos, pub->retain, props, (uint32_t)plen,
                                      (pub->props.present & MQTT_PBIT(MQTT_PROP_MESSAGE_EXPIRY))
                                          ? pub->props.message_expiry
                                          : 0,
                                      0);
    free(props);
    free(ubuf);
    if (msg == NULL) {
        BLOG(b, MIDGE_LOG_WARNING, "cannot publish incoming message locally topic=%s: %s", topic,
             plen < 0 ? "properties too large or out of memory" : "invalid or out of memory");
        if (a != NULL) {
            a->ready = 1; /* acknowledged and dropped: it would fail again */
        }
        return;
    }
    if (a != NULL) {
        a->publishing = 1;
    }
    rc = api->session_publish_message(b->s, msg, a != NULL ? published : NULL, a);
    api->message_unref(msg);
    if (rc != 0) {
        BLOG(b, MIDGE_LOG_WARNING, "cannot publish incoming message locally topic=%s error=%d",
             topic, rc);
        if (a != NULL) {
            a->publishing = 0;
            a->ready = 1;
            a->send = 0; /* not published: the remote sends it again after a reconnect */
            if (a->type == MQTT_PUBREC) {
                qos2_mark(b, a->id, 0);
            }
        }
    } else if (a == NULL) {
        api->metric_add(b->ctx->m_received, 1);
        api->metric_add(b->lm.received, 1);
    }
}

void
in_on_packet(struct bridge *b, const struct mqtt_packet *p)
{
    if (p->type == MQTT_PUBREL) {
        uint16_t id = p->u.ack.packet_id;
        qos2_mark(b, id, 0);
        send_ack(b, MQTT_PUBCOMP, id, 0);
        return;
    }
    {
        const struct mqtt_publish *pub = &p->u.publish;
        char rtopic[65536 + 1];
        char ltopic[65536 + 1];
        const struct bridge_topic *t;
        uint16_t id = pub->packet_id;
        struct in_ack *a = NULL;
        struct origin o;
        int has_origin = 0;

        if (pub->topic.len == 0) {
            link_drop(b, "protocol error: topic alias without a Topic Alias Maximum");
            return;
        }
        memcpy(rtopic, pub->topic.ptr, pub->topic.len);
        rtopic[pub->topic.len] = '\0';
        if (pub->qos > 0 && (a = ack_new(b, pub->qos, id)) == NULL) {
            return;
        }
        if (pub->qos == 2 && (b->qos2_in[id >> 3] & (1u << (id & 7)))) {
            /* Already published: the remote sent it again. PUBREC after what came before. */
            a->ready = 1;
            acks_flush(b);
            return;
        }
        if (pub->qos == 2) {
            qos2_mark(b, id, 1);
        }
        if (b->version == MQTT_V5) {
            uint32_t pos = 0;
            struct mqtt_bytes k;
            struct mqtt_bytes v;
            while (mqtt_user_prop_next(&pub->props, &pos, &k, &v)) {
                if (k.len == sizeof(LOOP_PROP) - 1 && memcmp(k.ptr, LOOP_PROP, k.len) == 0) {
                    has_origin = loop_parse((const char *)v.ptr, v.len, &o);
                    break;
                }
            }
        }
        t = bridge_rule_in(b->conf, rtopic);
        if (has_origin && loop_seen(&b->ctx->loop, &o)) {
            /* Seen before (another path of a mesh, or our own): acknowledged, not published. */
            bridge_api(b)->metric_add(b->ctx->m_loops, 1);
        } else if (t == NULL) {
            BLOG(b, MIDGE_LOG_DEBUG, "incoming message matches no in topic rule topic=%s", rtopic);
        } else if ((size_t)snprintf(ltopic, sizeof(ltopic), "%s%s", t->local_prefix,
                                    rtopic + strlen(t->remote_prefix)) < sizeof(ltopic)) {
            if (!has_origin) {
                loop_new_origin(&b->ctx->loop, &o); /* from a non-midge or MQTT 3 remote */
            }
            publish_local(b, ltopic, pub, &o, a); /* a is made ready there or when settled */
            acks_flush(b);
            return;
        }
        if (a != NULL) {
            a->ready = 1;
            acks_flush(b);
        }
    }
}
