/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * `partd serve`: serves a store over ZeroMQ in the foreground (see
 * serve.h and the help text below).
 *
 * The store: Buffer(Dict, S).  Without --path, S is a Log (a File with
 * --store file) in a private temporary directory, removed on exit.  With
 * --path DIR (kept after exit), S is a File in DIR (what Python partd's
 * File reads), or a Log with --store log or when DIR holds a Log.  Several
 * --path: Buffer(Dict, Fanout(DIR1, DIR2, ...)), each DIR a File or a Log as
 * above, one memory limit for them all, each key spilled to the DIR the
 * Fanout maps it to.  --codec puts an Encode layer between the Buffer and
 * S, Buffer(Dict, Encode(S)):
 * appends stay in memory uncompressed, and what spills is compressed, framed
 * as Python partd's compressed stores frame it, so DIR is what
 * `partd.ZLib(partd.File(DIR))` (for zlib, bz2, snappy, blosc) reads (with
 * several DIRs: Buffer(Dict, Encode(Fanout(...))), each DIR holding its
 * keys' frames).  On exit the server's figures (pd_server_get_stats) are
 * logged in one line.
 */
#include "partd/partd.h"
#include "serve.h"
#include "exit.h"
#include "opts.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MAX_BINDS 16
#define S_MAX_PATHS 64

enum {
    S_PATH = PD_CLI_LONG,
    S_BIND,
    S_MEMORY,
    S_CODEC,
    S_LEVEL,
    S_CURVE_SECRET,
    S_CURVE_CLIENTS,
    S_TIMEOUT,
    S_STORE
};

static const pd_cli_opt s_opts[] = {
    {S_PATH, "path", "DIR",
     "keep the data in DIR (created if missing; a File store, locked while "
     "serving, or a Log: see --store); default: a private temporary "
     "directory, removed on exit.  Repeatable (at most 64): the store is "
     "spread over the DIRs, each key in one of them (a Fanout, "
     "docs/fanout.md); the order of the --path options decides which, so "
     "serve the same DIRs in the same order again to read the data back",
     true},
    {S_STORE, "store", "KIND",
     "what the Buffer spills to: file (one file per key) or log (append-only "
     "segments: for many keys).  Default: without --path a Log; with "
     "--path DIR a Log if DIR holds its marker file partd-log, else a File "
     "(what Python partd's File reads)",
     false},
    {S_BIND, "bind", "ADDR",
     "listen on ADDR, e.g. tcp://127.0.0.1:0 (port 0: a free one; the real "
     "port is printed) or ipc:///path/sock; repeatable (at most 16).  "
     "Default: an ipc socket in a new private (0700) directory",
     true},
    {S_MEMORY, "memory", "BYTES",
     "keep up to BYTES in memory before spilling to the File or Log (a size: "
     "see below; with a Log, a request of 1 MiB or more goes straight to it); "
     "default 1000000000",
     false},
    {S_CODEC, "codec", "NAME",
     "compress what spills: zlib, bz2, snappy, blosc, lz4, zstd", false},
    {S_LEVEL, "level", "N", "the codec's compression level (needs --codec)",
     false},
    {S_CURVE_SECRET, "curve-secret", "KEY|@FILE",
     "require CURVE: KEY is this server's secret key (40 z85 characters), or "
     "@FILE to read it from FILE (a key on the command line is visible to "
     "other users in ps); the environment variable PARTD_CURVE_SECRET works "
     "too.  The public key, which clients need, is logged at start",
     false},
    {S_CURVE_CLIENTS, "curve-clients", "FILE",
     "with --curve-secret: admit only the clients whose CURVE public key is "
     "in FILE (one key per line; blank lines and lines starting with # are "
     "skipped); others are refused and logged",
     false},
    {S_TIMEOUT, "timeout", "SECONDS",
     "stop after SECONDS (a whole number) without a request", false},
    {'v', "verbose", NULL, "log every request", false},
    {'q', "quiet", NULL, "log only warnings and errors", false},
    {'h', "help", NULL, "show this help", false},
};

static int s_run(const pd_cli_verb *v, int argc, char **argv) {
    (void)v;
    return pd_cli_serve(argc, argv);
}

static const char s_about[] =
    "Serves a store to clients (libpartd's pd_client_open, `partd append\n"
    "--connect`, Python partd.Client) until SIGINT or SIGTERM, a client's\n"
    "`close` command, or --timeout.  Prints the address clients connect to\n"
    "as the first line of standard output (one line per --bind), logs on\n"
    "standard error.  On the way out the store is flushed to DIR, its lock\n"
    "released and the ipc socket file removed; the exit status is then 0.\n";

static const char s_tail[] =
    "\n" PD_CLI_UNITS_HELP "\n"
    "Anyone who can connect can read, write and drop the store: keep tcp on\n"
    "127.0.0.1, or use CURVE.\n"
    "\n"
    "Exit status: 0 after a clean stop, 1 on failure (message on standard\n"
    "error), 2 on a usage error.\n";

const pd_cli_verb pd_cli_serve_verb = {
    .name = "serve",
    .run = s_run,
    .summary = "serve a store to clients (--connect ADDR) over ZeroMQ",
    .about = s_about,
    .opts = s_opts,
    .nopts = sizeof s_opts / sizeof s_opts[0],
    .tail = s_tail};

#define S_V (&pd_cli_serve_verb)

static pd_server *volatile s_srv;

static void s_on_signal(int sig) {
    (void)sig;
    pd_server *srv = s_srv;
    if (srv) pd_server_stop(srv);
}

/* A usage error: message and usage on stderr; the exit status. */
#define s_usage(...) pd_cli_usage(S_V, __VA_ARGS__)

static int s_fail(const char *msg) {
    fprintf(stderr, "partd: serve: %s\n", msg);
    return PD_CLI_EXIT_FAIL;
}

/* Reads the first line of path into key (40 characters). */
static int s_read_key(const char *path, char key[41]) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok) return -1;
    line[strcspn(line, "\r\n")] = '\0';
    if (strlen(line) != 40) return -1;
    memcpy(key, line, 41);
    return 0;
}

