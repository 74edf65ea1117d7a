/*
 * Unit tests for plugins/persist-sqlite: event sequences go through the
 * persist hook into a database in a temporary directory, then the restore
 * hook reads them back into a recording fake, and the file itself is
 * inspected with SQLite.
 *
 * The shared fake broker (plugin-api/test) has no message, persistence or
 * restore functions yet, so this file carries a small fake of its own: a
 * `struct midge_api` with logging, options, messages (reference-counted, so
 * a leaked or double-dropped reference fails a test), persist_durable /
 * persist_failing that record what they get, and restore_* calls that
 * record one line of text each.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>

#include <cmocka.h>
#include <sqlite3.h>

#include <midge/plugin.h>

#include "idmap.h" /* test_idmap_matches_reference */
#include "queue.h" /* test_queue_folds_at_push drives the queue directly */

#define WAIT_MS 20000 /* generous: sanitizers and a busy 2-core machine are slow */
#define NEVER 0xFFFFFFFFu

/* ---- The fake broker ------------------------------------------------------------ */

struct midge_message {
    atomic_int refs;
    uint64_t id;
    char *topic;
    void *payload;
    uint32_t len;
    int qos;
    int retain;
    void *props;
    uint32_t props_len;
    uint32_t expiry;
};

/* One fake broker and its one plugin instance. */
struct midge_plugin {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const char *keys[8];
    const char *values[8];
    int nopts;
    int in_init;
    char error[1024];
    const struct midge_hooks *hooks;
    void *state;
    char **logs;              /* Protected by lock. */
    size_t nlogs;
    uint64_t durable;         /* highest seq reported. Protected by lock. */
    int durable_backwards;    /* a report went below an earlier one */
    int failing;              /* last persist_failing value */
    int failing_calls;
    char **recs;              /* restore_* calls as text */
    size_t nrecs;
    const char *refuse_client; /* restore_session returns EINVAL for it */
    int message_new_calls;
    uint64_t seq;             /* last seq sent. Protected by lock (the broker's lock in midge). */
};

static atomic_int live_messages;

static void
addline(char ***v, size_t *n, const char *line)
{
    *v = realloc(*v, (*n + 1) * sizeof(**v));
    assert_non_null(*v);
    (*v)[(*n)++] = strdup(line);
}

static void
fake_log(midge_plugin *self, int level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (getenv("MIDGE_TEST_LOG") != NULL) {
        fprintf(stderr, "log %d: %s\n", level, buf);
    }
    pthread_mutex_lock(&self->lock);
    addline(&self->logs, &self->nlogs, buf);
    pthread_mutex_unlock(&self->lock);
}

static const char *
fake_option(midge_plugin *self, const char *key)
{
    int i;

    assert_true(self->in_init); /* options are read in init and reload only */
    for (i = 0; i < self->nopts; i++) {
        if (strcmp(self->keys[i], key) == 0) {
            return self->values[i];
        }
    }
    return NULL;
}

static void
fake_set_error(midge_plugin *self, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(self->error, sizeof(self->error), fmt, ap);
    va_end(ap);
}

static int
fake_hooks_set(midge_plugin *self, const struct midge_hooks *hooks)
{
    self->hooks = hooks;
    return 0;
}

static const char *
m_topic(const midge_message *m)
{
    return m->topic;
}

static const void *
m_payload(const midge_message *m, uint32_t *len)
{
    *len = m->len;
    return m->len > 0 ? m->payload : NULL;
}

static int
m_qos(const midge_message *m)
{
    return m->qos;
}

static int
m_retain(const midge_message *m)
{
    return m->retain;
}

static const midge_message *
m_ref(const midge_message *m)
{
    atomic_fetch_add(&((midge_message *)m)->refs, 1);
    return m;
}

static void
m_unref(const midge_message *cm)
{
    midge_message *m = (midge_message *)cm;
    int before = atomic_fetch_sub(&m->refs, 1);

    assert_true(before >= 1);
    if (before == 1) {
        free(m->topic);
        free(m->payload);
        free(m->props);
        free(m);
        atomic_fetch_sub(&live_messages, 1);
    }
}

static uint64_t
m_id(const midge_message *m)
{
    return m->id;
}

static const void *
m_props(const midge_message *m, uint32_t *len)
{
    *len = m->props_len;
    return m->props;
}

static uint32_t
m_expiry(const midge_message *m)
{
    return m->expiry;
}

static const midge_message *
m_new(midge_plugin *self, const char *topic, const void *payload, uint32_t len, int qos,
      int retain, const void *props, uint32_t props_len, uint32_t expiry, uint64_t id)
{
    midge_message *m = calloc(1, sizeof(*m));

    assert_non_null(m);
    if (self != NULL) {
        self->message_new_calls++;
    }
    atomic_init(&m->refs, 1);
    m->id = id;
    m->topic = strdup(topic);
    m->payload = malloc(len + 1);
    memcpy(m->payload, len > 0 ? payload : "", len);
    ((char *)m->payload)[len] = '\0';
    m->len = len;
    m->qos = qos;
    m->retain = retain;
    if (props_len > 0) {
        m->props = malloc(props_len);
        memcpy(m->props, props, props_len);
        m->props_len = props_len;
    }
    m->expiry = expiry;
    atomic_fetch_add(&live_messages, 1);
    return m;
}

static void
fake_durable(midge_plugin *self, uint64_t seq)
{
    pthread_mutex_lock(&self->lock);
    if (seq < self->durable) {
        self->durable_backwards = 1;
    }
    self->durable = seq;
    pthread_mutex_unlock(&self->lock);
    pthread_cond_broadcast(&self->cond);
}

static void
fake_failing(midge_plugin *self, int failing)
{
    pthread_mutex_lock(&self->lock);
    self->failing = failing;
    self->failing_calls++;
    pthread_mutex_unlock(&self->lock);
    pthread_cond_broadcast(&self->cond);
}

static void
rec(midge_plugin *self, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    addline(&self->recs, &self->nrecs, buf);
}

static int
r_session(midge_plugin *self, const char *client_id, uint32_t expiry, int protocol,
          uint32_t expires_in)
{
    if (self->refuse_client != NULL && strcmp(client_id, self->refuse_client) == 0) {
        return -MIDGE_EINVAL;
    }
    rec(self, "session %s expiry=%u protocol=%d", client_id, expiry, protocol);
    rec(self, "expires_in %s %u", client_id, expires_in);
    return 0;
}

static int
r_subscription(midge_plugin *self, const char *client_id, const char *filter, int options,
               uint32_t sub_id)
{
    rec(self, "sub %s %s options=%d id=%u", client_id, filter, options, sub_id);
    return 0;
}

static void
msg_text(const midge_message *m, char *buf, size_t size)
{
    snprintf(buf, size, "[%llu %s '%s' qos=%d retain=%d props=%u expiry=%s]",
             (unsigned long long)m->id, m->topic, (const char *)m->payload, m->qos, m->retain,
             m->props_len, m->expiry == 0 ? "0" : "set");
}

static int
r_retained(midge_plugin *self, const midge_message *msg)
{
    char t[256];

    msg_text(msg, t, sizeof(t));
    rec(self, "retained %s", t);
    return 0;
}

static int
r_message(midge_plugin *self, const char *client_id, uint64_t delivery_id,
          const midge_message *msg, int qos, int retain, int state, uint16_t packet_id)
{
    char t[256];

    msg_text(msg, t, sizeof(t));
    rec(self, "msg %s d=%llu qos=%d retain=%d state=%d pid=%u %s", client_id,
        (unsigned long long)delivery_id, qos, retain, state, packet_id, t);
    return 0;
}

static int
r_qos2_in(midge_plugin *self, const char *client_id, uint16_t packet_id)
{
    rec(self, "qos2_in %s %u", client_id, packet_id);
    return 0;
}

static int
r_will(midge_plugin *self, const char *client_id, const midge_message *will, uint32_t delay)
{
    char t[256];

    msg_text(will, t, sizeof(t));
    rec(self, "will %s delay=%u %s", client_id, delay, t);
    return 0;
}

static struct midge_api fake_api;

