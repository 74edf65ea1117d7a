/*
 * Test plugin "auth-chain-a" (tests/integration/test_plugins.py): the first
 * of two chained auth plugins.
 *   alice / a-pass      -> ALLOW
 *   alice / other       -> DENY 0x86 (bad user name or password)
 *   carol / anything    -> DENY 0x87 (A blocks carol; B would accept her)
 *   anyone else         -> DEFER (ask the next plugin)
 * No reload hook: on SIGHUP the broker keeps its old options and says so.
 */
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("auth-chain-a", "1.0", "test: first auth plugin of a chain");

struct state {
    const struct midge_api *api;
    midge_plugin *self;
};

static int
pw_is(const struct midge_auth_request *req, const char *want)
{
    size_t n = strlen(want);

    return req->password != NULL && req->password_len == n && memcmp(req->password, want, n) == 0;
}

static int
auth(void *st, midge_client *client, const struct midge_auth_request *req, uint8_t *reason,
     midge_ticket *ticket)
{
    (void)st;
    (void)client;
    (void)ticket;
    if (req->username == NULL) {
        return MIDGE_DEFER;
    }
    if (strcmp(req->username, "alice") == 0) {
        if (pw_is(req, "a-pass")) {
            return MIDGE_ALLOW;
        }
        *reason = 0x86;
        return MIDGE_DENY;
    }
    if (strcmp(req->username, "carol") == 0) {
        *reason = 0x87;
        return MIDGE_DENY;
    }
    return MIDGE_DEFER;
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .auth = auth,
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
