/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Buffer: appends go to a fast store; past a memory limit the largest keys
 * are moved ("spilled") to a slow store, as partd's Buffer does.
 *
 * Per key the Buffer counts the bytes it put in fast (a key index, ktab.h,
 * with the key itself kept in the entry) and the total.  An append (of B
 * bytes) that keeps usage + B within the limit goes to fast alone.  One
 * that does not is placed as partd places it (append to fast, then spill
 * rounds with the reference's selection, see buffer.h, while usage > limit),
 * but the rounds are simulated on the counts first (pd__buffer_plan), and
 * the chosen keys go to slow in ONE append holding fast's bytes of each and
 * the batch's values of it: a failed spill leaves nothing of the batch
 * applied.  Then they are deleted from fast and the rest of the batch is
 * appended to fast.  So fast holds at most the limit after an append.
 *
 * Spilling a round of keys: with fast's optional `peek`, the keys' chunks
 * are appended to slow in one batch that repeats each key once per chunk (no
 * copy; slow's append is atomic), otherwise the keys are read with pd_get.
 * Then they are deleted from fast and uncounted.  If the append to slow
 * fails, they stay in fast and nothing is lost.
 *
 * pd_get returns slow's bytes followed by fast's: append order (the
 * reference returns fast's bytes first, out of append order).
 *
 * Appends to a Dict (the usual fast store) skip its dispatcher: the Buffer
 * hashes each key once and hands the Dict the hashes with the batch, and
 * keeps the Dict's entry of each key, so the Dict need not look it up again
 * (pd__dict_append_refs), the Dict being locked by the session already.
 * The pass that looks the keys up also adds their sizes to the counts (and
 * takes them back if the Dict fails).  At open the Buffer tells a Dict its
 * limit (pd__dict_expect: with a large one, huge pages from the start).
 *
 * Locking: the lock hook locks fast; slow is locked when an op first needs
 * it in the session (a spill, get, delete, set, drop, keys), so appends
 * that spill nothing never touch the slow store's lock (a File's flock),
 * except in a session opened by pd_lock, which locks both at once (a
 * server holding a store's lock holds its directory).  Every op calls the
 * inner stores with PD_NOLOCK; `set` goes through pd__set_inner, so that
 * fast's own iset memo cannot swallow a replace.
 */
#include "buffer/buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dict/dict.h"
#include "core/hash.h"
#include "core/ktab.h"

static const pd_store_ops s_buffer_ops;

static uint64_t s_sum(size_t n, const pd_bytes *vals) {
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++) {
        if (t > UINT64_MAX - vals[i].size) return UINT64_MAX;
        t += vals[i].size;
    }
    return t;
}

/* ---------------------------------------------------------------- Entries */

/* Takes back s_ents: the sizes of vals (unless NULL) from the entries'
 * counts, then the entries it created. */
static void s_ents_undo(pd__buffer *b, size_t n, const pd_bytes *vals) {
    for (size_t i = 0; vals && i < n; i++) b->ents[i]->bytes -= vals[i].size;
    for (size_t i = 0; i < n; i++)
        if (b->created[i]) pd__buffer_count_remove(b, b->ents[i]);
}

/* Looks up (creating when missing) the count entries of keys[0..n) into
 * b->ents, flagging created ones in b->created, and their Dict refs into
 * b->refs.  With vals (an append), also adds each value's size to its
 * entry's count, in the same pass (s_ents_undo takes it back; usage is
 * the caller's).  On error nothing is left changed. */
static int s_ents(pd__buffer *b, size_t n, const pd_key *keys,
                  const pd_bytes *vals, const char *op) {
    pd_store *s = &b->base;
    char ks[PD__KEYSHORT_MAX];
    if (n > b->ecap) {
        /* Grown geometrically: a caller alternating batch sizes does not
         * reallocate every call. */
        size_t ncap = b->ecap > n / 2 ? b->ecap * 2 : n, sz;
        pd__bcount **ne =
            pd__mul_ovf(ncap, sizeof *ne, &sz) ? NULL : realloc(b->ents, sz);
        if (!ne) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "%s: key table", op);
        b->ents = ne;
        bool *nc = realloc(b->created, ncap * sizeof *nc);
        if (!nc) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "%s: key table", op);
        b->created = nc;
        /* sz bounds ncap * sizeof(pointer) already */
        pd__dict_ref **nr = realloc(b->refs, ncap * sizeof *nr);
        if (!nr) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "%s: key table", op);
        b->refs = nr;
        b->ecap = ncap;
    }
    for (size_t i = 0; i < n; i++) {
        /* The key is loaded once for its hash and its lookup. */
        pd__kprobe p;
        pd__kprobe_init(&p, &keys[i]);
        uint64_t h = pd__kprobe_hash(&p);
        pd__bcount *e = (pd__bcount *)pd__ktab_find_probe(&b->counts, &p, h);
        bool created = false;
        if (PD__UNLIKELY(!e)) {
            e = pd__buffer_count_add(b, &keys[i], h);
            if (!e) {
                s_ents_undo(b, i, vals);
                return pd__err(s, PD_ERR_NOMEM, ENOMEM,
                               "%s %s: key count entry", op,
                               pd__key_short(&keys[i], ks));
            }
            created = true;
        }
        b->created[i] = created;
        b->ents[i] = e;
        b->refs[i] = &e->dref;
        if (vals) e->bytes += vals[i].size;
    }
    return 0;
}

