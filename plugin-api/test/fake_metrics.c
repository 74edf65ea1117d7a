/*
 * Plugin metrics of the fake broker (api->metric_*): kept per instance so a
 * test reads them with midge_test_metric(). Histograms keep every
 * observation, so percentiles are exact (nearest rank), which is fine at
 * test scale.
 */
#include <float.h>
#include <math.h> /* INFINITY: a constant, no libm */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/*
 * A metric. Owned by the broker's metric list: freed at the instance's next
 * load or with the broker. Values protected by fb->lock.
 */
struct midge_metric {
    midge_test_broker *fb;
    midge_plugin *plugin;
    char *name;
    char *help;
    char *label_name;  /* a labeled series (ABI 1.2); NULL for api->metric_new's */
    char *label_value;
    int kind;
    int64_t value;     /* counter, gauge */
    double *obs;       /* histogram observations */
    size_t obs_n;
    size_t obs_cap;
    double sum;
    struct midge_metric *next;
};

/* [a-z0-9_]+, as the header requires. */
static int
name_ok(const char *name)
{
    size_t i;

    if (name == NULL || name[0] == '\0') {
        return 0;
    }
    for (i = 0; name[i] != '\0'; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
            return 0;
        }
    }
    return 1;
}

/* p's metric `name` (any series of it), with fb->lock held. */
static struct midge_metric *
find_locked(midge_test_broker *fb, const midge_plugin *p, const char *name)
{
    struct midge_metric *m;

    for (m = fb->metrics; m != NULL; m = m->next) {
        if (m->plugin == p && strcmp(m->name, name) == 0) {
            return m;
        }
    }
    return NULL;
}

/* p's series name{...=label_value}, with fb->lock held. */
static struct midge_metric *
find_series_locked(midge_test_broker *fb, const midge_plugin *p, const char *name,
                   const char *label_value)
{
    struct midge_metric *m;

    for (m = fb->metrics; m != NULL; m = m->next) {
        if (m->plugin == p && strcmp(m->name, name) == 0 && m->label_value != NULL &&
            strcmp(m->label_value, label_value) == 0) {
            return m;
        }
    }
    return NULL;
}

static void
metric_destroy(struct midge_metric *m)
{
    free(m->name);
    free(m->help);
    free(m->label_name);
    free(m->label_value);
    free(m->obs);
    free(m);
}

static midge_metric *
api_metric_new(midge_plugin *self, const char *name, int kind, const char *help)
{
    midge_test_broker *fb = self->fb;
    struct midge_metric *m = NULL;
    int dup;

    if (!fake_configuring(self) || !self->in_init) {
        fake_bug(fb, self, "api->metric_new(\"%s\") called outside init",
                 name != NULL ? name : "(null)");
        goto out;
    }
    if (!name_ok(name) || kind < MIDGE_METRIC_COUNTER || kind > MIDGE_METRIC_HISTOGRAM) {
        goto out;
    }
    pthread_mutex_lock(&fb->lock);
    dup = find_locked(fb, self, name) != NULL;
    pthread_mutex_unlock(&fb->lock);
    if (dup) {
        goto out;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        goto out;
    }
    m->fb = fb;
    m->plugin = self;
    m->kind = kind;
    m->name = strdup(name);
    m->help = strdup(help != NULL ? help : "");
    if (m->name == NULL || m->help == NULL) {
        metric_destroy(m);
        m = NULL;
        goto out;
    }
    pthread_mutex_lock(&fb->lock);
    m->next = fb->metrics;
    fb->metrics = m;
    pthread_mutex_unlock(&fb->lock);
out:
    return m;
}

/* [a-z_][a-z0-9_]*, not the exporter's labels (instance, le, quantile) nor __... */
static int
label_name_ok(const char *n)
{
    return name_ok(n) && !(n[0] >= '0' && n[0] <= '9') && strncmp(n, "__", 2) != 0 &&
           strcmp(n, "instance") != 0 && strcmp(n, "le") != 0 && strcmp(n, "quantile") != 0 &&
           strlen(n) <= 64;
}

