/*
 * Failed-login accounting per client address and per user name.
 *
 * Every failed verification counts against both the peer's IP address and
 * the user name (known or not). Counts are forgotten `window` seconds after
 * the last failure of that key. With n = the larger of the two counts
 * (this failure included):
 *
 *   - the answer to this failure is delayed by 0 for n = 1, then
 *     delay * 2^(n-2) seconds, at most delay_max (0.5, 1, 2, 2, ... by
 *     default): guessing gets slow, a typo costs nothing;
 *   - once n reaches max_failures (0: never), further attempts for that
 *     address or user are refused without hashing (and answered after
 *     delay_max) until `window` seconds pass without a counted failure:
 *     a storm of wrong passwords costs no hashing CPU. Refused attempts do
 *     not count, so the block ends on its own.
 *
 * A success resets the user's count (not the address's: one valid account
 * must not reset the budget for guessing others from that address).
 *
 * Bounded: a fixed table of slots keyed by a keyed 64-bit hash (random
 * per instance, so an attacker cannot aim collisions); a full
 * neighbourhood replaces its stalest entry, so memory never grows.
 * Thread-safe (one mutex).
 */
#ifndef AUTH_PASSWD_RATELIMIT_H
#define AUTH_PASSWD_RATELIMIT_H

#include <stddef.h>

struct pw_limit_cfg {
    double delay;          /* seconds; 0 disables delays */
    double delay_max;
    unsigned max_failures; /* 0 disables blocking */
    double window;         /* seconds */
};

struct pw_limiter;

/* `slots`: table size (rounded up to a power of two). NULL when out of memory. */
struct pw_limiter *pw_limiter_new(size_t slots, const struct pw_limit_cfg *cfg);
void pw_limiter_free(struct pw_limiter *l);
void pw_limiter_set_cfg(struct pw_limiter *l, const struct pw_limit_cfg *cfg);

/*
 * 1 when attempts from `ip` or for `user` are blocked at `now` (seconds,
 * monotonic); NULL keys are ignored.
 */
int pw_limiter_blocked(struct pw_limiter *l, const char *ip, const char *user, double now);

/* Counts a failure for ip and user; returns the delay (seconds) to apply to this answer. */
double pw_limiter_failure(struct pw_limiter *l, const char *ip, const char *user, double now);

/* A success for user: its count starts again. */
void pw_limiter_success(struct pw_limiter *l, const char *user);

/* The delay for blocked attempts (delay_max). */
double pw_limiter_block_delay(struct pw_limiter *l);

#endif
