/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Dict, the in-memory store: round trips, large and hostile keys, batches,
 * iset, delete and drop, keys and sizes, out of memory, misuse, threads.
 */
#include "dictfix.h"

/* ------------------------------------------------------------------ Tests */

START_TEST(roundtrip) {
    pd_store *d = tu_dict();
    pd_key ka = PD_KEY_STR("a"), kb = PD_KEY_STR("b");
    tu_hello_ab(d, ka, kb);
    ck_assert_uint_eq(pd_dict_nbytes(d), 13);

    /* A batch get: values in key order, missing keys empty. */
    pd_key ks[3] = {kb, PD_KEY_STR("none"), ka};
    pd_result *r = NULL;
    TU_OK(pd_get(d, 3, ks, &r, 0), d);
    ck_assert_uint_eq(pd_result_count(r), 3);
    ck_assert_uint_eq(pd_result_total(r), 13);
    pd_bytes v0 = pd_result_value(r, 0), v1 = pd_result_value(r, 1),
             v2 = pd_result_value(r, 2);
    ck_assert_uint_eq(v0.size, 1);
    ck_assert_uint_eq(v1.size, 0);
    ck_assert_uint_eq(v2.size, 12);
    ck_assert(memcmp(v2.data, "Hello World!", 12) == 0);
    pd_result_free(&r);

    /* Empty gets and appends. */
    TU_OK(pd_get(d, 0, NULL, &r, 0), d);
    ck_assert_uint_eq(pd_result_count(r), 0);
    pd_result_free(&r);
    TU_OK(pd_append(d, 0, NULL, NULL, 0), d);

    /* An empty value creates the key, as the reference's Dict does. */
    tu_append1(d, PD_KEY_STR("e"), NULL, 0);
    ck_assert_int_eq(tu_listed_size(d, PD_KEY_STR("e")), 0);
    tu_expect_str(d, PD_KEY_STR("e"), "");
    ck_assert_int_eq(pd_close(&d), 0);
    ck_assert_ptr_null(d);
}
END_TEST

START_TEST(large_and_many) {
    pd_store *d = tu_dict();
    pd_key k = PD_KEY_STR("big");
    size_t n = 3u << 20;
    unsigned char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (unsigned char)(i * 7 + (i >> 13));
    /* 1 MiB, then 100k small pieces, then 2 MiB: exact bytes back. */
    tu_append1(d, k, big, 1u << 20);
    size_t at = 1u << 20;
    for (int i = 0; i < 100000; i++) {
        size_t len = (size_t)(i % 13);
        if (at + len > n - (2u << 20)) len = 0;
        tu_append1(d, k, big + at, len);
        at += len;
    }
    ck_assert_uint_le(at, n - (2u << 20));
    tu_append1(d, k, big + at, 2u << 20);
    at += 2u << 20;
    tu_expect(d, k, big, at);
    ck_assert_uint_eq(pd_dict_nbytes(d), at);
    ck_assert_int_eq(tu_listed_size(d, k), (long long)at);

    /* peek: the chunks concatenate to the content. */
    const pd_bytes *ch = NULL;
    size_t nch = 0, sum = 0;
    pthread_mutex_lock(&d->mu);
    ck_assert_int_eq(d->ops->peek(d, &k, &ch, &nch), 0);
    ck_assert_uint_gt(nch, 1);
    for (size_t i = 0; i < nch; i++) {
        ck_assert(memcmp(ch[i].data, big + sum, ch[i].size) == 0);
        sum += ch[i].size;
    }
    ck_assert_uint_eq(sum, at);
    /* A missing key: no chunks. */
    pd_key km = PD_KEY_STR("nope");
    ck_assert_int_eq(d->ops->peek(d, &km, &ch, &nch), 0);
    ck_assert_uint_eq(nch, 0);
    pthread_mutex_unlock(&d->mu);
    free(big);
    pd_close(&d);
}
END_TEST

