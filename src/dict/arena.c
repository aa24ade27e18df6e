/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The chunk allocator of arena.h: segments, pages, classes.
 */
#include "dict/arena.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"

/* Free blocks and free pages are made inaccessible to AddressSanitizer and
 * memcheck, as free() would make them. */
#if defined(__SANITIZE_ADDRESS__)
#define S_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define S_ASAN 1
#endif
#endif
#ifdef S_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define S_MEMCHECK 1
#endif
#endif

/* p[0..n) becomes accessible (contents undefined) / inaccessible.  The
 * memcheck requests only when running under valgrind (a->memcheck): they
 * cost a dozen instructions each otherwise. */
static inline void s_access(const pd__arena *a, void *p, size_t n, bool open) {
#ifdef S_ASAN
    if (open)
        ASAN_UNPOISON_MEMORY_REGION(p, n);
    else
        ASAN_POISON_MEMORY_REGION(p, n);
#endif
#ifdef S_MEMCHECK
    if (PD__UNLIKELY(a->memcheck)) {
        if (open)
            VALGRIND_MAKE_MEM_UNDEFINED(p, n);
        else
            VALGRIND_MAKE_MEM_NOACCESS(p, n);
    }
#endif
    (void)a;
    (void)p;
    (void)n;
    (void)open;
}

static inline void s_open(const pd__arena *a, void *p, size_t n) {
    s_access(a, p, n, true);
}

static inline void s_close(const pd__arena *a, void *p, size_t n) {
    s_access(a, p, n, false);
}

/* The free-list link in the first word of a free block. */
static inline void *s_link_get(const pd__arena *a, void *p) {
#ifdef S_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, sizeof(void *));
#endif
#ifdef S_MEMCHECK
    if (PD__UNLIKELY(a->memcheck)) VALGRIND_MAKE_MEM_DEFINED(p, sizeof(void *));
#endif
    (void)a;
    void *next;
    memcpy(&next, p, sizeof next);
    return next;
}

/* The segment header: in a 4 KiB page of its own right after the 2 MiB
 * of pages (outside the huge page), so that every page is whole. */
#define S_HDR ((size_t)4096)
#define S_NOCLASS 0xFF

struct pd__apage {
    pd__apage *next, *prev; /* its class's avail list (circular); or, free,
                             * its segment's free stack (next only) */
    unsigned char *start;   /* first block */
    void *free;             /* free blocks, linked through their first word */
    uint32_t bsize;         /* block size */
    uint32_t cap;           /* blocks that fit */
    uint32_t carved;        /* blocks carved so far (bump) */
    uint32_t used;          /* blocks in use */
    uint8_t cls;            /* class, S_NOCLASS when the page is free */
    bool listed;            /* in its class's avail list */
    bool resident;          /* free, used before and not given back */
};

struct pd__aseg {
    unsigned char *base;   /* the pages: base[0 .. PD__ARENA_SEG) */
    pd__aseg *next, *prev; /* a->segs, circular */
    pd__apage *freep;      /* free pages */
    uint32_t nfree;
    bool huge;
    pd__apage pages[PD__ARENA_NPAGES];
};

_Static_assert(sizeof(pd__aseg) <= S_HDR, "segment header exceeds its room");
_Static_assert(PD__ARENA_PAGE *PD__ARENA_NPAGES == PD__ARENA_SEG,
               "pages must tile the segment");
_Static_assert(PD__ARENA_MAX == PD__ARENA_PAGE, "the largest block: a page");

/* Block sizes: 16 apart up to 128, then four per doubling; from 4 KiB on,
 * sizes that tile a 64 KiB page with little left over; the last is a
 * page. */
const uint32_t pd__arena_sizes[PD__ARENA_NCLASS] = {
    32,   48,   64,    80,    96,    112,   128,   160,   192,  224,
    256,  320,  384,   448,   512,   640,   768,   896,   1024, 1280,
    1536, 1792, 2048,  2560,  3072,  3584,  4096,  4864,  5888, 7168,
    8192, 9216, 10752, 13056, 16384, 21760, 32768, 65536,
};

void pd__arena_init(pd__arena *a, bool huge_first) {
    memset(a, 0, sizeof *a);
    a->huge_first = huge_first;
#ifdef S_MEMCHECK
    a->memcheck = RUNNING_ON_VALGRIND != 0;
#endif
}

/* ------------------------------------------------------------- Segments */

static void s_seg_unlink(pd__arena *a, pd__aseg *g) {
    if (g->next == g) {
        a->segs = NULL;
    } else {
        g->prev->next = g->next;
        g->next->prev = g->prev;
        if (a->segs == g) a->segs = g->next;
    }
    g->next = g->prev = g;
    a->nsegs--;
}

