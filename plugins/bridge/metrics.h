/*
 * Per-link metrics of the bridge: one labeled series (label `link`, the
 * connection name) per metric and bridge, created with the bridge and
 * freed when it is removed (api->metric_new_labeled, ABI 1.2). Without
 * that API (an older broker) every call here does nothing.
 */
#ifndef BRIDGE_METRICS_H
#define BRIDGE_METRICS_H

#include "midge/plugin.h"

struct bridge;

/*
 * The series of one link. Owned by its struct bridge (the series
 * themselves belong to the broker until lm_free). The pointers are set by
 * the main thread before the session opens (lm_create), then only by the
 * home worker (lm_start, lm_free after teardown), or by the main thread
 * once the workers stopped (lm_free at cleanup). Counters and gauges are
 * updated on the home worker.
 */
struct link_metrics {
    midge_metric *connected;      /* gauge 0/1 */
    midge_metric *state;          /* gauge: enum lm_state */
    midge_metric *queue_messages; /* gauge: not yet acknowledged by the remote */
    midge_metric *queue_bytes;    /* gauge: their topic + payload bytes */
    midge_metric *inflight;       /* gauge: sent, acknowledgement awaited */
    midge_metric *sent;           /* counter */
    midge_metric *received;       /* counter */
    midge_metric *dropped;        /* counter */
    midge_metric *reconnects;     /* counter: attempts after a failed or lost connection */
    midge_timer *timer;           /* home worker: samples the gauges */
    char addr_shown[300];         /* home worker: the address last published ("": none) */
};

/* Values of the link_state gauge. */
enum lm_state {
    LM_DISCONNECTED = 0,
    LM_CONNECTING = 1,
    LM_CONNECTED = 2,
};

/* Creates b's series (label link=NAME). [main thread, when the bridge is created] */
void lm_create(struct bridge *b);
/*
 * The session is open: creates the series lm_create could not (logged) and
 * samples the gauges every second from now. [home worker]
 */
void lm_start(struct bridge *b);
/* Stops sampling. [home worker] */
void lm_stop(struct bridge *b);
/* Samples the gauges now (state changes call it). [home worker] */
void lm_sample(struct bridge *b);
/*
 * Frees b's series: the bridge was removed (home worker, after teardown;
 * `removed` 1 also clears its retained address topic) or the plugin stops
 * (main thread, workers stopped; removed 0). Safe to call twice.
 */
void lm_free(struct bridge *b, int removed);

#endif
