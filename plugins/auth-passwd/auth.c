/*
 * The auth hook of auth-passwd and the life of one verification:
 *
 *   hook (worker) --cache hit--> ALLOW at once
 *        |--blocked by the limiter--> DENY 0x9F, answered after fail_delay_max
 *        `--> job: run_blocking(job_work, job_done)
 *   job_work (pool thread): PBKDF2 / SHA-512 / argon2id against the user's
 *        hash, or against the table's dummy hash for an unknown user
 *   job_done (the hook's worker): cache the success, or count the failure
 *        and delay the DENY with a timer on the worker's loop (never a
 *        sleep on a pool thread), then api->complete().
 *
 * On a broker without run_blocking the hash runs inside the hook (the
 * worker stalls for its duration; init logged a warning). Without timers,
 * failures are answered at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "passwd.h"

/*
 * One authentication in flight. Owns its copies of the borrowed request;
 * the password is wiped and freed as soon as it was hashed. Freed by
 * job_free() when answered (or by cleanup when the broker dropped it).
 */
struct job {
    struct passwd *pw;
    midge_ticket *ticket;      /* NULL when answered in the hook */
    struct pw_hash hash;       /* the user's hash, or the table's dummy */
    int known;                 /* the user is in the table */
    uint8_t *password;         /* NULL after hashing */
    uint32_t password_len;
    uint8_t key[PW_CACHE_KEY]; /* cache key of (user, password) */
    int cacheable;             /* key was computed */
    uint64_t epoch;            /* cache epoch when the job started */
    char *user;
    char *client_id;
    char ip[64];
    double started;            /* passwd_now() in the hook */
    int result;                /* job_work: 1 match, 0 mismatch, -1 error, -2 waited too long */
    double max_wait;
    int verdict;               /* the answer, once decided */
    uint8_t reason;
    midge_timer *timer;        /* the delayed answer; owned until it fired */
    struct job *prev, *next;   /* in pw->jobs. Protected by pw->jobs_lock. */
};

/* See passwd.h. */
double
passwd_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
wipe_password(struct job *j)
{
    if (j->password != NULL) {
        OPENSSL_cleanse(j->password, j->password_len);
        free(j->password);
        j->password = NULL;
    }
}

static void
job_free(struct job *j)
{
    struct passwd *pw;

    if (j == NULL) {
        return;
    }
    pw = j->pw;
    pthread_mutex_lock(&pw->jobs_lock);
    if (j->prev != NULL) {
        j->prev->next = j->next;
    } else if (pw->jobs == j) {
        pw->jobs = j->next;
    }
    if (j->next != NULL) {
        j->next->prev = j->prev;
    }
    pthread_mutex_unlock(&pw->jobs_lock);
    wipe_password(j);
    OPENSSL_cleanse(&j->hash, sizeof(j->hash));
    free(j->user);
    free(j->client_id);
    free(j);
}

/* See passwd.h. */
void
passwd_jobs_free(struct passwd *pw)
{
    size_t n = 0;

    while (pw->jobs != NULL) {
        job_free(pw->jobs);
        n++;
    }
    if (n > 0) {
        pw->api->log(pw->self, MIDGE_LOG_INFO, "stopped with %zu unanswered logins", n);
    }
}

/* A new job, in pw->jobs. NULL when out of memory. [worker thread] */
static struct job *
job_new(struct passwd *pw, const struct midge_auth_request *req, const char *ip,
        midge_ticket *ticket)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        return NULL;
    }
    j->pw = pw;
    j->ticket = ticket;
    j->user = strdup(req->username);
    j->client_id = strdup(req->client_id != NULL ? req->client_id : "");
    j->password = malloc(req->password_len > 0 ? req->password_len : 1);
    if (j->user == NULL || j->client_id == NULL || j->password == NULL) {
        free(j->user);
        free(j->client_id);
        free(j->password);
        free(j);
        return NULL;
    }
    if (req->password_len > 0) {
        memcpy(j->password, req->password, req->password_len);
    }
    j->password_len = req->password_len;
    snprintf(j->ip, sizeof(j->ip), "%s", ip);
    j->started = passwd_now();
    pthread_mutex_lock(&pw->jobs_lock);
    j->next = pw->jobs;
    if (pw->jobs != NULL) {
        pw->jobs->prev = j;
    }
    pw->jobs = j;
    pthread_mutex_unlock(&pw->jobs_lock);
    return j;
}

