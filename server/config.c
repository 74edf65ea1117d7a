/*
 * Configuration file parsing: mosquitto's line format ("word value...", '#'
 * comments) read through one directive table. Each entry says where the word
 * may appear (global or after a listener line), whether SIGHUP can change
 * it, its default as documented, and how to parse it; generic setters cover
 * booleans, ranged integers and strings by field offset, special setters the
 * rest. docs/configuration.md documents every entry (a unit test checks).
 *
 * Scope follows mosquitto with per_listener_settings false: global words are
 * global wherever they appear, listener words apply to the latest listener.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_internal.h"
#include "log.h"

#define DEFAULT_PORT 1883
#define DEFAULT_ADDRESS "127.0.0.1"
#define MAX_PACKET_SIZE_MIN 20
#define MAX_PACKET_SIZE_MAX 268435460LL /* 256 MiB remaining length + 5-byte fixed header */
#define MAX_PAYLOAD 268435455LL

static int set_bool(struct parser *p, const struct directive *d, char *args);
static int set_int(struct parser *p, const struct directive *d, char *args);
static int set_string(struct parser *p, const struct directive *d, char *args);
static int set_word(struct parser *p, const struct directive *d, char *args);
static int set_listener(struct parser *p, const struct directive *d, char *args);
static int set_max_packet_size(struct parser *p, const struct directive *d, char *args);
static int set_duration(struct parser *p, const struct directive *d, char *args);
static int set_log_dest(struct parser *p, const struct directive *d, char *args);
static int set_log_type(struct parser *p, const struct directive *d, char *args);
static int set_per_listener_settings(struct parser *p, const struct directive *d, char *args);
static int set_include_dir(struct parser *p, const struct directive *d, char *args);
static int set_refused(struct parser *p, const struct directive *d, char *args);

/* Reloadable global and listener fields written by the generic setters. */
#define GK(kind, field) SCOPE_GLOBAL, 1, kind, offsetof(struct config, field)
#define LK(kind, field) SCOPE_LISTENER, 1, kind, offsetof(struct listener_conf, field)

/*
 * The directive table. Columns: name, setter, scope, reloadable, field kind,
 * field offset, min, max, documented default, help, choices (set_word).
 */
