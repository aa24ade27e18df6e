/*
 * `partd demo`: the job libpartd is for, end to end: a multiprocess
 * shuffle (see demo.h and the help text below).
 *
 * Processes: this one (the coordinator), one `partd serve` (pd_cli_serve in
 * a forked child, unless --direct) and W workers.  The children are forked
 * before this process touches ZeroMQ, so none inherits a context, and they
 * run in a process group of their own: a ^C on the terminal reaches only
 * the coordinator, which then stops them in order (workers, then the server)
 * and reaps them all.  On Linux each child also gets PR_SET_PDEATHSIG, so
 * that none outlives a coordinator killed with SIGKILL.
 *
 * Records: record-size bytes each: an 8-byte key (a 64-bit mix of the seed
 * and the record's index), the index, then letters derived from the key
 * (compressible, about 2:1 for zlib or zstd).  The partition is key % P.
 * Worker w makes records [N*w/W, N*(w+1)/W), keeps one buffer per
 * partition and appends a partition's buffer when it is full (64 KiB), so
 * each call carries hundreds of records; the rest goes in one batch at the
 * end.  Each worker counts, per partition, its records and the sum of their
 * 64-bit hashes (order-independent) in a shared mapping; the coordinator
 * reads every partition back and compares.  The mapping also carries each
 * worker's progress (records sent) and its error message.
 *
 * With --codec the workers compress (an Encode layer over their client or
 * File), so the work is spread over the workers and the server stores and
 * spills frames as they come: the store is then `partd get --codec C`'s.
 */
#include "partd/partd.h"
#include "demo.h"
#include "args.h"
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define S_EXIT_OK 0
#define S_EXIT_FAIL 1
#define S_EXIT_USAGE 2
#define S_EXIT_INTR 130

/* Defaults: about 20 s on 2 cores (see the help text). */
#define S_DEF_RECORDS 10000000u
#define S_DEF_WORKERS 2u
#define S_DEF_PARTS 64u
#define S_DEF_RECSIZE 100u
#define S_DEF_MEMORY ((uint64_t)256 << 20)
#define S_DEF_SEED 42u

#define S_MAX_WORKERS 64u
#define S_MAX_PARTS 65536u
#define S_MIN_RECSIZE 16u /* key and index */
#define S_MAX_RECSIZE 65536u
#define S_MAX_RECORDS ((uint64_t)1 << 40)
#define S_BATCH 65536u /* a partition's buffer, appended when full */
#define S_BATCH_BUDGET (16u << 20) /* all of a worker's buffers together */
#define S_CLIENT_TIMEOUT_MS 60000
#define S_SERVER_START_S 30.0 /* to print its address */
#define S_SERVER_STOP_S 300.0 /* to flush the Buffer to disk and exit */
#define S_GRACE_S 5.0         /* between SIGTERM and SIGKILL */

static const char s_help[] =
    "usage:\n"
    "  partd demo [--records N] [--workers W] [--partitions P]\n"
    "             [--record-size B] [--codec NAME [--level N]]\n"
    "             [--memory BYTES] [--dir DIR] [--keep] [--direct]\n"
    "             [--seed S] [-q|--quiet]\n"
    "\n"
    "A multiprocess shuffle, end to end.  Starts a `partd serve` over ipc\n"
    "and W worker processes; each worker generates its share of N records\n"
    "(random 8-byte keys, then payload) and appends each to partition\n"
    "key % P through the server, in batches of up to 64 KiB per partition.\n"
    "Then reads every partition back, checks its record count and checksum\n"
    "(the sum of the records' 64-bit hashes), and prints the throughput of\n"
    "both phases, the peak memory of the processes and the disk used.  A\n"
    "progress bar on a terminal (plain lines every few seconds otherwise)\n"
    "goes to standard error, the report to standard output.\n"
    "\n"
    "Options:\n"
    "  --records N        records in all (suffix k, M, G: thousands,\n"
    "                     millions, billions); default 10M: 1 GB, about\n"
    "                     6 s on 2 cores (longer with a --codec)\n"
    "  --workers W        worker processes, 1-64; default 2\n"
    "  --partitions P     partitions (keys p00000, p00001, ...), 1-65536;\n"
    "                     default 64\n"
    "  --record-size B    bytes per record, 16-65536; default 100\n"
    "  --codec NAME       workers compress each batch with NAME: zlib, bz2,\n"
    "                     snappy, blosc, lz4, zstd (read the store with\n"
    "                     `partd get --codec NAME`); default none\n"
    "  --level N          the codec's compression level\n"
    "  --memory BYTES     the server's Buffer keeps up to BYTES in memory,\n"
    "                     then spills to DIR (suffix k, M, G, T: powers of\n"
    "                     1024); default 256M\n"
    "  --dir DIR          the store's directory (created if missing; must\n"
    "                     hold no keys yet), kept at the end; default: in a\n"
    "                     new private directory in $TMPDIR (else /tmp),\n"
    "                     removed at the end\n"
    "  --keep             keep that temporary store (its path is printed)\n"
    "  --direct           no server: workers append straight into a File\n"
    "                     store in DIR, under its lock (flock)\n"
    "  --seed S           seed of the records; default 42\n"
    "  -q, --quiet        no progress, only the report and errors\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 when every partition holds exactly the records written\n"
    "to it; 1 on failure (a worker or the server failed or died, a count or\n"
    "checksum differs, an I/O error: the message names the process or the\n"
    "partition); 2 on a usage error; 130 when interrupted (SIGINT,\n"
    "SIGTERM, SIGHUP).  Every process is stopped and the temporary\n"
    "directory removed in every case.\n";

