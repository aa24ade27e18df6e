/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The descriptor cache.  Appends and gets keep descriptors open (LRU,
 * bounded by the fd limit; a get's is read-only, and an append replaces
 * it).  A descriptor is only used inside a locked session and only while it
 * is known to be current: at the first use of its directory in a session,
 * the directory's ctime is compared with the one this handle recorded (at
 * the end of a session that changed the directory, or when it last found it
 * changed); an unlink or rename by anyone changes it.  If it changed, or was
 * recorded too close to the clock tick to be trusted ("racy", as in git's
 * index), the directory's epoch is bumped and the new ctime recorded; a
 * descriptor not verified (fstat: st_nlink == 0 means the file was deleted)
 * since its directory's last epoch bump is verified before use.  So a
 * descriptor whose file another process deleted or dropped is never written
 * through or read from.  The root's ctime comes from the fstat that checks
 * its identity when the lock is taken (lock.c).
 */
#include "file/file.h"

#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#define S_RACY_NS 50000000LL /* 50 ms: well above any kernel clock tick */

void pd__file_cache_evict(pd__file *f, pd__file_fd *e) {
    HASH_DEL(f->cache, e);
    DL_DELETE(f->lru, e);
    pd__file_close(e->fd);
    if (e->dir) e->dir->nent--;
    f->ncache--;
    free(e);
}

void pd__file_cache_clear(pd__file *f) {
    pd__file_fd *e, *tmp;
    HASH_ITER(hh, f->cache, e, tmp) pd__file_cache_evict(f, e);
    pd__file_dir *d, *dt;
    HASH_ITER(hh, f->dirs, d, dt) {
        HASH_DEL(f->dirs, d);
        free(d);
    }
    f->nrequeue = 0;
}

pd__file_dir *pd__file_dir_get(pd__file *f, const char *rel, size_t rellen) {
    pd__file_dir *d = NULL;
    HASH_FIND(hh, f->dirs, rel, rellen, d);
    if (d) return d;
    d = calloc(1, sizeof *d + rellen + 1);
    if (!d) return NULL;
    memcpy(d->rel, rel, rellen);
    d->rel[rellen] = 0;
    d->rellen = rellen;
    HASH_ADD(hh, f->dirs, rel, rellen, d);
    if (!d->hh.tbl) {
        free(d);
        return NULL;
    }
    return d;
}

/* Queues d to have its ctime recorded at the end of this session. */
void pd__file_dir_touch(pd__file *f, pd__file_dir *d) {
    if (!d || d->queued == f->session) return;
    if (f->nrequeue == f->caprequeue) {
        size_t nc = f->caprequeue ? f->caprequeue * 2 : 16;
        pd__file_dir **nq = realloc(f->requeue, nc * sizeof *nq);
        if (!nq) {
            d->have_rec = false; /* can't record: distrust it next time */
            return;
        }
        f->requeue = nq;
        f->caprequeue = nc;
    }
    f->requeue[f->nrequeue++] = d;
    d->queued = f->session;
}

void pd__file_dir_touch_rel(pd__file *f, const char *rel, size_t dirlen) {
    if (!f->in_session) return;
    pd__file_dir *d = NULL;
    HASH_FIND(hh, f->dirs, rel, dirlen, d);
    if (d) pd__file_dir_touch(f, d);
}

static int s_dir_stat(pd__file *f, const pd__file_dir *d, struct stat *st) {
    if (d->rellen == 0) return SYS.fstat(f->rootfd, st);
    return SYS.fstatat(f->rootfd, d->rel, st, AT_SYMLINK_NOFOLLOW);
}

/* As s_dir_stat, but the root's fstat from the lock acquisition serves
 * when nothing can have changed since (start of the session).  *at: a wall
 * time no later than the stat. */
static int s_dir_stat_start(pd__file *f, const pd__file_dir *d, struct stat *st,
                            struct timespec *at) {
    if (d->rellen == 0 && f->root_st_session == f->session) {
        *st = f->root_st;
        *at = f->root_st_at;
        return 0;
    }
    pd__file_now(at);
    return s_dir_stat(f, d, st);
}

