/*
 * midge MQTT codec: MQTT 5 properties (section 2.2.2).
 *
 * One table describes every property: its wire type, where it may appear
 * (section 2.2.2.2) and which field of struct mqtt_props holds it. Decoding,
 * validation, sizing and writing are all driven by it. Pure, any thread.
 */
#include "mqtt.h"

#include <stddef.h>
#include <string.h>

enum prop_kind {
    PK_NONE = 0,
    PK_BYTE,   /* every byte property is a 0/1 flag or Maximum QoS 0/1 */
    PK_U16,
    PK_U32,
    PK_VARINT, /* Subscription Identifier only: kept apart, see sub_ids_raw */
    PK_STR,    /* UTF-8 string */
    PK_BIN,    /* binary data */
    PK_PAIR,   /* User Property only: kept apart, see user_props */
};

struct prop_def {
    uint8_t kind;
    uint16_t where; /* bit t for packet type t, bit 0 for will properties */
    uint16_t off;   /* offset of the field in struct mqtt_props */
};

#define IN(t) (1u << MQTT_##t)
#define WILL (1u << MQTT_PROPS_WILL)
#define ACKS (IN(PUBACK) | IN(PUBREC) | IN(PUBREL) | IN(PUBCOMP))
#define F(field) offsetof(struct mqtt_props, field)
#define LAST_PROP MQTT_PROP_SHARED_SUB_AVAILABLE

static const struct prop_def props_table[LAST_PROP + 1] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = { PK_BYTE, IN(PUBLISH) | WILL, F(payload_format) },
    [MQTT_PROP_MESSAGE_EXPIRY] = { PK_U32, IN(PUBLISH) | WILL, F(message_expiry) },
    [MQTT_PROP_CONTENT_TYPE] = { PK_STR, IN(PUBLISH) | WILL, F(content_type) },
    [MQTT_PROP_RESPONSE_TOPIC] = { PK_STR, IN(PUBLISH) | WILL, F(response_topic) },
    [MQTT_PROP_CORRELATION_DATA] = { PK_BIN, IN(PUBLISH) | WILL, F(correlation_data) },
    [MQTT_PROP_SUBSCRIPTION_ID] = { PK_VARINT, IN(PUBLISH) | IN(SUBSCRIBE), F(sub_id) },
    [MQTT_PROP_SESSION_EXPIRY] = { PK_U32, IN(CONNECT) | IN(CONNACK) | IN(DISCONNECT),
                                   F(session_expiry) },
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = { PK_STR, IN(CONNACK), F(assigned_client_id) },
    [MQTT_PROP_SERVER_KEEP_ALIVE] = { PK_U16, IN(CONNACK), F(server_keep_alive) },
    [MQTT_PROP_AUTH_METHOD] = { PK_STR, IN(CONNECT) | IN(CONNACK) | IN(AUTH), F(auth_method) },
    [MQTT_PROP_AUTH_DATA] = { PK_BIN, IN(CONNECT) | IN(CONNACK) | IN(AUTH), F(auth_data) },
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = { PK_BYTE, IN(CONNECT), F(request_problem_info) },
    [MQTT_PROP_WILL_DELAY] = { PK_U32, WILL, F(will_delay) },
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = { PK_BYTE, IN(CONNECT), F(request_response_info) },
    [MQTT_PROP_RESPONSE_INFO] = { PK_STR, IN(CONNACK), F(response_info) },
    [MQTT_PROP_SERVER_REFERENCE] = { PK_STR, IN(CONNACK) | IN(DISCONNECT), F(server_reference) },
    [MQTT_PROP_REASON_STRING] = { PK_STR,
                                  IN(CONNACK) | ACKS | IN(SUBACK) | IN(UNSUBACK) |
                                      IN(DISCONNECT) | IN(AUTH),
                                  F(reason_string) },
    [MQTT_PROP_RECEIVE_MAXIMUM] = { PK_U16, IN(CONNECT) | IN(CONNACK), F(receive_maximum) },
    [MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = { PK_U16, IN(CONNECT) | IN(CONNACK),
                                        F(topic_alias_maximum) },
    [MQTT_PROP_TOPIC_ALIAS] = { PK_U16, IN(PUBLISH), F(topic_alias) },
    [MQTT_PROP_MAXIMUM_QOS] = { PK_BYTE, IN(CONNACK), F(maximum_qos) },
    [MQTT_PROP_RETAIN_AVAILABLE] = { PK_BYTE, IN(CONNACK), F(retain_available) },
    [MQTT_PROP_USER_PROPERTY] = { PK_PAIR,
                                  IN(CONNECT) | IN(CONNACK) | IN(PUBLISH) | WILL | ACKS |
                                      IN(SUBSCRIBE) | IN(SUBACK) | IN(UNSUBSCRIBE) |
                                      IN(UNSUBACK) | IN(DISCONNECT) | IN(AUTH),
                                  F(user_props) },
    [MQTT_PROP_MAXIMUM_PACKET_SIZE] = { PK_U32, IN(CONNECT) | IN(CONNACK),
                                        F(maximum_packet_size) },
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = { PK_BYTE, IN(CONNACK), F(wildcard_sub_available) },
    [MQTT_PROP_SUB_ID_AVAILABLE] = { PK_BYTE, IN(CONNACK), F(sub_id_available) },
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = { PK_BYTE, IN(CONNACK), F(shared_sub_available) },
};

