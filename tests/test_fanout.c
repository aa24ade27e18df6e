/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Fanout layer: routing (reference values shared with
 * docs/fanout.md), every op over Dicts, Files in several directories and
 * Clients of several servers, errors naming the inner store that failed, a
 * server gone mid-test, threads and fork (Namespaces: test_namespace.c).
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fanoutfix.h"

/* ------------------------------------------------------------ Helpers */

static int64_t t_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ Routing */

/* Reference values: docs/fanout.md lists them, and an independent Python
 * (XXH64 of the packed key, jump consistent hash) gives the same. */
START_TEST(routing_reference) {
    static const size_t ns[] = {1, 2, 3, 5, 8, 100};
    char big[1000];
    memset(big, 'L', sizeof big);
    pd_bytes t3[] = {{big, 300}, V("x")};
    pd_bytes t1[] = {V("a"), V("b")};
    pd_bytes t2[] = {V("x"), {"", 0}, V("1")};
    struct {
        pd_key k;
        uint64_t hash;
        size_t idx[6];
    } ref[] = {
        {PD_KEY("", 0), 0xe934a84adb052768ULL, {0, 0, 0, 0, 5, 29}},
        {K("a"), 0x2954a8c1d262a51eULL, {0, 0, 0, 4, 6, 79}},
        {K("key-1"), 0x3e3a3e9a13513019ULL, {0, 1, 1, 1, 7, 97}},
        {PD_KEY("x\0y", 3), 0xc933b762837ec326ULL, {0, 1, 2, 4, 4, 94}},
        {PD_KEY_TUPLE(t1, 2), 0x47a9beb5053f3f6cULL, {0, 1, 1, 1, 1, 63}},
        {PD_KEY_TUPLE(t2, 3), 0xf0b29a7939ebfa28ULL, {0, 0, 0, 0, 0, 95}},
        {PD_KEY(big, 100), 0x603a08a0d699dd01ULL, {0, 1, 1, 1, 5, 78}},
        /* Packed forms over 256 bytes are hashed another way. */
        {PD_KEY(big, 1000), 0xe16368f3e76a2b5dULL, {0, 1, 2, 2, 6, 18}},
        {PD_KEY_TUPLE(t3, 2), 0xafdd40824c9d1f7cULL, {0, 1, 2, 2, 7, 78}},
    };
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        ck_assert_msg(pd_fanout_hash(&ref[i].k) == ref[i].hash,
                      "key %zu: hash %016llx", i,
                      (unsigned long long)pd_fanout_hash(&ref[i].k));
        for (size_t j = 0; j < 6; j++)
            ck_assert_msg(pd_fanout_index(&ref[i].k, ns[j]) == ref[i].idx[j],
                          "key %zu, n %zu: %zu, want %zu", i, ns[j],
                          pd_fanout_index(&ref[i].k, ns[j]), ref[i].idx[j]);
    }
    /* A 1-tuple is the flat key. */
    pd_bytes one[] = {V("key-1")};
    pd_key t1k = PD_KEY_TUPLE(one, 1);
    ck_assert(pd_fanout_hash(&t1k) == 0x3e3a3e9a13513019ULL);
    /* Invalid input. */
    pd_key bad = PD_KEY(NULL, 3);
    ck_assert_uint_eq(pd_fanout_index(&bad, 3), SIZE_MAX);
    ck_assert_uint_eq(pd_fanout_index(&ref[1].k, 0), SIZE_MAX);
    ck_assert_uint_eq(pd_fanout_index(NULL, 3), SIZE_MAX);
    ck_assert(pd_fanout_hash(NULL) == 0);
}
END_TEST

/* Growing n by one moves keys only to the new store, about 1/(n+1) of
 * them; every store gets keys. */
START_TEST(routing_consistent) {
    enum { NK = 4000 };
    char b[32];
    for (size_t n = 1; n < 12; n++) {
        size_t moved = 0, count[12] = {0};
        for (size_t i = 0; i < NK; i++) {
            pd_key k = t_ki(b, sizeof b, i);
            size_t a = pd_fanout_index(&k, n), c = pd_fanout_index(&k, n + 1);
            ck_assert_uint_lt(a, n);
            ck_assert(c == a || c == n);
            moved += c != a;
            count[c]++;
        }
        ck_assert_uint_gt(moved, NK / (n + 1) / 2);
        ck_assert_uint_lt(moved, NK / (n + 1) * 2);
        for (size_t i = 0; i <= n; i++) ck_assert_uint_gt(count[i], 0);
    }
}
END_TEST

