/*
 * Persistence in the fake broker: the test feeds events to a plugin's
 * persist hook (midge_test_persist) and runs its restore hook
 * (midge_test_restore); what the plugin declares durable or failing and
 * what it restores is recorded for the test to check. The restore_* calls
 * are validated as the header describes (sessions first, valid filters,
 * options, QoS and delivery states); invalid data is -MIDGE_EINVAL, as the
 * broker "logs and skips it".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/* A restored item; `r` points into the owned copies. Owned by fb's restored list. */
struct fake_restored {
    struct midge_test_restored r;
    char *instance;
    char *client_id;
    char *filter;
    const midge_message *msg; /* held by the fake broker (fake_message_hold) */
    struct fake_restored *next;
};

static void
api_persist_durable(midge_plugin *self, uint64_t seq)
{
    uint64_t before;

    if (self == NULL) {
        return;
    }
    pthread_mutex_lock(&self->fb->lock);
    before = self->durable_seq;
    if (seq > before) {
        self->durable_seq = seq;
    }
    pthread_mutex_unlock(&self->fb->lock);
    if (seq < before) {
        fake_bug(self->fb, self, "api->persist_durable(%llu) after %llu: durability only moves "
                 "forward", (unsigned long long)seq, (unsigned long long)before);
    }
}

static void
api_persist_failing(midge_plugin *self, int failing)
{
    if (self == NULL) {
        return;
    }
    pthread_mutex_lock(&self->fb->lock);
    self->persist_failing = failing ? 1 : 0;
    pthread_mutex_unlock(&self->fb->lock);
}

/* 1 when the calling thread runs self's restore hook; else records a plugin bug. */
static int
restoring(midge_plugin *self, const char *fn)
{
    if (self == NULL) {
        return 0;
    }
    if (atomic_load(&self->restore_thread) != fake_this_thread()) {
        fake_bug(self->fb, self, "api->%s() called outside the restore hook", fn);
        return 0;
    }
    return 1;
}

