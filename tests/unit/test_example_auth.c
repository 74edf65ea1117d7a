/*
 * Unit tests for plugins/example-auth against the fake broker of
 * plugin-api/test (midge/plugin_test.h), the way a plugin author tests a
 * plugin: the plugin's source is linked into this program and loaded
 * through its descriptor and entry points. A few tests at the end check
 * the harness's own promises (plugin-bug detection, thread-safe complete,
 * API size, dlopen) with a small probe plugin defined here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include <cmocka.h>

#include <midge/plugin.h>
#include <midge/plugin_test.h>

#define USERS "alice:secret, bob:hunter2"
#define WAIT_MS 10000u /* generous: sanitizers and loaded CI machines are slow */

struct fixture {
    midge_test_broker *fb;
    midge_plugin *p;
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

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Loads p with `users` (NULL: unset) and `delay` (NULL: unset). */
static int
load(midge_plugin *p, const char *users, const char *delay)
{
    assert_int_equal(midge_test_option(p, "users", users), 0);
    assert_int_equal(midge_test_option(p, "async_delay_ms", delay), 0);
    return midge_test_load(p);
}

/* Runs the auth hook with a string password (NULL: none). */
static int
auth(midge_plugin *p, midge_client *c, const char *pw, uint8_t *reason, midge_ticket **t)
{
    return midge_test_auth(p, c, pw, pw != NULL ? strlen(pw) : 0, reason, t);
}

/*
 * Polls until `want` log lines match: the helper thread logs after its
 * api->complete() returned, so a test that saw the completion may be a
 * little ahead of the log line.
 */
static size_t
wait_logged(midge_test_broker *fb, int level, const char *needle, size_t want,
            unsigned timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;
    size_t n;

    while ((n = midge_test_logged(fb, level, needle)) < want && now_ms() < until) {
        usleep(1000);
    }
    return n;
}

/* ---- Synchronous mode ------------------------------------------------------- */

static void
test_sync_allow(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *bob = midge_test_client_new(f->fb, "c2", "bob");
    midge_ticket *t = NULL;
    uint8_t reason = 0xff;

    assert_int_equal(load(f->p, USERS, NULL), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE,
                                       "plugin=example-auth ready users=2 mode=sync"), 1);
    assert_int_equal(auth(f->p, alice, "secret", &reason, &t), MIDGE_ALLOW);
    assert_int_equal(reason, 0);
    /* Answered in the hook: the ticket cannot be waited for. */
    assert_int_equal(midge_test_wait(t, 0, NULL), -MIDGE_ESTATE);
    assert_int_equal(auth(f->p, bob, "hunter2", &reason, NULL), MIDGE_ALLOW);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO,
                                       "auth user=alice client=c1 address=127.0.0.1:50000 "
                                       "verdict=allow mode=sync"), 1);
    /* Passwords never reach the log. */
    assert_int_equal(midge_test_logged(f->fb, -1, "secret"), 0);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_sync_deny(void **state)
{
    static const char *const wrong[] = {"secreT", "secre", "secret1", "", NULL};
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    uint8_t reason;
    size_t i;

    assert_int_equal(load(f->p, USERS, "0"), 0);
    for (i = 0; wrong[i] != NULL; i++) {
        reason = 0;
        assert_int_equal(auth(f->p, alice, wrong[i], &reason, NULL), MIDGE_DENY);
        assert_int_equal(reason, 0x86);
    }
    /* No password at all, and a binary password with a NUL after the right prefix. */
    assert_int_equal(auth(f->p, alice, NULL, &reason, NULL), MIDGE_DENY);
    assert_int_equal(reason, 0x86);
    assert_int_equal(midge_test_auth(f->p, alice, "secret\0x", 8, &reason, NULL), MIDGE_DENY);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE, "user=alice client=c1"), 6);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_sync_defer(void **state)
{
    struct fixture *f = *state;
    midge_client *carol = midge_test_client_new(f->fb, "c3", "carol");
    midge_client *anon = midge_test_client_new(f->fb, "c4", NULL);
    uint8_t reason = 0xff;

    assert_int_equal(load(f->p, USERS, NULL), 0);
    assert_int_equal(auth(f->p, carol, "secret", &reason, NULL), MIDGE_DEFER);
    assert_int_equal(reason, 0);
    assert_int_equal(auth(f->p, anon, NULL, &reason, NULL), MIDGE_DEFER);
    assert_int_equal(auth(f->p, anon, "secret", &reason, NULL), MIDGE_DEFER);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_no_users(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");

    assert_int_equal(load(f->p, NULL, NULL), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_WARNING, "users is empty"), 1);
    assert_int_equal(auth(f->p, alice, "secret", NULL, NULL), MIDGE_DEFER);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* ---- Configuration errors --------------------------------------------------- */

struct bad_case {
    const char *key;
    const char *value;
    const char *message; /* expected in midge_test_error() */
};

static const struct bad_case bad_cases[] = {
    {"users", "alice", "option users: entry 1 'alice' is not NAME:PASSWORD"},
    {"users", "alice:secret,bob", "option users: entry 2 'bob' is not NAME:PASSWORD"},
    {"users", "alice:secret,,bob:x", "option users: entry 2 is empty"},
    {"users", "alice:secret,", "option users: entry 2 is empty"},
    {"users", ":secret", "option users: entry 1 has an empty user name"},
    {"users", "alice:", "option users: entry 1 'alice' has an empty password"},
    {"users", "alice:secret,alice:other", "option users: entry 2: user 'alice' is listed twice"},
    {"async_delay_ms", "abc", "option async_delay_ms: 'abc' is not a number"},
    {"async_delay_ms", "-1", "option async_delay_ms: '-1' is not a number"},
    {"async_delay_ms", "10ms", "option async_delay_ms: '10ms' is not a number"},
    {"async_delay_ms", "60001", "between 0 and 60000"},
    /* The descriptor declares its options: a typo is refused before init runs. */
    {"user", "alice:secret",
     "plugin 'example-auth' does not know option 'user' (it accepts: users, async_delay_ms)"},
};

static void
test_bad_options(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *bc = &bad_cases[i];
        midge_test_broker *fb = midge_test_broker_new();
        midge_plugin *p = midge_test_plugin_new(fb, MIDGE_TEST_LINKED_PLUGIN);
        const char *err;

        assert_non_null(p);
        assert_int_equal(midge_test_option(p, bc->key, bc->value), 0);
        assert_int_equal(midge_test_load(p), -MIDGE_EINVAL);
        err = midge_test_error(p);
        if (strstr(err, bc->message) == NULL) {
            fail_msg("case %zu: error '%s' lacks '%s'", i, err, bc->message);
        }
        assert_null(strstr(err, "secret")); /* passwords never in messages */
        assert_null(midge_test_state(p));
        assert_int_equal(midge_test_bug_count(fb), 0);
        midge_test_broker_free(fb);
    }
}

