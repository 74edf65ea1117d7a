/*
 * The fake broker's ABI 1.0 additions around clients and the loop, driven
 * through tests/plugins/harness_probe.c the way a plugin author tests a
 * plugin: run_blocking (a real worker thread, bounded queue, done on the
 * test's thread), per-client data, client extras, client_disconnect and
 * client_find, timers on the manual clock, fd watchers on real fds, metrics,
 * and the plugin bugs the harness reports for their misuse.
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
    assert_int_equal(midge_test_option(f->p, "password", "secret"), 0);
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

/* Runs the auth hook with a string password. */
static int
auth(midge_plugin *p, midge_client *c, const char *pw, uint8_t *reason, midge_ticket **t)
{
    return midge_test_auth(p, c, pw, pw != NULL ? strlen(pw) : 0, reason, t);
}

/* ---- run_blocking ----------------------------------------------------------- */

static void
test_blocking_auth(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    midge_ticket *t1;
    midge_ticket *t2;
    uint8_t reason = 0;

    midge_test_blocking_pause(f->p, 1);
    assert_int_equal(auth(f->p, c, "secret", NULL, &t1), MIDGE_PENDING);
    assert_int_equal(auth(f->p, c, "wrong", NULL, &t2), MIDGE_PENDING);
    assert_int_equal(f->pr->blocking_rc, 0);
    /* Held before the work: nothing is complete yet. */
    assert_int_equal(midge_test_wait(t1, 0, NULL), MIDGE_TEST_TIMEDOUT);
    midge_test_blocking_pause(f->p, 0);
    assert_int_equal(midge_test_wait_blocking(f->fb, WAIT_MS), 2);
    assert_int_equal(midge_test_wait(t1, 0, &reason), MIDGE_ALLOW);
    assert_int_equal(midge_test_wait(t2, 0, &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x86);
    /* work ran on another thread, done on the one that ran the hook. */
    assert_false(pthread_equal(f->pr->work_thread, f->pr->hook_thread));
    assert_true(pthread_equal(f->pr->done_thread, pthread_self()));
    assert_int_equal(midge_test_run_done(f->fb), 0);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* midge_test_wait on the main thread runs done callbacks, as the broker's loop would. */
static void
test_blocking_wait_runs_done(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    midge_ticket *t;
    uint8_t reason = 0;

    assert_int_equal(auth(f->p, c, "wrong", NULL, &t), MIDGE_PENDING);
    assert_int_equal(midge_test_wait(t, WAIT_MS, &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x86);
    assert_true(pthread_equal(f->pr->done_thread, pthread_self()));
    assert_int_equal(midge_test_wait_blocking(f->fb, WAIT_MS), 0);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_blocking_queue_full(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    midge_ticket *t[3];
    uint8_t reason = 0;

    assert_int_equal(midge_test_set_queue_limit(f->p, 2), 0);
    assert_int_equal(midge_test_set_queue_limit(f->p, 0), -MIDGE_EINVAL);
    midge_test_blocking_pause(f->p, 1);
    assert_int_equal(auth(f->p, c, "secret", NULL, &t[0]), MIDGE_PENDING);
    assert_int_equal(auth(f->p, c, "secret", NULL, &t[1]), MIDGE_PENDING);
    /* plugin_queue jobs already wait: -MIDGE_EBUSY, the plugin answers 0x89. */
    assert_int_equal(auth(f->p, c, "secret", &reason, &t[2]), MIDGE_DENY);
    assert_int_equal(f->pr->blocking_rc, -MIDGE_EBUSY);
    assert_int_equal(reason, 0x89);
    /* Held: waiting times out instead of hanging. */
    assert_int_equal(midge_test_wait_blocking(f->fb, 50), MIDGE_TEST_TIMEDOUT);
    midge_test_blocking_pause(f->p, 0);
    assert_int_equal(midge_test_wait_blocking(f->fb, WAIT_MS), 2);
    assert_int_equal(midge_test_wait(t[0], 0, NULL), MIDGE_ALLOW);
    assert_int_equal(midge_test_wait(t[1], 0, NULL), MIDGE_ALLOW);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_blocking_runs_before_cleanup(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    midge_ticket *t;

    midge_test_blocking_pause(f->p, 1);
    assert_int_equal(auth(f->p, c, "secret", NULL, &t), MIDGE_PENDING);
    /* "Jobs still queued at shutdown run before cleanup": work and done both ran. */
    midge_test_unload(f->p);
    assert_int_equal(midge_test_wait(t, 0, NULL), MIDGE_ALLOW);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

struct nested {
    const struct midge_api *api;
    midge_plugin *p;
    int rc;
};

static void
nested_work(void *arg)
{
    struct nested *n = arg;

    n->rc = n->api->run_blocking(n->p, nested_work, NULL, arg);
}

static void
test_blocking_misuse(void **state)
{
    struct fixture *f = *state;
    struct nested n = {f->api, f->p, 1};

    assert_int_equal(f->api->run_blocking(f->p, NULL, NULL, NULL), -MIDGE_EINVAL);
    /* A work function has no loop: run_blocking from it is refused. */
    assert_int_equal(f->api->run_blocking(f->p, nested_work, NULL, &n), 0);
    assert_true(midge_test_wait_blocking(f->fb, WAIT_MS) >= 0);
    assert_int_equal(n.rc, -MIDGE_ESTATE);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "plugin bug: api->run_blocking() called from a "
                                       "run_blocking work function"), 1);
    midge_test_unload(f->p);
    assert_int_equal(f->api->run_blocking(f->p, nested_work, NULL, &n), -MIDGE_ESTATE);
    assert_int_equal(midge_test_bug_count(f->fb), 2);
}

/* ---- Client extras and per-client data ------------------------------------- */

/* ACL decisions may be PENDING (not RECEIVE), completed from another thread. */
static void
test_acl_async(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    struct midge_acl_request req = {.size = sizeof(req), .action = MIDGE_ACL_PUBLISH,
                                    .topic = "async/yes", .qos = 1};
    midge_ticket *t = NULL;
    uint8_t reason = 0;

    assert_int_equal(midge_test_acl(f->p, c, &req, &reason, &t), MIDGE_PENDING);
    assert_non_null(t);
    assert_int_equal(midge_test_wait(t, 5000, &reason), MIDGE_ALLOW);
    req.action = MIDGE_ACL_SUBSCRIBE;
    req.topic = "async/no/#";
    assert_int_equal(midge_test_acl(f->p, c, &req, &reason, &t), MIDGE_PENDING);
    assert_int_equal(midge_test_wait(t, 5000, &reason), MIDGE_DENY);
    assert_int_equal(reason, 0x87);
    req.topic = "deny/x";
    assert_int_equal(midge_test_acl(f->p, c, &req, &reason, &t), MIDGE_DENY);
    assert_int_equal(reason, 0x87);
    /* RECEIVE: no ticket for the hook; PENDING is applied as the timeout verdict at once. */
    req.action = MIDGE_ACL_RECEIVE;
    req.topic = "async/yes";
    assert_int_equal(midge_test_acl(f->p, c, &req, &reason, &t), MIDGE_PENDING);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_client_extras(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    static const char *const sans[] = {"alice.example", "10.0.0.1"};
    struct midge_tls_info tls = {sizeof(tls), "TLSv1.3", "TLS_AES_128_GCM_SHA256",
                                 "CN=alice,O=midge", "alice.example", 1, "CN=test ca", sans, 2};

    /* Defaults. */
    assert_int_equal(auth(f->p, c, "secret", NULL, NULL), MIDGE_PENDING);
    assert_string_equal(f->pr->listener, "0.0.0.0:1883");
    assert_string_equal(f->pr->peer_ip, "127.0.0.1");
    assert_int_equal(f->pr->peer_port, 50000);
    assert_string_equal(f->pr->props, "");
    assert_int_equal(f->pr->tls_rc, -MIDGE_ENOENT); /* plain TCP */

    assert_int_equal(midge_test_client_set_listener_name(c, "[::]:8883"), 0);
    assert_int_equal(midge_test_client_set_address(c, "[2001:db8::7]:4242"), 0);
    assert_int_equal(midge_test_client_add_user_property(c, "region", "eu"), 0);
    assert_int_equal(midge_test_client_add_user_property(c, "region", "us"), 0);
    assert_int_equal(midge_test_client_set_tls(c, &tls), 0);
    assert_int_equal(auth(f->p, c, "secret", NULL, NULL), MIDGE_PENDING);
    assert_string_equal(f->pr->listener, "[::]:8883");
    assert_string_equal(f->pr->peer_ip, "2001:db8::7");
    assert_int_equal(f->pr->peer_port, 4242);
    assert_string_equal(f->pr->props, "region=eu;region=us;");
    assert_int_equal(f->pr->tls_rc, 0);
    assert_string_equal(f->pr->tls_subject, "CN=alice,O=midge");
    assert_int_equal(f->pr->tls_verified, 1);

    assert_int_equal(midge_test_client_set_address(c, "10.0.0.9:1234"), 0);
    assert_int_equal(midge_test_client_set_tls(c, NULL), 0);
    assert_int_equal(auth(f->p, c, "secret", NULL, NULL), MIDGE_PENDING);
    assert_string_equal(f->pr->peer_ip, "10.0.0.9");
    assert_int_equal(f->pr->peer_port, 1234);
    assert_int_equal(f->pr->tls_rc, -MIDGE_ENOENT);
    assert_int_equal(midge_test_wait_blocking(f->fb, WAIT_MS), 3);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* A plugin built against an older, shorter midge_tls_info gets only its fields. */
static int hook_tls_rc;
static struct {
    uint32_t size;
    const char *version;
    const char *cipher;
    const char *canary; /* where `subject` would be: must stay untouched */
} old_tls;

static void
older_tls_connected(void *state, midge_client *c)
{
    const struct midge_api *api = state;

    old_tls.size = offsetof(struct midge_tls_info, subject);
    old_tls.canary = "untouched";
    hook_tls_rc = api->client_tls(c, (struct midge_tls_info *)(void *)&old_tls);
}

static const struct midge_hooks older_hooks = {
    .size = sizeof(struct midge_hooks),
    .client_connected = older_tls_connected,
};

static int
older_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    api->hooks_set(self, &older_hooks);
    *state = (void *)api;
    return 0;
}

static const struct midge_plugin_descriptor older_desc = {
    sizeof(struct midge_plugin_descriptor), MIDGE_ABI_MAJOR, MIDGE_ABI_MINOR, "older", "0",
    "an older midge_tls_info", NULL,
};

static void
test_client_tls_older_struct(void **state)
{
    struct fixture *f = *state;
    midge_plugin *p = midge_test_plugin_new(f->fb, &older_desc, older_init, NULL);
    midge_client *c = midge_test_client_new(f->fb, "c1", NULL);
    struct midge_tls_info tls = {sizeof(tls), "TLSv1.2", "ECDHE", "CN=x", NULL, 0, NULL, NULL, 0};

    assert_int_equal(midge_test_load(p), 0);
    assert_int_equal(midge_test_client_set_tls(c, &tls), 0);
    assert_int_equal(midge_test_client_connected(p, c), 0);
    assert_int_equal(hook_tls_rc, 0);
    assert_string_equal(old_tls.version, "TLSv1.2");
    assert_string_equal(old_tls.cipher, "ECDHE");
    assert_string_equal(old_tls.canary, "untouched");
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_client_data(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    midge_client *c2 = midge_test_client_new(f->fb, "c2", "bob");

    assert_int_equal(auth(f->p, c, "secret", NULL, NULL), MIDGE_PENDING);
    assert_non_null(midge_test_client_data(f->p, c));
    assert_null(midge_test_client_data(f->p, c2));
    assert_int_equal(midge_test_client_connected(f->p, c), 0);
    assert_int_equal(midge_test_client_connected(f->p, c), 0);
    assert_int_equal(f->pr->connects_seen, 2);
    /* The connection ends: after client_disconnected the broker calls free_fn. */
    assert_int_equal(midge_test_client_disconnected(f->p, c, 0), 0);
    assert_int_equal(f->pr->client_frees, 1);
    assert_null(midge_test_client_data(f->p, c));
    /* The client leaves (and with the broker): freed too. */
    assert_int_equal(auth(f->p, c, "secret", NULL, NULL), MIDGE_PENDING);
    assert_int_equal(auth(f->p, c2, "secret", NULL, NULL), MIDGE_PENDING);
    assert_int_equal(midge_test_wait_blocking(f->fb, WAIT_MS), 3);
    midge_test_client_free(c);
    assert_int_equal(f->pr->client_frees, 2);
    /* Unload: connections end before cleanup, so the data goes first. */
    midge_test_unload(f->p);
    assert_null(midge_test_client_data(f->p, c2));
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static int replaced_frees;

static void
count_free(void *data)
{
    (void)data;
    replaced_frees++;
}

static void
test_client_data_misuse(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    static int a;
    static int b;

    /* Outside a hook about c: a plugin bug (the call still works, as in the broker). */
    assert_int_equal(f->api->client_data_set(f->p, c, &a, count_free), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR, "api->client_data_set() for "
                                       "client 'c1' called outside a hook"), 1);
    /* Setting again frees the previous value; the same pointer is not freed. */
    assert_int_equal(f->api->client_data_set(f->p, c, &a, count_free), 0);
    assert_int_equal(replaced_frees, 0);
    assert_int_equal(f->api->client_data_set(f->p, c, &b, count_free), 0);
    assert_int_equal(replaced_frees, 1);
    assert_ptr_equal(f->api->client_data(f->p, c), &b);
    assert_int_equal(f->api->client_data_set(f->p, c, NULL, NULL), 0);
    assert_int_equal(replaced_frees, 2);
    assert_int_equal(midge_test_bug_count(f->fb), 5);
}

/* ---- Clients by id -------------------------------------------------------- */

static void
test_disconnect_and_find(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    const struct midge_test_disconnect *d;

    assert_int_equal(midge_test_client_set_address(c, "192.0.2.1:777"), 0);
    snprintf(f->pr->kick_id, sizeof(f->pr->kick_id), "c9");
    snprintf(f->pr->find_id, sizeof(f->pr->find_id), "c1");
    assert_int_equal(midge_test_tick(f->p), 0);
    assert_int_equal(midge_test_disconnect_count(f->fb), 1);
    d = midge_test_disconnect_request(f->fb, 0);
    assert_non_null(d);
    assert_string_equal(d->instance, "probe");
    assert_string_equal(d->client_id, "c9");
    assert_int_equal(d->reason, 0x98);
    assert_null(midge_test_disconnect_request(f->fb, 1));
    /* client_find answers asynchronously, when the test runs the requests. */
    assert_int_equal(f->pr->found, -1);
    assert_int_equal(midge_test_run_finds(f->fb), 1);
    assert_int_equal(f->pr->found, 1);
    assert_string_equal(f->pr->found_user, "alice");
    assert_string_equal(f->pr->found_address, "192.0.2.1:777");
    assert_int_equal(f->pr->found_connected, 1);
    /* A persistent session whose client is away. */
    midge_test_client_set_session(c, 0, 3600, 2, 5, 1);
    assert_int_equal(midge_test_tick(f->p), 0);
    assert_int_equal(midge_test_run_finds(f->fb), 1);
    assert_int_equal(f->pr->found_connected, 0);
    assert_string_equal(f->pr->found_user, "");
    assert_string_equal(f->pr->found_address, "");
    assert_int_equal(f->pr->found_queued, 5);
    /* No such session: info is NULL. */
    snprintf(f->pr->find_id, sizeof(f->pr->find_id), "nobody");
    assert_int_equal(midge_test_tick(f->p), 0);
    assert_int_equal(midge_test_run_finds(f->fb), 1);
    assert_int_equal(f->pr->found, 0);
    /* Requests of an unloaded instance get no callback. */
    assert_int_equal(midge_test_tick(f->p), 0);
    midge_test_disconnect_clear(f->fb);
    assert_int_equal(midge_test_disconnect_count(f->fb), 0);
    assert_int_equal(f->api->client_disconnect(f->p, NULL, 0), -MIDGE_EINVAL);
    assert_int_equal(f->api->client_find(f->p, "c1", NULL, NULL), -MIDGE_EINVAL);
    midge_test_unload(f->p);
    assert_int_equal(midge_test_run_finds(f->fb), 0);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* ---- Timers and fd watchers ------------------------------------------------ */

static int extra_fired;

static void
extra_timer(void *arg, midge_timer *t)
{
    (void)arg;
    (void)t;
    extra_fired++;
}

static void
test_timers(void **state)
{
    struct fixture *f = *state;
    midge_timer *t;

    /* init started a 10 s repeating timer. */
    assert_int_equal(midge_test_timer_count(f->p), 1);
    assert_int_equal(midge_test_advance(f->fb, 9.5), 0);
    assert_int_equal(midge_test_advance(f->fb, 0.5), 1);
    assert_int_equal(f->pr->timer_fired, 1);
    assert_int_equal(midge_test_advance(f->fb, 25), 2); /* at 20 and 30 */
    assert_true(midge_test_now(f->fb) == 35.0);
    /* A one-shot that stops itself when it fires. */
    probe_once(f->pr, 2);
    assert_int_equal(midge_test_timer_count(f->p), 2);
    assert_int_equal(midge_test_advance(f->fb, 2), 1);
    assert_int_equal(f->pr->once_fired, 1);
    assert_int_equal(midge_test_timer_count(f->p), 1);
    assert_int_equal(midge_test_advance(f->fb, 100), 10);
    assert_int_equal(f->pr->once_fired, 1);

    /* Bad arguments. */
    assert_null(f->api->timer_start(f->p, -1, 0, extra_timer, NULL));
    assert_null(f->api->timer_start(f->p, 1, 0, NULL, NULL));
    /* Stopped twice: a plugin bug, not a crash. */
    t = f->api->timer_start(f->p, 1, 0, extra_timer, NULL);
    assert_non_null(t);
    f->api->timer_stop(f->p, t);
    assert_int_equal(midge_test_advance(f->fb, 1), 0); /* the 10 s timer is due at 140 */
    assert_int_equal(extra_fired, 0);
    f->api->timer_stop(f->p, t);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->timer_stop() on a timer already stopped"), 1);
    /* A timer left running at cleanup is freed by the broker (no bug)... */
    t = f->api->timer_start(f->p, 1, 1, extra_timer, NULL);
    midge_test_unload(f->p);
    assert_int_equal(midge_test_timer_count(f->p), 0);
    assert_int_equal(midge_test_advance(f->fb, 10), 0);
    assert_int_equal(midge_test_bug_count(f->fb), 1);
    /* ...so stopping it afterwards is a use after free in the broker: reported. */
    f->api->timer_stop(f->p, t);
    assert_int_equal(midge_test_bug_count(f->fb), 2);
}

static int write_events;

static void
on_write(void *arg, int fd, int revents)
{
    (void)arg;
    (void)fd;
    write_events = revents;
}

static void
test_fd_watch(void **state)
{
    struct fixture *f = *state;
    midge_watch *w;
    int fds[2];

    assert_int_equal(midge_test_watch_count(f->p), 1);
    assert_int_equal(midge_test_poll(f->fb, 0), 0);
    assert_int_equal(write(f->pr->pipe_w, "hi", 2), 2);
    assert_int_equal(midge_test_poll(f->fb, WAIT_MS), 1);
    assert_int_equal(f->pr->watch_reads, 1);
    assert_string_equal(f->pr->watch_buf, "hi");
    assert_int_equal(midge_test_poll(f->fb, 0), 0);
    /* Watching for WRITE instead: a pipe's write end... here the read end never is. */
    assert_int_equal(f->api->fd_watch_set(f->p, f->pr->watch, 0), 0);
    assert_int_equal(write(f->pr->pipe_w, "x", 1), 1);
    assert_int_equal(midge_test_poll(f->fb, 0), 0);
    assert_int_equal(f->api->fd_watch_set(f->p, f->pr->watch, MIDGE_FD_READ), 0);
    assert_int_equal(f->api->fd_watch_set(f->p, f->pr->watch, 8), -MIDGE_EINVAL);
    assert_int_equal(midge_test_poll(f->fb, WAIT_MS), 1);
    assert_string_equal(f->pr->watch_buf, "x");
    /* The callback removes its watcher on "stop". */
    assert_int_equal(write(f->pr->pipe_w, "stop", 4), 4);
    assert_int_equal(midge_test_poll(f->fb, WAIT_MS), 1);
    assert_int_equal(midge_test_watch_count(f->p), 0);

    /* A write watcher on a fresh pipe's write end is ready at once. */
    assert_int_equal(pipe(fds), 0);
    w = f->api->fd_watch(f->p, fds[1], MIDGE_FD_WRITE, on_write, NULL);
    assert_null(f->api->fd_watch(f->p, -1, MIDGE_FD_READ, NULL, NULL));
    assert_non_null(w);
    f->api->fd_unwatch(f->p, w);
    f->api->fd_unwatch(f->p, w);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->fd_unwatch() on a watcher already removed"), 1);
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(midge_test_bug_count(f->fb), 1);
}

static void
test_fd_write_and_closed(void **state)
{
    struct fixture *f = *state;
    midge_watch *w;
    int fds[2];

    assert_int_equal(pipe(fds), 0);
    w = f->api->fd_watch(f->p, fds[1], MIDGE_FD_WRITE, on_write, NULL);
    assert_non_null(w);
    assert_int_equal(midge_test_poll(f->fb, WAIT_MS), 1);
    assert_int_equal(write_events, MIDGE_FD_WRITE);
    /* Closed while watched: the plugin forgot fd_unwatch. */
    close(fds[1]);
    close(fds[0]);
    assert_int_equal(midge_test_poll(f->fb, 0), 0);
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR, "is watched but not open"), 1);
    f->api->fd_unwatch(f->p, w);
    assert_int_equal(midge_test_bug_count(f->fb), 1);
}

/* ---- Metrics -------------------------------------------------------------- */

static void
test_metrics(void **state)
{
    struct fixture *f = *state;
    midge_client *c = midge_test_client_new(f->fb, "c1", "alice");
    struct midge_test_metric m;
    int i;

    for (i = 0; i < 3; i++) {
        assert_int_equal(auth(f->p, c, i < 2 ? "secret" : "bad", NULL, NULL), MIDGE_PENDING);
    }
    assert_int_equal(midge_test_wait_blocking(f->fb, WAIT_MS), 3);
    assert_int_equal(midge_test_client_connected(f->p, c), 0);
    assert_int_equal(midge_test_metric(f->p, "auth_total", &m), 0);
    assert_int_equal(m.kind, MIDGE_METRIC_COUNTER);
    assert_int_equal(m.value, 3);
    assert_string_equal(m.help, "auth hook calls");
    assert_int_equal(midge_test_metric(f->p, "clients", &m), 0);
    assert_int_equal(m.kind, MIDGE_METRIC_GAUGE);
    assert_int_equal(m.value, 1);
    assert_int_equal(midge_test_metric(f->p, "check_seconds", &m), 0);
    assert_int_equal(m.kind, MIDGE_METRIC_HISTOGRAM);
    assert_int_equal(m.count, 3);
    assert_true(m.sum == 2.5);
    assert_true(m.p50 == 0.5);
    assert_true(m.p99 == 1.5);
    assert_int_equal(midge_test_metric(f->p, "nope", &m), -MIDGE_ENOENT);
    /* The repeating timer sets the gauge. */
    assert_int_equal(midge_test_advance(f->fb, 10), 1);
    assert_int_equal(midge_test_metric(f->p, "clients", &m), 0);
    assert_int_equal(m.value, 101);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

/* A plugin whose init tries metric names and kinds. */
static midge_metric *made[6];

static int
names_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    made[0] = api->metric_new(self, "ok_name_1", MIDGE_METRIC_COUNTER, NULL);
    made[1] = api->metric_new(self, "ok_name_1", MIDGE_METRIC_GAUGE, "duplicate");
    made[2] = api->metric_new(self, "Upper", MIDGE_METRIC_COUNTER, "");
    made[3] = api->metric_new(self, "has-dash", MIDGE_METRIC_COUNTER, "");
    made[4] = api->metric_new(self, "", MIDGE_METRIC_COUNTER, "");
    made[5] = api->metric_new(self, "kind", 9, "");
    *state = NULL;
    return 0;
}

static const struct midge_plugin_descriptor names_desc = {
    sizeof(struct midge_plugin_descriptor), MIDGE_ABI_MAJOR, MIDGE_ABI_MINOR, "names", "0",
    "metric names", NULL,
};

static void
test_metric_misuse(void **state)
{
    struct fixture *f = *state;
    midge_plugin *p = midge_test_plugin_new(f->fb, &names_desc, names_init, NULL);
    struct midge_test_metric m;
    int i;

    assert_int_equal(midge_test_load(p), 0);
    assert_non_null(made[0]);
    for (i = 1; i < 6; i++) {
        assert_null(made[i]); /* bad arguments: NULL, not a bug */
    }
    assert_int_equal(midge_test_bug_count(f->fb), 0);
    /* Outside init. */
    assert_null(f->api->metric_new(f->p, "late", MIDGE_METRIC_COUNTER, ""));
    assert_int_equal(midge_test_logged(f->fb, MIDGE_LOG_ERROR,
                                       "api->metric_new(\"late\") called outside init"), 1);
    /* Against the kind: each ignored and reported. */
    f->api->metric_add(made[0], -1);
    f->api->metric_set(made[0], 5);
    f->api->metric_observe(made[0], 1.0);
    f->api->metric_observe(f->pr->check_secs, -1.0);
    f->api->metric_add(f->pr->check_secs, 1);
    assert_int_equal(midge_test_bug_count(f->fb), 6);
    assert_int_equal(midge_test_metric(p, "ok_name_1", &m), 0);
    assert_int_equal(m.value, 0);
    assert_int_equal(midge_test_metric(f->p, "check_seconds", &m), 0);
    assert_int_equal(m.count, 0);
    /* Gauges may go down and be set. */
    f->api->metric_add(f->pr->clients, -4);
    assert_int_equal(midge_test_metric(f->p, "clients", &m), 0);
    assert_int_equal(m.value, -4);
    assert_int_equal(midge_test_bug_count(f->fb), 6);
}

/* ---- Administration -------------------------------------------------------- */

struct listing {
    int clients;
    int done;
    int connected;
    int retained;
    char last_topic[64];
};

static void
on_client(void *arg, const struct midge_client_info *info)
{
    struct listing *l = arg;

    l->clients++;
    l->connected += info->connected;
}

static void
on_list_done(void *arg)
{
    ((struct listing *)arg)->done++;
}

static int
on_retained(void *arg, const midge_message *msg)
{
    struct listing *l = arg;

    l->retained++;
    snprintf(l->last_topic, sizeof(l->last_topic), "%s", midge_test_message_topic(msg));
    return l->retained >= 2; /* stop after two */
}

static void
test_admin(void **state)
{
    struct fixture *f = *state;
    struct midge_broker_stats st = {0};
    struct midge_broker_stats set = {0};
    struct listing l = {0};
    midge_client *c2 = midge_test_client_new(f->fb, "c2", NULL);
    midge_message *m;
    static const char *const topics[] = {"r/a", "r/b", "r/c", "other"};
    size_t i;

    /* stats: what the test set, only up to the plugin's struct size. */
    set.clients_connected = 7;
    set.uptime = 12.5;
    midge_test_set_stats(f->fb, &set);
    st.size = sizeof(st);
    assert_int_equal(f->api->stats(f->p, &st), 0);
    assert_int_equal(st.clients_connected, 7);
    assert_true(st.uptime == 12.5);
    memset(&st, 0xff, sizeof(st));
    st.size = offsetof(struct midge_broker_stats, sessions);
    assert_int_equal(f->api->stats(f->p, &st), 0);
    assert_int_equal(st.clients_connected, 7);
    assert_int_equal(st.sessions, UINT64_MAX); /* beyond its size: not written */

    /* client_list: every fake client, then done, when the test runs the requests. */
    (void)midge_test_client_new(f->fb, "c1", "alice");
    midge_test_client_set_session(c2, 0, 60, 0, 0, 0);
    assert_int_equal(f->api->client_list(f->p, on_client, on_list_done, &l), 0);
    assert_int_equal(l.done, 0);
    assert_int_equal(midge_test_run_finds(f->fb), 1);
    assert_int_equal(l.clients, 2);
    assert_int_equal(l.connected, 1);
    assert_int_equal(l.done, 1);

    /* retained_list: matching topics, synchronously, until cb says stop. */
    for (i = 0; i < 4; i++) {
        m = midge_test_message_new(f->fb, topics[i], "x", 1, 0, 1);
        assert_int_equal(midge_test_retain(f->fb, m), 0);
        midge_test_message_free(m);
    }
    m = midge_test_message_new(f->fb, "r/c", NULL, 0, 0, 1);
    assert_int_equal(midge_test_retain(f->fb, m), 0); /* empty payload clears r/c */
    midge_test_message_free(m);
    assert_int_equal(f->api->retained_list(f->p, "r/+", on_retained, &l), 2);
    assert_int_equal(l.retained, 2);
    l.retained = -10;
    assert_int_equal(f->api->retained_list(f->p, "r/#", on_retained, &l), 2);
    assert_int_equal(f->api->retained_list(f->p, "r/#/x", on_retained, &l), -MIDGE_EINVAL);

    assert_int_equal(f->api->reload_request(f->p), 0);
    assert_int_equal(midge_test_reload_requests(f->fb), 1);
    assert_int_equal(midge_test_bug_count(f->fb), 0);
}

static void
test_api_size_new_entries(void **state)
{
    struct fixture *f = *state;

    assert_true(MIDGE_API_HAS(f->api, unsubscribe));
    assert_true(MIDGE_API_HAS(f->api, reload_request));
    /* An older broker without run_blocking and what follows it. */
    assert_int_equal(midge_test_set_api_size(f->fb, offsetof(struct midge_api, run_blocking)),
                     0);
    assert_true(MIDGE_API_HAS(f->api, fd_unwatch));
    assert_false(MIDGE_API_HAS(f->api, run_blocking));
    assert_false(MIDGE_API_HAS(f->api, client_find));
    assert_false(MIDGE_API_HAS(f->api, subscribe));
    assert_int_equal(midge_test_set_api_size(f->fb, sizeof(struct midge_api)), 0);
    assert_true(MIDGE_API_HAS(f->api, subscribe));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_blocking_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acl_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_wait_runs_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_runs_before_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_extras, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_tls_older_struct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_data_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_and_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fd_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fd_write_and_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metric_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_size_new_entries, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
