/* TLS-PSK keys from psk_file and the server callback (see tls_psk.h). */
#include "tls_psk.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* One identity and its key. */
struct psk_key {
    char *identity;
    unsigned char key[PSK_MAX_PSK_LEN];
    unsigned keylen;
};

/* The keys of one psk_file, sorted by identity. Owned by its SSL_CTX (ex data). */
struct psk_table {
    struct psk_key *keys;
    size_t n;
};

static int ctx_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void
table_free(struct psk_table *t)
{
    size_t i;

    if (t == NULL) {
        return;
    }
    for (i = 0; i < t->n; i++) {
        free(t->keys[i].identity);
    }
    if (t->keys != NULL) {
        OPENSSL_cleanse(t->keys, t->n * sizeof(*t->keys));
    }
    free(t->keys);
    free(t);
}

/* ex data destructor: the context is being freed. */
static void
table_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    table_free(ptr);
}

static void
make_index(void)
{
    ctx_index = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, NULL, NULL, NULL,
                                        table_ex_free);
}

static int
by_identity(const void *a, const void *b)
{
    return strcmp(((const struct psk_key *)a)->identity, ((const struct psk_key *)b)->identity);
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Parses one "identity:hexkey" line into k; returns NULL or what is wrong. */
static const char *
parse_line(char *line, struct psk_key *k)
{
    char *colon = strchr(line, ':');
    char *hex;
    size_t hl;
    size_t i;

    if (colon == NULL) {
        return "expected identity:hexkey";
    }
    *colon = '\0';
    hex = colon + 1;
    if (colon == line) {
        return "empty identity";
    }
    if (strlen(line) > PSK_MAX_IDENTITY_LEN) {
        return "identity too long";
    }
    hl = strlen(hex);
    if (hl == 0) {
        return "empty key";
    }
    if (hl % 2 != 0) {
        return "key has an odd number of hex digits";
    }
    if (hl / 2 > PSK_MAX_PSK_LEN) {
        return "key longer than 512 bytes";
    }
    for (i = 0; i < hl; i += 2) {
        int hi = hexval((unsigned char)hex[i]);
        int lo = hexval((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0) {
            return "key is not hexadecimal";
        }
        k->key[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    k->keylen = (unsigned)(hl / 2);
    if ((k->identity = strdup(line)) == NULL) {
        return "out of memory";
    }
    return NULL;
}

/* Reads file into a new table; NULL with the reason in err. */
static struct psk_table *
table_load(const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "re");
    struct psk_table *t = calloc(1, sizeof(*t));
    size_t cap = 0;
    char line[2048];
    int lineno = 0;
    size_t i;

    if (f == NULL || t == NULL) {
        snprintf(err, errlen, "psk_file '%s': %s", file,
                 f == NULL ? "cannot read it" : "out of memory");
        goto fail;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        const char *why;
        char *s = line;

        lineno++;
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            snprintf(err, errlen, "psk_file '%s' line %d: line too long", file, lineno);
            goto fail;
        }
        while (len > 0 && isspace((unsigned char)line[len - 1])) {
            line[--len] = '\0';
        }
        while (isspace((unsigned char)*s)) {
            s++;
        }
        if (*s == '\0' || *s == '#') {
            continue;
        }
        if (t->n == cap) {
            struct psk_key *k = realloc(t->keys, (cap ? cap * 2 : 8) * sizeof(*k));
            if (k == NULL) {
                snprintf(err, errlen, "psk_file '%s': out of memory", file);
                goto fail;
            }
            t->keys = k;
            cap = cap ? cap * 2 : 8;
        }
        memset(&t->keys[t->n], 0, sizeof(t->keys[t->n]));
        why = parse_line(s, &t->keys[t->n]);
        OPENSSL_cleanse(line, sizeof(line));
        if (why != NULL) {
            snprintf(err, errlen, "psk_file '%s' line %d: %s", file, lineno, why);
            goto fail;
        }
        t->n++;
    }
    fclose(f);
    f = NULL;
    if (t->n > 1) {
        qsort(t->keys, t->n, sizeof(*t->keys), by_identity);
    }
    for (i = 1; i < t->n; i++) {
        if (strcmp(t->keys[i - 1].identity, t->keys[i].identity) == 0) {
            snprintf(err, errlen, "psk_file '%s': identity '%s' appears twice", file,
                     t->keys[i].identity);
            goto fail;
        }
    }
    return t;
fail:
    if (f != NULL) {
        fclose(f);
    }
    table_free(t);
    return NULL;
}

/*
 * OpenSSL's PSK server callback: the key of `identity`, or 0 (unknown
 * identity: the handshake fails, or in TLS 1.3 goes on with a certificate).
 * [worker thread]
 */
static unsigned int
psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk, unsigned int max_psk_len)
{
    const struct psk_table *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
    struct psk_key want;
    const struct psk_key *k;

    if (t == NULL || identity == NULL) {
        return 0;
    }
    want.identity = (char *)identity;
    k = bsearch(&want, t->keys, t->n, sizeof(*t->keys), by_identity);
    if (k == NULL || k->keylen > max_psk_len) {
        tls_conn_psk_seen(ssl, identity, 0);
        return 0;
    }
    memcpy(psk, k->key, k->keylen);
    tls_conn_psk_seen(ssl, identity, 1);
    return k->keylen;
}

/* See tls_psk.h. Main thread. */
int
tls_psk_setup(SSL_CTX *ctx, const char *hint, const char *file, char *err, size_t errlen)
{
    struct psk_table *t;

    pthread_once(&index_once, make_index);
    if (ctx_index < 0) {
        snprintf(err, errlen, "psk: no OpenSSL ex data index");
        return -1;
    }
    if ((t = table_load(file, err, errlen)) == NULL) {
        return -1;
    }
    if (SSL_CTX_set_ex_data(ctx, ctx_index, t) != 1) {
        table_free(t);
        snprintf(err, errlen, "psk: out of memory");
        return -1;
    }
    if (SSL_CTX_use_psk_identity_hint(ctx, hint) != 1) {
        snprintf(err, errlen, "psk_hint '%s': refused by OpenSSL (too long?)", hint);
        return -1; /* the table goes with the context */
    }
    SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
    return 0;
}
