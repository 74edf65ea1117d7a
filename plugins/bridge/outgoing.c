/*
 * Local -> remote. The bridge's internal session delivers every message
 * matching its `out`/`both` subscriptions. QoS 1/2 deliveries are held here,
 * in delivery order, until the remote acknowledges them (PUBACK, or PUBCOMP
 * for QoS 2); only then does the session forget them (api->session_ack), so
 * a message is never lost to a dropped link or a broker restart (the session
 * is persisted like a client's). The session's id of a delivery is also the
 * packet id towards the remote, so after a reconnect the same PUBLISH goes
 * out again with DUP [MQTT-4.4.0-1] and a QoS 2 message whose PUBREC came in
 * is released with PUBREL, not published twice.
 *
 * At most the remote's Receive Maximum are in flight [MQTT-4.9.0-2]; the
 * rest wait here, at most queue_max_messages / queue_max_bytes: past that
 * new deliveries are dropped, counted and logged.
 *
 * Back-pressure (out_window): while the link is up the session's window is
 * queue_max_messages, so the session hands over no more than fit here and
 * keeps the rest in its own queue in the broker, which pauses local
 * publishers while the remote acknowledges and that queue grows: a remote
 * slower than the publishers slows them instead of costing messages they had
 * acknowledged. While the link is down the window is 65535: everything comes
 * here and the bound drops, and as nothing is acknowledged the broker is not
 * paused for a dead link. [home worker]
 */
#include "bridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_BUFFER_HIGH (4u << 20) /* stop feeding the socket buffer past this */

static void
count_drop(struct bridge *b, const char *topic, const char *why)
{
    b->drops++;
    bridge_api(b)->metric_add(b->ctx->m_dropped, 1);
    bridge_api(b)->metric_add(b->lm.dropped, 1);
    if (b->drops == 1 || b->drops % 1000 == 0) {
        BLOG(b, MIDGE_LOG_WARNING, "dropped message topic=%s reason=\"%s\" drops=%llu", topic, why,
             (unsigned long long)b->drops);
    }
}

static void
unlink_held(struct bridge *b, struct held *h)
{
    if (h->prev != NULL) {
        h->prev->next = h->next;
    } else {
        b->head = h->next;
    }
    if (h->next != NULL) {
        h->next->prev = h->prev;
    } else {
        b->tail = h->prev;
    }
    if (b->cursor == h) {
        b->cursor = h->next;
    }
    b->by_id[h->id] = NULL;
    b->nheld--;
    b->held_bytes -= h->bytes;
}

/* The message is done with (acknowledged or dropped): the session forgets it. */
static void
finish(struct bridge *b, struct held *h)
{
    uint16_t id = h->id;

    if (h->state != HELD_WAITING && b->inflight > 0) {
        b->inflight--;
    }
    unlink_held(b, h);
    if (h->msg != NULL) {
        bridge_api(b)->message_unref(h->msg);
    }
    free(h);
    bridge_api(b)->session_ack(b->s, id);
}

/* Builds the remote topic for local `topic` in buf; NULL when no out rule applies. */
static const char *
remote_topic(const struct bridge *b, const char *topic, char *buf, size_t cap)
{
    const struct bridge_topic *t = bridge_rule_out(b->conf, topic);
    size_t lp;

    if (t == NULL) {
        return NULL;
    }
    lp = strlen(t->local_prefix);
    if ((size_t)snprintf(buf, cap, "%s%s", t->remote_prefix, topic + lp) >= cap) {
        return NULL;
    }
    return buf;
}

/*
 * Encodes a PUBLISH of `msg` for the remote into the output buffer.
 * Returns 0 sent, 1 dropped (logged: no rule, too large, bad properties),
 * -1 the connection failed.
 */
/*
 * The message's user properties without any midge-origin, then ours, into
 * buf (encoded pairs, 0x26 included). Returns the length, or 0 when they do
 * not fit.
 */
