/*
 * The bridges file parser (plugins/bridge/config.c): mosquitto's bridge
 * lines mean the same here, and anything midge does not honour is an error
 * naming FILE:LINE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../plugins/bridge/config.h"

static struct bridge_conf *
parse_ok(const char *text)
{
    struct bridge_conf *c = NULL;
    char err[512] = "";

    if (bridge_conf_parse("b.conf", text, "host", &c, err, sizeof(err)) != 0) {
        fail_msg("unexpected error: %s", err);
    }
    assert_non_null(c);
    return c;
}

static void
test_mosquitto_block_defaults(void **state)
{
    struct bridge_conf *c = parse_ok("# a mosquitto bridge block\n"
                                     "connection cloud\n"
                                     "address broker.example.com\n"
                                     "topic sensors/# out\n");

    (void)state;
    assert_string_equal(c->name, "cloud");
    assert_int_equal(c->naddrs, 1);
    assert_string_equal(c->addrs[0].host, "broker.example.com");
    assert_int_equal(c->addrs[0].port, 1883);
    assert_int_equal(c->ntopics, 1);
    assert_int_equal(c->topics[0].dir, BRIDGE_OUT);
    assert_int_equal(c->topics[0].qos, 0);
    /* mosquitto's defaults */
    assert_string_equal(c->remote_clientid, "host.cloud");
    assert_string_equal(c->local_clientid, "local.host.cloud");
    assert_string_equal(c->notification_topic, "$SYS/broker/connection/host.cloud/state");
    assert_int_equal(c->version, 4);
    assert_int_equal(c->cleansession, 0);
    assert_int_equal(c->local_cleansession, 0);
    assert_int_equal(c->keepalive, 60);
    assert_int_equal(c->try_private, 1);
    assert_int_equal(c->notifications, 1);
    assert_int_equal(c->attempt_unsubscribe, 1);
    assert_int_equal(c->outgoing_retain, 1);
    assert_true(c->restart_base == 5 && c->restart_cap == 30);
    assert_null(c->next);
    bridge_conf_free(c);
}

static void
test_every_supported_line(void **state)
{
    struct bridge_conf *c = parse_ok(
        "connection a\n"
        "addresses h1:1884 [::1]:1885 10.0.0.1\n"
        "topic # both 2 local/ remote/\n"
        "topic \"\" in 1 l/exact r/exact\n"
        "remote_clientid rid\n"
        "remote_username u\n"
        "remote_password p\n"
        "local_clientid lid\n"
        "cleansession true\n"
        "local_cleansession false\n"
        "keepalive_interval 30\n"
        "bridge_protocol_version mqttv50\n"
        "try_private false\n"
        "notifications false\n"
        "notifications_local_only true\n"
        "notification_topic bridges/a/state\n"
        "restart_timeout 2 40\n"
        "round_robin true\n"
        "start_type once\n"
        "bridge_attempt_unsubscribe false\n"
        "bridge_outgoing_retain false\n"
        "bridge_max_packet_size 1000\n"
        "bridge_bind_address 127.0.0.1\n"
        "bridge_cafile /ca.pem\n"
        "bridge_certfile /c.pem\n"
        "bridge_keyfile /k.pem\n"
        "bridge_insecure true\n"
        "bridge_alpn mqtt\n"
        "bridge_tls_version tlsv1.3\n"
        "queue_max_messages 500\n"
        "queue_max_bytes 100000\n"
        "remote_profile aws-iot\n"
        "forward_bridged false\n"
        "connection b\n"
        "address 127.0.0.1:1\n"
        "topic x out\n");

    (void)state;
    assert_int_equal(c->naddrs, 3);
    assert_string_equal(c->addrs[0].host, "h1");
    assert_int_equal(c->addrs[0].port, 1884);
    assert_string_equal(c->addrs[1].host, "::1");
    assert_int_equal(c->addrs[1].port, 1885);
    assert_int_equal(c->addrs[2].port, 1883);
    assert_string_equal(c->topics[0].local_filter, "local/#");
    assert_string_equal(c->topics[0].remote_filter, "remote/#");
    assert_int_equal(c->topics[0].dir, BRIDGE_BOTH);
    assert_int_equal(c->topics[0].qos, 2);
    assert_string_equal(c->topics[1].local_filter, "l/exact");
    assert_string_equal(c->topics[1].remote_filter, "r/exact");
    assert_string_equal(c->remote_clientid, "rid");
    assert_string_equal(c->local_clientid, "lid");
    assert_string_equal(c->remote_username, "u");
    assert_string_equal(c->remote_password, "p");
    assert_int_equal(c->cleansession, 1);
    assert_int_equal(c->local_cleansession, 0);
    assert_int_equal(c->keepalive, 30);
    assert_int_equal(c->version, 5);
    assert_int_equal(c->try_private, 0);
    assert_int_equal(c->notifications, 0);
    assert_int_equal(c->notifications_local_only, 1);
    assert_string_equal(c->notification_topic, "bridges/a/state");
    assert_true(c->restart_base == 2 && c->restart_cap == 40);
    assert_int_equal(c->round_robin, 1);
    assert_int_equal(c->start_type, BRIDGE_START_ONCE);
    assert_int_equal(c->attempt_unsubscribe, 0);
    assert_int_equal(c->outgoing_retain, 0);
    assert_int_equal(c->max_packet_size, 1000);
    assert_string_equal(c->bind_address, "127.0.0.1");
    assert_string_equal(c->alpn, "mqtt");
    assert_int_equal(c->insecure, 1);
    assert_int_equal(c->queue_max_messages, 500);
    assert_int_equal(c->queue_max_bytes, 100000);
    assert_int_equal(c->profile, BRIDGE_PROFILE_AWS);
    assert_int_equal(c->forward_bridged, 0);
    assert_non_null(c->next);
    assert_string_equal(c->next->name, "b");
    bridge_conf_free(c);
}

