/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The fixture shared by the Encode suites (tests/test_encode_*.c): the six
 * codecs' names, test data, an Encode layer over a Dict it borrows (so the
 * tests see exactly what the layer stores), raw frame access, and t_fx:
 * three frames in "k" with "other" intact, for the bad-data and torn-frame
 * suites.
 */
#ifndef PARTD_TESTS_ENCFIX_H
#define PARTD_TESTS_ENCFIX_H

#include "testutil.h"

#include "encode/codec.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <blosc.h>
#include <bzlib.h>
#include <lz4frame.h>
#include <zstd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define K(s) PD_KEY_STR(s)
#define V(s) PD_BYTES((s), strlen(s))
#define NCODECS 6

static PD__UNUSED const char *const s_names[NCODECS] = {
    "zlib", "bz2", "snappy", "blosc", "lz4", "zstd"};

/* ------------------------------------------------------------ Helpers */

/* Deterministic bytes: text-like (words drawn at random, compresses 2-4x)
 * or random. */
static PD__UNUSED unsigned char *s_bytes(size_t n, unsigned seed, bool random) {
    static const char *const words[8] = {"partd ", "shuffle ", "frame ",
                                         "key ",   "value ",   "append ",
                                         "torn ",  "zstd "};
    unsigned char *b = malloc(n ? n : 1);
    uint32_t x = 2463534242u ^ (seed * 2654435761u);
    for (size_t i = 0; i < n;) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if (random) {
            b[i++] = (unsigned char)x;
            continue;
        }
        for (const char *w = words[x % 8]; *w && i < n; w++) b[i++] = *w;
    }
    return b;
}

/* An Encode store with codec `name` over a Dict it borrows (*inner). */
static PD__UNUSED pd_store *s_open(const char *name, pd_store **inner) {
    pd_store *s = NULL;
    ck_assert_int_eq(pd_dict_open(inner), 0);
    pd_store *in = *inner;
    int rc = pd_compress_open(&s, &in, name, PD_LEVEL_DEFAULT, PD_BORROW);
    ck_assert_msg(rc == 0, "open %s: %s", name, pd_errmsg(NULL));
    ck_assert_ptr_eq(in, *inner); /* borrowed: not taken */
    ck_assert_str_eq(pd_store_kind(s), name);
    ck_assert_ptr_eq(pd_encode_inner(s), *inner);
    return s;
}

static PD__UNUSED void s_close2(pd_store **s, pd_store **inner) {
    TU_OK(pd_close(s), NULL);
    TU_OK(pd_close(inner), NULL);
}

/* The raw bytes of key k in store s (malloc'd; length in *n). */
static PD__UNUSED unsigned char *s_raw(pd_store *s, pd_key k, size_t *n) {
    char *out;
    TU_OK(tu_fetch1(s, k, &out, n), s);
    return (unsigned char *)out;
}

/* Replaces key k in the raw store with data[0..n). */
static PD__UNUSED void s_raw_set(pd_store *inner, pd_key k, const void *data,
                                 size_t n) {
    TU_OK(pd_delete(inner, 1, &k, 0), inner);
    pd_bytes v = {data, n};
    if (n) TU_OK(pd_append(inner, 1, &k, &v, 0), inner);
}

/* Sets key k of inner to the np pieces, concatenated in order: what a file
 * holds after writers were killed in the middle of frames. */
static PD__UNUSED void s_raw_pieces(pd_store *inner, pd_key k, size_t np,
                                    const pd_bytes *pieces) {
    size_t n = 0;
    for (size_t i = 0; i < np; i++) n += pieces[i].size;
    unsigned char *buf = malloc(n + 1), *p = buf;
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < np; i++) {
        memcpy(p, pieces[i].data, pieces[i].size);
        p += pieces[i].size;
    }
    s_raw_set(inner, k, buf, n);
    free(buf);
}

/* The frames `vals` encode to, concatenated (malloc'd), with each frame's
 * end offset in ends[] (when not NULL). */
static PD__UNUSED unsigned char *s_frames(pd_store *s, pd_store *inner,
                                          size_t nv, const pd_bytes *vals,
                                          size_t *n, size_t *ends) {
    pd_key tmp = K("\x01frames-scratch");
    TU_OK(pd_delete(inner, 1, &tmp, 0), inner);
    for (size_t i = 0; i < nv; i++) {
        TU_OK(pd_append(s, 1, &tmp, &vals[i], 0), s);
        if (ends) {
            size_t len;
            free(s_raw(inner, tmp, &len));
            ends[i] = len;
        }
    }
    unsigned char *f = s_raw(inner, tmp, n);
    TU_OK(pd_delete(inner, 1, &tmp, 0), inner);
    return f;
}

