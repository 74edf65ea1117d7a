/*
 * libFuzzer target: the configuration parser (scripts/fuzz.sh). Each input
 * is written to a private file and loaded; errors are expected, crashes and
 * leaks are not.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    char err[512];
    struct config *cfg;
    FILE *f;

    if (path[0] == '\0') {
        snprintf(path, sizeof(path), "/tmp/midge-fuzz-config-%ld.conf", (long)getpid());
    }
    f = fopen(path, "wb");
    if (f == NULL) {
        return 0;
    }
    fwrite(data, 1, size, f);
    fclose(f);
    cfg = config_load(path, err, sizeof(err));
    if (cfg != NULL) {
        config_free(cfg);
    }
    return 0;
}
