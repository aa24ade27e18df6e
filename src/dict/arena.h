/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Dict's chunk memory: a small-block allocator over 2 MiB segments that
 * the kernel can back with transparent huge pages.  Not part of the API.
 *
 * Why not malloc: filling fresh malloc'd memory takes a page fault per
 * 4 KiB and giving it back costs as much again.  A segment here is one
 * 2 MiB-aligned mapping advised MADV_HUGEPAGE (one fault), a freed block is
 * reused by the next block of its size without a system call, and dropping
 * a Dict unmaps a few segments.  Figures: docs/dict-arena.md.
 *
 * Layout (the mimalloc scheme, much simplified): a segment is 32 pages of
 * 64 KiB, then a 4 KiB page with its header (outside the huge page).  Each
 * page in use serves one size class (pd__arena_sizes: 32 bytes to 64 KiB,
 * four per doubling), carving blocks by bumping, then recycling them
 * through a free list.  A wholly free page may serve any class next; a
 * wholly free segment is unmapped (one kept as a spare against churn at a
 * boundary).  A block's segment is its address rounded down to 2 MiB.
 *
 * Held beyond the blocks in use: one partly carved page per class in use,
 * free blocks of partly used pages, free pages until pd__arena_trim, and
 * with huge pages the whole segment being filled.  Huge pages are asked
 * for from the second segment on, or from the first when the owner expects
 * megabytes (pd__arena_init), so a small Dict stays in 4 KiB pages.  A
 * trim splits the huge pages of the segments it gives pages back from and
 * advises them MADV_NOHUGEPAGE, so that khugepaged does not collapse them
 * again (which made peak RSS vary from run to run).
 *
 * Not thread-safe: the owning Dict's mutex protects it.  Without
 * MADV_HUGEPAGE (or with THP "never") it still works, with 4 KiB faults.
 * Under AddressSanitizer and valgrind (memcheck) free blocks and pages are
 * marked inaccessible, so use after free is reported as with malloc.
 */
#ifndef PARTD_ARENA_H
#define PARTD_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD__ARENA_SEG ((size_t)2 << 20) /* segment size and alignment */
#define PD__ARENA_PAGE ((size_t)64 << 10)
#define PD__ARENA_NPAGES 32 /* PD__ARENA_SEG / PD__ARENA_PAGE */
#define PD__ARENA_NCLASS 38
#define PD__ARENA_MAX ((size_t)65536) /* largest block: a page */

typedef struct pd__apage pd__apage;
typedef struct pd__aseg pd__aseg;

typedef struct pd__arena {
    pd__apage *avail[PD__ARENA_NCLASS]; /* pages of a class with room */
    pd__aseg *segs;    /* every segment, those with free pages first */
    pd__aseg *spare;   /* a segment with no page in use (not in segs) */
    size_t nsegs;      /* in segs */
    uint64_t used;     /* bytes of the blocks in use */
    uint64_t pages;    /* pages in use (serving a class) */
    uint64_t idle;     /* free pages (spare's included) resident: used
                        * before, or in a huge segment, and not given
                        * back */
    uint64_t released; /* bytes given back by pd__arena_trim, ever */
    bool huge_first;   /* huge pages from the first segment on */
    bool memcheck;     /* running under valgrind: mark free blocks */
} pd__arena;

extern const uint32_t pd__arena_sizes[PD__ARENA_NCLASS];

/* An empty arena (no memory yet).  huge_first: ask for huge pages from
 * the first segment (the owner expects to hold megabytes; a first segment
 * used by a few small keys then costs 2 MiB resident). */
void pd__arena_init(pd__arena *a, bool huge_first);

/* The class of a block of `size` bytes (1 <= size <= PD__ARENA_MAX): the
 * smallest whose blocks hold it.  Inline, computed: 16 apart up to 128,
 * four per doubling up to 8 KiB (the table's 4864 and 5888, chosen to
 * tile a page, sit below 5120 and 6144: one step up fixes those). */
static inline unsigned pd__arena_class(size_t size) {
    unsigned c;
    if (size <= 128) {
        c = size <= 32 ? 0 : (unsigned)((size + 15) >> 4) - 2;
    } else if (size <= 8192) {
        size_t s = size - 1;
        unsigned e = 63u - (unsigned)__builtin_clzll((unsigned long long)s);
        c = 7 + (e - 7) * 4 + (unsigned)((s >> (e - 2)) & 3);
    } else {
        c = 31;
    }
    while (pd__arena_sizes[c] < size) c++;
    return c;
}

/* The block size of class c (c < PD__ARENA_NCLASS), a multiple of 16. */
static inline size_t pd__arena_class_size(unsigned c) {
    return pd__arena_sizes[c];
}

/* A block of class c (16-byte aligned, contents undefined), or NULL when
 * a new segment cannot be mapped (nothing changed). */
void *pd__arena_alloc(pd__arena *a, unsigned c);
/* Frees a block from pd__arena_alloc on a.  Never fails. */
void pd__arena_free(pd__arena *a, void *p);

/* Gives free pages back to the system until at most `keep` bytes of them
 * stay resident: the spare segment first, then pages, lowest segment
 * first.  Blocks in use are untouched. */
void pd__arena_trim(pd__arena *a, uint64_t keep);

/* Unmaps every segment.  Blocks still in use become invalid.  The arena
 * is empty afterwards (usable again). */
void pd__arena_fini(pd__arena *a);

/* Bytes mapped (segments, spare included). */
uint64_t pd__arena_mapped(const pd__arena *a);

/* Checks a's lists and counts (for tests: walks everything).  0, or -1
 * with the first inconsistency written to why (cap bytes). */
int pd__arena_check(const pd__arena *a, char *why, size_t cap);

#endif /* PARTD_ARENA_H */
