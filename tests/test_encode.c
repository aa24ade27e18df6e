/*
 * Encode: the frame layer and its six codecs.  Round trips, custom codecs,
 * pass-through operations, stacks over File and Buffer, every kind of bad
 * data the header lists (corrupt, truncated, bombs, lying sizes, random
 * damage), torn frames and their repair, and a failing disk underneath.
 *
 * Raw frames are read and written through a Dict the layer borrows, so the
 * tests see exactly what the layer stores.
 */
#include "testutil.h"

#include "encode/codec.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <blosc.h>
#include <bzlib.h>
#include <lz4frame.h>
#include <zstd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define K(s) PD_KEY_STR(s)
#define V(s) PD_BYTES((s), strlen(s))
#define NCODECS 6

static const char *const s_names[NCODECS] = {"zlib",  "bz2", "snappy",
                                             "blosc", "lz4", "zstd"};

/* ------------------------------------------------------------ Helpers */

/* Deterministic bytes: text-like (words drawn at random, compresses 2-4x)
 * or random. */
static unsigned char *s_bytes(size_t n, unsigned seed, bool random) {
    static const char *const words[8] = {"partd ", "shuffle ", "frame ",
                                         "key ",   "value ",   "append ",
                                         "torn ",  "zstd "};
    unsigned char *b = malloc(n ? n : 1);
    uint32_t x = 2463534242u ^ (seed * 2654435761u);
    for (size_t i = 0; i < n;) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if (random) {
            b[i++] = (unsigned char)x;
            continue;
        }
        for (const char *w = words[x % 8]; *w && i < n; w++) b[i++] = *w;
    }
    return b;
}

/* An Encode store with codec `name` over a Dict it borrows (*inner). */
static pd_store *s_open(const char *name, pd_store **inner) {
    pd_store *s = NULL;
    ck_assert_int_eq(pd_dict_open(inner), 0);
    pd_store *in = *inner;
    int rc = pd_compress_open(&s, &in, name, PD_LEVEL_DEFAULT, PD_BORROW);
    ck_assert_msg(rc == 0, "open %s: %s", name, pd_errmsg(NULL));
    ck_assert_ptr_eq(in, *inner); /* borrowed: not taken */
    ck_assert_str_eq(pd_store_kind(s), name);
    ck_assert_ptr_eq(pd_encode_inner(s), *inner);
    return s;
}

static void s_close2(pd_store **s, pd_store **inner) {
    TU_OK(pd_close(s), NULL);
    TU_OK(pd_close(inner), NULL);
}

/* The raw bytes of key k in store s (malloc'd; length in *n). */
static unsigned char *s_raw(pd_store *s, pd_key k, size_t *n) {
    char *out;
    TU_OK(tu_fetch1(s, k, &out, n), s);
    return (unsigned char *)out;
}

/* Replaces key k in the raw store with data[0..n). */
static void s_raw_set(pd_store *inner, pd_key k, const void *data, size_t n) {
    TU_OK(pd_delete(inner, 1, &k, 0), inner);
    pd_bytes v = {data, n};
    if (n) TU_OK(pd_append(inner, 1, &k, &v, 0), inner);
}

/* The frames `vals` encode to, concatenated (malloc'd), with each frame's
 * end offset in ends[] (when not NULL). */
static unsigned char *s_frames(pd_store *s, pd_store *inner, size_t nv,
                               const pd_bytes *vals, size_t *n, size_t *ends) {
    pd_key tmp = K("\x01frames-scratch");
    TU_OK(pd_delete(inner, 1, &tmp, 0), inner);
    for (size_t i = 0; i < nv; i++) {
        TU_OK(pd_append(s, 1, &tmp, &vals[i], 0), s);
        if (ends) {
            size_t len;
            free(s_raw(inner, tmp, &len));
            ends[i] = len;
        }
    }
    unsigned char *f = s_raw(inner, tmp, n);
    TU_OK(pd_delete(inner, 1, &tmp, 0), inner);
    return f;
}

/* Asserts that get of k fails with `code` and a message naming the layer
 * and the key. */