/* ---- Asynchronous mode ----------------------------------------------------------- */

static void
test_async_verdicts(void **state)
{
    static const struct {
        const char *user;
        const char *pw;
        int verdict;
        uint8_t reason;
    } cases[] = {
        {"alice", "secret", MIDGE_ALLOW, 0},
        {"bob", "wrong", MIDGE_DENY, 0x86},
        {"carol", "secret", MIDGE_DEFER, 0},
    };
    struct fixture *f = *state;
    size_t i;

    assert_int_equal(load(f->p, USERS, "100"), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE, "mode=async async_delay_ms=100"),
                     1);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        midge_client *c = midge_test_client_new(f->fb, "c", cases[i].user);
        midge_ticket *t = NULL;
        uint8_t reason = 0xff;
        int64_t start = now_ms();

        assert_int_equal(auth(f->p, c, cases[i].pw, &reason, &t), MIDGE_PENDING);
        /* The hook returned at once; the answer comes later, from the helper thread. */
        assert_int_equal(midge_test_wait(t, 0, NULL), MIDGE_TEST_TIMEDOUT);
        assert_int_equal(midge_test_wait(t, WAIT_MS, &reason), cases[i].verdict);
        assert_int_equal(reason, cases[i].reason);
        assert_true(now_ms() - start >= 90);
    }
    /* Anonymous clients are deferred in the hook: nothing to wait for. */
    assert_int_equal(auth(f->p, midge_test_client_new(f->fb, "anon", NULL), NULL, NULL, NULL),
                     MIDGE_DEFER);
    assert_int_equal(wait_logged(f->fb, MIDGE_LOG_INFO,
                                 "auth user=alice client=c verdict=allow mode=async", 1, WAIT_MS),
                     1);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* Many logins pending at once are all answered, in order, by the one helper thread. */
