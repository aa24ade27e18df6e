/*
 * partd: the command-line tool over a File store, or a server.
 *
 *   partd append [--fsync] [-r] [--codec C [--level N]] DIR KEY   (stdin)
 *   partd get [-r] [--codec C [--level N]] DIR KEY               (stdout)
 *   partd keys [-s|--sizes] DIR             one key per line, quoted form
 *   partd delete [-r] DIR KEY...
 *   partd drop DIR
 *   partd repair --codec C [-r] DIR KEY...  drop torn frames
 *   partd serve [--path DIR] [--bind ADDR]... ...          (src/cli/serve.c)
 *   partd help [VERB] | --help | --version
 *
 * append, get, keys, delete and drop take --connect ADDR [--timeout S]
 * instead of DIR, to work on a server's store.
 *
 * Structure: a table of verbs (s_verbs) and a table of options (s_opts).
 * Each verb names the options it accepts (a bit set), its argument counts and
 * its help text; s_parse_args does the option parsing for all of them and
 * hands the verb a s_ctx with the options seen and the positional arguments.
 * Adding a verb (serve, bench, demo, ...) is one s_verb_* function plus one
 * row in s_verbs; adding an option (--codec NAME, ...) is one row in s_opts
 * (with has_arg set, its value lands in ctx->optval[]) and its bit in the
 * verbs that take it.  Stores are opened through s_open_store, the one place
 * a wrapping option such as --codec would stack its layer.
 *
 * Exit codes: 0 success, 1 failure (message "partd: VERB: reason" on
 * stderr), 2 usage error (usage on stderr), 141 stdout closed by its reader
 * (EPIPE; quiet, as a shell reports a process killed by SIGPIPE).  SIGPIPE
 * is ignored so that the tool never dies from it; every write is checked.
 */
#include "partd/partd.h"
#include "demo.h"
#include "serve.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_EXIT_OK 0
#define S_EXIT_FAIL 1
#define S_EXIT_USAGE 2
#define S_EXIT_PIPE 141 /* 128 + SIGPIPE, what a shell shows for `cat` */

/* ------------------------------------------------------------- Options */

enum {
    S_OPT_HELP,
    S_OPT_FSYNC,
    S_OPT_REPR,
    S_OPT_SIZES,
    S_OPT_CODEC,
    S_OPT_LEVEL,
    S_OPT_CONNECT,
    S_OPT_TIMEOUT,
    S_NOPTS
};

#define S_BIT(o) (1u << (o))

typedef struct s_opt {
    char short_name;       /* 0: no short form */
    const char *long_name; /* without the leading "--" */
    bool has_arg;          /* value in ctx->optval[id] */
    const char *arg_name;  /* for help: "NAME" */
    const char *help;
} s_opt;

static const s_opt s_opts[S_NOPTS] = {
    [S_OPT_HELP] = {'h', "help", false, NULL, "show help for the verb"},
    [S_OPT_FSYNC] = {0, "fsync", false, NULL,
                     "fsync the written file before returning"},
    [S_OPT_REPR] =
        {'r', "repr", false, NULL,
         "KEY is quoted, as `keys` prints it: 'a\\x00b', ('a', 'b')"},
    [S_OPT_SIZES] = {'s', "sizes", false, NULL,
                     "print \"<size>\\t<key>\" lines (size in bytes)"},
    [S_OPT_CODEC] = {0, "codec", true, "NAME",
                     "values are framed and compressed with NAME: zlib, bz2,\n"
                     "                     snappy, blosc (as Python partd's "
                     "ZLib, BZ2,\n"
                     "                     Snappy, Blosc), lz4 or zstd"},
    [S_OPT_LEVEL] = {0, "level", true, "N",
                     "compression level for --codec (default: the codec's)"},
    [S_OPT_CONNECT] = {0, "connect", true, "ADDR",
                       "talk to the server at ADDR (partd serve, or Python\n"
                       "                     partd.Server) instead of a "
                       "store DIR: no DIR argument"},
    [S_OPT_TIMEOUT] = {0, "timeout", true, "SECONDS",
                       "with --connect: fail after waiting that long for the\n"
                       "                     server (default 60)"},
};

