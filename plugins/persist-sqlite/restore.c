/*
 * Restore. Sessions go first (the broker needs them before anything that
 * belongs to them); what expired while the broker was down is deleted in
 * one transaction before anything is handed over, so the broker never sees
 * it and the file stops carrying it.
 *
 * Deliveries are read in one query ordered by (client_id, seq), through
 * the (sess_key, seq) index; they are all in the deliveries table by now
 * (the store moved what the young-delivery log of a previous process kept
 * when it was created). A delivery has its message's columns itself (its
 * message's only row) or names a messages row: a LEFT JOIN reads both.
 * Fan-out means many deliveries share a message, so the messages built with
 * api->message_new are kept in a table by msg_id until the end of the
 * restore: each stored payload becomes one broker message however many
 * sessions it is queued for.
 */
#include <stdlib.h>
#include <string.h>

#include "restore.h"
#include "schema.h"

#define NEVER 0xFFFFFFFFu

/* msg_id -> message built for it (one reference each). Open addressing; owns the references. */
struct msg_cache {
    uint64_t *ids;
    const midge_message **msgs;
    size_t cap;     /* power of two */
    size_t used;
};

static size_t
hash_id(uint64_t id)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)id;
}

static int
cache_grow(struct msg_cache *c)
{
    size_t cap = c->cap ? c->cap * 2 : 1024;
    uint64_t *ids = calloc(cap, sizeof(*ids));
    const midge_message **msgs = calloc(cap, sizeof(*msgs));
    size_t i;

    if (ids == NULL || msgs == NULL) {
        free(ids);
        free(msgs);
        return -MIDGE_ENOMEM;
    }
    for (i = 0; i < c->cap; i++) {
        if (c->msgs[i] != NULL) {
            size_t j = hash_id(c->ids[i]) & (cap - 1);

            while (msgs[j] != NULL) {
                j = (j + 1) & (cap - 1);
            }
            ids[j] = c->ids[i];
            msgs[j] = c->msgs[i];
        }
    }
    free(c->ids);
    free(c->msgs);
    c->ids = ids;
    c->msgs = msgs;
    c->cap = cap;
    return 0;
}

/* The slot for id: found (msgs[slot] != NULL) or where it goes. */
static size_t
cache_slot(const struct msg_cache *c, uint64_t id)
{
    size_t j = hash_id(id) & (c->cap - 1);

    while (c->msgs[j] != NULL && c->ids[j] != id) {
        j = (j + 1) & (c->cap - 1);
    }
    return j;
}

static void
cache_free(const struct psq_env *env, struct msg_cache *c)
{
    size_t i;

    for (i = 0; i < c->cap; i++) {
        if (c->msgs[i] != NULL) {
            env->api->message_unref(c->msgs[i]);
        }
    }
    free(c->ids);
    free(c->msgs);
}

/*
 * Builds the message of a row whose columns from `col` on are: msg_id,
 * topic, payload, qos, retain, props, expire_at. NULL when the broker
 * refused it (counted; message_new does not tell bad data from no memory,
 * and bad data is the likely case for a stored message).
 */
static const midge_message *
row_message(const struct psq_env *env, sqlite3_stmt *st, int col, int64_t now,
            struct psq_restore_stats *stats)
{
    int64_t expire_at = sqlite3_column_int64(st, col + 6);
    uint32_t expiry = 0;
    const midge_message *m;
    const void *payload = sqlite3_column_blob(st, col + 2);
    int len = sqlite3_column_bytes(st, col + 2);
    const void *props = sqlite3_column_blob(st, col + 5);
    int props_len = sqlite3_column_bytes(st, col + 5);

    if (expire_at > 0) {
        /* An expired message still restored (inflight) keeps 1 s: the broker drops it itself. */
        expiry = expire_at > now ? (uint32_t)(expire_at - now) : 1;
    }
    m = env->api->message_new(env->self, (const char *)sqlite3_column_text(st, col + 1), payload,
                              (uint32_t)len, sqlite3_column_int(st, col + 3),
                              sqlite3_column_int(st, col + 4), props, (uint32_t)props_len, expiry,
                              (uint64_t)sqlite3_column_int64(st, col));
    if (m == NULL) {
        stats->refused++;
    }
    return m;
}

