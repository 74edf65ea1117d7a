/*
 * Metrics a plugin defines itself (api->metric_new and friends), published
 * by $SYS as $SYS/broker/plugin/INSTANCE/metric/NAME, and labeled series
 * (api->metric_new_labeled, ABI 1.2) as .../metric/NAME/LABEL_VALUE.
 * Updates are single atomic operations so any thread may call them on the
 * hot path. The lists of metrics change (labeled series come and go on any
 * thread) under `metrics_lock`, which every reader of a list holds too.
 */
#include "plugin.h"

#include "mqtt/mqtt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define HIST_BUCKETS 64 /* bucket b: values in [2^(b-20), 2^(b-19)), b 0 also holds smaller */
#define HIST_SHIFT 20   /* so bucket 20 starts at 1.0: micro-units to millions */

#define LABEL_VALUE_MAX 128

/*
 * A plugin metric or labeled series. Owned by its instance's user_metrics
 * list (plain ones are added in init; labeled ones come and go with
 * metric_new_labeled / metric_free, under metrics_lock; all are freed with
 * the instance); the plugin holds a borrowed pointer.
 */
struct midge_metric {
    char *name;
    char *help;
    char *label_name;                         /* NULL: a plain metric */
    char *label_value;
    struct midge_plugin *owner;               /* the instance whose list holds it */
    int kind;                                 /* enum midge_metric_kind */
    atomic_int_fast64_t value;                /* counter / gauge */
    atomic_uint_fast64_t hist[HIST_BUCKETS];  /* histogram */
    atomic_uint_fast64_t count;               /* histogram observations */
    _Atomic double sum;                       /* histogram sum */
    struct midge_metric *next;
};

/*
 * The $SYS topics of a freed labeled series, cleared (empty retained
 * message) at the next $SYS publication. Owned by the `tombs` list; under
 * metrics_lock.
 */
