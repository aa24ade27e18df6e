/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The extent arrays of a Log handle's index (src/log/extents.c): growth
 * keeps every extent and a power-of-2 capacity at most twice what is held,
 * across the pooled sizes into malloc'd ones (a key with thousands of
 * extents); an array given back serves the next of its size; many keys of
 * one extent cost one 40-byte array each; a slab emptied is unmapped (one
 * kept); trimming (set, delete) gives arrays back; a reset frees
 * everything.  Through the index: keys growing in step record after record
 * hold their arrays and about one more slab per size, no trail of the
 * smaller arrays they outgrew.
 */
#include "logidxfix.h"

/* Extent i of a key, recognisably. */
static lg_ext s_ext(uint32_t key, uint32_t i) {
    return (lg_ext){i + 1, (uint64_t)key << 32 | i, i * 3u, ~(uint64_t)i, key,
                    0};
}

static void s_push(lg_xpool *p, lg_key *k, uint32_t key) {
    if (k->n == k->cap) TU_OK(lg_ext_grow(p, k, k->n + 1), NULL);
    k->ext[k->n] = s_ext(key, k->n);
    k->n++;
}

static void s_check(const lg_key *k, uint32_t key) {
    for (uint32_t i = 0; i < k->n; i++) {
        lg_ext want = s_ext(key, i);
        ck_assert_msg(!memcmp(&k->ext[i], &want, sizeof want),
                      "key %u extent %u of %u", key, i, k->n);
    }
    if (k->n) {
        ck_assert_uint_eq(k->cap & (k->cap - 1), 0);
        ck_assert_uint_ge(k->cap, k->n);
        ck_assert_uint_le(k->cap, 2 * k->n);
    }
}

/* Arrays of capacity cap a slab holds. */
static uint64_t s_per_slab(uint32_t cap) {
    return (LG_XSLAB - 64) / (cap * sizeof(lg_ext));
}

START_TEST(growth) {
    lg_xpool p = {0};
    lg_key a = {0}, b = {0};
    for (uint32_t i = 0; i < 5000; i++) {
        uint32_t acap = a.cap, bcap = b.cap;
        s_push(&p, &a, 1);
        if (i % 3 == 0) s_push(&p, &b, 2); /* interleaved with another */
        if (a.cap != acap) s_check(&a, 1); /* moved: all still there */
        if (b.cap != bcap) s_check(&b, 2);
    }
    s_check(&a, 1);
    s_check(&b, 2);
    ck_assert_uint_eq(a.cap, 8192);
    ck_assert_uint_eq(p.big_bytes, (8192 + 2048) * sizeof(lg_ext));
    /* A direct request: at least twice the capacity. */
    lg_key c = {0};
    TU_OK(lg_ext_grow(&p, &c, 3), NULL);
    ck_assert_uint_eq(c.cap, 4);
    TU_OK(lg_ext_grow(&p, &c, 5), NULL);
    ck_assert_uint_eq(c.cap, 8);
    TU_OK(lg_ext_grow(&p, &c, 4), NULL); /* room already */
    ck_assert_uint_eq(c.cap, 8);
    ck_assert_int_eq(lg_ext_grow(&p, &c, UINT32_MAX), PD_ERR_NOMEM);
    ck_assert_uint_eq(c.cap, 8);
    lg_ext_release(&p, &a);
    lg_ext_release(&p, &b);
    ck_assert_ptr_null(a.ext);
    ck_assert_uint_eq(a.cap + a.n, 0);
    ck_assert_uint_eq(p.big_bytes, 0);
    lg_xpool_free(&p);
    ck_assert_uint_eq(p.slab_bytes + p.used_bytes, 0);
}
END_TEST

/* Many keys of one extent each: 40 bytes a key, in slabs. */
START_TEST(many_keys) {
    enum { N = 300000 };
    lg_xpool p = {0};
    lg_key *ks = calloc(N, sizeof *ks);
    ck_assert_ptr_nonnull(ks);
    for (uint32_t i = 0; i < N; i++) s_push(&p, &ks[i], i);
    uint64_t per = s_per_slab(1);
    ck_assert_uint_eq(p.slab_bytes, (N + per - 1) / per * LG_XSLAB);
    ck_assert_uint_eq(p.used_bytes, N * sizeof(lg_ext));
    for (uint32_t i = 0; i < N; i += 997) s_check(&ks[i], i);
    /* Given back, all but the spare slab are unmapped. */
    for (uint32_t i = 0; i < N; i++) lg_ext_release(&p, &ks[i]);
    ck_assert_uint_eq(p.used_bytes, 0);
    ck_assert_uint_eq(p.slab_bytes, LG_XSLAB);
    lg_xpool_free(&p);
    ck_assert_uint_eq(p.slab_bytes, 0);
    free(ks);
}
END_TEST

