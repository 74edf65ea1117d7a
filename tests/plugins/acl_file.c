/*
 * Test plugin "acl-file" (tests/integration/test_plugin_api.py): an ACL
 * whose rules live in a file (plugin_opt_file) that init and every reload
 * (SIGHUP) read again. Each non-empty line is a filter prefix: SUBSCRIBE to
 * a filter starting with it is denied (reason 0: the broker's 0x87);
 * everything else is DEFER. Reload logs "acl-file: loaded N rule(s)".
 *
 * The hook runs on the workers while reload replaces the rules on the main
 * thread: the rules are behind a read-write lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

static const char *const options[] = {"file", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("acl-file", "1.0", "test: denies subscriptions listed in a file",
                             options);

/* A rule list. Owned by the state; replaced whole on reload. */
struct rules {
    char **v;
    size_t n;
};

struct state {
    const struct midge_api *api;
    midge_plugin *self;
    pthread_rwlock_t lock;
    struct rules rules; /* Protected by lock */
};

static void
rules_free(struct rules *r)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        free(r->v[i]);
    }
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

/* Reads the file named by plugin_opt_file into *out. Returns 0 or a negative error (set_error). */
static int
rules_load(struct state *s, struct rules *out)
{
    const char *path = s->api->option(s->self, "file");
    char line[1024];
    FILE *f;

    out->v = NULL;
    out->n = 0;
    if (path == NULL) {
        s->api->set_error(s->self, "plugin_opt_file is required");
        return -MIDGE_EINVAL;
    }
    f = fopen(path, "r");
    if (f == NULL) {
        s->api->set_error(s->self, "%s: %s", path, strerror(errno));
        return -MIDGE_ENOENT;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t n = strcspn(line, "\r\n");
        char **v;
        line[n] = '\0';
        if (n == 0) {
            continue;
        }
        v = realloc(out->v, (out->n + 1) * sizeof(*v));
        if (v == NULL || (v[out->n] = strdup(line)) == NULL) {
            if (v != NULL) {
                out->v = v;
            }
            fclose(f);
            rules_free(out);
            s->api->set_error(s->self, "out of memory");
            return -MIDGE_ENOMEM;
        }
        out->v = v;
        out->n++;
    }
    fclose(f);
    s->api->log(s->self, MIDGE_LOG_NOTICE, "acl-file: loaded %zu rule(s)", out->n);
    return 0;
}

static int
acl(void *st, midge_client *client, const struct midge_acl_request *req, uint8_t *reason,
    midge_ticket *ticket)
{
    struct state *s = st;
    int deny = 0;
    size_t i;

    (void)client;
    (void)ticket;
    if (req->action != MIDGE_ACL_SUBSCRIBE) {
        return MIDGE_DEFER;
    }
    pthread_rwlock_rdlock(&s->lock);
    for (i = 0; i < s->rules.n && !deny; i++) {
        deny = strncmp(req->topic, s->rules.v[i], strlen(s->rules.v[i])) == 0;
    }
    pthread_rwlock_unlock(&s->lock);
    if (deny) {
        *reason = 0;
        return MIDGE_DENY;
    }
    return MIDGE_DEFER;
}

static int
reload(void *st)
{
    struct state *s = st;
    struct rules fresh;
    struct rules old;
    int rc = rules_load(s, &fresh);

    if (rc != 0) {
        return rc; /* keep the old rules */
    }
    pthread_rwlock_wrlock(&s->lock);
    old = s->rules;
    s->rules = fresh;
    pthread_rwlock_unlock(&s->lock);
    rules_free(&old);
    return 0;
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .acl = acl,
    .reload = reload,
};

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    s->api = api;
    s->self = self;
    rc = rules_load(s, &s->rules);
    if (rc != 0) {
        free(s);
        return rc;
    }
    pthread_rwlock_init(&s->lock, NULL);
    *state = s;
    return api->hooks_set(self, &hooks);
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    struct state *s = state;

    (void)self;
    if (s != NULL) {
        rules_free(&s->rules);
        pthread_rwlock_destroy(&s->lock);
        free(s);
    }
}
