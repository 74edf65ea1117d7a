/*
 * TLS for bridges with OpenSSL 3. A context is built per connection attempt
 * from the bridge's files (so a renewed certificate is picked up at the next
 * reconnect); the socket is already connected and non-blocking, and the
 * handshake is driven by link.c's fd watcher.
 */
#include "bridge.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Owned by the bridge while connected (b->tls); freed by tls_free. */
struct bridge_tls {
    SSL_CTX *ctx;
    SSL *ssl;
};

static void
ssl_error(char *buf, size_t n, const char *what)
{
    unsigned long e = ERR_get_error();
    char ebuf[200];

    if (e != 0) {
        ERR_error_string_n(e, ebuf, sizeof(ebuf));
    } else {
        snprintf(ebuf, sizeof(ebuf), "%s", errno ? strerror(errno) : "unknown error");
    }
    ERR_clear_error();
    snprintf(buf, n, "%s: %s", what, ebuf);
}

/* TLS-PSK: our identity and key (the bridge's conf is the SSL's app data). */
static unsigned int
psk_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity_len,
       unsigned char *psk, unsigned int max_psk_len)
{
    const struct bridge_conf *c = SSL_get_app_data(ssl);
    size_t il;

    (void)hint;
    if (c == NULL || c->psk == NULL) {
        return 0;
    }
    il = strlen(c->psk_identity);
    if (il + 1 > max_identity_len || c->psk_len > max_psk_len) {
        return 0;
    }
    memcpy(identity, c->psk_identity, il + 1);
    memcpy(psk, c->psk, c->psk_len);
    return (unsigned int)c->psk_len;
}

static SSL_CTX *
make_ctx(const struct bridge_conf *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        ssl_error(err, errlen, "TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* link.c's output buffer may move between a WANT_WRITE and the retry. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (c->tls_version != NULL) {
        int v = strcmp(c->tls_version, "tlsv1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
        SSL_CTX_set_min_proto_version(ctx, v);
        SSL_CTX_set_max_proto_version(ctx, v);
    }
    if (c->psk != NULL) {
        /* Pre-shared key instead of certificates (TLS 1.2 PSK suites, as mosquitto's). */
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
        if (SSL_CTX_set_cipher_list(ctx, "PSK") != 1) {
            ssl_error(err, errlen, "bridge_psk ciphers");
            goto fail;
        }
        SSL_CTX_set_psk_client_callback(ctx, psk_cb);
    } else if (SSL_CTX_load_verify_locations(ctx, c->cafile, c->capath) != 1) {
        ssl_error(err, errlen, c->cafile ? "bridge_cafile" : "bridge_capath");
        goto fail;
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (c->certfile != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, c->certfile) != 1) {
            ssl_error(err, errlen, "bridge_certfile");
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->keyfile, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            ssl_error(err, errlen, "bridge_keyfile");
            goto fail;
        }
    }
    if (c->alpn != NULL) {
        size_t l = strlen(c->alpn);
        unsigned char proto[256];
        if (l == 0 || l > 255) {
            snprintf(err, errlen, "bridge_alpn: 1 to 255 bytes");
            goto fail;
        }
        proto[0] = (unsigned char)l;
        memcpy(proto + 1, c->alpn, l);
        if (SSL_CTX_set_alpn_protos(ctx, proto, (unsigned)l + 1) != 0) {
            ssl_error(err, errlen, "bridge_alpn");
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int
tls_check_conf(const struct bridge_conf *c, char *err, size_t errlen)
{
    SSL_CTX *ctx;

    if (c->cafile == NULL && c->capath == NULL && c->psk == NULL) {
        return 0;
    }
    ctx = make_ctx(c, err, errlen);
    if (ctx == NULL) {
        return -1;
    }
    SSL_CTX_free(ctx);
    return 0;
}

int
tls_on(const struct bridge *b)
{
    return b->tls != NULL;
}

static int
numeric_host(const char *h)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

int
tls_start(struct bridge *b)
{
    const char *host = b->conf->addrs[b->addr_idx].host;
    char err[300];
    struct bridge_tls *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        link_drop(b, "out of memory");
        return -1;
    }
    b->tls = t;
    t->ctx = make_ctx(b->conf, err, sizeof(err));
    if (t->ctx == NULL || (t->ssl = SSL_new(t->ctx)) == NULL || SSL_set_fd(t->ssl, b->fd) != 1) {
        if (t->ctx != NULL) {
            ssl_error(err, sizeof(err), "TLS session");
        }
        link_drop(b, err);
        return -1;
    }
    SSL_set_app_data(t->ssl, (void *)b->conf);
    if (!numeric_host(host)) {
        SSL_set_tlsext_host_name(t->ssl, host); /* SNI */
    }
    if (!b->conf->insecure && b->conf->psk == NULL) {
        /* The certificate must name the host we connect to (DNS name or IP address). */
        if (SSL_set1_host(t->ssl, host) != 1) {
            ssl_error(err, sizeof(err), "TLS host check");
            link_drop(b, err);
            return -1;
        }
    }
    SSL_set_connect_state(t->ssl);
    return 0;
}

int
tls_handshake(struct bridge *b)
{
    int r = SSL_do_handshake(b->tls->ssl);
    char err[400];

    if (r == 1) {
        return 1;
    }
    switch (SSL_get_error(b->tls->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        link_want(b, MIDGE_FD_READ);
        return 0;
    case SSL_ERROR_WANT_WRITE:
        link_want(b, MIDGE_FD_WRITE);
        return 0;
    default: {
        long v = SSL_get_verify_result(b->tls->ssl);
        if (v != X509_V_OK) {
            snprintf(err, sizeof(err), "TLS handshake: certificate verify failed: %s",
                     X509_verify_cert_error_string(v));
            ERR_clear_error();
        } else {
            ssl_error(err, sizeof(err), "TLS handshake");
        }
        link_drop(b, err);
        return -1;
    }
    }
}

ssize_t
tls_read(struct bridge *b, void *buf, size_t n)
{
    size_t got = 0;
    int r = SSL_read_ex(b->tls->ssl, buf, n, &got);

    if (r == 1) {
        return (ssize_t)got;
    }
    switch (SSL_get_error(b->tls->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        ERR_clear_error();
        errno = errno ? errno : EIO;
        if (errno == EAGAIN) {
            errno = EIO;
        }
        return -1;
    }
}

ssize_t
tls_write(struct bridge *b, const void *buf, size_t n)
{
    size_t done = 0;
    int r = SSL_write_ex(b->tls->ssl, buf, n, &done);

    if (r == 1) {
        return (ssize_t)done;
    }
    switch (SSL_get_error(b->tls->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    default:
        ERR_clear_error();
        errno = EIO;
        return -1;
    }
}

void
tls_free(struct bridge *b)
{
    if (b->tls != NULL) {
        if (b->tls->ssl != NULL) {
            SSL_free(b->tls->ssl);
        }
        SSL_CTX_free(b->tls->ctx);
        free(b->tls);
        b->tls = NULL;
    }
}
