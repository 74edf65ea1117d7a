/*
 * libFuzzer target: the bridge plugin's configuration parser (scripts/fuzz.sh).
 * The input is the bridges file; a list that parses is compared with itself
 * and its topic filters are matched against a few topics.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/bridge/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;
    char err[512];
    struct bridge_conf *list = NULL;
    const struct bridge_conf *b;
    size_t i;

    text = malloc(size + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    if (bridge_conf_parse("fuzz.conf", text, "fuzzhost", &list, err, sizeof(err)) != 0) {
        free(text);
        if (list != NULL) {
            __builtin_trap(); /* a failure leaves no list */
        }
        return 0;
    }
    free(text);
    for (b = list; b != NULL; b = b->next) {
        if (!bridge_conf_same(b, b)) {
            __builtin_trap(); /* a bridge is the same as itself */
        }
        for (i = 0; i < b->ntopics; i++) {
            (void)bridge_topic_match(b->topics[i].local_filter, "a/b/c");
            (void)bridge_topic_match(b->topics[i].remote_filter, "$SYS/x");
        }
    }
    bridge_conf_free(list);
    return 0;
}
