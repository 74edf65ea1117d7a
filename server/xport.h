/*
 * Transports under MQTT (issue 9): plain TCP, TLS, WebSockets, WebSockets
 * over TLS. conn.c reads and writes through these functions only when
 * c->xp != NULL; plain TCP keeps its direct read()/writev() path.
 *
 * Ownership: a struct xport_listener belongs to its struct listener (main
 * thread creates, reloads and frees it; workers take its lock only to start
 * a connection). A struct xport belongs to its connection, moves with it at
 * handoff and is freed with it.
 */
#ifndef MIDGE_XPORT_H
#define MIDGE_XPORT_H

#include <stddef.h>
#include <sys/types.h>

struct conn;
struct config;
struct listener_conf;
struct tls_conn;

struct xport_listener;

/* Read buffers handed to xport_read have at least this much room (one TLS record). */
#define XPORT_READ_MIN (16 * 1024)

/*
 * The transport settings of a listener: NULL with err[0] == '\0' for plain
 * MQTT (nothing to do), NULL with "FILE:LINE: listener PORT: reason" in err
 * on failure. Main thread.
 */
struct xport_listener *xport_listener_new(const struct listener_conf *lc, char *err,
                                          size_t errlen);

/*
 * SIGHUP: rebuilds the TLS context from lc and the files on disk for new
 * handshakes; existing connections keep theirs. On failure the old context
 * stays and the reason is logged. Main thread.
 */
void xport_listener_reload(struct xport_listener *xl, const struct listener_conf *lc,
                           const char *name);

void xport_listener_free(struct xport_listener *xl);

/*
 * Checks every TLS listener of cfg by building its context once (certificate,
 * key, CA, CRL, ciphers), so that --test-config and start-up refuse a broken
 * file before opening anything. Returns 0, or -1 with the error in err.
 */
int xport_check_config(const struct config *cfg, char *err, size_t errlen);

/* Gives a new connection its transport state (c->xp). Returns 0 or -1 (out of memory). */
int xport_attach(struct conn *c, struct xport_listener *xl);

/* read(2) through the layers; -1/EAGAIN: wait. On other failures see xport_error(). */
ssize_t xport_read(struct conn *c, void *buf, size_t len);

/* outbuf_flush through the layers: 0 done, 1 socket full, -1 error. */
int xport_flush(struct conn *c);

/* 1 when decoded input waits inside the layers with no socket event to announce it. */
int xport_pending(const struct conn *c);

/* 1 when the layers have bytes of their own to send (EV_WRITE needed). */
int xport_wants_write(const struct conn *c);

/* 1 when reading stopped until the socket is writable (TLS handshake). */
int xport_read_wants_write(const struct conn *c);

/* The reason of the last failure, for the close log line. */
const char *xport_error(const struct conn *c);

/* "tls handshake" or "websocket upgrade" while that is not done, else NULL. */
const char *xport_stage(const struct conn *c);

/* The username the client certificate gives (use_identity/subject_as_username), or NULL. */
const char *xport_identity(const struct conn *c);

/* 1 when the listener replaces usernames with certificate identities. */
int xport_identity_required(const struct conn *c);

/* The connection's TLS state, or NULL (plain). */
const struct tls_conn *xport_tls(const struct conn *c);

/* Best-effort close_notify / close frame before the socket closes. */
void xport_shutdown(struct conn *c);

void xport_free(struct conn *c);

#endif
