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

void lg_hdr_write(const lg_hdr *h, unsigned char out[LG_HDR]) {
    lg_put32(out, LG_REC_MAGIC);
    out[4] = (unsigned char)LG_REC_FORMAT;
    out[5] = (unsigned char)h->type;
    out[6] = out[7] = 0;
    lg_put32(out + 8, h->nkeys);
    lg_put32(out + 12, h->table_len);
    lg_put64(out + 16, h->seq);
    lg_put64(out + 24, h->data_len);
    lg_put64(out + 32, h->table_hash);
    lg_put64(out + 40, XXH3_64bits(out, 40));
}

int lg_hdr_parse(const unsigned char *p, lg_hdr *h) {
    if (lg_le32(p) != LG_REC_MAGIC || p[4] != LG_REC_FORMAT || p[6] || p[7])
        return -1;
    if (lg_le64(p + 40) != XXH3_64bits(p, 40)) return -1;
    h->type = p[5];
    h->nkeys = lg_le32(p + 8);
    h->table_len = lg_le32(p + 12);
    h->seq = lg_le64(p + 16);
    h->data_len = lg_le64(p + 24);
    h->table_hash = lg_le64(p + 32);
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
    lg_tcur c;
    lg_ent e;
    int rc;
    lg_tcur_init(&c, h);
    while ((rc = lg_tcur_next(&c, h, table, &e)) == 1) {
        pd_bytes parts[PD_KEY_MAX_PARTS];
        if (pd__key_unpack(e.pk, e.pklen, &e.key, parts)) return -1;
        rc = fn ? fn(arg, h, &e) : 0;
        if (rc) return rc;
    }
    return rc;
}

/* ------------------------------------------------------------- Building */

/* A distinct key of a record: its table entry at `at` from the table's
 * start (its packed key at + LG_ENT, which node.pk points to while the
 * plan indexes keys), its occurrences first .. last linked through the
 * plan's next[], the sum of their sizes. */
struct lg_pnode {
    pd__knode node;
    size_t first, last, at;
    uint64_t vlen;
};
typedef struct lg_pnode s_node;

#define S_AHEAD 8 /* keys a lookup's slot is prefetched ahead */

#if defined(__GNUC__)
#define S_PREFETCH(p) __builtin_prefetch(p)
#else
#define S_PREFETCH(p) ((void)(p))
#endif

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

void lg_plan_free(lg_plan *pl) {
    free(pl->nodes);
    free(pl->next);
    free(pl->hash);
    pd__ktab_reset(&pl->t);
    memset(pl, 0, sizeof *pl);
}

void lg_plan_done(lg_plan *pl, size_t n, pd__buf *b, lg_iov *v) {
    if (pl->cap > LG_PLAN_KEEP_MIN && n <= pl->cap / 4)
        pl->small++;
    else
        pl->small = 0;
    if (pl->cap <= LG_PLAN_KEEP_MAX && b->cap <= LG_PLAN_KEEP_BYTES &&
        pl->small < LG_PLAN_KEEP_CALLS)
        return;
    lg_plan_free(pl);
    pd__buf_free(b);
    free(v->iov);
    memset(v, 0, sizeof *v);
}

/* Room in pl's arrays for n occurrences (their content is not kept). */
static int s_plan_arrays(lg_plan *pl, size_t n) {
    if (n <= pl->cap) return 0;
    size_t cap = 64;
    while (cap < n) cap *= 2;
    free(pl->nodes);
    free(pl->next);
    free(pl->hash);
    pl->nodes = malloc(cap * sizeof *pl->nodes);
    pl->next = malloc(cap * sizeof *pl->next);
    pl->hash = malloc(cap * sizeof *pl->hash);
    pl->cap = pl->nodes && pl->next && pl->hash ? cap : 0;
    if (pl->cap) return 0;
    free(pl->nodes);
    free(pl->next);
    free(pl->hash);
    pl->nodes = NULL;
    pl->next = NULL;
    pl->hash = NULL;
    return -1;
}

