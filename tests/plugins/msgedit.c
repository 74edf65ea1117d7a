/*
 * Test plugin "msgedit" (tests/integration/test_plugin_api.py): message_in
 * edits and drops, message_out counting. Rules come from the options; every
 * option whose key starts with one of these words is a rule (so several
 * rules of one kind are plugin_opt_drop_a, plugin_opt_drop_b, ...):
 *
 *   rename*   "FROM TO"      topic FROM... becomes TO... (api->edit_topic)
 *   payload*  "PREFIX"       payload P becomes "edited(P)" (api->edit_payload)
 *   prop*     "PREFIX KEY"   adds user property KEY = "TOPIC q=QOS r=RETAIN
 *                            n=N" as this instance saw the message (N: user
 *                            properties it already had)
 *   drop*     "PREFIX REASON" drops the message with that reason code
 *                            (decimal or 0x..; 0 acknowledges as success)
 *   badedit*  "PREFIX"       tries invalid edits and adds user property
 *                            "badedit" = "T1,T2,T3,P1" (the return codes of
 *                            edit_topic "a/+/b", "$SYS/x", "" and of
 *                            edit_user_property_add with invalid UTF-8)
 *
 * Rules are tried in option order; every matching rename/payload/prop rule
 * applies, a matching drop rule ends the hook. Counters (metrics, in
 * $SYS/broker/plugin/INSTANCE/metric/): "messages_in", "dropped",
 * "messages_out" (deliveries of topics not starting with '$').
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("msgedit", "1.0", "test: edits and drops messages per rules");

enum kind { RENAME, PAYLOAD, PROP, DROP, BADEDIT };

/* One rule. Owned by the state's array. */
struct rule {
    enum kind kind;
    char *a;    /* prefix */
    char *b;    /* rename target / property key */
    int reason; /* drop */
};

struct state {
    const struct midge_api *api;
    midge_plugin *self;
    struct rule *rules;
    size_t nrules;
    midge_metric *in;
    midge_metric *dropped;
    midge_metric *out;
};

static int
starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int
message_in(void *st, midge_client *client, const midge_message *msg, midge_message_edit *edit,
           uint8_t *reason)
{
    struct state *s = st;
    const struct midge_api *api = s->api;
    char topic[1024];
    size_t i;

    (void)client;
    api->metric_add(s->in, 1);
    snprintf(topic, sizeof(topic), "%s", api->message_topic(msg));
    for (i = 0; i < s->nrules; i++) {
        const struct rule *r = &s->rules[i];
        char buf[2048];

        if (!starts(topic, r->a)) {
            continue;
        }
        switch (r->kind) {
        case RENAME:
            snprintf(buf, sizeof(buf), "%s%s", r->b, topic + strlen(r->a));
            if (api->edit_topic(edit, buf) != 0) {
                api->log(s->self, MIDGE_LOG_WARNING, "msgedit: edit_topic(%s) failed", buf);
            }
            break;
        case PAYLOAD: {
            uint32_t len = 0;
            const char *p = api->message_payload(msg, &len);
            int n = snprintf(buf, sizeof(buf), "edited(%.*s)", (int)(len < 1000 ? len : 1000),
                             p != NULL ? p : "");
            api->edit_payload(edit, buf, (uint32_t)n);
            break;
        }
        case PROP: {
            size_t pos = 0;
            const char *k;
            const char *v;
            size_t kl;
            size_t vl;
            int n = 0;
            while (api->message_user_property_next(msg, &pos, &k, &kl, &v, &vl)) {
                n++;
            }
            snprintf(buf, sizeof(buf), "%s q=%d r=%d n=%d", topic, api->message_qos(msg),
                     api->message_retain(msg), n);
            api->edit_user_property_add(edit, r->b, buf);
            break;
        }
        case DROP:
            api->metric_add(s->dropped, 1);
            *reason = (uint8_t)r->reason;
            return MIDGE_DENY;
        case BADEDIT:
            snprintf(buf, sizeof(buf), "%d,%d,%d,%d", api->edit_topic(edit, "a/+/b"),
                     api->edit_topic(edit, "$SYS/x"), api->edit_topic(edit, ""),
                     api->edit_user_property_add(edit, "bad", "\xff\xfe"));
            api->edit_user_property_add(edit, "badedit", buf);
            break;
        }
    }
    return MIDGE_DEFER;
}

static void
message_out(void *st, midge_client *client, const midge_message *msg)
{
    struct state *s = st;

    (void)client;
    if (s->api->message_topic(msg)[0] != '$') {
        s->api->metric_add(s->out, 1);
    }
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .message_in = message_in,
    .message_out = message_out,
};

static void
state_free(struct state *s)
{
    size_t i;

    for (i = 0; i < s->nrules; i++) {
        free(s->rules[i].a);
        free(s->rules[i].b);
    }
    free(s->rules);
    free(s);
}

/* Parses one rule option; returns 0 (also for keys that are no rule) or -MIDGE_EINVAL. */
static int
add_rule(struct state *s, const char *key, const char *value)
{
    static const struct {
        const char *word;
        enum kind kind;
        int words; /* values expected */
    } kinds[] = {{"rename", RENAME, 2}, {"payload", PAYLOAD, 1}, {"prop", PROP, 2},
                 {"drop", DROP, 2},     {"badedit", BADEDIT, 1}};
    char a[512];
    char b[512];
    struct rule *r;
    size_t i;
    int n;

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (starts(key, kinds[i].word)) {
            break;
        }
    }
    if (i == sizeof(kinds) / sizeof(kinds[0])) {
        return 0;
    }
    n = sscanf(value, "%511s %511s", a, b);
    if (n != kinds[i].words) {
        s->api->set_error(s->self, "%s: expected %d word(s), got '%s'", key, kinds[i].words, value);
        return -MIDGE_EINVAL;
    }
    r = realloc(s->rules, (s->nrules + 1) * sizeof(*r));
    if (r == NULL) {
        return -MIDGE_ENOMEM;
    }
    s->rules = r;
    r = &s->rules[s->nrules++];
    memset(r, 0, sizeof(*r));
    r->kind = kinds[i].kind;
    r->a = strdup(a);
    if (kinds[i].kind == DROP) {
        r->reason = (int)strtol(b, NULL, 0);
    } else if (kinds[i].words == 2) {
        r->b = strdup(b);
    }
    return r->a == NULL || (kinds[i].words == 2 && kinds[i].kind != DROP && r->b == NULL)
               ? -MIDGE_ENOMEM
               : 0;
}

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *s = calloc(1, sizeof(*s));
    size_t pos = 0;
    const char *k;
    const char *v;
    int rc;

    if (s == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    s->api = api;
    s->self = self;
    while (api->option_next(self, &pos, &k, &v)) {
        if ((rc = add_rule(s, k, v)) != 0) {
            state_free(s);
            return rc;
        }
    }
    s->in = api->metric_new(self, "messages_in", MIDGE_METRIC_COUNTER, NULL);
    s->dropped = api->metric_new(self, "dropped", MIDGE_METRIC_COUNTER, NULL);
    s->out = api->metric_new(self, "messages_out", MIDGE_METRIC_COUNTER, NULL);
    api->log(self, MIDGE_LOG_NOTICE, "msgedit: %zu rule(s)", s->nrules);
    *state = s;
    return api->hooks_set(self, &hooks);
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    if (state != NULL) {
        state_free(state);
    }
}
