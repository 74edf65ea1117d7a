/*
 * Loading plugins: resolving names, dlopen, descriptor and ABI checks,
 * declared options, unique instance names, init and cleanup, SIGHUP reload.
 * Main thread only.
 */
#include "plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "mainloop.h"
#include "midge_build.h"
#include "persist.h"

struct midge_plugin *plugins;
int plugins_auth_active;
int plugins_acl_active;
int plugins_forward_active;
int plugins_events_active;
int plugins_message_in_active;
int plugins_message_out_active;
int plugins_sub_events_active;
int plugins_session_events_active;
unsigned plugins_count;
atomic_int plugins_ready;

static unsigned metric_threads; /* shards: workers + 1 for the main thread */

/* "FILE:LINE: " prefix for messages about a plugin line. */
static int
where(char *buf, size_t len, const struct plugin_conf *pc)
{
    return snprintf(buf, len, "%s:%d: ", pc->file, pc->line);
}

/* Resolves a bare name to plugin_dir/NAME.so; a name with a '/' is a path. */
static char *
resolve(const struct config *cfg, const char *name)
{
    char *path;
    size_t n;

    if (strchr(name, '/') != NULL) {
        return strdup(name);
    }
    n = strlen(cfg->plugin_dir) + strlen(name) + 5;
    path = malloc(n);
    if (path != NULL) {
        snprintf(path, n, "%s/%s%s", cfg->plugin_dir, name,
                 strlen(name) > 3 && strcmp(name + strlen(name) - 3, ".so") == 0 ? "" : ".so");
    }
    return path;
}

static void
instance_free(struct midge_plugin *p)
{
    if (p->dl != NULL) {
        dlclose(p->dl);
    }
    free(p->name);
    free(p->path);
    free(p->listener_address);
    free(p->metrics);
    plugin_user_metrics_free(p);
    pthread_mutex_destroy(&p->svc_lock);
    free(p);
}

/* Checks every plugin_opt_ key against the descriptor's declared options. */
static int
check_options(const struct midge_plugin *p, const struct plugin_conf *pc, char *err, size_t len)
{
    const struct plugin_opt *o;
    const char *const *known = NULL;

    if (MIDGE_HAS_FIELD(struct midge_plugin_descriptor, p->desc, options)) {
        known = p->desc->options;
    }
    if (known == NULL) {
        return 0;
    }
    for (o = pc->opts; o != NULL; o = o->next) {
        size_t i;
        int ok = 0;
        for (i = 0; known[i] != NULL; i++) {
            if (strcmp(known[i], o->key) == 0) {
                ok = 1;
            }
        }
        if (!ok) {
            int n = snprintf(err, len, "%s:%d: plugin '%s' does not know option '%s' (it accepts: ",
                             pc->file, o->line, p->name, o->key);
            for (i = 0; known[i] != NULL && n > 0 && (size_t)n < len; i++) {
                n += snprintf(err + n, len - (size_t)n, "%s%s", i ? ", " : "", known[i]);
            }
            if (i == 0 && n > 0 && (size_t)n < len) {
                n += snprintf(err + n, len - (size_t)n, "no options");
            }
            if (n > 0 && (size_t)n < len) {
                snprintf(err + n, len - (size_t)n, ")");
            }
            return -1;
        }
    }
    return 0;
}

/* Opens one plugin line into an instance (no init yet). */
static struct midge_plugin *
open_one(const struct config *cfg, const struct plugin_conf *pc, char *err, size_t len)
{
    struct midge_plugin *p = calloc(1, sizeof(*p));
    int n;

    if (p == NULL) {
        snprintf(err, len, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->svc_lock, NULL);
    n = where(err, len, pc);
    p->path = resolve(cfg, pc->path);
    if (p->path == NULL) {
        snprintf(err + n, len - (size_t)n, "out of memory");
        goto fail;
    }
    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        snprintf(err + n, len - (size_t)n, "plugin '%s': cannot load %s: %s", pc->path, p->path,
                 dlerror());
        goto fail;
    }
    p->desc = dlsym(p->dl, "midge_plugin_descriptor");
    if (p->desc == NULL) {
        snprintf(err + n, len - (size_t)n,
                 "plugin '%s': %s is not a midge plugin (no midge_plugin_descriptor symbol)",
                 pc->path, p->path);
        goto fail;
    }
    if (p->desc->size < offsetof(struct midge_plugin_descriptor, description) +
                            sizeof(p->desc->description) ||
        p->desc->abi_major != MIDGE_ABI_MAJOR) {
        snprintf(err + n, len - (size_t)n,
                 "plugin '%s': built for plugin ABI %u.%u, but this midge provides ABI %d.%d: "
                 "rebuild it against midge %s",
                 pc->path, p->desc->abi_major, p->desc->abi_minor, MIDGE_ABI_MAJOR,
                 MIDGE_ABI_MINOR, PACKAGE_VERSION);
        goto fail;
    }
    *(void **)(&p->init) = dlsym(p->dl, "midge_plugin_init");
    *(void **)(&p->cleanup) = dlsym(p->dl, "midge_plugin_cleanup");
    if (p->init == NULL) {
        snprintf(err + n, len - (size_t)n, "plugin '%s': %s has no midge_plugin_init function",
                 pc->path, p->path);
        goto fail;
    }
    p->name = strdup(pc->instance != NULL ? pc->instance
                     : p->desc->name != NULL ? p->desc->name
                                             : pc->path);
    p->listener_address = pc->listener_address ? strdup(pc->listener_address) : NULL;
    p->metrics = calloc((size_t)metric_threads * PH_COUNT, sizeof(*p->metrics));
    p->metric_shards = metric_threads;
    if (p->name == NULL || p->metrics == NULL) {
        snprintf(err + n, len - (size_t)n, "out of memory");
        goto fail;
    }
    p->conf = pc;
    p->per_listener = pc->per_listener;
    p->listener_port = pc->listener_port;
    p->timeout_ms = pc->timeout_ms;
    p->timeout_allow = pc->timeout_allow;
    p->pool_threads = pc->threads ? pc->threads : 1;
    p->pool_queue = pc->queue ? pc->queue : 1024;
    if (check_options(p, pc, err, len) < 0) {
        goto fail;
    }
    return p;
fail:
    instance_free(p);
    return NULL;
}

