/*
 * example-auth: the plugin that docs/plugin-guide.md walks through.
 *
 * It authenticates CONNECTs against an inline list of users given in the
 * configuration, and shows the patterns every real auth plugin needs:
 *
 *     plugin example-auth
 *     plugin_opt_users alice:secret,bob:hunter2
 *     plugin_opt_async_delay_ms 0
 *
 *  - known user, right password   -> MIDGE_ALLOW
 *  - known user, wrong password   -> MIDGE_DENY, reason 0x86 (Bad User Name
 *                                    or Password; the broker sends return
 *                                    code 4 to MQTT 3.x clients)
 *  - unknown user, or no username -> MIDGE_DEFER: not ours, the next plugin
 *                                    in the chain (or the broker's default)
 *                                    decides
 *
 * With async_delay_ms > 0 the answer comes from a helper thread after that
 * delay, as it would from a database or an HTTP service: the hook copies
 * what it needs, queues the request, returns MIDGE_PENDING, and the helper
 * thread calls api->complete() later. The broker's worker thread keeps
 * serving other clients meanwhile. One long-lived helper thread per
 * instance serves a queue; a thread per request would not survive a burst
 * of logins.
 *
 * Rules this file follows (they are the plugin contract, see plugin.h):
 *  - all state hangs off *state, nothing is global: the .so may be loaded
 *    twice (plugin_instance) with different users;
 *  - everything a hook receives is borrowed until the hook returns, so the
 *    asynchronous path copies username, password and client id;
 *  - option strings are borrowed until init/reload returns, so they are
 *    parsed into our own copy at once;
 *  - hooks run on several worker threads at once and reload runs on the
 *    main thread, so the user list is behind a read-write lock;
 *  - only plugin.h, libc and pthreads; only the descriptor, init and
 *    cleanup are exported (everything else is static).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <midge/plugin.h>

/*
 * The descriptor: name (the default instance name), version, description,
 * and the options we accept, so the broker rejects a misspelled
 * plugin_opt_ line at start-up instead of us silently ignoring it.
 */
static const char *const example_options[] = {"users", "async_delay_ms", NULL};
MIDGE_PLUGIN_DECLARE_OPTIONS("example-auth", "1.0",
                             "users from an inline list; optionally answers asynchronously",
                             example_options);

#define MAX_DELAY_MS 60000u
#define REASON_BAD_USER_OR_PASSWORD 0x86 /* MQTT 5 CONNACK reason code */

/* One user; both strings point into the owning userlist's buf. */
struct user {
    const char *name;
    const char *password;
    size_t password_len;
};

/* A parsed `users` option. Owns buf and v; freed by users_free(). Immutable once built. */
struct userlist {
    char *buf;      /* copy of the option, cut into NUL-terminated names and passwords */
    struct user *v;
    size_t n;
};

/*
 * An authentication waiting for the helper thread. Owns its copies of the
 * borrowed request; freed by the helper thread after answering, or by
 * cleanup.
 */
struct request {
    midge_ticket *ticket;
    char *client_id;
    char *username;
    uint8_t *password;
    uint32_t password_len;
    struct timespec due; /* CLOCK_MONOTONIC time to answer */
    struct request *next;
};

/* One instance. Created by init, freed by cleanup (or by init when it fails). */
struct example {
    midge_plugin *self;           /* the broker's handle: valid for the instance's life */
    const struct midge_api *api;  /* likewise */
    unsigned delay_ms;            /* async_delay_ms as of init; 0: answer in the hook */

    pthread_rwlock_t users_lock;  /* hooks read the list, reload replaces it */
    int users_lock_ok;
    struct userlist *users;       /* Protected by users_lock. */

    /* The helper thread and its queue (used when delay_ms > 0). */
    pthread_mutex_t queue_lock;
    int queue_lock_ok;
    pthread_cond_t queue_cond;    /* CLOCK_MONOTONIC; signalled on enqueue and stop */
    int queue_cond_ok;
    struct request *head;         /* FIFO; due times only grow. Protected by queue_lock. */
    struct request *tail;         /* Protected by queue_lock. */
    int stopping;                 /* Protected by queue_lock. */
    pthread_t helper;
    int helper_running;
};

/* ---- The user list ---------------------------------------------------------- */