static void s_get_fails(pd_store *s, pd_key k, int code, const char *repr) {
    pd_result *r = (pd_result *)&r;
    int rc = pd_get(s, 1, &k, &r, 0);
    ck_assert_msg(rc == code, "[%s] get %s -> %d (%s), want %d",
                  pd_store_kind(s), repr, rc, pd_errmsg(s), code);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(pd_errcode(s), code);
    const char *m = pd_errmsg(s);
    ck_assert_msg(strncmp(m, pd_store_kind(s), strlen(pd_store_kind(s))) == 0,
                  "message does not start with the layer: %s", m);
    ck_assert_msg(strstr(m, repr) != NULL, "message does not name %s: %s", repr,
                  m);
}

static bool s_small(void) { return tu_under_valgrind(); }

/* Where to change a byte of the frame [start, end) so that codec `name`
 * notices: anywhere in the payload for codecs with a checksum; snappy's
 * length prefix; blosc's cbytes field. */
static size_t s_hit(const char *name, size_t start, size_t end) {
    if (!strcmp(name, "snappy")) return start + 8;
    if (!strcmp(name, "blosc")) return start + 8 + 12;
    return start + 8 + (end - start - 8) / 2;
}

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

/* -------------------------------------------------------------- Stacks */

START_TEST(stack_zlib_file) {
    char *dir = tu_mkdtemp();
    pd_store *f = NULL, *s = NULL;
    TU_OK(pd_file_open(&f, dir, 0), NULL);
    TU_OK(pd_compress_open(&s, &f, "zlib", PD_LEVEL_DEFAULT, 0), NULL);
    ck_assert_ptr_null(f);
    pd_bytes tp[] = {V("t"), V("u")};
    pd_key ks[] = {K("x"), PD_KEY_TUPLE(tp, 2), K("x")};
    pd_bytes vs[] = {V("hello "), V("tuple"), V("world")};
    TU_OK(pd_append(s, 3, ks, vs, 0), s);
    tu_expect_str(s, ks[0], "hello world");
    tu_expect_str(s, ks[1], "tuple");
    /* On disk: frames, as the reference writes them. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/x", dir);
    size_t n;
    char *raw = tu_read_file(path, &n);
    ck_assert_ptr_nonnull(raw);
    size_t end;
    ck_assert_int_eq(pd_frame_split(raw, n, NULL, NULL, &end), 0);
    ck_assert_int_eq((unsigned char)raw[8], 0x78); /* zlib header */
    free(raw);
    TU_OK(pd_close(&s), NULL);
    /* Reopen: the data persists. */
    TU_OK(pd_file_open(&f, dir, 0), NULL);
    TU_OK(pd_compress_open(&s, &f, "zlib", 1, 0), NULL);
    tu_expect_str(s, ks[0], "hello world");
    TU_OK(pd_close(&s), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(stack_zstd_buffer) {
    char *dir = tu_mkdtemp();
    pd_store *f = NULL, *d = NULL, *b = NULL, *s = NULL;
    TU_OK(pd_file_open(&f, dir, 0), NULL);
    TU_OK(pd_dict_open(&d), NULL);
    TU_OK(pd_buffer_open(&b, &d, &f, 4096, 0), NULL);
    TU_OK(pd_compress_open(&s, &b, "zstd", 1, 0), NULL);
    unsigned char *v = s_bytes(3000, 5, true);
    /* Enough to spill frames from the Dict to the File several times. */
    char *want = malloc(40 * 3000);
    for (int i = 0; i < 40; i++) {
        tu_append1(s, K("k"), v, 1000 + (size_t)i * 50);
        memcpy(want + i * 1000 + 50 * (i * (i - 1) / 2), v,
               1000 + (size_t)i * 50);
    }
    size_t wn = 0;
    for (int i = 0; i < 40; i++) wn += 1000 + (size_t)i * 50;
    tu_expect(s, K("k"), want, wn);
    ck_assert_uint_gt(pd_buffer_memory_usage(pd_encode_inner(s)), 0);
    TU_OK(pd_close(&s), NULL); /* flushes the Buffer into the File */
    TU_OK(pd_file_open(&f, dir, 0), NULL);
    TU_OK(pd_compress_open(&s, &f, "zstd", 1, 0), NULL);
    tu_expect(s, K("k"), want, wn);
    ck_assert_uint_eq(pd_encode_torn(s), 0);
    TU_OK(pd_close(&s), NULL);
    free(v);
    free(want);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(stack_buffer_lz4) {
    char *dir = tu_mkdtemp();
    pd_store *f = NULL, *d = NULL, *z = NULL, *b = NULL;
    TU_OK(pd_file_open(&f, dir, 0), NULL);
    TU_OK(pd_compress_open(&z, &f, "lz4", PD_LEVEL_DEFAULT, 0), NULL);
    TU_OK(pd_dict_open(&d), NULL);
    TU_OK(pd_buffer_open(&b, &d, &z, 2048, 0), NULL);
    unsigned char *v = s_bytes(100000, 6, false);
    for (int i = 0; i < 30; i++) tu_append1(b, K("k"), v + i * 1000, 1000);
    tu_expect(b, K("k"), v, 30000);
    TU_OK(pd_buffer_flush(b, 0, NULL, 0), b);
    tu_expect(b, K("k"), v, 30000);
    TU_OK(pd_close(&b), NULL);
    TU_OK(pd_file_open(&f, dir, 0), NULL);
    TU_OK(pd_compress_open(&z, &f, "lz4", PD_LEVEL_DEFAULT, 0), NULL);
    tu_expect(z, K("k"), v, 30000);
    TU_OK(pd_close(&z), NULL);
    free(v);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(threads) {
    pd_store *d = NULL, *s = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    TU_OK(pd_compress_open(&s, &d, s_names[_i], PD_LEVEL_DEFAULT, 0), NULL);
    tu_threads_own_shared(s, 4, s_small() ? 100 : 1000);
    TU_OK(pd_close(&s), NULL);
}
END_TEST

/* Payloads other writers make: frames without a stated size (read by
 * growing the output), bz2 with several streams (as bz2.decompress
 * reads), blosc chunks with other inner compressors. */
static void s_put_frame(pd_store *inner, pd_key k, const void *p, size_t n) {
    unsigned char *f = malloc(n + 8);
    for (int j = 0; j < 8; j++) f[j] = (unsigned char)((uint64_t)n >> (8 * j));
    memcpy(f + 8, p, n);
    s_raw_set(inner, k, f, n + 8);
    free(f);
}

START_TEST(foreign_payloads) {
    size_t n = 300000;
    unsigned char *v = s_bytes(n, 40, false);
    size_t cap = n * 2 + 1024;
    unsigned char *c = malloc(cap);
    pd_store *inner, *s;

    /* lz4 without a content size. */
    s = s_open("lz4", &inner);
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof prefs);
    size_t cn = LZ4F_compressFrame(c, cap, v, n, &prefs);
    ck_assert(!LZ4F_isError(cn));
    ck_assert(!(c[4] & 0x08)); /* no content size */
    s_put_frame(inner, K("k"), c, cn);
    tu_expect(s, K("k"), v, n);
    TU_OK(pd_encode_set_limit(s, 1000), s);
    s_get_fails(s, K("k"), PD_ERR_LIMIT, "'k'");
    s_close2(&s, &inner);

    /* zstd without a content size. */
    s = s_open("zstd", &inner);
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(zc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_inBuffer ib = {v, n, 0};
    ZSTD_outBuffer ob = {c, cap, 0};
    ck_assert_uint_eq(ZSTD_compressStream2(zc, &ob, &ib, ZSTD_e_end), 0);
    ZSTD_freeCCtx(zc);
    ck_assert_uint_eq(ZSTD_getFrameContentSize(c, ob.pos),
                      ZSTD_CONTENTSIZE_UNKNOWN);
    s_put_frame(inner, K("k"), c, ob.pos);
    tu_expect(s, K("k"), v, n);
    /* Two zstd frames in one payload: not one frame. */
    memcpy(c + ob.pos, c, ob.pos);
    s_put_frame(inner, K("two"), c, 2 * ob.pos);
    s_get_fails(s, K("two"), PD_ERR_CORRUPT, "'two'");
    TU_OK(pd_encode_set_limit(s, 1000), s);
    s_get_fails(s, K("k"), PD_ERR_LIMIT, "'k'");
    s_close2(&s, &inner);

    /* bz2: two streams in one payload read as one value; a stream followed
     * by garbage does not. */
    s = s_open("bz2", &inner);
    unsigned c1 = (unsigned)cap;
    ck_assert_int_eq(
        BZ2_bzBuffToBuffCompress((char *)c, &c1, (char *)v, 1000, 9, 0, 0),
        BZ_OK);
    unsigned c2 = (unsigned)(cap - c1);
    ck_assert_int_eq(BZ2_bzBuffToBuffCompress((char *)c + c1, &c2,
                                              (char *)v + 1000, 500, 1, 0, 0),
                     BZ_OK);
    s_put_frame(inner, K("k"), c, c1 + c2);
    tu_expect(s, K("k"), v, 1500);
    memcpy(c + c1, "garbage!", 8);
    s_put_frame(inner, K("k"), c, c1 + 8);
    s_get_fails(s, K("k"), PD_ERR_CORRUPT, "'k'");
    s_close2(&s, &inner);

    /* blosc chunks made with other inner compressors and settings. */
    s = s_open("blosc", &inner);
    const char *inners[] = {"lz4", "lz4hc", "zlib", "zstd", "blosclz"};
    for (int i = 0; i < 5; i++) {
        int w =
            blosc_compress_ctx(5, i % 2 ? BLOSC_BITSHUFFLE : BLOSC_NOSHUFFLE,
                               i + 1, n, v, c, cap, inners[i], 0, 1);
        ck_assert_int_gt(w, 0);
        s_put_frame(inner, K("k"), c, (size_t)w);
        tu_expect(s, K("k"), v, n);
    }
    s_close2(&s, &inner);
    free(c);
    free(v);
}
END_TEST

/* ------------------------------------------------------------ Bad data */

/* Three frames in "k", "other" intact; returns k's raw bytes and frame
 * ends. */
typedef struct t_fx {
    pd_store *s, *inner;
    unsigned char *raw; /* k's frames */
    size_t n, ends[4];
    unsigned char *vals[3];
    size_t sizes[3];
} t_fx;

static void s_fx_open(t_fx *fx, const char *name) {
    memset(fx, 0, sizeof *fx);
    fx->s = s_open(name, &fx->inner);
    size_t sizes[3] = {3000, 70000, 500};
    pd_bytes vs[3];
    for (int i = 0; i < 3; i++) {
        fx->sizes[i] = sizes[i];
        fx->vals[i] = s_bytes(sizes[i], 10 + (unsigned)i, i == 2);
        vs[i] = (pd_bytes){fx->vals[i], sizes[i]};
    }
    fx->raw = s_frames(fx->s, fx->inner, 3, vs, &fx->n, fx->ends);
    s_raw_set(fx->inner, K("k"), fx->raw, fx->n);
    tu_append1(fx->s, K("other"), "intact", 6);
}

static void s_fx_close(t_fx *fx) {
    tu_expect_str(fx->s, K("other"), "intact");
    for (int i = 0; i < 3; i++) free(fx->vals[i]);
    free(fx->raw);
    s_close2(&fx->s, &fx->inner);
}

/* Asserts k reads as values first..last-1 (concatenated) plus `tail`. */
static void s_expect_vals(t_fx *fx, pd_key k, int first, int last,
                          const void *tail, size_t tn) {
    size_t wn = tn;
    for (int i = first; i < last; i++) wn += fx->sizes[i];
    unsigned char *w = malloc(wn + 1), *p = w;
    for (int i = first; i < last; i++) {
        memcpy(p, fx->vals[i], fx->sizes[i]);
        p += fx->sizes[i];
    }
    if (tn) memcpy(p, tail, tn);
    tu_expect(fx->s, k, w, wn);
    free(w);
}

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
    unsigned char *buf = malloc(2 * fx.n);
    size_t cuts[] = {1, 5, 8, 9, 20, f1 / 2, f1 - 1};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        /* frame0, frame1 cut at cuts[c], frame2, frame1 cut again, frame2 */
        size_t n = 0, cut = cuts[c], cut2 = f1 - cuts[c];
        memcpy(buf, fx.raw, fx.ends[0]);
        n = fx.ends[0];
        memcpy(buf + n, fx.raw + fx.ends[0], cut);
        n += cut;
        memcpy(buf + n, fx.raw + fx.ends[1], f2);
        n += f2;
        memcpy(buf + n, fx.raw + fx.ends[0], cut2);
        n += cut2;
        memcpy(buf + n, fx.raw + fx.ends[1], f2);
        n += f2;
        s_raw_set(fx.inner, K("k"), buf, n);
        uint64_t before = pd_encode_torn(fx.s);
        size_t wn = fx.sizes[0] + 2 * fx.sizes[2];
        unsigned char *w = malloc(wn);
        memcpy(w, fx.vals[0], fx.sizes[0]);
        memcpy(w + fx.sizes[0], fx.vals[2], fx.sizes[2]);
        memcpy(w + fx.sizes[0] + fx.sizes[2], fx.vals[2], fx.sizes[2]);
        tu_expect(fx.s, K("k"), w, wn);
        free(w);
        ck_assert_msg(pd_encode_torn(fx.s) == before + 2,
                      "[%s] cut %zu: torn %llu -> %llu", s_names[_i], cut,
                      (unsigned long long)before,
                      (unsigned long long)pd_encode_torn(fx.s));
        char want[64];
        snprintf(want, sizeof want, "torn frame of %zu bytes", cut2);
        ck_assert_msg(strstr(pd_encode_notice(fx.s), want), "cut %zu: %s", cut,
                      pd_encode_notice(fx.s));
    }
    /* A torn frame, then a later batch, then a torn tail: both left out. */
    size_t n = 0;
    memcpy(buf, fx.raw, fx.ends[1] - 10);
    n = fx.ends[1] - 10;
    memcpy(buf + n, fx.raw + fx.ends[1], f2);
    n += f2;
    memcpy(buf + n, fx.raw, 30);
    n += 30;
    s_raw_set(fx.inner, K("k"), buf, n);
    uint64_t before = pd_encode_torn(fx.s);
    size_t wn = fx.sizes[0] + fx.sizes[2];
    unsigned char *w = malloc(wn);
    memcpy(w, fx.vals[0], fx.sizes[0]);
    memcpy(w + fx.sizes[0], fx.vals[2], fx.sizes[2]);
    tu_expect(fx.s, K("k"), w, wn);
    ck_assert_uint_eq(pd_encode_torn(fx.s), before + 2);
    free(w);
    free(buf);
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
    unsigned char *buf = malloc(3 * fx.n);
    /* f0, f1 cut in half, f1 again all but its last byte (a torn tail). */
    size_t n = 0;
    memcpy(buf, fx.raw, f0), n = f0;
    memcpy(buf + n, fx.raw + f0, f1 / 2), n += f1 / 2;
    memcpy(buf + n, fx.raw + f0, f1 - 1), n += f1 - 1;
    s_raw_set(fx.inner, K("k"), buf, n);
    s_expect_vals(&fx, K("k"), 0, 1, NULL, 0);
    ck_assert_uint_eq(pd_encode_torn(fx.s), 2);
    /* f0, f1 cut to 40 bytes, f1 cut in half, f2 whole: f2 lies beyond
     * the first torn frame's claim. */
    n = 0;
    memcpy(buf, fx.raw, f0), n = f0;
    memcpy(buf + n, fx.raw + f0, 40), n += 40;
    memcpy(buf + n, fx.raw + f0, f1 / 2), n += f1 / 2;
    memcpy(buf + n, fx.raw + fx.ends[1], f2), n += f2;
    s_raw_set(fx.inner, K("k"), buf, n);
    uint64_t before = pd_encode_torn(fx.s);
    size_t wn = fx.sizes[0] + fx.sizes[2];
    unsigned char *w = malloc(wn);
    memcpy(w, fx.vals[0], fx.sizes[0]);
    memcpy(w + fx.sizes[0], fx.vals[2], fx.sizes[2]);
    /* (When f2 lies inside the first torn frame's claim too, the two torn
     * pieces may be left out as one region.) */
    char *got;
    size_t gl;
    int rc = tu_fetch1(fx.s, K("k"), &got, &gl);
    ck_assert_msg(rc == 0, "%s", pd_errmsg(fx.s));
    ck_assert(gl == wn && memcmp(got, w, wn) == 0);
    ck_assert_uint_ge(pd_encode_torn(fx.s), before + 1);
    free(got);
    free(w);
    free(buf);
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
    pd_store *f = NULL, *s = NULL;
    TU_OK(pd_file_open(&f, dir, 0), NULL);
    TU_OK(pd_compress_open(&s, &f, name, PD_LEVEL_DEFAULT, 0), NULL);
    pd_store *inner = pd_encode_inner(s);
    unsigned char *a = s_bytes(5000, 30, false), *b = s_bytes(3000, 31, true);
    pd_bytes vs[2] = {{a, 5000}, {b, 3000}};
    size_t n, ends[2];
    unsigned char *fr = s_frames(s, inner, 2, vs, &n, ends);
    /* "torn": frame a, frame b cut, frame a, then a cut tail of b. */
    size_t fb = n - ends[0];
    unsigned char *buf = malloc(3 * n);
    size_t m = 0;
    memcpy(buf + m, fr, ends[0]), m += ends[0];
    memcpy(buf + m, fr + ends[0], fb / 2), m += fb / 2;
    memcpy(buf + m, fr, ends[0]), m += ends[0];
    memcpy(buf + m, fr + ends[0], 11), m += 11;
    s_raw_set(inner, K("torn"), buf, m);
    tu_append1(s, K("clean"), a, 5000);
    /* "bad": corrupt, not torn. */
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

/* ---------------------------------------------------------- Disk faults */

static int g_write_calls;
static ssize_t t_write_enospc(int fd, const void *buf, size_t n) {
    (void)fd;
    (void)buf;
    (void)n;
    g_write_calls++;
    errno = ENOSPC;
    return -1;
}

START_TEST(write_fails) {
    char *dir = tu_mkdtemp();
    pd_store *f = NULL, *s = NULL;
    TU_OK(pd_file_open(&f, dir, 0), NULL);
    TU_OK(pd_compress_open(&s, &f, s_names[_i], PD_LEVEL_DEFAULT, 0), NULL);
    tu_append1(s, K("k"), "before", 6);
    pd__sys_table.write = t_write_enospc;
    pd_key ks[] = {K("k"), K("new")};
    pd_bytes vs[] = {V("after"), V("x")};
    int rc = pd_append(s, 2, ks, vs, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_gt(g_write_calls, 0);
    ck_assert_int_eq(pd_errno(s), ENOSPC);
    const char *m = pd_errmsg(s);
    ck_assert_msg(strncmp(m, s_names[_i], strlen(s_names[_i])) == 0 &&
                      strstr(m, "No space left"),
                  "%s", m);
    tu_expect_str(s, K("k"), "before");
    tu_expect_str(s, K("new"), "");
    ck_assert_uint_eq(pd_encode_torn(s), 0);
    tu_append1(s, K("k"), "after", 5);
    tu_expect_str(s, K("k"), "beforeafter");
    TU_OK(pd_close(&s), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("test_encode");
    /* One case per test, so CK_RUN_CASE can pick one. */
    struct {
        const char *name;
        const TTest *fn;
        int loop; /* over the codecs */
    } tests[] = {
        {"roundtrip", roundtrip, 1},
        {"levels", levels, 1},
        {"builtin_table", builtin_table, 0},
        {"custom_codec", custom_codec, 0},
        {"custom_named_builtin", custom_named_builtin, 0},
        {"passthrough", passthrough, 1},
        {"frame_split", frame_split, 0},
        {"frame_split_callback", frame_split_callback, 0},
        {"stack_zlib_file", stack_zlib_file, 0},
        {"stack_zstd_buffer", stack_zstd_buffer, 0},
        {"stack_buffer_lz4", stack_buffer_lz4, 0},
        {"threads", threads, 1},
        {"corrupt_payload", corrupt_payload, 1},
        {"corrupt_length_field", corrupt_length_field, 1},
        {"length_past_end", length_past_end, 1},
        {"bomb", bomb, 1},
        {"lying_sizes", lying_sizes, 0},
        {"zstd_window_bound", zstd_window_bound, 0},
        {"lz4_frame_shapes", lz4_frame_shapes, 0},
        {"snappy_prefix", snappy_prefix, 0},
        {"repair_keeps_what_get_returns", repair_keeps_what_get_returns, 0},
        {"foreign_payloads", foreign_payloads, 0},
        {"random_corruption", random_corruption, 1},
        {"torn_tail_every_offset", torn_tail_every_offset, 1},
        {"torn_middle", torn_middle, 1},
        {"successive_crashes", successive_crashes, 1},
        {"zero_tail", zero_tail, 1},
        {"repair", repair, 1},
        {"write_fails", write_fails, 1},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_set_timeout(tc, 300);
        if (tests[i].loop)
            tcase_add_loop_test(tc, tests[i].fn, 0, NCODECS);
        else
            tcase_add_test(tc, tests[i].fn);
        suite_add_tcase(s, tc);
    }
    return tu_run(s);
}
