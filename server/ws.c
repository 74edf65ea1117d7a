/*
 * WebSocket transport (see ws.h). The Upgrade request is parsed from a
 * bounded buffer; anything unexpected gets a short HTTP error and the
 * connection closes. After 101, wslay runs in its non-buffering mode: the
 * payload chunks of binary frames are appended to `dbuf` and handed to the
 * MQTT parser as a plain byte stream [MQTT-6.0.0-2]; text frames close the
 * connection [MQTT-6.0.0-1].
 */
#include "ws.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "outbuf.h"

/* One read from the layer below: a whole TLS record. */
#define WS_READ_CHUNK (16 * 1024)
/* hbuf holds the Upgrade request, then each read from the layer below. */
#define WS_HBUF (WS_READ_CHUNK > WS_HTTP_MAX ? WS_READ_CHUNK : WS_HTTP_MAX)

/*
 * One connection's WebSocket state. Owned by its connection; owns its
 * buffers and the wslay context.
 */
struct ws_conn {
    struct ws_lower lower;
    wslay_event_context_ptr ctx; /* NULL until upgraded */
    char *paths;                 /* allow-lists, freed after the upgrade */
    char *origins;
    char *hbuf;                  /* the request while it arrives; after 101, bytes that followed it */
    size_t hlen;
    size_t hoff;                 /* hbuf bytes already given to wslay */
    char *hout;                  /* HTTP answer not yet written */
    size_t houtlen;
    size_t houtoff;
    uint8_t *dbuf;               /* decoded MQTT bytes not yet read */
    size_t dlen;
    size_t dcap;
    uint8_t frame_op;            /* opcode of the frame being received */
    uint8_t data_op;             /* opcode of the data message (for continuations) */
    uint8_t lower_read_done;     /* one lower read per ws_conn_read */
    uint8_t lower_eof;
    int lower_errno;             /* lower failure seen in a callback, 0 none */
    const char *bad;             /* protocol violation, static string */
    char err[160];
};

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)) (RFC 6455 section 4.2.2), 29 bytes with NUL. */
static void
ws_accept_key(const char *key, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char in[128];
    int n = snprintf(in, sizeof(in), "%s%s", key, GUID);

    EVP_Digest(in, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

struct ws_conn *
ws_conn_new(const struct ws_lower *lower, const char *paths, const char *origins)
{
    struct ws_conn *ws = calloc(1, sizeof(*ws));

    if (ws == NULL) {
        return NULL;
    }
    ws->lower = *lower;
    if ((paths != NULL && (ws->paths = strdup(paths)) == NULL) ||
        (origins != NULL && (ws->origins = strdup(origins)) == NULL)) {
        ws_conn_free(ws);
        return NULL;
    }
    return ws;
}

/* Case-insensitive: does the comma-separated header value contain token? */
static int
has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;

    while (*p != '\0') {
        const char *end;
        const char *e;
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        end = strchr(p, ',');
        if (end == NULL) {
            end = p + strlen(p);
        }
        e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        if ((size_t)(e - p) == tl && strncasecmp(p, token, tl) == 0) {
            return 1;
        }
        p = end;
    }
    return 0;
}

/* Is word one of the space-separated list? */
static int
in_list(const char *list, const char *word, size_t wlen)
{
    const char *p = list;

    while (*p != '\0') {
        const char *end = strchr(p, ' ');
        size_t l = end != NULL ? (size_t)(end - p) : strlen(p);
        if (l == wlen && strncmp(p, word, wlen) == 0) {
            return 1;
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    return 0;
}

/* Queues an HTTP answer; written now as far as the socket takes it. */
static int
answer(struct ws_conn *ws, const char *text)
{
    free(ws->hout);
    ws->hout = strdup(text);
    if (ws->hout == NULL) {
        return -1;
    }
    ws->houtlen = strlen(text);
    ws->houtoff = 0;
    return ws_conn_flush(ws, NULL) < 0 ? -1 : 0;
}

/* Refuses the Upgrade: writes the status and fails with the reason. */
static ssize_t
refuse(struct ws_conn *ws, const char *status, const char *extra, const char *why)
{
    char resp[256];

    snprintf(resp, sizeof(resp), "HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: 0\r\n%s\r\n",
             status, extra);
    answer(ws, resp);
    snprintf(ws->err, sizeof(ws->err), "websocket upgrade refused: %s", why);
    errno = EPROTO;
    return -1;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data);
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data);
static void frame_start_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user_data);
static void frame_chunk_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user_data);

