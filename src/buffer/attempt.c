/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Buffer: attempts (partd.h, "Attempts").  An attempt goes straight to the
 * slow store: its data must be in the store's files (a Log under slow) to
 * survive the crash of this process, never only in fast's memory.
 *
 * Order: a get returns slow's bytes, then fast's.  A key the attempt wrote
 * may also hold appends still in fast, made before the commit; so the
 * commit first moves those keys from fast to slow (pd_buffer_flush on
 * them), then commits the attempt in slow: the committed values then come
 * after them there, and every later append goes to fast, after both.
 */
#include "buffer/buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_akey { /* a key the attempt wrote */
    pd__knode kn;       /* first */
    pd_key key;         /* points into this allocation */
    pd_bytes parts[];   /* nparts of key, then the packed key */
} s_akey;

typedef struct s_att {
    pd_attempt *ia; /* the attempt on slow */
    pd__ktab keys;  /* s_akey entries */
    bool all;       /* a key could not be recorded: flush every key */
} s_att;

static void s_att_free(s_att *a) {
    for (pd__knode *n = a->keys.head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    pd__ktab_reset(&a->keys);
    free(a);
}

int pd__buffer_att_begin(pd_store *s, const pd_key *writer, uint64_t attempt,
                         void **impl, unsigned flags) {
    pd__buffer *b = (pd__buffer *)s;
    s_att *a = calloc(1, sizeof *a);
    if (!a) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "attempt begin");
    int rc = pd__buffer_need_slow(b);
    if (rc == 0) {
        rc = pd_attempt_begin(b->slow, writer, attempt, &a->ia,
                              PD_NOLOCK | (flags & ~PD_NOLOCK));
        if (rc) rc = pd__err_wrap(s, b->slow, rc, "attempt begin on slow");
    }
    if (rc) {
        free(a);
        return rc;
    }
    *impl = a;
    return 0;
}

/* Records keys[0..n) in the attempt's set (on failure: flush all). */
static void s_note(s_att *a, size_t n, const pd_key *keys) {
    for (size_t i = 0; i < n && !a->all; i++) {
        uint64_t h = pd__khash(&keys[i]);
        if (pd__ktab_find(&a->keys, &keys[i], h)) continue;
        pd__parts pp;
        pd__key_parts(&keys[i], &pp);
        size_t klen = pd__key_packed_size(&keys[i]);
        s_akey *e = malloc(sizeof *e + pp.n * sizeof(pd_bytes) + klen);
        if (!e) {
            a->all = true;
            return;
        }
        unsigned char *pk = (unsigned char *)(e->parts + pp.n);
        pd__key_pack(&keys[i], pk);
        if (pd__key_unpack(pk, klen, &e->key, e->parts)) { /* cannot be */
            free(e);
            a->all = true;
            return;
        }
        if (pd__ktab_add(&a->keys, &e->kn, pk, klen, h)) {
            free(e);
            a->all = true;
        }
    }
}

int pd__buffer_att_append(pd_store *s, void *impl, size_t n, const pd_key *keys,
                          const pd_bytes *vals, unsigned flags) {
    pd__buffer *b = (pd__buffer *)s;
    s_att *a = impl;
    int rc = pd__buffer_need_slow(b);
    if (rc) return rc;
    rc = pd__attempt_append_inner(a->ia, n, keys, vals,
                                  PD_NOLOCK | (flags & PD_FSYNC));
    if (rc) return pd__err_wrap(s, b->slow, rc, "attempt append to slow");
    s_note(a, n, keys);
    return 0;
}

int pd__buffer_att_commit(pd_store *s, void *impl, unsigned flags) {
    pd__buffer *b = (pd__buffer *)s;
    s_att *a = impl;
    unsigned fsync = flags & PD_FSYNC;
    int rc = pd__buffer_need_slow(b);
    /* Fast's bytes of the attempt's keys go to slow first (order). */
    pd_key *ks = NULL;
    size_t nk = 0;
    if (rc == 0 && !a->all && a->keys.count) {
        ks = malloc(a->keys.count * sizeof *ks);
        if (!ks) a->all = true;
        for (pd__knode *n = a->keys.head; ks && n; n = n->next)
            ks[nk++] = ((s_akey *)n)->key;
    }
    if (rc == 0)
        rc = a->all ? pd__buffer_move_all(b, fsync)
                    : pd__buffer_move_keys(b, nk, ks, fsync);
    if (rc) {
        pd_attempt_abort(&a->ia);
        rc = pd__err_wrap(s, b->slow, rc,
                          "attempt commit: moving the attempt's keys from "
                          "fast to slow first (the attempt was aborted)");
    } else {
        rc = pd_attempt_commit(&a->ia, PD_NOLOCK | fsync);
        if (rc)
            rc = pd__err_wrap(s, b->slow, rc, "attempt commit on slow");
        else if (a->all)
            b->spilled_all = true;
        else
            pd__buffer_spilled_note(b, nk, ks);
    }
    free(ks);
    s_att_free(a);
    return rc;
}

int pd__buffer_att_abort(pd_store *s, void *impl) {
    pd__buffer *b = (pd__buffer *)s;
    s_att *a = impl;
    int rc = pd_attempt_abort(&a->ia);
    if (rc) rc = pd__err_wrap(s, b->slow, rc, "attempt abort on slow");
    s_att_free(a);
    return rc;
}
