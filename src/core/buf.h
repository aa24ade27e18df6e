/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * One growable byte buffer for the whole library: wire keys, path names,
 * encoded batches.  It may start in storage the caller provides (a stack
 * array) and moves to the heap when that is full.  The bytes are always
 * followed by a NUL (not counted in len), so a buffer of text is a C string.
 */
#ifndef PARTD_CORE_BUF_H
#define PARTD_CORE_BUF_H

#include <stddef.h>

#include "partd/partd.h"

/* Private, but exported from libpartd.so for cpartd alone (not part of the
 * ABI: cpartd is built with the library and depends on its exact version). */
#ifndef PD__API
#define PD__API PD_API
#endif

typedef struct pd__buf {
    unsigned char *p; /* the bytes: inl or the heap; NULL while empty */
    size_t len;       /* bytes used (the NUL after them not counted) */
    size_t cap;       /* bytes p can hold, the NUL included */
    unsigned char *inl;
    size_t inlcap;
} pd__buf;

/* An empty buffer on the heap only. */
#define PD__BUF_INIT                                                           \
    { NULL, 0, 0, NULL, 0 }

/* An empty buffer that starts in inl (inlcap bytes, may be 0). */
void pd__buf_init(pd__buf *b, void *inl, size_t inlcap);
/* Makes room for `extra` more bytes (and the NUL).  0 or PD_ERR_NOMEM (also
 * on overflow); the content is unchanged on failure. */
PD__API int pd__buf_reserve(pd__buf *b, size_t extra);
/* Appends n bytes.  0 or PD_ERR_NOMEM. */
int pd__buf_add(pd__buf *b, const void *data, size_t n);
/* Appends a C string (without its NUL).  0 or PD_ERR_NOMEM. */
int pd__buf_str(pd__buf *b, const char *s);
/* Empties the buffer, keeping its storage. */
void pd__buf_clear(pd__buf *b);
/* Frees heap storage; the buffer is empty again (still over its inl). */
PD__API void pd__buf_free(pd__buf *b);

#endif /* PARTD_CORE_BUF_H */
