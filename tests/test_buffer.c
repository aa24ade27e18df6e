/* Buffer: a fast store spilling its largest keys into a slow one. */
#include "testutil.h"
#include "dict/arena.h"
#include "buffer/buffer.h"
#include "dict/dict.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* dict_refs_stay_valid asks malloc for 2^62 bytes; under AddressSanitizer
 * that must return NULL instead of aborting. */
__attribute__((visibility("default"), used)) const char *
__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}

/* ------------------------------------------------------------ Helpers */

static pd_store *s_dict(void) {
    pd_store *d = NULL;
    ck_assert_int_eq(pd_dict_open(&d), 0);
    return d;
}

/* Buffer over two new Dicts, owned. */
static pd_store *s_buf_dd(uint64_t limit) {
    pd_store *f = s_dict(), *sl = s_dict(), *b = NULL;
    int rc = pd_buffer_open(&b, &f, &sl, limit, 0);
    ck_assert_msg(rc == 0, "open: %s", pd_errmsg(NULL));
    ck_assert_ptr_null(f);
    ck_assert_ptr_null(sl);
    ck_assert_str_eq(pd_store_kind(b), "buffer");
    ck_assert_uint_eq(pd_buffer_memory_limit(b), limit);
    return b;
}

/* Bytes held by a store over all its keys. */
static uint64_t s_held(pd_store *s) {
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(s, &kl, 0), s);
    uint64_t t = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++)
        t += pd_keylist_size(kl, i);
    pd_keylist_free(&kl);
    return t;
}

/* ------------------------------------------- A tiny store that can fail */

/* "failing": a Dict behind a switch.  While `fail` is set, append and set
 * fail with PD_ERR_IO/ENOSPC and change nothing; while `fail_del` is set,
 * delete does.  Has no peek, so as a Buffer's fast store it exercises the
 * pd_get path. */
typedef struct t_fail {
    pd_store base;
    pd_store *inner;
    bool fail, fail_del;
    const char *fail_key; /* a delete reaching this flat key fails there */
    int failures;
    int gets, dels, keys; /* calls reaching the store (PD_BUFFER_PRIVATE) */
} t_fail;

static int t_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    t_fail *f = (t_fail *)s;
    char ks[PD__KEYSHORT_MAX];
    if (f->fail) {
        f->failures++;
        return pd__err(s, PD_ERR_IO, ENOSPC, "append %s: write(/fake/%zu)",
                       pd__key_short(&keys[0], ks), n);
    }
    int rc = pd_append(f->inner, n, keys, vals, flags & PD_FSYNC);
    return rc ? pd__err_inner(s, f->inner, rc) : 0;
}

static int t_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    f->gets++;
    pd_result *ir = NULL;
    int rc = pd_get(f->inner, n, keys, &ir, 0);
    if (rc) return pd__err_inner(s, f->inner, rc);
    for (size_t i = 0; i < n; i++) {
        pd_bytes v = pd_result_value(ir, i);
        if (pd__result_put(r, v.data, v.size) || pd__result_next(r)) {
            pd_result_free(&ir);
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "get");
        }
    }
    pd_result_free(&ir);
    return 0;
}

static int t_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    char ks[PD__KEYSHORT_MAX];
    f->dels++;
    for (size_t i = 0; f->fail_key && i < n; i++) {
        if (keys[i].nparts || keys[i].size != strlen(f->fail_key) ||
            memcmp(keys[i].data, f->fail_key, keys[i].size) != 0)
            continue;
        /* As a real store: the keys before the one named are deleted. */
        int rc = i ? pd_delete(f->inner, i, keys, 0) : 0;
        if (rc) return pd__err_inner(s, f->inner, rc);
        f->failures++;
        return pd__err(s, PD_ERR_IO, EIO, "delete %s: unlink(/fake/%zu)",
                       pd__key_short(&keys[i], ks), n);
    }
    if (f->fail_del) {
        f->failures++;
        return pd__err(s, PD_ERR_IO, EIO, "delete %s: unlink(/fake/%zu)",
                       pd__key_short(&keys[0], ks), n);
    }
    int rc = pd_delete(f->inner, n, keys, 0);
    return rc ? pd__err_inner(s, f->inner, rc) : 0;
}

static int t_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    if (f->fail) {
        f->failures++;
        return pd__err(s, PD_ERR_IO, ENOSPC, "set: write(/fake)");
    }
    pthread_mutex_lock(&f->inner->mu);
    int rc = f->inner->ops->set(f->inner, n, keys, vals, PD_NOLOCK);
    pthread_mutex_unlock(&f->inner->mu);
    return rc ? pd__err_inner(s, f->inner, rc) : 0;
}

static int t_drop(pd_store *s, unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    int rc = pd_drop(f->inner, 0);
    return rc ? pd__err_inner(s, f->inner, rc) : 0;
}

static int t_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    f->keys++;
    pd_keylist *ik = NULL;
    int rc = pd_keys(f->inner, &ik, 0);
    if (rc) return pd__err_inner(s, f->inner, rc);
    for (size_t i = 0; i < pd_keylist_count(ik) && rc == 0; i++) {
        pd_key k;
        pd_keylist_key(ik, i, &k);
        rc = pd__keylist_add(kl, &k, pd_keylist_size(ik, i));
    }
    pd_keylist_free(&ik);
    return rc;
}

static int t_destroy(pd_store *s) {
    t_fail *f = (t_fail *)s;
    return pd_close(&f->inner);
}

static const pd_store_ops t_fail_ops = {
    .kind = "failing",
    .append = t_append,
    .get = t_get,
    .del = t_del,
    .set = t_set,
    .drop = t_drop,
    .keys = t_keys,
    .destroy = t_destroy,
};

static t_fail *t_fail_open(void) {
    t_fail *f = calloc(1, sizeof *f);
    ck_assert_int_eq(pd__store_init(&f->base, &t_fail_ops), 0);
    ck_assert_int_eq(pd_dict_open(&f->inner), 0);
    return f;
}

/* ------------------------------------------------------------- Selection */

START_TEST(select_docstring) {
    /* keys_to_flush({'a': 20, 'b': 10, 'c': 15, 'd': 15, 'e': 10,
     *                'f': 25, 'g': 5}, 0.5) == ['f', 'a'] */
    uint64_t sizes[7] = {20, 10, 15, 15, 10, 25, 5};
    size_t out[7];
    size_t m = pd__buffer_keys_to_flush(sizes, 7, 0.5, 100000, out);
    ck_assert_uint_eq(m, 2);
    ck_assert_uint_eq(out[0], 5); /* f */
    ck_assert_uint_eq(out[1], 0); /* a */
    /* The Buffer's own fraction: only f (25 > 10% of 100, but >= 1). */
    m = pd__buffer_keys_to_flush(sizes, 7, 0.1, 20, out);
    ck_assert_uint_eq(m, 1);
    ck_assert_uint_eq(out[0], 5);
    /* Edge cases: nothing, one key, maxcount. */
    ck_assert_uint_eq(pd__buffer_keys_to_flush(sizes, 0, 0.1, 20, out), 0);
    m = pd__buffer_keys_to_flush(sizes, 1, 0.1, 20, out);
    ck_assert_uint_eq(m, 1);
    ck_assert_uint_eq(out[0], 0);
    uint64_t flat[100];
    size_t o2[50];
    for (int i = 0; i < 100; i++) flat[i] = 1;
    m = pd__buffer_keys_to_flush(flat, 100, 0.5, 20, o2);
    ck_assert_uint_eq(m, 20);
    for (size_t i = 0; i < m; i++) ck_assert_uint_eq(o2[i], i); /* ties */
    m = pd__buffer_keys_to_flush(flat, 100, 0.5, 100000, o2);
    ck_assert_uint_eq(m, 50);
}
END_TEST