/* ------------------------------------------------------------------ Ops */

/* The append of a batch that takes usage over the limit: partd's rounds
 * chosen on the counts (the batch's sizes added), then ONE append to slow of
 * the chosen keys (fast's bytes of each, then the batch's values of it),
 * their deletion from fast, and the append of the rest of the batch to fast.
 * A failing slow append leaves nothing applied.  The rest is appended to
 * fast after slow took its part: if fast fails then (it can only run out of
 * memory: a Dict), the error says which part of the batch was applied. */
static int s_append_spill_held(pd__buffer *b, size_t n, const pd_key *keys,
                               const pd_bytes *vals, uint64_t incoming,
                               unsigned fsync) {
    pd_store *s = &b->base;
    char ks[PD__KEYSHORT_MAX];
    uint64_t stamp = ++b->mark;
    size_t m = 0;
    bool in_slow = false;
    int rc = pd__buffer_mscratch(b, n)
                 ? pd__err(s, PD_ERR_NOMEM, ENOMEM, "append %s: batch table",
                           pd__key_short(&keys[0], ks))
                 : pd__buffer_plan(b, stamp, &m);
    if (rc == 0 && m > 0) {
        pd__spill_batch batch = {n, keys, vals, b->ents, stamp};
        rc = pd__buffer_move_batch(b, b->selnode, m, &batch, fsync, true,
                                   &in_slow);
    }
    if (rc) {
        s_ents_undo(b, n, vals);
        b->usage -= incoming;
        if (!in_slow) return rc; /* nothing of the batch applied */
        /* fast's delete failed: say what the batch left in slow. */
        pd__errsave sv;
        pd__err_save(s, &sv);
        rc = pd__err(s, sv.code, 0,
                     "append %s (batch of %zu): PARTLY APPLIED: the batch's "
                     "values of the %zu keys spilled are in slow, its other "
                     "values were not applied: %s",
                     pd__key_short(&keys[0], ks), n, m, sv.msg);
        pd__err_set_sys(s, sv.sys);
        return rc;
    }
    /* The chosen keys are in slow, batch values included: uncount them and
     * append the rest (b->mk/mv, free again, hold n). */
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (b->ents[i]->mark == stamp) {
            b->ents[i] = NULL;
            continue;
        }
        b->mk[nr] = keys[i];
        b->mv[nr++] = vals[i];
    }
    for (size_t j = 0; j < m; j++) pd__buffer_count_remove(b, b->selnode[j]);
    rc =
        nr ? pd__append_inner(b->fast, nr, b->mk, b->mv, PD_NOLOCK | fsync) : 0;
    if (rc == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        if (!b->ents[i]) continue;
        b->ents[i]->bytes -= vals[i].size;
        b->usage -= vals[i].size;
    }
    for (size_t i = 0; i < n; i++)
        if (b->ents[i] && b->created[i]) pd__buffer_count_remove(b, b->ents[i]);
    return pd__err_wrap(s, b->fast, rc,
                        "append %s (batch of %zu): PARTLY APPLIED: the values "
                        "of the %zu keys spilled went to slow, the other %zu "
                        "values were not applied: fast",
                        pd__key_short(&keys[0], ks), n, m, nr);
}

