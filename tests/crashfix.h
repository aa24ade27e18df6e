/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The fixture shared by the Crash suites (tests/test_crash_*.c): values
 * derived from (batch, key, index), so contents are checked exactly, and
 * framed (Encode over File) stores.
 */
#ifndef PARTD_TESTS_CRASHFIX_H
#define PARTD_TESTS_CRASHFIX_H

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { NKEYS = 6, MAXVALS = 4, HDR = 30 };

static PD__UNUSED size_t g_maxval = (size_t)1
                                    << 20; /* smaller under valgrind */

/* ------------------------------------------------------ Derived values */

static PD__UNUSED uint32_t s_hash(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t h = a * 0x9e3779b1u ^ (b + 0x7f4a7c15u) * 0x85ebca77u ^
                 (c + 0x165667b1u) * 0xc2b2ae3du;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    h *= 0x297a2d39u;
    h ^= h >> 15;
    return h;
}

/* Batch b: 1..MAXVALS values, each to a key (keys may repeat within the
 * batch), of 1 KiB..1 MiB (log-uniform). */
typedef struct s_batch {
    int n;
    int key[MAXVALS];
    size_t len[MAXVALS];
} s_batch;

static PD__UNUSED void s_batch_of(uint32_t b, s_batch *out) {
    out->n = 1 + (int)(s_hash(b, 0, 1) % MAXVALS);
    for (int i = 0; i < out->n; i++) {
        out->key[i] = (int)(s_hash(b, (uint32_t)i, 2) % NKEYS);
        size_t base = (size_t)1024 << (s_hash(b, (uint32_t)i, 3) % 11);
        size_t len = base + s_hash(b, (uint32_t)i, 4) % base;
        if (len > ((size_t)1 << 20)) len = (size_t)1 << 20;
        if (len > g_maxval) len = g_maxval;
        out->len[i] = len;
    }
}

/* Value (b, k, i) of `len` bytes: a header naming it, then compressible
 * text with sparse changes that depend on it. */
static PD__UNUSED void s_fill(uint32_t b, int k, int i, size_t len,
                              unsigned char *p) {
    char hdr[64]; /* HDR bytes used: b < 10^10, len < 10^8 */
    snprintf(hdr, sizeof hdr, "B%010u K%02d I%02d L%08zu\n", (unsigned)b, k, i,
             len);
    memcpy(p, hdr, HDR);
    static const char text[] =
        "the quick brown fox jumps over the lazy dog 0123456789\n";
    uint32_t seed = s_hash(b, (uint32_t)k, (uint32_t)i + 100);
    for (size_t n = HDR; n < len; n++) {
        uint32_t x = (uint32_t)n * 2654435761u ^ seed;
        p[n] = x >> 26 == 0 ? (unsigned char)('A' + (n ^ seed) % 26)
                            : (unsigned char)text[(n + seed) % 55];
    }
}

/* Which keys the store uses: "c0".."c5". */
static PD__UNUSED void s_keys(char names[NKEYS][4], pd_key keys[NKEYS]) {
    for (int k = 0; k < NKEYS; k++) {
        snprintf(names[k], 4, "c%d", k);
        keys[k] = PD_KEY_STR(names[k]);
    }
}

/* A fresh store directory with its lock file, as a writer leaves it even
 * when killed before its first append (slow children under valgrind). */
static PD__UNUSED char *s_new_store(void) {
    char *dir = tu_mkdtemp();
    pd_store *f = NULL;
    ck_assert_msg(pd_file_open(&f, dir, 0) == 0, "%s", pd_errmsg(NULL));
    pd_close(&f);
    return dir;
}

static PD__UNUSED const char *const CODECS[] = {"zlib", "zstd"};

#endif
