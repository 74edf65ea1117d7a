/*
 * Internal sessions in the fake broker (api->session_open and friends): a
 * record per client id holds the subscriptions, the messages delivered and
 * not acknowledged (the inflight window) and those waiting behind it. The
 * test runs the queued opens (midge_test_run_sessions: `opened` runs on the
 * calling thread, which plays the session's home worker) and delivers
 * messages to the sessions whose subscriptions match
 * (midge_test_isessions_deliver). Not simulated: retained messages on
 * subscribe, taking over a fake client with the same id, expiry timing.
 *
 * A session record stays allocated until the broker is freed, so a call on
 * a closed handle is reported as a plugin bug. Records and queues are
 * protected by fb->lock; callbacks run without it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/* A subscription of an internal session. Owned by the session. */
struct isub {
    char *filter;
    int qos;
    int flags;
    struct isub *next;
};

/* A message for the session: delivered and unacknowledged, or waiting. Owned by the session. */
struct iflight {
    uint32_t id;               /* 0 for QoS 0 (never kept) */
    const midge_message *msg;  /* held (fake_message_hold) */
    int qos;
    int retain;
    struct iflight *next;
};

/* An internal session. Owned by fb->isessions (see above). */
struct midge_session {
    midge_test_broker *fb;
    midge_plugin *plugin;      /* of the last open */
    char *id;
    uint32_t expiry;
    uint16_t window;
    struct midge_session_handlers h;
    void *arg;
    int open;                  /* the plugin holds the handle */
    int ended;                 /* closed with end 1: a later open makes a new record */
    struct isub *subs;
    struct iflight *inflight;  /* delivered, waiting for session_ack, in order */
    struct iflight *waiting;   /* behind a full window or while closed, in order */
    uint32_t next_id;
    struct midge_session *next;
};

/* A queued api->session_open(). Owned by fb's open queue until run. */
struct fake_open {
    midge_plugin *plugin;
    char *id;
    uint32_t expiry;
    uint16_t window;
    struct midge_session_handlers h;
    void *arg;
    struct fake_open *next;
};

static size_t
count_flights(const struct iflight *f)
{
    size_t n = 0;

    for (; f != NULL; f = f->next) {
        n++;
    }
    return n;
}

static void
flights_free(struct iflight **head)
{
    while (*head != NULL) {
        struct iflight *f = *head;
        *head = f->next;
        fake_message_drop(f->msg);
        free(f);
    }
}

static void
subs_free(struct isub **head)
{
    while (*head != NULL) {
        struct isub *x = *head;
        *head = x->next;
        free(x->filter);
        free(x);
    }
}

/* 1 when s is an open handle of its plugin; else records a plugin bug. */
static int
usable(midge_session *s, const char *fn)
{
    int open;

    if (s == NULL) {
        return 0;
    }
    pthread_mutex_lock(&s->fb->lock);
    open = s->open;
    pthread_mutex_unlock(&s->fb->lock);
    if (!open) {
        fake_bug(s->fb, s->plugin, "api->%s() on internal session '%s' after session_close "
                 "(or after the instance was unloaded)", fn, s->id);
    }
    return open;
}

static int
api_session_open(midge_plugin *self, const char *client_id, uint32_t expiry, uint16_t window,
                 const struct midge_session_handlers *h, void *arg)
{
    struct fake_open *o = NULL;
    midge_test_broker *fb;
    size_t n;

    if (self == NULL || client_id == NULL || client_id[0] == '\0' || window == 0 || h == NULL ||
        h->size < sizeof(uint32_t)) {
        return -MIDGE_EINVAL;
    }
    fb = self->fb;
    if ((o = calloc(1, sizeof(*o))) == NULL || (o->id = strdup(client_id)) == NULL) {
        free(o);
        return -MIDGE_ENOMEM;
    }
    /* Only the handlers the plugin's struct has. */
    n = h->size < sizeof(o->h) ? h->size : sizeof(o->h);
    memcpy(&o->h, h, n);
    o->h.size = (uint32_t)n;
    o->plugin = self;
    o->expiry = expiry;
    o->window = window;
    o->arg = arg;
    pthread_mutex_lock(&fb->lock);
    if (fb->opens_tail != NULL) {
        fb->opens_tail->next = o;
    } else {
        fb->opens_head = o;
    }
    fb->opens_tail = o;
    pthread_mutex_unlock(&fb->lock);
    return 0;
}

