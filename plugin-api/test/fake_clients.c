/*
 * Fake clients: what the client accessors return, the test-side setters,
 * per-client data (api->client_data), and the requests a plugin makes about
 * clients by id (api->client_disconnect, recorded; api->client_find,
 * answered from the fake client registry by midge_test_run_finds()).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_internal.h"

/* A recorded api->client_disconnect(); `d` points into the owned copies. */
struct fake_disc {
    struct midge_test_disconnect d;
    char *instance;
    char *client_id;
    struct fake_disc *next;
};

/* A queued api->client_find(). Owned by the broker's queue until run. */
struct fake_find {
    midge_plugin *plugin;
    char *client_id;   /* NULL: a client_list request */
    void (*done)(void *arg);
    void (*cb)(void *arg, const struct midge_client_info *info);
    void *arg;
    struct fake_find *next;
};

/* ---- User property lists ---------------------------------------------------- */

/* Appends a copy of key/value. 0 or -MIDGE_ENOMEM. */
int
fake_props_add(struct fake_props *ps, const char *key, size_t key_len, const char *value,
               size_t value_len)
{
    struct fake_prop pr = {NULL, key_len, NULL, value_len};
    int rc = -MIDGE_ENOMEM;

    pr.key = fake_memdup(key, key_len);
    pr.value = fake_memdup(value, value_len);
    if (pr.key == NULL || pr.value == NULL) {
        goto out;
    }
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 4;
        struct fake_prop *nv = realloc(ps->v, cap * sizeof(*nv));
        if (nv == NULL) {
            goto out;
        }
        ps->v = nv;
        ps->cap = cap;
    }
    ps->v[ps->n++] = pr;
    pr.key = pr.value = NULL;
    rc = 0;
out:
    free(pr.key);
    free(pr.value);
    return rc;
}

/* Appends copies of every property of src to dst. 0 or -MIDGE_ENOMEM. */
int
fake_props_copy(struct fake_props *dst, const struct fake_props *src)
{
    size_t i;
    int rc = 0;

    for (i = 0; i < src->n && rc == 0; i++) {
        rc = fake_props_add(dst, src->v[i].key, src->v[i].key_len, src->v[i].value,
                            src->v[i].value_len);
    }
    return rc;
}

/* Frees the entries. */
void
fake_props_free(struct fake_props *ps)
{
    size_t i;

    for (i = 0; i < ps->n; i++) {
        free(ps->v[i].key);
        free(ps->v[i].value);
    }
    free(ps->v);
    ps->v = NULL;
    ps->n = ps->cap = 0;
}

/* The iteration of api->*_user_property_next(). */
int
fake_props_next(const struct fake_props *ps, size_t *pos, const char **key, size_t *key_len,
                const char **value, size_t *value_len)
{
    const struct fake_prop *pr;

    if (pos == NULL || *pos >= ps->n) {
        return 0;
    }
    pr = &ps->v[(*pos)++];
    if (key != NULL) {
        *key = pr->key;
    }
    if (key_len != NULL) {
        *key_len = pr->key_len;
    }
    if (value != NULL) {
        *value = pr->value;
    }
    if (value_len != NULL) {
        *value_len = pr->value_len;
    }
    return 1;
}

/* ---- Client accessors -------------------------------------------------------- */

/*
 * 1 when c is not NULL. Records a plugin bug when the calling thread is not
 * running a hook about c (the accessor still answers, as the broker's would
 * in a release build).
 */
int
fake_client_check(const midge_client *c, const char *fn)
{
    if (c == NULL) {
        return 0;
    }
    if (atomic_load(&((midge_client *)c)->hook_thread) != fake_this_thread()) {
        fake_bug(c->fb, NULL, "api->%s() for client '%s' called outside a hook about that client "
            "or from another thread (copy what you need during the hook)", fn, c->id);
    }
    return 1;
}

static const char *
api_client_id(const midge_client *c)
{
    return fake_client_check(c, "client_id") ? c->id : NULL;
}

static const char *
api_client_username(const midge_client *c)
{
    return fake_client_check(c, "client_username") ? c->username : NULL;
}

static int
api_client_protocol(const midge_client *c)
{
    return fake_client_check(c, "client_protocol") ? c->protocol : 0;
}

static const char *
api_client_address(const midge_client *c)
{
    return fake_client_check(c, "client_address") ? c->address : NULL;
}

