/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Opening a store directory for every `partd` verb (src/cli/store.c): a
 * File or a Log, told apart by the Log's marker file (partd-log), or as
 * --store KIND says.
 */
#ifndef PARTD_CLI_STORE_H
#define PARTD_CLI_STORE_H

#include "partd/partd.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum pd_cli_store_kind {
    PD_CLI_STORE_AUTO, /* what DIR holds; a new DIR becomes a File */
    PD_CLI_STORE_FILE,
    PD_CLI_STORE_LOG
} pd_cli_store_kind;

/* The help of --store KIND, shared by the verbs that take it. */
#define PD_CLI_STORE_HELP                                                      \
    "the kind of store in DIR: file (one file per key) or log (append-only "   \
    "segments, one per writer: for many keys).  Default: a Log if DIR holds "  \
    "its marker file partd-log, else a File"

/* "file" or "log" into *out: 0, or -1 for anything else. */
int pd_cli_store_kind_parse(const char *text, pd_cli_store_kind *out);

/* "file" or "log". */
const char *pd_cli_store_kind_name(pd_cli_store_kind k);

/* Whether dir holds a Log's marker file. */
bool pd_cli_is_log_dir(const char *dir);

/* The kind of store dir is, or would become, opened as `kind`. */
pd_cli_store_kind pd_cli_store_kind_of(const char *dir, pd_cli_store_kind kind);

/*
 * Opens the store in dir as `kind` (AUTO: see pd_cli_store_kind_of);
 * `create`: make dir (and its parents) if it is missing.  A File asked for
 * on a Log's directory is refused (it would store keys among the Log's
 * segments).  0, or -1 with why (naming dir) filled.
 */
int pd_cli_open_dir(pd_store **out, const char *dir, pd_cli_store_kind kind,
                    bool create, char *why, size_t cap);

/* Checks that no two of dirs[0..n) are the same directory (their two
 * stores would wait for each other's lock).  0, or -1 with why filled:
 * "OPT A and OPT B are the same directory" (opt: the option that named
 * them, "--path"), or a directory that cannot be stat'ed. */
int pd_cli_distinct_dirs(const char *const *dirs, size_t n, const char *opt,
                         char *why, size_t cap);

/* Opens the stores in dirs[0..n) (n >= 1) as pd_cli_open_dir does: the one
 * store, or a Fanout over them in that order once pd_cli_distinct_dirs
 * agrees.  0, or -1 with why filled (and nothing left open). */
int pd_cli_open_dirs(pd_store **out, const char *const *dirs, size_t n,
                     pd_cli_store_kind kind, bool create, const char *opt,
                     char *why, size_t cap);

#endif
