/*
 * Password hash schemes ($6$, $7$, $argon2id$): parsing, verification and
 * creation. See hash.h. OpenSSL 3 (EVP, PKCS5_PBKDF2_HMAC, RAND_bytes,
 * CRYPTO_memcmp) and libargon2; no globals.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hash.h"

static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
b64_value(char c)
{
    const char *p;

    if (c == '\0') {
        return -1;
    }
    p = strchr(b64_chars, c);
    return p != NULL ? (int)(p - b64_chars) : -1;
}

/* See hash.h. Padding is optional; anything after it is an error. */
int
pw_b64_decode(const char *in, size_t inlen, uint8_t *out, size_t outlen)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    size_t i;
    size_t pad = 0;

    while (inlen > 0 && in[inlen - 1] == '=') {
        inlen--;
        pad++;
    }
    if (pad > 2 || (pad > 0 && (inlen + pad) % 4 != 0) || inlen % 4 == 1) {
        return -1;
    }
    for (i = 0; i < inlen; i++) {
        int v = b64_value(in[i]);

        if (v < 0) {
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= outlen) {
                return -1;
            }
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return (int)n;
}

/* See hash.h. */
int
pw_b64_encode(const uint8_t *in, size_t inlen, char *out, size_t outlen)
{
    size_t need = (inlen + 2) / 3 * 4 + 1;
    size_t i;
    size_t o = 0;

    if (outlen < need) {
        return -1;
    }
    for (i = 0; i < inlen; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;

        if (i + 1 < inlen) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < inlen) {
            v |= in[i + 2];
        }
        out[o++] = b64_chars[(v >> 18) & 63];
        out[o++] = b64_chars[(v >> 12) & 63];
        out[o++] = i + 1 < inlen ? b64_chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < inlen ? b64_chars[v & 63] : '=';
    }
    out[o] = '\0';
    return (int)o;
}

/* Parses a decimal number in [min, max] spanning exactly s[0..len). */
static int
parse_u32(const char *s, size_t len, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (len == 0 || len > 10) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < min || v > max) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* Parses "SALT$HASH" of $6$ and $7$. */
static int
parse_salt_hash(const char *p, struct pw_hash *out, const char **why)
{
    const char *dollar = strchr(p, '$');
    int n;

    if (dollar == NULL) {
        *why = "missing '$' between salt and hash";
        return -1;
    }
    n = pw_b64_decode(p, (size_t)(dollar - p), out->salt, sizeof(out->salt));
    if (n < 0) {
        *why = "salt is not base64 or longer than 64 bytes";
        return -1;
    }
    if (n < PW_SALT_MIN) {
        *why = "salt is shorter than 8 bytes";
        return -1;
    }
    out->salt_len = (size_t)n;
    n = pw_b64_decode(dollar + 1, strlen(dollar + 1), out->hash, sizeof(out->hash));
    if (n != PW_HASH_LEN) {
        *why = "hash is not 64 bytes of base64";
        return -1;
    }
    return 0;
}

/*
 * Checks the shape of "$argon2id$v=19$m=M,t=T,p=P$SALT$HASH" and bounds M,
 * T and P, so a line cannot make every login allocate gigabytes.
 * libargon2 decodes it again when verifying.
 */
static int
parse_argon2(const char *text, struct pw_hash *out, const char **why)
{
    static const char prefix[] = "$argon2id$v=19$m=";
    const char *p = text + sizeof(prefix) - 1;
    const char *end;
    uint32_t m, t, lanes;
    uint8_t buf[1024];
    int n;

    if (strlen(text) >= sizeof(out->encoded)) {
        *why = "argon2id hash is too long";
        return -1;
    }
    if (strncmp(text, prefix, sizeof(prefix) - 1) != 0) {
        *why = "argon2id hash does not start with $argon2id$v=19$m=";
        return -1;
    }
    end = strchr(p, ',');
    if (end == NULL || parse_u32(p, (size_t)(end - p), 8, PW_ARGON2_M_MAX, &m) != 0 ||
        strncmp(end, ",t=", 3) != 0) {
        *why = "argon2id memory cost m= is missing or not between 8 and 1048576 KiB";
        return -1;
    }
    p = end + 3;
    end = strchr(p, ',');
    if (end == NULL || parse_u32(p, (size_t)(end - p), 1, 1000, &t) != 0 ||
        strncmp(end, ",p=", 3) != 0) {
        *why = "argon2id time cost t= is missing or not between 1 and 1000";
        return -1;
    }
    p = end + 3;
    end = strchr(p, '$');
    if (end == NULL || parse_u32(p, (size_t)(end - p), 1, 255, &lanes) != 0) {
        *why = "argon2id parallelism p= is missing or not between 1 and 255";
        return -1;
    }
    p = end + 1;
    end = strchr(p, '$');
    if (end == NULL || (n = pw_b64_decode(p, (size_t)(end - p), buf, sizeof(buf))) < PW_SALT_MIN) {
        *why = "argon2id salt is missing, not base64 or shorter than 8 bytes";
        return -1;
    }
    n = pw_b64_decode(end + 1, strlen(end + 1), buf, sizeof(buf));
    if (n < 4) {
        *why = "argon2id hash is missing or not base64";
        return -1;
    }
    (void)m;
    (void)t;
    (void)lanes;
    strcpy(out->encoded, text);
    return 0;
}

