/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Dict: the in-memory store.
 *
 * A key index (ktab.h) over entries holding the packed key (pd__key_pack: a
 * 1-tuple and the flat key are one key, the tuple ('a', 'b') and "a/b" are
 * two).  A Buffer over a Dict hands it the keys' hashes it already computed
 * and the entries it found for them (pd__dict_append_refs, dict.h), so an
 * append hashes each key once and, while no entry is freed, skips the
 * lookup.
 *
 * Each entry holds its bytes as a list of chunks, header and data in one
 * block.  An append fills the free room of the key's last chunk, then puts
 * the rest in a new chunk of about 1/32 of the key's bytes (s_chunk_want),
 * or more when the rest needs it: the slack is at most one partly filled
 * chunk per key and the chunk count grows logarithmically.  A rest larger
 * than S_EXACT_MIN that does not fit such a chunk gets a malloc'd chunk of
 * its exact size.
 *
 * Chunks come from an arena (arena.h), not malloc: a fill takes a few
 * huge-page faults instead of one per 4 KiB, and freed blocks are reused
 * without a system call, for slightly more resident memory (at most the
 * 2 MiB segment being filled).  Free pages and segments go back to the
 * system at a trim (s_trim_maybe); drop and close unmap the whole arena.
 * The measurements: docs/dict-arena.md.
 *
 * `peek` answers with an array owned by the Dict, rebuilt by each peek: it
 * stays valid until the next call on the Dict (peek included).
 *
 * append is atomic: every key the batch touches gets an undo record the
 * first time (its last chunk, that chunk's size, the capacity, the total,
 * and whether the batch created it); on a failed allocation the records
 * are replayed, new chunks freed, created keys removed.
 *
 * Thread safety: every op runs with the base mutex held by the dispatcher
 * (store.c), pd__dict_append_refs with the lock held by its caller; there
 * is no other locking here.
 */
#include "dict/dict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "dict/arena.h"
#include "core/ktab.h"

/* One block: header and data, from the arena or from malloc (S_HEAP). */
typedef struct s_chunk {
    struct s_chunk *next;
    size_t size; /* bytes used; S_HEAP set when malloc'd */
    unsigned char data[];
} s_chunk;

/* The top bit of a chunk's size (and of its entry's tailcap while it is
 * the tail, so that tailcap - size stays the room): the chunk is
 * malloc'd, not an arena block.  Sizes never come near it. */
#define S_HEAP ((size_t)1 << (sizeof(size_t) * 8 - 1))

static inline size_t s_used(const s_chunk *c) { return c->size & ~S_HEAP; }

#define S_CHUNK_DIV 32u
/* The room a key's next chunk gets as it grows (s_chunk_want) is between
 * a 512-byte block and a 64 KiB one (the arena's largest, a whole page:
 * the large chunks of a deleted key free whole pages). */
#define S_CHUNK_MIN (512u - sizeof(s_chunk))
#define S_CHUNK_MAX (PD__ARENA_MAX - sizeof(s_chunk))
/* A part that does not fit the chunk its key grows by gets a malloc'd
 * chunk of its exact size when larger than this.  In the arena it would
 * be rounded up to a block (up to a fifth, slack in the key's last chunk)
 * and fill the pages of its size only in part, which raised a Buffer's
 * peak memory; below 4 KiB the arena does better (docs/dict-arena.md). */
#define S_EXACT_MIN (4096u - sizeof(s_chunk))

typedef struct s_entry {
    pd__knode kn; /* first: the index's node is the entry */
    s_chunk *head, *tail;
    size_t nchunks;
    size_t tailcap;      /* data capacity of tail (with its S_HEAP bit) */
    uint64_t total;      /* bytes held */
    uint64_t stamp;      /* batch that last recorded an undo entry */
    unsigned char key[]; /* packed key */
} s_entry;

typedef struct s_undo {
    s_entry *e;
    s_chunk *tail;
    size_t tailsize;
    size_t tailcap;
    uint64_t total;
    bool created;
} s_undo;

