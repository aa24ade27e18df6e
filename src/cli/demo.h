/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* `partd demo`: a multiprocess shuffle through a store (src/cli/demo.c). */
#ifndef PARTD_CLI_DEMO_H
#define PARTD_CLI_DEMO_H

/*
 * Runs `partd demo`.  argv[0] is the verb ("demo"), the options follow:
 * argc and argv as main() has them after the program name.
 *
 * Forks a `partd serve` (pd_cli_serve) over ipc, unless --direct, and W
 * worker processes that generate records and append them, partitioned,
 * through the server (or straight into a File store under flock); then
 * W reader processes read the partitions back in parallel, check each
 * one's record count and checksum, and the demo
 * prints a summary on standard output (progress and errors on standard
 * error).  Every child is reaped before it returns, and a temporary store
 * directory is removed, also on failure and on SIGINT/SIGTERM (handlers are
 * installed while it runs and restored after).
 *
 * Returns the exit status: 0 when every partition verified, 1 on failure
 * (a worker or the server failed or died, a mismatch, an I/O error; the
 * message names the process or partition), 2 on a usage error, 130 when
 * interrupted by SIGINT or SIGTERM.
 */
int pd_cli_demo(int argc, char **argv);

/* The verb: its options and help, for `partd help demo`. */
extern const struct pd_cli_verb pd_cli_demo_verb;

#endif
