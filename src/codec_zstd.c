/*
 * zstd: one zstd frame per frame (as `zstd` writes it: readable by every
 * zstd implementation), with the content size and a content checksum.  One
 * compression and one decompression context per codec, reused.
 *
 * Reading: the payload must be exactly one frame (ZSTD_findFrameCompressed
 * Size).  A stated content size is checked against the layer's limit and
 * against what the frame could encode (a block of 4 bytes or more yields at
 * most 128 KiB: 32768x).  Sizes up to PD__SOFT_RATIO times the payload are
 * reserved at once and decoded in one call; larger ones, and frames with no
 * stated size, are streamed, the output growing as it is produced, so a
 * frame that lies about its size costs no more than what it decodes to.
 */
#include "codec.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

typedef struct s_zstd {
    int level;
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
} s_zstd;

static uint64_t s_most(size_t n) {
    return pd__ratio_cap(n, 32768, (size_t)128 << 10);
}

static int s_encode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_zstd *z = ctx;
    if (!z->c) {
        z->c = ZSTD_createCCtx();
        if (!z->c) {
            pd_sink_reason(out, "ZSTD_createCCtx: out of memory");
            return PD_ERR_NOMEM;
        }
        size_t e =
            ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, z->level);
        if (!ZSTD_isError(e))
            e = ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 1);
        if (!ZSTD_isError(e))
            e = ZSTD_CCtx_setParameter(z->c, ZSTD_c_contentSizeFlag, 1);
        if (ZSTD_isError(e)) {
            pd_sink_reason(out, "zstd parameters: %s", ZSTD_getErrorName(e));
            ZSTD_freeCCtx(z->c);
            z->c = NULL;
            return PD_ERR_CORRUPT;
        }
    }
    size_t bound = ZSTD_compressBound(n);
    if (ZSTD_isError(bound) || bound < n) {
        pd_sink_reason(out, "value of %zu bytes too large for zstd", n);
        return PD_ERR_LIMIT;
    }
    void *dst = pd_sink_reserve(out, bound);
    if (!dst) return pd__sink_fail(out);
    size_t w = ZSTD_compress2(z->c, dst, bound, src, n);
    if (ZSTD_isError(w)) {
        pd_sink_reason(out, "ZSTD_compress2: %s", ZSTD_getErrorName(w));
        return ZSTD_getErrorCode(w) == ZSTD_error_memory_allocation
                   ? PD_ERR_NOMEM
                   : PD_ERR_CORRUPT;
    }
    pd_sink_commit(out, w);
    return 0;
}

static int s_step(void *st, const unsigned char *in, size_t in_n, size_t *used,
                  unsigned char *o, size_t out_n, size_t *made, pd_sink *sink) {
    ZSTD_DCtx *d = st;
    ZSTD_inBuffer ib = {in, in_n, 0};
    ZSTD_outBuffer ob = {o, out_n, 0};
    size_t r = ZSTD_decompressStream(d, &ob, &ib);
    *used = ib.pos;
    *made = ob.pos;
    if (ZSTD_isError(r)) {
        pd_sink_reason(sink, "ZSTD_decompressStream: %s", ZSTD_getErrorName(r));
        return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation
                   ? PD_ERR_NOMEM
                   : PD_ERR_CORRUPT;
    }
    return r == 0 ? 1 : 0;
}

/* 0 with *declared (UINT64_MAX: not stated), or PD_ERR_CORRUPT. */
static int s_header(const unsigned char *p, size_t n, uint64_t *declared) {
    *declared = UINT64_MAX;
    if (n < 4 || pd__le32(p) != ZSTD_MAGICNUMBER) return PD_ERR_CORRUPT;
    unsigned long long cs = ZSTD_getFrameContentSize(p, n);
    if (cs == ZSTD_CONTENTSIZE_ERROR) return PD_ERR_CORRUPT;
    if (cs != ZSTD_CONTENTSIZE_UNKNOWN) {
        if (cs > s_most(n)) return PD_ERR_CORRUPT;
        *declared = cs;
    }
    return 0;
}

