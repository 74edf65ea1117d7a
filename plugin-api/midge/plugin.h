/*
 * midge plugin ABI: the one public header a plugin needs.
 *
 * A plugin is a shared object that exports a descriptor
 * (MIDGE_PLUGIN_DECLARE) and midge_plugin_init(); optionally
 * midge_plugin_cleanup(). The broker exports no symbols: everything a plugin
 * can do arrives through the `struct midge_api` table passed to init.
 *
 * Stability promise (docs/plugin-guide.md):
 *  - Within one major version the API table and every struct that crosses
 *    the boundary only grow at the end. Each starts with `uint32_t size`;
 *    test for newer API functions with MIDGE_API_HAS(api, fn) and for newer
 *    struct fields with MIDGE_HAS_FIELD(type, s, field).
 *  - A plugin built for a newer major ABI is refused at load time with a
 *    message naming both versions.
 *
 * Threads: hooks about a client run on the worker thread that owns that
 * client ([worker thread]). Every API function says which threads may call
 * it: [worker thread] (inside a hook, or a timer/fd callback of this
 * plugin), [any thread].
 *
 * Ownership: everything a hook receives is borrowed until the hook returns.
 * Copy strings you keep; take a message reference with api->message_ref().
 * Every API function says who frees what it returns, and ownership never
 * depends on the return value.
 */
#ifndef MIDGE_PLUGIN_H
#define MIDGE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIDGE_ABI_MAJOR 1
#define MIDGE_ABI_MINOR 0

#if defined(__GNUC__)
#define MIDGE_EXPORT __attribute__((visibility("default")))
#define MIDGE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MIDGE_EXPORT
#define MIDGE_PRINTF(f, a)
#endif

/* ---- Opaque handles ---------------------------------------------------- */

/* The loaded plugin instance (one per `plugin` line). Owned by the broker. */
typedef struct midge_plugin midge_plugin;
/* A connected client. Borrowed: valid during the hook that passed it. */
typedef struct midge_client midge_client;
/* A pending decision, completed with api->complete(). */
typedef struct midge_ticket midge_ticket;

/* ---- Results ----------------------------------------------------------- */

/* What a decision hook answers. Distinct from error codes. */
enum midge_verdict {
    MIDGE_DEFER = 0,   /* not mine: ask the next plugin in the chain */
    MIDGE_ALLOW = 1,
    MIDGE_DENY = 2,    /* with an MQTT reason code (0 lets the broker choose) */
    MIDGE_PENDING = 3, /* the plugin will call api->complete(ticket, ...) later */
};

/* Error codes: API functions return 0 or the negative of one of these. */
enum midge_error {
    MIDGE_EINVAL = 1,   /* bad argument */
    MIDGE_ENOMEM = 2,   /* out of memory */
    MIDGE_ENOENT = 3,   /* no such option, client, ... */
    MIDGE_ESTATE = 4,   /* not allowed now (wrong thread, ticket already completed) */
    MIDGE_ENOTSUP = 5,  /* not supported by this broker */
};

enum midge_log_level {
    MIDGE_LOG_ERROR = 0,
    MIDGE_LOG_WARNING = 1,
    MIDGE_LOG_NOTICE = 2,
    MIDGE_LOG_INFO = 3,
    MIDGE_LOG_DEBUG = 4,
};

/* What an ACL check is about. */
enum midge_acl_action {
    MIDGE_ACL_PUBLISH = 1,   /* a client publishes to `topic` */
    MIDGE_ACL_RECEIVE = 2,   /* a message on `topic` is about to be delivered to the client */
    MIDGE_ACL_SUBSCRIBE = 3, /* the client subscribes to filter `topic` */
    MIDGE_ACL_RETAIN = 4,    /* the client publishes with RETAIN set */
    MIDGE_ACL_WILL = 5,      /* the client's CONNECT carries a will on `topic` */
};

/* ---- Hook arguments (each starts with its size; fields only ever appended) */

/* CONNECT credentials for the auth hook. Borrowed. */
struct midge_auth_request {
    uint32_t size;
    const char *client_id;      /* NUL-terminated */
    const char *username;       /* NULL when the CONNECT had none */
    const uint8_t *password;    /* NULL when none; binary, not NUL-terminated */
    uint32_t password_len;
};

