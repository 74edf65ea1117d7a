/*
 * acl-json internals shared by the plugin, the midge_acl tool, the unit
 * tests and the benchmark: loading a rule file (acl_load.c), compiling each
 * entry's rules into a topic trie (acl_trie.c) and answering a question
 * (acl_eval.c). Nothing here knows about the broker or the plugin ABI.
 *
 * A ruleset is immutable once loaded, so any number of threads may call
 * acl_check() on it at once; replacing it (reload) is the caller's business.
 */
#ifndef ACL_JSON_ACL_H
#define ACL_JSON_ACL_H

#include <stddef.h>
#include <stdint.h>

/* The actions a rule can name, as bits in a rule's action mask. */
enum acl_action {
    ACL_PUBLISH = 0,
    ACL_SUBSCRIBE = 1,
    ACL_RECEIVE = 2,
    ACL_RETAIN = 3,
    ACL_NACTIONS = 4,
};

/* Where a rule lives; also the search order of acl_check() (client first). */
enum acl_entry_kind {
    ACL_ENTRY_CLIENT = 0,
    ACL_ENTRY_USER = 1,
    ACL_ENTRY_GROUP = 2,
    ACL_ENTRY_ANONYMOUS = 3,
};

/* Placeholder bits of a pattern or of one of its levels. */
#define ACL_PH_USER 1u   /* %u: the username */
#define ACL_PH_CLIENT 2u /* %c: the client id */

/* One rule as written in the file. Owned by its entry. */
struct acl_rule {
    char *pattern;     /* topic filter with optional %u / %c, as written */
    unsigned actions;  /* 1u << enum acl_action for each action listed */
    int allow;         /* 1: "allow" list, 0: "deny" list */
};

struct acl_trie;

/*
 * A `clients`, `users` or `groups` member, or `anonymous`. Owned by the
 * ruleset; `groups` points at group entries of the same ruleset (users only).
 */
struct acl_entry {
    int kind;                 /* enum acl_entry_kind */
    char *name;               /* NULL for anonymous */
    struct acl_rule *rules;   /* file order */
    size_t nrules;
    struct acl_entry **groups; /* users: the groups in the order listed */
    size_t ngroups;
    struct acl_trie *trie;    /* the compiled rules (acl_trie.c) */
};

/* Who is asking: what %u and %c stand for (NULL or "" never match). */
struct acl_subject {
    const char *client_id;
    size_t client_len;
    const char *username;
    size_t user_len;
    unsigned bad;  /* ACL_PH_* whose value is absent, empty or holds '+', '#' or '/' */
};

/* A loaded, compiled rule file. Immutable; freed with acl_ruleset_free(). */
struct acl_ruleset;

/* The answer to one question, and what decided it. Strings borrowed from the ruleset. */
struct acl_decision {
    int allow;                     /* 1 allow, 0 deny */
    const struct acl_entry *entry; /* NULL: the default decided */
    size_t index;                  /* the rule's index in entry->rules */
    const struct acl_rule *rule;   /* NULL: the default decided */
};

/* Names. acl_action_parse returns -1 for an unknown name. */
const char *acl_action_name(int action);
int acl_action_parse(const char *name);
const char *acl_entry_kind_name(int kind);

/*
 * Loads and compiles a rule file. On failure returns NULL and writes one
 * line to err: "PATH:LINE:COLUMN: message" for JSON syntax, "PATH: JSON.PATH:
 * message" for content (e.g. "users.alice.rules[2].allow[0]: unknown
 * action"). The caller frees the result with acl_ruleset_free().
 */
struct acl_ruleset *acl_load_file(const char *path, char *err, size_t errlen);

/* The same from a NUL-terminated string; `name` stands for the path in errors. */
struct acl_ruleset *acl_load_string(const char *json, const char *name, char *err,
                                    size_t errlen);

void acl_ruleset_free(struct acl_ruleset *rs);

