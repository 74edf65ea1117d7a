/*
 * Unit tests for the pure parts of plugins/auth-passwd: the hash schemes
 * (known answers from mosquitto_passwd's files in tests/fixtures/passwd),
 * the password file parser and its FILE:LINE errors, the verification
 * cache and the failure limiter. The hooks are tested against the fake
 * broker in test_auth_passwd_plugin.c.
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

#include "../../plugins/auth-passwd/cache.h"
#include "../../plugins/auth-passwd/hash.h"
#include "../../plugins/auth-passwd/pwfile.h"
#include "../../plugins/auth-passwd/ratelimit.h"

#ifndef FIXTURES
#define FIXTURES "tests/fixtures/passwd"
#endif

/* The passwords of tests/fixtures/passwd/README.md. */
struct known {
    const char *file;
    const char *user;
    const char *password;
    int scheme;
};

static const struct known known[] = {
    {"mosquitto-2.0.11-sha512-pbkdf2.passwd", "alice", "correct horse", PW_PBKDF2},
    {"mosquitto-2.0.11-sha512-pbkdf2.passwd", "bob", "b0b:with:colons", PW_PBKDF2},
    {"mosquitto-2.0.11-sha512-pbkdf2.passwd", "carol", "\xc3\xbcn\xc3\xaf\x63\xc3\xb8\x64\xc3\xa9 "
                                                       "p\xc3\xa4sswörd", PW_PBKDF2},
    {"mosquitto-2.0.11-sha512.passwd", "alice", "correct horse", PW_SHA512},
    {"mosquitto-2.0.11-sha512.passwd", "dave", "x", PW_SHA512},
    {"mosquitto-2.0.11-U.passwd", "erin", "plain text password", PW_PBKDF2},
    {"mosquitto-2.0.11-U.passwd", "frank", "p", PW_PBKDF2},
};

static struct pw_table *
load_fixture(const char *file)
{
    char path[1024];
    char err[PW_ERR_MAX] = "";
    struct pw_table *t = NULL;

    snprintf(path, sizeof(path), "%s/%s", FIXTURES, file);
    if (pw_table_load(path, &t, err, sizeof(err)) != 0) {
        fail_msg("%s", err);
    }
    return t;
}

/* ---- Known answers: mosquitto_passwd's lines ------------------------------------ */

static void
test_fixtures_verify(void **unused)
{
    size_t i;

    (void)unused;
    for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        struct pw_table *t = load_fixture(known[i].file);
        const struct pw_entry *e = pw_table_find(t, known[i].user);
        const char *pw = known[i].password;

        assert_non_null(e);
        assert_int_equal(e->hash.scheme, known[i].scheme);
        if (known[i].scheme == PW_PBKDF2) {
            assert_int_equal(e->hash.iterations, 101); /* mosquitto 2.0's default */
            assert_int_equal(e->hash.salt_len, 12);
        }
        assert_int_equal(pw_verify(&e->hash, pw, strlen(pw)), 1);
        /* One byte off, one byte short, one byte more, empty: all wrong. */
        {
            char *bad = strdup(pw);

            bad[0] ^= 1;
            assert_int_equal(pw_verify(&e->hash, bad, strlen(bad)), 0);
            free(bad);
        }
        assert_int_equal(pw_verify(&e->hash, pw, strlen(pw) - 1), 0);
        assert_int_equal(pw_verify(&e->hash, "", 0), 0);
        /* The dummy hash matches nothing and has the file's cost. */
        assert_int_equal(pw_verify(&t->dummy, pw, strlen(pw)), 0);
        assert_int_equal(t->dummy.scheme, known[i].scheme);
        pw_table_free(t);
    }
}

/* etc/passwd.example is a valid file whose example user has the password it claims. */
static void
test_example_file(void **unused)
{
    struct pw_table *t = load_fixture("../../../etc/passwd.example");
    const struct pw_entry *e = pw_table_find(t, "example");

    (void)unused;
    assert_non_null(e);
    assert_int_equal(t->n, 1);
    assert_int_equal(pw_verify(&e->hash, "example", 7), 1);
    pw_table_free(t);
}

/* ---- New hashes (what midge_passwd writes) ----------------------------------- */