static void
api_init(void)
{
    memset(&fake_api, 0, sizeof(fake_api));
    fake_api.size = sizeof(fake_api);
    fake_api.abi_major = MIDGE_ABI_MAJOR;
    fake_api.abi_minor = MIDGE_ABI_MINOR;
    fake_api.log = fake_log;
    fake_api.option = fake_option;
    fake_api.set_error = fake_set_error;
    fake_api.hooks_set = fake_hooks_set;
    fake_api.message_topic = m_topic;
    fake_api.message_payload = m_payload;
    fake_api.message_qos = m_qos;
    fake_api.message_retain = m_retain;
    fake_api.message_ref = m_ref;
    fake_api.message_unref = m_unref;
    fake_api.message_id = m_id;
    fake_api.message_properties = m_props;
    fake_api.message_expiry = m_expiry;
    fake_api.message_new = m_new;
    fake_api.persist_durable = fake_durable;
    fake_api.persist_failing = fake_failing;
    fake_api.restore_session = r_session;
    fake_api.restore_subscription = r_subscription;
    fake_api.restore_retained = r_retained;
    fake_api.restore_message = r_message;
    fake_api.restore_qos2_in = r_qos2_in;
    fake_api.restore_will = r_will;
}

/* ---- Fixture -------------------------------------------------------------------- */

struct fixture {
    char dir[64];
    char path[128];
    midge_plugin p;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    api_init();
    snprintf(f->dir, sizeof(f->dir), "/tmp/psq-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/midge.db", f->dir);
    pthread_mutex_init(&f->p.lock, NULL);
    pthread_cond_init(&f->p.cond, NULL);
    atomic_store(&live_messages, 0);
    *state = f;
    return 0;
}

static void
lines_free(char ***v, size_t *n)
{
    size_t i;

    for (i = 0; i < *n; i++) {
        free((*v)[i]);
    }
    free(*v);
    *v = NULL;
    *n = 0;
}

static void
unload(struct fixture *f)
{
    if (f->p.state != NULL) {
        midge_plugin_cleanup(&f->p, f->p.state);
        f->p.state = NULL;
    }
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[160];

    unload(f);
    lines_free(&f->p.logs, &f->p.nlogs);
    lines_free(&f->p.recs, &f->p.nrecs);
    snprintf(cmd, sizeof(cmd), "chmod -R u+w %s; rm -rf %s", f->dir, f->dir);
    assert_int_equal(system(cmd), 0);
    /* Every reference the plugin took was dropped. */
    assert_int_equal(atomic_load(&live_messages), 0);
    free(f);
    return 0;
}

static void
opt(struct fixture *f, const char *key, const char *value)
{
    int i;

    for (i = 0; i < f->p.nopts; i++) {
        if (strcmp(f->p.keys[i], key) == 0) {
            f->p.values[i] = value;
            return;
        }
    }
    f->p.keys[f->p.nopts] = key;
    f->p.values[f->p.nopts++] = value;
}

/* Loads the plugin with the options set (db defaults to the fixture's path). */
static int
load(struct fixture *f)
{
    int rc;

    f->p.in_init = 1;
    {
        int i, have_db = 0;

        for (i = 0; i < f->p.nopts; i++) {
            have_db |= strcmp(f->p.keys[i], "db") == 0;
        }
        if (!have_db) {
            opt(f, "db", f->path);
        }
    }
    f->p.error[0] = '\0';
    f->p.hooks = NULL;
    rc = midge_plugin_init(&f->p, &fake_api, &f->p.state);
    f->p.in_init = 0;
    if (rc != 0) {
        assert_true(f->p.error[0] != '\0'); /* a failure always explains itself */
        f->p.state = NULL;
    } else {
        assert_non_null(f->p.hooks);
    }
    return rc;
}

static int
reload(struct fixture *f)
{
    int rc;

    f->p.in_init = 1;
    rc = f->p.hooks->reload(f->p.state);
    f->p.in_init = 0;
    return rc;
}

/* Sends one event with the next seq, under the lock as the broker does. Returns its seq. */
static uint64_t
send(struct fixture *f, struct midge_persist_event ev)
{
    uint64_t seq;

    ev.size = sizeof(ev);
    pthread_mutex_lock(&f->p.lock);
    seq = ev.seq = ++f->p.seq;
    pthread_mutex_unlock(&f->p.lock);
    f->p.hooks->persist(f->p.state, &ev);
    return seq;
}

static uint64_t
session(struct fixture *f, const char *client, uint32_t expiry, int connected)
{
    return send(f, (struct midge_persist_event){.type = MIDGE_P_SESSION, .client_id = client,
                                                .expiry = expiry, .connected = connected,
                                                .protocol = 5});
}

static const midge_message *
msg(const char *topic, const char *payload, uint64_t id)
{
    return m_new(NULL, topic, payload, (uint32_t)strlen(payload), 1, 0, NULL, 0, 0, id);
}

static uint64_t
queued(struct fixture *f, const char *client, uint64_t delivery, const midge_message *m)
{
    return send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_QUEUED, .client_id = client,
                                                .msg = m, .msg_id = m->id,
                                                .delivery_id = delivery, .qos = 1});
}

static int
wait_durable(struct fixture *f, uint64_t seq)
{
    struct timespec until;
    int ok;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&f->p.lock);
    while (f->p.durable < seq) {
        if (pthread_cond_timedwait(&f->p.cond, &f->p.lock, &until) != 0) {
            break;
        }
    }
    ok = f->p.durable >= seq;
    pthread_mutex_unlock(&f->p.lock);
    return ok;
}

static int
wait_failing(struct fixture *f, int value)
{
    struct timespec until;
    int ok;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&f->p.lock);
    while (f->p.failing != value) {
        if (pthread_cond_timedwait(&f->p.cond, &f->p.lock, &until) != 0) {
            break;
        }
    }
    ok = f->p.failing == value;
    pthread_mutex_unlock(&f->p.lock);
    return ok;
}

/* Unloads, loads again and runs the restore hook; the records are fresh. */
static void
restart_and_restore(struct fixture *f)
{
    unload(f);
    lines_free(&f->p.recs, &f->p.nrecs);
    assert_int_equal(load(f), 0);
    assert_int_equal(f->p.hooks->restore(f->p.state), 0);
}

static size_t
count_logs(struct fixture *f, const char *needle)
{
    size_t i, n = 0;

    pthread_mutex_lock(&f->p.lock);
    for (i = 0; i < f->p.nlogs; i++) {
        n += strstr(f->p.logs[i], needle) != NULL;
    }
    pthread_mutex_unlock(&f->p.lock);
    return n;
}

/* The log line containing needle (borrowed), or NULL. */
static const char *
find_log(struct fixture *f, const char *needle)
{
    size_t i;

    for (i = 0; i < f->p.nlogs; i++) {
        if (strstr(f->p.logs[i], needle) != NULL) {
            return f->p.logs[i];
        }
    }
    return NULL;
}

static int
has_rec(struct fixture *f, const char *line)
{
    size_t i;

    for (i = 0; i < f->p.nrecs; i++) {
        if (strcmp(f->p.recs[i], line) == 0) {
            return 1;
        }
    }
    fprintf(stderr, "missing record: %s\nrecords:\n", line);
    for (i = 0; i < f->p.nrecs; i++) {
        fprintf(stderr, "  %s\n", f->p.recs[i]);
    }
    return 0;
}

static size_t
count_recs(struct fixture *f, const char *prefix)
{
    size_t i, n = 0;

    for (i = 0; i < f->p.nrecs; i++) {
        n += strncmp(f->p.recs[i], prefix, strlen(prefix)) == 0;
    }
    return n;
}

/* A query on the database file through a connection of the test's own. */
static long long
db_int(struct fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;

    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void
db_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fail_msg("%s: %s", sql, err);
    }
    sqlite3_close(db);
}

