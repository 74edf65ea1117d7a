/* HTTP Basic credentials against a password file (see basic_auth.h). */
#include "basic_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../auth-passwd/cache.h"
#include "../auth-passwd/pwfile.h"

#define CACHE_SLOTS 64
#define CACHE_TTL 60.0 /* seconds */

/* Owns the table and the cache; freed by basic_auth_free. */
struct basic_auth {
    struct pw_table *table; /* read-only after load: shared by threads */
    struct pw_cache *cache; /* thread-safe itself */
};

static double
now_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct basic_auth *
basic_auth_new(const char *path, char *err, size_t errlen)
{
    struct basic_auth *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (pw_table_load(path, &a->table, err, errlen) != 0) {
        free(a);
        return NULL;
    }
    a->cache = pw_cache_new(CACHE_SLOTS, CACHE_TTL);
    if (a->cache == NULL) {
        snprintf(err, errlen, "out of memory (or no random bytes) for the login cache");
        basic_auth_free(a);
        return NULL;
    }
    return a;
}

int
basic_auth_check(struct basic_auth *a, const char *user, const char *pw, size_t len)
{
    const struct pw_entry *e;
    uint8_t key[PW_CACHE_KEY];
    int have_key;
    uint64_t epoch;
    double t = now_mono();

    have_key = pw_cache_key(a->cache, user, pw, len, key) == 0;
    if (have_key && pw_cache_lookup(a->cache, key, t)) {
        return 1;
    }
    epoch = pw_cache_epoch(a->cache);
    e = pw_table_find(a->table, user);
    if (e == NULL) {
        /* As costly as a wrong password: no user names from timing. */
        (void)pw_verify(&a->table->dummy, pw, len);
        return 0;
    }
    if (pw_verify(&e->hash, pw, len) != 1) {
        return 0;
    }
    if (have_key) {
        pw_cache_insert(a->cache, key, t, epoch);
    }
    return 1;
}

size_t
basic_auth_users(const struct basic_auth *a)
{
    return a->table->n;
}

void
basic_auth_free(struct basic_auth *a)
{
    if (a == NULL) {
        return;
    }
    if (a->table != NULL) {
        pw_table_free(a->table);
    }
    if (a->cache != NULL) {
        pw_cache_free(a->cache);
    }
    free(a);
}
