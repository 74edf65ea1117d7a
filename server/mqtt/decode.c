/*
 * midge MQTT codec: framing and decoding of every control packet, MQTT 3.1,
 * 3.1.1 and 5.0.
 *
 * Error split follows MQTT 5.0 section 4.13: Malformed Packet (0x81) when the
 * bytes cannot be parsed per the spec, Protocol Error (0x82) when they parse
 * but the data is not allowed. The same codes are returned for v3 connections;
 * the caller maps them (a v3 connection is simply closed). Where a packet has
 * both kinds of faults, a parse fault found first wins.
 *
 * A reason code not allowed for its packet type (e.g. AUTH 0x80) is a
 * Protocol Error: the byte parses, its value is what is wrong.
 *
 * Decoded packets hold views into the input buffer. Pure, any thread.
 */
#include "mqtt.h"

#include <string.h>

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#define HAS_ZERO(w) (((w) - ONES) & ~(w) & HIGHS)

/* Reading cursor over the rest of one packet. */
struct rd {
    const uint8_t *p;
    const uint8_t *end;
};

static inline int
rd_u8(struct rd *r, uint8_t *v)
{
    int ok = r->p < r->end;

    if (ok) {
        *v = *r->p++;
    }
    return ok;
}

static inline int
rd_u16(struct rd *r, uint16_t *v)
{
    int ok = r->end - r->p >= 2;

    if (ok) {
        *v = (uint16_t)(r->p[0] << 8 | r->p[1]);
        r->p += 2;
    }
    return ok;
}

/* Two-byte length then that many bytes (binary data). */
static inline int
rd_bin(struct rd *r, struct mqtt_bytes *b)
{
    uint32_t n;
    int ok = 0;

    if (r->end - r->p >= 2) {
        n = (uint32_t)r->p[0] << 8 | r->p[1];
        if ((size_t)(r->end - r->p - 2) >= n) {
            b->ptr = r->p + 2;
            b->len = n;
            r->p += 2 + n;
            ok = 1;
        }
    }
    return ok;
}

/* A UTF-8 Encoded String [MQTT-1.5.4-1, -2]. */
static inline int
rd_str(struct rd *r, struct mqtt_bytes *b)
{
    return rd_bin(r, b) && mqtt_utf8_valid(b->ptr, b->len);
}

static inline uint8_t
rd_props(struct rd *r, int ctx, struct mqtt_props *props)
{
    size_t used = 0;
    uint8_t rc;

    if (mqtt_props_read(r->p, (size_t)(r->end - r->p), ctx, props, &used, &rc) == MQTT_OK) {
        r->p += used;
    }
    return rc;
}

/*
 * Checks a topic name: valid UTF-8 string (else Malformed), no '+' or '#'
 * (else Topic Name Invalid) [MQTT-3.3.2-2]. ASCII is scanned a word at a time.
 */
static uint8_t
topic_name_check(const uint8_t *s, size_t len)
{
    const uint64_t plus = ONES * '+', hash = ONES * '#';
    uint8_t rc = MQTT_RC_SUCCESS;
    size_t i = 0;
    uint64_t w;

    while (i + 8 <= len) {
        memcpy(&w, s + i, sizeof(w));
        if (((w & HIGHS) | HAS_ZERO(w) | HAS_ZERO(w ^ plus) | HAS_ZERO(w ^ hash)) != 0) {
            break;
        }
        i += 8;
    }
    for (; i < len; i++) {
        uint8_t c = s[i];

        if (c >= 0x80) {
            /* Non-ASCII: i is on a character boundary, check the rest as a whole. */
            if (!mqtt_utf8_valid(s + i, len - i)) {
                rc = MQTT_RC_MALFORMED_PACKET;
            } else if (rc == MQTT_RC_SUCCESS && (memchr(s + i, '+', len - i) != NULL ||
                                                 memchr(s + i, '#', len - i) != NULL)) {
                rc = MQTT_RC_TOPIC_NAME_INVALID;
            }
            break;
        }
        if (c == 0) {
            rc = MQTT_RC_MALFORMED_PACKET;
            break;
        }
        if (c == '+' || c == '#') {
            rc = MQTT_RC_TOPIC_NAME_INVALID; /* keep scanning: bad UTF-8 wins */
        }
    }
    return rc;
}

