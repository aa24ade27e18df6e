/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The lock.  flock(LOCK_EX) on <root>/.lock, exactly what Python partd's
 * locket does, so C and Python processes exclude each other.  One lock
 * object per directory per process (shared by every handle on it, with a
 * recursive mutex), since flock belongs to the open file description.  At
 * each acquisition the lock file's identity is checked against the path: if
 * the directory was removed and recreated (Python's drop), the lock file and
 * root are reopened.  A lock/unlock pair is a session, the span in which
 * cached descriptors may be used (fdcache.c).
 */
#include "file/file.h"

#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

/* ------------------------------------------------------ Lock registry */

static pthread_mutex_t g_locks_mu = PTHREAD_MUTEX_INITIALIZER;
static pd__file_lockobj *g_locks;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

/* In a forked child only the forking thread survives: forget the parent's
 * lock objects (their descriptors share the parent's flock). */
static void s_atfork_child(void) {
    pthread_mutex_init(&g_locks_mu, NULL);
    /* Frees the registry's table (not the lock objects: the handles that
     * hold them release them when they notice the fork). */
    HASH_CLEAR(hh, g_locks);
}

static void s_atfork_init(void) { pthread_atfork(NULL, NULL, s_atfork_child); }

static int s_lockfile_open(int rootfd, struct stat *st) {
    int fd = pd__file_openat(rootfd, ".lock",
                             O_RDWR | O_CREAT | PD__FILE_OPEN_FLAGS, 0666);
    if (fd < 0 && (errno == EROFS || errno == EACCES)) {
        /* A read-only store can still be read: flock works on a read-only
         * descriptor of an existing lock file. */
        int e = errno;
        fd =
            pd__file_openat(rootfd, ".lock", O_RDONLY | PD__FILE_OPEN_FLAGS, 0);
        if (fd < 0) errno = e;
    }
    if (fd < 0) return -1;
    int bad = SYS.fstat(fd, st) < 0   ? errno
              : !S_ISREG(st->st_mode) ? EINVAL
                                      : 0;
    if (bad) {
        int e = bad;
        pd__file_close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

pd__file_lockobj *pd__file_lockobj_get(pd__file *f) {
    pthread_once(&g_atfork_once, s_atfork_init);
    pthread_mutex_lock(&g_locks_mu);
    pd__file_lockobj *lk = NULL;
    HASH_FIND_STR(g_locks, f->path, lk);
    if (lk && lk->pid == pd__getpid()) {
        lk->refs++;
        pthread_mutex_unlock(&g_locks_mu);
        return lk;
    }
    lk = calloc(1, sizeof *lk);
    struct stat st;
    if (!lk || !(lk->root = strdup(f->path)) ||
        pd__mutex_init_recursive(&lk->mu)) {
        int e = ENOMEM;
        if (lk) free(lk->root);
        free(lk);
        pthread_mutex_unlock(&g_locks_mu);
        pd__err(NULL, PD_ERR_NOMEM, e, "file: open %s: lock object", f->path);
        return NULL;
    }
    lk->fd = s_lockfile_open(f->rootfd, &st);
    if (lk->fd < 0) {
        int e = errno;
        pthread_mutex_destroy(&lk->mu);
        free(lk->root);
        free(lk);
        pthread_mutex_unlock(&g_locks_mu);
        pd__err(NULL, PD_ERR_IO, e, "file: open %s/.lock", f->path);
        return NULL;
    }
    lk->dev = st.st_dev;
    lk->ino = st.st_ino;
    struct stat rst;
    if (SYS.fstat(f->rootfd, &rst) == 0) {
        lk->rdev = rst.st_dev;
        lk->rino = rst.st_ino;
    }
    lk->pid = pd__getpid();
    lk->refs = 1;
    HASH_ADD_KEYPTR(hh, g_locks, lk->root, strlen(lk->root), lk);
    /* Not in the registry (no memory for its table): the handle still
     * works with a lock object of its own. */
    pthread_mutex_unlock(&g_locks_mu);
    return lk;
}

void pd__file_lockobj_put(pd__file_lockobj *lk) {
    if (!lk) return;
    pthread_mutex_lock(&g_locks_mu);
    bool last = --lk->refs == 0;
    if (last) {
        pd__file_lockobj *cur = NULL;
        HASH_FIND_STR(g_locks, lk->root, cur);
        if (cur == lk) HASH_DEL(g_locks, lk);
    }
    pthread_mutex_unlock(&g_locks_mu);
    if (last) {
        if (lk->pid == pd__getpid()) {
            pd__file_close(lk->fd);
            pthread_mutex_destroy(&lk->mu);
        } else {
            pd__file_close(
                lk->fd); /* inherited copy; the parent keeps its lock */
        }
        free(lk->root);
        free(lk);
    }
}

/* Takes the flock on lk (depth 0 -> 1).  The store directory may have been
 * removed and recreated meanwhile (Python partd's drop does that, without
 * locking): then our lock file is not the one others lock.  One fstat of the
 * root descriptor tells (a removed directory has no links; a handle opened
 * on the new directory has another inode than the lock's); in that case the
 * directory and its lock file are reopened by path.  Called with lk->mu. */
static int s_lockobj_flock(pd__file *f, pd__file_lockobj *lk) {
    for (int tries = 0;; tries++) {
        if (pd__file_flock(lk->fd, LOCK_EX) < 0)
            return pd__err(&f->base, PD_ERR_IO, errno, "lock: flock(%s/.lock)",
                           lk->root);
        struct stat st;
        struct timespec at;
        pd__file_now(&at);
        if (SYS.fstat(f->rootfd, &st) < 0) {
            int e = errno;
            pd__file_flock(lk->fd, LOCK_UN);
            return pd__err(&f->base, PD_ERR_IO, e, "lock: fstat(%s)", f->path);
        }
        if (st.st_nlink > 0 && st.st_dev == lk->rdev && st.st_ino == lk->rino) {
            f->root_st = st;
            f->root_st_at = at;
            f->root_st_session = f->session + 1; /* the one starting */
            return 0;
        }
        pd__file_flock(lk->fd, LOCK_UN);
        if (tries >= 8)
            return pd__err(&f->base, PD_ERR_IO, 0,
                           "lock: %s keeps being replaced under us", lk->root);
        int rfd = SYS.open(lk->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        if (rfd < 0)
            return pd__err(&f->base, PD_ERR_IO, errno,
                           "lock: store directory %s", lk->root);
        struct stat rst;
        int nfd = SYS.fstat(rfd, &rst) == 0 ? s_lockfile_open(rfd, &st) : -1;
        int e = errno;
        if (nfd < 0) {
            pd__file_close(rfd);
            return pd__err(&f->base, PD_ERR_IO, e, "lock: open(%s/.lock)",
                           lk->root);
        }
        pd__file_close(lk->fd);
        lk->fd = nfd;
        lk->dev = st.st_dev;
        lk->ino = st.st_ino;
        lk->rdev = rst.st_dev;
        lk->rino = rst.st_ino;
        lk->epoch++;
        /* this handle's root: the new directory */
        pd__file_cache_clear(f);
        pd__file_close(f->rootfd);
        f->rootfd = rfd;
        f->epoch_seen = lk->epoch;
    }
}

/* ------------------------------------------------------------- Sessions */

/* Forked child: drop inherited descriptors and lock. */
int pd__file_check_fork(pd__file *f) {
    if (PD__LIKELY(f->pid == pd__getpid())) return 0;
    /* Closing the child's copies leaves the parent's descriptors open. */
    pd__file_cache_clear(f);
    pd__file_lockobj *old = f->lk;
    f->lk = NULL;
    f->pid = pd__getpid();
    pd__file_lockobj_put(old);
    f->lk = pd__file_lockobj_get(f);
    if (!f->lk) return pd__err_inner(&f->base, NULL, PD_ERR_IO);
    f->epoch_seen = f->lk->epoch;
    f->gen_seen = f->lk->gen;
    return 0;
}

static int s_reopen_root(pd__file *f) {
    int fd = SYS.open(f->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return pd__err(&f->base, PD_ERR_IO, errno, "lock: reopen %s", f->path);
    pd__file_cache_clear(f);
    pd__file_close(f->rootfd);
    f->rootfd = fd;
    return 0;
}

int pd__file_lock(pd_store *s) {
    pd__file *f = (pd__file *)s;
    int rc = pd__file_check_fork(f);
    if (rc) return rc;
    pd__file_lockobj *lk = f->lk;
    pthread_mutex_lock(&lk->mu);
    if (lk->depth == 0) {
        rc = s_lockobj_flock(f, lk);
        if (rc) {
            pthread_mutex_unlock(&lk->mu);
            return rc;
        }
    }
    lk->depth++;
    if (f->epoch_seen != lk->epoch) {
        rc = s_reopen_root(f);
        if (rc) {
            if (--lk->depth == 0) pd__file_flock(lk->fd, LOCK_UN);
            pthread_mutex_unlock(&lk->mu);
            return rc;
        }
        f->epoch_seen = lk->epoch;
    }
    f->session++;
    f->in_session = true;
    return 0;
}

int pd__file_unlock(pd_store *s) {
    pd__file *f = (pd__file *)s;
    pd__file_lockobj *lk = f->lk;
    pd__file_session_end(f);
    f->in_session = false;
    int rc = 0;
    if (--lk->depth == 0 && pd__file_flock(lk->fd, LOCK_UN) < 0)
        rc = pd__err(&f->base, PD_ERR_IO, errno, "unlock: flock(%s/.lock)",
                     f->path);
    pthread_mutex_unlock(&lk->mu);
    return rc;
}