typedef struct s_dict {
    pd_store base;
    pd__ktab tab;
    uint64_t nbytes;
    uint64_t stamp;
    uint64_t gen; /* bumped whenever an entry is freed (pd__dict_ref) */
    s_undo *undo;
    size_t undocap;
    pd_bytes *peek; /* the answer of the last peek */
    size_t peekcap;
    s_entry **found; /* get: the entries looked up in its first pass */
    size_t foundcap;
    pd__arena arena;     /* chunk memory */
    uint64_t freed;      /* bytes freed since the last trim */
    uint64_t heap_freed; /* malloc'd bytes freed since the last malloc_trim */
    size_t nheap;        /* malloc'd chunks held */
    uint64_t trims;      /* trims (pd__dict_trims, for tests) */
    bool trim_held;      /* pd__dict_trim_hold: trims wait */
} s_dict;

static const pd_store_ops s_dict_ops;

/* ------------------------------------------------------------- Entries */

static s_entry *s_find(const s_dict *d, const pd_key *key, uint64_t h) {
    return (s_entry *)pd__ktab_find(&d->tab, key, h);
}

/* The entry of key, or NULL. */
static s_entry *s_lookup(const s_dict *d, const pd_key *key) {
    return s_find(d, key, pd__khash(key));
}

/* A new empty chunk for (the start of) `need` data bytes (need > 0) with
 * room for about `want` (<= S_CHUNK_MAX), or NULL.  *cap gets its room
 * (>= need), with the S_HEAP bit of the chunk's size. */
static s_chunk *s_chunk_new(s_dict *d, size_t need, size_t want, size_t *cap) {
    const size_t h = sizeof(s_chunk);
    s_chunk *c;
    if (need > S_CHUNK_MAX || (need > want && need > S_EXACT_MIN)) {
        /* Rounded so that header + data + malloc's own 8-byte header fill
         * whole 16-byte units (glibc): what malloc would round up becomes
         * room. */
        if (need > SIZE_MAX / 2 - 64) return NULL;
        size_t room = ((need + 7) & ~(size_t)15) + 8;
        if (!(c = malloc(h + room))) return NULL;
        d->nheap++;
        c->size = S_HEAP;
        *cap = room | S_HEAP;
    } else {
        unsigned k = pd__arena_class(h + need);
        if (want > need) {
            /* Up to want, rounded down: want is a growth policy. */
            unsigned w = pd__arena_class(h + want);
            if (pd__arena_class_size(w) > h + want && w > 0) w--;
            if (w > k) k = w;
        }
        if (!(c = pd__arena_alloc(&d->arena, k))) return NULL;
        c->size = 0;
        *cap = pd__arena_class_size(k) - h;
    }
    c->next = NULL;
    return c;
}

static void s_chunk_free(s_dict *d, s_chunk *c) {
    if (c->size & S_HEAP) {
        d->heap_freed += s_used(c);
        d->nheap--;
        free(c);
    } else {
        pd__arena_free(&d->arena, c);
    }
}

/* Frees the chunks after `keep` (all when keep is NULL); keep becomes the
 * tail. */
static void s_entry_cut(s_dict *d, s_entry *e, s_chunk *keep) {
    s_chunk *c = keep ? keep->next : e->head;
    while (c) {
        s_chunk *next = c->next;
        s_chunk_free(d, c);
        e->nchunks--;
        c = next;
    }
    if (keep)
        keep->next = NULL;
    else
        e->head = NULL;
    e->tail = keep;
}

static void s_entry_free(s_dict *d, s_entry *e) {
    s_entry_cut(d, e, NULL);
    d->heap_freed += sizeof *e + e->kn.klen;
    free(e);
}

/* A new empty entry for key (hash h) added to the index, or NULL (nothing
 * changed). */
static s_entry *s_entry_add(s_dict *d, const pd_key *key, uint64_t h) {
    size_t klen = pd__key_packed_size(key);
    s_entry *e = calloc(1, sizeof *e + klen);
    if (!e) return NULL;
    pd__key_pack(key, e->key);
    if (pd__ktab_add(&d->tab, &e->kn, e->key, klen, h)) {
        free(e);
        return NULL;
    }
    return e;
}

static void s_entry_unlink(s_dict *d, s_entry *e) {
    d->gen++;
    pd__ktab_remove(&d->tab, &e->kn);
    s_entry_free(d, e);
}

