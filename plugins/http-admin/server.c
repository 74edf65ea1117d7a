/* The libmicrohttpd daemon (see server.h). */
#include <sys/socket.h>

#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "basic_auth.h"

#define PEM_MAX (1024 * 1024)

/* The daemon and what it must keep. Owned by the admin state; freed by server_stop. */
struct http_server {
    struct MHD_Daemon *d;
    struct admin *a;
    char *cert_pem; /* libmicrohttpd reads these for its whole life */
    char *key_pem;
};

/* Per-request state, freed by request_done. */
struct req_state {
    size_t body;     /* bytes of body seen (then dropped: no route takes one) */
};

int
server_parse_listen(const char *listen, struct sockaddr_storage *out, int *loopback, char *err,
                    size_t errlen)
{
    char host[64];
    const char *colon;
    const char *port_s;
    char *end = NULL;
    unsigned long port;
    size_t hl;

    memset(out, 0, sizeof(*out));
    *loopback = 0;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "listen '%s': expected [IPV6]:PORT", listen);
            return -1;
        }
        hl = (size_t)(close - listen - 1);
        if (hl >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, listen + 1, hl);
        host[hl] = '\0';
        port_s = close + 2;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "listen '%s': expected ADDRESS:PORT (e.g. 127.0.0.1:8081)",
                     listen);
            return -1;
        }
        hl = (size_t)(colon - listen);
        if (hl >= sizeof(host)) {
            goto bad;
        }
        memcpy(host, listen, hl);
        host[hl] = '\0';
        port_s = colon + 1;
    }
    errno = 0;
    port = strtoul(port_s, &end, 10);
    if (port_s[0] == '\0' || *end != '\0' || errno != 0 || port > 65535 || port_s[0] == '-') {
        snprintf(err, errlen, "listen '%s': bad port '%s'", listen, port_s);
        return -1;
    }
    {
        struct sockaddr_in *v4 = (struct sockaddr_in *)out;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
        if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons((uint16_t)port);
            *loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
            return 0;
        }
        if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons((uint16_t)port);
            *loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
            return 0;
        }
    }
bad:
    snprintf(err, errlen, "listen '%s': the address must be a numeric IPv4 or IPv6 address",
             listen);
    return -1;
}

/* Reads a PEM file whole (NUL-terminated). NULL with err set. */
static char *
read_pem(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;

    if (f == NULL) {
        snprintf(err, errlen, "%s %s: cannot open: %s", what, path, strerror(errno));
        return NULL;
    }
    buf = malloc(PEM_MAX + 1);
    if (buf != NULL) {
        n = fread(buf, 1, PEM_MAX + 1, f);
    }
    if (buf == NULL || ferror(f) || n > PEM_MAX || n == 0) {
        snprintf(err, errlen, "%s %s: %s", what, path,
                 buf == NULL ? "out of memory" : n == 0 ? "empty or unreadable" : "too large");
        free(buf);
        buf = NULL;
    } else {
        buf[n] = '\0';
    }
    fclose(f);
    return buf;
}

static void
log_mhd(void *cls, const char *fmt, va_list ap)
{
    struct http_server *s = cls;
    char line[512];
    size_t n;

    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        line[--n] = '\0';
    }
    s->a->api->log(s->a->self, MIDGE_LOG_WARNING, "libmicrohttpd: %s", line);
}

