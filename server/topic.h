/*
 * Topic names and filters: validation and matching. Pure functions, no
 * allocation, callable from any thread.
 */
#ifndef MIDGE_TOPIC_H
#define MIDGE_TOPIC_H

#include <stddef.h>

/*
 * 1 if `t` is a valid PUBLISH topic name: at least one character, no '+' or
 * '#' [MQTT-3.3.2-2], no U+0000 (UTF-8 validity is the codec's job).
 */
int topic_name_valid(const char *t, size_t len);

/*
 * 1 if `f` is a valid topic filter: non-empty [MQTT-4.7.3-1]; '#' only as the
 * whole last level [MQTT-4.7.1-1]; '+' only as a whole level [MQTT-4.7.1-2].
 * A shared subscription "$share/GROUP/FILTER" is valid when GROUP is non-empty
 * with no '+', '#' or '/', and FILTER is a valid filter [MQTT-4.8.2-1, -2].
 */
int topic_filter_valid(const char *f, size_t len);

/*
 * 1 if topic name `t` matches filter `f` (the filter must not be a $share one).
 * Topics starting with '$' never match a filter whose first level is '+' or
 * '#' [MQTT-4.7.2-1]. "a/#" also matches "a" [MQTT-4.7.1-2 note].
 */
int topic_matches(const char *f, size_t flen, const char *t, size_t tlen);

/*
 * Splits "$share/GROUP/FILTER". Returns 1 and sets the group and inner filter
 * views when `f` is a shared subscription; 0 when it is not one (group NULL,
 * filter = f); -1 when it starts with "$share/" but is malformed.
 */
int topic_share_split(const char *f, size_t len, const char **group, size_t *group_len,
                      const char **filter, size_t *filter_len);

#endif
