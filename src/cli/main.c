/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * partd: the command-line tool over a File or Log store, or a server.
 *
 *   partd append [--fsync] [-r] [--codec C [--level N]] DIR KEY   (stdin)
 *   partd get [-r] [--codec C [--level N]] DIR KEY               (stdout)
 *   partd keys [-s|--sizes] DIR             one key per line, quoted form
 *   partd delete [-r] DIR KEY...
 *   partd drop DIR
 *   partd repair --codec C [-r] DIR KEY...  drop torn frames
 *   partd serve [--path DIR] [--bind ADDR]... ...          (serve.c)
 *   partd demo [--records N] [--workers W] ...             (demo*.c)
 *   partd help [VERB] | --help | --version
 *
 * append, get, keys, delete and drop take --connect ADDR[,ADDR]...
 * [--timeout S] instead of DIR, to work on a server's store (several
 * addresses: a Fanout over their clients).  A DIR holding partd-log is a
 * Log, any other a File; --store file|log chooses (store.c).
 *   partd stats --connect ADDR[,ADDR]... [--json]   the servers' figures
 *
 * The files: this one picks the verb and prints the overall help; every
 * verb is a pd_cli_verb (opts.h): its options, its help and its run
 * function.  opts.c parses every verb's options (getopt_long) and numbers,
 * and prints usage errors and help; out.c is the buffered output; exit.h
 * the exit statuses; verbs.c the store verbs; serve.c and demo*.c the
 * server and the demo.  Adding a verb is one pd_cli_verb and one row in
 * s_verbs; adding an option is one row in the verb's table of options.
 */
#include "partd/partd.h"
#include "demo.h"
#include "exit.h"
#include "opts.h"
#include "out.h"
#include "serve.h"
#include "verbs.h"

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int s_help_run(const pd_cli_verb *v, int argc, char **argv);

static const pd_cli_opt s_help_opts[] = {
    {'h', "help", NULL, "show help for the verb", false}};

static const pd_cli_verb s_help_verb = {.name = "help",
                                        .run = s_help_run,
                                        .args = "[VERB]",
                                        .summary = "show help, for one VERB",
                                        .opts = s_help_opts,
                                        .nopts = 1};

/* Every verb, in the order the help lists them. */
static const pd_cli_verb *s_verbs[PD_CLI_NSTORE_VERBS + 3];
#define S_NVERBS (sizeof s_verbs / sizeof s_verbs[0])

static void s_init_verbs(void) {
    size_t n = 0;
    for (size_t i = 0; i < PD_CLI_NSTORE_VERBS; i++)
        s_verbs[n++] = pd_cli_store_verbs[i];
    s_verbs[n++] = &pd_cli_serve_verb;
    s_verbs[n++] = &pd_cli_demo_verb;
    s_verbs[n++] = &s_help_verb;
}

static const pd_cli_verb *s_find_verb(const char *name) {
    for (size_t i = 0; i < S_NVERBS; i++)
        if (strcmp(s_verbs[i]->name, name) == 0) return s_verbs[i];
    return NULL;
}

/* ------------------------------------------------------------------ Help */

static void s_usage(pd_cli_out *o) {
    pd_cli_puts(o, "usage:\n");
    for (size_t i = 0; i < S_NVERBS; i++) pd_cli_usage_line(o, s_verbs[i]);
    pd_cli_puts(o, "  partd --help | --version\n");
}

static void s_help_all(pd_cli_out *o) {
    pd_cli_printf(o,
                  "partd %s - an appendable key-value store in a directory: "
                  "a File (compatible\nwith Python partd.File) or a Log "
                  "(append-only segments, for many keys)\n\n",
                  PARTD_VERSION_STRING);
    s_usage(o);
    pd_cli_puts(o, "\nVerbs:\n");
    for (size_t i = 0; i < S_NVERBS; i++)
        pd_cli_printf(o, "  %-8s %s\n", s_verbs[i]->name, s_verbs[i]->summary);
    pd_cli_puts(o, "\nOptions of the store verbs (append, get, keys, delete, "
                   "drop, repair, stats):\n");
    pd_cli_opt_list(o, pd_cli_store_opts, pd_cli_nstore_opts, 0);
    static const pd_cli_opt version = {'V', "version", NULL,
                                       "print the version and exit", false};
    pd_cli_puts(o, "\nOptions of partd itself:\n");
    pd_cli_opt_list(o, &version, 1, 0);
    pd_cli_puts(o,
                "\nserve and demo have options of their own: see `partd help "
                "serve`\nand `partd help demo`.\n\n" PD_CLI_UNITS_HELP);
    pd_cli_puts(o, pd_cli_store_tail);
}

/* A usage error before a verb is known: the message and every verb's
 * usage on stderr. */
static int s_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static int s_usage_error(const char *fmt, ...) {
    static pd_cli_out err = {STDERR_FILENO, 0, 0, {0}};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pd_cli_printf(&err, "partd: %s\n", msg);
    s_usage(&err);
    pd_cli_puts(&err, "Try 'partd --help' for more.\n");
    pd_cli_flush(&err);
    return PD_CLI_EXIT_USAGE;
}

static int s_help_run(const pd_cli_verb *v, int argc, char **argv) {
    pd_cli_parser p;
    pd_cli_parser_init(&p, v, argc, argv);
    const char *val, *name = NULL;
    int id, nargs = 0;
    bool help = false;
    while ((id = pd_cli_next(&p, &val)) != PD_CLI_END) {
        if (id == PD_CLI_BAD) return PD_CLI_EXIT_USAGE;
        if (id == 'h') help = true;
        if (id == PD_CLI_ARG && nargs++ == 0) name = val;
    }
    if (help) return pd_cli_help_exit(v);
    if (nargs > 1)
        return pd_cli_usage(v, "too many arguments (%d given)", nargs);
    if (!name) {
        s_help_all(&pd_cli_stdout);
    } else {
        const pd_cli_verb *verb = s_find_verb(name);
        if (!verb) return pd_cli_usage(v, "unknown verb '%.100s'", name);
        pd_cli_help(&pd_cli_stdout, verb);
    }
    return pd_cli_finish_stdout(v->name, PD_CLI_EXIT_OK);
}

/* ------------------------------------------------------------------ Main */

int main(int argc, char **argv) {
    /* A reader that goes away must give EPIPE, not kill us mid-write. */
    signal(SIGPIPE, SIG_IGN);
    /* A file size limit (ulimit -f) must fail the write with EFBIG, which
     * the store reports naming the path, not kill us mid-write (a Log's
     * compaction at close writes too). */
    signal(SIGXFSZ, SIG_IGN);
    s_init_verbs();

    if (argc < 2) return s_usage_error("missing verb");
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        if (argc > 2) return s_usage_error("--help takes no arguments");
        s_help_all(&pd_cli_stdout);
        return pd_cli_finish_stdout(NULL, PD_CLI_EXIT_OK);
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        if (argc > 2) return s_usage_error("--version takes no arguments");
        pd_cli_printf(&pd_cli_stdout,
                      "partd %s (libpartd %s)\n"
                      "BSD-3-Clause licence, copyright the libpartd authors\n",
                      PARTD_VERSION_STRING, pd_version_string());
        return pd_cli_finish_stdout(NULL, PD_CLI_EXIT_OK);
    }
    const pd_cli_verb *v = s_find_verb(name);
    if (!v) {
        if (name[0] == '-')
            return s_usage_error("unknown option '%.100s'", name);
        return s_usage_error("unknown verb '%.100s'", name);
    }
    return v->run(v, argc - 1, argv + 1);
}