/* Random cases against the reference's keys_to_flush itself. */
START_TEST(select_matches_reference) {
    if (!tu_have_python_partd()) {
        fprintf(stderr, "select_matches_reference: no Python partd, skipped\n");
        return;
    }
    char *dir = tu_mkdtemp();
    char in[512], outp[512], py[512];
    snprintf(in, sizeof in, "%s/cases", dir);
    snprintf(outp, sizeof outp, "%s/out", dir);
    snprintf(py, sizeof py, "%s/ktf.py", dir);
    const char *script =
        "import sys\n"
        "from partd.buffer import keys_to_flush\n"
        "for line in open(sys.argv[1]):\n"
        "    xs = [int(x) for x in line.split()]\n"
        "    d = {i: s for i, s in enumerate(xs[2:])}\n"
        "    print(' '.join(str(k) for k in keys_to_flush(d, xs[0] / 100,"
        " maxcount=xs[1])))\n";
    ck_assert_int_eq(tu_write_file(py, script, strlen(script)), 0);
    enum { NCASES = 300, MAXN = 80 };
    static uint64_t sizes[NCASES][MAXN];
    static size_t ns[NCASES], fr[NCASES], mc[NCASES];
    FILE *f = fopen(in, "w");
    ck_assert_ptr_nonnull(f);
    srand(12345);
    for (int c = 0; c < NCASES; c++) {
        ns[c] = 1 + (size_t)rand() % MAXN;
        fr[c] = c % 3 == 0 ? 10 : (size_t)(1 + rand() % 99);
        mc[c] = c % 2 ? 20 : (size_t)(1 + rand() % 40);
        fprintf(f, "%zu %zu", fr[c], mc[c]);
        int spread = c % 4 == 0 ? 4 : 1000; /* many ties, or few */
        for (size_t i = 0; i < ns[c]; i++) {
            sizes[c][i] = (uint64_t)(rand() % spread);
            fprintf(f, " %llu", (unsigned long long)sizes[c][i]);
        }
        fputc('\n', f);
    }
    fclose(f);
    ck_assert_int_eq(
        tu_system("%s %s %s > %s", PARTD_TEST_PYTHON, py, in, outp), 0);
    f = fopen(outp, "r");
    ck_assert_ptr_nonnull(f);
    char line[4096];
    for (int c = 0; c < NCASES; c++) {
        ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
        size_t out[MAXN];
        size_t m = pd__buffer_keys_to_flush(sizes[c], ns[c], fr[c] / 100.0,
                                            mc[c], out);
        char mine[4096];
        size_t at = 0;
        mine[0] = '\0';
        for (size_t i = 0; i < m; i++)
            at += (size_t)snprintf(mine + at, sizeof mine - at, "%s%zu",
                                   i ? " " : "", out[i]);
        line[strcspn(line, "\n")] = '\0';
        ck_assert_msg(strcmp(mine, line) == 0, "case %d: mine [%s] ref [%s]", c,
                      mine, line);
    }
    fclose(f);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* The Buffer spills what the selection says: with the docstring's sizes
 * held and a limit of 100, one more byte spills only f. */
START_TEST(select_in_buffer) {
    pd_store *f = s_dict(), *sl = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &f, &sl, 100, PD_BORROW), b);
    const char *names = "abcdefg";
    int sizes[7] = {20, 10, 15, 15, 10, 25, 5};
    static char fill[64];
    memset(fill, '.', sizeof fill);
    for (int i = 0; i < 7; i++)
        tu_append1(b, PD_KEY(names + i, 1), fill, (size_t)sizes[i]);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 100);
    ck_assert_uint_eq(tu_nkeys(sl), 0);
    tu_append1(b, PD_KEY_STR("h"), "!", 1);
    ck_assert_uint_eq(tu_nkeys(sl), 1);
    ck_assert_int_eq(tu_listed_size(sl, PD_KEY_STR("f")), 25);
    ck_assert_int_eq(tu_listed_size(f, PD_KEY_STR("f")), -1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 76);
    ck_assert_uint_eq(pd_dict_nbytes(f), 76);
    pd_close(&b);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(pd_dict_nbytes(sl), 101); /* close flushed */
    pd_close(&f);
    pd_close(&sl);
}
END_TEST

/* ---------------------------------------------------------------- Basics */

START_TEST(roundtrip_in_memory) {
    pd_store *b = s_buf_dd(1u << 20);
    pd_key a = PD_KEY_STR("a"), k2 = PD_KEY_STR("b");
    tu_append1(b, a, "Hello ", 6);
    tu_append1(b, k2, "x", 1);
    tu_append1(b, a, "World!", 6);
    tu_expect_str(b, a, "Hello World!");
    tu_expect_str(b, k2, "x");
    tu_expect_str(b, PD_KEY_STR("none"), "");
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 13);
    ck_assert_uint_eq(pd_dict_nbytes(pd_buffer_fast(b)), 13);
    ck_assert_uint_eq(pd_dict_nbytes(pd_buffer_slow(b)), 0);
    /* Accessors on something that is not a Buffer. */
    ck_assert_uint_eq(pd_buffer_memory_usage(pd_buffer_fast(b)), 0);
    ck_assert_ptr_null(pd_buffer_fast(pd_buffer_fast(b)));
    ck_assert_ptr_null(pd_buffer_slow(NULL));
    ck_assert_uint_eq(pd_buffer_memory_limit(NULL), 0);
    /* A get into a result that already holds values (nested batch): */
    pd_key ks[3] = {a, PD_KEY_STR("none"), k2};
    pd_result *r = NULL;
    TU_OK(pd_get(b, 3, ks, &r, 0), b);
    ck_assert_uint_eq(pd_result_count(r), 3);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 12);
    ck_assert_uint_eq(pd_result_value(r, 1).size, 0);
    ck_assert(memcmp(pd_result_value(r, 2).data, "x", 1) == 0);
    pd_result_free(&r);
    ck_assert_int_eq(pd_close(&b), 0);
}
END_TEST

/* Bytes come back in append order across spills (partd returns fast's
 * bytes before slow's). */
START_TEST(order_after_spill) {
    pd_store *b = s_buf_dd(100);
    pd_key k = PD_KEY_STR("x");
    char second[208];
    memcpy(second, "second-", 7);
    memset(second + 7, 'S', sizeof second - 7);
    tu_append1(b, k, "first-", 6);
    tu_append1(b, k, second, sizeof second);
    ck_assert_uint_gt(pd_dict_nbytes(pd_buffer_slow(b)), 0); /* spilled */
    tu_append1(b, k, "third", 5);
    char want[6 + 208 + 5];
    memcpy(want, "first-", 6);
    memcpy(want + 6, second, sizeof second);
    memcpy(want + 6 + sizeof second, "third", 5);
    tu_expect(b, k, want, sizeof want);
    ck_assert_int_eq(tu_listed_size(b, k), (long long)sizeof want);
    pd_close(&b);
}
END_TEST

/* A random workload against a model: fast stays within limit + batch, the
 * counts match fast, and every key reads back exactly. */
#define M_KEYS 37
typedef struct s_model {
    char *data[M_KEYS];
    size_t len[M_KEYS], cap[M_KEYS];
} s_model;

static void s_model_add(s_model *m, int k, const char *v, size_t n) {
    if (m->len[k] + n > m->cap[k]) {
        m->cap[k] = (m->len[k] + n) * 2 + 16;
        m->data[k] = realloc(m->data[k], m->cap[k]);
    }
    memcpy(m->data[k] + m->len[k], v, n);
    m->len[k] += n;
}

static void s_model_check(s_model *m, pd_store *s) {
    uint64_t total = 0;
    for (int k = 0; k < M_KEYS; k++) {
        char name[16];
        snprintf(name, sizeof name, "key%d", k);
        tu_expect(s, PD_KEY_STR(name), m->data[k], m->len[k]);
        total += m->len[k];
    }
    ck_assert_uint_eq(s_held(s), total);
}

static void s_model_free(s_model *m) {
    for (int k = 0; k < M_KEYS; k++) free(m->data[k]);
}