static void
users_free(struct userlist *u)
{
    if (u != NULL) {
        free(u->buf);
        free(u->v);
        free(u);
    }
}

/* Strips leading and trailing blanks in place. */
static char *
trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) {
        *--end = '\0';
    }
    return s;
}

/*
 * Parses "NAME:PASSWORD,NAME:PASSWORD,..." (blanks around entries ignored;
 * the password is everything after the first ':'). NULL or "" is an empty
 * list. On success *out owns the new list. On failure returns a negative
 * error after api->set_error() named the bad entry; error messages show the
 * entry's number and name, never a password. [main thread: init, reload]
 */
static int
users_parse(struct example *ex, const char *text, struct userlist **out)
{
    struct userlist *u = NULL;
    char *entry;
    size_t commas = 0;
    size_t idx = 1;
    const char *p;
    int rc = -MIDGE_ENOMEM;

    *out = NULL;
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
        ex->api->set_error(ex->self, "out of memory");
        goto out;
    }
    if (text == NULL) {
        text = "";
    }
    for (p = text; *p != '\0'; p++) {
        commas += *p == ',';
    }
    u->buf = strdup(text);
    u->v = calloc(commas + 1, sizeof(*u->v));
    if (u->buf == NULL || u->v == NULL) {
        ex->api->set_error(ex->self, "out of memory");
        goto out;
    }
    rc = -MIDGE_EINVAL;
    if (trim(u->buf)[0] == '\0') {
        rc = 0; /* no users: every client is deferred to the next plugin */
        goto out;
    }
    for (entry = u->buf;; idx++) {
        char *comma = strchr(entry, ',');
        char *colon;
        char *name;
        size_t i;

        if (comma != NULL) {
            *comma = '\0';
        }
        name = trim(entry);
        colon = strchr(name, ':');
        if (name[0] == '\0') {
            ex->api->set_error(ex->self, "option users: entry %zu is empty (expected "
                               "NAME:PASSWORD,NAME:PASSWORD,...)", idx);
            goto out;
        }
        if (colon == NULL) {
            ex->api->set_error(ex->self, "option users: entry %zu '%s' is not NAME:PASSWORD",
                               idx, name);
            goto out;
        }
        *colon = '\0';
        if (name[0] == '\0') {
            ex->api->set_error(ex->self, "option users: entry %zu has an empty user name", idx);
            goto out;
        }
        if (colon[1] == '\0') {
            ex->api->set_error(ex->self, "option users: entry %zu '%s' has an empty password",
                               idx, name);
            goto out;
        }
        for (i = 0; i < u->n; i++) {
            if (strcmp(u->v[i].name, name) == 0) {
                ex->api->set_error(ex->self, "option users: entry %zu: user '%s' is listed twice",
                                   idx, name);
                goto out;
            }
        }
        u->v[u->n].name = name;
        u->v[u->n].password = colon + 1;
        u->v[u->n].password_len = strlen(colon + 1);
        u->n++;
        if (comma == NULL) {
            break;
        }
        entry = comma + 1;
    }
    rc = 0;
out:
    if (rc == 0) {
        *out = u;
    } else {
        users_free(u);
    }
    return rc;
}

/* Parses async_delay_ms (NULL: 0). 0 or -MIDGE_EINVAL after set_error(). [main thread] */
static int
delay_parse(struct example *ex, const char *text, unsigned *out)
{
    char *end = NULL;
    unsigned long v;

    *out = 0;
    if (text == NULL) {
        return 0;
    }
    v = strtoul(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || v > MAX_DELAY_MS) {
        ex->api->set_error(ex->self, "option async_delay_ms: '%s' is not a number of "
                           "milliseconds between 0 and %u", text, MAX_DELAY_MS);
        return -MIDGE_EINVAL;
    }
    *out = (unsigned)v;
    return 0;
}

/*
 * Compares without an early exit, so the time taken does not reveal how
 * many leading bytes of a guess were right (it does reveal the length).
 */
static int
password_equal(const struct user *u, const uint8_t *pw, uint32_t len)
{
    unsigned diff = u->password_len != len;
    size_t i;

    for (i = 0; i < u->password_len; i++) {
        diff |= (unsigned)((uint8_t)u->password[i] ^ (i < len ? pw[i] : 0));
    }
    return diff == 0;
}

