/* Dict: the in-memory store. */
#include "testutil.h"
#include "dict/arena.h"
#include "dict/dict.h"
#include "core/ktab.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

/* The NOMEM tests ask malloc for 2^62 bytes; under AddressSanitizer that
 * must return NULL instead of aborting. */
__attribute__((visibility("default"), used)) const char *
__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}

__attribute__((visibility("default"), used)) const char *
__tsan_default_options(void);
const char *__tsan_default_options(void) {
    return "allocator_may_return_null=1";
}

static pd_store *s_open(void) {
    pd_store *d = NULL;
    ck_assert_int_eq(pd_dict_open(&d), 0);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(pd_store_kind(d), "dict");
    return d;
}

/* ------------------------------------------------------------------ Tests */

START_TEST(roundtrip) {
    pd_store *d = s_open();
    pd_key ka = PD_KEY_STR("a"), kb = PD_KEY_STR("b");
    tu_append1(d, ka, "Hello ", 6);
    tu_append1(d, kb, "x", 1);
    tu_append1(d, ka, "World!", 6);
    tu_expect_str(d, ka, "Hello World!");
    tu_expect_str(d, kb, "x");
    tu_expect_str(d, PD_KEY_STR("missing"), "");
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
    pd_store *d = s_open();
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
    pd_store *d = s_open();
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
    pd_store *d = s_open();
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
    pd_store *d = s_open();
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
    pd_store *d = s_open();
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
    pd_store *d = s_open();
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
    pd_store *d = s_open();
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
    pd_store *d = s_open();
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
    pd_store *d = s_open();
    tu_threads_own_shared(d, S_THREADS, S_ROUNDS);
    ck_assert_uint_eq(pd_dict_nbytes(d), 2u * S_THREADS * S_ROUNDS * 9);
    pd_close(&d);
}
END_TEST

/* ------------------------------------------------------------- Key index */

/* The index itself with forced hashes: every node in one cluster (all the
 * same hash, or two homes that overlap, wrapping around the end), removed
 * in an order that exercises the backward shift; the insertion order list
 * survives removals and the table grows and shrinks. */
typedef struct t_node {
    pd__knode kn;
    unsigned char pk[8];
} t_node;

static void s_ktab_check(pd__ktab *t, t_node *nodes, const bool *in, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        pd_key k = PD_KEY(nodes[i].pk + 1, nodes[i].kn.klen - 1);
        pd__knode *got = pd__ktab_find(t, &k, nodes[i].kn.hash);
        ck_assert_msg(got == (in[i] ? &nodes[i].kn : NULL), "node %zu", i);
        count += in[i];
    }
    ck_assert_uint_eq(t->count, count);
    /* The order list holds exactly the members, in index order. */
    size_t last = 0, seen = 0;
    for (pd__knode *kn = t->head; kn; kn = kn->next) {
        size_t i = (size_t)((t_node *)kn - nodes);
        ck_assert(in[i]);
        ck_assert(seen == 0 || i > last);
        last = i;
        seen++;
    }
    ck_assert_uint_eq(seen, count);
}

START_TEST(ktab_collisions) {
    enum { N = 200 };
    static t_node nodes[N];
    static bool in[N];
    for (int mode = 0; mode < 3; mode++) {
        pd__ktab t = {0};
        memset(in, 0, sizeof in);
        for (size_t i = 0; i < N; i++) {
            t_node *nd = &nodes[i];
            memset(nd, 0, sizeof *nd);
            int w = snprintf((char *)nd->pk + 1, sizeof nd->pk - 1, "%zu", i);
            nd->kn.pk = nd->pk;
            nd->kn.klen = (size_t)w + 1;
            /* 0: one hash; 1: two homes near the table's end (wraps);
             * 2: the real hash. */
            pd_key k = PD_KEY(nd->pk + 1, (size_t)w);
            nd->kn.hash = mode == 0   ? 7
                          : mode == 1 ? (i % 2 ? 1021 : 1022) + (i % 3)
                                      : pd__khash(&k);
            ck_assert_int_eq(pd__ktab_insert(&t, &nd->kn), 0);
            in[i] = true;
        }
        s_ktab_check(&t, nodes, in, N);
        /* Remove every third, then from the middle out, checking each. */
        for (size_t i = 0; i < N; i += 3) {
            pd__ktab_remove(&t, &nodes[i].kn);
            in[i] = false;
            if (i % 30 == 0) s_ktab_check(&t, nodes, in, N);
        }
        s_ktab_check(&t, nodes, in, N);
        for (size_t d = 0; d < N / 2; d++) {
            size_t idx[2] = {N / 2 + d, N / 2 - 1 - d};
            for (int j = 0; j < 2; j++) {
                if (idx[j] >= N || !in[idx[j]]) continue;
                pd__ktab_remove(&t, &nodes[idx[j]].kn);
                in[idx[j]] = false;
            }
            if (d % 10 == 0) s_ktab_check(&t, nodes, in, N);
        }
        s_ktab_check(&t, nodes, in, N);
        ck_assert_uint_eq(t.count, 0);
        ck_assert_ptr_null(t.head);
        /* Reusable after emptying. */
        ck_assert_int_eq(pd__ktab_insert(&t, &nodes[5].kn), 0);
        in[5] = true;
        s_ktab_check(&t, nodes, in, N);
        pd__ktab_reset(&t);
        ck_assert_ptr_null(t.slots);
    }
}
END_TEST

