/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The store verbs of `partd`: append, get, keys, delete, drop and repair,
 * over a File or Log store in DIR (store.c tells which) or, with --connect,
 * a server's store (connect.c opens the --connect list).
 *
 * They share one table of options (s_all); each verb takes some of them.
 * The options are parsed (opts.c) into a s_ctx: which were seen, their
 * values, and the positional arguments; the verb's function then runs on
 * it.  Stores are opened through s_open_store, the one place a wrapping
 * option such as --codec stacks its layer.  Every byte printed goes
 * through pd_cli_stdout (out.c): a reader that closes the pipe gives exit
 * 141, quietly (main ignores SIGPIPE).
 */
#include "partd/partd.h"
#include "attempt.h"
#include "connect.h"
#include "exit.h"
#include "opts.h"
#include "out.h"
#include "store.h"
#include "stats.h"
#include "verbs.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- Options */

/* Each option's index in s_all, and its bit in s_ctx.opts. */
enum {
    S_OPT_FSYNC,
    S_OPT_REPR,
    S_OPT_SIZES,
    S_OPT_CODEC,
    S_OPT_LEVEL,
    S_OPT_CONNECT,
    S_OPT_TIMEOUT,
    S_OPT_STORE,
    S_OPT_JSON,
    S_OPT_WRITER,
    S_OPT_ATTEMPT,
    S_OPT_HELP,
    S_NOPTS
};

#define S_BIT(o) (1u << (o))
#define S_LONG(o) (PD_CLI_LONG + (o)) /* the id of a long-only option */

static const pd_cli_opt s_all[S_NOPTS] = {
    [S_OPT_FSYNC] = {S_LONG(S_OPT_FSYNC), "fsync", NULL,
                     "fsync the written file before returning", false},
    [S_OPT_REPR] = {'r', "repr", NULL,
                    "KEY is quoted, as `keys` prints it:\n'a\\x00b', "
                    "('a', 'b')",
                    false},
    [S_OPT_SIZES] = {'s', "sizes", NULL,
                     "print \"<size>\\t<key>\" lines (size in bytes)", false},
    [S_OPT_CODEC] = {S_LONG(S_OPT_CODEC), "codec", "NAME",
                     "values are framed and compressed with NAME: zlib, bz2, "
                     "snappy, blosc (as Python partd's ZLib, BZ2, Snappy, "
                     "Blosc), lz4 or zstd",
                     false},
    [S_OPT_LEVEL] = {S_LONG(S_OPT_LEVEL), "level", "N",
                     "compression level for --codec (default: the codec's)",
                     false},
    [S_OPT_CONNECT] = {S_LONG(S_OPT_CONNECT), "connect", "ADDR[,ADDR]...",
                       "talk to the server at ADDR (partd serve, or Python "
                       "partd.Server) instead of a store DIR: no DIR argument. "
                       "Several addresses, comma-separated: one store spread "
                       "over those servers (a Fanout, docs/fanout.md), each "
                       "key on one of them; the order decides which, so give "
                       "every command the same list in the same order",
                       false},
    [S_OPT_TIMEOUT] = {S_LONG(S_OPT_TIMEOUT), "timeout", "SECONDS",
                       "with --connect: fail after waiting that long for the "
                       "server (default 60)",
                       false},
    [S_OPT_STORE] = {S_LONG(S_OPT_STORE), "store", "KIND", PD_CLI_STORE_HELP,
                     false},
    [S_OPT_JSON] = {S_LONG(S_OPT_JSON), "json", NULL,
                    "print JSON: one object (an array of them, one per "
                    "server, with several addresses)",
                    false},
    [S_OPT_WRITER] = {S_LONG(S_OPT_WRITER), "writer", "W",
                      "append as attempt --attempt of writer W (a flat key: "
                      "the argument's bytes): nothing is visible until the "
                      "attempt commits at the end; if another attempt of W "
                      "committed first, nothing is added and the exit status "
                      "is 3 (a Log, or a server over one)",
                      false},
    [S_OPT_ATTEMPT] = {S_LONG(S_OPT_ATTEMPT), "attempt", "N",
                       "the attempt number for --writer (0 or more)", false},
    [S_OPT_HELP] = {'h', "help", NULL, "show help for the verb", false},
};
const pd_cli_opt *const pd_cli_store_opts = s_all;
const size_t pd_cli_nstore_opts = S_NOPTS;