/* Memory freed by deletes goes back to the system at most once per call
 * (s_trim_maybe, at the end of a delete, set or drop: trimming as a big
 * delete shrinks the Dict cost thousands of madvise calls per shuffle),
 * and only once at least S_TRIM_MIN and an eighth of what the Dict held
 * before (what it holds now plus what was freed since the last trim) is
 * free.  Then the arena gives back every free page (blocks freed in pages
 * still in use wait for the next chunks of their size): keeping free
 * pages for a spilling Buffer's refill saved faults but not time, and
 * raised its peak memory (docs/dict-arena.md).  malloc_trim runs only when
 * S_TRIM_MIN of malloc'd memory (entries, parts of more than 4 KiB) was
 * freed: it walks the whole heap. */
#define S_TRIM_MIN (1u << 20)
/* pd__dict_expect: from this many bytes expected on, huge pages from the
 * first segment (its 2 MiB are then a small share of the bytes). */
#define S_HUGE_FIRST_MIN ((uint64_t)32 << 20)

static void s_freed(s_dict *d, uint64_t bytes) { d->freed += bytes; }

static void s_heap_trim(s_dict *d) {
    if (d->heap_freed < S_TRIM_MIN) return;
    d->heap_freed = 0;
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

static void s_trim_maybe(s_dict *d) {
    if (d->trim_held) return;
    if (d->freed < S_TRIM_MIN || d->freed < (d->nbytes + d->freed) / 8) return;
    d->freed = 0;
    d->trims++;
    pd__arena_trim(&d->arena, 0);
    s_heap_trim(d);
}

static void s_entry_remove(s_dict *d, s_entry *e) {
    s_freed(d, e->total);
    d->nbytes -= e->total;
    s_entry_unlink(d, e);
}

/* Data room wanted for the next chunk of a key that will then hold
 * `total` bytes: clamp(total/32, min(total, S_CHUNK_MIN), S_CHUNK_MAX). */
static size_t s_chunk_want(uint64_t total) {
    uint64_t c = total / S_CHUNK_DIV;
    /* A small key gets a chunk of its size, not S_CHUNK_MIN: many keys of
     * one small value each would otherwise cost several times their
     * bytes. */
    uint64_t lo = total < S_CHUNK_MIN ? total : S_CHUNK_MIN;
    if (c < lo) c = lo;
    if (c > S_CHUNK_MAX) c = S_CHUNK_MAX;
    return (size_t)c;
}

/* memcpy, inline up to 128 bytes: for the small records of a shuffle the
 * libc call and its size dispatch cost about as much as the copy.  Blocks
 * of 16 from both ends, overlapping in the middle. */
static inline void s_copy(unsigned char *dst, const unsigned char *src,
                          size_t n) {
#define S_COPY16(o) memcpy(dst + (o), src + (o), 16)
    if (n > 128) {
        memcpy(dst, src, n);
    } else if (n > 64) {
        S_COPY16(0);
        S_COPY16(16);
        S_COPY16(32);
        S_COPY16(48);
        S_COPY16(n - 64);
        S_COPY16(n - 48);
        S_COPY16(n - 32);
        S_COPY16(n - 16);
    } else if (n > 32) {
        S_COPY16(0);
        S_COPY16(16);
        S_COPY16(n - 32);
        S_COPY16(n - 16);
    } else if (n >= 16) {
        S_COPY16(0);
        S_COPY16(n - 16);
    } else if (n >= 8) {
        memcpy(dst, src, 8);
        memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n >= 4) {
        memcpy(dst, src, 4);
        memcpy(dst + n - 4, src + n - 4, 4);
    } else if (n > 0) {
        dst[0] = src[0];
        dst[n >> 1] = src[n >> 1];
        dst[n - 1] = src[n - 1];
    }
#undef S_COPY16
}

/* Appends v to e when it does not fit the room of e's last chunk (the
 * caller's fast path handles that).  On PD_ERR_NOMEM e may have had its
 * last chunk filled and new chunks added: the caller's undo record
 * restores the size and cuts them. */
static int s_entry_append(s_dict *d, s_entry *e, const pd_bytes *v) {
    const unsigned char *src = v->data;
    size_t left = v->size;
    if (left == 0) return 0;
    s_chunk *t = e->tail;
    if (t) {
        size_t take = e->tailcap - t->size;
        if (take > left) take = left;
        memcpy(t->data + s_used(t), src, take);
        t->size += take;
        src += take;
        left -= take;
    }
    if (left > 0) {
        size_t cap;
        s_chunk *c =
            s_chunk_new(d, left, s_chunk_want(e->total + v->size), &cap);
        if (!c) return PD_ERR_NOMEM;
        memcpy(c->data, src, left);
        c->size += left;
        if (t)
            t->next = c;
        else
            e->head = c;
        e->tail = c;
        e->tailcap = cap;
        e->nchunks++;
    }
    e->total += v->size;
    return 0;
}

/* ------------------------------------------------------------------ Ops */

/* The append op; refs as for pd__dict_append_refs, or NULL. */
static int s_append_refs(pd_store *s, size_t n, const pd_key *keys,
                         pd__dict_ref *const *refs, const pd_bytes *vals) {
    s_dict *d = (s_dict *)s;
    char ks[PD__KEYSHORT_MAX];
    if (n > d->undocap) {
        size_t sz;
        if (pd__mul_ovf(n, sizeof *d->undo, &sz))
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "append: undo log");
        s_undo *nu = realloc(d->undo, sz);
        if (!nu) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "append: undo log");
        d->undo = nu;
        d->undocap = n;
    }
    /* Locals: the stores below through entry and undo pointers would
     * otherwise make the compiler reload these every record. */
    const uint64_t stamp = ++d->stamp, gen = d->gen;
    s_undo *const undo = d->undo;
    uint64_t added = 0;
    size_t nundo = 0;
    int rc = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        s_entry *e;
        bool created = false;
        pd__dict_ref *ref = refs ? refs[i] : NULL;
        if (ref && ref->gen == gen && ref->ent) {
            e = ref->ent;
        } else {
            uint64_t h = ref ? ref->hash : pd__khash(&keys[i]);
            e = s_find(d, &keys[i], h);
            if (!e) {
                e = s_entry_add(d, &keys[i], h);
                created = true;
            }
            if (!e) {
                rc = PD_ERR_NOMEM;
                break;
            }
            if (ref) {
                ref->ent = e;
                ref->gen = gen; /* no entry is freed before the loop ends */
            }
        }
        s_chunk *t = e->tail;
        if (e->stamp != stamp) {
            e->stamp = stamp;
            s_undo *u = &undo[nundo++];
            u->e = e;
            u->tail = t;
            u->tailsize = t ? t->size : 0;
            u->tailcap = e->tailcap;
            u->total = e->total;
            u->created = created;
        }
        size_t len = vals[i].size;
        if (PD__LIKELY(t && len <= e->tailcap - t->size)) {
            /* The usual case: it fits the last chunk's room. */
            s_copy(t->data + s_used(t), vals[i].data, len);
            t->size += len;
            e->total += len;
        } else if (s_entry_append(d, e, &vals[i])) {
            rc = PD_ERR_NOMEM;
            break;
        }
        added += len;
    }
    if (rc == 0) {
        d->nbytes += added;
        return 0;
    }

    /* Undo the batch: every touched key back to its state before it. */
    while (nundo-- > 0) {
        s_undo *u = &undo[nundo];
        s_entry *e = u->e;
        if (u->created) {
            s_entry_unlink(d, e);
            continue;
        }
        s_entry_cut(d, e, u->tail);
        if (e->tail) e->tail->size = u->tailsize;
        e->tailcap = u->tailcap;
        e->total = u->total;
    }
    return pd__err(s, PD_ERR_NOMEM, ENOMEM,
                   "append %s: %zu bytes (batch of %zu undone)",
                   pd__key_short(&keys[i], ks), vals[i].size, n);
}

