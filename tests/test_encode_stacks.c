/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Encode stacked over File and Buffer, from several threads, over payloads
 * written by other codecs, and over a failing disk.
 */
#include "encfix.h"

/* -------------------------------------------------------------- Stacks */

START_TEST(stack_zlib_file) {
    char *dir = tu_mkdtemp();
    pd_store *s = tu_codec_file(dir, 0, "zlib", PD_LEVEL_DEFAULT);
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
    s = tu_codec_file(dir, 0, "zlib", 1);
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
    s = tu_codec_file(dir, 0, "zstd", 1);
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
    pd_store *z = tu_codec_file(dir, 0, "lz4", PD_LEVEL_DEFAULT);
    pd_store *d = NULL, *b = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    TU_OK(pd_buffer_open(&b, &d, &z, 2048, 0), NULL);
    unsigned char *v = s_bytes(100000, 6, false);
    for (int i = 0; i < 30; i++) tu_append1(b, K("k"), v + i * 1000, 1000);
    tu_expect(b, K("k"), v, 30000);
    TU_OK(pd_buffer_flush(b, 0, NULL, 0), b);
    tu_expect(b, K("k"), v, 30000);
    TU_OK(pd_close(&b), NULL);
    z = tu_codec_file(dir, 0, "lz4", PD_LEVEL_DEFAULT);
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
    pd_store *s = tu_codec_file(dir, 0, s_names[_i], PD_LEVEL_DEFAULT);
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
    const tu_case cases[] = {
        {"stack_zlib_file", stack_zlib_file},
        {"stack_zstd_buffer", stack_zstd_buffer},
        {"stack_buffer_lz4", stack_buffer_lz4},
        {"threads", threads, NCODECS},
        {"foreign_payloads", foreign_payloads},
        {"write_fails", write_fails, NCODECS},
    };
    return TU_RUN_CASES("test_encode_stacks", cases, 300, 0);
}
