/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * What the Buffer spills and how: the per-key counts of what it put in fast,
 * the set of keys it spilled (PD_BUFFER_PRIVATE), the choice of keys to
 * spill (pd__buffer_keys_to_flush, the function the tests compare with
 * partd's keys_to_flush) and the moves from fast to slow.
 */
#include "buffer/buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

typedef struct s_spill {
    pd__knode kn;       /* first: the index's node is the entry */
    unsigned char pk[]; /* the packed key */
} s_spill;

/* ------------------------------------------------------------ Selection */

/* How many of order[0..n) (indices into sizes) fit in lim bytes, their sizes
 * summed in that order. */
static size_t s_cut(const uint64_t *sizes, const size_t *order, size_t n,
                    double lim) {
    uint64_t cum = 0;
    size_t c = 0;
    for (; c < n; c++) {
        cum += sizes[order[c]];
        if ((double)cum > lim) break;
    }
    return c;
}

size_t pd__buffer_keys_to_flush(const uint64_t *sizes, size_t n,
                                double fraction, size_t maxcount, size_t *out) {
    if (n == 0) return 0;
    if (maxcount == 0) maxcount = 1;
    size_t k = n / 2 > 0 ? n / 2 : 1;
    size_t cap = k < maxcount ? k : maxcount;
    size_t cnt = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += sizes[i];
        /* Stable insertion, biggest first: an equal size goes after. */
        if (cnt == cap && sizes[i] <= sizes[out[cap - 1]]) continue;
        size_t j = cnt < cap ? cnt++ : cap - 1;
        while (j > 0 && sizes[out[j - 1]] < sizes[i]) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = i;
    }
    /* Cumulative sizes need only the first cnt (<= maxcount) entries. */
    size_t b = s_cut(sizes, out, cnt, (double)total * fraction);
    if (b < 1) b = 1;
    if (b > maxcount) b = maxcount;
    if (b > cnt) b = cnt;
    return b;
}

/* Readies a selection: *m = 0, *n = the counted keys, and room for them
 * in the scratch (selsz, selnode).  0 or PD_ERR_NOMEM (recorded). */
static int s_sel_begin(pd__buffer *b, size_t *m, size_t *n) {
    *n = b->counts.count;
    *m = 0;
    if (*n == 0) return 0;
    if (pd__grow((void **)&b->selsz, &b->selszcap, *n, sizeof *b->selsz) ||
        pd__grow((void **)&b->selnode, &b->selnodecap, *n, sizeof *b->selnode))
        return pd__err(&b->base, PD_ERR_NOMEM, ENOMEM,
                       "spill: choosing among %zu keys", *n);
    return 0;
}

/* One spill round over the counted keys, chosen by
 * pd__buffer_keys_to_flush over their sizes in insertion order: writes up
 * to PD__BUFFER_MAXCOUNT entries to sel and sets *m to how many.  0 or
 * PD_ERR_NOMEM (recorded). */
static int pd__buffer_select(pd__buffer *b, pd__bcount **sel, size_t *m) {
    size_t n;
    int rc = s_sel_begin(b, m, &n);
    if (rc || n == 0) return rc;
    size_t i = 0;
    for (pd__knode *kn = b->counts.head; kn; kn = kn->next, i++) {
        b->selnode[i] = (pd__bcount *)kn;
        b->selsz[i] = b->selnode[i]->bytes;
    }
    size_t idx[PD__BUFFER_MAXCOUNT];
    *m = pd__buffer_keys_to_flush(b->selsz, n, PD__BUFFER_FRACTION,
                                  PD__BUFFER_MAXCOUNT, idx);
    for (size_t j = 0; j < *m; j++) sel[j] = b->selnode[idx[j]];
    return 0;
}

/* --------------------------------------------------------------- Counts */

/* The count entry of key (hash h), or NULL. */
pd__bcount *pd__buffer_count_find(const pd__buffer *b, const pd_key *key,
                                  uint64_t h) {
    return (pd__bcount *)pd__ktab_find(&b->counts, key, h);
}