/* Room in b for the header, the table up to its byte `end` and the
 * trailer; the nd keys' packed keys move with b. */
static int s_room(pd__buf *b, lg_plan *pl, size_t nd, size_t end) {
    size_t need = LG_HDR + end + LG_HDR;
    if (need < b->cap) return 0;
    if (pd__buf_reserve(b, need)) return -1;
    for (size_t j = 0; j < nd; j++)
        pl->nodes[j].node.pk = b->p + LG_HDR + pl->nodes[j].at + LG_ENT;
    return 0;
}

/* Whether packed key a[0..la) sorts before b[0..lb): bytes, then length. */
static bool s_pk_before(const unsigned char *a, size_t la,
                        const unsigned char *b, size_t lb) {
    int c = memcmp(a, b, la < lb ? la : lb);
    return c < 0 || (c == 0 && la < lb);
}

/* The batch's keys stopped increasing: hashes them all and indexes the
 * nd distinct ones so far, the slots sized for n (at most LG_PLAN_KEEP_MAX:
 * beyond, they grow). */
static int s_index(lg_plan *pl, size_t nd, const pd_key *keys, size_t n) {
    if (pd__ktab_reserve(&pl->t, n < LG_PLAN_KEEP_MAX ? n : LG_PLAN_KEEP_MAX))
        return -1;
    for (size_t i = 0; i < n; i++) pl->hash[i] = pd__khash(&keys[i]);
    for (size_t j = 0; j < nd; j++) {
        s_node *sn = &pl->nodes[j];
        sn->node.hash = pl->hash[sn->first];
        if (pd__ktab_insert(&pl->t, &sn->node)) return -1;
    }
    return 0;
}

/* Occurrence i (of vl bytes) of the key of sn. */
static void s_link(lg_plan *pl, s_node *sn, size_t i, size_t vl) {
    pl->next[sn->last] = i;
    sn->last = i;
    sn->vlen += vl;
}

/* A record's sizes, its plan made. */
typedef struct s_rec {
    size_t npre, nd, table_len, total; /* npre: the tag's entries */
    uint64_t data_len;
} s_rec;

/* The bytes of the tag's two table entries. */
static size_t s_tag_size(const lg_att_tag *t) {
    return 2 * LG_ENT + lg_pad8(t->wlen) + lg_pad8(1 + t->taglen);
}

/* The tag's two entries at ent: the writer, then the tag as a flat key,
 * no data (the checksum of nothing), padding zeroed. */
static void s_tag_put(const lg_att_tag *t, unsigned char *ent) {
    uint64_t h0 = XXH3_64bits("", 0);
    size_t e1 = LG_ENT + lg_pad8(t->wlen);
    memset(ent, 0, s_tag_size(t));
    lg_put32(ent, (uint32_t)t->wlen);
    lg_put64(ent + 16, h0);
    memcpy(ent + LG_ENT, t->wpk, t->wlen);
    ent += e1;
    lg_put32(ent, (uint32_t)(1 + t->taglen));
    lg_put64(ent + 16, h0);
    memcpy(ent + LG_ENT + 1, t->tag, t->taglen); /* after the flat mark 0 */
}

/* Plans the record of a batch: its distinct keys in order of first
 * occurrence into pl, their table into b after room for the header
 * (each entry's key, its sizes and checksum left to fill), the sizes
 * into *r.  While the keys increase (a batch ordered by key) they are all
 * distinct and compared with their predecessor only; from the first that
 * does not, they go through pl's key index.  0, PD_ERR_NOMEM or
 * PD_ERR_LIMIT. */