static int
api_session_subscribe(midge_session *s, const char *filter, int qos, int flags)
{
    struct isub *x;

    if (!usable(s, "session_subscribe")) {
        return -MIDGE_ESTATE;
    }
    if (!fake_filter_ok(filter) || qos < 0 || qos > 2 ||
        (flags & ~(MIDGE_SUB_NO_LOCAL | MIDGE_SUB_RETAIN_AS_PUBLISHED | MIDGE_SUB_NO_RETAINED))) {
        return -MIDGE_EINVAL;
    }
    pthread_mutex_lock(&s->fb->lock);
    for (x = s->subs; x != NULL && strcmp(x->filter, filter) != 0; x = x->next) {
    }
    if (x == NULL && (x = calloc(1, sizeof(*x))) != NULL) {
        if ((x->filter = strdup(filter)) == NULL) {
            free(x);
            x = NULL;
        } else {
            x->next = s->subs;
            s->subs = x;
        }
    }
    if (x != NULL) {
        x->qos = qos;
        x->flags = flags;
    }
    pthread_mutex_unlock(&s->fb->lock);
    return x != NULL ? 0 : -MIDGE_ENOMEM;
}

static int
api_session_unsubscribe(midge_session *s, const char *filter)
{
    struct isub **pp;
    struct isub *x = NULL;

    if (!usable(s, "session_unsubscribe")) {
        return -MIDGE_ESTATE;
    }
    if (filter == NULL) {
        return -MIDGE_EINVAL;
    }
    pthread_mutex_lock(&s->fb->lock);
    for (pp = &s->subs; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->filter, filter) == 0) {
            x = *pp;
            *pp = x->next;
            break;
        }
    }
    pthread_mutex_unlock(&s->fb->lock);
    if (x == NULL) {
        return -MIDGE_ENOENT;
    }
    free(x->filter);
    free(x);
    return 0;
}

static int
api_session_publish(midge_session *s, const char *topic, const void *payload, uint32_t len,
                    int qos, int retain)
{
    if (!usable(s, "session_publish")) {
        return -MIDGE_ESTATE;
    }
    return fake_publish_record(s->plugin, s->id, topic, payload, len, qos, retain);
}

/*
 * ABI 1.1: recorded like session_publish (topic, payload, QoS, RETAIN; the
 * fake broker runs no ACL or message_in hooks here and does not route), then
 * settled at once: done(arg, 0) before returning.
 */
static int
api_session_publish_message(midge_session *s, const midge_message *msg,
                            void (*done)(void *arg, int result), void *arg)
{
    const struct midge_api *api;
    const char *topic;
    const void *payload;
    uint32_t len = 0;
    int rc;

    if (!usable(s, "session_publish_message")) {
        return -MIDGE_ESTATE;
    }
    api = &s->fb->api;
    if (msg == NULL || (topic = midge_test_message_topic(msg)) == NULL ||
        topic[0] == '$') {
        return -MIDGE_EINVAL;
    }
    payload = api->message_payload(msg, &len);
    rc = fake_publish_record(s->plugin, s->id, topic, payload, len, api->message_qos(msg),
                             api->message_retain(msg));
    if (rc == 0 && done != NULL) {
        done(arg, 0);
    }
    return rc;
}

/* ABI 1.1: accepted; the fake broker keeps no released state (no restart to survive). */
static int
api_session_released(midge_session *s, uint32_t id)
{
    (void)id;
    return usable(s, "session_released") ? 0 : -MIDGE_ESTATE;
}

