/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Encode and torn frames: a tail cut at every offset, a torn middle,
 * successive crashes, a zero-filled tail, and their repair.
 */
#include "encfix.h"

/* ---------------------------------------------------------- Torn frames */

/* The last frame cut at every offset: the earlier frames read, the cut one
 * is left out and counted. */
START_TEST(torn_tail_every_offset) {
    t_fx fx;
    s_fx_open(&fx, s_names[_i]);
    size_t step = s_small() ? 37 : 1;
    uint64_t torn = 0;
    for (size_t cut = fx.ends[1]; cut < fx.n; cut += step) {
        s_raw_set(fx.inner, K("k"), fx.raw, cut);
        s_expect_vals(&fx, K("k"), 0, 2, NULL, 0);
        if (cut > fx.ends[1]) {
            torn++;
            ck_assert_uint_eq(pd_encode_torn(fx.s), torn);
            ck_assert_msg(strstr(pd_encode_notice(fx.s), "torn tail") ||
                              strstr(pd_encode_notice(fx.s), "zero-filled"),
                          "%s", pd_encode_notice(fx.s));
        }
    }
    /* The middle frame (70000 bytes of mostly-letters) cut at a few points:
     * only the first value reads. */
    for (size_t cut = fx.ends[0] + 1; cut < fx.ends[1]; cut += 997) {
        s_raw_set(fx.inner, K("k"), fx.raw, cut);
        s_expect_vals(&fx, K("k"), 0, 1, NULL, 0);
    }
    char want[128];
    snprintf(want, sizeof want, "%s: get 'k': left out a torn tail of",
             s_names[_i]);
    ck_assert_msg(strstr(pd_encode_notice(fx.s), want), "%s",
                  pd_encode_notice(fx.s));
    s_fx_close(&fx);
}
END_TEST

/* A torn frame followed by more appends, in the middle of a key, twice. */
START_TEST(torn_middle) {
    t_fx fx;
    s_fx_open(&fx, s_names[_i]);
    size_t f1 = fx.ends[1] - fx.ends[0]; /* frame 1's size */
    size_t f2 = fx.n - fx.ends[1];
    const unsigned char *r = fx.raw, *r1 = r + fx.ends[0], *r2 = r + fx.ends[1];
    /* what reads after frame 0: value 2, twice */
    unsigned char *v2v2 = malloc(2 * fx.sizes[2]);
    memcpy(v2v2, fx.vals[2], fx.sizes[2]);
    memcpy(v2v2 + fx.sizes[2], fx.vals[2], fx.sizes[2]);
    size_t cuts[] = {1, 5, 8, 9, 20, f1 / 2, f1 - 1};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        /* frame0, frame1 cut at cuts[c], frame2, frame1 cut again, frame2 */
        size_t cut = cuts[c], cut2 = f1 - cuts[c];
        pd_bytes pc[] = {
            {r, fx.ends[0]}, {r1, cut}, {r2, f2}, {r1, cut2}, {r2, f2}};
        uint64_t torn = s_torn_read(&fx, 5, pc, 1, v2v2, 2 * fx.sizes[2]);
        ck_assert_msg(torn == 2, "[%s] cut %zu: %llu torn frames counted",
                      s_names[_i], cut, (unsigned long long)torn);
        char want[64];
        snprintf(want, sizeof want, "torn frame of %zu bytes", cut2);
        ck_assert_msg(strstr(pd_encode_notice(fx.s), want), "cut %zu: %s", cut,
                      pd_encode_notice(fx.s));
    }
    /* A torn frame, then a later batch, then a torn tail: both left out. */
    pd_bytes later[] = {{r, fx.ends[1] - 10}, {r2, f2}, {r, 30}};
    ck_assert_uint_eq(s_torn_read(&fx, 3, later, 1, fx.vals[2], fx.sizes[2]),
                      2);
    free(v2v2);
    s_fx_close(&fx);
}
END_TEST

/* Writers killed one after another: a torn frame, then a torn tail; two
 * torn frames, then a whole one beyond the first one's claim.  Each torn
 * frame proves itself by a payload prefix the codec accepts (snappy's by
 * walking its elements). */
START_TEST(successive_crashes) {
    t_fx fx;
    s_fx_open(&fx, s_names[_i]);
    size_t f0 = fx.ends[0], f1 = fx.ends[1] - fx.ends[0],
           f2 = fx.n - fx.ends[1];
    const unsigned char *r = fx.raw;
    /* f0, f1 cut in half, f1 again all but its last byte (a torn tail). */
    pd_bytes tail[] = {{r, f0}, {r + f0, f1 / 2}, {r + f0, f1 - 1}};
    s_torn_read(&fx, 3, tail, 1, NULL, 0);
    ck_assert_uint_eq(pd_encode_torn(fx.s), 2);
    /* f0, f1 cut to 40 bytes, f1 cut in half, f2 whole: f2 lies beyond
     * the first torn frame's claim. */
    pd_bytes beyond[] = {
        {r, f0}, {r + f0, 40}, {r + f0, f1 / 2}, {r + fx.ends[1], f2}};
    /* (When f2 lies inside the first torn frame's claim too, the two torn
     * pieces may be left out as one region.) */
    ck_assert_uint_ge(s_torn_read(&fx, 4, beyond, 1, fx.vals[2], fx.sizes[2]),
                      1);
    s_fx_close(&fx);
}
END_TEST

