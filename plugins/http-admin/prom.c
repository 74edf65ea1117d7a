/* Prometheus text rendering (see prom.h). */
#include "prom.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A broker-wide counter or gauge taken from struct midge_broker_stats. */
struct stat_row {
    const char *name;
    const char *type;
    const char *help;
    size_t offset; /* of a uint64_t field */
};

#define ROW(n, t, h, f) {n, t, h, offsetof(struct midge_broker_stats, f)}
static const struct stat_row stat_rows[] = {
    ROW("midge_clients_connected", "gauge", "Clients with a network connection now.",
        clients_connected),
    ROW("midge_sessions", "gauge", "Sessions now, connected or not.", sessions),
    ROW("midge_subscriptions", "gauge", "Subscriptions now.", subscriptions),
    ROW("midge_retained_messages", "gauge", "Retained messages now.", retained),
    ROW("midge_message_bytes", "gauge", "Bytes held by messages now (what memory_limit counts).",
        message_bytes),
    ROW("midge_connects_total", "counter", "Successful CONNECTs.", connects),
    ROW("midge_packets_received_total", "counter", "MQTT packets received.", packets_received),
    ROW("midge_packets_sent_total", "counter", "MQTT packets sent.", packets_sent),
    ROW("midge_publish_received_total", "counter", "PUBLISH packets received.",
        publish_received),
    ROW("midge_publish_sent_total", "counter", "PUBLISH packets sent.", publish_sent),
    ROW("midge_publish_dropped_total", "counter",
        "Messages dropped (queue limits, output caps, memory_limit, oversize, expiry).",
        publish_dropped),
    ROW("midge_bytes_received_total", "counter", "Bytes received from clients.", bytes_received),
    ROW("midge_bytes_sent_total", "counter", "Bytes sent to clients.", bytes_sent),
};
#undef ROW

/* A family with one label, one series per value, from consecutive uint64_t fields. */
struct labeled_family {
    const char *name;
    const char *help;
    const char *label;
    size_t offset; /* of the first field */
    size_t count;
    const char *const *values;
};

static const char *const qos_values[] = {"0", "1", "2"};
static const char *const drop_values[] = {"queue_limit", "slow_client", "too_large", "refused",
                                          "plugin",      "overload",    "no_memory"};

#define FAM(n, h, l, f, c, v) {n, h, l, offsetof(struct midge_broker_stats, f), c, v}
static const struct labeled_family labeled_families[] = {
    FAM("midge_messages_received_total", "PUBLISH packets received, by QoS.", "qos",
        publish_received_qos, 3, qos_values),
    FAM("midge_messages_sent_total", "PUBLISH packets sent, by QoS.", "qos", publish_sent_qos,
        3, qos_values),
    FAM("midge_payload_bytes_received_total", "Payload bytes of the PUBLISH packets received, "
        "by QoS.", "qos", payload_bytes_received_qos, 3, qos_values),
    FAM("midge_payload_bytes_sent_total", "Payload bytes of the PUBLISH packets sent, by QoS.",
        "qos", payload_bytes_sent_qos, 3, qos_values),
    FAM("midge_messages_dropped_total", "Messages dropped, by reason (docs/http-api.md).",
        "reason", dropped_queue_limit, 7, drop_values),
};
#undef FAM
_Static_assert(offsetof(struct midge_broker_stats, dropped_no_memory) ==
                   offsetof(struct midge_broker_stats, dropped_queue_limit) + 6 * sizeof(uint64_t),
               "the drop reasons are consecutive fields");

static void
help_type(struct sbuf *b, const char *name, const char *help, const char *type)
{
    const char *p;

    sbuf_printf(b, "# HELP %s ", name);
    /* HELP text escapes backslash and newline only. */
    for (p = help; *p != '\0'; p++) {
        if (*p == '\\') {
            sbuf_puts(b, "\\\\");
        } else if (*p == '\n') {
            sbuf_puts(b, "\\n");
        } else {
            sbuf_append(b, p, 1);
        }
    }
    sbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

/* A label value with backslash, double quote and newline escaped. */
static void
label_value(struct sbuf *b, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\') {
            sbuf_puts(b, "\\\\");
        } else if (*v == '"') {
            sbuf_puts(b, "\\\"");
        } else if (*v == '\n') {
            sbuf_puts(b, "\\n");
        } else {
            sbuf_append(b, v, 1);
        }
    }
}