/* The same, with fast's trims held when it is a Dict: the rest of the batch
 * refills the pages the spill frees (pd__dict_trim_hold, dict.h). */
static int s_append_spill(pd__buffer *b, size_t n, const pd_key *keys,
                          const pd_bytes *vals, uint64_t incoming,
                          unsigned fsync) {
    if (b->fast_dict) pd__dict_trim_hold(b->fast, true);
    int rc = s_append_spill_held(b, n, keys, vals, incoming, fsync);
    if (b->fast_dict) pd__dict_trim_hold(b->fast, false);
    return rc;
}

static int s_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    pd__buffer *b = (pd__buffer *)s;
    unsigned fsync = flags & PD_FSYNC;
    char ks[PD__KEYSHORT_MAX];
    uint64_t incoming = s_sum(n, vals);
    if (pd__buffer_bypass_wants(b, incoming))
        return pd__buffer_bypass(b, n, keys, vals, fsync);
    int rc = s_ents(b, n, keys, vals, "append");
    if (rc) return rc;
    if (incoming > b->limit || b->usage > b->limit - incoming) {
        b->usage += incoming; /* the entries' counts were added by s_ents */
        return s_append_spill(b, n, keys, vals, incoming, fsync);
    }
    if (b->fast_dict && b->base.lock_depth > 0) {
        /* Fast path: a Dict locked by this session (lock hook), given the
         * keys' hashes and its entries as last seen.  Without a session
         * (PD_NOLOCK outside pd_lock) the Dict is not locked yet: the
         * dispatcher does that. */
        pd__err_clear(b->fast);
        rc = pd__dict_append_refs(b->fast, n, keys, b->refs, vals);
    } else {
        rc = pd__append_inner(b->fast, n, keys, vals, PD_NOLOCK | fsync);
    }
    if (rc) {
        s_ents_undo(b, n, vals);
        return pd__err_wrap(s, b->fast, rc, "append %s%s to fast",
                            pd__key_short(&keys[0], ks),
                            n > 1 ? " (batch)" : "");
    }
    b->usage += incoming; /* the entries' counts were added by s_ents */
    return 0;
}

static int s_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    pd__buffer *b = (pd__buffer *)s;
    char ks[PD__KEYSHORT_MAX];
    pd_result *rs = NULL, *rf = NULL;
    int rc;
    if (!pd__buffer_slow_may_hold(b, n, keys)) {
        /* PD_BUFFER_PRIVATE and no key ever spilled: fast has it all. */
        rc = pd__get_inner(b->fast, n, keys, &rf, PD_NOLOCK);
        if (rc)
            return pd__err_wrap(s, b->fast, rc, "get %s: fast",
                                pd__key_short(&keys[0], ks));
        if (pd__result_move(r, rf))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get %s: result",
                         pd__key_short(&keys[0], ks));
        pd_result_free(&rf);
        return rc;
    }
    int lrc = pd__buffer_need_slow(b);
    if (lrc) return lrc;
    rc = pd__get_inner(b->slow, n, keys, &rs, PD_NOLOCK);
    if (rc)
        return pd__err_wrap(s, b->slow, rc, "get %s: slow",
                            pd__key_short(&keys[0], ks));
    rc = pd__get_inner(b->fast, n, keys, &rf, PD_NOLOCK);
    if (rc) {
        pd_result_free(&rs);
        return pd__err_wrap(s, b->fast, rc, "get %s: fast",
                            pd__key_short(&keys[0], ks));
    }
    /* Slow's bytes were appended first. */
    pd_result *all = rs;
    if (rs->len == 0) {
        all = rf;
    } else if (pd__result_concat_each(rs, rf)) {
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: joining %zu values", n);
        goto out;
    }
    if (pd__result_move(r, all))
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get %s: result",
                     pd__key_short(&keys[0], ks));
