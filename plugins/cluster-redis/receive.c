/*
 * What comes from Redis (link_int.h): stream entries and QoS 0 messages
 * published here (duplicates dropped by id), route changes and reloads,
 * retained messages, and other nodes' claims on client ids.
 */
#include "link_int.h"

#include "dedupe.h"
#include "conntimes.h"
#include "handover.h"
#include "routes.h"
#include "wire.h"

/* ---- receiving ---- */

/* Publishes a forwarded message on this node. `load`: a retained message read at start. */
static void
inject(struct link *l, const char *blob, size_t len, int load)
{
    struct cluster *cl = l->cl;
    struct wire_msg m;
    char small[256];
    char *topic;

    if (wire_decode(blob, len, &m) != 0) {
        cl->api->log(cl->self, MIDGE_LOG_WARNING, "dropped an unreadable cluster message "
                     "(%zu bytes)", len);
        return;
    }
    if (!load && dedupe_seen(l->dd, m.id, m.id_len)) {
        cl->api->metric_add(cl->m_duplicates, 1);
        return;
    }
    topic = m.topic_len < sizeof(small) ? small : malloc(m.topic_len + 1);
    if (topic == NULL) {
        return;
    }
    memcpy(topic, m.topic, m.topic_len);
    topic[m.topic_len] = 0;
    /*
     * api->publish runs no client hooks, so this node's publish_accepted never
     * sees the message: what came from the cluster is not forwarded again.
     */
    if ((m.props != NULL || m.expiry != 0) && cl->can_props) {
        /* With MQTT 5 properties or an expiry: a whole message (ABI 1.2). */
        const midge_message *msg = cl->api->message_new(cl->self, topic, m.payload,
                                                        (uint32_t)m.payload_len, m.qos, m.retain,
                                                        m.props, m.props_len, m.expiry, 0);
        if (msg == NULL) {
            cl->api->log(cl->self, MIDGE_LOG_WARNING, "dropped a cluster message on %s: bad "
                         "properties or out of memory", topic);
            cl->api->metric_add(cl->m_dropped, 1);
        } else {
            if (cl->api->publish_message(cl->self, msg) == 0) {
                cl->api->metric_add(cl->m_received, 1);
            }
            cl->api->message_unref(msg);
        }
    } else if (cl->api->publish(cl->self, topic, m.payload, (uint32_t)m.payload_len, m.qos,
                                m.retain) == 0) {
        cl->api->metric_add(cl->m_received, 1);
    }
    if (topic != small) {
        free(topic);
    }
}

/* Publishes every message of a bundle (wire.h). */
static void
inject_bundle(struct link *l, const char *buf, size_t len, int load)
{
    size_t pos = 0;
    const char *blob;
    size_t n;
    int r;

    while ((r = wire_next(buf, len, &pos, &blob, &n)) == 1) {
        inject(l, blob, n, load);
    }
    if (r < 0) {
        l->cl->api->log(l->cl->self, MIDGE_LOG_WARNING, "dropped the rest of an unreadable "
                        "cluster bundle (%zu of %zu bytes)", len - pos, len);
    }
}


static void
stream_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    struct cluster *cl = l->cl;
    redisReply *reply = r;
    const char **argv = NULL;
    size_t *argl = NULL;
    size_t nack = 0;
    size_t n = 0;
    size_t i;

    (void)arg;
    if (reply == NULL || !l->up) {
        return; /* the connection went away: reading starts again when it is back */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* NOGROUP: Redis lost its data (restarted without appendonly). Create it again. */
        redisAsyncCommand(l->ctx[C_CMD], link_ignore_reply, NULL, "XGROUP CREATE %s %s 0 MKSTREAM",
                          l->k_stream_me, GROUP);
        snprintf(l->read_from, sizeof(l->read_from), "0");
        recv_read_stream(l);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2) {
        redisReply *entries = reply->element[0]->element[1];
        n = entries->type == REDIS_REPLY_ARRAY ? entries->elements : 0;
        argv = calloc(n + 3, sizeof(*argv));
        argl = calloc(n + 3, sizeof(*argl));
        for (i = 0; i < n; i++) {
            redisReply *e = entries->element[i];
            redisReply *fields;
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING) {
                continue;
            }
            fields = e->element[1];
            /* A pending entry trimmed away by MAXLEN comes back without fields. */
            if (fields->type == REDIS_REPLY_ARRAY && fields->elements == 2 &&
                fields->element[0]->type == REDIS_REPLY_STRING &&
                fields->element[1]->type == REDIS_REPLY_STRING) {
                if (strcmp(fields->element[0]->str, "h") == 0) {
                    handover_apply(cl, fields->element[1]->str, fields->element[1]->len);
                } else {
                    inject_bundle(l, fields->element[1]->str, fields->element[1]->len, 0);
                }
            }
            if (l->read_from[0] != '>') {
                snprintf(l->read_from, sizeof(l->read_from), "%s", e->element[0]->str);
            }
            if (argv != NULL && argl != NULL) {
                argv[3 + nack] = e->element[0]->str;
                argl[3 + nack] = e->element[0]->len;
                nack++;
            }
        }
    }
    if (nack > 0) {
        /* Acknowledged once published here: a crash before this line means a redelivery. */
        argv[0] = "XACK";
        argv[1] = l->k_stream_me;
        argv[2] = GROUP;
        for (i = 0; i < 3; i++) {
            argl[i] = strlen(argv[i]);
        }
        redisAsyncCommandArgv(l->ctx[C_CMD], link_ignore_reply, NULL, (int)(3 + nack), argv, argl);
    }
    if (n == 0 && l->read_from[0] != '>') {
        snprintf(l->read_from, sizeof(l->read_from), ">"); /* the backlog is done: new entries */
    }
    free(argv);
    free(argl);
    recv_read_stream(l);
}

