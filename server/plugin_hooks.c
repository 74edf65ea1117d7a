/*
 * Hook chains: auth and ACL with asynchronous decisions (tickets,
 * timeouts), events, and the per-hook metrics the broker measures itself.
 *
 * Every decision hook that may answer PENDING gets a ticket, and nearly
 * all answer at once, so handing one out costs two plain stores: its id
 * sits in its worker's hook slot while the hook runs. Only a PENDING
 * answer makes a struct auth_wait with two references: one held by its
 * connection, one by the ticket table. api->complete() (any thread) takes
 * the table's reference out and posts it to the connection's worker; a
 * timeout or the connection closing takes it out on the worker. Whoever
 * removes the ticket from the table owns that reference, so a decision is
 * applied at most once and never to a freed connection. A complete() that
 * comes while the hook still runs leaves an early record in the hook slot
 * (struct hook_slot), applied once the hook answered PENDING. While a
 * decision waits, the
 * connection holds its further input (conn.c), so a client's packets are
 * still handled in order.
 */
#include "plugin.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "mqtt.h"
#include "msg.h"
#include "proto.h"
#include "worker.h"

struct auth_wait {
    atomic_uint refs;
    uint64_t id;                 /* the ticket handed to the plugin */
    struct conn *conn;           /* worker thread only; NULL once the connection is gone */
    struct worker *w;            /* the connection's worker */
    struct midge_plugin *plugin; /* the plugin that answered PENDING */
    size_t index;                /* its chain position */
    ev_timer timer;              /* plugin_timeout */
    uint8_t *connect;            /* copy of the CONNECT packet */
    size_t connect_len;
    int verdict;                 /* set by complete() or the timeout */
    uint8_t reason;
    int kind;                    /* enum plugin_wait_kind */
    struct acl_hold *hold;       /* PLUGIN_WAIT_ACL: the waiting packet, owned; worker thread */
    uint8_t *data;               /* Authentication Data from complete_auth(), owned */
    uint32_t data_len;
    struct auth_wait *tnext;     /* ticket table chain, under its stripe's lock */
    /*
     * 1: not a wait but an early completion record (a complete() during the
     * hook, see struct hook_slot): only id, plugin, verdict, reason and data
     * mean something, and `state` (EARLY_*, under the stripe lock).
     */
    uint8_t early;
    uint8_t state;
};

enum { EARLY_WAITING, EARLY_TAKEN, EARLY_STALE };

/*
 * Every ACL check that may wait takes a ticket, so a PUBLISH on every
 * worker at full rate takes one: tickets must not make workers share cache
 * lines. A ticket id is (seq << 16 | worker), seq counted by the worker's
 * own thread. Each worker has its own hook slot and (with up to
 * TICKET_STRIPES workers) its own table stripe, whose lock also guards the
 * slot's early record. api->complete() from any thread finds both from the id.
 */
#define TICKET_STRIPES 64
#define TICKET_STRIPE_BUCKETS 64
#define HOOK_SLOTS 1024 /* worker_threads is at most 1024 */

struct ticket_stripe {
    _Alignas(64) pthread_mutex_t lock;
    struct auth_wait *b[TICKET_STRIPE_BUCKETS]; /* Protected by lock */
};

/*
 * Worker i's hook that runs now with a ticket but no struct auth_wait:
 * `id` (0: none) and `plugin` are written only by that worker, without a
 * lock; complete() reads them. A complete() that finds its id here makes
 * an early record with two references: `early` (under the worker's stripe
 * lock) and a WI_TICKET item posted to the worker. A PENDING answer takes
 * the record out of `early` (EARLY_TAKEN) and applies it; otherwise the
 * hook also answered, and the posted item finds the record not taken and
 * logs a plugin bug.
 */
struct hook_slot {
    _Alignas(64) _Atomic uint64_t id;
    struct midge_plugin *_Atomic plugin;
    struct auth_wait *early; /* Protected by the worker's stripe lock */
};

static struct ticket_stripe tickets[TICKET_STRIPES];
static struct hook_slot hook_slots[HOOK_SLOTS];
static pthread_once_t tickets_once = PTHREAD_ONCE_INIT;
static __thread uint64_t ticket_seq; /* tickets handed out by this (worker) thread */

static void
tickets_init(void)
{
    unsigned i;

    for (i = 0; i < TICKET_STRIPES; i++) {
        pthread_mutex_init(&tickets[i].lock, NULL);
    }
}

/* The stripe of ticket `id` (its worker's), and in *head its bucket. */
static struct ticket_stripe *
ticket_stripe(uint64_t id, struct auth_wait ***head)
{
    struct ticket_stripe *ts = &tickets[(id & 0xFFFF) % TICKET_STRIPES];

    *head = &ts->b[(id >> 16) % TICKET_STRIPE_BUCKETS];
    return ts;
}