/* Key equality and hashing: a key equals only the key it packs like. */
START_TEST(key_equality) {
    pd_bytes ab[2] = {{"ab", 2}, {"", 0}};
    pd_bytes a_b[2] = {{"a", 1}, {"b", 1}};
    pd_bytes one[1] = {{"ab", 2}};
    pd_bytes three[3] = {{"a", 1}, {"b", 1}, {"", 0}};
    pd_key keys[] = {PD_KEY("ab", 2),      PD_KEY_TUPLE(ab, 2),
                     PD_KEY_TUPLE(a_b, 2), PD_KEY_TUPLE(three, 3),
                     PD_KEY("a", 1),       PD_KEY("", 0)};
    size_t nk = sizeof keys / sizeof keys[0];
    for (size_t i = 0; i < nk; i++) {
        unsigned char pk[64];
        size_t len = pd__key_packed_size(&keys[i]);
        ck_assert_uint_le(len, sizeof pk);
        pd__key_pack(&keys[i], pk);
        for (size_t j = 0; j < nk; j++)
            ck_assert_msg(pd__keq(&keys[j], pk, len) == (i == j), "%zu %zu", i,
                          j);
    }
    /* A 1-tuple is its part. */
    pd_key t1 = PD_KEY_TUPLE(one, 1);
    ck_assert(pd__khash(&t1) == pd__khash(&keys[0]));
    ck_assert(pd__keq(&t1, (const unsigned char *)"\0ab", 3));
    /* Inline comparison at every short length, first and last byte. */
    unsigned char a[40], b[40];
    for (size_t n = 0; n <= sizeof a; n++) {
        memset(a, 'x', sizeof a);
        memset(b, 'x', sizeof b);
        ck_assert(pd__memeq(a, b, n));
        if (n == 0) continue;
        b[0] = 'y';
        ck_assert(!pd__memeq(a, b, n));
        b[0] = 'x';
        b[n - 1] = 'y';
        ck_assert(!pd__memeq(a, b, n));
        b[n - 1] = 'x';
        b[n / 2] = 'y';
        ck_assert(!pd__memeq(a, b, n));
    }
}
END_TEST

/* Many keys in and out of a Dict: the index grows and shrinks, every key
 * keeps its bytes. */
/* Memory is given back at most once per call, and only when a lot was
 * freed: deleting every key in one call trims once, not once per eighth
 * of what remains; small deletes do not trim. */
