/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Log store: round trips, order across batches, handles, threads and
 * processes, persistence, foreign and newer directories, compaction.
 * Crashes, damage and faults: test_log_damage.c.  (The store contract
 * itself is also run over Log stacks by the test_conformance_* suites.)
 */
#include "logfix.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

/* ------------------------------------------------------------ Basics */

START_TEST(round_trip) {
    fx f;
    pd_store *s = fx_start(&f);
    pd_bytes tp[] = {V("a"), V(""), PD_BYTES("\0/..", 4)};
    pd_key ks[] = {K("x"), PD_KEY_TUPLE(tp, 3), PD_KEY("", 0), K("x"),
                   PD_KEY("\xff\x00", 2)};
    pd_bytes vs[] = {V("1"), V("tuple"), V("empty-key"), V("2"),
                     PD_BYTES("\0\1\2", 3)};
    TU_OK(pd_append(s, 5, ks, vs, 0), s);
    tu_expect_str(s, ks[0], "12");
    tu_expect_str(s, ks[1], "tuple");
    tu_expect_str(s, ks[2], "empty-key");
    tu_expect(s, ks[4], "\0\1\2", 3);
    tu_expect_str(s, K("never"), "");
    /* Empty values, and many batches in order. */
    pd_bytes e = {NULL, 0};
    TU_OK(pd_append(s, 1, ks, &e, 0), s);
    char buf[32], want[8192] = "12";
    for (int i = 0; i < 500; i++) {
        snprintf(buf, sizeof buf, "<%d>", i);
        tu_append1(s, ks[0], buf, strlen(buf));
        strcat(want, buf);
    }
    tu_expect_str(s, ks[0], want);
    /* A huge value and a key at the size limit. */
    size_t n = 3u << 20;
    char *big = malloc(n), *hk = malloc(PD_KEY_MAX);
    for (size_t i = 0; i < n; i++) big[i] = (char)(i * 7 + (i >> 9));
    memset(hk, 'k', PD_KEY_MAX);
    pd_key bk[] = {PD_KEY(hk, PD_KEY_MAX), K("y")};
    pd_bytes bv[] = {PD_BYTES(big, n), V("small")};
    TU_OK(pd_append(s, 2, bk, bv, 0), s);
    tu_expect(s, bk[0], big, n);
    ck_assert_int_eq(tu_listed_size(s, bk[0]), (long long)n);
    ck_assert_int_eq(tu_listed_size(s, ks[0]), (long long)strlen(want));
    TU_OK(pd_close(&s), NULL);
    /* Persists, compacted by the last close: one compacted segment. */
    ck_assert_int_eq(s_count(f.root, "c-"), 1);
    ck_assert_int_eq(s_count(f.root, "w-"), 0);
    s = fx_open(&f);
    tu_expect_str(s, ks[0], want);
    tu_expect(s, bk[0], big, n);
    tu_expect_str(s, ks[1], "tuple");
    TU_OK(pd_close(&s), NULL);
    free(big);
    free(hk);
    fx_done(&f);
}
END_TEST

START_TEST(delete_iset_drop_across_handles) {
    fx f;
    pd_store *a = fx_start(&f), *b = fx_open(&f);
    tu_append1(a, K("k"), "aa", 2);
    tu_append1(b, K("k"), "bb", 2);
    tu_append1(b, K("j"), "j1", 2);
    tu_expect_str(a, K("k"), "aabb");
    TU_OK(pd_delete(b, 1, &K("k"), 0), b);
    tu_expect_str(a, K("k"), "");
    tu_append1(a, K("k"), "c", 1);
    tu_expect_str(b, K("k"), "c");
    pd_key ik = K("j");
    pd_bytes iv = V("set");
    TU_OK(pd_iset(a, 1, &ik, &iv, 0), a);
    tu_expect_str(b, ik, "set");
    tu_append1(b, ik, "+", 1);
    tu_expect_str(a, ik, "set+");
    ck_assert_uint_eq(tu_nkeys(b), 2);
    TU_OK(pd_drop(b, 0), b);
    ck_assert_uint_eq(tu_nkeys(a), 0);
    tu_expect_str(a, K("k"), "");
    /* a's next append goes to a new segment, after the drop. */
    tu_append1(a, K("k"), "new", 3);
    tu_expect_str(b, K("k"), "new");
    TU_OK(pd_close(&a), NULL);
    TU_OK(pd_close(&b), NULL);
    pd_store *c = fx_open(&f);
    tu_expect_str(c, K("k"), "new");
    tu_expect_str(c, K("j"), "");
    fx_end(&f, &c);
}
END_TEST

