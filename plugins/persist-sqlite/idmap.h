/*
 * A map from non-zero 64-bit ids to 64-bit values, with deletion (the
 * young-delivery log's index of its deliveries).
 */
#ifndef PSQ_IDMAP_H
#define PSQ_IDMAP_H

#include <stdint.h>
#include <stddef.h>

/* Zero-initialised is an empty map. Owns its arrays; psq_idmap_free(). */
struct psq_idmap {
    uint64_t *key; /* 0: empty slot */
    uint64_t *val;
    size_t mask;   /* capacity - 1 */
    size_t n;      /* keys present */
};

/* 1 and *val when key is present. */
int psq_idmap_get(const struct psq_idmap *m, uint64_t key, uint64_t *val);

/* Adds key or replaces its value. 0, or -1 out of memory (the map unchanged). */
int psq_idmap_put(struct psq_idmap *m, uint64_t key, uint64_t val);

/* Removes key if present. */
void psq_idmap_del(struct psq_idmap *m, uint64_t key);

/* Removes every key; keeps the memory. */
void psq_idmap_clear(struct psq_idmap *m);

void psq_idmap_free(struct psq_idmap *m);

#endif