/* Properties whose value 0 is a Protocol Error (sections 3.1.2.11.3/.4, 3.3.2.3.4/.8). */
#define ZERO_FORBIDDEN                                                                          \
    (MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM) | MQTT_PBIT(MQTT_PROP_MAXIMUM_PACKET_SIZE) |          \
     MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS) | MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID))

/* Reads a 2-byte length and the bytes after it from [*p, end). 0 if they do not fit. */
static inline int
take_bytes(const uint8_t **p, const uint8_t *end, struct mqtt_bytes *b)
{
    uint32_t n;
    int ok = 0;

    if (end - *p >= 2) {
        n = (uint32_t)(*p)[0] << 8 | (*p)[1];
        if ((size_t)(end - *p - 2) >= n) {
            b->ptr = *p + 2;
            b->len = n;
            *p += 2 + n;
            ok = 1;
        }
    }
    return ok;
}

static inline int
has_wildcard(const struct mqtt_bytes *b)
{
    return memchr(b->ptr, '+', b->len) != NULL || memchr(b->ptr, '#', b->len) != NULL;
}

/*
 * Reads an MQTT 5 property block. Malformed: bad lengths, a property unknown
 * or not allowed for ctx, bad UTF-8. Protocol Error: a duplicate (except User
 * Property, and Subscription Identifier in PUBLISH), a value out of range,
 * Authentication Data without Authentication Method, a Response Topic with
 * wildcards [MQTT-3.3.2-14].
 */
