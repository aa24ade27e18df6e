/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Building a Log record (src/log/format.c): lg_rec_build and
 * lg_rec_build_iov make the bytes docs/log-format.md describes (checked
 * against a plain builder written from that page, logref.h) for random
 * batches: keys repeated and interleaved, in order and not, flat, tuple
 * and 1-tuple keys, long keys (the table outgrows its first guess), empty
 * values, values adjacent in memory or not.  The iovec merges values that
 * follow each other in memory and only those; many small pieces are
 * copied into one buffer instead.  A handle's plan is kept between calls
 * and released past its bounds, and the store reads back exactly what
 * such calls appended.
 */
#include "log/log.h"
#include "logfix.h"
#include "logref.h"

#include <errno.h>
#include <sys/uio.h>

/* ------------------------------------------------------------- Random */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static uint64_t s_rand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static size_t s_below(size_t n) { return (size_t)(s_rand() % n); }

/* ------------------------------------------------- The plain builder */

static unsigned char *s_ref(unsigned type, uint64_t seq, size_t n,
                            const pd_key *keys, const pd_bytes *vals,
                            size_t *len) {
    return lr_rec(type, seq, NULL, n, keys, vals, len);
}

/* ------------------------------------------------------------ Batches */

/* A pool of keys: short flat keys, long ones (past 16 bytes, and long
 * enough for the table to outgrow its first guess), the empty key, tuples,
 * and 1-tuples equal to some of the flat keys. */
#define S_POOL 96
static char g_names[S_POOL][200];
static pd_bytes g_parts[S_POOL][2];
static pd_key g_pool[S_POOL];

static void s_pool(void) {
    for (int i = 0; i < S_POOL; i++) {
        char *nm = g_names[i];
        size_t len;
        if (i % 8 == 5) { /* long: 40 to 199 bytes */
            len = 40 + (size_t)(i * 37) % 160;
            for (size_t j = 0; j < len; j++) nm[j] = (char)('a' + (i + j) % 26);
        } else {
            len = (size_t)snprintf(nm, 200, "k%d", i * 7919 % 1000);
        }
        if (i == 0) len = 0;
        if (i % 8 == 3) { /* a tuple of two parts */
            g_parts[i][0] = PD_BYTES(nm, len / 2);
            g_parts[i][1] = PD_BYTES(nm + len / 2, len - len / 2);
            g_pool[i] = PD_KEY_TUPLE(g_parts[i], 2);
        } else if (i % 8 == 7) { /* a 1-tuple: the same key as pool[i - 1] */
            g_parts[i][0] = PD_BYTES(g_names[i - 1], strlen(g_names[i - 1]));
            g_pool[i] = PD_KEY_TUPLE(g_parts[i], 1);
        } else {
            g_pool[i] = PD_KEY(nm, len);
        }
    }
}

static int s_cmp_packed(const void *a, const void *b) {
    const pd_key *x = a, *y = b;
    unsigned char px[300], py[300];
    size_t lx = pd__key_packed_size(x), ly = pd__key_packed_size(y);
    pd__key_pack(x, px);
    pd__key_pack(y, py);
    int c = memcmp(px, py, lx < ly ? lx : ly);
    return c ? c : (lx > ly) - (lx < ly);
}

enum { S_RANDOM, S_SORTED, S_SORTED_THEN_RANDOM, S_SORTED_THEN_REPEAT };

/* A batch of n keys from the pool in the given order (their pool indexes
 * into pidx, a 1-tuple's as its flat key's), values from arena (each one
 * after the previous, or anywhere, or empty).  Sorted orders take the
 * pool's distinct keys in increasing order for a prefix. */
