/*
 * The route table (routes.h). Two small chained hash maps for the local
 * side (filter -> count, client id -> its filters) behind one mutex, and a
 * list of remote nodes with their filters behind a read-write lock: every
 * publish reads it, only route changes write it.
 *
 * Matching is linear in the remote filters: right for the few hundred
 * filters of a small cluster; docs/cluster-redis.md says what replaces it
 * at millions of subscriptions.
 */
#include "routes.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024 /* a power of two */

/* One map entry; owned by its bucket chain. */
struct entry {
    struct entry *next;
    char *key;
    size_t count;    /* filter map: sessions of this node with the filter */
    char **filters;  /* client map: the client's filters, owned */
    size_t n;
    size_t cap;
};

/* One remote node's filters; owned by routes.nodes. */
struct node {
    char *id;
    char **filters;
    size_t n;
    size_t cap;
};

struct routes {
    pthread_mutex_t local_lock;
    struct entry *filters[BUCKETS]; /* Protected by local_lock */
    struct entry *clients[BUCKETS]; /* Protected by local_lock */

    atomic_int shared_filters;      /* distinct $share filters present on this node */

    pthread_rwlock_t remote_lock;
    struct node *nodes;             /* Protected by remote_lock */
    size_t nnodes;
    size_t nodes_cap;
};

static size_t
hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    while (*s) {
        h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    }
    return (size_t)(h & (BUCKETS - 1));
}

static struct entry *
find(struct entry **map, const char *key, int create)
{
    struct entry **b = &map[hash(key)];
    struct entry *e;

    for (e = *b; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            return e;
        }
    }
    if (!create || (e = calloc(1, sizeof(*e))) == NULL) {
        return NULL;
    }
    if ((e->key = strdup(key)) == NULL) {
        free(e);
        return NULL;
    }
    e->next = *b;
    *b = e;
    return e;
}

static void
unlink_entry(struct entry **map, struct entry *victim)
{
    struct entry **p = &map[hash(victim->key)];

    while (*p != victim) {
        p = &(*p)->next;
    }
    *p = victim->next;
    routes_list_free(victim->filters, victim->n);
    free(victim->key);
    free(victim);
}

static int
list_push(char ***v, size_t *n, size_t *cap, const char *s)
{
    char *copy;

    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        char **nv = realloc(*v, c * sizeof(*nv));
        if (nv == NULL) {
            return -1;
        }
        *v = nv;
        *cap = c;
    }
    if ((copy = strdup(s)) == NULL) {
        return -1;
    }
    (*v)[(*n)++] = copy;
    return 0;
}

