/*
 * Parser of the bridges file: mosquitto 2.0's bridge lines plus midge's
 * additions (docs/bridge.md). Every line is honoured or rejected with
 * "FILE:LINE: why": a bridge block moved over from mosquitto either means
 * the same here or does not load.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"

#define MAX_TOKENS 8

/* Parser state for one file. */
struct parser {
    const char *path;
    int line;
    char *err;
    size_t errlen;
    struct bridge_conf *head;
    struct bridge_conf *cur;
};

static int
fail(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(p->err, p->errlen, "%s:%d: ", p->path, p->line);

    if (n >= 0 && (size_t)n < p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int
set_str(struct parser *p, char **dst, const char *v)
{
    char *c = strdup(v);

    if (c == NULL) {
        return fail(p, "out of memory");
    }
    free(*dst);
    *dst = c;
    return 0;
}

static int
parse_bool(struct parser *p, const char *key, const char *v, int *out)
{
    if (strcmp(v, "true") == 0) {
        *out = 1;
    } else if (strcmp(v, "false") == 0) {
        *out = 0;
    } else {
        return fail(p, "%s must be true or false, not \"%s\"", key, v);
    }
    return 0;
}

static int
parse_uint(struct parser *p, const char *key, const char *v, unsigned long long min,
           unsigned long long max, unsigned long long *out)
{
    char *end = NULL;
    unsigned long long n;

    errno = 0;
    n = strtoull(v, &end, 10);
    if (v[0] == '\0' || v[0] == '-' || *end != '\0' || errno != 0 || n < min || n > max) {
        return fail(p, "%s must be a whole number from %llu to %llu, not \"%s\"", key, min, max, v);
    }
    *out = n;
    return 0;
}

static int
has_wildcard(const char *s)
{
    return strchr(s, '+') != NULL || strchr(s, '#') != NULL;
}

/* A topic filter as MQTT allows it [MQTT-4.7.1-1..3]. */
static int
filter_valid(const char *f)
{
    size_t n = strlen(f);
    size_t i;

    if (n == 0 || n > 65535 || !mqtt_utf8_valid((const uint8_t *)f, n)) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (f[i] == '#' && (i + 1 != n || (i > 0 && f[i - 1] != '/'))) {
            return 0;
        }
        if (f[i] == '+' && ((i > 0 && f[i - 1] != '/') || (i + 1 < n && f[i + 1] != '/'))) {
            return 0;
        }
    }
    return 1;
}

static char *
concat(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    char *s = malloc(la + lb + 1);

    if (s != NULL) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

/* topic PATTERN [[[out|in|both] QOS] LOCAL_PREFIX REMOTE_PREFIX] */
static int
parse_topic(struct parser *p, char **tok, int ntok)
{
    struct bridge_conf *c = p->cur;
    struct bridge_topic t;
    struct bridge_topic *v;
    unsigned long long qos = 0;

    memset(&t, 0, sizeof(t));
    t.dir = BRIDGE_OUT;
    if (ntok < 2 || ntok == 5 || ntok > 6) {
        return fail(p, "topic takes PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]] "
                       "(both prefixes or none)");
    }
    if (ntok >= 3) {
        if (strcmp(tok[2], "out") == 0) {
            t.dir = BRIDGE_OUT;
        } else if (strcmp(tok[2], "in") == 0) {
            t.dir = BRIDGE_IN;
        } else if (strcmp(tok[2], "both") == 0) {
            t.dir = BRIDGE_BOTH;
        } else {
            return fail(p, "topic direction must be in, out or both, not \"%s\"", tok[2]);
        }
    }
    if (ntok >= 4 && parse_uint(p, "topic QoS", tok[3], 0, 2, &qos) != 0) {
        return -1;
    }
    t.qos = (int)qos;
    t.pattern = strdup(tok[1]);
    t.local_prefix = strdup(ntok == 6 ? tok[4] : "");
    t.remote_prefix = strdup(ntok == 6 ? tok[5] : "");
    if (t.pattern == NULL || t.local_prefix == NULL || t.remote_prefix == NULL) {
        goto oom;
    }
    if (has_wildcard(t.local_prefix) || has_wildcard(t.remote_prefix)) {
        fail(p, "topic prefixes cannot contain wildcards (+ or #)");
        goto bad;
    }
    if (t.pattern[0] == '\0' && (t.local_prefix[0] == '\0' || t.remote_prefix[0] == '\0')) {
        fail(p, "an empty topic pattern (\"\") needs both a local and a remote prefix");
        goto bad;
    }
    t.local_filter = concat(t.local_prefix, t.pattern);
    t.remote_filter = concat(t.remote_prefix, t.pattern);
    if (t.local_filter == NULL || t.remote_filter == NULL) {
        goto oom;
    }
    if (!filter_valid(t.local_filter) || !filter_valid(t.remote_filter)) {
        fail(p, "invalid topic filter \"%s\"", !filter_valid(t.local_filter) ? t.local_filter
                                                                             : t.remote_filter);
        goto bad;
    }
    v = realloc(c->topics, (c->ntopics + 1) * sizeof(*v));
    if (v == NULL) {
        goto oom;
    }
    c->topics = v;
    c->topics[c->ntopics++] = t;
    return 0;
oom:
    fail(p, "out of memory");
bad:
    free(t.pattern);
    free(t.local_prefix);
    free(t.remote_prefix);
    free(t.local_filter);
    free(t.remote_filter);
    return -1;
}

/* address host[:port] [host[:port] ...]; [v6]:port for IPv6. */
static int
parse_address(struct parser *p, char **tok, int ntok)
{
    struct bridge_conf *c = p->cur;
    int i;

    if (ntok < 2) {
        return fail(p, "%s needs at least one host[:port]", tok[0]);
    }
    if (c->naddrs > 0) {
        return fail(p, "%s given twice for connection %s", tok[0], c->name);
    }
    c->addrs = calloc((size_t)(ntok - 1), sizeof(*c->addrs));
    if (c->addrs == NULL) {
        return fail(p, "out of memory");
    }
    for (i = 1; i < ntok; i++) {
        char *h = tok[i];
        char *colon;
        unsigned long long port = 1883;
        size_t hl;

        if (h[0] == '[') {
            char *close = strchr(h, ']');
            if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
                return fail(p, "bad IPv6 address \"%s\" (write [ADDRESS]:PORT)", tok[i]);
            }
            colon = close[1] == ':' ? close + 1 : NULL;
            h++;
            hl = (size_t)(close - h);
        } else {
            colon = strrchr(h, ':');
            if (colon != NULL && strchr(h, ':') != colon) {
                return fail(p, "IPv6 address \"%s\" must be written [ADDRESS]:PORT", tok[i]);
            }
            hl = colon != NULL ? (size_t)(colon - h) : strlen(h);
        }
        if (colon != NULL && parse_uint(p, "port", colon + 1, 1, 65535, &port) != 0) {
            return -1;
        }
        if (hl == 0) {
            return fail(p, "empty host in \"%s\"", tok[i]);
        }
        c->addrs[c->naddrs].host = strndup(h, hl);
        if (c->addrs[c->naddrs].host == NULL) {
            return fail(p, "out of memory");
        }
        c->addrs[c->naddrs++].port = (uint16_t)port;
    }
    return 0;
}

static int
parse_restart(struct parser *p, char **tok, int ntok)
{
    unsigned long long base;
    unsigned long long cap;

    if (ntok != 2 && ntok != 3) {
        return fail(p, "restart_timeout takes BASE [CAP] (seconds)");
    }
    if (parse_uint(p, "restart_timeout", tok[1], 1, 86400, &base) != 0) {
        return -1;
    }
    cap = base;
    if (ntok == 3 && parse_uint(p, "restart_timeout cap", tok[2], 1, 86400, &cap) != 0) {
        return -1;
    }
    if (cap < base) {
        return fail(p, "restart_timeout cap %llu is below its base %llu", cap, base);
    }
    p->cur->restart_base = (double)base;
    p->cur->restart_cap = (double)cap;
    return 0;
}

static int
start_connection(struct parser *p, char **tok, int ntok)
{
    struct bridge_conf *c;
    struct bridge_conf *o;

    if (ntok != 2) {
        return fail(p, "connection takes one NAME");
    }
    for (o = p->head; o != NULL; o = o->next) {
        if (strcmp(o->name, tok[1]) == 0) {
            return fail(p, "duplicate connection name \"%s\" (first at line %d)", tok[1], o->line);
        }
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->name = strdup(tok[1])) == NULL) {
        free(c);
        return fail(p, "out of memory");
    }
    c->line = p->line;
    c->version = MQTT_V311;
    c->local_cleansession = -1;
    c->keepalive = 60;
    c->try_private = 1;
    c->notifications = 1;
    c->restart_base = 5;
    c->restart_cap = 30;
    c->attempt_unsubscribe = 1;
    c->outgoing_retain = 1;
    c->queue_max_messages = 10000;
    c->idle_timeout = 60;
    c->threshold = 10;
    c->forward_bridged = 1;
    if (p->cur == NULL) {
        p->head = c;
    } else {
        p->cur->next = c;
    }
    p->cur = c;
    return 0;
}

