/*
 * Metrics a plugin defines itself (api->metric_new and friends), published
 * by $SYS as $SYS/broker/plugin/INSTANCE/metric/NAME. Updates are single
 * atomic operations so any thread may call them on the hot path.
 */
#include "plugin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define HIST_BUCKETS 64 /* bucket b: values in [2^(b-20), 2^(b-19)), b 0 also holds smaller */
#define HIST_SHIFT 20   /* so bucket 20 starts at 1.0: micro-units to millions */

/*
 * A plugin metric. Owned by its instance's user_metrics list (built in init,
 * fixed afterwards, freed with the instance); the plugin holds a borrowed
 * pointer.
 */
struct midge_metric {
    char *name;
    char *help;
    int kind;                                 /* enum midge_metric_kind */
    atomic_int_fast64_t value;                /* counter / gauge */
    atomic_uint_fast64_t hist[HIST_BUCKETS];  /* histogram */
    atomic_uint_fast64_t count;               /* histogram observations */
    _Atomic double sum;                       /* histogram sum */
    struct midge_metric *next;
};

static int
name_valid(const char *s)
{
    size_t i;

    if (s == NULL || s[0] == '\0' || strlen(s) > 64) {
        return 0;
    }
    for (i = 0; s[i] != '\0'; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) {
            return 0;
        }
    }
    return 1;
}

midge_metric *
plugin_metric_new(midge_plugin *self, const char *name, int kind, const char *help)
{
    midge_metric *m;
    midge_metric **tail;

    if (!self->in_init) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s: metric_new outside init", self->name);
        return NULL;
    }
    if (!name_valid(name) || kind < MIDGE_METRIC_COUNTER || kind > MIDGE_METRIC_HISTOGRAM) {
        return NULL;
    }
    for (tail = &self->user_metrics; *tail != NULL; tail = &(*tail)->next) {
        if (strcmp((*tail)->name, name) == 0) {
            return NULL;
        }
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->name = strdup(name)) == NULL ||
        (help != NULL && (m->help = strdup(help)) == NULL)) {
        if (m != NULL) {
            free(m->name);
            free(m);
        }
        return NULL;
    }
    m->kind = kind;
    *tail = m;
    return m;
}

void
plugin_metric_add(midge_metric *m, int64_t delta)
{
    if (m == NULL || m->kind == MIDGE_METRIC_HISTOGRAM ||
        (m->kind == MIDGE_METRIC_COUNTER && delta < 0)) {
        return;
    }
    atomic_fetch_add_explicit(&m->value, delta, memory_order_relaxed);
}

void
plugin_metric_set(midge_metric *m, int64_t value)
{
    if (m == NULL || m->kind != MIDGE_METRIC_GAUGE) {
        return;
    }
    atomic_store_explicit(&m->value, value, memory_order_relaxed);
}

