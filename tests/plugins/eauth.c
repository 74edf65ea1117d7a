/*
 * Test plugin "eauth" (tests/integration/test_plugin_api.py): MQTT 5
 * enhanced authentication mechanisms through the enhanced_auth hook. The
 * shared secret is plugin_opt_secret (default "s3cret").
 *
 *   "midge-test-challenge"   challenge-response: the server sends a nonce in
 *     AUTH 0x18 (CONTINUE), the client answers reverse(nonce) + ":" + secret;
 *     right: ALLOW with data "welcome ID", wrong: DENY with reason 0 (the
 *     broker's 0x87). The nonce is kept with api->client_data_set.
 *   "midge-test-challenge2"  the same with two nonces (three steps).
 *   "midge-test-plain"       one step: data == secret -> ALLOW with data
 *     "plain-ok", else DENY 0x86.
 *   "midge-test-pending"     every step answers PENDING; a job on the
 *     blocking pool sleeps plugin_opt_delay_ms (default 200) and calls
 *     api->complete_auth from the pool thread: step 0 CONTINUE with data
 *     "challenge-p", step 1 ALLOW with "done-p" when the data is "answer-p",
 *     else DENY 0x87.
 *   "midge-test-never"       PENDING, and the ticket is never completed; except
 *     a first authentication with data "let-in" (ALLOW), so that a connected
 *     client can try a re-authentication that is never answered.
 *   any other method         DEFER.
 * Works the same for re-authentication (AUTH 0x19). Each ALLOW publishes
 * "eauth/allowed" payload "ID METHOD reauth=R user=U pw=P" (U, P "-" when
 * absent). client_connected publishes "eauth/connected/ID" payload
 * "auth_data_set=RC" with what api->auth_data_set returns outside the hook.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#endif
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "midge/plugin.h"

static const char *const options[] = {"secret", "delay_ms", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("eauth", "1.0", "test: enhanced authentication mechanisms", options);

struct state {
    const struct midge_api *api;
    midge_plugin *self;
    char secret[128];
    long delay_ms;
    atomic_uint nonces;
};

/* The nonce of a challenge in progress. Owned by the broker's client data slot. */
struct nonce {
    char v[32];
};

static int
is(const struct midge_enhanced_auth_request *req, const char *method)
{
    return strcmp(req->method, method) == 0;
}

static int
data_is(const struct midge_enhanced_auth_request *req, const char *s)
{
    return req->data != NULL && req->data_len == strlen(s) && memcmp(req->data, s, req->data_len) == 0;
}

static int
allow(struct state *s, midge_client *c, const struct midge_enhanced_auth_request *req,
      const char *data)
{
    char buf[512];

    if (data != NULL) {
        s->api->auth_data_set(c, data, (uint32_t)strlen(data));
    }
    snprintf(buf, sizeof(buf), "%s %s reauth=%d user=%s pw=%.*s", req->client_id, req->method,
             req->reauth, req->username != NULL ? req->username : "-",
             req->password != NULL ? (int)req->password_len : 1,
             req->password != NULL ? (const char *)req->password : "-");
    s->api->publish(s->self, "eauth/allowed", buf, (uint32_t)strlen(buf), 0, 0);
    return MIDGE_ALLOW;
}

static int
challenge(struct state *s, midge_client *c, const struct midge_enhanced_auth_request *req,
          uint8_t *reason, uint32_t rounds)
{
    struct nonce *n = s->api->client_data(s->self, c);
    char want[200];
    size_t len;
    size_t i;

    if (req->step > 0) {
        if (n == NULL) {
            *reason = 0;
            return MIDGE_DENY;
        }
        len = strlen(n->v);
        for (i = 0; i < len; i++) {
            want[i] = n->v[len - 1 - i];
        }
        snprintf(want + len, sizeof(want) - len, ":%s", s->secret);
        if (!data_is(req, want)) {
            s->api->log(s->self, MIDGE_LOG_NOTICE, "eauth: wrong answer client=%s step=%u",
                        req->client_id, (unsigned)req->step);
            *reason = 0; /* the broker's 0x87 */
            return MIDGE_DENY;
        }
        if (req->step == rounds) {
            char welcome[300];
            snprintf(welcome, sizeof(welcome), "welcome %s", req->client_id);
            s->api->client_data_set(s->self, c, NULL, NULL);
            return allow(s, c, req, welcome);
        }
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        *reason = 0x89;
        return MIDGE_DENY;
    }
    snprintf(n->v, sizeof(n->v), "n%u-%lx", atomic_fetch_add(&s->nonces, 1) + 1,
             (unsigned long)time(NULL));
    /* Setting again frees the previous nonce. */
    if (s->api->client_data_set(s->self, c, n, free) != 0) {
        free(n);
        *reason = 0x89;
        return MIDGE_DENY;
    }
    s->api->auth_data_set(c, n->v, (uint32_t)strlen(n->v));
    return MIDGE_CONTINUE;
}