/* Delivers what waits while the window has room, in order. Without fb->lock held. */
static void
pump(midge_session *s)
{
    for (;;) {
        struct iflight *f = NULL;
        struct iflight **tail;
        const midge_message *msg;
        int qos;

        pthread_mutex_lock(&s->fb->lock);
        if (s->open && s->waiting != NULL &&
            (s->waiting->qos == 0 || count_flights(s->inflight) < s->window)) {
            f = s->waiting;
            s->waiting = f->next;
            f->next = NULL;
            if (f->qos > 0) {
                f->id = ++s->next_id != 0 ? s->next_id : ++s->next_id;
                for (tail = &s->inflight; *tail != NULL; tail = &(*tail)->next) {
                }
                *tail = f;
            }
        }
        pthread_mutex_unlock(&s->fb->lock);
        if (f == NULL) {
            break;
        }
        /* The callback may ack (and so free) f: keep what is needed past it. */
        msg = f->msg;
        qos = f->qos;
        if (fake_message_hold(msg) == 0) {
            if (s->h.deliver != NULL) { /* NULL too when the plugin's struct ends before it */
                s->h.deliver(s->arg, s, msg, qos, f->retain, f->id, 0);
            }
            fake_message_drop(msg);
        }
        if (qos == 0) {
            fake_message_drop(msg);
            free(f);
        }
    }
}

static int
api_session_ack(midge_session *s, uint32_t id)
{
    struct iflight **pp;
    struct iflight *f = NULL;

    if (!usable(s, "session_ack")) {
        return -MIDGE_ESTATE;
    }
    pthread_mutex_lock(&s->fb->lock);
    for (pp = &s->inflight; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            f = *pp;
            *pp = f->next;
            break;
        }
    }
    pthread_mutex_unlock(&s->fb->lock);
    if (f == NULL) {
        return -MIDGE_ENOENT;
    }
    fake_message_drop(f->msg);
    free(f);
    pump(s);
    return 0;
}

/* ABI 1.2: the new window; a wider one delivers what waits (the fake has no back-pressure). */
static int
api_session_window(midge_session *s, uint16_t window)
{
    if (!usable(s, "session_window")) {
        return -MIDGE_ESTATE;
    }
    if (window == 0) {
        return -MIDGE_EINVAL;
    }
    pthread_mutex_lock(&s->fb->lock);
    s->window = window;
    pthread_mutex_unlock(&s->fb->lock);
    pump(s);
    return 0;
}

static void
api_session_redeliver(midge_session *s)
{
    struct iflight *f;
    uint32_t *ids = NULL;
    size_t n = 0;
    size_t i;

    if (!usable(s, "session_redeliver")) {
        return;
    }
    /* The ids unacknowledged now: an ack or a new delivery from a callback changes the list. */
    pthread_mutex_lock(&s->fb->lock);
    ids = calloc(count_flights(s->inflight) + 1, sizeof(*ids));
    for (f = s->inflight; f != NULL && ids != NULL; f = f->next) {
        ids[n++] = f->id;
    }
    pthread_mutex_unlock(&s->fb->lock);
    for (i = 0; i < n; i++) {
        const midge_message *msg = NULL;
        int qos = 0;
        int retain = 0;

        pthread_mutex_lock(&s->fb->lock);
        for (f = s->inflight; f != NULL && f->id != ids[i]; f = f->next) {
        }
        if (f != NULL) {
            msg = f->msg;
            qos = f->qos;
            retain = f->retain;
        }
        pthread_mutex_unlock(&s->fb->lock);
        /* Only this (home) thread acks, so the flight's reference keeps msg alive here. */
        if (msg == NULL || fake_message_hold(msg) != 0) {
            continue;
        }
        if (s->h.deliver != NULL) {
            s->h.deliver(s->arg, s, msg, qos, retain, ids[i], 1);
        }
        fake_message_drop(msg);
    }
    free(ids);
}

static void
api_session_close(midge_session *s, int end)
{
    if (!usable(s, "session_close")) {
        return;
    }
    pthread_mutex_lock(&s->fb->lock);
    s->open = 0;
    if (end) {
        s->ended = 1;
    }
    pthread_mutex_unlock(&s->fb->lock);
    if (end) {
        subs_free(&s->subs);
        flights_free(&s->inflight);
        flights_free(&s->waiting);
    }
}