void
plugin_metric_observe(midge_metric *m, double v)
{
    int e;
    int b;
    double old;

    if (m == NULL || m->kind != MIDGE_METRIC_HISTOGRAM || !(v >= 0) || isinf(v)) {
        return;
    }
    if (v == 0) {
        b = 0;
    } else {
        frexp(v, &e); /* v in [2^(e-1), 2^e) */
        b = e - 1 + HIST_SHIFT;
        b = b < 0 ? 0 : b >= HIST_BUCKETS ? HIST_BUCKETS - 1 : b;
    }
    atomic_fetch_add_explicit(&m->hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    old = atomic_load_explicit(&m->sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&m->sum, &old, old + v, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* Upper bound of the bucket holding quantile q. */
static double
hist_quantile(const midge_metric *m, uint64_t total, double q)
{
    uint64_t seen = 0;
    int b;

    for (b = 0; b < HIST_BUCKETS; b++) {
        seen += atomic_load_explicit(&m->hist[b], memory_order_relaxed);
        if ((double)seen >= q * (double)total) {
            break;
        }
    }
    return ldexp(1.0, b + 1 - HIST_SHIFT);
}

void
plugin_user_metrics_report(const struct midge_plugin *p,
                           void (*emit)(const char *topic, const char *value))
{
    const midge_metric *m;
    char topic[256];
    char val[64];

    for (m = p->user_metrics; m != NULL; m = m->next) {
        if (m->kind != MIDGE_METRIC_HISTOGRAM) {
            snprintf(topic, sizeof(topic), "$SYS/broker/plugin/%s/metric/%s", p->name, m->name);
            snprintf(val, sizeof(val), "%lld",
                     (long long)atomic_load_explicit(&m->value, memory_order_relaxed));
            emit(topic, val);
            continue;
        }
        {
            uint64_t n = atomic_load_explicit(&m->count, memory_order_relaxed);
            static const char *const parts[] = {"count", "sum", "p50", "p99"};
            size_t i;
            for (i = 0; i < 4; i++) {
                snprintf(topic, sizeof(topic), "$SYS/broker/plugin/%s/metric/%s/%s", p->name,
                         m->name, parts[i]);
                switch (i) {
                case 0:
                    snprintf(val, sizeof(val), "%llu", (unsigned long long)n);
                    break;
                case 1:
                    snprintf(val, sizeof(val), "%g",
                             atomic_load_explicit(&m->sum, memory_order_relaxed));
                    break;
                default:
                    snprintf(val, sizeof(val), "%g",
                             n ? hist_quantile(m, n, i == 2 ? 0.5 : 0.99) : 0.0);
                    break;
                }
                emit(topic, val);
            }
        }
    }
}

void
plugin_user_metrics_free(struct midge_plugin *p)
{
    while (p->user_metrics != NULL) {
        midge_metric *m = p->user_metrics;
        p->user_metrics = m->next;
        free(m->name);
        free(m->help);
        free(m);
    }
}

/* Upper bounds of the histogram buckets (bucket b: below 2^(b+1-HIST_SHIFT)). Read-only once set. */
static double hist_le[HIST_BUCKETS];
static pthread_once_t hist_le_once = PTHREAD_ONCE_INIT;

static void
hist_le_init(void)
{
    int b;

    for (b = 0; b < HIST_BUCKETS - 1; b++) {
        hist_le[b] = ldexp(1.0, b + 1 - HIST_SHIFT);
    }
    hist_le[HIST_BUCKETS - 1] = INFINITY; /* the last bucket also holds everything larger */
}

int
plugin_metric_list(midge_plugin *self, int (*cb)(void *arg, const struct midge_metric_info *info),
                   void *arg)
{
    const struct midge_plugin *p;
    int calls = 0;

    (void)self;
    if (cb == NULL) {
        return -MIDGE_EINVAL;
    }
    if (!atomic_load_explicit(&plugins_ready, memory_order_acquire)) {
        return -MIDGE_ESTATE;
    }
    pthread_once(&hist_le_once, hist_le_init);
    for (p = plugins; p != NULL; p = p->next) {
        const midge_metric *m;
        for (m = p->user_metrics; m != NULL; m = m->next) {
            struct midge_metric_info info;
            uint64_t counts[HIST_BUCKETS];
            memset(&info, 0, sizeof(info));
            info.size = sizeof(info);
            info.instance = p->name;
            info.name = m->name;
            info.help = m->help;
            info.kind = m->kind;
            if (m->kind == MIDGE_METRIC_HISTOGRAM) {
                int b;
                for (b = 0; b < HIST_BUCKETS; b++) {
                    counts[b] = atomic_load_explicit(&m->hist[b], memory_order_relaxed);
                }
                info.count = atomic_load_explicit(&m->count, memory_order_relaxed);
                info.sum = atomic_load_explicit(&m->sum, memory_order_relaxed);
                info.buckets = HIST_BUCKETS;
                info.bucket_le = hist_le;
                info.bucket_count = counts;
            } else {
                info.value = atomic_load_explicit(&m->value, memory_order_relaxed);
            }
            calls++;
            if (cb(arg, &info) != 0) {
                return calls;
            }
        }
    }
    return calls;
}
