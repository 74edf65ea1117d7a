/*
 * Calls into the main thread's loop from any thread: how plugin services
 * (run_blocking's done, timers started in init) reach the main thread, and
 * where calls for workers that already stopped end up at shutdown.
 */
#ifndef MIDGE_MAINLOOP_H
#define MIDGE_MAINLOOP_H

#include <ev.h>

/* Queues fn(arg) for the main thread. Runs in the main loop, or in main_calls_run(). [any thread] */
void main_call(void (*fn)(void *arg), void *arg);

/* Starts serving calls on `loop` (calls queued before run then). Main thread. */
void main_calls_start(struct ev_loop *loop);

/* Stops serving calls from the loop; later calls wait for main_calls_run(). Main thread. */
void main_calls_stop(void);

/* Runs every queued call, including calls queued meanwhile, until none is left. Main thread. */
void main_calls_run(void);

#endif