/*
 * NAME{instance="I",LNAME="LVALUE" (open: the caller adds more labels and
 * "}"). lname NULL: only the instance label. LNAME is "hook" for hook
 * families, a plugin's own label (api->metric_new_labeled) for its series.
 */
static void
series_open(struct sbuf *b, const char *name, const char *suffix, const char *instance,
            const char *lname, const char *lvalue)
{
    sbuf_printf(b, "%s%s{instance=\"", name, suffix);
    label_value(b, instance);
    sbuf_puts(b, "\"");
    if (lname != NULL) {
        sbuf_printf(b, ",%s=\"", lname);
        label_value(b, lvalue);
        sbuf_puts(b, "\"");
    }
}

/* A float as Prometheus reads it (+Inf, -Inf, NaN spelled its way). */
static void
number(struct sbuf *b, double v)
{
    if (isnan(v)) {
        sbuf_puts(b, "NaN");
    } else if (isinf(v)) {
        sbuf_puts(b, v > 0 ? "+Inf" : "-Inf");
    } else {
        sbuf_printf(b, "%.17g", v);
    }
}

/*
 * The _bucket, _sum and _count lines of one histogram series, buckets made
 * cumulative. Buckets after the last non-empty one add nothing but lines:
 * they are left out (+Inf always ends the series). `sum` < 0: unknown, the
 * _sum line is left out (the broker does not add up hook latencies).
 */
static void
histogram(struct sbuf *b, const char *name, const char *instance, const char *lname,
          const char *lvalue, size_t n, const double *le, const uint64_t *count, uint64_t total,
          double sum)
{
    size_t last = 0;
    size_t i;
    uint64_t cum = 0;

    for (i = 0; i < n; i++) {
        if (count[i] != 0 && !isinf(le[i])) {
            last = i + 1;
        }
    }
    for (i = 0; i < last; i++) {
        cum += count[i];
        series_open(b, name, "_bucket", instance, lname, lvalue);
        sbuf_puts(b, ",le=\"");
        number(b, le[i]);
        sbuf_printf(b, "\"} %llu\n", (unsigned long long)cum);
    }
    series_open(b, name, "_bucket", instance, lname, lvalue);
    sbuf_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)total);
    if (sum >= 0) {
        series_open(b, name, "_sum", instance, lname, lvalue);
        sbuf_puts(b, "} ");
        number(b, sum);
        sbuf_puts(b, "\n");
    }
    series_open(b, name, "_count", instance, lname, lvalue);
    sbuf_printf(b, "} %llu\n", (unsigned long long)total);
}

static void
render_broker(const struct snapshot *s, struct sbuf *b)
{
    size_t i;

    if (!s->have_stats) {
        return;
    }
    help_type(b, "midge_uptime_seconds", "Seconds since the broker started.", "gauge");
    sbuf_puts(b, "midge_uptime_seconds ");
    number(b, MIDGE_HAS_FIELD(struct midge_broker_stats, &s->stats, uptime) ? s->stats.uptime : 0);
    sbuf_puts(b, "\n");
    for (i = 0; i < sizeof(stat_rows) / sizeof(stat_rows[0]); i++) {
        const struct stat_row *r = &stat_rows[i];
        uint64_t v;
        if (s->stats.size < r->offset + sizeof(uint64_t)) {
            continue; /* an older broker does not fill it */
        }
        memcpy(&v, (const char *)&s->stats + r->offset, sizeof(v));
        help_type(b, r->name, r->help, r->type);
        sbuf_printf(b, "%s %llu\n", r->name, (unsigned long long)v);
    }
    for (i = 0; i < sizeof(labeled_families) / sizeof(labeled_families[0]); i++) {
        const struct labeled_family *f = &labeled_families[i];
        size_t k;
        if (s->stats.size < f->offset + f->count * sizeof(uint64_t)) {
            continue; /* an older broker does not fill it */
        }
        help_type(b, f->name, f->help, "counter");
        for (k = 0; k < f->count; k++) {
            uint64_t v;
            memcpy(&v, (const char *)&s->stats + f->offset + k * sizeof(uint64_t), sizeof(v));
            sbuf_printf(b, "%s{%s=\"%s\"} %llu\n", f->name, f->label, f->values[k],
                        (unsigned long long)v);
        }
    }
    if (s->have_sessions) {
        help_type(b, "midge_queued_messages", "Messages waiting in session queues now.", "gauge");
        sbuf_printf(b, "midge_queued_messages %llu\n", (unsigned long long)s->queued);
        help_type(b, "midge_inflight_messages",
                  "QoS 1/2 messages sent to clients and not yet acknowledged.", "gauge");
        sbuf_printf(b, "midge_inflight_messages %llu\n", (unsigned long long)s->inflight);
    }
}

