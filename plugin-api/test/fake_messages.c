/*
 * Messages in the fake broker: the test makes them
 * (midge_test_message_new), plugins read them through api->message_* and
 * keep them with api->message_ref/unref, and the message hooks (message_in
 * with its edits, message_out, will_published) run on them.
 *
 * Reference counting is checked: a message's contents are freed (after
 * scribbling) when the last reference goes, so a plugin reading a message
 * it no longer holds shows up under ASan; the small header stays until the
 * broker is freed, so an extra unref or an accessor on a released message
 * is reported as a plugin bug, and references plugins still hold once every
 * instance is unloaded are reported too (midge_test_unload_all()).
 * Reference counts are protected by fb->lock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/* A message. Owned by fb->messages (see above); contents freed when `refs` drops to 0. */
struct midge_message {
    midge_test_broker *fb;
    long refs;      /* every holder: the test's references and the plugins' */
    long test_refs; /* the test's (midge_test_message_new, midge_test_message_in's *out) */
    int live;       /* contents allocated */
    int leak_reported;
    char *topic;
    uint8_t *payload; /* NULL when empty */
    uint32_t len;
    int qos;
    int retain;
    struct fake_props props; /* user properties */
    uint8_t *other;          /* the other properties, encoded as given to message_new */
    uint32_t other_len;
    uint8_t *enc;            /* message_properties: `other` then the user properties */
    uint32_t enc_len;
    uint32_t expiry;         /* seconds, 0: none */
    uint64_t id;
    struct midge_message *next;
};

/* The pending changes of one message_in hook. Owned by fb->edits until the broker is freed. */
struct midge_message_edit {
    midge_test_broker *fb;
    midge_plugin *plugin;
    atomic_uintptr_t thread; /* the hook's thread while it runs, else 0 */
    char *topic;             /* NULL: unchanged */
    uint8_t *payload;
    uint32_t len;
    int has_payload;
    struct fake_props add;   /* user properties to append */
    struct midge_message_edit *next;
};

/* Frees (after scribbling) the contents of a message nobody holds any more. */
static void
contents_free(struct midge_message *m)
{
    fake_borrowed_free(m->topic, m->topic != NULL ? strlen(m->topic) : 0);
    fake_borrowed_free(m->payload, m->len);
    fake_props_free(&m->props);
    free(m->other);
    free(m->enc);
    m->other = m->enc = NULL;
    m->topic = NULL;
    m->payload = NULL;
    m->live = 0;
}

/* 1 when m can be read; else records a plugin bug. */
static int
readable(const midge_message *m, const char *fn)
{
    int live;

    if (m == NULL) {
        return 0;
    }
    pthread_mutex_lock(&m->fb->lock);
    live = m->live;
    pthread_mutex_unlock(&m->fb->lock);
    if (!live) {
        fake_bug(m->fb, NULL, "api->%s() on a message whose last reference was released", fn);
    }
    return live;
}

static const char *
api_message_topic(const midge_message *m)
{
    return readable(m, "message_topic") ? m->topic : NULL;
}

static const void *
api_message_payload(const midge_message *m, uint32_t *len)
{
    int ok = readable(m, "message_payload");

    if (len != NULL) {
        *len = ok ? m->len : 0;
    }
    return ok ? m->payload : NULL;
}

static int
api_message_qos(const midge_message *m)
{
    return readable(m, "message_qos") ? m->qos : 0;
}

static int
api_message_retain(const midge_message *m)
{
    return readable(m, "message_retain") ? m->retain : 0;
}

static int
api_message_user_property_next(const midge_message *m, size_t *pos, const char **key,
                               size_t *key_len, const char **value, size_t *value_len)
{
    if (!readable(m, "message_user_property_next")) {
        return 0;
    }
    return fake_props_next(&m->props, pos, key, key_len, value, value_len);
}

static const midge_message *
api_message_ref(const midge_message *cm)
{
    midge_message *m = (midge_message *)cm;
    int live;

    if (m == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&m->fb->lock);
    live = m->live;
    if (live) {
        m->refs++;
    }
    pthread_mutex_unlock(&m->fb->lock);
    if (!live) {
        fake_bug(m->fb, NULL, "api->message_ref() on a message whose last reference was "
                 "released (take the reference while you hold the message)");
        return NULL;
    }
    return m;
}