static void s_random_workload(pd_store *b, pd_store *fast, uint64_t limit,
                              int rounds, unsigned seed) {
    s_model m;
    memset(&m, 0, sizeof m);
    srand(seed);
    static char src[8192];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (char)('a' + i % 26);
    char names[8][16];
    for (int r = 0; r < rounds; r++) {
        pd_key ks[8];
        pd_bytes vs[8];
        int n = 1 + rand() % 8;
        uint64_t batch = 0;
        int kidx[8];
        for (int i = 0; i < n; i++) {
            kidx[i] = rand() % M_KEYS;
            snprintf(names[i], sizeof names[i], "key%d", kidx[i]);
            size_t len = (size_t)(rand() % (rand() % 10 == 0 ? 3000 : 200));
            size_t off = (size_t)rand() % (sizeof src - len);
            ks[i] = PD_KEY_STR(names[i]);
            vs[i] = (pd_bytes){src + off, len};
            batch += len;
        }
        TU_OK(pd_append(b, (size_t)n, ks, vs, 0), b);
        for (int i = 0; i < n; i++)
            s_model_add(&m, kidx[i], vs[i].data, vs[i].size);
        uint64_t u = pd_buffer_memory_usage(b);
        /* Spilled after the append, as partd: at most the limit is left. */
        ck_assert_msg(u <= limit, "usage %llu > limit %llu (batch %llu)",
                      (unsigned long long)u, (unsigned long long)limit,
                      (unsigned long long)batch);
        if (fast) ck_assert_uint_eq(s_held(fast), u);
        if (r % 97 == 0) s_model_check(&m, b);
    }
    s_model_check(&m, b);
    s_model_free(&m);
}

START_TEST(memory_bound) {
    pd_store *b = s_buf_dd(4000);
    s_random_workload(b, pd_buffer_fast(b), 4000, 2000, 1);
    ck_assert_uint_gt(pd_dict_nbytes(pd_buffer_slow(b)), 0);
    /* flush everything: fast empty, usage 0, content unchanged */
    uint64_t before = s_held(b);
    TU_OK(pd_buffer_flush(b, 0, NULL, 0), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    ck_assert_uint_eq(pd_dict_nbytes(pd_buffer_fast(b)), 0);
    ck_assert_uint_eq(s_held(b), before);
    pd_close(&b);

    /* limit 0: every append ends in slow, fast holds nothing. */
    b = s_buf_dd(0);
    s_random_workload(b, pd_buffer_fast(b), 0, 300, 2);
    ck_assert_uint_eq(pd_dict_nbytes(pd_buffer_fast(b)), 0);
    pd_close(&b);
}
END_TEST

/* Nested: Buffer(Buffer(Dict, Dict), Dict) -- the outer fast store has no
 * peek, so spills read it with pd_get. */
START_TEST(nested_buffers) {
    pd_store *inner = s_buf_dd(1500), *slow = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &inner, &slow, 5000, 0), b);
    ck_assert_ptr_null(inner);
    s_random_workload(b, pd_buffer_fast(b), 5000, 1500, 3);
    pd_store *in = pd_buffer_fast(b);
    ck_assert_uint_gt(pd_dict_nbytes(pd_buffer_slow(in)), 0);
    ck_assert_uint_gt(pd_dict_nbytes(pd_buffer_slow(b)), 0);
    pd_close(&b);
}
END_TEST

/* A fast store without peek (the "failing" store, not failing). */
START_TEST(fast_without_peek) {
    t_fail *f = t_fail_open();
    pd_store *fast = &f->base, *slow = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &fast, &slow, 3000, 0), b);
    s_random_workload(b, pd_buffer_fast(b), 3000, 800, 4);
    pd_close(&b);
}
END_TEST

START_TEST(iset_delete_drop) {
    pd_store *b = s_buf_dd(1000);
    pd_store *fast = pd_buffer_fast(b), *slow = pd_buffer_slow(b);
    pd_key k = PD_KEY_STR("k");
    tu_append1(b, k, "old", 3);
    TU_OK(pd_buffer_flush(b, 1, &k, 0), b);
    ck_assert_uint_eq(pd_dict_nbytes(slow), 3);
    tu_append1(b, k, "more", 4);
    ck_assert_int_eq(tu_listed_size(b, k), 7);
    /* iset replaces both parts. */
    pd_bytes nv = {"new", 3}, zv = {"zzz", 3};
    TU_OK(pd_iset(b, 1, &k, &nv, 0), b);
    tu_expect_str(b, k, "new");
    ck_assert_uint_eq(pd_dict_nbytes(slow), 0);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 3);
    /* Idempotent. */
    TU_OK(pd_iset(b, 1, &k, &zv, 0), b);
    tu_expect_str(b, k, "new");
    /* The set bytes are counted: they can spill. */
    static char big[1500];
    memset(big, 'B', sizeof big);
    tu_append1(b, PD_KEY_STR("other"), big, 990);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 993);
    tu_append1(b, PD_KEY_STR("third"), "12345678", 8);
    ck_assert_uint_le(pd_buffer_memory_usage(b), 1000);
    tu_expect_str(b, k, "new");
    /* A set larger than the limit spills first, then sits in fast. */
    pd_key kb = PD_KEY_STR("bigset");
    pd_bytes bv = {big, sizeof big};
    TU_OK(pd_iset(b, 1, &kb, &bv, 0), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), sizeof big);
    ck_assert_uint_eq(pd_dict_nbytes(fast), sizeof big);
    tu_expect(b, kb, big, sizeof big);

    /* delete: from both stores and the counts. */
    tu_append1(b, k, "+tail", 5); /* k: "new" in slow, "+tail" in fast */
    tu_expect_str(b, k, "new+tail");
    uint64_t u = pd_buffer_memory_usage(b);
    pd_key dk[2] = {k, PD_KEY_STR("absent")};
    TU_OK(pd_delete(b, 2, dk, 0), b);
    tu_expect_str(b, k, "");
    ck_assert_int_eq(tu_listed_size(fast, k), -1);
    ck_assert_int_eq(tu_listed_size(slow, k), -1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), u - 5);
    tu_append1(b, k, "fresh", 5);
    tu_expect_str(b, k, "fresh");

    /* drop: both, counts cleared, iset memo forgotten. */
    TU_OK(pd_drop(b, 0), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    ck_assert_uint_eq(tu_nkeys(b), 0);
    ck_assert_uint_eq(tu_nkeys(fast), 0);
    ck_assert_uint_eq(tu_nkeys(slow), 0);
    TU_OK(pd_iset(b, 1, &k, &zv, 0), b);
    tu_expect_str(b, k, "zzz");
    pd_close(&b);
}
END_TEST

START_TEST(keys_union) {
    pd_store *b = s_buf_dd(1u << 20);
    pd_bytes parts[2] = {{"a", 1}, {"b", 1}};
    pd_key split = PD_KEY_TUPLE(parts, 2), flat = PD_KEY_STR("a/b"),
           only_slow = PD_KEY("\0", 1), only_fast = PD_KEY("", 0);
    tu_append1(b, split, "abc", 3);
    tu_append1(b, only_slow, "S", 1);
    pd_key mv[2] = {split, only_slow};
    TU_OK(pd_buffer_flush(b, 2, mv, 0), b);
    tu_append1(b, split, "de", 2);
    tu_append1(b, flat, "F", 1);
    tu_append1(b, only_fast, "ff", 2);
    ck_assert_uint_eq(tu_nkeys(b), 4);
    ck_assert_int_eq(tu_listed_size(b, split), 5);
    ck_assert_int_eq(tu_listed_size(b, flat), 1);
    ck_assert_int_eq(tu_listed_size(b, only_slow), 1);
    ck_assert_int_eq(tu_listed_size(b, only_fast), 2);
    tu_expect_str(b, split, "abcde");
    pd_close(&b);
}
END_TEST

