/*
 * When each client id last connected to this node (microseconds since the
 * epoch, the time its claim carries), so a claim from another node that is
 * older than our own connection does not end our session: claims cross on
 * their way, and the owner key in Redis may not show our claim yet when the
 * other node's claim arrives. Entries go when the session ends.
 * Thread-safe (one mutex).
 */
#ifndef CLUSTER_CONNTIMES_H
#define CLUSTER_CONNTIMES_H

#include <stdint.h>

struct conntimes;

struct conntimes *conntimes_new(void);
void conntimes_free(struct conntimes *t);
/* Client `id` connected here at `when`. 0, or -1 when out of memory. */
int conntimes_set(struct conntimes *t, const char *id, uint64_t when);
/* Its session ended here. */
void conntimes_remove(struct conntimes *t, const char *id);
/* The last connect time of `id` here, 0 when none. */
uint64_t conntimes_get(struct conntimes *t, const char *id);

#endif
