/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Fanout: one store spread over N inner stores, each key living in exactly
 * one of them (see partd.h and docs/fanout.md).  src/fanout holds the two
 * layers that spread a shuffle over several servers: this one, and the
 * Namespace (namespace.c), which gives each shuffle its own key space on
 * shared stores.
 *
 * Routing: XXH64 (seed 0) of the key's packed form (internal.h), mapped to
 * [0, N) by jump consistent hash (Lamping and Veach, 2014): growing N to
 * N + 1 moves only the keys that go to the new store, about 1/(N + 1) of
 * them, where a modulo would move nearly all; it costs O(log N) steps.
 *
 * A batch is split per inner store (a stable counting sort: a key's values
 * keep their order) and each part sent to its store.  A write to two
 * stores or more first runs every part's check (pd_store_ops.check: what
 * the store would refuse locally), so a key a Client cannot send never
 * leaves the batch half applied.  Inner Clients each
 * get a thread of their own (when there are several stores) that makes
 * every call on that Client, so the round trips of a get, keys, delete...
 * overlap; other stores are called in the caller's thread, in index order.
 *
 * Locking: pd_lock on the Fanout locks every inner store, in index order
 * (a Client from its thread, which then holds it for the session), and
 * ops call them with PD_NOLOCK.  A single call outside pd_lock locks each
 * inner store for its own part only, in whichever thread calls it: a batch
 * is not atomic across stores anyway, and never holding one store's lock
 * while waiting for another's rules out lock-order deadlocks between
 * processes.
 */
#include "core/internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

#define S_MAX_STORES 1024

enum {
    S_APPEND,
    S_GET,
    S_DEL,
    S_SET,
    S_DROP,
    S_KEYS,
    S_LOCK,
    S_UNLOCK,
    S_CHECK
};
enum { S_IDLE, S_POSTED, S_DONE };

typedef struct s_fanout s_fanout;

typedef struct s_part {
    s_fanout *f;
    size_t start, n, fill; /* this store's slice of pk/pv */
    bool run;              /* called by the current op */
    bool locked;           /* locked by a pd_lock session */
    int rc;
    pd__errsave err; /* the inner store's error, saved where it failed */
    pd_result *res;
    pd_keylist *kl;
    /* The store's own thread (Clients), driven under f->pmu. */
    bool worker;
    int state;
    pthread_t th;
    pthread_cond_t cv;
} s_part;

struct s_fanout {
    pd_store base;
    size_t n;
    pd_store **inner;
    bool owned;
    s_part *part;

    /* The current op, read by the threads after they see S_POSTED. */
    int op;
    unsigned iflags;
    const char *cop; /* S_CHECK: the write checked ("append", ...) */
    bool cvals;      /* S_CHECK: the write has values */
    size_t cap;
    size_t *route, *pos;
    pd_key *pk;
    pd_bytes *pv;

    pthread_mutex_t pmu;
    pthread_cond_t dcv; /* a thread finished its part */
    bool quit;
    size_t nworkers;
    pid_t pid; /* the threads exist in this process only */
};

static const pd_store_ops s_fanout_ops;

/* ---------------------------------------------------------------- Routing */

/* XXH64 (seed 0) of the packed form of a valid key: packed on the stack
 * when short, else streamed (no allocation either way).  GCC 12 at -O3
 * sees the inlined XXH64_update's pointer arithmetic on the 4-byte length
 * as out of bounds (a false positive; the -O2 build is clean). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
static uint64_t s_hash(const pd_key *key) {
    unsigned char buf[256];
    size_t len = pd__key_packed_size(key);
    if (len <= sizeof buf) {
        pd__key_pack(key, buf);
        return XXH64(buf, len, 0);
    }
    XXH64_state_t st;
    XXH64_reset(&st, 0);
    pd__parts pp;
    pd__key_parts(key, &pp);
    unsigned char tag = pp.n == 1 ? 0 : 1;
    XXH64_update(&st, &tag, 1);
    if (pp.n == 1) {
        XXH64_update(&st, pp.p[0].data, pp.p[0].size);
        return XXH64_digest(&st);
    }
    for (size_t i = 0; i < pp.n; i++) {
        uint32_t l = (uint32_t)pp.p[i].size;
        unsigned char le[4] = {(unsigned char)l, (unsigned char)(l >> 8),
                               (unsigned char)(l >> 16),
                               (unsigned char)(l >> 24)};
        XXH64_update(&st, le, 4);
        if (l) XXH64_update(&st, pp.p[i].data, l);
    }
    return XXH64_digest(&st);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

uint64_t pd_fanout_hash(const pd_key *key) {
    char why[64];
    if (!key || pd__key_check(key, why)) return 0;
    return s_hash(key);
}

/* Jump consistent hash: the bucket in [0, n) of a 64-bit hash.  The double
 * arithmetic is exact IEEE 754 (the same in Python's floats). */
