/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Concurrency: threads on one or two handles, the lock across handles,
 * threads and processes, and a handle inherited through fork.
 */
#include "concfix.h"

/* ------------------------------------------------------------ Threads */

enum { TH_N = 4, TH_B = 300, TH_K = 8 };

typedef struct targ {
    pd_store *s;
    int t;
    int failed;
    char why[512];
} targ;

static void *s_thread_writer(void *arg) {
    targ *a = arg;
    pd_key keys[TH_K];
    pd_bytes vals[TH_K];
    char names[TH_K][8], recs[TH_K][32];
    s_knames(TH_K, names, keys);
    for (int b = 0; b < TH_B && !a->failed; b++) {
        for (int k = 0; k < TH_K; k++) {
            int len =
                snprintf(recs[k], sizeof recs[k], "%d:%d:%d;", a->t, b, k);
            vals[k] = PD_BYTES(recs[k], (size_t)len);
        }
        int rc = pd_append(a->s, TH_K, keys, vals, 0);
        if (rc) {
            a->failed = 1;
            snprintf(a->why, sizeof a->why, "append: %s", pd_errmsg(a->s));
        }
        if (b % 50 == 0) { /* reads interleaved with writes */
            pd_result *r = NULL;
            rc = pd_get(a->s, TH_K, keys, &r, 0);
            if (rc) {
                a->failed = 1;
                snprintf(a->why, sizeof a->why, "get: %s", pd_errmsg(a->s));
            }
            pd_result_free(&r);
        }
    }
    return NULL;
}

/* Every key holds every record once, the same sequence in every key. */
static void s_check_threads(pd_store *s) {
    pd_key keys[TH_K];
    char names[TH_K][8];
    s_knames(TH_K, names, keys);
    pd_result *r = NULL;
    TU_OK(pd_get(s, TH_K, keys, &r, 0), s);
    rec *seq = calloc(TH_N * TH_B, sizeof *seq);
    rec *tmp = calloc(TH_N * TH_B, sizeof *tmp);
    char why[256];
    long n0 = 0;
    for (int k = 0; k < TH_K; k++) {
        pd_bytes v = pd_result_value(r, (size_t)k);
        long n = s_parse(v.data, v.size, k, k ? tmp : seq, TH_N * TH_B, why,
                         sizeof why);
        ck_assert_msg(n >= 0, "key k%d: %s", k, why);
        if (k == 0)
            n0 = n;
        else
            ck_assert_msg(n == n0 && !memcmp(seq, tmp, (size_t)n * sizeof *seq),
                          "key k%d differs from k0: a batch was split", k);
    }
    ck_assert_int_eq(n0, TH_N * TH_B);
    int last[TH_N];
    for (int t = 0; t < TH_N; t++) last[t] = -1;
    for (long i = 0; i < n0; i++) {
        ck_assert(seq[i].w >= 0 && seq[i].w < TH_N);
        ck_assert_int_eq(seq[i].b, last[seq[i].w] + 1);
        last[seq[i].w] = seq[i].b;
    }
    pd_result_free(&r);
    free(seq);
    free(tmp);
}

static void s_run_threads(pd_store **handles, int nh) {
    pthread_t th[TH_N];
    targ ta[TH_N];
    for (int t = 0; t < TH_N; t++) {
        ta[t] = (targ){handles[t % nh], t, 0, ""};
        ck_assert_int_eq(pthread_create(&th[t], NULL, s_thread_writer, &ta[t]),
                         0);
    }
    for (int t = 0; t < TH_N; t++) {
        pthread_join(th[t], NULL);
        ck_assert_msg(!ta[t].failed, "thread %d: %s", t, ta[t].why);
    }
}

