/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: the store ops and the public functions (partd.h, "Log").
 *
 * Locking: every call holds <dir>/.lock with flock(LOCK_SH) for its
 * duration (the dispatcher's lock hook), so writers and readers of many
 * processes run side by side; pd_lock takes LOCK_EX, as do drop and
 * compaction (upgrading the call's shared lock), which therefore never run
 * while another call is in progress anywhere.
 */
#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static const pd_store_ops s_log_ops;

/* ------------------------------------------------------------- Locking */

static int s_lock(pd_store *s) {
    lg_store *l = (lg_store *)s;
    int rc = lg_check_fork(l);
    if (rc) return rc;
    return lg_flock(l, s->lock_explicit ? LOCK_EX : LOCK_SH);
}

static int s_unlock(pd_store *s) {
    lg_store *l = (lg_store *)s;
    return l->flock_mode ? lg_flock(l, LOCK_UN) : 0;
}

/* An op's lock: the session's (taken by the hook), or, when the caller
 * passed PD_NOLOCK without holding pd_lock, one for this op.  *took says
 * whether to release it. */
static int s_op_enter(lg_store *l, bool ex, bool *took) {
    *took = false;
    int rc = lg_check_fork(l);
    if (rc) return rc;
    if (l->flock_mode == 0) *took = true;
    if (ex && l->flock_mode != LOCK_EX) return lg_flock(l, LOCK_EX);
    if (l->flock_mode == 0) return lg_flock(l, LOCK_SH);
    return 0;
}

static int s_op_leave(lg_store *l, bool took, int rc) {
    if (took && l->flock_mode) {
        int urc = lg_flock(l, LOCK_UN);
        if (!rc) rc = urc;
    }
    return rc;
}

/* A read's start: the op's lock (s_op_enter), then the records other
 * handles wrote since the last read (lg_catch_up).  On error nothing is
 * held. */
static int s_read_enter(lg_store *l, const char *op, bool *took) {
    int rc = s_op_enter(l, false, took);
    if (rc) return rc;
    rc = lg_catch_up(l, op);
    return rc ? s_op_leave(l, *took, rc) : 0;
}

/* ----------------------------------------------------------------- Ops */

/* Writes one record of `type` for the batch. */
static int s_write(pd_store *s, unsigned type, const char *op, size_t n,
                   const pd_key *keys, const pd_bytes *vals, unsigned flags) {
    lg_store *l = (lg_store *)s;
    bool took;
    int rc = s_op_enter(l, false, &took);
    if (rc) return rc;
    uint64_t seq;
    rc = lg_next_seq(l, op, &seq);
    if (rc) return s_op_leave(l, took, rc);
    /* The values go from the caller's memory to the file, uncopied. */
    rc =
        lg_rec_build_iov(&l->rec, &l->wiov, &l->plan, type, seq, n, keys, vals);
    if (rc) {
        char kb[PD__KEYSHORT_MAX];
        rc = pd__err(s, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                     "%s %s: a record of %zu keys", op,
                     pd__key_short(&keys[0], kb), n);
    } else {
        rc = lg_write_iov(l, op, &keys[0], flags & PD_FSYNC, &l->wiov);
    }
    lg_plan_done(&l->plan, n, &l->rec, &l->wiov);
    /* Replaced or deleted data past the threshold: compact now. */
    if (rc == 0 && type != LG_APPEND && lg_compact_pays(l) &&
        lg_flock(l, LOCK_EX) == 0) {
        lg_compact(l, false, false, op);
        pd__err_clear(s);
    }
    return s_op_leave(l, took, rc);
}

static int s_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    return s_write(s, LG_APPEND, "append", n, keys, vals, flags);
}

static int s_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    return s_write(s, LG_SET, "iset", n, keys, vals, flags);
}

static int s_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    return s_write(s, LG_DELETE, "delete", n, keys, NULL, flags);
}

/* The keys [i, n) of a get whose extents are read together: as many as
 * hold at most LG_GATHER_MAX extents, at least one. */
static size_t s_get_span(const lg_key *const *ks, size_t i, size_t n) {
    size_t j = i + 1, ext = ks[i] ? ks[i]->n : 0;
    for (; j < n; j++) {
        ext += ks[j] ? ks[j]->n : 0;
        if (ext > LG_GATHER_MAX) break;
    }
    return j;
}

/* A get of several keys reads their extents together (gather.c); a single
 * key goes through the read-ahead windows (rcache.c), which serve a reader
 * asking for neighbouring keys one get at a time. */
