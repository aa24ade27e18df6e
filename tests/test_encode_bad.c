/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Encode and bad data: corrupt payloads and length fields, lengths past the
 * end, decompression bombs, lying sizes, codec-specific frame shapes, and
 * random damage; repair keeps what get returns.
 */
#include "encfix.h"

START_TEST(corrupt_payload) {
    t_fx fx;
    s_fx_open(&fx, s_names[_i]);
    /* A byte changed inside the second frame's payload: in the middle for
     * codecs with a checksum; snappy and blosc have none, so their length
     * fields are hit (the varint prefix, blosc's nbytes). */
    unsigned char *bad = malloc(fx.n);
    memcpy(bad, fx.raw, fx.n);
    bad[s_hit(s_names[_i], fx.ends[0], fx.ends[1])] ^= 0x10;
    s_raw_set(fx.inner, K("k"), bad, fx.n);
    s_get_fails(fx.s, K("k"), PD_ERR_CORRUPT, "'k'");
    char want[64];
    snprintf(want, sizeof want, "frame 1 at offset %zu of %zu", fx.ends[0],
             fx.n);
    ck_assert_msg(strstr(pd_errmsg(fx.s), want), "%s", pd_errmsg(fx.s));
    /* The payload of the first frame cut short, its length field matching
     * (a frame that is complete but does not decode): corrupt. */
    size_t l0 = fx.ends[0] - 8 - 7;
    memcpy(bad, fx.raw, fx.ends[0]);
    for (int j = 0; j < 8; j++) bad[j] = (unsigned char)(l0 >> (8 * j));
    s_raw_set(fx.inner, K("k"), bad, 8 + l0);
    s_get_fails(fx.s, K("k"), PD_ERR_CORRUPT, "'k'");
    ck_assert_msg(strstr(pd_errmsg(fx.s), "frame 0 at offset 0"), "%s",
                  pd_errmsg(fx.s));
    /* Garbage that is no frame of this codec at all. */
    unsigned char g[40];
    memset(g, 'g', sizeof g);
    memset(g, 0, 8);
    g[0] = 32;
    s_raw_set(fx.inner, K("k"), g, sizeof g);
    s_get_fails(fx.s, K("k"), PD_ERR_CORRUPT, "'k'");
    /* The last frame damaged: still corrupt, not a torn tail. */
    memcpy(bad, fx.raw, fx.n);
    bad[s_hit(s_names[_i], fx.ends[1], fx.ends[2])] ^= 0x08;
    s_raw_set(fx.inner, K("k"), bad, fx.n);
    s_get_fails(fx.s, K("k"), PD_ERR_CORRUPT, "'k'");
    snprintf(want, sizeof want, "frame 2 at offset %zu", fx.ends[1]);
    ck_assert_msg(strstr(pd_errmsg(fx.s), want), "%s", pd_errmsg(fx.s));
    /* A batch get with a corrupt key fails whole; other keys still read. */
    pd_key ks[] = {K("other"), K("k")};
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(fx.s, 2, ks, &r, 0), PD_ERR_CORRUPT);
    ck_assert_ptr_null(r);
    ck_assert_uint_eq(pd_encode_torn(fx.s), 0);
    free(bad);
    s_fx_close(&fx);
}
END_TEST

/* A length field made larger than the frame, with frames after: the
 * complete frame before the next one reveals it: corrupt, not torn. */
START_TEST(corrupt_length_field) {
    t_fx fx;
    s_fx_open(&fx, s_names[_i]);
    unsigned char *bad = malloc(fx.n);
    memcpy(bad, fx.raw, fx.n);
    uint64_t len = fx.ends[0] - 8 + 20; /* reaches into frame 1 */
    for (int j = 0; j < 8; j++) bad[j] = (unsigned char)(len >> (8 * j));
    s_raw_set(fx.inner, K("k"), bad, fx.n);
    s_get_fails(fx.s, K("k"), PD_ERR_CORRUPT, "'k'");
    ck_assert_msg(strstr(pd_errmsg(fx.s), "length"), "%s", pd_errmsg(fx.s));
    ck_assert_uint_eq(pd_encode_torn(fx.s), 0);
    free(bad);
    s_fx_close(&fx);
}
END_TEST