out:
    pd_result_free(&rs);
    pd_result_free(&rf);
    return rc;
}

/* Deletes keys[0..n) from slow when it may hold any of them; an error is
 * "<op> <first key>: <what>". */
static int s_slow_delete(pd__buffer *b, size_t n, const pd_key *keys,
                         const char *op, const char *what) {
    if (!pd__buffer_slow_may_hold(b, n, keys)) return 0;
    int rc = pd__buffer_need_slow(b);
    if (rc) return rc;
    rc = pd_delete(b->slow, n, keys, PD_NOLOCK);
    if (rc) {
        char ks[PD__KEYSHORT_MAX];
        return pd__err_wrap(&b->base, b->slow, rc, "%s %s: %s", op,
                            pd__key_short(&keys[0], ks), what);
    }
    pd__buffer_spilled_remove(b, n, keys);
    return 0;
}

static int s_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    (void)flags;
    pd__buffer *b = (pd__buffer *)s;
    char ks[PD__KEYSHORT_MAX];
    int rc = s_slow_delete(b, n, keys, "delete", "slow");
    if (rc) return rc;
    rc = pd_delete(b->fast, n, keys, PD_NOLOCK);
    if (rc)
        return pd__err_wrap(s, b->fast, rc, "delete %s: fast",
                            pd__key_short(&keys[0], ks));
    for (size_t i = 0; i < n; i++) {
        pd__bcount *e = pd__buffer_count_find(b, &keys[i], pd__khash(&keys[i]));
        if (e) pd__buffer_count_remove(b, e);
    }
    return 0;
}

static int s_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    pd__buffer *b = (pd__buffer *)s;
    unsigned fsync = flags & PD_FSYNC;
    char ks[PD__KEYSHORT_MAX];
    int rc = pd__buffer_make_room(b, s_sum(n, vals), fsync);
    if (rc) return rc;
    rc = s_slow_delete(b, n, keys, "set", "delete from slow");
    if (rc) return rc;
    rc = s_ents(b, n, keys, NULL, "set");
    if (rc) return rc;
    rc = pd__set_inner(b->fast, n, keys, vals, PD_NOLOCK | fsync);
    if (rc) {
        s_ents_undo(b, n, NULL);
        return pd__err_wrap(s, b->fast, rc, "set %s: fast",
                            pd__key_short(&keys[0], ks));
    }
    for (size_t i = 0; i < n; i++) {
        pd__bcount *e = b->ents[i];
        b->usage -= e->bytes;
        e->bytes = vals[i].size;
        b->usage += e->bytes;
    }
    return 0;
}

static int s_drop(pd_store *s, unsigned flags) {
    (void)flags;
    pd__buffer *b = (pd__buffer *)s;
    int lrc = pd__buffer_need_slow(b);
    if (lrc) return lrc;
    int rc = pd_drop(b->fast, PD_NOLOCK);
    if (rc) rc = pd__err_wrap(s, b->fast, rc, "drop: fast");
    int rc2 = pd_drop(b->slow, PD_NOLOCK);
    if (rc2 && !rc) rc = pd__err_wrap(s, b->slow, rc2, "drop: slow");
    pd__buffer_counts_clear(b);
    if (rc2 == 0) { /* slow is empty now: the index is complete again */
        pd__buffer_spilled_clear(b);
        b->spilled_all = false;
    }
    return rc;
}

