/*
 * What each path answers (docs/http-api.md). Every route checks its
 * method (405 with Allow otherwise); unknown paths get 404; errors are
 * JSON {"error": "..."} with a status that fits.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin.h"
#include "bridges.h"
#include "clients.h"
#include "prom.h"
#include "snapshot.h"

/* The page, compiled in from dashboard.html (dashboard_html.c is generated). */
extern const char dashboard_html[];
extern const size_t dashboard_html_len;

#define LIST_LIMIT_DEFAULT 1000
#define LIST_LIMIT_MAX 100000
#define JSON_TYPE "application/json"

static void
reply_text(struct reply *out, int status, const char *type, char *body, size_t len)
{
    memset(out, 0, sizeof(*out));
    out->status = status;
    out->content_type = type;
    out->body = body;
    out->len = len;
}

/* JSON as the API writes it: indented for curl users, 9 significant digits, a final newline. */
static char *
dump(const json_t *j, size_t *len)
{
    char *s = j != NULL ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) : NULL;
    char *t;

    if (s == NULL) {
        return NULL;
    }
    *len = strlen(s);
    t = realloc(s, *len + 2);
    if (t == NULL) {
        free(s);
        return NULL;
    }
    t[(*len)++] = '\n';
    t[*len] = '\0';
    return t;
}

/* Replies with j (stolen). */
static void
reply_json(struct reply *out, int status, json_t *j)
{
    size_t len = 0;
    char *s = dump(j, &len);

    json_decref(j);
    if (s == NULL) {
        reply_error(out, 500, "out of memory");
        return;
    }
    reply_text(out, status, JSON_TYPE, s, len);
}

void
reply_error(struct reply *out, int status, const char *message)
{
    json_t *j = json_pack("{s:s}", "error", message);
    size_t len = 0;
    char *s = dump(j, &len);

    json_decref(j);
    memset(out, 0, sizeof(*out));
    out->status = status;
    out->content_type = JSON_TYPE;
    if (s == NULL) {
        /* Out of memory even for the error: a static body, copied so the reply owns it. */
        s = strdup("{\"error\": \"out of memory\"}\n");
        len = s != NULL ? strlen(s) : 0;
        out->status = 500;
    }
    out->body = s;
    out->len = len;
}

/* An API error code as an HTTP answer. */
static void
reply_api_error(struct reply *out, int rc, const char *what)
{
    char msg[200];

    switch (rc) {
    case -MIDGE_ENOENT:
        snprintf(msg, sizeof(msg), "%s: not found", what);
        reply_error(out, 404, msg);
        break;
    case -MIDGE_EINVAL:
        snprintf(msg, sizeof(msg), "%s: invalid", what);
        reply_error(out, 400, msg);
        break;
    case -MIDGE_ENOMEM:
        reply_error(out, 500, "out of memory");
        break;
    case -MIDGE_ENOTSUP:
        reply_error(out, 501, "this broker does not provide it");
        break;
    default:
        snprintf(msg, sizeof(msg), "%s: the broker did not answer in time", what);
        reply_error(out, 503, msg);
        break;
    }
}

/* ?limit=N (1..LIST_LIMIT_MAX). 0, or -1 after replying 400. */
static int
limit_arg(const struct request *req, struct reply *out, size_t *limit)
{
    const char *v = req->arg(req->ctx, "limit");
    char *end = NULL;
    unsigned long n;

    *limit = LIST_LIMIT_DEFAULT;
    if (v == NULL) {
        return 0;
    }
    errno = 0;
    n = strtoul(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || n == 0 || n > LIST_LIMIT_MAX || v[0] == '-') {
        reply_error(out, 400, "limit: expected a number from 1 to 100000");
        return -1;
    }
    *limit = n;
    return 0;
}

