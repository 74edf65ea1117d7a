/*
 * Prometheus text exposition format (version 0.0.4) of a snapshot: the
 * broker's counters, the sessions' queues, every plugin instance with its
 * hook calls, verdicts and latency histograms, and every metric plugins
 * defined (bridge links, persistence commit latency and batch size, ...).
 * Pure code: no broker calls, no globals.
 */
#ifndef HTTP_ADMIN_PROM_H
#define HTTP_ADMIN_PROM_H

#include "sbuf.h"
#include "snapshot.h"

/* The Content-Type of what prom_render writes. */
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Appends the whole exposition to out. */
void prom_render(const struct snapshot *s, struct sbuf *out);

/*
 * The family name of a plugin metric: midge_plugin_<plugin>_<metric>, with
 * characters Prometheus does not allow in names turned into '_', and
 * "_total" appended to counters. Writes at most len bytes (NUL included).
 */
void prom_plugin_family(const char *plugin, const char *metric, int kind, char *out, size_t len);

#endif