/* Number of rules and of entries with rules, for log lines. */
size_t acl_ruleset_rules(const struct acl_ruleset *rs);
size_t acl_ruleset_entries(const struct acl_ruleset *rs);

/* A number no other ruleset of this process has had: tells caches apart across reloads. */
uint64_t acl_ruleset_id(const struct acl_ruleset *rs);

/*
 * What the rules make of one client: its %u / %c values and the entries that
 * apply to it, in search order. Resolved once per connection and ruleset
 * (acl_client_resolve), then used for every check of that client. Owns
 * `buf` and `chain`; the entries belong to the ruleset `ruleset_id`, so it
 * is valid only while that ruleset is.
 */
struct acl_client {
    uint64_t ruleset_id;
    struct acl_subject s;             /* client_id and username point into buf */
    const struct acl_entry **chain;   /* entries with rules, in search order */
    size_t n;
    char *buf;
};

/*
 * Fills *c for a client (username NULL: anonymous). Returns 0, or -1 when
 * out of memory (*c is then empty and safe to clear). [any thread]
 */
int acl_client_resolve(const struct acl_ruleset *rs, const char *client_id, const char *username,
                       struct acl_client *c);

/* Frees what *c owns and empties it. */
void acl_client_clear(struct acl_client *c);

/* acl_check() for a resolved client (c->ruleset_id must be rs's). Returns d->allow. */
int acl_check_client(const struct acl_ruleset *rs, const struct acl_client *c, int action,
                     const char *topic, struct acl_decision *d);

/*
 * 1 when no topic can be denied `action` for c under rs: its default
 * allows it and no rule of c's entries denies it.
 */
int acl_client_always_allows(const struct acl_ruleset *rs, const struct acl_client *c,
                             int action);

/*
 * 1 when some topic that matches topic filter `filter` (a subscription)
 * could be denied `action` to c under rs: its default denies the action,
 * or a rule of c's entries that denies it matches such a topic.
 */
int acl_client_may_deny_under(const struct acl_ruleset *rs, const struct acl_client *c,
                              int action, const char *filter);

/*
 * 1 when some topic matches both topic filter f and rule pattern p (its
 * %u / %c / %% replaced with s's values; a placeholder without a usable
 * value matches nothing), as the matching rules of MQTT 4.7 say.
 */
int acl_filters_overlap(const char *f, const char *p, const struct acl_subject *s);

/*
 * Decides `action` on `topic` (a topic name; for ACL_SUBSCRIBE a topic
 * filter, `$share/GROUP/` already stripped) for a client with `client_id`
 * and `username` (NULL: anonymous). Always decides: the rules, else the
 * default. Returns d->allow. [any thread]
 */
int acl_check(const struct acl_ruleset *rs, const char *client_id, const char *username,
              int action, const char *topic, struct acl_decision *d);

/*
 * Writes where a decision came from, e.g. "users.alice.rules[0]" or
 * "default.publish", into buf. Returns buf.
 */
const char *acl_decision_place(const struct acl_decision *d, int action, char *buf,
                               size_t len);

/* ---- acl_trie.c: the compiled form of one entry's rules ---- */


/*
 * Builds the trie of entry->rules. Patterns were validated by the loader.
 * Returns 0 or -1 (out of memory). The trie belongs to the entry.
 */
int acl_trie_build(struct acl_entry *e);
void acl_trie_free(struct acl_trie *t);

/*
 * The index of the first rule of the entry that matches `topic` (ACL_SUBSCRIBE:
 * covers the filter) and names `action`, or -1. Cost: the trie nodes on the
 * topic's path (one per level and per matching wildcard), not the number of rules.
 */
long acl_trie_first(const struct acl_trie *t, const struct acl_subject *s, int action,
                    const char *topic);

/* 1 when `s` (len bytes) is a valid MQTT topic name / topic filter. */
int acl_topic_name_valid(const char *s, size_t len);
int acl_topic_filter_valid(const char *s, size_t len);

#endif
