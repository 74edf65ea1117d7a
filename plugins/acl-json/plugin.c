/*
 * acl-json: topic access control from a JSON file (docs/acl-json.md).
 *
 *     plugin acl-json
 *     plugin_opt_acl_file /etc/midge/acl.json
 *
 * This file is the glue to the broker: options, the acl hook, SIGHUP
 * reload, denial logging. Loading, compiling and deciding are in acl_*.c,
 * shared with the midge_acl tool.
 *
 * Threads: the acl hook runs on every worker thread at once, reload on the
 * main thread. The ruleset is immutable; reload builds a new one outside
 * any lock and swaps one pointer, so a check never sees half a file and a
 * bad file never replaces a good one. The old ruleset is freed once no
 * worker uses it: each worker thread announces the ruleset it is reading
 * in its own hazard slot (one cache line per thread, so checks on several
 * workers never write to a shared line, as a read-write lock would).
 *
 * Per connection (api->client_data) the plugin keeps the client resolved
 * against the ruleset in force (its entries in search order and its %u /
 * %c values) and the last allowed topic per action, so a check is a string
 * comparison or the walk of those entries' tries (struct conn_state).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <midge/plugin.h>

#include "acl.h"
#include "acl_ruleset.h"
#include "acl_denylog.h"

static const char *const acl_options[] = {"acl_file", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("acl-json", "1.0",
                             "topic access control from a JSON rule file", acl_options);

#define REASON_NOT_AUTHORIZED 0x87

/*
 * A worker thread's hazard slot: the ruleset it is reading, or NULL. Owned
 * by the instance (readers list), freed at cleanup; one cache line each.
 */
struct reader {
    _Alignas(64) _Atomic(struct acl_ruleset *) hazard;
    struct reader *next; /* protected by acl_state.readers_lock */
};

/* The instance. Owns the ruleset, the readers and the file name; freed by cleanup. */
struct acl_state {
    midge_plugin *self;
    const struct midge_api *api;
    _Atomic(struct acl_ruleset *) rs; /* the rules in force */
    pthread_key_t reader_key;         /* this thread's struct reader */
    pthread_mutex_t readers_lock;     /* protects readers */
    struct reader *readers;
    char *file;                       /* plugin_opt_acl_file of the rules in force [main thread] */
    int per_client;                   /* 1: the broker has client_data (ABI 1.0 services) */
    struct acl_denylog denylog;
    midge_metric *denied;             /* NULL when the broker has no metrics */
    midge_metric *reloads;
};

