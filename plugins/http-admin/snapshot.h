/*
 * A copy of everything /metrics and the JSON API report about the broker
 * and its plugins, taken with thread-safe API calls (api->stats,
 * api->plugin_list, api->metric_list) on the HTTP thread, then rendered
 * without touching the broker again.
 */
#ifndef HTTP_ADMIN_SNAPSHOT_H
#define HTTP_ADMIN_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include <midge/plugin.h>

/* One measured hook of a plugin instance. Owned by its snap_plugin. */
struct snap_hook {
    char *hook;
    uint64_t calls, allow, deny, defer, pending, timeouts;
    size_t buckets;
    double *le;        /* upper bounds, seconds */
    uint64_t *count;   /* not cumulative */
};

/* One plugin instance. Owned by the snapshot. */
struct snap_plugin {
    char *instance;
    char *name;
    char *version;     /* "" when the plugin declares none */
    char *description; /* "" when none */
    struct snap_hook *hooks;
    size_t hook_count;
};

/* One metric a plugin defined. Owned by the snapshot. */
struct snap_metric {
    char *instance;
    char *plugin;      /* the descriptor name of its instance ("" when unknown) */
    char *name;
    char *help;        /* "" when none */
    char *label_name;  /* a labeled series (ABI 1.2+): its label; both NULL otherwise */
    char *label_value;
    int kind;          /* enum midge_metric_kind */
    int64_t value;
    uint64_t count;
    double sum;
    size_t buckets;
    double *le;
    uint64_t *bucket_count; /* not cumulative */
};

/* Owns every array and string in it; freed by snapshot_free. */
struct snapshot {
    struct midge_broker_stats stats;
    int have_stats;
    struct snap_plugin *plugins;
    size_t plugin_count;
    int have_plugins;      /* 0: the broker has no plugin_list or is still starting */
    struct snap_metric *metrics;
    size_t metric_count;
    /* Sums over every session (api->client_list), when have_sessions. */
    int have_sessions;
    uint64_t queued;
    uint64_t inflight;
    int oom;               /* a copy failed while taking it */
};

/*
 * Fills *s from the broker (api->stats, plugin_list, metric_list); what the
 * broker cannot give is left out (have_* 0). Returns 0 or -1 (no memory;
 * *s is freed then). [any thread]
 */
int snapshot_take(struct snapshot *s, midge_plugin *self, const struct midge_api *api);

/* The instance's descriptor name, or NULL when it is not in the snapshot. */
const char *snapshot_plugin_name(const struct snapshot *s, const char *instance);

void snapshot_free(struct snapshot *s);

#endif