static int s_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    lg_store *l = (lg_store *)s;
    bool took;
    int rc = s_read_enter(l, "get", &took);
    if (rc) return rc;
    /* The keys found; a get of a few keys (most are of one) allocates no
     * room for them. */
    const lg_key *few[8];
    const lg_key **ks = n <= 8 ? few : malloc(n * sizeof *ks);
    if (!ks) rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: %zu keys", n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = lg_damage_check(l, &keys[i], "get");
        ks[i] = rc ? NULL : lg_find(l, &keys[i]);
    }
    for (size_t i = 0, j; i < n && rc == 0; i = j) {
        j = s_get_span(ks, i, n);
        if (j - i > 1) {
            rc = lg_read_keys(l, j - i, ks + i, keys + i, r, "get");
            continue;
        }
        if (ks[i] && ks[i]->size)
            rc = lg_read_key(l, ks[i], &keys[i], r, "get");
        if (rc == 0 && pd__result_next(r))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: result");
    }
    if (ks != few) free(ks);
    return s_op_leave(l, took, rc);
}

static int s_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    lg_store *l = (lg_store *)s;
    bool took;
    int rc = s_read_enter(l, "keys", &took);
    if (rc) return rc;
    rc = lg_damage_check(l, NULL, "keys");
    for (pd__knode *nd = l->keys.head; nd && rc == 0; nd = nd->next) {
        const lg_key *k = (const lg_key *)nd;
        if (k->size && pd__keylist_add_packed(kl, k->pk, nd->klen, k->size))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: list");
    }
    return s_op_leave(l, took, rc);
}

static int s_drop(pd_store *s, unsigned flags) {
    (void)flags;
    lg_store *l = (lg_store *)s;
    bool took;
    int rc = s_op_enter(l, true, &took);
    if (rc == 0) rc = lg_compact(l, true, false, "drop");
    return s_op_leave(l, took, rc);
}

/* The last handle open on the directory (the state file's shared lock is
 * ours alone) compacts if anything was written since the last compaction,
 * best effort: a failure leaves the store as it was. */
static void s_close_compact(lg_store *l) {
    if (l->temp || l->statefd < 0 || !l->sh ||
        __atomic_load_n(&l->sh->writes, __ATOMIC_SEQ_CST) ==
            __atomic_load_n(&l->sh->compacted, __ATOMIC_SEQ_CST))
        return;
    /* .lock first: an opener takes the state file's shared lock while it
     * holds .lock, so it never waits for us while we wait for it. */
    if (lg_flock(l, LOCK_EX)) return;
    if (SYS.flock(l->statefd, LOCK_EX | LOCK_NB) == 0)
        lg_compact(l, false, false, "close");
    lg_flock(l, LOCK_UN);
}

/* Closes the directory and frees the buffers, the segment table and the
 * path (closing and failed opens). */
static void s_free_parts(lg_store *l) {
    lg_win_free(l);
    lg_gather_free(l);
    lg_close_dir(l);
    if (l->dirfd >= 0) SYS.close(l->dirfd);
    pd__buf_free(&l->rec);
    free(l->wiov.iov);
    lg_plan_free(&l->plan);
    pd__buf_free(&l->rbuf);
    free(l->segs);
    free(l->path);
}

static int s_destroy(pd_store *s) {
    lg_store *l = (lg_store *)s;
    int rc = 0;
    bool mine = l->pid == pd__getpid();
    if (mine) s_close_compact(l);
    /* A segment created but never written is removed. */
    if (mine && l->wfd >= 0 && l->wsize == 0)
        SYS.unlinkat(l->dirfd, l->wname, 0);
    lg_index_reset(l);
    lg_att_free(l);
    if (mine && l->temp && !l->keep) rc = lg_rm_contents(l);
    s_free_parts(l);
    return rc;
}

static const pd_store_ops s_log_ops = {
    PD__STORE_OPS("log"),
    .lock = s_lock,
    .unlock = s_unlock,
    PD__ATTEMPT_OPS(lg_att_),
};

/* ---------------------------------------------------------------- Open */

static int s_mkdirs(const char *path) {
    char *p = strdup(path);
    if (!p) return -1;
    for (char *q = p + 1;; q++) {
        if (*q && *q != '/') continue;
        char c = *q;
        *q = 0;
        if (SYS.mkdirat(AT_FDCWD, p, 0777) < 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            errno = e;
            return -1;
        }
        if (!c) break;
        *q = c;
    }
    free(p);
    return 0;
}

