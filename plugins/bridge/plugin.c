/*
 * bridge: connections to other MQTT brokers (docs/bridge.md).
 *
 *     plugin bridge
 *     plugin_opt_bridges /etc/midge/bridges.conf
 *
 * Each `connection` of the bridges file is one struct bridge: an internal
 * session of the broker (its `out` subscriptions and its queue, persisted
 * like any session) and one MQTT client connection to the remote, both on
 * the session's home worker. This file is the glue: init, SIGHUP (add,
 * remove and change bridges; unchanged ones keep their connection),
 * shutdown, the session's `opened` callback, and topic mapping.
 */
#include "bridge.h"
#include "tls.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static const char *const bridge_options[] = {"bridges", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("bridge", "1.0", "bridges to other MQTT brokers (mosquitto's bridge "
                             "lines)", bridge_options);

#define SESSION_WINDOW 65535 /* until the link is up; then queue_max_messages (outgoing.c: out_window) */

static void opened(void *arg, midge_session *s, int present);

static const struct midge_session_handlers handlers = {
    .size = sizeof(struct midge_session_handlers),
    .opened = opened,
    .deliver = out_deliver,
    .released = out_released,
};

const struct bridge_topic *
bridge_rule_out(const struct bridge_conf *c, const char *topic)
{
    size_t i;

    for (i = 0; i < c->ntopics; i++) {
        const struct bridge_topic *t = &c->topics[i];
        if ((t->dir & BRIDGE_OUT) && bridge_topic_match(t->local_filter, topic)) {
            return t;
        }
    }
    return NULL;
}

const struct bridge_topic *
bridge_rule_in(const struct bridge_conf *c, const char *topic)
{
    size_t i;

    for (i = 0; i < c->ntopics; i++) {
        const struct bridge_topic *t = &c->topics[i];
        if ((t->dir & BRIDGE_IN) && bridge_topic_match(t->remote_filter, topic)) {
            return t;
        }
    }
    return NULL;
}

uint16_t
bridge_free_pid(const struct bridge *b, uint16_t below)
{
    uint32_t id = below == 0 ? 65535 : below - 1u;

    while (id > 0 && b->by_id != NULL && b->by_id[id] != NULL) {
        id--;
    }
    return (uint16_t)(id > 0 ? id : 1);
}

/* Session expiry of the bridge's local session: kept across restarts unless local_cleansession. */
static uint32_t
local_expiry(const struct bridge_conf *c)
{
    return c->local_cleansession ? 0 : 0xFFFFFFFFu;
}

static int
begin(struct bridge *b)
{
    int rc = bridge_api(b)->session_open(bridge_self(b), b->conf->local_clientid,
                                         local_expiry(b->conf), SESSION_WINDOW, &handlers, b);
    if (rc != 0) {
        BLOG(b, MIDGE_LOG_ERROR, "cannot open internal session %s: error %d",
             b->conf->local_clientid, rc);
    }
    return rc;
}

/* Lets go of the session and everything of the home worker. `end`: end the session too. */
static void
teardown(struct bridge *b, int end)
{
    const struct midge_api *api = bridge_api(b);

    if (b->kick_watch != NULL) {
        api->fd_unwatch(bridge_self(b), b->kick_watch);
        b->kick_watch = NULL;
    }
    lm_stop(b);
    out_free(b);
    in_link_lost(b); /* before session_close: its pending publishes settle as orphans */
    if (b->s != NULL) {
        api->session_close(b->s, end);
        b->s = NULL;
    }
    atomic_store_explicit(&b->have_home, 0, memory_order_relaxed);
    b->state = LINK_IDLE;
}

/* The main thread asked for something: [home worker] */
static void
on_kick(void *arg, int fd, int revents)
{
    struct bridge *b = arg;
    uint64_t v;
    int cmd;

    (void)revents;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
        return;
    }
    cmd = atomic_exchange(&b->cmd, CMD_NONE);
    if (cmd == CMD_STOP) {
        link_stop(b, "removed from the bridges file");
        teardown(b, 1);
        lm_free(b, 1);
        atomic_store(&b->done, 1);
    } else if (cmd == CMD_RESTART) {
        const struct bridge_conf *old = b->conf;
        const struct bridge_conf *nc = b->next_conf;
        size_t i;
        int same_id = strcmp(old->local_clientid, nc->local_clientid) == 0;

        link_stop(b, "configuration changed");
        if (same_id && b->s != NULL) {
            /* Local subscriptions of out topics that are gone. */
            for (i = 0; i < old->ntopics; i++) {
                size_t j;
                int kept = 0;
                if (!(old->topics[i].dir & BRIDGE_OUT)) {
                    continue;
                }
                for (j = 0; j < nc->ntopics; j++) {
                    kept |= (nc->topics[j].dir & BRIDGE_OUT) &&
                            strcmp(nc->topics[j].local_filter, old->topics[i].local_filter) == 0;
                }
                if (!kept) {
                    bridge_api(b)->session_unsubscribe(b->s, old->topics[i].local_filter);
                }
            }
        }
        teardown(b, !same_id);
        b->conf = nc;
        b->addr_idx = 0;
        b->backoff = 0;
        b->private_refused = 0;
        begin(b);
    }
}