START_TEST(trim_once_per_call) {
    enum { N = 2048, SZ = 2048 }; /* 4 MiB */
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    static char names[N][16];
    pd_key *keys = malloc(N * sizeof *keys);
    pd_bytes *vals = malloc(N * sizeof *vals);
    char *v = malloc(SZ);
    ck_assert(keys && vals && v);
    memset(v, 'v', SZ);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        keys[i] = PD_KEY_STR(names[i]);
        vals[i] = (pd_bytes){v, SZ};
    }
    TU_OK(pd_append(d, N, keys, vals, 0), d);
    /* 64 KiB freed: far below the threshold */
    TU_OK(pd_delete(d, 32, keys, 0), d);
    ck_assert_uint_eq(pd__dict_trims(d), 0);
    /* everything else in one call: one trim */
    TU_OK(pd_delete(d, N - 32, keys + 32, 0), d);
    ck_assert_uint_eq(pd__dict_trims(d), 1);
    ck_assert_uint_eq(pd_dict_nbytes(d), 0);
    /* again, key by key: each call trims at most once, and only when an
     * eighth of what the Dict held is free */
    TU_OK(pd_append(d, N, keys, vals, 0), d);
    for (int i = 0; i < N; i++) TU_OK(pd_delete(d, 1, &keys[i], 0), d);
    uint64_t t = pd__dict_trims(d) - 1;
    ck_assert_uint_ge(t, 1);
    ck_assert_uint_le(t, 4); /* 1 MiB steps of 4 MiB: not one per key */
    /* iset and drop trim at most once too */
    TU_OK(pd_append(d, N, keys, vals, 0), d);
    uint64_t before = pd__dict_trims(d);
    TU_OK(pd_drop(d, 0), d);
    ck_assert_uint_eq(pd__dict_trims(d), before + 1);
    tu_expect_str(d, keys[0], "");
    free(v);
    free(vals);
    free(keys);
    pd_close(&d);
}
END_TEST

START_TEST(index_churn) {
    pd_store *d = s_open();
    enum { NK = 5000 };
    int nk = tu_under_valgrind() ? NK / 5 : NK;
    char name[32];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < nk; i++) {
            int w = snprintf(name, sizeof name, "key-%d", i);
            tu_append1(d, PD_KEY(name, (size_t)w), name, (size_t)w);
        }
        ck_assert_uint_eq(tu_nkeys(d), (size_t)nk);
        for (int i = 0; i < nk; i += 2) {
            int w = snprintf(name, sizeof name, "key-%d", i);
            pd_key k = PD_KEY(name, (size_t)w);
            TU_OK(pd_delete(d, 1, &k, 0), d);
        }
        for (int i = 0; i < nk; i++) {
            int w = snprintf(name, sizeof name, "key-%d", i);
            size_t len = 0;
            char *got = tu_get1(d, &PD_KEY(name, (size_t)w), &len);
            if (i % 2) {
                ck_assert_uint_eq(len, (size_t)w);
                ck_assert(memcmp(got, name, len) == 0);
            } else {
                ck_assert_uint_eq(len, 0);
            }
            free(got);
        }
        /* Delete the rest: the index shrinks back. */
        for (int i = 1; i < nk; i += 2) {
            int w = snprintf(name, sizeof name, "key-%d", i);
            pd_key k = PD_KEY(name, (size_t)w);
            TU_OK(pd_delete(d, 1, &k, 0), d);
        }
        ck_assert_uint_eq(tu_nkeys(d), 0);
        ck_assert_uint_eq(pd_dict_nbytes(d), 0);
    }
    pd_close(&d);
}
END_TEST

/* ----------------------------------------------------------------- Arena */

static void s_arena_ok(const pd__arena *a) {
    char why[256];
    ck_assert_msg(pd__arena_check(a, why, sizeof why) == 0, "arena: %s", why);
}

/* Every size maps to the smallest class that holds it. */
START_TEST(arena_classes) {
    for (unsigned c = 0; c < PD__ARENA_NCLASS; c++) {
        ck_assert_uint_eq(pd__arena_class_size(c) % 16, 0);
        if (c)
            ck_assert_uint_gt(pd__arena_class_size(c),
                              pd__arena_class_size(c - 1));
    }
    ck_assert_uint_eq(pd__arena_class_size(PD__ARENA_NCLASS - 1),
                      PD__ARENA_MAX);
    for (size_t n = 1; n <= PD__ARENA_MAX; n++) {
        unsigned c = pd__arena_class(n);
        ck_assert_msg(c < PD__ARENA_NCLASS && pd__arena_class_size(c) >= n &&
                          (c == 0 || pd__arena_class_size(c - 1) < n),
                      "size %zu -> class %u", n, c);
    }
}
END_TEST

/* Blocks of every class: aligned, disjoint, reused after a free without
 * mapping more, and given back entirely once all are free. */