/* ------------------------------------------------------------ Open */

START_TEST(open_misuse) {
    pd_store *f = NULL, *a = t_dict(), *b = t_dict();
    pd_store *in[] = {a, b};
    ck_assert_int_eq(pd_fanout_open(&f, in, 0, 0), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "no inner stores"));
    ck_assert_int_eq(pd_fanout_open(&f, NULL, 2, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_fanout_open(NULL, in, 2, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_fanout_open(&f, in, 2, 0x8u), PD_ERR_MISUSE);
    pd_store *rep[] = {a, b, a};
    ck_assert_int_eq(pd_fanout_open(&f, rep, 3, 0), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "0 and 2 are the same"));
    pd_store *withnull[] = {a, NULL};
    ck_assert_int_eq(pd_fanout_open(&f, withnull, 2, 0), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "store 1 is NULL"));
    ck_assert_ptr_null(f);
    ck_assert_ptr_eq(in[0], a); /* nothing taken */
    /* Not a Fanout. */
    ck_assert_uint_eq(pd_fanout_count(a), 0);
    ck_assert_ptr_null(pd_fanout_inner(a, 0));
    /* Owned: the caller's pointers are cleared; close closes them. */
    TU_OK(pd_fanout_open(&f, in, 2, 0), NULL);
    ck_assert_ptr_null(in[0]);
    ck_assert_ptr_null(in[1]);
    ck_assert_ptr_null(pd_fanout_inner(f, 2));
    tu_append1(f, K("x"), "1", 1);
    tu_expect_str(f, K("x"), "1");
    TU_OK(pd_close(&f), NULL);
    /* One store is fine. */
    pd_store *one = t_dict();
    TU_OK(pd_fanout_open(&f, &one, 1, 0), NULL);
    tu_append1(f, K("y"), "2", 1);
    tu_expect_str(f, K("y"), "2");
    TU_OK(pd_close(&f), NULL);
}
END_TEST

/* ------------------------------------------------------------ Ops */