size_t
bridge_user_props_with_origin(const struct mqtt_props *in, const struct origin *o, uint8_t *buf,
                       size_t cap)
{
    uint32_t pos = 0;
    struct mqtt_bytes k;
    struct mqtt_bytes v;
    size_t n = 0;
    char val[48];
    size_t vl = loop_format(o, val);
    size_t kl = sizeof(LOOP_PROP) - 1;

    while (mqtt_user_prop_next(in, &pos, &k, &v)) {
        if (k.len == kl && memcmp(k.ptr, LOOP_PROP, kl) == 0) {
            continue;
        }
        if (n + 5 + k.len + v.len > cap) {
            return 0;
        }
        buf[n++] = MQTT_PROP_USER_PROPERTY;
        buf[n++] = (uint8_t)(k.len >> 8);
        buf[n++] = (uint8_t)k.len;
        memcpy(buf + n, k.ptr, k.len);
        n += k.len;
        buf[n++] = (uint8_t)(v.len >> 8);
        buf[n++] = (uint8_t)v.len;
        memcpy(buf + n, v.ptr, v.len);
        n += v.len;
    }
    if (n + 5 + kl + vl > cap) {
        return 0;
    }
    buf[n++] = MQTT_PROP_USER_PROPERTY;
    buf[n++] = 0;
    buf[n++] = (uint8_t)kl;
    memcpy(buf + n, LOOP_PROP, kl);
    n += kl;
    buf[n++] = 0;
    buf[n++] = (uint8_t)vl;
    memcpy(buf + n, val, vl);
    return n + vl;
}

int
out_send_publish(struct bridge *b, const midge_message *msg, int qos, int retain, uint16_t pid,
                 int dup, const struct origin *o)
{
    const struct midge_api *api = bridge_api(b);
    const char *topic = api->message_topic(msg);
    char rbuf[65536 + 1];
    const char *rt = remote_topic(b, topic, rbuf, sizeof(rbuf));
    struct mqtt_packet p;
    uint32_t plen = 0;
    const void *payload = api->message_payload(msg, &plen);
    uint8_t pblock[8 + 65536];
    uint8_t ubuf[65536 + 64];
    size_t ulen;
    size_t n;
    uint32_t limit = b->conf->max_packet_size;

    if (rt == NULL) {
        count_drop(b, topic, "no out topic rule maps it");
        return 1;
    }
    memset(&p, 0, sizeof(p));
    p.type = MQTT_PUBLISH;
    p.u.publish.qos = (uint8_t)qos;
    p.u.publish.retain = (uint8_t)(retain && b->remote_retain);
    p.u.publish.dup = (uint8_t)(dup && qos > 0);
    p.u.publish.packet_id = qos > 0 ? pid : 0;
    p.u.publish.topic.ptr = (const uint8_t *)rt;
    p.u.publish.topic.len = (uint32_t)strlen(rt);
    p.u.publish.payload.ptr = payload;
    p.u.publish.payload.len = plen;
    if (b->version == MQTT_V5) {
        uint32_t len = 0;
        const void *props = api->message_properties(msg, &len);
        uint32_t expiry = api->message_expiry(msg);
        if (props != NULL && len > 0) {
            size_t vl = mqtt_varint_write(len, pblock);
            size_t used;
            uint8_t rc;
            if (len > sizeof(pblock) - vl) {
                count_drop(b, topic, "properties too large to forward");
                return 1;
            }
            memcpy(pblock + vl, props, len);
            if (mqtt_props_read(pblock, vl + len, MQTT_PUBLISH, &p.u.publish.props, &used, &rc) !=
                MQTT_OK) {
                count_drop(b, topic, "invalid properties");
                return 1;
            }
        }
        if (expiry > 0) {
            p.u.publish.props.present |= MQTT_PBIT(MQTT_PROP_MESSAGE_EXPIRY);
            p.u.publish.props.message_expiry = expiry;
        }
        ulen = bridge_user_props_with_origin(&p.u.publish.props, o, ubuf, sizeof(ubuf));
        if (ulen == 0) {
            count_drop(b, topic, "user properties too large to forward");
            return 1;
        }
        p.u.publish.props.user_props.ptr = ubuf;
        p.u.publish.props.user_props.len = (uint32_t)ulen;
    }
    if (b->remote_maxpkt != 0 && (limit == 0 || b->remote_maxpkt < limit)) {
        limit = b->remote_maxpkt;
    }
    n = mqtt_encode(&p, b->version, NULL, 0);
    if (n == 0 || (limit != 0 && n > limit)) {
        char why[96];
        snprintf(why, sizeof(why), "packet of %zu bytes over the maximum packet size %u", n, limit);
        count_drop(b, topic, why);
        return 1;
    }
    if (link_send(b, &p) != 0) {
        link_drop(b, "out of memory");
        return -1;
    }
    api->metric_add(b->ctx->m_sent, 1);
    api->metric_add(b->lm.sent, 1);
    b->activity++;
    return 0;
}

