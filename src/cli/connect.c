/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The --connect servers of the store verbs (connect.h). */
#include "connect.h"
#include "exit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* `list` split at commas into addrs, each a NUL-terminated copy in *buf;
 * *n of them.  Exit code (why on failure). */
static int s_split(const char *list, char **buf, char **addrs, size_t *n,
                   char *why, size_t cap) {
    *n = 0;
    *buf = strdup(list);
    if (!*buf) {
        snprintf(why, cap, "out of memory");
        return PD_CLI_EXIT_FAIL;
    }
    char *p = *buf;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (!*p || *n == PD_CLI_MAX_ADDRS) {
            snprintf(why, cap,
                     !*p ? "--connect '%.200s': an empty address"
                         : "--connect '%.200s': more than 1024 addresses",
                     list);
            free(*buf);
            *buf = NULL;
            return PD_CLI_EXIT_USAGE;
        }
        addrs[(*n)++] = p;
        if (!comma) return PD_CLI_EXIT_OK;
        p = comma + 1;
    }
}

/* The client options: synchronous, with `timeout` if given.  Exit code. */
static int s_opts(const char *timeout, pd_client_opts *o, char *why,
                  size_t cap) {
    *o = (pd_client_opts){0};
    o->flags = PD_CLIENT_SYNC; /* each call reports its own error */
    if (!timeout) return PD_CLI_EXIT_OK;
    char *end;
    errno = 0;
    double sec = strtod(timeout, &end);
    if (errno || end == timeout || *end || !(sec > 0) || sec > 86400.0 * 365) {
        snprintf(why, cap,
                 "--timeout: not a positive number of seconds: "
                 "'%.40s'",
                 timeout);
        return PD_CLI_EXIT_USAGE;
    }
    o->timeout_ms = sec * 1000 < 1 ? 1 : (int)(sec * 1000);
    return PD_CLI_EXIT_OK;
}

int pd_cli_connect(const char *list, const char *timeout, pd_store ***out,
                   size_t *n, char *why, size_t cap) {
    char *buf = NULL;
    char **addrs = malloc(PD_CLI_MAX_ADDRS * sizeof *addrs);
    pd_store **cl = NULL;
    pd_client_opts o;
    *out = NULL;
    *n = 0;
    int rc = PD_CLI_EXIT_FAIL;
    if (!addrs)
        snprintf(why, cap, "out of memory");
    else
        rc = s_split(list, &buf, addrs, n, why, cap);
    if (rc == PD_CLI_EXIT_OK) rc = s_opts(timeout, &o, why, cap);
    if (rc == PD_CLI_EXIT_OK && !(cl = calloc(*n, sizeof *cl))) {
        snprintf(why, cap, "out of memory");
        rc = PD_CLI_EXIT_FAIL;
    }
    for (size_t i = 0; rc == PD_CLI_EXIT_OK && i < *n; i++) {
        if (pd_client_open(&cl[i], addrs[i], &o) != 0) {
            cl[i] = NULL;
            snprintf(why, cap, "%s", pd_errmsg(NULL));
            rc = PD_CLI_EXIT_FAIL;
        }
    }
    if (rc != PD_CLI_EXIT_OK) {
        for (size_t i = 0; cl && i < *n; i++) pd_close(&cl[i]);
        free(cl);
        cl = NULL;
        *n = 0;
    }
    free(addrs);
    free(buf);
    *out = cl;
    return rc;
}
