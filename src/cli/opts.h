/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The command line of every `partd` verb (src/cli/opts.c): the one option
 * parser (getopt_long), the one number parser (sizes and counts with their
 * units), usage errors and the help text, all made from one table of
 * options per verb.
 */
#ifndef PARTD_CLI_OPTS_H
#define PARTD_CLI_OPTS_H

#include "out.h"

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One option of a verb.  Its id is what pd_cli_next returns for it: its
 * short letter ('r' for -r), or PD_CLI_LONG + n for an option with a long
 * name only. */
typedef struct pd_cli_opt {
    int id;
    const char *name; /* the long name, without "--" */
    const char *arg;  /* its value's name ("DIR"); NULL: it takes none */
    const char *help; /* one paragraph (word-wrapped); '\n' breaks a line */
    bool repeat;      /* may be given more than once: "[--bind ADDR]..." */
} pd_cli_opt;

#define PD_CLI_LONG 256

/* In an option's help: a space the text is never wrapped at ("1 GB"). */
#define PD_CLI_NBSP "\037"

/* A verb: its name, what runs it, and what its help says. */
typedef struct pd_cli_verb {
    const char *name;
    /* Runs the verb: argv[0] is its name, the arguments follow.  Returns
     * the exit status (exit.h). */
    int (*run)(const struct pd_cli_verb *v, int argc, char **argv);
    const char *args;    /* the positional arguments, e.g. "DIR KEY" */
    const char *summary; /* one line, for `partd --help` */
    const char *about;   /* what follows the summary in its help, or NULL */
    const pd_cli_opt *opts;
    size_t nopts;
    unsigned only;    /* bit i set: takes opts[i]; 0: takes every one */
    unsigned need;    /* bit i set: opts[i] is required (the usage shows it
                         without brackets) */
    const char *tail; /* what follows the options in its help, or NULL */
} pd_cli_verb;

/* What `partd --help` and the help of serve and demo say of sizes. */
#define PD_CLI_UNITS_HELP                                                      \
    "A size (BYTES) is a whole number of bytes, or one followed by K, M, G\n"  \
    "or T, also written KiB, MiB, GiB, TiB (in any case): powers of 1024,\n"   \
    "so 64M, 64MiB and 67108864 are the same size.\n"

/* -------------------------------------------------------------- Parsing */

enum {
    PD_CLI_END = -1, /* no more arguments */
    PD_CLI_BAD = -2, /* a usage error, already printed */
    PD_CLI_ARG = 1   /* a positional argument */
};

#define PD_CLI_MAX_OPTS 24 /* per verb */

/* The parser: pd_cli_parser_init, then pd_cli_next until PD_CLI_END. */
typedef struct pd_cli_parser {
    const pd_cli_verb *verb;
    int argc, next;
    char **argv;
    bool done; /* getopt_long is done: the rest are arguments */
    char shorts[2 * PD_CLI_MAX_OPTS + 4];
    struct option longs[PD_CLI_MAX_OPTS + 1];
} pd_cli_parser;

/*
 * Starts parsing argv[1..argc) (argv[0] is the verb) for verb v, with
 * glibc's getopt_long: options and arguments may come in any order, "--"
 * ends the options (what follows is arguments, even "-x"), "-" alone is an
 * argument; a value is given as "--name=VALUE" or "--name VALUE" (and
 * "-xVALUE" or "-x VALUE"); short options may be grouped ("-rs"); a long
 * name may be shortened to a prefix that only one option has.  argv is not
 * reordered.
 */
void pd_cli_parser_init(pd_cli_parser *p, const pd_cli_verb *v, int argc,
                        char **argv);

/* The next option's id with *val its value (NULL if it takes none), or
 * PD_CLI_ARG with *val the argument, in the order given; PD_CLI_END at the
 * end.  PD_CLI_BAD after a usage error naming the verb and the option
 * (unknown, ambiguous, missing its value, or given one it does not take)
 * was printed: the verb then exits PD_CLI_EXIT_USAGE. */
int pd_cli_next(pd_cli_parser *p, const char **val);

/* ------------------------------------------------------------- Numbers */

typedef enum pd_cli_units {
    PD_CLI_PLAIN, /* decimal digits only */
    PD_CLI_SIZE,  /* bytes: K, M, G, T or KiB ... TiB, powers of 1024 */
    PD_CLI_COUNT  /* a count: k, M, G, T, powers of 1000 */
} pd_cli_units;

/* Parses text: decimal digits, then the suffix its units allow (any case),
 * nothing else.  0 with *out set, or -1 (not such a number, or past
 * UINT64_MAX); *out is untouched on error. */
int pd_cli_parse_num(const char *text, pd_cli_units u, uint64_t *out);

/* Option `opt`'s value (e.g. "--memory") as a number in [lo, hi] into *out:
 * 0, or PD_CLI_EXIT_USAGE after a usage error naming the verb, the option,
 * the value and what it should be. */
int pd_cli_opt_num(const pd_cli_verb *v, const char *opt, const char *text,
                   pd_cli_units u, uint64_t lo, uint64_t hi, uint64_t *out);

/* The same for a signed decimal integer in [lo, hi]. */
int pd_cli_opt_int(const pd_cli_verb *v, const char *opt, const char *text,
                   long lo, long hi, long *out);

/* ---------------------------------------------------------- Messages */

/* A usage error: "partd: VERB: message", the verb's usage and a pointer
 * to its help on stderr.  Returns PD_CLI_EXIT_USAGE. */
int pd_cli_usage(const pd_cli_verb *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The verb's synopsis: "  partd VERB [OPTION]... ARGS", wrapped. */
void pd_cli_usage_line(pd_cli_out *o, const pd_cli_verb *v);

/* One line (or more) per option opts[i] with bit i in `only` (0: every
 * one): "  -r, --repr  what it does". */
void pd_cli_opt_list(pd_cli_out *o, const pd_cli_opt *opts, size_t n,
                     unsigned only);

/* The verb's help: usage, summary, about, options, tail. */
void pd_cli_help(pd_cli_out *o, const pd_cli_verb *v);

/* Prints the verb's help on standard output; the exit status. */
int pd_cli_help_exit(const pd_cli_verb *v);

#endif
