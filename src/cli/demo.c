/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * `partd demo`: the job libpartd is for, end to end: a multiprocess
 * shuffle (see demo.h and the help text below).  This file: the options,
 * the directories, the report and pd_cli_demo; demo_proc.c the processes,
 * demo_verify.c the read-back; demo_int.h what they share.
 *
 * Processes: this one (the coordinator), one `partd serve` (pd_cli_serve in
 * a forked child, unless --direct), W workers, then W readers (fewer when
 * there are fewer partitions: demo_verify.c).  The children are forked
 * before this process touches ZeroMQ, so none inherits a context, and they
 * run in a process group of their own: a ^C on the terminal reaches only
 * the coordinator, which then stops them in order (workers, then the server)
 * and reaps them all.  On Linux each child also gets PR_SET_PDEATHSIG, so
 * that none outlives a coordinator killed with SIGKILL.
 *
 * Records: record-size bytes each: an 8-byte key (a 64-bit mix of the seed
 * and the record's index), the index, then letters derived from the key
 * (compressible, about 2:1 for zlib or zstd).  The partition is key % P.
 * Worker w makes records [N*w/W, N*(w+1)/W), P x 64 KiB of them at a
 * time (at most 16 MiB), sorted by partition (a counting sort), and
 * appends them in one call holding every partition: the map side of a sort
 * shuffle, so a call's size does not shrink as partitions multiply.  Each
 * worker counts, per partition, its records and the sum of their 64-bit hashes
 * (order-independent) in a shared mapping; the readers, each a contiguous
 * share of the partitions, read them back and compare, and report on a pipe.
 * The mapping also carries each worker's progress (records sent) and its
 * error message.
 *
 * With --codec the workers compress (an Encode layer over their client or
 * File), so the work is spread over the workers and the server stores and
 * spills frames as they come: the store is then `partd get --codec C`'s.
 */
#include "demo.h"
#include "demo_int.h"
#include "opts.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- Options */

enum {
    S_RECORDS = PD_CLI_LONG,
    S_WORKERS,
    S_PARTITIONS,
    S_RECORD_SIZE,
    S_CODEC,
    S_LEVEL,
    S_MEMORY,
    S_DIR,
    S_KEEP,
    S_DIRECT,
    S_SEED,
    S_STORE,
    S_ATTEMPTS,
    S_FAIL_WORKERS
};

static const pd_cli_opt s_optab[] = {
    {S_RECORDS, "records", "N",
     "records in all (a count: see below); default 10M (1" PD_CLI_NBSP
     "GB of records; "
     "about 6 s on 2 cores, longer with a --codec)",
     false},
    {S_WORKERS, "workers", "W", "worker processes, 1-64; default 2", false},
    {S_PARTITIONS, "partitions", "P",
     "partitions (keys p00000, p00001, ...), 1-65536; default 64", false},
    {S_RECORD_SIZE, "record-size", "BYTES",
     "bytes per record (a size), 16-65536 (64K); default 100", false},
    {S_CODEC, "codec", "NAME",
     "workers compress each batch with NAME: zlib, bz2, snappy, blosc, lz4, "
     "zstd (read the store with `partd" PD_CLI_NBSP "get" PD_CLI_NBSP
     "--codec" PD_CLI_NBSP "NAME`); default none",
     false},
    {S_LEVEL, "level", "N", "the codec's compression level (needs --codec)",
     false},
    {S_MEMORY, "memory", "BYTES",
     "the server's Buffer keeps up to BYTES (a size) in memory, then spills "
     "to DIR; default 256M",
     false},
    {S_DIR, "dir", "DIR",
     "the store's directory (created if missing; must hold no keys yet), "
     "kept at the end; default: in a new private directory in $TMPDIR "
     "(else /tmp), removed at the end.  Repeatable (at most 16): the store "
     "is spread over the DIRs, each partition in one of them (`partd serve "
     "--path DIR1 --path DIR2 ...`, or with --direct a Fanout of Files)",
     true},
    {S_KEEP, "keep", NULL, "keep that temporary store (its path is printed)",
     false},
    {S_DIRECT, "direct", NULL,
     "no server: workers append straight into the store in DIR (a File under "
     "its lock (flock), or a Log: one segment per worker)",
     false},
    {S_STORE, "store", "KIND",
     "file (one file per partition) or log (append-only segments, one per "
     "writer): what the server's Buffer spills to, or with --direct what the "
     "workers append to; default: a Log, or with --dir a Log if DIR holds "
     "its marker file partd-log, else a File",
     false},
    {S_ATTEMPTS, "attempts", NULL,
     "each worker writes its share as one writer attempt, committed at its "
     "end (needs --store log): what --fail-workers costs without killing "
     "anyone",
     false},
    {S_FAIL_WORKERS, "fail-workers", "K",
     "kill K workers (picked from the seed) with SIGKILL at a random point "
     "of their share and run it again as a new attempt; the killed attempts "
     "must leave nothing (implies --attempts; needs --store log)",
     false},
    {S_SEED, "seed", "S", "seed of the records; default 42", false},
    {'q', "quiet", NULL, "no progress, only the report and errors", false},
    {'h', "help", NULL, "show this help", false},
};

static int s_run(const pd_cli_verb *v, int argc, char **argv) {
    (void)v;
    return pd_cli_demo(argc, argv);
}

static const char s_about[] =
    "Starts a `partd serve` over ipc and W worker processes; each worker\n"
    "generates its share of N records (random 8-byte keys, then payload)\n"
    "and appends each to partition key % P through the server, in calls\n"
    "holding every partition (64 KiB each, at most 16 MiB a call).  Then\n"
    "W reader processes (at most one per partition) read the partitions\n"
    "back in parallel, each a contiguous share of about the same bytes\n"
    "through a client (or store handle) of its own, and check every\n"
    "partition's record count and checksum (the sum of the records' 64-bit\n"
    "hashes).  Prints the throughput of both phases, the peak memory of the\n"
    "processes and the disk used.  A progress bar on a terminal (plain\n"
    "lines every few seconds otherwise) goes to standard error, the report\n"
    "to standard output.\n";

static const char s_tail[] =
    "\n" PD_CLI_UNITS_HELP
    "A count (N, of --records) is a whole number, or one followed by k, M,\n"
    "G or T (in any case): powers of 1000, so 10M is 10000000.\n"
    "\n"
    "Exit status: 0 when every partition holds exactly the records written\n"
    "to it; 1 on failure (a worker, a reader or the server failed or died,\n"
    "a count or checksum differs, an I/O error: the message names the\n"
    "process or the partition); 2 on a usage error; 130 when interrupted\n"
    "(SIGINT, SIGTERM, SIGHUP).  Every process is stopped and the temporary\n"
    "directory removed in every case.\n";

const pd_cli_verb pd_cli_demo_verb = {
    .name = "demo",
    .run = s_run,
    .summary = "a multiprocess shuffle through a server, verified and timed",
    .about = s_about,
    .opts = s_optab,
    .nopts = sizeof s_optab / sizeof s_optab[0],
    .tail = s_tail};

#define S_V (&pd_cli_demo_verb)
#define s_usage(...) pd_cli_usage(S_V, __VA_ARGS__)

/* The store kind: --store; else, in a --dir, a Log if it holds one (else a
 * File); else (dir NULL: the private temporary store) a Log, as `partd
 * serve` without --path. */
static pd_cli_store_kind s_kind(const pd_demo_opts *o, const char *dir) {
    if (o->kind != PD_CLI_STORE_AUTO) return o->kind;
    return dir ? pd_cli_store_kind_of(dir, o->kind) : PD_CLI_STORE_LOG;
}

bool pd_demo_drops_served(const pd_demo *d) {
    return !d->o.direct && d->temp && !d->o.keep &&
           d->o.kind == PD_CLI_STORE_LOG;
}

/* Parses argv[1..argc) into o; returns -1 to go on, else an exit code. */
static int s_parse(int argc, char **argv, pd_demo_opts *o) {
    pd_cli_parser p;
    pd_cli_parser_init(&p, S_V, argc, argv);
    bool have_level = false;
    const char *val;
    uint64_t v = 0;
    long l = 0;
    int id, rc = 0;
    while (rc == 0 && (id = pd_cli_next(&p, &val)) != PD_CLI_END) {
        switch (id) {
        case PD_CLI_BAD: return PD_CLI_EXIT_USAGE;
        case PD_CLI_ARG: return s_usage("unexpected argument '%.100s'", val);
        case 'h': return pd_cli_help_exit(S_V);
        case 'q': o->quiet = true; break;
        case S_KEEP: o->keep = true; break;
        case S_DIRECT: o->direct = true; break;
        case S_RECORDS:
            rc = pd_cli_opt_num(S_V, "--records", val, PD_CLI_COUNT, 1,
                                PD_DEMO_MAX_RECORDS, &o->records);
            break;
        case S_WORKERS:
            rc = pd_cli_opt_num(S_V, "--workers", val, PD_CLI_PLAIN, 1,
                                PD_DEMO_MAX_WORKERS, &v);
            o->workers = (unsigned)v;
            break;
        case S_PARTITIONS:
            rc = pd_cli_opt_num(S_V, "--partitions", val, PD_CLI_PLAIN, 1,
                                PD_DEMO_MAX_PARTS, &v);
            o->parts = (unsigned)v;
            break;
        case S_RECORD_SIZE:
            rc = pd_cli_opt_num(S_V, "--record-size", val, PD_CLI_SIZE,
                                PD_DEMO_MIN_RECSIZE, PD_DEMO_MAX_RECSIZE, &v);
            o->recsize = (size_t)v;
            break;
        case S_CODEC: o->codec = val; break;
        case S_LEVEL:
            rc = pd_cli_opt_int(S_V, "--level", val, -1000000, 1000000, &l);
            o->level = (int)l;
            have_level = true;
            break;
        case S_MEMORY:
            rc = pd_cli_opt_num(S_V, "--memory", val, PD_CLI_SIZE, 1,
                                UINT64_MAX, &o->memory);
            o->have_memory = true;
            break;
        case S_DIR:
            if (!*val) return s_usage("--dir: empty");
            if (o->ndirs == PD_DEMO_MAX_DIRS)
                return s_usage("at most %u --dir options", PD_DEMO_MAX_DIRS);
            for (unsigned i = 0; i < o->ndirs; i++)
                if (strcmp(o->dirs[i], val) == 0)
                    return s_usage("--dir %.100s given twice", val);
            if (!o->dir) o->dir = val;
            o->dirs[o->ndirs++] = val;
            break;
        case S_STORE:
            if (pd_cli_store_kind_parse(val, &o->kind) != 0)
                return s_usage("--store '%.100s': not file or log", val);
            break;
        case S_SEED:
            rc = pd_cli_opt_num(S_V, "--seed", val, PD_CLI_PLAIN, 0, UINT64_MAX,
                                &o->seed);
            break;
        case S_ATTEMPTS: o->attempts = true; break;
        case S_FAIL_WORKERS:
            rc = pd_cli_opt_num(S_V, "--fail-workers", val, PD_CLI_PLAIN, 0,
                                PD_DEMO_MAX_WORKERS, &v);
            o->fail_workers = (unsigned)v;
            o->attempts = true;
            break;
        }
    }
    if (rc) return rc;
    if (o->fail_workers > o->workers)
        return s_usage("--fail-workers %u: more than the %u workers",
                       o->fail_workers, o->workers);
    if (o->attempts && o->fail_workers && o->records < o->workers)
        return s_usage("--fail-workers: every worker needs records (--records "
                       "at least --workers)");
    if (o->attempts) {
        const char *opt = o->fail_workers ? "--fail-workers" : "--attempts";
        pd_cli_store_kind k = s_kind(o, o->dir);
        if (k != PD_CLI_STORE_LOG)
            return s_usage("%s: a File store has no writer attempts (a "
                           "killed worker's appends would stay): use "
                           "--store log",
                           opt);
        if (o->ndirs > 1)
            return s_usage("%s: not with several --dir (the store is then "
                           "a Fanout, whose commit could not be atomic "
                           "across its stores)",
                           opt);
    }
    if (have_level && !o->codec) return s_usage("--level needs --codec");
    if (o->have_memory && o->direct)
        return s_usage("--memory is the server's: not with --direct");
    if (o->keep && o->dir)
        return s_usage("--keep is for the temporary directory: a --dir is "
                       "always kept");
    if (o->codec) {
        pd_codec c;
        if (pd_codec_builtin(&c, o->codec, o->level))
            return s_usage("--codec: %s", pd_errmsg(NULL));
        if (c.destroy) c.destroy(c.ctx);
    }
    return -1;
}

volatile sig_atomic_t pd_demo_stop;

static void s_on_signal(int sig) { pd_demo_stop = sig; }

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

/* Makes the store directory at path if missing; refuses one that holds
 * keys. */
static int s_check_store_dir(pd_demo *d, const char *path) {
    pd_store *f = NULL;
    pd_keylist *kl = NULL;
    char why[1024];
    if (pd_cli_open_dir(&f, path, d->o.kind, true, why, sizeof why) != 0)
        return pd_demo_fail(d, "%s", why);
    int rc = 0;
    if (pd_keys(f, &kl, 0) != 0)
        rc = pd_demo_fail(d, "%s", pd_errmsg(f));
    else if (pd_keylist_count(kl) > 0)
        rc = pd_demo_fail(d,
                          "%s already holds %zu keys: give a new or empty "
                          "directory (or `partd drop %s`)",
                          path, pd_keylist_count(kl), path);
    pd_keylist_free(&kl);
    if (pd_close(&f) != 0 && rc == 0)
        rc = pd_demo_fail(d, "%s", pd_errmsg(NULL));
    return rc;
}

/* Makes the private run directory, and the store directory in it or at
 * --dir (each --dir); refuses a store that holds keys, and one directory
 * named twice. */
static int s_prepare_dir(pd_demo *d) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    if ((size_t)snprintf(d->run, sizeof d->run, "%s/partd-demo.XXXXXX", tmp) >=
        sizeof d->run - 16)
        return pd_demo_fail(d, "TMPDIR is too long");
    if (!mkdtemp(d->run)) {
        int e = errno;
        d->run[0] = '\0';
        return pd_demo_fail(d, "mkdtemp(%s/partd-demo.XXXXXX): %s", tmp,
                            strerror(e));
    }
    /* The socket: sun_path holds 107 bytes. */
    if (strlen(d->run) + 5 <= 107)
        snprintf(d->bind, sizeof d->bind, "ipc://%s/sock", d->run);
    d->temp = !d->o.dir;
    if ((size_t)snprintf(d->dir, sizeof d->dir, "%s",
                         d->o.dir ? d->o.dir : d->run) >= sizeof d->dir - 8)
        return pd_demo_fail(d, "--dir: path too long");
    if (d->temp) strcat(d->dir, "/store");
    d->o.kind = s_kind(&d->o, d->temp ? NULL : d->dir);
    int rc = s_check_store_dir(d, d->dir);
    for (unsigned i = 1; rc == 0 && i < d->o.ndirs; i++)
        rc = s_check_store_dir(d, d->o.dirs[i]);
    char why[1024];
    if (rc == 0 &&
        pd_cli_distinct_dirs(d->o.dirs, d->o.ndirs, "--dir", why, sizeof why))
        return pd_demo_fail(d, "%s", why);
    return rc;
}

