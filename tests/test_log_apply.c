/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Applying records to a Log handle's index (src/log/apply.c).  An append
 * record is checked as it is applied: one whose key table is malformed
 * (a bad key, a reserved field set, a length past the data or the table,
 * lengths not summing to the data) at its first, a middle or its last
 * entry, or only at the end, fails and leaves the index exactly as it was
 * (keys, extents, floors, byte counts, new keys gone), whether its keys
 * came from the hint or were looked up; the records after it apply as
 * before.  A set or delete is checked whole first.  The same through a
 * store: a hash-valid malformed record in a segment is damage, and a
 * salvaging compaction keeps exactly the other records' data.
 */
#include "logidxfix.h"

enum { NK = 100 }; /* keys of a record (more than the apply queue holds) */

/* ---------------------------------------------------------- Records */

/* Key i of a record: "k<i>", every seventh a 2-tuple ("t", "k<i>"). */
static char s_names[4 * NK][16];
static pd_bytes s_parts[4 * NK][2];

static pd_key s_key(int i) {
    snprintf(s_names[i], sizeof s_names[i], "k%d", i);
    if (i % 7 == 3) {
        s_parts[i][0] = PD_BYTES("t", 1);
        s_parts[i][1] = PD_BYTES(s_names[i], strlen(s_names[i]));
        return (pd_key)PD_KEY_TUPLE(s_parts[i], 2);
    }
    return (pd_key)PD_KEY(s_names[i], strlen(s_names[i]));
}

/* A record of type `type`, sequence number seq, over keys ids[0..n) (the
 * value of key i: "v<seq>.<i>") into b; its header into *h. */
static void s_rec(pd__buf *b, lg_hdr *h, unsigned type, uint64_t seq,
                  const int *ids, int n) {
    pd_key ks[4 * NK];
    pd_bytes vs[4 * NK];
    static char vals[4 * NK][24];
    for (int j = 0; j < n; j++) {
        ks[j] = s_key(ids[j]);
        snprintf(vals[j], sizeof vals[j], "v%llu.%d", (unsigned long long)seq,
                 ids[j]);
        vs[j] = type == LG_DELETE ? PD_BYTES(NULL, 0) : V(vals[j]);
    }
    pd__buf_clear(b);
    TU_OK(lg_rec_build(b, type, seq, (size_t)n, ks, vs), NULL);
    ck_assert_int_eq(lg_hdr_parse(b->p, h), 0);
}

/* Applies the record in b (header h) at offset off of segment 0. */
static int s_apply(lg_store *l, pd__buf *b, const lg_hdr *h, uint64_t off) {
    return lg_index_rec(l, 0, off, h, b->p + LG_HDR);
}

/* ------------------------------------------------- The index, printed */

/* Everything the index holds, as text (compared before and after). */
static char *s_dump(const lg_store *l) {
    pd__buf d;
    pd__buf_init(&d, NULL, 0);
    char line[256];
    snprintf(line, sizeof line, "keys %zu live %llu recs %llu max %llu\n",
             l->keys.count, (unsigned long long)l->live_bytes,
             (unsigned long long)l->rec_bytes, (unsigned long long)l->max_seq);
    TU_OK(pd__buf_str(&d, line), NULL);
    for (const pd__knode *nd = l->keys.head; nd; nd = nd->next) {
        const lg_key *k = (const lg_key *)nd;
        snprintf(line, sizeof line, "key %zu:", nd->klen);
        TU_OK(pd__buf_str(&d, line), NULL);
        TU_OK(pd__buf_add(&d, k->pk, nd->klen), NULL);
        snprintf(line, sizeof line, " floor %llu size %llu n %u\n",
                 (unsigned long long)k->floor, (unsigned long long)k->size,
                 k->n);
        TU_OK(pd__buf_str(&d, line), NULL);
        for (uint32_t i = 0; i < k->n; i++) {
            const lg_ext *x = &k->ext[i];
            snprintf(line, sizeof line, "  %llu %u %llu %llu %llx\n",
                     (unsigned long long)x->seq, x->seg,
                     (unsigned long long)x->off, (unsigned long long)x->len,
                     (unsigned long long)x->hash);
            TU_OK(pd__buf_str(&d, line), NULL);
        }
    }
    TU_OK(pd__buf_add(&d, "", 1), NULL);
    return (char *)d.p;
}

