/*
 * Unit tests for server/config.c. Each test writes config files into a
 * private temporary directory (the fixture), loads them and checks the
 * result or the exact "FILE:LINE: message" error. The last test checks that
 * docs/configuration.md documents every directive with the table's scope,
 * default and SIGHUP behaviour (MIDGE_SRCDIR locates the docs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/*
 * Explicit paths: a plain "config.h" would find autoconf's config.h in the
 * build directory (-I. comes before -I$(top_srcdir)/server).
 */
#include "../../server/config.h"
#include "../../server/log.h"

#define MAX_FILES 128

/* Fixture state: a temp directory, the files written into it, the loaded config. */
struct fx {
    char dir[64];
    char *files[MAX_FILES]; /* owned: unlinked and freed in teardown */
    size_t nfiles;
    char path[256];         /* the last file written by write_conf() */
    char err[512];
    struct config *cfg;     /* owned: freed in teardown */
};

static int
setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/midge-test-config-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;
    size_t i;

    config_free(fx->cfg);
    for (i = fx->nfiles; i > 0; i--) {
        /* Files and subdirectories, newest first so directories are empty. */
        if (unlink(fx->files[i - 1]) != 0) {
            rmdir(fx->files[i - 1]);
        }
        free(fx->files[i - 1]);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void
remember(struct fx *fx, const char *path)
{
    assert_true(fx->nfiles < MAX_FILES);
    fx->files[fx->nfiles] = strdup(path);
    assert_non_null(fx->files[fx->nfiles]);
    fx->nfiles++;
}

/* Writes text to a new mkstemp file in the fixture directory; its path goes to fx->path. */
static const char *
write_conf(struct fx *fx, const char *text)
{
    int fd;
    size_t len = strlen(text);

    snprintf(fx->path, sizeof(fx->path), "%s/midge-XXXXXX", fx->dir);
    fd = mkstemp(fx->path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    remember(fx, fx->path);
    return fx->path;
}

/* Writes text to dir/name (for include_dir). */
static void
write_named(struct fx *fx, const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    remember(fx, path);
}

/* Loads text and asserts that it parses. */
static struct config *
load_ok(struct fx *fx, const char *text)
{
    config_free(fx->cfg);
    fx->cfg = config_load(write_conf(fx, text), fx->err, sizeof(fx->err));
    if (fx->cfg == NULL) {
        print_error("unexpected error: %s\n", fx->err);
    }
    assert_non_null(fx->cfg);
    return fx->cfg;
}

/* Loads text and asserts that it fails; the message is left in fx->err. */
static void
load_fail(struct fx *fx, const char *text)
{
    struct config *cfg = config_load(write_conf(fx, text), fx->err, sizeof(fx->err));

    if (cfg != NULL) {
        print_error("expected an error for:\n%s", text);
        config_free(cfg);
    }
    assert_null(cfg);
}

/* Loads text and asserts the error is exactly "PATH:" followed by `expected`. */
static void
load_err(struct fx *fx, const char *text, const char *expected)
{
    char want[1024];

    load_fail(fx, text);
    snprintf(want, sizeof(want), "%s:%s", fx->path, expected);
    assert_string_equal(fx->err, want);
}

static void
assert_defaults(const struct config *cfg)
{
    const struct listener_conf *l = cfg->listeners;

    assert_non_null(l);
    assert_null(l->next);
    assert_int_equal(l->port, 1883);
    assert_string_equal(l->bind_address, "127.0.0.1");
    assert_int_equal(l->max_connections, -1);
    assert_int_equal(l->allow_anonymous, -1);
    assert_int_equal(l->protocol, LISTENER_MQTT);
    assert_int_equal(l->socket_domain, 0);
    assert_int_equal(l->max_topic_alias, 10);
    assert_int_equal(cfg->worker_threads, 0);
    assert_int_equal(cfg->allow_anonymous, 1);
    assert_int_equal(cfg->max_queued_messages, 1000);
    assert_int_equal(cfg->max_queued_bytes, 0);
    assert_int_equal(cfg->max_inflight_messages, 20);
    assert_int_equal(cfg->max_packet_size, 0);
    assert_int_equal(cfg->message_size_limit, 0);
    assert_int_equal(cfg->max_keepalive, 65535);
    assert_int_equal(cfg->persistent_client_expiration, 0);
    assert_int_equal(cfg->sys_interval, 10);
    assert_int_equal(cfg->set_tcp_nodelay, 0);
    assert_int_equal(cfg->queue_qos0_messages, 0);
    assert_int_equal(cfg->retain_available, 1);
    assert_int_equal(cfg->max_qos, 2);
    assert_int_equal(cfg->allow_zero_length_clientid, 1);
    assert_string_equal(cfg->auto_id_prefix, "auto-");
    assert_int_equal(cfg->connect_timeout, 10);
    assert_int_equal(cfg->log_dests, MLOG_DEST_STDERR);
    assert_null(cfg->log_file);
    assert_int_equal(cfg->log_types, MLOG_DEFAULT_TYPES);
    assert_int_equal(cfg->connection_messages, 1);
    assert_null(cfg->pid_file);
}

static void
test_defaults(void **state)
{
    struct fx *fx = *state;
    struct config *def = config_default();

    assert_non_null(def);
    assert_null(def->path);
    assert_defaults(def);
    config_free(def);

    /* config_default() is an empty file; comments and blank lines are nothing. */
    assert_defaults(load_ok(fx, ""));
    assert_string_equal(fx->cfg->path, fx->path);
    assert_defaults(load_ok(fx, "# only a comment\n\n   \n\t# indented comment\n"));
}

static void
test_every_directive(void **state)
{
    struct fx *fx = *state;
    const struct config *cfg;
    const struct listener_conf *l;

    cfg = load_ok(fx, "  listener 8883 10.0.0.1  \n"
                      "max_connections 100\n"
                      "listener_allow_anonymous true\n"
                      "protocol websockets\n"
                      "socket_domain ipv6\n"
                      "max_topic_alias 0\n"
                      "listener 0\n"
                      "socket_domain ipv4\n"
                      "protocol mqtt\n"
                      "max_connections -1\n"
                      "listener_allow_anonymous false\n"
                      "max_topic_alias 65535\n"
                      "allow_anonymous true\n"
                      "worker_threads 4\n"
                      "max_queued_messages 0\n"
                      "max_queued_bytes 10000000000\n"
                      "max_inflight_messages 0\n"
                      "max_packet_size 1024\n"
                      "message_size_limit 512\n"
                      "max_keepalive 60\n"
                      "persistent_client_expiration 2w\n"
                      "sys_interval 0\n"
                      "set_tcp_nodelay true\n"
                      "queue_qos0_messages true\n"
                      "retain_available false\n"
                      "max_qos 1\n"
                      "allow_zero_length_clientid false\n"
                      "auto_id_prefix gen-\n"
                      "connect_timeout 30\n"
                      "log_dest syslog\n"
                      "log_type debug\n"
                      "log_timestamp false\n"
                      "connection_messages false\n"
                      "pid_file /run/midge dir/midge.pid\r\n"
                      "per_listener_settings false\n");
    l = cfg->listeners;
    assert_non_null(l);
    assert_int_equal(l->port, 8883);
    assert_string_equal(l->bind_address, "10.0.0.1");
    assert_int_equal(l->max_connections, 100);
    assert_int_equal(l->allow_anonymous, 1);
    assert_int_equal(l->protocol, LISTENER_WEBSOCKETS);
    assert_int_equal(l->socket_domain, 6);
    assert_int_equal(l->max_topic_alias, 0);
    assert_string_equal(l->file, fx->path);
    assert_int_equal(l->line, 1);
    l = l->next;
    assert_non_null(l);
    assert_int_equal(l->port, 0);
    assert_null(l->bind_address);
    assert_int_equal(l->socket_domain, 4);
    assert_int_equal(l->protocol, LISTENER_MQTT);
    assert_int_equal(l->max_connections, -1);
    assert_int_equal(l->allow_anonymous, 0);
    assert_int_equal(l->max_topic_alias, 65535);
    assert_int_equal(l->line, 7);
    assert_null(l->next);

    assert_int_equal(cfg->allow_anonymous, 1);
    assert_int_equal(cfg->worker_threads, 4);
    assert_int_equal(cfg->max_queued_messages, 0);
    assert_true(cfg->max_queued_bytes == 10000000000LL);
    assert_int_equal(cfg->max_inflight_messages, 0);
    assert_int_equal(cfg->max_packet_size, 1024);
    assert_int_equal(cfg->message_size_limit, 512);
    assert_int_equal(cfg->max_keepalive, 60);
    assert_int_equal(cfg->persistent_client_expiration, 14 * 86400);
    assert_int_equal(cfg->sys_interval, 0);
    assert_int_equal(cfg->set_tcp_nodelay, 1);
    assert_int_equal(cfg->queue_qos0_messages, 1);
    assert_int_equal(cfg->retain_available, 0);
    assert_int_equal(cfg->max_qos, 1);
    assert_int_equal(cfg->allow_zero_length_clientid, 0);
    assert_string_equal(cfg->auto_id_prefix, "gen-");
    assert_int_equal(cfg->connect_timeout, 30);
    assert_int_equal(cfg->log_dests, MLOG_DEST_SYSLOG);
    assert_int_equal(cfg->log_types, MLOG_BIT(MLOG_DEBUG));
    assert_int_equal(cfg->connection_messages, 0);
    /* Strings run to the end of the line (spaces kept, CR and blanks trimmed). */
    assert_string_equal(cfg->pid_file, "/run/midge dir/midge.pid");

    /* Limits of the ranges are accepted. */
    cfg = load_ok(fx, "max_packet_size 20\nmessage_size_limit 268435455\nmax_keepalive 0\n"
                      "worker_threads 1024\nmax_inflight_messages 65535\nmax_qos 0\n"
                      "listener 65535\nlistener 1 ::1\n");
    assert_int_equal(cfg->max_packet_size, 20);
    assert_int_equal(cfg->message_size_limit, 268435455);
    assert_int_equal(cfg->max_keepalive, 0);
    assert_int_equal(cfg->listeners->port, 65535);
    assert_string_equal(cfg->listeners->next->bind_address, "::1");
    cfg = load_ok(fx, "max_packet_size 268435460\n");
    assert_int_equal(cfg->max_packet_size, 268435460);
    /* The last value of a repeated global word wins, as in mosquitto. */
    cfg = load_ok(fx, "max_qos 1\nmax_qos 0\n");
    assert_int_equal(cfg->max_qos, 0);
}

/* mosquitto with per_listener_settings false: global words stay global after a listener. */
static void
test_scope(void **state)
{
    struct fx *fx = *state;
    const struct config *cfg;

    cfg = load_ok(fx, "listener 1883\nallow_anonymous true\nmax_inflight_messages 5\n"
                      "listener 1884\nmax_connections 3\n");
    assert_int_equal(cfg->allow_anonymous, 1);
    assert_int_equal(cfg->max_inflight_messages, 5);
    assert_int_equal(cfg->listeners->allow_anonymous, -1);
    assert_int_equal(cfg->listeners->max_connections, -1);
    assert_int_equal(cfg->listeners->next->max_connections, 3);

    /* With listeners and no allow_anonymous, anonymous access is off (mosquitto 2). */
    cfg = load_ok(fx, "listener 1883\n");
    assert_int_equal(cfg->allow_anonymous, 0);
    assert_int_equal(cfg->listeners->port, 1883);
    assert_null(cfg->listeners->bind_address);
    assert_null(cfg->listeners->next);
    /* Without listeners it is on, and an explicit value still wins. */
    cfg = load_ok(fx, "max_qos 1\n");
    assert_int_equal(cfg->allow_anonymous, 1);
    cfg = load_ok(fx, "allow_anonymous false\n");
    assert_int_equal(cfg->allow_anonymous, 0);
    assert_string_equal(cfg->listeners->bind_address, "127.0.0.1");
    cfg = load_ok(fx, "allow_anonymous true\nlistener 1883\n");
    assert_int_equal(cfg->allow_anonymous, 1);
    /* listener_allow_anonymous sets only its listener. */
    cfg = load_ok(fx, "listener 1883\nlistener 1884 127.0.0.1\nlistener_allow_anonymous true\n");
    assert_int_equal(cfg->allow_anonymous, 0);
    assert_int_equal(cfg->listeners->allow_anonymous, -1);
    assert_int_equal(cfg->listeners->next->allow_anonymous, 1);
}

static void
test_listener_word_before_listener(void **state)
{
    static const char *const words[] = {
        "max_connections 10", "listener_allow_anonymous true", "protocol mqtt",
        "socket_domain ipv4", "max_topic_alias 5",
    };
    struct fx *fx = *state;
    char text[256];
    char want[256];
    char name[64];
    size_t i;

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(words[i], " "), words[i]);
        snprintf(text, sizeof(text), "# comment\nmax_qos 1\n\n%s\nlistener 1883\n", words[i]);
        snprintf(want, sizeof(want),
                 "4: %s must follow a listener line (listener PORT [ADDRESS])", name);
        load_err(fx, text, want);
    }
}

