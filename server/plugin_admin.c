/*
 * Administration services for plugins (dashboards, admin APIs): broker-wide
 * counters, every session listed, retained messages by filter, reload.
 */
#include "plugin.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "conn.h"
#include "msg.h"
#include "retain.h"
#include "session.h"
#include "subs.h"
#include "topic.h"
#include "worker.h"

int
plugin_stats(midge_plugin *self, struct midge_broker_stats *out)
{
    struct midge_broker_stats st;
    unsigned n = workers_ready_count();
    unsigned i;
    unsigned q;
    int64_t connected = 0;
    int64_t sessions = 0;

    (void)self;
    if (out == NULL || out->size < sizeof(uint32_t)) {
        return -MIDGE_EINVAL;
    }
    memset(&st, 0, sizeof(st));
    for (i = 0; i < n; i++) {
        struct stats *s = &broker.workers[i]->stats;
        st.packets_received += STAT_GET(s, msgs_received);
        st.packets_sent += STAT_GET(s, msgs_sent);
        for (q = 0; q < 3; q++) {
            st.publish_received_qos[q] += STAT_GET(s, pub_received[q]);
            st.publish_sent_qos[q] += STAT_GET(s, pub_sent[q]);
            st.payload_bytes_received_qos[q] += STAT_GET(s, pub_bytes_received[q]);
            st.payload_bytes_sent_qos[q] += STAT_GET(s, pub_bytes_sent[q]);
        }
        st.dropped_queue_limit += STAT_GET(s, pub_dropped[DROP_QUEUE_LIMIT]);
        st.dropped_slow_client += STAT_GET(s, pub_dropped[DROP_SLOW_CLIENT]);
        st.dropped_too_large += STAT_GET(s, pub_dropped[DROP_TOO_LARGE]);
        st.dropped_refused += STAT_GET(s, pub_dropped[DROP_REFUSED]);
        st.dropped_plugin += STAT_GET(s, pub_dropped[DROP_PLUGIN]);
        st.dropped_overload += STAT_GET(s, pub_dropped[DROP_OVERLOAD]);
        st.dropped_no_memory += STAT_GET(s, pub_dropped[DROP_NO_MEMORY]);
        st.bytes_received += STAT_GET(s, bytes_received);
        st.bytes_sent += STAT_GET(s, bytes_sent);
        st.connects += STAT_GET(s, connects_total);
        connected += STAT_GET(s, clients_connected);
        sessions += STAT_GET(s, sessions);
    }
    for (q = 0; q < 3; q++) {
        st.publish_received += st.publish_received_qos[q];
        st.publish_sent += st.publish_sent_qos[q];
    }
    st.publish_dropped = st.dropped_queue_limit + st.dropped_slow_client + st.dropped_too_large +
                         st.dropped_refused + st.dropped_plugin + st.dropped_overload +
                         st.dropped_no_memory;
    st.clients_connected = connected > 0 ? (uint64_t)connected : 0;
    st.sessions = sessions > 0 ? (uint64_t)sessions : 0;
    st.subscriptions = subs_count();
    st.retained = retain_count();
    {
        long long mem = msg_mem_in_use();
        st.message_bytes = mem > 0 ? (uint64_t)mem : 0;
    }
    st.uptime = ev_time() - broker.start_wall;
    st.size = out->size < sizeof(st) ? out->size : (uint32_t)sizeof(st);
    memcpy(out, &st, st.size);
    return 0;
}

/* One client_list request, shared by the workers. Freed by the last one. */
struct list_req {
    void (*cb)(void *arg, const struct midge_client_info *info);
    void (*done)(void *arg);
    void *arg;
    unsigned target;      /* where done runs */
    atomic_uint remaining; /* workers still to go */
};

static void
list_run(void *arg)
{
    struct list_req *r = arg;
    struct worker *w = worker_current();

    if (w != NULL) {
        struct session *s;
        for (s = sessions_all(w); s != NULL; s = s->all_next) {
            struct midge_client_info info;
            plugin_session_info(s, &info);
            r->cb(r->arg, &info);
        }
    }
    if (atomic_fetch_sub(&r->remaining, 1) == 1) {
        if (r->done != NULL) {
            call_post(r->target, r->done, r->arg);
        }
        free(r);
    }
}

