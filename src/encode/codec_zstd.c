/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
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
 *
 * The streaming decoder also allocates the window the frame header asks
 * for (up to 2 GiB in the format): the window a frame may need is bounded
 * by the layer's limit (rounded up to a power of two, at least 1 MiB, at
 * most 128 MiB, zstd's own default cap), checked in the header on every
 * path and set as ZSTD_d_windowLogMax on the streaming ones; a frame
 * needing more fails with PD_ERR_LIMIT.  Our frames state their content
 * size and are single-segment (window = content size), so any frame
 * within the limit passes.
 */
#include "encode/codec.h"

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

/* The largest window log a frame may ask for under a decoded-size limit
 * of `room` bytes: ceil(log2(room)), at least 20 (1 MiB), at most 27. */
static int s_wlog_max(size_t room) {
    int w = 20;
    while (w < 27 && ((size_t)1 << w) < room) w++;
    return w;
}

/* PD_ERR_LIMIT (reason set) when the frame header in p[0..n) is complete
 * and asks for a window larger than s_wlog_max allows; else 0 (an
 * incomplete or invalid header is for the decoder to judge). */
static int s_window_check(const unsigned char *p, size_t n, pd_sink *out) {
    /* The frame header (RFC 8878 3.1.1.1): magic, descriptor, window
     * descriptor unless single-segment, dictionary id, content size.
     * Read by hand: ZSTD_getFrameHeader is not in zstd's stable API. */
    if (n < 5 || pd__le32(p) != ZSTD_MAGICNUMBER) return 0;
    unsigned fhd = p[4], fcs_code = fhd >> 6, single = (fhd >> 5) & 1;
    static const size_t did_len[4] = {0, 1, 2, 4};
    static const size_t fcs_len[4] = {0, 2, 4, 8};
    size_t fcs_n = fcs_code == 0 && single ? 1 : fcs_len[fcs_code];
    size_t at = 5 + !single + did_len[fhd & 3];
    uint64_t window;
    if (!single) {
        if (n < 6) return 0;
        unsigned wd = p[5], wlog = 10 + (wd >> 3);
        uint64_t base = (uint64_t)1 << wlog;
        window = base + (base / 8) * (wd & 7);
    } else {
        if (n < at + fcs_n) return 0;
        window = 0;
        for (size_t i = 0; i < fcs_n; i++)
            window |= (uint64_t)p[at + i] << (8 * i);
        if (fcs_n == 2) window += 256;
    }
    uint64_t most = (uint64_t)1 << s_wlog_max(pd_sink_room(out));
    if (window <= most) return 0;
    pd_sink_reason(out,
                   "zstd frame needs a window of %llu bytes, more than "
                   "the limit allows (%llu)",
                   (unsigned long long)window, (unsigned long long)most);
    out->fail = PD_ERR_LIMIT;
    return PD_ERR_LIMIT;
}

/* Resets the streaming state and bounds the window it may allocate.
 * 0 or PD_ERR_NOMEM. */
static int s_stream_start(s_zstd *z, pd_sink *out) {
    if (!z->d && !(z->d = ZSTD_createDCtx())) {
        pd_sink_reason(out, "ZSTD_createDCtx: out of memory");
        return PD_ERR_NOMEM;
    }
    ZSTD_DCtx_reset(z->d, ZSTD_reset_session_only);
    size_t e = ZSTD_DCtx_setParameter(z->d, ZSTD_d_windowLogMax,
                                      s_wlog_max(pd_sink_room(out)));
    if (ZSTD_isError(e)) {
        /* Never expected (the value is in range, the session reset), but
         * the bound must hold: refuse rather than stream unbounded. */
        pd_sink_reason(out, "zstd windowLogMax: %s", ZSTD_getErrorName(e));
        return PD_ERR_NOMEM;
    }
    return 0;
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
        switch (ZSTD_getErrorCode(r)) {
        case ZSTD_error_memory_allocation: return PD_ERR_NOMEM;
        case ZSTD_error_frameParameter_windowTooLarge:
            sink->fail = PD_ERR_LIMIT;
            return PD_ERR_LIMIT;
        default: return PD_ERR_CORRUPT;
        }
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
    /* On every path, so that a frame reads (or not) the same whole, as a
     * prefix (streamed) and checked. */
    int wrc = s_window_check(src, n, out);
    if (wrc) return wrc;
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
    int rc = s_stream_start(z, out);
    if (rc) return rc;
    rc = pd__stream_decode(out, src, n, pd__ratio_cap(n, 4, 4096), s_step, z->d,
                           "zstd frame");
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
    pd_codec proto = {"zstd", NULL, s_encode, s_decode, s_destroy};
    return pd__codec_new(out, proto, sizeof(s_zstd), level);
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
    int rc = s_window_check(p, n, out);
    if (rc == 0) rc = s_stream_start(z, out);
    if (rc) return rc;
    return pd__stream_prefix(out, p, n, s_step, z->d, "zstd frame");
}

/* ZSTD_minCLevel() is -131072 in every zstd since 1.4. */
const pd__codec_ext pd__codec_zstd = {
    "zstd", -131072, 22, 3, true, s_encode, s_make, s_probe, s_prefix,
};
