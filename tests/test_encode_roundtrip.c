/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Encode: round trips through the six codecs and their levels, the builtin
 * table, custom codecs, and the pass-through operations (frame splitting
 * included).
 */
#include "encfix.h"

/* -------------------------------------------------------- Round trips */

START_TEST(roundtrip) {
    const char *name = s_names[_i];
    pd_store *inner, *s = s_open(name, &inner);
    size_t big = s_small() ? (1u << 20) : (6u << 20);
    unsigned char *comp = s_bytes(big, 1, false), *rnd = s_bytes(big, 2, true);
    /* One batch: empty, tiny, large compressible, large random; a key
     * repeated within the batch; an empty value between others. */
    pd_key ks[] = {K("empty"), K("tiny"), K("big"), K("rnd"),
                   K("tiny"),  K("tiny"), K("big")};
    pd_bytes vs[] = {{NULL, 0}, V("x"),  {comp, big - 10},     {rnd, big},
                     {"", 0},   V("yz"), {comp + big - 10, 10}};
    TU_OK(pd_append(s, 7, ks, vs, 0), s);
    /* Several values per key across calls. */
    for (int i = 0; i < 50; i++) {
        char v[16];
        snprintf(v, sizeof v, "<%d>", i);
        tu_append1(s, K("many"), v, strlen(v));
    }
    pd_key q[] = {K("empty"), K("tiny"),    K("big"),
                  K("rnd"),   K("missing"), K("many")};
    pd_result *r = NULL;
    TU_OK(pd_get(s, 6, q, &r, 0), s);
    ck_assert_uint_eq(pd_result_count(r), 6);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 0);
    pd_bytes t = pd_result_value(r, 1);
    ck_assert(t.size == 3 && memcmp(t.data, "xyz", 3) == 0);
    pd_bytes b = pd_result_value(r, 2);
    ck_assert_uint_eq(b.size, big);
    ck_assert_msg(memcmp(b.data, comp, big) == 0, "[%s] big differs", name);
    pd_bytes rv = pd_result_value(r, 3);
    ck_assert_uint_eq(rv.size, big);
    ck_assert_msg(memcmp(rv.data, rnd, big) == 0, "[%s] random differs", name);
    ck_assert_uint_eq(pd_result_value(r, 4).size, 0);
    char want[512] = "";
    for (int i = 0; i < 50; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "<%d>", i);
    pd_bytes m = pd_result_value(r, 5);
    ck_assert(m.size == strlen(want) && memcmp(m.data, want, m.size) == 0);
    pd_result_free(&r);
    /* Every value became one frame: "many" holds 50 frames whose payloads
     * decode each to one value. */
    size_t rn;
    unsigned char *raw = s_raw(inner, K("many"), &rn);
    size_t nframes = 0, end = 0;
    ck_assert_int_eq(pd_frame_split(raw, rn, NULL, NULL, &end), 0);
    ck_assert_uint_eq(end, rn);
    for (size_t at = 0; at < rn; nframes++) {
        uint64_t len = 0;
        for (int j = 7; j >= 0; j--) len = len << 8 | raw[at + j];
        at += 8 + len;
    }
    ck_assert_uint_eq(nframes, 50);
    free(raw);
    /* Compression happened for compressible data. */
    free(s_raw(inner, K("big"), &rn));
    /* (blosc's byte shuffle for 8-byte items does little for text) */
    ck_assert_msg(rn < (strcmp(name, "blosc") ? big / 2 : big),
                  "[%s] %zu "
                  "bytes stored for %zu",
                  name, rn, big);
    ck_assert_uint_eq(pd_encode_torn(s), 0);
    ck_assert_str_eq(pd_encode_notice(s), "");
    free(comp);
    free(rnd);
    s_close2(&s, &inner);
}
END_TEST

/* Every level of every codec round-trips. */
START_TEST(levels) {
    const char *name = s_names[_i];
    static const int lv[NCODECS][4] = {{0, 1, 9, 6},
                                       {1, 5, 9, 9},
                                       {PD_LEVEL_DEFAULT, PD_LEVEL_DEFAULT,
                                        PD_LEVEL_DEFAULT, PD_LEVEL_DEFAULT},
                                       {0, 1, 9, 5},
                                       {0, 2, 3, 12},
                                       {1, -5, 19, 22}};
    size_t n = 200000;
    unsigned char *v = s_bytes(n, 3, false);
    for (int j = 0; j < 4; j++) {
        pd_store *d = NULL, *s = NULL;
        TU_OK(pd_dict_open(&d), NULL);
        int rc = pd_compress_open(&s, &d, name, lv[_i][j], 0);
        ck_assert_msg(rc == 0, "%s level %d: %s", name, lv[_i][j],
                      pd_errmsg(NULL));
        ck_assert_ptr_null(d); /* owned */
        tu_append1(s, K("k"), v, n);
        tu_expect(s, K("k"), v, n);
        TU_OK(pd_close(&s), NULL);
    }
    free(v);
}
END_TEST

