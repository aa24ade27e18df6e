/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Namespace: one shuffle's own key space on a shared store (see partd.h and
 * docs/fanout.md).  It lives beside the Fanout (src/fanout): together they
 * spread many shuffles over the same servers.
 *
 * Mapping: a flat key k is stored as the tuple (ns, k); a tuple (a, b, ...)
 * as (ns, a, b, ...).  A 1-tuple is the flat key (the library's rule), so
 * every flat key maps to exactly two parts and every tuple to three or
 * more: the part count tells them apart, no marker needed.  Over a Client
 * the mapped key crosses the wire as a tuple, its parts joined by "-|-":
 * a name that contains "-|-" or ends in "-|" would split wrongly, so open
 * refuses it; the key's own parts are checked by the Client as ever.
 *
 * The layer pattern: the lock hook locks the inner store, every op calls it
 * with PD_NOLOCK and wraps its errors, naming the key in this namespace's
 * terms.
 */
#include "core/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_ns {
    pd_store base;
    pd_store *inner;
    bool owned;
    unsigned char *ns;
    size_t nslen;
    char repr[PD__KEYSHORT_MAX]; /* the name, for messages */
    pd_key *mk;                  /* mapped keys of the current op */
    size_t kcap;
    pd_bytes *mp; /* their parts */
    size_t pcap;
} s_ns;

static const pd_store_ops s_ns_ops;

/* Maps keys[0..n) into mk (parts in mp).  0, PD_ERR_KEY naming a key that
 * no longer fits the key limits with the namespace part, PD_ERR_NOMEM. */
static int s_map(s_ns *ns, size_t n, const pd_key *keys, const char *op) {
    pd_store *s = &ns->base;
    char ks[PD__KEYSHORT_MAX];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        pd__parts pp;
        pd__key_parts(&keys[i], &pp);
        size_t bytes = ns->nslen;
        for (size_t j = 0; j < pp.n; j++) bytes += pp.p[j].size;
        if (pp.n + 1 > PD_KEY_MAX_PARTS)
            return pd__err(s, PD_ERR_KEY, 0,
                           "%s %s: with the namespace part the key has %zu "
                           "parts (at most %d)",
                           op, pd__key_short(&keys[i], ks), pp.n + 1,
                           PD_KEY_MAX_PARTS);
        if (bytes > PD_KEY_MAX)
            return pd__err(s, PD_ERR_KEY, 0,
                           "%s %s: with the namespace part (%zu bytes) the "
                           "key has %zu bytes (at most %d)",
                           op, pd__key_short(&keys[i], ks), ns->nslen, bytes,
                           PD_KEY_MAX);
        total += pp.n + 1;
    }
    if (pd__grow((void **)&ns->mk, &ns->kcap, n, sizeof *ns->mk) ||
        pd__grow((void **)&ns->mp, &ns->pcap, total, sizeof *ns->mp))
        return pd__err(s, PD_ERR_NOMEM, ENOMEM, "%s: %zu keys", op, n);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        pd__parts pp;
        pd__key_parts(&keys[i], &pp);
        pd_bytes *p = ns->mp + at;
        p[0] = (pd_bytes){ns->ns, ns->nslen};
        memcpy(p + 1, pp.p, pp.n * sizeof *p);
        ns->mk[i] = (pd_key){NULL, 0, p, pp.n + 1};
        at += pp.n + 1;
    }
    return 0;
}

/* Records the inner store's error for op on keys[0..n), naming the key the
 * inner message names (in this namespace's terms) when one does. */
static int s_wrap(s_ns *ns, int rc, const char *op, size_t n,
                  const pd_key *keys) {
    char ks[PD__KEYSHORT_MAX], mks[PD__KEYSHORT_MAX], imsg[PD__MSG_MAX];
    snprintf(imsg, sizeof imsg, "%s", pd_errmsg(ns->inner));
    size_t named = n;
    for (size_t i = 0; i < n && named == n; i++)
        if (strstr(imsg, pd__key_short(&ns->mk[i], mks))) named = i;
    if (named == n && n == 1) named = 0;
    if (named < n)
        return pd__err_wrap(&ns->base, ns->inner, rc, "%s %s %s", ns->repr, op,
                            pd__key_short(&keys[named], ks));
    return pd__err_wrap(&ns->base, ns->inner, rc, "%s %s (%zu keys)", ns->repr,
                        op, n);
}

/* The key k of this namespace that inner key ik stands for (parts point
 * into ik's); false when ik is not in this namespace. */
static bool s_unmap(const s_ns *ns, const pd_key *ik, pd_key *k) {
    if (ik->nparts < 2 || ik->parts[0].size != ns->nslen ||
        (ns->nslen && memcmp(ik->parts[0].data, ns->ns, ns->nslen) != 0))
        return false;
    if (ik->nparts == 2)
        *k = PD_KEY(ik->parts[1].data, ik->parts[1].size);
    else
        *k = PD_KEY_TUPLE(ik->parts + 1, ik->nparts - 1);
    return true;
}

/* ------------------------------------------------------------------ Ops */