static int s_plan_make(lg_plan *pl, s_rec *r, pd__buf *b, const lg_att_tag *tag,
                       size_t n, const pd_key *keys, const pd_bytes *vals) {
    memset(r, 0, sizeof *r);
    if (n > LG_MAX_KEYS) return PD_ERR_LIMIT;
    size_t pre = tag ? s_tag_size(tag) : 0;
    if (pre > LG_MAX_TABLE) return PD_ERR_LIMIT;
    /* The table's size if the keys are distinct flat keys of up to 7
     * bytes; it grows as needed. */
    size_t guess = n < LG_MAX_TABLE / (LG_ENT + 8) ? n * (LG_ENT + 8) : 0;
    pd__buf_clear(b);
    if (s_plan_arrays(pl, n ? n : 1) ||
        pd__buf_reserve(b, 2 * LG_HDR + pre + guess))
        return PD_ERR_NOMEM;
    if (tag) s_tag_put(tag, b->p + LG_HDR);
    bool sorted = true;
    size_t nd = 0, at = pre, data = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const pd_key *k = &keys[i];
        size_t vl = vals ? vals[i].size : 0;
        uint64_t h = 0;
        pl->next[i] = SIZE_MAX;
        if (pd__add_ovf(data, vl, &data)) {
            rc = PD_ERR_LIMIT;
            break;
        }
        if (!sorted) {
            /* The slot a later key's lookup reads, on its way into cache
             * (the slots outgrow it at many keys). */
            if (i + S_AHEAD < n)
                S_PREFETCH(&pl->t.slots[pl->hash[i + S_AHEAD] & pl->t.mask]);
            h = pl->hash[i];
            pd__knode *f = pd__ktab_find(&pl->t, k, h);
            if (f) {
                s_link(pl, (s_node *)f, i, vl);
                continue;
            }
        }
        bool flat = k->nparts == 0; /* the usual key, packed here */
        size_t kl = flat ? k->size + 1 : pd__key_packed_size(k);
        size_t e = LG_ENT + lg_pad8(kl);
        if (e > LG_MAX_TABLE - at) {
            rc = PD_ERR_LIMIT;
            break;
        }
        if (s_room(b, pl, nd, at + e)) {
            rc = PD_ERR_NOMEM;
            break;
        }
        /* The entry's key (its padding zeroed), past the table so far. */
        unsigned char *tab = b->p + LG_HDR, *ent = tab + at;
        lg_put32(ent, (uint32_t)kl);
        lg_put32(ent + 4, 0);
        memset(ent + LG_ENT + lg_pad8(kl) - 8, 0, 8);
        if (flat) {
            ent[LG_ENT] = 0;
            if (k->size) memcpy(ent + LG_ENT + 1, k->data, k->size);
        } else {
            pd__key_pack(k, ent + LG_ENT);
        }
        if (sorted && nd) {
            const s_node *pv = &pl->nodes[nd - 1];
            if (!s_pk_before(tab + pv->at + LG_ENT, pv->node.klen, ent + LG_ENT,
                             kl)) {
                if (s_index(pl, nd, keys, n)) {
                    rc = PD_ERR_NOMEM;
                    break;
                }
                sorted = false;
                h = pl->hash[i];
                pd__knode *f = pd__ktab_find(&pl->t, k, h);
                if (f) { /* the entry just written is dropped */
                    s_link(pl, (s_node *)f, i, vl);
                    continue;
                }
            }
        }
        s_node *sn = &pl->nodes[nd];
        sn->node.pk = ent + LG_ENT;
        sn->node.klen = kl;
        sn->node.hash = h;
        sn->first = sn->last = i;
        sn->at = at;
        sn->vlen = vl;
        if (!sorted && pd__ktab_insert(&pl->t, &sn->node)) {
            rc = PD_ERR_NOMEM;
            break;
        }
        nd++;
        at += e;
    }
    pd__ktab_clear(&pl->t);
    if (rc) return rc;
    size_t npre = tag ? 2 : 0;
    if (nd + npre > LG_MAX_KEYS || data > LG_MAX_DATA ||
        pd__add_ovf(at + 2 * LG_HDR, data, &r->total))
        return PD_ERR_LIMIT;
    r->npre = npre;
    r->nd = nd;
    r->table_len = at;
    r->data_len = data;
    return 0;
}

/* The size and checksum of the data of the key whose entry is at ent. */
static void s_put_sums(unsigned char *ent, uint64_t vlen, uint64_t vhash) {
    lg_put64(ent + 8, vlen);
    lg_put64(ent + 16, vhash);
}