/* The whole file, to prove a refused file was not touched. Caller frees. */
static char *
slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static int
exists(const char *dir, const char *name)
{
    char p[256];

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* ---- Options -------------------------------------------------------------------- */

static void
test_options_refused(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *key;
        const char *value;
        const char *error;
    } cases[] = {
        {"db", "", "option db is required"},
        {"durability", "paranoid", "option durability: 'paranoid' is not full, batch or none"},
        {"batch_ms", "0", "option batch_ms: '0' is not a number from 1 to 10000"},
        {"batch_ms", "10ms", "option batch_ms: '10ms'"},
        {"max_pending", "-5", "option max_pending: '-5'"},
        {"max_size_mb", "x", "option max_size_mb: 'x'"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        f->p.nopts = 0;
        opt(f, "db", f->path);
        opt(f, cases[i].key, cases[i].value);
        assert_int_not_equal(load(f), 0);
        if (strstr(f->p.error, cases[i].error) == NULL) {
            fail_msg("case %zu: error '%s' lacks '%s'", i, f->p.error, cases[i].error);
        }
    }
    /* Nothing was created for a refused configuration. */
    assert_false(exists(f->dir, "midge.db"));
}

/* ---- Round trip ----------------------------------------------------------------- */

static void
test_roundtrip(void **state)
{
    struct fixture *f = *state;
    static const uint8_t props[] = {0x03, 0x00, 0x04, 't', 'e', 'x', 't'}; /* content type */
    const midge_message *m1 = msg("jobs/1", "one", 101);
    const midge_message *m2 = msg("jobs/2", "two", 102);
    const midge_message *m3 = msg("jobs/3", "three", 103);
    const midge_message *r = m_new(NULL, "status/a", "up", 2, 1, 1, props, sizeof(props), 0, 104);
    const midge_message *w = msg("wills/c1", "gone", 105);
    uint64_t last;

    assert_int_equal(load(f), 0);
    session(f, "c1", NEVER, 0);
    session(f, "c2", 3600, 1);
    send(f, (struct midge_persist_event){.type = MIDGE_P_SUB_ADD, .client_id = "c1",
                                         .filter = "jobs/#", .options = 0x21, .sub_id = 7});
    send(f, (struct midge_persist_event){.type = MIDGE_P_SUB_ADD, .client_id = "c1",
                                         .filter = "x/+", .options = 1});
    send(f, (struct midge_persist_event){.type = MIDGE_P_SUB_ADD, .client_id = "c1",
                                         .filter = "x/+", .options = 2}); /* upsert */
    send(f, (struct midge_persist_event){.type = MIDGE_P_SUB_ADD, .client_id = "c2",
                                         .filter = "gone", .options = 1});
    send(f, (struct midge_persist_event){.type = MIDGE_P_SUB_REMOVE, .client_id = "c2",
                                         .filter = "gone"});
    send(f, (struct midge_persist_event){.type = MIDGE_P_RETAIN_SET, .msg = r, .msg_id = 104});
    /* Queue order is the order of the events, not of the delivery ids. */
    queued(f, "c1", 12, m1);
    queued(f, "c1", 11, m2);
    queued(f, "c1", 13, m3);
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_SENT, .delivery_id = 12,
                                         .packet_id = 5});
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_SENT, .delivery_id = 11,
                                         .packet_id = 6});
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_RELEASED, .delivery_id = 11,
                                         .packet_id = 6});
    send(f, (struct midge_persist_event){.type = MIDGE_P_QOS2_IN, .client_id = "c2",
                                         .packet_id = 77});
    send(f, (struct midge_persist_event){.type = MIDGE_P_QOS2_IN, .client_id = "c2",
                                         .packet_id = 78});
    send(f, (struct midge_persist_event){.type = MIDGE_P_QOS2_IN_DONE, .client_id = "c2",
                                         .packet_id = 77});
    send(f, (struct midge_persist_event){.type = MIDGE_P_WILL_SET, .client_id = "c1", .msg = w,
                                         .msg_id = 105, .expiry = 30});
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_WILL_SET, .client_id = "c2",
                                                .msg = w, .msg_id = 105, .expiry = 0});
    assert_true(wait_durable(f, last));
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_WILL_CLEAR, .client_id = "c2"});
    assert_true(wait_durable(f, last));
    m_unref(m1);
    m_unref(m2);
    m_unref(m3);
    m_unref(r);
    m_unref(w);

    restart_and_restore(f);
    assert_true(has_rec(f, "session c1 expiry=4294967295 protocol=5"));
    assert_true(has_rec(f, "session c2 expiry=3600 protocol=5"));
    /* c2 was connected when the broker stopped: its whole interval counts from now. */
    assert_true(has_rec(f, "expires_in c2 3600"));
    assert_true(has_rec(f, "sub c1 jobs/# options=33 id=7"));
    assert_true(has_rec(f, "sub c1 x/+ options=2 id=0"));
    assert_int_equal(count_recs(f, "sub "), 2);
    assert_true(has_rec(f, "retained [104 status/a 'up' qos=1 retain=1 props=7 expiry=0]"));
    assert_int_equal(count_recs(f, "msg "), 3);
    /* Records come in order: the first msg record is delivery 12 (queued first), and so on. */
    {
        size_t i, k = 0;
        static const char *const want[] = {
            "msg c1 d=12 qos=1 retain=0 state=1 pid=5 [101 jobs/1 'one' qos=1 retain=0 props=0 expiry=0]",
            "msg c1 d=11 qos=1 retain=0 state=2 pid=6 [102 jobs/2 'two' qos=1 retain=0 props=0 expiry=0]",
            "msg c1 d=13 qos=1 retain=0 state=0 pid=0 [103 jobs/3 'three' qos=1 retain=0 props=0 expiry=0]",
        };

        for (i = 0; i < f->p.nrecs; i++) {
            if (strncmp(f->p.recs[i], "msg ", 4) == 0) {
                assert_string_equal(f->p.recs[i], want[k]);
                k++;
            }
        }
        assert_int_equal(k, 3);
    }
    assert_true(has_rec(f, "qos2_in c2 78"));
    assert_int_equal(count_recs(f, "qos2_in "), 1);
    assert_true(has_rec(f, "will c1 delay=30 [105 wills/c1 'gone' qos=1 retain=0 props=0 expiry=0]"));
    assert_int_equal(count_recs(f, "will "), 1);
    /* Sessions come before everything that belongs to them. */
    assert_int_equal(strncmp(f->p.recs[0], "session ", 8), 0);
    assert_non_null(find_log(f, "restored db="));
    assert_false(f->p.durable_backwards);

    /* The next broker process numbers its events from 1 again: its queue still goes last. */
    f->p.seq = 0;
    m1 = msg("jobs/4", "four", 106);
    last = queued(f, "c1", 14, m1);
    assert_true(wait_durable(f, last));
    m_unref(m1);
    restart_and_restore(f);
    {
        size_t i;
        const char *lastmsg = NULL;

        for (i = 0; i < f->p.nrecs; i++) {
            if (strncmp(f->p.recs[i], "msg ", 4) == 0) {
                lastmsg = f->p.recs[i];
            }
        }
        assert_non_null(lastmsg);
        assert_non_null(strstr(lastmsg, "d=14 "));
    }
}

/* ---- Session end ---------------------------------------------------------------- */

static void
test_session_end_forgets_everything(void **state)
{
    struct fixture *f = *state;
    const midge_message *m = msg("a", "payload", 1);
    const midge_message *w = msg("w", "will", 2);
    uint64_t last;

    assert_int_equal(load(f), 0);
    session(f, "c1", 60, 0);
    send(f, (struct midge_persist_event){.type = MIDGE_P_SUB_ADD, .client_id = "c1",
                                         .filter = "a", .options = 1});
    queued(f, "c1", 1, m);
    send(f, (struct midge_persist_event){.type = MIDGE_P_QOS2_IN, .client_id = "c1",
                                         .packet_id = 3});
    send(f, (struct midge_persist_event){.type = MIDGE_P_WILL_SET, .client_id = "c1", .msg = w,
                                         .msg_id = 2});
    send(f, (struct midge_persist_event){.type = MIDGE_P_SESSION_END, .client_id = "c1"});
    /* Late events of a worker that had not seen the end yet: ignored. */
    queued(f, "c1", 2, m);
    send(f, (struct midge_persist_event){.type = MIDGE_P_SUB_ADD, .client_id = "c1",
                                         .filter = "late", .options = 1});
    send(f, (struct midge_persist_event){.type = MIDGE_P_QOS2_IN, .client_id = "c1",
                                         .packet_id = 4});
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_WILL_SET, .client_id = "c1",
                                                .msg = w, .msg_id = 2});
    assert_true(wait_durable(f, last));
    m_unref(m);
    m_unref(w);
    assert_int_equal(db_int(f, "SELECT count(*) FROM sessions"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM subscriptions"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM qos2_in"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM wills"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages"), 0);
    restart_and_restore(f);
    assert_int_equal(f->p.nrecs, 0);
}

/* ---- Payloads stored once ------------------------------------------------------- */

