/*
 * cluster-redis: several midge nodes behind one load balancer act as one
 * broker through Redis (docs/cluster-redis.md).
 *
 *     plugin cluster-redis
 *     plugin_opt_redis 127.0.0.1:6379       (or /run/redis/redis.sock)
 *     plugin_opt_node_id node-a             (default: hostname-pid)
 *
 * Each node announces in Redis the topic filters its sessions subscribe to
 * (subscribed / unsubscribed / session_ended hooks). When a client's
 * PUBLISH has passed the ACL chains (publish_accepted hook), it is carried
 * to the nodes with a matching filter: QoS 0 over pub/sub, QoS 1/2 over a
 * stream per node, the publisher acknowledged only after the XADDs
 * succeeded. The receiving node publishes it with api->publish, which runs
 * no client hooks, so nothing that came from the cluster is forwarded again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "cluster.h"
#include "conntimes.h"
#include "routes.h"
#include "wire.h"

static const char *const cluster_options[] = {
    "redis", "node_id", "prefix", "buffer", "stream_maxlen", "node_timeout",
    "shared_subscriptions", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("cluster-redis", "1.0",
                             "nodes sharing routes and retained messages through Redis",
                             cluster_options);

/* ---- hooks ---- */

static struct job *
route_job(struct cluster *cl, int kind, const char *filter)
{
    struct job *j = calloc(1, sizeof(*j));
    struct timeval tv;

    if (j == NULL || (j->filter = strdup(filter)) == NULL) {
        free(j);
        cl->api->log(cl->self, MIDGE_LOG_ERROR, "out of memory: route %s not announced "
                     "(the next resync announces it)", filter);
        return NULL;
    }
    j->kind = kind;
    gettimeofday(&tv, NULL);
    j->when = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    return j;
}

static void
route_submit(struct cluster *cl, struct job *j)
{
    if (j != NULL && link_submit(cl->link, j, NULL) < 0) {
        job_free(j);
    }
}

void
cluster_route_added(struct cluster *cl, const char *client_id, const char *filter)
{
    if (routes_local_add(cl->routes, client_id, filter) == 1) {
        route_submit(cl, route_job(cl, JOB_ROUTE_ADD, filter));
    }
}

static void
on_subscribed(void *state, midge_client *client, const char *filter, int qos)
{
    struct cluster *cl = state;

    (void)qos;
    cluster_route_added(cl, cl->api->client_id(client), filter);
}

static void
on_unsubscribed(void *state, midge_client *client, const char *filter)
{
    struct cluster *cl = state;

    if (routes_local_remove(cl->routes, cl->api->client_id(client), filter) == 1) {
        route_submit(cl, route_job(cl, JOB_ROUTE_DEL, filter));
    }
}

static void
route_gone(void *arg, const char *filter)
{
    route_submit(arg, route_job(arg, JOB_ROUTE_DEL, filter));
}

static void
on_session_ended(void *state, const char *client_id)
{
    struct cluster *cl = state;

    routes_local_session_end(cl->routes, client_id, route_gone, cl);
    conntimes_remove(cl->conntimes, client_id);
}

/*
 * The job that carries a message to the nodes with a matching subscriber
 * (and, when retained, to the retained hash and every node's store:
 * forward.c). NULL with *none set when no node needs it; NULL without it
 * when out of memory.
 */
static struct job *
forward_job(struct cluster *cl, const char *topic, const void *payload, uint32_t len, int qos,
            int retain, const void *props, uint32_t props_len, uint32_t expiry, int *none)
{
    struct job *j;
    char id[192];
    size_t n;
    char **targets = routes_match(cl->routes, topic, 0, &n);

    *none = n == 0 && !retain;
    if (*none) {
        return NULL;
    }
    snprintf(id, sizeof(id), "%s/%s/%llu", cl->node_id, cl->boot,
             (unsigned long long)atomic_fetch_add(&cl->counter, 1) + 1);
    if ((j = calloc(1, sizeof(*j))) == NULL) {
        routes_list_free(targets, n);
        return NULL;
    }
    j->kind = JOB_FORWARD;
    j->qos = qos;
    j->targets = targets;
    j->ntargets = n;
    j->blob = wire_encode(id, topic, payload, len, qos, retain, props, props_len, expiry,
                          &j->blob_len);
    if (j->blob == NULL || (retain && (j->topic = strdup(topic)) == NULL)) {
        job_free(j);
        return NULL;
    }
    j->retain_clear = retain && len == 0;
    return j;
}