/* Every op over the Fanout f of inner[0..n), checking where keys land. */
static void t_ops(pd_store *f, pd_store **inner, size_t n) {
    enum { NK = 200 };
    char kb[NK][16], vb[NK][16];
    pd_key keys[NK + 2];
    pd_bytes vals[NK + 2];
    for (size_t i = 0; i < NK; i++) {
        keys[i] = t_ki(kb[i], sizeof kb[i], i);
        snprintf(vb[i], sizeof vb[i], "v%zu;", i);
        vals[i] = V(vb[i]);
    }
    /* A key twice in a batch: its values in order. */
    keys[NK] = keys[0];
    vals[NK] = V("again;");
    pd_bytes tp[] = {V("t"), V("u")};
    keys[NK + 1] = PD_KEY_TUPLE(tp, 2);
    vals[NK + 1] = V("tuple");
    TU_OK(pd_append(f, NK + 2, keys, vals, 0), f);
    TU_OK(pd_append(f, NK, keys, vals, 0), f);
    /* Each key lives in the store pd_fanout_index names, and only there. */
    for (size_t i = 0; i < NK + 2; i++) {
        size_t at = pd_fanout_index(&keys[i], n);
        for (size_t j = 0; j < n; j++) {
            char *got = NULL;
            TU_OK(tu_fetch1(inner[j], keys[i], &got, NULL), inner[j]);
            ck_assert_msg((j == at) == (*got != 0), "key %zu in store %zu", i,
                          j);
            free(got);
        }
    }
    /* get in the caller's order, reversed, with repeats and a missing key. */
    pd_key rk[NK + 3];
    for (size_t i = 0; i < NK + 2; i++) rk[i] = keys[NK + 1 - i];
    rk[NK + 2] = K("missing");
    pd_result *r = NULL;
    TU_OK(pd_get(f, NK + 3, rk, &r, 0), f);
    ck_assert_uint_eq(pd_result_count(r), NK + 3);
    for (size_t i = 0; i < NK + 2; i++) {
        size_t ki = NK + 1 - i;
        char want[64];
        if (ki == NK + 1)
            snprintf(want, sizeof want, "tuple");
        else if (ki == 0 || ki == NK)
            snprintf(want, sizeof want, "v0;again;v0;");
        else
            snprintf(want, sizeof want, "%s%s", vb[ki], vb[ki]);
        pd_bytes v = pd_result_value(r, i);
        ck_assert_msg(v.size == strlen(want) && !memcmp(v.data, want, v.size),
                      "get %zu: '%.*s', want '%s'", i, (int)v.size,
                      (const char *)v.data, want);
    }
    ck_assert_uint_eq(pd_result_value(r, NK + 2).size, 0);
    pd_result_free(&r);
    /* pd_get_into with a buffer. */
    char buf[4096];
    TU_OK(pd_get_into(f, 3, keys + 1, buf, sizeof buf, &r, 0), f);
    ck_assert_uint_eq(pd_result_count(r), 3);
    ck_assert_uint_eq(pd_result_value(r, 1).size, 2 * strlen(vb[2]));
    pd_result_free(&r);
    /* keys: the union. */
    ck_assert_uint_eq(tu_nkeys(f), NK + 1);
    ck_assert_int_eq(tu_listed_size(f, keys[5]), 2 * (long long)strlen(vb[5]));
    ck_assert_int_eq(tu_listed_size(f, keys[NK + 1]), 5);
    /* delete half. */
    TU_OK(pd_delete(f, NK / 2, keys, 0), f);
    ck_assert_uint_eq(tu_nkeys(f), NK / 2 + 1);
    tu_expect_str(f, keys[1], "");
    /* iset: replaces once, idempotent after. */
    pd_bytes one = V("set"), two = V("other");
    TU_OK(pd_iset(f, 1, &keys[NK - 1], &one, 0), f);
    TU_OK(pd_iset(f, 1, &keys[NK - 1], &two, 0), f);
    tu_expect_str(f, keys[NK - 1], "set");
    /* Lock sessions: every inner store locked, calls with PD_NOLOCK. */
    TU_OK(pd_lock(f), f);
    TU_OK(pd_append(f, 4, keys + NK - 4, vals, PD_NOLOCK), f);
    TU_OK(pd_get(f, 4, keys + NK - 4, &r, PD_NOLOCK), f);
    pd_result_free(&r);
    TU_OK(pd_lock(f), f);
    TU_OK(pd_unlock(f), f);
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(f, &kl, 0), f);
    pd_keylist_free(&kl);
    TU_OK(pd_unlock(f), f);
    ck_assert_int_eq(pd_unlock(f), PD_ERR_MISUSE);
    tu_expect_str(f, keys[NK - 1], "setv3;");
    /* drop: every store empty. */
    TU_OK(pd_drop(f, 0), f);
    ck_assert_uint_eq(tu_nkeys(f), 0);
    for (size_t j = 0; j < n; j++) ck_assert_uint_eq(tu_nkeys(inner[j]), 0);
    /* Usable after a drop; iset forgot what it set. */
    TU_OK(pd_iset(f, 1, &keys[NK - 1], &two, 0), f);
    tu_expect_str(f, keys[NK - 1], "other");
}

START_TEST(ops_dicts) {
    pd_store *in[3] = {t_dict(), t_dict(), t_dict()};
    pd_store *f = t_fanout(in, 3);
    t_ops(f, in, 3);
    TU_OK(pd_close(&f), NULL);
    for (int i = 0; i < 3; i++) TU_OK(pd_close(&in[i]), NULL);
}
END_TEST

START_TEST(ops_files) {
    char *dirs[3];
    pd_store *in[3];
    for (int i = 0; i < 3; i++) {
        dirs[i] = tu_mkdtemp();
        TU_OK(pd_file_open(&in[i], dirs[i], 0), NULL);
    }
    pd_store *f = t_fanout(in, 3);
    t_ops(f, in, 3);
    /* Data stays where it was put: a new Fanout over the same directories
     * in the same order reads it back. */
    tu_append1(f, K("persist"), "p", 1);
    TU_OK(pd_close(&f), NULL);
    for (int i = 0; i < 3; i++) TU_OK(pd_close(&in[i]), NULL);
    for (int i = 0; i < 3; i++) TU_OK(pd_file_open(&in[i], dirs[i], 0), NULL);
    TU_OK(pd_fanout_open(&f, in, 3, 0), NULL);
    tu_expect_str(f, K("persist"), "p");
    TU_OK(pd_close(&f), NULL);
    for (int i = 0; i < 3; i++) {
        tu_rmtree(dirs[i]);
        free(dirs[i]);
    }
}
END_TEST

