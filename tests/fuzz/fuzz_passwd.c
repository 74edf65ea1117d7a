/*
 * libFuzzer target: the auth-passwd password file parser (scripts/fuzz.sh).
 * The input is a whole file; errors are expected, crashes and leaks are not.
 * A parsed table is looked up with every name it holds and a few it does not.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../plugins/auth-passwd/pwfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pw_table *t = NULL;
    char err[PW_ERR_MAX];
    size_t i;

    if (pw_table_parse("fuzz.passwd", (const char *)data, size, &t, err, sizeof(err)) != 0) {
        if (t != NULL || memchr(err, '\0', sizeof(err)) == NULL) {
            __builtin_trap(); /* a failure leaves no table and a terminated message */
        }
        return 0;
    }
    for (i = 0; i < t->n; i++) {
        if (pw_table_find(t, t->v[i].name) == NULL) {
            __builtin_trap(); /* every parsed user can be found */
        }
        (void)pw_username_check(t->v[i].name);
    }
    (void)pw_table_find(t, "");
    (void)pw_table_find(t, "nobody-at-all");
    pw_table_free(t);
    return 0;
}
