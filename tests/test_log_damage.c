/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Log store under damage: writers killed mid-write (kill -9), bit flips
 * at every offset of a small store, salvaging compaction, and system-call
 * faults (ENOSPC, EDQUOT, EIO, short writes, EINTR) through pd__sys_table.
 */
#include "logfix.h"
#include "writevfix.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

/* ------------------------------------------------------------- Crashes */

/* Appends batches of varied sizes forever, reporting each acknowledged
 * batch number on fd. */
typedef struct kill_arg {
    const char *root;
    int fd;
} kill_arg;

static void s_batch_val(int i, char *buf, size_t *n) {
    *n = (size_t)(i % 13) * 997 + 9;
    for (size_t j = 0; j < *n; j++) buf[j] = (char)('a' + (i + j) % 26);
    char num[16];
    snprintf(num, sizeof num, "%08d", i);
    memcpy(buf, num, 8);
}

static int s_kill_child(void *p) {
    kill_arg *a = p;
    pd_store *s = fx_child_open(a->root);
    char *buf = malloc(13 * 997 + 16);
    for (int i = 0;; i++) {
        size_t n;
        s_batch_val(i, buf, &n);
        char key[16];
        snprintf(key, sizeof key, "p%d", i % 5);
        pd_key ks[] = {K(key), K("all")};
        pd_bytes vs[] = {PD_BYTES(buf, n), PD_BYTES(buf, 8)};
        TU_CHECK(pd_append(s, 2, ks, vs, 0) == 0, "%s", pd_errmsg(s));
        TU_CHECK(write(a->fd, &i, sizeof i) == sizeof i, "pipe");
    }
}

/* The child's half-written record: writes part of it, then dies. */
static ssize_t s_write_then_die(int fd, const void *b, size_t n) {
    ssize_t w = write(fd, b, n / 2);
    (void)w;
    raise(SIGKILL);
    return -1;
}

static int s_torn_child(void *p) {
    kill_arg *a = p;
    pd_store *s = fx_child_open(a->root);
    tu_append1(s, K("all"), "00000000", 8);
    pd__sys_table.write = s_write_then_die;
    pd__sys_table.writev = fx_writev_by_write;
    tu_append1(s, K("all"), "never-acknowledged", 18);
    return 1;
}

/* Checks that the acknowledged batches 0..last are all there (and maybe
 * the one after, whole). */
static void s_check_killed(pd_store *s, int last) {
    size_t n;
    char *all = tu_get1(s, &K("all"), &n);
    ck_assert_uint_ge(n, (size_t)(last + 1) * 8);
    ck_assert_uint_le(n, (size_t)(last + 2) * 8);
    for (size_t i = 0; i < n / 8; i++) {
        char want[24];
        snprintf(want, sizeof want, "%08zu", i);
        ck_assert(!memcmp(all + i * 8, want, 8));
    }
    int total = (int)(n / 8);
    free(all);
    char *buf = malloc(13 * 997 + 16);
    for (int k = 0; k < 5; k++) {
        char key[16];
        snprintf(key, sizeof key, "p%d", k);
        size_t len, at = 0;
        char *v = tu_get1(s, &K(key), &len);
        for (int i = k; i < total; i += 5) {
            size_t bn;
            s_batch_val(i, buf, &bn);
            ck_assert_uint_ge(len, at + bn);
            ck_assert_msg(!memcmp(v + at, buf, bn), "batch %d differs", i);
            at += bn;
        }
        ck_assert_uint_eq(at, len);
        free(v);
    }
    free(buf);
}

START_TEST(kill9_writers) {
    fx f;
    pd_store *s = fx_start(&f);
    TU_OK(pd_close(&s), NULL);
    /* A deterministic torn record. */
    kill_arg a = {f.root, -1};
    char msg[1024];
    int st = tu_child_wait(tu_child_spawn(s_torn_child, &a, NULL, 0), msg,
                           sizeof msg);
    ck_assert_int_eq(st, 128 + SIGKILL);
    s = fx_open(&f);
    tu_expect_str(s, K("all"), "00000000");
    ck_assert_uint_eq(pd_log_torn(s), 1);
    ck_assert_ptr_nonnull(strstr(pd_log_notice(s), "torn record"));
    TU_OK(pd_drop(s, 0), s);
    TU_OK(pd_close(&s), NULL);
    /* Kill -9 at random moments. */
    srand((unsigned)time(NULL));
    for (int round = 0; round < 8; round++) {
        int pfd[2];
        ck_assert_int_eq(pipe(pfd), 0);
        a.fd = pfd[1];
        tu_child c = tu_child_spawn(s_kill_child, &a, pfd, 1);
        close(pfd[1]);
        usleep((useconds_t)(rand() % 40000 + 2000));
        kill(c.pid, SIGKILL);
        tu_child_wait(c, msg, sizeof msg);
        int last = -1, i;
        while (read(pfd[0], &i, sizeof i) == sizeof i) last = i;
        close(pfd[0]);
        s = fx_open(&f);
        s_check_killed(s, last);
        TU_OK(pd_drop(s, 0), s);
        TU_OK(pd_close(&s), NULL);
    }
    fx_done(&f);
}
END_TEST

