/*
 * Test plugin "admin-test" (tests/integration/test_plugin_admin.py): the
 * administration services, driven by publishes to admin/ctl/CMD:
 *   stats     -> "admin/out/stats": "connected=N sessions=N subscriptions=N
 *                retained=N publish_received=N connects=N"
 *   clients   -> "admin/out/clients": sorted "ID:connected:subscriptions" list,
 *                comma-separated, after client_list's done callback
 *   retained  -> "admin/out/retained": "N TOPIC..." for the filter in the payload
 *   reload    -> api->reload_request()
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("admin-test", "1.0", "test: administration services");

struct state {
    const struct midge_api *api;
    midge_plugin *self;
};

/* One client_list run: entries collected from several workers. */
struct listing {
    struct state *st;
    pthread_mutex_t lock;
    char **v;   /* Protected by lock */
    size_t n;
};

static void
out(struct state *st, const char *topic, const char *text)
{
    st->api->publish(st->self, topic, text, (uint32_t)strlen(text), 0, 0);
}

static void
list_cb(void *arg, const struct midge_client_info *info)
{
    struct listing *l = arg;
    char buf[300];
    char **v;

    snprintf(buf, sizeof(buf), "%s:%d:%u", info->client_id, info->connected,
             (unsigned)info->subscriptions);
    pthread_mutex_lock(&l->lock);
    v = realloc(l->v, (l->n + 1) * sizeof(*v));
    if (v != NULL) {
        l->v = v;
        l->v[l->n++] = strdup(buf);
    }
    pthread_mutex_unlock(&l->lock);
}

static int
cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
list_done(void *arg)
{
    struct listing *l = arg;
    char text[8192] = "";
    size_t i;

    qsort(l->v, l->n, sizeof(*l->v), cmp);
    for (i = 0; i < l->n; i++) {
        if (strncmp(l->v[i], "auto-", 5) != 0 && strlen(text) + strlen(l->v[i]) + 2 < sizeof(text)) {
            strcat(text, text[0] ? "," : "");
            strcat(text, l->v[i]);
        }
        free(l->v[i]);
    }
    out(l->st, "admin/out/clients", text);
    free(l->v);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

struct rlist {
    char text[4096];
};

/* The API, for retained_collect (retained_list's callback has no state of ours but arg). */
static const struct midge_api *admin_api;

static int
retained_collect(void *arg, const midge_message *msg)
{
    struct rlist *r = arg;
    const char *t = admin_api->message_topic(msg);

    if (strlen(r->text) + strlen(t) + 2 < sizeof(r->text)) {
        strcat(r->text, " ");
        strcat(r->text, t);
    }
    return 0;
}

static void
control(void *arg, const midge_message *msg)
{
    struct state *st = arg;
    const struct midge_api *api = st->api;
    const char *cmd = api->message_topic(msg) + strlen("admin/ctl/");
    char buf[512];

    if (strcmp(cmd, "stats") == 0) {
        struct midge_broker_stats s;
        memset(&s, 0, sizeof(s));
        s.size = sizeof(s);
        if (api->stats(st->self, &s) != 0) {
            out(st, "admin/out/stats", "error");
            return;
        }
        snprintf(buf, sizeof(buf),
                 "connected=%llu sessions=%llu subscriptions=%llu retained=%llu "
                 "publish_received=%llu connects=%llu",
                 (unsigned long long)s.clients_connected, (unsigned long long)s.sessions,
                 (unsigned long long)s.subscriptions, (unsigned long long)s.retained,
                 (unsigned long long)s.publish_received, (unsigned long long)s.connects);
        out(st, "admin/out/stats", buf);
    } else if (strcmp(cmd, "clients") == 0) {
        struct listing *l = calloc(1, sizeof(*l));
        if (l == NULL) {
            return;
        }
        l->st = st;
        pthread_mutex_init(&l->lock, NULL);
        if (api->client_list(st->self, list_cb, list_done, l) != 0) {
            out(st, "admin/out/clients", "error");
        }
    } else if (strcmp(cmd, "retained") == 0) {
        struct rlist r;
        uint32_t len = 0;
        const char *p = api->message_payload(msg, &len);
        char filter[256];
        int n;
        snprintf(filter, sizeof(filter), "%.*s", (int)len, p ? p : "");
        r.text[0] = 0;
        n = api->retained_list(st->self, filter, retained_collect, &r);
        snprintf(buf, sizeof(buf), "%d%s", n, r.text);
        out(st, "admin/out/retained", buf);
    } else if (strcmp(cmd, "reload") == 0) {
        api->reload_request(st->self);
    }
}

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *st;

    if (!MIDGE_API_HAS(api, reload_request)) {
        api->set_error(self, "this broker has no administration API");
        return -MIDGE_ENOTSUP;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return -MIDGE_ENOMEM;
    }
    st->api = api;
    st->self = self;
    admin_api = api;
    *state = st;
    if (api->subscribe(self, "admin/ctl/#", control, st) == NULL) {
        api->set_error(self, "subscribe failed");
        return -MIDGE_EINVAL;
    }
    return 0;
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    free(state);
}
