/*
 * http-admin: a Prometheus /metrics endpoint, a JSON admin API and a live
 * dashboard page, served by libmicrohttpd on a thread of its own
 * (docs/http-api.md). The HTTP thread reaches the broker only through API
 * calls documented as [any thread]: stats, plugin_list, metric_list,
 * client_list (whose done runs on the main thread for a foreign thread),
 * client_find, client_disconnect, retained_list, reload_request.
 *
 * Files: plugin.c (descriptor, options, init, cleanup), server.c (the
 * libmicrohttpd daemon: limits, authentication, TLS), routes.c (what each
 * path answers), clients.c (waiting for the broker's client callbacks),
 * snapshot.c + prom.c (metrics), basic_auth.c (the password file),
 * dashboard.html (the page, compiled in as dashboard_html.c).
 */
#ifndef HTTP_ADMIN_H
#define HTTP_ADMIN_H

#include <stdatomic.h>
#include <stddef.h>

#include <midge/plugin.h>

struct basic_auth;
struct http_server;

/* One instance. Owned by the broker's plugin state pointer; freed in cleanup. */
struct admin {
    midge_plugin *self;
    const struct midge_api *api;
    struct basic_auth *auth;     /* NULL: no authentication (loopback + allow_anonymous) */
    struct http_server *server;  /* the daemon; owns its thread */
    atomic_int stopping;         /* cleanup began: waits end, new requests get 503 */
    double wait_timeout;         /* seconds to wait for the broker's callbacks */
};

/* A response a route made. The body is heap memory owned by the reply (free()). */
struct reply {
    int status;
    const char *content_type; /* static string */
    char *body;
    size_t len;
    const char *allow;        /* 405: the Allow header value (static) */
};

/* What a route sees of a request (no libmicrohttpd types: routes are testable alone). */
struct request {
    const char *method;
    const char *path;      /* decoded, without the query string */
    /* A query argument (decoded), or NULL. */
    const char *(*arg)(void *ctx, const char *key);
    void *ctx;
};

/* routes.c: answers one request (authentication already passed). [HTTP thread] */
void routes_handle(struct admin *a, const struct request *req, struct reply *out);

/* Sets out to a JSON error {"error": message} with `status`. */
void reply_error(struct reply *out, int status, const char *message);

#endif
