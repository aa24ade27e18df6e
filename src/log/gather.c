/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: a get of several keys reads their extents together.  A Log not
 * compacted yet holds a key as one extent per record that wrote it, and a
 * record holds the values of its batch side by side, so a reader asking for
 * neighbouring partitions finds their extents next to each other in every
 * record.  The extents of all the keys asked are put in file order (grouped
 * by record, the records ordered by segment and offset) and each run of
 * extents lying together (gaps of at most LG_GATHER_GAP bytes, read into a
 * scratch buffer, spanning at most LG_GATHER_RUN bytes) is read with one
 * system call: straight into the extents' places in the result (preadv),
 * or, for small extents, into one staging buffer and copied from there (the
 * kernel's copy into many small buffers costs more than a copy each), where
 * a key at a time costs a read per extent or a copy through a window
 * (rcache.c).  Each run's checksums are checked as soon as it is read,
 * while its bytes are in the cache.
 */
#include "log/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <xxhash.h>

/* An extent to read: where it goes (bytes past the first key's start). */
typedef struct s_item {
    lg_ext x; /* a copy: the keys' arrays lie all over the heap */
    size_t dst;
    uint32_t key; /* its key's index in the batch */
    uint32_t rec; /* its record's index in s_gather.recs */
} s_item;

/* A record (a sequence number) some extents of the batch lie in. */
typedef struct s_rec {
    uint64_t seq, off; /* off: its first extent's, once sorted */
    uint32_t seg;
    uint32_t start, n; /* its extents in the ordered array */
} s_rec;

/* Kept in the handle between gets (up to S_KEEP extents' worth). */
typedef struct lg_gather {
    s_item *items, *ord;
    struct iovec *iov;  /* twice as many */
    const s_item **run; /* a run's extents, in file order */
    size_t nitems, cap;
    s_rec *recs;
    uint32_t nrecs, caprecs;
    uint32_t *slots; /* open addressing: seq -> index in recs, +1 (0: free) */
    uint32_t mask;
    unsigned char *scratch; /* LG_GATHER_GAP bytes for gaps (not kept) */
    unsigned char *stage;   /* LG_GATHER_RUN bytes for small extents */
} s_gather;

#define S_KEEP ((size_t)1 << 17) /* extents whose arrays a handle keeps */

static int s_ext_cmp(const lg_ext *a, const lg_ext *b) {
    if (a->seg != b->seg) return a->seg < b->seg ? -1 : 1;
    if (a->off != b->off) return a->off < b->off ? -1 : 1;
    return 0;
}

static int s_item_cmp(const void *pa, const void *pb) {
    const s_item *a = pa, *b = pb;
    int c = s_ext_cmp(&a->x, &b->x);
    if (c) return c;
    return a->key < b->key ? -1 : a->key > b->key;
}

static int s_rec_cmp(const void *pa, const void *pb) {
    const s_rec *a = pa, *b = pb;
    if (a->seg != b->seg) return a->seg < b->seg ? -1 : 1;
    if (a->off != b->off) return a->off < b->off ? -1 : 1;
    return 0;
}

static uint32_t s_slot_of(uint64_t seq, uint32_t mask) {
    return (uint32_t)((seq * 0x9e3779b97f4a7c15u) >> 32) & mask;
}

/* Doubles the record table (at least 64 slots, at most half full). */
static int s_grow_slots(s_gather *g) {
    uint32_t n = (g->mask + 1) * 2;
    uint32_t *ns = calloc(n, sizeof *ns);
    if (!ns) return PD_ERR_NOMEM;
    for (uint32_t i = 0; i < g->nrecs; i++) {
        uint32_t s = s_slot_of(g->recs[i].seq, n - 1);
        while (ns[s]) s = (s + 1) & (n - 1);
        ns[s] = i + 1;
    }
    free(g->slots);
    g->slots = ns;
    g->mask = n - 1;
    return 0;
}

/* The index in recs of the record of sequence number seq (added when new),
 * or -1 when out of memory. */
static int64_t s_rec_of(s_gather *g, uint64_t seq) {
    uint32_t s = s_slot_of(seq, g->mask);
    for (; g->slots[s]; s = (s + 1) & g->mask)
        if (g->recs[g->slots[s] - 1].seq == seq) return g->slots[s] - 1;
    if (g->nrecs == g->caprecs) {
        uint32_t nc = g->caprecs ? g->caprecs * 2 : 64;
        s_rec *nr = realloc(g->recs, nc * sizeof *nr);
        if (!nr) return -1;
        g->recs = nr;
        g->caprecs = nc;
    }
    g->recs[g->nrecs] = (s_rec){seq, 0, 0, 0, 0};
    g->slots[s] = ++g->nrecs;
    if (g->nrecs * 2 > g->mask + 1 && s_grow_slots(g)) return -1;
    return g->nrecs - 1;
}

/* Puts the items in file order into g->ord: by record (a counting sort,
 * stable: in a record the batch's keys stay in their order, which is
 * usually the record's own), each record's extents sorted if they are not
 * in order already, the records by segment and offset. */
static int s_order(s_gather *g) {
    g->nrecs = 0;
    memset(g->slots, 0, ((size_t)g->mask + 1) * sizeof *g->slots);
    for (size_t i = 0; i < g->nitems; i++) {
        int64_t r = s_rec_of(g, g->items[i].x.seq);
        if (r < 0) return PD_ERR_NOMEM;
        g->items[i].rec = (uint32_t)r;
        g->recs[r].n++;
    }
    uint32_t at = 0;
    for (uint32_t r = 0; r < g->nrecs; r++) {
        g->recs[r].start = at;
        at += g->recs[r].n;
        g->recs[r].n = 0;
    }
    for (size_t i = 0; i < g->nitems; i++) {
        s_rec *r = &g->recs[g->items[i].rec];
        g->ord[r->start + r->n++] = g->items[i];
    }
    bool sorted = true;
    for (uint32_t r = 0; r < g->nrecs; r++) {
        s_item *it = g->ord + g->recs[r].start;
        uint32_t n = g->recs[r].n;
        for (uint32_t j = 1; j < n; j++)
            if (s_ext_cmp(&it[j - 1].x, &it[j].x) > 0) {
                qsort(it, n, sizeof *it, s_item_cmp);
                break;
            }
        g->recs[r].seg = it[0].x.seg;
        g->recs[r].off = it[0].x.off;
        if (r && s_rec_cmp(&g->recs[r - 1], &g->recs[r]) > 0) sorted = false;
    }
    if (!sorted) qsort(g->recs, g->nrecs, sizeof *g->recs, s_rec_cmp);
    return 0;
}

/* Drops the extents' arrays. */
static void s_drop_arrays(s_gather *g) {
    free(g->items);
    free(g->ord);
    free(g->iov);
    free(g->run);
    g->items = g->ord = NULL;
    g->iov = NULL;
    g->run = NULL;
    g->cap = 0;
}

void lg_gather_free(lg_store *l) {
    s_gather *g = l->gather;
    if (!g) return;
    s_drop_arrays(g);
    free(g->recs);
    free(g->slots);
    free(g->scratch);
    free(g->stage);
    free(g);
    l->gather = NULL;
}

/* The handle's gather state with room for n extents, or NULL. */
static s_gather *s_gather_for(lg_store *l, size_t n) {
    s_gather *g = l->gather;
    if (!g) {
        g = l->gather = calloc(1, sizeof *g);
        if (!g) return NULL;
        g->mask = 31;
        if (!(g->slots = calloc(32, sizeof *g->slots))) {
            lg_gather_free(l);
            return NULL;
        }
    }
    if (n > g->cap) {
        s_drop_arrays(g);
        g->items = malloc(n * sizeof *g->items);
        g->ord = malloc(n * sizeof *g->ord);
        g->iov = malloc(n * 2 * sizeof *g->iov);
        g->run = malloc(n * sizeof *g->run);
        if (!g->items || !g->ord || !g->iov || !g->run) {
            s_drop_arrays(g);
            return NULL;
        }
        g->cap = n;
    }
    g->nitems = 0;
    return g;
}

/* The error of a run that could not be read whole: got bytes of want from
 * item it on. */
static int s_read_err(lg_store *l, const pd_key *keys, const s_item *it,
                      size_t got, size_t want, const char *op) {
    char kb[PD__KEYSHORT_MAX];
    const lg_seg *s = &l->segs[it->x.seg];
    if (got < want && errno)
        return pd__err(&l->base, PD_ERR_IO, errno,
                       "%s %s: preadv(%s/%s) at %llu", op,
                       pd__key_short(&keys[it->key], kb), l->path, s->name,
                       (unsigned long long)it->x.off);
    return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                   "%s %s: %s/%s ends before offset %llu (truncated?)", op,
                   pd__key_short(&keys[it->key], kb), l->path, s->name,
                   (unsigned long long)(it->x.off + want));
}