static const struct directive directives[] = {
    { "listener", set_listener, SCOPE_GLOBAL, 0, FK_NONE, 0, 0, 65535, "127.0.0.1:1883 if none",
      "listener PORT [ADDRESS]: start a listener block", NULL },
    { "max_connections", set_int, LK(FK_INT, max_connections), -1, INT_MAX, "-1",
      "client limit for this listener, -1 unlimited", NULL },
    { "listener_allow_anonymous", set_bool, LK(FK_INT, allow_anonymous), 0, 0,
      "unset (allow_anonymous decides)", "allow clients without a username on this listener",
      NULL },
    { "protocol", set_word, SCOPE_LISTENER, 0, FK_INT, offsetof(struct listener_conf, protocol),
      0, 0, "mqtt", "mqtt or websockets", protocol_words },
    { "socket_domain", set_word, SCOPE_LISTENER, 0, FK_INT,
      offsetof(struct listener_conf, socket_domain), 0, 0, "unset (both)",
      "ipv4 or ipv6: restrict the listener to one address family", socket_domain_words },
    { "max_topic_alias", set_int, LK(FK_UINT, max_topic_alias), 0, 65535, "10",
      "Topic Alias Maximum announced to MQTT 5 clients on this listener", NULL },
    /* TLS and WebSockets (issue 9; setters in config_tls.c). */
    { "certfile", conf_set_tls_path, LK(FK_STR, certfile), 0, 0, "none",
      "PEM certificate chain of the server; turns TLS on for this listener", NULL },
    { "keyfile", conf_set_tls_path, LK(FK_STR, keyfile), 0, 0, "none",
      "PEM private key matching certfile", NULL },
    { "cafile", conf_set_tls_path, LK(FK_STR, cafile), 0, 0, "none",
      "PEM CA certificates trusted for client certificates", NULL },
    { "capath", conf_set_tls_path, LK(FK_STR, capath), 0, 0, "none",
      "directory of hashed CA certificates trusted for client certificates", NULL },
    { "crlfile", conf_set_tls_path, LK(FK_STR, crlfile), 0, 0, "none",
      "PEM certificate revocation list checked against client certificates", NULL },
    { "require_certificate", set_bool, LK(FK_INT, require_certificate), 0, 0, "false",
      "refuse TLS clients without a valid certificate", NULL },
    { "use_identity_as_username", set_bool, LK(FK_INT, use_identity_as_username), 0, 0,
      "false", "use the client certificate's CN as the username", NULL },
    { "use_subject_as_username", set_bool, LK(FK_INT, use_subject_as_username), 0, 0, "false",
      "use the client certificate's subject as the username", NULL },
    { "tls_version", conf_set_tls_version, LK(FK_INT, tls_version), 0, 0, "tlsv1.2",
      "lowest TLS version accepted: tlsv1.2 or tlsv1.3", NULL },
    { "ciphers", set_string, LK(FK_STR, ciphers), 0, 0, "OpenSSL's default",
      "TLS 1.2 cipher list in OpenSSL syntax", NULL },
    { "ciphers_tls1.3", set_string, LK(FK_STR, ciphers_tls13), 0, 0, "OpenSSL's default",
      "TLS 1.3 cipher suites in OpenSSL syntax", NULL },
    { "dhparamfile", conf_set_tls_path, LK(FK_STR, dhparamfile), 0, 0, "none",
      "PEM Diffie-Hellman parameters for DHE cipher suites (TLS 1.2)", NULL },
    { "psk_hint", set_string, LK(FK_STR, psk_hint), 0, 0, "none",
      "turns TLS-PSK on for this listener; the hint sent to TLS 1.2 clients", NULL },
    { "psk_file", conf_set_tls_path, GK(FK_STR, psk_file), 0, 0, "none",
      "pre-shared keys for psk_hint listeners, identity:hexkey per line", NULL },
    { "websockets_path", conf_set_word_list, LK(FK_STR, ws_paths), 0, 0, "any path",
      "HTTP paths a WebSocket client may connect to; repeatable", NULL },
    { "websockets_origin", conf_set_word_list, LK(FK_STR, ws_origins), 0, 0, "any origin",
      "Origin header values a browser may connect from; repeatable", NULL },
    { "bind_address", set_refused, SCOPE_GLOBAL, 0, FK_NONE, 0, 0, 0, "refused",
      "not supported: write listener PORT ADDRESS", NULL },
    { "port", set_refused, SCOPE_GLOBAL, 0, FK_NONE, 0, 0, 0, "refused",
      "not supported: write listener PORT", NULL },
    { "allow_anonymous", set_bool, GK(FK_INT, allow_anonymous), 0, 0,
      "true without listener lines, else false", "allow clients without a username", NULL },
    { "worker_threads", set_int, SCOPE_GLOBAL, 0, FK_UINT, offsetof(struct config, worker_threads),
      0, 1024, "0", "number of worker threads, 0 one per CPU", NULL },
    { "max_queued_messages", set_int, GK(FK_LONG, max_queued_messages), 0, INT32_MAX, "1000",
      "messages queued per session beyond those in flight, 0 unlimited", NULL },
    { "max_queued_bytes", set_int, GK(FK_LLONG, max_queued_bytes), 0, LLONG_MAX, "0",
      "payload bytes queued per session, 0 unlimited", NULL },
    { "max_inflight_messages", set_int, GK(FK_LONG, max_inflight_messages), 0, 65535, "20",
      "QoS 1 and 2 messages in flight per client, 0 unlimited", NULL },
    { "max_packet_size", set_max_packet_size, GK(FK_U32, max_packet_size), 0,
      MAX_PACKET_SIZE_MAX, "0", "largest packet accepted, 0 no limit", NULL },
    { "message_size_limit", set_int, GK(FK_U32, message_size_limit), 0, MAX_PAYLOAD, "0",
      "largest PUBLISH payload accepted, 0 no limit", NULL },
    { "max_keepalive", set_int, GK(FK_UINT, max_keepalive), 0, 65535, "65535",
      "largest keep alive granted, in seconds", NULL },
    { "persistent_client_expiration", set_duration,
      GK(FK_LLONG, persistent_client_expiration), 0, 0, "never",
      "drop persistent sessions idle this long (e.g. 14d)", NULL },
    { "sys_interval", set_int, GK(FK_UINT, sys_interval), 0, INT32_MAX, "10",
      "seconds between $SYS updates, 0 disables $SYS", NULL },
    { "set_tcp_nodelay", set_bool, GK(FK_INT, set_tcp_nodelay), 0, 0, "false",
      "disable Nagle's algorithm on client sockets", NULL },
    { "queue_qos0_messages", set_bool, GK(FK_INT, queue_qos0_messages), 0, 0, "false",
      "queue QoS 0 messages for offline persistent sessions", NULL },
    { "retain_available", set_bool, GK(FK_INT, retain_available), 0, 0, "true",
      "support retained messages", NULL },
    { "max_qos", set_int, GK(FK_INT, max_qos), 0, 2, "2", "highest QoS supported", NULL },
    { "allow_zero_length_clientid", set_bool, GK(FK_INT, allow_zero_length_clientid), 0, 0,
      "true", "allow clients to connect with an empty client id", NULL },
    { "auto_id_prefix", set_string, GK(FK_STR, auto_id_prefix), 0, 0, "auto-",
      "prefix of client ids the broker assigns", NULL },
    { "connect_timeout", set_int, GK(FK_UINT, connect_timeout), 1, 86400, "10",
      "seconds a new connection has to send CONNECT", NULL },
    { "log_dest", set_log_dest, SCOPE_GLOBAL, 1, FK_NONE, 0, 0, 0, "stderr",
      "stderr, stdout, syslog, none or file PATH; repeatable", NULL },
    { "log_type", set_log_type, SCOPE_GLOBAL, 1, FK_NONE, 0, 0, 0,
      "error warning notice information", "event classes to log; repeatable", NULL },
    /* Validated as a boolean, then ignored (FK_NONE stores nothing). */
    { "log_timestamp", set_bool, SCOPE_GLOBAL, 1, FK_NONE, 0, 0, 0, "true",
      "accepted for mosquitto compatibility; timestamps are always written", NULL },
    { "connection_messages", set_bool, GK(FK_INT, connection_messages), 0, 0, "true",
      "log client connections and disconnections", NULL },
    { "user", set_string, SCOPE_GLOBAL, 0, FK_STR, offsetof(struct config, user), 0, 0, "none",
      "when started as root, switch to this user after opening the listeners", NULL },
    { "memory_limit", set_int, GK(FK_LLONG, memory_limit), 0, LLONG_MAX, "0",
      "bytes of messages held in memory above which publishes are refused; 0 no limit", NULL },
    { "pid_file", set_string, SCOPE_GLOBAL, 0, FK_STR, offsetof(struct config, pid_file), 0, 0,
      "none", "write the broker's process id to this file", NULL },
    { "include_dir", set_include_dir, SCOPE_GLOBAL, 1, FK_NONE, 0, 0, 0, "none",
      "also read every *.conf file in this directory, in name order", NULL },
    { "plugin", conf_set_plugin, SCOPE_GLOBAL, 0, FK_NONE, 0, 0, 0, "none",
      "load a plugin for every listener; its plugin_opt_ lines follow", NULL },
    { "listener_plugin", conf_set_plugin, SCOPE_LISTENER, 0, FK_NONE, 1, 0, 0, "none",
      "load a plugin for the listener above only", NULL },
    { "plugin_opt_", conf_set_plugin_setting, SCOPE_GLOBAL, 1, FK_NONE, 0, 0, 0, "none",
      "plugin_opt_KEY VALUE: an option of the plugin above (the plugin's own)", NULL },
    { "plugin_instance", conf_set_plugin_setting, SCOPE_GLOBAL, 0, FK_NONE, 1, 0, 0,
      "the plugin's name", "instance name of the plugin above (logs, $SYS, metrics)", NULL },
    { "plugin_timeout", conf_set_plugin_setting, SCOPE_GLOBAL, 1, FK_NONE, 2, 0, 0, "5",
      "seconds a PENDING decision of the plugin above may take", NULL },
    { "plugin_timeout_verdict", conf_set_plugin_setting, SCOPE_GLOBAL, 1, FK_NONE, 3, 0, 0, "deny",
      "allow|deny: the decision when the plugin above times out", NULL },
    { "plugin_threads", conf_set_plugin_setting, SCOPE_GLOBAL, 0, FK_NONE, 4, 0, 0, "1",
      "threads of the blocking pool (api->run_blocking) of the plugin above", NULL },
    { "plugin_queue", conf_set_plugin_setting, SCOPE_GLOBAL, 0, FK_NONE, 5, 0, 0, "1024",
      "jobs that may wait for the blocking pool of the plugin above", NULL },
    { "plugin_dir", set_string, SCOPE_GLOBAL, 0, FK_STR, offsetof(struct config, plugin_dir), 0,
      0, "PREFIX/lib/midge", "directory searched for plugins given by bare name", NULL },
    { "per_listener_settings", set_per_listener_settings, SCOPE_GLOBAL, 1, FK_NONE, 0, 0, 0,
      "false", "only false is supported", NULL },
};

