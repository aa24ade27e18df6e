/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: the commit log `commits` (docs/log-format.md, "Attempts"), as
 * committers read and write it under its flock(LOCK_EX): the table of
 * winners (writer -> first committed attempt), a torn tail cut, a salvaging
 * rewrite; and the marker's move to format version 2.
 */
#include "log/attempt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* --------------------------------------------------------- Commit log */

void lg_won_clear(struct lg_att *a) {
    lg_won *w, *tmp;
    HASH_ITER(hh, a->won, w, tmp) {
        HASH_DEL(a->won, w);
        free(w);
    }
    a->cl_off = 0;
}

void lg_att_dropped(lg_store *l) {
    SYS.unlinkat(l->dirfd, LG_COMMITS, 0);
    if (l->att) lg_won_clear(l->att);
}

lg_won *lg_won_find(struct lg_att *a, const unsigned char *pk, size_t len) {
    lg_won *w = NULL;
    HASH_FIND(hh, a->won, pk, len, w);
    return w;
}

int lg_won_add(struct lg_att *a, const unsigned char *pk, size_t len,
               uint64_t attempt) {
    if (lg_won_find(a, pk, len)) return 0; /* the first one won */
    lg_won *w = malloc(sizeof *w + len);
    if (!w) return PD_ERR_NOMEM;
    w->attempt = attempt;
    w->len = len;
    memcpy(w->pk, pk, len);
    HASH_ADD_KEYPTR(hh, a->won, w->pk, w->len, w);
    if (!w->hh.tbl) {
        free(w);
        return PD_ERR_NOMEM;
    }
    return 0;
}

/* A whole, valid commit record at p[0..n)?  Its length, or 0. */
static uint64_t s_valid_commit(const unsigned char *p, uint64_t n,
                               uint64_t base) {
    lg_hdr h;
    if (n < 2 * LG_HDR || lg_hdr_parse(p, &h) || h.type != LG_COMMIT ||
        lg_rec_len(&h) > n || h.seq > base)
        return 0;
    lg_tags t;
    uint64_t len = lg_rec_len(&h);
    if (XXH3_64bits(p + LG_HDR, h.table_len) != h.table_hash ||
        memcmp(p, p + len - LG_HDR, LG_HDR) != 0 ||
        lg_tags_get(&h, p + LG_HDR, &t))
        return 0;
    return len;
}

int lg_att_salvage(lg_store *l, const char *op, uint64_t base) {
    int fd = SYS.openat(l->dirfd, LG_COMMITS, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct stat st;
    unsigned char *p = NULL, *q = NULL;
    int rc = 0;
    if (SYS.fstat(fd, &st) < 0) {
        rc = pd__err(&l->base, PD_ERR_IO, errno, "%s: fstat(%s/%s)", op,
                     l->path, LG_COMMITS);
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size, kept = 0;
    p = malloc(size ? size : 1);
    q = malloc(size ? size : 1);
    if (!p || !q) {
        rc = pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: %s/%s", op, l->path,
                     LG_COMMITS);
        goto out;
    }
    if (lg_pread_all(fd, p, size, 0)) {
        rc = pd__err(&l->base, PD_ERR_IO, errno, "%s: read %s/%s", op, l->path,
                     LG_COMMITS);
        goto out;
    }
    for (uint64_t at = 0; at < size;) {
        uint64_t len = s_valid_commit(p + at, size - at, base);
        if (!len) {
            at++;
            continue;
        }
        memcpy(q + kept, p + at, len);
        kept += len;
        at += len;
    }
    if (kept == size) goto out; /* nothing damaged */
    SYS.close(fd);
    fd = -1;
    if (lg_put_file(l, LG_COMMITS, q, kept)) {
        rc = pd__err(&l->base, PD_ERR_IO, errno, "%s: rewrite %s/%s", op,
                     l->path, LG_COMMITS);
    } else {
        SYS.fsync(l->dirfd);
        if (l->att) lg_won_clear(l->att);
        __atomic_add_fetch(&l->sh->created, 1, __ATOMIC_SEQ_CST);
    }
out:
    if (fd >= 0) SYS.close(fd);
    free(p);
    free(q);
    return rc;
}

/* Reads the commits not seen yet from the commit log (fd, locked
 * exclusively) into the table of winners; a torn tail is cut. */
int lg_cl_scan(lg_store *l, int fd, const char *op) {
    struct lg_att *a = l->att;
    struct stat st;
    if (SYS.fstat(fd, &st) < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: fstat(%s/%s)", op,
                       l->path, LG_COMMITS);
    uint64_t gen = __atomic_load_n(&l->sh->gen, __ATOMIC_SEQ_CST);
    uint64_t size = (uint64_t)st.st_size;
    if (gen != a->cl_gen || st.st_ino != a->cl_ino || st.st_dev != a->cl_dev ||
        size < a->cl_off) {
        lg_won_clear(a);
        a->cl_gen = gen;
        a->cl_ino = st.st_ino;
        a->cl_dev = st.st_dev;
    }
    uint64_t at = a->cl_off;
    pd__buf_clear(&l->rbuf);
    while (at < size) {
        unsigned char hb[LG_HDR];
        lg_hdr h;
        int rc = size - at < LG_HDR ? 1 : lg_pread_all(fd, hb, LG_HDR, at);
        if (rc < 0)
            return pd__err(&l->base, PD_ERR_IO, errno, "%s: pread(%s/%s)", op,
                           l->path, LG_COMMITS);
        bool torn = rc == 1;
        if (!torn) {
            if (lg_hdr_parse(hb, &h) || h.type != LG_COMMIT)
                return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                               "%s: %s/%s: bad commit record at offset %llu "
                               "(pd_log_compact with PD_LOG_SALVAGE drops it)",
                               op, l->path, LG_COMMITS, (unsigned long long)at);
            torn = at + lg_rec_len(&h) > size;
        }
        if (torn) {
            /* A committer died mid-write: its commit never returned. */
            if (SYS.ftruncate(fd, (off_t)at) < 0)
                return pd__err(&l->base, PD_ERR_IO, errno,
                               "%s: cut the torn tail of %s/%s at %llu", op,
                               l->path, LG_COMMITS, (unsigned long long)at);
            l->torn++;
            snprintf(l->notice, sizeof l->notice,
                     "log: cut a torn commit record of %llu bytes at offset "
                     "%llu of %s/%s (its committer is gone)",
                     (unsigned long long)(size - at), (unsigned long long)at,
                     l->path, LG_COMMITS);
            size = at;
            break;
        }
        pd__buf_clear(&l->rbuf);
        if (pd__buf_reserve(&l->rbuf, h.table_len))
            return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: commit log",
                           op);
        rc = lg_pread_all(fd, l->rbuf.p, h.table_len, at + LG_HDR);
        if (rc)
            return pd__err(&l->base, PD_ERR_IO, rc < 0 ? errno : EIO,
                           "%s: pread(%s/%s)", op, l->path, LG_COMMITS);
        lg_tags t;
        if (XXH3_64bits(l->rbuf.p, h.table_len) != h.table_hash ||
            lg_tags_get(&h, l->rbuf.p, &t))
            return pd__err(&l->base, PD_ERR_CORRUPT, 0,
                           "%s: %s/%s: bad commit record at offset %llu "
                           "(pd_log_compact with PD_LOG_SALVAGE drops it)",
                           op, l->path, LG_COMMITS, (unsigned long long)at);
        if (lg_won_add(a, t.wpk, t.wlen, lg_le64(t.tag)))
            return pd__err(&l->base, PD_ERR_NOMEM, ENOMEM, "%s: commit log",
                           op);
        at += lg_rec_len(&h);
    }
    a->cl_off = at;
    return 0;
}

