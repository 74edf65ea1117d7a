/*
 * Sessions on their home worker: tables by client id and uid, delivery with
 * inflight windows and bounded queues, acknowledgements, wills, expiry.
 * Everything here runs on the session's worker thread.
 */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "hash.h"
#include "msg.h"
#include "persist.h"
#include "plugin.h"
#include "proto.h"
#include "retain.h"
#include "subs.h"
#include "worker.h"

/* A worker's sessions. Owned by the worker; owns every session in it. */
struct sessions {
    struct session **by_id;
    struct session **by_uid;
    size_t nbuckets; /* power of two, same for both tables */
    size_t count;
    struct session *all;
};

static uint64_t
hash_uid(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* Creates an empty table. */
struct sessions *
sessions_new(void)
{
    struct sessions *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return NULL;
    }
    t->nbuckets = 256;
    t->by_id = calloc(t->nbuckets, sizeof(*t->by_id));
    t->by_uid = calloc(t->nbuckets, sizeof(*t->by_uid));
    if (t->by_id == NULL || t->by_uid == NULL) {
        free(t->by_id);
        free(t->by_uid);
        free(t);
        return NULL;
    }
    return t;
}

static void
table_grow(struct sessions *t)
{
    size_t n = t->nbuckets * 2;
    struct session **a = calloc(n, sizeof(*a));
    struct session **b = calloc(n, sizeof(*b));
    struct session *s;

    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return;
    }
    for (s = t->all; s != NULL; s = s->all_next) {
        size_t i = hash_bytes(s->client_id, s->client_id_len) & (n - 1);
        size_t j = hash_uid(s->uid) & (n - 1);
        s->next_id = a[i];
        a[i] = s;
        s->next_uid = b[j];
        b[j] = s;
    }
    free(t->by_id);
    free(t->by_uid);
    t->by_id = a;
    t->by_uid = b;
    t->nbuckets = n;
}

/* Finds a session by client id on worker w. */
struct session *
sessions_all(struct worker *w)
{
    return w->sessions->all;
}

struct session *
session_find(struct worker *w, const char *id, size_t len)
{
    struct sessions *t = w->sessions;
    struct session *s = t->by_id[hash_bytes(id, len) & (t->nbuckets - 1)];

    for (; s != NULL; s = s->next_id) {
        if (s->client_id_len == len && memcmp(s->client_id, id, len) == 0) {
            return s;
        }
    }
    return NULL;
}

/* Finds a session by uid on worker w (deliveries). */
struct session *
session_find_uid(struct worker *w, uint64_t uid)
{
    struct sessions *t = w->sessions;
    struct session *s = t->by_uid[hash_uid(uid) & (t->nbuckets - 1)];

    for (; s != NULL; s = s->next_uid) {
        if (s->uid == uid) {
            return s;
        }
    }
    return NULL;
}

/* Creates a session with client id `id` on worker w. */
struct session *
session_new(struct worker *w, const char *id, size_t len)
{
    struct sessions *t = w->sessions;
    struct session *s = calloc(1, sizeof(*s) + len + 1);
    size_t i;

    if (s == NULL) {
        return NULL;
    }
    s->uid = broker_uid();
    s->sub = subscriber_new(s->uid, w->id, id, len);
    if (s->sub == NULL) {
        free(s);
        return NULL;
    }
    memcpy(s->client_id, id, len);
    s->client_id[len] = 0;
    s->client_id_len = (uint16_t)len;
    s->w = w;
    if (t->count >= t->nbuckets) {
        table_grow(t);
    }
    i = hash_bytes(id, len) & (t->nbuckets - 1);
    s->next_id = t->by_id[i];
    t->by_id[i] = s;
    i = hash_uid(s->uid) & (t->nbuckets - 1);
    s->next_uid = t->by_uid[i];
    t->by_uid[i] = s;
    s->all_next = t->all;
    if (t->all != NULL) {
        t->all->all_prev = s;
    }
    t->all = s;
    t->count++;
    STAT_ADD(&w->stats, sessions, 1);
    if (plugins_session_events_active) {
        plugin_session_event(s->client_id, 1);
    }
    return s;
}

