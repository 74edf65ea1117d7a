/*
 * Persistence, broker side; see persist.h and DESIGN.md section 5.
 *
 * Every durable change is one event with a process-wide sequence number,
 * handed to the plugin under `emit_lock` so the plugin sees them in seq
 * order. A packet whose handling emitted events (a QoS 1/2 PUBLISH routed to
 * persistent sessions, a SUBSCRIBE of a persistent session, ...) has its
 * acknowledgement held on its connection until the plugin reports that seq
 * durable; later acknowledgements queue behind it, so acks stay in order.
 */
#include "persist.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "msg.h"
#include "mqtt.h"
#include "plugin.h"
#include "proto.h"
#include "retain.h"
#include "session.h"
#include "subs.h"
#include "topic.h"
#include "worker.h"

int persist_active;
int persist_holds_possible;
static struct midge_plugin *pplugin;
static _Atomic(struct midge_plugin *) hold_plugin; /* the instance that holds acks (api->ack_hold) */
static atomic_uint_fast64_t released_seq;           /* its api->ack_release mark */

static pthread_mutex_t emit_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t emit_seq;               /* Protected by emit_lock */
static atomic_uint_fast64_t durable_seq; /* highest seq the plugin reported durable */
static atomic_int failing;
static atomic_int restoring;            /* restore running: state changes are not events */
static atomic_uint_fast64_t next_delivery;
static __thread uint64_t thread_seq;

void
persist_set_plugin(struct midge_plugin *p)
{
    pplugin = p;
    persist_active = p != NULL;
}

static void
emit(struct midge_persist_event *ev)
{
    if (atomic_load_explicit(&restoring, memory_order_relaxed)) {
        return;
    }
    ev->size = sizeof(*ev);
    pthread_mutex_lock(&emit_lock);
    ev->seq = ++emit_seq;
    pplugin->hooks->persist(pplugin->state, ev);
    pthread_mutex_unlock(&emit_lock);
    thread_seq = ev->seq;
}

uint64_t
persist_thread_mark(void)
{
    return thread_seq;
}

void
persist_session(const struct session *s, int connected)
{
    struct midge_persist_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = MIDGE_P_SESSION;
    ev.client_id = s->client_id;
    ev.expiry = s->expiry;
    ev.connected = connected;
    ev.protocol = s->version;
    emit(&ev);
}

void
persist_session_end(const struct session *s)
{
    struct midge_persist_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = MIDGE_P_SESSION_END;
    ev.client_id = s->client_id;
    emit(&ev);
}

void
persist_sub(const struct session *s, const char *filter, size_t len, uint8_t opts,
            uint32_t sub_id, int add)
{
    struct midge_persist_event ev;
    char buf[256];
    char *f = len < sizeof(buf) ? buf : malloc(len + 1);

    if (f == NULL) {
        midge_log(MLOG_ERROR, "persistence: out of memory: subscription of %s not stored",
                  s->client_id);
        return;
    }
    memcpy(f, filter, len);
    f[len] = 0;
    memset(&ev, 0, sizeof(ev));
    ev.type = add ? MIDGE_P_SUB_ADD : MIDGE_P_SUB_REMOVE;
    ev.client_id = s->client_id;
    ev.filter = f;
    ev.options = opts;
    ev.sub_id = sub_id;
    emit(&ev);
    if (f != buf) {
        free(f);
    }
}

uint64_t
persist_queued(const char *client_id, struct msg *m, int qos, int retain)
{
    struct midge_persist_event ev;
    uint64_t id = atomic_fetch_add_explicit(&next_delivery, 1, memory_order_relaxed) + 1;

    memset(&ev, 0, sizeof(ev));
    ev.type = MIDGE_P_MSG_QUEUED;
    ev.client_id = client_id;
    ev.msg = (const midge_message *)m;
    ev.msg_id = msg_id(m);
    ev.delivery_id = id;
    ev.qos = qos;
    ev.retain = retain;
    emit(&ev);
    return id;
}

void
persist_delivery(int type, const char *client_id, uint64_t delivery_id, uint16_t pid)
{
    struct midge_persist_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.client_id = client_id;
    ev.delivery_id = delivery_id;
    ev.packet_id = pid;
    emit(&ev);
}

void
persist_qos2_in(const struct session *s, uint16_t pid, int marked)
{
    struct midge_persist_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = marked ? MIDGE_P_QOS2_IN : MIDGE_P_QOS2_IN_DONE;
    ev.client_id = s->client_id;
    ev.packet_id = pid;
    emit(&ev);
}