static void s_batch(size_t n, int order, bool adjacent, pd_key *ks,
                    pd_bytes *vs, int *pidx, const unsigned char *arena,
                    size_t asize) {
    static pd_key sorted[S_POOL];
    static int sidx[S_POOL];
    static size_t nsorted;
    if (!nsorted) {
        for (int i = 0; i < S_POOL; i++)
            if (i % 8 != 7) sorted[nsorted++] = g_pool[i];
        qsort(sorted, nsorted, sizeof *sorted, s_cmp_packed);
        for (size_t j = 0; j < nsorted; j++)
            for (int i = 0; i < S_POOL; i++)
                if (s_cmp_packed(&sorted[j], &g_pool[i]) == 0) {
                    sidx[j] = i;
                    break;
                }
    }
    size_t at = s_below(64);
    size_t cut = order == S_RANDOM ? 0 : order == S_SORTED ? n : s_below(n + 1);
    if (cut > nsorted) cut = nsorted;
    size_t start = cut ? s_below(nsorted - cut + 1) : 0;
    for (size_t i = 0; i < n; i++) {
        int p;
        if (i < cut)
            p = sidx[start + i];
        else if (order == S_SORTED_THEN_REPEAT && i == cut && i)
            p = sidx[start + i - 1]; /* equal to its predecessor */
        else
            p = (int)s_below(S_POOL);
        ks[i] = g_pool[p];
        pidx[i] = p % 8 == 7 ? p - 1 : p;
        size_t len = s_below(5) == 0 ? 0 : s_below(300);
        if (!adjacent) at = s_below(asize - 300);
        vs[i] = len == 0 && s_below(2) ? PD_BYTES(NULL, 0)
                                       : PD_BYTES(arena + at, len);
        at += len;
        if (at > asize - 300) at = 0;
    }
}

/* The bytes v describes, concatenated (malloc'd). */
static unsigned char *s_gather(const lg_iov *v) {
    unsigned char *out = malloc(v->total ? v->total : 1);
    ck_assert_ptr_nonnull(out);
    size_t at = 0;
    for (size_t i = 0; i < v->n; i++) {
        ck_assert_uint_le(at + v->iov[i].iov_len, v->total);
        memcpy(out + at, v->iov[i].iov_base, v->iov[i].iov_len);
        at += v->iov[i].iov_len;
    }
    ck_assert_uint_eq(at, v->total);
    return out;
}

/* Either the record was copied into b (one buffer, b's), or v's data
 * buffers are not empty, no one starts where the one before it ends
 * (values adjacent in memory were merged), and they are not so many and
 * so small that they should have been copied. */
static void s_merged(const lg_iov *v, const pd__buf *b) {
    if (v->n == 1) {
        ck_assert_ptr_eq(v->iov[0].iov_base, b->p);
        ck_assert_uint_eq(v->iov[0].iov_len, v->total);
        ck_assert_uint_eq(b->len, v->total);
        return;
    }
    ck_assert_uint_ge(v->n, 2);
    size_t data = 0, k = v->n - 2;
    for (size_t i = 1; i + 1 < v->n; i++) {
        ck_assert_uint_gt(v->iov[i].iov_len, 0);
        data += v->iov[i].iov_len;
        if (i > 1)
            ck_assert_ptr_ne((const char *)v->iov[i - 1].iov_base +
                                 v->iov[i - 1].iov_len,
                             v->iov[i].iov_base);
    }
    ck_assert(k < LG_COPY_MIN || data >= k * LG_COPY_BELOW ||
              v->total > LG_PLAN_KEEP_BYTES);
}

/* Builds the batch both ways (the iovec with pl, b and v, kept across
 * calls), compares both with the plain builder, then lg_plan_done. */
static void s_check(lg_plan *pl, pd__buf *b, lg_iov *v, unsigned type, size_t n,
                    const pd_key *ks, const pd_bytes *vs) {
    size_t rlen;
    uint64_t seq = 1 + s_below(1000);
    unsigned char *ref = s_ref(type, seq, n, ks, vs, &rlen);
    pd__buf c;
    pd__buf_init(&c, NULL, 0);
    TU_OK(lg_rec_build(&c, type, seq, n, ks, vs), NULL);
    ck_assert_uint_eq(c.len, rlen);
    ck_assert(memcmp(c.p, ref, rlen) == 0);
    pd__buf_free(&c);
    TU_OK(lg_rec_build_iov(b, v, pl, type, seq, n, ks, vs), NULL);
    ck_assert_uint_eq(v->total, rlen);
    unsigned char *got = s_gather(v);
    ck_assert_msg(memcmp(got, ref, rlen) == 0, "iovec record differs");
    s_merged(v, b);
    /* The record reads back as it was written. */
    lg_hdr h;
    ck_assert_int_eq(lg_hdr_parse(got, &h), 0);
    ck_assert_int_eq(lg_table_walk(&h, got + LG_HDR, NULL, NULL), 0);
    free(got);
    free(ref);
    lg_plan_done(pl, n, b, v);
}