static struct qentry *
ring_at(struct qring *r, uint32_t i)
{
    return &r->v[(r->head + i) & (r->cap - 1)];
}

static int
ring_push(struct qring *r, const struct qentry *e)
{
    if (r->count == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 8;
        struct qentry *v = malloc(cap * sizeof(*v));
        uint32_t i;
        if (v == NULL) {
            return -1;
        }
        for (i = 0; i < r->count; i++) {
            v[i] = *ring_at(r, i);
        }
        free(r->v);
        r->v = v;
        r->head = 0;
        r->cap = cap;
    }
    *ring_at(r, r->count) = *e;
    r->count++;
    return 0;
}

static void
ring_pop(struct qring *r)
{
    r->head = (r->head + 1) & (r->cap - 1);
    r->count--;
    if (r->count == 0) {
        /* An idle session gives its ring back. */
        free(r->v);
        r->v = NULL;
        r->cap = 0;
        r->head = 0;
    }
}

static void
entry_release(struct qentry *e)
{
    msg_unref(e->msg);
    free(e->more_ids);
    e->msg = NULL;
    e->more_ids = NULL;
}

/* A persisted delivery is finished (acknowledged, dropped, expired): tell persistence. */
static void
delivery_done(struct session *s, const struct qentry *e)
{
    if (e->delivery_id != 0 && s->persist) {
        persist_delivery(MIDGE_P_MSG_DONE, s->client_id, e->delivery_id, 0);
    }
}

static void
ring_clear(struct qring *r)
{
    uint32_t i;

    for (i = 0; i < r->count; i++) {
        struct qentry *e = ring_at(r, i);
        if (e->state != QS_DONE) {
            entry_release(e);
        }
    }
    free(r->v);
    memset(r, 0, sizeof(*r));
}

static uint16_t
pid_of(uint32_t seq)
{
    return (uint16_t)(seq % 65535u + 1u);
}

/* Counts and (at most once a second per session) logs a dropped message. */
/* A PUBLISH of `qos` carrying m went out. */
static void
count_sent(struct session *s, int qos, const struct msg *m)
{
    STAT_ADD(&s->w->stats, pub_sent[qos], 1);
    STAT_ADD(&s->w->stats, pub_bytes_sent[qos], m->payload_len);
}

static void
drop(struct session *s, int reason, const char *why)
{
    double now = ev_now(s->w->loop);

    s->dropped++;
    STAT_ADD(&s->w->stats, pub_dropped[reason], 1);
    if (now - s->drop_log_at >= 1.0) {
        midge_log(MLOG_WARNING, "messages dropped client=%s count=%llu total=%llu reason=\"%s\"",
                  s->client_id, (unsigned long long)(s->dropped - s->dropped_logged),
                  (unsigned long long)s->dropped, why);
        s->dropped_logged = s->dropped;
        s->drop_log_at = now;
    }
}

/* A PUBLISH proto_send_publish() did not send: ACL denials are not drops. */
static void
not_sent(struct session *s, int r)
{
    if (r == 1) {
        drop(s, DROP_TOO_LARGE, "exceeds client maximum packet size");
    } else if (r < 0) {
        drop(s, DROP_NO_MEMORY, "out of memory");
    }
}

/* Outbound window: the client's Receive Maximum (v5) or max_inflight_messages (v3). */
static int
can_send(struct session *s)
{
    struct conn *c = s->conn;
    uint32_t window;

    if (s->version == MQTT_V5) {
        window = c->recv_max_out;
    } else {
        long m = broker_cfg()->max_inflight_messages;
        window = m > 0 && m < 65535 ? (uint32_t)m : 65535;
    }
    if (s->inflight.count >= window) {
        return 0;
    }
    /* Never reuse a packet id still in flight. */
    return s->inflight.count == 0 || s->next_seq - ring_at(&s->inflight, 0)->seq < 65535u;
}

static int
online(struct session *s)
{
    return s->conn != NULL && s->conn->state == CONN_ACTIVE;
}

/* Queue length above which a reading client slows the publishers down. */
static uint32_t
press_queue(void)
{
    long max = broker_cfg()->max_queued_messages;

    return max > 0 && max < 2000 ? (uint32_t)(max / 2) : 1000;
}