static void
test_unknown_option(void **state)
{
    struct fx *fx = *state;

    load_err(fx, "# comment\n\nfoo bar\n", "3: unknown option 'foo'");
    load_err(fx, "listener 1883\nfoo\n", "2: unknown option 'foo'");
    load_err(fx, "max_queued_mesages 10\n",
             "1: unknown option 'max_queued_mesages'; did you mean 'max_queued_messages'?");
    load_err(fx, "max_inflight_mesages 10\n",
             "1: unknown option 'max_inflight_mesages'; did you mean 'max_inflight_messages'?");
    load_err(fx, "lsitener 1883\n", "1: unknown option 'lsitener'; did you mean 'listener'?");
    load_err(fx, "allow_anonymus true\n",
             "1: unknown option 'allow_anonymus'; did you mean 'allow_anonymous'?");
    /* Case matters, as in mosquitto. */
    load_err(fx, "Listener 1883\n", "1: unknown option 'Listener'; did you mean 'listener'?");
    /* Words of later features are not silently accepted. */
    load_err(fx, "password_file /etc/midge/passwd\n",
             "1: unknown option 'password_file' (a mosquitto option midge does not support yet)");
    load_err(fx, "plugin_opt_foo bar\n",
             "1: plugin_opt_foo must follow a plugin or listener_plugin line");
    load_err(fx, "listener 1883\ntls_engine x\n",
             "2: unknown option 'tls_engine' (a mosquitto option midge does not support yet)");
    /* TLS-PSK (issue 9): a psk_hint listener needs the global psk_file. */
    load_err(fx, "listener 1883\npsk_hint x\n", "1: listener 1883: psk_hint needs psk_file");
    /* TLS and WebSocket words (issue 9): files are checked when read, combinations at the end. */
    load_err(fx, "listener 1883\ncafile /nonexistent/ca.pem\n",
             "2: cafile: cannot read '/nonexistent/ca.pem': No such file or directory");
    load_err(fx, "listener 1883\ncapath /nonexistent/certs\n",
             "2: capath: cannot open directory '/nonexistent/certs': No such file or directory");
    load_err(fx, "listener 1883\nrequire_certificate true\n",
             "1: listener 1883: TLS options need certfile and keyfile (or psk_hint)");
    load_err(fx, "listener 1883\nwebsockets_path /mqtt\n",
             "1: listener 1883: websockets_path and websockets_origin need protocol websockets");
    load_err(fx, "listener_plugin /x.so\n",
             "1: listener_plugin must follow a listener line (listener PORT [ADDRESS])");
    load_err(fx, "bind_address 0.0.0.0\n",
             "1: bind_address is not supported; use 'listener PORT ADDRESS'");
    load_err(fx, "port 1883\n", "1: port is not supported; use 'listener PORT [ADDRESS]'");
}

