/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Attempts on a Log under faults and damage: fsync on commit, failing
 * writes and fsyncs (through the syscall table; appends write with writev,
 * made of writes by writevfix.h) during attempt appends and commits,
 * attempt and commit records torn by a writer killed mid-write,
 * and every bit flip of a small store's attempt segment and commit log:
 * nothing partial ever visible, wrong bytes never returned, the store
 * usable afterwards.
 */
#include "logfix.h"
#include "writevfix.h"

#include <errno.h>
#include <signal.h>

static pd_attempt *s_begin(pd_store *s, const char *writer, uint64_t n) {
    pd_attempt *a = NULL;
    pd_key w = PD_KEY_STR(writer);
    TU_OK(pd_attempt_begin(s, &w, n, &a, 0), s);
    return a;
}

static void s_add(pd_attempt *a, const char *key, const char *val) {
    pd_key k = PD_KEY_STR(key);
    pd_bytes v = V(val);
    TU_OK(pd_attempt_append(a, 1, &k, &v, 0), pd_attempt_store(a));
}

/* ------------------------------------------------------------- Fsync */

static int g_fsyncs;
static int f_fsync_count(int fd) {
    g_fsyncs++;
    return fsync(fd);
}

START_TEST(fsync_on_commit) {
    fx f;
    pd_store *s = fx_start(&f);
    pd__sys_table.fsync = f_fsync_count;
    pd_attempt *a = s_begin(s, "w", 0);
    s_add(a, "k", "v1;");
    s_add(a, "k", "v2;");
    g_fsyncs = 0;
    TU_OK(pd_attempt_commit(&a, 0), s);
    ck_assert_int_eq(g_fsyncs, 0);
    a = s_begin(s, "w2", 0);
    s_add(a, "k", "v3;");
    g_fsyncs = 0;
    TU_OK(pd_attempt_commit(&a, PD_FSYNC), s);
    /* The segment, the directory, the commit log. */
    ck_assert_int_ge(g_fsyncs, 3);
    tu_expect_str(s, K("k"), "v1;v2;v3;");
    TU_OK(pd_close(&s), NULL);
    /* PD_LOG_FSYNC: every attempt append, and the commit. */
    TU_OK(pd_log_open(&s, f.root, PD_LOG_FSYNC), NULL);
    a = s_begin(s, "w3", 0);
    g_fsyncs = 0;
    s_add(a, "k", "v4;");
    ck_assert_int_eq(g_fsyncs, 1);
    TU_OK(pd_attempt_commit(&a, 0), s);
    ck_assert_int_ge(g_fsyncs, 4);
    tu_expect_str(s, K("k"), "v1;v2;v3;v4;");
    fx_end(&f, &s);
}
END_TEST

/* ------------------------------------------------------------ Faults */

static int g_fail_writes; /* writes to fail from now (ENOSPC); -1: none */
static ssize_t f_write(int fd, const void *b, size_t n) {
    if (g_fail_writes > 0) {
        g_fail_writes--;
        if (n > 8) {
            /* Half of it lands, then the disk is full. */
            ssize_t w = write(fd, b, n / 2);
            (void)w;
        }
        errno = ENOSPC;
        return -1;
    }
    return write(fd, b, n);
}

static int g_fail_fsyncs;
static int f_fsync(int fd) {
    if (g_fail_fsyncs > 0) {
        g_fail_fsyncs--;
        errno = EIO;
        return -1;
    }
    return fsync(fd);
}

static int f_flock_eio(int fd, int op) {
    (void)fd;
    (void)op;
    errno = EIO;
    return -1;
}