static void
test_hash_new_roundtrip(void **unused)
{
    static const struct {
        int scheme;
        uint32_t iter;
        size_t salt;
        const char *prefix;
    } cases[] = {
        {PW_PBKDF2, 0, 0, "$7$210000$"},
        {PW_PBKDF2, 1000, 64, "$7$1000$"},
        {PW_SHA512, 0, 0, "$6$"},
        {PW_ARGON2ID, 0, 0, "$argon2id$v=19$m=19456,t=2,p=1$"},
    };
    size_t i;

    (void)unused;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[PW_LINE_MAX];
        char out2[PW_LINE_MAX];
        const char *why = NULL;
        struct pw_hash h;

        assert_int_equal(pw_hash_new(cases[i].scheme, cases[i].iter, cases[i].salt, "s3cret:x", 8,
                                     out, sizeof(out), &why), 0);
        assert_true(strncmp(out, cases[i].prefix, strlen(cases[i].prefix)) == 0);
        assert_int_equal(pw_hash_parse(out, &h, &why), 0);
        assert_int_equal(h.scheme, cases[i].scheme);
        if (cases[i].scheme != PW_ARGON2ID) {
            assert_int_equal(h.salt_len, cases[i].salt ? cases[i].salt : PW_SALT_DEFAULT);
        }
        assert_int_equal(pw_verify(&h, "s3cret:x", 8), 1);
        assert_int_equal(pw_verify(&h, "s3cret:y", 8), 0);
        assert_int_equal(pw_looks_hashed(out), 1);
        /* A random salt: the same password never gives the same line. */
        assert_int_equal(pw_hash_new(cases[i].scheme, cases[i].iter, cases[i].salt, "s3cret:x", 8,
                                     out2, sizeof(out2), &why), 0);
        assert_string_not_equal(out, out2);
    }
}

static void
test_hash_new_refuses(void **unused)
{
    char out[PW_LINE_MAX];
    const char *why = NULL;

    (void)unused;
    assert_int_equal(pw_hash_new(PW_PBKDF2, PW_ITER_MAX + 1, 0, "a", 1, out, sizeof(out), &why),
                     -1);
    assert_non_null(strstr(why, "iterations"));
    assert_int_equal(pw_hash_new(PW_PBKDF2, 0, 65, "a", 1, out, sizeof(out), &why), -1);
    assert_non_null(strstr(why, "salt"));
    assert_int_equal(pw_hash_new(PW_PBKDF2, 0, 0, "a", 1, out, 20, &why), -1);
    assert_int_equal(pw_scheme_from_name("sha512-pbkdf2"), PW_PBKDF2);
    assert_int_equal(pw_scheme_from_name("sha512"), PW_SHA512);
    assert_int_equal(pw_scheme_from_name("argon2id"), PW_ARGON2ID);
    assert_int_equal(pw_scheme_from_name("md5"), -1);
    assert_int_equal(pw_looks_hashed("$notahash"), 0); /* -U may hash a password starting with $ */
}

static void
test_base64(void **unused)
{
    uint8_t out[16];
    char txt[32];

    (void)unused;
    assert_int_equal(pw_b64_encode((const uint8_t *)"ab", 2, txt, sizeof(txt)), 4);
    assert_string_equal(txt, "YWI=");
    assert_int_equal(pw_b64_decode("YWI=", 4, out, sizeof(out)), 2);
    assert_int_equal(pw_b64_decode("YWI", 3, out, sizeof(out)), 2); /* unpadded (argon2) */
    assert_memory_equal(out, "ab", 2);
    assert_int_equal(pw_b64_decode("YW=I", 4, out, sizeof(out)), -1);
    assert_int_equal(pw_b64_decode("Y", 1, out, sizeof(out)), -1);
    assert_int_equal(pw_b64_decode("YW*=", 4, out, sizeof(out)), -1);
    assert_int_equal(pw_b64_decode("YWJjZA==", 8, out, 3), -1); /* too long for out */
}

/* ---- The file parser -------------------------------------------------------- */

#define GOOD7 "$7$101$tCBbRf0QA2vktgin$rV/8HqiYtqO5Xg/xzGrPR8ey3RK97vvjN/nXKD90o1WBcDetqynaonX+oxLN6gv81QZfkzSSUxRKOH9gK0paMA=="

