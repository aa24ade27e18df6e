/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bz2: one bzip2 stream per frame, what Python's bz2.compress(data) writes
 * (block size 9 by default, work factor 0) and bz2.decompress reads,
 * including its acceptance of several concatenated streams in one payload.
 * libbz2 has no reset, so each value gets a fresh state; its big arrays
 * (7.5 MB to compress at level 9, 3.6 MB to decompress) come from a small
 * cache of blocks kept by the codec, so a fresh state costs no mmap.
 */
#include "encode/codec.h"

#include <bzlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define S_CACHE 8

typedef struct s_bz2 {
    int level;
    struct {
        void *p;
        size_t size;
    } cache[S_CACHE]; /* freed blocks, for the next state */
} s_bz2;

/* libbz2's allocator hooks: a block of the same size freed earlier is
 * handed out again.  Each block has a 16-byte header with its size (the
 * free hook is not told it).  The cache belongs to one codec, which its
 * store uses one call at a time. */
#define S_HDR 16

static void *s_alloc(void *opaque, int items, int size) {
    s_bz2 *b = opaque;
    size_t n;
    if (items < 0 || size < 0 || pd__mul_ovf((size_t)items, (size_t)size, &n) ||
        n > SIZE_MAX - S_HDR)
        return NULL;
    for (int i = 0; i < S_CACHE; i++)
        if (b->cache[i].p && b->cache[i].size == n) {
            unsigned char *p = b->cache[i].p;
            b->cache[i].p = NULL;
            return p + S_HDR;
        }
    unsigned char *p = malloc(n + S_HDR);
    if (!p) return NULL;
    memcpy(p, &n, sizeof n);
    return p + S_HDR;
}

static void s_free(void *opaque, void *q) {
    s_bz2 *b = opaque;
    if (!q) return;
    unsigned char *p = (unsigned char *)q - S_HDR;
    size_t n;
    memcpy(&n, p, sizeof n);
    for (int i = 0; i < S_CACHE; i++)
        if (!b->cache[i].p) {
            b->cache[i].p = p;
            b->cache[i].size = n;
            return;
        }
    free(p);
}

static void s_streams(bz_stream *bs, s_bz2 *b) {
    memset(bs, 0, sizeof *bs);
    bs->bzalloc = s_alloc;
    bs->bzfree = s_free;
    bs->opaque = b;
}

static unsigned s_clamp(size_t n) {
    return n > UINT_MAX ? UINT_MAX : (unsigned)n;
}

static int s_bzerr(pd_sink *out, const char *fn, int rc) {
    const char *why;
    switch (rc) {
    case BZ_MEM_ERROR:
        pd_sink_reason(out, "%s: out of memory", fn);
        return PD_ERR_NOMEM;
    case BZ_DATA_ERROR: why = "data integrity error (bad CRC or block)"; break;
    case BZ_DATA_ERROR_MAGIC: why = "not a bzip2 stream (bad magic)"; break;
    case BZ_PARAM_ERROR: why = "parameter error"; break;
    case BZ_SEQUENCE_ERROR: why = "sequence error"; break;
    default: why = "error"; break;
    }
    pd_sink_reason(out, "%s: %s (%d)", fn, why, rc);
    return PD_ERR_CORRUPT;
}

static int s_encode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_bz2 *b = ctx;
    /* bzip2's documented worst case: 1% + 600 bytes. */
    size_t bound;
    if (pd__add_ovf(n, n / 100 + 600, &bound)) {
        pd_sink_reason(out, "value of %zu bytes too large for bz2", n);
        return PD_ERR_LIMIT;
    }
    unsigned char *dst = pd_sink_reserve(out, bound);
    if (!dst) return pd__sink_fail(out);
    bz_stream bs;
    s_streams(&bs, b);
    int rc = BZ2_bzCompressInit(&bs, b->level, 0, 0);
    if (rc != BZ_OK) return s_bzerr(out, "BZ2_bzCompressInit", rc);
    size_t in_left = n, out_left = bound;
    bs.next_in = (char *)src;
    bs.next_out = (char *)dst;
    for (;;) {
        unsigned ai = s_clamp(in_left), ao = s_clamp(out_left);
        bs.avail_in = ai;
        bs.avail_out = ao;
        /* BZ_FINISH only once the rest fits one call: it must see all of
         * the remaining input. */
        rc = BZ2_bzCompress(&bs, ai == in_left ? BZ_FINISH : BZ_RUN);
        in_left -= ai - bs.avail_in;
        out_left -= ao - bs.avail_out;
        if (rc == BZ_STREAM_END) break;
        if (rc != BZ_RUN_OK && rc != BZ_FINISH_OK) {
            BZ2_bzCompressEnd(&bs);
            return s_bzerr(out, "BZ2_bzCompress", rc);
        }
        if (out_left == 0) {
            BZ2_bzCompressEnd(&bs);
            pd_sink_reason(out, "BZ2_bzCompress: output passed its bound");
            return PD_ERR_CORRUPT;
        }
    }
    BZ2_bzCompressEnd(&bs);
    pd_sink_commit(out, bound - out_left);
    return 0;
}

