/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The store interface: public dispatchers, locking, the version, and the
 * iset "seen" set (errors are in error.c).  Every public store call enters
 * here, is validated, locked, dispatched to the store's ops, and its outcome
 * recorded.
 */
#include "core/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/hash.h"

/* --------------------------------------------------------------- Version */

unsigned pd_version_number(void) { return PARTD_VERSION_NUMBER; }
const char *pd_version_string(void) { return PARTD_VERSION_STRING; }

/* ------------------------------------------------------------- Base init */

struct pd__seen {
    UT_hash_handle hh;
    size_t len;
    unsigned char key[];
};

int pd__grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 16, sz;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) return PD_ERR_NOMEM;
        ncap *= 2;
    }
    if (pd__mul_ovf(ncap, elem, &sz)) return PD_ERR_NOMEM;
    void *np = realloc(*p, sz);
    if (!np) return PD_ERR_NOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

int pd__mutex_init_recursive(pthread_mutex_t *mu) {
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc) return rc;
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    rc = pthread_mutex_init(mu, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

int pd__store_init(pd_store *s, const pd_store_ops *ops) {
    memset(s, 0, sizeof *s);
    s->ops = ops;
    int rc = pd__mutex_init_recursive(&s->mu);
    if (rc)
        return pd__err(NULL, PD_ERR_NOMEM, rc, "%s: open: mutex", ops->kind);
    rc = pthread_mutex_init(&s->err_mu, NULL);
    if (rc) {
        pthread_mutex_destroy(&s->mu);
        return pd__err(NULL, PD_ERR_NOMEM, rc, "%s: open: mutex", ops->kind);
    }
    strcpy(s->err_msg, "ok");
    s->pid = pd__getpid();
    return 0;
}

static void s_seen_clear(pd_store *s) {
    pd__seen *e, *tmp;
    HASH_ITER(hh, s->iset_seen, e, tmp) {
        HASH_DEL(s->iset_seen, e);
        free(e);
    }
}

void pd__store_fini(pd_store *s) {
    s_seen_clear(s);
    pthread_mutex_destroy(&s->err_mu);
    pthread_mutex_destroy(&s->mu);
}

void *pd__store_new(size_t size, const pd_store_ops *ops, int *rc) {
    pd_store *s = calloc(1, size);
    if (!s) {
        *rc = pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "%s: open", ops->kind);
        return NULL;
    }
    *rc = pd__store_init(s, ops);
    if (*rc) {
        free(s);
        return NULL;
    }
    return s;
}

/* ------------------------------------------------------------------ Fork */

static pid_t g_pid; /* getpid(), refreshed in forked children */
static pthread_once_t g_pid_once = PTHREAD_ONCE_INIT;

static void s_pid_child(void) {
    __atomic_store_n(&g_pid, getpid(), __ATOMIC_SEQ_CST);
}

static void s_pid_init(void) {
    __atomic_store_n(&g_pid, getpid(), __ATOMIC_SEQ_CST);
    pthread_atfork(NULL, NULL, s_pid_child);
}

pid_t pd__getpid(void) {
    pthread_once(&g_pid_once, s_pid_init);
    return __atomic_load_n(&g_pid, __ATOMIC_RELAXED);
}

/* In a forked child only the forking thread exists: mutexes held by the
 * parent (even by that thread, whose id changed) are reset, and the lock
 * depth starts again at zero.  The store's own lock hook re-acquires what it
 * needs (a File opens its own lock file). */
static void s_check_fork(pd_store *s) {
    pid_t me = pd__getpid();
    if (PD__LIKELY(s->pid == me)) return;
    pd__mutex_init_recursive(&s->mu);
    pthread_mutex_init(&s->err_mu, NULL);
    s->lock_depth = 0;
    s->pid = me;
}

/* --------------------------------------------------------------- Locking */

static int s_lock_as(pd_store *s, bool explicit_) {
    s_check_fork(s);
    pthread_mutex_lock(&s->mu);
    if (s->lock_depth == 0) s->lock_explicit = explicit_;
    if (s->lock_depth == 0 && s->ops->lock) {
        int rc = s->ops->lock(s);
        if (rc) {
            pthread_mutex_unlock(&s->mu);
            return rc;
        }
    }
    if (s->lock_depth == 0) s->lock_owner = pthread_self();
    s->lock_depth++;
    return 0;
}

