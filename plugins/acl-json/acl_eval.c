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
#include <stdlib.h>
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
    long i = acl_trie_first(e->trie, s, action, topic);

    if (i < 0) {
        return 0;
    }
    d->entry = e;
    d->index = (size_t)i;
    d->rule = &e->rules[i];
    d->allow = d->rule->allow;
    return 1;
}

static void
chain_add(struct acl_client *c, const struct acl_entry *e)
{
    if (e != NULL && e->nrules > 0) {
        c->chain[c->n++] = e;
    }
}

/* Resolves a client; see acl.h. */
int
acl_client_resolve(const struct acl_ruleset *rs, const char *client_id, const char *username,
                   struct acl_client *c)
{
    size_t clen = client_id ? strlen(client_id) : 0;
    size_t ulen = username ? strlen(username) : 0;
    const struct acl_entry *user = NULL;
    size_t i;

    memset(c, 0, sizeof(*c));
    c->ruleset_id = acl_ruleset_id(rs);
    if (username != NULL) {
        user = acl_ruleset_entry(rs, ACL_ENTRY_USER, username, ulen);
    }
    c->buf = malloc(clen + ulen + 2);
    c->chain = calloc(2 + (user ? user->ngroups : 0), sizeof(*c->chain));
    if (c->buf == NULL || c->chain == NULL) {
        acl_client_clear(c);
        return -1;
    }
    memcpy(c->buf, client_id ? client_id : "", clen + 1);
    c->s.client_id = client_id ? c->buf : NULL;
    c->s.client_len = clen;
    if (username != NULL) {
        memcpy(c->buf + clen + 1, username, ulen + 1);
        c->s.username = c->buf + clen + 1;
        c->s.user_len = ulen;
    }
    c->s.bad = (name_usable(client_id, clen) ? 0 : ACL_PH_CLIENT) |
               (name_usable(username, ulen) ? 0 : ACL_PH_USER);
    if (client_id != NULL) {
        chain_add(c, acl_ruleset_entry(rs, ACL_ENTRY_CLIENT, client_id, clen));
    }
    if (username == NULL) {
        chain_add(c, acl_ruleset_anonymous(rs));
    } else if (user != NULL) {
        chain_add(c, user);
        for (i = 0; i < user->ngroups; i++) {
            chain_add(c, user->groups[i]);
        }
    }
    return 0;
}

/* See acl.h. */
void
acl_client_clear(struct acl_client *c)
{
    free(c->buf);
    free(c->chain);
    memset(c, 0, sizeof(*c));
}

/*
 * Pattern level [p, p + n) with its placeholders replaced for s, in buf.
 * Returns its length, or -1 when a placeholder has no usable value (the
 * rule matches nothing) or it does not fit.
 */
static long
expand_level(const char *p, size_t n, const struct acl_subject *s, char *buf, size_t cap)
{
    size_t i;
    size_t len = 0;

    for (i = 0; i < n; i++) {
        const char *v = p + i;
        size_t vlen = 1;
        if (p[i] == '%' && i + 1 < n) {
            i++;
            if (p[i] == 'u' || p[i] == 'c') {
                unsigned ph = p[i] == 'u' ? ACL_PH_USER : ACL_PH_CLIENT;
                if (s->bad & ph) {
                    return -1;
                }
                v = p[i] == 'u' ? s->username : s->client_id;
                vlen = p[i] == 'u' ? s->user_len : s->client_len;
            } else {
                v = p + i; /* %% */
            }
        }
        if (len + vlen > cap) {
            return -1;
        }
        memcpy(buf + len, v, vlen);
        len += vlen;
    }
    return (long)len;
}

/* See acl.h. */
int
acl_filters_overlap(const char *f, const char *p, const struct acl_subject *s)
{
    int first = 1;

    for (;;) {
        const char *fs = strchr(f, '/');
        const char *ps = strchr(p, '/');
        size_t fl = fs != NULL ? (size_t)(fs - f) : strlen(f);
        size_t pl = ps != NULL ? (size_t)(ps - p) : strlen(p);
        int f_any = fl == 1 && (f[0] == '#' || f[0] == '+');
        int p_any = pl == 1 && (p[0] == '#' || p[0] == '+');
        char lvl[512];
        long ll = 0;

        if (!p_any && (ll = expand_level(p, pl, s, lvl, sizeof(lvl))) < 0) {
            return 0;
        }
        if (f_any || p_any) {
            /* A wildcard first level does not match topics starting with '$' [MQTT-4.7.2-1]. */
            if (first && !(f_any && p_any) &&
                (f_any ? ll > 0 && lvl[0] == '$' : fl > 0 && f[0] == '$')) {
                return 0;
            }
            if ((f_any && f[0] == '#') || (p_any && p[0] == '#')) {
                return 1;
            }
        } else if ((size_t)ll != fl || memcmp(lvl, f, fl) != 0) {
            return 0;
        }
        first = 0;
        if (fs == NULL || ps == NULL) {
            /* Both end here; or one goes on with just "#", which matches its parent level too. */
            return fs == ps || strcmp(fs != NULL ? fs + 1 : ps + 1, "#") == 0;
        }
        f = fs + 1;
        p = ps + 1;
    }
}

/* 1 when a rule of c's entries denies `action` on a topic under `filter` (NULL: any topic). */
static int
denying_rule(const struct acl_client *c, int action, const char *filter)
{
    size_t i;
    size_t j;

    for (i = 0; i < c->n; i++) {
        for (j = 0; j < c->chain[i]->nrules; j++) {
            const struct acl_rule *r = &c->chain[i]->rules[j];
            if (!r->allow && (r->actions & (1u << action)) != 0 &&
                (filter == NULL || acl_filters_overlap(filter, r->pattern, &c->s))) {
                return 1;
            }
        }
    }
    return 0;
}

/* See acl.h. [any thread] */
int
acl_client_always_allows(const struct acl_ruleset *rs, const struct acl_client *c, int action)
{
    return acl_ruleset_default(rs, action) && !denying_rule(c, action, NULL);
}

/* See acl.h. [any thread] */
int
acl_client_may_deny_under(const struct acl_ruleset *rs, const struct acl_client *c, int action,
                          const char *filter)
{
    return !acl_ruleset_default(rs, action) || denying_rule(c, action, filter);
}

/* Decides for a resolved client; see acl.h. [any thread] */
int
acl_check_client(const struct acl_ruleset *rs, const struct acl_client *c, int action,
                 const char *topic, struct acl_decision *d)
{
    size_t i;

    memset(d, 0, sizeof(*d));
    for (i = 0; i < c->n; i++) {
        if (decide(c->chain[i], &c->s, action, topic, d)) {
            return d->allow;
        }
    }
    d->allow = acl_ruleset_default(rs, action);
    return d->allow;
}

/*
 * Decides one question; see acl.h. [any thread] Resolves the client each
 * time: the plugin keeps the resolved client per connection instead. When
 * out of memory it denies, with no rule.
 */
int
acl_check(const struct acl_ruleset *rs, const char *client_id, const char *username, int action,
          const char *topic, struct acl_decision *d)
{
    struct acl_client c;
    int allow;

    if (acl_client_resolve(rs, client_id, username, &c) < 0) {
        memset(d, 0, sizeof(*d));
        return 0;
    }
    allow = acl_check_client(rs, &c, action, topic, d);
    acl_client_clear(&c);
    return allow;
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
