/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Opening a store directory for the verbs (see store.h).  The kind of an
 * existing directory is read from what it holds, so `partd get DIR KEY`
 * works on a Log as on a File without being told.
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_LOG_MARKER "partd-log" /* docs/log-format.md */

int pd_cli_store_kind_parse(const char *text, pd_cli_store_kind *out) {
    if (strcmp(text, "file") == 0)
        *out = PD_CLI_STORE_FILE;
    else if (strcmp(text, "log") == 0)
        *out = PD_CLI_STORE_LOG;
    else
        return -1;
    return 0;
}

const char *pd_cli_store_kind_name(pd_cli_store_kind k) {
    return k == PD_CLI_STORE_LOG ? "log" : "file";
}

bool pd_cli_is_log_dir(const char *dir) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/" S_LOG_MARKER, dir) >=
        sizeof path)
        return false;
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

pd_cli_store_kind pd_cli_store_kind_of(const char *dir,
                                       pd_cli_store_kind kind) {
    if (kind != PD_CLI_STORE_AUTO) return kind;
    return pd_cli_is_log_dir(dir) ? PD_CLI_STORE_LOG : PD_CLI_STORE_FILE;
}

int pd_cli_open_dir(pd_store **out, const char *dir, pd_cli_store_kind kind,
                    bool create, char *why, size_t cap) {
    *out = NULL;
    bool is_log = pd_cli_is_log_dir(dir);
    if (kind == PD_CLI_STORE_FILE && is_log) {
        snprintf(why, cap,
                 "%s is a Log store (it holds %s), not a File: leave out "
                 "--store file, or give --store log",
                 dir, S_LOG_MARKER);
        return -1;
    }
    int rc;
    if (kind == PD_CLI_STORE_LOG || (kind == PD_CLI_STORE_AUTO && is_log))
        rc = pd_log_open(out, dir, create ? PD_LOG_CREATE : 0);
    else
        rc = pd_file_open(out, dir, create ? PD_FILE_CREATE : 0);
    if (rc != 0) {
        snprintf(why, cap, "%s", pd_errmsg(NULL));
        *out = NULL;
        return -1;
    }
    return 0;
}

int pd_cli_distinct_dirs(const char *const *dirs, size_t n, const char *opt,
                         char *why, size_t cap) {
    struct stat a, b;
    for (size_t i = 0; i < n; i++) {
        if (stat(dirs[i], &a) != 0) {
            snprintf(why, cap, "stat %s: %s", dirs[i], strerror(errno));
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (stat(dirs[j], &b) == 0 && a.st_dev == b.st_dev &&
                a.st_ino == b.st_ino) {
                snprintf(why, cap, "%s %s and %s %s are the same directory",
                         opt, dirs[j], opt, dirs[i]);
                return -1;
            }
    }
    return 0;
}

int pd_cli_open_dirs(pd_store **out, const char *const *dirs, size_t n,
                     pd_cli_store_kind kind, bool create, const char *opt,
                     char *why, size_t cap) {
    *out = NULL;
    if (n == 1) return pd_cli_open_dir(out, dirs[0], kind, create, why, cap);
    pd_store **stores = calloc(n ? n : 1, sizeof *stores);
    if (!stores) {
        snprintf(why, cap, "out of memory opening %zu directories", n);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = pd_cli_open_dir(&stores[i], dirs[i], kind, create, why, cap);
    if (rc == 0) rc = pd_cli_distinct_dirs(dirs, n, opt, why, cap);
    if (rc == 0 && pd_fanout_open(out, stores, n, 0) != 0) {
        snprintf(why, cap, "%s", pd_errmsg(NULL));
        rc = -1;
    }
    if (rc)
        for (size_t i = 0; i < n; i++) pd_close(&stores[i]);
    free(stores);
    return rc;
}