/*
 * The hashing. [pool thread, or the worker without run_blocking] Touches
 * only the job: the table may be replaced meanwhile.
 */
static void
job_work(void *arg)
{
    struct job *j = arg;
    double t0 = passwd_now();

    if (t0 - j->started > j->max_wait) {
        /* The client has waited too long already (the pool is backlogged). */
        j->result = -2;
    } else {
        j->result = pw_verify(&j->hash, j->password, j->password_len);
    }
    wipe_password(j);
    if (j->pw->m.verify_seconds != NULL && j->result != -2) {
        j->pw->api->metric_observe(j->pw->m.verify_seconds, passwd_now() - t0);
    }
}

static void
metric_inc(struct passwd *pw, midge_metric *m)
{
    if (m != NULL) {
        pw->api->metric_add(m, 1);
    }
}

/* Completes a job's ticket with its verdict and frees it. [worker thread] */
static void
job_answer(struct job *j)
{
    struct passwd *pw = j->pw;
    int rc = pw->api->complete(j->ticket, j->verdict, j->reason);

    if (rc != 0) {
        /* The client left, or plugin_timeout fired first: nothing to undo. */
        pw->api->log(pw->self, MIDGE_LOG_INFO, "late answer dropped user=%s client=%s rc=%d",
                     j->user, j->client_id, rc);
    }
    job_free(j);
}

/* The delayed answer of a failure. [worker thread] */
static void
job_timer_fired(void *arg, midge_timer *t)
{
    struct job *j = arg;

    j->pw->api->timer_stop(j->pw->self, t);
    j->timer = NULL;
    job_answer(j);
}

/*
 * Answers j with its verdict `delay` seconds after its CONNECT: through a timer on the
 * calling worker's loop when there is a ticket and a delay, else at once
 * (completing the ticket, or, in the hook, returning the verdict).
 * Returns what the hook returns (MIDGE_PENDING when deferred). Frees j
 * unless a timer now owns it. [worker thread]
 */
static int
job_reply(struct job *j, double delay, int in_hook, uint8_t *reason)
{
    struct passwd *pw = j->pw;
    int verdict = j->verdict;

    /*
     * The delay counts from the CONNECT, not from the end of the hashing: the
     * time spent waiting for the pool is part of it, so a backlogged pool
     * plus a delay never add up beyond the broker's plugin_timeout.
     */
    delay -= passwd_now() - j->started;
    if (delay > 0.001 && pw->timers && j->ticket != NULL) {
        j->timer = pw->api->timer_start(pw->self, delay, 0, job_timer_fired, j);
        if (j->timer != NULL) {
            return MIDGE_PENDING;
        }
    }
    if (in_hook) {
        *reason = j->reason;
        job_free(j);
        return verdict;
    }
    job_answer(j);
    return MIDGE_PENDING;
}

/* Turns a finished job_work into a verdict and answers. [worker thread] */
static int
job_finish(struct job *j, int in_hook, uint8_t *reason)
{
    struct passwd *pw = j->pw;
    double delay = 0;
    const char *why;

    if (j->result == 1 && j->known) {
        if (j->cacheable) {
            pw_cache_insert(pw->cache, j->key, passwd_now(), j->epoch);
        }
        pw_limiter_success(pw->limiter, j->user);
        metric_inc(pw, pw->m.ok);
        pw->api->log(pw->self, MIDGE_LOG_INFO, "login user=%s client=%s cache=miss", j->user,
                     j->client_id);
        j->verdict = MIDGE_ALLOW;
        j->reason = 0;
        return job_reply(j, 0, in_hook, reason);
    }
    if (j->result == -2) {
        metric_inc(pw, pw->m.busy);
        pw->api->log(pw->self, MIDGE_LOG_WARNING,
                     "login refused user=%s client=%s addr=%s reason=busy waited=%.1fs", j->user,
                     j->client_id, j->ip, passwd_now() - j->started);
        j->verdict = MIDGE_DENY;
        j->reason = RC_SERVER_BUSY;
        return job_reply(j, 0, in_hook, reason);
    }
    if (j->result < 0) {
        why = "hash-error";
    } else if (!j->known) {
        why = "unknown-user";
    } else {
        why = "wrong-password";
    }
    delay = pw_limiter_failure(pw->limiter, j->ip, j->user, passwd_now());
    metric_inc(pw, pw->m.failed);
    pw->api->log(pw->self, MIDGE_LOG_NOTICE, "login failed user=%s client=%s addr=%s reason=%s "
                 "delay=%.1fs", j->user, j->client_id, j->ip, why, delay);
    j->verdict = MIDGE_DENY;
    j->reason = RC_BAD_USER_OR_PASSWORD;
    return job_reply(j, delay, in_hook, reason);
}