const char *pd_cli_demo_help(void) { return s_help; }

/* ----------------------------------------------------------- State */

typedef struct s_opts {
    uint64_t records, memory, seed;
    unsigned workers, parts;
    size_t recsize;
    const char *codec, *dir;
    int level;
    bool have_memory, keep, direct, quiet;
} s_opts;

/* A worker's corner of the shared mapping. */
typedef struct s_slot {
    _Atomic uint64_t sent; /* records handed to the store */
    char error[512];       /* why it failed, when it exits 1 */
} s_slot;

/* Per worker and partition, in the shared mapping after the slots. */
typedef struct s_sum {
    uint64_t count, sum;
} s_sum;

typedef struct s_child {
    pid_t pid; /* 0: never started */
    bool live;
    int status;
    struct rusage ru;
} s_child;

typedef struct s_demo {
    s_opts o;
    char run[PATH_MAX]; /* private (0700): the socket, the temporary store */
    char dir[PATH_MAX]; /* the store: --dir, or run/store */
    char bind[PATH_MAX + 16];
    bool temp; /* dir is run/store: removed at the end unless --keep */
    char addr[1024];
    s_child server;
    s_child *workers;
    pid_t pgid; /* the children's process group */
    void *shm;
    size_t shm_size;
    s_slot *slots;
    s_sum *expect; /* [worker * parts + partition] */
    bool tty;
    double last_shown; /* progress, s_now() */
    bool line_open;    /* a progress line without its newline */
    char failure[1024];
    int failed; /* S_EXIT_FAIL or S_EXIT_INTR once failed */
} s_demo;

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig) { s_stop = sig; }

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void s_sleep_ms(int ms) { (void)poll(NULL, 0, ms); }

/* ---------------------------------------------------------- Output */

static void s_clear_line(s_demo *d) {
    if (d && d->line_open) {
        fputs("\r\033[K", stderr);
        d->line_open = false;
    }
}