/* See hash.h. */
int
pw_hash_parse(const char *text, struct pw_hash *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(text, "$6$", 3) == 0) {
        out->scheme = PW_SHA512;
        return parse_salt_hash(text + 3, out, why);
    }
    if (strncmp(text, "$7$", 3) == 0) {
        const char *p = text + 3;
        const char *dollar = strchr(p, '$');

        out->scheme = PW_PBKDF2;
        if (dollar == NULL ||
            parse_u32(p, (size_t)(dollar - p), 1, PW_ITER_MAX, &out->iterations) != 0) {
            *why = "iteration count of $7$ is missing or not between 1 and 10000000";
            return -1;
        }
        return parse_salt_hash(dollar + 1, out, why);
    }
    if (strncmp(text, "$argon2id$", 10) == 0) {
        out->scheme = PW_ARGON2ID;
        return parse_argon2(text, out, why);
    }
    if (text[0] == '$') {
        *why = "unknown hash type (midge reads $6$, $7$ and $argon2id$)";
    } else if (text[0] == '\0') {
        *why = "no password hash after ':'";
    } else {
        *why = "password is not hashed (plain text? hash the file with midge_passwd -U)";
    }
    return -1;
}

/* SHA-512(pw || salt) into out[64]. 0 or -1. */
static int
sha512_salted(const void *pw, size_t len, const uint8_t *salt, size_t salt_len, uint8_t *out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int olen = 0;
    int rc = -1;

    if (ctx == NULL) {
        goto out;
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) != 1 || EVP_DigestUpdate(ctx, pw, len) != 1 ||
        EVP_DigestUpdate(ctx, salt, salt_len) != 1 || EVP_DigestFinal_ex(ctx, out, &olen) != 1 ||
        olen != PW_HASH_LEN) {
        goto out;
    }
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* The 64-byte digest of pw for a $6$ or $7$ hash h. 0 or -1. */
static int
digest(const struct pw_hash *h, const void *pw, size_t len, uint8_t *out)
{
    if (h->scheme == PW_SHA512) {
        return sha512_salted(pw, len, h->salt, h->salt_len, out);
    }
    if (len > INT_MAX) {
        return -1;
    }
    /* A zero-length password: OpenSSL wants a non-NULL pointer. */
    return PKCS5_PBKDF2_HMAC(len > 0 ? pw : "", (int)len, h->salt, (int)h->salt_len,
                             (int)h->iterations, EVP_sha512(), PW_HASH_LEN, out) == 1
               ? 0
               : -1;
}

/* See hash.h. */
int
pw_verify(const struct pw_hash *h, const void *pw, size_t len)
{
    uint8_t d[PW_HASH_LEN];
    int rc;

    if (h->scheme == PW_ARGON2ID) {
        rc = argon2id_verify(h->encoded, len > 0 ? pw : "", len);
        if (rc == ARGON2_OK) {
            return 1;
        }
        return rc == ARGON2_VERIFY_MISMATCH ? 0 : -1;
    }
    if (digest(h, pw, len, d) != 0) {
        return -1;
    }
    rc = CRYPTO_memcmp(d, h->hash, PW_HASH_LEN) == 0;
    OPENSSL_cleanse(d, sizeof(d));
    return rc;
}

