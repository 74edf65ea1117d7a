/*
 * Loop prevention and duplicate suppression (loop.h). The window is shared
 * by every bridge of the instance and by the message_in hook, so it sits
 * behind one mutex; each operation is a few probes.
 */
#include "loop.h"
#include "bridge.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define SLOTS (2 * LOOP_WINDOW) /* a power of two: at most half full */

static size_t
slot_of(const struct origin *o)
{
    uint64_t h = o->node * 0x9E3779B97F4A7C15ull ^ (o->id + 0x632BE59BD9B4E019ull);

    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return (size_t)(h & (SLOTS - 1));
}

static int
table_init(struct loop_table *t)
{
    int g;

    memset(t, 0, sizeof(*t));
    for (g = 0; g < 2; g++) {
        t->keys[g] = calloc(SLOTS, sizeof(struct origin));
        if (t->keys[g] == NULL) {
            return -1;
        }
    }
    return 0;
}

static void
table_free(struct loop_table *t)
{
    int g;

    for (g = 0; g < 2; g++) {
        free(t->keys[g]);
    }
    memset(t, 0, sizeof(*t));
}

/* Index of k in generation g, or -1. */
static long
find(const struct loop_table *t, int g, const struct origin *k)
{
    size_t i = slot_of(k);

    while (t->keys[g][i].node != 0) {
        if (t->keys[g][i].node == k->node && t->keys[g][i].id == k->id) {
            return (long)i;
        }
        i = (i + 1) & (SLOTS - 1);
    }
    return -1;
}

/* Adds k to generation 0, rotating generations when it is full. */
static void
insert(struct loop_table *t, const struct origin *k)
{
    size_t i;

    if (t->count >= LOOP_WINDOW) {
        struct origin *ok = t->keys[1];
        t->keys[1] = t->keys[0];
        memset(ok, 0, SLOTS * sizeof(*ok));
        t->keys[0] = ok;
        t->count = 0;
    }
    i = slot_of(k);
    while (t->keys[0][i].node != 0) {
        if (t->keys[0][i].node == k->node && t->keys[0][i].id == k->id) {
            break;
        }
        i = (i + 1) & (SLOTS - 1);
    }
    if (t->keys[0][i].node == 0) {
        t->count++;
    }
    t->keys[0][i] = *k;
}

int
loop_init(struct loop_state *ls)
{
    memset(ls, 0, sizeof(*ls));
    while (ls->node == 0) {
        if (getrandom(&ls->node, sizeof(ls->node), 0) != sizeof(ls->node)) {
            ls->node = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)ls << 16);
        }
    }
    pthread_mutex_init(&ls->lock, NULL);
    if (table_init(&ls->seen) != 0) {
        loop_free(ls);
        return -1;
    }
    return 0;
}

void
loop_free(struct loop_state *ls)
{
    size_t i;

    table_free(&ls->seen);
    for (i = 0; i < ls->npull; i++) {
        free(ls->pull[i]);
    }
    free(ls->pull);
    ls->pull = NULL;
    ls->npull = 0;
    pthread_mutex_destroy(&ls->lock);
}

int
loop_seen(struct loop_state *ls, const struct origin *o)
{
    int seen;

    if (o->node == ls->node) {
        return 1; /* ours, back from a round trip */
    }
    pthread_mutex_lock(&ls->lock);
    seen = find(&ls->seen, 0, o) >= 0 || find(&ls->seen, 1, o) >= 0;
    if (!seen) {
        insert(&ls->seen, o);
    } else {
        ls->dropped++;
    }
    pthread_mutex_unlock(&ls->lock);
    return seen;
}

int
loop_parse(const char *s, size_t len, struct origin *o)
{
    char buf[64];
    char *end = NULL;
    char *colon;

    if (len == 0 || len >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    colon = strchr(buf, ':');
    if (colon == NULL || colon == buf) {
        return 0;
    }
    *colon = '\0';
    o->node = strtoull(buf, &end, 16);
    if (*end != '\0' || o->node == 0) {
        return 0;
    }
    o->id = strtoull(colon + 1, &end, 10);
    return *end == '\0' && colon[1] != '\0';
}

size_t
loop_format(const struct origin *o, char *buf)
{
    return (size_t)sprintf(buf, "%016" PRIx64 ":%" PRIu64, o->node, o->id);
}

int
loop_origin_of(const struct midge_api *api, const midge_message *m, struct origin *o)
{
    size_t pos = 0;
    const char *k;
    const char *v;
    size_t kl;
    size_t vl;

    while (api->message_user_property_next(m, &pos, &k, &kl, &v, &vl)) {
        if (kl == sizeof(LOOP_PROP) - 1 && memcmp(k, LOOP_PROP, kl) == 0) {
            return loop_parse(v, vl, o);
        }
    }
    return 0;
}

int
loop_classify(struct bridge_ctx *ctx, const midge_message *m, struct origin *o)
{
    if (loop_origin_of(ctx->api, m, o)) {
        return 1;
    }
    o->node = ctx->loop.node;
    o->id = ctx->api->message_id(m);
    return 0;
}

void
loop_new_origin(struct loop_state *ls, struct origin *o)
{
    static atomic_uint_fast64_t next;

    o->node = ls->node;
    /* The top bit keeps these apart from message ids, the other ids of this node. */
    o->id = (1ull << 63) | (uint64_t)atomic_fetch_add(&next, 1);
}

void
loop_pull_add(struct loop_state *ls, const char *filter)
{
    size_t i;

    pthread_mutex_lock(&ls->lock);
    for (i = 0; i < ls->npull && strcmp(ls->pull[i], filter) != 0; i++) {
    }
    if (i == ls->npull && ls->npull < LOOP_PULL_MAX) {
        char **v = realloc(ls->pull, (ls->npull + 1) * sizeof(*v));
        if (v != NULL) {
            ls->pull = v;
            if ((v[ls->npull] = strdup(filter)) != NULL) {
                ls->npull++;
                atomic_store(&ls->npull_seen, ls->npull);
            }
        }
    }
    pthread_mutex_unlock(&ls->lock);
}

int
loop_pulled(struct loop_state *ls, const char *topic)
{
    size_t i;
    int hit = 0;

    if (atomic_load_explicit(&ls->npull_seen, memory_order_relaxed) == 0) {
        return 0;
    }
    pthread_mutex_lock(&ls->lock);
    for (i = 0; i < ls->npull && !hit; i++) {
        hit = bridge_topic_match(ls->pull[i], topic);
    }
    pthread_mutex_unlock(&ls->lock);
    return hit;
}