/* This thread's hazard slot, created on its first check; NULL when out of memory. */
static struct reader *
reader_get(struct acl_state *st)
{
    struct reader *r = pthread_getspecific(st->reader_key);

    if (r != NULL) {
        return r;
    }
    r = aligned_alloc(64, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    atomic_init(&r->hazard, NULL);
    pthread_mutex_lock(&st->readers_lock);
    r->next = st->readers;
    st->readers = r;
    pthread_mutex_unlock(&st->readers_lock);
    if (pthread_setspecific(st->reader_key, r) != 0) {
        return NULL; /* stays in the list, freed at cleanup */
    }
    return r;
}

/* The ruleset in force, announced in r so that reload does not free it under us. */
static struct acl_ruleset *
ruleset_enter(struct acl_state *st, struct reader *r)
{
    struct acl_ruleset *rs;

    do {
        rs = atomic_load(&st->rs);
        atomic_store(&r->hazard, rs);
    } while (atomic_load(&st->rs) != rs);
    return rs;
}

static void
ruleset_leave(struct reader *r)
{
    atomic_store_explicit(&r->hazard, NULL, memory_order_release);
}

/* Installs rs; returns the previous ruleset once no reader holds it any more. [main thread] */
static struct acl_ruleset *
ruleset_swap(struct acl_state *st, struct acl_ruleset *rs)
{
    struct acl_ruleset *old = atomic_exchange(&st->rs, rs);
    struct reader *r;

    pthread_mutex_lock(&st->readers_lock);
    for (r = st->readers; r != NULL; r = r->next) {
        while (atomic_load(&r->hazard) == old) {
            sched_yield(); /* a check takes well under a microsecond */
        }
    }
    pthread_mutex_unlock(&st->readers_lock);
    return old;
}

/* A topic up to this long is remembered per client and action when allowed. */
#define MEMO_TOPIC 64

/*
 * What the plugin keeps per connection (api->client_data): the client
 * resolved against one ruleset, and per action the last topic that ruleset
 * allowed. A check is a pure function of (ruleset, client, action, topic),
 * and a publisher or subscriber mostly repeats its topics, so the memo
 * answers most checks with one comparison. Denials always take the full
 * path (they are logged with their rule). Owned by the connection's slot;
 * freed by conn_free.
 */
struct conn_state {
    struct acl_client client;
    /*
     * subs_known: every subscription of this connection was seen by a
     * SUBSCRIBE check since it was resolved against client.ruleset_id (it
     * started with a clean session); subs_may_deny: one of them covers a
     * topic whose delivery a rule could deny.
     */
    uint8_t subs_known;
    uint8_t subs_may_deny;
    struct {
        uint16_t len; /* 0: nothing remembered */
        char topic[MEMO_TOPIC];
    } memo[ACL_NACTIONS];
};

static void
conn_free(void *data)
{
    struct conn_state *cs = data;

    acl_client_clear(&cs->client);
    free(cs);
}

/*
 * Deliveries to a client that no rule can deny them need not ask us one by
 * one: a standing ALLOW for RECEIVE (ABI 1.2), which the broker drops at
 * the next reload. Either no rule denies the client any delivery, or it
 * started with a clean session and none of the subscriptions checked here
 * since covers a topic a rule denies it (subscription_seen takes the
 * answer back first; the broker drops it when a plugin before us decides a
 * SUBSCRIBE we do not see). Set only while rs is still the ruleset in
 * force: a reload that swapped it meanwhile may already have counted.
 */
static void
receive_standing(struct acl_state *st, midge_client *c, const struct acl_ruleset *rs,
                 const struct conn_state *cs)
{
    if (!MIDGE_API_HAS(st->api, client_acl_standing) ||
        (!acl_client_always_allows(rs, &cs->client, ACL_RECEIVE) &&
         !(cs->subs_known && !cs->subs_may_deny && acl_ruleset_default(rs, ACL_RECEIVE)))) {
        return;
    }
    if (st->api->client_acl_standing(st->self, c, MIDGE_ACL_RECEIVE, MIDGE_ALLOW) == 0 &&
        atomic_load(&st->rs) != rs) {
        st->api->client_acl_standing(st->self, c, MIDGE_ACL_RECEIVE, MIDGE_PENDING);
    }
}

/*
 * The connection's state for rs, resolving the client again when it was
 * resolved against another ruleset (after a reload). NULL when the broker
 * has no per-client data or out of memory. [worker thread, in a hook about c]
 */
static struct conn_state *
conn_get(struct acl_state *st, midge_client *c, const struct acl_ruleset *rs)
{
    struct conn_state *cs;

    if (!st->per_client) {
        return NULL;
    }
    cs = st->api->client_data(st->self, c);
    if (cs != NULL && cs->client.ruleset_id == acl_ruleset_id(rs)) {
        return cs;
    }
    if (cs == NULL) {
        if ((cs = calloc(1, sizeof(*cs))) == NULL) {
            return NULL;
        }
        if (st->api->client_data_set(st->self, c, cs, conn_free) != 0) {
            free(cs);
            return NULL;
        }
        /* The first question about this connection: a clean session has no subscription yet. */
        cs->subs_known = st->api->client_clean_start(c) ? 1 : 0;
    } else {
        cs->subs_known = 0; /* re-resolved after a reload: its subscriptions were not all seen */
    }
    cs->subs_may_deny = 0;
    acl_client_clear(&cs->client);
    memset(cs->memo, 0, sizeof(cs->memo));
    if (acl_client_resolve(rs, st->api->client_id(c), st->api->client_username(c),
                           &cs->client) < 0) {
        return NULL; /* stays cleared: ruleset_id 0 never matches */
    }
    receive_standing(st, c, rs, cs);
    return cs;
}

/*
 * A SUBSCRIBE check of `filter` (allowed or not): when a delivery under it
 * could be denied, the standing ALLOW for RECEIVE goes before the
 * subscription exists.
 */
static void
subscription_seen(struct acl_state *st, midge_client *c, const struct acl_ruleset *rs,
                  struct conn_state *cs, const char *filter)
{
    if (!cs->subs_known || cs->subs_may_deny ||
        !acl_client_may_deny_under(rs, &cs->client, ACL_RECEIVE, filter)) {
        return;
    }
    cs->subs_may_deny = 1;
    if (MIDGE_API_HAS(st->api, client_acl_standing)) {
        st->api->client_acl_standing(st->self, c, MIDGE_ACL_RECEIVE, MIDGE_PENDING);
    }
}

static int
memo_hit(const struct conn_state *cs, int action, const char *topic)
{
    size_t len = cs->memo[action].len;

    /* strncmp, not memcmp: it stops at the end of a shorter topic instead of reading past it. */
    return len > 0 && strncmp(cs->memo[action].topic, topic, len) == 0 && topic[len] == 0;
}

static void
memo_set(struct conn_state *cs, int action, const char *topic)
{
    size_t len = strlen(topic);

    if (len > 0 && len <= MEMO_TOPIC) {
        memcpy(cs->memo[action].topic, topic, len);
        cs->memo[action].len = (uint16_t)len;
    }
}

/* Loads plugin_opt_acl_file; on failure sets the broker's error message. [init, reload] */
static struct acl_ruleset *
load_option(struct acl_state *st, char **file)
{
    const char *path = st->api->option(st->self, "acl_file");
    struct acl_ruleset *rs;
    char err[1024];

    *file = NULL;
    if (path == NULL || *path == 0) {
        st->api->set_error(st->self, "plugin_opt_acl_file is required (the JSON rule file)");
        return NULL;
    }
    rs = acl_load_file(path, err, sizeof(err));
    if (rs == NULL) {
        st->api->set_error(st->self, "%s", err);
        return NULL;
    }
    if ((*file = strdup(path)) == NULL) {
        acl_ruleset_free(rs);
        st->api->set_error(st->self, "out of memory");
        return NULL;
    }
    return rs;
}

/* Maps the broker's action to ours; -1 for one we do not decide. */
static int
map_action(int action)
{
    switch (action) {
    case MIDGE_ACL_PUBLISH:
    case MIDGE_ACL_WILL: /* a will is a publish made at CONNECT (the broker asks RETAIN too) */
        return ACL_PUBLISH;
    case MIDGE_ACL_RECEIVE: return ACL_RECEIVE;
    case MIDGE_ACL_SUBSCRIBE: return ACL_SUBSCRIBE;
    case MIDGE_ACL_RETAIN: return ACL_RETAIN;
    default: return -1;
    }
}

static const char *
broker_action_name(int action)
{
    return action == MIDGE_ACL_WILL ? "will" : acl_action_name(map_action(action));
}

/* "$share/GROUP/FILTER" -> "FILTER": rules are about the filter, not the group. */
static const char *
strip_share(const char *f)
{
    const char *slash;

    if (strncmp(f, "$share/", 7) != 0 || (slash = strchr(f + 7, '/')) == NULL) {
        return f;
    }
    return slash + 1;
}

/* The acl hook; see plugin.h. [worker thread] */
static int
acl_hook(void *state, midge_client *client, const struct midge_acl_request *req, uint8_t *reason,
         midge_ticket *ticket)
{
    struct acl_state *st = state;
    int action = map_action(req->action);
    const char *topic = req->topic;
    struct reader *r;
    struct acl_ruleset *rs;
    struct conn_state *cs;
    struct acl_client tmp;
    const struct acl_client *who;
    struct acl_decision d;
    char place[256]; /* written only for a denial that is logged */
    char pattern[256];
    int allow, log_it = 0;

    (void)ticket;
    if (action < 0 || topic == NULL) {
        return MIDGE_DEFER;
    }
    if ((r = reader_get(st)) == NULL) {
        *reason = 0x97; /* out of memory: refuse rather than guess */
        return MIDGE_DENY;
    }
    if (action == ACL_SUBSCRIBE) {
        topic = strip_share(topic);
    }
    rs = ruleset_enter(st, r);
    cs = conn_get(st, client, rs);
    if (action == ACL_SUBSCRIBE && cs != NULL) {
        subscription_seen(st, client, rs, cs, topic);
    }
    if (cs != NULL && memo_hit(cs, action, topic)) {
        ruleset_leave(r);
        return MIDGE_ALLOW;
    }
    who = cs != NULL ? &cs->client : NULL;
    if (who == NULL) {
        /* No per-client data (older broker, or out of memory): resolve for this check only. */
        if (acl_client_resolve(rs, st->api->client_id(client), st->api->client_username(client),
                               &tmp) < 0) {
            ruleset_leave(r);
            *reason = 0x97;
            return MIDGE_DENY;
        }
        who = &tmp;
    }
    allow = acl_check_client(rs, who, action, topic, &d);
    if (allow && cs != NULL) {
        memo_set(cs, action, topic);
    }
    if (!allow && acl_denylog_should_log(&st->denylog, acl_ruleset_id(rs), who->s.client_id,
                                         req->action, req->topic)) {
        /* Copied while rs is held: the strings belong to it. */
        acl_decision_place(&d, action, place, sizeof(place));
        snprintf(pattern, sizeof(pattern), "%s", d.rule ? d.rule->pattern : "");
        log_it = 1;
    }
    ruleset_leave(r);
    if (who == &tmp) {
        acl_client_clear(&tmp);
    }
    if (allow) {
        return MIDGE_ALLOW;
    }
    if (st->denied != NULL) {
        st->api->metric_add(st->denied, 1);
    }
    if (log_it) {
        const char *username = st->api->client_username(client);
        st->api->log(st->self, MIDGE_LOG_INFO,
                     "acl denied client=%s user=%s action=%s topic=%s rule=%s%s%s",
                     st->api->client_id(client), username ? username : "(anonymous)",
                     broker_action_name(req->action), req->topic, place,
                     pattern[0] ? " pattern=" : "", pattern);
    }
    *reason = REASON_NOT_AUTHORIZED;
    return MIDGE_DENY;
}

/* SIGHUP: re-reads the file; a bad one keeps the rules in force. [main thread] */
static int
reload_hook(void *state)
{
    struct acl_state *st = state;
    struct acl_ruleset *rs, *old;
    char *file = NULL;
    char *old_file;

    if ((rs = load_option(st, &file)) == NULL) {
        return -MIDGE_EINVAL;
    }
    old = ruleset_swap(st, rs);
    old_file = st->file;
    st->file = file;
    acl_ruleset_free(old);
    free(old_file);
    if (st->reloads != NULL) {
        st->api->metric_add(st->reloads, 1);
    }
    st->api->log(st->self, MIDGE_LOG_NOTICE, "acl reloaded file=%s entries=%zu rules=%zu",
                 file, acl_ruleset_entries(rs), acl_ruleset_rules(rs));
    return 0;
}

/* Once a second: how many denial lines the budget held back. [main thread] */
static void
tick_hook(void *state)
{
    struct acl_state *st = state;
    uint64_t n = acl_denylog_tick(&st->denylog);

    if (n > 0) {
        st->api->log(st->self, MIDGE_LOG_INFO,
                     "acl denials not logged count=%llu (more than %d per second)",
                     (unsigned long long)n, ACL_DENYLOG_PER_TICK);
    }
}

static const struct midge_hooks acl_hooks = {
    .size = sizeof(struct midge_hooks),
    .acl = acl_hook,
    .tick = tick_hook,
    .reload = reload_hook,
};

static void
state_free(struct acl_state *st, int key)
{
    struct reader *r;

    if (st == NULL) {
        return;
    }
    while ((r = st->readers) != NULL) {
        st->readers = r->next;
        free(r);
    }
    if (key) {
        pthread_key_delete(st->reader_key);
    }
    pthread_mutex_destroy(&st->readers_lock);
    acl_ruleset_free(atomic_load(&st->rs));
    free(st->file);
    free(st);
}

/* Loads the rule file named by plugin_opt_acl_file. [main thread] */
MIDGE_EXPORT int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct acl_state *st = calloc(1, sizeof(*st));

    if (st == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    st->self = self;
    st->api = api;
    pthread_mutex_init(&st->readers_lock, NULL);
    acl_denylog_init(&st->denylog);
    if (pthread_key_create(&st->reader_key, NULL) != 0) {
        api->set_error(self, "pthread_key_create failed");
        state_free(st, 0);
        return -MIDGE_ENOMEM;
    }
    atomic_init(&st->rs, load_option(st, &st->file));
    if (atomic_load(&st->rs) == NULL) {
        state_free(st, 1);
        return -MIDGE_EINVAL;
    }
    st->per_client = MIDGE_API_HAS(api, client_data) && MIDGE_API_HAS(api, client_data_set);
    if (MIDGE_API_HAS(api, metric_new) && MIDGE_API_HAS(api, metric_add)) {
        st->denied = api->metric_new(self, "denied", MIDGE_METRIC_COUNTER,
                                     "ACL checks answered deny");
        st->reloads = api->metric_new(self, "reloads", MIDGE_METRIC_COUNTER,
                                      "successful reloads of the rule file");
    }
    if (api->hooks_set(self, &acl_hooks) != 0) {
        api->set_error(self, "hooks_set failed");
        state_free(st, 1);
        return -MIDGE_EINVAL;
    }
    api->log(self, MIDGE_LOG_NOTICE, "acl loaded file=%s entries=%zu rules=%zu", st->file,
             acl_ruleset_entries(atomic_load(&st->rs)), acl_ruleset_rules(atomic_load(&st->rs)));
    *state = st;
    return 0;
}

/* Frees everything. [main thread, after the workers stopped] */
MIDGE_EXPORT void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    state_free(state, 1);
}
