/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * fuzz_frame: pd_frame_split over arbitrary bytes.
 *
 * Properties: the frames reported tile a prefix of the input exactly (each
 * starts where the previous one ended, its payload follows its 8-byte
 * little-endian header, which holds its size); the call returns 0 when the
 * frames end exactly at the end of the input, and PD_ERR_CORRUPT when what
 * remains is a frame cut short (fewer than 8 bytes, or a header claiming
 * more than is left), with *end at that frame.  A callback's nonzero return
 * stops the split at once and is returned.  The input is also split with a
 * NULL end pointer and, in pieces, as prefixes of itself.
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct s_state {
    const uint8_t *base;
    size_t n;
    uint64_t next; /* where the next frame must start */
    size_t count;
    size_t stop_at; /* return 7 from the callback for this frame */
} s_state;

static uint64_t s_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int s_cb(void *arg, const void *payload, size_t psize, uint64_t offset) {
    s_state *st = arg;
    FZ_CHECK(offset == st->next, "frame %zu at offset %llu, expected %llu",
             st->count, (unsigned long long)offset,
             (unsigned long long)st->next);
    FZ_CHECK(offset + PD_FRAME_HEADER <= st->n &&
                 psize <= st->n - offset - PD_FRAME_HEADER,
             "frame %zu (offset %llu, %zu bytes) runs past the input (%zu)",
             st->count, (unsigned long long)offset, psize, st->n);
    FZ_CHECK((const uint8_t *)payload == st->base + offset + PD_FRAME_HEADER,
             "frame %zu: payload pointer is not after its header", st->count);
    FZ_CHECK(s_le64(st->base + offset) == psize,
             "frame %zu: size %zu, header says %llu", st->count, psize,
             (unsigned long long)s_le64(st->base + offset));
    st->next = offset + PD_FRAME_HEADER + psize;
    return st->count++ == st->stop_at ? 7 : 0;
}

/* Splits data[0..n); returns the frame count.  Checks the result code and
 * *end against what remains after the last complete frame. */
static size_t s_split(const uint8_t *data, size_t n) {
    s_state st = {data, n, 0, 0, SIZE_MAX};
    size_t end = 12345;
    int rc = pd_frame_split(n ? data : NULL, n, s_cb, &st, &end);
    size_t rest = n - (size_t)st.next;
    bool cut = rest > 0; /* something after the last complete frame */
    if (cut && rest >= PD_FRAME_HEADER)
        FZ_CHECK(s_le64(data + st.next) > rest - PD_FRAME_HEADER,
                 "a complete frame at %llu was not reported",
                 (unsigned long long)st.next);
    if (!cut) {
        FZ_CHECK(rc == 0, "frames tile %zu bytes, rc %d", n, rc);
    } else {
        FZ_CHECK(rc == PD_ERR_CORRUPT, "cut frame at %llu of %zu: rc %d",
                 (unsigned long long)st.next, n, rc);
        FZ_CHECK(end == st.next, "cut frame at %llu, *end %zu",
                 (unsigned long long)st.next, end);
    }
    /* the same without an end pointer */
    s_state st2 = {data, n, 0, 0, SIZE_MAX};
    int rc2 = pd_frame_split(n ? data : NULL, n, s_cb, &st2, NULL);
    FZ_CHECK(rc2 == rc && st2.count == st.count,
             "end == NULL changes the result: %d/%zu vs %d/%zu", rc2, st2.count,
             rc, st.count);
    return st.count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t count = s_split(data, size);
    /* a callback's nonzero return stops the split and is returned */
    if (count > 0) {
        s_state st = {data, size, 0, 0, size ? data[0] % count : 0};
        size_t end = 0;
        int rc = pd_frame_split(data, size, s_cb, &st, &end);
        FZ_CHECK(rc == 7, "the callback returned 7, split returned %d", rc);
        FZ_CHECK(st.count == st.stop_at + 1,
                 "split went on after the callback stopped it (%zu calls)",
                 st.count);
    }
    /* every prefix that ends between frames tiles exactly; one that cuts a
     * frame reports it (checked inside s_split) */
    if (size <= 512) {
        for (size_t n = 0; n < size; n++) {
            size_t c = s_split(data, n);
            FZ_CHECK(c <= count, "a prefix holds more frames than the whole");
        }
    }
    return 0;
}