/* Lines of mosquitto 2.0 that midge does not honour, with the reason. */
static const struct {
    const char *key;
    const char *why;
} refused[] = {
    {"local_username", "the local side of a midge bridge is an internal session with no login "
                       "(ACL on bridged traffic: docs/bridge.md)"},
    {"local_password", "the local side of a midge bridge is an internal session with no login"},
    {"bridge_require_ocsp", "OCSP stapling checks are not supported"},
};

/* Words of the broker's own config that do not belong in a bridges file. */
static int
broker_word(const char *k)
{
    static const char *const words[] = {"listener", "port", "allow_anonymous", "plugin",
                                        "persistence", "log_dest", "log_type", "password_file",
                                        "acl_file", "max_queued_messages", "include_dir", NULL};
    size_t i;

    for (i = 0; words[i] != NULL; i++) {
        if (strcmp(words[i], k) == 0) {
            return 1;
        }
    }
    return strncmp(k, "plugin_opt_", 11) == 0;
}

static int
one_line(struct parser *p, char **tok, int ntok)
{
    struct bridge_conf *c = p->cur;
    const char *k = tok[0];
    const char *v = ntok > 1 ? tok[1] : NULL;
    unsigned long long n = 0;
    size_t i;

    if (strcmp(k, "connection") == 0) {
        return start_connection(p, tok, ntok);
    }
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (strcmp(k, refused[i].key) == 0) {
            return fail(p, "%s is not supported: %s", k, refused[i].why);
        }
    }
    if (c == NULL) {
        if (broker_word(k)) {
            return fail(p, "%s belongs in the broker's configuration, not in a bridges file", k);
        }
        return fail(p, "%s before any connection line", k);
    }
    if (strcmp(k, "topic") == 0) {
        return parse_topic(p, tok, ntok);
    }
    if (strcmp(k, "address") == 0 || strcmp(k, "addresses") == 0) {
        return parse_address(p, tok, ntok);
    }
    if (strcmp(k, "restart_timeout") == 0) {
        return parse_restart(p, tok, ntok);
    }
    if (strcmp(k, "notification_topic") == 0 && ntok == 2 && (has_wildcard(v) || v[0] == '\0')) {
        return fail(p, "notification_topic must be a topic name without wildcards");
    }
    if (ntok != 2) {
        if (broker_word(k)) {
            return fail(p, "%s belongs in the broker's configuration, not in a bridges file", k);
        }
        return ntok == 1 ? fail(p, "%s needs a value", k)
                         : fail(p, "%s takes one value (write \"\" for an empty one)", k);
    }
    if (strcmp(k, "remote_clientid") == 0 || strcmp(k, "clientid") == 0) {
        return set_str(p, &c->remote_clientid, v);
    } else if (strcmp(k, "remote_username") == 0 || strcmp(k, "username") == 0) {
        return set_str(p, &c->remote_username, v);
    } else if (strcmp(k, "remote_password") == 0 || strcmp(k, "password") == 0) {
        return set_str(p, &c->remote_password, v);
    } else if (strcmp(k, "local_clientid") == 0) {
        return set_str(p, &c->local_clientid, v);
    } else if (strcmp(k, "notification_topic") == 0) {
        return set_str(p, &c->notification_topic, v);
    } else if (strcmp(k, "bridge_bind_address") == 0) {
        return set_str(p, &c->bind_address, v);
    } else if (strcmp(k, "cleansession") == 0) {
        return parse_bool(p, k, v, &c->cleansession);
    } else if (strcmp(k, "local_cleansession") == 0) {
        return parse_bool(p, k, v, &c->local_cleansession);
    } else if (strcmp(k, "try_private") == 0) {
        return parse_bool(p, k, v, &c->try_private);
    } else if (strcmp(k, "notifications") == 0) {
        return parse_bool(p, k, v, &c->notifications);
    } else if (strcmp(k, "notifications_local_only") == 0) {
        return parse_bool(p, k, v, &c->notifications_local_only);
    } else if (strcmp(k, "round_robin") == 0) {
        return parse_bool(p, k, v, &c->round_robin);
    } else if (strcmp(k, "bridge_attempt_unsubscribe") == 0) {
        return parse_bool(p, k, v, &c->attempt_unsubscribe);
    } else if (strcmp(k, "bridge_outgoing_retain") == 0) {
        return parse_bool(p, k, v, &c->outgoing_retain);
    } else if (strcmp(k, "bridge_insecure") == 0) {
        return parse_bool(p, k, v, &c->insecure);
    } else if (strcmp(k, "forward_bridged") == 0) {
        return parse_bool(p, k, v, &c->forward_bridged);
    } else if (strcmp(k, "keepalive_interval") == 0) {
        if (parse_uint(p, k, v, 5, 65535, &n) != 0) {
            return -1;
        }
        c->keepalive = (int)n;
    } else if (strcmp(k, "bridge_max_packet_size") == 0) {
        if (parse_uint(p, k, v, 0, MQTT_MAX_REMAINING_LENGTH + 5ull, &n) != 0) {
            return -1;
        }
        c->max_packet_size = (uint32_t)n;
    } else if (strcmp(k, "queue_max_messages") == 0) {
        if (parse_uint(p, k, v, 1, 65535, &n) != 0) {
            return -1;
        }
        c->queue_max_messages = (uint32_t)n;
    } else if (strcmp(k, "queue_max_bytes") == 0) {
        if (parse_uint(p, k, v, 0, UINT64_MAX, &n) != 0) {
            return -1;
        }
        c->queue_max_bytes = n;
    } else if (strcmp(k, "bridge_protocol_version") == 0) {
        if (strcmp(v, "mqttv31") == 0) {
            c->version = MQTT_V31;
        } else if (strcmp(v, "mqttv311") == 0) {
            c->version = MQTT_V311;
        } else if (strcmp(v, "mqttv50") == 0) {
            c->version = MQTT_V5;
        } else {
            return fail(p, "bridge_protocol_version must be mqttv31, mqttv311 or mqttv50, not \"%s\"",
                        v);
        }
    } else if (strcmp(k, "start_type") == 0) {
        if (strcmp(v, "automatic") == 0) {
            c->start_type = BRIDGE_START_AUTOMATIC;
        } else if (strcmp(v, "once") == 0) {
            c->start_type = BRIDGE_START_ONCE;
        } else if (strcmp(v, "lazy") == 0) {
            c->start_type = BRIDGE_START_LAZY;
        } else {
            return fail(p, "start_type must be automatic, lazy or once, not \"%s\"", v);
        }
    } else if (strcmp(k, "idle_timeout") == 0) {
        if (parse_uint(p, k, v, 1, 86400 * 365, &n) != 0) {
            return -1;
        }
        c->idle_timeout = (uint32_t)n;
    } else if (strcmp(k, "threshold") == 0) {
        if (parse_uint(p, k, v, 1, 65535, &n) != 0) {
            return -1;
        }
        c->threshold = (uint32_t)n;
    } else if (strcmp(k, "remote_profile") == 0) {
        if (strcmp(v, "generic") == 0) {
            c->profile = BRIDGE_PROFILE_GENERIC;
        } else if (strcmp(v, "aws-iot") == 0) {
            c->profile = BRIDGE_PROFILE_AWS;
        } else if (strcmp(v, "azure-iot") == 0) {
            c->profile = BRIDGE_PROFILE_AZURE;
        } else {
            return fail(p, "remote_profile must be generic, aws-iot or azure-iot, not \"%s\"", v);
        }
    } else if (strcmp(k, "bridge_cafile") == 0) {
        return set_str(p, &c->cafile, v);
    } else if (strcmp(k, "bridge_capath") == 0) {
        return set_str(p, &c->capath, v);
    } else if (strcmp(k, "bridge_certfile") == 0) {
        return set_str(p, &c->certfile, v);
    } else if (strcmp(k, "bridge_keyfile") == 0) {
        return set_str(p, &c->keyfile, v);
    } else if (strcmp(k, "bridge_identity") == 0) {
        return set_str(p, &c->psk_identity, v);
    } else if (strcmp(k, "bridge_psk") == 0) {
        size_t l = strlen(v);
        size_t j;
        uint8_t *key;
        if (l == 0 || l % 2 != 0 || l > 512 || strspn(v, "0123456789abcdefABCDEF") != l) {
            return fail(p, "bridge_psk must be an even number of hex digits (at most 512)");
        }
        key = malloc(l / 2);
        if (key == NULL) {
            return fail(p, "out of memory");
        }
        for (j = 0; j < l / 2; j++) {
            char hx[3] = {v[2 * j], v[2 * j + 1], '\0'};
            key[j] = (uint8_t)strtoul(hx, NULL, 16);
        }
        free(c->psk);
        c->psk = key;
        c->psk_len = l / 2;
    } else if (strcmp(k, "bridge_alpn") == 0) {
        return set_str(p, &c->alpn, v);
    } else if (strcmp(k, "bridge_tls_version") == 0) {
        if (strcmp(v, "tlsv1.2") != 0 && strcmp(v, "tlsv1.3") != 0) {
            return fail(p, "bridge_tls_version must be tlsv1.2 or tlsv1.3, not \"%s\" (older "
                           "versions are refused by OpenSSL 3's default security level)", v);
        }
        return set_str(p, &c->tls_version, v);
    } else if (broker_word(k)) {
        return fail(p, "%s belongs in the broker's configuration, not in a bridges file", k);
    } else {
        return fail(p, "unknown bridge option \"%s\"", k);
    }
    return 0;
}

