/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Faults in the rest of the syscall table: fstat, open, mkdir, realpath,
 * mkdtemp, rmdir, directory listing, fstatat, untyped entries, getrlimit
 * and clock_gettime.
 */
#include "faultfix.h"

/* ------------------------------------- The rest of the syscall table */

/* What each injected failure does: counts itself and sets errno. */
static void s_inject(int err) {
    g_injected++;
    errno = err;
}

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
    s_inject(EIO);
    return -1;
}

static int f_open_fail(const char *p, int fl, mode_t m) {
    (void)p;
    (void)fl;
    (void)m;
    s_inject(EACCES);
    return -1;
}

static int f_mkdir_fail(const char *p, mode_t m) {
    (void)p;
    (void)m;
    s_inject(EACCES);
    return -1;
}

static int f_rmdir_fail(const char *p) {
    (void)p;
    s_inject(EBUSY);
    return -1;
}

static char *f_realpath_fail(const char *p, char *r) {
    (void)p;
    (void)r;
    s_inject(EIO);
    return NULL;
}

static char *f_mkdtemp_fail(char *tmpl) {
    (void)tmpl;
    s_inject(ENOSPC);
    return NULL;
}

static DIR *f_fdopendir_fail(int fd) {
    (void)fd; /* the caller still owns fd and closes it */
    s_inject(ENOMEM);
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
    s_inject(EPERM);
    return -1;
}

static int f_clock_fail(clockid_t c, struct timespec *ts) {
    (void)c;
    (void)ts;
    s_inject(EINVAL);
    return -1;
}

/* Opens f's store holding the baseline (s_baseline). */
static void s_fx_baseline(fx *f) {
    s_fx_open(f, 0);
    s_baseline(f->s);
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

/* An open that an injected err failed: PD_ERR_IO, no handle, and the message
 * names the call, the path and the reason. */
static void s_open_failed(int rc, const pd_store *s, int err, const char *call,
                          const char *path) {
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(pd_errno(NULL), err);
    ck_assert_msg(
        s_msg_has(pd_errmsg(NULL), call, path, strerror(err), (char *)NULL),
        "message: %s", pd_errmsg(NULL));
}

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
    s_open_failed(rc, s, EACCES, "mkdir", root);
    ck_assert_int_ne(stat(root, &st), 0);

    TU_OK(pd_file_open(&s, root, PD_FILE_CREATE), NULL);
    tu_append1(s, K("k"), "v", 1);
    pd_close(&s);

    pd__sys_table.open = f_open_fail;
    rc = pd_file_open(&s, root, 0);
    pd__sys_reset();
    s_open_failed(rc, s, EACCES, "open", root);

    pd__sys_table.realpath = f_realpath_fail;
    rc = pd_file_open(&s, root, 0);
    pd__sys_reset();
    s_open_failed(rc, s, EIO, "realpath", root);

    TU_OK(pd_file_open(&s, root, 0), NULL);
    tu_expect_as(s, K("k"), "v", "after the failed opens");
    pd_close(&s);

    pd__sys_table.mkdtemp = f_mkdtemp_fail;
    rc = pd_file_open_temp(&s, dir, 0);
    pd__sys_reset();
    s_open_failed(rc, s, ENOSPC, "mkdtemp", dir);
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
    s_fx_baseline(&f);
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
    s_fx_baseline(&f);
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
    s_fx_baseline(&f);
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
    const tu_case cases[] = {
        {"fstat_fails_nth", fstat_fails_nth},
        {"open_calls_fail", open_calls_fail},
        {"close_rmdir_fails", close_rmdir_fails},
        {"listing_fails", listing_fails},
        {"fstatat_fails", fstatat_fails},
        {"untyped_entries", untyped_entries},
        {"limit_and_clock_fail", limit_and_clock_fail},
    };
    return TU_RUN_CASES("test_faults_table", cases, 60, 0);
}
