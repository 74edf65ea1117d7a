/*
 * A growable text buffer for response bodies. Pure code, no globals. An
 * allocation failure is remembered (sbuf_failed) instead of being checked
 * at every append: the caller answers 500 once at the end.
 */
#ifndef HTTP_ADMIN_SBUF_H
#define HTTP_ADMIN_SBUF_H

#include <stddef.h>

#if defined(__GNUC__)
#define SBUF_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SBUF_PRINTF(f, a)
#endif

/* Owns `s` (NUL-terminated when len > 0); freed by sbuf_free or taken with sbuf_take. */
struct sbuf {
    char *s;
    size_t len;
    size_t cap;
    int failed; /* an append ran out of memory: the content is incomplete */
};

void sbuf_init(struct sbuf *b);
void sbuf_append(struct sbuf *b, const char *text, size_t len);
void sbuf_puts(struct sbuf *b, const char *text);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) SBUF_PRINTF(2, 3);
/* 1 when an append failed. */
int sbuf_failed(const struct sbuf *b);
/* Hands the text to the caller (free()); the buffer is empty afterwards. NULL when failed. */
char *sbuf_take(struct sbuf *b, size_t *len);
void sbuf_free(struct sbuf *b);

#endif