/*
 * Reserved flag bits of the fixed header [MQTT-2.1.3-1], QoS 3
 * [MQTT-3.3.1-4] and DUP with QoS 0 [MQTT-3.3.1-2]. MQTT 3.1 had a DUP bit on
 * PUBREL, SUBSCRIBE and UNSUBSCRIBE (sent as QoS 1 messages), so v3.1
 * retransmissions with DUP set are accepted.
 */
static int
flags_ok(uint8_t type, uint8_t flags, int version)
{
    int ok;

    switch (type) {
    case MQTT_PUBLISH: {
        uint8_t qos = (flags >> 1) & 3;

        ok = qos != 3 && !(qos == 0 && (flags & 8));
        break;
    }
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        ok = flags == 2 || (version == MQTT_V31 && flags == 0xa);
        break;
    default:
        ok = flags == 0;
        break;
    }
    return ok;
}

/* Reason codes each packet type may carry (MQTT 5.0 section 2.4 and per packet). */
static int
rc_allowed(uint8_t type, uint8_t rc)
{
    int ok = 0;

    switch (type) {
    case MQTT_CONNACK:
        switch (rc) {
        case 0x00: case 0x80: case 0x81: case 0x82: case 0x83: case 0x84: case 0x85:
        case 0x86: case 0x87: case 0x88: case 0x89: case 0x8A: case 0x8C: case 0x90:
        case 0x95: case 0x97: case 0x99: case 0x9A: case 0x9B: case 0x9C: case 0x9D:
        case 0x9F:
            ok = 1;
            break;
        }
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
        switch (rc) {
        case 0x00: case 0x10: case 0x80: case 0x83: case 0x87: case 0x90: case 0x91:
        case 0x97: case 0x99:
            ok = 1;
            break;
        }
        break;
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        ok = rc == 0x00 || rc == 0x92;
        break;
    case MQTT_SUBACK:
        switch (rc) {
        case 0x00: case 0x01: case 0x02: case 0x80: case 0x83: case 0x87: case 0x8F:
        case 0x91: case 0x97: case 0x9E: case 0xA1: case 0xA2:
            ok = 1;
            break;
        }
        break;
    case MQTT_UNSUBACK:
        switch (rc) {
        case 0x00: case 0x11: case 0x80: case 0x83: case 0x87: case 0x8F: case 0x91:
            ok = 1;
            break;
        }
        break;
    case MQTT_DISCONNECT:
        switch (rc) {
        case 0x00: case 0x04: case 0x80: case 0x81: case 0x82: case 0x83: case 0x87:
        case 0x89: case 0x8B: case 0x8D: case 0x8E: case 0x8F: case 0x90: case 0x93:
        case 0x94: case 0x95: case 0x96: case 0x97: case 0x98: case 0x99: case 0x9A:
        case 0x9B: case 0x9C: case 0x9D: case 0x9E: case 0x9F: case 0xA0: case 0xA1:
        case 0xA2:
            ok = 1;
            break;
        }
        break;
    case MQTT_AUTH:
        ok = rc == 0x00 || rc == 0x18 || rc == 0x19;
        break;
    default:
        break;
    }
    return ok;
}

/* The fixed header: see mqtt.h. */
enum mqtt_status
mqtt_frame(const uint8_t *buf, size_t len, uint8_t *first_byte, uint32_t *remaining,
           size_t *header_len, uint8_t *rc)
{
    enum mqtt_status st = MQTT_NEED_MORE;
    uint32_t v = 0;
    int n;

    if (len == 0) {
        goto out;
    }
    if ((buf[0] >> 4) == 0) {
        *rc = MQTT_RC_MALFORMED_PACKET; /* reserved packet type */
        st = MQTT_ERROR;
        goto out;
    }
    n = mqtt_varint_read(buf + 1, len - 1, &v);
    if (n == 0) {
        goto out;
    }
    if (n < 0) {
        *rc = MQTT_RC_MALFORMED_PACKET; /* section 1.5.5: at most 4 bytes */
        st = MQTT_ERROR;
        goto out;
    }
    *first_byte = buf[0];
    *remaining = v;
    *header_len = 1 + (size_t)n;
    *rc = MQTT_RC_SUCCESS;
    st = MQTT_OK;
out:
    return st;
}