static int s_decode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_zstd *z = ctx;
    uint64_t declared;
    if (s_header(src, n, &declared)) {
        pd_sink_reason(out,
                       "zstd: not a zstd frame header, or a content "
                       "size its %zu bytes cannot encode",
                       n);
        return PD_ERR_CORRUPT;
    }
    size_t fsize = ZSTD_findFrameCompressedSize(src, n);
    if (ZSTD_isError(fsize) || fsize != n) {
        if (ZSTD_isError(fsize))
            pd_sink_reason(out, "zstd: %s", ZSTD_getErrorName(fsize));
        else
            pd_sink_reason(out, "zstd: %zu bytes after the end of the frame",
                           n - fsize);
        return PD_ERR_CORRUPT;
    }
    if (declared != UINT64_MAX) {
        int rc = pd__sink_check_declared(out, "zstd frame", declared);
        if (rc) return rc;
    }
    if (!z->d) {
        z->d = ZSTD_createDCtx();
        if (!z->d) {
            pd_sink_reason(out, "ZSTD_createDCtx: out of memory");
            return PD_ERR_NOMEM;
        }
    }
    if (declared != UINT64_MAX &&
        declared <= pd__ratio_cap(n, PD__SOFT_RATIO, PD__SOFT_SLACK)) {
        void *dst = pd_sink_reserve(out, (size_t)declared);
        if (!dst) return pd__sink_fail(out);
        size_t r = ZSTD_decompressDCtx(z->d, dst, (size_t)declared, src, n);
        if (ZSTD_isError(r) || r != declared) {
            if (ZSTD_isError(r))
                pd_sink_reason(out, "ZSTD_decompressDCtx: %s",
                               ZSTD_getErrorName(r));
            else
                pd_sink_reason(out,
                               "zstd: frame decoded to %zu bytes, "
                               "declares %llu",
                               r, (unsigned long long)declared);
            return ZSTD_isError(r) &&
                           ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation
                       ? PD_ERR_NOMEM
                       : PD_ERR_CORRUPT;
        }
        pd_sink_commit(out, r);
        return 0;
    }
    ZSTD_DCtx_reset(z->d, ZSTD_reset_session_only);
    int rc = pd__stream_decode(out, src, n, pd__ratio_cap(n, 4, 4096), s_step,
                               z->d, "zstd frame");
    if (rc == 0 && declared != UINT64_MAX && pd_sink_size(out) != declared) {
        pd_sink_reason(out, "zstd: frame decoded to %zu bytes, declares %llu",
                       pd_sink_size(out), (unsigned long long)declared);
        rc = PD_ERR_CORRUPT;
    }
    return rc;
}

static void s_destroy(void *ctx) {
    s_zstd *z = ctx;
    if (!z) return;
    ZSTD_freeCCtx(z->c);
    ZSTD_freeDCtx(z->d);
    free(z);
}

static int s_make(pd_codec *out, int level) {
    s_zstd *z = calloc(1, sizeof *z);
    if (!z) return PD_ERR_NOMEM;
    z->level = level;
    *out = (pd_codec){"zstd", z, s_encode, s_decode, s_destroy};
    return 0;
}

static int s_probe(const unsigned char *p, size_t n, uint64_t *declared) {
    return s_header(p, n, declared);
}

static int s_prefix(void *ctx, const unsigned char *p, size_t n,
                    uint64_t claimed, pd_sink *out) {
    (void)claimed;
    s_zstd *z = ctx;
    static const unsigned char magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    if (memcmp(p, magic, n < 4 ? n : 4) != 0) return PD_ERR_CORRUPT;
    if (n <= 4) return 0;
    if (!z->d && !(z->d = ZSTD_createDCtx())) return PD_ERR_NOMEM;
    ZSTD_DCtx_reset(z->d, ZSTD_reset_session_only);
    return pd__stream_prefix(out, p, n, s_step, z->d, "zstd frame");
}

/* ZSTD_minCLevel() is -131072 in every zstd since 1.4. */
const pd__codec_ext pd__codec_zstd = {
    "zstd", -131072, 22, 3, true, s_encode, s_make, s_probe, s_prefix,
};
