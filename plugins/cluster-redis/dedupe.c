/* Recent message ids (dedupe.h): open addressing, two generations swapped when one fills. */
#include "dedupe.h"

#include <stdlib.h>
#include <string.h>

#define SLOTS (2 * DEDUPE_WINDOW) /* a power of two: at most half full */

struct dedupe {
    uint64_t *gen[2]; /* 0 = empty slot; gen[0] is the current generation */
    size_t count;     /* ids in gen[0] */
};

static uint64_t
id_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    size_t i;

    for (i = 0; i < n; i++) {
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    }
    h ^= h >> 31;
    return h ? h : 1;
}

struct dedupe *
dedupe_new(void)
{
    struct dedupe *d = calloc(1, sizeof(*d));

    if (d == NULL || (d->gen[0] = calloc(SLOTS, sizeof(uint64_t))) == NULL ||
        (d->gen[1] = calloc(SLOTS, sizeof(uint64_t))) == NULL) {
        dedupe_free(d);
        return NULL;
    }
    return d;
}

void
dedupe_free(struct dedupe *d)
{
    if (d != NULL) {
        free(d->gen[0]);
        free(d->gen[1]);
        free(d);
    }
}

/* The slot of h in g: where it is, or the empty slot where it would go. */
static size_t
probe(const uint64_t *g, uint64_t h)
{
    size_t i = (size_t)(h & (SLOTS - 1));

    while (g[i] != 0 && g[i] != h) {
        i = (i + 1) & (SLOTS - 1);
    }
    return i;
}

int
dedupe_seen(struct dedupe *d, const char *id, size_t len)
{
    uint64_t h = id_hash(id, len);
    size_t i;

    if (d->gen[1][probe(d->gen[1], h)] == h) {
        return 1;
    }
    i = probe(d->gen[0], h);
    if (d->gen[0][i] == h) {
        return 1;
    }
    if (d->count == DEDUPE_WINDOW) {
        /* The older generation is forgotten; the current one becomes the older. */
        uint64_t *old = d->gen[1];
        memset(old, 0, SLOTS * sizeof(uint64_t));
        d->gen[1] = d->gen[0];
        d->gen[0] = old;
        d->count = 0;
        i = probe(d->gen[0], h);
    }
    d->gen[0][i] = h;
    d->count++;
    return 0;
}
