/*
 * TLS-PSK for listeners (issue 9): the keys of `psk_file` (mosquitto's
 * format, "identity:hexkey" per line) and the server callback that finds a
 * client's key by its identity, for TLS 1.2 PSK cipher suites and TLS 1.3
 * external PSKs.
 *
 * The key table belongs to the SSL_CTX it was loaded for (freed with it), so
 * a SIGHUP that rebuilds the context reloads the file and connections that
 * started earlier keep the table they were made with.
 */
#ifndef MIDGE_TLS_PSK_H
#define MIDGE_TLS_PSK_H

#include <stddef.h>

#include <openssl/ssl.h>

/*
 * Loads `file` and turns PSK on for ctx with identity hint `hint`. Returns 0,
 * or -1 with "psk_file 'PATH' line N: what is wrong" in err. Main thread.
 */
int tls_psk_setup(SSL_CTX *ctx, const char *hint, const char *file, char *err, size_t errlen);

/*
 * Called by the PSK callback with the identity a client offered and whether
 * psk_file has a key for it (the SSL's app data is the struct tls_conn).
 * Defined in tls.c. [worker thread]
 */
void tls_conn_psk_seen(SSL *ssl, const char *identity, int known);

#endif