/* ------------------------------------------------------------- Tests */

START_TEST(random_batches) {
    enum { S_ARENA = 1 << 20 };
    unsigned char *arena = malloc(S_ARENA);
    pd_key *ks = calloc(4000, sizeof *ks);
    pd_bytes *vs = calloc(4000, sizeof *vs);
    int *pidx = calloc(4000, sizeof *pidx);
    ck_assert(arena && ks && vs && pidx);
    for (size_t i = 0; i < S_ARENA; i++) arena[i] = (unsigned char)s_rand();
    s_pool();
    lg_plan pl = {0};
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    lg_iov v = {0};
    for (int round = 0; round < 400; round++) {
        size_t n = 1 + (round % 10 == 9 ? s_below(4000) : s_below(200));
        int order = (int)s_below(4);
        bool adjacent = s_below(2);
        s_batch(n, order, adjacent, ks, vs, pidx, arena, S_ARENA);
        unsigned type = round % 7 == 0 ? LG_SET : LG_APPEND;
        s_check(&pl, &b, &v, type, n, ks, vs);
        if (round % 13 == 0) /* a delete: no values at all */
            s_check(&pl, &b, &v, LG_DELETE, n, ks, NULL);
    }
    lg_plan_free(&pl);
    pd__buf_free(&b);
    free(v.iov);
    free(arena);
    free(ks);
    free(vs);
    free(pidx);
}
END_TEST

/* A batch of n distinct keys "p%07zu", sorted, each value vsize bytes of
 * buf, one after another: one buffer of data. */
static void s_sorted(size_t n, size_t vsize, char (*names)[8], pd_key *ks,
                     pd_bytes *vs, const unsigned char *buf) {
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], 8, "p%06zu", i);
        ks[i] = PD_KEY(names[i], 7);
        vs[i] = PD_BYTES(buf + i * vsize, vsize);
    }
}

START_TEST(adjacent_values_one_buffer) {
    enum { N = 5000, VS = 16 };
    char(*names)[8] = calloc(N, sizeof *names);
    pd_key *ks = calloc(N, sizeof *ks);
    pd_bytes *vs = calloc(N, sizeof *vs);
    unsigned char *buf = malloc(N * VS);
    ck_assert(names && ks && vs && buf);
    for (size_t i = 0; i < N * VS; i++) buf[i] = (unsigned char)(i * 131);
    s_sorted(N, VS, names, ks, vs, buf);
    lg_plan pl = {0};
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    lg_iov v = {0};
    /* Ordered by key, in one buffer: header and table, data, trailer. */
    TU_OK(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 7, N, ks, vs), NULL);
    ck_assert_uint_eq(v.n, 3);
    ck_assert_ptr_eq(v.iov[1].iov_base, buf);
    ck_assert_uint_eq(v.iov[1].iov_len, N * VS);
    lg_plan_done(&pl, N, &b, &v);
    /* One value left empty, one out of place: three runs of data. */
    vs[10] = PD_BYTES(NULL, 0);
    pd_bytes t = vs[100];
    vs[100] = vs[200];
    vs[200] = t;
    TU_OK(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 8, N, ks, vs), NULL);
    /* [0, 10), [11, 100), 200, [101, 200), 100, [201, N): 6 data
     * buffers. */
    ck_assert_uint_eq(v.n, 8);
    s_merged(&v, &b);
    lg_plan_done(&pl, N, &b, &v);
    /* The same key twice in a row, its two values adjacent: one buffer
     * still, the key once in the table. */
    s_sorted(N, VS, names, ks, vs, buf);
    ks[1] = ks[0];
    s_check(&pl, &b, &v, LG_APPEND, N, ks, vs);
    TU_OK(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 9, N, ks, vs), NULL);
    ck_assert_uint_eq(v.n, 3);
    lg_hdr h;
    ck_assert_int_eq(lg_hdr_parse(b.p, &h), 0);
    ck_assert_uint_eq(h.nkeys, N - 1);
    lg_plan_done(&pl, N, &b, &v);
    lg_plan_free(&pl);
    pd__buf_free(&b);
    free(v.iov);
    free(names);
    free(ks);
    free(vs);
    free(buf);
}
END_TEST

