/*
 * The container of a loaded rule file (acl_ruleset.c): its entries, an
 * index of them by kind and name, and the defaults. Used by the loader to
 * fill it and by the evaluator to read it.
 */
#ifndef ACL_JSON_ACL_RULESET_H
#define ACL_JSON_ACL_RULESET_H

#include "acl.h"

/* A ruleset for at most `capacity` named entries (plus anonymous). NULL: out of memory. */
struct acl_ruleset *acl_ruleset_new(const char *file, size_t capacity);

/* Adds an entry (name copied; NULL for anonymous). NULL: out of memory or full. */
struct acl_entry *acl_ruleset_add(struct acl_ruleset *rs, int kind, const char *name);

/* The entry of `kind` named `name` (len bytes), or NULL. [any thread] */
const struct acl_entry *acl_ruleset_entry(const struct acl_ruleset *rs, int kind,
                                          const char *name, size_t len);
struct acl_entry *acl_ruleset_entry_mut(struct acl_ruleset *rs, int kind, const char *name);

/* The anonymous entry, or NULL when the file has none. */
const struct acl_entry *acl_ruleset_anonymous(const struct acl_ruleset *rs);

void acl_ruleset_set_default(struct acl_ruleset *rs, int action, int allow);
int acl_ruleset_default(const struct acl_ruleset *rs, int action);

#endif
