/* $SYS publishing: sums the workers' counters and publishes mosquitto's topic names. */
#include "sys.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "config.h"
#include "midge_build.h"
#include "msg.h"
#include "plugin.h"
#include "retain.h"
#include "stats.h"
#include "subs.h"
#include "worker.h"

static ev_timer timer;
static double last_time;

/* One exponentially damped load average (mosquitto's $SYS/broker/load/...). */
struct load {
    const char *name; /* e.g. "messages/received" */
    uint64_t last;
    double avg[3];    /* 1, 5, 15 minutes, per minute */
};

static struct load loads[] = {
    {"messages/received", 0, {0}}, {"messages/sent", 0, {0}},
    {"publish/received", 0, {0}},  {"publish/sent", 0, {0}},
    {"publish/dropped", 0, {0}},   {"bytes/received", 0, {0}},
    {"bytes/sent", 0, {0}},        {"connections", 0, {0}},
};

static void
publish(const char *topic, const char *value)
{
    struct msg *m = msg_new(topic, strlen(topic), (const uint8_t *)value, (uint32_t)strlen(value),
                            0, 1, NULL, ev_time());
    if (m != NULL) {
        broker_publish(m, 0);
        msg_unref(m);
    }
}

static void
publish_u(const char *topic, unsigned long long v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%llu", v);
    publish(topic, buf);
}

static void
update_load(struct load *l, uint64_t now_value, double dt)
{
    static const double minutes[3] = {1, 5, 15};
    double rate = dt > 0 ? (double)(now_value - l->last) * 60.0 / dt : 0;
    char topic[128];
    char val[32];
    int i;

    l->last = now_value;
    for (i = 0; i < 3; i++) {
        double k = exp(-dt / (60.0 * minutes[i]));
        l->avg[i] = l->avg[i] * k + rate * (1 - k);
        snprintf(topic, sizeof(topic), "$SYS/broker/load/%s/%dmin", l->name, (int)minutes[i]);
        snprintf(val, sizeof(val), "%.2f", l->avg[i]);
        publish(topic, val);
    }
}

/* Latency percentile (in µs, bucket upper bound) from a log2 histogram. */
static double
percentile(const struct hook_metrics *m, double q)
{
    uint64_t total = 0;
    uint64_t seen = 0;
    unsigned b;

    for (b = 0; b < PLUGIN_LAT_BUCKETS; b++) {
        total += STAT_GET(m, lat[b]);
    }
    if (total == 0) {
        return 0;
    }
    for (b = 0; b < PLUGIN_LAT_BUCKETS; b++) {
        seen += STAT_GET(m, lat[b]);
        if ((double)seen >= q * (double)total) {
            break;
        }
    }
    return (double)(UINT64_C(2) << b) / 1000.0;
}

