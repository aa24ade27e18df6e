/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The data ops: append (undone on failure), get, delete, iset.  A get
 * reads to the end of the file, reserving the size the cache remembers
 * (last read or stat, plus our appends) plus slack: a short read there is
 * the end, so a get of a cached key is flock, fstat(root), pread, unlock
 * (plus the verifying fstat after an epoch bump, a second pread when the
 * file shrank, and fstat + pread when it grew past the slack).
 */
#include "file/file.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- Append */

typedef struct s_undo {
    size_t key; /* index into keys */
    size_t len; /* bytes this batch wrote */
    bool created;
} s_undo;

/* Undoes one write of the batch: a file the batch created is removed, any
 * other is truncated by the bytes written.  0 or -1 with errno. */
static int s_undo_one(pd__file *f, const pd_key *key, const s_undo *u) {
    pd__file_target t;
    if (pd__file_target_init(&t, key)) {
        pd__file_target_free(&t);
        errno = ENOMEM;
        return -1;
    }
    int rc = 0, dfd = -1, fd = -1;
    const char *name, *failed;
    bool cached = false;
    pd__file_fd *ent = NULL;
    if (u->created) {
        pd__file_cache_drop_key(f, &t.pk);
    } else if (f->in_session) {
        HASH_FIND(hh, f->cache, t.pk.p, t.pk.len, ent);
        if (ent && !ent->rdonly) {
            fd = ent->fd;
            cached = true;
        } else {
            ent = NULL;
        }
    }
    if (fd < 0) {
        if (pd__file_walk(f, pd__file_str(&t.rel), false, &dfd, &name,
                          &failed) < 0) {
            rc = -1;
            goto out;
        }
        if (u->created) {
            rc = SYS.unlinkat(dfd, name, 0);
            goto out;
        }
        fd = pd__file_openat(dfd, name, O_RDWR | PD__FILE_OPEN_FLAGS, 0);
        if (fd < 0) {
            rc = -1;
            goto out;
        }
    }
    struct stat st;
    if (SYS.fstat(fd, &st) < 0) {
        rc = -1;
    } else if ((uint64_t)st.st_size < u->len) {
        errno = ESPIPE;
        rc = -1;
    } else {
        rc = SYS.ftruncate(fd, st.st_size - (off_t)u->len);
        if (rc == 0 && ent) ent->size = (uint64_t)st.st_size - u->len;
    }
out:;
    int e = errno;
    if (fd >= 0 && !cached) pd__file_close(fd);
    if (dfd >= 0 && dfd != f->rootfd) pd__file_close(dfd);
    pd__file_target_free(&t);
    errno = e;
    return rc < 0 ? -1 : 0;
}

/* Undoes the batch's writes in reverse order, after an error already set on
 * f; a failure to undo is added to that message. */
static void s_rollback(pd__file *f, const pd_key *keys, const s_undo *u,
                       size_t nu) {
    for (size_t i = nu; i-- > 0;) {
        if (u[i].len == 0 && !u[i].created) continue;
        if (s_undo_one(f, &keys[u[i].key], &u[i]) == 0) continue;
        int e = errno, code = pd_errcode(&f->base), sys = pd_errno(&f->base);
        char first[PD__MSG_MAX], kb[PD__KEYSHORT_MAX];
        snprintf(first, sizeof first, "%s",
                 pd_errmsg(&f->base) + strlen(f->base.ops->kind) + 2);
        pd__err(&f->base, code, 0,
                "%.700s; and the rollback of %s failed (%s): %zu bytes of "
                "this batch remain at its end",
                first, pd__key_short(&keys[u[i].key], kb), strerror(e),
                u[i].len);
        pd__err_set_sys(&f->base, sys);
    }
}

