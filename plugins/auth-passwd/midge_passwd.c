/*
 * midge_passwd: manages password files for midge's auth-passwd plugin (and
 * for mosquitto, which reads the same format). Mirrors mosquitto_passwd's
 * options and spelling; see usage() below and docs/auth-passwd.md.
 *
 * Every change is written to a temporary file in the same directory,
 * fsync'ed and renamed over the original, so a reader (the broker at
 * SIGHUP) sees either the old file or the new one, never half of one.
 * New files get mode 0600; an existing file keeps its mode and owner.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hash.h"
#include "pwfile.h"

#define EXIT_ERR 1   /* the operation failed; nothing was changed */
#define EXIT_USAGE 2 /* bad command line */
#define PW_MAX 65535 /* MQTT's limit for a password */

static const char *progname = "midge_passwd";

static void
usage(FILE *f)
{
    fprintf(f,
"NAME\n"
"    midge_passwd - manage password files for midge (and mosquitto)\n"
"\n"
"SYNOPSIS\n"
"    midge_passwd [-H hash] [-I iterations] [-S salt-bytes] [-c | -D] passwordfile username\n"
"    midge_passwd [-H hash] [-I iterations] [-S salt-bytes] [-c] -b passwordfile username password\n"
"    midge_passwd [-H hash] [-I iterations] [-S salt-bytes] -U passwordfile\n"
"    midge_passwd -h | --help | --version\n"
"\n"
"DESCRIPTION\n"
"    Adds a user to a password file, changes a user's password, or removes a user.\n"
"    The file has one username:hash line per user; lines starting with # and blank\n"
"    lines are kept as they are. The format is mosquitto's: files written here work\n"
"    with mosquitto 2.0 (sha512-pbkdf2 with 12-byte salts, and sha512) and 2.1.\n"
"\n"
"    Without -b the password is read from the terminal, twice, without echo.\n"
"    The file is replaced atomically (temporary file, fsync, rename): a broker\n"
"    reading it at SIGHUP sees the old or the new file, never a mix. A new file\n"
"    gets mode 0600; an existing file keeps its mode and owner.\n"
"\n"
"OPTIONS\n"
"    -b            batch mode: the password is the last argument. It is then visible\n"
"                  to other users in the process list and in your shell history.\n"
"    -c            create the file; an existing file is overwritten.\n"
"    -D            delete the user instead of adding or changing it.\n"
"    -U            hash a file of plain-text username:password lines in place. A line\n"
"                  that already holds a hash is an error (nothing is hashed twice).\n"
"    -H hash       sha512-pbkdf2 (default; $7$, PBKDF2-HMAC-SHA512),\n"
"                  sha512 ($6$, salted SHA-512: weak, for old mosquitto only),\n"
"                  argon2id ($argon2id$, m=19456 KiB t=2 p=1; mosquitto 2.1 reads it,\n"
"                  2.0 does not).\n"
"    -I iterations PBKDF2 iterations for sha512-pbkdf2 (default 210000; 1..10000000).\n"
"                  One login costs about 0.1 s of CPU per 210000 iterations.\n"
"    -S salt-bytes salt length for sha512-pbkdf2 and sha512 (default 12; 8..64).\n"
"                  mosquitto 2.0 only reads 12-byte salts; mosquitto 2.1 writes 64.\n"
"    -h, --help    this text.  --version  the version.\n"
"\n"
"USER NAMES\n"
"    A user name must not be empty, contain ':' or a control character, or start\n"
"    or end with a space.\n"
"\n"
"EXIT STATUS\n"
"    0  success\n"
"    1  failure (file not readable or writable, user not found for -D, passwords\n"
"       did not match, bad user name or password); the file is unchanged\n"
"    2  bad command line\n"
"\n"
"EXAMPLES\n"
"    midge_passwd -c /etc/midge/passwd alice        create the file, prompt for a password\n"
"    midge_passwd -b /etc/midge/passwd bob s3cret   add or change bob\n"
"    midge_passwd -D /etc/midge/passwd bob          remove bob\n"
"    kill -HUP $(pidof midge)                       make the broker re-read the file\n"
"\n"
"SEE ALSO\n"
"    docs/auth-passwd.md, mosquitto_passwd(1)\n");
}

