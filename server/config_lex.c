/* Configuration lexing: splitting lines into words, parsing values, error messages. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

/*
 * The setters and value parsers below hold no resources, so they return at
 * the first error instead of jumping to a cleanup block (STYLE.md's single
 * exit is about cleanup; here it would only add labels). Functions that
 * allocate or open something use `goto out`.
 */

/* Writes "FILE:LINE: message" into p->err. Returns -1 so setters can `return conf_error(...)`. */
int
conf_error(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->errlen == 0) {
        return -1;
    }
    n = snprintf(p->err, p->errlen, "%s:%d: ", p->file, p->line);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Whitespace as the file format knows it. */
int
conf_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Removes leading and trailing whitespace, in place. */
char *
conf_trim(char *s)
{
    size_t n;

    while (conf_is_space(*s)) {
        s++;
    }
    n = strlen(s);
    while (n > 0 && conf_is_space(s[n - 1])) {
        s[--n] = '\0';
    }
    return s;
}

/*
 * Splits args into whitespace-separated words, in place. Stores up to `max`
 * of them and returns how many there are in total.
 */
int
conf_split(char *args, char **words, int max)
{
    int n = 0;
    char *s = args;

    for (;;) {
        while (conf_is_space(*s)) {
            s++;
        }
        if (*s == '\0') {
            break;
        }
        if (n < max) {
            words[n] = s;
        }
        n++;
        while (*s != '\0' && !conf_is_space(*s)) {
            s++;
        }
        if (*s != '\0') {
            *s++ = '\0';
        }
    }
    return n;
}

/*
 * Takes exactly one word for directive d: reports a missing value or an extra
 * one. Returns 0 and sets *word, or -1.
 */
int
conf_one_word(struct parser *p, const struct directive *d, char *args, char **word)
{
    char *words[2];
    int n = conf_split(args, words, 2);

    if (n == 0) {
        return conf_error(p, "%s: missing value", d->name);
    }
    if (n > 1) {
        return conf_error(p, "%s: unexpected extra value '%s'", d->name, words[1]);
    }
    *word = words[0];
    return 0;
}

/* "true" or "false", as mosquitto writes them. */
int
conf_parse_bool(struct parser *p, const char *name, const char *w, int *out)
{
    if (strcmp(w, "true") == 0) {
        *out = 1;
    } else if (strcmp(w, "false") == 0) {
        *out = 0;
    } else {
        return conf_error(p, "%s: expected true or false, got '%s'", name, w);
    }
    return 0;
}

/*
 * Parses a decimal integer in [min, max]; a '-' is accepted only when min is
 * negative. Reports malformed and out-of-range values.
 */
int
conf_parse_ll(struct parser *p, const char *name, const char *w, long long min, long long max,
         long long *out)
{
    const char *s = w;
    long long v = 0;
    char *end;

    if (*s == '-' && min < 0) {
        s++;
    }
    if (*s < '0' || *s > '9') {
        if (min < 0) {
            return conf_error(p, "%s: expected an integer, got '%s'", name, w);
        }
        return conf_error(p, "%s: expected a non-negative integer, got '%s'", name, w);
    }
    errno = 0;
    v = strtoll(w, &end, 10);
    if (*end != '\0') {
        if (min < 0) {
            return conf_error(p, "%s: expected an integer, got '%s'", name, w);
        }
        return conf_error(p, "%s: expected a non-negative integer, got '%s'", name, w);
    }
    if (errno == ERANGE || v < min || v > max) {
        return conf_error(p, "%s: %s is out of range (%lld..%lld)", name, w, min, max);
    }
    *out = v;
    return 0;
}

/* Optimal string alignment distance, capped: enough to suggest a misspelt word. */
size_t
conf_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    size_t d[48][48];
    size_t i;
    size_t j;

    if (la >= 48 || lb >= 48) {
        return SIZE_MAX;
    }
    for (i = 0; i <= la; i++) {
        d[i][0] = i;
    }
    for (j = 0; j <= lb; j++) {
        d[0][j] = j;
    }
    for (i = 1; i <= la; i++) {
        for (j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = d[i - 1][j] + 1;

            if (d[i][j - 1] + 1 < best) {
                best = d[i][j - 1] + 1;
            }
            if (d[i - 1][j - 1] + cost < best) {
                best = d[i - 1][j - 1] + cost;
            }
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best) {
                best = d[i - 2][j - 2] + 1;
            }
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

