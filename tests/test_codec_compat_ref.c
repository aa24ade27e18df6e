/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The codec layers against the Python reference's formats.
 *
 *   - tests/vectors/<codec>/ are stores written by the reference's ZLib,
 *     BZ2, Snappy and Blosc over File (tests/py/make_vectors.py), with a
 *     manifest <codec>.expect of every key's decoded value: our layer must
 *     read them exactly, frame by frame, and re-encoding a reference frame
 *     must give the same bytes (the formats are the reference's).
 *   - When /usr/bin/python3 has partd: our layer writes a store and the
 *     reference reads it (tests/py/codec_check.py), and the reverse.
 */
#include "compatfix.h"

/* ------------------------------------------------------------- SHA-256 */

/* A plain FIPS 180-4 SHA-256, so the manifests need no crypto library. */
typedef struct sha256 {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t nbuf;
} sha256;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void s_sha_block(sha256 *c, const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4],
             f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) +
                      ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) +
                      ((a & b) ^ (a & cc) ^ (b & cc));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = cc;
        cc = b;
        b = a;
        a = t1 + t2;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
    c->h[5] += f;
    c->h[6] += g;
    c->h[7] += h;
}

static void s_sha_init(sha256 *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372,
                                   0xa54ff53a, 0x510e527f, 0x9b05688c,
                                   0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0;
    c->nbuf = 0;
}

static void s_sha_update(sha256 *c, const void *data, size_t n) {
    const unsigned char *p = data;
    c->len += n;
    while (n > 0) {
        size_t k = 64 - c->nbuf < n ? 64 - c->nbuf : n;
        memcpy(c->buf + c->nbuf, p, k);
        c->nbuf += k;
        p += k;
        n -= k;
        if (c->nbuf == 64) {
            s_sha_block(c, c->buf);
            c->nbuf = 0;
        }
    }
}

/* The digest as 64 lowercase hex digits plus NUL. */
static void s_sha256_hex(const void *data, size_t n, char out[65]) {
    sha256 c;
    s_sha_init(&c);
    s_sha_update(&c, data, n);
    uint64_t bits = c.len * 8;
    unsigned char pad = 0x80, zero = 0, lenb[8];
    s_sha_update(&c, &pad, 1);
    while (c.nbuf != 56) s_sha_update(&c, &zero, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
    s_sha_update(&c, lenb, 8);
    for (int i = 0; i < 8; i++)
        snprintf(out + 8 * i, 9, "%08x", (unsigned)c.h[i]);
}

static void s_hex(const void *data, size_t n, char *out) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", p[i]);
    out[2 * n] = 0;
}

/* A codec layer over a new Dict. */
static pd_store *s_open_dict_codec(const char *codec) {
    pd_store *d = NULL, *s = NULL;
    ck_assert_int_eq(pd_dict_open(&d), 0);
    int rc = pd_compress_open(&s, &d, codec, PD_LEVEL_DEFAULT, 0);
    ck_assert_msg(rc == 0, "%s open: %s", codec, pd_errmsg(NULL));
    return s;
}

/* Decodes one framed payload (header included) through the layer `enc`
 * over a Dict, by storing it alone under a scratch key.  malloc'd. */
static char *s_decode_frame(pd_store *enc, const void *frame, size_t n,
                            size_t *outlen) {
    pd_store *in = pd_encode_inner(enc);
    pd_key k = PD_KEY_STR("scratch");
    pd_bytes v = PD_BYTES(frame, n);
    TU_OK(pd_delete(in, 1, &k, 0), in);
    TU_OK(pd_append(in, 1, &k, &v, 0), in);
    char *out = NULL;
    int rc = tu_fetch1(enc, k, &out, outlen);
    ck_assert_msg(rc == 0, "decode one frame: %s", pd_errmsg(enc));
    return out;
}

/* Encodes one value through `enc` (over a Dict): the framed bytes. */
static char *s_encode_value(pd_store *enc, const void *val, size_t n,
                            size_t *outlen) {
    pd_key k = PD_KEY_STR("scratch2");
    TU_OK(pd_delete(enc, 1, &k, 0), enc);
    tu_append1(enc, k, val, n);
    return s_raw(enc, k, outlen);
}

/* --------------------------------------------------- Reference vectors */

/* Re-encoding each of the reference's frames of raw gives the same bytes
 * (zlib/bz2/snappy/blosc at their defaults are deterministic and use the
 * same libraries and parameters as the reference). */
static void s_reencode_identical(const char *codec, const char *repr,
                                 const char *raw, size_t n) {
    s_frames fr = {raw, {0}, {0}, 0};
    ck_assert_int_eq(pd_frame_split(raw, n, s_collect_cb, &fr, NULL), 0);
    pd_store *enc = s_open_dict_codec(codec);
    for (size_t i = 0; i < fr.n; i++) {
        size_t flen = PD_FRAME_HEADER + fr.size[i], dlen, elen;
        char *dec = s_decode_frame(enc, raw + fr.off[i], flen, &dlen);
        char *again = s_encode_value(enc, dec, dlen, &elen);
        ck_assert_msg(elen == flen && memcmp(again, raw + fr.off[i], flen) == 0,
                      "%s %s frame %zu: ours re-encodes its %zu decoded bytes "
                      "to %zu bytes, the reference's frame has %zu (or the "
                      "bytes differ)",
                      codec, repr, i, dlen, elen, flen);
        free(dec);
        free(again);
    }
    s_close(&enc);
}