START_TEST(hostile_keys) {
    pd_store *d = tu_dict();
    static char longk[10000];
    memset(longk, 'L', sizeof longk);
    longk[5000] = '\0';
    pd_bytes ab[2] = {{"a", 1}, {"b", 1}};
    pd_bytes a1[1] = {{"a", 1}};
    pd_bytes e2[2] = {{"", 0}, {"", 0}};
    pd_bytes e1[1] = {{"", 0}};
    pd_key keys[] = {
        PD_KEY("", 0),               /* 0 empty */
        PD_KEY("a\0b", 3),           /* 1 NUL inside */
        PD_KEY("a", 1),              /* 2 */
        PD_KEY(longk, sizeof longk), /* 3 10000 bytes with a NUL */
        PD_KEY("a/b", 3),            /* 4 */
        PD_KEY_TUPLE(ab, 2),         /* 5 ('a', 'b') */
        PD_KEY("../x", 4),           /* 6 */
        PD_KEY("\xff\xfe", 2),       /* 7 not UTF-8 */
        PD_KEY_TUPLE(e2, 2),         /* 8 ('', '') */
        PD_KEY("\x01", 1),           /* 9 looks like a tuple tag */
    };
    size_t nk = sizeof keys / sizeof keys[0];
    for (size_t i = 0; i < nk; i++) {
        char v[32];
        int len = snprintf(v, sizeof v, "v%zu", i);
        tu_append1(d, keys[i], v, (size_t)len);
    }
    ck_assert_uint_eq(tu_nkeys(d), nk);
    for (size_t i = 0; i < nk; i++) {
        char v[32];
        snprintf(v, sizeof v, "v%zu", i);
        tu_expect_str(d, keys[i], v);
        ck_assert_int_eq(tu_listed_size(d, keys[i]), (long long)strlen(v));
    }
    /* ('a',) is the key 'a'; ('',) is the empty key. */
    tu_append1(d, PD_KEY_TUPLE(a1, 1), "+", 1);
    tu_expect_str(d, keys[2], "v2+");
    tu_append1(d, PD_KEY_TUPLE(e1, 1), "+", 1);
    tu_expect_str(d, keys[0], "v0+");
    ck_assert_uint_eq(tu_nkeys(d), nk);
    /* Listed keys come back as the same keys (tuples as tuples). */
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(d, &kl, 0), d);
    size_t tuples = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        ck_assert_int_eq(pd_keylist_key(kl, i, &k), 0);
        if (k.nparts) tuples++;
        size_t len = 0;
        char *got = tu_get1(d, &k, &len);
        ck_assert_uint_eq(len, pd_keylist_size(kl, i));
        free(got);
    }
    ck_assert_uint_eq(tuples, 2);
    pd_keylist_free(&kl);
    /* Deleting the tuple leaves "a/b". */
    TU_OK(pd_delete(d, 1, &keys[5], 0), d);
    tu_expect_str(d, keys[5], "");
    tu_expect_str(d, keys[4], "v4");
    pd_close(&d);
}
END_TEST

START_TEST(duplicates_in_batch) {
    pd_store *d = tu_dict();
    pd_key k[5] = {PD_KEY_STR("a"), PD_KEY_STR("b"), PD_KEY_STR("a"),
                   PD_KEY_STR("a"), PD_KEY_STR("b")};
    pd_bytes v[5] = {{"1", 1}, {"x", 1}, {"22", 2}, {"333", 3}, {"yy", 2}};
    TU_OK(pd_append(d, 5, k, v, 0), d);
    tu_expect_str(d, k[0], "122333");
    tu_expect_str(d, k[1], "xyy");
    ck_assert_uint_eq(pd_dict_nbytes(d), 9);
    /* get with a repeated key returns it twice. */
    pd_result *r = NULL;
    TU_OK(pd_get(d, 3, k, &r, 0), d);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 6);
    ck_assert_uint_eq(pd_result_value(r, 2).size, 6);
    pd_result_free(&r);
    pd_close(&d);
}
END_TEST