/* The store's directories, for the report: "A", or "A, B, ...". */
static void s_print_dirs(const pd_demo *d, const char *sep) {
    if (d->o.ndirs < 2) {
        printf("%s", d->dir);
        return;
    }
    for (unsigned i = 0; i < d->o.ndirs; i++)
        printf("%s%s", i ? sep : "", d->o.dirs[i]);
}

/* Removes the run directory, or with --keep only what is not the store. */
static void s_cleanup_dir(pd_demo *d) {
    if (!d->run[0]) return;
    if (d->temp && d->o.keep) {
        char sock[PATH_MAX + 8];
        snprintf(sock, sizeof sock, "%s/sock", d->run);
        (void)unlink(sock);
        return;
    }
    if (nftw(d->run, s_rm_fn, 16, FTW_DEPTH | FTW_PHYS) != 0)
        pd_demo_errf(d, "remove %s: %s", d->run, strerror(errno));
}

/* --------------------------------------------------------------- Main */

static double s_mb(uint64_t bytes) { return (double)bytes / 1e6; }

static double s_rate(double x, double secs) { return secs > 0 ? x / secs : 0; }

static void s_report_start(const pd_demo *d) {
    const pd_demo_opts *o = &d->o;
    printf("partd demo: %" PRIu64 " records of %zu B (%.1f MB), %u worker%s, "
           "%u partitions, seed %" PRIu64 "\n",
           o->records, o->recsize, s_mb(o->records * o->recsize), o->workers,
           o->workers == 1 ? "" : "s", o->parts, o->seed);
    if (o->fail_workers)
        printf("writers: one attempt per worker, committed at its end; %u "
               "killed (SIGKILL) midway and run again\n",
               o->fail_workers);
    else if (o->attempts)
        printf("writers: one attempt per worker, committed at its end\n");
    bool log = o->kind == PD_CLI_STORE_LOG;
    printf("store:   ");
    s_print_dirs(d, ", ");
    printf(" (%s %s), codec %s\n",
           d->temp ? (o->keep ? "temporary, kept" : "temporary") : "kept",
           log ? "Log" : "File", o->codec ? o->codec : "none");
    if (o->direct)
        printf("server:  none: workers append straight into the %s%s\n",
               log ? "Log store (a segment each)" : "File store (flock)",
               o->ndirs > 1 ? ", a Fanout over the DIRs" : "");
    else {
        printf("server:  partd serve --path ");
        s_print_dirs(d, " --path ");
        printf(" --store %s --memory %" PRIu64 " (pid %d) at %s\n",
               log ? "log" : "file",
               o->have_memory ? o->memory : PD_DEMO_DEF_MEMORY,
               (int)d->server.pid, d->addr);
    }
    fflush(stdout);
}