static int
is_get(const struct request *req)
{
    return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

static int
method_ok(const struct request *req, struct reply *out, const char *want)
{
    int ok = strcmp(want, "GET") == 0 ? is_get(req) : strcmp(req->method, want) == 0;

    if (!ok) {
        char msg[120];
        snprintf(msg, sizeof(msg), "method %.20s not allowed here (allowed: %s)", req->method,
                 strcmp(want, "GET") == 0 ? "GET, HEAD" : want);
        reply_error(out, 405, msg);
        out->allow = strcmp(want, "GET") == 0 ? "GET, HEAD" : want;
    }
    return ok;
}

/* ---- Routes ----------------------------------------------------------------- */

static void
get_page(struct admin *a, const struct request *req, struct reply *out)
{
    char *body = malloc(dashboard_html_len + 1);

    (void)a;
    (void)req;
    if (body == NULL) {
        reply_error(out, 500, "out of memory");
        return;
    }
    memcpy(body, dashboard_html, dashboard_html_len + 1);
    reply_text(out, 200, "text/html; charset=utf-8", body, dashboard_html_len);
}

static void
get_metrics(struct admin *a, const struct request *req, struct reply *out)
{
    struct snapshot s;
    struct sbuf b;
    char *text;
    size_t len = 0;

    (void)req;
    if (snapshot_take(&s, a->self, a->api) != 0) {
        reply_error(out, 500, "out of memory");
        return;
    }
    /* Queue depths cost a walk over every session: worth it once a scrape. */
    s.have_sessions = clients_totals(a, &s.queued, &s.inflight) == 0;
    sbuf_init(&b);
    prom_render(&s, &b);
    snapshot_free(&s);
    text = sbuf_take(&b, &len);
    if (text == NULL) {
        reply_error(out, 500, "out of memory");
        return;
    }
    reply_text(out, 200, PROM_CONTENT_TYPE, text, len);
}

static void
get_stats(struct admin *a, const struct request *req, struct reply *out)
{
    struct midge_broker_stats st;

    (void)req;
    memset(&st, 0, sizeof(st));
    st.size = sizeof(st);
    if (a->api->stats(a->self, &st) != 0) {
        reply_error(out, 500, "the broker gave no counters");
        return;
    }
    reply_json(out, 200,
               json_pack("{s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "uptime",
                         st.uptime, "clients_connected", (json_int_t)st.clients_connected,
                         "sessions", (json_int_t)st.sessions, "subscriptions",
                         (json_int_t)st.subscriptions, "retained", (json_int_t)st.retained,
                         "packets_received", (json_int_t)st.packets_received, "packets_sent",
                         (json_int_t)st.packets_sent, "publish_received",
                         (json_int_t)st.publish_received, "publish_sent",
                         (json_int_t)st.publish_sent, "publish_dropped",
                         (json_int_t)st.publish_dropped, "bytes_received",
                         (json_int_t)st.bytes_received, "bytes_sent", (json_int_t)st.bytes_sent,
                         "connects", (json_int_t)st.connects, "message_bytes",
                         (json_int_t)st.message_bytes));
}

static void
get_clients(struct admin *a, const struct request *req, struct reply *out)
{
    size_t limit;
    json_t *list = NULL;
    int truncated = 0;
    int rc;

    if (limit_arg(req, out, &limit) != 0) {
        return;
    }
    rc = clients_list(a, limit, &list, &truncated);
    if (rc != 0) {
        reply_api_error(out, rc, "client list");
        return;
    }
    reply_json(out, 200, json_pack("{s:o,s:b}", "clients", list, "truncated", truncated));
}

static void
get_client(struct admin *a, const char *id, struct reply *out)
{
    json_t *c = NULL;
    int rc = clients_find(a, id, &c);

    if (rc != 0) {
        reply_api_error(out, rc, "client");
        return;
    }
    reply_json(out, 200, c);
}

static void
disconnect_client(struct admin *a, const char *id, struct reply *out)
{
    json_t *c = NULL;
    int rc = clients_find(a, id, &c);

    if (rc != 0) {
        reply_api_error(out, rc, "client");
        return;
    }
    if (!json_is_true(json_object_get(c, "connected"))) {
        json_decref(c);
        reply_error(out, 409, "client: not connected");
        return;
    }
    json_decref(c);
    rc = a->api->client_disconnect(a->self, id, 0);
    if (rc != 0) {
        reply_api_error(out, rc, "client");
        return;
    }
    /* Asynchronous: the broker disconnects it on its worker (0x98 for MQTT 5). */
    reply_json(out, 202, json_pack("{s:s,s:s}", "client_id", id, "status", "disconnecting"));
}

/* One retained listing. */
struct retained_walk {
    const struct midge_api *api;
    const char *prefix; /* NULL: every match of the filter */
    size_t limit;
    json_t *list;
    int truncated;
    int oom;
};

static int
retained_cb(void *arg, const midge_message *msg)
{
    struct retained_walk *rw = arg;
    const char *topic = rw->api->message_topic(msg);
    uint32_t len = 0;
    json_t *o;

    if (rw->prefix != NULL && strncmp(topic, rw->prefix, strlen(rw->prefix)) != 0) {
        return 0;
    }
    if (json_array_size(rw->list) >= rw->limit) {
        rw->truncated = 1;
        return 1;
    }
    (void)rw->api->message_payload(msg, &len);
    o = json_pack("{s:s,s:i,s:I}", "topic", topic, "qos", rw->api->message_qos(msg), "bytes",
                  (json_int_t)len);
    if (o == NULL || json_array_append_new(rw->list, o) != 0) {
        rw->oom = 1;
        return 1;
    }
    return 0;
}

static void
get_retained(struct admin *a, const struct request *req, struct reply *out)
{
    struct retained_walk rw;
    const char *filter = req->arg(req->ctx, "filter");
    const char *prefix = req->arg(req->ctx, "prefix");
    char *owned = NULL;
    int rc;

    memset(&rw, 0, sizeof(rw));
    rw.api = a->api;
    if (limit_arg(req, out, &rw.limit) != 0) {
        return;
    }
    if (filter != NULL && prefix != NULL) {
        reply_error(out, 400, "give filter or prefix, not both");
        return;
    }
    if (filter == NULL) {
        size_t n = prefix != NULL ? strlen(prefix) : 0;
        /* A prefix ending at a level boundary narrows the walk: "a/b/" -> "a/b/#". */
        if (n > 0 && prefix[n - 1] == '/') {
            owned = malloc(n + 2);
            if (owned == NULL) {
                reply_error(out, 500, "out of memory");
                return;
            }
            memcpy(owned, prefix, n);
            memcpy(owned + n, "#", 2);
            filter = owned;
        } else {
            filter = "#";
            rw.prefix = n > 0 ? prefix : NULL;
        }
    }
    rw.list = json_array();
    if (rw.list == NULL) {
        free(owned);
        reply_error(out, 500, "out of memory");
        return;
    }
    rc = a->api->retained_list(a->self, filter, retained_cb, &rw);
    free(owned);
    if (rc < 0 || rw.oom) {
        json_decref(rw.list);
        reply_api_error(out, rw.oom ? -MIDGE_ENOMEM : rc, "filter");
        return;
    }
    reply_json(out, 200, json_pack("{s:o,s:b}", "retained", rw.list, "truncated", rw.truncated));
}

/* Upper bound of the bucket holding quantile q (0 when empty). */
static double
quantile(size_t n, const double *le, const uint64_t *count, uint64_t total, double q)
{
    uint64_t seen = 0;
    size_t i;

    if (total == 0 || n == 0) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        seen += count[i];
        if ((double)seen >= q * (double)total) {
            return le[i];
        }
    }
    return le[n - 1];
}