static size_t s_jump(uint64_t h, size_t n) {
    int64_t b = -1, j = 0;
    while (j < (int64_t)n) {
        b = j;
        h = h * 2862933555777941757ULL + 1;
        j = (int64_t)((double)(b + 1) *
                      ((double)(1LL << 31) / (double)((h >> 33) + 1)));
    }
    return (size_t)b;
}

size_t pd_fanout_index(const pd_key *key, size_t n) {
    char why[64];
    if (!key || n == 0 || n > INT32_MAX || pd__key_check(key, why))
        return SIZE_MAX;
    return s_jump(s_hash(key), n);
}

/* Grows the op scratch to n keys.  0 or PD_ERR_NOMEM (recorded). */
static int s_scratch(s_fanout *f, size_t n, const char *op) {
    if (n <= f->cap) return 0;
    size_t c = f->cap;
    int rc = pd__grow((void **)&f->route, &c, n, sizeof *f->route);
    c = f->cap;
    if (!rc) rc = pd__grow((void **)&f->pos, &c, n, sizeof *f->pos);
    c = f->cap;
    if (!rc) rc = pd__grow((void **)&f->pk, &c, n, sizeof *f->pk);
    c = f->cap;
    if (!rc) rc = pd__grow((void **)&f->pv, &c, n, sizeof *f->pv);
    if (rc)
        return pd__err(&f->base, PD_ERR_NOMEM, ENOMEM, "%s: %zu keys", op, n);
    f->cap = c;
    return 0;
}

/* Splits keys (and vals) per store into f->pk/pv: store i's keys are
 * pk[part[i].start ..][0 .. part[i].n), in the batch's order; key k is at
 * pos[k] in its store's slice.  Marks the stores with keys to run. */
static int s_split(s_fanout *f, size_t n, const pd_key *keys,
                   const pd_bytes *vals, const char *op) {
    int rc = s_scratch(f, n, op);
    if (rc) return rc;
    for (size_t i = 0; i < f->n; i++) f->part[i].n = f->part[i].fill = 0;
    /* Over one store every key goes there: no hash to compute. */
    for (size_t k = 0; k < n; k++) {
        f->route[k] = f->n == 1 ? 0 : s_jump(s_hash(&keys[k]), f->n);
        f->part[f->route[k]].n++;
    }
    size_t at = 0;
    for (size_t i = 0; i < f->n; i++) {
        f->part[i].start = at;
        f->part[i].run = f->part[i].n > 0;
        at += f->part[i].n;
    }
    for (size_t k = 0; k < n; k++) {
        s_part *p = &f->part[f->route[k]];
        size_t j = p->start + p->fill;
        f->pos[k] = p->fill++;
        f->pk[j] = keys[k];
        if (vals) f->pv[j] = vals[k];
    }
    return 0;
}

/* ---------------------------------------------------------------- Threads */

/* Makes store i's call of the current op, in the calling thread; saves
 * the store's error (kept per thread) with its outcome. */
static void s_run_part(s_fanout *f, size_t i) {
    s_part *p = &f->part[i];
    pd_store *in = f->inner[i];
    const pd_key *k = f->pk ? f->pk + p->start : NULL;
    const pd_bytes *v = f->pv ? f->pv + p->start : NULL;
    unsigned nolock = f->iflags & PD_NOLOCK;
    int rc = 0;
    switch (f->op) {
    case S_APPEND: rc = pd__append_inner(in, p->n, k, v, f->iflags); break;
    case S_GET: rc = pd__get_inner(in, p->n, k, &p->res, nolock); break;
    case S_DEL: rc = pd_delete(in, p->n, k, nolock); break;
    case S_SET: rc = pd__set_inner(in, p->n, k, v, f->iflags); break;
    case S_DROP: rc = pd_drop(in, nolock); break;
    case S_KEYS: rc = pd_keys(in, &p->kl, nolock); break;
    case S_LOCK: rc = pd_lock(in); break;
    case S_UNLOCK: rc = pd_unlock(in); break;
    case S_CHECK:
        rc = pd__check_inner(in, f->cop, p->n, k, f->cvals ? v : NULL,
                             f->iflags);
        break;
    default: rc = PD_ERR_MISUSE;
    }
    p->rc = rc;
    if (rc) pd__err_save(in, &p->err);
}

