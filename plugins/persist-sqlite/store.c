/*
 * Events to rows. Every event type is one short function over prepared
 * statements. A message with one delivery (one persistent subscriber, the
 * common case) is stored inside its delivery row: queueing and finishing it
 * is one row. Once a second row needs the same message (another delivery,
 * a retained or will row), it moves to the messages table, stored once per
 * msg_id with a `refs` column that counts the deliveries, retained and will
 * rows naming it, so a fan-out to 1,000 offline sessions writes the payload
 * once and 1,000 small delivery rows. Events about a client without a session row are ignored: they can
 * arrive after its SESSION_END (the broker's workers race the end of a
 * session), and the end already deleted everything.
 *
 * Such a delivery, when its message is small and its client connected,
 * goes to the young-delivery log first (young.c): most are finished within
 * a few batches, and the log records them, their state changes and their
 * end in one row per batch instead of a row insert and delete each. Every
 * change of a delivery is offered to the log first; only the deliveries
 * that outlive it reach the deliveries table (move_young).
 */
#include <stdlib.h>
#include <string.h>

#include "schema.h"
#include "store.h"
#include "young.h"

/* Indexes into psq_store.st; the SQL is in stmt_sql. */
enum {
    S_SESS_UPSERT,
    S_SESS_EXISTS,
    S_SESS_DELETE,
    S_SESS_MSGS,
    S_SESS_DEL_DELIVERIES,
    S_SESS_DEL_SUBS,
    S_SESS_DEL_QOS2,
    S_WILL_GET,
    S_WILL_DELETE,
    S_WILL_INSERT,
    S_SUB_UPSERT,
    S_SUB_DELETE,
    S_RET_GET,
    S_RET_DELETE,
    S_RET_INSERT,
    S_MSG_REF,
    S_MSG_INC,
    S_MSG_REFS,
    S_MSG_UNREF,
    S_MSG_DELETE,
    S_DLV_INSERT,
    S_DLV_INSERT_INLINE,
    S_DLV_SHARE,
    S_DLV_STATE,
    S_DLV_GET,
    S_DLV_DELETE,
    S_Q2_INSERT,
    S_Q2_DELETE,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_SESS_UPSERT] = "INSERT INTO sessions(client_id, expiry, protocol, connected, "
                      "disconnected_at) VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(client_id) DO "
                      "UPDATE SET expiry = excluded.expiry, protocol = excluded.protocol, "
                      "connected = excluded.connected, disconnected_at = excluded.disconnected_at",
    [S_SESS_EXISTS] = "SELECT sess_key, connected FROM sessions WHERE client_id = ?1",
    [S_SESS_DELETE] = "DELETE FROM sessions WHERE client_id = ?1",
    /* Deliveries with their own message columns hold no reference. */
    [S_SESS_MSGS] = "SELECT msg_id, count(*) FROM deliveries WHERE sess_key = ?1 AND "
                    "topic IS NULL GROUP BY msg_id",
    [S_SESS_DEL_DELIVERIES] = "DELETE FROM deliveries WHERE sess_key = ?1",
    [S_SESS_DEL_SUBS] = "DELETE FROM subscriptions WHERE client_id = ?1",
    [S_SESS_DEL_QOS2] = "DELETE FROM qos2_in WHERE client_id = ?1",
    [S_WILL_GET] = "SELECT msg_id FROM wills WHERE client_id = ?1",
    [S_WILL_DELETE] = "DELETE FROM wills WHERE client_id = ?1",
    [S_WILL_INSERT] = "INSERT INTO wills(client_id, msg_id, delay) VALUES(?1, ?2, ?3)",
    [S_SUB_UPSERT] = "INSERT INTO subscriptions(client_id, filter, options, sub_id) "
                     "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(client_id, filter) DO UPDATE SET "
                     "options = excluded.options, sub_id = excluded.sub_id",
    [S_SUB_DELETE] = "DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2",
    [S_RET_GET] = "SELECT msg_id FROM retained WHERE topic = ?1",
    [S_RET_DELETE] = "DELETE FROM retained WHERE topic = ?1",
    [S_RET_INSERT] = "INSERT INTO retained(topic, msg_id) VALUES(?1, ?2)",
    [S_MSG_REF] = "INSERT INTO messages(msg_id, topic, payload, qos, retain, props, expire_at, "
                  "refs) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(msg_id) DO NOTHING",
    [S_MSG_INC] = "UPDATE messages SET refs = refs + ?2 WHERE msg_id = ?1",
    [S_MSG_REFS] = "SELECT refs FROM messages WHERE msg_id = ?1",
    [S_MSG_UNREF] = "UPDATE messages SET refs = refs - ?2 WHERE msg_id = ?1",
    [S_MSG_DELETE] = "DELETE FROM messages WHERE msg_id = ?1",
    [S_DLV_INSERT] = "INSERT OR IGNORE INTO deliveries(delivery_id, sess_key, msg_id, qos, "
                     "retain, state, packet_id, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?7, ?8, ?6)",
    [S_DLV_INSERT_INLINE] = "INSERT OR IGNORE INTO deliveries(delivery_id, sess_key, msg_id, qos, "
                            "retain, state, packet_id, seq, topic, payload, msg_qos, msg_retain, "
                            "props, expire_at) VALUES(?1, ?2, ?3, ?4, ?5, ?7, ?8, ?6, ?9, ?10, "
                            "?11, ?12, ?13, ?14)",
    /* The message moved to the messages table: the delivery becomes a reference to it. */
    [S_DLV_SHARE] = "UPDATE deliveries SET topic = NULL, payload = NULL, msg_qos = NULL, "
                    "msg_retain = NULL, props = NULL, expire_at = NULL WHERE delivery_id = ?1 "
                    "AND topic IS NOT NULL",
    [S_DLV_STATE] = "UPDATE deliveries SET state = ?2, packet_id = ?3 WHERE delivery_id = ?1",
    [S_DLV_GET] = "SELECT msg_id, topic IS NOT NULL FROM deliveries WHERE delivery_id = ?1",
    [S_DLV_DELETE] = "DELETE FROM deliveries WHERE delivery_id = ?1",
    [S_Q2_INSERT] = "INSERT OR IGNORE INTO qos2_in(client_id, packet_id) VALUES(?1, ?2)",
    [S_Q2_DELETE] = "DELETE FROM qos2_in WHERE client_id = ?1 AND packet_id = ?2",
};