START_TEST(flush_keys) {
    pd_store *b = s_buf_dd(1u << 20);
    pd_store *slow = pd_buffer_slow(b);
    tu_append1(b, PD_KEY_STR("a"), "1", 1);
    tu_append1(b, PD_KEY_STR("b"), "22", 2);
    tu_append1(b, PD_KEY_STR("c"), "333", 3);
    /* Repeated and unknown keys are fine; each key moves once. */
    pd_key ks[4] = {PD_KEY_STR("a"), PD_KEY_STR("zz"), PD_KEY_STR("a"),
                    PD_KEY_STR("c")};
    TU_OK(pd_buffer_flush(b, 4, ks, 0), b);
    ck_assert_int_eq(tu_listed_size(slow, PD_KEY_STR("a")), 1);
    ck_assert_int_eq(tu_listed_size(slow, PD_KEY_STR("c")), 3);
    ck_assert_int_eq(tu_listed_size(slow, PD_KEY_STR("zz")), -1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 2);
    /* Under the caller's lock, with PD_NOLOCK. */
    TU_OK(pd_lock(b), b);
    TU_OK(pd_buffer_flush(b, 0, NULL, PD_NOLOCK), b);
    TU_OK(pd_unlock(b), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    ck_assert_uint_eq(pd_dict_nbytes(slow), 6);
    tu_expect_str(b, PD_KEY_STR("b"), "22");
    /* Misuse. */
    ck_assert_int_eq(pd_buffer_flush(NULL, 0, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_buffer_flush(slow, 0, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_buffer_flush(b, 0, NULL, 0x80), PD_ERR_MISUSE);
    pd_key bad = {NULL, 5, NULL, 0};
    ck_assert_int_eq(pd_buffer_flush(b, 1, &bad, 0), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(b), "flush"));
    pd_close(&b);
}
END_TEST

/* ------------------------------------------------------------- Ownership */

START_TEST(ownership_and_misuse) {
    pd_store *f = s_dict(), *sl = s_dict(), *b = (pd_store *)&b;
    /* Misuse: nothing taken, pointers untouched, *out NULL. */
    ck_assert_int_eq(pd_buffer_open(&b, &f, &f, 10, 0), PD_ERR_MISUSE);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "buffer"));
    ck_assert_ptr_nonnull(f);
    pd_store *nul = NULL;
    ck_assert_int_eq(pd_buffer_open(&b, &nul, &sl, 10, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_buffer_open(&b, &f, &nul, 10, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_buffer_open(&b, NULL, &sl, 10, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_buffer_open(&b, &f, NULL, 10, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_buffer_open(NULL, &f, &sl, 10, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_buffer_open(&b, &f, &sl, 10, 0x1), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(sl);
    ck_assert_ptr_null(b);

    /* Borrowed: the caller keeps both and closes them after. */
    pd_store *f0 = f, *s0 = sl;
    TU_OK(pd_buffer_open(&b, &f, &sl, 10, PD_BORROW), b);
    ck_assert_ptr_eq(f, f0);
    ck_assert_ptr_eq(sl, s0);
    ck_assert_ptr_eq(pd_buffer_fast(b), f);
    ck_assert_ptr_eq(pd_buffer_slow(b), sl);
    tu_append1(b, PD_KEY_STR("k"), "abc", 3);
    tu_append1(b, PD_KEY_STR("j"), "0123456789", 10);
    tu_append1(b, PD_KEY_STR("e"), "", 0);
    ck_assert_uint_gt(pd_dict_nbytes(f), 0);
    ck_assert_int_eq(pd_close(&b), 0);
    ck_assert_ptr_null(b);
    /* Closing flushed everything into slow, empty keys included. */
    ck_assert_uint_eq(pd_dict_nbytes(f), 0);
    tu_expect_str(sl, PD_KEY_STR("j"), "0123456789");
    tu_expect_str(sl, PD_KEY_STR("k"), "abc");
    ck_assert_int_eq(tu_listed_size(sl, PD_KEY_STR("e")), 0);
    tu_append1(f, PD_KEY_STR("still"), "usable", 6);

    /* Owned: pointers nulled, closed with the Buffer. */
    TU_OK(pd_buffer_open(&b, &f, &sl, 10, 0), b);
    ck_assert_ptr_null(f);
    ck_assert_ptr_null(sl);
    tu_expect_str(b, PD_KEY_STR("k"), "abc");
    tu_expect_str(b, PD_KEY_STR("still"), "usable"); /* fast's own data */
    ck_assert_int_eq(pd_close(&b), 0);
    ck_assert_ptr_null(b);
}
END_TEST

/* ---------------------------------------------------------------- Errors */

START_TEST(failing_slow_keeps_data) {
    t_fail *fs = t_fail_open();
    pd_store *fast = s_dict(), *slow = &fs->base, *b = NULL;
    TU_OK(pd_buffer_open(&b, &fast, &slow, 100, PD_BORROW), b);
    static char v[200];
    memset(v, 'v', sizeof v);
    pd_key ka = PD_KEY_STR("a"), kb = PD_KEY_STR("b");
    tu_append1(b, ka, v, 60);
    fs->fail = true;
    /* b needs a spill of a first, which fails: nothing of b applied. */
    pd_bytes bv = {v, 60};
    int rc = pd_append(b, 1, &kb, &bv, 0);
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errcode(b), PD_ERR_IO);
    ck_assert_int_eq(pd_errno(b), ENOSPC);
    const char *msg = pd_errmsg(b);
    ck_assert_msg(strstr(msg, "buffer: ") == msg, "%s", msg);
    ck_assert_msg(strstr(msg, "failing: append 'a'") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "No space left on device") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "spill 'a'") != NULL, "%s", msg);
    ck_assert_int_eq(fs->failures, 1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 60);
    ck_assert_uint_eq(pd_dict_nbytes(fast), 60);
    tu_expect(b, ka, v, 60);
    tu_expect_str(b, kb, "");
    /* iset too. */
    ck_assert_int_eq(pd_iset(b, 1, &kb, &bv, 0), PD_ERR_IO);
    tu_expect_str(b, kb, "");
    /* An explicit flush fails the same way, keeping the key. */
    ck_assert_int_eq(pd_buffer_flush(b, 0, NULL, 0), PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(b), "failing: append") != NULL, "%s",
                  pd_errmsg(b));
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 60);
    tu_expect(b, ka, v, 60);
    /* Healed: everything works, nothing was lost. */
    fs->fail = false;
    TU_OK(pd_append(b, 1, &kb, &bv, 0), b);
    tu_expect(b, ka, v, 60);
    tu_expect(b, kb, v, 60);
    ck_assert_int_eq(tu_listed_size(slow, ka), 60);
    /* Closing with a failing slow reports it (fast is borrowed: keeps
     * what could not be flushed). */
    fs->fail = true;
    rc = pd_close(&b);
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(NULL), "failing") != NULL, "%s",
                  pd_errmsg(NULL));
    ck_assert_uint_eq(pd_dict_nbytes(fast), 60);
    pd_close(&fast);
    pd_close(&slow);
}
END_TEST

/* partd's placement: a batch is appended, then the largest keys are spilled
 * until fast holds at most the limit; a spilled key's batch values go to
 * slow with what fast held of it, in one append to slow. */
START_TEST(spill_after_append) {
    pd_store *f = s_dict(), *sl = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &f, &sl, 10, PD_BORROW), b);
    pd_key k[2] = {PD_KEY_STR("x"), PD_KEY_STR("y")};
    pd_bytes v1[2] = {{"Hello", 5}, {"abc", 3}};
    pd_bytes v2[2] = {{"World!", 6}, {"def", 3}};
    TU_OK(pd_append(b, 2, k, v1, 0), b);
    ck_assert_uint_eq(tu_nkeys(sl), 0);
    TU_OK(pd_append(b, 2, k, v2, 0), b);
    tu_expect_str(sl, k[0], "HelloWorld!");
    ck_assert_int_eq(tu_listed_size(f, k[0]), -1);
    tu_expect_str(f, k[1], "abcdef");
    ck_assert_int_eq(tu_listed_size(sl, k[1]), -1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 6);
    tu_expect_str(b, k[0], "HelloWorld!");
    /* A batch larger than the limit on its own key: all of it to slow. */
    pd_key kz = PD_KEY_STR("z");
    tu_append1(b, kz, "0123456789ab", 12);
    tu_expect_str(sl, kz, "0123456789ab");
    ck_assert_int_eq(tu_listed_size(f, kz), -1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 6);
    pd_close(&b);
    pd_close(&f);
    pd_close(&sl);
}
END_TEST

/* A failing slow store: the batch whose spill fails is not applied at all,
 * neither its spilled keys nor the others. */