START_TEST(arena_blocks) {
    enum { N = 3000 };
    static unsigned char *blk[N];
    static unsigned cls[N];
    pd__arena a;
    pd__arena_init(&a, false);
    ck_assert_ptr_nonnull(pd__arena_alloc(&a, 0));
    pd__arena_fini(&a); /* a block still in use: unmapped all the same */
    ck_assert_uint_eq(pd__arena_mapped(&a), 0);
    uint64_t total = 0;
    for (size_t i = 0; i < N; i++) {
        cls[i] = (unsigned)(i * 7 % PD__ARENA_NCLASS);
        blk[i] = pd__arena_alloc(&a, cls[i]);
        ck_assert_ptr_nonnull(blk[i]);
        ck_assert_uint_eq((uintptr_t)blk[i] % 16, 0);
        memset(blk[i], (int)(i & 0xff), pd__arena_class_size(cls[i]));
        total += pd__arena_class_size(cls[i]);
    }
    ck_assert_uint_eq(a.used, total);
    s_arena_ok(&a);
    uint64_t mapped = pd__arena_mapped(&a);
    ck_assert_uint_ge(mapped, total);
    /* Half freed, then the same classes again: the freed room serves. */
    for (size_t i = 0; i < N; i += 2) pd__arena_free(&a, blk[i]);
    s_arena_ok(&a);
    for (size_t i = 0; i < N; i += 2) {
        blk[i] = pd__arena_alloc(&a, cls[i]);
        ck_assert_ptr_nonnull(blk[i]);
        memset(blk[i], (int)(i & 0xff), pd__arena_class_size(cls[i]));
    }
    ck_assert_uint_eq(pd__arena_mapped(&a), mapped);
    s_arena_ok(&a);
    for (size_t i = 0; i < N; i++) {
        size_t bs = pd__arena_class_size(cls[i]);
        ck_assert_msg(blk[i][0] == (i & 0xff) && blk[i][bs - 1] == (i & 0xff),
                      "block %zu overwritten", i);
    }
    /* All freed: the pages and segments go (a spare segment stays until
     * a trim). */
    for (size_t i = 0; i < N; i++) pd__arena_free(&a, blk[i]);
    ck_assert_uint_eq(a.used, 0);
    ck_assert_uint_eq(a.pages, 0);
    ck_assert_uint_le(pd__arena_mapped(&a), PD__ARENA_SEG);
    s_arena_ok(&a);
    pd__arena_trim(&a, 0);
    ck_assert_uint_eq(pd__arena_mapped(&a), 0);
    ck_assert_uint_eq(a.idle, 0);
    /* Usable again. */
    void *p = pd__arena_alloc(&a, PD__ARENA_NCLASS - 1);
    ck_assert_ptr_nonnull(p);
    memset(p, 1, PD__ARENA_MAX);
    s_arena_ok(&a);
    pd__arena_fini(&a);
    ck_assert_uint_eq(pd__arena_mapped(&a), 0);
}
END_TEST

/* Free pages stay for reuse until a trim gives back all but `keep` bytes
 * of them; a trimmed page serves again. */
START_TEST(arena_trim_keeps) {
    enum { N = 1024 }; /* 16 KiB blocks: 16 MiB, several segments */
    static unsigned char *blk[N];
    const unsigned c = PD__ARENA_NCLASS - 1;
    pd__arena a;
    pd__arena_init(&a, true);
    for (size_t i = 0; i < N; i++) {
        blk[i] = pd__arena_alloc(&a, c);
        ck_assert_ptr_nonnull(blk[i]);
        memset(blk[i], 7, PD__ARENA_MAX);
    }
    uint64_t mapped = pd__arena_mapped(&a);
    ck_assert_uint_ge(mapped, (uint64_t)N * PD__ARENA_MAX);
    /* Every block of the odd pages: those pages are free afterwards. */
    for (size_t i = 0; i < N; i++) {
        uintptr_t off = (uintptr_t)blk[i] & (PD__ARENA_SEG - 1);
        if ((off / PD__ARENA_PAGE) % 2) {
            pd__arena_free(&a, blk[i]);
            blk[i] = NULL;
        }
    }
    s_arena_ok(&a);
    uint64_t idle = a.idle;
    ck_assert_uint_ge(idle, (uint64_t)PD__ARENA_NPAGES / 2 * PD__ARENA_PAGE);
    pd__arena_trim(&a, idle); /* nothing to do */
    ck_assert_uint_eq(a.idle, idle);
    pd__arena_trim(&a, idle / 2);
    ck_assert_uint_le(a.idle, idle / 2);
    ck_assert_uint_ge(a.released, idle / 2);
    s_arena_ok(&a);
    /* The freed pages serve again, trimmed or not: no new segment. */
    for (size_t i = 0; i < N; i++)
        if (!blk[i]) {
            blk[i] = pd__arena_alloc(&a, c);
            ck_assert_ptr_nonnull(blk[i]);
            memset(blk[i], 9, PD__ARENA_MAX);
        }
    ck_assert_uint_eq(pd__arena_mapped(&a), mapped);
    s_arena_ok(&a);
    for (size_t i = 0; i < N; i++) pd__arena_free(&a, blk[i]);
    s_arena_ok(&a);
    pd__arena_fini(&a);
}
END_TEST