static const struct plugin_conf *
conf_of(const struct config *cfg, const struct midge_plugin *p)
{
    const struct plugin_conf *pc;

    for (pc = cfg->plugins; pc != NULL; pc = pc->next) {
        if (pc == p->conf) {
            return pc;
        }
    }
    return NULL;
}

/* Loads every plugin line; see plugin.h. */
int
plugins_load(const struct config *cfg, unsigned nthreads, int call_init, char *err, size_t len)
{
    const struct plugin_conf *pc;
    struct midge_plugin **tail = &plugins;
    struct midge_plugin *p;

    metric_threads = nthreads + 1;
    for (pc = cfg->plugins; pc != NULL; pc = pc->next) {
        struct midge_plugin *q;
        p = open_one(cfg, pc, err, len);
        if (p == NULL) {
            return -1;
        }
        for (q = plugins; q != NULL; q = q->next) {
            if (strcmp(q->name, p->name) == 0) {
                const struct plugin_conf *qc = conf_of(cfg, q);
                snprintf(err, len,
                         "%s:%d: plugin instance name '%s' is already used by the plugin at "
                         "%s:%d (set plugin_instance)",
                         pc->file, pc->line, p->name, qc ? qc->file : "?", qc ? qc->line : 0);
                instance_free(p);
                return -1;
            }
        }
        p->index = plugins_count++;
        *tail = p;
        tail = &p->next;
    }
    if (!call_init) {
        return 0;
    }
    for (p = plugins; p != NULL; p = p->next) {
        int r;
        p->err[0] = 0;
        p->in_init = 1;
        r = p->init(p, &plugin_api, &p->state);
        p->in_init = 0;
        if (r != 0) {
            snprintf(err, len, "%s:%d: plugin '%s': init failed: %s", p->conf->file,
                     p->conf->line, p->name, p->err[0] ? p->err : "no reason given");
            return -1;
        }
        p->initialised = 1;
        plugins_auth_active |= PLUGIN_HAS(p, auth);
        plugins_acl_active |= PLUGIN_HAS(p, acl);
        plugins_forward_active |= PLUGIN_HAS(p, publish_accepted);
        persist_holds_possible |= PLUGIN_HAS(p, publish_accepted);
        plugins_events_active |= PLUGIN_HAS(p, client_connected) ||
                                 PLUGIN_HAS(p, client_disconnected);
        plugins_message_in_active |= PLUGIN_HAS(p, message_in);
        plugins_message_out_active |= PLUGIN_HAS(p, message_out);
        plugins_sub_events_active |= PLUGIN_HAS(p, subscribed) || PLUGIN_HAS(p, unsubscribed);
        if (PLUGIN_HAS(p, persist)) {
            if (persist_active) {
                snprintf(err, len, "%s:%d: plugin '%s': a persistence plugin is already loaded "
                         "(only one may keep the broker's state)", p->conf->file, p->conf->line,
                         p->name);
                return -1;
            }
            persist_set_plugin(p);
        }
        plugins_session_events_active |= PLUGIN_HAS(p, session_created) ||
                                         PLUGIN_HAS(p, session_ended) ||
                                         PLUGIN_HAS(p, will_published);
        midge_log(MLOG_NOTICE, "plugin loaded plugin=%s file=%s version=%s abi=%u.%u", p->name,
                  p->path, p->desc->version ? p->desc->version : "?", p->desc->abi_major,
                  p->desc->abi_minor);
    }
    atomic_store_explicit(&plugins_ready, 1, memory_order_release);
    return 0;
}

