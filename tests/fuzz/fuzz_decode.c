/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * fuzz_decode: the codec layers reading stored bytes.
 *
 * Input: byte 0 picks the codec (zlib, bz2, snappy, blosc, lz4, zstd),
 * byte 1 the layer's frame limit (pd_encode_set_limit: 64 B .. 64 KiB), the
 * rest is a key's raw (encoded) bytes, put into a Dict with pd_iset and
 * read through that codec's layer opened over the Dict with PD_BORROW.
 *
 * Properties: no crash, sanitizer report or leak; no single allocation
 * during the get larger than the input and the limit can justify (a frame
 * may decode to at most `limit` bytes, so a hostile length must never size
 * an allocation); a failure is PD_ERR_CORRUPT or PD_ERR_LIMIT with a
 * message naming the layer; when the get succeeds, re-encoding the value
 * and reading it again gives the same bytes, and pd_encode_repair leaves
 * the key reading the same with no torn region (a fresh handle counts
 * none); when it fails, repair fails too and leaves the raw bytes as they
 * were.
 */
#include "fuzz_util.h"

#include <sanitizer/allocator_interface.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const CODECS[] = {"zlib",  "bz2", "snappy",
                                     "blosc", "lz4", "zstd"};

/* The largest single allocation while tracking is on. */
static size_t g_max_alloc;
static int g_tracking;

static void s_malloc_hook(const volatile void *p, size_t n) {
    (void)p;
    if (g_tracking && n > g_max_alloc) g_max_alloc = n;
}
static void s_free_hook(const volatile void *p) { (void)p; }

static pd_store *s_layer(const char *codec, pd_store *inner, uint64_t limit) {
    pd_store *s = NULL, *in = inner;
    int rc = pd_compress_open(&s, &in, codec, PD_LEVEL_DEFAULT, PD_BORROW);
    FZ_CHECK(rc == 0, "%s open: %s", codec, pd_errmsg(NULL));
    FZ_CHECK(in == inner, "PD_BORROW took the inner store");
    FZ_CHECK(pd_encode_set_limit(s, limit) == 0, "set_limit: %s", pd_errmsg(s));
    return s;
}

/* Gets key k; returns the rc and a malloc'd copy of the value. */
static int s_get(pd_store *s, const pd_key *k, uint8_t **out, size_t *len) {
    pd_result *r = NULL;
    int rc = pd_get(s, 1, k, &r, 0);
    *out = NULL;
    *len = 0;
    if (rc == 0) {
        pd_bytes v = pd_result_value(r, 0);
        *out = malloc(v.size ? v.size : 1);
        FZ_CHECK(*out, "out of memory");
        if (v.size) memcpy(*out, v.data, v.size);
        *len = v.size;
    } else {
        FZ_CHECK(r == NULL, "failed get left a result");
    }
    pd_result_free(&r);
    return rc;
}

