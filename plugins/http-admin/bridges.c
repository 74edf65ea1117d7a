/*
 * The links of a bridge instance for /api/v1/bridges (bridges.h). The
 * series of one link are the snapshot's metrics of that instance whose
 * label is link="NAME"; the JSON field is the metric name without its
 * "link_" prefix. The address comes from the retained topic the bridge
 * keeps, read with api->retained_list on this thread.
 */
#include "bridges.h"

#include <stdlib.h>
#include <string.h>

#define LINK_PREFIX "link_"

/* state gauge (bridge metrics.h enum lm_state) as text */
static const char *
state_text(json_int_t v)
{
    return v == 2 ? "connected" : v == 1 ? "connecting" : "disconnected";
}

static json_t *
link_object(json_t *links, const char *name)
{
    size_t i;
    json_t *l;

    json_array_foreach(links, i, l) {
        if (strcmp(json_string_value(json_object_get(l, "name")), name) == 0) {
            return l;
        }
    }
    l = json_pack("{s:s,s:s,s:n}", "name", name, "state", "disconnected", "address");
    if (l != NULL && json_array_append_new(links, l) != 0) {
        return NULL;
    }
    return l;
}

/* retained_list callback: {mangled link name: address} of one instance. */
struct addr_walk {
    const struct midge_api *api;
    size_t prefix_len; /* of "$SYS/broker/plugin/INSTANCE/link/" */
    json_t *by_name;
};

static int
take_address(void *arg, const midge_message *msg)
{
    struct addr_walk *w = arg;
    const char *topic = w->api->message_topic(msg);
    size_t tl = strlen(topic);
    const size_t sl = sizeof("/address") - 1;
    uint32_t len = 0;
    const void *payload = w->api->message_payload(msg, &len);

    if (tl > w->prefix_len + sl && payload != NULL && len > 0) {
        char *name = strndup(topic + w->prefix_len, tl - w->prefix_len - sl);
        if (name != NULL) {
            json_object_set_new(w->by_name, name, json_stringn((const char *)payload, len));
            free(name);
        }
    }
    return 0;
}

/* The link name as it appears in the address topic ('/', '+', '#' as '_'). */
static void
mangle(const char *name, char *out, size_t cap)
{
    size_t i;

    for (i = 0; name[i] != '\0' && i + 1 < cap; i++) {
        out[i] = name[i] == '/' || name[i] == '+' || name[i] == '#' ? '_' : name[i];
    }
    out[i] = '\0';
}

json_t *
bridges_links_json(struct admin *a, const struct snapshot *s, const struct snap_plugin *p)
{
    json_t *links = json_array();
    struct addr_walk w;
    char filter[512];
    size_t i;

    if (links == NULL) {
        return NULL;
    }
    for (i = 0; i < s->metric_count; i++) {
        const struct snap_metric *m = &s->metrics[i];
        json_t *l;
        const char *field;
        if (strcmp(m->instance, p->instance) != 0 || m->label_name == NULL ||
            strcmp(m->label_name, "link") != 0 ||
            strncmp(m->name, LINK_PREFIX, sizeof(LINK_PREFIX) - 1) != 0 ||
            m->kind == MIDGE_METRIC_HISTOGRAM) {
            continue;
        }
        if ((l = link_object(links, m->label_value)) == NULL) {
            json_decref(links);
            return NULL;
        }
        field = m->name + sizeof(LINK_PREFIX) - 1;
        if (strcmp(field, "state") == 0) {
            json_object_set_new(l, "state", json_string(state_text(m->value)));
        } else if (strcmp(field, "connected") != 0) { /* `state` says it, and more */
            json_object_set_new(l, field, json_integer(m->value));
        }
    }
    /* Addresses: one walk over the instance's retained address topics. */
    w.api = a->api;
    w.by_name = json_object();
    snprintf(filter, sizeof(filter), "$SYS/broker/plugin/%s/link/", p->instance);
    w.prefix_len = strlen(filter);
    if (w.by_name != NULL && w.prefix_len + sizeof("+/address") < sizeof(filter) &&
        strchr(p->instance, '/') == NULL && strchr(p->instance, '+') == NULL &&
        strchr(p->instance, '#') == NULL && MIDGE_API_HAS(a->api, retained_list)) {
        json_t *l;
        strcat(filter, "+/address");
        a->api->retained_list(a->self, filter, take_address, &w);
        json_array_foreach(links, i, l) {
            char key[300];
            json_t *addr;
            mangle(json_string_value(json_object_get(l, "name")), key, sizeof(key));
            if ((addr = json_object_get(w.by_name, key)) != NULL) {
                json_object_set(l, "address", addr);
            }
        }
    }
    json_decref(w.by_name);
    return links;
}