/* $SYS/broker/plugin/NAME/HOOK/...: calls, verdicts, timeouts, latency p50/p99. */
static void
publish_plugins(void)
{
    static const char *const hooks[PH_COUNT] = {"auth", "acl", "enhanced_auth", "message_in"};
    const struct midge_plugin *p;
    char topic[256];
    char val[32];
    int h;

    for (p = plugins; p != NULL; p = p->next) {
        for (h = 0; h < PH_COUNT; h++) {
            struct hook_metrics m;
            plugin_metrics_sum(p, h, &m);
            if (STAT_GET(&m, calls) == 0) {
                continue;
            }
#define PUB(field)                                                                              \
    snprintf(topic, sizeof(topic), "$SYS/broker/plugin/%s/%s/" #field, p->name, hooks[h]);     \
    publish_u(topic, (unsigned long long)STAT_GET(&m, field))
            PUB(calls);
            PUB(allow);
            PUB(deny);
            PUB(defer);
            PUB(pending);
            PUB(timeouts);
#undef PUB
            snprintf(topic, sizeof(topic), "$SYS/broker/plugin/%s/%s/latency_p50_us", p->name,
                     hooks[h]);
            snprintf(val, sizeof(val), "%.1f", percentile(&m, 0.5));
            publish(topic, val);
            snprintf(topic, sizeof(topic), "$SYS/broker/plugin/%s/%s/latency_p99_us", p->name,
                     hooks[h]);
            snprintf(val, sizeof(val), "%.1f", percentile(&m, 0.99));
            publish(topic, val);
        }
        plugin_user_metrics_report(p, publish);
    }
}

static void
sys_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    unsigned long long v[10];
    unsigned i;
    unsigned q;
    double now = ev_now(loop);
    char buf[64];
    int64_t connected = 0;
    int64_t sessions = 0;

    (void)t;
    (void)revents;
    memset(v, 0, sizeof(v));
    for (i = 0; i < broker.nworkers; i++) {
        struct stats *s = &broker.workers[i]->stats;
        v[0] += STAT_GET(s, msgs_received);
        v[1] += STAT_GET(s, msgs_sent);
        for (q = 0; q < 3; q++) {
            v[2] += STAT_GET(s, pub_received[q]);
            v[3] += STAT_GET(s, pub_sent[q]);
        }
        for (q = 0; q < DROP_REASONS; q++) {
            v[4] += STAT_GET(s, pub_dropped[q]);
        }
        v[5] += STAT_GET(s, bytes_received);
        v[6] += STAT_GET(s, bytes_sent);
        v[7] += STAT_GET(s, connects_total);
        connected += STAT_GET(s, clients_connected);
        sessions += STAT_GET(s, sessions);
    }
    if (connected > broker.clients_maximum) {
        broker.clients_maximum = connected;
    }
    publish("$SYS/broker/version", "midge " PACKAGE_VERSION);
    snprintf(buf, sizeof(buf), "%lld seconds", (long long)(time(NULL) - (time_t)broker.start_wall));
    publish("$SYS/broker/uptime", buf);
    publish_u("$SYS/broker/clients/connected", (unsigned long long)connected);
    publish_u("$SYS/broker/clients/active", (unsigned long long)connected);
    publish_u("$SYS/broker/clients/disconnected",
              (unsigned long long)(sessions > connected ? sessions - connected : 0));
    publish_u("$SYS/broker/clients/inactive",
              (unsigned long long)(sessions > connected ? sessions - connected : 0));
    publish_u("$SYS/broker/clients/total", (unsigned long long)sessions);
    publish_u("$SYS/broker/clients/maximum", (unsigned long long)broker.clients_maximum);
    publish_u("$SYS/broker/messages/received", v[0]);
    publish_u("$SYS/broker/messages/sent", v[1]);
    publish_u("$SYS/broker/publish/messages/received", v[2]);
    publish_u("$SYS/broker/publish/messages/sent", v[3]);
    publish_u("$SYS/broker/publish/messages/dropped", v[4]);
    publish_u("$SYS/broker/bytes/received", v[5]);
    publish_u("$SYS/broker/bytes/sent", v[6]);
    publish_u("$SYS/broker/subscriptions/count", subs_count());
    publish_u("$SYS/broker/retained messages/count", retain_count());
    for (i = 0; i < sizeof(loads) / sizeof(loads[0]); i++) {
        update_load(&loads[i], v[i], last_time > 0 ? now - last_time : 0);
    }
    last_time = now;
    publish_plugins();
}

/* Starts or re-times the $SYS timer from the current sys_interval. Main thread. */
void
sys_start(struct ev_loop *loop)
{
    unsigned iv = broker_cfg()->sys_interval;

    ev_timer_stop(loop, &timer);
    if (iv == 0) {
        return;
    }
    ev_timer_init(&timer, sys_cb, 0.0, (double)iv);
    ev_timer_start(loop, &timer);
}

/* Stops $SYS publishing. Main thread. */
void
sys_stop(struct ev_loop *loop)
{
    ev_timer_stop(loop, &timer);
}
