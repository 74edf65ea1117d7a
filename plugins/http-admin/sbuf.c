/* Growable text buffer (see sbuf.h). */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
sbuf_init(struct sbuf *b)
{
    memset(b, 0, sizeof(*b));
}

/* Makes room for `more` bytes and the NUL. 0 or -1 (then failed is set). */
static int
reserve(struct sbuf *b, size_t more)
{
    size_t cap;
    char *s;

    if (b->failed) {
        return -1;
    }
    if (b->len + more + 1 <= b->cap) {
        return 0;
    }
    cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1) {
        if (cap > ((size_t)-1) / 2) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    s = realloc(b->s, cap);
    if (s == NULL) {
        b->failed = 1;
        return -1;
    }
    b->s = s;
    b->cap = cap;
    return 0;
}

void
sbuf_append(struct sbuf *b, const char *text, size_t len)
{
    if (reserve(b, len) != 0) {
        return;
    }
    memcpy(b->s + b->len, text, len);
    b->len += len;
    b->s[b->len] = '\0';
}

void
sbuf_puts(struct sbuf *b, const char *text)
{
    sbuf_append(b, text, strlen(text));
}

void
sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if (reserve(b, (size_t)n) != 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int
sbuf_failed(const struct sbuf *b)
{
    return b->failed;
}

char *
sbuf_take(struct sbuf *b, size_t *len)
{
    char *s = NULL;

    if (!b->failed && reserve(b, 0) == 0) {
        s = b->s;
        *len = b->len;
        b->s = NULL;
    }
    sbuf_free(b);
    return s;
}

void
sbuf_free(struct sbuf *b)
{
    free(b->s);
    sbuf_init(b);
}
