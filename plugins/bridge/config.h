/*
 * Bridge configuration: the file named by plugin_opt_bridges, written with
 * mosquitto's bridge lines (docs/bridge.md). Pure: no broker state, no I/O
 * besides reading the file, so tests/unit/test_bridge_config.c drives it.
 */
#ifndef BRIDGE_CONFIG_H
#define BRIDGE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum bridge_dir {
    BRIDGE_OUT = 1,  /* local -> remote */
    BRIDGE_IN = 2,   /* remote -> local */
    BRIDGE_BOTH = 3,
};

enum bridge_start {
    BRIDGE_START_AUTOMATIC = 0,
    BRIDGE_START_ONCE = 1,
    BRIDGE_START_LAZY = 2,   /* connect once `threshold` messages wait; idle_timeout: disconnect */
};

enum bridge_profile {
    BRIDGE_PROFILE_GENERIC = 0,
    BRIDGE_PROFILE_AWS = 1,   /* AWS IoT Core: QoS <= 1, retain allowed */
    BRIDGE_PROFILE_AZURE = 2, /* Azure IoT Hub: QoS <= 1, no retain */
};

/* One `topic` line. Owns its strings. */
struct bridge_topic {
    int dir;             /* enum bridge_dir */
    int qos;             /* 0..2 */
    char *pattern;       /* as written; "" for an exact remap */
    char *local_prefix;  /* "" when none */
    char *remote_prefix;
    char *local_filter;  /* local_prefix + pattern: the local subscription (out) */
    char *remote_filter; /* remote_prefix + pattern: the remote subscription (in) */
};

/* One address of `address`/`addresses`. Owns host. */
struct bridge_addr {
    char *host;
    uint16_t port;
};

/*
 * One `connection` block. Owns every string and array; freed with
 * bridge_conf_free() (the whole list). Immutable once parsed: the running
 * bridge keeps a pointer to it until SIGHUP replaces it.
 */
struct bridge_conf {
    struct bridge_conf *next;
    char *name;
    int line;                    /* line of the `connection` line, for messages */
    struct bridge_addr *addrs;
    size_t naddrs;
    struct bridge_topic *topics;
    size_t ntopics;
    char *remote_clientid;
    char *remote_username;       /* NULL: none */
    char *remote_password;
    char *local_clientid;
    char *notification_topic;
    char *bind_address;          /* NULL: any */
    int version;                 /* 3, 4 or 5 (mqttv31, mqttv311, mqttv50) */
    int cleansession;
    int local_cleansession;      /* -1 until set: then as cleansession */
    int keepalive;               /* seconds */
    int try_private;
    int notifications;
    int notifications_local_only;
    double restart_base;         /* seconds */
    double restart_cap;          /* == base: constant delay */
    int round_robin;
    int start_type;              /* enum bridge_start */
    uint32_t idle_timeout;       /* lazy: seconds without traffic before disconnecting */
    uint32_t threshold;          /* lazy: messages waiting that make it connect */
    int attempt_unsubscribe;
    int outgoing_retain;
    uint32_t max_packet_size;    /* 0: no limit of ours */
    uint32_t queue_max_messages; /* held for the remote (queued + inflight) */
    uint64_t queue_max_bytes;    /* 0: no byte limit */
    int profile;                 /* enum bridge_profile */
    int forward_bridged;         /* forward messages that came over another bridge */
    /* TLS: enabled when cafile or capath is set. */
    char *cafile;
    char *capath;
    char *certfile;
    char *keyfile;
    char *alpn;
    char *tls_version;           /* NULL: library default (TLS 1.2+) */
    int insecure;                /* do not check the host name in the certificate */
    char *psk_identity;          /* TLS-PSK (bridge_identity / bridge_psk): instead of a CA */
    uint8_t *psk;
    size_t psk_len;
};

/*
 * Parses `text` (the contents of file `path`, used in messages). On success
 * returns 0 and the list of bridges in file order in *out (caller frees with
 * bridge_conf_free). On error returns -1, *out NULL, and err holds
 * "PATH:LINE: what is wrong". `hostname` is used for the default
 * remote_clientid (mosquitto: HOSTNAME.NAME).
 */
int bridge_conf_parse(const char *path, const char *text, const char *hostname,
                      struct bridge_conf **out, char *err, size_t errlen);

/* Reads and parses file `path` as bridge_conf_parse(). */
int bridge_conf_load(const char *path, const char *hostname, struct bridge_conf **out, char *err,
                     size_t errlen);

/* Frees a list from bridge_conf_parse (NULL allowed). */
void bridge_conf_free(struct bridge_conf *list);

/* 1 when a and b configure the same bridge identically (SIGHUP keeps it running). */
int bridge_conf_same(const struct bridge_conf *a, const struct bridge_conf *b);

/* 1 when MQTT topic `topic` matches filter `filter` (+, #; $-topics not by a leading wildcard). */
int bridge_topic_match(const char *filter, const char *topic);

#endif
