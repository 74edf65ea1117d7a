/* Immutable, reference-counted application messages. */
#include "msg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * Keeps only the properties that pass through unchanged [MQTT-3.3.2-17..20]:
 * payload format, content type, response topic, correlation data and user
 * properties (in order). Message expiry, topic alias and subscription ids are
 * rewritten per subscriber.
 */
static void
passthrough_props(const struct mqtt_props *p, struct mqtt_props *keep)
{
    memset(keep, 0, sizeof(*keep));
    if (p == NULL) {
        return;
    }
    keep->present = p->present & (MQTT_PBIT(MQTT_PROP_PAYLOAD_FORMAT) |
                                  MQTT_PBIT(MQTT_PROP_CONTENT_TYPE) |
                                  MQTT_PBIT(MQTT_PROP_RESPONSE_TOPIC) |
                                  MQTT_PBIT(MQTT_PROP_CORRELATION_DATA));
    keep->payload_format = p->payload_format;
    keep->content_type = p->content_type;
    keep->response_topic = p->response_topic;
    keep->correlation_data = p->correlation_data;
    keep->user_props = p->user_props;
}

/* Bytes of keep's encoding without its length prefix; 0 when it has nothing. */
static size_t
keep_size(const struct mqtt_props *keep)
{
    return keep->present != 0 || keep->user_props.len != 0 ? mqtt_props_size(keep) : 0;
}

/*
 * Writes keep's n (keep_size) bytes at dst without the length prefix;
 * dst has 4 bytes more room: mqtt_props_write() puts the prefix first.
 */
static void
keep_write(const struct mqtt_props *keep, uint8_t *dst, size_t n)
{
    if (n > 0) {
        mqtt_props_write(keep, dst);
        memmove(dst, dst + mqtt_varint_size((uint32_t)n), n);
    }
}

/* Encodes a PUBLISH's pass-through properties as msg_new keeps them; see msg.h. */
int
msg_props_encode(const struct mqtt_props *props, uint8_t **out, uint32_t *len)
{
    struct mqtt_props keep;
    size_t n;

    *out = NULL;
    *len = 0;
    passthrough_props(props, &keep);
    if ((n = keep_size(&keep)) == 0) {
        return 0;
    }
    if ((*out = malloc(n + 4)) == NULL) {
        return -1;
    }
    keep_write(&keep, *out, n);
    *len = (uint32_t)n;
    return 0;
}

/*
 * Bytes of live messages, in per-thread shards (a shared counter would be a
 * contended cache line on every publish). A message may be freed on another
 * thread than the one that made it: shards are signed, only the sum means
 * something.
 */
#define MEM_SHARDS 64
static struct {
    _Alignas(64) atomic_llong v;
} mem[MEM_SHARDS];
static atomic_uint mem_next;
static __thread int mem_shard = -1;
static __thread long long mem_made; /* bytes of the messages this thread made, ever */

static void
mem_add(long long n)
{
    if (mem_shard < 0) {
        mem_shard = (int)(atomic_fetch_add(&mem_next, 1) % MEM_SHARDS);
    }
    if (n > 0) {
        mem_made += n;
    }
    atomic_fetch_add_explicit(&mem[mem_shard].v, n, memory_order_relaxed);
}

long long
msg_mem_made_here(void)
{
    return mem_made;
}

long long
msg_mem_in_use(void)
{
    long long sum = 0;
    int i;

    for (i = 0; i < MEM_SHARDS; i++) {
        sum += atomic_load_explicit(&mem[i].v, memory_order_relaxed);
    }
    return sum;
}

/*
 * Creates a message; see msg.h. The returned reference belongs to the caller.
 */
