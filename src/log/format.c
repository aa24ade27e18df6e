/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log records (docs/log-format.md): a 48-byte header, a key table, the data
 * grouped per key, and a copy of the header as trailer.  Checksums (XXH3):
 * one over the header, one over the table (stored in the header), one per
 * key over its data (stored in its table entry).  Little-endian throughout.
 */
#include "log/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void s_put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void s_put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t s_get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint64_t s_get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static size_t s_pad8(size_t n) { return (n + 7) & ~(size_t)7; }

void lg_hdr_write(const lg_hdr *h, unsigned char out[LG_HDR]) {
    s_put32(out, LG_REC_MAGIC);
    out[4] = (unsigned char)LG_REC_FORMAT;
    out[5] = (unsigned char)h->type;
    out[6] = out[7] = 0;
    s_put32(out + 8, h->nkeys);
    s_put32(out + 12, h->table_len);
    s_put64(out + 16, h->seq);
    s_put64(out + 24, h->data_len);
    s_put64(out + 32, h->table_hash);
    s_put64(out + 40, XXH3_64bits(out, 40));
}

int lg_hdr_parse(const unsigned char *p, lg_hdr *h) {
    if (s_get32(p) != LG_REC_MAGIC || p[4] != LG_REC_FORMAT || p[6] || p[7])
        return -1;
    if (s_get64(p + 40) != XXH3_64bits(p, 40)) return -1;
    h->type = p[5];
    h->nkeys = s_get32(p + 8);
    h->table_len = s_get32(p + 12);
    h->seq = s_get64(p + 16);
    h->data_len = s_get64(p + 24);
    h->table_hash = s_get64(p + 32);
    if (h->type < LG_APPEND || h->type > LG_COMMIT) return -1;
    if (h->table_len % 8 || h->table_len > LG_MAX_TABLE ||
        h->nkeys > LG_MAX_KEYS || h->data_len > LG_MAX_DATA || h->seq == 0 ||
        h->seq >= LG_SEQ_MAX)
        return -1;
    if ((uint64_t)h->nkeys * (LG_ENT + 8) > h->table_len) return -1;
    if (h->nkeys == 0 && h->table_len) return -1;
    if (h->type == LG_BASE && (h->nkeys || h->data_len)) return -1;
    if (h->type == LG_DELETE && h->data_len) return -1;
    if (h->type != LG_BASE && h->nkeys == 0) return -1;
    /* Attempts: the writer and a tag come first; a commit has no data. */
    if (h->type == LG_ATTEMPT && h->nkeys < 2) return -1;
    if (h->type == LG_COMMIT && (h->nkeys != 2 || h->data_len)) return -1;
    return 0;
}

int lg_table_walk(const lg_hdr *h, const unsigned char *table, lg_ent_fn fn,
                  void *arg) {
    size_t at = 0;
    uint64_t doff = (uint64_t)LG_HDR + h->table_len;
    for (uint32_t i = 0; i < h->nkeys; i++) {
        if (h->table_len - at < LG_ENT) return -1;
        lg_ent e;
        e.pklen = s_get32(table + at);
        if (s_get32(table + at + 4)) return -1;
        e.vlen = s_get64(table + at + 8);
        e.vhash = s_get64(table + at + 16);
        e.pk = table + at + LG_ENT;
        if (e.pklen == 0 || e.pklen > h->table_len - at - LG_ENT) return -1;
        pd_bytes parts[PD_KEY_MAX_PARTS];
        if (pd__key_unpack(e.pk, e.pklen, &e.key, parts)) return -1;
        if (e.vlen > h->data_len - (doff - LG_HDR - h->table_len)) return -1;
        e.doff = doff;
        doff += e.vlen;
        at += LG_ENT + s_pad8(e.pklen);
        if (at > h->table_len) return -1;
        int rc = fn ? fn(arg, h, &e) : 0;
        if (rc) return rc;
    }
    if (at != h->table_len ||
        doff != (uint64_t)LG_HDR + h->table_len + h->data_len)
        return -1;
    return 0;
}

/* ------------------------------------------------------------- Building */

typedef struct s_node {
    pd__knode node;
    size_t first, last; /* occurrences: first and last index */
    uint64_t vlen;
} s_node;

/* Ends a record whose table b->p holds: the header (its table's checksum
 * included) before it, its copy at `tail` (after the data when b holds
 * the data too), b->len = tail + LG_HDR. */
