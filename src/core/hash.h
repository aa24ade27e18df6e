/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Hash tables for every module: uthash (Debian uthash-dev, header-only)
 * with XXH3 from xxhash.h (Debian libxxhash-dev, inlined, so no run-time
 * dependency) instead of uthash's default Jenkins hash, which costs several
 * times more on the short keys a shuffle uses.  Out of memory never exits
 * the process: a failed HASH_ADD leaves the item out with hh.tbl == NULL,
 * which every caller checks.
 */
#ifndef PARTD_HASH_H
#define PARTD_HASH_H

#define XXH_INLINE_ALL
#include <xxhash.h>

#define HASH_FUNCTION(keyptr, keylen, hashv)                                   \
    ((hashv) = (unsigned)XXH3_64bits((keyptr), (size_t)(keylen)))
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#endif
