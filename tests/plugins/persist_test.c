/*
 * Test plugin "persist-test" (tests/integration/test_persist_core.py): the
 * broker side of persistence, without a database.
 *   - persist hook: appends one line per event to plugin_opt_events FILE:
 *     "SEQ TYPE CLIENT DELIVERY PACKET_ID QOS TOPIC_OR_FILTER" ("-" for none);
 *   - durability: plugin_opt_durable auto (default; a thread reports every
 *     event durable within ~2 ms) or manual (only when a message is published
 *     to "ptest/durable"; an internal subscription reports everything so far);
 *     "ptest/fail" and "ptest/recover" toggle api->persist_failing;
 *   - restore: replays plugin_opt_restore FILE, lines:
 *       session ID EXPIRY PROTOCOL EXPIRES_IN
 *       sub ID FILTER OPTIONS
 *       msg ID DELIVERY_ID QOS STATE PACKET_ID TOPIC PAYLOAD
 *       retained TOPIC PAYLOAD
 *       qos2 ID PACKET_ID
 *       will ID DELAY TOPIC PAYLOAD
 *     and writes "restore: N ok, M refused" to the broker log.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "midge/plugin.h"

static const char *const opts[] = {"events", "durable", "restore", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("persist-test", "1.0", "test: persistence events to a file", opts);

struct state {
    const struct midge_api *api;
    midge_plugin *self;
    pthread_mutex_t lock;
    FILE *events;            /* Protected by lock */
    atomic_uint_fast64_t last_seq;
    int manual;
    char *restore_path;
    pthread_t thread;
    atomic_int stop;
    int thread_ok;
};

static const char *
nz(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : "-";
}

static void
persist(void *st_, const struct midge_persist_event *ev)
{
    struct state *st = st_;
    const char *t = ev->filter;

    if (ev->msg != NULL) {
        t = st->api->message_topic(ev->msg);
    }
    pthread_mutex_lock(&st->lock);
    if (st->events != NULL) {
        fprintf(st->events, "%llu %d %s %llu %u %d %s\n", (unsigned long long)ev->seq, ev->type,
                nz(ev->client_id), (unsigned long long)ev->delivery_id, ev->packet_id, ev->qos,
                nz(t));
        fflush(st->events);
    }
    pthread_mutex_unlock(&st->lock);
    atomic_store(&st->last_seq, ev->seq);
}

static void *
auto_durable(void *arg)
{
    struct state *st = arg;
    struct timespec ts = {0, 2000000};

    while (!atomic_load(&st->stop)) {
        uint64_t s = atomic_load(&st->last_seq);
        if (s > 0) {
            st->api->persist_durable(st->self, s);
        }
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void
control(void *arg, const midge_message *msg)
{
    struct state *st = arg;
    const char *topic = st->api->message_topic(msg);

    if (strcmp(topic, "ptest/durable") == 0) {
        st->api->persist_durable(st->self, atomic_load(&st->last_seq));
    } else if (strcmp(topic, "ptest/fail") == 0) {
        st->api->persist_failing(st->self, 1);
    } else if (strcmp(topic, "ptest/recover") == 0) {
        st->api->persist_failing(st->self, 0);
    }
}

static int
restore_line(struct state *st, char *line)
{
    const struct midge_api *api = st->api;
    char *save = NULL;
    char *kind = strtok_r(line, " \n", &save);
    char *a[8] = {0};
    int n = 0;
    int r = -1;

    if (kind == NULL) {
        return 0;
    }
    while (n < 7 && (a[n] = strtok_r(NULL, " \n", &save)) != NULL) {
        n++;
    }
    if (strcmp(kind, "session") == 0 && n == 4) {
        r = api->restore_session(st->self, a[0], (uint32_t)strtoul(a[1], NULL, 10), atoi(a[2]),
                                 (uint32_t)strtoul(a[3], NULL, 10));
    } else if (strcmp(kind, "sub") == 0 && n == 3) {
        r = api->restore_subscription(st->self, a[0], a[1], atoi(a[2]), 0);
    } else if (strcmp(kind, "msg") == 0 && n == 7) {
        int qos = atoi(a[2]);
        const midge_message *m = api->message_new(st->self, a[5], a[6], (uint32_t)strlen(a[6]),
                                                  qos, 0, NULL, 0, 0, 0);
        if (m != NULL) {
            r = api->restore_message(st->self, a[0], strtoull(a[1], NULL, 10), m, qos, 0,
                                     atoi(a[3]), (uint16_t)atoi(a[4]));
            api->message_unref(m);
        }
    } else if (strcmp(kind, "retained") == 0 && n == 2) {
        const midge_message *m = api->message_new(st->self, a[0], a[1], (uint32_t)strlen(a[1]), 1,
                                                  1, NULL, 0, 0, 0);
        if (m != NULL) {
            r = api->restore_retained(st->self, m);
            api->message_unref(m);
        }
    } else if (strcmp(kind, "qos2") == 0 && n == 2) {
        r = api->restore_qos2_in(st->self, a[0], (uint16_t)atoi(a[1]));
    } else if (strcmp(kind, "will") == 0 && n == 4) {
        const midge_message *m = api->message_new(st->self, a[2], a[3], (uint32_t)strlen(a[3]), 1,
                                                  0, NULL, 0, 0, 0);
        if (m != NULL) {
            r = api->restore_will(st->self, a[0], m, (uint32_t)strtoul(a[1], NULL, 10));
            api->message_unref(m);
        }
    }
    return r == 0 ? 1 : -1;
}

static int
restore(void *st_)
{
    struct state *st = st_;
    FILE *f;
    char line[1024];
    int ok = 0;
    int bad = 0;

    if (st->restore_path == NULL) {
        return 0;
    }
    f = fopen(st->restore_path, "r");
    if (f == NULL) {
        st->api->set_error(st->self, "cannot open %s", st->restore_path);
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        int r = restore_line(st, line);
        ok += r > 0;
        bad += r < 0;
    }
    fclose(f);
    st->api->log(st->self, MIDGE_LOG_NOTICE, "restore: %d ok, %d refused", ok, bad);
    return 0;
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .persist = persist,
    .restore = restore,
};

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *st;
    const char *ev = api->option(self, "events");
    const char *d = api->option(self, "durable");
    const char *rp = api->option(self, "restore");

    if (!MIDGE_API_HAS(api, restore_will)) {
        api->set_error(self, "this broker has no persistence API");
        return -MIDGE_ENOTSUP;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return -MIDGE_ENOMEM;
    }
    st->api = api;
    st->self = self;
    pthread_mutex_init(&st->lock, NULL);
    st->manual = d != NULL && strcmp(d, "manual") == 0;
    st->restore_path = rp ? strdup(rp) : NULL;
    if (ev != NULL && (st->events = fopen(ev, "a")) == NULL) {
        api->set_error(self, "cannot open %s", ev);
        free(st);
        return -MIDGE_EINVAL;
    }
    *state = st;
    api->hooks_set(self, &hooks);
    if (api->subscribe(self, "ptest/#", control, st) == NULL) {
        api->set_error(self, "subscribe failed");
        return -MIDGE_EINVAL;
    }
    if (!st->manual) {
        st->thread_ok = pthread_create(&st->thread, NULL, auto_durable, st) == 0;
    }
    return 0;
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    struct state *st = state;

    (void)self;
    atomic_store(&st->stop, 1);
    if (st->thread_ok) {
        pthread_join(st->thread, NULL);
    }
    if (st->events != NULL) {
        fclose(st->events);
    }
    pthread_mutex_destroy(&st->lock);
    free(st->restore_path);
    free(st);
}