static void
api_message_unref(const midge_message *cm)
{
    midge_message *m = (midge_message *)cm;
    int ok;
    int last = 0;

    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->fb->lock);
    /* The plugins' references are those beyond the test's. */
    ok = m->live && m->refs > m->test_refs;
    if (ok) {
        last = --m->refs == 0;
    }
    pthread_mutex_unlock(&m->fb->lock);
    if (!ok) {
        fake_bug(m->fb, NULL, "api->message_unref() without a matching api->message_ref()");
        return;
    }
    if (last) {
        contents_free(m);
    }
}

/* 1 when the calling thread runs the hook of edit e; else records a plugin bug. */
static int
edit_active(midge_message_edit *e, const char *fn)
{
    if (e == NULL) {
        return 0;
    }
    if (atomic_load(&e->thread) != fake_this_thread()) {
        fake_bug(e->fb, e->plugin, "api->%s() outside the message_in hook that received the "
                 "edit (or from another thread)", fn);
        return 0;
    }
    return 1;
}

static int
api_edit_topic(midge_message_edit *e, const char *topic)
{
    char *copy;

    if (!edit_active(e, "edit_topic")) {
        return e == NULL ? -MIDGE_EINVAL : -MIDGE_ESTATE;
    }
    if (!fake_topic_ok(topic) || !fake_utf8_ok(topic, strlen(topic))) {
        return -MIDGE_EINVAL;
    }
    if ((copy = strdup(topic)) == NULL) {
        return -MIDGE_ENOMEM;
    }
    free(e->topic);
    e->topic = copy;
    return 0;
}

static int
api_edit_payload(midge_message_edit *e, const void *payload, uint32_t len)
{
    uint8_t *copy = NULL;

    if (!edit_active(e, "edit_payload")) {
        return e == NULL ? -MIDGE_EINVAL : -MIDGE_ESTATE;
    }
    if (payload == NULL && len > 0) {
        return -MIDGE_EINVAL;
    }
    if (len > 0 && (copy = fake_memdup(payload, len)) == NULL) {
        return -MIDGE_ENOMEM;
    }
    free(e->payload);
    e->payload = copy;
    e->len = len;
    e->has_payload = 1;
    return 0;
}

static int
api_edit_user_property_add(midge_message_edit *e, const char *key, const char *value)
{
    if (!edit_active(e, "edit_user_property_add")) {
        return e == NULL ? -MIDGE_EINVAL : -MIDGE_ESTATE;
    }
    if (key == NULL || value == NULL || !fake_utf8_ok(key, strlen(key)) ||
        !fake_utf8_ok(value, strlen(value))) {
        return -MIDGE_EINVAL;
    }
    return fake_props_add(&e->add, key, strlen(key), value, strlen(value));
}


/* ---- Test side -------------------------------------------------------------- */

/* Appends n bytes to a growing buffer. 0 or -MIDGE_ENOMEM. */
static int
buf_add(uint8_t **buf, uint32_t *len, const void *src, size_t n)
{
    uint8_t *nb = realloc(*buf, *len + n + 1);

    if (nb == NULL) {
        return -MIDGE_ENOMEM;
    }
    if (n > 0) {
        memcpy(nb + *len, src, n);
    }
    *buf = nb;
    *len += (uint32_t)n;
    return 0;
}

/* Appends an MQTT string or binary: two-byte length, then the bytes. */
static int
buf_add_str(uint8_t **buf, uint32_t *len, const char *s, size_t n)
{
    uint8_t hdr[2] = {(uint8_t)(n >> 8), (uint8_t)n};

    return n > 65535 || buf_add(buf, len, hdr, 2) != 0 || buf_add(buf, len, s, n) != 0
               ? -MIDGE_ENOMEM
               : 0;
}

