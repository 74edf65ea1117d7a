/* The forwarded-message blob (wire.h). */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

static void
put16(char *p, size_t v)
{
    p[0] = (char)((v >> 8) & 0xff);
    p[1] = (char)(v & 0xff);
}

static size_t
get16(const char *p)
{
    return ((size_t)(uint8_t)p[0] << 8) | (uint8_t)p[1];
}

static void
put32(char *p, uint32_t v)
{
    p[0] = (char)((v >> 24) & 0xff);
    p[1] = (char)((v >> 16) & 0xff);
    p[2] = (char)((v >> 8) & 0xff);
    p[3] = (char)(v & 0xff);
}

static uint32_t
get32(const char *p)
{
    return ((uint32_t)(uint8_t)p[0] << 24) | ((uint32_t)(uint8_t)p[1] << 16) |
           ((uint32_t)(uint8_t)p[2] << 8) | (uint8_t)p[3];
}

char *
wire_encode(const char *id, const char *topic, const void *payload, size_t payload_len, int qos,
            int retain, const void *props, uint32_t props_len, uint32_t expiry, size_t *out_len)
{
    size_t il = strlen(id);
    size_t tl = strlen(topic);
    size_t n;
    char *b;
    char *p;

    if (props == NULL) {
        props_len = 0;
    }
    n = 2 + 2 + il + 2 + tl + 4 + (size_t)props_len + 4 + payload_len;
    if (il > 0xffff || tl > 0xffff || qos < 0 || qos > 2 || props_len > 0xfffffffu ||
        payload_len > 0xfffffff0u - (n - payload_len)) {
        return NULL;
    }
    if ((b = malloc(4 + n)) == NULL) {
        return NULL;
    }
    p = b;
    put32(p, (uint32_t)n);
    p += 4;
    *p++ = WIRE_VERSION;
    *p++ = (char)(qos | (retain ? 4 : 0));
    put16(p, il);
    memcpy(p + 2, id, il);
    p += 2 + il;
    put16(p, tl);
    memcpy(p + 2, topic, tl);
    p += 2 + tl;
    put32(p, props_len);
    if (props_len > 0) {
        memcpy(p + 4, props, props_len);
    }
    p += 4 + props_len;
    put32(p, expiry);
    p += 4;
    if (payload_len > 0) {
        memcpy(p, payload, payload_len);
    }
    *out_len = 4 + n;
    return b;
}

int
wire_decode(const char *buf, size_t len, struct wire_msg *m)
{
    size_t pos = 4;

    memset(m, 0, sizeof(*m));
    if (buf == NULL || len < 6 || (buf[0] != 1 && buf[0] != 2) || (buf[1] & 3) > 2 ||
        (buf[1] & ~7) != 0) {
        return -1;
    }
    m->qos = buf[1] & 3;
    m->retain = (buf[1] & 4) != 0;
    m->id_len = get16(buf + 2);
    if (m->id_len > len - pos) {
        return -1;
    }
    m->id = buf + pos;
    pos += m->id_len;
    if (len - pos < 2) {
        return -1;
    }
    m->topic_len = get16(buf + pos);
    pos += 2;
    if (m->topic_len == 0 || m->topic_len > len - pos) {
        return -1;
    }
    m->topic = buf + pos;
    pos += m->topic_len;
    if (buf[0] == 2) {
        if (len - pos < 4 || get32(buf + pos) > len - pos - 4) {
            return -1;
        }
        m->props_len = get32(buf + pos);
        m->props = m->props_len > 0 ? buf + pos + 4 : NULL;
        pos += 4 + m->props_len;
        if (len - pos < 4) {
            return -1;
        }
        m->expiry = get32(buf + pos);
        pos += 4;
    }
    m->payload = (const uint8_t *)buf + pos;
    m->payload_len = len - pos;
    return 0;
}

int
wire_next(const char *buf, size_t len, size_t *pos, const char **blob, size_t *blob_len)
{
    size_t n;

    if (*pos >= len) {
        return 0;
    }
    if (len - *pos < 4) {
        return -1;
    }
    n = get32(buf + *pos);
    if (n > len - *pos - 4) {
        return -1;
    }
    *blob = buf + *pos + 4;
    *blob_len = n;
    *pos += 4 + n;
    return 1;
}
