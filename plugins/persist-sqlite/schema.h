/*
 * Opening the database: every check that decides whether a file may be
 * used, before anything is written to it, then WAL mode, the schema and
 * its migrations.
 */
#ifndef PSQ_SCHEMA_H
#define PSQ_SCHEMA_H

#include <sqlite3.h>

#include "psq.h"

/* The schema version this plugin writes (schema_version table). */
#define PSQ_SCHEMA_VERSION 4

/* PRAGMA application_id of a midge database: "MDGE". */
#define PSQ_APPLICATION_ID 0x4d444745

/*
 * Opens (or creates) the midge database at `path` for writing with the
 * durability's synchronous setting, refusing, without modifying the file:
 * a file that is not an SQLite database, an SQLite database of another
 * application, a midge database with tables missing, one of a newer schema
 * version, one that fails PRAGMA quick_check, a read-only file or
 * directory, a database another process holds. An older schema is migrated.
 * A missing file is created (and its directory, one level, when the parent
 * exists). On success *db is the connection (sqlite3_close_v2 frees it) and
 * *lock_fd an open descriptor holding flock(LOCK_EX) on the file, to close
 * after the connection. On failure returns a negative error after
 * api->set_error(). [main thread: init]
 */
int psq_schema_open(const struct psq_env *env, const char *path, int durability, sqlite3 **db,
                    int *lock_fd);

/* Runs `sql` (no rows expected). Returns the SQLite result code. */
int psq_exec(sqlite3 *db, const char *sql);

/*
 * Runs a prepared statement with no result rows and resets it: SQLITE_OK
 * or the error. The bindings are not cleared (that was 2 % of the writer's
 * time): every caller binds every parameter each time, NULLs included.
 */
int psq_run(sqlite3_stmt *st);

/*
 * Runs a query returning one integer (`arg`, when not NULL, bound to ?1).
 * SQLITE_OK with *out, or the error (SQLITE_DONE: no row).
 */
int psq_query_int(sqlite3 *db, const char *sql, const char *arg, long long *out);

#endif