typedef struct s_union {
    UT_hash_handle hh;
    const unsigned char *pk;
    size_t len;
    uint64_t size;
} s_union;

static int s_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    pd__buffer *b = (pd__buffer *)s;
    if (!pd__buffer_slow_may_hold(b, 0, NULL)) {
        /* PD_BUFFER_PRIVATE and nothing spilled: fast's keys are all. */
        pd_keylist *fl = NULL;
        int rc = pd_keys(b->fast, &fl, PD_NOLOCK);
        if (rc) return pd__err_wrap(s, b->fast, rc, "keys: fast");
        for (size_t i = 0; i < fl->count && rc == 0; i++)
            if (pd__keylist_add_packed(kl, fl->buf + fl->ent[i].off,
                                       fl->ent[i].len, fl->ent[i].size))
                rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: %zu keys",
                             fl->count);
        pd_keylist_free(&fl);
        return rc;
    }
    int lrc = pd__buffer_need_slow(b);
    if (lrc) return lrc;
    pd_keylist *lists[2] = {NULL, NULL};
    pd_store *inner[2] = {b->slow, b->fast};
    s_union *ents = NULL, *table = NULL;
    int rc = 0;
    for (int j = 0; j < 2 && rc == 0; j++) {
        rc = pd_keys(inner[j], &lists[j], PD_NOLOCK);
        if (rc)
            rc = pd__err_wrap(s, inner[j], rc, "keys: %s",
                              j == 0 ? "slow" : "fast");
    }
    if (rc) goto out;
    size_t total = lists[0]->count + lists[1]->count, at = 0;
    ents = calloc(total ? total : 1, sizeof *ents);
    if (!ents) {
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: %zu keys", total);
        goto out;
    }
    for (int j = 0; j < 2 && rc == 0; j++) {
        pd_keylist *l = lists[j];
        for (size_t i = 0; i < l->count; i++) {
            const unsigned char *pk = l->buf + l->ent[i].off;
            size_t len = l->ent[i].len;
            s_union *u = NULL;
            HASH_FIND(hh, table, pk, (unsigned)len, u);
            if (u) {
                u->size += l->ent[i].size;
                continue;
            }
            u = &ents[at++];
            u->pk = pk;
            u->len = len;
            u->size = l->ent[i].size;
            HASH_ADD_KEYPTR(hh, table, u->pk, (unsigned)u->len, u);
            if (!u->hh.tbl) {
                rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: %zu keys", total);
                break;
            }
        }
    }
    for (size_t i = 0; i < at && rc == 0; i++)
        if (pd__keylist_add_packed(kl, ents[i].pk, ents[i].len, ents[i].size))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: %zu keys", at);
out:
    HASH_CLEAR(hh, table);
    free(ents);
    pd_keylist_free(&lists[0]);
    pd_keylist_free(&lists[1]);
    return rc;
}

static int s_lock_hook(pd_store *s) {
    pd__buffer *b = (pd__buffer *)s;
    int rc = pd__lock_inner(s, b->fast);
    if (rc) return rc;
    b->slow_locked = false;
    if (s->lock_explicit) {
        rc = pd__lock_inner(s, b->slow);
        if (rc) {
            pd__unlock_inner(s, b->fast);
            return rc;
        }
        b->slow_locked = true;
    }
    return 0;
}

static int s_unlock_hook(pd_store *s) {
    pd__buffer *b = (pd__buffer *)s;
    int rc = 0;
    if (b->slow_locked) {
        b->slow_locked = false;
        rc = pd__unlock_inner(s, b->slow);
        if (rc) rc = pd__err_wrap(s, b->slow, rc, "unlock slow");
    }
    int rc2 = pd__unlock_inner(s, b->fast);
    if (rc2 && !rc) rc = pd__err_wrap(s, b->fast, rc2, "unlock fast");
    return rc;
}

