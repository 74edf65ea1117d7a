/*
 * Plugin instances of the fake broker: options, loading (the broker's
 * descriptor checks, then init), reload, unload, and the API entries that
 * belong to init/reload (option, option_next, set_error, hooks_set,
 * instance_name). Instance fields are written by the test's main thread
 * only, between hooks.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/* ---- Options ------------------------------------------------------------- */

static void
opts_free(struct opts *o)
{
    size_t i;

    for (i = 0; i < o->n; i++) {
        free(o->v[i].key);
        free(o->v[i].value);
    }
    free(o->v);
    o->v = NULL;
    o->n = o->cap = 0;
}

static const char *
opts_get(const struct opts *o, const char *key)
{
    size_t i;

    for (i = 0; i < o->n; i++) {
        if (strcmp(o->v[i].key, key) == 0) {
            return o->v[i].value;
        }
    }
    return NULL;
}

/* Sets, replaces or (value NULL) removes key. 0 or -MIDGE_ENOMEM. */
static int
opts_set(struct opts *o, const char *key, const char *value)
{
    char *k = NULL;
    char *v = NULL;
    size_t i;
    int rc = -MIDGE_ENOMEM;

    for (i = 0; i < o->n && strcmp(o->v[i].key, key) != 0; i++) {
    }
    if (value == NULL) {
        if (i < o->n) {
            free(o->v[i].key);
            free(o->v[i].value);
            memmove(&o->v[i], &o->v[i + 1], (o->n - i - 1) * sizeof(o->v[0]));
            o->n--;
        }
        rc = 0;
        goto out;
    }
    if ((v = strdup(value)) == NULL) {
        goto out;
    }
    if (i < o->n) {
        free(o->v[i].value);
        o->v[i].value = v;
        v = NULL;
        rc = 0;
        goto out;
    }
    if ((k = strdup(key)) == NULL) {
        goto out;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        struct opt *nv = realloc(o->v, cap * sizeof(*nv));
        if (nv == NULL) {
            goto out;
        }
        o->v = nv;
        o->cap = cap;
    }
    o->v[o->n].key = k;
    o->v[o->n].value = v;
    o->n++;
    k = v = NULL;
    rc = 0;
out:
    free(k);
    free(v);
    return rc;
}

/* dst = copy of src. 0 or -MIDGE_ENOMEM (dst unchanged). */
static int
opts_copy(struct opts *dst, const struct opts *src)
{
    struct opts tmp = {NULL, 0, 0};
    size_t i;
    int rc = 0;

    for (i = 0; i < src->n && rc == 0; i++) {
        rc = opts_set(&tmp, src->v[i].key, src->v[i].value);
    }
    if (rc != 0) {
        opts_free(&tmp);
        goto out;
    }
    opts_free(dst);
    *dst = tmp;
out:
    return rc;
}

/* 1 when the calling thread is inside p's init or reload. */
int
fake_configuring(const midge_plugin *p)
{
    return atomic_load(&p->config_thread) == fake_this_thread();
}

/* 1 when the calling thread runs p's init, reload or tick (the broker's main-thread hooks). */
int
fake_on_main_context(const midge_plugin *p)
{
    return fake_configuring(p) || atomic_load(&p->tick_thread) == fake_this_thread();
}


/* ---- The API entries of init and reload ----------------------------------- */

static const char *
api_option(midge_plugin *self, const char *key)
{
    const char *v = NULL;

    if (!fake_configuring(self)) {
        fake_bug(self->fb, self, "api->option(\"%s\") called outside init/reload (copy options "
            "you need later)", key != NULL ? key : "(null)");
        goto out;
    }
    if (key != NULL) {
        v = opts_get(&self->staged, key);
    }
out:
    return v;
}

static int
api_option_next(midge_plugin *self, size_t *pos, const char **key, const char **value)
{
    int rc = 0;

    if (!fake_configuring(self)) {
        fake_bug(self->fb, self, "api->option_next() called outside init/reload");
        goto out;
    }
    if (pos == NULL || key == NULL || value == NULL || *pos >= self->staged.n) {
        goto out;
    }
    *key = self->staged.v[*pos].key;
    *value = self->staged.v[*pos].value;
    (*pos)++;
    rc = 1;
out:
    return rc;
}