/* A length prefix larger than the data, nothing after: a torn tail. */
START_TEST(length_past_end) {
    t_fx fx;
    s_fx_open(&fx, s_names[_i]);
    unsigned char *bad = malloc(fx.n + 8);
    memcpy(bad, fx.raw, fx.n);
    /* A header claiming 2^64-1 bytes: no writer wrote that, so this is
     * corrupt data, not a torn tail. */
    memset(bad + fx.n, 0xff, 8);
    s_raw_set(fx.inner, K("k"), bad, fx.n + 8);
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(fx.s, 1, &K("k"), &r, 0), PD_ERR_CORRUPT);
    ck_assert_msg(strstr(pd_errmsg(fx.s), "past the end") &&
                      strstr(pd_errmsg(fx.s), "'k'") &&
                      strstr(pd_errmsg(fx.s), s_names[_i]),
                  "%s", pd_errmsg(fx.s));
    ck_assert_ptr_null(r);
    ck_assert_uint_eq(pd_encode_torn(fx.s), 0);
    /* A plausible header with no payload yet is a torn tail. */
    uint64_t len = 1000;
    for (int i = 0; i < 8; i++) bad[fx.n + i] = (unsigned char)(len >> (8 * i));
    s_raw_set(fx.inner, K("k"), bad, fx.n + 8);
    s_expect_vals(&fx, K("k"), 0, 3, NULL, 0);
    ck_assert_uint_eq(pd_encode_torn(fx.s), 1);
    ck_assert_msg(strstr(pd_encode_notice(fx.s), "torn tail"), "%s",
                  pd_encode_notice(fx.s));
    free(bad);
    s_fx_close(&fx);
}
END_TEST

/* Bombs: a frame decoding past the limit fails with PD_ERR_LIMIT. */
START_TEST(bomb) {
    const char *name = s_names[_i];
    pd_store *inner, *s = s_open(name, &inner);
    size_t n = 4u << 20;
    unsigned char *z = calloc(1, n);
    tu_append1(s, K("bomb"), z, n);
    tu_append1(s, K("small"), "tiny", 4);
    size_t rn;
    free(s_raw(inner, K("bomb"), &rn));
    ck_assert_msg(rn < n / 20, "[%s] %zu bytes", name, rn);
    TU_OK(pd_encode_set_limit(s, 64 << 10), s);
    s_get_fails(s, K("bomb"), PD_ERR_LIMIT, "'bomb'");
    ck_assert_msg(strstr(pd_errmsg(s), "limit"), "%s", pd_errmsg(s));
    tu_expect_str(s, K("small"), "tiny");
    /* At exactly the size: fine. */
    TU_OK(pd_encode_set_limit(s, n), s);
    tu_expect(s, K("bomb"), z, n);
    TU_OK(pd_encode_set_limit(s, n - 1), s);
    s_get_fails(s, K("bomb"), PD_ERR_LIMIT, "'bomb'");
    free(z);
    s_close2(&s, &inner);
}
END_TEST

/* Lying declared sizes are refused before anything that size is
 * allocated.  In a child whose address space is capped (when not under
 * ASan or valgrind, which need theirs), an allocation of the lie would
 * fail with PD_ERR_NOMEM instead. */
typedef struct t_lie {
    const char *codec;
    unsigned char *frame;
    size_t n;
    int want;
    uint64_t limit;    /* 0: the default */
    unsigned headroom; /* MiB of address space allowed; 0: 96 */
} t_lie;

static int t_lie_child(void *arg) {
    t_lie *l = arg;
#if !defined(__SANITIZE_ADDRESS__)
    if (!tu_under_valgrind()) {
        struct rlimit rl;
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        TU_CHECK(f && fscanf(f, "%lu", &pages) == 1, "statm");
        fclose(f);
        rl.rlim_cur = rl.rlim_max =
            (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) +
            ((rlim_t)(l->headroom ? l->headroom : 96) << 20);
        TU_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit");
    }
#endif
    pd_store *d = NULL, *s = NULL;
    TU_CHECK(pd_dict_open(&d) == 0, "dict");
    pd_store *dd = d;
    TU_CHECK(pd_compress_open(&s, &dd, l->codec, PD_LEVEL_DEFAULT, PD_BORROW) ==
                 0,
             "open");
    if (l->limit)
        TU_CHECK(pd_encode_set_limit(s, l->limit) == 0, "limit: %s",
                 pd_errmsg(s));
    pd_key k = K("liar");
    pd_bytes v = {l->frame, l->n};
    TU_CHECK(pd_append(d, 1, &k, &v, 0) == 0, "raw append");
    pd_result *r = NULL;
    int rc = pd_get(s, 1, &k, &r, 0);
    TU_CHECK(rc == l->want, "[%s] get -> %d, want %d: %s", l->codec, rc,
             l->want, pd_errmsg(s));
    TU_CHECK(strstr(pd_errmsg(s), "'liar'"), "message: %s", pd_errmsg(s));
    pd_close(&s);
    pd_close(&d);
    return 0;
}

