/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The command line of every `partd` verb (see opts.h).
 *
 * Parsing is glibc's getopt_long with an optstring that starts with "-:":
 * arguments come back in order (as option 1) without argv being permuted,
 * whatever POSIXLY_CORRECT says, and a missing value is told apart from an
 * unknown option.  getopt_long prints nothing (opterr = 0): the messages
 * are made here, naming the verb and the option as the user wrote it.
 */
#include "opts.h"
#include "exit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_OPTS_WIDTH 79 /* of the help text */

/* --------------------------------------------------------------- Parser */

/* Whether the verb takes opts[i]. */
static bool s_opts_takes(const pd_cli_verb *v, size_t i) {
    return i < PD_CLI_MAX_OPTS && (!v->only || (v->only >> i & 1u));
}

void pd_cli_parser_init(pd_cli_parser *p, const pd_cli_verb *v, int argc,
                        char **argv) {
    memset(p, 0, sizeof *p);
    p->verb = v;
    p->argc = argc;
    p->argv = argv;
    char *s = p->shorts;
    *s++ = '-'; /* arguments in order, as option 1 */
    *s++ = ':'; /* ':' for a missing value, '?' for the rest */
    size_t nl = 0;
    for (size_t i = 0; i < v->nopts; i++) {
        const pd_cli_opt *o = &v->opts[i];
        if (!s_opts_takes(v, i)) continue;
        if (o->id < PD_CLI_LONG) {
            *s++ = (char)o->id;
            if (o->arg) *s++ = ':';
        }
        p->longs[nl].name = o->name;
        p->longs[nl].has_arg = o->arg ? required_argument : no_argument;
        p->longs[nl].flag = NULL;
        p->longs[nl].val = o->id;
        nl++;
    }
    *s = '\0';
    memset(&p->longs[nl], 0, sizeof p->longs[nl]);
    optind = 0; /* glibc: start afresh, also after another parse */
    opterr = 0;
}

static const pd_cli_opt *s_opts_find(const pd_cli_verb *v, int id) {
    for (size_t i = 0; i < v->nopts; i++)
        if (v->opts[i].id == id && s_opts_takes(v, i)) return &v->opts[i];
    return NULL;
}

/* The usage error for what getopt_long refused with '?'. */
static int s_opts_refused(pd_cli_parser *p) {
    const pd_cli_verb *v = p->verb;
    const pd_cli_opt *o = optopt ? s_opts_find(v, optopt) : NULL;
    if (o) { /* a known option: only its long form can be refused */
        pd_cli_usage(v, "option '--%s' takes no value", o->name);
        return PD_CLI_BAD;
    }
    if (optopt) { /* an unknown short option */
        if (optopt > 0x20 && optopt < 0x7f)
            pd_cli_usage(v, "unknown option '-%c'", optopt);
        else
            pd_cli_usage(v, "unknown option (byte %#x after '-')",
                         (unsigned)optopt & 0xffu);
        return PD_CLI_BAD;
    }
    /* An unknown or ambiguous long option: it is argv[optind - 1]. */
    const char *arg =
        optind > 0 && optind <= p->argc ? p->argv[optind - 1] : "";
    const char *name = strncmp(arg, "--", 2) == 0 ? arg + 2 : arg;
    size_t len = strcspn(name, "=");
    char which[256] = "";
    size_t n = 0, used = 0;
    for (size_t i = 0; i < v->nopts; i++) {
        if (!s_opts_takes(v, i) || strncmp(v->opts[i].name, name, len) != 0)
            continue;
        n++;
        int w = snprintf(which + used, sizeof which - used, "%s--%s",
                         used ? ", " : "", v->opts[i].name);
        if (w > 0 && (size_t)w < sizeof which - used) used += (size_t)w;
    }
    if (n > 1)
        pd_cli_usage(v, "option '--%.*s' is ambiguous: %s",
                     (int)(len > 100 ? 100 : len), name, which);
    else
        pd_cli_usage(v, "unknown option '--%.*s'", (int)(len > 100 ? 100 : len),
                     name);
    return PD_CLI_BAD;
}

