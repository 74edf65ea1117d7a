/*
 * The checkpointer. SQLite's autocheckpoint runs inside the COMMIT that
 * takes the WAL past 1000 frames: that commit writes the frames back into
 * the database and fsyncs it before it returns, and every acknowledgement
 * waiting on the batch waits for that too. Here the writer connection's
 * WAL hook only signals this thread, which runs a PASSIVE checkpoint on its
 * own connection (it never blocks the writer; frames committed meanwhile
 * wait for the next one). The writer checkpoints itself only past
 * PSQ_CHECKPOINT_FRAMES_MAX.
 *
 * Durability is unchanged: a commit is durable once its WAL frames are
 * fsynced (synchronous=FULL); a checkpoint copies committed frames and
 * fsyncs the database before the WAL can be reused, on whichever
 * connection runs it.
 */
#include <pthread.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "schema.h"

/* Owns the thread and its connection; the writer connection is borrowed. */
struct psq_checkpointer {
    struct psq_env env;
    sqlite3 *db;             /* this thread's connection */
    sqlite3 *writer_db;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int frames;              /* WAL frames at the last commit. Protected by lock. */
    int stopping;            /* Protected by lock. */
    int warned;              /* a checkpoint failed (logged once). Checkpointer thread only. */
};

/*
 * The writer connection's WAL hook, after each commit. [writer thread, or
 * the restore hook's]
 */
static int
wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct psq_checkpointer *c = arg;

    (void)name;
    if (frames >= PSQ_CHECKPOINT_FRAMES_MAX) {
        /* Far behind: do it here, as SQLite's autocheckpoint would (BUSY if the thread is at it). */
        (void)sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (frames >= PSQ_CHECKPOINT_FRAMES) {
        pthread_mutex_lock(&c->lock);
        c->frames = frames;
        pthread_mutex_unlock(&c->lock);
        pthread_cond_signal(&c->cond);
    }
    return SQLITE_OK;
}

static void *
checkpointer_main(void *arg)
{
    struct psq_checkpointer *c = arg;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        int rc;

        while (!c->stopping && c->frames < PSQ_CHECKPOINT_FRAMES) {
            pthread_cond_wait(&c->cond, &c->lock);
        }
        if (c->stopping) {
            break;
        }
        c->frames = 0;
        pthread_mutex_unlock(&c->lock);
        rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && !c->warned) {
            /* The writer's commits still succeed; past the maximum it checkpoints itself. */
            c->warned = 1;
            PSQ_LOG(&c->env, MIDGE_LOG_WARNING, "background checkpoint failed: %s",
                    sqlite3_errmsg(c->db));
        }
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

struct psq_checkpointer *
psq_checkpointer_start(const struct psq_env *env, const char *path, int durability,
                       sqlite3 *writer_db)
{
    static const char *const sync_pragma[] = {
        [PSQ_DURABILITY_FULL] = "PRAGMA synchronous = FULL",
        [PSQ_DURABILITY_BATCH] = "PRAGMA synchronous = NORMAL",
        [PSQ_DURABILITY_NONE] = "PRAGMA synchronous = OFF",
    };
    struct psq_checkpointer *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        goto fail;
    }
    c->env = *env;
    c->writer_db = writer_db;
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        psq_exec(c->db, sync_pragma[durability]) != SQLITE_OK) {
        PSQ_LOG(env, MIDGE_LOG_WARNING, "no background checkpoints (%s): the writer checkpoints "
                "in its commits", c->db != NULL ? sqlite3_errmsg(c->db) : "out of memory");
        goto fail;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (pthread_create(&c->thread, NULL, checkpointer_main, c) != 0) {
        PSQ_LOG(env, MIDGE_LOG_WARNING, "no background checkpoints (no thread): the writer "
                "checkpoints in its commits");
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        goto fail;
    }
    sqlite3_wal_hook(writer_db, wal_hook, c);
    return c;
fail:
    if (c != NULL) {
        sqlite3_close_v2(c->db);
        free(c);
    }
    return NULL;
}

void
psq_checkpointer_stop(struct psq_checkpointer *c)
{
    if (c == NULL) {
        return;
    }
    sqlite3_wal_autocheckpoint(c->writer_db, PSQ_CHECKPOINT_FRAMES); /* replaces our hook */
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_mutex_unlock(&c->lock);
    pthread_cond_signal(&c->cond);
    pthread_join(c->thread, NULL);
    sqlite3_close_v2(c->db);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
