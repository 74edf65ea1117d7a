/*
 * Logging: one event per line, "TIMESTAMP LEVEL message key=value ...", to any
 * of stderr, stdout, a file and syslog. Thread-safe: any thread may log; each
 * line is written with a single write(2).
 */
#ifndef MIDGE_LOG_H
#define MIDGE_LOG_H

enum log_level {
    MLOG_ERROR = 0,
    MLOG_WARNING = 1,
    MLOG_NOTICE = 2,
    MLOG_INFO = 3,
    MLOG_DEBUG = 4,
    /* Event classes mosquitto admins select with log_type. */
    MLOG_SUBSCRIBE = 5,
    MLOG_UNSUBSCRIBE = 6,
};

/* Bits for log_types: 1 << enum log_level. */
#define MLOG_BIT(l) (1u << (l))
#define MLOG_DEFAULT_TYPES \
    (MLOG_BIT(MLOG_ERROR) | MLOG_BIT(MLOG_WARNING) | MLOG_BIT(MLOG_NOTICE) | MLOG_BIT(MLOG_INFO))

/* Destinations, as bits. */
#define MLOG_DEST_STDERR 0x1u
#define MLOG_DEST_STDOUT 0x2u
#define MLOG_DEST_FILE 0x4u
#define MLOG_DEST_SYSLOG 0x8u

/*
 * (Re)configures logging. `file` is used with MLOG_DEST_FILE (opened for
 * append; reopened on every call so SIGHUP works with logrotate). Returns 0,
 * or -1 with errno set when the file cannot be opened (the old settings stay).
 * [any thread]
 */
int log_configure(unsigned dests, unsigned types, const char *file);

/* Adds MLOG_DEBUG (and everything) to the enabled types: -v on the command line. */
void log_set_verbose(int verbose);

/* 1 if a message at `level` would be written: lets callers skip formatting work. */
int log_enabled(int level);

/* Writes one log line. [any thread] */
void midge_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Closes the log file and syslog. */
void log_close(void);

#endif