/* Copies the values into b after the table planned in pl (b has room for
 * the whole record), grouped per key, each key's size and checksum into
 * its entry. */
static void s_copy_data(const lg_plan *pl, const s_rec *r, pd__buf *b,
                        const pd_bytes *vals) {
    unsigned char *tab = b->p + LG_HDR, *data = tab + r->table_len;
    size_t dat = 0;
    for (size_t j = 0; j < r->nd; j++) {
        const s_node *sn = &pl->nodes[j];
        unsigned char *d0 = data + dat;
        for (size_t i = sn->first; i != SIZE_MAX; i = pl->next[i]) {
            if (vals && vals[i].size) {
                memcpy(data + dat, vals[i].data, vals[i].size);
                dat += vals[i].size;
            }
        }
        s_put_sums(tab + sn->at, sn->vlen, XXH3_64bits(d0, sn->vlen));
    }
}

/* Whether the record's values go into b rather than to writev from where
 * they are: many small data buffers (values adjacent in memory merged)
 * cost the kernel more per buffer, and the checksums more per piece, than
 * copying them costs (docs/perf-log.md, "Attempt appends"), as long as b
 * stays within what a handle keeps. */
static bool s_copy_values(const lg_plan *pl, const s_rec *r, size_t n,
                          const pd_bytes *vals) {
    /* Values of BELOW bytes on average make buffers at least as large. */
    if (!vals || r->total > LG_PLAN_KEEP_BYTES ||
        r->data_len >= (uint64_t)n * LG_COPY_BELOW)
        return false;
    uint64_t most = r->data_len / LG_COPY_BELOW; /* more: copied */
    if (most < LG_COPY_MIN - 1) most = LG_COPY_MIN - 1;
    size_t k = 0;
    const unsigned char *end = NULL;
    if (r->nd == n) { /* every key once: the table's order is the batch's */
        for (size_t i = 0; i < n; i++) {
            const unsigned char *d = vals[i].data;
            if (!vals[i].size) continue;
            k += d != end;
            end = d + vals[i].size;
        }
        return k > most;
    }
    for (size_t j = 0; j < r->nd; j++)
        for (size_t i = pl->nodes[j].first; i != SIZE_MAX; i = pl->next[i]) {
            const unsigned char *d = vals[i].data;
            if (!vals[i].size) continue;
            k += d != end;
            end = d + vals[i].size;
            if (k > most) return true;
        }
    return false;
}

int lg_rec_build(pd__buf *b, unsigned type, uint64_t seq, size_t n,
                 const pd_key *keys, const pd_bytes *vals) {
    lg_plan pl = {0};
    s_rec r;
    int rc = s_plan_make(&pl, &r, b, NULL, n, keys, vals);
    if (rc == 0 && pd__buf_reserve(b, r.total)) rc = PD_ERR_NOMEM;
    if (rc == 0) {
        s_copy_data(&pl, &r, b, vals);
        s_rec_seal(b, type, seq, r.nd, r.table_len, r.data_len,
                   r.total - LG_HDR);
    }
    lg_plan_free(&pl);
    return rc;
}

/* A key's values hashed as if concatenated: a run of values that follow
 * each other in memory in one piece, so that a key whose values make one
 * run (one value, or a caller's buffer) needs no streaming state. */
typedef struct s_hrun {
    const unsigned char *p;
    size_t len;
    bool streaming;
    XXH3_state_t st;
} s_hrun;

static void s_hrun_add(s_hrun *h, const unsigned char *d, size_t n) {
    if (h->len && h->p + h->len == d) {
        h->len += n;
        return;
    }
    if (h->len) {
        if (!h->streaming) XXH3_64bits_reset(&h->st);
        h->streaming = true;
        XXH3_64bits_update(&h->st, h->p, h->len);
    }
    h->p = d;
    h->len = n;
}

