/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * A Log get of several keys (src/log/gather.c): the values equal a model
 * and the same keys' gets one at a time, over layouts of several writers,
 * deletes, isets, compactions, values of every size, repeated and missing
 * keys; neighbouring extents are read with one system call; more extents
 * than one gather holds; a flipped bit, a truncated segment and preadv
 * failing (EIO, EINTR, short reads) through the syscall table.
 */
#include "logfix.h"

#include <errno.h>
#include <sys/uio.h>

/* ------------------------------------------------------------- Counting */

static long g_preadv, g_fail_at, g_short;
static int g_err;
static ssize_t c_preadv(int fd, const struct iovec *iov, int n, off_t off) {
    long c = __atomic_add_fetch(&g_preadv, 1, __ATOMIC_RELAXED);
    if (c == g_fail_at) {
        errno = g_err;
        return -1;
    }
    if (g_short && iov[0].iov_len > (size_t)g_short) {
        struct iovec one = {iov[0].iov_base, (size_t)g_short};
        return preadv(fd, &one, 1, off);
    }
    return preadv(fd, iov, n, off);
}

static void s_spy(long fail_at, int err, long short_reads) {
    g_preadv = 0;
    g_fail_at = fail_at;
    g_err = err;
    g_short = short_reads;
    pd__sys_table.preadv = c_preadv;
}

/* ---------------------------------------------------------------- Model */

enum { NK = 48 };

typedef struct model {
    char *v[NK];
    size_t n[NK];
} model;

static void s_name(char out[16], int k) { snprintf(out, 16, "k%03d", k); }

static void s_model_add(model *m, int k, const char *p, size_t n, bool set) {
    if (set) m->n[k] = 0;
    m->v[k] = realloc(m->v[k], m->n[k] + n + 1);
    ck_assert_ptr_nonnull(m->v[k]);
    memcpy(m->v[k] + m->n[k], p, n);
    m->n[k] += n;
}

static void s_model_free(model *m) {
    for (int k = 0; k < NK; k++) free(m->v[k]);
}

/* Value bytes of record r for key k: n bytes that tell them apart. */
static void s_fill(char *p, size_t n, int k, int r) {
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (unsigned)(k * 7 + r * 13 + (int)i) % 26);
}

/* n bytes equal at a and b (either may be NULL when n is 0). */
static bool s_same(const void *a, const void *b, size_t n) {
    return n == 0 || !memcmp(a, b, n);
}

static size_t s_size(unsigned *seed) {
    static const size_t sizes[] = {0, 1, 17, 100, 255, 3000, 5000, 70000};
    unsigned x = (unsigned)rand_r(seed) % 16;
    return x < 8 ? sizes[x] : (size_t)(rand_r(seed) % 400);
}

/* Gets keys[0..n) in one call and checks every value against m, and
 * against the same key's get on its own. */
static void s_check_batch(pd_store *s, const model *m, size_t n,
                          const int *ks) {
    pd_key keys[2 * NK];
    char names[2 * NK][16];
    for (size_t i = 0; i < n; i++) {
        s_name(names[i], ks[i]);
        keys[i] = PD_KEY(names[i], strlen(names[i]));
    }
    pd_result *r = NULL;
    TU_OK(pd_get(s, n, keys, &r, 0), s);
    ck_assert_uint_eq(pd_result_count(r), n);
    for (size_t i = 0; i < n; i++) {
        pd_bytes v = pd_result_value(r, i);
        int k = ks[i];
        ck_assert_msg(v.size == m->n[k] && s_same(v.data, m->v[k], v.size),
                      "%s: %zu bytes, the model %zu", names[i], v.size,
                      m->n[k]);
        char *one = NULL;
        size_t len = 0;
        TU_OK(tu_fetch1(s, keys[i], &one, &len), s);
        ck_assert(len == v.size && s_same(one, v.data, len));
        free(one);
    }
    pd_result_free(&r);
    /* Into a caller's buffer, small and large. */
    static char buf[1 << 22];
    for (size_t cap = 64; cap <= sizeof buf; cap *= 256) {
        TU_OK(pd_get_into(s, n, keys, buf, cap, &r, 0), s);
        for (size_t i = 0; i < n; i++) {
            pd_bytes v = pd_result_value(r, i);
            ck_assert(v.size == m->n[ks[i]]);
            ck_assert(s_same(v.data, m->v[ks[i]], v.size));
        }
        pd_result_free(&r);
    }
}