/* The metrics of `instance` as an object {name: value or {count, sum, p50, p99}}. */
static json_t *
metrics_json(const struct snapshot *s, const char *instance)
{
    json_t *o = json_object();
    size_t i;

    for (i = 0; o != NULL && i < s->metric_count; i++) {
        const struct snap_metric *m = &s->metrics[i];
        json_t *v;
        if (strcmp(m->instance, instance) != 0) {
            continue;
        }
        if (m->kind == MIDGE_METRIC_HISTOGRAM) {
            double p50 = quantile(m->buckets, m->le, m->bucket_count, m->count, 0.5);
            double p99 = quantile(m->buckets, m->le, m->bucket_count, m->count, 0.99);
            /* JSON has no infinity: an unbounded last bucket reads as null. */
            v = json_pack("{s:I,s:f,s:o,s:o}", "count", (json_int_t)m->count, "sum", m->sum,
                          "p50", isinf(p50) ? json_null() : json_real(p50), "p99",
                          isinf(p99) ? json_null() : json_real(p99));
        } else {
            v = json_integer(m->value);
        }
        if (m->label_name != NULL) {
            /* A labeled series: {"NAME": {"VALUE": v, ...}} */
            json_t *fam = json_object_get(o, m->name);
            if (!json_is_object(fam)) {
                fam = json_object();
                json_object_set_new(o, m->name, fam);
            }
            json_object_set_new(fam, m->label_value, v);
            continue;
        }
        json_object_set_new(o, m->name, v);
    }
    return o;
}

static json_t *
hooks_json(const struct snap_plugin *p)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; arr != NULL && i < p->hook_count; i++) {
        const struct snap_hook *h = &p->hooks[i];
        json_array_append_new(
            arr, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f}", "hook", h->hook, "calls",
                           (json_int_t)h->calls, "allow", (json_int_t)h->allow, "deny",
                           (json_int_t)h->deny, "defer", (json_int_t)h->defer, "pending",
                           (json_int_t)h->pending, "timeouts", (json_int_t)h->timeouts,
                           "latency_p50_seconds",
                           quantile(h->buckets, h->le, h->count, h->calls, 0.5),
                           "latency_p99_seconds",
                           quantile(h->buckets, h->le, h->count, h->calls, 0.99)));
    }
    return arr;
}

