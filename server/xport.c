/*
 * Transport layers under MQTT (see xport.h): TLS (tls.c) and WebSockets
 * (ws.c), alone or stacked (wss:// is WebSockets over TLS).
 */
#include "xport.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "tls.h"
#include "ws.h"

/*
 * A listener's transport settings. Owned by its struct listener. `ctx` is
 * replaced on SIGHUP; connections hold their own reference through SSL_new.
 */
struct xport_listener {
    pthread_mutex_t lock;  /* protects ctx, id, ws_paths, ws_origins */
    SSL_CTX *ctx;          /* NULL: no TLS */
    int ws;                /* protocol websockets */
    enum tls_identity id;
    char *ws_paths;        /* owned copies, or NULL */
    char *ws_origins;
};

/* One connection's layers. Owned by its connection (c->xp). */
struct xport {
    int fd;
    uint8_t id_required;   /* listener had use_*_as_username when the connection started */
    struct tls_conn *tls;  /* NULL: plain TCP */
    struct ws_conn *ws;    /* NULL: raw MQTT */
    char err[256];
};

static enum tls_identity
identity_mode(const struct listener_conf *lc)
{
    return lc->use_identity_as_username  ? TLS_ID_CN
           : lc->use_subject_as_username ? TLS_ID_SUBJECT
                                         : TLS_ID_NONE;
}

static void
listener_err(const struct listener_conf *lc, const char *reason, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s:%d: listener %u%s%s: %s", lc->file ? lc->file : "default", lc->line,
             lc->port, lc->bind_address ? " " : "", lc->bind_address ? lc->bind_address : "",
             reason);
}

/* See xport.h. Main thread. */
struct xport_listener *
xport_listener_new(const struct listener_conf *lc, char *err, size_t errlen)
{
    struct xport_listener *xl = NULL;
    char reason[300];

    err[0] = '\0';
    if (lc->certfile == NULL && lc->psk_hint == NULL && lc->protocol != LISTENER_WEBSOCKETS) {
        return NULL;
    }
    xl = calloc(1, sizeof(*xl));
    if (xl == NULL) {
        listener_err(lc, "out of memory", err, errlen);
        return NULL;
    }
    pthread_mutex_init(&xl->lock, NULL);
    xl->ws = lc->protocol == LISTENER_WEBSOCKETS;
    xl->id = identity_mode(lc);
    if ((lc->ws_paths != NULL && (xl->ws_paths = strdup(lc->ws_paths)) == NULL) ||
        (lc->ws_origins != NULL && (xl->ws_origins = strdup(lc->ws_origins)) == NULL)) {
        listener_err(lc, "out of memory", err, errlen);
        xport_listener_free(xl);
        return NULL;
    }
    if (lc->certfile != NULL || lc->psk_hint != NULL) {
        xl->ctx = tls_ctx_build(lc, xl->ws, reason, sizeof(reason));
        if (xl->ctx == NULL) {
            listener_err(lc, reason, err, errlen);
            xport_listener_free(xl);
            return NULL;
        }
    }
    return xl;
}

