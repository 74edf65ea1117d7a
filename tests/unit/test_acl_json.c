/*
 * Unit tests for plugins/acl-json: every row of the tables in
 * test_acl_json_cases.c is one cmocka test (a question and its answer with
 * the deciding rule, or a malformed file and its exact error), followed by
 * a few hand-written tests of the evaluator and the plugin glue against the
 * fake broker (test_acl_json_plugin.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acl.h"
#include "test_acl_json.h"

static struct acl_ruleset *files[F_COUNT];

static int
load_files(void **state)
{
    char err[1024];
    int i;

    (void)state;
    for (i = 0; i < F_COUNT; i++) {
        files[i] = acl_load_string(acl_test_files[i], "t.json", err, sizeof(err));
        if (files[i] == NULL) {
            fprintf(stderr, "test file %d: %s\n", i, err);
            return -1;
        }
    }
    return 0;
}

static int
free_files(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < F_COUNT; i++) {
        acl_ruleset_free(files[i]);
        files[i] = NULL;
    }
    return 0;
}

/* One row of acl_cases: the answer and the rule that gave it. */
static void
decision_case(void **state)
{
    const struct acl_case *c = *state;
    struct acl_decision d;
    char place[256];
    int allow = acl_check(files[c->file], c->client, c->user, c->action, c->topic, &d);

    acl_decision_place(&d, c->action, place, sizeof(place));
    if (allow != c->allow || strcmp(place, c->place) != 0) {
        print_error("%s: client=%s user=%s %s %s: got %s %s, want %s %s\n", c->what, c->client,
                    c->user ? c->user : "(none)", acl_action_name(c->action), c->topic,
                    allow ? "allow" : "deny", place, c->allow ? "allow" : "deny", c->place);
    }
    assert_int_equal(allow, c->allow);
    assert_string_equal(place, c->place);
    assert_int_equal(d.allow, allow);
    if (d.rule != NULL) {
        assert_ptr_equal(d.rule, &d.entry->rules[d.index]);
    }
}

/* One row of acl_bad_cases: loading fails with exactly this message. */
static void
bad_file_case(void **state)
{
    const struct acl_bad_case *c = *state;
    char err[1024] = "";
    struct acl_ruleset *rs = acl_load_string(c->json, "t.json", err, sizeof(err));

    if (rs != NULL || strcmp(err, c->error) != 0) {
        print_error("%s:\n  got  %s\n  want %s\n", c->what, rs ? "(loaded)" : err, c->error);
    }
    assert_null(rs);
    assert_string_equal(err, c->error);
}

