/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Opening a key's file: from the descriptor cache when it holds a current
 * one, else by walking the key's path.  A get of an uncached key costs
 * openat and fstat (its type and size) and caches the descriptor.  An
 * append that misses the cache costs openat(O_CREAT|O_EXCL) for a new file,
 * openat + fstat (type, links, size) for an existing one: which to try
 * first is guessed from the recent misses, so either workload (new keys;
 * keys reopened after eviction) pays one openat.  And the error messages,
 * which name the key, the file and the call that failed.
 */
#include "file/file.h"

#include <string.h>

/* --------------------------------------------------------------- Errors */

int pd__file_err_key(pd__file *f, int code, int sys, const char *op,
                     const pd_key *key, const char *call, const char *rel) {
    char kb[PD__KEYSHORT_MAX];
    if (rel)
        return pd__err(&f->base, code, sys, "%s %s: %s(%s/%.300s)", op,
                       pd__key_short(key, kb), call, f->path, rel);
    return pd__err(&f->base, code, sys, "%s %s: %s", op, pd__key_short(key, kb),
                   call);
}

/* A key's path holds something that is not a plain file of ours. */
int pd__file_err_type(pd__file *f, const char *op, const pd_key *key,
                      const char *rel, int e) {
    const char *why = e == ELOOP    ? "is a symlink, and symlinks inside the "
                                      "store are never followed"
                      : e == EMLINK ? "has several hard links (refused: it "
                                      "may be a file outside the store)"
                      : e == EISDIR ? "is a directory (it holds tuple keys "
                                      "that start with this key)"
                                    : "is not a regular file (refused)";
    char kb[PD__KEYSHORT_MAX];
    return pd__err(&f->base, PD_ERR_KEY, 0, "%s %s: %s/%.300s %s", op,
                   pd__key_short(key, kb), f->path, rel, why);
}

/* A directory on key's path is a file (another key) or a symlink. */
int pd__file_err_conflict(pd__file *f, const char *op, const pd_key *key,
                          const char *rel) {
    char kb[PD__KEYSHORT_MAX];
    return pd__err(&f->base, PD_ERR_KEY, 0,
                   "%s %s: %s/%.300s: a directory on its path is a file "
                   "(another key holds that name) or a symlink",
                   op, pd__key_short(key, kb), f->path, rel);
}

int pd__file_io_code(int e) { return e == ENOMEM ? PD_ERR_NOMEM : PD_ERR_IO; }

/* -------------------------------------------------------------- Opening */

/* Checks a freshly opened descriptor: a regular file with one link.  0, or
 * -1 with errno (-2 when fstat itself failed). */
