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
 * BAD DATA
 * ========
 * Get never trusts a stored length: a frame length is checked against the
 * bytes that remain, a decoder's declared output size against the layer's
 * limit (pd_encode_set_limit) before anything is allocated from it, and
 * output grows as it is produced up to that limit, so a "bomb" stops there.
 * A declared size is also checked against what the payload could encode
 * (a snappy block decodes to at most about 22 times its size, an LZ4 frame
 * to about 255 times; a blosc chunk must hold its block table; a zstd
 * block of 4 bytes yields at most 128 KiB): a size it cannot encode makes
 * the frame corrupt.  zstd sizes more
 * than 1024 times the payload (plus 1 MiB) are not reserved up front: the
 * output grows as the frame decodes.  The decoders' own memory is bounded
 * too: the window a zstd frame asks for (what streaming it allocates; for
 * a frame that states its size in one segment, that size) may be at most
 * the limit rounded up to a power of two, at least 1 MiB and at most
 * 128 MiB, else the get fails with PD_ERR_LIMIT; a blosc chunk's block
 * size may not pass its decoded size; bz2 needs at most 3.6 MB per stream
 * and lz4 at most about 8 MiB (its largest block size, for frames that do
 * not state their size: those that do are decoded straight into the
 * result), whatever the input.  A frame that cannot be decoded fails the
 * get with
 * PD_ERR_CORRUPT (a frame larger than the limit: PD_ERR_LIMIT), naming the
 * layer, key, frame number and offset, and the decoder's reason.  Other
 * keys are unaffected.  snappy and blosc payloads carry no checksum: damage
 * to their compressed bytes may decode into wrong bytes without an error.
 *
 * TORN FRAMES
 * ===========
 * A writer killed in the middle of an append can leave a frame cut short at
 * the end of a key; a later append then lands after it, and may be cut
 * short too.  Get handles this:
 *
 *   - a frame that does not decode, or whose header or payload runs past the
 *     end of the key, is looked past: if, at a later offset inside the bytes
 *     it claims (or inside the run of zero bytes starting at it), a frame
 *     starts that decodes and after which the rest of the key reads by these
 *     same rules, the bytes before that offset are a torn frame and are left
 *     out;
 *   - for codecs whose payload prefix can be checked (zlib, bz2, lz4, zstd:
 *     by decoding it; blosc: its header states the chunk's size; snappy:
 *     its elements stay within its declared length and copy from output
 *     already made), such an offset may also start a torn frame that
 *     proves itself: a header and at least 16 payload bytes that begin a
 *     payload the codec accepts (through to the end of the key, or up to a
 *     later offset inside its claim, or after it when the claim runs past
 *     the end of the key, that resumes the same way); the frame being
 *     looked past must then be a header cut short or such a prefix too.
 *     This reads a key after several writers were killed in a row;
 *   - otherwise a frame that runs past the end of the key is a torn tail,
 *     left out, if it could have been written by this layer: a header cut
 *     short, or a length no larger than a frame within the limit can have
 *     and (built-in codecs) a payload start the codec accepts
 *     (all but its last 24 bytes, which may be a later writer's frame cut
 *     short in turn; at least its first byte).  A length past the data in
 *     front of anything else is corrupt data: the get fails;
 *   - a tail made only of zero bytes that does not decode (a file extended
 *     by a crash without its data) is left out, and the frame before it is
 *     kept;
 *   - anything else fails the get with PD_ERR_CORRUPT.  So does a torn
 *     frame whose bytes, up to the frame found after it, decode as one
 *     complete frame: its length field is what is damaged, and leaving it
 *     out would lose a value.  And so does a last frame that ends exactly
 *     at the end of the key but does not decode, even when its last few
 *     bytes could be the start of a next header (a writer killed after
 *     writing them): that cannot be told from damage to the frame (read
 *     as torn, a bit flip in the last frame of a key would silently drop
 *     it).  A crash does not leave that: the kernel cuts a write killed by
 *     SIGKILL at a page boundary (it copies page by page, checking for
 *     fatal signals between pages), so a next writer, starting on that
 *     boundary, cannot be cut after fewer than 8 bytes.
 *
 * Leaving out never fails the get: every complete frame is returned.  Each
 * region left out is counted (pd_encode_torn) and the last one described in
 * a notice (pd_encode_notice); pd_encode_repair rewrites keys without their
 * torn regions.  Recognising a resumption point relies on the decoder
 * rejecting what is not one of its payloads: zlib, bz2, lz4 and zstd carry
 * checksums, blosc a length that must match, snappy a length the block must
 * decode to exactly.  Without a checksum (snappy, blosc, custom codecs) a
 * torn frame whose claimed bytes were filled by a later append can decode;
 * for those codecs, when the bytes right after a frame are damaged and a
 * resumption point inside that frame's bytes proves itself as above, the
 * frame is left out as torn instead of returned.  A torn frame that decodes
 * with nothing damaged after it cannot be told from a good one.  Custom
 * codecs have no prefix check, so a torn frame followed only by other torn
 * frames reads as corrupt there.  A custom codec whose decode
 * accepts any bytes makes torn frames undetectable; such data reads as the
 * decoder makes of it.
 *
 * Cost: one pass and one decode per frame when nothing is torn.  At a
 * damaged frame, each later offset inside its bytes is a candidate,
 * rejected first by the length check (its frame must fit in the key, or
 * claim no more than the limit allows), then by the codec's cheap header
 * check, before a full decode; results are memoised per offset.  A torn
 * tail of 64 MB is looked through in about 0.25 s.  Worst case, on hostile
 * data, O(n^2) length checks and O(n) decodes for a key of n bytes; at most
 * 16 torn regions nested inside one candidate run are looked through
 * (deeper reads as corrupt).
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
} pd_codec;

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
