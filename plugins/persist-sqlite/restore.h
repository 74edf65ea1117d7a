/*
 * Start-up: reading the database back into the broker with the
 * api->restore_* calls, in the order the broker needs.
 */
#ifndef PSQ_RESTORE_H
#define PSQ_RESTORE_H

#include <sqlite3.h>
#include <stdint.h>

#include "psq.h"
#include "store.h"

/* What a restore found (logged by the caller, checked by tests). */
struct psq_restore_stats {
    uint64_t sessions;
    uint64_t subscriptions;
    uint64_t retained;
    uint64_t messages;        /* deliveries */
    uint64_t payloads;        /* distinct messages built for them */
    uint64_t qos2_in;
    uint64_t wills;
    uint64_t expired;         /* sessions, retained messages and queued deliveries dropped as expired */
    uint64_t refused;         /* restore_* calls the broker refused (-MIDGE_EINVAL) */
};

/*
 * Restores everything: sessions (expired ones are deleted instead), their
 * subscriptions, retained messages (expired ones deleted), each session's
 * deliveries in queue order with their state and packet ids (messages keep
 * their ids: api->message_new with the stored msg_id, one per stored
 * message), incoming QoS 2 packet ids, wills. The caller holds the
 * connection alone. Returns 0, or a negative error after api->set_error().
 * [main thread: the restore hook]
 */
int psq_restore(const struct psq_env *env, sqlite3 *db, struct psq_store *store,
                const char *path, struct psq_restore_stats *st);

#endif