/* ------------------------------------------------------------ Bit flips */

enum { NK = 3 };
static const char *const s_want[NK] = {"first;second;third", "b-value", ""};

/* Opens root, reads every key: each is exact or PD_ERR_CORRUPT (naming a
 * segment).  Returns a bitmask of the keys that read fine. */
static unsigned s_check_flipped(const char *root, long off) {
    pd_store *s = NULL;
    TU_OK(pd_log_open(&s, root, 0), NULL);
    const char *ks[NK] = {"a", "b", "gone"};
    unsigned ok = 0;
    for (int i = 0; i < NK; i++)
        if (fx_exact_or_corrupt(s, root, ks[i], s_want[i], off)) ok |= 1u << i;
    pd_keylist *kl = NULL;
    int rc = pd_keys(s, &kl, 0);
    ck_assert(rc == 0 || rc == PD_ERR_CORRUPT);
    pd_keylist_free(&kl);
    TU_OK(pd_close(&s), NULL);
    return ok;
}

static void s_flip_all(const char *root, const char *prefix, bool *isolated) {
    char seg[PATH_MAX + 300];
    s_only(root, prefix, seg, sizeof seg);
    int hold = s_hold_state(root); /* no compaction at the closes */
    struct stat st;
    ck_assert_int_eq(stat(seg, &st), 0);
    for (long off = 0; off < st.st_size; off++) {
        fx_flip(seg, off, off % 8);
        unsigned ok = s_check_flipped(root, off);
        if (ok != 0 && ok != (1u << NK) - 1) *isolated = true;
        /* The first header: recovered from its trailer copy. */
        if (off < 48 && strcmp(prefix, "w-") == 0)
            ck_assert_msg(ok == (1u << NK) - 1, "flip at %ld: lost keys %x",
                          off, ok);
        fx_flip(seg, off, off % 8);
    }
    ck_assert_uint_eq(s_check_flipped(root, -1), (1u << NK) - 1);
    close(hold);
}

START_TEST(bit_flips) {
    fx f;
    pd_store *s = fx_start(&f);
    int hold = s_hold_state(f.root);
    pd_key ks[] = {K("a"), K("b"), K("gone")};
    pd_bytes v1[] = {V("first;"), V("b-value"), V("x")};
    TU_OK(pd_append(s, 3, ks, v1, 0), s);
    tu_append1(s, ks[0], "second;", 7);
    TU_OK(pd_delete(s, 1, &ks[2], 0), s);
    tu_append1(s, ks[0], "third", 5);
    /* Not the last handle: no compaction at close. */
    TU_OK(pd_close(&s), NULL);
    close(hold);
    bool isolated = false;
    s_flip_all(f.root, "w-", &isolated);
    ck_assert_msg(isolated, "no flip failed one key alone");
    s = fx_open(&f);
    TU_OK(pd_log_compact(s, 0), s);
    TU_OK(pd_close(&s), NULL);
    isolated = false;
    s_flip_all(f.root, "c-", &isolated);
    ck_assert(isolated);
    fx_done(&f);
}
END_TEST