/*
 * Sessions known to have a row, so that the events that need one (every
 * queued delivery) do not each look it up: direct-mapped by a hash of the
 * client id, one strdup'd id and its row's sess_key per slot. An id is only
 * ever in its own slot, so SESSION_END forgets it by clearing that slot.
 */
#define SESS_CACHE 256

struct known_session {
    char *client_id; /* owned; NULL: empty slot */
    int64_t key;     /* sessions.sess_key */
    int connected;   /* sessions.connected, as the last SESSION event set it */
};

/*
 * Rows written recently, found again without a lookup: with subscribers
 * online, a delivery that outlives one batch is usually finished in the
 * next, and its DONE then needs the delivery's msg_id and the message's
 * reference count. Direct-mapped by id (key 0: empty); a new entry evicts
 * the old one of its slot.
 *  - dlv: delivery_id -> msg_id of deliveries this store inserted. A
 *    delivery's msg_id never changes, but the row may be gone (its session
 *    ended): the DELETE's change count says whether there was one.
 *    `flag` is 1 when the row holds its message's columns (no reference).
 *  - refs: msg_id -> the row's refs column, exact while cached: every
 *    change to refs goes through msg_ref()/msg_unref(), which keep it, and
 *    psq_store_forget() drops everything after a rollback.
 *  - inl: msg_id -> the delivery this store inserted with the message's
 *    columns. A second reference to the message moves it to the messages
 *    table and that delivery's columns to NULL. Without an entry (evicted,
 *    or written by an earlier process) a second delivery gets its own copy
 *    instead: correct, only not shared.
 */
#define ROW_CACHE 65536

struct row_cache {
    uint64_t key[ROW_CACHE];
    int64_t val[ROW_CACHE];
    uint8_t flag[ROW_CACHE];
};

/* Owns the prepared statements (not the connection), the cached ids and the row caches. */
struct psq_store {
    struct psq_env env;
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    struct known_session known[SESS_CACHE];
    struct row_cache *dlv;
    struct row_cache *refs;
    struct row_cache *inl;
    struct psq_young *young;
    /*
     * Queue order is order_base + seq: seq starts at 1 in every broker
     * process, so the order of this process starts after the highest one
     * stored by the previous ones.
     */
    int64_t order_base;
    /*
     * No row names a msg_id above this one. The broker numbers messages from
     * one counter, so nearly every queued message is above it and is known
     * to be new without a lookup. Only grows (a rolled-back id stays
     * counted: that costs a lookup, never a wrong answer).
     */
    int64_t max_msg_id;
};

static int move_young(void *arg, const struct psq_young_dlv *d);

struct psq_store *
psq_store_new(const struct psq_env *env, sqlite3 *db, const char **err)
{
    struct psq_store *s = calloc(1, sizeof(*s));
    int i;

    *err = NULL;
    if (s == NULL) {
        goto fail;
    }
    s->env = *env;
    s->db = db;
    s->dlv = calloc(1, sizeof(*s->dlv));
    s->refs = calloc(1, sizeof(*s->refs));
    s->inl = calloc(1, sizeof(*s->inl));
    if (s->dlv == NULL || s->refs == NULL || s->inl == NULL) {
        goto fail;
    }
    for (i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) !=
            SQLITE_OK) {
            *err = sqlite3_errmsg(db);
            goto fail;
        }
    }
    s->young = psq_young_new(db);
    if (s->young == NULL) {
        *err = sqlite3_errmsg(db);
        goto fail;
    }
    {
        long long order_base;
        long long max_msg_id;
        int rc;

        /* What the young log of the previous process kept goes where restore reads it. */
        rc = psq_store_drain_young(s);
        if (rc != SQLITE_OK) {
            *err = rc == SQLITE_CORRUPT ? "the young table (recent deliveries) is damaged; "
                                         "nothing was changed"
                                       : sqlite3_errmsg(db);
            goto fail;
        }
        if (psq_query_int(db, "SELECT coalesce(max(seq), 0) FROM deliveries", NULL,
                          &order_base) != SQLITE_OK ||
            psq_query_int(db, "SELECT max(coalesce((SELECT max(msg_id) FROM messages), 0), "
                              "coalesce((SELECT max(msg_id) FROM deliveries), 0))", NULL,
                          &max_msg_id) != SQLITE_OK) {
            *err = sqlite3_errmsg(db);
            goto fail;
        }
        s->order_base = order_base;
        s->max_msg_id = max_msg_id;
    }
    return s;
