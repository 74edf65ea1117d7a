/*
 * Hooks of the fake broker: tickets and the decision hooks (auth, acl,
 * enhanced_auth) with api->complete(), api->complete_auth() and
 * api->auth_data_set(), and the drivers of the event hooks that take no
 * message (client, tick, thread, subscription and session events).
 *
 * The thread calling a midge_test_*() driver plays the worker thread: the
 * client's hook_thread marks it for the duration of the hook, so accessors
 * called from elsewhere are detected.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_internal.h"

/* Which decision hook a ticket is for. */
enum kind {
    K_AUTH,
    K_ACL,
    K_ENHANCED,
};

static const char *const kind_hook[] = {"auth", "acl", "enhanced_auth"};

/*
 * Completes t (api->complete and api->complete_auth). `data` is the
 * Authentication Data to send (copied), `fn` names the API function for
 * messages. Returns 0 or -MIDGE_ESTATE (plugin bug), -MIDGE_EINVAL, -MIDGE_ENOMEM.
 */
static int
complete_ticket(midge_ticket *t, int verdict, uint8_t reason, const void *data, uint32_t len,
                const char *fn)
{
    midge_test_broker *fb;
    const char *why = NULL;
    void *copy = NULL;
    int continue_ok;
    int closed = 0;
    int rc = 0;

    if (t == NULL) {
        rc = -MIDGE_EINVAL;
        goto out;
    }
    fb = t->fb;
    /* CONTINUE only makes sense as the answer of an enhanced_auth step. */
    continue_ok = strcmp(fn, "complete_auth") == 0 && strcmp(t->hook, "enhanced_auth") == 0;
    if (verdict != MIDGE_ALLOW && verdict != MIDGE_DENY && verdict != MIDGE_DEFER &&
        !(verdict == MIDGE_CONTINUE && continue_ok)) {
        /* As the broker does: a plugin bug, applied as DENY. */
        fake_bug(fb, t->plugin, "api->%s() with verdict %d (%s) for the %s hook: treated as deny",
                 fn, verdict, fake_verdict_name(verdict), t->hook);
        verdict = MIDGE_DENY;
    }
    if (data == NULL && len > 0) {
        fake_bug(fb, t->plugin, "api->%s() with NULL data of length %u", fn, (unsigned)len);
        len = 0;
    }
    if (data != NULL && (copy = fake_memdup(data, len)) == NULL) {
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    pthread_mutex_lock(&fb->lock);
    switch (t->state) {
    case T_RUNNING:
    case T_PENDING:
        t->state = T_DONE;
        t->verdict = verdict;
        t->reason = reason;
        /* The answer's data replaces what auth_data_set stored during the hook. */
        free(t->data);
        t->data = copy;
        t->data_len = copy != NULL ? len : 0;
        copy = NULL;
        pthread_cond_broadcast(&fb->cond);
        break;
    case T_DONE:
        why = "ticket completed twice";
        break;
    case T_CLOSED:
        why = "ticket completed although its hook did not return PENDING";
        closed = 1;
        break;
    case T_EXPIRED:
        why = "ticket completed after its timeout";
        break;
    case T_GONE:
        why = "ticket completed after its client left";
        break;
    default:
        why = "ticket completed after the instance was unloaded";
        break;
    }
    pthread_mutex_unlock(&fb->lock);
    if (why != NULL) {
        /* t->returned and t->hook no longer change once the hook returned. */
        if (closed) {
            fake_bug(fb, t->plugin, "%s (%s hook returned %s)", why, t->hook,
                     fake_verdict_name(t->returned));
        } else {
            fake_bug(fb, t->plugin, "%s (%s hook)", why, t->hook);
        }
        rc = -MIDGE_ESTATE;
    }
out:
    free(copy);
    return rc;
}

static int
api_complete(midge_ticket *t, int verdict, uint8_t reason)
{
    return complete_ticket(t, verdict, reason, NULL, 0, "complete");
}

static int
api_complete_auth(midge_ticket *t, int verdict, uint8_t reason, const void *data, uint32_t len)
{
    return complete_ticket(t, verdict, reason, data, len, "complete_auth");
}

static int
api_auth_data_set(midge_client *c, const void *data, uint32_t len)
{
    midge_ticket *t;
    void *copy = NULL;
    int rc = -MIDGE_ESTATE;

    if (c == NULL) {
        return -MIDGE_EINVAL;
    }
    t = c->auth_ticket;
    if (t == NULL || atomic_load(&c->hook_thread) != fake_this_thread()) {
        fake_bug(c->fb, NULL, "api->auth_data_set() for client '%s' outside its enhanced_auth "
                 "hook (use api->complete_auth() to answer later)", c->id);
        goto out;
    }
    rc = -MIDGE_EINVAL;
    if (data == NULL && len > 0) {
        fake_bug(c->fb, t->plugin, "api->auth_data_set() with NULL data of length %u",
                 (unsigned)len);
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    if ((copy = fake_memdup(data != NULL ? data : "", len)) == NULL) {
        goto out;
    }
    pthread_mutex_lock(&c->fb->lock);
    free(t->data);
    t->data = copy;
    t->data_len = len;
    pthread_mutex_unlock(&c->fb->lock);
    rc = 0;
out:
    return rc;
}

/* The entries of the API table that this file implements. */
void
fake_hooks_api_fill(struct midge_api *a)
{
    a->complete = api_complete;
    a->complete_auth = api_complete_auth;
    a->auth_data_set = api_auth_data_set;
}

/* Tickets of p still pending can no longer complete (p was unloaded). */
void
fake_tickets_unload(midge_plugin *p)
{
    midge_ticket *t;

    pthread_mutex_lock(&p->fb->lock);
    for (t = p->fb->tickets; t != NULL; t = t->next) {
        if (t->plugin == p && (t->state == T_RUNNING || t->state == T_PENDING)) {
            t->state = T_UNLOADED;
        }
    }
    pthread_cond_broadcast(&p->fb->cond);
    pthread_mutex_unlock(&p->fb->lock);
}

/* Frees every ticket (with the broker). */
void
fake_tickets_free(midge_test_broker *fb)
{
    while (fb->tickets != NULL) {
        midge_ticket *t = fb->tickets;
        fb->tickets = t->next;
        free(t->data);
        free(t);
    }
}

/* ---- Running hooks -------------------------------------------------------- */

/* A heap copy of n bytes (NULL stays NULL), so ASan sees a plugin keeping borrowed data. */
void *
fake_borrowed_copy(const void *src, size_t n, int *oom)
{
    char *d;

    if (src == NULL) {
        return NULL;
    }
    d = malloc(n + 1);
    if (d == NULL) {
        *oom = 1;
        return NULL;
    }
    memcpy(d, src, n);
    d[n] = '\0';
    return d;
}

/* Frees a borrowed copy after scribbling over it, so kept pointers show garbage without ASan. */
void
fake_borrowed_free(void *p, size_t n)
{
    if (p != NULL) {
        memset(p, 0x5a, n);
        free(p);
    }
}

/*
 * Runs one decision hook of kind `k` with a fresh ticket; `req` is the
 * request struct of that hook.
 */
static int
decide(midge_plugin *p, midge_client *c, enum kind k, const void *req, uint8_t *reason,
       midge_ticket **ticket)
{
    midge_test_broker *fb = p->fb;
    midge_ticket *t = NULL;
    uint8_t r = 0;
    int early = 0;
    int top = k == K_ENHANCED ? MIDGE_CONTINUE : MIDGE_PENDING;
    int has;
    int rc;

    if (ticket != NULL) {
        *ticket = NULL;
    }
    if (reason != NULL) {
        *reason = 0;
    }
    if (!p->loaded) {
        rc = -MIDGE_ESTATE;
        goto out;
    }
    has = k == K_AUTH  ? HOOK_HAS(p, auth)
          : k == K_ACL ? HOOK_HAS(p, acl)
                       : HOOK_HAS(p, enhanced_auth);
    if (!has) {
        rc = -MIDGE_ENOTSUP;
        goto out;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    t->fb = fb;
    t->plugin = p;
    t->client = c;
    t->hook = kind_hook[k];
    t->state = T_RUNNING;
    pthread_mutex_lock(&fb->lock);
    t->next = fb->tickets;
    fb->tickets = t;
    pthread_mutex_unlock(&fb->lock);

    atomic_store(&c->hook_thread, fake_this_thread());
    if (k == K_AUTH) {
        rc = p->hooks->auth(p->state, c, req, &r, t);
    } else if (k == K_ACL) {
        /* As the broker: a ticket for everything but RECEIVE, which runs per delivery. */
        int receive = ((const struct midge_acl_request *)req)->action == MIDGE_ACL_RECEIVE;
        rc = p->hooks->acl(p->state, c, req, &r, receive ? NULL : t);
    } else {
        c->auth_ticket = t;
        rc = p->hooks->enhanced_auth(p->state, c, req, &r, t);
        c->auth_ticket = NULL;
    }
    atomic_store(&c->hook_thread, 0);

    if (rc < MIDGE_DEFER || rc > top) {
        fake_bug(fb, p, "%s hook returned %d: ALLOW, DENY, DEFER%s or PENDING expected", t->hook,
                 rc, k == K_ENHANCED ? ", CONTINUE" : "");
    }
    pthread_mutex_lock(&fb->lock);
    t->returned = rc;
    if (rc == MIDGE_PENDING && t->state == T_RUNNING) {
        /* RECEIVE does not wait: PENDING there is the timeout verdict at once. */
        t->state = k == K_ACL && ((const struct midge_acl_request *)req)->action ==
                                     MIDGE_ACL_RECEIVE
                       ? T_EXPIRED
                       : T_PENDING;
    } else if (rc != MIDGE_PENDING && t->state == T_RUNNING) {
        t->state = T_CLOSED;
    } else if (rc != MIDGE_PENDING && t->state == T_DONE) {
        early = 1;
    }
    pthread_mutex_unlock(&fb->lock);
    if (early) {
        fake_bug(fb, p, "ticket completed during the %s hook, which then returned %s, not PENDING",
                 t->hook, fake_verdict_name(rc));
    }
    if (reason != NULL) {
        *reason = r;
    }
    if (ticket != NULL) {
        *ticket = t;
    }
out:
    return rc;
}

/* Runs the auth hook; see plugin_test.h. */
int
midge_test_auth(midge_plugin *p, midge_client *c, const void *password, size_t password_len,
                uint8_t *reason, midge_ticket **ticket)
{
    struct midge_auth_request req;
    char *id = NULL;
    char *user = NULL;
    uint8_t *pw = NULL;
    int oom = 0;
    int rc = -MIDGE_EINVAL;

    memset(&req, 0, sizeof(req));
    if (p == NULL || c == NULL || password_len > UINT32_MAX) {
        goto out;
    }
    id = fake_borrowed_copy(c->id, strlen(c->id), &oom);
    user = c->username != NULL ? fake_borrowed_copy(c->username, strlen(c->username), &oom) : NULL;
    pw = fake_borrowed_copy(password, password_len, &oom);
    if (oom) {
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    req.size = sizeof(req);
    req.client_id = id;
    req.username = user;
    req.password = pw;
    req.password_len = pw != NULL ? (uint32_t)password_len : 0;
    rc = decide(p, c, K_AUTH, &req, reason, ticket);
out:
    fake_borrowed_free(id, id != NULL ? strlen(id) : 0);
    fake_borrowed_free(user, user != NULL ? strlen(user) : 0);
    fake_borrowed_free(pw, pw != NULL ? password_len : 0);
    return rc;
}

/* Runs the ACL hook; see plugin_test.h. */
int
midge_test_acl(midge_plugin *p, midge_client *c, const struct midge_acl_request *req,
               uint8_t *reason, midge_ticket **ticket)
{
    struct midge_acl_request r;
    char *topic = NULL;
    uint8_t *payload = NULL;
    int oom = 0;
    int rc = -MIDGE_EINVAL;

    if (p == NULL || c == NULL || req == NULL || req->topic == NULL) {
        goto out;
    }
    r = *req;
    if (r.size == 0 || r.size > sizeof(r)) {
        r.size = sizeof(r);
    }
    topic = fake_borrowed_copy(req->topic, strlen(req->topic), &oom);
    payload = fake_borrowed_copy(req->payload, req->payload_len, &oom);
    if (oom) {
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    r.topic = topic;
    r.payload = payload;
    rc = decide(p, c, K_ACL, &r, reason, ticket);
out:
    fake_borrowed_free(topic, topic != NULL ? strlen(topic) : 0);
    fake_borrowed_free(payload, payload != NULL ? req->payload_len : 0);
    return rc;
}

/* Runs the enhanced_auth hook; see plugin_test.h. */
int
midge_test_enhanced_auth(midge_plugin *p, midge_client *c, const char *method, const void *data,
                         size_t len, uint32_t step, int reauth, uint8_t *reason,
                         midge_ticket **ticket)
{
    struct midge_enhanced_auth_request req;
    char *m = NULL;
    uint8_t *d = NULL;
    char *id = NULL;
    char *user = NULL;
    uint8_t *pw = NULL;
    int oom = 0;
    int rc = -MIDGE_EINVAL;

    memset(&req, 0, sizeof(req));
    if (reason != NULL) {
        *reason = 0;
    }
    if (ticket != NULL) {
        *ticket = NULL;
    }
    if (p == NULL || c == NULL || method == NULL || len > UINT32_MAX || (data == NULL && len > 0)) {
        goto out;
    }
    m = fake_borrowed_copy(method, strlen(method), &oom);
    d = fake_borrowed_copy(data, len, &oom);
    id = fake_borrowed_copy(c->id, strlen(c->id), &oom);
    user = c->username != NULL ? fake_borrowed_copy(c->username, strlen(c->username), &oom)
                               : NULL;
    pw = fake_borrowed_copy(c->password, c->password_len, &oom);
    if (oom) {
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    req.size = sizeof(req);
    req.method = m;
    req.data = d;
    req.data_len = d != NULL ? (uint32_t)len : 0;
    req.step = step;
    req.reauth = reauth ? 1 : 0;
    req.client_id = id;
    req.username = user;
    req.password = pw;
    req.password_len = pw != NULL ? (uint32_t)c->password_len : 0;
    rc = decide(p, c, K_ENHANCED, &req, reason, ticket);
out:
    fake_borrowed_free(m, m != NULL ? strlen(m) : 0);
    fake_borrowed_free(d, d != NULL ? len : 0);
    fake_borrowed_free(id, id != NULL ? strlen(id) : 0);
    fake_borrowed_free(user, user != NULL ? strlen(user) : 0);
    fake_borrowed_free(pw, pw != NULL ? c->password_len : 0);
    return rc;
}

/* The Authentication Data of a step's answer; see plugin_test.h. */
const void *
midge_test_auth_data(midge_ticket *t, size_t *len)
{
    const void *d = NULL;
    size_t n = 0;

    if (t != NULL) {
        pthread_mutex_lock(&t->fb->lock);
        d = t->data;
        n = t->data_len;
        pthread_mutex_unlock(&t->fb->lock);
    }
    if (len != NULL) {
        *len = n;
    }
    return d;
}

/* Waits for complete(); see plugin_test.h. */
int
midge_test_wait(midge_ticket *t, unsigned timeout_ms, uint8_t *reason)
{
    midge_test_broker *fb;
    struct timespec until = fake_deadline_in(timeout_ms);
    int pump;
    int rc = -MIDGE_EINVAL;

    if (t == NULL) {
        goto out;
    }
    fb = t->fb;
    /* The main thread's loop keeps running while it waits: done callbacks of
     * run_blocking jobs (which often complete the ticket) run here. */
    pump = fake_this_thread() == fb->main_thread;
    pthread_mutex_lock(&fb->lock);
    while (t->state == T_RUNNING || t->state == T_PENDING) {
        if (pump && fb->done_head != NULL) {
            pthread_mutex_unlock(&fb->lock);
            midge_test_run_done(fb);
            pthread_mutex_lock(&fb->lock);
            continue;
        }
        if (pthread_cond_timedwait(&fb->cond, &fb->lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    if (t->state == T_DONE) {
        rc = t->verdict;
        if (reason != NULL) {
            *reason = t->reason;
        }
    } else if (t->state == T_RUNNING || t->state == T_PENDING) {
        rc = MIDGE_TEST_TIMEDOUT;
    } else {
        rc = -MIDGE_ESTATE;
    }
    pthread_mutex_unlock(&fb->lock);
out:
    return rc;
}

/* Simulates plugin_timeout; see plugin_test.h. */
int
midge_test_expire(midge_ticket *t)
{
    int rc = -MIDGE_ESTATE;

    if (t == NULL) {
        return -MIDGE_EINVAL;
    }
    pthread_mutex_lock(&t->fb->lock);
    if (t->state == T_PENDING) {
        t->state = T_EXPIRED;
        pthread_cond_broadcast(&t->fb->cond);
        rc = 0;
    }
    pthread_mutex_unlock(&t->fb->lock);
    return rc;
}

/* Runs the client_connected hook; see plugin_test.h. */
int
midge_test_client_connected(midge_plugin *p, midge_client *c)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, client_connected)) {
        return -MIDGE_ENOTSUP;
    }
    atomic_store(&c->hook_thread, fake_this_thread());
    p->hooks->client_connected(p->state, c);
    atomic_store(&c->hook_thread, 0);
    return 0;
}

/* Runs the client_disconnected hook; see plugin_test.h. */
int
midge_test_client_disconnected(midge_plugin *p, midge_client *c, int reason)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (HOOK_HAS(p, client_disconnected)) {
        atomic_store(&c->hook_thread, fake_this_thread());
        p->hooks->client_disconnected(p->state, c, reason);
        atomic_store(&c->hook_thread, 0);
    }
    /* The connection ended: the broker frees the instance's per-client data now. */
    fake_client_data_release(c, p);
    return HOOK_HAS(p, client_disconnected) ? 0 : -MIDGE_ENOTSUP;
}

/* Runs the tick hook; see plugin_test.h. */
int
midge_test_tick(midge_plugin *p)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, tick)) {
        return -MIDGE_ENOTSUP;
    }
    atomic_store(&p->tick_thread, fake_this_thread());
    p->hooks->tick(p->state);
    atomic_store(&p->tick_thread, 0);
    return 0;
}

/* Runs the thread_start hook on the calling thread; see plugin_test.h. */
int
midge_test_thread_start(midge_plugin *p, unsigned worker)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, thread_start)) {
        return -MIDGE_ENOTSUP;
    }
    p->hooks->thread_start(p->state, worker);
    return 0;
}

