/*
 * The writer thread: takes everything queued, applies it in one
 * transaction, commits once (group commit), then reports the highest seq
 * durable. Retries with backoff when the disk fails.
 */
#ifndef PSQ_WRITER_H
#define PSQ_WRITER_H

#include <pthread.h>
#include <stdint.h>

#include <sqlite3.h>

#include "psq.h"
#include "queue.h"
#include "store.h"

struct psq_writer_opts {
    int durability;          /* enum psq_durability */
    unsigned batch_ms;       /* BATCH: at most one commit per batch_ms */
};

/* Counters the writer keeps (read with psq_writer_stats). */
struct psq_writer_stats {
    uint64_t commits;
    uint64_t events;         /* events applied and committed */
    uint64_t skipped;        /* events that could not be applied (bad data) */
    uint64_t coalesced;      /* events left out: their delivery began and ended in the batch */
    uint64_t max_batch;
    uint64_t commit_ns;      /* total time in COMMIT (the fsync) */
    uint64_t max_commit_ns;
    uint64_t failures;       /* failed transactions */
};

/* Optional metrics (NULL when the broker has none). Borrowed from the broker. */
struct psq_writer_metrics {
    midge_metric *commit_seconds;   /* histogram */
    midge_metric *batch_events;     /* histogram */
    midge_metric *pending;          /* gauge */
    midge_metric *failures;         /* counter */
};

/* The writer. Owned by the instance: psq_writer_stop() joins and frees it. */
struct psq_writer;

/*
 * Starts the thread. `db_lock` serialises the connection with the restore
 * hook (the writer holds it during each transaction). Everything passed is
 * borrowed until psq_writer_stop(). NULL when the thread cannot start.
 */
struct psq_writer *psq_writer_start(const struct psq_env *env, sqlite3 *db,
                                    struct psq_store *store, struct psq_queue *q,
                                    pthread_mutex_t *db_lock, const struct psq_writer_opts *opts,
                                    const struct psq_writer_metrics *metrics);

/*
 * From now on no durability report reaches the broker: its workers are
 * stopping (the broker frees them before plugin cleanup, and nobody waits
 * for an acknowledgement any more). Waits for a report in progress to
 * return. [any thread]
 */
void psq_writer_quiet(struct psq_writer *w);

/* Sets the database size limit (pages, 0: none) for the next transactions. [any thread] */
void psq_writer_set_max_pages(struct psq_writer *w, int64_t pages);

/* A copy of the counters. [any thread] */
void psq_writer_stats(struct psq_writer *w, struct psq_writer_stats *out);

/*
 * Stops the queue, lets the thread write everything still queued (a
 * failing disk gets a few more tries), joins it, frees the writer. Events
 * that could not be written are logged and freed. *final (if not NULL)
 * gets the last counters. NULL is ignored.
 */
void psq_writer_stop(struct psq_writer *w, struct psq_writer_stats *final);

#endif