/* One hook counter family over every instance and hook. */
static void
hook_counter(const struct snapshot *s, struct sbuf *b, const char *name, const char *help,
             size_t offset)
{
    size_t i;
    size_t j;

    help_type(b, name, help, "counter");
    for (i = 0; i < s->plugin_count; i++) {
        const struct snap_plugin *p = &s->plugins[i];
        for (j = 0; j < p->hook_count; j++) {
            uint64_t v;
            memcpy(&v, (const char *)&p->hooks[j] + offset, sizeof(v));
            series_open(b, name, "", p->instance, "hook", p->hooks[j].hook);
            sbuf_printf(b, "} %llu\n", (unsigned long long)v);
        }
    }
}

static void
render_plugins(const struct snapshot *s, struct sbuf *b)
{
    static const struct {
        const char *verdict;
        size_t offset;
    } verdicts[] = {
        {"allow", offsetof(struct snap_hook, allow)},
        {"deny", offsetof(struct snap_hook, deny)},
        {"defer", offsetof(struct snap_hook, defer)},
        {"pending", offsetof(struct snap_hook, pending)},
    };
    size_t i;
    size_t j;
    size_t k;
    int any_hook = 0;

    if (!s->have_plugins) {
        return;
    }
    help_type(b, "midge_plugin_info", "Loaded plugin instances (value 1).", "gauge");
    for (i = 0; i < s->plugin_count; i++) {
        const struct snap_plugin *p = &s->plugins[i];
        series_open(b, "midge_plugin_info", "", p->instance, NULL, NULL);
        sbuf_puts(b, ",plugin=\"");
        label_value(b, p->name);
        sbuf_puts(b, "\",version=\"");
        label_value(b, p->version);
        sbuf_puts(b, "\"} 1\n");
        any_hook |= p->hook_count > 0;
    }
    if (!any_hook) {
        return;
    }
    hook_counter(s, b, "midge_plugin_hook_calls_total", "Calls of a plugin's decision hook.",
                 offsetof(struct snap_hook, calls));
    help_type(b, "midge_plugin_hook_verdicts_total", "Answers of a plugin's decision hook.",
              "counter");
    for (i = 0; i < s->plugin_count; i++) {
        const struct snap_plugin *p = &s->plugins[i];
        for (j = 0; j < p->hook_count; j++) {
            for (k = 0; k < sizeof(verdicts) / sizeof(verdicts[0]); k++) {
                uint64_t v;
                memcpy(&v, (const char *)&p->hooks[j] + verdicts[k].offset, sizeof(v));
                series_open(b, "midge_plugin_hook_verdicts_total", "", p->instance, "hook",
                            p->hooks[j].hook);
                sbuf_printf(b, ",verdict=\"%s\"} %llu\n", verdicts[k].verdict,
                            (unsigned long long)v);
            }
        }
    }
    hook_counter(s, b, "midge_plugin_hook_timeouts_total",
                 "Pending decisions answered by plugin_timeout.",
                 offsetof(struct snap_hook, timeouts));
    help_type(b, "midge_plugin_hook_latency_seconds",
              "Time a decision hook took to answer (not counting PENDING waits).", "histogram");
    for (i = 0; i < s->plugin_count; i++) {
        const struct snap_plugin *p = &s->plugins[i];
        for (j = 0; j < p->hook_count; j++) {
            const struct snap_hook *h = &p->hooks[j];
            histogram(b, "midge_plugin_hook_latency_seconds", p->instance, "hook", h->hook,
                      h->buckets, h->le, h->count, h->calls, -1);
        }
    }
}

