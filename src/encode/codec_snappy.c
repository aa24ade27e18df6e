/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * snappy: one raw snappy block per frame (no framing format), what
 * python-snappy's snappy.compress writes and snappy.decompress reads.
 *
 * A block starts with its decoded length as a varint.  Before anything is
 * allocated from it, that length is checked against the layer's limit and
 * against what the block could possibly encode: the densest element, a
 * 3-byte copy, yields 64 bytes, so n bytes never decode to more than
 * about 64n/3.  snappy_uncompress then checks the block decodes to exactly
 * that length.
 *
 * A prefix of a block (to prove a torn frame, see frame.h) is checked by
 * walking its elements without decoding them: each literal and copy must
 * stay within the declared length, and each copy must reach back no
 * further than the output so far; an element cut short by the end of the
 * prefix is accepted.  No checksum, so this is weaker evidence than the
 * other codecs' prefix checks, but random bytes rarely pass it for long.
 */
#include "encode/codec.h"

#include <snappy-c.h>
#include <stdlib.h>

/* The most a block of n bytes can decode to. */
static uint64_t s_most(size_t n) { return ((uint64_t)n / 3 + 1) * 64; }

/* The varint length prefix: 0 and *len, or PD_ERR_CORRUPT. */
static int s_varint(const unsigned char *p, size_t n, uint64_t *len) {
    uint64_t v = 0;
    for (size_t i = 0; i < 5 && i < n; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (v > UINT32_MAX) return PD_ERR_CORRUPT;
            *len = v;
            return 0;
        }
    }
    return PD_ERR_CORRUPT;
}

static int s_encode(void *ctx, const void *src, size_t n, pd_sink *out) {
    (void)ctx;
    /* The format's length prefix is 32 bits. */
    if (n > UINT32_MAX) {
        pd_sink_reason(out, "value of %zu bytes too large for snappy", n);
        return PD_ERR_LIMIT;
    }
    size_t bound = snappy_max_compressed_length(n);
    char *dst = pd_sink_reserve(out, bound);
    if (!dst) return pd__sink_fail(out);
    size_t len = bound;
    snappy_status st = snappy_compress(src, n, dst, &len);
    if (st != SNAPPY_OK) {
        pd_sink_reason(out, "snappy_compress failed (%d)", (int)st);
        return st == SNAPPY_BUFFER_TOO_SMALL ? PD_ERR_NOMEM : PD_ERR_CORRUPT;
    }
    pd_sink_commit(out, len);
    return 0;
}

static int s_decode(void *ctx, const void *src, size_t n, pd_sink *out) {
    (void)ctx;
    uint64_t len;
    if (s_varint(src, n, &len) != 0) {
        pd_sink_reason(out, "snappy: bad length prefix");
        return PD_ERR_CORRUPT;
    }
    int rc = pd__sink_check_claim(out, "snappy", "block", n, len, s_most(n));
    if (rc) return rc;
    char *dst = pd_sink_reserve(out, (size_t)len);
    if (!dst) return pd__sink_fail(out);
    size_t got = (size_t)len;
    snappy_status st = snappy_uncompress(src, n, dst, &got);
    if (st != SNAPPY_OK || got != len) {
        pd_sink_reason(out, "snappy_uncompress: invalid block (%d)", (int)st);
        return PD_ERR_CORRUPT;
    }
    pd_sink_commit(out, got);
    return 0;
}

/* Whether p[0..n) can begin a block of `claimed` bytes (n < claimed). */
static int s_prefix(void *ctx, const unsigned char *p, size_t n,
                    uint64_t claimed, pd_sink *out) {
    (void)ctx;
    size_t at = 0;
    uint64_t len = 0;
    for (;; at++) { /* the varint length, which may be cut short too */
        if (at == n) return 0;
        if (at == 5) return PD_ERR_CORRUPT;
        len |= (uint64_t)(p[at] & 0x7f) << (7 * at);
        if (!(p[at] & 0x80)) break;
    }
    at++;
    uint64_t most =
        claimed / 3 + 1 > UINT64_MAX / 64 ? UINT64_MAX : (claimed / 3 + 1) * 64;
    if (len > UINT32_MAX || len > most) {
        pd_sink_reason(out, "snappy: length prefix %llu impossible",
                       (unsigned long long)len);
        return PD_ERR_CORRUPT;
    }
    int rc = pd__sink_check_declared(out, "snappy block", len);
    if (rc) return rc;
    uint64_t made = 0; /* output the elements so far produce */
    while (at < n) {
        unsigned tag = p[at];
        uint64_t elen, off = 0;
        size_t hdr; /* bytes of the element before any literal bytes */
        switch (tag & 3) {
        case 0: /* literal: length in the tag, or in 1-4 bytes after it */
            if ((tag >> 2) < 60) {
                hdr = 1;
                elen = (tag >> 2) + 1;
            } else {
                size_t k = (tag >> 2) - 59;
                hdr = 1 + k;
                if (n - at < hdr) return 0;
                elen = 0;
                for (size_t i = 0; i < k; i++)
                    elen |= (uint64_t)p[at + 1 + i] << (8 * i);
                elen++;
            }
            break;
        case 1: /* copy, 11-bit offset */
            hdr = 2;
            elen = ((tag >> 2) & 7) + 4;
            if (n - at >= 2) off = (uint64_t)(tag >> 5) << 8 | p[at + 1];
            break;
        case 2: /* copy, 16-bit offset */
            hdr = 3;
            elen = (tag >> 2) + 1;
            if (n - at >= 3)
                off = (uint64_t)p[at + 1] | (uint64_t)p[at + 2] << 8;
            break;
        default: /* copy, 32-bit offset */
            hdr = 5;
            elen = (tag >> 2) + 1;
            if (n - at >= 5) off = pd__le32(p + at + 1);
            break;
        }
        if (elen > len - made) {
            pd_sink_reason(out,
                           "snappy: element at byte %zu passes the "
                           "declared length %llu",
                           at, (unsigned long long)len);
            return PD_ERR_CORRUPT;
        }
        if (n - at < hdr) return 0; /* cut short inside the element */
        if ((tag & 3) != 0 && (off == 0 || off > made)) {
            pd_sink_reason(out,
                           "snappy: copy at byte %zu reaches before "
                           "the start",
                           at);
            return PD_ERR_CORRUPT;
        }
        made += elen;
        if ((tag & 3) == 0 && elen > n - at - hdr) return 0; /* literal cut */
        at += hdr + ((tag & 3) == 0 ? (size_t)elen : 0);
    }
    /* The block is complete at n: bytes after it (claimed > n) would be
     * elements past its length. */
    if (made == len) {
        pd_sink_reason(out, "snappy: block ends before its frame does");
        return PD_ERR_CORRUPT;
    }
    return 0;
}

static int s_make(pd_codec *out, int level) {
    (void)level;
    *out = (pd_codec){"snappy", NULL, s_encode, s_decode, NULL};
    return 0;
}

static int s_probe(const unsigned char *p, size_t n, uint64_t *declared) {
    uint64_t len;
    *declared = UINT64_MAX;
    if (s_varint(p, n, &len) != 0 || len > s_most(n)) return PD_ERR_CORRUPT;
    *declared = len;
    return 0;
}

/* No levels: level_min > level_max. */
static size_t s_bound(size_t n) { return snappy_max_compressed_length(n); }

const pd__codec_ext pd__codec_snappy = {
    "snappy", 1, 0, 0, false, s_encode, s_make, s_probe, s_prefix, s_bound,
};