/*
 * The decision itself, shared by the synchronous and asynchronous paths.
 * Safe on any thread: it reads the list under the read lock.
 */
static int
check_user(struct example *ex, const char *username, const uint8_t *pw, uint32_t pw_len,
           uint8_t *reason)
{
    int verdict = MIDGE_DEFER;
    size_t i;

    if (username == NULL) {
        goto out; /* anonymous: allow_anonymous or another plugin decides */
    }
    pthread_rwlock_rdlock(&ex->users_lock);
    for (i = 0; i < ex->users->n; i++) {
        const struct user *u = &ex->users->v[i];
        if (strcmp(u->name, username) == 0) {
            if (pw != NULL && password_equal(u, pw, pw_len)) {
                verdict = MIDGE_ALLOW;
            } else {
                verdict = MIDGE_DENY;
                *reason = REASON_BAD_USER_OR_PASSWORD;
            }
            break;
        }
    }
    pthread_rwlock_unlock(&ex->users_lock);
out:
    return verdict;
}

static const char *
verdict_word(int v)
{
    return v == MIDGE_ALLOW ? "allow" : v == MIDGE_DENY ? "deny" : "defer";
}

/* ---- The asynchronous path ---------------------------------------------------- */

static void
request_free(struct request *r)
{
    if (r != NULL) {
        free(r->client_id);
        free(r->username);
        if (r->password != NULL) {
            memset(r->password, 0, r->password_len); /* do not leave secrets in freed memory */
        }
        free(r->password);
        free(r);
    }
}

/* 1 when a is earlier than b. */
static int
ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Answers one request: the decision, then api->complete(). [helper thread] */
static void
answer(struct example *ex, struct request *r)
{
    uint8_t reason = 0;
    int verdict = check_user(ex, r->username, r->password, r->password_len, &reason);
    int rc = ex->api->complete(r->ticket, verdict, reason);

    if (rc != 0) {
        /*
         * -MIDGE_ESTATE: the client left, or the broker's plugin_timeout
         * fired first and applied plugin_timeout_verdict. Nothing to undo.
         */
        ex->api->log(ex->self, MIDGE_LOG_NOTICE,
                     "late answer ignored user=%s client=%s verdict=%s rc=%d", r->username,
                     r->client_id, verdict_word(verdict), rc);
    } else {
        ex->api->log(ex->self, verdict == MIDGE_DENY ? MIDGE_LOG_NOTICE : MIDGE_LOG_INFO,
                     "auth user=%s client=%s verdict=%s mode=async", r->username, r->client_id,
                     verdict_word(verdict));
    }
}

/*
 * The helper thread: waits for the head of the queue to fall due, answers
 * it without holding the queue lock (never hold your own lock while calling
 * into the broker), repeats until cleanup sets `stopping`.
 */
