/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Buffer errors: a failing slow or fast store keeps or reports the data,
 * a failing spill applies nothing; a Buffer's Dict and out of memory.
 */
#include "bufix.h"

/* ---------------------------------------------------------------- Errors */

START_TEST(failing_slow_keeps_data) {
    t_fail *fs = t_fail_open();
    pd_store *fast = tu_dict(), *slow = &fs->base,
             *b = s_buf_borrow(fast, slow, 100);
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

/* The two batches of the spill tests, over a Buffer of limit 10: after the
 * first, fast holds x "Hello" and y "abc" (8 bytes); the second (x
 * "World!", y "def") takes it past the limit, so x, the largest key, is
 * spilled to slow with what fast held of it. */
static const pd_key spill_k[2] = {{"x", 1, NULL, 0}, {"y", 1, NULL, 0}};
static const pd_bytes spill_v1[2] = {{"Hello", 5}, {"abc", 3}};
static const pd_bytes spill_v2[2] = {{"World!", 6}, {"def", 3}};

/* Appends the first batch to b, sets *fail, and checks that the second
 * fails with PD_ERR_IO. */
static void s_second_batch_fails(pd_store *b, bool *fail) {
    TU_OK(pd_append(b, 2, spill_k, spill_v1, 0), b);
    *fail = true;
    ck_assert_int_eq(pd_append(b, 2, spill_k, spill_v2, 0), PD_ERR_IO);
}

/* partd's placement: a batch is appended, then the largest keys are spilled
 * until fast holds at most the limit; a spilled key's batch values go to
 * slow with what fast held of it, in one append to slow. */
START_TEST(spill_after_append) {
    pd_store *f = tu_dict(), *sl = tu_dict(), *b = s_buf_borrow(f, sl, 10);
    TU_OK(pd_append(b, 2, spill_k, spill_v1, 0), b);
    ck_assert_uint_eq(tu_nkeys(sl), 0);
    TU_OK(pd_append(b, 2, spill_k, spill_v2, 0), b);
    tu_expect_str(sl, spill_k[0], "HelloWorld!");
    ck_assert_int_eq(tu_listed_size(f, spill_k[0]), -1);
    tu_expect_str(f, spill_k[1], "abcdef");
    ck_assert_int_eq(tu_listed_size(sl, spill_k[1]), -1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 6);
    tu_expect_str(b, spill_k[0], "HelloWorld!");
    /* A batch larger than the limit on its own key: all of it to slow. */
    pd_key kz = PD_KEY_STR("z");
    tu_append1(b, kz, "0123456789ab", 12);
    tu_expect_str(sl, kz, "0123456789ab");
    ck_assert_int_eq(tu_listed_size(f, kz), -1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 6);
    s_close3(&b, &f, &sl);
}
END_TEST

/* A failing slow store: the batch whose spill fails is not applied at all,
 * neither its spilled keys nor the others. */
START_TEST(failing_spill_applies_nothing) {
    t_fail *fs = t_fail_open();
    pd_store *fast = tu_dict(), *slow = &fs->base,
             *b = s_buf_borrow(fast, slow, 10);
    s_second_batch_fails(b, &fs->fail);
    ck_assert_msg(strstr(pd_errmsg(b), "spill 'x' to slow") != NULL, "%s",
                  pd_errmsg(b));
    tu_expect_str(b, spill_k[0], "Hello");
    tu_expect_str(b, spill_k[1], "abc");
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 8);
    ck_assert_uint_eq(pd_dict_nbytes(fast), 8);
    /* A new key chosen for spilling is forgotten too. */
    pd_key kn = PD_KEY_STR("new");
    pd_bytes vn = {"0123456789ab", 12};
    ck_assert_int_eq(pd_append(b, 1, &kn, &vn, 0), PD_ERR_IO);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 8);
    ck_assert_uint_eq(tu_nkeys(b), 2);
    fs->fail = false;
    TU_OK(pd_append(b, 2, spill_k, spill_v2, 0), b);
    tu_expect_str(slow, spill_k[0], "HelloWorld!");
    tu_expect_str(fast, spill_k[1], "abcdef");
    s_close3(&b, &fast, &slow);
}
END_TEST

/* A fast store failing after slow took the spilled keys: the error says
 * the batch was partly applied, and which part. */
START_TEST(failing_fast_after_spill_says_so) {
    t_fail *ff = t_fail_open();
    pd_store *fast = &ff->base, *slow = tu_dict(),
             *b = s_buf_borrow(fast, slow, 10);
    s_second_batch_fails(b, &ff->fail);
    const char *msg = pd_errmsg(b);
    ck_assert_msg(strstr(msg, "PARTLY APPLIED") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "1 keys spilled went to slow, the other 1 "
                              "values were not applied") != NULL,
                  "%s", msg);
    ck_assert_msg(strstr(msg, "No space left on device") != NULL, "%s", msg);
    ff->fail = false;
    tu_expect_str(b, spill_k[0], "HelloWorld!");
    tu_expect_str(b, spill_k[1], "abc");
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 3);
    s_close3(&b, &fast, &slow);
}
END_TEST

/* ------------------------------------------------------- Dict fast path */

/* A Buffer tells its Dict its limit: huge pages from the start only for a
 * large one. */
START_TEST(dict_expects_limit) {
    for (int big = 0; big < 2; big++) {
        pd_store *f = tu_dict(), *sl = tu_dict(), *b = NULL;
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
    pd_store *f = tu_dict(), *sl = tu_dict(), *b = NULL;
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
    const tu_case cases[] = {
        {"failing_slow_keeps_data", failing_slow_keeps_data},
        {"spill_after_append", spill_after_append},
        {"failing_spill_applies_nothing", failing_spill_applies_nothing},
        {"failing_fast_after_spill_says_so", failing_fast_after_spill_says_so},
        {"dict_expects_limit", dict_expects_limit},
        {"nomem_keeps_counts", nomem_keeps_counts},
    };
    return TU_RUN_CASES("test_buffer_errors", cases, 300, 0);
}