void
persist_will(const struct session *s)
{
    struct midge_persist_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = s->will != NULL ? MIDGE_P_WILL_SET : MIDGE_P_WILL_CLEAR;
    ev.client_id = s->client_id;
    if (s->will != NULL) {
        ev.msg = (const midge_message *)s->will;
        ev.msg_id = msg_id(s->will);
        ev.expiry = s->will_delay;
    }
    emit(&ev);
}

void
persist_retained(struct msg *m)
{
    struct midge_persist_event ev;

    if (m->topic[0] == '$') {
        return; /* $SYS is the broker's own, published again after a restart */
    }
    memset(&ev, 0, sizeof(ev));
    if (m->payload_len > 0) {
        ev.type = MIDGE_P_RETAIN_SET;
        ev.msg = (const midge_message *)m;
        ev.msg_id = msg_id(m);
    } else {
        ev.type = MIDGE_P_RETAIN_CLEAR;
        ev.filter = m->topic;
    }
    emit(&ev);
}

int
persist_refusing(void)
{
    return persist_active && atomic_load_explicit(&failing, memory_order_relaxed);
}

/* ---- held acknowledgements ---- */

/* One thing a connection sends only once `need` is durable. Owned by the connection's ring. */
struct held {
    uint64_t need;
    uint64_t hold;   /* api->ack_hold seq, 0 none */
    void (*fn)(struct conn *c, void *arg); /* NULL: an ack */
    void (*free_fn)(void *arg);
    void *arg;
    uint8_t type;
    uint8_t rc;
    uint16_t pid;
};

/* A connection's held items, in order. Owned by the connection. */
struct held_ring {
    struct held *v;
    uint32_t head;
    uint32_t n;
    uint32_t cap;
    struct conn *next;  /* worker's list of holding connections */
    struct conn **prevp;
};

int
persist_conn_holding(const struct conn *c)
{
    return c->held != NULL && c->held->n > 0;
}

static int
durable(uint64_t need)
{
    return need <= atomic_load_explicit(&durable_seq, memory_order_acquire);
}

static int
released(uint64_t hold)
{
    return hold <= atomic_load_explicit(&released_seq, memory_order_acquire);
}

static int
hold(struct conn *c, const struct held *h)
{
    struct held_ring *r = c->held;

    if (r == NULL) {
        r = c->held = calloc(1, sizeof(*r));
        if (r == NULL) {
            return -1;
        }
    }
    if (r->n == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 8;
        struct held *v = malloc(cap * sizeof(*v));
        uint32_t i;
        if (v == NULL) {
            return -1;
        }
        for (i = 0; i < r->n; i++) {
            v[i] = r->v[(r->head + i) % r->cap];
        }
        free(r->v);
        r->v = v;
        r->head = 0;
        r->cap = cap;
    }
    r->v[(r->head + r->n) % r->cap] = *h;
    r->n++;
    if (r->prevp == NULL) {
        /* On the worker's list, so a durable report reaches it. */
        r->next = c->w->held_conns;
        if (r->next != NULL) {
            r->next->held->prevp = &r->next;
        }
        c->w->held_conns = c;
        r->prevp = &c->w->held_conns;
    }
    return 0;
}

static void
unlist(struct conn *c)
{
    struct held_ring *r = c->held;

    if (r == NULL || r->prevp == NULL) {
        return;
    }
    *r->prevp = r->next;
    if (r->next != NULL) {
        r->next->held->prevp = r->prevp;
    }
    r->next = NULL;
    r->prevp = NULL;
}

int
persist_send_ack_slow(struct conn *c, int type, uint16_t pid, uint8_t rc, uint64_t need)
{
    return persist_send_ack_held(c, type, pid, rc, need, 0);
}

int
persist_send_ack_held(struct conn *c, int type, uint16_t pid, uint8_t rc, uint64_t need,
                      uint64_t ack_hold)
{
    struct held h;

    if ((need == 0 || durable(need)) && (ack_hold == 0 || released(ack_hold)) &&
        !persist_conn_holding(c)) {
        return proto_send_ack(c, type, pid, rc);
    }
    memset(&h, 0, sizeof(h));
    h.need = need;
    h.hold = ack_hold;
    h.type = (uint8_t)type;
    h.rc = rc;
    h.pid = pid;
    return hold(c, &h);
}