int pd__file_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    pd__file *f = (pd__file *)s;
    int rc = pd__file_check_fork(f);
    if (rc) return rc;
    bool dosync = (flags & PD_FSYNC) || f->fsync_all;
    s_undo *undo = malloc(n * sizeof *undo);
    if (!undo) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "append: undo log");
    size_t nu = 0;
    for (size_t i = 0; i < n; i++) {
        pd__file_target t;
        if (pd__file_target_pk(&t, &keys[i])) {
            pd__file_target_free(&t);
            rc = pd__file_err_key(f, PD_ERR_NOMEM, ENOMEM, "append", &keys[i],
                                  "building its file name", NULL);
            break;
        }
        bool cached, created;
        int fd =
            pd__file_open_append(f, &keys[i], &t, "append", &cached, &created);
        if (fd < 0) {
            pd__file_target_free(&t);
            rc = pd_errcode(s);
            break;
        }
        undo[nu] = (s_undo){i, 0, created};
        size_t w = pd__write_all(fd, vals[i].data, vals[i].size);
        int e = errno;
        if (t.ent) t.ent->size += w; /* a get's expected size */
        undo[nu].len = w;
        nu++;
        if (w < vals[i].size) {
            rc = pd__file_err_key(f, pd__file_io_code(e), e, "append", &keys[i],
                                  "write", pd__file_target_relp(&t));
        } else if (dosync && pd__file_fsync(fd) < 0) {
            e = errno;
            rc = pd__file_err_key(f, PD_ERR_IO, e, "append", &keys[i], "fsync",
                                  pd__file_target_relp(&t));
        } else if (dosync && created) {
            int dfd;
            const char *name, *failed;
            char *relcopy = strdup(pd__file_target_relp(&t));
            if (relcopy &&
                pd__file_walk(f, relcopy, false, &dfd, &name, &failed) == 0) {
                if (pd__file_fsync(dfd) < 0) {
                    e = errno;
                    rc = pd__file_err_key(f, PD_ERR_IO, e, "append", &keys[i],
                                          "fsync(directory of)",
                                          pd__file_target_relp(&t));
                }
                if (dfd != f->rootfd) pd__file_close(dfd);
            }
            free(relcopy);
        }
        if (!cached) pd__file_close(fd);
        pd__file_target_free(&t);
        if (rc) break;
    }
    if (rc) s_rollback(f, keys, undo, nu);
    free(undo);
    return rc;
}

/* ------------------------------------------------------------------- Get */

/* Slack reserved beyond a value's expected size: a read that comes back
 * short inside it finds the end of the file in one call, even when the file
 * grew a little (another handle appended).  Bounded, so that reserving it
 * wastes little memory however large the value. */
#define S_SLACK_MIN 256
#define S_SLACK_MAX 4096
#define S_GROW_MAX 8         /* fstats for a file growing while we read it */
#define S_READ_MAX (1 << 30) /* bytes per pread (Linux's own cap: 2 GiB) */

static size_t s_slack(uint64_t expect) {
    uint64_t s = expect / 16;
    return s < S_SLACK_MIN   ? S_SLACK_MIN
           : s > S_SLACK_MAX ? S_SLACK_MAX
                             : (size_t)s;
}

/* Reads fd's file to its end as the current value.  The expected size is
 * the stat taken under this lock (open or verification) or else the size
 * the cache remembers for the descriptor (as last read, plus our appends):
 * one pread of it plus slack, and a read that comes back short at or past
 * the expected size is the end of the file (a regular file's reads are
 * short only there), so a cached get needs no fstat.  A short read before
 * it (the file was truncated, or the file system splits reads) reads on
 * until a read returns 0.  A read that fills the reservation means the
 * file grew (another handle or process appended): one fstat sizes the
 * rest.  A file that keeps growing (only a writer ignoring the lock can do
 * that) is read up to its size at the last of S_GROW_MAX fstats. */
