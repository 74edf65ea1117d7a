/*
 * persist-restore: builds a persist-sqlite database with N queued messages
 * through the plugin's own path (persist hook -> queue -> writer thread),
 * then times the plugin's restore hook against a minimal broker stand-in
 * that counts the restore_* calls and builds real (malloc'd) messages.
 *
 *   bench/persist-restore generate DB SESSIONS PER_SESSION PAYLOAD_BYTES fanout|distinct
 *   bench/persist-restore restore DB
 *   bench/persist-restore churn DB MESSAGES LAG WINDOW full|batch|none
 *
 * `fanout`: PER_SESSION messages, each queued for every session (one payload
 * row per message); `distinct`: every delivery its own message. The real
 * broker's restore of the same file is timed by bench/persist-restore.sh
 * (its "persistence: ... restored N items in S s" log line).
 *
 * `churn` is the writer's side of QoS 1 to online persistent subscribers,
 * without the network: 16 sessions, each message QUEUED and SENT at once
 * and DONE (the subscriber's PUBACK) LAG messages later, at most WINDOW
 * messages not yet durable (the publishers' inflight window). It prints
 * the process's CPU seconds per message: the writer's cost, measured
 * without the noise of a shared machine's scheduler.
 */
#include <sys/resource.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <midge/plugin.h>

/* The stand-in broker: one instance. */
struct midge_plugin {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const char *db;
    const char *durability;
    int in_init;
    const struct midge_hooks *hooks;
    void *state;
    uint64_t durable;
    uint64_t restored[6];
};

struct midge_message {
    atomic_int refs;
    uint64_t id;
    char *topic;
    void *payload;
    uint32_t len;
    void *props;
    uint32_t props_len;
    uint32_t expiry;
    int qos;
    int retain;
};