/* "partd: demo: ..." on stderr. */
static void s_errf(s_demo *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void s_errf(s_demo *d, const char *fmt, ...) {
    s_clear_line(d);
    va_list ap;
    va_start(ap, fmt);
    fputs("partd: demo: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

/* Records the first failure (later ones are consequences); returns 1. */
static int s_fail(s_demo *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int s_fail(s_demo *d, const char *fmt, ...) {
    if (d->failed) return d->failed;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->failure, sizeof d->failure, fmt, ap);
    va_end(ap);
    d->failed = S_EXIT_FAIL;
    return d->failed;
}

static int s_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("partd: demo: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nusage: partd demo [--records N] [--workers W] [--partitions P] "
          "...\nTry 'partd demo --help'.\n",
          stderr);
    va_end(ap);
    return S_EXIT_USAGE;
}

/* 1234567 -> "1.23M" (for the progress line). */
static const char *s_count_str(uint64_t n, char buf[16]) {
    if (n >= 1000000000)
        snprintf(buf, 16, "%.2fG", (double)n / 1e9);
    else if (n >= 1000000)
        snprintf(buf, 16, "%.2fM", (double)n / 1e6);
    else if (n >= 10000)
        snprintf(buf, 16, "%.1fk", (double)n / 1e3);
    else
        snprintf(buf, 16, "%" PRIu64, n);
    return buf;
}

/* The progress of a phase: on a terminal a bar redrawn 5 times a second,
 * else a line every 5 seconds.  `final` draws it whatever the time. */
static void s_progress(s_demo *d, const char *phase, uint64_t done,
                       uint64_t total, const char *unit, uint64_t bytes,
                       double t_start, bool final) {
    if (d->o.quiet) return;
    double now = s_now();
    if (!final && now - d->last_shown < (d->tty ? 0.2 : 5.0)) return;
    d->last_shown = now;
    double el = now - t_start;
    double mbs = el > 0 ? (double)bytes / 1e6 / el : 0;
    unsigned pct = total ? (unsigned)(done * 100 / total) : 100;
    char a[16], b[16];
    if (d->tty) {
        char bar[21];
        unsigned fill = pct / 5;
        for (unsigned i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '-';
        bar[20] = '\0';
        fprintf(stderr, "\r\033[K%-7s [%s] %3u%%  %s/%s %s  %.1f MB/s  %.0f s",
                phase, bar, pct, s_count_str(done, a), s_count_str(total, b),
                unit, mbs, el);
        d->line_open = true;
    } else if (!final) {
        fprintf(stderr,
                "partd demo: %s: %u%% (%" PRIu64 "/%" PRIu64
                " %s, %.1f MB/s, %.1f s)\n",
                phase, pct, done, total, unit, mbs, el);
    }
    fflush(stderr);
}

/* ----------------------------------------------------------- Options */

/* A decimal count with an optional k, M, G suffix (powers of 1000). */
static int s_parse_count(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    uint64_t mul = 1;
    if (*end) {
        if (end[1]) return -1;
        switch (*end) {
        case 'k':
        case 'K': mul = 1000; break;
        case 'm':
        case 'M': mul = 1000000; break;
        case 'g':
        case 'G': mul = 1000000000; break;
        default: return -1;
        }
    }
    if (v > UINT64_MAX / mul) return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

static int s_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Parses argv[1..argc) into o; returns -1 to go on, else an exit code. */
static int s_parse(int argc, char **argv, s_opts *o) {
    static const char *const with_value[] = {
        "records", "workers", "partitions", "record-size", "codec",
        "level",   "memory",  "dir",        "seed"};
    enum { N_WITH = sizeof with_value / sizeof with_value[0] };
    bool have_level = false;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(s_help, stdout);
            return fflush(stdout) == 0 ? S_EXIT_OK : S_EXIT_FAIL;
        }
        if (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0) {
            o->quiet = true;
            continue;
        }
        if (strcmp(arg, "--keep") == 0) {
            o->keep = true;
            continue;
        }
        if (strcmp(arg, "--direct") == 0) {
            o->direct = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return s_usage("unexpected argument '%.100s'", arg);
        const char *val = NULL;
        char why[160];
        int which = pd_cli_take_option(argc, argv, &i, with_value, N_WITH, &val,
                                       why, sizeof why);
        if (which < 0) return s_usage("%s", why);
        uint64_t v = 0;
        switch (which) {
        case 0:
            if (s_parse_count(val, &v) || v < 1 || v > S_MAX_RECORDS)
                return s_usage("--records '%.100s': not a number from 1 to "
                               "%" PRIu64,
                               val, S_MAX_RECORDS);
            o->records = v;
            break;
        case 1:
            if (s_parse_u64(val, 1, S_MAX_WORKERS, &v))
                return s_usage("--workers '%.100s': not a number from 1 to %u",
                               val, S_MAX_WORKERS);
            o->workers = (unsigned)v;
            break;
        case 2:
            if (s_parse_u64(val, 1, S_MAX_PARTS, &v))
                return s_usage("--partitions '%.100s': not a number from 1 "
                               "to %u",
                               val, S_MAX_PARTS);
            o->parts = (unsigned)v;
            break;
        case 3:
            if (s_parse_u64(val, S_MIN_RECSIZE, S_MAX_RECSIZE, &v))
                return s_usage("--record-size '%.100s': not a number from %u "
                               "to %u",
                               val, S_MIN_RECSIZE, S_MAX_RECSIZE);
            o->recsize = (size_t)v;
            break;
        case 4: o->codec = val; break;
        case 5: {
            char *end;
            errno = 0;
            long l = strtol(val, &end, 10);
            if (errno || end == val || *end || l < -1000000 || l > 1000000)
                return s_usage("--level '%.100s': not an integer", val);
            o->level = (int)l;
            have_level = true;
            break;
        }
        case 6:
            if (pd_cli_parse_bytes(val, &v) || v == 0)
                return s_usage("--memory '%.100s': not a positive number of "
                               "bytes",
                               val);
            o->memory = v;
            o->have_memory = true;
            break;
        case 7:
            if (!*val) return s_usage("--dir: empty");
            o->dir = val;
            break;
        case 8:
            if (s_parse_u64(val, 0, UINT64_MAX, &v))
                return s_usage("--seed '%.100s': not a number", val);
            o->seed = v;
            break;
        }
    }
    if (have_level && !o->codec) return s_usage("--level needs --codec");
    if (o->have_memory && o->direct)
        return s_usage("--memory is the server's: not with --direct");
    if (o->keep && o->dir)
        return s_usage("--keep is for the temporary directory: a --dir is "
                       "always kept");
    if (o->codec) {
        pd_codec c;
        int rc = pd_codec_builtin(&c, o->codec, o->level);
        if (rc) return s_usage("--codec: %s", pd_errmsg(NULL));
        if (c.destroy) c.destroy(c.ctx);
    }
    return -1;
}

/* ----------------------------------------------------------- Records */

static inline uint64_t s_mix(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static inline uint64_t s_load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The key of record number g of the run with this seed. */
static inline uint64_t s_record_key(uint64_t seed, uint64_t g) {
    return s_mix(seed ^ s_mix(g + 0x9e3779b97f4a7c15u));
}

/* Record number g, whose key is `key`, into rec[0..size). */
static void s_make_record(uint64_t key, uint64_t g, unsigned char *rec,
                          size_t size) {
    memcpy(rec, &key, 8);
    memcpy(rec + 8, &g, 8);
    uint64_t x = key;
    for (size_t i = 16; i < size; i += 16) {
        /* 16 letters a-p from one 64-bit draw: its nibbles. */
        x = s_mix(x + 0x9e3779b97f4a7c15u);
        unsigned char l[16];
        uint64_t lo = (x & 0x0f0f0f0f0f0f0f0fu) + 0x6161616161616161u;
        uint64_t hi = ((x >> 4) & 0x0f0f0f0f0f0f0f0fu) + 0x6161616161616161u;
        memcpy(l, &lo, 8);
        memcpy(l + 8, &hi, 8);
        memcpy(rec + i, l, size - i < 16 ? size - i : 16);
    }
}

/* A 64-bit hash of one record, for the order-independent checksum. */
static uint64_t s_hash(const unsigned char *p, size_t n) {
    uint64_t h = 0x243f6a8885a308d3u ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h = (h ^ s_load64(p + i)) * 0x9fb21c651e98df25u;
        h ^= h >> 29;
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, p + i, n - i);
        h = (h ^ w) * 0x9fb21c651e98df25u;
    }
    return s_mix(h);
}

static void s_part_name(unsigned p, char name[8]) {
    snprintf(name, 8, "p%05u", p % 100000); /* p < S_MAX_PARTS */
}

/* Whether k is the name of one of the P partitions. */
static bool s_is_part_key(const pd_key *k, unsigned P) {
    const char *c = k->data;
    if (k->nparts != 0 || k->size != 6 || c[0] != 'p') return false;
    unsigned p = 0;
    for (int i = 1; i < 6; i++) {
        if (c[i] < '0' || c[i] > '9') return false;
        p = p * 10 + (unsigned)(c[i] - '0');
    }
    return p < P;
}

/* ---------------------------------------------------------- Children */

/* In a new child: default signal handling, into the children's process
 * group, and dies with the coordinator. */
static void s_child_setup(s_demo *d, int deathsig) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    /* A file size limit (ulimit -f) then fails the write with EFBIG, which
     * the store reports, instead of killing the process. */
    signal(SIGXFSZ, SIG_IGN);
    (void)setpgid(0, d->pgid);
#ifdef __linux__
    (void)prctl(PR_SET_PDEATHSIG, deathsig);
#else
    (void)deathsig;
#endif
}

/* Reaps c if it exited (block: wait for it).  Returns true if it is gone. */
static bool s_reap(s_child *c, bool block) {
    if (!c->pid || !c->live) return true;
    for (;;) {
        pid_t r = wait4(c->pid, &c->status, block ? 0 : WNOHANG, &c->ru);
        if (r == c->pid) {
            c->live = false;
            return true;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { /* ECHILD: not ours any more; nothing to reap */
            c->live = false;
            c->status = 0;
            memset(&c->ru, 0, sizeof c->ru);
            return true;
        }
        return false;
    }
}

/* "exited with status 1", "was killed by signal 9 (Killed)". */
static const char *s_status_str(int st, char *buf, size_t cap) {
    if (WIFEXITED(st))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    else
        snprintf(buf, cap, "ended with wait status %#x", (unsigned)st);
    return buf;
}

/* Stops every live child: SIGTERM to the workers, then the server (which
 * stops cleanly), SIGKILL to whatever is left after the grace time; reaps
 * them all. */
static void s_stop_children(s_demo *d) {
    for (unsigned w = 0; w < d->o.workers; w++)
        if (d->workers[w].live) kill(d->workers[w].pid, SIGTERM);
    if (d->server.live) kill(d->server.pid, SIGTERM);
    double until = s_now() + S_GRACE_S;
    for (;;) {
        bool any = false;
        for (unsigned w = 0; w < d->o.workers; w++)
            if (!s_reap(&d->workers[w], false)) any = true;
        if (!s_reap(&d->server, false)) any = true;
        if (!any) return;
        if (s_now() > until) break;
        s_sleep_ms(10);
    }
    for (unsigned w = 0; w < d->o.workers; w++)
        if (d->workers[w].live) kill(d->workers[w].pid, SIGKILL);
    if (d->server.live) kill(d->server.pid, SIGKILL);
    for (unsigned w = 0; w < d->o.workers; w++) s_reap(&d->workers[w], true);
    s_reap(&d->server, true);
}

/* The server: `partd serve --path DIR --memory M -q` in a child, its
 * standard output (where it prints its address) a pipe read here. */
static int s_start_server(s_demo *d) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC)) return s_fail(d, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return s_fail(d, "fork (server): %s", strerror(e));
    }
    if (pid == 0) {
        d->pgid = 0; /* leads the children's group */
        s_child_setup(d, SIGTERM);
        if (dup2(fds[1], STDOUT_FILENO) < 0) _exit(S_EXIT_FAIL);
        char mem[32], a0[] = "serve", a1[] = "--path", a3[] = "--memory",
                      a5[] = "-q", a6[] = "--bind";
        snprintf(mem, sizeof mem, "%" PRIu64,
                 d->o.have_memory ? d->o.memory : S_DEF_MEMORY);
        char *argv[] = {a0, a1, d->dir, a3, mem, a5, a6, d->bind, NULL};
        /* Without --bind (a path too long for ipc) the server makes its
         * own private socket directory. */
        int rc = pd_cli_serve(d->bind[0] ? 8 : 6, argv);
        fflush(NULL);
        _exit(rc);
    }
    close(fds[1]);
    d->server.pid = pid;
    d->server.live = true;
    d->pgid = pid;
    (void)setpgid(pid, pid); /* also here: whichever runs first */

    /* Its first line is the address. */
    size_t len = 0;
    double until = s_now() + S_SERVER_START_S;
    int rc = 0;
    bool eof = false;
    while (rc == 0) {
        if (s_stop) {
            rc = S_EXIT_INTR;
            break;
        }
        if (s_now() > until) {
            rc = s_fail(d, "server (pid %d) printed no address in %.0f s",
                        (int)pid, S_SERVER_START_S);
            break;
        }
        struct pollfd pf = {fds[0], POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0) continue;
        ssize_t r = read(fds[0], d->addr + len, sizeof d->addr - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            eof = true;
            break;
        }
        len += (size_t)r;
        d->addr[len] = '\0';
        char *nl = strchr(d->addr, '\n');
        if (nl) {
            *nl = '\0';
            break;
        }
        if (len == sizeof d->addr - 1) {
            rc = s_fail(d, "server (pid %d) printed an address too long",
                        (int)pid);
            break;
        }
    }
    close(fds[0]);
    if (eof) {
        /* It closed its output: it is exiting; say how. */
        for (int i = 0; i < 200 && !s_reap(&d->server, false); i++)
            s_sleep_ms(10);
        char st[96];
        if (d->server.live)
            rc = s_fail(d,
                        "server (pid %d) closed its output before it "
                        "printed its address",
                        (int)pid);
        else
            rc =
                s_fail(d, "server (pid %d) %s before it printed its address",
                       (int)pid, s_status_str(d->server.status, st, sizeof st));
    }
    return rc;
}