#define S_MAX_CLIENT_KEYS 65536

typedef struct s_args {
    const char *paths[S_MAX_PATHS];
    size_t npath;
    const char *codec, *curve, *clients;
    pd_cli_store_kind kind; /* --store; AUTO without it */
    const char *binds[S_MAX_BINDS];
    size_t nbind;
    uint64_t memory;
    bool have_memory, have_level;
    long level, timeout;
    int log_level;
} s_args;

/* Reads the CURVE public keys of --curve-clients FILE into *keys (an array
 * of 41-byte strings, *n of them).  0, or an exit code after a message. */
static int s_read_clients(const char *path, char (**keys)[41], size_t *n) {
    *keys = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "partd: serve: --curve-clients %s: %s\n", path,
                strerror(errno));
        return PD_CLI_EXIT_FAIL;
    }
    char line[256];
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strcspn(line, "\r\n");
        bool whole = line[len] != '\0' || feof(f);
        line[len] = '\0';
        char *p = line + strspn(line, " \t");
        p[strcspn(p, " \t")] = '\0';
        if (!whole) {
            rc = s_usage("--curve-clients %.100s:%zu: line too long", path,
                         lineno);
        } else if (*p == '\0' || *p == '#') {
            continue;
        } else if (strlen(p) != 40 || pd_curve_check(p) != 0) {
            rc = s_usage("--curve-clients %.100s:%zu: not a CURVE public key "
                         "(40 z85 characters)",
                         path, lineno);
        } else if (*n == S_MAX_CLIENT_KEYS) {
            rc = s_usage("--curve-clients %.100s: more than %d keys", path,
                         S_MAX_CLIENT_KEYS);
        } else {
            if (*n == cap) {
                cap = cap ? cap * 2 : 16;
                char(*nk)[41] = realloc(*keys, cap * sizeof **keys);
                if (!nk) {
                    rc = s_fail("out of memory reading --curve-clients");
                    break;
                }
                *keys = nk;
            }
            memcpy((*keys)[(*n)++], p, 41);
        }
    }
    if (rc == 0 && ferror(f)) rc = s_fail("--curve-clients: read error");
    fclose(f);
    if (rc == 0 && *n == 0)
        rc = s_usage("--curve-clients %.100s: no keys in the file (an empty "
                     "allow-list would refuse everyone)",
                     path);
    if (rc) {
        free(*keys);
        *keys = NULL;
        *n = 0;
    }
    return rc;
}