static void
test_payload_stored_once(void **state)
{
    struct fixture *f = *state;
    char big[4096];
    char id[32];
    const midge_message *m;
    uint64_t last = 0;
    int i;

    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    m = msg("fan/out", big, 500);
    assert_int_equal(load(f), 0);
    for (i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "s%04d", i);
        session(f, id, NEVER, 0);
    }
    for (i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "s%04d", i);
        last = queued(f, id, 1000 + (uint64_t)i, m);
    }
    /* The same delivery twice (a replayed event) is one row and one reference. */
    last = queued(f, "s0000", 1000, m);
    /* The retained message is the same message: one more reference, same row. */
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_RETAIN_SET, .msg = m,
                                                .msg_id = 500});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages"), 1);
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 500"), 1001);
    assert_int_equal(db_int(f, "SELECT sum(length(payload)) FROM messages"), sizeof(big) - 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries"), 1000);

    restart_and_restore(f);
    assert_int_equal(count_recs(f, "msg "), 1000);
    /* One broker message for the thousand deliveries plus one for the retained row. */
    assert_int_equal(f->p.message_new_calls, 2);
    assert_non_null(find_log(f, "messages=1000 payloads=1 "));

    for (i = 0; i < 1000; i++) {
        last = send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE,
                                                    .delivery_id = 1000 + (uint64_t)i});
    }
    assert_true(wait_durable(f, last));
    /* The retained message still needs the row. */
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 500"), 1);
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_RETAIN_CLEAR,
                                                .filter = "fan/out"});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages"), 0);
    m_unref(m);
}

static void
test_retain_replace_releases_old(void **state)
{
    struct fixture *f = *state;
    const midge_message *a = msg("t", "first", 1);
    const midge_message *b = msg("t", "second", 2);
    uint64_t last;

    assert_int_equal(load(f), 0);
    send(f, (struct midge_persist_event){.type = MIDGE_P_RETAIN_SET, .msg = a, .msg_id = 1});
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_RETAIN_SET, .msg = b,
                                                .msg_id = 2});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages"), 1);
    assert_int_equal(db_int(f, "SELECT msg_id FROM retained WHERE topic = 't'"), 2);
    m_unref(a);
    m_unref(b);
    restart_and_restore(f);
    assert_true(has_rec(f, "retained [2 t 'second' qos=1 retain=0 props=0 expiry=0]"));
    assert_int_equal(count_recs(f, "retained "), 1);
}

/* ---- Schema version 1 databases ------------------------------------------------- */

static void refused_untouched(struct fixture *f, const char *error);

/*
 * A database as persist-sqlite schema version 1 wrote it (the DDL is that
 * version's, verbatim): two sessions with subscriptions, queued, inflight
 * (SENT) and released deliveries, a message shared by two deliveries, a
 * retained message, an incoming QoS 2 id and a will.
 */
static const char *const v1_database =
    "PRAGMA journal_mode = WAL;"
    "PRAGMA application_id = 1296320325;" /* 0x4d444745, "MDGE" */
    "BEGIN;"
    "CREATE TABLE schema_version(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);"
    "CREATE TABLE sessions(client_id TEXT PRIMARY KEY NOT NULL, expiry INTEGER NOT NULL,"
    "  protocol INTEGER NOT NULL, connected INTEGER NOT NULL, disconnected_at INTEGER)"
    "  WITHOUT ROWID;"
    "CREATE TABLE subscriptions(client_id TEXT NOT NULL, filter TEXT NOT NULL,"
    "  options INTEGER NOT NULL, sub_id INTEGER NOT NULL, PRIMARY KEY(client_id, filter))"
    "  WITHOUT ROWID;"
    "CREATE TABLE messages(msg_id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,"
    "  qos INTEGER NOT NULL, retain INTEGER NOT NULL, props BLOB, expire_at INTEGER NOT NULL,"
    "  refs INTEGER NOT NULL);"
    "CREATE TABLE deliveries(delivery_id INTEGER PRIMARY KEY, client_id TEXT NOT NULL,"
    "  msg_id INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
    "  state INTEGER NOT NULL, packet_id INTEGER NOT NULL, seq INTEGER NOT NULL);"
    "CREATE INDEX deliveries_queue ON deliveries(client_id, seq);"
    "CREATE TABLE retained(topic TEXT PRIMARY KEY NOT NULL, msg_id INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE TABLE qos2_in(client_id TEXT NOT NULL, packet_id INTEGER NOT NULL,"
    "  PRIMARY KEY(client_id, packet_id)) WITHOUT ROWID;"
    "CREATE TABLE wills(client_id TEXT PRIMARY KEY NOT NULL, msg_id INTEGER NOT NULL,"
    "  delay INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO schema_version VALUES(1, 1700000000);"
    "INSERT INTO sessions VALUES('bob', 4294967295, 4, 1, NULL),"
    "  ('alice', 4294967295, 5, 0, strftime('%s', 'now'));"
    "INSERT INTO subscriptions VALUES('alice', 'q/#', 1, 7), ('bob', 'q/1', 2, 0);"
    "INSERT INTO messages VALUES(10, 'q/1', 'one', 2, 0, NULL, 0, 2),"
    "  (11, 'q/2', 'two', 1, 0, x'0102', 0, 1), (12, 'r/t', 'kept', 1, 1, NULL, 0, 1),"
    "  (13, 'will/bob', 'bye', 0, 0, NULL, 0, 1);"
    "INSERT INTO deliveries VALUES(3, 'alice', 11, 1, 0, 1, 9, 6),"
    "  (1, 'alice', 10, 2, 0, 0, 0, 5), (2, 'bob', 10, 2, 0, 2, 4, 7);"
    "INSERT INTO retained VALUES('r/t', 12);"
    "INSERT INTO qos2_in VALUES('alice', 3);"
    "INSERT INTO wills VALUES('bob', 13, 5);"
    "COMMIT;";

/* Position of the record `line` (SIZE_MAX: none). */
static size_t
rec_index(struct fixture *f, const char *line)
{
    size_t i;

    for (i = 0; i < f->p.nrecs; i++) {
        if (strcmp(f->p.recs[i], line) == 0) {
            return i;
        }
    }
    return (size_t)-1;
}

static void
test_migrates_version_1(void **state)
{
    struct fixture *f = *state;
    const midge_message *m = msg("q/3", "three", 20);
    uint64_t last;

    db_exec(f->path, v1_database);
    restart_and_restore(f);
    assert_non_null(find_log(f, "migrated to schema version 2"));
    assert_non_null(find_log(f, "migrated to schema version 3"));
    assert_non_null(find_log(f, "migrated to schema version 4"));
    assert_int_equal(db_int(f, "SELECT max(version) FROM schema_version"), 4);
    assert_int_equal(count_recs(f, "session "), 2);
    assert_true(has_rec(f, "session alice expiry=4294967295 protocol=5"));
    assert_true(has_rec(f, "session bob expiry=4294967295 protocol=4"));
    assert_int_equal(count_recs(f, "sub "), 2);
    assert_true(has_rec(f, "sub alice q/# options=1 id=7"));
    assert_true(has_rec(f, "sub bob q/1 options=2 id=0"));
    assert_int_equal(count_recs(f, "msg "), 3);
    assert_true(has_rec(f, "msg alice d=1 qos=2 retain=0 state=0 pid=0 "
                           "[10 q/1 'one' qos=2 retain=0 props=0 expiry=0]"));
    assert_true(has_rec(f, "msg alice d=3 qos=1 retain=0 state=1 pid=9 "
                           "[11 q/2 'two' qos=1 retain=0 props=2 expiry=0]"));
    assert_true(has_rec(f, "msg bob d=2 qos=2 retain=0 state=2 pid=4 "
                           "[10 q/1 'one' qos=2 retain=0 props=0 expiry=0]"));
    /* Queue order survives: alice's seq 5 before her seq 6. */
    assert_true(rec_index(f, "msg alice d=1 qos=2 retain=0 state=0 pid=0 "
                             "[10 q/1 'one' qos=2 retain=0 props=0 expiry=0]") <
                rec_index(f, "msg alice d=3 qos=1 retain=0 state=1 pid=9 "
                             "[11 q/2 'two' qos=1 retain=0 props=2 expiry=0]"));
    assert_int_equal(count_recs(f, "retained "), 1);
    assert_true(has_rec(f, "retained [12 r/t 'kept' qos=1 retain=1 props=0 expiry=0]"));
    assert_true(has_rec(f, "qos2_in alice 3"));
    assert_true(has_rec(f, "will bob delay=5 [13 will/bob 'bye' qos=0 retain=0 props=0 expiry=0]"));

    /* The migrated rows go on working: references drop, new deliveries queue after them. */
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .delivery_id = 1});
    last = queued(f, "alice", 4, m);
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 10"), 1);
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_SESSION_END, .client_id = "bob"});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages WHERE msg_id IN (10, 13)"), 0);
    unload(f); /* delivery 4 was in the young log: now in the table */
    assert_int_equal(db_int(f, "SELECT seq > 7 FROM deliveries WHERE delivery_id = 4"), 1);
    m_unref(m);
    restart_and_restore(f);
    assert_int_equal(count_recs(f, "msg "), 2);
    assert_true(rec_index(f, "msg alice d=3 qos=1 retain=0 state=1 pid=9 "
                             "[11 q/2 'two' qos=1 retain=0 props=2 expiry=0]") <
                rec_index(f, "msg alice d=4 qos=1 retain=0 state=0 pid=0 "
                             "[20 q/3 'three' qos=1 retain=0 props=0 expiry=0]"));
}

