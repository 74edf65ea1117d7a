/*
 * MQTT protocol handling for one connection: what each received packet
 * does, and the encoding of packets the broker sends. [worker thread]
 *
 * Handlers return PROTO_OK, PROTO_CLOSE (the handler already called
 * conn_close), PROTO_HANDOFF (CONNECT: the connection moves to its
 * session's home worker and the caller must stop processing it), or
 * PROTO_WAIT (a plugin decision is pending: the connection holds its
 * further input until the packet completes, then calls conn_continue).
 */
#ifndef MIDGE_PROTO_H
#define MIDGE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "mqtt.h"

struct conn;
struct qentry;

enum { PROTO_OK = 0, PROTO_CLOSE = -1, PROTO_HANDOFF = 1, PROTO_WAIT = 2 };

/* Decodes and handles one whole packet. */
int proto_packet(struct conn *c, const uint8_t *buf, size_t len);

/* proto_connect.c */
int proto_connect(struct conn *c, const uint8_t *raw, size_t raw_len, const struct mqtt_packet *p,
                  uint8_t decode_rc);

/*
 * An auth decision arrived for a CONNECT that waited (PROTO_WAIT): DEFER
 * continues the chain after position `index`; otherwise the CONNECT
 * completes (or is refused) and queued input is processed. [worker thread]
 */
void proto_connect_resume(struct conn *c, const uint8_t *raw, size_t raw_len, size_t index,
                          int verdict, uint8_t reason);

/*
 * A packet waiting for an asynchronous ACL decision (plugin_acl_wait
 * answered PENDING): the handler embeds this at the start of its own
 * struct. Owned by the pending decision while it waits (plugin_acl_hold),
 * then by resume().
 */
struct acl_hold {
    /*
     * The decision arrived: `verdict` of the plugin at chain position
     * `index` (DEFER: ask the next one), for `action`. Takes ownership of h:
     * holds it again or releases it. [worker thread]
     */
    void (*resume)(struct conn *c, struct acl_hold *h, size_t index, int verdict,
                   uint8_t reason);
    /*
     * Frees h. `c` is not NULL when the connection closes while h waits:
     * undo what the packet started (e.g. its QoS 2 packet id). [worker thread]
     */
    void (*release)(struct conn *c, struct acl_hold *h);
    uint8_t *raw;  /* copy of the packet, owned; decoded again on resume */
    size_t raw_len;
    int action;    /* enum midge_acl_action whose chain waits */
};

/* proto_publish.c */
/* memory_limit: 1 while messages hold more than `limit` bytes (checked every 10 ms per thread). */
int proto_over_memory_limit(long long limit, double now);
/* An inbound PUBLISH; `raw` is the whole packet (copied if an ACL decision waits). */
int proto_publish(struct conn *c, const struct mqtt_publish *p, const uint8_t *raw,
                  size_t raw_len);
int proto_pubrel(struct conn *c, const struct mqtt_ack *a);

/*
 * Encodes a PUBLISH of entry `e` for this connection (its protocol version,
 * granted QoS, subscription ids, remaining expiry). Returns 0; 1 when the
 * packet exceeds the client's Maximum Packet Size (not sent: the caller drops
 * it [MQTT-3.1.2-25]); 2 when an ACL plugin denies the client receiving it
 * (not sent, not counted as a drop); -1 when out of memory.
 */
int proto_send_publish(struct conn *c, const struct qentry *e, uint16_t pid, int dup, double now);

/* Sends an ack-type packet (PUBACK, PUBREC, PUBREL, PUBCOMP) with a reason code. */
int proto_send_ack(struct conn *c, int type, uint16_t pid, uint8_t rc);

/* proto_subscribe.c */
int proto_subscribe(struct conn *c, const struct mqtt_subscribe *s, const uint8_t *raw,
                    size_t raw_len);
int proto_unsubscribe(struct conn *c, const struct mqtt_unsubscribe *u);

/* Protocol error helper: v5 DISCONNECT with rc (or plain close for v3), will sent. */
int proto_fail(struct conn *c, uint8_t rc, const char *why);

#endif