#undef GK
#undef LK

#define NDIRECTIVES (sizeof(directives) / sizeof(directives[0]))

/*
 * mosquitto options midge does not implement (yet). They are errors like any
 * unknown word; the list only makes the message say why.
 */
static const char *const mosquitto_only[] = {
    "acl_file", "address", "allow_duplicate_messages", "auth_opt_", "auth_plugin",
    "auth_plugin_deny_special_chars", "autosave_interval", "autosave_on_changes", "bridge_",
    "check_retain_source", "cleansession", "clientid", "clientid_prefixes", "connection",
    "enable_control_api", "http_dir", "keepalive_interval", "local_clientid",
    "local_password", "local_username", "log_facility", "log_timestamp_format",
    "max_inflight_bytes", "mount_point", "notification_topic", "notifications",
    "password_file", "persistence", "persistence_file", "persistence_location",
    "remote_clientid", "remote_password", "remote_username",
    "restart_timeout", "retry_interval", "start_type",
    "store_clean_interval", "tls_engine", "tls_keyform", "topic", "try_private",
    "upgrade_outgoing_qos", "use_username_as_clientid", "websockets_headers_size",
    "websockets_log_level",
};

static int parse_file(struct parser *p, const char *path);

static struct listener_conf *
target_listener(struct parser *p)
{
    return p->last;
}

/* Address of the field a generic directive writes. */
static void *
field_ptr(struct parser *p, const struct directive *d)
{
    if (d->scope == SCOPE_LISTENER) {
        return (char *)target_listener(p) + d->off;
    }
    return (char *)p->cfg + d->off;
}