static void
test_parse_accepts(void **unused)
{
    const char text[] = "# comment\n\n   \n  # indented comment\r\n"
                        "alice:" GOOD7 "\r\n"
                        " bob \t: " GOOD7 "  \n"
                        "carol:" GOOD7; /* no final newline */
    struct pw_table *t = NULL;
    char err[PW_ERR_MAX] = "";

    (void)unused;
    assert_int_equal(pw_table_parse("f", text, strlen(text), &t, err, sizeof(err)), 0);
    assert_int_equal(t->n, 3);
    assert_non_null(pw_table_find(t, "alice"));
    assert_int_equal(pw_table_find(t, "alice")->line, 5);
    assert_non_null(pw_table_find(t, "bob")); /* blanks trimmed, as mosquitto does */
    assert_non_null(pw_table_find(t, "carol"));
    assert_null(pw_table_find(t, "dave"));
    assert_null(pw_table_find(t, "Alice"));
    assert_int_equal(pw_verify(&pw_table_find(t, "bob")->hash, "correct horse", 13), 1);
    pw_table_free(t);

    /* An empty file is a valid file with no users. */
    assert_int_equal(pw_table_parse("f", "", 0, &t, err, sizeof(err)), 0);
    assert_int_equal(t->n, 0);
    assert_int_equal(t->dummy.scheme, PW_PBKDF2);
    pw_table_free(t);
}

static void
test_parse_errors(void **unused)
{
    static const struct {
        const char *text;
        const char *error;
    } cases[] = {
        {"alice\n", "f:1: expected username:hash"},
        {"# c\nalice:$1$abc$def\n", "f:2: unknown hash type"},
        {"alice:secret\n", "f:1: password is not hashed (plain text? hash the file with "
                           "midge_passwd -U)"},
        {"alice:\n", "f:1: no password hash after ':'"},
        {":" GOOD7 "\n", "f:1: user name is empty"},
        {"al\x01ice:" GOOD7 "\n", "f:1: user name contains a control character"},
        {"alice:$7$0$tCBbRf0QA2vktgin$xx\n", "f:1: iteration count of $7$"},
        {"alice:$7$99999999999$tCBbRf0QA2vktgin$xx\n", "f:1: iteration count of $7$"},
        {"alice:$7$101$tCB*Rf0QA2vktgin$xx\n", "f:1: salt is not base64"},
        {"alice:$7$101$YWJj$xx\n", "f:1: salt is shorter than 8 bytes"},
        {"alice:$7$101$tCBbRf0QA2vktgin$YWJj\n", "f:1: hash is not 64 bytes"},
        {"alice:$7$101$tCBbRf0QA2vktgin\n", "f:1: missing '$' between salt and hash"},
        {"alice:$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\n",
         "f:1: argon2id memory cost"},
        {"alice:$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\n",
         "f:1: argon2id hash does not start"},
        {"alice:$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\n", "f:1: unknown hash type"},
        {"alice:" GOOD7 "\nbob:" GOOD7 "\n\nalice:" GOOD7 "\n",
         "f:4: user 'alice' is already defined on line 1"},
    };
    size_t i;

    (void)unused;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pw_table *t = NULL;
        char err[PW_ERR_MAX] = "";

        if (pw_table_parse("f", cases[i].text, strlen(cases[i].text), &t, err, sizeof(err)) ==
            0) {
            fail_msg("case %zu parsed but should fail with '%s'", i, cases[i].error);
        }
        assert_null(t);
        if (strncmp(err, cases[i].error, strlen(cases[i].error)) != 0) {
            fail_msg("case %zu: got '%s', want '%s...'", i, err, cases[i].error);
        }
        /* Errors never echo the secret part of a line. */
        assert_null(strstr(err, "tCBb"));
        assert_null(strstr(err, "secret"));
    }
    {
        const char nul[] = "alice:x\0y\n";
        struct pw_table *t = NULL;
        char err[PW_ERR_MAX] = "";

        assert_int_equal(pw_table_parse("f", nul, sizeof(nul) - 1, &t, err, sizeof(err)), -1);
        assert_string_equal(err, "f:1: line contains a NUL byte");
    }
}