static int64_t s_ts_ns(struct timespec t) {
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* First use of d in this session: compares its ctime with the record.  If
 * it changed (or the record is racy or missing), bumps d's epoch, so every
 * entry in d is verified before its next use (this session or a later
 * one), and records the ctime just read: entries verified after this stat
 * and in a directory whose ctime still matches it later are current.
 * Recording here, not at the end of the session, spares a second stat. */
static void s_dir_check(pd__file *f, pd__file_dir *d) {
    struct stat st;
    struct timespec at;
    d->checked = f->session;
    int src = s_dir_stat_start(f, d, &st, &at);
    d->suspect =
        !(d->have_rec && src == 0 && st.st_ctim.tv_sec == d->ctime_rec.tv_sec &&
          st.st_ctim.tv_nsec == d->ctime_rec.tv_nsec &&
          s_ts_ns(d->rec_at) - s_ts_ns(d->ctime_rec) >= S_RACY_NS);
    if (!d->suspect) return;
    d->epoch++;
    d->have_rec = src == 0;
    if (src == 0) {
        d->ctime_rec = st.st_ctim;
        d->rec_at = at;
    }
}

/* End of session: record the ctime of every directory we changed or found
 * changed, then forget directories with no cached entries. */
void pd__file_session_end(pd__file *f) {
    struct timespec now;
    pd__file_now(&now);
    for (size_t i = 0; i < f->nrequeue; i++) {
        pd__file_dir *d = f->requeue[i];
        struct stat st;
        if (s_dir_stat(f, d, &st) == 0) {
            d->ctime_rec = st.st_ctim;
            d->rec_at = now;
            d->have_rec = true;
        } else {
            d->have_rec = false;
        }
    }
    f->nrequeue = 0;
    pd__file_dir *d, *dt;
    HASH_ITER(hh, f->dirs, d, dt) {
        if (d->nent == 0) {
            HASH_DEL(f->dirs, d);
            free(d);
        }
    }
}

/* Returns the current cached descriptor for pk, or NULL.  When it had to
 * fstat the descriptor and vst is not NULL, stores that stat in *vst and
 * sets *have_vst. */
pd__file_fd *pd__file_cache_find(pd__file *f, const pd__pkey *pk,
                                 struct stat *vst, bool *have_vst) {
    pd__file_fd *e = NULL;
    HASH_FIND(hh, f->cache, pk->p, pk->len, e);
    if (!e) return NULL;
    pd__file_lockobj *lk = f->lk;
    uint64_t gen = __atomic_load_n(&lk->gen, __ATOMIC_SEQ_CST);
    if (gen != f->gen_seen) {
        f->gen_seen = gen;
        f->verify_all = f->session;
    }
    if (e->dir->checked != f->session) s_dir_check(f, e->dir);
    if ((e->epoch != e->dir->epoch || f->verify_all == f->session) &&
        e->verified != f->session) {
        struct stat st;
        if (SYS.fstat(e->fd, &st) < 0 || st.st_nlink == 0) {
            pd__file_cache_evict(f, e);
            return NULL;
        }
        e->verified = f->session;
        e->epoch = e->dir->epoch;
        e->size = (uint64_t)st.st_size;
        if (vst) { /* the caller needs it (a get: the size) */
            *vst = st;
            *have_vst = true;
        }
    }
    if (f->lru != e) {
        DL_DELETE(f->lru, e);
        DL_PREPEND(f->lru, e);
    }
    return e;
}

void pd__file_cache_trim(pd__file *f, size_t target) {
    while (f->ncache > target && f->lru) pd__file_cache_evict(f, f->lru->prev);
}

/* Caches fd (just opened under the lock: current) for pk, whose file, of
 * `size` bytes, is rel (directory part: dirlen bytes).  NULL when not
 * cached (no cache, no memory): the caller closes fd after use. */
pd__file_fd *pd__file_cache_add(pd__file *f, const pd__pkey *pk, int fd,
                                const char *rel, size_t dirlen, uint64_t size,
                                bool rdonly) {
    if (f->max_fds == 0) return NULL;
    pd__file_dir *d = pd__file_dir_get(f, rel, dirlen);
    if (!d) return NULL;
    pd__file_fd *e = malloc(sizeof *e + pk->len);
    if (!e) return NULL;
    pd__file_cache_trim(f, f->max_fds - 1);
    if (d->checked != f->session && d->nent > 0) {
        /* Its other entries may be stale: check it as pd__file_cache_find
         * would, before marking it checked for this session. */
        s_dir_check(f, d);
    }
    e->fd = fd;
    e->dir = d;
    e->size = size;
    e->rdonly = rdonly;
    e->verified = f->session;
    e->klen = pk->len;
    memcpy(e->key, pk->p, pk->len);
    HASH_ADD(hh, f->cache, key, e->klen, e);
    if (!e->hh.tbl) { /* not cached: the caller closes fd after use */
        free(e);
        return NULL;
    }
    DL_PREPEND(f->lru, e);
    f->ncache++;
    d->nent++;
    if (d->checked != f->session) {
        /* A directory first seen now: its entries are fresh. */
        d->checked = f->session;
        d->suspect = !d->have_rec;
        if (d->suspect) pd__file_dir_touch(f, d);
    }
    e->epoch = d->epoch; /* just opened: current */
    return e;
}

void pd__file_cache_drop_key(pd__file *f, const pd__pkey *pk) {
    pd__file_fd *e = NULL;
    HASH_FIND(hh, f->cache, pk->p, pk->len, e);
    if (e) pd__file_cache_evict(f, e);
}
