/* The verification cache: see cache.h for what is stored and why. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "cache.h"

#define PROBE 8 /* slots examined from the key's home slot */

struct slot {
    uint8_t key[PW_CACHE_KEY];
    double expires; /* 0: empty */
};

/* Owns slots; freed by pw_cache_free(). */
struct pw_cache {
    pthread_mutex_t lock;
    uint8_t secret[32];   /* K: random, never leaves this struct */
    EVP_MAC *mac;         /* HMAC, fetched once (shareable between threads) */
    struct slot *slots;   /* Protected by lock. */
    size_t mask;          /* number of slots - 1; slots == NULL when capacity is 0 */
    double ttl;           /* Protected by lock. */
    uint64_t epoch;       /* Protected by lock. */
};

/* See cache.h. */
struct pw_cache *
pw_cache_new(size_t capacity, double ttl)
{
    struct pw_cache *c = calloc(1, sizeof(*c));
    size_t n = 1;

    if (c == NULL) {
        return NULL;
    }
    c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (c->mac == NULL || RAND_bytes(c->secret, sizeof(c->secret)) != 1 ||
        pthread_mutex_init(&c->lock, NULL) != 0) {
        EVP_MAC_free(c->mac);
        free(c);
        return NULL;
    }
    c->ttl = ttl;
    if (capacity > 0) {
        while (n < capacity) {
            n <<= 1;
        }
        c->slots = calloc(n, sizeof(*c->slots));
        if (c->slots == NULL) {
            pthread_mutex_destroy(&c->lock);
            EVP_MAC_free(c->mac);
            free(c);
            return NULL;
        }
        c->mask = n - 1;
    }
    return c;
}

/* See cache.h. */
void
pw_cache_free(struct pw_cache *c)
{
    if (c == NULL) {
        return;
    }
    if (c->slots != NULL) {
        OPENSSL_cleanse(c->slots, (c->mask + 1) * sizeof(*c->slots));
    }
    free(c->slots);
    OPENSSL_cleanse(c->secret, sizeof(c->secret));
    EVP_MAC_free(c->mac);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* See cache.h. */
void
pw_cache_set_ttl(struct pw_cache *c, double ttl)
{
    pthread_mutex_lock(&c->lock);
    c->ttl = ttl;
    pthread_mutex_unlock(&c->lock);
}

/* See cache.h. */
int
pw_cache_key(const struct pw_cache *c, const char *user, const void *pw, size_t len,
             uint8_t key[PW_CACHE_KEY])
{
    size_t ulen = strlen(user);
    uint8_t prefix[4] = {(uint8_t)(ulen >> 24), (uint8_t)(ulen >> 16), (uint8_t)(ulen >> 8),
                         (uint8_t)ulen};
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(c->mac);
    OSSL_PARAM params[2];
    size_t outl = 0;
    int rc = -1;

    if (ctx == NULL) {
        goto out;
    }
    params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, c->secret, sizeof(c->secret), params) != 1 ||
        EVP_MAC_update(ctx, prefix, sizeof(prefix)) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)user, ulen) != 1 ||
        (len > 0 && EVP_MAC_update(ctx, pw, len) != 1) ||
        EVP_MAC_final(ctx, key, &outl, PW_CACHE_KEY) != 1 || outl != PW_CACHE_KEY) {
        goto out;
    }
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    return rc;
}

/* See cache.h. */
uint64_t
pw_cache_epoch(struct pw_cache *c)
{
    uint64_t e;

    pthread_mutex_lock(&c->lock);
    e = c->epoch;
    pthread_mutex_unlock(&c->lock);
    return e;
}

/* The home slot: the key is an HMAC output, so its first bytes are uniformly random. */
static size_t
home(const struct pw_cache *c, const uint8_t *key)
{
    uint64_t h;

    memcpy(&h, key, sizeof(h));
    return (size_t)h & c->mask;
}

/* See cache.h. */
int
pw_cache_lookup(struct pw_cache *c, const uint8_t key[PW_CACHE_KEY], double now)
{
    size_t i, h;
    int hit = 0;

    if (c->slots == NULL) {
        return 0;
    }
    h = home(c, key);
    pthread_mutex_lock(&c->lock);
    for (i = 0; i < PROBE && i <= c->mask; i++) {
        struct slot *s = &c->slots[(h + i) & c->mask];

        if (s->expires > now && CRYPTO_memcmp(s->key, key, PW_CACHE_KEY) == 0) {
            hit = 1;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

/* See cache.h. */
void
pw_cache_insert(struct pw_cache *c, const uint8_t key[PW_CACHE_KEY], double now, uint64_t epoch)
{
    struct slot *victim = NULL;
    size_t i, h;

    if (c->slots == NULL) {
        return;
    }
    h = home(c, key);
    pthread_mutex_lock(&c->lock);
    if (epoch != c->epoch || c->ttl <= 0) {
        goto out; /* verified against a file that has been replaced since */
    }
    for (i = 0; i < PROBE && i <= c->mask; i++) {
        struct slot *s = &c->slots[(h + i) & c->mask];

        if (s->expires > 0 && CRYPTO_memcmp(s->key, key, PW_CACHE_KEY) == 0) {
            victim = s; /* refresh */
            break;
        }
        if (victim == NULL || s->expires < victim->expires) {
            victim = s; /* empty (0) or expired slots sort first */
        }
    }
    memcpy(victim->key, key, PW_CACHE_KEY);
    victim->expires = now + c->ttl;
out:
    pthread_mutex_unlock(&c->lock);
}

/* See cache.h. */
void
pw_cache_clear(struct pw_cache *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->slots != NULL) {
        memset(c->slots, 0, (c->mask + 1) * sizeof(*c->slots));
    }
    c->epoch++;
    pthread_mutex_unlock(&c->lock);
}

/* See cache.h. */
size_t
pw_cache_count(struct pw_cache *c)
{
    size_t i, n = 0;

    pthread_mutex_lock(&c->lock);
    for (i = 0; c->slots != NULL && i <= c->mask; i++) {
        n += c->slots[i].expires > 0;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}