static int s_lock(pd_store *s) { return s_lock_as(s, false); }

static int s_unlock(pd_store *s) {
    int rc = 0;
    if (--s->lock_depth == 0 && s->ops->unlock) rc = s->ops->unlock(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static bool s_holds_lock(pd_store *s) {
    /* lock_owner is only written by the thread holding mu; if this thread
     * is the owner it holds mu, so the read below is stable for it. */
    return s->lock_depth > 0 && pthread_equal(s->lock_owner, pthread_self());
}

int pd_lock(pd_store *s) {
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "lock: NULL store");
    pd__err_clear(s);
    int rc = s_lock_as(s, true);
    if (rc == 0) pd__err_clear(s);
    return rc;
}

int pd_unlock(pd_store *s) {
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "unlock: NULL store");
    pd__err_clear(s);
    if (!s_holds_lock(s))
        return pd__err(s, PD_ERR_MISUSE, 0,
                       "unlock: this thread does not hold the lock");
    int rc = s_unlock(s);
    if (rc == 0) pd__err_clear(s);
    return rc;
}

/* Wrappers lock their inner stores from their own lock hooks.  These skip
 * the public functions' error bookkeeping, so a failing op's message, set
 * before the unlock, survives it. */
int pd__lock_inner(pd_store *outer, pd_store *inner) {
    int rc = s_lock_as(inner, outer->lock_explicit);
    if (rc) return pd__err_inner(outer, inner, rc);
    return 0;
}

int pd__unlock_inner(pd_store *outer, pd_store *inner) {
    if (!s_holds_lock(inner))
        return pd__err(outer, PD_ERR_MISUSE, 0,
                       "unlock: inner %s store is not locked by this thread",
                       inner->ops->kind);
    int rc = s_unlock(inner);
    if (rc) return pd__err_inner(outer, inner, rc);
    return 0;
}

/* ------------------------------------------------------------ Dispatch */

/* Validates the store (not NULL; its error cleared) and the common
 * arguments of a batch call.  Returns 0 or the error (recorded on s). */
static int s_check_batch(pd_store *s, const char *op, size_t n,
                         const pd_key *keys, const pd_bytes *vals,
                         bool need_vals, unsigned flags, unsigned allowed) {
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "%s: NULL store", op);
    pd__err_clear(s);
    if (flags & ~allowed)
        return pd__err(s, PD_ERR_MISUSE, 0, "%s: unknown flags 0x%x", op,
                       flags & ~allowed);
    if (n == 0) return 0;
    if (!keys) return pd__err(s, PD_ERR_MISUSE, 0, "%s: NULL keys array", op);
    if (need_vals && !vals)
        return pd__err(s, PD_ERR_MISUSE, 0, "%s: NULL values array", op);
    for (size_t i = 0; i < n; i++) {
        const pd_key *k = &keys[i];
        /* The common case, a flat key and a value with data: no call. */
        if (PD__LIKELY(k->nparts == 0 && k->size <= PD_KEY_MAX &&
                       (k->data || k->size == 0) &&
                       (!need_vals || vals[i].data || vals[i].size == 0)))
            continue;
        char why[64];
        int rc = pd__key_check(&keys[i], why);
        if (rc) return pd__err(s, rc, 0, "%s: key %zu: %s", op, i, why);
        if (need_vals && vals[i].size > 0 && !vals[i].data)
            return pd__err(s, PD_ERR_MISUSE, 0,
                           "%s: value %zu: NULL data with size %zu", op, i,
                           vals[i].size);
    }
    return 0;
}

int pd__check_batch(pd_store *s, const char *op, size_t n, const pd_key *keys,
                    const pd_bytes *vals, bool need_vals, unsigned flags,
                    unsigned allowed) {
    return s_check_batch(s, op, n, keys, vals, need_vals, flags, allowed);
}

/* Locks (unless PD_NOLOCK), or just takes mu. */
static int s_enter(pd_store *s, unsigned flags) {
    if (flags & PD_NOLOCK) {
        s_check_fork(s);
        pthread_mutex_lock(&s->mu);
        return 0;
    }
    return s_lock(s);
}

