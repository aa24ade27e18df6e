/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The one readdir loop (internal.h, "Directories"), for every store that
 * keeps files in a directory.
 */
#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

int pd__dir_each(int dfd, pd__dirent_fn fn, void *arg, const char **failed) {
    DIR *d = pd__sys_table.fdopendir(dfd);
    if (!d) {
        int e = errno;
        pd__sys_table.close(dfd);
        *failed = "opendir";
        errno = e;
        return -1;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = pd__sys_table.readdir(d);
        if (!de) {
            if (errno) {
                *failed = "readdir";
                rc = -1;
            }
            break;
        }
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        unsigned char type = de->d_type;
        struct stat st;
        if (type == DT_UNKNOWN &&
            pd__sys_table.fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) == 0)
            type = IFTODT(st.st_mode);
        rc = fn(arg, dirfd(d), nm, type);
        if (rc) break;
    }
    int e = errno;
    pd__sys_table.closedir(d);
    errno = e;
    return rc;
}