int
plugin_client_list(midge_plugin *self, void (*cb)(void *, const struct midge_client_info *),
                   void (*done)(void *), void *arg)
{
    unsigned n = workers_ready_count();
    struct list_req *r;
    unsigned i;

    (void)self;
    if (cb == NULL) {
        return -MIDGE_EINVAL;
    }
    if (n == 0) {
        if (done != NULL) {
            call_post(call_target_current(), done, arg);
        }
        return 0;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -MIDGE_ENOMEM;
    }
    r->cb = cb;
    r->done = done;
    r->arg = arg;
    r->target = call_target_current();
    atomic_init(&r->remaining, n);
    for (i = 0; i < n; i++) {
        call_post(i, list_run, r);
    }
    return 0;
}

int
plugin_retained_list(midge_plugin *self, const char *filter,
                     int (*cb)(void *arg, const midge_message *msg), void *arg)
{
    size_t len = filter != NULL ? strlen(filter) : 0;
    struct msg **msgs = NULL;
    size_t n = 0;
    size_t i;
    int calls = 0;
    int stop = 0;

    (void)self;
    if (cb == NULL || len == 0 || !topic_filter_valid(filter, len)) {
        return -MIDGE_EINVAL;
    }
    if (retain_match(filter, len, ev_time(), &msgs, &n) != 0) {
        return -MIDGE_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        if (!stop) {
            calls++;
            stop = cb(arg, (const midge_message *)msgs[i]) != 0;
        }
        msg_unref(msgs[i]);
    }
    free(msgs);
    return calls;
}

int
plugin_reload_request(midge_plugin *self)
{
    (void)self;
    return kill(getpid(), SIGHUP) == 0 ? 0 : -MIDGE_ESTATE;
}

/* Names of the measured hooks, by enum plugin_hook_id (as $SYS names them). */
static const char *const hook_names[PH_COUNT] = {"auth", "acl", "enhanced_auth", "message_in"};

/* Bucket b of the hook latency histogram holds [2^b, 2^(b+1)) ns. Written once, read-only. */
static double latency_le[PLUGIN_LAT_BUCKETS];
static pthread_once_t latency_le_once = PTHREAD_ONCE_INIT;

static void
latency_le_init(void)
{
    unsigned b;

    for (b = 0; b < PLUGIN_LAT_BUCKETS; b++) {
        latency_le[b] = (double)(UINT64_C(2) << b) / 1e9;
    }
}

int
plugin_plugin_list(midge_plugin *self, int (*cb)(void *arg, const struct midge_plugin_info *info),
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
    pthread_once(&latency_le_once, latency_le_init);
    for (p = plugins; p != NULL; p = p->next) {
        struct midge_hook_stats hs[PH_COUNT];
        uint64_t lat[PH_COUNT][PLUGIN_LAT_BUCKETS];
        struct midge_plugin_info info;
        uint32_t nh = 0;
        int h;

        for (h = 0; h < PH_COUNT; h++) {
            struct hook_metrics m;
            unsigned b;
            plugin_metrics_sum(p, h, &m);
            if (STAT_GET(&m, calls) == 0) {
                continue; /* as $SYS: only hooks that ran */
            }
            memset(&hs[nh], 0, sizeof(hs[nh]));
            hs[nh].size = sizeof(hs[nh]);
            hs[nh].hook = hook_names[h];
            hs[nh].calls = STAT_GET(&m, calls);
            hs[nh].allow = STAT_GET(&m, allow);
            hs[nh].deny = STAT_GET(&m, deny);
            hs[nh].defer = STAT_GET(&m, defer);
            hs[nh].pending = STAT_GET(&m, pending);
            hs[nh].timeouts = STAT_GET(&m, timeouts);
            for (b = 0; b < PLUGIN_LAT_BUCKETS; b++) {
                lat[nh][b] = STAT_GET(&m, lat[b]);
            }
            hs[nh].latency_buckets = PLUGIN_LAT_BUCKETS;
            hs[nh].latency_le = latency_le;
            hs[nh].latency_count = lat[nh];
            nh++;
        }
        memset(&info, 0, sizeof(info));
        info.size = sizeof(info);
        info.instance = p->name;
        info.name = p->desc->name;
        info.version = p->desc->version;
        info.description = p->desc->description;
        info.path = p->path;
        info.hooks = hs;
        info.hook_count = nh;
        calls++;
        if (cb(arg, &info) != 0) {
            break;
        }
    }
    return calls;
}