/* A new entry with 0 bytes for `key` (hash h), or NULL (nothing changed).
 * It keeps the key packed and, for the moves, as a pd_key over that copy. */
pd__bcount *pd__buffer_count_add(pd__buffer *b, const pd_key *key, uint64_t h) {
    size_t np = key->nparts >= 2 ? key->nparts : 0;
    size_t klen = pd__key_packed_size(key);
    pd__bcount *e = calloc(1, sizeof *e + np * sizeof(pd_bytes) + klen);
    if (!e) return NULL;
    unsigned char *p = (unsigned char *)(e->parts + np);
    pd__key_pack(key, p);
    if (pd__key_unpack(p, klen, &e->key, e->parts)) {
        free(e);
        return NULL;
    }
    e->dref.hash = h;
    if (pd__ktab_add(&b->counts, &e->kn, p, klen, h)) {
        free(e);
        return NULL;
    }
    return e;
}

void pd__buffer_count_remove(pd__buffer *b, pd__bcount *e) {
    b->usage -= e->bytes;
    pd__ktab_remove(&b->counts, &e->kn);
    free(e);
}

/* ---------------------------------------------------------- Spilled set */

/* Records key (hash h) as spilled unless it is already.  An entry that
 * cannot be allocated makes the index incomplete (spilled_all) instead of
 * failing, since the data is in slow already: false then. */
static bool s_spilled_put(pd__buffer *b, const pd_key *key, uint64_t h) {
    if (pd__ktab_find(&b->spilled, key, h)) return true;
    size_t klen = pd__key_packed_size(key);
    s_spill *e = malloc(sizeof *e + klen);
    if (e) {
        pd__key_pack(key, e->pk);
        if (pd__ktab_add(&b->spilled, &e->kn, e->pk, klen, h) == 0) return true;
        free(e);
    }
    b->spilled_all = true;
    return false;
}

/* Records the keys of sel[0..m), just appended to slow, as spilled. */
static void pd__buffer_spilled_add(pd__buffer *b, pd__bcount **sel, size_t m) {
    if (!b->private_slow || b->spilled_all) return;
    for (size_t i = 0; i < m; i++)
        if (!s_spilled_put(b, &sel[i]->key, sel[i]->kn.hash)) return;
}

void pd__buffer_spilled_note(pd__buffer *b, size_t n, const pd_key *keys) {
    if (!b->private_slow || b->spilled_all) return;
    for (size_t i = 0; i < n; i++)
        if (!s_spilled_put(b, &keys[i], pd__khash(&keys[i]))) return;
}

/* Whether slow may hold anything of keys[0..n) (keys NULL: of any key). */
bool pd__buffer_slow_may_hold(const pd__buffer *b, size_t n,
                              const pd_key *keys) {
    if (!b->private_slow || b->spilled_all) return true;
    if (b->spilled.count == 0) return false;
    if (!keys) return true;
    for (size_t i = 0; i < n; i++)
        if (pd__ktab_find(&b->spilled, &keys[i], pd__khash(&keys[i])))
            return true;
    return false;
}

/* Forgets keys[0..n) as spilled (they were deleted from slow). */
void pd__buffer_spilled_remove(pd__buffer *b, size_t n, const pd_key *keys) {
    if (!b->private_slow) return;
    for (size_t i = 0; i < n && b->spilled.count; i++) {
        pd__knode *kn =
            pd__ktab_find(&b->spilled, &keys[i], pd__khash(&keys[i]));
        if (kn) {
            pd__ktab_remove(&b->spilled, kn);
            free(kn);
        }
    }
}

