/*
 * midge: command line, start-up, signals (SIGTERM/SIGINT stop, SIGHUP
 * reload) and shutdown. The main thread owns the listeners, $SYS and the
 * configuration; workers own the clients (docs/architecture.md).
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "broker.h"
#include "config.h"
#include "midge_build.h"
#include "listener.h"
#include "log.h"
#include "mainloop.h"
#include "persist.h"
#include "plugin.h"
#include "retain.h"
#include "subs.h"
#include "sys.h"
#include "worker.h"
#include "xport.h"

static const char *config_path;
static ev_signal sig_term;
static ev_signal sig_int;
static ev_signal sig_hup;
static ev_timer plugin_tick;

static void
plugin_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    plugins_tick();
}

static void
usage(FILE *out)
{
    fprintf(out,
            "Usage: midge [-c FILE] [-d] [-v] [--test-config] [--version] [--help]\n"
            "\n"
            "midge is a multi-threaded MQTT 3.1, 3.1.1 and 5.0 broker.\n"
            "\n"
            "Options:\n"
            "  -c, --config-file FILE  read the configuration from FILE (mosquitto syntax,\n"
            "                          see docs/configuration.md). Without it midge listens\n"
            "                          on 127.0.0.1:1883 only, anonymous clients allowed.\n"
            "  -d, --daemon            detach and run in the background.\n"
            "  -v, --verbose           log everything (debug included) to stderr as well.\n"
            "      --test-config       check the configuration, print the result and exit:\n"
            "                          0 when valid, 2 when not.\n"
            "      --version           print the version and exit.\n"
            "  -h, --help              print this help and exit.\n"
            "\n"
            "Signals:\n"
            "  SIGTERM, SIGINT  stop accepting, send MQTT 5 clients DISCONNECT 0x8B,\n"
            "                   flush and exit 0.\n"
            "  SIGHUP           re-read the configuration file: limits, log settings and new\n"
            "                   listeners apply at once; what needs a restart is logged.\n"
            "\n"
            "Exit status: 0 success, 1 runtime failure (e.g. a port in use), 2 bad\n"
            "configuration or command line.\n");
}

/*
 * `user NAME`: started as root, switch to NAME and its groups for good once
 * the listeners are open. Returns 0, or -1 (logged) when that fails.
 */
static int
drop_privileges(const struct config *cfg)
{
    struct passwd *pw;

    if (getuid() != 0 && geteuid() != 0) {
        if (cfg->user != NULL) {
            midge_log(MLOG_NOTICE, "user %s ignored: not started as root", cfg->user);
        }
        return 0;
    }
    if (cfg->user == NULL) {
        midge_log(MLOG_WARNING, "running as root: set `user` to switch to an unprivileged user");
        return 0;
    }
    errno = 0;
    pw = getpwnam(cfg->user);
    if (pw == NULL) {
        midge_log(MLOG_ERROR, "user %s: %s", cfg->user, errno ? strerror(errno) : "no such user");
        fprintf(stderr, "midge: user %s: %s\n", cfg->user, errno ? strerror(errno) : "no such user");
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        midge_log(MLOG_ERROR, "cannot switch to user %s: %s", cfg->user, strerror(errno));
        fprintf(stderr, "midge: cannot switch to user %s: %s\n", cfg->user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        midge_log(MLOG_ERROR, "switched to user %s but could get root back: refusing to run",
                  cfg->user);
        return -1;
    }
    midge_log(MLOG_NOTICE, "switched to user=%s uid=%u gid=%u", pw->pw_name, (unsigned)pw->pw_uid,
              (unsigned)pw->pw_gid);
    return 0;
}

static void
stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    midge_log(MLOG_NOTICE, "stopping signal=%d", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

static void
reload_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    char err[1024];
    char restart[512];
    struct config *cfg;
    struct config **old;
    const struct config *cur = broker_cfg();

    (void)w;
    (void)revents;
    if (config_path == NULL) {
        midge_log(MLOG_NOTICE, "reload: no configuration file, nothing to do");
        return;
    }
    cfg = config_load(config_path, err, sizeof(err));
    if (cfg == NULL) {
        midge_log(MLOG_ERROR, "reload failed, keeping the running configuration: %s", err);
        return;
    }
    config_restart_needed(cur, cfg, restart, sizeof(restart));
    if (log_configure(cfg->log_dests, cfg->log_types, cfg->log_file) != 0) {
        midge_log(MLOG_ERROR, "reload: cannot open log file %s: %s", cfg->log_file,
                  strerror(errno));
    }
    if (listeners_apply(cfg, loop) != 0) {
        midge_log(MLOG_ERROR, "reload: some listeners could not be opened");
    }
    old = realloc(broker.old_cfgs, (broker.n_old_cfgs + 1) * sizeof(*old));
    if (old != NULL) {
        broker.old_cfgs = old;
        broker.old_cfgs[broker.n_old_cfgs++] = (struct config *)cur;
    }
    atomic_store_explicit(&broker.cfg, cfg, memory_order_release);
    plugins_reload(cfg);
    sys_start(loop);
    if (restart[0] != 0) {
        midge_log(MLOG_WARNING, "reload: these settings need a restart to change: %s", restart);
    }
    midge_log(MLOG_NOTICE, "configuration reloaded file=%s", config_path);
}

static unsigned
cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (unsigned)n : 1;
}

