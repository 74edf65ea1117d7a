/*
 * The fake broker of the plugin test harness (plugin-api/midge/plugin_test.h):
 * a `struct midge_api` table per fake broker, instances loaded from function
 * pointers or with dlopen, fake clients, tickets that api->complete() may
 * finish from any thread, and capture of logs, publishes and plugin bugs.
 *
 * Locking: one mutex per fake broker (fb->lock) protects the ticket states,
 * the log and publish lists, the client list and the bug counter; fb->cond
 * (CLOCK_MONOTONIC) is broadcast on every completion and publish. Hooks are
 * always called without the lock, so a plugin may call any API function
 * from a hook. Instance and client fields are written by the test's main
 * thread only, between hooks.
 *
 * Nothing here is global except a thread-local marker whose address
 * identifies the calling thread, so two fake brokers (or two instances of
 * one plugin) can live in one process.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "midge/plugin.h"
#include "midge/plugin_test.h"

#define LINE_MAX_LEN 2048 /* longest log line kept, as in the broker */

/* Its address identifies the calling thread (unique among live threads). */
static _Thread_local char thread_marker;

/* One option, key and value owned by the list. */
struct opt {
    char *key;
    char *value;
};

/* Options in the order first set. Owns its entries. */
struct opts {
    struct opt *v;
    size_t n;
    size_t cap;
};

/* A captured log line. Owned by the broker's log list. */
struct log_line {
    int level;
    struct log_line *next;
    char text[];
};

/* A captured publish; `m` points into the owned copies beside it. */
struct pub {
    struct midge_test_message m;
    char *instance;
    char *topic;
    char *payload;
    struct pub *next;
};

enum ticket_state {
    T_RUNNING,  /* the hook is running: complete() may already arrive */
    T_PENDING,  /* the hook returned PENDING: waiting for complete() */
    T_DONE,     /* completed */
    T_CLOSED,   /* the hook returned something other than PENDING */
    T_EXPIRED,  /* midge_test_expire(), or PENDING where the broker does not wait */
    T_GONE,     /* the client left */
    T_UNLOADED, /* the instance was unloaded while the ticket was pending */
};

/*
 * One decision. Owned by the broker's ticket list and freed only with the
 * broker, so that a late or double complete() is detected, never a
 * use-after-free. Fields below `fb` are protected by fb->lock.
 */
struct midge_ticket {
    midge_test_broker *fb;
    midge_plugin *plugin;
    midge_client *client; /* NULL once the client left */
    const char *hook;     /* "auth" or "acl" */
    int state;            /* enum ticket_state */
    int returned;         /* what the hook returned, once it did */
    int verdict;          /* completed verdict (T_DONE) */
    uint8_t reason;
    struct midge_ticket *next;
};

/* A fake client. Owned by the broker's client list; freed by midge_test_client_free(). */
struct midge_client {
    midge_test_broker *fb;
    char *id;
    char *username; /* NULL: none */
    char *address;
    int protocol;
    int port;
    int clean_start;
    int keepalive;
    atomic_uintptr_t hook_thread; /* marker of the thread running a hook about it, else 0 */
    struct midge_client *next;
};

/* A plugin instance. Owned by the broker's instance list. */
struct midge_plugin {
    midge_test_broker *fb;
    char *name_set;       /* midge_test_set_instance(), or NULL */
    const char *name;     /* in force while loaded: name_set or the descriptor's name */
    void *dl;             /* midge_test_plugin_open(): closed with the broker */
    const struct midge_plugin_descriptor *desc;
    int (*init)(midge_plugin *, const struct midge_api *, void **);
    void (*cleanup)(midge_plugin *, void *);
    char open_err[512];   /* why the file cannot be used; "" when it can */
    const struct midge_hooks *hooks;
    void *state;
    struct opts staged;   /* midge_test_option(): for the next load or reload */
    struct opts active;   /* in force after the last successful init/reload */
    int loaded;
    unsigned long load_seq; /* unload order at broker free: last loaded first */
    int in_init;            /* hooks_set() allowed */
    atomic_uintptr_t config_thread; /* marker of the thread in init/reload, else 0 */
    char err[512];          /* midge_test_error() */
    struct midge_plugin *next;
};

struct midge_test_broker {
    pthread_mutex_t lock;
    pthread_cond_t cond;    /* a ticket completed or a message was published */
    struct midge_api api;   /* handed to every instance of this broker */
    int echo;               /* MIDGE_TEST_LOG: copy log lines to stderr */
    unsigned long load_seq;
    struct midge_plugin *plugins;  /* main thread only */
    struct midge_client *clients;  /* Protected by lock. */
    struct midge_ticket *tickets;  /* Protected by lock. */
    struct log_line *log_head;     /* Protected by lock. */
    struct log_line *log_tail;
    size_t log_n;
    struct pub *pub_head;          /* Protected by lock. */
    struct pub *pub_tail;
    size_t pub_n;
    unsigned bugs;                 /* Protected by lock. */
};

