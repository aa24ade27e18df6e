/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * lz4: one LZ4 frame per frame (the standard frame format, readable by the
 * `lz4` tool and every LZ4F implementation), with the content size and a
 * content checksum, in linked blocks of up to 256 KiB (a value that fits
 * one block gets the smallest block size that holds it, as
 * LZ4F_compressFrame chooses).  One compression and one decompression
 * context per codec, reused.
 *
 * Reading: the header (magic, descriptor, header checksum) is checked by
 * hand first; a stated content size is checked against the layer's limit
 * and against what the frame could encode (LZ4 never passes 255x, the
 * bound below has room) before the output is reserved at once.  Such a
 * frame (ours always state it) is then decoded here, block by block with
 * LZ4_decompress_safe straight into that output, the output before a
 * linked block being its dictionary: LZ4F_decompress would decode a block
 * smaller than the frame's block size through its own staging buffer and
 * copy it, and would allocate that buffer (up to 8 MiB for 4 MiB blocks)
 * whatever the limit.  A frame without a content size goes through
 * LZ4F_decompress, its output growing as it decodes; LZ4F's buffers are
 * then bounded by the largest block size (4 MiB), whatever the input, as
 * they are for the prefix check.
 */
#include "encode/codec.h"

/* LZ4F_compressFrame_usingCDict: one call per frame on a reused context
 * (exported by liblz4 since 1.8, stable API in 1.10). */
#define LZ4F_STATIC_LINKING_ONLY
#include <limits.h>
#include <lz4.h>
#include <lz4frame.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define S_MAGIC 0x184D2204u

typedef struct s_lz4 {
    int level;
    LZ4F_cctx *c;
    LZ4F_dctx *d;
} s_lz4;

/* The most a frame of n bytes can decode to. */
static uint64_t s_most(size_t n) { return pd__ratio_cap(n, 512, 1 << 16); }

static int s_encode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_lz4 *z = ctx;
    if (!z->c) {
        LZ4F_errorCode_t e = LZ4F_createCompressionContext(&z->c, LZ4F_VERSION);
        if (LZ4F_isError(e)) {
            z->c = NULL;
            pd_sink_reason(out, "LZ4F_createCompressionContext: %s",
                           LZ4F_getErrorName(e));
            return PD_ERR_NOMEM;
        }
    }
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    prefs.frameInfo.blockSizeID = LZ4F_max256KB;
    prefs.frameInfo.blockMode = LZ4F_blockLinked;
    prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    prefs.frameInfo.contentSize = n; /* 0 means "not stated" to LZ4F */
    prefs.compressionLevel = z->level;
    prefs.autoFlush = 1;
    size_t bound = LZ4F_compressFrameBound(n, &prefs);
    if (LZ4F_isError(bound) || bound < n) {
        pd_sink_reason(out, "value of %zu bytes too large for lz4", n);
        return PD_ERR_LIMIT;
    }
    unsigned char *dst = pd_sink_reserve(out, bound);
    if (!dst) return pd__sink_fail(out);
    size_t at =
        LZ4F_compressFrame_usingCDict(z->c, dst, bound, src, n, NULL, &prefs);
    if (LZ4F_isError(at)) {
        pd_sink_reason(out, "LZ4F_compressFrame: %s", LZ4F_getErrorName(at));
        return PD_ERR_CORRUPT;
    }
    pd_sink_commit(out, at);
    return 0;
}

static int s_step(void *st, const unsigned char *in, size_t in_n, size_t *used,
                  unsigned char *o, size_t out_n, size_t *made, pd_sink *sink) {
    LZ4F_dctx *d = st;
    size_t dn = out_n, sn = in_n;
    LZ4F_decompressOptions_t opt;
    memset(&opt, 0, sizeof opt);
    size_t r = LZ4F_decompress(d, o, &dn, in, &sn, &opt);
    *used = sn;
    *made = dn;
    if (LZ4F_isError(r)) {
        pd_sink_reason(sink, "LZ4F_decompress: %s", LZ4F_getErrorName(r));
        return PD_ERR_CORRUPT;
    }
    return r == 0 ? 1 : 0;
}

/* The frame header: magic, version 01, reserved bits clear, a block size
 * id of 4..7, and its checksum.  0 with *declared (UINT64_MAX when the
 * frame states no content size), or PD_ERR_CORRUPT. */
static int s_header(const unsigned char *p, size_t n, uint64_t *declared) {
    *declared = UINT64_MAX;
    if (n < 7 || pd__le32(p) != S_MAGIC) return PD_ERR_CORRUPT;
    unsigned flg = p[4], bd = p[5];
    if ((flg >> 6) != 1 || (flg & 0x02) || (bd & 0x8f) || ((bd >> 4) & 7) < 4)
        return PD_ERR_CORRUPT;
    size_t hlen = 2 + ((flg & 0x08) ? 8 : 0) + ((flg & 0x01) ? 4 : 0);
    if (n < 4 + hlen + 1) return PD_ERR_CORRUPT;
    if (((XXH32(p + 4, hlen, 0) >> 8) & 0xff) != p[4 + hlen])
        return PD_ERR_CORRUPT;
    if (flg & 0x08) *declared = pd__le64(p + 6);
    return 0;
}

static int s_bad(pd_sink *out, const char *why, size_t at) {
    pd_sink_reason(out, "lz4: %s at byte %zu", why, at);
    return PD_ERR_CORRUPT;
}

/* Decodes the frame p[0..n) (header already checked) whose content size is
 * `declared` (within the sink's room) into the sink, in one reservation.
 * Accepts what LZ4F_decompress does: blocks no larger than the frame's
 * block size, block and content checksums when the frame has them, the
 * end mark, nothing after the frame, exactly `declared` bytes out. */