static void
store_int(struct parser *p, const struct directive *d, long long v)
{
    void *f = field_ptr(p, d);

    switch (d->kind) {
    case FK_INT:
        *(int *)f = (int)v;
        break;
    case FK_UINT:
        *(unsigned *)f = (unsigned)v;
        break;
    case FK_LONG:
        *(long *)f = (long)v;
        break;
    case FK_LLONG:
        *(long long *)f = v;
        break;
    case FK_U16:
        *(uint16_t *)f = (uint16_t)v;
        break;
    case FK_U32:
        *(uint32_t *)f = (uint32_t)v;
        break;
    case FK_NONE:
    case FK_STR:
        break;
    }
}

static int
set_bool(struct parser *p, const struct directive *d, char *args)
{
    char *w;
    int v = 0;

    if (conf_one_word(p, d, args, &w) < 0 || conf_parse_bool(p, d->name, w, &v) < 0) {
        return -1;
    }
    store_int(p, d, v);
    return 0;
}

static int
set_int(struct parser *p, const struct directive *d, char *args)
{
    char *w;
    long long v = 0;

    if (conf_one_word(p, d, args, &w) < 0 || conf_parse_ll(p, d->name, w, d->min, d->max, &v) < 0) {
        return -1;
    }
    store_int(p, d, v);
    return 0;
}

/* Strings take the rest of the line (mosquitto does the same), so paths may hold spaces. */
static int
set_string(struct parser *p, const struct directive *d, char *args)
{
    char **f = field_ptr(p, d);
    char *copy;

    if (args[0] == '\0') {
        return conf_error(p, "%s: missing value", d->name);
    }
    copy = strdup(args);
    if (copy == NULL) {
        return conf_error(p, "%s: out of memory", d->name);
    }
    free(*f);
    *f = copy;
    return 0;
}

/* One word out of d->words: "expected mqtt or websockets, got 'http'" otherwise. */
static int
set_word(struct parser *p, const struct directive *d, char *args)
{
    char expected[128] = "";
    char *w;
    size_t i;

    if (conf_one_word(p, d, args, &w) < 0) {
        return -1;
    }
    for (i = 0; d->words[i].word != NULL; i++) {
        if (strcmp(w, d->words[i].word) == 0) {
            store_int(p, d, d->words[i].value);
            return 0;
        }
    }
    for (i = 0; d->words[i].word != NULL; i++) {
        size_t used = strlen(expected);

        snprintf(expected + used, sizeof(expected) - used, "%s%s",
                 i == 0 ? "" : d->words[i + 1].word == NULL ? " or " : ", ", d->words[i].word);
    }
    return conf_error(p, "%s: expected %s, got '%s'", d->name, expected, w);
}

static void
listener_free(struct listener_conf *l)
{
    conf_tls_free(l); /* issue 9 */
    free(l->bind_address);
    free(l->file);
    free(l);
}

static struct listener_conf *
listener_new(uint16_t port, const char *address, const char *file, int line)
{
    struct listener_conf *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        goto fail;
    }
    l->port = port;
    l->max_connections = -1;
    l->allow_anonymous = -1;
    l->protocol = LISTENER_MQTT;
    l->socket_domain = 0;
    l->max_topic_alias = 10;
    l->tls_version = 12; /* issue 9: TLS 1.2 minimum */
    l->line = line;
    if (address != NULL && (l->bind_address = strdup(address)) == NULL) {
        goto fail;
    }
    if ((l->file = strdup(file)) == NULL) {
        goto fail;
    }
    return l;
fail:
    if (l != NULL) {
        listener_free(l);
    }
    return NULL;
}

