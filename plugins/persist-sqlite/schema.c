/*
 * The database file: checks, schema, migrations.
 *
 * The rule that shapes this file: a file that is not ours is never
 * modified. So every check is a read (the first 16 bytes, then read-only
 * queries) and only after all of them passed does anything write: WAL
 * mode (which rewrites two header bytes), the schema, the migrations.
 *
 * Schema history (each migration runs in one transaction and records its
 * version in schema_version; a database whose highest version is above
 * PSQ_SCHEMA_VERSION came from a newer midge and is refused):
 *   1  sessions, subscriptions, messages (payloads, reference-counted),
 *      deliveries (queue order = seq), retained, qos2_in, wills.
 *   2  sessions get an integer key (sess_key) and deliveries name their
 *      session by it, indexed (sess_key, seq) instead of (client_id, seq);
 *      a delivery may carry its message's columns itself (topic NOT NULL),
 *      so that a message with one delivery is one row. Existing rows keep
 *      using the messages table (their message columns are NULL).
 *   3  the queue index covers only rows with `indexed` = 1: a delivery sent
 *      at once to an online subscriber is written without an index entry
 *      (most are finished within a few batches, and the index entry was a
 *      third of the writer's work for them); store.c indexed those that
 *      stayed. Existing rows are indexed.
 *   4  the young table (young.c): a batch's small deliveries, their state
 *      changes and ends, one row per batch; the deliveries that outlive a
 *      few batches move to the deliveries table. It replaces version 3's
 *      late indexing, so `indexed` goes and the index covers every row
 *      again.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "schema.h"

static const char *const migration_1 =
    "CREATE TABLE sessions("
    "  client_id TEXT PRIMARY KEY NOT NULL,"
    "  expiry INTEGER NOT NULL,"          /* Session Expiry Interval, 4294967295: never */
    "  protocol INTEGER NOT NULL,"
    "  connected INTEGER NOT NULL,"
    "  disconnected_at INTEGER"           /* wall-clock seconds; NULL while connected */
    ") WITHOUT ROWID;"
    "CREATE TABLE subscriptions("
    "  client_id TEXT NOT NULL,"
    "  filter TEXT NOT NULL,"
    "  options INTEGER NOT NULL,"
    "  sub_id INTEGER NOT NULL,"
    "  PRIMARY KEY(client_id, filter)"
    ") WITHOUT ROWID;"
    /* One row per message id however many deliveries, retained and will rows use it. */
    "CREATE TABLE messages("
    "  msg_id INTEGER PRIMARY KEY,"
    "  topic TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  qos INTEGER NOT NULL,"
    "  retain INTEGER NOT NULL,"
    "  props BLOB,"
    "  expire_at INTEGER NOT NULL,"       /* wall-clock seconds, 0: never */
    "  refs INTEGER NOT NULL"             /* deliveries + retained + wills rows naming it */
    ");"
    "CREATE TABLE deliveries("
    "  delivery_id INTEGER PRIMARY KEY,"
    "  client_id TEXT NOT NULL,"
    "  msg_id INTEGER NOT NULL,"
    "  qos INTEGER NOT NULL,"
    "  retain INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"           /* enum midge_delivery_state */
    "  packet_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL"              /* queue order: seq of MSG_QUEUED + the order base */
    ");"
    "CREATE INDEX deliveries_queue ON deliveries(client_id, seq);"
    "CREATE TABLE retained("
    "  topic TEXT PRIMARY KEY NOT NULL,"
    "  msg_id INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE qos2_in("
    "  client_id TEXT NOT NULL,"
    "  packet_id INTEGER NOT NULL,"
    "  PRIMARY KEY(client_id, packet_id)"
    ") WITHOUT ROWID;"
    "CREATE TABLE wills("
    "  client_id TEXT PRIMARY KEY NOT NULL,"
    "  msg_id INTEGER NOT NULL,"
    "  delay INTEGER NOT NULL"
    ") WITHOUT ROWID;";

/*
 * Version 2. The writer's hot path is one delivery row per QoS 1/2 message
 * to one persistent subscriber: the message's columns move into that row
 * (no messages row to insert and delete), and the queue index is on an
 * integer instead of the client id text (issue 7: together about a third of
 * the writer's CPU per event). Rows are copied, not rewritten in place: the
 * old tables go only after every row is in the new ones, in the same
 * transaction. A delivery whose client has no session row was never
 * restored (restore joins sessions) nor deletable; it has no key to carry
 * and is not copied.
 */