static void *s_worker(void *arg) {
    s_part *p = arg;
    s_fanout *f = p->f;
    pthread_mutex_lock(&f->pmu);
    for (;;) {
        while (p->state != S_POSTED && !f->quit)
            pthread_cond_wait(&p->cv, &f->pmu);
        if (p->state != S_POSTED) break;
        pthread_mutex_unlock(&f->pmu);
        s_run_part(f, (size_t)(p - f->part));
        pthread_mutex_lock(&f->pmu);
        p->state = S_DONE;
        pthread_cond_broadcast(&f->dcv);
    }
    pthread_mutex_unlock(&f->pmu);
    return NULL;
}

/* Whether the threads can be used: they do not exist in a forked child,
 * where every call runs in the caller's thread. */
static bool s_threads(const s_fanout *f) {
    return f->nworkers > 0 && f->pid == pd__getpid();
}

/* Runs the current op on the stores marked `run`, stores in [lo, hi):
 * posts the parts of stores with a thread, runs the others here in index
 * order, then waits for the posted ones. */
static void s_exec(s_fanout *f, size_t lo, size_t hi) {
    bool thr = s_threads(f);
    if (thr) {
        pthread_mutex_lock(&f->pmu);
        for (size_t i = lo; i < hi; i++) {
            s_part *p = &f->part[i];
            if (!p->run || !p->worker) continue;
            p->state = S_POSTED;
            pthread_cond_signal(&p->cv);
        }
        pthread_mutex_unlock(&f->pmu);
    }
    for (size_t i = lo; i < hi; i++)
        if (f->part[i].run && !(thr && f->part[i].worker)) s_run_part(f, i);
    if (thr) {
        pthread_mutex_lock(&f->pmu);
        for (size_t i = lo; i < hi; i++) {
            s_part *p = &f->part[i];
            if (!p->run || !p->worker) continue;
            while (p->state != S_DONE) pthread_cond_wait(&f->dcv, &f->pmu);
            p->state = S_IDLE;
        }
        pthread_mutex_unlock(&f->pmu);
    }
}

/* Starts a thread for each inner Client (with two stores or more).  A
 * thread that cannot start leaves its store to the caller's thread. */