static int
same_address(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

static int
set_listener(struct parser *p, const struct directive *d, char *args)
{
    char *words[3];
    int n = conf_split(args, words, 3);
    const char *address = NULL;
    struct listener_conf *l;
    long long port;

    if (n == 0) {
        return conf_error(p, "listener: missing port");
    }
    if (n > 2) {
        return conf_error(p, "listener: unexpected extra value '%s'", words[2]);
    }
    if (conf_parse_ll(p, "listener", words[0], 0, 65535, &port) < 0) {
        return -1;
    }
    if (n == 2) {
        address = words[1];
    }
    /* Port 0 asks the kernel for a free port, so several of them never clash. */
    for (l = p->cfg->listeners; port != 0 && l != NULL; l = l->next) {
        if (l->port == port && same_address(l->bind_address, address)) {
            return conf_error(p, "listener %lld%s%s duplicates the listener at %s:%d", port,
                        address != NULL ? " " : "", address != NULL ? address : "", l->file,
                        l->line);
        }
    }
    l = listener_new((uint16_t)port, address, p->file, p->line);
    if (l == NULL) {
        return conf_error(p, "listener: out of memory");
    }
    if (p->last != NULL) {
        p->last->next = l;
    } else {
        p->cfg->listeners = l;
    }
    p->last = l;
    return 0;
}

static int
set_max_packet_size(struct parser *p, const struct directive *d, char *args)
{
    char *w;
    long long v = 0;

    if (conf_one_word(p, d, args, &w) < 0 || conf_parse_ll(p, d->name, w, d->min, d->max, &v) < 0) {
        return -1;
    }
    if (v != 0 && v < MAX_PACKET_SIZE_MIN) {
        return conf_error(p, "max_packet_size: %s is out of range (0 or %d..%lld)", w,
                    MAX_PACKET_SIZE_MIN, MAX_PACKET_SIZE_MAX);
    }
    store_int(p, d, v);
    return 0;
}

/*
 * mosquitto's duration format: a number followed by h (hour), d (day),
 * w (week), m (month: 30 days) or y (year: 365 days). A bare number is taken
 * as seconds (midge's extension). Note that 'm' is a month, as in mosquitto.
 */
static int
set_duration(struct parser *p, const struct directive *d, char *args)
{
    char *w;
    char *end;
    long long v = 0;
    long long unit = 1;
    char suffix;
    size_t len;

    if (conf_one_word(p, d, args, &w) < 0) {
        return -1;
    }
    len = strlen(w);
    suffix = w[len - 1];
    switch (suffix) {
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    case 'w':
        unit = 7 * 86400LL;
        break;
    case 'm':
        unit = 30 * 86400LL;
        break;
    case 'y':
        unit = 365 * 86400LL;
        break;
    default:
        suffix = '\0';
        break;
    }
    if (suffix != '\0') {
        len--;
    }
    if (len == 0 || w[0] < '0' || w[0] > '9') {
        goto bad;
    }
    errno = 0;
    v = strtoll(w, &end, 10);
    if ((size_t)(end - w) != len) {
        goto bad;
    }
    if (errno == ERANGE || v > LLONG_MAX / unit) {
        return conf_error(p, "%s: '%s' is too large", d->name, w);
    }
    store_int(p, d, v * unit);
    return 0;
bad:
    return conf_error(p, "%s: expected seconds or a number followed by h, d, w, m or y, got '%s'",
                d->name, w);
}

/* The first log_dest or log_type line replaces the default; later ones add (mosquitto). */
static int
set_log_dest(struct parser *p, const struct directive *d, char *args)
{
    struct config *cfg = p->cfg;
    unsigned bit = 0;
    char *word = args;
    char *rest = args;

    /* Cut the first word off by hand: a file path is the rest of the line, spaces and all. */
    while (*rest != '\0' && !conf_is_space(*rest)) {
        rest++;
    }
    if (*rest != '\0') {
        *rest++ = '\0';
    }
    rest = conf_trim(rest);
    if (word[0] == '\0') {
        return conf_error(p, "log_dest: missing value");
    }
    if (strcmp(word, "file") == 0) {
        if (rest[0] == '\0') {
            return conf_error(p, "log_dest: file needs a path");
        }
        if (cfg->log_file != NULL) {
            return conf_error(p, "log_dest: only one log file is supported (already '%s')",
                        cfg->log_file);
        }
        if ((cfg->log_file = strdup(rest)) == NULL) {
            return conf_error(p, "log_dest: out of memory");
        }
        bit = MLOG_DEST_FILE;
    } else {
        if (rest[0] != '\0') {
            return conf_error(p, "log_dest: unexpected extra value '%s'", rest);
        }
        if (strcmp(word, "stderr") == 0) {
            bit = MLOG_DEST_STDERR;
        } else if (strcmp(word, "stdout") == 0) {
            bit = MLOG_DEST_STDOUT;
        } else if (strcmp(word, "syslog") == 0) {
            bit = MLOG_DEST_SYSLOG;
        } else if (strcmp(word, "none") == 0) {
            bit = 0;
        } else {
            return conf_error(p, "log_dest: expected stderr, stdout, syslog, none or file PATH, got '%s'",
                        word);
        }
    }
    if (!p->log_dest_set) {
        cfg->log_dests = 0;
        p->log_dest_set = 1;
    }
    if (bit == 0) {
        cfg->log_dests = 0;
        free(cfg->log_file);
        cfg->log_file = NULL;
    }
    cfg->log_dests |= bit;
    return 0;
}

static int
set_log_type(struct parser *p, const struct directive *d, char *args)
{
    static const struct {
        const char *word;
        unsigned bits;
    } types[] = {
        { "error", MLOG_BIT(MLOG_ERROR) },
        { "warning", MLOG_BIT(MLOG_WARNING) },
        { "notice", MLOG_BIT(MLOG_NOTICE) },
        { "information", MLOG_BIT(MLOG_INFO) },
        { "debug", MLOG_BIT(MLOG_DEBUG) },
        { "subscribe", MLOG_BIT(MLOG_SUBSCRIBE) },
        { "unsubscribe", MLOG_BIT(MLOG_UNSUBSCRIBE) },
        { "all", MLOG_DEFAULT_TYPES | MLOG_BIT(MLOG_DEBUG) | MLOG_BIT(MLOG_SUBSCRIBE) |
                     MLOG_BIT(MLOG_UNSUBSCRIBE) },
        { "none", 0 },
    };
    char *words[16];
    unsigned bits = 0;
    int n;
    int i;
    size_t j;

    n = conf_split(args, words, 16);
    if (n == 0) {
        return conf_error(p, "log_type: missing value");
    }
    if (n > 16) {
        return conf_error(p, "log_type: too many values");
    }
    for (i = 0; i < n; i++) {
        for (j = 0; j < sizeof(types) / sizeof(types[0]); j++) {
            if (strcmp(words[i], types[j].word) == 0) {
                break;
            }
        }
        if (j == sizeof(types) / sizeof(types[0])) {
            return conf_error(p,
                        "log_type: expected error, warning, notice, information, debug, "
                        "subscribe, unsubscribe, all or none, got '%s'",
                        words[i]);
        }
        if (types[j].bits == 0) {
            bits = 0;
            p->cfg->log_types = 0;
        }
        bits |= types[j].bits;
    }
    if (!p->log_type_set) {
        p->cfg->log_types = 0;
        p->log_type_set = 1;
    }
    p->cfg->log_types |= bits;
    return 0;
}

static int
set_per_listener_settings(struct parser *p, const struct directive *d, char *args)
{
    char *w;
    int v = 0;

    if (conf_one_word(p, d, args, &w) < 0 || conf_parse_bool(p, d->name, w, &v) < 0) {
        return -1;
    }
    if (v) {
        return conf_error(p, "per_listener_settings true is not supported; write "
                       "listener_allow_anonymous after a listener line, and listener_plugin "
                       "for per-listener plugins");
    }
    return 0;
}

static int
set_refused(struct parser *p, const struct directive *d, char *args)
{
    if (strcmp(d->name, "bind_address") == 0) {
        return conf_error(p, "bind_address is not supported; use 'listener PORT ADDRESS'");
    }
    return conf_error(p, "%s is not supported; use 'listener PORT [ADDRESS]'", d->name);
}

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
has_conf_suffix(const char *name)
{
    size_t n = strlen(name);

    return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".conf") == 0;
}

