/*
 * The container of a loaded rule file: entries in one array, found by
 * (kind, name) through an open-addressing index, and the defaults.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "acl_ruleset.h"

/*
 * A loaded rule file. Owns its entries (their names, rules and tries) and
 * the index; freed with acl_ruleset_free(). Immutable after loading.
 */
struct acl_ruleset {
    uint64_t id;                 /* unique in the process (acl_ruleset_id) */
    char *file;
    int defaults[ACL_NACTIONS];  /* 1 allow, 0 deny */
    struct acl_entry *entries;   /* named entries, capacity `cap` */
    size_t nentries, cap;
    struct acl_entry *anonymous; /* NULL when the file has none */
    struct acl_entry **index;    /* (kind, name) -> entry; `mask + 1` slots */
    size_t mask;
};

static uint64_t
name_hash(int kind, const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 31);
}

/* The source of ruleset ids: a counter, not state (any number of instances may share it). */
static atomic_uint_fast64_t next_id = 1;

/* See acl.h. [any thread] */
uint64_t
acl_ruleset_id(const struct acl_ruleset *rs)
{
    return rs->id;
}

/* A ruleset for `capacity` named entries; see acl_ruleset.h. */
struct acl_ruleset *
acl_ruleset_new(const char *file, size_t capacity)
{
    struct acl_ruleset *rs = calloc(1, sizeof(*rs));
    size_t slots = 16;

    if (rs == NULL) {
        return NULL;
    }
    while (slots < capacity * 2) {
        slots *= 2;
    }
    rs->file = strdup(file);
    rs->entries = calloc(capacity + 1, sizeof(*rs->entries));
    rs->index = calloc(slots, sizeof(*rs->index));
    rs->cap = capacity;
    rs->id = atomic_fetch_add(&next_id, 1);
    rs->mask = slots - 1;
    /* Without a "default" object: subscribe and publish are refused, receive and retain allowed. */
    rs->defaults[ACL_PUBLISH] = 0;
    rs->defaults[ACL_SUBSCRIBE] = 0;
    rs->defaults[ACL_RECEIVE] = 1;
    rs->defaults[ACL_RETAIN] = 1;
    if (rs->file == NULL || rs->entries == NULL || rs->index == NULL) {
        acl_ruleset_free(rs);
        return NULL;
    }
    return rs;
}

/* Adds an entry; see acl_ruleset.h. */
struct acl_entry *
acl_ruleset_add(struct acl_ruleset *rs, int kind, const char *name)
{
    struct acl_entry *e;
    size_t i;

    if (kind == ACL_ENTRY_ANONYMOUS) {
        if (rs->anonymous != NULL || (e = calloc(1, sizeof(*e))) == NULL) {
            return NULL;
        }
        e->kind = kind;
        rs->anonymous = e;
        return e;
    }
    if (rs->nentries == rs->cap) {
        return NULL;
    }
    e = &rs->entries[rs->nentries];
    if ((e->name = strdup(name)) == NULL) {
        return NULL;
    }
    e->kind = kind;
    rs->nentries++;
    for (i = name_hash(kind, name, strlen(name)) & rs->mask; rs->index[i] != NULL;
         i = (i + 1) & rs->mask) {
    }
    rs->index[i] = e;
    return e;
}

/* Looks an entry up; see acl_ruleset.h. */
const struct acl_entry *
acl_ruleset_entry(const struct acl_ruleset *rs, int kind, const char *name, size_t len)
{
    size_t i;

    for (i = name_hash(kind, name, len) & rs->mask;; i = (i + 1) & rs->mask) {
        const struct acl_entry *e = rs->index[i];
        if (e == NULL) {
            return NULL;
        }
        if (e->kind == kind && strncmp(e->name, name, len) == 0 && e->name[len] == 0) {
            return e;
        }
    }
}

/* The same for the loader, which still fills the entry (users' groups). */
struct acl_entry *
acl_ruleset_entry_mut(struct acl_ruleset *rs, int kind, const char *name)
{
    return (struct acl_entry *)acl_ruleset_entry(rs, kind, name, strlen(name));
}

/* See acl_ruleset.h. [any thread] */
const struct acl_entry *
acl_ruleset_anonymous(const struct acl_ruleset *rs)
{
    return rs->anonymous;
}

/* Defaults: set by the loader, read by the evaluator (1 allow, 0 deny). */
void
acl_ruleset_set_default(struct acl_ruleset *rs, int action, int allow)
{
    rs->defaults[action] = allow;
}

/* See acl_ruleset.h. [any thread] */
int
acl_ruleset_default(const struct acl_ruleset *rs, int action)
{
    return rs->defaults[action];
}

static void
entry_free(struct acl_entry *e)
{
    size_t i;

    for (i = 0; i < e->nrules; i++) {
        free(e->rules[i].pattern);
    }
    free(e->rules);
    free(e->groups);
    free(e->name);
    acl_trie_free(e->trie);
}

/* Frees a ruleset; NULL is ignored. */
void
acl_ruleset_free(struct acl_ruleset *rs)
{
    size_t i;

    if (rs == NULL) {
        return;
    }
    for (i = 0; i < rs->nentries; i++) {
        entry_free(&rs->entries[i]);
    }
    if (rs->anonymous != NULL) {
        entry_free(rs->anonymous);
        free(rs->anonymous);
    }
    free(rs->entries);
    free(rs->index);
    free(rs->file);
    free(rs);
}

/* Counts for log lines. */
size_t
acl_ruleset_rules(const struct acl_ruleset *rs)
{
    size_t i, n = rs->anonymous ? rs->anonymous->nrules : 0;

    for (i = 0; i < rs->nentries; i++) {
        n += rs->entries[i].nrules;
    }
    return n;
}

/* Entries with or without rules, anonymous included. */
size_t
acl_ruleset_entries(const struct acl_ruleset *rs)
{
    return rs->nentries + (rs->anonymous ? 1 : 0);
}