static void
opened(void *arg, midge_session *s, int present)
{
    struct bridge *b = arg;
    const struct midge_api *api = bridge_api(b);
    size_t i;

    if (s == NULL) {
        BLOG(b, MIDGE_LOG_ERROR, "cannot open internal session %s (used by another plugin?)",
             b->conf->local_clientid);
        atomic_store(&b->done, 1);
        return;
    }
    b->s = s;
    b->home = pthread_self();
    atomic_store_explicit(&b->have_home, 1, memory_order_release);
    if (b->by_id == NULL && (b->by_id = calloc(65536, sizeof(*b->by_id))) == NULL) {
        BLOG(b, MIDGE_LOG_ERROR, "out of memory for session %s", b->conf->local_clientid);
        api->session_close(s, 0);
        b->s = NULL;
        return;
    }
    b->kick_watch = api->fd_watch(bridge_self(b), b->kick, MIDGE_FD_READ, on_kick, b);
    for (i = 0; i < b->conf->ntopics; i++) {
        const struct bridge_topic *t = &b->conf->topics[i];
        if (t->dir & BRIDGE_OUT) {
            /* No Local: what arrives over this bridge is not sent back over it. */
            int rc = api->session_subscribe(s, t->local_filter, t->qos,
                                            MIDGE_SUB_NO_LOCAL | MIDGE_SUB_RETAIN_AS_PUBLISHED);
            if (rc != 0) {
                BLOG(b, MIDGE_LOG_ERROR, "cannot subscribe the session to %s: error %d",
                     t->local_filter, rc);
            }
        }
    }
    BLOG(b, MIDGE_LOG_INFO, "session %s open present=%d", b->conf->local_clientid, present);
    link_begin(b);
    lm_start(b);
}

static struct bridge *
bridge_new(struct bridge_ctx *ctx, const struct bridge_conf *c)
{
    struct bridge *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        return NULL;
    }
    b->ctx = ctx;
    b->conf = c;
    b->latest = c;
    b->fd = -1;
    b->probe_fd = -1;
    b->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->kick < 0) {
        free(b);
        return NULL;
    }
    lm_create(b);
    return b;
}

/* Frees a bridge whose home worker let go of it (or whose workers stopped). [main thread] */
static void
bridge_free(struct bridge *b)
{
    if (b->tls != NULL) {
        tls_free(b);
    }
    if (b->fd >= 0) {
        close(b->fd);
    }
    if (b->probe_fd >= 0) {
        close(b->probe_fd);
    }
    out_free(b);
    lm_free(b, 0);
    bbuf_free(&b->in);
    bbuf_free(&b->out);
    free(b->by_id);
    close(b->kick);
    free(b);
}

static void
kick(struct bridge *b, int cmd)
{
    uint64_t one = 1;

    atomic_store(&b->cmd, cmd);
    if (write(b->kick, &one, sizeof(one)) < 0) {
        /* the counter is full: the worker is woken anyway */
    }
}

/* Parses the file and checks what needs the file system (TLS files). [main thread] */
static int
load(struct bridge_ctx *ctx, struct bridge_conf **out)
{
    char err[512];
    struct bridge_conf *c;

    if (bridge_conf_load(ctx->path, ctx->hostname, out, err, sizeof(err)) != 0) {
        ctx->api->set_error(ctx->self, "%s", err);
        return -MIDGE_EINVAL;
    }
    for (c = *out; c != NULL; c = c->next) {
        char terr[400];
        if (tls_check_conf(c, terr, sizeof(terr)) != 0) {
            ctx->api->set_error(ctx->self, "%s:%d: connection %s: %s", ctx->path, c->line,
                                c->name, terr);
            bridge_conf_free(*out);
            *out = NULL;
            return -MIDGE_EINVAL;
        }
    }
    return 0;
}

static int
keep_generation(struct bridge_ctx *ctx, struct bridge_conf *list)
{
    struct bridge_gen *g = calloc(1, sizeof(*g));

    if (g == NULL) {
        bridge_conf_free(list);
        return -MIDGE_ENOMEM;
    }
    g->list = list;
    g->next = ctx->generations;
    ctx->generations = g;
    return 0;
}