enum mqtt_status
mqtt_props_read(const uint8_t *buf, size_t len, int ctx, struct mqtt_props *out, size_t *used,
                uint8_t *rc)
{
    enum mqtt_status st = MQTT_ERROR;
    uint8_t err = MQTT_RC_MALFORMED_PACKET;
    const uint8_t *p, *end, *user_start = NULL, *user_end = NULL, *sid_start = NULL;
    const uint8_t *sid_end = NULL;
    uint32_t plen, v;
    uint16_t where = (uint16_t)(1u << ctx);
    int n;

    n = mqtt_varint_read(buf, len, &plen);
    if (n <= 0 || plen > len - (size_t)n) {
        goto out;
    }
    p = buf + n;
    end = p + plen;
    while (p < end) {
        const uint8_t *start = p;
        uint8_t id = *p++;
        const struct prop_def *d;
        uint64_t bit;
        char *field;

        if (id > LAST_PROP || (props_table[id].where & where) == 0) {
            goto out; /* unknown, or not valid in this packet: Malformed */
        }
        bit = MQTT_PBIT(id);
        d = &props_table[id];
        field = (char *)out + d->off;
        if ((out->present & bit) && id != MQTT_PROP_USER_PROPERTY &&
            !(id == MQTT_PROP_SUBSCRIPTION_ID && ctx == MQTT_PUBLISH)) {
            err = MQTT_RC_PROTOCOL_ERROR;
            goto out;
        }
        out->present |= bit;
        switch (d->kind) {
        case PK_BYTE:
            if (p >= end) {
                goto out;
            }
            if (*p > 1) {
                err = MQTT_RC_PROTOCOL_ERROR;
                goto out;
            }
            *(uint8_t *)field = *p++;
            break;
        case PK_U16:
            if (end - p < 2) {
                goto out;
            }
            v = (uint32_t)p[0] << 8 | p[1];
            p += 2;
            if (v == 0 && (ZERO_FORBIDDEN & bit)) {
                /* Section 3.3.2.3.4: alias 0 is a Protocol Error reported as 0x94. */
                err = id == MQTT_PROP_TOPIC_ALIAS ? MQTT_RC_TOPIC_ALIAS_INVALID
                                                  : MQTT_RC_PROTOCOL_ERROR;
                goto out;
            }
            *(uint16_t *)(void *)field = (uint16_t)v;
            break;
        case PK_U32:
            if (end - p < 4) {
                goto out;
            }
            v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            p += 4;
            if (v == 0 && (ZERO_FORBIDDEN & bit)) {
                err = MQTT_RC_PROTOCOL_ERROR;
                goto out;
            }
            *(uint32_t *)(void *)field = v;
            break;
        case PK_VARINT:
            n = mqtt_varint_read(p, (size_t)(end - p), &v);
            if (n <= 0) {
                goto out;
            }
            p += n;
            if (v == 0) {
                err = MQTT_RC_PROTOCOL_ERROR; /* section 3.3.2.3.8 */
                goto out;
            }
            if (out->sub_id_count++ == 0) {
                out->sub_id = v;
                sid_start = start;
            }
            sid_end = p;
            break;
        case PK_STR:
        case PK_BIN:
            if (!take_bytes(&p, end, (struct mqtt_bytes *)(void *)field)) {
                goto out;
            }
            if (d->kind == PK_STR) {
                const struct mqtt_bytes *b = (const struct mqtt_bytes *)(void *)field;

                if (!mqtt_utf8_valid(b->ptr, b->len)) {
                    goto out; /* [MQTT-1.5.4-1, -2] */
                }
                if (id == MQTT_PROP_RESPONSE_TOPIC && has_wildcard(b)) {
                    err = MQTT_RC_PROTOCOL_ERROR;
                    goto out;
                }
            }
            break;
        case PK_PAIR: {
            struct mqtt_bytes k, val;

            if (!take_bytes(&p, end, &k) || !take_bytes(&p, end, &val) ||
                !mqtt_utf8_valid(k.ptr, k.len) || !mqtt_utf8_valid(val.ptr, val.len)) {
                goto out;
            }
            if (user_start == NULL) {
                user_start = start;
            }
            user_end = p;
            break;
        }
        default:
            goto out;
        }
    }
    if ((out->present & MQTT_PBIT(MQTT_PROP_AUTH_DATA)) &&
        !(out->present & MQTT_PBIT(MQTT_PROP_AUTH_METHOD))) {
        err = MQTT_RC_PROTOCOL_ERROR; /* section 3.1.2.11.10 */
        goto out;
    }
    if (user_start != NULL) {
        out->user_props.ptr = user_start;
        out->user_props.len = (uint32_t)(user_end - user_start);
    }
    if (sid_start != NULL) {
        out->sub_ids_raw.ptr = sid_start;
        out->sub_ids_raw.len = (uint32_t)(sid_end - sid_start);
    }
    *used = (size_t)(end - buf);
    err = MQTT_RC_SUCCESS;
    st = MQTT_OK;
out:
    *rc = err;
    return st;
}

/*
 * Steps over one property at *p (id byte included) whose id is `id`. Returns
 * 0 when it does not fit in [*p, end) or the id is unknown.
 */