START_TEST(iset_semantics) {
    pd_store *d = tu_dict();
    pd_key k = PD_KEY_STR("k"), j = PD_KEY_STR("j");
    pd_bytes v1 = {"one", 3}, v2 = {"two", 3};
    /* set replaces what append put there. */
    tu_append1(d, k, "old-content", 11);
    TU_OK(pd_iset(d, 1, &k, &v1, 0), d);
    tu_expect_str(d, k, "one");
    ck_assert_uint_eq(pd_dict_nbytes(d), 3);
    /* Idempotent: a second iset of the same key does nothing. */
    TU_OK(pd_iset(d, 1, &k, &v2, 0), d);
    tu_expect_str(d, k, "one");
    /* Appends still work after it. */
    tu_append1(d, k, "+", 1);
    tu_expect_str(d, k, "one+");
    /* Within one batch the first value wins. */
    pd_key kk[2] = {j, j};
    pd_bytes vv[2] = {{"first", 5}, {"second", 6}};
    TU_OK(pd_iset(d, 2, kk, vv, 0), d);
    tu_expect_str(d, j, "first");
    /* An empty value sets an empty key. */
    pd_key e = PD_KEY_STR("empty");
    pd_bytes ev = {NULL, 0};
    TU_OK(pd_iset(d, 1, &e, &ev, 0), d);
    ck_assert_int_eq(tu_listed_size(d, e), 0);
    /* drop forgets the memo. */
    TU_OK(pd_drop(d, 0), d);
    ck_assert_uint_eq(tu_nkeys(d), 0);
    TU_OK(pd_iset(d, 1, &k, &v2, 0), d);
    tu_expect_str(d, k, "two");
    /* The set op itself (no memo) replaces every time, repeated key: last
     * wins. */
    pthread_mutex_lock(&d->mu);
    ck_assert_int_eq(d->ops->set(d, 2, kk, vv, PD_NOLOCK), 0);
    pthread_mutex_unlock(&d->mu);
    tu_expect_str(d, j, "second");
    pd_close(&d);
}
END_TEST

START_TEST(delete_and_drop) {
    pd_store *d = tu_dict();
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        tu_append1(d, PD_KEY_STR(k), "12345", 5);
    }
    ck_assert_uint_eq(pd_dict_nbytes(d), 500);
    pd_key del[3] = {PD_KEY_STR("k1"), PD_KEY_STR("missing"), PD_KEY_STR("k2")};
    TU_OK(pd_delete(d, 3, del, 0), d);
    TU_OK(pd_delete(d, 3, del, 0), d); /* again: missing keys are fine */
    ck_assert_uint_eq(pd_dict_nbytes(d), 490);
    ck_assert_uint_eq(tu_nkeys(d), 98);
    tu_expect_str(d, del[0], "");
    tu_expect_str(d, PD_KEY_STR("k3"), "12345");
    /* A deleted key starts afresh. */
    tu_append1(d, del[0], "new", 3);
    tu_expect_str(d, del[0], "new");
    TU_OK(pd_drop(d, 0), d);
    ck_assert_uint_eq(pd_dict_nbytes(d), 0);
    ck_assert_uint_eq(tu_nkeys(d), 0);
    tu_expect_str(d, PD_KEY_STR("k3"), "");
    /* Usable after drop. */
    tu_append1(d, del[0], "again", 5);
    tu_expect_str(d, del[0], "again");
    pd_close(&d);
}
END_TEST

START_TEST(keys_and_sizes) {
    pd_store *d = tu_dict();
    ck_assert_uint_eq(tu_nkeys(d), 0);
    pd_bytes parts[3] = {{"x", 1}, {"\0", 1}, {"", 0}};
    pd_key tk = PD_KEY_TUPLE(parts, 3);
    tu_append1(d, tk, "abc", 3);
    tu_append1(d, tk, "de", 2);
    tu_append1(d, PD_KEY_STR("flat"), "1", 1);
    ck_assert_int_eq(tu_listed_size(d, tk), 5);
    ck_assert_int_eq(tu_listed_size(d, PD_KEY_STR("flat")), 1);
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(d, &kl, 0), d);
    ck_assert_uint_eq(pd_keylist_count(kl), 2);
    bool seen_tuple = false;
    for (size_t i = 0; i < 2; i++) {
        pd_key k;
        ck_assert_int_eq(pd_keylist_key(kl, i, &k), 0);
        if (k.nparts == 3) {
            seen_tuple = true;
            ck_assert_uint_eq(k.parts[1].size, 1);
            ck_assert_int_eq(((const char *)k.parts[1].data)[0], 0);
            ck_assert_uint_eq(k.parts[2].size, 0);
        }
    }
    ck_assert(seen_tuple);
    pd_keylist_free(&kl);
    pd_close(&d);
}
END_TEST