static uintptr_t
this_thread(void)
{
    return (uintptr_t)&thread_marker;
}

static const char *
verdict_name(int v)
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
    default:
        return "not a verdict";
    }
}

/* ---- Log capture --------------------------------------------------------- */

/* Appends "plugin=NAME text" at `level`; counts a plugin bug when `is_bug`. */
static void
log_append(midge_test_broker *fb, int level, const char *name, int is_bug, const char *text)
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
        if (fb->echo) {
            fprintf(stderr, "midge-test: %s\n", l->text);
        }
    }
    pthread_mutex_unlock(&fb->lock);
}

/* Records a plugin bug: an error line "plugin=NAME plugin bug: ..." and the counter. */
static void MIDGE_PRINTF(3, 4)
bug(midge_test_broker *fb, const midge_plugin *p, const char *fmt, ...)
{
    char buf[LINE_MAX_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_append(fb, MIDGE_LOG_ERROR, p != NULL && p->name != NULL ? p->name : "?", 1, buf);
}

/* ---- Options ------------------------------------------------------------- */

static void
opts_free(struct opts *o)
{
    size_t i;

    for (i = 0; i < o->n; i++) {
        free(o->v[i].key);
        free(o->v[i].value);
    }
    free(o->v);
    o->v = NULL;
    o->n = o->cap = 0;
}

static const char *
opts_get(const struct opts *o, const char *key)
{
    size_t i;

    for (i = 0; i < o->n; i++) {
        if (strcmp(o->v[i].key, key) == 0) {
            return o->v[i].value;
        }
    }
    return NULL;
}

/* Sets, replaces or (value NULL) removes key. 0 or -MIDGE_ENOMEM. */
static int
opts_set(struct opts *o, const char *key, const char *value)
{
    char *k = NULL;
    char *v = NULL;
    size_t i;
    int rc = -MIDGE_ENOMEM;

    for (i = 0; i < o->n && strcmp(o->v[i].key, key) != 0; i++) {
    }
    if (value == NULL) {
        if (i < o->n) {
            free(o->v[i].key);
            free(o->v[i].value);
            memmove(&o->v[i], &o->v[i + 1], (o->n - i - 1) * sizeof(o->v[0]));
            o->n--;
        }
        rc = 0;
        goto out;
    }
    if ((v = strdup(value)) == NULL) {
        goto out;
    }
    if (i < o->n) {
        free(o->v[i].value);
        o->v[i].value = v;
        v = NULL;
        rc = 0;
        goto out;
    }
    if ((k = strdup(key)) == NULL) {
        goto out;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        struct opt *nv = realloc(o->v, cap * sizeof(*nv));
        if (nv == NULL) {
            goto out;
        }
        o->v = nv;
        o->cap = cap;
    }
    o->v[o->n].key = k;
    o->v[o->n].value = v;
    o->n++;
    k = v = NULL;
    rc = 0;
out:
    free(k);
    free(v);
    return rc;
}

/* dst = copy of src. 0 or -MIDGE_ENOMEM (dst unchanged). */
static int
opts_copy(struct opts *dst, const struct opts *src)
{
    struct opts tmp = {NULL, 0, 0};
    size_t i;
    int rc = 0;

    for (i = 0; i < src->n && rc == 0; i++) {
        rc = opts_set(&tmp, src->v[i].key, src->v[i].value);
    }
    if (rc != 0) {
        opts_free(&tmp);
        goto out;
    }
    opts_free(dst);
    *dst = tmp;
out:
    return rc;
}

/* 1 when the calling thread is inside p's init or reload. */
static int
configuring(const midge_plugin *p)
{
    return atomic_load(&p->config_thread) == this_thread();
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
    log_append(self->fb, level, self->name != NULL ? self->name : "?", 0, buf);
}

static const char *
api_option(midge_plugin *self, const char *key)
{
    const char *v = NULL;

    if (!configuring(self)) {
        bug(self->fb, self, "api->option(\"%s\") called outside init/reload (copy options "
            "you need later)", key != NULL ? key : "(null)");
        goto out;
    }
    if (key != NULL) {
        v = opts_get(&self->staged, key);
    }
out:
    return v;
}

static int
api_option_next(midge_plugin *self, size_t *pos, const char **key, const char **value)
{
    int rc = 0;

    if (!configuring(self)) {
        bug(self->fb, self, "api->option_next() called outside init/reload");
        goto out;
    }
    if (pos == NULL || key == NULL || value == NULL || *pos >= self->staged.n) {
        goto out;
    }
    *key = self->staged.v[*pos].key;
    *value = self->staged.v[*pos].value;
    (*pos)++;
    rc = 1;
out:
    return rc;
}

static void MIDGE_PRINTF(2, 3)
api_set_error(midge_plugin *self, const char *fmt, ...)
{
    va_list ap;

    if (!configuring(self)) {
        bug(self->fb, self, "api->set_error() called outside init/reload");
        return;
    }
    if (fmt == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(self->err, sizeof(self->err), fmt, ap);
    va_end(ap);
}

static int
api_hooks_set(midge_plugin *self, const struct midge_hooks *hooks)
{
    int rc = -MIDGE_EINVAL;

    if (!configuring(self) || !self->in_init) {
        bug(self->fb, self, "api->hooks_set() called outside init");
        goto out;
    }
    if (hooks == NULL || hooks->size < sizeof(uint32_t)) {
        bug(self->fb, self, "api->hooks_set() with %s", hooks == NULL ? "NULL" : "size 0");
        goto out;
    }
    if (self->hooks != NULL) {
        bug(self->fb, self, "api->hooks_set() called twice");
        goto out;
    }
    self->hooks = hooks;
    rc = 0;
out:
    return rc;
}

static int
api_complete(midge_ticket *t, int verdict, uint8_t reason)
{
    midge_test_broker *fb;
    const char *why = NULL;
    int closed = 0;
    int rc = 0;

    if (t == NULL) {
        rc = -MIDGE_EINVAL;
        goto out;
    }
    fb = t->fb;
    if (verdict != MIDGE_ALLOW && verdict != MIDGE_DENY && verdict != MIDGE_DEFER) {
        /* As the broker does: a plugin bug, applied as DENY. */
        bug(fb, t->plugin, "api->complete() with verdict %d (%s): treated as deny", verdict,
            verdict_name(verdict));
        verdict = MIDGE_DENY;
    }
    pthread_mutex_lock(&fb->lock);
    switch (t->state) {
    case T_RUNNING:
    case T_PENDING:
        t->state = T_DONE;
        t->verdict = verdict;
        t->reason = reason;
        pthread_cond_broadcast(&fb->cond);
        break;
    case T_DONE:
        why = "ticket completed twice";
        break;
    case T_CLOSED:
        why = "ticket completed although its hook did not return PENDING";
        closed = 1;
        break;
    case T_EXPIRED:
        why = "ticket completed after its timeout";
        break;
    case T_GONE:
        why = "ticket completed after its client left";
        break;
    default:
        why = "ticket completed after the instance was unloaded";
        break;
    }
    pthread_mutex_unlock(&fb->lock);
    if (why != NULL) {
        /* t->returned and t->hook no longer change once the hook returned. */
        if (closed) {
            bug(fb, t->plugin, "%s (%s hook returned %s)", why, t->hook,
                verdict_name(t->returned));
        } else {
            bug(fb, t->plugin, "%s (%s hook)", why, t->hook);
        }
        rc = -MIDGE_ESTATE;
    }
out:
    return rc;
}

/* 1 when the calling thread runs a hook about c; else records a plugin bug. */
static int
client_check(const midge_client *c, const char *fn)
{
    if (c == NULL) {
        return 0;
    }
    if (atomic_load(&((midge_client *)c)->hook_thread) != this_thread()) {
        bug(c->fb, NULL, "api->%s() for client '%s' called outside a hook about that client "
            "or from another thread (copy what you need during the hook)", fn, c->id);
    }
    return 1;
}

static const char *
api_client_id(const midge_client *c)
{
    return client_check(c, "client_id") ? c->id : NULL;
}

static const char *
api_client_username(const midge_client *c)
{
    return client_check(c, "client_username") ? c->username : NULL;
}

static int
api_client_protocol(const midge_client *c)
{
    return client_check(c, "client_protocol") ? c->protocol : 0;
}

static const char *
api_client_address(const midge_client *c)
{
    return client_check(c, "client_address") ? c->address : NULL;
}

static int
api_client_listener_port(const midge_client *c)
{
    return client_check(c, "client_listener_port") ? c->port : 0;
}

static int
api_client_clean_start(const midge_client *c)
{
    return client_check(c, "client_clean_start") ? c->clean_start : 0;
}

static int
api_client_keepalive(const midge_client *c)
{
    return client_check(c, "client_keepalive") ? c->keepalive : 0;
}

/* A topic name the broker would accept: 1..65535 bytes, no wildcard, no NUL. */
static int
topic_ok(const char *topic)
{
    size_t n;

    if (topic == NULL) {
        return 0;
    }
    n = strlen(topic);
    return n > 0 && n <= 65535 && strpbrk(topic, "+#") == NULL;
}

static int
api_publish(midge_plugin *self, const char *topic, const void *payload, uint32_t len, int qos,
            int retain)
{
    midge_test_broker *fb = self->fb;
    struct pub *m = NULL;
    int rc = -MIDGE_EINVAL;

    if (!topic_ok(topic) || qos < 0 || qos > 2 || (payload == NULL && len > 0)) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        goto out;
    }
    m->instance = strdup(self->name != NULL ? self->name : "?");
    m->topic = strdup(topic);
    m->payload = malloc((size_t)len + 1);
    if (m->instance == NULL || m->topic == NULL || m->payload == NULL) {
        goto out;
    }
    if (len > 0) {
        memcpy(m->payload, payload, len);
    }
    m->payload[len] = '\0';
    m->m.instance = m->instance;
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
        free(m->topic);
        free(m->payload);
        free(m);
    }
    return rc;
}