/*
 * Parses every *.conf in the directory, sorted by name (strcmp order), as if
 * its lines were written here. Included files may not include in turn.
 */
static int
set_include_dir(struct parser *p, const struct directive *d, char *args)
{
    DIR *dir = NULL;
    struct dirent *de;
    char **names = NULL;
    size_t nnames = 0;
    size_t cap = 0;
    size_t i;
    char *path = NULL;
    const char *saved_file = p->file;
    int saved_line = p->line;
    int rc = -1;

    if (p->depth > 0) {
        conf_error(p, "include_dir: not allowed in an included file");
        goto out;
    }
    if (args[0] == '\0') {
        conf_error(p, "include_dir: missing value");
        goto out;
    }
    dir = opendir(args);
    if (dir == NULL) {
        conf_error(p, "include_dir: cannot open '%s': %s", args, strerror(errno));
        goto out;
    }
    while ((de = readdir(dir)) != NULL) {
        if (!has_conf_suffix(de->d_name)) {
            continue;
        }
        if (nnames == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 16;
            char **n = realloc(names, ncap * sizeof(*names));

            if (n == NULL) {
                conf_error(p, "include_dir: out of memory");
                goto out;
            }
            names = n;
            cap = ncap;
        }
        if ((names[nnames] = strdup(de->d_name)) == NULL) {
            conf_error(p, "include_dir: out of memory");
            goto out;
        }
        nnames++;
    }
    if (nnames > 0) {
        qsort(names, nnames, sizeof(*names), cmp_names);
    }
    for (i = 0; i < nnames; i++) {
        size_t len = strlen(args) + 1 + strlen(names[i]) + 1;

        free(path);
        if ((path = malloc(len)) == NULL) {
            conf_error(p, "include_dir: out of memory");
            goto out;
        }
        snprintf(path, len, "%s/%s", args, names[i]);
        p->depth++;
        rc = parse_file(p, path);
        p->depth--;
        p->file = saved_file;
        p->line = saved_line;
        if (rc < 0) {
            goto out;
        }
    }
    rc = 0;
out:
    if (dir != NULL) {
        closedir(dir);
    }
    for (i = 0; i < nnames; i++) {
        free(names[i]);
    }
    free(names);
    free(path);
    return rc;
}

static int
unknown_word(struct parser *p, const char *word)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    size_t limit;
    size_t i;

    for (i = 0; i < sizeof(mosquitto_only) / sizeof(mosquitto_only[0]); i++) {
        const char *m = mosquitto_only[i];
        size_t mlen = strlen(m);
        int prefix = m[mlen - 1] == '_';

        if (prefix ? strncmp(word, m, mlen) == 0 : strcmp(word, m) == 0) {
            return conf_error(p, "unknown option '%s' (a mosquitto option midge does not support yet)",
                        word);
        }
    }
    /* One typo in short words, two in longer ones. */
    limit = strlen(word) < 8 ? 1 : 2;
    for (i = 0; i < NDIRECTIVES; i++) {
        size_t dist = conf_edit_distance(word, directives[i].name);

        if (dist < best_d) {
            best_d = dist;
            best = directives[i].name;
        }
    }
    if (best != NULL && best_d <= limit) {
        return conf_error(p, "unknown option '%s'; did you mean '%s'?", word, best);
    }
    return conf_error(p, "unknown option '%s'", word);
}