START_TEST(kept_and_released) {
    const size_t big = LG_PLAN_KEEP_MAX + 1;
    char(*names)[8] = calloc(big, sizeof *names);
    pd_key *ks = calloc(big, sizeof *ks);
    pd_bytes *vs = calloc(big, sizeof *vs);
    unsigned char *buf = malloc(big * 4);
    ck_assert(names && ks && vs && buf);
    memset(buf, 'v', big * 4);
    s_pool();
    lg_plan pl = {0};
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    lg_iov v = {0};

    /* Kept: the next call of about the same size reuses the arrays. */
    s_sorted(5000, 4, names, ks, vs, buf);
    s_check(&pl, &b, &v, LG_APPEND, 5000, ks, vs);
    ck_assert_uint_eq(pl.cap, 8192);
    const void *nodes = pl.nodes;
    s_check(&pl, &b, &v, LG_APPEND, 4000, ks + 1000, vs + 1000);
    ck_assert_ptr_eq(pl.nodes, nodes);
    ck_assert_ptr_nonnull(b.p);

    /* Far larger than usual, past the bound: released after the call. */
    s_sorted(big, 4, names, ks, vs, buf);
    TU_OK(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 3, big, ks, vs), NULL);
    pd__buf c;
    pd__buf_init(&c, NULL, 0);
    TU_OK(lg_rec_build(&c, LG_APPEND, 3, big, ks, vs), NULL);
    unsigned char *got = s_gather(&v);
    ck_assert_uint_eq(v.total, c.len);
    ck_assert(memcmp(got, c.p, c.len) == 0);
    free(got);
    pd__buf_free(&c);
    lg_plan_done(&pl, big, &b, &v);
    ck_assert_uint_eq(pl.cap, 0);
    ck_assert_ptr_null(pl.nodes);
    ck_assert_ptr_null(b.p);
    ck_assert_ptr_null(v.iov);

    /* Then small calls: right, at their own size. */
    s_sorted(2000, 4, names, ks, vs, buf);
    s_check(&pl, &b, &v, LG_APPEND, 2000, ks, vs);
    ck_assert_uint_eq(pl.cap, 2048);
    /* Calls using under a quarter: kept for LG_PLAN_KEEP_CALLS - 1 of
     * them, unless a call of the usual size comes between. */
    for (unsigned i = 0; i + 1 < LG_PLAN_KEEP_CALLS; i++) {
        s_check(&pl, &b, &v, LG_APPEND, 10, ks + i, vs + i);
        ck_assert_uint_eq(pl.cap, 2048);
    }
    s_check(&pl, &b, &v, LG_APPEND, 1500, ks, vs);
    for (unsigned i = 0; i + 1 < LG_PLAN_KEEP_CALLS; i++)
        s_check(&pl, &b, &v, LG_APPEND, 10, ks + i, vs + i);
    ck_assert_uint_eq(pl.cap, 2048);
    /* The last of them in a row: released. */
    s_check(&pl, &b, &v, LG_APPEND, 10, ks, vs);
    ck_assert_uint_eq(pl.cap, 0);
    ck_assert_ptr_null(b.p);
    /* Up to LG_PLAN_KEEP_MIN entries are kept however small the calls. */
    s_check(&pl, &b, &v, LG_APPEND, 1000, ks, vs);
    ck_assert_uint_eq(pl.cap, 1024);
    for (unsigned i = 0; i < 2 * LG_PLAN_KEEP_CALLS; i++)
        s_check(&pl, &b, &v, LG_APPEND, 1, ks + i, vs + i);
    ck_assert_uint_eq(pl.cap, 1024);

    /* A record buffer past LG_PLAN_KEEP_BYTES: released too. */
    enum { LONG = 4000 };
    size_t nl = LG_PLAN_KEEP_BYTES / LONG + 1;
    char *longk = malloc(nl * LONG);
    ck_assert_ptr_nonnull(longk);
    for (size_t i = 0; i < nl; i++) {
        memset(longk + i * LONG, 'x', LONG);
        snprintf(longk + i * LONG + LONG - 8, 8, "%07zu", i);
        ks[i] = PD_KEY(longk + i * LONG, LONG - 1);
        vs[i] = PD_BYTES(buf, 1);
    }
    TU_OK(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 4, nl, ks, vs), NULL);
    ck_assert_uint_gt(b.cap, LG_PLAN_KEEP_BYTES);
    lg_hdr h;
    ck_assert_int_eq(lg_hdr_parse(b.p, &h), 0);
    ck_assert_uint_eq(h.nkeys, nl);
    lg_plan_done(&pl, nl, &b, &v);
    ck_assert_ptr_null(b.p);
    ck_assert_uint_eq(pl.cap, 0);
    free(longk);

    lg_plan_free(&pl);
    pd__buf_free(&b);
    free(v.iov);
    free(names);
    free(ks);
    free(vs);
    free(buf);
}
END_TEST

