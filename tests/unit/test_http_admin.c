/*
 * http-admin's metrics text (plugins/http-admin/prom.c) and the snapshot it
 * renders (snapshot.c), the latter taken from the fake broker through
 * api->stats, api->plugin_list and api->metric_list, as the plugin's HTTP
 * thread takes it from the real broker.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <midge/plugin.h>
#include <midge/plugin_test.h>

#include "../../plugins/http-admin/prom.h"
#include "../../plugins/http-admin/snapshot.h"

/* ---- A probe plugin defining one metric of each kind ------------------------- */

struct probe {
    midge_plugin *self;
    const struct midge_api *api;
    midge_metric *reqs;
    midge_metric *depth;
    midge_metric *lat;
};

static int
probe_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct probe *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return -MIDGE_ENOMEM;
    }
    p->self = self;
    p->api = api;
    p->reqs = api->metric_new(self, "reqs", MIDGE_METRIC_COUNTER, "requests \\ served\nok");
    p->depth = api->metric_new(self, "depth", MIDGE_METRIC_GAUGE, NULL);
    p->lat = api->metric_new(self, "lat", MIDGE_METRIC_HISTOGRAM, "latency");
    *state = p;
    return 0;
}

static void
probe_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    free(state);
}

static const struct midge_plugin_descriptor probe_desc = {
    sizeof(struct midge_plugin_descriptor), MIDGE_ABI_MAJOR, MIDGE_ABI_MINOR, "probe", "2.5",
    "test: defines metrics", NULL};

/* ---- Helpers -------------------------------------------------------------- */

static char *
render(const struct snapshot *s)
{
    struct sbuf b;
    size_t len = 0;
    char *text;

    sbuf_init(&b);
    prom_render(s, &b);
    text = sbuf_take(&b, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* The line index of `line` in text (exact line), or -1. */
static int
line_at(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;
    int i = 0;

    while (*p != '\0') {
        const char *e = strchr(p, '\n');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, line, n) == 0) {
            return i;
        }
        if (e == NULL) {
            break;
        }
        p = e + 1;
        i++;
    }
    return -1;
}

#define assert_line(text, line)                                                                \
    do {                                                                                       \
        if (line_at((text), (line)) < 0) {                                                     \
            fail_msg("missing line: %s\n--- text ---\n%s", (line), (text));                    \
        }                                                                                      \
    } while (0)

/* ---- Tests ---------------------------------------------------------------- */

static void
test_family_names(void **state)
{
    char out[128];

    (void)state;
    prom_plugin_family("auth-passwd", "logins_ok", MIDGE_METRIC_COUNTER, out, sizeof(out));
    assert_string_equal(out, "midge_plugin_auth_passwd_logins_ok_total");
    prom_plugin_family("bridge", "connected", MIDGE_METRIC_GAUGE, out, sizeof(out));
    assert_string_equal(out, "midge_plugin_bridge_connected");
    prom_plugin_family("x", "bytes_total", MIDGE_METRIC_COUNTER, out, sizeof(out));
    assert_string_equal(out, "midge_plugin_x_bytes_total");
    prom_plugin_family("we.ird plugin", "m", MIDGE_METRIC_HISTOGRAM, out, sizeof(out));
    assert_string_equal(out, "midge_plugin_we_ird_plugin_m");
    prom_plugin_family("long", "name", MIDGE_METRIC_COUNTER, out, 10); /* truncated, terminated */
    assert_string_equal(out, "midge_plu");
}

