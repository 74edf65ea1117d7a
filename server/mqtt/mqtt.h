/*
 * midge MQTT codec: bytes in, packet structs out, and back.
 *
 * Pure library: no I/O, no allocation, no globals. Covers MQTT 3.1 (protocol
 * level 3), 3.1.1 (level 4) and 5.0 (level 5). Shared by the broker and the
 * bridge plugin; first target of fuzzing.
 *
 * Ownership: every pointer inside a decoded packet is a view into the input
 * buffer given to mqtt_decode(); it stays valid only while that buffer does.
 * Nothing is allocated, so nothing needs freeing. Encoding reads the packet
 * struct (views owned by the caller) and writes into a caller-owned buffer.
 *
 * Threading: every function is reentrant and may be called from any thread.
 */
#ifndef MIDGE_MQTT_H
#define MIDGE_MQTT_H

#include <stddef.h>
#include <stdint.h>

/* Protocol levels as they appear in CONNECT. */
enum mqtt_version {
    MQTT_V31 = 3,
    MQTT_V311 = 4,
    MQTT_V5 = 5,
};

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15,
};

/* MQTT 5 reason codes (section 2.4). v3 return codes are mapped by the caller. */
enum mqtt_rc {
    MQTT_RC_SUCCESS = 0x00, /* also Normal disconnection, Granted QoS 0 */
    MQTT_RC_GRANTED_QOS1 = 0x01,
    MQTT_RC_GRANTED_QOS2 = 0x02,
    MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT_RC_CONTINUE_AUTHENTICATION = 0x18,
    MQTT_RC_REAUTHENTICATE = 0x19,
    MQTT_RC_UNSPECIFIED = 0x80,
    MQTT_RC_MALFORMED_PACKET = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPLEMENTATION_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_NOT_VALID = 0x85,
    MQTT_RC_BAD_USERNAME_OR_PASSWORD = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_BANNED = 0x8A,
    MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT_RC_BAD_AUTHENTICATION_METHOD = 0x8C,
    MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_ID_IN_USE = 0x91,
    MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93,
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    MQTT_RC_QUOTA_EXCEEDED = 0x97,
    MQTT_RC_ADMINISTRATIVE_ACTION = 0x98,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    MQTT_RC_SERVER_MOVED = 0x9D,
    MQTT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    MQTT_RC_MAXIMUM_CONNECT_TIME = 0xA0,
    MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* MQTT 3.1.1 CONNACK return codes. */
enum mqtt_v3_connack {
    MQTT_V3_ACCEPTED = 0,
    MQTT_V3_REFUSED_PROTOCOL_VERSION = 1,
    MQTT_V3_REFUSED_IDENTIFIER_REJECTED = 2,
    MQTT_V3_REFUSED_SERVER_UNAVAILABLE = 3,
    MQTT_V3_REFUSED_BAD_USERNAME_PASSWORD = 4,
    MQTT_V3_REFUSED_NOT_AUTHORIZED = 5,
};

/* MQTT 5 property identifiers (section 2.2.2.2). */
enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAXIMUM_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER_PROPERTY = 0x26,
    MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/*
 * Bit for each property in mqtt_props.present: MQTT_PBIT(MQTT_PROP_x).
 * Property ids are all below 64.
 */
#define MQTT_PBIT(id) (UINT64_C(1) << (id))

/* A length-delimited view: a UTF-8 string or binary data. Not NUL-terminated. */
struct mqtt_bytes {
    const uint8_t *ptr;
    uint32_t len;
};

/*
 * Decoded (or to-be-encoded) MQTT 5 properties.
 *
 * `present` says which scalar/string fields are set. User properties are kept
 * as their encoded bytes (each pair: 0x26, string, string) so they pass through
 * unchanged and in order: iterate with mqtt_user_prop_next(). Subscription
 * identifiers: on decode, `sub_id_count` and the first one in `sub_id`, the
 * rest via mqtt_sub_id_next() over `sub_ids_raw`; on encode, `sub_ids` points
 * to `sub_id_count` values (and `sub_id` is ignored).
 */
struct mqtt_props {
    uint64_t present;
    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    uint8_t maximum_qos;
    uint8_t retain_available;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    uint16_t server_keep_alive;
    uint16_t receive_maximum;
    uint16_t topic_alias_maximum;
    uint16_t topic_alias;
    uint32_t message_expiry;
    uint32_t session_expiry;
    uint32_t will_delay;
    uint32_t maximum_packet_size;
    uint32_t sub_id;
    uint32_t sub_id_count;
    struct mqtt_bytes sub_ids_raw;
    const uint32_t *sub_ids;
    struct mqtt_bytes content_type;
    struct mqtt_bytes response_topic;
    struct mqtt_bytes correlation_data;
    struct mqtt_bytes assigned_client_id;
    struct mqtt_bytes auth_method;
    struct mqtt_bytes auth_data;
    struct mqtt_bytes response_info;
    struct mqtt_bytes server_reference;
    struct mqtt_bytes reason_string;
    struct mqtt_bytes user_props; /* encoded pairs, 0x26 included */
};

struct mqtt_connect {
    uint8_t version; /* enum mqtt_version */
    uint8_t clean_start;
    uint8_t will_flag;
    uint8_t will_qos;
    uint8_t will_retain;
    uint8_t has_username;
    uint8_t has_password;
    uint16_t keep_alive;
    struct mqtt_props props;
    struct mqtt_bytes client_id;
    struct mqtt_props will_props;
    struct mqtt_bytes will_topic;
    struct mqtt_bytes will_payload;
    struct mqtt_bytes username;
    struct mqtt_bytes password;
};

struct mqtt_connack {
    uint8_t session_present;
    uint8_t rc; /* v5 reason code, or v3 return code when encoding for v3 */
    struct mqtt_props props;
};

struct mqtt_publish {
    uint8_t qos;
    uint8_t retain;
    uint8_t dup;
    uint16_t packet_id;
    struct mqtt_bytes topic; /* may be empty in v5 when a topic alias is set */
    struct mqtt_props props;
    struct mqtt_bytes payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
struct mqtt_ack {
    uint16_t packet_id;
    uint8_t rc;
    struct mqtt_props props;
};

struct mqtt_sub_entry {
    struct mqtt_bytes filter;
    uint8_t qos;
    uint8_t no_local;
    uint8_t retain_as_published;
    uint8_t retain_handling;
};

/*
 * SUBSCRIBE. Decoded: `count` entries, validated, iterate with
 * mqtt_subscribe_next() over `raw`. Encoding: `entries` holds `count` items.
 */
struct mqtt_subscribe {
    uint16_t packet_id;
    struct mqtt_props props;
    uint32_t count;
    struct mqtt_bytes raw;
    const struct mqtt_sub_entry *entries;
};

/* SUBACK and UNSUBACK: one reason code byte per filter (none for v3 UNSUBACK). */
struct mqtt_suback {
    uint16_t packet_id;
    struct mqtt_props props;
    struct mqtt_bytes rcs;
};

/*
 * UNSUBSCRIBE. Decoded: `count` filters, iterate with mqtt_unsubscribe_next()
 * over `raw`. Encoding: `filters` holds `count` items.
 */
struct mqtt_unsubscribe {
    uint16_t packet_id;
    struct mqtt_props props;
    uint32_t count;
    struct mqtt_bytes raw;
    const struct mqtt_bytes *filters;
};

/* DISCONNECT and AUTH: a reason code and properties (both absent in v3). */
struct mqtt_reason {
    uint8_t rc;
    struct mqtt_props props;
};

struct mqtt_packet {
    uint8_t type;  /* enum mqtt_type */
    uint8_t flags; /* low nibble of the first byte, as received */
    union {
        struct mqtt_connect connect;
        struct mqtt_connack connack;
        struct mqtt_publish publish;
        struct mqtt_ack ack;
        struct mqtt_subscribe subscribe;
        struct mqtt_suback suback;
        struct mqtt_unsubscribe unsubscribe;
        struct mqtt_reason reason; /* DISCONNECT, AUTH */
    } u;
};

/* Result of framing and decoding. */
enum mqtt_status {
    MQTT_OK = 0,
    MQTT_NEED_MORE = 1, /* not a whole packet yet: read more and call again */
    MQTT_ERROR = -1,    /* invalid: *rc holds the reason code to report */
};

#define MQTT_MAX_REMAINING_LENGTH 268435455u

/*
 * Reads a fixed header: the first byte and the Remaining Length.
 * On MQTT_OK, *header_len is 2..5 and the whole packet is
 * *header_len + *remaining bytes. A Remaining Length longer than four bytes is
 * MQTT_ERROR with MQTT_RC_MALFORMED_PACKET, reported as soon as the fourth
 * length byte shows a continuation bit; so is packet type 0 (reserved in every
 * version). Other first-byte checks are left to mqtt_decode().
 */
enum mqtt_status mqtt_frame(const uint8_t *buf, size_t len, uint8_t *first_byte,
                            uint32_t *remaining, size_t *header_len, uint8_t *rc);

/*
 * Decodes one whole packet (fixed header included; `len` is exactly its
 * length as found by mqtt_frame()). `version` is the connection's protocol
 * level; it is ignored for CONNECT, whose own level is decoded into
 * out->u.connect.version. Validates every field: reserved flags, UTF-8 rules
 * (no U+0000, no surrogates, well-formed) [MQTT-1.5.4-1..3], duplicate and
 * out-of-place properties, packet id 0, wildcards in a PUBLISH topic, QoS 3,
 * CONNECT flag rules. On MQTT_ERROR, *rc is the exact reason code
 * (MALFORMED_PACKET, PROTOCOL_ERROR, TOPIC_NAME_INVALID,
 * UNSUPPORTED_PROTOCOL_VERSION, PAYLOAD_FORMAT_INVALID, ...).
 * For an unknown protocol name or level in CONNECT, the error is
 * UNSUPPORTED_PROTOCOL_VERSION and out->u.connect.version holds the level read.
 * Topic filters in SUBSCRIBE/UNSUBSCRIBE are checked only as UTF-8 strings
 * here; their wildcard syntax is checked by topic_filter_valid().
 * Never returns MQTT_NEED_MORE: a short buffer is MALFORMED_PACKET.
 */
enum mqtt_status mqtt_decode(const uint8_t *buf, size_t len, int version,
                             struct mqtt_packet *out, uint8_t *rc);

/*
 * Encodes `p` for protocol `version` into out[0..cap). Returns the packet's
 * total length; writes only when that length is <= cap (so call with cap 0 to
 * size a buffer). Returns 0 if the packet cannot be encoded (e.g. remaining
 * length over the limit, a string over 65535 bytes, AUTH or QoS 3 asked for).
 * Fields that do not exist in `version` are ignored (properties and reason
 * codes in v3). The first byte's flags come from the packet type (and the
 * PUBLISH fields), not from p->flags. CONNECT takes its protocol name and
 * level from `version`, not from u.connect.version. A SUBSCRIBE or UNSUBSCRIBE
 * whose `entries`/`filters` is NULL is encoded from `raw`, so a decoded packet
 * can be re-encoded as is.
 */
size_t mqtt_encode(const struct mqtt_packet *p, int version, uint8_t *out, size_t cap);

/*
 * Bytes needed to encode `props` as a property block, not counting the length prefix.
 * Scalars and strings are written when their bit is in `present`; subscription
 * identifiers when sub_id_count > 0 (from `sub_ids`, or from `sub_ids_raw` when
 * `sub_ids` is NULL, as after a decode); user properties when user_props.len > 0
 * (only the 0x26 entries found there). Returns SIZE_MAX when the block cannot be
 * encoded (a string over 65535 bytes, a subscription identifier over the varint
 * limit, a block over MQTT_MAX_REMAINING_LENGTH).
 */
size_t mqtt_props_size(const struct mqtt_props *props);

/* Writes `props` (length prefix included) to out; returns bytes written (0 if unencodable). */
size_t mqtt_props_write(const struct mqtt_props *props, uint8_t *out);

/* Variable byte integer helpers. Size and write return 0 for v > MQTT_MAX_REMAINING_LENGTH. */
size_t mqtt_varint_size(uint32_t v);
size_t mqtt_varint_write(uint32_t v, uint8_t *out);

/*
 * Reads a variable byte integer from buf[0..len). Returns the bytes used (1..4),
 * 0 when buf ends before the last byte, -1 when it would take more than 4 bytes.
 * Non-minimal encodings are accepted.
 */
int mqtt_varint_read(const uint8_t *buf, size_t len, uint32_t *v);

/* Property context of a will (CONNECT payload), for mqtt_props_read(). */
#define MQTT_PROPS_WILL 0

/*
 * Reads and validates an MQTT 5 property block (length prefix included) at
 * buf[0..len) for packet type `ctx` (enum mqtt_type) or MQTT_PROPS_WILL.
 * `out` must be zeroed by the caller. On MQTT_OK, *used is the block's size
 * and *rc is 0; on MQTT_ERROR, *rc is MALFORMED_PACKET (bad length, property
 * not valid for ctx, bad UTF-8) or PROTOCOL_ERROR (duplicate, forbidden value).
 * Views in `out` point into buf.
 */
enum mqtt_status mqtt_props_read(const uint8_t *buf, size_t len, int ctx, struct mqtt_props *out,
                                 size_t *used, uint8_t *rc);

/*
 * Iterators. *pos starts at 0. Return 1 and fill the outputs while there is
 * another item, 0 at the end. Only for packets that mqtt_decode() validated.
 * mqtt_sub_id_next() yields every subscription identifier, the first (also in
 * props->sub_id) included; it and mqtt_user_prop_next() skip other properties
 * interleaved in their views, as a peer may send them in any order.
 */
int mqtt_user_prop_next(const struct mqtt_props *props, uint32_t *pos, struct mqtt_bytes *key,
                        struct mqtt_bytes *value);
int mqtt_sub_id_next(const struct mqtt_props *props, uint32_t *pos, uint32_t *sub_id);
int mqtt_subscribe_next(const struct mqtt_subscribe *s, uint32_t *pos, struct mqtt_sub_entry *e);
int mqtt_unsubscribe_next(const struct mqtt_unsubscribe *u, uint32_t *pos,
                          struct mqtt_bytes *filter);

/* 1 if buf[0..len) is well-formed UTF-8 with no U+0000 and no surrogates. */
int mqtt_utf8_valid(const uint8_t *buf, size_t len);

/*
 * 1 if buf[0..len) is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF); U+0000 allowed. For payloads with Payload Format 1.
 */
int mqtt_utf8_wellformed(const uint8_t *buf, size_t len);

/* Name of a packet type, for logs ("PUBLISH"); "UNKNOWN" otherwise. */
const char *mqtt_type_name(int type);

/* Short name of a reason code, for logs ("not authorized"). */
const char *mqtt_rc_name(int rc);

#endif