static void
send_pubrel(struct bridge *b, uint16_t id)
{
    struct mqtt_packet p;

    memset(&p, 0, sizeof(p));
    p.type = MQTT_PUBREL;
    p.u.ack.packet_id = id;
    link_send(b, &p);
}

void
out_window(struct bridge *b, int up)
{
    const struct midge_api *api = bridge_api(b);
    uint32_t max = b->conf->queue_max_messages;
    uint16_t w = 65535;

    if (up && max > 0 && max < 65535) {
        w = (uint16_t)max;
    }
    if (b->s != NULL && MIDGE_API_HAS(api, session_window)) {
        api->session_window(b->s, w);
    }
}

void
out_pump(struct bridge *b)
{
    while (b->state == LINK_UP && b->cursor != NULL && b->inflight < b->remote_rm &&
           b->out.len - b->out.off < OUT_BUFFER_HIGH) {
        struct held *h = b->cursor;
        int qos = h->qos < b->remote_maxqos ? h->qos : b->remote_maxqos;
        int r;

        b->cursor = h->next;
        if (h->state == HELD_RELEASED) {
            send_pubrel(b, h->id);
            b->inflight++;
            continue;
        }
        r = out_send_publish(b, h->msg, qos, h->retain, h->id, h->dup, &h->origin);
        if (r < 0) {
            return;
        }
        if (r > 0 || qos == 0) {
            finish(b, h); /* dropped, or sent at QoS 0 (the remote's Maximum QoS): done */
            continue;
        }
        h->state = HELD_SENT;
        h->dup = 1;
        b->inflight++;
    }
    link_flush(b);
}

static void held_append(struct bridge *b, struct held *h);

void
out_deliver(void *arg, midge_session *s, const midge_message *msg, int qos, int retain,
            uint32_t id, int dup)
{
    struct bridge *b = arg;
    const struct midge_api *api = bridge_api(b);
    struct held *h;
    uint32_t plen = 0;
    struct origin o;

    if (b->s != s) {
        return;
    }
    if (loop_classify(b->ctx, msg, &o) && !b->conf->forward_bridged) {
        /* Split horizon: it came over a bridge and goes over no other. */
        if (id != 0) {
            api->session_ack(s, id);
        }
        return;
    }
    if (id == 0) {
        if (b->state != LINK_UP) {
            count_drop(b, api->message_topic(msg), "QoS 0 while the link is down");
            return;
        }
        if (b->out.len - b->out.off >= OUT_BUFFER_HIGH) {
            count_drop(b, api->message_topic(msg), "QoS 0 while the remote does not keep up");
            return;
        }
        if (out_send_publish(b, msg, 0, retain, 0, 0, &o) == 0) {
            link_flush(b);
        }
        return;
    }
    if (id > 65535 || b->by_id[id] != NULL) {
        return; /* already held (delivered again): it keeps its place */
    }
    api->message_payload(msg, &plen);
    if (b->nheld >= b->conf->queue_max_messages ||
        (b->conf->queue_max_bytes > 0 &&
         b->held_bytes + plen + strlen(api->message_topic(msg)) > b->conf->queue_max_bytes)) {
        count_drop(b, api->message_topic(msg), "bridge queue full");
        api->session_ack(s, id);
        return;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        count_drop(b, api->message_topic(msg), "out of memory");
        api->session_ack(s, id);
        return;
    }
    h->msg = api->message_ref(msg);
    h->id = (uint16_t)id;
    h->qos = (uint8_t)qos;
    h->retain = (uint8_t)retain;
    h->dup = (uint8_t)(dup != 0);
    h->bytes = plen + (uint32_t)strlen(api->message_topic(msg));
    h->origin = o;
    held_append(b, h);
    link_lazy_check(b);
    out_pump(b);
}