/* Checks what only the whole block can tell, and fills the defaults that depend on it. */
static int
finish_conf(struct parser *p, struct bridge_conf *c, const char *hostname)
{
    char buf[512];

    p->line = c->line;
    if (c->naddrs == 0) {
        return fail(p, "connection %s has no address line", c->name);
    }
    if (c->ntopics == 0) {
        return fail(p, "connection %s has no topic line", c->name);
    }
    if (c->remote_password != NULL && c->remote_username == NULL) {
        return fail(p, "connection %s: remote_password needs remote_username", c->name);
    }
    if ((c->certfile == NULL) != (c->keyfile == NULL)) {
        return fail(p, "connection %s: bridge_certfile and bridge_keyfile go together", c->name);
    }
    if ((c->psk_identity == NULL) != (c->psk == NULL)) {
        return fail(p, "connection %s: bridge_identity and bridge_psk go together", c->name);
    }
    if (c->psk != NULL && (c->cafile != NULL || c->capath != NULL || c->certfile != NULL)) {
        return fail(p, "connection %s: bridge_psk cannot be combined with certificates", c->name);
    }
    if ((c->certfile != NULL || c->alpn != NULL || c->insecure || c->tls_version != NULL) &&
        c->cafile == NULL && c->capath == NULL && c->psk == NULL) {
        return fail(p, "connection %s: TLS options need bridge_cafile or bridge_capath", c->name);
    }
    if (c->local_cleansession < 0) {
        c->local_cleansession = c->cleansession;
    }
    if (c->remote_clientid == NULL) {
        snprintf(buf, sizeof(buf), "%s.%s", hostname, c->name);
        if ((c->remote_clientid = strdup(buf)) == NULL) {
            return fail(p, "out of memory");
        }
    }
    if (c->local_clientid == NULL) {
        snprintf(buf, sizeof(buf), "local.%s", c->remote_clientid);
        if ((c->local_clientid = strdup(buf)) == NULL) {
            return fail(p, "out of memory");
        }
    }
    if (strcmp(c->local_clientid, c->remote_clientid) == 0) {
        /* mosquitto warns about bridging a broker to itself; here both ids name sessions. */
    }
    if (c->notification_topic == NULL) {
        snprintf(buf, sizeof(buf), "$SYS/broker/connection/%s/state", c->remote_clientid);
        if ((c->notification_topic = strdup(buf)) == NULL) {
            return fail(p, "out of memory");
        }
    }
    return 0;
}