static void s_lie_in(const char *codec, unsigned char *frame, size_t n,
                     int want, uint64_t limit, unsigned headroom) {
    t_lie l = {codec, frame, n, want, limit, headroom};
    char msg[2048];
    int st = tu_child_wait(tu_child_spawn(t_lie_child, &l, NULL, 0), msg,
                           sizeof msg);
    ck_assert_msg(st == 0, "%s: %s", codec, msg);
}

static void s_lie(const char *codec, unsigned char *frame, size_t n, int want) {
    s_lie_in(codec, frame, n, want, 0, 0);
}

/* The frame (header + payload) one value encodes to. */
static unsigned char *s_one_frame(const char *codec, const void *v, size_t vn,
                                  size_t *n) {
    pd_store *inner, *s = s_open(codec, &inner);
    pd_bytes b = {v, vn};
    unsigned char *f = s_frames(s, inner, 1, &b, n, NULL);
    s_close2(&s, &inner);
    return f;
}

START_TEST(lying_sizes) {
    size_t n;
    const uint64_t lie = 900u << 20; /* under the default 1 GiB limit */

    /* snappy: the varint prefix. */
    unsigned char *v = s_bytes(5000, 20, true);
    unsigned char *f = s_one_frame("snappy", v, 5000, &n);
    unsigned char *g = malloc(n + 8);
    /* Rewrite the varint (2 bytes for 5000) as a 5-byte one for the lie. */
    size_t pl = n - 8 - 2;
    uint64_t L = pl + 5;
    for (int j = 0; j < 8; j++) g[j] = (unsigned char)(L >> (8 * j));
    uint64_t x = lie;
    for (int j = 0; j < 5; j++, x >>= 7)
        g[8 + j] = (unsigned char)((x & 0x7f) | (j < 4 ? 0x80 : 0));
    memcpy(g + 13, f + 10, pl);
    s_lie("snappy", g, 13 + pl, PD_ERR_CORRUPT);
    /* Within what the block could hold but over the limit: PD_ERR_LIMIT
     * (checked with a small limit in-process). */
    free(f);
    free(g);

    /* blosc: nbytes in the header (bytes 4..7). */
    f = s_one_frame("blosc", v, 5000, &n);
    uint32_t lb = (uint32_t)lie;
    for (int j = 0; j < 4; j++) f[8 + 4 + j] = (unsigned char)(lb >> (8 * j));
    s_lie("blosc", f, n, PD_ERR_CORRUPT);
    free(f);

    /* zstd: the frame content size (4-byte field for 70000 bytes). */
    unsigned char *w = s_bytes(70000, 21, true);
    f = s_one_frame("zstd", w, 70000, &n);
    unsigned fhd = f[8 + 4];
    ck_assert_uint_eq(fhd >> 6, 2); /* FCS field: 4 bytes */
    size_t at = 8 + 5 + ((fhd & 0x20) ? 0 : 1) +
                ((fhd & 3) ? 1u << ((fhd & 3) - 1) : 0);
    uint32_t got = (uint32_t)f[at] | (uint32_t)f[at + 1] << 8 |
                   (uint32_t)f[at + 2] << 16 | (uint32_t)f[at + 3] << 24;
    ck_assert_uint_eq(got, 70000);
    for (int j = 0; j < 4; j++) f[at + j] = (unsigned char)(lb >> (8 * j));
    /* The frame is single-segment: its window is its content size, which
     * zstd would allocate to stream it; more than the window the limit
     * allows (128 MiB at most), so refused as PD_ERR_LIMIT. */
    s_lie("zstd", f, n, PD_ERR_LIMIT);
    free(f);

    /* lz4: the content size (8 bytes after FLG/BD), header checksum
     * recomputed so only the size lies. */
    f = s_one_frame("lz4", w, 70000, &n);
    ck_assert(f[8 + 4] & 0x08);
    for (int j = 0; j < 8; j++) f[8 + 6 + j] = (unsigned char)(lie >> (8 * j));
    f[8 + 14] = (unsigned char)((XXH32(f + 8 + 4, 10, 0) >> 8) & 0xff);
    s_lie("lz4", f, n, PD_ERR_CORRUPT);
    /* A smaller lie the frame could encode: decoded, found wrong. */
    uint64_t small = 3 * 70000;
    for (int j = 0; j < 8; j++)
        f[8 + 6 + j] = (unsigned char)(small >> (8 * j));
    f[8 + 14] = (unsigned char)((XXH32(f + 8 + 4, 10, 0) >> 8) & 0xff);
    s_lie("lz4", f, n, PD_ERR_CORRUPT);
    free(f);
    free(w);
    free(v);

    /* Over the limit but plausible: PD_ERR_LIMIT for every codec that
     * states sizes, before decoding. */
    for (int i = 2; i < NCODECS; i++) {
        pd_store *inner, *s = s_open(s_names[i], &inner);
        unsigned char *z = calloc(1, 100000);
        tu_append1(s, K("k"), z, 100000);
        TU_OK(pd_encode_set_limit(s, 99999), s);
        s_get_fails(s, K("k"), PD_ERR_LIMIT, "'k'");
        ck_assert_msg(strstr(pd_errmsg(s), "100000"), "%s", pd_errmsg(s));
        free(z);
        s_close2(&s, &inner);
    }
}
END_TEST

