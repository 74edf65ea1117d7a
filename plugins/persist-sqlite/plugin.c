/*
 * persist-sqlite: the broker's durable state in SQLite, with group commit.
 *
 *     plugin persist-sqlite
 *     plugin_opt_db /var/lib/midge/midge.db
 *     plugin_opt_durability full        # full | batch | none
 *     plugin_opt_batch_ms 10            # batch: at most one commit per 10 ms
 *     plugin_opt_max_pending 2000000    # events held in memory at most
 *     plugin_opt_max_size_mb 0          # database size limit, 0: none (SIGHUP applies it)
 *
 * The files, one job each:
 *   plugin.c   this: descriptor, options, init/cleanup, the hook table
 *   queue.c    the persist hook's copy of each event and the FIFO to the writer
 *   writer.c   the writer thread: group commit, durability reports, retries
 *   coalesce.c leaving out deliveries that begin and end within one batch
 *   checkpoint.c WAL checkpoints on their own thread, outside the commits
 *   store.c    events to rows (prepared statements, payload reference counts)
 *   young.c    the young-delivery log: recent deliveries one row per batch
 *   schema.c   opening a file: refusal checks, WAL, schema version, migrations
 *   restore.c  the restore hook: rows back into the broker
 * docs/persistence.md is the administrator's description.
 *
 * Threads: the persist hook runs on any worker thread under the broker's
 * lock and only copies the event into the queue. The writer thread owns the
 * connection, except during the restore hook (main thread, before any
 * client), which takes db_lock; so does every writer transaction.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include <midge/plugin.h>

#include "checkpoint.h"
#include "psq.h"
#include "queue.h"
#include "restore.h"
#include "schema.h"
#include "store.h"
#include "writer.h"

static const char *const psq_options[] = {
    "db", "durability", "batch_ms", "max_pending", "max_size_mb", NULL,
};
MIDGE_PLUGIN_DECLARE_OPTIONS("persist-sqlite", "1.0",
                             "sessions, subscriptions, retained and queued messages in SQLite "
                             "with group commit",
                             psq_options);

#define DEFAULT_BATCH_MS 10u
#define MAX_BATCH_MS 10000u
#define DEFAULT_MAX_PENDING 2000000u
#define MIN_MAX_PENDING 1000u

/* One instance. Created by init, freed by cleanup (or by init when it fails). */
struct psq {
    struct psq_env env;
    char *path;                   /* plugin_opt_db, owned */
    struct psq_writer_opts wopts;
    size_t max_pending;
    int64_t max_size_mb;
    pthread_mutex_t db_lock;      /* the connection: writer transactions, restore */
    sqlite3 *db;                  /* owned; closed in cleanup */
    int lock_fd;                  /* flock on the file; closed after db */
    struct psq_store *store;      /* owned */
    struct psq_queue *q;          /* owned */
    struct psq_writer *writer;    /* owned */
    struct psq_checkpointer *checkpointer; /* owned; NULL: SQLite's autocheckpoint */
    struct psq_writer_metrics metrics;
};

/* Parses an unsigned decimal option in [lo, hi]; NULL leaves *out. 0 or -MIDGE_EINVAL after set_error. */
static int
parse_uint(const struct psq_env *env, const char *key, const char *text, unsigned long long lo,
           unsigned long long hi, unsigned long long *out)
{
    char *end = NULL;
    unsigned long long v;

    if (text == NULL) {
        return 0;
    }
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < lo || v > hi) {
        env->api->set_error(env->self, "option %s: '%s' is not a number from %llu to %llu", key,
                            text, lo, hi);
        return -MIDGE_EINVAL;
    }
    *out = v;
    return 0;
}

