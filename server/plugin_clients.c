/*
 * What plugins can learn about and do to clients beyond the hook at hand:
 * more accessors (listener, peer, CONNECT user properties, TLS), clients by
 * id from any thread (find, disconnect), and the re-check of subscriptions
 * after an ACL plugin reloaded.
 */
#include "plugin.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "mqtt.h"
#include "session.h"
#include "subs.h"
#include "tls.h"
#include "worker.h"

/* ---- accessors. [worker thread, during a hook about c] ---- */

const char *
plugin_client_listener_name(const midge_client *c)
{
    const struct conn *conn = (const struct conn *)c;

    return conn->listener != NULL ? conn->listener->name : NULL; /* NULL: internal session */
}

const char *
plugin_client_peer_ip(const midge_client *c)
{
    static __thread char buf[INET6_ADDRSTRLEN];
    const struct conn *conn = (const struct conn *)c;

    if (conn->peer.family == 0 ||
        inet_ntop(conn->peer.family, conn->peer.ip, buf, sizeof(buf)) == NULL) {
        return "?";
    }
    return buf;
}

int
plugin_client_peer_port(const midge_client *c)
{
    return ((const struct conn *)c)->peer.port;
}

int
plugin_client_user_property_next(const midge_client *c, size_t *pos, const char **key,
                                 size_t *key_len, const char **value, size_t *value_len)
{
    const struct conn *conn = (const struct conn *)c;

    return plugin_uprop_next(conn->connect_uprops, conn->connect_uprops_len, pos, key, key_len,
                             value, value_len);
}

/* Keeps the CONNECT's user properties for plugins (only when some plugin could ask). */
int
plugin_conn_keep_user_props(struct conn *c, const struct mqtt_props *props)
{
    free(c->connect_uprops);
    c->connect_uprops = NULL;
    c->connect_uprops_len = 0;
    if (plugins == NULL || props->user_props.len == 0) {
        return 0;
    }
    c->connect_uprops = malloc(props->user_props.len);
    if (c->connect_uprops == NULL) {
        return -1;
    }
    memcpy(c->connect_uprops, props->user_props.ptr, props->user_props.len);
    c->connect_uprops_len = props->user_props.len;
    return 0;
}

int
plugin_client_tls(const midge_client *c, struct midge_tls_info *info)
{
    return tls_conn_info((const struct conn *)c, info);
}

/* ---- clients by id. [any thread] ---- */

/* A request travelling to a session's home worker. Owned by the call until it ran. */
struct client_req {
    const struct midge_plugin *plugin;
    void (*find_cb)(void *arg, const struct midge_client_info *info); /* NULL: disconnect */
    void *arg;
    uint8_t reason;
    size_t id_len;
    char id[];
};

static struct client_req *
req_new(const midge_plugin *self, const char *client_id)
{
    size_t n = strlen(client_id);
    struct client_req *r;

    if (n == 0 || n > 65535) {
        return NULL;
    }
    r = calloc(1, sizeof(*r) + n + 1);
    if (r == NULL) {
        return NULL;
    }
    r->plugin = self;
    r->id_len = n;
    memcpy(r->id, client_id, n + 1);
    return r;
}

/* On the session's home worker (or on the main thread at shutdown: no session then). */
static void
disconnect_run(void *arg)
{
    struct client_req *r = arg;
    struct worker *w = worker_current();
    struct session *s = w != NULL ? session_find(w, r->id, r->id_len) : NULL;
    char why[160];

    if (s != NULL && s->conn != NULL && s->conn->sink != NULL) {
        midge_log(MLOG_WARNING, "plugin=%s asked to disconnect client=%s: an internal session, "
                  "not disconnected", r->plugin->name, r->id);
    } else if (s != NULL && s->conn != NULL && s->conn->state == CONN_ACTIVE) {
        uint8_t rc = r->reason >= 0x80 ? r->reason : MQTT_RC_ADMINISTRATIVE_ACTION;
        midge_log(MLOG_NOTICE, "plugin=%s disconnects client=%s reason=0x%02x", r->plugin->name,
                  r->id, rc);
        snprintf(why, sizeof(why), "disconnected by plugin %s", r->plugin->name);
        conn_close(s->conn, rc, 1, why);
    } else {
        midge_log(MLOG_INFO, "plugin=%s asked to disconnect client=%s: not connected",
                  r->plugin->name, r->id);
    }
    free(r);
}

