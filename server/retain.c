/*
 * Retained store: a chained hash table from topic to message. A filter
 * without wildcards is one lookup; a wildcard filter scans the table (the
 * retained-message trie is planned work: docs/architecture.md).
 */
#include "retain.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "msg.h"
#include "persist.h"
#include "topic.h"

struct rentry {
    struct rentry *next;
    uint64_t hash;
    struct msg *m; /* one reference */
};

/* The one store; everything is protected by `lock` except `count`. */
static struct {
    pthread_mutex_t lock;
    struct rentry **buckets;
    size_t nbuckets;
    atomic_size_t count;
} rs;

/* Creates the store. */
int
retain_init(void)
{
    pthread_mutex_init(&rs.lock, NULL);
    rs.nbuckets = 1024;
    rs.buckets = calloc(rs.nbuckets, sizeof(*rs.buckets));
    atomic_init(&rs.count, 0);
    return rs.buckets ? 0 : -1;
}

/* Frees the store and its references. */
void
retain_free(void)
{
    size_t i;

    for (i = 0; i < rs.nbuckets; i++) {
        while (rs.buckets[i] != NULL) {
            struct rentry *e = rs.buckets[i];
            rs.buckets[i] = e->next;
            msg_unref(e->m);
            free(e);
        }
    }
    free(rs.buckets);
    rs.buckets = NULL;
    pthread_mutex_destroy(&rs.lock);
}

static void
grow_locked(void)
{
    size_t n = rs.nbuckets * 2;
    struct rentry **b = calloc(n, sizeof(*b));
    size_t i;

    if (b == NULL) {
        return; /* keep working with longer chains */
    }
    for (i = 0; i < rs.nbuckets; i++) {
        while (rs.buckets[i] != NULL) {
            struct rentry *e = rs.buckets[i];
            rs.buckets[i] = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(rs.buckets);
    rs.buckets = b;
    rs.nbuckets = n;
}

/* Sets or clears the retained message of m's topic. [any thread] */
int
retain_set(struct msg *m)
{
    uint64_t h = hash_bytes(m->topic, m->topic_len);
    struct rentry **pp;
    int r = 0;

    pthread_mutex_lock(&rs.lock);
    for (pp = &rs.buckets[h & (rs.nbuckets - 1)]; *pp != NULL; pp = &(*pp)->next) {
        struct rentry *e = *pp;
        if (e->hash == h && e->m->topic_len == m->topic_len &&
            memcmp(e->m->topic, m->topic, m->topic_len) == 0) {
            msg_unref(e->m);
            if (m->payload_len == 0) {
                *pp = e->next;
                free(e);
                atomic_fetch_sub(&rs.count, 1);
            } else {
                e->m = msg_ref(m);
            }
            goto out;
        }
    }
    if (m->payload_len > 0) {
        struct rentry *e = malloc(sizeof(*e));
        if (e == NULL) {
            r = -1;
            goto out;
        }
        e->hash = h;
        e->m = msg_ref(m);
        e->next = rs.buckets[h & (rs.nbuckets - 1)];
        rs.buckets[h & (rs.nbuckets - 1)] = e;
        if (atomic_fetch_add(&rs.count, 1) + 1 > rs.nbuckets) {
            grow_locked();
        }
    }
out:
    if (r == 0 && persist_active) {
        persist_retained(m); /* under the store's lock: events in the order of the changes */
    }
    pthread_mutex_unlock(&rs.lock);
    return r;
}

static int
out_push(struct msg ***out, size_t *n, size_t *cap, struct msg *m)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        struct msg **v = realloc(*out, c * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        *out = v;
        *cap = c;
    }
    (*out)[(*n)++] = msg_ref(m);
    return 0;
}

/* Collects retained messages matching a filter. [any thread] */
int
retain_match(const char *filter, size_t len, double now, struct msg ***out, size_t *n)
{
    size_t cap = 0;
    size_t i;
    int r = 0;
    int wild = memchr(filter, '+', len) != NULL || memchr(filter, '#', len) != NULL;

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&rs.lock);
    for (i = 0; i < rs.nbuckets; i++) {
        struct rentry **pp;
        if (!wild) {
            i = hash_bytes(filter, len) & (rs.nbuckets - 1);
        }
        for (pp = &rs.buckets[i]; *pp != NULL;) {
            struct rentry *e = *pp;
            if (msg_expired(e->m, now)) {
                *pp = e->next;
                msg_unref(e->m);
                free(e);
                atomic_fetch_sub(&rs.count, 1);
                continue;
            }
            if (topic_matches(filter, len, e->m->topic, e->m->topic_len) &&
                out_push(out, n, &cap, e->m) < 0) {
                r = -1;
                goto out;
            }
            pp = &e->next;
        }
        if (!wild) {
            break;
        }
    }
out:
    pthread_mutex_unlock(&rs.lock);
    return r;
}

/* Number of retained messages. [any thread] */
size_t
retain_count(void)
{
    return atomic_load(&rs.count);
}