/* The lookups agree with the list (and every key has an extent). */
static void s_consistent(lg_store *l) {
    size_t n = 0;
    for (const pd__knode *nd = l->keys.head; nd; nd = nd->next, n++) {
        const lg_key *k = (const lg_key *)nd;
        pd_key key;
        pd_bytes parts[PD_KEY_MAX_PARTS];
        ck_assert_int_eq(pd__key_unpack(k->pk, nd->klen, &key, parts), 0);
        ck_assert_ptr_eq(lg_find(l, &key), k);
        ck_assert(k->n <= k->cap);
    }
    ck_assert_uint_eq(n, l->keys.count);
}

/* ------------------------------------------------- Malformed tables */

enum bad {
    BAD_PACKING,  /* the key's tag byte is neither 0 nor 1 */
    BAD_RESERVED, /* the reserved word is not 0 */
    BAD_VLEN,     /* a value length past the record's data */
    BAD_PKLEN,    /* a key length past the table */
    BAD_SUM,      /* lengths one short of the data: found at the end */
    NBAD
};

/* Offset in the table of entry j. */
static size_t s_ent_at(const unsigned char *table, int j) {
    size_t at = 0;
    for (int i = 0; i < j; i++)
        at += LG_ENT + ((lg_le32(table + at) + 7) & ~7u);
    return at;
}

static void s_put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Makes entry j of the table in b malformed as `bad` says. */
static void s_break(pd__buf *b, const lg_hdr *h, enum bad bad, int j) {
    unsigned char *t = b->p + LG_HDR;
    unsigned char *e = t + s_ent_at(t, j);
    switch (bad) {
    case BAD_PACKING: e[LG_ENT] = 7; break;
    case BAD_RESERVED: e[4] = 1; break;
    case BAD_VLEN: s_put32(e + 12, 1); break; /* + 2^32 bytes */
    case BAD_PKLEN: s_put32(e, h->table_len); break;
    case BAD_SUM: s_put32(e + 8, lg_le32(e + 8) - 1); break;
    default: ck_abort();
    }
}

/* Two good records over keys 0..NK-1, then, for each malformation at
 * entries 0, 1, 30, 50 and NK-1 of a record that holds the same keys in
 * the same order (hinted), in another order (looked up) or with new keys
 * between them: it fails and the index is as before; a good record after
 * it applies. */
START_TEST(malformed_taken_back) {
    static const int at[] = {0, 1, 30, 50, NK - 1};
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    lg_hdr h;
    int ids[2 * NK];
    for (int shape = 0; shape < 3; shape++) {
        for (int bad = 0; bad < NBAD; bad++) {
            for (size_t p = 0; p < sizeof at / sizeof at[0]; p++) {
                lg_store *l = s_index_new();
                uint64_t off = 0, seq = 1;
                for (int i = 0; i < NK; i++) ids[i] = i;
                for (int r = 0; r < 2; r++) {
                    s_rec(&b, &h, LG_APPEND, seq++, ids, NK);
                    TU_OK(s_apply(l, &b, &h, off), NULL);
                    off += lg_rec_len(&h);
                }
                char *before = s_dump(l);
                int n = NK;
                if (shape == 1) /* reversed: every key looked up */
                    for (int i = 0; i < NK; i++) ids[i] = NK - 1 - i;
                if (shape == 2) { /* a new key after every old one */
                    for (int i = 0; i < NK; i++) {
                        ids[2 * i] = i;
                        ids[2 * i + 1] = NK + i;
                    }
                    n = 2 * NK;
                }
                int j = bad == BAD_SUM ? n - 1 : at[p] * n / NK;
                s_rec(&b, &h, LG_APPEND, seq++, ids, n);
                s_break(&b, &h, (enum bad)bad, j);
                ck_assert_msg(s_apply(l, &b, &h, off) == PD_ERR_CORRUPT,
                              "shape %d bad %d at %d", shape, bad, j);
                off += lg_rec_len(&h);
                char *after = s_dump(l);
                ck_assert_msg(!strcmp(before, after),
                              "shape %d bad %d at %d: the index changed", shape,
                              bad, j);
                s_consistent(l);
                free(after);
                free(before);
                /* The next record applies: every key one more extent. */
                for (int i = 0; i < n; i++) ids[i] = i;
                s_rec(&b, &h, LG_APPEND, seq++, ids, n);
                TU_OK(s_apply(l, &b, &h, off), NULL);
                ck_assert_uint_eq(l->keys.count, (size_t)n);
                for (int i = 0; i < n; i++) {
                    pd_key k = s_key(i);
                    const lg_key *x = lg_find(l, &k);
                    ck_assert_ptr_nonnull(x);
                    ck_assert_uint_eq(x->n, i < NK ? 3 : 1);
                    ck_assert_uint_eq(x->ext[x->n - 1].seq, seq - 1);
                }
                s_consistent(l);
                s_index_free(l);
            }
        }
    }
    pd__buf_free(&b);
}
END_TEST

