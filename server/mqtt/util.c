/*
 * midge MQTT codec: small helpers shared by the decoder and the encoder.
 * Variable byte integers, UTF-8 validation, names for logs, and the
 * SUBSCRIBE/UNSUBSCRIBE payload iterators. Pure functions, any thread.
 */
#include "mqtt.h"

#include <string.h>

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/*
 * Bytes needed for `v` as a variable byte integer (1..4), 0 when `v` exceeds
 * MQTT_MAX_REMAINING_LENGTH.
 */
size_t
mqtt_varint_size(uint32_t v)
{
    size_t n;

    if (v < 128) {
        n = 1;
    } else if (v < 16384) {
        n = 2;
    } else if (v < 2097152) {
        n = 3;
    } else if (v <= MQTT_MAX_REMAINING_LENGTH) {
        n = 4;
    } else {
        n = 0;
    }
    return n;
}

/*
 * Writes `v` as a variable byte integer to out (room for 4 bytes needed).
 * Returns the bytes written, 0 when `v` exceeds MQTT_MAX_REMAINING_LENGTH.
 */
size_t
mqtt_varint_write(uint32_t v, uint8_t *out)
{
    size_t n = 0;

    if (v > MQTT_MAX_REMAINING_LENGTH) {
        goto out;
    }
    do {
        uint8_t b = v & 0x7f;

        v >>= 7;
        if (v != 0) {
            b |= 0x80;
        }
        out[n++] = b;
    } while (v != 0);
out:
    return n;
}

/*
 * Reads a variable byte integer (section 1.5.5). Returns 1..4 bytes used, 0 if
 * buf ends first, -1 if a fifth byte would be needed.
 */
int
mqtt_varint_read(const uint8_t *buf, size_t len, uint32_t *v)
{
    uint32_t val = 0;
    int n = -1;
    size_t i;

    for (i = 0; i < 4; i++) {
        if (i >= len) {
            n = 0;
            break;
        }
        val |= (uint32_t)(buf[i] & 0x7f) << (7 * i);
        if ((buf[i] & 0x80) == 0) {
            *v = val;
            n = (int)i + 1;
            break;
        }
    }
    return n;
}

/*
 * Validates the multi-byte part of a UTF-8 string, per Unicode table 3-7
 * (which excludes overlongs, surrogates and anything above U+10FFFF).
 */
static int
utf8_check(const uint8_t *s, size_t len, int allow_nul)
{
    size_t i = 0;
    int ok = 0;

    while (i < len) {
        uint8_t c = s[i];
        uint8_t lo = 0x80, hi = 0xbf;
        size_t need;

        /* Skip ASCII 8 bytes at a time: no high bit and no zero byte. */
        if (c < 0x80 && i + 8 <= len) {
            uint64_t w;

            memcpy(&w, s + i, sizeof(w));
            if (((w & HIGHS) | ((w - ONES) & ~w & HIGHS)) == 0) {
                i += 8;
                continue;
            }
        }
        if (c < 0x80) {
            if (c == 0 && !allow_nul) {
                goto out;
            }
            i++;
            continue;
        }
        if (c < 0xc2) {
            goto out; /* continuation byte first, or overlong 2-byte lead */
        } else if (c < 0xe0) {
            need = 1;
        } else if (c < 0xf0) {
            need = 2;
            if (c == 0xe0) {
                lo = 0xa0; /* overlong */
            } else if (c == 0xed) {
                hi = 0x9f; /* U+D800..U+DFFF surrogates */
            }
        } else if (c < 0xf5) {
            need = 3;
            if (c == 0xf0) {
                lo = 0x90; /* overlong */
            } else if (c == 0xf4) {
                hi = 0x8f; /* above U+10FFFF */
            }
        } else {
            goto out;
        }
        if (len - i <= need) {
            goto out;
        }
        if (s[i + 1] < lo || s[i + 1] > hi) {
            goto out;
        }
        if (need >= 2 && (s[i + 2] & 0xc0) != 0x80) {
            goto out;
        }
        if (need == 3 && (s[i + 3] & 0xc0) != 0x80) {
            goto out;
        }
        i += need + 1;
    }
    ok = 1;
out:
    return ok;
}

/*
 * 1 if buf[0..len) is a valid MQTT UTF-8 string body: well-formed, no U+0000,
 * no surrogates [MQTT-1.5.4-1, -2].
 */
int
mqtt_utf8_valid(const uint8_t *buf, size_t len)
{
    return utf8_check(buf, len, 0);
}

/* 1 if buf[0..len) is well-formed UTF-8; U+0000 allowed (payloads). */
int
mqtt_utf8_wellformed(const uint8_t *buf, size_t len)
{
    return utf8_check(buf, len, 1);
}

/* Packet type name for logs; "UNKNOWN" when out of range. */
const char *
mqtt_type_name(int type)
{
    static const char *const names[16] = {
        "UNKNOWN", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
        "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK",
        "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
    };
    const char *name = "UNKNOWN";

    if (type > 0 && type < 16) {
        name = names[type];
    }
    return name;
}

