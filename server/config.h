/*
 * The broker's configuration: mosquitto-style line-based file, parsed by a
 * directive table in config.c (name, type, default, scope, SIGHUP-reloadable).
 *
 * Ownership: config_load() returns a struct config that the caller owns and
 * frees with config_free(); every string and listener in it belongs to it.
 * A loaded config is never modified afterwards, so it may be read from any
 * thread while it is alive; SIGHUP loads a new one and swaps.
 */
#ifndef MIDGE_CONFIG_H
#define MIDGE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum listener_protocol {
    LISTENER_MQTT = 0,
    LISTENER_WEBSOCKETS = 1, /* MQTT over WebSockets (ws.c), ws:// or wss:// with certfile */
};

/* One `listener PORT [ADDRESS]` block. Owned by its struct config. */
struct listener_conf {
    char *bind_address;      /* NULL: all addresses (as mosquitto) */
    uint16_t port;           /* 0: let the kernel pick (tests) */
    int max_connections;     /* -1: unlimited (default) */
    int allow_anonymous;     /* listener_allow_anonymous: -1 unset (global decides), 0, 1 */
    int protocol;            /* enum listener_protocol */
    int socket_domain;       /* 0 any, 4 ipv4, 6 ipv6 (`socket_domain ipv4|ipv6`) */
    unsigned max_topic_alias; /* Topic Alias Maximum sent in CONNACK (default 10) */
    /* TLS and WebSockets (issue 9): checked in config_tls.c, used by tls.c and ws.c.
     * TLS is on when certfile is set. Strings are owned copies or NULL. */
    char *certfile;
    char *keyfile;
    char *cafile;
    char *capath;
    char *crlfile;
    char *ciphers;           /* TLS 1.2 cipher list (OpenSSL syntax) */
    char *ciphers_tls13;     /* TLS 1.3 cipher suites */
    char *dhparamfile;       /* PEM DH parameters for DHE cipher suites (TLS 1.2) */
    char *psk_hint;          /* TLS-PSK on: the identity hint sent to TLS 1.2 clients */
    char *psk_file;          /* copy of the global psk_file for a psk_hint listener */
    int tls_version;         /* minimum: 12 (default) or 13 */
    int require_certificate;
    int use_identity_as_username; /* the certificate's CN becomes the username */
    int use_subject_as_username;  /* the certificate's subject (RFC 2253) becomes the username */
    char *ws_paths;          /* websockets_path: space-separated allow-list; NULL any path */
    char *ws_origins;        /* websockets_origin: space-separated allow-list; NULL any origin */
    char *file;              /* where the listener line was, for messages */
    int line;
    struct listener_conf *next; /* next listener, in file order */
};

/* One `plugin_opt_KEY VALUE` line. Owned by its plugin_conf. */
struct plugin_opt {
    char *key;   /* without the plugin_opt_ prefix */
    char *value; /* rest of the line; may be empty */
    int line;    /* in the plugin's file */
    struct plugin_opt *next;
};

/* One `plugin` or `listener_plugin` line with its settings. Owned by its struct config. */
struct plugin_conf {
    char *path;              /* as written: a bare name (looked up in plugin_dir) or a path */
    char *instance;          /* plugin_instance; NULL: the plugin's own name */
    int per_listener;        /* 1: listener_plugin, applies to the listener below only */
    uint16_t listener_port;  /* that listener's port and address */
    char *listener_address;
    struct plugin_opt *opts; /* in file order */
    unsigned timeout_ms;     /* plugin_timeout for PENDING decisions; default 5000 */
    int timeout_allow;       /* plugin_timeout_verdict: 1 allow, 0 deny (default) */
    unsigned threads;        /* plugin_threads: blocking pool size; default 1 */
    unsigned queue;          /* plugin_queue: jobs that may wait for the pool; default 1024 */
    char *file;              /* where the plugin line was */
    int line;
    struct plugin_conf *next; /* chain order = file order */
};

struct config {
    char *path;                   /* file it was loaded from, NULL for defaults */
    struct listener_conf *listeners; /* in file order; never NULL after load */
    unsigned worker_threads;      /* 0: one per CPU */
    int allow_anonymous;          /* default: 1 when no listener is configured, else 0 (mosquitto 2) */
    long max_queued_messages;     /* per session; default 1000; 0: unlimited */
    long long max_queued_bytes;   /* per session; default 0: unlimited */
    long max_inflight_messages;   /* default 20; 0: unlimited (sent as Receive Maximum 65535) */
    uint32_t max_packet_size;     /* 0: no limit (spec maximum) */
    uint32_t message_size_limit;  /* max payload; 0: no limit */
    unsigned max_keepalive;       /* default 65535; lower values are sent as Server Keep Alive */
    long long persistent_client_expiration; /* seconds; 0: never (default) */
    unsigned sys_interval;        /* seconds; 0: no $SYS; default 10 */
    int set_tcp_nodelay;          /* default 0 */
    int queue_qos0_messages;      /* default 0 */
    int retain_available;         /* default 1 */
    int max_qos;                  /* default 2 */
    int allow_zero_length_clientid; /* default 1 */
    char *auto_id_prefix;         /* default "auto-" */
    unsigned connect_timeout;     /* seconds a new connection has to send CONNECT; default 10 */
    unsigned log_dests;           /* MLOG_DEST_* bits; default stderr */
    char *log_file;               /* with MLOG_DEST_FILE */
    unsigned log_types;           /* MLOG_BIT() set; default error|warning|notice|information */
    int connection_messages;      /* log connects/disconnects; default 1 */
    char *pid_file;               /* NULL: none */
    char *user;                   /* user to switch to when started as root; NULL: none */
    long long memory_limit;       /* bytes of messages; 0: no limit */
    struct plugin_conf *plugins;  /* every plugin line, in file order */
    char *plugin_dir;             /* where bare plugin names are found; default the install dir */
    char *psk_file;               /* TLS-PSK keys, "identity:hexkey" lines; NULL: none */
};

/*
 * Loads `path`. On error returns NULL and writes "FILE:LINE: what is wrong"
 * (or "FILE: reason" for an unreadable file) into err. Handles include_dir
 * (every *.conf in the directory, in sorted order).
 */
struct config *config_load(const char *path, char *err, size_t errlen);

/* The configuration used when no file is given: listener 1883 on 127.0.0.1, anonymous allowed. */
struct config *config_default(void);

void config_free(struct config *cfg);

/*
 * Lists the settings that differ between `old` and `new` but cannot change
 * without a restart, as "name" separated by ", " into buf ("" when none).
 * A removed listener, or one whose protocol or socket_domain changed, is
 * named "listener PORT [ADDRESS]"; added listeners are not listed (they can
 * be opened live). Also worker_threads and pid_file.
 */
void config_restart_needed(const struct config *old, const struct config *new_cfg, char *buf,
                           size_t len);

/* Iterates the directive table: name of directive i, or NULL past the end (docs check). */
const char *config_directive_name(size_t i);

/*
 * Describes directive i (docs check, --help style listings): *listener_scope
 * 1 when it is only valid after a listener line, *reloadable 1 when SIGHUP
 * applies it without a restart, *def the default as docs/configuration.md
 * states it, *help a one-line description (static strings). Any
 * out-parameter may be NULL. Returns 0, or -1 past the end.
 */
int config_directive_describe(size_t i, int *listener_scope, int *reloadable, const char **def,
                              const char **help);

#endif
