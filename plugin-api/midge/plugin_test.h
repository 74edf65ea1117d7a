/*
 * midge plugin test harness: a fake broker implementing `struct midge_api`,
 * so a plugin's hooks can be unit-tested (with cmocka or anything else)
 * without starting midge. Link with -lmidge-plugin-test.
 *
 * Typical test, linking the plugin's source into the test program:
 *
 *     midge_test_broker *fb = midge_test_broker_new();
 *     midge_plugin *p = midge_test_plugin_new(fb, MIDGE_TEST_LINKED_PLUGIN);
 *     midge_test_option(p, "users", "alice:secret");
 *     assert_int_equal(midge_test_load(p), 0);
 *     midge_client *c = midge_test_client_new(fb, "c1", "alice");
 *     uint8_t reason;
 *     assert_int_equal(midge_test_auth(p, c, "secret", 6, &reason, NULL), MIDGE_ALLOW);
 *     assert_int_equal(midge_test_bug_count(fb), 0);
 *     midge_test_broker_free(fb);
 *
 * What the fake broker does like the real one: it checks the descriptor
 * (ABI major, declared options), runs init with the options set, gives the
 * plugin a size-prefixed API table (MIDGE_API_HAS works), keeps options in
 * force only when init/reload succeed, and treats `complete` as the header
 * says: thread-safe, -MIDGE_ESTATE for a ticket completed twice, after its
 * client left, after a (simulated) timeout or for a hook that did not
 * return PENDING; a verdict other than ALLOW, DENY or DEFER is applied as
 * DENY, as the broker does.
 *
 * What it adds for tests: it records every misuse of the API it can detect
 * as a "plugin bug" (an error log line "plugin bug: ..." and a counter):
 * the cases above, an invalid verdict, a client accessor called outside a
 * hook about that client or from another thread, api->option() or
 * api->set_error() outside init/reload, hooks_set() outside init or twice, a
 * hook returning a value that is not a verdict, init failing without
 * api->set_error(). End every test with
 * assert_int_equal(midge_test_bug_count(fb), 0).
 *
 * What it does not do: chains (each call runs one instance's hook), the
 * plugin_timeout clock (simulate it with midge_test_expire()), listeners,
 * MQTT.
 *
 * Threads: the thread calling midge_test_auth() and friends plays the
 * worker thread; run hooks of one client from one thread at a time. The
 * functions the header marks [any thread] (log, complete, publish,
 * instance_name) are thread-safe here too, and so are midge_test_wait(),
 * midge_test_wait_published(), midge_test_logged(), midge_test_log_count(),
 * midge_test_published_count() and midge_test_bug_count(). Everything else
 * is for the test's main thread.
 *
 * Ownership: every object belongs to its fake broker and is freed by
 * midge_test_broker_free(); the strings and messages returned are borrowed
 * until then (or until the matching *_clear()). Nothing is global: two fake
 * brokers, or two instances of one plugin, can live in one process.
 */
#ifndef MIDGE_PLUGIN_TEST_H
#define MIDGE_PLUGIN_TEST_H

#include <stddef.h>
#include <stdint.h>

#include <midge/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A fake broker. */
typedef struct midge_test_broker midge_test_broker;

/* midge_test_wait() and midge_test_wait_published(): nothing happened in time. */
#define MIDGE_TEST_TIMEDOUT (-100)

/* The plugin linked into the test program (it must define midge_plugin_cleanup). */
extern const struct midge_plugin_descriptor midge_plugin_descriptor;
#define MIDGE_TEST_LINKED_PLUGIN &midge_plugin_descriptor, midge_plugin_init, midge_plugin_cleanup

/* A message the plugin published through api->publish(). Borrowed from the fake broker. */
struct midge_test_message {
    const char *instance; /* the publishing instance's name */
    const char *topic;
    const void *payload;  /* NUL-terminated for convenience (not counted in len) */
    size_t len;
    int qos;
    int retain;
};

/* ---- The fake broker ---------------------------------------------------- */

/*
 * Creates a fake broker; NULL when out of memory. Setting the environment
 * variable MIDGE_TEST_LOG=1 echoes every log line to stderr.
 */
midge_test_broker *midge_test_broker_new(void);

/*
 * Unloads every loaded instance (cleanup, last loaded first), then frees
 * the broker and everything it handed out. Threads of the plugin must be
 * stopped by then (the plugin's cleanup does it). NULL is ignored.
 */
void midge_test_broker_free(midge_test_broker *fb);

/* The API table instances of this broker receive (size = sizeof(struct midge_api)). */
const struct midge_api *midge_test_api(const midge_test_broker *fb);

/*
 * Simulates an older broker: the table's size becomes `size` bytes and the
 * entries beyond it NULL, so the plugin's MIDGE_API_HAS() fallbacks can be
 * tested. Call before loading. Returns 0, or -MIDGE_EINVAL when `size` is
 * smaller than the table's header or larger than the full table.
 */
