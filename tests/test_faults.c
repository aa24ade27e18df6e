/*
 * Faults: full disks, failing and interrupted system calls, unwritable
 * directories, and hostile store directories.  In every case the call fails
 * with a clear message (key, path, reason) or completes correctly, nothing
 * crashes or hangs, a failed batch leaves every key as it was, and keys not
 * involved are untouched.
 *
 * System-call faults go through pd__sys_table (src/core/internal.h); each Check
 * test runs in its own process, and each test restores the table anyway.
 * Tests that need limits or mounts run in a forked child.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------- Child processes */

/* Exit status 77 from a child: the test is skipped (reason on stderr). */
#define CHILD_SKIP 77

/* Runs fn(arg) in a forked child; returns its exit status (128+sig when
 * killed), with its failure message in msg. */
static int s_run_child(tu_child_fn fn, void *arg, char *msg, size_t cap) {
    return tu_child_wait(tu_child_spawn(fn, arg, NULL, 0), msg, cap);
}

static void s_child_ok(tu_child_fn fn, void *arg, const char *what) {
    char msg[4096];
    int st = s_run_child(fn, arg, msg, sizeof msg);
    if (st == CHILD_SKIP) {
        fprintf(stderr, "%s: SKIP\n", what);
        return;
    }
    ck_assert_msg(st == 0, "%s: child exit status %d%s: %s", what, st,
                  st == 128 + SIGALRM ? " (hung: killed by alarm)" : "", msg);
}

/* ------------------------------------------------------------- Helpers */

#define K(s) PD_KEY_STR(s)
#define V(s) PD_BYTES((s), strlen(s))

typedef struct fx {
    char *dir;           /* private temp dir */
    char root[PATH_MAX]; /* dir/store */
    pd_store *s;
} fx;

static void s_fx_open(fx *f, unsigned flags) {
    f->dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->dir);
    snprintf(f->root, sizeof f->root, "%s/store", f->dir);
    f->s = NULL;
    int rc = pd_file_open(&f->s, f->root, PD_FILE_CREATE | flags);
    ck_assert_msg(rc == 0, "open: %s", pd_errmsg(NULL));
}

static void s_fx_close(fx *f) {
    pd__sys_reset();
    pd_close(&f->s);
    tu_rmtree(f->dir);
    free(f->dir);
    f->dir = NULL;
}

static bool s_has(pd_store *s, pd_key k, const char *want) {
    char *got;
    size_t len;
    int rc = tu_fetch1(s, k, &got, &len);
    bool ok = rc == 0 && len == strlen(want) && !memcmp(got, want, len);
    if (!ok)
        fprintf(stderr, "key holds '%s' (rc %d: %s), want '%s'\n", got, rc,
                rc ? pd_errmsg(s) : "", want);
    free(got);
    return ok;
}

/* The message contains every needle (NULL-terminated list). */
static bool s_msg_has(const char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    const char *n;
    bool ok = true;
    while ((n = va_arg(ap, const char *)))
        if (!strstr(msg, n)) ok = false;
    va_end(ap);
    return ok;
}

/* Names of entries of dir that start with prefix, newline-joined (malloc'd),
 * recursing into subdirectories; NULL when there are none. */
static char *s_find_prefix(const char *dir, const char *prefix) {
    char *cmd = NULL, *out = NULL;
    if (asprintf(&cmd, "find '%s' -name '%s*' 2>/dev/null", dir, prefix) < 0)
        return NULL;
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (!p) return NULL;
    size_t cap = 0, len = 0;
    char buf[512];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, p)) > 0) {
        out = realloc(out, cap = len + r + 1);
        memcpy(out + len, buf, r);
        len += r;
        out[len] = 0;
    }
    pclose(p);
    (void)cap;
    return out;
}

/* ------------------------------------------------- Fault injection */

static int g_calls, g_fail_at, g_err, g_injected;
static int g_short; /* short-write/read chunk */
static int g_every; /* EINTR every other call */

static ssize_t f_write_nth(int fd, const void *b, size_t n) {
    if (++g_calls == g_fail_at) {
        g_injected++;
        errno = g_err;
        return -1;
    }
    return write(fd, b, n);
}

static int f_openat_nth(int dfd, const char *p, int fl, mode_t m) {
    if (++g_calls == g_fail_at) {
        g_injected++;
        errno = g_err;
        return -1;
    }
    return openat(dfd, p, fl, m);
}

static ssize_t f_write_short(int fd, const void *b, size_t n) {
    g_calls++;
    return write(fd, b, n > (size_t)g_short ? (size_t)g_short : n);
}

static ssize_t f_write_eintr(int fd, const void *b, size_t n) {
    if (g_every++ % 2 == 0) {
        g_injected++;
        errno = EINTR;
        return -1;
    }
    return write(fd, b, n);
}

static ssize_t f_pread_short(int fd, void *b, size_t n, off_t off) {
    g_calls++;
    return pread(fd, b, n > (size_t)g_short ? (size_t)g_short : n, off);
}

static ssize_t f_pread_eintr(int fd, void *b, size_t n, off_t off) {
    if (g_every++ % 2 == 0) {
        g_injected++;
        errno = EINTR;
        return -1;
    }
    return pread(fd, b, n, off);
}

static ssize_t f_pread_fail(int fd, void *b, size_t n, off_t off) {
    (void)fd;
    (void)b;
    (void)n;
    (void)off;
    g_injected++;
    errno = EIO;
    return -1;
}

static int f_fsync_fail(int fd) {
    (void)fd;
    g_calls++;
    errno = EIO;
    return -1;
}

static int f_fsync_count(int fd) {
    g_calls++;
    return fsync(fd);
}

static int f_ftruncate_fail(int fd, off_t len) {
    (void)fd;
    (void)len;
    g_injected++;
    errno = EIO;
    return -1;
}

static int f_flock_fail(int fd, int op) {
    if ((op & LOCK_UN) == 0) {
        g_injected++;
        errno = ENOLCK;
        return -1;
    }
    return flock(fd, op);
}

static int f_flock_eintr(int fd, int op) {
    if ((op & LOCK_UN) == 0 && g_every++ % 2 == 0) {
        g_injected++;
        errno = EINTR;
        return -1;
    }
    return flock(fd, op);
}

static int f_renameat_fail(int a, const char *o, int b, const char *n) {
    (void)a;
    (void)o;
    (void)b;
    (void)n;
    g_injected++;
    errno = EIO;
    return -1;
}

static int f_unlinkat_nth(int d, const char *p, int fl) {
    if (++g_calls == g_fail_at) {
        g_injected++;
        errno = g_err;
        return -1;
    }
    return unlinkat(d, p, fl);
}

static int f_mkdirat_fail(int d, const char *p, mode_t m) {
    (void)d;
    (void)p;
    (void)m;
    g_injected++;
    errno = EACCES;
    return -1;
}

static void s_counters(int fail_at, int err) {
    g_calls = 0;
    g_fail_at = fail_at;
    g_err = err;
    g_injected = 0;
    g_every = 0;
}

/* ------------------------------------------------- Batch rollback loop */

/* Baseline content and one batch over old and new keys. */
static pd_bytes g_tu[] = {{"t", 1}, {"u", 1}};
static pd_bytes g_nm[] = {{"n", 1}, {"m", 1}};

static void s_baseline(pd_store *s) {
    pd_key ks[] = {K("a"), K("b"), PD_KEY_TUPLE(g_tu, 2), K("other")};
    pd_bytes vs[] = {V("A0"), V("B0"), V("T0"), V("untouched")};
    TU_OK(pd_drop(s, 0), s);
    TU_OK(pd_append(s, 4, ks, vs, 0), s);
}

static void s_check_baseline(pd_store *s, const char *what, int at) {
    struct {
        pd_key k;
        const char *v;
    } want[] = {{K("a"), "A0"},
                {K("b"), "B0"},
                {PD_KEY_TUPLE(g_tu, 2), "T0"},
                {K("c"), ""},
                {PD_KEY_TUPLE(g_nm, 2), ""},
                {K("other"), "untouched"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(s_has(s, want[i].k, want[i].v),
                      "%s at call %d: key %zu changed by a failed batch", what,
                      at, i);
    /* Keys holding data: exactly the baseline's. */
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(s, &kl, 0), s);
    size_t nonempty = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++)
        nonempty += pd_keylist_size(kl, i) > 0;
    ck_assert_msg(nonempty == 4, "%s at call %d: %zu keys hold data, want 4",
                  what, at, nonempty);
    pd_keylist_free(&kl);
}

static void s_check_applied(pd_store *s, const char *what, int at) {
    ck_assert_msg(s_has(s, K("a"), "A01xxxx"), "%s at %d: a", what, at);
    ck_assert_msg(s_has(s, K("b"), "B022"), "%s at %d: b", what, at);
    ck_assert_msg(s_has(s, K("c"), "333"), "%s at %d: c", what, at);
    ck_assert_msg(s_has(s, PD_KEY_TUPLE(g_tu, 2), "T05"), "%s at %d: t/u", what,
                  at);
    ck_assert_msg(s_has(s, PD_KEY_TUPLE(g_nm, 2), "6"), "%s at %d: n/m", what,
                  at);
    ck_assert_msg(s_has(s, K("other"), "untouched"), "%s at %d: other", what,
                  at);
}

