/*
 * The fake broker's later ABI additions, driven through
 * tests/plugins/harness_probe.c: message ids, properties, expiry and
 * message_new; the persist and restore hooks with persist_durable and the
 * restore_* calls; internal sessions (open, subscribe, publish, deliveries
 * within the window, ack, redeliver, close and resume); and the plugin bugs
 * the harness reports for their misuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <midge/plugin.h>
#include <midge/plugin_test.h>

#include "../plugins/harness_probe.h"

struct fixture {
    midge_test_broker *fb;
    midge_plugin *p;
    struct probe *pr;
    const struct midge_api *api;
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
    assert_int_equal(midge_test_load(f->p), 0);
    f->pr = midge_test_state(f->p);
    f->api = midge_test_api(f->fb);
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

/* ---- Message ids, properties, expiry, message_new ------------------------- */

static void
test_message_extras(void **state)
{
    /* Content type "t" then user property k=v, as in a PUBLISH. */
    static const uint8_t props[] = {0x03, 0x00, 0x01, 't', 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v'};
    static const uint8_t bad_id[] = {0x23, 0x00, 0x01};       /* topic alias does not travel */
    static const uint8_t short_str[] = {0x03, 0x00, 0x05, 'a'}; /* length past the end */
    struct fixture *f = *state;
    midge_message *a = midge_test_message_new(f->fb, "a", "1", 1, 0, 0);
    midge_message *b = midge_test_message_new(f->fb, "b", "2", 1, 0, 0);
    const midge_message *m;
    const uint8_t *enc;
    uint32_t len;
    size_t pos = 0;
    const char *k;
    const char *v;
    size_t kl;
    size_t vl;

    assert_int_not_equal(f->api->message_id(a), 0);
    assert_int_not_equal(f->api->message_id(a), f->api->message_id(b));
    assert_int_equal(f->api->message_expiry(a), 0);
    assert_int_equal(midge_test_message_set_expiry(a, 90), 0);
    assert_int_equal(f->api->message_expiry(a), 90);
    /* User properties appear in the encoded properties too. */
    assert_int_equal(midge_test_message_add_user_property(b, "x", "y"), 0);
    enc = f->api->message_properties(b, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(enc, "\x26\x00\x01x\x00\x01y", 7);
    assert_null(f->api->message_properties(a, &len));
    assert_int_equal(len, 0);

    /* message_new: the caller owns one reference; properties are validated. */
    m = f->api->message_new(f->p, "c/d", "pay", 3, 2, 1, props, sizeof(props), 45, 0);
    assert_non_null(m);
    assert_string_equal(f->api->message_topic(m), "c/d");
    assert_int_equal(f->api->message_qos(m), 2);
    assert_int_equal(f->api->message_retain(m), 1);
    assert_int_equal(f->api->message_expiry(m), 45);
    enc = f->api->message_properties(m, &len);
    assert_int_equal(len, sizeof(props));
    assert_memory_equal(enc, props, sizeof(props));
    assert_int_equal(f->api->message_user_property_next(m, &pos, &k, &kl, &v, &vl), 1);
    assert_memory_equal(k, "k", kl);
    assert_memory_equal(v, "v", vl);
    assert_int_equal(midge_test_message_refs((midge_message *)m), 1);
    f->api->message_unref(m);
    /* A restored id is kept. */
    m = f->api->message_new(f->p, "c", NULL, 0, 0, 0, NULL, 0, 0, 4242);
    assert_int_equal(f->api->message_id(m), 4242);
    f->api->message_unref(m);
    assert_null(f->api->message_new(f->p, "c", NULL, 0, 0, 0, bad_id, sizeof(bad_id), 0, 0));
    assert_null(f->api->message_new(f->p, "c", NULL, 0, 0, 0, short_str, sizeof(short_str), 0,
                                    0));
    assert_null(f->api->message_new(f->p, "c/+", NULL, 0, 0, 0, NULL, 0, 0, 0));
    assert_null(f->api->message_new(f->p, "c", NULL, 1, 0, 0, NULL, 0, 0, 0));
    midge_test_message_free(a);
    midge_test_message_free(b);
    assert_int_equal(midge_test_unload_all(f->fb), 0);
}

static void
test_message_new_leak(void **state)
{
    struct fixture *f = *state;
    const midge_message *m = f->api->message_new(f->p, "lost", NULL, 0, 0, 0, NULL, 0, 0, 0);

    assert_non_null(m);
    /* The plugin never releases the message it made. */
    assert_int_equal(midge_test_unload_all(f->fb), 1);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "message on 'lost' still referenced 1 time(s)"), 1);
}