static int
api_client_listener_port(const midge_client *c)
{
    return fake_client_check(c, "client_listener_port") ? c->port : 0;
}

static int
api_client_clean_start(const midge_client *c)
{
    return fake_client_check(c, "client_clean_start") ? c->clean_start : 0;
}

static int
api_client_keepalive(const midge_client *c)
{
    return fake_client_check(c, "client_keepalive") ? c->keepalive : 0;
}

static const char *
api_client_listener_name(const midge_client *c)
{
    return fake_client_check(c, "client_listener_name") ? c->listener_name : NULL;
}

static const char *
api_client_peer_ip(const midge_client *c)
{
    return fake_client_check(c, "client_peer_ip") ? c->peer_ip : NULL;
}

static int
api_client_peer_port(const midge_client *c)
{
    return fake_client_check(c, "client_peer_port") ? c->peer_port : 0;
}

static int
api_client_user_property_next(const midge_client *c, size_t *pos, const char **key,
                              size_t *key_len, const char **value, size_t *value_len)
{
    if (!fake_client_check(c, "client_user_property_next")) {
        return 0;
    }
    return fake_props_next(&c->props, pos, key, key_len, value, value_len);
}

static int
api_client_tls(const midge_client *c, struct midge_tls_info *info)
{
    struct midge_tls_info full;
    size_t n;

    if (!fake_client_check(c, "client_tls") || info == NULL) {
        return -MIDGE_EINVAL;
    }
    if (!c->has_tls) {
        return -MIDGE_ENOENT;
    }
    if (info->size < sizeof(uint32_t)) {
        fake_bug(c->fb, NULL, "api->client_tls() with info->size %u: set it to "
                 "sizeof(struct midge_tls_info)", (unsigned)info->size);
        return -MIDGE_EINVAL;
    }
    /* Fill only the fields the plugin's struct has (it may be older than ours). */
    full.size = sizeof(full);
    full.version = c->tls_version;
    full.cipher = c->tls_cipher;
    full.subject = c->tls_subject;
    full.san = c->tls_san;
    full.verified = c->tls_verified;
    full.issuer = c->tls_issuer;
    full.sans = (const char *const *)c->tls_sans;
    full.san_count = c->tls_san_count;
    n = info->size < sizeof(full) ? info->size : sizeof(full);
    memcpy((char *)info + sizeof(uint32_t), (const char *)&full + sizeof(uint32_t),
           n - sizeof(uint32_t));
    return 0;
}

/* The entry of instance p on c, or NULL. */
static struct client_data *
data_find(const midge_client *c, const midge_plugin *p)
{
    struct client_data *d;

    for (d = c->data; d != NULL && d->plugin != p; d = d->next) {
    }
    return d;
}

/* The entry of instance p on c, made when missing; NULL when out of memory. */
static struct client_data *
data_entry(midge_client *c, midge_plugin *p)
{
    struct client_data *d = data_find(c, p);

    if (d == NULL && (d = calloc(1, sizeof(*d))) != NULL) {
        d->plugin = p;
        d->next = c->data;
        c->data = d;
    }
    return d;
}

static void *
api_client_data(midge_plugin *self, const midge_client *c)
{
    const struct client_data *d;

    if (self == NULL || !fake_client_check(c, "client_data")) {
        return NULL;
    }
    d = data_find(c, self);
    return d != NULL ? d->data : NULL;
}

static int
api_client_data_set(midge_plugin *self, midge_client *c, void *data, void (*free_fn)(void *data))
{
    struct client_data *d;
    void *old = NULL;
    void (*old_free)(void *) = NULL;

    if (self == NULL || !fake_client_check(c, "client_data_set")) {
        return -MIDGE_EINVAL;
    }
    d = data_find(c, self);
    if (d == NULL && data == NULL) {
        return 0;
    }
    if (d == NULL) {
        if ((d = data_entry(c, self)) == NULL) {
            return -MIDGE_ENOMEM;
        }
    } else if (d->data != data) {
        /* Setting the same pointer again must not free what the plugin still uses. */
        old = d->data;
        old_free = d->free_fn;
    }
    d->data = data;
    d->free_fn = free_fn;
    if (old != NULL && old_free != NULL) {
        old_free(old);
    }
    return 0;
}