static void
test_failed_migration_leaves_version_1(void **state)
{
    struct fixture *f = *state;

    db_exec(f->path, v1_database);
    /* In the way of the migration's first new table: it fails half-way and rolls back. */
    db_exec(f->path, "CREATE TABLE deliveries_v2(x)");
    refused_untouched(f, "migration from schema version 1 to 2 failed");
    assert_int_equal(db_int(f, "SELECT max(version) FROM schema_version"), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries WHERE client_id = 'alice'"), 2);
    /* With the cause gone, the same file migrates and restores everything. */
    db_exec(f->path, "DROP TABLE deliveries_v2");
    restart_and_restore(f);
    assert_int_equal(count_recs(f, "session "), 2);
    assert_int_equal(count_recs(f, "msg "), 3);
    assert_int_equal(count_recs(f, "retained "), 1);
}

/* One persistent subscriber: the message is stored in its delivery; a second reference shares it. */
static void
test_single_delivery_holds_its_message(void **state)
{
    struct fixture *f = *state;
    const midge_message *m = msg("one/sub", "alone", 30);
    const midge_message *r = msg("two/sub", "shared later", 31);
    uint64_t last;

    assert_int_equal(load(f), 0);
    session(f, "c1", NEVER, 0);
    session(f, "c2", NEVER, 0);
    queued(f, "c1", 1, m);
    last = queued(f, "c1", 2, r);
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages"), 0);
    /* Their clients are away: straight to the table (not the young log), each with its message. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries WHERE topic IS NOT NULL"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM young"), 0);
    /* A second delivery of message 31 in a later batch: moved to messages, refs 2. */
    last = queued(f, "c2", 3, r);
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 31"), 2);
    assert_int_equal(db_int(f, "SELECT topic IS NULL FROM deliveries WHERE delivery_id = 2"), 1);
    /* A retained reference to message 30 moves it too. */
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_RETAIN_SET, .msg = m,
                                                .msg_id = 30});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 30"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries WHERE topic IS NOT NULL"), 0);
    restart_and_restore(f);
    assert_true(has_rec(f, "msg c1 d=1 qos=1 retain=0 state=0 pid=0 "
                           "[30 one/sub 'alone' qos=1 retain=0 props=0 expiry=0]"));
    assert_true(has_rec(f, "msg c2 d=3 qos=1 retain=0 state=0 pid=0 "
                           "[31 two/sub 'shared later' qos=1 retain=0 props=0 expiry=0]"));
    assert_int_equal(count_recs(f, "msg "), 3);
    /* Finishing every delivery leaves only the retained row's message. */
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .delivery_id = 1});
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .delivery_id = 2});
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .delivery_id = 3});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages"), 1);
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 30"), 1);
    m_unref(m);
    m_unref(r);
}

/* ---- Expiry across a restart ---------------------------------------------------- */

static void
test_expiry_across_restart(void **state)
{
    struct fixture *f = *state;
    const midge_message *old = m_new(NULL, "r/old", "x", 1, 1, 1, NULL, 0, 5, 1);
    const midge_message *fresh = m_new(NULL, "r/fresh", "y", 1, 1, 1, NULL, 0, 500, 2);
    const midge_message *q = m_new(NULL, "q", "z", 1, 1, 0, NULL, 0, 5, 3);
    uint64_t last;

    assert_int_equal(load(f), 0);
    session(f, "short", 10, 0);
    session(f, "long", 100, 0);
    session(f, "never", NEVER, 0);
    send(f, (struct midge_persist_event){.type = MIDGE_P_SUB_ADD, .client_id = "short",
                                         .filter = "a", .options = 1});
    queued(f, "long", 1, q);
    queued(f, "long", 2, fresh);
    send(f, (struct midge_persist_event){.type = MIDGE_P_RETAIN_SET, .msg = old, .msg_id = 1});
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_RETAIN_SET, .msg = fresh,
                                                .msg_id = 2});
    assert_true(wait_durable(f, last));
    m_unref(old);
    m_unref(fresh);
    m_unref(q);
    unload(f);
    /* The broker was down for 30 s. */
    db_exec(f->path, "UPDATE sessions SET disconnected_at = disconnected_at - 30;"
                     "UPDATE messages SET expire_at = expire_at - 30;"
                     "UPDATE deliveries SET expire_at = expire_at - 30 WHERE expire_at > 0");

    restart_and_restore(f);
    assert_int_equal(count_recs(f, "session "), 2);
    assert_true(has_rec(f, "session long expiry=100 protocol=5"));
    assert_true(has_rec(f, "session never expiry=4294967295 protocol=5"));
    {
        /* 100 - 30 = 70, one second less if the clock ticked meanwhile. */
        int ok = has_rec(f, "expires_in long 70") || has_rec(f, "expires_in long 69");

        assert_true(ok);
    }
    assert_int_equal(count_recs(f, "sub "), 0);
    assert_true(has_rec(f, "retained [2 r/fresh 'y' qos=1 retain=1 props=0 expiry=set]"));
    assert_int_equal(count_recs(f, "retained "), 1);
    assert_int_equal(count_recs(f, "msg "), 1);
    assert_true(has_rec(f, "msg long d=2 qos=1 retain=0 state=0 pid=0 [2 r/fresh 'y' qos=1 retain=1 props=0 expiry=set]"));
    /* What expired is gone from the file too. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM sessions WHERE client_id = 'short'"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM subscriptions"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM retained"), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages"), 1);
}

static void
test_refused_rows_are_skipped(void **state)
{
    struct fixture *f = *state;
    uint64_t last;

    assert_int_equal(load(f), 0);
    session(f, "bad", NEVER, 0);
    last = session(f, "good", NEVER, 0);
    assert_true(wait_durable(f, last));
    f->p.refuse_client = "bad";
    restart_and_restore(f);
    assert_true(has_rec(f, "session good expiry=4294967295 protocol=5"));
    assert_non_null(find_log(f, "refused=1 "));
}

/* ---- Files that are refused and never modified ---------------------------------- */

/* Loads must fail with `error` in the message, leaving the file byte for byte as it was. */
static void
refused_untouched(struct fixture *f, const char *error)
{
    size_t before_len, after_len;
    char *before = slurp(f->path, &before_len);
    char *after;

    assert_int_not_equal(load(f), 0);
    if (strstr(f->p.error, error) == NULL) {
        fail_msg("error '%s' lacks '%s'", f->p.error, error);
    }
    after = slurp(f->path, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    assert_false(exists(f->dir, "midge.db-wal"));
    free(before);
    free(after);
}

static void
test_refuse_not_sqlite(void **state)
{
    struct fixture *f = *state;
    FILE *fp = fopen(f->path, "w");

    assert_non_null(fp);
    fputs("retained messages, a text file that happens to be called midge.db\n", fp);
    fclose(fp);
    refused_untouched(f, "is not an SQLite database; it was not modified");
}

static void
test_refuse_foreign_sqlite(void **state)
{
    struct fixture *f = *state;

    db_exec(f->path, "CREATE TABLE sessions(x); INSERT INTO sessions VALUES(1)");
    refused_untouched(f, "an SQLite database of another application");
}

static void
test_refuse_newer_schema(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f), 0);
    unload(f);
    db_exec(f->path, "INSERT INTO schema_version VALUES(5, 0)");
    refused_untouched(f, "has schema version 5, written by a newer midge");
}

/* A young-log row that does not parse: refused at start, nothing moved or deleted. */
static void
test_refuse_damaged_young_row(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f), 0);
    unload(f);
    db_exec(f->path, "INSERT INTO young VALUES(1, x'ff', x'')");
    refused_untouched(f, "the young table (recent deliveries) is damaged; nothing was changed");
    assert_int_equal(db_int(f, "SELECT count(*) FROM young"), 1);
}

