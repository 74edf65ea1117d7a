/*
 * Topic names and filters: validation and matching (MQTT 5 section 4.7 and
 * 4.8.2, MQTT 3.1.1 section 4.7). Everything here works on (pointer, length)
 * views, never allocates and never writes through its arguments, so it is
 * safe from any thread. Functions that own nothing return as soon as the
 * answer is known; a cleanup label would only add noise (STYLE.md's single
 * exit is about releasing resources).
 */
#include <string.h>

#include "topic.h"

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN (sizeof(SHARE_PREFIX) - 1)

/*
 * Validates a filter that is not a shared subscription: non-empty, no NUL,
 * '+' and '#' only as whole levels, '#' only as the last level.
 */
static int
plain_filter_valid(const char *f, size_t len)
{
    size_t i;
    size_t level = 0; /* start of the current level */

    if (len == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char c = f[i];

        if (c == '\0') {
            return 0;
        }
        if (c == '/') {
            level = i + 1;
        } else if (c == '+') {
            /* [MQTT-4.7.1-2]: the whole level, so alone between separators. */
            if (i != level || (i + 1 < len && f[i + 1] != '/')) {
                return 0;
            }
        } else if (c == '#') {
            /* [MQTT-4.7.1-1]: alone in its level and the last character. */
            if (i != level || i + 1 != len) {
                return 0;
            }
        }
    }
    return 1;
}

/*
 * Returns 1 when the topic name is valid for PUBLISH: non-empty, no wildcard,
 * no NUL. Pure; any thread.
 */
int
topic_name_valid(const char *t, size_t len)
{
    size_t i;

    if (t == NULL || len == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (t[i] == '+' || t[i] == '#' || t[i] == '\0') {
            return 0;
        }
    }
    return 1;
}

/*
 * Returns 1 when `f` is a valid subscription filter, shared ("$share/G/F")
 * or not. Pure; any thread.
 */
int
topic_filter_valid(const char *f, size_t len)
{
    int rc;

    if (f == NULL) {
        return 0;
    }
    rc = topic_share_split(f, len, NULL, NULL, NULL, NULL);
    if (rc < 0) {
        return 0;
    }
    if (rc == 1) {
        /* topic_share_split already validated the inner filter. */
        return 1;
    }
    return plain_filter_valid(f, len);
}

/*
 * Matches one topic name against one (non-shared, valid) filter, level by
 * level. A filter level "#" matches the rest of the topic including nothing
 * at all, so "sport/#" matches "sport". Pure, allocation-free; any thread.
 */
int
topic_matches(const char *f, size_t flen, const char *t, size_t tlen)
{
    size_t fs = 0; /* start of the current filter level */
    size_t ts = 0; /* start of the current topic level */
    int topic_done = 0;

    if (f == NULL || t == NULL || flen == 0 || tlen == 0) {
        return 0;
    }
    /* [MQTT-4.7.2-1]: "$..." topics are hidden from filters starting with a wildcard. */
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#')) {
        return 0;
    }
    for (;;) {
        const char *fslash = memchr(f + fs, '/', flen - fs);
        size_t fe = fslash != NULL ? (size_t)(fslash - f) : flen;
        size_t flevel = fe - fs;
        const char *tslash;
        size_t te;

        if (flevel == 1 && f[fs] == '#') {
            return 1;
        }
        if (topic_done) {
            return 0;
        }
        tslash = memchr(t + ts, '/', tlen - ts);
        te = tslash != NULL ? (size_t)(tslash - t) : tlen;
        if (!(flevel == 1 && f[fs] == '+')) {
            if (flevel != te - ts || memcmp(f + fs, t + ts, flevel) != 0) {
                return 0;
            }
        }
        if (fe == flen) {
            /* Filter exhausted: a match only if the topic is too. */
            return te == tlen;
        }
        fs = fe + 1;
        if (te == tlen) {
            /* Topic exhausted; only a trailing "#" level can still match. */
            topic_done = 1;
        } else {
            ts = te + 1;
        }
    }
}

/*
 * Recognises "$share/GROUP/FILTER" [MQTT-4.8.2-1, -2]: GROUP non-empty and
 * free of '+', '#' (and '/', by construction); FILTER a valid non-shared
 * filter. The out-parameters are optional views into `f`; they are set to
 * NULL/0 unless 1 is returned. Pure; any thread.
 */
int
topic_share_split(const char *f, size_t len, const char **group, size_t *group_len,
                  const char **filter, size_t *filter_len)
{
    const char *g;
    const char *slash;
    size_t glen;
    size_t rest;
    size_t i;
    int rc = 0;

    if (group != NULL) {
        *group = NULL;
    }
    if (group_len != NULL) {
        *group_len = 0;
    }
    if (filter != NULL) {
        *filter = NULL;
    }
    if (filter_len != NULL) {
        *filter_len = 0;
    }
    if (f == NULL || len < SHARE_PREFIX_LEN || memcmp(f, SHARE_PREFIX, SHARE_PREFIX_LEN) != 0) {
        /* Not shared: the whole filter is the filter. */
        if (filter != NULL) {
            *filter = f;
        }
        if (filter_len != NULL) {
            *filter_len = len;
        }
        goto out;
    }
    rc = -1;
    g = f + SHARE_PREFIX_LEN;
    rest = len - SHARE_PREFIX_LEN;
    slash = memchr(g, '/', rest);
    if (slash == NULL) {
        goto out; /* no "/" after the share name */
    }
    glen = (size_t)(slash - g);
    if (glen == 0) {
        goto out;
    }
    for (i = 0; i < glen; i++) {
        if (g[i] == '+' || g[i] == '#' || g[i] == '\0') {
            goto out;
        }
    }
    rest -= glen + 1;
    if (!plain_filter_valid(slash + 1, rest)) {
        goto out; /* covers the empty filter too */
    }
    if (group != NULL) {
        *group = g;
    }
    if (group_len != NULL) {
        *group_len = glen;
    }
    if (filter != NULL) {
        *filter = slash + 1;
    }
    if (filter_len != NULL) {
        *filter_len = rest;
    }
    rc = 1;
out:
    return rc;
}
