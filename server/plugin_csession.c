/*
 * A client's session by id for plugins (ABI 1.2): list its subscriptions and
 * unacknowledged messages (and end it in the same step), add a subscription
 * or a message to it. What a cluster needs to move a session to another node
 * when its client reconnects there. Every change runs on the session's home
 * worker, reached with call_post_home (one queue per worker: calls about one
 * client id run in the order they were made).
 */
#include "plugin.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "mqtt.h"
#include "msg.h"
#include "session.h"
#include "subs.h"
#include "topic.h"
#include "worker.h"

/*
 * A list or add request on its way to the home worker. Owned by the call
 * until it ran (then freed there); owns `filter` and one reference to `m`.
 */
struct csession_req {
    const struct midge_plugin *plugin;
    int flags;                    /* list: enum midge_session_list_flags */
    uint64_t connected_before;    /* list: a connection after this (us, epoch) is kept */
    void (*list_cb)(void *arg, const struct midge_session_entry *e);
    void (*list_done)(void *arg, int found);
    void (*add_done)(void *arg, int result);
    void *arg;
    int kind;                     /* add: enum midge_session_entry_kind */
    char *filter;
    uint8_t options;
    uint32_t sub_id;
    struct msg *m;
    uint8_t qos;
    uint8_t retain;
    size_t id_len;
    char id[];
};

/* A request about client_id (its callers checked it: 1..65535 bytes). */
static struct csession_req *
req_new(const midge_plugin *self, const char *client_id)
{
    size_t n = strlen(client_id);
    struct csession_req *r;

    r = calloc(1, sizeof(*r) + n + 1);
    if (r == NULL) {
        return NULL;
    }
    r->plugin = self;
    r->id_len = n;
    memcpy(r->id, client_id, n + 1);
    return r;
}

static void
req_free(struct csession_req *r)
{
    free(r->filter);
    if (r->m != NULL) {
        msg_unref(r->m);
    }
    free(r);
}

/* The client's session on this worker; NULL when none or a plugin's internal session. */
static struct session *
client_session(const struct csession_req *r)
{
    struct worker *w = worker_current();
    struct session *s = w != NULL ? session_find(w, r->id, r->id_len) : NULL;

    if (s != NULL && s->conn != NULL && s->conn->sink != NULL) {
        return NULL; /* internal sessions belong to their plugin */
    }
    return s;
}

/* Lists the unacknowledged deliveries of one ring, in order. */
static void
list_ring(const struct qring *q, const struct csession_req *r)
{
    struct midge_session_entry e;
    uint32_t i;

    for (i = 0; i < q->count; i++) {
        const struct qentry *qe = &q->v[(q->head + i) % q->cap];
        if (qe->msg == NULL || qe->state == QS_RELEASED || qe->state == QS_DONE) {
            continue; /* the client has it: only its PUBCOMP / our pop is missing */
        }
        memset(&e, 0, sizeof(e));
        e.size = sizeof(e);
        e.kind = MIDGE_ENTRY_MESSAGE;
        e.msg = (const midge_message *)qe->msg;
        e.qos = qe->qos;
        e.retain = qe->retain;
        e.state = qe->state == QS_SENT ? MIDGE_DELIVERY_SENT : MIDGE_DELIVERY_QUEUED;
        r->list_cb(r->arg, &e);
    }
}

/* On the session's home worker. */
static void
list_run(void *arg)
{
    struct csession_req *r = arg;
    struct session *s = client_session(r);
    struct midge_session_entry e;
    uint32_t i;

    if (s == NULL) {
        r->list_done(r->arg, 0);
        req_free(r);
        return;
    }
    if ((r->flags & MIDGE_SESSION_END) && r->connected_before != 0 && s->conn != NULL &&
        s->conn->connected_us > r->connected_before) {
        /* Claims that crossed: this connection is newer than the one that claimed it. */
        r->list_done(r->arg, 2);
        req_free(r);
        return;
    }
    if (r->list_cb != NULL) {
        for (i = 0; i < s->nsubs; i++) {
            memset(&e, 0, sizeof(e));
            e.size = sizeof(e);
            e.kind = MIDGE_ENTRY_SUBSCRIPTION;
            e.filter = s->subs[i].filter;
            e.options = s->subs[i].opts;
            e.sub_id = s->subs[i].sub_id;
            r->list_cb(r->arg, &e);
        }
        list_ring(&s->inflight, r);
        list_ring(&s->queue, r);
    }
    if (r->flags & MIDGE_SESSION_END) {
        int will = (r->flags & MIDGE_SESSION_END_WILL) != 0;
        midge_log(MLOG_NOTICE, "plugin=%s ends the session of client=%s (taken over elsewhere)",
                  r->plugin->name, r->id);
        if (s->conn != NULL) {
            /* [MQTT-3.1.4-3]: the existing connection goes; MQTT 5 with 0x8E. */
            conn_close(s->conn, MQTT_RC_SESSION_TAKEN_OVER, will, "session taken over");
            s = client_session(r); /* it ended with the connection if its expiry was 0 */
        }
        if (s != NULL) {
            if (will) {
                session_publish_will(s);
            }
            session_destroy(s);
        }
    }
    r->list_done(r->arg, 1);
    req_free(r);
}