static int s_check_regular(int fd, struct stat *st) {
    if (SYS.fstat(fd, st) < 0) return -2;
    if (!S_ISREG(st->st_mode)) {
        errno = S_ISDIR(st->st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    if (st->st_nlink > 1) {
        errno = EMLINK;
        return -1;
    }
    return 0;
}

int pd__file_target_pk(pd__file_target *t, const pd_key *key) {
    t->key = key;
    t->have_rel = false;
    t->have_st = false;
    t->ent = NULL;
    t->exists = false;
    t->pk.p = NULL;
    pd__buf_init(&t->rel, t->relinl, sizeof t->relinl);
    return pd__pkey_set(&t->pk, key) ? -1 : 0;
}

int pd__file_target_rel(pd__file_target *t) {
    if (t->have_rel) return 0;
    if (pd__file_relpath(t->key, &t->rel)) return -1;
    char *slash = strrchr(pd__file_str(&t->rel), '/');
    t->dirlen = slash ? (size_t)(slash - pd__file_str(&t->rel)) : 0;
    t->have_rel = true;
    return 0;
}

const char *pd__file_target_relp(pd__file_target *t) {
    return pd__file_target_rel(t) == 0 ? pd__file_str(&t->rel)
                                       : "(name unavailable)";
}

int pd__file_target_init(pd__file_target *t, const pd_key *key) {
    if (pd__file_target_pk(t, key)) return -1;
    return pd__file_target_rel(t);
}

void pd__file_target_free(pd__file_target *t) {
    if (t->pk.p) pd__pkey_free(&t->pk);
    pd__buf_free(&t->rel);
}

/* The key's cached descriptor (*cached set, t->ent its entry), or S_MISS
 * with the file name built for opening it, or -1 with an error set.  For
 * `write`, a read-only descriptor (a get's) is closed and missed, with
 * t->exists set: its file was there a moment ago. */
#define S_MISS (-3)
static int s_cached_fd(pd__file *f, const pd_key *key, pd__file_target *t,
                       const char *op, bool write, bool *cached) {
    *cached = false;
    if (f->in_session) {
        pd__file_fd *e = pd__file_cache_find(f, &t->pk, &t->st, &t->have_st);
        if (e && write && e->rdonly) {
            pd__file_cache_evict(f, e);
            t->have_st = false;
            t->exists = true;
        } else if (e) {
            *cached = true;
            t->ent = e;
            return e->fd;
        }
    }
    if (pd__file_target_rel(t))
        return pd__file_err_key(f, PD_ERR_NOMEM, ENOMEM, op, key,
                                "building its file name", NULL),
               -1;
    return S_MISS;
}

/* Opens key's file for appending (creating it and its directories).
 * Returns fd (cached: *cached set, don't close) or -1 with an error set.
 * *created tells whether the file is new. */
int pd__file_open_append(pd__file *f, const pd_key *key, pd__file_target *t,
                         const char *op, bool *cached, bool *created) {
    *created = false;
    int fd = s_cached_fd(f, key, t, op, true, cached);
    if (fd != S_MISS) return fd;
    int dfd;
    const char *name, *failed;
    if (pd__file_walk(f, pd__file_str(&t->rel), true, &dfd, &name, &failed) <
        0) {
        int e = errno;
        if (e == ENOTDIR || e == EEXIST || e == ELOOP)
            return pd__file_err_conflict(f, op, key, pd__file_str(&t->rel)), -1;
        return pd__file_err_key(f, pd__file_io_code(e), e, op, key, failed,
                                pd__file_str(&t->rel)),
               -1;
    }
    /* A new file costs one call with O_CREAT|O_EXCL (and a file this call
     * created exclusively is surely regular with one link); an existing one
     * one plain open (plus the fstat that checks it).  Whichever fails is
     * followed by the other, so guess: an existing file when the cache just
     * held it, or when the recent misses mostly found their files (keys
     * reopened after eviction), else a new one (keys' first appends). */
    int flags = O_RDWR | O_APPEND | PD__FILE_OPEN_FLAGS;
    bool excl = !(t->exists || f->exist_bias >= 2);
    fd = -1;
    for (int tries = 0; tries < 6; tries++) {
        fd = pd__file_openat(dfd, name, excl ? flags | O_CREAT | O_EXCL : flags,
                             0666);
        if (fd >= 0) {
            *created = excl;
            break;
        }
        if (excl && errno == EEXIST) {
            excl = false; /* there (maybe created meanwhile): open it */
        } else if (!excl && errno == ENOENT) {
            excl = true; /* not there (maybe removed meanwhile): create it */
        } else if ((errno == EMFILE || errno == ENFILE) && f->ncache > 0) {
            pd__file_cache_trim(f, f->ncache / 2);
        } else {
            break;
        }
    }
    int e = errno, chk = 0;
    struct stat st;
    st.st_size = 0;
    if (fd >= 0 && !*created && (chk = s_check_regular(fd, &st)) < 0) {
        e = errno;
        pd__file_close(fd);
        fd = -1;
    }
    if (fd >= 0 && !t->exists) {
        if (*created && f->exist_bias > 0) f->exist_bias--;
        if (!*created && f->exist_bias < 3) f->exist_bias++;
    }
    if (dfd != f->rootfd) pd__file_close(dfd);
    if (fd < 0) {
        const char *call = chk == -2 ? "fstat" : "open";
        if (chk != -2 && (e == ELOOP || e == EISDIR || e == EINVAL ||
                          e == EMLINK || e == ENXIO))
            return pd__file_err_type(f, op, key, pd__file_str(&t->rel), e), -1;
        return pd__file_err_key(f, pd__file_io_code(e), e, op, key, call,
                                pd__file_str(&t->rel)),
               -1;
    }
    if (f->in_session) {
        pd__file_dir *d = NULL;
        t->ent = pd__file_cache_add(f, &t->pk, fd, pd__file_str(&t->rel),
                                    t->dirlen, (uint64_t)st.st_size, false);
        if (t->ent) {
            *cached = true;
            d = t->ent->dir;
        }
        if (*created) {
            if (!d) d = pd__file_dir_get(f, pd__file_str(&t->rel), t->dirlen);
            pd__file_dir_touch(f, d);
        }
    }
    return fd;
}

/* Opens key's file for reading.  Returns fd (to close unless *cached), or
 * -2 when the key has no file, or -1 with an error set.  A descriptor
 * opened here is cached too (read-only): a key read again costs no open,
 * and caching costs nothing (the close just comes later, at eviction). */
int pd__file_open_read(pd__file *f, const pd_key *key, pd__file_target *t,
                       const char *op, bool *cached) {
    int fd = s_cached_fd(f, key, t, op, false, cached);
    if (fd != S_MISS) return fd;
    int dfd;
    const char *name, *failed;
    if (pd__file_walk(f, pd__file_str(&t->rel), false, &dfd, &name, &failed) <
        0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR || e == ELOOP) return -2;
        return pd__file_err_key(f, pd__file_io_code(e), e, op, key, failed,
                                pd__file_str(&t->rel)),
               -1;
    }
    for (int tries = 0;; tries++) {
        fd = pd__file_openat(dfd, name, O_RDONLY | PD__FILE_OPEN_FLAGS, 0);
        if (fd >= 0 || tries == 2 || (errno != EMFILE && errno != ENFILE) ||
            f->ncache == 0)
            break;
        pd__file_cache_trim(f, f->ncache /
                                   2); /* our cache holds the descriptors */
    }
    int e = errno;
    if (dfd != f->rootfd) pd__file_close(dfd);
    if (fd < 0) {
        if (e == ENOENT || e == ENOTDIR) return -2;
        if (e == ELOOP)
            return pd__file_err_type(f, op, key, pd__file_str(&t->rel), e), -1;
        return pd__file_err_key(f, pd__file_io_code(e), e, op, key, "open",
                                pd__file_str(&t->rel)),
               -1;
    }
    struct stat st;
    if (SYS.fstat(fd, &st) < 0) {
        e = errno;
        pd__file_close(fd);
        return pd__file_err_key(f, PD_ERR_IO, e, op, key, "fstat",
                                pd__file_str(&t->rel)),
               -1;
    }
    t->st = st; /* the read's expected size: no second fstat */
    t->have_st = true;
    if (S_ISDIR(st.st_mode)) { /* the prefix of tuple keys: no value */
        pd__file_close(fd);
        return -2;
    }
    if (!S_ISREG(st.st_mode)) {
        pd__file_close(fd);
        return pd__file_err_key(f, PD_ERR_KEY, 0, op, key,
                                "not a regular file (refusing to read it)",
                                pd__file_str(&t->rel)),
               -1;
    }
    if (f->in_session) {
        t->ent = pd__file_cache_add(f, &t->pk, fd, pd__file_str(&t->rel),
                                    t->dirlen, (uint64_t)st.st_size, true);
        *cached = t->ent != NULL;
    }
    return fd;
}