/* See hash.h. */
int
pw_hash_new(int scheme, uint32_t iterations, size_t salt_len, const void *pw, size_t len,
            char *out, size_t outlen, const char **why)
{
    struct pw_hash h;
    char salt64[PW_SALT_MAX * 2];
    char hash64[PW_HASH_LEN * 2];
    int n;

    memset(&h, 0, sizeof(h));
    h.scheme = scheme;
    if (scheme == PW_ARGON2ID) {
        uint8_t salt[PW_ARGON2_SALT];

        if (RAND_bytes(salt, sizeof(salt)) != 1) {
            *why = "no random bytes for the salt";
            return -1;
        }
        n = argon2id_hash_encoded(PW_ARGON2_T, PW_ARGON2_M, PW_ARGON2_P, len > 0 ? pw : "", len,
                                  salt, sizeof(salt), PW_ARGON2_HASH, out, outlen);
        if (n != ARGON2_OK) {
            *why = argon2_error_message(n);
            return -1;
        }
        return 0;
    }
    if (scheme != PW_SHA512 && scheme != PW_PBKDF2) {
        *why = "unknown hash scheme";
        return -1;
    }
    h.iterations = iterations > 0 ? iterations : PW_ITER_DEFAULT;
    h.salt_len = salt_len > 0 ? salt_len : PW_SALT_DEFAULT;
    if (h.iterations > PW_ITER_MAX) {
        *why = "iterations must be between 1 and 10000000";
        return -1;
    }
    if (h.salt_len < PW_SALT_MIN || h.salt_len > PW_SALT_MAX) {
        *why = "salt length must be between 8 and 64 bytes";
        return -1;
    }
    if (RAND_bytes(h.salt, (int)h.salt_len) != 1) {
        *why = "no random bytes for the salt";
        return -1;
    }
    if (digest(&h, pw, len, h.hash) != 0) {
        *why = "hashing failed (OpenSSL)";
        return -1;
    }
    pw_b64_encode(h.salt, h.salt_len, salt64, sizeof(salt64));
    pw_b64_encode(h.hash, PW_HASH_LEN, hash64, sizeof(hash64));
    OPENSSL_cleanse(h.hash, sizeof(h.hash));
    if (scheme == PW_SHA512) {
        n = snprintf(out, outlen, "$6$%s$%s", salt64, hash64);
    } else {
        n = snprintf(out, outlen, "$7$%u$%s$%s", (unsigned)h.iterations, salt64, hash64);
    }
    if (n < 0 || (size_t)n >= outlen) {
        *why = "output buffer too small";
        return -1;
    }
    return 0;
}

/* See hash.h. */
int
pw_hash_dummy(const struct pw_hash *like, struct pw_hash *out)
{
    uint8_t junk[32];
    int rc = -1;

    *out = *like;
    if (RAND_bytes(junk, sizeof(junk)) != 1) {
        goto out;
    }
    if (like->scheme == PW_ARGON2ID) {
        /* Same m, t, p as `like`: hash random bytes with them. */
        uint32_t m = PW_ARGON2_M, t = PW_ARGON2_T, lanes = PW_ARGON2_P;
        uint8_t salt[PW_ARGON2_SALT];

        if (sscanf(like->encoded, "$argon2id$v=19$m=%u,t=%u,p=%u$", &m, &t, &lanes) != 3 ||
            RAND_bytes(salt, sizeof(salt)) != 1 ||
            argon2id_hash_encoded(t, m, lanes, junk, sizeof(junk), salt, sizeof(salt),
                                  PW_ARGON2_HASH, out->encoded, sizeof(out->encoded)) != ARGON2_OK) {
            goto out;
        }
        rc = 0;
        goto out;
    }
    if (RAND_bytes(out->salt, (int)out->salt_len) != 1 ||
        RAND_bytes(out->hash, PW_HASH_LEN) != 1) {
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(junk, sizeof(junk));
    return rc;
}

/* See hash.h. */
int
pw_scheme_from_name(const char *name)
{
    if (strcmp(name, "sha512-pbkdf2") == 0) {
        return PW_PBKDF2;
    }
    if (strcmp(name, "sha512") == 0) {
        return PW_SHA512;
    }
    if (strcmp(name, "argon2id") == 0) {
        return PW_ARGON2ID;
    }
    return -1;
}

/* See hash.h. */
int
pw_looks_hashed(const char *text)
{
    struct pw_hash h;
    const char *why = NULL;

    return pw_hash_parse(text, &h, &why) == 0;
}