const char pd_cli_store_tail[] =
    "\n"
    "Options may come before or after the arguments; \"--\" ends them, so\n"
    "a KEY starting with '-' is named as: partd get DIR -- -x\n"
    "A value follows its option as --name=VALUE or --name VALUE; short\n"
    "options may be grouped (-rs); a long option may be shortened to a\n"
    "prefix that no other option of the verb has.\n"
    "\n"
    "Keys:\n"
    "  KEY is the literal bytes of the argument: a flat key.  With -r it is\n"
    "  the quoted form that `keys` prints, so any key can be named:\n"
    "    'text'          a flat key; inside quotes \\\\ \\' \\\" \\t \\n \\r "
    "\\0 and\n"
    "                    \\xHH stand for one byte each, other characters for\n"
    "                    themselves (double quotes work too)\n"
    "    ('a', 'b')      a tuple key of two parts; ('a',) is the key 'a'\n"
    "  The tuple ('a', 'b') and the flat key 'a/b' are different keys.\n"
    "  Any key is stored inside DIR, whatever its bytes (see\n"
    "  docs/file-layout.md); Python partd.File(DIR) reads and writes the\n"
    "  same store for keys made of A-Z a-z 0-9 - _ . ( ) and space.\n"
    "  A Log (docs/log-format.md) is read and written by cpartd.Log(DIR).\n"
    "\n"
    "Exit status:\n"
    "  0    success\n"
    "  1    failure: missing DIR, I/O error, bad -r syntax, key too long;\n"
    "       the reason is on stderr as \"partd: VERB: message\"\n"
    "  2    usage error: unknown verb or option, a bad option value,\n"
    "       missing or extra arguments\n"
    "  3    append --writer: another attempt of the writer committed first\n"
    "       (this one's value was discarded)\n"
    "  141  standard output was closed by its reader (e.g. `| head -c1`);\n"
    "       nothing is printed, as for a process killed by SIGPIPE\n";

/* --------------------------------------------------------------- Verbs */

struct s_verb;

typedef struct s_ctx {
    const struct s_verb *verb;
    unsigned opts;               /* S_BIT(S_OPT_*) of the options seen */
    const char *optval[S_NOPTS]; /* values of the options that take one */
    int argc;                    /* positional arguments */
    char **argv;
} s_ctx;

/* A store verb: pd_cli_verb first, so that its run (s_run) finds the rest
 * from the pointer it is given. */
typedef struct s_verb {
    pd_cli_verb v;
    int (*fn)(s_ctx *ctx);
    int min_args, max_args; /* positional arguments; -1: no limit */
} s_verb;

static int s_run(const pd_cli_verb *v, int argc, char **argv);
static int s_verb_append(s_ctx *ctx);
static int s_verb_get(s_ctx *ctx);
static int s_verb_keys(s_ctx *ctx);
static int s_verb_delete(s_ctx *ctx);
static int s_verb_drop(s_ctx *ctx);
static int s_verb_repair(s_ctx *ctx);
static int s_verb_stats(s_ctx *ctx);

/* The options every store verb takes, and groups of them. */
#define S_COMMON S_BIT(S_OPT_HELP)
#define S_CODEC_OPTS (S_BIT(S_OPT_CODEC) | S_BIT(S_OPT_LEVEL))
#define S_NET_OPTS (S_BIT(S_OPT_CONNECT) | S_BIT(S_OPT_TIMEOUT))
#define S_DIR_OPTS S_BIT(S_OPT_STORE)

static const char s_append_about[] =
    "The value is every byte read from standard input until end of file,\n"
    "binary-safe, applied in one atomic batch.  DIR is created (with its\n"
    "parents) if it is missing, as a File unless --store log.  With --codec\n"
    "the value is stored as one compressed frame (8-byte length, then the\n"
    "payload), as Python partd's compressed layers store it.\n";
static const char s_get_about[] =
    "Writes the exact bytes KEY holds; a key never written is empty.\n"
    "DIR must exist.  With --codec the frames are decoded; corrupt data\n"
    "fails (exit 1) naming the key, and torn frames left by a writer that\n"
    "died mid-append are left out with a warning on stderr (exit 0; see\n"
    "`partd repair`).\n";