/*
 * Checks the complete request in hbuf[0..hend) (NUL-terminated there) and
 * answers it. Returns 0 after 101, -1 (errno, reason) after an error answer.
 */
static ssize_t
upgrade(struct ws_conn *ws, char *req)
{
    static const struct wslay_event_callbacks cbs = {
        recv_cb, send_cb, NULL, frame_start_cb, frame_chunk_cb, NULL, NULL,
    };
    const char *key = NULL;
    const char *version = NULL;
    const char *upgrade_h = NULL;
    const char *connection = NULL;
    const char *protocols = NULL;
    const char *origin = NULL;
    const char *proto = NULL;
    char *line;
    char *next;
    char *target;
    char *sp;
    size_t plen;
    char accept[29];
    char resp[512];

    /* Request line: GET TARGET HTTP/1.1 */
    next = strstr(req, "\r\n");
    *next = '\0';
    next += 2;
    if (strncmp(req, "GET ", 4) != 0) {
        return refuse(ws, "400 Bad Request", "", "not a GET request");
    }
    target = req + 4;
    sp = strchr(target, ' ');
    if (sp == NULL || target[0] != '/' || strncmp(sp + 1, "HTTP/1.", 7) != 0 ||
        strcmp(sp + 1, "HTTP/1.0") == 0 || strchr(sp + 1, ' ') != NULL) {
        return refuse(ws, "400 Bad Request", "", "bad request line");
    }
    *sp = '\0';
    plen = strcspn(target, "?");
    /* Headers. */
    for (line = next; *line != '\0'; line = next) {
        char *colon;
        char *value;
        char *end;

        next = strstr(line, "\r\n");
        *next = '\0';
        next += 2;
        colon = strchr(line, ':');
        if (colon == NULL || colon == line) {
            return refuse(ws, "400 Bad Request", "", "malformed header line");
        }
        *colon = '\0';
        value = colon + 1;
        while (*value == ' ' || *value == '\t') {
            value++;
        }
        end = value + strlen(value);
        while (end > value && (end[-1] == ' ' || end[-1] == '\t')) {
            *--end = '\0';
        }
        if (strcasecmp(line, "Sec-WebSocket-Key") == 0) {
            key = value;
        } else if (strcasecmp(line, "Sec-WebSocket-Version") == 0) {
            version = value;
        } else if (strcasecmp(line, "Upgrade") == 0) {
            upgrade_h = value;
        } else if (strcasecmp(line, "Connection") == 0) {
            connection = value;
        } else if (strcasecmp(line, "Sec-WebSocket-Protocol") == 0) {
            protocols = value;
        } else if (strcasecmp(line, "Origin") == 0) {
            origin = value;
        }
    }
    if (upgrade_h == NULL || !has_token(upgrade_h, "websocket")) {
        return refuse(ws, "400 Bad Request", "", "missing Upgrade: websocket");
    }
    if (connection == NULL || !has_token(connection, "upgrade")) {
        return refuse(ws, "400 Bad Request", "", "missing Connection: Upgrade");
    }
    if (version == NULL || strcmp(version, "13") != 0) {
        return refuse(ws, "400 Bad Request", "Sec-WebSocket-Version: 13\r\n",
                      "Sec-WebSocket-Version is not 13");
    }
    if (key == NULL || strlen(key) != 24 || strcmp(key + 22, "==") != 0) {
        return refuse(ws, "400 Bad Request", "", "missing or malformed Sec-WebSocket-Key");
    }
    if (protocols != NULL) {
        /* [MQTT-6.0.0-3]/[MQTT-6.0.0-4]: "mqtt"; "mqttv3.1" for MQTT 3.1 clients. */
        if (has_token(protocols, "mqtt")) {
            proto = "mqtt";
        } else if (has_token(protocols, "mqttv3.1")) {
            proto = "mqttv3.1";
        } else {
            return refuse(ws, "400 Bad Request", "", "no supported Sec-WebSocket-Protocol");
        }
    }
    if (ws->paths != NULL && !in_list(ws->paths, target, plen)) {
        return refuse(ws, "404 Not Found", "", "path not in websockets_path");
    }
    if (ws->origins != NULL && origin != NULL && !in_list(ws->origins, origin, strlen(origin))) {
        return refuse(ws, "403 Forbidden", "", "origin not in websockets_origin");
    }
    if (wslay_event_context_server_init(&ws->ctx, &cbs, ws) != 0) {
        snprintf(ws->err, sizeof(ws->err), "out of memory");
        errno = ENOMEM;
        return -1;
    }
    wslay_event_config_set_no_buffering(ws->ctx, 1);
    ws_accept_key(key, accept);
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
             accept, proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
             proto ? "\r\n" : "");
    free(ws->paths);
    free(ws->origins);
    ws->paths = ws->origins = NULL;
    if (answer(ws, resp) < 0) {
        snprintf(ws->err, sizeof(ws->err), "websocket upgrade: cannot send the answer");
        errno = EIO;
        return -1;
    }
    return 0;
}