/* Rebuilds m->enc from m->other and m->props. 0 or -MIDGE_ENOMEM. */
static int
encode(midge_message *m)
{
    uint8_t *enc = NULL;
    uint32_t len = 0;
    size_t i;
    int rc = buf_add(&enc, &len, m->other, m->other_len);

    for (i = 0; i < m->props.n && rc == 0; i++) {
        static const uint8_t user_property = 0x26;
        rc = buf_add(&enc, &len, &user_property, 1);
        rc = rc != 0 ? rc : buf_add_str(&enc, &len, m->props.v[i].key, m->props.v[i].key_len);
        rc = rc != 0 ? rc
                     : buf_add_str(&enc, &len, m->props.v[i].value, m->props.v[i].value_len);
    }
    if (rc != 0) {
        free(enc);
        return rc;
    }
    free(m->enc);
    m->enc = enc;
    m->enc_len = len;
    return 0;
}

/*
 * Splits PUBLISH properties as message_properties returns them into user
 * properties (added to *user) and the others (appended to *other). Only
 * the properties that travel with a message are accepted: payload format
 * (0x01), content type (0x03), response topic (0x08), correlation data
 * (0x09), user property (0x26). 0, -MIDGE_EINVAL or -MIDGE_ENOMEM.
 */
static int
decode(const uint8_t *p, uint32_t n, struct fake_props *user, uint8_t **other,
       uint32_t *other_len)
{
    uint32_t i = 0;

    while (i < n) {
        uint8_t id = p[i];
        uint32_t start = i++;
        size_t l1;
        size_t l2;

        switch (id) {
        case 0x01:
            if (i >= n || p[i] > 1) {
                return -MIDGE_EINVAL;
            }
            i++;
            break;
        case 0x03:
        case 0x08:
        case 0x09:
            if (i + 2 > n || i + 2 + (l1 = (size_t)p[i] << 8 | p[i + 1]) > n ||
                (id != 0x09 && !fake_utf8_ok((const char *)p + i + 2, l1))) {
                return -MIDGE_EINVAL;
            }
            i += 2 + (uint32_t)l1;
            break;
        case 0x26:
            if (i + 2 > n || i + 2 + (l1 = (size_t)p[i] << 8 | p[i + 1]) + 2 > n) {
                return -MIDGE_EINVAL;
            }
            l2 = (size_t)p[i + 2 + l1] << 8 | p[i + 3 + l1];
            if (i + 4 + l1 + l2 > n || !fake_utf8_ok((const char *)p + i + 2, l1) ||
                !fake_utf8_ok((const char *)p + i + 4 + l1, l2)) {
                return -MIDGE_EINVAL;
            }
            if (fake_props_add(user, (const char *)p + i + 2, l1, (const char *)p + i + 4 + l1,
                               l2) != 0) {
                return -MIDGE_ENOMEM;
            }
            i += 4 + (uint32_t)(l1 + l2);
            continue;
        default:
            return -MIDGE_EINVAL;
        }
        if (buf_add(other, other_len, p + start, i - start) != 0) {
            return -MIDGE_ENOMEM;
        }
    }
    return 0;
}

/*
 * A new message with one reference (the test's when `test_ref`, else the
 * caller plugin's), the given contents copied: user properties `props` (may
 * be NULL) after the other properties `other`. `id` 0: a new id. NULL when
 * out of memory.
 */
static midge_message *
message_make(midge_test_broker *fb, const char *topic, const void *payload, uint32_t len,
             int qos, int retain, const struct fake_props *props, const uint8_t *other,
             uint32_t other_len, uint32_t expiry, uint64_t id, int test_ref)
{
    midge_message *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    m->fb = fb;
    m->refs = 1;
    m->test_refs = test_ref ? 1 : 0;
    m->live = 1;
    m->topic = strdup(topic);
    m->payload = len > 0 ? fake_memdup(payload, len) : NULL;
    m->len = len;
    m->qos = qos;
    m->retain = retain ? 1 : 0;
    m->expiry = expiry;
    if (m->topic == NULL || (len > 0 && m->payload == NULL) ||
        (props != NULL && fake_props_copy(&m->props, props) != 0) ||
        buf_add(&m->other, &m->other_len, other, other_len) != 0 || encode(m) != 0) {
        contents_free(m);
        free(m);
        return NULL;
    }
    pthread_mutex_lock(&fb->lock);
    m->id = id != 0 ? id : ++fb->msg_seq;
    m->next = fb->messages;
    fb->messages = m;
    pthread_mutex_unlock(&fb->lock);
    return m;
}

