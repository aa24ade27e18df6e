/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The exit statuses of every `partd` verb, in one place (src/cli/exit.h). */
#ifndef PARTD_CLI_EXIT_H
#define PARTD_CLI_EXIT_H

#define PD_CLI_EXIT_OK 0
/* Failure: the reason is on stderr as "partd: VERB: message". */
#define PD_CLI_EXIT_FAIL 1
/* Usage error: unknown verb or option, a bad option value, missing or
 * extra arguments; the message and the usage are on stderr. */
#define PD_CLI_EXIT_USAGE 2
/* `partd append --writer`: another attempt of the writer committed first;
 * this one was discarded. */
#define PD_CLI_EXIT_CONFLICT 3
/* Interrupted by SIGINT, SIGTERM or SIGHUP (`partd demo`): 128 + SIGINT. */
#define PD_CLI_EXIT_INTR 130
/* Standard output closed by its reader (EPIPE): 128 + SIGPIPE, what a shell
 * shows for a process killed by SIGPIPE; nothing is printed. */
#define PD_CLI_EXIT_PIPE 141

#endif