static int
api_client_acl_standing(midge_plugin *self, midge_client *c, int action, int verdict)
{
    struct client_data *d;

    if (self == NULL || !fake_client_check(c, "client_acl_standing")) {
        return -MIDGE_EINVAL;
    }
    if (action < MIDGE_ACL_PUBLISH || action > MIDGE_ACL_WILL ||
        (verdict != MIDGE_ALLOW && verdict != MIDGE_DEFER && verdict != MIDGE_PENDING)) {
        return -MIDGE_EINVAL;
    }
    if (verdict == MIDGE_PENDING && data_find(c, self) == NULL) {
        return 0;
    }
    if ((d = data_entry(c, self)) == NULL) {
        return -MIDGE_ENOMEM;
    }
    d->standing[action] = verdict == MIDGE_PENDING ? 0 : verdict + 1;
    return 0;
}

/*
 * Frees instance p's data on c (every instance's when p is NULL) with its
 * free_fn: the connection ended, the instance unloads, or the client is freed.
 */
void
fake_client_data_release(midge_client *c, const midge_plugin *p)
{
    struct client_data **pp = &c->data;

    while (*pp != NULL) {
        struct client_data *d = *pp;
        if (p != NULL && d->plugin != p) {
            pp = &d->next;
            continue;
        }
        *pp = d->next;
        if (d->free_fn != NULL && d->data != NULL) {
            d->free_fn(d->data);
        }
        free(d);
    }
}

static int
api_client_disconnect(midge_plugin *self, const char *client_id, uint8_t reason)
{
    midge_test_broker *fb;
    struct fake_disc *r = NULL;
    int rc = -MIDGE_EINVAL;

    if (self == NULL || client_id == NULL) {
        goto out;
    }
    fb = self->fb;
    rc = -MIDGE_ENOMEM;
    if ((r = calloc(1, sizeof(*r))) == NULL) {
        goto out;
    }
    r->instance = strdup(self->name != NULL ? self->name : "?");
    r->client_id = strdup(client_id);
    if (r->instance == NULL || r->client_id == NULL) {
        goto out;
    }
    r->d.instance = r->instance;
    r->d.client_id = r->client_id;
    r->d.reason = reason;
    pthread_mutex_lock(&fb->lock);
    if (fb->disc_tail != NULL) {
        fb->disc_tail->next = r;
    } else {
        fb->disc_head = r;
    }
    fb->disc_tail = r;
    fb->disc_n++;
    pthread_cond_broadcast(&fb->cond);
    pthread_mutex_unlock(&fb->lock);
    r = NULL;
    rc = 0;
out:
    if (r != NULL) {
        free(r->instance);
        free(r->client_id);
        free(r);
    }
    return rc;
}

static int
api_client_find(midge_plugin *self, const char *client_id,
                void (*cb)(void *arg, const struct midge_client_info *info), void *arg)
{
    midge_test_broker *fb;
    struct fake_find *r = NULL;
    int rc = -MIDGE_EINVAL;

    if (self == NULL || client_id == NULL || cb == NULL) {
        goto out;
    }
    fb = self->fb;
    rc = -MIDGE_ENOMEM;
    if ((r = calloc(1, sizeof(*r))) == NULL || (r->client_id = strdup(client_id)) == NULL) {
        free(r);
        goto out;
    }
    r->plugin = self;
    r->cb = cb;
    r->arg = arg;
    pthread_mutex_lock(&fb->lock);
    if (fb->find_tail != NULL) {
        fb->find_tail->next = r;
    } else {
        fb->find_head = r;
    }
    fb->find_tail = r;
    pthread_cond_broadcast(&fb->cond);
    pthread_mutex_unlock(&fb->lock);
    rc = 0;
out:
    return rc;
}

static int
api_client_list(midge_plugin *self, void (*cb)(void *arg, const struct midge_client_info *info),
                void (*done)(void *arg), void *arg)
{
    midge_test_broker *fb;
    struct fake_find *r;

    if (self == NULL || cb == NULL) {
        return -MIDGE_EINVAL;
    }
    fb = self->fb;
    if (fake_in_blocking_worker()) {
        fake_bug(fb, self, "api->client_list() called from a run_blocking work function (it "
                 "has no loop for done)");
        return -MIDGE_ESTATE;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL) {
        return -MIDGE_ENOMEM;
    }
    r->plugin = self;
    r->cb = cb;
    r->done = done;
    r->arg = arg;
    pthread_mutex_lock(&fb->lock);
    if (fb->find_tail != NULL) {
        fb->find_tail->next = r;
    } else {
        fb->find_head = r;
    }
    fb->find_tail = r;
    pthread_mutex_unlock(&fb->lock);
    return 0;
}