static void
test_load_errors(void **unused)
{
    char dir[] = "/tmp/midge-pwtest-XXXXXX";
    char path[256];
    char err[PW_ERR_MAX] = "";
    struct pw_table *t = NULL;
    FILE *f;

    (void)unused;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_int_equal(pw_table_load(path, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/missing: cannot open: No such file or directory"));
    assert_int_equal(pw_table_load(dir, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ": not a regular file"));

    snprintf(path, sizeof(path), "%s/pw", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("alice:" GOOD7 "\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(pw_table_load(path, &t, err, sizeof(err)), 0);
    assert_int_equal(t->mode, 0640);
    pw_table_free(t);
    if (geteuid() != 0) {
        assert_int_equal(chmod(path, 0), 0);
        assert_int_equal(pw_table_load(path, &t, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "/pw: cannot open: Permission denied"));
    }
    unlink(path);
    rmdir(dir);
}

static void
test_username_check(void **unused)
{
    (void)unused;
    assert_null(pw_username_check("alice"));
    assert_null(pw_username_check("\xc3\xa9l\xc3\xa8ve with space"));
    assert_string_equal(pw_username_check(""), "user name is empty");
    assert_string_equal(pw_username_check("a:b"), "user name contains ':'");
    assert_string_equal(pw_username_check("a\tb"), "user name contains a control character");
    assert_string_equal(pw_username_check("a\x7f"), "user name contains a control character");
    assert_string_equal(pw_username_check(" a"), "user name starts or ends with a space");
}

/* ---- The cache ---------------------------------------------------------------- */

static void
test_cache(void **unused)
{
    struct pw_cache *c = pw_cache_new(4, 10);
    uint8_t k1[PW_CACHE_KEY], k2[PW_CACHE_KEY], k3[PW_CACHE_KEY];
    uint64_t epoch;

    (void)unused;
    assert_non_null(c);
    assert_int_equal(pw_cache_key(c, "alice", "pw", 2, k1), 0);
    assert_int_equal(pw_cache_key(c, "alice", "pX", 2, k2), 0);
    assert_memory_not_equal(k1, k2, PW_CACHE_KEY);
    /* The user name's length is part of the key: ("ab","c") != ("a","bc"). */
    assert_int_equal(pw_cache_key(c, "ab", "c", 1, k2), 0);
    assert_int_equal(pw_cache_key(c, "a", "bc", 2, k3), 0);
    assert_memory_not_equal(k2, k3, PW_CACHE_KEY);

    epoch = pw_cache_epoch(c);
    assert_int_equal(pw_cache_lookup(c, k1, 100), 0);
    pw_cache_insert(c, k1, 100, epoch);
    assert_int_equal(pw_cache_lookup(c, k1, 100), 1);
    assert_int_equal(pw_cache_lookup(c, k1, 109.9), 1);
    assert_int_equal(pw_cache_lookup(c, k1, 110.1), 0); /* TTL passed */
    assert_int_equal(pw_cache_lookup(c, k2, 100), 0);

    /* Cleared when the file changes; a verification from before the clear is not cached. */
    pw_cache_insert(c, k1, 200, epoch);
    pw_cache_clear(c);
    assert_int_equal(pw_cache_lookup(c, k1, 200), 0);
    pw_cache_insert(c, k2, 200, epoch);
    assert_int_equal(pw_cache_lookup(c, k2, 200), 0);
    pw_cache_insert(c, k2, 200, pw_cache_epoch(c));
    assert_int_equal(pw_cache_lookup(c, k2, 200), 1);
    pw_cache_free(c);
}

static void
test_cache_bounded(void **unused)
{
    struct pw_cache *c = pw_cache_new(64, 1000);
    struct pw_cache *off = pw_cache_new(0, 1000);
    uint8_t k[PW_CACHE_KEY];
    char pw[32];
    int i, hits = 0;

    (void)unused;
    assert_non_null(c);
    assert_non_null(off);
    for (i = 0; i < 10000; i++) {
        snprintf(pw, sizeof(pw), "p%d", i);
        pw_cache_key(c, "u", pw, strlen(pw), k);
        pw_cache_insert(c, k, i, pw_cache_epoch(c));
    }
    assert_true(pw_cache_count(c) <= 64);
    /* The newest entries are still there; most of the old ones were replaced. */
    for (i = 10000 - 8; i < 10000; i++) {
        snprintf(pw, sizeof(pw), "p%d", i);
        pw_cache_key(c, "u", pw, strlen(pw), k);
        hits += pw_cache_lookup(c, k, i);
    }
    assert_true(hits >= 6);
    /* cache_size 0: nothing is stored. */
    pw_cache_key(off, "u", "p", 1, k);
    pw_cache_insert(off, k, 1, pw_cache_epoch(off));
    assert_int_equal(pw_cache_lookup(off, k, 1), 0);
    pw_cache_free(c);
    pw_cache_free(off);
}

/* ---- The limiter --------------------------------------------------------------- */

static void
test_limiter_delays_and_block(void **unused)
{
    struct pw_limit_cfg cfg = {0.5, 2, 6, 60};
    struct pw_limiter *l = pw_limiter_new(64, &cfg);
    static const double want[] = {0, 0.5, 1, 2, 2, 2};
    size_t i;

    (void)unused;
    assert_non_null(l);
    for (i = 0; i < 6; i++) {
        assert_int_equal(pw_limiter_blocked(l, "10.0.0.1", "alice", 100 + i), 0);
        assert_true(pw_limiter_failure(l, "10.0.0.1", "alice", 100 + i) == want[i]);
    }
    /* max_failures reached: blocked by address and by user, whichever the other is. */
    assert_int_equal(pw_limiter_blocked(l, "10.0.0.1", "nobody", 106), 1);
    assert_int_equal(pw_limiter_blocked(l, "10.0.0.2", "alice", 106), 1);
    assert_int_equal(pw_limiter_blocked(l, "10.0.0.2", "bob", 106), 0);
    assert_true(pw_limiter_block_delay(l) == 2);
    /* Blocked attempts do not count: the block ends `window` after the last failure. */
    assert_int_equal(pw_limiter_blocked(l, "10.0.0.2", "alice", 165.1), 0);
    assert_int_equal(pw_limiter_blocked(l, "10.0.0.1", NULL, 165.1), 0);
    /* A fresh start: the next failure is free again. */
    assert_true(pw_limiter_failure(l, "10.0.0.1", "alice", 166) == 0);
    pw_limiter_free(l);
}

static void
test_limiter_success_resets_user_only(void **unused)
{
    struct pw_limit_cfg cfg = {1, 8, 3, 60};
    struct pw_limiter *l = pw_limiter_new(64, &cfg);

    (void)unused;
    pw_limiter_failure(l, "10.0.0.1", "alice", 1);
    pw_limiter_failure(l, "10.0.0.1", "alice", 2);
    pw_limiter_success(l, "alice");
    /* alice starts again, but the address keeps its two failures. */
    assert_true(pw_limiter_failure(l, "10.0.0.9", "alice", 3) == 0);
    assert_true(pw_limiter_failure(l, "10.0.0.1", "bob", 4) == 2); /* third from 10.0.0.1: 2 x delay */
    assert_int_equal(pw_limiter_blocked(l, "10.0.0.1", "carol", 5), 1);
    pw_limiter_free(l);
}

static void
test_limiter_off_and_bounded(void **unused)
{
    struct pw_limit_cfg cfg = {0, 0, 0, 60};
    struct pw_limiter *l = pw_limiter_new(16, &cfg);
    char ip[32];
    int i;

    (void)unused;
    for (i = 0; i < 100000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_true(pw_limiter_failure(l, ip, "alice", 1 + i * 1e-6) == 0);
    }
    /* max_failures 0: never blocked, however many failures. */
    assert_int_equal(pw_limiter_blocked(l, "10.0.0.1", "alice", 2), 0);
    cfg.max_failures = 3;
    pw_limiter_set_cfg(l, &cfg);
    assert_int_equal(pw_limiter_blocked(l, NULL, "alice", 2), 1);
    pw_limiter_free(l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_verify),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_hash_new_roundtrip),
        cmocka_unit_test(test_hash_new_refuses),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_parse_accepts),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_username_check),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_cache_bounded),
        cmocka_unit_test(test_limiter_delays_and_block),
        cmocka_unit_test(test_limiter_success_resets_user_only),
        cmocka_unit_test(test_limiter_off_and_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