/* A pending step answered from the pool. Owned by the job. */
struct pending {
    struct state *s;
    midge_ticket *ticket;
    uint32_t step;
    int answer_ok;
};

static void
pending_work(void *arg)
{
    struct pending *p = arg;
    struct state *s = p->s;
    struct timespec ts = {s->delay_ms / 1000, (s->delay_ms % 1000) * 1000000L};
    int rc;

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    if (p->step == 0) {
        rc = s->api->complete_auth(p->ticket, MIDGE_CONTINUE, 0, "challenge-p", 11);
    } else if (p->answer_ok) {
        rc = s->api->complete_auth(p->ticket, MIDGE_ALLOW, 0, "done-p", 6);
    } else {
        rc = s->api->complete_auth(p->ticket, MIDGE_DENY, 0x87, NULL, 0);
    }
    s->api->log(s->self, MIDGE_LOG_NOTICE, "eauth: completed step=%u from the pool: %d",
                (unsigned)p->step, rc);
    free(p);
}

static int
enhanced_auth(void *st, midge_client *c, const struct midge_enhanced_auth_request *req,
              uint8_t *reason, midge_ticket *ticket)
{
    struct state *s = st;

    s->api->log(s->self, MIDGE_LOG_INFO, "eauth: step client=%s method=%s step=%u reauth=%d",
                req->client_id, req->method, (unsigned)req->step, req->reauth);
    if (is(req, "midge-test-challenge")) {
        return challenge(s, c, req, reason, 1);
    }
    if (is(req, "midge-test-challenge2")) {
        return challenge(s, c, req, reason, 2);
    }
    if (is(req, "midge-test-plain")) {
        if (req->step == 0 && data_is(req, s->secret)) {
            return allow(s, c, req, "plain-ok");
        }
        *reason = 0x86;
        return MIDGE_DENY;
    }
    if (is(req, "midge-test-pending")) {
        struct pending *p = calloc(1, sizeof(*p));
        if (p == NULL) {
            *reason = 0x89;
            return MIDGE_DENY;
        }
        p->s = s;
        p->ticket = ticket;
        p->step = req->step;
        p->answer_ok = data_is(req, "answer-p");
        if (p->step > 0 && p->answer_ok) {
            /* Published here: the pool thread only completes. */
            allow(s, c, req, NULL);
        }
        if (s->api->run_blocking(s->self, pending_work, NULL, p) != 0) {
            free(p);
            *reason = 0x89;
            return MIDGE_DENY;
        }
        return MIDGE_PENDING;
    }
    if (is(req, "midge-test-never")) {
        if (!req->reauth && data_is(req, "let-in")) {
            return allow(s, c, req, NULL);
        }
        return MIDGE_PENDING;
    }
    return MIDGE_DEFER;
}

static void
connected(void *st, midge_client *c)
{
    struct state *s = st;
    char topic[300];
    char buf[64];

    snprintf(topic, sizeof(topic), "eauth/connected/%s", s->api->client_id(c));
    snprintf(buf, sizeof(buf), "auth_data_set=%d", s->api->auth_data_set(c, "x", 1));
    s->api->publish(s->self, topic, buf, (uint32_t)strlen(buf), 0, 0);
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .client_connected = connected,
    .enhanced_auth = enhanced_auth,
};

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *s = calloc(1, sizeof(*s));
    const char *v;

    if (s == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    s->api = api;
    s->self = self;
    v = api->option(self, "secret");
    snprintf(s->secret, sizeof(s->secret), "%s", v != NULL ? v : "s3cret");
    v = api->option(self, "delay_ms");
    s->delay_ms = v != NULL ? strtol(v, NULL, 10) : 200;
    if (s->delay_ms < 0 || s->delay_ms > 60000) {
        api->set_error(self, "delay_ms: expected 0..60000 milliseconds, got '%s'", v);
        free(s);
        return -MIDGE_EINVAL;
    }
    atomic_init(&s->nonces, 0);
    *state = s;
    return api->hooks_set(self, &hooks);
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    free(state);
}