/* --------------------------------------------------------------- Verbs */

struct s_verb;

typedef struct s_ctx {
    const struct s_verb *verb;
    unsigned opts;               /* S_BIT(S_OPT_*) of the options seen */
    const char *optval[S_NOPTS]; /* values of options with has_arg */
    int argc;                    /* positional arguments */
    char **argv;
} s_ctx;

typedef struct s_verb {
    const char *name;
    int (*run)(s_ctx *ctx);
    int min_args;     /* positional arguments */
    int max_args;     /* -1: no limit */
    unsigned opts;    /* options accepted, besides --help */
    const char *args; /* synopsis of the arguments, e.g. "DIR KEY" */
    const char *summary;
    const char *help; /* details, may be NULL */
    /* Verbs that parse their own options (run == NULL): their main and
     * their help text. */
    int (*own_main)(int argc, char **argv);
    const char *(*own_help)(void);
} s_verb;

static int s_verb_append(s_ctx *ctx);
static int s_verb_get(s_ctx *ctx);
static int s_verb_keys(s_ctx *ctx);
static int s_verb_delete(s_ctx *ctx);
static int s_verb_drop(s_ctx *ctx);
static int s_verb_repair(s_ctx *ctx);
static int s_verb_help(s_ctx *ctx);

#define S_CODEC_OPTS (S_BIT(S_OPT_CODEC) | S_BIT(S_OPT_LEVEL))
#define S_NET_OPTS (S_BIT(S_OPT_CONNECT) | S_BIT(S_OPT_TIMEOUT))

static const s_verb s_verbs[] = {
    {"append", s_verb_append, 1, 2,
     S_BIT(S_OPT_FSYNC) | S_BIT(S_OPT_REPR) | S_CODEC_OPTS | S_NET_OPTS,
     "DIR KEY", "append all of standard input to KEY (creates DIR)",
     "The value is every byte read from standard input until end of file,\n"
     "binary-safe, applied in one atomic batch.  DIR is created (with its\n"
     "parents) if it is missing.  With --codec the value is stored as one\n"
     "compressed frame (8-byte length, then the payload), as Python partd's\n"
     "compressed layers store it.\n"},
    {"get", s_verb_get, 1, 2, S_BIT(S_OPT_REPR) | S_CODEC_OPTS | S_NET_OPTS,
     "DIR KEY", "write KEY's value to standard output",
     "Writes the exact bytes KEY holds; a key never written is empty.\n"
     "DIR must exist.  With --codec the frames are decoded; corrupt data\n"
     "fails (exit 1) naming the key, and torn frames left by a writer that\n"
     "died mid-append are left out with a warning on stderr (exit 0; see\n"
     "`partd repair`).\n"},
    {"keys", s_verb_keys, 0, 1, S_BIT(S_OPT_SIZES) | S_NET_OPTS, "DIR",
     "list the keys that hold data, one per line",
     "Each key is printed in its quoted form, sorted, one per line; that\n"
     "form can be given back to the other verbs with -r.  DIR must exist.\n"},
    {"delete", s_verb_delete, 1, -1, S_BIT(S_OPT_REPR) | S_NET_OPTS,
     "DIR KEY...", "forget the KEYs (missing keys are fine)",
     "DIR must exist.\n"},
    {"drop", s_verb_drop, 0, 1, S_NET_OPTS, "DIR",
     "delete every key; the store stays usable",
     "Keeps DIR and its lock file.  DIR must exist.\n"},
    {"repair", s_verb_repair, 2, -1, S_BIT(S_OPT_REPR) | S_CODEC_OPTS,
     "--codec NAME DIR KEY...", "rewrite KEYs without their torn frames",
     "For a store written through --codec: each KEY whose frames include\n"
     "torn ones (cut short by a writer that died mid-append) is replaced,\n"
     "atomically, by its complete frames only.  Prints the number of bytes\n"
     "removed.  A corrupt key (not torn) fails and is left as it is.\n"},
    /* serve parses its own options (src/cli/serve.c): run == NULL. */
    {"serve", NULL, 0, -1, 0,
     "[--path DIR] [--bind ADDR]... [--memory BYTES] [--codec NAME] ...",
     "serve a store to clients (--connect ADDR) over ZeroMQ", NULL,
     pd_cli_serve, pd_cli_serve_help},
    /* demo too (src/cli/demo.c). */
    {"demo", NULL, 0, -1, 0,
     "[--records N] [--workers W] [--partitions P] [--codec NAME] "
     "[--direct] ...",
     "a multiprocess shuffle through a server, verified and timed", NULL,
     pd_cli_demo, pd_cli_demo_help},
    {"help", s_verb_help, 0, 1, 0, "[VERB]", "show help, for one VERB", NULL},
};