/* 1-128 bytes without control characters (the broker also checks UTF-8). */
static int
label_value_ok(const char *v)
{
    size_t i;

    if (v == NULL || v[0] == '\0' || strlen(v) > 128) {
        return 0;
    }
    for (i = 0; v[i] != '\0'; i++) {
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int
str_same(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* ABI 1.2: one series of a labeled family; any time, any thread (as the broker). */
static midge_metric *
api_metric_new_labeled(midge_plugin *self, const char *name, int kind, const char *help,
                       const char *label_name, const char *label_value)
{
    midge_test_broker *fb;
    struct midge_metric *m;
    struct midge_metric **pp;
    const char *why = NULL;

    if (self == NULL || !name_ok(name) || kind < MIDGE_METRIC_COUNTER ||
        kind > MIDGE_METRIC_HISTOGRAM || !label_name_ok(label_name) ||
        !label_value_ok(label_value)) {
        return NULL;
    }
    fb = self->fb;
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    m->fb = fb;
    m->plugin = self;
    m->kind = kind;
    m->name = strdup(name);
    m->help = strdup(help != NULL ? help : "");
    m->label_name = strdup(label_name);
    m->label_value = strdup(label_value);
    if (m->name == NULL || m->help == NULL || m->label_name == NULL || m->label_value == NULL) {
        metric_destroy(m);
        return NULL;
    }
    pthread_mutex_lock(&fb->lock);
    /* fb->metrics is newest first: before the family's newest series = right after it when listed. */
    for (pp = &fb->metrics; *pp != NULL; pp = &(*pp)->next) {
        const struct midge_metric *o = *pp;
        if (o->plugin != self || strcmp(o->name, name) != 0) {
            continue;
        }
        if (o->label_name == NULL) {
            why = "is a plain metric (api->metric_new)";
        } else if (o->kind != kind || !str_same(o->help, m->help) ||
                   strcmp(o->label_name, label_name) != 0) {
            why = "has series of another kind, help or label name";
        } else if (find_series_locked(fb, self, name, label_value) != NULL) {
            why = "has a series with this label value already";
        }
        break;
    }
    if (why == NULL) {
        if (*pp == NULL) {
            pp = &fb->metrics;
        }
        m->next = *pp;
        *pp = m;
    }
    pthread_mutex_unlock(&fb->lock);
    if (why != NULL) {
        fake_bug(fb, self, "api->metric_new_labeled(\"%s\", %s=\"%s\"): the name %s", name,
                 label_name, label_value, why);
        metric_destroy(m);
        return NULL;
    }
    return m;
}

/* ABI 1.2: drops a labeled series. */
static void
api_metric_free(midge_metric *m)
{
    midge_test_broker *fb;
    struct midge_metric **pp;

    if (m == NULL) {
        return;
    }
    fb = m->fb;
    if (m->label_name == NULL) {
        fake_bug(fb, m->plugin, "api->metric_free(%s) of a plain metric (api->metric_new): kept",
                 m->name);
        return;
    }
    pthread_mutex_lock(&fb->lock);
    for (pp = &fb->metrics; *pp != NULL && *pp != m; pp = &(*pp)->next) {
    }
    if (*pp == m) {
        *pp = m->next;
    }
    pthread_mutex_unlock(&fb->lock);
    metric_destroy(m);
}

static void
api_metric_add(midge_metric *m, int64_t delta)
{
    const char *why = NULL;

    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->fb->lock);
    if (m->kind == MIDGE_METRIC_HISTOGRAM) {
        why = "on a histogram (use api->metric_observe)";
    } else if (m->kind == MIDGE_METRIC_COUNTER && delta < 0) {
        why = "with a negative delta on a counter (counters only grow)";
    } else {
        m->value += delta;
    }
    pthread_mutex_unlock(&m->fb->lock);
    if (why != NULL) {
        fake_bug(m->fb, m->plugin, "api->metric_add(%s) %s: ignored", m->name, why);
    }
}

static void
api_metric_set(midge_metric *m, int64_t value)
{
    int ok;

    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->fb->lock);
    ok = m->kind == MIDGE_METRIC_GAUGE;
    if (ok) {
        m->value = value;
    }
    pthread_mutex_unlock(&m->fb->lock);
    if (!ok) {
        fake_bug(m->fb, m->plugin, "api->metric_set(%s) on a %s: only gauges can be set", m->name,
                 m->kind == MIDGE_METRIC_COUNTER ? "counter" : "histogram");
    }
}

static void
api_metric_observe(midge_metric *m, double value)
{
    const char *why = NULL;

    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->fb->lock);
    if (m->kind != MIDGE_METRIC_HISTOGRAM) {
        why = "on a counter or gauge (use api->metric_add/metric_set)";
    } else if (!(value >= 0) || value > DBL_MAX) {
        why = "with a value that is negative, NaN or infinite";
    } else {
        if (m->obs_n == m->obs_cap) {
            size_t cap = m->obs_cap ? m->obs_cap * 2 : 16;
            double *nv = realloc(m->obs, cap * sizeof(*nv));
            if (nv != NULL) {
                m->obs = nv;
                m->obs_cap = cap;
            }
        }
        if (m->obs_n < m->obs_cap) {
            m->obs[m->obs_n++] = value;
            m->sum += value;
        }
    }
    pthread_mutex_unlock(&m->fb->lock);
    if (why != NULL) {
        fake_bug(m->fb, m->plugin, "api->metric_observe(%s) %s: ignored", m->name, why);
    }
}