/* Unlocks (or releases mu).  An op's error survives the unlock hooks: a
 * wrapper's hook unlocks its inner stores, whose bookkeeping may replace
 * the thread's last error. */
static int s_leave(pd_store *s, unsigned flags, int rc) {
    if (flags & PD_NOLOCK) {
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    if (PD__LIKELY(rc == 0)) return s_unlock(s);
    pd__errsave sv;
    bool mine = pd__err_is_current(s);
    if (mine) pd__err_save(s, &sv);
    s_unlock(s);
    if (mine) pd__err_restore(s, &sv);
    return rc;
}

/* Records the outcome of an op: on success clears the thread error; on an
 * error the op did not describe, writes a generic message. */
static int s_finish(pd_store *s, const char *op, int rc) {
    if (rc == 0) {
        pd__err_clear(s);
    } else if (!pd__err_is_current(s)) {
        pd__err(s, rc, 0, "%s: %s", op, pd_strerror(rc));
    }
    return rc;
}

static int s_append_checked(pd_store *s, size_t n, const pd_key *keys,
                            const pd_bytes *vals, unsigned flags) {
    int rc = s_enter(s, flags);
    if (rc) return s_finish(s, "append", rc);
    rc = s->ops->append(s, n, keys, vals, flags | PD_NOLOCK);
    rc = s_leave(s, flags, rc);
    return s_finish(s, "append", rc);
}

int pd_append(pd_store *s, size_t n, const pd_key *keys, const pd_bytes *vals,
              unsigned flags) {
    int rc = s_check_batch(s, "append", n, keys, vals, true, flags,
                           PD__ALL_CALL_FLAGS);
    if (rc || n == 0) return rc;
    return s_append_checked(s, n, keys, vals, flags);
}

int pd__append_inner(pd_store *s, size_t n, const pd_key *keys,
                     const pd_bytes *vals, unsigned flags) {
    pd__err_clear(s);
    if (n == 0) return 0;
    return s_append_checked(s, n, keys, vals, flags & PD__ALL_CALL_FLAGS);
}

int pd__set_inner(pd_store *s, size_t n, const pd_key *keys,
                  const pd_bytes *vals, unsigned flags) {
    pd__err_clear(s);
    if (n == 0) return 0;
    flags &= PD__ALL_CALL_FLAGS;
    int rc = s_enter(s, flags);
    if (rc) return s_finish(s, "iset", rc);
    rc = s->ops->set(s, n, keys, vals, flags | PD_NOLOCK);
    rc = s_leave(s, flags, rc);
    return s_finish(s, "iset", rc);
}

static int s_get_checked(pd_store *s, size_t n, const pd_key *keys,
                         pd_result **out, unsigned flags, void *buf,
                         size_t cap) {
    int rc = 0;
    pd_result *r = pd__result_new(n, 0);
    if (!r) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: result table");
    pd__result_use(r, buf, cap);
    if (n > 0) {
        rc = s_enter(s, flags);
        if (rc) {
            pd_result_free(&r);
            return s_finish(s, "get", rc);
        }
        rc = s->ops->get(s, n, keys, r, flags | PD_NOLOCK);
        rc = s_leave(s, flags, rc);
        if (rc == 0 && r->count != n)
            rc = pd__err(s, PD_ERR_CORRUPT, 0,
                         "get: store returned %zu values for %zu keys",
                         r->count, n);
    }
    if (rc) {
        pd_result_free(&r);
        return s_finish(s, "get", rc);
    }
    *out = r;
    return s_finish(s, "get", 0);
}

int pd_get(pd_store *s, size_t n, const pd_key *keys, pd_result **out,
           unsigned flags) {
    if (out) *out = NULL;
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "get: NULL store");
    pd__err_clear(s);
    if (!out) return pd__err(s, PD_ERR_MISUSE, 0, "get: NULL result pointer");
    int rc = s_check_batch(s, "get", n, keys, NULL, false, flags, PD_NOLOCK);
    if (rc) return rc;
    return s_get_checked(s, n, keys, out, flags, NULL, 0);
}