/* ---- Persistence ---------------------------------------------------------- */

static void
test_persist_events(void **state)
{
    struct fixture *f = *state;
    midge_message *m = midge_test_message_new(f->fb, "q/1", "x", 1, 1, 0);
    struct midge_persist_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = MIDGE_P_SESSION;
    ev.seq = 1;
    ev.client_id = "c1";
    ev.expiry = 60;
    assert_int_equal(midge_test_persist(f->p, &ev), 0);
    ev.type = MIDGE_P_MSG_QUEUED;
    ev.seq = 2;
    ev.msg = m;
    ev.delivery_id = 1;
    ev.qos = 1;
    assert_int_equal(midge_test_persist(f->p, &ev), 0);
    assert_int_equal(f->pr->persist_events, 2);
    assert_int_equal(f->pr->persist_last_type, MIDGE_P_MSG_QUEUED);
    /* The plugin keeps the message for its writer: a reference, not a copy. */
    assert_int_equal(midge_test_message_refs(m), 1);
    midge_test_message_free(m);
    assert_int_equal(midge_test_persist_durable(f->p), 0);
    probe_flush(f->pr);
    assert_int_equal(midge_test_persist_durable(f->p), 2);
    /* Durability moving back is a plugin bug. */
    f->api->persist_durable(f->p, 1);
    assert_int_equal(midge_test_persist_durable(f->p), 2);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->persist_durable(1) after 2"), 1);
    f->api->persist_failing(f->p, 1);
    assert_int_equal(midge_test_persist_failing(f->p), 1);
    f->api->persist_failing(f->p, 0);
    assert_int_equal(midge_test_persist_failing(f->p), 0);
    assert_int_equal(midge_test_unload_all(f->fb), 1);
}