/* A hand-built snapshot: broker counters, hook stats with escaping, a histogram. */
static void
test_render_hand_built(void **state)
{
    struct snapshot s;
    struct snap_plugin pl;
    struct snap_hook hk;
    double le[4] = {1e-6, 2e-6, 4e-6, 8e-6};
    uint64_t cnt[4] = {2, 0, 3, 0};
    char *text;

    (void)state;
    memset(&s, 0, sizeof(s));
    s.stats.size = sizeof(s.stats);
    s.have_stats = 1;
    s.stats.publish_received = 42;
    s.stats.clients_connected = 3;
    s.stats.uptime = 1.5;
    s.have_sessions = 1;
    s.queued = 7;
    memset(&pl, 0, sizeof(pl));
    pl.instance = (char *)"a\"b\\c";
    pl.name = (char *)"acl";
    pl.version = (char *)"1";
    pl.description = (char *)"";
    memset(&hk, 0, sizeof(hk));
    hk.hook = (char *)"acl";
    hk.calls = 5;
    hk.allow = 4;
    hk.deny = 1;
    hk.buckets = 4;
    hk.le = le;
    hk.count = cnt;
    pl.hooks = &hk;
    pl.hook_count = 1;
    s.plugins = &pl;
    s.plugin_count = 1;
    s.have_plugins = 1;
    text = render(&s);
    assert_line(text, "# TYPE midge_publish_received_total counter");
    assert_line(text, "midge_publish_received_total 42");
    assert_line(text, "midge_clients_connected 3");
    assert_line(text, "midge_uptime_seconds 1.5");
    assert_line(text, "midge_queued_messages 7");
    assert_line(text, "midge_plugin_info{instance=\"a\\\"b\\\\c\",plugin=\"acl\",version=\"1\"} 1");
    assert_line(text, "midge_plugin_hook_calls_total{instance=\"a\\\"b\\\\c\",hook=\"acl\"} 5");
    assert_line(text, "midge_plugin_hook_verdicts_total{instance=\"a\\\"b\\\\c\",hook=\"acl\","
                      "verdict=\"deny\"} 1");
    /* Cumulative, up to the last non-empty bucket, then +Inf and _count. */
    assert_line(text, "midge_plugin_hook_latency_seconds_bucket{instance=\"a\\\"b\\\\c\","
                      "hook=\"acl\",le=\"9.9999999999999995e-07\"} 2");
    assert_line(text, "midge_plugin_hook_latency_seconds_bucket{instance=\"a\\\"b\\\\c\","
                      "hook=\"acl\",le=\"3.9999999999999998e-06\"} 5");
    assert_int_equal(line_at(text, "midge_plugin_hook_latency_seconds_bucket{instance="
                                   "\"a\\\"b\\\\c\",hook=\"acl\",le=\"7.9999999999999996e-06\"} 5"),
                     -1);
    assert_line(text, "midge_plugin_hook_latency_seconds_bucket{instance=\"a\\\"b\\\\c\","
                      "hook=\"acl\",le=\"+Inf\"} 5");
    assert_line(text, "midge_plugin_hook_latency_seconds_count{instance=\"a\\\"b\\\\c\","
                      "hook=\"acl\"} 5");
    /* The broker keeps no latency sum: no _sum line rather than a made-up one. */
    assert_null(strstr(text, "latency_seconds_sum"));
    assert_true(text[strlen(text) - 1] == '\n');
    free(text);
}

/* Without stats nor plugins (an older broker) the text is empty, not broken. */
static void
test_render_nothing(void **state)
{
    struct snapshot s;
    char *text;
    struct sbuf b;
    size_t len = 0;

    (void)state;
    memset(&s, 0, sizeof(s));
    sbuf_init(&b);
    prom_render(&s, &b);
    text = sbuf_take(&b, &len);
    assert_int_equal(len, 0);
    free(text);
}

