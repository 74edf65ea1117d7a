/*
 * Per-link metrics (metrics.h). The counters are counted where things
 * happen (outgoing.c, inbound.c, link.c); the gauges are sampled once a
 * second on the home worker, and at every state change, from what the link
 * holds (struct bridge) plus what still waits in its internal session
 * (api->session_stats): a message counts in link_queue_* from the moment
 * it matches the bridge's `out` topics until the remote acknowledges it.
 *
 * The remote address in use is published retained (so that admin
 * interfaces can show it without reading the bridges file) on
 *     $SYS/broker/plugin/INSTANCE/link/NAME/address   "host:port"
 * and cleared when the bridge is removed.
 */
#include "bridge.h"
#include "metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define SAMPLE_SECONDS 1.0

/* Every series of a link: created by create(), freed by lm_free(). */
static const struct {
    size_t off; /* of its midge_metric * in struct link_metrics */
    const char *name;
    int kind;
    const char *help;
} SERIES[] = {
    {offsetof(struct link_metrics, connected), "link_connected", MIDGE_METRIC_GAUGE,
     "1 while the link is connected to its remote broker, else 0"},
    {offsetof(struct link_metrics, state), "link_state", MIDGE_METRIC_GAUGE,
     "0 disconnected, 1 connecting, 2 connected"},
    {offsetof(struct link_metrics, queue_messages), "link_queue_messages", MIDGE_METRIC_GAUGE,
     "messages for the remote not yet acknowledged by it (waiting and in flight)"},
    {offsetof(struct link_metrics, queue_bytes), "link_queue_bytes", MIDGE_METRIC_GAUGE,
     "topic and payload bytes of link_queue_messages"},
    {offsetof(struct link_metrics, inflight), "link_inflight", MIDGE_METRIC_GAUGE,
     "messages sent to the remote, acknowledgement awaited"},
    {offsetof(struct link_metrics, sent), "link_messages_sent", MIDGE_METRIC_COUNTER,
     "messages sent to the remote broker"},
    {offsetof(struct link_metrics, received), "link_messages_received", MIDGE_METRIC_COUNTER,
     "messages received from the remote broker"},
    {offsetof(struct link_metrics, dropped), "link_messages_dropped", MIDGE_METRIC_COUNTER,
     "messages dropped (queue full, too large, QoS 0 offline)"},
    {offsetof(struct link_metrics, reconnects), "link_reconnects", MIDGE_METRIC_COUNTER,
     "connection attempts after a failed or lost connection"},
};

static midge_metric **
series_slot(struct link_metrics *lm, size_t i)
{
    return (midge_metric **)((char *)lm + SERIES[i].off);
}

static int
have_labels(const struct midge_api *api)
{
    return MIDGE_API_HAS(api, metric_new_labeled) && MIDGE_API_HAS(api, metric_free);
}

/* Creates *m unless it exists. `quiet`: no warning (lm_create retries later). */
static void
series(struct bridge *b, midge_metric **m, const char *name, int kind, const char *help,
       int quiet)
{
    if (*m != NULL) {
        return;
    }
    *m = bridge_api(b)->metric_new_labeled(bridge_self(b), name, kind, help, "link",
                                           b->conf->name);
    if (*m == NULL && !quiet) {
        BLOG(b, MIDGE_LOG_WARNING, "cannot create metric %s{link=\"%s\"}", name, b->conf->name);
    }
}

/*
 * Creates the series that do not exist yet. A bridge removed and added
 * again by two quick SIGHUPs may find its old series not freed yet (their
 * home worker frees them): lm_start tries again.
 */
static void
create(struct bridge *b, int quiet)
{
    size_t i;

    if (!have_labels(bridge_api(b))) {
        return;
    }
    for (i = 0; i < sizeof(SERIES) / sizeof(SERIES[0]); i++) {
        series(b, series_slot(&b->lm, i), SERIES[i].name, SERIES[i].kind, SERIES[i].help, quiet);
    }
}

void
lm_create(struct bridge *b)
{
    b->lm.addr_shown[0] = '\0';
    create(b, 1);
}