START_TEST(nomem_append_is_atomic) {
    pd_store *d = tu_dict();
    pd_key a = PD_KEY_STR("a"), b = PD_KEY_STR("b");
    tu_append1(d, a, "x", 1);
    tu_append1(d, b, "b0", 2);
    uint64_t nb0 = pd_dict_nbytes(d);
    static char src[4096];
    memset(src, 'S', sizeof src);
    size_t huge = (size_t)1 << 62;

    /* A new key fails after others were appended to (one of them twice,
     * into the free room of its last chunk) and a key was created. */
    pd_key k1[5] = {a, PD_KEY_STR("created"), a, b, PD_KEY_STR("huge")};
    pd_bytes v1[5] = {{"yy", 2}, {"n", 1}, {"zz", 2}, {"b1", 2}, {src, huge}};
    int rc = pd_append(d, 5, k1, v1, 0);
    ck_assert_int_eq(rc, PD_ERR_NOMEM);
    ck_assert_int_eq(pd_errcode(d), PD_ERR_NOMEM);
    ck_assert_msg(strstr(pd_errmsg(d), "dict: append 'huge'") != NULL, "%s",
                  pd_errmsg(d));
    tu_expect_str(d, a, "x");
    tu_expect_str(d, b, "b0");
    ck_assert_int_eq(tu_listed_size(d, PD_KEY_STR("created")), -1);
    ck_assert_int_eq(tu_listed_size(d, PD_KEY_STR("huge")), -1);
    ck_assert_uint_eq(tu_nkeys(d), 2);
    ck_assert_uint_eq(pd_dict_nbytes(d), nb0);

    /* The failing value goes to an existing key with room in its last
     * chunk: the part copied into that room is undone too. */
    pd_key k2[2] = {a, a};
    pd_bytes v2[2] = {{"q", 1}, {src, huge}};
    ck_assert_int_eq(pd_append(d, 2, k2, v2, 0), PD_ERR_NOMEM);
    tu_expect_str(d, a, "x");
    ck_assert_uint_eq(pd_dict_nbytes(d), nb0);

    /* set: atomic too. */
    pthread_mutex_lock(&d->mu);
    pd_key k3[2] = {b, PD_KEY_STR("new")};
    pd_bytes v3[2] = {{"B", 1}, {src, huge}};
    ck_assert_int_eq(d->ops->set(d, 2, k3, v3, PD_NOLOCK), PD_ERR_NOMEM);
    pthread_mutex_unlock(&d->mu);
    tu_expect_str(d, b, "b0");
    ck_assert_int_eq(tu_listed_size(d, PD_KEY_STR("new")), -1);

    /* Still fully usable. */
    tu_append1(d, a, "+", 1);
    tu_expect_str(d, a, "x+");
    pd_close(&d);
}
END_TEST

START_TEST(misuse) {
    ck_assert_uint_eq(pd_dict_nbytes(NULL), 0);
    pd_store *d = tu_dict();
    pd_key k = PD_KEY_STR("k");
    pd_bytes v = {NULL, 3};
    ck_assert_int_eq(pd_append(d, 1, &k, &v, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_append(d, 1, NULL, &v, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_append(d, 1, &k, &v, 0x80), PD_ERR_MISUSE);
    static char toolong[PD_KEY_MAX + 1];
    pd_key kl = PD_KEY(toolong, sizeof toolong);
    pd_bytes ok = {"x", 1};
    ck_assert_int_eq(pd_append(d, 1, &kl, &ok, 0), PD_ERR_LIMIT);
    ck_assert_uint_eq(tu_nkeys(d), 0);
    /* Largest allowed key works. */
    pd_key kmax = PD_KEY(toolong, PD_KEY_MAX);
    tu_append1(d, kmax, "x", 1);
    tu_expect_str(d, kmax, "x");
    pd_close(&d);
    ck_assert_int_eq(pd_close(&d), 0); /* NULL: fine */
}
END_TEST

/* ---------------------------------------------------------------- Threads */

#define S_THREADS 4
#define S_ROUNDS 5000

START_TEST(threads) {
    pd_store *d = tu_dict();
    tu_threads_own_shared(d, S_THREADS, S_ROUNDS);
    ck_assert_uint_eq(pd_dict_nbytes(d), 2u * S_THREADS * S_ROUNDS * 9);
    pd_close(&d);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"roundtrip", roundtrip},
        {"large_and_many", large_and_many},
        {"hostile_keys", hostile_keys},
        {"duplicates_in_batch", duplicates_in_batch},
        {"iset_semantics", iset_semantics},
        {"delete_and_drop", delete_and_drop},
        {"keys_and_sizes", keys_and_sizes},
        {"nomem_append_is_atomic", nomem_append_is_atomic},
        {"misuse", misuse},
        {"threads", threads},
    };
    return TU_RUN_CASES("test_dict_store", cases, 120, 0);
}
