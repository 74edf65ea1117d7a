/*
 * Loop prevention and duplicate suppression (loop.h). The tables are shared
 * by every bridge of the instance and by the message_in hook, so they sit
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

/*
 * The message a bridge is publishing locally on this thread right now
 * (loop_inject_begin/end). Thread-local, not global state: it is set and
 * cleared around one api->session_publish call on the home worker, and the
 * broker delivers to same-worker sessions and runs internal subscriptions
 * inside that call, so only code on this thread and stack can see it.
 */
static _Thread_local struct {
    struct bridge_ctx *ctx;
    const char *topic;
    struct origin o;
} injecting;

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
table_init(struct loop_table *t, int with_vals)
{
    int g;

    memset(t, 0, sizeof(*t));
    for (g = 0; g < 2; g++) {
        t->keys[g] = calloc(SLOTS, sizeof(struct origin));
        if (t->keys[g] == NULL) {
            return -1;
        }
        if (with_vals && (t->vals[g] = calloc(SLOTS, sizeof(struct origin))) == NULL) {
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
        free(t->vals[g]);
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

/* Adds k (with value v for a map) to generation 0, rotating generations when it is full. */
static void
insert(struct loop_table *t, const struct origin *k, const struct origin *v)
{
    size_t i;

    if (t->count >= LOOP_WINDOW) {
        struct origin *ok = t->keys[1];
        struct origin *ov = t->vals[1];
        t->keys[1] = t->keys[0];
        t->vals[1] = t->vals[0];
        memset(ok, 0, SLOTS * sizeof(*ok));
        if (ov != NULL) {
            memset(ov, 0, SLOTS * sizeof(*ov));
        }
        t->keys[0] = ok;
        t->vals[0] = ov;
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
    if (v != NULL) {
        t->vals[0][i] = *v;
    }
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
    if (table_init(&ls->seen, 0) != 0 || table_init(&ls->map, 1) != 0) {
        loop_free(ls);
        return -1;
    }
    return 0;
}

void
loop_free(struct loop_state *ls)
{
    table_free(&ls->seen);
    table_free(&ls->map);
    free(ls->subs);
    ls->subs = NULL;
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
        insert(&ls->seen, o, NULL);
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

void
loop_inject_begin(struct bridge_ctx *ctx, const struct origin *o, const char *topic)
{
    injecting.ctx = ctx;
    injecting.topic = topic;
    injecting.o = *o;
}

void
loop_inject_end(void)
{
    injecting.ctx = NULL;
    injecting.topic = NULL;
}

static int
injected_here(struct bridge_ctx *ctx, const midge_message *m)
{
    return injecting.ctx == ctx && strcmp(ctx->api->message_topic(m), injecting.topic) == 0;
}

static void
remember(struct bridge_ctx *ctx, uint64_t msg_id, const struct origin *o)
{
    struct origin k = {1, msg_id};

    pthread_mutex_lock(&ctx->loop.lock);
    insert(&ctx->loop.map, &k, o);
    pthread_mutex_unlock(&ctx->loop.lock);
}

int
loop_classify(struct bridge_ctx *ctx, const midge_message *m, struct origin *o)
{
    const struct midge_api *api = ctx->api;
    uint64_t id = api->message_id(m);
    struct origin k = {1, id};
    long i;
    int g;

    if (injected_here(ctx, m)) {
        *o = injecting.o;
        remember(ctx, id, o);
        return 1;
    }
    pthread_mutex_lock(&ctx->loop.lock);
    for (g = 0; g < 2; g++) {
        if ((i = find(&ctx->loop.map, g, &k)) >= 0) {
            *o = ctx->loop.map.vals[g][i];
            pthread_mutex_unlock(&ctx->loop.lock);
            return 1;
        }
    }
    pthread_mutex_unlock(&ctx->loop.lock);
    if (loop_origin_of(api, m, o)) {
        return 1;
    }
    o->node = ctx->loop.node;
    o->id = id;
    return 0;
}

/* Internal subscription: runs inside the publish, on its thread. [any worker] */
static void
on_local(void *arg, const midge_message *m)
{
    struct bridge_ctx *ctx = arg;

    if (injected_here(ctx, m)) {
        remember(ctx, ctx->api->message_id(m), &injecting.o);
    }
}

void
loop_watch(struct bridge_ctx *ctx)
{
    struct loop_state *ls = &ctx->loop;
    const struct midge_api *api = ctx->api;
    struct bridge *b;
    size_t n = 0;
    size_t i;

    for (i = 0; i < ls->nsubs; i++) {
        api->unsubscribe(ctx->self, ls->subs[i]);
    }
    ls->nsubs = 0;
    for (b = ctx->bridges; b != NULL; b = b->next) {
        n += b->latest->ntopics;
    }
    free(ls->subs);
    ls->subs = calloc(n + 1, sizeof(*ls->subs));
    if (ls->subs == NULL) {
        return;
    }
    for (b = ctx->bridges; b != NULL; b = b->next) {
        for (i = 0; i < b->latest->ntopics; i++) {
            const struct bridge_topic *t = &b->latest->topics[i];
            midge_subscription *s;
            if (!(t->dir & BRIDGE_IN) || t->local_filter[0] == '$') {
                continue;
            }
            s = api->subscribe(ctx->self, t->local_filter, on_local, ctx);
            if (s != NULL) {
                ls->subs[ls->nsubs++] = s;
            }
        }
    }
}