static void
test_refuse_missing_table(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f), 0);
    unload(f);
    db_exec(f->path, "DROP TABLE wills");
    refused_untouched(f, "has no table wills");
}

static void
test_refuse_corrupted(void **state)
{
    struct fixture *f = *state;
    char id[32];
    uint64_t last = 0;
    FILE *fp;
    int i;

    assert_int_equal(load(f), 0);
    for (i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "client-with-a-long-name-%06d", i);
        last = session(f, id, NEVER, 0);
    }
    assert_true(wait_durable(f, last));
    unload(f);
    /* Garbage over pages 3..6 (the header page stays valid). */
    fp = fopen(f->path, "r+b");
    assert_non_null(fp);
    fseek(fp, 3 * 4096, SEEK_SET);
    for (i = 0; i < 4 * 4096; i++) {
        fputc((i * 7919) & 0xff, fp);
    }
    fclose(fp);
    refused_untouched(f, "is corrupted");
}

static void
test_empty_file_is_a_new_database(void **state)
{
    struct fixture *f = *state;
    FILE *fp = fopen(f->path, "w");

    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(load(f), 0);
    assert_int_equal(db_int(f, "SELECT max(version) FROM schema_version"), 4);
    assert_int_equal(db_int(f, "PRAGMA application_id"), 0x4d444745);
    assert_int_equal(db_int(f, "SELECT count(*) FROM sessions"), 0);
}

static void
test_second_instance_refused(void **state)
{
    struct fixture *f = *state;
    midge_plugin other;
    void *st = NULL;

    assert_int_equal(load(f), 0);
    memset(&other, 0, sizeof(other));
    pthread_mutex_init(&other.lock, NULL);
    pthread_cond_init(&other.cond, NULL);
    other.keys[0] = "db";
    other.values[0] = f->path;
    other.nopts = 1;
    other.in_init = 1;
    assert_int_not_equal(midge_plugin_init(&other, &fake_api, &st), 0);
    assert_non_null(strstr(other.error, "is in use by another process"));
    lines_free(&other.logs, &other.nlogs);
}

static void
test_directory_created_once(void **state)
{
    struct fixture *f = *state;
    char path[192];

    snprintf(path, sizeof(path), "%s/var/midge.db", f->dir);
    opt(f, "db", path);
    assert_int_equal(load(f), 0);
    unload(f);
    /* Only the last level is created: a missing parent is an error. */
    snprintf(path, sizeof(path), "%s/no/such/midge.db", f->dir);
    opt(f, "db", path);
    assert_int_not_equal(load(f), 0);
    assert_non_null(strstr(f->p.error, "cannot create directory"));
}

/* ---- Writer: group commit, durability, failures ------------------------------- */

/* The numbers in the "closed ..." line cleanup logs. */
static void
closed_stats(struct fixture *f, unsigned long long *commits, unsigned long long *events)
{
    const char *line = find_log(f, "closed db=");

    assert_non_null(line);
    assert_non_null(strstr(line, "commits="));
    *commits = strtoull(strstr(line, "commits=") + 8, NULL, 10);
    *events = strtoull(strstr(line, "events=") + 7, NULL, 10);
}

static void
test_group_commit_batch(void **state)
{
    struct fixture *f = *state;
    unsigned long long commits, events;
    char id[32];
    uint64_t last = 0;
    int i;

    opt(f, "durability", "batch");
    opt(f, "batch_ms", "500");
    assert_int_equal(load(f), 0);
    for (i = 0; i < 2000; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        last = session(f, id, NEVER, i & 1);
    }
    assert_true(wait_durable(f, last));
    assert_false(f->p.durable_backwards);
    unload(f);
    closed_stats(f, &commits, &events);
    assert_int_equal(events, 2000);
    /* The first event may commit alone; everything else waits for the next 500 ms slot. */
    assert_true(commits <= 3);
}

/*
 * The young log's id map against a plain array: random puts, replacements
 * and deletions over a small key range, so that probe runs wrap, collide
 * and are shifted back on deletion; every key's presence and value checked.
 */
static void
test_idmap_matches_reference(void **state)
{
    enum { KEYS = 2000, OPS = 200000 }; /* up to 2,000 keys in 4,096 slots */
    static uint64_t key[KEYS];          /* random ids: their slots collide too */
    static uint64_t want[KEYS];         /* 0: absent; else value + 1 */
    struct psq_idmap m = {0};
    uint64_t rnd = 42;
    uint64_t v;
    size_t present = 0;
    int i;
    int k;

    (void)state;
    for (k = 0; k < KEYS; k++) {
        rnd = rnd * 6364136223846793005ULL + 1442695040888963407ULL;
        key[k] = rnd | 1;
    }
    for (i = 0; i < OPS; i++) {
        rnd = rnd * 6364136223846793005ULL + 1442695040888963407ULL;
        k = (int)((rnd >> 33) % KEYS);
        if ((rnd >> 20) % 3 != 0) {
            assert_int_equal(psq_idmap_put(&m, key[k], (uint64_t)i), 0);
            present += want[k] == 0;
            want[k] = (uint64_t)i + 1;
        } else {
            psq_idmap_del(&m, key[k]);
            present -= want[k] != 0;
            want[k] = 0;
        }
        assert_int_equal(psq_idmap_get(&m, key[k], &v), want[k] != 0);
        if (i % 997 == 0 || i == OPS - 1) {
            int j;

            assert_int_equal(m.n, present);
            for (j = 0; j < KEYS; j++) {
                assert_int_equal(psq_idmap_get(&m, key[j], &v), want[j] != 0);
                if (want[j] != 0) {
                    assert_int_equal(v, want[j] - 1);
                }
            }
        }
    }
    psq_idmap_clear(&m);
    assert_int_equal(psq_idmap_get(&m, key[0], &v), 0);
    psq_idmap_free(&m);
}

/*
 * The database files as a kill -9 would leave them now (the writer is idle
 * after wait_durable): copies of the file and its WAL, put back by
 * crash_restore() after the plugin is unloaded.
 */
static void
crash_image(struct fixture *f)
{
    char cmd[1200];

    snprintf(cmd, sizeof(cmd), "cp %s %s.crash && cp %s-wal %s.crash-wal", f->path, f->path,
             f->path, f->path);
    assert_int_equal(system(cmd), 0);
}

static void
crash_restore(struct fixture *f)
{
    char cmd[1200];

    unload(f);
    snprintf(cmd, sizeof(cmd), "rm -f %s-wal %s-shm && mv %s.crash %s && mv %s.crash-wal %s-wal",
             f->path, f->path, f->path, f->path, f->path, f->path);
    assert_int_equal(system(cmd), 0);
    lines_free(&f->p.recs, &f->p.nrecs);
    assert_int_equal(load(f), 0);
    assert_int_equal(f->p.hooks->restore(f->p.state), 0);
}

/*
 * Schema 4: a delivery that carries its message goes to the young log, one
 * row per batch; its state changes and its end go there too, so a delivery
 * finished within a few batches never has a deliveries row. A second
 * reference to its message gives it a row first; one still there 16
 * batches later moves to the deliveries table; a delivery to a client that
 * is away goes to the table at once; a kill -9 replays the log, a clean
 * shutdown empties it.
 */
