/* Denial log de-duplication; see acl_denylog.h. */
#include <string.h>

#include "acl_denylog.h"

static uint64_t
mix(uint64_t h, const char *s)
{
    for (; s != NULL && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    h ^= 0xff; /* field separator: ("ab","c") and ("a","bc") differ */
    return h * 1099511628211ull;
}

/* Empties the table and fills the budget. [init] */
void
acl_denylog_init(struct acl_denylog *l)
{
    size_t i;

    for (i = 0; i < ACL_DENYLOG_SLOTS; i++) {
        atomic_init(&l->slots[i], 0);
    }
    atomic_init(&l->budget, ACL_DENYLOG_PER_TICK);
    atomic_init(&l->suppressed, 0);
}

/* See acl_denylog.h. [any thread] */
int
acl_denylog_should_log(struct acl_denylog *l, uint64_t generation, const char *client_id,
                       int action, const char *topic)
{
    uint64_t h = 1469598103934665603ull ^ generation;

    h = mix(h * 1099511628211ull + (uint64_t)action, client_id);
    h = mix(h, topic);
    h ^= h >> 32;
    h |= 1; /* 0 marks a free slot */
    if (atomic_exchange(&l->slots[h % ACL_DENYLOG_SLOTS], h) == h) {
        return 0;
    }
    if (atomic_fetch_sub(&l->budget, 1) <= 0) {
        atomic_fetch_add(&l->suppressed, 1);
        return 0;
    }
    return 1;
}

/* See acl_denylog.h. [main thread: tick] */
uint64_t
acl_denylog_tick(struct acl_denylog *l)
{
    atomic_store(&l->budget, ACL_DENYLOG_PER_TICK);
    return atomic_exchange(&l->suppressed, 0);
}
