/*
 * The writer thread and group commit.
 *
 * Loop: take everything queued (it arrived while the previous transaction
 * ran), BEGIN, apply each event, COMMIT (with synchronous=FULL this is
 * the fsync of the WAL), then api->persist_durable(highest seq). One fsync
 * covers a whole batch, so the more the broker has in flight the larger the
 * batches get and the cost per event falls.
 *
 * durability batch: at most one commit per batch_ms, synchronous=NORMAL.
 * durability none: events are reported durable as soon as the writer takes
 * them (the persist hook itself may not call back into the broker), then
 * written with synchronous=OFF.
 *
 * Failure (disk full, I/O error, busy, ...): the transaction is rolled back,
 * api->persist_failing(1) is called once, the batch is kept and retried with
 * everything queued since, with backoff from 50 ms to 2 s; the first commit
 * that succeeds calls api->persist_failing(0). The events kept meanwhile
 * count against the queue's max_pending bound (queue.c says what happens
 * past it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coalesce.h"
#include "schema.h"
#include "writer.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define STOP_RETRIES 3 /* tries left for a failing disk once shutdown began */

/* Owns the thread. The env, store, queue and lock are borrowed from the instance. */
struct psq_writer {
    struct psq_env env;
    sqlite3 *db;
    struct psq_store *store;
    struct psq_queue *q;
    pthread_mutex_t *db_lock;
    struct psq_writer_opts opts;
    struct psq_writer_metrics metrics;
    struct psq_coalescer *coalescer;
    pthread_t thread;

    pthread_mutex_t stats_lock;
    struct psq_writer_stats stats;  /* Protected by stats_lock. */
    int64_t max_pages;              /* Protected by stats_lock; -1: unchanged since applied */
    pthread_mutex_t report_lock;    /* held around every persist_durable call */
    int quiet;                      /* no more reports. Protected by report_lock */

    /* Writer thread only. */
    int failing;
    int lost_reported;
};

/* Applies the size limit if it changed. [writer thread, db_lock held] */
static void
apply_max_pages(struct psq_writer *w)
{
    int64_t pages;
    char sql[64];

    pthread_mutex_lock(&w->stats_lock);
    pages = w->max_pages;
    w->max_pages = -1;
    pthread_mutex_unlock(&w->stats_lock);
    if (pages >= 0) {
        /* 0 means no limit: SQLite's own maximum. */
        snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld",
                 pages > 0 ? (long long)pages : 4294967294LL);
        psq_exec(w->db, sql);
    }
}

/*
 * One transaction over the list. Returns SQLITE_OK after COMMIT, or the
 * error that made it roll back. *applied counts events written, *skipped
 * events refused for their own data (logged). [writer thread]
 */
static int
write_batch(struct psq_writer *w, struct psq_event *list, uint64_t *applied, uint64_t *skipped,
            int64_t *commit_ns)
{
    int64_t now = psq_wall_now();
    int64_t t0;
    struct psq_event *e;
    int rc;

    *applied = 0;
    *skipped = 0;
    *commit_ns = 0;
    pthread_mutex_lock(w->db_lock);
    apply_max_pages(w);
    rc = psq_exec(w->db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK) {
        rc = psq_store_batch_begin(w->store);
    }
    for (e = list; e != NULL && rc == SQLITE_OK; e = e->next) {
        if (e->skip) {
            continue;
        }
        rc = psq_store_apply(w->store, e, now);
        if (rc != SQLITE_OK && !psq_store_rc_is_fatal(rc)) {
            PSQ_LOG(&w->env, MIDGE_LOG_ERROR,
                    "event skipped seq=%llu type=%d client=%s: %s",
                    (unsigned long long)e->seq, e->type,
                    e->client_id != NULL ? e->client_id : "-", sqlite3_errstr(rc));
            (*skipped)++;
            rc = SQLITE_OK;
        } else if (rc == SQLITE_OK) {
            (*applied)++;
        }
    }
    if (rc == SQLITE_OK) {
        rc = psq_store_batch_end(w->store);
    }
    if (rc == SQLITE_OK) {
        t0 = psq_mono_ns();
        rc = psq_exec(w->db, "COMMIT");
        *commit_ns = psq_mono_ns() - t0;
    }
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(w->db)) {
        psq_exec(w->db, "ROLLBACK");
    }
    if (rc != SQLITE_OK) {
        psq_store_forget(w->store); /* sessions it inserted have no row after all */
        *applied = 0;
        *skipped = 0;
    }
    pthread_mutex_unlock(w->db_lock);
    return rc;
}

