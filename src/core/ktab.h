/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * A key index for the Dict and the Buffer: open addressing (linear probing,
 * at most half full) over {hash, node} slots, plus a list of the nodes in
 * insertion order.
 *
 * Why not uthash: its chains grow long before it adds buckets, so a lookup
 * walked several scattered entries, and every module packed the key into
 * a buffer first to hash it.  Here a key is hashed once from its
 * parts (pd__khash, no copy), the hash can be handed from a wrapper to the
 * store under it (the Buffer to its Dict), a lookup reads one 16-byte slot
 * and compares the stored packed key in place (pd__keq).  Everything on that
 * path is inline: a Buffer append looks up every key it is given, and the
 * calls, XXH3's length dispatch and a byte loop for short keys cost more
 * than the lookup (docs/perf-notes.md).  The hashes live in memory only
 * (never on disk or the wire), so the function may change.
 *
 * The insertion-order list is what the Buffer's spill selection needs: the
 * reference breaks ties between equal sizes by the order of its dict, where
 * a key deleted and appended again moves to the end, as here.
 *
 * A node is embedded (usually as first member) in the caller's entry, which
 * owns the packed key the node points to.  Nothing here frees entries.  Not
 * thread-safe: the owning store's mutex protects it.
 */
#ifndef PARTD_KTAB_H
#define PARTD_KTAB_H

#include "core/internal.h"

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

typedef struct pd__knode {
    /* What a lookup reads, first.  For a flat key of at most 16 bytes (the
     * usual key), its bytes as pd__load16 reads them, so that a lookup
     * compares two words and need not follow pk. */
    uint64_t kw[2];
    size_t klen;   /* of the packed key */
    bool flat16;   /* kw holds the key (set by pd__ktab_insert) */
    uint64_t hash; /* pd__khash of the key */
    struct pd__knode *prev, *next; /* insertion order */
    const unsigned char *pk;       /* packed key (pd__key_pack) */
} pd__knode;

typedef struct pd__kslot {
    uint64_t hash;
    pd__knode *node; /* NULL: free */
} pd__kslot;

typedef struct pd__ktab {
    pd__kslot *slots; /* NULL while empty */
    size_t mask;      /* slot count - 1 */
    size_t count;
    pd__knode *head, *tail;
} pd__ktab;

#if defined(__GNUC__)
#define PD__INLINE static inline __attribute__((always_inline))
#else
#define PD__INLINE static inline
#endif

/* The hash of a tuple key of 2 or more parts (ktab.c). */
uint64_t pd__khash_tuple(const pd_key *key);
/* Whether a tuple key of 2 or more parts packs to pk[0..len) (ktab.c). */
bool pd__keq_tuple(const pd_key *key, const unsigned char *pk, size_t len);

/* p[0..n) (n <= 16) as two words: overlapping loads, as XXH3 and wyhash
 * read short inputs; for n < 4 the first, middle and last bytes (which are
 * all the bytes).  Two inputs of one length load alike iff they are
 * equal. */
PD__INLINE void pd__load16(const unsigned char *p, size_t n, uint64_t *a,
                           uint64_t *b) {
    if (n >= 8) {
        memcpy(a, p, 8);
        memcpy(b, p + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, p, 4);
        memcpy(&y, p + n - 4, 4);
        *a = x;
        *b = y;
    } else if (n > 0) {
        *a = (uint64_t)p[0] << 16 | (uint64_t)p[n >> 1] << 8 | p[n - 1];
        *b = 0;
    } else {
        *a = *b = 0;
    }
}

/* The 128-bit product of a and b, folded (wyhash's mix). */
PD__INLINE uint64_t pd__mix(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__)
    unsigned __int128 m = (unsigned __int128)a * b;
    return (uint64_t)m ^ (uint64_t)(m >> 64);
#else
    return XXH3_64bits_withSeed(&a, sizeof a, b);
#endif
}

/* The hash of n <= 16 bytes loaded by pd__load16 as a, b: wyhash's
 * short-input path (two multiplications). */
PD__INLINE uint64_t pd__hash16(uint64_t a, uint64_t b, size_t n) {
    return pd__mix(
        pd__mix(a ^ 0xa0761d6478bd642full, b ^ 0xe7037ed1a0b428dbull) ^ n,
        0x8ebc6af09c88c6e3ull);
}

/* A key prepared for hashing and lookups: a flat key (or 1-tuple) of at
 * most 16 bytes is loaded once, for both. */
typedef struct pd__kprobe {
    const pd_key *key;
    const unsigned char *d; /* a flat key's bytes */
    size_t n;
    bool flat, short_flat;
    uint64_t a, b; /* short_flat: d[0..n) loaded by pd__load16 */
} pd__kprobe;