/* Queues `r` (freeing the body on every path). */
static enum MHD_Result
send_reply(struct MHD_Connection *c, struct reply *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(r->body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                            "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'");
    if (r->allow != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    }
    ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result
send_error(struct MHD_Connection *c, int status, const char *message)
{
    struct reply r;

    reply_error(&r, status, message);
    return send_reply(c, &r);
}

/* 1 when the request carries credentials the password file accepts. */
static int
authorized(struct http_server *s, struct MHD_Connection *c)
{
    char *pw = NULL;
    char *user;
    int ok = 0;

    if (s->a->auth == NULL) {
        return 1;
    }
    user = MHD_basic_auth_get_username_password(c, &pw);
    if (user != NULL && pw != NULL) {
        ok = basic_auth_check(s->a->auth, user, pw, strlen(pw));
        if (!ok) {
            s->a->api->log(s->a->self, MIDGE_LOG_NOTICE, "http login failed user=%s", user);
        }
    }
    if (pw != NULL) {
        memset(pw, 0, strlen(pw));
    }
    MHD_free(user);
    MHD_free(pw);
    return ok;
}

static enum MHD_Result
send_unauthorized(struct MHD_Connection *c)
{
    struct reply r;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    reply_error(&r, 401, "authentication required (HTTP Basic, users of plugin_opt_password_file)");
    resp = MHD_create_response_from_buffer(r.len, r.body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(r.body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type);
    ret = MHD_queue_basic_auth_fail_response(c, "midge", resp);
    MHD_destroy_response(resp);
    return ret;
}

/* 1 when `host` (a Host header value) names this machine's loopback: 127.x, [::1], localhost. */
static int
host_is_loopback(const char *host)
{
    char name[64];
    size_t n;
    struct in_addr a4;

    if (strncmp(host, "[::1]", 5) == 0) {
        return host[5] == '\0' || host[5] == ':';
    }
    n = strcspn(host, ":");
    if (n == 0 || n >= sizeof(name)) {
        return 0;
    }
    memcpy(name, host, n);
    name[n] = '\0';
    if (strcmp(name, "localhost") == 0) {
        return 1;
    }
    return inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/*
 * Requests a web page in the admin's browser could make on its own are
 * refused (403): a state-changing request whose Origin is another site
 * (cross-site request forgery: browsers send Basic credentials they hold),
 * and, without authentication, a Host that is not a loopback name (a DNS
 * rebinding page reaching 127.0.0.1 under its own name). NULL when fine,
 * else why not.
 */
static const char *
browser_guard(struct http_server *s, struct MHD_Connection *c, const char *method)
{
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");

    if (s->a->auth == NULL && (host == NULL || !host_is_loopback(host))) {
        return "Host must be a loopback address or localhost when no password is required";
    }
    if (origin != NULL && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        const char *rest = strstr(origin, "://");
        if (host == NULL || rest == NULL || strcmp(rest + 3, host) != 0) {
            return "cross-site request refused (Origin does not match Host)";
        }
    }
    return NULL;
}

/* Query arguments for routes. */
static const char *
query_arg(void *ctx, const char *key)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, key);
}

/*
 * libmicrohttpd calls this once when the headers are in (*con_cls NULL),
 * then for each piece of body, then once more with no data: the route runs
 * then. Errors found early (too large, not authorized) are answered at
 * once; libmicrohttpd then closes the connection instead of reading the
 * body.
 */
static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size,
           void **con_cls)
{
    struct http_server *s = cls;
    struct req_state *st = *con_cls;
    struct request req;
    struct reply r;
    const char *why;

    (void)version;
    (void)upload_data;
    if (st == NULL) {
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        st = calloc(1, sizeof(*st));
        if (st == NULL) {
            return MHD_NO;
        }
        *con_cls = st;
        if (atomic_load(&s->a->stopping)) {
            return send_error(c, 503, "shutting down");
        }
        if (cl != NULL && strtoull(cl, NULL, 10) > HTTP_BODY_MAX) {
            return send_error(c, 413, "request body too large (this API takes at most 4096 bytes)");
        }
        if ((why = browser_guard(s, c, method)) != NULL) {
            return send_error(c, 403, why);
        }
        if (!authorized(s, c)) {
            return send_unauthorized(c);
        }
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        st->body += *upload_data_size;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->body > HTTP_BODY_MAX) {
        return send_error(c, 413, "request body too large (this API takes at most 4096 bytes)");
    }
    req.method = method;
    req.path = url;
    req.arg = query_arg;
    req.ctx = c;
    memset(&r, 0, sizeof(r));
    routes_handle(s->a, &req, &r);
    s->a->api->log(s->a->self, MIDGE_LOG_DEBUG, "http %s %s status=%d bytes=%zu", method, url,
                   r.status, r.len);
    return send_reply(c, &r);
}

static void
request_done(void *cls, struct MHD_Connection *c, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

struct http_server *
server_start(struct admin *a, const struct server_conf *conf, char *err, size_t errlen)
{
    struct http_server *s = calloc(1, sizeof(*s));
    struct sockaddr_storage addr;
    int loopback;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    int tls = conf->certfile != NULL;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->a = a;
    if (server_parse_listen(conf->listen, &addr, &loopback, err, errlen) != 0) {
        goto fail;
    }
    if (addr.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    if (tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, errlen, "certfile: this libmicrohttpd was built without TLS");
            goto fail;
        }
        s->cert_pem = read_pem("certfile", conf->certfile, err, errlen);
        if (s->cert_pem == NULL) {
            goto fail;
        }
        s->key_pem = read_pem("keyfile", conf->keyfile, err, errlen);
        if (s->key_pem == NULL) {
            goto fail;
        }
        flags |= MHD_USE_TLS;
    }
    /* The port argument is ignored with MHD_OPTION_SOCK_ADDR (the address carries it). */
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, log_mhd, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, request_done, s,
        MHD_OPTION_CONNECTION_LIMIT, conf->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
        tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->cert_pem, MHD_OPTION_HTTPS_MEM_KEY,
        s->key_pem, MHD_OPTION_END);
    if (s->d == NULL) {
        snprintf(err, errlen, "listen %s: cannot start the HTTP server (address in use? bad "
                 "certificate or key? see the libmicrohttpd message above)", conf->listen);
        goto fail;
    }
    return s;
fail:
    server_stop(s);
    return NULL;
}

unsigned
server_port(const struct http_server *s)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);

    return i != NULL ? i->port : 0;
}

void
server_stop(struct http_server *s)
{
    if (s == NULL) {
        return;
    }
    if (s->d != NULL) {
        MHD_stop_daemon(s->d);
    }
    free(s->cert_pem);
    free(s->key_pem);
    free(s);
}