static void
test_async_burst(void **state)
{
    enum { N = 60 };
    struct fixture *f = *state;
    midge_ticket *t[N];
    int i;

    assert_int_equal(load(f->p, USERS, "20"), 0);
    for (i = 0; i < N; i++) {
        char id[16];
        midge_client *c;
        snprintf(id, sizeof(id), "c%d", i);
        c = midge_test_client_new(f->fb, id, i % 2 ? "bob" : "alice");
        assert_int_equal(auth(f->p, c, i % 3 ? "secret" : "hunter2", NULL, &t[i]), MIDGE_PENDING);
    }
    for (i = 0; i < N; i++) {
        /* alice/secret and bob/hunter2 are right; the other pairings are wrong. */
        int right = (i % 2 == 0 && i % 3 != 0) || (i % 2 == 1 && i % 3 == 0);
        assert_int_equal(midge_test_wait(t[i], WAIT_MS, NULL), right ? MIDGE_ALLOW : MIDGE_DENY);
    }
    assert_int_equal(wait_logged(f->fb, -1, "mode=async", N + 1, WAIT_MS), N + 1); /* + ready */
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/*
 * The client leaves while its login is pending: the plugin must not touch
 * the borrowed request any more (the harness freed it; ASan would see it),
 * and its late complete() is refused.
 */
static void
test_async_client_leaves(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "gone", "alice");
    midge_ticket *t = NULL;

    assert_int_equal(load(f->p, USERS, "30"), 0);
    assert_int_equal(auth(f->p, c, "secret", NULL, &t), MIDGE_PENDING);
    midge_test_client_free(c);
    assert_int_equal(midge_test_wait(t, 0, NULL), -MIDGE_ESTATE);
    assert_int_equal(wait_logged(f->fb, MIDGE_LOG_NOTICE,
                                 "late answer ignored user=alice client=gone", 1, WAIT_MS),
                     1);
    /* The header counts a completion after the client left as a plugin bug. */
    assert_int_equal(midge_test_bug_count(f->fb), 1);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR, "after its client left"), 1);
}

/* Cleanup with logins still queued: the helper stops, the requests are dropped, nothing leaks. */
static void
test_async_unload_pending(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    midge_ticket *t = NULL;

    assert_int_equal(load(f->p, USERS, "60000"), 0);
    assert_int_equal(auth(f->p, c, "secret", NULL, &t), MIDGE_PENDING);
    midge_test_unload(f->p);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, "stopped with 1 unanswered"), 1);
    assert_int_equal(midge_test_wait(t, 0, NULL), -MIDGE_ESTATE);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
    /* And it loads again, with fresh state. */
    assert_int_equal(load(f->p, USERS, NULL), 0);
    assert_int_equal(auth(f->p, c, "secret", NULL, NULL), MIDGE_ALLOW);
}

/* ---- Reload --------------------------------------------------------------------- */

