/*
 * HTTP Basic credentials checked against a mosquitto-style password file,
 * with auth-passwd's own code (pwfile.c, hash.c, cache.c are compiled
 * into this plugin too): the same file serves MQTT and HTTP logins.
 * Successful checks are cached for a minute (HMAC of user and password,
 * see auth-passwd/cache.h), so a dashboard polling every second costs one
 * PBKDF2 or argon2 run a minute, not one a request. Unknown users cost
 * what a wrong password costs. Thread-safe.
 */
#ifndef HTTP_ADMIN_BASIC_AUTH_H
#define HTTP_ADMIN_BASIC_AUTH_H

#include <stddef.h>

struct basic_auth;

/*
 * Loads the password file. Returns the checker, or NULL with a
 * "PATH:LINE: reason" or "PATH: cannot open: ..." message in err.
 */
struct basic_auth *basic_auth_new(const char *path, char *err, size_t errlen);

/* 1 when `user` with password `pw` (len bytes) is in the file, else 0. */
int basic_auth_check(struct basic_auth *a, const char *user, const char *pw, size_t len);

/* Number of users in the file. */
size_t basic_auth_users(const struct basic_auth *a);

void basic_auth_free(struct basic_auth *a);

#endif