static void
test_restore(void **state)
{
    struct fixture *f = *state;
    const struct midge_test_restored *r;
    uint32_t len;
    int i;

    assert_int_equal(midge_test_restore(f->p), 0);
    for (i = 0; i < 6; i++) {
        assert_int_equal(f->pr->restore_rc[i], 0);
    }
    /* Sessions first; QoS 0 is never persisted; a filter must be valid. */
    assert_int_equal(f->pr->restore_rc[6], -MIDGE_EINVAL);
    assert_int_equal(f->pr->restore_rc[7], -MIDGE_EINVAL);
    assert_int_equal(f->pr->restore_rc[8], -MIDGE_EINVAL);
    assert_int_equal(midge_test_restored_count(f->fb), 6);
    r = midge_test_restored(f->fb, 0);
    assert_int_equal(r->kind, MIDGE_TEST_R_SESSION);
    assert_string_equal(r->instance, "probe");
    assert_string_equal(r->client_id, "s1");
    assert_int_equal(r->expiry, 3600);
    assert_int_equal(r->protocol, 5);
    assert_int_equal(r->expires_in, 120);
    r = midge_test_restored(f->fb, 1);
    assert_int_equal(r->kind, MIDGE_TEST_R_SUBSCRIPTION);
    assert_string_equal(r->filter, "a/#");
    assert_int_equal(r->options, 1);
    r = midge_test_restored(f->fb, 2);
    assert_int_equal(r->kind, MIDGE_TEST_R_RETAINED);
    /* The plugin released its message; the broker's reference keeps it. */
    assert_string_equal(f->api->message_topic(r->msg), "a/state");
    assert_int_equal(f->api->message_id(r->msg), 77);
    assert_int_equal(f->api->message_expiry(r->msg), 30);
    assert_int_equal(f->pr->restored_msg_id, 77);
    f->api->message_properties(r->msg, &len);
    assert_int_equal(len, 20);
    assert_string_equal(midge_test_message_user_property(r->msg, "a", 0), "b");
    r = midge_test_restored(f->fb, 3);
    assert_int_equal(r->kind, MIDGE_TEST_R_MESSAGE);
    assert_int_equal(r->delivery_id, 7);
    assert_int_equal(r->state, MIDGE_DELIVERY_SENT);
    assert_int_equal(r->packet_id, 3);
    assert_int_equal(midge_test_restored(f->fb, 4)->kind, MIDGE_TEST_R_QOS2_IN);
    assert_int_equal(midge_test_restored(f->fb, 4)->packet_id, 9);
    assert_int_equal(midge_test_restored(f->fb, 5)->kind, MIDGE_TEST_R_WILL);
    assert_int_equal(midge_test_restored(f->fb, 5)->delay, 10);
    assert_null(midge_test_restored(f->fb, 6));
    /* Outside the restore hook. */
    assert_int_equal(f->api->restore_session(f->p, "s2", 0, 5, 0), -MIDGE_ESTATE);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->restore_session() called outside the restore "
                                       "hook"), 1);
    midge_test_restored_clear(f->fb);
    assert_int_equal(midge_test_restored_count(f->fb), 0);
    assert_int_equal(midge_test_unload_all(f->fb), 1);
}

