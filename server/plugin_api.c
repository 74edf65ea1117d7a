/* The API table handed to every plugin instance (plugin-api/midge/plugin.h). */
#include "plugin.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <ev.h>

#include "broker.h"
#include "config.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "msg.h"
#include "persist.h"
#include "topic.h"

static void
api_log(midge_plugin *self, int level, const char *fmt, ...)
{
    static const int map[] = {MLOG_ERROR, MLOG_WARNING, MLOG_NOTICE, MLOG_INFO, MLOG_DEBUG};
    char buf[2048];
    va_list ap;
    int l = level < 0 ? 0 : level > MIDGE_LOG_DEBUG ? MIDGE_LOG_DEBUG : level;

    if (!log_enabled(map[l])) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    midge_log(map[l], "plugin=%s %s", self->name, buf);
}

static const char *
api_option(midge_plugin *self, const char *key)
{
    const struct plugin_opt *o;

    for (o = self->conf->opts; o != NULL; o = o->next) {
        if (strcmp(o->key, key) == 0) {
            return o->value;
        }
    }
    return NULL;
}

static int
api_option_next(midge_plugin *self, size_t *pos, const char **key, const char **value)
{
    const struct plugin_opt *o = self->conf->opts;
    size_t i;

    for (i = 0; o != NULL && i < *pos; i++) {
        o = o->next;
    }
    if (o == NULL) {
        return 0;
    }
    *key = o->key;
    *value = o->value;
    (*pos)++;
    return 1;
}

static void
api_set_error(midge_plugin *self, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(self->err, sizeof(self->err), fmt, ap);
    va_end(ap);
}

static int
api_hooks_set(midge_plugin *self, const struct midge_hooks *hooks)
{
    if (hooks == NULL || hooks->size < sizeof(uint32_t) || self->hooks != NULL) {
        return -MIDGE_EINVAL;
    }
    self->hooks = hooks;
    return 0;
}

static const char *
api_client_id(const midge_client *c)
{
    return ((const struct conn *)c)->client_id;
}

static const char *
api_client_username(const midge_client *c)
{
    return ((const struct conn *)c)->username;
}

static int
api_client_protocol(const midge_client *c)
{
    return ((const struct conn *)c)->version;
}

static const char *
api_client_address(const midge_client *c)
{
    struct conn *conn = (struct conn *)c;

    /* Kept for the connection's life so the plugin may hold it during the hook. */
    if (conn->addr_str == NULL) {
        conn->addr_str = strdup(conn_addr(conn));
    }
    return conn->addr_str ? conn->addr_str : "?";
}

static int
api_client_listener_port(const midge_client *c)
{
    const struct conn *conn = (const struct conn *)c;

    return conn->listener != NULL ? conn->listener->port : 0; /* 0: internal session */
}

static int
api_client_clean_start(const midge_client *c)
{
    return ((const struct conn *)c)->clean_start;
}

static int
api_client_keepalive(const midge_client *c)
{
    return ((const struct conn *)c)->keepalive;
}

/* Publishes as the broker: copies everything; no ACL. [any thread] */
static int
api_publish(midge_plugin *self, const char *topic, const void *payload, uint32_t len, int qos,
            int retain)
{
    size_t tl = topic ? strlen(topic) : 0;
    struct msg *m;

    (void)self;
    if (tl == 0 || tl > 65535 || !topic_name_valid(topic, tl) ||
        !mqtt_utf8_valid((const uint8_t *)topic, tl) || qos < 0 || qos > 2 ||
        (payload == NULL && len > 0)) {
        return -MIDGE_EINVAL;
    }
    m = msg_new(topic, tl, payload, len, (uint8_t)qos, retain ? 1 : 0, NULL, ev_time());
    if (m == NULL) {
        return -MIDGE_ENOMEM;
    }
    broker_publish(m, 0);
    msg_unref(m);
    return 0;
}

/* ABI 1.2: a whole message (properties, expiry) published as api_publish does. [any thread] */
static int
api_publish_message(midge_plugin *self, const midge_message *msg)
{
    (void)self;
    if (msg == NULL) {
        return -MIDGE_EINVAL;
    }
    broker_publish((struct msg *)msg, 0); /* takes its own references */
    return 0;
}