START_TEST(order_across_handles) {
    fx f;
    fx_init(&f);
    enum { H = 4, N = 300 };
    pd_store *h[H];
    for (int i = 0; i < H; i++) h[i] = fx_open(&f);
    char want[H * N * 8] = "", buf[16];
    for (int i = 0; i < N; i++) {
        int w = (i * 7) % H;
        snprintf(buf, sizeof buf, "%d.%d;", w, i);
        pd_key ks[] = {K("all"), K("other")};
        pd_bytes vs[] = {V(buf), V("o")};
        TU_OK(pd_append(h[w], 2, ks, vs, 0), h[w]);
        strcat(want, buf);
        if (i % 50 == 0) tu_expect_str(h[(w + 1) % H], K("all"), want);
    }
    for (int i = 0; i < H; i++) tu_expect_str(h[i], K("all"), want);
    ck_assert_int_eq(s_count(f.root, "w-"), H);
    for (int i = 0; i < H; i++) TU_OK(pd_close(&h[i]), NULL);
    fx_end_check(&f, "all", want);
}
END_TEST

START_TEST(temp_and_misuse) {
    pd_store *s = NULL, *d = NULL;
    char *parent = tu_mkdtemp();
    TU_OK(pd_log_open_temp(&s, parent, 0), NULL);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", pd_log_path(s));
    tu_append1(s, K("t"), "v", 1);
    TU_OK(pd_close(&s), NULL);
    ck_assert_int_ne(access(path, F_OK), 0);
    TU_OK(pd_log_open_temp(&s, parent, PD_LOG_KEEP), NULL);
    snprintf(path, sizeof path, "%s", pd_log_path(s));
    tu_append1(s, K("t"), "v", 1);
    TU_OK(pd_close(&s), NULL);
    TU_OK(pd_log_open(&s, path, 0), NULL);
    tu_expect_str(s, K("t"), "v");
    ck_assert_int_eq(pd_log_compact(s, 0x1), PD_ERR_MISUSE);
    TU_OK(pd_close(&s), NULL);
    ck_assert_int_eq(pd_log_open(&s, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_log_open(&s, path, 0x8), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_log_open_temp(&s, parent, PD_LOG_CREATE),
                     PD_ERR_MISUSE);
    ck_assert_int_eq(pd_log_compact(NULL, 0), PD_ERR_MISUSE);
    TU_OK(pd_dict_open(&d), NULL);
    ck_assert_int_eq(pd_log_compact(d, 0), PD_ERR_MISUSE);
    ck_assert_uint_eq(pd_log_torn(d), 0);
    ck_assert_str_eq(pd_log_notice(d), "");
    ck_assert_ptr_null(pd_log_path(d));
    TU_OK(pd_close(&d), NULL);
    /* Missing directory without PD_LOG_CREATE. */
    snprintf(path, sizeof path, "%s/missing", parent);
    ck_assert_int_eq(pd_log_open(&s, path, 0), PD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), path));
    tu_rmtree(parent);
    free(parent);
}
END_TEST

START_TEST(refuses_foreign_and_newer) {
    fx f;
    fx_init(&f);
    pd_store *s = NULL;
    /* A directory holding other things. */
    char p[PATH_MAX + 32];
    ck_assert_int_eq(mkdir(f.root, 0700), 0);
    snprintf(p, sizeof p, "%s/somefile", f.root);
    ck_assert_int_eq(tu_write_file(p, "x", 1), 0);
    ck_assert_int_eq(pd_log_open(&s, f.root, 0), PD_ERR_CORRUPT);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), f.root));
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "not a Log"));
    snprintf(p, sizeof p, "%s/.lock", f.root);
    ck_assert_int_ne(access(p, F_OK), 0); /* nothing created there */
    tu_rmtree(f.root);
    /* A marker with another magic, then a newer version. */
    s = fx_open(&f);
    tu_append1(s, K("k"), "v", 1);
    TU_OK(pd_close(&s), NULL);
    snprintf(p, sizeof p, "%s/partd-log", f.root);
    unsigned char m[16] = "PARTDLOG";
    m[8] = 3; /* 2 (attempts) is read too */
    ck_assert_int_eq(tu_write_file(p, m, sizeof m), 0);
    ck_assert_int_eq(pd_log_open(&s, f.root, 0), PD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "newer"));
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), f.root));
    ck_assert_int_eq(tu_write_file(p, "NOTALOG.........", 16), 0);
    ck_assert_int_eq(pd_log_open(&s, f.root, 0), PD_ERR_CORRUPT);
    m[8] = 1;
    ck_assert_int_eq(tu_write_file(p, m, sizeof m), 0);
    s = fx_open(&f);
    tu_expect_str(s, K("k"), "v");
    TU_OK(pd_close(&s), NULL);
    /* A FIFO and a directory named like segments: not ours, ignored (never
     * opened blocking). */
    snprintf(p, sizeof p, "%s/w-fifo", f.root);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    snprintf(p, sizeof p, "%s/w-dir", f.root);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    s = fx_open(&f);
    tu_expect_str(s, K("k"), "v");
    TU_OK(pd_log_compact(s, 0), s);
    TU_OK(pd_close(&s), NULL);
    ck_assert_int_eq(s_count(f.root, "w-"), 2); /* left alone */
    /* A lost state file is rebuilt from the segments: the sequence goes
     * on after the old records. */
    snprintf(p, sizeof p, "%s/state", f.root);
    ck_assert_int_eq(unlink(p), 0);
    pd_store *a = fx_open(&f), *b = fx_open(&f);
    tu_append1(a, K("k"), "2", 1);
    tu_expect_str(b, K("k"), "v2");
    TU_OK(pd_close(&a), NULL);
    fx_end(&f, &b);
}
END_TEST

