/*
 * The fake broker of the plugin test harness (plugin-api/midge/plugin_test.h):
 * the broker object and its `struct midge_api` table (each file of
 * plugin-api/test fills in its own entries), and the capture of log lines,
 * publishes and plugin bugs that tests inspect. See fake_internal.h for the
 * map of the other files and the locking rules.
 *
 * Nothing here is global except a thread-local marker whose address
 * identifies the calling thread, so two fake brokers (or two instances of
 * one plugin) can live in one process.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_internal.h"

/* Its address identifies the calling thread (unique among live threads). */
static _Thread_local char thread_marker;

/* The calling thread's marker; see fake_internal.h. */
uintptr_t
fake_this_thread(void)
{
    return (uintptr_t)&thread_marker;
}

/* A verdict's name for messages. */
const char *
fake_verdict_name(int v)
{
    switch (v) {
    case MIDGE_DEFER:
        return "DEFER";
    case MIDGE_ALLOW:
        return "ALLOW";
    case MIDGE_DENY:
        return "DENY";
    case MIDGE_PENDING:
        return "PENDING";
    case MIDGE_CONTINUE:
        return "CONTINUE";
    default:
        return "not a verdict";
    }
}

/* A heap copy of n bytes plus a NUL (so text stays printable); NULL when out of memory. */
void *
fake_memdup(const void *src, size_t n)
{
    char *d = malloc(n + 1);

    if (d != NULL) {
        if (n > 0) {
            memcpy(d, src, n);
        }
        d[n] = '\0';
    }
    return d;
}

/* 1 when s[0..n) is well-formed UTF-8 without NUL or surrogates (MQTT strings, [MQTT-1.5.4-1]). */
int
fake_utf8_ok(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned c = u[i];
        size_t len;
        uint32_t cp;
        size_t k;

        if (c == 0) {
            return 0;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + len > n) {
            return 0;
        }
        for (k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            return 0;
        }
        i += len;
    }
    return 1;
}

/* ---- Log capture --------------------------------------------------------- */

/* Appends "plugin=NAME text" at `level`; counts a plugin bug when `is_bug`. */
void
fake_log_append(midge_test_broker *fb, int level, const char *name, int is_bug, const char *text)
{
    size_t n = strlen("plugin=") + strlen(name) + 1 + (is_bug ? strlen("plugin bug: ") : 0) +
               strlen(text) + 1;
    struct log_line *l = malloc(sizeof(*l) + n);

    pthread_mutex_lock(&fb->lock);
    if (is_bug) {
        fb->bugs++;
    }
    if (l != NULL) {
        snprintf(l->text, n, "plugin=%s %s%s", name, is_bug ? "plugin bug: " : "", text);
        l->level = level;
        l->next = NULL;
        if (fb->log_tail != NULL) {
            fb->log_tail->next = l;
        } else {
            fb->log_head = l;
        }
        fb->log_tail = l;
        fb->log_n++;
        if (fb->echo || (is_bug && fb->freeing)) {
            fprintf(stderr, "midge-test: %s\n", l->text);
        }
    }
    pthread_mutex_unlock(&fb->lock);
}

/* Records a plugin bug: an error line "plugin=NAME plugin bug: ..." and the counter. */
void
fake_bug(midge_test_broker *fb, const midge_plugin *p, const char *fmt, ...)
{
    char buf[LINE_MAX_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fake_log_append(fb, MIDGE_LOG_ERROR, p != NULL && p->name != NULL ? p->name : "?", 1, buf);
}


/* ---- The API table -------------------------------------------------------- */

static void MIDGE_PRINTF(3, 4)
api_log(midge_plugin *self, int level, const char *fmt, ...)
{
    char buf[LINE_MAX_LEN];
    va_list ap;

    if (self == NULL || fmt == NULL) {
        return;
    }
    if (level < MIDGE_LOG_ERROR) {
        level = MIDGE_LOG_ERROR;
    } else if (level > MIDGE_LOG_DEBUG) {
        level = MIDGE_LOG_DEBUG;
    }
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fake_log_append(self->fb, level, self->name != NULL ? self->name : "?", 0, buf);
}

/* A topic name the broker would accept: 1..65535 bytes, no wildcard, no NUL. */
int
fake_topic_ok(const char *topic)
{
    size_t n;

    if (topic == NULL) {
        return 0;
    }
    n = strlen(topic);
    return n > 0 && n <= 65535 && strpbrk(topic, "+#") == NULL;
}

/*
 * Records a publish of instance `self` (or of its internal session
 * `session`, NULL: none), as midge_test_published() shows it. Returns 0,
 * -MIDGE_EINVAL (bad topic, QoS or payload) or -MIDGE_ENOMEM.
 */
int
fake_publish_record(midge_plugin *self, const char *session, const char *topic,
                    const void *payload, uint32_t len, int qos, int retain)
{
    midge_test_broker *fb = self->fb;
    struct pub *m = NULL;
    int rc = -MIDGE_EINVAL;

    if (!fake_topic_ok(topic) || qos < 0 || qos > 2 || (payload == NULL && len > 0)) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        goto out;
    }
    m->instance = strdup(self->name != NULL ? self->name : "?");
    m->session = session != NULL ? strdup(session) : NULL;
    m->topic = strdup(topic);
    m->payload = malloc((size_t)len + 1);
    if (m->instance == NULL || m->topic == NULL || m->payload == NULL ||
        (session != NULL && m->session == NULL)) {
        goto out;
    }
    if (len > 0) {
        memcpy(m->payload, payload, len);
    }
    m->payload[len] = '\0';
    m->m.instance = m->instance;
    m->m.session = m->session;
    m->m.topic = m->topic;
    m->m.payload = m->payload;
    m->m.len = len;
    m->m.qos = qos;
    m->m.retain = retain ? 1 : 0;
    pthread_mutex_lock(&fb->lock);
    if (fb->pub_tail != NULL) {
        fb->pub_tail->next = m;
    } else {
        fb->pub_head = m;
    }
    fb->pub_tail = m;
    fb->pub_n++;
    pthread_cond_broadcast(&fb->cond);
    pthread_mutex_unlock(&fb->lock);
    m = NULL;
    rc = 0;
out:
    if (m != NULL) {
        free(m->instance);
        free(m->session);
        free(m->topic);
        free(m->payload);
        free(m);
    }
    return rc;
}