/* The sizes of a key's chunks (peek), summed, and their count. */
static size_t s_chunks(pd_store *d, const char *key, size_t *nch,
                       size_t *maxch) {
    pd_key k = PD_KEY_STR(key);
    const pd_bytes *ch = NULL;
    size_t n = 0, sum = 0;
    pthread_mutex_lock(&d->mu);
    ck_assert_int_eq(d->ops->peek(d, &k, &ch, &n), 0);
    *maxch = 0;
    for (size_t i = 0; i < n; i++) {
        sum += ch[i].size;
        if (ch[i].size > *maxch) *maxch = ch[i].size;
    }
    pthread_mutex_unlock(&d->mu);
    *nch = n;
    return sum;
}

/* How a key's bytes are laid out in chunks: small appends fill chunks that
 * grow with the key up to the arena's largest block; a part larger than
 * that, or than 4 KiB and than the key's next chunk, gets a chunk of its
 * own exact size (malloc'd); the rest of a small part goes to the room of
 * the last chunk. */
START_TEST(chunk_policy) {
    pd_store *d = s_open();
    static unsigned char v[200000];
    for (size_t i = 0; i < sizeof v; i++) v[i] = (unsigned char)(i * 31 + 7);
    size_t nch, maxch;
    /* 1 MiB of 100-byte values. */
    pd_key kg = PD_KEY_STR("grow");
    size_t at = 0;
    for (int i = 0; i < 10486; i++, at += 100)
        tu_append1(d, kg, v + at % 100000, 100);
    ck_assert_uint_eq(s_chunks(d, "grow", &nch, &maxch), at);
    ck_assert_uint_le(maxch, PD__ARENA_MAX - 16);
    ck_assert_uint_ge(maxch, 16384); /* about 1/32 of the key */
    ck_assert_uint_ge(nch, at / (PD__ARENA_MAX - 16));
    ck_assert_uint_le(nch, 200);
    /* One large value: one chunk, exact. */
    tu_append1(d, PD_KEY_STR("big"), v, 100000);
    ck_assert_uint_eq(s_chunks(d, "big", &nch, &maxch), 100000);
    ck_assert_uint_eq(nch, 1);
    tu_expect(d, PD_KEY_STR("big"), v, 100000);
    /* 6000 bytes after 10: the first chunk's room, then an exact chunk. */
    tu_append1(d, PD_KEY_STR("mid"), v, 10);
    tu_append1(d, PD_KEY_STR("mid"), v + 10, 6000);
    ck_assert_uint_eq(s_chunks(d, "mid", &nch, &maxch), 6010);
    ck_assert_uint_eq(nch, 2);
    ck_assert_uint_ge(maxch, 5990);
    /* (its room rounded up to whole malloc units takes 5 more) */
    tu_append1(d, PD_KEY_STR("mid"), v + 6010, 5);
    ck_assert_uint_eq(s_chunks(d, "mid", &nch, &maxch), 6015);
    ck_assert_uint_eq(nch, 2);
    tu_expect(d, PD_KEY_STR("mid"), v, 6015);
    /* 3000 bytes: an arena block with room left, which takes 50 more. */
    tu_append1(d, PD_KEY_STR("small"), v, 3000);
    tu_append1(d, PD_KEY_STR("small"), v + 3000, 50);
    ck_assert_uint_eq(s_chunks(d, "small", &nch, &maxch), 3050);
    ck_assert_uint_eq(nch, 1);
    tu_expect(d, PD_KEY_STR("small"), v, 3050);
    /* set: exact chunks, arena or malloc'd; appends continue them. */
    pd_key ks[2] = {PD_KEY_STR("s1"), PD_KEY_STR("s2")};
    pd_bytes vs[2] = {{v, 20000}, {v, 300}};
    pthread_mutex_lock(&d->mu);
    ck_assert_int_eq(d->ops->set(d, 2, ks, vs, PD_NOLOCK), 0);
    pthread_mutex_unlock(&d->mu);
    tu_append1(d, ks[0], v + 20000, 10);
    tu_append1(d, ks[1], v + 300, 10);
    tu_expect(d, ks[0], v, 20010);
    tu_expect(d, ks[1], v, 310);
    s_arena_ok(pd__dict_arena(d));
    /* get returns the chunks' bytes, not the malloc'd marks. */
    pd_key all[6] = {
        kg,   PD_KEY_STR("big"), PD_KEY_STR("mid"), PD_KEY_STR("small"), ks[0],
        ks[1]};
    pd_result *r = NULL;
    TU_OK(pd_get(d, 6, all, &r, 0), d);
    ck_assert_uint_eq(pd_result_total(r),
                      at + 100000 + 6015 + 3050 + 20010 + 310);
    pd_result_free(&r);
    pd_close(&d);
}
END_TEST

