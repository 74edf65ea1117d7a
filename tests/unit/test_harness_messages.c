/*
 * The fake broker's ABI 1.0 additions around messages and authentication,
 * driven through tests/plugins/harness_probe.c: message accessors,
 * message_in edits and drops, message references (and leaks), message_out,
 * subscription/session/will events, internal subscriptions with MQTT topic
 * matching, MQTT 5 enhanced authentication (synchronous and PENDING), and
 * the plugin bugs the harness reports for their misuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>

#include <cmocka.h>

#include <midge/plugin.h>
#include <midge/plugin_test.h>

#include "../plugins/harness_probe.h"

#define WAIT_MS 10000u /* generous: sanitizers and loaded CI machines are slow */

struct fixture {
    midge_test_broker *fb;
    midge_plugin *p;
    struct probe *pr;
    const struct midge_api *api;
    midge_client *c;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->fb = midge_test_broker_new();
    assert_non_null(f->fb);
    f->p = midge_test_plugin_new(f->fb, MIDGE_TEST_LINKED_PLUGIN);
    assert_non_null(f->p);
    assert_int_equal(midge_test_option(f->p, "subscribe", "sensors/+/temp"), 0);
    assert_int_equal(midge_test_load(f->p), 0);
    f->pr = midge_test_state(f->p);
    f->api = midge_test_api(f->fb);
    f->c = midge_test_client_new(f->fb, "c1", "alice");
    assert_non_null(f->c);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    midge_test_broker_free(f->fb);
    free(f);
    return 0;
}

/* A message with a string payload. */
static midge_message *
msg_new(midge_test_broker *fb, const char *topic, const char *payload)
{
    midge_message *m = midge_test_message_new(fb, topic, payload, strlen(payload), 1, 0);

    assert_non_null(m);
    return m;
}

/* ---- Messages and message_in ------------------------------------------------ */