/*
 * Whether the session's reader is taking what it is sent. A client's socket
 * must have accepted bytes within 0.25 s (conn_progressing). An internal
 * session's progress is its plugin's acknowledgements (plugin_isession.c),
 * which for a bridge come from a remote a network round trip away, and in
 * bursts when the remote itself pauses its publishers: it gets a second. A
 * plugin that acknowledges nothing (a bridge whose link is down) never
 * counts, and one that stops (a remote that hangs) stops counting within a
 * second or two (sessions_tick), so it cannot stall the broker.
 */
static int
reading(const struct conn *c)
{
    if (c->sink != NULL) {
        return ev_now(c->w->loop) - c->last_progress < 1.0;
    }
    return conn_progressing(c);
}

/* See session.h. [worker thread] */
void
session_press_update(struct session *s)
{
    struct conn *c = s->conn;
    int want = online(s) && reading(c) &&
               (s->queue.count > press_queue() || c->out.bytes >= CONN_OUT_CAP);

    if (want != s->pressing) {
        s->pressing = (uint8_t)want;
        atomic_fetch_add(&broker.pressure, want ? 1 : -1);
    }
}

/*
 * Sends a QoS 1/2 entry now and keeps it inflight. The entry's references
 * move. Inflight sequence numbers stay consecutive (a packet that is not sent
 * does not use one), which lets inflight_find() index instead of search.
 */
static void
send_inflight(struct session *s, struct qentry *e, double now)
{
    int r;

    e->seq = s->next_seq;
    e->state = QS_SENT;
    r = proto_send_publish(s->conn, e, pid_of(e->seq), 0, now);
    if (r != 0) {
        /* Too big for the client [MQTT-3.1.2-25], denied, or no memory: as if delivered. */
        not_sent(s, r);
        delivery_done(s, e);
        entry_release(e);
        return;
    }
    if (ring_push(&s->inflight, e) < 0) {
        /* The PUBLISH is out but cannot be tracked: treat it as QoS 0. */
        delivery_done(s, e);
        entry_release(e);
        return;
    }
    if (e->delivery_id != 0 && s->persist) {
        persist_delivery(MIDGE_P_MSG_SENT, s->client_id, e->delivery_id, pid_of(e->seq));
    }
    s->next_seq++;
    count_sent(s, e->qos, e->msg);
}

static void
send_qos0(struct session *s, struct qentry *e, double now)
{
    int r = proto_send_publish(s->conn, e, 0, 0, now);

    if (r != 0) {
        not_sent(s, r);
    } else {
        count_sent(s, 0, e->msg);
    }
    entry_release(e);
}

/* Delivers one copy; see session.h. [worker thread] */
void
session_deliver(struct session *s, struct msg *m, uint8_t qos, uint8_t retain, uint32_t sub_id,
                const uint32_t *more_ids, uint16_t n_more)
{
    session_deliver_id(s, m, qos, retain, sub_id, more_ids, n_more, 0);
}

/* The delivery will not be kept: a persisted one is finished. */
static void
not_kept(struct session *s, uint64_t delivery_id)
{
    if (delivery_id != 0 && s->persist) {
        persist_delivery(MIDGE_P_MSG_DONE, s->client_id, delivery_id, 0);
    }
}

