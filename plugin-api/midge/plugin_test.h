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
 * api->set_error(); and for the ABI 1.0 additions: api->edit_*() outside
 * the message_in hook, api->auth_data_set() outside the enhanced_auth hook,
 * CONTINUE given to api->complete() or for an auth ticket, api->metric_new()
 * outside init, a metric used against its kind (a counter going down, set
 * on a counter, observe on a gauge, a negative observation),
 * api->subscribe() outside init/reload/tick and api->unsubscribe() off the
 * main thread, a timer, watcher or subscription stopped twice or after the
 * broker freed it, timers, fd watchers or run_blocking from a run_blocking
 * work function, a watched fd closed without fd_unwatch, an accessor or
 * api->message_ref() on a message whose last reference went, an unbalanced
 * api->message_unref(), api->session_*() on a closed internal session,
 * api->persist_durable() moving back, api->restore_*() outside the restore
 * hook, and message references still held once every instance is unloaded
 * (midge_test_unload_all()). End every test with
 * assert_int_equal(midge_test_bug_count(fb), 0), or with
 * assert_int_equal(midge_test_unload_all(fb), 0) to include the checks made
 * at unload.
 *
 * The rest of ABI 1.0 works too, driven by the test: messages
 * (midge_test_message_new) for the message hooks and internal
 * subscriptions, enhanced authentication steps, a manual clock for timers
 * (midge_test_advance), real fds for watchers (midge_test_poll), a real
 * worker thread per instance for run_blocking (midge_test_wait_blocking),
 * recorded client_disconnect requests, client_find answered from the fake
 * clients (midge_test_run_finds), readable metrics (midge_test_metric),
 * persist/restore hooks (midge_test_persist, midge_test_restore) and
 * internal sessions (midge_test_run_sessions, midge_test_isessions_deliver).
 *
 * What it does not do: chains (each call runs one instance's hook), the
 * plugin_timeout clock (simulate it with midge_test_expire()), listeners,
 * MQTT, routing (api->publish only records; messages reach internal
 * subscriptions only through midge_test_publish_to_subscriptions()).
 *
 * Threads: the thread calling midge_test_auth() and friends plays the
 * worker thread; run hooks of one client from one thread at a time. The
 * functions the header marks [any thread] (log, complete, complete_auth,
 * publish, instance_name, the message accessors, client_disconnect,
 * client_find, the metric updates) are thread-safe here too, and so are
 * midge_test_wait(), midge_test_auth_data(), midge_test_disconnect_count(),
 * midge_test_disconnect_request(), midge_test_wait_published(),
 * midge_test_logged(), midge_test_log_count(), midge_test_published_count()
 * and midge_test_bug_count(). Everything else is for the test's main
 * thread, the one that created the broker (it plays the broker's main
 * thread: api->unsubscribe from elsewhere is a plugin bug). Timer, fd
 * watcher, done, client_find and subscription callbacks run on the thread
 * that calls the midge_test_*() function running them; run_blocking work
 * runs on the instance's own worker thread.
 *
 * Messages: a midge_message made by midge_test_message_new() is also freed
 * with the broker, so a test need not free it; midge_test_message_free()
 * matters when the test checks that the plugin's references alone keep it
 * alive.
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

/* midge_test_wait(), midge_test_wait_published(), midge_test_wait_blocking(): not in time. */
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
    const char *session;  /* api->session_publish(_message): the internal session's client id;
                             else NULL. session_publish_message settles at once: done(arg, 0) */
};

/* An api->client_disconnect() request. Borrowed from the fake broker. */
struct midge_test_disconnect {
    const char *instance;  /* the requesting instance's name */
    const char *client_id;
    uint8_t reason;        /* as passed (0: the broker would send 0x98) */
};

/* What midge_test_metric() reads. */
struct midge_test_metric {
    int kind;              /* enum midge_metric_kind */
    const char *help;      /* borrowed until the instance loads again or the broker is freed */
    int64_t value;         /* counter, gauge */
    uint64_t count;        /* histogram: observations */
    double sum;            /* histogram: their sum */
    double p50;            /* histogram: nearest-rank percentiles; 0 without observations */
    double p99;
};

