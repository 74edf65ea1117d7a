/*
 * midge MQTT codec: encoding of every control packet, MQTT 3.1, 3.1.1, 5.0.
 *
 * Each packet is sized first (so the caller can size a buffer with cap 0 and
 * nothing is written past cap), then written without further checks. For v5
 * acknowledgements the short forms are used when the reason code is 0 and
 * there are no properties (sections 3.4.2.1, 3.14.2.1, 3.15.2.1), as brokers
 * do. Pure, any thread.
 */
#include "mqtt.h"

#include <string.h>

/* Size of a property block with its length prefix; SIZE_MAX if unencodable. */
static size_t
props_block_size(const struct mqtt_props *props, size_t *inner)
{
    size_t n = mqtt_props_size(props);

    *inner = n;
    return n == SIZE_MAX ? SIZE_MAX : mqtt_varint_size((uint32_t)n) + n;
}

static inline uint8_t *
put_u16(uint8_t *o, uint32_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
    return o + 2;
}

static inline uint8_t *
put_bytes(uint8_t *o, const struct mqtt_bytes *b)
{
    o = put_u16(o, b->len);
    if (b->len > 0) {
        memcpy(o, b->ptr, b->len);
    }
    return o + b->len;
}

static inline uint8_t *
put_props(uint8_t *o, const struct mqtt_props *props)
{
    return o + mqtt_props_write(props, o);
}

/*
 * Adds a 2-byte-length string to *size; 0 when it is too long. Sizes are
 * summed in size_t and checked against the remaining length limit at the end.
 */
static inline int
add_bytes(size_t *size, const struct mqtt_bytes *b)
{
    *size += 2 + (size_t)b->len;
    return b->len <= 0xffff;
}

/* Adds a property block (v5 only) to *size; 0 when unencodable. */
static inline int
add_props(size_t *size, const struct mqtt_props *props, int v5)
{
    size_t inner, n = 0;

    if (v5) {
        n = props_block_size(props, &inner);
    }
    *size += n == SIZE_MAX ? 0 : n;
    return n != SIZE_MAX;
}

static size_t
connect_size(const struct mqtt_connect *c, int version, int *ok)
{
    int v5 = version == MQTT_V5;
    size_t size = (version == MQTT_V31 ? 8 : 6) + 1 + 1 + 2;

    *ok = add_props(&size, &c->props, v5) && add_bytes(&size, &c->client_id);
    if (c->will_flag) {
        *ok = *ok && add_props(&size, &c->will_props, v5) && add_bytes(&size, &c->will_topic) &&
              add_bytes(&size, &c->will_payload) && c->will_qos < 3;
    }
    if (c->has_username) {
        *ok = *ok && add_bytes(&size, &c->username);
    }
    if (c->has_password) {
        *ok = *ok && add_bytes(&size, &c->password);
    }
    return size;
}

static uint8_t *
connect_write(uint8_t *o, const struct mqtt_connect *c, int version)
{
    static const struct mqtt_bytes mqtt = { (const uint8_t *)"MQTT", 4 };
    static const struct mqtt_bytes mqisdp = { (const uint8_t *)"MQIsdp", 6 };
    int v5 = version == MQTT_V5;
    uint8_t flags = 0;

    o = put_bytes(o, version == MQTT_V31 ? &mqisdp : &mqtt);
    *o++ = (uint8_t)version;
    flags |= c->clean_start ? 0x02 : 0;
    if (c->will_flag) {
        flags |= (uint8_t)(0x04 | (c->will_qos & 3) << 3 | (c->will_retain ? 0x20 : 0));
    }
    flags |= c->has_password ? 0x40 : 0;
    flags |= c->has_username ? 0x80 : 0;
    *o++ = flags;
    o = put_u16(o, c->keep_alive);
    if (v5) {
        o = put_props(o, &c->props);
    }
    o = put_bytes(o, &c->client_id);
    if (c->will_flag) {
        if (v5) {
            o = put_props(o, &c->will_props);
        }
        o = put_bytes(o, &c->will_topic);
        o = put_bytes(o, &c->will_payload);
    }
    if (c->has_username) {
        o = put_bytes(o, &c->username);
    }
    if (c->has_password) {
        o = put_bytes(o, &c->password);
    }
    return o;
}