typedef struct s_dec {
    bz_stream bs;
    s_bz2 *b;
    bool live;
} s_dec;

static int s_step(void *st, const unsigned char *in, size_t in_n, size_t *used,
                  unsigned char *o, size_t out_n, size_t *made, pd_sink *sink) {
    s_dec *d = st;
    *used = *made = 0;
    if (!d->live) {
        /* The next of several concatenated streams (as bz2.decompress). */
        s_streams(&d->bs, d->b);
        int rc = BZ2_bzDecompressInit(&d->bs, 0, 0);
        if (rc != BZ_OK) return s_bzerr(sink, "BZ2_bzDecompressInit", rc);
        d->live = true;
    }
    unsigned ai = s_clamp(in_n), ao = s_clamp(out_n);
    d->bs.next_in = (char *)in;
    d->bs.avail_in = ai;
    d->bs.next_out = (char *)o;
    d->bs.avail_out = ao;
    int rc = BZ2_bzDecompress(&d->bs);
    *used = ai - d->bs.avail_in;
    *made = ao - d->bs.avail_out;
    if (rc == BZ_STREAM_END) {
        BZ2_bzDecompressEnd(&d->bs);
        d->live = false;
        if (*used == in_n) return 1;
        return 2; /* another stream follows: progress even if nothing moved */
    }
    if (rc == BZ_OK) return 0;
    return s_bzerr(sink, "BZ2_bzDecompress", rc);
}

static int s_decode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_dec d;
    memset(&d, 0, sizeof d);
    d.b = ctx;
    int rc = pd__stream_decode(out, src, n, pd__ratio_cap(n, 4, 4096), s_step,
                               &d, "bzip2 stream");
    if (d.live) BZ2_bzDecompressEnd(&d.bs);
    return rc;
}

static void s_destroy(void *ctx) {
    s_bz2 *b = ctx;
    if (!b) return;
    for (int i = 0; i < S_CACHE; i++) free(b->cache[i].p);
    free(b);
}

static int s_make(pd_codec *out, int level) {
    pd_codec proto = {"bz2", NULL, s_encode, s_decode, s_destroy};
    return pd__codec_new(out, proto, sizeof(s_bz2), level);
}

/* "BZh" + block size '1'..'9' + a block or end-of-stream magic; 14 bytes
 * at least (an empty stream). */
static int s_probe(const unsigned char *p, size_t n, uint64_t *declared) {
    static const unsigned char blk[6] = {0x31, 0x41, 0x59, 0x26, 0x53, 0x59};
    static const unsigned char eos[6] = {0x17, 0x72, 0x45, 0x38, 0x50, 0x90};
    *declared = UINT64_MAX;
    if (n < 14 || memcmp(p, "BZh", 3) != 0 || p[3] < '1' || p[3] > '9' ||
        (memcmp(p + 4, blk, 6) != 0 && memcmp(p + 4, eos, 6) != 0))
        return PD_ERR_CORRUPT;
    return 0;
}

static int s_prefix(void *ctx, const unsigned char *p, size_t n,
                    uint64_t claimed, pd_sink *out) {
    static const unsigned char blk[6] = {0x31, 0x41, 0x59, 0x26, 0x53, 0x59};
    static const unsigned char eos[6] = {0x17, 0x72, 0x45, 0x38, 0x50, 0x90};
    (void)claimed;
    size_t k = n < 3 ? n : 3;
    if (memcmp(p, "BZh", k) != 0 || (n > 3 && (p[3] < '1' || p[3] > '9')))
        return PD_ERR_CORRUPT;
    k = n > 4 ? (n - 4 < 6 ? n - 4 : 6) : 0;
    if (k && memcmp(p + 4, blk, k) != 0 && memcmp(p + 4, eos, k) != 0)
        return PD_ERR_CORRUPT;
    if (n <= 10) return 0;
    s_dec d;
    memset(&d, 0, sizeof d);
    d.b = ctx;
    int rc = pd__stream_prefix(out, p, n, s_step, &d, "bzip2 stream");
    if (d.live) BZ2_bzDecompressEnd(&d.bs);
    return rc;
}

const pd__codec_ext pd__codec_bz2 = {
    "bz2", 1, 9, 9, true, s_encode, s_make, s_probe, s_prefix,
};
