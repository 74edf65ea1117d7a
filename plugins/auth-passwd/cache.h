/*
 * A bounded cache of recent successful verifications, so that a fleet of
 * clients reconnecting at once (a broker restart, a network blip) costs one
 * HMAC each instead of one PBKDF2 each.
 *
 * What is kept: for each success, HMAC-SHA256(K, len(user) || user ||
 * password) and an expiry time, where K is 32 random bytes drawn when the
 * cache is created (per process and instance, never written anywhere).
 * No password and no user name is kept, and the entries mean nothing
 * without K: a log, a core dump of the cache array alone or a
 * precomputed table gives no password. (Whoever can read the whole
 * process memory sees K, and also every password as it arrives, so the
 * cache adds nothing for them.) The length prefix keeps ("ab", "c") and
 * ("a", "bc") apart.
 *
 * Bounded: a fixed array of slots (capacity rounded up to a power of two);
 * an insert into a full neighbourhood replaces the entry that expires
 * first. Entries expire after `ttl` seconds. pw_cache_clear() empties it
 * (called when the password file changed) and starts a new epoch, so a
 * verification that began before the clear cannot put a result computed
 * against the old file into the new cache.
 *
 * Thread-safe: one mutex; every operation is a few dozen byte compares.
 */
#ifndef AUTH_PASSWD_CACHE_H
#define AUTH_PASSWD_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define PW_CACHE_KEY 32

struct pw_cache;

/* capacity 0 makes a cache that stores nothing. NULL when out of memory or no random bytes. */
struct pw_cache *pw_cache_new(size_t capacity, double ttl);
void pw_cache_free(struct pw_cache *c);

/* Changes the TTL of later inserts (SIGHUP). */
void pw_cache_set_ttl(struct pw_cache *c, double ttl);

/* The key for (user, password). Returns 0, -1 when HMAC fails. */
int pw_cache_key(const struct pw_cache *c, const char *user, const void *pw, size_t len,
                 uint8_t key[PW_CACHE_KEY]);

/* The current epoch: pass it to pw_cache_insert() after a verification. */
uint64_t pw_cache_epoch(struct pw_cache *c);

/* 1 when `key` is cached and not expired at `now` (seconds, monotonic), else 0. */
int pw_cache_lookup(struct pw_cache *c, const uint8_t key[PW_CACHE_KEY], double now);

/* Remembers `key` until now + ttl, unless the cache was cleared since `epoch`. */
void pw_cache_insert(struct pw_cache *c, const uint8_t key[PW_CACHE_KEY], double now,
                     uint64_t epoch);

/* Forgets every entry and starts a new epoch. */
void pw_cache_clear(struct pw_cache *c);

/* Number of live (possibly expired, not yet replaced) entries; for tests and metrics. */
size_t pw_cache_count(struct pw_cache *c);

#endif
