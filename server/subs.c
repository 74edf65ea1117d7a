/*
 * Subscription trie. One node per topic level; '+' and '#' are separate
 * children so matching never scans siblings. Named children are kept sorted
 * for binary search. Shared under a pthread rwlock (see subs.h).
 */
#include "subs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "topic.h"

struct sub_entry {
    struct subscriber *s; /* one reference */
    uint8_t opts;
    uint32_t sub_id;
};

/* A $share group at one filter: its members and the round-robin cursor. */
struct share_group {
    char *name;
    struct sub_entry *members;
    size_t n;
    size_t cap;
    atomic_uint rr; /* advanced by publishers under the read lock */
};

/* A trie node. Owned by its parent (the root by the store); freed when empty. */
struct node {
    struct node *parent;
    char *level;
    size_t level_len;
    struct node **kids; /* sorted by (length, bytes) */
    size_t nkids;
    size_t kcap;
    struct node *plus;
    struct node *hash;
    struct sub_entry *subs;
    size_t nsubs;
    size_t subcap;
    struct share_group *groups;
    size_t ngroups;
};

/* The one store. `lock` protects every node; `count` is read without it. */
static struct {
    pthread_rwlock_t lock;
    struct node *root;
    atomic_size_t count;
} store;

/* Creates a routing handle with one reference (the caller's). */
struct subscriber *
subscriber_new(uint64_t uid, unsigned worker, const char *client_id, size_t len)
{
    struct subscriber *s = calloc(1, sizeof(*s) + len + 1);

    if (s == NULL) {
        return NULL;
    }
    memcpy(s->client_id, client_id, len);
    atomic_init(&s->refs, 1);
    atomic_init(&s->online, 0);
    atomic_init(&s->persistent, 0);
    s->uid = uid;
    s->worker = worker;
    return s;
}

/* Drops one reference; frees with the last. [any thread] */
void
subscriber_unref(struct subscriber *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) {
        free(s);
    }
}

static struct node *
node_new(struct node *parent, const char *level, size_t len)
{
    struct node *n = calloc(1, sizeof(*n));

    if (n == NULL) {
        return NULL;
    }
    n->parent = parent;
    n->level = malloc(len + 1);
    if (n->level == NULL) {
        free(n);
        return NULL;
    }
    memcpy(n->level, level, len);
    n->level[len] = 0;
    n->level_len = len;
    return n;
}

static int
level_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen) {
        return alen < blen ? -1 : 1;
    }
    return memcmp(a, b, alen);
}

/* Binary search: index of the kid named level, or where it would go (*found = 0). */
static size_t
kid_find(const struct node *n, const char *level, size_t len, int *found)
{
    size_t lo = 0;
    size_t hi = n->nkids;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = level_cmp(n->kids[mid]->level, n->kids[mid]->level_len, level, len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = 0;
    return lo;
}

static struct node *
kid_get(struct node *n, const char *level, size_t len, int create)
{
    int found;
    size_t i;
    struct node *k;

    if (len == 1 && level[0] == '+') {
        if (n->plus == NULL && create) {
            n->plus = node_new(n, level, len);
        }
        return n->plus;
    }
    if (len == 1 && level[0] == '#') {
        if (n->hash == NULL && create) {
            n->hash = node_new(n, level, len);
        }
        return n->hash;
    }
    i = kid_find(n, level, len, &found);
    if (found) {
        return n->kids[i];
    }
    if (!create) {
        return NULL;
    }
    if (n->nkids == n->kcap) {
        size_t cap = n->kcap ? n->kcap * 2 : 4;
        struct node **v = realloc(n->kids, cap * sizeof(*v));
        if (v == NULL) {
            return NULL;
        }
        n->kids = v;
        n->kcap = cap;
    }
    k = node_new(n, level, len);
    if (k == NULL) {
        return NULL;
    }
    memmove(n->kids + i + 1, n->kids + i, (n->nkids - i) * sizeof(*n->kids));
    n->kids[i] = k;
    n->nkids++;
    return k;
}

/* Walks (or builds) the path of a filter. */
static struct node *
node_path(const char *f, size_t len, int create)
{
    struct node *n = store.root;
    const char *p = f;
    const char *end = f + len;

    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *lend = slash ? slash : end;
        n = kid_get(n, p, (size_t)(lend - p), create);
        if (n == NULL || slash == NULL) {
            return n;
        }
        p = slash + 1;
    }
}

static int
node_empty(const struct node *n)
{
    return n->nkids == 0 && n->plus == NULL && n->hash == NULL && n->nsubs == 0 &&
           n->ngroups == 0;
}

static void
node_free(struct node *n)
{
    free(n->kids);
    free(n->subs);
    free(n->groups);
    free(n->level);
    free(n);
}