struct tomb {
    struct midge_plugin *owner;
    char *topic;              /* $SYS/broker/plugin/INSTANCE/metric/NAME/VALUE */
    int histogram;            /* also /count, /sum, /p50, /p99 below it */
    struct tomb *next;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tomb *tombs;

static void
metric_destroy(midge_metric *m)
{
    free(m->name);
    free(m->help);
    free(m->label_name);
    free(m->label_value);
    free(m);
}

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

/* A new metric of self, not yet listed; NULL when out of memory. */
static midge_metric *
metric_alloc(midge_plugin *self, const char *name, int kind, const char *help)
{
    midge_metric *m = calloc(1, sizeof(*m));

    if (m == NULL || (m->name = strdup(name)) == NULL ||
        (help != NULL && (m->help = strdup(help)) == NULL)) {
        if (m != NULL) {
            metric_destroy(m);
        }
        return NULL;
    }
    m->kind = kind;
    m->owner = self;
    return m;
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
    if (!name_valid(name) || kind < MIDGE_METRIC_COUNTER || kind > MIDGE_METRIC_HISTOGRAM ||
        (m = metric_alloc(self, name, kind, help)) == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&metrics_lock);
    for (tail = &self->user_metrics; *tail != NULL; tail = &(*tail)->next) {
        if (strcmp((*tail)->name, name) == 0) {
            pthread_mutex_unlock(&metrics_lock);
            metric_destroy(m);
            return NULL;
        }
    }
    *tail = m;
    pthread_mutex_unlock(&metrics_lock);
    return m;
}

static int
label_name_valid(const char *s)
{
    if (!name_valid(s) || (s[0] >= '0' && s[0] <= '9') || strncmp(s, "__", 2) == 0) {
        return 0;
    }
    /* The exporter's own labels: `instance` on every plugin metric, le and quantile on histograms. */
    return strcmp(s, "instance") != 0 && strcmp(s, "le") != 0 && strcmp(s, "quantile") != 0;
}

static int
label_value_valid(const char *s)
{
    size_t n;
    size_t i;

    if (s == NULL || (n = strlen(s)) == 0 || n > LABEL_VALUE_MAX ||
        !mqtt_utf8_valid((const uint8_t *)s, n)) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int
str_same(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

midge_metric *
plugin_metric_new_labeled(midge_plugin *self, const char *name, int kind, const char *help,
                          const char *label_name, const char *label_value)
{
    midge_metric *m;
    midge_metric **pos;
    midge_metric **after = NULL; /* the link after the last series of `name` */

    if (self == NULL || !name_valid(name) || kind < MIDGE_METRIC_COUNTER ||
        kind > MIDGE_METRIC_HISTOGRAM || !label_name_valid(label_name) ||
        !label_value_valid(label_value)) {
        return NULL;
    }
    if ((m = metric_alloc(self, name, kind, help)) == NULL) {
        return NULL;
    }
    if ((m->label_name = strdup(label_name)) == NULL ||
        (m->label_value = strdup(label_value)) == NULL) {
        metric_destroy(m);
        return NULL;
    }
    pthread_mutex_lock(&metrics_lock);
    for (pos = &self->user_metrics; *pos != NULL; pos = &(*pos)->next) {
        const midge_metric *o = *pos;
        if (strcmp(o->name, name) != 0) {
            continue;
        }
        if (o->label_name == NULL || o->kind != kind || !str_same(o->help, help) ||
            strcmp(o->label_name, label_name) != 0 || strcmp(o->label_value, label_value) == 0) {
            pthread_mutex_unlock(&metrics_lock);
            midge_log(MLOG_WARNING,
                      "plugin bug plugin=%s: metric_new_labeled %s{%s=\"%s\"} conflicts with an "
                      "existing series of that name", self->name, name, label_name, label_value);
            metric_destroy(m);
            return NULL;
        }
        after = &(*pos)->next;
    }
    /* A family's series stay together: exporters print them as one block. */
    if (after == NULL) {
        after = pos;
    }
    m->next = *after;
    *after = m;
    pthread_mutex_unlock(&metrics_lock);
    return m;
}

/* `topic` = $SYS/broker/plugin/INSTANCE/metric/NAME/VALUE, the value's '/', '+', '#' as '_'. */
static void
labeled_topic(const midge_metric *m, char *topic, size_t cap)
{
    int n = snprintf(topic, cap, "$SYS/broker/plugin/%s/metric/%s/", m->owner->name, m->name);
    char *v;

    if (n < 0 || (size_t)n >= cap) {
        return;
    }
    snprintf(topic + n, cap - (size_t)n, "%s", m->label_value);
    for (v = topic + n; *v != '\0'; v++) {
        if (*v == '/' || *v == '+' || *v == '#') {
            *v = '_';
        }
    }
}

void
plugin_metric_free(midge_metric *m)
{
    midge_metric **pp;
    struct tomb *t;
    char topic[512];

    if (m == NULL) {
        return;
    }
    if (m->label_name == NULL) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s: metric_free of %s made by metric_new (kept)",
                  m->owner->name, m->name);
        return;
    }
    labeled_topic(m, topic, sizeof(topic));
    t = calloc(1, sizeof(*t));
    if (t != NULL && (t->topic = strdup(topic)) == NULL) {
        free(t);
        t = NULL;
    }
    pthread_mutex_lock(&metrics_lock);
    for (pp = &m->owner->user_metrics; *pp != NULL && *pp != m; pp = &(*pp)->next) {
    }
    if (*pp == m) {
        *pp = m->next;
    }
    if (t != NULL) {
        t->owner = m->owner;
        t->histogram = m->kind == MIDGE_METRIC_HISTOGRAM;
        t->next = tombs;
        tombs = t;
    }
    pthread_mutex_unlock(&metrics_lock);
    metric_destroy(m);
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

/* (topic, value) pairs collected under the lock and emitted after it. Owns both arrays' strings. */
struct emitted {
    char **topic;
    char **value;
    size_t n;
    size_t cap;
};

static void
emitted_add(struct emitted *e, const char *topic, const char *value)
{
    char *t;
    char *v;

    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 32;
        char **nt = realloc(e->topic, cap * sizeof(*nt));
        char **nv;
        if (nt == NULL) {
            return;
        }
        e->topic = nt;
        if ((nv = realloc(e->value, cap * sizeof(*nv))) == NULL) {
            return;
        }
        e->value = nv;
        e->cap = cap;
    }
    t = strdup(topic);
    v = strdup(value);
    if (t == NULL || v == NULL) {
        free(t);
        free(v);
        return;
    }
    e->topic[e->n] = t;
    e->value[e->n] = v;
    e->n++;
}

static const char *const hist_parts[] = {"count", "sum", "p50", "p99"};

static void
report_one(const midge_metric *m, struct emitted *e)
{
    char base[512];
    char topic[600];
    char val[64];
    uint64_t n;
    size_t i;

    if (m->label_name != NULL) {
        labeled_topic(m, base, sizeof(base));
    } else {
        snprintf(base, sizeof(base), "$SYS/broker/plugin/%s/metric/%s", m->owner->name, m->name);
    }
    if (m->kind != MIDGE_METRIC_HISTOGRAM) {
        snprintf(val, sizeof(val), "%lld",
                 (long long)atomic_load_explicit(&m->value, memory_order_relaxed));
        emitted_add(e, base, val);
        return;
    }
    n = atomic_load_explicit(&m->count, memory_order_relaxed);
    for (i = 0; i < 4; i++) {
        snprintf(topic, sizeof(topic), "%s/%s", base, hist_parts[i]);
        switch (i) {
        case 0:
            snprintf(val, sizeof(val), "%llu", (unsigned long long)n);
            break;
        case 1:
            snprintf(val, sizeof(val), "%g", atomic_load_explicit(&m->sum, memory_order_relaxed));
            break;
        default:
            snprintf(val, sizeof(val), "%g", n ? hist_quantile(m, n, i == 2 ? 0.5 : 0.99) : 0.0);
            break;
        }
        emitted_add(e, topic, val);
    }
}

void
plugin_user_metrics_report(const struct midge_plugin *p,
                           void (*emit)(const char *topic, const char *value))
{
    const midge_metric *m;
    struct tomb **tp;
    struct emitted e = {NULL, NULL, 0, 0};
    size_t i;

    pthread_mutex_lock(&metrics_lock);
    /* Freed series first: an empty retained message clears each topic. */
    for (tp = &tombs; *tp != NULL;) {
        struct tomb *t = *tp;
        if (t->owner != p) {
            tp = &t->next;
            continue;
        }
        emitted_add(&e, t->topic, "");
        for (i = 0; t->histogram && i < 4; i++) {
            char topic[600];
            snprintf(topic, sizeof(topic), "%s/%s", t->topic, hist_parts[i]);
            emitted_add(&e, topic, "");
        }
        *tp = t->next;
        free(t->topic);
        free(t);
    }
    for (m = p->user_metrics; m != NULL; m = m->next) {
        report_one(m, &e);
    }
    pthread_mutex_unlock(&metrics_lock);
    /* emit publishes, which may run plugin code: not under the lock. */
    for (i = 0; i < e.n; i++) {
        emit(e.topic[i], e.value[i]);
        free(e.topic[i]);
        free(e.value[i]);
    }
    free(e.topic);
    free(e.value);
}

void
plugin_user_metrics_free(struct midge_plugin *p)
{
    struct tomb **tp;

    pthread_mutex_lock(&metrics_lock);
    while (p->user_metrics != NULL) {
        midge_metric *m = p->user_metrics;
        p->user_metrics = m->next;
        metric_destroy(m);
    }
    for (tp = &tombs; *tp != NULL;) {
        struct tomb *t = *tp;
        if (t->owner == p) {
            *tp = t->next;
            free(t->topic);
            free(t);
        } else {
            tp = &t->next;
        }
    }
    pthread_mutex_unlock(&metrics_lock);
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
    pthread_mutex_lock(&metrics_lock);
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
            info.label_name = m->label_name;
            info.label_value = m->label_value;
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
                pthread_mutex_unlock(&metrics_lock);
                return calls;
            }
        }
    }
    pthread_mutex_unlock(&metrics_lock);
    return calls;
}