static void s_rec_seal(pd__buf *b, unsigned type, uint64_t seq, size_t nkeys,
                       size_t table_len, uint64_t data_len, size_t tail) {
    unsigned char *rec = b->p, *tab = rec + LG_HDR;
    lg_hdr h = {type, (uint32_t)nkeys, (uint32_t)table_len,
                seq,  data_len,        XXH3_64bits(tab, table_len)};
    lg_hdr_write(&h, rec);
    memcpy(rec + tail, rec, LG_HDR);
    b->len = tail + LG_HDR;
    b->p[b->len] = 0;
}

/* A record's plan: its distinct keys in order of first occurrence (each
 * one's occurrences linked through next[]), its table's and data's sizes. */
typedef struct s_plan {
    size_t *next, *pkoff;
    s_node *nodes;
    unsigned char *pks;
    size_t nd, table_len, data_len, total;
} s_plan;

static void s_plan_free(s_plan *pl) {
    free(pl->pkoff);
    free(pl->next);
    free(pl->nodes);
    free(pl->pks);
}

static int s_plan_make(s_plan *pl, size_t n, const pd_key *keys,
                       const pd_bytes *vals) {
    int rc = PD_ERR_NOMEM;
    size_t pktot = 0;
    pd__ktab t = {0};
    memset(pl, 0, sizeof *pl);
    if (n > LG_MAX_KEYS) return PD_ERR_LIMIT;
    pl->pkoff = malloc((n ? n : 1) * sizeof *pl->pkoff);
    pl->next = malloc((n ? n : 1) * sizeof *pl->next);
    pl->nodes = calloc(n ? n : 1, sizeof *pl->nodes);
    if (!pl->pkoff || !pl->next || !pl->nodes) goto out;
    for (size_t i = 0; i < n; i++) {
        pl->pkoff[i] = pktot;
        pktot += pd__key_packed_size(&keys[i]);
    }
    pl->pks = malloc(pktot ? pktot : 1);
    if (!pl->pks) goto out;
    for (size_t i = 0; i < n; i++) {
        pl->next[i] = SIZE_MAX;
        uint64_t h = pd__khash(&keys[i]);
        pd__knode *f = n > 1 ? pd__ktab_find(&t, &keys[i], h) : NULL;
        if (f) {
            s_node *sn = (s_node *)f;
            pl->next[sn->last] = i;
            sn->last = i;
            sn->vlen += vals ? vals[i].size : 0;
            continue;
        }
        s_node *sn = &pl->nodes[pl->nd];
        pd__key_pack(&keys[i], pl->pks + pl->pkoff[i]);
        sn->node.pk = pl->pks + pl->pkoff[i];
        sn->node.klen = pd__key_packed_size(&keys[i]);
        sn->node.hash = h;
        sn->first = sn->last = i;
        sn->vlen = vals ? vals[i].size : 0;
        if (n > 1 && pd__ktab_insert(&t, &sn->node)) goto out;
        pl->nd++;
    }
    for (size_t j = 0; j < pl->nd; j++) {
        pl->table_len += LG_ENT + s_pad8(pl->nodes[j].node.klen);
        if (pd__add_ovf(pl->data_len, pl->nodes[j].vlen, &pl->data_len)) {
            rc = PD_ERR_LIMIT;
            goto out;
        }
    }
    if (pl->table_len > LG_MAX_TABLE || pl->data_len > LG_MAX_DATA ||
        pd__add_ovf(pl->table_len + 2 * LG_HDR, pl->data_len, &pl->total)) {
        rc = PD_ERR_LIMIT;
        goto out;
    }
    rc = 0;
out:
    pd__ktab_reset(&t);
    return rc;
}

/* Key j's table entry at tab + *at, its data's hash given. */
static void s_put_ent(unsigned char *tab, size_t *at, const s_node *sn,
                      uint64_t vhash) {
    s_put32(tab + *at, (uint32_t)sn->node.klen);
    s_put64(tab + *at + 8, sn->vlen);
    s_put64(tab + *at + 16, vhash);
    memcpy(tab + *at + LG_ENT, sn->node.pk, sn->node.klen);
    *at += LG_ENT + s_pad8(sn->node.klen);
}

int lg_rec_build(pd__buf *b, unsigned type, uint64_t seq, size_t n,
                 const pd_key *keys, const pd_bytes *vals) {
    s_plan pl;
    int rc = s_plan_make(&pl, n, keys, vals);
    if (rc) goto out;
    rc = PD_ERR_NOMEM;
    pd__buf_clear(b);
    if (pd__buf_reserve(b, pl.total)) goto out;
    unsigned char *rec = b->p, *tab = rec + LG_HDR;
    unsigned char *data = tab + pl.table_len;
    memset(tab, 0, pl.table_len);
    size_t at = 0, dat = 0;
    for (size_t j = 0; j < pl.nd; j++) {
        s_node *sn = &pl.nodes[j];
        unsigned char *d0 = data + dat;
        for (size_t i = sn->first; i != SIZE_MAX; i = pl.next[i]) {
            if (vals && vals[i].size) {
                memcpy(data + dat, vals[i].data, vals[i].size);
                dat += vals[i].size;
            }
        }
        s_put_ent(tab, &at, sn, XXH3_64bits(d0, sn->vlen));
    }
    s_rec_seal(b, type, seq, pl.nd, pl.table_len, pl.data_len,
               pl.total - LG_HDR);
    rc = 0;
out:
    s_plan_free(&pl);
    return rc;
}

