/*
 * libFuzzer target: the WebSocket transport (server/ws.c, scripts/fuzz.sh):
 * the HTTP Upgrade parser and, after a 101, the frames (wslay) behind it.
 * The first input byte picks how the stream is cut into reads (1..63 bytes,
 * or 0: as much as asked) and whether the path/origin allow-lists are set;
 * the rest is what the client sends. MQTT bytes read are sent back, so the
 * output framing runs too. The outbuf the broker would pass is replaced by a
 * small stand-in below (outbuf.c needs the broker's message code).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "outbuf.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct feed {
    const uint8_t *p;
    size_t len;
    size_t off;
    size_t chunk;   /* 0: no limit */
    int eagain_due; /* answer EAGAIN once when the input is exhausted, then EOF */
};

/* Stand-in for the connection's outbuf: the MQTT bytes to send back. */
static uint8_t echo[4096];
static size_t echo_len;

size_t
outbuf_peek(struct outbuf *ob, const uint8_t **p)
{
    (void)ob;
    *p = echo;
    return echo_len;
}

void
outbuf_consume(struct outbuf *ob, size_t n)
{
    (void)ob;
    memmove(echo, echo + n, echo_len - n);
    echo_len -= n;
}

static ssize_t
feed_read(void *arg, void *buf, size_t len)
{
    struct feed *f = arg;
    size_t n = f->len - f->off;

    if (n == 0) {
        if (f->eagain_due) {
            f->eagain_due = 0;
            errno = EAGAIN;
            return -1;
        }
        return 0;
    }
    if (n > len) {
        n = len;
    }
    if (f->chunk != 0 && n > f->chunk) {
        n = f->chunk;
    }
    memcpy(buf, f->p + f->off, n);
    f->off += n;
    return (ssize_t)n;
}

static ssize_t
sink_write(void *arg, const void *buf, size_t len)
{
    (void)arg;
    (void)buf;
    return (ssize_t)len;
}

static const char *
feed_error(void *arg)
{
    (void)arg;
    return "fuzz input error";
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct feed f;
    struct ws_lower lower = { feed_read, sink_write, feed_error, &f };
    struct ws_conn *ws;
    uint8_t buf[1024];
    int steps;
    int fake_out;

    if (size < 1) {
        return 0;
    }
    f.p = data + 1;
    f.len = size - 1;
    f.off = 0;
    f.chunk = data[0] & 63;
    f.eagain_due = 1;
    echo_len = 0;
    if (data[0] & 64) {
        ws = ws_conn_new(&lower, "/mqtt /ws", "https://example.org http://a");
    } else {
        ws = ws_conn_new(&lower, NULL, NULL);
    }
    if (ws == NULL) {
        return 0;
    }
    for (steps = 0; steps < 100000; steps++) {
        ssize_t n = ws_conn_read(ws, buf, sizeof(buf));

        if (n > 0) {
            size_t room = sizeof(echo) - echo_len;
            size_t k = (size_t)n < room ? (size_t)n : room;

            memcpy(echo + echo_len, buf, k);
            echo_len += k;
            if (ws_conn_flush(ws, (struct outbuf *)&fake_out) < 0) {
                break;
            }
            continue;
        }
        if (n == 0 || errno != EAGAIN) {
            break;
        }
        (void)ws_conn_pending(ws);
        (void)ws_conn_wants_write(ws);
        if (!ws_conn_upgrading(ws) && ws_conn_flush(ws, NULL) < 0) {
            break;
        }
    }
    (void)ws_conn_error(ws);
    ws_conn_shutdown(ws);
    ws_conn_free(ws);
    return 0;
}