/* api->persist_durable unless the broker is stopping. [writer thread] */
static void
report_durable(struct psq_writer *w, uint64_t seq)
{
    pthread_mutex_lock(&w->report_lock);
    if (!w->quiet) {
        w->env.api->persist_durable(w->env.self, seq);
    }
    pthread_mutex_unlock(&w->report_lock);
}

void
psq_writer_quiet(struct psq_writer *w)
{
    pthread_mutex_lock(&w->report_lock);
    w->quiet = 1;
    pthread_mutex_unlock(&w->report_lock);
}

/* Reports a refused event once. [writer thread] */
static void
check_lost(struct psq_writer *w)
{
    uint64_t lost = psq_queue_lost(w->q);

    if (lost != 0 && !w->lost_reported) {
        w->lost_reported = 1;
        PSQ_LOG(&w->env, MIDGE_LOG_ERROR,
                "event queue full (plugin_opt_max_pending): events from seq=%llu on are not "
                "stored and nothing after them is reported durable; restart the broker to "
                "persist again", (unsigned long long)lost);
        if (!w->failing) {
            w->env.api->persist_failing(w->env.self, 1);
            w->failing = 1;
        }
    }
}

static void *
writer_main(void *arg)
{
    struct psq_writer *w = arg;
    struct psq_taken batch = {0};     /* taken, not yet committed: retried on failure */
    int64_t not_before = 0;
    unsigned backoff_ms = 0;
    int retries_left = STOP_RETRIES;
    int stopping = 0;

    for (;;) {
        struct psq_taken more;
        uint64_t batch_seq;
        uint64_t applied;
        uint64_t skipped;
        size_t coalesced;
        int64_t commit_ns;
        int rc;

        psq_queue_take(w->q, not_before, batch.head == NULL, &more, &stopping);
        if (more.head != NULL && w->opts.durability == PSQ_DURABILITY_NONE) {
            report_durable(w, more.max_seq);
        }
        psq_taken_append(&batch, &more);
        check_lost(w);
        if (batch.head == NULL) {
            if (stopping) {
                break;
            }
            continue;
        }
        batch_seq = batch.max_seq;
        coalesced = psq_coalesce(w->coalescer, batch.head, batch.n);
        rc = write_batch(w, batch.head, &applied, &skipped, &commit_ns);
        if (rc == SQLITE_OK) {
            if (w->opts.durability != PSQ_DURABILITY_NONE) {
                report_durable(w, batch_seq);
            }
            if (w->failing && !w->lost_reported) {
                w->failing = 0;
                w->env.api->persist_failing(w->env.self, 0); /* before the line that says so */
                PSQ_LOG(&w->env, MIDGE_LOG_NOTICE, "writes succeed again: storage recovered");
            }
            pthread_mutex_lock(&w->stats_lock);
            w->stats.commits++;
            w->stats.events += applied;
            w->stats.skipped += skipped;
            w->stats.coalesced += coalesced + batch.folded; /* folded: at push (queue.c) */
            w->stats.max_batch = batch.n > w->stats.max_batch ? batch.n : w->stats.max_batch;
            w->stats.commit_ns += (uint64_t)commit_ns;
            if ((uint64_t)commit_ns > w->stats.max_commit_ns) {
                w->stats.max_commit_ns = (uint64_t)commit_ns;
            }
            pthread_mutex_unlock(&w->stats_lock);
            if (w->metrics.commit_seconds != NULL) {
                w->env.api->metric_observe(w->metrics.commit_seconds, (double)commit_ns / 1e9);
            }
            if (w->metrics.batch_events != NULL) {
                w->env.api->metric_observe(w->metrics.batch_events, (double)batch.n);
            }
            psq_queue_done(w->q, batch.n);
            psq_taken_free(&w->env, &batch);
            backoff_ms = 0;
            not_before = w->opts.durability == PSQ_DURABILITY_BATCH
                             ? psq_mono_ns() + (int64_t)w->opts.batch_ms * 1000000
                             : 0;
        } else {
            pthread_mutex_lock(&w->stats_lock);
            w->stats.failures++;
            pthread_mutex_unlock(&w->stats_lock);
            if (w->metrics.failures != NULL) {
                w->env.api->metric_add(w->metrics.failures, 1);
            }
            if (!w->failing) {
                w->failing = 1;
                PSQ_LOG(&w->env, MIDGE_LOG_ERROR,
                        "cannot write the database (%s): %zu events kept in memory, retrying; "
                        "acknowledgements that need them are held",
                        sqlite3_errstr(rc), batch.n);
                w->env.api->persist_failing(w->env.self, 1);
            }
            if (stopping && --retries_left <= 0) {
                PSQ_LOG(&w->env, MIDGE_LOG_ERROR,
                        "shutdown: %zu events could not be written (%s); the database keeps "
                        "the state before them", batch.n, sqlite3_errstr(rc));
                psq_queue_done(w->q, batch.n);
                psq_taken_free(&w->env, &batch);
                break;
            }
            backoff_ms = backoff_ms == 0 ? BACKOFF_MIN_MS : backoff_ms * 2;
            backoff_ms = backoff_ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms;
            not_before = psq_mono_ns() + (int64_t)backoff_ms * 1000000;
        }
        if (w->metrics.pending != NULL) {
            w->env.api->metric_set(w->metrics.pending, (int64_t)psq_queue_pending(w->q));
        }
    }
    return NULL;
}

