/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Dict's key index: collisions, key equality, trimming once per call, and
 * churn.
 */
#include "dictfix.h"

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
    pd_store *d = tu_dict();
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

int main(void) {
    const tu_case cases[] = {
        {"ktab_collisions", ktab_collisions},
        {"key_equality", key_equality},
        {"index_churn", index_churn},
        {"trim_once_per_call", trim_once_per_call},
    };
    return TU_RUN_CASES("test_dict_index", cases, 120, 0);
}