/* The worker's store: a client of the server, or the File in DIR; with
 * --codec, an Encode layer over it.  *client: the client, borrowed. */
static int s_open_store(const s_demo *d, pd_store **out, pd_store **client,
                        char *why, size_t cap) {
    pd_store *inner = NULL;
    *out = NULL;
    *client = NULL;
    int rc;
    if (d->o.direct) {
        rc = pd_file_open(&inner, d->dir, 0);
    } else {
        pd_client_opts co = {0};
        co.timeout_ms = S_CLIENT_TIMEOUT_MS;
        rc = pd_client_open(&inner, d->addr, &co);
        *client = inner;
    }
    if (rc == 0 && d->o.codec) {
        rc = pd_compress_open(out, &inner, d->o.codec, d->o.level, 0);
        if (rc) pd_close(&inner);
    } else {
        *out = inner;
    }
    if (rc) {
        *client = NULL;
        snprintf(why, cap, "open the store: %s", pd_errmsg(NULL));
    }
    return rc;
}

/* A worker, in its child: generates its records, appends them; returns the
 * exit status (the reason in its slot). */
static int s_worker(s_demo *d, unsigned w) {
    s_slot *slot = &d->slots[w];
    s_sum *exp = d->expect + (size_t)w * d->o.parts;
    const unsigned P = d->o.parts;
    const size_t B = d->o.recsize;
    uint64_t lo = d->o.records * w / d->o.workers;
    uint64_t hi = d->o.records * (w + 1) / d->o.workers;

    /* Records per partition buffer: 64 KiB worth, fewer when there are so
     * many partitions that the buffers would pass S_BATCH_BUDGET. */
    size_t per = S_BATCH / B;
    size_t budget = S_BATCH_BUDGET / P / B;
    if (budget < per) per = budget;
    if (per == 0) per = 1;
    size_t cap = per * B;
    unsigned char *buf = malloc((size_t)P * cap);
    size_t *len = calloc(P, sizeof *len);
    pd_key *keys = calloc(P, sizeof *keys);
    pd_bytes *vals = calloc(P, sizeof *vals);
    char(*names)[8] = calloc(P, sizeof *names);
    pd_store *s = NULL, *client = NULL;
    int rc = S_EXIT_FAIL;
    if (!buf || !len || !keys || !vals || !names) {
        snprintf(slot->error, sizeof slot->error, "out of memory");
        goto out;
    }
    for (unsigned p = 0; p < P; p++) s_part_name(p, names[p]);
    if (s_open_store(d, &s, &client, slot->error, sizeof slot->error)) goto out;

    uint64_t sent = 0;
    for (uint64_t g = lo; g < hi; g++) {
        uint64_t key = s_record_key(d->o.seed, g);
        unsigned p = (unsigned)(key % P);
        unsigned char *rec = buf + (size_t)p * cap + len[p];
        s_make_record(key, g, rec, B);
        exp[p].count++;
        exp[p].sum += s_hash(rec, B);
        len[p] += B;
        if (len[p] == cap) {
            pd_key k = PD_KEY(names[p], 6);
            pd_bytes v = PD_BYTES(buf + (size_t)p * cap, cap);
            if (pd_append(s, 1, &k, &v, 0) != 0) {
                snprintf(slot->error, sizeof slot->error, "append %s: %s",
                         names[p], pd_errmsg(s));
                goto out;
            }
            len[p] = 0;
            sent += per;
            atomic_store_explicit(&slot->sent, sent, memory_order_relaxed);
        }
    }
    /* What is left, in one batch. */
    size_t n = 0;
    for (unsigned p = 0; p < P; p++) {
        if (!len[p]) continue;
        keys[n] = PD_KEY(names[p], 6);
        vals[n] = PD_BYTES(buf + (size_t)p * cap, len[p]);
        sent += len[p] / B;
        n++;
    }
    if (n && pd_append(s, n, keys, vals, 0) != 0) {
        snprintf(slot->error, sizeof slot->error, "append (last %zu keys): %s",
                 n, pd_errmsg(s));
        goto out;
    }
    /* The client returns before the server's reply: wait for the last. */
    if (client && pd_client_sync(client) != 0) {
        snprintf(slot->error, sizeof slot->error, "append: %s",
                 pd_errmsg(client));
        goto out;
    }
    atomic_store_explicit(&slot->sent, sent, memory_order_relaxed);
    rc = S_EXIT_OK;
out:
    if (s && pd_close(&s) != 0 && rc == S_EXIT_OK) {
        snprintf(slot->error, sizeof slot->error, "close: %s", pd_errmsg(NULL));
        rc = S_EXIT_FAIL;
    }
    free(buf);
    free(len);
    free(keys);
    free(vals);
    free(names);
    return rc;
}