struct msg *
msg_new(const char *topic, size_t topic_len, const uint8_t *payload, uint32_t payload_len,
        uint8_t qos, uint8_t retain, const struct mqtt_props *props, double now)
{
    struct mqtt_props keep;
    size_t props_len;
    struct msg *m;
    uint8_t *p;

    passthrough_props(props, &keep);
    props_len = keep_size(&keep);
    /* 4 spare bytes for keep_write. */
    size_t bytes = sizeof(*m) + 2 + topic_len + 1 + props_len + 4 + payload_len;

    m = malloc(bytes);
    if (m == NULL) {
        return NULL;
    }
    m->mem = (uint32_t)bytes;
    mem_add((long long)bytes);
    atomic_init(&m->refs, 1);
    m->qos = qos;
    m->retain = retain;
    m->payload_format = 0;
    m->topic_len = (uint16_t)topic_len;
    m->props_len = (uint32_t)props_len;
    m->payload_len = payload_len;
    m->expiry_at = 0;
    m->origin_session = 0;
    atomic_init(&m->id, 0);
    p = m->data;
    m->topic_wire = p;
    p[0] = (uint8_t)(topic_len >> 8);
    p[1] = (uint8_t)topic_len;
    memcpy(p + 2, topic, topic_len);
    p[2 + topic_len] = 0;
    m->topic = (const char *)p + 2;
    p += 2 + topic_len + 1;
    m->props = p;
    keep_write(&keep, p, props_len);
    p += props_len;
    m->payload = p;
    if (payload_len > 0) {
        memcpy(p, payload, payload_len);
    }
    if (props != NULL) {
        if (props->present & MQTT_PBIT(MQTT_PROP_PAYLOAD_FORMAT)) {
            m->payload_format = props->payload_format;
        }
        if (props->present & MQTT_PBIT(MQTT_PROP_MESSAGE_EXPIRY)) {
            m->expiry_at = now + (double)props->message_expiry;
        }
    }
    return m;
}

/*
 * Drops one reference and frees the message with the last one. [any thread]
 */
void
msg_unref(struct msg *m)
{
    if (m != NULL && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        mem_add(-(long long)m->mem);
        free(m);
    }
}

/*
 * Remaining lifetime in whole seconds, rounded up, never 0 for a live message;
 * 0 means "no expiry". Used for the Message Expiry Interval sent on delivery
 * [MQTT-3.3.2-6].
 */
uint32_t
msg_expiry_left(const struct msg *m, double now)
{
    double left;

    if (m->expiry_at == 0) {
        return 0;
    }
    left = ceil(m->expiry_at - now);
    return left < 1 ? 1 : (uint32_t)left;
}

/*
 * A copy of m with another topic and/or payload and extra encoded
 * properties appended (a plugin's message_in edits). Keeps QoS, retain,
 * expiry, payload format and origin. The caller owns the reference returned.
 */
struct msg *
msg_rebuild(const struct msg *m, const char *topic, size_t topic_len, const uint8_t *payload,
            uint32_t payload_len, const uint8_t *extra_props, size_t extra_len)
{
    size_t props_len = m->props_len + extra_len;
    struct msg *n;
    uint8_t *p;

    if (props_len > UINT32_MAX / 2) {
        return NULL;
    }
    n = malloc(sizeof(*n) + 2 + topic_len + 1 + props_len + payload_len);
    if (n == NULL) {
        return NULL;
    }
    n->mem = (uint32_t)(sizeof(*n) + 2 + topic_len + 1 + props_len + payload_len);
    mem_add((long long)n->mem);
    atomic_init(&n->refs, 1);
    n->qos = m->qos;
    n->retain = m->retain;
    n->payload_format = m->payload_format;
    n->topic_len = (uint16_t)topic_len;
    n->props_len = (uint32_t)props_len;
    n->payload_len = payload_len;
    n->expiry_at = m->expiry_at;
    n->origin_session = m->origin_session;
    atomic_init(&n->id, 0);
    p = n->data;
    n->topic_wire = p;
    p[0] = (uint8_t)(topic_len >> 8);
    p[1] = (uint8_t)topic_len;
    memcpy(p + 2, topic, topic_len);
    p[2 + topic_len] = 0;
    n->topic = (const char *)p + 2;
    p += 2 + topic_len + 1;
    n->props = p;
    if (m->props_len > 0) {
        memcpy(p, m->props, m->props_len);
    }
    if (extra_len > 0) {
        memcpy(p + m->props_len, extra_props, extra_len);
    }
    p += props_len;
    n->payload = p;
    if (payload_len > 0) {
        memcpy(p, payload, payload_len);
    }
    return n;
}

static atomic_uint_fast64_t next_msg_id;

uint64_t
msg_id(struct msg *m)
{
    uint64_t id = atomic_load_explicit(&m->id, memory_order_relaxed);
    uint64_t fresh;

    if (id != 0) {
        return id;
    }
    fresh = atomic_fetch_add_explicit(&next_msg_id, 1, memory_order_relaxed) + 1;
    /* Two threads may race for the first id: the first store wins, both return it. */
    if (atomic_compare_exchange_strong(&m->id, &id, fresh)) {
        return fresh;
    }
    return id;
}

void
msg_id_floor(uint64_t id)
{
    uint_fast64_t cur = atomic_load(&next_msg_id);

    while (cur < id && !atomic_compare_exchange_weak(&next_msg_id, &cur, id)) {
    }
}