/* An append or an iset (write: pd__append_inner or pd__set_inner) of the
 * keys under the namespace. */
static int s_write(pd_store *s, const char *op,
                   int (*write)(pd_store *, size_t, const pd_key *,
                                const pd_bytes *, unsigned),
                   size_t n, const pd_key *keys, const pd_bytes *vals,
                   unsigned flags) {
    s_ns *ns = (s_ns *)s;
    int rc = s_map(ns, n, keys, op);
    if (rc) return rc;
    rc = write(ns->inner, n, ns->mk, vals, PD_NOLOCK | (flags & PD_FSYNC));
    return rc ? s_wrap(ns, rc, op, n, keys) : 0;
}

static int s_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    return s_write(s, "append", pd__append_inner, n, keys, vals, flags);
}

static int s_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    s_ns *ns = (s_ns *)s;
    int rc = s_map(ns, n, keys, "get");
    if (rc) return rc;
    pd_result *ir = NULL;
    rc = pd__get_inner(ns->inner, n, ns->mk, &ir, PD_NOLOCK);
    if (rc) return s_wrap(ns, rc, "get", n, keys);
    if (pd__result_move(r, ir))
        rc =
            pd__err(s, PD_ERR_NOMEM, ENOMEM, "%s get: %zu values", ns->repr, n);
    pd_result_free(&ir);
    return rc;
}

static int s_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    (void)flags;
    s_ns *ns = (s_ns *)s;
    int rc = s_map(ns, n, keys, "delete");
    if (rc) return rc;
    rc = pd_delete(ns->inner, n, ns->mk, PD_NOLOCK);
    return rc ? s_wrap(ns, rc, "delete", n, keys) : 0;
}

static int s_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    return s_write(s, "iset", pd__set_inner, n, keys, vals, flags);
}

static int s_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    s_ns *ns = (s_ns *)s;
    pd_keylist *il = NULL;
    int rc = pd_keys(ns->inner, &il, PD_NOLOCK);
    if (rc) return pd__err_wrap(s, ns->inner, rc, "%s keys", ns->repr);
    size_t cnt = pd_keylist_count(il);
    for (size_t i = 0; i < cnt && rc == 0; i++) {
        pd_key ik, k;
        if (pd_keylist_key(il, i, &ik) || !s_unmap(ns, &ik, &k)) continue;
        if (pd__keylist_add(kl, &k, pd_keylist_size(il, i)))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "%s keys: %zu keys", ns->repr,
                         cnt);
    }
    pd_keylist_free(&il);
    return rc;
}

/* Deletes this namespace's keys only: those the inner store lists under
 * the namespace part, in one batch. */
static int s_drop(pd_store *s, unsigned flags) {
    (void)flags;
    s_ns *ns = (s_ns *)s;
    pd_keylist *il = NULL;
    int rc = pd_keys(ns->inner, &il, PD_NOLOCK);
    if (rc) return pd__err_wrap(s, ns->inner, rc, "%s drop: keys", ns->repr);
    size_t cnt = pd_keylist_count(il), m = 0;
    pd_key *mine = malloc((cnt ? cnt : 1) * sizeof *mine);
    if (!mine) {
        pd_keylist_free(&il);
        return pd__err(s, PD_ERR_NOMEM, ENOMEM, "%s drop: %zu keys", ns->repr,
                       cnt);
    }
    for (size_t i = 0; i < cnt; i++) {
        pd_key ik, k;
        if (pd_keylist_key(il, i, &ik) == 0 && s_unmap(ns, &ik, &k))
            mine[m++] = ik;
    }
    if (m > 0) {
        rc = pd_delete(ns->inner, m, mine, PD_NOLOCK);
        if (rc)
            rc = pd__err_wrap(s, ns->inner, rc, "%s drop: delete %zu keys",
                              ns->repr, m);
    }
    free(mine);
    pd_keylist_free(&il);
    return rc;
}

/* pd_store_ops.check: the key limits with the namespace part, then the
 * inner store's check of the mapped keys. */
static int s_check(pd_store *s, const char *op, size_t n, const pd_key *keys,
                   const pd_bytes *vals, unsigned flags) {
    s_ns *ns = (s_ns *)s;
    int rc = s_map(ns, n, keys, op);
    if (rc) return rc;
    rc = pd__check_inner(ns->inner, op, n, ns->mk, vals, flags);
    return rc ? s_wrap(ns, rc, op, n, keys) : 0;
}

static int s_lock_hook(pd_store *s) {
    return pd__lock_inner(s, ((s_ns *)s)->inner);
}

static int s_unlock_hook(pd_store *s) {
    s_ns *ns = (s_ns *)s;
    int rc = pd__unlock_inner(s, ns->inner);
    return rc ? pd__err_wrap(s, ns->inner, rc, "%s unlock", ns->repr) : 0;
}