/* A record applied twice (a catch-up that read it again) adds nothing;
 * malformed sets and deletes are refused whole (checked first). */
START_TEST(again_and_other_types) {
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    lg_hdr h;
    int ids[NK];
    for (int i = 0; i < NK; i++) ids[i] = i;
    lg_store *l = s_index_new();
    s_rec(&b, &h, LG_APPEND, 1, ids, NK);
    TU_OK(s_apply(l, &b, &h, 0), NULL);
    char *once = s_dump(l);
    TU_OK(s_apply(l, &b, &h, 0), NULL);
    char *twice = s_dump(l);
    /* (Only the bytes of records indexed count it twice.) */
    ck_assert_ptr_nonnull(strstr(twice, "\nkey "));
    ck_assert_str_eq(strstr(once, "\nkey "), strstr(twice, "\nkey "));
    free(twice);
    uint64_t off = 2 * lg_rec_len(&h);
    for (unsigned type = LG_SET; type <= LG_DELETE; type++) {
        for (int bad = 0; bad < NBAD; bad++) {
            char *before = s_dump(l);
            s_rec(&b, &h, type, 5, ids, NK);
            s_break(&b, &h, (enum bad)bad, NK / 2);
            ck_assert_int_eq(s_apply(l, &b, &h, off), PD_ERR_CORRUPT);
            char *after = s_dump(l);
            ck_assert_str_eq(before, after);
            free(after);
            free(before);
        }
    }
    /* A good set, then a delete of half the keys. */
    s_rec(&b, &h, LG_SET, 6, ids, NK);
    TU_OK(s_apply(l, &b, &h, off), NULL);
    s_rec(&b, &h, LG_DELETE, 7, ids, NK / 2);
    TU_OK(s_apply(l, &b, &h, off + lg_rec_len(&h)), NULL);
    for (int i = 0; i < NK; i++) {
        pd_key k = s_key(i);
        const lg_key *x = lg_find(l, &k);
        ck_assert_ptr_nonnull(x);
        ck_assert_uint_eq(x->n, i < NK / 2 ? 0 : 1);
        ck_assert_uint_eq(x->floor, i < NK / 2 ? 7 : 6);
    }
    s_consistent(l);
    free(once);
    s_index_free(l);
    pd__buf_free(&b);
}
END_TEST

/* A record holding a key twice (not one lg_rec_build makes; a table may):
 * its first entry missing the hint (it waits in the queue), its second
 * taken from the hint (applied at once): the key's extents stay in table
 * order. */
START_TEST(repeated_key_in_order) {
    pd__buf b;
    pd__buf_init(&b, NULL, 0);
    lg_hdr h;
    int ids[NK];
    for (int i = 0; i < NK; i++) ids[i] = i;
    lg_store *l = s_index_new();
    s_rec(&b, &h, LG_APPEND, 1, ids, NK);
    TU_OK(s_apply(l, &b, &h, 0), NULL);
    uint64_t off = lg_rec_len(&h);
    s_rec(&b, &h, LG_APPEND, 2, ids, NK);
    /* Entry 50 ("k50") becomes "k60" (same length): k60 twice. */
    unsigned char *t = b.p + LG_HDR, *e = t + s_ent_at(t, 50);
    ck_assert_int_eq(memcmp(e + LG_ENT + 1, "k50", 3), 0);
    memcpy(e + LG_ENT + 1, "k60", 3);
    TU_OK(s_apply(l, &b, &h, off), NULL);
    pd_key k = s_key(60);
    const lg_key *x = lg_find(l, &k);
    ck_assert_ptr_nonnull(x);
    ck_assert_uint_eq(x->n, 3);
    ck_assert_uint_eq(x->ext[1].seq, 2);
    ck_assert_uint_eq(x->ext[2].seq, 2);
    uint64_t doff[NK];
    lg_tcur c;
    lg_ent ent;
    lg_tcur_init(&c, &h);
    for (int i = 0; i < NK; i++) {
        ck_assert_int_eq(lg_tcur_next(&c, &h, t, &ent), 1);
        doff[i] = ent.doff;
    }
    ck_assert_int_eq(lg_tcur_next(&c, &h, t, &ent), 0);
    ck_assert_uint_eq(x->ext[1].off, off + doff[50]);
    ck_assert_uint_eq(x->ext[2].off, off + doff[60]);
    k = s_key(50);
    ck_assert_uint_eq(lg_find(l, &k)->n, 1); /* not in this record */
    s_consistent(l);
    s_index_free(l);
    pd__buf_free(&b);
}
END_TEST

