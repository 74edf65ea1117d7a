/*
 * Unit tests for the MQTT codec (server/mqtt): round trips of every packet in
 * every version, every property where it is valid and nowhere else, every
 * malformed case with its exact reason code, truncation and corruption at
 * every byte, UTF-8 and variable byte integer edge cases.
 *
 * Beware of C hex escapes in the byte strings below: "\x01a" is one byte
 * (0x1a). Letters right after an escape are chosen outside a-f, or the
 * literal is split ("\x01" "a").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt.h"

#define PB(x) MQTT_PBIT(MQTT_PROP_##x)
#define BS(lit) ((struct mqtt_bytes){ (const uint8_t *)(lit), sizeof(lit) - 1 })
#define PKT(lit) (const uint8_t *)(lit), sizeof(lit) - 1
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Which properties each packet may carry: MQTT 5.0 section 2.2.2.2, typed in independently. */
static const uint64_t allowed_props[16] = {
    [MQTT_PROPS_WILL] = PB(PAYLOAD_FORMAT) | PB(MESSAGE_EXPIRY) | PB(CONTENT_TYPE) |
                        PB(RESPONSE_TOPIC) | PB(CORRELATION_DATA) | PB(WILL_DELAY) |
                        PB(USER_PROPERTY),
    [MQTT_CONNECT] = PB(SESSION_EXPIRY) | PB(AUTH_METHOD) | PB(AUTH_DATA) |
                     PB(REQUEST_PROBLEM_INFO) | PB(REQUEST_RESPONSE_INFO) | PB(RECEIVE_MAXIMUM) |
                     PB(TOPIC_ALIAS_MAXIMUM) | PB(USER_PROPERTY) | PB(MAXIMUM_PACKET_SIZE),
    [MQTT_CONNACK] = PB(SESSION_EXPIRY) | PB(ASSIGNED_CLIENT_ID) | PB(SERVER_KEEP_ALIVE) |
                     PB(AUTH_METHOD) | PB(AUTH_DATA) | PB(RESPONSE_INFO) | PB(SERVER_REFERENCE) |
                     PB(REASON_STRING) | PB(RECEIVE_MAXIMUM) | PB(TOPIC_ALIAS_MAXIMUM) |
                     PB(MAXIMUM_QOS) | PB(RETAIN_AVAILABLE) | PB(USER_PROPERTY) |
                     PB(MAXIMUM_PACKET_SIZE) | PB(WILDCARD_SUB_AVAILABLE) |
                     PB(SUB_ID_AVAILABLE) | PB(SHARED_SUB_AVAILABLE),
    [MQTT_PUBLISH] = PB(PAYLOAD_FORMAT) | PB(MESSAGE_EXPIRY) | PB(CONTENT_TYPE) |
                     PB(RESPONSE_TOPIC) | PB(CORRELATION_DATA) | PB(SUBSCRIPTION_ID) |
                     PB(TOPIC_ALIAS) | PB(USER_PROPERTY),
    [MQTT_PUBACK] = PB(REASON_STRING) | PB(USER_PROPERTY),
    [MQTT_PUBREC] = PB(REASON_STRING) | PB(USER_PROPERTY),
    [MQTT_PUBREL] = PB(REASON_STRING) | PB(USER_PROPERTY),
    [MQTT_PUBCOMP] = PB(REASON_STRING) | PB(USER_PROPERTY),
    [MQTT_SUBSCRIBE] = PB(SUBSCRIPTION_ID) | PB(USER_PROPERTY),
    [MQTT_SUBACK] = PB(REASON_STRING) | PB(USER_PROPERTY),
    [MQTT_UNSUBSCRIBE] = PB(USER_PROPERTY),
    [MQTT_UNSUBACK] = PB(REASON_STRING) | PB(USER_PROPERTY),
    [MQTT_DISCONNECT] = PB(SESSION_EXPIRY) | PB(SERVER_REFERENCE) | PB(REASON_STRING) |
                        PB(USER_PROPERTY),
    [MQTT_AUTH] = PB(AUTH_METHOD) | PB(AUTH_DATA) | PB(REASON_STRING) | PB(USER_PROPERTY),
};

static const uint8_t all_prop_ids[] = {
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19,
    0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
};

static const uint32_t sub_ids_many[] = { 1, 127, 128, 16383, 16384, 2097151, 268435455 };
static const uint32_t sub_ids_one[] = { 2097152 };

/* Three user properties, the same key twice: order and duplicates must survive. */
static const uint8_t user_pairs[] = "\x26\x00\x01k\x00\x02v1"
                                    "\x26\x00\x01k\x00\x02v2"
                                    "\x26\x00\x02\xc3\xa9\x00\x00";

static uint8_t big_payload[300];

/* Sets every property in `mask` to a distinctive valid value. */
static void
fill_props(struct mqtt_props *p, uint64_t mask, int many_sub_ids)
{
    p->present |= mask;
    if (mask & PB(PAYLOAD_FORMAT)) {
        p->payload_format = 1;
    }
    if (mask & PB(MESSAGE_EXPIRY)) {
        p->message_expiry = 0x01020304;
    }
    if (mask & PB(CONTENT_TYPE)) {
        p->content_type = BS("text/plain; charset=\xc3\xa9");
    }
    if (mask & PB(RESPONSE_TOPIC)) {
        p->response_topic = BS("reply/to/me");
    }
    if (mask & PB(CORRELATION_DATA)) {
        p->correlation_data = BS("\x00\xff\x01\x00");
    }
    if (mask & PB(SUBSCRIPTION_ID)) {
        p->sub_ids = many_sub_ids ? sub_ids_many : sub_ids_one;
        p->sub_id_count = many_sub_ids ? NELEM(sub_ids_many) : 1;
    }
    if (mask & PB(SESSION_EXPIRY)) {
        p->session_expiry = 0xffffffff;
    }
    if (mask & PB(ASSIGNED_CLIENT_ID)) {
        p->assigned_client_id = BS("auto-1234");
    }
    if (mask & PB(SERVER_KEEP_ALIVE)) {
        p->server_keep_alive = 0x1234;
    }
    if (mask & PB(AUTH_METHOD)) {
        p->auth_method = BS("SCRAM-SHA-1");
    }
    if (mask & PB(AUTH_DATA)) {
        p->auth_data = BS("\x00\x01\x02\xfe");
    }
    if (mask & PB(REQUEST_PROBLEM_INFO)) {
        p->request_problem_info = 0;
    }
    if (mask & PB(WILL_DELAY)) {
        p->will_delay = 30;
    }
    if (mask & PB(REQUEST_RESPONSE_INFO)) {
        p->request_response_info = 1;
    }
    if (mask & PB(RESPONSE_INFO)) {
        p->response_info = BS("resp/base");
    }
    if (mask & PB(SERVER_REFERENCE)) {
        p->server_reference = BS("other.example:1883");
    }
    if (mask & PB(REASON_STRING)) {
        p->reason_string = BS("because");
    }
    if (mask & PB(RECEIVE_MAXIMUM)) {
        p->receive_maximum = 0xffff;
    }
    if (mask & PB(TOPIC_ALIAS_MAXIMUM)) {
        p->topic_alias_maximum = 10;
    }
    if (mask & PB(TOPIC_ALIAS)) {
        p->topic_alias = 5;
    }
    if (mask & PB(MAXIMUM_QOS)) {
        p->maximum_qos = 1;
    }
    if (mask & PB(RETAIN_AVAILABLE)) {
        p->retain_available = 0;
    }
    if (mask & PB(USER_PROPERTY)) {
        p->user_props.ptr = user_pairs;
        p->user_props.len = sizeof(user_pairs) - 1;
    }
    if (mask & PB(MAXIMUM_PACKET_SIZE)) {
        p->maximum_packet_size = 1u << 20;
    }
    if (mask & PB(WILDCARD_SUB_AVAILABLE)) {
        p->wildcard_sub_available = 1;
    }
    if (mask & PB(SUB_ID_AVAILABLE)) {
        p->sub_id_available = 0;
    }
    if (mask & PB(SHARED_SUB_AVAILABLE)) {
        p->shared_sub_available = 1;
    }
}

static void
assert_bytes_eq(struct mqtt_bytes want, struct mqtt_bytes got)
{
    assert_int_equal(want.len, got.len);
    if (want.len > 0) {
        assert_memory_equal(want.ptr, got.ptr, want.len);
    }
}

