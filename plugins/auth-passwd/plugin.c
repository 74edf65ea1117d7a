/*
 * auth-passwd: authenticates CONNECTs against a mosquitto-style password
 * file (docs/auth-passwd.md).
 *
 *     plugin auth-passwd
 *     plugin_opt_password_file /etc/midge/passwd
 *
 * This file: the descriptor, options, init / reload / cleanup, and the
 * connected-client tracking used by disconnect_on_reload. The auth hook
 * and the verification jobs are in auth.c; hashes in hash.c; the file in
 * pwfile.c; the cache in cache.c; the limiter in ratelimit.c.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passwd.h"

static const char *const passwd_options[] = {
    "password_file", "cache_size", "cache_ttl", "fail_delay", "fail_delay_max", "max_failures",
    "failure_window", "max_wait", "unknown_user", "disconnect_on_reload", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("auth-passwd", "1.0",
                             "users and password hashes from a mosquitto-style password file",
                             passwd_options);

/* ---- Options ---------------------------------------------------------------- */

/* Parses option `key` as a number in [min, max] (default `def` when unset). 0 or -1. */
static int
opt_num(struct passwd *pw, const char *key, double def, double min, double max, double *out)
{
    const char *v = pw->api->option(pw->self, key);
    char *end = NULL;
    double d;

    *out = def;
    if (v == NULL) {
        return 0;
    }
    errno = 0;
    d = strtod(v, &end);
    if (end == v || *end != '\0' || errno != 0 || isnan(d) || d < min || d > max) {
        pw->api->set_error(pw->self, "option %s: '%s' is not a number between %g and %g", key, v,
                           min, max);
        return -1;
    }
    *out = d;
    return 0;
}

/* Parses option `key` as one of two words (a = 0, b = 1). 0 or -1. */
static int
opt_word(struct passwd *pw, const char *key, const char *a, const char *b, int def, int *out)
{
    const char *v = pw->api->option(pw->self, key);

    *out = def;
    if (v == NULL) {
        return 0;
    }
    if (strcmp(v, a) == 0) {
        *out = 0;
    } else if (strcmp(v, b) == 0) {
        *out = 1;
    } else {
        pw->api->set_error(pw->self, "option %s: '%s' is neither %s nor %s", key, v, a, b);
        return -1;
    }
    return 0;
}

/* Reads every option into cfg (which then owns path). 0, or -1 after set_error. [main thread] */
static int
cfg_read(struct passwd *pw, struct passwd_cfg *cfg)
{
    const char *path = pw->api->option(pw->self, "password_file");
    double n = 0;

    memset(cfg, 0, sizeof(*cfg));
    if (path == NULL || path[0] == '\0') {
        pw->api->set_error(pw->self, "plugin_opt_password_file is required (the file "
                           "midge_passwd or mosquitto_passwd writes)");
        return -1;
    }
    if (opt_num(pw, "cache_size", 1024, 0, 10000000, &n) != 0) {
        return -1;
    }
    cfg->cache_size = (size_t)n;
    if (opt_num(pw, "cache_ttl", 300, 0, 86400 * 30, &cfg->cache_ttl) != 0 ||
        opt_num(pw, "fail_delay", 0.5, 0, 60, &cfg->limit.delay) != 0 ||
        opt_num(pw, "fail_delay_max", 2, 0, 60, &cfg->limit.delay_max) != 0 ||
        opt_num(pw, "max_failures", 10, 0, 1000000, &n) != 0) {
        return -1;
    }
    cfg->limit.max_failures = (unsigned)n;
    if (opt_num(pw, "failure_window", 60, 0.001, 86400 * 30, &cfg->limit.window) != 0 ||
        opt_num(pw, "max_wait", 3, 0.001, 3600, &cfg->max_wait) != 0 ||
        opt_word(pw, "unknown_user", "deny", "defer", 0, &cfg->unknown_defer) != 0 ||
        opt_word(pw, "disconnect_on_reload", "false", "true", 0, &cfg->disconnect) != 0) {
        return -1;
    }
    if (cfg->limit.delay_max < cfg->limit.delay) {
        pw->api->set_error(pw->self, "option fail_delay_max (%g) is smaller than fail_delay (%g)",
                           cfg->limit.delay_max, cfg->limit.delay);
        return -1;
    }
    cfg->path = strdup(path);
    if (cfg->path == NULL) {
        pw->api->set_error(pw->self, "out of memory");
        return -1;
    }
    return 0;
}