START_TEST(faults_in_append_and_commit) {
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    pd__sys_table.write = f_write;
    pd__sys_table.writev = fx_writev_by_write; /* appends: writev */
    pd__sys_table.fsync = f_fsync;
    /* An attempt append that fails leaves nothing of its batch. */
    pd_attempt *a = s_begin(s, "w", 0);
    s_add(a, "k", "a1;");
    g_fail_writes = 1;
    pd_key ks[2] = {K("k"), K("j")};
    pd_bytes vs[2] = {V("lost;"), V("lost;")};
    ck_assert_int_eq(pd_attempt_append(a, 2, ks, vs, 0), PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(s), "attempt append 'k'") &&
                      strstr(pd_errmsg(s), "No space left"),
                  "%s", pd_errmsg(s));
    s_add(a, "k", "a2;");
    TU_OK(pd_attempt_commit(&a, 0), s);
    tu_expect_str(r, K("k"), "a1;a2;");
    tu_expect_str(r, K("j"), "");
    /* A commit whose write fails: nothing committed, the writer may retry. */
    a = s_begin(s, "w2", 0);
    s_add(a, "k", "b1;");
    g_fail_writes = 1;
    ck_assert_int_eq(pd_attempt_commit(&a, 0), PD_ERR_IO);
    ck_assert_ptr_null(a);
    ck_assert_msg(strstr(pd_errmsg(s), "attempt commit: writer 'w2'") &&
                      strstr(pd_errmsg(s), "commits"),
                  "%s", pd_errmsg(s));
    tu_expect_str(r, K("k"), "a1;a2;");
    a = s_begin(r, "w2", 1);
    s_add(a, "k", "b2;");
    TU_OK(pd_attempt_commit(&a, 0), r);
    tu_expect_str(s, K("k"), "a1;a2;b2;");
    /* A failing fsync of the commit (PD_FSYNC): not committed either. */
    a = s_begin(s, "w3", 0);
    s_add(a, "k", "c1;");
    g_fail_fsyncs = 1;
    ck_assert_int_eq(pd_attempt_commit(&a, PD_FSYNC), PD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "fsync"));
    tu_expect_str(r, K("k"), "a1;a2;b2;");
    /* The segment's fsync went through; the commit log's fails. */
    a = s_begin(s, "w3", 1);
    s_add(a, "k", "c2;");
    g_fail_fsyncs = 0;
    TU_OK(pd_attempt_commit(&a, PD_FSYNC), s);
    tu_expect_str(r, K("k"), "a1;a2;b2;c2;");
    /* A commit whose lock cannot be taken: refused, the attempt freed. */
    a = s_begin(s, "w4", 0);
    s_add(a, "k", "d1;");
    pd__sys_table.flock = f_flock_eio;
    ck_assert_int_eq(pd_attempt_commit(&a, 0), PD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "flock"));
    pd__sys_reset();
    tu_expect_str(r, K("k"), "a1;a2;b2;c2;");
    TU_OK(pd_close(&r), NULL);
    fx_end_reopened(&f, &s, "k", "a1;a2;b2;c2;");
}
END_TEST

/* ------------------------------------------------------------- Torn */

/* Half of the next write lands, then the process dies. */
static ssize_t s_write_then_die(int fd, const void *b, size_t n) {
    ssize_t w = write(fd, b, n / 2);
    (void)w;
    raise(SIGKILL);
    return -1;
}

typedef struct torn_arg {
    const char *root;
    bool in_commit; /* die in the commit's write, else in an append */
} torn_arg;

static int s_torn_child(void *p) {
    torn_arg *ta = p;
    pd_store *s = fx_child_open(ta->root);
    pd_key w = K("w"), k = K("k");
    pd_attempt *a = NULL;
    TU_CHECK(pd_attempt_begin(s, &w, 0, &a, 0) == 0, "%s", pd_errmsg(s));
    pd_bytes v = V("child;");
    TU_CHECK(pd_attempt_append(a, 1, &k, &v, 0) == 0, "%s", pd_errmsg(s));
    pd__sys_table.writev = fx_writev_by_write; /* appends: writev */
    if (!ta->in_commit) pd__sys_table.write = s_write_then_die;
    TU_CHECK(pd_attempt_append(a, 1, &k, &v, 0) == 0, "%s", pd_errmsg(s));
    pd__sys_table.write = s_write_then_die;
    pd_attempt_commit(&a, 0);
    return 1;
}

START_TEST(torn_records) {
    for (int in_commit = 0; in_commit < 2; in_commit++) {
        fx f;
        pd_store *s = fx_start(&f);
        tu_append1(s, K("k"), "p;", 2);
        torn_arg ta = {f.root, in_commit};
        tu_child c = tu_child_spawn(s_torn_child, &ta, NULL, 0);
        char msg[512];
        ck_assert_int_eq(tu_child_wait(c, msg, sizeof msg), 128 + SIGKILL);
        /* Nothing of the dead writer's attempt; reads work. */
        tu_expect_str(s, K("k"), "p;");
        ck_assert_uint_eq(pd_log_torn(s), in_commit ? 0 : 1);
        /* The retry commits (cutting the torn commit record first). */
        pd_attempt *a = s_begin(s, "w", 1);
        ck_assert_uint_eq(pd_log_torn(s), 1);
        ck_assert_ptr_nonnull(
            strstr(pd_log_notice(s), in_commit ? "torn commit" : "torn"));
        s_add(a, "k", "retry;");
        TU_OK(pd_attempt_commit(&a, 0), s);
        tu_expect_str(s, K("k"), "p;retry;");
        pd_store *r = fx_open(&f);
        tu_expect_str(r, K("k"), "p;retry;");
        TU_OK(pd_close(&r), NULL);
        fx_end_reopened(&f, &s, "k", "p;retry;");
    }
}
END_TEST

/* After a flip: each key reads exactly or fails with PD_ERR_CORRUPT naming
 * a file; returns a mask of the keys that read exactly. */
