/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The fixture shared by the codec compatibility suites
 * (tests/test_codec_compat_*.c): the codecs shared with the Python
 * reference, counting and collecting frames, raw bytes, codec layers over
 * File, and the live data set (the one tests/py/codec_check.py builds).
 */
#ifndef PARTD_TESTS_COMPATFIX_H
#define PARTD_TESTS_COMPATFIX_H

#include "testutil.h"

#include <errno.h>
#include <limits.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#ifndef PARTD_SOURCE_DIR
#define PARTD_SOURCE_DIR "."
#endif

static PD__UNUSED const char *const SHARED[] = {"zlib", "bz2", "snappy",
                                                "blosc"};
#define NSHARED (sizeof SHARED / sizeof SHARED[0])

/* ------------------------------------------------------------ Helpers */

/* Counts frames in raw; asserts they tile it exactly. */
static PD__UNUSED int s_count_cb(void *arg, const void *payload, size_t size,
                                 uint64_t offset) {
    (void)payload;
    (void)size;
    (void)offset;
    (*(size_t *)arg)++;
    return 0;
}

static PD__UNUSED size_t s_nframes(const void *raw, size_t n) {
    size_t count = 0, end = 0;
    int rc = pd_frame_split(raw, n, s_count_cb, &count, &end);
    ck_assert_msg(rc == 0, "frames do not tile %zu bytes (stop at %zu)", n,
                  end);
    return count;
}

/* The raw (encoded) bytes of key k in the layer's inner store. */
static PD__UNUSED char *s_raw(pd_store *enc, pd_key k, size_t *len) {
    pd_store *in = pd_encode_inner(enc);
    ck_assert_ptr_nonnull(in);
    char *out = NULL;
    int rc = tu_fetch1(in, k, &out, len);
    ck_assert_msg(rc == 0, "inner get: %s", pd_errmsg(in));
    return out;
}

/* A codec layer over a new File store at dir (created). */
static PD__UNUSED pd_store *s_open_file_codec(const char *dir,
                                              const char *codec, int level) {
    pd_store *s = tu_codec_file(dir, PD_FILE_CREATE, codec, level);
    ck_assert_str_eq(pd_store_kind(s), codec);
    return s;
}

static PD__UNUSED void s_close(pd_store **s) {
    int rc = pd_close(s);
    ck_assert_msg(rc == 0, "close: %s", pd_errmsg(NULL));
}

typedef struct s_frames {
    const char *raw;
    uint64_t off[256];
    size_t size[256];
    size_t n;
} s_frames;

static PD__UNUSED int s_collect_cb(void *arg, const void *payload, size_t size,
                                   uint64_t offset) {
    s_frames *f = arg;
    ck_assert_uint_lt(f->n, 256);
    /* offset is the frame's (its header's) position */
    ck_assert_ptr_eq((const char *)payload, f->raw + offset + PD_FRAME_HEADER);
    f->off[f->n] = offset;
    f->size[f->n++] = size;
    return 0;
}

/* ------------------------------------------------------- Live data set */

/* The data set of tests/py/codec_check.py (keep the two in step). */
enum { LIVE_NKEYS = 7, LIVE_ROUNDS = 4 };
static PD__UNUSED const size_t LIVE_SIZES[8] = {0,    1,    7,     100,
                                                1000, 4096, 33000, 150000};

static PD__UNUSED size_t s_live_size(int i, int j) {
    return LIVE_SIZES[(i * 3 + j) % 8];
}

static PD__UNUSED unsigned char *s_live_value(int i, int j, size_t *len) {
    size_t n = s_live_size(i, j);
    unsigned char *v = malloc(n ? n : 1);
    for (size_t k = 0; k < n; k++) {
        if ((k >> 8) & 1) {
            uint32_t h = (uint32_t)k * 2654435761u + (uint32_t)i * 97u +
                         (uint32_t)j * 13u;
            v[k] = (unsigned char)((h >> 13) & 0xff);
        } else {
            v[k] = (unsigned char)(0x61 + (k + (size_t)i + (size_t)j) % 26);
        }
    }
    *len = n;
    return v;
}

static PD__UNUSED const pd_bytes LIVE_TUPLE[2] = {{"t", 1}, {"u", 1}};

static PD__UNUSED pd_key s_live_key(int i, char name[8]) {
    if (i == LIVE_NKEYS - 1) return PD_KEY_TUPLE(LIVE_TUPLE, 2);
    snprintf(name, 8, "k%d", i);
    return PD_KEY_STR(name);
}

static PD__UNUSED void s_live_write(pd_store *s) {
    for (int j = 0; j < LIVE_ROUNDS; j++) {
        pd_key keys[LIVE_NKEYS];
        pd_bytes vals[LIVE_NKEYS];
        char names[LIVE_NKEYS][8];
        unsigned char *bufs[LIVE_NKEYS];
        for (int i = 0; i < LIVE_NKEYS; i++) {
            keys[i] = s_live_key(i, names[i]);
            size_t n;
            bufs[i] = s_live_value(i, j, &n);
            vals[i] = PD_BYTES(bufs[i], n);
        }
        TU_OK(pd_append(s, LIVE_NKEYS, keys, vals, 0), s);
        for (int i = 0; i < LIVE_NKEYS; i++) free(bufs[i]);
    }
    pd_key ik = PD_KEY_STR("iset");
    pd_bytes iv = PD_BYTES("iset value", 10);
    TU_OK(pd_iset(s, 1, &ik, &iv, 0), s);
}

/* Asserts that s holds the live data set, one frame per append. */
static PD__UNUSED void s_live_check(pd_store *s, const char *who) {
    for (int i = 0; i < LIVE_NKEYS; i++) {
        char name[8];
        pd_key k = s_live_key(i, name);
        size_t total = 0;
        for (int j = 0; j < LIVE_ROUNDS; j++) total += s_live_size(i, j);
        unsigned char *want = malloc(total + 1);
        size_t off = 0;
        for (int j = 0; j < LIVE_ROUNDS; j++) {
            size_t n;
            unsigned char *v = s_live_value(i, j, &n);
            memcpy(want + off, v, n);
            off += n;
            free(v);
        }
        size_t len;
        char *got = NULL;
        int rc = tu_fetch1(s, k, &got, &len);
        ck_assert_msg(rc == 0, "%s: get key %d: %s", who, i, pd_errmsg(s));
        ck_assert_msg(len == total && memcmp(got, want, total) == 0,
                      "%s: key %d: %zu bytes, want %zu (or bytes differ)", who,
                      i, len, total);
        free(got);
        free(want);
        size_t rlen;
        char *raw = s_raw(s, k, &rlen);
        ck_assert_msg(s_nframes(raw, rlen) == LIVE_ROUNDS,
                      "%s: key %d: %zu frames, want %d", who, i,
                      s_nframes(raw, rlen), LIVE_ROUNDS);
        free(raw);
    }
    tu_expect_str(s, PD_KEY_STR("iset"), "iset value");
    ck_assert_uint_eq(pd_encode_torn(s), 0);
}

#endif