static void
test_message_new(void **state)
{
    struct fixture *f = *state;
    midge_message *m = msg_new(f->fb, "a/b", "xyz");
    const void *payload;
    uint32_t len = 99;
    size_t pos = 0;
    const char *k;
    const char *v;
    size_t kl;
    size_t vl;

    assert_int_equal(midge_test_message_add_user_property(m, "k", "v1"), 0);
    assert_int_equal(midge_test_message_add_user_property(m, "k", "v2"), 0);
    /* The plugin's accessors see what the test made. */
    assert_string_equal(f->api->message_topic(m), "a/b");
    payload = f->api->message_payload(m, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(payload, "xyz", 3);
    assert_int_equal(f->api->message_qos(m), 1);
    assert_int_equal(f->api->message_retain(m), 0);
    assert_int_equal(f->api->message_user_property_next(m, &pos, &k, &kl, &v, &vl), 1);
    assert_int_equal(kl, 1);
    assert_memory_equal(v, "v1", vl);
    assert_int_equal(f->api->message_user_property_next(m, &pos, &k, &kl, &v, &vl), 1);
    assert_memory_equal(v, "v2", vl);
    assert_int_equal(f->api->message_user_property_next(m, &pos, &k, &kl, &v, &vl), 0);
    assert_string_equal(midge_test_message_user_property(m, "k", 1), "v2");
    assert_null(midge_test_message_user_property(m, "k", 2));
    midge_test_message_free(m);

    /* An empty payload is NULL with length 0. */
    m = midge_test_message_new(f->fb, "a", NULL, 0, 0, 1);
    assert_null(f->api->message_payload(m, &len));
    assert_int_equal(len, 0);
    assert_int_equal(f->api->message_retain(m), 1);
    midge_test_message_free(m);
    /* Invalid topic names and QoS are refused [MQTT-3.3.2-2]. */
    assert_null(midge_test_message_new(f->fb, "a/+", "x", 1, 0, 0));
    assert_null(midge_test_message_new(f->fb, "a/#", "x", 1, 0, 0));
    assert_null(midge_test_message_new(f->fb, "", "x", 1, 0, 0));
    assert_null(midge_test_message_new(f->fb, "a", "x", 1, 3, 0));
    assert_int_equal(midge_test_unload_all(f->fb), 0);
}

static void
test_message_in_edits(void **state)
{
    struct fixture *f = *state;
    midge_plugin *p2 = midge_test_plugin_new(f->fb, MIDGE_TEST_LINKED_PLUGIN);
    midge_message *m = msg_new(f->fb, "rewrite/room1", "hello");
    midge_message *out = NULL;
    midge_message *out2 = NULL;
    const char *payload;
    size_t len;
    uint8_t reason = 0xff;

    assert_int_equal(midge_test_set_instance(p2, "probe2"), 0);
    assert_int_equal(midge_test_load(p2), 0);
    assert_int_equal(midge_test_message_add_user_property(m, "origin", "sensor"), 0);
    assert_int_equal(midge_test_message_in(f->p, f->c, m, &reason, &out), MIDGE_ALLOW);
    assert_int_equal(reason, 0);
    assert_string_equal(f->pr->first_prop, "origin=sensor");
    assert_int_equal(f->pr->bad_edit_rc, -MIDGE_EINVAL); /* "a/+" is not a topic name */
    /* The message continues with the edits applied; the original is unchanged. */
    assert_non_null(out);
    assert_ptr_not_equal(out, m);
    assert_string_equal(midge_test_message_topic(out), "rewritten/room1");
    payload = midge_test_message_payload(out, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(payload, "HELLO", 5);
    assert_int_equal(midge_test_message_user_property_count(out), 2);
    assert_string_equal(midge_test_message_user_property(out, "origin", 0), "sensor");
    assert_string_equal(midge_test_message_user_property(out, "seen-by", 0), "probe");
    assert_string_equal(midge_test_message_topic(m), "rewrite/room1");
    assert_int_equal(f->api->message_qos(out), 1);
    /* The next plugin in a chain sees the changed message; no edit: the same message. */
    assert_int_equal(midge_test_message_in(p2, f->c, out, NULL, &out2), MIDGE_DEFER);
    assert_ptr_equal(out2, out);
    midge_test_message_free(out2);
    midge_test_message_free(out);
    midge_test_message_free(m);
    assert_int_equal(midge_test_unload_all(f->fb), 0);
}

static void
test_message_in_drop(void **state)
{
    struct fixture *f = *state;
    midge_message *m = msg_new(f->fb, "drop/x", "");
    midge_message *out = m;
    uint8_t reason = 0;

    assert_int_equal(midge_test_message_in(f->p, f->c, m, &reason, &out), MIDGE_DENY);
    assert_int_equal(reason, 0x87);
    assert_null(out);
    midge_test_message_free(m);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_edit_outside_hook(void **state)
{
    struct fixture *f = *state;
    midge_message *m = msg_new(f->fb, "plain", "x");

    assert_int_equal(midge_test_message_in(f->p, f->c, m, NULL, NULL), MIDGE_DEFER);
    assert_non_null(f->pr->last_edit);
    /* The edit belongs to the hook that received it. */
    assert_int_equal(f->api->edit_topic(f->pr->last_edit, "b"), -MIDGE_ESTATE);
    assert_int_equal(f->api->edit_payload(f->pr->last_edit, "b", 1), -MIDGE_ESTATE);
    assert_int_equal(f->api->edit_user_property_add(f->pr->last_edit, "k", "v"), -MIDGE_ESTATE);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->edit_topic() outside the message_in hook"), 1);
    assert_int_equal(midge_test_bug_count(f->fb), 3);
    midge_test_message_free(m);
}

static void
test_message_refs(void **state)
{
    struct fixture *f = *state;
    midge_message *m = msg_new(f->fb, "keep/a", "kept");
    uint32_t len;

    assert_int_equal(midge_test_message_in(f->p, f->c, m, NULL, NULL), MIDGE_DEFER);
    assert_int_equal(midge_test_message_refs(m), 1);
    /* The test lets go; the plugin's reference keeps the message readable. */
    midge_test_message_free(m);
    assert_string_equal(f->api->message_topic(f->pr->kept), "keep/a");
    assert_memory_equal(f->api->message_payload(f->pr->kept, &len), "kept", 4);
    /* cleanup releases it: nothing leaked. */
    assert_int_equal(midge_test_unload_all(f->fb), 0);
    /* Now released: reading it or releasing again is a plugin bug. */
    assert_null(f->api->message_topic(m));
    f->api->message_unref(m);
    assert_int_equal(midge_test_bug_count(f->fb), 2);
}

static void
test_message_leak(void **state)
{
    struct fixture *f = *state;
    midge_message *m = msg_new(f->fb, "keep/b", "x");
    midge_message *other = msg_new(f->fb, "other", "x");

    assert_int_equal(midge_test_message_in(f->p, f->c, m, NULL, NULL), MIDGE_DEFER);
    f->pr->kept = NULL; /* the plugin forgets its reference */
    midge_test_message_free(m);
    /* The test's own references are not the plugin's business. */
    f->api->message_unref(other);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->message_unref() without a matching"), 1);
    assert_int_equal(midge_test_unload_all(f->fb), 2);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "message on 'keep/b' still referenced 1 time(s)"), 1);
    midge_test_message_free(other);
}

/* ---- The other message and event hooks ------------------------------------ */

static void
test_events(void **state)
{
    struct fixture *f = *state;
    midge_message *m = msg_new(f->fb, "out/1", "x");
    midge_message *will = msg_new(f->fb, "clients/c1/status", "gone");

    assert_int_equal(midge_test_message_out(f->p, f->c, m), 0);
    assert_int_equal(midge_test_message_out(f->p, f->c, m), 0);
    assert_int_equal(f->pr->out_count, 2);
    assert_string_equal(f->pr->out_topic, "out/1");
    assert_int_equal(midge_test_subscribed(f->p, f->c, "a/#", 1), 0);
    assert_string_equal(f->pr->subscribed, "a/#");
    assert_int_equal(f->pr->subscribed_qos, 1);
    assert_int_equal(midge_test_unsubscribed(f->p, f->c, "a/#"), 0);
    assert_string_equal(f->pr->unsubscribed, "a/#");
    assert_int_equal(midge_test_session_created(f->p, "c1"), 0);
    assert_int_equal(midge_test_session_ended(f->p, "c1"), 0);
    assert_int_equal(midge_test_session_ended(f->p, "c2"), 0);
    assert_int_equal(f->pr->sessions_created, 1);
    assert_int_equal(f->pr->sessions_ended, 2);
    assert_int_equal(midge_test_will_published(f->p, "c1", will), 0);
    assert_string_equal(f->pr->will_topic, "clients/c1/status");
    assert_string_equal(f->pr->will_payload, "gone");
    midge_test_message_free(m);
    midge_test_message_free(will);
    /* Not loaded. */
    midge_test_unload(f->p);
    assert_int_equal(midge_test_session_created(f->p, "c1"), -MIDGE_ESTATE);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static const struct midge_hooks no_hooks = {.size = sizeof(struct midge_hooks)};

static int
bare_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    *state = NULL;
    return api->hooks_set(self, &no_hooks);
}

static const struct midge_plugin_descriptor bare_desc = {
    sizeof(struct midge_plugin_descriptor), MIDGE_ABI_MAJOR, MIDGE_ABI_MINOR, "bare", "0",
    "no hooks", NULL,
};

static void
test_missing_hooks(void **state)
{
    struct fixture *f = *state;
    midge_plugin *p = midge_test_plugin_new(f->fb, &bare_desc, bare_init, NULL);
    midge_message *m = msg_new(f->fb, "t", "x");

    assert_int_equal(midge_test_load(p), 0);
    assert_int_equal(midge_test_message_in(p, f->c, m, NULL, NULL), -MIDGE_ENOTSUP);
    assert_int_equal(midge_test_message_out(p, f->c, m), -MIDGE_ENOTSUP);
    assert_int_equal(midge_test_will_published(p, "c1", m), -MIDGE_ENOTSUP);
    assert_int_equal(midge_test_subscribed(p, f->c, "t", 0), -MIDGE_ENOTSUP);
    assert_int_equal(midge_test_unsubscribed(p, f->c, "t"), -MIDGE_ENOTSUP);
    assert_int_equal(midge_test_session_created(p, "c1"), -MIDGE_ENOTSUP);
    assert_int_equal(midge_test_session_ended(p, "c1"), -MIDGE_ENOTSUP);
    assert_int_equal(midge_test_enhanced_auth(p, f->c, "TOY", NULL, 0, 0, 0, NULL, NULL),
                     -MIDGE_ENOTSUP);
    midge_test_message_free(m);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* ---- Internal subscriptions ------------------------------------------------ */

/* Topic matching, table-driven. */
static void
test_topic_matching(void **state)
{
    static const struct {
        const char *filter;
        const char *topic;
        int match;
    } cases[] = {
        {"sport/tennis/player1/#", "sport/tennis/player1", 1},        /* [MQTT-4.7.1-2] */
        {"sport/tennis/player1/#", "sport/tennis/player1/ranking", 1},
        {"sport/#", "sport", 1},
        {"#", "a/b/c", 1},
        {"sport/tennis/+", "sport/tennis/player1", 1},                /* [MQTT-4.7.1-3] */
        {"sport/tennis/+", "sport/tennis/player1/ranking", 0},
        {"sport/+", "sport", 0},
        {"sport/+", "sport/", 1},
        {"+/+", "/finance", 1},
        {"/+", "/finance", 1},
        {"+", "/finance", 0},
        {"#", "$SYS/broker", 0},                                       /* [MQTT-4.7.2-1] */
        {"+/monitor/Clients", "$SYS/monitor/Clients", 0},
        {"$SYS/#", "$SYS/broker", 1},
        {"$SYS/monitor/+", "$SYS/monitor/Clients", 1},
        {"a/b", "a/b", 1},
        {"a/b", "a/B", 0},
        {"sport/tennis#", "sport/tennis", 0},  /* invalid filter [MQTT-4.7.1-2] */
        {"sport/#/ranking", "sport/x/ranking", 0},
        {"sport+", "sport", 0},                /* invalid filter [MQTT-4.7.1-3] */
        {"$share/g/a", "a", 0},                /* not for internal subscriptions */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (midge_test_topic_matches(cases[i].filter, cases[i].topic) != cases[i].match) {
            fail_msg("filter '%s' topic '%s': expected %d", cases[i].filter, cases[i].topic,
                     cases[i].match);
        }
    }
}

static void
test_subscriptions(void **state)
{
    struct fixture *f = *state;
    midge_message *hit = msg_new(f->fb, "sensors/k1/temp", "21");
    midge_message *miss = msg_new(f->fb, "sensors/k1/hum", "40");
    midge_message *sys = msg_new(f->fb, "$SYS/broker/load", "1");

    /* init subscribed to plugin_opt_subscribe "sensors/+/temp". */
    assert_int_equal(midge_test_publish_to_subscriptions(f->fb, hit), 1);
    assert_int_equal(f->pr->sub_msgs, 1);
    assert_string_equal(f->pr->sub_topic, "sensors/k1/temp");
    assert_int_equal(midge_test_publish_to_subscriptions(f->fb, miss), 0);
    /* tick may subscribe too: "#" gets everything but $-topics [MQTT-4.7.2-1]. */
    snprintf(f->pr->tick_filter, sizeof(f->pr->tick_filter), "#");
    assert_int_equal(midge_test_tick(f->p), 0);
    assert_non_null(f->pr->tick_sub);
    assert_int_equal(midge_test_publish_to_subscriptions(f->fb, hit), 2);
    assert_int_equal(midge_test_publish_to_subscriptions(f->fb, miss), 1);
    assert_int_equal(midge_test_publish_to_subscriptions(f->fb, sys), 0);
    assert_int_equal(f->pr->sub_msgs, 4);
    /* Removed: no more callbacks. */
    f->api->unsubscribe(f->p, f->pr->tick_sub);
    assert_int_equal(midge_test_publish_to_subscriptions(f->fb, miss), 0);
    /* Bad filters: NULL, not a bug. */
    snprintf(f->pr->tick_filter, sizeof(f->pr->tick_filter), "$share/g/a");
    f->pr->tick_sub = NULL;
    assert_int_equal(midge_test_tick(f->p), 0);
    assert_null(f->pr->tick_sub);
    snprintf(f->pr->tick_filter, sizeof(f->pr->tick_filter), "a/#/b");
    assert_int_equal(midge_test_tick(f->p), 0);
    assert_null(f->pr->tick_sub);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
    /* Unloaded: its subscriptions are gone. */
    midge_test_unload(f->p);
    assert_int_equal(midge_test_publish_to_subscriptions(f->fb, hit), 0);
    midge_test_message_free(hit);
    midge_test_message_free(miss);
    midge_test_message_free(sys);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
on_nothing(void *arg, const midge_message *msg)
{
    (void)arg;
    (void)msg;
}

static void *
unsubscribe_thread(void *arg)
{
    struct fixture *f = arg;

    f->api->unsubscribe(f->p, f->pr->sub);
    return NULL;
}

static void
test_subscription_misuse(void **state)
{
    struct fixture *f = *state;
    midge_subscription *s;
    pthread_t th;

    /* Outside init, reload and tick (here: from the test, as if from a hook). */
    assert_null(f->api->subscribe(f->p, "a", on_nothing, NULL));
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->subscribe(\"a\") called outside init, reload and "
                                       "tick"), 1);
    /* unsubscribe is for the main thread. */
    assert_int_equal(pthread_create(&th, NULL, unsubscribe_thread, f), 0);
    pthread_join(th, NULL);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR, "api->unsubscribe() called from "
                                       "a thread other than the main thread"), 1);
    /* Twice. */
    s = f->pr->sub;
    f->api->unsubscribe(f->p, s);
    f->pr->sub = NULL;
    f->api->unsubscribe(f->p, s);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->unsubscribe() on a subscription already removed"),
                     1);
    assert_int_equal(midge_test_bug_count(f->fb), 3);
}