static long
list_find(char **v, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static void
list_remove_at(char **v, size_t *n, size_t i)
{
    free(v[i]);
    v[i] = v[--*n];
}

void
routes_list_free(char **v, size_t n)
{
    size_t i;

    for (i = 0; v != NULL && i < n; i++) {
        free(v[i]);
    }
    free(v);
}

struct routes *
routes_new(void)
{
    struct routes *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    pthread_mutex_init(&r->local_lock, NULL);
    pthread_rwlock_init(&r->remote_lock, NULL);
    return r;
}

static void
node_free(struct node *n)
{
    routes_list_free(n->filters, n->n);
    free(n->id);
}

void
routes_free(struct routes *r)
{
    size_t i;

    if (r == NULL) {
        return;
    }
    for (i = 0; i < BUCKETS; i++) {
        while (r->filters[i] != NULL) {
            unlink_entry(r->filters, r->filters[i]);
        }
        while (r->clients[i] != NULL) {
            unlink_entry(r->clients, r->clients[i]);
        }
    }
    for (i = 0; i < r->nnodes; i++) {
        node_free(&r->nodes[i]);
    }
    free(r->nodes);
    pthread_mutex_destroy(&r->local_lock);
    pthread_rwlock_destroy(&r->remote_lock);
    free(r);
}

/* One fewer session with `filter`; 1 when it was the last. Under local_lock. */
static int
filter_release(struct routes *r, const char *filter)
{
    struct entry *f = find(r->filters, filter, 0);

    if (f == NULL) {
        return 0;
    }
    if (--f->count > 0) {
        return 0;
    }
    if (strncmp(filter, "$share/", 7) == 0) {
        atomic_fetch_sub(&r->shared_filters, 1);
    }
    unlink_entry(r->filters, f);
    return 1;
}

int
routes_local_add(struct routes *r, const char *client_id, const char *filter)
{
    struct entry *c;
    struct entry *f;
    int result = -1;

    pthread_mutex_lock(&r->local_lock);
    if ((c = find(r->clients, client_id, 1)) == NULL) {
        goto out;
    }
    if (list_find(c->filters, c->n, filter) >= 0) {
        result = 0; /* a repeated SUBSCRIBE replaces the subscription */
        goto out;
    }
    if ((f = find(r->filters, filter, 1)) == NULL) {
        goto out;
    }
    if (list_push(&c->filters, &c->n, &c->cap, filter) < 0) {
        if (f->count == 0) {
            unlink_entry(r->filters, f);
        }
        goto out;
    }
    result = f->count++ == 0;
    if (result && strncmp(filter, "$share/", 7) == 0) {
        atomic_fetch_add(&r->shared_filters, 1);
    }
out:
    pthread_mutex_unlock(&r->local_lock);
    return result;
}

int
routes_local_remove(struct routes *r, const char *client_id, const char *filter)
{
    struct entry *c;
    long i;
    int result = 0;

    pthread_mutex_lock(&r->local_lock);
    c = find(r->clients, client_id, 0);
    if (c != NULL && (i = list_find(c->filters, c->n, filter)) >= 0) {
        list_remove_at(c->filters, &c->n, (size_t)i);
        result = filter_release(r, filter);
        if (c->n == 0) {
            unlink_entry(r->clients, c);
        }
    }
    pthread_mutex_unlock(&r->local_lock);
    return result;
}

void
routes_local_session_end(struct routes *r, const char *client_id,
                         void (*gone)(void *arg, const char *filter), void *arg)
{
    struct entry *c;
    char **left = NULL;
    size_t nleft = 0;
    size_t cap = 0;
    size_t i;

    pthread_mutex_lock(&r->local_lock);
    c = find(r->clients, client_id, 0);
    for (i = 0; c != NULL && i < c->n; i++) {
        if (filter_release(r, c->filters[i]) == 1) {
            /* Reported after unlocking: gone() queues work and must not hold our lock. */
            (void)list_push(&left, &nleft, &cap, c->filters[i]);
        }
    }
    if (c != NULL) {
        unlink_entry(r->clients, c);
    }
    pthread_mutex_unlock(&r->local_lock);
    for (i = 0; i < nleft; i++) {
        gone(arg, left[i]);
    }
    routes_list_free(left, nleft);
}

char **
routes_local_snapshot(struct routes *r, size_t *n)
{
    char **v = NULL;
    size_t cap = 0;
    size_t i;
    struct entry *e;

    *n = 0;
    pthread_mutex_lock(&r->local_lock);
    for (i = 0; i < BUCKETS; i++) {
        for (e = r->filters[i]; e != NULL; e = e->next) {
            (void)list_push(&v, n, &cap, e->key);
        }
    }
    pthread_mutex_unlock(&r->local_lock);
    return v;
}

/* The node called `id`, created when asked; NULL when absent or out of memory. Under the write lock. */
static struct node *
node_get(struct routes *r, const char *id, int create)
{
    size_t i;
    struct node *n;

    for (i = 0; i < r->nnodes; i++) {
        if (strcmp(r->nodes[i].id, id) == 0) {
            return &r->nodes[i];
        }
    }
    if (!create) {
        return NULL;
    }
    if (r->nnodes == r->nodes_cap) {
        size_t c = r->nodes_cap ? r->nodes_cap * 2 : 8;
        struct node *nv = realloc(r->nodes, c * sizeof(*nv));
        if (nv == NULL) {
            return NULL;
        }
        r->nodes = nv;
        r->nodes_cap = c;
    }
    n = &r->nodes[r->nnodes];
    memset(n, 0, sizeof(*n));
    if ((n->id = strdup(id)) == NULL) {
        return NULL;
    }
    r->nnodes++;
    return n;
}

int
routes_remote_add(struct routes *r, const char *node, const char *filter)
{
    struct node *n;
    int result = -1;

    pthread_rwlock_wrlock(&r->remote_lock);
    if ((n = node_get(r, node, 1)) != NULL) {
        result = list_find(n->filters, n->n, filter) >= 0 ? 0
                                                          : list_push(&n->filters, &n->n, &n->cap,
                                                                      filter);
    }
    pthread_rwlock_unlock(&r->remote_lock);
    return result;
}

void
routes_remote_remove(struct routes *r, const char *node, const char *filter)
{
    struct node *n;
    long i;

    pthread_rwlock_wrlock(&r->remote_lock);
    if ((n = node_get(r, node, 0)) != NULL && (i = list_find(n->filters, n->n, filter)) >= 0) {
        list_remove_at(n->filters, &n->n, (size_t)i);
    }
    pthread_rwlock_unlock(&r->remote_lock);
}

int
routes_remote_set(struct routes *r, const char *node, char *const *filters, size_t count)
{
    struct node *n;
    char **v = NULL;
    size_t nv = 0;
    size_t cap = 0;
    size_t i;

    for (i = 0; i < count; i++) {
        if (list_push(&v, &nv, &cap, filters[i]) < 0) {
            routes_list_free(v, nv);
            return -1;
        }
    }
    pthread_rwlock_wrlock(&r->remote_lock);
    if ((n = node_get(r, node, 1)) == NULL) {
        pthread_rwlock_unlock(&r->remote_lock);
        routes_list_free(v, nv);
        return -1;
    }
    routes_list_free(n->filters, n->n);
    n->filters = v;
    n->n = nv;
    n->cap = cap;
    pthread_rwlock_unlock(&r->remote_lock);
    return 0;
}

/* Under the write lock. */
static void
drop_at(struct routes *r, size_t i)
{
    node_free(&r->nodes[i]);
    r->nodes[i] = r->nodes[--r->nnodes];
}

void
routes_remote_drop(struct routes *r, const char *node)
{
    size_t i;

    pthread_rwlock_wrlock(&r->remote_lock);
    for (i = 0; i < r->nnodes; i++) {
        if (strcmp(r->nodes[i].id, node) == 0) {
            drop_at(r, i);
            break;
        }
    }
    pthread_rwlock_unlock(&r->remote_lock);
}

void
routes_remote_keep(struct routes *r, char *const *alive, size_t n)
{
    size_t i = 0;
    size_t j;

    pthread_rwlock_wrlock(&r->remote_lock);
    while (i < r->nnodes) {
        for (j = 0; j < n; j++) {
            if (strcmp(alive[j], r->nodes[i].id) == 0) {
                break;
            }
        }
        if (j == n) {
            drop_at(r, i);
        } else {
            i++;
        }
    }
    pthread_rwlock_unlock(&r->remote_lock);
}

int
routes_filter_matches(const char *f, const char *t)
{
    if (strncmp(f, "$share/", 7) == 0) {
        const char *slash = strchr(f + 7, '/');
        if (slash == NULL) {
            return 0;
        }
        f = slash + 1;
    }
    /* Wildcards at the first level do not match topics starting with '$' [MQTT-4.7.2-1]. */
    if (*t == '$' && (*f == '#' || *f == '+')) {
        return 0;
    }
    for (;;) {
        if (*f == '#') {
            return 1;
        }
        if (*f == '+') {
            while (*t != 0 && *t != '/') {
                t++;
            }
            f++;
        } else {
            while (*f != 0 && *f != '/' && *f == *t) {
                f++;
                t++;
            }
            if ((*f != 0 && *f != '/') || (*t != 0 && *t != '/')) {
                return 0;
            }
        }
        if (*f == 0 || *t == 0) {
            /* "a/#" also matches "a" [MQTT-4.7.1-2]. */
            return *f == 0 ? *t == 0 : *t == 0 && strcmp(f, "/#") == 0;
        }
        f++; /* both at '/' */
        t++;
    }
}

char **
routes_match(struct routes *r, const char *topic, int all, size_t *count)
{
    char **v = NULL;
    size_t cap = 0;
    size_t i;
    size_t j;

    *count = 0;
    pthread_rwlock_rdlock(&r->remote_lock);
    for (i = 0; i < r->nnodes; i++) {
        const struct node *n = &r->nodes[i];
        int want = all;
        for (j = 0; !want && j < n->n; j++) {
            want = routes_filter_matches(n->filters[j], topic);
        }
        if (want && list_push(&v, count, &cap, n->id) < 0) {
            break;
        }
    }
    pthread_rwlock_unlock(&r->remote_lock);
    return v;
}

size_t
routes_remote_nodes(struct routes *r)
{
    size_t n;

    pthread_rwlock_rdlock(&r->remote_lock);
    n = r->nnodes;
    pthread_rwlock_unlock(&r->remote_lock);
    return n;
}

size_t
routes_remote_filters(struct routes *r)
{
    size_t n = 0;
    size_t i;

    pthread_rwlock_rdlock(&r->remote_lock);
    for (i = 0; i < r->nnodes; i++) {
        n += r->nodes[i].n;
    }
    pthread_rwlock_unlock(&r->remote_lock);
    return n;
}

int
routes_local_shared(struct routes *r)
{
    return atomic_load_explicit(&r->shared_filters, memory_order_relaxed) > 0;
}

int
routes_client_shared(struct routes *r, const char *client_id, const char *topic, char *out,
                     size_t outlen)
{
    struct entry *c;
    const char *shared = NULL;
    size_t i;
    int result = 0;

    pthread_mutex_lock(&r->local_lock);
    c = find(r->clients, client_id, 0);
    for (i = 0; c != NULL && i < c->n; i++) {
        if (!routes_filter_matches(c->filters[i], topic)) {
            continue;
        }
        if (strncmp(c->filters[i], "$share/", 7) != 0) {
            shared = NULL; /* a plain subscription gets it too: not the group's to decide */
            break;
        }
        if (shared == NULL) {
            shared = c->filters[i];
        }
    }
    if (shared != NULL && strlen(shared) < outlen) {
        memcpy(out, shared, strlen(shared) + 1);
        result = 1;
    }
    pthread_mutex_unlock(&r->local_lock);
    return result;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int
routes_shared_owner(struct routes *r, const char *me, const char *share, uint64_t h)
{
    const char *stack[64];
    const char **ids = stack;
    size_t n = 0;
    size_t i;
    int mine;

    pthread_rwlock_rdlock(&r->remote_lock);
    if (r->nnodes + 1 > sizeof(stack) / sizeof(stack[0]) &&
        (ids = malloc((r->nnodes + 1) * sizeof(*ids))) == NULL) {
        pthread_rwlock_unlock(&r->remote_lock);
        return 1; /* out of memory: deliver rather than lose */
    }
    ids[n++] = me;
    for (i = 0; i < r->nnodes; i++) {
        if (list_find(r->nodes[i].filters, r->nodes[i].n, share) >= 0) {
            ids[n++] = r->nodes[i].id;
        }
    }
    qsort(ids, n, sizeof(*ids), cmp_str);
    mine = strcmp(ids[h % n], me) == 0;
    pthread_rwlock_unlock(&r->remote_lock);
    if (ids != stack) {
        free(ids);
    }
    return mine;
}
