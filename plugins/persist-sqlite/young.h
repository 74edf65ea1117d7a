/*
 * The young-delivery log: deliveries that carry their own message, written
 * a batch at a time into one row of the `young` table instead of one
 * deliveries row each, and moved into the deliveries table only if they
 * outlive YOUNG_BATCHES batches (young.c says why and how).
 */
#ifndef PSQ_YOUNG_H
#define PSQ_YOUNG_H

#include <sqlite3.h>
#include <stdint.h>

/* A delivery and its message, as the deliveries table has them. */
struct psq_young_dlv {
    uint64_t delivery_id;
    int64_t sess_key;
    uint64_t msg_id;
    int64_t seq;        /* queue order */
    int qos;            /* of the delivery */
    int retain;
    int state;          /* enum midge_delivery_state */
    int packet_id;
    const char *topic;  /* not NUL-terminated: topic_len bytes */
    uint32_t topic_len;
    const void *payload;
    uint32_t payload_len;
    int msg_qos;
    int msg_retain;
    const void *props;  /* NULL: none */
    uint32_t props_len;
    int64_t expire_at;  /* wall-clock seconds, 0: never */
};

/*
 * Writes one delivery (pointers valid for the call only) into the
 * deliveries table, inside the caller's transaction. SQLite result code.
 */
typedef int (*psq_young_move_fn)(void *arg, const struct psq_young_dlv *d);

/* Owned by the store; psq_young_free(). [writer thread; start-up before it] */
struct psq_young;

/* Prepares its statements over db (the young table must exist). NULL on failure. */
struct psq_young *psq_young_new(sqlite3 *db);
void psq_young_free(struct psq_young *y);

/* 1 when a delivery with a message of these sizes goes to the log (small ones do). */
int psq_young_fits(uint32_t topic_len, uint32_t payload_len, uint32_t props_len);

/*
 * Adds a delivery to the current batch. 0; 1 when delivery_id is in the
 * log already (an event seen twice: nothing changes); -1 out of memory
 * (then the caller writes a deliveries row instead).
 */
int psq_young_add(struct psq_young *y, const struct psq_young_dlv *d);

/* 1 when delivery_id is young: its state is recorded in the log. 0: not young. -1: no memory. */
int psq_young_set_state(struct psq_young *y, uint64_t delivery_id, int state, int packet_id);

/* 1 (and *msg_id) when delivery_id was young: it is finished in the log. 0: not young. -1: no memory. */
int psq_young_done(struct psq_young *y, uint64_t delivery_id, uint64_t *msg_id);

/*
 * When delivery_id is young, moves it through `move` now (with its current
 * state) and finishes it in the log. SQLite result code (SQLITE_OK also
 * when it is not young).
 */
int psq_young_remove(struct psq_young *y, uint64_t delivery_id, psq_young_move_fn move,
                     void *arg);

/* Finishes every young delivery of session sess_key. 0, or -1 out of memory. */
int psq_young_end_session(struct psq_young *y, int64_t sess_key);

/*
 * The end of a batch, inside its transaction: writes the batch's row, then
 * moves the live deliveries of the batches that are too old through `move`
 * and deletes their rows. SQLite result code.
 */
int psq_young_batch_end(struct psq_young *y, psq_young_move_fn move, void *arg);

/*
 * The transaction rolled back: what is in memory may not be what the
 * database has. psq_young_sync() reads it back before the next batch.
 */
void psq_young_stale(struct psq_young *y);

/* Reloads the log from the database if psq_young_stale() was called. SQLite result code. */
int psq_young_sync(struct psq_young *y);

/*
 * Moves every live delivery of the log through `move` and empties the
 * young table, inside the caller's transaction: what start-up does before
 * restore reads the deliveries table. SQLite result code.
 */
int psq_young_drain(struct psq_young *y, psq_young_move_fn move, void *arg);

/* Deliveries added to the log and moved out of it to the table, since start. */
void psq_young_counts(const struct psq_young *y, uint64_t *added, uint64_t *moved);

#endif