START_TEST(threads_one_handle) {
    char *dir = tu_mkdtemp();
    pd_store *s = NULL;
    TU_OK(pd_file_open(&s, dir, 0), NULL);
    s_run_threads(&s, 1);
    s_check_threads(s);
    pd_close(&s);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(threads_two_handles) {
    char *dir = tu_mkdtemp();
    pd_store *h[2] = {NULL, NULL};
    TU_OK(pd_file_open(&h[0], dir, 0), NULL);
    TU_OK(pd_file_open(&h[1], dir, 0), NULL);
    s_run_threads(h, 2);
    s_check_threads(h[0]);
    s_check_threads(h[1]);
    pd_close(&h[0]);
    pd_close(&h[1]);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

typedef struct lockargs {
    pd_store *h1, *h2;
    volatile int stage; /* for the holder: 1 = locked, 2 = release */
    volatile int done;
    int rc;
    char why[512];
} lockargs;

/* Holds pd_lock on h1 and appends through h2 in the same thread. */
static void *s_lock_then_other(void *arg) {
    lockargs *a = arg;
    pd_key k = PD_KEY_STR("cross");
    pd_bytes v = PD_BYTES("x", 1);
    a->rc = pd_lock(a->h1);
    if (a->rc == 0) {
        a->rc = pd_append(a->h2, 1, &k, &v, 0);
        if (a->rc) snprintf(a->why, sizeof a->why, "%s", pd_errmsg(a->h2));
        pd_result *r = NULL;
        if (a->rc == 0) a->rc = pd_get(a->h2, 1, &k, &r, 0);
        pd_result_free(&r);
        if (a->rc == 0) a->rc = pd_append(a->h1, 1, &k, &v, PD_NOLOCK);
        int urc = pd_unlock(a->h1);
        if (a->rc == 0) a->rc = urc;
    }
    a->done = 1;
    return NULL;
}

static void *s_holder(void *arg) {
    lockargs *a = arg;
    a->rc = pd_lock(a->h1);
    a->stage = 1;
    while (a->stage != 2) s_sleep_ms(5);
    pd_unlock(a->h1);
    return NULL;
}

static void *s_blocked_writer(void *arg) {
    lockargs *a = arg;
    pd_key k = PD_KEY_STR("blocked");
    pd_bytes v = PD_BYTES("y", 1);
    a->rc = pd_append(a->h2, 1, &k, &v, 0);
    a->done = 1;
    return NULL;
}

static int s_child_append(void *arg) {
    const char *root = arg;
    pd_store *s = NULL;
    TU_CHECK(pd_file_open(&s, root, 0) == 0, "open: %s", pd_errmsg(NULL));
    pd_key k = PD_KEY_STR("proc");
    pd_bytes v = PD_BYTES("p", 1);
    TU_CHECK(pd_append(s, 1, &k, &v, 0) == 0, "append: %s", pd_errmsg(s));
    pd_close(&s);
    return 0;
}

START_TEST(lock_across_handles) {
    char *dir = tu_mkdtemp();
    pd_store *h1 = NULL, *h2 = NULL;
    TU_OK(pd_file_open(&h1, dir, 0), NULL);
    TU_OK(pd_file_open(&h2, dir, 0), NULL);

    /* 1. One thread holds the lock through h1 and calls h2: no deadlock. */
    lockargs a = {h1, h2, 0, 0, 0, ""};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, s_lock_then_other, &a), 0);
    double t0 = s_now();
    while (!a.done && s_now() - t0 < 10) s_sleep_ms(10);
    ck_assert_msg(a.done, "deadlock: pd_append on handle 2 while this thread "
                          "holds pd_lock on handle 1 (waited 10 s)");
    pthread_join(t, NULL);
    ck_assert_msg(a.rc == 0, "rc %d: %s", a.rc, a.why);
    tu_expect_as(h1, PD_KEY_STR("cross"), "xx", "cross-handle appends");

    /* 2. While one thread holds h1's lock, another thread's append through
     * h2 waits for it. */
    lockargs b = {h1, h2, 0, 0, 0, ""};
    lockargs c = {h1, h2, 0, 0, 0, ""};
    pthread_t th, tw;
    ck_assert_int_eq(pthread_create(&th, NULL, s_holder, &b), 0);
    while (b.stage != 1) s_sleep_ms(5);
    ck_assert_int_eq(b.rc, 0);
    ck_assert_int_eq(pthread_create(&tw, NULL, s_blocked_writer, &c), 0);
    s_sleep_ms(300);
    int early = c.done;
    b.stage = 2;
    pthread_join(th, NULL);
    pthread_join(tw, NULL);
    ck_assert_msg(!early, "a thread appended through handle 2 while another "
                          "thread held pd_lock on handle 1");
    ck_assert_int_eq(c.rc, 0);

    /* 3. While this process holds the lock, another process waits. */
    TU_OK(pd_lock(h2), h2);
    tu_child ck = s_spawn(s_child_append, dir);
    s_sleep_ms(300);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/proc", dir);
    bool landed = access(path, F_OK) == 0;
    TU_OK(pd_unlock(h2), h2);
    s_wait_ok(ck, "child append");
    ck_assert_msg(!landed, "another process appended while pd_lock was held");
    tu_expect_as(h1, PD_KEY_STR("proc"), "p", "child append");

    pd_close(&h1);
    pd_close(&h2);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A handle inherited through fork is usable in the child (the header says
 * the child re-opens its lock and descriptors). */
static pd_store *g_inherited;
static int s_fork_child(void *arg) {
    (void)arg;
    pd_key k = PD_KEY_STR("inh");
    pd_bytes v = PD_BYTES("child;", 6);
    for (int i = 0; i < 50; i++)
        TU_CHECK(pd_append(g_inherited, 1, &k, &v, 0) == 0, "append: %s",
                 pd_errmsg(g_inherited));
    TU_CHECK(pd_close(&g_inherited) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

START_TEST(fork_inherited_handle) {
    char *dir = tu_mkdtemp();
    TU_OK(pd_file_open(&g_inherited, dir, 0), NULL);
    pd_key k = PD_KEY_STR("inh");
    tu_append1(g_inherited, k, "parent;", 7);
    tu_child ck = s_spawn(s_fork_child, NULL);
    pd_bytes v = PD_BYTES("parent;", 7);
    for (int i = 0; i < 50; i++)
        TU_OK(pd_append(g_inherited, 1, &k, &v, 0), g_inherited);
    s_wait_ok(ck, "child using the inherited handle");
    size_t len;
    char *got = tu_get1(g_inherited, &k, &len);
    ck_assert_uint_eq(len, 51 * 7 + 50 * 6);
    free(got);
    pd_close(&g_inherited);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("test_concurrency_threads");
    TCase *tc = tcase_create("processes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fork_inherited_handle);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, threads_one_handle);
    tcase_add_test(tc, threads_two_handles);
    tcase_add_test(tc, lock_across_handles);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