typedef void (*installer)(void);
static void i_write(void) { pd__sys_table.write = f_write_nth; }
static void i_openat(void) { pd__sys_table.openat = f_openat_nth; }

/* Injects `err` at the 1st, 2nd, ... call of one system call during one
 * batch append, until a run completes without reaching the injection.  Each
 * run either fails (PD_ERR_IO or PD_ERR_NOMEM, errno err, message naming a
 * key of the batch and the store path, every key as before) or, if the store
 * absorbed the fault (e.g. EMFILE: evict cached descriptors and retry),
 * succeeds with the whole batch applied. */
static void s_fault_loop(installer inst, int err, const char *what,
                         unsigned flags) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"),
                   K("b"),
                   K("c"),
                   K("a"),
                   PD_KEY_TUPLE(g_tu, 2),
                   PD_KEY_TUPLE(g_nm, 2)};
    pd_bytes vs[] = {V("1"), V("22"), V("333"), V("xxxx"), V("5"), V("6")};
    const char *errs = strerror(err);
    int failures = 0, absorbed = 0, at;
    for (at = 1; at < 200; at++) {
        s_baseline(f.s);
        /* Let the store cache descriptors in some runs, not in others. */
        if (at % 2)
            TU_OK(pd_file_set_max_fds(f.s, 0), f.s);
        else
            TU_OK(pd_file_set_max_fds(f.s, 64), f.s);
        s_counters(at, err);
        inst();
        int rc = pd_append(f.s, 6, ks, vs, flags);
        pd__sys_reset();
        char msg[PD__MSG_MAX];
        snprintf(msg, sizeof msg, "%s", pd_errmsg(f.s));
        if (!g_injected) {
            ck_assert_msg(rc == 0, "%s: clean run failed: %s", what, msg);
            s_check_applied(f.s, what, at);
            break;
        }
        if (rc == 0) {
            absorbed++;
            s_check_applied(f.s, what, at);
            continue;
        }
        failures++;
        ck_assert_msg(rc == PD_ERR_IO || rc == PD_ERR_NOMEM,
                      "%s at call %d: rc %d: %s", what, at, rc, msg);
        ck_assert_msg(pd_errno(f.s) == err,
                      "%s at call %d: pd_errno %d, want %d: %s", what, at,
                      pd_errno(f.s), err, msg);
        bool names_key = strstr(msg, "'a'") || strstr(msg, "'b'") ||
                         strstr(msg, "'c'") || strstr(msg, "('t', 'u')") ||
                         strstr(msg, "('n', 'm')");
        ck_assert_msg(names_key && s_msg_has(msg, "file: append", f.root, errs,
                                             (char *)NULL),
                      "%s at call %d: message lacks key, path or reason: %s",
                      what, at, msg);
        ck_assert_msg(!strstr(msg, "rollback"),
                      "%s at call %d: rollback failed though only one call "
                      "was failed: %s",
                      what, at, msg);
        s_check_baseline(f.s, what, at);
    }
    ck_assert_msg(at < 200, "%s: never completed", what);
    ck_assert_msg(failures + absorbed > 0, "%s: the fault was never reached",
                  what);
    fprintf(stderr, "%s: %d injection points, %d failed cleanly, %d absorbed\n",
            what, at - 1, failures, absorbed);
    /* No temporary files left behind. */
    char *tmp = s_find_prefix(f.root, "%#");
    ck_assert_msg(tmp == NULL || !*tmp, "%s: temporary files left: %s", what,
                  tmp);
    free(tmp);
    s_fx_close(&f);
}

START_TEST(write_enospc_nth) {
    s_fault_loop(i_write, ENOSPC, "write ENOSPC", 0);
}
END_TEST

START_TEST(write_eio_nth) { s_fault_loop(i_write, EIO, "write EIO", 0); }
END_TEST

START_TEST(write_edquot_nth) {
    s_fault_loop(i_write, EDQUOT, "write EDQUOT", 0);
}
END_TEST

START_TEST(write_eio_nth_fsync) {
    s_fault_loop(i_write, EIO, "write EIO (PD_FSYNC)", PD_FSYNC);
}
END_TEST

START_TEST(openat_emfile_nth) {
    s_fault_loop(i_openat, EMFILE, "openat EMFILE", 0);
}
END_TEST

START_TEST(openat_eacces_nth) {
    s_fault_loop(i_openat, EACCES, "openat EACCES", 0);
}
END_TEST

/* iset (temporary file + rename): a failing write or rename leaves the old
 * value and no temporary file. */
static void i_write_iset(void) { pd__sys_table.write = f_write_nth; }

START_TEST(iset_faults) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b")};
    pd_bytes old[] = {V("old-a"), V("old-b")};
    pd_bytes nv[] = {V("new-a"), V("new-b")};
    TU_OK(pd_append(f.s, 2, ks, old, 0), f.s);
    int at;
    for (at = 1; at < 50; at++) {
        s_counters(at, ENOSPC);
        i_write_iset();
        int rc = pd_iset(f.s, 2, ks, nv, 0);
        pd__sys_reset();
        if (!g_injected) {
            TU_OK(rc, f.s);
            break;
        }
        ck_assert_int_eq(rc, PD_ERR_IO);
        ck_assert_int_eq(pd_errno(f.s), ENOSPC);
        ck_assert_msg(s_msg_has(pd_errmsg(f.s), "iset", f.root, (char *)NULL),
                      "message: %s", pd_errmsg(f.s));
        /* A failed iset is not remembered, and the values are the old ones
         * (an iset of several keys may have set the keys before the
         * failing one; those are remembered only if the call succeeds). */
        ck_assert(s_has(f.s, ks[1], "old-b") || s_has(f.s, ks[1], "new-b"));
        char *tmp = s_find_prefix(f.root, "%#");
        ck_assert_msg(tmp == NULL || !*tmp, "iset left temporary files: %s",
                      tmp);
        free(tmp);
        /* Restore for the next run: a fresh handle forgets isets. */
        pd_close(&f.s);
        TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
        TU_OK(pd_delete(f.s, 2, ks, 0), f.s);
        TU_OK(pd_append(f.s, 2, ks, old, 0), f.s);
    }
    ck_assert_int_gt(at, 1);
    tu_expect_as(f.s, ks[0], "new-a", "iset after faults");
    tu_expect_as(f.s, ks[1], "new-b", "iset after faults");

    /* rename fails: old values stay, message names the key. */
    pd_close(&f.s);
    TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
    s_counters(0, 0);
    pd__sys_table.renameat = f_renameat_fail;
    int rc = pd_iset(f.s, 1, ks, old, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f.s), EIO);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "'a'", f.root, (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    tu_expect_as(f.s, ks[0], "new-a", "rename failed");
    char *tmp = s_find_prefix(f.root, "%#");
    ck_assert_msg(tmp == NULL || !*tmp, "temporary files left: %s", tmp);
    free(tmp);
    /* Not remembered: the next iset sets. */
    TU_OK(pd_iset(f.s, 1, ks, old, 0), f.s);
    tu_expect_as(f.s, ks[0], "old-a", "iset after failed iset");
    s_fx_close(&f);
}
END_TEST

START_TEST(short_writes) {
    fx f;
    s_fx_open(&f, 0);
    size_t n = 200000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
    big[n] = 0;
    pd_key ks[] = {K("big"), K("small"), K("big")};
    pd_bytes vs[] = {{big, n}, V("tiny"), V("!")};
    for (int chunk = 1; chunk <= 4096; chunk *= 64) {
        TU_OK(pd_drop(f.s, 0), f.s);
        s_counters(0, 0);
        g_short = chunk == 1 ? 7 : chunk;
        pd__sys_table.write = f_write_short;
        int rc = pd_append(f.s, chunk == 1 ? 2 : 3, ks, vs, 0);
        TU_OK(pd_iset(f.s, 1, &ks[1], &vs[0], 0), f.s);
        pd__sys_reset();
        TU_OK(rc, f.s);
        ck_assert_int_gt(g_calls, 1);
        char *got;
        size_t len;
        TU_OK(tu_fetch1(f.s, ks[0], &got, &len), f.s);
        ck_assert_uint_eq(len, chunk == 1 ? n : n + 1);
        ck_assert(memcmp(got, big, n) == 0);
        free(got);
        TU_OK(tu_fetch1(f.s, ks[1], &got, &len), f.s);
        ck_assert_uint_eq(len, n);
        ck_assert(memcmp(got, big, n) == 0);
        free(got);
        /* A fresh handle forgets the iset for the next round. */
        pd_close(&f.s);
        TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
    }
    /* Short reads. */
    s_counters(0, 0);
    g_short = 1000;
    pd__sys_table.pread = f_pread_short;
    char *got;
    size_t len;
    int rc = tu_fetch1(f.s, ks[0], &got, &len);
    pd__sys_reset();
    TU_OK(rc, f.s);
    ck_assert_uint_eq(len, n + 1);
    ck_assert(memcmp(got, big, n) == 0);
    ck_assert_int_gt(g_calls, 100);
    free(got);
    free(big);
    s_fx_close(&f);
}
END_TEST