static uint64_t
api_message_id(const midge_message *m)
{
    return readable(m, "message_id") ? m->id : 0;
}

static const void *
api_message_properties(const midge_message *m, uint32_t *len)
{
    int ok = readable(m, "message_properties");

    if (len != NULL) {
        *len = ok ? m->enc_len : 0;
    }
    return ok && m->enc_len > 0 ? m->enc : NULL;
}

static uint32_t
api_message_expiry(const midge_message *m)
{
    return readable(m, "message_expiry") ? m->expiry : 0;
}

static const midge_message *
api_message_new(midge_plugin *self, const char *topic, const void *payload, uint32_t len,
                int qos, int retain, const void *props, uint32_t props_len, uint32_t expiry,
                uint64_t id)
{
    struct fake_props user = {NULL, 0, 0};
    uint8_t *other = NULL;
    uint32_t other_len = 0;
    midge_message *m = NULL;

    if (self == NULL || !fake_topic_ok(topic) || qos < 0 || qos > 2 ||
        (payload == NULL && len > 0) || (props == NULL && props_len > 0) ||
        decode(props, props_len, &user, &other, &other_len) != 0) {
        goto out;
    }
    m = message_make(self->fb, topic, payload, len, qos, retain, &user, other, other_len, expiry,
                     id, 0);
out:
    fake_props_free(&user);
    free(other);
    return m;
}

/* The entries of the API table that this file implements. */
void
fake_messages_api_fill(struct midge_api *a)
{
    a->message_topic = api_message_topic;
    a->message_payload = api_message_payload;
    a->message_qos = api_message_qos;
    a->message_retain = api_message_retain;
    a->message_user_property_next = api_message_user_property_next;
    a->message_ref = api_message_ref;
    a->message_unref = api_message_unref;
    a->edit_topic = api_edit_topic;
    a->edit_payload = api_edit_payload;
    a->edit_user_property_add = api_edit_user_property_add;
    a->message_id = api_message_id;
    a->message_properties = api_message_properties;
    a->message_expiry = api_message_expiry;
    a->message_new = api_message_new;
}

/* Creates a message; see plugin_test.h. */
midge_message *
midge_test_message_new(midge_test_broker *fb, const char *topic, const void *payload,
                       size_t len, int qos, int retain)
{
    if (fb == NULL || !fake_topic_ok(topic) || qos < 0 || qos > 2 || len > UINT32_MAX ||
        (payload == NULL && len > 0)) {
        return NULL;
    }
    return message_make(fb, topic, payload, (uint32_t)len, qos, retain, NULL, NULL, 0, 0, 0, 1);
}

/* Adds a user property; see plugin_test.h. */
int
midge_test_message_add_user_property(midge_message *m, const char *key, const char *value)
{
    if (m == NULL || key == NULL || value == NULL) {
        return -MIDGE_EINVAL;
    }
    if (!m->live) {
        return -MIDGE_ESTATE;
    }
    if (fake_props_add(&m->props, key, strlen(key), value, strlen(value)) != 0) {
        return -MIDGE_ENOMEM;
    }
    return encode(m);
}

/* Sets the expiry interval; see plugin_test.h. */
int
midge_test_message_set_expiry(midge_message *m, uint32_t seconds)
{
    if (m == NULL || !m->live) {
        return -MIDGE_EINVAL;
    }
    m->expiry = seconds;
    return 0;
}

/* The process-unique id; see plugin_test.h. */
uint64_t
midge_test_message_id(const midge_message *m)
{
    return m != NULL ? m->id : 0;
}

/* Drops one test reference; see plugin_test.h. */
void
midge_test_message_free(midge_message *m)
{
    int last = 0;

    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->fb->lock);
    if (m->test_refs > 0) {
        m->test_refs--;
        last = --m->refs == 0;
    }
    pthread_mutex_unlock(&m->fb->lock);
    if (last) {
        contents_free(m);
    }
}

