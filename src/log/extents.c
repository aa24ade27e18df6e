/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: the extent arrays of a handle's index.  A shuffle's catch-up grows
 * every key's array a record at a time, so glibc's realloc ran for every
 * doubling of every key (a quarter of the index build's instructions,
 * docs/perf-notes.md).  Here an array of up to LG_XPOOL_MAX extents comes
 * from a free list of its capacity, else from the current slab (a pointer
 * bump), and a grown key's old array goes onto its list: a few
 * instructions each, and the index frees its slabs at once.  Capacities are
 * powers of 2 (at most twice the extents held); the lists keep what grown
 * keys left behind for keys that reach that capacity later, as glibc's
 * bins would (they are not merged, and not returned before the index
 * goes).
 */
#include "log/log.h"

#include <stdlib.h>
#include <string.h>

/* Slabs start with the link to the previous one; blocks follow, 8-aligned
 * (an extent is 40 bytes). */
#define S_SLAB_HDR 16u

static unsigned s_class(uint32_t cap) { return (unsigned)__builtin_ctz(cap); }

/* The smallest power of 2 at or above n (n >= 1, n <= 2^31). */
static uint32_t s_pow2(uint32_t n) {
    return n <= 1 ? 1 : (uint32_t)1 << (32 - __builtin_clz(n - 1));
}

/* An array of cap extents (a power of 2), or NULL. */
static lg_ext *s_alloc(lg_xpool *p, uint32_t cap) {
    size_t bytes = (size_t)cap * sizeof(lg_ext);
    if (cap > LG_XPOOL_MAX) {
        lg_ext *x = malloc(bytes);
        if (x) p->big_bytes += bytes;
        return x;
    }
    unsigned c = s_class(cap);
    void *b = p->free[c];
    if (b) {
        memcpy(&p->free[c], b, sizeof(void *));
        p->free_bytes -= bytes;
        return b;
    }
    if (p->left < bytes) {
        /* A new slab; what is left of the current one (less than this
         * block) is given up. */
        unsigned char *s = malloc(LG_XSLAB);
        if (!s) return NULL;
        memcpy(s, &p->slabs, sizeof(void *));
        p->slabs = s;
        p->slab_bytes += LG_XSLAB;
        p->bump = s + S_SLAB_HDR;
        p->left = LG_XSLAB - S_SLAB_HDR;
    }
    b = p->bump;
    p->bump += bytes;
    p->left -= bytes;
    return b;
}

/* Gives back x, an array of cap extents. */
static void s_give(lg_xpool *p, lg_ext *x, uint32_t cap) {
    if (!x) return;
    size_t bytes = (size_t)cap * sizeof(lg_ext);
    if (cap > LG_XPOOL_MAX) {
        free(x);
        p->big_bytes -= bytes;
        return;
    }
    unsigned c = s_class(cap);
    memcpy(x, &p->free[c], sizeof(void *));
    p->free[c] = x;
    p->free_bytes += bytes;
}

int lg_ext_grow(lg_xpool *p, lg_key *k, uint32_t need) {
    if (need <= k->cap) return 0;
    if (need > (uint32_t)1 << 31) return PD_ERR_NOMEM;
    uint32_t nc = s_pow2(need);
    if (k->cap && nc < k->cap * 2) nc = k->cap * 2;
    lg_ext *x;
    if (k->cap > LG_XPOOL_MAX) { /* malloc'd both: realloc may not copy */
        x = realloc(k->ext, (size_t)nc * sizeof *x);
        if (!x) return PD_ERR_NOMEM;
        p->big_bytes += ((size_t)nc - k->cap) * sizeof *x;
    } else {
        x = s_alloc(p, nc);
        if (!x) return PD_ERR_NOMEM;
        if (k->n) memcpy(x, k->ext, (size_t)k->n * sizeof *x);
        s_give(p, k->ext, k->cap);
    }
    k->ext = x;
    k->cap = nc;
    return 0;
}

void lg_ext_release(lg_xpool *p, lg_key *k) {
    s_give(p, k->ext, k->cap);
    k->ext = NULL;
    k->n = k->cap = 0;
}

void lg_ext_fit(lg_xpool *p, lg_key *k) {
    if (k->n == 0) {
        lg_ext_release(p, k);
        return;
    }
    if (k->cap < 4 || k->n > k->cap / 4) return;
    uint32_t nc = s_pow2(k->n);
    lg_ext *x = s_alloc(p, nc);
    if (!x) return;
    memcpy(x, k->ext, (size_t)k->n * sizeof *x);
    s_give(p, k->ext, k->cap);
    k->ext = x;
    k->cap = nc;
}

void lg_xpool_free(lg_xpool *p) {
    void *s = p->slabs;
    while (s) {
        void *prev;
        memcpy(&prev, s, sizeof prev);
        free(s);
        s = prev;
    }
    memset(p, 0, sizeof *p);
}