static void
b_log(midge_plugin *self, int level, const char *fmt, ...)
{
    va_list ap;

    (void)self;
    if (level <= MIDGE_LOG_NOTICE) {
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
}

static const char *
b_option(midge_plugin *self, const char *key)
{
    if (strcmp(key, "db") == 0) {
        return self->db;
    }
    if (strcmp(key, "durability") == 0) {
        return self->durability;
    }
    return NULL;
}

static void
b_set_error(midge_plugin *self, const char *fmt, ...)
{
    va_list ap;

    (void)self;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int
b_hooks_set(midge_plugin *self, const struct midge_hooks *h)
{
    self->hooks = h;
    return 0;
}

static const char *b_topic(const midge_message *m) { return m->topic; }
static int b_qos(const midge_message *m) { return m->qos; }
static int b_retain(const midge_message *m) { return m->retain; }
static uint64_t b_id(const midge_message *m) { return m->id; }
static uint32_t b_expiry(const midge_message *m) { return m->expiry; }

static const void *
b_payload(const midge_message *m, uint32_t *len)
{
    *len = m->len;
    return m->payload;
}

static const void *
b_props(const midge_message *m, uint32_t *len)
{
    *len = m->props_len;
    return m->props;
}

static const midge_message *
b_ref(const midge_message *m)
{
    atomic_fetch_add(&((midge_message *)m)->refs, 1);
    return m;
}

static void
b_unref(const midge_message *cm)
{
    midge_message *m = (midge_message *)cm;

    if (atomic_fetch_sub(&m->refs, 1) == 1) {
        free(m->topic);
        free(m->payload);
        free(m->props);
        free(m);
    }
}

static const midge_message *
b_new(midge_plugin *self, const char *topic, const void *payload, uint32_t len, int qos,
      int retain, const void *props, uint32_t props_len, uint32_t expiry, uint64_t id)
{
    midge_message *m = calloc(1, sizeof(*m));

    (void)self;
    if (m == NULL) {
        return NULL;
    }
    atomic_init(&m->refs, 1);
    m->id = id;
    m->topic = strdup(topic);
    m->payload = malloc(len > 0 ? len : 1);
    if (len > 0) {
        memcpy(m->payload, payload, len);
    }
    m->len = len;
    if (props_len > 0) {
        m->props = malloc(props_len);
        memcpy(m->props, props, props_len);
        m->props_len = props_len;
    }
    m->expiry = expiry;
    m->qos = qos;
    m->retain = retain;
    return m;
}

static void
b_durable(midge_plugin *self, uint64_t seq)
{
    pthread_mutex_lock(&self->lock);
    self->durable = seq;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->lock);
}

static void
b_failing(midge_plugin *self, int failing)
{
    (void)self;
    fprintf(stderr, "storage failing=%d\n", failing);
}

/* The restore calls keep what a broker would keep: a message reference per delivery. */
static const midge_message **kept;
static size_t nkept;
static size_t capkept;

static void
keep(const midge_message *m)
{
    if (nkept == capkept) {
        capkept = capkept * 2 + 1024;
        kept = realloc(kept, capkept * sizeof(*kept));
        if (kept == NULL) {
            abort();
        }
    }
    kept[nkept++] = b_ref(m);
}

static int
r_session(midge_plugin *s, const char *c, uint32_t e, int p, uint32_t in)
{
    (void)c, (void)e, (void)p, (void)in;
    s->restored[0]++;
    return 0;
}

static int
r_sub(midge_plugin *s, const char *c, const char *f, int o, uint32_t id)
{
    (void)c, (void)f, (void)o, (void)id;
    s->restored[1]++;
    return 0;
}

static int
r_retained(midge_plugin *s, const midge_message *m)
{
    keep(m);
    s->restored[2]++;
    return 0;
}

static int
r_message(midge_plugin *s, const char *c, uint64_t d, const midge_message *m, int q, int r,
          int st, uint16_t pid)
{
    (void)c, (void)d, (void)q, (void)r, (void)st, (void)pid;
    keep(m);
    s->restored[3]++;
    return 0;
}

static int
r_qos2(midge_plugin *s, const char *c, uint16_t pid)
{
    (void)c, (void)pid;
    s->restored[4]++;
    return 0;
}

static int
r_will(midge_plugin *s, const char *c, const midge_message *m, uint32_t d)
{
    (void)c, (void)d;
    keep(m);
    s->restored[5]++;
    return 0;
}

static struct midge_api api = {
    .size = sizeof(struct midge_api),
    .abi_major = MIDGE_ABI_MAJOR,
    .abi_minor = MIDGE_ABI_MINOR,
    .log = b_log,
    .option = b_option,
    .set_error = b_set_error,
    .hooks_set = b_hooks_set,
    .message_topic = b_topic,
    .message_payload = b_payload,
    .message_qos = b_qos,
    .message_retain = b_retain,
    .message_ref = b_ref,
    .message_unref = b_unref,
    .message_id = b_id,
    .message_properties = b_props,
    .message_expiry = b_expiry,
    .message_new = b_new,
    .persist_durable = b_durable,
    .persist_failing = b_failing,
    .restore_session = r_session,
    .restore_subscription = r_sub,
    .restore_retained = r_retained,
    .restore_message = r_message,
    .restore_qos2_in = r_qos2,
    .restore_will = r_will,
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
load(midge_plugin *p, const char *db, const char *durability)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->db = db;
    p->durability = durability;
    return midge_plugin_init(p, &api, &p->state);
}

static uint64_t seq;

static void
event(midge_plugin *p, struct midge_persist_event ev)
{
    ev.size = sizeof(ev);
    ev.seq = ++seq;
    p->hooks->persist(p->state, &ev);
}

static int
generate(const char *db, long sessions, long per, long bytes, int fanout)
{
    midge_plugin p;
    char id[32];
    char topic[64];
    char *payload = malloc((size_t)bytes + 1);
    const midge_message *m = NULL;
    uint64_t delivery = 1;
    uint64_t msg_id = 1;
    double t0 = now_s();
    long s, i;

    memset(payload, 'x', (size_t)bytes);
    if (load(&p, db, "none") != 0) {
        return 1;
    }
    for (s = 0; s < sessions; s++) {
        snprintf(id, sizeof(id), "client-%06ld", s);
        event(&p, (struct midge_persist_event){.type = MIDGE_P_SESSION, .client_id = id,
                                               .expiry = 0xFFFFFFFFu, .protocol = 5});
        event(&p, (struct midge_persist_event){.type = MIDGE_P_SUB_ADD, .client_id = id,
                                               .filter = "bench/#", .options = 1});
    }
    /* fanout: message i goes to every session; distinct: a new message per delivery. */
    for (i = 0; i < per; i++) {
        for (s = 0; s < sessions; s++) {
            if (m == NULL || !fanout) {
                snprintf(topic, sizeof(topic), "bench/%ld", i);
                m = b_new(NULL, topic, payload, (uint32_t)bytes, 1, 0, NULL, 0, 0, msg_id++);
            }
            snprintf(id, sizeof(id), "client-%06ld", s);
            event(&p, (struct midge_persist_event){.type = MIDGE_P_MSG_QUEUED, .client_id = id,
                                                   .msg = m, .msg_id = m->id,
                                                   .delivery_id = delivery++, .qos = 1});
            if (!fanout) {
                b_unref(m);
                m = NULL;
            }
        }
        if (fanout) {
            b_unref(m);
            m = NULL;
        }
        /* Keep the queue within its bound: wait for the writer every 100,000 events. */
        if (seq % 100000 < (uint64_t)sessions) {
            pthread_mutex_lock(&p.lock);
            while (p.durable + 200000 < seq) {
                pthread_cond_wait(&p.cond, &p.lock);
            }
            pthread_mutex_unlock(&p.lock);
        }
    }
    midge_plugin_cleanup(&p, p.state);
    printf("generated deliveries=%llu sessions=%ld seconds=%.2f\n",
           (unsigned long long)(delivery - 1), sessions, now_s() - t0);
    free(payload);
    return 0;
}

static int
restore(const char *db)
{
    midge_plugin p;
    double t0 = now_s();
    double t1;
    size_t i;
    int rc;

    if (load(&p, db, "full") != 0) {
        return 1;
    }
    rc = p.hooks->restore(p.state);
    t1 = now_s();
    printf("restore rc=%d sessions=%llu subscriptions=%llu messages=%llu seconds=%.3f "
           "(open+check %s)\n",
           rc, (unsigned long long)p.restored[0], (unsigned long long)p.restored[1],
           (unsigned long long)p.restored[3], t1 - t0, "included");
    for (i = 0; i < nkept; i++) {
        b_unref(kept[i]);
    }
    free(kept);
    midge_plugin_cleanup(&p, p.state);
    return rc != 0;
}


static double
cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int
churn(const char *db, long n, long lag, long window, const char *durability)
{
    midge_plugin p;
    char id[32];
    char payload[64];
    uint64_t *queued_seq = calloc((size_t)n + 1, sizeof(*queued_seq));
    double t0, c0;
    long i, s;

    memset(payload, 'x', sizeof(payload));
    if (queued_seq == NULL || load(&p, db, durability) != 0) {
        return 1;
    }
    for (s = 0; s < 16; s++) {
        snprintf(id, sizeof(id), "sub-%02ld", s);
        event(&p, (struct midge_persist_event){.type = MIDGE_P_SESSION, .client_id = id,
                                               .expiry = 0xFFFFFFFFu, .protocol = 4});
        event(&p, (struct midge_persist_event){.type = MIDGE_P_SUB_ADD, .client_id = id,
                                               .filter = "bench/#", .options = 1});
    }
    t0 = now_s();
    c0 = cpu_s();
    for (i = 1; i <= n + lag; i++) {
        if (i <= n) {
            const midge_message *m = b_new(NULL, "bench/1", payload, sizeof(payload), 1, 0,
                                           NULL, 0, 0, (uint64_t)i);

            snprintf(id, sizeof(id), "sub-%02ld", i % 16);
            event(&p, (struct midge_persist_event){.type = MIDGE_P_MSG_QUEUED, .client_id = id,
                                                   .msg = m, .msg_id = (uint64_t)i,
                                                   .delivery_id = (uint64_t)i, .qos = 1});
            queued_seq[i] = seq;
            event(&p, (struct midge_persist_event){.type = MIDGE_P_MSG_SENT, .client_id = id,
                                                   .delivery_id = (uint64_t)i,
                                                   .packet_id = (uint16_t)(i % 65535 + 1)});
            b_unref(m);
        }
        if (i > lag) {
            snprintf(id, sizeof(id), "sub-%02ld", (i - lag) % 16);
            event(&p, (struct midge_persist_event){.type = MIDGE_P_MSG_DONE, .client_id = id,
                                                   .delivery_id = (uint64_t)(i - lag)});
        }
        /* The publishers' window: message i - window must be acknowledged (durable). */
        if (i > window && i - window <= n) {
            pthread_mutex_lock(&p.lock);
            while (p.durable < queued_seq[i - window]) {
                pthread_cond_wait(&p.cond, &p.lock);
            }
            pthread_mutex_unlock(&p.lock);
        }
    }
    midge_plugin_cleanup(&p, p.state);
    printf("churn messages=%ld lag=%ld window=%ld durability=%s seconds=%.2f msg_per_s=%.0f "
           "cpu_us_per_msg=%.2f\n", n, lag, window, durability, now_s() - t0,
           (double)n / (now_s() - t0), (cpu_s() - c0) * 1e6 / (double)n);
    free(queued_seq);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "generate") == 0) {
        return generate(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5]),
                        strcmp(argv[6], "fanout") == 0);
    }
    if (argc == 3 && strcmp(argv[1], "restore") == 0) {
        return restore(argv[2]);
    }
    if (argc == 7 && strcmp(argv[1], "churn") == 0) {
        return churn(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5]), argv[6]);
    }
    fprintf(stderr, "usage: %s generate DB SESSIONS PER_SESSION PAYLOAD_BYTES fanout|distinct\n"
                    "       %s restore DB\n"
                    "       %s churn DB MESSAGES LAG WINDOW full|batch|none\n",
            argv[0], argv[0], argv[0]);
    return 2;
}