/* The topic; see plugin_test.h. */
const char *
midge_test_message_topic(const midge_message *m)
{
    return m != NULL && m->live ? m->topic : NULL;
}

/* The payload and its length; see plugin_test.h. */
const void *
midge_test_message_payload(const midge_message *m, size_t *len)
{
    if (len != NULL) {
        *len = m != NULL && m->live ? m->len : 0;
    }
    return m != NULL && m->live ? m->payload : NULL;
}

/* The value of the first user property `key` (NUL-terminated); see plugin_test.h. */
const char *
midge_test_message_user_property(const midge_message *m, const char *key, size_t nth)
{
    size_t i;

    if (m == NULL || !m->live || key == NULL) {
        return NULL;
    }
    for (i = 0; i < m->props.n; i++) {
        if (m->props.v[i].key_len == strlen(key) && memcmp(m->props.v[i].key, key,
                                                           m->props.v[i].key_len) == 0) {
            if (nth-- == 0) {
                return m->props.v[i].value;
            }
        }
    }
    return NULL;
}

/* Number of user properties; see plugin_test.h. */
size_t
midge_test_message_user_property_count(const midge_message *m)
{
    return m != NULL && m->live ? m->props.n : 0;
}

/* References plugins hold; see plugin_test.h. */
long
midge_test_message_refs(const midge_message *m)
{
    long n;

    pthread_mutex_lock(&m->fb->lock);
    n = m->refs - m->test_refs;
    pthread_mutex_unlock(&m->fb->lock);
    return n;
}

/* 1 when the edit changes something. */
static int
edit_changes(const midge_message_edit *e)
{
    return e->topic != NULL || e->has_payload || e->add.n > 0;
}

/* The message as it continues after the hook: msg with e applied (a new message). */
static midge_message *
apply_edit(const midge_message *msg, const midge_message_edit *e)
{
    midge_message *m;
    struct fake_props props = {NULL, 0, 0};

    if (fake_props_copy(&props, &msg->props) != 0 || fake_props_copy(&props, &e->add) != 0) {
        fake_props_free(&props);
        return NULL;
    }
    /* The edited message is a new one: a new id, the same expiry and other properties. */
    m = message_make(msg->fb, e->topic != NULL ? e->topic : msg->topic,
                     e->has_payload ? e->payload : msg->payload,
                     e->has_payload ? e->len : msg->len, msg->qos, msg->retain, &props,
                     msg->other, msg->other_len, msg->expiry, 0, 1);
    fake_props_free(&props);
    return m;
}

/* Runs the message_in hook; see plugin_test.h. */
int
midge_test_message_in(midge_plugin *p, midge_client *c, midge_message *msg, uint8_t *reason,
                      midge_message **out)
{
    midge_test_broker *fb;
    midge_message_edit *e = NULL;
    uint8_t r = 0;
    int rc = -MIDGE_EINVAL;

    if (reason != NULL) {
        *reason = 0;
    }
    if (out != NULL) {
        *out = NULL;
    }
    if (p == NULL || c == NULL || msg == NULL || !msg->live) {
        goto out;
    }
    fb = p->fb;
    rc = -MIDGE_ESTATE;
    if (!p->loaded) {
        goto out;
    }
    rc = -MIDGE_ENOTSUP;
    if (!HOOK_HAS(p, message_in)) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    if ((e = calloc(1, sizeof(*e))) == NULL) {
        goto out;
    }
    e->fb = fb;
    e->plugin = p;
    pthread_mutex_lock(&fb->lock);
    e->next = fb->edits;
    fb->edits = e;
    pthread_mutex_unlock(&fb->lock);

    atomic_store(&e->thread, fake_this_thread());
    atomic_store(&c->hook_thread, fake_this_thread());
    rc = p->hooks->message_in(p->state, c, msg, e, &r);
    atomic_store(&c->hook_thread, 0);
    atomic_store(&e->thread, 0);

    if (rc != MIDGE_ALLOW && rc != MIDGE_DENY && rc != MIDGE_DEFER) {
        fake_bug(fb, p, "message_in hook returned %d (%s): ALLOW, DENY or DEFER expected; "
                 "treated as DENY", rc, fake_verdict_name(rc));
    } else if (rc != MIDGE_DENY && out != NULL) {
        if (edit_changes(e)) {
            *out = apply_edit(msg, e);
        } else {
            pthread_mutex_lock(&fb->lock);
            msg->refs++;
            msg->test_refs++;
            pthread_mutex_unlock(&fb->lock);
            *out = msg;
        }
    }
    if (reason != NULL) {
        *reason = r;
    }
    /* The edit stays allocated (inert) so a late api->edit_*() is a reported bug. */
    free(e->topic);
    free(e->payload);
    fake_props_free(&e->add);
    e->topic = NULL;
    e->payload = NULL;
    e->has_payload = 0;
out:
    return rc;
}