int midge_test_set_api_size(midge_test_broker *fb, size_t size);

/* ---- Plugin instances --------------------------------------------------- */

/*
 * Creates an instance of a plugin linked into the test: its descriptor,
 * init and (optional, may be NULL) cleanup; pass MIDGE_TEST_LINKED_PLUGIN.
 * Nothing runs until midge_test_load(). NULL when out of memory or `desc`
 * or `init` is NULL. Owned by fb.
 */
midge_plugin *midge_test_plugin_new(midge_test_broker *fb,
                                    const struct midge_plugin_descriptor *desc,
                                    int (*init)(midge_plugin *, const struct midge_api *, void **),
                                    void (*cleanup)(midge_plugin *, void *));

/*
 * Creates an instance of a plugin shared object (dlopen with RTLD_NOW |
 * RTLD_LOCAL, as the broker does). A file that cannot be loaded, has no
 * descriptor or no init still yields an instance: midge_test_load() then
 * fails and midge_test_error() says why, in the broker's words. NULL only
 * when out of memory. Owned by fb; dlclose'd by midge_test_broker_free().
 */
midge_plugin *midge_test_plugin_open(midge_test_broker *fb, const char *path);

/*
 * Sets the instance name (the broker word plugin_instance); default the
 * descriptor's name. Names must be unique among loaded instances of one
 * fake broker, as in the broker. Before load. Returns 0, -MIDGE_ENOMEM or
 * -MIDGE_ESTATE (loaded).
 */
int midge_test_set_instance(midge_plugin *p, const char *name);

/*
 * Sets option `key` (plugin_opt_KEY) to `value` (copied) for the next
 * midge_test_load() or midge_test_reload(); NULL `value` removes it.
 * Options keep the order they were first set in. Returns 0, -MIDGE_EINVAL
 * or -MIDGE_ENOMEM.
 */
int midge_test_option(midge_plugin *p, const char *key, const char *value);

/* Removes every option set with midge_test_option(). */
void midge_test_option_clear(midge_plugin *p);

/*
 * Loads the instance: checks the descriptor like the broker (ABI major,
 * declared options), then runs init. Returns init's result (0 or
 * negative), or -MIDGE_ENOENT (file or symbol missing), -MIDGE_EINVAL (ABI,
 * unknown option, duplicate instance name), -MIDGE_ESTATE (already loaded);
 * on failure midge_test_error() has the message. An instance can be loaded
 * again after midge_test_unload().
 */
int midge_test_load(midge_plugin *p);

/*
 * Simulates SIGHUP: api->option() returns the options now set, the reload
 * hook runs; on 0 they stay in force, else the previous ones come back
 * (midge_test_error() has the plugin's message). Returns the hook's result,
 * -MIDGE_ENOTSUP when the plugin has no reload hook (it keeps its old
 * options, as in the broker) or -MIDGE_ESTATE when not loaded.
 */
int midge_test_reload(midge_plugin *p);

/*
 * Calls cleanup (if any). Tickets of this instance still pending can no
 * longer be completed (-MIDGE_ESTATE, plugin bug). No-op when not loaded.
 */
void midge_test_unload(midge_plugin *p);

/*
 * The message of the last failed load or reload: the plugin's
 * api->set_error() text, or the loader's. "" when none. Borrowed until the
 * next load or reload.
 */
const char *midge_test_error(const midge_plugin *p);

/* Value of option `key` in force for p (not one staged for reload); NULL: unset. */
const char *midge_test_option_in_force(const midge_plugin *p, const char *key);

/* The state pointer init stored, for white-box tests. NULL when not loaded. */
void *midge_test_state(const midge_plugin *p);

/* ---- Fake clients ------------------------------------------------------- */

/*
 * Creates a client: `client_id` (required) and `username` (NULL: none) are
 * copied. Defaults: protocol 5, address "127.0.0.1:50000", listener port
 * 1883, clean start 1, keep alive 60. NULL when out of memory or client_id
 * is NULL. Owned by fb.
 */
midge_client *midge_test_client_new(midge_test_broker *fb, const char *client_id,
                                    const char *username);

/* Setters for what the accessors return. Main thread, between hooks. 0 or -MIDGE_E... */
int midge_test_client_set_protocol(midge_client *c, int protocol); /* 3, 4 or 5 */
int midge_test_client_set_address(midge_client *c, const char *address); /* "ip:port" */
void midge_test_client_set_listener_port(midge_client *c, int port);
void midge_test_client_set_clean_start(midge_client *c, int clean_start);
void midge_test_client_set_keepalive(midge_client *c, int keepalive);

/*
 * The client leaves and is freed: its tickets still pending can no longer
 * be completed (-MIDGE_ESTATE, plugin bug), and its strings are freed, so
 * ASan catches a plugin that kept borrowed pointers. No hook runs (call
 * midge_test_client_disconnected() first for that). NULL is ignored.
 */
