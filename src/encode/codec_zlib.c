/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * zlib: one zlib stream (RFC 1950) per frame, what Python's
 * zlib.compress(data) writes (level -1, i.e. 6, window 15, memLevel 8,
 * default strategy) and zlib.decompress reads.  One deflate and one inflate
 * state per codec, reset for each value.  Decoding is stricter than
 * Python's in one way: bytes after the end of the stream are an error (they
 * can only come from damage, and refusing them keeps torn-frame detection
 * sharp).
 */
#include "encode/codec.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct s_zlib {
    int level;
    bool def_ok, inf_ok;
    z_stream def, inf;
} s_zlib;

static uInt s_clamp(size_t n) { return n > UINT_MAX ? UINT_MAX : (uInt)n; }

static int s_zerr(pd_sink *out, const char *fn, int zrc, const z_stream *z) {
    if (zrc == Z_MEM_ERROR) {
        pd_sink_reason(out, "%s: out of memory", fn);
        return PD_ERR_NOMEM;
    }
    if (zrc == Z_NEED_DICT)
        pd_sink_reason(out, "%s: stream needs a preset dictionary", fn);
    else
        pd_sink_reason(out, "%s: %s", fn,
                       z->msg        ? z->msg
                       : zError(zrc) ? zError(zrc)
                                     : "error");
    return PD_ERR_CORRUPT;
}

static int s_encode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_zlib *z = ctx;
    int zrc;
    if (!z->def_ok) {
        zrc = deflateInit2(&z->def, z->level, Z_DEFLATED, MAX_WBITS, 8,
                           Z_DEFAULT_STRATEGY);
        if (zrc != Z_OK) return s_zerr(out, "deflateInit2", zrc, &z->def);
        z->def_ok = true;
    } else if ((zrc = deflateReset(&z->def)) != Z_OK) {
        return s_zerr(out, "deflateReset", zrc, &z->def);
    }
    /* deflateBound is exact for these parameters: one pass, no growth. */
    size_t bound = deflateBound(&z->def, (uLong)n);
    if ((uLong)n != n || bound < n) {
        pd_sink_reason(out, "value of %zu bytes too large for zlib", n);
        return PD_ERR_LIMIT;
    }
    unsigned char *dst = pd_sink_reserve(out, bound);
    if (!dst) return pd__sink_fail(out);
    const unsigned char *in = src;
    size_t in_left = n, out_left = bound;
    z->def.next_in = (Bytef *)in;
    z->def.next_out = dst;
    for (;;) {
        uInt ai = s_clamp(in_left), ao = s_clamp(out_left);
        z->def.avail_in = ai;
        z->def.avail_out = ao;
        zrc = deflate(&z->def, ai == in_left ? Z_FINISH : Z_NO_FLUSH);
        in_left -= ai - z->def.avail_in;
        out_left -= ao - z->def.avail_out;
        if (zrc == Z_STREAM_END) break;
        if (zrc != Z_OK && zrc != Z_BUF_ERROR)
            return s_zerr(out, "deflate", zrc, &z->def);
        if (out_left == 0) {
            pd_sink_reason(out, "deflate: output passed deflateBound");
            return PD_ERR_CORRUPT;
        }
    }
    pd_sink_commit(out, bound - out_left);
    return 0;
}

static int s_step(void *st, const unsigned char *in, size_t in_n, size_t *used,
                  unsigned char *o, size_t out_n, size_t *made, pd_sink *sink) {
    z_stream *z = st;
    uInt ai = s_clamp(in_n), ao = s_clamp(out_n);
    z->next_in = (Bytef *)in;
    z->avail_in = ai;
    z->next_out = o;
    z->avail_out = ao;
    int zrc = inflate(z, Z_NO_FLUSH);
    *used = ai - z->avail_in;
    *made = ao - z->avail_out;
    if (zrc == Z_STREAM_END) return 1;
    if (zrc == Z_OK || zrc == Z_BUF_ERROR) return 0;
    return s_zerr(sink, "inflate", zrc, z);
}

/* The inflate stream, initialised the first time and reset after: 0 or an
 * error recorded on out. */
static int s_inflate_ready(s_zlib *z, pd_sink *out) {
    int zrc;
    if (!z->inf_ok) {
        zrc = inflateInit2(&z->inf, MAX_WBITS);
        if (zrc != Z_OK) return s_zerr(out, "inflateInit2", zrc, &z->inf);
        z->inf_ok = true;
    } else if ((zrc = inflateReset(&z->inf)) != Z_OK) {
        return s_zerr(out, "inflateReset", zrc, &z->inf);
    }
    return 0;
}

static int s_decode(void *ctx, const void *src, size_t n, pd_sink *out) {
    s_zlib *z = ctx;
    int rc = s_inflate_ready(z, out);
    if (rc) return rc;
    /* No size in the stream: start at 4x (zlib's usual ratio is 2-5) and
     * grow as output comes, up to the layer's limit. */
    return pd__stream_decode(out, src, n, pd__ratio_cap(n, 4, 4096), s_step,
                             &z->inf, "zlib stream");
}

static void s_destroy(void *ctx) {
    s_zlib *z = ctx;
    if (!z) return;
    if (z->def_ok) deflateEnd(&z->def);
    if (z->inf_ok) inflateEnd(&z->inf);
    free(z);
}

static int s_make(pd_codec *out, int level) {
    pd_codec proto = {"zlib", NULL, s_encode, s_decode, s_destroy};
    return pd__codec_new(out, proto, sizeof(s_zlib), level);
}

/* RFC 1950 header: deflate method, window <= 32 KiB, check bits, no
 * preset dictionary; 8 bytes at least (header, empty block, Adler-32). */
static int s_probe(const unsigned char *p, size_t n, uint64_t *declared) {
    *declared = UINT64_MAX;
    if (n < 8 || (p[0] & 0x0f) != 8 || (p[0] >> 4) > 7 || (p[1] & 0x20) ||
        ((unsigned)p[0] << 8 | p[1]) % 31 != 0)
        return PD_ERR_CORRUPT;
    return 0;
}

static int s_prefix(void *ctx, const unsigned char *p, size_t n,
                    uint64_t claimed, pd_sink *out) {
    (void)claimed;
    s_zlib *z = ctx;
    if (n >= 1 && ((p[0] & 0x0f) != 8 || (p[0] >> 4) > 7))
        return PD_ERR_CORRUPT;
    if (n >= 2 && ((p[1] & 0x20) || ((unsigned)p[0] << 8 | p[1]) % 31 != 0))
        return PD_ERR_CORRUPT;
    if (n <= 2) return 0;
    int rc = s_inflate_ready(z, out);
    if (rc) return rc;
    return pd__stream_prefix(out, p, n, s_step, &z->inf, "zlib stream");
}

const pd__codec_ext pd__codec_zlib = {
    "zlib", 0, 9, 6, true, s_encode, s_make, s_probe, s_prefix,
};