/*
 * The PUBLISH passed the ACL chains: carry it to the nodes that want it.
 * QoS 1/2 waits (PENDING) until Redis took it, so a publisher's PUBACK means
 * the message is in every target node's stream.
 */
static int
on_publish_accepted(void *state, midge_client *client, const struct midge_acl_request *req,
                    uint8_t *reason, midge_ticket *ticket)
{
    struct cluster *cl = state;
    /* ABI 1.2: the MQTT 5 properties and expiry travel with the message. */
    int v12 = MIDGE_HAS_FIELD(struct midge_acl_request, req, expiry);
    struct job *j;
    int none;
    int verdict;
    uint64_t seq = 0;

    j = forward_job(cl, req->topic, req->payload, req->payload_len, req->qos, req->retain,
                    v12 ? req->props : NULL, v12 ? req->props_len : 0, v12 ? req->expiry : 0,
                    &none);
    if (j == NULL) {
        if (none) {
            return MIDGE_DEFER;
        }
        goto fail;
    }
    /*
     * QoS 1/2: the acknowledgement waits for Redis. With api->ack_hold only
     * the ack waits and the client's next messages flow (one Redis round trip
     * covers many); else the whole client waits on a PENDING answer.
     */
    if (req->qos > 0 && cl->can_hold) {
        j->hold_wanted = 1;
    } else if (req->qos > 0 && ticket != NULL) {
        j->ticket = ticket;
    }
    /* Decided before the hand-over: the job (and the ticket) belong to the Redis thread after it. */
    verdict = j->ticket != NULL ? MIDGE_PENDING : MIDGE_DEFER;
    if (link_submit(cl->link, j, &seq) < 0) {
        goto fail;
    }
    if (seq != 0 && cl->api->ack_hold(cl->self, client, seq) != 0 &&
        atomic_exchange(&cl->hold_refused_logged, 1) == 0) {
        cl->api->log(cl->self, MIDGE_LOG_ERROR, "another plugin holds acknowledgements: QoS 1/2 "
                     "publishes are acknowledged before they reach redis");
    }
    return verdict;
fail:
    job_free(j);
    cl->api->metric_add(cl->m_dropped, 1);
    if (req->qos == 0) {
        return MIDGE_DEFER; /* QoS 0: delivered here, not across the cluster */
    }
    *reason = 0x97; /* quota exceeded: the client may send it again later */
    return MIDGE_DENY;
}

/*
 * A will published here (its client's connection ended, or its delay
 * passed): carried to the nodes with a matching subscriber like a client's
 * PUBLISH, without an acknowledgement to hold. Receivers publish it without
 * hooks: it is not forwarded again.
 */
static void
on_will_published(void *state, const char *client_id, const midge_message *will)
{
    struct cluster *cl = state;
    const struct midge_api *api = cl->api;
    const char *topic = api->message_topic(will);
    struct job *j;
    int none;
    uint32_t len = 0;
    uint32_t props_len = 0;
    const void *payload = api->message_payload(will, &len);
    const void *props = MIDGE_API_HAS(api, message_properties)
                            ? api->message_properties(will, &props_len)
                            : NULL;
    uint32_t expiry = MIDGE_API_HAS(api, message_expiry) ? api->message_expiry(will) : 0;

    j = forward_job(cl, topic, payload, len, api->message_qos(will), api->message_retain(will),
                    props, props_len, expiry, &none);
    if (none || (j != NULL && link_submit(cl->link, j, NULL) == 0)) {
        return;
    }
    job_free(j);
    api->metric_add(cl->m_dropped, 1);
    api->log(cl->self, MIDGE_LOG_WARNING, "client=%s: its will on %s is not carried to the "
             "other nodes (out of memory or queue full)", client_id, topic);
}