static uint64_t s_hrun_end(s_hrun *h) {
    if (!h->streaming)
        return XXH3_64bits(h->len ? h->p : (const void *)"", h->len);
    XXH3_64bits_update(&h->st, h->p, h->len);
    return XXH3_64bits_digest(&h->st);
}

int lg_rec_build_iov(pd__buf *b, lg_iov *v, lg_plan *pl, unsigned type,
                     uint64_t seq, size_t n, const pd_key *keys,
                     const pd_bytes *vals) {
    return lg_rec_build_tagged(b, v, pl, type, seq, NULL, n, keys, vals);
}

int lg_rec_build_tagged(pd__buf *b, lg_iov *v, lg_plan *pl, unsigned type,
                        uint64_t seq, const lg_att_tag *tag, size_t n,
                        const pd_key *keys, const pd_bytes *vals) {
    s_rec r;
    int rc = s_plan_make(pl, &r, b, tag, n, keys, vals);
    if (rc) return rc;
    if (n + 2 > v->cap) {
        struct iovec *p = realloc(v->iov, (n + 2) * sizeof *p);
        if (!p) return PD_ERR_NOMEM;
        v->iov = p;
        v->cap = n + 2;
    }
    if (s_copy_values(pl, &r, n, vals)) { /* one buffer: the whole record */
        if (pd__buf_reserve(b, r.total)) return PD_ERR_NOMEM;
        s_copy_data(pl, &r, b, vals);
        s_rec_seal(b, type, seq, r.npre + r.nd, r.table_len, r.data_len,
                   r.total - LG_HDR);
        v->iov[0] = (struct iovec){b->p, r.total};
        v->n = 1;
        v->total = r.total;
        return 0;
    }
    unsigned char *tab = b->p + LG_HDR;
    size_t k = 1;
    s_hrun hr;
    for (size_t j = 0; j < r.nd; j++) {
        const s_node *sn = &pl->nodes[j];
        if (vals && j + 2 < r.nd) {
            const pd_bytes *nv = &vals[pl->nodes[j + 2].first];
            for (size_t o = 0; o < nv->size && o < 256; o += 64)
                S_PREFETCH((const char *)nv->data + o);
        }
        hr.len = 0;
        hr.streaming = false;
        for (size_t i = sn->first; vals && i != SIZE_MAX; i = pl->next[i]) {
            const unsigned char *d = vals[i].data;
            size_t sz = vals[i].size;
            if (!sz) continue;
            /* Values that follow each other in memory: one buffer. */
            struct iovec *last = &v->iov[k - 1];
            if (k > 1 && (unsigned char *)last->iov_base + last->iov_len == d)
                last->iov_len += sz;
            else
                v->iov[k++] = (struct iovec){(void *)d, sz};
            s_hrun_add(&hr, d, sz);
        }
        s_put_sums(tab + sn->at, sn->vlen, s_hrun_end(&hr));
    }
    size_t head = LG_HDR + r.table_len;
    s_rec_seal(b, type, seq, r.npre + r.nd, r.table_len, r.data_len, head);
    v->iov[0] = (struct iovec){b->p, head};
    v->iov[k++] = (struct iovec){b->p + head, LG_HDR};
    v->n = k;
    v->total = r.total;
    return 0;
}

int lg_rec_build_packed(pd__buf *b, unsigned type, uint64_t seq, size_t n,
                        const lg_key *const *keys, const pd_bytes *vals) {
    size_t table_len = 0, data_len = 0, total;
    for (size_t i = 0; i < n; i++) {
        table_len += LG_ENT + lg_pad8(keys[i]->node.klen);
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
        lg_put32(tab + at, (uint32_t)kl);
        lg_put64(tab + at + 8, vals[i].size);
        lg_put64(tab + at + 16, XXH3_64bits(data + dat, vals[i].size));
        memcpy(tab + at + LG_ENT, keys[i]->pk, kl);
        at += LG_ENT + lg_pad8(kl);
        dat += vals[i].size;
    }
    s_rec_seal(b, type, seq, n, table_len, data_len, total - LG_HDR);
    return 0;
}