/* zstd: the window a frame header asks for is what the streaming decoder
 * allocates; it is bounded by the limit (rounded up to a power of two, at
 * least 1 MiB, at most 128 MiB), on every path: a frame needing more fails
 * with PD_ERR_LIMIT before anything that size is allocated (checked in a
 * child whose address space has 32 MiB to spare, where a 64 MiB window
 * could not be had), whole or as a torn tail. */
START_TEST(zstd_window_bound) {
    size_t vn = 5000, cap = 8192;
    unsigned char *v = s_bytes(vn, 30, false), *c = malloc(cap + 8);
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(zc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(zc, ZSTD_c_windowLog, 26); /* 64 MiB */
    /* In two calls, so that zstd does not know the size and keeps the
     * window asked for. */
    ZSTD_inBuffer ib = {v, vn / 2, 0};
    ZSTD_outBuffer ob = {c + 8, cap, 0};
    ZSTD_compressStream2(zc, &ob, &ib, ZSTD_e_continue);
    ck_assert_uint_eq(ib.pos, vn / 2);
    ib.size = vn;
    ck_assert_uint_eq(ZSTD_compressStream2(zc, &ob, &ib, ZSTD_e_end), 0);
    ZSTD_freeCCtx(zc);
    size_t cn = ob.pos;
    ck_assert_uint_eq(c[8 + 4] & 0x20, 0); /* a window descriptor */
    ck_assert_uint_eq(c[8 + 5], (26 - 10) << 3);
    for (int j = 0; j < 8; j++) c[j] = (unsigned char)((uint64_t)cn >> (8 * j));

    /* Within the default limit it reads. */
    pd_store *inner, *s = s_open("zstd", &inner);
    s_raw_set(inner, K("k"), c, 8 + cn);
    tu_expect(s, K("k"), v, vn);
    /* 64 MiB - 1 rounds up to 64 MiB: allowed; 32 MiB is not. */
    TU_OK(pd_encode_set_limit(s, ((uint64_t)64 << 20) - 1), s);
    tu_expect(s, K("k"), v, vn);
    TU_OK(pd_encode_set_limit(s, (uint64_t)32 << 20), s);
    s_get_fails(s, K("k"), PD_ERR_LIMIT, "'k'");
    ck_assert_msg(strstr(pd_errmsg(s), "window of 67108864"), "%s",
                  pd_errmsg(s));
    s_close2(&s, &inner);

    /* Small limit, little memory: refused, not allocated. */
    s_lie_in("zstd", c, 8 + cn, PD_ERR_LIMIT, 64 << 10, 32);
    /* As a torn tail after a good frame: no torn tail this layer would
     * write (its prefix needs the window), so corrupt; nothing allocated. */
    size_t gn;
    unsigned char *good = s_one_frame("zstd", "good", 4, &gn);
    unsigned char *both = malloc(gn + 8 + cn);
    memcpy(both, good, gn);
    memcpy(both + gn, c, 8 + cn / 2);
    s_lie_in("zstd", both, gn + 8 + cn / 2, PD_ERR_CORRUPT, 64 << 10, 32);
    free(both);
    free(good);
    free(c);
    free(v);
}
END_TEST

/* lz4 frames of every shape LZ4F writes (block sizes, linked or
 * independent blocks, block and content checksums, incompressible blocks
 * stored raw, with or without a content size) read back; damage to a
 * frame decoded straight into the result (it states its size) is caught
 * as LZ4F would catch it. */
START_TEST(lz4_frame_shapes) {
    pd_store *inner, *s = s_open("lz4", &inner);
    size_t n = s_small() ? 300000 : 1200000;
    unsigned char *text = s_bytes(n, 50, false), *rnd = s_bytes(n, 51, true);
    size_t cap = LZ4F_compressFrameBound(n, NULL) + (1 << 20);
    unsigned char *c = malloc(cap);
    const size_t sizes[] = {0, 1, 1000, 65536, 65537, 300000, n};
    int shapes = 0;
    for (int bid = LZ4F_max64KB; bid <= LZ4F_max4MB; bid++)
        for (int mode = 0; mode < 8; mode++)
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                size_t vn = sizes[si];
                const unsigned char *v = (mode & 4) ? rnd : text;
                LZ4F_preferences_t pr;
                memset(&pr, 0, sizeof pr);
                pr.frameInfo.blockSizeID = (LZ4F_blockSizeID_t)bid;
                pr.frameInfo.blockMode =
                    (mode & 1) ? LZ4F_blockIndependent : LZ4F_blockLinked;
                pr.frameInfo.blockChecksumFlag = (mode & 2)
                                                     ? LZ4F_blockChecksumEnabled
                                                     : LZ4F_noBlockChecksum;
                pr.frameInfo.contentChecksumFlag =
                    (si % 2) ? LZ4F_contentChecksumEnabled
                             : LZ4F_noContentChecksum;
                pr.frameInfo.contentSize = (si + (size_t)mode) % 3 ? vn : 0;
                size_t cn = LZ4F_compressFrame(c, cap, v, vn, &pr);
                ck_assert(!LZ4F_isError(cn));
                s_put_frame(inner, K("k"), c, cn);
                tu_expect(s, K("k"), v, vn);
                shapes++;
                if (vn < 1000 || !pr.frameInfo.contentSize ||
                    !(pr.frameInfo.contentChecksumFlag ||
                      pr.frameInfo.blockChecksumFlag))
                    continue;
                /* A flipped byte in the middle of the blocks. */
                c[cn / 2] ^= 0x10;
                s_put_frame(inner, K("k"), c, cn);
                s_get_fails(s, K("k"), PD_ERR_CORRUPT, "'k'");
                c[cn / 2] ^= 0x10;
                /* Bytes after the frame; the frame cut before its end. */
                memcpy(c + cn, "\0\0\0\0", 4);
                s_put_frame(inner, K("k"), c, cn + 4);
                s_get_fails(s, K("k"), PD_ERR_CORRUPT, "'k'");
                s_put_frame(inner, K("k"), c, cn - 1);
                s_get_fails(s, K("k"), PD_ERR_CORRUPT, "'k'");
            }
    ck_assert_int_eq(shapes, 4 * 8 * 7);
    /* A stated size one byte short or long: corrupt. */
    LZ4F_preferences_t pr;
    memset(&pr, 0, sizeof pr);
    for (int d = -1; d <= 1; d += 2) {
        pr.frameInfo.contentSize = 5000;
        size_t cn = LZ4F_compressFrame(c, cap, text, 5000, &pr);
        ck_assert(!LZ4F_isError(cn) && (c[4] & 0x08));
        uint64_t lie = (uint64_t)(5000 + d);
        for (int j = 0; j < 8; j++) c[6 + j] = (unsigned char)(lie >> (8 * j));
        c[14] = (unsigned char)((XXH32(c + 4, 10, 0) >> 8) & 0xff);
        s_put_frame(inner, K("k"), c, cn);
        s_get_fails(s, K("k"), PD_ERR_CORRUPT, "'k'");
    }
    free(c);
    free(text);
    free(rnd);
    s_close2(&s, &inner);
}
END_TEST