static int
write_pid_file(const char *path)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        midge_log(MLOG_ERROR, "cannot write pid_file %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config-file", required_argument, NULL, 'c'},
        {"daemon", no_argument, NULL, 'd'},
        {"verbose", no_argument, NULL, 'v'},
        {"test-config", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct config *cfg;
    struct ev_loop *loop;
    char err[1024];
    int daemonize = 0;
    int verbose = 0;
    int test_only = 0;
    int opt;
    unsigned n;
    sigset_t all;
    sigset_t old;

    while ((opt = getopt_long(argc, argv, "c:dvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'd':
            daemonize = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 't':
            test_only = 1;
            break;
        case 'V':
            printf("midge %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "midge: unexpected argument '%s' (see midge --help)\n", argv[optind]);
        return 2;
    }
    cfg = config_path ? config_load(config_path, err, sizeof(err)) : config_default();
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    /* issue 9: certificates, keys, CAs and ciphers are checked before anything opens. */
    if (xport_check_config(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        config_free(cfg);
        return 2;
    }
    if (test_only) {
        /* Plugins are opened and checked (descriptor, ABI, options) but not initialised. */
        int bad = plugins_load(cfg, 1, 0, err, sizeof(err)) != 0;
        plugins_unload();
        if (bad) {
            fprintf(stderr, "%s\n", err);
            config_free(cfg);
            return 2;
        }
        printf("%s: configuration OK\n", config_path ? config_path : "(defaults)");
        config_free(cfg);
        return 0;
    }
    if (log_configure(cfg->log_dests | (verbose ? MLOG_DEST_STDERR : 0), cfg->log_types,
                      cfg->log_file) != 0) {
        fprintf(stderr, "midge: cannot open log file %s: %s\n", cfg->log_file, strerror(errno));
        return 2;
    }
    log_set_verbose(verbose);
    if (daemonize && daemon(0, 0) != 0) {
        fprintf(stderr, "midge: cannot daemonize: %s\n", strerror(errno));
        return 1;
    }
    if (cfg->pid_file != NULL && write_pid_file(cfg->pid_file) != 0) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    /* Files midge and its plugins create (logs, databases, pid file) are not world-readable. */
    umask(027);
    atomic_init(&broker.cfg, cfg);
    atomic_init(&broker.next_uid, 0);
    broker.start_wall = (double)time(NULL);
    if (subs_init() != 0 || retain_init() != 0) {
        fprintf(stderr, "midge: out of memory\n");
        return 1;
    }
    n = cfg->worker_threads ? cfg->worker_threads : cpu_count();
    if (plugins_load(cfg, n, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        midge_log(MLOG_ERROR, "%s", err);
        plugins_unload();
        return 2;
    }
    /* Workers inherit a full signal mask: signals are the main thread's. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (worker_start_all(n) != 0) {
        return 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    loop = ev_default_loop(0);
    main_calls_start(loop);
    /* Before the listeners open: a SIGHUP or SIGTERM sent as soon as the port answers is
     * handled (queued until the loop runs), never the default action. */
    ev_signal_init(&sig_term, stop_cb, SIGTERM);
    ev_signal_init(&sig_int, stop_cb, SIGINT);
    ev_signal_init(&sig_hup, reload_cb, SIGHUP);
    ev_signal_start(loop, &sig_term);
    ev_signal_start(loop, &sig_int);
    ev_signal_start(loop, &sig_hup);
    /* Stored state comes back before any client can connect. */
    if (persist_restore(err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        midge_log(MLOG_ERROR, "%s", err);
        worker_stop_all();
        plugins_unload();
        worker_free_all();
        return 2;
    }
    worker_post_early_calls();
    if (listeners_apply(cfg, loop) != 0) {
        worker_stop_all();
        return 1;
    }
    if (drop_privileges(cfg) != 0) {
        worker_stop_all();
        return 1;
    }
    midge_log(MLOG_NOTICE, "midge %s running workers=%u config=%s", PACKAGE_VERSION, n,
              config_path ? config_path : "(defaults)");
    sys_start(loop);
    if (plugins != NULL) {
        ev_timer_init(&plugin_tick, plugin_tick_cb, 1.0, 1.0);
        ev_timer_start(loop, &plugin_tick);
    }
    ev_run(loop, 0);

    main_calls_stop();
    listeners_close(loop);
    sys_stop(loop);
    worker_stop_all();
    plugins_unload(); /* pools drained: their last calls run here, on the main thread */
    worker_free_all();
    listeners_free();
    retain_free();
    subs_free();
    midge_log(MLOG_NOTICE, "midge stopped");
    if (cfg->pid_file != NULL) {
        unlink(broker_cfg()->pid_file);
    }
    config_free((struct config *)broker_cfg());
    for (n = 0; n < broker.n_old_cfgs; n++) {
        config_free(broker.old_cfgs[n]);
    }
    free(broker.old_cfgs);
    log_close();
    return 0;
}
