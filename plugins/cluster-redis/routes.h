/*
 * The route table of one node (docs/cluster-redis.md "Routing").
 *
 * Local side: which topic filters this node's sessions subscribe to, with a
 * count per filter, so a filter is announced to the cluster when its first
 * subscriber arrives and withdrawn when its last one leaves (UNSUBSCRIBE or
 * the session's end).
 *
 * Remote side: the filters every other node announced, copied from Redis.
 * routes_match answers "which nodes want this topic" for each publish.
 *
 * Thread-safe: hooks on every worker update the local side, the Redis
 * thread the remote side, and publishes on every worker read it.
 */
#ifndef CLUSTER_ROUTES_H
#define CLUSTER_ROUTES_H

#include <stddef.h>
#include <stdint.h>

struct routes;

struct routes *routes_new(void);
void routes_free(struct routes *r);

/*
 * Session `client_id` subscribed to / unsubscribed from `filter`. Return 1
 * when the filter became present on this node (add) or absent (remove),
 * 0 when nothing changed for the cluster, -1 when out of memory.
 */
int routes_local_add(struct routes *r, const char *client_id, const char *filter);
int routes_local_remove(struct routes *r, const char *client_id, const char *filter);

/* The session ended: each filter that left the node is passed to gone(arg, filter). */
void routes_local_session_end(struct routes *r, const char *client_id,
                              void (*gone)(void *arg, const char *filter), void *arg);

/* A copy of the node's filters (caller frees each and the array); NULL with *n 0 when none. */
char **routes_local_snapshot(struct routes *r, size_t *n);

/* Remote nodes. `node` and `filter` are copied. */
int routes_remote_add(struct routes *r, const char *node, const char *filter);
void routes_remote_remove(struct routes *r, const char *node, const char *filter);
/* Replaces a node's filters (a resync). */
int routes_remote_set(struct routes *r, const char *node, char *const *filters, size_t n);
/* Forgets a node that left. */
void routes_remote_drop(struct routes *r, const char *node);
/* Keeps only the nodes named in `alive` (n of them); drops the others. */
void routes_remote_keep(struct routes *r, char *const *alive, size_t n);

/*
 * The remote nodes that want `topic`: every known node when `all` is 1
 * (retained messages go everywhere), else those with a matching filter.
 * Returns a new array of copied node ids (caller frees each and the array)
 * and their number in *n; NULL with *n 0 when none (or out of memory).
 */
char **routes_match(struct routes *r, const char *topic, int all, size_t *n);

/* Counts for metrics. */
size_t routes_remote_nodes(struct routes *r);
size_t routes_remote_filters(struct routes *r);

/* MQTT filter matching, with $share/GROUP/ stripped and the $-topic rule [MQTT-4.7.2-1]. */
int routes_filter_matches(const char *filter, const char *topic);

/*
 * Shared subscriptions across nodes: one delivery per group cluster-wide.
 * routes_local_shared: 1 while some session here has a $share filter.
 * routes_client_shared: when client_id gets `topic` only through a shared
 * filter (no plain filter of its matches), copies that filter into out and
 * returns 1. routes_shared_owner: 1 when this node (`me`) is the one that
 * delivers a message with hash h to group filter `share`: every node with
 * members computes the same answer (members' nodes sorted by id, h modulo
 * their number), so exactly one delivers while their views agree.
 */
int routes_local_shared(struct routes *r);
int routes_client_shared(struct routes *r, const char *client_id, const char *topic, char *out,
                         size_t outlen);
int routes_shared_owner(struct routes *r, const char *me, const char *share, uint64_t h);

/* Frees a list returned by routes_match or routes_local_snapshot. */
void routes_list_free(char **v, size_t n);

#endif
