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
 */
#include "codec.h"

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
    if (len > s_most(n)) {
        pd_sink_reason(out,
                       "snappy: block of %zu bytes declares %llu decoded "
                       "bytes, more than it can encode",
                       n, (unsigned long long)len);
        return PD_ERR_CORRUPT;
    }
    int rc = pd__sink_check_declared(out, "snappy block", len);
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
const pd__codec_ext pd__codec_snappy = {
    "snappy", 1,      0,       0,    false,
    s_encode, s_make, s_probe, NULL, /* a prefix shows only the length: too weak
                                        to prove a torn frame */
};