/*
 * Bridges report their links through labeled gauges (bridges.c); "state"
 * reads the instance-wide gauge `connected` (links up now).
 */
static json_t *
plugin_json(struct admin *a, const struct snapshot *s, const struct snap_plugin *p, int bridge)
{
    json_t *metrics = metrics_json(s, p->instance);
    json_t *o;

    if (bridge) {
        json_t *c = json_object_get(metrics, "connected");
        json_t *links = bridges_links_json(a, s, p);
        const char *state = !json_is_integer(c)           ? "unknown"
                            : json_integer_value(c) > 0 ? "connected"
                                                          : "disconnected";
        return json_pack("{s:s,s:s,s:o,s:o}", "instance", p->instance, "state", state, "links",
                         links != NULL ? links : json_array(), "metrics", metrics);
    }
    o = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o}", "instance", p->instance, "plugin", p->name,
                  "version", p->version, "description", p->description, "hooks", hooks_json(p),
                  "metrics", metrics);
    return o;
}

static void
get_plugins(struct admin *a, const struct request *req, struct reply *out, int bridges_only)
{
    struct snapshot s;
    json_t *arr;
    size_t i;

    (void)req;
    if (snapshot_take(&s, a->self, a->api) != 0) {
        reply_error(out, 500, "out of memory");
        return;
    }
    if (!s.have_plugins) {
        snapshot_free(&s);
        reply_error(out, 503, "the broker cannot list plugins (starting, or too old)");
        return;
    }
    arr = json_array();
    for (i = 0; arr != NULL && i < s.plugin_count; i++) {
        const struct snap_plugin *p = &s.plugins[i];
        if (bridges_only && strcmp(p->name, "bridge") != 0) {
            continue;
        }
        json_array_append_new(arr, plugin_json(a, &s, p, bridges_only));
    }
    snapshot_free(&s);
    reply_json(out, 200, json_pack("{s:o}", bridges_only ? "bridges" : "plugins", arr));
}

static void
post_reload(struct admin *a, struct reply *out)
{
    int rc = a->api->reload_request(a->self);

    if (rc != 0) {
        reply_api_error(out, rc, "reload");
        return;
    }
    reply_json(out, 202, json_pack("{s:s}", "status", "reload requested"));
}

#define CLIENTS "/api/v1/clients/"
#define DISCONNECT "/disconnect"

void
routes_handle(struct admin *a, const struct request *req, struct reply *out)
{
    const char *p = req->path;
    size_t n = strlen(p);

    if (strcmp(p, "/") == 0 || strcmp(p, "/index.html") == 0) {
        if (method_ok(req, out, "GET")) {
            get_page(a, req, out);
        }
    } else if (strcmp(p, "/metrics") == 0) {
        if (method_ok(req, out, "GET")) {
            get_metrics(a, req, out);
        }
    } else if (strcmp(p, "/api/v1/stats") == 0) {
        if (method_ok(req, out, "GET")) {
            get_stats(a, req, out);
        }
    } else if (strcmp(p, "/api/v1/clients") == 0) {
        if (method_ok(req, out, "GET")) {
            get_clients(a, req, out);
        }
    } else if (strncmp(p, CLIENTS, strlen(CLIENTS)) == 0 && n > strlen(CLIENTS)) {
        const char *id = p + strlen(CLIENTS);
        size_t dl = strlen(DISCONNECT);
        if (strcmp(req->method, "POST") == 0 && n > strlen(CLIENTS) + dl &&
            strcmp(p + n - dl, DISCONNECT) == 0) {
            char *cid = strndup(id, n - strlen(CLIENTS) - dl);
            if (cid == NULL) {
                reply_error(out, 500, "out of memory");
                return;
            }
            disconnect_client(a, cid, out);
            free(cid);
        } else if (method_ok(req, out, "GET")) {
            get_client(a, id, out);
        }
    } else if (strcmp(p, "/api/v1/retained") == 0) {
        if (method_ok(req, out, "GET")) {
            get_retained(a, req, out);
        }
    } else if (strcmp(p, "/api/v1/plugins") == 0) {
        if (method_ok(req, out, "GET")) {
            get_plugins(a, req, out, 0);
        }
    } else if (strcmp(p, "/api/v1/bridges") == 0) {
        if (method_ok(req, out, "GET")) {
            get_plugins(a, req, out, 1);
        }
    } else if (strcmp(p, "/api/v1/reload") == 0) {
        if (method_ok(req, out, "POST")) {
            post_reload(a, out);
        }
    } else {
        reply_error(out, 404, "no such path (see docs/http-api.md)");
    }
}
