/*
 * TLS for listeners and connections (see tls.h). Errors are reported once,
 * by the caller closing the connection with tls_conn_error() as the reason,
 * which conn.c logs with the peer address.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "midge/plugin.h"
#include "tls_psk.h"
#include "xport.h"

/* Subject alternative names kept per connection (a certificate may carry many). */
#define TLS_MAX_SANS 64

/*
 * One connection's TLS state. Owned by its connection (through struct
 * xport); the strings are filled when the handshake completes and freed with
 * the struct.
 */
struct tls_conn {
    SSL *ssl;
    uint8_t established;
    uint8_t read_wants_write;
    uint8_t verified;
    uint8_t id_mode;   /* enum tls_identity */
    char *subject;     /* client certificate subject, RFC 2253; NULL: none */
    char *cn;          /* its common name */
    char *san;         /* first DNS/email/URI subject alternative name */
    char *issuer;      /* certificate issuer, RFC 2253 */
    char **sans;       /* every DNS/email/URI/IP alternative name (at most TLS_MAX_SANS) */
    uint32_t nsans;
    char *psk_identity; /* identity of the pre-shared key the client used; NULL: none */
    uint8_t psk_unknown; /* the client offered an identity psk_file does not have */
    char err[256];
};

/* OpenSSL's reason for the latest error of this thread, e.g. "certificate verify failed". */
static void
ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    if (r != NULL) {
        snprintf(buf, len, "%s", r);
    } else if (e != 0) {
        ERR_error_string_n(e, buf, len);
    } else {
        snprintf(buf, len, "unknown error");
    }
}

static int
ctx_fail(char *err, size_t errlen, const char *what, const char *path)
{
    char reason[200];

    ssl_reason(reason, sizeof(reason));
    if (path != NULL) {
        snprintf(err, errlen, "%s '%s': %s", what, path, reason);
    } else {
        snprintf(err, errlen, "%s: %s", what, reason);
    }
    ERR_clear_error();
    return -1;
}

/* ALPN: "mqtt" for MQTT listeners, "http/1.1" for WebSockets; a client offering neither goes on without ALPN. */
static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
        unsigned int inlen, void *arg)
{
    static const unsigned char mqtt[] = "\x04mqtt";
    static const unsigned char http[] = "\x08http/1.1";
    const unsigned char *want = arg != NULL ? http : mqtt;
    unsigned char *sel = NULL;

    (void)ssl;
    if (SSL_select_next_proto(&sel, outlen, want, (unsigned)want[0] + 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/*
 * dhparamfile: DH parameters for the DHE cipher suites of TLS 1.2 (TLS 1.3
 * and ECDHE do not use them). Returns 0 or -1 with the reason in err.
 */
static int
load_dhparams(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *dh = b != NULL ? PEM_read_bio_Parameters(b, NULL) : NULL;

    BIO_free(b);
    if (dh == NULL) {
        char reason[200];
        ssl_reason(reason, sizeof(reason));
        ERR_clear_error();
        snprintf(err, errlen, "dhparamfile '%s': no PEM DH parameters in it (%s)", path, reason);
        return -1;
    }
    if (EVP_PKEY_get_base_id(dh) != EVP_PKEY_DH) {
        EVP_PKEY_free(dh);
        snprintf(err, errlen, "dhparamfile '%s': not DH parameters", path);
        return -1;
    }
    if (SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) { /* takes dh on success only */
        EVP_PKEY_free(dh);
        return ctx_fail(err, errlen, "dhparamfile", path);
    }
    return 0;
}

/* See tls.h. Main thread. */
SSL_CTX *
tls_ctx_build(const struct listener_conf *lc, int ws, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    ERR_clear_error();
    if (ctx == NULL) {
        ctx_fail(err, errlen, "cannot create TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, lc->tls_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* Partial writes: outbuf spans are consumed as far as they went.
     * Release buffers: idle connections keep no 34 KiB of record buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* A client closing TCP without close_notify is an ordinary disconnect for MQTT. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* A psk_hint listener may have no certificate: it then speaks PSK only. */
    if (lc->certfile != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, lc->certfile) != 1) {
            ctx_fail(err, errlen, "certfile", lc->certfile);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, lc->keyfile, SSL_FILETYPE_PEM) != 1) {
            ctx_fail(err, errlen, "keyfile", lc->keyfile);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            ctx_fail(err, errlen, "keyfile does not match certfile", lc->keyfile);
            goto fail;
        }
    }
    if (lc->dhparamfile != NULL && load_dhparams(ctx, lc->dhparamfile, err, errlen) < 0) {
        goto fail;
    }
    if (lc->psk_hint != NULL && tls_psk_setup(ctx, lc->psk_hint, lc->psk_file, err, errlen) < 0) {
        goto fail;
    }
    if (lc->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, lc->ciphers) != 1) {
        ctx_fail(err, errlen, "ciphers", lc->ciphers);
        goto fail;
    }
    if (lc->ciphers_tls13 != NULL && SSL_CTX_set_ciphersuites(ctx, lc->ciphers_tls13) != 1) {
        ctx_fail(err, errlen, "ciphers_tls1.3", lc->ciphers_tls13);
        goto fail;
    }
    if (lc->cafile != NULL || lc->capath != NULL) {
        int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
        if (SSL_CTX_load_verify_locations(ctx, lc->cafile, lc->capath) != 1) {
            ctx_fail(err, errlen, lc->cafile ? "cafile" : "capath",
                     lc->cafile ? lc->cafile : lc->capath);
            goto fail;
        }
        if (lc->cafile != NULL) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(lc->cafile);
            if (names != NULL) {
                SSL_CTX_set_client_CA_list(ctx, names);
            }
        }
        if (lc->require_certificate) {
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        }
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    if (lc->crlfile != NULL) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lk = X509_STORE_add_lookup(st, X509_LOOKUP_file());
        if (lk == NULL || X509_load_crl_file(lk, lc->crlfile, X509_FILETYPE_PEM) <= 0) {
            ctx_fail(err, errlen, "crlfile", lc->crlfile);
            goto fail;
        }
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, ws ? (void *)1 : NULL);
    /* Clients resume with stateless tickets (TLS 1.2 and 1.3); no server-side
     * session cache, which every worker would share under one lock. One TLS 1.3
     * ticket per handshake instead of OpenSSL's two: an MQTT client needs one
     * for its next reconnect (and gets a new one then), and each ticket costs
     * the server an encryption and a record. The context id keeps tickets per
     * listener. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"midge", 5);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* See tls.h. [worker thread] */
struct tls_conn *
tls_conn_new(SSL_CTX *ctx, int fd, enum tls_identity id)
{
    struct tls_conn *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return NULL;
    }
    t->ssl = SSL_new(ctx);
    if (t->ssl == NULL || SSL_set_fd(t->ssl, fd) != 1) {
        ERR_clear_error();
        tls_conn_free(t);
        return NULL;
    }
    SSL_set_accept_state(t->ssl);
    SSL_set_app_data(t->ssl, t); /* for tls_conn_psk_used */
    t->id_mode = (uint8_t)id;
    return t;
}

