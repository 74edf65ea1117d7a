/*
 * The acl-json plugin glue against the fake broker (midge/plugin_test.h):
 * options, the mapping of the broker's actions, the reason code, SIGHUP
 * reload (a bad file keeps the old rules), and the denial log (once per
 * client, action and topic, at info level, with the deciding rule; bounded).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <midge/plugin.h>
#include <midge/plugin_test.h>

#include "acl_denylog.h"
#include "test_acl_json.h"

#define RULES_A                                                                                 \
    "{ \"default\": { \"publish\": \"deny\", \"subscribe\": \"deny\" },\n"                      \
    "  \"users\": { \"alice\": { \"rules\": [\n"                                                \
    "    { \"topic\": \"a/#\", \"allow\": [\"publish\", \"subscribe\"] },\n"                    \
    "    { \"topic\": \"secret/#\", \"deny\": [\"receive\"] },\n"                               \
    "    { \"topic\": \"noretain/#\", \"deny\": [\"retain\"] } ] } } }\n"
#define RULES_B                                                                                 \
    "{ \"default\": { \"publish\": \"deny\", \"subscribe\": \"deny\" },\n"                      \
    "  \"users\": { \"alice\": { \"rules\": [\n"                                                \
    "    { \"topic\": \"b/#\", \"allow\": [\"publish\", \"subscribe\"] } ] } } }\n"

struct fixture {
    midge_test_broker *fb;
    midge_plugin *p;
    midge_client *alice;
    char path[64];
};

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    int fd;

    assert_non_null(f);
    snprintf(f->path, sizeof(f->path), "/tmp/acl-json-test-XXXXXX");
    fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    write_file(f->path, RULES_A);
    f->fb = midge_test_broker_new();
    assert_non_null(f->fb);
    f->p = midge_test_plugin_new(f->fb, MIDGE_TEST_LINKED_PLUGIN);
    assert_non_null(f->p);
    f->alice = midge_test_client_new(f->fb, "c1", "alice");
    assert_non_null(f->alice);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(midge_test_bug_count(f->fb), 0);
    midge_test_broker_free(f->fb);
    unlink(f->path);
    free(f);
    return 0;
}

static int
ask(struct fixture *f, midge_client *c, int action, const char *topic, int retain,
    uint8_t *reason)
{
    struct midge_acl_request req;

    memset(&req, 0, sizeof(req));
    req.action = action;
    req.topic = topic;
    req.retain = retain;
    return midge_test_acl(f->p, c, &req, reason, NULL);
}

static int
load(struct fixture *f)
{
    assert_int_equal(midge_test_option(f->p, "acl_file", f->path), 0);
    return midge_test_load(f->p);
}

/* Without plugin_opt_acl_file the plugin refuses to start and says why. */
static void
requires_acl_file(void **state)
{
    struct fixture *f = *state;

    assert_true(midge_test_load(f->p) < 0);
    assert_string_equal(midge_test_error(f->p),
                        "plugin_opt_acl_file is required (the JSON rule file)");
}

/* A bad file at start: the broker shows the loader's message with its place. */
static void
bad_file_at_start(void **state)
{
    struct fixture *f = *state;
    char want[256];

    write_file(f->path, "{\"users\": {\"alice\": {\"rules\": [{\"topic\": \"a\", \"allow\": [\"x\"]}]}}}");
    assert_true(load(f) < 0);
    snprintf(want, sizeof(want),
             "%s: users.alice.rules[0].allow[0]: unknown action \"x\" (publish, subscribe, "
             "receive or retain)", f->path);
    assert_string_equal(midge_test_error(f->p), want);
}

/* Allowed: ALLOW; denied: DENY with 0x87 (Not authorized) for the PUBACK/SUBACK. */
static void
verdicts_and_reason(void **state)
{
    struct fixture *f = *state;
    uint8_t reason = 0;

    assert_int_equal(load(f), 0);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "a/1", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "b/1", 0, &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x87);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_SUBSCRIBE, "a/+", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_SUBSCRIBE, "+/+", 0, &reason), MIDGE_DENY);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_RECEIVE, "secret/x", 0, &reason), MIDGE_DENY);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_RECEIVE, "b/x", 0, &reason), MIDGE_ALLOW);
    /* The per-connection memo of the last allowed topic matches whole topics only. */
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "a", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "a", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "ab", 0, &reason), MIDGE_DENY);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_SUBSCRIBE, "a", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_RECEIVE, "a", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_RETAIN, "a", 1, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_RECEIVE, "secret/x", 0, &reason), MIDGE_DENY);
    /* Each connection is resolved on its own: same topic, another user. */
    {
        midge_client *anon = midge_test_client_new(f->fb, "c9", NULL);
        assert_int_equal(ask(f, anon, MIDGE_ACL_PUBLISH, "a", 0, &reason), MIDGE_DENY);
    }
}