static void
test_reload_good(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *carol = midge_test_client_new(f->fb, "c3", "carol");

    assert_int_equal(load(f->p, USERS, NULL), 0);
    assert_int_equal(auth(f->p, carol, "s3cr3t", NULL, NULL), MIDGE_DEFER);
    assert_int_equal(midge_test_option(f->p, "users", "carol:s3cr3t"), 0);
    assert_int_equal(midge_test_reload(f->p), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE, "reloaded users=1"), 1);
    assert_string_equal(midge_test_option_in_force(f->p, "users"), "carol:s3cr3t");
    assert_int_equal(auth(f->p, carol, "s3cr3t", NULL, NULL), MIDGE_ALLOW);
    assert_int_equal(auth(f->p, alice, "secret", NULL, NULL), MIDGE_DEFER);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_reload_bad(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");

    assert_int_equal(load(f->p, USERS, NULL), 0);
    assert_int_equal(midge_test_option(f->p, "users", "alice:new,mallory"), 0);
    assert_int_equal(midge_test_reload(f->p), -MIDGE_EINVAL);
    assert_non_null(strstr(midge_test_error(f->p), "entry 2 'mallory' is not NAME:PASSWORD"));
    /* The old list and the old options stay in force. */
    assert_string_equal(midge_test_option_in_force(f->p, "users"), USERS);
    assert_int_equal(auth(f->p, alice, "secret", NULL, NULL), MIDGE_ALLOW);
    assert_int_equal(auth(f->p, alice, "new", NULL, NULL), MIDGE_DENY);
    /* A bad delay is refused too, and a changed one needs a restart. */
    assert_int_equal(midge_test_option(f->p, "users", USERS), 0);
    assert_int_equal(midge_test_option(f->p, "async_delay_ms", "x"), 0);
    assert_int_equal(midge_test_reload(f->p), -MIDGE_EINVAL);
    assert_int_equal(midge_test_option(f->p, "async_delay_ms", "5"), 0);
    assert_int_equal(midge_test_reload(f->p), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_WARNING,
                                       "async_delay_ms=5 needs a restart; keeping 0"), 1);
    assert_int_equal(auth(f->p, alice, "secret", NULL, NULL), MIDGE_ALLOW);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* ---- Several instances --------------------------------------------------------- */

/* One process, one fake broker, two instances with different users (plugin_instance). */
static void
test_two_instances(void **state)
{
    struct fixture *f = *state;
    midge_plugin *b = midge_test_plugin_new(f->fb, MIDGE_TEST_LINKED_PLUGIN);
    midge_plugin *dup = midge_test_plugin_new(f->fb, MIDGE_TEST_LINKED_PLUGIN);
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *bob = midge_test_client_new(f->fb, "c2", "bob");
    midge_ticket *t = NULL;

    assert_int_equal(midge_test_set_instance(f->p, "site-a"), 0);
    assert_int_equal(midge_test_set_instance(b, "site-b"), 0);
    assert_int_equal(load(f->p, "alice:secret", NULL), 0);
    assert_int_equal(load(b, "bob:hunter2", "10"), 0);
    assert_int_equal(auth(f->p, alice, "secret", NULL, NULL), MIDGE_ALLOW);
    assert_int_equal(auth(f->p, bob, "hunter2", NULL, NULL), MIDGE_DEFER);
    assert_int_equal(auth(b, alice, "secret", NULL, &t), MIDGE_PENDING);
    assert_int_equal(midge_test_wait(t, WAIT_MS, NULL), MIDGE_DEFER);
    assert_int_equal(auth(b, bob, "hunter2", NULL, &t), MIDGE_PENDING);
    assert_int_equal(midge_test_wait(t, WAIT_MS, NULL), MIDGE_ALLOW);
    assert_int_equal(midge_test_logged(f->fb, -1, "plugin=site-a ready users=1 mode=sync"), 1);
    assert_int_equal(midge_test_logged(f->fb, -1, "plugin=site-b ready users=1 mode=async"), 1);
    /* Instance names are unique, as in the broker. */
    assert_int_equal(midge_test_set_instance(dup, "site-a"), 0);
    assert_int_equal(load(dup, "carol:x", NULL), -MIDGE_EINVAL);
    assert_non_null(strstr(midge_test_error(dup), "'site-a' is already used"));
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* Two fake brokers side by side, each with the plugin loaded. */
static void
test_two_brokers(void **state)
{
    midge_test_broker *fb2 = midge_test_broker_new();
    midge_plugin *p2 = midge_test_plugin_new(fb2, MIDGE_TEST_LINKED_PLUGIN);
    struct fixture *f = *state;
    midge_client *c1 = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *c2 = midge_test_client_new(fb2, "c1", "alice");

    assert_int_equal(load(f->p, "alice:one", "5"), 0);
    assert_int_equal(load(p2, "alice:two", NULL), 0);
    assert_int_equal(auth(p2, c2, "two", NULL, NULL), MIDGE_ALLOW);
    assert_int_equal(auth(p2, c2, "one", NULL, NULL), MIDGE_DENY);
    assert_int_equal(auth(f->p, c1, "one", NULL, NULL), MIDGE_PENDING);
    assert_int_equal(midge_test_logged(fb2, -1, "ready"), 1);
    assert_int_equal(midge_test_bug_count(fb2), 0);
    midge_test_broker_free(fb2);
}

/* ---- The harness itself, with a probe plugin ------------------------------------ */

/* The probe keeps its last ticket and client (on purpose, to misuse them). */
struct probe {
    midge_plugin *self;
    const struct midge_api *api;
    midge_ticket *ticket;
    midge_client *client;
    int verdict; /* what auth returns */
};

static int
probe_auth(void *state, midge_client *client, const struct midge_auth_request *req,
           uint8_t *reason, midge_ticket *ticket)
{
    struct probe *pr = state;

    (void)reason;
    pr->ticket = ticket;
    pr->client = client;
    assert_string_equal(pr->api->client_id(client), req->client_id);
    return pr->verdict;
}

static const struct midge_hooks probe_hooks = {
    .size = sizeof(struct midge_hooks),
    .auth = probe_auth,
};

static int
probe_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct probe *pr = calloc(1, sizeof(*pr));

    if (pr == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    pr->self = self;
    pr->api = api;
    pr->verdict = MIDGE_PENDING;
    api->hooks_set(self, &probe_hooks);
    *state = pr;
    return 0;
}

static void
probe_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    free(state);
}