static const char *
api_instance_name(const midge_plugin *self)
{
    return self->name;
}

static void
api_fill(struct midge_api *a)
{
    memset(a, 0, sizeof(*a));
    a->size = sizeof(*a);
    a->abi_major = MIDGE_ABI_MAJOR;
    a->abi_minor = MIDGE_ABI_MINOR;
    a->log = api_log;
    a->option = api_option;
    a->option_next = api_option_next;
    a->set_error = api_set_error;
    a->hooks_set = api_hooks_set;
    a->complete = api_complete;
    a->client_id = api_client_id;
    a->client_username = api_client_username;
    a->client_protocol = api_client_protocol;
    a->client_address = api_client_address;
    a->client_listener_port = api_client_listener_port;
    a->client_clean_start = api_client_clean_start;
    a->client_keepalive = api_client_keepalive;
    a->publish = api_publish;
    a->instance_name = api_instance_name;
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
    rc = 0;
out:
    return rc;
}

/* Unloads every instance, last loaded first, and frees everything; see plugin_test.h. */
void
midge_test_broker_free(midge_test_broker *fb)
{
    if (fb == NULL) {
        return;
    }
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
    while (fb->clients != NULL) {
        midge_test_client_free(fb->clients);
    }
    while (fb->tickets != NULL) {
        midge_ticket *t = fb->tickets;
        fb->tickets = t->next;
        free(t);
    }
    while (fb->plugins != NULL) {
        midge_plugin *p = fb->plugins;
        fb->plugins = p->next;
        opts_free(&p->staged);
        opts_free(&p->active);
        free(p->name_set);
        if (p->dl != NULL) {
            dlclose(p->dl);
        }
        free(p);
    }
    midge_test_log_clear(fb);
    midge_test_published_clear(fb);
    pthread_cond_destroy(&fb->cond);
    pthread_mutex_destroy(&fb->lock);
    free(fb);
}

