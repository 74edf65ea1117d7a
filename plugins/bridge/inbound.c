/*
 * Remote -> local: the remote subscriptions of `in`/`both` topics, and the
 * messages they bring. Each is published as the bridge's internal session
 * (api->session_publish), so the session's own `out` subscriptions, which
 * are No Local, never send it back where it came from. QoS 1 is
 * acknowledged after the local publish; QoS 2 is published once per packet
 * id and released on PUBREL [MQTT-4.3.3]. [home worker]
 */
#include "bridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
send_ack(struct bridge *b, int type, uint16_t id)
{
    struct mqtt_packet p;

    memset(&p, 0, sizeof(p));
    p.type = (uint8_t)type;
    p.u.ack.packet_id = id;
    link_send(b, &p);
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

static void
publish_local(struct bridge *b, const char *topic, const struct mqtt_publish *pub,
              const struct origin *o)
{
    const struct midge_api *api = bridge_api(b);
    int rc;

    if (o != NULL) {
        loop_inject_begin(b->ctx, o, topic);
    }
    if (topic[0] == '$') {
        /* session_publish refuses $ topics: publish as the broker (no No Local needed there). */
        rc = api->publish(bridge_self(b), topic, pub->payload.ptr, pub->payload.len, pub->qos,
                          pub->retain);
    } else {
        rc = api->session_publish(b->s, topic, pub->payload.ptr, pub->payload.len, pub->qos,
                                  pub->retain);
    }
    if (o != NULL) {
        loop_inject_end();
    }
    if (rc != 0) {
        BLOG(b, MIDGE_LOG_WARNING, "cannot publish incoming message locally topic=%s error=%d",
             topic, rc);
        return;
    }
    api->metric_add(b->ctx->m_received, 1);
}

void
in_on_packet(struct bridge *b, const struct mqtt_packet *p)
{
    if (p->type == MQTT_PUBREL) {
        uint16_t id = p->u.ack.packet_id;
        b->qos2_in[id >> 3] &= (uint8_t)~(1u << (id & 7));
        send_ack(b, MQTT_PUBCOMP, id);
        return;
    }
    {
        const struct mqtt_publish *pub = &p->u.publish;
        char rtopic[65536 + 1];
        char ltopic[65536 + 1];
        const struct bridge_topic *t;
        uint16_t id = pub->packet_id;
        struct origin o;
        int has_origin = 0;

        if (pub->topic.len == 0) {
            link_drop(b, "protocol error: topic alias without a Topic Alias Maximum");
            return;
        }
        memcpy(rtopic, pub->topic.ptr, pub->topic.len);
        rtopic[pub->topic.len] = '\0';
        if (pub->qos == 2 && (b->qos2_in[id >> 3] & (1u << (id & 7)))) {
            send_ack(b, MQTT_PUBREC, id); /* already published: the remote sent it again */
            return;
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
            publish_local(b, ltopic, pub, has_origin ? &o : NULL);
        }
        if (pub->qos == 1) {
            send_ack(b, MQTT_PUBACK, id);
        } else if (pub->qos == 2) {
            b->qos2_in[id >> 3] |= (uint8_t)(1u << (id & 7));
            send_ack(b, MQTT_PUBREC, id);
        }
    }
}