/* A will is checked as a publish; RETAIN is its own action; $share/G/ is stripped. */
static void
action_mapping(void **state)
{
    struct fixture *f = *state;
    uint8_t reason = 0;

    assert_int_equal(load(f), 0);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_WILL, "a/will", 1, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_WILL, "b/will", 0, &reason), MIDGE_DENY);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_RETAIN, "a/x", 1, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_RETAIN, "noretain/x", 1, &reason), MIDGE_DENY);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_SUBSCRIBE, "$share/g/a/#", 0, &reason),
                     MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_SUBSCRIBE, "$share/g/b/#", 0, &reason),
                     MIDGE_DENY);
    assert_int_equal(ask(f, f->alice, 99, "a/x", 0, &reason), MIDGE_DEFER);
}

/* One info line per client, action and topic, naming the rule; repeats are silent. */
static void
denial_logged_once(void **state)
{
    struct fixture *f = *state;
    midge_client *bob = midge_test_client_new(f->fb, "c2", "alice");
    uint8_t reason;
    int i;

    assert_int_equal(load(f), 0);
    midge_test_log_clear(f->fb);
    for (i = 0; i < 50; i++) {
        assert_int_equal(ask(f, f->alice, MIDGE_ACL_RECEIVE, "secret/x", 0, &reason), MIDGE_DENY);
    }
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, "acl denied"), 1);
    assert_int_equal(
        midge_test_logged(f->fb, MIDGE_LOG_INFO,
                          "acl denied client=c1 user=alice action=receive topic=secret/x "
                          "rule=users.alice.rules[1] pattern=secret/#"),
        1);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_RECEIVE, "secret/y", 0, &reason), MIDGE_DENY);
    assert_int_equal(ask(f, bob, MIDGE_ACL_RECEIVE, "secret/x", 0, &reason), MIDGE_DENY);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "secret/x", 0, &reason), MIDGE_DENY);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, "acl denied"), 4);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO,
                                       "action=publish topic=secret/x rule=default.publish"),
                     1);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_WILL, "w/x", 0, &reason), MIDGE_DENY);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, "action=will topic=w/x"), 1);
}

/* A client spraying topics is capped per second; the rest is one summary line per tick. */
static void
denial_log_bounded(void **state)
{
    struct fixture *f = *state;
    char topic[32];
    uint8_t reason;
    char want[64];
    int i;

    assert_int_equal(load(f), 0);
    midge_test_log_clear(f->fb);
    for (i = 0; i < ACL_DENYLOG_PER_TICK + 50; i++) {
        snprintf(topic, sizeof(topic), "spray/%d", i);
        assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, topic, 0, &reason), MIDGE_DENY);
    }
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, "acl denied"),
                     ACL_DENYLOG_PER_TICK);
    assert_int_equal(midge_test_tick(f->p), 0);
    snprintf(want, sizeof(want), "acl denials not logged count=50");
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, want), 1);
    assert_int_equal(midge_test_tick(f->p), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, "acl denials not logged"), 1);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "spray/new", 0, &reason), MIDGE_DENY);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, "acl denied"),
                     ACL_DENYLOG_PER_TICK + 1);
}

/* SIGHUP with a bad file: the old rules stay and the error names the place. */
static void
reload_bad_keeps_old(void **state)
{
    struct fixture *f = *state;
    uint8_t reason;

    assert_int_equal(load(f), 0);
    write_file(f->path, "{\n  \"users\": {\n    \"alice\": [\n  }\n}\n");
    assert_true(midge_test_reload(f->p) < 0);
    assert_non_null(strstr(midge_test_error(f->p), ":4:3: "));
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "a/1", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "b/1", 0, &reason), MIDGE_DENY);
}

/* SIGHUP with a good file: the new rules decide at once, denials are logged afresh. */
static void
reload_good_replaces(void **state)
{
    struct fixture *f = *state;
    uint8_t reason;

    assert_int_equal(load(f), 0);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "c/1", 0, &reason), MIDGE_DENY);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "a/1", 0, &reason), MIDGE_ALLOW);
    write_file(f->path, RULES_B);
    assert_int_equal(midge_test_reload(f->p), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE, "acl reloaded file="), 1);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "a/1", 0, &reason), MIDGE_DENY);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "b/1", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "c/1", 0, &reason), MIDGE_DENY);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, "topic=c/1"), 2);
}

/* Checks on two threads while the main thread reloads: every answer comes from one file or the other. */
struct checker {
    struct fixture *f;
    midge_client *c;
    int bad;
};

/*
 * A standing ALLOW for RECEIVE, so the broker stops asking per message: for
 * a client no rule can deny a delivery; for a clean-session client until it
 * subscribes to a filter under which a rule denies a delivery; never under
 * a default that denies receive, nor for a resumed session with a deny rule.
 */