/* Opens the commit log and locks it exclusively: 0, 1 when it does not
 * exist (create false), or an error. */
int lg_cl_open(lg_store *l, bool create, int *fdp, const char *op) {
    int fd = SYS.openat(l->dirfd, LG_COMMITS,
                        O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0 && errno == ENOENT && create) {
        fd = SYS.openat(l->dirfd, LG_COMMITS,
                        O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC |
                            O_NOFOLLOW,
                        0666);
        if (fd >= 0) /* readers list the directory again */
            __atomic_add_fetch(&l->sh->created, 1, __ATOMIC_SEQ_CST);
        else if (errno == EEXIST)
            fd = SYS.openat(l->dirfd, LG_COMMITS,
                            O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0);
    }
    if (fd < 0 && errno == ENOENT && !create) return 1;
    if (fd < 0)
        return pd__err(&l->base, PD_ERR_IO, errno, "%s: open %s/%s", op,
                       l->path, LG_COMMITS);
    int rc;
    do rc = SYS.flock(fd, LOCK_EX);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        int e = errno;
        SYS.close(fd);
        return pd__err(&l->base, PD_ERR_IO, e, "%s: flock(%s/%s)", op, l->path,
                       LG_COMMITS);
    }
    *fdp = fd;
    return 0;
}

/* Format version 2 in the marker before the first attempt record, so a
 * library that only knows version 1 refuses the store instead of reading
 * attempt records as damage. */
int lg_upgrade(lg_store *l, const char *op) {
    struct lg_att *a = l->att;
    if (a->v2) return 0;
    for (int pass = 0; pass < 2; pass++) {
        unsigned char m[LG_MARKER_SIZE];
        int fd = SYS.openat(l->dirfd, LG_MARKER, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
            return pd__err(&l->base, PD_ERR_IO, errno, "%s: open %s/%s", op,
                           l->path, LG_MARKER);
        int rc = lg_pread_all(fd, m, sizeof m, 0);
        SYS.close(fd);
        if (rc)
            return pd__err(&l->base, rc < 0 ? PD_ERR_IO : PD_ERR_CORRUPT,
                           rc < 0 ? errno : 0, "%s: read %s/%s", op, l->path,
                           LG_MARKER);
        if (m[8] >= 2) {
            a->v2 = true;
            return 0;
        }
        if (pass == 0) {
            rc = lg_flock(l, LOCK_EX); /* then read it again */
            if (rc) return rc;
            continue;
        }
        m[8] = 2;
        if (lg_put_file(l, LG_MARKER, m, sizeof m))
            return pd__err(&l->base, PD_ERR_IO, errno,
                           "%s: write %s/%s (format version 2)", op, l->path,
                           LG_MARKER);
        SYS.fsync(l->dirfd);
        a->v2 = true;
    }
    return 0;
}