static void
assert_props_eq(const struct mqtt_props *want, const struct mqtt_props *got)
{
    const uint64_t apart = PB(SUBSCRIPTION_ID) | PB(USER_PROPERTY);
    struct mqtt_bytes wk, wv, gk, gv;
    uint32_t wpos = 0, gpos = 0, i, id;
    uint64_t pr = want->present;

    assert_int_equal(want->present & ~apart, got->present & ~apart);
#define SCALAR(bit, f) \
    if (pr & PB(bit)) { \
        assert_int_equal(want->f, got->f); \
    }
#define STRING(bit, f) \
    if (pr & PB(bit)) { \
        assert_bytes_eq(want->f, got->f); \
    }
    SCALAR(PAYLOAD_FORMAT, payload_format);
    SCALAR(MESSAGE_EXPIRY, message_expiry);
    SCALAR(SESSION_EXPIRY, session_expiry);
    SCALAR(SERVER_KEEP_ALIVE, server_keep_alive);
    SCALAR(REQUEST_PROBLEM_INFO, request_problem_info);
    SCALAR(WILL_DELAY, will_delay);
    SCALAR(REQUEST_RESPONSE_INFO, request_response_info);
    SCALAR(RECEIVE_MAXIMUM, receive_maximum);
    SCALAR(TOPIC_ALIAS_MAXIMUM, topic_alias_maximum);
    SCALAR(TOPIC_ALIAS, topic_alias);
    SCALAR(MAXIMUM_QOS, maximum_qos);
    SCALAR(RETAIN_AVAILABLE, retain_available);
    SCALAR(MAXIMUM_PACKET_SIZE, maximum_packet_size);
    SCALAR(WILDCARD_SUB_AVAILABLE, wildcard_sub_available);
    SCALAR(SUB_ID_AVAILABLE, sub_id_available);
    SCALAR(SHARED_SUB_AVAILABLE, shared_sub_available);
    STRING(CONTENT_TYPE, content_type);
    STRING(RESPONSE_TOPIC, response_topic);
    STRING(CORRELATION_DATA, correlation_data);
    STRING(ASSIGNED_CLIENT_ID, assigned_client_id);
    STRING(AUTH_METHOD, auth_method);
    STRING(AUTH_DATA, auth_data);
    STRING(RESPONSE_INFO, response_info);
    STRING(SERVER_REFERENCE, server_reference);
    STRING(REASON_STRING, reason_string);
#undef SCALAR
#undef STRING

    /* User properties: same pairs, same order. */
    while (mqtt_user_prop_next(want, &wpos, &wk, &wv)) {
        assert_true(mqtt_user_prop_next(got, &gpos, &gk, &gv));
        assert_bytes_eq(wk, gk);
        assert_bytes_eq(wv, gv);
    }
    assert_false(mqtt_user_prop_next(got, &gpos, &gk, &gv));
    assert_int_equal(want->user_props.len > 0, (got->present & PB(USER_PROPERTY)) != 0);

    /* Subscription identifiers: count, first, then all in order. */
    assert_int_equal(want->sub_id_count, got->sub_id_count);
    assert_int_equal(want->sub_id_count > 0, (got->present & PB(SUBSCRIPTION_ID)) != 0);
    if (want->sub_id_count > 0) {
        assert_int_equal(want->sub_ids[0], got->sub_id);
    }
    gpos = 0;
    for (i = 0; i < want->sub_id_count; i++) {
        assert_true(mqtt_sub_id_next(got, &gpos, &id));
        assert_int_equal(want->sub_ids[i], id);
    }
    assert_false(mqtt_sub_id_next(got, &gpos, &id));
}

static const struct mqtt_sub_entry sub_entries[] = {
    { { (const uint8_t *)"s/+", 3 }, 0, 0, 0, 0 },
    { { (const uint8_t *)"s/#", 3 }, 1, 1, 1, 2 },
    { { (const uint8_t *)"$share/g/\xc3\xa9", 11 }, 2, 0, 1, 1 },
};

static const struct mqtt_bytes unsub_filters[] = {
    { (const uint8_t *)"s/+", 3 },
    { (const uint8_t *)"#", 1 },
};

/*
 * Builds test packet `variant` of `type` for `version`. Variant 0 carries
 * every property valid for the type (written only in v5). Returns 0 when the
 * variant does not exist.
 */