/* Handles one line (already stripped of its newline). */
static int
parse_line(struct parser *p, char *line)
{
    char *s = conf_trim(line);
    char *word;
    char *args;
    size_t i;

    if (s[0] == '\0' || s[0] == '#') {
        return 0;
    }
    word = s;
    while (*s != '\0' && !conf_is_space(*s)) {
        s++;
    }
    if (*s != '\0') {
        *s++ = '\0';
    }
    args = conf_trim(s);
    for (i = 0; i < NDIRECTIVES; i++) {
        if (strcmp(word, directives[i].name) == 0) {
            break;
        }
        if (directives[i].set == conf_set_plugin_setting && directives[i].off == 0 &&
            strncmp(word, "plugin_opt_", 11) == 0) {
            /* plugin_opt_KEY: the key travels with the arguments. */
            return conf_set_plugin_opt(p, word + 11, args);
        }
    }
    if (i == NDIRECTIVES) {
        return unknown_word(p, word);
    }
    if (directives[i].scope == SCOPE_LISTENER && p->last == NULL) {
        return conf_error(p, "%s must follow a listener line (listener PORT [ADDRESS])", word);
    }
    return directives[i].set(p, &directives[i], args);
}

/* Reads one file line by line. p->file and p->line point at it while it is read. */
static int
parse_file(struct parser *p, const char *path)
{
    FILE *fp = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = -1;

    fp = fopen(path, "r");
    if (fp == NULL) {
        snprintf(p->err, p->errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    p->file = path;
    p->line = 0;
    while ((n = getline(&line, &cap, fp)) >= 0) {
        p->line++;
        if ((size_t)n != strlen(line)) {
            conf_error(p, "NUL byte in line");
            goto out;
        }
        if (parse_line(p, line) < 0) {
            goto out;
        }
    }
    if (ferror(fp)) {
        snprintf(p->err, p->errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(line);
    if (fp != NULL) {
        fclose(fp);
    }
    return rc;
}

/* A config holding every default, with no listener yet. */
static struct config *
config_new(void)
{
    struct config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL) {
        goto fail;
    }
    cfg->worker_threads = 0;
    cfg->allow_anonymous = -1; /* unset: config_finish() decides */
    cfg->max_queued_messages = 1000;
    cfg->max_queued_bytes = 0;
    cfg->max_inflight_messages = 20;
    cfg->max_packet_size = 0;
    cfg->message_size_limit = 0;
    cfg->max_keepalive = 65535;
    cfg->persistent_client_expiration = 0;
    cfg->sys_interval = 10;
    cfg->set_tcp_nodelay = 0;
    cfg->queue_qos0_messages = 0;
    cfg->retain_available = 1;
    cfg->max_qos = 2;
    cfg->allow_zero_length_clientid = 1;
    cfg->connect_timeout = 10;
    cfg->log_dests = MLOG_DEST_STDERR;
    cfg->log_types = MLOG_DEFAULT_TYPES;
    cfg->connection_messages = 1;
    if ((cfg->auto_id_prefix = strdup("auto-")) == NULL ||
        (cfg->plugin_dir = strdup(MIDGE_PLUGINDIR)) == NULL) {
        goto fail;
    }
    return cfg;
fail:
    config_free(cfg);
    return NULL;
}

/* Applies the rules that depend on the whole file: the default listener and allow_anonymous. */
static int
config_finish(struct parser *p)
{
    struct config *cfg = p->cfg;

    if (cfg->allow_anonymous < 0) {
        /* mosquitto 2: local-only mode without listeners, closed by default with them. */
        cfg->allow_anonymous = cfg->listeners == NULL;
    }
    if (cfg->listeners == NULL) {
        cfg->listeners = listener_new(DEFAULT_PORT, DEFAULT_ADDRESS, "(default)", 0);
        if (cfg->listeners == NULL) {
            snprintf(p->err, p->errlen, "out of memory");
            return -1;
        }
    }
    return conf_tls_finish(p); /* issue 9: TLS/WebSocket word combinations */
}

/*
 * Parses the file at `path` into a new config. Returns it (the caller frees
 * it with config_free()), or NULL with "FILE:LINE: message" in err.
 * Touches no global state, so any thread may call it.
 */
struct config *
config_load(const char *path, char *err, size_t errlen)
{
    struct parser p;
    struct config *cfg = NULL;
    char dummy[1];

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (path == NULL) {
        snprintf(err, errlen, "no configuration file given");
        goto fail;
    }
    memset(&p, 0, sizeof(p));
    p.err = err;
    p.errlen = errlen;
    cfg = config_new();
    if (cfg == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if ((cfg->path = strdup(path)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    p.cfg = cfg;
    if (parse_file(&p, path) < 0 || config_finish(&p) < 0) {
        goto fail;
    }
    return cfg;
fail:
    config_free(cfg);
    return NULL;
}

/*
 * The configuration of an empty file: listener 127.0.0.1:1883, anonymous
 * allowed. Caller frees with config_free(); NULL when out of memory.
 */
struct config *
config_default(void)
{
    struct parser p;
    struct config *cfg;
    char err[64];

    memset(&p, 0, sizeof(p));
    p.err = err;
    p.errlen = sizeof(err);
    cfg = config_new();
    if (cfg == NULL) {
        goto out;
    }
    p.cfg = cfg;
    if (config_finish(&p) < 0) {
        config_free(cfg);
        cfg = NULL;
    }
out:
    return cfg;
}

/* Frees cfg, its listeners and strings. NULL is fine. */
void
config_free(struct config *cfg)
{
    struct listener_conf *l;

    if (cfg == NULL) {
        return;
    }
    while ((l = cfg->listeners) != NULL) {
        cfg->listeners = l->next;
        listener_free(l);
    }
    free(cfg->path);
    free(cfg->auto_id_prefix);
    free(cfg->log_file);
    free(cfg->pid_file);
    free(cfg->user);
    free(cfg->plugin_dir);
    free(cfg->psk_file);
    while (cfg->plugins != NULL) {
        struct plugin_conf *pc = cfg->plugins;
        cfg->plugins = pc->next;
        conf_plugin_free(pc);
    }
    free(cfg);
}

/* Appends ", " (when needed) and s to buf, truncating safely. */
static void
append(char *buf, size_t len, const char *s)
{
    size_t used = strlen(buf);

    if (used + 1 >= len) {
        return;
    }
    snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "", s);
}

static int
str_differs(const char *a, const char *b)
{
    return !same_address(a, b);
}

/*
 * A listener of `old` needs a restart when `new_cfg` has no listener on the
 * same port and address, or has one whose socket-level settings differ.
 */
static int
listener_needs_restart(const struct listener_conf *l, const struct config *new_cfg)
{
    const struct listener_conf *n;

    for (n = new_cfg->listeners; n != NULL; n = n->next) {
        if (n->port == l->port && same_address(n->bind_address, l->bind_address)) {
            /* issue 9: turning TLS on or off also needs a new socket. */
            return n->protocol != l->protocol || n->socket_domain != l->socket_domain ||
                   (n->certfile != NULL || n->psk_hint != NULL) !=
                       (l->certfile != NULL || l->psk_hint != NULL);
        }
    }
    return 1;
}

/*
 * Lists what differs between old and new_cfg but only takes effect after a
 * restart: removed or changed listeners ("listener PORT [ADDRESS]"),
 * worker_threads, pid_file. New listeners are not listed: they can be opened
 * live. Pure; any thread.
 */
void
config_restart_needed(const struct config *old, const struct config *new_cfg, char *buf,
                      size_t len)
{
    const struct listener_conf *l;
    char what[300];

    if (buf == NULL || len == 0) {
        return;
    }
    buf[0] = '\0';
    if (old == NULL || new_cfg == NULL) {
        return;
    }
    for (l = old->listeners; l != NULL; l = l->next) {
        if (listener_needs_restart(l, new_cfg)) {
            snprintf(what, sizeof(what), "listener %u%s%.256s", (unsigned)l->port,
                     l->bind_address != NULL ? " " : "",
                     l->bind_address != NULL ? l->bind_address : "");
            append(buf, len, what);
        }
    }
    if (old->worker_threads != new_cfg->worker_threads) {
        append(buf, len, "worker_threads");
    }
    if (!conf_same_plugins(old->plugins, new_cfg->plugins)) {
        append(buf, len, "plugin lines (added, removed or moved)");
    }
    if (str_differs(old->pid_file, new_cfg->pid_file)) {
        append(buf, len, "pid_file");
    }
    if (str_differs(old->user, new_cfg->user)) {
        append(buf, len, "user");
    }
}

/* Name of directive i in table order, NULL past the end. Pure; any thread. */
const char *
config_directive_name(size_t i)
{
    if (i >= NDIRECTIVES) {
        return NULL;
    }
    return directives[i].name;
}

/* Scope, reloadability, default and help of directive i; -1 past the end. Any thread. */
int
config_directive_describe(size_t i, int *listener_scope, int *reloadable, const char **def,
                          const char **help)
{
    if (i >= NDIRECTIVES) {
        return -1;
    }
    if (listener_scope != NULL) {
        *listener_scope = directives[i].scope == SCOPE_LISTENER;
    }
    if (reloadable != NULL) {
        *reloadable = directives[i].reloadable;
    }
    if (def != NULL) {
        *def = directives[i].def;
    }
    if (help != NULL) {
        *help = directives[i].help;
    }
    return 0;
}