/* 1 when self restored session client_id already. With fb->lock held. */
static int
session_restored_locked(midge_plugin *self, const char *client_id)
{
    const struct fake_restored *x;

    for (x = self->fb->restored_head; x != NULL; x = x->next) {
        if (x->r.kind == MIDGE_TEST_R_SESSION && strcmp(x->r.instance, self->name) == 0 &&
            strcmp(x->r.client_id, client_id) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Records item `r` (strings and message copied / held). 0 or -MIDGE_ENOMEM. */
static int
record(midge_plugin *self, const struct midge_test_restored *r)
{
    midge_test_broker *fb = self->fb;
    struct fake_restored *x = calloc(1, sizeof(*x));

    if (x == NULL) {
        return -MIDGE_ENOMEM;
    }
    x->r = *r;
    x->instance = strdup(self->name);
    x->client_id = r->client_id != NULL ? strdup(r->client_id) : NULL;
    x->filter = r->filter != NULL ? strdup(r->filter) : NULL;
    if (x->instance == NULL || (r->client_id != NULL && x->client_id == NULL) ||
        (r->filter != NULL && x->filter == NULL)) {
        free(x->instance);
        free(x->client_id);
        free(x->filter);
        free(x);
        return -MIDGE_ENOMEM;
    }
    if (r->msg != NULL && fake_message_hold(r->msg) == 0) {
        x->msg = r->msg;
    }
    x->r.instance = x->instance;
    x->r.client_id = x->client_id;
    x->r.filter = x->filter;
    x->r.msg = x->msg;
    pthread_mutex_lock(&fb->lock);
    if (fb->restored_tail != NULL) {
        fb->restored_tail->next = x;
    } else {
        fb->restored_head = x;
    }
    fb->restored_tail = x;
    fb->restored_n++;
    pthread_mutex_unlock(&fb->lock);
    return 0;
}

/* Common checks: in the hook, a client id whose session was restored (when `need_session`). */
static int
check(midge_plugin *self, const char *fn, const char *client_id, int need_session)
{
    int ok;

    if (!restoring(self, fn)) {
        return -MIDGE_ESTATE;
    }
    if (client_id == NULL || client_id[0] == '\0') {
        return -MIDGE_EINVAL;
    }
    if (!need_session) {
        return 0;
    }
    pthread_mutex_lock(&self->fb->lock);
    ok = session_restored_locked(self, client_id);
    pthread_mutex_unlock(&self->fb->lock);
    return ok ? 0 : -MIDGE_EINVAL; /* sessions first */
}

/* 1 when m is a message that can still be read. */
static int
msg_ok(const midge_message *m)
{
    return m != NULL && midge_test_message_topic(m) != NULL;
}

static int
api_restore_session(midge_plugin *self, const char *client_id, uint32_t expiry, int protocol,
                    uint32_t expires_in)
{
    struct midge_test_restored r;
    int rc = check(self, "restore_session", client_id, 0);
    int dup;

    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&self->fb->lock);
    dup = session_restored_locked(self, client_id);
    pthread_mutex_unlock(&self->fb->lock);
    if (dup || protocol < 3 || protocol > 5) {
        return -MIDGE_EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.kind = MIDGE_TEST_R_SESSION;
    r.client_id = client_id;
    r.expiry = expiry;
    r.protocol = protocol;
    r.expires_in = expires_in;
    return record(self, &r);
}

static int
api_restore_subscription(midge_plugin *self, const char *client_id, const char *filter,
                         int options, uint32_t sub_id)
{
    struct midge_test_restored r;
    int rc = check(self, "restore_subscription", client_id, 1);

    if (rc != 0) {
        return rc;
    }
    /* Options byte: QoS 0-2, retain handling 0-2, reserved bits 0 [MQTT-3.8.3-5]. */
    if (!fake_filter_ok(filter) || options < 0 || options > 0x3F || (options & 3) == 3 ||
        ((options >> 4) & 3) == 3 || sub_id > 268435455) {
        return -MIDGE_EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.kind = MIDGE_TEST_R_SUBSCRIPTION;
    r.client_id = client_id;
    r.filter = filter;
    r.options = options;
    r.sub_id = sub_id;
    return record(self, &r);
}

static int
api_restore_retained(midge_plugin *self, const midge_message *msg)
{
    struct midge_test_restored r;

    if (!restoring(self, "restore_retained")) {
        return -MIDGE_ESTATE;
    }
    if (!msg_ok(msg)) {
        return -MIDGE_EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.kind = MIDGE_TEST_R_RETAINED;
    r.msg = msg;
    return record(self, &r);
}

static int
api_restore_message(midge_plugin *self, const char *client_id, uint64_t delivery_id,
                    const midge_message *msg, int qos, int retain, int state, uint16_t packet_id)
{
    struct midge_test_restored r;
    int rc = check(self, "restore_message", client_id, 1);

    if (rc != 0) {
        return rc;
    }
    /* QoS 0 is never persisted; a sent delivery has a packet id; PUBREL only in QoS 2. */
    if (!msg_ok(msg) || delivery_id == 0 || qos < 1 || qos > 2 ||
        state < MIDGE_DELIVERY_QUEUED || state > MIDGE_DELIVERY_RELEASED ||
        (state != MIDGE_DELIVERY_QUEUED && packet_id == 0) ||
        (state == MIDGE_DELIVERY_RELEASED && qos != 2)) {
        return -MIDGE_EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.kind = MIDGE_TEST_R_MESSAGE;
    r.client_id = client_id;
    r.delivery_id = delivery_id;
    r.msg = msg;
    r.qos = qos;
    r.retain = retain ? 1 : 0;
    r.state = state;
    r.packet_id = packet_id;
    return record(self, &r);
}

static int
api_restore_qos2_in(midge_plugin *self, const char *client_id, uint16_t packet_id)
{
    struct midge_test_restored r;
    int rc = check(self, "restore_qos2_in", client_id, 1);

    if (rc != 0) {
        return rc;
    }
    if (packet_id == 0) {
        return -MIDGE_EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.kind = MIDGE_TEST_R_QOS2_IN;
    r.client_id = client_id;
    r.packet_id = packet_id;
    return record(self, &r);
}

static int
api_restore_will(midge_plugin *self, const char *client_id, const midge_message *will,
                 uint32_t delay)
{
    struct midge_test_restored r;
    int rc = check(self, "restore_will", client_id, 1);

    if (rc != 0) {
        return rc;
    }
    if (!msg_ok(will)) {
        return -MIDGE_EINVAL;
    }
    memset(&r, 0, sizeof(r));
    r.kind = MIDGE_TEST_R_WILL;
    r.client_id = client_id;
    r.msg = will;
    r.delay = delay;
    return record(self, &r);
}

/* The entries of the API table that this file implements. */
void
fake_persist_api_fill(struct midge_api *a)
{
    a->persist_durable = api_persist_durable;
    a->persist_failing = api_persist_failing;
    a->restore_session = api_restore_session;
    a->restore_subscription = api_restore_subscription;
    a->restore_retained = api_restore_retained;
    a->restore_message = api_restore_message;
    a->restore_qos2_in = api_restore_qos2_in;
    a->restore_will = api_restore_will;
}

/* A borrowed copy of a string (NULL stays NULL); sets *oom when out of memory. */
static char *
str_copy(const char *s, int *oom)
{
    return s != NULL ? fake_borrowed_copy(s, strlen(s), oom) : NULL;
}

static void
str_free(char *s)
{
    fake_borrowed_free(s, s != NULL ? strlen(s) : 0);
}

/* Runs the persist hook; see plugin_test.h. */
int
midge_test_persist(midge_plugin *p, const struct midge_persist_event *ev)
{
    struct midge_persist_event e;
    char *id = NULL;
    char *filter = NULL;
    int oom = 0;
    int rc = -MIDGE_EINVAL;

    if (p == NULL || ev == NULL) {
        goto out;
    }
    rc = -MIDGE_ESTATE;
    if (!p->loaded) {
        goto out;
    }
    rc = -MIDGE_ENOTSUP;
    if (!HOOK_HAS(p, persist)) {
        goto out;
    }
    e = *ev;
    e.size = sizeof(e);
    e.client_id = id = str_copy(ev->client_id, &oom);
    e.filter = filter = str_copy(ev->filter, &oom);
    rc = -MIDGE_ENOMEM;
    if (oom) {
        goto out;
    }
    p->hooks->persist(p->state, &e);
    rc = 0;
out:
    str_free(id);
    str_free(filter);
    return rc;
}

/* Highest seq declared durable; see plugin_test.h. */
uint64_t
midge_test_persist_durable(const midge_plugin *p)
{
    uint64_t seq;

    pthread_mutex_lock(&p->fb->lock);
    seq = p->durable_seq;
    pthread_mutex_unlock(&p->fb->lock);
    return seq;
}

/* Whether the plugin says storage fails; see plugin_test.h. */
int
midge_test_persist_failing(const midge_plugin *p)
{
    int failing;

    pthread_mutex_lock(&p->fb->lock);
    failing = p->persist_failing;
    pthread_mutex_unlock(&p->fb->lock);
    return failing;
}

/* Runs the restore hook; see plugin_test.h. */
int
midge_test_restore(midge_plugin *p)
{
    int rc;

    if (p == NULL) {
        return -MIDGE_EINVAL;
    }
    p->err[0] = '\0';
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, restore)) {
        return -MIDGE_ENOTSUP;
    }
    /* Start-up on the main thread: api->set_error() explains a refusal. */
    atomic_store(&p->restore_thread, fake_this_thread());
    atomic_store(&p->config_thread, fake_this_thread());
    rc = p->hooks->restore(p->state);
    atomic_store(&p->config_thread, 0);
    atomic_store(&p->restore_thread, 0);
    if (rc > 0) {
        fake_bug(p->fb, p, "restore returned %d: 0 or a negative error expected", rc);
        rc = -MIDGE_EINVAL;
    }
    if (rc != 0 && p->err[0] == '\0') {
        fake_bug(p->fb, p, "restore failed (%d) without explaining why with api->set_error()",
                 rc);
    }
    return rc;
}

/* Number of restored items; see plugin_test.h. */
size_t
midge_test_restored_count(midge_test_broker *fb)
{
    size_t n;

    pthread_mutex_lock(&fb->lock);
    n = fb->restored_n;
    pthread_mutex_unlock(&fb->lock);
    return n;
}

/* Restored item i; see plugin_test.h. */
const struct midge_test_restored *
midge_test_restored(midge_test_broker *fb, size_t i)
{
    const struct fake_restored *x;

    pthread_mutex_lock(&fb->lock);
    for (x = fb->restored_head; x != NULL && i > 0; x = x->next, i--) {
    }
    pthread_mutex_unlock(&fb->lock);
    return x != NULL ? &x->r : NULL;
}

/* Forgets the restored items; see plugin_test.h. */
void
midge_test_restored_clear(midge_test_broker *fb)
{
    struct fake_restored *x;

    pthread_mutex_lock(&fb->lock);
    x = fb->restored_head;
    fb->restored_head = fb->restored_tail = NULL;
    fb->restored_n = 0;
    pthread_mutex_unlock(&fb->lock);
    while (x != NULL) {
        struct fake_restored *next = x->next;
        if (x->msg != NULL) {
            fake_message_drop(x->msg);
        }
        free(x->instance);
        free(x->client_id);
        free(x->filter);
        free(x);
        x = next;
    }
}

/* Frees the restored items (with the broker). */
void
fake_persist_free(midge_test_broker *fb)
{
    midge_test_restored_clear(fb);
}