START_TEST(ops_clients) {
    t_srv s[3];
    pd_store *in[3];
    pd_store *f = t_clients_fanout(s, in, 3);
    t_ops(f, in, 3);
    /* The data is on the servers' stores, each key on its server's. */
    tu_append1(f, K("where"), "w", 1);
    TU_OK(pd_close(&f), NULL);
    for (int i = 0; i < 3; i++) TU_OK(pd_close(&in[i]), NULL);
    size_t at = pd_fanout_index(&K("where"), 3);
    for (int i = 0; i < 3; i++) {
        TU_OK(pd_server_close(&s[i].srv), NULL);
        tu_expect_str(s[i].dict, K("where"), (size_t)i == at ? "w" : "");
        TU_OK(pd_close(&s[i].dict), NULL);
    }
}
END_TEST

/* Several threads share a Fanout of Clients (and a Fanout of Dicts). */
START_TEST(threads_share) {
    t_srv s[2];
    pd_store *in[2];
    pd_store *f = t_clients_fanout(s, in, 2);
    tu_threads_own_shared(f, 4, 200);
    TU_OK(pd_close(&f), NULL);
    pd_store *d[3] = {t_dict(), t_dict(), t_dict()};
    TU_OK(pd_fanout_open(&f, d, 3, 0), NULL);
    tu_threads_own_shared(f, 4, 500);
    TU_OK(pd_close(&f), NULL);
    t_clients_close(s, in, 2);
}
END_TEST

