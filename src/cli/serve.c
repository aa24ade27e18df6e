/*
 * `partd serve`: serves a store over ZeroMQ in the foreground (see
 * serve.h and the help text below).
 *
 * The store: Buffer(Dict, File) as the server's default, with the File in
 * DIR (--path, kept after exit) or in a private temporary directory
 * (removed on exit).  --codec puts an Encode layer between the Buffer and
 * the File, Buffer(Dict, Encode(File)): appends stay in memory
 * uncompressed, and what spills is compressed, framed as Python partd's
 * compressed stores frame it, so DIR is what `partd.ZLib(partd.File(DIR))`
 * (for zlib, bz2, snappy, blosc) reads.
 */
#include "partd/partd.h"
#include "serve.h"
#include "args.h"

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

static const char s_help[] =
    "usage:\n"
    "  partd serve [--path DIR] [--bind ADDR]... [--memory BYTES]\n"
    "              [--codec NAME [--level N]] [--curve-secret KEY|@FILE]\n"
    "              [--curve-clients FILE]\n"
    "              [--timeout SECONDS] [-v|--verbose] [-q|--quiet]\n"
    "\n"
    "Serves a store to clients (libpartd's pd_client_open, `partd append\n"
    "--connect`, Python partd.Client) until SIGINT or SIGTERM, a client's\n"
    "`close` command, or --timeout.  Prints the address clients connect to\n"
    "as the first line of standard output (one line per --bind), logs on\n"
    "standard error.  On the way out the store is flushed to DIR, its lock\n"
    "released and the ipc socket file removed; the exit status is then 0.\n"
    "\n"
    "Options:\n"
    "  --path DIR           keep the data in DIR (created if missing; a\n"
    "                       File store, locked while serving); default: a\n"
    "                       private temporary directory, removed on exit\n"
    "  --bind ADDR          listen on ADDR, e.g. tcp://127.0.0.1:0 (port 0:\n"
    "                       a free one; the real port is printed) or\n"
    "                       ipc:///path/sock; repeatable.  Default: an ipc\n"
    "                       socket in a new private (0700) directory\n"
    "  --memory BYTES       keep up to BYTES in memory before spilling to\n"
    "                       the File (suffix k, M, G, T: powers of 1024);\n"
    "                       default 1000000000\n"
    "  --codec NAME         compress what spills: zlib, bz2, snappy, blosc,\n"
    "                       lz4, zstd\n"
    "  --level N            the codec's compression level\n"
    "  --curve-secret KEY   require CURVE: KEY is this server's secret key\n"
    "                       (40 z85 characters), or @FILE to read it from\n"
    "                       FILE (a key on the command line is visible to\n"
    "                       other users in ps); the environment variable\n"
    "                       PARTD_CURVE_SECRET works too.  The public key,\n"
    "                       which clients need, is logged at start\n"
    "  --curve-clients FILE with --curve-secret: admit only the clients\n"
    "                       whose CURVE public key is in FILE (one key per\n"
    "                       line; blank lines and lines starting with #\n"
    "                       are skipped); others are refused and logged\n"
    "  --timeout SECONDS    stop after SECONDS without a request\n"
    "  -v, --verbose        log every request\n"
    "  -q, --quiet          log only warnings and errors\n"
    "  -h, --help           show this help\n"
    "\n"
    "Anyone who can connect can read, write and drop the store: keep tcp on\n"
    "127.0.0.1, or use CURVE.\n"
    "\n"
    "Exit status: 0 after a clean stop, 1 on failure (message on standard\n"
    "error), 2 on a usage error.\n";

const char *pd_cli_serve_help(void) { return s_help; }

static pd_server *volatile s_srv;

static void s_on_signal(int sig) {
    (void)sig;
    pd_server *srv = s_srv;
    if (srv) pd_server_stop(srv);
}

static int s_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "partd: serve: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'partd serve --help'.\n");
    va_end(ap);
    return 2;
}

static int s_fail(const char *msg) {
    fprintf(stderr, "partd: serve: %s\n", msg);
    return 1;
}

static int s_parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
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
    const char *path, *codec, *curve, *clients;
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
        return 1;
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
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(s_help, stdout);
            return fflush(stdout) == 0 ? 0 : 1;
        }
        if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
            a->log_level = PD_LOG_DEBUG;
            continue;
        }
        if (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0) {
            a->log_level = PD_LOG_WARN;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            return s_usage("unexpected argument '%.100s'", arg);
        static const char *const with_value[] = {
            "path",  "bind",         "memory",  "codec",
            "level", "curve-secret", "timeout", "curve-clients"};
        const char *val = NULL;
        char why[160];
        int which = pd_cli_take_option(argc, argv, &i, with_value, 8, &val, why,
                                       sizeof why);
        if (which < 0) return s_usage("%s", why);
        switch (which) {
        case 0: a->path = val; break;
        case 1:
            if (a->nbind == S_MAX_BINDS)
                return s_usage("at most %d --bind options", S_MAX_BINDS);
            a->binds[a->nbind++] = val;
            break;
        case 2:
            if (pd_cli_parse_bytes(val, &a->memory) || a->memory == 0)
                return s_usage("--memory '%.100s': not a positive number of "
                               "bytes",
                               val);
            a->have_memory = true;
            break;
        case 3: a->codec = val; break;
        case 4:
            if (s_parse_int(val, -1000000, 1000000, &a->level))
                return s_usage("--level '%.100s': not an integer", val);
            a->have_level = true;
            break;
        case 5: a->curve = val; break;
        case 6:
            if (s_parse_int(val, 1, 100000000, &a->timeout))
                return s_usage("--timeout '%.100s': not a positive number of "
                               "seconds",
                               val);
            break;
        case 7: a->clients = val; break;
        }
    }
    if (a->have_level && !a->codec) return s_usage("--level needs --codec");
    return -1;
}

/* Builds Buffer(Dict, [Encode](File)) for --path and/or --codec. */
static int s_open_store(const s_args *a, pd_store **out) {
    pd_store *file = NULL, *slow = NULL, *fast = NULL;
    int rc = a->path ? pd_file_open(&file, a->path, PD_FILE_CREATE)
                     : pd_file_open_temp(&file, NULL, 0);
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
    if ((a.path || a.codec) && s_open_store(&a, &store)) {
        free(client_keys);
        free(clients);
        return 1;
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
        return 1;
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
    s_srv = NULL;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (pd_server_close(&srv) && status == 0) status = s_fail(pd_errmsg(NULL));
    return status;
}