/* Called by pd_close with the Buffer's lock held (slow is locked on the
 * first move). */
static int s_flush_hook(pd_store *s) {
    pd__buffer *b = (pd__buffer *)s;
    if (!b->counts.head) return 0;
    return pd__buffer_move_all(b, 0); /* pd_close holds the lock */
}

static int s_destroy(pd_store *s) {
    pd__buffer *b = (pd__buffer *)s;
    int rc = 0;
    pd__buffer_counts_clear(b);
    pd__buffer_spilled_clear(b);
    free(b->mk);
    free(b->mv);
    free(b->ents);
    free(b->created);
    free(b->refs);
    free(b->selsz);
    free(b->selnode);
    free(b->selheap);
    b->selsz = NULL;
    b->selnode = NULL;
    b->selheap = NULL;
    b->mk = NULL;
    b->mv = NULL;
    b->ents = NULL;
    b->created = NULL;
    b->refs = NULL;
    if (b->owned) {
        pd_store **inner[2] = {&b->fast, &b->slow};
        const char *name[2] = {"fast", "slow"};
        for (int j = 0; j < 2; j++) {
            int crc = pd_close(inner[j]);
            if (crc && !rc)
                rc = pd__err_wrap(s, NULL, crc, "close %s store", name[j]);
        }
    }
    b->fast = NULL;
    b->slow = NULL;
    return rc;
}

static const pd_store_ops s_buffer_ops = {
    PD__STORE_OPS("buffer"),          .lock = s_lock_hook,
    .unlock = s_unlock_hook,          .flush = s_flush_hook,
    PD__ATTEMPT_OPS(pd__buffer_att_),
};

/* --------------------------------------------------------------- Public */

int pd_buffer_open(pd_store **out, pd_store **fast, pd_store **slow,
                   uint64_t memory, unsigned flags) {
    if (!out) return pd__err(NULL, PD_ERR_MISUSE, 0, "buffer: open: NULL out");
    *out = NULL;
    if (!fast || !slow || !*fast || !*slow)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "buffer: open: NULL %s store",
                       (!fast || !*fast) ? "fast" : "slow");
    if (*fast == *slow)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "buffer: open: fast and slow are the same %s store",
                       pd_store_kind(*fast));
    unsigned known = PD_BORROW | PD_BUFFER_PRIVATE;
    if (flags & ~known)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "buffer: open: unknown flags 0x%x", flags & ~known);
    bool slow_had_keys = false;
    if (flags & PD_BUFFER_PRIVATE) {
        /* What slow holds already was not spilled by this Buffer: with any
         * of it, slow is read for every key until a drop. */
        pd_keylist *kl = NULL;
        int krc = pd_keys(*slow, &kl, 0);
        if (krc)
            return pd__err_wrap(NULL, *slow, krc, "buffer: open: keys of slow");
        slow_had_keys = kl->count > 0;
        pd_keylist_free(&kl);
    }
    int rc;
    pd__buffer *b = pd__store_new(sizeof *b, &s_buffer_ops, &rc);
    if (!b) return rc;
    b->fast = *fast;
    b->slow = *slow;
    b->limit = memory;
    b->bypass = pd__buffer_bypass_for(b->slow);
    b->fast_dict = pd__dict_is(b->fast);
    if (b->fast_dict) pd__dict_expect(b->fast, memory);
    b->owned = !(flags & PD_BORROW);
    b->private_slow = (flags & PD_BUFFER_PRIVATE) != 0;
    b->spilled_all = slow_had_keys;
    if (b->owned) {
        *fast = NULL;
        *slow = NULL;
    }
    *out = &b->base;
    pd__err_clear(NULL);
    return 0;
}