static const char s_keys_about[] =
    "Each key is printed in its quoted form, sorted, one per line; that\n"
    "form can be given back to the other verbs with -r.  DIR must exist.\n";
static const char s_stats_about[] =
    "Asks each server (libpartd's `partd serve` only: a Python server has\n"
    "no stats command) for its figures: keys and bytes stored, records\n"
    "appended, requests served per command, memory in use (the Buffer's and\n"
    "the process's resident size), spills, clients and uptime.  Prints\n"
    "`name value` lines, a block per server headed by its address, or JSON\n"
    "with --json (see docs/zmq.md, \"Stats\").\n";
static const char s_stats_tail[] =
    "\n"
    "Exit status:\n"
    "  0    success\n"
    "  1    failure: a server did not answer in time, or is not libpartd's;\n"
    "       the reason is on stderr as \"partd: stats: message\"\n"
    "  2    usage error: unknown option, no --connect, an empty address\n"
    "  141  standard output was closed by its reader\n";
static const char s_repair_about[] =
    "For a store written through --codec: each KEY whose frames include\n"
    "torn ones (cut short by a writer that died mid-append) is replaced,\n"
    "atomically, by its complete frames only.  Prints the number of bytes\n"
    "removed.  A corrupt key (not torn) fails and is left as it is.\n";

/* A row of s_verbs: every store verb takes s_all's options in `opts_`
 * (those in `need_` are required) and -h, and has the same tail in its
 * help. */
#define S_VERB(name_, opts_, need_, args_, summary_, about_)                   \
    {                                                                          \
        .name = name_, .run = s_run, .args = args_, .summary = summary_,       \
        .about = about_, .opts = s_all, .nopts = S_NOPTS,                      \
        .only = (opts_) | S_COMMON | S_DIR_OPTS, .need = need_,                \
        .tail = pd_cli_store_tail                                              \
    }

static const s_verb s_verbs[] = {
    {S_VERB("append",
            S_BIT(S_OPT_FSYNC) | S_BIT(S_OPT_REPR) | S_CODEC_OPTS | S_NET_OPTS |
                S_BIT(S_OPT_WRITER) | S_BIT(S_OPT_ATTEMPT),
            0, "DIR KEY", "append all of standard input to KEY (creates DIR)",
            s_append_about),
     s_verb_append, 1, 2},
    {S_VERB("get", S_BIT(S_OPT_REPR) | S_CODEC_OPTS | S_NET_OPTS, 0, "DIR KEY",
            "write KEY's value to standard output", s_get_about),
     s_verb_get, 1, 2},
    {S_VERB("keys", S_BIT(S_OPT_SIZES) | S_NET_OPTS, 0, "DIR",
            "list the keys that hold data, one per line", s_keys_about),
     s_verb_keys, 0, 1},
    {S_VERB("delete", S_BIT(S_OPT_REPR) | S_NET_OPTS, 0, "DIR KEY...",
            "forget the KEYs (missing keys are fine)", "DIR must exist.\n"),
     s_verb_delete, 1, -1},
    {S_VERB("drop", S_NET_OPTS, 0, "DIR",
            "delete every key; the store stays usable",
            "Keeps DIR and its lock file.  DIR must exist.\n"),
     s_verb_drop, 0, 1},
    {S_VERB("repair", S_BIT(S_OPT_REPR) | S_CODEC_OPTS, S_BIT(S_OPT_CODEC),
            "DIR KEY...", "rewrite KEYs without their torn frames",
            s_repair_about),
     s_verb_repair, 2, -1},
    {{.name = "stats",
      .run = s_run,
      .args = "",
      .summary = "print the figures of the --connect servers",
      .about = s_stats_about,
      .opts = s_all,
      .nopts = S_NOPTS,
      .only = S_BIT(S_OPT_JSON) | S_NET_OPTS | S_COMMON,
      .need = S_BIT(S_OPT_CONNECT),
      .tail = s_stats_tail},
     s_verb_stats,
     0,
     0},
};

const pd_cli_verb *const pd_cli_store_verbs[PD_CLI_NSTORE_VERBS] = {
    &s_verbs[0].v, &s_verbs[1].v, &s_verbs[2].v, &s_verbs[3].v,
    &s_verbs[4].v, &s_verbs[5].v, &s_verbs[6].v};

