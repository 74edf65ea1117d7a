/*
 * Test plugin "labeled" (tests/integration/test_labeled_metrics.py): the
 * ABI 1.2 labeled metrics. Init creates
 *   counter "plain" (api->metric_new),
 *   gauge "jobs" with label queue="a" and queue="b",
 *   histogram "lat" with label queue="a",
 * and tries what must be refused, logging
 *   "labeled: refused kind=NULL dup=NULL instance=NULL plain=NULL badvalue=NULL"
 * (a metric_free of the plain counter is logged by the broker as a bug).
 * Then, driven by publishes on lm/ctl/CMD (api->subscribe: the callback
 * runs on the publisher's worker thread, so creating and freeing series
 * from a worker is exercised):
 *   new   "VALUE"    -> a series jobs{queue=VALUE}; "lm/out/new" "ok"/"NULL"
 *   set   "VALUE N"  -> jobs{queue=VALUE} = N
 *   observe "V"      -> lat{queue="a"} observes V
 *   free  "VALUE"    -> api->metric_free(jobs{queue=VALUE})
 *   list             -> "lm/out/list": one line per metric of this instance,
 *                       "NAME LABEL=VALUE VALUE" ("-" without a label; a
 *                       histogram's value is its count), in metric_list order
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("labeled", "1.0", "test: labeled metrics (ABI 1.2)");

#define MAX_SERIES 16

struct series {
    char value[130];
    midge_metric *m;
};

struct state {
    const struct midge_api *api;
    midge_plugin *self;
    midge_metric *plain;
    midge_metric *lat;
    pthread_mutex_t lock;
    struct series jobs[MAX_SERIES]; /* Protected by lock */
    midge_subscription *sub;
};

static void
out(struct state *st, const char *topic, const char *text)
{
    st->api->publish(st->self, topic, text, (uint32_t)strlen(text), 0, 0);
}

static midge_metric *
jobs_new(struct state *st, const char *value)
{
    return st->api->metric_new_labeled(st->self, "jobs", MIDGE_METRIC_GAUGE, "jobs waiting",
                                       "queue", value);
}

/* The slot of `value`, or a free one when `take`. With st->lock held. */
static struct series *
slot(struct state *st, const char *value, int take)
{
    size_t i;

    for (i = 0; i < MAX_SERIES; i++) {
        if (st->jobs[i].m != NULL && strcmp(st->jobs[i].value, value) == 0) {
            return &st->jobs[i];
        }
    }
    for (i = 0; take && i < MAX_SERIES; i++) {
        if (st->jobs[i].m == NULL) {
            return &st->jobs[i];
        }
    }
    return NULL;
}

struct listing {
    const char *instance;
    char text[8192];
};

static int
list_cb(void *arg, const struct midge_metric_info *info)
{
    struct listing *l = arg;
    char line[400];
    int labeled = MIDGE_HAS_FIELD(struct midge_metric_info, info, label_value) &&
                  info->label_name != NULL;

    if (strcmp(info->instance, l->instance) != 0) {
        return 0;
    }
    snprintf(line, sizeof(line), "%s %s%s%s %lld\n", info->name,
             labeled ? info->label_name : "-", labeled ? "=" : "",
             labeled ? info->label_value : "",
             info->kind == MIDGE_METRIC_HISTOGRAM ? (long long)info->count
                                                  : (long long)info->value);
    if (strlen(l->text) + strlen(line) < sizeof(l->text)) {
        strcat(l->text, line);
    }
    return 0;
}

