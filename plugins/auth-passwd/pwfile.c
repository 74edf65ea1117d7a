/*
 * Password file parsing: see pwfile.h. The file is read into memory in one
 * go, hashed (SHA-256, to notice changes at reload) and parsed line by
 * line; any bad line fails the whole file with "FILE:LINE: reason".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "pwfile.h"

/* See pwfile.h. */
const char *
pw_username_check(const char *name)
{
    const unsigned char *p;

    if (name[0] == '\0') {
        return "user name is empty";
    }
    if (strlen(name) > 65535) {
        return "user name is longer than 65535 bytes";
    }
    if (name[0] == ' ' || name[strlen(name) - 1] == ' ') {
        return "user name starts or ends with a space";
    }
    for (p = (const unsigned char *)name; *p != '\0'; p++) {
        if (*p == ':') {
            return "user name contains ':'";
        }
        if (*p < 0x20 || *p == 0x7f) {
            return "user name contains a control character";
        }
    }
    return NULL;
}

/* See pwfile.h. */
void
pw_table_free(struct pw_table *t)
{
    size_t i;

    if (t == NULL) {
        return;
    }
    for (i = 0; i < t->n; i++) {
        free(t->v[i].name);
        free(t->v[i].hash_text);
    }
    free(t->v);
    OPENSSL_cleanse(&t->dummy, sizeof(t->dummy));
    free(t);
}

static int
entry_cmp(const void *a, const void *b)
{
    const struct pw_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c != 0 ? c : (x->line < y->line ? -1 : x->line > y->line);
}

/* Blanks mosquitto trims around the name and the hash. */
static int
is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims blanks at both ends of s[0..*len) in place; returns the new start. */
static char *
trim(char *s, size_t *len)
{
    while (*len > 0 && is_blank(s[0])) {
        s++;
        (*len)--;
    }
    while (*len > 0 && is_blank(s[*len - 1])) {
        (*len)--;
    }
    s[*len] = '\0';
    return s;
}

/* Parses one non-comment line into e. 0, or -1 with *why set. `line` is modified. */
static int
parse_line(char *line, size_t len, struct pw_entry *e, const char **why)
{
    char *colon = memchr(line, ':', len);
    char *name;
    char *hash;
    size_t nlen, hlen;

    if (colon == NULL) {
        *why = "expected username:hash";
        return -1;
    }
    nlen = (size_t)(colon - line);
    hlen = len - nlen - 1;
    name = trim(line, &nlen);
    hash = trim(colon + 1, &hlen);
    if ((*why = pw_username_check(name)) != NULL) {
        return -1;
    }
    if (pw_hash_parse(hash, &e->hash, why) != 0) {
        return -1;
    }
    e->name = strdup(name);
    e->hash_text = strdup(hash);
    if (e->name == NULL || e->hash_text == NULL) {
        *why = "out of memory";
        return -1;
    }
    return 0;
}

/* See pwfile.h. */
int
pw_table_parse(const char *name, const char *buf, size_t len, struct pw_table **out, char *err,
               size_t errlen)
{
    struct pw_table *t = NULL;
    char *copy = NULL;
    size_t cap = 0;
    size_t pos = 0;
    unsigned lineno = 0;
    const char *why = NULL;
    size_t i;
    int rc = -1;

    *out = NULL;
    t = calloc(1, sizeof(*t));
    copy = malloc(len + 1);
    if (t == NULL || copy == NULL) {
        snprintf(err, errlen, "%s: out of memory", name);
        goto out;
    }
    memcpy(copy, buf, len);
    copy[len] = '\0';
    while (pos < len) {
        char *line = copy + pos;
        char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl != NULL ? (size_t)(nl - line) : len - pos;
        size_t k = 0;

        pos += ll + (nl != NULL);
        lineno++;
        if (ll > 0 && line[ll - 1] == '\r') {
            ll--; /* a file edited on Windows */
        }
        if (memchr(line, '\0', ll) != NULL) {
            snprintf(err, errlen, "%s:%u: line contains a NUL byte", name, lineno);
            goto out;
        }
        while (k < ll && is_blank(line[k])) {
            k++;
        }
        if (k == ll || line[k] == '#') {
            continue; /* blank line or comment */
        }
        if (t->n == cap) {
            /* Grow by doubling: blank lines and comments cost nothing. */
            size_t ncap = cap > 0 ? cap * 2 : 64;
            struct pw_entry *nv = realloc(t->v, ncap * sizeof(*nv));

            if (nv == NULL) {
                snprintf(err, errlen, "%s:%u: out of memory", name, lineno);
                goto out;
            }
            memset(nv + cap, 0, (ncap - cap) * sizeof(*nv));
            t->v = nv;
            cap = ncap;
        }
        if (parse_line(line, ll, &t->v[t->n], &why) != 0) {
            free(t->v[t->n].name);
            free(t->v[t->n].hash_text);
            t->v[t->n].name = t->v[t->n].hash_text = NULL;
            snprintf(err, errlen, "%s:%u: %s", name, lineno, why);
            goto out;
        }
        t->v[t->n].line = lineno;
        t->n++;
    }
    if (t->n > 1) {
        qsort(t->v, t->n, sizeof(*t->v), entry_cmp); /* t->v is NULL for an empty file */
    }
    for (i = 1; i < t->n; i++) {
        if (strcmp(t->v[i - 1].name, t->v[i].name) == 0) {
            snprintf(err, errlen, "%s:%u: user '%s' is already defined on line %u", name,
                     t->v[i].line, t->v[i].name, t->v[i - 1].line);
            goto out;
        }
    }
    if (t->n > 0) {
        /* The first user in file order: the typical cost of this file. */
        const struct pw_entry *first = &t->v[0];

        for (i = 1; i < t->n; i++) {
            if (t->v[i].line < first->line) {
                first = &t->v[i];
            }
        }
        rc = pw_hash_dummy(&first->hash, &t->dummy);
    } else {
        struct pw_hash like;

        memset(&like, 0, sizeof(like));
        like.scheme = PW_PBKDF2;
        like.iterations = PW_ITER_DEFAULT;
        like.salt_len = PW_SALT_DEFAULT;
        rc = pw_hash_dummy(&like, &t->dummy);
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot make the dummy hash (no random bytes?)", name);
        goto out;
    }
    if (EVP_Digest(buf, len, t->digest, NULL, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "%s: SHA-256 failed", name);
        rc = -1;
        goto out;
    }
    *out = t;
    t = NULL;
    rc = 0;
out:
    if (copy != NULL) {
        OPENSSL_cleanse(copy, len);
    }
    free(copy);
    pw_table_free(t);
    return rc;
}

/* See pwfile.h. */
int
pw_table_load(const char *path, struct pw_table **out, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd = -1;
    int rc = -1;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > PW_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than 64 MiB", path);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    while (len < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) {
            break; /* shrank while we read: parse what is there */
        }
        len += (size_t)r;
    }
    rc = pw_table_parse(path, buf, len, out, err, errlen);
    if (rc == 0) {
        (*out)->mode = st.st_mode & 07777;
    }
out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, len);
    }
    free(buf);
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/* See pwfile.h. */
const struct pw_entry *
pw_table_find(const struct pw_table *t, const char *name)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, t->v[mid].name);

        if (c == 0) {
            return &t->v[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}
