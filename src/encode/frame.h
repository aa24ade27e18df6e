/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The frame scanner behind an Encode layer's get and repair: walks a key's
 * bytes frame by frame and finds the torn regions partd/encode.h describes
 * (TORN FRAMES).  Private.
 */
#ifndef PARTD_FRAME_H
#define PARTD_FRAME_H

#include "core/internal.h"

typedef enum pd__skip_kind {
    PD__SKIP_TORN = 1, /* a torn frame followed by complete ones */
    PD__SKIP_TAIL,     /* a frame cut short at the end of the key */
    PD__SKIP_ZERO,     /* a tail of zero bytes */
} pd__skip_kind;

typedef struct pd__scan_ops {
    void *arg;
    /* Decodes and keeps the payload of the frame at `off` (frame number
     * `index` among those kept).  0; PD_ERR_CORRUPT when it does not decode
     * (the scanner then looks for a resumption point); any other error
     * stops the scan and is returned. */
    int (*emit)(void *arg, const unsigned char *p, size_t n, uint64_t off,
                size_t index);
    /* Decodes a payload only to see whether it decodes: 0, PD_ERR_CORRUPT
     * or PD_ERR_LIMIT (it does not); any other error stops the scan. */
    int (*check)(void *arg, const unsigned char *p, size_t n);
    /* Cheap header check (no decoding), or NULL: 0 when the payload may
     * decode. */
    int (*probe)(void *arg, const unsigned char *p, size_t n);
    /* A region left out (may be NULL).  Nonzero stops the scan. */
    int (*skip)(void *arg, uint64_t off, uint64_t len, pd__skip_kind kind);
    /* Whether p[0..n) can be the first n bytes of a payload of `claimed`
     * bytes (n < claimed), or NULL.  0; PD_ERR_CORRUPT or PD_ERR_LIMIT (it
     * cannot); another error stops the scan.  Cheap rejections first: it
     * runs at many candidate offsets.  With it, torn frames are found
     * after other torn frames (several crashes in a row), each proven by
     * its prefix. */
    int (*prefix)(void *arg, const unsigned char *p, size_t n,
                  uint64_t claimed);
    /* The longest payload a frame could have (from the decoded-size
     * limit): torn frames claiming more are not candidates.  0: no bound. */
    uint64_t max_payload;
    /* Takes back the last frame emitted (see `backtrack`). */
    void (*unemit)(void *arg);
    /* The codec has no checksum (snappy, blosc, custom), so a torn frame
     * whose claimed bytes were filled by later appends may decode.  When
     * the bytes right after a kept frame are damaged, and a resumption
     * point inside that frame's claim proves itself (as below), the frame
     * is taken back and left out as torn instead. */
    bool backtrack;
} pd__scan_ops;

/* Where a scan failed with PD_ERR_CORRUPT. */
typedef struct pd__scan_fail {
    uint64_t off;  /* offset of the frame that does not decode */
    size_t index;  /* frames kept before it */
    bool bad_len;  /* its length field is wrong (a complete frame ends
                    * before the bytes it claims do) */
    bool past_end; /* it claims more bytes than remain, and what remains
                    * is no torn tail (an impossible length, or a payload
                    * start the codec rejects) */
} pd__scan_fail;

/* Resynchronisation looks through at most this many nested torn regions
 * inside one candidate run of frames; deeper nesting reads as corrupt. */
#define PD__RESYNC_DEPTH 16

/*
 * Walks data[0..n), calling emit for each frame kept, in order, and skip
 * for each region left out.  Returns 0, PD_ERR_CORRUPT with *fail filled
 * (a frame that neither decodes nor is torn), PD_ERR_NOMEM (the scanner's
 * own bookkeeping), or the error an op returned.
 *
 * Cost: one pass and one decode per frame when nothing is torn.  At a
 * frame that fails, each offset inside the bytes it claims is a candidate
 * resumption point, rejected by the length check (its frame must fit in
 * the key), then the probe, before a decode; accepted candidates must
 * start a run that reads to the end (memoised per offset).  Worst case,
 * on hostile data: O(n^2) length checks and O(n) decodes per key.
 */
int pd__frame_scan(const unsigned char *data, size_t n, const pd__scan_ops *ops,
                   pd__scan_fail *fail);

#endif /* PARTD_FRAME_H */