static struct hook_slot *
hook_slot(uint64_t id)
{
    return &hook_slots[(id & 0xFFFF) % HOOK_SLOTS];
}

static void
wait_unref(struct auth_wait *aw)
{
    if (atomic_fetch_sub(&aw->refs, 1) == 1) {
        if (aw->hold != NULL) {
            aw->hold->release(NULL, aw->hold);
        }
        free(aw->connect);
        free(aw->data);
        free(aw);
    }
}

/* Puts aw (its id set) in bucket head; the caller holds the bucket's stripe lock. */
static void
ticket_insert_locked(struct auth_wait **head, struct auth_wait *aw)
{
    aw->tnext = *head;
    *head = aw;
}

/* Registers aw under its id (the table's reference taken). [aw->w's thread] */
static void
ticket_add(struct auth_wait *aw)
{
    struct ticket_stripe *ts;
    struct auth_wait **head;

    ts = ticket_stripe(aw->id, &head);
    pthread_mutex_lock(&ts->lock);
    ticket_insert_locked(head, aw);
    pthread_mutex_unlock(&ts->lock);
}

/* Unlinks ticket `id` from bucket pp (its stripe locked by the caller); returns it or NULL. */
static struct auth_wait *
ticket_unlink_locked(struct auth_wait **pp, uint64_t id)
{
    for (; *pp != NULL; pp = &(*pp)->tnext) {
        if ((*pp)->id == id) {
            struct auth_wait *aw = *pp;
            *pp = aw->tnext;
            return aw;
        }
    }
    return NULL;
}