static int s_read_into(pd__file *f, const pd_key *key, pd__file_target *t,
                       int fd, pd_result *r) {
    struct stat st;
    uint64_t expect;
    if (t->have_st)
        expect = (uint64_t)t->st.st_size;
    else if (t->ent)
        expect = t->ent->size;
    else if (SYS.fstat(fd, &st) < 0)
        return pd__file_err_key(f, PD_ERR_IO, errno, "get", key, "fstat",
                                pd__file_target_relp(t));
    else
        expect = (uint64_t)st.st_size;
    size_t got = 0;
    int rc = 0;
    for (int grows = 0;;) {
        if (expect > (uint64_t)SIZE_MAX / 2) {
            rc = pd__file_err_key(
                f, PD_ERR_LIMIT, 0, "get", key,
                "value larger than this machine's address space", NULL);
            break;
        }
        size_t want =
            ((size_t)expect > got ? (size_t)expect - got : 0) + s_slack(expect);
        char *p = pd__result_reserve(r, want);
        if (!p) {
            char kb[PD__KEYSHORT_MAX];
            rc = pd__err(&f->base, PD_ERR_NOMEM, ENOMEM,
                         "get %s: no memory for its %llu bytes",
                         pd__key_short(key, kb), (unsigned long long)expect);
            break;
        }
        size_t ask = want < S_READ_MAX ? want : S_READ_MAX;
        ssize_t k = SYS.pread(fd, p, ask, (off_t)got);
        if (k < 0) {
            if (errno == EINTR) continue;
            rc = pd__file_err_key(f, PD_ERR_IO, errno, "get", key, "read",
                                  pd__file_target_relp(t));
            break;
        }
        /* committed at once: growing the reservation keeps only what is
         * committed */
        pd__result_commit(r, (size_t)k);
        got += (size_t)k;
        if (k == 0 || ((size_t)k < ask && got >= expect)) break; /* EOF */
        if ((size_t)k < want) continue;
        /* filled: the file is longer than expected */
        if (++grows > S_GROW_MAX) break;
        if (SYS.fstat(fd, &st) < 0) {
            rc = pd__file_err_key(f, PD_ERR_IO, errno, "get", key, "fstat",
                                  pd__file_target_relp(t));
            break;
        }
        if ((uint64_t)st.st_size <= got) break; /* exactly filled */
        expect = (uint64_t)st.st_size;
    }
    if (rc) {
        pd__result_discard_current(r);
        return rc;
    }
    if (t->ent) t->ent->size = got;
    return 0;
}

int pd__file_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    pd__file *f = (pd__file *)s;
    int rc = pd__file_check_fork(f);
    if (rc) return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        pd__file_target t;
        if (pd__file_target_pk(&t, &keys[i])) {
            pd__file_target_free(&t);
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: key name");
        }
        bool cached;
        int fd = pd__file_open_read(f, &keys[i], &t, "get", &cached);
        if (fd == -1)
            rc = pd_errcode(s);
        else if (fd >= 0) {
            rc = s_read_into(f, &keys[i], &t, fd, r);
            if (!cached) pd__file_close(fd);
        }
        if (rc == 0 && pd__result_next(r))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: result table");
        pd__file_target_free(&t);
    }
    return rc;
}

/* ---------------------------------------------------------------- Delete */

/* Removes empty "%~" continuation directories left above rel's file. */
static void s_prune_pieces(pd__file *f, char *rel) {
    for (;;) {
        char *slash = strrchr(rel, '/');
        if (!slash) return;
        *slash = 0;
        char *last = strrchr(rel, '/');
        const char *name = last ? last + 1 : rel;
        if (strncmp(name, "%~", 2) != 0) return;
        int dfd;
        const char *nm, *failed;
        if (pd__file_walk(f, rel, false, &dfd, &nm, &failed) < 0) return;
        int rc = SYS.unlinkat(dfd, nm, AT_REMOVEDIR);
        if (dfd != f->rootfd) pd__file_close(dfd);
        if (rc < 0) return;
    }
}

static int s_delete_one(pd__file *f, const pd_key *key, const char *op) {
    pd__file_target t;
    if (pd__file_target_init(&t, key)) {
        pd__file_target_free(&t);
        return pd__err(&f->base, PD_ERR_NOMEM, ENOMEM, "%s: key name", op);
    }
    pd__file_cache_drop_key(f, &t.pk);
    int dfd, rc = 0;
    const char *name, *failed;
    if (pd__file_walk(f, pd__file_str(&t.rel), false, &dfd, &name, &failed) ==
        0) {
        if (SYS.unlinkat(dfd, name, 0) == 0) {
            f->gen_seen = __atomic_add_fetch(&f->lk->gen, 1, __ATOMIC_SEQ_CST);
            pd__file_dir_touch_rel(f, pd__file_str(&t.rel), t.dirlen);
            if (strstr(pd__file_str(&t.rel), "%~"))
                s_prune_pieces(f, pd__file_str(&t.rel));
        } else if (errno != ENOENT && errno != ENOTDIR && errno != EISDIR) {
            rc = pd__file_err_key(f, PD_ERR_IO, errno, op, key, "unlink",
                                  pd__file_str(&t.rel));
        }
        if (dfd != f->rootfd) pd__file_close(dfd);
    } else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP) {
        rc = pd__file_err_key(f, PD_ERR_IO, errno, op, key, failed,
                              pd__file_str(&t.rel));
    }
    pd__file_target_free(&t);
    return rc;
}