/* What a decoder says of the size its input declares: more than the input
 * can encode (PD_ERR_CORRUPT), over the sink's room (PD_ERR_LIMIT), or
 * nothing when it fits. */
START_TEST(size_claims) {
    pd_result *r = pd__result_new(0, 0);
    ck_assert_ptr_nonnull(r);
    pd_sink sk;
    pd__sink_init(&sk, r, 1000);
    ck_assert_int_eq(pd__sink_check_claim(&sk, "lz4", "frame", 10, 5000, 4096),
                     PD_ERR_CORRUPT);
    ck_assert_str_eq(sk.reason, "lz4: frame of 10 bytes declares 5000 decoded "
                                "bytes, more than it can encode");
    pd__sink_init(&sk, r, 1000);
    ck_assert_int_eq(
        pd__sink_check_claim(&sk, "snappy", "block", 10, 2000, 4096),
        PD_ERR_LIMIT);
    ck_assert_str_eq(sk.reason, "snappy block declares 2000 decoded bytes, "
                                "over the limit of 1000");
    pd__sink_init(&sk, r, 1000);
    ck_assert_int_eq(
        pd__sink_check_claim(&sk, "snappy", "block", 10, 1000, 4096), 0);
    ck_assert_str_eq(sk.reason, "");
    pd_result_free(&r);
}
END_TEST