static int
api_publish(midge_plugin *self, const char *topic, const void *payload, uint32_t len, int qos,
            int retain)
{
    return fake_publish_record(self, NULL, topic, payload, len, qos, retain);
}

/* Fills the whole table: each file of the fake broker sets its own entries. */
static void
api_fill(struct midge_api *a)
{
    memset(a, 0, sizeof(*a));
    a->size = sizeof(*a);
    a->abi_major = MIDGE_ABI_MAJOR;
    a->abi_minor = MIDGE_ABI_MINOR;
    a->log = api_log;
    a->publish = api_publish;
    fake_plugins_api_fill(a);
    fake_hooks_api_fill(a);
    fake_clients_api_fill(a);
    fake_messages_api_fill(a);
    fake_loop_api_fill(a);
    fake_blocking_api_fill(a);
    fake_metrics_api_fill(a);
    fake_subs_api_fill(a);
    fake_persist_api_fill(a);
    fake_isessions_api_fill(a);
    fake_admin_api_fill(a);
}

/* ---- The fake broker ------------------------------------------------------ */

/* Creates a fake broker; see plugin_test.h. */
midge_test_broker *
midge_test_broker_new(void)
{
    midge_test_broker *fb = calloc(1, sizeof(*fb));
    pthread_condattr_t ca;
    const char *echo = getenv("MIDGE_TEST_LOG");

    if (fb == NULL) {
        goto out;
    }
    pthread_mutex_init(&fb->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fb->cond, &ca);
    pthread_condattr_destroy(&ca);
    api_fill(&fb->api);
    fb->stats.size = sizeof(fb->stats);
    fb->main_thread = fake_this_thread();
    fb->echo = echo != NULL && echo[0] != '\0' && strcmp(echo, "0") != 0;
out:
    return fb;
}

/* The API table of fb; see plugin_test.h. */
const struct midge_api *
midge_test_api(const midge_test_broker *fb)
{
    return &fb->api;
}

/* Clears entry `f` of table `a` unless it lies entirely within `size`. */
#define API_CUT(a, size, f)                                                                  \
    do {                                                                                     \
        if (offsetof(struct midge_api, f) + sizeof((a)->f) > (size)) {                       \
            (a)->f = NULL;                                                                   \
        }                                                                                    \
    } while (0)

