/*
 * cluster-redis's pure parts: topic filter matching (MQTT 4.7), the route
 * table's per-session counts (a filter is announced once, withdrawn with
 * its last session), remote routes, the wire frames and the duplicate
 * window.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../plugins/cluster-redis/dedupe.h"
#include "../../plugins/cluster-redis/routes.h"
#include "../../plugins/cluster-redis/wire.h"

static void
test_filter_matching(void **state)
{
    (void)state;
    assert_true(routes_filter_matches("a/b", "a/b"));
    assert_false(routes_filter_matches("a/b", "a/c"));
    assert_false(routes_filter_matches("a", "a/b"));
    assert_false(routes_filter_matches("a/b", "a"));
    assert_true(routes_filter_matches("a/+", "a/b"));
    assert_true(routes_filter_matches("a/+", "a/"));
    assert_false(routes_filter_matches("a/+", "a/b/c"));
    assert_true(routes_filter_matches("+/+", "/x"));
    assert_true(routes_filter_matches("a/#", "a/b/c"));
    assert_true(routes_filter_matches("a/#", "a")); /* [MQTT-4.7.1-2] */
    assert_true(routes_filter_matches("#", "x/y"));
    assert_true(routes_filter_matches("w/+/x/#", "w/1/x/deep/er"));
    assert_false(routes_filter_matches("w/+/x/#", "w/1/y"));
    /* Wildcards at the first level do not match $ topics [MQTT-4.7.2-1]. */
    assert_false(routes_filter_matches("#", "$SYS/x"));
    assert_false(routes_filter_matches("+/x", "$SYS/x"));
    assert_true(routes_filter_matches("$SYS/#", "$SYS/x"));
    /* Shared subscriptions match on the filter after $share/GROUP/. */
    assert_true(routes_filter_matches("$share/g/a/+", "a/b"));
    assert_false(routes_filter_matches("$share/g", "g"));
}

static int gone_count;

static void
gone(void *arg, const char *filter)
{
    (void)arg;
    (void)filter;
    gone_count++;
}

static void
test_local_counts(void **state)
{
    struct routes *r = routes_new();
    char **v;
    size_t n;

    (void)state;
    assert_int_equal(routes_local_add(r, "c1", "a/#"), 1);  /* first: announce */
    assert_int_equal(routes_local_add(r, "c1", "a/#"), 0);  /* resubscribe */
    assert_int_equal(routes_local_add(r, "c2", "a/#"), 0);  /* second session */
    assert_int_equal(routes_local_add(r, "c2", "b"), 1);
    assert_int_equal(routes_local_remove(r, "c1", "a/#"), 0); /* c2 still has it */
    assert_int_equal(routes_local_remove(r, "c1", "a/#"), 0); /* not subscribed any more */
    v = routes_local_snapshot(r, &n);
    assert_int_equal(n, 2);
    routes_list_free(v, n);
    gone_count = 0;
    routes_local_session_end(r, "c2", gone, NULL);
    assert_int_equal(gone_count, 2);
    v = routes_local_snapshot(r, &n);
    assert_int_equal(n, 0);
    routes_list_free(v, n);
    routes_free(r);
}

static void
test_remote_match(void **state)
{
    struct routes *r = routes_new();
    char x[] = "x/#";
    char y[] = "y";
    char *f2[] = {x, y};
    char **v;
    size_t n;

    (void)state;
    assert_int_equal(routes_remote_add(r, "n1", "a/+"), 0);
    assert_int_equal(routes_remote_set(r, "n2", f2, 2), 0);
    v = routes_match(r, "a/b", 0, &n);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], "n1");
    routes_list_free(v, n);
    v = routes_match(r, "zzz", 1, &n); /* retained: every node */
    assert_int_equal(n, 2);
    routes_list_free(v, n);
    v = routes_match(r, "zzz", 0, &n);
    assert_int_equal(n, 0);
    assert_null(v);
    routes_remote_remove(r, "n1", "a/+");
    v = routes_match(r, "a/b", 0, &n);
    assert_int_equal(n, 0);
    routes_list_free(v, n);
    char n1[] = "n1";
    char *alive[] = {n1};
    routes_remote_keep(r, alive, 1);
    assert_int_equal(routes_remote_nodes(r), 1);
    assert_int_equal(routes_remote_filters(r), 0);
    routes_free(r);
}

