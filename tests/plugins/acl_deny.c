/*
 * Test plugin "acl-deny" (tests/integration/test_plugins.py): an ACL hook
 * and no auth hook.
 *   PUBLISH   to a topic starting "forbidden/"  -> DENY (0: the broker's 0x87)
 *   SUBSCRIBE to a filter starting "secret/"    -> DENY
 *   RECEIVE   of a topic starting "hidden/"     -> DENY
 *   WILL      on topic "will/forbidden"         -> DENY
 *   everything else                             -> DEFER
 */
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("acl-deny", "1.0", "test: denies some topics per action");

struct state {
    const struct midge_api *api;
    midge_plugin *self;
};

static int
starts(const char *s, const char *prefix)
{
    return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

static int
acl(void *st, midge_client *client, const struct midge_acl_request *req, uint8_t *reason,
    midge_ticket *ticket)
{
    int deny = 0;

    (void)st;
    (void)client;
    (void)ticket;
    switch (req->action) {
    case MIDGE_ACL_PUBLISH:
        deny = starts(req->topic, "forbidden/");
        break;
    case MIDGE_ACL_SUBSCRIBE:
        deny = starts(req->topic, "secret/");
        break;
    case MIDGE_ACL_RECEIVE:
        deny = starts(req->topic, "hidden/");
        break;
    case MIDGE_ACL_WILL:
        deny = req->topic != NULL && strcmp(req->topic, "will/forbidden") == 0;
        break;
    default:
        break;
    }
    if (deny) {
        *reason = 0;
        return MIDGE_DENY;
    }
    return MIDGE_DEFER;
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .acl = acl,
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