/* Removes ticket `id`; returns it (the caller now owns the table's reference) or NULL. */
static struct auth_wait *
ticket_take(uint64_t id)
{
    struct auth_wait **pp;
    struct auth_wait *aw;
    struct ticket_stripe *ts;

    pthread_once(&tickets_once, tickets_init);
    ts = ticket_stripe(id, &pp);
    pthread_mutex_lock(&ts->lock);
    aw = ticket_unlink_locked(pp, id);
    pthread_mutex_unlock(&ts->lock);
    return aw;
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define MADD(m, f) STAT_ADD(m, f, 1)

/*
 * Latency is sampled: one call in LAT_SAMPLE is timed (two clock reads per
 * call would cost more than a trivial hook; at 1 in 16 they were still 1 %
 * of the broker's time in a QoS 1 benchmark). Verdicts are all counted.
 */
#define LAT_SAMPLE 64

/* Counts one call with verdict `verdict` (and latency ns, when not 0) in shard m. */
static void
record_in(struct hook_metrics *m, int verdict, uint64_t ns)
{
    unsigned b = 0;

    MADD(m, calls);
    if (ns != 0) {
        while (b + 1 < PLUGIN_LAT_BUCKETS && (ns >> (b + 1)) != 0) {
            b++;
        }
        MADD(m, lat[b]);
    }
    switch (verdict) {
    case MIDGE_ALLOW:
        MADD(m, allow);
        break;
    case MIDGE_DENY:
        MADD(m, deny);
        break;
    case MIDGE_PENDING:
        MADD(m, pending);
        break;
    default:
        MADD(m, defer);
        break;
    }
}

void
plugin_record(struct midge_plugin *p, int hook, int verdict, uint64_t ns)
{
    record_in(plugin_metrics(p, hook), verdict, ns);
}

/* 1 when instance p applies to clients of listener l. */
int
plugin_applies(const struct midge_plugin *p, const struct listener *l)
{
    if (!p->per_listener) {
        return 1;
    }
    if (l->conf_port != p->listener_port) {
        return 0;
    }
    if (l->bind_address == NULL || p->listener_address == NULL) {
        return l->bind_address == p->listener_address;
    }
    return strcmp(l->bind_address, p->listener_address) == 0;
}

static int
valid_verdict(struct midge_plugin *p, const char *hook, int v, int pending_ok)
{
    if (v == MIDGE_ALLOW || v == MIDGE_DENY || v == MIDGE_DEFER ||
        (pending_ok && v == MIDGE_PENDING)) {
        return v;
    }
    midge_log(MLOG_ERROR, "plugin bug plugin=%s hook=%s returned %d: treated as %s", p->name, hook,
              v, v == MIDGE_PENDING ? "its timeout verdict" : "deny");
    if (v == MIDGE_PENDING) {
        return p->timeout_allow ? MIDGE_ALLOW : MIDGE_DENY;
    }
    return MIDGE_DENY;
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void wait_post(struct auth_wait *aw);
static void standing_subscribe_decided(struct conn *c, int action, size_t idx);

static const char *const wait_hook_names[] = {"auth", "enhanced_auth", "acl"};
static const int wait_hook_ids[] = {PH_AUTH, PH_EAUTH, PH_ACL};

/* A pending-decision record for ticket pw->id, two references: the caller's and the table's. */
static struct auth_wait *
wait_new(const struct plugin_wait *pw, struct conn *c)
{
    /* malloc and field by field: glibc's calloc bypasses the per-thread cache. */
    struct auth_wait *aw = malloc(sizeof(*aw));

    if (aw == NULL) {
        return NULL;
    }
    atomic_init(&aw->refs, 2);
    aw->id = pw->id;
    aw->conn = NULL;
    /* complete() may run on another thread before the hook even returns: it needs w. */
    aw->w = c->w;
    aw->plugin = pw->p;
    aw->index = pw->idx;
    aw->connect = NULL;
    aw->connect_len = 0;
    aw->verdict = MIDGE_DEFER;
    aw->reason = 0;
    aw->kind = pw->kind;
    aw->hold = NULL;
    aw->data = NULL;
    aw->data_len = 0;
    aw->early = 0;
    aw->state = EARLY_WAITING;
    return aw;
}

static int wait_begin_slow(struct plugin_wait *pw, struct conn *c);

/* plugin_wait_begin, inlined into the ACL chain. [worker thread] */
static inline int
wait_begin(struct plugin_wait *pw, struct conn *c, struct midge_plugin *p, size_t idx, int kind)
{
    struct hook_slot *hs;

    /*
     * seq is per thread and the worker id (below 65536: worker_threads is at
     * most 1024) is this thread's: the id is unique and never 0.
     */
    pw->id = (++ticket_seq << 16) | (c->w->id & 0xFFFFu);
    pw->p = p;
    pw->idx = idx;
    pw->kind = kind;
    pw->aw = NULL;
    hs = hook_slot(pw->id);
    if (atomic_load_explicit(&hs->id, memory_order_relaxed) == 0) {
        atomic_store_explicit(&hs->plugin, p, memory_order_relaxed);
        /* Release: a thread given the ticket by the hook sees it in the slot. */
        atomic_store_explicit(&hs->id, pw->id, memory_order_release);
        return 0;
    }
    return wait_begin_slow(pw, c);
}

/* The slot is busy (a hook that runs another chain): register now. */
static int
wait_begin_slow(struct plugin_wait *pw, struct conn *c)
{
    pthread_once(&tickets_once, tickets_init);
    pw->aw = wait_new(pw, c);
    if (pw->aw == NULL) {
        return -1;
    }
    ticket_add(pw->aw);
    return 0;
}

/* Starts a possible pending decision of p about c; see plugin.h. [worker thread] */
int
plugin_wait_begin(struct plugin_wait *pw, struct conn *c, struct midge_plugin *p, size_t idx,
                  int kind)
{
    return wait_begin(pw, c, p, idx, kind);
}

midge_ticket *
plugin_wait_ticket(const struct plugin_wait *pw)
{
    return (midge_ticket *)(uintptr_t)pw->id;
}

/* Arms aw for a PENDING answer; see plugin_wait_end. */
static int
wait_arm(struct auth_wait *aw, struct conn *c, const uint8_t *raw, size_t raw_len)
{
    /* Set only now: a decision posted during the hook is processed after this. */
    aw->conn = c;
    if (raw != NULL) {
        aw->connect = malloc(raw_len);
        if (aw->connect == NULL) {
            if (ticket_take(aw->id) != NULL) {
                wait_unref(aw);
            }
            aw->conn = NULL;
            wait_unref(aw);
            return -1;
        }
        memcpy(aw->connect, raw, raw_len);
        aw->connect_len = raw_len;
    }
    c->auth_wait = aw;
    ev_timer_init(&aw->timer, timeout_cb, aw->plugin->timeout_ms / 1000.0, 0.0);
    ev_timer_start(c->w->loop, &aw->timer);
    return 0;
}

/* The hook answered v; see plugin.h. [worker thread] */
int
plugin_wait_end(struct plugin_wait *pw, struct conn *c, int v, const uint8_t *raw,
                size_t raw_len)
{
    struct ticket_stripe *ts;
    struct auth_wait **head;
    struct hook_slot *hs;
    struct auth_wait *e;
    struct auth_wait *aw = pw->aw;

    if (aw != NULL) { /* registered at begin */
        if (v == MIDGE_PENDING) {
            return wait_arm(aw, c, raw, raw_len);
        }
        if (ticket_take(aw->id) != NULL) {
            wait_unref(aw); /* the table's reference */
        } else {
            midge_log(MLOG_ERROR, "plugin bug plugin=%s completed a ticket and also returned a "
                      "verdict", pw->p->name);
        }
        wait_unref(aw);
        return 0;
    }
    hs = hook_slot(pw->id);
    if (v != MIDGE_PENDING) {
        /* A complete() during the hook left an early record: its WI_TICKET item logs the bug. */
        atomic_store_explicit(&hs->id, 0, memory_order_relaxed);
        return 0;
    }
    pthread_once(&tickets_once, tickets_init);
    aw = wait_new(pw, c);
    ts = ticket_stripe(pw->id, &head);
    pthread_mutex_lock(&ts->lock);
    e = hs->early;
    if (e != NULL && e->id == pw->id) {
        /* Completed during the hook: apply it like a complete() after it. */
        hs->early = NULL;
        e->state = EARLY_TAKEN;
        atomic_store_explicit(&hs->id, 0, memory_order_relaxed);
        pthread_mutex_unlock(&ts->lock);
        if (aw == NULL) {
            wait_unref(e);
            return -1;
        }
        aw->verdict = e->verdict;
        aw->reason = e->reason;
        aw->data = e->data;
        aw->data_len = e->data_len;
        e->data = NULL;
        wait_unref(e); /* the slot's reference; its posted item finds it taken */
        if (aw->verdict == MIDGE_CONTINUE && aw->kind != PLUGIN_WAIT_EAUTH) {
            midge_log(MLOG_ERROR, "plugin bug plugin=%s: api->complete() with verdict %d: "
                      "treated as deny", pw->p->name, aw->verdict);
            aw->verdict = MIDGE_DENY;
        }
        if (wait_arm(aw, c, raw, raw_len) < 0) {
            wait_unref(aw); /* the reference wait_post would have carried */
            return -1;
        }
        wait_post(aw);
        return 0;
    }
    if (aw != NULL) {
        ticket_insert_locked(head, aw);
    }
    /*
     * Cleared under the lock: a complete() from now on finds the ticket in
     * the table, or (out of memory) nowhere and is refused.
     */
    atomic_store_explicit(&hs->id, 0, memory_order_relaxed);
    pthread_mutex_unlock(&ts->lock);
    return aw != NULL ? wait_arm(aw, c, raw, raw_len) : -1;
}

/* Runs the auth chain; see plugin.h. [worker thread] */
int
plugin_auth(struct conn *c, const struct mqtt_connect *cp, const uint8_t *raw, size_t raw_len,
            size_t start, uint8_t *reason, int *any)
{
    struct midge_auth_request req;
    struct midge_plugin *p;
    size_t idx = 0;

    memset(&req, 0, sizeof(req));
    req.size = sizeof(req);
    req.client_id = c->client_id;
    req.username = c->username;
    if (cp->has_password) {
        req.password = cp->password.len ? cp->password.ptr : (const uint8_t *)"";
        req.password_len = cp->password.len;
    }
    *reason = 0;
    for (p = plugins; p != NULL; p = p->next, idx++) {
        struct plugin_wait pw;
        uint64_t t0;
        uint8_t r = 0;
        int v;

        if (idx < start || !PLUGIN_HAS(p, auth) || !plugin_applies(p, c->listener)) {
            continue;
        }
        *any = 1;
        if (plugin_wait_begin(&pw, c, p, idx, PLUGIN_WAIT_AUTH) < 0) {
            *reason = MQTT_RC_SERVER_UNAVAILABLE;
            return PLUGIN_DENY;
        }
        t0 = now_ns();
        v = p->hooks->auth(p->state, (midge_client *)c, &req, &r, plugin_wait_ticket(&pw));
        v = valid_verdict(p, "auth", v, 1);
        plugin_record(p, PH_AUTH, v, now_ns() - t0 + 1);
        if (plugin_wait_end(&pw, c, v, raw, raw_len) < 0) {
            *reason = MQTT_RC_SERVER_UNAVAILABLE;
            return PLUGIN_DENY;
        }
        if (v == MIDGE_PENDING) {
            return PLUGIN_PENDING;
        }
        if (v != MIDGE_DEFER) {
            *reason = r;
            return v;
        }
    }
    return PLUGIN_DEFER;
}

/* Completes a ticket; see plugin.h's api->complete. [any thread] */
int
plugin_complete(midge_ticket *ticket, int verdict, uint8_t reason)
{
    return plugin_complete_auth(ticket, verdict, reason, NULL, 0);
}

/* Posts aw's decision to its worker with the table's reference. [any thread] */
static void
wait_post(struct auth_wait *aw)
{
    struct witem it;

    memset(&it, 0, sizeof(it));
    it.kind = WI_TICKET;
    it.u.ptr = aw;
    worker_post(aw->w->id, &it);
}

/*
 * Makes the early record of ticket id in hs (a complete() during its hook),
 * taking `data`, and posts it to the ticket's worker. The stripe is locked.
 */
static int
early_record(struct hook_slot *hs, uint64_t id, int verdict, uint8_t reason, uint8_t *data,
             uint32_t len)
{
    struct auth_wait *e = calloc(1, sizeof(*e));
    struct witem it;

    if (e == NULL) {
        free(data);
        midge_log(MLOG_ERROR, "api->complete(): out of memory; ticket %llu falls to its timeout",
                  (unsigned long long)id);
        return -MIDGE_ENOMEM;
    }
    atomic_init(&e->refs, 2);
    e->early = 1;
    e->state = EARLY_WAITING;
    e->id = id;
    e->plugin = atomic_load_explicit(&hs->plugin, memory_order_relaxed);
    e->verdict = verdict;
    e->reason = reason;
    e->data = data;
    e->data_len = len;
    if (hs->early != NULL) { /* an older one whose hook also answered: its item logs that */
        hs->early->state = EARLY_STALE;
        wait_unref(hs->early);
    }
    hs->early = e;
    memset(&it, 0, sizeof(it));
    it.kind = WI_TICKET;
    it.u.ptr = e;
    worker_post((unsigned)(id & 0xFFFF), &it);
    return 0;
}

/* The posted item of early record e, after its hook returned. [its worker] */
static void
early_check(struct auth_wait *e)
{
    struct auth_wait **pp;
    struct ticket_stripe *ts = ticket_stripe(e->id, &pp);
    struct hook_slot *hs = hook_slot(e->id);
    int answered;

    pthread_mutex_lock(&ts->lock);
    answered = e->state != EARLY_TAKEN;
    if (hs->early == e) {
        hs->early = NULL;
        wait_unref(e); /* the slot's */
    }
    pthread_mutex_unlock(&ts->lock);
    if (answered) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s completed a ticket and also returned a "
                  "verdict", e->plugin != NULL ? e->plugin->name : "?");
    }
    wait_unref(e); /* the item's */
}

