/*
 * acl-check-bench: the cost of one acl-json check (plugins/acl-json) with
 * 10 and with 10,000 rules, linking the plugin's own loader and evaluator.
 *
 * The rule file is generated: one user whose entry holds N rules of the
 * shapes an admin writes (literal prefixes with '#', '+' in the middle, %u),
 * half allow, half deny, plus a group. The questions cycle over 4096
 * precomputed topics spread over the whole rule list (and 1 in 8 that no
 * rule matches), for publish, receive and subscribe. The client is resolved
 * once (acl_client_resolve), as the plugin does per connection.
 *
 *   bench/acl-check-bench [-n CHECKS] [-r RUNS]
 * prints, per rule count and action, the median ns per check of RUNS runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acl.h"

#define NTOPICS 4096

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The generated rule file with n rules for user "bench". Caller frees. */
static char *
make_rules(size_t n)
{
    size_t cap = n * 96 + 1024, len = 0, i;
    char *s = malloc(cap);

    if (s == NULL) {
        return NULL;
    }
    len += (size_t)snprintf(s + len, cap - len,
                            "{\"default\":{\"publish\":\"deny\",\"subscribe\":\"deny\"},"
                            "\"groups\":{\"all\":{\"rules\":[{\"topic\":\"common/#\","
                            "\"allow\":[\"publish\",\"subscribe\",\"receive\"]}]}},"
                            "\"users\":{\"bench\":{\"groups\":[\"all\"],\"rules\":[");
    for (i = 0; i < n; i++) {
        const char *verb = i % 2 ? "deny" : "allow";
        switch (i % 4) {
        case 0:
            len += (size_t)snprintf(s + len, cap - len, "{\"topic\":\"site/%zu/#\"", i);
            break;
        case 1:
            len += (size_t)snprintf(s + len, cap - len, "{\"topic\":\"site/%zu/+/secret\"", i);
            break;
        case 2:
            len += (size_t)snprintf(s + len, cap - len, "{\"topic\":\"site/%zu/%%u/#\"", i);
            break;
        default:
            len += (size_t)snprintf(s + len, cap - len, "{\"topic\":\"site/%zu/+/+\"", i);
            break;
        }
        len += (size_t)snprintf(s + len, cap - len,
                                ",\"%s\":[\"publish\",\"subscribe\",\"receive\"]}%s", verb,
                                i + 1 < n ? "," : "");
    }
    snprintf(s + len, cap - len, "]}}}");
    return s;
}

/* Median ns per check of `runs` runs of `checks` checks. */
static double
measure(const struct acl_ruleset *rs, int action, char **topics, long checks, int runs)
{
    struct acl_client c;
    double *r = calloc((size_t)runs, sizeof(double));
    double med;
    long sink = 0;
    int k;

    /* Resolved once, as the plugin does per connection. */
    if (acl_client_resolve(rs, "client-17", "bench", &c) < 0) {
        return -1;
    }
    for (k = 0; k < runs; k++) {
        double t0 = now();
        long i;
        for (i = 0; i < checks; i++) {
            struct acl_decision d;
            sink += acl_check_client(rs, &c, action, topics[i % NTOPICS], &d);
        }
        r[k] = (now() - t0) * 1e9 / (double)checks;
    }
    acl_client_clear(&c);
    qsort(r, (size_t)runs, sizeof(double), cmp_double);
    med = r[runs / 2];
    free(r);
    if (sink < 0) {
        printf("%ld\n", sink); /* keeps the loop from being optimised away */
    }
    return med;
}

int
main(int argc, char **argv)
{
    static const size_t sizes[] = {10, 10000};
    long checks = 2000000;
    int runs = 7;
    size_t s;
    int i;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-n") == 0) {
            checks = atol(argv[i + 1]);
        } else if (strcmp(argv[i], "-r") == 0) {
            runs = atoi(argv[i + 1]);
        }
    }
    if (checks <= 0 || runs <= 0) {
        fprintf(stderr, "usage: acl-check-bench [-n CHECKS] [-r RUNS]\n");
        return 2;
    }
    printf("| rules | publish ns/check | receive ns/check | subscribe ns/check |\n");
    printf("|---|---|---|---|\n");
    for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        char *json = make_rules(n);
        char err[1024];
        struct acl_ruleset *rs = json ? acl_load_string(json, "bench.json", err, sizeof(err))
                                      : NULL;
        char *names[NTOPICS], *filters[NTOPICS];
        unsigned seed = 12345;
        int t;

        if (rs == NULL) {
            fprintf(stderr, "acl-check-bench: %s\n", json ? err : "out of memory");
            return 1;
        }
        for (t = 0; t < NTOPICS; t++) {
            size_t rule;
            names[t] = malloc(64);
            filters[t] = malloc(64);
            seed = seed * 1103515245u + 12345u;
            rule = (seed >> 8) % n;
            if (t % 8 == 7) {
                snprintf(names[t], 64, "other/%zu/bench/temp", rule); /* no rule matches */
            } else {
                snprintf(names[t], 64, "site/%zu/bench/temp", rule);
            }
            snprintf(filters[t], 64, "site/%zu/bench/+", rule);
        }
        printf("| %zu | %.0f | %.0f | %.0f |\n", n, measure(rs, ACL_PUBLISH, names, checks, runs),
               measure(rs, ACL_RECEIVE, names, checks, runs),
               measure(rs, ACL_SUBSCRIBE, filters, checks, runs));
        for (t = 0; t < NTOPICS; t++) {
            free(names[t]);
            free(filters[t]);
        }
        acl_ruleset_free(rs);
        free(json);
    }
    return 0;
}