/* Reads the Upgrade request. 0: answered 101; -1: errno (EAGAIN: incomplete). */
static ssize_t
read_request(struct ws_conn *ws)
{
    char *end;
    ssize_t n;

    if (ws->hbuf == NULL && (ws->hbuf = malloc(WS_HBUF + 1)) == NULL) {
        errno = ENOMEM;
        snprintf(ws->err, sizeof(ws->err), "out of memory");
        return -1;
    }
    n = ws->lower.read(ws->lower.arg, ws->hbuf + ws->hlen, WS_HTTP_MAX - ws->hlen);
    if (n == 0) {
        snprintf(ws->err, sizeof(ws->err), "websocket upgrade: closed by client");
        errno = ECONNRESET;
        return -1;
    }
    if (n < 0) {
        if (errno != EAGAIN) {
            snprintf(ws->err, sizeof(ws->err), "%s", ws->lower.error(ws->lower.arg));
        }
        return -1;
    }
    ws->hlen += (size_t)n;
    ws->hbuf[ws->hlen] = '\0';
    if (memchr(ws->hbuf, '\0', ws->hlen) != NULL) {
        return refuse(ws, "400 Bad Request", "", "NUL byte in request");
    }
    end = strstr(ws->hbuf, "\r\n\r\n");
    if (end == NULL) {
        if (ws->hlen >= WS_HTTP_MAX) {
            return refuse(ws, "400 Bad Request", "", "request headers too large");
        }
        errno = EAGAIN;
        return -1;
    }
    end[2] = '\0'; /* keep the last header's CRLF; end the text there */
    ws->hoff = (size_t)(end + 4 - ws->hbuf);
    if (upgrade(ws, ws->hbuf) < 0) {
        return -1;
    }
    return 0;
}

/*
 * wslay asks for small pieces (a few KiB). The layer below is read whole
 * (up to WS_READ_CHUNK, one TLS record) into hbuf, which then serves wslay:
 * a TLS record read in pieces would leave decrypted bytes inside OpenSSL with
 * no socket event to announce them.
 */
