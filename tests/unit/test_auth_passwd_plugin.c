/*
 * plugins/auth-passwd's hooks against the fake broker (midge/plugin_test.h):
 * loading (missing option, missing file, broken file: FILE:LINE), verdicts
 * and reason codes for mosquitto_passwd's fixture file, anonymous and
 * unknown users, the cache, the limiter, SIGHUP reload (a broken file keeps
 * the old table; a changed file empties the cache), the asynchronous path
 * (hashing on the run_blocking pool, a full queue, delayed failures on
 * timers) and an older broker without run_blocking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <midge/plugin.h>
#include <midge/plugin_test.h>

#ifndef FIXTURES
#define FIXTURES "tests/fixtures/passwd"
#endif
#define PBKDF2_FILE FIXTURES "/mosquitto-2.0.11-sha512-pbkdf2.passwd"
#define WAIT_MS 20000u

/* alice's and dave's lines from tests/fixtures/passwd/mosquitto-2.0.11-sha512.passwd. */
#define ALICE6 "alice:$6$uzvekI4pDHzPFiAD$GwW+Jakn6OUNBqMtJq6IQIDSiNW9jc9jm8F+ZZG669qiqWgx+Yurh6EU3lm98Zn2RRl5MXtLnDjThIWrtgHwTQ==\n"
#define DAVE6 "dave:$6$lk8q3W43R1WMpefi$tsoejw6hKJrNSVBVjrnMaZbT57iYctHcMKMP7jWQ6tKjX6rFxusc38y6ktKuVG0ZgapPX5XdOGCVUiJveWHZgw==\n"

struct fixture {
    midge_test_broker *fb;
    midge_plugin *p;
    char dir[64];
    char path[128]; /* a password file the test may rewrite */
};