void pd__buffer_spilled_clear(pd__buffer *b) {
    for (pd__knode *n = b->spilled.head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    pd__ktab_reset(&b->spilled);
}

void pd__buffer_counts_clear(pd__buffer *b) {
    for (pd__knode *n = b->counts.head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    pd__ktab_reset(&b->counts);
    b->usage = 0;
}

/* Room for `need` move slots.  0 or PD_ERR_NOMEM. */
int pd__buffer_mscratch(pd__buffer *b, size_t need) {
    if (need <= b->mcap) return 0;
    size_t ncap = b->mcap ? b->mcap : 64;
    while (ncap < need) ncap *= 2;
    pd_key *nk = realloc(b->mk, ncap * sizeof *nk);
    if (!nk) return PD_ERR_NOMEM;
    b->mk = nk;
    pd_bytes *nv = realloc(b->mv, ncap * sizeof *nv);
    if (!nv) return PD_ERR_NOMEM;
    b->mv = nv;
    b->mcap = ncap;
    return 0;
}

/* Locks slow for the rest of the session the first time an op needs it.
 * Outside a session (PD_NOLOCK without pd_lock) nothing is locked, as for
 * every store. */
int pd__buffer_need_slow(pd__buffer *b) {
    if (b->slow_locked || b->base.lock_depth == 0) return 0;
    int rc = pd__lock_inner(&b->base, b->slow);
    if (rc == 0) b->slow_locked = true;
    return rc;
}

/* ---------------------------------------------------------------- Moves */

/* Appends to slow, in one batch, the keys of sel[0..m) (marked `stamp`):
 * for each, what fast holds of it, then (when nb > 0) the values of the
 * batch bkeys/bvals whose count entry bents[i] carries the stamp, in batch
 * order.  Then deletes the keys from fast; they stay counted (the caller
 * uncounts them); `spill`: the move keeps the Buffer under its limit and
 * counts as a spill (pd_buffer_spills) once done.  *in_slow tells whether
 * slow took the data: if not, nothing changed; if so and the error is
 * fast's delete, the keys' old bytes are held twice (the message says so). */
int pd__buffer_move_batch(pd__buffer *b, pd__bcount **sel, size_t m,
                          const pd__spill_batch *batch, unsigned fsync,
                          bool spill, bool *in_slow) {
    pd_store *s = &b->base, *fast = b->fast, *slow = b->slow;
    char ks[PD__KEYSHORT_MAX];
    const char *more = m > 1 ? " (and other keys)" : "";
    pd_result *r = NULL;
    size_t nv = 0, nb = batch ? batch->n : 0;
    *in_slow = false;
    int rc = pd__buffer_need_slow(b);
    if (rc) return rc;
    if (fast->ops->peek) {
        /* Zero copy: fast stays locked, so its chunks stay valid until the
         * append to slow is done. */
        pthread_mutex_lock(&fast->mu);
        for (size_t i = 0; i < m && rc == 0; i++) {
            const pd_bytes *ch = NULL;
            size_t nch = 0;
            pd__err_clear(fast);
            rc = fast->ops->peek(fast, &sel[i]->key, &ch, &nch);
            if (rc) {
                rc = pd__err_wrap(s, fast, rc, "spill %s: read from fast",
                                  pd__key_short(&sel[i]->key, ks));
                break;
            }
            if (pd__buffer_mscratch(b, nv + (nch ? nch : 1) + nb)) {
                rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "spill %s: batch table",
                             pd__key_short(&sel[i]->key, ks));
                break;
            }
            if (nch == 0) {
                b->mk[nv] = sel[i]->key;
                b->mv[nv++] = (pd_bytes){NULL, 0};
            }
            for (size_t c = 0; c < nch; c++) {
                b->mk[nv] = sel[i]->key;
                b->mv[nv++] = ch[c];
            }
        }
    } else {
        if (pd__buffer_mscratch(b, m + nb))
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "spill %s%s: batch table",
                           pd__key_short(&sel[0]->key, ks), more);
        for (size_t i = 0; i < m; i++) b->mk[i] = sel[i]->key;
        rc = pd_get(fast, m, b->mk, &r, PD_NOLOCK);
        if (rc)
            return pd__err_wrap(s, fast, rc, "spill %s%s: read from fast",
                                pd__key_short(&sel[0]->key, ks), more);
        for (size_t i = 0; i < m; i++) b->mv[i] = pd_result_value(r, i);
        nv = m;
    }
    if (rc == 0) {
        /* The batch's values of the chosen keys follow fast's bytes. */
        for (size_t i = 0; i < nb; i++) {
            if (batch->ents && batch->ents[i]->mark != batch->stamp) continue;
            b->mk[nv] = batch->keys[i];
            b->mv[nv++] = batch->vals[i];
        }
        rc = pd_append(slow, nv, b->mk, b->mv, PD_NOLOCK | fsync);
        if (rc)
            rc = pd__err_wrap(s, slow, rc, "spill %s%s to slow",
                              pd__key_short(&sel[0]->key, ks), more);
    }
    if (fast->ops->peek) pthread_mutex_unlock(&fast->mu);
    pd_result_free(&r);
    if (rc) return rc;
    /* Now in slow: forget them in fast. */
    *in_slow = true;
    pd__buffer_spilled_add(b, sel, m);
    for (size_t i = 0; i < m; i++) b->mk[i] = sel[i]->key;
    rc = pd_delete(fast, m, b->mk, PD_NOLOCK);
    if (rc)
        return pd__err_wrap(s, fast, rc,
                            "spill %s%s: copied to slow but not deleted from "
                            "fast (now held twice)",
                            pd__key_short(&sel[0]->key, ks), more);
    if (spill) b->spills++;
    return 0;
}