/* Runs the message_out hook; see plugin_test.h. */
int
midge_test_message_out(midge_plugin *p, midge_client *c, midge_message *msg)
{
    if (p == NULL || c == NULL || msg == NULL || !msg->live) {
        return -MIDGE_EINVAL;
    }
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, message_out)) {
        return -MIDGE_ENOTSUP;
    }
    atomic_store(&c->hook_thread, fake_this_thread());
    p->hooks->message_out(p->state, c, msg);
    atomic_store(&c->hook_thread, 0);
    return 0;
}

/* Runs the will_published hook; see plugin_test.h. */
int
midge_test_will_published(midge_plugin *p, const char *client_id, midge_message *will)
{
    char *id = NULL;
    int oom = 0;
    int rc = -MIDGE_EINVAL;

    if (p == NULL || client_id == NULL || will == NULL || !will->live) {
        goto out;
    }
    rc = -MIDGE_ESTATE;
    if (!p->loaded) {
        goto out;
    }
    rc = -MIDGE_ENOTSUP;
    if (!HOOK_HAS(p, will_published)) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    if ((id = fake_borrowed_copy(client_id, strlen(client_id), &oom)) == NULL) {
        goto out;
    }
    p->hooks->will_published(p->state, id, will);
    rc = 0;
out:
    fake_borrowed_free(id, id != NULL ? strlen(id) : 0);
    return rc;
}

/*
 * Takes a reference for the fake broker itself (counted like the test's, so
 * not as a plugin's). 0, or -MIDGE_EINVAL when m was released.
 */
int
fake_message_hold(const midge_message *cm)
{
    midge_message *m = (midge_message *)cm;
    int live;

    pthread_mutex_lock(&m->fb->lock);
    live = m->live;
    if (live) {
        m->refs++;
        m->test_refs++;
    }
    pthread_mutex_unlock(&m->fb->lock);
    return live ? 0 : -MIDGE_EINVAL;
}

/* Drops a reference taken with fake_message_hold(). */
void
fake_message_drop(const midge_message *m)
{
    midge_test_message_free((midge_message *)m);
}

/* Reports references plugins still hold (every instance is unloaded by now). */
void
fake_messages_check(midge_test_broker *fb)
{
    for (;;) {
        struct midge_message *m;
        char topic[256] = "";
        long held = 0;

        pthread_mutex_lock(&fb->lock);
        for (m = fb->messages; m != NULL; m = m->next) {
            if (m->live && !m->leak_reported && m->refs > m->test_refs) {
                m->leak_reported = 1;
                held = m->refs - m->test_refs;
                snprintf(topic, sizeof(topic), "%s", m->topic);
                break;
            }
        }
        pthread_mutex_unlock(&fb->lock);
        if (m == NULL) {
            break;
        }
        fake_bug(fb, NULL, "message on '%s' still referenced %ld time(s) after every instance "
                 "was unloaded: api->message_ref() without api->message_unref()", topic, held);
    }
}

/* Frees every message and edit (with the broker). */
void
fake_messages_free(midge_test_broker *fb)
{
    while (fb->messages != NULL) {
        struct midge_message *m = fb->messages;
        fb->messages = m->next;
        if (m->live) {
            contents_free(m);
        }
        free(m);
    }
    while (fb->edits != NULL) {
        struct midge_message_edit *e = fb->edits;
        fb->edits = e->next;
        free(e);
    }
}