static void
test_young_deliveries(void **state)
{
    struct fixture *f = *state;
    const midge_message *a = msg("t/a", "shared", 1);
    const midge_message *b = msg("t/b", "own", 2);
    const midge_message *c = msg("t/c", "late", 3);
    const midge_message *e = msg("t/e", "ends with c1", 5);
    const midge_message *g = msg("t/g", "while away", 6);
    uint64_t last;
    int i;

    opt(f, "durability", "batch");
    opt(f, "batch_ms", "250");
    assert_int_equal(load(f), 0);
    session(f, "c1", NEVER, 1);
    last = session(f, "c2", NEVER, 1);
    assert_true(wait_durable(f, last));
    /* One 250 ms slot: a to c1 then c2 (shared), b to c1 sent, c to c2 queued. */
    queued(f, "c1", 1, a);
    queued(f, "c2", 2, a);
    queued(f, "c1", 3, b);
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_SENT, .delivery_id = 3,
                                         .packet_id = 2});
    last = queued(f, "c2", 4, c);
    assert_true(wait_durable(f, last));
    /* Message 1 has two references: its rows are in the tables; 3 and 4 only in the log. */
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 1"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries WHERE topic IS NOT NULL"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM young"), 1);

    /* Next slot: 4 is sent, 3 finished, 5 queued for c1. Still no row for them. */
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_SENT, .delivery_id = 4,
                                         .packet_id = 7});
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .delivery_id = 3});
    last = queued(f, "c1", 5, e);
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM young"), 2);
    crash_image(f);

    /* The end of c1 ends its young delivery 5 and its row 1 (one reference less). */
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_SESSION_END, .client_id = "c1"});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 1"), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries"), 1);

    /* Sixteen batches later delivery 4 is still there: it moves, in its current state. */
    for (i = 0; i < 17; i++) {
        last = session(f, "c3", NEVER, i % 2);
        assert_true(wait_durable(f, last));
    }
    assert_int_equal(db_int(f, "SELECT state FROM deliveries WHERE delivery_id = 4"), 1);
    assert_int_equal(db_int(f, "SELECT packet_id FROM deliveries WHERE delivery_id = 4"), 7);
    assert_int_equal(db_int(f, "SELECT topic = 't/c' FROM deliveries WHERE delivery_id = 4"), 1);
    assert_true(db_int(f, "SELECT count(*) FROM young") <= 16);

    /* c2 goes away: a delivery queued for it now waits in the table, not in the log. */
    session(f, "c2", NEVER, 0);
    last = queued(f, "c2", 6, g);
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT topic = 't/g' FROM deliveries WHERE delivery_id = 6"), 1);

    /* A clean shutdown empties the log; the restore has 2, 4 and 6, in order. */
    restart_and_restore(f);
    assert_int_equal(db_int(f, "SELECT count(*) FROM young"), 0);
    assert_int_equal(count_recs(f, "msg "), 3);
    assert_true(rec_index(f, "msg c2 d=2 qos=1 retain=0 state=0 pid=0 "
                             "[1 t/a 'shared' qos=1 retain=0 props=0 expiry=0]") <
                rec_index(f, "msg c2 d=4 qos=1 retain=0 state=1 pid=7 "
                             "[3 t/c 'late' qos=1 retain=0 props=0 expiry=0]"));
    assert_true(rec_index(f, "msg c2 d=4 qos=1 retain=0 state=1 pid=7 "
                             "[3 t/c 'late' qos=1 retain=0 props=0 expiry=0]") <
                rec_index(f, "msg c2 d=6 qos=1 retain=0 state=0 pid=0 "
                             "[6 t/g 'while away' qos=1 retain=0 props=0 expiry=0]"));

    /* The kill -9 image (before c1 ended): the log replayed, 3 finished, 4 sent, 5 queued. */
    crash_restore(f);
    assert_int_equal(db_int(f, "SELECT count(*) FROM young"), 0);
    assert_int_equal(count_recs(f, "msg "), 4);
    assert_true(has_rec(f, "msg c1 d=1 qos=1 retain=0 state=0 pid=0 "
                           "[1 t/a 'shared' qos=1 retain=0 props=0 expiry=0]"));
    assert_true(has_rec(f, "msg c1 d=5 qos=1 retain=0 state=0 pid=0 "
                           "[5 t/e 'ends with c1' qos=1 retain=0 props=0 expiry=0]"));
    assert_true(has_rec(f, "msg c2 d=4 qos=1 retain=0 state=1 pid=7 "
                           "[3 t/c 'late' qos=1 retain=0 props=0 expiry=0]"));
    assert_true(has_rec(f, "msg c2 d=2 qos=1 retain=0 state=0 pid=0 "
                           "[1 t/a 'shared' qos=1 retain=0 props=0 expiry=0]"));
    m_unref(a);
    m_unref(b);
    m_unref(c);
    m_unref(e);
    m_unref(g);
}

static void
test_batch_coalesces_finished_deliveries(void **state)
{
    struct fixture *f = *state;
    const midge_message *a = msg("t/a", "gone at once", 1);
    const midge_message *b = msg("t/b", "stays", 2);
    unsigned long long commits, events;
    const char *line;
    uint64_t last;

    opt(f, "durability", "batch");
    opt(f, "batch_ms", "1000");
    assert_int_equal(load(f), 0);
    last = session(f, "c1", NEVER, 1);
    assert_true(wait_durable(f, last));
    /* Within the next 1000 ms slot: one transaction. */
    queued(f, "c1", 1, a);
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_SENT, .delivery_id = 1,
                                         .packet_id = 1});
    send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .delivery_id = 1});
    queued(f, "c1", 2, b);
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_SENT, .delivery_id = 2,
                                                .packet_id = 2});
    assert_true(wait_durable(f, last));
    m_unref(a);
    m_unref(b);
    /* Delivery 2 is in the young log (test_young_deliveries); a clean shutdown moves it. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM young"), 1);
    unload(f);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries"), 1);
    assert_int_equal(db_int(f, "SELECT state FROM deliveries WHERE delivery_id = 2"), 1);
    assert_int_equal(db_int(f, "SELECT packet_id FROM deliveries WHERE delivery_id = 2"), 2);
    /* Delivery 2 is its message's only row: the message is stored in it. */
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages"), 0);
    assert_int_equal(db_int(f, "SELECT msg_id FROM deliveries WHERE topic = 't/b'"), 2);
    closed_stats(f, &commits, &events);
    line = find_log(f, "closed db=");
    /*
     * Delivery 1's QUEUED, SENT and DONE were never written; delivery 2's
     * SENT went into its insert. Written: the session and one QUEUED.
     */
    assert_non_null(strstr(line, " coalesced=4 "));
    assert_int_equal(events, 2);
}

/*
 * The writer remembers recent deliveries (delivery -> message) and message
 * reference counts to finish deliveries without lookups. A remembered
 * delivery whose session ended meanwhile must not drop a reference again,
 * and the counts must stay those of the rows.
 */
/* Pushes one delivery event (no message) to q; returns its seq. */
static uint64_t
qpush(struct psq_queue *q, int type, uint64_t delivery_id, uint16_t packet_id)
{
    static uint64_t seq;
    struct midge_persist_event ev = {.type = type, .seq = ++seq, .client_id = "c1",
                                     .delivery_id = delivery_id, .packet_id = packet_id};

    assert_int_equal(psq_queue_push(q, &ev), 0);
    return ev.seq;
}

/*
 * A delivery's SENT and DONE fold into its QUEUED while that is still in
 * the queue, never into one the writer has taken (it may be writing it).
 */
static void
test_queue_folds_at_push(void **state)
{
    struct psq_env env = {0};
    struct psq_queue *q = psq_queue_new(&env, 1000);
    struct psq_taken t;
    struct psq_event *e;
    uint64_t last;
    int stopping;

    (void)state;
    assert_non_null(q);
    qpush(q, MIDGE_P_MSG_QUEUED, 1, 0);
    psq_queue_take(q, 0, 1, &t, &stopping);
    assert_int_equal(t.n, 1);
    psq_queue_done(q, t.n);
    psq_taken_free(&env, &t);
    /* Delivery 1 was taken: its SENT and DONE are queued as they are. */
    qpush(q, MIDGE_P_MSG_SENT, 1, 7);
    qpush(q, MIDGE_P_MSG_DONE, 1, 0);
    /* Delivery 2 finishes in the queue; delivery 3 is sent. */
    qpush(q, MIDGE_P_MSG_QUEUED, 2, 0);
    qpush(q, MIDGE_P_MSG_SENT, 2, 8);
    qpush(q, MIDGE_P_MSG_DONE, 2, 0);
    qpush(q, MIDGE_P_MSG_QUEUED, 3, 0);
    last = qpush(q, MIDGE_P_MSG_SENT, 3, 9);
    psq_queue_take(q, 0, 1, &t, &stopping);
    assert_int_equal(t.n, 4);
    assert_int_equal(t.folded, 3);
    assert_int_equal(t.max_seq, last); /* the folded SENT is reported durable with the batch */
    e = t.head;
    assert_int_equal(e->type, MIDGE_P_MSG_SENT);
    assert_int_equal(e->packet_id, 7);
    assert_null(e->client_id); /* the writer needs only the delivery id */
    e = e->next;
    assert_int_equal(e->type, MIDGE_P_MSG_DONE);
    assert_int_equal(e->skip, 0);
    e = e->next;
    assert_int_equal(e->delivery_id, 2);
    assert_int_equal(e->skip, 1);
    e = e->next;
    assert_int_equal(e->delivery_id, 3);
    assert_int_equal(e->skip, 0);
    assert_int_equal(e->state, MIDGE_DELIVERY_SENT);
    assert_int_equal(e->packet_id, 9);
    assert_string_equal(e->client_id, "c1");
    assert_null(e->next);
    psq_queue_done(q, t.n);
    psq_taken_free(&env, &t);
    /* After the take delivery 3 is the writer's: its DONE is queued. */
    qpush(q, MIDGE_P_MSG_DONE, 3, 0);
    psq_queue_take(q, 0, 1, &t, &stopping);
    assert_int_equal(t.n, 1);
    assert_int_equal(t.folded, 0);
    psq_queue_done(q, t.n);
    psq_taken_free(&env, &t);
    psq_queue_free(q);
}

