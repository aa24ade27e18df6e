/*
 * The replaceable system-call table (see internal.h).  Tests swap members
 * to inject EIO, ENOSPC, short writes and EINTR into the File store.
 */
#include "core/internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int s_openat(int dirfd, const char *path, int flags, mode_t mode) {
    return openat(dirfd, path, flags, mode);
}

static const pd__sys s_default = {
    s_openat, write,    pread,    fsync, ftruncate, close,
    mkdirat,  unlinkat, renameat, flock, fstat,     fdopendir,
};

pd__sys pd__sys_table = {
    s_openat, write,    pread,    fsync, ftruncate, close,
    mkdirat,  unlinkat, renameat, flock, fstat,     fdopendir,
};

void pd__sys_reset(void) { pd__sys_table = s_default; }
