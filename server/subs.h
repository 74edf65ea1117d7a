/*
 * The subscription store: a topic-level trie shared by all workers under a
 * reader/writer lock. Publishing workers match under the read lock;
 * SUBSCRIBE/UNSUBSCRIBE and session end take the write lock.
 *
 * Entries point to a struct subscriber, a small handle that says which
 * session (uid) on which worker wants the message. Matching copies uid and
 * worker out, so after the lock is released nothing points into the trie and
 * delivery goes through the owning worker (DESIGN.md section 1).
 */
#ifndef MIDGE_SUBS_H
#define MIDGE_SUBS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The routing identity of a session. Created by the session's worker,
 * reference counted (atomic): the session holds one reference, every trie
 * entry another. `online` is written by the owning worker and read by
 * publishers choosing a shared-subscription member.
 */
struct subscriber {
    atomic_uint refs;
    atomic_int online;
    atomic_int persistent;   /* its session is persisted: routing emits its deliveries */
    uint64_t uid;
    unsigned worker;
    char client_id[];        /* immutable copy, for persistence events on any thread */
};

/* Subscription options byte, MQTT 5 layout (bits 0-1 QoS, 2 NL, 3 RAP, 4-5 RH). */
#define SUBOPT_QOS(o) ((o) & 0x03)
#define SUBOPT_NO_LOCAL 0x04
#define SUBOPT_RAP 0x08
#define SUBOPT_RH(o) (((o) >> 4) & 0x03)

/* One match: a copy, valid after the lock is dropped. */
struct sub_match {
    struct subscriber *ps; /* persistent subscribers only: one reference, dropped by the router */
    uint64_t uid;
    unsigned worker;
    uint8_t opts;
    uint8_t shared;   /* 1: matched through a $share group */
    uint32_t sub_id;  /* 0: none */
};

/* A growable array of matches owned by the caller (one per worker thread). */
struct sub_matches {
    struct sub_match *v;
    size_t n;
    size_t cap;
};

struct subscriber *subscriber_new(uint64_t uid, unsigned worker, const char *client_id,
                                  size_t len);
void subscriber_unref(struct subscriber *s);

/* Creates the global store. Start-up only; returns -1 when out of memory. */
int subs_init(void);
void subs_free(void);

/*
 * Adds (or replaces [MQTT-3.8.4-3]) the subscription of `s` to `filter`
 * (a valid filter, possibly $share/GROUP/FILTER). *existed is set to 1 when it
 * replaced one. Returns 0 or -1 when out of memory. [any thread]
 */
int subs_add(const char *filter, size_t len, struct subscriber *s, uint8_t opts,
             uint32_t sub_id, int *existed);

/* Removes the subscription of `s` to `filter`. Returns 1 if it existed, else 0. [any thread] */
int subs_remove(const char *filter, size_t len, struct subscriber *s);

/*
 * Appends every subscription matching topic name `topic` to *out; for each
 * shared group that matches, one member is chosen round robin, preferring
 * online ones. Returns 0, or -1 when out of memory. [any thread]
 */
int subs_match(const char *topic, size_t len, struct sub_matches *out);

/* Number of subscriptions stored (for $SYS). [any thread] */
size_t subs_count(void);

#endif