void
session_deliver_id(struct session *s, struct msg *m, uint8_t qos, uint8_t retain,
                   uint32_t sub_id, const uint32_t *more_ids, uint16_t n_more,
                   uint64_t delivery_id)
{
    const struct config *cfg = broker_cfg();
    double now = ev_now(s->w->loop);
    struct qentry e;

    if (qos == 0) {
        delivery_id = 0; /* QoS 0 is never persisted */
    } else if (delivery_id == 0 && s->persist) {
        delivery_id = persist_queued(s->client_id, m, qos, retain);
    }
    if (msg_expired(m, now)) {
        not_kept(s, delivery_id);
        return;
    }
    memset(&e, 0, sizeof(e));
    e.delivery_id = delivery_id;
    e.qos = qos;
    e.retain = retain;
    e.sub_id = sub_id;
    e.n_ids = (uint16_t)(sub_id ? 1 + n_more : 0);
    if (online(s) && s->queue.count == 0) {
        if (qos == 0) {
            if (s->conn->out.bytes >= CONN_OUT_CAP) {
                /* A reading client gets slack while publishers are paused; a stalled one loses QoS 0. */
                if (!conn_progressing(s->conn) || s->conn->out.bytes >= CONN_OUT_HARD) {
                    drop(s, DROP_SLOW_CLIENT, "client output full");
                    return;
                }
                session_press_update(s);
            }
            e.msg = m; /* borrowed: sent now */
            e.more_ids = (uint32_t *)more_ids;
            int r = proto_send_publish(s->conn, &e, 0, 0, now);
            if (r != 0) {
                not_sent(s, r);
            } else {
                count_sent(s, 0, m);
            }
            return;
        }
        if (can_send(s) && s->conn->out.bytes < CONN_OUT_CAP) {
            e.msg = msg_ref(m);
            if (n_more > 0) {
                e.more_ids = malloc(n_more * sizeof(uint32_t));
                if (e.more_ids == NULL) {
                    msg_unref(m);
                    drop(s, DROP_NO_MEMORY, "out of memory");
                    not_kept(s, delivery_id);
                    return;
                }
                memcpy(e.more_ids, more_ids, n_more * sizeof(uint32_t));
            }
            send_inflight(s, &e, now);
            return;
        }
    }
    if (qos == 0 && !online(s) && !cfg->queue_qos0_messages) {
        return;
    }
    if (cfg->max_queued_messages > 0 && s->queue.count >= (uint32_t)cfg->max_queued_messages) {
        drop(s, DROP_QUEUE_LIMIT, "max_queued_messages reached");
        not_kept(s, delivery_id);
        return;
    }
    if (cfg->max_queued_bytes > 0 &&
        (long long)(s->queue_bytes + m->payload_len) > cfg->max_queued_bytes) {
        drop(s, DROP_QUEUE_LIMIT, "max_queued_bytes reached");
        not_kept(s, delivery_id);
        return;
    }
    e.msg = msg_ref(m);
    if (n_more > 0) {
        e.more_ids = malloc(n_more * sizeof(uint32_t));
        if (e.more_ids != NULL) {
            memcpy(e.more_ids, more_ids, n_more * sizeof(uint32_t));
        }
    }
    if (ring_push(&s->queue, &e) < 0) {
        entry_release(&e);
        drop(s, DROP_NO_MEMORY, "out of memory");
        not_kept(s, delivery_id);
        return;
    }
    s->queue_bytes += m->payload_len;
    if (!s->pressing && online(s)) {
        session_press_update(s);
    }
}

/* Moves queued messages to the connection while allowed. [worker thread] */
void
session_pump(struct session *s)
{
    double now;

    if (!online(s)) {
        return;
    }
    now = ev_now(s->w->loop);
    while (s->queue.count > 0 && s->conn->out.bytes < CONN_OUT_CAP) {
        struct qentry e = *ring_at(&s->queue, 0);
        if (e.qos > 0 && !msg_expired(e.msg, now) && !can_send(s)) {
            break;
        }
        ring_pop(&s->queue);
        s->queue_bytes -= e.msg->payload_len;
        if (msg_expired(e.msg, now)) {
            delivery_done(s, &e);
            entry_release(&e);
        } else if (e.qos == 0) {
            send_qos0(s, &e, now);
        } else {
            send_inflight(s, &e, now);
        }
    }
    if (s->pressing) {
        session_press_update(s);
    }
}

/* Resends the inflight messages in order, then the queue [MQTT-4.4.0-1]. */
void
session_resume(struct session *s)
{
    double now = ev_now(s->w->loop);
    uint32_t i;

    for (i = 0; i < s->inflight.count; i++) {
        struct qentry *e = ring_at(&s->inflight, i);
        if (e->state == QS_SENT) {
            proto_send_publish(s->conn, e, pid_of(e->seq), 1, now);
        } else if (e->state == QS_RELEASED && s->conn->sink != NULL) {
            plugin_isession_released(s->conn, pid_of(e->seq));
        } else if (e->state == QS_RELEASED) {
            proto_send_ack(s->conn, MQTT_PUBREL, pid_of(e->seq), 0);
        }
    }
    session_pump(s);
}