/* Reads every option into p. 0 or -MIDGE_EINVAL after set_error(). [main thread: init] */
static int
parse_options(struct psq *p)
{
    const struct psq_env *env = &p->env;
    const char *db = env->api->option(env->self, "db");
    const char *dur = env->api->option(env->self, "durability");
    unsigned long long v;

    if (db == NULL || db[0] == '\0') {
        env->api->set_error(env->self, "option db is required: plugin_opt_db PATH (the SQLite "
                            "file; its directory must be writable)");
        return -MIDGE_EINVAL;
    }
    p->path = strdup(db);
    if (p->path == NULL) {
        env->api->set_error(env->self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    p->wopts.durability = PSQ_DURABILITY_FULL;
    if (dur != NULL) {
        if (strcmp(dur, "full") == 0) {
            p->wopts.durability = PSQ_DURABILITY_FULL;
        } else if (strcmp(dur, "batch") == 0) {
            p->wopts.durability = PSQ_DURABILITY_BATCH;
        } else if (strcmp(dur, "none") == 0) {
            p->wopts.durability = PSQ_DURABILITY_NONE;
        } else {
            env->api->set_error(env->self, "option durability: '%s' is not full, batch or none",
                                dur);
            return -MIDGE_EINVAL;
        }
    }
    v = DEFAULT_BATCH_MS;
    if (parse_uint(env, "batch_ms", env->api->option(env->self, "batch_ms"), 1, MAX_BATCH_MS,
                   &v) != 0) {
        return -MIDGE_EINVAL;
    }
    p->wopts.batch_ms = (unsigned)v;
    v = DEFAULT_MAX_PENDING;
    if (parse_uint(env, "max_pending", env->api->option(env->self, "max_pending"),
                   MIN_MAX_PENDING, 1000000000ULL, &v) != 0) {
        return -MIDGE_EINVAL;
    }
    p->max_pending = (size_t)v;
    v = 0;
    if (parse_uint(env, "max_size_mb", env->api->option(env->self, "max_size_mb"), 0,
                   16ULL * 1024 * 1024, &v) != 0) {
        return -MIDGE_EINVAL;
    }
    p->max_size_mb = (int64_t)v;
    return 0;
}

/* max_size_mb in database pages (0: no limit). */
static int64_t
size_pages(struct psq *p)
{
    int page = 4096;
    sqlite3_stmt *st = NULL;

    if (p->max_size_mb == 0) {
        return 0;
    }
    pthread_mutex_lock(&p->db_lock);
    if (sqlite3_prepare_v2(p->db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        page = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&p->db_lock);
    return p->max_size_mb * 1024 * 1024 / (page > 0 ? page : 4096);
}

/* The persist hook: copy and queue, nothing else (we run under the broker's lock). [any worker] */
static void
psq_persist(void *state, const struct midge_persist_event *ev)
{
    struct psq *p = state;

    (void)psq_queue_push(p->q, ev); /* refused past the bound: the writer reports it */
}

/* The restore hook. [main thread, before any listener] */
static int
psq_restore_hook(void *state)
{
    struct psq *p = state;
    struct psq_restore_stats st;
    int64_t t0 = psq_mono_ns();
    int rc;

    pthread_mutex_lock(&p->db_lock);
    rc = psq_restore(&p->env, p->db, p->store, p->path, &st);
    pthread_mutex_unlock(&p->db_lock);
    if (rc == 0) {
        PSQ_LOG(&p->env, MIDGE_LOG_NOTICE,
                "restored db=%s sessions=%llu subscriptions=%llu retained=%llu messages=%llu "
                "payloads=%llu qos2_in=%llu wills=%llu expired=%llu refused=%llu seconds=%.3f",
                p->path, (unsigned long long)st.sessions, (unsigned long long)st.subscriptions,
                (unsigned long long)st.retained, (unsigned long long)st.messages,
                (unsigned long long)st.payloads, (unsigned long long)st.qos2_in,
                (unsigned long long)st.wills, (unsigned long long)st.expired,
                (unsigned long long)st.refused, (double)(psq_mono_ns() - t0) / 1e9);
    }
    return rc;
}

/* SIGHUP: max_size_mb applies at once; the other options need a restart. [main thread] */
static int
psq_reload(void *state)
{
    struct psq *p = state;
    const struct psq_env *env = &p->env;
    unsigned long long v = 0;

    if (parse_uint(env, "max_size_mb", env->api->option(env->self, "max_size_mb"), 0,
                   16ULL * 1024 * 1024, &v) != 0) {
        return -MIDGE_EINVAL;
    }
    /* The other options are read once; a changed db is the one worth a warning. */
    if (env->api->option(env->self, "db") == NULL ||
        strcmp(env->api->option(env->self, "db"), p->path) != 0) {
        PSQ_LOG(env, MIDGE_LOG_WARNING, "option db changed: it applies after a restart "
                "(still writing %s)", p->path);
    }
    if ((int64_t)v != p->max_size_mb) {
        p->max_size_mb = (int64_t)v;
        psq_writer_set_max_pages(p->writer, size_pages(p));
        PSQ_LOG(env, MIDGE_LOG_NOTICE, "max_size_mb=%lld", (long long)p->max_size_mb);
    }
    return 0;
}

/*
 * A worker stops: the broker is shutting down and frees its workers before
 * our cleanup, so durability reports must stop now. [that worker thread]
 */
static void
psq_thread_stop(void *state, unsigned worker)
{
    struct psq *p = state;

    (void)worker;
    psq_writer_quiet(p->writer);
}

static const struct midge_hooks psq_hooks = {
    .size = sizeof(struct midge_hooks),
    .reload = psq_reload,
    .thread_stop = psq_thread_stop,
    .persist = psq_persist,
    .restore = psq_restore_hook,
};

static void
psq_free(struct psq *p)
{
    struct psq_writer_stats ws;

    if (p == NULL) {
        return;
    }
    if (p->writer != NULL) {
        uint64_t young;
        uint64_t moved;
        int rc;

        psq_writer_stop(p->writer, &ws); /* writes what is still queued */
        p->writer = NULL;
        /* A cleanly closed file has every delivery in the deliveries table. */
        psq_store_young_counts(p->store, &young, &moved);
        rc = psq_store_drain_young(p->store);
        if (rc != SQLITE_OK) {
            PSQ_LOG(&p->env, MIDGE_LOG_WARNING,
                    "young deliveries not moved at shutdown (%s): the next start moves them",
                    sqlite3_errstr(rc));
        }
        PSQ_LOG(&p->env, MIDGE_LOG_NOTICE,
                "closed db=%s commits=%llu events=%llu coalesced=%llu skipped=%llu "
                "failures=%llu avg_batch=%.1f max_batch=%llu avg_commit_ms=%.3f max_commit_ms=%.3f "
                "young=%llu young_moved=%llu",
                p->path, (unsigned long long)ws.commits, (unsigned long long)ws.events,
                (unsigned long long)ws.coalesced, (unsigned long long)ws.skipped, (unsigned long long)ws.failures,
                ws.commits > 0 ? (double)ws.events / (double)ws.commits : 0.0,
                (unsigned long long)ws.max_batch,
                ws.commits > 0 ? (double)ws.commit_ns / (double)ws.commits / 1e6 : 0.0,
                (double)ws.max_commit_ns / 1e6, (unsigned long long)young,
                (unsigned long long)moved);
    }
    psq_checkpointer_stop(p->checkpointer); /* before the final checkpoint: only one at a time */
    p->checkpointer = NULL;
    psq_store_free(p->store);
    if (p->db != NULL) {
        /* Clean shutdown: fold the WAL into the database so the next start reads one file. */
        if (sqlite3_wal_checkpoint_v2(p->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) !=
            SQLITE_OK) {
            PSQ_LOG(&p->env, MIDGE_LOG_WARNING, "checkpoint at shutdown failed: %s",
                    sqlite3_errmsg(p->db));
        }
        sqlite3_close_v2(p->db);
    }
    if (p->lock_fd >= 0) {
        close(p->lock_fd);
    }
    psq_queue_free(p->q);
    pthread_mutex_destroy(&p->db_lock);
    free(p->path);
    free(p);
}

/* Creates the instance's metrics when the broker has them. [main thread: init] */
static void
metrics_new(struct psq *p)
{
    const struct midge_api *api = p->env.api;

    if (!MIDGE_API_HAS(api, metric_new) || !MIDGE_API_HAS(api, metric_observe) ||
        !MIDGE_API_HAS(api, metric_set) || !MIDGE_API_HAS(api, metric_add)) {
        return;
    }
    p->metrics.commit_seconds = api->metric_new(p->env.self, "commit_seconds",
                                                MIDGE_METRIC_HISTOGRAM,
                                                "time of each COMMIT (the fsync with durability full)");
    p->metrics.batch_events = api->metric_new(p->env.self, "batch_events", MIDGE_METRIC_HISTOGRAM,
                                              "events per transaction (group commit)");
    p->metrics.pending = api->metric_new(p->env.self, "pending_events", MIDGE_METRIC_GAUGE,
                                         "events queued or being written");
    p->metrics.failures = api->metric_new(p->env.self, "write_failures", MIDGE_METRIC_COUNTER,
                                          "transactions that failed (disk full, I/O error)");
}

/* Every API function the plugin calls beyond ABI 1.0's first entries. */
static int
api_complete(const struct midge_api *api)
{
    return MIDGE_API_HAS(api, message_ref) && MIDGE_API_HAS(api, message_unref) &&
           MIDGE_API_HAS(api, message_topic) && MIDGE_API_HAS(api, message_payload) &&
           MIDGE_API_HAS(api, message_qos) && MIDGE_API_HAS(api, message_retain) &&
           MIDGE_API_HAS(api, message_id) && MIDGE_API_HAS(api, message_properties) &&
           MIDGE_API_HAS(api, message_expiry) && MIDGE_API_HAS(api, message_new) &&
           MIDGE_API_HAS(api, persist_durable) && MIDGE_API_HAS(api, persist_failing) &&
           MIDGE_API_HAS(api, restore_session) && MIDGE_API_HAS(api, restore_subscription) &&
           MIDGE_API_HAS(api, restore_retained) && MIDGE_API_HAS(api, restore_message) &&
           MIDGE_API_HAS(api, restore_qos2_in) && MIDGE_API_HAS(api, restore_will);
}

MIDGE_EXPORT int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct psq *p = NULL;
    const char *err = NULL;
    int rc = -MIDGE_ENOTSUP;

    if (!api_complete(api)) {
        api->set_error(self, "this broker has no persistence API (ABI %u.%u): persist-sqlite "
                       "needs the persist and restore hooks of midge ABI 1.0 with persistence",
                       (unsigned)api->abi_major, (unsigned)api->abi_minor);
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        api->set_error(self, "out of memory");
        goto out;
    }
    p->env.self = self;
    p->env.api = api;
    p->lock_fd = -1;
    pthread_mutex_init(&p->db_lock, NULL);
    rc = parse_options(p);
    if (rc != 0) {
        goto out;
    }
    /*
     * SQLite's memory statistics take a global mutex on every allocation
     * (~5% of the writer under load); nothing reads them. Process-wide and
     * only possible before SQLite initialises: otherwise refused, harmlessly.
     */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    rc = psq_schema_open(&p->env, p->path, p->wopts.durability, &p->db, &p->lock_fd);
    if (rc != 0) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    p->store = psq_store_new(&p->env, p->db, &err);
    if (p->store == NULL) {
        api->set_error(self, "database %s: %s", p->path, err != NULL ? err : "out of memory");
        goto out;
    }
    p->q = psq_queue_new(&p->env, p->max_pending);
    if (p->q == NULL) {
        api->set_error(self, "out of memory");
        goto out;
    }
    metrics_new(p);
    /* Before the writer thread uses the connection: it sets the connection's WAL hook. */
    p->checkpointer = psq_checkpointer_start(&p->env, p->path, p->wopts.durability, p->db);
    p->writer = psq_writer_start(&p->env, p->db, p->store, p->q, &p->db_lock, &p->wopts,
                                 &p->metrics);
    if (p->writer == NULL) {
        api->set_error(self, "cannot start the writer thread");
        goto out;
    }
    psq_writer_set_max_pages(p->writer, size_pages(p));
    rc = api->hooks_set(self, &psq_hooks);
    if (rc != 0) {
        api->set_error(self, "the broker refused the hook table (%d)", rc);
        goto out;
    }
    {
        static const char *const names[] = {"full", "batch", "none"};

        PSQ_LOG(&p->env, MIDGE_LOG_NOTICE, "ready db=%s durability=%s batch_ms=%u schema=%d",
                p->path, names[p->wopts.durability], p->wopts.batch_ms, PSQ_SCHEMA_VERSION);
    }
    *state = p;
    p = NULL;
    rc = 0;
out:
    psq_free(p);
    return rc;
}

MIDGE_EXPORT void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    psq_free(state); /* drains the queue, commits, checkpoints the WAL, closes */
}
