/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * writev through the table's write: a test that injects faults into
 * pd__sys_table.write (short writes, EINTR, ENOSPC, a kill mid-write) sets
 * pd__sys_table.writev = fx_writev_by_write too, so the Log's appends (one
 * writev of header and table, values, trailer) meet the same faults.  Each
 * buffer is one write call; a short or failed one ends the call as a
 * short writev does (-1 and errno only when nothing was written).
 */
#ifndef PARTD_TESTS_WRITEVFIX_H
#define PARTD_TESTS_WRITEVFIX_H

#include "core/internal.h"

#include <sys/uio.h>

static inline ssize_t fx_writev_by_write(int fd, const struct iovec *iov,
                                         int cnt) {
    ssize_t total = 0;
    for (int i = 0; i < cnt; i++) {
        if (iov[i].iov_len == 0) continue;
        ssize_t w = pd__sys_table.write(fd, iov[i].iov_base, iov[i].iov_len);
        if (w < 0) return total ? total : -1;
        total += w;
        if ((size_t)w < iov[i].iov_len) break;
    }
    return total;
}

#endif
