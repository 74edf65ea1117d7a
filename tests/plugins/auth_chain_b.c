/*
 * Test plugin "auth-chain-b" (tests/integration/test_plugins.py): the second
 * of two chained auth plugins.
 *   bob / b-pass, carol / c-pass  -> ALLOW
 *   bob or carol, other password  -> DENY 0x86
 *   anyone else                   -> DEFER
 * Chained a,b: carol is refused (A denies her first). Chained b,a: accepted.
 */
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("auth-chain-b", "1.0", "test: second auth plugin of a chain");

struct state {
    const struct midge_api *api;
    midge_plugin *self;
};

static const struct {
    const char *user;
    const char *password;
} users[] = {
    {"bob", "b-pass"},
    {"carol", "c-pass"},
};

static int
auth(void *st, midge_client *client, const struct midge_auth_request *req, uint8_t *reason,
     midge_ticket *ticket)
{
    size_t i;

    (void)st;
    (void)client;
    (void)ticket;
    if (req->username == NULL) {
        return MIDGE_DEFER;
    }
    for (i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        size_t n = strlen(users[i].password);

        if (strcmp(req->username, users[i].user) != 0) {
            continue;
        }
        if (req->password != NULL && req->password_len == n &&
            memcmp(req->password, users[i].password, n) == 0) {
            return MIDGE_ALLOW;
        }
        *reason = 0x86;
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
