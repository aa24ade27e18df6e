/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: applying a record's key table to a handle's index (index.c reads
 * the records).  An append record, the bulk of a shuffle, is checked and
 * applied in one walk of its table; when a check fails part-way, what the
 * walk applied is taken back (s_undo), so a record that fails its checks
 * leaves the index as it was.  Other records are checked whole first
 * (a set or delete drops extents that could not be restored).
 *
 * Shuffle writers append the same keys in the same order call after call
 * (a key with no value in a call left out): the entries of a record are
 * compared (packed bytes) with the keys of the last record applied
 * (l->hint), in order from a cursor, and one that equals the key at the
 * cursor, or at one of the next S_HINT_SKIP (keys this record lacks, which
 * the next hint keeps, once), is that key, with no unpacking, hash or
 * lookup (its packing was checked when the key was first seen); its key
 * and the end of its extents were prefetched from the hint, so it is
 * applied at once.  The hint holds keys
 * of the index only (lg_index_reset frees keys and drops it; s_undo drops
 * it when it frees a key).
 *
 * Applying another entry costs three dependent cache misses when there
 * are many keys (its hash slot, its key, the end of its extents): such
 * entries wait in a short queue while their memory is prefetched, a stage
 * at a time.  (So a record's entries are not applied in table order: a
 * key's extents of one record are ordered by their offset.)
 */
#include "log/log.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define S_Q 24  /* queue length; stages at 0, 8 and 16 entries in */
#define S_QR 32 /* its ring's slots (a power of 2: a mask, no division) */
#define S_AT(i) ((i) & (S_QR - 1))
#define S_HINT_AHEAD 16              /* hinted keys fetched this far ahead */
#define S_HINT_EXT 8                 /* and the end of their extents this far */
#define S_HINT_MAX ((size_t)1 << 18) /* entries of a record hinted at most */
#define S_HINT_SKIP 4                /* hint entries a miss looks past */
#define S_HINT_GIVEUP 16 /* misses in a row after which it stops looking */

typedef struct s_pend {
    const unsigned char *pk;
    uint32_t pklen;
    uint32_t idx; /* its slot in hnext */
    uint64_t vlen, vhash, doff, hash;
} s_pend;

typedef struct s_apply {
    lg_store *l;
    const lg_hdr *h;
    uint32_t seg;
    uint64_t off;
    lg_key **hint, **next; /* l->hint (the last record's), l->hnext */
    size_t nhint, nnext;   /* entries of each usable */
    size_t at;             /* the cursor in hint */
    unsigned misses;       /* entries in a row the hint did not give */
    uint32_t nent;         /* entries seen past `skip` */
    size_t nn;             /* next[0..nn) filled */
    bool seen;             /* an entry was in the index already */
    s_pend q[S_QR];
    size_t in, out; /* entries queued, applied */
} s_apply;

/* The key packed as pk[0..pklen) (unpacked as key, hashed as hash), made
 * when new; NULL when out of memory. */
static lg_key *s_key_get(lg_store *l, const pd_key *key, const s_pend *e) {
    lg_key *k = (lg_key *)pd__ktab_find(&l->keys, key, e->hash);
    if (k) return k;
    k = calloc(1, sizeof *k + e->pklen);
    if (!k) return NULL;
    memcpy(k->pk, e->pk, e->pklen);
    k->node.pk = k->pk;
    k->node.klen = e->pklen;
    k->node.hash = e->hash;
    if (pd__ktab_insert(&l->keys, &k->node)) {
        free(k);
        return NULL;
    }
    return k;
}

/* Drops k's extents below its floor. */
static void s_trim(lg_store *l, lg_key *k) {
    uint32_t j = 0;
    for (uint32_t i = 0; i < k->n; i++) {
        if (k->ext[i].seq >= k->floor) {
            k->ext[j++] = k->ext[i];
        } else {
            k->size -= k->ext[i].len;
            l->live_bytes -= k->ext[i].len;
        }
    }
    if (j == k->n) return;
    k->n = j;
    lg_ext_fit(&l->xp, k);
}

/* Adds the extent of an entry (data at doff in the record, vlen bytes
 * hashing to vhash) to its key k, as the record's type says. */
static inline int s_add(s_apply *a, lg_key *k, uint64_t doff, uint64_t vlen,
                        uint64_t vhash) {
    lg_store *l = a->l;
    const lg_hdr *h = a->h;
    if (h->seq < k->floor) return 0; /* superseded already */
    if (h->type != LG_APPEND) {
        k->floor = h->seq;
        s_trim(l, k);
    }
    if (h->type == LG_DELETE) return 0;
    /* Insert in sequence order (usually at the end), and a record's own
     * in table order (its data's: entries from the hint are applied before
     * those waiting in the queue); a record applied again (after a failed
     * catch-up) is recognised and skipped. */
    uint32_t i = k->n;
    uint64_t off = a->off + doff;
    while (i > 0 && (k->ext[i - 1].seq > h->seq ||
                     (k->ext[i - 1].seq == h->seq &&
                      k->ext[i - 1].seg == a->seg && k->ext[i - 1].off > off)))
        i--;
    /* (A commit gives several records one sequence number.) */
    for (uint32_t j = i; j > 0 && k->ext[j - 1].seq == h->seq; j--)
        if (k->ext[j - 1].seg == a->seg && k->ext[j - 1].off == off) {
            a->seen = true;
            return 0;
        }
    if (k->n == k->cap && lg_ext_grow(&l->xp, k, k->n + 1)) return PD_ERR_NOMEM;
    if (i < k->n)
        memmove(&k->ext[i + 1], &k->ext[i], (k->n - i) * sizeof *k->ext);
    k->ext[i] = (lg_ext){h->seq, off, vlen, vhash, a->seg, 0};
    k->n++;
    k->size += vlen;
    l->live_bytes += vlen;
    return 0;
}

/* Applies a queued entry: finds or makes its key. */
static int s_apply_one(s_apply *a, const s_pend *e) {
    pd_key key;
    pd_bytes parts[PD_KEY_MAX_PARTS];
    if (pd__key_unpack(e->pk, e->pklen, &key, parts)) return PD_ERR_CORRUPT;
    lg_key *k = s_key_get(a->l, &key, e);
    if (!k) return PD_ERR_NOMEM;
    if (e->idx < a->nnext) a->next[e->idx] = k;
    return s_add(a, k, e->doff, e->vlen, e->vhash);
}

/* The slot where a lookup of hash starts, or NULL. */
static const pd__kslot *s_slot(const lg_store *l, uint64_t hash) {
    return l->keys.slots ? &l->keys.slots[hash & l->keys.mask] : NULL;
}

/* Whether key k is the one packed as pk[0..pklen). */
static bool s_is(const lg_key *k, const unsigned char *pk, uint32_t pklen) {
    if (!k || k->node.klen != pklen) return false;
    if (pklen <= 16) { /* the usual key: two words each, inline */
        uint64_t a0, a1, b0, b1;
        pd__load16(k->pk, pklen, &a0, &a1);
        pd__load16(pk, pklen, &b0, &b1);
        return a0 == b0 && a1 == b1;
    }
    return !memcmp(k->pk, pk, pklen);
}

/* A hint entry's key, and whether it was carried: a key of the record
 * before the last that the last one lacked (bit 0 of the pointer). */
static inline lg_key *s_hkey(lg_key *p) {
    return (lg_key *)((uintptr_t)p & ~(uintptr_t)1);
}
static inline bool s_carried(const lg_key *p) { return (uintptr_t)p & 1; }

/* s_hinted past the cursor's key: the next S_HINT_SKIP (unless the hint
 * has missed S_HINT_GIVEUP entries in a row).  The keys passed over (this
 * record lacks them) go on into the next hint, marked carried, once: a
 * shuffle's record that lacks a key usually has it again in the next. */
static lg_key *s_hint_skip(s_apply *a, const unsigned char *pk,
                           uint32_t pklen) {
    size_t end = a->at + 1 + (a->misses < S_HINT_GIVEUP ? S_HINT_SKIP : 0);
    if (end > a->nhint) end = a->nhint;
    for (size_t j = a->at + 1; j < end; j++)
        if (s_is(s_hkey(a->hint[j]), pk, pklen)) {
            for (size_t m = a->at; m < j; m++)
                if (a->hint[m] && !s_carried(a->hint[m]) && a->nn < a->nnext)
                    a->next[a->nn++] =
                        (lg_key *)((uintptr_t)a->hint[m] | (uintptr_t)1);
            a->at = j + 1;
            a->misses = 0;
            return s_hkey(a->hint[j]);
        }
    a->misses++;
    return NULL;
}

/* The key the hint gives the entry packed as pk[0..pklen), or NULL; moves
 * the cursor past it. */
static inline lg_key *s_hinted(s_apply *a, const unsigned char *pk,
                               uint32_t pklen) {
    if (a->at < a->nhint && s_is(s_hkey(a->hint[a->at]), pk, pklen)) {
        a->misses = 0;
        return s_hkey(a->hint[a->at++]);
    }
    return s_hint_skip(a, pk, pklen);
}

/* Applies the oldest entry of the queue. */
static int s_apply_next(s_apply *a) {
    return s_apply_one(a, &a->q[S_AT(a->out++)]);
}

/* Queues entry e (its key not unpacked), applying the oldest entry when
 * the queue is full.  0 or an error (PD_ERR_CORRUPT: a bad key). */
static inline int s_queue_ent(s_apply *a, const lg_ent *e) {
    a->nent++;
    if (a->at + S_HINT_AHEAD < a->nhint && a->hint[a->at + S_HINT_AHEAD]) {
        const char *nk = (const char *)s_hkey(a->hint[a->at + S_HINT_AHEAD]);
        __builtin_prefetch(nk);                        /* its length */
        __builtin_prefetch(nk + offsetof(lg_key, pk)); /* extents, bytes */
    }
    if (a->at + S_HINT_EXT < a->nhint && a->hint[a->at + S_HINT_EXT]) {
        const lg_key *nk = s_hkey(a->hint[a->at + S_HINT_EXT]); /* fetched */
        if (nk->n) { /* its last extent, and where the next one goes */
            __builtin_prefetch(&nk->ext[nk->n - 1]);
            if (nk->n < nk->cap)
                __builtin_prefetch((const char *)&nk->ext[nk->n + 1] - 1);
        }
    }
    lg_key *hk = s_hinted(a, e->pk, e->pklen);
    if (hk) { /* its memory was fetched from the hint: apply it now */
        if (a->nn < a->nnext) a->next[a->nn++] = hk;
        return s_add(a, hk, e->doff, e->vlen, e->vhash);
    }
    pd_key key;
    pd_bytes parts[PD_KEY_MAX_PARTS];
    if (pd__key_unpack(e->pk, e->pklen, &key, parts)) return PD_ERR_CORRUPT;
    s_pend *p = &a->q[S_AT(a->in)];
    uint32_t slot = a->nn < a->nnext ? (uint32_t)a->nn++ : UINT32_MAX;
    *p = (s_pend){e->pk,    e->pklen, slot,           e->vlen,
                  e->vhash, e->doff,  pd__khash(&key)};
    const pd__kslot *sl = s_slot(a->l, p->hash);
    if (sl) __builtin_prefetch(sl);
    a->in++;
    if (a->in - a->out > 8) { /* its slot is in: fetch its key */
        const s_pend *q = &a->q[S_AT(a->in - 9)];
        const pd__kslot *qs = s_slot(a->l, q->hash);
        if (qs && qs->node) __builtin_prefetch(qs->node);
    }
    if (a->in - a->out > 16) { /* its key is in: fetch its last extent */
        const s_pend *q = &a->q[S_AT(a->in - 17)];
        const pd__kslot *qs = s_slot(a->l, q->hash);
        if (qs && qs->node && qs->hash == q->hash) {
            const lg_key *k = (const lg_key *)(const void *)qs->node;
            if (k->n) __builtin_prefetch(&k->ext[k->n - 1]);
        }
    }
    if (a->in - a->out < S_Q) return 0;
    return s_apply_next(a);
}

/* Makes room in the hint for a record of n entries (at most S_HINT_MAX);
 * when that fails the hint covers fewer (it is only a shortcut). */
static void s_hint_grow(lg_store *l, size_t n) {
    if (n > S_HINT_MAX) n = S_HINT_MAX;
    if (n <= l->caphint) return;
    size_t nc = l->caphint ? l->caphint : 64;
    while (nc < n) nc *= 2;
    if (nc > S_HINT_MAX) nc = S_HINT_MAX;
    lg_key **nh = realloc(l->hint, nc * sizeof *nh);
    if (!nh) return;
    l->hint = nh; /* (caphint stays until both have grown) */
    nh = realloc(l->hnext, nc * sizeof *nh);
    if (!nh) return;
    l->hnext = nh;
    memset(l->hint + l->caphint, 0, (nc - l->caphint) * sizeof *nh);
    memset(l->hnext + l->caphint, 0, (nc - l->caphint) * sizeof *nh);
    l->caphint = nc;
}

/* The key packed as pk[0..pklen) if the index holds it, else NULL. */
static lg_key *s_lookup(lg_store *l, const unsigned char *pk, uint32_t pklen) {
    pd_key key;
    pd_bytes parts[PD_KEY_MAX_PARTS];
    if (pd__key_unpack(pk, pklen, &key, parts)) return NULL;
    return lg_find(l, &key);
}

/* Takes back what applying the first n entries (past skip) of an append
 * record did (some of them may not have been applied yet: they have no
 * extent of the record): their extents, then the keys left with no extent and
 * no floor (as a key the index never saw: made by this record).  Lookups only,
 * no hint: an entry's key may have been freed by an earlier one's. */
static void s_undo(lg_store *l, uint32_t seg, uint64_t off, const lg_hdr *h,
                   const unsigned char *table, uint32_t skip, uint32_t n) {
    bool freed = false;
    for (int pass = 0; pass < 2; pass++) {
        lg_tcur c;
        lg_ent e;
        lg_tcur_init(&c, h);
        for (uint32_t i = 0; i < skip + n; i++) {
            if (lg_tcur_next(&c, h, table, &e) != 1) break;
            if (i < skip) continue;
            lg_key *k = s_lookup(l, e.pk, e.pklen);
            if (!k) continue;
            if (pass == 1) {
                if (k->n || k->floor) continue;
                pd__ktab_remove(&l->keys, &k->node);
                lg_ext_release(&l->xp, k);
                free(k);
                freed = true;
                continue;
            }
            for (uint32_t j = k->n; j > 0 && k->ext[j - 1].seq >= h->seq; j--) {
                lg_ext *x = &k->ext[j - 1];
                if (x->seq != h->seq || x->seg != seg || x->off != off + e.doff)
                    continue;
                k->size -= x->len;
                l->live_bytes -= x->len;
                memmove(x, x + 1, (k->n - j) * sizeof *x);
                k->n--;
                break;
            }
        }
    }
    if (freed) { /* the hint may hold a key freed */
        l->nhint = 0;
        if (l->caphint) {
            memset(l->hint, 0, l->caphint * sizeof *l->hint);
            memset(l->hnext, 0, l->caphint * sizeof *l->hnext);
        }
    }
}

/* Applies the record's entries (the first `skip` left out); `checked`:
 * its table was walked whole already (lg_table_walk), else a failed check
 * takes back what was applied (an append record). */
static int s_apply_rec(lg_store *l, uint32_t seg, uint64_t off, const lg_hdr *h,
                       const unsigned char *table, uint32_t skip,
                       bool checked) {
    /* (Room for this record's keys and those carried from the last.) */
    s_hint_grow(l, (h->nkeys > skip ? h->nkeys - skip : 0) + l->nhint);
    s_apply a = {.l = l,
                 .h = h,
                 .seg = seg,
                 .off = off,
                 .hint = l->hint,
                 .next = l->hnext,
                 .nhint = l->nhint,
                 .nnext = l->caphint};
    const lg_hdr hl = *h; /* (a copy the stores below cannot alias) */
    lg_tcur c;
    lg_ent e;
    int rc = 1;
    lg_tcur_init(&c, &hl);
    for (uint32_t i = 0; rc == 1 && i < skip; i++) /* an attempt's tags */
        rc = lg_tcur_next(&c, &hl, table, &e);
    while (rc == 1 && (rc = lg_tcur_next(&c, &hl, table, &e)) == 1) {
        int qrc = s_queue_ent(&a, &e);
        if (qrc) {
            rc = qrc;
            break;
        }
    }
    if (rc < 0 && rc != PD_ERR_NOMEM) rc = PD_ERR_CORRUPT;
    while (rc == 0 && a.out < a.in) rc = s_apply_next(&a);
    if (rc && !checked) {
        /* Taken back whole (a record seen before was applied whole: its
         * entries were all found, nothing was added). */
        if (!a.seen) s_undo(l, seg, off, h, table, skip, a.nent);
        return rc;
    }
    if (rc == 0) l->rec_bytes += lg_rec_len(h);
    /* This record's keys are the next one's hint.  (After an error some of
     * hnext may be older keys: still keys of the index.) */
    l->hint = a.next;
    l->hnext = a.hint;
    l->nhint = a.nn;
    return rc;
}

int lg_index_apply(lg_store *l, uint32_t seg, uint64_t off, const lg_hdr *h,
                   const unsigned char *table, uint32_t skip) {
    return s_apply_rec(l, seg, off, h, table, skip, true);
}

int lg_index_rec(lg_store *l, uint32_t seg, uint64_t off, const lg_hdr *h,
                 const unsigned char *table) {
    /* An append record is checked as it is applied (s_apply_rec). */
    bool now = h->type == LG_APPEND &&
               (l->segs[seg].compacted || h->seq > l->base_seq);
    if (now) {
        int rc = s_apply_rec(l, seg, off, h, table, 0, false);
        if (rc) return rc;
    } else if (lg_table_walk(h, table, NULL, NULL)) {
        return PD_ERR_CORRUPT;
    }
    if (h->seq > l->max_seq) {
        /* A state file behind the segments (damaged, or lost and rebuilt
         * from a partial view) is moved past them. */
        l->max_seq = h->seq;
        uint64_t cur = __atomic_load_n(&l->sh->seq, __ATOMIC_SEQ_CST);
        while (cur < h->seq && !__atomic_compare_exchange_n(
                                   &l->sh->seq, &cur, h->seq, false,
                                   __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    }
    if (now) return 0;
    if (h->type == LG_BASE) {
        if (l->segs[seg].compacted && off == 0) l->base_seq = h->seq;
        return 0;
    }
    if (h->type >= LG_ATTEMPT) return lg_att_index(l, seg, off, h, table);
    if (!l->segs[seg].compacted && h->seq <= l->base_seq) return 0;
    return lg_index_apply(l, seg, off, h, table, 0);
}