START_TEST(failing_spill_applies_nothing) {
    t_fail *fs = t_fail_open();
    pd_store *fast = s_dict(), *slow = &fs->base, *b = NULL;
    TU_OK(pd_buffer_open(&b, &fast, &slow, 10, PD_BORROW), b);
    pd_key k[2] = {PD_KEY_STR("x"), PD_KEY_STR("y")};
    pd_bytes v1[2] = {{"Hello", 5}, {"abc", 3}};
    pd_bytes v2[2] = {{"World!", 6}, {"def", 3}};
    TU_OK(pd_append(b, 2, k, v1, 0), b);
    fs->fail = true;
    ck_assert_int_eq(pd_append(b, 2, k, v2, 0), PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(b), "spill 'x' to slow") != NULL, "%s",
                  pd_errmsg(b));
    tu_expect_str(b, k[0], "Hello");
    tu_expect_str(b, k[1], "abc");
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 8);
    ck_assert_uint_eq(pd_dict_nbytes(fast), 8);
    /* A new key chosen for spilling is forgotten too. */
    pd_key kn = PD_KEY_STR("new");
    pd_bytes vn = {"0123456789ab", 12};
    ck_assert_int_eq(pd_append(b, 1, &kn, &vn, 0), PD_ERR_IO);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 8);
    ck_assert_uint_eq(tu_nkeys(b), 2);
    fs->fail = false;
    TU_OK(pd_append(b, 2, k, v2, 0), b);
    tu_expect_str(slow, k[0], "HelloWorld!");
    tu_expect_str(fast, k[1], "abcdef");
    pd_close(&b);
    pd_close(&fast);
    pd_close(&slow);
}
END_TEST

/* A fast store failing after slow took the spilled keys: the error says
 * the batch was partly applied, and which part. */
START_TEST(failing_fast_after_spill_says_so) {
    t_fail *ff = t_fail_open();
    pd_store *fast = &ff->base, *slow = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &fast, &slow, 10, PD_BORROW), b);
    pd_key k[2] = {PD_KEY_STR("x"), PD_KEY_STR("y")};
    pd_bytes v1[2] = {{"Hello", 5}, {"abc", 3}};
    pd_bytes v2[2] = {{"World!", 6}, {"def", 3}};
    TU_OK(pd_append(b, 2, k, v1, 0), b);
    ff->fail = true;
    ck_assert_int_eq(pd_append(b, 2, k, v2, 0), PD_ERR_IO);
    const char *msg = pd_errmsg(b);
    ck_assert_msg(strstr(msg, "PARTLY APPLIED") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "1 keys spilled went to slow, the other 1 "
                              "values were not applied") != NULL,
                  "%s", msg);
    ck_assert_msg(strstr(msg, "No space left on device") != NULL, "%s", msg);
    ff->fail = false;
    tu_expect_str(b, k[0], "HelloWorld!");
    tu_expect_str(b, k[1], "abc");
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 3);
    pd_close(&b);
    pd_close(&fast);
    pd_close(&slow);
}
END_TEST

/* ---------------------------------------------------------------- Threads */

#define S_THREADS 4
#define S_ROUNDS 4000

/* Threads on s: see tu_threads_own_shared; then s holds every record twice
 * (own and shared keys). */
static void s_threads_on(pd_store *s) {
    tu_threads_own_shared(s, S_THREADS, S_ROUNDS);
    ck_assert_uint_eq(s_held(s), 2ull * S_THREADS * S_ROUNDS * 9);
}

START_TEST(threads) {
    pd_store *b = s_buf_dd(5000);
    s_threads_on(b);
    ck_assert_uint_le(pd_buffer_memory_usage(b), 5000 + 18);
    ck_assert_uint_gt(pd_dict_nbytes(pd_buffer_slow(b)), 0);
    pd_close(&b);
}
END_TEST

/* ------------------------------------------------------------------ File */

static pd_store *s_file_or_skip(const char *test) {
    pd_store *f = NULL;
    int rc = pd_file_open_temp(&f, NULL, 0);
    if (rc == PD_ERR_UNSUPPORTED) {
        fprintf(stderr, "%s: File store not available yet, skipped\n", test);
        return NULL;
    }
    ck_assert_msg(rc == 0, "file: %s", pd_errmsg(NULL));
    return f;
}

START_TEST(dict_over_file) {
    pd_store *file = s_file_or_skip("dict_over_file");
    if (!file) return;
    pd_store *fast = s_dict(), *b = NULL, *slow = file;
    TU_OK(pd_buffer_open(&b, &fast, &slow, 3000, PD_BORROW), b);
    s_random_workload(b, fast, 3000, 600, 5);
    ck_assert_uint_gt(s_held(file), 0);
    /* Order after spill, hostile keys included. */
    pd_bytes parts[2] = {{"..", 2}, {"/x", 2}};
    pd_key keys[3] = {PD_KEY("", 0), PD_KEY("a\0b", 3), PD_KEY_TUPLE(parts, 2)};
    static char big[4000];
    memset(big, 'B', sizeof big);
    for (int i = 0; i < 3; i++) {
        tu_append1(b, keys[i], "first-", 6);
        tu_append1(b, keys[i], big, sizeof big);
        tu_append1(b, keys[i], "-last", 5);
        size_t len = 0;
        char *got = tu_get1(b, &keys[i], &len);
        ck_assert_uint_eq(len, 6 + sizeof big + 5);
        ck_assert(memcmp(got, "first-", 6) == 0);
        ck_assert(memcmp(got + len - 5, "-last", 5) == 0);
        free(got);
    }
    uint64_t total = s_held(b);
    TU_OK(pd_close(&b), b);
    ck_assert_uint_eq(pd_dict_nbytes(fast), 0);
    ck_assert_uint_eq(s_held(file), total);
    pd_close(&fast);
    ck_assert_int_eq(pd_close(&file), 0);
}
END_TEST

START_TEST(threads_dict_over_file) {
    pd_store *file = s_file_or_skip("threads_dict_over_file");
    if (!file) return;
    pd_store *fast = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &fast, &file, 20000, 0), b);
    s_threads_on(b);
    pd_close(&b);
}
END_TEST

static double s_secs(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A child takes the File's lock (pd_lock on its own handle), says so on the
 * pipe, holds it for `hold` seconds, and exits. */
static pid_t s_hold_file_lock(const char *path, double hold, int *rd) {
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        pd_store *f = NULL;
        if (pd_file_open(&f, path, 0) || pd_lock(f)) _exit(2);
        if (write(pfd[1], "L", 1) != 1) _exit(3);
        usleep((useconds_t)(hold * 1e6));
        pd_unlock(f);
        pd_close(&f);
        _exit(0);
    }
    close(pfd[1]);
    *rd = pfd[0];
    return pid;
}

/* Appends that spill nothing don't take the slow File's lock; a get (and a
 * pd_lock section) does, so other processes are excluded when it matters. */
START_TEST(slow_locked_only_when_needed) {
    pd_store *d = NULL, *f = NULL, *b = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    TU_OK(pd_file_open_temp(&f, NULL, 0), NULL);
    char path[4096];
    snprintf(path, sizeof path, "%s", pd_file_path(f));
    TU_OK(pd_buffer_open(&b, &d, &f, 1 << 20, 0), NULL);
    int rd;
    pid_t pid = s_hold_file_lock(path, 0.4, &rd);
    char c;
    ck_assert_int_eq(read(rd, &c, 1), 1);
    double t0 = s_secs();
    tu_append1(b, PD_KEY_STR("k"), "in memory", 9);
    double t1 = s_secs();
    ck_assert_msg(t1 - t0 < 0.2, "append waited %.3f s for the File lock",
                  t1 - t0);
    tu_expect_str(b, PD_KEY_STR("k"), "in memory"); /* get reads slow too */
    double t2 = s_secs();
    ck_assert_msg(t2 - t0 > 0.25, "get did not wait for the File lock");
    int st;
    waitpid(pid, &st, 0);
    close(rd);
    /* pd_lock on the Buffer holds the File's lock for the whole section */
    TU_OK(pd_lock(b), b);
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid = fork();
    if (pid == 0) {
        pd_store *g = NULL;
        double a = s_secs();
        if (pd_file_open(&g, path, 0) || pd_lock(g)) _exit(2);
        double waited = s_secs() - a;
        pd_unlock(g);
        pd_close(&g);
        _exit(waited > 0.2 ? 0 : 1);
    }
    usleep(400000);
    TU_OK(pd_unlock(b), b);
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "another process took the File lock during pd_lock(buffer)");
    close(pfd[0]);
    close(pfd[1]);
    pd_close(&b);
}
END_TEST