int
persist_after(struct conn *c, uint64_t need, void (*fn)(struct conn *c, void *arg),
              void (*free_fn)(void *arg), void *arg)
{
    struct held h;

    if ((need == 0 || durable(need)) && !persist_conn_holding(c)) {
        fn(c, arg);
        return 0;
    }
    memset(&h, 0, sizeof(h));
    h.need = need;
    h.fn = fn;
    h.free_fn = free_fn;
    h.arg = arg;
    return hold(c, &h);
}

/* Sends what became durable on one connection. */
static void
release(struct conn *c)
{
    struct held_ring *r = c->held;

    while (r->n > 0 && c->state != CONN_CLOSED) {
        struct held h = r->v[r->head];
        if (!durable(h.need) || !released(h.hold)) {
            return;
        }
        r->head = (r->head + 1) % r->cap;
        r->n--;
        if (h.fn != NULL) {
            h.fn(c, h.arg);
        } else if (proto_send_ack(c, h.type, h.pid, h.rc) < 0) {
            conn_close(c, MQTT_RC_SERVER_BUSY, 1, "out of memory");
        }
    }
    if (r->n == 0) {
        unlist(c);
    }
}

/* On each worker after the durable mark moved. */
static void
release_run(void *arg)
{
    struct worker *w = worker_current();
    struct conn *c;

    (void)arg;
    if (w == NULL) {
        return;
    }
    atomic_store(&w->held_wake, 0);
    c = w->held_conns;
    while (c != NULL) {
        struct conn *next = c->held->next;
        release(c);
        c = next;
    }
}

void
persist_conn_free(struct conn *c)
{
    struct held_ring *r = c->held;
    uint32_t i;

    if (r == NULL) {
        return;
    }
    unlist(c);
    for (i = 0; i < r->n; i++) {
        struct held *h = &r->v[(r->head + i) % r->cap];
        if (h->fn != NULL && h->free_fn != NULL) {
            h->free_fn(h->arg);
        }
    }
    free(r->v);
    free(r);
    c->held = NULL;
}

/* A mark moved: every worker looks at its holding connections. */
static void
wake_holders(void)
{
    unsigned i;
    unsigned n;

    n = workers_ready_count();
    for (i = 0; i < n; i++) {
        struct worker *w = broker.workers[i];
        if (atomic_exchange(&w->held_wake, 1) == 0) {
            call_post(i, release_run, NULL);
        }
    }
}

void
persist_durable(midge_plugin *self, uint64_t seq)
{
    uint_fast64_t cur = atomic_load(&durable_seq);

    (void)self;
    while (cur < seq && !atomic_compare_exchange_weak(&durable_seq, &cur, seq)) {
    }
    if (cur < seq) {
        wake_holders();
    }
}

int
persist_ack_hold(midge_plugin *self, midge_client *client, uint64_t seq)
{
    struct midge_plugin *none = NULL;
    struct conn *c = (struct conn *)client;

    if (seq == 0 || c == NULL) {
        return -MIDGE_EINVAL;
    }
    if (!atomic_compare_exchange_strong(&hold_plugin, &none, self) && none != self) {
        return -MIDGE_ESTATE;
    }
    c->ack_hold = seq;
    return 0;
}

void
persist_ack_release(midge_plugin *self, uint64_t seq)
{
    uint_fast64_t cur = atomic_load(&released_seq);
    struct midge_plugin *none = NULL;

    /* A release may come before the first hold was registered: it names the holder too. */
    if (!atomic_compare_exchange_strong(&hold_plugin, &none, self) && none != self) {
        return;
    }
    while (cur < seq && !atomic_compare_exchange_weak(&released_seq, &cur, seq)) {
    }
    if (cur < seq) {
        wake_holders();
    }
}

void
persist_failing(midge_plugin *self, int on)
{
    int was = atomic_exchange(&failing, on ? 1 : 0);

    if (was != (on ? 1 : 0)) {
        if (on) {
            midge_log(MLOG_ERROR, "persistence: plugin=%s reports failing storage: QoS 1/2 "
                      "publishes are refused until it recovers", self->name);
        } else {
            midge_log(MLOG_NOTICE, "persistence: plugin=%s storage works again", self->name);
        }
    }
}

/* ---- restore ---- */

enum restore_kind { R_SESSION, R_SUB, R_MSG, R_QOS2, R_WILL };

