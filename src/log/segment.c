/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: the directory (marker, lock, shared state) and the writer.
 *
 * Each handle appends to a segment of its own, created at its first write
 * and held with flock(LOCK_EX) while the handle is open, so a reader that
 * can take that lock knows the writer is gone.  A record is written at the
 * end of the segment (one write(), or writev() of its header and table,
 * the caller's values and its trailer, looping on short writes); if that
 * fails, the segment is truncated back to the record's start (if that fails
 * too, the segment is abandoned: its partial tail is a torn record of a
 * closed writer, never acknowledged).
 */
#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define S_OPEN_FLAGS (O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK)
#define S_STATE_SIZE 4096

static int s_openat(int dirfd, const char *name, int flags, mode_t mode) {
    int fd;
    do fd = SYS.openat(dirfd, name, flags, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

static void s_close(int fd) {
    if (fd >= 0) SYS.close(fd);
}

static int s_flock_fd(int fd, int op) {
    int rc;
    do rc = SYS.flock(fd, op);
    while (rc < 0 && errno == EINTR);
    return rc;
}

int lg_flock(lg_store *l, int op) {
    if (s_flock_fd(l->lockfd, op) < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "lock: flock(%s/%s, %s)",
                       l->path, LG_LOCK,
                       op == LOCK_UN   ? "unlock"
                       : op == LOCK_SH ? "shared"
                                       : "exclusive");
    l->flock_mode = op == LOCK_UN ? 0 : op;
    return 0;
}

/* ---------------------------------------------------------------- Marker */

static int s_marker_check(lg_store *l, int fd) {
    unsigned char m[LG_MARKER_SIZE];
    ssize_t got;
    do got = SYS.pread(fd, m, sizeof m, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return pd__err(NULL, PD_ERR_IO, errno, "log: open: read %s/%s", l->path,
                       LG_MARKER);
    if (got < (ssize_t)sizeof m || memcmp(m, LG_MAGIC, 8) != 0)
        return pd__err(NULL, PD_ERR_CORRUPT, 0,
                       "log: open %s: not a Log store (%s/%s has no Log "
                       "marker)",
                       l->path, l->path, LG_MARKER);
    uint32_t v = lg_le32(m + 8);
    if (v > LG_FORMAT)
        return pd__err(NULL, PD_ERR_UNSUPPORTED, 0,
                       "log: open %s: Log format version %u is newer than "
                       "this library reads (%u)",
                       l->path, v, LG_FORMAT);
    if (v == 0)
        return pd__err(NULL, PD_ERR_CORRUPT, 0,
                       "log: open %s: marker %s has version 0", l->path,
                       LG_MARKER);
    return 0;
}

/* Whether the directory holds anything but .lock (an empty directory may
 * become a Log; anything else is refused).  -1 on error (errno). */
static int s_not_log_entry(void *arg, int dfd, const char *n,
                           unsigned char type) {
    (void)arg;
    (void)dfd;
    (void)type;
    return strcmp(n, LG_LOCK) && strcmp(n, LG_MARKER ".tmp") ? 1 : 0;
}

static int s_dir_nonempty(lg_store *l) {
    int fd = s_openat(l->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) return -1;
    const char *failed;
    return pd__dir_each(fd, s_not_log_entry, NULL, &failed);
}

int lg_put_file(lg_store *l, const char *name, const void *buf, size_t n) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int fd = s_openat(l->dirfd, tmp,
                      O_WRONLY | O_CREAT | O_TRUNC | S_OPEN_FLAGS, 0666);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t w = SYS.write(fd, (const char *)buf + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            break;
        }
        done += (size_t)w;
    }
    int ok = done == n && SYS.fsync(fd) == 0;
    int e = errno;
    s_close(fd);
    if (ok && SYS.renameat(l->dirfd, tmp, l->dirfd, name) < 0) {
        ok = 0;
        e = errno;
    }
    if (ok) return 0;
    SYS.unlinkat(l->dirfd, tmp, 0);
    errno = e;
    return -1;
}

/* Creates the marker (called with .lock held exclusively). */
static int s_marker_create(lg_store *l) {
    int nonempty = s_dir_nonempty(l);
    if (nonempty < 0)
        return pd__err(NULL, PD_ERR_IO, errno, "log: open: list %s", l->path);
    if (nonempty)
        return pd__err(NULL, PD_ERR_CORRUPT, 0,
                       "log: open %s: not a Log store (no %s marker, and the "
                       "directory is not empty)",
                       l->path, LG_MARKER);
    unsigned char m[LG_MARKER_SIZE] = LG_MAGIC;
    m[8] = (unsigned char)LG_FORMAT_NEW;
    if (lg_put_file(l, LG_MARKER, m, sizeof m))
        return pd__err(NULL, PD_ERR_IO, errno, "log: open: write %s/%s",
                       l->path, LG_MARKER);
    return 0;
}

static int s_marker_try(lg_store *l, bool again) {
    int fd = s_openat(l->dirfd, LG_MARKER, O_RDONLY | S_OPEN_FLAGS, 0);
    if (fd < 0 && errno != ENOENT)
        return pd__err(NULL, PD_ERR_IO, errno, "log: open %s/%s", l->path,
                       LG_MARKER);
    if (fd >= 0) {
        int rc = s_marker_check(l, fd);
        s_close(fd);
        return rc;
    }
    /* No marker: refuse a directory with other things in it before
     * creating anything there. */
    int nonempty = s_dir_nonempty(l);
    if (nonempty < 0)
        return pd__err(NULL, PD_ERR_IO, errno, "log: open: list %s", l->path);
    /* Another process may have just made it a Log. */
    if (nonempty && again) return s_marker_try(l, false);
    if (nonempty)
        return pd__err(NULL, PD_ERR_CORRUPT, 0,
                       "log: open %s: not a Log store (no %s marker, and the "
                       "directory is not empty)",
                       l->path, LG_MARKER);
    return 1; /* create it under the lock */
}

static int s_marker(lg_store *l) { return s_marker_try(l, true); }

/* ----------------------------------------------------------------- Open */

/* Whether the state file holds counters we can use: its magic, and a
 * sequence and generation in range (else they are rebuilt). */
static bool s_state_ok(const lg_shared *sh) {
    return memcmp(sh->magic, "PDLOGST1", 8) == 0 && sh->seq < LG_SEQ_MAX &&
           sh->gen < LG_GEN_MAX;
}

int lg_open_dir(lg_store *l, unsigned flags) {
    (void)flags;
    int rc = s_marker(l);
    if (rc < 0) return rc;
    bool create = rc == 1;
    l->lockfd =
        s_openat(l->dirfd, LG_LOCK, O_RDWR | O_CREAT | S_OPEN_FLAGS, 0666);
    if (l->lockfd < 0)
        return pd__err(NULL, PD_ERR_IO, errno, "log: open %s/%s", l->path,
                       LG_LOCK);
    if (s_flock_fd(l->lockfd, create ? LOCK_EX : LOCK_SH) < 0)
        return pd__err(NULL, PD_ERR_IO, errno, "log: open: flock(%s/%s)",
                       l->path, LG_LOCK);
    if (create) {
        /* Re-check under the lock: another process may have made it. */
        int fd = s_openat(l->dirfd, LG_MARKER, O_RDONLY | S_OPEN_FLAGS, 0);
        if (fd >= 0) {
            rc = s_marker_check(l, fd);
            s_close(fd);
        } else {
            rc = s_marker_create(l);
        }
        if (rc) goto unlock;
    }
    l->statefd =
        s_openat(l->dirfd, LG_STATE, O_RDWR | O_CREAT | S_OPEN_FLAGS, 0666);
    struct stat st;
    if (l->statefd < 0 || SYS.fstat(l->statefd, &st) < 0 ||
        (st.st_size < S_STATE_SIZE &&
         SYS.ftruncate(l->statefd, S_STATE_SIZE) < 0)) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "log: open %s/%s", l->path,
                     LG_STATE);
        goto unlock;
    }
    void *m = mmap(NULL, S_STATE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                   l->statefd, 0);
    if (m == MAP_FAILED) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "log: open: mmap(%s/%s)", l->path,
                     LG_STATE);
        goto unlock;
    }
    l->sh = m;
    /* Held while the handle is open: the last handle to close can tell. */
    if (s_flock_fd(l->statefd, LOCK_SH) < 0) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "log: open: flock(%s/%s)", l->path,
                     LG_STATE);
        goto unlock;
    }
    l->flock_mode = create ? LOCK_EX : LOCK_SH;
    if (!s_state_ok(l->sh)) {
        /* A new or lost state file, or counters out of range: they are
         * rebuilt from the segments (the sequence must never go back),
         * exclusively. */
        if (l->flock_mode != LOCK_EX && lg_flock(l, LOCK_EX)) {
            rc = pd_errcode(&l->base);
            pd__err_to_thread(&l->base);
            goto unlock;
        }
        if (!s_state_ok(l->sh)) {
            memset(l->sh, 0, sizeof *l->sh);
            rc = lg_catch_up(l, "open");
            if (rc) {
                pd__err_to_thread(&l->base);
                goto unlock;
            }
            l->sh->seq = l->max_seq;
            l->sh->gen = l->cgen;
            l->gen_seen = l->cgen;
            __atomic_store_n((uint64_t *)(void *)l->sh->magic,
                             *(const uint64_t *)(const void *)"PDLOGST1",
                             __ATOMIC_SEQ_CST);
        }
    }
    rc = 0;