/* A forked child has no Fanout threads: it calls its Clients itself. */
static int t_fork_child(void *arg) {
    pd_store *f = arg;
    char kb[16];
    for (size_t i = 0; i < 20; i++) {
        pd_key k = t_ki(kb, sizeof kb, i);
        pd_bytes v = V("c");
        TU_CHECK(pd_append(f, 1, &k, &v, 0) == 0, "append: %s", pd_errmsg(f));
    }
    pd_keylist *kl = NULL;
    TU_CHECK(pd_keys(f, &kl, 0) == 0, "keys: %s", pd_errmsg(f));
    TU_CHECK(pd_keylist_count(kl) == 20, "keys: %zu", pd_keylist_count(kl));
    pd_keylist_free(&kl);
    TU_CHECK(pd_lock(f) == 0, "lock: %s", pd_errmsg(f));
    TU_CHECK(pd_unlock(f) == 0, "unlock: %s", pd_errmsg(f));
    TU_CHECK(pd_close(&f) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

START_TEST(forked_child) {
    t_srv s[2];
    pd_store *in[2];
    t_clients(s, in, 2);
    pd_store *f = NULL;
    TU_OK(pd_fanout_open(&f, in, 2, 0), NULL);
    tu_append1(f, K("k0"), "p", 1);
    tu_child c = tu_child_spawn(t_fork_child, f, NULL, 0);
    char msg[512];
    int st = tu_child_wait(c, msg, sizeof msg);
    ck_assert_msg(st == 0, "child: %d %s", st, msg);
    tu_expect_str(f, K("k0"), "pc");
    tu_expect_str(f, K("k19"), "c");
    TU_OK(pd_close(&f), NULL);
    for (int i = 0; i < 2; i++) t_srv_close(&s[i]);
}
END_TEST

/* ------------------------------------------------------------ Errors */

/* A store over a Dict whose calls fail on demand with ENOSPC. */
typedef struct t_fail {
    pd_store base;
    pd_store *inner;
    bool fail;
} t_fail;

static int t_f_append(pd_store *s, size_t n, const pd_key *k, const pd_bytes *v,
                      unsigned fl) {
    t_fail *f = (t_fail *)s;
    (void)fl;
    if (f->fail)
        return pd__err(s, PD_ERR_IO, ENOSPC, "append: write(/fake/%zu)", n);
    int rc = pd_append(f->inner, n, k, v, 0);
    return rc ? pd__err_inner(s, f->inner, rc) : 0;
}

static int t_f_get(pd_store *s, size_t n, const pd_key *k, pd_result *r,
                   unsigned fl) {
    t_fail *f = (t_fail *)s;
    (void)fl;
    if (f->fail) return pd__err(s, PD_ERR_IO, EIO, "get: read(/fake)");
    pd_result *ir = NULL;
    int rc = pd_get(f->inner, n, k, &ir, 0);
    if (rc) return pd__err_inner(s, f->inner, rc);
    rc = pd__result_move(r, ir);
    pd_result_free(&ir);
    return rc;
}

static int t_f_del(pd_store *s, size_t n, const pd_key *k, unsigned fl) {
    t_fail *f = (t_fail *)s;
    (void)fl;
    if (f->fail) return pd__err(s, PD_ERR_IO, EIO, "delete: unlink(/fake)");
    return pd_delete(f->inner, n, k, 0);
}

static int t_f_set(pd_store *s, size_t n, const pd_key *k, const pd_bytes *v,
                   unsigned fl) {
    t_fail *f = (t_fail *)s;
    (void)fl;
    if (f->fail) return pd__err(s, PD_ERR_IO, ENOSPC, "set: write(/fake)");
    return pd_iset(f->inner, n, k, v, 0);
}

static int t_f_drop(pd_store *s, unsigned fl) {
    t_fail *f = (t_fail *)s;
    (void)fl;
    if (f->fail) return pd__err(s, PD_ERR_IO, EIO, "drop: rmdir(/fake)");
    return pd_drop(f->inner, 0);
}

static int t_f_keys(pd_store *s, pd_keylist *kl, unsigned fl) {
    t_fail *f = (t_fail *)s;
    (void)fl;
    if (f->fail) return pd__err(s, PD_ERR_IO, EIO, "keys: readdir(/fake)");
    pd_keylist *il = NULL;
    int rc = pd_keys(f->inner, &il, 0);
    if (rc) return rc;
    for (size_t i = 0; i < pd_keylist_count(il); i++) {
        pd_key k;
        pd_keylist_key(il, i, &k);
        pd__keylist_add(kl, &k, pd_keylist_size(il, i));
    }
    pd_keylist_free(&il);
    return 0;
}

static int t_f_destroy(pd_store *s) { return pd_close(&((t_fail *)s)->inner); }

static const pd_store_ops t_fail_ops = {.kind = "failing",
                                        .append = t_f_append,
                                        .get = t_f_get,
                                        .del = t_f_del,
                                        .set = t_f_set,
                                        .drop = t_f_drop,
                                        .keys = t_f_keys,
                                        .destroy = t_f_destroy};

static t_fail *t_fail_new(void) {
    t_fail *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(pd__store_init(&f->base, &t_fail_ops), 0);
    f->inner = t_dict();
    return f;
}

/* Keys k0 .. k<n-1>, each with one value. */
typedef struct t_keys {
    size_t n;
    char kb[64][16];
    pd_key keys[64];
    pd_bytes vals[64];
} t_keys;

/* Fills t with n keys (at most 64), each valued val, and appends them to f
 * once. */
static void t_keys_put(t_keys *t, pd_store *f, size_t n, const char *val) {
    ck_assert_uint_le(n, 64);
    t->n = n;
    for (size_t i = 0; i < n; i++) {
        t->keys[i] = t_ki(t->kb[i], sizeof t->kb[i], i);
        t->vals[i] = V(val);
    }
    TU_OK(pd_append(f, n, t->keys, t->vals, 0), f);
}

START_TEST(errors_name_the_store) {
    t_fail *bad = t_fail_new();
    pd_store *in[3] = {t_dict(), &bad->base, t_dict()};
    pd_store *f = NULL;
    TU_OK(pd_fanout_open(&f, in, 3, 0), NULL);
    t_keys tk;
    t_keys_put(&tk, f, 64, "x");
    bad->fail = true;
    /* append: stores 0 and 2 applied their part, store 1 did not. */
    int rc = pd_append(f, tk.n, tk.keys, tk.vals, 0);
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errcode(f), PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f), ENOSPC);
    t_has(f, "fanout: append: store 1 of 3 (failing)");
    t_has(f, "applied by store 0, 2");
    t_has(f, "write(/fake/");
    t_has(f, "No space left on device");
    bad->fail = false;
    for (size_t i = 0; i < tk.n; i++) {
        size_t at = pd_fanout_index(&tk.keys[i], 3);
        tu_expect_str(f, tk.keys[i], at == 1 ? "x" : "xx");
    }
    bad->fail = true;
    /* Reads: the error, nothing returned. */
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(f, tk.n, tk.keys, &r, 0), PD_ERR_IO);
    ck_assert_ptr_null(r);
    t_has(f, "get: store 1 of 3 (failing)");
    t_has(f, "read(/fake)");
    pd_keylist *kl = NULL;
    ck_assert_int_eq(pd_keys(f, &kl, 0), PD_ERR_IO);
    ck_assert_ptr_null(kl);
    t_has(f, "keys: store 1 of 3 (failing)");
    ck_assert_int_eq(pd_delete(f, tk.n, tk.keys, 0), PD_ERR_IO);
    t_has(f, "delete: store 1 of 3 (failing)");
    ck_assert_int_eq(pd_iset(f, tk.n, tk.keys, tk.vals, 0), PD_ERR_IO);
    t_has(f, "iset: store 1 of 3 (failing)");
    ck_assert_int_eq(pd_drop(f, 0), PD_ERR_IO);
    t_has(f, "drop: store 1 of 3 (failing)");
    t_has(f, "applied by store 0, 2");
    /* Keys routed to healthy stores only: fine. */
    for (size_t i = 0; i < tk.n; i++) {
        if (pd_fanout_index(&tk.keys[i], 3) == 1) continue;
        TU_OK(pd_append(f, 1, &tk.keys[i], &tk.vals[i], 0), f);
        tu_expect_str(f, tk.keys[i], "x");
    }
    bad->fail = false;
    TU_OK(pd_close(&f), NULL);
}
END_TEST

