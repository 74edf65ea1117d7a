/*
 * Shared by the acl-json unit tests: the rule files and the tables of
 * questions with their expected answers (test_acl_json_cases.c), run by
 * test_acl_json.c, and the plugin glue tests (test_acl_json_plugin.c).
 */
#ifndef TEST_ACL_JSON_H
#define TEST_ACL_JSON_H

#include <stddef.h>

/* The rule files the decision cases ask. */
enum acl_test_file {
    F_ISSUE,      /* the example of issue 6 (etc/acl.json without comments) */
    F_PRECEDENCE, /* client, user, groups in order, anonymous, file order */
    F_COVERS,     /* subscribe: which patterns cover which filters */
    F_COVERS2,    /* subscribe with +/+ and +/# */
    F_SUBST,      /* %u / %c, including names that try to widen access */
    F_DOLLAR,     /* $-topics and first-level wildcards */
    F_EMPTY,      /* {}: the built-in defaults */
    F_DEFAULTS,   /* a partial "default" object */
    F_COUNT,
};

extern const char *const acl_test_files[F_COUNT];

/* One question and its expected answer. */
struct acl_case {
    const char *what;     /* what the case proves (the test's name) */
    int file;             /* enum acl_test_file */
    const char *client;   /* client id */
    const char *user;     /* username, NULL: anonymous */
    int action;           /* enum acl_action */
    const char *topic;    /* topic name, or filter for subscribe */
    int allow;            /* expected answer */
    const char *place;    /* expected deciding place, e.g. "users.alice.rules[0]" */
};

extern const struct acl_case acl_cases[];
extern const size_t acl_ncases;

/* A malformed file and the exact error it must give (loaded as "t.json"). */
struct acl_bad_case {
    const char *what;
    const char *json;
    const char *error;
};

extern const struct acl_bad_case acl_bad_cases[];
extern const size_t acl_nbad_cases;

struct CMUnitTest;

/* The plugin glue tests (test_acl_json_plugin.c): *n tests, static storage. */
const struct CMUnitTest *acl_plugin_tests(size_t *n);

#endif
