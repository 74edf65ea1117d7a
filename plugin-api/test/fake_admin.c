/*
 * Administration services in the fake broker: api->stats answers what the
 * test set (midge_test_set_stats), api->retained_list walks a retained
 * store the test fills (midge_test_retain), api->reload_request is counted.
 * (api->client_list lives with the other client requests in fake_clients.c.)
 * Protected by fb->lock; callbacks run without it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/* A retained message. Owned by fb's retained list; the message is held. */
struct fake_retained_msg {
    char *topic;
    const midge_message *msg;
    struct fake_retained_msg *next;
};

static int
api_stats(midge_plugin *self, struct midge_broker_stats *out)
{
    struct midge_broker_stats full;
    size_t n;

    if (self == NULL || out == NULL) {
        return -MIDGE_EINVAL;
    }
    if (out->size < sizeof(uint32_t)) {
        fake_bug(self->fb, self, "api->stats() with out->size %u: set it to "
                 "sizeof(struct midge_broker_stats)", (unsigned)out->size);
        return -MIDGE_EINVAL;
    }
    pthread_mutex_lock(&self->fb->lock);
    full = self->fb->stats;
    pthread_mutex_unlock(&self->fb->lock);
    /* Fields beyond the plugin's struct are not written. */
    n = out->size < sizeof(full) ? out->size : sizeof(full);
    memcpy((char *)out + sizeof(uint32_t), (const char *)&full + sizeof(uint32_t),
           n - sizeof(uint32_t));
    return 0;
}

static int
api_retained_list(midge_plugin *self, const char *filter,
                  int (*cb)(void *arg, const midge_message *msg), void *arg)
{
    midge_test_broker *fb;
    const struct fake_retained_msg *r;
    const midge_message **hits = NULL;
    size_t n = 0;
    size_t i;
    int calls = 0;

    if (self == NULL || cb == NULL || !fake_filter_ok(filter)) {
        return -MIDGE_EINVAL;
    }
    fb = self->fb;
    pthread_mutex_lock(&fb->lock);
    for (r = fb->retained; r != NULL; r = r->next) {
        n += fake_topic_match(filter, r->topic);
    }
    hits = calloc(n + 1, sizeof(*hits));
    n = 0;
    for (r = fb->retained; hits != NULL && r != NULL; r = r->next) {
        if (fake_topic_match(filter, r->topic)) {
            hits[n++] = r->msg;
        }
    }
    pthread_mutex_unlock(&fb->lock);
    if (hits == NULL) {
        return -MIDGE_ENOMEM;
    }
    /* Held for the walk: a callback may replace the retained message. */
    for (i = 0; i < n; i++) {
        if (fake_message_hold(hits[i]) != 0) {
            hits[i] = NULL;
        }
    }
    for (i = 0; i < n; i++) {
        if (hits[i] == NULL) {
            continue;
        }
        calls++;
        if (cb(arg, hits[i]) != 0) {
            break;
        }
    }
    for (i = 0; i < n; i++) {
        if (hits[i] != NULL) {
            fake_message_drop(hits[i]);
        }
    }
    free(hits);
    return calls;
}

static int
api_reload_request(midge_plugin *self)
{
    if (self == NULL) {
        return -MIDGE_EINVAL;
    }
    pthread_mutex_lock(&self->fb->lock);
    self->fb->reload_requests++;
    pthread_mutex_unlock(&self->fb->lock);
    return 0;
}

/* The entries of the API table that this file implements. */
void
fake_admin_api_fill(struct midge_api *a)
{
    a->stats = api_stats;
    a->retained_list = api_retained_list;
    a->reload_request = api_reload_request;
}

/* Sets what api->stats answers; see plugin_test.h. */
void
midge_test_set_stats(midge_test_broker *fb, const struct midge_broker_stats *stats)
{
    pthread_mutex_lock(&fb->lock);
    if (stats != NULL) {
        fb->stats = *stats;
    } else {
        memset(&fb->stats, 0, sizeof(fb->stats));
    }
    fb->stats.size = sizeof(fb->stats);
    pthread_mutex_unlock(&fb->lock);
}

/* Sets or clears the retained message of msg's topic; see plugin_test.h. */
int
midge_test_retain(midge_test_broker *fb, midge_message *msg)
{
    struct fake_retained_msg **pp;
    struct fake_retained_msg *old = NULL;
    struct fake_retained_msg *r = NULL;
    const char *topic = midge_test_message_topic(msg);
    size_t len = 0;

    if (topic == NULL) {
        return -MIDGE_EINVAL;
    }
    midge_test_message_payload(msg, &len);
    if (len > 0) {
        /* An empty payload only clears [MQTT-3.3.1-10]. */
        if ((r = calloc(1, sizeof(*r))) == NULL || (r->topic = strdup(topic)) == NULL) {
            free(r);
            return -MIDGE_ENOMEM;
        }
        if (fake_message_hold(msg) != 0) {
            free(r->topic);
            free(r);
            return -MIDGE_EINVAL;
        }
        r->msg = msg;
    }
    pthread_mutex_lock(&fb->lock);
    for (pp = &fb->retained; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->topic, topic) == 0) {
            old = *pp;
            *pp = old->next;
            break;
        }
    }
    if (r != NULL) {
        r->next = fb->retained;
        fb->retained = r;
    }
    pthread_mutex_unlock(&fb->lock);
    if (old != NULL) {
        fake_message_drop(old->msg);
        free(old->topic);
        free(old);
    }
    return 0;
}

/* Number of api->reload_request() calls; see plugin_test.h. */
unsigned
midge_test_reload_requests(midge_test_broker *fb)
{
    unsigned n;

    pthread_mutex_lock(&fb->lock);
    n = fb->reload_requests;
    pthread_mutex_unlock(&fb->lock);
    return n;
}

/* Frees the retained store (with the broker). */
void
fake_admin_free(midge_test_broker *fb)
{
    while (fb->retained != NULL) {
        struct fake_retained_msg *r = fb->retained;
        fb->retained = r->next;
        fake_message_drop(r->msg);
        free(r->topic);
        free(r);
    }
}