static const char *const migration_2 =
    "CREATE TABLE sessions_v2("
    "  sess_key INTEGER PRIMARY KEY,"     /* what deliveries name the session by */
    "  client_id TEXT NOT NULL UNIQUE,"
    "  expiry INTEGER NOT NULL,"
    "  protocol INTEGER NOT NULL,"
    "  connected INTEGER NOT NULL,"
    "  disconnected_at INTEGER"
    ");"
    "INSERT INTO sessions_v2(client_id, expiry, protocol, connected, disconnected_at) "
    "  SELECT client_id, expiry, protocol, connected, disconnected_at FROM sessions "
    "  ORDER BY client_id;"
    "CREATE TABLE deliveries_v2("
    "  delivery_id INTEGER PRIMARY KEY,"
    "  sess_key INTEGER NOT NULL,"
    "  msg_id INTEGER NOT NULL,"
    "  qos INTEGER NOT NULL,"
    "  retain INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  packet_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    /* The message itself when this is its only row (topic NOT NULL); else in messages. */
    "  topic TEXT,"
    "  payload BLOB,"
    "  msg_qos INTEGER,"
    "  msg_retain INTEGER,"
    "  props BLOB,"
    "  expire_at INTEGER"
    ");"
    "INSERT INTO deliveries_v2(delivery_id, sess_key, msg_id, qos, retain, state, packet_id, "
    "  seq) SELECT d.delivery_id, s.sess_key, d.msg_id, d.qos, d.retain, d.state, d.packet_id, "
    "  d.seq FROM deliveries d JOIN sessions_v2 s ON s.client_id = d.client_id;"
    "DROP TABLE deliveries;"
    "DROP TABLE sessions;"
    "ALTER TABLE sessions_v2 RENAME TO sessions;"
    "ALTER TABLE deliveries_v2 RENAME TO deliveries;"
    "CREATE INDEX deliveries_queue ON deliveries(sess_key, seq);";

/* Version 3 (undone by 4). `indexed` 0: the row was not in the queue index yet. */
static const char *const migration_3 =
    "ALTER TABLE deliveries ADD COLUMN indexed INTEGER NOT NULL DEFAULT 1;"
    "DROP INDEX deliveries_queue;"
    "CREATE INDEX deliveries_queue ON deliveries(sess_key, seq) WHERE indexed = 1;";

/* Version 4. Rows a version 3 database left unindexed are in the full index again. */
static const char *const migration_4 =
    "CREATE TABLE young("
    "  batch INTEGER PRIMARY KEY,"
    "  entries BLOB NOT NULL,"           /* deliveries with their messages (young.c) */
    "  updates BLOB NOT NULL"            /* state changes and ends of young deliveries */
    ");"
    "DROP INDEX deliveries_queue;"
    "ALTER TABLE deliveries DROP COLUMN indexed;"
    "CREATE INDEX deliveries_queue ON deliveries(sess_key, seq);";

/* migrations[v - 1] brings a database from version v - 1 to v. */
static const char *const migrations[PSQ_SCHEMA_VERSION] = {migration_1, migration_2,
                                                           migration_3, migration_4};

/* Tables a database of the current version must have. */
static const char *const required_tables[] = {
    "schema_version", "sessions", "subscriptions", "messages",
    "deliveries", "retained", "qos2_in", "wills", "young", NULL,
};

int
psq_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

