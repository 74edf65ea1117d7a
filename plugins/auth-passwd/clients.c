/* Connected clients by id: see clients.h. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clients.h"

#define BUCKETS 1024

/* One client id. Owns its strings; freed when its last connection ends. */
struct tracked {
    char *id;
    char *user;       /* of the latest connection */
    unsigned conns;   /* connections with this id (takeover overlaps two) */
    struct tracked *next;
};

/* Owns every entry; freed by client_map_free(). */
struct client_map {
    pthread_mutex_t lock;
    struct tracked *b[BUCKETS]; /* Protected by lock. */
    size_t n;                   /* Protected by lock. */
};

static size_t
bucket(const char *s)
{
    uint32_t h = 2166136261u;

    while (*s != '\0') {
        h = (h ^ (uint8_t)*s++) * 16777619u;
    }
    return h % BUCKETS;
}

/* See clients.h. */
struct client_map *
client_map_new(void)
{
    struct client_map *m = calloc(1, sizeof(*m));

    if (m != NULL && pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        m = NULL;
    }
    return m;
}

static void
tracked_free(struct tracked *t)
{
    free(t->id);
    free(t->user);
    free(t);
}

/* See clients.h. */
void
client_map_free(struct client_map *m)
{
    size_t i;

    if (m == NULL) {
        return;
    }
    for (i = 0; i < BUCKETS; i++) {
        while (m->b[i] != NULL) {
            struct tracked *t = m->b[i];
            m->b[i] = t->next;
            tracked_free(t);
        }
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* See clients.h. */
int
client_map_add(struct client_map *m, const char *id, const char *user)
{
    struct tracked *t;
    char *u = strdup(user);
    size_t b = bucket(id);
    int rc = -1;

    if (u == NULL) {
        return -1;
    }
    pthread_mutex_lock(&m->lock);
    for (t = m->b[b]; t != NULL; t = t->next) {
        if (strcmp(t->id, id) == 0) {
            break;
        }
    }
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL || (t->id = strdup(id)) == NULL) {
            free(t);
            goto out;
        }
        t->next = m->b[b];
        m->b[b] = t;
        m->n++;
    }
    free(t->user);
    t->user = u;
    u = NULL;
    t->conns++;
    rc = 0;
out:
    pthread_mutex_unlock(&m->lock);
    free(u);
    return rc;
}

/* See clients.h. */
void
client_map_remove(struct client_map *m, const char *id)
{
    struct tracked **pp;

    pthread_mutex_lock(&m->lock);
    for (pp = &m->b[bucket(id)]; *pp != NULL; pp = &(*pp)->next) {
        struct tracked *t = *pp;

        if (strcmp(t->id, id) == 0) {
            if (--t->conns == 0) {
                *pp = t->next;
                tracked_free(t);
                m->n--;
            }
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

/* See clients.h. */
void
client_ids_free(char **ids)
{
    size_t i;

    for (i = 0; ids != NULL && ids[i] != NULL; i++) {
        free(ids[i]);
    }
    free(ids);
}

/* See clients.h. */
char **
client_map_select(struct client_map *m, int (*keep)(void *arg, const char *user), void *arg)
{
    char **ids = NULL;
    size_t k = 0;
    size_t i;

    pthread_mutex_lock(&m->lock);
    ids = calloc(m->n + 1, sizeof(*ids));
    for (i = 0; ids != NULL && i < BUCKETS; i++) {
        struct tracked *t;

        for (t = m->b[i]; t != NULL; t = t->next) {
            if (keep(arg, t->user) == 0) {
                ids[k] = strdup(t->id);
                if (ids[k] == NULL) {
                    client_ids_free(ids);
                    ids = NULL;
                    goto out;
                }
                k++;
            }
        }
    }
out:
    pthread_mutex_unlock(&m->lock);
    return ids;
}

/* See clients.h. */
size_t
client_map_count(struct client_map *m)
{
    size_t n;

    pthread_mutex_lock(&m->lock);
    n = m->n;
    pthread_mutex_unlock(&m->lock);
    return n;
}