struct psq_writer *
psq_writer_start(const struct psq_env *env, sqlite3 *db, struct psq_store *store,
                 struct psq_queue *q, pthread_mutex_t *db_lock,
                 const struct psq_writer_opts *opts, const struct psq_writer_metrics *metrics)
{
    struct psq_writer *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        return NULL;
    }
    w->env = *env;
    w->db = db;
    w->store = store;
    w->q = q;
    w->db_lock = db_lock;
    w->opts = *opts;
    if (metrics != NULL) {
        w->metrics = *metrics;
    }
    w->max_pages = -1;
    w->coalescer = psq_coalescer_new();
    if (w->coalescer == NULL) {
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->stats_lock, NULL);
    pthread_mutex_init(&w->report_lock, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_mutex_destroy(&w->stats_lock);
        pthread_mutex_destroy(&w->report_lock);
        psq_coalescer_free(w->coalescer);
        free(w);
        return NULL;
    }
    return w;
}

void
psq_writer_set_max_pages(struct psq_writer *w, int64_t pages)
{
    pthread_mutex_lock(&w->stats_lock);
    w->max_pages = pages;
    pthread_mutex_unlock(&w->stats_lock);
}

void
psq_writer_stats(struct psq_writer *w, struct psq_writer_stats *out)
{
    pthread_mutex_lock(&w->stats_lock);
    *out = w->stats;
    pthread_mutex_unlock(&w->stats_lock);
}

void
psq_writer_stop(struct psq_writer *w, struct psq_writer_stats *final)
{
    if (w != NULL) {
        psq_queue_stop(w->q);
        pthread_join(w->thread, NULL);
        if (final != NULL) {
            *final = w->stats;
        }
        pthread_mutex_destroy(&w->stats_lock);
        pthread_mutex_destroy(&w->report_lock);
        psq_coalescer_free(w->coalescer);
        free(w);
    }
}
