/*
 * Messages as plugins see them: accessors, the message_in chain with its
 * edits, message_out, and internal subscriptions (api->subscribe).
 *
 * A midge_message is a struct msg: immutable and reference counted, so a
 * plugin may keep one (api->message_ref) on any thread. Edits never change
 * a message: the chain builds a new one when a hook edited something.
 */
#include "plugin.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "listener.h"
#include "log.h"
#include "msg.h"
#include "mqtt.h"
#include "topic.h"
#include "worker.h"

/* ---- accessors. [any thread holding the message] ---- */

const char *
plugin_message_topic(const midge_message *m)
{
    return ((const struct msg *)m)->topic;
}

const void *
plugin_message_payload(const midge_message *m, uint32_t *len)
{
    const struct msg *msg = (const struct msg *)m;

    if (len != NULL) {
        *len = msg->payload_len;
    }
    return msg->payload_len ? msg->payload : NULL;
}

int
plugin_message_qos(const midge_message *m)
{
    return ((const struct msg *)m)->qos;
}

int
plugin_message_retain(const midge_message *m)
{
    return ((const struct msg *)m)->retain;
}

/* Iterates user properties in an encoded property list (others skipped); see plugin.h. */
int
plugin_uprop_next(const uint8_t *props, uint32_t props_len, size_t *pos, const char **key,
           size_t *key_len, const char **value, size_t *value_len)
{
    struct mqtt_props pr;
    struct mqtt_bytes k;
    struct mqtt_bytes v;
    uint32_t p;

    if (pos == NULL || *pos > props_len) {
        return 0;
    }
    memset(&pr, 0, sizeof(pr));
    pr.user_props.ptr = props;
    pr.user_props.len = props_len;
    p = (uint32_t)*pos;
    if (!mqtt_user_prop_next(&pr, &p, &k, &v)) {
        return 0;
    }
    *pos = p;
    *key = (const char *)k.ptr;
    *key_len = k.len;
    *value = (const char *)v.ptr;
    *value_len = v.len;
    return 1;
}

int
plugin_message_user_property_next(const midge_message *m, size_t *pos, const char **key,
                                  size_t *key_len, const char **value, size_t *value_len)
{
    const struct msg *msg = (const struct msg *)m;

    return plugin_uprop_next(msg->props, msg->props_len, pos, key, key_len, value, value_len);
}

const midge_message *
plugin_message_ref(const midge_message *m)
{
    return (const midge_message *)msg_ref((struct msg *)m);
}

void
plugin_message_unref(const midge_message *m)
{
    msg_unref((struct msg *)m);
}

/* ---- message_in edits ---- */

/*
 * The edits of one message_in hook call. Lives on the worker's stack for
 * the chain; owns its copies, freed by edit_reset().
 */
struct midge_message_edit {
    int active;              /* inside the hook */
    int changed;
    char *topic;             /* NULL: unchanged */
    uint8_t *payload;
    uint32_t payload_len;
    int has_payload;
    uint8_t *props;          /* encoded user properties to append */
    size_t props_len;
};

static void
edit_reset(struct midge_message_edit *e)
{
    free(e->topic);
    free(e->payload);
    free(e->props);
    memset(e, 0, sizeof(*e));
}

int
plugin_edit_topic(midge_message_edit *e, const char *topic)
{
    size_t n;
    char *t;

    if (e == NULL || !e->active) {
        return -MIDGE_ESTATE;
    }
    n = topic != NULL ? strlen(topic) : 0;
    if (n == 0 || n > 65535 || !topic_name_valid(topic, n) ||
        !mqtt_utf8_valid((const uint8_t *)topic, n) || topic[0] == '$') {
        return -MIDGE_EINVAL;
    }
    t = strdup(topic);
    if (t == NULL) {
        return -MIDGE_ENOMEM;
    }
    free(e->topic);
    e->topic = t;
    e->changed = 1;
    return 0;
}