static int s_direct(const unsigned char *p, size_t n, uint64_t declared,
                    pd_sink *out) {
    unsigned flg = p[4], bd = p[5];
    bool linked = !(flg & 0x20), bsum = flg & 0x10, csum = flg & 0x04;
    size_t at = 4 + 2 + ((flg & 0x08) ? 8 : 0) + ((flg & 0x01) ? 4 : 0) + 1;
    size_t bmax = (size_t)1 << (8 + 2 * ((bd >> 4) & 7)); /* 64 KiB.. */
    unsigned char *dst = pd_sink_reserve(out, (size_t)declared);
    if (!dst) return pd__sink_fail(out);
    size_t made = 0;
    for (;;) {
        if (n - at < 4) return s_bad(out, "frame cut short", at);
        uint32_t bh = pd__le32(p + at);
        at += 4;
        if (bh == 0) break; /* the end mark */
        size_t bs = bh & 0x7fffffffu;
        if (bs > bmax)
            return s_bad(out, "block larger than the block size", at);
        if (bs > n - at || (bsum && n - at - bs < 4))
            return s_bad(out, "frame cut short", at);
        if (bsum && XXH32(p + at, bs, 0) != pd__le32(p + at + bs))
            return s_bad(out, "block checksum mismatch", at);
        size_t room = (size_t)declared - made;
        if (bh & 0x80000000u) { /* stored uncompressed */
            if (bs > room)
                return s_bad(out, "block passes the content size", at);
            memcpy(dst + made, p + at, bs);
            made += bs;
        } else {
            int cap = (int)(room < bmax ? room : bmax), r;
            const char *in = (const char *)p + at;
            char *o = (char *)dst + made;
            if (linked && made > 0) {
                int dict = made < 65536 ? (int)made : 65536;
                r = LZ4_decompress_safe_usingDict(in, o, (int)bs, cap, o - dict,
                                                  dict);
            } else {
                r = LZ4_decompress_safe(in, o, (int)bs, cap);
            }
            if (r < 0) return s_bad(out, "block does not decode", at);
            made += (size_t)r;
        }
        at += bs + (bsum ? 4 : 0);
    }
    if (csum) {
        if (n - at < 4) return s_bad(out, "frame cut short", at);
        if (XXH32(dst, made, 0) != pd__le32(p + at))
            return s_bad(out, "content checksum mismatch", at);
        at += 4;
    }
    if (at != n) {
        pd_sink_reason(out, "lz4: %zu bytes after the end of the frame",
                       n - at);
        return PD_ERR_CORRUPT;
    }
    if (made != declared) {
        pd_sink_reason(out, "lz4: frame decoded to %zu bytes, declares %llu",
                       made, (unsigned long long)declared);
        return PD_ERR_CORRUPT;
    }
    pd_sink_commit(out, made);
    return 0;
}

static int s_decode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_lz4 *z = ctx;
    uint64_t declared;
    if (s_header(src, n, &declared)) {
        pd_sink_reason(out, "lz4: not an LZ4 frame header");
        return PD_ERR_CORRUPT;
    }
    size_t first = pd__ratio_cap(n, 4, 4096);
    if (declared != UINT64_MAX) {
        int rc =
            pd__sink_check_claim(out, "lz4", "frame", n, declared, s_most(n));
        if (rc) return rc;
        return s_direct(src, n, declared, out);
    }
    if (!z->d) {
        LZ4F_errorCode_t e =
            LZ4F_createDecompressionContext(&z->d, LZ4F_VERSION);
        if (LZ4F_isError(e)) {
            z->d = NULL;
            pd_sink_reason(out, "LZ4F_createDecompressionContext: %s",
                           LZ4F_getErrorName(e));
            return PD_ERR_NOMEM;
        }
    } else {
        LZ4F_resetDecompressionContext(z->d); /* a failed frame may remain */
    }
    return pd__stream_decode(out, src, n, first, s_step, z->d, "lz4 frame");
}

static void s_destroy(void *ctx) {
    s_lz4 *z = ctx;
    if (!z) return;
    LZ4F_freeCompressionContext(z->c);
    LZ4F_freeDecompressionContext(z->d);
    free(z);
}

static int s_make(pd_codec *out, int level) {
    pd_codec proto = {"lz4", NULL, s_encode, s_decode, s_destroy};
    return pd__codec_new(out, proto, sizeof(s_lz4), level);
}

static int s_probe(const unsigned char *p, size_t n, uint64_t *declared) {
    if (s_header(p, n, declared)) return PD_ERR_CORRUPT;
    if (*declared != UINT64_MAX && *declared > s_most(n)) return PD_ERR_CORRUPT;
    return 0;
}

static int s_prefix(void *ctx, const unsigned char *p, size_t n,
                    uint64_t claimed, pd_sink *out) {
    (void)claimed;
    s_lz4 *z = ctx;
    static const unsigned char magic[4] = {0x04, 0x22, 0x4d, 0x18};
    if (memcmp(p, magic, n < 4 ? n : 4) != 0) return PD_ERR_CORRUPT;
    if (n <= 4) return 0;
    if (!z->d) {
        LZ4F_errorCode_t e =
            LZ4F_createDecompressionContext(&z->d, LZ4F_VERSION);
        if (LZ4F_isError(e)) {
            z->d = NULL;
            return PD_ERR_NOMEM;
        }
    } else {
        LZ4F_resetDecompressionContext(z->d);
    }
    return pd__stream_prefix(out, p, n, s_step, z->d, "lz4 frame");
}

const pd__codec_ext pd__codec_lz4 = {
    "lz4", 0, 12, 0, true, s_encode, s_make, s_probe, s_prefix,
};