static ssize_t
recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user_data)
{
    struct ws_conn *ws = user_data;
    ssize_t n;

    (void)flags;
    if (ws->hoff == ws->hlen) {
        if (ws->lower_read_done || ws->dlen >= WS_READ_CHUNK) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            return -1;
        }
        if (ws->hbuf == NULL && (ws->hbuf = malloc(WS_HBUF + 1)) == NULL) {
            ws->bad = "out of memory";
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        ws->lower_read_done = 1;
        ws->hoff = ws->hlen = 0;
        n = ws->lower.read(ws->lower.arg, ws->hbuf, WS_READ_CHUNK);
        if (n < 0 && errno == EAGAIN) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            return -1;
        }
        if (n <= 0) {
            if (n == 0) {
                ws->lower_eof = 1;
            } else {
                ws->lower_errno = errno ? errno : EIO;
                snprintf(ws->err, sizeof(ws->err), "%s", ws->lower.error(ws->lower.arg));
            }
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        ws->hlen = (size_t)n;
    }
    n = (ssize_t)(ws->hlen - ws->hoff < len ? ws->hlen - ws->hoff : len);
    memcpy(buf, ws->hbuf + ws->hoff, (size_t)n);
    ws->hoff += (size_t)n;
    return n;
}

static ssize_t
send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user_data)
{
    struct ws_conn *ws = user_data;
    ssize_t n;

    (void)flags;
    n = ws->lower.write(ws->lower.arg, data, len);
    if (n >= 0) {
        return n;
    }
    if (errno == EAGAIN) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        ws->lower_errno = errno ? errno : EIO;
        snprintf(ws->err, sizeof(ws->err), "%s", ws->lower.error(ws->lower.arg));
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

static void
frame_start_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg,
               void *user_data)
{
    struct ws_conn *ws = user_data;

    (void)ctx;
    ws->frame_op = arg->opcode;
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        /* [MQTT-6.0.0-1]: MQTT Control Packets travel in binary frames only. */
        ws->bad = "text frame (MQTT needs binary frames)";
    }
    if (arg->opcode == WSLAY_BINARY_FRAME || arg->opcode == WSLAY_TEXT_FRAME) {
        ws->data_op = arg->opcode;
    }
}

static void
frame_chunk_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_chunk_arg *arg,
               void *user_data)
{
    struct ws_conn *ws = user_data;

    (void)ctx;
    if (ws->bad != NULL || (ws->frame_op != WSLAY_BINARY_FRAME &&
                            !(ws->frame_op == WSLAY_CONTINUATION_FRAME &&
                              ws->data_op == WSLAY_BINARY_FRAME))) {
        return;
    }
    if (ws->dlen + arg->data_length > ws->dcap) {
        size_t cap = ws->dcap ? ws->dcap : 4096;
        uint8_t *b;
        while (cap < ws->dlen + arg->data_length) {
            cap *= 2;
        }
        b = realloc(ws->dbuf, cap);
        if (b == NULL) {
            ws->bad = "out of memory";
            return;
        }
        ws->dbuf = b;
        ws->dcap = cap;
    }
    memcpy(ws->dbuf + ws->dlen, arg->data, arg->data_length);
    ws->dlen += arg->data_length;
}