/* api->complete_auth: a decision with Authentication Data. [any thread] */
int
plugin_complete_auth(midge_ticket *ticket, int verdict, uint8_t reason, const void *data,
                     uint32_t len)
{
    uint64_t id = (uint64_t)(uintptr_t)ticket;
    struct ticket_stripe *ts;
    struct auth_wait **pp;
    struct auth_wait *aw;
    struct hook_slot *hs;
    uint8_t *copy = NULL;

    if (id == 0) {
        midge_log(MLOG_WARNING, "plugin bug: api->complete() for ticket %llu that the broker "
                  "never handed out", (unsigned long long)id);
        return -MIDGE_EINVAL;
    }
    if (verdict != MIDGE_ALLOW && verdict != MIDGE_DENY && verdict != MIDGE_DEFER &&
        verdict != MIDGE_CONTINUE) {
        midge_log(MLOG_ERROR, "plugin bug: api->complete() with verdict %d: treated as deny",
                  verdict);
        verdict = MIDGE_DENY;
    }
    if (data != NULL && len > 0) {
        copy = malloc(len);
        if (copy == NULL) {
            verdict = MIDGE_DENY;
            reason = MQTT_RC_SERVER_UNAVAILABLE;
        } else {
            memcpy(copy, data, len);
        }
    }
    pthread_once(&tickets_once, tickets_init);
    ts = ticket_stripe(id, &pp);
    hs = hook_slot(id);
    pthread_mutex_lock(&ts->lock);
    aw = ticket_unlink_locked(pp, id);
    if (aw == NULL && atomic_load_explicit(&hs->id, memory_order_acquire) == id &&
        (hs->early == NULL || hs->early->id != id)) {
        /* Its hook is still running: leave an early record (see struct hook_slot). */
        int rc = early_record(hs, id, verdict, reason, copy, copy != NULL ? len : 0);
        pthread_mutex_unlock(&ts->lock);
        return rc;
    }
    pthread_mutex_unlock(&ts->lock);
    if (aw == NULL) {
        free(copy);
        midge_log(MLOG_WARNING, "plugin bug: api->complete() for ticket %llu that was already "
                  "completed, timed out, or whose client left", (unsigned long long)id);
        return -MIDGE_ESTATE;
    }
    if (verdict == MIDGE_CONTINUE && aw->kind != PLUGIN_WAIT_EAUTH) {
        midge_log(MLOG_ERROR, "plugin bug: api->complete() with verdict %d: treated as deny",
                  verdict);
        verdict = MIDGE_DENY;
    }
    aw->verdict = verdict;
    aw->reason = reason;
    aw->data = copy;
    aw->data_len = copy != NULL ? len : 0;
    wait_post(aw); /* carries the table's reference */
    return 0;
}