static int s_start_workers(s_demo *d) {
    for (unsigned w = 0; w < d->o.workers; w++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            return s_fail(d, "fork (worker %u): %s", w, strerror(errno));
        if (pid == 0) {
            s_child_setup(d, SIGKILL);
            int rc = s_worker(d, w);
            fflush(NULL);
            _exit(rc);
        }
        d->workers[w].pid = pid;
        d->workers[w].live = true;
        if (d->o.direct && w == 0) d->pgid = pid;
        (void)setpgid(pid, d->pgid);
    }
    return 0;
}

/* A child that ended: a failure unless it is a worker that exited 0. */
static int s_check_exits(s_demo *d) {
    char st[96];
    for (unsigned w = 0; w < d->o.workers; w++) {
        s_child *c = &d->workers[w];
        if (c->live && s_reap(c, false) && c->pid) {
            if (WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0) continue;
            s_slot *slot = &d->slots[w];
            slot->error[sizeof slot->error - 1] = '\0';
            if (WIFEXITED(c->status) && slot->error[0])
                return s_fail(d, "worker %u (pid %d) failed: %s", w,
                              (int)c->pid, slot->error);
            return s_fail(d, "worker %u (pid %d) %s", w, (int)c->pid,
                          s_status_str(c->status, st, sizeof st));
        }
    }
    if (d->server.live && s_reap(&d->server, false))
        return s_fail(d, "server (pid %d) %s while the demo ran",
                      (int)d->server.pid,
                      s_status_str(d->server.status, st, sizeof st));
    return 0;
}