/* Loads cfg->path. 0, or -1 after set_error("FILE:LINE: reason"). [main thread] */
static int
table_load(struct passwd *pw, const struct passwd_cfg *cfg, struct pw_table **out)
{
    char err[PW_ERR_MAX];

    if (pw_table_load(cfg->path, out, err, sizeof(err)) != 0) {
        pw->api->set_error(pw->self, "%s", err);
        return -1;
    }
    if (((*out)->mode & 0077) != 0) {
        pw->api->log(pw->self, MIDGE_LOG_WARNING, "%s is readable or writable by other users "
                     "(mode %04o); chmod 600 it", cfg->path, (unsigned)(*out)->mode);
    }
    if ((*out)->n == 0) {
        pw->api->log(pw->self, MIDGE_LOG_WARNING, "%s has no users: every login with a user "
                     "name is refused", cfg->path);
    }
    return 0;
}

/* ---- Connected clients (for disconnect_on_reload) --------------------------- */

static void
passwd_connected(void *state, midge_client *client)
{
    struct passwd *pw = state;
    const char *user = pw->api->client_username(client);

    if (user != NULL && client_map_add(pw->clients, pw->api->client_id(client), user) != 0) {
        pw->api->log(pw->self, MIDGE_LOG_WARNING, "out of memory: client=%s not tracked for "
                     "disconnect_on_reload", pw->api->client_id(client));
    }
}

static void
passwd_disconnected(void *state, midge_client *client, int reason)
{
    struct passwd *pw = state;

    (void)reason;
    if (pw->api->client_username(client) != NULL) {
        client_map_remove(pw->clients, pw->api->client_id(client));
    }
}

/* The old and new tables, for select_changed(). */
struct table_pair {
    const struct pw_table *old, *fresh;
};

/* 0 (select) when the user was ours and is gone or has a new hash. [lock of the map held] */
static int
keep_client(void *arg, const char *user)
{
    const struct table_pair *tp = arg;
    const struct pw_entry *o = pw_table_find(tp->old, user);
    const struct pw_entry *n;

    if (o == NULL) {
        return 1; /* not authenticated by this file: not ours to judge */
    }
    n = pw_table_find(tp->fresh, user);
    return n != NULL && strcmp(n->hash_text, o->hash_text) == 0;
}

/* Disconnects the clients whose user was removed or got a new password. [main thread] */
static void
disconnect_changed(struct passwd *pw, const struct pw_table *old, const struct pw_table *fresh)
{
    struct table_pair tp = {old, fresh};
    char **ids;
    size_t i;

    if (!MIDGE_API_HAS(pw->api, client_disconnect)) {
        pw->api->log(pw->self, MIDGE_LOG_WARNING, "disconnect_on_reload: this broker cannot "
                     "disconnect clients (no client_disconnect); connected clients stay");
        return;
    }
    ids = client_map_select(pw->clients, keep_client, &tp);
    if (ids == NULL) {
        pw->api->log(pw->self, MIDGE_LOG_ERROR, "disconnect_on_reload: out of memory");
        return;
    }
    for (i = 0; ids[i] != NULL; i++) {
        int rc = pw->api->client_disconnect(pw->self, ids[i], RC_ADMIN_ACTION);

        pw->api->log(pw->self, MIDGE_LOG_NOTICE, "disconnecting client=%s: its user was removed "
                     "or its password changed (rc=%d)", ids[i], rc);
    }
    client_ids_free(ids);
}

/* ---- Reload ------------------------------------------------------------------- */

/*
 * SIGHUP: re-reads the options and the file. A bad option or a broken file
 * changes nothing (the broker logs our "FILE:LINE: reason"). [main thread]
 */
static int
passwd_reload(void *state)
{
    struct passwd *pw = state;
    struct passwd_cfg cfg;
    struct pw_table *fresh = NULL;
    struct pw_table *old;
    int changed;
    int rc = -MIDGE_EINVAL;

    if (cfg_read(pw, &cfg) != 0) {
        goto out;
    }
    if (table_load(pw, &cfg, &fresh) != 0) {
        goto out;
    }
    if (cfg.cache_size != pw->cfg.cache_size) {
        pw->api->log(pw->self, MIDGE_LOG_WARNING, "cache_size=%zu needs a restart; keeping %zu",
                     cfg.cache_size, pw->cfg.cache_size);
        cfg.cache_size = pw->cfg.cache_size;
    }
    pthread_mutex_lock(&pw->lock);
    old = pw->table;
    changed = memcmp(old->digest, fresh->digest, sizeof(old->digest)) != 0;
    pw->table = fresh;
    free(pw->cfg.path);
    pw->cfg = cfg;
    pthread_mutex_unlock(&pw->lock);
    cfg.path = NULL; /* pw->cfg owns it now */
    pw_cache_set_ttl(pw->cache, pw->cfg.cache_ttl);
    pw_limiter_set_cfg(pw->limiter, &pw->cfg.limit);
    if (changed) {
        pw_cache_clear(pw->cache);
        if (pw->cfg.disconnect) {
            disconnect_changed(pw, old, fresh);
        }
    }
    pw->api->log(pw->self, MIDGE_LOG_NOTICE, "reloaded file=%s users=%zu%s", pw->cfg.path,
                 fresh->n, changed ? " (changed: cache emptied)" : " (unchanged)");
    pw_table_free(old); /* hooks copy what they need under the lock: nobody holds it */
    rc = 0;
out:
    free(cfg.path);
    return rc;
}