/* Reason code name for logs (section 2.4); "unknown" for values not defined. */
const char *
mqtt_rc_name(int rc)
{
    const char *name;

    switch (rc) {
    case MQTT_RC_SUCCESS: name = "success"; break;
    case MQTT_RC_GRANTED_QOS1: name = "granted qos 1"; break;
    case MQTT_RC_GRANTED_QOS2: name = "granted qos 2"; break;
    case MQTT_RC_DISCONNECT_WITH_WILL: name = "disconnect with will message"; break;
    case MQTT_RC_NO_MATCHING_SUBSCRIBERS: name = "no matching subscribers"; break;
    case MQTT_RC_NO_SUBSCRIPTION_EXISTED: name = "no subscription existed"; break;
    case MQTT_RC_CONTINUE_AUTHENTICATION: name = "continue authentication"; break;
    case MQTT_RC_REAUTHENTICATE: name = "re-authenticate"; break;
    case MQTT_RC_UNSPECIFIED: name = "unspecified error"; break;
    case MQTT_RC_MALFORMED_PACKET: name = "malformed packet"; break;
    case MQTT_RC_PROTOCOL_ERROR: name = "protocol error"; break;
    case MQTT_RC_IMPLEMENTATION_SPECIFIC: name = "implementation specific error"; break;
    case MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION: name = "unsupported protocol version"; break;
    case MQTT_RC_CLIENT_ID_NOT_VALID: name = "client identifier not valid"; break;
    case MQTT_RC_BAD_USERNAME_OR_PASSWORD: name = "bad user name or password"; break;
    case MQTT_RC_NOT_AUTHORIZED: name = "not authorized"; break;
    case MQTT_RC_SERVER_UNAVAILABLE: name = "server unavailable"; break;
    case MQTT_RC_SERVER_BUSY: name = "server busy"; break;
    case MQTT_RC_BANNED: name = "banned"; break;
    case MQTT_RC_SERVER_SHUTTING_DOWN: name = "server shutting down"; break;
    case MQTT_RC_BAD_AUTHENTICATION_METHOD: name = "bad authentication method"; break;
    case MQTT_RC_KEEP_ALIVE_TIMEOUT: name = "keep alive timeout"; break;
    case MQTT_RC_SESSION_TAKEN_OVER: name = "session taken over"; break;
    case MQTT_RC_TOPIC_FILTER_INVALID: name = "topic filter invalid"; break;
    case MQTT_RC_TOPIC_NAME_INVALID: name = "topic name invalid"; break;
    case MQTT_RC_PACKET_ID_IN_USE: name = "packet identifier in use"; break;
    case MQTT_RC_PACKET_ID_NOT_FOUND: name = "packet identifier not found"; break;
    case MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED: name = "receive maximum exceeded"; break;
    case MQTT_RC_TOPIC_ALIAS_INVALID: name = "topic alias invalid"; break;
    case MQTT_RC_PACKET_TOO_LARGE: name = "packet too large"; break;
    case MQTT_RC_MESSAGE_RATE_TOO_HIGH: name = "message rate too high"; break;
    case MQTT_RC_QUOTA_EXCEEDED: name = "quota exceeded"; break;
    case MQTT_RC_ADMINISTRATIVE_ACTION: name = "administrative action"; break;
    case MQTT_RC_PAYLOAD_FORMAT_INVALID: name = "payload format invalid"; break;
    case MQTT_RC_RETAIN_NOT_SUPPORTED: name = "retain not supported"; break;
    case MQTT_RC_QOS_NOT_SUPPORTED: name = "qos not supported"; break;
    case MQTT_RC_USE_ANOTHER_SERVER: name = "use another server"; break;
    case MQTT_RC_SERVER_MOVED: name = "server moved"; break;
    case MQTT_RC_SHARED_SUBS_NOT_SUPPORTED: name = "shared subscriptions not supported"; break;
    case MQTT_RC_CONNECTION_RATE_EXCEEDED: name = "connection rate exceeded"; break;
    case MQTT_RC_MAXIMUM_CONNECT_TIME: name = "maximum connect time"; break;
    case MQTT_RC_SUB_IDS_NOT_SUPPORTED: name = "subscription identifiers not supported"; break;
    case MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED: name = "wildcard subscriptions not supported"; break;
    default: name = "unknown"; break;
    }
    return name;
}

/* Reads a 2-byte length and that many bytes at buf[*pos..len); 0 if they do not fit. */
static int
take_bytes(const uint8_t *buf, uint32_t len, uint32_t *pos, struct mqtt_bytes *b)
{
    uint32_t n;
    int ok = 0;

    if (len - *pos < 2) {
        goto out;
    }
    n = (uint32_t)buf[*pos] << 8 | buf[*pos + 1];
    if (len - *pos - 2 < n) {
        goto out;
    }
    b->ptr = buf + *pos + 2;
    b->len = n;
    *pos += 2 + n;
    ok = 1;
out:
    return ok;
}

/*
 * Next SUBSCRIBE entry from s->raw at *pos. Option bits beyond QoS read as 0 for
 * v3 packets, whose decoder made sure they are clear.
 */
int
mqtt_subscribe_next(const struct mqtt_subscribe *s, uint32_t *pos, struct mqtt_sub_entry *e)
{
    int more = 0;
    uint8_t opt;

    if (*pos >= s->raw.len || !take_bytes(s->raw.ptr, s->raw.len, pos, &e->filter) ||
        *pos >= s->raw.len) {
        goto out;
    }
    opt = s->raw.ptr[(*pos)++];
    e->qos = opt & 3;
    e->no_local = (opt >> 2) & 1;
    e->retain_as_published = (opt >> 3) & 1;
    e->retain_handling = (opt >> 4) & 3;
    more = 1;
out:
    return more;
}

/* Next UNSUBSCRIBE topic filter from u->raw at *pos. */
int
mqtt_unsubscribe_next(const struct mqtt_unsubscribe *u, uint32_t *pos, struct mqtt_bytes *filter)
{
    int more = 0;

    if (*pos < u->raw.len && take_bytes(u->raw.ptr, u->raw.len, pos, filter)) {
        more = 1;
    }
    return more;
}