static void
timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct auth_wait *aw = (struct auth_wait *)((char *)t - offsetof(struct auth_wait, timer));

    (void)loop;
    (void)revents;
    if (ticket_take(aw->id) == NULL) {
        return; /* completed just now: the decision is on its way */
    }
    MADD(plugin_metrics(aw->plugin, wait_hook_ids[aw->kind]), timeouts);
    midge_log(MLOG_WARNING, "plugin timeout plugin=%s hook=%s client=%s after_ms=%u verdict=%s",
              aw->plugin->name, wait_hook_names[aw->kind],
              aw->conn && aw->conn->client_id ? aw->conn->client_id : "",
              aw->plugin->timeout_ms, aw->plugin->timeout_allow ? "allow" : "deny");
    aw->verdict = aw->plugin->timeout_allow ? MIDGE_ALLOW : MIDGE_DENY;
    aw->reason = 0;
    plugin_auth_completed(aw);
}

/* Applies a decision to its waiting connection; consumes one reference. [worker thread] */
void
plugin_auth_completed(void *wait)
{
    struct auth_wait *aw = wait;
    struct conn *c = aw->conn;

    if (aw->early) {
        early_check(aw);
        return;
    }
    if (c == NULL) {
        wait_unref(aw); /* the client left meanwhile */
        return;
    }
    ev_timer_stop(c->w->loop, &aw->timer);
    c->auth_wait = NULL;
    aw->conn = NULL;
    if (aw->kind == PLUGIN_WAIT_ACL) {
        struct acl_hold *h = aw->hold;
        aw->hold = NULL;
        if (h != NULL && (aw->verdict == MIDGE_ALLOW || aw->verdict == MIDGE_DENY)) {
            standing_subscribe_decided(c, h->action, aw->index);
        }
        if (h != NULL) {
            h->resume(c, h, aw->index, aw->verdict, aw->reason);
        } else {
            /* plugin_acl_hold was never called: the caller ran out of memory. */
            conn_close(c, MQTT_RC_SERVER_BUSY, 1, "out of memory");
        }
    } else if (aw->kind == PLUGIN_WAIT_EAUTH) {
        plugin_eauth_resume(c, aw->index, aw->verdict, aw->reason, aw->data, aw->data_len);
    } else {
        proto_connect_resume(c, aw->connect, aw->connect_len, aw->index, aw->verdict,
                             aw->reason);
    }
    wait_unref(aw); /* the connection's */
    wait_unref(aw); /* the table's, carried by the item or the timeout */
}