PD__INLINE void pd__kprobe_init(pd__kprobe *p, const pd_key *key) {
    p->key = key;
    p->d = NULL;
    p->n = 0;
    p->flat = key->nparts <= 1;
    if (key->nparts == 0) {
        p->d = key->data;
        p->n = key->size;
    } else if (key->nparts == 1) {
        p->d = key->parts[0].data;
        p->n = key->parts[0].size;
    }
    p->short_flat = p->flat && p->n <= 16;
    p->a = p->b = 0;
    if (p->short_flat) pd__load16(p->d, p->n, &p->a, &p->b);
}

/* The key's hash: equal keys (a 1-tuple and its part alone included) hash
 * alike.  Flat keys: wyhash up to 16 bytes, XXH3 beyond. */
PD__INLINE uint64_t pd__kprobe_hash(const pd__kprobe *p) {
    if (p->short_flat) return pd__hash16(p->a, p->b, p->n);
    if (p->flat) return XXH3_64bits(p->d, p->n);
    return pd__khash_tuple(p->key);
}

/* pd__kprobe_hash of key.  The key must have passed pd__key_check. */
PD__INLINE uint64_t pd__khash(const pd_key *key) {
    pd__kprobe p;
    pd__kprobe_init(&p, key);
    return pd__kprobe_hash(&p);
}

/* memcmp(a, b, n) == 0, inline for the short keys a shuffle uses (libc's
 * memcmp call cost more than the comparison). */
PD__INLINE bool pd__memeq(const unsigned char *a, const unsigned char *b,
                          size_t n) {
    if (n > 16) return memcmp(a, b, n) == 0;
    uint64_t x0, x1, y0, y1;
    pd__load16(a, n, &x0, &x1);
    pd__load16(b, n, &y0, &y1);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
}

/* Whether `key` packs to pk[0..len), without packing it. */
PD__INLINE bool pd__keq(const pd_key *key, const unsigned char *pk,
                        size_t len) {
    const void *d;
    size_t n;
    if (key->nparts >= 2) return pd__keq_tuple(key, pk, len);
    if (key->nparts == 1) {
        d = key->parts[0].data;
        n = key->parts[0].size;
    } else {
        d = key->data;
        n = key->size;
    }
    return len == n + 1 && pk[0] == 0 && pd__memeq(pk + 1, d, n);
}

/* The node of the probed key (whose hash is h), or NULL. */
PD__INLINE pd__knode *pd__ktab_find_probe(const pd__ktab *t,
                                          const pd__kprobe *p, uint64_t h) {
    if (t->count == 0) return NULL;
    const pd__kslot *slots = t->slots;
    const size_t mask = t->mask;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        pd__knode *nd = slots[i].node;
        if (!nd) return NULL;
        if (slots[i].hash != h) continue;
        if (p->short_flat) {
            if (nd->flat16 && nd->klen == p->n + 1 && nd->kw[0] == p->a &&
                nd->kw[1] == p->b)
                return nd;
        } else if (pd__keq(p->key, nd->pk, nd->klen)) {
            return nd;
        }
    }
}

/* The node of `key` (whose hash is h), or NULL. */
PD__INLINE pd__knode *pd__ktab_find(const pd__ktab *t, const pd_key *key,
                                    uint64_t h) {
    pd__kprobe p;
    pd__kprobe_init(&p, key);
    return pd__ktab_find_probe(t, &p, h);
}

/* Adds n (pk, klen and hash set; its key not in t) at the end of the
 * order, setting its kw and flat16.  0, or -1 when the table could not
 * grow (nothing changed). */
int pd__ktab_insert(pd__ktab *t, pd__knode *n);
/* pd__ktab_insert of n once its packed key pk[0..klen) and hash are set. */
static inline int pd__ktab_add(pd__ktab *t, pd__knode *n,
                               const unsigned char *pk, size_t klen,
                               uint64_t hash) {
    n->pk = pk;
    n->klen = klen;
    n->hash = hash;
    return pd__ktab_insert(t, n);
}
/* Removes n (which is in t).  Never fails. */
void pd__ktab_remove(pd__ktab *t, pd__knode *n);
/* Forgets every node and frees the slots (the nodes are the caller's). */
void pd__ktab_reset(pd__ktab *t);
/* Makes room for n nodes in all (those in t included), so that inserting
 * up to n never grows the slots.  0, or -1 when out of memory (t
 * unchanged). */
int pd__ktab_reserve(pd__ktab *t, size_t n);
/* Forgets every node but keeps the slots, emptied, for the next use (the
 * nodes must still be valid: they locate their slots).  Never fails. */
void pd__ktab_clear(pd__ktab *t);

#endif /* PARTD_KTAB_H */