static void s_pool_start(s_fanout *f) {
    f->pid = pd__getpid();
    if (f->n < 2) return;
    sigset_t all, old;
    sigfillset(&all);
    /* The threads take no signals: the host's handlers run elsewhere. */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (size_t i = 0; i < f->n; i++) {
        s_part *p = &f->part[i];
        if (strcmp(pd_store_kind(f->inner[i]), "client") != 0) continue;
        if (pthread_cond_init(&p->cv, NULL)) continue;
        if (pthread_create(&p->th, NULL, s_worker, p)) {
            pthread_cond_destroy(&p->cv);
            continue;
        }
        p->worker = true;
        f->nworkers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void s_pool_stop(s_fanout *f) {
    if (!s_threads(f)) return; /* a forked child: the threads are gone */
    pthread_mutex_lock(&f->pmu);
    f->quit = true;
    for (size_t i = 0; i < f->n; i++)
        if (f->part[i].worker) pthread_cond_signal(&f->part[i].cv);
    pthread_mutex_unlock(&f->pmu);
    for (size_t i = 0; i < f->n; i++) {
        s_part *p = &f->part[i];
        if (!p->worker) continue;
        pthread_join(p->th, NULL);
        pthread_cond_destroy(&p->cv);
        p->worker = false;
    }
    f->nworkers = 0;
}

/* ---------------------------------------------------------------- Errors */

/* "client tcp://host:port", or the kind of another store. */
static const char *s_desc(const s_fanout *f, size_t i, char *buf, size_t cap) {
    const char *addr = pd_client_address(f->inner[i]);
    snprintf(buf, cap, "%s%s%s", pd_store_kind(f->inner[i]), addr ? " " : "",
             addr ? addr : "");
    return buf;
}

/* Appends " i" for the stores whose part ran with outcome ok (ok: rc == 0,
 * else rc != 0) except `skip`, up to 16 of them; returns how many. */
static size_t s_list(const s_fanout *f, bool ok, size_t skip, char *buf,
                     size_t cap) {
    size_t cnt = 0, len = strlen(buf);
    for (size_t i = 0; i < f->n; i++) {
        const s_part *p = &f->part[i];
        if (!p->run || i == skip || (p->rc == 0) != ok) continue;
        if (cnt < 16 && len < cap)
            len += (size_t)snprintf(buf + len, cap - len, "%s%zu",
                                    cnt ? ", " : " ", i);
        else if (cnt == 16 && len < cap)
            len += (size_t)snprintf(buf + len, cap - len, ", ...");
        cnt++;
    }
    return cnt;
}

enum { S_READ, S_WRITE, S_CHECKED };

/* After s_exec: 0, or the error of the lowest failing store, recorded on
 * the Fanout with its code and errno, naming the store and, for a write
 * (S_WRITE), which other stores applied their part and which failed too;
 * for a check (S_CHECKED), that nothing of the batch was sent. */
static int s_outcome(s_fanout *f, const char *op, int mode) {
    size_t bad = SIZE_MAX;
    for (size_t i = 0; i < f->n && bad == SIZE_MAX; i++)
        if (f->part[i].run && f->part[i].rc) bad = i;
    if (bad == SIZE_MAX) return 0;
    const s_part *p = &f->part[bad];
    char desc[160], ok[160] = "", also[160] = "", tail[400] = "";
    s_desc(f, bad, desc, sizeof desc);
    if (mode == S_CHECKED) {
        snprintf(tail, sizeof tail,
                 " (refused before anything was sent: no store applied the "
                 "batch)");
    } else if (mode == S_WRITE) {
        size_t nok = s_list(f, true, bad, ok, sizeof ok);
        size_t nalso = s_list(f, false, bad, also, sizeof also);
        snprintf(tail, sizeof tail, " (%s%s%s%s; not atomic across stores)",
                 nok ? "applied by store" : "no other store applied its part",
                 nok ? ok : "", nalso ? "; also failed: store" : "",
                 nalso ? also : "");
    }
    int code = p->err.code ? p->err.code : p->rc;
    pd__err(&f->base, code, 0, "%s: store %zu of %zu (%s)%s: %s", op, bad, f->n,
            desc, tail, p->err.msg);
    pd__err_set_sys(&f->base, p->err.sys);
    return code;
}

/* Sets up the current op: flags for the inner calls (see the top). */
static void s_begin(s_fanout *f, int op, unsigned flags) {
    const pd_store *s = &f->base;
    f->op = op;
    bool session = s->lock_depth > 0 && s->lock_explicit;
    f->iflags =
        (session || s->lock_depth == 0 ? PD_NOLOCK : 0) | (flags & PD_FSYNC);
    for (size_t i = 0; i < f->n; i++) f->part[i].rc = 0;
}

/* ------------------------------------------------------------------ Ops */

/* Runs the inner stores' checks (pd_store_ops.check) of the parts split
 * for write `name`: 0 when none refuses, else the lowest refusal, recorded
 * on the Fanout.  In the caller's thread, store after store (the stores'
 * threads are idle between calls, and a hand-off to them would cost more
 * than the checks), except in a pd_lock session, where each store's
 * thread holds it: there, in that thread. */
static int s_check_parts(s_fanout *f, const char *name, bool vals) {
    int op = f->op;
    bool any = false;
    for (size_t i = 0; i < f->n && !any; i++)
        any = f->part[i].run && f->inner[i]->ops->check;
    if (!any) return 0;
    f->op = S_CHECK;
    f->cop = name;
    f->cvals = vals;
    if (f->base.lock_explicit && f->base.lock_depth > 0) {
        s_exec(f, 0, f->n);
    } else {
        for (size_t i = 0; i < f->n; i++)
            if (f->part[i].run && f->inner[i]->ops->check) s_run_part(f, i);
    }
    f->op = op;
    return s_outcome(f, name, S_CHECKED);
}

/* A write: split, then, when it goes to two stores or more, every part
 * checked before any is sent (what a store refuses locally never leaves a
 * batch half applied), then the parts applied. */
static int s_write(pd_store *s, int op, const char *name, size_t n,
                   const pd_key *keys, const pd_bytes *vals, unsigned flags) {
    s_fanout *f = (s_fanout *)s;
    s_begin(f, op, flags);
    int rc = s_split(f, n, keys, vals, name);
    if (rc) return rc;
    size_t used = 0;
    for (size_t i = 0; i < f->n; i++) used += f->part[i].run;
    if (used > 1) {
        rc = s_check_parts(f, name, vals != NULL);
        if (rc) return rc;
    }
    s_exec(f, 0, f->n);
    return s_outcome(f, name, S_WRITE);
}

/* pd_store_ops.check, for a Fanout inside another layer that checks: every
 * part's. */
static int s_check(pd_store *s, const char *op, size_t n, const pd_key *keys,
                   const pd_bytes *vals, unsigned flags) {
    s_fanout *f = (s_fanout *)s;
    s_begin(f, S_CHECK, flags);
    int rc = s_split(f, n, keys, vals, op);
    return rc ? rc : s_check_parts(f, op, vals != NULL);
}

static int s_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    return s_write(s, S_APPEND, "append", n, keys, vals, flags);
}

static int s_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    return s_write(s, S_DEL, "delete", n, keys, NULL, flags);
}