/* run_blocking's done callback. [the hook's worker thread] */
static void
job_done(void *arg)
{
    uint8_t unused = 0;

    job_finish(arg, 0, &unused);
}

/* The client's IP address (no port) into out. [worker thread, in the hook] */
static void
peer_ip(struct passwd *pw, midge_client *client, char *out, size_t len)
{
    const char *a = NULL;
    char *colon;

    if (MIDGE_API_HAS(pw->api, client_peer_ip)) {
        a = pw->api->client_peer_ip(client);
        if (a != NULL) {
            snprintf(out, len, "%s", a);
            return;
        }
    }
    a = pw->api->client_address(client);
    snprintf(out, len, "%s", a != NULL ? a : "?");
    colon = strrchr(out, ':'); /* "ip:port", "[v6]:port" */
    if (colon != NULL) {
        *colon = '\0';
    }
    if (out[0] == '[' && out[strlen(out) - 1] == ']') {
        memmove(out, out + 1, strlen(out));
        out[strlen(out) - 1] = '\0';
    }
}

/* See passwd.h. */
int
passwd_auth(void *state, midge_client *client, const struct midge_auth_request *req,
            uint8_t *reason, midge_ticket *ticket)
{
    struct passwd *pw = state;
    const struct pw_entry *e;
    struct job *j = NULL;
    char ip[64];
    int rc;

    if (req->username == NULL) {
        return MIDGE_DEFER; /* anonymous: allow_anonymous (or another plugin) decides */
    }
    peer_ip(pw, client, ip, sizeof(ip));
    j = job_new(pw, req, ip, ticket);
    if (j == NULL) {
        pw->api->log(pw->self, MIDGE_LOG_ERROR, "out of memory user=%s", req->username);
        *reason = RC_SERVER_BUSY;
        return MIDGE_DENY;
    }
    pthread_mutex_lock(&pw->lock);
    e = pw_table_find(pw->table, req->username);
    j->known = e != NULL;
    j->hash = e != NULL ? e->hash : pw->table->dummy;
    j->max_wait = pw->cfg.max_wait;
    if (e == NULL && pw->cfg.unknown_defer) {
        pthread_mutex_unlock(&pw->lock);
        job_free(j);
        return MIDGE_DEFER; /* another plugin may know this user */
    }
    pthread_mutex_unlock(&pw->lock);

    j->epoch = pw_cache_epoch(pw->cache);
    j->cacheable = j->known &&
                   pw_cache_key(pw->cache, j->user, j->password, j->password_len, j->key) == 0;
    if (j->cacheable && pw_cache_lookup(pw->cache, j->key, j->started)) {
        /* Verified recently with this very password: no hashing, no limiter. */
        metric_inc(pw, pw->m.cache_hits);
        metric_inc(pw, pw->m.ok);
        pw->api->log(pw->self, MIDGE_LOG_DEBUG, "login user=%s client=%s cache=hit", j->user,
                     j->client_id);
        pw_limiter_success(pw->limiter, j->user);
        job_free(j);
        return MIDGE_ALLOW;
    }
    if (pw_limiter_blocked(pw->limiter, ip, j->user, j->started)) {
        metric_inc(pw, pw->m.blocked);
        pw->api->log(pw->self, MIDGE_LOG_NOTICE, "login refused user=%s client=%s addr=%s "
                     "reason=rate-limited", j->user, j->client_id, ip);
        wipe_password(j);
        j->verdict = MIDGE_DENY;
        j->reason = RC_RATE_EXCEEDED;
        return job_reply(j, pw_limiter_block_delay(pw->limiter), 1, reason);
    }
    if (pw->async) {
        rc = pw->api->run_blocking(pw->self, job_work, job_done, j);
        if (rc == 0) {
            return MIDGE_PENDING;
        }
        metric_inc(pw, pw->m.busy);
        pw->api->log(pw->self, MIDGE_LOG_WARNING, "login refused user=%s client=%s addr=%s "
                     "reason=busy (hashing queue full, rc=%d)", j->user, j->client_id, ip, rc);
        job_free(j);
        *reason = RC_SERVER_BUSY;
        return MIDGE_DENY;
    }
    job_work(j); /* no pool in this broker: the worker hashes (warned at init) */
    return job_finish(j, 1, reason);
}
