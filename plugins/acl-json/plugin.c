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
 * any lock and swaps the pointer under the write lock, so a check never
 * sees half a file and a bad file never replaces a good one.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <midge/plugin.h>

#include "acl.h"
#include "acl_denylog.h"

static const char *const acl_options[] = {"acl_file", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("acl-json", "1.0",
                             "topic access control from a JSON rule file", acl_options);

#define REASON_NOT_AUTHORIZED 0x87

/* The instance. Owns the ruleset and the file name; freed by cleanup. */
struct acl_state {
    midge_plugin *self;
    const struct midge_api *api;
    pthread_rwlock_t lock;      /* protects rs and generation */
    struct acl_ruleset *rs;     /* the rules in force */
    uint64_t generation;        /* +1 per successful load: denials are logged afresh */
    char *file;                 /* plugin_opt_acl_file of the rules in force */
    struct acl_denylog denylog;
    midge_metric *denied;       /* NULL when the broker has no metrics */
    midge_metric *reloads;
};

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
    const char *client_id = st->api->client_id(client);
    const char *username = st->api->client_username(client);
    int action = map_action(req->action);
    const char *topic = req->topic;
    struct acl_decision d;
    char place[256] = "";
    char pattern[256] = "";
    uint64_t gen;
    int allow, log_it = 0;

    (void)ticket;
    if (action < 0 || topic == NULL) {
        return MIDGE_DEFER;
    }
    if (action == ACL_SUBSCRIBE) {
        topic = strip_share(topic);
    }
    pthread_rwlock_rdlock(&st->lock);
    allow = acl_check(st->rs, client_id, username, action, topic, &d);
    gen = st->generation;
    if (!allow &&
        acl_denylog_should_log(&st->denylog, gen, client_id, req->action, req->topic)) {
        /* Copied under the lock: the strings belong to the ruleset a reload may free. */
        acl_decision_place(&d, action, place, sizeof(place));
        snprintf(pattern, sizeof(pattern), "%s", d.rule ? d.rule->pattern : "");
        log_it = 1;
    }
    pthread_rwlock_unlock(&st->lock);
    if (allow) {
        return MIDGE_ALLOW;
    }
    if (st->denied != NULL) {
        st->api->metric_add(st->denied, 1);
    }
    if (log_it) {
        st->api->log(st->self, MIDGE_LOG_INFO,
                     "acl denied client=%s user=%s action=%s topic=%s rule=%s%s%s", client_id,
                     username ? username : "(anonymous)", broker_action_name(req->action),
                     req->topic, place, pattern[0] ? " pattern=" : "", pattern);
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
    pthread_rwlock_wrlock(&st->lock);
    old = st->rs;
    old_file = st->file;
    st->rs = rs;
    st->file = file;
    st->generation++;
    pthread_rwlock_unlock(&st->lock);
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
state_free(struct acl_state *st)
{
    if (st == NULL) {
        return;
    }
    acl_ruleset_free(st->rs);
    free(st->file);
    pthread_rwlock_destroy(&st->lock);
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
    pthread_rwlock_init(&st->lock, NULL);
    acl_denylog_init(&st->denylog);
    if ((st->rs = load_option(st, &st->file)) == NULL) {
        state_free(st);
        return -MIDGE_EINVAL;
    }
    if (MIDGE_API_HAS(api, metric_new) && MIDGE_API_HAS(api, metric_add)) {
        st->denied = api->metric_new(self, "denied", MIDGE_METRIC_COUNTER,
                                     "ACL checks answered deny");
        st->reloads = api->metric_new(self, "reloads", MIDGE_METRIC_COUNTER,
                                      "successful reloads of the rule file");
    }
    if (api->hooks_set(self, &acl_hooks) != 0) {
        api->set_error(self, "hooks_set failed");
        state_free(st);
        return -MIDGE_EINVAL;
    }
    api->log(self, MIDGE_LOG_NOTICE, "acl loaded file=%s entries=%zu rules=%zu", st->file,
             acl_ruleset_entries(st->rs), acl_ruleset_rules(st->rs));
    *state = st;
    return 0;
}

/* Frees everything. [main thread, after the workers stopped] */
MIDGE_EXPORT void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    state_free(state);
}