static void
test_restart_timeout_constant(void **state)
{
    struct bridge_conf *c = parse_ok("connection a\naddress h\ntopic t\nrestart_timeout 20\n");

    (void)state;
    assert_true(c->restart_base == 20 && c->restart_cap == 20);
    bridge_conf_free(c);
}

static void
test_lazy_start(void **state)
{
    struct bridge_conf *c = parse_ok("connection a\naddress h\ntopic t\nstart_type lazy\n"
                                     "idle_timeout 5\nthreshold 3\n"
                                     "connection b\naddress h\ntopic t\nstart_type lazy\n");

    (void)state;
    assert_int_equal(c->start_type, BRIDGE_START_LAZY);
    assert_int_equal(c->idle_timeout, 5);
    assert_int_equal(c->threshold, 3);
    assert_int_equal(c->next->idle_timeout, 60); /* mosquitto's defaults */
    assert_int_equal(c->next->threshold, 10);
    bridge_conf_free(c);
}

static void
test_psk(void **state)
{
    struct bridge_conf *c = parse_ok("connection a\naddress h:8884\ntopic t\n"
                                     "bridge_identity edge\nbridge_psk 00A1ff\n");

    (void)state;
    assert_string_equal(c->psk_identity, "edge");
    assert_int_equal(c->psk_len, 3);
    assert_memory_equal(c->psk, "\x00\xa1\xff", 3);
    bridge_conf_free(c);
}

/* Old mosquitto spellings still accepted. */
static void
test_old_aliases(void **state)
{
    struct bridge_conf *c = parse_ok("connection a\naddress h\ntopic t\nclientid c\nusername u\n"
                                     "password p\n");

    (void)state;
    assert_string_equal(c->remote_clientid, "c");
    assert_string_equal(c->remote_username, "u");
    assert_string_equal(c->remote_password, "p");
    bridge_conf_free(c);
}

