/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The store contract over every stack: appends, gets, deletes, iset, drop
 * and listing (the stacks and the model: confix.h). */
#include "confix.h"

/* ----------------------------------------------------------------- Tests */

START_TEST(append_order) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    pd_key k1 = K("k1"), k2 = K("k2");
    pd_bytes a = V("a"), b = V("b");
    s_append(&f, &m, 1, &k1, &a);
    s_append(&f, &m, 1, &k2, &b);
    s_expect(&f, k1, "a");
    /* One batch that repeats a key: values land in array order. */
    pd_key ks[] = {k1, k1, k2, k1, K("k3"), k2};
    pd_bytes vs[] = {V("c"), V("d"), V("e"), V("f"), V("g"), V("h")};
    s_append(&f, &m, 6, ks, vs);
    s_expect(&f, k1, "acdf");
    s_expect(&f, k2, "beh");
    s_expect(&f, K("k3"), "g");
    /* Many small appends across calls. */
    char buf[32];
    for (int i = 0; i < 300; i++) {
        snprintf(buf, sizeof buf, "<%d>", i);
        pd_bytes v = V(buf);
        pd_key k = i % 2 ? k1 : K("k4");
        s_append(&f, &m, 1, &k, &v);
    }
    s_verify(&f, &m);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

START_TEST(missing_and_zero) {
    cf_fix f;
    s_open(&f, _i);
    pd_key k = K("never-written");
    s_expect(&f, k, "");
    pd_result *r = (pd_result *)&f; /* must be overwritten */
    TU_OK(pd_get(f.s, 0, NULL, &r, 0), f.s);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(pd_result_count(r), 0);
    ck_assert_uint_eq(pd_result_total(r), 0);
    pd_bytes out = pd_result_value(r, 0); /* out of range */
    ck_assert_ptr_null(out.data);
    ck_assert_uint_eq(out.size, 0);
    pd_result_free(&r);
    TU_OK(pd_append(f.s, 0, NULL, NULL, 0), f.s);
    TU_OK(pd_delete(f.s, 0, NULL, 0), f.s);
    TU_OK(pd_iset(f.s, 0, NULL, NULL, 0), f.s);
    /* Empty values are fine and add nothing. */
    pd_bytes e = {NULL, 0};
    TU_OK(pd_append(f.s, 1, &k, &e, 0), f.s);
    s_expect(&f, k, "");
    pd_key kk = K("x");
    tu_append1(f.s, kk, "1", 1);
    TU_OK(pd_append(f.s, 1, &kk, &e, 0), f.s);
    s_expect(&f, kk, "1");
    /* Missing keys between present ones. */
    pd_key ks[] = {K("nope1"), kk, K("nope2"), kk};
    TU_OK(pd_get(f.s, 4, ks, &r, 0), f.s);
    ck_assert_uint_eq(pd_result_count(r), 4);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 0);
    ck_assert_uint_eq(pd_result_value(r, 2).size, 0);
    ck_assert_uint_eq(pd_result_value(r, 1).size, 1);
    ck_assert_uint_eq(pd_result_value(r, 3).size, 1);
    ck_assert_uint_eq(pd_result_total(r), 2);
    pd_result_free(&r);
    s_close(&f);
}
END_TEST

START_TEST(get_many) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    enum { N = 500 };
    char names[N][16], vals[N][32];
    pd_key keys[N];
    pd_bytes vs[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "key%04d", i);
        snprintf(vals[i], sizeof vals[i], "value-%d;", i * 7);
        keys[i] = K(names[i]);
        vs[i] = V(vals[i]);
    }
    s_append(&f, &m, N, keys, vs);
    s_append(&f, &m, N / 2, keys + N / 4, vs);
    /* One get of all keys in an arbitrary order, with repeats. */
    pd_key ask[N + 3];
    for (int i = 0; i < N; i++) ask[i] = keys[(i * 37) % N];
    ask[N] = keys[5];
    ask[N + 1] = K("missing");
    ask[N + 2] = keys[5];
    pd_result *r = NULL;
    TU_OK(pd_get(f.s, N + 3, ask, &r, 0), f.s);
    ck_assert_uint_eq(pd_result_count(r), N + 3);
    for (int i = 0; i < N + 3; i++)
        s_model_expect(&f, &m, &ask[i], pd_result_value(r, (size_t)i),
                       "value %d of a %d-key get", i, N + 3);
    pd_result_free(&r);
    s_verify(&f, &m);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

