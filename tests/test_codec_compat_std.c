/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * lz4 and zstd (ours only): round trips, and every payload is one standard
 * frame with its content size and checksum, checked with the libraries' own
 * frame parsers and the `lz4` / `zstd` tools when installed (both ways: the
 * tools' frames read through our layer); and the codec names.
 */
#include "compatfix.h"

/* ------------------------------------------------------------ lz4, zstd */

static bool s_have_tool(const char *tool) {
    return tu_system("command -v %s >/dev/null 2>&1", tool) == 0;
}

/* Checks that payload (one frame's) is exactly one standard frame of the
 * codec, with content size and checksum, decoding to want. */
static void s_check_std_frame(const char *codec, const void *payload,
                              size_t size, const void *want, size_t wlen) {
    if (strcmp(codec, "zstd") == 0) {
        ck_assert_uint_ge(size, 6);
        ck_assert_uint_eq(ZSTD_findFrameCompressedSize(payload, size), size);
        unsigned long long cs = ZSTD_getFrameContentSize(payload, size);
        ck_assert_msg(cs == wlen, "zstd frame declares %llu bytes, want %zu",
                      cs, wlen);
        unsigned char fhd = ((const unsigned char *)payload)[4];
        ck_assert_msg(fhd & 0x04, "zstd frame without a content checksum");
        void *out = malloc(wlen + 1);
        size_t r = ZSTD_decompress(out, wlen + 1, payload, size);
        ck_assert_msg(!ZSTD_isError(r) && r == wlen &&
                          memcmp(out, want, wlen) == 0,
                      "zstd payload does not decode to the value");
        free(out);
    } else {
        LZ4F_dctx *d = NULL;
        ck_assert(
            !LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)));
        LZ4F_frameInfo_t info;
        size_t src = size;
        size_t hint = LZ4F_getFrameInfo(d, &info, payload, &src);
        ck_assert_msg(!LZ4F_isError(hint), "lz4 frame header: %s",
                      LZ4F_getErrorName(hint));
        ck_assert_msg(info.contentChecksumFlag == LZ4F_contentChecksumEnabled,
                      "lz4 frame without a content checksum");
        if (wlen > 0) /* lz4 uses 0 for "unknown" */
            ck_assert_msg(info.contentSize == wlen,
                          "lz4 frame declares %llu bytes, want %zu",
                          (unsigned long long)info.contentSize, wlen);
        unsigned char *out = malloc(wlen + 64);
        size_t done = 0, in = src;
        for (;;) {
            size_t dst = wlen + 64 - done, sz = size - in;
            size_t r = LZ4F_decompress(d, out + done, &dst,
                                       (const char *)payload + in, &sz, NULL);
            ck_assert_msg(!LZ4F_isError(r), "lz4 decode: %s",
                          LZ4F_getErrorName(r));
            done += dst;
            in += sz;
            if (r == 0) break;
            ck_assert_msg(sz > 0 || dst > 0, "lz4 decode makes no progress");
        }
        ck_assert_uint_eq(in, size); /* exactly one frame */
        ck_assert_uint_eq(done, wlen);
        ck_assert(wlen == 0 || memcmp(out, want, wlen) == 0);
        free(out);
        LZ4F_freeDecompressionContext(d);
    }
}

typedef struct s_vframes {
    const char *codec;
    int key, nseen;
} s_vframes;

static int s_std_frame_cb(void *arg, const void *payload, size_t size,
                          uint64_t offset) {
    (void)offset;
    s_vframes *a = arg;
    size_t wlen;
    unsigned char *want = s_live_value(a->key, a->nseen, &wlen);
    s_check_std_frame(a->codec, payload, size, want, wlen);
    free(want);
    a->nseen++;
    return 0;
}

static const char *const OURS[] = {"lz4", "zstd"};

/* Round trip through File at several levels; each payload a standard
 * frame. */
START_TEST(ours_roundtrip_standard_frames) {
    const char *codec = OURS[_i];
    const int lz4_levels[] = {PD_LEVEL_DEFAULT, 0, 1, 9, 12};
    const int zstd_levels[] = {PD_LEVEL_DEFAULT, -5, 1, 3, 19};
    const int *levels = _i == 0 ? lz4_levels : zstd_levels;
    /* valgrind: the default and one fast level (lz4 12 and zstd 19 are
     * slow there) */
    int nlevels = tu_under_valgrind() ? 2 : 5;
    for (int l = 0; l < nlevels; l++) {
        char *dir = tu_mkdtemp();
        pd_store *s = s_open_file_codec(dir, codec, levels[l]);
        s_live_write(s);
        s_live_check(s, codec);
        for (int i = 0; i < LIVE_NKEYS; i++) {
            char name[8];
            pd_key k = s_live_key(i, name);
            size_t rlen;
            char *raw = s_raw(s, k, &rlen);
            s_vframes a = {codec, i, 0};
            ck_assert_int_eq(
                pd_frame_split(raw, rlen, s_std_frame_cb, &a, NULL), 0);
            ck_assert_int_eq(a.nseen, LIVE_ROUNDS);
            free(raw);
        }
        s_close(&s);
        /* reopened, it reads the same */
        s = tu_codec_file(dir, 0, codec, PD_LEVEL_DEFAULT);
        s_live_check(s, codec);
        s_close(&s);
        tu_rmtree(dir);
        free(dir);
    }
    /* levels outside the range */
    pd_codec c;
    int bad = _i == 0 ? 13 : 23;
    ck_assert_int_eq(pd_codec_builtin(&c, codec, bad), PD_ERR_LIMIT);
    ck_assert_ptr_null(c.encode);
}
END_TEST

/* The command-line tools read our payloads, and their frames (with and
 * without content size and checksum) read through our layer. */
