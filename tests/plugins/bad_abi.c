/*
 * Test plugin "bad-abi": claims to be built for the next major ABI, so the
 * broker must refuse to load it ("built for plugin ABI 2.0, but this midge
 * provides ABI 1.0: rebuild it against midge ..."). Its init is valid and
 * must never run.
 */
#include "midge/plugin.h"

MIDGE_EXPORT const struct midge_plugin_descriptor midge_plugin_descriptor = {
    sizeof(struct midge_plugin_descriptor),
    MIDGE_ABI_MAJOR + 1,
    0,
    "bad-abi",
    "1.0",
    "test: built for a future ABI",
    NULL,
};

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
};

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    *state = NULL;
    api->log(self, MIDGE_LOG_ERROR, "bad-abi: init called although the ABI does not match");
    return api->hooks_set(self, &hooks);
}