/*
 * CONNECT (section 3.1). c->version is set as soon as the level byte is read,
 * so an unsupported level can be answered in the client's own version.
 */
static uint8_t
decode_connect(struct rd *r, struct mqtt_connect *c)
{
    uint8_t rc = MQTT_RC_MALFORMED_PACKET;
    struct mqtt_bytes name;
    uint8_t level, flags;
    int v5;

    memset(c, 0, sizeof(*c));
    if (!rd_bin(r, &name) || !rd_u8(r, &level)) {
        goto out;
    }
    c->version = level;
    if (!(name.len == 4 && memcmp(name.ptr, "MQTT", 4) == 0 && (level == 4 || level == 5)) &&
        !(name.len == 6 && memcmp(name.ptr, "MQIsdp", 6) == 0 && level == 3)) {
        rc = MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION; /* [MQTT-3.1.2-1, -2] */
        goto out;
    }
    v5 = level == MQTT_V5;
    if (!rd_u8(r, &flags) || !rd_u16(r, &c->keep_alive)) {
        goto out;
    }
    c->clean_start = (flags >> 1) & 1;
    c->will_flag = (flags >> 2) & 1;
    c->will_qos = (flags >> 3) & 3;
    c->will_retain = (flags >> 5) & 1;
    c->has_password = (flags >> 6) & 1;
    c->has_username = (flags >> 7) & 1;
    if ((flags & 1) != 0 || c->will_qos == 3) {
        goto out; /* [MQTT-3.1.2-3], [MQTT-3.1.2-12] */
    }
    if (!c->will_flag && (c->will_qos != 0 || c->will_retain)) {
        goto out; /* [MQTT-3.1.2-11], [MQTT-3.1.2-13] */
    }
    if (!v5 && c->has_password && !c->has_username) {
        goto out; /* [MQTT-3.1.2-22] of 3.1.1; allowed in 5.0 */
    }
    if (v5 && (rc = rd_props(r, MQTT_CONNECT, &c->props)) != MQTT_RC_SUCCESS) {
        goto out;
    }
    rc = MQTT_RC_MALFORMED_PACKET;
    if (!rd_str(r, &c->client_id)) {
        goto out; /* empty is allowed here: the broker decides [MQTT-3.1.3-6] */
    }
    if (c->will_flag) {
        if (v5 && (rc = rd_props(r, MQTT_PROPS_WILL, &c->will_props)) != MQTT_RC_SUCCESS) {
            goto out;
        }
        rc = MQTT_RC_MALFORMED_PACKET;
        if (!rd_bin(r, &c->will_topic) || !rd_bin(r, &c->will_payload)) {
            goto out;
        }
    }
    if (c->has_username && !rd_str(r, &c->username)) {
        goto out;
    }
    if (c->has_password && !rd_bin(r, &c->password)) {
        goto out;
    }
    if (r->p != r->end) {
        goto out;
    }
    if (c->will_flag) {
        /*
         * The will topic is a topic name: bad UTF-8 is Malformed, wildcards are
         * Topic Name Invalid (a valid v5 CONNACK code), empty is a Protocol
         * Error as for PUBLISH (no alias exists for a will) [MQTT-4.7.3-1].
         */
        rc = topic_name_check(c->will_topic.ptr, c->will_topic.len);
        if (rc == MQTT_RC_SUCCESS && c->will_topic.len == 0) {
            rc = MQTT_RC_PROTOCOL_ERROR;
        }
        if (rc == MQTT_RC_SUCCESS && c->will_props.payload_format == 1 &&
            !mqtt_utf8_wellformed(c->will_payload.ptr, c->will_payload.len)) {
            rc = MQTT_RC_PAYLOAD_FORMAT_INVALID; /* section 3.1.3.2.3 */
        }
        if (rc != MQTT_RC_SUCCESS) {
            goto out;
        }
    }
    rc = MQTT_RC_SUCCESS;
out:
    return rc;
}