int
plugin_edit_payload(midge_message_edit *e, const void *payload, uint32_t len)
{
    uint8_t *p = NULL;

    if (e == NULL || !e->active) {
        return -MIDGE_ESTATE;
    }
    if ((payload == NULL && len > 0) || len > MQTT_MAX_REMAINING_LENGTH) {
        return -MIDGE_EINVAL;
    }
    if (len > 0) {
        p = malloc(len);
        if (p == NULL) {
            return -MIDGE_ENOMEM;
        }
        memcpy(p, payload, len);
    }
    free(e->payload);
    e->payload = p;
    e->payload_len = len;
    e->has_payload = 1;
    e->changed = 1;
    return 0;
}

int
plugin_edit_user_property_add(midge_message_edit *e, const char *key, const char *value)
{
    size_t kl;
    size_t vl;
    uint8_t *p;

    if (e == NULL || !e->active) {
        return -MIDGE_ESTATE;
    }
    if (key == NULL || value == NULL) {
        return -MIDGE_EINVAL;
    }
    kl = strlen(key);
    vl = strlen(value);
    if (kl > 65535 || vl > 65535 || !mqtt_utf8_valid((const uint8_t *)key, kl) ||
        !mqtt_utf8_valid((const uint8_t *)value, vl)) {
        return -MIDGE_EINVAL;
    }
    p = realloc(e->props, e->props_len + 5 + kl + vl);
    if (p == NULL) {
        return -MIDGE_ENOMEM;
    }
    e->props = p;
    p += e->props_len;
    *p++ = MQTT_PROP_USER_PROPERTY;
    *p++ = (uint8_t)(kl >> 8);
    *p++ = (uint8_t)kl;
    memcpy(p, key, kl);
    p += kl;
    *p++ = (uint8_t)(vl >> 8);
    *p++ = (uint8_t)vl;
    memcpy(p, value, vl);
    e->props_len += 5 + kl + vl;
    e->changed = 1;
    return 0;
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Runs the message_in chain; see plugin.h. [worker thread] */
int
plugin_message_in(struct conn *c, struct msg **mp, uint8_t *reason)
{
    struct midge_message_edit e;
    struct midge_plugin *p;

    memset(&e, 0, sizeof(e));
    *reason = 0;
    for (p = plugins; p != NULL; p = p->next) {
        uint64_t t0;
        uint8_t r = 0;
        int v;

        if (!PLUGIN_HAS(p, message_in) || !plugin_applies(p, c->listener)) {
            continue;
        }
        e.active = 1;
        t0 = now_ns();
        v = p->hooks->message_in(p->state, (midge_client *)c, (const midge_message *)*mp, &e, &r);
        e.active = 0;
        plugin_record(p, PH_MSG_IN, v == MIDGE_DENY ? MIDGE_DENY : MIDGE_ALLOW,
                      now_ns() - t0 + 1);
        if (v != MIDGE_ALLOW && v != MIDGE_DENY && v != MIDGE_DEFER) {
            midge_log(MLOG_ERROR, "plugin bug plugin=%s hook=message_in returned %d: treated as "
                      "allow", p->name, v);
            v = MIDGE_ALLOW;
        }
        if (v == MIDGE_DENY) {
            edit_reset(&e);
            *reason = r;
            return PLUGIN_DENY;
        }
        if (e.changed) {
            const struct msg *m = *mp;
            struct msg *n = msg_rebuild(m, e.topic ? e.topic : m->topic,
                                        e.topic ? strlen(e.topic) : m->topic_len,
                                        e.has_payload ? e.payload : m->payload,
                                        e.has_payload ? e.payload_len : m->payload_len, e.props,
                                        e.props_len);
            if (n == NULL) {
                edit_reset(&e);
                *reason = MQTT_RC_SERVER_BUSY;
                return PLUGIN_DENY;
            }
            msg_unref(*mp);
            *mp = n;
        }
        edit_reset(&e);
    }
    return PLUGIN_ALLOW;
}

/* message_out hooks, for every delivery. [worker thread] */
void
plugin_message_out(struct conn *c, const struct msg *m)
{
    struct midge_plugin *p;

    for (p = plugins; p != NULL; p = p->next) {
        if (PLUGIN_HAS(p, message_out) && plugin_applies(p, c->listener)) {
            p->hooks->message_out(p->state, (midge_client *)c, (const midge_message *)m);
        }
    }
}

/* ---- internal subscriptions ---- */

/* A plugin's own subscription. Owned by the list below until api->unsubscribe. */
struct midge_subscription {
    struct midge_plugin *plugin;
    char *filter;
    size_t filter_len;
    void (*cb)(void *arg, const midge_message *msg);
    void *arg;
    struct midge_subscription *next;
};

/*
 * Few entries (a bridge has a handful): a list under a read-write lock,
 * matched per publish only while it is non-empty. Callbacks run under the
 * read lock, so unsubscribe (write lock) returns only once none runs.
 */
static pthread_rwlock_t isubs_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct midge_subscription *isubs; /* Protected by isubs_lock */
atomic_int plugin_isubs_n;
static int isubs_cleared; /* Protected by isubs_lock: set by plugin_internal_subs_clear() */
static __thread int in_isub_cb;

midge_subscription *
plugin_subscribe(midge_plugin *self, const char *filter,
                 void (*cb)(void *arg, const midge_message *msg), void *arg)
{
    struct midge_subscription *s;
    size_t n = filter != NULL ? strlen(filter) : 0;
    const char *g;
    const char *in;
    size_t gl;
    size_t il;

    if (worker_current() != NULL || in_isub_cb) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s: subscribe must be called on the main "
                  "thread (init, reload, tick), outside subscription callbacks", self->name);
        return NULL;
    }
    if (cb == NULL || n == 0 || n > 65535 || !topic_filter_valid(filter, n) ||
        !mqtt_utf8_valid((const uint8_t *)filter, n) ||
        topic_share_split(filter, n, &g, &gl, &in, &il) != 0) {
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->filter = strdup(filter)) == NULL) {
        free(s);
        return NULL;
    }
    s->plugin = self;
    s->filter_len = n;
    s->cb = cb;
    s->arg = arg;
    pthread_rwlock_wrlock(&isubs_lock);
    isubs_cleared = 0; /* plugins loaded again */
    s->next = isubs;
    isubs = s;
    atomic_fetch_add(&plugin_isubs_n, 1);
    pthread_rwlock_unlock(&isubs_lock);
    return s;
}

