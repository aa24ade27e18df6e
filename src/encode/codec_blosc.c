/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * blosc: one blosc 1.x chunk per frame, what python-blosc's
 * blosc.compress(data) writes with its defaults (typesize 8, byte shuffle,
 * level 9, "blosclz") and blosc.decompress reads (any compressor inside).
 * The _ctx functions keep no global state, so stores in several threads
 * need no lock, and run one internal thread.
 *
 * The 16-byte header states the decoded size (nbytes), the chunk size
 * (cbytes) and the block size.  Before anything is allocated: cbytes must
 * equal the payload size (blosc_cbuffer_validate), a plain copy must be
 * nbytes + 16 bytes, the block table must fit in the chunk, nbytes must be
 * within the layer's limit and within what the chunk's inner compressor
 * could produce from cbytes bytes (blosclz, lz4 and snappy stay under
 * 256x, zlib under 1032x, zstd under 32768x; the bounds below have room).
 */
#include "encode/codec.h"

#include <blosc.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct s_blosc {
    int level;
    size_t typesize; /* what the byte shuffle takes as one item */
} s_blosc;

static int s_encode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_blosc *b = ctx;
    if (n > (size_t)BLOSC_MAX_BUFFERSIZE) {
        pd_sink_reason(out,
                       "value of %zu bytes too large for blosc (at most "
                       "%d)",
                       n, BLOSC_MAX_BUFFERSIZE);
        return PD_ERR_LIMIT;
    }
    size_t cap = n + BLOSC_MAX_OVERHEAD;
    void *dst = pd_sink_reserve(out, cap);
    if (!dst) return pd__sink_fail(out);
    int c = blosc_compress_ctx(b->level, BLOSC_SHUFFLE, b->typesize, n, src,
                               dst, cap, "blosclz", 0, 1);
    if (c <= 0) {
        pd_sink_reason(out, "blosc_compress_ctx failed (%d)", c);
        return PD_ERR_CORRUPT;
    }
    pd_sink_commit(out, (size_t)c);
    return 0;
}

/* The header checks; 0 with *nbytes, or PD_ERR_CORRUPT with a reason. */
static int s_check(const unsigned char *p, size_t n, size_t *nbytes,
                   pd_sink *why) {
    size_t cbytes = 0, blocksize = 0;
    *nbytes = 0;
    if (n < BLOSC_MIN_HEADER_LENGTH || blosc_cbuffer_validate(p, n, nbytes)) {
        if (why)
            pd_sink_reason(why,
                           "blosc: bad header or its compressed size "
                           "is not the payload's %zu bytes",
                           n);
        return PD_ERR_CORRUPT;
    }
    blosc_cbuffer_sizes(p, nbytes, &cbytes, &blocksize);
    unsigned version = p[0], flags = p[2];
    if (version == 0 || version > BLOSC_VERSION_FORMAT) {
        if (why)
            pd_sink_reason(why, "blosc: unknown format version %u", version);
        return PD_ERR_CORRUPT;
    }
    if (flags & BLOSC_MEMCPYED) {
        if (*nbytes + BLOSC_MAX_OVERHEAD != cbytes) {
            if (why)
                pd_sink_reason(why,
                               "blosc: plain chunk of %zu bytes declares "
                               "%zu",
                               cbytes, *nbytes);
            return PD_ERR_CORRUPT;
        }
        return 0;
    }
    if (*nbytes == 0) return 0;
    size_t nblocks =
        blocksize ? *nbytes / blocksize + !!(*nbytes % blocksize) : 0;
    unsigned format = (flags >> 5) & 0x7;
    size_t ratio = format <= 2 ? 1024 : format == 3 ? 2048 : 32768;
    /* blosc never makes a block larger than the chunk (it clamps the
     * block size to nbytes), and the decoder's scratch is sized from the
     * block size: bounded so, it stays within what the limit allows. */
    if (blocksize == 0 || blocksize > *nbytes ||
        nblocks > (cbytes - BLOSC_MIN_HEADER_LENGTH) / 4 ||
        *nbytes > pd__ratio_cap(cbytes, ratio, (size_t)1 << 20)) {
        if (why)
            pd_sink_reason(why,
                           "blosc: chunk of %zu bytes declares %zu "
                           "decoded bytes in blocks of %zu, which it "
                           "cannot hold",
                           cbytes, *nbytes, blocksize);
        return PD_ERR_CORRUPT;
    }
    return 0;
}

static int s_decode(void *ctx, const void *src, size_t n, pd_sink *out) {
    (void)ctx;
    size_t nbytes;
    int rc = s_check(src, n, &nbytes, out);
    if (rc) return rc;
    rc = pd__sink_check_declared(out, "blosc chunk", nbytes);
    if (rc) return rc;
    void *dst = pd_sink_reserve(out, nbytes);
    if (!dst) return pd__sink_fail(out);
    int d = blosc_decompress_ctx(src, dst, nbytes, 1);
    if (d < 0 || (size_t)d != nbytes) {
        pd_sink_reason(out, "blosc_decompress_ctx failed (%d)", d);
        return PD_ERR_CORRUPT;
    }
    pd_sink_commit(out, nbytes);
    return 0;
}

static void s_destroy(void *ctx) { free(ctx); }

int pd__codec_blosc_typed(pd_codec *out, int level, size_t typesize) {
    pd_codec proto = {"blosc", NULL, s_encode, s_decode, s_destroy};
    int rc = pd__codec_new(out, proto, sizeof(s_blosc), level);
    if (rc == 0) ((s_blosc *)out->ctx)->typesize = typesize ? typesize : 1;
    return rc;
}

static int s_make(pd_codec *out, int level) {
    return pd__codec_blosc_typed(out, level, 8);
}

static size_t s_bound(size_t n) {
    return n > SIZE_MAX - BLOSC_MAX_OVERHEAD ? SIZE_MAX
                                             : n + BLOSC_MAX_OVERHEAD;
}

static int s_probe(const unsigned char *p, size_t n, uint64_t *declared) {
    size_t nbytes;
    *declared = UINT64_MAX;
    if (s_check(p, n, &nbytes, NULL)) return PD_ERR_CORRUPT;
    *declared = nbytes;
    return 0;
}

/* The header (all a prefix can show) must describe a chunk of exactly the
 * claimed size. */
static int s_prefix(void *ctx, const unsigned char *p, size_t n,
                    uint64_t claimed, pd_sink *out) {
    (void)ctx;
    (void)out;
    size_t nbytes;
    if (n >= 1 && (p[0] == 0 || p[0] > BLOSC_VERSION_FORMAT))
        return PD_ERR_CORRUPT;
    if (n < BLOSC_MIN_HEADER_LENGTH) return 0;
    if (claimed > SIZE_MAX) return PD_ERR_CORRUPT;
    return s_check(p, (size_t)claimed, &nbytes, NULL);
}

const pd__codec_ext pd__codec_blosc = {
    "blosc", 0, 9, 9, false, s_encode, s_make, s_probe, s_prefix, s_bound,
};
