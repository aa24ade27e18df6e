/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The replaceable system-call table (see internal.h).  Tests swap members
 * to inject EIO, ENOSPC, short writes and EINTR into the File store.
 */
#include "core/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* open and openat are variadic in libc; the table always passes a mode. */
static int s_openat(int dirfd, const char *path, int flags, mode_t mode) {
    return openat(dirfd, path, flags, mode);
}

static int s_open(const char *path, int flags, mode_t mode) {
    return open(path, flags, mode);
}

/* glibc's getrlimit takes an enum under _GNU_SOURCE. */
static int s_getrlimit(int resource, struct rlimit *rl) {
    return getrlimit(resource, rl);
}

#define S_DEFAULTS                                                             \
    {                                                                          \
        .openat = s_openat, .write = write, .writev = writev, .pread = pread,  \
        .preadv = preadv, .fsync = fsync, .ftruncate = ftruncate,              \
        .close = close, .mkdirat = mkdirat, .unlinkat = unlinkat,              \
        .renameat = renameat, .flock = flock, .fstat = fstat,                  \
        .fstatat = fstatat, .open = s_open, .mkdir = mkdir, .rmdir = rmdir,    \
        .realpath = realpath, .mkdtemp = mkdtemp, .fdopendir = fdopendir,      \
        .readdir = readdir, .closedir = closedir, .getrlimit = s_getrlimit,    \
        .clock_gettime = clock_gettime,                                        \
    }

static const pd__sys s_default = S_DEFAULTS;

pd__sys pd__sys_table = S_DEFAULTS;

void pd__sys_reset(void) { pd__sys_table = s_default; }

size_t pd__write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    size_t done = 0;
    while (done < n) {
        ssize_t w = pd__sys_table.write(fd, c + done, n - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            return done;
        }
        if (w == 0) {
            errno = EIO;
            return done;
        }
        done += (size_t)w;
    }
    return done;
}

/* Moves *iov (of *n buffers) past `done` bytes: past the buffers done
 * whole and into the one done in part, then past empty ones. */
static void s_iov_skip(struct iovec **iov, size_t *n, size_t done) {
    struct iovec *v = *iov;
    while (*n && done >= v->iov_len) {
        done -= v->iov_len;
        v++, (*n)--;
    }
    if (*n) {
        v->iov_base = (char *)v->iov_base + done;
        v->iov_len -= done;
    }
    while (*n && v->iov_len == 0) v++, (*n)--;
    *iov = v;
}

/* The system call's count for n buffers: at most IOV_MAX a call. */
static int s_iov_cnt(size_t n) { return n > IOV_MAX ? IOV_MAX : (int)n; }

size_t pd__writev_all(int fd, struct iovec *iov, size_t n) {
    size_t done = 0;
    s_iov_skip(&iov, &n, 0);
    while (n) {
        ssize_t w = pd__sys_table.writev(fd, iov, s_iov_cnt(n));
        if (w < 0) {
            if (errno == EINTR) continue;
            return done;
        }
        if (w == 0) {
            errno = EIO;
            return done;
        }
        done += (size_t)w;
        s_iov_skip(&iov, &n, (size_t)w);
    }
    return done;
}

size_t pd__preadv_all(int fd, struct iovec *iov, size_t n, uint64_t off) {
    size_t done = 0;
    s_iov_skip(&iov, &n, 0);
    while (n) {
        ssize_t r =
            pd__sys_table.preadv(fd, iov, s_iov_cnt(n), (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return done;
        }
        if (r == 0) { /* the end of the file */
            errno = 0;
            return done;
        }
        done += (size_t)r;
        s_iov_skip(&iov, &n, (size_t)r);
    }
    return done;
}
