/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Concurrency and descriptors: descriptor limits (also lowered after open)
 * and cached descriptors surviving what other processes, C and Python, do
 * to the directory.
 */
#include "concfix.h"

/* ---------------------------------------------------------- fd limits */

enum { FD_NKEYS = 100000, FD_BATCH = 1000 };

typedef struct fdargs {
    const char *root;
    bool lower_after_open;
    int nkeys; /* a multiple of FD_BATCH */
} fdargs;

static int s_fd_child(void *arg) {
    fdargs *a = arg;
    pd_store *s = NULL;
    if (!a->lower_after_open)
        TU_CHECK(tu_limit_nofile(256) == 0, "setrlimit: %s", strerror(errno));
    int rc = pd_file_open(&s, a->root, PD_FILE_CREATE);
    TU_CHECK(rc == 0, "open: %s", pd_errmsg(NULL));
    if (a->lower_after_open)
        TU_CHECK(tu_limit_nofile(256) == 0, "setrlimit: %s", strerror(errno));
    pd_key *keys = calloc(FD_BATCH, sizeof *keys);
    pd_bytes *vals = calloc(FD_BATCH, sizeof *vals);
    char(*names)[16] = calloc(FD_BATCH, 16);
    char(*vb)[16] = calloc(FD_BATCH, 16);
    for (int round = 0; round < 2; round++) {
        for (int base = 0; base < a->nkeys; base += FD_BATCH) {
            for (int j = 0; j < FD_BATCH; j++) {
                int i = base + j;
                snprintf(names[j], 16, "f%06d", i);
                snprintf(vb[j], 16, "%c%d;", round ? 'b' : 'a', i);
                keys[j] = PD_KEY_STR(names[j]);
                vals[j] = PD_BYTES(vb[j], strlen(vb[j]));
            }
            rc = pd_append(s, FD_BATCH, keys, vals, 0);
            TU_CHECK(rc == 0, "round %d batch at %d: %s", round, base,
                     pd_errmsg(s));
        }
    }
    /* Sample. */
    for (int i = 0; i < a->nkeys; i += 997) {
        char name[16], want[40];
        snprintf(name, sizeof name, "f%06d", i);
        snprintf(want, sizeof want, "a%d;b%d;", i, i);
        pd_key k = PD_KEY_STR(name);
        pd_result *r = NULL;
        rc = pd_get(s, 1, &k, &r, 0);
        TU_CHECK(rc == 0, "get %s: %s", name, pd_errmsg(s));
        pd_bytes v = pd_result_value(r, 0);
        TU_CHECK(v.size == strlen(want) && !memcmp(v.data, want, v.size),
                 "key %s holds '%.*s', want '%s'", name, (int)v.size,
                 (const char *)v.data, want);
        pd_result_free(&r);
    }
    pd_keylist *kl = NULL;
    rc = pd_keys(s, &kl, 0);
    TU_CHECK(rc == 0, "keys: %s", pd_errmsg(s));
    TU_CHECK(pd_keylist_count(kl) == (size_t)a->nkeys,
             "keys lists %zu, want %d", pd_keylist_count(kl), a->nkeys);
    uint64_t total = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++)
        total += pd_keylist_size(kl, i);
    uint64_t want = 0;
    for (int i = 0; i < a->nkeys; i++) {
        char t[16];
        want += 2 * (uint64_t)snprintf(t, sizeof t, "a%d;", i);
    }
    TU_CHECK(total == want, "keys sizes sum to %llu, want %llu",
             (unsigned long long)total, (unsigned long long)want);
    pd_keylist_free(&kl);
    /* Still within the limit: a descriptor can be opened. */
    int fd = open("/dev/null", O_RDONLY);
    TU_CHECK(fd >= 0 && fd < 256, "open /dev/null -> %d", fd);
    close(fd);
    TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    free(keys);
    free(vals);
    free(names);
    free(vb);
    return 0;
}

/* Creating 100k files takes ~10 s on this machine's ext4 (the file system,
 * not the library: Python's os.open loop takes as long), so the variant
 * that only needs to overflow the descriptor cache uses fewer keys. */
