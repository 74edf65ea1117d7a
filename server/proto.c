/* Packet dispatch for one connection: decode, check state, hand to a handler. */
#include "proto.h"

#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "plugin.h"
#include "session.h"
#include "worker.h"

/*
 * Fails the connection with reason code rc: a v5 client gets CONNACK (before
 * CONNECT completed) or DISCONNECT with rc; a v3 client is just closed. The
 * will is published, as for any close not requested by the client
 * [MQTT-3.1.2-8]. Returns PROTO_CLOSE.
 */
int
proto_fail(struct conn *c, uint8_t rc, const char *why)
{
    char reason[160];

    if (c->state == CONN_NEW && c->version == MQTT_V5) {
        struct mqtt_packet p;
        memset(&p, 0, sizeof(p));
        p.type = MQTT_CONNACK;
        p.u.connack.rc = rc;
        conn_send(c, &p);
    }
    snprintf(reason, sizeof(reason), "%s (%s)", why, mqtt_rc_name(rc));
    conn_close(c, rc, 1, reason);
    return PROTO_CLOSE;
}

/* Sends PUBACK/PUBREC/PUBREL/PUBCOMP. */
int
proto_send_ack(struct conn *c, int type, uint16_t pid, uint8_t rc)
{
    struct mqtt_packet p;

    memset(&p, 0, sizeof(p));
    p.type = (uint8_t)type;
    p.u.ack.packet_id = pid;
    p.u.ack.rc = rc;
    return conn_send(c, &p);
}

static int
handle_disconnect(struct conn *c, const struct mqtt_reason *d)
{
    struct session *s = c->session;

    if (c->version == MQTT_V5 && (d->props.present & MQTT_PBIT(MQTT_PROP_SESSION_EXPIRY))) {
        if (s->expiry == 0 && d->props.session_expiry != 0) {
            /* [MQTT-3.14.2-2] */
            return proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "session expiry set at DISCONNECT");
        }
        s->expiry = d->props.session_expiry;
    }
    c->got_disconnect = 1;
    c->disconnect_rc = c->version == MQTT_V5 ? d->rc : 0;
    /* v5 reason 0x04 asks for the will; any other clean DISCONNECT drops it [MQTT-3.1.2-10]. */
    c->will_cancelled = !(c->version == MQTT_V5 && d->rc == MQTT_RC_DISCONNECT_WITH_WILL);
    conn_close(c, 0, 1, "client sent DISCONNECT");
    return PROTO_CLOSE;
}

/* Decodes one packet and handles it. */
int
proto_packet(struct conn *c, const uint8_t *buf, size_t len)
{
    struct mqtt_packet p;
    uint8_t rc = 0;
    int version = c->version ? c->version : MQTT_V311;
    int type = buf[0] >> 4;
    int r;

    if (c->state == CONN_NEW) {
        memset(&p, 0, sizeof(p)); /* the CONNECT version is read even from a bad packet */
    }
    r = mqtt_decode(buf, len, version, &p, &rc);

    STAT_ADD(&c->w->stats, msgs_received, 1);
    if (c->state == CONN_NEW && c->eauth != NULL && type == MQTT_CONNECT) {
        /* [MQTT-3.1.0-2]: a second CONNECT, here during enhanced authentication. */
        return proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "second CONNECT");
    }
    if (c->state == CONN_NEW && type == MQTT_AUTH) {
        /* Only while enhanced authentication runs (conn.c lets nothing else through). */
        return r != MQTT_OK ? proto_fail(c, rc, "invalid AUTH")
                            : plugin_eauth_packet(c, &p.u.reason);
    }
    if (c->state == CONN_NEW) {
        if (r != MQTT_OK && type == MQTT_CONNECT && rc != MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION) {
            /* Answer in the client's version when it can be read. */
            c->version = p.u.connect.version == MQTT_V5 ? MQTT_V5 : 0;
        }
        return proto_connect(c, buf, len, &p, r == MQTT_OK ? 0 : rc);
    }
    if (r != MQTT_OK) {
        return proto_fail(c, rc, "invalid packet");
    }
    switch (type) {
    case MQTT_PUBLISH:
        return proto_publish(c, &p.u.publish, buf, len);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        return session_ack(c->session, type, p.u.ack.packet_id, p.u.ack.rc) < 0
                   ? proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "bad acknowledgement")
                   : PROTO_OK;
    case MQTT_PUBREL:
        return proto_pubrel(c, &p.u.ack);
    case MQTT_SUBSCRIBE:
        return proto_subscribe(c, &p.u.subscribe, buf, len);
    case MQTT_UNSUBSCRIBE:
        return proto_unsubscribe(c, &p.u.unsubscribe);
    case MQTT_PINGREQ:
        memset(&p, 0, sizeof(p));
        p.type = MQTT_PINGRESP;
        conn_send(c, &p);
        return PROTO_OK;
    case MQTT_DISCONNECT:
        return handle_disconnect(c, &p.u.reason);
    case MQTT_CONNECT:
        /* [MQTT-3.1.0-2]: a second CONNECT is a protocol error. */
        return proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "second CONNECT");
    case MQTT_AUTH:
        return plugin_eauth_packet(c, &p.u.reason);
    default:
        /* CONNACK, SUBACK, UNSUBACK, PINGRESP never go to a server. */
        return proto_fail(c, MQTT_RC_PROTOCOL_ERROR, "unexpected packet type");
    }
}
