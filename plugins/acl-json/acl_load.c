/*
 * Loading a rule file: JSON (jansson) -> validated entries -> compiled
 * tries. Every problem is an error naming its place, never a silent ignore:
 * "PATH:LINE:COLUMN: ..." for JSON syntax as jansson reports it, "PATH:
 * users.alice.rules[2].allow[0]: ..." for content.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "acl.h"
#include "acl_ruleset.h"

/* Loader state: where we are in the document, for error messages. */
struct ctx {
    const char *file;
    char *err;
    size_t errlen;
    char path[1024];
    size_t plen;
};

static const char *const action_names[ACL_NACTIONS] = {"publish", "subscribe", "receive",
                                                        "retain"};

/* The action's name in rule files; "?" for none. [any thread] */
const char *
acl_action_name(int action)
{
    return action >= 0 && action < ACL_NACTIONS ? action_names[action] : "?";
}

/* enum acl_action for a name, or -1. [any thread] */
int
acl_action_parse(const char *name)
{
    int a;

    for (a = 0; a < ACL_NACTIONS; a++) {
        if (strcmp(name, action_names[a]) == 0) {
            return a;
        }
    }
    return -1;
}

/* The top-level key an entry kind lives under. [any thread] */
const char *
acl_entry_kind_name(int kind)
{
    static const char *const names[] = {"clients", "users", "groups", "anonymous"};
    return kind >= 0 && kind <= ACL_ENTRY_ANONYMOUS ? names[kind] : "?";
}