static const struct midge_plugin_descriptor probe_desc = {
    sizeof(struct midge_plugin_descriptor), MIDGE_ABI_MAJOR, MIDGE_ABI_MINOR, "probe", "0",
    "harness self-test", NULL,
};

struct completer {
    struct probe *pr;
    int rc;
};

static void *
complete_thread(void *arg)
{
    struct completer *c = arg;

    usleep(20000);
    c->rc = c->pr->api->complete(c->pr->ticket, MIDGE_DENY, 0x87);
    c->pr->api->publish(c->pr->self, "probe/done", "ok", 2, 1, 0);
    return NULL;
}

static void
test_harness_complete(void **state)
{
    struct fixture *f = *state;
    midge_plugin *p = midge_test_plugin_new(f->fb, &probe_desc, probe_init, probe_cleanup);
    midge_client *c = midge_test_client_new(f->fb, "c1", "u");
    struct completer comp = {NULL, -1};
    struct probe *pr;
    pthread_t th;
    uint8_t reason = 0;

    assert_int_equal(midge_test_load(p), 0);
    pr = midge_test_state(p);
    comp.pr = pr;
    assert_int_equal(midge_test_auth(p, c, NULL, 0, NULL, NULL), MIDGE_PENDING);
    /* Completed from another thread while this one waits. */
    assert_int_equal(pthread_create(&th, NULL, complete_thread, &comp), 0);
    assert_int_equal(midge_test_wait(pr->ticket, WAIT_MS, &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x87);
    assert_int_equal(midge_test_wait_published(f->fb, "probe/done", WAIT_MS), 0);
    pthread_join(th, NULL);
    assert_int_equal(comp.rc, 0);
    assert_string_equal(midge_test_published_find(f->fb, "probe/done")->payload, "ok");
    assert_int_equal(midge_test_bug_count(f->fb), 0);

    /* Twice: refused and counted. */
    assert_int_equal(pr->api->complete(pr->ticket, MIDGE_ALLOW, 0), -MIDGE_ESTATE);
    assert_int_equal(midge_test_bug_count(f->fb), 1);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "plugin=probe plugin bug: ticket completed twice"), 1);
    /* Not a verdict: a plugin bug, applied as DENY (as the broker does). */
    assert_int_equal(midge_test_auth(p, c, NULL, 0, NULL, NULL), MIDGE_PENDING);
    assert_int_equal(pr->api->complete(pr->ticket, MIDGE_PENDING, 0x80), 0);
    assert_int_equal(midge_test_bug_count(f->fb), 2);
    assert_int_equal(midge_test_wait(pr->ticket, 0, &reason), MIDGE_DENY);
    assert_int_equal(midge_test_auth(p, c, NULL, 0, NULL, NULL), MIDGE_PENDING);
    /* After the (simulated) timeout. */
    assert_int_equal(midge_test_expire(pr->ticket), 0);
    assert_int_equal(pr->api->complete(pr->ticket, MIDGE_ALLOW, 0), -MIDGE_ESTATE);
    assert_int_equal(midge_test_logged(f->fb, -1, "after its timeout"), 1);
    /* A ticket whose hook answered ALLOW. */
    pr->verdict = MIDGE_ALLOW;
    assert_int_equal(midge_test_auth(p, c, NULL, 0, NULL, NULL), MIDGE_ALLOW);
    assert_int_equal(pr->api->complete(pr->ticket, MIDGE_ALLOW, 0), -MIDGE_ESTATE);
    assert_int_equal(midge_test_logged(f->fb, -1, "did not return PENDING"), 1);
    /* A client accessor after the hook returned. */
    assert_string_equal(pr->api->client_id(pr->client), "c1");
    assert_int_equal(midge_test_logged(f->fb, -1, "outside a hook about that client"), 1);
    /* Options outside init/reload. */
    assert_null(pr->api->option(pr->self, "x"));
    assert_int_equal(midge_test_bug_count(f->fb), 6);
    /* Publish validation. */
    assert_int_equal(pr->api->publish(pr->self, "a/+", "", 0, 0, 0), -MIDGE_EINVAL);
    assert_int_equal(pr->api->publish(pr->self, "a/b", NULL, 1, 0, 0), -MIDGE_EINVAL);
    assert_int_equal(pr->api->publish(pr->self, "a/b", "x", 1, 3, 0), -MIDGE_EINVAL);
    assert_int_equal(midge_test_published_count(f->fb), 1);
}

