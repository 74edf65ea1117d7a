/*
 * Internal sessions (api->session_open): MQTT sessions owned by a plugin,
 * such as a bridge's queue towards another broker.
 *
 * Each is an ordinary struct session on its home worker, attached to a
 * stand-in struct conn (no socket, `sink` set) embedded in the handle, so
 * routing, queues, the inflight window, expiry and persistence work as for
 * any client. Where the session would write a PUBLISH, proto_send_publish()
 * hands the message to the plugin's deliver callback instead; the plugin's
 * session_ack() plays the client's PUBACK/PUBCOMP.
 */
#include "plugin.h"
#include "plugin_isession.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "msg.h"
#include "mqtt.h"
#include "persist.h"
#include "retain.h"
#include "session.h"
#include "subs.h"
#include "topic.h"
#include "worker.h"

/* See plugin_isession.h. */
int
isession_on_home(const midge_session *ms)
{
    return ms != NULL && ms->open && worker_current() == ms->vconn.w;
}

static void
unlink_handle(midge_session *ms)
{
    struct midge_session **pp;

    for (pp = &ms->vconn.w->isessions; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == ms) {
            *pp = ms->next;
            return;
        }
    }
}

/* On the home worker: find or create the session and attach the stand-in connection. */
static void
open_run(void *arg)
{
    midge_session *ms = arg;
    struct worker *w = worker_current();
    struct session *s;
    int present = 0;

    if (w == NULL) {
        free(ms); /* shutdown before it opened */
        return;
    }
    s = session_find(w, ms->id, ms->id_len);
    if (s != NULL && s->conn != NULL && s->conn->sink != NULL) {
        midge_log(MLOG_ERROR, "plugin=%s cannot open internal session %s: it belongs to plugin "
                  "%s", ms->plugin->name, ms->id, s->conn->sink->plugin->name);
        ms->h.opened(ms->arg, NULL, 0);
        free(ms);
        return;
    }
    if (s != NULL && s->conn != NULL) {
        conn_close(s->conn, MQTT_RC_SESSION_TAKEN_OVER, 1, "session taken over by a plugin");
        s = session_find(w, ms->id, ms->id_len);
    }
    if (s != NULL) {
        msg_unref(s->will);
        s->will = NULL;
        s->will_at = 0;
        present = 1;
    } else if ((s = session_new(w, ms->id, ms->id_len)) == NULL) {
        ms->h.opened(ms->arg, NULL, 0);
        free(ms);
        return;
    }
    ms->vconn.w = w;
    ms->vconn.fd = -1;
    ms->vconn.state = CONN_ACTIVE;
    ms->vconn.version = MQTT_V5;
    ms->vconn.recv_max_out = ms->window;
    ms->vconn.client_id = ms->id;
    ms->vconn.sink = ms;
    ms->vconn.session = s;
    s->version = MQTT_V5;
    s->expiry = ms->expiry;
    s->expire_at = 0;
    s->conn = &ms->vconn;
    atomic_store(&s->sub->online, 1);
    if (persist_active) {
        session_persist_update(s, 1);
    }
    ms->open = 1;
    ms->next = w->isessions;
    w->isessions = ms;
    ms->h.opened(ms->arg, ms, present);
    /* After opened(): by this line the plugin's first subscriptions are in place (a close from
     * opened() is only posted, so ms is still ours). */
    midge_log(MLOG_INFO, "plugin=%s opened internal session %s present=%d", ms->plugin->name,
              ms->id, present);
    if (ms->open && present) {
        session_resume(s);
    }
}

int
plugin_session_open(midge_plugin *self, const char *client_id, uint32_t expiry, uint16_t window,
                    const struct midge_session_handlers *h, void *arg)
{
    size_t n = client_id != NULL ? strlen(client_id) : 0;
    midge_session *ms;

    if (n == 0 || n > 65535 || !mqtt_utf8_valid((const uint8_t *)client_id, n) || window == 0 ||
        h == NULL || h->size < offsetof(struct midge_session_handlers, deliver) +
                                   sizeof(h->deliver) ||
        h->opened == NULL || h->deliver == NULL) {
        return -MIDGE_EINVAL;
    }
    ms = calloc(1, sizeof(*ms) + n + 1);
    if (ms == NULL) {
        return -MIDGE_ENOMEM;
    }
    memcpy(ms->id, client_id, n + 1);
    ms->id_len = n;
    ms->plugin = self;
    memcpy(&ms->h, h, sizeof(ms->h) < h->size ? sizeof(ms->h) : h->size);
    ms->arg = arg;
    ms->expiry = expiry;
    ms->window = window;
    call_post_home(ms->id, ms->id_len, open_run, ms);
    return 0;
}