void
recv_read_stream(struct link *l)
{
    if (!l->up || l->ctx[C_RD] == NULL) {
        return;
    }
    redisAsyncCommand(l->ctx[C_RD], stream_reply, NULL,
                      "XREADGROUP GROUP %s %s COUNT " READ_COUNT " BLOCK " READ_BLOCK_MS
                      " STREAMS %s %s",
                      GROUP, l->cl->node_id, l->k_stream_me, l->read_from);
}

void
recv_group_created(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;

    (void)r; /* BUSYGROUP is the usual answer: the group exists */
    (void)arg;
    snprintf(l->read_from, sizeof(l->read_from), "0");
    recv_read_stream(l);
}

struct members_arg {
    char *node;
};

static void
members_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    struct members_arg *ma = arg;
    redisReply *reply = r;

    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
        char **v = calloc(reply->elements + 1, sizeof(*v));
        size_t n = 0;
        size_t i;
        for (i = 0; v != NULL && i < reply->elements; i++) {
            if (reply->element[i]->type == REDIS_REPLY_STRING) {
                v[n++] = reply->element[i]->str;
            }
        }
        if (v != NULL) {
            routes_remote_set(l->cl->routes, ma->node, v, n);
        }
        free(v);
    }
    free(ma->node);
    free(ma);
}

static void
load_members(struct link *l, const char *node)
{
    struct members_arg *ma = calloc(1, sizeof(*ma));

    if (ma == NULL || (ma->node = strdup(node)) == NULL) {
        free(ma);
        return;
    }
    if (redisAsyncCommand(l->ctx[C_CMD], members_reply, ma, "SMEMBERS %s:routes:%s",
                          l->cl->prefix, node) != REDIS_OK) {
        free(ma->node);
        free(ma);
    }
}

/* HGETALL nodes: keep the nodes with a recent heartbeat, reload their filters. */
static void
nodes_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    struct cluster *cl = l->cl;
    redisReply *reply = r;
    char **alive;
    size_t n = 0;
    size_t i;
    double now = link_now();

    (void)arg;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return;
    }
    alive = calloc(reply->elements / 2 + 1, sizeof(*alive));
    if (alive == NULL) {
        return;
    }
    for (i = 0; i + 1 < reply->elements; i += 2) {
        redisReply *k = reply->element[i];
        redisReply *v = reply->element[i + 1];
        double seen;
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            strcmp(k->str, cl->node_id) == 0) {
            continue;
        }
        seen = strtod(v->str, NULL) / 1000.0;
        if (now - seen <= cl->node_timeout) {
            alive[n++] = k->str;
        }
    }
    routes_remote_keep(cl->routes, alive, n);
    for (i = 0; i < n; i++) {
        load_members(l, alive[i]);
    }
    cl->api->metric_set(cl->m_nodes, (int64_t)n + 1);
    free(alive);
}

void
recv_resync(struct link *l)
{
    redisAsyncCommand(l->ctx[C_CMD], nodes_reply, NULL, "HGETALL %s", l->k_nodes);
}

/* A claim on a client id by another node, waiting for the owner key. */
struct claim {
    int resume;   /* the client asked to resume its session there */
    char id[];
};

/*
 * Another node claimed a client id. Claims can cross, so the owner key
 * (OWNER_SCRIPT: the node of the latest connection) decides: only a node
 * that is not the owner ends its session (and drops its connection).
 */
static void
claim_owner(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    redisReply *reply = r;
    struct claim *c = arg;

    const char *node = reply != NULL && reply->type == REDIS_REPLY_STRING
                           ? strchr(reply->str, ' ')
                           : NULL;

    /*
     * The owner key may not show our own claim yet (it is still in our queue):
     * a connection here that is newer than the owner's stays, and our claim
     * ends the other one.
     */
    if (node != NULL && strcmp(node + 1, l->cl->node_id) != 0) {
        uint64_t claimed_at = strtoull(reply->str, NULL, 10);
        if (conntimes_get(l->cl->conntimes, c->id) <= claimed_at) {
            handover_take(l->cl, c->id, node + 1, c->resume, claimed_at);
        }
    }
    free(c);
}

