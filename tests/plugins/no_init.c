/*
 * Test plugin "no-init": a descriptor and no midge_plugin_init, so the
 * broker must name the missing function.
 */
#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("no-init", "1.0", "test: has no init function");