struct bad_case {
    const char *line;
    const char *msg;
};

/* Each bad line is written as line 3 of a file; the message follows "FILE:3: ". */
static const struct bad_case bad_cases[] = {
    { "max_inflight_messages abc",
      "max_inflight_messages: expected a non-negative integer, got 'abc'" },
    { "max_inflight_messages -1",
      "max_inflight_messages: expected a non-negative integer, got '-1'" },
    { "max_inflight_messages 65536", "max_inflight_messages: 65536 is out of range (0..65535)" },
    { "max_inflight_messages", "max_inflight_messages: missing value" },
    { "max_inflight_messages 1 2", "max_inflight_messages: unexpected extra value '2'" },
    { "max_inflight_messages 10 # ten", "max_inflight_messages: unexpected extra value '#'" },
    { "max_inflight_messages 1.5",
      "max_inflight_messages: expected a non-negative integer, got '1.5'" },
    { "max_inflight_messages +5",
      "max_inflight_messages: expected a non-negative integer, got '+5'" },
    { "max_inflight_messages 0x10",
      "max_inflight_messages: expected a non-negative integer, got '0x10'" },
    { "max_queued_messages 99999999999999999999999",
      "max_queued_messages: 99999999999999999999999 is out of range (0..2147483647)" },
    { "max_queued_bytes -5", "max_queued_bytes: expected a non-negative integer, got '-5'" },
    { "max_keepalive 65536", "max_keepalive: 65536 is out of range (0..65535)" },
    { "max_qos 3", "max_qos: 3 is out of range (0..2)" },
    { "worker_threads 1025", "worker_threads: 1025 is out of range (0..1024)" },
    { "connect_timeout 0", "connect_timeout: 0 is out of range (1..86400)" },
    { "sys_interval x", "sys_interval: expected a non-negative integer, got 'x'" },
    { "max_packet_size 19", "max_packet_size: 19 is out of range (0 or 20..268435460)" },
    { "max_packet_size 268435461", "max_packet_size: 268435461 is out of range (0..268435460)" },
    { "message_size_limit 268435456",
      "message_size_limit: 268435456 is out of range (0..268435455)" },
    { "allow_anonymous yes", "allow_anonymous: expected true or false, got 'yes'" },
    { "allow_anonymous TRUE", "allow_anonymous: expected true or false, got 'TRUE'" },
    { "allow_anonymous 1", "allow_anonymous: expected true or false, got '1'" },
    { "allow_anonymous", "allow_anonymous: missing value" },
    { "set_tcp_nodelay true false", "set_tcp_nodelay: unexpected extra value 'false'" },
    { "retain_available on", "retain_available: expected true or false, got 'on'" },
    { "log_timestamp maybe", "log_timestamp: expected true or false, got 'maybe'" },
    { "per_listener_settings 0", "per_listener_settings: expected true or false, got '0'" },
    { "auto_id_prefix", "auto_id_prefix: missing value" },
    { "pid_file", "pid_file: missing value" },
    { "persistent_client_expiration 3x",
      "persistent_client_expiration: expected seconds or a number followed by h, d, w, m or y, "
      "got '3x'" },
    { "persistent_client_expiration d",
      "persistent_client_expiration: expected seconds or a number followed by h, d, w, m or y, "
      "got 'd'" },
    { "persistent_client_expiration -1d",
      "persistent_client_expiration: expected seconds or a number followed by h, d, w, m or y, "
      "got '-1d'" },
    { "persistent_client_expiration 1h30",
      "persistent_client_expiration: expected seconds or a number followed by h, d, w, m or y, "
      "got '1h30'" },
    { "persistent_client_expiration 99999999999999999y",
      "persistent_client_expiration: '99999999999999999y' is too large" },
    { "persistent_client_expiration", "persistent_client_expiration: missing value" },
    { "log_dest", "log_dest: missing value" },
    { "log_dest file", "log_dest: file needs a path" },
    { "log_dest topic",
      "log_dest: expected stderr, stdout, syslog, none or file PATH, got 'topic'" },
    { "log_dest stderr stdout", "log_dest: unexpected extra value 'stdout'" },
    { "log_type", "log_type: missing value" },
    { "log_type websockets",
      "log_type: expected error, warning, notice, information, debug, subscribe, unsubscribe, "
      "all or none, got 'websockets'" },
    { "listener", "listener: missing port" },
    { "listener abc", "listener: expected a non-negative integer, got 'abc'" },
    { "listener 65536", "listener: 65536 is out of range (0..65535)" },
    { "listener -1", "listener: expected a non-negative integer, got '-1'" },
    { "listener 1883 127.0.0.1 x", "listener: unexpected extra value 'x'" },
    { "include_dir", "include_dir: missing value" },
    { "include_dir /nonexistent/midge.d",
      "include_dir: cannot open '/nonexistent/midge.d': No such file or directory" },
};