#define S_NVERBS (sizeof(s_verbs) / sizeof(s_verbs[0]))

static const char *s_prog = "partd";

/* ---------------------------------------------------------------- Output */

/* A small buffered writer over a file descriptor that remembers the first
 * error.  Every byte the tool prints goes through one of these. */
typedef struct s_out {
    int fd;
    int err; /* errno of the first failed write, 0 if none */
    size_t len;
    char buf[65536];
} s_out;

static s_out s_stdout = {STDOUT_FILENO, 0, 0, {0}};

static int s_write_all(int fd, const void *data, size_t size) {
    const char *p = data;
    while (size > 0) {
        size_t chunk = size > (size_t)1 << 30 ? (size_t)1 << 30 : size;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += w;
        size -= (size_t)w;
    }
    return 0;
}

static int s_out_flush(s_out *o) {
    if (o->err == 0 && o->len > 0) o->err = s_write_all(o->fd, o->buf, o->len);
    o->len = 0;
    return o->err;
}

static int s_out_write(s_out *o, const void *data, size_t size) {
    if (o->err) return o->err;
    if (size > sizeof(o->buf) - o->len) {
        if (s_out_flush(o)) return o->err;
        if (size >= sizeof(o->buf)) {
            o->err = s_write_all(o->fd, data, size);
            return o->err;
        }
    }
    memcpy(o->buf + o->len, data, size);
    o->len += size;
    return 0;
}

static int s_out_str(s_out *o, const char *str) {
    return s_out_write(o, str, strlen(str));
}

