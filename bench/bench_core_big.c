/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_core, section 1: 4 MiB values appended to a File store, beside
 * sequential write() of the same blocks.
 */
#include "bench_core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * 16 keys x 4 appends of 4 MiB (256 MiB), 16 keys per call.  The values come
 * from 16 distinct 4 MiB blocks (value (round r, key k) is block (r + k) % 16)
 * so neither side reads one cache-hot block.
 *
 * Floor: write() of the same 4 MiB blocks, in the same order, into one
 * already-open file: the page cache's sequential write bandwidth, the most a
 * store of files can reach.
 */
typedef struct s_big {
    unsigned char **blk;
    size_t nblk;
    char (*names)[16];
    pd_key *keys;
    pd_bytes *vals; /* big_rounds * big_keys */
} s_big;

static s_big bg;

void bc_big_init(void) {
    bg.nblk = 16;
    bg.blk = bc_xmalloc(bg.nblk * sizeof *bg.blk);
    for (size_t b = 0; b < bg.nblk; b++) {
        bg.blk[b] = bc_xmalloc(cfg.big_size);
        bc_fill(bg.blk[b], cfg.big_size, 1000 + b);
    }
    bg.names = bc_xmalloc(cfg.big_keys * sizeof *bg.names);
    bg.keys = bc_xmalloc(cfg.big_rounds * cfg.big_keys * sizeof *bg.keys);
    bg.vals = bc_xmalloc(cfg.big_rounds * cfg.big_keys * sizeof *bg.vals);
    for (size_t k = 0; k < cfg.big_keys; k++)
        snprintf(bg.names[k], sizeof bg.names[k], "big%02u",
                 (unsigned)(k % 100));
    for (size_t r = 0; r < cfg.big_rounds; r++)
        for (size_t k = 0; k < cfg.big_keys; k++) {
            size_t i = r * cfg.big_keys + k;
            bg.keys[i] = PD_KEY(bg.names[k], strlen(bg.names[k]));
            bg.vals[i] = PD_BYTES(bg.blk[(r + k) % bg.nblk], cfg.big_size);
        }
}

void bc_big_free(void) {
    for (size_t b = 0; b < bg.nblk; b++) free(bg.blk[b]);
    free(bg.blk);
    free(bg.names);
    free(bg.keys);
    free(bg.vals);
}

double bc_big_bytes(void) {
    return (double)cfg.big_rounds * (double)cfg.big_keys * (double)cfg.big_size;
}

static void s_floor_seqwrite(bool record) {
    char dir[PATH_MAX], path[PATH_MAX];
    if (bc_mkdtemp(dir, sizeof dir)) {
        bc_fail(R_FLOOR_SEQWRITE, "mkdtemp in %s: %s", cfg.dir,
                strerror(errno));
        return;
    }
    int fd = -1;
    if (bc_join(path, sizeof path, dir, "seq") == 0)
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        bc_fail(R_FLOOR_SEQWRITE, "open(%s): %s", path, strerror(errno));
        bc_rmtree(dir);
        return;
    }
    size_t n = cfg.big_rounds * cfg.big_keys;
    double t0 = bench_now();
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = bg.vals[i].data;
        size_t left = cfg.big_size;
        while (left > 0) { /* large writes may legally be short */
            ssize_t w = write(fd, p, left);
            if (w <= 0) {
                bc_fail(R_FLOOR_SEQWRITE, "write(%s): %s", path,
                        w < 0 ? strerror(errno) : "wrote nothing");
                goto out;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    double t = bench_now() - t0;
    if (record) bc_add(R_FLOOR_SEQWRITE, bc_big_bytes() / t / 1e9);
out:
    close(fd);
    bc_rmtree(dir); /* drop the pages: the next round starts alike */
}

static void s_file_big(bool record, bool check) {
    pd_store *f = bc_open_file(R_FILE_APPEND_4M, false);
    if (!f) return;
    double t0 = bench_now();
    for (size_t r = 0; r < cfg.big_rounds; r++) {
        size_t i = r * cfg.big_keys;
        if (pd_append(f, cfg.big_keys, &bg.keys[i], &bg.vals[i], 0)) {
            bc_fail(R_FILE_APPEND_4M, "pd_append: %s", pd_errmsg(f));
            pd_close(&f);
            return;
        }
    }
    double t = bench_now() - t0;
    if (record) bc_add(R_FILE_APPEND_4M, bc_big_bytes() / t / 1e9);
    if (check) { /* first round: check one key's size */
        pd_result *res = NULL;
        if (pd_get(f, 1, &bg.keys[0], &res, 0) ||
            pd_result_total(res) != (uint64_t)cfg.big_rounds * cfg.big_size)
            bc_fail(R_FILE_APPEND_4M, "verify: key %s has the wrong size",
                    bg.names[0]);
        pd_result_free(&res);
    }
    if (pd_close(&f)) /* removes the directory: the pages go with it */
        bc_fail(R_FILE_APPEND_4M, "pd_close: %s", pd_errmsg(NULL));
}

/* One round; the order alternates so neither side always runs first. */
void bc_big_round(int round, bool record, bool check) {
    for (int pass = 0; pass < 2; pass++) {
        if ((pass + round) % 2 == 0) {
            if (bc_ok(R_FLOOR_SEQWRITE)) s_floor_seqwrite(record);
        } else {
            if (bc_ok(R_FILE_APPEND_4M)) s_file_big(record, check);
        }
    }
}