/* proto_send_publish() for the stand-in connection. */
int
plugin_isession_deliver(struct conn *c, const struct qentry *e, uint16_t pid, int dup)
{
    midge_session *ms = c->sink;

    if (!ms->open) {
        return 0; /* closing: kept inflight, delivered again when reopened */
    }
    ms->in_deliver++;
    ms->h.deliver(ms->arg, ms, (const midge_message *)e->msg, e->qos, e->retain, pid, dup);
    ms->in_deliver--;
    return 0;
}

void
plugin_isession_released(struct conn *c, uint16_t pid)
{
    midge_session *ms = c->sink;

    if (!ms->open || ms->h.released == NULL) {
        return; /* kept released in the session until a handler takes it */
    }
    ms->in_deliver++;
    ms->h.released(ms->arg, ms, pid);
    ms->in_deliver--;
}

/*
 * The plugin's destination took a message (its acknowledgement reached the
 * plugin): the stand-in connection made progress, as a client's socket does
 * when a write goes through. This is what makes an internal session count for
 * back-pressure while its plugin drains it (its link is up) and stop counting
 * within a second or two once it does not (link down, remote stalled): see
 * session_press_update. Acknowledgements the plugin gives for messages it
 * drops count too; a plugin dropping everything has an empty queue anyway.
 */
static void
isession_progress(midge_session *ms)
{
    ms->vconn.last_progress = ev_now(ms->vconn.w->loop);
}

int
plugin_session_released(midge_session *ms, uint32_t id)
{
    if (!isession_on_home(ms)) {
        return -MIDGE_ESTATE;
    }
    if (id > 0 && id <= 65535) {
        isession_progress(ms);
        /* As a client's PUBREC (the PUBREL it would send has no wire here). */
        session_ack(ms->vconn.session, MQTT_PUBREC, (uint16_t)id, 0);
    }
    return 0;
}

int
plugin_session_subscribe(midge_session *ms, const char *filter, int qos, int flags)
{
    struct session *s;
    size_t n = filter != NULL ? strlen(filter) : 0;
    const char *g;
    const char *in;
    size_t gl;
    size_t il;
    uint8_t opts;
    int existed = 0;
    int shared;

    if (!isession_on_home(ms)) {
        return -MIDGE_ESTATE;
    }
    s = ms->vconn.session;
    shared = n > 0 ? topic_share_split(filter, n, &g, &gl, &in, &il) : -1;
    if (n == 0 || n > 65535 || !topic_filter_valid(filter, n) || shared < 0 ||
        !mqtt_utf8_valid((const uint8_t *)filter, n) || qos < 0 || qos > 2 ||
        (shared == 1 && (flags & MIDGE_SUB_NO_LOCAL))) {
        return -MIDGE_EINVAL;
    }
    opts = (uint8_t)(qos | ((flags & MIDGE_SUB_NO_LOCAL) ? SUBOPT_NO_LOCAL : 0) |
                     ((flags & MIDGE_SUB_RETAIN_AS_PUBLISHED) ? SUBOPT_RAP : 0) |
                     ((flags & MIDGE_SUB_NO_RETAINED) ? (2 << 4) : 0));
    if (subs_add(filter, n, s->sub, opts, 0, &existed) < 0) {
        return -MIDGE_ENOMEM;
    }
    if (session_sub_add(s, filter, n, opts, 0) < 0) {
        subs_remove(filter, n, s->sub);
        return -MIDGE_ENOMEM;
    }
    if (shared == 0 && !(flags & MIDGE_SUB_NO_RETAINED)) {
        struct msg **msgs = NULL;
        size_t k;
        size_t count = 0;
        if (retain_match(filter, n, ev_now(ms->vconn.w->loop), &msgs, &count) == 0) {
            for (k = 0; k < count; k++) {
                uint8_t q = msgs[k]->qos < qos ? msgs[k]->qos : (uint8_t)qos;
                if (ms->open) {
                    session_deliver(s, msgs[k], q, 1, 0, NULL, 0);
                }
                msg_unref(msgs[k]);
            }
            free(msgs);
        }
    }
    return 0;
}

int
plugin_session_unsubscribe(midge_session *ms, const char *filter)
{
    struct session *s;
    size_t n = filter != NULL ? strlen(filter) : 0;

    if (!isession_on_home(ms)) {
        return -MIDGE_ESTATE;
    }
    s = ms->vconn.session;
    if (n == 0 || !topic_filter_valid(filter, n)) {
        return -MIDGE_EINVAL;
    }
    session_sub_remove(s, filter, n);
    return subs_remove(filter, n, s->sub) ? 0 : -MIDGE_ENOENT;
}