static char *
name_rfc2253(X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    char *data;
    long len;

    if (b == NULL) {
        return NULL;
    }
    if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
        len = BIO_get_mem_data(b, &data);
        s = strndup(data, (size_t)len);
    }
    BIO_free(b);
    return s;
}

/* Keeps what plugins and use_*_as_username need from the peer certificate. */
static void
handshake_done(struct tls_conn *t)
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    GENERAL_NAMES *sans;
    char cn[256];
    int i;

    t->established = 1;
    if (cert == NULL) {
        return;
    }
    t->verified = SSL_get_verify_result(t->ssl) == X509_V_OK;
    t->subject = name_rfc2253(X509_get_subject_name(cert));
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) >
        0) {
        t->cn = strdup(cn);
    }
    t->issuer = name_rfc2253(X509_get_issuer_name(cert));
    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (sans != NULL && sk_GENERAL_NAME_num(sans) > 0) {
        int n = sk_GENERAL_NAME_num(sans) < TLS_MAX_SANS ? sk_GENERAL_NAME_num(sans) : TLS_MAX_SANS;
        t->sans = calloc((size_t)n, sizeof(*t->sans));
        for (i = 0; t->sans != NULL && i < n; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
            char *v = NULL;
            if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
                const ASN1_IA5STRING *s = g->d.ia5;
                v = strndup((const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
                if (t->san == NULL && v != NULL) {
                    t->san = strdup(v);
                }
            } else if (g->type == GEN_IPADD) {
                char ip[INET6_ADDRSTRLEN];
                int len = ASN1_STRING_length(g->d.ip);
                const unsigned char *b = ASN1_STRING_get0_data(g->d.ip);
                if ((len == 4 && inet_ntop(AF_INET, b, ip, sizeof(ip)) != NULL) ||
                    (len == 16 && inet_ntop(AF_INET6, b, ip, sizeof(ip)) != NULL)) {
                    v = strdup(ip);
                }
            }
            if (v != NULL) {
                t->sans[t->nsans++] = v;
            }
        }
    }
    GENERAL_NAMES_free(sans);
}