static void
test_row_caches_follow_the_rows(void **state)
{
    struct fixture *f = *state;
    const midge_message *m = msg("fan/out", "shared", 77);
    uint64_t last;

    assert_int_equal(load(f), 0);
    session(f, "c1", NEVER, 0);
    session(f, "c2", NEVER, 0);
    queued(f, "c1", 1, m);
    last = queued(f, "c2", 2, m);
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 77"), 2);
    /* c1 ends: its delivery goes, one reference with it. */
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_SESSION_END, .client_id = "c1"});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 77"), 1);
    /* A late DONE of c1's delivery (the broker's workers race the end): nothing to drop. */
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .client_id = "c1",
                                                .delivery_id = 1});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 77"), 1);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries"), 1);
    /* The same message queued again in a later batch: one more reference on the same row. */
    last = queued(f, "c2", 3, m);
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 77"), 2);
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .client_id = "c2",
                                                .delivery_id = 2});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT refs FROM messages WHERE msg_id = 77"), 1);
    last = send(f, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .client_id = "c2",
                                                .delivery_id = 3});
    assert_true(wait_durable(f, last));
    assert_int_equal(db_int(f, "SELECT count(*) FROM messages"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM deliveries"), 0);
    m_unref(m);
}

struct producer {
    struct fixture *f;
    int first;
    int n;
};

static void *
produce(void *arg)
{
    struct producer *pr = arg;
    char id[32];
    int i;

    for (i = 0; i < pr->n; i++) {
        snprintf(id, sizeof(id), "p%d-%d", pr->first, i);
        session(pr->f, id, NEVER, 0);
    }
    return NULL;
}

static void
test_group_commit_full_many_threads(void **state)
{
    struct fixture *f = *state;
    struct producer pr[4];
    pthread_t t[4];
    unsigned long long commits, events;
    int i;

    assert_int_equal(load(f), 0);
    for (i = 0; i < 4; i++) {
        pr[i] = (struct producer){f, i, 2500};
        assert_int_equal(pthread_create(&t[i], NULL, produce, &pr[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    assert_true(wait_durable(f, 10000));
    assert_false(f->p.durable_backwards);
    assert_int_equal(db_int(f, "SELECT count(*) FROM sessions"), 10000);
    unload(f);
    closed_stats(f, &commits, &events);
    assert_int_equal(events, 10000);
    assert_true(commits >= 1);
}

static void
test_durability_none_reports_before_writing(void **state)
{
    struct fixture *f = *state;
    uint64_t last;

    opt(f, "durability", "none");
    assert_int_equal(load(f), 0);
    last = session(f, "c1", NEVER, 0);
    assert_true(wait_durable(f, last));
    /* Still written: a clean shutdown finishes the queue. */
    restart_and_restore(f);
    assert_true(has_rec(f, "session c1 expiry=4294967295 protocol=5"));
}

static void
test_disk_full_then_recovers(void **state)
{
    struct fixture *f = *state;
    size_t big = 3 * 1024 * 1024;
    char *payload = malloc(big + 1);
    const midge_message *m;
    uint64_t last;

    memset(payload, 'x', big);
    payload[big] = '\0';
    m = msg("big", payload, 9);
    free(payload);
    opt(f, "max_size_mb", "1");
    assert_int_equal(load(f), 0);
    session(f, "c1", NEVER, 0);
    last = queued(f, "c1", 1, m);
    assert_true(wait_failing(f, 1));
    assert_true(f->p.durable < last);
    assert_int_equal(count_logs(f, "cannot write the database"), 1);
    /* More events while failing: kept, and still logged once. */
    last = session(f, "c2", NEVER, 0);
    usleep(300 * 1000); /* a few retries happen meanwhile (nothing to wait on: they fail) */
    assert_true(f->p.durable < last);
    assert_int_equal(count_logs(f, "cannot write the database"), 1);
    /* The administrator makes room: SIGHUP with a larger limit. */
    opt(f, "max_size_mb", "16");
    assert_int_equal(reload(f), 0);
    assert_true(wait_failing(f, 0));
    assert_true(wait_durable(f, last));
    assert_int_equal(f->p.failing_calls, 2);
    m_unref(m);
    restart_and_restore(f);
    assert_int_equal(count_recs(f, "session "), 2);
    assert_int_equal(count_recs(f, "msg c1 d=1 "), 1);
}

static void
test_queue_bound(void **state)
{
    struct fixture *f = *state;
    const midge_message *m;
    char *payload = malloc(3 * 1024 * 1024 + 1);
    char id[32];
    uint64_t first_lost;
    int i;

    memset(payload, 'x', 3 * 1024 * 1024);
    payload[3 * 1024 * 1024] = '\0';
    m = msg("big", payload, 9);
    free(payload);
    opt(f, "max_size_mb", "1");
    opt(f, "max_pending", "1000");
    assert_int_equal(load(f), 0);
    /*
     * Written first, so that exactly what follows is pending: the writer may
     * otherwise commit it alone before the message comes (a race that moved
     * the first refused event by one).
     */
    assert_true(wait_durable(f, session(f, "c1", NEVER, 0)));
    queued(f, "c1", 1, m); /* cannot be written: everything after waits in memory */
    assert_true(wait_failing(f, 1));
    for (i = 0; i < 999; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        session(f, id, NEVER, 0);
    }
    first_lost = session(f, "over", NEVER, 0);
    session(f, "over2", NEVER, 0);
    m_unref(m);
    /* The writer says so once; nothing at or past the refused event is ever durable. */
    for (i = 0; i < 200 && count_logs(f, "event queue full") == 0; i++) {
        usleep(50 * 1000);
    }
    assert_int_equal(count_logs(f, "event queue full"), 1);
    {
        char want[64];

        snprintf(want, sizeof(want), "seq=%llu ", (unsigned long long)first_lost);
        assert_non_null(find_log(f, want));
    }
    assert_true(f->p.durable < first_lost);
    unload(f);
    assert_int_equal(count_logs(f, "shutdown: 1000 events could not be written"), 1);
}

static void
test_bad_events_skipped(void **state)
{
    struct fixture *f = *state;
    uint64_t last;

    assert_int_equal(load(f), 0);
    send(f, (struct midge_persist_event){.type = 99, .client_id = "c1"});
    send(f, (struct midge_persist_event){.type = MIDGE_P_SESSION}); /* no client id */
    last = session(f, "c1", NEVER, 0);
    assert_true(wait_durable(f, last));
    assert_int_equal(count_logs(f, "event skipped"), 2);
    assert_int_equal(db_int(f, "SELECT count(*) FROM sessions"), 1);
}

static void
test_clean_shutdown_checkpoints(void **state)
{
    struct fixture *f = *state;
    char wal[192];
    struct stat sb;
    uint64_t last;

    assert_int_equal(load(f), 0);
    last = session(f, "c1", NEVER, 0);
    assert_true(wait_durable(f, last));
    session(f, "c2", NEVER, 0); /* still queued at cleanup: written before closing */
    unload(f);
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_true(stat(wal, &sb) != 0 || sb.st_size == 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM sessions"), 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_options_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_end_forgets_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_stored_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_caches_follow_the_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retain_replace_releases_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_leaves_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_delivery_holds_its_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_rows_are_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_not_sqlite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_foreign_sqlite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_damaged_young_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_missing_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_corrupted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_is_a_new_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_instance_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_created_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_full_many_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_young_deliveries, setup, teardown),
        cmocka_unit_test(test_idmap_matches_reference),
        cmocka_unit_test_setup_teardown(test_batch_coalesces_finished_deliveries, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_durability_none_reports_before_writing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_then_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bound, setup, teardown),
        cmocka_unit_test(test_queue_folds_at_push),
        cmocka_unit_test_setup_teardown(test_bad_events_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_shutdown_checkpoints, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
