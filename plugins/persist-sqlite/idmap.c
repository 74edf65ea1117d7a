/*
 * A map from non-zero 64-bit ids to 64-bit values: open addressing with
 * linear probing, at most half full, and deletion by shifting back the
 * entries that probed past the freed slot (no tombstones, so lookups stay
 * short however many keys come and go). See idmap.h.
 */
#include <stdlib.h>
#include <string.h>

#include "idmap.h"

static size_t
slot(const struct psq_idmap *m, uint64_t key)
{
    return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 20) & m->mask;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t
find(const struct psq_idmap *m, uint64_t key)
{
    size_t i = slot(m, key);

    while (m->key[i] != 0 && m->key[i] != key) {
        i = (i + 1) & m->mask;
    }
    return i;
}

int
psq_idmap_get(const struct psq_idmap *m, uint64_t key, uint64_t *val)
{
    size_t i;

    if (m->key == NULL) {
        return 0;
    }
    i = find(m, key);
    if (m->key[i] == 0) {
        return 0;
    }
    *val = m->val[i];
    return 1;
}

/* Doubles the table (or makes the first one). -1: no memory, the map unchanged. */
static int
grow(struct psq_idmap *m)
{
    struct psq_idmap bigger = {0};
    size_t cap = m->key != NULL ? (m->mask + 1) * 2 : 4096;
    size_t i;

    bigger.key = calloc(cap, sizeof(*bigger.key));
    bigger.val = malloc(cap * sizeof(*bigger.val));
    if (bigger.key == NULL || bigger.val == NULL) {
        free(bigger.key);
        free(bigger.val);
        return -1;
    }
    bigger.mask = cap - 1;
    for (i = 0; m->key != NULL && i <= m->mask; i++) {
        if (m->key[i] != 0) {
            psq_idmap_put(&bigger, m->key[i], m->val[i]);
        }
    }
    free(m->key);
    free(m->val);
    *m = bigger;
    return 0;
}

/* Adds or replaces. -1: no memory. */
int
psq_idmap_put(struct psq_idmap *m, uint64_t key, uint64_t val)
{
    size_t i;

    if ((m->key == NULL || (m->n + 1) * 2 > m->mask + 1) && grow(m) != 0) {
        return -1;
    }
    i = find(m, key);
    if (m->key[i] == 0) {
        m->key[i] = key;
        m->n++;
    }
    m->val[i] = val;
    return 0;
}

/* Removes key, shifting back the entries after it that probed past its slot. */
void
psq_idmap_del(struct psq_idmap *m, uint64_t key)
{
    size_t i;
    size_t j;

    if (m->key == NULL) {
        return;
    }
    i = find(m, key);
    if (m->key[i] == 0) {
        return;
    }
    m->n--;
    for (j = (i + 1) & m->mask; m->key[j] != 0; j = (j + 1) & m->mask) {
        size_t home = slot(m, m->key[j]);

        /* j's entry may move to the hole i when its home is not in (i, j]. */
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->key[i] = m->key[j];
            m->val[i] = m->val[j];
            i = j;
        }
    }
    m->key[i] = 0;
}

void
psq_idmap_clear(struct psq_idmap *m)
{
    if (m->key != NULL) {
        memset(m->key, 0, (m->mask + 1) * sizeof(*m->key));
    }
    m->n = 0;
}

void
psq_idmap_free(struct psq_idmap *m)
{
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof(*m));
}