int
plugin_client_session_list(midge_plugin *self, const char *client_id, int flags,
                           uint64_t connected_before,
                           void (*cb)(void *arg, const struct midge_session_entry *e),
                           void (*done)(void *arg, int found), void *arg)
{
    struct csession_req *r;

    if (client_id == NULL || done == NULL || client_id[0] == '\0' ||
        strlen(client_id) > 65535 || (flags & ~(MIDGE_SESSION_END | MIDGE_SESSION_END_WILL))) {
        return -MIDGE_EINVAL;
    }
    r = req_new(self, client_id);
    if (r == NULL) {
        return -MIDGE_ENOMEM;
    }
    r->flags = flags;
    r->connected_before = connected_before;
    r->list_cb = cb;
    r->list_done = done;
    r->arg = arg;
    call_post_home(r->id, r->id_len, list_run, r);
    return 0;
}

/* On the session's home worker. */
static void
add_run(void *arg)
{
    struct csession_req *r = arg;
    struct session *s = client_session(r);
    int result = 0;

    if (s == NULL) {
        result = -MIDGE_ENOENT;
    } else if (r->kind == MIDGE_ENTRY_SUBSCRIPTION) {
        size_t n = strlen(r->filter);
        int existed = 0;
        if (subs_add(r->filter, n, s->sub, r->options, r->sub_id, &existed) < 0) {
            result = -MIDGE_ENOMEM;
        } else if (session_sub_add(s, r->filter, n, r->options, r->sub_id) < 0) {
            if (!existed) {
                subs_remove(r->filter, n, s->sub);
            }
            result = -MIDGE_ENOMEM;
        }
    } else {
        session_deliver(s, r->m, r->qos, r->retain, 0, NULL, 0);
    }
    if (r->add_done != NULL) {
        r->add_done(r->arg, result);
    }
    req_free(r);
}

int
plugin_client_session_add(midge_plugin *self, const char *client_id,
                          const struct midge_session_entry *e,
                          void (*done)(void *arg, int result), void *arg)
{
    struct csession_req *r;

    if (client_id == NULL || e == NULL || client_id[0] == '\0' || strlen(client_id) > 65535) {
        return -MIDGE_EINVAL;
    }
    if (e->kind == MIDGE_ENTRY_SUBSCRIPTION) {
        size_t n = e->filter != NULL ? strlen(e->filter) : 0;
        const char *g;
        const char *in;
        size_t gl;
        size_t il;
        int shared = n > 0 ? topic_share_split(e->filter, n, &g, &gl, &in, &il) : -1;
        if (n == 0 || n > 65535 || !topic_filter_valid(e->filter, n) || shared < 0 ||
            !mqtt_utf8_valid((const uint8_t *)e->filter, n) || e->options < 0 ||
            e->options > 0x3F || (e->options & 3) == 3 || SUBOPT_RH(e->options) == 3 ||
            (shared == 1 && (e->options & SUBOPT_NO_LOCAL)) || e->sub_id > 268435455u) {
            return -MIDGE_EINVAL;
        }
    } else if (e->kind == MIDGE_ENTRY_MESSAGE) {
        if (e->msg == NULL || e->qos < 0 || e->qos > 2 ||
            e->qos > ((const struct msg *)e->msg)->qos) {
            return -MIDGE_EINVAL;
        }
    } else {
        return -MIDGE_EINVAL;
    }
    r = req_new(self, client_id);
    if (r == NULL) {
        return -MIDGE_ENOMEM;
    }
    r->kind = e->kind;
    r->add_done = done;
    r->arg = arg;
    if (e->kind == MIDGE_ENTRY_SUBSCRIPTION) {
        r->filter = strdup(e->filter);
        if (r->filter == NULL) {
            free(r);
            return -MIDGE_ENOMEM;
        }
        r->options = (uint8_t)e->options;
        r->sub_id = e->sub_id;
    } else {
        r->m = msg_ref((struct msg *)e->msg);
        r->qos = (uint8_t)e->qos;
        r->retain = e->retain ? 1 : 0;
    }
    call_post_home(r->id, r->id_len, add_run, r);
    return 0;
}