fail:
    psq_store_free(s);
    return NULL;
}

void
psq_store_free(struct psq_store *s)
{
    int i;

    if (s != NULL) {
        for (i = 0; i < S_COUNT; i++) {
            sqlite3_finalize(s->st[i]);
        }
        psq_young_free(s->young);
        s->young = NULL;
        psq_store_forget(s);
        free(s->dlv);
        free(s->refs);
        free(s->inl);
        free(s);
    }
}

int
psq_store_rc_is_fatal(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
        return 0;
    default:
        return 1;
    }
}

/* Binds a text, a blob (an empty blob is not NULL: columns are NOT NULL) and integers. */
static void
bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v != NULL ? v : "", -1, SQLITE_STATIC);
}

static void
bind_blob(sqlite3_stmt *st, int i, const void *v, uint32_t len)
{
    if (v == NULL || len == 0) {
        sqlite3_bind_zeroblob(st, i, 0);
    } else {
        sqlite3_bind_blob(st, i, v, (int)len, SQLITE_STATIC);
    }
}

static void
bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
    sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

/*
 * Runs a SELECT returning at most one integer: *found 1 and *out set when
 * there was a row.
 */
static int
run_int(sqlite3_stmt *st, int *found, int64_t *out)
{
    int rc;

    *found = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *found = 1;
        *out = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static size_t
known_slot(const char *client_id)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *client_id != '\0'; client_id++) {
        h = (h ^ (uint8_t)*client_id) * 16777619u;
    }
    return h % SESS_CACHE;
}

void
psq_store_forget(struct psq_store *s)
{
    size_t i;

    for (i = 0; i < SESS_CACHE; i++) {
        free(s->known[i].client_id);
        s->known[i].client_id = NULL;
    }
    if (s->dlv != NULL) {
        memset(s->dlv->key, 0, sizeof(s->dlv->key));
    }
    if (s->refs != NULL) {
        memset(s->refs->key, 0, sizeof(s->refs->key));
    }
    if (s->inl != NULL) {
        memset(s->inl->key, 0, sizeof(s->inl->key));
    }
    if (s->young != NULL) {
        psq_young_stale(s->young);
    }
}

int
psq_store_drain_young(struct psq_store *s)
{
    int rc = psq_exec(s->db, "BEGIN IMMEDIATE");

    if (rc == SQLITE_OK) {
        rc = psq_young_drain(s->young, move_young, s);
    }
    rc = rc == SQLITE_OK ? psq_exec(s->db, "COMMIT") : rc;
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(s->db)) {
        psq_exec(s->db, "ROLLBACK");
    }
    return rc;
}

int
psq_store_batch_begin(struct psq_store *s)
{
    return psq_young_sync(s->young);
}

int
psq_store_batch_end(struct psq_store *s)
{
    return psq_young_batch_end(s->young, move_young, s);
}

void
psq_store_young_counts(const struct psq_store *s, uint64_t *added, uint64_t *moved)
{
    psq_young_counts(s->young, added, moved);
}

/* Ids are handed out in sequence: their low bits spread them, and neighbours share cache lines. */
static size_t
row_slot(uint64_t key)
{
    return (size_t)key & (ROW_CACHE - 1);
}

/* 1 and *val when key is cached. */
static int
row_get(const struct row_cache *c, uint64_t key, int64_t *val)
{
    size_t i = row_slot(key);

    if (key != 0 && c->key[i] == key) {
        *val = c->val[i];
        return 1;
    }
    return 0;
}

static int
row_get_flag(const struct row_cache *c, uint64_t key, int64_t *val, int *flag)
{
    size_t i = row_slot(key);

    if (key != 0 && c->key[i] == key) {
        *val = c->val[i];
        *flag = c->flag[i];
        return 1;
    }
    return 0;
}

static void
row_put_flag(struct row_cache *c, uint64_t key, int64_t val, int flag)
{
    size_t i = row_slot(key);

    if (key != 0) {
        c->key[i] = key;
        c->val[i] = val;
        c->flag[i] = (uint8_t)flag;
    }
}

static void
row_put(struct row_cache *c, uint64_t key, int64_t val)
{
    row_put_flag(c, key, val, 0);
}

static void
row_drop(struct row_cache *c, uint64_t key)
{
    size_t i = row_slot(key);

    if (c->key[i] == key) {
        c->key[i] = 0;
    }
}