/* ------------------------------------------------------------ Compaction */

START_TEST(compaction) {
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    char v[1000];
    memset(v, 'v', sizeof v);
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "p%d", i % 20);
        tu_append1(s, K(key), v, (size_t)(i % 7) * 100 + 1);
    }
    pd_keylist *before = NULL;
    TU_OK(pd_keys(r, &before, 0), r);
    pd_key all[20];
    char names[20][8];
    for (int i = 0; i < 20; i++) {
        snprintf(names[i], sizeof names[i], "p%d", i);
        all[i] = K(names[i]);
    }
    pd_result *g1 = NULL, *g2 = NULL;
    TU_OK(pd_get(r, 20, all, &g1, 0), r);
    long long bytes = s_seg_bytes(f.root);
    TU_OK(pd_log_compact(s, 0), s);
    ck_assert_int_eq(s_count(f.root, "c-"), 1);
    /* The other handle sees the same store, as does the compactor. */
    TU_OK(pd_get(r, 20, all, &g2, 0), r);
    ck_assert_uint_eq(pd_result_total(g1), pd_result_total(g2));
    for (int i = 0; i < 20; i++) {
        pd_bytes x = pd_result_value(g1, (size_t)i),
                 y = pd_result_value(g2, (size_t)i);
        ck_assert_uint_eq(x.size, y.size);
        ck_assert(!memcmp(x.data, y.data, x.size));
    }
    pd_result_free(&g2);
    TU_OK(pd_get(s, 20, all, &g2, 0), s);
    ck_assert_uint_eq(pd_result_total(g1), pd_result_total(g2));
    pd_result_free(&g2);
    ck_assert_uint_eq(tu_nkeys(r), pd_keylist_count(before));
    pd_keylist_free(&before);
    /* Deletes reclaim space at the next compaction. */
    TU_OK(pd_delete(s, 10, all, 0), s);
    tu_append1(s, all[19], "tail", 4);
    TU_OK(pd_log_compact(r, 0), r);
    ck_assert_int_lt(s_seg_bytes(f.root), bytes * 2 / 3);
    tu_expect_str(s, all[0], "");
    size_t n;
    char *got = tu_get1(s, &all[19], &n);
    ck_assert_uint_eq(n, pd_result_value(g1, 19).size + 4);
    ck_assert(!memcmp(got + n - 4, "tail", 4));
    free(got);
    /* Appends after a compaction land after the compacted data. */
    tu_append1(r, all[19], "!", 1);
    got = tu_get1(s, &all[19], &n);
    ck_assert_int_eq(got[n - 1], '!');
    free(got);
    pd_result_free(&g1);
    TU_OK(pd_close(&s), NULL);
    fx_end(&f, &r);
}
END_TEST

/* The last handle to close compacts if anything was written since the last
 * compaction, whether or not it wrote. */
START_TEST(close_compacts) {
    fx f;
    pd_store *w = fx_start(&f), *r = fx_open(&f);
    tu_append1(w, K("k"), "1", 1);
    TU_OK(pd_close(&w), NULL);
    ck_assert_int_eq(s_count(f.root, "w-"), 1);
    ck_assert_int_eq(s_count(f.root, "c-"), 0);
    tu_expect_str(r, K("k"), "1");
    TU_OK(pd_close(&r), NULL);
    ck_assert_int_eq(s_count(f.root, "w-"), 0);
    ck_assert_int_eq(s_count(f.root, "c-"), 1);
    /* Nothing new: no compaction (the compacted segment stays). */
    char before[PATH_MAX + 300], after[PATH_MAX + 300];
    s_only(f.root, "c-", before, sizeof before);
    r = fx_open(&f);
    tu_expect_str(r, K("k"), "1");
    TU_OK(pd_close(&r), NULL);
    s_only(f.root, "c-", after, sizeof after);
    ck_assert_str_eq(before, after);
    fx_done(&f);
}
END_TEST