/* Simulates an older broker's smaller table; see plugin_test.h. */
int
midge_test_set_api_size(midge_test_broker *fb, size_t size)
{
    struct midge_api *a = &fb->api;
    int rc = -MIDGE_EINVAL;

    if (size < offsetof(struct midge_api, log) || size > sizeof(*a)) {
        goto out;
    }
    api_fill(a);
    a->size = (uint32_t)size;
    /* Every entry of the table, in order: append new ABI entries here too. */
    API_CUT(a, size, log);
    API_CUT(a, size, option);
    API_CUT(a, size, option_next);
    API_CUT(a, size, set_error);
    API_CUT(a, size, hooks_set);
    API_CUT(a, size, complete);
    API_CUT(a, size, client_id);
    API_CUT(a, size, client_username);
    API_CUT(a, size, client_protocol);
    API_CUT(a, size, client_address);
    API_CUT(a, size, client_listener_port);
    API_CUT(a, size, client_clean_start);
    API_CUT(a, size, client_keepalive);
    API_CUT(a, size, publish);
    API_CUT(a, size, instance_name);
    API_CUT(a, size, message_topic);
    API_CUT(a, size, message_payload);
    API_CUT(a, size, message_qos);
    API_CUT(a, size, message_retain);
    API_CUT(a, size, message_user_property_next);
    API_CUT(a, size, message_ref);
    API_CUT(a, size, message_unref);
    API_CUT(a, size, edit_topic);
    API_CUT(a, size, edit_payload);
    API_CUT(a, size, edit_user_property_add);
    API_CUT(a, size, auth_data_set);
    API_CUT(a, size, complete_auth);
    API_CUT(a, size, client_listener_name);
    API_CUT(a, size, client_peer_ip);
    API_CUT(a, size, client_peer_port);
    API_CUT(a, size, client_user_property_next);
    API_CUT(a, size, client_tls);
    API_CUT(a, size, client_data);
    API_CUT(a, size, client_data_set);
    API_CUT(a, size, timer_start);
    API_CUT(a, size, timer_stop);
    API_CUT(a, size, fd_watch);
    API_CUT(a, size, fd_watch_set);
    API_CUT(a, size, fd_unwatch);
    API_CUT(a, size, run_blocking);
    API_CUT(a, size, client_disconnect);
    API_CUT(a, size, client_find);
    API_CUT(a, size, metric_new);
    API_CUT(a, size, metric_add);
    API_CUT(a, size, metric_set);
    API_CUT(a, size, metric_observe);
    API_CUT(a, size, subscribe);
    API_CUT(a, size, unsubscribe);
    API_CUT(a, size, session_open);
    API_CUT(a, size, session_subscribe);
    API_CUT(a, size, session_unsubscribe);
    API_CUT(a, size, session_publish);
    API_CUT(a, size, session_ack);
    API_CUT(a, size, session_redeliver);
    API_CUT(a, size, session_close);
    API_CUT(a, size, message_id);
    API_CUT(a, size, message_properties);
    API_CUT(a, size, message_expiry);
    API_CUT(a, size, message_new);
    API_CUT(a, size, persist_durable);
    API_CUT(a, size, persist_failing);
    API_CUT(a, size, restore_session);
    API_CUT(a, size, restore_subscription);
    API_CUT(a, size, restore_retained);
    API_CUT(a, size, restore_message);
    API_CUT(a, size, restore_qos2_in);
    API_CUT(a, size, restore_will);
    API_CUT(a, size, stats);
    API_CUT(a, size, client_list);
    API_CUT(a, size, retained_list);
    API_CUT(a, size, reload_request);
    API_CUT(a, size, session_publish_message);
    API_CUT(a, size, session_released);
    API_CUT(a, size, client_acl_standing);
    rc = 0;
out:
    return rc;
}

/* Unloads every instance, last loaded first, and checks what they left; see plugin_test.h. */
unsigned
midge_test_unload_all(midge_test_broker *fb)
{
    for (;;) {
        midge_plugin *p;
        midge_plugin *last = NULL;
        for (p = fb->plugins; p != NULL; p = p->next) {
            if (p->loaded && (last == NULL || p->load_seq > last->load_seq)) {
                last = p;
            }
        }
        if (last == NULL) {
            break;
        }
        midge_test_unload(last);
    }
    fake_messages_check(fb);
    return midge_test_bug_count(fb);
}

/* Unloads every instance, last loaded first, and frees everything; see plugin_test.h. */
void
midge_test_broker_free(midge_test_broker *fb)
{
    if (fb == NULL) {
        return;
    }
    /* Bugs found from here on cannot be asserted by the test any more: show them. */
    pthread_mutex_lock(&fb->lock);
    fb->freeing = 1;
    pthread_mutex_unlock(&fb->lock);
    midge_test_unload_all(fb);
    while (fb->clients != NULL) {
        midge_test_client_free(fb->clients);
    }
    fake_clients_free(fb);
    fake_tickets_free(fb);
    fake_blocking_free(fb);
    fake_loop_free(fb);
    fake_subs_free(fb);
    fake_metrics_free(fb);
    fake_persist_free(fb);
    fake_isessions_free(fb);
    fake_admin_free(fb);
    fake_messages_free(fb);
    fake_plugins_free(fb);
    midge_test_log_clear(fb);
    midge_test_published_clear(fb);
    pthread_cond_destroy(&fb->cond);
    pthread_mutex_destroy(&fb->lock);
    free(fb);
}