/* One restored item on its way to the session's home worker. Owned by the call. */
struct restore_item {
    int kind;
    char *filter;
    struct msg *m;          /* one reference */
    uint64_t delivery_id;
    uint32_t expiry;
    uint32_t expires_in;
    uint32_t sub_id;
    int protocol;
    int options;
    int qos;
    int retain;
    int state;
    uint16_t pid;
    size_t id_len;
    char client_id[];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t pending;   /* Protected by lock: items not yet applied */
    size_t skipped;   /* Protected by lock */
    size_t applied;   /* Protected by lock */
} rst = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

static void
restore_done(int ok)
{
    pthread_mutex_lock(&rst.lock);
    if (ok) {
        rst.applied++;
    } else {
        rst.skipped++;
    }
    if (--rst.pending == 0) {
        pthread_cond_broadcast(&rst.cond);
    }
    pthread_mutex_unlock(&rst.lock);
}

static int
apply(struct worker *w, struct restore_item *it)
{
    struct session *s = session_find(w, it->client_id, it->id_len);
    double now = ev_now(w->loop);

    if (it->kind == R_SESSION) {
        if (s == NULL && (s = session_new(w, it->client_id, it->id_len)) == NULL) {
            return 0;
        }
        s->version = (uint8_t)it->protocol;
        s->expiry = it->expiry;
        s->expire_at = it->expiry == UINT32_MAX || it->expires_in == UINT32_MAX
                           ? 0
                           : now + it->expires_in;
        s->persist = 1;
        atomic_store(&s->sub->persistent, 1);
        return 1;
    }
    if (s == NULL) {
        return 0; /* stored state of a session that is not there */
    }
    switch (it->kind) {
    case R_SUB: {
        int existed = 0;
        size_t n = strlen(it->filter);
        if (subs_add(it->filter, n, s->sub, (uint8_t)it->options, it->sub_id, &existed) < 0) {
            return 0;
        }
        return session_sub_add(s, it->filter, n, (uint8_t)it->options, it->sub_id) == 0;
    }
    case R_MSG:
        return session_restore_delivery(s, it->m, (uint8_t)it->qos, (uint8_t)it->retain,
                                        it->delivery_id, it->state, it->pid) == 0;
    case R_QOS2:
        return session_qos2_mark(s, it->pid) >= 0;
    case R_WILL:
        msg_unref(s->will);
        s->will = msg_ref(it->m);
        s->will_delay = it->expiry;
        s->will_at = now + it->expiry;
        return 1;
    default:
        return 0;
    }
}

static void
restore_run(void *arg)
{
    struct restore_item *it = arg;
    struct worker *w = worker_current();

    restore_done(w != NULL && apply(w, it));
    msg_unref(it->m);
    free(it->filter);
    free(it);
}

static int
post(int kind, const char *client_id, struct restore_item **out)
{
    size_t n = client_id != NULL ? strlen(client_id) : 0;
    struct restore_item *it;

    if (n == 0 || n > 65535 || !atomic_load(&restoring)) {
        return -MIDGE_EINVAL;
    }
    it = calloc(1, sizeof(*it) + n + 1);
    if (it == NULL) {
        return -MIDGE_ENOMEM;
    }
    it->kind = kind;
    memcpy(it->client_id, client_id, n + 1);
    it->id_len = n;
    *out = it;
    return 0;
}

static void
send_item(struct restore_item *it)
{
    pthread_mutex_lock(&rst.lock);
    rst.pending++;
    pthread_mutex_unlock(&rst.lock);
    call_post_home(it->client_id, it->id_len, restore_run, it);
}

static void
floor_delivery(uint64_t id)
{
    uint_fast64_t cur = atomic_load(&next_delivery);

    while (cur < id && !atomic_compare_exchange_weak(&next_delivery, &cur, id)) {
    }
}

int
persist_restore_session(midge_plugin *self, const char *client_id, uint32_t expiry, int protocol,
                        uint32_t expires_in)
{
    struct restore_item *it;
    int r;

    (void)self;
    if (protocol < 3 || protocol > 5 || expiry == 0) {
        return -MIDGE_EINVAL;
    }
    if ((r = post(R_SESSION, client_id, &it)) != 0) {
        return r;
    }
    it->expiry = expiry;
    it->protocol = protocol;
    it->expires_in = expires_in;
    send_item(it);
    return 0;
}