/* Asserts that get of k fails with `code` and a message naming the layer
 * and the key. */
static PD__UNUSED void s_get_fails(pd_store *s, pd_key k, int code,
                                   const char *repr) {
    pd_result *r = (pd_result *)&r;
    int rc = pd_get(s, 1, &k, &r, 0);
    ck_assert_msg(rc == code, "[%s] get %s -> %d (%s), want %d",
                  pd_store_kind(s), repr, rc, pd_errmsg(s), code);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(pd_errcode(s), code);
    const char *m = pd_errmsg(s);
    ck_assert_msg(strncmp(m, pd_store_kind(s), strlen(pd_store_kind(s))) == 0,
                  "message does not start with the layer: %s", m);
    ck_assert_msg(strstr(m, repr) != NULL, "message does not name %s: %s", repr,
                  m);
}

static PD__UNUSED bool s_small(void) { return tu_under_valgrind(); }

/* Where to change a byte of the frame [start, end) so that codec `name`
 * notices: anywhere in the payload for codecs with a checksum; snappy's
 * length prefix; blosc's cbytes field. */
static PD__UNUSED size_t s_hit(const char *name, size_t start, size_t end) {
    if (!strcmp(name, "snappy")) return start + 8;
    if (!strcmp(name, "blosc")) return start + 8 + 12;
    return start + 8 + (end - start - 8) / 2;
}

/* Payloads other writers make: frames without a stated size (read by
 * growing the output), bz2 with several streams (as bz2.decompress
 * reads), blosc chunks with other inner compressors. */
static PD__UNUSED void s_put_frame(pd_store *inner, pd_key k, const void *p,
                                   size_t n) {
    unsigned char *f = malloc(n + 8);
    for (int j = 0; j < 8; j++) f[j] = (unsigned char)((uint64_t)n >> (8 * j));
    memcpy(f + 8, p, n);
    s_raw_set(inner, k, f, n + 8);
    free(f);
}

/* ------------------------------------------------------------ Bad data */

/* Three frames in "k", "other" intact; returns k's raw bytes and frame
 * ends. */
typedef struct t_fx {
    pd_store *s, *inner;
    unsigned char *raw; /* k's frames */
    size_t n, ends[4];
    unsigned char *vals[3];
    size_t sizes[3];
} t_fx;

static PD__UNUSED void s_fx_open(t_fx *fx, const char *name) {
    memset(fx, 0, sizeof *fx);
    fx->s = s_open(name, &fx->inner);
    size_t sizes[3] = {3000, 70000, 500};
    pd_bytes vs[3];
    for (int i = 0; i < 3; i++) {
        fx->sizes[i] = sizes[i];
        fx->vals[i] = s_bytes(sizes[i], 10 + (unsigned)i, i == 2);
        vs[i] = (pd_bytes){fx->vals[i], sizes[i]};
    }
    fx->raw = s_frames(fx->s, fx->inner, 3, vs, &fx->n, fx->ends);
    s_raw_set(fx->inner, K("k"), fx->raw, fx->n);
    tu_append1(fx->s, K("other"), "intact", 6);
}

static PD__UNUSED void s_fx_close(t_fx *fx) {
    tu_expect_str(fx->s, K("other"), "intact");
    for (int i = 0; i < 3; i++) free(fx->vals[i]);
    free(fx->raw);
    s_close2(&fx->s, &fx->inner);
}

/* Asserts k reads as values first..last-1 (concatenated) plus `tail`. */
static PD__UNUSED void s_expect_vals(t_fx *fx, pd_key k, int first, int last,
                                     const void *tail, size_t tn) {
    size_t wn = tn;
    for (int i = first; i < last; i++) wn += fx->sizes[i];
    unsigned char *w = malloc(wn + 1), *p = w;
    for (int i = first; i < last; i++) {
        memcpy(p, fx->vals[i], fx->sizes[i]);
        p += fx->sizes[i];
    }
    if (tn) memcpy(p, tail, tn);
    tu_expect(fx->s, k, w, wn);
    free(w);
}

/* Sets key "k" to the np pieces, concatenated, and asserts that it reads as
 * values 0..last-1 plus `tail`; returns how many torn frames that read
 * counted. */
static PD__UNUSED uint64_t s_torn_read(t_fx *fx, size_t np,
                                       const pd_bytes *pieces, int last,
                                       const void *tail, size_t tn) {
    s_raw_pieces(fx->inner, K("k"), np, pieces);
    uint64_t before = pd_encode_torn(fx->s);
    s_expect_vals(fx, K("k"), 0, last, tail, tn);
    return pd_encode_torn(fx->s) - before;
}

#endif