int pd_cli_next(pd_cli_parser *p, const char **val) {
    *val = NULL;
    if (!p->done) {
        int c = getopt_long(p->argc, p->argv, p->shorts, p->longs, NULL);
        if (c == 1) {
            *val = optarg;
            return PD_CLI_ARG;
        }
        if (c == '?') return s_opts_refused(p);
        if (c == ':') {
            const pd_cli_opt *o = s_opts_find(p->verb, optopt);
            const char *arg =
                optind > 0 && optind <= p->argc ? p->argv[optind - 1] : "";
            if (!o)
                pd_cli_usage(p->verb, "an option needs a value");
            else if (strncmp(arg, "--", 2) == 0 || o->id >= PD_CLI_LONG)
                pd_cli_usage(p->verb, "option '--%s' needs a value: %s",
                             o->name, o->arg);
            else
                pd_cli_usage(p->verb, "option '-%c' needs a value: %s", o->id,
                             o->arg);
            return PD_CLI_BAD;
        }
        if (c != -1) {
            *val = optarg;
            return c;
        }
        p->done = true;
        p->next = optind;
    }
    if (p->next < p->argc) {
        *val = p->argv[p->next++];
        return PD_CLI_ARG;
    }
    return PD_CLI_END;
}

/* ------------------------------------------------------------- Numbers */