static void
receive_standing_only_when_nothing_can_deny(void **state)
{
    struct fixture *f = *state;
    midge_client *anon = midge_test_client_new(f->fb, "c3", NULL);
    midge_client *resumed = midge_test_client_new(f->fb, "c5", "alice");
    uint8_t reason;

    midge_test_client_set_clean_start(resumed, 0);
    assert_int_equal(load(f), 0);
    /* alice: secret/# denies her receive; clean, and no subscription checked yet. */
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_PUBLISH, "a/x", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_client_acl_standing(f->p, f->alice, MIDGE_ACL_RECEIVE),
                     MIDGE_ALLOW);
    assert_int_equal(ask(f, f->alice, MIDGE_ACL_SUBSCRIBE, "a/#", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_client_acl_standing(f->p, f->alice, MIDGE_ACL_RECEIVE),
                     MIDGE_ALLOW); /* nothing under a/# can be denied */
    ask(f, f->alice, MIDGE_ACL_SUBSCRIBE, "+/x", 0, &reason); /* covers secret/x */
    assert_int_equal(midge_test_client_acl_standing(f->p, f->alice, MIDGE_ACL_RECEIVE),
                     MIDGE_PENDING);
    /* The same rules for a session that already had subscriptions: no standing answer. */
    assert_int_equal(ask(f, resumed, MIDGE_ACL_PUBLISH, "a/x", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_client_acl_standing(f->p, resumed, MIDGE_ACL_RECEIVE),
                     MIDGE_PENDING);
    /* Anonymous: no rules, receive allowed by default. */
    assert_int_equal(ask(f, anon, MIDGE_ACL_RECEIVE, "a/x", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_client_acl_standing(f->p, anon, MIDGE_ACL_RECEIVE), MIDGE_ALLOW);
    assert_int_equal(midge_test_client_acl_standing(f->p, anon, MIDGE_ACL_PUBLISH),
                     MIDGE_PENDING);

    write_file(f->path, RULES_B); /* no receive rule for alice, receive allowed by default */
    assert_int_equal(midge_test_reload(f->p), 0);
    assert_int_equal(ask(f, resumed, MIDGE_ACL_RECEIVE, "b/x", 0, &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_client_acl_standing(f->p, resumed, MIDGE_ACL_RECEIVE),
                     MIDGE_ALLOW);

    write_file(f->path, "{ \"default\": { \"receive\": \"deny\" } }");
    assert_int_equal(midge_test_reload(f->p), 0);
    midge_test_client_free(anon);
    anon = midge_test_client_new(f->fb, "c4", NULL);
    assert_int_equal(ask(f, anon, MIDGE_ACL_RECEIVE, "a/x", 0, &reason), MIDGE_DENY);
    assert_int_equal(midge_test_client_acl_standing(f->p, anon, MIDGE_ACL_RECEIVE), MIDGE_PENDING);
}

static void *
check_loop(void *arg)
{
    struct checker *k = arg;
    uint8_t reason;
    int i;

    for (i = 0; i < 20000; i++) {
        int a = ask(k->f, k->c, MIDGE_ACL_PUBLISH, i % 2 ? "a/1" : "b/1", 0, &reason);
        int b = ask(k->f, k->c, MIDGE_ACL_PUBLISH, "c/1", 0, &reason);
        k->bad += (a != MIDGE_ALLOW && a != MIDGE_DENY) || b != MIDGE_DENY;
    }
    return NULL;
}

static void
reload_while_checking(void **state)
{
    struct fixture *f = *state;
    struct checker k[2];
    pthread_t t[2];
    int i;

    assert_int_equal(load(f), 0);
    for (i = 0; i < 2; i++) {
        k[i].f = f;
        k[i].bad = 0;
        k[i].c = midge_test_client_new(f->fb, i ? "t1" : "t0", "alice");
        assert_non_null(k[i].c);
        assert_int_equal(pthread_create(&t[i], NULL, check_loop, &k[i]), 0);
    }
    for (i = 0; i < 40; i++) {
        write_file(f->path, i % 2 ? RULES_A : RULES_B);
        assert_int_equal(midge_test_reload(f->p), 0);
    }
    for (i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(k[i].bad, 0);
    }
}

/* An anonymous client (no username) is logged as such. */
static void
anonymous_logged(void **state)
{
    struct fixture *f = *state;
    midge_client *anon = midge_test_client_new(f->fb, "dev-1", NULL);
    uint8_t reason;

    assert_int_equal(load(f), 0);
    assert_int_equal(ask(f, anon, MIDGE_ACL_SUBSCRIBE, "#", 0, &reason), MIDGE_DENY);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO,
                                       "client=dev-1 user=(anonymous) action=subscribe topic=# "
                                       "rule=default.subscribe"),
                     1);
}

const struct CMUnitTest *
acl_plugin_tests(size_t *n)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(requires_acl_file, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_file_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(verdicts_and_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(action_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(denial_logged_once, setup, teardown),
        cmocka_unit_test_setup_teardown(denial_log_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_bad_keeps_old, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_good_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(anonymous_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_while_checking, setup, teardown),
        cmocka_unit_test_setup_teardown(receive_standing_only_when_nothing_can_deny, setup,
                                        teardown),
    };

    *n = sizeof(tests) / sizeof(tests[0]);
    return tests;
}