/* Bad values inside a listener block, after "listener 1883" on line 2. */
static const struct bad_case bad_listener_cases[] = {
    { "max_connections -2", "max_connections: -2 is out of range (-1..2147483647)" },
    { "max_connections many", "max_connections: expected an integer, got 'many'" },
    { "max_connections -", "max_connections: expected an integer, got '-'" },
    { "listener_allow_anonymous 1",
      "listener_allow_anonymous: expected true or false, got '1'" },
    { "protocol http", "protocol: expected mqtt or websockets, got 'http'" },
    { "protocol", "protocol: missing value" },
    { "socket_domain ipv5", "socket_domain: expected ipv4 or ipv6, got 'ipv5'" },
    { "max_topic_alias 65536", "max_topic_alias: 65536 is out of range (0..65535)" },
    { "max_topic_alias -1", "max_topic_alias: expected a non-negative integer, got '-1'" },
    { "tls_version tlsv1.4", "tls_version: expected tlsv1.2 or tlsv1.3, got 'tlsv1.4'" },
    { "tls_version tlsv1", "tls_version: tlsv1 is not supported (insecure); use tlsv1.2 or tlsv1.3" },
    { "keyfile /nonexistent/k.pem",
      "keyfile: cannot read '/nonexistent/k.pem': No such file or directory" },
    { "certfile", "certfile: missing value" },
    { "websockets_path mqtt", "websockets_path: 'mqtt' must start with '/'" },
    { "websockets_origin", "websockets_origin: missing value" },
    { "require_certificate yes", "require_certificate: expected true or false, got 'yes'" },
};

