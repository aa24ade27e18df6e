/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Buffer over File and from threads: locking the slow store only when
 * needed, and PD_BUFFER_PRIVATE skipping the slow store.
 */
#include "bufix.h"

START_TEST(threads) {
    pd_store *b = s_buf_dd(5000);
    s_threads_on(b);
    ck_assert_uint_le(pd_buffer_memory_usage(b), 5000 + 18);
    ck_assert_uint_gt(pd_dict_nbytes(pd_buffer_slow(b)), 0);
    pd_close(&b);
}
END_TEST

START_TEST(dict_over_file) {
    pd_store *file = s_file_or_skip("dict_over_file");
    if (!file) return;
    pd_store *fast = tu_dict(), *b = s_buf_borrow(fast, file, 3000);
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
    pd_store *fast = tu_dict(), *b = NULL;
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

START_TEST(private_skips_slow) {
    t_fail *sf = t_fail_open();
    pd_store *f = tu_dict(), *sl = &sf->base, *b = NULL;
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
    pd_store *f = tu_dict(), *sl = &sf->base, *b = NULL;
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
    pd_store *f2 = tu_dict(), *s2 = tu_dict();
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
        pd_store *d = tu_dict(), *f = NULL;
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

int main(void) {
    const tu_case cases[] = {
        {"threads", threads},
        {"dict_over_file", dict_over_file},
        {"threads_dict_over_file", threads_dict_over_file},
        {"slow_locked_only_when_needed", slow_locked_only_when_needed},
        {"private_skips_slow", private_skips_slow},
        {"private_with_filled_slow", private_with_filled_slow},
        {"private_dict_over_file", private_dict_over_file},
    };
    return TU_RUN_CASES("test_buffer_file", cases, 300, 0);
}
