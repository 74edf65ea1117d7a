/*
 * Test plugin "init-fail": init explains its failure with api->set_error()
 * ("cannot open database DB", DB = plugin_opt_db or "(unset)") and returns
 * -MIDGE_EINVAL; the broker must show that message and refuse to start.
 */
#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("init-fail", "1.0", "test: init fails");

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    const char *db = api->option(self, "db");

    *state = NULL;
    api->set_error(self, "cannot open database %s", db != NULL ? db : "(unset)");
    return -MIDGE_EINVAL;
}