/* ---------------------------------------------------- PD_BUFFER_PRIVATE */

static size_t s_nkeys(pd_store *s) {
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(s, &kl, 0), s);
    size_t n = pd_keylist_count(kl);
    pd_keylist_free(&kl);
    return n;
}

/* With PD_BUFFER_PRIVATE, slow is read, listed and deleted from only for
 * keys the Buffer spilled; results are the same as without the flag. */
START_TEST(private_skips_slow) {
    t_fail *sf = t_fail_open();
    pd_store *f = s_dict(), *sl = &sf->base, *b = NULL;
    TU_OK(pd_buffer_open(&b, &f, &sl, 100, PD_BUFFER_PRIVATE), NULL);
    ck_assert_int_eq(sf->keys, 1); /* open lists slow once */
    sf->keys = 0;
    tu_append1(b, PD_KEY_STR("a"), "0123456789", 10);
    tu_append1(b, PD_KEY_STR("b"), "abcdefghij", 10);
    tu_expect_str(b, PD_KEY_STR("a"), "0123456789");
    tu_expect_str(b, PD_KEY_STR("nope"), "");
    ck_assert_uint_eq(s_nkeys(b), 2);
    pd_key ka = PD_KEY_STR("a"), kb = PD_KEY_STR("b");
    TU_OK(pd_delete(b, 1, &ka, 0), b);
    pd_bytes v = {"set", 3};
    TU_OK(pd_iset(b, 1, &kb, &v, 0), b);
    tu_expect_str(b, kb, "set");
    ck_assert_int_eq(sf->gets + sf->dels + sf->keys, 0);

    /* A 200-byte append goes over the limit: then the largest key, big
     * itself, is spilled (partd's order: append, then spill). */
    char big[200];
    memset(big, 'x', sizeof big);
    tu_append1(b, PD_KEY_STR("big"), big, sizeof big);
    tu_append1(b, PD_KEY_STR("c"), "c", 1);    /* spills big */
    ck_assert_uint_eq(s_held(sf->inner), 200); /* big; b stays in fast */
    ck_assert_int_eq(tu_listed_size(pd_buffer_fast(b), PD_KEY_STR("big")), -1);
    ck_assert_int_eq(tu_listed_size(pd_buffer_fast(b), kb), 3);
    tu_append1(b, PD_KEY_STR("big"), "tail", 4);
    char want[204];
    memcpy(want, big, sizeof big);
    memcpy(want + sizeof big, "tail", 4);
    tu_expect(b, PD_KEY_STR("big"), want, sizeof want); /* slow, then fast */
    ck_assert_int_ge(sf->gets, 1);
    int gets = sf->gets;
    tu_expect_str(b, PD_KEY_STR("c"), "c");
    ck_assert_int_eq(sf->gets, gets); /* never spilled: fast only */
    ck_assert_uint_eq(s_nkeys(b), 3); /* b, big, c */
    ck_assert_int_eq(sf->keys, 1);
    pd_key kbig = PD_KEY_STR("big");
    TU_OK(pd_delete(b, 1, &kbig, 0), b);
    ck_assert_int_eq(sf->dels, 1);
    ck_assert_uint_eq(s_held(sf->inner), 0);
    tu_expect_str(b, kbig, "");
    ck_assert_int_eq(sf->gets, gets); /* deleted from slow: forgotten */

    /* After a drop nothing is in slow. */
    tu_append1(b, PD_KEY_STR("big"), big, sizeof big);
    tu_append1(b, PD_KEY_STR("c"), "c", 1);
    ck_assert_uint_ge(s_held(sf->inner), 200);
    TU_OK(pd_drop(b, 0), b);
    gets = sf->gets;
    tu_expect_str(b, kbig, "");
    ck_assert_int_eq(sf->gets, gets);
    pd_close(&b);
}
END_TEST

/* Keys slow held at open are found: the flag then reads slow always. */
START_TEST(private_with_filled_slow) {
    t_fail *sf = t_fail_open();
    pd_store *f = s_dict(), *sl = &sf->base, *b = NULL;
    tu_append1(sl, PD_KEY_STR("old"), "before", 6);
    TU_OK(pd_buffer_open(&b, &f, &sl, 100, PD_BUFFER_PRIVATE), NULL);
    tu_append1(b, PD_KEY_STR("old"), "+after", 6);
    tu_expect_str(b, PD_KEY_STR("old"), "before+after");
    tu_append1(b, PD_KEY_STR("new"), "n", 1);
    ck_assert_uint_eq(s_nkeys(b), 2);
    /* A drop empties slow: afterwards it is skipped. */
    TU_OK(pd_drop(b, 0), b);
    tu_append1(b, PD_KEY_STR("new"), "n", 1);
    int gets = sf->gets;
    tu_expect_str(b, PD_KEY_STR("new"), "n");
    ck_assert_int_eq(sf->gets, gets);
    pd_close(&b);

    /* Unknown flags are still refused, taking nothing. */
    pd_store *f2 = s_dict(), *s2 = s_dict();
    ck_assert_int_eq(pd_buffer_open(&b, &f2, &s2, 100, 0x4000), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(f2);
    ck_assert_ptr_nonnull(s2);
    pd_close(&f2);
    pd_close(&s2);
}
END_TEST

/* Dict over a File in a private directory (the server's default store):
 * spills, gets and keys agree with the unflagged Buffer. */
START_TEST(private_dict_over_file) {
    pd_store *b[2] = {NULL, NULL};
    for (int j = 0; j < 2; j++) {
        pd_store *d = s_dict(), *f = NULL;
        TU_OK(pd_file_open_temp(&f, NULL, 0), NULL);
        TU_OK(pd_buffer_open(&b[j], &d, &f, 4096, j ? PD_BUFFER_PRIVATE : 0),
              NULL);
    }
    char v[300];
    for (int i = 0; i < 200; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i % 37);
        memset(v, 'a' + i % 26, sizeof v);
        size_t n = (size_t)(i * 7) % sizeof v;
        for (int j = 0; j < 2; j++) tu_append1(b[j], PD_KEY_STR(k), v, n);
    }
    ck_assert_uint_gt(s_held(pd_buffer_slow(b[1])), 0);
    for (int i = 0; i < 40; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        pd_key key = PD_KEY_STR(k);
        pd_result *r0 = NULL, *r1 = NULL;
        TU_OK(pd_get(b[0], 1, &key, &r0, 0), b[0]);
        TU_OK(pd_get(b[1], 1, &key, &r1, 0), b[1]);
        pd_bytes x = pd_result_value(r0, 0), y = pd_result_value(r1, 0);
        ck_assert_uint_eq(x.size, y.size);
        ck_assert(x.size == 0 || memcmp(x.data, y.data, x.size) == 0);
        pd_result_free(&r0);
        pd_result_free(&r1);
    }
    ck_assert_uint_eq(s_nkeys(b[0]), s_nkeys(b[1]));
    ck_assert_uint_eq(s_held(b[0]), s_held(b[1]));
    for (int j = 0; j < 2; j++) {
        TU_OK(pd_drop(b[j], 0), b[j]);
        pd_close(&b[j]);
    }
}
END_TEST

/* -------------------------------------------------- Order and Dict refs */

/* Ties between equal sizes go to the key counted first, and a key spilled
 * and appended again counts as new (the reference's dict order). */