/* Parses argv[1..argc) into a; returns -1 to go on, else an exit code. */
static int s_parse(int argc, char **argv, s_args *a) {
    pd_cli_parser p;
    pd_cli_parser_init(&p, S_V, argc, argv);
    const char *val;
    uint64_t n;
    int id, rc = 0;
    while (rc == 0 && (id = pd_cli_next(&p, &val)) != PD_CLI_END) {
        switch (id) {
        case PD_CLI_BAD: return PD_CLI_EXIT_USAGE;
        case PD_CLI_ARG: return s_usage("unexpected argument '%.100s'", val);
        case 'h': return pd_cli_help_exit(S_V);
        case 'v': a->log_level = PD_LOG_DEBUG; break;
        case 'q': a->log_level = PD_LOG_WARN; break;
        case S_PATH:
            if (a->npath == S_MAX_PATHS)
                return s_usage("at most %d --path options", S_MAX_PATHS);
            a->paths[a->npath++] = val;
            break;
        case S_BIND:
            if (a->nbind == S_MAX_BINDS)
                return s_usage("at most %d --bind options", S_MAX_BINDS);
            a->binds[a->nbind++] = val;
            break;
        case S_MEMORY:
            rc = pd_cli_opt_num(S_V, "--memory", val, PD_CLI_SIZE, 1,
                                UINT64_MAX, &a->memory);
            a->have_memory = true;
            break;
        case S_CODEC: a->codec = val; break;
        case S_LEVEL:
            rc = pd_cli_opt_int(S_V, "--level", val, -1000000, 1000000,
                                &a->level);
            a->have_level = true;
            break;
        case S_CURVE_SECRET: a->curve = val; break;
        case S_TIMEOUT:
            rc = pd_cli_opt_num(S_V, "--timeout", val, PD_CLI_PLAIN, 1,
                                100000000, &n);
            a->timeout = (long)n;
            break;
        case S_CURVE_CLIENTS: a->clients = val; break;
        case S_STORE:
            if (pd_cli_store_kind_parse(val, &a->kind) != 0)
                return s_usage("--store '%.100s': not file or log", val);
            break;
        }
    }
    if (rc) return rc;
    if (a->have_level && !a->codec) return s_usage("--level needs --codec");
    return -1;
}

/* The store of each --path (or a temporary one), under a Fanout when there
 * are several, into *out.  0, or -1 once reported. */
static int s_open_files(const s_args *a, pd_store **out) {
    if (a->npath == 0) {
        /* A private directory nobody else reads: a Log unless --store file
         * (docs/perf-log.md: the server's default store). */
        int rc = a->kind == PD_CLI_STORE_FILE ? pd_file_open_temp(out, NULL, 0)
                                              : pd_log_open_temp(out, NULL, 0);
        if (rc) s_fail(pd_errmsg(NULL));
        return rc ? -1 : 0;
    }
    char why[1024];
    if (pd_cli_open_dirs(out, a->paths, a->npath, a->kind, true, "--path", why,
                         sizeof why) == 0)
        return 0;
    s_fail(why);
    return -1;
}

/* Builds Buffer(Dict, [Encode](File, Log or Fanout)) for --path, --codec
 * and/or --store. */
static int s_open_store(const s_args *a, pd_store **out) {
    pd_store *file = NULL, *slow = NULL, *fast = NULL;
    int rc = s_open_files(a, &file);
    if (rc) return rc; /* reported */
    if (rc == 0 && a->codec) {
        rc = pd_compress_open(&slow, &file, a->codec,
                              a->have_level ? (int)a->level : PD_LEVEL_DEFAULT,
                              0);
    } else if (rc == 0) {
        slow = file;
        file = NULL;
    }
    if (rc == 0) rc = pd_dict_open(&fast);
    if (rc == 0)
        rc = pd_buffer_open(
            out, &fast, &slow,
            a->have_memory ? a->memory : PD_SERVER_MEMORY_DEFAULT, 0);
    if (rc) {
        s_fail(pd_errmsg(NULL));
        pd_close(&fast);
        pd_close(&slow);
        pd_close(&file);
    }
    return rc;
}