typedef struct s_line {
    char *repr, *value;
    size_t size, frames;
} s_line;

/* Splits a manifest line "repr \t size \t frames \t value" in place. */
static bool s_parse_line(char *line, s_line *out) {
    char *f[4];
    f[0] = line;
    for (int i = 1; i < 4; i++) {
        char *t = strchr(f[i - 1], '\t');
        if (!t) return false;
        *t = 0;
        f[i] = t + 1;
    }
    out->repr = f[0];
    out->size = strtoul(f[1], NULL, 10);
    out->frames = strtoul(f[2], NULL, 10);
    out->value = f[3];
    return true;
}

/* Checks every key of one reference store; returns the keys with data. */
static size_t s_check_vectors(const char *codec, pd_store *s) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tests/vectors/%s.expect", PARTD_SOURCE_DIR,
             codec);
    size_t mlen;
    char *man = tu_read_file(path, &mlen);
    ck_assert_msg(man != NULL, "missing %s (tests/py/make_vectors.py)", path);
    size_t nkeys = 0, nlines = 0;
    char *save = NULL;
    for (char *line = strtok_r(man, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || line[0] == 0) continue;
        s_line l;
        ck_assert_msg(s_parse_line(line, &l), "%s: bad line '%s'", path, line);
        nlines++;
        pd_key *k = NULL;
        ck_assert_msg(pd_key_parse(l.repr, strlen(l.repr), &k) == 0,
                      "%s: bad key %s", path, l.repr);
        size_t len;
        char *got = NULL;
        int rc = tu_fetch1(s, *k, &got, &len);
        ck_assert_msg(rc == 0, "%s vectors: get %s: %s", codec, l.repr,
                      pd_errmsg(s));
        ck_assert_msg(len == l.size, "%s vectors: %s: %zu bytes, want %zu",
                      codec, l.repr, len, l.size);
        if (strncmp(l.value, "hex:", 4) == 0) {
            char *hex = malloc(2 * len + 1);
            s_hex(got, len, hex);
            ck_assert_msg(strcmp(hex, l.value + 4) == 0,
                          "%s vectors: %s: got %s, want %s", codec, l.repr, hex,
                          l.value + 4);
            free(hex);
        } else {
            ck_assert_msg(strncmp(l.value, "sha256:", 7) == 0, "%s: %s", path,
                          l.value);
            char hex[65];
            s_sha256_hex(got, len, hex);
            ck_assert_msg(strcmp(hex, l.value + 7) == 0,
                          "%s vectors: %s: sha256 %s, want %s", codec, l.repr,
                          hex, l.value + 7);
        }
        free(got);
        size_t rlen;
        char *raw = s_raw(s, *k, &rlen);
        ck_assert_msg(s_nframes(raw, rlen) == l.frames,
                      "%s vectors: %s: %zu frames, want %zu", codec, l.repr,
                      s_nframes(raw, rlen), l.frames);
        ck_assert_int_eq(tu_listed_size(s, *k),
                         l.frames ? (long long)rlen : -1);
        if (rlen) s_reencode_identical(codec, l.repr, raw, rlen);
        free(raw);
        if (l.frames) nkeys++;
        pd_key_free(&k);
    }
    ck_assert_uint_ge(nlines, 10);
    free(man);
    ck_assert_uint_eq(pd_encode_torn(s), 0);
    ck_assert_str_eq(pd_encode_notice(s), "");
    return nkeys;
}

/* A private copy of tests/vectors/<codec>: tests never write to the
 * source tree (it may be read-only), even the .lock. */
static char *s_copy_vectors(const char *codec) {
    char *dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
    ck_assert_int_eq(tu_system("cp -R '%s/tests/vectors/%s/.' '%s'",
                               PARTD_SOURCE_DIR, codec, dir),
                     0);
    return dir;
}