/* n values of vs bytes each to nk keys in turn (key i % nk): value i at
 * arena + i * vs, so a key's values never follow each other in memory. */
static void s_turns(size_t n, size_t nk, size_t vs, char (*names)[8],
                    pd_key *ks, pd_bytes *v, const unsigned char *arena) {
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], 8, "g%05zu", i % nk);
        ks[i] = PD_KEY(names[i], 6);
        v[i] = PD_BYTES(arena + i * vs, vs);
    }
}

START_TEST(small_values_copied) {
    enum { N = 1000 };
    unsigned char *arena = malloc((size_t)N * 4096);
    char(*names)[8] = calloc(400000, sizeof *names);
    pd_key *ks = calloc(400000, sizeof *ks);
    pd_bytes *vs = calloc(400000, sizeof *vs);
    ck_assert(arena && names && ks && vs);
    for (size_t i = 0; i < (size_t)N * 4096; i++)
        arena[i] = (unsigned char)(i * 29);
    lg_plan pl = {0};
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    lg_iov v = {0};
    /* 1,000 values of 100 bytes, 64 keys in turn: copied, one buffer. */
    s_turns(N, 64, 100, names, ks, vs, arena);
    s_check(&pl, &b, &v, LG_APPEND, N, ks, vs);
    TU_OK(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 5, N, ks, vs), NULL);
    ck_assert_uint_eq(v.n, 1);
    lg_plan_done(&pl, N, &b, &v);
    /* Of 4 KiB: each its own buffer. */
    s_turns(N, 64, 4096, names, ks, vs, arena);
    s_check(&pl, &b, &v, LG_APPEND, N, ks, vs);
    TU_OK(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 6, N, ks, vs), NULL);
    ck_assert_uint_eq(v.n, N + 2);
    lg_plan_done(&pl, N, &b, &v);
    /* Too few to copy. */
    s_turns(LG_COPY_MIN - 1, 2, 100, names, ks, vs, arena);
    TU_OK(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 7, LG_COPY_MIN - 1, ks, vs),
          NULL);
    ck_assert_uint_eq(v.n, LG_COPY_MIN + 1);
    lg_plan_done(&pl, LG_COPY_MIN - 1, &b, &v);
    /* A record past what a handle keeps: not copied (40 MB of values of
     * 100 bytes, each from one of two places, alternating). */
    for (size_t i = 0; i < 400000; i++) {
        snprintf(names[i], 8, "h%05zu", i % 2);
        ks[i] = PD_KEY(names[i], 6);
        vs[i] = PD_BYTES(arena + (i % 2) * 200, 100);
    }
    TU_OK(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 8, 400000, ks, vs), NULL);
    ck_assert_uint_eq(v.n, 400002);
    lg_plan_done(&pl, 400000, &b, &v);
    lg_plan_free(&pl);
    pd__buf_free(&b);
    free(v.iov);
    free(arena);
    free(names);
    free(ks);
    free(vs);
}
END_TEST