/* What an api->restore_*() call restored (struct midge_test_restored.kind). */
enum midge_test_restore_kind {
    MIDGE_TEST_R_SESSION = 1,
    MIDGE_TEST_R_SUBSCRIPTION = 2,
    MIDGE_TEST_R_RETAINED = 3,
    MIDGE_TEST_R_MESSAGE = 4,
    MIDGE_TEST_R_QOS2_IN = 5,
    MIDGE_TEST_R_WILL = 6,
};

/* One accepted api->restore_*() call, its arguments as given. Borrowed from the fake broker. */
struct midge_test_restored {
    int kind;                  /* enum midge_test_restore_kind */
    const char *instance;
    const char *client_id;     /* NULL for RETAINED */
    const char *filter;        /* SUBSCRIPTION */
    const midge_message *msg;  /* RETAINED, MESSAGE, WILL (the fake broker holds a reference) */
    uint32_t expiry;           /* SESSION */
    int protocol;              /* SESSION */
    uint32_t expires_in;       /* SESSION */
    int options;               /* SUBSCRIPTION */
    uint32_t sub_id;           /* SUBSCRIPTION */
    uint64_t delivery_id;      /* MESSAGE */
    int qos;                   /* MESSAGE */
    int retain;                /* MESSAGE */
    int state;                 /* MESSAGE: enum midge_delivery_state */
    uint16_t packet_id;        /* MESSAGE, QOS2_IN */
    uint32_t delay;            /* WILL */
};