static unsigned s_check(const char *root, const char **want, int nk, long off) {
    pd_store *s = NULL;
    TU_OK(pd_log_open(&s, root, 0), NULL);
    unsigned ok = 0;
    for (int i = 0; i < nk; i++) {
        char kn[8];
        snprintf(kn, sizeof kn, "k%d", i);
        if (fx_exact_or_corrupt(s, root, kn, want[i], off)) ok |= 1u << i;
    }
    TU_OK(pd_close(&s), NULL);
    return ok;
}

static void s_flip_file(const char *root, const char *p, const char **want,
                        int nk) {
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    long caught = 0;
    for (long off = 0; off < st.st_size; off++) {
        fx_flip(p, off, 4);
        if (s_check(root, want, nk, off) != (1u << nk) - 1) caught++;
        fx_flip(p, off, 4);
    }
    /* Most flips are caught (header copies and padding are not read). */
    ck_assert_msg(caught >= st.st_size / 3, "%s: %ld of %ld flips caught", p,
                  caught, (long)st.st_size);
    ck_assert_int_eq(s_check(root, want, nk, -1), (1u << nk) - 1);
}

START_TEST(bit_flips) {
    fx f;
    fx_init(&f);
    /* A sentinel handle stays open: no close compacts the store away. */
    pd_store *sentinel = fx_open(&f), *s = fx_open(&f);
    tu_append1(s, K("k0"), "plain;", 6);
    pd_attempt *a = s_begin(s, "w", 0);
    s_add(a, "k0", "att;");
    s_add(a, "k1", "one;");
    TU_OK(pd_attempt_commit(&a, 0), s);
    a = s_begin(s, "w2", 0);
    s_add(a, "k2", "two;");
    TU_OK(pd_attempt_commit(&a, 0), s);
    a = s_begin(s, "w3", 0); /* left open: invisible whatever happens */
    s_add(a, "k3", "open;");
    const char *want[4] = {"plain;att;", "one;", "two;", ""};
    char seg[PATH_MAX + 300], p[PATH_MAX + 64];
    s_only(f.root, "w-", seg, sizeof seg);
    s_flip_file(f.root, seg, want, 4);
    snprintf(p, sizeof p, "%s/commits", f.root);
    s_flip_file(f.root, p, want, 4);
    /* A damaged commit log: commits fail, salvage rewrites it. */
    fx_flip(p, 20, 4);
    pd_store *r = fx_open(&f); /* (s read the log before: it trusts it) */
    pd_key w4 = K("w4");
    pd_attempt *b = NULL;
    ck_assert_int_eq(pd_attempt_begin(r, &w4, 0, &b, 0), PD_ERR_CORRUPT);
    ck_assert_msg(strstr(pd_errmsg(r), "commits: bad commit record at offset "
                                       "0") &&
                      strstr(pd_errmsg(r), "SALVAGE"),
                  "%s", pd_errmsg(r));
    TU_OK(pd_log_compact(s, PD_LOG_SALVAGE), s);
    tu_expect_str(s, K("k0"), "plain;att;");
    tu_expect_str(s, K("k2"), "two;");
    b = s_begin(r, "w4", 0);
    s_add(b, "k4", "four;");
    TU_OK(pd_attempt_commit(&b, 0), r);
    TU_OK(pd_close(&r), NULL);
    tu_expect_str(s, K("k4"), "four;");
    s_add(a, "k3", "more;");
    TU_OK(pd_attempt_commit(&a, 0), s);
    tu_expect_str(s, K("k3"), "open;more;");
    TU_OK(pd_close(&s), NULL);
    fx_end(&f, &sentinel);
}
END_TEST

/* A commit whose records are gone (a segment removed by hand) is damage,
 * never an empty value. */
START_TEST(commit_missing_records) {
    fx f;
    pd_store *s = fx_start(&f);
    pd_attempt *a = s_begin(s, "w", 0);
    s_add(a, "k", "v;");
    TU_OK(pd_attempt_commit(&a, 0), s);
    char seg[PATH_MAX + 300];
    s_only(f.root, "w-", seg, sizeof seg);
    ck_assert_int_eq(unlink(seg), 0);
    pd_store *r = fx_open(&f);
    char *got = NULL;
    ck_assert_int_eq(tu_fetch1(r, K("k"), &got, NULL), PD_ERR_CORRUPT);
    free(got);
    ck_assert_msg(strstr(pd_errmsg(r), "commits") &&
                      strstr(pd_errmsg(r), "naming 1 records, 0 of them"),
                  "%s", pd_errmsg(r));
    TU_OK(pd_close(&r), NULL);
    pd_close(&s); /* its close compaction fails on the damage: fine */
    fx_done(&f);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"fsync_on_commit", fsync_on_commit},
        {"faults_in_append_and_commit", faults_in_append_and_commit},
        {"torn_records", torn_records},
        {"bit_flips", bit_flips},
        {"commit_missing_records", commit_missing_records},
    };
    return TU_RUN_CASES("test_log_attempt_damage", cases, 300, 0);
}