/*
 * The inflight entry with packet id `pid`, or NULL. Inflight sequence numbers
 * are consecutive from the head and span less than 65535, so the id maps to
 * exactly one position.
 */
static struct qentry *
inflight_find(struct session *s, uint16_t pid)
{
    uint32_t head;
    uint32_t off;
    struct qentry *e;

    if (s->inflight.count == 0 || pid == 0) {
        return NULL;
    }
    head = ring_at(&s->inflight, 0)->seq;
    off = ((uint32_t)(pid - 1) + 65535u - head % 65535u) % 65535u;
    if (off >= s->inflight.count) {
        return NULL;
    }
    e = ring_at(&s->inflight, off);
    return e->state != QS_DONE && e->seq == head + off ? e : NULL;
}

static void
inflight_done(struct session *s, struct qentry *e)
{
    delivery_done(s, e);
    entry_release(e);
    e->state = QS_DONE;
    while (s->inflight.count > 0 && ring_at(&s->inflight, 0)->state == QS_DONE) {
        ring_pop(&s->inflight);
    }
    session_pump(s);
}

/* See session.h. [worker thread] */
int
session_release(struct session *s, uint16_t pid)
{
    struct qentry *e = inflight_find(s, pid);

    if (e == NULL) {
        return -1;
    }
    inflight_done(s, e);
    return 0;
}

/* Handles PUBACK / PUBREC / PUBCOMP. [worker thread] */
int
session_ack(struct session *s, int type, uint16_t pid, uint8_t rc)
{
    struct qentry *e = inflight_find(s, pid);

    switch (type) {
    case MQTT_PUBACK:
        if (e != NULL && e->qos == 1) {
            inflight_done(s, e);
        }
        return 0;
    case MQTT_PUBREC:
        if (e == NULL || e->qos != 2) {
            /* Unknown id: answer PUBREL 0x92 so the client can finish [MQTT-4.3.3]. */
            return proto_send_ack(s->conn, MQTT_PUBREL, pid, MQTT_RC_PACKET_ID_NOT_FOUND);
        }
        if (rc >= 0x80) {
            inflight_done(s, e);
            return 0;
        }
        e->state = QS_RELEASED;
        if (e->delivery_id != 0 && s->persist) {
            persist_delivery(MIDGE_P_MSG_RELEASED, s->client_id, e->delivery_id, pid);
        }
        /* The message is no longer needed: only the id is (MQTT 5 section 4.3.3). */
        msg_unref(e->msg);
        e->msg = NULL;
        return proto_send_ack(s->conn, MQTT_PUBREL, pid, 0);
    case MQTT_PUBCOMP:
        if (e != NULL && e->state == QS_RELEASED) {
            inflight_done(s, e);
        }
        return 0;
    default:
        return -1;
    }
}

/* Drops every message of the session (Clean Start on an existing session). */
void
session_clear_messages(struct session *s)
{
    ring_clear(&s->inflight);
    ring_clear(&s->queue);
    s->queue_bytes = 0;
    free(s->in_qos2);
    s->in_qos2 = NULL;
    s->in_qos2_count = 0;
}

/* Marks an inbound QoS 2 packet id as awaiting PUBREL; see session.h. */
int
session_qos2_mark(struct session *s, uint16_t pid)
{
    if (s->in_qos2 == NULL) {
        s->in_qos2 = calloc(65536 / 8, 1);
        if (s->in_qos2 == NULL) {
            return -1;
        }
    }
    if (s->in_qos2[pid >> 3] & (1u << (pid & 7))) {
        return 1;
    }
    s->in_qos2[pid >> 3] |= (uint8_t)(1u << (pid & 7));
    s->in_qos2_count++;
    if (s->persist) {
        persist_qos2_in(s, pid, 1);
    }
    return 0;
}

/* Releases an inbound QoS 2 packet id; returns 1 if it was awaiting PUBREL. */
int
session_qos2_release(struct session *s, uint16_t pid)
{
    if (s->in_qos2 == NULL || !(s->in_qos2[pid >> 3] & (1u << (pid & 7)))) {
        return 0;
    }
    s->in_qos2[pid >> 3] &= (uint8_t)~(1u << (pid & 7));
    if (s->persist) {
        persist_qos2_in(s, pid, 0);
    }
    if (--s->in_qos2_count == 0) {
        free(s->in_qos2);
        s->in_qos2 = NULL;
    }
    return 1;
}