static void
write_file(const char *path, const char *text)
{
    char tmp[256];
    FILE *f;

    /* Replace atomically, as midge_passwd does, so the plugin never reads half a file. */
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(tmp, 0600), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/midge-appl-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/passwd", f->dir);
    f->fb = midge_test_broker_new();
    assert_non_null(f->fb);
    f->p = midge_test_plugin_new(f->fb, MIDGE_TEST_LINKED_PLUGIN);
    assert_non_null(f->p);
    /* Fast tests: no failure delays (the limiter's counting stays). */
    assert_int_equal(midge_test_option(f->p, "fail_delay", "0"), 0);
    assert_int_equal(midge_test_option(f->p, "fail_delay_max", "0"), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    midge_test_broker_free(f->fb);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Loads with password_file (setup turned failure delays off). */
static int
load(struct fixture *f, const char *file)
{
    assert_int_equal(midge_test_option(f->p, "password_file", file), 0);
    return midge_test_load(f->p);
}

/* Runs the auth hook and waits for a PENDING answer. Returns the final verdict. */
static int
auth(struct fixture *f, midge_client *c, const char *pw, uint8_t *reason)
{
    midge_ticket *t = NULL;
    int v;

    *reason = 0;
    v = midge_test_auth(f->p, c, pw, pw != NULL ? strlen(pw) : 0, reason, &t);
    if (v == MIDGE_PENDING) {
        /* The hash runs on the pool; its done callback completes the ticket here. */
        assert_true(midge_test_wait_blocking(f->fb, WAIT_MS) >= 0);
        v = midge_test_wait(t, WAIT_MS, reason);
    }
    return v;
}

/* ---- Loading -------------------------------------------------------------------- */

static void
test_load_requires_file_option(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(midge_test_load(f->p), -MIDGE_EINVAL);
    assert_non_null(strstr(midge_test_error(f->p), "plugin_opt_password_file is required"));
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_load_missing_file(void **state)
{
    struct fixture *f = *state;
    char want[256];

    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", f->path);
    assert_int_equal(load(f, f->path), -MIDGE_EINVAL);
    assert_string_equal(midge_test_error(f->p), want);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_load_broken_file(void **state)
{
    struct fixture *f = *state;
    char want[256];

    write_file(f->path, ALICE6 "# ok so far\nbob:hunter2\n");
    snprintf(want, sizeof(want), "%s:3: password is not hashed", f->path);
    assert_int_equal(load(f, f->path), -MIDGE_EINVAL);
    assert_true(strncmp(midge_test_error(f->p), want, strlen(want)) == 0);
    write_file(f->path, "alice:$5$abc$def\n");
    snprintf(want, sizeof(want), "%s:1: unknown hash type", f->path);
    assert_int_equal(load(f, f->path), -MIDGE_EINVAL);
    assert_true(strncmp(midge_test_error(f->p), want, strlen(want)) == 0);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_load_bad_options(void **state)
{
    static const char *const cases[][3] = {
        {"fail_delay", "soon", "option fail_delay: 'soon' is not a number"},
        {"cache_size", "-1", "option cache_size: '-1' is not a number between 0 and"},
        {"max_failures", "1e9", "option max_failures: '1e9' is not a number"},
        {"unknown_user", "maybe", "option unknown_user: 'maybe' is neither deny nor defer"},
        {"disconnect_on_reload", "yes", "option disconnect_on_reload: 'yes' is neither"},
        {"fail_delay_max", "0.1", "option fail_delay_max (0.1) is smaller than fail_delay (0.5)"},
    };
    struct fixture *f = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        midge_test_option_clear(f->p);
        midge_test_option(f->p, "fail_delay", "0.5");
        midge_test_option(f->p, cases[i][0], cases[i][1]);
        assert_int_equal(load(f, PBKDF2_FILE), -MIDGE_EINVAL);
        if (strstr(midge_test_error(f->p), cases[i][2]) == NULL) {
            fail_msg("%s %s: got '%s'", cases[i][0], cases[i][1], midge_test_error(f->p));
        }
    }
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* ---- Verdicts --------------------------------------------------------------------- */

static void
test_mosquitto_file_verdicts(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *bob = midge_test_client_new(f->fb, "c2", "bob");
    midge_client *nobody = midge_test_client_new(f->fb, "c3", "nobody");
    midge_client *anon = midge_test_client_new(f->fb, "c4", NULL);
    uint8_t reason;

    assert_int_equal(load(f, PBKDF2_FILE), 0);
    assert_int_equal(auth(f, alice, "correct horse", &reason), MIDGE_ALLOW);
    assert_int_equal(auth(f, bob, "b0b:with:colons", &reason), MIDGE_ALLOW);
    assert_int_equal(auth(f, alice, "correct horsE", &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x86); /* Bad User Name or Password (3.1.1: return code 4) */
    assert_int_equal(auth(f, alice, NULL, &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x86);
    /* An unknown user gets the same answer as a wrong password. */
    assert_int_equal(auth(f, nobody, "correct horse", &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x86);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE,
                                       "login failed user=nobody client=c3 addr=127.0.0.1 "
                                       "reason=unknown-user"), 1);
    /* No user name: not ours, allow_anonymous decides. */
    assert_int_equal(auth(f, anon, NULL, &reason), MIDGE_DEFER);
    /* Passwords and hashes never reach the log. */
    assert_int_equal(midge_test_logged(f->fb, -1, "horse"), 0);
    assert_int_equal(midge_test_logged(f->fb, -1, "$7$"), 0);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_unknown_user_defer(void **state)
{
    struct fixture *f = *state;
    midge_client *nobody = midge_test_client_new(f->fb, "c3", "nobody");
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    uint8_t reason;

    midge_test_option(f->p, "unknown_user", "defer");
    assert_int_equal(load(f, PBKDF2_FILE), 0);
    assert_int_equal(auth(f, nobody, "x", &reason), MIDGE_DEFER);
    assert_int_equal(auth(f, alice, "x", &reason), MIDGE_DENY);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_cache_hit_and_off(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    uint8_t reason;
    midge_ticket *t = NULL;

    assert_int_equal(load(f, PBKDF2_FILE), 0);
    assert_int_equal(auth(f, alice, "correct horse", &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_INFO, "login user=alice client=c1 "
                                                              "cache=miss"), 1);
    /* The second login is answered in the hook, from the cache. */
    assert_int_equal(midge_test_auth(f->p, alice, "correct horse", 13, &reason, &t), MIDGE_ALLOW);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_DEBUG, "login user=alice client=c1 "
                                                               "cache=hit"), 1);
    /* A wrong password is not helped by the cache. */
    assert_int_equal(auth(f, alice, "correct horse ", &reason), MIDGE_DENY);
    midge_test_unload(f->p);

    midge_test_option(f->p, "cache_size", "0");
    assert_int_equal(load(f, PBKDF2_FILE), 0);
    assert_int_equal(auth(f, alice, "correct horse", &reason), MIDGE_ALLOW);
    assert_int_equal(auth(f, alice, "correct horse", &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_logged(f->fb, -1, "cache=hit"), 1);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_rate_limit(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *bob = midge_test_client_new(f->fb, "c2", "bob");
    midge_client *other = midge_test_client_new(f->fb, "c5", "bob");
    uint8_t reason;
    int i;

    midge_test_option(f->p, "max_failures", "3");
    assert_int_equal(load(f, PBKDF2_FILE), 0);
    /* alice logs in once: her cached password keeps working during a block. */
    assert_int_equal(auth(f, alice, "correct horse", &reason), MIDGE_ALLOW);
    for (i = 0; i < 3; i++) {
        assert_int_equal(auth(f, bob, "guess", &reason), MIDGE_DENY);
        assert_int_equal(reason, 0x86);
    }
    /* Blocked: even bob's right password is refused, without hashing, with 0x9F. */
    assert_int_equal(auth(f, bob, "b0b:with:colons", &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x9F);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE, "reason=rate-limited"), 1);
    /* From another address bob is blocked as a user, too. */
    assert_int_equal(midge_test_client_set_address(other, "192.0.2.7:4000"), 0);
    assert_int_equal(auth(f, other, "b0b:with:colons", &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x9F);
    /* The address is blocked: alice's cached login still works, an uncached one does not. */
    assert_int_equal(auth(f, alice, "correct horse", &reason), MIDGE_ALLOW);
    assert_int_equal(auth(f, alice, "not cached", &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x9F);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* ---- Reload ------------------------------------------------------------------------ */

static void
test_reload(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *dave = midge_test_client_new(f->fb, "c2", "dave");
    uint8_t reason;
    char want[256];

    write_file(f->path, ALICE6);
    assert_int_equal(load(f, f->path), 0);
    assert_int_equal(auth(f, alice, "correct horse", &reason), MIDGE_ALLOW); /* now cached */
    assert_int_equal(auth(f, dave, "x", &reason), MIDGE_DENY);

    /* A broken file: the reload is refused with FILE:LINE, the old table stays. */
    write_file(f->path, DAVE6 "alice\n");
    snprintf(want, sizeof(want), "%s:2: expected username:hash", f->path);
    assert_int_equal(midge_test_reload(f->p), -MIDGE_EINVAL);
    assert_string_equal(midge_test_error(f->p), want);
    assert_int_equal(auth(f, alice, "correct horse", &reason), MIDGE_ALLOW);
    assert_int_equal(auth(f, dave, "x", &reason), MIDGE_DENY);

    /* A good file: dave is in, alice is out, and her cached success is gone. */
    write_file(f->path, "# alice left\n" DAVE6);
    assert_int_equal(midge_test_reload(f->p), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE, "users=1 (changed: cache "
                                                                "emptied)"), 1);
    assert_int_equal(auth(f, dave, "x", &reason), MIDGE_ALLOW);
    assert_int_equal(auth(f, alice, "correct horse", &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x86);

    /* A missing file at reload: refused, dave stays. */
    unlink(f->path);
    assert_int_equal(midge_test_reload(f->p), -MIDGE_EINVAL);
    assert_non_null(strstr(midge_test_error(f->p), "cannot open: No such file or directory"));
    assert_int_equal(auth(f, dave, "x", &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_connected_clients_tracked(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *anon = midge_test_client_new(f->fb, "c2", NULL);

    write_file(f->path, ALICE6 DAVE6);
    midge_test_option(f->p, "disconnect_on_reload", "true");
    assert_int_equal(load(f, f->path), 0);
    assert_int_equal(midge_test_client_connected(f->p, alice), 0);
    assert_int_equal(midge_test_client_connected(f->p, anon), 0);
    /* alice's password changes: on a broker with client_disconnect she is disconnected. */
    write_file(f->path, DAVE6 "alice:$7$101$tCBbRf0QA2vktgin$rV/8HqiYtqO5Xg/xzGrPR8ey3RK97vvjN/nXKD90o1WBcDetqynaonX+oxLN6gv81QZfkzSSUxRKOH9gK0paMA==\n");
    assert_int_equal(midge_test_reload(f->p), 0);
    /* Only alice (c1) is disconnected, with 0x98 Administrative action. */
    assert_int_equal(midge_test_disconnect_count(f->fb), 1);
    assert_string_equal(midge_test_disconnect_request(f->fb, 0)->client_id, "c1");
    assert_int_equal(midge_test_disconnect_request(f->fb, 0)->reason, 0x98);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE, "disconnecting client=c1"), 1);
    /* An unchanged file disconnects nobody. */
    assert_int_equal(midge_test_reload(f->p), 0);
    assert_int_equal(midge_test_disconnect_count(f->fb), 1);
    assert_int_equal(midge_test_client_disconnected(f->p, alice, 0), 0);
    assert_int_equal(midge_test_client_disconnected(f->p, anon, 0), 0);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* ---- The asynchronous path -------------------------------------------------------- */

static void
test_async_hashing_off_the_worker(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    midge_ticket *t = NULL;
    uint8_t reason = 0;

    assert_int_equal(load(f, PBKDF2_FILE), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE, "mode=async"), 1);
    /* The hook only queues the hash: the answer comes from the done callback. */
    midge_test_blocking_pause(f->p, 1);
    assert_int_equal(midge_test_auth(f->p, alice, "correct horse", 13, &reason, &t),
                     MIDGE_PENDING);
    assert_int_equal(midge_test_wait(t, 0, &reason), MIDGE_TEST_TIMEDOUT);
    midge_test_blocking_pause(f->p, 0);
    assert_true(midge_test_wait_blocking(f->fb, WAIT_MS) >= 1);
    assert_int_equal(midge_test_wait(t, WAIT_MS, &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_async_full_queue_answers_busy(void **state)
{
    struct fixture *f = *state;
    midge_client *a = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *b = midge_test_client_new(f->fb, "c2", "bob");
    midge_ticket *t = NULL;
    uint8_t reason = 0;

    assert_int_equal(load(f, PBKDF2_FILE), 0);
    assert_int_equal(midge_test_set_queue_limit(f->p, 1), 0);
    midge_test_blocking_pause(f->p, 1);
    assert_int_equal(midge_test_auth(f->p, a, "correct horse", 13, &reason, &t), MIDGE_PENDING);
    /* plugin_queue is full: refused at once with 0x89 Server busy, nothing hashed. */
    assert_int_equal(midge_test_auth(f->p, b, "b0b:with:colons", 15, &reason, NULL), MIDGE_DENY);
    assert_int_equal(reason, 0x89);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_WARNING, "user=bob client=c2 addr=127.0.0.1 "
                                                                 "reason=busy"), 1);
    midge_test_blocking_pause(f->p, 0);
    assert_true(midge_test_wait_blocking(f->fb, WAIT_MS) >= 1);
    assert_int_equal(midge_test_wait(t, WAIT_MS, &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_async_failure_delayed_by_timer(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    midge_ticket *t = NULL;
    uint8_t reason = 0;

    midge_test_option(f->p, "fail_delay", "1");
    midge_test_option(f->p, "fail_delay_max", "1");
    assert_int_equal(load(f, PBKDF2_FILE), 0);
    /* The first failure is answered at once. */
    assert_int_equal(auth(f, alice, "guess1", &reason), MIDGE_DENY);
    assert_int_equal(midge_test_timer_count(f->p), 0);
    /* The second waits for a timer on the worker's loop, not on a sleeping thread. */
    assert_int_equal(midge_test_auth(f->p, alice, "guess2", 6, &reason, &t), MIDGE_PENDING);
    assert_true(midge_test_wait_blocking(f->fb, WAIT_MS) >= 1);
    assert_int_equal(midge_test_timer_count(f->p), 1);
    assert_int_equal(midge_test_wait(t, 0, &reason), MIDGE_TEST_TIMEDOUT);
    assert_int_equal(midge_test_advance(f->fb, 0.5), 0);
    assert_int_equal(midge_test_advance(f->fb, 0.6), 1);
    assert_int_equal(midge_test_wait(t, WAIT_MS, &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x86);
    assert_int_equal(midge_test_timer_count(f->p), 0); /* the fired timer was stopped */
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_NOTICE, "reason=wrong-password "
                                                                "delay=1.0s"), 1);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* ---- An older broker ---------------------------------------------------------------- */

static void
test_broker_without_run_blocking(void **state)
{
    struct fixture *f = *state;
    midge_client *alice = midge_test_client_new(f->fb, "c1", "alice");
    uint8_t reason;

    assert_int_equal(midge_test_set_api_size(f->fb, offsetof(struct midge_api, client_data)), 0);
    assert_int_equal(load(f, PBKDF2_FILE), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_WARNING, "no run_blocking"), 1);
    assert_int_equal(midge_test_auth(f->p, alice, "correct horse", 13, &reason, NULL),
                     MIDGE_ALLOW);
    assert_int_equal(midge_test_auth(f->p, alice, "wrong", 5, &reason, NULL), MIDGE_DENY);
    assert_int_equal(reason, 0x86);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_requires_file_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_broken_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mosquitto_file_verdicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_user_defer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_hit_and_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connected_clients_tracked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_hashing_off_the_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_full_queue_answers_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_failure_delayed_by_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_without_run_blocking, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