/* CONNACK (section 3.2). */
static uint8_t
decode_connack(struct rd *r, int v5, struct mqtt_connack *c)
{
    uint8_t rc = MQTT_RC_MALFORMED_PACKET;
    uint8_t flags;

    memset(c, 0, sizeof(*c));
    if (!rd_u8(r, &flags) || !rd_u8(r, &c->rc)) {
        goto out;
    }
    if ((flags & 0xfe) != 0) {
        goto out; /* [MQTT-3.2.2-1] reserved */
    }
    c->session_present = flags & 1;
    if (v5 && (rc = rd_props(r, MQTT_CONNACK, &c->props)) != MQTT_RC_SUCCESS) {
        goto out;
    }
    rc = MQTT_RC_MALFORMED_PACKET;
    if (r->p != r->end) {
        goto out;
    }
    rc = MQTT_RC_PROTOCOL_ERROR;
    if (v5 ? !rc_allowed(MQTT_CONNACK, c->rc) : c->rc > MQTT_V3_REFUSED_NOT_AUTHORIZED) {
        goto out;
    }
    if (c->rc != 0 && c->session_present) {
        goto out; /* [MQTT-3.2.2-6] of 5.0, [MQTT-3.2.2-4] of 3.1.1 */
    }
    rc = MQTT_RC_SUCCESS;
out:
    return rc;
}

/* PUBLISH (section 3.3): the hot path, a straight-line parse. */
static uint8_t
decode_publish(struct rd *r, uint8_t flags, int v5, struct mqtt_publish *pub)
{
    uint8_t rc = MQTT_RC_MALFORMED_PACKET;

    memset(pub, 0, sizeof(*pub));
    pub->qos = (flags >> 1) & 3;
    pub->dup = (flags >> 3) & 1;
    pub->retain = flags & 1;
    if (!rd_bin(r, &pub->topic)) {
        goto out;
    }
    if (pub->qos > 0 && !rd_u16(r, &pub->packet_id)) {
        goto out;
    }
    if (v5) {
        if (r->p < r->end && *r->p == 0) {
            r->p++; /* no properties: the common case */
        } else if ((rc = rd_props(r, MQTT_PUBLISH, &pub->props)) != MQTT_RC_SUCCESS) {
            goto out;
        }
    }
    rc = topic_name_check(pub->topic.ptr, pub->topic.len); /* [MQTT-3.3.2-1, -2] */
    if (rc != MQTT_RC_SUCCESS) {
        goto out;
    }
    rc = MQTT_RC_PROTOCOL_ERROR;
    if (pub->qos > 0 && pub->packet_id == 0) {
        goto out; /* [MQTT-2.2.1-3] */
    }
    /*
     * An empty topic name is valid only with a Topic Alias (v5, section
     * 3.3.2.3.4). Without one it is a Protocol Error in both versions: in v3
     * it is arguably Malformed, but the connection is closed either way.
     */
    if (pub->topic.len == 0 && !(pub->props.present & MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS))) {
        goto out;
    }
    pub->payload.ptr = r->p;
    pub->payload.len = (uint32_t)(r->end - r->p);
    if (pub->props.payload_format == 1 &&
        !mqtt_utf8_wellformed(pub->payload.ptr, pub->payload.len)) {
        rc = MQTT_RC_PAYLOAD_FORMAT_INVALID; /* section 3.3.2.3.2 */
        goto out;
    }
    rc = MQTT_RC_SUCCESS;
out:
    return rc;
}

/*
 * PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4-3.7). In v5 the reason code
 * and the properties may be left out (remaining length 2 or 3).
 */
static uint8_t
decode_ack(struct rd *r, uint8_t type, int v5, struct mqtt_ack *a)
{
    uint8_t rc = MQTT_RC_MALFORMED_PACKET;

    memset(a, 0, sizeof(*a));
    if (!rd_u16(r, &a->packet_id)) {
        goto out;
    }
    if (v5 && rd_u8(r, &a->rc) && r->p < r->end) {
        if ((rc = rd_props(r, type, &a->props)) != MQTT_RC_SUCCESS) {
            goto out;
        }
        rc = MQTT_RC_MALFORMED_PACKET;
    }
    if (r->p != r->end) {
        goto out;
    }
    rc = MQTT_RC_PROTOCOL_ERROR;
    if (a->packet_id == 0 || !rc_allowed(type, a->rc)) {
        goto out; /* [MQTT-2.2.1-3]: packet ids are non-zero */
    }
    rc = MQTT_RC_SUCCESS;
out:
    return rc;
}