/* pd_get_into: the same values whether they fit the caller's buffer or
 * not; the buffer is never freed by the library (valgrind checks that). */
START_TEST(get_into) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    char big[6000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 23);
    pd_key keys[3] = {K("g1"), K("g2"), K("g3")};
    pd_bytes vs[3] = {PD_BYTES(big, sizeof big), V("short"), V("")};
    s_append(&f, &m, 3, keys, vs);
    s_append(&f, &m, 1, keys, vs + 1);
    size_t caps[] = {0, 16, sizeof big, sizeof big + 5 + 4096, 64 * 1024};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        char *buf = caps[c] ? malloc(caps[c]) : NULL;
        for (size_t n = 1; n <= 3; n++) {
            pd_result *r = NULL;
            TU_OK(pd_get_into(f.s, n, keys, buf, caps[c], &r, 0), f.s);
            ck_assert_uint_eq(pd_result_count(r), n);
            uint64_t total = 0;
            for (size_t i = 0; i < n; i++)
                total +=
                    s_model_expect(&f, &m, &keys[i], pd_result_value(r, i),
                                   "get_into cap %zu: value %zu", caps[c], i);
            /* In buf only if they fit, and then from its start. */
            if (pd_result_in(r, buf)) {
                ck_assert_uint_le(total, caps[c]);
                ck_assert_ptr_eq(pd_result_value(r, 0).data, buf);
            }
            if (caps[c] < total) ck_assert(!pd_result_in(r, buf));
            /* With room to spare, a store that does not decode reads there
             * (a Buffer too: it copies what it gathered into buf). */
            if (!ENCODED(&f) && caps[c] >= 64 * 1024)
                ck_assert_msg(pd_result_in(r, buf),
                              "[%s] get_into: values not in the buffer",
                              NAME(&f));
            pd_result_free(&r);
        }
        free(buf);
    }
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get_into(f.s, 1, keys, NULL, 10, &r, 0), PD_ERR_MISUSE);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(pd_result_in(NULL, big), 0);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

START_TEST(delete_keys) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    pd_key ks[] = {K("a"), K("b"), K("c")};
    pd_bytes vs[] = {V("AAA"), V("BBBB"), V("CCCCC")};
    s_append(&f, &m, 3, ks, vs);
    s_verify(&f, &m);
    pd_key del[] = {K("a"), K("missing"), K("c"), K("a")};
    s_delete(&f, &m, 4, del);
    s_verify(&f, &m);
    s_expect(&f, K("a"), "");
    /* Deleting a missing key is fine; appending after delete starts over. */
    s_delete(&f, &m, 1, del + 1);
    pd_bytes z = V("z");
    s_append(&f, &m, 1, ks, &z);
    s_expect(&f, K("a"), "z");
    s_verify(&f, &m);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

START_TEST(iset_idempotent) {
    cf_fix f;
    s_open(&f, _i);
    pd_key k = K("ik"), k2 = K("ik2"), k3 = K("ik3");
    pd_bytes v1 = V("v1"), v2 = V("second-value");
    TU_OK(pd_iset(f.s, 1, &k, &v1, 0), f.s);
    s_expect(&f, k, "v1");
    TU_OK(pd_iset(f.s, 1, &k, &v2, 0), f.s);
    s_expect(&f, k, "v1");
    /* iset replaces what appends put there. */
    tu_append1(f.s, k2, "appended-", 9);
    tu_append1(f.s, k2, "more", 4);
    TU_OK(pd_iset(f.s, 1, &k2, &v2, 0), f.s);
    s_expect(&f, k2, "second-value");
    /* A batch repeating a key: the first value wins, the rest are repeats. */
    pd_key ks[] = {k3, k3, k};
    pd_bytes vs[] = {V("first"), V("other"), V("ignored")};
    TU_OK(pd_iset(f.s, 3, ks, vs, 0), f.s);
    s_expect(&f, k3, "first");
    s_expect(&f, k, "v1");
    /* Appends after an iset go after it; a repeated iset still ignored. */
    tu_append1(f.s, k, "+a", 2);
    TU_OK(pd_iset(f.s, 1, &k, &v2, 0), f.s);
    s_expect(&f, k, "v1+a");
    /* Deleting does not reset the memory (only drop does). */
    TU_OK(pd_delete(f.s, 1, &k, 0), f.s);
    TU_OK(pd_iset(f.s, 1, &k, &v2, 0), f.s);
    s_expect(&f, k, "");
    /* An iset of a big value replacing a big appended one (spills). */
    char big[4000];
    memset(big, 'q', sizeof big);
    pd_key kb = K("big");
    tu_append1(f.s, kb, big, sizeof big);
    pd_bytes sv = V("small");
    TU_OK(pd_iset(f.s, 1, &kb, &sv, 0), f.s);
    s_expect(&f, kb, "small");
    s_close(&f);
}
END_TEST