/* An array given back serves the next of its capacity (its slab's free
 * list first, then its slab kept empty). */
START_TEST(reuse) {
    lg_xpool p = {0};
    lg_key a = {0}, b = {0}, c = {0}, d = {0};
    s_push(&p, &a, 1);
    s_push(&p, &b, 2);
    s_push(&p, &c, 3);
    lg_ext *bx = b.ext;
    lg_ext_release(&p, &b);
    s_push(&p, &d, 4);
    ck_assert_ptr_eq(d.ext, bx);
    ck_assert_uint_eq(p.slab_bytes, LG_XSLAB);
    /* a grows: its array of one back on the list, then to the next key. */
    lg_ext *ax = a.ext;
    s_push(&p, &a, 1);
    ck_assert_ptr_ne(a.ext, ax);
    s_push(&p, &b, 2);
    ck_assert_ptr_eq(b.ext, ax);
    ck_assert_uint_eq(p.used_bytes, 5 * sizeof(lg_ext));
    /* A slab emptied is kept, and serves another capacity. */
    lg_key e = {0};
    for (int i = 0; i < 4; i++) s_push(&p, &e, 5); /* a slab of 4s */
    uint64_t slabs = p.slab_bytes;
    lg_ext_release(&p, &a); /* the 2s' slab empties: the spare */
    ck_assert_uint_eq(p.slab_bytes, slabs);
    s_push(&p, &e, 5); /* an 8: the spare */
    ck_assert_uint_eq(p.slab_bytes, slabs);
    s_check(&b, 2);
    s_check(&c, 3);
    s_check(&d, 4);
    s_check(&e, 5);
    lg_xpool_free(&p);
}
END_TEST

/* lg_ext_fit: an empty array goes back, one used to a quarter or less
 * moves to the capacity its extents need; otherwise it stays. */
START_TEST(fit) {
    lg_xpool p = {0};
    lg_key k = {0};
    for (uint32_t i = 0; i < 3000; i++) s_push(&p, &k, 7);
    ck_assert_uint_eq(k.cap, 4096);
    k.n = 1100; /* more than a quarter: stays */
    lg_ext_fit(&p, &k);
    ck_assert_uint_eq(k.cap, 4096);
    k.n = 1000;
    lg_ext_fit(&p, &k);
    ck_assert_uint_eq(k.cap, 1024);
    ck_assert_uint_eq(p.big_bytes, 1024 * sizeof(lg_ext));
    s_check(&k, 7);
    k.n = 3;
    lg_ext_fit(&p, &k);
    ck_assert_uint_eq(k.cap, 4);
    ck_assert_uint_eq(p.big_bytes, 0);
    s_check(&k, 7);
    k.n = 0;
    lg_ext_fit(&p, &k);
    ck_assert_ptr_null(k.ext);
    ck_assert_uint_eq(k.cap, 0);
    ck_assert_uint_eq(p.used_bytes, 0);
    ck_assert_uint_le(p.slab_bytes, LG_XSLAB);
    lg_xpool_free(&p);
}
END_TEST

/* ------------------------------------------------- Through the index */

/* Applies a record of type over keys "k<first>".."k<first+n-1>". */
static void s_apply(lg_store *l, pd__buf *b, unsigned type, uint64_t seq,
                    int first, int n, uint64_t *off) {
    pd_key *ks = calloc((size_t)n, sizeof *ks);
    pd_bytes *vs = calloc((size_t)n, sizeof *vs);
    char(*names)[16] = calloc((size_t)n, sizeof *names);
    ck_assert(ks && vs && names);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "k%d", first + i);
        ks[i] = K(names[i]);
        vs[i] = type == LG_DELETE ? PD_BYTES(NULL, 0) : V("value");
    }
    pd__buf_clear(b);
    TU_OK(lg_rec_build(b, type, seq, (size_t)n, ks, vs), NULL);
    lg_hdr h;
    ck_assert_int_eq(lg_hdr_parse(b->p, &h), 0);
    TU_OK(lg_index_rec(l, 0, *off, &h, b->p + LG_HDR), NULL);
    *off += lg_rec_len(&h);
    free(ks);
    free(vs);
    free(names);
}