/* Counts a restore_* result: 0 ok, EINVAL refused (logged by the broker); else the error. */
static int
counted(int rc, uint64_t *ok, struct psq_restore_stats *stats)
{
    if (rc == 0) {
        (*ok)++;
    } else if (rc == -MIDGE_EINVAL) {
        stats->refused++;
        rc = 0;
    }
    return rc;
}

/* A growable list of strings or integers to delete after a query. Owns the strings. */
struct doomed {
    char **names;
    int64_t *ids;
    size_t n;
    size_t cap;
};

static int
doomed_add(struct doomed *d, const char *name, int64_t id)
{
    if (d->n == d->cap) {
        size_t cap = d->cap * 2 + 16;
        char **names = realloc(d->names, cap * sizeof(*names));

        if (names == NULL) {
            return -MIDGE_ENOMEM;
        }
        d->names = names;
        int64_t *ids = realloc(d->ids, cap * sizeof(*ids));
        if (ids == NULL) {
            return -MIDGE_ENOMEM;
        }
        d->ids = ids;
        d->cap = cap;
    }
    d->names[d->n] = name != NULL ? strdup(name) : NULL;
    if (name != NULL && d->names[d->n] == NULL) {
        return -MIDGE_ENOMEM;
    }
    d->ids[d->n++] = id;
    return 0;
}

static void
doomed_free(struct doomed *d)
{
    size_t i;

    for (i = 0; i < d->n; i++) {
        free(d->names[i]);
    }
    free(d->names);
    free(d->ids);
    memset(d, 0, sizeof(*d));
}

/* Session rows and what restore does with them. */
struct session_row {
    char *client_id;
    uint32_t expiry;
    int protocol;
    uint32_t expires_in;
};

/*
 * Reads the sessions: the live ones into *rows, the expired ones into
 * *gone. A session that was connected when the broker stopped gets its
 * whole expiry interval from now: its disconnect time is unknown.
 */