static int s_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    return s_write(s, S_SET, "iset", n, keys, vals, flags);
}

static void s_free_results(s_fanout *f) {
    for (size_t i = 0; i < f->n; i++) {
        pd_result_free(&f->part[i].res);
        pd_keylist_free(&f->part[i].kl);
    }
}

static int s_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    s_fanout *f = (s_fanout *)s;
    char ks[PD__KEYSHORT_MAX];
    s_begin(f, S_GET, flags);
    int rc = s_split(f, n, keys, NULL, "get");
    if (rc) return rc;
    s_exec(f, 0, f->n);
    rc = s_outcome(f, "get", S_READ);
    if (rc) goto out;
    uint64_t total = 0;
    size_t used = 0, last = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (!f->part[i].run) continue;
        total += pd_result_total(f->part[i].res);
        used++;
        last = i;
    }
    if (used == 1) { /* one store: its result is the answer, in order */
        if (pd__result_move(r, f->part[last].res))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get %s: result",
                         pd__key_short(&keys[0], ks));
        goto out;
    }
    if (total > SIZE_MAX || !pd__result_reserve(r, (size_t)total)) {
        rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: %zu values", n);
        goto out;
    }
    for (size_t k = 0; k < n && rc == 0; k++) {
        pd_bytes v = pd_result_value(f->part[f->route[k]].res, f->pos[k]);
        if (pd__result_put(r, v.data, v.size) || pd__result_next(r))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: %zu values", n);
    }
out:
    s_free_results(f);
    return rc;
}

static int s_drop(pd_store *s, unsigned flags) {
    s_fanout *f = (s_fanout *)s;
    s_begin(f, S_DROP, flags);
    for (size_t i = 0; i < f->n; i++) f->part[i].run = true;
    s_exec(f, 0, f->n);
    return s_outcome(f, "drop", S_WRITE);
}

static int s_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    s_fanout *f = (s_fanout *)s;
    s_begin(f, S_KEYS, flags);
    for (size_t i = 0; i < f->n; i++) f->part[i].run = true;
    s_exec(f, 0, f->n);
    int rc = s_outcome(f, "keys", S_READ);
    /* The stores hold disjoint keys (each key lives in one): the union is
     * their concatenation. */
    for (size_t i = 0; i < f->n && rc == 0; i++) {
        const pd_keylist *l = f->part[i].kl;
        for (size_t j = 0; j < l->count && rc == 0; j++)
            if (pd__keylist_add_packed(kl, l->buf + l->ent[j].off,
                                       l->ent[j].len, l->ent[j].size))
                rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: %zu keys",
                             l->count);
    }
    s_free_results(f);
    return rc;
}

/* Releases the stores locked by the session, last first. */
static int s_unlock_hook(pd_store *s) {
    s_fanout *f = (s_fanout *)s;
    s_begin(f, S_UNLOCK, 0);
    for (size_t i = 0; i < f->n; i++) {
        f->part[i].run = f->part[i].locked;
        f->part[i].locked = false;
    }
    for (size_t i = f->n; i-- > 0;)
        if (f->part[i].run) s_exec(f, i, i + 1);
    return s_outcome(f, "unlock", S_READ);
}

/* pd_lock: every store, in index order, each locked before the next is
 * tried.  A single call locks nothing here (see the top). */