static const struct {
    const char *text;
    const char *err;
} bad[] = {
    {"", "b.conf:1: no connection defined"},
    {"address h\n", "b.conf:1: address before any connection line"},
    {"listener 1883\n", "b.conf:1: listener belongs in the broker's configuration, not in a "
                        "bridges file"},
    {"connection a\naddress h\ntopic t\nfoo bar\n", "b.conf:4: unknown bridge option \"foo\""},
    {"connection a\naddress h\n", "b.conf:1: connection a has no topic line"},
    {"connection a\ntopic t\n", "b.conf:1: connection a has no address line"},
    {"connection a\naddress h\ntopic t\nconnection a\n",
     "b.conf:4: duplicate connection name \"a\" (first at line 1)"},
    {"connection a\naddress h\ntopic t sideways\n",
     "b.conf:3: topic direction must be in, out or both, not \"sideways\""},
    {"connection a\naddress h\ntopic t out 3\n",
     "b.conf:3: topic QoS must be a whole number from 0 to 2, not \"3\""},
    {"connection a\naddress h\ntopic t out 1 onlyone\n",
     "b.conf:3: topic takes PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]] (both "
     "prefixes or none)"},
    {"connection a\naddress h\ntopic \"\" out 1 l/ \"\"\n",
     "b.conf:3: an empty topic pattern (\"\") needs both a local and a remote prefix"},
    {"connection a\naddress h\ntopic a/#/b out\n", "b.conf:3: invalid topic filter \"a/#/b\""},
    {"connection a\naddress h\ntopic t out 0 l/+/ r/\n",
     "b.conf:3: topic prefixes cannot contain wildcards (+ or #)"},
    {"connection a\naddress h:0\n", "b.conf:2: port must be a whole number from 1 to 65535, not "
                                    "\"0\""},
    {"connection a\naddress ::1:1883\n",
     "b.conf:2: IPv6 address \"::1:1883\" must be written [ADDRESS]:PORT"},
    {"connection a\naddress h\naddress g\n", "b.conf:3: address given twice for connection a"},
    {"connection a\naddress h\ntopic t\ncleansession yes\n",
     "b.conf:4: cleansession must be true or false, not \"yes\""},
    {"connection a\naddress h\ntopic t\nkeepalive_interval 2\n",
     "b.conf:4: keepalive_interval must be a whole number from 5 to 65535, not \"2\""},
    {"connection a\naddress h\ntopic t\nbridge_protocol_version mqttv6\n",
     "b.conf:4: bridge_protocol_version must be mqttv31, mqttv311 or mqttv50, not \"mqttv6\""},
    {"connection a\naddress h\ntopic t\nrestart_timeout 10 5\n",
     "b.conf:4: restart_timeout cap 5 is below its base 10"},
    {"connection a\naddress h\ntopic t\nstart_type sometimes\n",
     "b.conf:4: start_type must be automatic, lazy or once, not \"sometimes\""},
    {"connection a\naddress h\ntopic t\nstart_type lazy\nthreshold 0\n",
     "b.conf:5: threshold must be a whole number from 1 to 65535, not \"0\""},
    {"connection a\naddress h\ntopic t\nlocal_username u\n",
     "b.conf:4: local_username is not supported: the local side of a midge bridge is an internal "
     "session with no login (ACL on bridged traffic: docs/bridge.md)"},
    {"connection a\naddress h\ntopic t\nbridge_psk 00ff\n",
     "b.conf:1: connection a: bridge_identity and bridge_psk go together"},
    {"connection a\naddress h\ntopic t\nbridge_psk 0g\n",
     "b.conf:4: bridge_psk must be an even number of hex digits (at most 512)"},
    {"connection a\naddress h\ntopic t\nbridge_identity i\nbridge_psk 00ff\nbridge_cafile c\n",
     "b.conf:1: connection a: bridge_psk cannot be combined with certificates"},
    {"connection a\naddress h\ntopic t\nremote_password p\n",
     "b.conf:1: connection a: remote_password needs remote_username"},
    {"connection a\naddress h\ntopic t\nbridge_certfile c\n",
     "b.conf:1: connection a: bridge_certfile and bridge_keyfile go together"},
    {"connection a\naddress h\ntopic t\nbridge_alpn mqtt\n",
     "b.conf:1: connection a: TLS options need bridge_cafile or bridge_capath"},
    {"connection a\naddress h\ntopic t\nbridge_tls_version tlsv1\n",
     "b.conf:4: bridge_tls_version must be tlsv1.2 or tlsv1.3, not \"tlsv1\" (older versions are "
     "refused by OpenSSL 3's default security level)"},
    {"connection a\naddress h\ntopic t\nremote_clientid\n", "b.conf:4: remote_clientid needs a "
                                                            "value"},
    {"connection a\naddress h\ntopic t\nremote_clientid a b\n",
     "b.conf:4: remote_clientid takes one value (write \"\" for an empty one)"},
    {"connection a\naddress h\ntopic t\nnotification_topic a/+\n",
     "b.conf:4: notification_topic must be a topic name without wildcards"},
    {"connection a\naddress h\ntopic t\nqueue_max_messages 0\n",
     "b.conf:4: queue_max_messages must be a whole number from 1 to 65535, not \"0\""},
    {"connection a\naddress h\ntopic t\nremote_profile gcp\n",
     "b.conf:4: remote_profile must be generic, aws-iot or azure-iot, not \"gcp\""},
    {"connection a\naddress h\ntopic t\nlocal_clientid x\n"
     "connection b\naddress h\ntopic t\nlocal_clientid x\n",
     "b.conf:5: connection b uses local_clientid \"x\" of connection a (line 1)"},
    {"connection a\naddress h\ntopic t\n\x01\n", "b.conf:4: control character in line"},
};

