/*
 * $SYS/broker/... topics with mosquitto's names, published as retained
 * messages every sys_interval seconds from the main thread.
 */
#ifndef MIDGE_SYS_H
#define MIDGE_SYS_H

#include <ev.h>

/* Starts (or, after SIGHUP, re-times) the $SYS timer. Main thread. */
void sys_start(struct ev_loop *loop);
void sys_stop(struct ev_loop *loop);

#endif