/* ---------------------------------------------------------------- Tests */

/* Three writers (segments) append batches of keys in random order and
 * sizes, delete and iset some, compact once; a reader's batched gets of
 * random keys (repeated, missing, in any order) match the model. */
START_TEST(batched_gets_match_the_model) {
    unsigned seed = 1000u + (unsigned)_i;
    fx f;
    pd_store *w[3];
    w[0] = fx_start(&f);
    w[1] = fx_open(&f);
    w[2] = fx_open(&f);
    pd_store *rd = fx_open(&f);
    model m = {{0}, {0}};
    static char vals[NK][70000];
    bool isets[3][NK] = {{false}};
    for (int r = 0; r < 60; r++) {
        int nb = 1 + rand_r(&seed) % NK, op = rand_r(&seed) % 12;
        pd_key keys[NK];
        pd_bytes vs[NK];
        char names[NK][16];
        bool used[NK] = {false};
        int n = 0;
        bool sorted = rand_r(&seed) % 2;
        for (int i = 0; i < nb; i++) {
            int k = sorted ? (i * NK) / nb : rand_r(&seed) % NK;
            if (used[k]) continue;
            used[k] = true;
            s_name(names[n], k);
            keys[n] = PD_KEY(names[n], strlen(names[n]));
            size_t sz = s_size(&seed);
            s_fill(vals[n], sz, k, r);
            vs[n] = PD_BYTES(vals[n], sz);
            n++;
        }
        int wi = rand_r(&seed) % 3;
        pd_store *s = w[wi];
        if (op == 0) {
            TU_OK(pd_delete(s, (size_t)n, keys, 0), s);
            for (int i = 0; i < n; i++) m.n[atoi(names[i] + 1)] = 0;
        } else {
            TU_OK(op == 1 ? pd_iset(s, (size_t)n, keys, vs, 0)
                          : pd_append(s, (size_t)n, keys, vs, 0),
                  s);
            for (int i = 0; i < n; i++) {
                int k = atoi(names[i] + 1);
                /* A handle's second iset of a key does nothing. */
                if (op == 1 && isets[wi][k]) continue;
                if (op == 1) isets[wi][k] = true;
                s_model_add(&m, k, vs[i].data, vs[i].size, op == 1);
            }
        }
        if (r == 30) TU_OK(pd_log_compact(w[0], 0), w[0]);
        if (r % 10 == 9) {
            int ks[2 * NK], nk = 1 + rand_r(&seed) % (2 * NK);
            for (int i = 0; i < nk; i++)
                ks[i] = rand_r(&seed) % 3 ? rand_r(&seed) % NK : i % NK;
            s_check_batch(rd, &m, (size_t)nk, ks);
        }
    }
    int all[NK];
    for (int k = 0; k < NK; k++) all[k] = k;
    s_check_batch(rd, &m, NK, all);
    for (int i = 0; i < 3; i++) TU_OK(pd_close(&w[i]), NULL);
    s_check_batch(rd, &m, NK, all);
    s_model_free(&m);
    fx_end(&f, &rd);
}
END_TEST

/* NR records of NP keys of 100 bytes: a get of every key reads a record's
 * extents with one preadv; every other key (gaps of 100 bytes) too; with
 * gaps of 5,000 bytes, one per extent. */
START_TEST(neighbouring_extents_read_together) {
    enum { NP = 200, NR = 8 };
    fx f;
    pd_store *w = fx_start(&f);
    static char big[NP][5000];
    pd_key keys[NP];
    pd_bytes vs[NP];
    char names[NP][16];
    for (int pass = 0; pass < 2; pass++) {
        size_t sz = pass == 0 ? 100 : 5000;
        pd_store *rd = fx_open(&f);
        TU_OK(pd_drop(w, 0), w);
        for (int r = 0; r < NR; r++) {
            for (int p = 0; p < NP; p++) {
                snprintf(names[p], sizeof names[p], "p%04d", p);
                keys[p] = PD_KEY(names[p], strlen(names[p]));
                s_fill(big[p], sz, p, r);
                vs[p] = PD_BYTES(big[p], sz);
            }
            TU_OK(pd_append(w, NP, keys, vs, 0), w);
        }
        for (int step = 1; step <= 2; step++) {
            pd_key ask[NP];
            size_t n = 0;
            for (int p = 0; p < NP; p += step) ask[n++] = keys[p];
            pd_result *res = NULL;
            s_spy(0, 0, 0);
            TU_OK(pd_get(rd, n, ask, &res, 0), rd);
            long calls = g_preadv;
            pd__sys_reset();
            for (size_t i = 0; i < n; i++) {
                pd_bytes v = pd_result_value(res, i);
                ck_assert_uint_eq(v.size, NR * sz);
                char want[5000];
                for (int r = 0; r < NR; r++) {
                    s_fill(want, sz, (int)(i * (size_t)step), r);
                    ck_assert(!memcmp((const char *)v.data + r * sz, want, sz));
                }
            }
            pd_result_free(&res);
            if (sz == 100 || step == 1) /* one run a record (under 1 MiB) */
                ck_assert_msg(calls == NR, "%ld preadv calls for %d records",
                              calls, NR);
            else /* gaps of 5,000 bytes: a run an extent */
                ck_assert_msg(calls == (long)(NR * n), "%ld preadv calls",
                              calls);
        }
        TU_OK(pd_close(&rd), NULL);
    }
    fx_end(&f, &w);
}
END_TEST