static void
test_harness_api_and_loader(void **state)
{
    static const struct midge_plugin_descriptor future = {
        sizeof(struct midge_plugin_descriptor), MIDGE_ABI_MAJOR + 1, 3, "future", "9", "", NULL,
    };
    struct fixture *f = *state;
    const struct midge_api *api = midge_test_api(f->fb);
    midge_plugin *p;
    const char *dir = getenv("MIDGE_BUILDDIR");
    char path[4096];

    assert_int_equal(api->size, sizeof(struct midge_api));
    assert_true(MIDGE_API_HAS(api, complete));
    assert_true(MIDGE_API_HAS(api, instance_name));
    /* An older broker without publish and instance_name. */
    assert_int_equal(midge_test_set_api_size(f->fb, offsetof(struct midge_api, publish)), 0);
    assert_true(MIDGE_API_HAS(api, client_keepalive));
    assert_false(MIDGE_API_HAS(api, publish));
    assert_false(MIDGE_API_HAS(api, instance_name));
    assert_int_equal(midge_test_set_api_size(f->fb, sizeof(struct midge_api)), 0);
    assert_true(MIDGE_API_HAS(api, publish));

    p = midge_test_plugin_new(f->fb, &future, probe_init, probe_cleanup);
    assert_int_equal(midge_test_load(p), -MIDGE_EINVAL);
    assert_non_null(strstr(midge_test_error(p), "built for plugin ABI 2.3, but this midge "
                                                "provides ABI 1.2"));
    p = midge_test_plugin_open(f->fb, "/nonexistent/my-auth.so");
    assert_int_equal(midge_test_load(p), -MIDGE_ENOENT);
    assert_non_null(strstr(midge_test_error(p), "cannot load /nonexistent/my-auth.so"));

    /* The built example-auth.so, loaded with dlopen beside the linked-in copy. */
    snprintf(path, sizeof(path), "%s%splugins/example-auth/.libs/example-auth.so",
             dir != NULL ? dir : "", dir != NULL ? "/" : "");
    if (access(path, R_OK) != 0) {
        skip(); /* run from the build directory, or set MIDGE_BUILDDIR */
    }
    assert_int_equal(load(f->p, "alice:linked", NULL), 0);
    p = midge_test_plugin_open(f->fb, path);
    assert_int_equal(midge_test_set_instance(p, "from-so"), 0);
    assert_int_equal(load(p, "alice:shared", NULL), 0);
    {
        midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
        assert_int_equal(auth(p, c, "shared", NULL, NULL), MIDGE_ALLOW);
        assert_int_equal(auth(p, c, "linked", NULL, NULL), MIDGE_DENY);
        assert_int_equal(auth(f->p, c, "linked", NULL, NULL), MIDGE_ALLOW);
    }
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sync_allow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_deny, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_defer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_users, setup, teardown),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test_setup_teardown(test_async_verdicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_client_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_unload_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_instances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_brokers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_harness_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_harness_api_and_loader, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