static void *
helper_main(void *arg)
{
    struct example *ex = arg;

    pthread_mutex_lock(&ex->queue_lock);
    while (!ex->stopping) {
        struct request *r = ex->head;
        struct timespec now;

        if (r == NULL) {
            pthread_cond_wait(&ex->queue_cond, &ex->queue_lock);
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (ts_before(&now, &r->due)) {
            pthread_cond_timedwait(&ex->queue_cond, &ex->queue_lock, &r->due);
            continue;
        }
        ex->head = r->next;
        if (ex->head == NULL) {
            ex->tail = NULL;
        }
        pthread_mutex_unlock(&ex->queue_lock);
        answer(ex, r);
        request_free(r);
        pthread_mutex_lock(&ex->queue_lock);
    }
    pthread_mutex_unlock(&ex->queue_lock);
    return NULL;
}

/* Copies n bytes; NULL stays NULL. Sets *oom on failure. */
static void *
dup_bytes(const void *src, size_t n, int *oom)
{
    char *d = NULL;

    if (src == NULL) {
        goto out;
    }
    d = malloc(n + 1);
    if (d == NULL) {
        *oom = 1;
        goto out;
    }
    memcpy(d, src, n);
    d[n] = '\0';
out:
    return d;
}

/*
 * Queues a request for the helper thread. The request's strings are
 * copies: `req` is only borrowed until the hook returns. Returns 0, or
 * -MIDGE_ENOMEM (nothing queued). [worker thread]
 */
static int
enqueue(struct example *ex, const struct midge_auth_request *req, midge_ticket *ticket)
{
    struct request *r = calloc(1, sizeof(*r));
    int oom = r == NULL;
    int rc = -MIDGE_ENOMEM;

    if (oom) {
        goto out;
    }
    r->ticket = ticket;
    r->client_id = dup_bytes(req->client_id, strlen(req->client_id), &oom);
    r->username = dup_bytes(req->username, strlen(req->username), &oom);
    r->password = dup_bytes(req->password, req->password_len, &oom);
    r->password_len = req->password != NULL ? req->password_len : 0;
    if (oom) {
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &r->due);
    r->due.tv_sec += ex->delay_ms / 1000;
    r->due.tv_nsec += (long)(ex->delay_ms % 1000) * 1000000L;
    if (r->due.tv_nsec >= 1000000000L) {
        r->due.tv_sec++;
        r->due.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ex->queue_lock);
    if (ex->tail != NULL) {
        ex->tail->next = r;
    } else {
        ex->head = r;
    }
    ex->tail = r;
    pthread_cond_signal(&ex->queue_cond);
    pthread_mutex_unlock(&ex->queue_lock);
    r = NULL;
    rc = 0;
out:
    request_free(r);
    return rc;
}

/* ---- Hooks ------------------------------------------------------------------- */

/*
 * The auth hook. [worker thread: several may run it at once]
 * `req` and `client` are borrowed until we return.
 */
static int
example_auth(void *state, midge_client *client, const struct midge_auth_request *req,
             uint8_t *reason, midge_ticket *ticket)
{
    struct example *ex = state;
    int verdict;

    if (req->username == NULL) {
        /* Not ours: let allow_anonymous, or another plugin, decide. No need to queue. */
        verdict = MIDGE_DEFER;
        goto out;
    }
    if (ex->delay_ms > 0 && enqueue(ex, req, ticket) == 0) {
        verdict = MIDGE_PENDING; /* the helper thread calls api->complete(ticket, ...) */
        goto out;
    }
    /*
     * Synchronous mode, or the copy for the queue failed for lack of memory:
     * answering here needs no allocation and is just as correct.
     */
    verdict = check_user(ex, req->username, req->password, req->password_len, reason);
    ex->api->log(ex->self, verdict == MIDGE_DENY ? MIDGE_LOG_NOTICE : MIDGE_LOG_INFO,
                 "auth user=%s client=%s address=%s verdict=%s mode=sync", req->username,
                 req->client_id, ex->api->client_address(client), verdict_word(verdict));
out:
    return verdict;
}

/*
 * SIGHUP. [main thread] api->option() returns the new values. Validate
 * everything first, so a bad list changes nothing; then swap the user list
 * under the write lock. async_delay_ms needs a restart (it decides whether
 * the helper thread exists); a change is logged and ignored.
 */
static int
example_reload(void *state)
{
    struct example *ex = state;
    struct userlist *fresh = NULL;
    struct userlist *old;
    unsigned delay;
    int rc;

    rc = delay_parse(ex, ex->api->option(ex->self, "async_delay_ms"), &delay);
    if (rc != 0) {
        goto out;
    }
    rc = users_parse(ex, ex->api->option(ex->self, "users"), &fresh);
    if (rc != 0) {
        goto out;
    }
    pthread_rwlock_wrlock(&ex->users_lock);
    old = ex->users;
    ex->users = fresh;
    pthread_rwlock_unlock(&ex->users_lock);
    users_free(old); /* nobody can still see it: readers hold the lock while they look */
    if (delay != ex->delay_ms) {
        ex->api->log(ex->self, MIDGE_LOG_WARNING, "async_delay_ms=%u needs a restart; keeping %u",
                     delay, ex->delay_ms);
    }
    ex->api->log(ex->self, MIDGE_LOG_NOTICE, "reloaded users=%zu", fresh->n);
out:
    return rc;
}

/* Static storage: the broker keeps this pointer for the instance's life. */
static const struct midge_hooks example_hooks = {
    .size = sizeof(struct midge_hooks),
    .auth = example_auth,
    .reload = example_reload,
};

/* ---- Entry points -------------------------------------------------------------- */

/* Frees an instance: stops the helper thread, drops what it had not answered. */
static void
example_free(struct example *ex)
{
    struct request *r;
    size_t dropped = 0;

    if (ex == NULL) {
        return;
    }
    if (ex->helper_running) {
        pthread_mutex_lock(&ex->queue_lock);
        ex->stopping = 1;
        pthread_cond_signal(&ex->queue_cond);
        pthread_mutex_unlock(&ex->queue_lock);
        pthread_join(ex->helper, NULL);
    }
    /*
     * Cleanup runs at shutdown, after every worker stopped: the clients
     * still waiting are gone with them, so unanswered requests are dropped.
     */
    while ((r = ex->head) != NULL) {
        ex->head = r->next;
        request_free(r);
        dropped++;
    }
    if (dropped > 0) {
        ex->api->log(ex->self, MIDGE_LOG_INFO, "stopped with %zu unanswered requests", dropped);
    }
    users_free(ex->users);
    if (ex->queue_cond_ok) {
        pthread_cond_destroy(&ex->queue_cond);
    }
    if (ex->queue_lock_ok) {
        pthread_mutex_destroy(&ex->queue_lock);
    }
    if (ex->users_lock_ok) {
        pthread_rwlock_destroy(&ex->users_lock);
    }
    free(ex);
}

/*
 * Called once when the broker loads the instance. [main thread] Reads and
 * checks the options, starts the helper thread when asked to, registers the
 * hooks. On failure everything allocated is freed and api->set_error() has
 * said why: the broker prints it with the plugin line's FILE:LINE.
 */
int
midge_plugin_init(midge_plugin *self, const struct midge_api *api, void **state)
{
    struct example *ex = NULL;
    pthread_condattr_t ca;
    int rc = -MIDGE_ENOMEM;

    /*
     * Everything used here exists since ABI 1.0, so no MIDGE_API_HAS()
     * checks are needed. A function added in 1.x would be used only when
     * MIDGE_API_HAS(api, that_function) is true.
     */
    ex = calloc(1, sizeof(*ex));
    if (ex == NULL) {
        api->set_error(self, "out of memory");
        goto out;
    }
    ex->self = self;
    ex->api = api;
    rc = -MIDGE_EINVAL;
    if (pthread_rwlock_init(&ex->users_lock, NULL) != 0) {
        api->set_error(self, "cannot create a lock");
        goto out;
    }
    ex->users_lock_ok = 1;
    if (pthread_mutex_init(&ex->queue_lock, NULL) != 0) {
        api->set_error(self, "cannot create a lock");
        goto out;
    }
    ex->queue_lock_ok = 1;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    ex->queue_cond_ok = pthread_cond_init(&ex->queue_cond, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ex->queue_cond_ok) {
        api->set_error(self, "cannot create a condition variable");
        goto out;
    }

    /* Option strings are borrowed until init returns: parse them into our own copies now. */
    rc = delay_parse(ex, api->option(self, "async_delay_ms"), &ex->delay_ms);
    if (rc != 0) {
        goto out;
    }
    rc = users_parse(ex, api->option(self, "users"), &ex->users);
    if (rc != 0) {
        goto out;
    }
    if (ex->users->n == 0) {
        api->log(self, MIDGE_LOG_WARNING, "option users is empty: every client is deferred");
    }

    if (ex->delay_ms > 0) {
        if (pthread_create(&ex->helper, NULL, helper_main, ex) != 0) {
            api->set_error(self, "cannot start the helper thread");
            rc = -MIDGE_ENOMEM;
            goto out;
        }
        ex->helper_running = 1;
    }
    rc = api->hooks_set(self, &example_hooks);
    if (rc != 0) {
        api->set_error(self, "hooks_set failed (%d)", rc);
        goto out;
    }
    api->log(self, MIDGE_LOG_NOTICE, "ready users=%zu mode=%s async_delay_ms=%u", ex->users->n,
             ex->delay_ms > 0 ? "async" : "sync", ex->delay_ms);
    *state = ex;
    ex = NULL;
    rc = 0;
out:
    example_free(ex);
    return rc;
}

/* Called once at shutdown, after every worker stopped. [main thread] */
void
midge_plugin_cleanup(midge_plugin *self, void *state)
{
    (void)self;
    example_free(state);
}