/* SUBSCRIBE (section 3.8). Entries are validated here, iterated later. */
static uint8_t
decode_subscribe(struct rd *r, int version, struct mqtt_subscribe *s)
{
    uint8_t rc = MQTT_RC_MALFORMED_PACKET, proto = MQTT_RC_SUCCESS;
    int v5 = version == MQTT_V5;
    struct mqtt_bytes f;
    uint8_t opt;

    memset(s, 0, sizeof(*s));
    if (!rd_u16(r, &s->packet_id)) {
        goto out;
    }
    if (v5 && (rc = rd_props(r, MQTT_SUBSCRIBE, &s->props)) != MQTT_RC_SUCCESS) {
        goto out;
    }
    rc = MQTT_RC_MALFORMED_PACKET;
    s->raw.ptr = r->p;
    while (r->p < r->end) {
        if (!rd_str(r, &f) || !rd_u8(r, &opt)) {
            goto out; /* [MQTT-3.8.3-1] */
        }
        if ((opt & 3) == 3) {
            goto out; /* QoS 3 [MQTT-3.8.3-4 of 3.1.1] */
        }
        if (!v5) {
            if ((opt & 0xfc) != 0) {
                goto out; /* [MQTT-3-8.3-4 of 3.1.1]: upper 6 bits reserved */
            }
        } else {
            if ((opt & 0xc0) != 0) {
                goto out; /* [MQTT-3.8.3-5] */
            }
            if (((opt >> 4) & 3) == 3) {
                proto = MQTT_RC_PROTOCOL_ERROR; /* Retain Handling 3, section 3.8.3.1 */
            }
            if ((opt & 4) && f.len >= 7 && memcmp(f.ptr, "$share/", 7) == 0) {
                proto = MQTT_RC_PROTOCOL_ERROR; /* No Local on a shared sub [MQTT-3.8.3-4] */
            }
        }
        s->count++;
    }
    s->raw.len = (uint32_t)(r->end - s->raw.ptr);
    rc = MQTT_RC_PROTOCOL_ERROR;
    if (s->packet_id == 0 || s->count == 0) {
        goto out; /* [MQTT-2.2.1-3], [MQTT-3.8.3-2] */
    }
    rc = proto;
out:
    return rc;
}

/* SUBACK and UNSUBACK (sections 3.9, 3.11). A v3 UNSUBACK has no payload. */
static uint8_t
decode_suback(struct rd *r, uint8_t type, int v5, struct mqtt_suback *s)
{
    uint8_t rc = MQTT_RC_MALFORMED_PACKET;
    uint32_t i;

    memset(s, 0, sizeof(*s));
    if (!rd_u16(r, &s->packet_id)) {
        goto out;
    }
    if (v5 && (rc = rd_props(r, type, &s->props)) != MQTT_RC_SUCCESS) {
        goto out;
    }
    s->rcs.ptr = r->p;
    s->rcs.len = (uint32_t)(r->end - r->p);
    rc = MQTT_RC_MALFORMED_PACKET;
    if (type == MQTT_UNSUBACK && !v5 && s->rcs.len != 0) {
        goto out;
    }
    rc = MQTT_RC_PROTOCOL_ERROR;
    if (s->packet_id == 0 || (s->rcs.len == 0 && (type == MQTT_SUBACK || v5))) {
        goto out; /* one reason code per filter, and there is at least one */
    }
    for (i = 0; i < s->rcs.len; i++) {
        uint8_t c = s->rcs.ptr[i];

        if (v5 ? !rc_allowed(type, c) : (c > 2 && c != 0x80)) {
            goto out;
        }
    }
    rc = MQTT_RC_SUCCESS;
out:
    return rc;
}

