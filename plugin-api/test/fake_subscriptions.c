/*
 * Internal subscriptions of the fake broker (api->subscribe/unsubscribe):
 * midge_test_publish_to_subscriptions() runs the callbacks of the live
 * subscriptions whose filter matches a message's topic, with MQTT topic
 * matching. Removed subscriptions stay allocated (inert) until the broker
 * is freed so a second unsubscribe is a reported plugin bug. The list is
 * protected by fb->lock; callbacks run without it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/* A subscription. Owned by fb->subs (see above). */
struct midge_subscription {
    midge_test_broker *fb;
    midge_plugin *plugin;
    char *filter;
    void (*cb)(void *arg, const midge_message *msg);
    void *arg;
    int live;
    struct midge_subscription *next;
};

/*
 * A topic filter the broker accepts for a plugin: 1..65535 bytes of UTF-8,
 * '+' and '#' only as whole levels, '#' only last [MQTT-4.7.1-1],
 * [MQTT-4.7.1-2], [MQTT-4.7.1-3]; no shared subscription ($share/).
 */
int
fake_filter_ok(const char *f)
{
    size_t n;
    size_t i;

    if (f == NULL || (n = strlen(f)) == 0 || n > 65535 || !fake_utf8_ok(f, n) ||
        strncmp(f, "$share/", 7) == 0) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        int starts = i == 0 || f[i - 1] == '/';
        int ends = i + 1 == n || f[i + 1] == '/';
        if (f[i] == '+' && !(starts && ends)) {
            return 0;
        }
        if (f[i] == '#' && !(starts && i + 1 == n)) {
            return 0;
        }
    }
    return 1;
}

/*
 * 1 when topic name `t` matches filter `f`. Wildcards at the first level do
 * not match topics starting with '$' [MQTT-4.7.2-1]; "a/#" matches "a"
 * [MQTT-4.7.1-2]; '+' matches one level, empty too.
 */
int
fake_topic_match(const char *f, const char *t)
{
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#')) {
        return 0;
    }
    for (;;) {
        const char *fe = strchr(f, '/');
        const char *te = strchr(t, '/');
        size_t fl = fe != NULL ? (size_t)(fe - f) : strlen(f);
        size_t tl = te != NULL ? (size_t)(te - t) : strlen(t);

        if (fl == 1 && f[0] == '#') {
            return 1;
        }
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0)) {
            return 0;
        }
        if (fe == NULL || te == NULL) {
            /* Both end here, or the topic ends and the filter only has "/#" left. */
            return fe == NULL ? te == NULL : strcmp(fe + 1, "#") == 0;
        }
        f = fe + 1;
        t = te + 1;
    }
}

static midge_subscription *
api_subscribe(midge_plugin *self, const char *filter,
              void (*cb)(void *arg, const midge_message *msg), void *arg)
{
    struct midge_subscription *s = NULL;

    if (self == NULL) {
        goto out;
    }
    if (!fake_on_main_context(self)) {
        fake_bug(self->fb, self, "api->subscribe(\"%s\") called outside init, reload and tick",
                 filter != NULL ? filter : "(null)");
        goto out;
    }
    if (cb == NULL || !fake_filter_ok(filter) || (s = calloc(1, sizeof(*s))) == NULL) {
        goto out;
    }
    if ((s->filter = strdup(filter)) == NULL) {
        free(s);
        s = NULL;
        goto out;
    }
    s->fb = self->fb;
    s->plugin = self;
    s->cb = cb;
    s->arg = arg;
    s->live = 1;
    pthread_mutex_lock(&self->fb->lock);
    s->next = self->fb->subs;
    self->fb->subs = s;
    pthread_mutex_unlock(&self->fb->lock);
out:
    return s;
}

static void
api_unsubscribe(midge_plugin *self, midge_subscription *s)
{
    const char *why = NULL;

    if (self == NULL || s == NULL) {
        return;
    }
    if (fake_this_thread() != self->fb->main_thread && !fake_on_main_context(self)) {
        fake_bug(self->fb, self, "api->unsubscribe() called from a thread other than the main "
                 "thread");
        return;
    }
    pthread_mutex_lock(&self->fb->lock);
    if (s->plugin != self) {
        why = "a subscription of another instance";
    } else if (!s->live) {
        why = "a subscription already removed (or freed when the instance was unloaded)";
    } else {
        s->live = 0;
    }
    pthread_mutex_unlock(&self->fb->lock);
    if (why != NULL) {
        fake_bug(self->fb, self, "api->unsubscribe() on %s", why);
    }
}

/* The entries of the API table that this file implements. */
void
fake_subs_api_fill(struct midge_api *a)
{
    a->subscribe = api_subscribe;
    a->unsubscribe = api_unsubscribe;
}

/* Runs the matching subscriptions' callbacks; see plugin_test.h. */
int
midge_test_publish_to_subscriptions(midge_test_broker *fb, midge_message *msg)
{
    struct midge_subscription **hits = NULL;
    const struct midge_subscription *s;
    const char *topic = midge_test_message_topic(msg);
    size_t n = 0;
    size_t i;
    int ran = 0;

    if (fb == NULL || topic == NULL) {
        return -MIDGE_EINVAL;
    }
    /* Matches are taken first: a callback subscribing or removing does not change this run. */
    pthread_mutex_lock(&fb->lock);
    for (s = fb->subs; s != NULL; s = s->next) {
        n += s->live && s->plugin->loaded && fake_topic_match(s->filter, topic);
    }
    hits = calloc(n > 0 ? n : 1, sizeof(*hits));
    if (hits == NULL) {
        pthread_mutex_unlock(&fb->lock);
        return -MIDGE_ENOMEM;
    }
    n = 0;
    for (s = fb->subs; s != NULL; s = s->next) {
        if (s->live && s->plugin->loaded && fake_topic_match(s->filter, topic)) {
            hits[n++] = (struct midge_subscription *)s;
        }
    }
    pthread_mutex_unlock(&fb->lock);
    /* Oldest subscription first, as they were made. */
    for (i = n; i > 0; i--) {
        struct midge_subscription *h = hits[i - 1];
        int live;

        pthread_mutex_lock(&fb->lock);
        live = h->live;
        pthread_mutex_unlock(&fb->lock);
        if (live) {
            h->cb(h->arg, msg);
            ran++;
        }
    }
    free(hits);
    return ran;
}

/* 1 when `topic` matches `filter` by the broker's rules; see plugin_test.h. */
int
midge_test_topic_matches(const char *filter, const char *topic)
{
    return fake_filter_ok(filter) && fake_topic_ok(topic) && fake_topic_match(filter, topic);
}

/* The broker frees the subscriptions p still has after cleanup. */
void
fake_subs_unload(midge_plugin *p)
{
    struct midge_subscription *s;

    pthread_mutex_lock(&p->fb->lock);
    for (s = p->fb->subs; s != NULL; s = s->next) {
        if (s->plugin == p) {
            s->live = 0;
        }
    }
    pthread_mutex_unlock(&p->fb->lock);
}

/* Frees every subscription (with the broker). */
void
fake_subs_free(midge_test_broker *fb)
{
    while (fb->subs != NULL) {
        struct midge_subscription *s = fb->subs;
        fb->subs = s->next;
        free(s->filter);
        free(s);
    }
}