START_TEST(salvage) {
    fx f;
    pd_store *s = fx_start(&f);
    int hold = s_hold_state(f.root);
    tu_append1(s, K("a"), "aaaa", 4);
    tu_append1(s, K("b"), "bbbb", 4);
    tu_append1(s, K("a"), "AAAA", 4);
    TU_OK(pd_close(&s), NULL);
    close(hold);
    char seg[PATH_MAX + 300];
    s_only(f.root, "w-", seg, sizeof seg);
    size_t n;
    char *raw = tu_read_file(seg, &n);
    char *at = memmem(raw, n, "AAAA", 4);
    ck_assert_ptr_nonnull(at);
    long at_off = (long)(at - raw) + 1;
    fx_flip(seg, at_off, at_off % 8);
    hold = s_hold_state(f.root);
    /* One extent's data damaged: that key fails, the others read. */
    s = fx_open(&f);
    ck_assert_int_eq(pd_get(s, 1, &K("a"), &(pd_result *){NULL}, 0),
                     PD_ERR_CORRUPT);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "'a'"));
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "checksum"));
    tu_expect_str(s, K("b"), "bbbb");
    ck_assert_int_eq(pd_log_compact(s, 0), PD_ERR_CORRUPT);
    TU_OK(pd_log_compact(s, PD_LOG_SALVAGE), s);
    tu_expect_str(s, K("a"), "aaaa");
    tu_expect_str(s, K("b"), "bbbb");
    /* A damaged key table: its keys are unknown, so every get fails until
     * a salvaging compaction drops the record. */
    tu_append1(s, K("c"), "cccc", 4);
    TU_OK(pd_close(&s), NULL);
    close(hold);
    s_only(f.root, "w-", seg, sizeof seg);
    /* the first key-table entry's key */
    fx_flip(seg, 48 + 24 + 1, (48 + 24 + 1) % 8);
    s = fx_open(&f);
    ck_assert_int_eq(pd_get(s, 1, &K("b"), &(pd_result *){NULL}, 0),
                     PD_ERR_CORRUPT);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "damaged region"));
    pd_keylist *kl = NULL;
    ck_assert_int_eq(pd_keys(s, &kl, 0), PD_ERR_CORRUPT);
    ck_assert_ptr_null(kl);
    TU_OK(pd_log_compact(s, PD_LOG_SALVAGE), s);
    tu_expect_str(s, K("b"), "bbbb");
    tu_expect_str(s, K("c"), "");
    TU_OK(pd_close(&s), NULL);
    free(raw);
    fx_done(&f);
}
END_TEST

/* --------------------------------------------------------------- Faults */

static int g_calls, g_fail_at;
static int g_errno = ENOSPC;

/* The g_fail_at-th write writes a third, the next fails. */
static ssize_t f_write_short(int fd, const void *b, size_t n) {
    int c = ++g_calls;
    if (c == g_fail_at && n > 3) return write(fd, b, n / 3);
    if (c == g_fail_at + 1) {
        errno = g_errno;
        return -1;
    }
    return write(fd, b, n);
}

static int f_ftruncate_fail(int fd, off_t len) {
    (void)fd;
    (void)len;
    errno = EIO;
    return -1;
}

static ssize_t f_write_eintr(int fd, const void *b, size_t n) {
    if (++g_calls % 2) {
        errno = EINTR;
        return -1;
    }
    return write(fd, b, n);
}

static int f_fsync_fail(int fd) {
    (void)fd;
    errno = EIO;
    return -1;
}

/* Another handle reads the record just written, then fsync fails: the
 * undo shrinks the segment under what that handle read. */
static pd_store *g_reader, *g_other;
static bool g_saw;
static int f_fsync_read_fail(int fd) {
    (void)fd;
    pd__sys_reset();
    tu_append1(g_other, K("z"), "z", 1); /* readers have news to read */
    char *v = NULL;
    size_t n;
    tu_fetch1(g_reader, K("k"), &v, &n);
    g_saw = n > 0 && v[n - 1] == 'j';
    free(v);
    errno = EIO;
    return -1;
}

static ssize_t f_pread_fail(int fd, void *b, size_t n, off_t off) {
    if (++g_calls == g_fail_at) {
        errno = EIO;
        return -1;
    }
    return pread(fd, b, n, off);
}

static int f_fstat_fail(int fd, struct stat *st) {
    (void)fd;
    (void)st;
    errno = EIO;
    return -1;
}

static int f_openat_fail(int dfd, const char *p, int fl, mode_t m) {
    if (fl & O_CREAT) {
        errno = EMFILE;
        return -1;
    }
    return openat(dfd, p, fl, m);
}

static void s_expect_fail(int rc, pd_store *s, int code, const char *what) {
    ck_assert_msg(rc == code, "%s -> %d: %s", what, rc, pd_errmsg(s));
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), what));
}