/*
 * Cleans up and unloads every instance, last loaded first. The blocking
 * pools finish their queued jobs first and every `done` callback and other
 * call still queued runs (on this thread: the workers are gone), so cleanup
 * sees no job in flight.
 */
void
plugins_unload(void)
{
    struct midge_plugin *q;

    for (q = plugins; q != NULL; q = q->next) {
        plugin_services_stop(q);
    }
    main_calls_run();
    plugin_internal_subs_clear();
    while (plugins != NULL) {
        struct midge_plugin *p = plugins;
        struct midge_plugin *prev = NULL;
        /* Reverse order: a later plugin may rely on an earlier one. */
        while (p->next != NULL) {
            prev = p;
            p = p->next;
        }
        if (p->initialised && p->cleanup != NULL) {
            p->cleanup(p, p->state);
        }
        plugin_services_free(p);
        if (prev != NULL) {
            prev->next = NULL;
        } else {
            plugins = NULL;
        }
        instance_free(p);
    }
    plugins_auth_active = plugins_acl_active = plugins_events_active = 0;
    plugins_forward_active = persist_holds_possible = 0;
    plugins_message_in_active = plugins_message_out_active = 0;
    plugins_sub_events_active = plugins_session_events_active = 0;
    plugins_count = 0;
    atomic_store_explicit(&plugins_ready, 0, memory_order_relaxed);
    persist_set_plugin(NULL);
}

/* The plugin line of the new config that is the same instance as p. */
static const struct plugin_conf *
match_new(const struct config *cfg, const struct midge_plugin *p)
{
    const struct plugin_conf *pc;

    for (pc = cfg->plugins; pc != NULL; pc = pc->next) {
        const char *name = pc->instance ? pc->instance : NULL;
        if (name != NULL ? strcmp(name, p->name) == 0
                         : (strcmp(pc->path, p->conf->path) == 0 && p->conf->instance == NULL)) {
            return pc;
        }
    }
    return NULL;
}

static int
options_equal(const struct plugin_conf *a, const struct plugin_conf *b)
{
    const struct plugin_opt *x = a->opts;
    const struct plugin_opt *y = b->opts;

    for (; x != NULL && y != NULL; x = x->next, y = y->next) {
        if (strcmp(x->key, y->key) != 0 || strcmp(x->value, y->value) != 0) {
            return 0;
        }
    }
    return x == NULL && y == NULL;
}

/*
 * SIGHUP: instances keep their identity (adding or removing plugin lines
 * needs a restart, which the caller reports); each gets its new options and
 * broker-side settings, and its reload hook. A failed reload, or an
 * instance without a reload hook, keeps the old options.
 */
void
plugins_reload(const struct config *cfg)
{
    struct midge_plugin *p;
    int acl_reloaded = 0;

    for (p = plugins; p != NULL; p = p->next) {
        const struct plugin_conf *pc = match_new(cfg, p);
        const struct plugin_conf *old = p->conf;
        int rc;
        if (pc == NULL) {
            midge_log(MLOG_WARNING, "reload: plugin=%s is no longer configured; it keeps running "
                      "until a restart", p->name);
            continue;
        }
        p->timeout_ms = pc->timeout_ms;
        p->timeout_allow = pc->timeout_allow;
        if (!PLUGIN_HAS(p, reload)) {
            if (options_equal(old, pc)) {
                p->conf = pc;
            } else {
                midge_log(MLOG_WARNING, "reload: plugin=%s has no reload hook and keeps its old "
                          "options until a restart", p->name);
            }
            continue;
        }
        /* Called even with unchanged options: SIGHUP is how admins make plugins re-read files. */
        p->conf = pc;
        p->err[0] = 0;
        rc = p->hooks->reload(p->state);
        /*
         * After the hook: new rules may deny what a standing answer allowed,
         * so those set until now lapse (api->client_acl_standing).
         */
        atomic_fetch_add(&p->acl_reloads, 1);
        if (rc != 0) {
            p->conf = old;
            midge_log(MLOG_ERROR, "reload: plugin=%s refused its new options, keeping the old "
                      "ones: %s", p->name, p->err[0] ? p->err : "no reason given");
        } else {
            midge_log(MLOG_NOTICE, "reload: plugin=%s reloaded", p->name);
            if (PLUGIN_HAS(p, acl)) {
                acl_reloaded = 1;
            }
        }
    }
    if (acl_reloaded) {
        plugin_acl_recheck_all();
    }
}

/* Per-thread start hooks. [that worker thread] */
void
plugins_thread_start(unsigned worker)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (PLUGIN_HAS(p, thread_start)) {
            p->hooks->thread_start(p->state, worker);
        }
    }
}

/* Per-thread stop hooks. [that worker thread] */
void
plugins_thread_stop(unsigned worker)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (PLUGIN_HAS(p, thread_stop)) {
            p->hooks->thread_stop(p->state, worker);
        }
    }
}

/* Tick hooks, once a second. Main thread. */
void
plugins_tick(void)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (PLUGIN_HAS(p, tick)) {
            p->hooks->tick(p->state);
        }
    }
}