/* Absolute CLOCK_MONOTONIC deadline `ms` from now. */
struct timespec
fake_deadline_in(unsigned ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* ---- What the plugin did -------------------------------------------------- */

/* Counts matching log lines; see plugin_test.h. */
size_t
midge_test_logged(midge_test_broker *fb, int level, const char *needle)
{
    const struct log_line *l;
    size_t n = 0;

    pthread_mutex_lock(&fb->lock);
    for (l = fb->log_head; l != NULL; l = l->next) {
        if ((level < 0 || l->level == level) &&
            (needle == NULL || strstr(l->text, needle) != NULL)) {
            n++;
        }
    }
    pthread_mutex_unlock(&fb->lock);
    return n;
}

/* Number of log lines; see plugin_test.h. */
size_t
midge_test_log_count(midge_test_broker *fb)
{
    size_t n;

    pthread_mutex_lock(&fb->lock);
    n = fb->log_n;
    pthread_mutex_unlock(&fb->lock);
    return n;
}

/* Log line i; see plugin_test.h. */
const char *
midge_test_log_line(midge_test_broker *fb, size_t i, int *level)
{
    const struct log_line *l;
    const char *text = NULL;

    pthread_mutex_lock(&fb->lock);
    for (l = fb->log_head; l != NULL && i > 0; l = l->next, i--) {
    }
    if (l != NULL) {
        text = l->text;
        if (level != NULL) {
            *level = l->level;
        }
    }
    pthread_mutex_unlock(&fb->lock);
    return text;
}

/* Forgets the log; see plugin_test.h. */
void
midge_test_log_clear(midge_test_broker *fb)
{
    struct log_line *l;

    pthread_mutex_lock(&fb->lock);
    l = fb->log_head;
    fb->log_head = fb->log_tail = NULL;
    fb->log_n = 0;
    pthread_mutex_unlock(&fb->lock);
    while (l != NULL) {
        struct log_line *next = l->next;
        free(l);
        l = next;
    }
}

/* Number of published messages; see plugin_test.h. */
size_t
midge_test_published_count(midge_test_broker *fb)
{
    size_t n;

    pthread_mutex_lock(&fb->lock);
    n = fb->pub_n;
    pthread_mutex_unlock(&fb->lock);
    return n;
}

/* Published message i; see plugin_test.h. */
const struct midge_test_message *
midge_test_published(midge_test_broker *fb, size_t i)
{
    const struct pub *m;

    pthread_mutex_lock(&fb->lock);
    for (m = fb->pub_head; m != NULL && i > 0; m = m->next, i--) {
    }
    pthread_mutex_unlock(&fb->lock);
    return m != NULL ? &m->m : NULL;
}

/* The latest message on topic, with fb->lock held. */
static const struct midge_test_message *
find_locked(midge_test_broker *fb, const char *topic)
{
    const struct pub *m;
    const struct midge_test_message *found = NULL;

    for (m = fb->pub_head; m != NULL; m = m->next) {
        if (strcmp(m->topic, topic) == 0) {
            found = &m->m;
        }
    }
    return found;
}

/* The latest message on topic; see plugin_test.h. */
const struct midge_test_message *
midge_test_published_find(midge_test_broker *fb, const char *topic)
{
    const struct midge_test_message *found;

    pthread_mutex_lock(&fb->lock);
    found = find_locked(fb, topic);
    pthread_mutex_unlock(&fb->lock);
    return found;
}

/* Waits for a message on topic; see plugin_test.h. */
int
midge_test_wait_published(midge_test_broker *fb, const char *topic, unsigned timeout_ms)
{
    struct timespec until = fake_deadline_in(timeout_ms);
    int rc = MIDGE_TEST_TIMEDOUT;

    pthread_mutex_lock(&fb->lock);
    for (;;) {
        if (find_locked(fb, topic) != NULL) {
            rc = 0;
            break;
        }
        if (pthread_cond_timedwait(&fb->cond, &fb->lock, &until) == ETIMEDOUT) {
            rc = find_locked(fb, topic) != NULL ? 0 : MIDGE_TEST_TIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&fb->lock);
    return rc;
}

/* Forgets the published messages; see plugin_test.h. */
void
midge_test_published_clear(midge_test_broker *fb)
{
    struct pub *m;

    pthread_mutex_lock(&fb->lock);
    m = fb->pub_head;
    fb->pub_head = fb->pub_tail = NULL;
    fb->pub_n = 0;
    pthread_mutex_unlock(&fb->lock);
    while (m != NULL) {
        struct pub *next = m->next;
        free(m->instance);
        free(m->session);
        free(m->topic);
        free(m->payload);
        free(m);
        m = next;
    }
}

/* Number of plugin bugs; see plugin_test.h. */
unsigned
midge_test_bug_count(midge_test_broker *fb)
{
    unsigned n;

    pthread_mutex_lock(&fb->lock);
    n = fb->bugs;
    pthread_mutex_unlock(&fb->lock);
    return n;
}

