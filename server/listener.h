/*
 * Listening sockets. Owned by the main thread, which accepts and hands each
 * new socket round robin to a worker (WI_ACCEPT). Listener structs live until
 * exit (connections keep pointers to them). A listener removed from the file
 * stays open until a restart (the SIGHUP log says so).
 */
#ifndef MIDGE_LISTENER_H
#define MIDGE_LISTENER_H

#include <ev.h>
#include <stdatomic.h>
#include <stdint.h>

struct config;
struct listener_conf;
struct xport_listener;

struct listener {
    ev_io io;
    int fd;                    /* -1 once closed */
    uint16_t port;             /* actual bound port */
    char name[80];             /* "127.0.0.1:1883", for logs */
    char *bind_address;        /* owned copy; NULL: any */
    uint16_t conf_port;        /* port as configured (0 allowed) */
    atomic_int max_connections;   /* -1: unlimited; updated on SIGHUP */
    atomic_int allow_anonymous;   /* -1: global setting decides */
    atomic_uint max_topic_alias;
    atomic_int nconns;         /* live connections, for max_connections */
    struct xport_listener *xl; /* TLS/WebSocket settings (xport.c), owned; NULL: plain MQTT */
    struct listener *next;
};

/*
 * Opens every listener of cfg that is not open yet (all at start-up, new ones
 * on SIGHUP) and updates the live limits of existing ones. Returns 0, or -1
 * after logging which listener failed. Main thread.
 */
int listeners_apply(const struct config *cfg, struct ev_loop *loop);

/* Closes every listener (shutdown). Main thread. */
void listeners_close(struct ev_loop *loop);

/* Frees every listener (exit, after workers stopped). */
void listeners_free(void);


#endif