static int
make_packet(int type, int version, int variant, struct mqtt_packet *p)
{
    int v5 = version == MQTT_V5, ok = 1;

    memset(p, 0, sizeof(*p));
    p->type = (uint8_t)type;
    switch (type) {
    case MQTT_CONNECT: {
        struct mqtt_connect *c = &p->u.connect;

        c->version = (uint8_t)version;
        if (variant == 0) {
            c->clean_start = 1;
            c->will_flag = 1;
            c->will_qos = 2;
            c->will_retain = 1;
            c->has_username = 1;
            c->has_password = 1;
            c->keep_alive = 60;
            c->client_id = BS("client-\xc3\xbc");
            c->will_topic = BS("will/topic");
            c->will_payload = BS("bye");
            c->username = BS("user");
            c->password = BS("\x00pw\xff");
            fill_props(&c->props, allowed_props[MQTT_CONNECT], 0);
            fill_props(&c->will_props, allowed_props[MQTT_PROPS_WILL], 0);
        } else if (variant == 1) {
            c->has_username = 1;
            c->username = BS("");
            c->keep_alive = 0xffff;
        } else if (variant == 2) {
            c->will_flag = 1;
            c->will_qos = 1;
            c->will_topic = BS("w");
            c->will_payload = BS("\x00\xff");
            c->client_id = BS("x");
            c->has_username = 1;
            c->username = BS("u");
            c->has_password = 1;
            c->password = BS("");
        } else {
            ok = 0;
        }
        break;
    }
    case MQTT_CONNACK:
        if (variant == 0) {
            p->u.connack.session_present = 1;
            fill_props(&p->u.connack.props, allowed_props[MQTT_CONNACK], 0);
        } else if (variant == 1) {
            p->u.connack.rc = v5 ? MQTT_RC_NOT_AUTHORIZED : MQTT_V3_REFUSED_NOT_AUTHORIZED;
        } else {
            ok = 0;
        }
        break;
    case MQTT_PUBLISH: {
        struct mqtt_publish *pub = &p->u.publish;

        if (variant == 0) {
            pub->qos = 1;
            pub->dup = 1;
            pub->retain = 1;
            pub->packet_id = 0x1234;
            pub->topic = BS("a/b/c");
            pub->payload = BS("hello");
            fill_props(&pub->props, allowed_props[MQTT_PUBLISH], 1);
        } else if (variant == 1) {
            pub->topic = BS("sport/tennis/player1/ranking/\xc3\xa9/\xf0\x9f\x98\x80/x");
            pub->payload.ptr = big_payload;
            pub->payload.len = sizeof(big_payload);
        } else if (variant == 2) {
            pub->qos = 2;
            pub->packet_id = 0xffff;
            if (v5) {
                pub->topic = BS(""); /* topic alias only, section 3.3.2.3.4 */
                fill_props(&pub->props, PB(TOPIC_ALIAS), 0);
            } else {
                pub->topic = BS("t");
            }
        } else {
            ok = 0;
        }
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        p->u.ack.packet_id = (uint16_t)(7 + variant);
        if (variant == 0) {
            p->u.ack.rc = type == MQTT_PUBACK || type == MQTT_PUBREC ? 0x10 : 0x92;
            fill_props(&p->u.ack.props, allowed_props[type], 0);
        } else if (variant == 2) {
            p->u.ack.rc = type == MQTT_PUBACK || type == MQTT_PUBREC ? 0x97 : 0x92;
        } else if (variant != 1) {
            ok = 0;
        }
        break;
    case MQTT_SUBSCRIBE:
        p->u.subscribe.packet_id = 1;
        if (variant == 0) {
            p->u.subscribe.entries = sub_entries;
            p->u.subscribe.count = NELEM(sub_entries);
            fill_props(&p->u.subscribe.props, allowed_props[MQTT_SUBSCRIBE], 0);
        } else if (variant == 1) {
            p->u.subscribe.entries = sub_entries;
            p->u.subscribe.count = 1;
        } else {
            ok = 0;
        }
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        p->u.suback.packet_id = 0x8000;
        if (variant == 0) {
            if (type == MQTT_SUBACK) {
                p->u.suback.rcs = v5 ? BS("\x00\x01\x02\x80\x97\xa2") : BS("\x00\x01\x02\x80");
            } else {
                p->u.suback.rcs = BS("\x00\x11\x87");
            }
            fill_props(&p->u.suback.props, allowed_props[type], 0);
        } else if (variant == 1) {
            p->u.suback.rcs = BS("\x00");
        } else {
            ok = 0;
        }
        break;
    case MQTT_UNSUBSCRIBE:
        p->u.unsubscribe.packet_id = 2;
        if (variant == 0) {
            p->u.unsubscribe.filters = unsub_filters;
            p->u.unsubscribe.count = NELEM(unsub_filters);
            fill_props(&p->u.unsubscribe.props, allowed_props[MQTT_UNSUBSCRIBE], 0);
        } else if (variant == 1) {
            p->u.unsubscribe.filters = unsub_filters + 1;
            p->u.unsubscribe.count = 1;
        } else {
            ok = 0;
        }
        break;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        ok = variant == 0;
        break;
    case MQTT_DISCONNECT:
        if (variant == 0) {
            p->u.reason.rc = MQTT_RC_DISCONNECT_WITH_WILL;
            fill_props(&p->u.reason.props, allowed_props[MQTT_DISCONNECT], 0);
        } else if (variant == 2) {
            p->u.reason.rc = MQTT_RC_SERVER_SHUTTING_DOWN;
        } else if (variant != 1) {
            ok = 0;
        }
        break;
    case MQTT_AUTH:
        if (!v5) {
            ok = 0;
        } else if (variant == 0) {
            p->u.reason.rc = MQTT_RC_CONTINUE_AUTHENTICATION;
            fill_props(&p->u.reason.props, allowed_props[MQTT_AUTH], 0);
        } else if (variant == 2) {
            p->u.reason.rc = MQTT_RC_REAUTHENTICATE;
            fill_props(&p->u.reason.props, PB(AUTH_METHOD), 0);
        } else if (variant != 1) {
            ok = 0;
        }
        break;
    default:
        ok = 0;
        break;
    }
    return ok;
}

/* Compares a decoded packet with what was encoded, for `version`. */
static void
assert_packet_eq(const struct mqtt_packet *want, const struct mqtt_packet *got, int version)
{
    static const struct mqtt_props none;
    int v5 = version == MQTT_V5;
    uint32_t i, pos = 0;

    assert_int_equal(want->type, got->type);
    switch (want->type) {
    case MQTT_CONNECT: {
        const struct mqtt_connect *w = &want->u.connect, *g = &got->u.connect;

        assert_int_equal(version, g->version);
        assert_int_equal(w->clean_start, g->clean_start);
        assert_int_equal(w->will_flag, g->will_flag);
        assert_int_equal(w->will_qos, g->will_qos);
        assert_int_equal(w->will_retain, g->will_retain);
        assert_int_equal(w->has_username, g->has_username);
        assert_int_equal(w->has_password, g->has_password);
        assert_int_equal(w->keep_alive, g->keep_alive);
        assert_props_eq(v5 ? &w->props : &none, &g->props);
        assert_bytes_eq(w->client_id, g->client_id);
        assert_props_eq(v5 ? &w->will_props : &none, &g->will_props);
        assert_bytes_eq(w->will_topic, g->will_topic);
        assert_bytes_eq(w->will_payload, g->will_payload);
        assert_bytes_eq(w->username, g->username);
        assert_bytes_eq(w->password, g->password);
        break;
    }
    case MQTT_CONNACK:
        assert_int_equal(want->u.connack.session_present, got->u.connack.session_present);
        assert_int_equal(want->u.connack.rc, got->u.connack.rc);
        assert_props_eq(v5 ? &want->u.connack.props : &none, &got->u.connack.props);
        break;
    case MQTT_PUBLISH: {
        const struct mqtt_publish *w = &want->u.publish, *g = &got->u.publish;

        assert_int_equal(w->qos, g->qos);
        assert_int_equal(w->dup, g->dup);
        assert_int_equal(w->retain, g->retain);
        assert_int_equal(w->packet_id, g->packet_id);
        assert_bytes_eq(w->topic, g->topic);
        assert_props_eq(v5 ? &w->props : &none, &g->props);
        assert_bytes_eq(w->payload, g->payload);
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        assert_int_equal(want->u.ack.packet_id, got->u.ack.packet_id);
        assert_int_equal(v5 ? want->u.ack.rc : 0, got->u.ack.rc);
        assert_props_eq(v5 ? &want->u.ack.props : &none, &got->u.ack.props);
        break;
    case MQTT_SUBSCRIBE: {
        const struct mqtt_subscribe *w = &want->u.subscribe, *g = &got->u.subscribe;
        struct mqtt_sub_entry e;

        assert_int_equal(w->packet_id, g->packet_id);
        assert_props_eq(v5 ? &w->props : &none, &g->props);
        assert_int_equal(w->count, g->count);
        for (i = 0; i < w->count; i++) {
            assert_true(mqtt_subscribe_next(g, &pos, &e));
            assert_bytes_eq(w->entries[i].filter, e.filter);
            assert_int_equal(w->entries[i].qos, e.qos);
            assert_int_equal(v5 ? w->entries[i].no_local : 0, e.no_local);
            assert_int_equal(v5 ? w->entries[i].retain_as_published : 0, e.retain_as_published);
            assert_int_equal(v5 ? w->entries[i].retain_handling : 0, e.retain_handling);
        }
        assert_false(mqtt_subscribe_next(g, &pos, &e));
        break;
    }
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: {
        struct mqtt_bytes empty = { NULL, 0 };

        assert_int_equal(want->u.suback.packet_id, got->u.suback.packet_id);
        assert_props_eq(v5 ? &want->u.suback.props : &none, &got->u.suback.props);
        assert_bytes_eq(!v5 && want->type == MQTT_UNSUBACK ? empty : want->u.suback.rcs,
                        got->u.suback.rcs);
        break;
    }
    case MQTT_UNSUBSCRIBE: {
        const struct mqtt_unsubscribe *w = &want->u.unsubscribe, *g = &got->u.unsubscribe;
        struct mqtt_bytes f;

        assert_int_equal(w->packet_id, g->packet_id);
        assert_props_eq(v5 ? &w->props : &none, &g->props);
        assert_int_equal(w->count, g->count);
        for (i = 0; i < w->count; i++) {
            assert_true(mqtt_unsubscribe_next(g, &pos, &f));
            assert_bytes_eq(w->filters[i], f);
        }
        assert_false(mqtt_unsubscribe_next(g, &pos, &f));
        break;
    }
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        assert_int_equal(v5 ? want->u.reason.rc : 0, got->u.reason.rc);
        assert_props_eq(v5 ? &want->u.reason.props : &none, &got->u.reason.props);
        break;
    default:
        break;
    }
}

/* Fixture state: a scratch buffer for encoding. */
struct codec_state {
    uint8_t *buf;
    size_t cap;
};

static int
setup(void **state)
{
    struct codec_state *s = calloc(1, sizeof(*s));
    size_t i;

    if (s == NULL) {
        return -1;
    }
    s->cap = 1 << 16;
    s->buf = malloc(s->cap);
    if (s->buf == NULL) {
        free(s);
        return -1;
    }
    for (i = 0; i < sizeof(big_payload); i++) {
        big_payload[i] = (uint8_t)i;
    }
    *state = s;
    return 0;
}

static int
teardown(void **state)
{
    struct codec_state *s = *state;

    free(s->buf);
    free(s);
    return 0;
}

/* Copies buf[0..len) to an exact-size heap block, so ASan sees any over-read. */
static uint8_t *
exact_copy(const uint8_t *buf, size_t len)
{
    uint8_t *c = malloc(len > 0 ? len : 1);

    assert_non_null(c);
    if (len > 0) {
        memcpy(c, buf, len);
    }
    return c;
}

/*
 * Every prefix of a valid packet: mqtt_frame() says NEED_MORE (or OK with a
 * longer total), mqtt_decode() on the prefix is Malformed. Then every
 * truncated body with a consistent fixed header decodes without crashing, and
 * every byte corrupted to a few values decodes without crashing.
 */
static void
check_truncations(const uint8_t *pkt, size_t total, size_t hlen, int version)
{
    struct mqtt_packet out;
    size_t k, hl, body = total - hlen;
    uint32_t rem;
    uint8_t fb, rc, *t;
    enum mqtt_status st;
    int j;

    for (k = 0; k < total; k++) {
        t = exact_copy(pkt, k);
        st = mqtt_frame(t, k, &fb, &rem, &hl, &rc);
        if (st == MQTT_OK) {
            assert_true(hl + rem > k);
        } else {
            assert_int_equal(st, MQTT_NEED_MORE);
        }
        assert_int_equal(mqtt_decode(t, k, version, &out, &rc), MQTT_ERROR);
        assert_int_equal(rc, MQTT_RC_MALFORMED_PACKET);
        free(t);
    }
    for (k = 0; k < body; k++) {
        uint8_t tmp[5 + 1];
        size_t n;

        tmp[0] = pkt[0];
        n = 1 + mqtt_varint_write((uint32_t)k, tmp + 1);
        t = malloc(n + k);
        assert_non_null(t);
        memcpy(t, tmp, n);
        memcpy(t + n, pkt + hlen, k);
        st = mqtt_decode(t, n + k, version, &out, &rc);
        assert_true(st == MQTT_OK || (st == MQTT_ERROR && rc != 0));
        free(t);
    }
    for (k = 0; k < total; k++) {
        static const uint8_t flip[] = { 0x00, 0xff, 0x80 };

        for (j = 0; j < 3; j++) {
            t = exact_copy(pkt, total);
            t[k] = j == 2 ? (uint8_t)(t[k] ^ flip[j]) : flip[j];
            st = mqtt_decode(t, total, version, &out, &rc);
            assert_true(st == MQTT_OK || (st == MQTT_ERROR && rc != 0));
            free(t);
        }
    }
}

/*
 * Encode -> frame -> decode -> compare -> re-encode the decoded packet, which
 * must give the same bytes; then the truncation checks.
 */
static void
roundtrip(struct codec_state *s, const struct mqtt_packet *in, int version)
{
    struct mqtt_packet out;
    size_t need, hl, again;
    uint32_t rem;
    uint8_t fb, rc, *pkt;

    need = mqtt_encode(in, version, NULL, 0);
    assert_true(need >= 2);
    memset(s->buf, 0xee, need);
    assert_int_equal(mqtt_encode(in, version, s->buf, need - 1), need);
    assert_int_equal(s->buf[0], 0xee); /* too small: nothing written */
    assert_int_equal(mqtt_encode(in, version, s->buf, s->cap), need);
    pkt = exact_copy(s->buf, need);

    assert_int_equal(mqtt_frame(pkt, need, &fb, &rem, &hl, &rc), MQTT_OK);
    assert_int_equal(fb, pkt[0]);
    assert_int_equal(hl + rem, need);
    assert_int_equal(mqtt_decode(pkt, need, version, &out, &rc), MQTT_OK);
    assert_int_equal(rc, MQTT_RC_SUCCESS);
    assert_packet_eq(in, &out, version);

    again = mqtt_encode(&out, version, s->buf, s->cap);
    assert_int_equal(again, need);
    assert_memory_equal(s->buf, pkt, need);

    check_truncations(pkt, need, hl, version);
    free(pkt);
}

/* Every packet type, every variant, v3.1, v3.1.1 and v5. */
static void
test_roundtrip_all(void **state)
{
    static const int versions[] = { MQTT_V31, MQTT_V311, MQTT_V5 };
    struct mqtt_packet p;
    int type, variant, count = 0;
    size_t v;

    for (v = 0; v < NELEM(versions); v++) {
        for (type = MQTT_CONNECT; type <= MQTT_AUTH; type++) {
            for (variant = 0; variant < 3; variant++) {
                if (make_packet(type, versions[v], variant, &p)) {
                    roundtrip(*state, &p, versions[v]);
                    count++;
                }
            }
        }
    }
    assert_true(count > 80);
}

/* Every known property id in every packet where it is not allowed: Malformed. */
static void
test_props_wrong_packet(void **state)
{
    struct codec_state *s = *state;
    struct mqtt_packet p, out;
    struct mqtt_props *props;
    uint8_t rc;
    int ctx, tested = 0;
    size_t i, n;

    for (ctx = MQTT_PROPS_WILL; ctx <= MQTT_AUTH; ctx++) {
        if (ctx == MQTT_PINGREQ || ctx == MQTT_PINGRESP) {
            continue;
        }
        for (i = 0; i < NELEM(all_prop_ids); i++) {
            uint64_t bit = MQTT_PBIT(all_prop_ids[i]);

            if (allowed_props[ctx] & bit) {
                continue;
            }
            if (ctx == MQTT_PROPS_WILL) {
                make_packet(MQTT_CONNECT, MQTT_V5, 2, &p);
                props = &p.u.connect.will_props;
            } else {
                make_packet(ctx, MQTT_V5, 1, &p);
                switch (ctx) {
                case MQTT_CONNECT: props = &p.u.connect.props; break;
                case MQTT_CONNACK: props = &p.u.connack.props; break;
                case MQTT_PUBLISH: props = &p.u.publish.props; break;
                case MQTT_SUBSCRIBE: props = &p.u.subscribe.props; break;
                case MQTT_UNSUBSCRIBE: props = &p.u.unsubscribe.props; break;
                case MQTT_SUBACK:
                case MQTT_UNSUBACK: props = &p.u.suback.props; break;
                case MQTT_DISCONNECT:
                case MQTT_AUTH: props = &p.u.reason.props; break;
                default: props = &p.u.ack.props; break;
                }
            }
            fill_props(props, bit, 0);
            n = mqtt_encode(&p, MQTT_V5, s->buf, s->cap);
            assert_true(n > 0);
            assert_int_equal(mqtt_decode(s->buf, n, MQTT_V5, &out, &rc), MQTT_ERROR);
            assert_int_equal(rc, MQTT_RC_MALFORMED_PACKET); /* section 2.2.2.2 */
            tested++;
        }
    }
    assert_true(tested > 250);
}

/* One hand-made packet, the version it is decoded for, and the outcome. */
struct decode_case {
    const char *name;
    int version;
    const uint8_t *buf;
    size_t len;
    uint8_t rc;      /* 0: must decode */
    int conn_version; /* -1, or the u.connect.version expected */
};

#define OK_(name, ver, lit) { name, ver, PKT(lit), 0, -1 }
#define BAD(name, ver, lit, rc) { name, ver, PKT(lit), rc, -1 }
#define MAL MQTT_RC_MALFORMED_PACKET
#define PROTO MQTT_RC_PROTOCOL_ERROR

static const struct decode_case decode_cases[] = {
    /* --- fixed header flags [MQTT-2.1.3-1] --- */
    BAD("connect flags", 4, "\x11\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01x", MAL),
    BAD("puback flags", 4, "\x41\x02\x00\x01", MAL),
    BAD("pubrel flags 0", 4, "\x60\x02\x00\x01", MAL),          /* [MQTT-3.6.1-1] */
    BAD("pubrel dup v3.1.1", 4, "\x6a\x02\x00\x01", MAL),
    OK_("pubrel dup v3.1 (3.1 retransmission)", 3, "\x6a\x02\x00\x01"),
    BAD("subscribe flags 0", 4, "\x80\x06\x00\x01\x00\x01s\x00", MAL), /* [MQTT-3.8.1-1] */
    BAD("unsubscribe flags 0", 4, "\xa0\x05\x00\x01\x00\x01s", MAL), /* [MQTT-3.10.1-1] */
    BAD("pingreq flags", 4, "\xc1\x00", MAL),
    BAD("disconnect flags", 5, "\xe1\x00", MAL),                /* [MQTT-3.14.1-1] */
    BAD("auth flags", 5, "\xf4\x00", MAL),
    BAD("reserved type 0", 4, "\x00\x00", MAL),
    BAD("publish qos 3", 4, "\x36\x03\x00\x01t", MAL),          /* [MQTT-3.3.1-4] */
    BAD("publish dup qos 0", 4, "\x38\x03\x00\x01t", MAL),      /* [MQTT-3.3.1-2] */
    OK_("publish dup qos 1", 4, "\x3a\x05\x00\x01t\x00\x01"),

    /* --- CONNECT --- */
    OK_("connect v3.1.1 minimal", 0, "\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01x"),
    OK_("connect v3.1 MQIsdp", 0, "\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01x"),
    OK_("connect empty client id", 0, "\x10\x0c\x00\x04MQTT\x04\x00\x00\x3c\x00\x00"),
    BAD("connect reserved flag", 0, "\x10\x0d\x00\x04MQTT\x04\x03\x00\x3c\x00\x01x",
        MAL), /* [MQTT-3.1.2-3] */
    BAD("connect will qos 3", 0,
        "\x10\x12\x00\x04MQTT\x04\x1e\x00\x3c\x00\x01x\x00\x01t\x00\x00",
        MAL), /* [MQTT-3.1.2-12] */
    BAD("connect will qos without will", 0, "\x10\x0d\x00\x04MQTT\x04\x0a\x00\x3c\x00\x01x",
        MAL), /* [MQTT-3.1.2-11] */
    BAD("connect will retain without will", 0,
        "\x10\x0d\x00\x04MQTT\x04\x22\x00\x3c\x00\x01x", MAL), /* [MQTT-3.1.2-13] */
    BAD("connect v3.1.1 password without username", 0,
        "\x10\x11\x00\x04MQTT\x04\x42\x00\x3c\x00\x01x\x00\x02pw",
        MAL), /* [MQTT-3.1.2-22] of 3.1.1 */
    OK_("connect v5 password without username", 0,
        "\x10\x12\x00\x04MQTT\x05\x42\x00\x3c\x00\x00\x01x\x00\x02pw"),
    BAD("connect username flag, no username", 0,
        "\x10\x0d\x00\x04MQTT\x04\x82\x00\x3c\x00\x01x", MAL),
    BAD("connect trailing byte", 0, "\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x01x\x00", MAL),
    BAD("connect client id overlong NUL", 0,
        "\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02\xc0\x80", MAL), /* [MQTT-1.5.4-1] */
    BAD("connect client id U+0000", 0, "\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01\x00",
        MAL), /* [MQTT-1.5.4-2] */
    BAD("connect username surrogate", 0,
        "\x10\x11\x00\x04MQTT\x04\x82\x00\x3c\x00\x00\x00\x03\xed\xb0\x80",
        MAL), /* [MQTT-1.5.4-1] */
    BAD("connect client id too long", 0, "\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x05x",
        MAL),
    BAD("connect truncated name", 0, "\x10\x04\x00\x04MQ", MAL),
    BAD("connect no flags", 0, "\x10\x07\x00\x04MQTT\x04", MAL),
    { "connect MQTX", 0, PKT("\x10\x0d\x00\x04MQTX\x04\x02\x00\x3c\x00\x01x"),
      MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, 4 }, /* [MQTT-3.1.2-1] */
    { "connect MQTT level 3", 0, PKT("\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01x"),
      MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, 3 }, /* [MQTT-3.1.2-2] */
    { "connect MQTT level 6", 0, PKT("\x10\x0d\x00\x04MQTT\x06\x02\x00\x3c\x00\x01x"),
      MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, 6 }, /* [MQTT-3.1.2-2] */
    { "connect MQIsdp level 4", 0, PKT("\x10\x0f\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x01x"),
      MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, 4 },
    { "connect bridge level 0x84", 0, PKT("\x10\x0d\x00\x04MQTT\x84\x02\x00\x3c\x00\x01x"),
      MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, 0x84 },
    BAD("connect v5 will delay in connect props", 0,
        "\x10\x13\x00\x04MQTT\x05\x02\x00\x3c\x05\x18\x00\x00\x00\x1e\x00\x01x", MAL),
    BAD("connect v5 duplicate session expiry", 0,
        "\x10\x18\x00\x04MQTT\x05\x02\x00\x3c\x0a\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02"
        "\x00\x01x",
        PROTO), /* section 3.1.2.11.2 */
    BAD("connect v5 receive maximum 0", 0,
        "\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x03\x21\x00\x00\x00\x01x",
        PROTO), /* section 3.1.2.11.3 */
    BAD("connect v5 maximum packet size 0", 0,
        "\x10\x13\x00\x04MQTT\x05\x02\x00\x3c\x05\x27\x00\x00\x00\x00\x00\x01x",
        PROTO), /* section 3.1.2.11.4 */
    BAD("connect v5 request problem info 2", 0,
        "\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x02\x17\x02\x00\x01x",
        PROTO), /* section 3.1.2.11.7 */
    BAD("connect v5 request response info 2", 0,
        "\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x02\x19\x02\x00\x01x",
        PROTO), /* section 3.1.2.11.6 */
    BAD("connect v5 auth data without method", 0,
        "\x10\x12\x00\x04MQTT\x05\x02\x00\x3c\x04\x16\x00\x01x\x00\x01x",
        PROTO), /* section 3.1.2.11.10 */
    BAD("connect v5 property length past end", 0,
        "\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x10\x00\x01x", MAL),
    BAD("connect v5 unknown property", 0,
        "\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x02\x7f\x00\x00\x01x", MAL),
    BAD("connect v5 property id 0", 0,
        "\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x02\x00\x00\x00\x01x", MAL),
    BAD("connect v5 will payload format 2", 0,
        "\x10\x16\x00\x04MQTT\x05\x06\x00\x3c\x00\x00\x01x\x02\x01\x02\x00\x01t\x00\x00",
        PROTO),
    BAD("connect v5 session expiry in will props", 0,
        "\x10\x19\x00\x04MQTT\x05\x06\x00\x3c\x00\x00\x01x\x05\x11\x00\x00\x00\x01\x00\x01t"
        "\x00\x00",
        MAL), /* section 3.1.3.2 */
    BAD("connect v5 will payload not UTF-8", 0,
        "\x10\x17\x00\x04MQTT\x05\x06\x00\x3c\x00\x00\x01x\x02\x01\x01\x00\x01t\x00\x01\xff",
        MQTT_RC_PAYLOAD_FORMAT_INVALID), /* section 3.1.3.2.3 */
    OK_("connect v5 will with delay", 0,
        "\x10\x19\x00\x04MQTT\x05\x06\x00\x3c\x00\x00\x01x\x05\x18\x00\x00\x00\x01\x00\x01t"
        "\x00\x00"),
    BAD("connect will topic wildcard", 0,
        "\x10\x12\x00\x04MQTT\x04\x06\x00\x3c\x00\x01x\x00\x01#\x00\x00",
        MQTT_RC_TOPIC_NAME_INVALID), /* [MQTT-4.7.0-1] */
    BAD("connect will topic empty", 0,
        "\x10\x11\x00\x04MQTT\x04\x06\x00\x3c\x00\x01x\x00\x00\x00\x00",
        PROTO), /* [MQTT-4.7.3-1] */
    BAD("connect will payload missing", 0,
        "\x10\x10\x00\x04MQTT\x04\x06\x00\x3c\x00\x01x\x00\x01t", MAL),

    /* --- CONNACK --- */
    OK_("connack v3", 4, "\x20\x02\x01\x00"),
    BAD("connack reserved ack flags", 4, "\x20\x02\x02\x00", MAL), /* [MQTT-3.2.2-1] */
    BAD("connack v3 rc 6", 4, "\x20\x02\x00\x06", PROTO),
    BAD("connack session present with error", 4, "\x20\x02\x01\x05",
        PROTO), /* [MQTT-3.2.2-4] of 3.1.1 */
    BAD("connack v3 trailing", 4, "\x20\x03\x00\x00\x00", MAL),
    BAD("connack v5 no property length", 5, "\x20\x02\x00\x00", MAL),
    OK_("connack v5", 5, "\x20\x03\x00\x00\x00"),
    BAD("connack v5 rc 0x04", 5, "\x20\x03\x00\x04\x00", PROTO),
    BAD("connack v5 session present with error", 5, "\x20\x03\x01\x87\x00",
        PROTO), /* [MQTT-3.2.2-6] */
    BAD("connack v5 maximum qos 2", 5, "\x20\x05\x00\x00\x02\x24\x02",
        PROTO), /* section 3.2.2.3.4 */
    BAD("connack v5 retain available 2", 5, "\x20\x05\x00\x00\x02\x25\x02", PROTO),
    BAD("connack v5 will delay", 5, "\x20\x08\x00\x00\x05\x18\x00\x00\x00\x01", MAL),

    /* --- PUBLISH --- */
    OK_("publish qos 0", 4, "\x30\x06\x00\x01tpay"),
    OK_("publish empty payload", 4, "\x30\x03\x00\x01t"),
    BAD("publish topic +", 4, "\x30\x05\x00\x03z/+", MQTT_RC_TOPIC_NAME_INVALID),
    BAD("publish topic #", 4, "\x30\x03\x00\x01#", MQTT_RC_TOPIC_NAME_INVALID), /* [MQTT-3.3.2-2] */
    BAD("publish long topic #", 4, "\x30\x12\x00\x10qrstuvwxyzq#stuv",
        MQTT_RC_TOPIC_NAME_INVALID), /* [MQTT-3.3.2-2] */
    BAD("publish long topic + in 2nd word", 4, "\x30\x14\x00\x12qrstuvwxyzqrstuv/+",
        MQTT_RC_TOPIC_NAME_INVALID), /* [MQTT-3.3.2-2] */
    BAD("publish topic non-ASCII then +", 4, "\x30\x06\x00\x04\xc3\xa9/+",
        MQTT_RC_TOPIC_NAME_INVALID), /* [MQTT-3.3.2-2] */
    BAD("publish topic + then bad UTF-8", 4, "\x30\x04\x00\x02+\xff", MAL),
    BAD("publish topic U+0000", 4, "\x30\x05\x00\x03q\x00r", MAL), /* [MQTT-1.5.4-2] */
    BAD("publish long topic U+0000", 4, "\x30\x12\x00\x10qrstuvwxyzqrs\x00uv",
        MAL), /* [MQTT-1.5.4-2] */
    BAD("publish topic surrogate", 4, "\x30\x05\x00\x03\xed\xa0\x80", MAL), /* [MQTT-1.5.4-1] */
    BAD("publish topic overlong", 4, "\x30\x04\x00\x02\xc1\xbf", MAL),       /* [MQTT-1.5.4-1] */
    OK_("publish topic U+10FFFF", 4, "\x30\x06\x00\x04\xf4\x8f\xbf\xbf"),
    BAD("publish qos 1 packet id 0", 4, "\x32\x05\x00\x01t\x00\x00", PROTO), /* [MQTT-2.2.1-3] */
    BAD("publish qos 2 packet id 0", 5, "\x34\x06\x00\x01t\x00\x00\x00",
        PROTO), /* [MQTT-2.2.1-3] */
    BAD("publish truncated packet id", 4, "\x32\x04\x00\x01t\x00", MAL),
    BAD("publish topic length past end", 4, "\x30\x03\x00\x05t", MAL),
    BAD("publish no topic length", 4, "\x30\x01\x00", MAL),
    BAD("publish v3 empty topic", 4, "\x30\x02\x00\x00", PROTO), /* [MQTT-4.7.3-1] */
    BAD("publish v5 empty topic, no alias", 5, "\x30\x03\x00\x00\x00", PROTO), /* 3.3.2.3.4 */
    OK_("publish v5 empty topic with alias", 5, "\x30\x06\x00\x00\x03\x23\x00\x05"),
    BAD("publish v5 topic alias 0", 5, "\x30\x07\x00\x01t\x03\x23\x00\x00",
        MQTT_RC_TOPIC_ALIAS_INVALID), /* [MQTT-3.3.2-8], DISCONNECT 0x94 per section 3.3.4 */
    BAD("publish v5 payload not UTF-8", 5, "\x30\x07\x00\x01t\x02\x01\x01\xff",
        MQTT_RC_PAYLOAD_FORMAT_INVALID), /* section 3.3.2.3.2 */
    BAD("publish v5 payload surrogate", 5, "\x30\x09\x00\x01t\x02\x01\x01\xed\xbf\xbf",
        MQTT_RC_PAYLOAD_FORMAT_INVALID),
    OK_("publish v5 UTF-8 payload with U+0000", 5, "\x30\x08\x00\x01t\x02\x01\x01\x00\x41"),
    OK_("publish v5 binary payload", 5, "\x30\x07\x00\x01t\x02\x01\x00\xff"),
    BAD("publish v5 payload format 2", 5, "\x30\x06\x00\x01t\x02\x01\x02", PROTO),
    BAD("publish v5 duplicate topic alias", 5, "\x30\x0a\x00\x01t\x06\x23\x00\x01\x23\x00\x02",
        PROTO),
    BAD("publish v5 duplicate payload format", 5, "\x30\x08\x00\x01t\x04\x01\x00\x01\x00",
        PROTO),
    BAD("publish v5 session expiry", 5, "\x30\x09\x00\x01t\x05\x11\x00\x00\x00\x01", MAL),
    BAD("publish v5 subscription id 0", 5, "\x30\x06\x00\x01t\x02\x0b\x00",
        PROTO), /* section 3.3.2.3.8 */
    BAD("publish v5 subscription id 5 bytes", 5,
        "\x30\x0a\x00\x01t\x06\x0b\x80\x80\x80\x80\x01", MAL),
    OK_("publish v5 two subscription ids", 5, "\x30\x08\x00\x01t\x04\x0b\x01\x0b\x02"),
    BAD("publish v5 response topic wildcard", 5, "\x30\x08\x00\x01t\x04\x08\x00\x01#",
        PROTO), /* [MQTT-3.3.2-14] */
    BAD("publish v5 content type bad UTF-8", 5, "\x30\x08\x00\x01t\x04\x03\x00\x01\xff", MAL),
    BAD("publish v5 user property key bad UTF-8", 5,
        "\x30\x0b\x00\x01t\x07\x26\x00\x01\xff\x00\x01v", MAL),
    BAD("publish v5 user property value U+0000", 5,
        "\x30\x0b\x00\x01t\x07\x26\x00\x01k\x00\x01\x00", MAL),
    BAD("publish v5 user property value missing", 5, "\x30\x08\x00\x01t\x04\x26\x00\x01k",
        MAL),
    BAD("publish v5 content type truncated", 5, "\x30\x07\x00\x01t\x03\x03\x00\x05", MAL),
    BAD("publish v5 message expiry truncated", 5, "\x30\x07\x00\x01t\x03\x02\x00\x00", MAL),
    BAD("publish v5 property length 5 bytes", 5, "\x30\x08\x00\x01t\x80\x80\x80\x80\x01",
        MAL),
    BAD("publish v5 property length past end", 5, "\x30\x04\x00\x01t\x05", MAL),
    BAD("publish v5 no property length", 5, "\x30\x03\x00\x01t", MAL),

    /* --- PUBACK, PUBREC, PUBREL, PUBCOMP --- */
    OK_("puback v3", 4, "\x40\x02\x00\x01"),
    BAD("puback v3 rc byte", 4, "\x40\x03\x00\x01\x00", MAL),
    BAD("puback too short", 4, "\x40\x01\x00", MAL),
    BAD("puback packet id 0", 4, "\x40\x02\x00\x00", PROTO), /* [MQTT-2.2.1-3] */
    BAD("pubcomp v5 packet id 0", 5, "\x70\x02\x00\x00", PROTO),
    OK_("puback v5 short", 5, "\x40\x02\x00\x01"),
    OK_("puback v5 rc only", 5, "\x40\x03\x00\x01\x10"),     /* section 3.4.2.1 */
    OK_("pubrec v5 rc and empty props", 5, "\x50\x04\x00\x01\x80\x00"),
    BAD("puback v5 rc 0x05", 5, "\x40\x03\x00\x01\x05", PROTO),
    BAD("pubrel v5 rc 0x10", 5, "\x62\x03\x00\x01\x10", PROTO),
    OK_("pubrel v5 rc 0x92", 5, "\x62\x03\x00\x01\x92"),
    BAD("puback v5 topic alias", 5, "\x40\x07\x00\x01\x00\x03\x23\x00\x01", MAL),
    BAD("puback v5 duplicate reason string", 5,
        "\x40\x0a\x00\x01\x00\x06\x1f\x00\x00\x1f\x00\x00", PROTO),
    BAD("puback v5 trailing after props", 5, "\x40\x05\x00\x01\x00\x00\x00", MAL),

    /* --- SUBSCRIBE --- */
    OK_("subscribe v3", 4, "\x82\x06\x00\x01\x00\x01s\x01"),
    BAD("subscribe v3 no filter", 4, "\x82\x02\x00\x01", PROTO), /* [MQTT-3.8.3-3] of 3.1.1 */
    BAD("subscribe v5 no filter", 5, "\x82\x03\x00\x01\x00", PROTO), /* [MQTT-3.8.3-2] */
    BAD("subscribe packet id 0", 4, "\x82\x06\x00\x00\x00\x01s\x00", PROTO), /* [MQTT-2.2.1-3] */
    BAD("subscribe v3 qos 3", 4, "\x82\x06\x00\x01\x00\x01s\x03", MAL),
    BAD("subscribe v3 no local bit", 4, "\x82\x06\x00\x01\x00\x01s\x04",
        MAL), /* [MQTT-3-8.3-4] of 3.1.1 */
    BAD("subscribe v3 bit 7", 4, "\x82\x06\x00\x01\x00\x01s\x80", MAL),
    BAD("subscribe v5 reserved bit 6", 5, "\x82\x07\x00\x01\x00\x00\x01s\x40",
        MAL), /* [MQTT-3.8.3-5] */
    BAD("subscribe v5 qos 3", 5, "\x82\x07\x00\x01\x00\x00\x01s\x03", MAL),
    BAD("subscribe v5 retain handling 3", 5, "\x82\x07\x00\x01\x00\x00\x01s\x30",
        PROTO), /* section 3.8.3.1 */
    OK_("subscribe v5 all options", 5, "\x82\x07\x00\x01\x00\x00\x01s\x2e"),
    BAD("subscribe v5 no local on shared", 5,
        "\x82\x10\x00\x01\x00\x00\x0a$share/g/s\x04", PROTO), /* [MQTT-3.8.3-4] */
    BAD("subscribe v5 two subscription ids", 5,
        "\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01s\x00", PROTO),
    BAD("subscribe v5 subscription id 0", 5, "\x82\x09\x00\x01\x02\x0b\x00\x00\x01s\x00",
        PROTO), /* section 3.8.2.1.2 */
    BAD("subscribe v5 reason string", 5, "\x82\x0a\x00\x01\x03\x1f\x00\x00\x00\x01s\x00", MAL),
    BAD("subscribe filter bad UTF-8", 4, "\x82\x06\x00\x01\x00\x01\xc0\x00",
        MAL), /* [MQTT-3.8.3-1] */
    BAD("subscribe missing options", 4, "\x82\x05\x00\x01\x00\x01s", MAL),

    /* --- SUBACK, UNSUBSCRIBE, UNSUBACK --- */
    OK_("suback v3", 4, "\x90\x06\x00\x01\x00\x01\x02\x80"),
    BAD("suback v3 rc 3", 4, "\x90\x03\x00\x01\x03", PROTO),
    BAD("suback v3 rc 0x97", 4, "\x90\x03\x00\x01\x97", PROTO),
    BAD("suback v3 empty", 4, "\x90\x02\x00\x01", PROTO),
    OK_("suback v5", 5, "\x90\x05\x00\x01\x00\x97\xa2"),
    BAD("suback v5 rc 0x05", 5, "\x90\x04\x00\x01\x00\x05", PROTO),
    BAD("suback v5 no rc", 5, "\x90\x03\x00\x01\x00", PROTO),
    OK_("unsubscribe v3", 4, "\xa2\x05\x00\x01\x00\x01s"),
    BAD("unsubscribe v3 no filter", 4, "\xa2\x02\x00\x01", PROTO), /* [MQTT-3.10.3-2] */
    BAD("unsubscribe v5 no filter", 5, "\xa2\x03\x00\x01\x00", PROTO), /* [MQTT-3.10.3-2] */
    BAD("unsubscribe packet id 0", 4, "\xa2\x05\x00\x00\x00\x01s", PROTO),
    BAD("unsubscribe truncated filter", 4, "\xa2\x05\x00\x01\x00\x02s", MAL),
    BAD("unsubscribe v5 subscription id", 5, "\xa2\x08\x00\x01\x02\x0b\x01\x00\x01s", MAL),
    OK_("unsuback v3", 4, "\xb0\x02\x00\x01"),
    BAD("unsuback v3 payload", 4, "\xb0\x03\x00\x01\x00", MAL),
    OK_("unsuback v5", 5, "\xb0\x05\x00\x01\x00\x00\x11"),
    BAD("unsuback v5 rc 0x01", 5, "\xb0\x04\x00\x01\x00\x01", PROTO),
    BAD("unsuback v5 no rc", 5, "\xb0\x03\x00\x01\x00", PROTO),

    /* --- PINGREQ, PINGRESP, DISCONNECT, AUTH --- */
    OK_("pingreq", 4, "\xc0\x00"),
    BAD("pingreq with body", 4, "\xc0\x01\x00", MAL),
    BAD("pingresp with body", 5, "\xd0\x01\x00", MAL),
    OK_("disconnect v3", 4, "\xe0\x00"),
    BAD("disconnect v3 with body", 4, "\xe0\x01\x00", MAL),
    OK_("disconnect v5 rc only", 5, "\xe0\x01\x04"),       /* section 3.14.2.1 */
    BAD("disconnect v5 rc 0x05", 5, "\xe0\x01\x05", PROTO),
    BAD("disconnect v5 will delay", 5, "\xe0\x07\x00\x05\x18\x00\x00\x00\x01", MAL),
    OK_("disconnect v5 session expiry", 5, "\xe0\x07\x00\x05\x11\x00\x00\x00\x01"),
    BAD("auth in v3.1.1", 4, "\xf0\x00", MAL),
    OK_("auth v5 empty", 5, "\xf0\x00"),                  /* section 3.15.2.1 */
    BAD("auth v5 rc without props", 5, "\xf0\x01\x18", MAL),
    BAD("auth v5 rc 0x80", 5, "\xf0\x02\x80\x00", PROTO),
    BAD("auth v5 data without method", 5, "\xf0\x06\x18\x04\x16\x00\x01x", PROTO),
    OK_("auth v5 continue", 5, "\xf0\x07\x18\x05\x15\x00\x02xy"),
};

static void
test_decode_cases(void **state)
{
    struct mqtt_packet out;
    uint8_t fb, rc;
    uint32_t rem;
    size_t i, hl;
    enum mqtt_status st;

    (void)state;
    for (i = 0; i < NELEM(decode_cases); i++) {
        const struct decode_case *c = &decode_cases[i];
        uint8_t *buf;

        print_message("decode: %s\n", c->name);
        /* The case itself must be framed right, or it tests the wrong thing. */
        if (c->buf[0] >> 4 != 0) {
            assert_int_equal(mqtt_frame(c->buf, c->len, &fb, &rem, &hl, &rc), MQTT_OK);
            assert_int_equal(hl + rem, c->len);
        }
        buf = exact_copy(c->buf, c->len);
        rc = 0xee;
        st = mqtt_decode(buf, c->len, c->version, &out, &rc);
        assert_int_equal(rc, c->rc);
        assert_int_equal(st, c->rc == 0 ? MQTT_OK : MQTT_ERROR);
        if (c->conn_version >= 0) {
            assert_int_equal(out.u.connect.version, c->conn_version);
        }
        free(buf);
    }
}

/* mqtt_frame(): incomplete lengths, the 4-byte limit, non-minimal encodings. */
static void
test_frame(void **state)
{
    static const struct {
        const char *name;
        const uint8_t *buf;
        size_t len;
        enum mqtt_status st;
        uint32_t rem;
        size_t hl;
    } cases[] = {
        { "empty", PKT(""), MQTT_NEED_MORE, 0, 0 },
        { "first byte only", PKT("\x30"), MQTT_NEED_MORE, 0, 0 },
        { "length continues", PKT("\x30\x80"), MQTT_NEED_MORE, 0, 0 },
        { "3 length bytes, continues", PKT("\x30\x80\x80\x80"), MQTT_NEED_MORE, 0, 0 },
        /* Section 1.5.5: at most 4 bytes; known bad before a 5th byte arrives. */
        { "4th length byte continues", PKT("\x30\x80\x80\x80\x80"), MQTT_ERROR, 0, 0 },
        { "268435456", PKT("\x30\x80\x80\x80\x80\x01"), MQTT_ERROR, 0, 0 },
        { "5 length bytes", PKT("\x30\xff\xff\xff\xff\x7f"), MQTT_ERROR, 0, 0 },
        { "max", PKT("\x30\xff\xff\xff\x7f"), MQTT_OK, 268435455, 5 },
        { "zero", PKT("\xc0\x00"), MQTT_OK, 0, 2 },
        { "non-minimal zero", PKT("\x30\x80\x00"), MQTT_OK, 0, 3 },
        { "non-minimal 1", PKT("\x30\x81\x80\x80\x00"), MQTT_OK, 1, 5 },
        { "reserved type 0", PKT("\x00\x00"), MQTT_ERROR, 0, 0 },
        { "reserved type 0, no length", PKT("\x0f"), MQTT_ERROR, 0, 0 },
        { "127", PKT("\x30\x7f"), MQTT_OK, 127, 2 },
        { "128", PKT("\x30\x80\x01"), MQTT_OK, 128, 3 },
    };
    uint8_t fb, rc;
    uint32_t rem;
    size_t i, hl;

    (void)state;
    for (i = 0; i < NELEM(cases); i++) {
        uint8_t *buf = exact_copy(cases[i].buf, cases[i].len);

        print_message("frame: %s\n", cases[i].name);
        rc = 0xee;
        assert_int_equal(mqtt_frame(buf, cases[i].len, &fb, &rem, &hl, &rc), cases[i].st);
        if (cases[i].st == MQTT_OK) {
            assert_int_equal(rem, cases[i].rem);
            assert_int_equal(hl, cases[i].hl);
            assert_int_equal(fb, buf[0]);
        } else if (cases[i].st == MQTT_ERROR) {
            assert_int_equal(rc, MQTT_RC_MALFORMED_PACKET);
        }
        free(buf);
    }
}

/* Decoding a buffer whose length disagrees with its Remaining Length. */
static void
test_decode_length_mismatch(void **state)
{
    static const uint8_t pkt[] = "\x30\x05\x00\x01tab";
    struct mqtt_packet out;
    uint8_t rc;

    (void)state;
    assert_int_equal(mqtt_decode(pkt, 6, MQTT_V311, &out, &rc), MQTT_ERROR);
    assert_int_equal(rc, MQTT_RC_MALFORMED_PACKET);
    assert_int_equal(mqtt_decode(pkt, 7, MQTT_V311, &out, &rc), MQTT_OK);
    assert_int_equal(mqtt_decode(pkt, 8, MQTT_V311, &out, &rc), MQTT_ERROR); /* trailing */
    assert_int_equal(rc, MQTT_RC_MALFORMED_PACKET);
    assert_int_equal(mqtt_decode(pkt, 0, MQTT_V311, &out, &rc), MQTT_ERROR);
    assert_int_equal(mqtt_decode(pkt, 1, MQTT_V311, &out, &rc), MQTT_ERROR);
    assert_int_equal(mqtt_decode((const uint8_t *)"\x30\x80\x80\x80\x80\x01", 6, MQTT_V311,
                                 &out, &rc),
                     MQTT_ERROR);
    assert_int_equal(rc, MQTT_RC_MALFORMED_PACKET);
}

/* Variable byte integers at every size boundary (section 1.5.5). */
static void
test_varint(void **state)
{
    static const struct {
        uint32_t v;
        size_t size;
    } cases[] = {
        { 0, 1 },       { 127, 1 },     { 128, 2 },       { 16383, 2 },     { 16384, 3 },
        { 2097151, 3 }, { 2097152, 4 }, { 268435455, 4 }, { 268435456, 0 }, { UINT32_MAX, 0 },
    };
    uint8_t buf[8], fb, rc;
    uint32_t v, rem;
    size_t i, hl;

    (void)state;
    for (i = 0; i < NELEM(cases); i++) {
        assert_int_equal(mqtt_varint_size(cases[i].v), cases[i].size);
        memset(buf, 0, sizeof(buf));
        buf[0] = 0xc0;
        assert_int_equal(mqtt_varint_write(cases[i].v, buf + 1), cases[i].size);
        if (cases[i].size == 0) {
            continue;
        }
        assert_int_equal(mqtt_varint_read(buf + 1, cases[i].size, &v), (int)cases[i].size);
        assert_int_equal(v, cases[i].v);
        assert_int_equal(mqtt_varint_read(buf + 1, cases[i].size - 1, &v), 0);
        assert_int_equal(mqtt_frame(buf, 1 + cases[i].size, &fb, &rem, &hl, &rc), MQTT_OK);
        assert_int_equal(rem, cases[i].v);
        assert_int_equal(hl, 1 + cases[i].size);
    }
    assert_int_equal(mqtt_varint_read((const uint8_t *)"\x80\x80\x80\x80\x01", 5, &v), -1);
    assert_int_equal(mqtt_varint_read((const uint8_t *)"\x80\x80\x80\x00", 4, &v), 4);
    assert_int_equal(v, 0);
}

/* UTF-8 strings [MQTT-1.5.4-1..3]; each also tried as a PUBLISH topic name. */
static void
test_utf8(void **state)
{
    static const struct {
        const char *name;
        const uint8_t *s;
        size_t len;
        int valid;       /* mqtt_utf8_valid */
        int wellformed;  /* mqtt_utf8_wellformed */
    } cases[] = {
        { "empty", PKT(""), 1, 1 },
        { "ascii", PKT("abc"), 1, 1 },
        { "long ascii", PKT("abcdefghijklmnopqrstuvwxyz0123456789"), 1, 1 },
        { "U+0000", PKT("\x00"), 0, 1 },                             /* [MQTT-1.5.4-2] */
        { "U+0000 in 2nd word", PKT("abcdefghij\x00klmnopq"), 0, 1 }, /* [MQTT-1.5.4-2] */
        { "U+0000 at end", PKT("abcdefgh\x00"), 0, 1 },
        { "overlong U+0000", PKT("\xc0\x80"), 0, 0 },                /* [MQTT-1.5.4-1] */
        { "overlong 2-byte", PKT("\xc1\xbf"), 0, 0 },
        { "overlong 3-byte", PKT("\xe0\x80\xaf"), 0, 0 },
        { "overlong 3-byte max", PKT("\xe0\x9f\xbf"), 0, 0 },
        { "overlong 4-byte", PKT("\xf0\x80\x80\xaf"), 0, 0 },
        { "overlong 4-byte max", PKT("\xf0\x8f\xbf\xbf"), 0, 0 },
        { "surrogate D800", PKT("\xed\xa0\x80"), 0, 0 },             /* [MQTT-1.5.4-1] */
        { "surrogate DFFF", PKT("\xed\xbf\xbf"), 0, 0 },             /* [MQTT-1.5.4-1] */
        { "U+D7FF", PKT("\xed\x9f\xbf"), 1, 1 },
        { "U+E000", PKT("\xee\x80\x80"), 1, 1 },
        { "U+0080", PKT("\xc2\x80"), 1, 1 },
        { "U+07FF", PKT("\xdf\xbf"), 1, 1 },
        { "U+0800", PKT("\xe0\xa0\x80"), 1, 1 },
        { "U+FFFF noncharacter", PKT("\xef\xbf\xbf"), 1, 1 },
        { "BOM kept [MQTT-1.5.4-3]", PKT("\xef\xbb\xbf"), 1, 1 },
        { "U+10000", PKT("\xf0\x90\x80\x80"), 1, 1 },
        { "4-byte max U+10FFFF", PKT("\xf4\x8f\xbf\xbf"), 1, 1 },
        { "U+110000", PKT("\xf4\x90\x80\x80"), 0, 0 },
        { "F5 lead", PKT("\xf5\x80\x80\x80"), 0, 0 },
        { "FF", PKT("\xff"), 0, 0 },
        { "FE", PKT("\xfe"), 0, 0 },
        { "lone continuation", PKT("\x80"), 0, 0 },
        { "bad continuation 2-byte", PKT("\xc3\x28"), 0, 0 },
        { "bad continuation 3-byte, 2nd", PKT("\xe2\x28\xa1"), 0, 0 },
        { "bad continuation 3-byte, 3rd", PKT("\xe2\x82\x28"), 0, 0 },
        { "bad continuation 4-byte, 4th", PKT("\xf0\x9f\x98\x28"), 0, 0 },
        { "truncated 3-byte", PKT("\xe2\x82"), 0, 0 },
        { "truncated 4-byte", PKT("\xf0\x9f\x98"), 0, 0 },
        { "truncated after ascii word", PKT("12345678\xc3"), 0, 0 },
        { "emoji", PKT("\xf0\x9f\x98\x80"), 1, 1 },
        { "mixed", PKT("hello world, caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 ok!!"), 1, 1 },
        { "mixed, bad at end", PKT("hello world, caf\xc3\xa9 \xe2\x82\xac ok!!\xed\xa0\x80"), 0,
          0 },
    };
    struct mqtt_packet out;
    uint8_t pkt[128], rc;
    size_t i, n;

    (void)state;
    for (i = 0; i < NELEM(cases); i++) {
        print_message("utf8: %s\n", cases[i].name);
        assert_int_equal(mqtt_utf8_valid(cases[i].s, cases[i].len), cases[i].valid);
        assert_int_equal(mqtt_utf8_wellformed(cases[i].s, cases[i].len), cases[i].wellformed);
        if (cases[i].len == 0) {
            continue;
        }
        /* As a topic name: Malformed when not a valid UTF-8 string. */
        n = 0;
        pkt[n++] = 0x30;
        pkt[n++] = (uint8_t)(2 + cases[i].len);
        pkt[n++] = 0;
        pkt[n++] = (uint8_t)cases[i].len;
        memcpy(pkt + n, cases[i].s, cases[i].len);
        n += cases[i].len;
        assert_int_equal(mqtt_decode(pkt, n, MQTT_V311, &out, &rc),
                         cases[i].valid ? MQTT_OK : MQTT_ERROR);
        assert_int_equal(rc, cases[i].valid ? 0 : MQTT_RC_MALFORMED_PACKET);
    }
}

/* Exact bytes of the v5 short forms and of v3 packets. */
static void
test_encode_bytes(void **state)
{
    static const struct {
        const char *name;
        int type;
        int version;
        int variant;
        const uint8_t *want;
        size_t len;
    } cases[] = {
        { "puback v5 short", MQTT_PUBACK, 5, 1, PKT("\x40\x02\x00\x08") }, /* 3.4.2.1 */
        { "puback v5 rc only", MQTT_PUBACK, 5, 2, PKT("\x40\x03\x00\x09\x97") },
        { "pubrel v5 short", MQTT_PUBREL, 5, 1, PKT("\x62\x02\x00\x08") },
        { "pubrel v3", MQTT_PUBREL, 4, 0, PKT("\x62\x02\x00\x07") },
        { "disconnect v5 short", MQTT_DISCONNECT, 5, 1, PKT("\xe0\x00") }, /* 3.14.2.1 */
        { "disconnect v5 rc only", MQTT_DISCONNECT, 5, 2, PKT("\xe0\x01\x8b") },
        { "disconnect v3", MQTT_DISCONNECT, 4, 0, PKT("\xe0\x00") },
        { "auth v5 short", MQTT_AUTH, 5, 1, PKT("\xf0\x00") }, /* 3.15.2.1 */
        { "auth v5 method", MQTT_AUTH, 5, 2,
          PKT("\xf0\x10\x19\x0e\x15\x00\x0bSCRAM-SHA-1") },
        { "connack v3", MQTT_CONNACK, 4, 1, PKT("\x20\x02\x00\x05") },
        { "connack v5", MQTT_CONNACK, 5, 1, PKT("\x20\x03\x00\x87\x00") },
        { "pingreq", MQTT_PINGREQ, 4, 0, PKT("\xc0\x00") },
        { "pingresp", MQTT_PINGRESP, 5, 0, PKT("\xd0\x00") },
        { "unsuback v3", MQTT_UNSUBACK, 4, 0, PKT("\xb0\x02\x80\x00") },
        { "unsuback v5", MQTT_UNSUBACK, 5, 1, PKT("\xb0\x04\x80\x00\x00\x00") },
        { "suback v3", MQTT_SUBACK, 3, 1, PKT("\x90\x03\x80\x00\x00") },
        { "subscribe v3", MQTT_SUBSCRIBE, 4, 1, PKT("\x82\x08\x00\x01\x00\x03s/+\x00") },
        { "unsubscribe v5", MQTT_UNSUBSCRIBE, 5, 1, PKT("\xa2\x06\x00\x02\x00\x00\x01#") },
        { "connect v3.1", MQTT_CONNECT, 3, 1,
          PKT("\x10\x10\x00\x06MQIsdp\x03\x80\xff\xff\x00\x00\x00\x00") },
        { "connect v3.1.1", MQTT_CONNECT, 4, 1,
          PKT("\x10\x0e\x00\x04MQTT\x04\x80\xff\xff\x00\x00\x00\x00") },
        { "connect v5", MQTT_CONNECT, 5, 1,
          PKT("\x10\x0f\x00\x04MQTT\x05\x80\xff\xff\x00\x00\x00\x00\x00") },
        { "publish v5 alias", MQTT_PUBLISH, 5, 2,
          PKT("\x34\x08\x00\x00\xff\xff\x03\x23\x00\x05") },
    };
    struct codec_state *s = *state;
    struct mqtt_packet p;
    size_t i;

    for (i = 0; i < NELEM(cases); i++) {
        print_message("encode: %s\n", cases[i].name);
        assert_true(make_packet(cases[i].type, cases[i].version, cases[i].variant, &p));
        assert_int_equal(mqtt_encode(&p, cases[i].version, s->buf, s->cap), cases[i].len);
        assert_memory_equal(s->buf, cases[i].want, cases[i].len);
    }
}

/* What cannot be encoded returns 0; a too-small buffer gets the size and no write. */
static void
test_encode_limits(void **state)
{
    struct codec_state *s = *state;
    static uint8_t long_str[0x10000];
    struct mqtt_packet p;
    size_t n;

    /* Remaining length exactly at the limit: sized, not written (cap 0). */
    make_packet(MQTT_PUBLISH, MQTT_V311, 2, &p);
    p.u.publish.qos = 0;
    p.u.publish.payload.ptr = long_str;
    p.u.publish.payload.len = MQTT_MAX_REMAINING_LENGTH - 3;
    assert_int_equal(mqtt_encode(&p, MQTT_V311, NULL, 0), 1 + 4 + MQTT_MAX_REMAINING_LENGTH);
    p.u.publish.payload.len++;
    assert_int_equal(mqtt_encode(&p, MQTT_V311, NULL, 0), 0);
    p.u.publish.payload.len = UINT32_MAX;
    assert_int_equal(mqtt_encode(&p, MQTT_V311, NULL, 0), 0);

    /* A 65536-byte string cannot be encoded. */
    make_packet(MQTT_PUBLISH, MQTT_V311, 1, &p);
    p.u.publish.topic.ptr = long_str;
    p.u.publish.topic.len = sizeof(long_str);
    assert_int_equal(mqtt_encode(&p, MQTT_V311, s->buf, s->cap), 0);
    make_packet(MQTT_PUBLISH, MQTT_V5, 1, &p);
    p.u.publish.props.present = PB(CONTENT_TYPE);
    p.u.publish.props.content_type.ptr = long_str;
    p.u.publish.props.content_type.len = sizeof(long_str);
    assert_int_equal(mqtt_props_size(&p.u.publish.props), SIZE_MAX);
    assert_int_equal(mqtt_encode(&p, MQTT_V5, s->buf, s->cap), 0);
    p.u.publish.props.content_type.len = 0xffff;
    assert_int_equal(mqtt_props_size(&p.u.publish.props), 3 + 0xffff);
    make_packet(MQTT_CONNECT, MQTT_V311, 1, &p);
    p.u.connect.username.ptr = long_str;
    p.u.connect.username.len = sizeof(long_str);
    assert_int_equal(mqtt_encode(&p, MQTT_V311, s->buf, s->cap), 0);

    /* QoS 3, AUTH before 5.0, unknown type, unknown version. */
    make_packet(MQTT_PUBLISH, MQTT_V5, 0, &p);
    p.u.publish.qos = 3;
    assert_int_equal(mqtt_encode(&p, MQTT_V5, s->buf, s->cap), 0);
    make_packet(MQTT_AUTH, MQTT_V5, 1, &p);
    assert_int_equal(mqtt_encode(&p, MQTT_V311, s->buf, s->cap), 0);
    assert_int_equal(mqtt_encode(&p, MQTT_V5, s->buf, s->cap), 2);
    p.type = 0;
    assert_int_equal(mqtt_encode(&p, MQTT_V5, s->buf, s->cap), 0);
    make_packet(MQTT_PINGREQ, MQTT_V5, 0, &p);
    assert_int_equal(mqtt_encode(&p, 6, s->buf, s->cap), 0);

    /* Subscription identifier over the varint limit. */
    {
        static const uint32_t too_big[] = { 268435456 };

        make_packet(MQTT_PUBLISH, MQTT_V5, 1, &p);
        p.u.publish.props.sub_ids = too_big;
        p.u.publish.props.sub_id_count = 1;
        assert_int_equal(mqtt_encode(&p, MQTT_V5, s->buf, s->cap), 0);
    }

    /* Exactly the cap: written. One less: size returned, nothing written. */
    make_packet(MQTT_PUBLISH, MQTT_V5, 0, &p);
    n = mqtt_encode(&p, MQTT_V5, NULL, 0);
    memset(s->buf, 0xee, n);
    assert_int_equal(mqtt_encode(&p, MQTT_V5, s->buf, n - 1), n);
    assert_int_equal(s->buf[0], 0xee);
    assert_int_equal(mqtt_encode(&p, MQTT_V5, s->buf, n), n);
    assert_int_equal(s->buf[0], 0x3b);
}

/*
 * Properties as received may interleave user properties and subscription
 * identifiers with others: the iterators skip the others, and re-encoding
 * writes each once.
 */
static void
test_props_interleaved(void **state)
{
    /* sub id 1, user k=v, topic alias 3, sub id 300, user k=w */
    static const uint8_t pkt[] = "\x30\x1c\x00\x01t\x16"
                                 "\x0b\x01"
                                 "\x26\x00\x01k\x00\x01v"
                                 "\x23\x00\x03"
                                 "\x0b\xac\x02"
                                 "\x26\x00\x01k\x00\x01w"
                                 "pl";
    struct codec_state *s = *state;
    struct mqtt_packet out, again;
    struct mqtt_bytes k, v;
    uint32_t pos = 0, id;
    uint8_t rc;
    size_t n;

    assert_int_equal(mqtt_decode(pkt, sizeof(pkt) - 1, MQTT_V5, &out, &rc), MQTT_OK);
    assert_int_equal(out.u.publish.props.sub_id_count, 2);
    assert_int_equal(out.u.publish.props.sub_id, 1);
    assert_int_equal(out.u.publish.props.topic_alias, 3);
    assert_true(mqtt_sub_id_next(&out.u.publish.props, &pos, &id));
    assert_int_equal(id, 1);
    assert_true(mqtt_sub_id_next(&out.u.publish.props, &pos, &id));
    assert_int_equal(id, 300);
    assert_false(mqtt_sub_id_next(&out.u.publish.props, &pos, &id));
    pos = 0;
    assert_true(mqtt_user_prop_next(&out.u.publish.props, &pos, &k, &v));
    assert_memory_equal(v.ptr, "v", 1);
    assert_true(mqtt_user_prop_next(&out.u.publish.props, &pos, &k, &v));
    assert_memory_equal(v.ptr, "w", 1);
    assert_false(mqtt_user_prop_next(&out.u.publish.props, &pos, &k, &v));
    assert_bytes_eq(BS("pl"), out.u.publish.payload);

    /* Re-encoded: same size (order canonicalised), and decodes the same. */
    n = mqtt_encode(&out, MQTT_V5, s->buf, s->cap);
    assert_int_equal(n, sizeof(pkt) - 1);
    assert_int_equal(mqtt_decode(s->buf, n, MQTT_V5, &again, &rc), MQTT_OK);
    assert_int_equal(again.u.publish.props.sub_id_count, 2);
    assert_int_equal(again.u.publish.props.user_props.len, 14);
    assert_int_equal(again.u.publish.props.topic_alias, 3);
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(mqtt_type_name(MQTT_PUBLISH), "PUBLISH");
    assert_string_equal(mqtt_type_name(MQTT_AUTH), "AUTH");
    assert_string_equal(mqtt_type_name(0), "UNKNOWN");
    assert_string_equal(mqtt_type_name(16), "UNKNOWN");
    assert_string_equal(mqtt_type_name(-1), "UNKNOWN");
    assert_string_equal(mqtt_rc_name(MQTT_RC_NOT_AUTHORIZED), "not authorized");
    assert_string_equal(mqtt_rc_name(MQTT_RC_MALFORMED_PACKET), "malformed packet");
    assert_string_equal(mqtt_rc_name(0x03), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_props_wrong_packet, setup, teardown),
        cmocka_unit_test(test_decode_cases),
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_decode_length_mismatch),
        cmocka_unit_test(test_varint),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test_setup_teardown(test_encode_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_props_interleaved, setup, teardown),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