static int s_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    (void)flags;
    return s_append_refs(s, n, keys, NULL, vals);
}

static int s_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    s_dict *d = (s_dict *)s;
    char ks[PD__KEYSHORT_MAX];
    if (n > d->foundcap) {
        size_t sz;
        s_entry **nf =
            pd__mul_ovf(n, sizeof *nf, &sz) ? NULL : realloc(d->found, sz);
        if (!nf) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: key table");
        d->found = nf;
        d->foundcap = n;
    }
    /* Pass 1: find every key once and sum the sizes, so the result grows
     * once, to its exact size. */
    size_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        s_entry *e = s_lookup(d, &keys[i]);
        d->found[i] = e;
        if (e && pd__add_ovf(sum, (size_t)e->total, &sum))
            return pd__err(s, PD_ERR_LIMIT, 0,
                           "get %s: values too large for this machine",
                           pd__key_short(&keys[i], ks));
    }
    if (!pd__result_reserve(r, sum))
        return pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: result of %zu bytes",
                       sum);
    /* Pass 2: copy (no allocation: the room is reserved). */
    for (size_t i = 0; i < n; i++) {
        const s_entry *e = d->found[i];
        if (e && e->total > 0) {
            char *p = pd__result_reserve(r, (size_t)e->total);
            for (const s_chunk *c = e->head; c; c = c->next) {
                memcpy(p, c->data, s_used(c));
                p += s_used(c);
            }
            pd__result_commit(r, (size_t)e->total);
        }
        if (pd__result_next(r))
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "get %s: result table",
                           pd__key_short(&keys[i], ks));
    }
    return 0;
}