/* A reader in another process while the parent compacts again and again:
 * every get sees the whole content, never twice, never missing. */
typedef struct rd_arg {
    const char *root;
    const char *want;
    int rounds;
} rd_arg;

static int s_reader_child(void *p) {
    rd_arg *a = p;
    pd_store *s = fx_child_open(a->root);
    for (int i = 0; i < a->rounds; i++) {
        char *v = NULL;
        size_t n = 0;
        int rc = tu_fetch1(s, K("k"), &v, &n);
        TU_CHECK(rc == 0, "get: %s", pd_errmsg(s));
        TU_CHECK(n == strlen(a->want) && !memcmp(v, a->want, n),
                 "round %d: got %zu bytes, want %zu", i, n, strlen(a->want));
        free(v);
        TU_CHECK(tu_listed_size(s, K("k")) == (long long)n, "keys size");
    }
    pd_close(&s);
    return 0;
}

START_TEST(compaction_concurrent_reader) {
    fx f;
    pd_store *s = fx_start(&f);
    char want[4096] = "", buf[16];
    for (int i = 0; i < 300; i++) {
        snprintf(buf, sizeof buf, "%d;", i);
        tu_append1(s, K("k"), buf, strlen(buf));
        tu_append1(s, K("other"), buf, strlen(buf));
        strcat(want, buf);
    }
    rd_arg a = {f.root, want, 300};
    tu_child c = tu_child_spawn(s_reader_child, &a, NULL, 0);
    for (int i = 0; i < 30; i++) {
        TU_OK(pd_log_compact(s, 0), s);
        tu_append1(s, K("other"), "x", 1);
    }
    char msg[2048];
    int st = tu_child_wait(c, msg, sizeof msg);
    ck_assert_msg(st == 0, "reader: %d %s", st, msg);
    fx_end(&f, &s);
}
END_TEST

/* ---------------------------------------------------------- Concurrency */

/* Writer w appends N batches of records "<w>:<i>;" to "shared" and to its
 * own key, plus a second key in the same batch; checks at the end that
 * every record is there once, whole, each writer's in order. */
typedef struct wr_arg {
    const char *root;
    pd_store *s; /* NULL: open a handle of its own */
    int w, n;
} wr_arg;

static void s_write_records(pd_store *s, int w, int n) {
    char rec[32], own[16];
    snprintf(own, sizeof own, "own%d", w);
    for (int i = 0; i < n; i++) {
        snprintf(rec, sizeof rec, "%d:%06d;", w, i);
        pd_key ks[] = {K("shared"), K(own)};
        pd_bytes vs[] = {V(rec), V(rec)};
        int rc = pd_append(s, 2, ks, vs, 0);
        TU_CHECK(rc == 0, "append: %s", pd_errmsg(s));
    }
}