int pd_get_into(pd_store *s, size_t n, const pd_key *keys, void *buf,
                size_t cap, pd_result **out, unsigned flags) {
    if (out) *out = NULL;
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "get: NULL store");
    pd__err_clear(s);
    if (!out) return pd__err(s, PD_ERR_MISUSE, 0, "get: NULL result pointer");
    if (!buf && cap)
        return pd__err(s, PD_ERR_MISUSE, 0, "get: NULL buffer of %zu bytes",
                       cap);
    int rc = s_check_batch(s, "get", n, keys, NULL, false, flags, PD_NOLOCK);
    if (rc) return rc;
    return s_get_checked(s, n, keys, out, flags, buf, cap);
}

int pd__get_inner(pd_store *s, size_t n, const pd_key *keys, pd_result **out,
                  unsigned flags) {
    *out = NULL;
    pd__err_clear(s);
    return s_get_checked(s, n, keys, out, flags & PD_NOLOCK, NULL, 0);
}

int pd_delete(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    int rc = s_check_batch(s, "delete", n, keys, NULL, false, flags, PD_NOLOCK);
    if (rc || n == 0) return rc;
    rc = s_enter(s, flags);
    if (rc) return s_finish(s, "delete", rc);
    rc = s->ops->del(s, n, keys, flags | PD_NOLOCK);
    rc = s_leave(s, flags, rc);
    return s_finish(s, "delete", rc);
}

static pd__seen *s_seen_find(pd_store *s, const pd__pkey *pk) {
    pd__seen *e = NULL;
    HASH_FIND(hh, s->iset_seen, pk->p, pk->len, e);
    return e;
}

/* The keys of one iset batch, to drop repeats within it in O(1) each. */
typedef struct s_bkey {
    UT_hash_handle hh;
} s_bkey;

int pd_iset(pd_store *s, size_t n, const pd_key *keys, const pd_bytes *vals,
            unsigned flags) {
    int rc = s_check_batch(s, "iset", n, keys, vals, true, flags,
                           PD__ALL_CALL_FLAGS);
    if (rc || n == 0) return rc;

    /* Work out which keys are new (first occurrence, not seen before). */
    pd__pkey *pks = calloc(n, sizeof *pks);
    pd_key *nk = malloc(n * sizeof *nk);
    pd_bytes *nv = malloc(n * sizeof *nv);
    size_t *idx = malloc(n * sizeof *idx);
    s_bkey *hk = calloc(n, sizeof *hk), *batch = NULL;
    size_t m = 0;
    if (!pks || !nk || !nv || !idx || !hk) {
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "iset: key table");
        goto out;
    }
    rc = s_enter(s, flags);
    if (rc) {
        rc = s_finish(s, "iset", rc);
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (pd__pkey_set(&pks[i], &keys[i])) {
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "iset: key copy");
            break;
        }
        if (s_seen_find(s, &pks[i])) continue;
        s_bkey *dup = NULL;
        HASH_FIND(hh, batch, pks[i].p, pks[i].len, dup);
        if (dup) continue;
        HASH_ADD_KEYPTR(hh, batch, pks[i].p, pks[i].len, &hk[i]);
        if (!hk[i].hh.tbl) {
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "iset: batch key table");
            break;
        }
        idx[m] = i;
        nk[m] = keys[i];
        nv[m] = vals[i];
        m++;
    }
    if (rc == 0 && m > 0) rc = s->ops->set(s, m, nk, nv, flags | PD_NOLOCK);
    for (size_t j = 0; rc == 0 && j < m; j++) {
        const pd__pkey *pk = &pks[idx[j]];
        pd__seen *e = malloc(sizeof *e + pk->len);
        if (!e) {
            /* The values are set; only the memo is lost, so a repeat would
             * set them again.  Report it: the caller asked for idempotence. */
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "iset: seen-set entry");
            break;
        }
        e->len = pk->len;
        memcpy(e->key, pk->p, pk->len);
        HASH_ADD_KEYPTR(hh, s->iset_seen, e->key, e->len, e);
        if (!e->hh.tbl) {
            free(e);
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "iset: seen-set table");
            break;
        }
    }
    rc = s_leave(s, flags, rc);
    rc = s_finish(s, "iset", rc);
out:
    HASH_CLEAR(hh, batch);
    free(hk);
    if (pks)
        for (size_t i = 0; i < n; i++) pd__pkey_free(&pks[i]);
    free(pks);
    free(nk);
    free(nv);
    free(idx);
    return rc;
}