/* An ACL question. Borrowed. */
struct midge_acl_request {
    uint32_t size;
    int action;               /* enum midge_acl_action */
    const char *topic;        /* topic name, or filter for SUBSCRIBE */
    int qos;
    int retain;
    const uint8_t *payload;   /* PUBLISH/WILL/RECEIVE: the payload; else NULL */
    uint32_t payload_len;
};

/*
 * The hooks of one plugin instance. Pass a table with static storage to
 * api->hooks_set() in init; NULL entries mean "not interested". `state` is
 * what init stored in *state.
 */
struct midge_hooks {
    uint32_t size; /* sizeof(struct midge_hooks) as the plugin was built */

    /*
     * Authenticates a CONNECT. [worker thread] Return ALLOW, DENY (set
     * *reason to an MQTT 5 reason code such as 0x86, or 0 for 0x87), DEFER,
     * or PENDING and later api->complete(ticket, ...) from any thread. A
     * ticket is an id, never a pointer into the broker: completing it is
     * always safe, and after the plugin_timeout, after the client left, or a
     * second time it returns -MIDGE_ESTATE (the broker logs a plugin bug).
     */
    int (*auth)(void *state, midge_client *client, const struct midge_auth_request *req,
                uint8_t *reason, midge_ticket *ticket);

    /*
     * Authorizes an action. [worker thread] ALLOW, DENY (*reason: an MQTT 5
     * reason code, or 0 for 0x87) or DEFER. In ABI 1.0 ACL decisions are
     * synchronous: `ticket` is NULL, and a PENDING answer is taken as the
     * instance's plugin_timeout_verdict at once. Keep it fast: RECEIVE runs
     * for every message delivered to the client.
     */
    int (*acl)(void *state, midge_client *client, const struct midge_acl_request *req,
               uint8_t *reason, midge_ticket *ticket);

    /* A client finished CONNECT (CONNACK success sent). [worker thread] */
    void (*client_connected)(void *state, midge_client *client);

    /*
     * A client's connection ended. `reason`: the MQTT 5 reason code the
     * broker sent (e.g. 0x8D keep alive timeout, 0x8E taken over, 0x8B
     * shutting down), else the one in the client's DISCONNECT (0 normal, 0x04
     * with will; 0 for any MQTT 3 DISCONNECT), else 0x80 when the connection
     * was lost without DISCONNECT. [worker thread]
     */
    void (*client_disconnected)(void *state, midge_client *client, int reason);

    /* Once a second on the main thread. */
    void (*tick)(void *state);

    /*
     * SIGHUP: the plugin's options were re-read (api->option() now returns
     * the new values). Return 0 to accept, negative to keep running with the
     * old state (the broker logs the message set with api->set_error()).
     * A plugin without this hook keeps its old options. [main thread]
     */
    int (*reload)(void *state);

    /* A worker thread starts / stops: per-thread state. [that worker thread] */
    void (*thread_start)(void *state, unsigned worker);
    void (*thread_stop)(void *state, unsigned worker);
};

/* ---- The API table ----------------------------------------------------- */

struct midge_api {
    uint32_t size;        /* bytes of this table the broker provides */
    uint16_t abi_major;   /* the broker's ABI version */
    uint16_t abi_minor;

    /* Writes one log line "plugin=INSTANCE message". [any thread] */
    void (*log)(midge_plugin *self, int level, const char *fmt, ...) MIDGE_PRINTF(3, 4);

    /*
     * Value of `plugin_opt_KEY`, or NULL when not set. Borrowed: valid until
     * init/reload returns (copy what you keep). [main thread: init, reload]
     */
    const char *(*option)(midge_plugin *self, const char *key);

    /*
     * Iterates the options: *pos starts at 0; returns 1 and sets *key and
     * *value (borrowed as above) while there is another, else 0.
     * [main thread: init, reload]
     */
    int (*option_next)(midge_plugin *self, size_t *pos, const char **key, const char **value);

    /*
     * Sets the message the broker shows when init or reload fails (copied).
     * [main thread: init, reload]
     */
    void (*set_error)(midge_plugin *self, const char *fmt, ...) MIDGE_PRINTF(2, 3);

    /*
     * Registers the instance's hooks. The table must outlive the plugin
     * (static storage); the broker reads `size` to know which hooks exist.
     * Call once, from init. Returns 0 or -MIDGE_EINVAL.
     */
    int (*hooks_set)(midge_plugin *self, const struct midge_hooks *hooks);

