/*
 * Test plugin "declared-opts": declares that it accepts plugin_opt_alpha and
 * plugin_opt_beta only, so any other plugin_opt_ line under it is a
 * configuration error. Init succeeds; no hooks.
 */
#include <stdlib.h>

#include "midge/plugin.h"

static const char *const options[] = {"alpha", "beta", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("declared-opts", "1.0", "test: declares its options", options);

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
};

struct state {
    int unused;
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