int pd_cli_demo(int argc, char **argv) {
    pd_demo d;
    memset(&d, 0, sizeof d);
    d.o.records = PD_DEMO_DEF_RECORDS;
    d.o.workers = PD_DEMO_DEF_WORKERS;
    d.o.parts = PD_DEMO_DEF_PARTS;
    d.o.recsize = PD_DEMO_DEF_RECSIZE;
    d.o.seed = PD_DEMO_DEF_SEED;
    d.o.level = PD_LEVEL_DEFAULT;
    int rc = s_parse(argc, argv, &d.o);
    if (rc >= 0) return rc;
    if (d.o.records > UINT64_MAX / d.o.recsize)
        return s_usage("--records times --record-size is too large");
    d.tty = isatty(STDERR_FILENO);

    pd_demo_stop = 0;
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

    pd_demo_phase shuffle = {0}, readback = {0};
    double close_secs = 0;
    uint64_t nkeys = 0;
    d.workers = calloc(d.o.workers, sizeof *d.workers);
    /* Slots, then the sums; page-rounded by mmap.  Bounded by the option
     * limits: 64 workers x 65536 partitions x 16 bytes = 64 MiB. */
    d.shm_size = d.o.workers * sizeof(pd_demo_slot) +
                 (size_t)d.o.workers * d.o.parts * sizeof(pd_demo_sum);
    d.shm = mmap(NULL, d.shm_size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!d.workers || d.shm == MAP_FAILED) {
        d.shm = NULL;
        pd_demo_fail(&d, "out of memory");
        goto out;
    }
    d.slots = d.shm;
    d.expect = (pd_demo_sum *)(d.slots + d.o.workers);

    if (s_prepare_dir(&d)) goto out;
    if (d.o.direct && d.o.kind == PD_CLI_STORE_LOG) {
        char why[1024];
        if (pd_cli_open_dir(&d.hold, d.dir, d.o.kind, false, why, sizeof why)) {
            pd_demo_fail(&d, "%s", why);
            goto out;
        }
    }
    if (!d.o.direct && (rc = pd_demo_start_server(&d)) != 0) {
        if (rc == PD_CLI_EXIT_INTR) d.failed = PD_CLI_EXIT_INTR;
        goto out;
    }
    s_report_start(&d);

    rc = pd_demo_shuffle(&d, &shuffle);
    if (rc == PD_CLI_EXIT_INTR) d.failed = PD_CLI_EXIT_INTR;
    if (rc) goto out;
    printf("shuffle: %" PRIu64 " records, %.1f MB in %.2f s: %.1f MB/s, "
           "%.0f records/s\n",
           shuffle.records, s_mb(shuffle.bytes), shuffle.secs,
           s_rate(s_mb(shuffle.bytes), shuffle.secs),
           s_rate((double)shuffle.records, shuffle.secs));
    fflush(stdout);

    rc = pd_demo_read_back(&d, &readback, &nkeys);
    if (rc == PD_CLI_EXIT_INTR) d.failed = PD_CLI_EXIT_INTR;
    if (rc) goto out;
    printf("read:    %u partitions, %.1f MB in %.2f s: %.1f MB/s, %.0f "
           "records/s\n",
           d.o.parts, s_mb(readback.bytes), readback.secs,
           s_rate(s_mb(readback.bytes), readback.secs),
           s_rate((double)readback.records, readback.secs));
    if (d.hold) {
        /* The last handle: it compacts what the workers wrote, for later
         * readers of a kept store; a store about to be removed is dropped
         * first, leaving nothing to compact. */
        double t0 = pd_demo_now();
        if (d.temp && !d.o.keep && pd_drop(d.hold, 0) != 0) {
            pd_demo_fail(&d, "drop: %s", pd_errmsg(d.hold));
            goto out;
        }
        if (pd_close(&d.hold) != 0) {
            pd_demo_fail(&d, "close: %s", pd_errmsg(NULL));
            goto out;
        }
        printf("close:   the last Log handle %s in %.2f s\n",
               d.temp && !d.o.keep ? "dropped the store and closed"
                                   : "compacted the store and closed",
               pd_demo_now() - t0);
    }
    if (!d.o.direct) {
        rc = pd_demo_wait_server(&d, &close_secs);
        if (rc == PD_CLI_EXIT_INTR) d.failed = PD_CLI_EXIT_INTR;
        if (rc) goto out;
        printf("close:   the server %s and exited in %.2f s\n",
               pd_demo_drops_served(&d) ? "dropped the store"
                                        : "flushed its Buffer to disk",
               close_secs);
    }
    printf("verify:  OK: %" PRIu64 " keys, %" PRIu64
           " records: every partition's count and checksum match\n",
           nkeys, readback.records);
    pd_demo_fail_report(&d);

    /* Peak memory: the children's from wait4, this process's own. */
    uint64_t wmax = 0, rmax = 0;
    for (unsigned w = 0; w < d.o.workers; w++)
        if ((uint64_t)d.workers[w].ru.ru_maxrss > wmax)
            wmax = (uint64_t)d.workers[w].ru.ru_maxrss;
    for (unsigned r = 0; r < d.nreaders; r++)
        if ((uint64_t)d.readers[r].ru.ru_maxrss > rmax)
            rmax = (uint64_t)d.readers[r].ru.ru_maxrss;
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    printf("memory:  peak RSS: ");
    if (!d.o.direct)
        printf("server %.1f MB, ",
               s_mb((uint64_t)d.server.ru.ru_maxrss * 1024));
    printf("workers %.1f MB (largest), readers %.1f MB (largest), demo %.1f "
           "MB\n",
           s_mb(wmax * 1024), s_mb(rmax * 1024),
           s_mb((uint64_t)self.ru_maxrss * 1024));
    s_du_blocks = s_du_size = 0;
    bool du_ok = nftw(d.dir, s_du_fn, 16, FTW_PHYS) == 0;
    for (unsigned i = 1; du_ok && i < d.o.ndirs; i++)
        du_ok = nftw(d.o.dirs[i], s_du_fn, 16, FTW_PHYS) == 0;
    if (du_ok) {
        printf("disk:    %.1f MB used (%.1f MB of data) in ", s_mb(s_du_blocks),
               s_mb(s_du_size));
        s_print_dirs(&d, ", ");
        printf("%s\n", d.temp && !d.o.keep ? " (removed)" : "");
    }
    fflush(stdout);

out:
    pd_demo_clear_line(&d);
    if (pd_demo_stop && !d.failed) d.failed = PD_CLI_EXIT_INTR;
    if (d.workers) pd_demo_stop_children(&d);
    if (d.hold) pd_close(&d.hold); /* after a failure */
    if (d.failed == PD_CLI_EXIT_INTR)
        pd_demo_errf(&d, "interrupted by signal %d (%s): stopped",
                     (int)pd_demo_stop, strsignal((int)pd_demo_stop));
    else if (d.failed)
        pd_demo_errf(&d, "%s", d.failure);
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
    if (fflush(stdout) != 0 && !d.failed) d.failed = PD_CLI_EXIT_FAIL;
    if (d.shm) munmap(d.shm, d.shm_size);
    free(d.workers);
    free(d.readers);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    return d.failed;
}