/* The snappy prefix check (it proves torn frames): every prefix of a real
 * block passes; a literal or copy past the declared length, a copy
 * reaching before the start, a block complete before its claim, or a
 * declared length over the limit does not. */
START_TEST(snappy_prefix) {
    const pd__codec_ext *x = &pd__codec_snappy;
    ck_assert_ptr_nonnull(x->prefix);
    pd_result *r = pd__result_new(0, 0);
    pd_sink sk;
#define PFX(p, n, claimed, lim)                                                \
    (pd__sink_init(&sk, r, (lim)),                                             \
     x->prefix(NULL, (const unsigned char *)(p), (n), (claimed), &sk))
    size_t vn = 20000, fn;
    unsigned char *v = s_bytes(vn, 60, false);
    unsigned char *f = s_one_frame("snappy", v, vn, &fn);
    const unsigned char *b = f + 8;
    size_t bn = fn - 8;
    for (size_t i = 0; i < bn; i++)
        ck_assert_msg(PFX(b, i, bn, SIZE_MAX) == 0, "prefix of %zu of %zu", i,
                      bn);
    /* the whole block, claimed longer: it ends before its frame does */
    ck_assert_int_eq(PFX(b, bn, bn + 1, SIZE_MAX), PD_ERR_CORRUPT);
    /* the length over the limit; over what the claim can encode */
    ck_assert_int_eq(PFX(b, 10, bn, vn - 1), PD_ERR_LIMIT);
    ck_assert_int_eq(PFX(b, 10, 100, SIZE_MAX), PD_ERR_CORRUPT);
    /* hand-made blocks: length 10 */
    static const unsigned char lit_ok[] = {10, 4 << 2, 'a', 'b', 'c', 'd', 'e'};
    ck_assert_int_eq(PFX(lit_ok, sizeof lit_ok, 100, SIZE_MAX), 0);
    ck_assert_int_eq(PFX(lit_ok, 3, 100, SIZE_MAX), 0); /* literal cut */
    static const unsigned char lit_long[] = {10, 10 << 2, 'a'}; /* 11 > 10 */
    ck_assert_int_eq(PFX(lit_long, sizeof lit_long, 100, SIZE_MAX),
                     PD_ERR_CORRUPT);
    static const unsigned char lit60[] = {10, 60 << 2}; /* length byte cut */
    ck_assert_int_eq(PFX(lit60, sizeof lit60, 100, SIZE_MAX), 0);
    /* copy-1 of 4 at offset 2 after 2 literal bytes: fine; offset 3: no */
    static const unsigned char cp_ok[] = {10, 1 << 2, 'a', 'b', 1, 2};
    ck_assert_int_eq(PFX(cp_ok, sizeof cp_ok, 100, SIZE_MAX), 0);
    static const unsigned char cp_far[] = {10, 1 << 2, 'a', 'b', 1, 3};
    ck_assert_int_eq(PFX(cp_far, sizeof cp_far, 100, SIZE_MAX), PD_ERR_CORRUPT);
    static const unsigned char cp_zero[] = {10, 1 << 2, 'a', 'b', 2, 0, 0};
    ck_assert_int_eq(PFX(cp_zero, sizeof cp_zero, 100, SIZE_MAX),
                     PD_ERR_CORRUPT);
    static const unsigned char cp_first[] = {10, 2, 1, 0}; /* nothing yet */
    ck_assert_int_eq(PFX(cp_first, sizeof cp_first, 100, SIZE_MAX),
                     PD_ERR_CORRUPT);
    ck_assert_int_eq(PFX(cp_first, 2, 100, SIZE_MAX), 0); /* offset cut */
    /* copy-2 of 9 (8 + 2 > 10) */
    static const unsigned char cp_long[] = {10,         1 << 2, 'a', 'b',
                                            8 << 2 | 2, 1,      0};
    ck_assert_int_eq(PFX(cp_long, sizeof cp_long, 100, SIZE_MAX),
                     PD_ERR_CORRUPT);
    /* a varint cut short, and one too long */
    static const unsigned char vi[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    ck_assert_int_eq(PFX(vi, 3, 100, SIZE_MAX), 0);
    ck_assert_int_eq(PFX(vi, sizeof vi, 1u << 30, SIZE_MAX), PD_ERR_CORRUPT);
#undef PFX
    pd_result_free(&r);
    free(f);
    free(v);
}
END_TEST

/* Reads key "k" of `inner` through a fresh layer of `codec` with `limit`,
 * checks repair keeps exactly what get returns: when get succeeds, repair
 * succeeds, removes bytes iff something was left out, and the key then
 * reads the same with nothing left out; when get fails, repair fails and
 * leaves the bytes as they were.  Returns get's code. */
static int s_repair_same(const char *codec, pd_store *inner, uint64_t limit,
                         const char *what) {
    pd_key k = K("k");
    pd_store *s = NULL, *in = inner;
    TU_OK(pd_compress_open(&s, &in, codec, PD_LEVEL_DEFAULT, PD_BORROW), NULL);
    TU_OK(pd_encode_set_limit(s, limit), s);
    size_t rn, gn = 0;
    unsigned char *raw = s_raw(inner, k, &rn);
    char *got = NULL;
    int rc = tu_fetch1(s, k, &got, &gn);
    uint64_t torn = pd_encode_torn(s), removed = 99;
    int rrc = pd_encode_repair(s, 1, &k, &removed, 0);
    if (rc == 0) {
        ck_assert_msg(rrc == 0, "[%s] %s: repair: %s", codec, what,
                      pd_errmsg(s));
        ck_assert_msg(torn ? removed > 0 : removed == 0,
                      "[%s] %s: %llu left out, repair removed %llu", codec,
                      what, (unsigned long long)torn,
                      (unsigned long long)removed);
        TU_OK(pd_close(&s), NULL);
        in = inner;
        TU_OK(pd_compress_open(&s, &in, codec, PD_LEVEL_DEFAULT, PD_BORROW),
              NULL);
        TU_OK(pd_encode_set_limit(s, limit), s);
        size_t an;
        char *again = NULL;
        int arc = tu_fetch1(s, k, &again, &an);
        ck_assert_msg(arc == 0 && an == gn &&
                          (gn == 0 || !memcmp(again, got, gn)),
                      "[%s] %s: reads differently after repair (%d, %zu "
                      "bytes, was %zu)",
                      codec, what, arc, an, gn);
        ck_assert_msg(pd_encode_torn(s) == 0, "[%s] %s: after repair: %s",
                      codec, what, pd_encode_notice(s));
        free(again);
    } else {
        ck_assert_msg(rrc != 0, "[%s] %s: get fails (%d), repair does not",
                      codec, what, rc);
        size_t nn;
        unsigned char *now = s_raw(inner, k, &nn);
        ck_assert_msg(nn == rn && (rn == 0 || !memcmp(now, raw, rn)),
                      "[%s] %s: a failed repair changed the key", codec, what);
        free(now);
    }
    free(got);
    free(raw);
    TU_OK(pd_close(&s), NULL);
    return rc;
}

/* Fuzz findings: repair kept another set of frames than get returned.
 * snappy: a frame, then 8 zero bytes (a zero tail: the frame is kept);
 * blosc: see the seed of the same name in tests/fuzz/corpus. */
START_TEST(repair_keeps_what_get_returns) {
    pd_store *inner = NULL;
    ck_assert_int_eq(pd_dict_open(&inner), 0);
    static const unsigned char sn[] = {3, 0, 0, 0, 0, 0, 0, 0, 1, 0,
                                       0, 0, 0, 0, 0, 0, 0, 0, 0};
    s_raw_set(inner, K("k"), sn, sizeof sn);
    ck_assert_int_eq(s_repair_same("snappy", inner, 64, "zero tail"), 0);
    size_t n;
    unsigned char *now = s_raw(inner, K("k"), &n);
    ck_assert_uint_eq(n, 11); /* the 8 zeros removed, the frame kept */
    ck_assert_mem_eq(now, sn, 11);
    free(now);
    static const unsigned char bl[] = {
        0x82, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x13, 0x08,
        0x72, 0x00, 0x00, 0x00, 0x70, 0x00, 0x00, 0x00, 0x82, 0x00, 0x00, 0x00,
        0x70, 0x61, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,
        0x50, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x13, 0x08,
        0x40, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x17, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xcb, 0xca, 0x36,
        0x3b, 0x3c, 0x42, 0x00, 0x00, 0x00, 0x0f, 0x3b, 0x3c, 0xcb, 0xca, 0x36,
        0x3b, 0x3c, 0x5e, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x0f, 0x3b, 0x3c, 0x3c, 0x42, 0x5a, 0x68, 0xcf, 0xce, 0xcd, 0xcc, 0xcb,
        0xca, 0x36, 0x3b, 0x3c, 0x5e, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x3c};
    s_raw_set(inner, K("k"), bl, sizeof bl);
    s_repair_same("blosc", inner, 1024, "fuzz seed");
    TU_OK(pd_close(&inner), NULL);
}
END_TEST

/* Random damage: flipped, cut and inserted bytes.  A get either fails with
 * PD_ERR_CORRUPT or PD_ERR_LIMIT naming the layer and key, or returns;
 * it never crashes; other keys stay readable. */
START_TEST(random_corruption) {
    t_fx fx;
    s_fx_open(&fx, s_names[_i]);
    TU_OK(pd_encode_set_limit(fx.s, 1 << 20), fx.s);
    int rounds = s_small() ? 40 : 400;
    uint32_t x = 88172645u + (uint32_t)_i;
#define RND() (x ^= x << 13, x ^= x >> 17, x ^= x << 5, x)
    unsigned char *buf = malloc(fx.n + 64);
    int ok = 0, failed = 0;
    for (int r = 0; r < rounds; r++) {
        size_t n = fx.n;
        memcpy(buf, fx.raw, n);
        int edits = 1 + (int)(RND() % 3);
        for (int e = 0; e < edits; e++) {
            size_t pos = RND() % n;
            switch (RND() % 4) {
            case 0: buf[pos] ^= (unsigned char)(1u << (RND() % 8)); break;
            case 1: buf[pos] = (unsigned char)RND(); break;
            case 2: n = pos + 1; break; /* cut */
            default: {
                size_t k = 1 + RND() % 16;
                memmove(buf + pos + k, buf + pos, n - pos);
                for (size_t j = 0; j < k; j++)
                    buf[pos + j] = (unsigned char)RND();
                n += k;
                if (n > fx.n + 32) n = fx.n + 32;
            }
            }
        }
        s_raw_set(fx.inner, K("k"), buf, n);
        pd_key k = K("k");
        pd_result *res = NULL;
        int rc = pd_get(fx.s, 1, &k, &res, 0);
        /* Every few rounds (on a copy): repair keeps what get returns. */
        if (r % 4 == 0) {
            pd_store *d2 = NULL;
            ck_assert_int_eq(pd_dict_open(&d2), 0);
            s_raw_set(d2, k, buf, n);
            char what[32];
            snprintf(what, sizeof what, "round %d", r);
            ck_assert_int_eq(s_repair_same(s_names[_i], d2, 1 << 20, what), rc);
            TU_OK(pd_close(&d2), NULL);
        }
        if (rc == 0) {
            ok++;
            pd_result_free(&res);
        } else {
            failed++;
            ck_assert_msg(rc == PD_ERR_CORRUPT || rc == PD_ERR_LIMIT,
                          "[%s] round %d: %d %s", s_names[_i], r, rc,
                          pd_errmsg(fx.s));
            const char *m = pd_errmsg(fx.s);
            ck_assert_msg(strncmp(m, s_names[_i], strlen(s_names[_i])) == 0 &&
                              strstr(m, "'k'"),
                          "%s", m);
        }
        if (r % 50 == 0) tu_expect_str(fx.s, K("other"), "intact");
    }
#undef RND
    /* Codecs with a checksum notice damage; snappy and blosc may not. */
    if (strcmp(s_names[_i], "snappy") && strcmp(s_names[_i], "blosc"))
        ck_assert_int_gt(failed, 0);
    (void)ok;
    free(buf);
    s_fx_close(&fx);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"corrupt_payload", corrupt_payload, NCODECS},
        {"corrupt_length_field", corrupt_length_field, NCODECS},
        {"length_past_end", length_past_end, NCODECS},
        {"bomb", bomb, NCODECS},
        {"lying_sizes", lying_sizes},
        {"zstd_window_bound", zstd_window_bound},
        {"lz4_frame_shapes", lz4_frame_shapes},
        {"snappy_prefix", snappy_prefix},
        {"size_claims", size_claims},
        {"repair_keeps_what_get_returns", repair_keeps_what_get_returns},
        {"random_corruption", random_corruption, NCODECS},
    };
    return TU_RUN_CASES("test_encode_bad", cases, 300, 0);
}