static void
claim_check(struct link *l, const char *id, int resume)
{
    size_t n = strlen(id);
    struct claim *c = malloc(sizeof(*c) + n + 1);

    if (c == NULL) {
        return;
    }
    c->resume = resume;
    memcpy(c->id, id, n + 1);
    if (redisAsyncCommand(l->ctx[C_CMD], claim_owner, c, "GET %s:owner:%s", l->cl->prefix,
                          c->id) != REDIS_OK) {
        free(c);
    }
}

/* Pub/sub: route changes of other nodes, and QoS 0 messages for this one. */
void
recv_sub_message(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    struct cluster *cl = l->cl;
    redisReply *reply = r;
    redisReply *ch;
    redisReply *body;
    const char *nl;

    (void)arg;
    if (!l->up || l->ctx[C_CMD] == NULL) {
        return; /* closing: the resync after reconnecting covers what is missed */
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        return;
    }
    ch = reply->element[1];
    body = reply->element[2];
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        /*
         * Listening to route changes now: read the other nodes only after this,
         * so a node announced before is in the hash and one announced after
         * arrives on the channel (no window in which a node is missed).
         */
        if (strcmp(ch->str, l->ch_routes) == 0) {
            recv_resync(l);
        }
        /*
         * The same for retained messages, once per start: one set before this is in the
         * hash, one set after arrives on the channel. The retained channel is the last one
         * subscribed, so when the hash's reply comes this node hears every channel.
         */
        if (strcmp(ch->str, l->ch_retained) == 0 && !l->retained_read) {
            redisAsyncCommand(l->ctx[C_CMD], recv_retained_reply, NULL, "HGETALL %s",
                              l->k_retained);
            l->retained_read = 1;
        }
        return;
    }
    if (strcmp(reply->element[0]->str, "message") != 0 || body->type != REDIS_REPLY_STRING) {
        return;
    }
    if (strcmp(ch->str, l->ch_q0_me) == 0 || strcmp(ch->str, l->ch_retained) == 0) {
        inject_bundle(l, body->str, body->len, 0);
        return;
    }
    if (strcmp(ch->str, l->ch_claims) == 0) {
        /* One connection per client id across the cluster: the older one goes [MQTT-3.1.4-3]. */
        nl = memchr(body->str, '\n', body->len);
        if (nl != NULL && (size_t)(nl - body->str) == strlen(cl->node_id) &&
            memcmp(body->str, cl->node_id, (size_t)(nl - body->str)) == 0) {
            return; /* our own claim */
        }
        /* "NODE\n" then 'r' (clean start 0: the session moves there) or 'c', then the id. */
        if (nl != NULL && (nl[1] == 'r' || nl[1] == 'c') && nl[2] != 0) {
            claim_check(l, nl + 2, nl[1] == 'r');
        }
        return;
    }
    if (strcmp(ch->str, l->ch_routes) != 0 || body->len < 2) {
        return;
    }
    nl = memchr(body->str, '\n', body->len);
    if (body->str[0] == '*') {
        /* A node (re)started and announced all its routes: read them. */
        if (strcmp(body->str + 1, cl->node_id) != 0) {
            load_members(l, body->str + 1);
        }
        return;
    }
    if (nl == NULL) {
        return;
    }
    {
        size_t nlen = (size_t)(nl - body->str) - 1;
        char node[256];
        if (nlen == 0 || nlen >= sizeof(node)) {
            return;
        }
        memcpy(node, body->str + 1, nlen);
        node[nlen] = 0;
        if (strcmp(node, cl->node_id) == 0) {
            return;
        }
        if (body->str[0] == '+') {
            routes_remote_add(cl->routes, node, nl + 1);
        } else if (body->str[0] == '-') {
            routes_remote_remove(cl->routes, node, nl + 1);
        }
    }
    cl->api->metric_set(cl->m_routes_remote, (int64_t)routes_remote_filters(cl->routes));
}

void
recv_retained_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct link *l = ac->data;
    redisReply *reply = r;
    size_t i;

    (void)arg;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return;
    }
    for (i = 1; i < reply->elements; i += 2) {
        if (reply->element[i]->type == REDIS_REPLY_STRING) {
            inject_bundle(l, reply->element[i]->str, reply->element[i]->len, 1);
        }
    }
    l->cl->api->log(l->cl->self, MIDGE_LOG_INFO, "loaded %zu retained messages from redis",
                    reply->elements / 2);
}