/* The entries of the API table that this file implements. */
void
fake_clients_api_fill(struct midge_api *a)
{
    a->client_list = api_client_list;
    a->client_id = api_client_id;
    a->client_username = api_client_username;
    a->client_protocol = api_client_protocol;
    a->client_address = api_client_address;
    a->client_listener_port = api_client_listener_port;
    a->client_clean_start = api_client_clean_start;
    a->client_keepalive = api_client_keepalive;
    a->client_listener_name = api_client_listener_name;
    a->client_peer_ip = api_client_peer_ip;
    a->client_peer_port = api_client_peer_port;
    a->client_user_property_next = api_client_user_property_next;
    a->client_tls = api_client_tls;
    a->client_data = api_client_data;
    a->client_data_set = api_client_data_set;
    a->client_acl_standing = api_client_acl_standing;
    a->client_disconnect = api_client_disconnect;
    a->client_find = api_client_find;
}

/* ---- Clients -------------------------------------------------------------- */

/*
 * Splits "ip:port" ("[v6]:port" too) into a new IP string and the port.
 * Without a port the whole text is the IP and the port 0. NULL when out of memory.
 */
static char *
split_address(const char *address, int *port)
{
    const char *colon = strrchr(address, ':');
    const char *ip = address;
    size_t n;

    *port = 0;
    if (address[0] == '[' && strchr(address, ']') != NULL) {
        ip = address + 1;
        n = (size_t)(strchr(address, ']') - ip);
        if (ip[n + 1] == ':') {
            *port = atoi(ip + n + 2);
        }
    } else if (colon != NULL && strchr(address, ':') == colon) {
        n = (size_t)(colon - address);
        *port = atoi(colon + 1);
    } else {
        n = strlen(address);
    }
    return fake_memdup(ip, n);
}

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
    c->peer_ip = strdup("127.0.0.1");
    c->listener_name = strdup("0.0.0.0:1883");
    if (c->id == NULL || (username != NULL && c->username == NULL) || c->address == NULL ||
        c->peer_ip == NULL || c->listener_name == NULL) {
        free(c->id);
        free(c->username);
        free(c->address);
        free(c->peer_ip);
        free(c->listener_name);
        free(c);
        c = NULL;
        goto out;
    }
    c->peer_port = 50000;
    c->protocol = 5;
    c->port = 1883;
    c->clean_start = 1;
    c->keepalive = 60;
    c->connected = 1;
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