static int s_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    (void)flags;
    s_dict *d = (s_dict *)s;
    for (size_t i = 0; i < n; i++) {
        s_entry *e = s_lookup(d, &keys[i]);
        if (e) s_entry_remove(d, e);
    }
    s_trim_maybe(d);
    return 0;
}

static int s_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    (void)flags;
    s_dict *d = (s_dict *)s;
    char ks[PD__KEYSHORT_MAX];
    s_entry **ents = calloc(n, sizeof *ents);
    s_chunk **chunks = calloc(n, sizeof *chunks);
    bool *created = calloc(n, sizeof *created);
    size_t *caps = calloc(n, sizeof *caps);
    int rc = 0;
    size_t i = 0;
    if (!ents || !chunks || !created || !caps) {
        free(ents);
        free(chunks);
        free(created);
        free(caps);
        return pd__err(s, PD_ERR_NOMEM, ENOMEM, "set: key table");
    }
    /* Phase 1: allocate everything (entries for new keys, one exact-size
     * chunk per non-empty value); nothing visible changes. */
    for (i = 0; i < n; i++) {
        uint64_t h = pd__khash(&keys[i]);
        ents[i] = s_find(d, &keys[i], h);
        if (!ents[i]) {
            ents[i] = s_entry_add(d, &keys[i], h);
            created[i] = ents[i] != NULL;
        }
        if (!ents[i]) {
            rc = PD_ERR_NOMEM;
            break;
        }
        if (vals[i].size > 0) {
            size_t sz = vals[i].size;
            if (!(chunks[i] = s_chunk_new(d, sz, sz, &caps[i]))) {
                rc = PD_ERR_NOMEM;
                break;
            }
            memcpy(chunks[i]->data, vals[i].data, sz);
            chunks[i]->size += sz;
        }
    }
    if (rc) {
        /* i < n: the loop broke at key i. */
        for (size_t j = 0; j <= i; j++) {
            if (chunks[j]) s_chunk_free(d, chunks[j]);
            if (created[j]) s_entry_unlink(d, ents[j]);
        }
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "set %s: %zu bytes",
                     pd__key_short(&keys[i], ks), vals[i].size);
    } else {
        /* Phase 2: swap the new contents in (a repeated key: last wins). */
        for (i = 0; i < n; i++) {
            s_entry *e = ents[i];
            s_freed(d, e->total);
            d->nbytes -= e->total;
            s_entry_cut(d, e, NULL);
            e->head = e->tail = chunks[i];
            e->nchunks = chunks[i] ? 1 : 0;
            e->tailcap = caps[i];
            e->total = vals[i].size;
            d->nbytes += vals[i].size;
        }
    }
    s_trim_maybe(d);
    free(ents);
    free(chunks);
    free(created);
    free(caps);
    return rc;
}

/* Empties d.  The arena is unmapped whole, so only malloc'd chunks are
 * freed one by one, and the chunk lists are walked only if there are any:
 * freeing 20 MB of small chunks block by block cost a cache miss each. */
static void s_clear(s_dict *d) {
    for (pd__knode *n = d->tab.head, *next; n; n = next) {
        next = n->next;
        s_entry *e = (s_entry *)n;
        for (s_chunk *c = d->nheap ? e->head : NULL, *cn; c; c = cn) {
            cn = c->next;
            if (c->size & S_HEAP) s_chunk_free(d, c);
        }
        d->heap_freed += sizeof *e + e->kn.klen;
        free(e);
    }
    pd__arena_fini(&d->arena);
    d->gen++;
    pd__ktab_reset(&d->tab);
    uint64_t was = d->nbytes;
    d->nbytes = 0;
    s_freed(d, was);
}

