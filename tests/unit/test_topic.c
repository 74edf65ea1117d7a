/*
 * Unit tests for server/topic.c: validity of topic names and filters,
 * matching, and shared-subscription splitting. The cases are tables; each
 * spec example cites its statement or section. "v5" is MQTT 5.0, "v3" is
 * MQTT 3.1.1, which numbers the wildcard statements one higher
 * (v3 [MQTT-4.7.1-2] is v5 [MQTT-4.7.1-1], v3 [MQTT-4.7.1-3] is v5 [MQTT-4.7.1-2]).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../server/topic.h"

struct match_case {
    const char *filter;
    const char *topic;
    int expected;
    const char *ref;
};

static const struct match_case match_cases[] = {
    /* v5 4.7.1.2 / v3 4.7.1.2, multi-level wildcard examples. */
    { "sport/tennis/player1/#", "sport/tennis/player1", 1, "v5 4.7.1.2: # matches the parent" },
    { "sport/tennis/player1/#", "sport/tennis/player1/ranking", 1, "v5 4.7.1.2" },
    { "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", 1, "v5 4.7.1.2" },
    { "sport/#", "sport", 1, "v5 4.7.1.2: 'sport/#' also matches the singular 'sport'" },
    { "#", "sport", 1, "v5 4.7.1.2: '#' receives every message" },
    { "#", "sport/tennis/player1", 1, "v5 4.7.1.2" },
    { "#", "/", 1, "v5 4.7.1.2" },
    { "sport/tennis/#", "sport/tennis", 1, "v5 4.7.1.2" },
    { "sport/tennis/#", "sport/tennis/player1/ranking", 1, "v5 4.7.1.2" },
    { "sport/tennis/#", "sport/tennisX", 0, "v5 4.7.1.2: levels compare whole" },
    { "sport/tennis/#", "sport", 0, "v5 4.7.1.2: # matches the parent, not the grandparent" },

    /* v5 4.7.1.3 / v3 4.7.1.3, single-level wildcard examples. */
    { "sport/tennis/+", "sport/tennis/player1", 1, "v5 4.7.1.3" },
    { "sport/tennis/+", "sport/tennis/player2", 1, "v5 4.7.1.3" },
    { "sport/tennis/+", "sport/tennis/player1/ranking", 0, "v5 4.7.1.3: one level only" },
    { "sport/+", "sport", 0, "v5 4.7.1.3: 'sport/+' does not match 'sport'" },
    { "sport/+", "sport/", 1, "v5 4.7.1.3: 'sport/+' matches 'sport/'" },
    { "+/+", "/finance", 1, "v5 4.7.1.3: '/finance' matches '+/+'" },
    { "/+", "/finance", 1, "v5 4.7.1.3: '/finance' matches '/+'" },
    { "+", "/finance", 0, "v5 4.7.1.3: '/finance' does not match '+'" },
    { "sport/+/player1", "sport/tennis/player1", 1, "v5 4.7.1.3" },
    { "sport/+/player1", "sport/tennis/player2", 0, "v5 4.7.1.3" },
    { "+/tennis/#", "sport/tennis/player1", 1, "v5 4.7.1.3" },
    { "+/tennis/#", "sport/tennis", 1, "v5 4.7.1.3 with 4.7.1.2" },
    { "+", "sport", 1, "v5 4.7.1.3" },
    { "a/+/c", "a//c", 1, "[MQTT-4.7.1-2] '+' matches an empty level" },
    { "a/+/c", "a/b/c", 1, "[MQTT-4.7.1-2]" },
    { "a/+/c", "a/b/d", 0, "[MQTT-4.7.1-2]" },
    { "+/+", "/", 1, "two empty levels" },
    { "+", "", 0, "empty topics never match (invalid)" },

    /* v5 4.7.2 / v3 4.7.2, topics beginning with $. */
    { "#", "$SYS/broker/uptime", 0, "[MQTT-4.7.2-1]: '#' does not see $ topics" },
    { "+/monitor/Clients", "$SYS/monitor/Clients", 0, "[MQTT-4.7.2-1]" },
    { "$SYS/#", "$SYS/monitor/Clients", 1, "v5 4.7.2" },
    { "$SYS/monitor/+", "$SYS/monitor/Clients", 1, "v5 4.7.2" },
    { "+", "$SYS", 0, "[MQTT-4.7.2-1]" },
    { "+/#", "$foo/bar", 0, "[MQTT-4.7.2-1]" },
    { "$SYS", "$SYS", 1, "$ topics match literal filters" },
    { "a/#", "a/$SYS", 1, "'$' matters only as the first character" },
    { "a/+", "a/$b", 1, "'$' matters only as the first character" },

    /* v5 4.7.3 / v3 4.7.3, topic semantic and usage. */
    { "ACCOUNTS", "Accounts", 0, "v5 4.7.3: case sensitive" },
    { "Accounts", "Accounts", 1, "v5 4.7.3" },
    { "Accounts payable", "Accounts payable", 1, "v5 4.7.3: spaces allowed" },
    { "/finance", "finance", 0, "v5 4.7.3: a leading '/' makes a distinct topic" },
    { "finance", "/finance", 0, "v5 4.7.3" },
    { "/", "/", 1, "v5 4.7.3: '/' alone is valid" },
    { "finance/", "finance", 0, "a trailing '/' makes a distinct topic" },
    { "finance", "finance/", 0, "a trailing '/' makes a distinct topic" },
    { "/#", "/", 1, "" },
    { "/#", "/a/b", 1, "" },
    { "/#", "a", 0, "" },

    /* Length edge cases: prefixes must not match. */
    { "a/b", "a/bc", 0, "" },
    { "a/bc", "a/b", 0, "" },
    { "a/b/c", "a/b", 0, "" },
    { "a/b", "a/b/c", 0, "" },
    { "a/+/+", "a/b", 0, "" },
    { "a/+/#", "a/b", 1, "" },
};