/* Sets the peer address "ip:port" (copied), and so the peer IP and port; see plugin_test.h. */
int
midge_test_client_set_address(midge_client *c, const char *address)
{
    char *copy;
    char *ip;
    int port;

    if (address == NULL) {
        return -MIDGE_EINVAL;
    }
    copy = strdup(address);
    ip = split_address(address, &port);
    if (copy == NULL || ip == NULL) {
        free(copy);
        free(ip);
        return -MIDGE_ENOMEM;
    }
    free(c->address);
    c->address = copy;
    free(c->peer_ip);
    c->peer_ip = ip;
    c->peer_port = port;
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

/* Sets the listener name; see plugin_test.h. */
int
midge_test_client_set_listener_name(midge_client *c, const char *name)
{
    char *copy;

    if (name == NULL) {
        return -MIDGE_EINVAL;
    }
    if ((copy = strdup(name)) == NULL) {
        return -MIDGE_ENOMEM;
    }
    free(c->listener_name);
    c->listener_name = copy;
    return 0;
}

/* Sets the CONNECT password for enhanced_auth requests; see plugin_test.h. */
int
midge_test_client_set_password(midge_client *c, const void *password, size_t len)
{
    uint8_t *copy = NULL;

    if (password == NULL && len > 0) {
        return -MIDGE_EINVAL;
    }
    if (password != NULL && (copy = fake_memdup(password, len)) == NULL) {
        return -MIDGE_ENOMEM;
    }
    free(c->password);
    c->password = copy;
    c->password_len = copy != NULL ? len : 0;
    return 0;
}

/* Adds a CONNECT user property; see plugin_test.h. */
int
midge_test_client_add_user_property(midge_client *c, const char *key, const char *value)
{
    if (key == NULL || value == NULL) {
        return -MIDGE_EINVAL;
    }
    return fake_props_add(&c->props, key, strlen(key), value, strlen(value));
}

/* Frees the TLS strings and marks the connection plain TCP. */
static void
tls_clear(midge_client *c)
{
    free(c->tls_version);
    free(c->tls_cipher);
    free(c->tls_subject);
    free(c->tls_san);
    free(c->tls_issuer);
    while (c->tls_san_count > 0) {
        free(c->tls_sans[--c->tls_san_count]);
    }
    free(c->tls_sans);
    c->tls_sans = NULL;
    c->tls_issuer = NULL;
    c->tls_version = c->tls_cipher = c->tls_subject = c->tls_san = NULL;
    c->tls_verified = 0;
    c->has_tls = 0;
}

/* A copy of s, NULL staying NULL; sets *oom when the copy fails. */
static char *
dup_or_null(const char *s, int *oom)
{
    char *d = NULL;

    if (s != NULL && (d = strdup(s)) == NULL) {
        *oom = 1;
    }
    return d;
}

/* Sets (copies) or clears the TLS details; see plugin_test.h. */
int
midge_test_client_set_tls(midge_client *c, const struct midge_tls_info *info)
{
    int oom = 0;

    tls_clear(c);
    if (info == NULL) {
        return 0;
    }
    c->tls_version = dup_or_null(info->version, &oom);
    c->tls_cipher = dup_or_null(info->cipher, &oom);
    c->tls_subject = dup_or_null(info->subject, &oom);
    c->tls_san = dup_or_null(info->san, &oom);
    c->tls_verified = info->verified ? 1 : 0;
    if (MIDGE_HAS_FIELD(struct midge_tls_info, info, san_count)) {
        uint32_t i;
        c->tls_issuer = dup_or_null(info->issuer, &oom);
        if (info->san_count > 0 && info->sans != NULL) {
            c->tls_sans = calloc(info->san_count, sizeof(*c->tls_sans));
            if (c->tls_sans == NULL) {
                oom = 1;
            }
            for (i = 0; c->tls_sans != NULL && i < info->san_count; i++) {
                c->tls_sans[c->tls_san_count++] = dup_or_null(info->sans[i], &oom);
            }
        }
    }
    if (oom) {
        tls_clear(c);
        return -MIDGE_ENOMEM;
    }
    c->has_tls = 1;
    return 0;
}

/* Sets what client_find reports about the session; see plugin_test.h. */
void
midge_test_client_set_session(midge_client *c, int connected, uint32_t session_expiry,
                              uint32_t subscriptions, uint32_t queued, uint32_t inflight)
{
    pthread_mutex_lock(&c->fb->lock);
    c->connected = connected ? 1 : 0;
    c->session_expiry = session_expiry;
    c->subscriptions = subscriptions;
    c->queued = queued;
    c->inflight = inflight;
    pthread_mutex_unlock(&c->fb->lock);
}

/* What instance p stored on c with api->client_data_set(); see plugin_test.h. */
void *
midge_test_client_data(const midge_plugin *p, const midge_client *c)
{
    const struct client_data *d = data_find(c, p);

    return d != NULL ? d->data : NULL;
}

/* The standing ACL answer of p for c and `action`; see plugin_test.h. */
int
midge_test_client_acl_standing(const midge_plugin *p, const midge_client *c, int action)
{
    const struct client_data *d = data_find(c, p);

    if (d == NULL || action < 0 || action >= 8 || d->standing[action] == 0) {
        return MIDGE_PENDING;
    }
    return d->standing[action] - 1;
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
    fake_client_data_release(c, NULL);
    fake_props_free(&c->props);
    tls_clear(c);
    free(c->id);
    free(c->username);
    free(c->address);
    free(c->peer_ip);
    free(c->listener_name);
    free(c->password);
    free(c);
}

/* ---- Requests about clients by id ------------------------------------------ */

/* Number of api->client_disconnect() requests; see plugin_test.h. */
size_t
midge_test_disconnect_count(midge_test_broker *fb)
{
    size_t n;

    pthread_mutex_lock(&fb->lock);
    n = fb->disc_n;
    pthread_mutex_unlock(&fb->lock);
    return n;
}

/* Request i; see plugin_test.h. */
const struct midge_test_disconnect *
midge_test_disconnect_request(midge_test_broker *fb, size_t i)
{
    const struct fake_disc *r;

    pthread_mutex_lock(&fb->lock);
    for (r = fb->disc_head; r != NULL && i > 0; r = r->next, i--) {
    }
    pthread_mutex_unlock(&fb->lock);
    return r != NULL ? &r->d : NULL;
}

/* Forgets the requests; see plugin_test.h. */
void
midge_test_disconnect_clear(midge_test_broker *fb)
{
    struct fake_disc *r;

    pthread_mutex_lock(&fb->lock);
    r = fb->disc_head;
    fb->disc_head = fb->disc_tail = NULL;
    fb->disc_n = 0;
    pthread_mutex_unlock(&fb->lock);
    while (r != NULL) {
        struct fake_disc *next = r->next;
        free(r->instance);
        free(r->client_id);
        free(r);
        r = next;
    }
}

/* Frees a string copy made for a callback (scribbled, like hook arguments). */
static void
borrowed_str_free(char *s)
{
    fake_borrowed_free(s, s != NULL ? strlen(s) : 0);
}

/* A client_info with its own (borrowed-style) string copies. */
struct info_copy {
    struct midge_client_info info;
    char *id;
    char *user;
    char *addr;
};

/* Fills *x from c, copying the strings; with fb->lock held. Sets *oom on failure. */
static void
info_fill_locked(const midge_client *c, struct info_copy *x, int *oom)
{
    memset(x, 0, sizeof(*x));
    x->info.size = sizeof(x->info);
    x->info.client_id = x->id = fake_borrowed_copy(c->id, strlen(c->id), oom);
    if (c->connected) {
        if (c->username != NULL) {
            x->info.username = x->user = fake_borrowed_copy(c->username, strlen(c->username),
                                                            oom);
        }
        x->info.address = x->addr = fake_borrowed_copy(c->address, strlen(c->address), oom);
        x->info.listener_port = c->port;
    }
    x->info.connected = c->connected;
    x->info.protocol = c->protocol;
    x->info.keepalive = c->keepalive;
    x->info.clean_start = c->clean_start;
    x->info.session_expiry = c->session_expiry;
    x->info.subscriptions = c->subscriptions;
    x->info.queued = c->queued;
    x->info.inflight = c->inflight;
}

static void
info_free(struct info_copy *x)
{
    borrowed_str_free(x->id);
    borrowed_str_free(x->user);
    borrowed_str_free(x->addr);
}

/* Answers the queued client_find and client_list requests; see plugin_test.h. */
size_t
midge_test_run_finds(midge_test_broker *fb)
{
    size_t n = 0;

    for (;;) {
        struct fake_find *r;
        struct info_copy *xs = NULL;
        const midge_client *c;
        size_t nx = 0;
        size_t i;
        int oom = 0;

        pthread_mutex_lock(&fb->lock);
        r = fb->find_head;
        if (r != NULL) {
            fb->find_head = r->next;
            if (fb->find_head == NULL) {
                fb->find_tail = NULL;
            }
            /* Copies made under the lock: the callbacks see borrowed strings. */
            for (c = fb->clients; c != NULL; c = c->next) {
                nx += r->client_id == NULL || strcmp(c->id, r->client_id) == 0;
            }
            xs = calloc(nx + 1, sizeof(*xs));
            oom = xs == NULL;
            nx = 0;
            for (c = fb->clients; xs != NULL && c != NULL; c = c->next) {
                if (r->client_id == NULL || strcmp(c->id, r->client_id) == 0) {
                    info_fill_locked(c, &xs[nx++], &oom);
                }
            }
        }
        pthread_mutex_unlock(&fb->lock);
        if (r == NULL) {
            break;
        }
        /* An instance unloaded since asking gets no callback, as in the broker. */
        if (r->plugin->loaded && !oom) {
            if (r->client_id != NULL) {
                r->cb(r->arg, nx > 0 ? &xs[0].info : NULL);
            } else {
                for (i = 0; i < nx; i++) {
                    r->cb(r->arg, &xs[i].info);
                }
                if (r->done != NULL) {
                    r->done(r->arg);
                }
            }
            n++;
        }
        for (i = 0; i < nx; i++) {
            info_free(&xs[i]);
        }
        free(xs);
        free(r->client_id);
        free(r);
    }
    return n;
}

/* Frees the request lists (with the broker). */
void
fake_clients_free(midge_test_broker *fb)
{
    midge_test_disconnect_clear(fb);
    while (fb->find_head != NULL) {
        struct fake_find *r = fb->find_head;
        fb->find_head = r->next;
        free(r->client_id);
        free(r);
    }
    fb->find_tail = NULL;
}