/* client_id's cache entry, or NULL when its slot holds another client or none. */
static struct known_session *
known(struct psq_store *s, const char *client_id)
{
    struct known_session *k = &s->known[known_slot(client_id)];

    return k->client_id != NULL && strcmp(k->client_id, client_id) == 0 ? k : NULL;
}

/* The session ended (or its row is about to go): no longer known. */
static void
forget_session(struct psq_store *s, const char *client_id)
{
    struct known_session *k = known(s, client_id);

    if (k != NULL) {
        free(k->client_id);
        k->client_id = NULL;
    }
}

/* Remembers a session that has a row now (best effort: no memory, no entry). */
static void
know_session(struct psq_store *s, const char *client_id, int64_t key, int connected)
{
    struct known_session *k = &s->known[known_slot(client_id)];

    if (k->client_id == NULL || strcmp(k->client_id, client_id) != 0) {
        free(k->client_id);
        k->client_id = strdup(client_id);
    }
    k->key = key;
    k->connected = connected;
}

/*
 * *exists 1, *key (sessions.sess_key) and *connected when client_id has a
 * session row.
 */
static int
session_exists(struct psq_store *s, const char *client_id, int *exists, int64_t *key,
               int *connected)
{
    const struct known_session *k = known(s, client_id);
    sqlite3_stmt *st = s->st[S_SESS_EXISTS];
    int rc;

    if (k != NULL) {
        *exists = 1;
        *key = k->key;
        *connected = k->connected;
        return SQLITE_OK;
    }
    *exists = 0;
    bind_text(st, 1, client_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *exists = 1;
        *key = sqlite3_column_int64(st, 0);
        *connected = sqlite3_column_int(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return rc;
    }
    if (*exists) {
        know_session(s, client_id, *key, *connected);
    }
    return SQLITE_OK;
}

/* refs + n of a message row that exists; the cache follows. */
static int
msg_inc(struct psq_store *s, uint64_t msg_id, int64_t n, int known, int64_t refs)
{
    int rc;

    bind_i64(s->st[S_MSG_INC], 1, (int64_t)msg_id);
    bind_i64(s->st[S_MSG_INC], 2, n);
    rc = psq_run(s->st[S_MSG_INC]);
    if (rc == SQLITE_OK && known) {
        row_put(s->refs, msg_id, refs + n);
    } else {
        row_drop(s->refs, msg_id);
    }
    return rc;
}

/*
 * The message msg_id has its messages row now: when this store wrote it
 * into a delivery (the inl cache), that delivery's copy goes and it becomes
 * a reference. Called only after the row is written, so the message is
 * never in neither place. *moved is 1 when it did (one more reference).
 */
static int
share_inline(struct psq_store *s, uint64_t msg_id, int *moved)
{
    int64_t delivery_id;
    int64_t cached_msg;
    int flag;
    int rc;

    *moved = 0;
    if (!row_get(s->inl, msg_id, &delivery_id)) {
        return SQLITE_OK;
    }
    row_drop(s->inl, msg_id);
    /* A young delivery first gets its row, to become a reference like any other. */
    rc = psq_young_remove(s->young, (uint64_t)delivery_id, move_young, s);
    if (rc != SQLITE_OK) {
        return rc;
    }
    bind_i64(s->st[S_DLV_SHARE], 1, delivery_id);
    rc = psq_run(s->st[S_DLV_SHARE]);
    if (rc != SQLITE_OK) {
        return rc;
    }
    /* No row: that delivery was finished or its session ended. */
    *moved = sqlite3_changes(s->db) > 0;
    if (*moved && row_get_flag(s->dlv, (uint64_t)delivery_id, &cached_msg, &flag)) {
        row_put_flag(s->dlv, (uint64_t)delivery_id, cached_msg, 0);
    }
    return SQLITE_OK;
}

/*
 * The message columns of d (topic, payload, qos, retain, props, expiry) from
 * msg; the pointers are msg's. `now` turns its remaining expiry into an
 * absolute time.
 */
static void
message_columns(struct psq_store *s, const midge_message *msg, int64_t now,
                struct psq_young_dlv *d)
{
    const struct midge_api *api = s->env.api;
    uint32_t expiry = api->message_expiry(msg);
    size_t topic_len;

    d->topic = api->message_topic(msg);
    d->topic = d->topic != NULL ? d->topic : "";
    topic_len = strlen(d->topic);
    d->topic_len = topic_len <= UINT32_MAX ? (uint32_t)topic_len : UINT32_MAX;
    d->payload_len = 0;
    d->payload = api->message_payload(msg, &d->payload_len);
    d->props_len = 0;
    d->props = api->message_properties(msg, &d->props_len);
    if (d->props_len == 0) {
        d->props = NULL;
    }
    d->msg_qos = api->message_qos(msg);
    d->msg_retain = api->message_retain(msg);
    d->expire_at = expiry > 0 ? now + expiry : 0;
}

/* Binds d's message columns (topic, payload, qos, retain, props, expiry) from parameter col on. */
static void
bind_columns(sqlite3_stmt *st, int col, const struct psq_young_dlv *d)
{
    sqlite3_bind_text(st, col, d->topic, (int)d->topic_len, SQLITE_STATIC);
    bind_blob(st, col + 1, d->payload, d->payload_len);
    sqlite3_bind_int(st, col + 2, d->msg_qos);
    sqlite3_bind_int(st, col + 3, d->msg_retain);
    if (d->props != NULL) {
        sqlite3_bind_blob(st, col + 4, d->props, (int)d->props_len, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, col + 4);
    }
    bind_i64(st, col + 5, d->expire_at);
}

/*
 * One more reference to message msg_id: the row is written with the first
 * one. A row the cache knows only gets its count raised; otherwise the
 * insert is tried (it does nothing when the row exists: then the count is
 * raised). `now` turns the message's remaining expiry into an absolute
 * time.
 */
static int
msg_ref(struct psq_store *s, uint64_t msg_id, const midge_message *msg, int64_t now)
{
    sqlite3_stmt *st = s->st[S_MSG_REF];
    struct psq_young_dlv d;
    int64_t refs;
    int64_t inline_dlv;
    int inlined;
    int moved;
    int rc;

    if (row_get(s->refs, msg_id, &refs)) {
        return msg_inc(s, msg_id, 1, 1, refs);
    }
    /* Counted ahead for a copy in a delivery row; corrected below when there was none. */
    inlined = row_get(s->inl, msg_id, &inline_dlv);
    bind_i64(st, 1, (int64_t)msg_id);
    message_columns(s, msg, now, &d);
    bind_columns(st, 2, &d);
    bind_i64(st, 8, 1 + inlined);
    if ((int64_t)msg_id > s->max_msg_id) {
        s->max_msg_id = (int64_t)msg_id;
    }
    rc = psq_run(st);
    if (rc != SQLITE_OK) {
        return rc;
    }
    if (sqlite3_changes(s->db) == 0) {
        rc = share_inline(s, msg_id, &moved);
        return rc != SQLITE_OK ? rc : msg_inc(s, msg_id, 1 + moved, 0, 0); /* stored before */
    }
    rc = share_inline(s, msg_id, &moved);
    if (rc != SQLITE_OK) {
        return rc;
    }
    if (moved != inlined) { /* that delivery was finished meanwhile: one reference less */
        return msg_inc(s, msg_id, (int64_t)moved - inlined, 1, 1 + inlined);
    }
    row_put(s->refs, msg_id, 1 + moved);
    return SQLITE_OK;
}

/*
 * `n` fewer references to msg_id; the row goes with the last one. A read
 * then one write, not UPDATE ... RETURNING: SQLite collects RETURNING rows
 * in a temporary b-tree that it opens and closes on every step, which cost
 * more than the statement itself on this path (perf, issue 7).
 */
static int
msg_unref(struct psq_store *s, uint64_t msg_id, int64_t n)
{
    int64_t refs = 0;
    int found;
    int rc;

    if (!row_get(s->refs, msg_id, &refs)) {
        bind_i64(s->st[S_MSG_REFS], 1, (int64_t)msg_id);
        rc = run_int(s->st[S_MSG_REFS], &found, &refs);
        if (rc != SQLITE_OK || !found) {
            return rc;
        }
    }
    if (refs - n <= 0) {
        row_drop(s->refs, msg_id);
        bind_i64(s->st[S_MSG_DELETE], 1, (int64_t)msg_id);
        return psq_run(s->st[S_MSG_DELETE]);
    }
    bind_i64(s->st[S_MSG_UNREF], 1, (int64_t)msg_id);
    bind_i64(s->st[S_MSG_UNREF], 2, n);
    rc = psq_run(s->st[S_MSG_UNREF]);
    if (rc == SQLITE_OK) {
        row_put(s->refs, msg_id, refs - n);
    } else {
        row_drop(s->refs, msg_id);
    }
    return rc;
}

/*
 * Deletes the row that `get` (SELECT msg_id ... WHERE key = ?1) finds with
 * `del` (DELETE ... WHERE key = ?1), then drops its message reference.
 */
static int
delete_ref(struct psq_store *s, sqlite3_stmt *get, sqlite3_stmt *del, const char *key)
{
    int64_t msg_id = 0;
    int found;
    int rc;

    bind_text(get, 1, key);
    rc = run_int(get, &found, &msg_id);
    if (rc == SQLITE_OK && found) {
        bind_text(del, 1, key);
        rc = psq_run(del);
    }
    if (rc == SQLITE_OK && found) {
        rc = msg_unref(s, (uint64_t)msg_id, 1);
    }
    return rc;
}

int
psq_store_session_end(struct psq_store *s, const char *client_id)
{
    sqlite3_stmt *st = s->st[S_SESS_MSGS];
    int64_t *ids = NULL;
    int64_t key = 0;
    int found;
    size_t n = 0;
    size_t cap = 0;
    size_t i;
    int rc;

    forget_session(s, client_id);
    bind_text(s->st[S_SESS_EXISTS], 1, client_id);
    rc = run_int(s->st[S_SESS_EXISTS], &found, &key);
    if (rc != SQLITE_OK) {
        goto out;
    }
    if (found && psq_young_end_session(s->young, key) != 0) {
        rc = SQLITE_NOMEM;
        goto out;
    }
    /* The messages its deliveries use, with counts: one refs update per message, not per row. */
    bind_i64(st, 1, key); /* no session row: key 0, which no row has (keys start at 1) */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n + 2 > cap) {
            int64_t *bigger = realloc(ids, (cap = cap * 2 + 64) * sizeof(*ids));

            if (bigger == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            ids = bigger;
        }
        ids[n++] = sqlite3_column_int64(st, 0);
        ids[n++] = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        goto out;
    }
    rc = SQLITE_OK;
    for (i = 0; i + 1 < n && rc == SQLITE_OK; i += 2) {
        rc = msg_unref(s, (uint64_t)ids[i], ids[i + 1]);
    }
    if (rc == SQLITE_OK) {
        bind_i64(s->st[S_SESS_DEL_DELIVERIES], 1, key);
        rc = psq_run(s->st[S_SESS_DEL_DELIVERIES]);
    }
    if (rc == SQLITE_OK) {
        bind_text(s->st[S_SESS_DEL_SUBS], 1, client_id);
        rc = psq_run(s->st[S_SESS_DEL_SUBS]);
    }
    if (rc == SQLITE_OK) {
        bind_text(s->st[S_SESS_DEL_QOS2], 1, client_id);
        rc = psq_run(s->st[S_SESS_DEL_QOS2]);
    }
    if (rc == SQLITE_OK) {
        rc = delete_ref(s, s->st[S_WILL_GET], s->st[S_WILL_DELETE], client_id);
    }
    if (rc == SQLITE_OK) {
        bind_text(s->st[S_SESS_DELETE], 1, client_id);
        rc = psq_run(s->st[S_SESS_DELETE]);
    }
out:
    free(ids);
    return rc;
}

