/*
 * Recently delivered cluster message ids, to drop a second copy (a stream
 * entry read again after a reconnect, a message sent again after its XADD
 * reply was lost). Bounded: two generations of DEDUPE_WINDOW ids; an id
 * older than that is forgotten. Ids are kept as 64-bit hashes. Used by the
 * Redis thread only: no lock.
 */
#ifndef CLUSTER_DEDUPE_H
#define CLUSTER_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

#define DEDUPE_WINDOW 65536

struct dedupe;

struct dedupe *dedupe_new(void);
void dedupe_free(struct dedupe *d);

/* 1 when id was seen recently (a duplicate), else 0 and it is remembered now. */
int dedupe_seen(struct dedupe *d, const char *id, size_t len);

#endif