START_TEST(eintr_retried) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b"), K("a")};
    pd_bytes vs[] = {V("one"), V("two"), V("three")};
    s_counters(0, 0);
    pd__sys_table.write = f_write_eintr;
    int rc = pd_append(f.s, 3, ks, vs, 0);
    pd__sys_reset();
    TU_OK(rc, f.s);
    ck_assert_int_gt(g_injected, 0);
    tu_expect_as(f.s, ks[0], "onethree", "EINTR write");
    tu_expect_as(f.s, ks[1], "two", "EINTR write");
    s_counters(0, 0);
    pd__sys_table.pread = f_pread_eintr;
    char *got;
    rc = tu_fetch1(f.s, ks[0], &got, NULL);
    pd__sys_reset();
    TU_OK(rc, f.s);
    ck_assert_str_eq(got, "onethree");
    free(got);
    /* flock interrupted by a signal: retried. */
    s_counters(0, 0);
    pd__sys_table.flock = f_flock_eintr;
    pd_close(&f.s);
    rc = pd_file_open(&f.s, f.root, 0);
    ck_assert_msg(rc == 0, "open: %s", pd_errmsg(NULL));
    rc = pd_append(f.s, 1, ks, vs, 0);
    int lrc = pd_lock(f.s);
    if (lrc == 0) pd_unlock(f.s);
    pd__sys_reset();
    TU_OK(rc, f.s);
    TU_OK(lrc, f.s);
    ck_assert_int_gt(g_injected, 0);
    tu_expect_as(f.s, ks[0], "onethreeone", "EINTR flock");
    s_fx_close(&f);
}
END_TEST

START_TEST(fsync_fails) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b")};
    pd_bytes vs[] = {V("1"), V("2")};
    TU_OK(pd_append(f.s, 2, ks, vs, 0), f.s);
    /* Without PD_FSYNC nothing is fsynced. */
    s_counters(0, 0);
    pd__sys_table.fsync = f_fsync_count;
    TU_OK(pd_append(f.s, 2, ks, vs, 0), f.s);
    ck_assert_int_eq(g_calls, 0);
    /* With it, something is. */
    TU_OK(pd_append(f.s, 2, ks, vs, PD_FSYNC), f.s);
    ck_assert_int_ge(g_calls, 1);
    pd__sys_reset();
    tu_expect_as(f.s, ks[0], "111", "fsync ok");
    /* fsync fails: error names the key, path and fsync; the batch is rolled
     * back (a batch is applied whole or not at all). */
    s_counters(0, 0);
    pd__sys_table.fsync = f_fsync_fail;
    int rc = pd_append(f.s, 2, ks, vs, PD_FSYNC);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f.s), EIO);
    const char *m = pd_errmsg(f.s);
    ck_assert_msg(
        s_msg_has(m, "fsync", f.root, "Input/output error", (char *)NULL) &&
            (strstr(m, "'a'") || strstr(m, "'b'")),
        "message: %s", m);
    ck_assert_msg(s_has(f.s, ks[0], "111") && s_has(f.s, ks[1], "222"),
                  "fsync failure: the batch was not rolled back");
    /* iset with PD_FSYNC: old value kept. */
    pd_key ik = K("i");
    tu_append1(f.s, ik, "old", 3);
    s_counters(0, 0);
    pd__sys_table.fsync = f_fsync_fail;
    rc = pd_iset(f.s, 1, &ik, &vs[0], PD_FSYNC);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "'i'", "fsync", (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    tu_expect_as(f.s, ik, "old", "iset with failed fsync");
    char *tmp = s_find_prefix(f.root, "%#");
    ck_assert_msg(tmp == NULL || !*tmp, "temporary files left: %s", tmp);
    free(tmp);
    /* PD_FILE_FSYNC at open: every append fsyncs. */
    pd_close(&f.s);
    TU_OK(pd_file_open(&f.s, f.root, PD_FILE_FSYNC), NULL);
    s_counters(0, 0);
    pd__sys_table.fsync = f_fsync_count;
    TU_OK(pd_append(f.s, 2, ks, vs, 0), f.s);
    pd__sys_reset();
    ck_assert_int_ge(g_calls, 1);
    s_fx_close(&f);
}
END_TEST

START_TEST(rollback_fails) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b")};
    pd_bytes old[] = {V("A0"), V("B0")};
    pd_bytes vs[] = {V("tail"), V("never")};
    TU_OK(pd_append(f.s, 2, ks, old, 0), f.s);
    int at, seen = 0;
    for (at = 2; at < 10; at++) {
        s_counters(at, ENOSPC);
        pd__sys_table.write = f_write_nth;
        pd__sys_table.ftruncate = f_ftruncate_fail;
        int rc = pd_append(f.s, 2, ks, vs, 0);
        pd__sys_reset();
        if (g_calls < at) break; /* the write was not reached */
        ck_assert_int_eq(rc, PD_ERR_IO);
        const char *m = pd_errmsg(f.s);
        if (g_injected < 2) continue; /* nothing to roll back at this call */
        seen++;
        ck_assert_msg(strstr(m, "rollback") || strstr(m, "roll back"),
                      "message does not say the rollback failed: %s", m);
        ck_assert_msg(strstr(m, "'a'"),
                      "message does not name the key left "
                      "with a tail ('a'): %s",
                      m);
        ck_assert_msg(strstr(m, "No space left on device"),
                      "message lacks the original reason: %s", m);
        break;
    }
    ck_assert_msg(seen, "no rollback was attempted (ftruncate never called)");
    /* 'b' is untouched whatever happened to 'a'. */
    tu_expect_as(f.s, ks[1], "B0", "rollback failure");
    s_fx_close(&f);
}
END_TEST

START_TEST(flock_fails) {
    fx f;
    s_fx_open(&f, 0);
    pd_key k = K("a");
    tu_append1(f.s, k, "A0", 2);
    s_counters(0, 0);
    pd__sys_table.flock = f_flock_fail;
    pd_bytes v = V("x");
    int rc = pd_append(f.s, 1, &k, &v, 0);
    char msg[PD__MSG_MAX];
    snprintf(msg, sizeof msg, "%s", pd_errmsg(f.s));
    int lrc = pd_lock(f.s);
    int urc = pd_unlock(f.s);
    pd_result *r = NULL;
    int grc = pd_get(f.s, 1, &k, &r, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f.s), ENOLCK); /* from the failed get */
    ck_assert_msg(s_msg_has(msg, "lock", f.root, (char *)NULL), "message: %s",
                  msg);
    ck_assert_int_eq(lrc, PD_ERR_IO);
    ck_assert_int_eq(urc, PD_ERR_MISUSE); /* the failed lock is not held */
    ck_assert_int_eq(grc, PD_ERR_IO);
    ck_assert_ptr_null(r);
    /* Works again afterwards, nothing changed. */
    tu_expect_as(f.s, k, "A0", "after flock failure");
    TU_OK(pd_append(f.s, 1, &k, &v, 0), f.s);
    tu_expect_as(f.s, k, "A0x", "after flock failure");
    s_fx_close(&f);
}
END_TEST