START_TEST(faults) {
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    tu_append1(s, K("k"), "base;", 5);
    char big[5000];
    memset(big, 'z', sizeof big);
    pd_key ks[] = {K("k"), K("j")};
    pd_bytes vs[] = {PD_BYTES(big, sizeof big), V("j")};
    /* A short write, then ENOSPC: nothing of the batch is visible. */
    g_calls = 0;
    g_fail_at = 1;
    pd__sys_table.write = f_write_short;
    pd__sys_table.writev = fx_writev_by_write;
    int rc = pd_append(s, 2, ks, vs, 0);
    pd__sys_reset();
    s_expect_fail(rc, s, PD_ERR_IO, "'k'");
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), f.root));
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "No space left"));
    tu_expect_str(r, K("k"), "base;");
    tu_expect_str(r, K("j"), "");
    tu_expect_str(s, K("k"), "base;");
    tu_append1(s, K("k"), "more;", 5);
    tu_expect_str(r, K("k"), "base;more;");
    /* EDQUOT, and the undo failing too: the segment is abandoned (its
     * tail is torn, never acknowledged) and the next write goes to a new
     * one. */
    g_calls = 0;
    g_errno = EDQUOT;
    pd__sys_table.write = f_write_short;
    pd__sys_table.writev = fx_writev_by_write;
    pd__sys_table.ftruncate = f_ftruncate_fail;
    rc = pd_append(s, 2, ks, vs, 0);
    pd__sys_reset();
    g_errno = ENOSPC;
    ck_assert_int_eq(rc, PD_ERR_IO);
    tu_append1(s, K("k"), "after;", 6);
    tu_expect_str(r, K("k"), "base;more;after;");
    ck_assert_uint_eq(pd_log_torn(r), 1);
    ck_assert_int_eq(s_count(f.root, "w-"), 2);
    /* EINTR is retried. */
    g_calls = 0;
    pd__sys_table.write = f_write_eintr;
    pd__sys_table.writev = fx_writev_by_write;
    tu_append1(s, K("k"), "intr;", 5);
    pd__sys_reset();
    tu_expect_str(r, K("k"), "base;more;after;intr;");
    /* fsync failing: the append fails and is undone. */
    pd__sys_table.fsync = f_fsync_fail;
    rc = pd_append(s, 1, ks, vs + 1, PD_FSYNC);
    pd__sys_reset();
    s_expect_fail(rc, s, PD_ERR_IO, "fsync");
    tu_expect_str(r, K("k"), "base;more;after;intr;");
    g_reader = r;
    g_other = fx_open(&f);
    pd__sys_table.fsync = f_fsync_read_fail;
    rc = pd_append(s, 1, ks, vs + 1, PD_FSYNC);
    pd__sys_reset();
    s_expect_fail(rc, s, PD_ERR_IO, "fsync");
    ck_assert(g_saw);
    TU_OK(pd_close(&g_other), NULL);
    tu_expect_str(r, K("k"), "base;more;after;intr;");
    tu_append1(s, K("k"), "y", 1);
    tu_expect_str(r, K("k"), "base;more;after;intr;y");
    /* Reads failing: the error names the path; then all is well. */
    g_calls = 0;
    g_fail_at = 1;
    pd_store *t = fx_open(&f); /* reads everything on its first get */
    pd__sys_table.pread = f_pread_fail;
    pd_result *res = NULL;
    rc = pd_get(t, 1, ks, &res, 0);
    pd__sys_reset();
    s_expect_fail(rc, t, PD_ERR_IO, f.root);
    tu_expect_str(t, K("k"), "base;more;after;intr;y");
    tu_append1(s, K("k"), "x", 1);
    pd__sys_table.fstat = f_fstat_fail;
    rc = pd_get(t, 1, ks, &res, 0);
    pd__sys_reset();
    s_expect_fail(rc, t, PD_ERR_IO, "fstat");
    tu_expect_str(t, K("k"), "base;more;after;intr;yx");
    /* No descriptor for a new segment. */
    pd__sys_table.openat = f_openat_fail;
    rc = pd_append(t, 1, ks, vs + 1, 0);
    pd__sys_reset();
    s_expect_fail(rc, t, PD_ERR_IO, "'k'");
    ck_assert_ptr_nonnull(strstr(pd_errmsg(t), f.root));
    tu_append1(t, K("j"), "j", 1);
    tu_expect_str(r, K("j"), "j");
    TU_OK(pd_close(&t), NULL);
    TU_OK(pd_close(&s), NULL);
    TU_OK(pd_close(&r), NULL);
    fx_end_check(&f, "k", "base;more;after;intr;yx");
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"kill9_writers", kill9_writers},
        {"bit_flips", bit_flips},
        {"salvage", salvage},
        {"faults", faults},
    };
    return TU_RUN_CASES("test_log_damage", cases, 120, 0);
}
