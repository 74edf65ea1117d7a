/*
 * TLS on listeners (issue 9), with OpenSSL 3: building a listener's SSL_CTX
 * from its configuration, and one connection's TLS state.
 *
 * Threads: contexts are built on the main thread (start-up, SIGHUP) and
 * shared by the workers (SSL_new takes its own reference, so an old context
 * lives until its last connection ends). A struct tls_conn belongs to its
 * connection and moves with it at handoff; it is used by one thread at a time.
 * Nothing here blocks: sockets are non-blocking and WANT_READ/WANT_WRITE are
 * reported to the caller as EAGAIN.
 */
#ifndef MIDGE_TLS_H
#define MIDGE_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

struct conn;
struct listener_conf;
struct midge_tls_info;

/* Which certificate field replaces the CONNECT username. */
enum tls_identity {
    TLS_ID_NONE = 0,
    TLS_ID_CN = 1,      /* use_identity_as_username */
    TLS_ID_SUBJECT = 2, /* use_subject_as_username */
};

/*
 * Builds the SSL_CTX of a TLS listener: certificate chain and key, CAs and
 * CRL for client certificates, minimum version, ciphers, ALPN ("mqtt", or
 * "http/1.1" when `ws`). Returns the context (caller frees with
 * SSL_CTX_free), or NULL with "what: OpenSSL's reason" in err. Main thread.
 */
SSL_CTX *tls_ctx_build(const struct listener_conf *lc, int ws, char *err, size_t errlen);

struct tls_conn;

/* TLS state for accepted socket fd. Takes a reference to ctx. NULL when out of memory. */
struct tls_conn *tls_conn_new(SSL_CTX *ctx, int fd, enum tls_identity id);

/*
 * Reads decrypted bytes, completing the handshake first. Like read(2): > 0
 * bytes, 0 at the end of the stream, -1 with errno EAGAIN (wait for the
 * socket; see tls_conn_read_wants_write) or another errno on failure, with
 * the reason in tls_conn_error(). [worker thread]
 */
ssize_t tls_conn_read(struct tls_conn *t, void *buf, size_t len);

/* Encrypts and sends; like write(2), -1/EAGAIN when the socket is full. */
ssize_t tls_conn_write(struct tls_conn *t, const void *buf, size_t len);

/* 1 when the last read stopped because the socket could not take handshake bytes. */
int tls_conn_read_wants_write(const struct tls_conn *t);

/* Decrypted bytes already inside OpenSSL (no socket event will announce them). */
int tls_conn_pending(const struct tls_conn *t);

/* 1 until the handshake completed. */
int tls_conn_handshaking(const struct tls_conn *t);

/* Why the last call failed ("tls handshake failed: ..."); borrowed. */
const char *tls_conn_error(const struct tls_conn *t);

/* The username the certificate gives (per use_identity/subject_as_username), or NULL. */
const char *tls_conn_identity(const struct tls_conn *t);

/* Sends close_notify without waiting for the answer. */
void tls_conn_shutdown(struct tls_conn *t);

void tls_conn_free(struct tls_conn *t);

/*
 * api->client_tls: fills *info (strings borrowed while the connection
 * lives) and returns 0 for a TLS connection, -MIDGE_ENOENT for plain TCP.
 * [worker thread]
 */
int tls_conn_info(const struct conn *c, struct midge_tls_info *info);

#endif
