/*
 * Answering one question: which entries apply to the client, in which
 * order, and the first rule among them that decides; else the default.
 *
 * Order: the `clients` entry for the client id, then for a client with a
 * username the `users` entry and each of its groups in the order listed,
 * for a client without one the `anonymous` entry. Within an entry, file
 * order (acl_trie_first). A client whose username has no `users` entry gets
 * its client entry and the defaults only: it is not anonymous.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "acl.h"
#include "acl_ruleset.h"

/* A name that may stand in for %u / %c: present, non-empty, and no '+', '#' or '/'. */
static int
name_usable(const char *s, size_t len)
{
    return s != NULL && len > 0 && memchr(s, '+', len) == NULL && memchr(s, '#', len) == NULL &&
           memchr(s, '/', len) == NULL;
}

static int
decide(const struct acl_entry *e, const struct acl_subject *s, int action, const char *topic,
       struct acl_decision *d)
{
    long i;

    if (e == NULL || e->nrules == 0) {
        return 0;
    }
    i = acl_trie_first(e->trie, s, action, topic);
    if (i < 0) {
        return 0;
    }
    d->entry = e;
    d->index = (size_t)i;
    d->rule = &e->rules[i];
    d->allow = d->rule->allow;
    return 1;
}

/* Decides one question; see acl.h. [any thread] */
int
acl_check(const struct acl_ruleset *rs, const char *client_id, const char *username, int action,
          const char *topic, struct acl_decision *d)
{
    struct acl_subject s;
    const struct acl_entry *user = NULL;
    size_t i;

    memset(d, 0, sizeof(*d));
    s.client_id = client_id;
    s.client_len = client_id ? strlen(client_id) : 0;
    s.username = username;
    s.user_len = username ? strlen(username) : 0;
    s.bad = (name_usable(client_id, s.client_len) ? 0 : ACL_PH_CLIENT) |
            (name_usable(username, s.user_len) ? 0 : ACL_PH_USER);
    if (client_id != NULL &&
        decide(acl_ruleset_entry(rs, ACL_ENTRY_CLIENT, client_id, s.client_len), &s, action,
               topic, d)) {
        return d->allow;
    }
    if (username == NULL) {
        if (decide(acl_ruleset_anonymous(rs), &s, action, topic, d)) {
            return d->allow;
        }
    } else if ((user = acl_ruleset_entry(rs, ACL_ENTRY_USER, username, s.user_len)) != NULL) {
        if (decide(user, &s, action, topic, d)) {
            return d->allow;
        }
        for (i = 0; i < user->ngroups; i++) {
            if (decide(user->groups[i], &s, action, topic, d)) {
                return d->allow;
            }
        }
    }
    d->allow = acl_ruleset_default(rs, action);
    return d->allow;
}

static int
plain(const char *k)
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

/* Where a decision came from, as a JSON path; see acl.h. */
const char *
acl_decision_place(const struct acl_decision *d, int action, char *buf, size_t len)
{
    const struct acl_entry *e = d->entry;

    if (e == NULL) {
        snprintf(buf, len, "default.%s", acl_action_name(action));
    } else if (e->kind == ACL_ENTRY_ANONYMOUS) {
        snprintf(buf, len, "anonymous.rules[%zu]", d->index);
    } else if (plain(e->name)) {
        snprintf(buf, len, "%s.%s.rules[%zu]", acl_entry_kind_name(e->kind), e->name, d->index);
    } else {
        snprintf(buf, len, "%s[\"%s\"].rules[%zu]", acl_entry_kind_name(e->kind), e->name,
                 d->index);
    }
    return buf;
}