START_TEST(other_calls_fail) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b"), K("c")};
    pd_bytes vs[] = {V("1"), V("2"), V("3")};
    TU_OK(pd_append(f.s, 3, ks, vs, 0), f.s);
    /* unlink fails on the 2nd key: keys before it deleted, rest untouched. */
    s_counters(2, EIO);
    pd__sys_table.unlinkat = f_unlinkat_nth;
    int rc = pd_delete(f.s, 3, ks, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    const char *m = pd_errmsg(f.s);
    ck_assert_msg(
        s_msg_has(m, "delete", f.root, "Input/output error", (char *)NULL),
        "message: %s", m);
    int named = strstr(m, "'a'")   ? 0
                : strstr(m, "'b'") ? 1
                : strstr(m, "'c'") ? 2
                                   : -1;
    ck_assert_msg(named >= 0, "message names no key: %s", m);
    for (int i = 0; i < 3; i++)
        if (i < named)
            ck_assert_msg(s_has(f.s, ks[i], ""),
                          "key %d before the failure "
                          "not deleted",
                          i);
        else
            ck_assert_msg(s_has(f.s, ks[i], (const char *)vs[i].data),
                          "key %d from the failure on changed", i);
    TU_OK(pd_append(f.s, 3, ks, vs, 0), f.s);
    /* mkdir fails for a tuple key: clear error, batch not applied. */
    char *before;
    TU_OK(tu_fetch1(f.s, ks[0], &before, NULL), f.s);
    pd_bytes tp[] = {V("dir"), V("x")};
    pd_key bk[] = {ks[0], PD_KEY_TUPLE(tp, 2)};
    s_counters(0, 0);
    pd__sys_table.mkdirat = f_mkdirat_fail;
    rc = pd_append(f.s, 2, bk, vs, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f.s), EACCES);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "('dir', 'x')", f.root,
                            "Permission denied", (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    tu_expect_as(f.s, ks[0], before, "mkdir failure");
    free(before);
    /* pread fails: get reports key and path. */
    s_counters(0, 0);
    pd__sys_table.pread = f_pread_fail;
    pd_result *r = NULL;
    rc = pd_get(f.s, 3, ks, &r, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(pd_errno(f.s), EIO);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "get", "'a'", f.root, (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    s_fx_close(&f);
}
END_TEST

/* ------------------------------------------------------ RLIMIT_FSIZE */

static int s_fsize_child(void *arg) {
    const char *root = arg;
    signal(SIGXFSZ, SIG_IGN);
    pd_store *s = NULL;
    TU_CHECK(pd_file_open(&s, root, PD_FILE_CREATE) == 0, "open: %s",
             pd_errmsg(NULL));
    pd_key ks[] = {K("k1"), K("k2"), K("k3")};
    pd_bytes old[] = {V("old1"), V("old2"), V("other")};
    TU_CHECK(pd_append(s, 3, ks, old, 0) == 0, "append: %s", pd_errmsg(s));
    struct rlimit rl = {65536, 65536};
    TU_CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0, "setrlimit: %s",
             strerror(errno));
    size_t n = 128 * 1024;
    char *big = calloc(1, n);
    pd_bytes vs[] = {V("new"), {big, n}};
    int rc = pd_append(s, 2, ks, vs, 0);
    const char *m = pd_errmsg(s);
    TU_CHECK(rc == PD_ERR_IO, "append over RLIMIT_FSIZE -> %d: %s", rc, m);
    TU_CHECK(pd_errno(s) == EFBIG, "pd_errno %d, want EFBIG: %s", pd_errno(s),
             m);
    TU_CHECK(strstr(m, "'k2'") && strstr(m, root) &&
                 strstr(m, "File too large"),
             "message lacks key, path or reason: %s", m);
    TU_CHECK(s_has(s, ks[0], "old1"), "k1 not rolled back");
    TU_CHECK(s_has(s, ks[1], "old2"), "k2 not rolled back");
    TU_CHECK(s_has(s, ks[2], "other"), "k3 changed");
    /* A batch that fits still works. */
    pd_bytes ok[] = {V("+1"), V("+2")};
    TU_CHECK(pd_append(s, 2, ks, ok, 0) == 0, "append: %s", pd_errmsg(s));
    TU_CHECK(s_has(s, ks[0], "old1+1") && s_has(s, ks[1], "old2+2"),
             "append after EFBIG");
    /* iset of a value over the limit: old value kept. */
    rc = pd_iset(s, 1, &ks[2], &vs[1], 0);
    TU_CHECK(rc == PD_ERR_IO && pd_errno(s) == EFBIG, "iset -> %d: %s", rc,
             pd_errmsg(s));
    TU_CHECK(s_has(s, ks[2], "other"), "k3 changed by a failed iset");
    free(big);
    pd_close(&s);
    return 0;
}

START_TEST(fsize_limit) {
    char *dir = tu_mkdtemp();
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/store", dir);
    s_child_ok(s_fsize_child, root, "RLIMIT_FSIZE");
    char *tmp = s_find_prefix(root, "%#");
    ck_assert_msg(tmp == NULL || !*tmp, "temporary files left: %s", tmp);
    free(tmp);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ----------------------------------------------------- Mounts (root) */

/* Enters a private mount namespace so mounts vanish with the child. */
static bool s_private_mounts(void) {
    if (unshare(CLONE_NEWNS) != 0) return false;
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return false;
    return true;
}

typedef struct roargs {
    char src[PATH_MAX], dst[PATH_MAX], empty[PATH_MAX], emptyro[PATH_MAX];
} roargs;

static int f_openat_eacces(int dfd, const char *p, int fl, mode_t m) {
    if ((fl & (O_WRONLY | O_RDWR | O_CREAT)) && strcmp(p, ".lock") != 0) {
        errno = EACCES;
        return -1;
    }
    return openat(dfd, p, fl, m);
}
static int f_mkdirat_eacces(int d, const char *p, mode_t m) {
    (void)d;
    (void)p;
    (void)m;
    errno = EACCES;
    return -1;
}
static int f_unlinkat_eacces(int d, const char *p, int fl) {
    (void)d;
    (void)p;
    (void)fl;
    errno = EACCES;
    return -1;
}
static int f_renameat_eacces(int a, const char *o, int b, const char *n) {
    (void)a;
    (void)o;
    (void)b;
    (void)n;
    errno = EACCES;
    return -1;
}

/* Every writing call on s fails with want_errno, naming key and root; the
 * content stays readable and unchanged. */
static void s_check_refused(pd_store *s, const char *root, int want_errno,
                            const char *how) {
    pd_key ks[] = {K("a"), K("new")};
    pd_bytes vs[] = {V("x"), V("y")};
    TU_CHECK(s_has(s, ks[0], "A"), "%s: read", how);
    int rc = pd_append(s, 2, ks, vs, 0);
    const char *m = pd_errmsg(s);
    TU_CHECK(rc == PD_ERR_IO && pd_errno(s) == want_errno,
             "%s: append -> %d errno %d: %s", how, rc, pd_errno(s), m);
    TU_CHECK((strstr(m, "'a'") || strstr(m, "'new'")) && strstr(m, root) &&
                 strstr(m, strerror(want_errno)),
             "%s: append message lacks key, path or reason: %s", how, m);
    rc = pd_iset(s, 1, ks, vs, 0);
    TU_CHECK(rc == PD_ERR_IO, "%s: iset -> %d: %s", how, rc, pd_errmsg(s));
    TU_CHECK(strstr(pd_errmsg(s), "'a'"), "%s: iset message: %s", how,
             pd_errmsg(s));
    rc = pd_delete(s, 1, ks, 0);
    TU_CHECK(rc == PD_ERR_IO, "%s: delete -> %d: %s", how, rc, pd_errmsg(s));
    TU_CHECK(strstr(pd_errmsg(s), "'a'"), "%s: delete message: %s", how,
             pd_errmsg(s));
    rc = pd_drop(s, 0);
    TU_CHECK(rc == PD_ERR_IO, "%s: drop -> %d: %s", how, rc, pd_errmsg(s));
    TU_CHECK(strstr(pd_errmsg(s), root), "%s: drop message: %s", how,
             pd_errmsg(s));
    pd__sys_reset();
    TU_CHECK(s_has(s, ks[0], "A"), "%s: content changed", how);
    TU_CHECK(s_has(s, ks[1], ""), "%s: a key was created", how);
    pd_keylist *kl = NULL;
    TU_CHECK(pd_keys(s, &kl, 0) == 0, "%s: keys: %s", how, pd_errmsg(s));
    pd_keylist_free(&kl);
}

static int s_ro_child(void *arg) {
    roargs *a = arg;
    /* 1. Injected EACCES (what permission bits would do to a non-root
     * user): always possible. */
    pd_store *s = NULL;
    int rc = pd_file_open(&s, a->src, 0);
    TU_CHECK(rc == 0, "open: %s", pd_errmsg(NULL));
    pd__sys_table.openat = f_openat_eacces;
    pd__sys_table.mkdirat = f_mkdirat_eacces;
    pd__sys_table.unlinkat = f_unlinkat_eacces;
    pd__sys_table.renameat = f_renameat_eacces;
    s_check_refused(s, a->src, EACCES, "injected EACCES");
    pd_close(&s);

    /* 2. A read-only bind mount of the same store. */
    bool ro =
        s_private_mounts() && mount(a->src, a->dst, NULL, MS_BIND, NULL) == 0 &&
        mount(NULL, a->dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) ==
            0 &&
        mount(a->empty, a->emptyro, NULL, MS_BIND, NULL) == 0 &&
        mount(NULL, a->emptyro, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) ==
            0;
    if (!ro) {
        fprintf(stderr, "not_writable: SKIP read-only mount part: %s\n",
                strerror(errno));
        return 0;
    }
    /* A read-only store with its lock file opens (the lock file read-only)
     * and reads; every write is refused with EROFS. */
    rc = pd_file_open(&s, a->dst, 0);
    TU_CHECK(rc == 0, "open of a read-only store -> %d: %s", rc,
             pd_errmsg(NULL));
    if (rc == 0) {
        s_check_refused(s, a->dst, EROFS, "read-only mount");
        pd_close(&s);
    }
    /* No .lock and no way to create one. */
    rc = pd_file_open(&s, a->emptyro, 0);
    TU_CHECK(rc == PD_ERR_IO, "open of an empty read-only dir -> %d", rc);
    TU_CHECK(strstr(pd_errmsg(NULL), a->emptyro) &&
                 strstr(pd_errmsg(NULL), "Read-only file system"),
             "message: %s", pd_errmsg(NULL));
    /* Nor can a temporary store be made there. */
    rc = pd_file_open_temp(&s, a->emptyro, 0);
    TU_CHECK(rc == PD_ERR_IO, "open_temp in a read-only dir -> %d", rc);
    TU_CHECK(strstr(pd_errmsg(NULL), a->emptyro), "message: %s",
             pd_errmsg(NULL));
    return 0;
}

START_TEST(not_writable) {
    char *dir = tu_mkdtemp();
    roargs a;
    snprintf(a.src, sizeof a.src, "%s/src", dir);
    snprintf(a.dst, sizeof a.dst, "%s/ro", dir);
    snprintf(a.empty, sizeof a.empty, "%s/empty", dir);
    snprintf(a.emptyro, sizeof a.emptyro, "%s/emptyro", dir);
    ck_assert_int_eq(mkdir(a.dst, 0700), 0);
    ck_assert_int_eq(mkdir(a.empty, 0700), 0);
    ck_assert_int_eq(mkdir(a.emptyro, 0700), 0);
    pd_store *s = NULL;
    TU_OK(pd_file_open(&s, a.src, PD_FILE_CREATE), NULL);
    tu_append1(s, K("a"), "A", 1);
    pd_close(&s);
    s_child_ok(s_ro_child, &a, "not_writable");
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static int s_tmpfs_child(void *arg) {
    const char *root = arg;
    if (!s_private_mounts() ||
        mount("tmpfs", root, "tmpfs", 0, "size=1m") != 0) {
        fprintf(stderr, "small_tmpfs: SKIP: cannot mount a tmpfs: %s\n",
                strerror(errno));
        return CHILD_SKIP;
    }
    pd_store *s = NULL;
    TU_CHECK(pd_file_open(&s, root, 0) == 0, "open: %s", pd_errmsg(NULL));
    size_t n = 64 * 1024;
    char *v = malloc(n);
    int i, rc = 0;
    char name[32];
    for (i = 0; i < 100; i++) {
        memset(v, 'a' + i % 26, n);
        snprintf(name, sizeof name, "k%d", i);
        pd_key k = K(name);
        pd_bytes b = {v, n};
        rc = pd_append(s, 1, &k, &b, 0);
        if (rc) break;
    }
    TU_CHECK(rc != 0, "1 MiB tmpfs never filled");
    const char *m = pd_errmsg(s);
    TU_CHECK(rc == PD_ERR_IO && pd_errno(s) == ENOSPC, "full -> %d: %s", rc, m);
    TU_CHECK(strstr(m, name) && strstr(m, root) &&
                 strstr(m, "No space left on device"),
             "message lacks key, path or reason: %s", m);
    fprintf(stderr, "small_tmpfs: full after %d keys: %s\n", i, m);
    /* Earlier keys intact; the failed key empty. */
    for (int j = 0; j < i; j++) {
        char nm[32];
        snprintf(nm, sizeof nm, "k%d", j);
        char *got;
        size_t len;
        TU_CHECK(tu_fetch1(s, K(nm), &got, &len) == 0, "get %s: %s", nm,
                 pd_errmsg(s));
        TU_CHECK(len == n && got[0] == 'a' + j % 26 && got[n - 1] == got[0],
                 "key %s damaged (%zu bytes)", nm, len);
        free(got);
    }
    TU_CHECK(s_has(s, K(name), ""), "failed key %s holds data", name);
    /* A batch touching an old key and overflowing: rolled back. */
    pd_key ks[] = {K("k0"), K("big")};
    size_t bn = 2 * 1024 * 1024;
    char *bv = calloc(1, bn);
    pd_bytes bb[] = {V("+x"), {bv, bn}};
    rc = pd_append(s, 2, ks, bb, 0);
    TU_CHECK(rc == PD_ERR_IO && pd_errno(s) == ENOSPC, "big batch -> %d: %s",
             rc, pd_errmsg(s));
    char *got;
    size_t len;
    TU_CHECK(tu_fetch1(s, ks[0], &got, &len) == 0 && len == n,
             "k0 not rolled back "
             "(%zu bytes)",
             len);
    free(got);
    /* Free space and carry on. */
    TU_CHECK(pd_delete(s, 1, ks, 0) == 0, "delete: %s", pd_errmsg(s));
    TU_CHECK(pd_append(s, 1, &ks[1], &bb[0], 0) == 0, "append after delete: %s",
             pd_errmsg(s));
    TU_CHECK(pd_drop(s, 0) == 0, "drop: %s", pd_errmsg(s));
    free(bv);
    free(v);
    pd_close(&s);
    umount(root);
    return 0;
}

START_TEST(small_tmpfs) {
    char *dir = tu_mkdtemp();
    s_child_ok(s_tmpfs_child, dir, "small_tmpfs");
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------- Hostile store directory */

static void s_write(const char *path, const char *data) {
    ck_assert_int_eq(tu_write_file(path, data, strlen(data)), 0);
}

/* An error must name the key; a success must not expose outside data. */
static void s_rc_clear(pd_store *s, int rc, const char *keyrepr,
                       const char *what) {
    if (rc == 0) return;
    ck_assert_msg(strstr(pd_errmsg(s), keyrepr) != NULL,
                  "%s -> %d: message does not name %s: %s", what, rc, keyrepr,
                  pd_errmsg(s));
}

START_TEST(key_is_directory) {
    fx f;
    s_fx_open(&f, 0);
    tu_append1(f.s, K("o"), "other", 5);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/k", f.root);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/k/inside", f.root);
    s_write(p, "junk");
    pd_key k = K("k");
    pd_bytes v = V("x");
    int rc = pd_append(f.s, 1, &k, &v, 0);
    ck_assert_msg(rc == PD_ERR_KEY || rc == PD_ERR_IO, "append -> %d", rc);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "'k'", f.root, (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    char *got;
    rc = tu_fetch1(f.s, k, &got, NULL);
    s_rc_clear(f.s, rc, "'k'", "get");
    ck_assert_str_eq(got, "");
    free(got);
    pd_keylist *kl = NULL;
    rc = pd_keys(f.s, &kl, 0);
    ck_assert_msg(rc == 0, "keys: %s", pd_errmsg(f.s));
    pd_keylist_free(&kl);
    rc = pd_iset(f.s, 1, &k, &v, 0);
    s_rc_clear(f.s, rc, "'k'", "iset");
    rc = pd_delete(f.s, 1, &k, 0);
    s_rc_clear(f.s, rc, "'k'", "delete");
    tu_expect_as(f.s, K("o"), "other", "bystander");
    TU_OK(pd_drop(f.s, 0), f.s);
    TU_OK(pd_append(f.s, 1, &k, &v, 0), f.s);
    tu_expect_as(f.s, k, "x", "after drop");
    s_fx_close(&f);
}
END_TEST

START_TEST(key_is_symlink) {
    fx f;
    s_fx_open(&f, 0);
    tu_append1(f.s, K("o"), "other", 5);
    char out[PATH_MAX + 16], outdir[PATH_MAX + 16], p[PATH_MAX + 32];
    snprintf(out, sizeof out, "%s/outside.txt", f.dir);
    s_write(out, "SECRET");
    snprintf(outdir, sizeof outdir, "%s/outdir", f.dir);
    ck_assert_int_eq(mkdir(outdir, 0755), 0);
    snprintf(p, sizeof p, "%s/x", outdir);
    s_write(p, "SECRET2");
    snprintf(p, sizeof p, "%s/k", f.root);
    ck_assert_int_eq(symlink(out, p), 0);
    snprintf(p, sizeof p, "%s/d", f.root);
    ck_assert_int_eq(symlink(outdir, p), 0);
    snprintf(p, sizeof p, "%s/rel", f.root);
    ck_assert_int_eq(symlink("../outside.txt", p), 0);

    pd_bytes dp[] = {V("d"), V("x")};
    pd_key keys[] = {K("k"), PD_KEY_TUPLE(dp, 2), K("rel")};
    const char *reprs[] = {"'k'", "('d', 'x')", "'rel'"};
    pd_bytes v = V("x");
    char nopath[3 * PD__MSG_MAX] = "";
    for (int i = 0; i < 3; i++) {
        int rc = pd_append(f.s, 1, &keys[i], &v, 0);
        ck_assert_msg(rc != 0, "append %s through a symlink succeeded",
                      reprs[i]);
        ck_assert_msg(strstr(pd_errmsg(f.s), reprs[i]), "message: %s",
                      pd_errmsg(f.s));
        /* The path is checked last so the checks below still run. */
        if (!strstr(pd_errmsg(f.s), f.root)) {
            strcat(nopath, pd_errmsg(f.s));
            strcat(nopath, "\n");
        }
        char *got;
        rc = tu_fetch1(f.s, keys[i], &got, NULL);
        s_rc_clear(f.s, rc, reprs[i], "get");
        ck_assert_msg(!strstr(got, "SECRET"),
                      "get %s read through a symlink: '%s'", reprs[i], got);
        free(got);
    }
    tu_file_is(out, "SECRET");
    snprintf(p, sizeof p, "%s/x", outdir);
    tu_file_is(p, "SECRET2");
    /* The listing does not descend into the symlinked directory. */
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(f.s, &kl, 0), f.s);
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        pd_keylist_key(kl, i, &k);
        ck_assert_msg(k.nparts == 0, "keys lists a tuple through the symlink");
        ck_assert_msg(pd_keylist_size(kl, i) != 6 &&
                          pd_keylist_size(kl, i) != 7,
                      "keys reports the size of an outside file");
    }
    pd_keylist_free(&kl);
    /* iset and delete act on the link, never the target. */
    int rc = pd_iset(f.s, 1, &keys[0], &v, 0);
    s_rc_clear(f.s, rc, "'k'", "iset");
    rc = pd_delete(f.s, 3, keys, 0);
    s_rc_clear(f.s, rc, "'k'", "delete");
    tu_file_is(out, "SECRET");
    tu_file_is(p, "SECRET2");
    /* drop removes the store's content, not what links point at. */
    snprintf(p, sizeof p, "%s/d2", f.root);
    ck_assert_int_eq(symlink(outdir, p), 0);
    TU_OK(pd_drop(f.s, 0), f.s);
    tu_file_is(out, "SECRET");
    snprintf(p, sizeof p, "%s/x", outdir);
    tu_file_is(p, "SECRET2");
    tu_expect_as(f.s, K("o"), "", "after drop");
    TU_OK(pd_append(f.s, 1, &keys[0], &v, 0), f.s);
    tu_expect_as(f.s, keys[0], "x", "after drop");
    tu_file_is(out, "SECRET");
    ck_assert_msg(!*nopath, "messages without the store path:\n%s", nopath);
    s_fx_close(&f);
}
END_TEST

START_TEST(lock_is_symlink) {
    char *dir = tu_mkdtemp();
    char root[PATH_MAX], out[PATH_MAX + 16], p[PATH_MAX + 16];
    snprintf(root, sizeof root, "%s/store", dir);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    snprintf(out, sizeof out, "%s/outside", dir);
    s_write(out, "KEEP");
    snprintf(p, sizeof p, "%s/.lock", root);
    ck_assert_int_eq(symlink(out, p), 0);
    pd_store *s = NULL;
    int rc = pd_file_open(&s, root, 0);
    if (rc == 0) {
        tu_append1(s, K("a"), "1", 1);
        pd_close(&s);
    } else {
        ck_assert_msg(strstr(pd_errmsg(NULL), ".lock"), "message: %s",
                      pd_errmsg(NULL));
    }
    tu_file_is(out, "KEEP");
    /* .lock is a directory: open fails clearly. */
    unlink(p);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    rc = pd_file_open(&s, root, 0);
    if (rc == 0) {
        fprintf(stderr, "lock_is_symlink: a directory .lock was accepted\n");
        pd_close(&s);
    } else {
        ck_assert_int_eq(rc, PD_ERR_IO);
        ck_assert_msg(strstr(pd_errmsg(NULL), root), "message: %s",
                      pd_errmsg(NULL));
    }
    /* The root is a file, or missing without PD_FILE_CREATE. */
    snprintf(p, sizeof p, "%s/afile", dir);
    s_write(p, "x");
    rc = pd_file_open(&s, p, 0);
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(NULL), p), "message: %s", pd_errmsg(NULL));
    rc = pd_file_open(&s, p, PD_FILE_CREATE);
    ck_assert_int_eq(rc, PD_ERR_IO);
    snprintf(p, sizeof p, "%s/missing", dir);
    rc = pd_file_open(&s, p, 0);
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(NULL), p), "message: %s", pd_errmsg(NULL));
    ck_assert_ptr_null(s);
    ck_assert_int_eq(pd_file_open(&s, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_file_open(NULL, dir, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_file_open(&s, dir, 0x80000000u), PD_ERR_MISUSE);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(key_is_hardlink) {
    fx f;
    s_fx_open(&f, 0);
    char out[PATH_MAX + 16], p[PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/outside.txt", f.dir);
    s_write(out, "SECRET");
    snprintf(p, sizeof p, "%s/k", f.root);
    ck_assert_int_eq(link(out, p), 0);
    pd_key k = K("k");
    pd_bytes v = V("x");
    int rc = pd_append(f.s, 1, &k, &v, 0);
    ck_assert_msg(rc != 0, "append to a file with two links succeeded");
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "'k'", f.root, (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    tu_file_is(out, "SECRET");
    s_fx_close(&f);
}
END_TEST

static int s_fifo_child(void *arg) {
    fx *f = arg;
    alarm(10);
    pd_store *s = NULL;
    TU_CHECK(pd_file_open(&s, f->root, 0) == 0, "open: %s", pd_errmsg(NULL));
    pd_key ks[] = {K("fifo"), K("o")};
    pd_bytes v = V("x");
    int rc = pd_append(s, 1, ks, &v, 0);
    TU_CHECK(rc != 0, "append to a FIFO succeeded");
    TU_CHECK(strstr(pd_errmsg(s), "'fifo'"), "message: %s", pd_errmsg(s));
    pd_result *r = NULL;
    rc = pd_get(s, 2, ks, &r, 0);
    TU_CHECK(rc == 0 || strstr(pd_errmsg(s), "'fifo'"), "get message: %s",
             pd_errmsg(s));
    pd_result_free(&r);
    rc = pd_iset(s, 1, ks, &v, 0);
    TU_CHECK(rc == 0 || strstr(pd_errmsg(s), "'fifo'"), "iset message: %s",
             pd_errmsg(s));
    pd_keylist *kl = NULL;
    TU_CHECK(pd_keys(s, &kl, 0) == 0, "keys: %s", pd_errmsg(s));
    pd_keylist_free(&kl);
    TU_CHECK(s_has(s, ks[1], "other"), "bystander");
    TU_CHECK(pd_drop(s, 0) == 0, "drop: %s", pd_errmsg(s));
    pd_close(&s);
    return 0;
}

START_TEST(key_is_fifo) {
    fx f;
    s_fx_open(&f, 0);
    tu_append1(f.s, K("o"), "other", 5);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/fifo", f.root);
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    pd_close(&f.s);
    s_child_ok(s_fifo_child, &f, "FIFO in the store");
    s_fx_close(&f);
}
END_TEST

START_TEST(key_mode_000) {
    if (geteuid() == 0) {
        fprintf(stderr, "key_mode_000: SKIP: running as root, mode 000 does "
                        "not stop reads or writes\n");
        return;
    }
    fx f;
    s_fx_open(&f, 0);
    tu_append1(f.s, K("k"), "data", 4);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/k", f.root);
    ck_assert_int_eq(chmod(p, 0), 0);
    pd_close(&f.s); /* no cached descriptor */
    TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
    pd_key k = K("k");
    pd_bytes v = V("x");
    int rc = pd_append(f.s, 1, &k, &v, 0);
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f.s), EACCES);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "'k'", f.root, "Permission denied",
                            (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    pd_result *r = NULL;
    rc = pd_get(f.s, 1, &k, &r, 0);
    ck_assert_int_eq(rc, PD_ERR_IO);
    s_fx_close(&f);
}
END_TEST

/* ------------------------------------------------------ Out of memory */

/* The address space in use, from /proc/self/statm (bytes), or 0. */
static size_t s_vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* In a child: a 48 MiB value in a Dict, a File and zlib(File); then the
 * address space is capped 24 MiB above what is in use, so reading that
 * value back cannot be allocated.  Each get must fail with PD_ERR_NOMEM
 * (no abort, no partial result), and the store must stay usable. */
static int s_oom_child(void *arg) {
    const char *root = arg;
    size_t n = (size_t)48 << 20;
    char *v = malloc(n);
    TU_CHECK(v, "malloc %zu", n);
    memset(v, 'x', n);
    char path[4096];
    pd_store *st[3] = {NULL, NULL, NULL}, *inner = NULL;
    TU_CHECK(pd_dict_open(&st[0]) == 0, "dict: %s", pd_errmsg(NULL));
    snprintf(path, sizeof path, "%s/file", root);
    TU_CHECK(pd_file_open(&st[1], path, PD_FILE_CREATE) == 0, "file: %s",
             pd_errmsg(NULL));
    snprintf(path, sizeof path, "%s/zlib", root);
    TU_CHECK(pd_file_open(&inner, path, PD_FILE_CREATE) == 0, "file: %s",
             pd_errmsg(NULL));
    TU_CHECK(pd_compress_open(&st[2], &inner, "zlib", 1, 0) == 0, "zlib: %s",
             pd_errmsg(NULL));
    pd_key keys[2] = {PD_KEY_STR("big"), PD_KEY_STR("small")};
    pd_bytes vals[2] = {PD_BYTES(v, n), PD_BYTES("tiny", 4)};
    for (int i = 0; i < 3; i++)
        TU_CHECK(pd_append(st[i], 2, keys, vals, 0) == 0, "%s: append: %s",
                 pd_store_kind(st[i]), pd_errmsg(st[i]));
    free(v);
    size_t used = s_vm_size();
    TU_CHECK(used > 0, "cannot read /proc/self/statm");
    struct rlimit rl = {used + ((size_t)24 << 20), used + ((size_t)24 << 20)};
    TU_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    for (int i = 0; i < 3; i++) {
        const char *kind = pd_store_kind(st[i]);
        pd_result *r = NULL;
        int rc = pd_get(st[i], 1, &keys[0], &r, 0);
        TU_CHECK(rc == PD_ERR_NOMEM, "%s: get of 48 MiB under a cap -> %d: %s",
                 kind, rc, pd_errmsg(st[i]));
        TU_CHECK(r == NULL, "%s: a result despite the error", kind);
        TU_CHECK(strstr(pd_errmsg(st[i]), kind) &&
                     strstr(pd_errmsg(st[i]), "get"),
                 "%s: message: %s", kind, pd_errmsg(st[i]));
        rc = pd_get(st[i], 1, &keys[1], &r, 0);
        TU_CHECK(rc == 0 && pd_result_value(r, 0).size == 4,
                 "%s: the store is unusable after running out of memory: %s",
                 kind, pd_errmsg(st[i]));
        pd_result_free(&r);
    }
    for (int i = 0; i < 3; i++) pd_close(&st[i]);
    return 0;
}

START_TEST(get_out_of_memory) {
    char *root = tu_mkdtemp();
    tu_oom_child(s_oom_child, root);
    tu_rmtree(root);
    free(root);
}
END_TEST

START_TEST(junk_in_store) {
    fx f;
    s_fx_open(&f, 0);
    tu_append1(f.s, K("good"), "g", 1);
    const char *junk[] = {"%zz", "%", "%#tmp-left-over", "%~", "%4", "%%"};
    char p[PATH_MAX + 32];
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", f.root, junk[i]);
        s_write(p, "junk");
    }
    snprintf(p, sizeof p, "%s/%%~dir", f.root);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    pd_keylist *kl = NULL;
    int rc = pd_keys(f.s, &kl, 0);
    ck_assert_msg(rc == 0 || rc == PD_ERR_CORRUPT, "keys -> %d: %s", rc,
                  pd_errmsg(f.s));
    bool good = false;
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        pd_keylist_key(kl, i, &k);
        if (k.nparts == 0 && k.size == 4 && !memcmp(k.data, "good", 4))
            good = true;
        char *got;
        rc = tu_fetch1(f.s, k, &got, NULL);
        ck_assert_msg(rc == 0, "a listed key cannot be read: %s",
                      pd_errmsg(f.s));
        free(got);
    }
    ck_assert(rc != 0 || good || pd_keylist_count(kl) == 0);
    pd_keylist_free(&kl);
    tu_expect_as(f.s, K("good"), "g", "junk");
    TU_OK(pd_drop(f.s, 0), f.s);
    s_fx_close(&f);
}
END_TEST

/* ------------------------------------- The rest of the syscall table */

static int f_fstat_nth(int fd, struct stat *st) {
    if (++g_calls == g_fail_at) {
        g_injected++;
        errno = g_err;
        return -1;
    }
    return fstat(fd, st);
}

static int f_fstatat_fail(int d, const char *p, struct stat *st, int fl) {
    (void)d;
    (void)p;
    (void)st;
    (void)fl;
    g_injected++;
    errno = EIO;
    return -1;
}

static int f_open_fail(const char *p, int fl, mode_t m) {
    (void)p;
    (void)fl;
    (void)m;
    g_injected++;
    errno = EACCES;
    return -1;
}

static int f_mkdir_fail(const char *p, mode_t m) {
    (void)p;
    (void)m;
    g_injected++;
    errno = EACCES;
    return -1;
}

static int f_rmdir_fail(const char *p) {
    (void)p;
    g_injected++;
    errno = EBUSY;
    return -1;
}

static char *f_realpath_fail(const char *p, char *r) {
    (void)p;
    (void)r;
    g_injected++;
    errno = EIO;
    return NULL;
}

static char *f_mkdtemp_fail(char *tmpl) {
    (void)tmpl;
    g_injected++;
    errno = ENOSPC;
    return NULL;
}

static DIR *f_fdopendir_fail(int fd) {
    (void)fd; /* the caller still owns fd and closes it */
    g_injected++;
    errno = ENOMEM;
    return NULL;
}

static int g_opendirs, g_closedirs;

static DIR *f_fdopendir_count(int fd) {
    DIR *d = fdopendir(fd);
    if (d) g_opendirs++;
    return d;
}

static int f_closedir_count(DIR *d) {
    g_closedirs++;
    return closedir(d);
}

static struct dirent *f_readdir_nth(DIR *d) {
    if (++g_calls == g_fail_at) {
        g_injected++;
        errno = g_err;
        return NULL;
    }
    return readdir(d);
}

/* A file system that gives no entry types (d_type DT_UNKNOWN). */
static struct dirent *f_readdir_untyped(DIR *d) {
    struct dirent *de = readdir(d);
    if (de) de->d_type = DT_UNKNOWN;
    return de;
}

static int f_getrlimit_fail(int r, struct rlimit *rl) {
    (void)r;
    (void)rl;
    g_injected++;
    errno = EPERM;
    return -1;
}

static int f_clock_fail(clockid_t c, struct timespec *ts) {
    (void)c;
    (void)ts;
    g_injected++;
    errno = EINVAL;
    return -1;
}

/* fstat fails at its 1st, 2nd, ... call while one batch appends to keys
 * that exist (the open checks the file) and new ones, with and without
 * cached descriptors: each run fails whole, naming the store path, the
 * reason and a key (or the lock, when it was the lock's check of the root),
 * or completes; the store works afterwards. */
START_TEST(fstat_fails_nth) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b"), K("c"), PD_KEY_TUPLE(g_tu, 2)};
    pd_bytes vs[] = {V("1"), V("22"), V("333"), V("5")};
    int at, failures = 0;
    for (at = 1; at < 100; at++) {
        s_baseline(f.s);
        TU_OK(pd_file_set_max_fds(f.s, at % 2 ? 0 : 64), f.s);
        /* in half the runs the keys were read (cached) first */
        if (at % 4 == 0) {
            TU_OK(pd_lock(f.s), f.s);
            tu_expect_as(f.s, K("a"), "A0", "fstat: before");
        }
        s_counters(at, EIO);
        pd__sys_table.fstat = f_fstat_nth;
        int rc = pd_append(f.s, 4, ks, vs, 0);
        pd__sys_reset();
        if (at % 4 == 0) TU_OK(pd_unlock(f.s), f.s);
        char msg[PD__MSG_MAX];
        snprintf(msg, sizeof msg, "%s", pd_errmsg(f.s));
        if (!g_injected) {
            ck_assert_msg(rc == 0, "fstat: clean run failed: %s", msg);
            break;
        }
        if (rc == 0) { /* absorbed (a check that may fail): all applied */
            ck_assert_msg(s_has(f.s, K("a"), "A01") &&
                              s_has(f.s, K("c"), "333"),
                          "fstat at %d: absorbed but not applied", at);
            continue;
        }
        failures++;
        ck_assert_msg(rc == PD_ERR_IO, "fstat at %d: rc %d: %s", at, rc, msg);
        ck_assert_int_eq(pd_errno(f.s), EIO);
        bool named = strstr(msg, "'a'") || strstr(msg, "'b'") ||
                     strstr(msg, "'c'") || strstr(msg, "('t', 'u')") ||
                     strstr(msg, "lock");
        ck_assert_msg(named && s_msg_has(msg, "fstat", f.root,
                                         "Input/output error", (char *)NULL),
                      "fstat at %d: message lacks key, path or reason: %s", at,
                      msg);
        s_check_baseline(f.s, "fstat", at);
    }
    ck_assert_msg(at < 100 && failures > 0, "fstat: %d runs, %d failures", at,
                  failures);
    /* A get that opens the file checks it with fstat. */
    pd_close(&f.s);
    TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
    s_counters(2, EIO); /* 1: the lock's check of the root */
    pd__sys_table.fstat = f_fstat_nth;
    pd_result *r = NULL;
    int rc = pd_get(f.s, 1, &ks[1], &r, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(r);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "get", "'b'", "fstat", f.root,
                            "Input/output error", (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    tu_expect_as(f.s, ks[1], "B022", "after the fstat failure");
    s_fx_close(&f);
}
END_TEST

/* Opening: open, mkdir, realpath and mkdtemp fail with the path and the
 * reason, create nothing, and the store opens once they work. */
START_TEST(open_calls_fail) {
    char *dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/new/store", dir);
    pd_store *s = NULL;
    struct stat st;
    s_counters(0, 0);
    pd__sys_table.mkdir = f_mkdir_fail;
    int rc = pd_file_open(&s, root, PD_FILE_CREATE);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(s);
    ck_assert_msg(s_msg_has(pd_errmsg(NULL), "mkdir", root, "Permission denied",
                            (char *)NULL),
                  "message: %s", pd_errmsg(NULL));
    ck_assert_int_ne(stat(root, &st), 0);

    TU_OK(pd_file_open(&s, root, PD_FILE_CREATE), NULL);
    tu_append1(s, K("k"), "v", 1);
    pd_close(&s);

    pd__sys_table.open = f_open_fail;
    rc = pd_file_open(&s, root, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(pd_errno(NULL), EACCES);
    ck_assert_msg(s_msg_has(pd_errmsg(NULL), "open", root, "Permission denied",
                            (char *)NULL),
                  "message: %s", pd_errmsg(NULL));

    pd__sys_table.realpath = f_realpath_fail;
    rc = pd_file_open(&s, root, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(s);
    ck_assert_msg(s_msg_has(pd_errmsg(NULL), "realpath", root,
                            "Input/output error", (char *)NULL),
                  "message: %s", pd_errmsg(NULL));

    TU_OK(pd_file_open(&s, root, 0), NULL);
    tu_expect_as(s, K("k"), "v", "after the failed opens");
    pd_close(&s);

    pd__sys_table.mkdtemp = f_mkdtemp_fail;
    rc = pd_file_open_temp(&s, dir, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(pd_errno(NULL), ENOSPC);
    ck_assert_msg(s_msg_has(pd_errmsg(NULL), "mkdtemp", dir,
                            "No space left on device", (char *)NULL),
                  "message: %s", pd_errmsg(NULL));
    char *left = s_find_prefix(dir, "partd-");
    ck_assert_msg(left == NULL || !*left, "left behind: %s", left);
    free(left);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* Closing a temporary store: rmdir fails, named with the path; its keys
 * are gone all the same. */
START_TEST(close_rmdir_fails) {
    char *dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
    pd_store *s = NULL;
    TU_OK(pd_file_open_temp(&s, dir, 0), NULL);
    tu_append1(s, K("k"), "v", 1);
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s", pd_file_path(s));
    s_counters(0, 0);
    pd__sys_table.rmdir = f_rmdir_fail;
    int rc = pd_close(&s);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(s);
    ck_assert_msg(s_msg_has(pd_errmsg(NULL), "rmdir", root,
                            "Device or resource busy", (char *)NULL),
                  "message: %s", pd_errmsg(NULL));
    char p[PATH_MAX + 8];
    snprintf(p, sizeof p, "%s/k", root);
    struct stat st;
    ck_assert_int_ne(stat(p, &st), 0);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* Listing directories: fdopendir and readdir fail for drop and keys with
 * the path and the reason; keys gives no partial list and drop removes
 * nothing when the listing fails at once; the store works afterwards. */
START_TEST(listing_fails) {
    fx f;
    s_fx_open(&f, 0);
    s_baseline(f.s);
    const char *calls[] = {"fdopendir", "readdir"};
    for (int c = 0; c < 2; c++) {
        s_counters(1, EIO);
        if (c == 0)
            pd__sys_table.fdopendir = f_fdopendir_fail;
        else
            pd__sys_table.readdir = f_readdir_nth;
        pd_keylist *kl = NULL;
        int rc = pd_keys(f.s, &kl, 0);
        pd__sys_reset();
        ck_assert_msg(rc == PD_ERR_IO || rc == PD_ERR_NOMEM, "%s: keys -> %d",
                      calls[c], rc);
        ck_assert_ptr_null(kl);
        const char *why =
            c == 0 ? "Cannot allocate memory" : "Input/output error";
        ck_assert_msg(s_msg_has(pd_errmsg(f.s), "keys",
                                c ? "readdir" : "opendir", f.root, why,
                                (char *)NULL),
                      "%s: message: %s", calls[c], pd_errmsg(f.s));

        s_counters(1, EIO);
        if (c == 0)
            pd__sys_table.fdopendir = f_fdopendir_fail;
        else
            pd__sys_table.readdir = f_readdir_nth;
        rc = pd_drop(f.s, 0);
        pd__sys_reset();
        ck_assert_int_eq(rc, PD_ERR_IO);
        ck_assert_msg(s_msg_has(pd_errmsg(f.s), "drop",
                                c ? "readdir" : "opendir", f.root, why,
                                (char *)NULL),
                      "%s: message: %s", calls[c], pd_errmsg(f.s));
        s_check_baseline(f.s, calls[c], 1);
    }
    /* readdir fails deeper down (inside t/): drop fails, keys too */
    int at;
    for (at = 2; at < 40; at++) {
        s_baseline(f.s);
        s_counters(at, EIO);
        pd__sys_table.readdir = f_readdir_nth;
        pd_keylist *kl = NULL;
        int rc = pd_keys(f.s, &kl, 0);
        pd__sys_reset();
        if (!g_injected) {
            TU_OK(rc, f.s);
            ck_assert_int_eq(pd_keylist_count(kl), 4);
            pd_keylist_free(&kl);
            break;
        }
        ck_assert_int_eq(rc, PD_ERR_IO);
        ck_assert_ptr_null(kl);
        ck_assert_msg(
            s_msg_has(pd_errmsg(f.s), "keys", "readdir", f.root, (char *)NULL),
            "keys at %d: %s", at, pd_errmsg(f.s));
        s_check_baseline(f.s, "readdir in keys", at);
    }
    ck_assert_msg(at < 40, "readdir: keys never completed");
    s_baseline(f.s);
    /* every directory opened for a listing is closed */
    g_opendirs = g_closedirs = 0;
    pd__sys_table.fdopendir = f_fdopendir_count;
    pd__sys_table.closedir = f_closedir_count;
    ck_assert_int_eq(tu_nkeys(f.s), 4);
    TU_OK(pd_drop(f.s, 0), f.s);
    pd__sys_reset();
    ck_assert_int_ge(g_opendirs, 4); /* keys and drop: root and t/ */
    ck_assert_int_eq(g_opendirs, g_closedirs);
    ck_assert_int_eq(tu_nkeys(f.s), 0);
    s_fx_close(&f);
}
END_TEST

/* fstatat fails: keys fails naming the key and path (no partial list); the
 * directory checks of the descriptor cache only distrust their records, so
 * appends and gets still give the right values. */
START_TEST(fstatat_fails) {
    fx f;
    s_fx_open(&f, 0);
    s_baseline(f.s);
    s_counters(0, 0);
    pd__sys_table.fstatat = f_fstatat_fail;
    pd_keylist *kl = NULL;
    int rc = pd_keys(f.s, &kl, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(kl);
    const char *m = pd_errmsg(f.s);
    ck_assert_msg(s_msg_has(m, "keys", "fstatat", f.root, "Input/output error",
                            (char *)NULL) &&
                      (strstr(m, "'a'") || strstr(m, "'b'") ||
                       strstr(m, "'other'") || strstr(m, "('t', 'u')")),
                  "message: %s", m);
    /* appends and gets in sessions, with the ctime checks failing */
    pd_key k = PD_KEY_TUPLE(g_tu, 2);
    pd_bytes v = V("x");
    pd__sys_table.fstatat = f_fstatat_fail;
    for (int i = 0; i < 3; i++) {
        int lrc = pd_lock(f.s);
        int arc = pd_append(f.s, 1, &k, &v, 0);
        char *got = NULL;
        int grc = tu_fetch1(f.s, k, &got, NULL);
        int urc = pd_unlock(f.s);
        pd__sys_reset();
        ck_assert_msg(lrc == 0 && arc == 0 && grc == 0 && urc == 0,
                      "session %d: %s", i, pd_errmsg(f.s));
        ck_assert_str_eq(got, i == 0 ? "T0x" : i == 1 ? "T0xx" : "T0xxx");
        free(got);
        pd__sys_table.fstatat = f_fstatat_fail;
    }
    pd__sys_reset();
    ck_assert_int_eq(tu_nkeys(f.s), 4);
    s_fx_close(&f);
}
END_TEST

/* No entry types from readdir (some file systems): every entry is typed
 * with fstatat; keys and drop work as with them. */
START_TEST(untyped_entries) {
    fx f;
    s_fx_open(&f, 0);
    s_baseline(f.s);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/link", f.root);
    ck_assert_int_eq(symlink("a", p), 0);
    pd__sys_table.readdir = f_readdir_untyped;
    ck_assert_int_eq(tu_nkeys(f.s), 4);
    ck_assert_int_eq(tu_listed_size(f.s, PD_KEY_TUPLE(g_tu, 2)), 2);
    TU_OK(pd_drop(f.s, 0), f.s);
    ck_assert_int_eq(tu_nkeys(f.s), 0);
    pd__sys_reset();
    struct stat st;
    ck_assert_int_ne(lstat(p, &st), 0); /* the link itself removed */
    s_fx_close(&f);
}
END_TEST

/* getrlimit and clock_gettime failing: the store opens (default descriptor
 * bound) and, with no clock to trust its ctime records, still never uses a
 * descriptor whose file another handle replaced. */
START_TEST(limit_and_clock_fail) {
    fx f;
    s_fx_open(&f, 0);
    pd_close(&f.s);
    s_counters(0, 0);
    pd__sys_table.getrlimit = f_getrlimit_fail;
    pd__sys_table.clock_gettime = f_clock_fail;
    TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
    ck_assert_int_ge(g_injected, 1);
    pd_store *o = NULL;
    TU_OK(pd_file_open(&o, f.root, 0), NULL);
    pd_key k = K("k");
    pd_bytes one = V("1"), two = V("2");
    for (int i = 0; i < 3; i++) {
        TU_OK(pd_lock(f.s), f.s);
        TU_OK(pd_append(f.s, 1, &k, &one, 0), f.s);
        tu_expect_as(f.s, k, "1", "own append");
        TU_OK(pd_unlock(f.s), f.s);
        TU_OK(pd_delete(o, 1, &k, 0), o);
        TU_OK(pd_append(o, 1, &k, &two, 0), o);
        TU_OK(pd_lock(f.s), f.s);
        tu_expect_as(f.s, k, "2", "replaced by the other handle");
        TU_OK(pd_delete(f.s, 1, &k, 0), f.s);
        TU_OK(pd_unlock(f.s), f.s);
    }
    pd__sys_reset();
    pd_close(&o);
    s_fx_close(&f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("test_faults");
    TCase *tc = tcase_create("syscalls");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, write_enospc_nth);
    tcase_add_test(tc, write_eio_nth);
    tcase_add_test(tc, write_edquot_nth);
    tcase_add_test(tc, write_eio_nth_fsync);
    tcase_add_test(tc, openat_emfile_nth);
    tcase_add_test(tc, openat_eacces_nth);
    tcase_add_test(tc, iset_faults);
    tcase_add_test(tc, short_writes);
    tcase_add_test(tc, eintr_retried);
    tcase_add_test(tc, fsync_fails);
    tcase_add_test(tc, rollback_fails);
    tcase_add_test(tc, flock_fails);
    tcase_add_test(tc, other_calls_fail);
    tcase_add_test(tc, fstat_fails_nth);
    tcase_add_test(tc, open_calls_fail);
    tcase_add_test(tc, close_rmdir_fails);
    tcase_add_test(tc, listing_fails);
    tcase_add_test(tc, fstatat_fails);
    tcase_add_test(tc, untyped_entries);
    tcase_add_test(tc, limit_and_clock_fail);
    suite_add_tcase(s, tc);
    tc = tcase_create("environment");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fsize_limit);
    tcase_add_test(tc, not_writable);
    tcase_add_test(tc, small_tmpfs);
    suite_add_tcase(s, tc);
    tc = tcase_create("hostile_dir");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, key_is_directory);
    tcase_add_test(tc, key_is_symlink);
    tcase_add_test(tc, lock_is_symlink);
    tcase_add_test(tc, key_is_hardlink);
    tcase_add_test(tc, key_is_fifo);
    tcase_add_test(tc, key_mode_000);
    tcase_add_test(tc, junk_in_store);
    tcase_add_test(tc, get_out_of_memory);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
