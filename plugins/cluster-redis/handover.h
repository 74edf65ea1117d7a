/*
 * Session takeover across nodes (docs/cluster-redis.md "Session takeover").
 *
 * A client connects to node B: B claims its id (forward.c: the owner key,
 * then a PUBLISH on the claims channel). Node A, which had the session, lists
 * it and ends it in one step on the session's worker (api->client_session_list
 * with MIDGE_SESSION_END: a connection still open there gets DISCONNECT 0x8E),
 * then, when the client asked to resume (clean start 0), XADDs one entry
 * holding the session's subscriptions and unacknowledged messages to B's
 * stream. B reads it like any other entry of its stream (consumer group, XACK
 * after use: it survives a crash of either node once written) and adds them
 * to the client's session there (api->client_session_add), announcing the
 * filters. The entry's field is "h" (forwarded messages use "m"); its value:
 *
 *   byte 'H', u16 BE length of the client id, the id, then records:
 *   'S' u8 options, u32 BE subscription id, u16 BE length, filter
 *   'M' a wire.h frame (u32 BE length, blob): one message, QoS and RETAIN
 *       as it is to be delivered
 */
#ifndef CLUSTER_HANDOVER_H
#define CLUSTER_HANDOVER_H

#include <stddef.h>
#include <stdint.h>

struct cluster;

/*
 * Another node (`owner`, the node of the client's latest connection) took
 * client `id`: end the session here and, when `resume`, hand it to `owner`.
 * [any thread]
 */
void handover_take(struct cluster *cl, const char *id, const char *owner, int resume,
                   uint64_t claimed_at);

/* A hand-over entry read from this node's stream: apply it. [Redis thread] */
void handover_apply(struct cluster *cl, const char *buf, size_t len);

#endif