void midge_test_client_free(midge_client *c);

/* ---- Running hooks ------------------------------------------------------ */

/*
 * Runs p's auth hook for client c: client id and username come from c,
 * the password is `password` (NULL: none; binary, `password_len` bytes).
 * Returns the hook's verdict (MIDGE_ALLOW, MIDGE_DENY, MIDGE_DEFER,
 * MIDGE_PENDING), -MIDGE_ENOTSUP when p has no auth hook, -MIDGE_ESTATE
 * when p is not loaded. *reason (if non-NULL) gets what the hook left in
 * its reason (0 before the call); *ticket (if non-NULL) the ticket the hook
 * received, to pass to midge_test_wait() when it returned MIDGE_PENDING.
 */
int midge_test_auth(midge_plugin *p, midge_client *c, const void *password, size_t password_len,
                    uint8_t *reason, midge_ticket **ticket);

/*
 * Runs p's ACL hook for client c with `req` (copied; a `size` of 0 is
 * replaced by sizeof(*req)). Returns, *reason and *ticket as
 * midge_test_auth(). As the header says, ACL decisions are synchronous in
 * ABI 1.0: the hook gets a NULL ticket, and a PENDING answer (which the
 * broker replaces by the instance's plugin_timeout_verdict) is returned as
 * MIDGE_PENDING with an already expired *ticket.
 */
int midge_test_acl(midge_plugin *p, midge_client *c, const struct midge_acl_request *req,
                   uint8_t *reason, midge_ticket **ticket);

/*
 * Waits up to `timeout_ms` for api->complete() on a ticket whose hook
 * returned PENDING (returns at once when already completed). Returns the
 * completed verdict (MIDGE_ALLOW, MIDGE_DENY, MIDGE_DEFER) and sets
 * *reason (if non-NULL); MIDGE_TEST_TIMEDOUT when not completed in time (the
 * ticket stays pending); -MIDGE_ESTATE when it can no longer complete
 * (expired, client left, unloaded, hook did not return PENDING) or -MIDGE_EINVAL. [any thread]
 */
int midge_test_wait(midge_ticket *t, unsigned timeout_ms, uint8_t *reason);

/*
 * Simulates the broker's plugin_timeout for a pending ticket: a later
 * api->complete() gets -MIDGE_ESTATE (plugin bug). Returns 0, or
 * -MIDGE_ESTATE when the ticket is not pending.
 */
int midge_test_expire(midge_ticket *t);

/* Event hooks. Return 0, -MIDGE_ENOTSUP (no such hook) or -MIDGE_ESTATE (not loaded). */
int midge_test_client_connected(midge_plugin *p, midge_client *c);
int midge_test_client_disconnected(midge_plugin *p, midge_client *c, int reason);
int midge_test_tick(midge_plugin *p);
int midge_test_thread_start(midge_plugin *p, unsigned worker); /* on the calling thread */
int midge_test_thread_stop(midge_plugin *p, unsigned worker);

/* ---- What the plugin did ------------------------------------------------ */

/*
 * Number of log lines ("plugin=INSTANCE message", as the broker writes
 * them) at `level` (enum midge_log_level; negative: any level) containing
 * `needle` (NULL or "": every line). [any thread]
 */
size_t midge_test_logged(midge_test_broker *fb, int level, const char *needle);

/* Number of log lines so far. [any thread] */
size_t midge_test_log_count(midge_test_broker *fb);

/* Line `i` (0: oldest) and its level (if non-NULL); NULL past the end. Borrowed until cleared. */
const char *midge_test_log_line(midge_test_broker *fb, size_t i, int *level);

/* Forgets the log lines (the bug counter stays). */
void midge_test_log_clear(midge_test_broker *fb);

/* Number of messages published through api->publish(). [any thread] */
size_t midge_test_published_count(midge_test_broker *fb);

/* Message `i` (0: oldest); NULL past the end. Borrowed until cleared. */
const struct midge_test_message *midge_test_published(midge_test_broker *fb, size_t i);

/* The latest message published on `topic`, or NULL. Borrowed until cleared. */
const struct midge_test_message *midge_test_published_find(midge_test_broker *fb,
                                                           const char *topic);

/*
 * Waits up to `timeout_ms` until a message was published on `topic`.
 * Returns 0 or MIDGE_TEST_TIMEDOUT. [any thread]
 */
int midge_test_wait_published(midge_test_broker *fb, const char *topic, unsigned timeout_ms);

/* Forgets the published messages. */
void midge_test_published_clear(midge_test_broker *fb);

/* Number of plugin bugs detected so far (each also logged: "plugin bug: ..."). [any thread] */
unsigned midge_test_bug_count(midge_test_broker *fb);

#ifdef __cplusplus
}
#endif

#endif
