/*
 * A key index for the Dict and the Buffer: open addressing (linear probing,
 * at most half full) over {hash, node} slots, plus a list of the nodes in
 * insertion order.
 *
 * Why not uthash: its chains reach ~10 entries before it adds buckets, so a
 * lookup among 1000 keys walked ~4 scattered entries, and every module packed
 * the key into a buffer first to hash it.  Here a key is hashed once from its
 * parts (pd__khash, no copy), the hash can be handed from a wrapper to the
 * store under it (the Buffer to its Dict), a lookup reads one 16-byte slot
 * and compares the stored packed key in place (pd__keq).
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

#include "internal.h"

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

typedef struct pd__knode {
    struct pd__knode *prev, *next; /* insertion order */
    const unsigned char *pk;       /* packed key (pd__key_pack) */
    size_t klen;
    uint64_t hash; /* pd__khash of the key */
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

/* The hash of a tuple key of 2 or more parts (ktab.c). */
uint64_t pd__khash_tuple(const pd_key *key);
/* Whether a tuple key of 2 or more parts packs to pk[0..len) (ktab.c). */
bool pd__keq_tuple(const pd_key *key, const unsigned char *pk, size_t len);

/* The key's hash: equal keys (a 1-tuple and its part alone included) hash
 * alike.  The key must have passed pd__key_check. */
static inline uint64_t pd__khash(const pd_key *key) {
    if (key->nparts == 0) return XXH3_64bits(key->data, key->size);
    if (key->nparts == 1)
        return XXH3_64bits(key->parts[0].data, key->parts[0].size);
    return pd__khash_tuple(key);
}

/* memcmp(a, b, n) == 0, inline for the short keys a shuffle uses (libc's
 * memcmp call cost more than the comparison). */
static inline bool pd__memeq(const unsigned char *a, const unsigned char *b,
                             size_t n) {
    if (n > 16) return memcmp(a, b, n) == 0;
    if (n >= 8) {
        uint64_t x0, y0, x1, y1;
        memcpy(&x0, a, 8);
        memcpy(&y0, b, 8);
        memcpy(&x1, a + n - 8, 8);
        memcpy(&y1, b + n - 8, 8);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    if (n >= 4) {
        uint32_t x0, y0, x1, y1;
        memcpy(&x0, a, 4);
        memcpy(&y0, b, 4);
        memcpy(&x1, a + n - 4, 4);
        memcpy(&y1, b + n - 4, 4);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

/* Whether `key` packs to pk[0..len), without packing it. */
static inline bool pd__keq(const pd_key *key, const unsigned char *pk,
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

/* The node of `key` (whose hash is h), or NULL. */
static inline pd__knode *pd__ktab_find(const pd__ktab *t, const pd_key *key,
                                       uint64_t h) {
    if (t->count == 0) return NULL;
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        const pd__kslot *sl = &t->slots[i];
        if (!sl->node) return NULL;
        if (sl->hash == h && pd__keq(key, sl->node->pk, sl->node->klen))
            return sl->node;
    }
}

/* Adds n (pk, klen and hash set; its key not in t) at the end of the
 * order.  0, or -1 when the table could not grow (nothing changed). */
int pd__ktab_insert(pd__ktab *t, pd__knode *n);
/* Removes n (which is in t).  Never fails. */
void pd__ktab_remove(pd__ktab *t, pd__knode *n);
/* Forgets every node and frees the slots (the nodes are the caller's). */
void pd__ktab_reset(pd__ktab *t);

#endif /* PARTD_KTAB_H */
