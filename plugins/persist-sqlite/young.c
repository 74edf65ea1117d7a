/*
 * The young-delivery log.
 *
 * Why: with subscribers online, most deliveries are finished a few
 * milliseconds after they are queued, yet many outlive the batch that
 * queued them (coalesce.c folds only those finished within it). Each of
 * those cost a deliveries row insert and, a batch or two later, a delete:
 * two B-tree changes and two statements per message, the writer's main
 * work (issue 7). Here a batch's deliveries are appended to one blob, and
 * their later state changes and ends to another, written as one row of
 * the `young` table. A delivery still unfinished YOUNG_BATCHES batches
 * later is moved into the deliveries table (the move callback); the row is then
 * deleted. A finished delivery costs a few dozen bytes of blob.
 *
 * Why it is safe: a row's updates only name deliveries of that row or of
 * older rows (rows are written in order, and a delivery is in memory only
 * while its row exists); rows are deleted oldest first. So while a
 * delivery's row exists, every later update of it exists too, and the
 * committed rows replayed in order give each live delivery its state. The
 * store sends every change of a young delivery here (set_state, done,
 * end_session), so none goes to the deliveries table while it is young.
 * Start-up replays the rows and moves every live delivery into the
 * deliveries table before restore reads it; a rolled-back batch makes the
 * memory stale, and the next batch replays the committed rows first.
 *
 * Only deliveries that carry their own message (no messages row) come
 * here, and only small ones: a large payload would be written twice when
 * its delivery outlives the log.
 *
 * Blob formats: integers are unsigned LEB128 varints (the bytes written
 * are what the commit's fsync waits for, and most fields are small).
 *   entries, per delivery: delivery_id, sess_key, msg_id, seq, expire_at,
 *     topic_len, payload_len, props_len + 1 (0: no properties), packet_id,
 *     one byte qos | retain << 2 | msg_qos << 3 | msg_retain << 5 |
 *     state << 6, then topic, payload, props.
 *   updates, per change: delivery_id, one byte state (UPDATE_DONE:
 *     finished), packet_id.
 */
#include <stdlib.h>
#include <string.h>

#include "idmap.h"
#include "schema.h"
#include "young.h"

#define YOUNG_BATCHES 16              /* batches after which live deliveries move */
#define YOUNG_MAX_BYTES (16u << 20)   /* ... or fewer while the rows kept exceed this */
#define YOUNG_MAX_MESSAGE 4096        /* topic + payload + properties of a young delivery */
#define RING 64                       /* rows a replay can hold (more than YOUNG_BATCHES) */
#define MAX_HEADER 91                 /* 9 varints of up to 10 bytes, the flags byte */
#define MAX_UPDATE 14                 /* varints of up to 10 and 3 bytes, the state byte */
#define UPDATE_DONE 0xff

/* Growable bytes. Owns p. */
struct ybuf {
    uint8_t *p;
    size_t len;
    size_t cap;
};

/* A young delivery: what its changes need without decoding its record. */
struct young_entry {
    uint64_t delivery_id;
    uint64_t msg_id;
    int64_t sess_key;
    uint32_t off;        /* of its record in the batch's `rec` */
    uint16_t packet_id;  /* current */
    uint8_t state;       /* current */
    uint8_t done;
};

/* One row of the young table (or the batch being built). Owns its buffers. */
struct young_batch {
    int64_t no;              /* the row's key */
    struct ybuf rec;         /* the entries blob */
    struct ybuf upd;         /* the updates blob; emptied once the row is written */
    struct young_entry *e;
    size_t n;
    size_t cap;
    size_t bytes;            /* the row's size, counted against YOUNG_MAX_BYTES */
};

enum { Y_INSERT, Y_DELETE, Y_SELECT, Y_COUNT };

static const char *const y_sql[Y_COUNT] = {
    [Y_INSERT] = "INSERT INTO young(batch, entries, updates) VALUES(?1, ?2, ?3)",
    [Y_DELETE] = "DELETE FROM young WHERE batch = ?1",
    [Y_SELECT] = "SELECT batch, entries, updates FROM young ORDER BY batch",
};

/*
 * The log in memory: the rows not deleted yet and the batch being built.
 * Owned by the store; used by the writer thread, and at start and clean
 * shutdown (psq_store_drain_young) while no writer runs.
 */