/* Drops an unprocessed WI_TICKET item. */
void
plugin_auth_completed_discard(void *wait)
{
    wait_unref(wait);
}

/* The connection is closing while it waits. [worker thread] */
void
plugin_auth_cancel(struct conn *c)
{
    struct auth_wait *aw = c->auth_wait;

    if (aw == NULL) {
        return;
    }
    ev_timer_stop(c->w->loop, &aw->timer);
    c->auth_wait = NULL;
    aw->conn = NULL;
    if (aw->hold != NULL) {
        aw->hold->release(c, aw->hold); /* c is still whole: undo what the packet started */
        aw->hold = NULL;
    }
    if (ticket_take(aw->id) != NULL) {
        wait_unref(aw); /* the table's */
    }
    wait_unref(aw); /* the connection's */
}

/* Fills req for an ACL question about the NUL-terminated `topic`. */
static void
acl_request_fill(struct midge_acl_request *req, int action, const char *topic, int qos,
                 int retain, const uint8_t *payload, uint32_t payload_len)
{
    memset(req, 0, sizeof(*req));
    req->size = sizeof(*req);
    req->action = action;
    req->topic = topic;
    req->qos = qos;
    req->retain = retain;
    req->payload = payload;
    req->payload_len = payload_len;
}

/* A PENDING answer without a ticket: the instance's timeout verdict, logged once per instance. */
static int
acl_untimely_pending(struct midge_plugin *p, int action)
{
    if (atomic_exchange(&p->acl_sync_pending_logged, 1) == 0) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s hook=acl returned PENDING without a ticket "
                  "(action %d must be answered at once): treated as its timeout verdict; "
                  "logged once", p->name, action);
    }
    return p->timeout_allow ? MIDGE_ALLOW : MIDGE_DENY;
}

/*
 * A SUBSCRIBE check of c was decided by the plugin at chain position idx:
 * the plugins after it did not see that filter, so their standing RECEIVE
 * answers, which may rest on having seen every subscription, lapse
 * (api->client_acl_standing). [worker thread]
 */
static void
standing_subscribe_decided(struct conn *c, int action, size_t idx)
{
    const struct midge_plugin *p;

    if (action != MIDGE_ACL_SUBSCRIBE || c->pslots == NULL) {
        return;
    }
    for (p = plugins; p != NULL; p = p->next) {
        if (p->index > idx) {
            c->pslots[p->index].standing &= (uint16_t)~(3u << (2 * MIDGE_ACL_RECEIVE));
        }
    }
}

/* plugin_wait_end with its common case (answered at once, no record) inlined. */
static inline int
wait_end(struct plugin_wait *pw, struct conn *c, int v)
{
    if (pw->aw == NULL && v != MIDGE_PENDING) {
        atomic_store_explicit(&hook_slot(pw->id)->id, 0, memory_order_relaxed);
        return 0;
    }
    return plugin_wait_end(pw, c, v, NULL, 0);
}

/*
 * The ACL chain from position `start` about req. With `with_tickets` each hook
 * gets one and may answer PENDING (c->auth_wait is then set); without, a
 * PENDING answer is a plugin bug. With `forward` the chain is the
 * publish_accepted hooks instead of the acl hooks. [worker thread]
 */
