/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Helpers shared by the libFuzzer targets in tests/fuzz: a byte reader that
 * turns fuzzer input into keys, a packed-key comparison, and a checker that
 * reports a failed property as a crash (abort) with a message.
 */
#ifndef PARTD_FUZZ_UTIL_H
#define PARTD_FUZZ_UTIL_H

#include "core/internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FZ_UNUSED __attribute__((unused))

/* A failed property: print and abort, so libFuzzer records the input. */
static FZ_UNUSED __attribute__((noreturn, format(printf, 1, 2))) void
fz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FUZZ PROPERTY FAILED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

#define FZ_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond)) fz_fail(__VA_ARGS__);                                     \
    } while (0)

/* Makes this process's scratch directory, $TMPDIR/partd-fuzz-TAG-XXXXXX,
 * in buf (exits when it cannot) and has rm remove it at exit. */
static FZ_UNUSED void fz_scratch(char *buf, size_t cap, const char *tag,
                                 void (*rm)(void)) {
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, cap, "%s/partd-fuzz-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp",
             tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(rm);
}

/* Consumes input bytes front to back; reads past the end give 0. */
typedef struct fz_reader {
    const uint8_t *p;
    size_t n;
} fz_reader;

static FZ_UNUSED uint8_t fz_byte(fz_reader *r) {
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

/* Up to `want` bytes (fewer at the end); returns the count taken. */
static FZ_UNUSED size_t fz_take(fz_reader *r, size_t want,
                                const uint8_t **out) {
    if (want > r->n) want = r->n;
    *out = r->p;
    r->p += want;
    r->n -= want;
    return want;
}

/* A key built from the input: its parts point into the input bytes. */
typedef struct fz_key {
    pd_key key;
    pd_bytes parts[PD_KEY_MAX_PARTS];
} fz_key;

/*
 * Reads one key.  Layout: a mode byte m; m & 1 clear: flat key, else a
 * tuple of 1 + (m >> 1) % PD_KEY_MAX_PARTS parts.  Each part (or the flat
 * key) is a length byte L then L bytes; L == 255 means a 16-bit
 * little-endian length (capped at `maxpart`) follows.  The key is built in
 * *k (which must not move while k->key is used).
 */
static FZ_UNUSED void fz_read_key(fz_reader *r, fz_key *k, size_t maxpart) {
    uint8_t m = fz_byte(r);
    size_t np = (m & 1) ? 1 + (size_t)(m >> 1) % PD_KEY_MAX_PARTS : 0;
    size_t want = np ? np : 1;
    for (size_t i = 0; i < want; i++) {
        size_t len = fz_byte(r);
        if (len == 255) {
            len = fz_byte(r);
            len |= (size_t)fz_byte(r) << 8;
        }
        if (len > maxpart) len = maxpart;
        const uint8_t *d;
        len = fz_take(r, len, &d);
        k->parts[i] = (pd_bytes){len ? (const void *)d : NULL, len};
    }
    if (np)
        k->key = PD_KEY_TUPLE(k->parts, np);
    else
        k->key = PD_KEY(k->parts[0].data, k->parts[0].size);
}

/* Packed-key equality (the library's own notion of "same key"). */
static FZ_UNUSED int fz_same_key(const pd_key *a, const pd_key *b) {
    pd__pkey pa, pb;
    if (pd__pkey_set(&pa, a)) fz_fail("pd__pkey_set: out of memory");
    if (pd__pkey_set(&pb, b)) fz_fail("pd__pkey_set: out of memory");
    int same = pa.len == pb.len && memcmp(pa.p, pb.p, pa.len) == 0;
    pd__pkey_free(&pa);
    pd__pkey_free(&pb);
    return same;
}

/* A printable form of a key for failure messages (static buffer). */
static FZ_UNUSED const char *fz_short(const pd_key *k) {
    static char buf[PD__KEYSHORT_MAX];
    return pd__key_short(k, buf);
}

#endif /* PARTD_FUZZ_UTIL_H */