int lg_rec_build_iov(pd__buf *b, lg_iov *v, unsigned type, uint64_t seq,
                     size_t n, const pd_key *keys, const pd_bytes *vals) {
    s_plan pl;
    int rc = s_plan_make(&pl, n, keys, vals);
    if (rc) goto out;
    rc = PD_ERR_NOMEM;
    /* b: the header and the table, then the trailer (no data). */
    size_t head = LG_HDR + pl.table_len;
    pd__buf_clear(b);
    if (pd__buf_reserve(b, head + LG_HDR)) goto out;
    size_t nvals = 0;
    for (size_t i = 0; vals && i < n; i++) nvals += vals[i].size != 0;
    if (nvals + 2 > v->cap) {
        struct iovec *p = realloc(v->iov, (nvals + 2) * sizeof *p);
        if (!p) goto out;
        v->iov = p;
        v->cap = nvals + 2;
    }
    unsigned char *tab = b->p + LG_HDR;
    memset(tab, 0, pl.table_len);
    size_t at = 0, k = 1;
    for (size_t j = 0; j < pl.nd; j++) {
        s_node *sn = &pl.nodes[j];
        /* Its values in order, hashed as if concatenated (one value: one
         * pass, no streaming state). */
        bool one = pl.next[sn->first] == SIZE_MAX;
        XXH3_state_t st;
        if (!one) XXH3_64bits_reset(&st);
        for (size_t i = sn->first; i != SIZE_MAX; i = pl.next[i])
            if (vals && vals[i].size) {
                v->iov[k++] =
                    (struct iovec){(void *)vals[i].data, vals[i].size};
                if (!one) XXH3_64bits_update(&st, vals[i].data, vals[i].size);
            }
        const void *d = one && vals ? vals[sn->first].data : NULL;
        uint64_t h =
            one ? XXH3_64bits(d ? d : tab, sn->vlen) : XXH3_64bits_digest(&st);
        s_put_ent(tab, &at, sn, h);
    }
    s_rec_seal(b, type, seq, pl.nd, pl.table_len, pl.data_len, head);
    v->iov[0] = (struct iovec){b->p, head};
    v->iov[k++] = (struct iovec){b->p + head, LG_HDR};
    v->n = k;
    v->total = pl.total;
    rc = 0;
out:
    s_plan_free(&pl);
    return rc;
}

int lg_rec_build_packed(pd__buf *b, unsigned type, uint64_t seq, size_t n,
                        const lg_key *const *keys, const pd_bytes *vals) {
    size_t table_len = 0, data_len = 0, total;
    for (size_t i = 0; i < n; i++) {
        table_len += LG_ENT + s_pad8(keys[i]->node.klen);
        if (pd__add_ovf(data_len, vals[i].size, &data_len)) return PD_ERR_LIMIT;
    }
    if (n > LG_MAX_KEYS || table_len > LG_MAX_TABLE || data_len > LG_MAX_DATA ||
        pd__add_ovf(table_len + 2 * LG_HDR, data_len, &total))
        return PD_ERR_LIMIT;
    pd__buf_clear(b);
    if (pd__buf_reserve(b, total)) return PD_ERR_NOMEM;
    unsigned char *rec = b->p, *tab = rec + LG_HDR, *data = tab + table_len;
    memset(tab, 0, table_len);
    size_t at = 0, dat = 0;
    for (size_t i = 0; i < n; i++) {
        size_t kl = keys[i]->node.klen;
        if (vals[i].size) memcpy(data + dat, vals[i].data, vals[i].size);
        s_put32(tab + at, (uint32_t)kl);
        s_put64(tab + at + 8, vals[i].size);
        s_put64(tab + at + 16, XXH3_64bits(data + dat, vals[i].size));
        memcpy(tab + at + LG_ENT, keys[i]->pk, kl);
        at += LG_ENT + s_pad8(kl);
        dat += vals[i].size;
    }
    s_rec_seal(b, type, seq, n, table_len, data_len, total - LG_HDR);
    return 0;
}