/* Frees retired bridges whose worker is done with them. [main thread] */
static void
reap(struct bridge_ctx *ctx)
{
    struct bridge **pp = &ctx->retired;

    while (*pp != NULL) {
        struct bridge *b = *pp;
        if (atomic_load(&b->done)) {
            *pp = b->next;
            bridge_free(b);
        } else {
            pp = &b->next;
        }
    }
}

/* SIGHUP: re-reads the bridges file. [main thread] */
static int
reload(void *state)
{
    struct bridge_ctx *ctx = state;
    const struct midge_api *api = ctx->api;
    const char *path = api->option(ctx->self, "bridges");
    struct bridge_conf *list = NULL;
    struct bridge_conf *c;
    struct bridge **pp;
    struct bridge *added = NULL;
    int rc;

    reap(ctx);
    if (path == NULL) {
        api->set_error(ctx->self, "plugin_opt_bridges is not set");
        return -MIDGE_EINVAL;
    }
    if (strcmp(path, ctx->path) != 0) {
        char *p = strdup(path);
        if (p == NULL) {
            return -MIDGE_ENOMEM;
        }
        free(ctx->path);
        ctx->path = p;
    }
    if ((rc = load(ctx, &list)) != 0 || (rc = keep_generation(ctx, list)) != 0) {
        return rc;
    }
    /* Removed or changed. */
    for (pp = &ctx->bridges; *pp != NULL;) {
        struct bridge *b = *pp;
        for (c = list; c != NULL && strcmp(c->name, b->latest->name) != 0; c = c->next) {
        }
        if (c == NULL) {
            api->log(ctx->self, MIDGE_LOG_NOTICE, "bridge=%s removed", b->latest->name);
            *pp = b->next;
            b->next = ctx->retired;
            ctx->retired = b;
            kick(b, CMD_STOP);
            continue;
        }
        if (!bridge_conf_same(c, b->latest)) {
            api->log(ctx->self, MIDGE_LOG_NOTICE, "bridge=%s changed: reconnecting", c->name);
            b->next_conf = c;
            b->latest = c;
            kick(b, CMD_RESTART);
        }
        pp = &b->next;
    }
    /* Added. */
    for (c = list; c != NULL; c = c->next) {
        struct bridge *b;
        for (b = ctx->bridges; b != NULL && strcmp(c->name, b->latest->name) != 0; b = b->next) {
        }
        if (b != NULL) {
            continue;
        }
        b = bridge_new(ctx, c);
        if (b == NULL) {
            api->log(ctx->self, MIDGE_LOG_ERROR, "bridge=%s not added: out of memory", c->name);
            continue;
        }
        api->log(ctx->self, MIDGE_LOG_NOTICE, "bridge=%s added", c->name);
        b->next = added;
        added = b;
    }
    while (added != NULL) {
        struct bridge *b = added;
        added = b->next;
        b->next = ctx->bridges;
        ctx->bridges = b;
        begin(b);
    }
    return 0;
}

/* A worker stops: its bridges say goodbye to their remotes. [that worker] */
static void
thread_stop(void *state, unsigned worker)
{
    struct bridge_ctx *ctx = state;
    struct bridge *b;

    (void)worker;
    for (b = ctx->bridges; b != NULL; b = b->next) {
        if (atomic_load_explicit(&b->have_home, memory_order_acquire) &&
            pthread_equal(b->home, pthread_self())) {
            link_stop(b, "broker shutting down");
            lm_stop(b);
            if (b->kick_watch != NULL) {
                bridge_api(b)->fd_unwatch(bridge_self(b), b->kick_watch);
                b->kick_watch = NULL;
            }
            out_free(b); /* the session keeps them: delivered again at the next start */
            atomic_store_explicit(&b->have_home, 0, memory_order_relaxed);
        }
    }
}

/*
 * A client publishes: a message carrying an origin seen before (a midge
 * peer's bridge delivering it a second time, over another path of a mesh or
 * after a reconnect) is acknowledged and dropped. [worker thread]
 */
static int
message_in(void *state, midge_client *client, const midge_message *msg, midge_message_edit *edit,
           uint8_t *reason)
{
    struct bridge_ctx *ctx = state;
    struct origin o;

    if (ctx->api->client_listener_name(client) == NULL) {
        /* An internal session: a bridge's own inbound publish, checked before it was made. */
        return MIDGE_DEFER;
    }
    if (loop_origin_of(ctx->api, msg, &o)) {
        if (loop_seen(&ctx->loop, &o)) {
            ctx->api->metric_add(ctx->m_loops, 1);
            *reason = 0; /* acknowledged with success: the sender must not send it again */
            return MIDGE_DENY;
        }
    } else if (loop_pulled(&ctx->loop, ctx->api->message_topic(msg))) {
        /*
         * A midge peer's bridge subscribed to this here: the copy it pulls and
         * the copies our bridges push must carry the same origin.
         */
        char val[48];
        loop_new_origin(&ctx->loop, &o);
        val[loop_format(&o, val)] = '\0';
        ctx->api->edit_user_property_add(edit, LOOP_PROP, val);
    }
    return MIDGE_DEFER;
}