START_TEST(ours_and_the_cli_tools) {
    const char *codec = OURS[_i];
    if (!s_have_tool(codec)) {
        fprintf(stderr, "%s tool not installed: skipped\n", codec);
        return;
    }
    char *dir = tu_mkdtemp(), *tmp = tu_mkdtemp();
    pd_store *s = s_open_file_codec(dir, codec, PD_LEVEL_DEFAULT);
    s_live_write(s);
    char in[PATH_MAX], out[PATH_MAX];
    snprintf(in, sizeof in, "%s/payload", tmp);
    snprintf(out, sizeof out, "%s/plain", tmp);
    /* every frame of two keys: the tool decodes it to the value */
    for (int i = 0; i < 2; i++) {
        char name[8];
        pd_key k = s_live_key(i, name);
        size_t rlen;
        char *raw = s_raw(s, k, &rlen);
        s_frames fr = {raw, {0}, {0}, 0};
        ck_assert_int_eq(pd_frame_split(raw, rlen, s_collect_cb, &fr, NULL), 0);
        for (size_t j = 0; j < fr.n; j++) {
            ck_assert_int_eq(tu_write_file(in,
                                           raw + fr.off[j] + PD_FRAME_HEADER,
                                           fr.size[j]),
                             0);
            ck_assert_msg(
                tu_system("%s -d -q -c '%s' > '%s'", codec, in, out) == 0,
                "%s -d rejects our payload (key %d frame %zu)", codec, i, j);
            size_t plen, wlen;
            char *plain = tu_read_file(out, &plen);
            unsigned char *want = s_live_value(i, (int)j, &wlen);
            ck_assert_msg(plen == wlen && memcmp(plain, want, wlen) == 0,
                          "%s -d: key %d frame %zu differs", codec, i, j);
            free(plain);
            free(want);
        }
        free(raw);
    }
    /* the tool's frames, framed by hand, read through our layer */
    const char *variants_zstd[] = {"-q -c", "-q -c --no-check",
                                   "-q -c -19 --no-content-size", NULL};
    const char *variants_lz4[] = {"-q -c", "-q -c --content-size",
                                  "-q -c --no-frame-crc -BD", NULL};
    const char *const *variants = _i == 0 ? variants_lz4 : variants_zstd;
    pd_store *inner = pd_encode_inner(s);
    for (int v = 0; variants[v]; v++) {
        char key[16];
        snprintf(key, sizeof key, "cli%d", v);
        pd_key k = PD_KEY_STR(key);
        size_t total = 0;
        unsigned char *all = NULL;
        for (int j = 0; j < 3; j++) {
            size_t wlen;
            unsigned char *want = s_live_value(5, j + v, &wlen);
            ck_assert_int_eq(tu_write_file(out, want, wlen), 0);
            /* the tools read stdin so that no content size is known
             * unless asked for */
            ck_assert_int_eq(
                tu_system("%s %s < '%s' > '%s'", codec, variants[v], out, in),
                0);
            size_t plen;
            char *payload = tu_read_file(in, &plen);
            unsigned char *frame = malloc(PD_FRAME_HEADER + plen);
            for (int b = 0; b < 8; b++)
                frame[b] = (unsigned char)((uint64_t)plen >> (8 * b));
            memcpy(frame + PD_FRAME_HEADER, payload, plen);
            pd_bytes fv = PD_BYTES(frame, PD_FRAME_HEADER + plen);
            TU_OK(pd_append(inner, 1, &k, &fv, 0), inner);
            all = realloc(all, total + wlen + 1);
            memcpy(all + total, want, wlen);
            total += wlen;
            free(frame);
            free(payload);
            free(want);
        }
        size_t glen;
        char *got = NULL;
        int rc = tu_fetch1(s, k, &got, &glen);
        ck_assert_msg(rc == 0, "`%s %s` frames: %s", codec, variants[v],
                      pd_errmsg(s));
        ck_assert_msg(glen == total && memcmp(got, all, total) == 0,
                      "`%s %s` frames: %zu bytes, want %zu", codec, variants[v],
                      glen, total);
        free(got);
        free(all);
    }
    ck_assert_uint_eq(pd_encode_torn(s), 0);
    s_close(&s);
    tu_rmtree(dir);
    tu_rmtree(tmp);
    free(dir);
    free(tmp);
}
END_TEST

START_TEST(codec_names) {
    const char *const *names = pd_codec_names();
    const char *want[] = {"zlib", "bz2", "snappy", "blosc", "lz4", "zstd"};
    for (size_t w = 0; w < 6; w++) {
        bool found = false;
        for (size_t i = 0; names[i]; i++)
            if (strcmp(names[i], want[w]) == 0) found = true;
        ck_assert_msg(found, "pd_codec_names lacks %s", want[w]);
        pd_codec c;
        ck_assert_int_eq(pd_codec_builtin(&c, want[w], PD_LEVEL_DEFAULT), 0);
        ck_assert_str_eq(c.name, want[w]);
        if (c.destroy) c.destroy(c.ctx);
    }
    pd_codec c;
    ck_assert_int_eq(pd_codec_builtin(&c, "lzma", PD_LEVEL_DEFAULT),
                     PD_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(pd_errmsg(NULL), "zstd") != NULL,
                  "message should list the known codecs: %s", pd_errmsg(NULL));
    ck_assert_int_eq(pd_codec_builtin(&c, "snappy", 3), PD_ERR_LIMIT);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"codec_names", codec_names},
        {"ours_roundtrip_standard_frames", ours_roundtrip_standard_frames, 2},
        {"ours_and_the_cli_tools", ours_and_the_cli_tools, 2},
    };
    return TU_RUN_CASES("test_codec_compat_std", cases, 300, 0);
}