START_TEST(reference_vectors) {
    const char *codec = SHARED[_i];
    char *dir = s_copy_vectors(codec);
    pd_store *s = tu_codec_file(dir, 0, codec, PD_LEVEL_DEFAULT);
    size_t nkeys = s_check_vectors(codec, s);
    ck_assert_uint_eq(tu_nkeys(s), nkeys);
    s_close(&s);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* The reference's data, damaged: a torn tail is left out and repaired; a
 * flipped byte in a checksummed codec's frame fails only that key. */
START_TEST(reference_vectors_damaged) {
    const char *codec = SHARED[_i];
    char *dir = s_copy_vectors(codec);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/big", dir);
    size_t len;
    char *raw = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(raw);
    s_frames fr = {raw, {0}, {0}, 0};
    ck_assert_int_eq(pd_frame_split(raw, len, s_collect_cb, &fr, NULL), 0);
    ck_assert_uint_eq(fr.n, 2); /* ~100 KB, then "tail" */

    /* Torn tail: the last frame ("tail") cut 3 bytes short. */
    ck_assert_int_eq(tu_write_file(path, raw, len - 3), 0);
    pd_store *s = tu_codec_file(dir, 0, codec, PD_LEVEL_DEFAULT);
    pd_key big = PD_KEY_STR("big");
    size_t glen;
    char *got = NULL;
    int rc = tu_fetch1(s, big, &got, &glen);
    ck_assert_msg(rc == 0, "%s: torn tail: %s", codec, pd_errmsg(s));
    ck_assert_uint_eq(glen, 100011); /* the first value, without "tail" */
    ck_assert_mem_eq(got, "row 000000, category apple", 26);
    free(got);
    ck_assert_uint_eq(pd_encode_torn(s), 1);
    ck_assert_msg(strstr(pd_encode_notice(s), "'big'") != NULL, "notice: %s",
                  pd_encode_notice(s));
    uint64_t removed = 0;
    TU_OK(pd_encode_repair(s, 1, &big, &removed, 0), s);
    ck_assert_uint_eq(removed, len - 3 - fr.off[1]);
    size_t rlen;
    char *rep = tu_read_file(path, &rlen);
    ck_assert_uint_eq(rlen, fr.off[1]);
    ck_assert_mem_eq(rep, raw, rlen);
    free(rep);
    tu_expect_str(s, PD_KEY_STR("alpha"), "hello world!");

    /* A flipped byte inside the big frame's payload: zlib and bz2 carry
     * checksums, so the key fails with PD_ERR_CORRUPT naming it; snappy and
     * blosc 1.x have none over literals and may decode it to other bytes. */
    char *bad = malloc(len);
    memcpy(bad, raw, len);
    bad[fr.off[0] + PD_FRAME_HEADER + fr.size[0] / 2] ^= 0x55;
    ck_assert_int_eq(tu_write_file(path, bad, len), 0);
    rc = tu_fetch1(s, big, &got, &glen);
    free(got);
    if (strcmp(codec, "zlib") == 0 || strcmp(codec, "bz2") == 0) {
        ck_assert_msg(rc == PD_ERR_CORRUPT, "%s: flipped byte: rc %d (%s)",
                      codec, rc, pd_errmsg(s));
        ck_assert_msg(strstr(pd_errmsg(s), "'big'") != NULL &&
                          strstr(pd_errmsg(s), codec) != NULL,
                      "message: %s", pd_errmsg(s));
    } else {
        ck_assert_msg(rc == 0 || rc == PD_ERR_CORRUPT, "%s: rc %d: %s", codec,
                      rc, pd_errmsg(s));
    }
    tu_expect_str(s, PD_KEY_STR("alpha"), "hello world!");
    s_close(&s);
    free(bad);
    free(raw);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static int s_py_codec_check(const char *op, const char *dir,
                            const char *codec) {
    return tu_system("%s '%s/tests/py/codec_check.py' %s '%s' %s",
                     PARTD_TEST_PYTHON, PARTD_SOURCE_DIR, op, dir, codec);
}

/* Ours writes, the reference reads; the reference writes, ours reads. */
START_TEST(live_two_way) {
    const char *codec = SHARED[_i];
    if (!tu_have_python_partd()) {
        fprintf(stderr, "live_two_way(%s): skipped, no python partd\n", codec);
        return;
    }
    char *dir = tu_mkdtemp();
    pd_store *s = s_open_file_codec(dir, codec, PD_LEVEL_DEFAULT);
    s_live_write(s);
    s_live_check(s, "ours");
    s_close(&s);
    ck_assert_msg(s_py_codec_check("read", dir, codec) == 0,
                  "the reference cannot read what our %s layer wrote in %s",
                  codec, dir);
    tu_rmtree(dir);
    free(dir);

    dir = tu_mkdtemp();
    ck_assert_msg(s_py_codec_check("write", dir, codec) == 0,
                  "the reference's %s writer failed", codec);
    s = s_open_file_codec(dir, codec, PD_LEVEL_DEFAULT);
    s_live_check(s, "reference");
    /* and our appends after the reference's read back there too */
    pd_key k0 = PD_KEY_STR("k0");
    tu_append1(s, k0, "more", 4);
    size_t len;
    char *got = tu_get1(s, &k0, &len);
    ck_assert_mem_eq(got + len - 4, "more", 4);
    free(got);
    s_close(&s);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"reference_vectors", reference_vectors},
        {"reference_vectors_damaged", reference_vectors_damaged},
        {"live_two_way", live_two_way},
    };
    return TU_RUN_CASES("test_codec_compat_ref", cases, 300, (int)NSHARED);
}