/* SUBSCRIBE entry count and size, from `entries` or, when NULL, from `raw`. */
static size_t
subscribe_size(const struct mqtt_subscribe *s, int *ok)
{
    struct mqtt_sub_entry e;
    uint32_t i, pos = 0;
    size_t size = 0;

    *ok = 1;
    if (s->entries != NULL) {
        for (i = 0; i < s->count; i++) {
            *ok = *ok && add_bytes(&size, &s->entries[i].filter);
            size++;
        }
    } else {
        while (mqtt_subscribe_next(s, &pos, &e)) {
            size += 3 + (size_t)e.filter.len;
        }
    }
    return size;
}

static uint8_t
sub_options(const struct mqtt_sub_entry *e, int v5)
{
    uint8_t opt = e->qos & 3;

    if (v5) {
        opt |= (uint8_t)((e->no_local ? 0x04 : 0) | (e->retain_as_published ? 0x08 : 0) |
                         (e->retain_handling & 3) << 4);
    }
    return opt;
}

static uint8_t *
subscribe_write(uint8_t *o, const struct mqtt_subscribe *s, int v5)
{
    struct mqtt_sub_entry e;
    uint32_t i, pos = 0;

    if (s->entries != NULL) {
        for (i = 0; i < s->count; i++) {
            o = put_bytes(o, &s->entries[i].filter);
            *o++ = sub_options(&s->entries[i], v5);
        }
    } else {
        while (mqtt_subscribe_next(s, &pos, &e)) {
            o = put_bytes(o, &e.filter);
            *o++ = sub_options(&e, v5);
        }
    }
    return o;
}

static size_t
unsubscribe_size(const struct mqtt_unsubscribe *u, int *ok)
{
    struct mqtt_bytes f;
    uint32_t i, pos = 0;
    size_t size = 0;

    *ok = 1;
    if (u->filters != NULL) {
        for (i = 0; i < u->count; i++) {
            *ok = *ok && add_bytes(&size, &u->filters[i]);
        }
    } else {
        while (mqtt_unsubscribe_next(u, &pos, &f)) {
            size += 2 + (size_t)f.len;
        }
    }
    return size;
}

static uint8_t *
unsubscribe_write(uint8_t *o, const struct mqtt_unsubscribe *u)
{
    struct mqtt_bytes f;
    uint32_t i, pos = 0;

    if (u->filters != NULL) {
        for (i = 0; i < u->count; i++) {
            o = put_bytes(o, &u->filters[i]);
        }
    } else {
        while (mqtt_unsubscribe_next(u, &pos, &f)) {
            o = put_bytes(o, &f);
        }
    }
    return o;
}

/*
 * Encodes one packet: see mqtt.h. `rem` is computed per type, then the
 * packet is written only if it fits in cap.
 */
