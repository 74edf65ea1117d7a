/*
 * /api/v1/bridges: every bridge instance with its links, read from the
 * bridge's labeled metrics (label `link`: link_state, link_queue_*, ...)
 * and the address each link uses (retained on
 * $SYS/broker/plugin/INSTANCE/link/NAME/address).
 */
#ifndef HTTP_ADMIN_BRIDGES_H
#define HTTP_ADMIN_BRIDGES_H

#include <jansson.h>

#include "admin.h"
#include "snapshot.h"

/*
 * A JSON array of p's links (from the snapshot's metrics), each
 * {"name", "state", "address", "queue_messages", "queue_bytes", "inflight",
 * "messages_sent", "messages_received", "messages_dropped", "reconnects"};
 * NULL when out of memory. [HTTP thread]
 */
json_t *bridges_links_json(struct admin *a, const struct snapshot *s, const struct snap_plugin *p);

#endif