static pd__buffer *s_buf(const pd_store *s) {
    return pd__store_as(s, &s_buffer_ops);
}

uint64_t pd_buffer_spills(const pd_store *s) {
    pd__buffer *b = s_buf(s);
    return b ? pd__store_read(&b->base, &b->spills) : 0;
}

uint64_t pd_buffer_memory_usage(const pd_store *s) {
    pd__buffer *b = s_buf(s);
    return b ? pd__store_read(&b->base, &b->usage) : 0;
}

uint64_t pd_buffer_memory_limit(const pd_store *s) {
    pd__buffer *b = s_buf(s);
    return b ? b->limit : 0;
}

pd_store *pd_buffer_fast(const pd_store *s) {
    pd__buffer *b = s_buf(s);
    return b ? b->fast : NULL;
}

pd_store *pd_buffer_slow(const pd_store *s) {
    pd__buffer *b = s_buf(s);
    return b ? b->slow : NULL;
}

typedef struct s_flush_args {
    size_t n;
    const pd_key *keys; /* NULL: every key */
} s_flush_args;

static int s_flush_call(pd_store *s, void *arg, unsigned flags) {
    const s_flush_args *fa = arg;
    unsigned fsync = flags & PD_FSYNC;
    return fa->keys
               ? pd__buffer_move_keys((pd__buffer *)s, fa->n, fa->keys, fsync)
               : pd__buffer_move_all((pd__buffer *)s, fsync);
}

int pd_buffer_flush(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "buffer: flush: NULL store");
    pd__err_clear(s);
    if (!s_buf(s))
        return pd__err(s, PD_ERR_MISUSE, 0, "flush: not a buffer store");
    for (size_t i = 0; keys && i < n; i++) {
        char why[64];
        int rc = pd__key_check(&keys[i], why);
        if (rc) return pd__err(s, rc, 0, "flush: key %zu: %s", i, why);
    }
    s_flush_args fa = {n, keys};
    return pd__call(s, "flush", flags, PD__ALL_CALL_FLAGS, s_flush_call, &fa);
}

int pd_buffer_discard(pd_store *s) {
    if (!s)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "buffer: discard: NULL store");
    pd__err_clear(s);
    pd__buffer *b = s_buf(s);
    if (!b) return pd__err(s, PD_ERR_MISUSE, 0, "discard: not a buffer store");
    char ks[PD__KEYSHORT_MAX];
    int rc = 0;
    /* The Buffer's mutex, not pd_lock: a session would lock slow as well.
     * Each pd_delete locks fast (recursively when this thread already holds
     * it through a session on the Buffer). */
    pthread_mutex_lock(&s->mu);
    while (b->counts.head && rc == 0) {
        pd__bcount *sel[PD__BUFFER_FLUSH_BATCH];
        pd_key k[PD__BUFFER_FLUSH_BATCH];
        size_t m = 0;
        for (pd__knode *kn = b->counts.head; kn && m < PD__BUFFER_FLUSH_BATCH;
             kn = kn->next) {
            sel[m] = (pd__bcount *)kn;
            k[m] = sel[m]->key;
            m++;
        }
        if (pd_delete(b->fast, m, k, 0) == 0) {
            for (size_t i = 0; i < m; i++) pd__buffer_count_remove(b, sel[i]);
            continue;
        }
        /* A failed batch may have deleted some keys: redo it one key at a
         * time (a deleted key deletes again fine), so exactly the keys
         * still in fast stay counted. */
        for (size_t i = 0; i < m; i++) {
            rc = pd_delete(b->fast, 1, &k[i], 0);
            if (rc) {
                rc =
                    pd__err_wrap(s, b->fast, rc, "discard %s: delete from fast",
                                 pd__key_short(&k[i], ks));
                break;
            }
            pd__buffer_count_remove(b, sel[i]);
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (rc) return rc;
    pd__err_clear(s);
    return 0;
}