/* ---------------------------------------------------------- Messages */

static int s_fail(const s_ctx *ctx, const char *msg) {
    pd_cli_errf("partd: %s: %s\n", ctx->verb->v.name, msg);
    return PD_CLI_EXIT_FAIL;
}

#define s_usage(ctx, ...) pd_cli_usage(&(ctx)->verb->v, __VA_ARGS__)

/* ------------------------------------------------------------- Parsing */

/* Parses argv[1..argc) into ctx.  Returns -1 to run the verb (or show its
 * help, with -h), else the exit status of a usage error. */
static int s_parse_args(s_ctx *ctx, int argc, char **argv) {
    const s_verb *v = ctx->verb;
    pd_cli_parser p;
    pd_cli_parser_init(&p, &v->v, argc, argv);
    const char *val;
    int id;
    while ((id = pd_cli_next(&p, &val)) != PD_CLI_END) {
        if (id == PD_CLI_BAD) return PD_CLI_EXIT_USAGE;
        if (id == PD_CLI_ARG) {
            ctx->argv[ctx->argc++] = (char *)val;
            continue;
        }
        for (int o = 0; o < S_NOPTS; o++) {
            if (s_all[o].id != id) continue;
            ctx->opts |= S_BIT(o);
            ctx->optval[o] = val;
        }
    }
    if (ctx->opts & S_BIT(S_OPT_HELP)) return -1;
    if (ctx->argc < v->min_args)
        return s_usage(ctx, "missing arguments (%d given)", ctx->argc);
    if (v->max_args >= 0 && ctx->argc > v->max_args)
        return s_usage(ctx, "too many arguments (%d given)", ctx->argc);
    return -1;
}

static int s_run(const pd_cli_verb *v, int argc, char **argv) {
    s_ctx ctx = {.verb = (const s_verb *)v};
    ctx.argv = calloc((size_t)argc + 1, sizeof(char *));
    if (!ctx.argv) {
        pd_cli_errf("partd: %s: out of memory\n", v->name);
        return PD_CLI_EXIT_FAIL;
    }
    int rc = s_parse_args(&ctx, argc, argv);
    if (rc < 0)
        rc = ctx.opts & S_BIT(S_OPT_HELP) ? pd_cli_help_exit(v)
                                          : ctx.verb->fn(&ctx);
    free(ctx.argv);
    return rc;
}

/* ------------------------------------------------------------- Helpers */

/* The --level value (PD_LEVEL_DEFAULT when absent) into *level; exit code. */
static int s_level_arg(s_ctx *ctx, int *level) {
    *level = PD_LEVEL_DEFAULT;
    const char *text = ctx->optval[S_OPT_LEVEL];
    if (!(ctx->opts & S_BIT(S_OPT_LEVEL))) return PD_CLI_EXIT_OK;
    if (!(ctx->opts & S_BIT(S_OPT_CODEC)))
        return s_usage(ctx, "--level needs --codec");
    long v;
    int rc = pd_cli_opt_int(&ctx->verb->v, "--level", text, INT_MIN + 1001,
                            INT_MAX, &v);
    if (rc == 0) *level = (int)v;
    return rc;
}

/* Splits the positional arguments into the store (DIR, or nothing with
 * --connect) and the keys after it: *dir (NULL with --connect) and *first,
 * the index of the first key.  Checks their number against the verb's
 * nkeys_min..nkeys_max (-1: no limit).  Returns PD_CLI_EXIT_OK or a usage
 * error's exit code. */
static int s_store_args(s_ctx *ctx, int nkeys_min, int nkeys_max,
                        const char **dir, int *first) {
    bool net = ctx->opts & S_BIT(S_OPT_CONNECT);
    if ((ctx->opts & S_BIT(S_OPT_TIMEOUT)) && !net)
        return s_usage(ctx, "--timeout needs --connect");
    if ((ctx->opts & S_BIT(S_OPT_STORE)) && net)
        return s_usage(ctx, "--store is for a DIR: not with --connect");
    *first = net ? 0 : 1;
    *dir = net ? NULL : (ctx->argc > 0 ? ctx->argv[0] : NULL);
    int nkeys = ctx->argc - *first;
    if (!net && ctx->argc == 0)
        return s_usage(ctx, "missing DIR (or --connect ADDR)");
    if (nkeys < nkeys_min) return s_usage(ctx, "missing KEY");
    if (nkeys_max >= 0 && nkeys > nkeys_max)
        return s_usage(ctx, "too many arguments%s",
                       net ? " (with --connect there is no DIR)" : "");
    return PD_CLI_EXIT_OK;
}