static int s_writer_child(void *p) {
    wr_arg *a = p;
    pd_store *s = a->s;
    if (!s) s = fx_child_open(a->root);
    s_write_records(s, a->w, a->n);
    if (!a->s) TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

static void *s_writer_thread(void *p) {
    s_writer_child(p);
    return NULL;
}

/* Checks "shared" and "own<w>" for writers 0..nw-1 of n records each. */
static void s_check_records(pd_store *s, int nw, int n) {
    size_t len;
    char *v = tu_get1(s, &K("shared"), &len);
    ck_assert_uint_eq(len, (size_t)nw * (size_t)n * 9);
    int *next = calloc((size_t)nw, sizeof *next);
    for (size_t at = 0; at < len; at += 9) {
        int w, i;
        ck_assert_int_eq(sscanf(v + at, "%d:%6d;", &w, &i), 2);
        ck_assert(w >= 0 && w < nw && v[at + 8] == ';');
        ck_assert_int_eq(i, next[w]);
        next[w]++;
    }
    free(v);
    free(next);
    for (int w = 0; w < nw; w++) {
        char own[16];
        snprintf(own, sizeof own, "own%d", w);
        v = tu_get1(s, &K(own), &len);
        ck_assert_uint_eq(len, (size_t)n * 9);
        for (int i = 0; i < n; i++) {
            char rec[16];
            snprintf(rec, sizeof rec, "%d:%06d;", w, i);
            ck_assert(!memcmp(v + (size_t)i * 9, rec, 9));
        }
        free(v);
    }
}

START_TEST(processes_append_together) {
    fx f;
    pd_store *s = fx_start(&f);
    enum { N = 400 };
    /* Child 1 opens its own handle; child 2 uses the inherited one. */
    wr_arg a1 = {f.root, NULL, 1, N}, a2 = {f.root, s, 2, N};
    tu_child c1 = tu_child_spawn(s_writer_child, &a1, NULL, 0);
    tu_child c2 = tu_child_spawn(s_writer_child, &a2, NULL, 0);
    s_write_records(s, 0, N);
    char msg[2048];
    ck_assert_msg(tu_child_wait(c1, msg, sizeof msg) == 0, "%s", msg);
    ck_assert_msg(tu_child_wait(c2, msg, sizeof msg) == 0, "%s", msg);
    s_check_records(s, 3, N);
    TU_OK(pd_close(&s), NULL);
    s = fx_open(&f);
    s_check_records(s, 3, N);
    fx_end(&f, &s);
}
END_TEST

/* Processes making the same new directory a Log at once all open it. */
static int s_create_child(void *p) {
    wr_arg *a = p;
    pd_store *s = NULL;
    int rc = pd_log_open(&s, a->root, PD_LOG_CREATE);
    TU_CHECK(rc == 0, "open: %s", pd_errmsg(NULL));
    tu_append1(s, K("k"), "x", 1);
    TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

START_TEST(concurrent_create) {
    fx f;
    fx_init(&f);
    enum { C = 6 };
    wr_arg a = {f.root, NULL, 0, 0};
    tu_child c[C];
    for (int i = 0; i < C; i++)
        c[i] = tu_child_spawn(s_create_child, &a, NULL, 0);
    char msg[1024];
    for (int i = 0; i < C; i++)
        ck_assert_msg(tu_child_wait(c[i], msg, sizeof msg) == 0, "%s", msg);
    fx_end_check(&f, "k", "xxxxxx");
}
END_TEST

START_TEST(threads_one_and_many_handles) {
    fx f;
    pd_store *s = fx_start(&f);
    tu_threads_own_shared(s, 4, 300);
    TU_OK(pd_drop(s, 0), s);
    enum { T = 4, N = 300 };
    pthread_t th[T];
    wr_arg a[T];
    for (int t = 0; t < T; t++) {
        a[t] = (wr_arg){f.root, NULL, t, N};
        ck_assert_int_eq(pthread_create(&th[t], NULL, s_writer_thread, &a[t]),
                         0);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    s_check_records(s, T, N);
    fx_end(&f, &s);
}
END_TEST

/* pd_lock excludes another process's append until pd_unlock. */
static int s_locked_child(void *p) {
    wr_arg *a = p;
    pd_store *s = fx_child_open(a->root);
    tu_append1(s, K("order"), "child;", 6);
    pd_close(&s);
    return 0;
}

START_TEST(lock_excludes_processes) {
    fx f;
    pd_store *s = fx_start(&f);
    TU_OK(pd_lock(s), s);
    TU_OK(pd_lock(s), s);
    wr_arg a = {f.root, NULL, 0, 0};
    tu_child c = tu_child_spawn(s_locked_child, &a, NULL, 0);
    usleep(200 * 1000);
    tu_expect_str(s, K("order"), ""); /* the child waits */
    tu_append1(s, K("order"), "parent;", 7);
    TU_OK(pd_unlock(s), s);
    TU_OK(pd_unlock(s), s);
    char msg[1024];
    ck_assert_msg(tu_child_wait(c, msg, sizeof msg) == 0, "%s", msg);
    tu_expect_str(s, K("order"), "parent;child;");
    fx_end(&f, &s);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"round_trip", round_trip},
        {"delete_iset_drop_across_handles", delete_iset_drop_across_handles},
        {"order_across_handles", order_across_handles},
        {"temp_and_misuse", temp_and_misuse},
        {"refuses_foreign_and_newer", refuses_foreign_and_newer},
        {"compaction", compaction},
        {"compaction_concurrent_reader", compaction_concurrent_reader},
        {"close_compacts", close_compacts},
        {"processes_append_together", processes_append_together},
        {"concurrent_create", concurrent_create},
        {"threads_one_and_many_handles", threads_one_and_many_handles},
        {"lock_excludes_processes", lock_excludes_processes},
    };
    return TU_RUN_CASES("test_log", cases, 120, 0);
}
