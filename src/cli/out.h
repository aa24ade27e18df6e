/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* Buffered output of the `partd` CLI (src/cli/out.c). */
#ifndef PARTD_CLI_OUT_H
#define PARTD_CLI_OUT_H

#include <stddef.h>

/* A buffered writer over a file descriptor that remembers the first write
 * error (an errno, 0 if none): after one, the rest is dropped.  Every byte
 * the store verbs and the help print goes through one of these. */
typedef struct pd_cli_out {
    int fd;
    int err;
    size_t len;
    char buf[65536];
} pd_cli_out;

/* Standard output. */
extern pd_cli_out pd_cli_stdout;

/* Each returns o->err: 0, or the errno of the first failed write. */
int pd_cli_write(pd_cli_out *o, const void *data, size_t size);
int pd_cli_puts(pd_cli_out *o, const char *str);
int pd_cli_printf(pd_cli_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int pd_cli_flush(pd_cli_out *o);

/* Writes a message to stderr at once, unbuffered; a failure to is ignored
 * (there is nowhere left to report it). */
void pd_cli_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Flushes pd_cli_stdout and turns its state into the exit status: rc if
 * every write succeeded, PD_CLI_EXIT_PIPE (quietly) when the reader closed
 * the pipe, else PD_CLI_EXIT_FAIL after "partd: VERB: write(stdout): ..."
 * (verb: the verb's name, or NULL). */
int pd_cli_finish_stdout(const char *verb, int rc);

#endif