/* keys[i] = "k<i>" with vals[i] = v (vlen bytes of 'v'), for i < nk. */
static void s_keys_k(int nk, char (*names)[16], pd_key *keys, pd_bytes *vals,
                     char *v, size_t vlen) {
    memset(v, 'v', vlen);
    for (int i = 0; i < nk; i++) {
        snprintf(names[i], 16, "k%d", i);
        keys[i] = PD_KEY_STR(names[i]);
        vals[i] = (pd_bytes){v, vlen};
    }
}

/* Deletes give the chunk memory back: all of it when the Dict is emptied
 * (delete or drop), and all but an eighth of what it still holds after a
 * large delete. */
START_TEST(memory_returned) {
    enum { NK = 200, PER = 200, V = 100 }; /* 4 MB */
    pd_store *d = s_open();
    const pd__arena *a = pd__dict_arena(d);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_null(pd__dict_arena(NULL));
    static char names[NK][16];
    static pd_key keys[NK];
    static pd_bytes vals[NK];
    static char v[V];
    s_keys_k(NK, names, keys, vals, v, V);
    for (int round = 0; round < 3; round++) {
        for (int j = 0; j < PER; j++) TU_OK(pd_append(d, NK, keys, vals, 0), d);
        ck_assert_uint_eq(pd_dict_nbytes(d), (uint64_t)NK * PER * V);
        ck_assert_uint_ge(a->used, pd_dict_nbytes(d));
        ck_assert_uint_gt(pd__arena_mapped(a), 0);
        s_arena_ok(a);
        if (round == 0) {
            /* Every other key: the rest intact, free pages trimmed to an
             * eighth of what is held. */
            pd_key odd[NK / 2];
            for (int i = 0; i < NK / 2; i++) odd[i] = keys[2 * i + 1];
            TU_OK(pd_delete(d, NK / 2, odd, 0), d);
            ck_assert_uint_le(a->idle, pd_dict_nbytes(d) / 8);
            s_arena_ok(a);
            size_t len = 0;
            char *got = tu_get1(d, &keys[0], &len);
            ck_assert_uint_eq(len, (size_t)PER * V);
            free(got);
            TU_OK(pd_delete(d, NK, keys, 0), d);
        } else if (round == 1) {
            TU_OK(pd_delete(d, NK, keys, 0), d);
        } else {
            TU_OK(pd_drop(d, 0), d);
        }
        ck_assert_uint_eq(pd_dict_nbytes(d), 0);
        ck_assert_uint_eq(a->used, 0);
        ck_assert_uint_eq(pd__arena_mapped(a), 0);
    }
    pd_close(&d);
}
END_TEST

/* A Dict expecting megabytes asks for huge pages from its first segment. */
START_TEST(expect_hint) {
    pd_store *d = s_open();
    const pd__arena *a = pd__dict_arena(d);
    ck_assert(!a->huge_first);
    pd__dict_expect(d, (uint64_t)64 << 20);
    ck_assert(a->huge_first);
    tu_append1(d, PD_KEY_STR("k"), "v", 1);
    tu_expect_str(d, PD_KEY_STR("k"), "v");
    pd__dict_expect(d, 1u << 20);
    ck_assert(!a->huge_first);
    pd__dict_expect(NULL, 1); /* not a Dict: ignored */
    pd_close(&d);
}
END_TEST