/* Splits a line into whitespace-separated tokens in place; `""` is an empty token. */
static int
tokenize(char *s, char **tok, int max)
{
    int n = 0;

    while (*s != '\0') {
        while (*s == ' ' || *s == '\t' || *s == '\r') {
            s++;
        }
        if (*s == '\0') {
            break;
        }
        if (n == max) {
            return -1;
        }
        tok[n] = s;
        while (*s != '\0' && *s != ' ' && *s != '\t' && *s != '\r') {
            s++;
        }
        if (*s != '\0') {
            *s++ = '\0';
        }
        if (strcmp(tok[n], "\"\"") == 0) {
            tok[n][0] = '\0';
        }
        n++;
    }
    return n;
}

int
bridge_conf_parse(const char *path, const char *text, const char *hostname,
                  struct bridge_conf **out, char *err, size_t errlen)
{
    struct parser p;
    struct bridge_conf *c;
    char *copy = strdup(text);
    char *line;
    char *next;
    char *tok[MAX_TOKENS];
    int rc = -1;

    memset(&p, 0, sizeof(p));
    p.path = path;
    p.err = err;
    p.errlen = errlen;
    *out = NULL;
    if (copy == NULL) {
        fail(&p, "out of memory");
        goto out;
    }
    for (line = copy; line != NULL; line = next) {
        int ntok;
        next = strchr(line, '\n');
        if (next != NULL) {
            *next++ = '\0';
        }
        p.line++;
        if (strlen(line) != strcspn(line, "\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f")) {
            fail(&p, "control character in line");
            goto out;
        }
        while (*line == ' ' || *line == '\t') {
            line++;
        }
        if (*line == '#' || *line == '\0' || *line == '\r') {
            continue;
        }
        ntok = tokenize(line, tok, MAX_TOKENS);
        if (ntok < 0) {
            fail(&p, "too many values on one line");
            goto out;
        }
        if (ntok > 0 && one_line(&p, tok, ntok) != 0) {
            goto out;
        }
    }
    if (p.head == NULL) {
        p.line = p.line > 0 ? p.line : 1;
        fail(&p, "no connection defined");
        goto out;
    }
    for (c = p.head; c != NULL; c = c->next) {
        if (finish_conf(&p, c, hostname) != 0) {
            goto out;
        }
    }
    for (c = p.head; c != NULL; c = c->next) {
        struct bridge_conf *o;
        for (o = c->next; o != NULL; o = o->next) {
            if (strcmp(o->local_clientid, c->local_clientid) == 0) {
                p.line = o->line;
                fail(&p, "connection %s uses local_clientid \"%s\" of connection %s (line %d)",
                     o->name, o->local_clientid, c->name, c->line);
                goto out;
            }
        }
    }
    *out = p.head;
    p.head = NULL;
    rc = 0;
out:
    bridge_conf_free(p.head);
    free(copy);
    return rc;
}