/* Moves the keys of sel[0..m) from fast to slow (one append to slow), then
 * deletes them from fast and uncounts them; `spill` as for
 * pd__buffer_move_batch.  On error the keys stay in fast and counted. */
int pd__buffer_move(pd__buffer *b, pd__bcount **sel, size_t m, unsigned fsync,
                    bool spill) {
    bool in_slow;
    int rc = pd__buffer_move_batch(b, sel, m, NULL, fsync, spill, &in_slow);
    if (rc) return rc;
    for (size_t i = 0; i < m; i++) pd__buffer_count_remove(b, sel[i]);
    return 0;
}

/* The plan's order: bigger first, ties in insertion order (as
 * pd__buffer_keys_to_flush ranks them).  Is position a before b? */
static inline bool s_before(const uint64_t *sz, size_t a, size_t b) {
    return sz[a] > sz[b] || (sz[a] == sz[b] && a < b);
}

static void s_sift(const uint64_t *sz, size_t *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, t = i;
        if (l < n && s_before(sz, h[l], h[t])) t = l;
        if (l + 1 < n && s_before(sz, h[l + 1], h[t])) t = l + 1;
        if (t == i) return;
        size_t x = h[i];
        h[i] = h[t];
        h[t] = x;
        i = t;
    }
}

/* partd's rounds after an append (`while memory_usage > available_memory:
 * flush(keys_to_flush(lengths, 0.1, maxcount=20))`), simulated on the
 * counts: each round chooses among the keys not chosen yet, in insertion
 * order, and marks the chosen ones `stamp`.  Leaves the chosen entries in
 * insertion order in b->selnode[0..*m).  0 or PD_ERR_NOMEM (recorded,
 * nothing marked that matters: the caller drops the stamp).
 *
 * A round's choice is a prefix of the keys left in the order of s_before
 * (the first ones of its top min(max(left / 2, 1), 20), as many as fit in a
 * tenth of the bytes left, at least one), and what it leaves keeps that
 * order: so the keys are ranked once, in a heap popped as the rounds go,
 * instead of a pass over every key per round (at 65,536 keys and a 16 MiB
 * batch, hundreds of rounds per append: docs/perf-log.md). */