/* ---- Enhanced authentication ---------------------------------------------- */

static void
test_enhanced_auth_steps(void **state)
{
    struct fixture *f = *state;
    midge_ticket *t;
    const void *data;
    size_t len;
    uint8_t reason = 0xff;

    assert_int_equal(midge_test_client_set_password(f->c, "pw", 2), 0);
    /* Step 0: a challenge with AUTH 0x18. */
    assert_int_equal(midge_test_enhanced_auth(f->p, f->c, "TOY", NULL, 0, 0, 0, &reason, &t),
                     MIDGE_CONTINUE);
    assert_int_equal(f->pr->ea_data_rc, 0);
    assert_string_equal(f->pr->ea_password, "pw");
    data = midge_test_auth_data(t, &len);
    assert_int_equal(len, 9);
    assert_memory_equal(data, "challenge", 9);
    /* Step 1: the right response is accepted with final data. */
    assert_int_equal(midge_test_enhanced_auth(f->p, f->c, "TOY", "response", 8, 1, 0, &reason,
                                              &t),
                     MIDGE_ALLOW);
    assert_int_equal(f->pr->ea_step, 1);
    data = midge_test_auth_data(t, &len);
    assert_memory_equal(data, "final", 5);
    /* A wrong response is refused with 0x87; re-authentication is flagged. */
    assert_int_equal(midge_test_enhanced_auth(f->p, f->c, "TOY", "nope", 4, 1, 1, &reason, &t),
                     MIDGE_DENY);
    assert_int_equal(reason, 0x87);
    assert_int_equal(f->pr->ea_reauth, 1);
    assert_null(midge_test_auth_data(t, &len));
    assert_int_equal(len, 0);
    /* Not its method. */
    assert_int_equal(midge_test_enhanced_auth(f->p, f->c, "OTHER", NULL, 0, 0, 0, NULL, NULL),
                     MIDGE_DEFER);
    /* auth_data_set belongs to the enhanced_auth hook. */
    assert_int_equal(f->api->auth_data_set(f->c, "x", 1), -MIDGE_ESTATE);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR, "api->auth_data_set() for "
                                       "client 'c1' outside its enhanced_auth hook"), 1);
    assert_int_equal(midge_test_bug_count(f->fb), 1);
}