static int s_drop(pd_store *s, unsigned flags) {
    (void)flags;
    s_clear((s_dict *)s);
    s_trim_maybe((s_dict *)s);
    return 0;
}

static int s_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    s_dict *d = (s_dict *)s;
    for (const pd__knode *n = d->tab.head; n; n = n->next) {
        if (pd__keylist_add_packed(kl, n->pk, n->klen,
                                   ((const s_entry *)n)->total))
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: list of %zu keys",
                           d->tab.count);
    }
    return 0;
}

static int s_peek(pd_store *s, const pd_key *key, const pd_bytes **chunks,
                  size_t *nchunks) {
    s_dict *d = (s_dict *)s;
    char ks[PD__KEYSHORT_MAX];
    s_entry *e = s_lookup(d, key);
    size_t nc = e ? e->nchunks : 0;
    if (nc > d->peekcap) {
        size_t ncap = nc + nc / 2, sz;
        if (pd__mul_ovf(ncap, sizeof *d->peek, &sz))
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "peek %s: chunk table",
                           pd__key_short(key, ks));
        pd_bytes *np = realloc(d->peek, sz);
        if (!np)
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "peek %s: chunk table",
                           pd__key_short(key, ks));
        d->peek = np;
        d->peekcap = ncap;
    }
    size_t i = 0;
    for (const s_chunk *c = e ? e->head : NULL; c; c = c->next)
        d->peek[i++] = (pd_bytes){c->data, s_used(c)};
    *chunks = d->peek;
    *nchunks = nc;
    return 0;
}

static int s_destroy(pd_store *s) {
    s_dict *d = (s_dict *)s;
    s_clear(d);
    s_heap_trim(d);
    free(d->undo);
    d->undo = NULL;
    d->undocap = 0;
    free(d->peek);
    free(d->found);
    d->peek = NULL;
    d->peekcap = 0;
    return 0;
}

static const pd_store_ops s_dict_ops = {
    PD__STORE_OPS("dict"),
    .peek = s_peek,
};

/* --------------------------------------------------------------- Public */

int pd_dict_open(pd_store **out) {
    if (!out) return pd__err(NULL, PD_ERR_MISUSE, 0, "dict: open: NULL out");
    *out = NULL;
    int rc;
    s_dict *d = pd__store_new(sizeof *d, &s_dict_ops, &rc);
    if (!d) return rc;
    pd__arena_init(&d->arena, false);
    *out = &d->base;
    pd__err_clear(NULL);
    return 0;
}

bool pd__dict_is(const pd_store *s) { return s && s->ops == &s_dict_ops; }

int pd__dict_append_refs(pd_store *s, size_t n, const pd_key *keys,
                         pd__dict_ref *const *refs, const pd_bytes *vals) {
    return s_append_refs(s, n, keys, refs, vals);
}

void pd__dict_expect(pd_store *s, uint64_t bytes) {
    if (!s || s->ops != &s_dict_ops) return;
    s_dict *d = (s_dict *)s;
    pthread_mutex_lock(&d->base.mu);
    d->arena.huge_first = bytes >= S_HUGE_FIRST_MIN;
    pthread_mutex_unlock(&d->base.mu);
}

uint64_t pd_dict_nbytes(const pd_store *s) {
    if (!s || s->ops != &s_dict_ops) return 0;
    s_dict *d = (s_dict *)s;
    return pd__store_read(&d->base, &d->nbytes);
}

void pd__dict_trim_hold(pd_store *s, bool hold) {
    if (!s || s->ops != &s_dict_ops) return;
    s_dict *d = (s_dict *)s;
    pthread_mutex_lock(&d->base.mu);
    d->trim_held = hold;
    if (!hold) s_trim_maybe(d);
    pthread_mutex_unlock(&d->base.mu);
}

/* How many times d gave free memory back to the system: for tests of the
 * trimming policy. */
uint64_t pd__dict_trims(const pd_store *s) {
    if (!s || s->ops != &s_dict_ops) return 0;
    s_dict *d = (s_dict *)s;
    return pd__store_read(&d->base, &d->trims);
}

const pd__arena *pd__dict_arena(const pd_store *s) {
    if (!s || s->ops != &s_dict_ops) return NULL;
    return &((const s_dict *)s)->arena;
}