#define LIST_BUCKETS 64 /* as the broker: bucket b below 2^(b-19), the last one unbounded */

/* One metric copied out under the lock for api->metric_list. */
struct list_item {
    struct midge_metric_info info;
    uint64_t counts[LIST_BUCKETS];
};

/*
 * api->metric_list: every metric of every instance, in definition order,
 * histograms bucketed as the broker does. Values are copied under fb->lock;
 * callbacks run without it. Names stay valid: metrics are freed only when
 * their instance loads again or with the broker (main thread).
 */
static int
api_metric_list(midge_plugin *self, int (*cb)(void *arg, const struct midge_metric_info *info),
                void *arg)
{
    double le[LIST_BUCKETS];
    midge_test_broker *fb;
    const struct midge_metric *m;
    struct list_item *items = NULL;
    size_t n = 0;
    size_t i;
    int calls = 0;

    if (self == NULL || cb == NULL) {
        return -MIDGE_EINVAL;
    }
    fb = self->fb;
    /* Powers of two by multiplication: the fake needs no libm. */
    le[0] = 1.0 / 524288.0; /* 2^-19 */
    for (i = 1; i < LIST_BUCKETS; i++) {
        le[i] = i + 1 < LIST_BUCKETS ? le[i - 1] * 2 : INFINITY;
    }
    pthread_mutex_lock(&fb->lock);
    for (m = fb->metrics; m != NULL; m = m->next) {
        n++;
    }
    items = calloc(n + 1, sizeof(*items));
    /* fb->metrics is newest first: fill from the end for definition order. */
    for (m = fb->metrics, i = n; items != NULL && m != NULL; m = m->next) {
        struct list_item *it = &items[--i];
        size_t k;
        it->info.size = sizeof(it->info);
        it->info.instance = m->plugin->name;
        it->info.name = m->name;
        it->info.help = m->help;
        it->info.kind = m->kind;
        it->info.value = m->value;
        it->info.label_name = m->label_name;
        it->info.label_value = m->label_value;
        if (m->kind == MIDGE_METRIC_HISTOGRAM) {
            it->info.count = m->obs_n;
            it->info.sum = m->sum;
            for (k = 0; k < m->obs_n; k++) {
                size_t b = 0;
                while (b + 1 < LIST_BUCKETS && m->obs[k] >= le[b]) {
                    b++;
                }
                it->counts[b]++;
            }
            it->info.buckets = LIST_BUCKETS;
            it->info.bucket_le = le;
            it->info.bucket_count = it->counts;
        }
    }
    pthread_mutex_unlock(&fb->lock);
    if (items == NULL) {
        return -MIDGE_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        calls++;
        if (cb(arg, &items[i].info) != 0) {
            break;
        }
    }
    free(items);
    return calls;
}