struct completer {
    const struct midge_api *api;
    midge_ticket *t;
    int rc;
};

static void *
complete_auth_thread(void *arg)
{
    struct completer *c = arg;

    c->rc = c->api->complete_auth(c->t, MIDGE_CONTINUE, 0, "next", 4);
    return NULL;
}

static void
test_enhanced_auth_pending(void **state)
{
    struct fixture *f = *state;
    struct completer comp = {f->api, NULL, -1};
    midge_ticket *t;
    pthread_t th;
    const void *data;
    size_t len;
    uint8_t reason = 0;

    assert_int_equal(midge_test_enhanced_auth(f->p, f->c, "ASYNC", "hi", 2, 0, 0, NULL, &t),
                     MIDGE_PENDING);
    assert_ptr_equal(f->pr->ea_ticket, t);
    /* complete_auth from another thread, with CONTINUE and data. */
    comp.t = t;
    assert_int_equal(pthread_create(&th, NULL, complete_auth_thread, &comp), 0);
    assert_int_equal(midge_test_wait(t, WAIT_MS, &reason), MIDGE_CONTINUE);
    pthread_join(th, NULL);
    assert_int_equal(comp.rc, 0);
    data = midge_test_auth_data(t, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "next", 4);
    /* Twice. */
    assert_int_equal(f->api->complete_auth(t, MIDGE_ALLOW, 0, NULL, 0), -MIDGE_ESTATE);
    assert_int_equal(midge_test_bug_count(f->fb), 1);
    /* api->complete has no CONTINUE: a plugin bug, applied as DENY. */
    assert_int_equal(midge_test_enhanced_auth(f->p, f->c, "ASYNC", NULL, 0, 1, 0, NULL, &t),
                     MIDGE_PENDING);
    assert_int_equal(f->api->complete(t, MIDGE_CONTINUE, 0), 0);
    assert_int_equal(midge_test_wait(t, 0, NULL), MIDGE_DENY);
    assert_int_equal(midge_test_bug_count(f->fb), 2);
    /* Nor has the plain auth hook. */
    assert_int_equal(midge_test_auth(f->p, f->c, "secret", 6, NULL, &t), MIDGE_PENDING);
    assert_int_equal(midge_test_wait_blocking(f->fb, WAIT_MS), 1); /* the probe completed it */
    assert_int_equal(midge_test_auth(f->p, f->c, "secret", 6, NULL, &t), MIDGE_PENDING);
    /* Completed before the probe's done runs (done waits for this thread). */
    assert_int_equal(f->api->complete_auth(t, MIDGE_CONTINUE, 0, NULL, 0), 0);
    assert_int_equal(midge_test_wait(t, 0, NULL), MIDGE_DENY);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR, "for the auth hook: treated as "
                                       "deny"), 1);
    assert_int_equal(midge_test_bug_count(f->fb), 3);
    /* ...so the probe's own complete is now the second one. */
    assert_int_equal(midge_test_wait_blocking(f->fb, WAIT_MS), 1);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR, "ticket completed twice"), 2);
    assert_int_equal(midge_test_bug_count(f->fb), 4);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_message_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_in_edits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_in_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_outside_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_leak, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_hooks, setup, teardown),
        cmocka_unit_test(test_topic_matching),
        cmocka_unit_test_setup_teardown(test_subscriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscription_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enhanced_auth_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enhanced_auth_pending, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