    /*
     * Completes a PENDING decision. [any thread] `verdict` is ALLOW, DENY or
     * DEFER (continue with the next plugin); any other value is applied as
     * DENY and logged as a plugin bug. Returns 0, or -MIDGE_ESTATE when the
     * ticket was already completed, timed out or its client left (logged as
     * a plugin bug and ignored).
     */
    int (*complete)(midge_ticket *ticket, int verdict, uint8_t reason);

    /* Client accessors. [worker thread, during a hook about that client] Strings borrowed. */
    const char *(*client_id)(const midge_client *c);
    const char *(*client_username)(const midge_client *c); /* NULL: none */
    int (*client_protocol)(const midge_client *c);          /* 3, 4 or 5 */
    const char *(*client_address)(const midge_client *c);   /* "ip:port" */
    int (*client_listener_port)(const midge_client *c);
    int (*client_clean_start)(const midge_client *c);
    int (*client_keepalive)(const midge_client *c);

    /*
     * Publishes a message into the broker as if from the broker itself
     * (no ACL). Copies topic and payload. [any thread] Returns 0,
     * -MIDGE_EINVAL (bad topic or QoS) or -MIDGE_ENOMEM.
     */
    int (*publish)(midge_plugin *self, const char *topic, const void *payload, uint32_t len,
                   int qos, int retain);

    /* Name of this instance (plugin_instance, default the plugin's name). Borrowed for its life. */
    const char *(*instance_name)(const midge_plugin *self);
};

/* 1 when the broker's table has function `fn` (it lies within api->size and is set). */
#define MIDGE_API_HAS(api, fn)                                                               \
    ((api)->size >= offsetof(struct midge_api, fn) + sizeof((api)->fn) && (api)->fn != NULL)

/* 1 when a size-prefixed struct `s` of type `type` from the broker has `field`. */
#define MIDGE_HAS_FIELD(type, s, field)                                                       \
    ((s)->size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* ---- Declaring a plugin ------------------------------------------------ */

/* Exported as `midge_plugin_descriptor` by MIDGE_PLUGIN_DECLARE. */
struct midge_plugin_descriptor {
    uint32_t size;
    uint16_t abi_major; /* the ABI the plugin was built against */
    uint16_t abi_minor;
    const char *name;
    const char *version;
    const char *description;
    /* NULL-terminated list of accepted plugin_opt_ keys, or NULL: accept any. */
    const char *const *options;
};

/*
 * Declares the plugin. Use once, at file scope:
 *     MIDGE_PLUGIN_DECLARE("my-auth", "1.0", "checks users against X");
 * MIDGE_PLUGIN_DECLARE_OPTIONS additionally names the accepted options, so
 * a misspelled plugin_opt_ line is a configuration error:
 *     static const char *const opts[] = {"password_file", NULL};
 *     MIDGE_PLUGIN_DECLARE_OPTIONS("my-auth", "1.0", "...", opts);
 */
#define MIDGE_PLUGIN_DECLARE_OPTIONS(name_, version_, description_, options_)              \
    MIDGE_EXPORT const struct midge_plugin_descriptor midge_plugin_descriptor = {            \
        sizeof(struct midge_plugin_descriptor), MIDGE_ABI_MAJOR, MIDGE_ABI_MINOR, (name_),   \
        (version_), (description_), (options_)}
#define MIDGE_PLUGIN_DECLARE(name_, version_, description_)                                \
    MIDGE_PLUGIN_DECLARE_OPTIONS(name_, version_, description_, NULL)

/* The descriptor MIDGE_PLUGIN_DECLARE defines. */
MIDGE_EXPORT extern const struct midge_plugin_descriptor midge_plugin_descriptor;

/*
 * Called once at load (main thread, before any client). Return 0, or a
 * negative error after api->set_error() explains it; the broker then
 * refuses to start (or, on SIGHUP, keeps the old configuration). Store the
 * instance's state in *state, never in globals: one .so may be loaded twice.
 */
MIDGE_EXPORT int midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state);

/* Optional: called once at shutdown (main thread, after every worker stopped). */
MIDGE_EXPORT void midge_plugin_cleanup(midge_plugin *self, void *state);

#ifdef __cplusplus
}
#endif

#endif