unlock:
    s_flock_fd(l->lockfd, LOCK_UN);
    l->flock_mode = 0;
    return rc;
}

void lg_close_dir(lg_store *l) {
    if (l->sh) munmap(l->sh, S_STATE_SIZE);
    l->sh = NULL;
    s_close(l->statefd);
    s_close(l->lockfd);
    s_close(l->wfd);
    l->statefd = l->lockfd = l->wfd = -1;
}

/* A forked child shares its parent's descriptors (and their flocks): it
 * gets lock and state descriptors of its own and writes to a new segment. */
int lg_check_fork(lg_store *l) {
    if (PD__LIKELY(l->pid == pd__getpid())) return 0;
    l->pid = pd__getpid();
    l->flock_mode = 0;
    if (l->wfd >= 0) close(l->wfd); /* the parent keeps its segment */
    lg_att_fork(l);
    l->wfd = -1;
    l->wname[0] = 0;
    l->wseg = UINT32_MAX;
    if (l->lockfd >= 0) close(l->lockfd);
    if (l->statefd >= 0) close(l->statefd);
    l->statefd = -1;
    l->lockfd =
        s_openat(l->dirfd, LG_LOCK, O_RDWR | O_CREAT | S_OPEN_FLAGS, 0666);
    if (l->lockfd < 0)
        return pd__err(&l->base, PD_ERR_IO, errno,
                       "lock: reopen %s/%s after fork", l->path, LG_LOCK);
    l->statefd = s_openat(l->dirfd, LG_STATE, O_RDWR | S_OPEN_FLAGS, 0);
    if (l->statefd >= 0) s_flock_fd(l->statefd, LOCK_SH);
    return 0;
}