/* Frees empty nodes from n up towards the root. */
static void
prune(struct node *n)
{
    while (n != store.root && node_empty(n)) {
        struct node *p = n->parent;
        if (p->plus == n) {
            p->plus = NULL;
        } else if (p->hash == n) {
            p->hash = NULL;
        } else {
            int found;
            size_t i = kid_find(p, n->level, n->level_len, &found);
            if (found) {
                memmove(p->kids + i, p->kids + i + 1, (p->nkids - i - 1) * sizeof(*p->kids));
                p->nkids--;
            }
        }
        node_free(n);
        n = p;
    }
}

/* Adds or replaces s's entry in an entry array. Returns 1 replaced, 0 added, -1 OOM. */
static int
entries_put(struct sub_entry **v, size_t *n, size_t *cap, struct subscriber *s, uint8_t opts,
            uint32_t sub_id)
{
    size_t i;

    for (i = 0; i < *n; i++) {
        if ((*v)[i].s == s) {
            (*v)[i].opts = opts;
            (*v)[i].sub_id = sub_id;
            return 1;
        }
    }
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 2;
        struct sub_entry *nv = realloc(*v, c * sizeof(*nv));
        if (nv == NULL) {
            return -1;
        }
        *v = nv;
        *cap = c;
    }
    atomic_fetch_add(&s->refs, 1);
    (*v)[*n].s = s;
    (*v)[*n].opts = opts;
    (*v)[*n].sub_id = sub_id;
    (*n)++;
    return 0;
}

static int
entries_del(struct sub_entry *v, size_t *n, struct subscriber *s)
{
    size_t i;

    for (i = 0; i < *n; i++) {
        if (v[i].s == s) {
            subscriber_unref(s);
            v[i] = v[*n - 1];
            (*n)--;
            return 1;
        }
    }
    return 0;
}

/* Creates the store. */
int
subs_init(void)
{
    if (pthread_rwlock_init(&store.lock, NULL) != 0) {
        return -1;
    }
    store.root = node_new(NULL, "", 0);
    atomic_init(&store.count, 0);
    return store.root ? 0 : -1;
}

static void
node_free_all(struct node *n)
{
    size_t i;
    size_t j;

    if (n == NULL) {
        return;
    }
    for (i = 0; i < n->nkids; i++) {
        node_free_all(n->kids[i]);
    }
    node_free_all(n->plus);
    node_free_all(n->hash);
    for (i = 0; i < n->nsubs; i++) {
        subscriber_unref(n->subs[i].s);
    }
    for (i = 0; i < n->ngroups; i++) {
        for (j = 0; j < n->groups[i].n; j++) {
            subscriber_unref(n->groups[i].members[j].s);
        }
        free(n->groups[i].members);
        free(n->groups[i].name);
    }
    node_free(n);
}

/* Frees the store at shutdown. */
void
subs_free(void)
{
    node_free_all(store.root);
    store.root = NULL;
    pthread_rwlock_destroy(&store.lock);
}

static struct share_group *
group_get(struct node *n, const char *name, size_t len, int create)
{
    size_t i;
    struct share_group *g;

    for (i = 0; i < n->ngroups; i++) {
        if (strlen(n->groups[i].name) == len && memcmp(n->groups[i].name, name, len) == 0) {
            return &n->groups[i];
        }
    }
    if (!create) {
        return NULL;
    }
    g = realloc(n->groups, (n->ngroups + 1) * sizeof(*g));
    if (g == NULL) {
        return NULL;
    }
    n->groups = g;
    g = &n->groups[n->ngroups];
    memset(g, 0, sizeof(*g));
    g->name = strndup(name, len);
    if (g->name == NULL) {
        return NULL;
    }
    atomic_init(&g->rr, 0);
    n->ngroups++;
    return g;
}

/* Adds or replaces a subscription; see subs.h. [any thread] */
int
subs_add(const char *filter, size_t len, struct subscriber *s, uint8_t opts, uint32_t sub_id,
         int *existed)
{
    const char *group = NULL;
    const char *inner = filter;
    size_t glen = 0;
    size_t ilen = len;
    struct node *n;
    int r = -1;

    *existed = 0;
    topic_share_split(filter, len, &group, &glen, &inner, &ilen);
    pthread_rwlock_wrlock(&store.lock);
    n = node_path(inner, ilen, 1);
    if (n == NULL) {
        goto out;
    }
    if (group != NULL) {
        struct share_group *g = group_get(n, group, glen, 1);
        if (g == NULL) {
            goto out;
        }
        r = entries_put(&g->members, &g->n, &g->cap, s, opts, sub_id);
    } else {
        r = entries_put(&n->subs, &n->nsubs, &n->subcap, s, opts, sub_id);
    }
    if (r == 0) {
        atomic_fetch_add(&store.count, 1);
    }
out:
    if (r == 1) {
        *existed = 1;
    }
    if (r < 0 && n != NULL) {
        prune(n);
    }
    pthread_rwlock_unlock(&store.lock);
    return r < 0 ? -1 : 0;
}

