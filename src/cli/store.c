/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Opening a store directory for the verbs (see store.h).  The kind of an
 * existing directory is read from what it holds, so `partd get DIR KEY`
 * works on a Log as on a File without being told.
 */
#include "store.h"

#include <stdio.h>
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