static void
err(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "%s: error: ", progname);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
}

/* A growing text buffer. Owns data. */
struct buf {
    char *data;
    size_t len, cap;
};

static int
buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap + n + 1) * 2;
        char *d = realloc(b->data, cap);

        if (d == NULL) {
            return -1;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static void
buf_free(struct buf *b)
{
    if (b->data != NULL) {
        OPENSSL_cleanse(b->data, b->cap);
    }
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Reads a whole file into b. 0, or -1 with errno set. */
static int
read_file(const char *path, struct buf *b)
{
    char chunk[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r;

    if (fd < 0) {
        return -1;
    }
    while ((r = read(fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            close(fd);
            return -1;
        }
        if (buf_add(b, chunk, (size_t)r) != 0) {
            close(fd);
            errno = ENOMEM;
            return -1;
        }
    }
    close(fd);
    OPENSSL_cleanse(chunk, sizeof(chunk));
    return 0;
}

/*
 * Replaces `path` with `content` atomically: temporary file in the same
 * directory, mode 0600 (or the old file's mode and owner), fsync, rename,
 * fsync of the directory. 0 or -1 (message printed).
 */
static int
write_atomic(const char *path, const struct buf *content)
{
    char tmp[PATH_MAX];
    char dir[PATH_MAX];
    struct stat st;
    int have_old = stat(path, &st) == 0;
    size_t off = 0;
    int fd = -1;
    int dfd;
    int rc = -1;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp)) {
        err("%s: path too long%s", path, "");
        return -1;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        err("cannot create a temporary file next to %s: %s", path, strerror(errno));
        return -1;
    }
    if (fchmod(fd, have_old ? (st.st_mode & 07777) : 0600) != 0) {
        err("cannot set the mode of %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (have_old && geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid) != 0) {
        err("cannot keep the owner of %s: %s", path, strerror(errno));
        goto out;
    }
    while (off < content->len) {
        ssize_t w = write(fd, content->data + off, content->len - off);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            err("cannot write %s: %s", tmp, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        err("cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        err("cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        err("cannot replace %s: %s", path, strerror(errno));
        goto out;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd); /* best effort: the rename is done either way */
        close(dfd);
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (rc != 0) {
        unlink(tmp);
    }
    return rc;
}

/* Checks a password: length and no NUL. NULL or why not. */
static const char *
password_check(const char *pw, size_t len)
{
    if (len == 0) {
        return "empty password";
    }
    if (len > PW_MAX) {
        return "password longer than 65535 bytes";
    }
    return NULL;
}

/* Reads one line from the terminal without echo. 0, or -1 (message printed). */
static int
read_hidden(int tty, const char *prompt, char *out, size_t outlen)
{
    struct termios old, quiet;
    size_t n = 0;
    int restore = 0;
    int rc = -1;

    /* Echo goes off before the prompt appears, so nothing typed after it is shown. */
    if (tcgetattr(tty, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        restore = tcsetattr(tty, TCSANOW, &quiet) == 0;
    }
    if (write(tty, prompt, strlen(prompt)) < 0) {
        goto out;
    }
    for (;;) {
        char c;
        ssize_t r = read(tty, &c, 1);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0 || c == '\n' || c == '\r') {
            if (r <= 0 && n == 0) {
                goto out;
            }
            break;
        }
        if (n + 1 >= outlen) {
            fprintf(stderr, "\n%s: error: password longer than %zu bytes\n", progname,
                    outlen - 1);
            goto out;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    rc = 0;
out:
    if (restore) {
        tcsetattr(tty, TCSANOW, &old);
    }
    if (write(tty, "\n", 1) < 0) {
        rc = -1;
    }
    return rc;
}

/* Prompts twice on the terminal. 0, or -1 (message printed). */
static int
prompt_password(char *out, size_t outlen)
{
    char *again = malloc(outlen);
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    int rc = -1;

    if (again == NULL) {
        fprintf(stderr, "%s: error: out of memory\n", progname);
        goto out;
    }
    if (tty < 0) {
        fprintf(stderr, "%s: error: no terminal to read the password from (use -b to give it "
                "on the command line)\n", progname);
        goto out;
    }
    if (read_hidden(tty, "Password: ", out, outlen) != 0 ||
        read_hidden(tty, "Reenter password: ", again, outlen) != 0) {
        fprintf(stderr, "%s: error: no password read\n", progname);
        goto out;
    }
    if (strcmp(out, again) != 0) {
        fprintf(stderr, "%s: error: passwords do not match\n", progname);
        goto out;
    }
    rc = 0;
out:
    if (again != NULL) {
        OPENSSL_cleanse(again, outlen);
    }
    free(again);
    if (tty >= 0) {
        close(tty);
    }
    return rc;
}

/* Settings from the command line. */
struct opts {
    int scheme;
    uint32_t iterations;
    size_t salt_len;
};

/* Appends "user:HASH\n" to b. 0, or -1 (message printed). */
static int
add_line(struct buf *b, const struct opts *o, const char *user, const char *pw)
{
    char hash[PW_LINE_MAX];
    const char *why = NULL;
    int rc;

    if (pw_hash_new(o->scheme, o->iterations, o->salt_len, pw, strlen(pw), hash, sizeof(hash),
                    &why) != 0) {
        err("cannot hash the password: %s%s", why, "");
        return -1;
    }
    rc = buf_add(b, user, strlen(user)) | buf_add(b, ":", 1) | buf_add(b, hash, strlen(hash)) |
         buf_add(b, "\n", 1);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (rc != 0) {
        err("out of memory%s%s", "", "");
    }
    return rc != 0 ? -1 : 0;
}

/* The user name of a data line (trimmed, into out), or 0 for comments and blank lines. */
static int
line_user(const char *line, size_t len, char *out, size_t outlen)
{
    size_t a = 0, e;
    const char *colon;

    while (a < len && (line[a] == ' ' || line[a] == '\t')) {
        a++;
    }
    if (a == len || line[a] == '#' || line[a] == '\r') {
        return 0;
    }
    colon = memchr(line, ':', len);
    e = colon != NULL ? (size_t)(colon - line) : len;
    while (e > a && (line[e - 1] == ' ' || line[e - 1] == '\t')) {
        e--;
    }
    if (e - a >= outlen) {
        e = a + outlen - 1;
    }
    memcpy(out, line + a, e - a);
    out[e - a] = '\0';
    return 1;
}

/*
 * Rewrites `old` into `out` with user's line replaced (pw != NULL) or
 * removed (pw == NULL); a new user is appended. *found says whether the
 * user was there. 0 or -1.
 */
static int
edit(const struct buf *old, struct buf *out, const struct opts *o, const char *user,
     const char *pw, int *found)
{
    size_t pos = 0;
    char *name = malloc(PW_MAX + 2);
    int rc = -1;

    *found = 0;
    if (name == NULL) {
        err("out of memory%s%s", "", "");
        return -1;
    }
    while (pos < old->len) {
        const char *line = old->data + pos;
        const char *nl = memchr(line, '\n', old->len - pos);
        size_t ll = nl != NULL ? (size_t)(nl - line) : old->len - pos;

        pos += ll + (nl != NULL);
        if (line_user(line, ll, name, PW_MAX + 2) && strcmp(name, user) == 0) {
            if (!*found && pw != NULL && add_line(out, o, user, pw) != 0) {
                goto out;
            }
            *found = 1; /* a second line for the same user goes too */
            continue;
        }
        if (buf_add(out, line, ll) != 0 || buf_add(out, "\n", 1) != 0) {
            err("out of memory%s%s", "", "");
            goto out;
        }
    }
    if (!*found && pw != NULL && add_line(out, o, user, pw) != 0) {
        goto out;
    }
    rc = 0;
out:
    free(name);
    return rc;
}

/* -U: hashes every plain-text line of `old` into `out`. 0 or -1 (message printed). */
static int
hash_plain(const char *path, const struct buf *old, struct buf *out, const struct opts *o)
{
    size_t pos = 0;
    unsigned lineno = 0;
    char lno[16];

    while (pos < old->len) {
        char *line = old->data + pos;
        char *nl = memchr(line, '\n', old->len - pos);
        size_t ll = nl != NULL ? (size_t)(nl - line) : old->len - pos;
        char *colon;
        const char *why;
        size_t a = 0;

        pos += ll + (nl != NULL);
        lineno++;
        snprintf(lno, sizeof(lno), "%u", lineno);
        if (ll > 0 && line[ll - 1] == '\r') {
            ll--;
        }
        while (a < ll && (line[a] == ' ' || line[a] == '\t')) {
            a++;
        }
        if (a == ll || line[a] == '#') {
            if (buf_add(out, line, ll) != 0 || buf_add(out, "\n", 1) != 0) {
                return -1;
            }
            continue;
        }
        colon = memchr(line, ':', ll);
        if (colon == NULL) {
            fprintf(stderr, "%s: error: %s:%s: expected username:password\n", progname, path, lno);
            return -1;
        }
        line[ll] = '\0'; /* the buffer is ours: cut the line (the '\n' or the final NUL) */
        *colon = '\0';
        {
            char *user = line + a;
            char *pw = colon + 1;
            size_t ul = strlen(user);

            while (ul > 0 && (user[ul - 1] == ' ' || user[ul - 1] == '\t')) {
                user[--ul] = '\0';
            }
            if ((why = pw_username_check(user)) != NULL) {
                fprintf(stderr, "%s: error: %s:%s: %s\n", progname, path, lno, why);
                return -1;
            }
            if (pw_looks_hashed(pw)) {
                fprintf(stderr, "%s: error: %s:%s: the password of '%s' is already hashed "
                        "(nothing was changed)\n", progname, path, lno, user);
                return -1;
            }
            if ((why = password_check(pw, strlen(pw))) != NULL) {
                fprintf(stderr, "%s: error: %s:%s: %s\n", progname, path, lno, why);
                return -1;
            }
            if (add_line(out, o, user, pw) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Parses the command line and makes the one change asked for; exits 0, 1 or 2 (see usage()). */
int
main(int argc, char **argv)
{
    struct opts o = {PW_PBKDF2, 0, 0};
    int create = 0, batch = 0, del = 0, update = 0, have_iter = 0, have_salt = 0;
    struct buf old = {0}, out = {0};
    const char *file, *user = NULL;
    char *password = NULL;
    char resolved[PATH_MAX];
    int found = 0;
    int ch, i;
    int rc = EXIT_ERR;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("midge_passwd 1.0\n");
            return 0;
        }
        if (strcmp(argv[i], "--") == 0) {
            break;
        }
    }
    while ((ch = getopt(argc, argv, "+bcDUH:I:S:h")) != -1) {
        char *end = NULL;
        unsigned long v;

        switch (ch) {
        case 'b': batch = 1; break;
        case 'c': create = 1; break;
        case 'D': del = 1; break;
        case 'U': update = 1; break;
        case 'h': usage(stdout); return 0;
        case 'H':
            o.scheme = pw_scheme_from_name(optarg);
            if (o.scheme < 0) {
                fprintf(stderr, "%s: error: -H %s: unknown hash (sha512-pbkdf2, sha512 or "
                        "argon2id)\n", progname, optarg);
                return EXIT_USAGE;
            }
            break;
        case 'I':
            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (end == optarg || *end != '\0' || optarg[0] == '-' || errno != 0 || v < 1 ||
                v > PW_ITER_MAX) {
                fprintf(stderr, "%s: error: -I %s: iterations must be a number from 1 to %u\n",
                        progname, optarg, PW_ITER_MAX);
                return EXIT_USAGE;
            }
            o.iterations = (uint32_t)v;
            have_iter = 1;
            break;
        case 'S':
            v = strtoul(optarg, &end, 10);
            if (end == optarg || *end != '\0' || v < PW_SALT_MIN || v > PW_SALT_MAX) {
                fprintf(stderr, "%s: error: -S %s: salt length must be from %d to %d bytes\n",
                        progname, optarg, PW_SALT_MIN, PW_SALT_MAX);
                return EXIT_USAGE;
            }
            o.salt_len = v;
            have_salt = 1;
            break;
        default:
            fprintf(stderr, "Try '%s --help'.\n", progname);
            return EXIT_USAGE;
        }
    }
    if (create + del + update > 1) {
        fprintf(stderr, "%s: error: -c, -D and -U cannot be combined\n", progname);
        return EXIT_USAGE;
    }
    if (have_iter && o.scheme != PW_PBKDF2) {
        fprintf(stderr, "%s: error: -I only applies to -H sha512-pbkdf2\n", progname);
        return EXIT_USAGE;
    }
    if (have_salt && o.scheme == PW_ARGON2ID) {
        fprintf(stderr, "%s: error: -S does not apply to -H argon2id (16-byte salts)\n", progname);
        return EXIT_USAGE;
    }
    if ((del || update) && batch) {
        fprintf(stderr, "%s: error: -b cannot be combined with -D or -U\n", progname);
        return EXIT_USAGE;
    }
    if (argc - optind != (update ? 1 : batch ? 3 : 2)) {
        fprintf(stderr, "%s: error: wrong number of arguments\n", progname);
        fprintf(stderr, "Try '%s --help'.\n", progname);
        return EXIT_USAGE;
    }
    file = argv[optind];
    if (!update) {
        const char *why;

        user = argv[optind + 1];
        if ((why = pw_username_check(user)) != NULL) {
            fprintf(stderr, "%s: error: invalid user name: %s\n", progname, why);
            return EXIT_ERR;
        }
    }
    /* Follow a symbolic link, so that the file it names is replaced, not the link. */
    if (realpath(file, resolved) != NULL) {
        file = resolved;
    }
    if (!create && read_file(file, &old) != 0) {
        fprintf(stderr, "%s: error: cannot read %s: %s%s\n", progname, file, strerror(errno),
                errno == ENOENT ? " (use -c to create it)" : "");
        goto out;
    }
    if (update) {
        if (hash_plain(file, &old, &out, &o) != 0) {
            goto out;
        }
    } else {
        if (!del) {
            const char *why;

            password = calloc(1, PW_MAX + 2);
            if (password == NULL) {
                fprintf(stderr, "%s: error: out of memory\n", progname);
                goto out;
            }
            if (batch) {
                snprintf(password, PW_MAX + 2, "%s", argv[optind + 2]);
            } else if (prompt_password(password, PW_MAX + 2) != 0) {
                goto out;
            }
            if ((why = password_check(password, strlen(password))) != NULL) {
                fprintf(stderr, "%s: error: %s\n", progname, why);
                goto out;
            }
        }
        if (edit(&old, &out, &o, user, password, &found) != 0) {
            goto out;
        }
        if (del && !found) {
            fprintf(stderr, "%s: error: user %s not found in %s\n", progname, user, file);
            goto out;
        }
    }
    if (write_atomic(file, &out) != 0) {
        goto out;
    }
    rc = 0;
out:
    if (password != NULL) {
        OPENSSL_cleanse(password, PW_MAX + 2);
    }
    free(password);
    buf_free(&old);
    buf_free(&out);
    return rc;
}