struct valid_case {
    const char *s;
    int expected;
    const char *ref;
};

static const struct valid_case name_cases[] = {
    { "sport/tennis/player1", 1, "" },
    { "/", 1, "v5 4.7.3: '/' alone is a valid name" },
    { "/finance", 1, "v5 4.7.3" },
    { "finance/", 1, "" },
    { "a//b", 1, "empty levels are allowed" },
    { "Accounts payable", 1, "v5 4.7.3: spaces" },
    { "$SYS/broker", 1, "clients may not publish $SYS, but the name is valid" },
    { "", 0, "[MQTT-4.7.3-1] at least one character" },
    { "sport/+", 0, "[MQTT-3.3.2-2] no wildcards in names" },
    { "sport/#", 0, "[MQTT-3.3.2-2]" },
    { "+", 0, "[MQTT-3.3.2-2]" },
    { "a+b", 0, "[MQTT-3.3.2-2]" },
    { "a#", 0, "[MQTT-3.3.2-2]" },
};

static const struct valid_case filter_cases[] = {
    /* v5 4.7.1.2 [MQTT-4.7.1-1] (v3 [MQTT-4.7.1-2]) */
    { "sport/tennis/#", 1, "v5 4.7.1.2" },
    { "#", 1, "v5 4.7.1.2" },
    { "sport/tennis#", 0, "[MQTT-4.7.1-1] '#' must follow a separator" },
    { "sport/tennis/#/ranking", 0, "[MQTT-4.7.1-1] '#' must be last" },
    { "#/", 0, "[MQTT-4.7.1-1]" },
    { "##", 0, "[MQTT-4.7.1-1]" },
    { "/#", 1, "" },
    /* v5 4.7.1.3 [MQTT-4.7.1-2] (v3 [MQTT-4.7.1-3]) */
    { "+", 1, "v5 4.7.1.3" },
    { "+/tennis/#", 1, "v5 4.7.1.3" },
    { "sport+", 0, "[MQTT-4.7.1-2] '+' must occupy a whole level" },
    { "sport/+/player1", 1, "v5 4.7.1.3" },
    { "+/+", 1, "" },
    { "/+", 1, "" },
    { "+/", 1, "" },
    { "a/+b", 0, "[MQTT-4.7.1-2]" },
    { "a/b+/c", 0, "[MQTT-4.7.1-2]" },
    { "++", 0, "[MQTT-4.7.1-2]" },
    { "+#", 0, "" },
    /* v5 4.7.3 */
    { "", 0, "[MQTT-4.7.3-1] at least one character" },
    { "/", 1, "v5 4.7.3" },
    { "//", 1, "" },
    { "Accounts payable", 1, "v5 4.7.3" },
    { "$SYS/#", 1, "v5 4.7.2" },
    /* Shared subscriptions, v5 4.8.2 */
    { "$share/group/sport/#", 1, "v5 4.8.2" },
    { "$share/consumer1/sport/tennis/+", 1, "v5 4.8.2 example" },
    { "$share/consumer2/sport/tennis/+", 1, "v5 4.8.2 example" },
    { "$share/g/+", 1, "" },
    { "$share/g/#", 1, "" },
    { "$share/g//", 1, "the inner filter '/' is valid" },
    { "$share//a", 0, "[MQTT-4.8.2-1] ShareName at least one character" },
    { "$share/g", 0, "[MQTT-4.8.2-2] ShareName followed by '/'" },
    { "$share/g/", 0, "[MQTT-4.8.2-2] '/' followed by a Topic Filter" },
    { "$share/", 0, "[MQTT-4.8.2-1]" },
    { "$share/g+/a", 0, "[MQTT-4.8.2-2] no '+' in ShareName" },
    { "$share/g#/a", 0, "[MQTT-4.8.2-2] no '#' in ShareName" },
    { "$share/+/a", 0, "[MQTT-4.8.2-2]" },
    { "$share/#", 0, "[MQTT-4.8.2-2]" },
    { "$share/g/a#", 0, "inner filter invalid" },
    { "$share/g/a/#/b", 0, "inner filter invalid" },
    { "$share", 1, "not a shared subscription: an ordinary filter" },
    { "$sharex/g/a", 1, "not a shared subscription: an ordinary filter" },
};