static int
fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes "FILE: PATH: message" and returns -1. */
static int
fail(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(c->err, c->errlen, "%s: %s%s", c->file, c->plen ? c->path : "",
                     c->plen ? ": " : "");

    if (n >= 0 && (size_t)n < c->errlen) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int
plain_key(const char *k)
{
    if (*k == 0) {
        return 0;
    }
    for (; *k; k++) {
        if (!isalnum((unsigned char)*k) && *k != '_' && *k != '-') {
            return 0;
        }
    }
    return 1;
}

/* Appends ".key" (or ["key"] for keys that are not plain words); returns the old length. */
static size_t
push_key(struct ctx *c, const char *k)
{
    size_t old = c->plen;
    int n;

    if (plain_key(k)) {
        n = snprintf(c->path + old, sizeof(c->path) - old, "%s%s", old ? "." : "", k);
    } else {
        n = snprintf(c->path + old, sizeof(c->path) - old, "[\"%s\"]", k);
    }
    c->plen = n < 0 || (size_t)n >= sizeof(c->path) - old ? sizeof(c->path) - 1 : old + (size_t)n;
    return old;
}

static size_t
push_index(struct ctx *c, size_t i)
{
    size_t old = c->plen;
    int n = snprintf(c->path + old, sizeof(c->path) - old, "[%zu]", i);

    c->plen = n < 0 || (size_t)n >= sizeof(c->path) - old ? sizeof(c->path) - 1 : old + (size_t)n;
    return old;
}

static void
pop(struct ctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = 0;
}

static const char *
type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int
want(struct ctx *c, const json_t *j, json_type type, const char *what)
{
    if (json_typeof(j) != type) {
        return fail(c, "must be %s, not %s", what, type_name(j));
    }
    return 0;
}

/* Every key of object o must be one of `allowed` (NULL-terminated). */
static int
check_keys(struct ctx *c, json_t *o, const char *const *allowed, const char *list)
{
    const char *k;
    json_t *v;

    json_object_foreach(o, k, v) {
        size_t i;
        int ok = 0;
        for (i = 0; allowed[i] != NULL; i++) {
            ok |= strcmp(k, allowed[i]) == 0;
        }
        if (!ok) {
            size_t old = push_key(c, k);
            fail(c, "unknown key (expected %s)", list);
            pop(c, old);
            return -1;
        }
        if (strcmp(k, "comment") == 0 && !json_is_string(v)) {
            size_t old = push_key(c, k);
            want(c, v, JSON_STRING, "a string");
            pop(c, old);
            return -1;
        }
    }
    return 0;
}

/* A rule's topic: a valid filter with only %u, %c and %% as placeholders. */
static int
check_pattern(struct ctx *c, const char *p)
{
    size_t len = strlen(p);
    size_t i;

    if (len == 0) {
        return fail(c, "empty topic");
    }
    for (i = 0; i < len; i++) {
        if (p[i] == '%') {
            if (p[i + 1] != 'u' && p[i + 1] != 'c' && p[i + 1] != '%') {
                return fail(c, "unknown placeholder in \"%s\" at offset %zu (use %%u, %%c, or %%%% "
                            "for a literal %%)", p, i);
            }
            i++;
        }
    }
    if (!acl_topic_filter_valid(p, len)) {
        return fail(c, "\"%s\" is not a valid topic filter ('+' and '#' fill a whole level, "
                    "'#' comes last)", p);
    }
    if (strncmp(p, "$share/", 7) == 0) {
        return fail(c, "\"%s\": rules name the filter inside a shared subscription, "
                    "not $share/...", p);
    }
    return 0;
}

static int
parse_actions(struct ctx *c, json_t *list, unsigned *mask)
{
    size_t i;
    json_t *v;

    if (want(c, list, JSON_ARRAY, "an array of actions") < 0) {
        return -1;
    }
    if (json_array_size(list) == 0) {
        return fail(c, "empty list of actions");
    }
    json_array_foreach(list, i, v) {
        size_t old = push_index(c, i);
        int a;
        if (want(c, v, JSON_STRING, "an action name") < 0) {
            return -1;
        }
        if ((a = acl_action_parse(json_string_value(v))) < 0) {
            return fail(c, "unknown action \"%s\" (publish, subscribe, receive or retain)",
                        json_string_value(v));
        }
        if (*mask & (1u << a)) {
            return fail(c, "action \"%s\" listed twice", json_string_value(v));
        }
        *mask |= 1u << a;
        pop(c, old);
    }
    return 0;
}

static int
parse_rule(struct ctx *c, json_t *o, struct acl_rule *r)
{
    static const char *const keys[] = {"topic", "allow", "deny", "comment", NULL};
    json_t *topic, *allow, *deny;
    size_t old;

    if (want(c, o, JSON_OBJECT, "a rule object") < 0 ||
        check_keys(c, o, keys, "topic, allow, deny or comment") < 0) {
        return -1;
    }
    topic = json_object_get(o, "topic");
    allow = json_object_get(o, "allow");
    deny = json_object_get(o, "deny");
    if (topic == NULL) {
        return fail(c, "missing \"topic\"");
    }
    if ((allow == NULL) == (deny == NULL)) {
        return fail(c, "needs exactly one of \"allow\" and \"deny\"");
    }
    old = push_key(c, "topic");
    if (want(c, topic, JSON_STRING, "a string") < 0 || check_pattern(c, json_string_value(topic)) < 0) {
        return -1;
    }
    pop(c, old);
    r->allow = allow != NULL;
    old = push_key(c, allow ? "allow" : "deny");
    if (parse_actions(c, allow ? allow : deny, &r->actions) < 0) {
        return -1;
    }
    pop(c, old);
    if ((r->pattern = strdup(json_string_value(topic))) == NULL) {
        return fail(c, "out of memory");
    }
    return 0;
}

static int
parse_rules(struct ctx *c, json_t *list, struct acl_entry *e)
{
    size_t i;
    json_t *v;

    if (want(c, list, JSON_ARRAY, "an array of rules") < 0) {
        return -1;
    }
    if ((e->rules = calloc(json_array_size(list) + 1, sizeof(*e->rules))) == NULL) {
        return fail(c, "out of memory");
    }
    json_array_foreach(list, i, v) {
        size_t old = push_index(c, i);
        if (parse_rule(c, v, &e->rules[i]) < 0) {
            return -1;
        }
        e->nrules++;
        pop(c, old);
    }
    return 0;
}

/* The groups a user belongs to: names of `groups` members, each once. */
static int
parse_user_groups(struct ctx *c, struct acl_ruleset *rs, json_t *list, struct acl_entry *e)
{
    size_t i, j;
    json_t *v;

    if (want(c, list, JSON_ARRAY, "an array of group names") < 0) {
        return -1;
    }
    if ((e->groups = calloc(json_array_size(list) + 1, sizeof(*e->groups))) == NULL) {
        return fail(c, "out of memory");
    }
    json_array_foreach(list, i, v) {
        size_t old = push_index(c, i);
        struct acl_entry *g;
        if (want(c, v, JSON_STRING, "a group name") < 0) {
            return -1;
        }
        g = acl_ruleset_entry_mut(rs, ACL_ENTRY_GROUP, json_string_value(v));
        if (g == NULL) {
            return fail(c, "no group \"%s\" in \"groups\"", json_string_value(v));
        }
        for (j = 0; j < e->ngroups; j++) {
            if (e->groups[j] == g) {
                return fail(c, "group \"%s\" listed twice", json_string_value(v));
            }
        }
        e->groups[e->ngroups++] = g;
        pop(c, old);
    }
    return 0;
}

static int
parse_entry(struct ctx *c, struct acl_ruleset *rs, json_t *o, struct acl_entry *e)
{
    static const char *const user_keys[] = {"rules", "groups", "comment", NULL};
    static const char *const keys[] = {"rules", "comment", NULL};
    json_t *v;
    size_t old;

    if (want(c, o, JSON_OBJECT, "an object") < 0) {
        return -1;
    }
    if (e->kind == ACL_ENTRY_USER) {
        if (check_keys(c, o, user_keys, "rules, groups or comment") < 0) {
            return -1;
        }
    } else if (check_keys(c, o, keys, "rules or comment") < 0) {
        return -1;
    }
    if ((v = json_object_get(o, "rules")) != NULL) {
        old = push_key(c, "rules");
        if (parse_rules(c, v, e) < 0) {
            return -1;
        }
        pop(c, old);
    }
    if (e->kind == ACL_ENTRY_USER && (v = json_object_get(o, "groups")) != NULL) {
        old = push_key(c, "groups");
        if (parse_user_groups(c, rs, v, e) < 0) {
            return -1;
        }
        pop(c, old);
    }
    if (acl_trie_build(e) < 0) {
        return fail(c, "out of memory");
    }
    return 0;
}

/* Parses the members of `groups`, `users` or `clients`. */
static int
parse_section(struct ctx *c, struct acl_ruleset *rs, json_t *root, const char *key, int kind)
{
    json_t *o = json_object_get(root, key);
    const char *name;
    json_t *v;
    size_t old;

    if (o == NULL) {
        return 0;
    }
    old = push_key(c, key);
    if (want(c, o, JSON_OBJECT, "an object") < 0) {
        return -1;
    }
    json_object_foreach(o, name, v) {
        size_t o2 = push_key(c, name);
        struct acl_entry *e = acl_ruleset_add(rs, kind, name);
        if (e == NULL) {
            return fail(c, "out of memory");
        }
        if (parse_entry(c, rs, v, e) < 0) {
            return -1;
        }
        pop(c, o2);
    }
    pop(c, old);
    return 0;
}

static int
parse_default(struct ctx *c, struct acl_ruleset *rs, json_t *root)
{
    json_t *o = json_object_get(root, "default");
    const char *k;
    json_t *v;
    size_t old;

    if (o == NULL) {
        return 0;
    }
    old = push_key(c, "default");
    if (want(c, o, JSON_OBJECT, "an object") < 0) {
        return -1;
    }
    json_object_foreach(o, k, v) {
        size_t o2 = push_key(c, k);
        int a = acl_action_parse(k);
        const char *s;
        if (strcmp(k, "comment") == 0) {
            if (want(c, v, JSON_STRING, "a string") < 0) {
                return -1;
            }
            pop(c, o2);
            continue;
        }
        if (a < 0) {
            return fail(c, "unknown action (publish, subscribe, receive or retain)");
        }
        if (want(c, v, JSON_STRING, "\"allow\" or \"deny\"") < 0) {
            return -1;
        }
        s = json_string_value(v);
        if (strcmp(s, "allow") != 0 && strcmp(s, "deny") != 0) {
            return fail(c, "must be \"allow\" or \"deny\", not \"%s\"", s);
        }
        acl_ruleset_set_default(rs, a, s[0] == 'a');
        pop(c, o2);
    }
    pop(c, old);
    return 0;
}

static struct acl_ruleset *
load(json_t *root, const char *file, char *err, size_t errlen)
{
    static const char *const keys[] = {"default", "anonymous", "groups", "users", "clients",
                                       "comment", NULL};
    struct ctx c;
    struct acl_ruleset *rs = NULL;
    json_t *v;
    size_t n = 0;
    const char *sections[] = {"groups", "users", "clients"};
    size_t i;

    memset(&c, 0, sizeof(c));
    c.file = file;
    c.err = err;
    c.errlen = errlen;
    if (!json_is_object(root)) {
        fail(&c, "the top level must be an object, not %s", type_name(root));
        goto fail;
    }
    if (check_keys(&c, root, keys, "default, anonymous, groups, users, clients or comment") < 0) {
        goto fail;
    }
    for (i = 0; i < 3; i++) {
        v = json_object_get(root, sections[i]);
        n += json_is_object(v) ? json_object_size(v) : 0;
    }
    if ((rs = acl_ruleset_new(file, n)) == NULL) {
        fail(&c, "out of memory");
        goto fail;
    }
    if (parse_default(&c, rs, root) < 0 ||
        parse_section(&c, rs, root, "groups", ACL_ENTRY_GROUP) < 0 ||
        parse_section(&c, rs, root, "users", ACL_ENTRY_USER) < 0 ||
        parse_section(&c, rs, root, "clients", ACL_ENTRY_CLIENT) < 0) {
        goto fail;
    }
    if ((v = json_object_get(root, "anonymous")) != NULL) {
        size_t old = push_key(&c, "anonymous");
        struct acl_entry *e = acl_ruleset_add(rs, ACL_ENTRY_ANONYMOUS, NULL);
        if (e == NULL) {
            fail(&c, "out of memory");
            goto fail;
        }
        if (parse_entry(&c, rs, v, e) < 0) {
            goto fail;
        }
        pop(&c, old);
    }
    json_decref(root);
    return rs;
fail:
    json_decref(root);
    acl_ruleset_free(rs);
    return NULL;
}

static struct acl_ruleset *
syntax_error(const char *file, const json_error_t *je, char *err, size_t errlen)
{
    if (je->line > 0) {
        snprintf(err, errlen, "%s:%d:%d: %s", file, je->line, je->column, je->text);
    } else {
        snprintf(err, errlen, "%s: %s", file, je->text);
    }
    return NULL;
}

/* Loads a rule file; see acl.h. */
struct acl_ruleset *
acl_load_file(const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);

    if (root == NULL) {
        return syntax_error(path, &je, err, errlen);
    }
    return load(root, path, err, errlen);
}

/* Loads rules from a string; see acl.h. */
struct acl_ruleset *
acl_load_string(const char *json, const char *name, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &je);

    if (root == NULL) {
        return syntax_error(name, &je, err, errlen);
    }
    return load(root, name, err, errlen);
}