/* A batch of more extents than one gather holds (LG_GATHER_MAX) is split;
 * a value over LG_GATHER_RUN is read whole. */
START_TEST(more_extents_than_a_gather) {
    enum { NP = 300, NR = 1000 };
    fx f;
    pd_store *w = fx_start(&f);
    pd_store *rd = fx_open(&f);
    pd_key keys[NP];
    pd_bytes vs[NP];
    char names[NP][16], c[NP];
    for (int r = 0; r < NR; r++) {
        for (int p = 0; p < NP; p++) {
            snprintf(names[p], sizeof names[p], "p%04d", p);
            keys[p] = PD_KEY(names[p], strlen(names[p]));
            c[p] = (char)('a' + (p + r) % 26);
            vs[p] = PD_BYTES(&c[p], 1);
        }
        TU_OK(pd_append(w, NP, keys, vs, 0), w);
    }
    size_t bigsz = (size_t)3 << 20;
    char *big = malloc(bigsz);
    ck_assert_ptr_nonnull(big);
    s_fill(big, bigsz, 1, 2);
    pd_bytes bv = PD_BYTES(big, bigsz);
    TU_OK(pd_append(w, 1, &keys[NP - 1], &bv, 0), w);
    pd_result *res = NULL;
    TU_OK(pd_get(rd, NP, keys, &res, 0), rd);
    for (int p = 0; p < NP; p++) {
        pd_bytes v = pd_result_value(res, (size_t)p);
        ck_assert_uint_eq(v.size, NR + (p == NP - 1 ? bigsz : 0));
        const char *d = v.data;
        for (int r = 0; r < NR; r++) ck_assert_int_eq(d[r], 'a' + (p + r) % 26);
        if (p == NP - 1) ck_assert(!memcmp(d + NR, big, bigsz));
    }
    pd_result_free(&res);
    free(big);
    TU_OK(pd_close(&rd), NULL);
    fx_end(&f, &w);
}
END_TEST

/* The segment of the only writer, as a path. */
static void s_segment(const fx *f, char *out, size_t cap) {
    s_only(f->root, "w-", out, cap);
}

/* Offset of the first occurrence of needle in the file at path. */
static long s_find(const char *path, const char *needle) {
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++)
        if (!memcmp(buf + i, needle, nl)) return (long)i;
    ck_abort_msg("%s not in %s", needle, path);
    return -1;
}

/* Writes NR records of keys a, b, c, d (their values tell them apart). */
static void s_abcd(pd_store *w) {
    for (int r = 0; r < 4; r++) {
        pd_key ks[] = {K("a"), K("b"), K("c"), K("d")};
        char v[4][32];
        pd_bytes vs[4];
        for (int i = 0; i < 4; i++) {
            snprintf(v[i], sizeof v[i], "<%c%d-value>", 'a' + i, r);
            vs[i] = V(v[i]);
        }
        TU_OK(pd_append(w, 4, ks, vs, 0), w);
    }
}

/* A flipped bit in c's value: a get of a..d fails naming c, the segment
 * and the offset; a get of the other keys still works. */