/* ---- Instances ------------------------------------------------------------ */

static midge_plugin *
plugin_alloc(midge_test_broker *fb)
{
    midge_plugin *p = calloc(1, sizeof(*p));
    midge_plugin **tail;

    if (p == NULL) {
        goto out;
    }
    p->fb = fb;
    for (tail = &fb->plugins; *tail != NULL; tail = &(*tail)->next) {
    }
    *tail = p;
out:
    return p;
}

/* An instance of a plugin linked into the test; see plugin_test.h. */
midge_plugin *
midge_test_plugin_new(midge_test_broker *fb, const struct midge_plugin_descriptor *desc,
                      int (*init)(midge_plugin *, const struct midge_api *, void **),
                      void (*cleanup)(midge_plugin *, void *))
{
    midge_plugin *p = NULL;

    if (fb == NULL || desc == NULL || init == NULL) {
        goto out;
    }
    p = plugin_alloc(fb);
    if (p == NULL) {
        goto out;
    }
    p->desc = desc;
    p->init = init;
    p->cleanup = cleanup;
out:
    return p;
}

/* An instance of a plugin shared object; see plugin_test.h. */
midge_plugin *
midge_test_plugin_open(midge_test_broker *fb, const char *path)
{
    midge_plugin *p = NULL;
    void *sym;

    if (fb == NULL || path == NULL) {
        goto out;
    }
    p = plugin_alloc(fb);
    if (p == NULL) {
        goto out;
    }
    p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        snprintf(p->open_err, sizeof(p->open_err), "cannot load %s: %s", path, dlerror());
        goto out;
    }
    p->desc = dlsym(p->dl, "midge_plugin_descriptor");
    if (p->desc == NULL) {
        snprintf(p->open_err, sizeof(p->open_err),
                 "%s is not a midge plugin (no midge_plugin_descriptor symbol)", path);
        goto out;
    }
    /* POSIX guarantees that dlsym's object pointer converts to a function pointer. */
    sym = dlsym(p->dl, "midge_plugin_init");
    p->init = (int (*)(midge_plugin *, const struct midge_api *, void **))sym;
    sym = dlsym(p->dl, "midge_plugin_cleanup");
    p->cleanup = (void (*)(midge_plugin *, void *))sym;
    if (p->init == NULL) {
        snprintf(p->open_err, sizeof(p->open_err), "%s has no midge_plugin_init function", path);
        goto out;
    }
out:
    return p;
}

/* Sets the instance name; see plugin_test.h. */
int
midge_test_set_instance(midge_plugin *p, const char *name)
{
    char *copy = NULL;
    int rc = -MIDGE_ESTATE;

    if (p->loaded) {
        goto out;
    }
    rc = -MIDGE_ENOMEM;
    if (name != NULL && (copy = strdup(name)) == NULL) {
        goto out;
    }
    free(p->name_set);
    p->name_set = copy;
    rc = 0;
out:
    return rc;
}