/* ------------------------------------------------------------ Phases */

static void s_report_workers(const s_demo *d);

typedef struct s_phase {
    double secs;
    uint64_t bytes, records;
} s_phase;

/* Waits for the workers, drawing progress; fails as soon as one fails. */
static int s_shuffle(s_demo *d, s_phase *ph) {
    double t0 = s_now();
    uint64_t total = d->o.records;
    int rc = s_start_workers(d);
    if (rc == 0) s_report_workers(d);
    d->last_shown = t0;
    while (rc == 0) {
        if (s_stop) return S_EXIT_INTR;
        rc = s_check_exits(d);
        if (rc) break;
        uint64_t done = 0;
        bool live = false;
        for (unsigned w = 0; w < d->o.workers; w++) {
            done +=
                atomic_load_explicit(&d->slots[w].sent, memory_order_relaxed);
            live |= d->workers[w].live;
        }
        if (!live) break;
        s_progress(d, "shuffle", done, total, "records", done * d->o.recsize,
                   t0, false);
        s_sleep_ms(20);
    }
    ph->secs = s_now() - t0;
    ph->records = total;
    ph->bytes = total * d->o.recsize;
    s_clear_line(d);
    return rc;
}

/* Checks partition p's bytes; adds what it holds to *got. */
static int s_check_part(s_demo *d, unsigned p, pd_bytes v, s_sum *got) {
    const size_t B = d->o.recsize;
    const unsigned char *data = v.data;
    if (v.size % B)
        return s_fail(d,
                      "verify: partition p%05u holds %zu bytes, not a whole "
                      "number of %zu-byte records",
                      p, v.size, B);
    for (size_t off = 0; off < v.size; off += B) {
        const unsigned char *rec = data + off;
        uint64_t key = s_load64(rec), g = s_load64(rec + 8);
        if (key % d->o.parts != p || g >= d->o.records)
            return s_fail(d,
                          "verify: partition p%05u, record %zu (offset %zu): "
                          "not a record of this partition (key %#" PRIx64
                          ", index %" PRIu64 ")",
                          p, off / B, off, key, g);
        got->count++;
        got->sum += s_hash(rec, B);
    }
    return 0;
}

/* Reads every partition back and compares it with what the workers wrote;
 * with the server, then asks it to stop (it flushes its Buffer to DIR). */
static int s_read_back(s_demo *d, s_phase *ph, uint64_t *nkeys) {
    pd_store *s = NULL, *client = NULL;
    char why[768];
    double t0 = s_now();
    const unsigned P = d->o.parts;
    ph->bytes = ph->records = 0;
    d->last_shown = t0;
    if (s_open_store(d, &s, &client, why, sizeof why))
        return s_fail(d, "read: %s", why);
    int rc = 0;
    for (unsigned p = 0; p < P && rc == 0; p++) {
        if (s_stop) {
            rc = S_EXIT_INTR;
            break;
        }
        if ((rc = s_check_exits(d))) break;
        char name[8];
        s_part_name(p, name);
        pd_key k = PD_KEY(name, 6);
        pd_result *r = NULL;
        if (pd_get(s, 1, &k, &r, 0) != 0) {
            rc = s_fail(d, "read: get %s: %s", name, pd_errmsg(s));
            break;
        }
        pd_bytes v = pd_result_value(r, 0);
        s_sum got = {0, 0}, want = {0, 0};
        rc = s_check_part(d, p, v, &got);
        pd_result_free(&r);
        if (rc) break;
        for (unsigned w = 0; w < d->o.workers; w++) {
            want.count += d->expect[(size_t)w * P + p].count;
            want.sum += d->expect[(size_t)w * P + p].sum;
        }
        if (got.count != want.count)
            rc = s_fail(d,
                        "verify: partition %s holds %" PRIu64
                        " records, %" PRIu64 " were written to it",
                        name, got.count, want.count);
        else if (got.sum != want.sum)
            rc = s_fail(d,
                        "verify: partition %s: checksum %#" PRIx64
                        ", expected %#" PRIx64
                        ": its records are not those written",
                        name, got.sum, want.sum);
        ph->records += got.count;
        ph->bytes += v.size;
        s_progress(d, "read", p + 1, P, "partitions", ph->bytes, t0, false);
    }
    /* Nothing but the partitions. */
    pd_keylist *kl = NULL;
    if (rc == 0 && pd_keys(s, &kl, 0) != 0)
        rc = s_fail(d, "read: keys: %s", pd_errmsg(s));
    if (rc == 0) {
        *nkeys = pd_keylist_count(kl);
        for (size_t i = 0; i < *nkeys && rc == 0; i++) {
            pd_key k;
            if (pd_keylist_key(kl, i, &k) == 0 && s_is_part_key(&k, P))
                continue;
            char repr[64];
            pd_key_repr(&k, repr, sizeof repr);
            rc = s_fail(d,
                        "verify: the store holds a key %s that is no "
                        "partition's",
                        repr);
        }
    }
    pd_keylist_free(&kl);
    ph->secs = s_now() - t0;
    s_clear_line(d);
    if (client && rc == 0 && pd_client_close_server(client) != 0)
        rc = s_fail(d, "stop the server: %s", pd_errmsg(client));
    if (pd_close(&s) != 0 && rc == 0)
        rc = s_fail(d, "read: close: %s", pd_errmsg(NULL));
    return rc;
}

