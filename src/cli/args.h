/* Option values shared by the CLI's verbs (src/cli/args.c). */
#ifndef PARTD_CLI_ARGS_H
#define PARTD_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>

/* Parses BYTES: decimal digits with an optional k, M, G or T suffix (powers
 * of 1024, either case), e.g. "64M".  0 with *out set, or -1 (not such a
 * number, or past UINT64_MAX); *out is untouched on error. */
int pd_cli_parse_bytes(const char *s, uint64_t *out);

/* The index in names[0..n) of the long option name[0..nlen) (the text
 * after "--", up to any '='), or -1 if it is none of them. */
int pd_cli_find_option(const char *name, size_t nlen, const char *const *names,
                       int n);

#endif