/* See xport.h. Main thread. */
void
xport_listener_reload(struct xport_listener *xl, const struct listener_conf *lc, const char *name)
{
    SSL_CTX *ctx = NULL;
    SSL_CTX *old = NULL;
    char *paths = NULL;
    char *origins = NULL;
    char reason[300];

    if (xl == NULL) {
        return;
    }
    if ((lc->certfile != NULL || lc->psk_hint != NULL) && xl->ctx != NULL) {
        ctx = tls_ctx_build(lc, xl->ws, reason, sizeof(reason));
        if (ctx == NULL) {
            midge_log(MLOG_ERROR, "tls reload failed, keeping the current certificate listener=%s "
                                  "reason=\"%s\"", name, reason);
        }
    }
    if ((lc->ws_paths != NULL && (paths = strdup(lc->ws_paths)) == NULL) ||
        (lc->ws_origins != NULL && (origins = strdup(lc->ws_origins)) == NULL)) {
        free(paths);
        free(origins);
        paths = origins = NULL;
        midge_log(MLOG_ERROR, "reload: out of memory listener=%s", name);
        SSL_CTX_free(ctx);
        return;
    }
    pthread_mutex_lock(&xl->lock);
    if (ctx != NULL) {
        old = xl->ctx;
        xl->ctx = ctx;
        xl->id = identity_mode(lc);
    }
    free(xl->ws_paths);
    free(xl->ws_origins);
    xl->ws_paths = paths;
    xl->ws_origins = origins;
    pthread_mutex_unlock(&xl->lock);
    if (ctx != NULL) {
        /* Connections made with the old context keep it alive through their SSL. */
        SSL_CTX_free(old);
        midge_log(MLOG_NOTICE, "tls certificate reloaded listener=%s", name);
    }
}

void
xport_listener_free(struct xport_listener *xl)
{
    if (xl == NULL) {
        return;
    }
    SSL_CTX_free(xl->ctx);
    free(xl->ws_paths);
    free(xl->ws_origins);
    pthread_mutex_destroy(&xl->lock);
    free(xl);
}

/* See xport.h. Main thread. */
int
xport_check_config(const struct config *cfg, char *err, size_t errlen)
{
    const struct listener_conf *lc;

    for (lc = cfg->listeners; lc != NULL; lc = lc->next) {
        struct xport_listener *xl = xport_listener_new(lc, err, errlen);
        if (xl == NULL && err[0] != '\0') {
            return -1;
        }
        xport_listener_free(xl);
    }
    return 0;
}

/* ---- the layer under WebSockets: socket or TLS ---- */

static ssize_t
lower_read(void *arg, void *buf, size_t len)
{
    struct xport *xp = arg;

    if (xp->tls != NULL) {
        return tls_conn_read(xp->tls, buf, len);
    }
    return read(xp->fd, buf, len);
}

static ssize_t
lower_write(void *arg, const void *buf, size_t len)
{
    struct xport *xp = arg;
    ssize_t n;

    if (xp->tls != NULL) {
        return tls_conn_write(xp->tls, buf, len);
    }
    n = write(xp->fd, buf, len);
    if (n < 0 && errno == EWOULDBLOCK) {
        errno = EAGAIN;
    }
    return n;
}

static const char *
lower_error(void *arg)
{
    struct xport *xp = arg;

    if (xp->tls != NULL) {
        return tls_conn_error(xp->tls);
    }
    return strerror(errno);
}

/* See xport.h. [worker thread] */
int
xport_attach(struct conn *c, struct xport_listener *xl)
{
    struct xport *xp = calloc(1, sizeof(*xp));
    int rc = -1;

    if (xp == NULL) {
        return -1;
    }
    xp->fd = c->fd;
    pthread_mutex_lock(&xl->lock);
    if (xl->ctx != NULL) {
        xp->tls = tls_conn_new(xl->ctx, c->fd, xl->id);
        xp->id_required = xl->id != TLS_ID_NONE;
        if (xp->tls == NULL) {
            goto out;
        }
    }
    if (xl->ws) {
        struct ws_lower lower = { lower_read, lower_write, lower_error, xp };
        xp->ws = ws_conn_new(&lower, xl->ws_paths, xl->ws_origins);
        if (xp->ws == NULL) {
            goto out;
        }
    }
    c->xp = xp;
    xp = NULL;
    rc = 0;
out:
    pthread_mutex_unlock(&xl->lock);
    if (xp != NULL) {
        tls_conn_free(xp->tls);
        free(xp);
    }
    return rc;
}