static void
test_bad_values(void **state)
{
    struct fx *fx = *state;
    char text[512];
    char want[512];
    size_t i;

    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        snprintf(text, sizeof(text), "# midge\nmax_qos 2\n%s\nmax_qos 1\n", bad_cases[i].line);
        snprintf(want, sizeof(want), "3: %s", bad_cases[i].msg);
        load_err(fx, text, want);
    }
    for (i = 0; i < sizeof(bad_listener_cases) / sizeof(bad_listener_cases[0]); i++) {
        snprintf(text, sizeof(text), "\nlistener 1883\n%s\n", bad_listener_cases[i].line);
        snprintf(want, sizeof(want), "3: %s", bad_listener_cases[i].msg);
        load_err(fx, text, want);
    }
}

static void
test_duplicate_listener(void **state)
{
    struct fx *fx = *state;
    char want[1024];
    const struct config *cfg;

    /* The message names where the first listener was: the same file here. */
    cfg = config_load(write_conf(fx, "listener 1883 127.0.0.1\nlistener 1883\n"
                                     "listener 1883 127.0.0.1\n"),
                      fx->err, sizeof(fx->err));
    assert_null(cfg);
    snprintf(want, sizeof(want), "%s:3: listener 1883 127.0.0.1 duplicates the listener at %s:1",
             fx->path, fx->path);
    assert_string_equal(fx->err, want);

    cfg = config_load(write_conf(fx, "listener 1883\n\nlistener 1883\n"), fx->err,
                      sizeof(fx->err));
    assert_null(cfg);
    snprintf(want, sizeof(want), "%s:3: listener 1883 duplicates the listener at %s:1", fx->path,
             fx->path);
    assert_string_equal(fx->err, want);

    /* Port 0 means "any free port", so several are fine. */
    cfg = load_ok(fx, "listener 0 127.0.0.1\nlistener 0 127.0.0.1\n");
    assert_non_null(cfg->listeners->next);
}

static void
test_per_listener_settings(void **state)
{
    struct fx *fx = *state;

    load_err(fx, "listener 1883\nper_listener_settings true\n",
             "2: per_listener_settings true is not supported; write listener_allow_anonymous "
             "after a listener line, and listener_plugin for per-listener plugins");
    load_ok(fx, "per_listener_settings false\nlistener 1883\n");
}

struct duration_case {
    const char *value;
    long long seconds;
};

static void
test_persistent_client_expiration(void **state)
{
    static const struct duration_case cases[] = {
        { "0", 0 },
        { "3600", 3600 },
        { "1h", 3600 },
        { "36h", 36 * 3600 },
        { "1d", 86400 },
        { "14d", 14 * 86400 },
        { "1w", 7 * 86400 },
        { "1m", 30 * 86400 },  /* mosquitto: m is a month of 30 days */
        { "2y", 2 * 365 * 86400LL },
        { "0d", 0 },
    };
    struct fx *fx = *state;
    char text[128];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "persistent_client_expiration %s\n", cases[i].value);
        assert_true(load_ok(fx, text)->persistent_client_expiration == cases[i].seconds);
    }
}

