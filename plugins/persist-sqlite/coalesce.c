/*
 * Batch coalescing. With subscribers online, most deliveries are queued,
 * sent and acknowledged within a few milliseconds: inside one group-commit
 * window. Writing their rows only to delete them in the same transaction
 * costs most of the writer's time, so such deliveries are dropped from the
 * batch before it is applied; a delivery queued and sent in the same
 * window is inserted already sent instead of inserted and then updated.
 *
 * One pass in seq order with two tables keyed by delivery id: the QUEUED
 * event still to be written, and the last state event (SENT, RELEASED)
 * still to be written. The tables are open addressing without deletion (a
 * finished delivery keeps its key with a NULL event); they live in the
 * writer and are emptied after each batch by clearing only the slots used,
 * so a small batch costs little after a large one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coalesce.h"

/* Non-zero delivery id -> event (NULL: none any more). Owns its arrays. */
struct idmap {
    uint64_t *id;
    struct psq_event **ev;
    size_t *used;       /* slots taken since the last clear */
    size_t nused;
    size_t mask;        /* capacity - 1; capacity a power of two */
};

/* Owns both tables. */
struct psq_coalescer {
    struct idmap queued; /* delivery -> its MSG_QUEUED, not skipped */
    struct idmap state;  /* delivery -> its last MSG_SENT/RELEASED, not skipped */
};

static void
map_free(struct idmap *m)
{
    free(m->id);
    free(m->ev);
    free(m->used);
    memset(m, 0, sizeof(*m));
}

/* Room for n keys at load factor 1/2. -1 when out of memory (m is then empty). */
static int
map_reserve(struct idmap *m, size_t n)
{
    size_t cap = 1024;

    while (cap < n * 2) {
        cap *= 2;
    }
    if (m->id != NULL && cap <= m->mask + 1) {
        return 0;
    }
    map_free(m);
    m->id = calloc(cap, sizeof(*m->id));
    m->ev = calloc(cap, sizeof(*m->ev));
    m->used = malloc(cap / 2 * sizeof(*m->used));
    if (m->id == NULL || m->ev == NULL || m->used == NULL) {
        map_free(m);
        return -1;
    }
    m->mask = cap - 1;
    return 0;
}

static void
map_clear(struct idmap *m)
{
    size_t i;

    for (i = 0; i < m->nused; i++) {
        m->id[m->used[i]] = 0;
        m->ev[m->used[i]] = NULL;
    }
    m->nused = 0;
}

static size_t
slot(const struct idmap *m, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ULL;
    size_t i = (size_t)(h >> 17) & m->mask;

    while (m->id[i] != 0 && m->id[i] != id) {
        i = (i + 1) & m->mask;
    }
    return i;
}

/* The slot of id, taken when new; SIZE_MAX when the table is half full (more events than n). */
static size_t
map_at(struct idmap *m, uint64_t id)
{
    size_t i = slot(m, id);

    if (m->id[i] == 0) {
        if (m->nused == (m->mask + 1) / 2) {
            return SIZE_MAX;
        }
        m->id[i] = id;
        m->used[m->nused++] = i;
    }
    return i;
}

struct psq_coalescer *
psq_coalescer_new(void)
{
    return calloc(1, sizeof(struct psq_coalescer));
}

void
psq_coalescer_free(struct psq_coalescer *c)
{
    if (c != NULL) {
        map_free(&c->queued);
        map_free(&c->state);
        free(c);
    }
}

/* e->skip = 1, once. */
static void
drop(struct psq_event *e, size_t *marked)
{
    if (e != NULL && !e->skip) {
        e->skip = 1;
        (*marked)++;
    }
}

size_t
psq_coalesce(struct psq_coalescer *c, struct psq_event *list, size_t n)
{
    struct psq_event *e;
    size_t marked = 0;

    if (map_reserve(&c->queued, n) != 0 || map_reserve(&c->state, n) != 0) {
        return 0;
    }
    for (e = list; e != NULL; e = e->next) {
        size_t qi, si;

        if (e->skip) {
            marked++;
            continue;
        }
        if (e->delivery_id == 0 || e->type < MIDGE_P_MSG_QUEUED || e->type > MIDGE_P_MSG_DONE) {
            continue;
        }
        qi = map_at(&c->queued, e->delivery_id);
        si = map_at(&c->state, e->delivery_id);
        if (qi == SIZE_MAX || si == SIZE_MAX) {
            break; /* the caller's n was short: the rest is written as it is */
        }
        switch (e->type) {
        case MIDGE_P_MSG_QUEUED:
            if (c->queued.ev[qi] != NULL) {
                drop(e, &marked); /* INSERT OR IGNORE would ignore it */
            } else {
                c->queued.ev[qi] = e;
            }
            break;
        case MIDGE_P_MSG_SENT:
        case MIDGE_P_MSG_RELEASED:
            if (c->queued.ev[qi] != NULL) {
                /* Folded into the insert: the row starts in the state this event sets. */
                c->queued.ev[qi]->state = e->type == MIDGE_P_MSG_SENT ? MIDGE_DELIVERY_SENT
                                                                      : MIDGE_DELIVERY_RELEASED;
                c->queued.ev[qi]->packet_id = e->packet_id;
                drop(e, &marked);
            } else {
                drop(c->state.ev[si], &marked); /* this one overwrites both columns */
                c->state.ev[si] = e;
            }
            break;
        case MIDGE_P_MSG_DONE:
            drop(c->state.ev[si], &marked);
            c->state.ev[si] = NULL;
            if (c->queued.ev[qi] != NULL) {
                drop(c->queued.ev[qi], &marked);
                c->queued.ev[qi] = NULL;
                drop(e, &marked);
            }
            break;
        default:
            break;
        }
    }
    map_clear(&c->queued);
    map_clear(&c->state);
    return marked;
}