/* See xport.h. [worker thread] */
ssize_t
xport_read(struct conn *c, void *buf, size_t len)
{
    struct xport *xp = c->xp;
    ssize_t n;

    if (xp->ws != NULL) {
        n = ws_conn_read(xp->ws, buf, len);
        if (ws_conn_wants_write(xp->ws)) {
            /* An answer, pong or close frame to send: flush at the end of the iteration. */
            conn_mark_dirty(c);
        }
        if (n < 0 && errno != EAGAIN) {
            snprintf(xp->err, sizeof(xp->err), "%s", ws_conn_error(xp->ws));
        }
    } else {
        n = tls_conn_read(xp->tls, buf, len);
        if (n < 0 && errno != EAGAIN) {
            snprintf(xp->err, sizeof(xp->err), "%s", tls_conn_error(xp->tls));
        }
    }
    if (xp->tls != NULL && tls_conn_read_wants_write(xp->tls)) {
        conn_mark_dirty(c);
    }
    return n;
}

/* See xport.h. [worker thread] */
int
xport_flush(struct conn *c)
{
    struct xport *xp = c->xp;
    int r;

    if (xp->ws != NULL) {
        r = ws_conn_flush(xp->ws, &c->out);
        if (r < 0) {
            snprintf(xp->err, sizeof(xp->err), "%s", ws_conn_error(xp->ws));
        }
        return r;
    }
    for (;;) {
        const uint8_t *p;
        size_t len = outbuf_peek(&c->out, &p);
        ssize_t n;

        if (len == 0) {
            return tls_conn_read_wants_write(xp->tls) ? 1 : 0;
        }
        n = tls_conn_write(xp->tls, p, len);
        if (n == 0) {
            errno = EPIPE; /* never loop on a write that makes no progress */
            n = -1;
        }
        if (n < 0) {
            if (errno == EAGAIN) {
                return 1;
            }
            snprintf(xp->err, sizeof(xp->err), "%s", tls_conn_error(xp->tls));
            return -1;
        }
        outbuf_consume(&c->out, (size_t)n);
    }
}

int
xport_pending(const struct conn *c)
{
    const struct xport *xp = c->xp;

    if (xp->ws != NULL && ws_conn_pending(xp->ws)) {
        return 1;
    }
    return xp->tls != NULL && tls_conn_pending(xp->tls);
}

int
xport_wants_write(const struct conn *c)
{
    const struct xport *xp = c->xp;

    return (xp->ws != NULL && ws_conn_wants_write(xp->ws)) ||
           (xp->tls != NULL && tls_conn_read_wants_write(xp->tls));
}

int
xport_read_wants_write(const struct conn *c)
{
    return c->xp->tls != NULL && tls_conn_read_wants_write(c->xp->tls);
}

const char *
xport_error(const struct conn *c)
{
    return c->xp->err[0] != '\0' ? c->xp->err : strerror(errno);
}

const char *
xport_stage(const struct conn *c)
{
    const struct xport *xp = c->xp;

    if (xp->tls != NULL && tls_conn_handshaking(xp->tls)) {
        return "tls handshake";
    }
    if (xp->ws != NULL && ws_conn_upgrading(xp->ws)) {
        return "websocket upgrade";
    }
    return NULL;
}

const char *
xport_identity(const struct conn *c)
{
    const struct xport *xp = c->xp;

    return xp != NULL && xp->tls != NULL ? tls_conn_identity(xp->tls) : NULL;
}

int
xport_identity_required(const struct conn *c)
{
    return c->xp != NULL && c->xp->id_required;
}

const struct tls_conn *
xport_tls(const struct conn *c)
{
    return c->xp != NULL ? c->xp->tls : NULL;
}

void
xport_shutdown(struct conn *c)
{
    struct xport *xp = c->xp;

    if (xp->ws != NULL) {
        ws_conn_shutdown(xp->ws);
    }
    if (xp->tls != NULL) {
        tls_conn_shutdown(xp->tls);
    }
}

void
xport_free(struct conn *c)
{
    if (c->xp == NULL) {
        return;
    }
    ws_conn_free(c->xp->ws);
    tls_conn_free(c->xp->tls);
    free(c->xp);
    c->xp = NULL;
}
