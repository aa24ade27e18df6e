/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* Printing a server's figures for `partd stats` (src/cli/stats.c). */
#ifndef PARTD_CLI_STATS_H
#define PARTD_CLI_STATS_H

#include "partd/partd.h"

#include <stdbool.h>

/* Prints st, the figures of the server at addr, on pd_cli_stdout: a block
 * "server ADDR" then "name value" lines (a blank line before each block but
 * the first), or with json an object {"address": ADDR, "name": value, ...}
 * (opening an array when `many`, continuing it when not `first`; the
 * caller closes it).  `first`: the first server printed. */
void pd_cli_print_stats(const char *addr, const pd_server_stats *st, bool json,
                        bool first, bool many);

#endif