int
persist_restore_subscription(midge_plugin *self, const char *client_id, const char *filter,
                             int options, uint32_t sub_id)
{
    struct restore_item *it;
    size_t n = filter != NULL ? strlen(filter) : 0;
    int r;

    (void)self;
    if (n == 0 || n > 65535 || !topic_filter_valid(filter, n) || (options & 3) == 3 ||
        options < 0 || options > 0x3F) {
        return -MIDGE_EINVAL;
    }
    if ((r = post(R_SUB, client_id, &it)) != 0) {
        return r;
    }
    it->filter = strdup(filter);
    if (it->filter == NULL) {
        free(it);
        return -MIDGE_ENOMEM;
    }
    it->options = options;
    it->sub_id = sub_id;
    send_item(it);
    return 0;
}

int
persist_restore_retained(midge_plugin *self, const midge_message *msg)
{
    struct msg *m = (struct msg *)msg;

    (void)self;
    if (m == NULL || !atomic_load(&restoring) || m->payload_len == 0) {
        return -MIDGE_EINVAL;
    }
    msg_id_floor(msg_id(m));
    if (retain_set(m) != 0) {
        return -MIDGE_ENOMEM;
    }
    pthread_mutex_lock(&rst.lock);
    rst.applied++;
    pthread_mutex_unlock(&rst.lock);
    return 0;
}

int
persist_restore_message(midge_plugin *self, const char *client_id, uint64_t delivery_id,
                        const midge_message *msg, int qos, int retain, int state,
                        uint16_t packet_id)
{
    struct restore_item *it;
    int r;

    (void)self;
    if (msg == NULL || delivery_id == 0 || qos < 1 || qos > 2 || state < MIDGE_DELIVERY_QUEUED ||
        state > MIDGE_DELIVERY_RELEASED || (state == MIDGE_DELIVERY_RELEASED && qos != 2) ||
        (state != MIDGE_DELIVERY_QUEUED && packet_id == 0)) {
        return -MIDGE_EINVAL;
    }
    if ((r = post(R_MSG, client_id, &it)) != 0) {
        return r;
    }
    it->m = msg_ref((struct msg *)msg);
    msg_id_floor(msg_id(it->m));
    floor_delivery(delivery_id);
    it->delivery_id = delivery_id;
    it->qos = qos;
    it->retain = retain ? 1 : 0;
    it->state = state;
    it->pid = packet_id;
    send_item(it);
    return 0;
}

int
persist_restore_qos2_in(midge_plugin *self, const char *client_id, uint16_t packet_id)
{
    struct restore_item *it;
    int r;

    (void)self;
    if (packet_id == 0) {
        return -MIDGE_EINVAL;
    }
    if ((r = post(R_QOS2, client_id, &it)) != 0) {
        return r;
    }
    it->pid = packet_id;
    send_item(it);
    return 0;
}

int
persist_restore_will(midge_plugin *self, const char *client_id, const midge_message *will,
                     uint32_t delay)
{
    struct restore_item *it;
    int r;

    (void)self;
    if (will == NULL) {
        return -MIDGE_EINVAL;
    }
    if ((r = post(R_WILL, client_id, &it)) != 0) {
        return r;
    }
    it->m = msg_ref((struct msg *)will);
    msg_id_floor(msg_id(it->m));
    it->expiry = delay;
    send_item(it);
    return 0;
}

int
persist_restore(char *err, size_t errlen)
{
    struct midge_plugin *p = pplugin;
    double t0;
    int r;

    if (p == NULL || !PLUGIN_HAS(p, restore)) {
        return 0;
    }
    t0 = ev_time();
    atomic_store(&restoring, 1);
    p->err[0] = 0;
    r = p->hooks->restore(p->state);
    pthread_mutex_lock(&rst.lock);
    while (rst.pending > 0) {
        pthread_cond_wait(&rst.cond, &rst.lock);
    }
    pthread_mutex_unlock(&rst.lock);
    atomic_store(&restoring, 0);
    if (r != 0) {
        snprintf(err, errlen, "%s:%d: plugin '%s': restore failed: %s", p->conf->file,
                 p->conf->line, p->name, p->err[0] ? p->err : "no reason given");
        return -1;
    }
    midge_log(MLOG_NOTICE, "persistence: plugin=%s restored %zu items (%zu skipped) in %.3f s",
              p->name, rst.applied, rst.skipped, ev_time() - t0);
    return 0;
}
