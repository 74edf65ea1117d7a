/* FNV-1a: the string hash of client ids and topics (session tables, home workers, retained). */
#ifndef MIDGE_HASH_H
#define MIDGE_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t
hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    }
    return h;
}

#endif