START_TEST(ties_follow_insertion_order) {
    pd_store *f = s_dict(), *sl = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &f, &sl, 40, PD_BORROW), b);
    static const char ten[] = "0123456789";
    const char *names = "abcd";
    for (int i = 0; i < 4; i++) tu_append1(b, PD_KEY(names + i, 1), ten, 10);
    /* Each append below needs one round, which spills the first of the two
     * largest keys in count order. */
    struct {
        const char *key;
        size_t len;
        const char *spilled;
    } steps[] = {{"e", 1, "a"},
                 {"a", 10, "b"},
                 {"f", 10, "c"},
                 {"g", 10, "d"},
                 {"h", 10, "a"}};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        pd_key k = PD_KEY_STR(steps[i].key);
        pd_key sp = PD_KEY_STR(steps[i].spilled);
        long long before = tu_listed_size(sl, sp);
        tu_append1(b, k, ten, steps[i].len);
        ck_assert_msg(tu_listed_size(sl, sp) == (before < 0 ? 0 : before) + 10,
                      "step %zu: '%s' not spilled", i, steps[i].spilled);
        ck_assert_int_eq(tu_listed_size(f, sp), -1);
    }
    ck_assert_uint_eq(tu_nkeys(sl), 4); /* a (twice), b, c, d */
    ck_assert_int_eq(tu_listed_size(sl, PD_KEY_STR("a")), 20);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 31);
    pd_close(&b);
    pd_close(&f);
    pd_close(&sl);
}
END_TEST

/* The Buffer keeps the Dict's entry of each key between appends; deleting
 * or dropping in the Dict directly (a borrowed fast store), spills, and a
 * failed batch must all invalidate it (ASan/valgrind see a stale one). */
START_TEST(dict_refs_stay_valid) {
    pd_store *f = s_dict(), *sl = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &f, &sl, 1u << 20, PD_BORROW), b);
    pd_bytes parts[2] = {{"t", 1}, {"u", 1}};
    pd_key ka = PD_KEY_STR("a"), kt = PD_KEY_TUPLE(parts, 2);
    pd_key kb = PD_KEY_STR("b");
    tu_append1(b, ka, "1", 1);
    tu_append1(b, kt, "T", 1);
    TU_OK(pd_delete(f, 1, &ka, 0), f); /* behind the Buffer's back */
    tu_append1(b, ka, "2", 1);
    tu_append1(b, kt, "U", 1);
    tu_expect_str(f, ka, "2");
    tu_expect_str(b, kt, "TU");
    TU_OK(pd_drop(f, 0), f);
    tu_append1(b, ka, "3", 1);
    tu_expect_str(b, ka, "3");
    /* A batch that fails in a Dict: the key it created is freed.  The huge
     * value is the key chosen for spilling, which slow (a Dict) refuses:
     * nothing of the batch is applied. */
    static char src[16];
    size_t huge = (size_t)1 << 62;
    pd_key k3[3] = {kb, PD_KEY_STR("new"), PD_KEY_STR("huge")};
    pd_bytes v3[3] = {{"b", 1}, {"n", 1}, {src, huge}};
    /* Without a session, and inside one (the Dict fast path). */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t held = pd_buffer_memory_usage(b);
        long long had_new = tu_listed_size(f, PD_KEY_STR("new"));
        long long had_b = tu_listed_size(f, kb);
        if (pass == 1) TU_OK(pd_lock(b), b);
        int rc = pd_append(b, 3, k3, v3, pass ? PD_NOLOCK : 0);
        ck_assert_int_eq(rc, PD_ERR_NOMEM);
        ck_assert_msg(strstr(pd_errmsg(b), "dict: append 'huge'") != NULL, "%s",
                      pd_errmsg(b));
        ck_assert_int_eq(pd_errcode(b), PD_ERR_NOMEM);
        if (pass == 1) TU_OK(pd_unlock(b), b);
        ck_assert_int_eq(tu_listed_size(f, PD_KEY_STR("new")), had_new);
        ck_assert_int_eq(tu_listed_size(f, kb), had_b);
        ck_assert_int_eq(tu_listed_size(sl, PD_KEY_STR("huge")), -1);
        ck_assert_uint_eq(pd_buffer_memory_usage(b), held);
        v3[2].size = 1;
        TU_OK(pd_append(b, 3, k3, v3, 0), b);
        tu_expect_str(b, PD_KEY_STR("new"), pass ? "nn" : "n");
        tu_expect_str(b, kb, pass ? "bb" : "b");
        v3[2].size = huge;
    }
    /* PD_NOLOCK without a session: the Dict is locked by its dispatcher. */
    tu_append1(b, ka, "4", 1);
    pd_bytes v4 = {"5", 1};
    TU_OK(pd_append(b, 1, &ka, &v4, PD_NOLOCK), b);
    tu_expect_str(b, ka, "345");
    pd_close(&b);
    pd_close(&f);
    pd_close(&sl);
}
END_TEST

/* ---------------------------------------------------------------- Discard */

START_TEST(discard_forgets_fast) {
    pd_store *f = s_dict(), *sl = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &f, &sl, 100, PD_BORROW), b);
    TU_OK(pd_buffer_discard(b), b); /* nothing held: fine */
    static char v[80];
    memset(v, 'v', sizeof v);
    pd_key ka = PD_KEY_STR("a"), kb = PD_KEY_STR("b");
    pd_bytes parts[2] = {{"x", 1}, {"", 0}};
    pd_key kt = PD_KEY_TUPLE(parts, 2);
    tu_append1(b, ka, v, 80);
    tu_append1(b, kb, v, 30); /* spills a */
    tu_append1(b, kt, "tt", 2);
    tu_append1(b, ka, "A", 1);
    tu_append1(f, PD_KEY_STR("own"), "o", 1); /* fast's own key */
    ck_assert_int_eq(tu_listed_size(sl, ka), 80);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 33);
    TU_OK(pd_buffer_discard(b), b);
    ck_assert_str_eq(pd_errmsg(b), "ok");
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    /* Gone from fast; what was spilled stays; fast's own key too. */
    ck_assert_int_eq(tu_listed_size(f, ka), -1);
    ck_assert_int_eq(tu_listed_size(f, kb), -1);
    ck_assert_int_eq(tu_listed_size(f, kt), -1);
    tu_expect_str(f, PD_KEY_STR("own"), "o");
    tu_expect(b, ka, v, 80);
    tu_expect_str(b, kb, "");
    tu_expect_str(b, kt, "");
    /* Still usable, and under the caller's session too. */
    tu_append1(b, kb, "new", 3);
    TU_OK(pd_lock(b), b);
    TU_OK(pd_buffer_discard(b), b);
    tu_append1(b, kt, "t2", 2);
    TU_OK(pd_unlock(b), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 2);
    tu_expect_str(b, kb, "");
    TU_OK(pd_buffer_discard(b), b);
    /* Closing spills nothing more. */
    uint64_t slow_bytes = pd_dict_nbytes(sl);
    TU_OK(pd_close(&b), NULL);
    ck_assert_uint_eq(pd_dict_nbytes(sl), slow_bytes);
    ck_assert_uint_eq(pd_dict_nbytes(f), 1);
    pd_close(&f);
    pd_close(&sl);
}
END_TEST

/* Many keys (several delete batches), over a File as slow: close writes no
 * file for what was discarded. */
