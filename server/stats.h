/*
 * Broker counters. Each worker owns one struct stats and is its only writer
 * (STAT_ADD is a relaxed load+store, no locked instruction on the hot path);
 * the main thread sums them for $SYS with relaxed loads.
 */
#ifndef MIDGE_STATS_H
#define MIDGE_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* Why a message was dropped (struct stats pub_dropped). */
enum drop_reason {
    DROP_QUEUE_LIMIT,  /* a session's max_queued_messages / max_queued_bytes */
    DROP_SLOW_CLIENT,  /* a connected client's output cap (it does not read) */
    DROP_TOO_LARGE,    /* over the receiver's Maximum Packet Size */
    DROP_REFUSED,      /* refused at PUBLISH: ACL, message_size_limit, a plugin's reason code */
    DROP_PLUGIN,       /* dropped by a message_in hook with reason 0 */
    DROP_OVERLOAD,     /* memory_limit reached or storage failing */
    DROP_NO_MEMORY,    /* out of memory */
    DROP_REASONS
};

struct stats {
    atomic_uint_fast64_t msgs_received;  /* all packets in */
    atomic_uint_fast64_t msgs_sent;      /* all packets out */
    atomic_uint_fast64_t bytes_received;
    atomic_uint_fast64_t bytes_sent;
    atomic_uint_fast64_t pub_received[3];       /* PUBLISH in, by QoS */
    atomic_uint_fast64_t pub_bytes_received[3]; /* their payload bytes */
    atomic_uint_fast64_t pub_sent[3];           /* PUBLISH out, by QoS */
    atomic_uint_fast64_t pub_bytes_sent[3];     /* their payload bytes */
    atomic_uint_fast64_t pub_dropped[DROP_REASONS];
    atomic_int_fast64_t clients_connected;
    atomic_int_fast64_t sessions;        /* connected + disconnected persistent */
    atomic_uint_fast64_t connects_total;
};

#define STAT_ADD(st, field, n)                                                          \
    atomic_store_explicit(&(st)->field,                                                 \
                          atomic_load_explicit(&(st)->field, memory_order_relaxed) + (n), \
                          memory_order_relaxed)

#define STAT_GET(st, field) atomic_load_explicit(&(st)->field, memory_order_relaxed)

#endif
