/*
 * Process-wide broker state: the current configuration, the workers, uids.
 * One instance, `broker`, created at start-up by main.c.
 */
#ifndef MIDGE_BROKER_H
#define MIDGE_BROKER_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"

struct worker;
struct msg;

struct broker {
    /* Current configuration. Swapped by the main thread on SIGHUP; old ones
     * stay allocated (in `old_cfgs`) until exit, so a worker may keep using a
     * pointer it loaded during one callback. */
    _Atomic(struct config *) cfg;
    struct config **old_cfgs; /* main thread only */
    unsigned n_old_cfgs;
    struct worker **workers;  /* fixed after start-up */
    unsigned nworkers;
    atomic_uint_fast64_t next_uid;
    double start_wall;        /* time(NULL) at start */
    /* Sessions whose client reads, but slower than it is fed (session.c:
     * press_update). While non-zero, workers stop reading from publishers:
     * DESIGN.md section 2 case (b). */
    atomic_int pressure;
    /* Totals that outlive workers' snapshots ($SYS maximum). Main thread. */
    int64_t clients_maximum;
};

extern struct broker broker;

/* The configuration in force. [any thread] */
static inline const struct config *
broker_cfg(void)
{
    return atomic_load_explicit(&broker.cfg, memory_order_acquire);
}

/* A process-unique, never reused, non-zero id (sessions). [any thread] */
uint64_t broker_uid(void);

/*
 * Routes a message to every matching subscription: matches the trie and hands
 * each subscriber's copy to its session's worker (directly when that is the
 * calling worker, else through the worker queues). `publisher` is the
 * publishing session's uid for No Local (0 for the broker itself).
 * Borrows `m` (takes its own references). [any thread]
 */
void broker_route(struct msg *m, uint64_t publisher);

/* Publishes a message: retained handling plus broker_route(). Borrows m. [any thread] */
void broker_publish(struct msg *m, uint64_t publisher);

/* Home worker of a client id (DESIGN.md section 1). */
unsigned broker_home_worker(const char *client_id, size_t len);

#endif
