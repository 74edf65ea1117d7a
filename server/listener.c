/* Listening sockets on the main loop; accepted sockets go round robin to workers. */
#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "config.h"
#include "log.h"
#include "worker.h"
#include "xport.h"

/* Every listener ever opened, main thread only; freed at exit. */
static struct listener *all;
static unsigned next_worker;

static void
accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct listener *l = (struct listener *)io;
    int i;

    (void)loop;
    (void)revents;
    for (i = 0; i < 256; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int max = atomic_load(&l->max_connections);
        struct witem it;

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                midge_log(MLOG_WARNING, "accept failed listener=%s reason=\"%s\"", l->name,
                          strerror(errno));
            }
            return;
        }
        if (atomic_fetch_add(&l->nconns, 1) >= max && max >= 0) {
            atomic_fetch_sub(&l->nconns, 1);
            close(fd);
            midge_log(MLOG_WARNING, "connection refused listener=%s reason=\"max_connections\"",
                      l->name);
            continue;
        }
        memset(&it, 0, sizeof(it));
        it.kind = WI_ACCEPT;
        it.u.fd = fd;
        it.listener = l;
        worker_post(next_worker++ % broker.nworkers, &it);
    }
}

static int
same_addr(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

static struct listener *
find(const struct listener_conf *lc)
{
    struct listener *l;

    for (l = all; l != NULL; l = l->next) {
        if (l->fd >= 0 && l->conf_port == lc->port && same_addr(l->bind_address, lc->bind_address)) {
            return l;
        }
    }
    return NULL;
}

static void
set_limits(struct listener *l, const struct listener_conf *lc)
{
    atomic_store(&l->max_connections, lc->max_connections);
    atomic_store(&l->allow_anonymous, lc->allow_anonymous);
    atomic_store(&l->max_topic_alias, lc->max_topic_alias);
}

/* Opens one configured listener on every address it resolves to. */
static int
open_one(const struct listener_conf *lc, struct ev_loop *loop)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    struct addrinfo *ai;
    char port[8];
    int opened = 0;
    int r;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = lc->socket_domain == 4 ? AF_INET : lc->socket_domain == 6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(port, sizeof(port), "%u", lc->port);
    r = getaddrinfo(lc->bind_address, port, &hints, &res);
    if (r != 0) {
        midge_log(MLOG_ERROR, "%s:%d: listener %u %s: %s", lc->file ? lc->file : "default",
                  lc->line, lc->port, lc->bind_address ? lc->bind_address : "", gai_strerror(r));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int one = 1;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct listener *l;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char host[NI_MAXHOST];

        if (fd < 0) {
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
            midge_log(MLOG_ERROR, "%s:%d: cannot listen on port %u%s%s: %s",
                      lc->file ? lc->file : "default", lc->line, lc->port,
                      lc->bind_address ? " address " : "",
                      lc->bind_address ? lc->bind_address : "", strerror(errno));
            close(fd);
            freeaddrinfo(res);
            return -1;
        }
        l = calloc(1, sizeof(*l));
        if (l == NULL) {
            close(fd);
            break;
        }
        l->fd = fd;
        l->conf_port = lc->port;
        /* issue 9: TLS context and WebSocket settings (errors were caught by xport_check_config). */
        {
            char err[512];
            l->xl = xport_listener_new(lc, err, sizeof(err));
            if (l->xl == NULL && err[0] != '\0') {
                midge_log(MLOG_ERROR, "%s", err);
                close(fd);
                free(l);
                freeaddrinfo(res);
                return -1;
            }
        }
        l->bind_address = lc->bind_address ? strdup(lc->bind_address) : NULL;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
        l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
        snprintf(l->name, sizeof(l->name), ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
                 l->port);
        atomic_init(&l->nconns, 0);
        set_limits(l, lc);
        ev_io_init(&l->io, accept_cb, fd, EV_READ);
        ev_io_start(loop, &l->io);
        l->next = all;
        all = l;
        opened++;
        {
            int tls = lc->certfile != NULL || lc->psk_hint != NULL;
            midge_log(MLOG_NOTICE, "listening listener=%s%s", l->name,
                      lc->protocol == LISTENER_WEBSOCKETS ? (tls ? " protocol=wss" : " protocol=ws")
                      : tls ? " protocol=mqtts" : "");
        }
    }
    freeaddrinfo(res);
    return opened > 0 ? 0 : -1;
}

/* Opens new listeners and updates limits of existing ones. Main thread. */
int
listeners_apply(const struct config *cfg, struct ev_loop *loop)
{
    const struct listener_conf *lc;

    for (lc = cfg->listeners; lc != NULL; lc = lc->next) {
        struct listener *l = find(lc);
        if (l != NULL) {
            struct listener *x;
            /* Every socket of this conf (IPv4 and IPv6) gets the new limits. */
            for (x = all; x != NULL; x = x->next) {
                if (x->fd >= 0 && x->conf_port == lc->port &&
                    same_addr(x->bind_address, lc->bind_address)) {
                    set_limits(x, lc);
                    xport_listener_reload(x->xl, lc, x->name); /* issue 9: new certificates */
                }
            }
        } else if (open_one(lc, loop) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Stops accepting on every listener (shutdown). Main thread. */
void
listeners_close(struct ev_loop *loop)
{
    struct listener *l;

    for (l = all; l != NULL; l = l->next) {
        if (l->fd >= 0) {
            ev_io_stop(loop, &l->io);
            close(l->fd);
            l->fd = -1;
        }
    }
}

/* Frees all listener structs. Exit only, after workers stopped. */
void
listeners_free(void)
{
    while (all != NULL) {
        struct listener *l = all;
        all = l->next;
        free(l->bind_address);
        xport_listener_free(l->xl);
        free(l);
    }
}