/* Publishes the will now (retained if flagged) and forgets it. */
void
session_publish_will(struct session *s)
{
    struct msg *m = s->will;

    if (m == NULL) {
        return;
    }
    s->will = NULL;
    s->will_at = 0;
    if (s->persist) {
        persist_will(s);
    }
    broker_publish(m, s->uid);
    midge_log(MLOG_INFO, "will published client=%s topic=%s", s->client_id, m->topic);
    if (plugins_session_events_active) {
        plugin_will_published(s->client_id, m);
    }
    msg_unref(m);
}

/* The connection is gone; see session.h. [worker thread] */
void
session_detach(struct session *s, int send_will)
{
    double now = ev_now(s->w->loop);

    atomic_store(&s->sub->online, 0);
    s->conn = NULL;
    session_press_update(s);
    if (s->will != NULL) {
        if (!send_will) {
            msg_unref(s->will);
            s->will = NULL;
            if (s->persist) {
                persist_will(s);
            }
        } else if (s->will_delay == 0 || s->expiry == 0) {
            /* Sent at the earlier of the delay and the session's end [MQTT-3.1.3-9]. */
            session_publish_will(s);
        } else {
            s->will_at = now + s->will_delay;
        }
    }
    if (s->expiry == 0) {
        session_destroy(s);
        return;
    }
    s->expire_at = s->expiry == UINT32_MAX ? 0 : now + s->expiry;
    if (s->persist) {
        persist_session(s, 0);
    }
}

/* Frees a session; `ended` runs the session_ended hooks (not at shutdown). */
static void
destroy(struct session *s, int ended)
{
    struct sessions *t = s->w->sessions;
    struct session **pp;
    size_t i;

    for (i = 0; i < s->nsubs; i++) {
        subs_remove(s->subs[i].filter, strlen(s->subs[i].filter), s->sub);
        free(s->subs[i].filter);
    }
    free(s->subs);
    free(s->sub_index);
    session_clear_messages(s);
    msg_unref(s->will);
    for (pp = &t->by_id[hash_bytes(s->client_id, s->client_id_len) & (t->nbuckets - 1)]; *pp;
         pp = &(*pp)->next_id) {
        if (*pp == s) {
            *pp = s->next_id;
            break;
        }
    }
    for (pp = &t->by_uid[hash_uid(s->uid) & (t->nbuckets - 1)]; *pp; pp = &(*pp)->next_uid) {
        if (*pp == s) {
            *pp = s->next_uid;
            break;
        }
    }
    if (s->all_prev != NULL) {
        s->all_prev->all_next = s->all_next;
    } else {
        t->all = s->all_next;
    }
    if (s->all_next != NULL) {
        s->all_next->all_prev = s->all_prev;
    }
    t->count--;
    STAT_ADD(&s->w->stats, sessions, -1);
    if (s->pressing) {
        atomic_fetch_sub(&broker.pressure, 1);
    }
    subscriber_unref(s->sub);
    if (ended && s->persist) {
        persist_session_end(s);
    }
    if (ended && plugins_session_events_active) {
        plugin_session_event(s->client_id, 0);
    }
    free(s);
}

/* Ends a session; see session.h. [worker thread] */
void
session_destroy(struct session *s)
{
    destroy(s, 1);
}

/* Frees every session of a table at shutdown (no wills). */
void
sessions_free(struct sessions *t)
{
    if (t == NULL) {
        return;
    }
    while (t->all != NULL) {
        struct session *s = t->all;
        if (s->conn != NULL) {
            s->conn->session = NULL;
        }
        destroy(s, 0); /* shutdown: the session is not ended (persistence keeps it) */
    }
    free(t->by_id);
    free(t->by_uid);
    free(t);
}