/* Clients of the --connect servers (connect.c): *n of them into a
 * malloc'd *out.  Exit code. */
static int s_open_clients(s_ctx *ctx, pd_store ***out, size_t *n) {
    char why[1024];
    const char *timeout =
        (ctx->opts & S_BIT(S_OPT_TIMEOUT)) ? ctx->optval[S_OPT_TIMEOUT] : NULL;
    int rc = pd_cli_connect(ctx->optval[S_OPT_CONNECT], timeout, out, n, why,
                            sizeof why);
    if (rc == PD_CLI_EXIT_USAGE) return s_usage(ctx, "%s", why);
    return rc ? s_fail(ctx, why) : PD_CLI_EXIT_OK;
}

/* The --connect store: a client, or a Fanout over the clients of several
 * addresses (in the order given: it decides where each key lives). */
static int s_open_client(s_ctx *ctx, pd_store **out) {
    pd_store **cl = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = s_open_clients(ctx, &cl, &n);
    if (rc) return rc;
    if (n == 1) {
        *out = cl[0];
    } else if (pd_fanout_open(out, cl, n, 0) != 0) {
        rc = s_fail(ctx, pd_errmsg(NULL));
        for (size_t i = 0; i < n; i++) pd_close(&cl[i]);
    }
    free(cl);
    return rc;
}

/* Opens the store at dir (a File or a Log: --store, else what dir holds)
 * or the --connect server when dir is NULL; `create`: make the directory
 * if it is missing.  With --codec, the store is wrapped in that codec's
 * layer. */
static int s_open_store(s_ctx *ctx, const char *dir, bool create,
                        pd_store **out) {
    int level;
    int rc = s_level_arg(ctx, &level);
    if (rc) return rc;
    pd_cli_store_kind kind = PD_CLI_STORE_AUTO;
    if ((ctx->opts & S_BIT(S_OPT_STORE)) &&
        pd_cli_store_kind_parse(ctx->optval[S_OPT_STORE], &kind) != 0)
        return s_usage(ctx, "--store '%.100s': not file or log",
                       ctx->optval[S_OPT_STORE]);
    pd_store *file = NULL;
    *out = NULL;
    char why[1024];
    if (!dir) {
        rc = s_open_client(ctx, &file);
        if (rc) return rc;
    } else if (pd_cli_open_dir(&file, dir, kind, create, why, sizeof why)) {
        return s_fail(ctx, why);
    }
    if (!(ctx->opts & S_BIT(S_OPT_CODEC))) {
        *out = file;
        return PD_CLI_EXIT_OK;
    }
    if (pd_compress_open(out, &file, ctx->optval[S_OPT_CODEC], level, 0) != 0) {
        int code = pd_errcode(NULL);
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", pd_errmsg(NULL));
        pd_close(&file);
        if (code == PD_ERR_UNSUPPORTED || code == PD_ERR_LIMIT)
            return s_usage(ctx, "%s", msg);
        return s_fail(ctx, msg);
    }
    return PD_CLI_EXIT_OK;
}

/* After a get or repair through --codec: a warning for torn frames. */
static void s_torn_warning(const s_ctx *ctx, const pd_store *s,
                           uint64_t before) {
    uint64_t torn = pd_encode_torn(s);
    if (torn > before)
        pd_cli_errf("partd: %s: warning: %" PRIu64
                    " torn frame(s) left out; last: %s\n",
                    ctx->verb->v.name, torn - before, pd_encode_notice(s));
}

/* Closes the store; a failure turns rc into a failure. */
static int s_close_store(s_ctx *ctx, pd_store **s, int rc) {
    if (*s && pd_close(s) != 0) {
        s_fail(ctx, pd_errmsg(NULL));
        if (rc == PD_CLI_EXIT_OK) rc = PD_CLI_EXIT_FAIL;
    }
    return rc;
}