/* One line of the server's figures on stderr, after it stopped. */
static void s_log_summary(pd_server *srv) {
    pd_server_stats st = {.size = sizeof st};
    if (pd_server_get_stats(srv, &st) != 0) {
        fprintf(stderr, "partd server: warning: no stats at exit: %s\n",
                pd_errmsg(NULL));
        return;
    }
    fprintf(stderr,
            "partd server: info: stats: keys %" PRIu64 ", bytes %" PRIu64
            ", records appended %" PRIu64 " (%" PRIu64
            " bytes), requests %" PRIu64 " (%" PRIu64 " failed; append %" PRIu64
            ", get %" PRIu64 ", iset %" PRIu64 ", delete %" PRIu64
            ", drop %" PRIu64 ", keys %" PRIu64 ", stats %" PRIu64
            ", syn %" PRIu64 ", close %" PRIu64 ", other %" PRIu64
            "), memory %" PRIu64 " of %" PRIu64 ", spills %" PRIu64
            ", rss %" PRIu64 ", clients %" PRIu64 ", uptime %" PRIu64
            " ms, attempts %" PRIu64 " committed (%" PRIu64
            " conflicted, %" PRIu64 " aborted, %" PRIu64 " expired)\n",
            st.keys, st.bytes, st.records, st.appended_bytes, st.requests,
            st.failed, st.req_append, st.req_get, st.req_iset, st.req_delete,
            st.req_drop, st.req_keys, st.req_stats, st.req_syn, st.req_close,
            st.req_other, st.memory, st.memory_limit, st.spills, st.rss,
            st.clients, st.uptime_ms, st.attempts_committed,
            st.attempts_conflicted, st.attempts_aborted, st.attempts_expired);
}

int pd_cli_serve(int argc, char **argv) {
    s_args a = {0};
    a.log_level = PD_LOG_INFO;
    int rc = s_parse(argc, argv, &a);
    if (rc >= 0) return rc;

    char secret[41] = "", public_key[41] = "";
    const char *curve = a.curve ? a.curve : getenv("PARTD_CURVE_SECRET");
    if (curve && *curve) {
        if (curve[0] == '@') {
            if (s_read_key(curve + 1, secret))
                return s_fail("--curve-secret: cannot read a 40-character "
                              "key from the file");
        } else if (strlen(curve) == 40) {
            memcpy(secret, curve, 41);
        } else {
            return s_usage("--curve-secret: a key is 40 z85 characters");
        }
        if (pd_curve_public(public_key, secret)) return s_fail(pd_errmsg(NULL));
    }

    char(*clients)[41] = NULL;
    size_t nclients = 0;
    if (a.clients) {
        if (!secret[0]) return s_usage("--curve-clients needs --curve-secret");
        rc = s_read_clients(a.clients, &clients, &nclients);
        if (rc) return rc;
    }
    const char **client_keys = NULL;
    if (nclients) {
        client_keys = malloc(nclients * sizeof *client_keys);
        if (!client_keys) {
            free(clients);
            return s_fail("out of memory");
        }
        for (size_t i = 0; i < nclients; i++) client_keys[i] = clients[i];
    }

    pd_store *store = NULL;
    if ((a.npath || a.codec || a.kind != PD_CLI_STORE_AUTO) &&
        s_open_store(&a, &store)) {
        free(client_keys);
        free(clients);
        return PD_CLI_EXIT_FAIL;
    }

    pd_server_opts o = {0};
    o.bind = a.nbind ? a.binds : NULL;
    o.nbind = a.nbind;
    o.memory = a.have_memory ? a.memory : 0;
    o.curve_secret = secret[0] ? secret : NULL;
    o.curve_clients = client_keys;
    o.ncurve_clients = nclients;
    o.idle_timeout_ms = (uint64_t)a.timeout * 1000;
    o.log_level = a.log_level;
    pd_server *srv = NULL;
    rc = pd_server_open(&srv, &store, &o);
    free(client_keys); /* the server keeps its own copy */
    free(clients);
    if (rc) {
        s_fail(pd_errmsg(NULL));
        pd_close(&store);
        return PD_CLI_EXIT_FAIL;
    }
    memset(secret, 0, sizeof secret);

    /* Handlers before the address is printed: whoever reads it may signal
     * at once. */
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    s_srv = srv;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    for (size_t i = 0; pd_server_address(srv, i); i++)
        printf("%s\n", pd_server_address(srv, i));
    fflush(stdout); /* a reader that left is no reason to stop serving */
    if (public_key[0])
        fprintf(stderr, "partd server: info: CURVE public key: %s\n",
                public_key);

    int status = 0;
    if (pd_server_run(srv)) status = s_fail(pd_errmsg(NULL));
    if (a.log_level >= PD_LOG_INFO) s_log_summary(srv);
    s_srv = NULL;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (pd_server_close(&srv) && status == 0) status = s_fail(pd_errmsg(NULL));
    return status;
}
