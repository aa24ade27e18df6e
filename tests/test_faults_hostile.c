/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Faults: hostile store directories (keys that are directories, symlinks,
 * hard links, FIFOs or unreadable; a symlinked lock; junk files) and
 * running out of memory on a large get.
 */
#include "faultfix.h"

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

/* Opens f's store holding a bystander key, "o", that no fault may touch. */
static void s_fx_bystander(fx *f) {
    s_fx_open(f, 0);
    tu_append1(f->s, K("o"), "other", 5);
}

START_TEST(key_is_directory) {
    fx f;
    s_fx_bystander(&f);
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
    s_fx_bystander(&f);
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
    s_fx_bystander(&f);
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

int main(void) {
    const tu_case cases[] = {
        {"key_is_directory", key_is_directory},
        {"key_is_symlink", key_is_symlink},
        {"lock_is_symlink", lock_is_symlink},
        {"key_is_hardlink", key_is_hardlink},
        {"key_is_fifo", key_is_fifo},
        {"key_mode_000", key_mode_000},
        {"junk_in_store", junk_in_store},
        {"get_out_of_memory", get_out_of_memory},
    };
    return TU_RUN_CASES("test_faults_hostile", cases, 60, 0);
}