START_TEST(drop_store) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    pd_bytes parts[] = {V("t"), V("u")};
    pd_key ks[] = {K("a"), K("b"), PD_KEY_TUPLE(parts, 2)};
    pd_bytes vs[] = {V("1"), V("22"), V("333")};
    s_append(&f, &m, 3, ks, vs);
    pd_key ik = K("iset-key");
    pd_bytes iv = V("one"), iv2 = V("two");
    TU_OK(pd_iset(f.s, 1, &ik, &iv, 0), f.s);
    TU_OK(pd_drop(f.s, 0), f.s);
    s_model_free(&m);
    s_verify(&f, &m); /* empty */
    s_expect(&f, ik, "");
    /* Usable afterwards, and the iset memory is gone; but a Namespace over
     * Clients drops by deleting its keys on the servers, whose served
     * stores still remember the key as set (docs/fanout.md, Namespace). */
    bool served_memo = WIRE(&f) && NSBYTES(&f);
    TU_OK(pd_iset(f.s, 1, &ik, &iv2, 0), f.s);
    s_expect(&f, ik, served_memo ? "" : "two");
    if (!served_memo) s_model_put(s_model_find(&m, &ik, true), "two", 3, true);
    s_append(&f, &m, 3, ks, vs);
    s_verify(&f, &m);
    TU_OK(pd_drop(f.s, 0), f.s);
    TU_OK(pd_drop(f.s, 0), f.s); /* twice */
    s_model_free(&m);
    s_verify(&f, &m);
    s_append(&f, &m, 1, ks, vs);
    s_verify(&f, &m);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

START_TEST(keys_listing) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    s_verify(&f, &m); /* empty store lists nothing */
    pd_bytes p1[] = {V("x"), V("y")};
    pd_bytes p2[] = {V("x"), V("z"), V("w")};
    pd_bytes p3[] = {V("solo")};     /* ('solo',) is 'solo' */
    pd_bytes p4[] = {V(""), V("e")}; /* empty first part */
    pd_bytes p5[] = {V("q"), V("")}; /* empty last part */
    pd_key ks[] = {K("plain"),          PD_KEY_TUPLE(p1, 2),
                   PD_KEY_TUPLE(p2, 3), PD_KEY_TUPLE(p3, 1),
                   K("other"),          PD_KEY_TUPLE(p4, 2),
                   PD_KEY_TUPLE(p5, 2)};
    pd_bytes vs[] = {V("1"),     V("22"),     V("333"),    V("4444"),
                     V("55555"), V("666666"), V("7777777")};
    s_append(&f, &m, 7, ks, vs);
    s_append(&f, &m, 3, ks + 2, vs);
    pd_key solo = K("solo");
    s_expect(&f, solo, "444422");
    s_verify(&f, &m);
    /* The 1-tuple is listed as the flat key. */
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(f.s, &kl, 0), f.s);
    bool found = false;
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        ck_assert_int_eq(pd_keylist_key(kl, i, &k), 0);
        if (k.nparts == 0 && k.size == 4 && !memcmp(k.data, "solo", 4))
            found = true;
        if (k.nparts == 3) {
            ck_assert_uint_eq(k.parts[2].size, 1);
            ck_assert_int_eq(((const char *)k.parts[2].data)[0], 'w');
        }
    }
    ck_assert_msg(found, "[%s] ('solo',) not listed as 'solo'", NAME(&f));
    pd_key dummy;
    ck_assert_int_eq(pd_keylist_key(kl, pd_keylist_count(kl), &dummy),
                     PD_ERR_MISUSE);
    ck_assert_uint_eq(pd_keylist_size(kl, pd_keylist_count(kl)), 0);
    pd_keylist_free(&kl);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"append_order", append_order}, {"missing_and_zero", missing_and_zero},
        {"get_many", get_many},         {"get_into", get_into},
        {"delete_keys", delete_keys},   {"iset_idempotent", iset_idempotent},
        {"drop_store", drop_store},     {"keys_listing", keys_listing},
    };
    return TU_RUN_CASES("test_conformance_ops", cases, 60, NSTACKS);
}