void
prom_plugin_family(const char *plugin, const char *metric, int kind, char *out, size_t len)
{
    size_t n = 0;
    const char *parts[2];
    size_t i;
    const char *prefix = "midge_plugin_";
    size_t mlen = strlen(metric);

    parts[0] = plugin;
    parts[1] = metric;
    if (len == 0) {
        return;
    }
    for (; *prefix != '\0' && n + 1 < len; prefix++) {
        out[n++] = *prefix;
    }
    for (i = 0; i < 2; i++) {
        const char *p;
        if (i == 1 && n + 1 < len) {
            out[n++] = '_';
        }
        for (p = parts[i]; *p != '\0' && n + 1 < len; p++) {
            char c = *p;
            int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '_';
            out[n++] = ok ? c : '_';
        }
    }
    if (kind == MIDGE_METRIC_COUNTER &&
        !(mlen >= 6 && strcmp(metric + mlen - 6, "_total") == 0)) {
        const char *t = "_total";
        for (; *t != '\0' && n + 1 < len; t++) {
            out[n++] = *t;
        }
    }
    out[n] = '\0';
}

/* Order of plugin metrics: by family, so each family's lines come together. */
struct fam_item {
    char family[256];
    const struct snap_metric *m;
    size_t pos; /* original position: keeps instances in chain order */
};

static int
fam_cmp(const void *a, const void *b)
{
    const struct fam_item *x = a;
    const struct fam_item *y = b;
    int c = strcmp(x->family, y->family);

    if (c != 0) {
        return c;
    }
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static void
render_plugin_metrics(const struct snapshot *s, struct sbuf *b)
{
    struct fam_item *items;
    size_t i;

    if (s->metric_count == 0) {
        return;
    }
    items = calloc(s->metric_count, sizeof(*items));
    if (items == NULL) {
        b->failed = 1;
        return;
    }
    for (i = 0; i < s->metric_count; i++) {
        const struct snap_metric *m = &s->metrics[i];
        prom_plugin_family(m->plugin[0] != '\0' ? m->plugin : m->instance, m->name, m->kind,
                           items[i].family, sizeof(items[i].family));
        items[i].m = m;
        items[i].pos = i;
    }
    qsort(items, s->metric_count, sizeof(*items), fam_cmp);
    for (i = 0; i < s->metric_count; i++) {
        const struct snap_metric *m = items[i].m;
        const char *type = m->kind == MIDGE_METRIC_COUNTER   ? "counter"
                           : m->kind == MIDGE_METRIC_GAUGE   ? "gauge"
                                                             : "histogram";
        if (i == 0 || strcmp(items[i - 1].family, items[i].family) != 0) {
            help_type(b, items[i].family, m->help[0] != '\0' ? m->help : m->name, type);
        } else if (items[i - 1].m->kind != m->kind) {
            continue; /* two plugins of one name disagree on the kind: keep the first */
        }
        if (m->kind == MIDGE_METRIC_HISTOGRAM) {
            histogram(b, items[i].family, m->instance, m->label_name, m->label_value, m->buckets,
                      m->le, m->bucket_count, m->count, m->sum);
        } else {
            series_open(b, items[i].family, "", m->instance, m->label_name, m->label_value);
            sbuf_printf(b, "} %lld\n", (long long)m->value);
        }
    }
    free(items);
}

void
prom_render(const struct snapshot *s, struct sbuf *out)
{
    render_broker(s, out);
    render_plugins(s, out);
    render_plugin_metrics(s, out);
}
