/*
 * Test plugin without a descriptor: exports midge_plugin_init only, so the
 * broker must say it is not a midge plugin.
 */
#include "midge/plugin.h"

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    (void)self;
    (void)api;
    *state = NULL;
    return 0;
}