int pd__file_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    (void)flags;
    pd__file *f = (pd__file *)s;
    int rc = pd__file_check_fork(f);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = s_delete_one(f, &keys[i], "delete");
    return rc;
}

/* ------------------------------------------------------------------- Set */

static int s_set_one(pd__file *f, const pd_key *key, pd_bytes val,
                     bool dosync) {
    pd__file_target t;
    if (pd__file_target_init(&t, key)) {
        pd__file_target_free(&t);
        return pd__err(&f->base, PD_ERR_NOMEM, ENOMEM, "iset: key name");
    }
    pd__file_cache_drop_key(f, &t.pk);
    int dfd, rc = 0;
    const char *name, *failed;
    if (pd__file_walk(f, pd__file_str(&t.rel), true, &dfd, &name, &failed) <
        0) {
        int e = errno;
        if (e == ENOTDIR || e == EEXIST || e == ELOOP)
            rc = pd__file_err_conflict(f, "iset", key, pd__file_str(&t.rel));
        else
            rc = pd__file_err_key(f, pd__file_io_code(e), e, "iset", key,
                                  failed, pd__file_str(&t.rel));
        pd__file_target_free(&t);
        return rc;
    }
    char tmp[64];
    static unsigned counter;
    struct timespec now;
    pd__file_now(&now);
    snprintf(tmp, sizeof tmp, "%%#%ld.%u.%lx", (long)pd__getpid(),
             __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED),
             (unsigned long)now.tv_sec);
    int fd = pd__file_openat(
        dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | PD__FILE_OPEN_FLAGS, 0666);
    if (fd < 0) {
        rc = pd__file_err_key(f, pd__file_io_code(errno), errno, "iset", key,
                              "open(temporary for)", pd__file_str(&t.rel));
    } else {
        size_t w = pd__write_all(fd, val.data, val.size);
        int e = errno;
        if (w < val.size)
            rc = pd__file_err_key(f, pd__file_io_code(e), e, "iset", key,
                                  "write", pd__file_str(&t.rel));
        else if (dosync && pd__file_fsync(fd) < 0)
            rc = pd__file_err_key(f, PD_ERR_IO, errno, "iset", key, "fsync",
                                  pd__file_str(&t.rel));
        pd__file_close(fd);
        if (rc == 0 && SYS.renameat(dfd, tmp, dfd, name) < 0) {
            e = errno;
            rc = e == EISDIR || e == ENOTEMPTY
                     ? pd__file_err_key(f, PD_ERR_KEY, e, "iset", key, "rename",
                                        pd__file_str(&t.rel))
                     : pd__file_err_key(f, pd__file_io_code(e), e, "iset", key,
                                        "rename", pd__file_str(&t.rel));
        }
        if (rc) SYS.unlinkat(dfd, tmp, 0);
        if (rc == 0) {
            f->gen_seen = __atomic_add_fetch(&f->lk->gen, 1, __ATOMIC_SEQ_CST);
            if (dosync && pd__file_fsync(dfd) < 0)
                rc = pd__file_err_key(f, PD_ERR_IO, errno, "iset", key,
                                      "fsync(directory of)",
                                      pd__file_str(&t.rel));
        }
    }
    pd__file_dir_touch_rel(f, pd__file_str(&t.rel), t.dirlen);
    if (dfd != f->rootfd) pd__file_close(dfd);
    pd__file_target_free(&t);
    return rc;
}

int pd__file_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    pd__file *f = (pd__file *)s;
    int rc = pd__file_check_fork(f);
    bool dosync = (flags & PD_FSYNC) || f->fsync_all;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = s_set_one(f, &keys[i], vals[i], dosync);
    return rc;
}