/* The snapshot through the fake broker's plugin_list and metric_list, then rendered. */
static void
test_snapshot_from_fake_broker(void **state)
{
    midge_test_broker *fb = midge_test_broker_new();
    midge_plugin *a;
    midge_plugin *b;
    struct probe *pa;
    struct probe *pb;
    struct midge_broker_stats st;
    struct snapshot s;
    char *text;
    int first;
    int second;

    (void)state;
    assert_non_null(fb);
    a = midge_test_plugin_new(fb, &probe_desc, probe_init, probe_cleanup);
    b = midge_test_plugin_new(fb, &probe_desc, probe_init, probe_cleanup);
    assert_int_equal(midge_test_set_instance(b, "probe-b"), 0);
    assert_int_equal(midge_test_load(a), 0);
    assert_int_equal(midge_test_load(b), 0);
    memset(&st, 0, sizeof(st));
    st.size = sizeof(st);
    st.publish_received = 9;
    st.retained = 2;
    midge_test_set_stats(fb, &st);
    pa = midge_test_state(a);
    pb = midge_test_state(b);
    pa->api->metric_add(pa->reqs, 3);
    pa->api->metric_set(pa->depth, -4);
    pa->api->metric_observe(pa->lat, 0.5);
    pa->api->metric_observe(pa->lat, 0.5);
    pa->api->metric_observe(pa->lat, 3.0);
    pb->api->metric_add(pb->reqs, 1);

    assert_int_equal(snapshot_take(&s, pa->self, pa->api), 0);
    assert_true(s.have_stats);
    assert_true(s.have_plugins);
    assert_int_equal(s.plugin_count, 2);
    assert_string_equal(s.plugins[1].instance, "probe-b");
    assert_string_equal(s.plugins[1].version, "2.5");
    assert_int_equal(s.metric_count, 6);
    assert_string_equal(snapshot_plugin_name(&s, "probe-b"), "probe");
    text = render(&s);
    snapshot_free(&s);

    assert_line(text, "midge_publish_received_total 9");
    assert_line(text, "midge_retained_messages 2");
    assert_line(text, "midge_plugin_info{instance=\"probe-b\",plugin=\"probe\",version=\"2.5\"} 1");
    /* HELP escapes backslash and newline. */
    assert_line(text, "# HELP midge_plugin_probe_reqs_total requests \\\\ served\\nok");
    /* One family block for both instances, in chain order. */
    first = line_at(text, "midge_plugin_probe_reqs_total{instance=\"probe\"} 3");
    second = line_at(text, "midge_plugin_probe_reqs_total{instance=\"probe-b\"} 1");
    assert_true(first > 0 && second == first + 1);
    assert_line(text, "midge_plugin_probe_depth{instance=\"probe\"} -4");
    assert_line(text, "# HELP midge_plugin_probe_depth depth"); /* no help: the name */
    assert_line(text, "# TYPE midge_plugin_probe_lat histogram");
    /* 0.5 lies in [0.5, 1): le 1; 3.0 in [2, 4): le 4. */
    assert_line(text, "midge_plugin_probe_lat_bucket{instance=\"probe\",le=\"1\"} 2");
    assert_line(text, "midge_plugin_probe_lat_bucket{instance=\"probe\",le=\"2\"} 2");
    assert_line(text, "midge_plugin_probe_lat_bucket{instance=\"probe\",le=\"4\"} 3");
    assert_line(text, "midge_plugin_probe_lat_bucket{instance=\"probe\",le=\"+Inf\"} 3");
    assert_line(text, "midge_plugin_probe_lat_sum{instance=\"probe\"} 4");
    assert_line(text, "midge_plugin_probe_lat_count{instance=\"probe\"} 3");
    assert_line(text, "midge_plugin_probe_lat_count{instance=\"probe-b\"} 0");
    free(text);
    assert_int_equal(midge_test_unload_all(fb), 0);
    midge_test_broker_free(fb);
}

/* ---- Labeled series (ABI 1.2) ----------------------------------------------- */

struct lprobe {
    midge_plugin *self;
    const struct midge_api *api;
    midge_metric *up_a;
    midge_metric *up_b;
    midge_metric *plain;
    midge_metric *lat_a;
};

static int
lprobe_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct lprobe *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return -MIDGE_ENOMEM;
    }
    p->self = self;
    p->api = api;
    p->up_a = api->metric_new_labeled(self, "up", MIDGE_METRIC_GAUGE, "link up", "link", "a\"b");
    p->plain = api->metric_new(self, "plain", MIDGE_METRIC_COUNTER, NULL);
    p->lat_a = api->metric_new_labeled(self, "lat", MIDGE_METRIC_HISTOGRAM, "latency", "link", "a");
    p->up_b = api->metric_new_labeled(self, "up", MIDGE_METRIC_GAUGE, "link up", "link", "b");
    *state = p;
    return 0;
}

static const struct midge_plugin_descriptor lprobe_desc = {
    sizeof(struct midge_plugin_descriptor), MIDGE_ABI_MAJOR, MIDGE_ABI_MINOR, "lprobe", "1",
    "test: labeled metrics", NULL};

/*
 * Labeled series through the fake's metric_list: one family with both labels
 * (the value escaped), its series together although defined apart, a labeled
 * histogram; a freed series is gone.
 */