/* The key named by argument `arg`: its literal bytes, or with -r its parsed
 * quoted form (then *owned is set and must be freed with pd_key_free). */
static int s_key_arg(s_ctx *ctx, const char *arg, pd_key *key, pd_key **owned) {
    *owned = NULL;
    if (!(ctx->opts & S_BIT(S_OPT_REPR))) {
        *key = PD_KEY(arg, strlen(arg));
        return PD_CLI_EXIT_OK;
    }
    if (pd_key_parse(arg, strlen(arg), owned) != 0)
        return s_fail(ctx, pd_errmsg(NULL));
    *key = **owned;
    return PD_CLI_EXIT_OK;
}

/* Reads all of standard input into *data (malloc'd; NULL with *size 0 when
 * empty).  Returns 0 or an errno. */
static int s_read_stdin(char **data, size_t *size) {
    size_t cap = 65536, len = 0;
    struct stat st;
    if (fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t pos = lseek(STDIN_FILENO, 0, SEEK_CUR);
        if (pos >= 0 && st.st_size > pos &&
            (uint64_t)(st.st_size - pos) < SIZE_MAX - 1)
            cap = (size_t)(st.st_size - pos) + 1; /* +1: to see EOF */
    }
    char *buf = malloc(cap);
    if (!buf) return ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap > SIZE_MAX / 2) {
                free(buf);
                return EFBIG;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(STDIN_FILENO, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            return e;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    *data = buf;
    *size = len;
    return 0;
}

/* The arguments of a verb on one key: the store (s_store_args) and the key
 * (s_key_arg). */
static int s_one_key_args(s_ctx *ctx, const char **dir, pd_key *key,
                          pd_key **owned) {
    int first = 0;
    *owned = NULL;
    int rc = s_store_args(ctx, 1, 1, dir, &first);
    return rc ? rc : s_key_arg(ctx, ctx->argv[first], key, owned);
}

/* ----------------------------------------------------------------- Verbs */

static int s_verb_append(s_ctx *ctx) {
    const char *dir = NULL;
    uint64_t attempt = 0;
    bool has_w = ctx->opts & S_BIT(S_OPT_WRITER),
         has_a = ctx->opts & S_BIT(S_OPT_ATTEMPT);
    if (has_w != has_a)
        return s_usage(ctx, "--writer and --attempt go together");
    if (has_a) {
        int rc = pd_cli_opt_num(&ctx->verb->v, "--attempt",
                                ctx->optval[S_OPT_ATTEMPT], PD_CLI_PLAIN, 0,
                                UINT64_MAX, &attempt);
        if (rc) return rc;
        if (!*ctx->optval[S_OPT_WRITER])
            return s_usage(ctx, "--writer: an empty writer");
    }
    pd_key key, *owned = NULL;
    int rc = s_one_key_args(ctx, &dir, &key, &owned);
    if (rc) return rc;
    char *data = NULL;
    size_t size = 0;
    int err = s_read_stdin(&data, &size);
    if (err) {
        char msg[256];
        snprintf(msg, sizeof(msg), "read(stdin): %s", strerror(err));
        pd_key_free(&owned);
        return s_fail(ctx, msg);
    }
    pd_store *s = NULL;
    rc = s_open_store(ctx, dir, true, &s);
    if (rc == PD_CLI_EXIT_OK) {
        pd_bytes val = PD_BYTES(data, size);
        unsigned flags = (ctx->opts & S_BIT(S_OPT_FSYNC)) ? PD_FSYNC : 0;
        char msg[1536];
        if (ctx->opts & S_BIT(S_OPT_WRITER)) {
            rc = pd_cli_append_attempt(s, ctx->optval[S_OPT_WRITER], attempt,
                                       &key, &val, flags, msg, sizeof msg);
            if (rc) s_fail(ctx, msg);
        } else if (pd_append(s, 1, &key, &val, flags) != 0) {
            rc = s_fail(ctx, pd_errmsg(s));
        }
    }
    rc = s_close_store(ctx, &s, rc);
    free(data);
    pd_key_free(&owned);
    return rc;
}

static int s_verb_get(s_ctx *ctx) {
    const char *dir = NULL;
    pd_key key, *owned = NULL;
    int rc = s_one_key_args(ctx, &dir, &key, &owned);
    if (rc) return rc;
    pd_store *s = NULL;
    pd_result *r = NULL;
    rc = s_open_store(ctx, dir, false, &s);
    if (rc == PD_CLI_EXIT_OK && pd_get(s, 1, &key, &r, 0) != 0)
        rc = s_fail(ctx, pd_errmsg(s));
    if (rc == PD_CLI_EXIT_OK && ctx->opts & S_BIT(S_OPT_CODEC))
        s_torn_warning(ctx, s, 0);
    rc = s_close_store(ctx, &s, rc);
    if (rc == PD_CLI_EXIT_OK) {
        pd_bytes v = pd_result_value(r, 0);
        pd_cli_write(&pd_cli_stdout, v.data, v.size);
        rc = pd_cli_finish_stdout(ctx->verb->v.name, rc);
    }
    pd_result_free(&r);
    pd_key_free(&owned);
    return rc;
}

static int s_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct s_line {
    char *repr;
    uint64_t size;
} s_line;

static int s_cmp_line(const void *a, const void *b) {
    return s_cmp_str(&((const s_line *)a)->repr, &((const s_line *)b)->repr);
}

/* Opens the store of a verb that takes no keys, once its arguments are
 * checked: PD_CLI_EXIT_OK with *s set, or the exit code (*s stays NULL). */
static int s_open_keyless(s_ctx *ctx, pd_store **s) {
    const char *dir = NULL;
    int first = 0;
    int rc = s_store_args(ctx, 0, 0, &dir, &first);
    return rc ? rc : s_open_store(ctx, dir, false, s);
}

static int s_verb_keys(s_ctx *ctx) {
    pd_store *s = NULL;
    pd_keylist *kl = NULL;
    int rc = s_open_keyless(ctx, &s);
    if (rc == PD_CLI_EXIT_OK && pd_keys(s, &kl, 0) != 0)
        rc = s_fail(ctx, pd_errmsg(s));
    rc = s_close_store(ctx, &s, rc);
    if (rc != PD_CLI_EXIT_OK) {
        pd_keylist_free(&kl);
        return rc;
    }
    size_t n = pd_keylist_count(kl);
    s_line *lines = calloc(n ? n : 1, sizeof(*lines));
    if (!lines) {
        pd_keylist_free(&kl);
        return s_fail(ctx, "out of memory");
    }
    size_t got = 0;
    for (size_t i = 0; i < n && rc == PD_CLI_EXIT_OK; i++) {
        pd_key k;
        size_t len;
        if (pd_keylist_key(kl, i, &k) != 0 ||
            (len = pd_key_repr(&k, NULL, 0)) == 0) {
            rc = s_fail(ctx, "store returned an invalid key");
            break;
        }
        lines[got].repr = malloc(len + 1);
        if (!lines[got].repr) {
            rc = s_fail(ctx, "out of memory");
            break;
        }
        pd_key_repr(&k, lines[got].repr, len + 1);
        lines[got].size = pd_keylist_size(kl, i);
        got++;
    }
    pd_keylist_free(&kl);
    if (rc == PD_CLI_EXIT_OK) {
        qsort(lines, got, sizeof(*lines), s_cmp_line);
        bool sizes = ctx->opts & S_BIT(S_OPT_SIZES);
        for (size_t i = 0; i < got && !pd_cli_stdout.err; i++) {
            if (sizes)
                pd_cli_printf(&pd_cli_stdout, "%" PRIu64 "\t", lines[i].size);
            pd_cli_puts(&pd_cli_stdout, lines[i].repr);
            pd_cli_write(&pd_cli_stdout, "\n", 1);
        }
        rc = pd_cli_finish_stdout(ctx->verb->v.name, rc);
    }
    for (size_t i = 0; i < got; i++) free(lines[i].repr);
    free(lines);
    return rc;
}

static int s_verb_delete(s_ctx *ctx) {
    const char *dir = NULL;
    int first = 0;
    int rc = s_store_args(ctx, 1, -1, &dir, &first);
    if (rc) return rc;
    size_t n = (size_t)(ctx->argc - first);
    pd_key *keys = calloc(n, sizeof(*keys));
    pd_key **owned = calloc(n, sizeof(*owned));
    if (!keys || !owned) rc = s_fail(ctx, "out of memory");
    for (size_t i = 0; i < n && rc == PD_CLI_EXIT_OK; i++)
        rc = s_key_arg(ctx, ctx->argv[i + (size_t)first], &keys[i], &owned[i]);
    pd_store *s = NULL;
    if (rc == PD_CLI_EXIT_OK) rc = s_open_store(ctx, dir, false, &s);
    if (rc == PD_CLI_EXIT_OK && pd_delete(s, n, keys, 0) != 0)
        rc = s_fail(ctx, pd_errmsg(s));
    rc = s_close_store(ctx, &s, rc);
    for (size_t i = 0; owned && i < n; i++) pd_key_free(&owned[i]);
    free(owned);
    free(keys);
    return rc;
}

static int s_verb_drop(s_ctx *ctx) {
    pd_store *s = NULL;
    int rc = s_open_keyless(ctx, &s);
    if (rc == PD_CLI_EXIT_OK && pd_drop(s, 0) != 0)
        rc = s_fail(ctx, pd_errmsg(s));
    return s_close_store(ctx, &s, rc);
}

static int s_verb_repair(s_ctx *ctx) {
    if (!(ctx->opts & S_BIT(S_OPT_CODEC)))
        return s_usage(ctx, "needs --codec NAME");
    size_t n = (size_t)ctx->argc - 1;
    pd_key *keys = calloc(n, sizeof(*keys));
    pd_key **owned = calloc(n, sizeof(*owned));
    int rc = PD_CLI_EXIT_OK;
    if (!keys || !owned) rc = s_fail(ctx, "out of memory");
    for (size_t i = 0; i < n && rc == PD_CLI_EXIT_OK; i++)
        rc = s_key_arg(ctx, ctx->argv[i + 1], &keys[i], &owned[i]);
    pd_store *s = NULL;
    uint64_t removed = 0;
    if (rc == PD_CLI_EXIT_OK) rc = s_open_store(ctx, ctx->argv[0], false, &s);
    if (rc == PD_CLI_EXIT_OK && pd_encode_repair(s, n, keys, &removed, 0) != 0)
        rc = s_fail(ctx, pd_errmsg(s));
    if (rc == PD_CLI_EXIT_OK) s_torn_warning(ctx, s, 0);
    rc = s_close_store(ctx, &s, rc);
    if (rc == PD_CLI_EXIT_OK) {
        pd_cli_printf(&pd_cli_stdout, "%" PRIu64 "\n", removed);
        rc = pd_cli_finish_stdout(ctx->verb->v.name, rc);
    }
    for (size_t i = 0; owned && i < n; i++) pd_key_free(&owned[i]);
    free(owned);
    free(keys);
    return rc;
}

static int s_verb_stats(s_ctx *ctx) {
    if (!(ctx->opts & S_BIT(S_OPT_CONNECT)))
        return s_usage(ctx, "needs --connect ADDR");
    pd_store **cl = NULL;
    size_t n = 0;
    int rc = s_open_clients(ctx, &cl, &n);
    if (rc) return rc;
    pd_server_stats *st = calloc(n, sizeof *st);
    if (!st) rc = s_fail(ctx, "out of memory");
    for (size_t i = 0; i < n && rc == PD_CLI_EXIT_OK; i++) {
        st[i].size = sizeof st[i];
        if (pd_client_stats(cl[i], &st[i]) != 0)
            rc = s_fail(ctx, pd_errmsg(cl[i]));
    }
    bool json = ctx->opts & S_BIT(S_OPT_JSON);
    for (size_t i = 0; i < n && rc == PD_CLI_EXIT_OK; i++)
        pd_cli_print_stats(pd_client_address(cl[i]), &st[i], json, i == 0,
                           n > 1);
    if (rc == PD_CLI_EXIT_OK) {
        if (json) pd_cli_puts(&pd_cli_stdout, n > 1 ? "]\n" : "\n");
        rc = pd_cli_finish_stdout(ctx->verb->v.name, rc);
    }
    for (size_t i = 0; i < n; i++) rc = s_close_store(ctx, &cl[i], rc);
    free(cl);
    free(st);
    return rc;
}
