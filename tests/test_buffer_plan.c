/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Buffer: the spill plan of an append (pd__buffer_plan) chooses what
 * partd's rounds choose: `while usage > limit: flush(keys_to_flush(...))`,
 * each round over the keys left, computed here round by round with
 * pd__buffer_keys_to_flush and compared key for key.
 */
#include "bufix.h"

#include <inttypes.h>

/* The rounds as partd runs them: marks the chosen entries `stamp` and
 * returns them in insertion order in out. */
static size_t s_rounds(pd__buffer *b, uint64_t stamp, pd__bcount **out) {
    size_t n = b->counts.count, m = 0;
    uint64_t *sz = calloc(n + 1, sizeof *sz);
    pd__bcount **node = calloc(n + 1, sizeof *node);
    ck_assert_ptr_nonnull(sz);
    ck_assert_ptr_nonnull(node);
    uint64_t usage = b->usage;
    while (usage > b->limit) {
        size_t k = 0;
        for (pd__knode *kn = b->counts.head; kn; kn = kn->next) {
            pd__bcount *e = (pd__bcount *)kn;
            if (e->mark == stamp) continue;
            node[k] = e;
            sz[k++] = e->bytes;
        }
        if (k == 0) break;
        size_t idx[PD__BUFFER_MAXCOUNT];
        size_t c = pd__buffer_keys_to_flush(sz, k, PD__BUFFER_FRACTION,
                                            PD__BUFFER_MAXCOUNT, idx);
        for (size_t j = 0; j < c; j++) {
            node[idx[j]]->mark = stamp;
            usage -= node[idx[j]]->bytes;
        }
    }
    for (pd__knode *kn = b->counts.head; kn; kn = kn->next)
        if (((pd__bcount *)kn)->mark == stamp) out[m++] = (pd__bcount *)kn;
    free(sz);
    free(node);
    return m;
}

/* Random keys and sizes (many ties when `span` is small), then limits
 * from just under the usage down to nothing: the plan is the rounds'. */
static void s_compare(unsigned seed, size_t nkeys, uint64_t span) {
    srand(seed);
    pd_store *fast = NULL, *slow = NULL, *s = NULL;
    TU_OK(pd_dict_open(&fast), NULL);
    TU_OK(pd_dict_open(&slow), NULL);
    TU_OK(pd_buffer_open(&s, &fast, &slow, UINT64_MAX / 2, 0), NULL);
    static char val[4096];
    char name[32];
    for (size_t i = 0; i < nkeys; i++) {
        snprintf(name, sizeof name, "k%zu", i);
        pd_key k = PD_KEY_STR(name);
        pd_bytes v = PD_BYTES(val, 1 + (size_t)rand() % span);
        TU_OK(pd_append(s, 1, &k, &v, 0), s);
    }
    /* Some keys grow again, out of insertion order. */
    for (size_t i = 0; i < nkeys / 3; i++) {
        snprintf(name, sizeof name, "k%zu", (size_t)rand() % nkeys);
        pd_key k = PD_KEY_STR(name);
        pd_bytes v = PD_BYTES(val, 1 + (size_t)rand() % span);
        TU_OK(pd_append(s, 1, &k, &v, 0), s);
    }
    pd__buffer *b = (pd__buffer *)s;
    uint64_t usage = b->usage, limit0 = b->limit;
    pd__bcount **want = calloc(nkeys + 1, sizeof *want);
    ck_assert_ptr_nonnull(want);
    const uint64_t limits[] = {
        usage - 1, usage * 9 / 10, usage / 2, usage / 7, 1, 0};
    for (size_t t = 0; t < sizeof limits / sizeof limits[0]; t++) {
        if (limits[t] >= usage) continue;
        b->limit = limits[t];
        size_t wm = s_rounds(b, ++b->mark, want), m = 0;
        TU_OK(pd__buffer_plan(b, ++b->mark, &m), s);
        ck_assert_uint_eq(m, wm);
        for (size_t j = 0; j < m; j++)
            ck_assert_msg(b->selnode[j] == want[j],
                          "seed %u, %zu keys, limit %" PRIu64
                          ": choice %zu differs",
                          seed, nkeys, limits[t], j);
    }
    b->limit = limit0;
    free(want);
    TU_OK(pd_close(&s), NULL);
}

START_TEST(plan_is_partds_rounds) {
    s_compare(1, 1, 10);
    s_compare(2, 2, 10);
    s_compare(3, 3, 1);
    s_compare(4, 41, 3);  /* ties everywhere */
    s_compare(5, 100, 1); /* all equal */
    s_compare(6, 500, 4000);
    s_compare(7, 3000, 50); /* many rounds of 20 */
    for (unsigned seed = 10; seed < 30; seed++)
        s_compare(seed, 1 + (size_t)seed * 37, 1 + seed * seed);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"plan_is_partds_rounds", plan_is_partds_rounds},
    };
    return TU_RUN_CASES("test_buffer_plan", cases, 300, 0);
}
