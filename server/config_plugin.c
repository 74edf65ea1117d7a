/* Configuration of plugins: plugin, listener_plugin, plugin_opt_KEY, plugin_instance, ... */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

static int
str_differs(const char *a, const char *b)
{
    return (a == NULL || b == NULL) ? a != b : strcmp(a, b) != 0;
}

/* Frees one plugin line and its options. */
void
conf_plugin_free(struct plugin_conf *pc)
{
    while (pc->opts != NULL) {
        struct plugin_opt *o = pc->opts;
        pc->opts = o->next;
        free(o->key);
        free(o->value);
        free(o);
    }
    free(pc->path);
    free(pc->instance);
    free(pc->listener_address);
    free(pc->file);
    free(pc);
}

/* `plugin PATH` (off 0) and `listener_plugin PATH` (off 1): a new chain entry. */
int
conf_set_plugin(struct parser *p, const struct directive *d, char *args)
{
    struct plugin_conf *pc;
    struct plugin_conf **tail;

    if (args[0] == '\0') {
        return conf_error(p, "%s: missing plugin name or path", d->name);
    }
    pc = calloc(1, sizeof(*pc));
    if (pc == NULL) {
        return conf_error(p, "%s: out of memory", d->name);
    }
    pc->path = strdup(args);
    pc->file = strdup(p->file);
    pc->line = p->line;
    pc->timeout_ms = 5000;
    pc->threads = 1;
    pc->queue = 1024;
    if (d->off == 1) {
        pc->per_listener = 1;
        pc->listener_port = p->last->port;
        if (p->last->bind_address != NULL) {
            pc->listener_address = strdup(p->last->bind_address);
        }
    }
    if (pc->path == NULL || pc->file == NULL) {
        conf_plugin_free(pc);
        return conf_error(p, "%s: out of memory", d->name);
    }
    for (tail = &p->cfg->plugins; *tail != NULL; tail = &(*tail)->next) {
    }
    *tail = pc;
    p->last_plugin = pc;
    return 0;
}

/* `plugin_opt_KEY VALUE`: an option for the most recent plugin line. */
int
conf_set_plugin_opt(struct parser *p, const char *key, char *args)
{
    struct plugin_opt *o;
    struct plugin_opt **tail;

    if (p->last_plugin == NULL) {
        return conf_error(p, "plugin_opt_%s must follow a plugin or listener_plugin line", key);
    }
    if (key[0] == '\0') {
        return conf_error(p, "plugin_opt_: missing option name (plugin_opt_KEY VALUE)");
    }
    for (o = p->last_plugin->opts; o != NULL; o = o->next) {
        if (strcmp(o->key, key) == 0) {
            return conf_error(p, "plugin_opt_%s is already set for this plugin", key);
        }
    }
    o = calloc(1, sizeof(*o));
    if (o == NULL || (o->key = strdup(key)) == NULL || (o->value = strdup(args)) == NULL) {
        if (o != NULL) {
            free(o->key);
            free(o);
        }
        return conf_error(p, "plugin_opt_%s: out of memory", key);
    }
    o->line = p->line;
    for (tail = &p->last_plugin->opts; *tail != NULL; tail = &(*tail)->next) {
    }
    *tail = o;
    return 0;
}

/*
 * plugin_instance (off 1), plugin_timeout (2), plugin_timeout_verdict (3),
 * plugin_threads (4), plugin_queue (5).
 */
int
conf_set_plugin_setting(struct parser *p, const struct directive *d, char *args)
{
    struct plugin_conf *pc = p->last_plugin;
    char *w;

    if (pc == NULL) {
        return conf_error(p, "%s must follow a plugin or listener_plugin line", d->name);
    }
    if (conf_one_word(p, d, args, &w) < 0) {
        return -1;
    }
    if (d->off == 1) {
        free(pc->instance);
        pc->instance = strdup(w);
        return pc->instance ? 0 : conf_error(p, "%s: out of memory", d->name);
    }
    if (d->off == 2) {
        char *end;
        double s;
        errno = 0;
        s = strtod(w, &end);
        if (errno != 0 || *end != '\0' || end == w || !(s > 0) || s > 3600) {
            return conf_error(p, "plugin_timeout: expected seconds between 0 and 3600, got '%s'", w);
        }
        pc->timeout_ms = (unsigned)(s * 1000 + 0.5);
        if (pc->timeout_ms == 0) {
            pc->timeout_ms = 1;
        }
        return 0;
    }
    if (d->off == 4 || d->off == 5) {
        char *end;
        long n;
        long max = d->off == 4 ? 64 : 1000000;
        errno = 0;
        n = strtol(w, &end, 10);
        if (errno != 0 || *end != '\0' || end == w || n < 1 || n > max) {
            return conf_error(p, "%s: expected a number from 1 to %ld, got '%s'", d->name, max, w);
        }
        if (d->off == 4) {
            pc->threads = (unsigned)n;
        } else {
            pc->queue = (unsigned)n;
        }
        return 0;
    }
    if (strcmp(w, "allow") == 0 || strcmp(w, "deny") == 0) {
        pc->timeout_allow = w[0] == 'a';
        return 0;
    }
    return conf_error(p, "plugin_timeout_verdict: expected allow or deny, got '%s'", w);
}

/* 1 when both configs load the same plugin instances in the same order. */
int
conf_same_plugins(const struct plugin_conf *a, const struct plugin_conf *b)
{
    for (; a != NULL && b != NULL; a = a->next, b = b->next) {
        if (strcmp(a->path, b->path) != 0 || str_differs(a->instance, b->instance) ||
            a->per_listener != b->per_listener || a->listener_port != b->listener_port ||
            str_differs(a->listener_address, b->listener_address)) {
            return 0;
        }
    }
    return a == NULL && b == NULL;
}