static void
on_ctl(void *arg, const midge_message *msg)
{
    struct state *st = arg;
    const char *cmd = st->api->message_topic(msg) + strlen("lm/ctl/");
    uint32_t len = 0;
    const char *p = st->api->message_payload(msg, &len);
    char text[200];
    char value[200];
    long long n = 0;

    if (len >= sizeof(text)) {
        return;
    }
    memcpy(text, p != NULL ? p : "", len);
    text[len] = '\0';
    if (strcmp(cmd, "new") == 0) {
        struct series *s;
        midge_metric *m = NULL;
        pthread_mutex_lock(&st->lock);
        if ((s = slot(st, text, 1)) != NULL && s->m == NULL && (m = jobs_new(st, text)) != NULL) {
            snprintf(s->value, sizeof(s->value), "%.129s", text);
            s->m = m;
        } else if (s != NULL && s->m != NULL) {
            m = jobs_new(st, text); /* a duplicate: must be NULL */
            if (m != NULL) {
                st->api->metric_free(m);
                m = (midge_metric *)1; /* reported as "ok": the test fails */
            }
        }
        pthread_mutex_unlock(&st->lock);
        out(st, "lm/out/new", m != NULL ? "ok" : "NULL");
    } else if (strcmp(cmd, "set") == 0 && sscanf(text, "%199s %lld", value, &n) == 2) {
        struct series *s;
        pthread_mutex_lock(&st->lock);
        if ((s = slot(st, value, 0)) != NULL) {
            st->api->metric_set(s->m, n);
        }
        pthread_mutex_unlock(&st->lock);
    } else if (strcmp(cmd, "observe") == 0) {
        st->api->metric_observe(st->lat, atof(text));
    } else if (strcmp(cmd, "free") == 0) {
        struct series *s;
        pthread_mutex_lock(&st->lock);
        if ((s = slot(st, text, 0)) != NULL) {
            st->api->metric_free(s->m);
            s->m = NULL;
        }
        pthread_mutex_unlock(&st->lock);
    } else if (strcmp(cmd, "list") == 0) {
        struct listing *l = calloc(1, sizeof(*l));
        if (l != NULL) {
            l->instance = st->api->instance_name(st->self);
            st->api->metric_list(st->self, list_cb, l);
            out(st, "lm/out/list", l->text);
            free(l);
        }
    }
}

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *st;
    midge_metric *kind;
    midge_metric *dup;
    midge_metric *inst;
    midge_metric *plain;
    midge_metric *badvalue;

    if (!MIDGE_API_HAS(api, metric_new_labeled)) {
        api->set_error(self, "needs ABI 1.2 (metric_new_labeled)");
        return -MIDGE_ENOTSUP;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return -MIDGE_ENOMEM;
    }
    *state = st;
    st->api = api;
    st->self = self;
    pthread_mutex_init(&st->lock, NULL);
    st->plain = api->metric_new(self, "plain", MIDGE_METRIC_COUNTER, "a plain counter");
    api->metric_add(st->plain, 3);
    st->jobs[0].m = jobs_new(st, "a");
    snprintf(st->jobs[0].value, sizeof(st->jobs[0].value), "a");
    st->jobs[1].m = jobs_new(st, "b");
    snprintf(st->jobs[1].value, sizeof(st->jobs[1].value), "b");
    st->lat = api->metric_new_labeled(self, "lat", MIDGE_METRIC_HISTOGRAM, "latency", "queue",
                                      "a");
    kind = api->metric_new_labeled(self, "jobs", MIDGE_METRIC_COUNTER, "jobs waiting", "queue",
                                   "c");
    dup = jobs_new(st, "a");
    inst = api->metric_new_labeled(self, "other", MIDGE_METRIC_GAUGE, NULL, "instance", "x");
    plain = api->metric_new_labeled(self, "plain", MIDGE_METRIC_COUNTER, "a plain counter",
                                    "queue", "a");
    badvalue = api->metric_new_labeled(self, "other", MIDGE_METRIC_GAUGE, NULL, "queue", "");
    api->log(self, MIDGE_LOG_NOTICE,
             "labeled: refused kind=%s dup=%s instance=%s plain=%s badvalue=%s",
             kind ? "made" : "NULL", dup ? "made" : "NULL", inst ? "made" : "NULL",
             plain ? "made" : "NULL", badvalue ? "made" : "NULL");
    api->metric_free(st->plain); /* refused: a plain metric stays */
    if (st->jobs[0].m == NULL || st->jobs[1].m == NULL || st->lat == NULL) {
        api->set_error(self, "metric_new_labeled failed");
        return -MIDGE_EINVAL;
    }
    st->sub = api->subscribe(self, "lm/ctl/#", on_ctl, st);
    return st->sub != NULL ? 0 : -MIDGE_ENOMEM;
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    struct state *st = state;

    if (st != NULL) {
        if (st->sub != NULL) {
            st->api->unsubscribe(self, st->sub);
        }
        pthread_mutex_destroy(&st->lock);
        free(st);
    }
}