/* What midge_test_isession() reports about an internal session. */
struct midge_test_isession {
    const char *instance;      /* the instance that opened it last */
    int open;                  /* a plugin holds the handle */
    uint32_t expiry;
    uint16_t window;
    size_t subscriptions;
    size_t inflight;           /* delivered with QoS 1/2, waiting for api->session_ack */
    size_t waiting;            /* behind a full window, or queued while closed */
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

/*
 * Unloads every loaded instance as midge_test_broker_free() does (cleanup,
 * last loaded first), then checks what plugins must have released by then:
 * message references (each still held is a plugin bug). Returns
 * midge_test_bug_count(). Bugs found only inside midge_test_broker_free()
 * are printed to stderr, since no test can assert them any more.
 */
unsigned midge_test_unload_all(midge_test_broker *fb);

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
 * Unloads as the broker shuts an instance down: the instance's per-client
 * data is freed (free_fn) as connections end, its queued run_blocking jobs
 * run and their done callbacks too, then cleanup (if any); afterwards the
 * broker frees the timers, fd watchers and internal subscriptions it still
 * has (using them later is a plugin bug). Tickets of this instance still
 * pending can no longer be completed (-MIDGE_ESTATE, plugin bug). Its
 * metrics stay readable until it loads again. No-op when not loaded.
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
 * copied. Defaults: protocol 5, address "127.0.0.1:50000" (peer IP
 * "127.0.0.1", peer port 50000), listener port 1883, listener name
 * "0.0.0.0:1883", clean start 1, keep alive 60, no password, no user
 * properties, plain TCP (api->client_tls gives -MIDGE_ENOENT), connected
 * with session expiry 0. NULL when out of memory or client_id is NULL.
 * Owned by fb.
 */
midge_client *midge_test_client_new(midge_test_broker *fb, const char *client_id,
                                    const char *username);

/* Setters for what the accessors return. Main thread, between hooks. 0 or -MIDGE_E... */
int midge_test_client_set_protocol(midge_client *c, int protocol); /* 3, 4 or 5 */
/* "ip:port" or "[ipv6]:port"; also sets what client_peer_ip/client_peer_port return. */
int midge_test_client_set_address(midge_client *c, const char *address);
void midge_test_client_set_listener_port(midge_client *c, int port);
void midge_test_client_set_clean_start(midge_client *c, int clean_start);
void midge_test_client_set_keepalive(midge_client *c, int keepalive);
/* What api->client_listener_name returns ("ADDRESS:PORT"; copied). */
int midge_test_client_set_listener_name(midge_client *c, const char *name);
/* The CONNECT password the enhanced_auth requests carry (copied; NULL: none). */
int midge_test_client_set_password(midge_client *c, const void *password, size_t len);
/* Appends a CONNECT user property (MQTT 5; copied), seen by api->client_user_property_next. */
int midge_test_client_add_user_property(midge_client *c, const char *key, const char *value);
/*
 * Makes the connection TLS with these details (strings copied; `size` is
 * ignored) for api->client_tls; NULL makes it plain TCP again (-MIDGE_ENOENT).
 */
int midge_test_client_set_tls(midge_client *c, const struct midge_tls_info *info);
/*
 * What api->client_find reports about this client's session: `connected`
 * 0 reports a session without a connection (no username, address or
 * listener port), as for a persistent session whose client is away.
 */
void midge_test_client_set_session(midge_client *c, int connected, uint32_t session_expiry,
                                   uint32_t subscriptions, uint32_t queued, uint32_t inflight);

/*
 * What instance p stored on c with api->client_data_set() (NULL: nothing),
 * for white-box tests. The data is freed with its free_fn when the
 * connection ends: in midge_test_client_disconnected(p, c, ...) after the
 * hook (for p), midge_test_client_free() (every instance),
 * midge_test_unload(p) and midge_test_broker_free().
 */
void *midge_test_client_data(const midge_plugin *p, const midge_client *c);

/*
 * The standing answer instance p gave for c's `action` checks with
 * api->client_acl_standing (MIDGE_ALLOW or MIDGE_DEFER), or MIDGE_PENDING
 * when it gave none. midge_test_acl() and friends call the hook anyway:
 * the broker would not.
 */
int midge_test_client_acl_standing(const midge_plugin *p, const midge_client *c, int action);

/*
 * The client leaves and is freed: its tickets still pending can no longer
 * be completed (-MIDGE_ESTATE, plugin bug), its per-client data is freed
 * (free_fn of every instance), and its strings are freed, so ASan catches
 * a plugin that kept borrowed pointers. No hook runs (call
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
 * midge_test_auth(): for PUBLISH, RETAIN, SUBSCRIBE and WILL the hook gets
 * a ticket and may answer PENDING (then midge_test_wait() on *ticket); for
 * RECEIVE, as in the broker, the ticket is NULL and a PENDING answer (the
 * broker applies the instance's plugin_timeout_verdict) is returned as
 * MIDGE_PENDING with an already expired *ticket.
 */
int midge_test_acl(midge_plugin *p, midge_client *c, const struct midge_acl_request *req,
                   uint8_t *reason, midge_ticket **ticket);

/*
 * Waits up to `timeout_ms` for api->complete() (or api->complete_auth())
 * on a ticket whose hook returned PENDING (returns at once when already
 * completed). Returns the completed verdict (MIDGE_ALLOW, MIDGE_DENY,
 * MIDGE_DEFER; MIDGE_CONTINUE for an enhanced_auth step) and sets
 * *reason (if non-NULL); MIDGE_TEST_TIMEDOUT when not completed in time (the
 * ticket stays pending); -MIDGE_ESTATE when it can no longer complete
 * (expired, client left, unloaded, hook did not return PENDING) or -MIDGE_EINVAL. [any thread]
 * On the test's main thread, waiting also runs the done callbacks of
 * finished run_blocking jobs (as the broker's loop would), so a plugin
 * that completes tickets from done needs nothing more.
 */
int midge_test_wait(midge_ticket *t, unsigned timeout_ms, uint8_t *reason);

/*
 * Simulates the broker's plugin_timeout for a pending ticket: a later
 * api->complete() gets -MIDGE_ESTATE (plugin bug). Returns 0, or
 * -MIDGE_ESTATE when the ticket is not pending.
 */
int midge_test_expire(midge_ticket *t);

/*
 * Runs p's enhanced_auth hook for one step of client c: `method` (the
 * Authentication Method, required), `data`/`len` (the step's
 * Authentication Data; NULL: absent), `step` (0 for the CONNECT or the
 * re-authentication request, then 1, 2, ... for each AUTH the client sends
 * after a CONTINUE) and `reauth`; client id, username and password come from
 * c (midge_test_client_set_password). Returns the hook's verdict
 * (MIDGE_ALLOW, MIDGE_DENY, MIDGE_DEFER, MIDGE_CONTINUE, MIDGE_PENDING),
 * -MIDGE_ENOTSUP, -MIDGE_ESTATE or -MIDGE_EINVAL; *reason and *ticket as
 * midge_test_auth(). After PENDING, midge_test_wait(ticket, ...) returns
 * the verdict of api->complete_auth() (CONTINUE included) or
 * api->complete(). The data sent with the answer is midge_test_auth_data().
 */
int midge_test_enhanced_auth(midge_plugin *p, midge_client *c, const char *method,
                             const void *data, size_t len, uint32_t step, int reauth,
                             uint8_t *reason, midge_ticket **ticket);

/*
 * The Authentication Data the broker would send with the answer of the step
 * `t` (from midge_test_enhanced_auth): what api->auth_data_set() stored
 * during the hook, replaced by the data of api->complete_auth() when the
 * step was PENDING. NULL (and *len 0) when none. Borrowed until the broker
 * is freed. [any thread]
 */
const void *midge_test_auth_data(midge_ticket *t, size_t *len);

/*
 * Event hooks. Return 0, -MIDGE_ENOTSUP (no such hook), -MIDGE_ESTATE (not
 * loaded) or -MIDGE_EINVAL. midge_test_client_disconnected() also frees p's
 * per-client data on c after the hook (even when p has no such hook, which
 * still returns -MIDGE_ENOTSUP). midge_test_tick() is the main thread's
 * tick: api->subscribe is allowed in it. Strings are passed as copies freed
 * after the hook.
 */
int midge_test_client_connected(midge_plugin *p, midge_client *c);
int midge_test_client_disconnected(midge_plugin *p, midge_client *c, int reason);
int midge_test_tick(midge_plugin *p);
int midge_test_thread_start(midge_plugin *p, unsigned worker); /* on the calling thread */
int midge_test_thread_stop(midge_plugin *p, unsigned worker);
int midge_test_subscribed(midge_plugin *p, midge_client *c, const char *filter, int qos);
int midge_test_unsubscribed(midge_plugin *p, midge_client *c, const char *filter);
int midge_test_session_created(midge_plugin *p, const char *client_id);
int midge_test_session_ended(midge_plugin *p, const char *client_id);

/* ---- Messages ----------------------------------------------------------- */

/*
 * Creates a message (topic and payload copied) holding one reference owned
 * by the test: give it to midge_test_message_in(), midge_test_message_out(),
 * midge_test_will_published() or midge_test_publish_to_subscriptions(),
 * then drop it with midge_test_message_free(). NULL when out of memory or
 * for a bad topic name (empty, wildcards), QoS or payload.
 */
midge_message *midge_test_message_new(midge_test_broker *fb, const char *topic,
                                      const void *payload, size_t len, int qos, int retain);

/* Appends an MQTT 5 user property (copied). Before handing the message to a hook. */
int midge_test_message_add_user_property(midge_message *m, const char *key, const char *value);

/*
 * Drops one reference owned by the test. The contents are freed when no
 * plugin holds a reference either (api->message_ref); using the message
 * after that is a plugin bug for a plugin and a test error for the test.
 * NULL is ignored.
 */
void midge_test_message_free(midge_message *m);

/* The topic / payload (NULL when empty) / first..nth value of user property `key`. Borrowed. */
const char *midge_test_message_topic(const midge_message *m);
const void *midge_test_message_payload(const midge_message *m, size_t *len);
const char *midge_test_message_user_property(const midge_message *m, const char *key,
                                             size_t nth);
size_t midge_test_message_user_property_count(const midge_message *m);

/* The MQTT 5 Message Expiry Interval api->message_expiry returns (default 0: none). */
int midge_test_message_set_expiry(midge_message *m, uint32_t seconds);

/* The id api->message_id returns (unique in the fake broker, or a restored message's). */
uint64_t midge_test_message_id(const midge_message *m);

/* Number of references plugins hold on m now (api->message_ref minus api->message_unref). */
long midge_test_message_refs(const midge_message *m);

/*
 * Runs p's message_in hook for client c publishing `msg`. Returns the
 * hook's verdict (MIDGE_ALLOW, MIDGE_DENY, MIDGE_DEFER; anything else is a
 * plugin bug, treated as DENY), -MIDGE_ENOTSUP, -MIDGE_ESTATE or
 * -MIDGE_EINVAL. *reason (if non-NULL) gets the hook's reason. *out (if
 * non-NULL) gets the message as it continues, with the hook's
 * api->edit_*() applied: a new reference the test frees with
 * midge_test_message_free() (`msg` itself when nothing was edited), or NULL
 * when the hook dropped it. Pass *out to the next plugin's message_in to
 * test a chain.
 */
int midge_test_message_in(midge_plugin *p, midge_client *c, midge_message *msg, uint8_t *reason,
                          midge_message **out);

/* Runs p's message_out hook (a delivery of msg to c). 0 or -MIDGE_E... as the event hooks. */
int midge_test_message_out(midge_plugin *p, midge_client *c, midge_message *msg);

/* Runs p's will_published hook for the session `client_id`. As the event hooks. */
int midge_test_will_published(midge_plugin *p, const char *client_id, midge_message *will);

/*
 * Delivers msg to the internal subscriptions (api->subscribe) of every
 * loaded instance whose filter matches its topic, as the broker does for a
 * message published after the message_in hooks: the callbacks run on the
 * calling thread, oldest subscription first. Returns the number of
 * callbacks run, or -MIDGE_EINVAL / -MIDGE_ENOMEM.
 */
int midge_test_publish_to_subscriptions(midge_test_broker *fb, midge_message *msg);

/*
 * 1 when topic name `topic` matches `filter` by the rules the fake broker
 * uses (wildcards at the first level skip '$' topics [MQTT-4.7.2-1], "a/#"
 * matches "a"); 0 otherwise or for an invalid filter or topic.
 */
int midge_test_topic_matches(const char *filter, const char *topic);

/* ---- The loop: timers and fd watchers ----------------------------------- */

/*
 * Timers run on a manual clock that starts at 0 and only moves here:
 * advances it by `seconds`, running every timer callback that falls due,
 * in time order (repeating timers as often as they fall due), on the
 * calling thread. Returns the number of callbacks run.
 */
size_t midge_test_advance(midge_test_broker *fb, double seconds);

/* The manual clock, in seconds. */
double midge_test_now(midge_test_broker *fb);

/* Timers of p started and not yet stopped (a fired one-shot counts until stopped). */
size_t midge_test_timer_count(const midge_plugin *p);

/* fd watchers of p not yet removed. */
size_t midge_test_watch_count(const midge_plugin *p);

/*
 * Polls the fds of every watcher once (up to `timeout_ms`) and runs the
 * callbacks of those ready, on the calling thread, with the events that
 * happened (hang-up and error count as both). Returns the number of
 * callbacks run (0: nothing ready in time), or -MIDGE_ENOMEM/-MIDGE_EINVAL.
 */
int midge_test_poll(midge_test_broker *fb, unsigned timeout_ms);

/* ---- run_blocking --------------------------------------------------------- */

/*
 * Each instance has one real worker thread for api->run_blocking (started
 * on first use, stopped at unload after running what is queued). `done`
 * callbacks wait until the test runs them: this runs those ready now, on
 * the calling thread (the loop the job came from). Returns how many ran.
 */
size_t midge_test_run_done(midge_test_broker *fb);

/*
 * Waits up to `timeout_ms` until every job of every instance finished,
 * running done callbacks on the calling thread as they become ready (and
 * the jobs those queue). Returns the number of done callbacks run, or
 * MIDGE_TEST_TIMEDOUT (a job still running or held by a pause).
 */
int midge_test_wait_blocking(midge_test_broker *fb, unsigned timeout_ms);

/* plugin_queue: run_blocking answers -MIDGE_EBUSY when `limit` jobs wait. Default 1024. */
int midge_test_set_queue_limit(midge_plugin *p, size_t limit);

/*
 * Holds (1) or releases (0) p's worker before it takes the next job, so a
 * test can fill the queue deterministically. Unload releases it.
 */
void midge_test_blocking_pause(midge_plugin *p, int paused);

/* ---- Clients by id -------------------------------------------------------- */

/* Number of api->client_disconnect() requests so far. [any thread] */
size_t midge_test_disconnect_count(midge_test_broker *fb);

/* Request `i` (0: oldest); NULL past the end. Borrowed until cleared. [any thread] */
const struct midge_test_disconnect *midge_test_disconnect_request(midge_test_broker *fb,
                                                                  size_t i);

/* Forgets the requests. */
void midge_test_disconnect_clear(midge_test_broker *fb);

/*
 * Answers the queued api->client_find() requests from the fake clients
 * (by id; NULL info when there is none), calling each callback on the
 * calling thread (the session's worker), and the api->client_list()
 * requests (cb per fake client, then done). Requests of instances unloaded
 * meanwhile are dropped. Returns the number of requests answered.
 */
size_t midge_test_run_finds(midge_test_broker *fb);

/* ---- Persistence ----------------------------------------------------------- */

/*
 * Runs p's persist hook with event `ev` (copied; `size` set, strings passed
 * as copies freed after the hook; `msg` passed as is). Returns 0,
 * -MIDGE_ENOTSUP, -MIDGE_ESTATE or -MIDGE_EINVAL.
 */
int midge_test_persist(midge_plugin *p, const struct midge_persist_event *ev);

/* The highest seq p declared with api->persist_durable (0: none); moving back is a plugin bug. */
uint64_t midge_test_persist_durable(const midge_plugin *p);

/* 1 while p says storage fails (api->persist_failing). */
int midge_test_persist_failing(const midge_plugin *p);

/*
 * Runs p's restore hook; only inside it the api->restore_*() calls are
 * allowed (elsewhere: -MIDGE_ESTATE and a plugin bug), and
 * api->set_error() explains a refusal (midge_test_error()). Accepted calls
 * are recorded (midge_test_restored()); invalid ones get -MIDGE_EINVAL: a
 * subscription, message, QoS 2 id or will for a session not restored
 * before, a bad filter or options byte, QoS 0 or a delivery state without
 * packet id. Returns the hook's result, -MIDGE_ENOTSUP or -MIDGE_ESTATE.
 */
int midge_test_restore(midge_plugin *p);

/* Number of restored items, item `i` (0: first; NULL past the end), forgetting them. */
size_t midge_test_restored_count(midge_test_broker *fb);
const struct midge_test_restored *midge_test_restored(midge_test_broker *fb, size_t i);
void midge_test_restored_clear(midge_test_broker *fb);

/* ---- Internal sessions ---------------------------------------------------- */

/*
 * Runs the queued api->session_open() requests on the calling thread (the
 * sessions' home worker): creates or resumes each session and calls its
 * `opened` (s NULL when another handle holds that client id), then delivers
 * what was queued for it while closed. Requests of instances unloaded
 * meanwhile get no callback. Returns the number of opens run.
 */
size_t midge_test_run_sessions(midge_test_broker *fb);

/*
 * Delivers msg to every internal session with a matching subscription,
 * once per session at the highest matching QoS (capped by the message's;
 * RETAIN kept only with MIDGE_SUB_RETAIN_AS_PUBLISHED), calling `deliver`
 * on the calling thread. QoS 1/2 deliveries stay inflight until
 * api->session_ack; beyond the window, and while a session is closed, they
 * wait. Returns the number of sessions that got or queued it. Retained
 * messages, expiry and takeover of fake clients are not simulated.
 */
int midge_test_isessions_deliver(midge_test_broker *fb, midge_message *msg);

/* Fills *out for the session `client_id`. 0, -MIDGE_ENOENT (none, or ended) or -MIDGE_EINVAL. */
int midge_test_isession(midge_test_broker *fb, const char *client_id,
                        struct midge_test_isession *out);

/* QoS (and *flags) of the session's subscription to `filter`, or -MIDGE_ENOENT. */
int midge_test_isession_subscription(midge_test_broker *fb, const char *client_id,
                                     const char *filter, int *flags);

/* ---- Administration ------------------------------------------------------- */

/*
 * What api->stats answers (copied; NULL: all zero). Queued api->client_list
 * requests are answered by midge_test_run_finds(): cb for every fake client
 * (as client_find reports it), then done, on the calling thread.
 */
void midge_test_set_stats(midge_test_broker *fb, const struct midge_broker_stats *stats);

/*
 * Makes msg the retained message of its topic for api->retained_list (the
 * fake broker takes its own reference); a message with an empty payload
 * clears the topic's. Nothing else reads this store. 0, -MIDGE_EINVAL or
 * -MIDGE_ENOMEM.
 */
int midge_test_retain(midge_test_broker *fb, midge_message *msg);

/* Number of api->reload_request() calls (nothing is reloaded: call midge_test_reload()). */
unsigned midge_test_reload_requests(midge_test_broker *fb);

/* ---- Metrics -------------------------------------------------------------- */

/*
 * Reads metric `name` of instance p (created with api->metric_new in its
 * last load). Returns 0, -MIDGE_ENOENT or -MIDGE_EINVAL.
 */
int midge_test_metric(const midge_plugin *p, const char *name, struct midge_test_metric *out);

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