/* Delayed wills and session expiry. [worker thread] */
void
sessions_tick(struct worker *w, double now)
{
    struct session *s = w->sessions->all;

    while (s != NULL) {
        struct session *next = s->all_next;
        if (s->pressing) {
            session_press_update(s); /* a client that stopped reading stops counting */
        }
        if (s->conn == NULL) {
            if (s->will_at != 0 && now >= s->will_at) {
                session_publish_will(s);
            }
            if (s->expire_at != 0 && now >= s->expire_at) {
                session_publish_will(s);
                midge_log(MLOG_INFO, "session expired client=%s", s->client_id);
                session_destroy(s);
            }
        }
        s = next;
    }
}

/* Sessions with fewer filters find theirs by scanning: no index to allocate. */
#define SUB_INDEX_MIN 16

static uint32_t
sub_hash_slot(const struct session *s, const char *filter, size_t len)
{
    return (uint32_t)hash_bytes(filter, len) & (s->sub_index_cap - 1);
}

/*
 * The position in s->subs of `filter`, or -1. With an index, *slot is where
 * it is (or would go) in s->sub_index.
 */
static long
sub_find(const struct session *s, const char *filter, size_t len, uint32_t *slot)
{
    size_t i;

    if (s->sub_index == NULL) {
        for (i = 0; i < s->nsubs; i++) {
            if (strlen(s->subs[i].filter) == len && memcmp(s->subs[i].filter, filter, len) == 0) {
                return (long)i;
            }
        }
        return -1;
    }
    for (*slot = sub_hash_slot(s, filter, len);; *slot = (*slot + 1) & (s->sub_index_cap - 1)) {
        uint32_t v = s->sub_index[*slot];
        const char *f;

        if (v == 0) {
            return -1;
        }
        f = s->subs[v - 1].filter;
        if (strlen(f) == len && memcmp(f, filter, len) == 0) {
            return (long)(v - 1);
        }
    }
}

/* Puts subs[i] into the index (not in it yet; there is room). */
static void
sub_index_put(struct session *s, uint32_t i)
{
    const char *f = s->subs[i].filter;
    uint32_t slot = sub_hash_slot(s, f, strlen(f));

    while (s->sub_index[slot] != 0) {
        slot = (slot + 1) & (s->sub_index_cap - 1);
    }
    s->sub_index[slot] = i + 1;
}

/* Sizes the index for subcap filters (built from scratch). Returns 0, or -1: out of memory. */
static int
sub_index_resize(struct session *s)
{
    uint32_t cap = 32;
    uint32_t *v;
    uint32_t i;

    while (cap < 2 * s->subcap) {
        cap *= 2;
    }
    if (cap == s->sub_index_cap) {
        return 0;
    }
    v = calloc(cap, sizeof(*v));
    if (v == NULL) {
        return -1;
    }
    free(s->sub_index);
    s->sub_index = v;
    s->sub_index_cap = cap;
    for (i = 0; i < s->nsubs; i++) {
        sub_index_put(s, i);
    }
    return 0;
}