/* UNSUBSCRIBE (section 3.10). */
static uint8_t
decode_unsubscribe(struct rd *r, int v5, struct mqtt_unsubscribe *u)
{
    uint8_t rc = MQTT_RC_MALFORMED_PACKET;
    struct mqtt_bytes f;

    memset(u, 0, sizeof(*u));
    if (!rd_u16(r, &u->packet_id)) {
        goto out;
    }
    if (v5 && (rc = rd_props(r, MQTT_UNSUBSCRIBE, &u->props)) != MQTT_RC_SUCCESS) {
        goto out;
    }
    rc = MQTT_RC_MALFORMED_PACKET;
    u->raw.ptr = r->p;
    while (r->p < r->end) {
        if (!rd_str(r, &f)) {
            goto out; /* [MQTT-3.10.3-1] */
        }
        u->count++;
    }
    u->raw.len = (uint32_t)(r->end - u->raw.ptr);
    rc = MQTT_RC_PROTOCOL_ERROR;
    if (u->packet_id == 0 || u->count == 0) {
        goto out; /* [MQTT-2.2.1-3], [MQTT-3.10.3-2] */
    }
    rc = MQTT_RC_SUCCESS;
out:
    return rc;
}

/*
 * DISCONNECT and AUTH in v5 (sections 3.14, 3.15). Remaining length 0 means
 * reason 0 and no properties. DISCONNECT may also stop after the reason code;
 * AUTH may not (section 3.15.2.1 allows only the empty form).
 */
static uint8_t
decode_reason(struct rd *r, uint8_t type, struct mqtt_reason *m)
{
    uint8_t rc = MQTT_RC_MALFORMED_PACKET;

    memset(m, 0, sizeof(*m));
    if (rd_u8(r, &m->rc)) {
        if (r->p < r->end) {
            if ((rc = rd_props(r, type, &m->props)) != MQTT_RC_SUCCESS) {
                goto out;
            }
            rc = MQTT_RC_MALFORMED_PACKET;
        } else if (type == MQTT_AUTH) {
            goto out;
        }
    }
    if (r->p != r->end) {
        goto out;
    }
    rc = MQTT_RC_PROTOCOL_ERROR;
    if (!rc_allowed(type, m->rc)) {
        goto out;
    }
    rc = MQTT_RC_SUCCESS;
out:
    return rc;
}

/* Decodes one whole packet: see mqtt.h. */
enum mqtt_status
mqtt_decode(const uint8_t *buf, size_t len, int version, struct mqtt_packet *out, uint8_t *rc)
{
    uint8_t err = MQTT_RC_MALFORMED_PACKET;
    int v5 = version == MQTT_V5;
    uint32_t rem = 0;
    struct rd r;
    int n;

    if (len < 2) {
        goto out;
    }
    n = mqtt_varint_read(buf + 1, len - 1, &rem);
    if (n <= 0 || (size_t)n + 1 + rem != len) {
        goto out;
    }
    out->type = buf[0] >> 4;
    out->flags = buf[0] & 0x0f;
    r.p = buf + 1 + n;
    r.end = buf + len;
    if (!flags_ok(out->type, out->flags, version)) {
        goto out;
    }
    switch (out->type) {
    case MQTT_CONNECT:
        err = decode_connect(&r, &out->u.connect);
        break;
    case MQTT_CONNACK:
        err = decode_connack(&r, v5, &out->u.connack);
        break;
    case MQTT_PUBLISH:
        err = decode_publish(&r, out->flags, v5, &out->u.publish);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        err = decode_ack(&r, out->type, v5, &out->u.ack);
        break;
    case MQTT_SUBSCRIBE:
        err = decode_subscribe(&r, version, &out->u.subscribe);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        err = decode_suback(&r, out->type, v5, &out->u.suback);
        break;
    case MQTT_UNSUBSCRIBE:
        err = decode_unsubscribe(&r, v5, &out->u.unsubscribe);
        break;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        err = rem == 0 ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED_PACKET;
        break;
    case MQTT_DISCONNECT:
        if (v5) {
            err = decode_reason(&r, MQTT_DISCONNECT, &out->u.reason);
        } else {
            memset(&out->u.reason, 0, sizeof(out->u.reason));
            err = rem == 0 ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED_PACKET;
        }
        break;
    case MQTT_AUTH:
        /* Reserved before 5.0. */
        err = v5 ? decode_reason(&r, MQTT_AUTH, &out->u.reason) : MQTT_RC_MALFORMED_PACKET;
        break;
    default:
        err = MQTT_RC_MALFORMED_PACKET;
        break;
    }
out:
    *rc = err;
    return err == MQTT_RC_SUCCESS ? MQTT_OK : MQTT_ERROR;
}
