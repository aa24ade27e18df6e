/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* `partd serve`: the CLI verb that runs a ZeroMQ Server (src/cli/serve.c). */
#ifndef PARTD_CLI_SERVE_H
#define PARTD_CLI_SERVE_H

/*
 * Runs `partd serve`.  argv[0] is the verb ("serve"), the options follow:
 * argc and argv as main() has them after the program name.  Serves in the
 * foreground until SIGINT, SIGTERM, the `close` command or the idle
 * timeout.  Prints the addresses clients connect to on standard output, one
 * per line, the first one first, flushed at once; logs on standard error.
 * Returns the exit status: 0 after a clean stop (store flushed, lock
 * released, ipc socket removed), 1 on failure, 2 on a usage error (see
 * exit.h).
 * Installs handlers for SIGINT and SIGTERM while it runs.
 */
int pd_cli_serve(int argc, char **argv);

/* The verb: its options and help, for `partd help serve`. */
extern const struct pd_cli_verb pd_cli_serve_verb;

#endif