static int s_out_printf(s_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int s_out_printf(s_out *o, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) return o->err = EINVAL;
    if ((size_t)n < sizeof(small)) return s_out_write(o, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return o->err = ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s_out_write(o, big, (size_t)n);
    free(big);
    return o->err;
}

/* Messages on stderr: "partd: VERB: message".  Failures to write to stderr
 * are ignored: there is nowhere left to report them. */
static void s_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_errf(const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    (void)s_write_all(STDERR_FILENO, msg, len);
}

static int s_fail(const s_ctx *ctx, const char *msg) {
    s_errf("%s: %s: %s\n", s_prog, ctx->verb->name, msg);
    return S_EXIT_FAIL;
}

/* Flushes standard output and turns its state into an exit code. */
static int s_finish_stdout(const s_ctx *ctx, int rc) {
    int err = s_out_flush(&s_stdout);
    if (err == 0) return rc;
    if (err == EPIPE) return S_EXIT_PIPE;
    s_errf("%s: %s: write(stdout): %s\n", s_prog,
           ctx ? ctx->verb->name : "output", strerror(err));
    return S_EXIT_FAIL;
}

/* ------------------------------------------------------------------ Help */

static void s_usage_line(s_out *o, const s_verb *v) {
    s_out_printf(o, "  %s %s", s_prog, v->name);
    if (!v->run) {
        s_out_printf(o, " %s\n", v->args);
        return;
    }
    for (int i = 0; i < S_NOPTS; i++) {
        if (!(v->opts & S_BIT(i))) continue;
        const s_opt *op = &s_opts[i];
        if (op->short_name)
            s_out_printf(o, " [-%c|--%s]", op->short_name, op->long_name);
        else
            s_out_printf(o, " [--%s%s%s]", op->long_name,
                         op->has_arg ? " " : "",
                         op->has_arg ? op->arg_name : "");
    }
    s_out_printf(o, " %s\n", v->args);
}

static void s_usage(s_out *o) {
    s_out_str(o, "usage:\n");
    for (size_t i = 0; i < S_NVERBS; i++) s_usage_line(o, &s_verbs[i]);
    s_out_printf(o, "  %s --help | --version\n", s_prog);
}

static void s_opt_help(s_out *o, unsigned opts) {
    for (int i = 0; i < S_NOPTS; i++) {
        if (!(opts & S_BIT(i))) continue;
        const s_opt *op = &s_opts[i];
        char name[64];
        if (op->short_name)
            snprintf(name, sizeof(name), "-%c, --%s%s%s", op->short_name,
                     op->long_name, op->has_arg ? " " : "",
                     op->has_arg ? op->arg_name : "");
        else
            snprintf(name, sizeof(name), "    --%s%s%s", op->long_name,
                     op->has_arg ? " " : "", op->has_arg ? op->arg_name : "");
        s_out_printf(o, "  %-18s %s\n", name, op->help);
    }
}

static const char s_help_tail[] =
    "\n"
    "Options may come before or after the arguments; \"--\" ends them, so\n"
    "a KEY starting with '-' is named as: partd get DIR -- -x\n"
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
    "\n"
    "Exit status:\n"
    "  0    success\n"
    "  1    failure: missing DIR, I/O error, bad -r syntax, key too long;\n"
    "       the reason is on stderr as \"partd: VERB: message\"\n"
    "  2    usage error: unknown verb or option, missing or extra arguments\n"
    "  141  standard output was closed by its reader (e.g. `| head -c1`);\n"
    "       nothing is printed, as for a process killed by SIGPIPE\n";

static void s_help_all(s_out *o) {
    s_out_printf(o,
                 "%s %s - an appendable key-value store in a directory, "
                 "compatible with Python partd.File\n\n",
                 s_prog, PARTD_VERSION_STRING);
    s_usage(o);
    s_out_str(o, "\nVerbs:\n");
    for (size_t i = 0; i < S_NVERBS; i++)
        s_out_printf(o, "  %-8s %s\n", s_verbs[i].name, s_verbs[i].summary);
    s_out_str(o, "\nOptions:\n");
    unsigned all = 0;
    for (size_t i = 0; i < S_NVERBS; i++) all |= s_verbs[i].opts;
    s_opt_help(o, all | S_BIT(S_OPT_HELP));
    s_out_str(o, "      --version      print the version and exit\n");
    s_out_str(o, s_help_tail);
}

static void s_help_verb(s_out *o, const s_verb *v) {
    if (!v->run) {
        s_out_str(o, v->own_help());
        return;
    }
    s_out_str(o, "usage:\n");
    s_usage_line(o, v);
    s_out_printf(o, "\n%s.\n", v->summary);
    if (v->help) s_out_printf(o, "%s", v->help);
    s_out_str(o, "\nOptions:\n");
    s_opt_help(o, v->opts | S_BIT(S_OPT_HELP));
    s_out_str(o, s_help_tail);
}

/* Usage error: message and usage on stderr, exit 2. */
static int s_usage_error(const s_verb *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int s_usage_error(const s_verb *v, const char *fmt, ...) {
    static s_out err = {STDERR_FILENO, 0, 0, {0}};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s_out_printf(&err, "%s: %s\n", s_prog, msg);
    if (v) {
        s_out_str(&err, "usage:\n");
        s_usage_line(&err, v);
        s_out_printf(&err, "Try '%s help %s' for more.\n", s_prog, v->name);
    } else {
        s_usage(&err);
        s_out_printf(&err, "Try '%s --help' for more.\n", s_prog);
    }
    s_out_flush(&err);
    return S_EXIT_USAGE;
}

static const s_verb *s_find_verb(const char *name) {
    for (size_t i = 0; i < S_NVERBS; i++)
        if (strcmp(s_verbs[i].name, name) == 0) return &s_verbs[i];
    return NULL;
}

/* ------------------------------------------------------- Argument parsing */

/* Parses argv (after the verb) into ctx; options may be mixed with
 * arguments until "--".  "-" alone is an argument.  Short options may be
 * grouped (-rs).  Returns -1 on success, else an exit code. */
static int s_parse_args(s_ctx *ctx, int argc, char **argv) {
    const s_verb *v = ctx->verb;
    unsigned allowed = v->opts | S_BIT(S_OPT_HELP);
    bool more_opts = true;
    ctx->argc = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (!more_opts || a[0] != '-' || a[1] == '\0') {
            ctx->argv[ctx->argc++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            more_opts = false;
            continue;
        }
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
            int id = -1;
            for (int o = 0; o < S_NOPTS; o++)
                if ((allowed & S_BIT(o)) &&
                    strlen(s_opts[o].long_name) == nlen &&
                    memcmp(s_opts[o].long_name, name, nlen) == 0)
                    id = o;
            if (id < 0)
                return s_usage_error(v, "%s: unknown option '--%.*s'", v->name,
                                     (int)(nlen > 100 ? 100 : nlen), name);
            if (s_opts[id].has_arg) {
                if (eq)
                    ctx->optval[id] = eq + 1;
                else if (i + 1 < argc)
                    ctx->optval[id] = argv[++i];
                else
                    return s_usage_error(v, "%s: option '--%s' needs %s",
                                         v->name, s_opts[id].long_name,
                                         s_opts[id].arg_name);
            } else if (eq) {
                return s_usage_error(v, "%s: option '--%s' takes no value",
                                     v->name, s_opts[id].long_name);
            }
            ctx->opts |= S_BIT(id);
            continue;
        }
        for (char *c = a + 1; *c; c++) {
            int id = -1;
            for (int o = 0; o < S_NOPTS; o++)
                if ((allowed & S_BIT(o)) && s_opts[o].short_name == *c) id = o;
            if (id < 0) {
                if ((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f)
                    return s_usage_error(v, "%s: unknown option '-%c'", v->name,
                                         *c);
                return s_usage_error(v, "%s: unknown option in '%.40s'",
                                     v->name, a);
            }
            ctx->opts |= S_BIT(id);
            if (s_opts[id].has_arg) {
                if (c[1])
                    ctx->optval[id] = c + 1;
                else if (i + 1 < argc)
                    ctx->optval[id] = argv[++i];
                else
                    return s_usage_error(v, "%s: option '-%c' needs %s",
                                         v->name, *c, s_opts[id].arg_name);
                break;
            }
        }
    }
    if (ctx->opts & S_BIT(S_OPT_HELP)) return -1;
    if (ctx->argc < v->min_args)
        return s_usage_error(v, "%s: missing arguments (%d given)", v->name,
                             ctx->argc);
    if (v->max_args >= 0 && ctx->argc > v->max_args)
        return s_usage_error(v, "%s: too many arguments (%d given)", v->name,
                             ctx->argc);
    return -1;
}

/* ------------------------------------------------------------- Helpers */

/* The --level value (PD_LEVEL_DEFAULT when absent) into *level; exit code. */
static int s_level_arg(s_ctx *ctx, int *level) {
    *level = PD_LEVEL_DEFAULT;
    const char *text = ctx->optval[S_OPT_LEVEL];
    if (!(ctx->opts & S_BIT(S_OPT_LEVEL))) return S_EXIT_OK;
    if (!(ctx->opts & S_BIT(S_OPT_CODEC)))
        return s_usage_error(ctx->verb, "%s: --level needs --codec",
                             ctx->verb->name);
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < INT_MIN + 1001 || v > INT_MAX)
        return s_usage_error(ctx->verb, "%s: --level: not a number: '%.40s'",
                             ctx->verb->name, text);
    *level = (int)v;
    return S_EXIT_OK;
}

/* Splits the positional arguments into the store (DIR, or nothing with
 * --connect) and the keys after it: *dir (NULL with --connect) and *first,
 * the index of the first key.  Checks their number against the verb's
 * nkeys_min..nkeys_max (-1: no limit).  Returns S_EXIT_OK or a usage
 * error's exit code. */
static int s_store_args(s_ctx *ctx, int nkeys_min, int nkeys_max,
                        const char **dir, int *first) {
    bool net = ctx->opts & S_BIT(S_OPT_CONNECT);
    if ((ctx->opts & S_BIT(S_OPT_TIMEOUT)) && !net)
        return s_usage_error(ctx->verb, "%s: --timeout needs --connect",
                             ctx->verb->name);
    *first = net ? 0 : 1;
    *dir = net ? NULL : (ctx->argc > 0 ? ctx->argv[0] : NULL);
    int nkeys = ctx->argc - *first;
    if (!net && ctx->argc == 0)
        return s_usage_error(ctx->verb, "%s: missing DIR (or --connect ADDR)",
                             ctx->verb->name);
    if (nkeys < nkeys_min)
        return s_usage_error(ctx->verb, "%s: missing KEY", ctx->verb->name);
    if (nkeys_max >= 0 && nkeys > nkeys_max)
        return s_usage_error(ctx->verb, "%s: too many arguments%s",
                             ctx->verb->name,
                             net ? " (with --connect there is no DIR)" : "");
    return S_EXIT_OK;
}

/* A client of the --connect server, with --timeout. */
static int s_open_client(s_ctx *ctx, pd_store **out) {
    pd_client_opts o = {0};
    o.flags = PD_CLIENT_SYNC; /* each call reports its own error */
    if (ctx->opts & S_BIT(S_OPT_TIMEOUT)) {
        const char *text = ctx->optval[S_OPT_TIMEOUT];
        char *end;
        errno = 0;
        double sec = strtod(text, &end);
        if (errno || end == text || *end || !(sec > 0) || sec > 86400.0 * 365)
            return s_usage_error(ctx->verb,
                                 "%s: --timeout: not a positive number of "
                                 "seconds: '%.40s'",
                                 ctx->verb->name, text);
        o.timeout_ms = sec * 1000 < 1 ? 1 : (int)(sec * 1000);
    }
    if (pd_client_open(out, ctx->optval[S_OPT_CONNECT], &o) != 0) {
        *out = NULL;
        return s_fail(ctx, pd_errmsg(NULL));
    }
    return S_EXIT_OK;
}

/* Opens the store at dir (or the --connect server when dir is NULL);
 * `create`: make the directory if it is missing.  With --codec, the store
 * is wrapped in that codec's layer. */
static int s_open_store(s_ctx *ctx, const char *dir, bool create,
                        pd_store **out) {
    int level;
    int rc = s_level_arg(ctx, &level);
    if (rc) return rc;
    pd_store *file = NULL;
    *out = NULL;
    if (!dir) {
        rc = s_open_client(ctx, &file);
        if (rc) return rc;
    } else if (pd_file_open(&file, dir, create ? PD_FILE_CREATE : 0) != 0) {
        return s_fail(ctx, pd_errmsg(NULL));
    }
    if (!(ctx->opts & S_BIT(S_OPT_CODEC))) {
        *out = file;
        return S_EXIT_OK;
    }
    if (pd_compress_open(out, &file, ctx->optval[S_OPT_CODEC], level, 0) != 0) {
        int code = pd_errcode(NULL);
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", pd_errmsg(NULL));
        pd_close(&file);
        if (code == PD_ERR_UNSUPPORTED || code == PD_ERR_LIMIT)
            return s_usage_error(ctx->verb, "%s: %s", ctx->verb->name, msg);
        return s_fail(ctx, msg);
    }
    return S_EXIT_OK;
}

/* After a get or repair through --codec: a warning for torn frames. */
static void s_torn_warning(const s_ctx *ctx, const pd_store *s,
                           uint64_t before) {
    uint64_t torn = pd_encode_torn(s);
    if (torn > before)
        s_errf("%s: %s: warning: %" PRIu64
               " torn frame(s) left out; last: %s\n",
               s_prog, ctx->verb->name, torn - before, pd_encode_notice(s));
}

/* Closes the store; a failure turns rc into a failure. */
static int s_close_store(s_ctx *ctx, pd_store **s, int rc) {
    if (*s && pd_close(s) != 0) {
        s_fail(ctx, pd_errmsg(NULL));
        if (rc == S_EXIT_OK) rc = S_EXIT_FAIL;
    }
    return rc;
}

/* The key named by argument `arg`: its literal bytes, or with -r its parsed
 * quoted form (then *owned is set and must be freed with pd_key_free). */
static int s_key_arg(s_ctx *ctx, const char *arg, pd_key *key, pd_key **owned) {
    *owned = NULL;
    if (!(ctx->opts & S_BIT(S_OPT_REPR))) {
        *key = PD_KEY(arg, strlen(arg));
        return S_EXIT_OK;
    }
    if (pd_key_parse(arg, strlen(arg), owned) != 0)
        return s_fail(ctx, pd_errmsg(NULL));
    *key = **owned;
    return S_EXIT_OK;
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

/* ----------------------------------------------------------------- Verbs */

static int s_verb_append(s_ctx *ctx) {
    const char *dir = NULL;
    int first = 0;
    int rc = s_store_args(ctx, 1, 1, &dir, &first);
    if (rc) return rc;
    pd_key key, *owned = NULL;
    rc = s_key_arg(ctx, ctx->argv[first], &key, &owned);
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
    if (rc == S_EXIT_OK) {
        pd_bytes val = PD_BYTES(data, size);
        unsigned flags = (ctx->opts & S_BIT(S_OPT_FSYNC)) ? PD_FSYNC : 0;
        if (pd_append(s, 1, &key, &val, flags) != 0)
            rc = s_fail(ctx, pd_errmsg(s));
    }
    rc = s_close_store(ctx, &s, rc);
    free(data);
    pd_key_free(&owned);
    return rc;
}

static int s_verb_get(s_ctx *ctx) {
    const char *dir = NULL;
    int first = 0;
    int rc = s_store_args(ctx, 1, 1, &dir, &first);
    if (rc) return rc;
    pd_key key, *owned = NULL;
    rc = s_key_arg(ctx, ctx->argv[first], &key, &owned);
    if (rc) return rc;
    pd_store *s = NULL;
    pd_result *r = NULL;
    rc = s_open_store(ctx, dir, false, &s);
    if (rc == S_EXIT_OK && pd_get(s, 1, &key, &r, 0) != 0)
        rc = s_fail(ctx, pd_errmsg(s));
    if (rc == S_EXIT_OK && ctx->opts & S_BIT(S_OPT_CODEC))
        s_torn_warning(ctx, s, 0);
    rc = s_close_store(ctx, &s, rc);
    if (rc == S_EXIT_OK) {
        pd_bytes v = pd_result_value(r, 0);
        s_out_write(&s_stdout, v.data, v.size);
        rc = s_finish_stdout(ctx, rc);
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

static int s_verb_keys(s_ctx *ctx) {
    const char *dir = NULL;
    int first = 0;
    int rc = s_store_args(ctx, 0, 0, &dir, &first);
    if (rc) return rc;
    pd_store *s = NULL;
    pd_keylist *kl = NULL;
    rc = s_open_store(ctx, dir, false, &s);
    if (rc == S_EXIT_OK && pd_keys(s, &kl, 0) != 0)
        rc = s_fail(ctx, pd_errmsg(s));
    rc = s_close_store(ctx, &s, rc);
    if (rc != S_EXIT_OK) {
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
    for (size_t i = 0; i < n && rc == S_EXIT_OK; i++) {
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
    if (rc == S_EXIT_OK) {
        qsort(lines, got, sizeof(*lines), s_cmp_line);
        bool sizes = ctx->opts & S_BIT(S_OPT_SIZES);
        for (size_t i = 0; i < got && !s_stdout.err; i++) {
            if (sizes) s_out_printf(&s_stdout, "%" PRIu64 "\t", lines[i].size);
            s_out_str(&s_stdout, lines[i].repr);
            s_out_write(&s_stdout, "\n", 1);
        }
        rc = s_finish_stdout(ctx, rc);
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
    for (size_t i = 0; i < n && rc == S_EXIT_OK; i++)
        rc = s_key_arg(ctx, ctx->argv[i + (size_t)first], &keys[i], &owned[i]);
    pd_store *s = NULL;
    if (rc == S_EXIT_OK) rc = s_open_store(ctx, dir, false, &s);
    if (rc == S_EXIT_OK && pd_delete(s, n, keys, 0) != 0)
        rc = s_fail(ctx, pd_errmsg(s));
    rc = s_close_store(ctx, &s, rc);
    for (size_t i = 0; owned && i < n; i++) pd_key_free(&owned[i]);
    free(owned);
    free(keys);
    return rc;
}

static int s_verb_drop(s_ctx *ctx) {
    const char *dir = NULL;
    int first = 0;
    int rc = s_store_args(ctx, 0, 0, &dir, &first);
    if (rc) return rc;
    pd_store *s = NULL;
    rc = s_open_store(ctx, dir, false, &s);
    if (rc == S_EXIT_OK && pd_drop(s, 0) != 0) rc = s_fail(ctx, pd_errmsg(s));
    return s_close_store(ctx, &s, rc);
}

static int s_verb_repair(s_ctx *ctx) {
    if (!(ctx->opts & S_BIT(S_OPT_CODEC)))
        return s_usage_error(ctx->verb, "%s: needs --codec NAME",
                             ctx->verb->name);
    size_t n = (size_t)ctx->argc - 1;
    pd_key *keys = calloc(n, sizeof(*keys));
    pd_key **owned = calloc(n, sizeof(*owned));
    int rc = S_EXIT_OK;
    if (!keys || !owned) rc = s_fail(ctx, "out of memory");
    for (size_t i = 0; i < n && rc == S_EXIT_OK; i++)
        rc = s_key_arg(ctx, ctx->argv[i + 1], &keys[i], &owned[i]);
    pd_store *s = NULL;
    uint64_t removed = 0;
    if (rc == S_EXIT_OK) rc = s_open_store(ctx, ctx->argv[0], false, &s);
    if (rc == S_EXIT_OK && pd_encode_repair(s, n, keys, &removed, 0) != 0)
        rc = s_fail(ctx, pd_errmsg(s));
    if (rc == S_EXIT_OK) s_torn_warning(ctx, s, 0);
    rc = s_close_store(ctx, &s, rc);
    if (rc == S_EXIT_OK) {
        s_out_printf(&s_stdout, "%" PRIu64 "\n", removed);
        rc = s_finish_stdout(ctx, rc);
    }
    for (size_t i = 0; owned && i < n; i++) pd_key_free(&owned[i]);
    free(owned);
    free(keys);
    return rc;
}

static int s_verb_help(s_ctx *ctx) {
    if (ctx->argc == 0) {
        s_help_all(&s_stdout);
    } else {
        const s_verb *v = s_find_verb(ctx->argv[0]);
        if (!v)
            return s_usage_error(NULL, "help: unknown verb '%.100s'",
                                 ctx->argv[0]);
        s_help_verb(&s_stdout, v);
    }
    return s_finish_stdout(ctx, S_EXIT_OK);
}

/* ------------------------------------------------------------------ Main */

int main(int argc, char **argv) {
    /* A reader that goes away must give EPIPE, not kill us mid-write. */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) return s_usage_error(NULL, "missing verb");
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        if (argc > 2) return s_usage_error(NULL, "--help takes no arguments");
        s_help_all(&s_stdout);
        return s_finish_stdout(NULL, S_EXIT_OK);
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        if (argc > 2)
            return s_usage_error(NULL, "--version takes no arguments");
        s_out_printf(&s_stdout, "%s %s (libpartd %s)\n", s_prog,
                     PARTD_VERSION_STRING, pd_version_string());
        return s_finish_stdout(NULL, S_EXIT_OK);
    }
    const s_verb *v = s_find_verb(name);
    if (!v) {
        if (name[0] == '-')
            return s_usage_error(NULL, "unknown option '%.100s'", name);
        return s_usage_error(NULL, "unknown verb '%.100s'", name);
    }
    if (!v->run) return v->own_main(argc - 1, argv + 1);

    s_ctx ctx = {.verb = v};
    ctx.argv = calloc((size_t)argc, sizeof(char *));
    if (!ctx.argv) {
        s_errf("%s: out of memory\n", s_prog);
        return S_EXIT_FAIL;
    }
    int rc = s_parse_args(&ctx, argc - 2, argv + 2);
    if (rc < 0) {
        if (ctx.opts & S_BIT(S_OPT_HELP)) {
            s_help_verb(&s_stdout, v);
            rc = s_finish_stdout(&ctx, S_EXIT_OK);
        } else {
            rc = v->run(&ctx);
        }
    }
    free(ctx.argv);
    return rc;
}