/* Waits for the server to exit after `close` (it flushes to disk). */
static int s_wait_server(s_demo *d, double *secs) {
    double t0 = s_now();
    while (!s_reap(&d->server, false)) {
        if (s_stop) return S_EXIT_INTR;
        if (s_now() - t0 > S_SERVER_STOP_S)
            return s_fail(d,
                          "server (pid %d) did not exit %.0f s after "
                          "`close`",
                          (int)d->server.pid, S_SERVER_STOP_S);
        s_sleep_ms(10);
    }
    *secs = s_now() - t0;
    char st[96];
    if (!WIFEXITED(d->server.status) || WEXITSTATUS(d->server.status) != 0)
        return s_fail(d, "server (pid %d) %s", (int)d->server.pid,
                      s_status_str(d->server.status, st, sizeof st));
    return 0;
}

/* ------------------------------------------------------- Directories */

static uint64_t s_du_blocks, s_du_size;

static int s_du_fn(const char *path, const struct stat *st, int type,
                   struct FTW *f) {
    (void)path;
    (void)f;
    if (type == FTW_F) {
        s_du_blocks += (uint64_t)st->st_blocks * 512;
        s_du_size += (uint64_t)st->st_size;
    }
    return 0;
}

static int s_rm_fn(const char *path, const struct stat *st, int type,
                   struct FTW *f) {
    (void)st;
    (void)type;
    (void)f;
    if (remove(path) != 0 && errno != ENOENT) return -1;
    return 0;
}

/* Makes the private run directory, and the store directory in it or at
 * --dir; refuses a store that holds keys. */
static int s_prepare_dir(s_demo *d) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    if ((size_t)snprintf(d->run, sizeof d->run, "%s/partd-demo.XXXXXX", tmp) >=
        sizeof d->run - 16)
        return s_fail(d, "TMPDIR is too long");
    if (!mkdtemp(d->run)) {
        int e = errno;
        d->run[0] = '\0';
        return s_fail(d, "mkdtemp(%s/partd-demo.XXXXXX): %s", tmp, strerror(e));
    }
    /* The socket: sun_path holds 107 bytes. */
    if (strlen(d->run) + 5 <= 107)
        snprintf(d->bind, sizeof d->bind, "ipc://%s/sock", d->run);
    d->temp = !d->o.dir;
    if ((size_t)snprintf(d->dir, sizeof d->dir, "%s",
                         d->o.dir ? d->o.dir : d->run) >= sizeof d->dir - 8)
        return s_fail(d, "--dir: path too long");
    if (d->temp) strcat(d->dir, "/store");
    pd_store *f = NULL;
    pd_keylist *kl = NULL;
    if (pd_file_open(&f, d->dir, PD_FILE_CREATE) != 0)
        return s_fail(d, "%s", pd_errmsg(NULL));
    int rc = 0;
    if (pd_keys(f, &kl, 0) != 0)
        rc = s_fail(d, "%s", pd_errmsg(f));
    else if (pd_keylist_count(kl) > 0)
        rc = s_fail(d,
                    "%s already holds %zu keys: give a new or empty "
                    "directory (or `partd drop %s`)",
                    d->dir, pd_keylist_count(kl), d->dir);
    pd_keylist_free(&kl);
    if (pd_close(&f) != 0 && rc == 0) rc = s_fail(d, "%s", pd_errmsg(NULL));
    return rc;
}

/* Removes the run directory, or with --keep only what is not the store. */
static void s_cleanup_dir(s_demo *d) {
    if (!d->run[0]) return;
    if (d->temp && d->o.keep) {
        char sock[PATH_MAX + 8];
        snprintf(sock, sizeof sock, "%s/sock", d->run);
        (void)unlink(sock);
        return;
    }
    if (nftw(d->run, s_rm_fn, 16, FTW_DEPTH | FTW_PHYS) != 0)
        s_errf(d, "remove %s: %s", d->run, strerror(errno));
}

/* --------------------------------------------------------------- Main */

static double s_mb(uint64_t bytes) { return (double)bytes / 1e6; }

static double s_rate(double x, double secs) { return secs > 0 ? x / secs : 0; }

static void s_report_start(const s_demo *d) {
    const s_opts *o = &d->o;
    printf("partd demo: %" PRIu64 " records of %zu B (%.1f MB), %u worker%s, "
           "%u partitions, seed %" PRIu64 "\n",
           o->records, o->recsize, s_mb(o->records * o->recsize), o->workers,
           o->workers == 1 ? "" : "s", o->parts, o->seed);
    printf("store:   %s (%s), codec %s\n", d->dir,
           d->temp ? (o->keep ? "temporary, kept" : "temporary") : "kept",
           o->codec ? o->codec : "none");
    if (o->direct)
        printf("server:  none: workers append straight into the File store "
               "(flock)\n");
    else
        printf("server:  partd serve --path %s --memory %" PRIu64
               " (pid %d) at %s\n",
               d->dir, o->have_memory ? o->memory : S_DEF_MEMORY,
               (int)d->server.pid, d->addr);
    fflush(stdout);
}

static void s_report_workers(const s_demo *d) {
    printf("workers:");
    for (unsigned w = 0; w < d->o.workers; w++)
        printf(" %d", (int)d->workers[w].pid);
    printf(" (pids)\n");
    fflush(stdout);
}