static void
test_log_dest_and_type(void **state)
{
    struct fx *fx = *state;
    const struct config *cfg;

    /* The first log_dest replaces the default stderr; later ones add. */
    cfg = load_ok(fx, "log_dest stdout\n");
    assert_int_equal(cfg->log_dests, MLOG_DEST_STDOUT);
    cfg = load_ok(fx, "log_dest stdout\nlog_dest syslog\n");
    assert_int_equal(cfg->log_dests, MLOG_DEST_STDOUT | MLOG_DEST_SYSLOG);
    cfg = load_ok(fx, "log_dest stderr\nlog_dest file /var/log/midge/my log.txt  \n");
    assert_int_equal(cfg->log_dests, MLOG_DEST_STDERR | MLOG_DEST_FILE);
    assert_string_equal(cfg->log_file, "/var/log/midge/my log.txt");
    cfg = load_ok(fx, "log_dest file /tmp/x.log\n");
    assert_int_equal(cfg->log_dests, MLOG_DEST_FILE);
    cfg = load_ok(fx, "log_dest none\n");
    assert_int_equal(cfg->log_dests, 0);
    cfg = load_ok(fx, "log_dest syslog\nlog_dest none\nlog_dest stdout\n");
    assert_int_equal(cfg->log_dests, MLOG_DEST_STDOUT);
    load_err(fx, "log_dest file /a\nlog_dest file /b\n",
             "2: log_dest: only one log file is supported (already '/a')");

    /* The same rule for log_type. */
    cfg = load_ok(fx, "log_type error\n");
    assert_int_equal(cfg->log_types, MLOG_BIT(MLOG_ERROR));
    cfg = load_ok(fx, "log_type error\nlog_type subscribe\nlog_type unsubscribe\n");
    assert_int_equal(cfg->log_types, MLOG_BIT(MLOG_ERROR) | MLOG_BIT(MLOG_SUBSCRIBE) |
                                         MLOG_BIT(MLOG_UNSUBSCRIBE));
    cfg = load_ok(fx, "log_type warning notice\n");
    assert_int_equal(cfg->log_types, MLOG_BIT(MLOG_WARNING) | MLOG_BIT(MLOG_NOTICE));
    cfg = load_ok(fx, "log_type all\n");
    assert_int_equal(cfg->log_types, MLOG_DEFAULT_TYPES | MLOG_BIT(MLOG_DEBUG) |
                                         MLOG_BIT(MLOG_SUBSCRIBE) | MLOG_BIT(MLOG_UNSUBSCRIBE));
    cfg = load_ok(fx, "log_type none\n");
    assert_int_equal(cfg->log_types, 0);
    cfg = load_ok(fx, "log_type information\nlog_type none\nlog_type debug\n");
    assert_int_equal(cfg->log_types, MLOG_BIT(MLOG_DEBUG));
}

static void
test_include_dir(void **state)
{
    struct fx *fx = *state;
    char inc[128];
    char text[256];
    char want[512];
    const struct config *cfg;

    snprintf(inc, sizeof(inc), "%s/conf.d", fx->dir);
    assert_int_equal(mkdir(inc, 0700), 0);
    remember(fx, inc);
    /* Sorted by name: 20-b.conf comes after 10-a.conf and wins; other files are ignored. */
    write_named(fx, inc, "20-b.conf", "max_qos 0\nmax_connections 7\n");
    write_named(fx, inc, "10-a.conf", "# first\nmax_qos 1\nlistener 1884\n");
    write_named(fx, inc, "README", "this is not a config file\n");
    write_named(fx, inc, "x.conf.bak", "bogus\n");
    write_named(fx, inc, ".hidden.conf", "bogus\n");
    snprintf(text, sizeof(text), "listener 1883\ninclude_dir %s\nmax_keepalive 30\n", inc);
    cfg = load_ok(fx, text);
    assert_int_equal(cfg->max_qos, 0);
    assert_int_equal(cfg->max_keepalive, 30);
    assert_int_equal(cfg->listeners->port, 1883);
    assert_int_equal(cfg->listeners->next->port, 1884);
    /* The included listener is the current one when 20-b.conf is read. */
    assert_int_equal(cfg->listeners->next->max_connections, 7);
    snprintf(want, sizeof(want), "%s/10-a.conf", inc);
    assert_string_equal(cfg->listeners->next->file, want);
    assert_int_equal(cfg->listeners->next->line, 3);

    /* A bad line in an included file names that file and its line. */
    write_named(fx, inc, "30-c.conf", "\n# c\nmax_qos 1\nbogus_word 1\n");
    snprintf(text, sizeof(text), "listener 1883\ninclude_dir %s\n", inc);
    load_fail(fx, text);
    snprintf(want, sizeof(want), "%s/30-c.conf:4: unknown option 'bogus_word'", inc);
    assert_string_equal(fx->err, want);
}