START_TEST(discard_many_over_file) {
    pd_store *file = s_file_or_skip("discard_many_over_file");
    if (!file) return;
    pd_store *fast = s_dict(), *slow = file, *b = NULL;
    TU_OK(pd_buffer_open(&b, &fast, &slow, 1u << 20, PD_BORROW), b);
    char name[16];
    for (int i = 0; i < 300; i++) {
        int w = snprintf(name, sizeof name, "k%03d", i);
        tu_append1(b, PD_KEY(name, (size_t)w), name, (size_t)w);
    }
    pd_key k7 = PD_KEY_STR("k007");
    TU_OK(pd_buffer_flush(b, 1, &k7, 0), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 299 * 4);
    TU_OK(pd_buffer_discard(b), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    ck_assert_uint_eq(pd_dict_nbytes(fast), 0);
    tu_expect_str(b, k7, "k007");
    tu_expect_str(b, PD_KEY_STR("k008"), "");
    TU_OK(pd_close(&b), NULL);
    ck_assert_uint_eq(tu_nkeys(file), 1);
    tu_expect_str(file, k7, "k007");
    pd_close(&fast);
    ck_assert_int_eq(pd_close(&file), 0);
}
END_TEST

START_TEST(discard_errors) {
    /* Misuse: NULL, and a store that is not a Buffer. */
    ck_assert_int_eq(pd_buffer_discard(NULL), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(NULL), "discard") != NULL, "%s",
                  pd_errmsg(NULL));
    pd_store *d = s_dict();
    ck_assert_int_eq(pd_buffer_discard(d), PD_ERR_MISUSE);
    ck_assert_str_eq(pd_errmsg(d), "dict: discard: not a buffer store");
    pd_close(&d);

    /* fast fails to delete: the error names the key, the keys stay counted
     * and held; once healed, discard works. */
    t_fail *ff = t_fail_open();
    pd_store *fast = &ff->base, *slow = s_dict(), *b = NULL;
    TU_OK(pd_buffer_open(&b, &fast, &slow, 1000, 0), b);
    tu_append1(b, PD_KEY_STR("a"), "aa", 2);
    tu_append1(b, PD_KEY_STR("b"), "b", 1);
    ff->fail_del = true;
    ck_assert_int_eq(pd_buffer_discard(b), PD_ERR_IO);
    ck_assert_int_eq(pd_errcode(b), PD_ERR_IO);
    ck_assert_int_eq(pd_errno(b), EIO);
    const char *msg = pd_errmsg(b);
    ck_assert_msg(strstr(msg, "buffer: discard 'a': delete from fast: "
                              "failing: delete 'a': unlink(/fake/1)") == msg,
                  "%s", msg);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 3);
    ck_assert_int_eq(ff->failures, 2); /* the batch, then key 'a' alone */
    /* A batch failing after deleting its first key: that key is uncounted,
     * the rest stay counted and held. */
    ff->fail_del = false;
    ff->fail_key = "b";
    ck_assert_int_eq(pd_buffer_discard(b), PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(b), "buffer: discard 'b'") == pd_errmsg(b),
                  "%s", pd_errmsg(b));
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 1);
    tu_expect_str(b, PD_KEY_STR("b"), "b");
    tu_expect_str(b, PD_KEY_STR("a"), "");
    ff->fail_key = NULL;
    TU_OK(pd_buffer_discard(b), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    tu_expect_str(b, PD_KEY_STR("b"), "");
    TU_OK(pd_close(&b), NULL);
}
END_TEST

/* ------------------------------------------------------- Dict fast path */

/* A Buffer tells its Dict its limit: huge pages from the start only for a
 * large one. */
START_TEST(dict_expects_limit) {
    for (int big = 0; big < 2; big++) {
        pd_store *f = s_dict(), *sl = s_dict(), *b = NULL;
        uint64_t limit = big ? (uint64_t)64 << 20 : 1u << 20;
        TU_OK(pd_buffer_open(&b, &f, &sl, limit, 0), NULL);
        const pd__arena *a = pd__dict_arena(pd_buffer_fast(b));
        ck_assert_ptr_nonnull(a);
        ck_assert(a->huge_first == (big == 1));
        tu_append1(b, PD_KEY_STR("k"), "v", 1);
        tu_expect_str(b, PD_KEY_STR("k"), "v");
        pd_close(&b);
    }
}
END_TEST

/* In a child: a batch over keys the Buffer holds fails in its Dict (the
 * address space capped, one value too large to allocate).  The Buffer's
 * counts and usage stay as they were, so that later spills move exactly
 * what fast holds. */
static int s_counts_oom_child(void *arg) {
    (void)arg;
    pd_store *f = s_dict(), *sl = s_dict(), *b = NULL;
    TU_CHECK(pd_buffer_open(&b, &f, &sl, (uint64_t)1 << 30, 0) == 0, "open: %s",
             pd_errmsg(NULL));
    pd_key ka = PD_KEY_STR("a"), kb = PD_KEY_STR("b"), kc = PD_KEY_STR("c");
    tu_append1(b, ka, "aa", 2);
    tu_append1(b, kb, "b", 1);
    size_t big = (size_t)256 << 20;
    char *src = malloc(big); /* untouched: no resident memory */
    TU_CHECK(src, "malloc");
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    TU_CHECK(fp && fscanf(fp, "%lu", &pages) == 1, "statm");
    fclose(fp);
    size_t used = pages * (size_t)sysconf(_SC_PAGESIZE);
    struct rlimit rl = {used + ((size_t)32 << 20), RLIM_INFINITY};
    TU_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    /* a: fits the room it has; c: created; b: cannot be allocated */
    pd_key k[4] = {ka, kc, kb, ka};
    pd_bytes v[4] = {{"x", 1}, {"y", 1}, {src, big}, {"z", 1}};
    for (int pass = 0; pass < 2; pass++) {
        if (pass) TU_CHECK(pd_lock(b) == 0, "lock: %s", pd_errmsg(b));
        int rc = pd_append(b, 4, k, v, pass ? PD_NOLOCK : 0);
        if (pass) TU_CHECK(pd_unlock(b) == 0, "unlock: %s", pd_errmsg(b));
        TU_CHECK(rc == PD_ERR_NOMEM, "append -> %d: %s", rc, pd_errmsg(b));
        TU_CHECK(pd_buffer_memory_usage(b) == 3, "usage %llu",
                 (unsigned long long)pd_buffer_memory_usage(b));
    }
    rl.rlim_cur = RLIM_INFINITY;
    TU_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    free(src);
    v[2] = (pd_bytes){"B", 1};
    TU_CHECK(pd_append(b, 4, k, v, 0) == 0, "append: %s", pd_errmsg(b));
    TU_CHECK(pd_buffer_memory_usage(b) == 7, "usage %llu",
             (unsigned long long)pd_buffer_memory_usage(b));
    /* Moving every key empties the counts exactly. */
    TU_CHECK(pd_buffer_flush(b, 0, NULL, 0) == 0, "flush: %s", pd_errmsg(b));
    TU_CHECK(pd_buffer_memory_usage(b) == 0, "usage after flush %llu",
             (unsigned long long)pd_buffer_memory_usage(b));
    pd_key all[3] = {ka, kb, kc};
    const char *want[3] = {"aaxz", "bB", "y"};
    pd_store *slow = pd_buffer_slow(b); /* the Buffer owns it */
    for (int i = 0; i < 3; i++) {
        pd_result *r = NULL;
        TU_CHECK(pd_get(slow, 1, &all[i], &r, 0) == 0, "get: %s",
                 pd_errmsg(slow));
        pd_bytes got = pd_result_value(r, 0);
        TU_CHECK(got.size == strlen(want[i]) &&
                     memcmp(got.data, want[i], got.size) == 0,
                 "key %d in slow: %.*s", i, (int)got.size,
                 (const char *)got.data);
        pd_result_free(&r);
    }
    pd_close(&b);
    return 0;
}

START_TEST(nomem_keeps_counts) { tu_oom_child(s_counts_oom_child, NULL); }
END_TEST

int main(void) {
    Suite *s = suite_create("test_buffer");
    TCase *tc = tcase_create("buffer");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, select_docstring);
    tcase_add_test(tc, select_matches_reference);
    tcase_add_test(tc, select_in_buffer);
    tcase_add_test(tc, roundtrip_in_memory);
    tcase_add_test(tc, order_after_spill);
    tcase_add_test(tc, memory_bound);
    tcase_add_test(tc, nested_buffers);
    tcase_add_test(tc, fast_without_peek);
    tcase_add_test(tc, iset_delete_drop);
    tcase_add_test(tc, keys_union);
    tcase_add_test(tc, flush_keys);
    tcase_add_test(tc, ownership_and_misuse);
    tcase_add_test(tc, failing_slow_keeps_data);
    tcase_add_test(tc, spill_after_append);
    tcase_add_test(tc, failing_spill_applies_nothing);
    tcase_add_test(tc, failing_fast_after_spill_says_so);
    tcase_add_test(tc, threads);
    tcase_add_test(tc, dict_over_file);
    tcase_add_test(tc, threads_dict_over_file);
    tcase_add_test(tc, slow_locked_only_when_needed);
    tcase_add_test(tc, ties_follow_insertion_order);
    tcase_add_test(tc, dict_refs_stay_valid);
    tcase_add_test(tc, discard_forgets_fast);
    tcase_add_test(tc, discard_many_over_file);
    tcase_add_test(tc, discard_errors);
    tcase_add_test(tc, dict_expects_limit);
    tcase_add_test(tc, nomem_keeps_counts);
    tcase_add_test(tc, private_skips_slow);
    tcase_add_test(tc, private_with_filled_slow);
    tcase_add_test(tc, private_dict_over_file);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
