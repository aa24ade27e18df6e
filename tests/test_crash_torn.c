/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Crash consistency of framed stores, torn in set ways: a zero-filled tail
 * (a file extended without its data) is left out, and two crashes in a row
 * (torn frames of every codec, in every layout) read and repair correctly.
 */
#include "crashfix.h"

/* -------------------------------------------------------- Zero tails */

/* A file extended by a crash without its data ends in zeros: get leaves
 * them out and repair removes them, for both codecs. */
START_TEST(zero_tail) {
    const char *codec = CODECS[_i];
    char *dir = s_new_store();
    pd_store *s = tu_codec_file(dir, 0, codec, PD_LEVEL_DEFAULT);
    pd_key k = PD_KEY_STR("z");
    unsigned char *v = malloc(5000);
    s_fill(1, 0, 0, 5000, v);
    tu_append1(s, k, v, 5000);
    tu_append1(s, k, "second", 6);
    char path[4096];
    ck_assert_uint_gt(
        pd_file_filename(pd_encode_inner(s), &k, path, sizeof path), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    off_t whole = st.st_size;
    const off_t zeros[] = {1, 7, 8, 9, 4096, 65536};
    for (size_t z = 0; z < sizeof zeros / sizeof zeros[0]; z++) {
        ck_assert_int_eq(truncate(path, whole + zeros[z]), 0);
        pd_store *s2 = tu_codec_file(dir, 0, codec, PD_LEVEL_DEFAULT);
        size_t len;
        char *got = NULL;
        int rc = tu_fetch1(s2, k, &got, &len);
        ck_assert_msg(rc == 0, "%s: %lld zero bytes at the end: %s", codec,
                      (long long)zeros[z], pd_errmsg(s2));
        ck_assert_uint_eq(len, 5006);
        ck_assert_mem_eq(got, v, 5000);
        ck_assert_mem_eq(got + 5000, "second", 6);
        free(got);
        ck_assert_uint_eq(pd_encode_torn(s2), 1);
        uint64_t removed = 0;
        TU_OK(pd_encode_repair(s2, 1, &k, &removed, 0), s2);
        ck_assert_uint_eq(removed, (uint64_t)zeros[z]);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(st.st_size, whole);
        ck_assert_int_eq(pd_close(&s2), 0);
    }
    ck_assert_int_eq(pd_close(&s), 0);
    free(v);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------ Two crashes in a row */

static const char *const ALL[] = {"zlib",  "bz2", "snappy",
                                  "blosc", "lz4", "zstd"};

/* The framed bytes of one value through `codec` (over a scratch Dict). */
static unsigned char *s_framed(const char *codec, const void *v, size_t n,
                               size_t *len) {
    pd_store *d = NULL, *s = NULL;
    ck_assert_int_eq(pd_dict_open(&d), 0);
    TU_OK(pd_compress_open(&s, &d, codec, PD_LEVEL_DEFAULT, 0), NULL);
    pd_key k = PD_KEY_STR("x");
    tu_append1(s, k, v, n);
    char *raw = NULL;
    ck_assert_int_eq(tu_fetch1(pd_encode_inner(s), k, &raw, len), 0);
    ck_assert_int_eq(pd_close(&s), 0);
    return (unsigned char *)raw;
}

/* Damaged layouts made of frames f0..f3 (values 3000, 5000, 5000, 2000
 * bytes): each piece is a frame, whole or cut to `len` bytes (a writer
 * killed inside it), the next piece written after it by the next writer.
 * Every whole frame must read, in order; the cut ones are left out and
 * repair removes exactly their bytes. */
typedef struct s_piece {
    int frame;
    long len; /* -1: whole; >= 0: the first len bytes; < -1: all but -len */
} s_piece;

#define S_WHOLE (-1)
#define S_HALF (-1000000) /* half of the frame */
#define S_FIRST(n) (n)
#define S_BUT(n) (-(long)(n)-1) /* all but the last n bytes */

typedef struct s_layout {
    const char *what;
    s_piece p[5];
    int n;
    bool corrupt; /* reads as PD_ERR_CORRUPT, see below */
} s_layout;

static const s_layout LAYOUTS[] = {
    {"torn frame, then a torn tail reaching past its claim",
     {{0, S_WHOLE}, {1, S_HALF}, {2, S_BUT(1)}},
     3},
    {"frame cut 1 byte short, then a torn tail",
     {{0, S_WHOLE}, {1, S_BUT(1)}, {2, S_HALF}},
     3},
    {"header and 1 payload byte, then a torn tail",
     {{0, S_WHOLE}, {1, S_FIRST(9)}, {2, S_BUT(1)}},
     3},
    /* f1's claim ends exactly at the end of the key, and its last k <= 7
     * bytes are the start of f2's header.  A last frame that ends at the
     * end of the key and does not decode cannot be told from damage to
     * it: read as torn, a bit flip anywhere in the last frame of a zlib
     * key would silently drop that frame.  So these read as corrupt, and
     * a crash cannot make them: a write killed by SIGKILL is cut by the
     * kernel at page granularity (it copies page by page and checks for
     * fatal signals between pages), so a torn write ends on a page
     * boundary, and the next writer, starting there, cannot be cut after
     * only k < 8 bytes.  The random rounds above tear writes the same way
     * (s_tear_write). */
    {"frame cut 3 bytes short, then 3 bytes of a header: the claim ends "
     "exactly at the end of the key",
     {{0, S_WHOLE}, {1, S_BUT(3)}, {2, S_FIRST(3)}},
     3,
     true},
    {"frame cut 7 bytes short, then 7 bytes of a header",
     {{0, S_WHOLE}, {1, S_BUT(7)}, {2, S_FIRST(7)}},
     3,
     true},
    {"frame cut 5 bytes short, then 2 bytes of a header",
     {{0, S_WHOLE}, {1, S_BUT(5)}, {2, S_FIRST(2)}},
     3},
    {"two torn frames, then a whole one",
     {{0, S_WHOLE}, {1, S_HALF}, {2, S_HALF}, {3, S_WHOLE}},
     4},
    {"torn header, torn frame, whole frame",
     {{0, S_WHOLE}, {1, S_FIRST(3)}, {2, S_BUT(2)}, {3, S_WHOLE}},
     4},
    {"torn frame cut 4 short, whole frame, torn header",
     {{0, S_WHOLE}, {1, S_BUT(4)}, {3, S_WHOLE}, {2, S_FIRST(4)}},
     4},
};
#define NLAYOUTS (sizeof LAYOUTS / sizeof LAYOUTS[0])

static size_t s_piece_len(const s_piece *pc, size_t whole) {
    if (pc->len == S_WHOLE) return whole;
    if (pc->len == S_HALF) return whole / 2;
    if (pc->len < -1) return whole - (size_t)(-pc->len - 1);
    return (size_t)pc->len;
}

/* Writers killed one after another: the layouts above, for every codec. */
START_TEST(successive_torn_writes) {
    const char *codec = ALL[_i];
    const size_t nv[4] = {3000, 5000, 5000, 2000};
    unsigned char *v[4], *f[4];
    size_t fl[4];
    for (int x = 0; x < 4; x++) {
        v[x] = malloc(nv[x]);
        s_fill((uint32_t)x + 1, 0, 0, nv[x], v[x]);
        f[x] = s_framed(codec, v[x], nv[x], &fl[x]);
    }
    int failures = 0;
    char first[1024] = "", failed[128] = "";
    for (size_t l = 0; l < NLAYOUTS; l++) {
        const s_layout *ly = &LAYOUTS[l];
        size_t total = 0, cut = 0, want = 0;
        unsigned char raw[32768], exp[32768];
        for (int i = 0; i < ly->n; i++) {
            const s_piece *pc = &ly->p[i];
            size_t len = s_piece_len(pc, fl[pc->frame]);
            ck_assert(len <= fl[pc->frame] && total + len <= sizeof raw);
            memcpy(raw + total, f[pc->frame], len);
            total += len;
            if (len == fl[pc->frame]) {
                memcpy(exp + want, v[pc->frame], nv[pc->frame]);
                want += nv[pc->frame];
            } else {
                cut += len;
            }
        }
        pd_store *d = NULL, *s = NULL;
        ck_assert_int_eq(pd_dict_open(&d), 0);
        pd_key k = PD_KEY_STR("k");
        pd_bytes rv = PD_BYTES(raw, total);
        TU_OK(pd_append(d, 1, &k, &rv, 0), d);
        TU_OK(pd_compress_open(&s, &d, codec, PD_LEVEL_DEFAULT, 0), NULL);
        size_t len = 0;
        char *got = NULL;
        int rc = tu_fetch1(s, k, &got, &len);
        bool ok = rc == 0 && len == want && memcmp(got, exp, want) == 0;
        if (ly->corrupt) {
            /* Corrupt, named so, and repair leaves the key alone. */
            const char *m = pd_errmsg(s);
            ok = rc == PD_ERR_CORRUPT &&
                 strncmp(m, codec, strlen(codec)) == 0 &&
                 strstr(m, "'k'") != NULL;
            if (ok) {
                uint64_t removed = 99;
                ok =
                    pd_encode_repair(s, 1, &k, &removed, 0) == PD_ERR_CORRUPT &&
                    removed == 0;
                char *now = NULL;
                size_t nlen = 0;
                ck_assert_int_eq(tu_fetch1(pd_encode_inner(s), k, &now, &nlen),
                                 0);
                ok = ok && nlen == total && memcmp(now, raw, total) == 0;
                free(now);
            }
        }
        if (!ok && failures++ == 0)
            snprintf(first, sizeof first,
                     "%s: %s: get -> %d, %zu bytes of "
                     "%zu: %s",
                     codec, ly->what, rc, len, want,
                     ly->corrupt ? "want PD_ERR_CORRUPT naming the layer, "
                                   "the key, and repair leaving it"
                     : rc        ? pd_errmsg(s)
                                 : "wrong bytes");
        if (!ok) {
            size_t at = strlen(failed);
            snprintf(failed + at, sizeof failed - at, " %zu", l);
        }
        free(got);
        if (ok && !ly->corrupt) {
            ck_assert_msg(pd_encode_torn(s) >= 1, "%s: %s: nothing counted",
                          codec, ly->what);
            uint64_t removed = 0;
            rc = pd_encode_repair(s, 1, &k, &removed, 0);
            ck_assert_msg(rc == 0, "%s: %s: repair: %s", codec, ly->what,
                          pd_errmsg(s));
            ck_assert_msg(removed == cut,
                          "%s: %s: repair removed %llu bytes,"
                          " the torn pieces are %zu",
                          codec, ly->what, (unsigned long long)removed, cut);
            tu_expect(s, k, exp, want);
        }
        ck_assert_int_eq(pd_close(&s), 0);
    }
    for (int x = 0; x < 4; x++) {
        free(v[x]);
        free(f[x]);
    }
    ck_assert_msg(failures == 0, "%d of %zu layouts fail (#%s); first: %s",
                  failures, NLAYOUTS, failed, first);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"zero_tail", zero_tail, 2},
        {"successive_torn_writes", successive_torn_writes, 6},
    };
    return TU_RUN_CASES("test_crash_torn", cases, 300, 0);
}