static void
test_include_dir_nested(void **state)
{
    struct fx *fx = *state;
    char inc[128];
    char text[256];
    char want[512];

    snprintf(inc, sizeof(inc), "%s/nested.d", fx->dir);
    assert_int_equal(mkdir(inc, 0700), 0);
    remember(fx, inc);
    write_named(fx, inc, "a.conf", "include_dir /tmp\n");
    snprintf(text, sizeof(text), "include_dir %s\n", inc);
    load_fail(fx, text);
    snprintf(want, sizeof(want), "%s/a.conf:1: include_dir: not allowed in an included file", inc);
    assert_string_equal(fx->err, want);
}

static void
test_unreadable_file(void **state)
{
    struct fx *fx = *state;
    char path[128];
    char want[256];

    snprintf(path, sizeof(path), "%s/does-not-exist.conf", fx->dir);
    assert_null(config_load(path, fx->err, sizeof(fx->err)));
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    assert_string_equal(fx->err, want);
    /* A tiny buffer truncates but stays a string; NULL err is allowed. */
    assert_null(config_load(path, fx->err, 4));
    assert_int_equal(strlen(fx->err), 3);
    assert_null(config_load(path, NULL, 0));
}

static struct config *
load_copy(struct fx *fx, const char *text)
{
    struct config *cfg = config_load(write_conf(fx, text), fx->err, sizeof(fx->err));

    assert_non_null(cfg);
    return cfg;
}

static void
test_restart_needed(void **state)
{
    struct fx *fx = *state;
    struct config *a;
    struct config *b;
    char buf[256];

    a = load_copy(fx, "listener 1883\nlistener 8883 10.0.0.1\nworker_threads 2\n");
    /* Adding a listener and changing reloadable values needs no restart. */
    b = load_copy(fx, "listener 1883\nmax_connections 5\nlistener_allow_anonymous true\n"
                      "listener 8883 10.0.0.1\nlistener 9000\nworker_threads 2\nmax_qos 1\n"
                      "allow_anonymous true\nlog_dest stdout\n");
    config_restart_needed(a, b, buf, sizeof(buf));
    assert_string_equal(buf, "");
    config_free(b);
    /* Removed listener, changed listener, worker_threads, pid_file. */
    b = load_copy(fx, "listener 8883 10.0.0.1\nprotocol websockets\nworker_threads 3\n"
                      "pid_file /run/midge.pid\n");
    config_restart_needed(a, b, buf, sizeof(buf));
    assert_string_equal(buf, "listener 1883, listener 8883 10.0.0.1, worker_threads, pid_file");
    /* A short buffer truncates safely. */
    config_restart_needed(a, b, buf, 10);
    assert_true(strlen(buf) < 10);
    config_free(b);
    /* socket_domain is a socket property too. */
    b = load_copy(fx, "listener 1883\nsocket_domain ipv4\nlistener 8883 10.0.0.1\n"
                      "worker_threads 2\n");
    config_restart_needed(a, b, buf, sizeof(buf));
    assert_string_equal(buf, "listener 1883");
    config_free(b);
    config_free(a);

    /* The default listener against the same written explicitly. */
    a = config_default();
    b = load_copy(fx, "listener 1883 127.0.0.1\nallow_anonymous true\n");
    config_restart_needed(a, b, buf, sizeof(buf));
    assert_string_equal(buf, "");
    config_free(b);
    b = load_copy(fx, "listener 1883\n");
    config_restart_needed(a, b, buf, sizeof(buf));
    assert_string_equal(buf, "listener 1883 127.0.0.1");
    config_free(b);
    config_free(a);
}

static void
test_directive_names(void **state)
{
    size_t i;
    size_t j;

    assert_string_equal(config_directive_name(0), "listener");
    for (i = 0; config_directive_name(i) != NULL; i++) {
        assert_int_equal(config_directive_describe(i, NULL, NULL, NULL, NULL), 0);
        for (j = 0; j < i; j++) {
            assert_string_not_equal(config_directive_name(i), config_directive_name(j));
        }
    }
    assert_true(i >= 30);
    assert_int_equal(config_directive_describe(i, NULL, NULL, NULL, NULL), -1);
}

/* Reads a whole file into a NUL-terminated heap buffer, or NULL. */
static char *
slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf = NULL;
    long n;

    if (fp == NULL) {
        return NULL;
    }
    if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf != NULL) {
            buf[fread(buf, 1, (size_t)n, fp)] = '\0';
        }
    }
    fclose(fp);
    return buf;
}

/* Copies column `col` (0-based, between '|') of a table row into out, trimmed. */
static void
column(const char *row, int col, char *out, size_t len)
{
    const char *s = row + 1; /* skip the leading '|' */
    size_t n;
    int i;

    for (i = 0; i < col && s != NULL; i++) {
        s = strchr(s, '|');
        s = s != NULL ? s + 1 : NULL;
    }
    out[0] = '\0';
    if (s == NULL) {
        return;
    }
    while (*s == ' ') {
        s++;
    }
    n = strcspn(s, "|\n");
    while (n > 0 && s[n - 1] == ' ') {
        n--;
    }
    snprintf(out, len, "%.*s", (int)n, s);
}