static void
test_restore_refused(void **state)
{
    struct fixture *f = *state;

    f->pr->restore_fail = 1;
    assert_int_equal(midge_test_restore(f->p), -MIDGE_EINVAL);
    assert_string_equal(midge_test_error(f->p), "store is corrupt");
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* ---- Internal sessions ---------------------------------------------------- */

static void
store_result(void *arg, int result)
{
    *(int *)arg = result;
}

static void
test_isession(void **state)
{
    struct fixture *f = *state;
    midge_message *m1 = midge_test_message_new(f->fb, "bridge/a", "1", 1, 1, 0);
    midge_message *m2 = midge_test_message_new(f->fb, "bridge/b", "2", 1, 2, 0);
    midge_message *m3 = midge_test_message_new(f->fb, "bridge/c", "3", 1, 1, 0);
    midge_message *other = midge_test_message_new(f->fb, "elsewhere", "x", 1, 1, 0);
    const struct midge_test_message *pub;
    struct midge_test_isession info;
    int flags = 0;
    uint32_t first;

    assert_int_equal(probe_open_session(f->pr), 0);
    /* opened runs on the session's worker: when the test runs the opens. */
    assert_int_equal(f->pr->session_opened, 0);
    assert_int_equal(midge_test_run_sessions(f->fb), 1);
    assert_non_null(f->pr->session);
    assert_int_equal(f->pr->session_present, 0);
    assert_int_equal(f->pr->session_sub_rc, 0);
    assert_int_equal(midge_test_isession_subscription(f->fb, "bridge-1", "bridge/#", &flags), 1);
    assert_int_equal(flags, MIDGE_SUB_NO_LOCAL);
    pub = midge_test_published_find(f->fb, "bridge/hello");
    assert_non_null(pub);
    assert_string_equal(pub->session, "bridge-1");
    assert_int_equal(pub->qos, 1);
    /* ABI 1.1: a whole message published as the session, settled at once by the fake. */
    {
        const midge_message *full = f->api->message_new(f->p, "bridge/full", "f", 1, 2, 1, NULL,
                                                        0, 0, 0);
        int result = -1;
        assert_non_null(full);
        assert_int_equal(f->api->session_publish_message(f->pr->session, full, store_result,
                                                         &result), 0);
        assert_int_equal(result, 0);
        pub = midge_test_published_find(f->fb, "bridge/full");
        assert_non_null(pub);
        assert_string_equal(pub->session, "bridge-1");
        assert_int_equal(pub->qos, 2);
        assert_int_equal(pub->retain, 1);
        assert_int_equal(f->api->session_publish_message(f->pr->session, NULL, NULL, NULL),
                         -MIDGE_EINVAL);
        assert_int_equal(f->api->session_released(f->pr->session, 1), 0);
        f->api->message_unref(full);
    }

    /* Deliveries: QoS capped by the subscription, ids for QoS 1/2, a window of 2. */
    assert_int_equal(midge_test_isessions_deliver(f->fb, other), 0);
    assert_int_equal(midge_test_isessions_deliver(f->fb, m1), 1);
    first = f->pr->last_id;
    assert_int_not_equal(first, 0);
    assert_int_equal(midge_test_isessions_deliver(f->fb, m2), 1);
    assert_int_equal(f->pr->last_qos, 1);
    assert_int_equal(midge_test_isessions_deliver(f->fb, m3), 1);
    assert_int_equal(f->pr->deliveries, 2); /* the third waits for room */
    assert_int_equal(midge_test_isession(f->fb, "bridge-1", &info), 0);
    assert_int_equal(info.open, 1);
    assert_int_equal(info.window, 2);
    assert_int_equal(info.inflight, 2);
    assert_int_equal(info.waiting, 1);
    assert_int_equal(f->api->session_ack(f->pr->session, first), 0);
    assert_int_equal(f->pr->deliveries, 3);
    assert_string_equal(f->pr->last_topic, "bridge/c");
    assert_int_equal(f->api->session_ack(f->pr->session, first), -MIDGE_ENOENT);
    /* Redelivery of what is unacknowledged, in order, with dup. */
    f->api->session_redeliver(f->pr->session);
    assert_int_equal(f->pr->deliveries, 5);
    assert_int_equal(f->pr->last_dup, 1);
    assert_string_equal(f->pr->last_topic, "bridge/c");

    /* Closed but kept: messages wait, and a new open resumes it (present 1). */
    f->api->session_close(f->pr->session, 0);
    assert_int_equal(midge_test_isessions_deliver(f->fb, m1), 1);
    assert_int_equal(midge_test_isession(f->fb, "bridge-1", &info), 0);
    assert_int_equal(info.open, 0);
    f->api->session_ack(f->pr->session, 1); /* use after close */
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->session_ack() on internal session 'bridge-1' "
                                       "after session_close"), 1);
    f->pr->auto_ack = 1;
    assert_int_equal(probe_open_session(f->pr), 0);
    assert_int_equal(midge_test_run_sessions(f->fb), 1);
    assert_int_equal(f->pr->session_present, 1);
    /* Two still unacknowledged from before the close; the waiting one needs room. */
    f->api->session_redeliver(f->pr->session);
    assert_int_equal(midge_test_isession(f->fb, "bridge-1", &info), 0);
    assert_int_equal(info.inflight, 0);
    assert_int_equal(info.waiting, 0);
    /* Held by a handle: a second open gets NULL. */
    f->pr->session_opened = 0;
    assert_int_equal(probe_open_session(f->pr), 0);
    {
        midge_session *held = f->pr->session;
        assert_int_equal(midge_test_run_sessions(f->fb), 1);
        assert_null(f->pr->session);
        f->pr->session = held;
    }
    /* Ended: gone. */
    f->api->session_close(f->pr->session, 1);
    f->pr->session = NULL;
    assert_int_equal(midge_test_isession(f->fb, "bridge-1", &info), -MIDGE_ENOENT);
    assert_int_equal(f->api->session_open(f->p, "", 0, 1, NULL, NULL), -MIDGE_EINVAL);
    midge_test_message_free(m1);
    midge_test_message_free(m2);
    midge_test_message_free(m3);
    midge_test_message_free(other);
    assert_int_equal(midge_test_unload_all(f->fb), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_message_extras, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_new_leak, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_isession, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