void
plugin_unsubscribe(midge_plugin *self, midge_subscription *sub)
{
    struct midge_subscription **pp;
    int found = 0;
    int cleared;

    if (sub == NULL) {
        return;
    }
    if (worker_current() != NULL || in_isub_cb) {
        midge_log(MLOG_ERROR, "plugin bug plugin=%s: unsubscribe must be called on the main "
                  "thread, outside subscription callbacks: ignored", self->name);
        return;
    }
    pthread_rwlock_wrlock(&isubs_lock);
    for (pp = &isubs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            atomic_fetch_sub(&plugin_isubs_n, 1);
            found = 1;
            break;
        }
    }
    cleared = isubs_cleared;
    pthread_rwlock_unlock(&isubs_lock);
    if (found) {
        free(sub->filter);
        free(sub);
    } else if (!cleared) {
        /* Not ours (any more): never dereference it. */
        midge_log(MLOG_ERROR, "plugin bug plugin=%s: unsubscribe of an unknown or already "
                  "removed subscription: ignored", self->name);
    }
    /*
     * After plugin_internal_subs_clear() (unload, before the cleanup hooks)
     * the broker already freed every subscription: a plugin that
     * unsubscribes in cleanup, as the ABI allows, must not free it again.
     */
}

/* Runs the internal subscriptions matching m. [any thread publishing] */
void
plugin_internal_route(const struct msg *m)
{
    struct midge_subscription *s;
    int outer = in_isub_cb;

    pthread_rwlock_rdlock(&isubs_lock);
    in_isub_cb = 1;
    for (s = isubs; s != NULL; s = s->next) {
        if (topic_matches(s->filter, s->filter_len, m->topic, m->topic_len)) {
            s->cb(s->arg, (const midge_message *)m);
        }
    }
    /*
     * A callback that publishes routes again, nested: restore, not clear, so
     * that the outer callback's subscribe/unsubscribe is still refused (it
     * would wait for the write lock while this thread holds a read lock).
     */
    in_isub_cb = outer;
    pthread_rwlock_unlock(&isubs_lock);
}