static int s_destroy(pd_store *s) {
    s_ns *ns = (s_ns *)s;
    int rc = 0;
    if (ns->owned) {
        int crc = pd_close(&ns->inner);
        if (crc)
            rc = pd__err(s, crc, pd_errno(NULL), "%s close inner store: %s",
                         ns->repr, pd_errmsg(NULL));
    }
    ns->inner = NULL;
    free(ns->ns);
    free(ns->mk);
    free(ns->mp);
    return rc;
}

/* Attempts: the writer is mapped like a key, so writers of different
 * namespaces never conflict; the keys as s_append maps them. */
static int s_att_begin(pd_store *s, const pd_key *writer, uint64_t attempt,
                       void **impl, unsigned flags) {
    s_ns *ns = (s_ns *)s;
    int rc = s_map(ns, 1, writer, "attempt begin");
    if (rc) return rc;
    pd_attempt *ia = NULL;
    rc = pd_attempt_begin(ns->inner, &ns->mk[0], attempt, &ia,
                          PD_NOLOCK | (flags & ~PD_NOLOCK));
    if (rc) return s_wrap(ns, rc, "attempt begin", 1, writer);
    *impl = ia;
    return 0;
}

static int s_att_append(pd_store *s, void *impl, size_t n, const pd_key *keys,
                        const pd_bytes *vals, unsigned flags) {
    s_ns *ns = (s_ns *)s;
    int rc = s_map(ns, n, keys, "attempt append");
    if (rc) return rc;
    rc = pd__attempt_append_inner(impl, n, ns->mk, vals,
                                  PD_NOLOCK | (flags & PD_FSYNC));
    return rc ? s_wrap(ns, rc, "attempt append", n, keys) : 0;
}

static int s_att_commit(pd_store *s, void *impl, unsigned flags) {
    s_ns *ns = (s_ns *)s;
    pd_attempt *ia = impl;
    int rc = pd_attempt_commit(&ia, PD_NOLOCK | (flags & PD_FSYNC));
    return rc ? pd__err_wrap(s, ns->inner, rc, "%s attempt commit", ns->repr)
              : 0;
}

static int s_att_abort(pd_store *s, void *impl) {
    s_ns *ns = (s_ns *)s;
    pd_attempt *ia = impl;
    int rc = pd_attempt_abort(&ia);
    return rc ? pd__err_wrap(s, ns->inner, rc, "%s attempt abort", ns->repr)
              : 0;
}

static const pd_store_ops s_ns_ops = {
    PD__STORE_OPS("namespace"), /* keys in the namespace's key space */
    .lock = s_lock_hook,        /* the inner store's lock */
    .unlock = s_unlock_hook,
    .check = s_check,        /* a Fanout's all-or-nothing writes */
    PD__ATTEMPT_OPS(s_att_), /* the writer and keys in the namespace */
};

/* --------------------------------------------------------------- Public */

/* Whether the name joined to a key's wire form ("-|-") splits back as its
 * own first part. */
static bool s_wire_ok(const unsigned char *p, size_t n) {
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(p + i, "-|-", 3) == 0) return false;
    return !(n >= 2 && p[n - 2] == '-' && p[n - 1] == '|');
}

int pd_namespace_open(pd_store **out, pd_store **inner, const void *name,
                      size_t len, unsigned flags) {
    if (!out)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "namespace: open: NULL out");
    *out = NULL;
    if (!inner || !*inner)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "namespace: open: NULL inner store");
    if (flags & ~PD_BORROW)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "namespace: open: unknown flags 0x%x",
                       flags & ~PD_BORROW);
    if (!name && len)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "namespace: open: NULL name of %zu bytes", len);
    char ks[PD__KEYSHORT_MAX];
    pd_key nk = PD_KEY(name, len);
    if (len > PD_KEY_MAX)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "namespace: open: name of %zu bytes (at most %d)", len,
                       PD_KEY_MAX);
    if (!s_wire_ok(name, len))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "namespace: open %s: a name containing \"-|-\" or "
                       "ending in \"-|\" cannot cross a Client's wire",
                       pd__key_short(&nk, ks));
    s_ns *ns = calloc(1, sizeof *ns);
    if (!ns) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "namespace: open");
    ns->ns = malloc(len ? len : 1);
    if (!ns->ns) {
        free(ns);
        return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "namespace: open");
    }
    int rc = pd__store_init(&ns->base, &s_ns_ops);
    if (rc) {
        free(ns->ns);
        free(ns);
        return rc;
    }
    if (len) memcpy(ns->ns, name, len);
    ns->nslen = len;
    pd__key_short(&nk, ns->repr);
    ns->inner = *inner;
    ns->owned = !(flags & PD_BORROW);
    if (ns->owned) *inner = NULL;
    *out = &ns->base;
    pd__err_clear(NULL);
    return 0;
}

static s_ns *s_as(const pd_store *s) { return pd__store_as(s, &s_ns_ops); }

const void *pd_namespace_name(const pd_store *s, size_t *len) {
    s_ns *ns = s_as(s);
    if (len) *len = ns ? ns->nslen : 0;
    return ns ? ns->ns : NULL;
}

pd_store *pd_namespace_inner(const pd_store *s) {
    s_ns *ns = s_as(s);
    return ns ? ns->inner : NULL;
}