int
psq_run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Runs a query returning one integer; see schema.h. */
int
psq_query_int(sqlite3 *db, const char *sql, const char *arg, long long *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (rc != SQLITE_OK) {
        goto out;
    }
    if (arg != NULL) {
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

/*
 * Looks at the file before SQLite does: a regular file, and when not empty,
 * the SQLite header. Sets *exists. 0, or -MIDGE_EINVAL after set_error().
 */
static int
check_file(const struct psq_env *env, const char *path, int *exists)
{
    struct stat sb;
    char head[16];
    int fd = -1;
    ssize_t got;
    int rc = -MIDGE_EINVAL;

    *exists = 0;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) {
            rc = 0;
        } else {
            env->api->set_error(env->self, "database %s: %s", path, strerror(errno));
        }
        goto out;
    }
    *exists = 1;
    if (!S_ISREG(sb.st_mode)) {
        env->api->set_error(env->self, "database %s is not a regular file", path);
        goto out;
    }
    if (sb.st_size == 0) {
        rc = 0; /* an empty file (e.g. touched by an admin) is an empty database */
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        env->api->set_error(env->self, "database %s cannot be read: %s", path, strerror(errno));
        goto out;
    }
    got = read(fd, head, sizeof(head));
    if (got != (ssize_t)sizeof(head) || memcmp(head, "SQLite format 3", 16) != 0) {
        env->api->set_error(env->self,
                            "database %s is not an SQLite database; it was not modified: move it "
                            "away or set plugin_opt_db to another file", path);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/*
 * The directory of `path` must exist (it is created when only its last
 * level is missing) and be writable: SQLite creates PATH-wal and PATH-shm
 * beside the database. 0, or -MIDGE_EINVAL after set_error().
 */
static int
check_dir(const struct psq_env *env, const char *path, int exists)
{
    char *copy = strdup(path);
    const char *dir;
    int rc = -MIDGE_EINVAL;

    if (copy == NULL) {
        env->api->set_error(env->self, "out of memory");
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    dir = dirname(copy);
    if (!exists && access(dir, F_OK) != 0) {
        if (mkdir(dir, 0700) != 0) {
            env->api->set_error(env->self, "cannot create directory %s for database %s: %s", dir,
                                path, strerror(errno));
            goto out;
        }
    }
    if (access(dir, W_OK) != 0) {
        env->api->set_error(env->self,
                            "directory %s is not writable (%s): the database %s needs its -wal "
                            "and -shm files beside it", dir, strerror(errno), path);
        goto out;
    }
    if (exists && access(path, W_OK) != 0) {
        env->api->set_error(env->self, "database %s is not writable: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(copy);
    return rc;
}

/*
 * Read-only checks of an opened database. *version gets the schema version
 * (0: a database with no tables at all, to be created). 0, or
 * -MIDGE_EINVAL after set_error().
 */
static int
check_content(const struct psq_env *env, sqlite3 *db, const char *path, long long *version)
{
    long long tables = 0;
    long long app = 0;
    long long n;
    char quick[128] = "";
    sqlite3_stmt *st = NULL;
    int i;
    int rc = SQLITE_OK;

    *version = 0;
    rc = psq_query_int(db, "SELECT count(*) FROM sqlite_schema", NULL, &tables);
    if (rc == SQLITE_OK) {
        rc = psq_query_int(db, "PRAGMA application_id", NULL, &app);
    }
    if (rc != SQLITE_OK) {
        env->api->set_error(env->self,
                            "database %s cannot be read (%s); it was not modified: move it away "
                            "or set plugin_opt_db to another file", path, sqlite3_errstr(rc));
        goto out;
    }
    if (tables == 0 && app == 0) {
        goto out; /* empty: a new database */
    }
    if (app != PSQ_APPLICATION_ID) {
        env->api->set_error(env->self,
                            "database %s is an SQLite database of another application "
                            "(application_id %lld, %lld schema objects), not a midge database; "
                            "it was not modified: set plugin_opt_db to another file",
                            path, app, tables);
        rc = SQLITE_ERROR;
        goto out;
    }
    n = 0;
    rc = psq_query_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                   "schema_version", &n);
    if (rc == SQLITE_OK && n == 1) {
        rc = psq_query_int(db, "SELECT coalesce(max(version), 0) FROM schema_version", NULL, version);
    }
    if ((rc & 0xff) == SQLITE_CORRUPT) {
        env->api->set_error(env->self,
                            "database %s is corrupted (%s); it was not modified: move it away to "
                            "start empty, or try `sqlite3 %s .recover`", path, sqlite3_errmsg(db),
                            path);
        goto out;
    }
    if (rc != SQLITE_OK || n != 1) {
        env->api->set_error(env->self,
                            "database %s is marked as a midge database but has no readable "
                            "schema_version table; it was not modified", path);
        rc = SQLITE_ERROR;
        goto out;
    }
    if (*version > PSQ_SCHEMA_VERSION) {
        env->api->set_error(env->self,
                            "database %s has schema version %lld, written by a newer midge; this "
                            "persist-sqlite reads versions up to %d. It was not modified: run the "
                            "newer midge, or set plugin_opt_db to another file",
                            path, *version, PSQ_SCHEMA_VERSION);
        rc = SQLITE_ERROR;
        goto out;
    }
    if (*version == PSQ_SCHEMA_VERSION) {
        for (i = 0; required_tables[i] != NULL; i++) {
            n = 0;
            if (psq_query_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                          required_tables[i], &n) != SQLITE_OK || n != 1) {
                env->api->set_error(env->self,
                                    "database %s (schema version %lld) has no table %s: it is "
                                    "damaged or not a midge database; it was not modified",
                                    path, *version, required_tables[i]);
                rc = SQLITE_ERROR;
                goto out;
            }
        }
    }
    /* Corruption found now costs a refusal; found later, a failing writer. */
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        snprintf(quick, sizeof(quick), "%s", (const char *)sqlite3_column_text(st, 0));
        rc = strcmp(quick, "ok") == 0 ? SQLITE_OK : SQLITE_CORRUPT;
    }
    if (rc != SQLITE_OK) {
        env->api->set_error(env->self,
                            "database %s is corrupted (%s); it was not modified: move it away to "
                            "start empty, or try `sqlite3 %s .recover`", path,
                            quick[0] != '\0' ? quick : sqlite3_errmsg(db), path);
        goto out;
    }
out:
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : -MIDGE_EINVAL;
}

/* Brings the schema from `version` to PSQ_SCHEMA_VERSION, one transaction per step. */
static int
migrate(const struct psq_env *env, sqlite3 *db, const char *path, long long version)
{
    char sql[160];
    long long v;
    int rc = SQLITE_OK;

    for (v = version + 1; v <= PSQ_SCHEMA_VERSION; v++) {
        rc = psq_exec(db, "BEGIN IMMEDIATE");
        if (rc == SQLITE_OK && v == 1) {
            snprintf(sql, sizeof(sql),
                     "PRAGMA application_id = %d;"
                     "CREATE TABLE schema_version(version INTEGER PRIMARY KEY, "
                     "applied_at INTEGER NOT NULL);", PSQ_APPLICATION_ID);
            rc = psq_exec(db, sql);
        }
        if (rc == SQLITE_OK) {
            rc = psq_exec(db, migrations[v - 1]);
        }
        if (rc == SQLITE_OK) {
            snprintf(sql, sizeof(sql), "INSERT INTO schema_version VALUES(%lld, %lld)", v,
                     (long long)psq_wall_now());
            rc = psq_exec(db, sql);
        }
        if (rc == SQLITE_OK) {
            rc = psq_exec(db, "COMMIT");
        }
        if (rc != SQLITE_OK) {
            if (version > 0) {
                env->api->set_error(env->self,
                                    "database %s: migration from schema version %lld to %lld "
                                    "failed: %s. Nothing was changed: the file is still at "
                                    "version %lld and this midge does not start on it; fix the "
                                    "cause (disk space, permissions) and start again",
                                    path, v - 1, v, sqlite3_errmsg(db), v - 1);
            } else {
                env->api->set_error(env->self, "database %s: schema version %lld: %s", path, v,
                                    sqlite3_errmsg(db));
            }
            if (!sqlite3_get_autocommit(db)) {
                psq_exec(db, "ROLLBACK");
            }
            goto out;
        }
        if (version > 0) {
            PSQ_LOG(env, MIDGE_LOG_NOTICE, "database %s migrated to schema version %lld", path, v);
        }
    }
out:
    return rc == SQLITE_OK ? 0 : -MIDGE_EINVAL;
}

/* Opens the database; see schema.h. */
int
psq_schema_open(const struct psq_env *env, const char *path, int durability, sqlite3 **db_out,
                int *lock_fd)
{
    static const char *const sync_pragma[] = {
        [PSQ_DURABILITY_FULL] = "PRAGMA synchronous = FULL",
        [PSQ_DURABILITY_BATCH] = "PRAGMA synchronous = NORMAL",
        [PSQ_DURABILITY_NONE] = "PRAGMA synchronous = OFF",
    };
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long version = 0;
    int exists = 0;
    int fd = -1;
    int rc;

    *db_out = NULL;
    *lock_fd = -1;
    rc = check_file(env, path, &exists);
    if (rc == 0) {
        rc = check_dir(env, path, exists);
    }
    if (rc != 0) {
        goto out;
    }
    rc = -MIDGE_EINVAL;
    /*
     * One broker per database: an advisory lock on the file itself. The
     * descriptor stays open until after sqlite3_close, because closing any
     * descriptor of the file would drop SQLite's own POSIX locks.
     */
    fd = open(path, exists ? O_RDONLY | O_CLOEXEC : O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        env->api->set_error(env->self, "database %s: %s", path, strerror(errno));
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        env->api->set_error(env->self, "database %s is in use by another process (%s)", path,
                            strerror(errno));
        goto out;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        env->api->set_error(env->self, "database %s cannot be opened: %s", path,
                            db != NULL ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    if (sqlite3_db_readonly(db, "main") == 1) {
        env->api->set_error(env->self, "database %s can only be opened read-only", path);
        goto out;
    }
    if (check_content(env, db, path, &version) != 0) {
        goto out;
    }
    /* Every check passed: from here on the file is ours to change. */
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        env->api->set_error(env->self, "database %s: cannot use WAL mode: %s", path,
                            sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (psq_exec(db, sync_pragma[durability]) != SQLITE_OK ||
        psq_exec(db, "PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY;"
                     "PRAGMA foreign_keys = OFF") != SQLITE_OK) {
        env->api->set_error(env->self, "database %s: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    if (migrate(env, db, path, version) != 0) {
        goto out;
    }
    *db_out = db;
    *lock_fd = fd;
    db = NULL;
    fd = -1;
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_close_v2(db);
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}
