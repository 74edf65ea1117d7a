/*
 * struct msg: one application message, immutable once created, shared by
 * every subscriber, session queue and retained store that holds it.
 *
 * Ownership: reference counted (atomic). Whoever holds a pointer holds one
 * reference and drops it with msg_unref(); the last unref frees it. Any
 * thread may take or drop references.
 *
 * Layout: one allocation. The topic is stored with its 2-byte MQTT length
 * prefix so every subscriber's PUBLISH can copy (or point to) the same
 * encoded bytes; `props` holds the MQTT 5 properties that pass through
 * unchanged (payload format, content type, response topic, correlation data,
 * user properties) already encoded, without the length prefix.
 */
#ifndef MIDGE_MSG_H
#define MIDGE_MSG_H

#include <stdatomic.h>
#include <stdint.h>

#include "mqtt.h"

struct msg {
    atomic_uint refs;
    uint8_t qos;             /* QoS it was published with */
    uint8_t retain;          /* RETAIN flag as published */
    uint8_t payload_format;  /* 1 when the payload is declared UTF-8 */
    uint16_t topic_len;
    uint32_t props_len;
    uint32_t payload_len;
    uint32_t mem;            /* bytes of this allocation (memory_limit accounting) */
    double expiry_at;        /* monotonic seconds when it expires; 0: never */
    uint64_t origin_session; /* uid of the publishing session (No Local); 0: broker */
    _Atomic uint64_t id;     /* process-unique id, given on first use (msg_id) */
    const uint8_t *topic_wire; /* 2-byte length + topic */
    const char *topic;        /* NUL-terminated */
    const uint8_t *props;
    const uint8_t *payload;
    uint8_t data[];
};

/*
 * Creates a message from a decoded PUBLISH (or will). Copies topic, payload
 * and pass-through properties. `now` is the monotonic time used for the
 * Message Expiry Interval. Returns NULL when out of memory; the caller owns
 * the one reference returned.
 */
struct msg *msg_new(const char *topic, size_t topic_len, const uint8_t *payload,
                    uint32_t payload_len, uint8_t qos, uint8_t retain,
                    const struct mqtt_props *props, double now);

/*
 * The pass-through properties of a PUBLISH (payload format, content type,
 * response topic, correlation data, user properties) encoded the way a
 * message keeps them (api->message_properties). *out is malloc'd (caller
 * frees) or NULL when there are none. Returns 0, or -1 when out of memory.
 */
int msg_props_encode(const struct mqtt_props *props, uint8_t **out, uint32_t *len);

/*
 * A copy of m with another topic and payload and `extra_props` (encoded
 * properties, no length prefix) appended to its properties. Returns NULL
 * when out of memory; the caller owns the reference returned.
 */
struct msg *msg_rebuild(const struct msg *m, const char *topic, size_t topic_len,
                        const uint8_t *payload, uint32_t payload_len,
                        const uint8_t *extra_props, size_t extra_len);

/* Bytes held by all live messages (memory_limit). [any thread] */
long long msg_mem_in_use(void);
/* Bytes of all the messages the calling thread made so far (only grows). */
long long msg_mem_made_here(void);

/* The message's id (persistence, plugins), assigned on first use. [any thread] */
uint64_t msg_id(struct msg *m);

/* Ids given from now on are above `id` (restored messages keep theirs). */
void msg_id_floor(uint64_t id);

/* Takes a reference. [any thread] */
static inline struct msg *
msg_ref(struct msg *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

/* Drops a reference; frees on the last one. NULL is ignored. [any thread] */
void msg_unref(struct msg *m);

/* Seconds left before expiry (at least 1), or 0 when it has no expiry. */
uint32_t msg_expiry_left(const struct msg *m, double now);

/* 1 when the message has expired at `now`. */
static inline int
msg_expired(const struct msg *m, double now)
{
    return m->expiry_at != 0 && now >= m->expiry_at;
}

#endif