static void s_fd_test(bool lower_after_open, int nkeys) {
    tu_tmp t;
    tu_tmp_make(&t);
    fdargs a = {t.root, lower_after_open, nkeys};
    double t0 = s_now();
    s_wait_ok(s_spawn(s_fd_child, &a), "fd-limit child");
    fprintf(stderr, "fd_limit%s: 2 x %d keys in %.2fs\n",
            lower_after_open ? " (lowered after open)" : "", nkeys,
            s_now() - t0);
    tu_tmp_remove(&t);
}

START_TEST(fd_limit) { s_fd_test(false, FD_NKEYS); }
END_TEST

START_TEST(fd_limit_lowered_after_open) { s_fd_test(true, 10000); }
END_TEST

/* ------------------------------------------------- Stale descriptors */

enum {
    STALE_C_DELETE,
    STALE_PY_DELETE,
    STALE_C_DROP,
    STALE_PY_DROP,
    STALE_C_DELETE_REAPPEND,
    STALE_C_ISET,
    STALE_PY_ISET,
    STALE_NVARIANTS
};
static const char *s_stale_names[] = {"C delete",
                                      "Python delete",
                                      "C drop",
                                      "Python drop (rmtree + mkdir)",
                                      "C delete then append",
                                      "C iset (rename over)",
                                      "Python iset (truncate)"};

typedef struct bargs {
    const char *root;
    int variant;
} bargs;