static void MIDGE_PRINTF(2, 3)
api_set_error(midge_plugin *self, const char *fmt, ...)
{
    va_list ap;

    if (!fake_configuring(self)) {
        fake_bug(self->fb, self, "api->set_error() called outside init/reload");
        return;
    }
    if (fmt == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(self->err, sizeof(self->err), fmt, ap);
    va_end(ap);
}

static int
api_hooks_set(midge_plugin *self, const struct midge_hooks *hooks)
{
    int rc = -MIDGE_EINVAL;

    if (!fake_configuring(self) || !self->in_init) {
        fake_bug(self->fb, self, "api->hooks_set() called outside init");
        goto out;
    }
    if (hooks == NULL || hooks->size < sizeof(uint32_t)) {
        fake_bug(self->fb, self, "api->hooks_set() with %s", hooks == NULL ? "NULL" : "size 0");
        goto out;
    }
    if (self->hooks != NULL) {
        fake_bug(self->fb, self, "api->hooks_set() called twice");
        goto out;
    }
    self->hooks = hooks;
    rc = 0;
out:
    return rc;
}


static const char *
api_instance_name(const midge_plugin *self)
{
    return self->name;
}

/*
 * api->plugin_list: every loaded instance, in load order. The fake does
 * not measure hooks (hook_count 0). The test loads plugins on its main
 * thread; a plugin's own thread may list them meanwhile only once loading
 * is over, as in the broker.
 */
static int
api_plugin_list(midge_plugin *self, int (*cb)(void *arg, const struct midge_plugin_info *info),
                void *arg)
{
    const midge_plugin *p;
    int calls = 0;

    if (self == NULL || cb == NULL) {
        return -MIDGE_EINVAL;
    }
    for (p = self->fb->plugins; p != NULL; p = p->next) {
        struct midge_plugin_info info;
        if (!p->loaded) {
            continue;
        }
        memset(&info, 0, sizeof(info));
        info.size = sizeof(info);
        info.instance = p->name;
        info.name = p->desc->name;
        info.version = p->desc->version;
        info.description = p->desc->description;
        info.path = p->dl != NULL ? "(opened by the test)" : "(in the test binary)";
        calls++;
        if (cb(arg, &info) != 0) {
            break;
        }
    }
    return calls;
}

/* The entries of the API table that this file implements. */
void
fake_plugins_api_fill(struct midge_api *a)
{
    a->plugin_list = api_plugin_list;
    a->option = api_option;
    a->option_next = api_option_next;
    a->set_error = api_set_error;
    a->hooks_set = api_hooks_set;
    a->instance_name = api_instance_name;
}

/* ---- Instances ------------------------------------------------------------ */

static midge_plugin *
plugin_alloc(midge_test_broker *fb)
{
    midge_plugin *p = calloc(1, sizeof(*p));
    midge_plugin **tail;

    if (p == NULL) {
        goto out;
    }
    p->fb = fb;
    for (tail = &fb->plugins; *tail != NULL; tail = &(*tail)->next) {
    }
    *tail = p;
out:
    return p;
}

/* An instance of a plugin linked into the test; see plugin_test.h. */
midge_plugin *
midge_test_plugin_new(midge_test_broker *fb, const struct midge_plugin_descriptor *desc,
                      int (*init)(midge_plugin *, const struct midge_api *, void **),
                      void (*cleanup)(midge_plugin *, void *))
{
    midge_plugin *p = NULL;

    if (fb == NULL || desc == NULL || init == NULL) {
        goto out;
    }
    p = plugin_alloc(fb);
    if (p == NULL) {
        goto out;
    }
    p->desc = desc;
    p->init = init;
    p->cleanup = cleanup;
out:
    return p;
}

/* An instance of a plugin shared object; see plugin_test.h. */
midge_plugin *
midge_test_plugin_open(midge_test_broker *fb, const char *path)
{
    midge_plugin *p = NULL;
    void *sym;

    if (fb == NULL || path == NULL) {
        goto out;
    }
    p = plugin_alloc(fb);
    if (p == NULL) {
        goto out;
    }
    p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        snprintf(p->open_err, sizeof(p->open_err), "cannot load %s: %s", path, dlerror());
        goto out;
    }
    p->desc = dlsym(p->dl, "midge_plugin_descriptor");
    if (p->desc == NULL) {
        snprintf(p->open_err, sizeof(p->open_err),
                 "%s is not a midge plugin (no midge_plugin_descriptor symbol)", path);
        goto out;
    }
    /* POSIX guarantees that dlsym's object pointer converts to a function pointer. */
    sym = dlsym(p->dl, "midge_plugin_init");
    p->init = (int (*)(midge_plugin *, const struct midge_api *, void **))sym;
    sym = dlsym(p->dl, "midge_plugin_cleanup");
    p->cleanup = (void (*)(midge_plugin *, void *))sym;
    if (p->init == NULL) {
        snprintf(p->open_err, sizeof(p->open_err), "%s has no midge_plugin_init function", path);
        goto out;
    }
out:
    return p;
}

