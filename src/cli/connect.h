/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The --connect servers of the store verbs (src/cli/connect.c): the
 * comma-separated address list opened as clients.
 */
#ifndef PARTD_CLI_CONNECT_H
#define PARTD_CLI_CONNECT_H

#include "partd/partd.h"

#include <stddef.h>

/* At most this many addresses in one --connect list. */
#define PD_CLI_MAX_ADDRS 1024

/* Clients of the servers in `list` (addresses separated by commas, none
 * empty), in its order, each synchronous and, when `timeout` is not NULL,
 * with that --timeout (seconds, text): *n of them into a malloc'd *out.
 * PD_CLI_EXIT_OK; or PD_CLI_EXIT_USAGE (a bad list or timeout) or
 * PD_CLI_EXIT_FAIL (a client could not be opened, out of memory) with the
 * reason in why (cap bytes) and nothing left open. */
int pd_cli_connect(const char *list, const char *timeout, pd_store ***out,
                   size_t *n, char *why, size_t cap);

#endif
