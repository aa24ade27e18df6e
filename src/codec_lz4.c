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
 * bound below has room) before the output is reserved at once.  A frame
 * without a content size grows its output as it decodes.
 */
#include "codec.h"

/* LZ4F_compressFrame_usingCDict: one call per frame on a reused context
 * (exported by liblz4 since 1.8, stable API in 1.10). */
#define LZ4F_STATIC_LINKING_ONLY
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

static int s_decode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_lz4 *z = ctx;
    uint64_t declared;
    if (s_header(src, n, &declared)) {
        pd_sink_reason(out, "lz4: not an LZ4 frame header");
        return PD_ERR_CORRUPT;
    }
    size_t first = pd__ratio_cap(n, 4, 4096);
    if (declared != UINT64_MAX) {
        if (declared > s_most(n)) {
            pd_sink_reason(out,
                           "lz4: frame of %zu bytes declares %llu decoded "
                           "bytes, more than it can encode",
                           n, (unsigned long long)declared);
            return PD_ERR_CORRUPT;
        }
        int rc = pd__sink_check_declared(out, "lz4 frame", declared);
        if (rc) return rc;
        first = (size_t)declared;
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
    int rc = pd__stream_decode(out, src, n, first, s_step, z->d, "lz4 frame");
    if (rc == 0 && declared != UINT64_MAX && pd_sink_size(out) != declared) {
        pd_sink_reason(out, "lz4: frame decoded to %zu bytes, declares %llu",
                       pd_sink_size(out), (unsigned long long)declared);
        rc = PD_ERR_CORRUPT;
    }
    return rc;
}

static void s_destroy(void *ctx) {
    s_lz4 *z = ctx;
    if (!z) return;
    LZ4F_freeCompressionContext(z->c);
    LZ4F_freeDecompressionContext(z->d);
    free(z);
}

static int s_make(pd_codec *out, int level) {
    s_lz4 *z = calloc(1, sizeof *z);
    if (!z) return PD_ERR_NOMEM;
    z->level = level;
    *out = (pd_codec){"lz4", z, s_encode, s_decode, s_destroy};
    return 0;
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
