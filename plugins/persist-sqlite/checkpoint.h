/*
 * WAL checkpoints on their own thread and connection, so that copying the
 * WAL back into the database (and its fsync) is not part of any commit the
 * broker's acknowledgements wait for.
 */
#ifndef PSQ_CHECKPOINT_H
#define PSQ_CHECKPOINT_H

#include <sqlite3.h>

#include "psq.h"

/*
 * WAL frames after which the checkpointer runs: 64 MiB of 4 KiB pages,
 * sixteen times SQLite's autocheckpoint default (the WAL file keeps that
 * size on disk once it reached it). Under QoS 1 load every commit rewrites
 * the same few pages (the right edges of the tables and the queue index),
 * and a checkpoint copies each page once however many frames hold it: at
 * 1000 frames the checkpointer took 0.2 us of CPU per delivered message, at
 * 4000 a quarter of that, at 16000 a quarter again, and its database fsyncs
 * no longer slow the commits' (issue 7, docs/benchmarks.md).
 */
#define PSQ_CHECKPOINT_FRAMES 16000
/*
 * WAL frames after which the writer checkpoints itself, as SQLite would:
 * a checkpointer that never catches up (or cannot start) must not let the
 * WAL grow without bound.
 */
#define PSQ_CHECKPOINT_FRAMES_MAX 64000

/* The checkpointer. Owned by the instance: psq_checkpointer_stop() joins and frees it. */
struct psq_checkpointer;

/*
 * Opens a second connection to `path` with the durability's synchronous
 * setting (a checkpoint fsyncs as the writer's commits do) and starts the
 * thread, then takes over the writer connection's WAL hook: SQLite's
 * autocheckpoint is off on `writer_db` from now on. `writer_db` is borrowed
 * until psq_checkpointer_stop(). NULL when either fails (the writer
 * connection then keeps SQLite's autocheckpoint; logged). [main thread: init]
 */
struct psq_checkpointer *psq_checkpointer_start(const struct psq_env *env, const char *path,
                                                int durability, sqlite3 *writer_db);

/*
 * Gives the writer connection its autocheckpoint back, stops and joins the
 * thread, closes its connection, frees it. NULL is ignored. [main thread]
 */
void psq_checkpointer_stop(struct psq_checkpointer *c);

#endif