int
bridge_conf_load(const char *path, const char *hostname, struct bridge_conf **out, char *err,
                 size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t len = 0;
    size_t cap = 0;
    int rc = -1;

    *out = NULL;
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t got;
        if (cap - len < 4096) {
            char *t;
            if (cap > (1u << 24)) {
                snprintf(err, errlen, "%s: file too large", path);
                goto out;
            }
            t = realloc(text, cap + 65536);
            if (t == NULL) {
                snprintf(err, errlen, "%s: out of memory", path);
                goto out;
            }
            text = t;
            cap += 65536;
        }
        got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto out;
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        snprintf(err, errlen, "%s: NUL byte in file", path);
        goto out;
    }
    rc = bridge_conf_parse(path, text, hostname, out, err, errlen);
out:
    free(text);
    fclose(f);
    return rc;
}

void
bridge_conf_free(struct bridge_conf *list)
{
    while (list != NULL) {
        struct bridge_conf *c = list;
        size_t i;
        list = c->next;
        for (i = 0; i < c->naddrs; i++) {
            free(c->addrs[i].host);
        }
        for (i = 0; i < c->ntopics; i++) {
            free(c->topics[i].pattern);
            free(c->topics[i].local_prefix);
            free(c->topics[i].remote_prefix);
            free(c->topics[i].local_filter);
            free(c->topics[i].remote_filter);
        }
        free(c->addrs);
        free(c->topics);
        free(c->name);
        free(c->remote_clientid);
        free(c->remote_username);
        free(c->remote_password);
        free(c->local_clientid);
        free(c->notification_topic);
        free(c->bind_address);
        free(c->cafile);
        free(c->capath);
        free(c->certfile);
        free(c->keyfile);
        free(c->alpn);
        free(c->tls_version);
        free(c->psk_identity);
        free(c->psk);
        free(c);
    }
}

