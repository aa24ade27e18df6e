/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: the extent arrays of a handle's index.  A shuffle's catch-up grows
 * every key's array a record at a time, so glibc's realloc ran for every
 * doubling of every key (a quarter of the index build's instructions,
 * docs/perf-log.md).  Here an array of up to LG_XPOOL_MAX extents comes
 * from a slab of arrays of its capacity: from the slab's free list, else
 * its uncarved end; a few instructions each.  A slab is LG_XSLAB bytes
 * aligned to its size, so an array's slab is its address masked.  Keys
 * that grow in step give back whole slabs of the smaller capacity, which
 * are unmapped (one is kept for the next slab needed): what the pool holds
 * beyond its arrays is about a partly used slab per capacity, and slabs
 * that arrays given back left partly empty (their free lists serve the
 * next arrays of that capacity).  Capacities are powers of 2 (at most
 * twice the extents held).
 */
#include "log/log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Under AddressSanitizer, arrays given back and slab space not carved yet
 * are poisoned: a use of an array after it moved is reported. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
#define __SANITIZE_ADDRESS__ 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define S_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define S_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define S_POISON(p, n) ((void)(p), (void)(n))
#define S_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* A slab's header, at its start; its arrays follow. */
typedef struct lg_xslab {
    struct lg_xslab *rprev, *rnext; /* in its capacity's room list */
    struct lg_xslab *aprev, *anext; /* in the pool's list of slabs */
    void *free;                     /* arrays given back, linked */
    uint32_t live;                  /* arrays given out */
    uint32_t carved;                /* arrays carved from its end so far */
    uint32_t narr;                  /* arrays it holds */
    uint32_t cls;                   /* their capacity: 1 << cls */
} lg_xslab;

#define S_HDR 64u /* the header's room (an array's alignment: 8) */

static unsigned s_class(uint32_t cap) { return (unsigned)__builtin_ctz(cap); }

/* The smallest power of 2 at or above n (n >= 1, n <= 2^31). */
static uint32_t s_pow2(uint32_t n) {
    return n <= 1 ? 1 : (uint32_t)1 << (32 - __builtin_clz(n - 1));
}

/* LG_XSLAB bytes aligned to LG_XSLAB, or NULL. */
static lg_xslab *s_map(void) {
    size_t n = 2 * LG_XSLAB;
    unsigned char *m = mmap(NULL, n, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    uintptr_t a = ((uintptr_t)m + LG_XSLAB - 1) & ~(uintptr_t)(LG_XSLAB - 1);
    size_t head = (size_t)(a - (uintptr_t)m);
    if (head) munmap(m, head);
    if (n - head > LG_XSLAB)
        munmap((unsigned char *)a + LG_XSLAB, n - head - LG_XSLAB);
    return (lg_xslab *)a;
}

static void s_room_add(lg_xpool *p, lg_xslab *s) {
    s->rprev = NULL;
    s->rnext = p->room[s->cls];
    if (s->rnext) s->rnext->rprev = s;
    p->room[s->cls] = s;
}

static void s_room_del(lg_xpool *p, lg_xslab *s) {
    if (s->rprev)
        s->rprev->rnext = s->rnext;
    else
        p->room[s->cls] = s->rnext;
    if (s->rnext) s->rnext->rprev = s->rprev;
}

/* A slab for arrays of class c, in the room and slab lists; or NULL. */
static lg_xslab *s_slab_new(lg_xpool *p, unsigned c) {
    lg_xslab *s = p->spare;
    if (s) {
        p->spare = NULL;
    } else {
        s = s_map();
        if (!s) return NULL;
        p->slab_bytes += LG_XSLAB;
    }
    memset(s, 0, sizeof *s);
    s->cls = c;
    s->narr = (uint32_t)((LG_XSLAB - S_HDR) / (sizeof(lg_ext) << c));
    S_POISON((unsigned char *)s + S_HDR, LG_XSLAB - S_HDR);
    s->anext = p->all;
    if (s->anext) s->anext->aprev = s;
    p->all = s;
    s_room_add(p, s);
    return s;
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
    lg_xslab *s = p->room[c];
    if (!s && !(s = s_slab_new(p, c))) return NULL;
    void *b = s->free;
    if (b) {
        S_UNPOISON(b, bytes);
        memcpy(&s->free, b, sizeof(void *));
    } else {
        b = (unsigned char *)s + S_HDR + (size_t)s->carved * bytes;
        s->carved++;
        S_UNPOISON(b, bytes);
    }
    s->live++;
    if (!s->free && s->carved == s->narr) s_room_del(p, s); /* full */
    p->used_bytes += bytes;
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
    lg_xslab *s = (lg_xslab *)((uintptr_t)x & ~(uintptr_t)(LG_XSLAB - 1));
    bool full = !s->free && s->carved == s->narr;
    memcpy(x, &s->free, sizeof(void *));
    S_POISON(x, bytes);
    s->free = x;
    s->live--;
    p->used_bytes -= bytes;
    if (s->live) {
        if (full) s_room_add(p, s);
        return;
    }
    /* Empty: out of the lists, kept as the spare or unmapped. */
    if (!full) s_room_del(p, s);
    if (s->aprev)
        s->aprev->anext = s->anext;
    else
        p->all = s->anext;
    if (s->anext) s->anext->aprev = s->aprev;
    if (!p->spare) {
        p->spare = s;
    } else {
        S_UNPOISON(s, LG_XSLAB);
        munmap(s, LG_XSLAB);
        p->slab_bytes -= LG_XSLAB;
    }
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
    lg_xslab *s = p->all;
    while (s) {
        lg_xslab *next = s->anext;
        S_UNPOISON(s, LG_XSLAB);
        munmap(s, LG_XSLAB);
        s = next;
    }
    if (p->spare) {
        S_UNPOISON(p->spare, LG_XSLAB);
        munmap(p->spare, LG_XSLAB);
    }
    memset(p, 0, sizeof *p);
}