int
psq_store_retain_clear(struct psq_store *s, const char *topic)
{
    return delete_ref(s, s->st[S_RET_GET], s->st[S_RET_DELETE], topic);
}

int
psq_store_delivery_done(struct psq_store *s, uint64_t delivery_id)
{
    sqlite3_stmt *get = s->st[S_DLV_GET];
    int64_t msg_id = 0;
    int64_t inl_dlv;
    uint64_t young_msg;
    int own = 0; /* the row holds its message's columns: no reference */
    int found;
    int rc = SQLITE_OK;

    found = psq_young_done(s->young, delivery_id, &young_msg);
    if (found != 0) {
        if (found > 0 && row_get(s->inl, young_msg, &inl_dlv) &&
            inl_dlv == (int64_t)delivery_id) {
            row_drop(s->inl, young_msg);
        }
        return found > 0 ? SQLITE_OK : SQLITE_NOMEM;
    }
    found = row_get_flag(s->dlv, delivery_id, &msg_id, &own);
    if (found) {
        row_drop(s->dlv, delivery_id);
    } else {
        bind_i64(get, 1, (int64_t)delivery_id);
        while ((rc = sqlite3_step(get)) == SQLITE_ROW) {
            found = 1;
            msg_id = sqlite3_column_int64(get, 0);
            own = sqlite3_column_int(get, 1);
        }
        sqlite3_reset(get);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    if (rc == SQLITE_OK && found) {
        bind_i64(s->st[S_DLV_DELETE], 1, (int64_t)delivery_id);
        rc = psq_run(s->st[S_DLV_DELETE]);
        /* No row (a cached delivery whose session ended since): no reference to drop. */
        found = rc == SQLITE_OK && sqlite3_changes(s->db) > 0;
    }
    if (rc == SQLITE_OK && found) {
        if (!own) {
            rc = msg_unref(s, (uint64_t)msg_id, 1);
        } else if (row_get(s->inl, (uint64_t)msg_id, &inl_dlv) &&
                   inl_dlv == (int64_t)delivery_id) {
            row_drop(s->inl, (uint64_t)msg_id); /* a later reference starts a new row */
        }
    }
    return rc;
}

static int
apply_session(struct psq_store *s, const struct psq_event *e)
{
    sqlite3_stmt *st = s->st[S_SESS_UPSERT];
    struct known_session *k = known(s, e->client_id);

    if (k != NULL) {
        k->connected = e->connected ? 1 : 0;
    }

    bind_text(st, 1, e->client_id);
    bind_i64(st, 2, e->expiry);
    sqlite3_bind_int(st, 3, e->protocol);
    sqlite3_bind_int(st, 4, e->connected ? 1 : 0);
    if (!e->connected) {
        bind_i64(st, 5, e->wall); /* restore counts the expiry from here */
    } else {
        sqlite3_bind_null(st, 5);
    }
    return psq_run(st);
}

static int
apply_retain_set(struct psq_store *s, const struct psq_event *e, int64_t now)
{
    const char *topic = s->env.api->message_topic(e->msg);
    int rc;

    /* Reference the new message before dropping the old one: they may be the same. */
    rc = msg_ref(s, e->msg_id, e->msg, now);
    if (rc == SQLITE_OK) {
        rc = delete_ref(s, s->st[S_RET_GET], s->st[S_RET_DELETE], topic);
    }
    if (rc == SQLITE_OK) {
        bind_text(s->st[S_RET_INSERT], 1, topic);
        bind_i64(s->st[S_RET_INSERT], 2, (int64_t)e->msg_id);
        rc = psq_run(s->st[S_RET_INSERT]);
    }
    return rc;
}

static int
apply_will_set(struct psq_store *s, const struct psq_event *e, int64_t now)
{
    int rc = msg_ref(s, e->msg_id, e->msg, now);

    if (rc == SQLITE_OK) {
        rc = delete_ref(s, s->st[S_WILL_GET], s->st[S_WILL_DELETE], e->client_id);
    }
    if (rc == SQLITE_OK) {
        bind_text(s->st[S_WILL_INSERT], 1, e->client_id);
        bind_i64(s->st[S_WILL_INSERT], 2, (int64_t)e->msg_id);
        bind_i64(s->st[S_WILL_INSERT], 3, e->expiry);
        rc = psq_run(s->st[S_WILL_INSERT]);
    }
    return rc;
}

/*
 * 1 when msg_id's message is to be written into its delivery row: no
 * messages row has it and no delivery this store knows of carries it.
 */
static int
message_is_new(struct psq_store *s, uint64_t msg_id, int *is_new)
{
    int64_t val;
    int found;
    int rc;

    *is_new = 0;
    if ((int64_t)msg_id > s->max_msg_id) {
        *is_new = 1;
        return SQLITE_OK;
    }
    if (row_get(s->refs, msg_id, &val) || row_get(s->inl, msg_id, &val)) {
        return SQLITE_OK;
    }
    bind_i64(s->st[S_MSG_REFS], 1, (int64_t)msg_id);
    rc = run_int(s->st[S_MSG_REFS], &found, &val);
    if (rc == SQLITE_OK) {
        if (found) {
            row_put(s->refs, msg_id, val);
        }
        *is_new = !found;
    }
    return rc;
}

/* Inserts d's deliveries row: with its message's columns when `own`, else naming its messages row. */
static int
insert_delivery(struct psq_store *s, const struct psq_young_dlv *d, int own)
{
    sqlite3_stmt *st = s->st[own ? S_DLV_INSERT_INLINE : S_DLV_INSERT];

    bind_i64(st, 1, (int64_t)d->delivery_id);
    bind_i64(st, 2, d->sess_key);
    bind_i64(st, 3, (int64_t)d->msg_id);
    sqlite3_bind_int(st, 4, d->qos);
    sqlite3_bind_int(st, 5, d->retain);
    bind_i64(st, 6, d->seq);
    sqlite3_bind_int(st, 7, d->state);
    sqlite3_bind_int(st, 8, d->packet_id);
    if (own) {
        bind_columns(st, 9, d);
    }
    return psq_run(st);
}

/* Moves a young delivery into the deliveries table (psq_young_move_fn). */
static int
move_young(void *arg, const struct psq_young_dlv *d)
{
    struct psq_store *s = arg;
    int rc = insert_delivery(s, d, 1);

    if (rc == SQLITE_OK) {
        row_put_flag(s->dlv, d->delivery_id, (int64_t)d->msg_id, 1);
    }
    return rc;
}

static int
apply_queued(struct psq_store *s, const struct psq_event *e, int64_t sess_key, int connected,
             int64_t now)
{
    struct psq_young_dlv d;
    int own;
    int rc;

    rc = message_is_new(s, e->msg_id, &own);
    if (rc != SQLITE_OK) {
        return rc;
    }
    if ((int64_t)e->msg_id > s->max_msg_id) {
        s->max_msg_id = (int64_t)e->msg_id;
    }
    d.delivery_id = e->delivery_id;
    d.sess_key = sess_key;
    d.msg_id = e->msg_id;
    d.seq = s->order_base + (int64_t)e->seq;
    d.qos = e->qos;
    d.retain = e->retain ? 1 : 0;
    d.state = e->state;
    d.packet_id = e->packet_id;
    if (own) {
        message_columns(s, e->msg, now, &d);
    }
    /*
     * To the young log (see the top of the file), unless the client is away
     * (the delivery waits for it: the table has it at once), the message is
     * large, or there is no memory. 1 from psq_young_add: seen before.
     */
    if (own && connected && psq_young_fits(d.topic_len, d.payload_len, d.props_len)) {
        rc = psq_young_add(s->young, &d);
        if (rc >= 0) {
            if (rc == 0) {
                row_put(s->inl, e->msg_id, (int64_t)e->delivery_id);
            }
            return SQLITE_OK;
        }
    }
    rc = insert_delivery(s, &d, own);
    /* A delivery seen before (the event came twice) does not count twice. */
    if (rc == SQLITE_OK && sqlite3_changes(s->db) > 0) {
        row_put_flag(s->dlv, e->delivery_id, (int64_t)e->msg_id, own);
        if (own) {
            row_put(s->inl, e->msg_id, (int64_t)e->delivery_id);
        } else {
            rc = msg_ref(s, e->msg_id, e->msg, now);
        }
    }
    return rc;
}

static int
apply_state(struct psq_store *s, const struct psq_event *e, int state)
{
    sqlite3_stmt *st = s->st[S_DLV_STATE];
    int young = psq_young_set_state(s->young, e->delivery_id, state, e->packet_id);

    if (young != 0) {
        return young > 0 ? SQLITE_OK : SQLITE_NOMEM;
    }
    bind_i64(st, 1, (int64_t)e->delivery_id);
    sqlite3_bind_int(st, 2, state);
    sqlite3_bind_int(st, 3, e->packet_id);
    return psq_run(st);
}

static int
apply_client_pid(struct psq_store *s, sqlite3_stmt *st, const struct psq_event *e)
{
    bind_text(st, 1, e->client_id);
    sqlite3_bind_int(st, 2, e->packet_id);
    return psq_run(st);
}

/* Applies one event; see store.h. */
int
psq_store_apply(struct psq_store *s, const struct psq_event *e, int64_t now)
{
    int exists = 1;
    int64_t sess_key = 0;
    int connected = 0;
    int rc = SQLITE_OK;

    switch (e->type) {
    case MIDGE_P_SUB_ADD:
    case MIDGE_P_MSG_QUEUED:
    case MIDGE_P_QOS2_IN:
    case MIDGE_P_WILL_SET:
        /* Rows that would outlive an ended session: only for a session we have. */
        if (e->client_id == NULL) {
            return SQLITE_MISMATCH;
        }
        rc = session_exists(s, e->client_id, &exists, &sess_key, &connected);
        if (rc != SQLITE_OK || !exists) {
            return rc;
        }
        break;
    default:
        break;
    }
    switch (e->type) {
    case MIDGE_P_SESSION:
        rc = e->client_id != NULL ? apply_session(s, e) : SQLITE_MISMATCH;
        break;
    case MIDGE_P_SESSION_END:
        rc = e->client_id != NULL ? psq_store_session_end(s, e->client_id) : SQLITE_MISMATCH;
        break;
    case MIDGE_P_SUB_ADD:
        if (e->filter == NULL) {
            rc = SQLITE_MISMATCH;
            break;
        }
        bind_text(s->st[S_SUB_UPSERT], 1, e->client_id);
        bind_text(s->st[S_SUB_UPSERT], 2, e->filter);
        sqlite3_bind_int(s->st[S_SUB_UPSERT], 3, e->options);
        bind_i64(s->st[S_SUB_UPSERT], 4, e->sub_id);
        rc = psq_run(s->st[S_SUB_UPSERT]);
        break;
    case MIDGE_P_SUB_REMOVE:
        if (e->client_id == NULL || e->filter == NULL) {
            rc = SQLITE_MISMATCH;
            break;
        }
        bind_text(s->st[S_SUB_DELETE], 1, e->client_id);
        bind_text(s->st[S_SUB_DELETE], 2, e->filter);
        rc = psq_run(s->st[S_SUB_DELETE]);
        break;
    case MIDGE_P_RETAIN_SET:
        rc = e->msg != NULL ? apply_retain_set(s, e, now) : SQLITE_MISMATCH;
        break;
    case MIDGE_P_RETAIN_CLEAR:
        rc = e->filter != NULL ? psq_store_retain_clear(s, e->filter) : SQLITE_MISMATCH;
        break;
    case MIDGE_P_MSG_QUEUED:
        rc = e->msg != NULL ? apply_queued(s, e, sess_key, connected, now) : SQLITE_MISMATCH;
        break;
    case MIDGE_P_MSG_SENT:
        rc = apply_state(s, e, MIDGE_DELIVERY_SENT);
        break;
    case MIDGE_P_MSG_RELEASED:
        rc = apply_state(s, e, MIDGE_DELIVERY_RELEASED);
        break;
    case MIDGE_P_MSG_DONE:
        rc = psq_store_delivery_done(s, e->delivery_id);
        break;
    case MIDGE_P_QOS2_IN:
        rc = apply_client_pid(s, s->st[S_Q2_INSERT], e);
        break;
    case MIDGE_P_QOS2_IN_DONE:
        rc = e->client_id != NULL ? apply_client_pid(s, s->st[S_Q2_DELETE], e) : SQLITE_MISMATCH;
        break;
    case MIDGE_P_WILL_SET:
        rc = e->msg != NULL ? apply_will_set(s, e, now) : SQLITE_MISMATCH;
        break;
    case MIDGE_P_WILL_CLEAR:
        rc = e->client_id != NULL
                 ? delete_ref(s, s->st[S_WILL_GET], s->st[S_WILL_DELETE], e->client_id)
                 : SQLITE_MISMATCH;
        break;
    default:
        rc = SQLITE_MISMATCH; /* a type from a newer broker: skipped and logged */
        break;
    }
    return rc;
}