/* Maps an SSL_* failure to read(2)'s convention. */
static ssize_t
ssl_failed(struct tls_conn *t, int r, int reading)
{
    int e = SSL_get_error(t->ssl, r);
    const char *stage = t->established ? "tls error" : "tls handshake failed";
    char reason[200];

    switch (e) {
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (reading) {
            t->read_wants_write = 1;
        }
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        /* The peer sent close_notify. For a read that is the end of the stream;
         * a write can never succeed again (returning 0 there made flush loops spin). */
        if (t->established && reading) {
            return 0;
        }
        if (t->established) {
            snprintf(t->err, sizeof(t->err), "tls error: connection closed by peer");
            errno = EPIPE;
            return -1;
        }
        snprintf(t->err, sizeof(t->err), "%s: connection closed by peer", stage);
        errno = ECONNRESET;
        return -1;
    case SSL_ERROR_SYSCALL:
        snprintf(t->err, sizeof(t->err), "%s: %s", stage,
                 errno != 0 ? strerror(errno) : "connection closed by peer");
        if (errno == 0) {
            errno = ECONNRESET;
        }
        return -1;
    default:
        ssl_reason(reason, sizeof(reason));
        if (t->psk_unknown && t->psk_identity == NULL) {
            /* OpenSSL's own reason ("no suitable signature algorithm", ...) hides this. */
            snprintf(t->err, sizeof(t->err), "%s: unknown PSK identity (%s)", stage, reason);
        } else if (SSL_get_verify_result(t->ssl) != X509_V_OK) {
            snprintf(t->err, sizeof(t->err), "%s: %s (%s)", stage, reason,
                     X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
        } else {
            snprintf(t->err, sizeof(t->err), "%s: %s", stage, reason);
        }
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

/* See tls.h. Reads several records when they are there, up to len. [worker thread] */
ssize_t
tls_conn_read(struct tls_conn *t, void *buf, size_t len)
{
    size_t got = 0;

    ERR_clear_error();
    errno = 0;
    t->read_wants_write = 0;
    if (!t->established) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            return ssl_failed(t, r, 1);
        }
        handshake_done(t);
    }
    /* Whole records only while there is room for one (16 KiB of plaintext), so
     * that nothing decrypted stays behind in OpenSSL without a socket event. */
    while (got < len && (got == 0 || len - got >= XPORT_READ_MIN)) {
        size_t n = 0;
        int r = SSL_read_ex(t->ssl, (char *)buf + got, len - got, &n);
        if (r != 1) {
            ssize_t f;
            if (got > 0) {
                /* Deliver what we have; a failure shows again on the next call. */
                ERR_clear_error();
                break;
            }
            f = ssl_failed(t, r, 1);
            return f;
        }
        got += n;
    }
    return (ssize_t)got;
}

/* See tls.h. [worker thread] */
ssize_t
tls_conn_write(struct tls_conn *t, const void *buf, size_t len)
{
    size_t n = 0;
    int r;

    ERR_clear_error();
    errno = 0;
    r = SSL_write_ex(t->ssl, buf, len, &n);
    if (r != 1) {
        return ssl_failed(t, r, 0);
    }
    return (ssize_t)n;
}

int
tls_conn_read_wants_write(const struct tls_conn *t)
{
    return t->read_wants_write;
}

int
tls_conn_pending(const struct tls_conn *t)
{
    return t->established && SSL_pending(t->ssl) > 0;
}

int
tls_conn_handshaking(const struct tls_conn *t)
{
    return !t->established;
}

const char *
tls_conn_error(const struct tls_conn *t)
{
    return t->err[0] != '\0' ? t->err : "tls error";
}

/* See tls_psk.h. [worker thread] */
void
tls_conn_psk_seen(SSL *ssl, const char *identity, int known)
{
    struct tls_conn *t = SSL_get_app_data(ssl);

    if (t == NULL) {
        return;
    }
    if (!known) {
        t->psk_unknown = 1;
        return;
    }
    free(t->psk_identity);
    t->psk_identity = strdup(identity); /* NULL when out of memory: no identity */
}

const char *
tls_conn_identity(const struct tls_conn *t)
{
    /* A pre-shared key names its client like a certificate's CN (mosquitto). */
    if (t->psk_identity != NULL && t->established && t->id_mode == TLS_ID_CN) {
        return t->psk_identity;
    }
    if (!t->verified) {
        return NULL;
    }
    switch (t->id_mode) {
    case TLS_ID_CN:
        return t->cn;
    case TLS_ID_SUBJECT:
        return t->subject;
    default:
        return NULL;
    }
}

/* Best effort: one close_notify, no waiting (the socket closes right after). */
void
tls_conn_shutdown(struct tls_conn *t)
{
    if (t->established) {
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
}

void
tls_conn_free(struct tls_conn *t)
{
    if (t == NULL) {
        return;
    }
    SSL_free(t->ssl);
    free(t->subject);
    free(t->cn);
    free(t->san);
    free(t->issuer);
    free(t->psk_identity);
    while (t->nsans > 0) {
        free(t->sans[--t->nsans]);
    }
    free(t->sans);
    free(t);
}

/* See tls.h. [worker thread] */
int
tls_conn_info(const struct conn *c, struct midge_tls_info *info)
{
    const struct tls_conn *t = xport_tls(c);
    uint32_t size;

    if (t == NULL || !t->established) {
        return -MIDGE_ENOENT;
    }
    if (info == NULL || info->size < sizeof(uint32_t)) {
        return -MIDGE_EINVAL;
    }
    size = info->size < sizeof(*info) ? info->size : (uint32_t)sizeof(*info);
    {
        struct midge_tls_info full;
        memset(&full, 0, sizeof(full));
        full.size = size;
        full.version = SSL_get_version(t->ssl);
        full.cipher = SSL_get_cipher_name(t->ssl);
        full.subject = t->subject;
        full.san = t->san;
        full.verified = t->verified;
        full.issuer = t->issuer;
        full.sans = (const char *const *)t->sans;
        full.san_count = t->nsans;
        memcpy(info, &full, size);
    }
    return 0;
}