int pd_cli_demo(int argc, char **argv) {
    s_demo d;
    memset(&d, 0, sizeof d);
    d.o.records = S_DEF_RECORDS;
    d.o.workers = S_DEF_WORKERS;
    d.o.parts = S_DEF_PARTS;
    d.o.recsize = S_DEF_RECSIZE;
    d.o.seed = S_DEF_SEED;
    d.o.level = PD_LEVEL_DEFAULT;
    int rc = s_parse(argc, argv, &d.o);
    if (rc >= 0) return rc;
    if (d.o.records > UINT64_MAX / d.o.recsize)
        return s_usage("--records times --record-size is too large");
    d.tty = isatty(STDERR_FILENO);

    s_stop = 0;
    struct sigaction sa, dfl, old_int, old_term, old_hup, old_chld;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    /* Inherited SIG_IGN would reap the children for us, and lose their
     * status. */
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, &old_chld);

    s_phase shuffle = {0}, readback = {0};
    double close_secs = 0;
    uint64_t nkeys = 0;
    d.workers = calloc(d.o.workers, sizeof *d.workers);
    /* Slots, then the sums; page-rounded by mmap.  Bounded by the option
     * limits: 64 workers x 65536 partitions x 16 bytes = 64 MiB. */
    d.shm_size = d.o.workers * sizeof(s_slot) +
                 (size_t)d.o.workers * d.o.parts * sizeof(s_sum);
    d.shm = mmap(NULL, d.shm_size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!d.workers || d.shm == MAP_FAILED) {
        d.shm = NULL;
        s_fail(&d, "out of memory");
        goto out;
    }
    d.slots = d.shm;
    d.expect = (s_sum *)(d.slots + d.o.workers);

    if (s_prepare_dir(&d)) goto out;
    if (!d.o.direct && (rc = s_start_server(&d)) != 0) {
        if (rc == S_EXIT_INTR) d.failed = S_EXIT_INTR;
        goto out;
    }
    s_report_start(&d);

    rc = s_shuffle(&d, &shuffle);
    if (rc == S_EXIT_INTR) d.failed = S_EXIT_INTR;
    if (rc) goto out;
    printf("shuffle: %" PRIu64 " records, %.1f MB in %.2f s: %.1f MB/s, "
           "%.0f records/s\n",
           shuffle.records, s_mb(shuffle.bytes), shuffle.secs,
           s_rate(s_mb(shuffle.bytes), shuffle.secs),
           s_rate((double)shuffle.records, shuffle.secs));
    fflush(stdout);

    rc = s_read_back(&d, &readback, &nkeys);
    if (rc == S_EXIT_INTR) d.failed = S_EXIT_INTR;
    if (rc) goto out;
    printf("read:    %u partitions, %.1f MB in %.2f s: %.1f MB/s, %.0f "
           "records/s\n",
           d.o.parts, s_mb(readback.bytes), readback.secs,
           s_rate(s_mb(readback.bytes), readback.secs),
           s_rate((double)readback.records, readback.secs));
    if (!d.o.direct) {
        rc = s_wait_server(&d, &close_secs);
        if (rc == S_EXIT_INTR) d.failed = S_EXIT_INTR;
        if (rc) goto out;
        printf("close:   the server flushed its Buffer to disk and exited "
               "in %.2f s\n",
               close_secs);
    }
    printf("verify:  OK: %" PRIu64 " keys, %" PRIu64
           " records: every partition's count and checksum match\n",
           nkeys, readback.records);

    /* Peak memory: the children's from wait4, this process's own. */
    uint64_t wmax = 0;
    for (unsigned w = 0; w < d.o.workers; w++)
        if ((uint64_t)d.workers[w].ru.ru_maxrss > wmax)
            wmax = (uint64_t)d.workers[w].ru.ru_maxrss;
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    if (d.o.direct)
        printf("memory:  peak RSS: workers %.1f MB (largest), demo %.1f MB\n",
               s_mb(wmax * 1024), s_mb((uint64_t)self.ru_maxrss * 1024));
    else
        printf("memory:  peak RSS: server %.1f MB, workers %.1f MB (largest), "
               "demo %.1f MB\n",
               s_mb((uint64_t)d.server.ru.ru_maxrss * 1024), s_mb(wmax * 1024),
               s_mb((uint64_t)self.ru_maxrss * 1024));
    s_du_blocks = s_du_size = 0;
    if (nftw(d.dir, s_du_fn, 16, FTW_PHYS) == 0)
        printf("disk:    %.1f MB used (%.1f MB of data) in %s%s\n",
               s_mb(s_du_blocks), s_mb(s_du_size), d.dir,
               d.temp && !d.o.keep ? " (removed)" : "");
    fflush(stdout);

out:
    s_clear_line(&d);
    if (s_stop && !d.failed) d.failed = S_EXIT_INTR;
    if (d.workers) s_stop_children(&d);
    if (d.failed == S_EXIT_INTR)
        s_errf(&d, "interrupted by signal %d (%s): stopped", (int)s_stop,
               strsignal((int)s_stop));
    else if (d.failed)
        s_errf(&d, "%s", d.failure);
    s_cleanup_dir(&d);
    if (d.failed) {
        printf("partd demo: FAILED\n");
    } else {
        if (d.temp && d.o.keep)
            printf("kept:    %s (e.g. `partd get %s%s%s%s p00000`)\n", d.dir,
                   d.o.codec ? "--codec " : "", d.o.codec ? d.o.codec : "",
                   d.o.codec ? " " : "", d.dir);
        printf("partd demo: OK\n");
    }
    if (fflush(stdout) != 0 && !d.failed) d.failed = S_EXIT_FAIL;
    if (d.shm) munmap(d.shm, d.shm_size);
    free(d.workers);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    return d.failed;
}