size_t
mqtt_encode(const struct mqtt_packet *p, int version, uint8_t *out, size_t cap)
{
    int v5 = version == MQTT_V5, ok = 1;
    size_t rem = 0, total = 0, inner = 0, pblock = 0;
    uint8_t first = (uint8_t)(p->type << 4);
    const struct mqtt_props *props = NULL;
    uint8_t rc = 0;
    uint8_t *o;

    if (version != MQTT_V31 && version != MQTT_V311 && version != MQTT_V5) {
        goto out;
    }
    /* Which property block and reason code the packet carries (v5 only). */
    switch (p->type) {
    case MQTT_CONNACK:
        props = &p->u.connack.props;
        break;
    case MQTT_PUBLISH:
        props = &p->u.publish.props;
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        props = &p->u.ack.props;
        rc = p->u.ack.rc;
        break;
    case MQTT_SUBSCRIBE:
        props = &p->u.subscribe.props;
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        props = &p->u.suback.props;
        break;
    case MQTT_UNSUBSCRIBE:
        props = &p->u.unsubscribe.props;
        break;
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        props = &p->u.reason.props;
        rc = p->u.reason.rc;
        break;
    default:
        break;
    }
    if (v5 && props != NULL) {
        pblock = props_block_size(props, &inner);
        if (pblock == SIZE_MAX) {
            goto out;
        }
    }

    /* Remaining length. */
    switch (p->type) {
    case MQTT_CONNECT:
        rem = connect_size(&p->u.connect, version, &ok);
        break;
    case MQTT_CONNACK:
        rem = 2 + pblock;
        break;
    case MQTT_PUBLISH: {
        const struct mqtt_publish *pub = &p->u.publish;

        ok = pub->qos < 3 && pub->topic.len <= 0xffff;
        rem = 2 + (size_t)pub->topic.len + (pub->qos > 0 ? 2 : 0) + pblock + pub->payload.len;
        first |= (uint8_t)((pub->dup ? 0x08 : 0) | (pub->qos & 3) << 1 | (pub->retain ? 1 : 0));
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        rem = !v5 || (rc == 0 && inner == 0) ? 2 : inner == 0 ? 3 : 3 + pblock;
        first |= p->type == MQTT_PUBREL ? 0x02 : 0;
        break;
    case MQTT_SUBSCRIBE:
        rem = 2 + pblock + subscribe_size(&p->u.subscribe, &ok);
        first |= 0x02;
        break;
    case MQTT_SUBACK:
        rem = 2 + pblock + p->u.suback.rcs.len;
        break;
    case MQTT_UNSUBACK:
        rem = v5 ? 2 + pblock + p->u.suback.rcs.len : 2;
        break;
    case MQTT_UNSUBSCRIBE:
        rem = 2 + pblock + unsubscribe_size(&p->u.unsubscribe, &ok);
        first |= 0x02;
        break;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        rem = 0;
        break;
    case MQTT_DISCONNECT:
        rem = !v5 || (rc == 0 && inner == 0) ? 0 : inner == 0 ? 1 : 1 + pblock;
        break;
    case MQTT_AUTH:
        ok = v5; /* AUTH does not exist before 5.0 */
        rem = rc == 0 && inner == 0 ? 0 : 1 + pblock;
        break;
    default:
        ok = 0;
        break;
    }
    if (!ok || rem > MQTT_MAX_REMAINING_LENGTH) {
        goto out;
    }
    total = 1 + mqtt_varint_size((uint32_t)rem) + rem;
    if (total > cap) {
        goto out;
    }

    /* Write. */
    o = out;
    *o++ = first;
    o += mqtt_varint_write((uint32_t)rem, o);
    switch (p->type) {
    case MQTT_CONNECT:
        o = connect_write(o, &p->u.connect, version);
        break;
    case MQTT_CONNACK:
        *o++ = p->u.connack.session_present ? 1 : 0;
        *o++ = p->u.connack.rc;
        if (v5) {
            o = put_props(o, props);
        }
        break;
    case MQTT_PUBLISH: {
        const struct mqtt_publish *pub = &p->u.publish;

        o = put_bytes(o, &pub->topic);
        if (pub->qos > 0) {
            o = put_u16(o, pub->packet_id);
        }
        if (v5) {
            o = put_props(o, props);
        }
        if (pub->payload.len > 0) {
            memcpy(o, pub->payload.ptr, pub->payload.len);
            o += pub->payload.len;
        }
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        o = put_u16(o, p->u.ack.packet_id);
        if (rem > 2) {
            *o++ = rc;
        }
        if (rem > 3) {
            o = put_props(o, props);
        }
        break;
    case MQTT_SUBSCRIBE:
        o = put_u16(o, p->u.subscribe.packet_id);
        if (v5) {
            o = put_props(o, props);
        }
        o = subscribe_write(o, &p->u.subscribe, v5);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        o = put_u16(o, p->u.suback.packet_id);
        if (v5) {
            o = put_props(o, props);
        }
        if ((v5 || p->type == MQTT_SUBACK) && p->u.suback.rcs.len > 0) {
            memcpy(o, p->u.suback.rcs.ptr, p->u.suback.rcs.len);
            o += p->u.suback.rcs.len;
        }
        break;
    case MQTT_UNSUBSCRIBE:
        o = put_u16(o, p->u.unsubscribe.packet_id);
        if (v5) {
            o = put_props(o, props);
        }
        o = unsubscribe_write(o, &p->u.unsubscribe);
        break;
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        if (rem > 0) {
            *o++ = rc;
        }
        if (rem > 1) {
            o = put_props(o, props);
        }
        break;
    default:
        break;
    }
    (void)o;
out:
    return total;
}