/* Stages an option; see plugin_test.h. */
int
midge_test_option(midge_plugin *p, const char *key, const char *value)
{
    if (p == NULL || key == NULL || key[0] == '\0') {
        return -MIDGE_EINVAL;
    }
    return opts_set(&p->staged, key, value);
}

/* Removes every staged option; see plugin_test.h. */
void
midge_test_option_clear(midge_plugin *p)
{
    opts_free(&p->staged);
}

/* The descriptor's checks, as the broker's loader does them. 0 or negative with p->err set. */
static int
check_descriptor(midge_plugin *p, const char *name)
{
    const struct midge_plugin_descriptor *d = p->desc;
    const midge_plugin *q;
    size_t i;
    size_t k;
    int rc = -MIDGE_EINVAL;

    if (d->size < offsetof(struct midge_plugin_descriptor, description) +
                      sizeof(d->description) ||
        d->abi_major != MIDGE_ABI_MAJOR) {
        snprintf(p->err, sizeof(p->err),
                 "built for plugin ABI %u.%u, but this midge provides ABI %d.%d: rebuild it "
                 "against this midge",
                 (unsigned)d->abi_major, (unsigned)d->abi_minor, MIDGE_ABI_MAJOR,
                 MIDGE_ABI_MINOR);
        goto out;
    }
    for (q = p->fb->plugins; q != NULL; q = q->next) {
        if (q != p && q->loaded && strcmp(q->name, name) == 0) {
            snprintf(p->err, sizeof(p->err),
                     "plugin instance name '%s' is already used (set plugin_instance)", name);
            goto out;
        }
    }
    if (!MIDGE_HAS_FIELD(struct midge_plugin_descriptor, d, options) || d->options == NULL) {
        rc = 0;
        goto out;
    }
    for (k = 0; k < p->staged.n; k++) {
        int known = 0;
        for (i = 0; d->options[i] != NULL; i++) {
            known |= strcmp(d->options[i], p->staged.v[k].key) == 0;
        }
        if (!known) {
            size_t n = (size_t)snprintf(p->err, sizeof(p->err),
                                        "plugin '%s' does not know option '%s' (it accepts: ",
                                        name, p->staged.v[k].key);
            for (i = 0; d->options[i] != NULL && n < sizeof(p->err); i++) {
                n += (size_t)snprintf(p->err + n, sizeof(p->err) - n, "%s%s", i ? ", " : "",
                                      d->options[i]);
            }
            if (n < sizeof(p->err)) {
                snprintf(p->err + n, sizeof(p->err) - n, "%s)", i == 0 ? "no options" : "");
            }
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

/* Loads (checks, init); see plugin_test.h. */
int
midge_test_load(midge_plugin *p)
{
    const char *name;
    void *state = NULL;
    int rc;

    p->err[0] = '\0';
    if (p->loaded) {
        snprintf(p->err, sizeof(p->err), "already loaded");
        rc = -MIDGE_ESTATE;
        goto out;
    }
    if (p->open_err[0] != '\0') {
        snprintf(p->err, sizeof(p->err), "%s", p->open_err);
        rc = -MIDGE_ENOENT;
        goto out;
    }
    name = p->name_set != NULL ? p->name_set
           : p->desc->name != NULL ? p->desc->name
                                   : "plugin";
    rc = check_descriptor(p, name);
    if (rc != 0) {
        goto out;
    }
    p->name = name;
    p->hooks = NULL;
    p->in_init = 1;
    atomic_store(&p->config_thread, this_thread());
    rc = p->init(p, &p->fb->api, &state);
    atomic_store(&p->config_thread, 0);
    p->in_init = 0;
    if (rc != 0) {
        if (rc > 0) {
            bug(p->fb, p, "init returned %d: 0 or a negative error expected", rc);
        }
        if (p->err[0] == '\0') {
            bug(p->fb, p, "init failed (%d) without explaining why with api->set_error()", rc);
            snprintf(p->err, sizeof(p->err), "no reason given");
        }
        p->hooks = NULL;
        p->name = NULL;
        rc = rc > 0 ? -MIDGE_EINVAL : rc;
        goto out;
    }
    if (opts_copy(&p->active, &p->staged) != 0) {
        /* The plugin is up; only our bookkeeping failed. Undo it cleanly. */
        if (p->cleanup != NULL) {
            p->cleanup(p, state);
        }
        p->hooks = NULL;
        p->name = NULL;
        snprintf(p->err, sizeof(p->err), "out of memory");
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    p->state = state;
    p->loaded = 1;
    p->load_seq = ++p->fb->load_seq;
out:
    return rc;
}

/* 1 when p's hook table has hook `field` (within the size the plugin was built with). */
#define HOOK_HAS(p, field)                                                                   \
    ((p)->hooks != NULL &&                                                                   \
     (p)->hooks->size >= offsetof(struct midge_hooks, field) + sizeof((p)->hooks->field) &&  \
     (p)->hooks->field != NULL)

/* Simulates SIGHUP; see plugin_test.h. */
int
midge_test_reload(midge_plugin *p)
{
    int rc = -MIDGE_ESTATE;

    p->err[0] = '\0';
    if (!p->loaded) {
        goto out;
    }
    rc = -MIDGE_ENOTSUP;
    if (!HOOK_HAS(p, reload)) {
        goto out;
    }
    atomic_store(&p->config_thread, this_thread());
    rc = p->hooks->reload(p->state);
    atomic_store(&p->config_thread, 0);
    if (rc != 0) {
        if (rc > 0) {
            bug(p->fb, p, "reload returned %d: 0 or a negative error expected", rc);
            rc = -MIDGE_EINVAL;
        }
        if (p->err[0] == '\0') {
            snprintf(p->err, sizeof(p->err), "no reason given");
        }
        goto out;
    }
    if (opts_copy(&p->active, &p->staged) != 0) {
        snprintf(p->err, sizeof(p->err), "out of memory (harness)");
        rc = -MIDGE_ENOMEM;
    }
out:
    return rc;
}

/* Calls cleanup; see plugin_test.h. */
void
midge_test_unload(midge_plugin *p)
{
    midge_ticket *t;

    if (p == NULL || !p->loaded) {
        return;
    }
    if (p->cleanup != NULL) {
        p->cleanup(p, p->state);
    }
    pthread_mutex_lock(&p->fb->lock);
    for (t = p->fb->tickets; t != NULL; t = t->next) {
        if (t->plugin == p && (t->state == T_RUNNING || t->state == T_PENDING)) {
            t->state = T_UNLOADED;
        }
    }
    pthread_cond_broadcast(&p->fb->cond);
    pthread_mutex_unlock(&p->fb->lock);
    p->loaded = 0;
    p->state = NULL;
    p->hooks = NULL;
}

/* The last load/reload error; see plugin_test.h. */
const char *
midge_test_error(const midge_plugin *p)
{
    return p->err;
}

/* An option in force; see plugin_test.h. */
const char *
midge_test_option_in_force(const midge_plugin *p, const char *key)
{
    return key != NULL ? opts_get(&p->active, key) : NULL;
}

/* The plugin's state pointer; see plugin_test.h. */
void *
midge_test_state(const midge_plugin *p)
{
    return p->loaded ? p->state : NULL;
}

/* ---- Clients -------------------------------------------------------------- */

/* Creates a fake client; see plugin_test.h. */
midge_client *
midge_test_client_new(midge_test_broker *fb, const char *client_id, const char *username)
{
    midge_client *c = NULL;

    if (fb == NULL || client_id == NULL) {
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        goto out;
    }
    c->fb = fb;
    c->id = strdup(client_id);
    c->username = username != NULL ? strdup(username) : NULL;
    c->address = strdup("127.0.0.1:50000");
    if (c->id == NULL || (username != NULL && c->username == NULL) || c->address == NULL) {
        free(c->id);
        free(c->username);
        free(c->address);
        free(c);
        c = NULL;
        goto out;
    }
    c->protocol = 5;
    c->port = 1883;
    c->clean_start = 1;
    c->keepalive = 60;
    pthread_mutex_lock(&fb->lock);
    c->next = fb->clients;
    fb->clients = c;
    pthread_mutex_unlock(&fb->lock);
out:
    return c;
}

/* Sets the protocol version (3, 4 or 5); see plugin_test.h. */
int
midge_test_client_set_protocol(midge_client *c, int protocol)
{
    if (protocol < 3 || protocol > 5) {
        return -MIDGE_EINVAL;
    }
    c->protocol = protocol;
    return 0;
}

/* Sets the peer address "ip:port" (copied); see plugin_test.h. */
int
midge_test_client_set_address(midge_client *c, const char *address)
{
    char *copy;

    if (address == NULL) {
        return -MIDGE_EINVAL;
    }
    copy = strdup(address);
    if (copy == NULL) {
        return -MIDGE_ENOMEM;
    }
    free(c->address);
    c->address = copy;
    return 0;
}

/* Sets the listener port; see plugin_test.h. */
void
midge_test_client_set_listener_port(midge_client *c, int port)
{
    c->port = port;
}

/* Sets the clean start flag; see plugin_test.h. */
void
midge_test_client_set_clean_start(midge_client *c, int clean_start)
{
    c->clean_start = clean_start ? 1 : 0;
}

/* Sets the keep alive; see plugin_test.h. */
void
midge_test_client_set_keepalive(midge_client *c, int keepalive)
{
    c->keepalive = keepalive;
}

/* The client leaves; see plugin_test.h. */
void
midge_test_client_free(midge_client *c)
{
    midge_test_broker *fb;
    midge_client **pp;
    midge_ticket *t;

    if (c == NULL) {
        return;
    }
    fb = c->fb;
    pthread_mutex_lock(&fb->lock);
    for (pp = &fb->clients; *pp != NULL && *pp != c; pp = &(*pp)->next) {
    }
    if (*pp == c) {
        *pp = c->next;
    }
    for (t = fb->tickets; t != NULL; t = t->next) {
        if (t->client == c) {
            t->client = NULL;
            if (t->state == T_RUNNING || t->state == T_PENDING) {
                t->state = T_GONE;
            }
        }
    }
    pthread_cond_broadcast(&fb->cond);
    pthread_mutex_unlock(&fb->lock);
    free(c->id);
    free(c->username);
    free(c->address);
    free(c);
}

/* ---- Running hooks -------------------------------------------------------- */

/* A heap copy of n bytes (NULL stays NULL), so ASan sees a plugin keeping borrowed data. */
static void *
borrowed_copy(const void *src, size_t n, int *oom)
{
    char *d;

    if (src == NULL) {
        return NULL;
    }
    d = malloc(n + 1);
    if (d == NULL) {
        *oom = 1;
        return NULL;
    }
    memcpy(d, src, n);
    d[n] = '\0';
    return d;
}

/* Frees a borrowed copy after scribbling over it, so kept pointers show garbage without ASan. */
static void
borrowed_free(void *p, size_t n)
{
    if (p != NULL) {
        memset(p, 0x5a, n);
        free(p);
    }
}

/* Runs one decision hook (auth when areq != NULL, else acl) with a fresh ticket. */
static int
decide(midge_plugin *p, midge_client *c, const struct midge_auth_request *areq,
       const struct midge_acl_request *acl, uint8_t *reason, midge_ticket **ticket)
{
    midge_test_broker *fb = p->fb;
    midge_ticket *t = NULL;
    uint8_t r = 0;
    int early = 0;
    int rc;

    if (ticket != NULL) {
        *ticket = NULL;
    }
    if (reason != NULL) {
        *reason = 0;
    }
    if (!p->loaded) {
        rc = -MIDGE_ESTATE;
        goto out;
    }
    if (areq != NULL ? !HOOK_HAS(p, auth) : !HOOK_HAS(p, acl)) {
        rc = -MIDGE_ENOTSUP;
        goto out;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    t->fb = fb;
    t->plugin = p;
    t->client = c;
    t->hook = areq != NULL ? "auth" : "acl";
    t->state = T_RUNNING;
    pthread_mutex_lock(&fb->lock);
    t->next = fb->tickets;
    fb->tickets = t;
    pthread_mutex_unlock(&fb->lock);

    atomic_store(&c->hook_thread, this_thread());
    if (areq != NULL) {
        rc = p->hooks->auth(p->state, c, areq, &r, t);
    } else {
        rc = p->hooks->acl(p->state, c, acl, &r, NULL); /* ABI 1.0: ACL is synchronous */
    }
    atomic_store(&c->hook_thread, 0);

    if (rc < MIDGE_DEFER || rc > MIDGE_PENDING) {
        bug(fb, p, "%s hook returned %d: ALLOW, DENY, DEFER or PENDING expected", t->hook, rc);
    }
    pthread_mutex_lock(&fb->lock);
    t->returned = rc;
    if (rc == MIDGE_PENDING && t->state == T_RUNNING) {
        /* ACL decisions do not wait (ABI 1.0): PENDING there is a timeout at once. */
        t->state = acl != NULL ? T_EXPIRED : T_PENDING;
    } else if (rc != MIDGE_PENDING && t->state == T_RUNNING) {
        t->state = T_CLOSED;
    } else if (rc != MIDGE_PENDING && t->state == T_DONE) {
        early = 1;
    }
    pthread_mutex_unlock(&fb->lock);
    if (early) {
        bug(fb, p, "ticket completed during the %s hook, which then returned %s, not PENDING",
            t->hook, verdict_name(rc));
    }
    if (reason != NULL) {
        *reason = r;
    }
    if (ticket != NULL) {
        *ticket = t;
    }
out:
    return rc;
}

/* Runs the auth hook; see plugin_test.h. */
int
midge_test_auth(midge_plugin *p, midge_client *c, const void *password, size_t password_len,
                uint8_t *reason, midge_ticket **ticket)
{
    struct midge_auth_request req;
    char *id = NULL;
    char *user = NULL;
    uint8_t *pw = NULL;
    int oom = 0;
    int rc = -MIDGE_EINVAL;

    memset(&req, 0, sizeof(req));
    if (p == NULL || c == NULL || password_len > UINT32_MAX) {
        goto out;
    }
    id = borrowed_copy(c->id, strlen(c->id), &oom);
    user = c->username != NULL ? borrowed_copy(c->username, strlen(c->username), &oom) : NULL;
    pw = borrowed_copy(password, password_len, &oom);
    if (oom) {
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    req.size = sizeof(req);
    req.client_id = id;
    req.username = user;
    req.password = pw;
    req.password_len = pw != NULL ? (uint32_t)password_len : 0;
    rc = decide(p, c, &req, NULL, reason, ticket);
out:
    borrowed_free(id, id != NULL ? strlen(id) : 0);
    borrowed_free(user, user != NULL ? strlen(user) : 0);
    borrowed_free(pw, pw != NULL ? password_len : 0);
    return rc;
}

/* Runs the ACL hook; see plugin_test.h. */
int
midge_test_acl(midge_plugin *p, midge_client *c, const struct midge_acl_request *req,
               uint8_t *reason, midge_ticket **ticket)
{
    struct midge_acl_request r;
    char *topic = NULL;
    uint8_t *payload = NULL;
    int oom = 0;
    int rc = -MIDGE_EINVAL;

    if (p == NULL || c == NULL || req == NULL || req->topic == NULL) {
        goto out;
    }
    r = *req;
    if (r.size == 0 || r.size > sizeof(r)) {
        r.size = sizeof(r);
    }
    topic = borrowed_copy(req->topic, strlen(req->topic), &oom);
    payload = borrowed_copy(req->payload, req->payload_len, &oom);
    if (oom) {
        rc = -MIDGE_ENOMEM;
        goto out;
    }
    r.topic = topic;
    r.payload = payload;
    rc = decide(p, c, NULL, &r, reason, ticket);
out:
    borrowed_free(topic, topic != NULL ? strlen(topic) : 0);
    borrowed_free(payload, payload != NULL ? req->payload_len : 0);
    return rc;
}

/* Absolute CLOCK_MONOTONIC deadline `ms` from now. */
static struct timespec
deadline_in(unsigned ms)
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

/* Waits for complete(); see plugin_test.h. */
int
midge_test_wait(midge_ticket *t, unsigned timeout_ms, uint8_t *reason)
{
    midge_test_broker *fb;
    struct timespec until = deadline_in(timeout_ms);
    int rc = -MIDGE_EINVAL;

    if (t == NULL) {
        goto out;
    }
    fb = t->fb;
    pthread_mutex_lock(&fb->lock);
    while (t->state == T_RUNNING || t->state == T_PENDING) {
        if (pthread_cond_timedwait(&fb->cond, &fb->lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    if (t->state == T_DONE) {
        rc = t->verdict;
        if (reason != NULL) {
            *reason = t->reason;
        }
    } else if (t->state == T_RUNNING || t->state == T_PENDING) {
        rc = MIDGE_TEST_TIMEDOUT;
    } else {
        rc = -MIDGE_ESTATE;
    }
    pthread_mutex_unlock(&fb->lock);
out:
    return rc;
}

/* Simulates plugin_timeout; see plugin_test.h. */
int
midge_test_expire(midge_ticket *t)
{
    int rc = -MIDGE_ESTATE;

    if (t == NULL) {
        return -MIDGE_EINVAL;
    }
    pthread_mutex_lock(&t->fb->lock);
    if (t->state == T_PENDING) {
        t->state = T_EXPIRED;
        pthread_cond_broadcast(&t->fb->cond);
        rc = 0;
    }
    pthread_mutex_unlock(&t->fb->lock);
    return rc;
}

/* Runs the client_connected hook; see plugin_test.h. */
int
midge_test_client_connected(midge_plugin *p, midge_client *c)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, client_connected)) {
        return -MIDGE_ENOTSUP;
    }
    atomic_store(&c->hook_thread, this_thread());
    p->hooks->client_connected(p->state, c);
    atomic_store(&c->hook_thread, 0);
    return 0;
}

/* Runs the client_disconnected hook; see plugin_test.h. */
int
midge_test_client_disconnected(midge_plugin *p, midge_client *c, int reason)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, client_disconnected)) {
        return -MIDGE_ENOTSUP;
    }
    atomic_store(&c->hook_thread, this_thread());
    p->hooks->client_disconnected(p->state, c, reason);
    atomic_store(&c->hook_thread, 0);
    return 0;
}

/* Runs the tick hook; see plugin_test.h. */
int
midge_test_tick(midge_plugin *p)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, tick)) {
        return -MIDGE_ENOTSUP;
    }
    p->hooks->tick(p->state);
    return 0;
}

/* Runs the thread_start hook on the calling thread; see plugin_test.h. */
int
midge_test_thread_start(midge_plugin *p, unsigned worker)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, thread_start)) {
        return -MIDGE_ENOTSUP;
    }
    p->hooks->thread_start(p->state, worker);
    return 0;
}

/* Runs the thread_stop hook on the calling thread; see plugin_test.h. */
int
midge_test_thread_stop(midge_plugin *p, unsigned worker)
{
    if (!p->loaded) {
        return -MIDGE_ESTATE;
    }
    if (!HOOK_HAS(p, thread_stop)) {
        return -MIDGE_ENOTSUP;
    }
    p->hooks->thread_stop(p->state, worker);
    return 0;
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
    struct timespec until = deadline_in(timeout_ms);
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