static void
test_shared_owner(void **state)
{
    struct routes *r = routes_new();
    char out[64];
    uint64_t h;
    int mine = 0;

    (void)state;
    assert_int_equal(routes_local_shared(r), 0);
    assert_int_equal(routes_local_add(r, "c1", "$share/g/jobs/#"), 1);
    assert_int_equal(routes_local_shared(r), 1);
    /* Only through the group: the group decides; with a plain filter too: it does not. */
    assert_int_equal(routes_client_shared(r, "c1", "jobs/1", out, sizeof(out)), 1);
    assert_string_equal(out, "$share/g/jobs/#");
    assert_int_equal(routes_client_shared(r, "c1", "other", out, sizeof(out)), 0);
    assert_int_equal(routes_local_add(r, "c1", "jobs/+"), 1);
    assert_int_equal(routes_client_shared(r, "c1", "jobs/1", out, sizeof(out)), 0);
    /* Alone in the group: every message is ours. With two other nodes: about a third. */
    assert_int_equal(routes_shared_owner(r, "n1", "$share/g/jobs/#", 12345), 1);
    assert_int_equal(routes_remote_add(r, "n2", "$share/g/jobs/#"), 0);
    assert_int_equal(routes_remote_add(r, "n3", "$share/g/jobs/#"), 0);
    for (h = 0; h < 300; h++) {
        mine += routes_shared_owner(r, "n1", "$share/g/jobs/#", h);
    }
    assert_int_equal(mine, 100);
    /* Sorted n1, n2, n3: hash 0 (mod 3) is n1's, 1 is n2's. */
    assert_int_equal(routes_shared_owner(r, "n1", "$share/g/jobs/#", 3), 1);
    assert_int_equal(routes_shared_owner(r, "n1", "$share/g/jobs/#", 4), 0);
    gone_count = 0;
    routes_local_session_end(r, "c1", gone, NULL);
    assert_int_equal(routes_local_shared(r), 0);
    routes_free(r);
}

static void
test_wire_bundle(void **state)
{
    size_t l1;
    size_t l2;
    /* MQTT 5 properties as api->message_properties gives them: content type "x". */
    static const char props[] = {0x03, 0x00, 0x01, 'x'};
    char *a = wire_encode("n1/b/1", "t/1", "hello", 5, 1, 0, NULL, 0, 0, &l1);
    char *b = wire_encode("n1/b/2", "t/2", NULL, 0, 2, 1, props, sizeof(props), 30, &l2);
    char *bundle = malloc(l1 + l2);
    size_t pos = 0;
    const char *blob;
    size_t bl;
    struct wire_msg m;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    memcpy(bundle, a, l1);
    memcpy(bundle + l1, b, l2);
    assert_int_equal(wire_next(bundle, l1 + l2, &pos, &blob, &bl), 1);
    assert_int_equal(wire_decode(blob, bl, &m), 0);
    assert_int_equal(m.qos, 1);
    assert_int_equal(m.retain, 0);
    assert_memory_equal(m.topic, "t/1", 3);
    assert_int_equal(m.payload_len, 5);
    assert_memory_equal(m.payload, "hello", 5);
    assert_null(m.props);
    assert_int_equal(m.expiry, 0);
    assert_int_equal(wire_next(bundle, l1 + l2, &pos, &blob, &bl), 1);
    assert_int_equal(wire_decode(blob, bl, &m), 0);
    assert_int_equal(m.qos, 2);
    assert_int_equal(m.retain, 1);
    assert_int_equal(m.payload_len, 0);
    assert_int_equal(m.props_len, sizeof(props));
    assert_memory_equal(m.props, props, sizeof(props));
    assert_int_equal(m.expiry, 30);
    assert_int_equal(wire_next(bundle, l1 + l2, &pos, &blob, &bl), 0);
    /* A cut frame is refused, never read past the end. */
    pos = 0;
    assert_int_equal(wire_next(bundle, l1 - 1, &pos, &blob, &bl), -1);
    assert_int_equal(wire_decode("\x01\x03\x00", 3, &m), -1);
    /* Version 1 frames (no properties, no expiry) are still read. */
    assert_int_equal(wire_decode("\x01\x01\x00\x01i\x00\x01tP", 9, &m), 0);
    assert_int_equal(m.payload_len, 1);
    assert_null(m.props);
    /* Version 2 with a properties length past the end is refused. */
    assert_int_equal(wire_decode("\x02\x01\x00\x01i\x00\x01t\x00\x00\x00\x09", 12, &m), -1);
    free(a);
    free(b);
    free(bundle);
}

static void
test_dedupe_window(void **state)
{
    struct dedupe *d = dedupe_new();
    char id[32];
    int i;

    (void)state;
    assert_int_equal(dedupe_seen(d, "a", 1), 0);
    assert_int_equal(dedupe_seen(d, "a", 1), 1);
    for (i = 0; i < DEDUPE_WINDOW; i++) {
        snprintf(id, sizeof(id), "x%d", i);
        assert_int_equal(dedupe_seen(d, id, strlen(id)), 0);
    }
    /* Still remembered one generation later; forgotten after two. */
    assert_int_equal(dedupe_seen(d, "x5", 2), 1);
    for (i = 0; i < 2 * DEDUPE_WINDOW; i++) {
        snprintf(id, sizeof(id), "y%d", i);
        dedupe_seen(d, id, strlen(id));
    }
    assert_int_equal(dedupe_seen(d, "a", 1), 0);
    dedupe_free(d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_matching), cmocka_unit_test(test_local_counts),
        cmocka_unit_test(test_remote_match),    cmocka_unit_test(test_wire_bundle),
        cmocka_unit_test(test_shared_owner),
        cmocka_unit_test(test_dedupe_window),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
