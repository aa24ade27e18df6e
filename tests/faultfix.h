/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The fixture shared by the Fault suites (tests/test_faults_*.c): children
 * for tests that need limits or mounts, a File store in a private temp dir,
 * and replacements for pd__sys_table entries that fail the nth call.
 *
 * In every fault suite a call fails with a clear message (key, path, reason)
 * or completes correctly, nothing crashes or hangs, a failed batch leaves
 * every key as it was, and keys not involved are untouched.  Each Check test
 * runs in its own process, and each test restores the table anyway.
 */
#ifndef PARTD_TESTS_FAULTFIX_H
#define PARTD_TESTS_FAULTFIX_H

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
static PD__UNUSED int s_run_child(tu_child_fn fn, void *arg, char *msg,
                                  size_t cap) {
    return tu_child_wait(tu_child_spawn(fn, arg, NULL, 0), msg, cap);
}

static PD__UNUSED void s_child_ok(tu_child_fn fn, void *arg, const char *what) {
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

static PD__UNUSED void s_fx_open(fx *f, unsigned flags) {
    f->dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->dir);
    snprintf(f->root, sizeof f->root, "%s/store", f->dir);
    f->s = NULL;
    int rc = pd_file_open(&f->s, f->root, PD_FILE_CREATE | flags);
    ck_assert_msg(rc == 0, "open: %s", pd_errmsg(NULL));
}

static PD__UNUSED void s_fx_close(fx *f) {
    pd__sys_reset();
    pd_close(&f->s);
    tu_rmtree(f->dir);
    free(f->dir);
    f->dir = NULL;
}

static PD__UNUSED bool s_has(pd_store *s, pd_key k, const char *want) {
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
static PD__UNUSED bool s_msg_has(const char *msg, ...) {
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
static PD__UNUSED char *s_find_prefix(const char *dir, const char *prefix) {
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

static PD__UNUSED int g_calls, g_fail_at, g_err, g_injected;
static PD__UNUSED int g_short; /* short-write/read chunk */
static PD__UNUSED int g_every; /* EINTR every other call */

/* Counts one injected failure (g_injected) and fails the call with errno
 * err. */
static PD__UNUSED int f_inject(int err) {
    g_injected++;
    errno = err;
    return -1;
}

/* Counts a call (g_calls); true when it is the one to fail (g_fail_at). */
static PD__UNUSED bool f_nth(void) { return ++g_calls == g_fail_at; }

/* True every other call (g_every), starting with the first. */
static PD__UNUSED bool f_other(void) { return g_every++ % 2 == 0; }

static PD__UNUSED ssize_t f_write_nth(int fd, const void *b, size_t n) {
    return f_nth() ? f_inject(g_err) : write(fd, b, n);
}

static PD__UNUSED int f_openat_nth(int dfd, const char *p, int fl, mode_t m) {
    return f_nth() ? f_inject(g_err) : openat(dfd, p, fl, m);
}

static PD__UNUSED ssize_t f_write_short(int fd, const void *b, size_t n) {
    g_calls++;
    return write(fd, b, n > (size_t)g_short ? (size_t)g_short : n);
}

static PD__UNUSED ssize_t f_write_eintr(int fd, const void *b, size_t n) {
    return f_other() ? f_inject(EINTR) : write(fd, b, n);
}

static PD__UNUSED ssize_t f_pread_short(int fd, void *b, size_t n, off_t off) {
    g_calls++;
    return pread(fd, b, n > (size_t)g_short ? (size_t)g_short : n, off);
}

static PD__UNUSED ssize_t f_pread_eintr(int fd, void *b, size_t n, off_t off) {
    return f_other() ? f_inject(EINTR) : pread(fd, b, n, off);
}

static PD__UNUSED ssize_t f_pread_fail(int fd, void *b, size_t n, off_t off) {
    (void)fd, (void)b, (void)n, (void)off;
    return f_inject(EIO);
}

static PD__UNUSED int f_fsync_fail(int fd) {
    (void)fd;
    g_calls++;
    errno = EIO;
    return -1;
}

static PD__UNUSED int f_fsync_count(int fd) {
    g_calls++;
    return fsync(fd);
}

static PD__UNUSED int f_ftruncate_fail(int fd, off_t len) {
    (void)fd, (void)len;
    return f_inject(EIO);
}

static PD__UNUSED int f_flock_fail(int fd, int op) {
    return (op & LOCK_UN) == 0 ? f_inject(ENOLCK) : flock(fd, op);
}

static PD__UNUSED int f_flock_eintr(int fd, int op) {
    return (op & LOCK_UN) == 0 && f_other() ? f_inject(EINTR) : flock(fd, op);
}

static PD__UNUSED int f_renameat_fail(int a, const char *o, int b,
                                      const char *n) {
    (void)a, (void)o, (void)b, (void)n;
    return f_inject(EIO);
}

static PD__UNUSED int f_unlinkat_nth(int d, const char *p, int fl) {
    return f_nth() ? f_inject(g_err) : unlinkat(d, p, fl);
}

static PD__UNUSED int f_mkdirat_fail(int d, const char *p, mode_t m) {
    (void)d, (void)p, (void)m;
    return f_inject(EACCES);
}

static PD__UNUSED void s_counters(int fail_at, int err) {
    g_calls = 0;
    g_fail_at = fail_at;
    g_err = err;
    g_injected = 0;
    g_every = 0;
}

/* ------------------------------------------------- Batch rollback loop */

/* Baseline content and one batch over old and new keys. */
static PD__UNUSED pd_bytes g_tu[] = {{"t", 1}, {"u", 1}};
static PD__UNUSED pd_bytes g_nm[] = {{"n", 1}, {"m", 1}};

static PD__UNUSED void s_baseline(pd_store *s) {
    pd_key ks[] = {K("a"), K("b"), PD_KEY_TUPLE(g_tu, 2), K("other")};
    pd_bytes vs[] = {V("A0"), V("B0"), V("T0"), V("untouched")};
    TU_OK(pd_drop(s, 0), s);
    TU_OK(pd_append(s, 4, ks, vs, 0), s);
}

static PD__UNUSED void s_check_baseline(pd_store *s, const char *what, int at) {
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

static PD__UNUSED void s_check_applied(pd_store *s, const char *what, int at) {
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

#endif