/* Removes the entry at `slot` from the index (backward-shift deletion of linear probing). */
static void
sub_index_delete(struct session *s, uint32_t slot)
{
    uint32_t mask = s->sub_index_cap - 1;
    uint32_t hole = slot;
    uint32_t j = slot;

    for (;;) {
        uint32_t v;
        uint32_t home;
        const char *f;

        j = (j + 1) & mask;
        v = s->sub_index[j];
        if (v == 0) {
            break;
        }
        f = s->subs[v - 1].filter;
        home = sub_hash_slot(s, f, strlen(f));
        /* The entry at j may move to the hole unless its home lies cyclically in (hole, j]. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            s->sub_index[hole] = v;
            hole = j;
        }
    }
    s->sub_index[hole] = 0;
}

/* Records a subscription in the session (replacing one with the same filter). */
int
session_sub_add(struct session *s, const char *filter, size_t len, uint8_t opts, uint32_t sub_id)
{
    uint32_t slot = 0;
    long i = sub_find(s, filter, len, &slot);

    if (i >= 0) {
        s->subs[i].opts = opts;
        s->subs[i].sub_id = sub_id;
        if (s->persist) {
            persist_sub(s, filter, len, opts, sub_id, 1);
        }
        return 0;
    }
    if (s->nsubs == s->subcap) {
        size_t cap = s->subcap ? s->subcap * 2 : 4;
        struct sess_sub *v = realloc(s->subs, cap * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        s->subs = v;
        s->subcap = cap;
    }
    s->subs[s->nsubs].filter = strndup(filter, len);
    if (s->subs[s->nsubs].filter == NULL) {
        return -1;
    }
    s->subs[s->nsubs].opts = opts;
    s->subs[s->nsubs].sub_id = sub_id;
    if (s->nsubs + 1 >= SUB_INDEX_MIN &&
        (s->sub_index == NULL || 2 * s->subcap > s->sub_index_cap)) {
        s->nsubs++; /* the rebuild indexes the new entry too */
        if (sub_index_resize(s) != 0) {
            s->nsubs--;
            free(s->subs[s->nsubs].filter);
            return -1;
        }
    } else {
        if (s->sub_index != NULL) {
            sub_index_put(s, s->nsubs);
        }
        s->nsubs++;
    }
    if (s->persist) {
        persist_sub(s, filter, len, opts, sub_id, 1);
    }
    return 0;
}

/* Forgets a subscription record; returns 1 if it existed. */
int
session_sub_remove(struct session *s, const char *filter, size_t len)
{
    uint32_t slot = 0;
    long i = sub_find(s, filter, len, &slot);
    uint32_t last = s->nsubs - 1;

    if (i < 0) {
        return 0;
    }
    if (s->persist) {
        persist_sub(s, filter, len, 0, 0, 0);
    }
    if (s->sub_index != NULL) {
        sub_index_delete(s, slot);
        if ((uint32_t)i != last) {
            /* The last record moves to position i: its index entry follows. */
            const char *f = s->subs[last].filter;
            uint32_t j;

            sub_find(s, f, strlen(f), &j);
            s->sub_index[j] = (uint32_t)i + 1;
        }
    }
    free(s->subs[i].filter);
    s->subs[i] = s->subs[last];
    s->nsubs--;
    return 1;
}

/* See session.h. [worker thread] */
void
session_persist_update(struct session *s, int connected)
{
    int want = persist_active && s->expiry > 0;

    if (s->persist && !want) {
        persist_session_end(s); /* it now ends with its connection */
    }
    s->persist = (uint8_t)want;
    atomic_store(&s->sub->persistent, want);
    if (want) {
        persist_session(s, connected);
    }
}

/* See session.h. [worker thread] */
int
session_restore_delivery(struct session *s, struct msg *m, uint8_t qos, uint8_t retain,
                         uint64_t delivery_id, int state, uint16_t pid)
{
    struct qentry e;

    memset(&e, 0, sizeof(e));
    e.qos = qos;
    e.retain = retain;
    e.delivery_id = delivery_id;
    if (state == MIDGE_DELIVERY_QUEUED) {
        e.msg = msg_ref(m);
        if (ring_push(&s->queue, &e) < 0) {
            msg_unref(m);
            return -1;
        }
        s->queue_bytes += m->payload_len;
        return 0;
    }
    /* Inflight: keep the packet id the client knows; ids were given in send order. */
    if (s->inflight.count == 0) {
        e.seq = (uint32_t)pid - 1u;
    } else {
        uint32_t last = ring_at(&s->inflight, s->inflight.count - 1)->seq;
        uint32_t off = ((uint32_t)(pid - 1) + 65535u - last % 65535u) % 65535u;
        uint32_t k;
        if (off == 0 || s->inflight.count + off >= 65535u) {
            return -1;
        }
        for (k = 1; k < off; k++) {
            /* Ids between were acknowledged: placeholders keep the ring indexable. */
            struct qentry gap;
            memset(&gap, 0, sizeof(gap));
            gap.seq = last + k;
            gap.state = QS_DONE;
            if (ring_push(&s->inflight, &gap) < 0) {
                return -1;
            }
        }
        e.seq = last + off;
    }
    e.state = state == MIDGE_DELIVERY_SENT ? QS_SENT : QS_RELEASED;
    e.msg = state == MIDGE_DELIVERY_SENT ? msg_ref(m) : NULL;
    if (ring_push(&s->inflight, &e) < 0) {
        msg_unref(e.msg);
        return -1;
    }
    s->next_seq = e.seq + 1;
    return 0;
}
