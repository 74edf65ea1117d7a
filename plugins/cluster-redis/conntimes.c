/* Last local connect time per client id (conntimes.h): chained hash buckets under a mutex. */
#include "conntimes.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096

/* One client id. Owned by its bucket chain. */
struct ct_entry {
    struct ct_entry *next;
    uint64_t when;
    char id[];
};

/* Owned by the plugin instance (struct cluster). */
struct conntimes {
    pthread_mutex_t lock;
    struct ct_entry *b[BUCKETS]; /* Protected by lock */
};

static size_t
bucket(const char *id)
{
    uint64_t h = 1469598103934665603ull;

    while (*id) {
        h = (h ^ (uint8_t)*id++) * 1099511628211ull;
    }
    return (size_t)(h ^ (h >> 32)) & (BUCKETS - 1);
}

struct conntimes *
conntimes_new(void)
{
    struct conntimes *t = calloc(1, sizeof(*t));

    if (t != NULL && pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void
conntimes_free(struct conntimes *t)
{
    size_t i;

    if (t == NULL) {
        return;
    }
    for (i = 0; i < BUCKETS; i++) {
        while (t->b[i] != NULL) {
            struct ct_entry *e = t->b[i];
            t->b[i] = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int
conntimes_set(struct conntimes *t, const char *id, uint64_t when)
{
    size_t k = bucket(id);
    size_t n = strlen(id);
    struct ct_entry *e;

    pthread_mutex_lock(&t->lock);
    for (e = t->b[k]; e != NULL; e = e->next) {
        if (strcmp(e->id, id) == 0) {
            e->when = when;
            pthread_mutex_unlock(&t->lock);
            return 0;
        }
    }
    e = malloc(sizeof(*e) + n + 1);
    if (e == NULL) {
        pthread_mutex_unlock(&t->lock);
        return -1;
    }
    memcpy(e->id, id, n + 1);
    e->when = when;
    e->next = t->b[k];
    t->b[k] = e;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

void
conntimes_remove(struct conntimes *t, const char *id)
{
    struct ct_entry **pp;

    pthread_mutex_lock(&t->lock);
    for (pp = &t->b[bucket(id)]; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            struct ct_entry *e = *pp;
            *pp = e->next;
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
}

uint64_t
conntimes_get(struct conntimes *t, const char *id)
{
    struct ct_entry *e;
    uint64_t when = 0;

    pthread_mutex_lock(&t->lock);
    for (e = t->b[bucket(id)]; e != NULL; e = e->next) {
        if (strcmp(e->id, id) == 0) {
            when = e->when;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return when;
}
