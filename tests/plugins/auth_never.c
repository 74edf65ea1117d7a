/*
 * Test plugin "auth-never" (tests/integration/test_plugins.py): every
 * CONNECT goes PENDING and is never completed, so the broker's
 * plugin_timeout and plugin_timeout_verdict decide.
 */
#include <stdlib.h>

#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("auth-never", "1.0", "test: never answers");

struct state {
    int unused; /* nothing to keep, but the state still lives off *state */
};

static int
auth(void *st, midge_client *client, const struct midge_auth_request *req, uint8_t *reason,
     midge_ticket *ticket)
{
    (void)st;
    (void)client;
    (void)req;
    (void)reason;
    (void)ticket; /* dropped on purpose: the broker's timeout must handle it */
    return MIDGE_PENDING;
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
    *state = s;
    return api->hooks_set(self, &hooks);
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    free(state);
}
