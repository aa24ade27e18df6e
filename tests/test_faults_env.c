/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Faults from the environment: RLIMIT_FSIZE, an unwritable directory (a
 * read-only bind mount, root only) and a full tmpfs (root only).
 */
#include "faultfix.h"

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
    pd__sys_table.mkdirat = f_mkdirat_fail; /* EACCES */
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

int main(void) {
    const tu_case cases[] = {
        {"fsize_limit", fsize_limit},
        {"not_writable", not_writable},
        {"small_tmpfs", small_tmpfs},
    };
    return TU_RUN_CASES("test_faults_env", cases, 60, 0);
}
