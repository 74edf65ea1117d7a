/*
 * The password file: `username:hash` lines, `#` comments, blank lines.
 * Parsed whole into an immutable table, so a broken file never replaces a
 * good one half-way (SIGHUP keeps the previous table). Pure code plus file
 * reading; no globals; a table is read-only once built and may be shared
 * by threads.
 */
#ifndef AUTH_PASSWD_PWFILE_H
#define AUTH_PASSWD_PWFILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hash.h"

#define PW_FILE_MAX (64u * 1024u * 1024u) /* refuse larger files: surely not a password file */
#define PW_ERR_MAX 512                    /* room for "FILE:LINE: reason" */

/* One user. Owned by its table. */
struct pw_entry {
    char *name;       /* as in the file, blanks around it trimmed */
    char *hash_text;  /* the hash as written, to tell at reload whether it changed */
    unsigned line;    /* 1-based line number */
    struct pw_hash hash;
};

/* A parsed file. Owns everything it points to; freed by pw_table_free(). */
struct pw_table {
    struct pw_entry *v; /* sorted by name (strcmp) */
    size_t n;
    struct pw_hash dummy; /* matches nothing; costs what the first user's hash costs */
    uint8_t digest[32];   /* SHA-256 of the file's bytes: "did the file change" */
    mode_t mode;          /* permission bits of the file (0 for pw_table_parse) */
};

/*
 * Parses `len` bytes of a password file. `name` is used in messages. On
 * success returns 0 and *out owns the new table. On failure returns -1 and
 * err holds "NAME:LINE: reason" (never a password or a hash).
 */
int pw_table_parse(const char *name, const char *buf, size_t len, struct pw_table **out, char *err,
                   size_t errlen);

/*
 * Reads and parses the file at `path` (see pw_table_parse); errors about
 * the file itself read "PATH: cannot open: Permission denied" and the like.
 */
int pw_table_load(const char *path, struct pw_table **out, char *err, size_t errlen);

/* The entry of user `name`, or NULL. Borrowed from t. Thread-safe. */
const struct pw_entry *pw_table_find(const struct pw_table *t, const char *name);

void pw_table_free(struct pw_table *t);

/*
 * NULL when `name` may be a user name in a password file, else why not:
 * empty, longer than 65535 bytes (MQTT's limit), starts or ends with a
 * space (the file format trims them), contains ':' or a control character
 * (they could not be written back safely or typed by a client).
 */
const char *pw_username_check(const char *name);

#endif
