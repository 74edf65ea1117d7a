/*
 * Per-connection output buffer: a chain of chunks flushed with writev().
 *
 * Small packets are copied into data chunks (16 KiB, recycled through a
 * per-thread cache); large payloads are not copied: a reference chunk points
 * into the shared struct msg and holds one reference to it. Nothing is
 * allocated while the buffer is empty, so an idle connection costs no buffer
 * memory (DESIGN.md section 2).
 *
 * Ownership: the outbuf belongs to its connection and is used only on the
 * connection's worker thread. Chunks are owned by the outbuf; reference
 * chunks own one msg reference each.
 */
#ifndef MIDGE_OUTBUF_H
#define MIDGE_OUTBUF_H

#include <stddef.h>
#include <stdint.h>

struct msg;
struct outchunk;

struct outbuf {
    struct outchunk *head;
    struct outchunk *tail;
    size_t bytes; /* queued and not yet written */
};

/* Payloads at least this long are sent from the message itself, not copied. */
#define OUTBUF_REF_MIN 2048

/*
 * Returns a pointer where `n` bytes can be written at the end of the buffer,
 * or NULL when out of memory. Follow with outbuf_commit(ob, n_written).
 */
uint8_t *outbuf_reserve(struct outbuf *ob, size_t n);
void outbuf_commit(struct outbuf *ob, size_t n);

/* Appends `len` bytes (copied). Returns 0, or -1 when out of memory. */
int outbuf_append(struct outbuf *ob, const void *p, size_t len);

/*
 * Appends a reference to bytes inside message `m` (not copied); takes one
 * reference to `m`. Returns 0, or -1 when out of memory (no reference taken).
 */
int outbuf_append_ref(struct outbuf *ob, struct msg *m, const uint8_t *p, size_t len);

/*
 * Writes as much as the socket takes. Returns 0 when everything was written,
 * 1 when data remains (socket full), -1 on a socket error (errno set).
 * Fully written chunks are released.
 */
int outbuf_flush(struct outbuf *ob, int fd);

/*
 * For transports that write one span at a time (TLS, WebSockets): the first
 * queued bytes (*p, length returned; 0 when empty), valid until the next
 * change to the buffer; outbuf_consume drops n of them once written.
 */
size_t outbuf_peek(struct outbuf *ob, const uint8_t **p);
void outbuf_consume(struct outbuf *ob, size_t n);

/* Drops everything queued and releases all chunks. */
void outbuf_clear(struct outbuf *ob);

/* Frees the calling thread's chunk cache (at thread exit). */
void outbuf_thread_cleanup(void);

#endif
