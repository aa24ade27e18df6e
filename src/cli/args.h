/* Option values shared by the CLI's verbs (src/cli/args.c). */
#ifndef PARTD_CLI_ARGS_H
#define PARTD_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>

/* Parses BYTES: decimal digits with an optional k, M, G or T suffix (powers
 * of 1024, either case), e.g. "64M".  0 with *out set, or -1 (not such a
 * number, or past UINT64_MAX); *out is untouched on error. */
int pd_cli_parse_bytes(const char *s, uint64_t *out);

/* argv[*i] is a long option "--NAME" or "--NAME=VALUE": returns the index
 * of NAME in names[0..n), with *val the text after '=', or else argv[*i+1]
 * (*i then advanced past it).  -1 with why (cap bytes) set to the usage
 * error: an unknown option, or one without its value. */
int pd_cli_take_option(int argc, char **argv, int *i, const char *const *names,
                       int n, const char **val, char *why, size_t cap);

#endif