/* Runs the thread_stop hook on the calling thread; see plugin_test.h. */
int
midge_test_thread_stop(midge_plugin *p, unsigned worker)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, thread_stop)) {
        return -MIDGE_ENOTSUP;
    }
    p->hooks->thread_stop(p->state, worker);
    return 0;
}


/* Runs a hook about client c (subscribed/unsubscribed) with a borrowed copy of `filter`. */
static int
filter_event(midge_plugin *p, midge_client *c, const char *filter, int qos, int sub)
{
    char *f = NULL;
    int oom = 0;
    int rc = -MIDGE_ESTATE;

    if (p == NULL || c == NULL || filter == NULL) {
        rc = -MIDGE_EINVAL;
        goto out;
    }
    if (!p->loaded) {
        goto out;
    }
    rc = -MIDGE_ENOTSUP;
    if (sub ? !HOOK_HAS(p, subscribed) : !HOOK_HAS(p, unsubscribed)) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    if ((f = fake_borrowed_copy(filter, strlen(filter), &oom)) == NULL) {
        goto out;
    }
    atomic_store(&c->hook_thread, fake_this_thread());
    if (sub) {
        p->hooks->subscribed(p->state, c, f, qos);
    } else {
        p->hooks->unsubscribed(p->state, c, f);
    }
    atomic_store(&c->hook_thread, 0);
    rc = 0;
out:
    fake_borrowed_free(f, f != NULL ? strlen(f) : 0);
    return rc;
}

