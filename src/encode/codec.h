/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Private side of the Encode layer: the sink the codec callbacks write to,
 * the built-in codecs' extras (cheap header checks, declared sizes), and
 * helpers the codec files share.  See partd/encode.h for the public part.
 */
#ifndef PARTD_CODEC_H
#define PARTD_CODEC_H

#include "core/internal.h"

/* ------------------------------------------------------------------ Sink */

#define PD__REASON_MAX 200

/* A sink appends to a pd_result's byte buffer (the get's result when
 * decoding, the batch buffer when encoding): what a callback commits goes
 * straight where the layer wants it, without a copy. */
struct pd_sink {
    pd_result *r;
    size_t start;    /* r->len when the callback began */
    size_t limit;    /* most bytes the callback may commit */
    size_t reserved; /* bytes of the last successful reserve */
    int fail;        /* why the last reserve failed (PD_ERR_*), or 0 */
    char reason[PD__REASON_MAX];
};

/* Starts a sink at the end of r's buffer accepting up to `limit` bytes. */
PD__API void pd__sink_init(pd_sink *sink, pd_result *r, size_t limit);
/* Drops everything committed through the sink (r->len back to start). */
void pd__sink_rollback(pd_sink *sink);
/* The error a callback should return after a failed reserve. */
static inline int pd__sink_fail(const pd_sink *sink) {
    return sink->fail ? sink->fail : PD_ERR_NOMEM;
}

/* ------------------------------------------------------ Built-in extras */

/* What the layer knows about a built-in codec beyond its callbacks. */
typedef struct pd__codec_ext {
    const char *name;
    int level_min, level_max, level_default; /* min > max: no levels */
    /* Payloads carry a checksum of the decoded bytes, so a damaged or
     * torn payload never decodes (zlib, bz2, lz4, zstd; not snappy and
     * blosc). */
    bool checksummed;
    /* The encode callback make() installs: identifies the codec. */
    int (*encode)(void *ctx, const void *src, size_t n, pd_sink *out);
    /* Fills *out (name, ctx, callbacks) at `level` (already checked).
     * 0 or PD_ERR_NOMEM. */
    int (*make)(pd_codec *out, int level);
    /* Cheap check of a payload's header, no decoding: PD_ERR_CORRUPT when
     * it cannot be one of this codec's payloads, else 0 with *declared the
     * decoded size the header states (UINT64_MAX when it states none).
     * Used to reject resynchronisation candidates before a full decode,
     * and to size a get's result up front. */
    int (*probe)(const unsigned char *p, size_t n, uint64_t *declared);
    /* Whether p[0..n) can begin a payload of `claimed` bytes (n < claimed):
     * 0, or PD_ERR_CORRUPT (PD_ERR_LIMIT, PD_ERR_NOMEM as decoding tells).
     * Rejects cheaply (magic bytes) before decoding the prefix into `out`,
     * which the caller throws away.  Proves torn frames (frame.h). */
    int (*prefix)(void *ctx, const unsigned char *p, size_t n, uint64_t claimed,
                  pd_sink *out);
    /* Most bytes encoding n bytes can take (NULL: no fixed bound). */
    size_t (*bound)(size_t n);
} pd__codec_ext;

extern const pd__codec_ext pd__codec_zlib;
extern const pd__codec_ext pd__codec_bz2;
PD__API extern const pd__codec_ext pd__codec_snappy;
PD__API extern const pd__codec_ext pd__codec_blosc;
extern const pd__codec_ext pd__codec_lz4;
extern const pd__codec_ext pd__codec_zstd;

/* A blosc codec as pd_codec_builtin makes it, but whose byte shuffle takes
 * items of `typesize` bytes (python-blosc's blosc.compress(data, typesize));
 * 0 counts as 1.  0 or PD_ERR_NOMEM. */
PD__API int pd__codec_blosc_typed(pd_codec *out, int level, size_t typesize);

/* Fills *out with `proto` (name and callbacks) and, as its ctx, a zeroed
 * state of `size` bytes whose first member is `int level`, set to level:
 * the make of a built-in codec that keeps a state.  0 or PD_ERR_NOMEM. */
int pd__codec_new(pd_codec *out, pd_codec proto, size_t size, int level);

/* The extras of a built-in codec (recognised by its encode callback), or
 * NULL for a custom codec. */
const pd__codec_ext *pd__codec_ext_of(const pd_codec *codec);

/* ------------------------------------------------------------- Helpers */

static inline uint64_t pd__le64(const unsigned char *p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
           (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static inline uint32_t pd__le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline void pd__put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Declared sizes up to this many bytes per payload byte (plus
 * PD__SOFT_SLACK) are reserved at once; past it, a decoder that can stream
 * grows its output as it produces it, so a payload that lies about its size
 * cannot make the layer allocate much more than it really decodes to. */
#define PD__SOFT_RATIO 1024u
#define PD__SOFT_SLACK ((size_t)1 << 20)
/* min(ratio * n + slack, SIZE_MAX), overflow-safe. */
size_t pd__ratio_cap(size_t n, size_t ratio, size_t slack);

/* The end of the sink's buffer: where the bytes of the last reserve
 * (sink->reserved of them) not yet committed start.  Only after a
 * successful reserve. */
static inline unsigned char *pd__sink_end(const pd_sink *sink) {
    return (unsigned char *)sink->r->buf + sink->r->len;
}

/* One step of a streaming decoder: decode from in[0..in_n) into
 * out[0..out_n) (out_n may be 0), setting *used and *made.  Returns 1 when
 * the stream ended, 0 to go on, 2 to go on after a change of state that
 * moved no bytes, or a negative PD_ERR_* (reason set). */
typedef int (*pd__step_fn)(void *st, const unsigned char *in, size_t in_n,
                           size_t *used, unsigned char *out, size_t out_n,
                           size_t *made, pd_sink *sink);

/* Runs `step` over src[0..n) into the sink, first reserving `first` bytes
 * (clamped to the sink's room) and growing by doubling as output is made.
 * The stream must end exactly at n.  Fails with PD_ERR_LIMIT when the
 * output would pass the sink's room, PD_ERR_CORRUPT when the input ends
 * early, has bytes after the stream, or does not decode.  `what` names the
 * format in reasons ("zlib stream"). */
int pd__stream_decode(pd_sink *sink, const void *src, size_t n, size_t first,
                      pd__step_fn step, void *st, const char *what);

/* As pd__stream_decode, but src[0..n) is only the start of a stream: 0
 * when the decoder accepts all of it and wants more; PD_ERR_CORRUPT when
 * it fails or the stream ends inside it. */
int pd__stream_prefix(pd_sink *sink, const void *src, size_t n,
                      pd__step_fn step, void *st, const char *what);

/* The sink's reason for a declared size the sink cannot take: PD_ERR_LIMIT
 * past its room.  Returns 0 when `declared` fits. */
int pd__sink_check_declared(pd_sink *sink, const char *what, uint64_t declared);
/* A decoder's check of the size its input of n bytes declares: the
 * sink's reason and PD_ERR_CORRUPT past `most` (what n bytes of `codec`'s
 * `unit`, "frame" or "block", can encode), else as pd__sink_check_declared
 * for "codec unit". */
int pd__sink_check_claim(pd_sink *sink, const char *codec, const char *unit,
                         size_t n, uint64_t declared, uint64_t most);

#endif /* PARTD_CODEC_H */