/* The entries of the API table that this file implements. */
void
fake_metrics_api_fill(struct midge_api *a)
{
    a->metric_list = api_metric_list;
    a->metric_new = api_metric_new;
    a->metric_add = api_metric_add;
    a->metric_set = api_metric_set;
    a->metric_observe = api_metric_observe;
    a->metric_new_labeled = api_metric_new_labeled;
    a->metric_free = api_metric_free;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0..1] of n sorted values. */
static double
percentile(const double *sorted, size_t n, double q)
{
    double want = q * (double)n;
    size_t rank = (size_t)want;

    if ((double)rank < want) {
        rank++; /* ceil without libm */
    }

    if (n == 0) {
        return 0;
    }
    return sorted[rank > 0 ? rank - 1 : 0];
}

static int read_metric(const midge_plugin *p, const char *name, const char *label_value,
                       struct midge_test_metric *out);

/* Reads a metric; see plugin_test.h. */
int
midge_test_metric(const midge_plugin *p, const char *name, struct midge_test_metric *out)
{
    return read_metric(p, name, NULL, out);
}

/* Reads one labeled series; see plugin_test.h. */
int
midge_test_metric_labeled(const midge_plugin *p, const char *name, const char *label_value,
                          struct midge_test_metric *out)
{
    if (label_value == NULL) {
        return -MIDGE_EINVAL;
    }
    return read_metric(p, name, label_value, out);
}

static int
read_metric(const midge_plugin *p, const char *name, const char *label_value,
            struct midge_test_metric *out)
{
    midge_test_broker *fb = p->fb;
    const struct midge_metric *m;
    double *sorted = NULL;
    int rc = -MIDGE_ENOENT;

    if (name == NULL || out == NULL) {
        return -MIDGE_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&fb->lock);
    m = label_value != NULL ? find_series_locked(fb, p, name, label_value)
                            : find_locked(fb, p, name);
    if (m == NULL) {
        goto out;
    }
    out->kind = m->kind;
    out->help = m->help;
    out->value = m->value;
    out->count = m->obs_n;
    out->sum = m->sum;
    if (m->obs_n > 0) {
        rc = -MIDGE_ENOMEM;
        if ((sorted = malloc(m->obs_n * sizeof(*sorted))) == NULL) {
            goto out;
        }
        memcpy(sorted, m->obs, m->obs_n * sizeof(*sorted));
        qsort(sorted, m->obs_n, sizeof(*sorted), cmp_double);
        out->p50 = percentile(sorted, m->obs_n, 0.50);
        out->p99 = percentile(sorted, m->obs_n, 0.99);
    }
    rc = 0;
out:
    pthread_mutex_unlock(&fb->lock);
    free(sorted);
    return rc;
}

/* Frees the metrics of p (a new load creates them again); NULL p: all. */
static void
drop(midge_test_broker *fb, const midge_plugin *p)
{
    struct midge_metric **pp;

    pthread_mutex_lock(&fb->lock);
    pp = &fb->metrics;
    while (*pp != NULL) {
        struct midge_metric *m = *pp;
        if (p != NULL && m->plugin != p) {
            pp = &m->next;
            continue;
        }
        *pp = m->next;
        metric_destroy(m);
    }
    pthread_mutex_unlock(&fb->lock);
}

/* Frees p's metrics before it loads again. */
void
fake_metrics_drop(midge_plugin *p)
{
    drop(p->fb, p);
}

/* Frees every metric (with the broker). */
void
fake_metrics_free(midge_test_broker *fb)
{
    drop(fb, NULL);
}
