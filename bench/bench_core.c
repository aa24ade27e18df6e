/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_core: throughput and memory of libpartd's core stores (File, Dict,
 * Buffer(Dict, File)), each figure printed beside a floor measured in the
 * same run on the same machine and file system.
 *
 * Why floors: absolute numbers move with the machine, the kernel and the
 * page cache; a ratio to the best a plain C program can do on the same
 * data, in the same process, minutes apart, does not move much.  Every
 * floor below is the cheapest loop that produces the same end state as the
 * library call it is compared with (the same bytes in the same files, or in
 * memory), with nothing a real store must do (keys, locking, results)
 * added.  A ratio of 1.0 is therefore the ceiling, not a target.
 *
 * Workloads (see bench/README.md):
 *   small  200k appends of 100-byte values over 1000 keys, 100 keys per
 *          pd_append call (2000 calls); append i goes to key i % 1000, so
 *          each call holds 100 distinct keys and every key ends with 200
 *          values (20000 bytes).  Then one pd_get per key (1000 calls).
 *   big    16 keys x 4 appends of 4 MiB (256 MiB), 16 keys per call.
 *   memory Buffer(Dict, File, L) fed 512 MiB of 100 B..64 KiB values over
 *          1000 keys, in a forked child; its peak RSS growth against L.
 * --quick shrinks each of them so the whole run takes a few seconds.
 *
 * Method: one warm-up round (discarded; it also reads every key back and
 * checks its bytes), then --runs rounds (default 5).  The peak-memory runs
 * need no warm-up (each is a fresh child); --quick keeps only the one of
 * the 4 MiB values (the cheap one).
 * Inside a round the floor and the library run back to back on fresh
 * directories, so both see the same page-cache state.  The 4 MiB files are
 * dropped after every round; the small-value directories at the end of
 * their section (bc_trash_add in bench_core_rows.c says why).  Reported:
 * median, min-max, the ratio of the medians to the floor, and PASS/FAIL
 * against the target.  Time is CLOCK_MONOTONIC around the calls measured
 * only (no open/close).
 *
 * This file: the options and the order of the sections; bench_core.h says
 * where the rest lives.
 *
 * Exit status: 0 (a report, not a test), 1 with --strict when a target is
 * missed, 2 when a benchmark could not run (a library call failed, data read
 * back was wrong, or setup failed).
 */
#include "bench_core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ Configuration */

bc_cfg cfg;

static void s_cfg_defaults(bool quick) {
    /* Quick: fewer keys, because creating and removing files dominates a
     * small run (ext4 creates files slowly right after many were deleted:
     * see bench_core_rows.c). */
    cfg.nkeys = quick ? 200 : 1000;
    cfg.vsize = 100;
    cfg.per_call = 100;
    cfg.nvals = quick ? 20000 : 200000;
    cfg.buf_limit = 64u << 20;
    /* A fifth of the data set: about four fifths of it spills to File. */
    cfg.spill_limit = quick ? 512u << 10 : 4u << 20;
    cfg.big_size = 4u << 20;
    cfg.big_keys = quick ? 4 : 16;
    cfg.big_rounds = 4; /* 16 x 4 x 4 MiB = 256 MiB; quick 64 MiB */
    /* Quick: a limit large enough that one append batch (~1 MiB) stays
     * well inside the 10% allowance, as it does with 64 MiB. */
    cfg.mem_limit = quick ? 16u << 20 : 64u << 20;
    cfg.mem_total = quick ? 64u << 20 : 512u << 20;
    cfg.mem_per_call = 100;
    cfg.mem_min = 100;
    cfg.mem_max = 64u << 10;
}

/* ------------------------------------------------------------------- Main */

static void s_usage(FILE *fp) {
    fprintf(fp,
            "usage: bench_core [--runs N] [--quick] [--dir D] [--csv FILE]\n"
            "                  [--json FILE] [--strict] [--only LIST]\n"
            "  --runs N     measured runs per benchmark (default 5; 1 with "
            "--quick)\n"
            "  --quick      small smoke sizes, finishes in a few seconds\n"
            "  --dir D      parent of the stores and floor files (default "
            "$TMPDIR or /tmp)\n"
            "  --csv FILE   CSV output (default <build dir>/bench_core.csv)\n"
            "  --json FILE  JSON output (default: none)\n"
            "  --strict     exit 1 if a target is missed\n"
            "  --only LIST  run only these sections, comma-separated: small, "
            "big, mem, log\n"
            "               (the others are reported as skipped)\n"
            "exit status: 0 report written; 1 target missed with --strict; "
            "2 a benchmark could not run\n");
}

/* <dir of this executable>/../bench_core.csv, i.e. the build tree's root. */
static void s_default_csv(void) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    snprintf(cfg.csv, sizeof cfg.csv, "bench_core.csv");
    if (n <= 0) return;
    exe[n] = '\0';
    for (int up = 0; up < 2; up++) {
        char *sl = strrchr(exe, '/');
        if (!sl) return;
        *sl = '\0';
    }
    char tmp[sizeof cfg.csv];
    if (bc_join(tmp, sizeof tmp, exe, "bench_core.csv") == 0)
        memcpy(cfg.csv, tmp, sizeof tmp);
}

/* --only: sections 0 small, 1 big, 2 mem, 3 log.  0, or -1 for a bad
 * list. */
static int s_parse_only(const char *list) {
    static const char *names[4] = {"small", "big", "mem", "log"};
    unsigned bits = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (strlen(names[i]) == len && strncmp(p, names[i], len) == 0)
                found = i;
        if (found < 0) return -1;
        bits |= 1u << found;
        p += len;
        if (*p == ',') p++;
    }
    if (!bits) return -1;
    cfg.sections = bits;
    return 0;
}

