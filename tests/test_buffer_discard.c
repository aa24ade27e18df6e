/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Buffer: spill order among ties, Dict references that stay valid, and
 * discarding the fast store.
 */
#include "bufix.h"

/* -------------------------------------------------- Order and Dict refs */

/* Ties between equal sizes go to the key counted first, and a key spilled
 * and appended again counts as new (the reference's dict order). */
START_TEST(ties_follow_insertion_order) {
    pd_store *f = tu_dict(), *sl = tu_dict(), *b = s_buf_borrow(f, sl, 40);
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
    s_close3(&b, &f, &sl);
}
END_TEST

/* The Buffer keeps the Dict's entry of each key between appends; deleting
 * or dropping in the Dict directly (a borrowed fast store), spills, and a
 * failed batch must all invalidate it (ASan/valgrind see a stale one). */
START_TEST(dict_refs_stay_valid) {
    pd_store *f = tu_dict(), *sl = tu_dict(),
             *b = s_buf_borrow(f, sl, 1u << 20);
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
    s_close3(&b, &f, &sl);
}
END_TEST

/* ---------------------------------------------------------------- Discard */

START_TEST(discard_forgets_fast) {
    pd_store *f = tu_dict(), *sl = tu_dict(), *b = s_buf_borrow(f, sl, 100);
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
    pd_store *fast = tu_dict(), *b = s_buf_borrow(fast, file, 1u << 20);
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
    pd_store *d = tu_dict();
    ck_assert_int_eq(pd_buffer_discard(d), PD_ERR_MISUSE);
    ck_assert_str_eq(pd_errmsg(d), "dict: discard: not a buffer store");
    pd_close(&d);

    /* fast fails to delete: the error names the key, the keys stay counted
     * and held; once healed, discard works. */
    t_fail *ff = t_fail_open();
    pd_store *fast = &ff->base, *slow = tu_dict(), *b = NULL;
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

int main(void) {
    const tu_case cases[] = {
        {"ties_follow_insertion_order", ties_follow_insertion_order},
        {"dict_refs_stay_valid", dict_refs_stay_valid},
        {"discard_forgets_fast", discard_forgets_fast},
        {"discard_many_over_file", discard_many_over_file},
        {"discard_errors", discard_errors},
    };
    return TU_RUN_CASES("test_buffer_discard", cases, 300, 0);
}