/* See ws.h. */
ssize_t
ws_conn_read(struct ws_conn *ws, void *buf, size_t len)
{
    size_t n;

    if (ws->ctx == NULL) {
        if (read_request(ws) < 0) {
            return -1;
        }
        /* Upgraded; frames may already have come with the request (left in hbuf). */
    }
    if (ws->dlen == 0 && ws->bad == NULL) {
        int r;
        ws->lower_read_done = 0;
        r = wslay_event_recv(ws->ctx);
        if (ws->hoff == ws->hlen && ws->hbuf != NULL) {
            /* All consumed: an idle connection keeps no read buffer. */
            free(ws->hbuf);
            ws->hbuf = NULL;
            ws->hoff = ws->hlen = 0;
        }
        if (r != 0 && ws->lower_errno == 0 && !ws->lower_eof) {
            snprintf(ws->err, sizeof(ws->err), "websocket protocol error (wslay %d)", r);
            errno = EPROTO;
            return -1;
        }
    }
    if (ws->bad != NULL) {
        snprintf(ws->err, sizeof(ws->err), "websocket: %s", ws->bad);
        errno = EPROTO;
        return -1;
    }
    if (ws->dlen > 0) {
        n = ws->dlen < len ? ws->dlen : len;
        memcpy(buf, ws->dbuf, n);
        memmove(ws->dbuf, ws->dbuf + n, ws->dlen - n);
        ws->dlen -= n;
        if (ws->dlen == 0 && ws->dcap > 64 * 1024) {
            free(ws->dbuf);
            ws->dbuf = NULL;
            ws->dcap = 0;
        }
        return (ssize_t)n;
    }
    if (ws->lower_errno != 0) {
        errno = ws->lower_errno;
        return -1;
    }
    if (ws->lower_eof || !wslay_event_want_read(ws->ctx)) {
        /* TCP end, or the client's close frame (answered by wslay). */
        return 0;
    }
    errno = EAGAIN;
    return -1;
}

/* See ws.h. */
int
ws_conn_flush(struct ws_conn *ws, struct outbuf *out)
{
    for (;;) {
        const uint8_t *p;
        size_t len;
        struct wslay_event_msg msg;

        while (ws->houtoff < ws->houtlen) {
            ssize_t n = ws->lower.write(ws->lower.arg, ws->hout + ws->houtoff,
                                        ws->houtlen - ws->houtoff);
            if (n < 0) {
                return errno == EAGAIN ? 1 : -1;
            }
            ws->houtoff += (size_t)n;
        }
        if (ws->ctx == NULL) {
            return 0;
        }
        if (wslay_event_want_write(ws->ctx)) {
            if (wslay_event_send(ws->ctx) != 0) {
                if (ws->lower_errno != 0) {
                    errno = ws->lower_errno;
                }
                return -1;
            }
            if (wslay_event_want_write(ws->ctx)) {
                return 1;
            }
        }
        /* One span at a time, so output waiting for the socket stays in the outbuf
         * (where CONN_OUT_CAP sees it), not in wslay's queue. */
        if (out == NULL || (len = outbuf_peek(out, &p)) == 0) {
            return 0;
        }
        msg.opcode = WSLAY_BINARY_FRAME;
        msg.msg = p;
        msg.msg_length = len;
        if (wslay_event_queue_msg(ws->ctx, &msg) != 0) {
            errno = ENOMEM;
            return -1;
        }
        outbuf_consume(out, len);
    }
}

int
ws_conn_wants_write(const struct ws_conn *ws)
{
    return ws->houtoff < ws->houtlen || (ws->ctx != NULL && wslay_event_want_write(ws->ctx));
}

int
ws_conn_pending(const struct ws_conn *ws)
{
    return ws->dlen > 0 || (ws->ctx != NULL && ws->hoff < ws->hlen);
}

int
ws_conn_upgrading(const struct ws_conn *ws)
{
    return ws->ctx == NULL;
}

const char *
ws_conn_error(const struct ws_conn *ws)
{
    return ws->err[0] != '\0' ? ws->err : "websocket error";
}

void
ws_conn_shutdown(struct ws_conn *ws)
{
    if (ws->ctx != NULL && wslay_event_get_close_sent(ws->ctx) == 0) {
        wslay_event_queue_close(ws->ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
        wslay_event_send(ws->ctx);
    }
}

void
ws_conn_free(struct ws_conn *ws)
{
    if (ws == NULL) {
        return;
    }
    if (ws->ctx != NULL) {
        wslay_event_context_free(ws->ctx);
    }
    free(ws->paths);
    free(ws->origins);
    free(ws->hbuf);
    free(ws->hout);
    free(ws->dbuf);
    free(ws);
}
