/*
 * Connection notifications, as mosquitto publishes them: "1" when the
 * bridge is connected and "0" when it is not, retained, on
 * $SYS/broker/connection/<remote_clientid>/state (or notification_topic),
 * locally and, unless notifications_local_only, on the remote, where the
 * CONNECT's will (link.c) publishes the "0" if the link dies. [home worker]
 */
#include "bridge.h"

#include <string.h>

void
notify_state(struct bridge *b, int up)
{
    const struct bridge_conf *c = b->conf;
    const char *payload = up ? "1" : "0";

    /* Up and down calls need not pair (a link lost while subscribing): count each link once. */
    if (up != b->counted_up) {
        bridge_api(b)->metric_add(b->ctx->m_connected, up ? 1 : -1);
        b->counted_up = up;
    }
    lm_sample(b);
    if (!c->notifications) {
        return;
    }
    bridge_api(b)->publish(bridge_self(b), c->notification_topic, payload, 1, 1, 1);
    if (up && !c->notifications_local_only && b->state == LINK_UP) {
        struct mqtt_packet p;
        memset(&p, 0, sizeof(p));
        p.type = MQTT_PUBLISH;
        p.u.publish.retain = 1;
        p.u.publish.topic.ptr = (const uint8_t *)c->notification_topic;
        p.u.publish.topic.len = (uint32_t)strlen(c->notification_topic);
        p.u.publish.payload.ptr = (const uint8_t *)payload;
        p.u.publish.payload.len = 1;
        link_send(b, &p);
    }
}