/* ---- Entry points ---------------------------------------------------------------- */

static const struct midge_hooks passwd_hooks = {
    .size = sizeof(struct midge_hooks),
    .auth = passwd_auth,
    .client_connected = passwd_connected,
    .client_disconnected = passwd_disconnected,
    .reload = passwd_reload,
};

static void
passwd_free(struct passwd *pw)
{
    if (pw == NULL) {
        return;
    }
    passwd_jobs_free(pw);
    pw_table_free(pw->table);
    pw_cache_free(pw->cache);
    pw_limiter_free(pw->limiter);
    client_map_free(pw->clients);
    free(pw->cfg.path);
    pthread_mutex_destroy(&pw->jobs_lock);
    pthread_mutex_destroy(&pw->lock);
    free(pw);
}

static void
metrics_new(struct passwd *pw)
{
    const struct midge_api *api = pw->api;

    if (!MIDGE_API_HAS(api, metric_new) || !MIDGE_API_HAS(api, metric_add) ||
        !MIDGE_API_HAS(api, metric_observe)) {
        return;
    }
    pw->m.ok = api->metric_new(pw->self, "logins_ok", MIDGE_METRIC_COUNTER,
                               "successful logins (cache hits included)");
    pw->m.failed = api->metric_new(pw->self, "logins_failed", MIDGE_METRIC_COUNTER,
                                   "wrong password or unknown user");
    pw->m.cache_hits = api->metric_new(pw->self, "cache_hits", MIDGE_METRIC_COUNTER,
                                       "logins accepted from the verification cache");
    pw->m.blocked = api->metric_new(pw->self, "rate_limited", MIDGE_METRIC_COUNTER,
                                    "logins refused by the failure limiter without hashing");
    pw->m.busy = api->metric_new(pw->self, "busy", MIDGE_METRIC_COUNTER,
                                 "logins refused because the hashing queue was full or slow");
    pw->m.verify_seconds = api->metric_new(pw->self, "verify_seconds", MIDGE_METRIC_HISTOGRAM,
                                           "time of one hash verification");
}

/* Loads the file and registers the hooks; a missing or broken file stops the broker. [main] */
int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct passwd *pw = calloc(1, sizeof(*pw));
    int rc = -MIDGE_ENOMEM;

    if (pw == NULL) {
        api->set_error(self, "out of memory");
        return rc;
    }
    pw->self = self;
    pw->api = api;
    pthread_mutex_init(&pw->lock, NULL);
    pthread_mutex_init(&pw->jobs_lock, NULL);
    rc = -MIDGE_EINVAL;
    if (cfg_read(pw, &pw->cfg) != 0 || table_load(pw, &pw->cfg, &pw->table) != 0) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    pw->cache = pw_cache_new(pw->cfg.cache_size, pw->cfg.cache_ttl);
    pw->limiter = pw_limiter_new(8192, &pw->cfg.limit);
    pw->clients = client_map_new();
    if (pw->cache == NULL || pw->limiter == NULL || pw->clients == NULL) {
        api->set_error(self, "out of memory (or no random bytes for the cache key)");
        goto out;
    }
    pw->async = MIDGE_API_HAS(api, run_blocking);
    pw->timers = MIDGE_API_HAS(api, timer_start) && MIDGE_API_HAS(api, timer_stop);
    if (!pw->async) {
        api->log(self, MIDGE_LOG_WARNING, "this broker has no run_blocking: password hashes "
                 "are computed on the worker threads, which stall meanwhile");
    }
    if (!pw->timers) {
        api->log(self, MIDGE_LOG_WARNING, "this broker has no timers: failed logins are "
                 "answered without delay");
    }
    metrics_new(pw);
    rc = api->hooks_set(self, &passwd_hooks);
    if (rc != 0) {
        api->set_error(self, "hooks_set failed (%d)", rc);
        goto out;
    }
    api->log(self, MIDGE_LOG_NOTICE, "ready file=%s users=%zu mode=%s cache=%zu", pw->cfg.path,
             pw->table->n, pw->async ? "async" : "sync", pw->cfg.cache_size);
    *state = pw;
    pw = NULL;
    rc = 0;
out:
    passwd_free(pw);
    return rc;
}

/* Called once at shutdown, after every worker stopped. [main thread] */
void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    passwd_free(state);
}