static const char *
api_instance_name(const midge_plugin *self)
{
    return self->name;
}

/* Every entry is set: ABI 1.0 is complete in this broker (services in plugin_*.c). */
const struct midge_api plugin_api = {
    .size = sizeof(struct midge_api),
    .abi_major = MIDGE_ABI_MAJOR,
    .abi_minor = MIDGE_ABI_MINOR,
    .log = api_log,
    .option = api_option,
    .option_next = api_option_next,
    .set_error = api_set_error,
    .hooks_set = api_hooks_set,
    .complete = plugin_complete,
    .client_id = api_client_id,
    .client_username = api_client_username,
    .client_protocol = api_client_protocol,
    .client_address = api_client_address,
    .client_listener_port = api_client_listener_port,
    .client_clean_start = api_client_clean_start,
    .client_keepalive = api_client_keepalive,
    .publish = api_publish,
    .instance_name = api_instance_name,
    .message_topic = plugin_message_topic,
    .message_payload = plugin_message_payload,
    .message_qos = plugin_message_qos,
    .message_retain = plugin_message_retain,
    .message_user_property_next = plugin_message_user_property_next,
    .message_ref = plugin_message_ref,
    .message_unref = plugin_message_unref,
    .edit_topic = plugin_edit_topic,
    .edit_payload = plugin_edit_payload,
    .edit_user_property_add = plugin_edit_user_property_add,
    .auth_data_set = plugin_auth_data_set,
    .complete_auth = plugin_complete_auth,
    .client_listener_name = plugin_client_listener_name,
    .client_peer_ip = plugin_client_peer_ip,
    .client_peer_port = plugin_client_peer_port,
    .client_user_property_next = plugin_client_user_property_next,
    .client_tls = plugin_client_tls,
    .client_data = plugin_client_data,
    .client_data_set = plugin_client_data_set,
    .timer_start = plugin_timer_start,
    .timer_stop = plugin_timer_stop,
    .fd_watch = plugin_fd_watch,
    .fd_watch_set = plugin_fd_watch_set,
    .fd_unwatch = plugin_fd_unwatch,
    .run_blocking = plugin_run_blocking,
    .client_disconnect = plugin_client_disconnect,
    .client_find = plugin_client_find,
    .metric_new = plugin_metric_new,
    .metric_add = plugin_metric_add,
    .metric_set = plugin_metric_set,
    .metric_observe = plugin_metric_observe,
    .subscribe = plugin_subscribe,
    .unsubscribe = plugin_unsubscribe,
    .session_open = plugin_session_open,
    .session_subscribe = plugin_session_subscribe,
    .session_unsubscribe = plugin_session_unsubscribe,
    .session_publish = plugin_session_publish,
    .session_ack = plugin_session_ack,
    .session_redeliver = plugin_session_redeliver,
    .session_close = plugin_session_close,
    .message_id = plugin_message_id,
    .message_properties = plugin_message_properties,
    .message_expiry = plugin_message_expiry,
    .message_new = plugin_message_new,
    .persist_durable = persist_durable,
    .persist_failing = persist_failing,
    .restore_session = persist_restore_session,
    .restore_subscription = persist_restore_subscription,
    .restore_retained = persist_restore_retained,
    .restore_message = persist_restore_message,
    .restore_qos2_in = persist_restore_qos2_in,
    .restore_will = persist_restore_will,
    .stats = plugin_stats,
    .client_list = plugin_client_list,
    .retained_list = plugin_retained_list,
    .reload_request = plugin_reload_request,
    .plugin_list = plugin_plugin_list,
    .metric_list = plugin_metric_list,
    .session_publish_message = plugin_session_publish_message,
    .session_released = plugin_session_released,
    .ack_hold = persist_ack_hold,
    .ack_release = persist_ack_release,
    .client_acl_standing = plugin_client_acl_standing,
    .session_window = plugin_session_window,
    /* ABI 1.2 */
    .metric_new_labeled = plugin_metric_new_labeled,
    .metric_free = plugin_metric_free,
    .session_stats = plugin_session_stats,
    .client_session_list = plugin_client_session_list,
    .client_session_add = plugin_client_session_add,
    .publish_message = api_publish_message,
};
