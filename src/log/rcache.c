/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: read-ahead windows for small extents.  A Log not compacted yet holds
 * a partition as one small extent per batch that wrote it, and the
 * partitions of a batch lie side by side; reading the partitions one after
 * another would cost one pread per extent.  A small extent is instead
 * served from a window: the 128 KiB of its segment from its offset, read
 * once and kept (up to LG_NWIN windows, least recently used replaced), so
 * the next partitions' extents of the same batches are copies.
 *
 * Windows end at the segment's parsed offset (bytes of whole records this
 * handle indexed, which never change while the index stands) and are
 * dropped with the index.  They stop being read when they do not pay: once
 * 4 MiB were read into windows, a new window is read only while the bytes
 * served from windows are at least an eighth of the bytes read into them.
 */
#include "log/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define S_PROBATION (4u << 20) /* window bytes read before judging */
#define S_DECAY (256u << 20)   /* halve the tallies past this */

void lg_win_reset(lg_store *l) {
    for (unsigned i = 0; i < LG_NWIN; i++) l->win[i].len = 0;
}

void lg_win_free(lg_store *l) {
    for (unsigned i = 0; i < LG_NWIN; i++) {
        free(l->win[i].p);
        l->win[i].p = NULL;
        l->win[i].len = 0;
    }
}

/* Reads n bytes at off of fd; the bytes read (short at the end), -1. */
static ssize_t s_pread_some(int fd, unsigned char *p, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = SYS.pread(fd, p + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

int lg_win_read(lg_store *l, uint32_t si, uint64_t off, size_t len, void *dst) {
    if (len > LG_WIN_SMALL || si >= l->nsegs) return 1;
    uint64_t tick = ++l->win_tick;
    lg_win *w = NULL;
    for (unsigned i = 0; i < LG_NWIN; i++) {
        lg_win *c = &l->win[i];
        if (c->len && c->seg == si && off >= c->off &&
            off + len <= c->off + c->len) {
            w = c;
            break;
        }
    }
    if (!w) {
        /* A miss: read a window if they pay. */
        if (l->win_read > S_PROBATION && l->win_read / 8 > l->win_hit) return 1;
        const lg_seg *s = &l->segs[si];
        uint64_t end = off + LG_WIN;
        if (end > s->parsed) end = s->parsed;
        if (end < off + len) return 1;
        w = &l->win[0];
        for (unsigned i = 1; i < LG_NWIN && w->len; i++)
            if (!l->win[i].len || l->win[i].tick < w->tick) w = &l->win[i];
        /* Page-aligned: the kernel copies into a buffer 16 bytes past a
         * page boundary (where malloc puts blocks this big) several times
         * slower (docs/perf-notes.md). */
        if (!w->p && !(w->p = aligned_alloc(4096, LG_WIN))) return 1;
        w->len = 0;
        ssize_t got = s_pread_some(s->fd, w->p, (size_t)(end - off), off);
        /* A failure or a short read: the caller's pread reports it. */
        if (got < (ssize_t)len) return 1;
        w->seg = si;
        w->off = off;
        w->len = (size_t)got;
        l->win_read += (uint64_t)got;
        if (l->win_read > S_DECAY) {
            l->win_read /= 2;
            l->win_hit /= 2;
        }
    }
    w->tick = tick;
    memcpy(dst, w->p + (off - w->off), len);
    l->win_hit += len;
    return 0;
}
