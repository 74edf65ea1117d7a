/*
 * Denial log de-duplication (acl_denylog.c): each (client, action, topic)
 * is logged once per loaded ruleset, in bounded memory, and never more than
 * ACL_DENYLOG_PER_TICK lines between two ticks; the rest is counted and
 * reported in one summary line.
 */
#ifndef ACL_JSON_ACL_DENYLOG_H
#define ACL_JSON_ACL_DENYLOG_H

#include <stdatomic.h>
#include <stdint.h>

#define ACL_DENYLOG_SLOTS 8192   /* remembered denials: 64 KiB, whatever the clients do */
#define ACL_DENYLOG_PER_TICK 100 /* denial lines per second at most */

/*
 * Lock-free: any worker thread may ask at once. A slot holds the hash of a
 * denial already logged; a new denial that lands on a taken slot replaces
 * it, so a forgotten denial may be logged again later, never unboundedly
 * often (the budget caps the rate). Embedded in the plugin state.
 */
struct acl_denylog {
    _Atomic uint64_t slots[ACL_DENYLOG_SLOTS];
    atomic_int budget;           /* lines left until the next tick */
    atomic_uint_fast64_t suppressed; /* denials not logged for lack of budget */
};

void acl_denylog_init(struct acl_denylog *l);

/*
 * 1 when this denial should be logged now: not logged before for this
 * `generation` (of the ruleset) and the budget allows it. [any thread]
 */
int acl_denylog_should_log(struct acl_denylog *l, uint64_t generation, const char *client_id,
                           int action, const char *topic);

/* Refills the budget; returns the number of suppressed lines since the last call. [tick] */
uint64_t acl_denylog_tick(struct acl_denylog *l);

#endif