static const lg_key *s_find(lg_store *l, int i) {
    char nm[16];
    snprintf(nm, sizeof nm, "k%d", i);
    pd_key k = K(nm);
    return lg_find(l, &k);
}

/* Keys in step record after record: every key's extents in order, the
 * slabs within the arrays' bytes plus about a slab per capacity; one key
 * of 3,000 extents; a set leaves each key one extent in an array of one
 * and the slabs of the larger arrays unmapped; a delete none. */
START_TEST(index_memory) {
    enum { NKEYS = 5000, NREC = 40 };
    lg_store *l = s_index_new();
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    uint64_t off = 0, seq = 1;
    for (int r = 0; r < NREC; r++)
        s_apply(l, &b, LG_APPEND, seq++, 0, NKEYS, &off);
    uint64_t caps = 0;
    for (int i = 0; i < NKEYS; i++) {
        const lg_key *k = s_find(l, i);
        ck_assert_ptr_nonnull(k);
        ck_assert_uint_eq(k->n, NREC);
        ck_assert_uint_eq(k->cap, 64);
        for (uint32_t j = 0; j < k->n; j++)
            ck_assert_uint_eq(k->ext[j].seq, j + 1);
        caps += k->cap * sizeof(lg_ext);
    }
    const lg_xpool *p = &l->xp;
    ck_assert_uint_eq(p->used_bytes, caps);
    uint64_t full = (NKEYS + s_per_slab(64) - 1) / s_per_slab(64);
    ck_assert_uint_le(p->slab_bytes, (full + 2) * LG_XSLAB);
    /* One key, thousands of records. */
    for (int r = 0; r < 3000; r++)
        s_apply(l, &b, LG_APPEND, seq++, NKEYS, 1, &off);
    const lg_key *big = s_find(l, NKEYS);
    ck_assert_uint_eq(big->n, 3000);
    ck_assert_uint_eq(big->cap, 4096);
    ck_assert_uint_eq(p->big_bytes, 4096 * sizeof(lg_ext));
    for (uint32_t j = 0; j < big->n; j++)
        ck_assert_uint_eq(big->ext[j].seq, NREC + 1 + j);
    /* A set of every key: one extent each, in an array of one. */
    s_apply(l, &b, LG_SET, seq++, 0, NKEYS + 1, &off);
    for (int i = 0; i <= NKEYS; i++) {
        const lg_key *k = s_find(l, i);
        ck_assert_uint_eq(k->n, 1);
        ck_assert_uint_eq(k->cap, 1);
        ck_assert_uint_eq(k->ext[0].seq, seq - 1);
    }
    ck_assert_uint_eq(p->big_bytes, 0);
    ck_assert_uint_eq(p->used_bytes, (NKEYS + 1) * sizeof(lg_ext));
    ck_assert_uint_le(p->slab_bytes, 2 * LG_XSLAB);
    /* A delete: none. */
    s_apply(l, &b, LG_DELETE, seq++, 0, NKEYS + 1, &off);
    for (int i = 0; i <= NKEYS; i++) {
        const lg_key *k = s_find(l, i);
        ck_assert_uint_eq(k->n + k->cap, 0);
        ck_assert_ptr_null(k->ext);
    }
    ck_assert_uint_eq(l->live_bytes, 0);
    ck_assert_uint_eq(p->used_bytes, 0);
    ck_assert_uint_le(p->slab_bytes, LG_XSLAB);
    /* A reset frees it all, and the index works again. */
    lg_index_reset(l);
    ck_assert_uint_eq(p->slab_bytes + p->big_bytes, 0);
    l->nsegs = 1;
    s_apply(l, &b, LG_APPEND, seq++, 0, 10, &off);
    ck_assert_uint_eq(s_find(l, 9)->n, 1);
    s_index_free(l);
    pd__buf_free(&b);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"growth", growth, 0},
        {"many_keys", many_keys, 0},
        {"reuse", reuse, 0},
        {"fit", fit, 0},
        {"index_memory", index_memory, 0},
    };
    return TU_RUN_CASES("test_log_extents", cases, 300, 0);
}
