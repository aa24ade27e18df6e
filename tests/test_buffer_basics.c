/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Buffer: a fast store spilling its largest keys into a slow one.  Which
 * keys spill, round trips, the memory bound, nesting, iset/delete/drop,
 * keys and flush, and ownership.
 */
#include "bufix.h"

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
    pd_store *f = tu_dict(), *sl = tu_dict(), *b = s_buf_borrow(f, sl, 100);
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
    tu_hello_ab(b, a, k2);
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
    pd_store *inner = s_buf_dd(1500), *slow = tu_dict(), *b = NULL;
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
    pd_store *fast = &f->base, *slow = tu_dict(), *b = NULL;
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

/* pd_buffer_spills counts the moves that keep the Buffer under its limit,
 * on an append (one per append that spills) and before a set (one per
 * round), and not pd_buffer_flush's. */
START_TEST(spills_counted) {
    pd_store *b = s_buf_dd(100);
    char v[100];
    memset(v, 'v', sizeof v);
    ck_assert_uint_eq(pd_buffer_spills(b), 0);
    tu_append1(b, PD_KEY_STR("a"), v, 60);
    ck_assert_uint_eq(pd_buffer_spills(b), 0);
    tu_append1(b, PD_KEY_STR("b"), v, 60);
    ck_assert_uint_eq(pd_buffer_spills(b), 1);
    uint64_t before = pd_buffer_spills(b);
    pd_key c = PD_KEY_STR("c");
    pd_bytes cv = PD_BYTES(v, 90);
    TU_OK(pd_iset(b, 1, &c, &cv, 0), b);
    ck_assert_uint_gt(pd_buffer_spills(b), before);
    ck_assert_uint_le(pd_buffer_memory_usage(b), 100);
    before = pd_buffer_spills(b);
    TU_OK(pd_buffer_flush(b, 0, NULL, 0), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    ck_assert_uint_eq(pd_buffer_spills(b), before);
    tu_expect(b, PD_KEY_STR("a"), v, 60);
    tu_expect(b, PD_KEY_STR("b"), v, 60);
    tu_expect(b, c, v, 90);
    ck_assert_uint_eq(pd_buffer_spills(pd_buffer_slow(b)), 0);
    pd_close(&b);
}
END_TEST

/* ------------------------------------------------------------- Ownership */

START_TEST(ownership_and_misuse) {
    pd_store *f = tu_dict(), *sl = tu_dict(), *b = (pd_store *)&b;
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

int main(void) {
    const tu_case cases[] = {
        {"select_docstring", select_docstring},
        {"select_matches_reference", select_matches_reference},
        {"select_in_buffer", select_in_buffer},
        {"roundtrip_in_memory", roundtrip_in_memory},
        {"order_after_spill", order_after_spill},
        {"memory_bound", memory_bound},
        {"nested_buffers", nested_buffers},
        {"fast_without_peek", fast_without_peek},
        {"iset_delete_drop", iset_delete_drop},
        {"keys_union", keys_union},
        {"flush_keys", flush_keys},
        {"spills_counted", spills_counted},
        {"ownership_and_misuse", ownership_and_misuse},
    };
    return TU_RUN_CASES("test_buffer_basics", cases, 300, 0);
}
