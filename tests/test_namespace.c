/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Namespace layer: namespaces isolated over one Dict, File or Client
 * store, over a Fanout, hostile keys at the key limits once the name part
 * is added, and open's checks.  See docs/fanout.md.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanoutfix.h"

/* ------------------------------------------------------------ Namespaces */

static pd_store *t_ns(pd_store *inner, const char *name) {
    pd_store *ns = NULL, *in = inner;
    TU_OK(pd_namespace_open(&ns, &in, name, strlen(name), PD_BORROW), NULL);
    ck_assert_ptr_eq(in, inner);
    ck_assert_str_eq(pd_store_kind(ns), "namespace");
    ck_assert_ptr_eq(pd_namespace_inner(ns), inner);
    return ns;
}

/* Two namespaces over `shared`: same keys, separate contents; keys and
 * drop see only their own; the inner keys are as documented. */
static void t_isolation(pd_store *shared) {
    pd_store *a = t_ns(shared, "shuffle-a"), *b = t_ns(shared, "shuffle-b");
    pd_bytes tp[] = {V("x"), V("y")};
    /* (A File cannot hold both 'x' and ('x', 'y'): see prefix_collision in
     * test_conformance_*.c.) */
    pd_key ks[] = {K("k"), PD_KEY_TUPLE(tp, 2), K("z"), PD_KEY("", 0)};
    pd_bytes va[] = {V("a1"), V("a2"), V("a3"), V("a4")};
    pd_bytes vb[] = {V("b1"), V("b2"), V("b3"), V("b4")};
    TU_OK(pd_append(a, 4, ks, va, 0), a);
    TU_OK(pd_append(b, 3, ks, vb, 0), b);
    tu_append1(shared, K("raw"), "r", 1); /* outside any namespace */
    tu_expect_str(a, ks[0], "a1");
    tu_expect_str(a, ks[1], "a2");
    tu_expect_str(a, ks[2], "a3");
    tu_expect_str(a, ks[3], "a4");
    tu_expect_str(b, ks[0], "b1");
    tu_expect_str(b, ks[3], "");
    tu_expect_str(a, K("raw"), "");
    /* The documented mapping: 'k' is ('shuffle-a', 'k'), ('x', 'y') is
     * ('shuffle-a', 'x', 'y'). */
    pd_bytes m0[] = {V("shuffle-a"), V("k")};
    pd_bytes m1[] = {V("shuffle-a"), V("x"), V("y")};
    tu_expect_str(shared, PD_KEY_TUPLE(m0, 2), "a1");
    tu_expect_str(shared, PD_KEY_TUPLE(m1, 3), "a2");
    /* keys: own keys, without the name. */
    ck_assert_uint_eq(tu_nkeys(a), 4);
    ck_assert_uint_eq(tu_nkeys(b), 3);
    ck_assert_int_eq(tu_listed_size(a, ks[1]), 2);
    ck_assert_int_eq(tu_listed_size(a, ks[3]), 2);
    ck_assert_int_eq(tu_listed_size(a, K("raw")), -1);
    /* iset, delete. */
    pd_bytes s1 = V("set");
    TU_OK(pd_iset(a, 1, &ks[0], &s1, 0), a);
    tu_expect_str(a, ks[0], "set");
    tu_expect_str(b, ks[0], "b1");
    TU_OK(pd_delete(b, 1, &ks[2], 0), b);
    tu_expect_str(a, ks[2], "a3");
    tu_expect_str(b, ks[2], "");
    /* drop a: b and the raw key stay. */
    TU_OK(pd_drop(a, 0), a);
    ck_assert_uint_eq(tu_nkeys(a), 0);
    ck_assert_uint_eq(tu_nkeys(b), 2);
    tu_expect_str(b, ks[1], "b2");
    tu_expect_str(shared, K("raw"), "r");
    /* lock sessions. */
    TU_OK(pd_lock(a), a);
    TU_OK(pd_append(a, 1, &ks[0], &va[0], PD_NOLOCK), a);
    TU_OK(pd_unlock(a), a);
    tu_expect_str(a, ks[0], "a1");
    TU_OK(pd_close(&a), NULL);
    TU_OK(pd_close(&b), NULL);
    TU_OK(pd_drop(shared, 0), shared);
}

START_TEST(ns_dict) {
    pd_store *d = t_dict();
    t_isolation(d);
    TU_OK(pd_close(&d), NULL);
}
END_TEST