/* ABI 1.2: what waits (topic + payload bytes, as the broker counts them) and what is in flight. */
static int
api_session_stats(midge_session *s, struct midge_session_stats *out)
{
    struct midge_session_stats st;
    const struct iflight *f;
    size_t n;

    if (out == NULL || out->size == 0) {
        return -MIDGE_EINVAL;
    }
    if (!usable(s, "session_stats")) {
        return -MIDGE_ESTATE;
    }
    memset(&st, 0, sizeof(st));
    pthread_mutex_lock(&s->fb->lock);
    for (f = s->waiting; f != NULL; f = f->next) {
        uint32_t len = 0;
        s->fb->api.message_payload(f->msg, &len);
        st.queued++;
        st.queued_bytes += len + strlen(s->fb->api.message_topic(f->msg));
    }
    st.inflight = count_flights(s->inflight);
    pthread_mutex_unlock(&s->fb->lock);
    n = out->size < sizeof(st) ? out->size : sizeof(st);
    st.size = out->size;
    memcpy(out, &st, n);
    return 0;
}

/* The entries of the API table that this file implements. */
void
fake_isessions_api_fill(struct midge_api *a)
{
    a->session_stats = api_session_stats;
    a->session_open = api_session_open;
    a->session_subscribe = api_session_subscribe;
    a->session_unsubscribe = api_session_unsubscribe;
    a->session_publish = api_session_publish;
    a->session_ack = api_session_ack;
    a->session_redeliver = api_session_redeliver;
    a->session_close = api_session_close;
    a->session_publish_message = api_session_publish_message;
    a->session_released = api_session_released;
    a->session_window = api_session_window;
}

/* The live (not ended) record of client_id, with fb->lock held. */
static midge_session *
find_locked(midge_test_broker *fb, const char *client_id)
{
    midge_session *s;

    for (s = fb->isessions; s != NULL; s = s->next) {
        if (!s->ended && strcmp(s->id, client_id) == 0) {
            return s;
        }
    }
    return NULL;
}

/* Runs the queued opens; see plugin_test.h. */
size_t
midge_test_run_sessions(midge_test_broker *fb)
{
    size_t n = 0;

    for (;;) {
        struct fake_open *o;
        midge_session *s;
        int present = 0;
        int taken = 0;

        pthread_mutex_lock(&fb->lock);
        o = fb->opens_head;
        if (o != NULL) {
            fb->opens_head = o->next;
            if (fb->opens_head == NULL) {
                fb->opens_tail = NULL;
            }
        }
        s = o != NULL ? find_locked(fb, o->id) : NULL;
        if (s != NULL && s->open) {
            taken = 1; /* held by another internal session handle */
        } else if (s != NULL) {
            present = 1;
        } else if (o != NULL && (s = calloc(1, sizeof(*s))) != NULL) {
            if ((s->id = strdup(o->id)) == NULL) {
                free(s);
                s = NULL;
            } else {
                s->fb = fb;
                s->next = fb->isessions;
                fb->isessions = s;
            }
        }
        if (s != NULL && !taken) {
            s->plugin = o->plugin;
            s->expiry = o->expiry;
            s->window = o->window;
            s->h = o->h;
            s->arg = o->arg;
            s->open = 1;
        }
        pthread_mutex_unlock(&fb->lock);
        if (o == NULL) {
            break;
        }
        /* Requests of an instance unloaded meanwhile get no callback. */
        if (o->plugin->loaded) {
            if (o->h.opened != NULL) {
                o->h.opened(o->arg, taken ? NULL : s, present);
            }
            n++;
            if (s != NULL && !taken) {
                pump(s); /* what was queued while it was closed */
            }
        } else if (s != NULL && !taken) {
            pthread_mutex_lock(&fb->lock);
            s->open = 0;
            pthread_mutex_unlock(&fb->lock);
        }
        free(o->id);
        free(o);
    }
    return n;
}