/* The results written by `write` to path: 0, or 2 once stderr says why. */
static int s_save(const char *what, int (*write_fn)(const char *path),
                  const char *path) {
    if (write_fn(path)) {
        fprintf(stderr, "bench_core: cannot write %s: %s\n", path,
                strerror(errno));
        return 2;
    }
    printf("%s: %s\n", what, path);
    return 0;
}

/* A section of rounds first..cfg.runs (round 0, the warm-up, not recorded;
 * the first round run checks), its files emptied after. */
static void s_rounds(const char *what, void (*init_fn)(void),
                     void (*round_fn)(bool record, bool check),
                     void (*free_fn)(void), int first) {
    double t0 = bench_now();
    init_fn();
    for (int run = first; run <= cfg.runs; run++)
        round_fn(run > 0, run == first);
    free_fn();
    bc_trash_empty();
    printf("bench_core: %s done (%.1f s)\n", what, bench_now() - t0);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int runs = -1;
    cfg.sections = 15;
    const char *csv = NULL;
    cfg.dir = getenv("TMPDIR");
    if (!cfg.dir || !*cfg.dir) cfg.dir = "/tmp";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (strcmp(a, "--runs") == 0 && more) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, "bench_core: --runs wants 1..1000\n");
                return 2;
            }
            runs = (int)v;
        } else if (strcmp(a, "--quick") == 0) {
            cfg.quick = true;
        } else if (strcmp(a, "--strict") == 0) {
            cfg.strict = true;
        } else if (strcmp(a, "--only") == 0 && more) {
            if (s_parse_only(argv[++i])) {
                fprintf(stderr,
                        "bench_core: --only wants small, big, mem, log\n");
                return 2;
            }
        } else if (strcmp(a, "--dir") == 0 && more) {
            cfg.dir = argv[++i];
        } else if (strcmp(a, "--csv") == 0 && more) {
            csv = argv[++i];
        } else if (strcmp(a, "--json") == 0 && more) {
            cfg.json = argv[++i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            s_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_core: bad argument '%s'\n", a);
            s_usage(stderr);
            return 2;
        }
    }
    s_cfg_defaults(cfg.quick);
    cfg.runs = runs > 0 ? runs : cfg.quick ? 1 : 5;
    if (csv)
        snprintf(cfg.csv, sizeof cfg.csv, "%s", csv);
    else
        s_default_csv();
    struct stat st;
    if (stat(cfg.dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "bench_core: --dir %s is not a directory\n", cfg.dir);
        return 2;
    }

    /* The write floor keeps 1000 files open and File's descriptor cache
     * defaults to a quarter of the limit: raise the soft limit to the hard
     * one so both hold every key (reported in the header). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        host.nofile = rl.rlim_cur;
    }
    bc_host_info();
    for (int r = 0; r < R_COUNT; r++)
        rows[r].v = bc_xmalloc((size_t)cfg.runs * sizeof(double));

    printf("bench_core: %s sizes, %d run(s)%s, stores under %s\n",
           cfg.quick ? "quick" : "full", cfg.runs,
           cfg.quick ? "" : " + warm-up", cfg.dir);
    double la = strtod(host.load0, NULL);
    if (la > 0.5 * (double)host.nproc)
        printf("bench_core: WARNING: load average %s on %ld CPUs: figures "
               "may be low; rerun when the machine is idle\n",
               host.load0, host.nproc);
    fflush(stdout);

    /* Order: the 4 MiB values first, before this run has deleted any file
     * (see s_trash); then the small values, whose files are all removed at
     * the end of their section; then peak memory, in forked children. */
    double t0 = bench_now();
    if (bc_section_on(1)) {
        bc_big_init();
        /* The warm-up is kept here even with --quick: it is cheap, and
         * without it whichever side runs first pays for the page cache's
         * first growth. */
        for (int run = 0; run <= cfg.runs; run++)
            bc_big_round(run, run > 0, run == 0);
        bc_big_free();
        printf("bench_core: 4 MiB values done (%.1f s)\n", bench_now() - t0);
        fflush(stdout);
    }

    /* Round 0 is the warm-up, discarded; --quick skips it (its first
     * measured round does the checks instead). */
    int first = cfg.quick ? 1 : 0;
    if (bc_section_on(0))
        s_rounds("small values", bc_small_init, bc_small_round, bc_small_free,
                 first);
    if (bc_section_on(3))
        s_rounds("Log", bc_log_init, bc_log_round, bc_log_free, first);

    /* No warm-up: every run is a fresh child. */
    if (bc_section_on(2)) {
        t0 = bench_now();
        for (int run = 0; run < cfg.runs; run++) bc_mem_round(true);
        printf("bench_core: peak memory done (%.1f s)\n", bench_now() - t0);
    }

    bc_loadavg(host.load1, sizeof host.load1);
    bc_finish_notes();
    bc_print_table(stdout);
    int rc = s_save("csv", bc_write_csv, cfg.csv);
    if (cfg.json && s_save("json", bc_write_json, cfg.json)) rc = 2;
    bool miss = false, err = false;
    for (int r = 0; r < R_COUNT; r++) {
        miss |= strcmp(bc_verdict(r), "FAIL") == 0;
        err |= strcmp(bc_verdict(r), "ERROR") == 0;
    }
    for (int r = 0; r < R_COUNT; r++) free(rows[r].v);
    if (err || rc) return 2;
    return cfg.strict && miss ? 1 : 0;
}
