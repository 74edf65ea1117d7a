/*
 * Test plugin "events" (tests/integration/test_plugins.py): makes event
 * hooks observable by publishing into the broker.
 *   client_connected     -> "plugin/events/connected"    payload CLIENT_ID
 *   client_disconnected  -> "plugin/events/disconnected" payload "CLIENT_ID REASON"
 *                           (REASON: the MQTT 5 reason code, decimal)
 *   reload (SIGHUP)      -> "plugin/events/reloaded"     payload the new plugin_opt_tag
 *   thread_start         -> counts started workers (atomic) and logs
 *                           "events: worker N started (M started)"
 * With plugin_opt_extended yes (tests/integration/test_plugin_api.py), also:
 *   subscribed           -> "plugin/events/subscribed"   payload "CLIENT_ID FILTER QOS"
 *   unsubscribed         -> "plugin/events/unsubscribed" payload "CLIENT_ID FILTER"
 *   session_created      -> "plugin/events/session_created" payload CLIENT_ID
 *   session_ended        -> "plugin/events/session_ended"   payload CLIENT_ID
 *   will_published       -> "plugin/events/will_published"  payload
 *                           "CLIENT_ID TOPIC PAYLOAD" (the will as a message)
 * All messages QoS 0, not retained. api->publish may be called from any
 * thread, so also from the main thread in reload.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "midge/plugin.h"

MIDGE_PLUGIN_DECLARE("events", "1.0", "test: publishes client events");

struct state {
    const struct midge_api *api;
    midge_plugin *self;
    atomic_uint workers_started;
    int extended; /* set in init only */
};

static void
pub(struct state *s, const char *topic, const char *payload)
{
    int rc = s->api->publish(s->self, topic, payload, (uint32_t)strlen(payload), 0, 0);

    if (rc != 0) {
        s->api->log(s->self, MIDGE_LOG_WARNING, "events: publish to %s failed: %d", topic, rc);
    }
}

static void
connected(void *st, midge_client *client)
{
    struct state *s = st;
    const char *id = s->api->client_id(client);

    pub(s, "plugin/events/connected", id != NULL ? id : "");
}

static void
disconnected(void *st, midge_client *client, int reason)
{
    struct state *s = st;
    const char *id = s->api->client_id(client);
    char buf[512];

    snprintf(buf, sizeof(buf), "%s %d", id != NULL ? id : "", reason);
    pub(s, "plugin/events/disconnected", buf);
}

static int
reload(void *st)
{
    struct state *s = st;
    const char *tag = s->api->option(s->self, "tag");

    s->api->log(s->self, MIDGE_LOG_NOTICE, "events: reloaded, tag=%s", tag != NULL ? tag : "(unset)");
    pub(s, "plugin/events/reloaded", tag != NULL ? tag : "");
    return 0;
}

static void
thread_start(void *st, unsigned worker)
{
    struct state *s = st;
    unsigned n = atomic_fetch_add(&s->workers_started, 1) + 1;

    s->api->log(s->self, MIDGE_LOG_INFO, "events: worker %u started (%u started)", worker, n);
}

static void
subscribed(void *st, midge_client *client, const char *filter, int qos)
{
    struct state *s = st;
    char buf[1024];

    if (s->extended) {
        snprintf(buf, sizeof(buf), "%s %s %d", s->api->client_id(client), filter, qos);
        pub(s, "plugin/events/subscribed", buf);
    }
}

static void
unsubscribed(void *st, midge_client *client, const char *filter)
{
    struct state *s = st;
    char buf[1024];

    if (s->extended) {
        snprintf(buf, sizeof(buf), "%s %s", s->api->client_id(client), filter);
        pub(s, "plugin/events/unsubscribed", buf);
    }
}

static void
session_created(void *st, const char *client_id)
{
    struct state *s = st;

    if (s->extended) {
        pub(s, "plugin/events/session_created", client_id);
    }
}

static void
session_ended(void *st, const char *client_id)
{
    struct state *s = st;

    if (s->extended) {
        pub(s, "plugin/events/session_ended", client_id);
    }
}

static void
will_published(void *st, const char *client_id, const midge_message *will)
{
    struct state *s = st;
    uint32_t len = 0;
    const char *payload;
    char buf[1024];

    if (s->extended) {
        payload = s->api->message_payload(will, &len);
        snprintf(buf, sizeof(buf), "%s %s %.*s", client_id, s->api->message_topic(will),
                 (int)(len < 512 ? len : 512), payload != NULL ? payload : "");
        pub(s, "plugin/events/will_published", buf);
    }
}

static const struct midge_hooks hooks = {
    .size = sizeof(struct midge_hooks),
    .client_connected = connected,
    .client_disconnected = disconnected,
    .reload = reload,
    .thread_start = thread_start,
    .subscribed = subscribed,
    .unsubscribed = unsubscribed,
    .session_created = session_created,
    .session_ended = session_ended,
    .will_published = will_published,
};

int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct state *s = calloc(1, sizeof(*s));
    const char *tag;

    if (s == NULL) {
        api->set_error(self, "out of memory");
        return -MIDGE_ENOMEM;
    }
    s->api = api;
    s->self = self;
    atomic_init(&s->workers_started, 0);
    tag = api->option(self, "tag");
    s->extended = api->option(self, "extended") != NULL &&
                  strcmp(api->option(self, "extended"), "yes") == 0;
    api->log(self, MIDGE_LOG_NOTICE, "events: loaded, tag=%s", tag != NULL ? tag : "(unset)");
    *state = s;
    return api->hooks_set(self, &hooks);
}

void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    free(state);
}
