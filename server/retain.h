/*
 * Retained messages: one per topic, shared by all workers under a mutex.
 *
 * Ownership: the store holds one reference to each retained message.
 * retain_match() hands out new references that the caller drops.
 */
#ifndef MIDGE_RETAIN_H
#define MIDGE_RETAIN_H

#include <stddef.h>

struct msg;

int retain_init(void);
void retain_free(void);

/*
 * Stores `m` as the retained message of its topic, replacing the previous
 * one; an empty payload clears it instead [MQTT-3.3.1-10, -11]. Takes its own
 * reference. Returns 0, or -1 when out of memory. [any thread]
 */
int retain_set(struct msg *m);

/*
 * Collects the retained messages whose topic matches `filter` (not a $share
 * one) into a new array *out of *n references (caller unrefs each and frees
 * the array). Expired messages are dropped from the store on the way.
 * Returns 0 or -1. [any thread]
 */
int retain_match(const char *filter, size_t len, double now, struct msg ***out, size_t *n);

/* Number of retained messages ($SYS/broker/retained messages/count). [any thread] */
size_t retain_count(void);

#endif