static int
prop_skip(const uint8_t **p, const uint8_t *end, uint8_t id)
{
    struct mqtt_bytes b;
    uint32_t v;
    int n, ok = 0;

    (*p)++;
    if (id > LAST_PROP) {
        goto out;
    }
    switch (props_table[id].kind) {
    case PK_BYTE:
        ok = end - *p >= 1;
        *p += ok;
        break;
    case PK_U16:
        ok = end - *p >= 2;
        *p += ok ? 2 : 0;
        break;
    case PK_U32:
        ok = end - *p >= 4;
        *p += ok ? 4 : 0;
        break;
    case PK_VARINT:
        n = mqtt_varint_read(*p, (size_t)(end - *p), &v);
        ok = n > 0;
        *p += ok ? n : 0;
        break;
    case PK_STR:
    case PK_BIN:
        ok = take_bytes(p, end, &b);
        break;
    case PK_PAIR:
        ok = take_bytes(p, end, &b) && take_bytes(p, end, &b);
        break;
    default:
        break;
    }
out:
    return ok;
}

/*
 * Next User Property from props->user_props. Other properties interleaved in
 * that view (as received) are skipped.
 */
int
mqtt_user_prop_next(const struct mqtt_props *props, uint32_t *pos, struct mqtt_bytes *key,
                    struct mqtt_bytes *value)
{
    const uint8_t *p, *end;
    int more = 0;

    if (props->user_props.ptr == NULL || *pos >= props->user_props.len) {
        goto out;
    }
    p = props->user_props.ptr + *pos;
    end = props->user_props.ptr + props->user_props.len;
    while (p < end && *p != MQTT_PROP_USER_PROPERTY) {
        if (!prop_skip(&p, end, *p)) {
            goto out;
        }
    }
    if (p >= end) {
        goto out;
    }
    p++;
    if (!take_bytes(&p, end, key) || !take_bytes(&p, end, value)) {
        goto out;
    }
    *pos = (uint32_t)(p - props->user_props.ptr);
    more = 1;
out:
    return more;
}

/*
 * Next Subscription Identifier from props->sub_ids_raw (decoded packets);
 * other properties interleaved there are skipped.
 */
int
mqtt_sub_id_next(const struct mqtt_props *props, uint32_t *pos, uint32_t *sub_id)
{
    const uint8_t *p, *end;
    int n, more = 0;

    if (props->sub_ids_raw.ptr == NULL || *pos >= props->sub_ids_raw.len) {
        goto out;
    }
    p = props->sub_ids_raw.ptr + *pos;
    end = props->sub_ids_raw.ptr + props->sub_ids_raw.len;
    while (p < end && *p != MQTT_PROP_SUBSCRIPTION_ID) {
        if (!prop_skip(&p, end, *p)) {
            goto out;
        }
    }
    if (p >= end) {
        goto out;
    }
    p++;
    n = mqtt_varint_read(p, (size_t)(end - p), sub_id);
    if (n <= 0) {
        goto out;
    }
    p += n;
    *pos = (uint32_t)(p - props->sub_ids_raw.ptr);
    more = 1;
out:
    return more;
}

/* Size of the User Property entries in props->user_props (other ids skipped). */
static size_t
user_props_size(const struct mqtt_props *props)
{
    struct mqtt_bytes k, v;
    uint32_t pos = 0;
    size_t size = 0;

    while (mqtt_user_prop_next(props, &pos, &k, &v)) {
        size += 5 + (size_t)k.len + v.len;
    }
    return size;
}

/* Size of the Subscription Identifier entries; SIZE_MAX if one cannot be encoded. */
static size_t
sub_ids_size(const struct mqtt_props *props)
{
    size_t size = 0, n;
    uint32_t i, v, pos = 0;

    if (props->sub_ids != NULL) {
        for (i = 0; i < props->sub_id_count; i++) {
            n = mqtt_varint_size(props->sub_ids[i]);
            if (n == 0) {
                size = SIZE_MAX;
                break;
            }
            size += 1 + n;
        }
    } else {
        while (mqtt_sub_id_next(props, &pos, &v)) {
            size += 1 + mqtt_varint_size(v);
        }
    }
    return size;
}

