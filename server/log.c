/*
 * Logging. A line is formatted into a stack buffer without any lock, then
 * written with one write(2) per destination while holding log_lock, which
 * only guards the destination set and the file descriptor against a
 * concurrent log_configure(). The enabled-types mask is an atomic so that
 * log_enabled() and the early exit in midge_log() take no lock at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Longest line written, newline included; longer messages end in "...". */
#define LOG_LINE_MAX 4096

#define LOG_ALL_TYPES                                                                      \
    (MLOG_BIT(MLOG_ERROR) | MLOG_BIT(MLOG_WARNING) | MLOG_BIT(MLOG_NOTICE) |               \
     MLOG_BIT(MLOG_INFO) | MLOG_BIT(MLOG_DEBUG) | MLOG_BIT(MLOG_SUBSCRIBE) |                \
     MLOG_BIT(MLOG_UNSUBSCRIBE))

static const char *const level_names[] = {
    [MLOG_ERROR] = "error",         [MLOG_WARNING] = "warning", [MLOG_NOTICE] = "notice",
    [MLOG_INFO] = "info",           [MLOG_DEBUG] = "debug",     [MLOG_SUBSCRIBE] = "subscribe",
    [MLOG_UNSUBSCRIBE] = "unsubscribe",
};

/* mosquitto sends subscribe/unsubscribe events to syslog as notices, so do we. */
static const int level_syslog[] = {
    [MLOG_ERROR] = LOG_ERR,      [MLOG_WARNING] = LOG_WARNING,  [MLOG_NOTICE] = LOG_NOTICE,
    [MLOG_INFO] = LOG_INFO,      [MLOG_DEBUG] = LOG_DEBUG,      [MLOG_SUBSCRIBE] = LOG_NOTICE,
    [MLOG_UNSUBSCRIBE] = LOG_NOTICE,
};

#define LOG_NLEVELS (sizeof(level_names) / sizeof(level_names[0]))

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned log_dests = MLOG_DEST_STDERR; /* Protected by log_lock. */
static int log_fd = -1;                       /* MLOG_DEST_FILE's fd. Protected by log_lock. */
static int log_syslog_open;                   /* Protected by log_lock. */
static unsigned log_types = MLOG_DEFAULT_TYPES; /* as configured. Protected by log_lock. */
static int log_verbose;                         /* Protected by log_lock. */
static atomic_uint log_mask = MLOG_DEFAULT_TYPES; /* effective types; read lock-free */

/* Recomputes the effective mask. Called with log_lock held. */
static void
update_mask_locked(void)
{
    atomic_store_explicit(&log_mask, log_verbose ? LOG_ALL_TYPES : log_types,
                          memory_order_relaxed);
}

/* Writes all of buf, retrying on EINTR and short writes; errors are dropped. */
static void
write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/*
 * Sets destinations and types. The file is opened before anything changes so
 * a failure leaves the previous settings in force; the old file is closed
 * after the swap, under the lock, so no thread writes to a closed fd.
 * Returns 0, or -1 with errno set. [any thread]
 */
int
log_configure(unsigned dests, unsigned types, const char *file)
{
    int fd = -1;
    int old_fd;
    int rc = -1;

    if (dests & MLOG_DEST_FILE) {
        if (file == NULL || file[0] == '\0') {
            errno = EINVAL;
            goto out;
        }
        fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            goto out;
        }
    }
    pthread_mutex_lock(&log_lock);
    old_fd = log_fd;
    log_fd = fd;
    log_dests = dests;
    log_types = types;
    update_mask_locked();
    if ((dests & MLOG_DEST_SYSLOG) && !log_syslog_open) {
        openlog("midge", LOG_PID, LOG_DAEMON);
        log_syslog_open = 1;
    } else if (!(dests & MLOG_DEST_SYSLOG) && log_syslog_open) {
        closelog();
        log_syslog_open = 0;
    }
    if (old_fd >= 0) {
        close(old_fd);
    }
    pthread_mutex_unlock(&log_lock);
    rc = 0;
out:
    return rc;
}

/* Turns every log type on (-v) or back to the configured set. [any thread] */
void
log_set_verbose(int verbose)
{
    pthread_mutex_lock(&log_lock);
    log_verbose = verbose != 0;
    update_mask_locked();
    pthread_mutex_unlock(&log_lock);
}

/* 1 when midge_log(level, ...) would write something. Lock-free. [any thread] */
int
log_enabled(int level)
{
    if (level < 0 || (size_t)level >= LOG_NLEVELS) {
        return 0;
    }
    return (atomic_load_explicit(&log_mask, memory_order_relaxed) & MLOG_BIT(level)) != 0;
}

/*
 * Formats "2026-11-25T09:00:00.123Z LEVEL message\n" into buf. Control
 * characters in the message (a client id may hold a newline) become '?', so
 * one call is always one line. Returns the length and sets *msg_off to where
 * the message starts (syslog adds its own timestamp).
 */
static size_t
format_line(char *buf, size_t size, int level, size_t *msg_off, const char *fmt, va_list ap)
{
    struct timespec ts;
    struct tm tm;
    size_t off;
    size_t i;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000L, level_names[level]);
    off = n > 0 ? (size_t)n : 0;
    *msg_off = off;
    /* Leave room for the newline. */
    n = vsnprintf(buf + off, size - off - 1, fmt, ap);
    if (n < 0) {
        n = 0;
        buf[off] = '\0';
    }
    if ((size_t)n >= size - off - 1) {
        /* Truncated: vsnprintf left size - off - 2 characters and a NUL. */
        off = size - 2;
        memcpy(buf + off - 3, "...", 3);
    } else {
        off += (size_t)n;
    }
    for (i = *msg_off; i < off; i++) {
        unsigned char c = (unsigned char)buf[i];

        if (c < 0x20 || c == 0x7f) {
            buf[i] = '?';
        }
    }
    buf[off++] = '\n';
    buf[off] = '\0';
    return off;
}

/*
 * Writes one line to every configured destination. Messages are lower-case
 * events with key=value fields (STYLE.md). [any thread]
 */
void
midge_log(int level, const char *fmt, ...)
{
    char buf[LOG_LINE_MAX];
    size_t len;
    size_t msg_off;
    va_list ap;

    if (!log_enabled(level)) {
        return;
    }
    va_start(ap, fmt);
    len = format_line(buf, sizeof(buf), level, &msg_off, fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    if (log_dests & MLOG_DEST_STDERR) {
        write_all(STDERR_FILENO, buf, len);
    }
    if (log_dests & MLOG_DEST_STDOUT) {
        write_all(STDOUT_FILENO, buf, len);
    }
    if ((log_dests & MLOG_DEST_FILE) && log_fd >= 0) {
        write_all(log_fd, buf, len);
    }
    if ((log_dests & MLOG_DEST_SYSLOG) && log_syslog_open) {
        buf[len - 1] = '\0'; /* syslog wants no newline */
        syslog(level_syslog[level], "%s", buf + msg_off);
    }
    pthread_mutex_unlock(&log_lock);
}

/*
 * Closes the log file and syslog and returns to the start-up default
 * (stderr, default types). [any thread]
 */
void
log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_fd >= 0) {
        close(log_fd);
        log_fd = -1;
    }
    if (log_syslog_open) {
        closelog();
        log_syslog_open = 0;
    }
    log_dests = MLOG_DEST_STDERR;
    log_types = MLOG_DEFAULT_TYPES;
    update_mask_locked();
    pthread_mutex_unlock(&log_lock);
}