static int
read_sessions(sqlite3 *db, int64_t now, struct session_row **rows, size_t *n, struct doomed *gone)
{
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc;

    *rows = NULL;
    *n = 0;
    rc = sqlite3_prepare_v2(db, "SELECT client_id, expiry, protocol, connected, disconnected_at "
                                "FROM sessions", -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        int64_t expiry = sqlite3_column_int64(st, 1);
        int connected = sqlite3_column_int(st, 3);
        int64_t left = expiry;

        rc = SQLITE_OK;
        if (expiry != NEVER && !connected && sqlite3_column_type(st, 4) != SQLITE_NULL) {
            int64_t elapsed = now - sqlite3_column_int64(st, 4);

            left = expiry - (elapsed > 0 ? elapsed : 0);
            if (left <= 0) {
                if (doomed_add(gone, id, 0) != 0) {
                    rc = SQLITE_NOMEM;
                }
                continue;
            }
        }
        if (*n == cap) {
            struct session_row *bigger = realloc(*rows, (cap = cap * 2 + 64) * sizeof(**rows));

            if (bigger == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            *rows = bigger;
        }
        (*rows)[*n].client_id = strdup(id);
        (*rows)[*n].expiry = (uint32_t)expiry;
        (*rows)[*n].protocol = sqlite3_column_int(st, 2);
        (*rows)[*n].expires_in = (uint32_t)left;
        if ((*rows)[*n].client_id == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        (*n)++;
    }
    if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Deletes what expired, in one transaction. */
static int
delete_expired(struct psq_store *store, sqlite3 *db, const struct doomed *sessions,
               const struct doomed *retained, const struct doomed *deliveries)
{
    size_t i;
    int rc;

    if (sessions->n + retained->n + deliveries->n == 0) {
        return SQLITE_OK;
    }
    rc = psq_exec(db, "BEGIN IMMEDIATE");
    for (i = 0; i < sessions->n && rc == SQLITE_OK; i++) {
        rc = psq_store_session_end(store, sessions->names[i]);
    }
    for (i = 0; i < retained->n && rc == SQLITE_OK; i++) {
        rc = psq_store_retain_clear(store, retained->names[i]);
    }
    for (i = 0; i < deliveries->n && rc == SQLITE_OK; i++) {
        rc = psq_store_delivery_done(store, (uint64_t)deliveries->ids[i]);
    }
    if (rc == SQLITE_OK) {
        rc = psq_exec(db, "COMMIT");
    }
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db)) {
        psq_exec(db, "ROLLBACK");
    }
    return rc;
}

#define MSG_COLS "m.msg_id, m.topic, m.payload, m.qos, m.retain, m.props, m.expire_at"

/* Restores everything; see restore.h. */
int
psq_restore(const struct psq_env *env, sqlite3 *db, struct psq_store *store, const char *path,
            struct psq_restore_stats *stats)
{
    const struct midge_api *api = env->api;
    midge_plugin *self = env->self;
    int64_t now = psq_wall_now();
    struct session_row *sessions = NULL;
    size_t nsessions = 0;
    struct doomed gone_sessions = {0};
    struct doomed gone_retained = {0};
    struct doomed gone_deliveries = {0};
    struct msg_cache cache = {0};
    sqlite3_stmt *st = NULL;
    const char *what = "sessions";
    size_t i;
    int rc;
    int arc = 0; /* the broker's answer (negative: stop) */

    memset(stats, 0, sizeof(*stats));
    rc = read_sessions(db, now, &sessions, &nsessions, &gone_sessions);
    if (rc == SQLITE_OK) {
        /* Gone before anything else is read: their rows must not reach the broker. */
        stats->expired += gone_sessions.n;
        rc = delete_expired(store, db, &gone_sessions, &gone_retained, &gone_deliveries);
    }
    if (rc != SQLITE_OK) {
        goto out;
    }
    for (i = 0; i < nsessions && arc == 0; i++) {
        arc = counted(api->restore_session(self, sessions[i].client_id, sessions[i].expiry,
                                           sessions[i].protocol, sessions[i].expires_in),
                      &stats->sessions, stats);
    }
    /* Joined with sessions: rows of a session that is not there (bad data) stay behind. */
    what = "subscriptions";
    rc = sqlite3_prepare_v2(db, "SELECT s.client_id, s.filter, s.options, s.sub_id FROM "
                                "subscriptions s JOIN sessions USING(client_id)", -1, &st, NULL);
    while (rc == SQLITE_OK && arc == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        arc = counted(api->restore_subscription(self, (const char *)sqlite3_column_text(st, 0),
                                                (const char *)sqlite3_column_text(st, 1),
                                                sqlite3_column_int(st, 2),
                                                (uint32_t)sqlite3_column_int64(st, 3)),
                      &stats->subscriptions, stats);
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc != SQLITE_OK && rc != SQLITE_DONE) || arc != 0) {
        goto out;
    }

    what = "retained messages";
    rc = sqlite3_prepare_v2(db, "SELECT r.topic, " MSG_COLS " FROM retained r JOIN messages m "
                                "USING(msg_id)", -1, &st, NULL);
    while (rc == SQLITE_OK && arc == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t expire_at = sqlite3_column_int64(st, 7);
        const midge_message *m;

        rc = SQLITE_OK;
        if (expire_at > 0 && expire_at <= now) {
            stats->expired++;
            if (doomed_add(&gone_retained, (const char *)sqlite3_column_text(st, 0), 0) != 0) {
                arc = -MIDGE_ENOMEM;
            }
            continue;
        }
        m = row_message(env, st, 1, now, stats);
        if (m != NULL) {
            arc = counted(api->restore_retained(self, m), &stats->retained, stats);
            api->message_unref(m);
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc != SQLITE_OK && rc != SQLITE_DONE) || arc != 0) {
        goto out;
    }

    what = "queued messages";
    /*
     * A delivery carries its message's columns (topic NOT NULL) or names a
     * messages row; one without either (bad data) stays behind, as with
     * the inner join of schema version 1.
     */
    rc = sqlite3_prepare_v2(db, "SELECT s.client_id, d.delivery_id, d.qos, d.retain, d.state, "
                                "d.packet_id, d.msg_id, coalesce(d.topic, m.topic), "
                                "coalesce(d.payload, m.payload), coalesce(d.msg_qos, m.qos), "
                                "coalesce(d.msg_retain, m.retain), "
                                "CASE WHEN d.topic IS NULL THEN m.props ELSE d.props END, "
                                "coalesce(d.expire_at, m.expire_at) FROM sessions s "
                                "JOIN deliveries d ON d.sess_key = s.sess_key "
                                "LEFT JOIN messages m ON d.topic IS NULL AND m.msg_id = d.msg_id "
                                "WHERE d.topic IS NOT NULL OR m.msg_id IS NOT NULL "
                                "ORDER BY s.client_id, d.seq", -1, &st, NULL);
    while (rc == SQLITE_OK && arc == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t expire_at = sqlite3_column_int64(st, 12);
        int state = sqlite3_column_int(st, 4);
        uint64_t msg_id = (uint64_t)sqlite3_column_int64(st, 6);
        const midge_message *m;
        size_t slot;

        rc = SQLITE_OK;
        /* A queued message that expired is dropped; one in flight is the broker's to finish. */
        if (state == MIDGE_DELIVERY_QUEUED && expire_at > 0 && expire_at <= now) {
            stats->expired++;
            if (doomed_add(&gone_deliveries, NULL, sqlite3_column_int64(st, 1)) != 0) {
                arc = -MIDGE_ENOMEM;
            }
            continue;
        }
        if (cache.used * 2 >= cache.cap && cache_grow(&cache) != 0) {
            arc = -MIDGE_ENOMEM;
            break;
        }
        slot = cache_slot(&cache, msg_id);
        m = cache.msgs[slot];
        if (m == NULL) {
            m = row_message(env, st, 6, now, stats);
            if (m == NULL) {
                continue;
            }
            cache.ids[slot] = msg_id;
            cache.msgs[slot] = m;
            cache.used++;
            stats->payloads++;
        }
        arc = counted(api->restore_message(self, (const char *)sqlite3_column_text(st, 0),
                                           (uint64_t)sqlite3_column_int64(st, 1), m,
                                           sqlite3_column_int(st, 2), sqlite3_column_int(st, 3),
                                           state, (uint16_t)sqlite3_column_int(st, 5)),
                      &stats->messages, stats);
    }
    sqlite3_finalize(st);
    st = NULL;
    cache_free(env, &cache);
    memset(&cache, 0, sizeof(cache));
    if ((rc != SQLITE_OK && rc != SQLITE_DONE) || arc != 0) {
        goto out;
    }

    what = "incoming QoS 2 packet ids";
    rc = sqlite3_prepare_v2(db, "SELECT q.client_id, q.packet_id FROM qos2_in q JOIN sessions "
                                "USING(client_id)", -1, &st, NULL);
    while (rc == SQLITE_OK && arc == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        arc = counted(api->restore_qos2_in(self, (const char *)sqlite3_column_text(st, 0),
                                           (uint16_t)sqlite3_column_int(st, 1)),
                      &stats->qos2_in, stats);
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc != SQLITE_OK && rc != SQLITE_DONE) || arc != 0) {
        goto out;
    }

    what = "wills";
    rc = sqlite3_prepare_v2(db, "SELECT w.client_id, w.delay, " MSG_COLS " FROM wills w "
                                "JOIN sessions USING(client_id) JOIN messages m USING(msg_id)",
                            -1, &st, NULL);
    while (rc == SQLITE_OK && arc == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const midge_message *m = row_message(env, st, 2, now, stats);

        rc = SQLITE_OK;
        if (m != NULL) {
            arc = counted(api->restore_will(self, (const char *)sqlite3_column_text(st, 0), m,
                                            (uint32_t)sqlite3_column_int64(st, 1)),
                          &stats->wills, stats);
            api->message_unref(m);
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc != SQLITE_OK && rc != SQLITE_DONE) || arc != 0) {
        goto out;
    }

    what = "expired state";
    doomed_free(&gone_sessions);
    rc = delete_expired(store, db, &gone_sessions, &gone_retained, &gone_deliveries);
out:
    if (arc != 0) {
        api->set_error(self, "restore of %s from %s failed: the broker answered %d (%s)", what,
                       path, arc, arc == -MIDGE_ENOMEM ? "out of memory" : "error");
        rc = SQLITE_ERROR;
    } else if (rc != SQLITE_OK && rc != SQLITE_DONE) {
        api->set_error(self, "restore of %s from %s failed: %s (move it away to start "
                       "empty, or try `sqlite3 %s .recover`)", what, path,
                       sqlite3_errmsg(db), path);
    } else {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    cache_free(env, &cache);
    for (i = 0; i < nsessions; i++) {
        free(sessions[i].client_id);
    }
    free(sessions);
    doomed_free(&gone_sessions);
    doomed_free(&gone_retained);
    doomed_free(&gone_deliveries);
    return rc == SQLITE_OK ? 0 : -MIDGE_EINVAL;
}