int pd__buffer_plan(pd__buffer *b, uint64_t stamp, size_t *m) {
    size_t n;
    int rc = s_sel_begin(b, m, &n);
    if (rc || n == 0) return rc;
    if (b->usage <= b->limit) return 0;
    if (pd__grow((void **)&b->selheap, &b->selheapcap, n, sizeof *b->selheap))
        return pd__err(&b->base, PD_ERR_NOMEM, ENOMEM,
                       "spill: choosing among %zu keys", n);
    uint64_t *sz = b->selsz, left_bytes = 0;
    size_t *h = b->selheap, i = 0;
    for (pd__knode *kn = b->counts.head; kn; kn = kn->next, i++) {
        b->selnode[i] = (pd__bcount *)kn;
        sz[i] = b->selnode[i]->bytes;
        left_bytes += sz[i];
        h[i] = i;
    }
    for (size_t j = n / 2; j-- > 0;) s_sift(sz, h, n, j);
    /* Popped in order but not chosen: the next round's first candidates. */
    size_t top[PD__BUFFER_MAXCOUNT], ntop = 0, hn = n, left = n;
    uint64_t usage = b->usage;
    while (usage > b->limit && left > 0) {
        size_t cap = left / 2 > 0 ? left / 2 : 1;
        if (cap > PD__BUFFER_MAXCOUNT) cap = PD__BUFFER_MAXCOUNT;
        while (ntop < cap) {
            top[ntop++] = h[0];
            h[0] = h[--hn];
            s_sift(sz, h, hn, 0);
        }
        /* pd__buffer_keys_to_flush's cut, on the same figures. */
        size_t c =
            s_cut(sz, top, cap, (double)left_bytes * PD__BUFFER_FRACTION);
        if (c < 1) c = 1;
        for (size_t j = 0; j < c; j++) {
            b->selnode[top[j]]->mark = stamp;
            usage -= sz[top[j]];
            left_bytes -= sz[top[j]];
        }
        left -= c;
        memmove(top, top + c, (ntop - c) * sizeof *top);
        ntop -= c;
    }
    for (pd__knode *kn = b->counts.head; kn; kn = kn->next)
        if (((pd__bcount *)kn)->mark == stamp)
            b->selnode[(*m)++] = (pd__bcount *)kn;
    return 0;
}

/* Spills rounds until `incoming` more bytes fit under the limit (or fast
 * holds nothing). */
int pd__buffer_make_room(pd__buffer *b, uint64_t incoming, unsigned fsync) {
    while (b->usage > 0 &&
           (incoming > b->limit || b->usage > b->limit - incoming)) {
        pd__bcount *sel[PD__BUFFER_MAXCOUNT];
        size_t m;
        int rc = pd__buffer_select(b, sel, &m);
        if (rc) return rc;
        if (m == 0) break;
        rc = pd__buffer_move(b, sel, m, fsync, true);
        if (rc) return rc;
    }
    return 0;
}

/* Moves every counted key to slow, PD__BUFFER_FLUSH_BATCH at a time. */
int pd__buffer_move_all(pd__buffer *b, unsigned fsync) {
    while (b->counts.head) {
        pd__bcount *sel[PD__BUFFER_FLUSH_BATCH];
        size_t m = 0;
        for (pd__knode *kn = b->counts.head; kn && m < PD__BUFFER_FLUSH_BATCH;
             kn = kn->next)
            sel[m++] = (pd__bcount *)kn;
        int rc = pd__buffer_move(b, sel, m, fsync, false);
        if (rc) return rc;
    }
    return 0;
}

/* Moves the given keys (de-duplicated, only those counted) in batches. */
int pd__buffer_move_keys(pd__buffer *b, size_t n, const pd_key *keys,
                         unsigned fsync) {
    uint64_t mark = ++b->mark;
    pd__bcount *sel[PD__BUFFER_FLUSH_BATCH];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        pd__bcount *e = pd__buffer_count_find(b, &keys[i], pd__khash(&keys[i]));
        if (!e || e->mark == mark) continue;
        e->mark = mark;
        sel[m++] = e;
        if (m == PD__BUFFER_FLUSH_BATCH) {
            int rc = pd__buffer_move(b, sel, m, fsync, false);
            if (rc) return rc;
            m = 0;
        }
    }
    return m ? pd__buffer_move(b, sel, m, fsync, false) : 0;
}
