/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The growable byte buffer (buf.h).
 */
#include "core/buf.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "partd/partd.h"

void pd__buf_init(pd__buf *b, void *inl, size_t inlcap) {
    b->inl = inlcap ? inl : NULL;
    b->inlcap = b->inl ? inlcap : 0;
    b->p = b->inl;
    b->cap = b->inlcap;
    b->len = 0;
    if (b->p) b->p[0] = 0;
}

int pd__buf_reserve(pd__buf *b, size_t extra) {
    size_t need;
    if (__builtin_add_overflow(b->len, extra, &need) ||
        __builtin_add_overflow(need, 1, &need))
        return PD_ERR_NOMEM;
    if (need <= b->cap) return 0;
    size_t ncap = b->cap > SIZE_MAX / 2 ? SIZE_MAX : b->cap * 2;
    if (ncap < need) ncap = need;
    if (ncap < 256) ncap = 256;
    bool on_heap = b->p && b->p != b->inl;
    unsigned char *np = on_heap ? realloc(b->p, ncap) : malloc(ncap);
    if (!np) return PD_ERR_NOMEM;
    if (!on_heap && b->p) memcpy(np, b->p, b->len + 1);
    if (!b->p) np[0] = 0;
    b->p = np;
    b->cap = ncap;
    return 0;
}

int pd__buf_add(pd__buf *b, const void *data, size_t n) {
    if (pd__buf_reserve(b, n)) return PD_ERR_NOMEM;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int pd__buf_str(pd__buf *b, const char *s) {
    return pd__buf_add(b, s, strlen(s));
}

void pd__buf_clear(pd__buf *b) {
    b->len = 0;
    if (b->p) b->p[0] = 0;
}

void pd__buf_free(pd__buf *b) {
    if (b->p && b->p != b->inl) free(b->p);
    pd__buf_init(b, b->inl, b->inlcap);
}