/* ---------------------------------------------------------------- Writer */

int lg_next_seq(lg_store *l, const char *op, uint64_t *seq) {
    uint64_t cur = __atomic_load_n(&l->sh->seq, __ATOMIC_SEQ_CST);
    do {
        /* Only damaged or hostile data (a record or state file claiming a
         * number near the limit) gets here: 2^62 records are never written.
         * Handing out the limit would write a record no reader accepts. */
        if (cur + 1 >= LG_SEQ_MAX)
            return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                           "%s: %s: the sequence counter is at %llu, its limit "
                           "is 2^62: a record or the state file claims a "
                           "number no writer reaches (damaged or hostile "
                           "data); nothing was written, the store can still "
                           "be read and compacted",
                           op, l->path, (unsigned long long)cur);
    } while (!__atomic_compare_exchange_n(&l->sh->seq, &cur, cur + 1, false,
                                          __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    *seq = cur + 1;
    return 0;
}

/* Opens a new segment of our own (after a compaction, the old one holds
 * only superseded records: it is removed). */
static int s_new_segment(lg_store *l, const char *op, const char *ks) {
    if (l->wfd >= 0) {
        int keep = lg_att_retire(l);
        if (keep < 2) s_close(l->wfd);
        l->wfd = -1;
        if (!keep) SYS.unlinkat(l->dirfd, l->wname, 0);
    }
    char name[96];
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(name, sizeof name, "w-%ld-%u-%08lx", (long)l->pid,
                 l->ncreated++,
                 (unsigned long)((uint64_t)ts.tv_nsec ^ (uintptr_t)l) &
                     0xffffffffUL);
        fd =
            s_openat(l->dirfd, name,
                     O_RDWR | O_APPEND | O_CREAT | O_EXCL | S_OPEN_FLAGS, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s %s: create %s/%s", op,
                       ks, l->path, name);
    if (s_flock_fd(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        s_close(fd);
        SYS.unlinkat(l->dirfd, name, 0);
        return pd__err(&l->base, PD_ERR_IO, e, "%s %s: flock(%s/%s)", op, ks,
                       l->path, name);
    }
    int rfd = s_openat(l->dirfd, name, O_RDONLY | S_OPEN_FLAGS, 0);
    int rc = rfd < 0 ? pd__err(&l->base, PD_ERR_IO, errno, "%s %s: open %s/%s",
                               op, ks, l->path, name)
                     : lg_seg_add(l, name, rfd, false);
    if (rc < 0) {
        s_close(rfd);
        s_close(fd);
        SYS.unlinkat(l->dirfd, name, 0);
        return rc;
    }
    l->wfd = fd;
    l->wseg = (uint32_t)rc;
    snprintf(l->wname, sizeof l->wname, "%s", name);
    l->wsize = 0;
    l->wgen = __atomic_load_n(&l->sh->gen, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&l->sh->created, 1, __ATOMIC_SEQ_CST);
    return 0;
}

/* Undoes a failed record: truncates back to its start, or abandons the
 * segment (its tail is then a torn record of a closed writer). */
static void s_undo(lg_store *l, uint64_t start) {
    int rc;
    do rc = SYS.ftruncate(l->wfd, (off_t)start);
    while (rc < 0 && errno == EINTR);
    __atomic_add_fetch(&l->sh->writes, 1, __ATOMIC_SEQ_CST);
    if (rc < 0) {
        if (lg_att_retire(l) < 2) s_close(l->wfd);
        l->wfd = -1;
    }
}

/* pd__writev_all of v's buffers in calls of at most LG_WRITE_PIECE bytes (a
 * buffer larger than that in several); v is consumed.  The bytes written:
 * all of them, or fewer with errno set. */
static size_t s_writev_pieces(int fd, lg_iov *v) {
    struct iovec *iov = v->iov;
    size_t n = v->n, i = 0, done = 0;
    while (i < n) {
        size_t j = i, sum = 0, w;
        while (j < n && iov[j].iov_len <= LG_WRITE_PIECE - sum)
            sum += iov[j++].iov_len;
        if (j > i) {
            w = pd__writev_all(fd, iov + i, j - i);
            i = j;
        } else { /* buffer i alone is larger: its next piece */
            struct iovec piece = {iov[i].iov_base, LG_WRITE_PIECE};
            sum = LG_WRITE_PIECE;
            w = pd__writev_all(fd, &piece, 1);
            iov[i].iov_base = (char *)iov[i].iov_base + LG_WRITE_PIECE;
            iov[i].iov_len -= LG_WRITE_PIECE;
        }
        done += w;
        if (w != sum) return done;
    }
    return done;
}

/* Writes the record v describes (v consumed), then syncs if asked; on
 * failure truncates back. */
int lg_write_iov(lg_store *l, const char *op, const pd_key *key0, bool dosync,
                 lg_iov *v) {
    char kb[PD__KEYSHORT_MAX];
    const char *ks = key0 ? pd__key_short(key0, kb) : "";
    uint64_t gen = __atomic_load_n(&l->sh->gen, __ATOMIC_SEQ_CST);
    if (l->wfd < 0 || l->wgen != gen) {
        int rc = s_new_segment(l, op, ks);
        if (rc) return rc;
    }
    const char *seg = l->wname;
    uint64_t start = l->wsize;
    size_t n = v->total;
    size_t done = s_writev_pieces(l->wfd, v);
    if (done != n) {
        int e = errno;
        s_undo(l, start);
        return pd__err(&l->base, e == ENOMEM ? PD_ERR_NOMEM : PD_ERR_IO, e,
                       "%s %s: writev(%s/%s) at offset %llu", op, ks, l->path,
                       seg, (unsigned long long)start);
    }
    if (dosync || l->fsync_all) {
        int rc;
        do rc = SYS.fsync(l->wfd);
        while (rc < 0 && errno == EINTR);
        if (rc == 0) msync(l->sh, S_STATE_SIZE, MS_SYNC);
        if (rc < 0) {
            int e = errno;
            s_undo(l, start);
            return pd__err(&l->base, PD_ERR_IO, e, "%s %s: fsync(%s/%s)", op,
                           ks, l->path, seg);
        }
    }
    l->wsize = start + n;
    __atomic_add_fetch(&l->sh->writes, 1, __ATOMIC_SEQ_CST);
    /* Not indexed here: a writer that never reads (a map task) does not
     * pay for an index; a get reads it back at its catch-up. */
    return 0;
}

/* Removes everything in the directory (a temporary store closing). */
typedef struct s_rmctx {
    lg_store *l;
    int rc;
} s_rmctx;

static int s_rm_entry(void *arg, int dfd, const char *n, unsigned char type) {
    (void)type;
    s_rmctx *c = arg;
    if (SYS.unlinkat(dfd, n, 0) < 0 && !c->rc)
        c->rc = pd__err(&c->l->base, PD_ERR_IO, errno, "close: unlink %s/%s",
                        c->l->path, n);
    return 0;
}

int lg_rm_contents(lg_store *l) {
    int fd = s_openat(l->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    s_rmctx c = {l, 0};
    const char *failed = "open";
    if (fd < 0 || pd__dir_each(fd, s_rm_entry, &c, &failed) < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "close: list %s: %s",
                       l->path, failed);
    if (!c.rc && SYS.rmdir(l->path) < 0)
        c.rc = pd__err(&l->base, PD_ERR_IO, errno, "close: rmdir(%s)", l->path);
    return c.rc;
}
