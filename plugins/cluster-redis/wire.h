/*
 * The bytes forwarded messages travel as between nodes. A Redis pub/sub
 * payload (QoS 0), a stream entry's field (QoS 1/2) and a value of the
 * retained hash all carry a bundle: one or more frames, each
 *
 *   u32 BE    length of the blob that follows
 *   blob:
 *   byte 0    version (2; 1 is still read: no properties, no expiry)
 *   byte 1    qos | retain << 2
 *   u16 BE    length of the cluster message id, then the id
 *   u16 BE    length of the topic, then the topic
 *   u32 BE    length of the MQTT 5 properties, then them (version 2: as
 *             api->message_properties gives them)
 *   u32 BE    Message Expiry Interval left, seconds (version 2; 0: none)
 *   the rest  the payload
 *
 * The cluster message id ("NODE/BOOT/COUNTER") is unique across nodes and
 * restarts: receivers drop a second copy of an id (a stream redelivery).
 */
#ifndef CLUSTER_WIRE_H
#define CLUSTER_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION 2

/* A decoded blob: every pointer borrows from the blob. */
struct wire_msg {
    const char *id;
    size_t id_len;
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    const void *props;   /* NULL when none */
    uint32_t props_len;
    uint32_t expiry;     /* seconds left; 0: none */
    int qos;
    int retain;
};

/* Encodes one frame into a new buffer (caller frees); NULL when out of memory or too long. */
char *wire_encode(const char *id, const char *topic, const void *payload, size_t payload_len,
                  int qos, int retain, const void *props, uint32_t props_len, uint32_t expiry,
                  size_t *out_len);

/* Decodes one blob (without its frame length); 0, or -1 when it is not a valid blob. */
int wire_decode(const char *buf, size_t len, struct wire_msg *m);

/*
 * The next frame of a bundle at *pos: 1 with *blob and *blob_len set and *pos
 * advanced, 0 at the end, -1 when the rest is not a whole frame.
 */
int wire_next(const char *buf, size_t len, size_t *pos, const char **blob, size_t *blob_len);

#endif