/* Reads the run g->iov[0..niov) describes, `span` bytes at off of fd, and
 * returns the bytes read.  Small extents (a kernel copy into many small
 * buffers costs more per byte than a copy into one buffer and a memcpy
 * each) go into g->stage (then *staged), to be copied from there; the
 * others straight into their places. */
static size_t s_read_run(s_gather *g, int fd, size_t niov, size_t next,
                         uint64_t off, size_t span, bool *staged) {
    *staged = next > 1 && span / next < LG_GATHER_SMALL &&
              span <= LG_GATHER_RUN &&
              (g->stage || (g->stage = aligned_alloc(4096, LG_GATHER_RUN)));
    if (*staged) {
        struct iovec one = {g->stage, span};
        return pd__preadv_all(fd, &one, 1, off);
    }
    return pd__preadv_all(fd, g->iov, niov, off);
}

/* Reads every item of g->ord into dst, a run at a time: extents of one
 * segment lying at most LG_GATHER_GAP apart, spanning at most
 * LG_GATHER_RUN bytes (or one extent). */
static int s_read_runs(lg_store *l, s_gather *g, const pd_key *keys, char *dst,
                       const char *op) {
    for (uint32_t r = 0; r < g->nrecs;) {
        /* A run: from record r's first extent, while the next extent (in
         * this record or the following ones) fits. */
        const s_item *first = &g->ord[g->recs[r].start];
        uint64_t start = first->x.off, end = start;
        uint32_t seg = first->x.seg;
        size_t niov = 0, next = 0;
        for (; r < g->nrecs; r++) {
            const s_item *it = &g->ord[g->recs[r].start];
            uint32_t n = g->recs[r].n, j = 0;
            for (; j < n; j++) {
                const lg_ext *x = &it[j].x;
                if (next && (x->seg != seg || x->off < end ||
                             x->off - end > LG_GATHER_GAP ||
                             x->off + x->len - start > LG_GATHER_RUN))
                    break;
                if (x->off > end) {
                    if (!g->scratch && !(g->scratch = malloc(LG_GATHER_GAP)))
                        break; /* no gap then: a run of its own */
                    g->iov[niov++] = (struct iovec){g->scratch, x->off - end};
                }
                g->iov[niov++] = (struct iovec){dst + it[j].dst, x->len};
                g->run[next++] = &it[j];
                end = x->off + x->len;
            }
            if (j < n) { /* the run ends inside record r: split it */
                if (j > 0) {
                    g->recs[r].start += j;
                    g->recs[r].n -= j;
                }
                break;
            }
        }
        size_t want = (size_t)(end - start);
        bool staged;
        size_t got =
            s_read_run(g, l->segs[seg].fd, niov, next, start, want, &staged);
        if (got != want) return s_read_err(l, keys, first, got, want, op);
        /* The checksums (and the copies out of the staging buffer) while
         * the bytes are in the cache, in file order. */
        for (size_t i = 0; i < next; i++) {
            const s_item *it = g->run[i];
            const lg_ext *x = &it->x;
            const char *src = staged ? (const char *)g->stage + (x->off - start)
                                     : dst + it->dst;
            if (staged) memcpy(dst + it->dst, src, (size_t)x->len);
            if (XXH3_64bits(src, (size_t)x->len) != x->hash) {
                char kb[PD__KEYSHORT_MAX];
                return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                               "%s %s: %llu bytes at offset %llu of %s/%s "
                               "fail their checksum",
                               op, pd__key_short(&keys[it->key], kb),
                               (unsigned long long)x->len,
                               (unsigned long long)x->off, l->path,
                               l->segs[x->seg].name);
            }
        }
    }
    return 0;
}

