/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * libpartd: the Encode layer and its codecs (zlib, bz2, snappy, blosc, lz4,
 * zstd).  Included by partd/partd.h; do not include it on its own.
 *
 * OVERVIEW
 * ========
 * An Encode store wraps any store (its "inner" store).  On append, each value
 * is encoded by a codec and written to the inner store as one *frame*: an
 * 8-byte little-endian length, then that many encoded bytes; this is the
 * framing of Python partd's `Encode`, so a File written through our "zlib"
 * layer is what partd's `ZLib(File)` writes, and the reverse.  On get, the
 * key's bytes are split into frames, each frame is decoded, and the decoded
 * bytes are concatenated.  iset encodes its value as one frame and replaces
 * the key; delete, drop, keys and lock pass through to the inner store (key
 * sizes from pd_keys are the encoded sizes, and a key given only empty
 * values is listed: an empty value's frame is not empty, as in partd).
 *
 * An append encodes the whole batch first, into one buffer, then makes one
 * batch append on the inner store: a value that fails to encode appends
 * nothing, and the inner store's atomicity covers the batch.  A get makes
 * one inner get and decodes straight into the result.
 *
 * CODECS
 * ======
 * A codec is a pair of callbacks (pd_codec).  The built-in ones, from
 * pd_codec_builtin():
 *
 *   name    format of one frame's payload                     Python partd
 *   zlib    zlib stream (RFC 1950), level 0-9, default 6       ZLib
 *   bz2     bzip2 stream, level 1-9, default 9                 BZ2
 *   snappy  raw snappy block (no framing format)               Snappy
 *   blosc   one blosc 1.x chunk: blosclz, typesize 8, byte      Blosc
 *           shuffle, level 0-9 default 9 (python-blosc's
 *           defaults); any blosc 1.x chunk is read
 *   lz4     one LZ4 frame (the standard lz4 frame format, as   (ours)
 *           `lz4` writes it) with the content size and a content
 *           checksum, linked blocks of up to 256 KiB; level 0-12
 *           (0-2: fast mode), default 0
 *   zstd    one zstd frame (as `zstd` writes it) with the      (ours)
 *           content size and a content checksum; level 1-22
 *           (negative down to -131072: faster; 0 is 3), default 3
 *
 * The first four read and write exactly what the reference does (the same
 * bytes, for blosc when python-blosc runs one thread: with several, its
 * blocks may be laid out in another order, which reads the same).  lz4 and
 * zstd are standard frames, so any lz4/zstd implementation reads a payload.
 * One difference in reading: bytes after the end of a zlib stream make the
 * frame corrupt (Python's zlib.decompress ignores them; partd never writes
 * them).
 *
 * BAD DATA AND TORN FRAMES
 * =========================
 * Get never trusts a stored length, bounds every allocation by the layer's
 * limit (pd_encode_set_limit), fails a frame that does not decode with
 * PD_ERR_CORRUPT naming layer, key, frame and offset (other keys are
 * unaffected), and leaves out frames torn by a killed writer, counting
 * them (pd_encode_torn).  The exact rules: docs/encode.md.
 *
 * THREADS
 * =======
 * An Encode store runs one call at a time (its mutex); the codec callbacks
 * are never called concurrently for one store, so a codec may keep reusable
 * state in its ctx.
 */
#ifndef PARTD_ENCODE_H
#define PARTD_ENCODE_H

#ifndef PARTD_PARTD_H
#error "include <partd/partd.h>, not <partd/encode.h>"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ Sinks */

/** Where a codec callback writes its output: a growable buffer owned by the
 *  layer, with a size limit.  Valid only during the callback. */
typedef struct pd_sink pd_sink;

/**
 * Returns a pointer where at least `n` more bytes may be written, or NULL
 * when the memory cannot be had (the callback then returns PD_ERR_NOMEM) or
 * the output would pass the sink's limit (the callback then returns
 * PD_ERR_LIMIT).  Bytes written there count once pd_sink_commit is called.
 * A later reserve may move the buffer: earlier pointers are then invalid.
 */
PD_API void *pd_sink_reserve(pd_sink *sink, size_t n);
/** Marks `n` bytes (at most the last reserve) written at the pointer from
 *  pd_sink_reserve. */
PD_API void pd_sink_commit(pd_sink *sink, size_t n);
/** Copies n bytes in: reserve + memcpy + commit.  0, PD_ERR_NOMEM or
 *  PD_ERR_LIMIT. */
PD_API int pd_sink_write(pd_sink *sink, const void *data, size_t n);
/** How many more bytes the sink accepts before its limit. */
PD_API size_t pd_sink_room(const pd_sink *sink);
/** Bytes committed so far by this callback. */
PD_API size_t pd_sink_size(const pd_sink *sink);
/** Records why the callback fails ("inflate: incorrect header check"); the
 *  layer puts it at the end of its error message.  printf-style. */
PD_API void pd_sink_reason(pd_sink *sink, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ----------------------------------------------------------------- Codecs */

/**
 * A codec: callbacks that encode one value into one frame's payload and
 * decode one payload back.  Each returns 0, or a negative PD_ERR_* code
 * (PD_ERR_CORRUPT for undecodable input, PD_ERR_NOMEM, PD_ERR_LIMIT as
 * pd_sink_reserve told it), optionally after pd_sink_reason.  A callback
 * must not call back into the store.  `ctx` is passed to every callback;
 * `destroy` (may be NULL) is called once when the layer closes, or when
 * pd_encode_open fails.
 */
typedef struct pd_codec {
    /* Names the layer (pd_store_kind, messages); must outlive the store. */
    const char *name;
    void *ctx;
    int (*encode)(void *ctx, const void *src, size_t n, pd_sink *out);
    int (*decode)(void *ctx, const void *src, size_t n, pd_sink *out);
    void (*destroy)(void *ctx);
    /* The layout of this struct the caller was built with: 0 (the library's
     * current one) or PD_CODEC_VERSION; pd_encode_open refuses a larger one
     * (PD_ERR_MISUSE).  New members are only ever added after this one. */
    unsigned struct_version;
} pd_codec;

/** The pd_codec layout this header declares. */
#define PD_CODEC_VERSION 1u

/** Level argument meaning "the codec's default". */
#define PD_LEVEL_DEFAULT (-1000)

/**
 * Fills *out with the built-in codec `name` ("zlib", "bz2", "snappy",
 * "blosc", "lz4", "zstd") at compression `level` (PD_LEVEL_DEFAULT or a
 * level in the codec's range, see CODECS above; snappy has none and takes
 * only PD_LEVEL_DEFAULT).  The codec owns a ctx: pass it to pd_encode_open,
 * which takes it over, or release it with out->destroy(out->ctx).
 * Errors: PD_ERR_MISUSE (NULL), PD_ERR_UNSUPPORTED (unknown name, with the
 * known ones in the message), PD_ERR_LIMIT (level out of range),
 * PD_ERR_NOMEM; reported through pd_errmsg(NULL).  On error *out is zeroed.
 */
PD_API int pd_codec_builtin(pd_codec *out, const char *name, int level);

/** The built-in codec names, NULL-terminated (static). */
PD_API const char *const *pd_codec_names(void);

/* ----------------------------------------------------------------- Encode */

/** Default limit on one frame's decoded size (1 GiB). */
#define PD_ENCODE_LIMIT_DEFAULT ((uint64_t)1 << 30)

/**
 * Opens an Encode store over `*inner` with `codec` (copied; its ctx is taken
 * over on success and on failure).  On success the layer owns the inner
 * store and sets *inner to NULL, unless flags has PD_BORROW (the caller then
 * closes inner after the layer).  pd_store_kind() gives the codec's name.
 * Errors: PD_ERR_MISUSE, PD_ERR_NOMEM.  On error nothing of inner is taken.
 */
PD_API int pd_encode_open(pd_store **out, pd_store **inner,
                          const pd_codec *codec, unsigned flags);

/**
 * pd_codec_builtin(name, level) then pd_encode_open: the usual way to get a
 * compressed store, e.g. pd_compress_open(&s, &file, "zstd", 1, 0).
 */
PD_API int pd_compress_open(pd_store **out, pd_store **inner, const char *name,
                            int level, unsigned flags);

/** The inner store (borrowed; valid while the layer is open), or NULL when
 *  `store` is not an Encode store. */
PD_API pd_store *pd_encode_inner(const pd_store *store);

/** Sets the largest decoded size accepted for one frame (>= 1; default
 *  PD_ENCODE_LIMIT_DEFAULT).  A frame that would decode to more fails its
 *  get with PD_ERR_LIMIT.  Errors: PD_ERR_MISUSE (NULL, not an Encode
 *  store, 0). */
PD_API int pd_encode_set_limit(pd_store *store, uint64_t max_frame);

/** Torn regions left out by gets on this handle since it was opened (0 for
 *  a store that is not an Encode store). */
PD_API uint64_t pd_encode_torn(const pd_store *store);

/** A description of the last torn region left out ("zlib: get 'k': left out
 *  a torn frame of 123 bytes at offset 4096 of 9000"), or "" if none (or
 *  not an Encode store).  A copy owned by the calling thread, valid until
 *  its next pd_encode_notice. */
PD_API const char *pd_encode_notice(const pd_store *store);

/**
 * For each key, reads it and, if get would leave out torn regions, rewrites
 * it (pd_iset semantics on the inner store: replaced atomically on a File)
 * with only its complete frames, byte for byte.  Stores the number of bytes
 * removed in *removed (may be NULL).  Keys that are corrupt (not torn) are
 * left as they are; the other keys are still repaired, and the call then
 * fails with PD_ERR_CORRUPT naming the first corrupt key.  Takes the lock
 * for the whole call (flags: PD_NOLOCK inside pd_lock, PD_FSYNC).  Regions
 * removed are not counted by pd_encode_torn.  Errors: PD_ERR_MISUSE, and
 * as pd_get and pd_iset.
 */
PD_API int pd_encode_repair(pd_store *store, size_t n, const pd_key *keys,
                            uint64_t *removed, unsigned flags);

/* ---------------------------------------------------------------- Frames */

/** Bytes of a frame header (the little-endian length). */
#define PD_FRAME_HEADER 8

/**
 * Splits data[0..n) into frames as the reference writes them.  Calls
 * fn(arg, payload, size, offset) for each complete frame in order; stops at
 * the first nonzero return and returns it.  Returns 0 when the frames end
 * exactly at n, PD_ERR_CORRUPT when the last frame runs past n (*end, if not
 * NULL, is then the offset of that incomplete frame; else n).
 */
PD_API int pd_frame_split(const void *data, size_t n,
                          int (*fn)(void *arg, const void *payload, size_t size,
                                    uint64_t offset),
                          void *arg, size_t *end);

#ifdef __cplusplus
}
#endif
#endif /* PARTD_ENCODE_H */