int
plugin_session_publish(midge_session *ms, const char *topic, const void *payload, uint32_t len,
                       int qos, int retain)
{
    size_t tl = topic ? strlen(topic) : 0;
    struct msg *m;

    if (!isession_on_home(ms)) {
        return -MIDGE_ESTATE;
    }
    if (tl == 0 || tl > 65535 || !topic_name_valid(topic, tl) ||
        !mqtt_utf8_valid((const uint8_t *)topic, tl) || qos < 0 || qos > 2 ||
        (payload == NULL && len > 0) || topic[0] == '$') {
        return -MIDGE_EINVAL;
    }
    m = msg_new(topic, tl, payload, len, (uint8_t)qos, retain ? 1 : 0, NULL,
                ev_now(ms->vconn.w->loop));
    if (m == NULL) {
        return -MIDGE_ENOMEM;
    }
    m->origin_session = ms->vconn.session->uid;
    broker_publish(m, m->origin_session);
    msg_unref(m);
    return 0;
}

/* An ack given inside deliver: the message becomes inflight only after deliver returns. */
struct late_ack {
    midge_session *ms;
    uint16_t id;
};

static void
late_ack_run(void *arg)
{
    struct late_ack *la = arg;

    if (worker_current() != NULL && la->ms->open) {
        session_release(la->ms->vconn.session, la->id);
    }
    free(la);
}

int
plugin_session_ack(midge_session *ms, uint32_t id)
{
    if (!isession_on_home(ms)) {
        return -MIDGE_ESTATE;
    }
    if (id == 0 || id > 65535) {
        return -MIDGE_ENOENT;
    }
    isession_progress(ms);
    if (session_release(ms->vconn.session, (uint16_t)id) == 0) {
        return 0;
    }
    if (ms->in_deliver) {
        struct late_ack *la = malloc(sizeof(*la));
        if (la == NULL) {
            return -MIDGE_ENOMEM;
        }
        la->ms = ms;
        la->id = (uint16_t)id;
        /* Runs before any close_run posted later: the worker's calls run in order. */
        call_post(ms->vconn.w->id, late_ack_run, la);
        return 0;
    }
    return -MIDGE_ENOENT;
}

/* A wider window: delivers what waits in the queue, outside the caller. */
static void
window_pump_run(void *arg)
{
    midge_session *ms = arg;

    if (worker_current() != NULL && ms->open) {
        session_pump(ms->vconn.session);
    }
}

int
plugin_session_window(midge_session *ms, uint16_t window)
{
    uint16_t was;

    if (!isession_on_home(ms)) {
        return -MIDGE_ESTATE;
    }
    if (window == 0) {
        return -MIDGE_EINVAL;
    }
    /* Open: the window in force is the connection's (ms->window only seeds it at open). */
    was = ms->vconn.recv_max_out;
    ms->vconn.recv_max_out = window;
    if (window > was) {
        /* Posted, not run here: the caller may be inside deliver, i.e. inside session_pump.
         * Runs before any close_run posted later: the worker's calls run in order. */
        call_post(ms->vconn.w->id, window_pump_run, ms);
    }
    return 0;
}

void
plugin_session_redeliver(midge_session *ms)
{
    if (isession_on_home(ms)) {
        session_resume(ms->vconn.session);
    }
}

/*
 * The rest of session_close, run as a call so that session code that
 * delivered to the plugin (and may be its caller) has finished first.
 */
static void
close_run(void *arg)
{
    midge_session *ms = arg;
    struct session *s = ms->vconn.session;

    isession_pub_abandon(ms);
    if (worker_current() != NULL && s != NULL) {
        s->conn = NULL;
        ms->vconn.session = NULL;
        if (ms->end) {
            session_destroy(s);
        } else {
            session_detach(s, 0);
        }
        midge_log(MLOG_INFO, "plugin=%s closed internal session %s%s", ms->plugin->name, ms->id,
                  ms->end ? " (ended)" : "");
    }
    free(ms);
}

void
plugin_session_close(midge_session *ms, int end)
{
    if (!isession_on_home(ms)) {
        if (ms != NULL) {
            midge_log(MLOG_ERROR, "plugin bug plugin=%s: session_close off the session's home "
                      "worker or twice: ignored", ms->plugin->name);
        }
        return;
    }
    ms->open = 0;
    ms->end = end;
    unlink_handle(ms);
    call_post(ms->vconn.w->id, close_run, ms);
}

void
plugin_isessions_free(struct worker *w)
{
    while (w->isessions != NULL) {
        midge_session *ms = w->isessions;
        w->isessions = ms->next;
        isession_pub_abandon(ms);
        if (ms->vconn.session != NULL) {
            ms->vconn.session->conn = NULL;
        }
        free(ms);
    }
}
