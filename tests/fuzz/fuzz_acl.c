/*
 * libFuzzer target: the acl-json rule file loader (scripts/fuzz.sh). The
 * input is the file's text; a ruleset that loads is asked a few questions
 * for every action so the compiled tries are walked too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const topics[] = {
    "a", "a/b", "a/b/c", "$SYS/x", "/", "//", "alice/x", "c1/y", "+", "#", "a/+/c", "a/#",
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;
    char err[512];
    struct acl_ruleset *rs;
    struct acl_decision d;
    struct acl_client c;
    size_t i;
    int a;

    text = malloc(size + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    rs = acl_load_string(text, "fuzz.json", err, sizeof(err));
    free(text);
    if (rs == NULL) {
        return 0;
    }
    (void)acl_ruleset_rules(rs);
    (void)acl_ruleset_entries(rs);
    for (a = 0; a < ACL_NACTIONS; a++) {
        for (i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
            char place[128];

            acl_check(rs, "c1", "alice", a, topics[i], &d);
            acl_decision_place(&d, a, place, sizeof(place));
            acl_check(rs, "c/2", NULL, a, topics[i], &d);
        }
    }
    if (acl_client_resolve(rs, "c1", "bob", &c) == 0) {
        for (i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
            acl_check_client(rs, &c, ACL_PUBLISH, topics[i], &d);
        }
    }
    acl_client_clear(&c);
    acl_ruleset_free(rs);
    return 0;
}