static int s_lock_hook(pd_store *s) {
    s_fanout *f = (s_fanout *)s;
    if (!s->lock_explicit) return 0;
    s_begin(f, S_LOCK, 0);
    for (size_t i = 0; i < f->n; i++) f->part[i].run = false;
    for (size_t i = 0; i < f->n; i++) {
        f->part[i].run = true;
        s_exec(f, i, i + 1);
        if (f->part[i].rc) break;
        f->part[i].locked = true;
    }
    int rc = s_outcome(f, "lock", S_READ);
    if (rc) {
        pd__errsave sv;
        pd__err_save(s, &sv);
        s_unlock_hook(s);
        pd__err_restore(s, &sv);
    }
    return rc;
}

static int s_destroy(pd_store *s) {
    s_fanout *f = (s_fanout *)s;
    int rc = 0;
    s_pool_stop(f);
    for (size_t i = 0; f->owned && i < f->n; i++) {
        char desc[160];
        int crc = pd_close(&f->inner[i]);
        if (crc && !rc)
            rc = pd__err(s, crc, pd_errno(NULL), "close store %zu (%s): %s", i,
                         s_desc(f, i, desc, sizeof desc), pd_errmsg(NULL));
    }
    free(f->inner);
    free(f->part);
    free(f->route);
    free(f->pos);
    free(f->pk);
    free(f->pv);
    pthread_cond_destroy(&f->dcv);
    pthread_mutex_destroy(&f->pmu);
    return rc;
}

static const pd_store_ops s_fanout_ops = {
    PD__STORE_OPS("fanout"),
    .lock = s_lock_hook,
    .unlock = s_unlock_hook,
    .check = s_check,
};

/* --------------------------------------------------------------- Public */

int pd_fanout_open(pd_store **out, pd_store **inners, size_t n,
                   unsigned flags) {
    if (!out) return pd__err(NULL, PD_ERR_MISUSE, 0, "fanout: open: NULL out");
    *out = NULL;
    if (flags & ~PD_BORROW)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "fanout: open: unknown flags 0x%x", flags & ~PD_BORROW);
    if (n == 0 || !inners)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "fanout: open: no inner stores (n = %zu)", n);
    if (n > S_MAX_STORES)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "fanout: open: %zu inner stores (at most %d)", n,
                       S_MAX_STORES);
    for (size_t i = 0; i < n; i++) {
        if (!inners[i])
            return pd__err(NULL, PD_ERR_MISUSE, 0,
                           "fanout: open: inner store %zu is NULL", i);
        for (size_t j = 0; j < i; j++)
            if (inners[j] == inners[i])
                return pd__err(NULL, PD_ERR_MISUSE, 0,
                               "fanout: open: inner stores %zu and %zu are "
                               "the same %s store",
                               j, i, pd_store_kind(inners[i]));
    }
    s_fanout *f = calloc(1, sizeof *f);
    if (!f) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "fanout: open");
    f->inner = calloc(n, sizeof *f->inner);
    f->part = calloc(n, sizeof *f->part);
    if (!f->inner || !f->part) {
        free(f->inner);
        free(f->part);
        free(f);
        return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "fanout: open");
    }
    int rc = pd__store_init(&f->base, &s_fanout_ops);
    if (rc == 0 && pthread_mutex_init(&f->pmu, NULL)) {
        pd__store_fini(&f->base);
        rc = pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "fanout: open: mutex");
    } else if (rc == 0 && pthread_cond_init(&f->dcv, NULL)) {
        pthread_mutex_destroy(&f->pmu);
        pd__store_fini(&f->base);
        rc = pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "fanout: open: condition");
    }
    if (rc) {
        free(f->inner);
        free(f->part);
        free(f);
        return rc;
    }
    f->n = n;
    f->owned = !(flags & PD_BORROW);
    for (size_t i = 0; i < n; i++) {
        f->inner[i] = inners[i];
        f->part[i].f = f;
        if (f->owned) inners[i] = NULL;
    }
    s_pool_start(f);
    *out = &f->base;
    pd__err_clear(NULL);
    return 0;
}

static s_fanout *s_fo(const pd_store *s) {
    return pd__store_as(s, &s_fanout_ops);
}

size_t pd_fanout_count(const pd_store *s) {
    s_fanout *f = s_fo(s);
    return f ? f->n : 0;
}

pd_store *pd_fanout_inner(const pd_store *s, size_t i) {
    s_fanout *f = s_fo(s);
    return f && i < f->n ? f->inner[i] : NULL;
}