/* ------------------------------------------------------ Through a store */

/* Appends the record in b (its table rehashed, its header and trailer
 * rewritten) at the end of the file at path. */
static void s_inject(const char *path, pd__buf *b, lg_hdr *h) {
    h->table_hash = XXH3_64bits(b->p + LG_HDR, h->table_len);
    lg_hdr_write(h, b->p);
    memcpy(b->p + b->len - LG_HDR, b->p, LG_HDR);
    int fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, b->p, b->len), (ssize_t)b->len);
    close(fd);
}

/* Records of keys 0..NK-1, a hash-valid record whose table is malformed
 * at its last entry (after hinted keys and new ones), more records: a
 * reader reports the damage; once the writer is gone, a salvaging
 * compaction keeps the good
 * records' values exactly, and no key of the bad record alone. */
START_TEST(store_salvage) {
    fx f;
    pd_store *w = fx_start(&f);
    pd_key ks[2 * NK];
    pd_bytes vs[2 * NK];
    char vals[2 * NK][16];
    char *want[NK] = {0};
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < NK; i++) {
            ks[i] = s_key(i);
            snprintf(vals[i], sizeof vals[i], "r%d.%d;", r, i);
            vs[i] = V(vals[i]);
            size_t n = want[i] ? strlen(want[i]) : 0;
            want[i] = realloc(want[i], n + strlen(vals[i]) + 1);
            ck_assert_ptr_nonnull(want[i]);
            memcpy(want[i] + n, vals[i], strlen(vals[i]) + 1);
        }
        TU_OK(pd_append(w, NK, ks, vs, 0), w);
        if (r == 1) { /* the bad record, between the good ones */
            char path[PATH_MAX + 300];
            s_only(f.root, "w-", path, sizeof path);
            int ids[2 * NK];
            for (int i = 0; i < NK; i++) {
                ids[2 * i] = i;
                ids[2 * i + 1] = 2 * NK + i;
            }
            pd__buf b;
            pd__buf_init(&b, NULL, 0);
            lg_hdr h;
            s_rec(&b, &h, LG_APPEND, 1000, ids, 2 * NK);
            s_break(&b, &h, BAD_SUM, 2 * NK - 1);
            s_inject(path, &b, &h);
            pd__buf_free(&b);
        }
    }
    pd_store *r = NULL; /* (then the writer's segment is a dead one's) */
    TU_OK(pd_log_open(&r, f.root, 0), NULL);
    TU_OK(pd_close(&w), NULL);
    pd_result *res = NULL;
    ck_assert_int_eq(pd_get(r, 1, ks, &res, 0), PD_ERR_CORRUPT);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(r), "malformed key table"));
    TU_OK(pd_log_compact(r, PD_LOG_SALVAGE), r);
    for (int i = 0; i < NK; i++) tu_expect_str(r, s_key(i), want[i]);
    ck_assert_uint_eq(tu_nkeys(r), NK);
    ck_assert_int_eq(tu_listed_size(r, s_key(2 * NK)), -1);
    fx_end(&f, &r);
    for (int i = 0; i < NK; i++) free(want[i]);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"malformed_taken_back", malformed_taken_back, 0},
        {"again_and_other_types", again_and_other_types, 0},
        {"repeated_key_in_order", repeated_key_in_order, 0},
        {"store_salvage", store_salvage, 0},
    };
    return TU_RUN_CASES("test_log_apply", cases, 300, 0);
}
