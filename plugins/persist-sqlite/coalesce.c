/*
 * Batch coalescing. With subscribers online, most deliveries are queued,
 * sent and acknowledged within a few milliseconds: inside one group-commit
 * window. Writing their rows only to delete them in the same transaction
 * costs most of the writer's time, so such deliveries are dropped from the
 * batch before it is applied. Two open-addressing sets of delivery ids,
 * sized for the batch, live only during the call.
 */
#include <stdint.h>
#include <stdlib.h>

#include "coalesce.h"

/* A set of non-zero ids. Owns `v`. */
struct idset {
    uint64_t *v;
    size_t mask;
};

static int
set_init(struct idset *s, size_t n)
{
    size_t cap = 16;

    while (cap < n * 2) {
        cap *= 2;
    }
    s->v = calloc(cap, sizeof(*s->v));
    s->mask = cap - 1;
    return s->v != NULL ? 0 : -1;
}

static size_t
slot(const struct idset *s, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ULL;
    size_t i = (size_t)(h >> 17) & s->mask;

    while (s->v[i] != 0 && s->v[i] != id) {
        i = (i + 1) & s->mask;
    }
    return i;
}

static void
set_add(struct idset *s, uint64_t id)
{
    s->v[slot(s, id)] = id;
}

static int
set_has(const struct idset *s, uint64_t id)
{
    return s->v[slot(s, id)] == id;
}

size_t
psq_coalesce(struct psq_event *list, size_t n)
{
    struct idset queued = {0};
    struct idset done = {0};
    struct psq_event *e;
    size_t marked = 0;
    size_t ndone = 0;

    for (e = list; e != NULL; e = e->next) {
        ndone += e->type == MIDGE_P_MSG_DONE && e->delivery_id != 0;
    }
    if (ndone == 0 || set_init(&queued, n) != 0 || set_init(&done, ndone) != 0) {
        goto out;
    }
    for (e = list; e != NULL; e = e->next) {
        if (e->delivery_id == 0) {
            continue;
        }
        if (e->type == MIDGE_P_MSG_QUEUED) {
            set_add(&queued, e->delivery_id);
        } else if (e->type == MIDGE_P_MSG_DONE) {
            set_add(&done, e->delivery_id);
        }
    }
    for (e = list; e != NULL; e = e->next) {
        switch (e->type) {
        case MIDGE_P_MSG_QUEUED:
        case MIDGE_P_MSG_SENT:
        case MIDGE_P_MSG_RELEASED:
            e->skip = e->delivery_id != 0 && set_has(&done, e->delivery_id);
            break;
        case MIDGE_P_MSG_DONE:
            e->skip = e->delivery_id != 0 && set_has(&queued, e->delivery_id);
            break;
        default:
            break;
        }
        marked += e->skip;
    }
out:
    free(queued.v);
    free(done.v);
    return marked;
}