/* In a child: the address space capped just above what is in use, batches
 * of appends until one cannot map memory.  It fails whole (PD_ERR_NOMEM,
 * nothing of it kept, the arena consistent), and succeeds once the cap is
 * lifted. */
static int s_arena_oom_child(void *arg) {
    (void)arg;
    enum { NK = 1000, PER = 100, V = 100 };
    static char names[NK][16];
    static pd_key keys[NK];
    static pd_bytes vals[NK];
    static char v[V];
    s_keys_k(NK, names, keys, vals, v, V);
    pd_store *d = NULL;
    TU_CHECK(pd_dict_open(&d) == 0, "open: %s", pd_errmsg(NULL));
    const pd__arena *a = pd__dict_arena(d);
    char why[256];
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    TU_CHECK(f && fscanf(f, "%lu", &pages) == 1, "statm");
    fclose(f);
    size_t used = pages * (size_t)sysconf(_SC_PAGESIZE);
    struct rlimit rl = {used + ((size_t)6 << 20), RLIM_INFINITY};
    TU_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    int rc = 0;
    size_t batch = 0;
    for (; batch < 4000; batch++) {
        size_t at = batch * PER % NK;
        uint64_t before = pd_dict_nbytes(d), used_before = a->used;
        rc = pd_append(d, PER, &keys[at], &vals[at], 0);
        if (rc) {
            TU_CHECK(rc == PD_ERR_NOMEM, "append -> %d: %s", rc, pd_errmsg(d));
            TU_CHECK(pd_dict_nbytes(d) == before, "nbytes changed");
            TU_CHECK(a->used == used_before, "arena use changed");
            TU_CHECK(pd__arena_check(a, why, sizeof why) == 0, "%s", why);
            break;
        }
    }
    TU_CHECK(rc != 0, "no failure under the cap (%zu batches)", batch);
    rl.rlim_cur = RLIM_INFINITY;
    TU_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    size_t at = batch * PER % NK;
    TU_CHECK(pd_append(d, PER, &keys[at], &vals[at], 0) == 0, "retry: %s",
             pd_errmsg(d));
    batch++;
    for (int i = 0; i < NK; i++) {
        size_t want = (batch * PER / NK + ((size_t)i < batch * PER % NK)) * V;
        pd_result *r = NULL;
        TU_CHECK(pd_get(d, 1, &keys[i], &r, 0) == 0, "get: %s", pd_errmsg(d));
        TU_CHECK(pd_result_value(r, 0).size == want,
                 "key %d: %zu bytes, not %zu", i, pd_result_value(r, 0).size,
                 want);
        pd_result_free(&r);
    }
    TU_CHECK(pd__arena_check(a, why, sizeof why) == 0, "%s", why);
    pd_close(&d);
    return 0;
}

START_TEST(nomem_mapping_is_atomic) { tu_oom_child(s_arena_oom_child, NULL); }
END_TEST

int main(void) {
    Suite *s = suite_create("test_dict");
    TCase *tc = tcase_create("dict");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, roundtrip);
    tcase_add_test(tc, large_and_many);
    tcase_add_test(tc, hostile_keys);
    tcase_add_test(tc, duplicates_in_batch);
    tcase_add_test(tc, iset_semantics);
    tcase_add_test(tc, delete_and_drop);
    tcase_add_test(tc, keys_and_sizes);
    tcase_add_test(tc, nomem_append_is_atomic);
    tcase_add_test(tc, misuse);
    tcase_add_test(tc, threads);
    tcase_add_test(tc, ktab_collisions);
    tcase_add_test(tc, key_equality);
    tcase_add_test(tc, index_churn);
    tcase_add_test(tc, trim_once_per_call);
    tcase_add_test(tc, arena_classes);
    tcase_add_test(tc, arena_blocks);
    tcase_add_test(tc, arena_trim_keeps);
    tcase_add_test(tc, chunk_policy);
    tcase_add_test(tc, memory_returned);
    tcase_add_test(tc, expect_hint);
    tcase_add_test(tc, nomem_mapping_is_atomic);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