static int
acl_chain(struct conn *c, const struct midge_acl_request *req, size_t start, int with_tickets,
          int forward, uint8_t *reason)
{
    struct worker *w = worker_current();
    size_t shard = (size_t)(w != NULL ? w->id : broker.nworkers) * PH_COUNT;
    struct midge_plugin *p;
    size_t idx = 0;

    *reason = 0;
    for (p = plugins; p != NULL; p = p->next, idx++) {
        int (*hook)(void *, midge_client *, const struct midge_acl_request *, uint8_t *,
                    midge_ticket *);
        struct plugin_wait pw;
        struct hook_metrics *m;
        midge_ticket *ticket = NULL;
        uint64_t t0 = 0;
        uint8_t r = 0;
        int v;

        if (forward) {
            hook = PLUGIN_HAS(p, publish_accepted) ? p->hooks->publish_accepted : NULL;
        } else {
            hook = PLUGIN_HAS(p, acl) ? p->hooks->acl : NULL;
        }
        if (idx < start || hook == NULL || !plugin_applies(p, c->listener)) {
            continue;
        }
        if (!forward && c->pslots != NULL) { /* a standing answer (api->client_acl_standing) */
            const struct plugin_slot *ps = &c->pslots[p->index];
            unsigned st = (ps->standing >> (2 * req->action)) & 3u;
            if (st != 0 && ps->standing_gen == atomic_load_explicit(&p->acl_reloads,
                                                                    memory_order_relaxed)) {
                if (st == 1) {
                    standing_subscribe_decided(c, req->action, idx);
                    return PLUGIN_ALLOW;
                }
                continue;
            }
        }
        if (with_tickets) {
            if (wait_begin(&pw, c, p, idx, PLUGIN_WAIT_ACL) < 0) {
                *reason = MQTT_RC_SERVER_UNAVAILABLE;
                return PLUGIN_DENY;
            }
            ticket = plugin_wait_ticket(&pw);
        }
        m = &p->metrics[shard + PH_ACL]; /* plugin_metrics() */
        if (STAT_GET(m, calls) % LAT_SAMPLE == 0) {
            t0 = now_ns();
        }
        v = hook(p->state, (midge_client *)c, req, &r, ticket);
        v = v == MIDGE_PENDING && !with_tickets
                ? acl_untimely_pending(p, req->action)
                : valid_verdict(p, forward ? "publish_accepted" : "acl", v, with_tickets);
        record_in(m, v, t0 ? now_ns() - t0 + 1 : 0);
        if (with_tickets && wait_end(&pw, c, v) < 0) {
            *reason = MQTT_RC_SERVER_UNAVAILABLE;
            return PLUGIN_DENY;
        }
        if (v == MIDGE_PENDING) {
            return PLUGIN_PENDING;
        }
        if (v == MIDGE_ALLOW || v == MIDGE_DENY) {
            if (!forward) {
                standing_subscribe_decided(c, req->action, idx);
            }
            *reason = v == MIDGE_DENY ? r : 0;
            return v == MIDGE_ALLOW ? PLUGIN_ALLOW : PLUGIN_DENY;
        }
    }
    return PLUGIN_ALLOW;
}

/* Runs the ACL chain synchronously; see plugin.h. [worker thread] */
int
plugin_acl(struct conn *c, int action, const char *topic, int qos, int retain,
           const uint8_t *payload, uint32_t payload_len, uint8_t *reason)
{
    struct midge_acl_request req;

    acl_request_fill(&req, action, topic, qos, retain, payload, payload_len);
    return acl_chain(c, &req, 0, 0, 0, reason);
}

/*
 * The chain with tickets (the publish_accepted one with `forward`) about req,
 * its topic the NUL-terminated copy of `topic`. [worker thread]
 */
static int
chain_about(struct conn *c, struct midge_acl_request *req, const char *topic, size_t topic_len,
            size_t start, int forward, uint8_t *reason)
{
    char buf[256];
    char *t = buf;
    int result;

    if (topic_len >= sizeof(buf) && (t = malloc(topic_len + 1)) == NULL) {
        *reason = MQTT_RC_SERVER_UNAVAILABLE;
        return PLUGIN_DENY;
    }
    memcpy(t, topic, topic_len);
    t[topic_len] = 0;
    req->topic = t;
    result = acl_chain(c, req, start, 1, forward, reason);
    if (t != buf) {
        free(t);
    }
    return result;
}

/* Runs the ACL chain with tickets; see plugin.h. [worker thread] */
int
plugin_acl_wait(struct conn *c, int action, const char *topic, size_t topic_len, int qos,
                int retain, const uint8_t *payload, uint32_t payload_len, size_t start,
                uint8_t *reason)
{
    struct midge_acl_request req;

    acl_request_fill(&req, action, NULL, qos, retain, payload, payload_len);
    return chain_about(c, &req, topic, topic_len, start, 0, reason);
}