/* Appends h to the held list (and the send cursor). */
static void
held_append(struct bridge *b, struct held *h)
{
    h->prev = b->tail;
    if (b->tail != NULL) {
        b->tail->next = h;
    } else {
        b->head = h;
    }
    b->tail = h;
    if (b->cursor == NULL) {
        b->cursor = h;
    }
    b->by_id[h->id] = h;
    b->nheld++;
    b->held_bytes += h->bytes;
}

void
out_released(void *arg, midge_session *s, uint32_t id)
{
    struct bridge *b = arg;
    struct held *h;

    if (b->s != s || id == 0 || id > 65535 || b->by_id[id] != NULL) {
        return; /* not ours, or held already (it keeps its state) */
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return; /* stays released in the session: handed back at the next open */
    }
    h->id = (uint16_t)id;
    h->qos = 2;
    h->state = HELD_RELEASED;
    held_append(b, h);
    link_lazy_check(b);
    out_pump(b);
}

void
out_on_ack(struct bridge *b, const struct mqtt_packet *p)
{
    uint16_t id = p->u.ack.packet_id;
    struct held *h = b->by_id != NULL ? b->by_id[id] : NULL;

    if (h == NULL || h->state == HELD_WAITING) {
        return; /* not ours (or from an earlier connection): nothing to do */
    }
    if (p->u.ack.rc >= 0x80) {
        char why[96];
        snprintf(why, sizeof(why), "refused by the remote: %s (0x%02x)", mqtt_rc_name(p->u.ack.rc),
                 p->u.ack.rc);
        count_drop(b, h->msg != NULL ? bridge_api(b)->message_topic(h->msg) : "(released)", why);
        finish(b, h);
    } else if (p->type == MQTT_PUBREC && h->state == HELD_SENT && h->qos == 2) {
        h->state = HELD_RELEASED;
        /* Recorded (persisted) first: after a restart it is released again, never re-sent. */
        bridge_api(b)->session_released(b->s, id);
        send_pubrel(b, id);
    } else if ((p->type == MQTT_PUBACK && h->state == HELD_SENT) ||
               (p->type == MQTT_PUBCOMP && h->state == HELD_RELEASED)) {
        finish(b, h);
    }
    out_pump(b);
}

void
out_link_lost(struct bridge *b)
{
    struct held *h;

    for (h = b->head; h != NULL; h = h->next) {
        if (h->state == HELD_SENT) {
            h->state = HELD_WAITING;
        }
    }
    b->cursor = b->head;
    b->inflight = 0;
    out_window(b, 0);
}

void
out_free(struct bridge *b)
{
    while (b->head != NULL) {
        struct held *h = b->head;
        b->head = h->next;
        if (h->msg != NULL) {
            bridge_api(b)->message_unref(h->msg);
        }
        free(h);
    }
    b->tail = b->cursor = NULL;
    b->nheld = 0;
    b->held_bytes = 0;
    b->inflight = 0;
    if (b->by_id != NULL) {
        memset(b->by_id, 0, 65536 * sizeof(*b->by_id));
    }
}