/* Removes a subscription; returns 1 if it existed. [any thread] */
int
subs_remove(const char *filter, size_t len, struct subscriber *s)
{
    const char *group = NULL;
    const char *inner = filter;
    size_t glen = 0;
    size_t ilen = len;
    struct node *n;
    int r = 0;

    topic_share_split(filter, len, &group, &glen, &inner, &ilen);
    pthread_rwlock_wrlock(&store.lock);
    n = node_path(inner, ilen, 0);
    if (n == NULL) {
        goto out;
    }
    if (group != NULL) {
        struct share_group *g = group_get(n, group, glen, 0);
        if (g != NULL) {
            r = entries_del(g->members, &g->n, s);
            if (g->n == 0) {
                free(g->members);
                free(g->name);
                *g = n->groups[n->ngroups - 1];
                n->ngroups--;
            }
        }
    } else {
        r = entries_del(n->subs, &n->nsubs, s);
    }
    if (r) {
        atomic_fetch_sub(&store.count, 1);
    }
    prune(n);
out:
    pthread_rwlock_unlock(&store.lock);
    return r;
}

static int
push(struct sub_matches *out, const struct sub_entry *e, int shared)
{
    struct sub_match *m;

    if (out->n == out->cap) {
        size_t c = out->cap ? out->cap * 2 : 16;
        struct sub_match *v = realloc(out->v, c * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        out->v = v;
        out->cap = c;
    }
    m = &out->v[out->n++];
    m->ps = NULL;
    if (atomic_load_explicit(&e->s->persistent, memory_order_relaxed)) {
        /* Kept past the lock: the router names the session in persistence events. */
        atomic_fetch_add_explicit(&e->s->refs, 1, memory_order_relaxed);
        m->ps = e->s;
    }
    m->uid = e->s->uid;
    m->worker = e->s->worker;
    m->opts = e->opts;
    m->shared = (uint8_t)shared;
    m->sub_id = e->sub_id;
    return 0;
}

/* Adds a node's direct subscribers and one member of each of its share groups. */
static int
collect(struct node *n, struct sub_matches *out)
{
    size_t i;

    for (i = 0; i < n->nsubs; i++) {
        if (push(out, &n->subs[i], 0) < 0) {
            return -1;
        }
    }
    for (i = 0; i < n->ngroups; i++) {
        struct share_group *g = &n->groups[i];
        unsigned start = atomic_fetch_add_explicit(&g->rr, 1, memory_order_relaxed);
        size_t k;
        size_t pick = start % g->n;
        for (k = 0; k < g->n; k++) {
            size_t j = (start + k) % g->n;
            if (atomic_load_explicit(&g->members[j].s->online, memory_order_relaxed)) {
                pick = j;
                break;
            }
        }
        if (push(out, &g->members[pick], 1) < 0) {
            return -1;
        }
    }
    return 0;
}

static int match_level(struct node *n, const char *lvl, const char *end, int first,
                       struct sub_matches *out);

/* Entered node n; `next` is the next level of the topic or NULL at its end. */
static int
descend(struct node *n, const char *next, const char *end, struct sub_matches *out)
{
    if (next == NULL) {
        if (collect(n, out) < 0) {
            return -1;
        }
        /* "sport/#" also matches "sport" [MQTT-4.7.1-2]. */
        return n->hash ? collect(n->hash, out) : 0;
    }
    return match_level(n, next, end, 0, out);
}

static int
match_level(struct node *n, const char *lvl, const char *end, int first, struct sub_matches *out)
{
    const char *slash = memchr(lvl, '/', (size_t)(end - lvl));
    const char *lend = slash ? slash : end;
    const char *next = slash ? slash + 1 : NULL;
    struct node *k;
    int found;
    size_t i;

    /* Topics starting with '$' are not matched by a leading wildcard [MQTT-4.7.2-1]. */
    if (!(first && lvl < end && *lvl == '$')) {
        if (n->hash && collect(n->hash, out) < 0) {
            return -1;
        }
        if (n->plus && descend(n->plus, next, end, out) < 0) {
            return -1;
        }
    }
    if (n->nkids == 0) {
        return 0;
    }
    i = kid_find(n, lvl, (size_t)(lend - lvl), &found);
    if (!found) {
        return 0;
    }
    k = n->kids[i];
    return descend(k, next, end, out);
}

/* Collects all matches for a topic name; see subs.h. [any thread] */
int
subs_match(const char *topic, size_t len, struct sub_matches *out)
{
    int r;

    pthread_rwlock_rdlock(&store.lock);
    r = match_level(store.root, topic, topic + len, 1, out);
    pthread_rwlock_unlock(&store.lock);
    return r;
}

/* Number of stored subscriptions. [any thread] */
size_t
subs_count(void)
{
    return atomic_load(&store.count);
}