int lg_read_keys(lg_store *l, size_t n, const lg_key *const *ks,
                 const pd_key *keys, pd_result *r, const char *op) {
    char kb[PD__KEYSHORT_MAX];
    uint64_t total = 0;
    size_t nitems = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ks[i]) continue;
        total += ks[i]->size;
        nitems += ks[i]->n;
    }
    if (total > SIZE_MAX / 2 || nitems >= UINT32_MAX)
        return pd__err(&l->base, PD_ERR_LIMIT, 0,
                       "%s %s (%zu keys): %llu bytes in %zu extents", op,
                       pd__key_short(&keys[0], kb), n,
                       (unsigned long long)total, nitems);
    if (total == 0) /* empty values only: nothing to read */
        nitems = 0;
    char *dst = pd__result_reserve(r, (size_t)total);
    s_gather *g = s_gather_for(l, nitems ? nitems : 1);
    if ((!dst && total) || !g)
        return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM,
                       "%s %s (%zu keys): %llu bytes in %zu extents", op,
                       pd__key_short(&keys[0], kb), n,
                       (unsigned long long)total, nitems);
    size_t at = 0;
    for (size_t i = 0; nitems && i < n; i++) {
        const lg_key *k = ks[i];
        if (i + 2 < n && ks[i + 2] && ks[i + 2]->ext) { /* all over the heap */
            const char *e = (const char *)ks[i + 2]->ext;
            for (unsigned c = 0; c < 4; c++) __builtin_prefetch(e + c * 64);
        }
        for (uint32_t j = 0; k && j < k->n; j++) {
            g->items[g->nitems++] = (s_item){k->ext[j], at, (uint32_t)i, 0};
            at += (size_t)k->ext[j].len;
        }
    }
    int rc = s_order(g);
    if (rc)
        rc = pd__err(&l->base, rc, ENOMEM, "%s %s (%zu keys): %zu extents", op,
                     pd__key_short(&keys[0], kb), n, nitems);
    if (rc == 0) rc = s_read_runs(l, g, keys, dst, op);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        pd__result_commit(r, ks[i] ? (size_t)ks[i]->size : 0);
        if (pd__result_next(r))
            rc = pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: result", op);
    }
    if (g->cap > S_KEEP) s_drop_arrays(g);
    return rc;
}
