/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Attempts (partd.h, "Attempts"): the public calls.  Each validates its
 * arguments, then runs the store's attempt op through pd__call (the
 * dispatchers' sequence: clear the error, lock, call, unlock keeping the
 * op's error, record the outcome).  The store keeps a list of its open
 * attempts so that pd_close can abort them; an attempt outliving its store
 * is left with no store and only freed.
 */
#include "core/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define S_FLAGS (PD_NOLOCK | PD_FSYNC)

static void s_unlink(pd_attempt *a) {
    pd_store *s = a->store;
    if (a->prev)
        a->prev->next = a->next;
    else
        s->attempts = a->next;
    if (a->next) a->next->prev = a->prev;
    a->next = a->prev = NULL;
}

static int s_unsupported(pd_store *s, const char *op) {
    if (!strcmp(s->ops->kind, "fanout"))
        return pd__err(s, PD_ERR_UNSUPPORTED, 0,
                       "%s: a fanout store has no attempts (a commit could "
                       "not be atomic across its stores; begin attempts on "
                       "each inner store instead)",
                       op);
    return pd__err(s, PD_ERR_UNSUPPORTED, 0,
                   "%s: a %s store has no attempts (they need a Log "
                   "underneath: pd_log_open, or an Encode, Namespace or "
                   "Buffer layer over one)",
                   op, s->ops->kind);
}

/* ---------------------------------------------------------------- Begin */

typedef struct s_begin {
    const pd_key *writer;
    uint64_t attempt;
    void *impl;
} s_begin;

static int s_begin_fn(pd_store *s, void *arg, unsigned flags) {
    s_begin *b = arg;
    return s->ops->att_begin(s, b->writer, b->attempt, &b->impl, flags);
}

int pd_attempt_begin(pd_store *s, const pd_key *writer, uint64_t attempt,
                     pd_attempt **out, unsigned flags) {
    if (out) *out = NULL;
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "attempt begin: NULL store");
    pd__err_clear(s);
    if (!out)
        return pd__err(s, PD_ERR_MISUSE, 0, "attempt begin: NULL out pointer");
    if (!writer)
        return pd__err(s, PD_ERR_MISUSE, 0, "attempt begin: NULL writer");
    char why[64];
    int rc = pd__key_check(writer, why);
    if (rc) return pd__err(s, rc, 0, "attempt begin: writer: %s", why);
    if (flags & ~PD_NOLOCK)
        return pd__err(s, PD_ERR_MISUSE, 0, "attempt begin: unknown flags 0x%x",
                       flags & ~PD_NOLOCK);
    if (!s->ops->att_begin) return s_unsupported(s, "attempt begin");
    size_t wlen = pd__key_packed_size(writer);
    pd_attempt *a = calloc(1, sizeof *a + wlen);
    if (!a) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "attempt begin");
    pd__key_pack(writer, a->wpk);
    a->wlen = wlen;
    if (pd__key_unpack(a->wpk, wlen, &a->writer, a->parts)) {
        free(a);
        return pd__err(s, PD_ERR_MISUSE, 0, "attempt begin: bad writer key");
    }
    a->attempt = attempt;
    a->pid = pd__getpid();
    s_begin b = {&a->writer, attempt, NULL};
    rc = pd__call(s, "attempt begin", flags, PD_NOLOCK, s_begin_fn, &b);
    if (rc) {
        free(a);
        return rc;
    }
    a->impl = b.impl;
    a->store = s;
    pthread_mutex_lock(&s->mu);
    a->next = s->attempts;
    if (a->next) a->next->prev = a;
    s->attempts = a;
    pthread_mutex_unlock(&s->mu);
    *out = a;
    return 0;
}

/* --------------------------------------------------------------- Append */

/* The attempt's store, or an error on why it has none (recorded on the
 * thread). */
static int s_usable(const pd_attempt *a, const char *op) {
    if (!a) return pd__err(NULL, PD_ERR_MISUSE, 0, "%s: NULL attempt", op);
    if (!a->store)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "%s: the attempt's store was closed (the attempt was "
                       "aborted then)",
                       op);
    if (a->pid != pd__getpid())
        return pd__err(a->store, PD_ERR_MISUSE, 0,
                       "%s: the attempt was begun by process %ld; a forked "
                       "child cannot use it",
                       op, (long)a->pid);
    return 0;
}

typedef struct s_app {
    void *impl;
    size_t n;
    const pd_key *keys;
    const pd_bytes *vals;
} s_app;

static int s_append_fn(pd_store *s, void *arg, unsigned flags) {
    s_app *p = arg;
    return s->ops->att_append(s, p->impl, p->n, p->keys, p->vals, flags);
}

int pd__attempt_append_inner(pd_attempt *a, size_t n, const pd_key *keys,
                             const pd_bytes *vals, unsigned flags) {
    int rc = s_usable(a, "attempt append");
    if (rc) return rc;
    pd__err_clear(a->store);
    if (n == 0) return 0;
    s_app p = {a->impl, n, keys, vals};
    return pd__call(a->store, "attempt append", flags & S_FLAGS, S_FLAGS,
                    s_append_fn, &p);
}

