/*
 * Applying persistence events to the database: one prepared statement per
 * change, payload rows reference-counted. Used by the writer thread (and by
 * restore, to delete what expired), one caller at a time.
 */
#ifndef PSQ_STORE_H
#define PSQ_STORE_H

#include <sqlite3.h>

#include "psq.h"
#include "queue.h"

/* Prepared statements over one connection. Owned by the instance; psq_store_free(). */
struct psq_store;

/* Prepares the statements. NULL on failure (then *err has SQLite's message, static or NULL). */
struct psq_store *psq_store_new(const struct psq_env *env, sqlite3 *db, const char **err);
void psq_store_free(struct psq_store *s);

/*
 * Applies one event inside the caller's transaction. Returns SQLITE_OK
 * (also for events that are ignored: no session row, unknown delivery), or
 * the SQLite error of the statement that failed. `now` is wall-clock
 * seconds (message expiry is stored as an absolute time).
 */
int psq_store_apply(struct psq_store *s, const struct psq_event *e, int64_t now);

/*
 * Forgets what it cached of the database (which sessions have a row, the
 * young log). The writer calls it after a rollback: a session inserted by
 * the rolled-back transaction has no row.
 */
void psq_store_forget(struct psq_store *s);

/*
 * The start of a batch, inside its transaction: after a rollback, reads
 * back the young-delivery log (young.h). SQLite result code.
 */
int psq_store_batch_begin(struct psq_store *s);

/*
 * The end of a batch's events, inside its transaction: writes the batch's
 * young-delivery row and moves the deliveries that outlived the log into
 * the deliveries table. SQLite result code.
 */
int psq_store_batch_end(struct psq_store *s);

/*
 * Moves every delivery of the young-delivery log into the deliveries table,
 * in a transaction of its own: at start (what the previous process left)
 * and at a clean shutdown. SQLite result code.
 */
int psq_store_drain_young(struct psq_store *s);

/* Deliveries written to the young log, and moved from it to the deliveries table, since start. */
void psq_store_young_counts(const struct psq_store *s, uint64_t *added, uint64_t *moved);

/* Deletes a session and every row it has (as SESSION_END). SQLite result code. */
int psq_store_session_end(struct psq_store *s, const char *client_id);

/* Deletes the retained message of `topic`. SQLite result code. */
int psq_store_retain_clear(struct psq_store *s, const char *topic);

/* Deletes delivery `delivery_id`. SQLite result code. */
int psq_store_delivery_done(struct psq_store *s, uint64_t delivery_id);

/*
 * 1 when a failed statement's result code means the transaction cannot
 * go on (I/O error, disk full, busy, corrupt, out of memory, read-only):
 * the batch is retried. 0 for an error of one event (constraint, bad data):
 * that event is skipped and logged.
 */
int psq_store_rc_is_fatal(int rc);

#endif