/* See mqtt.h: which fields are written, SIZE_MAX when unencodable. */
size_t
mqtt_props_size(const struct mqtt_props *props)
{
    uint64_t bits = props->present;
    size_t size = 0, n;

    bits &= ~(MQTT_PBIT(MQTT_PROP_USER_PROPERTY) | MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID));
    while (bits != 0) {
        unsigned id = (unsigned)__builtin_ctzll(bits);
        const struct mqtt_bytes *b;

        bits &= bits - 1;
        if (id > LAST_PROP) {
            continue;
        }
        switch (props_table[id].kind) {
        case PK_BYTE:
            size += 2;
            break;
        case PK_U16:
            size += 3;
            break;
        case PK_U32:
            size += 5;
            break;
        case PK_STR:
        case PK_BIN:
            b = (const struct mqtt_bytes *)(const void *)((const char *)props +
                                                           props_table[id].off);
            if (b->len > 0xffff) {
                size = SIZE_MAX;
                goto out;
            }
            size += 3 + b->len;
            break;
        default:
            break;
        }
    }
    if (props->sub_id_count > 0) {
        n = sub_ids_size(props);
        if (n == SIZE_MAX) {
            size = SIZE_MAX;
            goto out;
        }
        size += n;
    }
    if (props->user_props.len > 0) {
        size += user_props_size(props);
    }
    if (size > MQTT_MAX_REMAINING_LENGTH) {
        size = SIZE_MAX;
    }
out:
    return size;
}

static inline uint8_t *
put_bytes(uint8_t *o, const struct mqtt_bytes *b)
{
    o[0] = (uint8_t)(b->len >> 8);
    o[1] = (uint8_t)b->len;
    if (b->len > 0) {
        memcpy(o + 2, b->ptr, b->len);
    }
    return o + 2 + b->len;
}

/* See mqtt.h. Properties are written in id order, then subscription ids, then user ones. */
size_t
mqtt_props_write(const struct mqtt_props *props, uint8_t *out)
{
    uint64_t bits = props->present;
    size_t size = mqtt_props_size(props), written = 0;
    uint8_t *o = out;
    uint32_t v, i, pos = 0;
    struct mqtt_bytes k, val;

    if (size == SIZE_MAX) {
        goto out;
    }
    o += mqtt_varint_write((uint32_t)size, o);
    bits &= ~(MQTT_PBIT(MQTT_PROP_USER_PROPERTY) | MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID));
    while (bits != 0) {
        unsigned id = (unsigned)__builtin_ctzll(bits);
        const char *field;

        bits &= bits - 1;
        if (id > LAST_PROP || props_table[id].kind == PK_NONE) {
            continue;
        }
        field = (const char *)props + props_table[id].off;
        *o++ = (uint8_t)id;
        switch (props_table[id].kind) {
        case PK_BYTE:
            *o++ = *(const uint8_t *)field;
            break;
        case PK_U16:
            v = *(const uint16_t *)(const void *)field;
            *o++ = (uint8_t)(v >> 8);
            *o++ = (uint8_t)v;
            break;
        case PK_U32:
            v = *(const uint32_t *)(const void *)field;
            *o++ = (uint8_t)(v >> 24);
            *o++ = (uint8_t)(v >> 16);
            *o++ = (uint8_t)(v >> 8);
            *o++ = (uint8_t)v;
            break;
        case PK_STR:
        case PK_BIN:
            o = put_bytes(o, (const struct mqtt_bytes *)(const void *)field);
            break;
        default:
            break;
        }
    }
    if (props->sub_id_count > 0) {
        if (props->sub_ids != NULL) {
            for (i = 0; i < props->sub_id_count; i++) {
                *o++ = MQTT_PROP_SUBSCRIPTION_ID;
                o += mqtt_varint_write(props->sub_ids[i], o);
            }
        } else {
            while (mqtt_sub_id_next(props, &pos, &v)) {
                *o++ = MQTT_PROP_SUBSCRIPTION_ID;
                o += mqtt_varint_write(v, o);
            }
        }
    }
    if (props->user_props.len > 0) {
        if (user_props_size(props) == props->user_props.len) {
            memcpy(o, props->user_props.ptr, props->user_props.len); /* the usual case */
            o += props->user_props.len;
        } else {
            pos = 0;
            while (mqtt_user_prop_next(props, &pos, &k, &val)) {
                *o++ = MQTT_PROP_USER_PROPERTY;
                o = put_bytes(o, &k);
                o = put_bytes(o, &val);
            }
        }
    }
    written = (size_t)(o - out);
out:
    return written;
}
