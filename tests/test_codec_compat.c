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
 *   - lz4 and zstd (ours only): round trips, and every payload is one
 *     standard frame with its content size and checksum, checked with the
 *     libraries' own frame parsers and the `lz4` / `zstd` tools when
 *     installed (both ways: the tools' frames read through our layer).
 */
#include "testutil.h"

#include <errno.h>
#include <limits.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#ifndef PARTD_SOURCE_DIR
#define PARTD_SOURCE_DIR "."
#endif

static const char *const SHARED[] = {"zlib", "bz2", "snappy", "blosc"};
#define NSHARED (sizeof SHARED / sizeof SHARED[0])

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

/* ------------------------------------------------------------ Helpers */

/* Counts frames in raw; asserts they tile it exactly. */
static int s_count_cb(void *arg, const void *payload, size_t size,
                      uint64_t offset) {
    (void)payload;
    (void)size;
    (void)offset;
    (*(size_t *)arg)++;
    return 0;
}

static size_t s_nframes(const void *raw, size_t n) {
    size_t count = 0, end = 0;
    int rc = pd_frame_split(raw, n, s_count_cb, &count, &end);
    ck_assert_msg(rc == 0, "frames do not tile %zu bytes (stop at %zu)", n,
                  end);
    return count;
}

/* The raw (encoded) bytes of key k in the layer's inner store. */
static char *s_raw(pd_store *enc, pd_key k, size_t *len) {
    pd_store *in = pd_encode_inner(enc);
    ck_assert_ptr_nonnull(in);
    char *out = NULL;
    int rc = tu_fetch1(in, k, &out, len);
    ck_assert_msg(rc == 0, "inner get: %s", pd_errmsg(in));
    return out;
}

/* A codec layer over a new File store at dir (created). */
static pd_store *s_open_file_codec(const char *dir, const char *codec,
                                   int level) {
    pd_store *f = NULL, *s = NULL;
    int rc = pd_file_open(&f, dir, PD_FILE_CREATE);
    ck_assert_msg(rc == 0, "file open %s: %s", dir, pd_errmsg(NULL));
    rc = pd_compress_open(&s, &f, codec, level, 0);
    ck_assert_msg(rc == 0, "%s open: %s", codec, pd_errmsg(NULL));
    ck_assert_ptr_null(f);
    ck_assert_str_eq(pd_store_kind(s), codec);
    return s;
}

/* A codec layer over a new Dict. */
static pd_store *s_open_dict_codec(const char *codec) {
    pd_store *d = NULL, *s = NULL;
    ck_assert_int_eq(pd_dict_open(&d), 0);
    int rc = pd_compress_open(&s, &d, codec, PD_LEVEL_DEFAULT, 0);
    ck_assert_msg(rc == 0, "%s open: %s", codec, pd_errmsg(NULL));
    return s;
}

static void s_close(pd_store **s) {
    int rc = pd_close(s);
    ck_assert_msg(rc == 0, "close: %s", pd_errmsg(NULL));
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

typedef struct s_frames {
    const char *raw;
    uint64_t off[256];
    size_t size[256];
    size_t n;
} s_frames;

static int s_collect_cb(void *arg, const void *payload, size_t size,
                        uint64_t offset) {
    s_frames *f = arg;
    ck_assert_uint_lt(f->n, 256);
    /* offset is the frame's (its header's) position */
    ck_assert_ptr_eq((const char *)payload, f->raw + offset + PD_FRAME_HEADER);
    f->off[f->n] = offset;
    f->size[f->n++] = size;
    return 0;
}

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
    pd_store *f = NULL, *s = NULL;
    int rc = pd_file_open(&f, dir, 0);
    ck_assert_msg(rc == 0, "open %s: %s", dir, pd_errmsg(NULL));
    TU_OK(pd_compress_open(&s, &f, codec, PD_LEVEL_DEFAULT, 0), NULL);
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
    pd_store *s = NULL, *f = NULL;
    TU_OK(pd_file_open(&f, dir, 0), NULL);
    TU_OK(pd_compress_open(&s, &f, codec, PD_LEVEL_DEFAULT, 0), NULL);
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

/* ------------------------------------------------------- Live data set */

/* The data set of tests/py/codec_check.py (keep the two in step). */
enum { LIVE_NKEYS = 7, LIVE_ROUNDS = 4 };
static const size_t LIVE_SIZES[8] = {0, 1, 7, 100, 1000, 4096, 33000, 150000};

static size_t s_live_size(int i, int j) { return LIVE_SIZES[(i * 3 + j) % 8]; }

static unsigned char *s_live_value(int i, int j, size_t *len) {
    size_t n = s_live_size(i, j);
    unsigned char *v = malloc(n ? n : 1);
    for (size_t k = 0; k < n; k++) {
        if ((k >> 8) & 1) {
            uint32_t h = (uint32_t)k * 2654435761u + (uint32_t)i * 97u +
                         (uint32_t)j * 13u;
            v[k] = (unsigned char)((h >> 13) & 0xff);
        } else {
            v[k] = (unsigned char)(0x61 + (k + (size_t)i + (size_t)j) % 26);
        }
    }
    *len = n;
    return v;
}

static const pd_bytes LIVE_TUPLE[2] = {{"t", 1}, {"u", 1}};

static pd_key s_live_key(int i, char name[8]) {
    if (i == LIVE_NKEYS - 1) return PD_KEY_TUPLE(LIVE_TUPLE, 2);
    snprintf(name, 8, "k%d", i);
    return PD_KEY_STR(name);
}

static void s_live_write(pd_store *s) {
    for (int j = 0; j < LIVE_ROUNDS; j++) {
        pd_key keys[LIVE_NKEYS];
        pd_bytes vals[LIVE_NKEYS];
        char names[LIVE_NKEYS][8];
        unsigned char *bufs[LIVE_NKEYS];
        for (int i = 0; i < LIVE_NKEYS; i++) {
            keys[i] = s_live_key(i, names[i]);
            size_t n;
            bufs[i] = s_live_value(i, j, &n);
            vals[i] = PD_BYTES(bufs[i], n);
        }
        TU_OK(pd_append(s, LIVE_NKEYS, keys, vals, 0), s);
        for (int i = 0; i < LIVE_NKEYS; i++) free(bufs[i]);
    }
    pd_key ik = PD_KEY_STR("iset");
    pd_bytes iv = PD_BYTES("iset value", 10);
    TU_OK(pd_iset(s, 1, &ik, &iv, 0), s);
}

/* Asserts that s holds the live data set, one frame per append. */
static void s_live_check(pd_store *s, const char *who) {
    for (int i = 0; i < LIVE_NKEYS; i++) {
        char name[8];
        pd_key k = s_live_key(i, name);
        size_t total = 0;
        for (int j = 0; j < LIVE_ROUNDS; j++) total += s_live_size(i, j);
        unsigned char *want = malloc(total + 1);
        size_t off = 0;
        for (int j = 0; j < LIVE_ROUNDS; j++) {
            size_t n;
            unsigned char *v = s_live_value(i, j, &n);
            memcpy(want + off, v, n);
            off += n;
            free(v);
        }
        size_t len;
        char *got = NULL;
        int rc = tu_fetch1(s, k, &got, &len);
        ck_assert_msg(rc == 0, "%s: get key %d: %s", who, i, pd_errmsg(s));
        ck_assert_msg(len == total && memcmp(got, want, total) == 0,
                      "%s: key %d: %zu bytes, want %zu (or bytes differ)", who,
                      i, len, total);
        free(got);
        free(want);
        size_t rlen;
        char *raw = s_raw(s, k, &rlen);
        ck_assert_msg(s_nframes(raw, rlen) == LIVE_ROUNDS,
                      "%s: key %d: %zu frames, want %d", who, i,
                      s_nframes(raw, rlen), LIVE_ROUNDS);
        free(raw);
    }
    tu_expect_str(s, PD_KEY_STR("iset"), "iset value");
    ck_assert_uint_eq(pd_encode_torn(s), 0);
}

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
        pd_store *f = NULL;
        TU_OK(pd_file_open(&f, dir, 0), NULL);
        TU_OK(pd_compress_open(&s, &f, codec, PD_LEVEL_DEFAULT, 0), NULL);
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
    Suite *s = suite_create("test_codec_compat");
    TCase *tc = tcase_create("codec_compat");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, codec_names);
    tcase_add_loop_test(tc, reference_vectors, 0, (int)NSHARED);
    tcase_add_loop_test(tc, reference_vectors_damaged, 0, (int)NSHARED);
    tcase_add_loop_test(tc, live_two_way, 0, (int)NSHARED);
    tcase_add_loop_test(tc, ours_roundtrip_standard_frames, 0, 2);
    tcase_add_loop_test(tc, ours_and_the_cli_tools, 0, 2);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