/* The publish_accepted chain with the PUBLISH's properties; see plugin.h. [worker thread] */
int
plugin_forward_wait(struct conn *c, const char *topic, size_t topic_len,
                    const struct mqtt_publish *p, size_t start, uint8_t *reason)
{
    struct midge_acl_request req;
    uint8_t *props;
    uint32_t props_len;
    int result;

    if (msg_props_encode(&p->props, &props, &props_len) < 0) {
        *reason = MQTT_RC_SERVER_UNAVAILABLE;
        return PLUGIN_DENY;
    }
    acl_request_fill(&req, MIDGE_ACL_PUBLISH, NULL, p->qos, p->retain, p->payload.ptr,
                     p->payload.len);
    req.props = props;
    req.props_len = props_len;
    req.expiry = (p->props.present & MQTT_PBIT(MQTT_PROP_MESSAGE_EXPIRY)) ? p->props.message_expiry
                                                                          : 0;
    result = chain_about(c, &req, topic, topic_len, start, 1, reason);
    free(props);
    return result;
}

/* Gives the pending ACL decision its packet; see plugin.h. [worker thread] */
void
plugin_acl_hold(struct conn *c, struct acl_hold *h)
{
    struct auth_wait *aw = c->auth_wait;

    if (aw == NULL || aw->kind != PLUGIN_WAIT_ACL || aw->hold != NULL) {
        h->release(c, h); /* cannot happen: plugin_acl_wait just answered PENDING */
        return;
    }
    aw->hold = h;
}

/* client_connected hooks. [worker thread] */
void
plugin_client_connected(struct conn *c)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (PLUGIN_HAS(p, client_connected) && plugin_applies(p, c->listener)) {
            p->hooks->client_connected(p->state, (midge_client *)c);
        }
    }
}

/* client_disconnected hooks. [worker thread] */
void
plugin_client_disconnected(struct conn *c, int reason)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (PLUGIN_HAS(p, client_disconnected) && plugin_applies(p, c->listener)) {
            p->hooks->client_disconnected(p->state, (midge_client *)c, reason);
        }
    }
}

/* subscribed hooks, after the SUBACK. [worker thread] */
void
plugin_subscribed(struct conn *c, const char *filter, int qos)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (PLUGIN_HAS(p, subscribed) && plugin_applies(p, c->listener)) {
            p->hooks->subscribed(p->state, (midge_client *)c, filter, qos);
        }
    }
}

/* unsubscribed hooks. [worker thread] */
void
plugin_unsubscribed(struct conn *c, const char *filter)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (PLUGIN_HAS(p, unsubscribed) && plugin_applies(p, c->listener)) {
            p->hooks->unsubscribed(p->state, (midge_client *)c, filter);
        }
    }
}

/* session_created (created 1) / session_ended (0) hooks. [the session's worker] */
void
plugin_session_event(const char *client_id, int created)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (created && PLUGIN_HAS(p, session_created)) {
            p->hooks->session_created(p->state, client_id);
        } else if (!created && PLUGIN_HAS(p, session_ended)) {
            p->hooks->session_ended(p->state, client_id);
        }
    }
}

/* will_published hooks. [the session's worker] */
void
plugin_will_published(const char *client_id, const struct msg *will)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (PLUGIN_HAS(p, will_published)) {
            p->hooks->will_published(p->state, client_id, (const midge_message *)will);
        }
    }
}

/* The calling thread's metrics shard: workers by id, then one for every other thread. */
struct hook_metrics *
plugin_metrics(struct midge_plugin *p, int h)
{
    struct worker *w = worker_current();
    unsigned shard = w != NULL ? w->id : broker.nworkers;

    return &p->metrics[(size_t)shard * PH_COUNT + (size_t)h];
}

/* Sums an instance's shards. [main thread] */
void
plugin_metrics_sum(const struct midge_plugin *p, int h, struct hook_metrics *out)
{
    unsigned i;
    unsigned b;

    memset(out, 0, sizeof(*out));
    for (i = 0; i <= broker.nworkers; i++) {
        const struct hook_metrics *m = &p->metrics[(size_t)i * PH_COUNT + (size_t)h];
        STAT_ADD(out, calls, STAT_GET(m, calls));
        STAT_ADD(out, allow, STAT_GET(m, allow));
        STAT_ADD(out, deny, STAT_GET(m, deny));
        STAT_ADD(out, defer, STAT_GET(m, defer));
        STAT_ADD(out, pending, STAT_GET(m, pending));
        STAT_ADD(out, timeouts, STAT_GET(m, timeouts));
        for (b = 0; b < PLUGIN_LAT_BUCKETS; b++) {
            STAT_ADD(out, lat[b], STAT_GET(m, lat[b]));
        }
    }
}