/* The file names the errors carry are the path given, and a missing file says so. */
static void
missing_file(void **state)
{
    char err[1024] = "";

    (void)state;
    assert_null(acl_load_file("/nonexistent/acl.json", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/acl.json: unable to open"));
}

/* The shipped example (etc/acl.json) loads and says what the issue says. */
static void
example_file(void **state)
{
    char path[4096];
    char err[1024] = "";
    const char *src = getenv("MIDGE_SRCDIR");
    struct acl_ruleset *rs;
    struct acl_decision d;

    (void)state;
    snprintf(path, sizeof(path), "%s/etc/acl.json", src ? src : "..");
    rs = acl_load_file(path, err, sizeof(err));
    if (rs == NULL) {
        print_error("%s\n", err);
    }
    assert_non_null(rs);
    assert_int_equal(acl_ruleset_rules(rs), 5);
    assert_int_equal(acl_check(rs, "c1", "alice", ACL_PUBLISH, "sensors/alice/t", &d), 1);
    assert_int_equal(acl_check(rs, "c1", "alice", ACL_SUBSCRIBE, "secret/#", &d), 0);
    assert_int_equal(acl_check(rs, "gateway-7", NULL, ACL_SUBSCRIBE, "#", &d), 1);
    acl_ruleset_free(rs);
}

/*
 * 10,000 literal rules in one entry plus wildcards: each answer is the one
 * the file order gives (the trie keeps the first rule per action), and
 * rules sharing a pattern keep their order.
 */
static void
many_rules(void **state)
{
    size_t cap = 10000 * 80 + 1024, n = 0, i;
    char *json = malloc(cap);
    char err[1024];
    char topic[64];
    struct acl_ruleset *rs;
    struct acl_decision d;

    (void)state;
    assert_non_null(json);
    n += (size_t)snprintf(json + n, cap - n, "{\"anonymous\":{\"rules\":[");
    for (i = 0; i < 10000; i++) {
        n += (size_t)snprintf(json + n, cap - n,
                              "{\"topic\":\"dev/%zu/#\",\"%s\":[\"publish\"]},", i,
                              i % 2 ? "deny" : "allow");
    }
    n += (size_t)snprintf(json + n, cap - n,
                          "{\"topic\":\"dev/+/x\",\"deny\":[\"publish\"]},"
                          "{\"topic\":\"dev/7/#\",\"deny\":[\"publish\"]},"
                          "{\"topic\":\"dev/7/#\",\"allow\":[\"receive\"]}]}}");
    rs = acl_load_string(json, "big.json", err, sizeof(err));
    assert_non_null(rs);
    assert_int_equal(acl_ruleset_rules(rs), 10003);
    for (i = 0; i < 10000; i += 997) {
        snprintf(topic, sizeof(topic), "dev/%zu/x", i);
        assert_int_equal(acl_check(rs, "c", NULL, ACL_PUBLISH, topic, &d), i % 2 ? 0 : 1);
        assert_int_equal(d.index, i);
    }
    assert_int_equal(acl_check(rs, "c", NULL, ACL_PUBLISH, "dev/7/y", &d), 0);
    assert_int_equal(d.index, 7);
    assert_int_equal(acl_check(rs, "c", NULL, ACL_RECEIVE, "dev/7/y", &d), 1);
    assert_int_equal(d.index, 10002);
    assert_int_equal(acl_check(rs, "c", NULL, ACL_PUBLISH, "dev/10000/x", &d), 0);
    assert_int_equal(d.index, 10000);
    assert_int_equal(acl_check(rs, "c", NULL, ACL_PUBLISH, "dev/10000/y", &d), 0);
    assert_null(d.rule);
    acl_ruleset_free(rs);
    free(json);
}

/* Topics much deeper than any pattern cost nothing extra and never recurse past the trie. */
static void
deep_topic(void **state)
{
    size_t len = 60000, i;
    char *topic = malloc(len + 1);
    char err[1024];
    struct acl_ruleset *rs = acl_load_string(
        "{\"anonymous\":{\"rules\":[{\"topic\":\"+/+/#\",\"allow\":[\"publish\"]}]}}", "t.json",
        err, sizeof(err));
    struct acl_decision d;

    (void)state;
    assert_non_null(rs);
    assert_non_null(topic);
    for (i = 0; i < len; i++) {
        topic[i] = i % 2 ? '/' : 'a';
    }
    topic[len] = 0;
    assert_int_equal(acl_check(rs, "c", NULL, ACL_PUBLISH, topic, &d), 1);
    memset(topic, '/', len); /* 60,001 empty levels */
    assert_int_equal(acl_check(rs, "c", NULL, ACL_PUBLISH, topic, &d), 1);
    acl_ruleset_free(rs);
    free(topic);
}

static void
topic_validity(void **state)
{
    (void)state;
    assert_true(acl_topic_filter_valid("a/+/#", 5));
    assert_true(acl_topic_filter_valid("#", 1));
    assert_true(acl_topic_filter_valid("/", 1));
    assert_false(acl_topic_filter_valid("a#", 2));
    assert_false(acl_topic_filter_valid("#/a", 3));
    assert_false(acl_topic_filter_valid("", 0));
    assert_true(acl_topic_name_valid("a/b", 3));
    assert_false(acl_topic_name_valid("a/+", 3));
    assert_false(acl_topic_name_valid("a/#", 3));
}

/*
 * Whether a subscription filter and a rule pattern share a topic: the
 * matching rules of MQTT 4.7 ([MQTT-4.7.1-2] '#' also matches the parent
 * level, [MQTT-4.7.2-1] first-level wildcards skip '$' topics), with %u / %c
 * standing for the client's values.
 */
static void
filters_overlap(void **state)
{
    struct acl_subject s = {"dev1", 4, "alice", 5, 0};
    struct acl_subject bad = {"a+b", 3, NULL, 0, ACL_PH_CLIENT | ACL_PH_USER};

    (void)state;
    assert_true(acl_filters_overlap("a/b", "a/b", &s));
    assert_false(acl_filters_overlap("a/b", "a/c", &s));
    assert_true(acl_filters_overlap("a/+", "a/b", &s));
    assert_true(acl_filters_overlap("a/b", "a/+", &s));
    assert_true(acl_filters_overlap("+/x", "secret/#", &s));
    assert_false(acl_filters_overlap("a/#", "secret/#", &s));
    assert_true(acl_filters_overlap("#", "secret/#", &s));
    assert_true(acl_filters_overlap("sport", "sport/#", &s));   /* '#' matches the parent */
    assert_true(acl_filters_overlap("sport/#", "sport", &s));
    assert_false(acl_filters_overlap("sport", "sport/+", &s));
    assert_false(acl_filters_overlap("a/b/c", "a/b", &s));
    assert_false(acl_filters_overlap("#", "$SYS/x", &s));      /* [MQTT-4.7.2-1] */
    assert_false(acl_filters_overlap("+/x", "$SYS/x", &s));
    assert_false(acl_filters_overlap("$SYS/x", "+/x", &s));
    assert_true(acl_filters_overlap("$SYS/#", "$SYS/x", &s));
    assert_true(acl_filters_overlap("+/+", "#", &s));
    assert_true(acl_filters_overlap("home/alice/t", "home/%u/#", &s));
    assert_false(acl_filters_overlap("home/bob/t", "home/%u/#", &s));
    assert_true(acl_filters_overlap("d/dev1-x", "d/%c-x", &s));
    assert_true(acl_filters_overlap("p/100%", "p/100%%", &s));
    assert_false(acl_filters_overlap("home/+/t", "home/%u/#", &bad)); /* matches nothing */
}

int
main(void)
{
    const struct CMUnitTest extra[] = {
        cmocka_unit_test(missing_file),
        cmocka_unit_test(example_file),
        cmocka_unit_test(many_rules),
        cmocka_unit_test(deep_topic),
        cmocka_unit_test(topic_validity),
        cmocka_unit_test(filters_overlap),
    };
    size_t nextra = sizeof(extra) / sizeof(extra[0]);
    size_t nplugin;
    const struct CMUnitTest *plugin = acl_plugin_tests(&nplugin);
    size_t n = acl_ncases + acl_nbad_cases + nextra + nplugin, i, k = 0;
    struct CMUnitTest *tests = calloc(n, sizeof(*tests));
    int failed;

    if (tests == NULL) {
        return 1;
    }
    for (i = 0; i < acl_ncases; i++, k++) {
        tests[k].name = acl_cases[i].what;
        tests[k].test_func = decision_case;
        tests[k].initial_state = (void *)&acl_cases[i];
    }
    for (i = 0; i < acl_nbad_cases; i++, k++) {
        tests[k].name = acl_bad_cases[i].what;
        tests[k].test_func = bad_file_case;
        tests[k].initial_state = (void *)&acl_bad_cases[i];
    }
    for (i = 0; i < nextra; i++, k++) {
        tests[k] = extra[i];
    }
    for (i = 0; i < nplugin; i++, k++) {
        tests[k] = plugin[i];
    }
    /* One group, so that the suite's summary line counts every case. */
    failed = _cmocka_run_group_tests("acl_json", tests, n, load_files, free_files);
    free(tests);
    return failed;
}
