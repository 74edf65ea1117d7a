/*
 * Worker threads: each runs one ev_loop and owns the connections and
 * sessions assigned to it (DESIGN.md section 1). Other threads talk to a
 * worker only through its inbox (mutex-protected array, one ev_async wake-up
 * per batch).
 */
#ifndef MIDGE_WORKER_H
#define MIDGE_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "stats.h"
#include "subs.h"

struct conn;
struct msg;
struct listener;
struct sessions;

enum witem_kind {
    WI_DELIVER = 1, /* a message for session `uid` */
    WI_ACCEPT,      /* a new socket from the acceptor */
    WI_HANDOFF,     /* a connection whose session lives here */
    WI_STOP,        /* graceful shutdown */
    WI_TICKET,      /* a plugin completed a pending decision (struct auth_wait *) */
    WI_CALL,        /* run fn(u.ptr) on the worker (plugin services: call_post) */
};

/*
 * One inbox item. Ownership moves with the item: a WI_DELIVER item owns one
 * reference to `m` and the `ids` array; WI_ACCEPT owns `fd`; WI_HANDOFF owns
 * the connection.
 */
struct witem {
    uint8_t kind;
    uint8_t qos;
    uint8_t retain;
    uint16_t n_ids;      /* subscription ids: sub_id, then ids[0..n_ids-2] */
    uint32_t sub_id;
    uint64_t uid;
    union {
        struct msg *m;
        struct conn *conn;
        int fd;
        void *ptr;
    } u;
    uint32_t *ids;
    uint64_t delivery_id; /* WI_DELIVER to a persistent session: its MSG_QUEUED event's id */
    union {
        struct listener *listener; /* WI_ACCEPT */
        void (*fn)(void *arg);     /* WI_CALL */
    };
};

/* A growable array of items. Owned by whoever embeds it. */
struct witems {
    struct witem *v;
    size_t n;
    size_t cap;
};

/*
 * A worker. Fields below `Protected by inbox_lock` may be touched by other
 * threads under that lock; everything else belongs to the worker thread.
 */
struct worker {
    unsigned id;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;
    ev_prepare prepare;  /* flush point: once per loop iteration */
    ev_timer tick;       /* 1 s: keep alive, connect timeout, session expiry */
    ev_timer bp_timer;   /* runs while publishers are paused: resumes them */

    pthread_mutex_t inbox_lock;
    struct witems inbox;         /* Protected by inbox_lock */
    int dead;                    /* Protected by inbox_lock: the thread ended (shutdown) */
    atomic_size_t inbox_len;     /* mirror of inbox.n for back-pressure checks */

    struct witems *outbox;       /* one per target worker, flushed in prepare */
    uint8_t *scratch;            /* read buffer, WORKER_SCRATCH bytes */
    struct sub_matches matches;  /* reused by broker_route */

    struct conn *conns;          /* every connection of this worker */
    struct conn *dirty;          /* connections with output to flush */
    struct conn *graveyard;      /* closed, freed in prepare */
    struct sessions *sessions;
    struct midge_session *isessions; /* internal sessions' handles living here (plugin_isession.c) */
    struct conn *held_conns;     /* connections holding acks until durable (persist.c) */
    atomic_int held_wake;        /* a release call is queued for this worker */
    int stopping;
    size_t paused;               /* connections whose reading is paused for back-pressure */

    struct stats stats;
};

#define WORKER_SCRATCH (64 * 1024)

/* The worker running on this thread, or NULL (main thread). */
struct worker *worker_current(void);

/* Creates and starts n workers. Start-up only; returns -1 on failure. */
int worker_start_all(unsigned n);

/* Asks every worker to shut down gracefully and joins them. Main thread. */
void worker_stop_all(void);

/*
 * Posts the calls plugins made in init (held until then, so that an
 * internal session opened in init finds its restored state). Main thread,
 * after the restore.
 */
void worker_post_early_calls(void);

/* Frees the workers after worker_stop_all() and plugins_unload(). Main thread. */
void worker_free_all(void);

/*
 * Appends an item to worker `to`'s inbox and wakes it. Ownership of the
 * item's contents moves to the worker. [any thread]
 */
void worker_post(unsigned to, const struct witem *it);

/*
 * Queues an item for worker `to` from the calling worker `w`: batched in w's
 * outbox and posted once per loop iteration. [worker thread]
 */
void worker_send(struct worker *w, unsigned to, const struct witem *it);

/*
 * 1 when publishers on this worker should not be read now: some reading
 * client is falling behind (broker.pressure) or another worker's inbox is
 * above its high-water mark. Starts the timer that resumes them. [worker thread]
 */
int worker_throttled(struct worker *w);

/*
 * Deferred calls for plugin services: fn(arg) runs later on a worker's loop
 * or on the main thread's. A call for a worker that has already stopped
 * (shutdown) runs on the main thread instead, where worker_current() is
 * NULL: fn must check that before touching worker state.
 */
#define CALL_MAIN UINT32_MAX

/* The calling thread as a call target: its worker id, or CALL_MAIN. */
unsigned call_target_current(void);

/* Workers started and not yet freed (0 before start and after worker_free_all). [any thread] */
unsigned workers_ready_count(void);

/* Queues fn(arg) for `target` (a worker id or CALL_MAIN). [any thread] */
void call_post(unsigned target, void (*fn)(void *arg), void *arg);

/*
 * Queues fn(arg) for the home worker of client id `id` (which must stay
 * valid until fn runs: keep it in arg). Before the workers start (plugins'
 * init) the call waits for them. [any thread]
 */
void call_post_home(const char *id, size_t len, void (*fn)(void *arg), void *arg);

/* Appends to a witems array. Returns 0 or -1 when out of memory. */
int witems_push(struct witems *a, const struct witem *it);

/* Releases what an unprocessed item owns. */
void witem_discard(struct witem *it);

#endif