static void
test_errors_name_file_and_line(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct bridge_conf *c = (struct bridge_conf *)1;
        char err[512] = "";
        int rc = bridge_conf_parse("b.conf", bad[i].text, "host", &c, err, sizeof(err));
        if (rc != -1 || c != NULL || strcmp(err, bad[i].err) != 0) {
            fail_msg("case %zu: rc %d\n  got:  %s\n  want: %s", i, rc, err, bad[i].err);
        }
    }
}

static void
test_load_missing_file(void **state)
{
    struct bridge_conf *c = NULL;
    char err[512];

    (void)state;
    assert_int_equal(bridge_conf_load("/nonexistent/bridges.conf", "h", &c, err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/bridges.conf: cannot open: No such file or directory");
    assert_null(c);
}

static void
test_load_file(void **state)
{
    char path[] = "/tmp/test_bridge_config_XXXXXX";
    int fd = mkstemp(path);
    const char *text = "connection f\naddress h\ntopic t\nbogus 1\n";
    struct bridge_conf *c = NULL;
    char err[512];
    char want[600];

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    assert_int_equal(bridge_conf_load(path, "h", &c, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:4: unknown bridge option \"bogus\"", path);
    assert_string_equal(err, want);
    unlink(path);
}

static void
test_same(void **state)
{
    const char *base = "connection a\naddress h\ntopic t out 1\n";
    struct bridge_conf *a = parse_ok(base);
    struct bridge_conf *b = parse_ok(base);
    struct bridge_conf *c = parse_ok("connection a\naddress h\ntopic t out 2\n");
    struct bridge_conf *d = parse_ok("connection a\naddress h:1884\ntopic t out 1\n");

    (void)state;
    assert_true(bridge_conf_same(a, b));
    assert_false(bridge_conf_same(a, c));
    assert_false(bridge_conf_same(a, d));
    bridge_conf_free(a);
    bridge_conf_free(b);
    bridge_conf_free(c);
    bridge_conf_free(d);
}

static void
test_topic_match(void **state)
{
    (void)state;
    assert_true(bridge_topic_match("a/#", "a/b/c"));
    assert_true(bridge_topic_match("a/#", "a")); /* [MQTT-4.7.1-2] */
    assert_true(bridge_topic_match("a/+/c", "a/b/c"));
    assert_true(bridge_topic_match("+", "a"));
    assert_true(bridge_topic_match("a/+", "a/"));
    assert_true(bridge_topic_match("#", "a/b"));
    assert_true(bridge_topic_match("a/b", "a/b"));
    assert_false(bridge_topic_match("a/b", "a/bc"));
    assert_false(bridge_topic_match("a/+", "a/b/c"));
    assert_false(bridge_topic_match("a/b/c", "a/b"));
    assert_false(bridge_topic_match("#", "$SYS/x")); /* [MQTT-4.7.2-1] */
    assert_false(bridge_topic_match("+/x", "$SYS/x"));
    assert_true(bridge_topic_match("$SYS/#", "$SYS/x"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mosquitto_block_defaults),
        cmocka_unit_test(test_every_supported_line),
        cmocka_unit_test(test_restart_timeout_constant),
        cmocka_unit_test(test_old_aliases),
        cmocka_unit_test(test_lazy_start),
        cmocka_unit_test(test_psk),
        cmocka_unit_test(test_errors_name_file_and_line),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_topic_match),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