/* Delivers msg to the matching internal sessions; see plugin_test.h. */
int
midge_test_isessions_deliver(midge_test_broker *fb, midge_message *msg)
{
    const char *topic = midge_test_message_topic(msg);
    int msg_qos = fb->api.message_qos(msg);
    int msg_retain = fb->api.message_retain(msg);
    midge_session *s;
    int n = 0;

    if (topic == NULL) {
        return -MIDGE_EINVAL;
    }
    for (s = fb->isessions; s != NULL; s = s->next) {
        const struct isub *x;
        struct iflight *f;
        struct iflight **tail;
        int qos = -1;
        int rap = 0;

        pthread_mutex_lock(&fb->lock);
        /* One delivery per session, at the highest QoS of its matching subscriptions. */
        for (x = s->subs; !s->ended && x != NULL; x = x->next) {
            if (fake_topic_match(x->filter, topic) && x->qos > qos) {
                qos = x->qos;
                rap = (x->flags & MIDGE_SUB_RETAIN_AS_PUBLISHED) != 0;
            }
        }
        pthread_mutex_unlock(&fb->lock);
        if (qos < 0 || (f = calloc(1, sizeof(*f))) == NULL) {
            continue;
        }
        if (fake_message_hold(msg) != 0) {
            free(f);
            continue;
        }
        f->msg = msg;
        f->qos = qos < msg_qos ? qos : msg_qos;
        f->retain = rap ? msg_retain : 0;
        pthread_mutex_lock(&fb->lock);
        for (tail = &s->waiting; *tail != NULL; tail = &(*tail)->next) {
        }
        *tail = f;
        pthread_mutex_unlock(&fb->lock);
        pump(s);
        n++;
    }
    return n;
}

/* What the fake broker knows about an internal session; see plugin_test.h. */
int
midge_test_isession(midge_test_broker *fb, const char *client_id, struct midge_test_isession *out)
{
    const midge_session *s;
    const struct isub *x;
    int rc = -MIDGE_ENOENT;

    if (client_id == NULL || out == NULL) {
        return -MIDGE_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&fb->lock);
    s = find_locked(fb, client_id);
    if (s != NULL) {
        out->instance = s->plugin->name;
        out->open = s->open;
        out->expiry = s->expiry;
        out->window = s->window;
        for (x = s->subs; x != NULL; x = x->next) {
            out->subscriptions++;
        }
        out->inflight = count_flights(s->inflight);
        out->waiting = count_flights(s->waiting);
        rc = 0;
    }
    pthread_mutex_unlock(&fb->lock);
    return rc;
}

/* QoS of one subscription of an internal session; see plugin_test.h. */
int
midge_test_isession_subscription(midge_test_broker *fb, const char *client_id,
                                 const char *filter, int *flags)
{
    const midge_session *s;
    const struct isub *x = NULL;
    int rc = -MIDGE_ENOENT;

    pthread_mutex_lock(&fb->lock);
    s = client_id != NULL ? find_locked(fb, client_id) : NULL;
    for (x = s != NULL ? s->subs : NULL; x != NULL && filter != NULL; x = x->next) {
        if (strcmp(x->filter, filter) == 0) {
            rc = x->qos;
            if (flags != NULL) {
                *flags = x->flags;
            }
            break;
        }
    }
    pthread_mutex_unlock(&fb->lock);
    return rc;
}

/* p unloads: its handles close (the sessions stay per their expiry), its opens are dropped. */
void
fake_isessions_unload(midge_plugin *p)
{
    midge_session *s;

    pthread_mutex_lock(&p->fb->lock);
    for (s = p->fb->isessions; s != NULL; s = s->next) {
        if (s->plugin == p) {
            s->open = 0;
        }
    }
    pthread_mutex_unlock(&p->fb->lock);
}

/* Frees every session record and queued open (with the broker). */
void
fake_isessions_free(midge_test_broker *fb)
{
    while (fb->isessions != NULL) {
        midge_session *s = fb->isessions;
        fb->isessions = s->next;
        subs_free(&s->subs);
        flights_free(&s->inflight);
        flights_free(&s->waiting);
        free(s->id);
        free(s);
    }
    while (fb->opens_head != NULL) {
        struct fake_open *o = fb->opens_head;
        fb->opens_head = o->next;
        free(o->id);
        free(o);
    }
    fb->opens_tail = NULL;
}