START_TEST(limits) {
    /* More occurrences than a record holds: refused before any work. */
    lg_plan pl = {0};
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    lg_iov v = {0};
    pd_key k = K("a");
    ck_assert_int_eq(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 1,
                                      (size_t)LG_MAX_KEYS + 1, &k, NULL),
                     PD_ERR_LIMIT);
    lg_plan_done(&pl, (size_t)LG_MAX_KEYS + 1, &b, &v);
    ck_assert_uint_eq(pl.cap, 0);
    /* Data past what a size holds: PD_ERR_LIMIT (the values are never
     * read). */
    pd_key ks[3] = {K("a"), K("b"), K("a")};
    pd_bytes vs[3] = {PD_BYTES("x", SIZE_MAX / 2), PD_BYTES("y", SIZE_MAX / 2),
                      PD_BYTES("z", 3)};
    ck_assert_int_eq(lg_rec_build_iov(&b, &v, &pl, LG_APPEND, 1, 3, ks, vs),
                     PD_ERR_LIMIT);
    lg_plan_done(&pl, 3, &b, &v);
    /* The same plan still builds right afterwards. */
    vs[0] = V("x");
    vs[1] = V("y");
    vs[2] = V("z");
    s_check(&pl, &b, &v, LG_APPEND, 3, ks, vs);
    lg_plan_free(&pl);
    pd__buf_free(&b);
    free(v.iov);
}
END_TEST

/* ------------------------------------------------------ Through a store */

static int g_segs; /* data buffers of the last writev */

static ssize_t f_writev_count(int fd, const struct iovec *iov, int cnt) {
    g_segs = cnt - 2;
    return writev(fd, iov, cnt);
}

START_TEST(store_reads_back) {
    /* One handle appends batches of every shape and size (one far past
     * the plan's bound, then small ones); another reads every key back. */
    enum { S_ARENA = 1 << 20, NMAX = LG_PLAN_KEEP_MAX + 100 };
    s_pool();
    unsigned char *arena = malloc(S_ARENA);
    pd_key *ks = calloc(NMAX, sizeof *ks);
    pd_bytes *vs = calloc(NMAX, sizeof *vs);
    int *pidx = calloc(NMAX, sizeof *pidx);
    ck_assert(arena && ks && vs && pidx);
    for (size_t i = 0; i < S_ARENA; i++) arena[i] = (unsigned char)s_rand();
    /* The model: each pool key's bytes (1-tuples are their flat key's). */
    unsigned char *want[S_POOL];
    size_t wlen[S_POOL] = {0}, wcap[S_POOL];
    for (int i = 0; i < S_POOL; i++) {
        want[i] = malloc(wcap[i] = 1 << 16);
        ck_assert_ptr_nonnull(want[i]);
    }
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    for (int round = 0; round < 60; round++) {
        size_t n = round == 20 ? NMAX : 1 + s_below(round % 5 ? 300 : 3000);
        if (round == 20) {
            for (size_t i = 0; i < n; i++) {
                int p = (int)(i % S_POOL);
                ks[i] = g_pool[p];
                pidx[i] = p % 8 == 7 ? p - 1 : p;
                vs[i] = PD_BYTES(arena + i % 4096, i % 3);
            }
        } else {
            s_batch(n, (int)s_below(4), s_below(2), ks, vs, pidx, arena,
                    S_ARENA);
        }
        TU_OK(pd_append(s, n, ks, vs, 0), s);
        for (size_t i = 0; i < n; i++) {
            int p = pidx[i];
            if (wlen[p] + vs[i].size > wcap[p]) {
                want[p] =
                    realloc(want[p], wcap[p] = 2 * (wlen[p] + vs[i].size));
                ck_assert_ptr_nonnull(want[p]);
            }
            if (vs[i].size) memcpy(want[p] + wlen[p], vs[i].data, vs[i].size);
            wlen[p] += vs[i].size;
        }
        if (round % 10 == 9 || round == 20)
            for (int p = 0; p < S_POOL; p++)
                if (p % 8 != 7) tu_expect(r, g_pool[p], want[p], wlen[p]);
    }
    /* A batch ordered by key in one buffer: one data buffer in writev. */
    char(*names)[8] = calloc(1000, sizeof *names);
    ck_assert_ptr_nonnull(names);
    s_sorted(1000, 100, names, ks, vs, arena);
    pd__sys_table.writev = f_writev_count;
    TU_OK(pd_append(s, 1000, ks, vs, 0), s);
    pd__sys_reset();
    ck_assert_int_eq(g_segs, 1);
    tu_expect(r, ks[999], arena + 99900, 100);
    TU_OK(pd_close(&r), NULL);
    fx_end(&f, &s);
    for (int i = 0; i < S_POOL; i++) free(want[i]);
    free(names);
    free(arena);
    free(ks);
    free(vs);
    free(pidx);
}
END_TEST