/* 1 when the client is a midge bridge (its MQTT 5 CONNECT said so). */
static int
is_midge_bridge(const struct midge_api *api, const midge_client *client)
{
    size_t pos = 0;
    const char *k;
    const char *v;
    size_t kl;
    size_t vl;

    while (api->client_user_property_next(client, &pos, &k, &kl, &v, &vl)) {
        if (kl == sizeof(LOOP_BRIDGE_PROP) - 1 && memcmp(k, LOOP_BRIDGE_PROP, kl) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A subscription was granted: a midge peer's bridge pulling from us? [worker thread] */
static void
subscribed(void *state, midge_client *client, const char *filter, int qos)
{
    struct bridge_ctx *ctx = state;

    (void)qos;
    if (is_midge_bridge(ctx->api, client)) {
        loop_pull_add(&ctx->loop, filter);
    }
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .reload = reload,
    .thread_stop = thread_stop,
    .message_in = message_in,
    .subscribed = subscribed,
};

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct bridge_ctx *ctx = NULL;
    struct bridge_conf *list = NULL;
    struct bridge_conf *c;
    const char *path;
    int rc;

    if (!MIDGE_API_HAS(api, session_publish_message)) {
        api->set_error(self, "this broker's plugin ABI %u.%u lacks session_publish_message "
                       "(ABI 1.1 needed)", (unsigned)api->abi_major, (unsigned)api->abi_minor);
        return -MIDGE_ENOTSUP;
    }
    path = api->option(self, "bridges");
    if (path == NULL) {
        api->set_error(self, "plugin_opt_bridges FILE is required");
        return -MIDGE_EINVAL;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL || (ctx->path = strdup(path)) == NULL) {
        free(ctx);
        return -MIDGE_ENOMEM;
    }
    *state = ctx;
    ctx->api = api;
    ctx->self = self;
    if (loop_init(&ctx->loop) != 0) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    if (gethostname(ctx->hostname, sizeof(ctx->hostname) - 1) != 0) {
        snprintf(ctx->hostname, sizeof(ctx->hostname), "midge");
    }
    if ((rc = load(ctx, &list)) != 0 || (rc = keep_generation(ctx, list)) != 0) {
        return rc;
    }
    ctx->m_sent = api->metric_new(self, "messages_sent", MIDGE_METRIC_COUNTER,
                                  "messages sent to remote brokers");
    ctx->m_received = api->metric_new(self, "messages_received", MIDGE_METRIC_COUNTER,
                                      "messages received from remote brokers");
    ctx->m_dropped = api->metric_new(self, "messages_dropped", MIDGE_METRIC_COUNTER,
                                     "messages dropped (queue full, too large, QoS 0 offline)");
    ctx->m_connects = api->metric_new(self, "connects", MIDGE_METRIC_COUNTER,
                                      "successful connections to remote brokers");
    ctx->m_loops = api->metric_new(self, "duplicates_dropped", MIDGE_METRIC_COUNTER,
                                   "messages dropped because their origin was seen before");
    ctx->m_connected = api->metric_new(self, "connected", MIDGE_METRIC_GAUGE,
                                       "bridges connected to their remote broker now");
    api->hooks_set(self, &hooks);
    for (c = list; c != NULL; c = c->next) {
        struct bridge *b = bridge_new(ctx, c);
        if (b == NULL) {
            api->set_error(self, "out of memory");
            return -MIDGE_ENOMEM;
        }
        b->next = ctx->bridges;
        ctx->bridges = b;
    }
    for (struct bridge *b = ctx->bridges; b != NULL; b = b->next) {
        if (begin(b) != 0) {
            api->set_error(self, "cannot open the internal session of bridge %s", b->conf->name);
            return -MIDGE_EINVAL;
        }
    }
    return 0;
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    struct bridge_ctx *ctx = state;

    (void)self;
    if (ctx == NULL) {
        return;
    }
    while (ctx->bridges != NULL) {
        struct bridge *b = ctx->bridges;
        ctx->bridges = b->next;
        bridge_free(b);
    }
    while (ctx->retired != NULL) {
        struct bridge *b = ctx->retired;
        ctx->retired = b->next;
        bridge_free(b);
    }
    while (ctx->generations != NULL) {
        struct bridge_gen *g = ctx->generations;
        ctx->generations = g->next;
        bridge_conf_free(g->list);
        free(g);
    }
    loop_free(&ctx->loop);
    free(ctx->path);
    free(ctx);
}
