/* Taking a snapshot of the broker's counters and plugins (see snapshot.h). */
#include "snapshot.h"

#include <stdlib.h>
#include <string.h>

static char *
dup_or_empty(const char *s)
{
    return strdup(s != NULL ? s : "");
}

/* Copies n doubles / counters into fresh arrays. 0 or -1. */
static int
copy_buckets(size_t n, const double *le, const uint64_t *count, double **le_out,
             uint64_t **count_out)
{
    *le_out = NULL;
    *count_out = NULL;
    if (n == 0 || le == NULL || count == NULL) {
        return 0;
    }
    *le_out = malloc(n * sizeof(**le_out));
    *count_out = malloc(n * sizeof(**count_out));
    if (*le_out == NULL || *count_out == NULL) {
        return -1;
    }
    memcpy(*le_out, le, n * sizeof(**le_out));
    memcpy(*count_out, count, n * sizeof(**count_out));
    return 0;
}

/* plugin_list callback: appends a copy of the instance. */
static int add_plugin_copy(struct snapshot *s, const struct midge_plugin_info *info);

static int
add_plugin(void *arg, const struct midge_plugin_info *info)
{
    struct snapshot *s = arg;

    if (add_plugin_copy(s, info) != 0) {
        s->oom = 1;
        return 1;
    }
    return 0;
}

static int
add_plugin_copy(struct snapshot *s, const struct midge_plugin_info *info)
{
    struct snap_plugin *v;
    struct snap_plugin *p;
    size_t i;

    v = realloc(s->plugins, (s->plugin_count + 1) * sizeof(*v));
    if (v == NULL) {
        return 1;
    }
    s->plugins = v;
    p = &v[s->plugin_count++];
    memset(p, 0, sizeof(*p));
    p->instance = dup_or_empty(info->instance);
    p->name = dup_or_empty(info->name);
    p->version = dup_or_empty(info->version);
    p->description = dup_or_empty(info->description);
    if (p->instance == NULL || p->name == NULL || p->version == NULL || p->description == NULL) {
        return 1;
    }
    if (!MIDGE_HAS_FIELD(struct midge_plugin_info, info, hook_count) || info->hook_count == 0) {
        return 0;
    }
    p->hooks = calloc(info->hook_count, sizeof(*p->hooks));
    if (p->hooks == NULL) {
        return 1;
    }
    p->hook_count = info->hook_count;
    for (i = 0; i < info->hook_count; i++) {
        const struct midge_hook_stats *h = &info->hooks[i];
        struct snap_hook *d = &p->hooks[i];
        d->hook = dup_or_empty(h->hook);
        d->calls = h->calls;
        d->allow = h->allow;
        d->deny = h->deny;
        d->defer = h->defer;
        d->pending = h->pending;
        d->timeouts = h->timeouts;
        d->buckets = h->latency_buckets;
        if (d->hook == NULL ||
            copy_buckets(d->buckets, h->latency_le, h->latency_count, &d->le, &d->count) != 0) {
            return 1;
        }
    }
    return 0;
}

/* metric_list callback: appends a copy of the metric. */
static int add_metric_copy(struct snapshot *s, const struct midge_metric_info *info);

static int
add_metric(void *arg, const struct midge_metric_info *info)
{
    struct snapshot *s = arg;

    if (add_metric_copy(s, info) != 0) {
        s->oom = 1;
        return 1;
    }
    return 0;
}

static int
add_metric_copy(struct snapshot *s, const struct midge_metric_info *info)
{
    struct snap_metric *v;
    struct snap_metric *m;
    const char *plugin;

    v = realloc(s->metrics, (s->metric_count + 1) * sizeof(*v));
    if (v == NULL) {
        return 1;
    }
    s->metrics = v;
    m = &v[s->metric_count++];
    memset(m, 0, sizeof(*m));
    plugin = snapshot_plugin_name(s, info->instance);
    m->instance = dup_or_empty(info->instance);
    m->plugin = dup_or_empty(plugin);
    m->name = dup_or_empty(info->name);
    m->help = dup_or_empty(info->help);
    m->kind = info->kind;
    m->value = info->value;
    m->count = info->count;
    m->sum = info->sum;
    if (m->instance == NULL || m->plugin == NULL || m->name == NULL || m->help == NULL) {
        return 1;
    }
    if (MIDGE_HAS_FIELD(struct midge_metric_info, info, label_value) && info->label_name != NULL &&
        info->label_value != NULL) {
        if ((m->label_name = strdup(info->label_name)) == NULL ||
            (m->label_value = strdup(info->label_value)) == NULL) {
            return 1;
        }
    }
    if (info->kind == MIDGE_METRIC_HISTOGRAM) {
        m->buckets = info->buckets;
        if (copy_buckets(m->buckets, info->bucket_le, info->bucket_count, &m->le,
                         &m->bucket_count) != 0) {
            return 1;
        }
    }
    return 0;
}

const char *
snapshot_plugin_name(const struct snapshot *s, const char *instance)
{
    size_t i;

    for (i = 0; instance != NULL && i < s->plugin_count; i++) {
        if (strcmp(s->plugins[i].instance, instance) == 0) {
            return s->plugins[i].name;
        }
    }
    return NULL;
}

int
snapshot_take(struct snapshot *s, midge_plugin *self, const struct midge_api *api)
{
    memset(s, 0, sizeof(*s));
    s->stats.size = sizeof(s->stats);
    if (MIDGE_API_HAS(api, stats) && api->stats(self, &s->stats) == 0) {
        s->have_stats = 1;
    }
    /*
     * A failed callback (no memory) stops the walk and leaves a partial
     * list: report that as an error rather than half the plugins.
     */
    if (MIDGE_API_HAS(api, plugin_list)) {
        int n = api->plugin_list(self, add_plugin, s);
        if (s->oom) {
            goto fail;
        }
        s->have_plugins = n >= 0;
    }
    if (s->have_plugins && MIDGE_API_HAS(api, metric_list)) {
        api->metric_list(self, add_metric, s);
        if (s->oom) {
            goto fail;
        }
    }
    return 0;
fail:
    snapshot_free(s);
    return -1;
}

void
snapshot_free(struct snapshot *s)
{
    size_t i;
    size_t j;

    for (i = 0; i < s->plugin_count; i++) {
        struct snap_plugin *p = &s->plugins[i];
        for (j = 0; j < p->hook_count; j++) {
            free(p->hooks[j].hook);
            free(p->hooks[j].le);
            free(p->hooks[j].count);
        }
        free(p->hooks);
        free(p->instance);
        free(p->name);
        free(p->version);
        free(p->description);
    }
    free(s->plugins);
    for (i = 0; i < s->metric_count; i++) {
        struct snap_metric *m = &s->metrics[i];
        free(m->instance);
        free(m->plugin);
        free(m->name);
        free(m->help);
        free(m->label_name);
        free(m->label_value);
        free(m->le);
        free(m->bucket_count);
    }
    free(s->metrics);
    memset(s, 0, sizeof(*s));
}