/* Runs the subscribed hook; see plugin_test.h. */
int
midge_test_subscribed(midge_plugin *p, midge_client *c, const char *filter, int qos)
{
    return filter_event(p, c, filter, qos, 1);
}

/* Runs the unsubscribed hook; see plugin_test.h. */
int
midge_test_unsubscribed(midge_plugin *p, midge_client *c, const char *filter)
{
    return filter_event(p, c, filter, 0, 0);
}

/* Runs session_created (created 1) or session_ended with a borrowed copy of the id. */
static int
session_event(midge_plugin *p, const char *client_id, int created)
{
    char *id = NULL;
    int oom = 0;
    int rc = -MIDGE_ESTATE;

    if (p == NULL || client_id == NULL) {
        rc = -MIDGE_EINVAL;
        goto out;
    }
    if (!p->loaded) {
        goto out;
    }
    rc = -MIDGE_ENOTSUP;
    if (created ? !HOOK_HAS(p, session_created) : !HOOK_HAS(p, session_ended)) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    if ((id = fake_borrowed_copy(client_id, strlen(client_id), &oom)) == NULL) {
        goto out;
    }
    if (created) {
        p->hooks->session_created(p->state, id);
    } else {
        p->hooks->session_ended(p->state, id);
    }
    rc = 0;
out:
    fake_borrowed_free(id, id != NULL ? strlen(id) : 0);
    return rc;
}

/* Runs the session_created hook; see plugin_test.h. */
int
midge_test_session_created(midge_plugin *p, const char *client_id)
{
    return session_event(p, client_id, 1);
}

/* Runs the session_ended hook; see plugin_test.h. */
int
midge_test_session_ended(midge_plugin *p, const char *client_id)
{
    return session_event(p, client_id, 0);
}
