/* Chunked output buffers flushed with writev(). [worker thread] */
#include "outbuf.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "msg.h"

#define CHUNK_SIZE (16 * 1024)
#define CACHE_MAX 64
#define IOV_BATCH 64

/* One piece of output. Owned by its outbuf (or the thread's cache). */
struct outchunk {
    struct outchunk *next;
    struct msg *ref;    /* reference chunk: holds one ref; NULL for data chunks */
    const uint8_t *ptr; /* next byte to send */
    uint32_t len;       /* bytes left to send from ptr */
    uint32_t cap;       /* data chunks: capacity of data[] */
    uint8_t data[];
};

/* Recycled CHUNK_SIZE data chunks of this thread, so a busy connection does not malloc per flush. */
static __thread struct outchunk *cache;
static __thread unsigned cache_len;

static struct outchunk *
chunk_new(size_t need)
{
    struct outchunk *c;
    size_t cap = need > CHUNK_SIZE ? need : CHUNK_SIZE;

    if (cap == CHUNK_SIZE && cache != NULL) {
        c = cache;
        cache = c->next;
        cache_len--;
    } else {
        c = malloc(sizeof(*c) + cap);
        if (c == NULL) {
            return NULL;
        }
        c->cap = (uint32_t)cap;
    }
    c->next = NULL;
    c->ref = NULL;
    c->ptr = c->data;
    c->len = 0;
    return c;
}

static void
chunk_free(struct outchunk *c)
{
    if (c->ref != NULL) {
        msg_unref(c->ref);
        free(c);
    } else if (c->cap == CHUNK_SIZE && cache_len < CACHE_MAX) {
        c->next = cache;
        cache = c;
        cache_len++;
    } else {
        free(c);
    }
}

static void
chunk_link(struct outbuf *ob, struct outchunk *c)
{
    if (ob->tail != NULL) {
        ob->tail->next = c;
    } else {
        ob->head = c;
    }
    ob->tail = c;
}

/*
 * Reserves n writable bytes at the end of the last data chunk, adding a chunk
 * when it lacks room. Returns NULL when out of memory.
 */
uint8_t *
outbuf_reserve(struct outbuf *ob, size_t n)
{
    struct outchunk *t = ob->tail;
    struct outchunk *c;

    if (t != NULL && t->ref == NULL) {
        size_t end = (size_t)(t->ptr - t->data) + t->len;
        if (t->cap - end >= n) {
            return t->data + end;
        }
    }
    c = chunk_new(n);
    if (c == NULL) {
        return NULL;
    }
    chunk_link(ob, c);
    return c->data;
}

/* Marks n bytes written after outbuf_reserve() as queued. */
void
outbuf_commit(struct outbuf *ob, size_t n)
{
    ob->tail->len += (uint32_t)n;
    ob->bytes += n;
}

/* Copies len bytes to the end of the buffer. Returns 0 or -1 (out of memory). */
int
outbuf_append(struct outbuf *ob, const void *p, size_t len)
{
    uint8_t *dst = outbuf_reserve(ob, len);

    if (dst == NULL) {
        return -1;
    }
    memcpy(dst, p, len);
    outbuf_commit(ob, len);
    return 0;
}

/* Queues bytes that live inside message m, taking a reference. Returns 0 or -1. */
int
outbuf_append_ref(struct outbuf *ob, struct msg *m, const uint8_t *p, size_t len)
{
    struct outchunk *c = malloc(sizeof(*c));

    if (c == NULL) {
        return -1;
    }
    c->next = NULL;
    c->ref = msg_ref(m);
    c->ptr = p;
    c->len = (uint32_t)len;
    c->cap = 0;
    chunk_link(ob, c);
    ob->bytes += len;
    return 0;
}

/* Releases chunks at the head that were fully written. */
static void
consume(struct outbuf *ob, size_t n)
{
    ob->bytes -= n;
    while (n > 0 && ob->head != NULL) {
        struct outchunk *c = ob->head;
        if (n < c->len) {
            c->ptr += n;
            c->len -= (uint32_t)n;
            return;
        }
        n -= c->len;
        ob->head = c->next;
        if (ob->head == NULL) {
            ob->tail = NULL;
        }
        chunk_free(c);
    }
}

/*
 * Writes queued data with writev() until done or the socket is full.
 * Returns 0 (all written), 1 (data left) or -1 (error, errno set).
 */
int
outbuf_flush(struct outbuf *ob, int fd)
{
    while (ob->head != NULL) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        size_t want = 0;
        ssize_t w;
        struct outchunk *c;

        for (c = ob->head; c != NULL && n < IOV_BATCH; c = c->next) {
            if (c->len == 0) {
                continue;
            }
            iov[n].iov_base = (void *)c->ptr;
            iov[n].iov_len = c->len;
            want += c->len;
            n++;
        }
        if (n == 0) {
            outbuf_clear(ob);
            return 0;
        }
        w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 1;
            }
            return -1;
        }
        consume(ob, (size_t)w);
        if ((size_t)w < want) {
            return 1;
        }
    }
    return 0;
}

/*
 * Span interface for transports that cannot use writev (TLS, WebSockets;
 * issue 9): the first non-empty run of bytes, and dropping bytes once sent.
 */
size_t
outbuf_peek(struct outbuf *ob, const uint8_t **p)
{
    while (ob->head != NULL && ob->head->len == 0) {
        struct outchunk *c = ob->head;
        ob->head = c->next;
        if (ob->head == NULL) {
            ob->tail = NULL;
        }
        chunk_free(c);
    }
    if (ob->head == NULL) {
        *p = NULL;
        return 0;
    }
    *p = ob->head->ptr;
    return ob->head->len;
}

/* Drops n bytes from the front (n at most what outbuf_peek returned). */
void
outbuf_consume(struct outbuf *ob, size_t n)
{
    consume(ob, n);
}

/* Drops all queued output. */
void
outbuf_clear(struct outbuf *ob)
{
    while (ob->head != NULL) {
        struct outchunk *c = ob->head;
        ob->head = c->next;
        chunk_free(c);
    }
    ob->tail = NULL;
    ob->bytes = 0;
}

/* Frees this thread's chunk cache. */
void
outbuf_thread_cleanup(void)
{
    while (cache != NULL) {
        struct outchunk *c = cache;
        cache = c->next;
        free(c);
    }
    cache_len = 0;
}