static int s_stale_b(void *arg) {
    bargs *a = arg;
    pd_store *s = NULL;
    int rc = pd_file_open(&s, a->root, 0);
    TU_CHECK(rc == 0, "open: %s", pd_errmsg(NULL));
    pd_bytes tp[] = {PD_BYTES("d", 1), PD_BYTES("k", 1)};
    pd_key keys[] = {PD_KEY_STR("k"), PD_KEY_TUPLE(tp, 2)};
    if (a->variant == STALE_C_DROP) {
        rc = pd_drop(s, 0);
        TU_CHECK(rc == 0, "drop: %s", pd_errmsg(s));
    } else if (a->variant == STALE_C_ISET) {
        pd_bytes v[] = {PD_BYTES("other", 5), PD_BYTES("other", 5)};
        rc = pd_iset(s, 2, keys, v, 0);
        TU_CHECK(rc == 0, "iset: %s", pd_errmsg(s));
    } else {
        rc = pd_delete(s, 2, keys, 0);
        TU_CHECK(rc == 0, "delete: %s", pd_errmsg(s));
    }
    if (a->variant == STALE_C_DELETE_REAPPEND) {
        pd_bytes v[] = {PD_BYTES("other", 5), PD_BYTES("other", 5)};
        rc = pd_append(s, 2, keys, v, 0);
        TU_CHECK(rc == 0, "append: %s", pd_errmsg(s));
    }
    TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

/* Process A (this one) keeps a handle with cached descriptors while
 * process B changes the directory; A's next append must land in the
 * store's current file, not in an unlinked one. */
START_TEST(stale_descriptors) {
    int v = _i;
    const char *name = s_stale_names[v];
    bool py = v == STALE_PY_DELETE || v == STALE_PY_DROP || v == STALE_PY_ISET;
    if (py && !tu_have_python_partd()) {
        fprintf(stderr, "stale_descriptors[%s]: SKIP: no python partd\n", name);
        return;
    }
    tu_tmp t;
    tu_tmp_make(&t);
    pd_store *a = NULL;
    TU_OK(pd_file_open(&a, t.root, PD_FILE_CREATE), NULL);
    pd_bytes tp[] = {PD_BYTES("d", 1), PD_BYTES("k", 1)};
    pd_key keys[] = {PD_KEY_STR("k"), PD_KEY_TUPLE(tp, 2),
                     PD_KEY_STR("bystander")};
    pd_bytes old[] = {PD_BYTES("old", 3), PD_BYTES("old", 3),
                      PD_BYTES("by", 2)};
    TU_OK(pd_append(a, 3, keys, old, 0), a);
    TU_OK(pd_append(a, 2, keys, old, 0), a); /* descriptors now cached */
    tu_expect_as(a, keys[0], "oldold", name);

    /* B acts while A's handle stays open. */
    if (py) {
        int st = v == STALE_PY_DROP
                     ? s_py_op(NULL, 0, t.root, "drop", NULL, NULL)
                 : v == STALE_PY_ISET
                     ? s_py_op(NULL, 0, t.root, "iset", "k", "other") |
                           s_py_op(NULL, 0, t.root, "iset", "d,k", "other")
                     : s_py_op(NULL, 0, t.root, "delete", "k", "d,k");
        ck_assert_msg(st == 0, "python %s exited %d", name, st);
    } else {
        bargs b = {t.root, v};
        s_wait_ok(s_spawn(s_stale_b, &b), name);
    }

    bool dropped = v == STALE_C_DROP || v == STALE_PY_DROP;
    const char *base =
        v == STALE_C_DELETE_REAPPEND || v == STALE_C_ISET || v == STALE_PY_ISET
            ? "other"
            : "";
    char want[32];
    snprintf(want, sizeof want, "%snew", base);
    tu_expect_as(a, keys[0], base, name);
    pd_bytes nv[] = {PD_BYTES("new", 3), PD_BYTES("new", 3)};
    TU_OK(pd_append(a, 2, keys, nv, 0), a);
    tu_expect_as(a, keys[0], want, name);
    tu_expect_as(a, keys[1], want, name);
    tu_expect_as(a, keys[2], dropped ? "" : "by", name);

    /* What another process sees: a fresh C handle and Python. */
    pd_store *c = NULL;
    TU_OK(pd_file_open(&c, t.root, 0), NULL);
    tu_expect_as(c, keys[0], want, "fresh handle");
    tu_expect_as(c, keys[1], want, "fresh handle");
    pd_close(&c);
    if (tu_have_python_partd()) {
        char out[64];
        ck_assert_int_eq(s_py_op(out, sizeof out, t.root, "get", "k", NULL), 0);
        ck_assert_msg(!strcmp(out, want), "%s: python reads '%s', want '%s'",
                      name, out, want);
        ck_assert_int_eq(s_py_op(out, sizeof out, t.root, "get", "d,k", NULL),
                         0);
        ck_assert_msg(!strcmp(out, want), "%s: python reads '%s', want '%s'",
                      name, out, want);
    }

    /* After Python's drop, the lock file is a new one: A's lock must still
     * exclude Python, i.e. A must lock the file that is there now. */
    if (v == STALE_PY_DROP || v == STALE_C_DROP) {
        TU_OK(pd_lock(a), a);
        pid_t pid = -1;
        bool pyl = tu_have_python_partd();
        tu_child ck = {-1, -1};
        bargs b = {t.root, STALE_C_DELETE_REAPPEND};
        if (pyl)
            pid = s_spawn_py(-1, -1, "op.py", t.root, "append", "z", "py",
                             (char *)NULL);
        else
            ck = s_spawn(s_stale_b, &b);
        s_sleep_ms(400);
        char zpath[PATH_MAX + 8];
        snprintf(zpath, sizeof zpath, "%s/%s", t.root, pyl ? "z" : "k");
        size_t zl = 0;
        char *z = tu_read_file(zpath, &zl);
        bool early = pyl ? z != NULL : (z && strcmp(z, want) != 0);
        free(z);
        TU_OK(pd_unlock(a), a);
        if (pyl)
            ck_assert_int_eq(tu_waitpid(pid), 0);
        else
            s_wait_ok(ck, "locked writer");
        ck_assert_msg(!early,
                      "%s: another process wrote while A held pd_lock (A "
                      "locks a stale .lock?)",
                      name);
    }
    TU_OK(pd_close(&a), NULL);
    tu_tmp_remove(&t);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"fd_limit", fd_limit},
        {"fd_limit_lowered_after_open", fd_limit_lowered_after_open},
        {"stale_descriptors", stale_descriptors, STALE_NVARIANTS},
    };
    return TU_RUN_CASES("test_concurrency_fds", cases, 120, 0);
}
