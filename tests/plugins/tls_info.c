/*
 * Test plugin "tls-info" (tests/integration/test_tls.py): makes the TLS
 * accessor and certificate usernames observable.
 *   client_connected -> "tls/info/CLIENT_ID" with payload
 *       "user=U version=V cipher=C subject=S san=N verified=0|1", or "plain"
 *       when api->client_tls answers -MIDGE_ENOENT
 *   ACL: PUBLISH or SUBSCRIBE under "u/" is allowed only below "u/USERNAME/"
 *       (the %u pattern of an ACL file), denied otherwise; the rest DEFER.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("tls-info", "1.0", "test: publishes TLS details, per-user topics");

struct state {
    const struct midge_api *api;
    midge_plugin *self;
};

static void
connected(void *st, midge_client *client)
{
    struct state *s = st;
    struct midge_tls_info info;
    const char *id = s->api->client_id(client);
    const char *user = s->api->client_username(client);
    char topic[300];
    char buf[1024];

    memset(&info, 0, sizeof(info));
    info.size = sizeof(info);
    if (s->api->client_tls(client, &info) == -MIDGE_ENOENT) {
        snprintf(buf, sizeof(buf), "plain");
    } else {
        uint32_t i;
        int n = snprintf(buf, sizeof(buf),
                         "user=%s version=%s cipher=%s subject=%s san=%s verified=%d issuer=%s sans=",
                         user ? user : "-", info.version ? info.version : "-",
                         info.cipher ? info.cipher : "-", info.subject ? info.subject : "-",
                         info.san ? info.san : "-", info.verified,
                         info.issuer ? info.issuer : "-");
        for (i = 0; i < info.san_count && n > 0 && (size_t)n < sizeof(buf); i++) {
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s%s", i ? "," : "", info.sans[i]);
        }
    }
    snprintf(topic, sizeof(topic), "tls/info/%s", id ? id : "");
    s->api->publish(s->self, topic, buf, (uint32_t)strlen(buf), 0, 0);
}

static int
acl(void *st, midge_client *client, const struct midge_acl_request *req, uint8_t *reason,
    midge_ticket *ticket)
{
    struct state *s = st;
    const char *user = s->api->client_username(client);
    char prefix[300];

    (void)ticket;
    if ((req->action != MIDGE_ACL_PUBLISH && req->action != MIDGE_ACL_SUBSCRIBE) ||
        req->topic == NULL || strncmp(req->topic, "u/", 2) != 0) {
        return MIDGE_DEFER;
    }
    snprintf(prefix, sizeof(prefix), "u/%s/", user ? user : "");
    if (user != NULL && strncmp(req->topic, prefix, strlen(prefix)) == 0) {
        return MIDGE_ALLOW;
    }
    *reason = 0;
    return MIDGE_DENY;
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .acl = acl,
    .client_connected = connected,
};

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    s->api = api;
    s->self = self;
    *state = s;
    return api->hooks_set(self, &hooks);
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    free(state);
}