int pd_cli_parse_num(const char *text, pd_cli_units u, uint64_t *out) {
    if (!text || *text < '0' || *text > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno) return -1;
    uint64_t mul = 1;
    if (*end && u != PD_CLI_PLAIN) {
        static const char units[] = "kmgt";
        const char *k = strchr(units, end[0] | 0x20);
        if (!end[0] || !k) return -1;
        uint64_t base = u == PD_CLI_SIZE ? 1024 : 1000;
        for (const char *i = units; i <= k; i++) mul *= base;
        end++;
        /* KiB, MiB ...: for sizes only, the same powers of 1024. */
        if (u == PD_CLI_SIZE && (end[0] | 0x20) == 'i' &&
            (end[1] | 0x20) == 'b')
            end += 2;
    }
    if (*end) return -1;
    if (v > UINT64_MAX / mul) return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

int pd_cli_opt_num(const pd_cli_verb *v, const char *opt, const char *text,
                   pd_cli_units u, uint64_t lo, uint64_t hi, uint64_t *out) {
    uint64_t n;
    static const char *const what[] = {
        [PD_CLI_PLAIN] = "a whole number (decimal digits)",
        [PD_CLI_SIZE] = "a size in bytes (digits, optionally followed by K, "
                        "M, G or T, or KiB, MiB, GiB, TiB: powers of 1024)",
        [PD_CLI_COUNT] = "a count (digits, optionally followed by k, M, G or "
                         "T: powers of 1000)"};
    if (pd_cli_parse_num(text, u, &n) != 0)
        return pd_cli_usage(v, "%s '%.100s': not %s", opt, text, what[u]);
    const char *unit = u == PD_CLI_SIZE ? " bytes" : "";
    if (n < lo || n > hi) {
        if (hi == UINT64_MAX)
            return pd_cli_usage(
                v, "%s '%.100s': must be at least %" PRIu64 "%s", opt, text, lo,
                lo == 1 && *unit ? " byte" : unit);
        return pd_cli_usage(
            v, "%s '%.100s': must be from %" PRIu64 " to %" PRIu64 "%s", opt,
            text, lo, hi, unit);
    }
    *out = n;
    return 0;
}

int pd_cli_opt_int(const pd_cli_verb *v, const char *opt, const char *text,
                   long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (errno || end == text || *end)
        return pd_cli_usage(v, "%s '%.100s': not an integer", opt, text);
    if (n < lo || n > hi)
        return pd_cli_usage(v, "%s '%.100s': must be from %ld to %ld", opt,
                            text, lo, hi);
    *out = n;
    return 0;
}

/* ---------------------------------------------------------------- Help */

/* The words of text from column col to S_OPTS_WIDTH, the cursor being at
 * col already; '\n' breaks a line.  Ends with a newline. */
static void s_opts_wrap(pd_cli_out *o, const char *text, size_t col) {
    size_t width = S_OPTS_WIDTH > col + 20 ? S_OPTS_WIDTH - col : 20;
    size_t used = 0;
    while (*text) {
        if (*text == '\n') {
            pd_cli_printf(o, "\n%*s", (int)col, "");
            used = 0;
            text++;
            continue;
        }
        if (*text == ' ') {
            text++;
            continue;
        }
        size_t len = strcspn(text, " \n");
        if (used && used + 1 + len > width) {
            pd_cli_printf(o, "\n%*s", (int)col, "");
            used = 0;
        } else if (used) {
            pd_cli_puts(o, " ");
            used++;
        }
        for (size_t i = 0; i < len; i++) /* PD_CLI_NBSP: a space */
            pd_cli_write(o, text[i] == PD_CLI_NBSP[0] ? " " : text + i, 1);
        used += len;
        text += len;
    }
    pd_cli_puts(o, "\n");
}

void pd_cli_usage_line(pd_cli_out *o, const pd_cli_verb *v) {
    char head[64];
    int indent = snprintf(head, sizeof head, "  partd %s", v->name);
    pd_cli_puts(o, head);
    size_t used = (size_t)indent;
    for (size_t i = 0; i <= v->nopts; i++) {
        char item[128];
        if (i == v->nopts) {
            if (!v->args || !*v->args) break;
            snprintf(item, sizeof item, "%s", v->args);
        } else {
            const pd_cli_opt *op = &v->opts[i];
            if (op->id == 'h' || !s_opts_takes(v, i))
                continue; /* every verb has -h */
            char shrt[8] = "";
            if (op->id < PD_CLI_LONG)
                snprintf(shrt, sizeof shrt, "-%c|", op->id);
            bool need = i < PD_CLI_MAX_OPTS && (v->need >> i & 1u);
            snprintf(item, sizeof item, "%s%s--%s%s%s%s%s", need ? "" : "[",
                     shrt, op->name, op->arg ? " " : "", op->arg ? op->arg : "",
                     need ? "" : "]", op->repeat ? "..." : "");
        }
        size_t len = strlen(item);
        if (used + 1 + len > S_OPTS_WIDTH) {
            pd_cli_printf(o, "\n%*s", indent, "");
            used = (size_t)indent;
        }
        pd_cli_printf(o, " %s", item);
        used += 1 + len;
    }
    pd_cli_puts(o, "\n");
}

static size_t s_opts_label(const pd_cli_opt *op, char *buf, size_t cap) {
    char shrt[8] = "    ";
    if (op->id < PD_CLI_LONG) snprintf(shrt, sizeof shrt, "-%c, ", op->id);
    int n = snprintf(buf, cap, "%s--%s%s%s", shrt, op->name, op->arg ? " " : "",
                     op->arg ? op->arg : "");
    return n < 0 ? 0 : (size_t)n;
}

void pd_cli_opt_list(pd_cli_out *o, const pd_cli_opt *opts, size_t n,
                     unsigned only) {
    char label[128];
    size_t col = 0; /* where the help starts: after the longest label */
    for (size_t i = 0; i < n; i++) {
        if (only && !(only >> i & 1u)) continue;
        size_t len = s_opts_label(&opts[i], label, sizeof label);
        if (len > col) col = len;
    }
    col += 4; /* two spaces before, two after */
    if (col > 30) col = 30;
    for (size_t i = 0; i < n; i++) {
        if (only && !(only >> i & 1u)) continue;
        size_t len = s_opts_label(&opts[i], label, sizeof label);
        pd_cli_printf(o, "  %s", label);
        if (len + 2 + 2 > col)
            pd_cli_printf(o, "\n%*s", (int)col, "");
        else
            pd_cli_printf(o, "%*s", (int)(col - 2 - len), "");
        s_opts_wrap(o, opts[i].help, col);
    }
}

void pd_cli_help(pd_cli_out *o, const pd_cli_verb *v) {
    pd_cli_puts(o, "usage:\n");
    pd_cli_usage_line(o, v);
    pd_cli_printf(o, "\n%s.\n", v->summary);
    if (v->about) pd_cli_puts(o, v->about);
    pd_cli_puts(o, "\nOptions:\n");
    pd_cli_opt_list(o, v->opts, v->nopts, v->only);
    if (v->tail) pd_cli_puts(o, v->tail);
}

int pd_cli_help_exit(const pd_cli_verb *v) {
    pd_cli_help(&pd_cli_stdout, v);
    return pd_cli_finish_stdout(v->name, PD_CLI_EXIT_OK);
}

int pd_cli_usage(const pd_cli_verb *v, const char *fmt, ...) {
    static pd_cli_out err = {STDERR_FILENO, 0, 0, {0}};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err.err = 0;
    pd_cli_printf(&err, "partd: %s: %s\nusage:\n", v->name, msg);
    pd_cli_usage_line(&err, v);
    pd_cli_printf(&err, "Try 'partd help %s' for more.\n", v->name);
    pd_cli_flush(&err);
    return PD_CLI_EXIT_USAGE;
}
