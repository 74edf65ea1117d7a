/*
 * TLS client side of a bridge (OpenSSL 3): CA verification of the remote's
 * certificate and its host name, client certificate, SNI, ALPN.
 * [home worker] for all of them.
 */
#ifndef BRIDGE_TLS_H
#define BRIDGE_TLS_H

#include <stddef.h>
#include <sys/types.h>

struct bridge;
struct bridge_conf;

/* 1 while the connection runs over TLS. */
int tls_on(const struct bridge *b);
/* Creates the TLS state on the connected socket. 0, or -1 after link_drop(). */
int tls_start(struct bridge *b);
/* Advances the handshake: 1 done, 0 in progress (watch set), -1 failed (dropped). */
int tls_handshake(struct bridge *b);
/* As recv/send: bytes, 0 closed, -1 with errno (EAGAIN when it would block). */
ssize_t tls_read(struct bridge *b, void *buf, size_t n);
ssize_t tls_write(struct bridge *b, const void *buf, size_t n);
/* Frees the connection's TLS state (NULL-safe). */
void tls_free(struct bridge *b);
/*
 * Checks that the files of a TLS bridge load (at start and on SIGHUP).
 * 0, or -1 with a message in err.
 */
int tls_check_conf(const struct bridge_conf *c, char *err, size_t errlen);

#endif