int
plugin_client_disconnect(midge_plugin *self, const char *client_id, uint8_t reason)
{
    struct client_req *r;

    if (client_id == NULL) {
        return -MIDGE_EINVAL;
    }
    r = req_new(self, client_id);
    if (r == NULL) {
        return client_id[0] == '\0' || strlen(client_id) > 65535 ? -MIDGE_EINVAL : -MIDGE_ENOMEM;
    }
    r->reason = reason;
    call_post_home(r->id, r->id_len, disconnect_run, r);
    return 0;
}

/* Describes a session for plugins; strings borrowed from it. [its worker] */
void
plugin_session_info(const struct session *s, struct midge_client_info *info)
{
    const struct conn *c = s->conn;

    memset(info, 0, sizeof(*info));
    info->size = sizeof(*info);
    info->client_id = s->client_id;
    info->connected = c != NULL && c->state == CONN_ACTIVE;
    info->protocol = s->version;
    info->session_expiry = s->expiry;
    info->subscriptions = s->nsubs;
    info->queued = s->queue.count;
    info->inflight = s->inflight.count;
    if (info->connected && c->sink != NULL) {
        info->address = "(internal session)";
    } else if (info->connected) {
        info->username = c->username;
        info->address = conn_addr(c);
        info->listener_port = c->listener->port;
        info->keepalive = c->keepalive;
        info->clean_start = c->clean_start;
    }
}

static void
find_run(void *arg)
{
    struct client_req *r = arg;
    struct worker *w = worker_current();
    struct session *s = w != NULL ? session_find(w, r->id, r->id_len) : NULL;
    struct midge_client_info info;

    if (s == NULL) {
        r->find_cb(r->arg, NULL);
    } else {
        plugin_session_info(s, &info);
        r->find_cb(r->arg, &info);
    }
    free(r);
}

int
plugin_client_find(midge_plugin *self, const char *client_id,
                   void (*cb)(void *arg, const struct midge_client_info *info), void *arg)
{
    struct client_req *r;

    if (client_id == NULL || cb == NULL || client_id[0] == '\0' || strlen(client_id) > 65535) {
        return -MIDGE_EINVAL;
    }
    r = req_new(self, client_id);
    if (r == NULL) {
        return -MIDGE_ENOMEM;
    }
    r->find_cb = cb;
    r->arg = arg;
    call_post_home(r->id, r->id_len, find_run, r);
    return 0;
}

/* ---- subscriptions re-checked after an ACL reload ---- */

/* On each worker: every connected client's subscriptions through the ACL chain again. */
static void
recheck_run(void *arg)
{
    struct worker *w = worker_current();
    struct session *s;
    unsigned removed = 0;

    (void)arg;
    if (w == NULL) {
        return;
    }
    for (s = sessions_all(w); s != NULL; s = s->all_next) {
        struct conn *c = s->conn;
        uint32_t i = s->nsubs;
        if (c == NULL || c->state != CONN_ACTIVE || c->sink != NULL) {
            continue; /* checked again when it reconnects and subscribes; plugins are trusted */
        }
        while (i-- > 0) {
            char *f = s->subs[i].filter;
            size_t len = strlen(f);
            char *copy;
            uint8_t r = 0;
            if (plugin_acl(c, MIDGE_ACL_SUBSCRIBE, f, s->subs[i].opts & 3, 0, NULL, 0, &r) !=
                PLUGIN_DENY) {
                continue;
            }
            subs_remove(f, len, s->sub);
            copy = strdup(f); /* session_sub_remove frees the record's filter */
            if (copy == NULL) {
                continue; /* out of memory: the record stays, but nothing routes to it now */
            }
            session_sub_remove(s, copy, len);
            /* Logged once the filter is out of the index: a publish sent after this line is
             * no longer matched against it. */
            midge_log(MLOG_NOTICE, "acl reload: subscription removed client=%s user=%s "
                      "filter=%s", s->client_id, c->username ? c->username : "", copy);
            free(copy);
            removed++;
        }
    }
    if (removed > 0) {
        midge_log(MLOG_NOTICE, "acl reload: worker %u removed %u subscription(s)", w->id, removed);
    }
}

void
plugin_acl_recheck_all(void)
{
    unsigned i;

    for (i = 0; i < broker.nworkers; i++) {
        call_post(i, recheck_run, NULL);
    }
}