START_TEST(flipped_bit_names_the_key) {
    fx f;
    pd_store *w = fx_start(&f);
    pd_store *rd = fx_open(&f);
    s_abcd(w);
    char seg[PATH_MAX + 300];
    s_segment(&f, seg, sizeof seg);
    long off = s_find(seg, "<c2-value>");
    fx_flip(seg, off + 3, 1);
    pd_key all[] = {K("a"), K("b"), K("c"), K("d")};
    pd_result *res = NULL;
    int rc = pd_get(rd, 4, all, &res, 0);
    ck_assert_int_eq(rc, PD_ERR_CORRUPT);
    ck_assert_ptr_null(res);
    const char *msg = pd_errmsg(rd);
    char offs[32];
    snprintf(offs, sizeof offs, "offset %ld", off);
    ck_assert_msg(strstr(msg, "'c'") && strstr(msg, strrchr(seg, '/') + 1) &&
                      strstr(msg, offs) && strstr(msg, "checksum"),
                  "message: %s", msg);
    pd_key others[] = {K("d"), K("a"), K("b")};
    TU_OK(pd_get(rd, 3, others, &res, 0), rd);
    ck_assert_uint_eq(pd_result_value(res, 1).size, 4 * strlen("<a0-value>"));
    pd_result_free(&res);
    TU_OK(pd_close(&rd), NULL);
    fx_end(&f, &w);
}
END_TEST

/* The segment cut short after the reader indexed it: PD_ERR_CORRUPT naming
 * the segment, not a short value. */
START_TEST(truncated_segment_is_corrupt) {
    fx f;
    pd_store *w = fx_start(&f);
    pd_store *rd = fx_open(&f);
    s_abcd(w);
    pd_key all[] = {K("a"), K("b"), K("c"), K("d")};
    pd_result *res = NULL;
    TU_OK(pd_get(rd, 4, all, &res, 0), rd);
    pd_result_free(&res);
    char seg[PATH_MAX + 300];
    s_segment(&f, seg, sizeof seg);
    ck_assert_int_eq(truncate(seg, s_find(seg, "<b3-value>")), 0);
    int rc = pd_get(rd, 4, all, &res, 0);
    ck_assert_int_eq(rc, PD_ERR_CORRUPT);
    ck_assert_msg(strstr(pd_errmsg(rd), "ends before offset") &&
                      strstr(pd_errmsg(rd), strrchr(seg, '/') + 1),
                  "message: %s", pd_errmsg(rd));
    TU_OK(pd_close(&rd), NULL);
    TU_OK(pd_close(&w), NULL);
    fx_done(&f);
}
END_TEST

/* preadv failing with EIO: the get fails naming the key and the Log's
 * path, and the next get works; EINTR is retried; short reads are
 * continued. */
START_TEST(preadv_faults) {
    fx f;
    pd_store *w = fx_start(&f);
    pd_store *rd = fx_open(&f);
    s_abcd(w);
    pd_key all[] = {K("a"), K("b"), K("c"), K("d")};
    pd_result *res = NULL;
    s_spy(1, EIO, 0);
    int rc = pd_get(rd, 4, all, &res, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(rd), EIO);
    ck_assert_msg(strstr(pd_errmsg(rd), "'a'") &&
                      strstr(pd_errmsg(rd), f.root) &&
                      strstr(pd_errmsg(rd), "preadv"),
                  "message: %s", pd_errmsg(rd));
    for (int mode = 0; mode < 3; mode++) {
        if (mode == 1) s_spy(2, EINTR, 0);
        if (mode == 2) s_spy(0, 0, 3);
        TU_OK(pd_get(rd, 4, all, &res, 0), rd);
        long calls = g_preadv;
        pd__sys_reset();
        for (int i = 0; i < 4; i++) {
            pd_bytes v = pd_result_value(res, (size_t)i);
            char want[64];
            snprintf(want, sizeof want, "<%c0-value><%c1-value>", 'a' + i,
                     'a' + i);
            ck_assert_uint_eq(v.size, 4 * strlen("<a0-value>"));
            ck_assert(!memcmp(v.data, want, strlen(want)));
        }
        pd_result_free(&res);
        if (mode == 2) ck_assert_int_gt(calls, 20);
    }
    TU_OK(pd_close(&rd), NULL);
    fx_end(&f, &w);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"batched_gets_match_the_model", batched_gets_match_the_model, 6},
        {"neighbouring_extents_read_together",
         neighbouring_extents_read_together},
        {"more_extents_than_a_gather", more_extents_than_a_gather},
        {"flipped_bit_names_the_key", flipped_bit_names_the_key},
        {"truncated_segment_is_corrupt", truncated_segment_is_corrupt},
        {"preadv_faults", preadv_faults},
    };
    return TU_RUN_CASES("test_log_gather", cases, 120, 0);
}