static bool s_same(const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

/* s reads k as val[0..vlen), with no torn region; what names the value
 * in a failure ("re-encoded value", "repaired key"). */
static void s_reads_whole(pd_store *s, const pd_key *k, const uint8_t *val,
                          size_t vlen, const char *codec, const char *what) {
    uint8_t *got;
    size_t glen;
    int rc = s_get(s, k, &got, &glen);
    FZ_CHECK(rc == 0, "%s: %s does not read: %s", codec, what, pd_errmsg(s));
    FZ_CHECK(s_same(got, glen, val, vlen),
             "%s: %s reads differently (%zu vs %zu bytes)", codec, what, glen,
             vlen);
    FZ_CHECK(pd_encode_torn(s) == 0, "%s: %s torn: %s", codec, what,
             pd_encode_notice(s));
    free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool hooked;
    if (!hooked) {
        __sanitizer_install_malloc_and_free_hooks(s_malloc_hook, s_free_hook);
        hooked = true;
    }
    if (size < 2) return 0;
    const char *codec = CODECS[data[0] % 6];
    uint64_t limit = (uint64_t)64 << (data[1] % 11);
    const uint8_t *raw = data + 2;
    size_t nraw = size - 2;

    pd_store *dict = NULL;
    FZ_CHECK(pd_dict_open(&dict) == 0, "dict open");
    pd_key k = PD_KEY_STR("k");
    pd_bytes rv = PD_BYTES(nraw ? raw : NULL, nraw);
    FZ_CHECK(pd_iset(dict, 1, &k, &rv, 0) == 0, "iset: %s", pd_errmsg(dict));
    pd_store *s = s_layer(codec, dict, limit);

    uint8_t *val;
    size_t vlen;
    g_max_alloc = 0;
    g_tracking = 1;
    int rc = s_get(s, &k, &val, &vlen);
    g_tracking = 0;
    /* Each of at most nraw/8 + 1 frames decodes to at most `limit` bytes;
     * the result may grow by doubling.  Fixed room for the decoders' own
     * state (bz2's ~3.6 MB at level 9, lz4's 4 MiB blocks, zstd's window:
     * at most 1 MiB under these limits, whatever the frame asks for). */
    size_t nframes = nraw / PD_FRAME_HEADER + 1;
    size_t bound = ((size_t)16 << 20) + 4 * nraw + 2 * nframes * limit;
    FZ_CHECK(g_max_alloc <= bound,
             "%s: a %zu-byte allocation reading %zu bytes (limit %llu, "
             "bound %zu)",
             codec, g_max_alloc, nraw, (unsigned long long)limit, bound);
    if (rc != 0) {
        FZ_CHECK(rc == PD_ERR_CORRUPT || rc == PD_ERR_LIMIT,
                 "%s: get failed with %d: %s", codec, rc, pd_errmsg(s));
        FZ_CHECK(strstr(pd_errmsg(s), codec) != NULL,
                 "%s: the message does not name the layer: %s", codec,
                 pd_errmsg(s));
        uint64_t removed = 0;
        int rrc = pd_encode_repair(s, 1, &k, &removed, 0);
        FZ_CHECK(rrc != 0, "%s: get fails (%d) but repair succeeds", codec, rc);
        uint8_t *now;
        size_t nlen;
        FZ_CHECK(s_get(dict, &k, &now, &nlen) == 0, "dict get");
        FZ_CHECK(s_same(now, nlen, raw, nraw),
                 "%s: a failed repair changed the key", codec);
        free(now);
    } else {
        uint64_t torn = pd_encode_torn(s);
        /* re-encode the value and read it back */
        pd_store *d2 = NULL;
        FZ_CHECK(pd_dict_open(&d2) == 0, "dict open");
        pd_store *s2 = s_layer(codec, d2, vlen ? vlen : 1);
        pd_bytes vv = PD_BYTES(val, vlen);
        FZ_CHECK(pd_append(s2, 1, &k, &vv, 0) == 0, "%s: append: %s", codec,
                 pd_errmsg(s2));
        s_reads_whole(s2, &k, val, vlen, codec, "re-encoded value");
        pd_close(&s2);
        pd_close(&d2);
        /* repair: same value, nothing torn on a fresh handle */
        uint64_t removed = 0;
        int rrc = pd_encode_repair(s, 1, &k, &removed, 0);
        FZ_CHECK(rrc == 0, "%s: repair of a readable key: %s", codec,
                 pd_errmsg(s));
        FZ_CHECK(torn ? removed > 0 && removed <= nraw : removed == 0,
                 "%s: %llu torn regions, repair removed %llu of %zu bytes",
                 codec, (unsigned long long)torn, (unsigned long long)removed,
                 nraw);
        pd_store *s3 = s_layer(codec, dict, limit);
        s_reads_whole(s3, &k, val, vlen, codec, "repaired key");
        pd_close(&s3);
    }
    free(val);
    pd_close(&s);
    pd_close(&dict);
    return 0;
}