static int s_open(pd_store **out, const char *path, unsigned flags, bool temp) {
    lg_store *l = calloc(1, sizeof *l);
    if (!l) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "log: open %s", path);
    int rc = pd__store_init(&l->base, &s_log_ops);
    if (rc) {
        free(l);
        return rc;
    }
    l->dirfd = l->lockfd = l->statefd = l->wfd = -1;
    l->wseg = UINT32_MAX;
    l->temp = temp;
    l->keep = flags & PD_LOG_KEEP;
    l->fsync_all = flags & PD_LOG_FSYNC;
    l->pid = pd__getpid();
    pd__buf_init(&l->rec, NULL, 0);
    pd__buf_init(&l->rbuf, NULL, 0);
    if ((flags & PD_LOG_CREATE) && s_mkdirs(path) < 0) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "log: open: mkdir(%s)", path);
        goto fail;
    }
    l->dirfd =
        SYS.openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (l->dirfd < 0) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "log: open %s", path);
        goto fail;
    }
    l->path = realpath(path, NULL);
    if (!l->path) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "log: open: realpath(%s)", path);
        goto fail;
    }
    rc = lg_open_dir(l, flags);
    if (rc) goto fail;
    *out = &l->base;
    pd__err_clear(NULL);
    return 0;
fail:
    lg_index_reset(l);
    s_free_parts(l);
    pd__store_fini(&l->base);
    free(l);
    return rc;
}

int pd_log_open(pd_store **out, const char *dir, unsigned flags) {
    if (out) *out = NULL;
    if (!out || !dir || !*dir)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "log: open: %s",
                       !out ? "NULL out pointer" : "NULL or empty path");
    if (flags & ~(PD_LOG_CREATE | PD_LOG_FSYNC))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "log: open %s: unknown flags 0x%x", dir, flags);
    return s_open(out, dir, flags, false);
}

int pd_log_open_temp(pd_store **out, const char *parent, unsigned flags) {
    if (out) *out = NULL;
    if (!out)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "log: open temp: NULL out");
    if (flags & ~(PD_LOG_FSYNC | PD_LOG_KEEP))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "log: open temp: unknown flags 0x%x", flags);
    if (!parent || !*parent) {
        parent = getenv("TMPDIR");
        if (!parent || !*parent) parent = "/tmp";
    }
    size_t n = strlen(parent) + 32;
    char *tmpl = malloc(n);
    if (!tmpl) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "log: open temp");
    snprintf(tmpl, n, "%s/partd-log-XXXXXX", parent);
    if (!mkdtemp(tmpl)) {
        int e = errno;
        pd__err(NULL, PD_ERR_IO, e, "log: open temp: mkdtemp(%s)", tmpl);
        free(tmpl);
        return PD_ERR_IO;
    }
    int rc = s_open(out, tmpl, flags, true);
    if (rc) rmdir(tmpl);
    free(tmpl);
    return rc;
}

static lg_store *s_log(const pd_store *s) {
    return s && s->ops == &s_log_ops ? (lg_store *)s : NULL;
}

int pd_log_compact(pd_store *s, unsigned flags) {
    lg_store *l = s_log(s);
    if (!l)
        return pd__err(s, PD_ERR_MISUSE, 0, "compact: %s",
                       s ? "not a Log store" : "NULL store");
    if (flags & ~PD_LOG_SALVAGE)
        return pd__err(s, PD_ERR_MISUSE, 0, "compact: unknown flags 0x%x",
                       flags & ~PD_LOG_SALVAGE);
    int rc = pd_lock(s);
    if (rc) return rc;
    rc = lg_compact(l, false, flags & PD_LOG_SALVAGE, "compact");
    int sys = 0;
    char msg[PD__MSG_MAX];
    if (rc) {
        sys = pd_errno(s);
        snprintf(msg, sizeof msg, "%s", pd_errmsg(s));
    }
    int urc = pd_unlock(s);
    if (rc) {
        /* The message without its "log: " prefix, recorded again. */
        const char *m = strncmp(msg, "log: ", 5) == 0 ? msg + 5 : msg;
        pd__err(s, rc, 0, "%s", m);
        if (sys) pd__err_set_sys(s, sys);
        return rc;
    }
    return urc;
}

uint64_t pd_log_torn(const pd_store *s) {
    const lg_store *l = s_log(s);
    return l ? l->torn : 0;
}

const char *pd_log_notice(const pd_store *s) {
    static _Thread_local char copy[PD__MSG_MAX / 2];
    const lg_store *l = s_log(s);
    copy[0] = 0;
    if (l) {
        pthread_mutex_lock((pthread_mutex_t *)&l->base.mu);
        snprintf(copy, sizeof copy, "%s", l->notice);
        pthread_mutex_unlock((pthread_mutex_t *)&l->base.mu);
    }
    return copy;
}

const char *pd_log_path(const pd_store *s) {
    const lg_store *l = s_log(s);
    return l ? l->path : NULL;
}