START_TEST(ns_file) {
    char *dir = tu_mkdtemp();
    pd_store *fs = NULL;
    TU_OK(pd_file_open(&fs, dir, 0), NULL);
    t_isolation(fs);
    TU_OK(pd_close(&fs), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(ns_client) {
    t_srv s;
    t_srv_open(&s);
    pd_store *c = t_client(s.addr, 10000);
    t_isolation(c);
    TU_OK(pd_close(&c), NULL);
    t_srv_close(&s);
}
END_TEST

/* Namespaces used at the same time from several threads over one File:
 * each sees only its own keys, through appends, keys and drops. */
typedef struct t_conc {
    pd_store *shared;
    char name[16];
    int bad;
} t_conc;

static void *t_conc_run(void *arg) {
    t_conc *c = arg;
    pd_store *ns = NULL, *in = c->shared;
    if (pd_namespace_open(&ns, &in, c->name, strlen(c->name), PD_BORROW)) {
        c->bad++;
        return NULL;
    }
    char kb[16];
    for (size_t r = 0; r < 60; r++) {
        pd_key k = t_ki(kb, sizeof kb, r % 7);
        pd_bytes v = V(c->name);
        if (pd_append(ns, 1, &k, &v, 0)) c->bad++;
        pd_keylist *kl = NULL;
        if (pd_keys(ns, &kl, 0)) {
            c->bad++;
            continue;
        }
        size_t want = r % 10 < 7 ? r % 10 + 1 : 7;
        if (pd_keylist_count(kl) != want) c->bad++;
        pd_keylist_free(&kl);
        pd_result *res = NULL;
        if (pd_get(ns, 1, &k, &res, 0) == 0) {
            pd_bytes got = pd_result_value(res, 0);
            /* Only this namespace's name, repeated. */
            for (size_t i = 0; i < got.size; i++)
                if (((const char *)got.data)[i] != c->name[i % strlen(c->name)])
                    c->bad++;
            pd_result_free(&res);
        } else {
            c->bad++;
        }
        if (r % 10 == 9 && pd_drop(ns, 0)) c->bad++;
    }
    if (pd_close(&ns)) c->bad++;
    return NULL;
}

START_TEST(ns_concurrent) {
    char *dir = tu_mkdtemp();
    pd_store *fs = NULL;
    TU_OK(pd_file_open(&fs, dir, 0), NULL);
    t_conc c[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        c[i].shared = fs;
        snprintf(c[i].name, sizeof c[i].name, "ns%c%c", 'a' + i, 'a' + i);
        c[i].bad = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, t_conc_run, &c[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(c[i].bad == 0, "namespace %s: %d wrong results",
                      c[i].name, c[i].bad);
    }
    ck_assert_uint_eq(tu_nkeys(fs), 0);
    TU_OK(pd_close(&fs), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* The shuffle layout: namespaces over a Fanout of clients of two servers,
 * and a Fanout of namespaces over each client: the same keys either way. */
START_TEST(ns_over_fanout) {
    t_srv s[2];
    pd_store *in[2];
    pd_store *f = t_clients_fanout(s, in, 2);
    pd_store *a = t_ns(f, "a"), *b = t_ns(f, "b");
    char kb[16];
    for (size_t i = 0; i < 50; i++) {
        pd_key k = t_ki(kb, sizeof kb, i);
        tu_append1(a, k, "A", 1);
        tu_append1(b, k, "B", 1);
    }
    ck_assert_uint_eq(tu_nkeys(a), 50);
    TU_OK(pd_drop(a, 0), a);
    ck_assert_uint_eq(tu_nkeys(a), 0);
    ck_assert_uint_eq(tu_nkeys(f), 50);
    tu_expect_str(b, K("k7"), "B");
    TU_OK(pd_close(&a), NULL);
    TU_OK(pd_close(&b), NULL);
    TU_OK(pd_close(&f), NULL);
    t_clients_close(s, in, 2);
}
END_TEST

/* Hostile keys through a Namespace (and a Fanout): empty, binary, at and
 * past the limits once the name part is added. */
START_TEST(ns_hostile_keys) {
    pd_store *d = t_dict();
    pd_store *ns = t_ns(d, "ns");
    char *big = malloc(PD_KEY_MAX);
    memset(big, '\xff', PD_KEY_MAX);
    pd_key ok[] = {PD_KEY("", 0), PD_KEY("\0\x01/..", 5),
                   PD_KEY(big, PD_KEY_MAX - 2)};
    pd_bytes v = V("v");
    pd_bytes vs[] = {v, v, v};
    TU_OK(pd_append(ns, 3, ok, vs, 0), ns);
    for (int i = 0; i < 3; i++) tu_expect_str(ns, ok[i], "v");
    ck_assert_uint_eq(tu_nkeys(ns), 3);
    /* One byte too many with the name: PD_ERR_KEY naming the key, nothing
     * of the batch applied. */
    pd_key over[] = {K("fresh"), PD_KEY(big, PD_KEY_MAX - 1)};
    ck_assert_int_eq(pd_append(ns, 2, over, vs, 0), PD_ERR_KEY);
    t_has(ns, "append '\\xff\\xff");
    t_has(ns, "at most 16384");
    tu_expect_str(ns, K("fresh"), "");
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(ns, 1, &over[1], &r, 0), PD_ERR_KEY);
    ck_assert_ptr_null(r);
    /* Parts: 63 fit, 64 do not (the name is one more). */
    pd_bytes parts[PD_KEY_MAX_PARTS];
    for (int i = 0; i < PD_KEY_MAX_PARTS; i++) parts[i] = V("p");
    pd_key p63 = PD_KEY_TUPLE(parts, PD_KEY_MAX_PARTS - 1);
    pd_key p64 = PD_KEY_TUPLE(parts, PD_KEY_MAX_PARTS);
    TU_OK(pd_append(ns, 1, &p63, &v, 0), ns);
    tu_expect_str(ns, p63, "v");
    ck_assert_int_eq(pd_iset(ns, 1, &p64, &v, 0), PD_ERR_KEY);
    t_has(ns, "65 parts (at most 64)");
    ck_assert_int_eq(pd_delete(ns, 1, &p64, 0), PD_ERR_KEY);
    /* A Fanout takes keys at the limits as they are. */
    pd_store *in[] = {t_dict(), t_dict()};
    pd_store *f = t_fanout(in, 2);
    pd_key lim[] = {PD_KEY(big, PD_KEY_MAX), p64, PD_KEY("", 0),
                    PD_KEY("\0", 1)};
    pd_bytes lv[] = {v, v, v, v};
    TU_OK(pd_append(f, 4, lim, lv, 0), f);
    for (int i = 0; i < 4; i++) tu_expect_str(f, lim[i], "v");
    ck_assert_uint_eq(tu_nkeys(f), 4);
    TU_OK(pd_close(&f), NULL);
    TU_OK(pd_close(&in[0]), NULL);
    TU_OK(pd_close(&in[1]), NULL);
    free(big);
    TU_OK(pd_close(&ns), NULL);
    TU_OK(pd_close(&d), NULL);
}
END_TEST

START_TEST(ns_open_misuse) {
    pd_store *d = t_dict(), *ns = NULL, *nul = NULL;
    ck_assert_int_eq(pd_namespace_open(&ns, &d, "a-|-b", 5, 0), PD_ERR_MISUSE);
    t_has(NULL, "-|-");
    ck_assert_int_eq(pd_namespace_open(&ns, &d, "ab-|", 4, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_namespace_open(&ns, &d, NULL, 3, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_namespace_open(&ns, &nul, "a", 1, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_namespace_open(&ns, NULL, "a", 1, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_namespace_open(&ns, &d, "a", 1, 0x8u), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_namespace_open(NULL, &d, "a", 1, 0), PD_ERR_MISUSE);
    ck_assert_ptr_null(ns);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_null(pd_namespace_inner(d));
    ck_assert_ptr_null(pd_namespace_name(d, NULL));
    /* The empty name is a name; owned inner store. */
    TU_OK(pd_namespace_open(&ns, &d, "", 0, 0), NULL);
    ck_assert_ptr_null(d);
    size_t len = 99;
    ck_assert_ptr_nonnull(pd_namespace_name(ns, &len));
    ck_assert_uint_eq(len, 0);
    tu_append1(ns, K("k"), "1", 1);
    tu_expect_str(ns, K("k"), "1");
    TU_OK(pd_close(&ns), NULL);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"ns_dict", ns_dict},
        {"ns_file", ns_file},
        {"ns_client", ns_client},
        {"ns_concurrent", ns_concurrent},
        {"ns_over_fanout", ns_over_fanout},
        {"ns_hostile_keys", ns_hostile_keys},
        {"ns_open_misuse", ns_open_misuse},
    };
    return TU_RUN_CASES("test_namespace", cases, 120, 0);
}