/* Links g first (it has free pages) or last (it has none). */
static void s_seg_link(pd__arena *a, pd__aseg *g, bool first) {
    if (!a->segs) {
        g->next = g->prev = g;
        a->segs = g;
    } else {
        pd__aseg *h = a->segs;
        g->next = h;
        g->prev = h->prev;
        h->prev->next = g;
        h->prev = g;
        if (first) a->segs = g;
    }
    a->nsegs++;
}

/* The pages and the header page of a segment, the pages aligned to 2 MiB
 * (huge pages need it, and a block finds its segment by rounding down),
 * or NULL. */
static unsigned char *s_map(void) {
    const size_t sz = PD__ARENA_SEG, len = sz + S_HDR;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (((uintptr_t)p & (sz - 1)) == 0) return p; /* the kernel aligned it */
    munmap(p, len);
    /* Map more and cut an aligned stretch out. */
    p = mmap(NULL, len + sz, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    uintptr_t at = ((uintptr_t)p + sz - 1) & ~(uintptr_t)(sz - 1);
    size_t head = at - (uintptr_t)p;
    if (head) munmap(p, head);
    if (sz - head) munmap((void *)(at + len), sz - head);
    return (unsigned char *)at;
}

static void s_unmap(const pd__arena *a, pd__aseg *g) {
    /* The shadow of poisoned blocks would outlive the mapping. */
    s_open(a, g->base, PD__ARENA_SEG);
    munmap(g->base, PD__ARENA_SEG + S_HDR);
}

/* Bytes of g's free pages counted as resident. */
static uint64_t s_seg_idle(const pd__aseg *g) {
    uint64_t n = 0;
    for (const pd__apage *pg = g->freep; pg; pg = pg->next)
        if (pg->resident) n += PD__ARENA_PAGE;
    return n;
}

/* A segment with every page free, linked first: the spare, or a new one
 * (NULL when it cannot be mapped). */
static pd__aseg *s_seg_new(pd__arena *a) {
    pd__aseg *g = a->spare;
    if (g) {
        a->spare = NULL;
        s_seg_link(a, g, true);
        return g;
    }
    bool huge = a->huge_first || a->nsegs > 0;
    unsigned char *base = s_map();
    if (!base) return NULL;
#ifdef MADV_HUGEPAGE
    /* Advice only: without THP the segment faults in 4 KiB pages. */
    if (huge) (void)madvise(base, PD__ARENA_SEG, MADV_HUGEPAGE);
#endif
    g = (pd__aseg *)(base + PD__ARENA_SEG);
    g->base = base;
    g->huge = huge;
    g->freep = NULL;
    g->nfree = PD__ARENA_NPAGES;
    /* Stacked so that page 0 comes first: a small arena touches the low
     * pages only.  A huge page is resident as a whole from the first
     * write. */
    for (size_t i = PD__ARENA_NPAGES; i-- > 0;) {
        pd__apage *pg = &g->pages[i];
        memset(pg, 0, sizeof *pg);
        pg->cls = S_NOCLASS;
        pg->resident = huge;
        pg->next = g->freep;
        g->freep = pg;
    }
    if (huge) a->idle += PD__ARENA_SEG;
    s_seg_link(a, g, true);
    return g;
}

/* g has no page in use any more: keep it as the spare, or unmap it. */
static void s_seg_empty(pd__arena *a, pd__aseg *g) {
    s_seg_unlink(a, g);
    if (!a->spare) {
        a->spare = g;
        return;
    }
    a->idle -= s_seg_idle(g);
    s_unmap(a, g);
}

/* ---------------------------------------------------------------- Pages */

/* The avail list of a class is circular; a->avail[c] is the page
 * allocated from. */
static void s_list(pd__arena *a, pd__apage *pg, bool first) {
    pd__apage **head = &a->avail[pg->cls];
    if (!*head) {
        pg->next = pg->prev = pg;
        *head = pg;
    } else {
        pd__apage *h = *head;
        pg->next = h;
        pg->prev = h->prev;
        h->prev->next = pg;
        h->prev = pg;
        if (first) *head = pg;
    }
    pg->listed = true;
}

static void s_unlist(pd__arena *a, pd__apage *pg) {
    pd__apage **head = &a->avail[pg->cls];
    if (pg->next == pg) {
        *head = NULL;
    } else {
        pg->prev->next = pg->next;
        pg->next->prev = pg->prev;
        if (*head == pg) *head = pg->next;
    }
    pg->next = pg->prev = NULL;
    pg->listed = false;
}

static pd__aseg *s_seg_of(const void *p) {
    uintptr_t base = (uintptr_t)p & ~(uintptr_t)(PD__ARENA_SEG - 1);
    return (pd__aseg *)(base + PD__ARENA_SEG);
}

/* A free page set up for class c and listed first, or NULL. */
static pd__apage *s_page_take(pd__arena *a, unsigned c) {
    pd__aseg *g = a->segs;
    if (!g || g->nfree == 0) g = s_seg_new(a);
    if (!g) return NULL;
    pd__apage *pg = g->freep;
    g->freep = pg->next;
    if (--g->nfree == 0 && a->nsegs > 1) {
        /* No free page left: behind the segments that have some. */
        s_seg_unlink(a, g);
        s_seg_link(a, g, false);
    }
    if (pg->resident) a->idle -= PD__ARENA_PAGE;
    pg->start = g->base + (size_t)(pg - g->pages) * PD__ARENA_PAGE;
    pg->free = NULL;
    pg->bsize = pd__arena_sizes[c];
    pg->cap = (uint32_t)(PD__ARENA_PAGE / pd__arena_sizes[c]);
    pg->carved = 0;
    pg->used = 0;
    pg->cls = (uint8_t)c;
    pg->resident = false;
    /* Blocks become accessible as they are handed out. */
    s_close(a, pg->start, PD__ARENA_PAGE);
    a->pages++;
    s_list(a, pg, true);
    return pg;
}

/* pg (of g) has no block in use: back to g's free pages. */
static void s_page_retire(pd__arena *a, pd__aseg *g, pd__apage *pg) {
    if (pg->listed) s_unlist(a, pg);
    s_close(a, pg->start, PD__ARENA_PAGE);
    pg->cls = S_NOCLASS;
    pg->free = NULL;
    pg->resident = true;
    a->idle += PD__ARENA_PAGE;
    a->pages--;
    pg->next = g->freep;
    g->freep = pg;
    if (++g->nfree == PD__ARENA_NPAGES) {
        s_seg_empty(a, g);
    } else if (g->nfree == 1 && a->segs != g) {
        /* It has a free page again: where s_page_take looks first. */
        s_seg_unlink(a, g);
        s_seg_link(a, g, true);
    }
}

/* --------------------------------------------------------------- Blocks */

void *pd__arena_alloc(pd__arena *a, unsigned c) {
    pd__apage *pg = a->avail[c];
    if (PD__UNLIKELY(!pg)) {
        pg = s_page_take(a, c);
        if (!pg) return NULL;
    }
    void *p;
    if (pg->free) {
        p = pg->free;
        pg->free = s_link_get(a, p);
    } else {
        p = pg->start + (size_t)pg->carved++ * pg->bsize;
    }
    s_open(a, p, pg->bsize);
    a->used += pg->bsize;
    if (++pg->used == pg->cap) s_unlist(a, pg);
    return p;
}

void pd__arena_free(pd__arena *a, void *p) {
    pd__aseg *g = s_seg_of(p);
    pd__apage *pg =
        &g->pages[((uintptr_t)p & (PD__ARENA_SEG - 1)) / PD__ARENA_PAGE];
    assert(pg->cls != S_NOCLASS && pg->used > 0);
    a->used -= pg->bsize;
    if (--pg->used == 0) {
        s_page_retire(a, g, pg);
        return;
    }
    memcpy(p, &pg->free, sizeof pg->free);
    s_close(a, p, pg->bsize);
    pg->free = p;
    /* Was full: allocate from it once the current page is full, so that
     * freed room is filled before fresh pages are taken. */
    if (!pg->listed) s_list(a, pg, false);
}

/* -------------------------------------------------------------- Release */

void pd__arena_trim(pd__arena *a, uint64_t keep) {
    if (a->idle <= keep) return;
    if (a->spare) {
        uint64_t n = s_seg_idle(a->spare);
        a->idle -= n;
        a->released += n;
        s_unmap(a, a->spare);
        a->spare = NULL;
    }
    pd__aseg *g = a->segs;
    for (size_t k = 0; k < a->nsegs && a->idle > keep; k++, g = g->next) {
        if (g->nfree == 0) continue;
#ifdef MADV_NOHUGEPAGE
        /* The madvise below splits the huge page; khugepaged would later
         * collapse it again, pages given back included. */
        if (g->huge) (void)madvise(g->base, PD__ARENA_SEG, MADV_NOHUGEPAGE);
#endif
        g->huge = false;
        /* Runs of free resident pages, one madvise each. */
        size_t i = 0;
        while (i < PD__ARENA_NPAGES && a->idle > keep) {
            pd__apage *pg = &g->pages[i];
            if (pg->cls != S_NOCLASS || !pg->resident) {
                i++;
                continue;
            }
            size_t j = i;
            while (j < PD__ARENA_NPAGES && g->pages[j].cls == S_NOCLASS &&
                   g->pages[j].resident) {
                g->pages[j].resident = false;
                j++;
            }
            (void)madvise(g->base + i * PD__ARENA_PAGE,
                          (j - i) * PD__ARENA_PAGE, MADV_DONTNEED);
            uint64_t n = (uint64_t)(j - i) * PD__ARENA_PAGE;
            a->idle -= n;
            a->released += n;
            i = j;
        }
    }
}

void pd__arena_fini(pd__arena *a) {
    while (a->segs) {
        pd__aseg *g = a->segs;
        s_seg_unlink(a, g);
        s_unmap(a, g);
    }
    if (a->spare) s_unmap(a, a->spare);
    bool huge_first = a->huge_first, memcheck = a->memcheck;
    uint64_t released = a->released;
    memset(a, 0, sizeof *a);
    a->huge_first = huge_first;
    a->memcheck = memcheck;
    a->released = released;
}

uint64_t pd__arena_mapped(const pd__arena *a) {
    return ((uint64_t)a->nsegs + (a->spare ? 1 : 0)) * PD__ARENA_SEG;
}

/* ---------------------------------------------------------------- Check */

#define S_FAIL(...)                                                            \
    do {                                                                       \
        snprintf(why, cap, __VA_ARGS__);                                       \
        return -1;                                                             \
    } while (0)

int pd__arena_check(const pd__arena *a, char *why, size_t cap) {
    uint64_t used = 0, pages = 0, idle = 0;
    bool seen_full = false;
    const pd__aseg *g = a->segs;
    for (size_t k = 0; k < a->nsegs; k++, g = g->next) {
        if (((uintptr_t)g->base & (PD__ARENA_SEG - 1)) != 0 ||
            (unsigned char *)g != g->base + PD__ARENA_SEG)
            S_FAIL("segment %zu not aligned", k);
        if (g->next->prev != g) S_FAIL("segment %zu: broken links", k);
        if (g->nfree == 0)
            seen_full = true;
        else if (seen_full && a->nsegs > 1)
            S_FAIL("segment %zu has free pages behind a full one", k);
        uint32_t nfree = 0;
        for (const pd__apage *pg = g->freep; pg; pg = pg->next) {
            if (pg->cls != S_NOCLASS) S_FAIL("segment %zu: used page free", k);
            if (++nfree > PD__ARENA_NPAGES) S_FAIL("segment %zu: loop", k);
        }
        if (nfree != g->nfree)
            S_FAIL("segment %zu: %u free pages, counted %u", k, nfree,
                   g->nfree);
        if (nfree == PD__ARENA_NPAGES) S_FAIL("segment %zu: empty", k);
        for (size_t i = 0; i < PD__ARENA_NPAGES; i++) {
            const pd__apage *pg = &g->pages[i];
            if (pg->cls == S_NOCLASS) {
                if (pg->resident) idle += PD__ARENA_PAGE;
                continue;
            }
            pages++;
            used += (uint64_t)pg->used * pg->bsize;
            if (pg->used == 0 || pg->used > pg->cap || pg->carved > pg->cap)
                S_FAIL("segment %zu page %zu: used %u carved %u cap %u", k, i,
                       pg->used, pg->carved, pg->cap);
            uint32_t nf = 0;
            for (void *b = pg->free; b;) {
                if (++nf > pg->carved) S_FAIL("page %zu: free loop", i);
                void *next = s_link_get(a, b);
                s_close(a, b, sizeof next);
                b = next;
            }
            if (pg->used + nf != pg->carved)
                S_FAIL("segment %zu page %zu: %u used + %u free != %u carved",
                       k, i, pg->used, nf, pg->carved);
            if (pg->listed != (pg->used < pg->cap))
                S_FAIL("segment %zu page %zu: listed %d with %u/%u used", k, i,
                       pg->listed, pg->used, pg->cap);
        }
    }
    for (const pd__apage *pg = a->spare ? a->spare->freep : NULL; pg;
         pg = pg->next)
        if (pg->resident) idle += PD__ARENA_PAGE;
    if (used != a->used)
        S_FAIL("used %llu, counted %llu", (unsigned long long)used,
               (unsigned long long)a->used);
    if (pages != a->pages)
        S_FAIL("pages %llu, counted %llu", (unsigned long long)pages,
               (unsigned long long)a->pages);
    if (idle != a->idle)
        S_FAIL("idle %llu, counted %llu", (unsigned long long)idle,
               (unsigned long long)a->idle);
    for (unsigned c = 0; c < PD__ARENA_NCLASS; c++) {
        const pd__apage *h = a->avail[c], *pg = h;
        size_t n = 0;
        while (pg) {
            if (pg->cls != c || !pg->listed || pg->used >= pg->cap)
                S_FAIL("class %u: a page in its list has no room", c);
            if (++n > a->pages) S_FAIL("class %u: list loop", c);
            pg = pg->next == h ? NULL : pg->next;
        }
    }
    return 0;
}