/* A server gone: the call fails within the client's timeout with an error
 * naming the store and its address; the other stores keep working. */
START_TEST(server_killed) {
    /* Each wait of the clients; a call that must fail fails within a few
     * of them. */
    int tmo = tu_under_valgrind() ? 5000 : 400, bound = 10 * tmo;
    t_srv s[2];
    pd_store *in[2];
    for (int i = 0; i < 2; i++) {
        t_srv_open(&s[i]);
        in[i] = t_client(s[i].addr, tmo);
    }
    pd_store *f = NULL;
    TU_OK(pd_fanout_open(&f, in, 2, 0), NULL);
    t_keys tk;
    t_keys_put(&tk, f, 32, "v");
    t_srv_close(&s[1]);
    int64_t t0 = t_ms();
    pd_result *r = NULL;
    int rc = pd_get(f, tk.n, tk.keys, &r, 0);
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_null(r);
    ck_assert_int_lt(t_ms() - t0, bound);
    char want[200];
    snprintf(want, sizeof want, "get: store 1 of 2 (client %s)", s[1].addr);
    t_has(f, want);
    /* An append checks nothing remote: store 0 applies its part, the dead
     * store fails. */
    rc = pd_append(f, tk.n, tk.keys, tk.vals, 0);
    ck_assert_int_ne(rc, 0);
    t_has(f, "store 1 of 2 (client tcp://127.0.0.1:");
    t_has(f, "applied by store 0");
    ck_assert_int_lt(t_ms() - t0, 2 * bound);
    /* Store 0 still answers. */
    for (size_t i = 0; i < tk.n; i++)
        if (pd_fanout_index(&tk.keys[i], 2) == 0)
            tu_expect_str(f, tk.keys[i], "vv");
    /* A delete reads the replies due first: the dead store's check fails,
     * nothing is deleted. */
    ck_assert_int_ne(pd_delete(f, tk.n, tk.keys, 0), 0);
    t_has(f, "refused before anything was sent");
    for (size_t i = 0; i < tk.n; i++)
        if (pd_fanout_index(&tk.keys[i], 2) == 0)
            tu_expect_str(f, tk.keys[i], "vv");
    t0 = t_ms();
    pd_close(&f); /* the dead client may report its lost requests */
    ck_assert_int_lt(t_ms() - t0, bound);
    t_srv_close(&s[0]);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"routing_reference", routing_reference},
        {"routing_consistent", routing_consistent},
        {"open_misuse", open_misuse},
        {"ops_dicts", ops_dicts},
        {"ops_files", ops_files},
        {"ops_clients", ops_clients},
        {"threads_share", threads_share},
        {"forked_child", forked_child},
        {"errors_name_the_store", errors_name_the_store},
        {"server_killed", server_killed},
    };
    return TU_RUN_CASES("test_fanout", cases, 120, 0);
}