/* The retained topic of the link's address; '/', '+', '#' of the name as '_' (like $SYS metrics). */
static void
address_topic(const struct bridge *b, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "$SYS/broker/plugin/%s/link/",
                     b->ctx->api->instance_name(b->ctx->self));
    char *p;

    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return;
    }
    snprintf(buf + n, cap - (size_t)n, "%s/address", b->conf->name);
    for (p = buf + n; *p != '\0' && strcmp(p, "/address") != 0; p++) {
        if (*p == '/' || *p == '+' || *p == '#') {
            *p = '_';
        }
    }
}

static void
show_address(struct bridge *b)
{
    const struct bridge_addr *a;
    char topic[512];
    char val[300];
    int n;

    if (b->conf->naddrs == 0 || b->addr_idx >= b->conf->naddrs) {
        return;
    }
    a = &b->conf->addrs[b->addr_idx];
    n = snprintf(val, sizeof(val), strchr(a->host, ':') != NULL ? "[%s]:%u" : "%s:%u", a->host,
                 (unsigned)a->port);
    if (n <= 0 || (size_t)n >= sizeof(b->lm.addr_shown) || strcmp(val, b->lm.addr_shown) == 0) {
        return;
    }
    address_topic(b, topic, sizeof(topic));
    if (topic[0] != '\0' &&
        bridge_api(b)->publish(bridge_self(b), topic, val, (uint32_t)n, 0, 1) == 0) {
        memcpy(b->lm.addr_shown, val, (size_t)n + 1);
    }
}

static int
state_of(const struct bridge *b)
{
    switch (b->state) {
    case LINK_UP:
        return LM_CONNECTED;
    case LINK_RESOLVING:
    case LINK_CONNECTING:
    case LINK_TLS:
    case LINK_CONNACK:
    case LINK_SUBSCRIBING:
        return LM_CONNECTING;
    default:
        return LM_DISCONNECTED;
    }
}

void
lm_sample(struct bridge *b)
{
    const struct midge_api *api = bridge_api(b);
    struct link_metrics *lm = &b->lm;
    uint64_t queued = b->nheld;
    uint64_t bytes = b->held_bytes;
    int st = state_of(b);

    if (lm->connected == NULL) {
        return;
    }
    if (b->s != NULL && MIDGE_API_HAS(api, session_stats)) {
        struct midge_session_stats ss;
        memset(&ss, 0, sizeof(ss));
        ss.size = sizeof(ss);
        /* The session's inflight are the deliveries held here (nheld): only its queue adds. */
        if (api->session_stats(b->s, &ss) == 0) {
            queued += ss.queued;
            bytes += ss.queued_bytes;
        }
    }
    api->metric_set(lm->connected, st == LM_CONNECTED);
    api->metric_set(lm->state, st);
    api->metric_set(lm->queue_messages, (int64_t)queued);
    api->metric_set(lm->queue_bytes, (int64_t)bytes);
    api->metric_set(lm->inflight, b->inflight);
    show_address(b);
}

static void
sample_cb(void *arg, midge_timer *t)
{
    (void)t;
    lm_sample(arg);
}

void
lm_start(struct bridge *b)
{
    create(b, 0);
    if (b->lm.timer == NULL && b->lm.connected != NULL) {
        b->lm.timer = bridge_api(b)->timer_start(bridge_self(b), SAMPLE_SECONDS, SAMPLE_SECONDS,
                                                 sample_cb, b);
    }
    lm_sample(b);
}

void
lm_stop(struct bridge *b)
{
    if (b->lm.timer != NULL) {
        bridge_api(b)->timer_stop(bridge_self(b), b->lm.timer);
        b->lm.timer = NULL;
    }
}

void
lm_free(struct bridge *b, int removed)
{
    const struct midge_api *api = bridge_api(b);
    struct link_metrics *lm = &b->lm;
    size_t i;

    if (removed && lm->addr_shown[0] != '\0') {
        char topic[512];
        address_topic(b, topic, sizeof(topic));
        if (topic[0] != '\0') {
            api->publish(bridge_self(b), topic, NULL, 0, 0, 1); /* empty retained: cleared */
        }
    }
    lm->addr_shown[0] = '\0';
    if (!have_labels(api)) {
        return;
    }
    for (i = 0; i < sizeof(SERIES) / sizeof(SERIES[0]); i++) {
        api->metric_free(*series_slot(lm, i));
        *series_slot(lm, i) = NULL;
    }
}
