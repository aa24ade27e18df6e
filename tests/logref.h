/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * A plain builder of Log records, written from docs/log-format.md
 * ("Records", "Attempts") rather than from src/log/format.c, for the Log
 * suites to compare the library's records with (test_log_plan.c,
 * test_log_attempt_write.c).
 */
#ifndef PARTD_TESTS_LOGREF_H
#define PARTD_TESTS_LOGREF_H

#include "log/log.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static PD__UNUSED void lr_le(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* FNV-1a of p[0..n). */
static PD__UNUSED uint64_t lr_fnv(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* What an attempt or commit record's table starts with: the writer's
 * packed key, then the tag as a flat key, neither with data. */
typedef struct lr_tag {
    const unsigned char *wpk, *tag;
    size_t wlen, taglen;
} lr_tag;

/* One table entry at t without data: its size. */
static PD__UNUSED size_t lr_ent_nodata(unsigned char *t, const unsigned char *a,
                                       size_t la, const unsigned char *b,
                                       size_t lb) {
    size_t pl = la + lb;
    lr_le(t, pl, 4);
    lr_le(t + 16, XXH3_64bits("", 0), 8);
    if (la) memcpy(t + 24, a, la);
    if (lb) memcpy(t + 24 + la, b, lb);
    return 24 + (pl + 7) / 8 * 8;
}

/* The record of the batch as docs/log-format.md describes it: the tag's
 * two entries first (tag not NULL), then the batch's distinct keys in
 * order of first occurrence (keys equal when they pack alike), each one's
 * values concatenated in batch order.  Malloc'd; its length in *len. */
static PD__UNUSED unsigned char *lr_rec(unsigned type, uint64_t seq,
                                        const lr_tag *tag, size_t n,
                                        const pd_key *keys,
                                        const pd_bytes *vals, size_t *len) {
    size_t nslot = 16;
    while (nslot < 2 * n) nslot *= 2;
    unsigned char **pk = calloc(n + 1, sizeof *pk);
    size_t *pl = calloc(n + 1, sizeof *pl), *of = calloc(n + 1, sizeof *of);
    size_t *slot = malloc(nslot * sizeof *slot),
           *vl = calloc(n + 1, sizeof *vl);
    ck_assert(pk && pl && of && slot && vl);
    for (size_t i = 0; i < nslot; i++) slot[i] = SIZE_MAX;
    size_t pre =
        tag ? 48 + (tag->wlen + 7) / 8 * 8 + (tag->taglen + 8) / 8 * 8 : 0;
    size_t nd = 0, table = pre, data = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = pd__key_packed_size(&keys[i]);
        unsigned char *p = malloc(l);
        ck_assert_ptr_nonnull(p);
        pd__key_pack(&keys[i], p);
        size_t at = (size_t)lr_fnv(p, l) & (nslot - 1);
        while (slot[at] != SIZE_MAX &&
               !(pl[slot[at]] == l && memcmp(pk[slot[at]], p, l) == 0))
            at = (at + 1) & (nslot - 1);
        if (slot[at] == SIZE_MAX) {
            slot[at] = nd;
            pk[nd] = p, pl[nd] = l, nd++;
            table += 24 + (l + 7) / 8 * 8;
        } else {
            free(p);
        }
        of[i] = slot[at];
        data += vals ? vals[i].size : 0;
        vl[of[i]] += vals ? vals[i].size : 0;
    }
    *len = 48 + table + data + 48;
    unsigned char *r = calloc(1, *len);
    ck_assert_ptr_nonnull(r);
    unsigned char *t = r + 48, *d = t + table;
    /* Key j's data starts after the data of keys 0..j-1. */
    size_t *dat = calloc(nd + 1, sizeof *dat);
    ck_assert_ptr_nonnull(dat);
    for (size_t j = 1; j <= nd; j++) dat[j] = dat[j - 1] + vl[j - 1];
    size_t *fill = calloc(nd + 1, sizeof *fill);
    ck_assert_ptr_nonnull(fill);
    for (size_t i = 0; vals && i < n; i++) {
        if (vals[i].size)
            memcpy(d + dat[of[i]] + fill[of[i]], vals[i].data, vals[i].size);
        fill[of[i]] += vals[i].size;
    }
    size_t at = 0;
    if (tag) {
        static const unsigned char flat = 0;
        at += lr_ent_nodata(t, tag->wpk, tag->wlen, NULL, 0);
        at += lr_ent_nodata(t + at, &flat, 1, tag->tag, tag->taglen);
        ck_assert_uint_eq(at, pre);
    }
    for (size_t j = 0; j < nd; j++) {
        lr_le(t + at, pl[j], 4);
        lr_le(t + at + 8, vl[j], 8);
        lr_le(t + at + 16, XXH3_64bits(d + dat[j], vl[j]), 8);
        memcpy(t + at + 24, pk[j], pl[j]);
        at += 24 + (pl[j] + 7) / 8 * 8;
        free(pk[j]);
    }
    lr_le(r, 0x52444c50u, 4);
    r[4] = 1;
    r[5] = (unsigned char)type;
    lr_le(r + 8, nd + (tag ? 2 : 0), 4);
    lr_le(r + 12, table, 4);
    lr_le(r + 16, seq, 8);
    lr_le(r + 24, data, 8);
    lr_le(r + 32, XXH3_64bits(t, table), 8);
    lr_le(r + 40, XXH3_64bits(r, 40), 8);
    memcpy(r + *len - 48, r, 48);
    free(pk);
    free(pl);
    free(of);
    free(slot);
    free(vl);
    free(dat);
    free(fill);
    return r;
}

#endif
