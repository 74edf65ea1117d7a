/* Failed-login accounting: see ratelimit.h for the rules. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "ratelimit.h"

#define PROBE 8

struct entry {
    uint64_t tag;     /* keyed hash of "a" ip or "u" user; 0: empty */
    unsigned count;
    double last;      /* time of the last counted failure */
};

/* Owns slots; freed by pw_limiter_free(). */
struct pw_limiter {
    pthread_mutex_t lock;
    struct entry *slots;    /* Protected by lock. */
    size_t mask;
    uint64_t seed[2];       /* random key of the hash */
    struct pw_limit_cfg cfg; /* Protected by lock. */
};

/*
 * FNV-1a over the seed, the kind byte and the key, then a murmur-style
 * finaliser. Not a MAC, but the seed is secret and random, which is what
 * keeps an attacker from choosing names that collide.
 */
static uint64_t
tag_of(const struct pw_limiter *l, char kind, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ull ^ l->seed[0];
    const unsigned char *p;

    h = (h ^ (uint8_t)kind) * 0x100000001b3ull;
    for (p = (const unsigned char *)key; *p != '\0'; p++) {
        h = (h ^ *p) * 0x100000001b3ull;
    }
    h ^= l->seed[1];
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h != 0 ? h : 1;
}

/* See ratelimit.h. */
struct pw_limiter *
pw_limiter_new(size_t slots, const struct pw_limit_cfg *cfg)
{
    struct pw_limiter *l = calloc(1, sizeof(*l));
    size_t n = 16;

    if (l == NULL) {
        return NULL;
    }
    while (n < slots) {
        n <<= 1;
    }
    l->slots = calloc(n, sizeof(*l->slots));
    if (l->slots == NULL || RAND_bytes((unsigned char *)l->seed, sizeof(l->seed)) != 1 ||
        pthread_mutex_init(&l->lock, NULL) != 0) {
        free(l->slots);
        free(l);
        return NULL;
    }
    l->mask = n - 1;
    l->cfg = *cfg;
    return l;
}

/* See ratelimit.h. */
void
pw_limiter_free(struct pw_limiter *l)
{
    if (l != NULL) {
        pthread_mutex_destroy(&l->lock);
        free(l->slots);
        free(l);
    }
}

/* See ratelimit.h. */
void
pw_limiter_set_cfg(struct pw_limiter *l, const struct pw_limit_cfg *cfg)
{
    pthread_mutex_lock(&l->lock);
    l->cfg = *cfg;
    pthread_mutex_unlock(&l->lock);
}

/*
 * The live entry for (kind, key); with `create`, a new or recycled one.
 * Entries idle for longer than the window count as empty. [lock held]
 */
static struct entry *
find_locked(struct pw_limiter *l, char kind, const char *key, double now, int create)
{
    uint64_t tag = tag_of(l, kind, key);
    struct entry *victim = NULL;
    int victim_live = 0;
    size_t i;

    for (i = 0; i < PROBE; i++) {
        struct entry *e = &l->slots[(tag + i) & l->mask];
        int live = e->tag != 0 && now - e->last < l->cfg.window;

        if (e->tag == tag) {
            if (!live) {
                e->count = 0; /* its window passed: forgotten */
            }
            return e;
        }
        if (!live) {
            if (victim == NULL || victim_live) {
                victim = e; /* the first empty or stale slot */
                victim_live = 0;
            }
        } else if (victim == NULL || (victim_live && e->last < victim->last)) {
            victim = e; /* else the stalest live one */
            victim_live = 1;
        }
    }
    if (!create) {
        return NULL;
    }
    victim->tag = tag;
    victim->count = 0;
    victim->last = now;
    return victim;
}

static unsigned
count_of(struct pw_limiter *l, char kind, const char *key, double now)
{
    struct entry *e;

    if (key == NULL) {
        return 0;
    }
    e = find_locked(l, kind, key, now, 0);
    return e != NULL ? e->count : 0;
}

/* See ratelimit.h. */
int
pw_limiter_blocked(struct pw_limiter *l, const char *ip, const char *user, double now)
{
    int blocked;

    pthread_mutex_lock(&l->lock);
    blocked = l->cfg.max_failures > 0 && (count_of(l, 'a', ip, now) >= l->cfg.max_failures ||
                                          count_of(l, 'u', user, now) >= l->cfg.max_failures);
    pthread_mutex_unlock(&l->lock);
    return blocked;
}

/* Counts one failure for (kind, key); returns the new count. [lock held] */
static unsigned
bump_locked(struct pw_limiter *l, char kind, const char *key, double now)
{
    struct entry *e;

    if (key == NULL) {
        return 0;
    }
    e = find_locked(l, kind, key, now, 1);
    if (e->count < 1000000u) {
        e->count++;
    }
    e->last = now;
    return e->count;
}

/* See ratelimit.h. */
double
pw_limiter_failure(struct pw_limiter *l, const char *ip, const char *user, double now)
{
    unsigned a, u, n;
    double d = 0;

    pthread_mutex_lock(&l->lock);
    a = bump_locked(l, 'a', ip, now);
    u = bump_locked(l, 'u', user, now);
    n = a > u ? a : u;
    if (n >= 2 && l->cfg.delay > 0) {
        unsigned k;

        d = l->cfg.delay;
        for (k = 2; k < n && d < l->cfg.delay_max; k++) {
            d *= 2;
        }
        if (d > l->cfg.delay_max) {
            d = l->cfg.delay_max;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return d;
}

/* See ratelimit.h. */
void
pw_limiter_success(struct pw_limiter *l, const char *user)
{
    struct entry *e;

    if (user == NULL) {
        return;
    }
    pthread_mutex_lock(&l->lock);
    e = find_locked(l, 'u', user, 0, 0);
    if (e != NULL) {
        e->count = 0;
    }
    pthread_mutex_unlock(&l->lock);
}

/* See ratelimit.h. */
double
pw_limiter_block_delay(struct pw_limiter *l)
{
    double d;

    pthread_mutex_lock(&l->lock);
    d = l->cfg.delay_max;
    pthread_mutex_unlock(&l->lock);
    return d;
}