static int
str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int
bridge_conf_same(const struct bridge_conf *a, const struct bridge_conf *b)
{
    size_t i;

    if (a->naddrs != b->naddrs || a->ntopics != b->ntopics || a->version != b->version ||
        a->cleansession != b->cleansession || a->local_cleansession != b->local_cleansession ||
        a->keepalive != b->keepalive || a->try_private != b->try_private ||
        a->notifications != b->notifications ||
        a->notifications_local_only != b->notifications_local_only ||
        a->restart_base != b->restart_base || a->restart_cap != b->restart_cap ||
        a->round_robin != b->round_robin || a->start_type != b->start_type ||
        a->idle_timeout != b->idle_timeout || a->threshold != b->threshold ||
        a->attempt_unsubscribe != b->attempt_unsubscribe ||
        a->outgoing_retain != b->outgoing_retain || a->max_packet_size != b->max_packet_size ||
        a->queue_max_messages != b->queue_max_messages ||
        a->queue_max_bytes != b->queue_max_bytes || a->profile != b->profile ||
        a->forward_bridged != b->forward_bridged || a->insecure != b->insecure ||
        !str_same(a->name, b->name) || !str_same(a->remote_clientid, b->remote_clientid) ||
        !str_same(a->remote_username, b->remote_username) ||
        !str_same(a->remote_password, b->remote_password) ||
        !str_same(a->local_clientid, b->local_clientid) ||
        !str_same(a->notification_topic, b->notification_topic) ||
        !str_same(a->bind_address, b->bind_address) || !str_same(a->cafile, b->cafile) ||
        !str_same(a->capath, b->capath) || !str_same(a->certfile, b->certfile) ||
        !str_same(a->keyfile, b->keyfile) || !str_same(a->alpn, b->alpn) ||
        !str_same(a->tls_version, b->tls_version) ||
        !str_same(a->psk_identity, b->psk_identity) || a->psk_len != b->psk_len ||
        (a->psk_len > 0 && memcmp(a->psk, b->psk, a->psk_len) != 0)) {
        return 0;
    }
    for (i = 0; i < a->naddrs; i++) {
        if (a->addrs[i].port != b->addrs[i].port || strcmp(a->addrs[i].host, b->addrs[i].host)) {
            return 0;
        }
    }
    for (i = 0; i < a->ntopics; i++) {
        const struct bridge_topic *x = &a->topics[i];
        const struct bridge_topic *y = &b->topics[i];
        if (x->dir != y->dir || x->qos != y->qos || strcmp(x->pattern, y->pattern) ||
            strcmp(x->local_prefix, y->local_prefix) ||
            strcmp(x->remote_prefix, y->remote_prefix)) {
            return 0;
        }
    }
    return 1;
}

int
bridge_topic_match(const char *f, const char *t)
{
    if ((f[0] == '+' || f[0] == '#') && t[0] == '$') {
        return 0; /* [MQTT-4.7.2-1] */
    }
    for (;;) {
        if (f[0] == '#') {
            return 1;
        }
        if (f[0] == '+') {
            while (*t != '\0' && *t != '/') {
                t++;
            }
            f++;
        } else {
            while (*f != '\0' && *f != '/' && *f == *t) {
                f++;
                t++;
            }
            if ((*f != '\0' && *f != '/') || (*t != '\0' && *t != '/')) {
                return 0;
            }
        }
        /* both at '/' or end */
        if (*f == '\0' && *t == '\0') {
            return 1;
        }
        if (*f == '\0' || (*t == '\0' && !(f[0] == '/' && f[1] == '#' && f[2] == '\0'))) {
            return 0;
        }
        if (*t == '\0') {
            return 1; /* "a/#" matches "a" [MQTT-4.7.1-2] */
        }
        f++;
        t++;
    }
}