/*
 * A client connected here: a connection with its id on another node is
 * taken over, and that node's session ends there (handed over here when
 * the client asked to resume it: handover.h).
 */
static void
on_client_connected(void *state, midge_client *client)
{
    struct cluster *cl = state;
    struct job *j = route_job(cl, JOB_CLAIM, cl->api->client_id(client));

    if (j != NULL) {
        j->resume = !cl->api->client_clean_start(client);
        /* Before the claim leaves: a crossing claim from another node is compared with it. */
        conntimes_set(cl->conntimes, j->filter, j->when);
    }
    route_submit(cl, j);
}

static uint64_t
message_hash(const char *topic, const uint8_t *payload, uint32_t len)
{
    uint64_t h = 1469598103934665603ull;
    uint32_t i;

    while (*topic) {
        h = (h ^ (uint8_t)*topic++) * 1099511628211ull;
    }
    for (i = 0; i < len; i++) {
        h = (h ^ payload[i]) * 1099511628211ull;
    }
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

/*
 * Shared subscriptions across nodes: a message reaches every node with a
 * member of the group (routes), and each of those nodes would hand it to
 * one of its members. The delivery to a member through a $share filter is
 * let through only on the node that owns this message for the group (the
 * same answer on every node: a hash of topic and payload over the sorted
 * nodes with members), so the group gets it once cluster-wide.
 */
static int
on_acl(void *state, midge_client *client, const struct midge_acl_request *req, uint8_t *reason,
       midge_ticket *ticket)
{
    struct cluster *cl = state;
    char share[512];

    (void)ticket;
    if (req->action != MIDGE_ACL_RECEIVE || !routes_local_shared(cl->routes) ||
        !routes_client_shared(cl->routes, cl->api->client_id(client), req->topic, share,
                              sizeof(share))) {
        return MIDGE_DEFER;
    }
    if (routes_shared_owner(cl->routes, cl->node_id, share,
                            message_hash(req->topic, req->payload, req->payload_len))) {
        return MIDGE_DEFER;
    }
    *reason = 0;
    cl->api->metric_add(cl->m_shared_elsewhere, 1);
    return MIDGE_DENY;
}

static void
on_thread_start(void *state, unsigned worker)
{
    struct cluster *cl = state;

    /* Injected messages need running workers: the Redis thread starts with the first one. */
    if (worker == 0 && link_start(cl->link) != 0) {
        cl->api->log(cl->self, MIDGE_LOG_ERROR, "cannot start the redis thread: the cluster "
                     "is not joined");
    }
}

static void
on_thread_stop(void *state, unsigned worker)
{
    struct cluster *cl = state;

    if (worker == 0) {
        /*
         * Stopped, not freed: the other workers may still end sessions and
         * submit (refused now); cleanup frees it once every worker stopped.
         */
        link_stop(cl->link);
    }
}

static const struct midge_hooks cluster_hooks_shared = {
    .size = sizeof(struct midge_hooks),
    .acl = on_acl,
    .subscribed = on_subscribed,
    .unsubscribed = on_unsubscribed,
    .session_ended = on_session_ended,
    .client_connected = on_client_connected,
    .will_published = on_will_published,
    .thread_start = on_thread_start,
    .thread_stop = on_thread_stop,
    .publish_accepted = on_publish_accepted,
};

/* With plugin_opt_shared_subscriptions local: no acl hook (no per-delivery check). */
static const struct midge_hooks cluster_hooks = {
    .size = sizeof(struct midge_hooks),
    .subscribed = on_subscribed,
    .unsubscribed = on_unsubscribed,
    .session_ended = on_session_ended,
    .client_connected = on_client_connected,
    .will_published = on_will_published,
    .thread_start = on_thread_start,
    .thread_stop = on_thread_stop,
    .publish_accepted = on_publish_accepted,
};

/* ---- init ---- */

static void
cluster_free(struct cluster *cl)
{
    if (cl == NULL) {
        return;
    }
    link_free(cl->link);
    routes_free(cl->routes);
    conntimes_free(cl->conntimes);
    free(cl->node_id);
    free(cl->prefix);
    free(cl->redis_host);
    free(cl->redis_unix);
    free(cl);
}

/* A whole-number option in [min, max]; 0 or -1 after set_error. */
static int
number_option(struct cluster *cl, const char *key, long min, long max, long *out)
{
    const char *v = cl->api->option(cl->self, key);
    char *end;
    long n;

    if (v == NULL) {
        return 0;
    }
    n = strtol(v, &end, 10);
    if (*v == 0 || *end != 0 || n < min || n > max) {
        cl->api->set_error(cl->self, "plugin_opt_%s must be a number from %ld to %ld, not '%s'",
                           key, min, max, v);
        return -1;
    }
    *out = n;
    return 0;
}

static int
parse_redis(struct cluster *cl, const char *v)
{
    const char *colon;
    char *end;
    long port;

    if (v[0] == '/') {
        return (cl->redis_unix = strdup(v)) != NULL ? 0 : -1;
    }
    colon = strrchr(v, ':');
    if (colon == NULL || colon == v) {
        cl->api->set_error(cl->self, "plugin_opt_redis must be HOST:PORT or a unix socket path, "
                           "not '%s'", v);
        return -1;
    }
    port = strtol(colon + 1, &end, 10);
    if (*end != 0 || port < 1 || port > 65535) {
        cl->api->set_error(cl->self, "plugin_opt_redis: bad port in '%s'", v);
        return -1;
    }
    cl->redis_host = strndup(v, (size_t)(colon - v));
    cl->redis_port = (int)port;
    return cl->redis_host != NULL ? 0 : -1;
}

static int
valid_name(const char *s)
{
    size_t i;

    for (i = 0; s[i] != 0; i++) {
        if (s[i] <= ' ' || s[i] == ':' || s[i] == '/' || s[i] == 0x7f) {
            return 0;
        }
    }
    return i > 0 && i < 128;
}

static int
metrics_new(struct cluster *cl)
{
    const struct midge_api *a = cl->api;
    midge_plugin *s = cl->self;

    cl->m_nodes = a->metric_new(s, "nodes_seen", MIDGE_METRIC_GAUGE,
                                "nodes with a recent heartbeat, this one included");
    cl->m_routes_remote = a->metric_new(s, "routes_remote", MIDGE_METRIC_GAUGE,
                                        "topic filters announced by the other nodes");
    cl->m_forwarded = a->metric_new(s, "forwarded", MIDGE_METRIC_COUNTER,
                                    "messages sent to other nodes (one per target node)");
    cl->m_received = a->metric_new(s, "received", MIDGE_METRIC_COUNTER,
                                   "messages from other nodes published here");
    cl->m_duplicates = a->metric_new(s, "duplicates_dropped", MIDGE_METRIC_COUNTER,
                                     "messages from other nodes dropped as already delivered");
    cl->m_dropped = a->metric_new(s, "dropped", MIDGE_METRIC_COUNTER,
                                  "cross-node messages not forwarded (outage, buffer full)");
    cl->m_buffered = a->metric_new(s, "buffered", MIDGE_METRIC_GAUGE,
                                   "QoS 1/2 messages waiting for redis");
    cl->m_redis_up = a->metric_new(s, "redis_up", MIDGE_METRIC_GAUGE,
                                   "1 while connected to redis");
    cl->m_latency = a->metric_new(s, "redis_latency", MIDGE_METRIC_HISTOGRAM,
                                  "heartbeat round trip to redis, seconds");
    cl->m_shared_elsewhere = a->metric_new(s, "shared_elsewhere", MIDGE_METRIC_COUNTER,
                                           "shared-subscription deliveries left to another node");
    return cl->m_nodes && cl->m_routes_remote && cl->m_forwarded && cl->m_received &&
                   cl->m_duplicates && cl->m_dropped && cl->m_buffered && cl->m_redis_up &&
                   cl->m_latency && cl->m_shared_elsewhere
               ? 0
               : -1;
}

MIDGE_EXPORT int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct cluster *cl = calloc(1, sizeof(*cl));
    const char *v;
    long n;
    struct timeval tv;

    if (cl == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    cl->self = self;
    cl->api = api;
    if (!MIDGE_API_HAS(api, metric_new) || !MIDGE_API_HAS(api, publish)) {
        api->set_error(self, "this broker lacks the metric and publish services");
        goto fail;
    }
    if ((v = api->option(self, "redis")) == NULL) {
        api->set_error(self, "plugin_opt_redis HOST:PORT (or a unix socket path) is required");
        goto fail;
    }
    if (parse_redis(cl, v) < 0) {
        goto fail;
    }
    if ((v = api->option(self, "node_id")) != NULL) {
        cl->node_id = strdup(v);
    } else {
        char host[128];
        char buf[160];
        if (gethostname(host, sizeof(host)) != 0) {
            snprintf(host, sizeof(host), "midge");
        }
        host[sizeof(host) - 1] = 0;
        snprintf(buf, sizeof(buf), "%s-%ld", host, (long)getpid());
        cl->node_id = strdup(buf);
        api->log(self, MIDGE_LOG_WARNING, "no plugin_opt_node_id: this node is %s; set a fixed "
                 "one so QoS 1/2 messages in transit survive a restart", buf);
    }
    if (cl->node_id == NULL || !valid_name(cl->node_id)) {
        api->set_error(self, "plugin_opt_node_id must be 1-127 characters without spaces, "
                       "':' or '/'");
        goto fail;
    }
    v = api->option(self, "prefix");
    if ((cl->prefix = strdup(v != NULL ? v : "midge")) == NULL || !valid_name(cl->prefix)) {
        api->set_error(self, "plugin_opt_prefix must be 1-127 characters without spaces, ':' "
                       "or '/'");
        goto fail;
    }
    n = 10000;
    if (number_option(cl, "buffer", 0, 1000000, &n) < 0) {
        goto fail;
    }
    cl->buffer_max = (size_t)n;
    n = 1000000;
    if (number_option(cl, "stream_maxlen", 1000, 1000000000, &n) < 0) {
        goto fail;
    }
    cl->stream_maxlen = n;
    n = 15;
    if (number_option(cl, "node_timeout", 2, 86400, &n) < 0) {
        goto fail;
    }
    cl->node_timeout = (double)n;
    gettimeofday(&tv, NULL);
    snprintf(cl->boot, sizeof(cl->boot), "%llx",
             (unsigned long long)tv.tv_sec * 1000000ull + (unsigned long long)tv.tv_usec);
    cl->can_hold = MIDGE_API_HAS(api, ack_hold) && MIDGE_API_HAS(api, ack_release);
    cl->can_take = MIDGE_API_HAS(api, client_session_list) && MIDGE_API_HAS(api, client_session_add);
    cl->can_props = MIDGE_API_HAS(api, publish_message) && MIDGE_API_HAS(api, message_new);
    if ((cl->routes = routes_new()) == NULL || (cl->conntimes = conntimes_new()) == NULL ||
        metrics_new(cl) < 0 ||
        (cl->link = link_new(cl)) == NULL) {
        api->set_error(self, "out of memory");
        goto fail;
    }
    v = api->option(self, "shared_subscriptions");
    if (v != NULL && strcmp(v, "cluster") != 0 && strcmp(v, "local") != 0) {
        api->set_error(self, "plugin_opt_shared_subscriptions must be cluster or local, not '%s'",
                       v);
        goto fail;
    }
    if (api->hooks_set(self, v != NULL && strcmp(v, "local") == 0 ? &cluster_hooks
                                                                  : &cluster_hooks_shared) != 0) {
        api->set_error(self, "hooks_set failed");
        goto fail;
    }
    *state = cl;
    return 0;
fail:
    cluster_free(cl);
    return -MIDGE_EINVAL;
}

MIDGE_EXPORT void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    cluster_free(state);
}
