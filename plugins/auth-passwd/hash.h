/*
 * Password hash schemes of mosquitto's password files, shared by the
 * auth-passwd plugin and the midge_passwd tool:
 *
 *   $6$SALT$HASH               SHA-512(password || salt), base64 (mosquitto <= 1.6)
 *   $7$ITER$SALT$HASH          PBKDF2-HMAC-SHA512, ITER iterations, 64-byte key (mosquitto 2.x)
 *   $argon2id$v=19$m=,t=,p=$.. argon2id in libargon2's encoding (mosquitto 2.1)
 *
 * SALT and HASH of $6$/$7$ are standard base64 with padding. Pure code: no
 * globals, thread-safe, no I/O.
 */
#ifndef AUTH_PASSWD_HASH_H
#define AUTH_PASSWD_HASH_H

#include <stddef.h>
#include <stdint.h>

enum pw_scheme {
    PW_SHA512 = 6,   /* $6$ */
    PW_PBKDF2 = 7,   /* $7$ */
    PW_ARGON2ID = 9, /* $argon2id$ */
};

#define PW_HASH_LEN 64           /* SHA-512 output, and the PBKDF2 key length mosquitto uses */
#define PW_SALT_MIN 8            /* shorter salts are refused when parsing */
#define PW_SALT_MAX 64           /* mosquitto 2.1 writes 64-byte salts; 2.0 reads only 12 */
#define PW_SALT_DEFAULT 12       /* the salt length mosquitto 2.0 requires */
#define PW_ITER_DEFAULT 210000u  /* OWASP 2023 figure for PBKDF2-HMAC-SHA512 */
#define PW_ITER_MAX 10000000u    /* ~5 s of CPU here: a larger value is a typo or an attack */
#define PW_ENCODED_MAX 256       /* longest argon2id string we accept (ours: ~100) */
#define PW_LINE_MAX 300          /* longest hash text pw_hash_new() writes, with its NUL */

/* argon2id parameters of new hashes: OWASP's 19 MiB, 2 passes, 1 lane. */
#define PW_ARGON2_T 2u
#define PW_ARGON2_M 19456u       /* KiB */
#define PW_ARGON2_P 1u
#define PW_ARGON2_SALT 16
#define PW_ARGON2_HASH 32
#define PW_ARGON2_M_MAX 1048576u /* 1 GiB per login: more is refused when parsing */

/*
 * One parsed hash. Self-contained (no pointers), so it is copied by value
 * into a verification job and the password table can change meanwhile.
 */
struct pw_hash {
    int scheme;                   /* enum pw_scheme */
    uint32_t iterations;          /* $7$ */
    size_t salt_len;              /* $6$, $7$ */
    uint8_t salt[PW_SALT_MAX];
    uint8_t hash[PW_HASH_LEN];    /* $6$, $7$ */
    char encoded[PW_ENCODED_MAX]; /* $argon2id$: the whole string, checked by libargon2 */
};

/*
 * Parses the hash part of a password file line. Returns 0, or -1 with
 * *why set to a static lower-case explanation (never containing the
 * input).
 */
int pw_hash_parse(const char *text, struct pw_hash *out, const char **why);

/*
 * Checks `pw` (binary, len bytes) against h. Constant time in the content
 * of the password and of the stored hash (CRYPTO_memcmp, argon2's own
 * constant-time compare). Returns 1 match, 0 mismatch, -1 internal error
 * (out of memory in OpenSSL or libargon2).
 */
int pw_verify(const struct pw_hash *h, const void *pw, size_t len);

/*
 * Writes a new hash of `pw` with a random salt into out (NUL-terminated,
 * at most outlen bytes; PW_LINE_MAX is enough). `iterations`: $7$ only (0:
 * PW_ITER_DEFAULT); `salt_len`: $6$/$7$ only (0: PW_SALT_DEFAULT). Returns
 * 0, or -1 with *why set.
 */
int pw_hash_new(int scheme, uint32_t iterations, size_t salt_len, const void *pw, size_t len,
                char *out, size_t outlen, const char **why);

/*
 * Makes a hash that matches no password with the same cost as `like` (a
 * fresh random salt and a random target), used for unknown users so that
 * they cost what a wrong password costs. Returns 0 or -1.
 */
int pw_hash_dummy(const struct pw_hash *like, struct pw_hash *out);

/* "sha512-pbkdf2", "sha512", "argon2id" -> enum pw_scheme; -1 when unknown. */
int pw_scheme_from_name(const char *name);

/* 1 when `text` is a hash pw_hash_parse() accepts (so -U does not hash a hash again). */
int pw_looks_hashed(const char *text);

/*
 * Standard base64. pw_b64_decode accepts padded or unpadded input and
 * returns the decoded length, or -1 on bad input or when it would exceed
 * outlen. pw_b64_encode writes NUL-terminated text with padding and
 * returns its length, or -1 when outlen is too small.
 */
int pw_b64_decode(const char *in, size_t inlen, uint8_t *out, size_t outlen);
int pw_b64_encode(const uint8_t *in, size_t inlen, char *out, size_t outlen);

#endif