int pd_drop(pd_store *s, unsigned flags) {
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "drop: NULL store");
    pd__err_clear(s);
    if (flags & ~PD_NOLOCK)
        return pd__err(s, PD_ERR_MISUSE, 0, "drop: unknown flags 0x%x",
                       flags & ~PD_NOLOCK);
    int rc = s_enter(s, flags);
    if (rc) return s_finish(s, "drop", rc);
    rc = s->ops->drop(s, flags | PD_NOLOCK);
    s_seen_clear(s);
    rc = s_leave(s, flags, rc);
    return s_finish(s, "drop", rc);
}

int pd_keys(pd_store *s, pd_keylist **out, unsigned flags) {
    if (out) *out = NULL;
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "keys: NULL store");
    pd__err_clear(s);
    if (!out) return pd__err(s, PD_ERR_MISUSE, 0, "keys: NULL result pointer");
    if (flags & ~PD_NOLOCK)
        return pd__err(s, PD_ERR_MISUSE, 0, "keys: unknown flags 0x%x",
                       flags & ~PD_NOLOCK);
    pd_keylist *kl = pd__keylist_new();
    if (!kl) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: list");
    int rc = s_enter(s, flags);
    if (rc) {
        pd_keylist_free(&kl);
        return s_finish(s, "keys", rc);
    }
    rc = s->ops->keys(s, kl, flags | PD_NOLOCK);
    rc = s_leave(s, flags, rc);
    if (rc == 0 && pd__keylist_finish(kl))
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: list");
    if (rc) {
        pd_keylist_free(&kl);
        return s_finish(s, "keys", rc);
    }
    *out = kl;
    return s_finish(s, "keys", 0);
}

int pd__check_inner(pd_store *s, const char *op, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    pd__err_clear(s);
    if (!s->ops->check || n == 0) return 0;
    s_check_fork(s);
    pthread_mutex_lock(&s->mu);
    int rc = s->ops->check(s, op, n, keys, vals,
                           (flags & PD__ALL_CALL_FLAGS) | PD_NOLOCK);
    pthread_mutex_unlock(&s->mu);
    return s_finish(s, op, rc);
}

int pd__call(pd_store *s, const char *op, unsigned flags, unsigned allowed,
             pd__call_fn fn, void *arg) {
    pd__err_clear(s);
    if (flags & ~allowed)
        return pd__err(s, PD_ERR_MISUSE, 0, "%s: unknown flags 0x%x", op,
                       flags & ~allowed);
    int rc = s_enter(s, flags);
    if (rc) return s_finish(s, op, rc);
    rc = fn(s, arg, flags | PD_NOLOCK);
    rc = s_leave(s, flags, rc);
    return s_finish(s, op, rc);
}

int pd_close(pd_store **sp) {
    if (!sp || !*sp) return 0;
    pd_store *s = *sp;
    *sp = NULL;
    pd__err_clear(s);
    s_check_fork(s);
    int rc = 0;
    /* A handle closed while this thread holds its lock: release every
     * level first (the lock hooks end the sessions cleanly). */
    pthread_mutex_lock(&s->mu);
    if (s_holds_lock(s)) {
        while (s->lock_depth > 0) {
            int urc = s_unlock(s);
            if (urc && !rc) {
                rc = urc;
                pd__err_to_thread(s);
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    pd__attempts_close(s);
    if (s->ops->flush) {
        /* Flush under the full lock, as a normal call would. */
        int frc = s_lock(s);
        if (frc == 0) {
            frc = s->ops->flush(s);
            int urc = s_unlock(s);
            if (!frc) frc = urc;
        }
        if (frc && !rc) {
            rc = frc;
            pd__err_to_thread(s);
        }
    }
    pthread_mutex_lock(&s->mu);
    int drc = s->ops->destroy(s);
    if (drc && !rc) {
        rc = drc;
        pd__err_to_thread(s);
    }
    pthread_mutex_unlock(&s->mu);
    pd__store_fini(s);
    pd__err_forget(s);
    free(s);
    if (!rc) pd__err_clear(NULL);
    return rc;
}

const char *pd_store_kind(const pd_store *s) {
    return s ? s->ops->kind : "(null)";
}