START_TEST(zero_tail) {
    t_fx fx;
    s_fx_open(&fx, s_names[_i]);
    unsigned char *buf = calloc(1, fx.n + 2 * 4096 + 600);
    /* A tail of zeros (a file extended without its data). */
    memcpy(buf, fx.raw, fx.n);
    s_raw_set(fx.inner, K("k"), buf, fx.n + 4096);
    s_expect_vals(&fx, K("k"), 0, 3, NULL, 0);
    ck_assert_uint_eq(pd_encode_torn(fx.s), 1);
    ck_assert_msg(strstr(pd_encode_notice(fx.s), "zero-filled tail of 4096"),
                  "%s", pd_encode_notice(fx.s));
    /* Fewer than 8 zero bytes. */
    s_raw_set(fx.inner, K("k"), buf, fx.n + 3);
    s_expect_vals(&fx, K("k"), 0, 3, NULL, 0);
    ck_assert_uint_eq(pd_encode_torn(fx.s), 2);
    /* Zeros in the middle, then a later append. */
    memset(buf, 0, fx.n + 4096);
    memcpy(buf, fx.raw, fx.ends[0]);
    memcpy(buf + fx.ends[0] + 500, fx.raw + fx.ends[1], fx.n - fx.ends[1]);
    s_raw_set(fx.inner, K("k"), buf, fx.ends[0] + 500 + fx.n - fx.ends[1]);
    size_t wn = fx.sizes[0] + fx.sizes[2];
    unsigned char *w = malloc(wn);
    memcpy(w, fx.vals[0], fx.sizes[0]);
    memcpy(w + fx.sizes[0], fx.vals[2], fx.sizes[2]);
    tu_expect(fx.s, K("k"), w, wn);
    ck_assert_uint_eq(pd_encode_torn(fx.s), 3);
    free(w);
    /* A key of zeros only reads as empty. */
    memset(buf, 0, 600);
    s_raw_set(fx.inner, K("k"), buf, 600);
    tu_expect_str(fx.s, K("k"), "");
    free(buf);
    s_fx_close(&fx);
}
END_TEST

START_TEST(repair) {
    const char *name = s_names[_i];
    char *dir = tu_mkdtemp();
    pd_store *s = tu_codec_file(dir, 0, name, PD_LEVEL_DEFAULT);
    pd_store *inner = pd_encode_inner(s);
    unsigned char *a = s_bytes(5000, 30, false), *b = s_bytes(3000, 31, true);
    pd_bytes vs[2] = {{a, 5000}, {b, 3000}};
    size_t n, ends[2];
    unsigned char *fr = s_frames(s, inner, 2, vs, &n, ends);
    /* "torn": frame a, frame b cut, frame a, then a cut tail of b. */
    size_t fb = n - ends[0];
    pd_bytes pc[] = {{fr, ends[0]},
                     {fr + ends[0], fb / 2},
                     {fr, ends[0]},
                     {fr + ends[0], 11}};
    s_raw_pieces(inner, K("torn"), 4, pc);
    tu_append1(s, K("clean"), a, 5000);
    /* "bad": corrupt, not torn. */
    unsigned char *buf = malloc(n);
    memcpy(buf, fr, n);
    buf[s_hit(name, 0, ends[0])] ^= 0x10;
    s_raw_set(inner, K("bad"), buf, n);

    unsigned char *w = malloc(10000);
    memcpy(w, a, 5000);
    memcpy(w + 5000, a, 5000);
    tu_expect(s, K("torn"), w, 10000);
    ck_assert_uint_eq(pd_encode_torn(s), 2);

    pd_key ks[] = {K("clean"), K("torn"), K("bad"), K("missing")};
    uint64_t removed = 99;
    int rc = pd_encode_repair(s, 4, ks, &removed, 0);
    ck_assert_int_eq(rc, PD_ERR_CORRUPT);
    ck_assert_msg(strstr(pd_errmsg(s), "'bad'"), "%s", pd_errmsg(s));
    ck_assert_uint_eq(removed, fb / 2 + 11);
    /* The torn key was rewritten anyway; the bad one left as it was. */
    tu_expect(s, K("torn"), w, 10000);
    ck_assert_uint_eq(pd_encode_torn(s), 2);
    ck_assert_int_eq(tu_listed_size(s, K("torn")), (long long)(2 * ends[0]));
    size_t bn;
    unsigned char *braw = s_raw(inner, K("bad"), &bn);
    ck_assert(bn == n && memcmp(braw, buf, n) == 0);
    free(braw);
    /* A second repair finds nothing to do. */
    TU_OK(pd_encode_repair(s, 2, ks, &removed, PD_FSYNC), s);
    ck_assert_uint_eq(removed, 0);
    tu_expect(s, K("clean"), a, 5000);
    /* Inside a lock section, with PD_NOLOCK. */
    s_raw_set(inner, K("torn"), fr, ends[0] + 3);
    TU_OK(pd_lock(s), s);
    TU_OK(pd_encode_repair(s, 1, &ks[1], &removed, PD_NOLOCK), s);
    TU_OK(pd_unlock(s), s);
    ck_assert_uint_eq(removed, 3);
    TU_OK(pd_close(&s), NULL);
    free(w);
    free(buf);
    free(fr);
    free(a);
    free(b);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"torn_tail_every_offset", torn_tail_every_offset},
        {"torn_middle", torn_middle},
        {"successive_crashes", successive_crashes},
        {"zero_tail", zero_tail},
        {"repair", repair},
    };
    return TU_RUN_CASES("test_encode_torn", cases, 300, NCODECS);
}