/* Bytes of the largest writev call, the calls, and the call that fails
 * with ENOSPC (0: none). */
static size_t g_most;
static int g_ncalls, g_fail_at;

static ssize_t f_writev_pieces(int fd, const struct iovec *iov, int cnt) {
    size_t sum = 0;
    for (int i = 0; i < cnt; i++) sum += iov[i].iov_len;
    if (sum > g_most) g_most = sum;
    if (++g_ncalls == g_fail_at) {
        errno = ENOSPC;
        return -1;
    }
    return writev(fd, iov, cnt);
}

START_TEST(written_in_pieces) {
    /* A record of 3.5 MiB: a value of 2.5 MiB (cut), 4,096 of 256 bytes
     * in one buffer, and a 2 MiB key table's worth of keys. */
    enum { N = 4097, BIG = 5 << 19, SMALL = 256 };
    unsigned char *big = malloc(BIG), *small = malloc((size_t)N * SMALL);
    char(*names)[8] = calloc(N, sizeof *names);
    pd_key *ks = calloc(N, sizeof *ks);
    pd_bytes *vs = calloc(N, sizeof *vs);
    ck_assert(big && small && names && ks && vs);
    for (size_t i = 0; i < BIG; i++) big[i] = (unsigned char)(i * 7);
    for (size_t i = 0; i < (size_t)N * SMALL; i++) small[i] = (unsigned char)i;
    s_sorted(N, SMALL, names, ks, vs, small);
    vs[N / 2] = PD_BYTES(big, BIG);
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    pd__sys_table.writev = f_writev_pieces;
    TU_OK(pd_append(s, N, ks, vs, 0), s);
    ck_assert_uint_le(g_most, LG_WRITE_PIECE);
    ck_assert_int_ge(g_ncalls, 4);
    pd__sys_reset();
    tu_expect(r, ks[N / 2], big, BIG);
    tu_expect(r, ks[N - 1], small + (size_t)(N - 1) * SMALL, SMALL);
    /* A piece failing after others were written: nothing of the record
     * stays, the error names the call. */
    long long size = s_seg_bytes(f.root);
    g_ncalls = 0;
    g_fail_at = 3;
    pd__sys_table.writev = f_writev_pieces;
    ck_assert_int_eq(pd_append(s, N, ks, vs, 0), PD_ERR_IO);
    pd__sys_reset();
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "writev("));
    ck_assert_int_eq(s_seg_bytes(f.root), size);
    tu_expect(r, ks[N / 2], big, BIG);
    /* And the next append is whole. */
    TU_OK(pd_append(s, N, ks, vs, 0), s);
    unsigned char twice[2 * SMALL];
    memcpy(twice, small, SMALL);
    memcpy(twice + SMALL, small, SMALL);
    tu_expect(r, ks[0], twice, sizeof twice);
    TU_OK(pd_close(&r), NULL);
    fx_end(&f, &s);
    free(big);
    free(small);
    free(names);
    free(ks);
    free(vs);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"random_batches", random_batches, 0},
        {"adjacent_values_one_buffer", adjacent_values_one_buffer, 0},
        {"kept_and_released", kept_and_released, 0},
        {"small_values_copied", small_values_copied, 0},
        {"limits", limits, 0},
        {"store_reads_back", store_reads_back, 0},
        {"written_in_pieces", written_in_pieces, 0},
    };
    return TU_RUN_CASES("test_log_plan", cases, 300, 0);
}