START_TEST(builtin_table) {
    const char *const *names = pd_codec_names();
    for (int i = 0; i < NCODECS; i++) ck_assert_str_eq(names[i], s_names[i]);
    ck_assert_ptr_null(names[NCODECS]);
    pd_codec c;
    memset(&c, 0xab, sizeof c);
    ck_assert_int_eq(pd_codec_builtin(&c, "lzma", PD_LEVEL_DEFAULT),
                     PD_ERR_UNSUPPORTED);
    ck_assert_ptr_null(c.ctx);
    ck_assert_ptr_null(c.encode);
    const char *m = pd_errmsg(NULL);
    ck_assert_msg(strstr(m, "lzma") && strstr(m, "zstd") && strstr(m, "zlib"),
                  "%s", m);
    ck_assert_int_eq(pd_codec_builtin(&c, "zlib", 10), PD_ERR_LIMIT);
    ck_assert_int_eq(pd_codec_builtin(&c, "zlib", -1), PD_ERR_LIMIT);
    ck_assert_int_eq(pd_codec_builtin(&c, "bz2", 0), PD_ERR_LIMIT);
    ck_assert_int_eq(pd_codec_builtin(&c, "blosc", 10), PD_ERR_LIMIT);
    ck_assert_int_eq(pd_codec_builtin(&c, "lz4", 13), PD_ERR_LIMIT);
    ck_assert_int_eq(pd_codec_builtin(&c, "zstd", 23), PD_ERR_LIMIT);
    ck_assert_int_eq(pd_codec_builtin(&c, "snappy", 1), PD_ERR_LIMIT);
    ck_assert_msg(strstr(pd_errmsg(NULL), "snappy"), "%s", pd_errmsg(NULL));
    ck_assert_int_eq(pd_codec_builtin(NULL, "zlib", 1), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_codec_builtin(&c, NULL, 1), PD_ERR_MISUSE);
    /* A codec not handed to a store is released by its destroy. */
    for (int i = 0; i < NCODECS; i++) {
        TU_OK(pd_codec_builtin(&c, s_names[i], PD_LEVEL_DEFAULT), NULL);
        ck_assert_str_eq(c.name, s_names[i]);
        if (c.destroy) c.destroy(c.ctx);
    }
    /* pd_compress_open errors leave inner with the caller. */
    pd_store *d = NULL, *s = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    ck_assert_int_eq(pd_compress_open(&s, &d, "nope", 1, 0),
                     PD_ERR_UNSUPPORTED);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(pd_compress_open(&s, &d, "zlib", 1, 0x8000),
                     PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(d);
    /* Layer functions refuse stores that are not Encode stores. */
    ck_assert_ptr_null(pd_encode_inner(d));
    ck_assert_uint_eq(pd_encode_torn(d), 0);
    ck_assert_str_eq(pd_encode_notice(d), "");
    ck_assert_int_eq(pd_encode_set_limit(d, 10), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_encode_repair(d, 0, NULL, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_encode_set_limit(NULL, 10), PD_ERR_MISUSE);
    ck_assert_ptr_null(pd_encode_inner(NULL));
    ck_assert_uint_eq(pd_encode_torn(NULL), 0);
    TU_OK(pd_compress_open(&s, &d, "zlib", 1, 0), NULL);
    ck_assert_int_eq(pd_encode_set_limit(s, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_encode_repair(s, 1, NULL, NULL, 0), PD_ERR_MISUSE);
    pd_key bad = PD_KEY(NULL, 3);
    ck_assert_int_eq(pd_encode_repair(s, 1, &bad, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_encode_repair(s, 0, NULL, NULL, 0x80), PD_ERR_MISUSE);
    TU_OK(pd_encode_repair(s, 0, NULL, NULL, 0), s);
    TU_OK(pd_close(&s), NULL);
}
END_TEST

/* ------------------------------------------------------- Custom codecs */

typedef struct t_xor {
    int destroyed;
    int encodes, decodes;
    bool fail_encode; /* encode fails on values starting with '!' */
    bool nomem;       /* decode fails with PD_ERR_NOMEM */
    bool bogus;       /* both return 7, which is no PD_ERR_* code */
} t_xor;

static int t_xor_enc(void *ctx, const void *src, size_t n, pd_sink *out) {
    t_xor *x = ctx;
    x->encodes++;
    if (x->bogus) return 7;
    if (x->fail_encode && n && ((const char *)src)[0] == '!') {
        pd_sink_reason(out, "refusing value starting with '%c'", '!');
        return PD_ERR_CORRUPT;
    }
    /* Written in two pieces, through reserve/commit and write. */
    unsigned char *p = pd_sink_reserve(out, n + 1);
    if (!p) return PD_ERR_NOMEM;
    p[0] = 0x5a; /* a marker byte decode checks */
    for (size_t i = 0; i < n; i++)
        p[i + 1] = ((const unsigned char *)src)[i] ^ 0x5a;
    pd_sink_commit(out, n + 1);
    ck_assert_uint_eq(pd_sink_size(out), n + 1);
    return 0;
}

static int t_xor_dec(void *ctx, const void *src, size_t n, pd_sink *out) {
    t_xor *x = ctx;
    x->decodes++;
    if (x->nomem) return PD_ERR_NOMEM;
    if (x->bogus) return 7;
    const unsigned char *s = src;
    if (n == 0 || s[0] != 0x5a) {
        pd_sink_reason(out, "xor: no marker");
        return PD_ERR_CORRUPT;
    }
    if (n - 1 > pd_sink_room(out)) return PD_ERR_LIMIT;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = s[i] ^ 0x5a;
        int rc = pd_sink_write(out, &c, 1);
        if (rc) return rc;
    }
    return 0;
}

static void t_xor_destroy(void *ctx) { ((t_xor *)ctx)->destroyed++; }

START_TEST(custom_codec) {
    t_xor x = {0};
    pd_codec c = {"xor", &x, t_xor_enc, t_xor_dec, t_xor_destroy};
    pd_store *d = NULL, *s = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    pd_store *dd = d;
    TU_OK(pd_encode_open(&s, &dd, &c, PD_BORROW), NULL);
    ck_assert_str_eq(pd_store_kind(s), "xor");
    tu_append1(s, K("k"), "hello", 5);
    tu_append1(s, K("k"), "", 0);
    tu_append1(s, K("k"), " world", 6);
    tu_expect_str(s, K("k"), "hello world");
    ck_assert_int_eq(x.encodes, 3);
    /* The raw frames: 8-byte length, marker, xored bytes. */
    size_t rn;
    unsigned char *raw = s_raw(d, K("k"), &rn);
    ck_assert_uint_eq(rn, 3 * 8 + 6 + 1 + 7);
    ck_assert_int_eq(raw[0], 6);
    ck_assert_int_eq(raw[8], 0x5a);
    ck_assert_int_eq(raw[9], 'h' ^ 0x5a);
    free(raw);

    /* A failing encode: nothing of the batch is appended; the message
     * names the layer, the key and the codec's reason. */
    x.fail_encode = true;
    pd_key ks[] = {K("k"), K("other"), K("bad key")};
    pd_bytes vs[] = {V("more"), V("o"), V("!boom")};
    int rc = pd_append(s, 3, ks, vs, 0);
    ck_assert_int_eq(rc, PD_ERR_CORRUPT);
    const char *m = pd_errmsg(s);
    ck_assert_msg(strncmp(m, "xor: ", 5) == 0 && strstr(m, "'bad key'") &&
                      strstr(m, "refusing value"),
                  "%s", m);
    tu_expect_str(s, K("k"), "hello world");
    tu_expect_str(s, K("other"), "");
    ck_assert_uint_eq(tu_nkeys(d), 1);
    /* iset fails the same way and replaces nothing. */
    rc = pd_iset(s, 1, &ks[2], &vs[2], 0);
    ck_assert_int_eq(rc, PD_ERR_CORRUPT);
    tu_expect_str(s, K("bad key"), "");
    x.fail_encode = false;

    /* A failing decode: PD_ERR_CORRUPT naming layer, key, frame, offset and
     * the codec's reason. */
    s_raw_set(d, K("k"), "\x02\0\0\0\0\0\0\0ab", 10);
    s_get_fails(s, K("k"), PD_ERR_CORRUPT, "'k'");
    m = pd_errmsg(s);
    ck_assert_msg(strstr(m, "frame 0") && strstr(m, "offset 0") &&
                      strstr(m, "no marker"),
                  "%s", m);
    /* Other keys stay readable. */
    tu_append1(s, K("fine"), "ok", 2);
    tu_expect_str(s, K("fine"), "ok");

    /* The layer's limit reaches the codec through pd_sink_room. */
    TU_OK(pd_encode_set_limit(s, 3), s);
    tu_append1(s, K("long"), "abcdef", 6);
    s_get_fails(s, K("long"), PD_ERR_LIMIT, "'long'");
    TU_OK(pd_encode_set_limit(s, 100), s);
    tu_expect_str(s, K("long"), "abcdef");

    /* A decoder out of memory: PD_ERR_NOMEM naming the key; a callback
     * returning a code outside PD_ERR_*: an encode is misuse, a decode
     * corrupt. */
    x.nomem = true;
    s_get_fails(s, K("long"), PD_ERR_NOMEM, "'long'");
    x.nomem = false;
    x.bogus = true;
    pd_bytes bv = V("b");
    ck_assert_int_eq(pd_append(s, 1, &ks[0], &bv, 0), PD_ERR_MISUSE);
    s_get_fails(s, K("long"), PD_ERR_CORRUPT, "'long'");
    x.bogus = false;
    tu_expect_str(s, K("long"), "abcdef");

    ck_assert_int_eq(x.destroyed, 0);
    TU_OK(pd_close(&s), NULL);
    ck_assert_int_eq(x.destroyed, 1);
    ck_assert_ptr_nonnull(d); /* borrowed */
    TU_OK(pd_close(&d), NULL);

    /* pd_encode_open takes the ctx over on failure too. */
    x.destroyed = 0;
    ck_assert_int_eq(pd_encode_open(&s, NULL, &c, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(x.destroyed, 1);
    TU_OK(pd_dict_open(&d), NULL);
    ck_assert_int_eq(pd_encode_open(&s, &d, &c, 0x4000), PD_ERR_MISUSE);
    ck_assert_int_eq(x.destroyed, 2);
    pd_codec noname = c;
    noname.name = NULL;
    ck_assert_int_eq(pd_encode_open(&s, &d, &noname, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(x.destroyed, 3);
    pd_codec nodec = c;
    nodec.decode = NULL;
    ck_assert_int_eq(pd_encode_open(&s, &d, &nodec, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(x.destroyed, 4);
    ck_assert_int_eq(pd_encode_open(&s, &d, NULL, 0), PD_ERR_MISUSE);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(d);
    /* Owned: inner taken, closed with the layer. */
    TU_OK(pd_encode_open(&s, &d, &c, 0), NULL);
    ck_assert_ptr_null(d);
    TU_OK(pd_close(&s), NULL);
    ck_assert_int_eq(x.destroyed, 5);
}
END_TEST

/* A custom codec named like a built-in gets no built-in header checks (its
 * frames would not pass them) and still reads. */
START_TEST(custom_named_builtin) {
    t_xor x = {0};
    pd_codec c = {"zstd", &x, t_xor_enc, t_xor_dec, NULL};
    pd_store *d = NULL, *s = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    TU_OK(pd_encode_open(&s, &d, &c, 0), NULL);
    tu_append1(s, K("k"), "abc", 3);
    tu_append1(s, K("k"), "def", 3);
    tu_expect_str(s, K("k"), "abcdef");
    TU_OK(pd_close(&s), NULL);
}
END_TEST

/* -------------------------------------------------------- Pass-through */

START_TEST(passthrough) {
    const char *name = s_names[_i];
    pd_store *inner, *s = s_open(name, &inner);
    pd_key ks[] = {K("a"), K("b"), K("c")};
    pd_bytes vs[] = {V("1111111111"), V("2"), V("3")};
    TU_OK(pd_append(s, 3, ks, vs, 0), s);
    /* keys: the inner store's keys and encoded sizes. */
    for (int i = 0; i < 3; i++) {
        size_t rn;
        free(s_raw(inner, ks[i], &rn));
        ck_assert_int_eq(tu_listed_size(s, ks[i]), (long long)rn);
    }
    ck_assert_uint_eq(tu_nkeys(s), 3);
    /* iset: one frame replacing the key; idempotent per handle. */
    pd_bytes nv = V("new");
    TU_OK(pd_iset(s, 1, &ks[0], &nv, 0), s);
    tu_expect_str(s, ks[0], "new");
    pd_bytes nv2 = V("newer");
    TU_OK(pd_iset(s, 1, &ks[0], &nv2, 0), s);
    tu_expect_str(s, ks[0], "new");
    size_t rn;
    unsigned char *raw = s_raw(inner, ks[0], &rn);
    size_t end;
    ck_assert_int_eq(pd_frame_split(raw, rn, NULL, NULL, &end), 0);
    ck_assert_uint_eq(8 + (size_t)raw[0], rn); /* one frame */
    free(raw);
    /* delete */
    TU_OK(pd_delete(s, 1, &ks[1], 0), s);
    tu_expect_str(s, ks[1], "");
    ck_assert_int_eq(tu_listed_size(inner, ks[1]), -1);
    /* lock section with PD_NOLOCK calls */
    TU_OK(pd_lock(s), s);
    tu_append1(s, ks[2], "x", 1);
    pd_bytes y = V("y");
    TU_OK(pd_append(s, 1, &ks[2], &y, PD_NOLOCK), s);
    TU_OK(pd_unlock(s), s);
    tu_expect_str(s, ks[2], "3xy");
    /* drop: empty, iset memo forgotten. */
    TU_OK(pd_drop(s, 0), s);
    ck_assert_uint_eq(tu_nkeys(s), 0);
    ck_assert_uint_eq(tu_nkeys(inner), 0);
    TU_OK(pd_iset(s, 1, &ks[0], &nv2, 0), s);
    tu_expect_str(s, ks[0], "newer");
    s_close2(&s, &inner);
}
END_TEST

START_TEST(frame_split) {
    unsigned char d[64];
    memset(d, 0, sizeof d);
    d[0] = 3;
    memcpy(d + 8, "abc", 3);
    d[11] = 0; /* an empty frame */
    d[19] = 2;
    memcpy(d + 27, "de", 2);
    size_t end = 99;
    ck_assert_int_eq(pd_frame_split(d, 29, NULL, NULL, &end), 0);
    ck_assert_uint_eq(end, 29);
    ck_assert_int_eq(pd_frame_split(d, 28, NULL, NULL, &end), PD_ERR_CORRUPT);
    ck_assert_uint_eq(end, 19);
    ck_assert_int_eq(pd_frame_split(d, 5, NULL, NULL, &end), PD_ERR_CORRUPT);
    ck_assert_uint_eq(end, 0);
    ck_assert_int_eq(pd_frame_split(d, 0, NULL, NULL, &end), 0);
    ck_assert_int_eq(pd_frame_split(NULL, 0, NULL, NULL, NULL), 0);
    ck_assert_int_eq(pd_frame_split(NULL, 3, NULL, NULL, NULL), PD_ERR_MISUSE);
    /* A length of 2^64-1 does not wrap. */
    unsigned char h[9];
    memset(h, 0xff, sizeof h);
    ck_assert_int_eq(pd_frame_split(h, 9, NULL, NULL, &end), PD_ERR_CORRUPT);
    ck_assert_uint_eq(end, 0);
}
END_TEST

typedef struct t_seen {
    int n;
    uint64_t off[4];
    size_t size[4];
} t_seen;

static int t_split_cb(void *arg, const void *p, size_t size, uint64_t off) {
    t_seen *s = arg;
    (void)p;
    s->off[s->n] = off;
    s->size[s->n] = size;
    return ++s->n == 2 ? 42 : 0;
}

START_TEST(frame_split_callback) {
    unsigned char d[40] = {1, 0, 0, 0,   0,   0, 0, 0, 'a', 2, 0, 0, 0, 0,
                           0, 0, 0, 'b', 'c', 0, 0, 0, 0,   0, 0, 0, 0};
    t_seen s = {0};
    ck_assert_int_eq(pd_frame_split(d, 27, t_split_cb, &s, NULL), 42);
    ck_assert_int_eq(s.n, 2);
    ck_assert_uint_eq(s.off[1], 9);
    ck_assert_uint_eq(s.size[1], 2);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"roundtrip", roundtrip, NCODECS},
        {"levels", levels, NCODECS},
        {"builtin_table", builtin_table},
        {"custom_codec", custom_codec},
        {"custom_named_builtin", custom_named_builtin},
        {"passthrough", passthrough, NCODECS},
        {"frame_split", frame_split},
        {"frame_split_callback", frame_split_callback},
    };
    return TU_RUN_CASES("test_encode_roundtrip", cases, 300, 0);
}