static void
test_labeled_series(void **state)
{
    midge_test_broker *fb = midge_test_broker_new();
    midge_plugin *a;
    struct lprobe *p;
    struct snapshot s;
    struct midge_test_metric tm;
    char *text;
    int first;

    (void)state;
    a = midge_test_plugin_new(fb, &lprobe_desc, lprobe_init, probe_cleanup);
    assert_int_equal(midge_test_load(a), 0);
    p = midge_test_state(a);
    assert_non_null(p->up_a);
    assert_non_null(p->up_b);
    assert_non_null(p->lat_a);
    /* Conflicts: another kind, the value again, a plain name, the exporter's label. */
    assert_null(p->api->metric_new_labeled(p->self, "up", MIDGE_METRIC_COUNTER, "link up", "link",
                                           "c"));
    assert_null(p->api->metric_new_labeled(p->self, "up", MIDGE_METRIC_GAUGE, "link up", "link",
                                           "b"));
    assert_null(p->api->metric_new_labeled(p->self, "plain", MIDGE_METRIC_COUNTER, NULL, "link",
                                           "a"));
    assert_null(p->api->metric_new_labeled(p->self, "x", MIDGE_METRIC_GAUGE, NULL, "instance",
                                           "a"));
    assert_int_equal(midge_test_bug_count(fb), 3); /* the three conflicts, as the broker logs them */
    p->api->metric_set(p->up_a, 1);
    p->api->metric_observe(p->lat_a, 0.5);
    assert_int_equal(midge_test_metric_labeled(a, "up", "a\"b", &tm), 0);
    assert_int_equal(tm.value, 1);

    assert_int_equal(snapshot_take(&s, p->self, p->api), 0);
    assert_int_equal(s.metric_count, 4);
    assert_string_equal(s.metrics[0].label_name, "link");
    assert_null(s.metrics[2].label_name); /* plain: listed after both `up` series */
    text = render(&s);
    snapshot_free(&s);
    assert_line(text, "# TYPE midge_plugin_lprobe_up gauge");
    first = line_at(text, "midge_plugin_lprobe_up{instance=\"lprobe\",link=\"a\\\"b\"} 1");
    assert_true(first > 0);
    assert_int_equal(line_at(text, "midge_plugin_lprobe_up{instance=\"lprobe\",link=\"b\"} 0"),
                     first + 1);
    assert_line(text, "midge_plugin_lprobe_lat_bucket{instance=\"lprobe\",link=\"a\",le=\"1\"} 1");
    assert_line(text, "midge_plugin_lprobe_lat_count{instance=\"lprobe\",link=\"a\"} 1");
    assert_line(text, "midge_plugin_lprobe_plain_total{instance=\"lprobe\"} 0");
    free(text);

    p->api->metric_free(p->up_b);
    assert_int_equal(midge_test_metric_labeled(a, "up", "b", &tm), -MIDGE_ENOENT);
    assert_int_equal(snapshot_take(&s, p->self, p->api), 0);
    text = render(&s);
    snapshot_free(&s);
    assert_int_equal(line_at(text, "midge_plugin_lprobe_up{instance=\"lprobe\",link=\"b\"} 0"),
                     -1);
    assert_true(line_at(text, "midge_plugin_lprobe_up{instance=\"lprobe\",link=\"a\\\"b\"} 1") > 0);
    free(text);
    assert_int_equal(midge_test_unload_all(fb), 3);
    midge_test_broker_free(fb);
}

/* A broker without the 1.1 entries: the snapshot has stats only, /metrics still works. */
static void
test_snapshot_older_broker(void **state)
{
    midge_test_broker *fb = midge_test_broker_new();
    midge_plugin *a;
    struct probe *pa;
    struct snapshot s;

    (void)state;
    assert_int_equal(midge_test_set_api_size(fb, offsetof(struct midge_api, plugin_list)), 0);
    a = midge_test_plugin_new(fb, &probe_desc, probe_init, probe_cleanup);
    assert_int_equal(midge_test_load(a), 0);
    pa = midge_test_state(a);
    assert_int_equal(snapshot_take(&s, pa->self, pa->api), 0);
    assert_true(s.have_stats);
    assert_false(s.have_plugins);
    assert_int_equal(s.metric_count, 0);
    snapshot_free(&s);
    assert_int_equal(midge_test_unload_all(fb), 0);
    midge_test_broker_free(fb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_names),
        cmocka_unit_test(test_render_hand_built),
        cmocka_unit_test(test_render_nothing),
        cmocka_unit_test(test_snapshot_from_fake_broker),
        cmocka_unit_test(test_snapshot_older_broker),
        cmocka_unit_test(test_labeled_series),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