/* Sets the instance name; see plugin_test.h. */
int
midge_test_set_instance(midge_plugin *p, const char *name)
{
    char *copy = NULL;
    int rc = -MIDGE_ESTATE;

    if (p->loaded) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    if (name != NULL && (copy = strdup(name)) == NULL) {
        goto out;
    }
    free(p->name_set);
    p->name_set = copy;
    rc = 0;
out:
    return rc;
}

/* Stages an option; see plugin_test.h. */
int
midge_test_option(midge_plugin *p, const char *key, const char *value)
{
    if (p == NULL || key == NULL || key[0] == '\0') {
        return -MIDGE_EINVAL;
    }
    return opts_set(&p->staged, key, value);
}

/* Removes every staged option; see plugin_test.h. */
void
midge_test_option_clear(midge_plugin *p)
{
    opts_free(&p->staged);
}

/* The descriptor's checks, as the broker's loader does them. 0 or negative with p->err set. */
static int
check_descriptor(midge_plugin *p, const char *name)
{
    const struct midge_plugin_descriptor *d = p->desc;
    const midge_plugin *q;
    size_t i;
    size_t k;
    int rc = -MIDGE_EINVAL;

    if (d->size < offsetof(struct midge_plugin_descriptor, description) +
                      sizeof(d->description) ||
        d->abi_major != MIDGE_ABI_MAJOR) {
        snprintf(p->err, sizeof(p->err),
                 "built for plugin ABI %u.%u, but this midge provides ABI %d.%d: rebuild it "
                 "against this midge",
                 (unsigned)d->abi_major, (unsigned)d->abi_minor, MIDGE_ABI_MAJOR,
                 MIDGE_ABI_MINOR);
        goto out;
    }
    for (q = p->fb->plugins; q != NULL; q = q->next) {
        if (q != p && q->loaded && strcmp(q->name, name) == 0) {
            snprintf(p->err, sizeof(p->err),
                     "plugin instance name '%s' is already used (set plugin_instance)", name);
            goto out;
        }
    }
    if (!MIDGE_HAS_FIELD(struct midge_plugin_descriptor, d, options) || d->options == NULL) {
        rc = 0;
        goto out;
    }
    for (k = 0; k < p->staged.n; k++) {
        int known = 0;
        for (i = 0; d->options[i] != NULL; i++) {
            known |= strcmp(d->options[i], p->staged.v[k].key) == 0;
        }
        if (!known) {
            size_t n = (size_t)snprintf(p->err, sizeof(p->err),
                                        "plugin '%s' does not know option '%s' (it accepts: ",
                                        name, p->staged.v[k].key);
            for (i = 0; d->options[i] != NULL && n < sizeof(p->err); i++) {
                n += (size_t)snprintf(p->err + n, sizeof(p->err) - n, "%s%s", i ? ", " : "",
                                      d->options[i]);
            }
            if (n < sizeof(p->err)) {
                snprintf(p->err + n, sizeof(p->err) - n, "%s)", i == 0 ? "no options" : "");
            }
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

/*
 * Frees what the broker frees for a plugin after cleanup (or after a failed
 * init): timers, fd watchers and internal subscriptions it still has, and
 * its blocking worker. Metrics stay readable until the next load.
 */
static void
release(midge_plugin *p)
{
    fake_blocking_unload(p);
    fake_loop_unload(p);
    fake_subs_unload(p);
    fake_isessions_unload(p);
}

/* Loads (checks, init); see plugin_test.h. */
int
midge_test_load(midge_plugin *p)
{
    const char *name;
    void *state = NULL;
    int rc;

    p->err[0] = '\0';
    if (p->loaded) {
        snprintf(p->err, sizeof(p->err), "already loaded");
        rc = -MIDGE_ESTATE;
        goto out;
    }
    if (p->open_err[0] != '\0') {
        snprintf(p->err, sizeof(p->err), "%s", p->open_err);
        rc = -MIDGE_ENOENT;
        goto out;
    }
    name = p->name_set != NULL ? p->name_set
           : p->desc->name != NULL ? p->desc->name
                                   : "plugin";
    rc = check_descriptor(p, name);
    if (rc != 0) {
        goto out;
    }
    p->name = name;
    p->hooks = NULL;
    fake_metrics_drop(p); /* those of a previous load */
    p->in_init = 1;
    atomic_store(&p->config_thread, fake_this_thread());
    rc = p->init(p, &p->fb->api, &state);
    atomic_store(&p->config_thread, 0);
    p->in_init = 0;
    if (rc != 0) {
        if (rc > 0) {
            fake_bug(p->fb, p, "init returned %d: 0 or a negative error expected", rc);
        }
        if (p->err[0] == '\0') {
            fake_bug(p->fb, p, "init failed (%d) without explaining why with api->set_error()", rc);
            snprintf(p->err, sizeof(p->err), "no reason given");
        }
        release(p);
        p->hooks = NULL;
        p->name = NULL;
        rc = rc > 0 ? -MIDGE_EINVAL : rc;
        goto out;
    }
    if (opts_copy(&p->active, &p->staged) != 0) {
        /* The plugin is up; only our bookkeeping failed. Undo it cleanly. */
        if (p->cleanup != NULL) {
            p->cleanup(p, state);
        }
        release(p);
        p->hooks = NULL;
        p->name = NULL;
        snprintf(p->err, sizeof(p->err), "out of memory");
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    p->state = state;
    p->loaded = 1;
    p->load_seq = ++p->fb->load_seq;
out:
    return rc;
}

/* Simulates SIGHUP; see plugin_test.h. */
int
midge_test_reload(midge_plugin *p)
{
    int rc = -MIDGE_ESTATE;

    p->err[0] = '\0';
    if (!p->loaded) {
        goto out;
    }
    rc = -MIDGE_ENOTSUP;
    if (!HOOK_HAS(p, reload)) {
        goto out;
    }
    atomic_store(&p->config_thread, fake_this_thread());
    rc = p->hooks->reload(p->state);
    atomic_store(&p->config_thread, 0);
    if (rc != 0) {
        if (rc > 0) {
            fake_bug(p->fb, p, "reload returned %d: 0 or a negative error expected", rc);
            rc = -MIDGE_EINVAL;
        }
        if (p->err[0] == '\0') {
            snprintf(p->err, sizeof(p->err), "no reason given");
        }
        goto out;
    }
    if (opts_copy(&p->active, &p->staged) != 0) {
        snprintf(p->err, sizeof(p->err), "out of memory (harness)");
        rc = -MIDGE_ENOMEM;
    }
out:
    return rc;
}

/*
 * Unloads as the broker shuts an instance down: connections end first
 * (per-client data freed), queued blocking jobs run, then cleanup, then the
 * broker frees what the plugin left; see plugin_test.h.
 */
void
midge_test_unload(midge_plugin *p)
{
    midge_client *c;

    if (p == NULL || !p->loaded) {
        return;
    }
    for (c = p->fb->clients; c != NULL; c = c->next) {
        fake_client_data_release(c, p);
    }
    fake_blocking_unload(p);
    if (p->cleanup != NULL) {
        p->cleanup(p, p->state);
    }
    fake_tickets_unload(p);
    release(p);
    p->loaded = 0;
    p->state = NULL;
    p->hooks = NULL;
}

/* The last load/reload error; see plugin_test.h. */
const char *
midge_test_error(const midge_plugin *p)
{
    return p->err;
}

/* An option in force; see plugin_test.h. */
const char *
midge_test_option_in_force(const midge_plugin *p, const char *key)
{
    return key != NULL ? opts_get(&p->active, key) : NULL;
}

/* The plugin's state pointer; see plugin_test.h. */
void *
midge_test_state(const midge_plugin *p)
{
    return p->loaded ? p->state : NULL;
}


/* Frees every instance (all unloaded by now) and closes the shared objects. */
void
fake_plugins_free(midge_test_broker *fb)
{
    while (fb->plugins != NULL) {
        midge_plugin *p = fb->plugins;
        fb->plugins = p->next;
        opts_free(&p->staged);
        opts_free(&p->active);
        free(p->name_set);
        if (p->dl != NULL) {
            dlclose(p->dl);
        }
        free(p);
    }
}