struct psq_young {
    sqlite3_stmt *st[Y_COUNT];
    struct young_batch ring[RING];
    unsigned first;          /* oldest written row */
    unsigned count;          /* written rows in memory; the batch being built is at first + count */
    size_t bytes;            /* of the written rows in memory */
    int64_t last_no;         /* the last batch's number (its row's key if it had one) */
    struct psq_idmap map;    /* delivery_id -> ring slot << 32 | entry index */
    int stale;               /* memory may differ from the committed rows: reload first */
    uint64_t added;
    uint64_t moved;
};

/* Appends v as a varint at p; returns the byte after it. */
static uint8_t *
put_var(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Reads a varint at *off (< len); -1 when it runs past len or 64 bits. */
static int
get_var(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
    unsigned shift = 0;

    *v = 0;
    while (*off < len && shift < 64) {
        uint8_t b = p[(*off)++];

        *v |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            return 0;
        }
        shift += 7;
    }
    return -1;
}

/* Room for n more bytes; the new bytes start at the returned pointer. NULL: no memory. */
static uint8_t *
buf_grow(struct ybuf *b, size_t n)
{
    uint8_t *at;

    if (b->len + n > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 4096;
        uint8_t *p;

        while (cap < b->len + n) {
            cap *= 2;
        }
        p = realloc(b->p, cap);
        if (p == NULL) {
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    at = b->p + b->len;
    b->len += n;
    return at;
}

static unsigned
cur_slot(const struct psq_young *y)
{
    return (y->first + y->count) % RING;
}

/* delivery_id's entry (and, when batch is not NULL, its batch), or NULL when it is not young. */
static struct young_entry *
lookup(struct psq_young *y, uint64_t delivery_id, struct young_batch **batch)
{
    uint64_t v;

    if (!psq_idmap_get(&y->map, delivery_id, &v)) {
        return NULL;
    }
    if (batch != NULL) {
        *batch = &y->ring[v >> 32];
    }
    return &y->ring[v >> 32].e[(uint32_t)v];
}

static void
batch_reset(struct young_batch *b)
{
    b->no = 0;
    b->rec.len = 0;
    b->upd.len = 0;
    b->n = 0;
    b->bytes = 0;
}

struct psq_young *
psq_young_new(sqlite3 *db)
{
    struct psq_young *y = calloc(1, sizeof(*y));
    int i;

    if (y == NULL) {
        return NULL;
    }
    for (i = 0; i < Y_COUNT; i++) {
        if (sqlite3_prepare_v3(db, y_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &y->st[i], NULL) !=
            SQLITE_OK) {
            psq_young_free(y);
            return NULL;
        }
    }
    y->stale = 1; /* the first batch reads what the table has */
    return y;
}

void
psq_young_free(struct psq_young *y)
{
    int i;

    if (y == NULL) {
        return;
    }
    for (i = 0; i < Y_COUNT; i++) {
        sqlite3_finalize(y->st[i]);
    }
    for (i = 0; i < RING; i++) {
        free(y->ring[i].rec.p);
        free(y->ring[i].upd.p);
        free(y->ring[i].e);
    }
    psq_idmap_free(&y->map);
    free(y);
}

int
psq_young_fits(uint32_t topic_len, uint32_t payload_len, uint32_t props_len)
{
    return (uint64_t)topic_len + payload_len + props_len <= YOUNG_MAX_MESSAGE;
}

/* Appends an entry for the record at `off` of slot's batch and maps its id. -1: no memory. */
static int
add_entry(struct psq_young *y, unsigned slot, const struct psq_young_dlv *d, uint32_t off)
{
    struct young_batch *b = &y->ring[slot];
    struct young_entry *e;

    if (b->n == b->cap) {
        size_t cap = b->cap != 0 ? b->cap * 2 : 256;
        struct young_entry *bigger = realloc(b->e, cap * sizeof(*bigger));

        if (bigger == NULL) {
            return -1;
        }
        b->e = bigger;
        b->cap = cap;
    }
    if (psq_idmap_put(&y->map, d->delivery_id, (uint64_t)slot << 32 | b->n) != 0) {
        return -1;
    }
    e = &b->e[b->n++];
    e->delivery_id = d->delivery_id;
    e->msg_id = d->msg_id;
    e->sess_key = d->sess_key;
    e->off = off;
    e->packet_id = (uint16_t)d->packet_id;
    e->state = (uint8_t)d->state;
    e->done = 0;
    return 0;
}

int
psq_young_add(struct psq_young *y, const struct psq_young_dlv *d)
{
    struct young_batch *b = &y->ring[cur_slot(y)];
    size_t props_len = d->props != NULL ? d->props_len : 0;
    size_t old_len = b->rec.len;
    size_t most = MAX_HEADER + d->topic_len + d->payload_len + props_len;
    uint8_t *p;

    if (lookup(y, d->delivery_id, NULL) != NULL) {
        return 1;
    }
    if (old_len + most > UINT32_MAX || (p = buf_grow(&b->rec, most)) == NULL) {
        return -1;
    }
    p = put_var(p, d->delivery_id);
    p = put_var(p, (uint64_t)d->sess_key);
    p = put_var(p, d->msg_id);
    p = put_var(p, (uint64_t)d->seq);
    p = put_var(p, (uint64_t)d->expire_at);
    p = put_var(p, d->topic_len);
    p = put_var(p, d->payload_len);
    p = put_var(p, d->props != NULL ? (uint64_t)d->props_len + 1 : 0);
    p = put_var(p, (uint16_t)d->packet_id);
    *p++ = (uint8_t)((d->qos & 3) | (d->retain ? 4 : 0) | (d->msg_qos & 3) << 3 |
                     (d->msg_retain ? 0x20 : 0) | (d->state & 3) << 6);
    memcpy(p, d->topic, d->topic_len);
    if (d->payload_len > 0) {
        memcpy(p + d->topic_len, d->payload, d->payload_len);
    }
    if (props_len > 0) {
        memcpy(p + d->topic_len + d->payload_len, d->props, props_len);
    }
    b->rec.len = (size_t)(p + d->topic_len + d->payload_len + props_len - b->rec.p);
    if (add_entry(y, cur_slot(y), d, (uint32_t)old_len) != 0) {
        b->rec.len = old_len;
        return -1;
    }
    y->added++;
    return 0;
}

/* Records a change of e in the batch being built. -1: no memory. */
static int
record_update(struct psq_young *y, const struct young_entry *e, int state)
{
    struct ybuf *u = &y->ring[cur_slot(y)].upd;
    uint8_t *p = buf_grow(u, MAX_UPDATE);

    if (p == NULL) {
        return -1;
    }
    p = put_var(p, e->delivery_id);
    *p++ = (uint8_t)state;
    p = put_var(p, e->packet_id);
    u->len = (size_t)(p - u->p);
    return 0;
}

int
psq_young_set_state(struct psq_young *y, uint64_t delivery_id, int state, int packet_id)
{
    struct young_entry *e = lookup(y, delivery_id, NULL);

    if (e == NULL) {
        return 0;
    }
    e->state = (uint8_t)state;
    e->packet_id = (uint16_t)packet_id;
    return record_update(y, e, state) == 0 ? 1 : -1;
}

/* e is finished: no longer young (its record stays in its batch until the row goes). */
static void
retire(struct psq_young *y, struct young_entry *e)
{
    e->done = 1;
    psq_idmap_del(&y->map, e->delivery_id);
}

static int
finish(struct psq_young *y, struct young_entry *e)
{
    if (record_update(y, e, UPDATE_DONE) != 0) {
        return -1;
    }
    retire(y, e);
    return 0;
}

int
psq_young_done(struct psq_young *y, uint64_t delivery_id, uint64_t *msg_id)
{
    struct young_entry *e = lookup(y, delivery_id, NULL);

    if (e == NULL) {
        return 0;
    }
    *msg_id = e->msg_id;
    return finish(y, e) == 0 ? 1 : -1;
}

/* Decodes the record of e (bounds checked when the batch was read). */
static void decode(const struct young_batch *b, const struct young_entry *e,
                   struct psq_young_dlv *d);

int
psq_young_remove(struct psq_young *y, uint64_t delivery_id, psq_young_move_fn move, void *arg)
{
    struct young_batch *b;
    struct psq_young_dlv d;
    struct young_entry *e = lookup(y, delivery_id, &b);
    int rc;

    if (e == NULL) {
        return SQLITE_OK;
    }
    decode(b, e, &d);
    rc = move(arg, &d);
    if (rc == SQLITE_OK && finish(y, e) != 0) {
        rc = SQLITE_NOMEM;
    }
    y->moved += rc == SQLITE_OK;
    return rc;
}

int
psq_young_end_session(struct psq_young *y, int64_t sess_key)
{
    unsigned k;
    size_t i;

    for (k = 0; k <= y->count; k++) {
        struct young_batch *b = &y->ring[(y->first + k) % RING];

        for (i = 0; i < b->n; i++) {
            if (!b->e[i].done && b->e[i].sess_key == sess_key && finish(y, &b->e[i]) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/*
 * Parses the record at *off of an entries blob of len bytes into d (its
 * pointers into p) and moves *off past it. -1: not a whole record.
 */
static int
parse(const uint8_t *p, size_t len, size_t *off, struct psq_young_dlv *d)
{
    uint64_t v[9];
    size_t i;

    for (i = 0; i < 9; i++) {
        if (get_var(p, len, off, &v[i]) != 0) {
            return -1;
        }
    }
    if (*off >= len || v[0] == 0 || v[5] > len || v[6] > len || v[7] > len + 1 ||
        v[5] + v[6] + (v[7] > 0 ? v[7] - 1 : 0) > len - *off - 1) {
        return -1;
    }
    d->delivery_id = v[0];
    d->sess_key = (int64_t)v[1];
    d->msg_id = v[2];
    d->seq = (int64_t)v[3];
    d->expire_at = (int64_t)v[4];
    d->topic_len = (uint32_t)v[5];
    d->payload_len = (uint32_t)v[6];
    d->props_len = v[7] > 0 ? (uint32_t)(v[7] - 1) : 0;
    d->packet_id = (int)(uint16_t)v[8];
    d->qos = p[*off] & 3;
    d->retain = (p[*off] >> 2) & 1;
    d->msg_qos = (p[*off] >> 3) & 3;
    d->msg_retain = (p[*off] >> 5) & 1;
    d->state = p[*off] >> 6;
    (*off)++;
    d->topic = (const char *)p + *off;
    d->payload = p + *off + d->topic_len;
    d->props = v[7] > 0 ? p + *off + d->topic_len + d->payload_len : NULL;
    *off += d->topic_len + d->payload_len + d->props_len;
    return 0;
}

/* Decodes e's record (checked when it was read or written) with its current state. */
static void
decode(const struct young_batch *b, const struct young_entry *e, struct psq_young_dlv *d)
{
    size_t off = e->off;

    parse(b->rec.p, b->rec.len, &off, d);
    d->state = e->state;
    d->packet_id = e->packet_id;
}

/* Moves the oldest row's live deliveries through move and deletes the row. */
static int
move_oldest(struct psq_young *y, psq_young_move_fn move, void *arg)
{
    struct young_batch *b = &y->ring[y->first];
    struct psq_young_dlv d;
    size_t i;
    int rc = SQLITE_OK;

    for (i = 0; i < b->n && rc == SQLITE_OK; i++) {
        if (!b->e[i].done) {
            decode(b, &b->e[i], &d);
            rc = move(arg, &d);
            psq_idmap_del(&y->map, b->e[i].delivery_id);
            y->moved++;
        }
    }
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(y->st[Y_DELETE], 1, b->no);
        rc = psq_run(y->st[Y_DELETE]);
    }
    y->bytes -= b->bytes;
    batch_reset(b);
    y->first = (y->first + 1) % RING;
    y->count--;
    return rc;
}

int
psq_young_batch_end(struct psq_young *y, psq_young_move_fn move, void *arg)
{
    struct young_batch *b = &y->ring[cur_slot(y)];
    sqlite3_stmt *st = y->st[Y_INSERT];
    int rc = SQLITE_OK;

    y->last_no++; /* batches are counted whether they have a row or not */
    if (b->n > 0 || b->upd.len > 0) {
        b->no = y->last_no;
        sqlite3_bind_int64(st, 1, b->no);
        sqlite3_bind_blob(st, 2, b->rec.p != NULL ? (const void *)b->rec.p : "", (int)b->rec.len,
                          SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, b->upd.p != NULL ? (const void *)b->upd.p : "", (int)b->upd.len,
                          SQLITE_STATIC);
        rc = psq_run(st);
        if (rc != SQLITE_OK) {
            return rc;
        }
        b->bytes = b->rec.len + b->upd.len;
        b->upd.len = 0; /* written: replays read it from the row */
        y->bytes += b->bytes;
        y->count++;
    }
    while (rc == SQLITE_OK && y->count > 0 &&
           (y->ring[y->first].no + YOUNG_BATCHES <= y->last_no || y->bytes > YOUNG_MAX_BYTES)) {
        rc = move_oldest(y, move, arg);
    }
    return rc;
}

void
psq_young_stale(struct psq_young *y)
{
    y->stale = 1;
}

/* Checks that the entries blob holds whole records and maps them into slot's batch. */
static int
load_entries(struct psq_young *y, unsigned slot, const uint8_t *p, size_t len)
{
    struct young_batch *b = &y->ring[slot];
    size_t off = 0;

    if (len > 0) {
        if (buf_grow(&b->rec, len) == NULL) {
            return SQLITE_NOMEM;
        }
        memcpy(b->rec.p, p, len);
    }
    while (off < len) {
        struct psq_young_dlv d;
        size_t at = off;

        if (parse(p, len, &off, &d) != 0) {
            return SQLITE_CORRUPT;
        }
        if (add_entry(y, slot, &d, (uint32_t)at) != 0) {
            return SQLITE_NOMEM;
        }
    }
    return SQLITE_OK;
}

/* Applies a row's updates to the deliveries loaded so far. */
static int
load_updates(struct psq_young *y, const uint8_t *p, size_t len)
{
    size_t off = 0;

    while (off < len) {
        uint64_t id;
        uint64_t pid;
        uint8_t state;
        struct young_entry *e;

        if (get_var(p, len, &off, &id) != 0 || off >= len) {
            return SQLITE_CORRUPT;
        }
        state = p[off++];
        if (get_var(p, len, &off, &pid) != 0) {
            return SQLITE_CORRUPT;
        }
        e = lookup(y, id, NULL);
        if (e == NULL) {
            continue; /* moved to the deliveries table before this row was written */
        }
        if (state == UPDATE_DONE) {
            retire(y, e);
        } else {
            e->state = state;
            e->packet_id = (uint16_t)pid;
        }
    }
    return SQLITE_OK;
}

/* Memory := the committed rows. */
static int
reload(struct psq_young *y)
{
    sqlite3_stmt *st = y->st[Y_SELECT];
    unsigned i;
    int rc;

    for (i = 0; i < RING; i++) {
        batch_reset(&y->ring[i]);
    }
    psq_idmap_clear(&y->map);
    y->first = 0;
    y->count = 0;
    y->bytes = 0;
    y->last_no = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct young_batch *b;

        if (y->count == RING - 1) {
            rc = SQLITE_CORRUPT; /* more rows than any midge keeps */
            break;
        }
        b = &y->ring[y->count];
        b->no = sqlite3_column_int64(st, 0);
        rc = load_entries(y, y->count, sqlite3_column_blob(st, 1),
                          (size_t)sqlite3_column_bytes(st, 1));
        if (rc == SQLITE_OK) {
            rc = load_updates(y, sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2));
        }
        if (rc != SQLITE_OK) {
            break;
        }
        b->bytes = b->rec.len + (size_t)sqlite3_column_bytes(st, 2);
        y->bytes += b->bytes;
        y->last_no = b->no;
        y->count++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return rc;
    }
    y->stale = 0;
    return SQLITE_OK;
}

int
psq_young_sync(struct psq_young *y)
{
    return y->stale ? reload(y) : SQLITE_OK;
}

int
psq_young_drain(struct psq_young *y, psq_young_move_fn move, void *arg)
{
    int rc = reload(y);

    while (rc == SQLITE_OK && y->count > 0) {
        rc = move_oldest(y, move, arg);
    }
    if (rc != SQLITE_OK) {
        y->stale = 1;
    }
    return rc;
}

void
psq_young_counts(const struct psq_young *y, uint64_t *added, uint64_t *moved)
{
    *added = y->added;
    *moved = y->moved;
}