/* Unload: frees what plugins did not unsubscribe. Main thread, workers stopped. */
void
plugin_internal_subs_clear(void)
{
    pthread_rwlock_wrlock(&isubs_lock);
    while (isubs != NULL) {
        struct midge_subscription *s = isubs;
        isubs = s->next;
        free(s->filter);
        free(s);
    }
    atomic_store(&plugin_isubs_n, 0);
    isubs_cleared = 1;
    pthread_rwlock_unlock(&isubs_lock);
}

/* ---- more about messages ---- */

uint64_t
plugin_message_id(const midge_message *m)
{
    return msg_id((struct msg *)m);
}

const void *
plugin_message_properties(const midge_message *m, uint32_t *len)
{
    const struct msg *msg = (const struct msg *)m;

    if (len != NULL) {
        *len = msg->props_len;
    }
    return msg->props_len ? msg->props : NULL;
}

uint32_t
plugin_message_expiry(const midge_message *m)
{
    return msg_expiry_left((const struct msg *)m, ev_time());
}

const midge_message *
plugin_message_new(midge_plugin *self, const char *topic, const void *payload, uint32_t len,
                   int qos, int retain, const void *props, uint32_t props_len, uint32_t expiry,
                   uint64_t id)
{
    size_t tl = topic != NULL ? strlen(topic) : 0;
    struct mqtt_props pr;
    struct msg *m;
    double now = ev_time();

    (void)self;
    if (tl == 0 || tl > 65535 || !topic_name_valid(topic, tl) ||
        !mqtt_utf8_valid((const uint8_t *)topic, tl) || qos < 0 || qos > 2 ||
        (payload == NULL && len > 0) || (props == NULL && props_len > 0) ||
        props_len > 1024 * 1024) {
        return NULL;
    }
    memset(&pr, 0, sizeof(pr));
    if (props_len > 0) {
        /* Validate as a PUBLISH's property block: the codec wants the length prefix. */
        uint8_t *buf = malloc(props_len + 4);
        size_t used = 0;
        uint8_t rc = 0;
        size_t pre;
        if (buf == NULL) {
            return NULL;
        }
        pre = mqtt_varint_write(props_len, buf);
        memcpy(buf + pre, props, props_len);
        if (mqtt_props_read(buf, pre + props_len, MQTT_PUBLISH, &pr, &used, &rc) != MQTT_OK ||
            (pr.present & (MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS) | MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID) |
                           MQTT_PBIT(MQTT_PROP_MESSAGE_EXPIRY)))) {
            free(buf);
            return NULL;
        }
        m = msg_new(topic, tl, payload, len, (uint8_t)qos, retain ? 1 : 0, &pr, now);
        free(buf);
    } else {
        m = msg_new(topic, tl, payload, len, (uint8_t)qos, retain ? 1 : 0, NULL, now);
    }
    if (m == NULL) {
        return NULL;
    }
    if (expiry > 0) {
        m->expiry_at = now + (double)expiry;
    }
    if (id != 0) {
        atomic_store(&m->id, id);
        msg_id_floor(id);
    }
    return (const midge_message *)m;
}