struct share_case {
    const char *f;
    int rc;
    const char *group;
    const char *filter;
};

static const struct share_case share_cases[] = {
    { "$share/group/sport/#", 1, "group", "sport/#" },
    { "$share/consumer1/sport/tennis/+", 1, "consumer1", "sport/tennis/+" },
    { "$share/g/a", 1, "g", "a" },
    { "$share/g//", 1, "g", "/" },
    { "$share/g/$share/h/x", 1, "g", "$share/h/x" },
    { "sport/#", 0, NULL, NULL },
    { "$share", 0, NULL, NULL },
    { "$sharex/g/a", 0, NULL, NULL },
    { "$SHARE/g/a", 0, NULL, NULL },
    { "$share/", -1, NULL, NULL },
    { "$share/g", -1, NULL, NULL },
    { "$share/g/", -1, NULL, NULL },
    { "$share//a", -1, NULL, NULL },
    { "$share/g+/a", -1, NULL, NULL },
    { "$share/g#/a", -1, NULL, NULL },
    { "$share/g/a+", -1, NULL, NULL },
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void
test_matches(void **state)
{
    size_t i;
    int failures = 0;

    for (i = 0; i < N(match_cases); i++) {
        const struct match_case *c = &match_cases[i];
        int got = topic_matches(c->filter, strlen(c->filter), c->topic, strlen(c->topic));

        if (got != c->expected) {
            print_error("match '%s' vs '%s': got %d, want %d (%s)\n", c->filter, c->topic, got,
                        c->expected, c->ref);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* Every filter used in the match table must itself be valid (a bad row proves nothing). */
static void
test_match_table_filters_valid(void **state)
{
    size_t i;

    for (i = 0; i < N(match_cases); i++) {
        if (strlen(match_cases[i].filter) > 0) {
            assert_true(topic_filter_valid(match_cases[i].filter, strlen(match_cases[i].filter)));
        }
    }
}

static void
test_name_valid(void **state)
{
    size_t i;
    int failures = 0;

    for (i = 0; i < N(name_cases); i++) {
        const struct valid_case *c = &name_cases[i];
        int got = topic_name_valid(c->s, strlen(c->s));

        if (got != c->expected) {
            print_error("name '%s': got %d, want %d (%s)\n", c->s, got, c->expected, c->ref);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void
test_filter_valid(void **state)
{
    size_t i;
    int failures = 0;

    for (i = 0; i < N(filter_cases); i++) {
        const struct valid_case *c = &filter_cases[i];
        int got = topic_filter_valid(c->s, strlen(c->s));

        if (got != c->expected) {
            print_error("filter '%s': got %d, want %d (%s)\n", c->s, got, c->expected, c->ref);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* [MQTT-4.7.3-2]: no U+0000 in names or filters; lengths, not NULs, bound the views. */
static void
test_nul_and_lengths(void **state)
{
    static const char with_nul[] = "a\0b";
    static const char buf[] = "sport/tennis";

    assert_false(topic_name_valid(with_nul, 3));
    assert_false(topic_filter_valid(with_nul, 3));
    assert_false(topic_filter_valid("$share/g\0/a", 11));
    /* A view shorter than the string: "sport" */
    assert_true(topic_name_valid(buf, 5));
    assert_true(topic_matches("sport", 5, buf, 5));
    assert_false(topic_matches("sport", 5, buf, 12));
    assert_true(topic_matches("sport/#", 7, buf, 5));
    assert_true(topic_matches("sport/+", 7, buf, 12));
    assert_true(topic_matches("sport/+", 7, buf, 9)); /* "sport/ten" */
    assert_true(topic_matches("sport/ten", 9, buf, 9));
    /* [MQTT-4.7.3-3]: long names are fine here; the codec enforces 65535. */
    {
        static char big[70000];

        memset(big, 'a', sizeof(big));
        big[1000] = '/';
        assert_true(topic_name_valid(big, sizeof(big)));
        assert_true(topic_matches("#", 1, big, sizeof(big)));
        assert_true(topic_matches(big, sizeof(big), big, sizeof(big)));
    }
}

static void
test_share_split(void **state)
{
    size_t i;

    for (i = 0; i < N(share_cases); i++) {
        const struct share_case *c = &share_cases[i];
        const char *g = (const char *)1;
        const char *f = (const char *)1;
        size_t glen = 99;
        size_t flen = 99;
        int rc = topic_share_split(c->f, strlen(c->f), &g, &glen, &f, &flen);

        if (rc != c->rc) {
            print_error("share '%s': got %d, want %d\n", c->f, rc, c->rc);
        }
        assert_int_equal(rc, c->rc);
        if (rc == 1) {
            assert_int_equal(glen, strlen(c->group));
            assert_memory_equal(g, c->group, glen);
            assert_int_equal(flen, strlen(c->filter));
            assert_memory_equal(f, c->filter, flen);
            /* The views point into the argument. */
            assert_ptr_equal(g, c->f + 7);
        } else if (rc == 0) {
            /* Not shared: the whole argument is the filter. */
            assert_null(g);
            assert_int_equal(glen, 0);
            assert_ptr_equal(f, c->f);
            assert_int_equal(flen, strlen(c->f));
        } else {
            assert_null(g);
            assert_null(f);
            assert_int_equal(glen, 0);
            assert_int_equal(flen, 0);
        }
        /* Consistent with topic_filter_valid(): only malformed shares are invalid. */
        if (rc < 0) {
            assert_false(topic_filter_valid(c->f, strlen(c->f)));
        }
    }
    /* Out-parameters are optional. */
    assert_int_equal(topic_share_split("$share/g/a", 10, NULL, NULL, NULL, NULL), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches),
        cmocka_unit_test(test_match_table_filters_valid),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_filter_valid),
        cmocka_unit_test(test_nul_and_lengths),
        cmocka_unit_test(test_share_split),
    };

    return cmocka_run_group_tests_name("topic", tests, NULL, NULL);
}
