/*
 * Broker counters. Each worker owns one struct stats and is its only writer
 * (STAT_ADD is a relaxed load+store, no locked instruction on the hot path);
 * the main thread sums them for $SYS with relaxed loads.
 */
#ifndef MIDGE_STATS_H
#define MIDGE_STATS_H

#include <stdatomic.h>
#include <stdint.h>

struct stats {
    atomic_uint_fast64_t msgs_received;  /* all packets in */
    atomic_uint_fast64_t msgs_sent;      /* all packets out */
    atomic_uint_fast64_t bytes_received;
    atomic_uint_fast64_t bytes_sent;
    atomic_uint_fast64_t pub_received;   /* PUBLISH in */
    atomic_uint_fast64_t pub_sent;       /* PUBLISH out */
    atomic_uint_fast64_t pub_dropped;    /* queue limits, output cap, oversize, expiry */
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