int pd_attempt_append(pd_attempt *a, size_t n, const pd_key *keys,
                      const pd_bytes *vals, unsigned flags) {
    int rc = s_usable(a, "attempt append");
    if (rc) return rc;
    pd_store *s = a->store;
    pd__err_clear(s);
    rc = pd__check_batch(s, "attempt append", n, keys, vals, true, flags,
                         S_FLAGS);
    if (rc || n == 0) return rc;
    s_app p = {a->impl, n, keys, vals};
    return pd__call(s, "attempt append", flags, S_FLAGS, s_append_fn, &p);
}

/* ------------------------------------------------------- Commit, abort */

/* The impl of an ending attempt, and whether the op took it (it frees it
 * whatever the outcome). */
typedef struct s_end {
    void *impl;
    bool taken;
} s_end;

static int s_commit_fn(pd_store *s, void *arg, unsigned flags) {
    s_end *e = arg;
    e->taken = true;
    return s->ops->att_commit(s, e->impl, flags);
}

static int s_abort_fn(pd_store *s, void *arg, unsigned flags) {
    (void)flags;
    s_end *e = arg;
    e->taken = true;
    return s->ops->att_abort(s, e->impl);
}

/* Runs `fn` (commit or abort) on the attempt's impl; if the call could not
 * even start (its lock failed), the impl is still aborted (mutex only), so
 * nothing of it is kept, and the first error is returned. */
static int s_end_call(pd_store *s, const char *op, unsigned flags,
                      pd__call_fn fn, void *impl) {
    s_end e = {impl, false};
    int rc = pd__call(s, op, flags, S_FLAGS, fn, &e);
    if (!e.taken) {
        pd__errsave sv;
        pd__err_save(s, &sv);
        pd__call(s, "attempt abort", PD_NOLOCK, PD_NOLOCK, s_abort_fn, &e);
        pd__err_restore(s, &sv);
    }
    return rc;
}

/* Takes a out of its store's list; returns its impl. */
static void *s_detach(pd_attempt *a) {
    pthread_mutex_lock(&a->store->mu);
    void *impl = a->impl;
    a->impl = NULL;
    s_unlink(a);
    pthread_mutex_unlock(&a->store->mu);
    return impl;
}

int pd_attempt_commit(pd_attempt **ap, unsigned flags) {
    if (!ap || !*ap)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "attempt commit: NULL attempt");
    pd_attempt *a = *ap;
    *ap = NULL;
    int rc = s_usable(a, "attempt commit");
    if (rc) {
        if (a->store && a->pid != pd__getpid()) {
            /* A forked child's copy: free what it holds, nothing else. */
            pd__errsave sv;
            pd__err_save(a->store, &sv);
            s_end e = {s_detach(a), false};
            pd__call(a->store, "attempt abort", PD_NOLOCK, PD_NOLOCK,
                     s_abort_fn, &e);
            pd__err_restore(a->store, &sv);
        }
        free(a);
        return rc;
    }
    pd_store *s = a->store;
    if (flags & ~S_FLAGS) {
        s_end_call(s, "attempt abort", 0, s_abort_fn, s_detach(a));
        free(a);
        return pd__err(s, PD_ERR_MISUSE, 0,
                       "attempt commit: unknown flags 0x%x (the attempt was "
                       "aborted)",
                       flags & ~S_FLAGS);
    }
    void *impl = s_detach(a);
    free(a);
    return s_end_call(s, "attempt commit", flags, s_commit_fn, impl);
}

int pd_attempt_abort(pd_attempt **ap) {
    if (!ap || !*ap) return 0;
    pd_attempt *a = *ap;
    *ap = NULL;
    if (!a->store) {
        free(a);
        return 0;
    }
    pd_store *s = a->store;
    void *impl = s_detach(a);
    /* In a forked child only the mutex: the op frees, no I/O. */
    unsigned fl = a->pid == pd__getpid() ? 0 : PD_NOLOCK;
    free(a);
    return s_end_call(s, "attempt abort", fl, s_abort_fn, impl);
}

void pd__attempts_close(pd_store *s) {
    pthread_mutex_lock(&s->mu);
    while (s->attempts) {
        pd_attempt *a = s->attempts;
        void *impl = a->impl;
        a->impl = NULL;
        s_unlink(a);
        a->store = NULL;
        if (impl) s->ops->att_abort(s, impl);
    }
    pthread_mutex_unlock(&s->mu);
}

pd_store *pd_attempt_store(const pd_attempt *a) { return a ? a->store : NULL; }

int pd_attempt_id(const pd_attempt *a, pd_key *writer, uint64_t *attempt) {
    if (!a) return pd__err(NULL, PD_ERR_MISUSE, 0, "attempt id: NULL attempt");
    if (writer) *writer = a->writer;
    if (attempt) *attempt = a->attempt;
    return 0;
}
