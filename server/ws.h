/*
 * MQTT over WebSockets (issue 9, MQTT 5.0 section 6): a strict, size-limited
 * HTTP/1.1 Upgrade parser, then RFC 6455 framing by wslay. The MQTT byte
 * stream inside binary frames is handed to conn.c unchanged, so a packet may
 * span frames and a frame may hold several packets.
 *
 * A struct ws_conn belongs to its connection (through struct xport) and moves
 * with it at handoff. It reads and writes through `struct ws_lower` (plain
 * socket or TLS), so ws:// and wss:// share everything. [worker thread]
 */
#ifndef MIDGE_WS_H
#define MIDGE_WS_H

#include <stddef.h>
#include <sys/types.h>

struct outbuf;

/* The layer below: read(2)/write(2) conventions (-1 with errno EAGAIN: wait). */
struct ws_lower {
    ssize_t (*read)(void *arg, void *buf, size_t len);
    ssize_t (*write)(void *arg, const void *buf, size_t len);
    const char *(*error)(void *arg); /* reason of the lower layer's last failure */
    void *arg;
};

/* Largest HTTP Upgrade request accepted (request line and headers). */
#define WS_HTTP_MAX 8192

struct ws_conn;

/*
 * New WebSocket state. `paths` and `origins` are space-separated allow-lists
 * (NULL: anything), copied. NULL when out of memory.
 */
struct ws_conn *ws_conn_new(const struct ws_lower *lower, const char *paths, const char *origins);

/*
 * Reads MQTT bytes: first the HTTP Upgrade (answered with 101, or 400/403/404
 * and an error), then frame payloads. Like read(2): > 0 bytes, 0 when the
 * peer closed, -1 with errno EAGAIN (nothing yet) or another errno with the
 * reason in ws_conn_error().
 */
ssize_t ws_conn_read(struct ws_conn *ws, void *buf, size_t len);

/*
 * Sends the HTTP answer if still pending, then the output as binary frames.
 * Returns 0 when all was written, 1 when the socket is full, -1 on error.
 */
int ws_conn_flush(struct ws_conn *ws, struct outbuf *out);

/* 1 when bytes wait to be sent without the caller having output (answers, pongs, close). */
int ws_conn_wants_write(const struct ws_conn *ws);

/* 1 when decoded bytes wait in the layer (no socket event will announce them). */
int ws_conn_pending(const struct ws_conn *ws);

/* 1 until the Upgrade was answered with 101. */
int ws_conn_upgrading(const struct ws_conn *ws);

const char *ws_conn_error(const struct ws_conn *ws);

/* Queues a close frame and sends what the socket takes, without waiting. */
void ws_conn_shutdown(struct ws_conn *ws);

void ws_conn_free(struct ws_conn *ws);

#endif
