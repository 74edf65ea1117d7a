/*
 * Routing: from one published message to each subscriber's session, on the
 * session's own worker (DESIGN.md sections 1 and 2).
 */
#include "broker.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "msg.h"
#include "persist.h"
#include "plugin.h"
#include "retain.h"
#include "session.h"
#include "subs.h"
#include "worker.h"

struct broker broker;

/* A fresh non-zero uid. [any thread] */
uint64_t
broker_uid(void)
{
    return atomic_fetch_add(&broker.next_uid, 1) + 1;
}

/* The worker that owns the session of a client id. */
unsigned
broker_home_worker(const char *id, size_t len)
{
    return (unsigned)(hash_bytes(id, len) % broker.nworkers);
}

static int
match_cmp(const void *a, const void *b)
{
    const struct sub_match *x = a;
    const struct sub_match *y = b;

    if (x->uid != y->uid) {
        return x->uid < y->uid ? -1 : 1;
    }
    return (int)x->shared - (int)y->shared;
}

/* Hands one subscriber's copy to its session, here or on its worker. */
static void
dispatch(struct worker *w, struct msg *m, const struct sub_match *sm, uint8_t qos, uint8_t retain,
         const uint32_t *ids, uint16_t n_ids)
{
    struct witem it;
    uint64_t delivery_id = 0;

    if (sm->ps != NULL && qos > 0) {
        /* Announced here, on the publisher's thread, so its PUBACK can wait for it. */
        delivery_id = persist_queued(sm->ps->client_id, m, qos, retain);
    }
    if (w != NULL && sm->worker == w->id) {
        struct session *s = session_find_uid(w, sm->uid);
        if (s != NULL) {
            session_deliver_id(s, m, qos, retain, n_ids ? ids[0] : 0, ids + 1,
                               n_ids > 1 ? (uint16_t)(n_ids - 1) : 0, delivery_id);
        }
        return;
    }
    memset(&it, 0, sizeof(it));
    it.kind = WI_DELIVER;
    it.delivery_id = delivery_id;
    it.uid = sm->uid;
    it.qos = qos;
    it.retain = retain;
    it.n_ids = n_ids;
    it.sub_id = n_ids ? ids[0] : 0;
    if (n_ids > 1) {
        it.ids = malloc((n_ids - 1) * sizeof(uint32_t));
        if (it.ids == NULL) {
            return;
        }
        memcpy(it.ids, ids + 1, (n_ids - 1) * sizeof(uint32_t));
    }
    it.u.m = msg_ref(m);
    if (w != NULL) {
        worker_send(w, sm->worker, &it);
    } else {
        worker_post(sm->worker, &it);
    }
}

/*
 * Routes a message to every matching subscription: one copy per session at
 * the highest granted QoS, with every matching subscription id
 * [MQTT-3.3.4-2..5]; shared-group copies are separate. See broker.h.
 */
void
broker_route(struct msg *m, uint64_t publisher)
{
    struct worker *w = worker_current();
    struct sub_matches local = {0};
    struct sub_matches *ms = w ? &w->matches : &local;
    uint32_t idbuf[16];
    uint32_t *ids = idbuf;
    size_t idcap = 16;
    size_t i = 0;

    ms->n = 0;
    if (subs_match(m->topic, m->topic_len, ms) < 0 || ms->n == 0) {
        goto out;
    }
    if (ms->n > 1) {
        qsort(ms->v, ms->n, sizeof(*ms->v), match_cmp);
    }
    while (i < ms->n) {
        size_t j = i;
        int qos = -1;
        uint8_t retain = 0;
        uint16_t n_ids = 0;

        for (; j < ms->n && ms->v[j].uid == ms->v[i].uid && ms->v[j].shared == ms->v[i].shared;
             j++) {
            const struct sub_match *sm = &ms->v[j];
            int q;
            if ((sm->opts & SUBOPT_NO_LOCAL) && sm->uid == publisher) {
                continue; /* [MQTT-3.8.3-3] */
            }
            q = SUBOPT_QOS(sm->opts) < m->qos ? SUBOPT_QOS(sm->opts) : m->qos;
            qos = q > qos ? q : qos;
            /* Retain As Published, else RETAIN 0 on live delivery [MQTT-3.3.1-12, -9]. */
            if ((sm->opts & SUBOPT_RAP) && m->retain) {
                retain = 1;
            }
            if (sm->sub_id != 0) {
                if (n_ids == idcap) {
                    uint32_t *nv = malloc(idcap * 2 * sizeof(*nv));
                    if (nv == NULL) {
                        continue;
                    }
                    memcpy(nv, ids, idcap * sizeof(*nv));
                    if (ids != idbuf) {
                        free(ids);
                    }
                    ids = nv;
                    idcap *= 2;
                }
                ids[n_ids++] = sm->sub_id;
            }
        }
        if (qos >= 0) {
            dispatch(w, m, &ms->v[i], (uint8_t)qos, retain, ids, n_ids);
        }
        i = j;
    }
out:
    for (i = 0; persist_active && i < ms->n; i++) {
        subscriber_unref(ms->v[i].ps); /* references taken for persistent subscribers */
    }
    if (ids != idbuf) {
        free(ids);
    }
    free(local.v);
}

/* Publishes: updates the retained store, then routes. [any thread] */
void
broker_publish(struct msg *m, uint64_t publisher)
{
    if (m->retain && broker_cfg()->retain_available) {
        retain_set(m);
    }
    broker_route(m, publisher);
    if (atomic_load_explicit(&plugin_isubs_n, memory_order_relaxed) != 0) {
        plugin_internal_route(m);
    }
}