/*
 * docs/configuration.md has a summary table with one row per directive:
 * "| `name` | global or listener | default | yes or no |". Every directive of
 * the table must have its row, with the same scope, default and SIGHUP
 * behaviour, and a section of its own ("### `name`").
 */
/*
 * Reads REL (e.g. "docs/configuration.md") from the source tree: $MIDGE_SRCDIR,
 * else "..", else ".". Returns the contents (caller frees) and the path used.
 */
static char *
slurp_src(const char *rel, char *path, size_t len)
{
    const char *srcdir = getenv("MIDGE_SRCDIR");
    const char *const dirs[] = { srcdir, "..", "." };
    char *text = NULL;
    size_t i;

    for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && text == NULL; i++) {
        if (dirs[i] != NULL) {
            snprintf(path, len, "%s/%s", dirs[i], rel);
            text = slurp(path);
        }
    }
    if (text == NULL) {
        print_error("%s not found: set MIDGE_SRCDIR to the source tree\n", rel);
    }
    return text;
}

static void
test_docs_cover_every_directive(void **state)
{
    char path[512];
    char *doc = slurp_src("docs/configuration.md", path, sizeof(path));
    size_t i;
    int failures = 0;

    assert_non_null(doc);
    for (i = 0; config_directive_name(i) != NULL; i++) {
        const char *name = config_directive_name(i);
        char key[128];
        char got[256];
        const char *row;
        const char *def;
        const char *help;
        int listener_scope;
        int reloadable;

        config_directive_describe(i, &listener_scope, &reloadable, &def, &help);
        if (help == NULL || help[0] == '\0') {
            print_error("'%s' has no help text in the table\n", name);
            failures++;
        }
        snprintf(key, sizeof(key), "\n### `%s`", name);
        if (strstr(doc, key) == NULL) {
            print_error("%s: no section '### `%s`'\n", path, name);
            failures++;
        }
        snprintf(key, sizeof(key), "\n| `%s` |", name);
        row = strstr(doc, key);
        if (row == NULL) {
            print_error("%s: no summary row for '%s'\n", path, name);
            failures++;
            continue;
        }
        row++;
        column(row, 1, got, sizeof(got));
        if (strcmp(got, listener_scope ? "listener" : "global") != 0) {
            print_error("%s: '%s' scope is '%s' in the docs, '%s' in the table\n", path, name,
                        got, listener_scope ? "listener" : "global");
            failures++;
        }
        column(row, 2, got, sizeof(got));
        if (strcmp(got, def) != 0) {
            print_error("%s: '%s' default is '%s' in the docs, '%s' in the table\n", path, name,
                        got, def);
            failures++;
        }
        column(row, 3, got, sizeof(got));
        if (strcmp(got, reloadable ? "yes" : "no") != 0) {
            print_error("%s: '%s' SIGHUP is '%s' in the docs, '%s' in the table\n", path, name,
                        got, reloadable ? "yes" : "no");
            failures++;
        }
    }
    free(doc);
    assert_int_equal(failures, 0);
}

/*
 * etc/midge.conf loads as it is (loopback listener, anonymous allowed), and
 * so does every commented-out example option once uncommented.
 */
static void
test_example_config(void **state)
{
    struct fx *fx = *state;
    char path[512];
    char *text = slurp_src("etc/midge.conf", path, sizeof(path));
    char *line;
    char *next;
    char *uncommented;
    size_t n = 0;
    const struct config *cfg;

    assert_non_null(text);
    cfg = load_ok(fx, text);
    assert_int_equal(cfg->listeners->port, 1883);
    assert_string_equal(cfg->listeners->bind_address, "127.0.0.1");
    assert_null(cfg->listeners->next);
    assert_int_equal(cfg->allow_anonymous, 1);

    uncommented = calloc(1, strlen(text) + 1);
    assert_non_null(uncommented);
    for (line = text; *line != '\0'; line = next) {
        size_t len = strcspn(line, "\n");
        size_t word = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz_0123456789");
        size_t i;
        int known = 0;

        next = line + len + (line[len] == '\n');
        for (i = 0; line[0] == '#' && word > 0 && config_directive_name(i) != NULL; i++) {
            const char *name = config_directive_name(i);

            if (strlen(name) == word && strncmp(line + 1, name, word) == 0 &&
                line[1 + word] == ' ' && strcmp(name, "include_dir") != 0) {
                known = 1;
            }
        }
        if (known) {
            line++;
            len--;
            n++;
        }
        strncat(uncommented, line, len);
        strcat(uncommented, "\n");
    }
    assert_true(n >= 25);
    cfg = load_ok(fx, uncommented);
    assert_non_null(cfg->listeners->next);
    free(uncommented);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_directive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_word_before_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_listener_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistent_client_expiration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_dest_and_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_dir_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_needed, setup, teardown),
        cmocka_unit_test(test_directive_names),
        cmocka_unit_test(test_docs_cover_every_directive),
        cmocka_unit_test_setup_teardown(test_example_config, setup, teardown),
    };

    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
