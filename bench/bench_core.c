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
 * Workloads (see bench/README.md and /work/shared/REFERENCE.md):
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
 * their section (see s_trash for why).  Reported: median, min-max,
 * the ratio of the medians to the floor, and PASS/FAIL against the target.
 * Time is CLOCK_MONOTONIC around the calls measured only (no open/close).
 *
 * Exit status: 0 (a report, not a test), 1 with --strict when a target is
 * missed, 2 when a benchmark could not run (a library call failed, data read
 * back was wrong, or setup failed).
 */
#include "partd/partd.h"

#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)

/* ------------------------------------------------------------ Configuration */

typedef struct s_cfg {
    int runs;
    bool quick, strict;
    unsigned sections; /* bit s: section s is run (--only) */
    const char *dir;   /* parent of every store and floor directory */
    char csv[PATH_MAX];
    const char *json; /* NULL: no JSON */

    /* small-value workload */
    size_t nkeys, nvals, vsize, per_call;
    uint64_t buf_limit;   /* Buffer that does not spill */
    uint64_t spill_limit; /* Buffer that spills */

    /* big-value workload */
    size_t big_keys, big_rounds, big_size;

    /* memory workload */
    uint64_t mem_limit, mem_total;
    size_t mem_per_call, mem_min, mem_max;
} s_cfg;

static s_cfg cfg;

static void s_cfg_defaults(bool quick) {
    /* Quick: fewer keys, because creating and removing files dominates a
     * small run: on an ext4 that has just deleted many files, creating one
     * can cost ~0.5 ms of CPU (its inode allocator scans past recently
     * deleted inodes: recently_deleted() in perf). */
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

/* ------------------------------------------------------------------- Rows */

/* How a row is judged.  FLOOR rows are the baselines themselves. */
typedef enum {
    T_FLOOR,     /* a floor: no verdict */
    T_INFO,      /* shown with its floor, no target */
    T_RATIO_MIN, /* median / floor median >= target */
    T_ABS_MIN,   /* median >= target (floor shown beside it) */
    T_LIMIT_MAX  /* worst (max) run / limit <= target */
} s_tkind;

enum {
    R_FLOOR_WRITE,
    R_FLOOR_CREATE_WRITE,
    R_FLOOR_OWC,
    R_FILE_APPEND,
    R_FILE_APPEND_WARM,
    R_FLOOR_READ,
    R_FILE_GET,
    R_FLOOR_MEMCPY_APPEND,
    R_BUFFER_APPEND,
    R_BUFFER_APPEND_FAULTS,
    R_DICT_APPEND,
    R_BUFFER_SPILL_APPEND,
    R_FLOOR_MEMCPY_GET,
    R_DICT_GET,
    R_BUFFER_GET,
    R_BUFFER_SPILL_GET,
    R_FLOOR_SEQWRITE,
    R_FILE_APPEND_4M,
    R_BUFFER_PEAK_RSS,
    R_COUNT
};

typedef struct s_row {
    const char *id;   /* stable name used in CSV/JSON and by ref_core.py */
    int section;      /* 0 small values, 1 big values, 2 memory */
    const char *name; /* shown in the table */
    const char *unit; /* "rec/s", "keys/s", "GB/s", "MiB" */
    int floor;        /* row index of its floor, or -1 */
    s_tkind tkind;
    double target;
    double *v; /* one sample per run */
    int n;
    char err[512]; /* why the row could not be measured */
    char note[256];
} s_row;

static s_row rows[R_COUNT] = {
    [R_FLOOR_WRITE] = {"floor_write_open_fds", 0,
                       "floor: write() on the already-open files", "rec/s", -1,
                       T_FLOOR, 0},
    [R_FLOOR_CREATE_WRITE] = {"floor_create_write", 0,
                              "floor: create the files, then write()", "rec/s",
                              -1, T_FLOOR, 0},
    [R_FLOOR_OWC] = {"floor_open_write_close", 0,
                     "orientation: open+write+close per value", "rec/s", -1,
                     T_FLOOR, 0},
    /* The first pass creates the 1000 files, as the floor beside it does;
     * the second appends to existing files through the store's cached
     * descriptors, the fair match for write() on already-open files. */
    [R_FILE_APPEND] = {"file_append", 0, "File append, new store", "rec/s",
                       R_FLOOR_CREATE_WRITE, T_RATIO_MIN, 0.70},
    [R_FILE_APPEND_WARM] = {"file_append_warm", 0,
                            "File append, keys exist (2nd pass)", "rec/s",
                            R_FLOOR_WRITE, T_RATIO_MIN, 0.70},
    [R_FLOOR_READ] = {"floor_open_fstat_read_close", 0,
                      "floor: open+fstat+read+close per key", "keys/s", -1,
                      T_FLOOR, 0},
    [R_FILE_GET] = {"file_get", 0, "File get (1 key per call)", "keys/s",
                    R_FLOOR_READ, T_ABS_MIN, 200e3},
    [R_FLOOR_MEMCPY_APPEND] = {"floor_memcpy_append", 0,
                               "floor: memcpy into per-key buffers", "rec/s",
                               -1, T_FLOOR, 0},
    [R_BUFFER_APPEND] = {"buffer_append", 0,
                         "Buffer(Dict,File,64MiB) append, no spill", "rec/s",
                         R_FLOOR_MEMCPY_APPEND, T_ABS_MIN, 10e6},
    /* Minor page faults taken by those appends (getrusage): first touches
     * of the Dict's fresh memory, the kernel's share of an append. */
    [R_BUFFER_APPEND_FAULTS] = {"buffer_append_faults", 0,
                                "Buffer(Dict,File,64MiB) append, page faults",
                                "flt/1k", -1, T_INFO, 0},
    [R_DICT_APPEND] = {"dict_append", 0, "Dict append", "rec/s",
                       R_FLOOR_MEMCPY_APPEND, T_INFO, 0},
    [R_BUFFER_SPILL_APPEND] = {"buffer_spill_append", 0,
                               "Buffer(Dict,File,small) append, spills",
                               "rec/s", R_FLOOR_CREATE_WRITE, T_INFO, 0},
    [R_FLOOR_MEMCPY_GET] = {"floor_memcpy_get", 0,
                            "floor: memcpy of each key's bytes", "keys/s", -1,
                            T_FLOOR, 0},
    [R_DICT_GET] = {"dict_get", 0, "Dict get (1 key per call)", "keys/s",
                    R_FLOOR_MEMCPY_GET, T_ABS_MIN, 500e3},
    [R_BUFFER_GET] = {"buffer_get", 0, "Buffer(Dict,File,64MiB) get", "keys/s",
                      R_FLOOR_MEMCPY_GET, T_INFO, 0},
    [R_BUFFER_SPILL_GET] = {"buffer_spill_get", 0,
                            "Buffer(Dict,File,small) get, spilled", "keys/s",
                            R_FLOOR_READ, T_INFO, 0},
    [R_FLOOR_SEQWRITE] = {"floor_seq_write", 1,
                          "floor: write() 4 MiB blocks, one open file", "GB/s",
                          -1, T_FLOOR, 0},
    [R_FILE_APPEND_4M] = {"file_append_4m", 1, "File append 4 MiB values",
                          "GB/s", R_FLOOR_SEQWRITE, T_RATIO_MIN, 0.80},
    [R_BUFFER_PEAK_RSS] = {"buffer_peak_rss", 2,
                           "Buffer peak RSS growth (worst run)", "MiB", -1,
                           T_LIMIT_MAX, 1.10},
};

static void s_add(int r, double x) {
    if (rows[r].n < cfg.runs) rows[r].v[rows[r].n++] = x;
}

/* Records why row r could not be measured (first reason only); the row is
 * skipped in later rounds. */
static void s_fail(int r, const char *fmt, ...) {
    if (rows[r].err[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rows[r].err, sizeof rows[r].err, fmt, ap);
    va_end(ap);
}

static bool s_ok(int r) { return rows[r].err[0] == '\0'; }

/* --------------------------------------------------------------- Utilities */

/* xorshift64*: deterministic data, the same in every run. */
static uint64_t s_rand(uint64_t *st) {
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void s_fill(unsigned char *p, size_t n, uint64_t seed) {
    uint64_t st = seed | 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x = s_rand(&st);
        memcpy(p + i, &x, 8);
    }
    for (; i < n; i++) p[i] = (unsigned char)s_rand(&st);
}

static void *s_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_core: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

/* dir + "/" + name into out.  0, or -1 with errno ENAMETOOLONG if it does
 * not fit. */
static int s_join(char *out, size_t cap, const char *dir, const char *name) {
    int w = snprintf(out, cap, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* A new directory under cfg.dir (the floors' counterpart of
 * pd_file_open_temp).  Returns 0 or -1 with errno. */
static int s_mkdtemp(char *out, size_t cap) {
    if (s_join(out, cap, cfg.dir, "bench_core.XXXXXX")) return -1;
    return mkdtemp(out) ? 0 : -1;
}

static int s_rm_cb(const char *path, const struct stat *sb, int type,
                   struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

/* rm -rf of a directory this program made (s_mkdtemp, or a File store
 * opened with PD_FILE_KEEP). */
static void s_rmtree(const char *path) {
    nftw(path, s_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Directories whose removal is deferred to the end of the small-value
 * section.  Why: on ext4, creating a file right after many were deleted is
 * slow (~0.1-1 ms instead of ~25 us: the inode allocator reads and skips
 * every recently deleted inode, recently_deleted() in perf).  Removing each
 * round's 4000 files before the next round's creates would make the
 * benchmark measure its own deletions.  The 4 MiB section still drops its
 * files every round (only 17 files, but 512 MiB of page cache).
 */
static char **s_trash;
static size_t s_ntrash;

static void s_trash_add(const char *path) {
    char **t = realloc(s_trash, (s_ntrash + 1) * sizeof *t);
    char *c = strdup(path);
    if (!t || !c) {
        fprintf(stderr, "bench_core: out of memory\n");
        exit(2);
    }
    s_trash = t;
    s_trash[s_ntrash++] = c;
}

static void s_trash_empty(void) {
    for (size_t i = 0; i < s_ntrash; i++) {
        s_rmtree(s_trash[i]);
        free(s_trash[i]);
    }
    free(s_trash);
    s_trash = NULL;
    s_ntrash = 0;
}

typedef struct s_stat {
    double med, min, max;
    bool have;
} s_stat;

static s_stat s_stats(int r) {
    if (rows[r].n == 0) return (s_stat){0, 0, 0, false};
    bench_stat b = bench_stats(rows[r].v, rows[r].n);
    return (s_stat){b.med, b.min, b.max, true};
}

/* "1.52M", "185k", "2.31": three significant figures with an SI suffix for
 * rates; plain figures for GB/s and MiB. */
static const char *s_fmt(double x, const char *unit, char *buf, size_t cap) {
    if (strcmp(unit, "GB/s") == 0 || strcmp(unit, "MiB") == 0) {
        snprintf(buf, cap, x >= 100 ? "%.0f" : x >= 10 ? "%.1f" : "%.2f", x);
        return buf;
    }
    const char *sfx = "";
    if (x >= 1e9) {
        x /= 1e9;
        sfx = "G";
    } else if (x >= 1e6) {
        x /= 1e6;
        sfx = "M";
    } else if (x >= 1e3) {
        x /= 1e3;
        sfx = "k";
    }
    snprintf(buf, cap,
             x >= 100  ? "%.0f%s"
             : x >= 10 ? "%.1f%s"
                       : "%.2f%s",
             x, sfx);
    return buf;
}

/* ------------------------------------------------- The small-value workload */

/*
 * Input: one pool of nvals*vsize pseudo-random bytes; value i is
 * pool[i*vsize .. (i+1)*vsize) and goes to key i % nkeys.  keys[] and vals[]
 * hold the whole sequence of pd_append arguments, built before any timing,
 * so call c is pd_append(s, per_call, &keys[c*per_call], &vals[...]).
 */
typedef struct s_small {
    unsigned char *pool;
    char (*names)[16]; /* "k0000" ... : plain names, files named as the key */
    pd_key *keys1;     /* one key per key index, for gets */
    pd_key *keys;      /* one per append */
    pd_bytes *vals;    /* one per append */
    size_t per_key;    /* bytes each key ends with */
    unsigned char *expect; /* key k's expected bytes, for the check */
} s_small;

static s_small sm;

static void s_small_init(void) {
    sm.pool = s_xmalloc(cfg.nvals * cfg.vsize);
    s_fill(sm.pool, cfg.nvals * cfg.vsize, 42);
    sm.names = s_xmalloc(cfg.nkeys * sizeof *sm.names);
    sm.keys1 = s_xmalloc(cfg.nkeys * sizeof *sm.keys1);
    for (size_t k = 0; k < cfg.nkeys; k++) {
        int w = snprintf(sm.names[k], sizeof sm.names[k], "k%04zu", k);
        sm.keys1[k] = PD_KEY(sm.names[k], (size_t)w);
    }
    sm.keys = s_xmalloc(cfg.nvals * sizeof *sm.keys);
    sm.vals = s_xmalloc(cfg.nvals * sizeof *sm.vals);
    for (size_t i = 0; i < cfg.nvals; i++) {
        sm.keys[i] = sm.keys1[i % cfg.nkeys];
        sm.vals[i] = PD_BYTES(sm.pool + i * cfg.vsize, cfg.vsize);
    }
    sm.per_key = (cfg.nvals / cfg.nkeys) * cfg.vsize;
    sm.expect = s_xmalloc(sm.per_key);
}

static void s_small_free(void) {
    free(sm.pool);
    free(sm.names);
    free(sm.keys1);
    free(sm.keys);
    free(sm.vals);
    free(sm.expect);
}

/* The bytes key k must hold after the append workload. */
static const unsigned char *s_expected(size_t k) {
    size_t off = 0;
    for (size_t i = k; i < cfg.nvals; i += cfg.nkeys) {
        memcpy(sm.expect + off, sm.pool + i * cfg.vsize, cfg.vsize);
        off += cfg.vsize;
    }
    return sm.expect;
}

/* Checks every key of `s` against the workload (outside any timing).  0, or
 * -1 with a reason written to row r. */
static int s_verify(pd_store *s, int r) {
    for (size_t k = 0; k < cfg.nkeys; k++) {
        pd_result *res = NULL;
        int rc = pd_get(s, 1, &sm.keys1[k], &res, 0);
        if (rc) {
            s_fail(r, "verify get %s: %s", sm.names[k], pd_errmsg(s));
            return -1;
        }
        pd_bytes b = pd_result_value(res, 0);
        bool good =
            b.size == sm.per_key && memcmp(b.data, s_expected(k), b.size) == 0;
        pd_result_free(&res);
        if (!good) {
            s_fail(r,
                   "verify: key %s reads back %zu bytes, not the %zu "
                   "appended (or different bytes)",
                   sm.names[k], b.size, sm.per_key);
            return -1;
        }
    }
    return 0;
}

/* Opens directory `dir` for the *at() calls of the floors: names are
 * resolved relative to it, as the File store resolves them relative to its
 * root, so the floors pay no more path walking than the store does. */
static int s_opendir(const char *dir) {
    return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/*
 * Floor for File appends: the 1000 files opened first (O_APPEND, as an
 * appending store must), then one write() per value in the same key order.
 * This is what the kernel charges for putting each value into its file: a
 * store must do at least one write per (key, call), so per value here, since
 * every call has distinct keys.  The opens (which create the files) are
 * timed apart: the second floor row, creation + writes, is what the store
 * must also pay, since its appends create the files.  Leaves the files in
 * `dir` for the read floor.
 */
static void s_floor_write(const char *dir, bool record) {
    int *fds = s_xmalloc(cfg.nkeys * sizeof *fds);
    size_t opened = 0;
    int dfd = s_opendir(dir);
    if (dfd < 0) {
        s_fail(R_FLOOR_WRITE, "open(%s): %s", dir, strerror(errno));
        free(fds);
        return;
    }
    double t0 = bench_now();
    for (; opened < cfg.nkeys; opened++) {
        fds[opened] = openat(dfd, sm.names[opened],
                             O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fds[opened] < 0) {
            s_fail(R_FLOOR_WRITE, "open(%s/%s): %s", dir, sm.names[opened],
                   strerror(errno));
            goto done;
        }
    }
    double t1 = bench_now();
    for (size_t i = 0; i < cfg.nvals; i++) {
        ssize_t w = write(fds[i % cfg.nkeys], sm.vals[i].data, cfg.vsize);
        if (w != (ssize_t)cfg.vsize) {
            s_fail(R_FLOOR_WRITE, "write(%s): %s", sm.names[i % cfg.nkeys],
                   w < 0 ? strerror(errno) : "short write");
            goto done;
        }
    }
    double t2 = bench_now();
    if (record) {
        s_add(R_FLOOR_WRITE, (double)cfg.nvals / (t2 - t1));
        s_add(R_FLOOR_CREATE_WRITE, (double)cfg.nvals / (t2 - t0));
    }
done:
    for (size_t k = 0; k < opened; k++) close(fds[k]);
    close(dfd);
    free(fds);
}

/*
 * Orientation only: what a store that opens and closes the file for every
 * value costs (this is what the Python reference does per key and call).
 */
static void s_floor_owc(bool record) {
    char dir[PATH_MAX];
    if (s_mkdtemp(dir, sizeof dir)) {
        s_fail(R_FLOOR_OWC, "mkdtemp in %s: %s", cfg.dir, strerror(errno));
        return;
    }
    int dfd = s_opendir(dir);
    if (dfd < 0) {
        s_fail(R_FLOOR_OWC, "open(%s): %s", dir, strerror(errno));
        s_rmtree(dir);
        return;
    }
    double t0 = bench_now();
    for (size_t i = 0; i < cfg.nvals; i++) {
        const char *name = sm.names[i % cfg.nkeys];
        int fd =
            openat(dfd, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0 ||
            write(fd, sm.vals[i].data, cfg.vsize) != (ssize_t)cfg.vsize) {
            s_fail(R_FLOOR_OWC, "open/write(%s/%s): %s", dir, name,
                   strerror(errno));
            if (fd >= 0) close(fd);
            break;
        }
        close(fd);
    }
    double t = bench_now() - t0;
    if (record && s_ok(R_FLOOR_OWC)) s_add(R_FLOOR_OWC, (double)cfg.nvals / t);
    close(dfd);
    s_trash_add(dir);
}

/*
 * Floor for File gets: for each key, open + fstat (to size the buffer, as a
 * get must) + read + close of its file, written by s_floor_write with the
 * same bytes as the store's.  The buffer is reused: allocation is not part
 * of the floor.
 */
static void s_floor_read(const char *dir, bool record) {
    unsigned char *buf = s_xmalloc(sm.per_key + 1);
    memset(buf, 0, sm.per_key + 1);
    uint64_t total = 0;
    int dfd = s_opendir(dir);
    if (dfd < 0) {
        s_fail(R_FLOOR_READ, "open(%s): %s", dir, strerror(errno));
        free(buf);
        return;
    }
    double t0 = bench_now();
    for (size_t k = 0; k < cfg.nkeys; k++) {
        int fd = openat(dfd, sm.names[k], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size > sm.per_key) {
            s_fail(R_FLOOR_READ, "open/fstat(%s/%s): %s", dir, sm.names[k],
                   fd < 0 ? strerror(errno) : "unexpected size");
            if (fd >= 0) close(fd);
            break;
        }
        ssize_t got = read(fd, buf, (size_t)st.st_size);
        close(fd);
        if (got != st.st_size) {
            s_fail(R_FLOOR_READ, "read(%s/%s): short read", dir, sm.names[k]);
            break;
        }
        total += (uint64_t)got;
    }
    double t = bench_now() - t0;
    if (record && s_ok(R_FLOOR_READ)) {
        if (total != (uint64_t)sm.per_key * cfg.nkeys)
            s_fail(R_FLOOR_READ, "read %llu bytes, expected %llu",
                   (unsigned long long)total,
                   (unsigned long long)sm.per_key * cfg.nkeys);
        else
            s_add(R_FLOOR_READ, (double)cfg.nkeys / t);
    }
    close(dfd);
    free(buf);
}

/*
 * Floors for in-memory stores: the same bytes copied into per-key buffers
 * (allocated and touched beforehand, so this is memory bandwidth plus the
 * loop, the least any in-memory append can cost), and each key's bytes
 * copied out into a reused buffer (the least a get that returns a copy can
 * cost).
 */
static void s_floor_memcpy(bool record) {
    unsigned char *mem = s_xmalloc(cfg.nkeys * sm.per_key);
    memset(mem, 1, cfg.nkeys * sm.per_key);
    size_t *fill = calloc(cfg.nkeys, sizeof *fill);
    unsigned char *dst = s_xmalloc(sm.per_key);
    memset(dst, 1, sm.per_key);
    if (!fill) exit(2);

    double t0 = bench_now();
    for (size_t i = 0; i < cfg.nvals; i++) {
        size_t k = i % cfg.nkeys;
        memcpy(mem + k * sm.per_key + fill[k], sm.vals[i].data, cfg.vsize);
        fill[k] += cfg.vsize;
    }
    double t1 = bench_now();
    unsigned sum = 0;
    for (size_t k = 0; k < cfg.nkeys; k++) {
        memcpy(dst, mem + k * sm.per_key, fill[k]);
        sum += dst[k % fill[k]]; /* keeps the copy observable */
    }
    double t2 = bench_now();
    if (record) {
        s_add(R_FLOOR_MEMCPY_APPEND, (double)cfg.nvals / (t1 - t0));
        s_add(R_FLOOR_MEMCPY_GET, (double)cfg.nkeys / (t2 - t1));
    }
    if (sum == 0xFFFFFFFFu) fputc('\0', stderr); /* never: defeats DCE */
    free(mem);
    free(fill);
    free(dst);
}

/* Minor page faults of the last s_run_appends. */
static long s_append_faults;

static long s_minflt(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

/* Runs the append workload on s (2000 calls of 100 keys); returns records/s
 * or -1 after recording the error on row r. */
static double s_run_appends(pd_store *s, int r) {
    long f0 = s_minflt();
    double t0 = bench_now();
    for (size_t i = 0; i < cfg.nvals; i += cfg.per_call) {
        size_t n = cfg.nvals - i < cfg.per_call ? cfg.nvals - i : cfg.per_call;
        int rc = pd_append(s, n, &sm.keys[i], &sm.vals[i], 0);
        if (rc) {
            s_fail(r, "pd_append: %s", pd_errmsg(s));
            return -1;
        }
    }
    double t = bench_now() - t0;
    s_append_faults = s_minflt() - f0;
    return (double)cfg.nvals / t;
}

/* Runs one single-key pd_get per key; returns keys/s or -1. */
static double s_run_gets(pd_store *s, int r) {
    uint64_t total = 0;
    double t0 = bench_now();
    for (size_t k = 0; k < cfg.nkeys; k++) {
        pd_result *res = NULL;
        int rc = pd_get(s, 1, &sm.keys1[k], &res, 0);
        if (rc) {
            s_fail(r, "pd_get: %s", pd_errmsg(s));
            return -1;
        }
        total += pd_result_total(res);
        pd_result_free(&res);
    }
    double t = bench_now() - t0;
    if (total != (uint64_t)sm.per_key * cfg.nkeys) {
        s_fail(r, "gets returned %llu bytes, expected %llu",
               (unsigned long long)total,
               (unsigned long long)sm.per_key * cfg.nkeys);
        return -1;
    }
    return (double)cfg.nkeys / t;
}

/* Appends then gets on store s (closed here), recording into rows ra/rg
 * (either may be -1).  `check`: verify every key's bytes afterwards. */
static void s_store_round(pd_store *s, int ra, int rg, bool record,
                          bool check) {
    double a = s_run_appends(s, ra);
    if (a >= 0 && record) s_add(ra, a);
    if (a < 0 && rg >= 0) s_fail(rg, "not run: %s failed", rows[ra].id);
    if (a >= 0 && rg >= 0 && s_ok(rg)) {
        double g = s_run_gets(s, rg);
        if (g >= 0 && record) s_add(rg, g);
        if (g >= 0 && check) s_verify(s, rg);
    }
    if (pd_close(&s)) s_fail(ra, "pd_close: %s", pd_errmsg(NULL));
}

/* A File store in a new directory under cfg.dir.  `defer`: keep the
 * directory on close and remove it with the section's trash instead. */
static pd_store *s_open_file(int r, bool defer) {
    pd_store *f = NULL;
    if (pd_file_open_temp(&f, cfg.dir, defer ? PD_FILE_KEEP : 0)) {
        s_fail(r, "pd_file_open_temp(%s): %s", cfg.dir, pd_errmsg(NULL));
        return NULL;
    }
    if (defer) s_trash_add(pd_file_path(f));
    return f;
}

static pd_store *s_open_buffer(int r, uint64_t limit) {
    pd_store *d = NULL, *f = NULL, *b = NULL;
    if (pd_dict_open(&d)) {
        s_fail(r, "pd_dict_open: %s", pd_errmsg(NULL));
        return NULL;
    }
    f = s_open_file(r, true);
    if (!f) {
        pd_close(&d);
        return NULL;
    }
    if (pd_buffer_open(&b, &d, &f, limit, 0)) {
        s_fail(r, "pd_buffer_open: %s", pd_errmsg(NULL));
        pd_close(&d);
        pd_close(&f);
        return NULL;
    }
    return b;
}

/* One round of the small-value workload: every floor and every store.
 * `check`: read every key back and compare its bytes (first round). */
static void s_small_round(bool record, bool check) {
    char fdir[PATH_MAX];

    /* Write floor, then (same files, warm cache) the read floor. */
    if (s_ok(R_FLOOR_WRITE)) {
        if (s_mkdtemp(fdir, sizeof fdir)) {
            s_fail(R_FLOOR_WRITE, "mkdtemp in %s: %s", cfg.dir,
                   strerror(errno));
        } else {
            s_floor_write(fdir, record);
            if (!s_ok(R_FLOOR_WRITE))
                s_fail(R_FLOOR_READ, "not run: %s failed",
                       rows[R_FLOOR_WRITE].id);
            else if (s_ok(R_FLOOR_READ))
                s_floor_read(fdir, record);
            s_trash_add(fdir);
        }
    }
    /* The File store right after, on the same file system. */
    if (s_ok(R_FILE_APPEND)) {
        pd_store *f = s_open_file(R_FILE_APPEND, true);
        if (f) {
            double a = s_run_appends(f, R_FILE_APPEND);
            if (a >= 0 && record) s_add(R_FILE_APPEND, a);
            if (a >= 0 && s_ok(R_FILE_GET)) {
                double g = s_run_gets(f, R_FILE_GET);
                if (g >= 0 && record) s_add(R_FILE_GET, g);
                if (g >= 0 && check) s_verify(f, R_FILE_GET);
            }
            /* after the gets, so they read the workload's 20 KB per key */
            if (a >= 0 && s_ok(R_FILE_APPEND_WARM)) {
                double w = s_run_appends(f, R_FILE_APPEND_WARM);
                if (w >= 0 && record) s_add(R_FILE_APPEND_WARM, w);
            }
            if (pd_close(&f))
                s_fail(R_FILE_APPEND, "pd_close: %s", pd_errmsg(NULL));
        }
    }
    if (s_ok(R_FLOOR_OWC)) s_floor_owc(record);

    s_floor_memcpy(record);
    if (s_ok(R_DICT_APPEND)) {
        pd_store *d = NULL;
        if (pd_dict_open(&d))
            s_fail(R_DICT_APPEND, "pd_dict_open: %s", pd_errmsg(NULL));
        else
            s_store_round(d, R_DICT_APPEND, R_DICT_GET, record, check);
    }
    if (s_ok(R_BUFFER_APPEND)) {
        pd_store *b = s_open_buffer(R_BUFFER_APPEND, cfg.buf_limit);
        if (b) {
            s_append_faults = -1;
            s_store_round(b, R_BUFFER_APPEND, R_BUFFER_GET, record, check);
            if (record && s_append_faults >= 0)
                s_add(R_BUFFER_APPEND_FAULTS,
                      (double)s_append_faults * 1000.0 / (double)cfg.nvals);
        }
    }
    if (s_ok(R_BUFFER_SPILL_APPEND)) {
        pd_store *b = s_open_buffer(R_BUFFER_SPILL_APPEND, cfg.spill_limit);
        if (b)
            s_store_round(b, R_BUFFER_SPILL_APPEND, R_BUFFER_SPILL_GET, record,
                          check);
    }
}

/* --------------------------------------------------- The big-value workload */

/*
 * 16 keys x 4 appends of 4 MiB (256 MiB), 16 keys per call.  The values come
 * from 16 distinct 4 MiB blocks (value (round r, key k) is block (r + k) % 16)
 * so neither side reads one cache-hot block.
 *
 * Floor: write() of the same 4 MiB blocks, in the same order, into one
 * already-open file: the page cache's sequential write bandwidth, the most a
 * store of files can reach.
 */
typedef struct s_big {
    unsigned char **blk;
    size_t nblk;
    char (*names)[16];
    pd_key *keys;
    pd_bytes *vals; /* big_rounds * big_keys */
} s_big;

static s_big bg;

static void s_big_init(void) {
    bg.nblk = 16;
    bg.blk = s_xmalloc(bg.nblk * sizeof *bg.blk);
    for (size_t b = 0; b < bg.nblk; b++) {
        bg.blk[b] = s_xmalloc(cfg.big_size);
        s_fill(bg.blk[b], cfg.big_size, 1000 + b);
    }
    bg.names = s_xmalloc(cfg.big_keys * sizeof *bg.names);
    bg.keys = s_xmalloc(cfg.big_rounds * cfg.big_keys * sizeof *bg.keys);
    bg.vals = s_xmalloc(cfg.big_rounds * cfg.big_keys * sizeof *bg.vals);
    for (size_t k = 0; k < cfg.big_keys; k++)
        snprintf(bg.names[k], sizeof bg.names[k], "big%02u",
                 (unsigned)(k % 100));
    for (size_t r = 0; r < cfg.big_rounds; r++)
        for (size_t k = 0; k < cfg.big_keys; k++) {
            size_t i = r * cfg.big_keys + k;
            bg.keys[i] = PD_KEY(bg.names[k], strlen(bg.names[k]));
            bg.vals[i] = PD_BYTES(bg.blk[(r + k) % bg.nblk], cfg.big_size);
        }
}

static void s_big_free(void) {
    for (size_t b = 0; b < bg.nblk; b++) free(bg.blk[b]);
    free(bg.blk);
    free(bg.names);
    free(bg.keys);
    free(bg.vals);
}

static double s_big_bytes(void) {
    return (double)cfg.big_rounds * (double)cfg.big_keys * (double)cfg.big_size;
}

static void s_floor_seqwrite(bool record) {
    char dir[PATH_MAX], path[PATH_MAX];
    if (s_mkdtemp(dir, sizeof dir)) {
        s_fail(R_FLOOR_SEQWRITE, "mkdtemp in %s: %s", cfg.dir, strerror(errno));
        return;
    }
    int fd = -1;
    if (s_join(path, sizeof path, dir, "seq") == 0)
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        s_fail(R_FLOOR_SEQWRITE, "open(%s): %s", path, strerror(errno));
        s_rmtree(dir);
        return;
    }
    size_t n = cfg.big_rounds * cfg.big_keys;
    double t0 = bench_now();
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = bg.vals[i].data;
        size_t left = cfg.big_size;
        while (left > 0) { /* large writes may legally be short */
            ssize_t w = write(fd, p, left);
            if (w <= 0) {
                s_fail(R_FLOOR_SEQWRITE, "write(%s): %s", path,
                       w < 0 ? strerror(errno) : "wrote nothing");
                goto out;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    double t = bench_now() - t0;
    if (record) s_add(R_FLOOR_SEQWRITE, s_big_bytes() / t / 1e9);
out:
    close(fd);
    s_rmtree(dir); /* drop the pages: the next round starts alike */
}

static void s_file_big(bool record, bool check) {
    pd_store *f = s_open_file(R_FILE_APPEND_4M, false);
    if (!f) return;
    double t0 = bench_now();
    for (size_t r = 0; r < cfg.big_rounds; r++) {
        size_t i = r * cfg.big_keys;
        if (pd_append(f, cfg.big_keys, &bg.keys[i], &bg.vals[i], 0)) {
            s_fail(R_FILE_APPEND_4M, "pd_append: %s", pd_errmsg(f));
            pd_close(&f);
            return;
        }
    }
    double t = bench_now() - t0;
    if (record) s_add(R_FILE_APPEND_4M, s_big_bytes() / t / 1e9);
    if (check) { /* first round: check one key's size */
        pd_result *res = NULL;
        if (pd_get(f, 1, &bg.keys[0], &res, 0) ||
            pd_result_total(res) != (uint64_t)cfg.big_rounds * cfg.big_size)
            s_fail(R_FILE_APPEND_4M, "verify: key %s has the wrong size",
                   bg.names[0]);
        pd_result_free(&res);
    }
    if (pd_close(&f)) /* removes the directory: the pages go with it */
        s_fail(R_FILE_APPEND_4M, "pd_close: %s", pd_errmsg(NULL));
}

/* One round; the order alternates so neither side always runs first. */
static void s_big_round(int round, bool record, bool check) {
    for (int pass = 0; pass < 2; pass++) {
        if ((pass + round) % 2 == 0) {
            if (s_ok(R_FLOOR_SEQWRITE)) s_floor_seqwrite(record);
        } else {
            if (s_ok(R_FILE_APPEND_4M)) s_file_big(record, check);
        }
    }
}

/* ------------------------------------------------------- Peak memory */

/* What the child reports through its pipe. */
typedef struct s_memres {
    double rss_before_kb; /* after the input pool is allocated and touched */
    double hwm_append_kb; /* VmHWM after the last append */
    double hwm_close_kb;  /* VmHWM after pd_close (which spills the rest) */
    double max_usage;     /* largest pd_buffer_memory_usage seen */
    double bytes, seconds;
    char err[400];
} s_memres;

/* VmRSS or VmHWM of this process, in kB (-1 if unreadable). */
static double s_status_kb(const char *field) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return -1;
    char line[256];
    double v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtod(line + fl + 1, NULL);
            break;
        }
    fclose(fp);
    return v;
}

/*
 * In the child: Buffer(Dict, File, L) fed cfg.mem_total bytes of values of
 * 100 B..64 KiB (the octave uniform, then the size uniform in it, so small
 * and large values both matter) over 1000 random keys, 100 values per call.
 * Values are slices of one 8 MiB pool at random offsets: the pool is the
 * only input buffer, allocated and touched before the baseline RSS.
 */
static void s_mem_child(s_memres *res) {
    const size_t pool_size = 8u << 20;
    unsigned char *pool = s_xmalloc(pool_size);
    s_fill(pool, pool_size, 7);
    pd_key keys[256];
    pd_bytes vals[256];
    size_t per_call = cfg.mem_per_call < 256 ? cfg.mem_per_call : 256;
    char(*names)[16] = s_xmalloc(1000 * sizeof *names);
    for (size_t k = 0; k < 1000; k++)
        snprintf(names[k], sizeof names[k], "m%04zu", k);

    pd_store *b = NULL, *d = NULL, *f = NULL;
    if (pd_dict_open(&d) || pd_file_open_temp(&f, cfg.dir, 0) ||
        pd_buffer_open(&b, &d, &f, cfg.mem_limit, 0)) {
        snprintf(res->err, sizeof res->err, "open: %s", pd_errmsg(NULL));
        return;
    }

    /* Give back what the parent's heap left free, reset the peak to now,
     * and take the baseline. */
    malloc_trim(0);
    int cfd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (cfd >= 0) {
        if (write(cfd, "5", 1) != 1) { /* older kernels: HWM not reset */
        }
        close(cfd);
    }
    res->rss_before_kb = s_status_kb("VmRSS");

    uint64_t st = 99, done = 0;
    double t0 = bench_now();
    while (done < cfg.mem_total) {
        for (size_t j = 0; j < per_call; j++) {
            size_t oct = (size_t)(s_rand(&st) % 10); /* 100 * 2^oct */
            size_t lo = cfg.mem_min << oct, hi = lo * 2;
            if (hi > cfg.mem_max) hi = cfg.mem_max;
            if (lo > hi) lo = hi;
            size_t len = lo + (size_t)(s_rand(&st) % (hi - lo + 1));
            size_t off = (size_t)(s_rand(&st) % (pool_size - len));
            const char *nm = names[s_rand(&st) % 1000];
            keys[j] = PD_KEY(nm, strlen(nm));
            vals[j] = PD_BYTES(pool + off, len);
            done += len;
        }
        if (pd_append(b, per_call, keys, vals, 0)) {
            snprintf(res->err, sizeof res->err, "pd_append: %s", pd_errmsg(b));
            pd_close(&b);
            return;
        }
        double u = (double)pd_buffer_memory_usage(b);
        if (u > res->max_usage) res->max_usage = u;
    }
    res->seconds = bench_now() - t0;
    res->bytes = (double)done;
    res->hwm_append_kb = s_status_kb("VmHWM");
    if (pd_close(&b))
        snprintf(res->err, sizeof res->err, "pd_close: %s", pd_errmsg(NULL));
    res->hwm_close_kb = s_status_kb("VmHWM");
    free(names);
    free(pool);
}

/* Forks the child above and records its peak growth over the whole life of
 * the Buffer (appends and the close that spills what it holds). */
static void s_mem_round(bool record) {
    if (!s_ok(R_BUFFER_PEAK_RSS)) return;
    int p[2];
    if (pipe(p)) {
        s_fail(R_BUFFER_PEAK_RSS, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        s_fail(R_BUFFER_PEAK_RSS, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        close(p[0]);
        s_memres res;
        memset(&res, 0, sizeof res);
        s_mem_child(&res);
        ssize_t w = write(p[1], &res, sizeof res);
        _exit(w == (ssize_t)sizeof res ? 0 : 1);
    }
    close(p[1]);
    s_memres res;
    size_t got = 0;
    while (got < sizeof res) {
        ssize_t r = read(p[0], (char *)&res + got, sizeof res - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got != sizeof res) {
        s_fail(R_BUFFER_PEAK_RSS, "child died (status 0x%x)", status);
        return;
    }
    if (res.err[0]) {
        s_fail(R_BUFFER_PEAK_RSS, "%s", res.err);
        return;
    }
    if (res.rss_before_kb < 0 || res.hwm_close_kb < 0) {
        s_fail(R_BUFFER_PEAK_RSS, "/proc/self/status unreadable");
        return;
    }
    double grow = (res.hwm_close_kb - res.rss_before_kb) / 1024.0;
    if (!record) return;
    s_add(R_BUFFER_PEAK_RSS, grow);
    /* Keep the details of the worst run for the report. */
    s_stat s = s_stats(R_BUFFER_PEAK_RSS);
    if (grow >= s.max)
        snprintf(rows[R_BUFFER_PEAK_RSS].note,
                 sizeof rows[R_BUFFER_PEAK_RSS].note,
                 "worst run: peak during appends %.1f MiB, incl. close %.1f "
                 "MiB; counted usage max %.1f MiB; %.0f MiB in %.2f s",
                 (res.hwm_append_kb - res.rss_before_kb) / 1024.0, grow,
                 res.max_usage / MIB, res.bytes / MIB, res.seconds);
}

/* ------------------------------------------------------------------ Report */

typedef struct s_host {
    char date[64], kernel[128], cpu[160];
    long nproc;
    char load0[64], load1[64];
    rlim_t nofile;
} s_host;

static s_host host;

static void s_loadavg(char *out, size_t cap) {
    FILE *fp = fopen("/proc/loadavg", "r");
    out[0] = '\0';
    if (fp) {
        double a = 0, b = 0, c = 0;
        if (fscanf(fp, "%lf %lf %lf", &a, &b, &c) == 3)
            snprintf(out, cap, "%.2f %.2f %.2f", a, b, c);
        fclose(fp);
    }
}

static void s_host_info(void) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(host.date, sizeof host.date, "%Y-%m-%d %H:%M:%S %z", &tm);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(host.kernel, sizeof host.kernel, "%s", u.release);
    host.nproc = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(host.cpu, sizeof host.cpu, "unknown");
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (fp) {
        char line[512];
        while (fgets(line, sizeof line, fp))
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ' || *c == '\t') c++;
                    c[strcspn(c, "\n")] = '\0';
                    snprintf(host.cpu, sizeof host.cpu, "%s", c);
                }
                break;
            }
        fclose(fp);
    }
    s_loadavg(host.load0, sizeof host.load0);
}

static const char *s_section_title(int sec, char *buf, size_t cap) {
    if (sec == 0)
        snprintf(buf, cap,
                 "%zu-byte values: %zu appends over %zu keys, %zu keys per "
                 "call; then 1 get per key (small Buffer: %.1f MiB)",
                 cfg.vsize, cfg.nvals, cfg.nkeys, cfg.per_call,
                 (double)cfg.spill_limit / MIB);
    else if (sec == 1)
        snprintf(buf, cap,
                 "%zu MiB values: %zu keys x %zu appends (%.0f MiB), %zu keys "
                 "per call",
                 cfg.big_size >> 20, cfg.big_keys, cfg.big_rounds,
                 s_big_bytes() / MIB, cfg.big_keys);
    else
        snprintf(buf, cap,
                 "peak memory: Buffer(Dict,File,%.0f MiB) fed %.0f MiB of "
                 "%zu B..%zu KiB values over 1000 keys, forked child",
                 (double)cfg.mem_limit / MIB, (double)cfg.mem_total / MIB,
                 cfg.mem_min, cfg.mem_max >> 10);
    return buf;
}

/* The floor (or limit) value a row is compared with; NAN-free: -1 if none. */
static double s_floor_value(int r) {
    if (rows[r].tkind == T_LIMIT_MAX) return (double)cfg.mem_limit / MIB;
    if (rows[r].floor < 0) return -1;
    s_stat f = s_stats(rows[r].floor);
    return f.have ? f.med : -1;
}

/* The ratio the row is judged on (or shown with); -1 if none. */
static double s_ratio(int r) {
    s_stat s = s_stats(r);
    double f = s_floor_value(r);
    if (!s.have || f <= 0) return -1;
    return (rows[r].tkind == T_LIMIT_MAX ? s.max : s.med) / f;
}

static bool s_section_on(int sec) { return cfg.sections & (1u << sec); }

/* "PASS", "FAIL", "ERROR", "info", "floor", "skipped". */
static const char *s_verdict(int r) {
    if (!s_section_on(rows[r].section)) return "skipped";
    if (!s_ok(r)) return "ERROR";
    s_stat s = s_stats(r);
    if (!s.have) return "ERROR";
    switch (rows[r].tkind) {
    case T_FLOOR: return "floor";
    case T_INFO: return "info";
    case T_ABS_MIN: return s.med >= rows[r].target ? "PASS" : "FAIL";
    case T_RATIO_MIN:
    case T_LIMIT_MAX: {
        double q = s_ratio(r);
        if (q < 0) return "ERROR"; /* its floor failed */
        if (rows[r].tkind == T_RATIO_MIN)
            return q >= rows[r].target ? "PASS" : "FAIL";
        return q <= rows[r].target ? "PASS" : "FAIL";
    }
    }
    return "ERROR";
}

static const char *s_target_text(int r, char *buf, size_t cap) {
    char a[32];
    switch (rows[r].tkind) {
    case T_FLOOR: snprintf(buf, cap, "-"); break;
    case T_INFO: snprintf(buf, cap, "(none)"); break;
    case T_ABS_MIN:
        snprintf(buf, cap, ">= %s %s",
                 s_fmt(rows[r].target, rows[r].unit, a, sizeof a),
                 rows[r].unit);
        break;
    case T_RATIO_MIN:
        snprintf(buf, cap, ">= %.2f x floor", rows[r].target);
        break;
    case T_LIMIT_MAX:
        snprintf(buf, cap, "<= %.2f x limit (%.1f MiB)", rows[r].target,
                 rows[r].target * (double)cfg.mem_limit / MIB);
        break;
    }
    return buf;
}

/* Notes computed from several rows, once every run is done. */
static void s_finish_notes(void) {
    s_stat a = s_stats(R_FILE_APPEND), w = s_stats(R_FLOOR_WRITE);
    char b[32];
    if (a.have && w.have && w.med > 0)
        snprintf(rows[R_FILE_APPEND].note, sizeof rows[R_FILE_APPEND].note,
                 "ratio to write() on already-open files (%s rec/s): %.2f; "
                 "creating files costs what it costs on this file system",
                 s_fmt(w.med, "rec/s", b, sizeof b), a.med / w.med);
}

static void s_print_table(FILE *out) {
    fprintf(out, "\nlibpartd bench_core %s\n", pd_version_string());
    fprintf(out, "date %s | kernel %s | nproc %ld | cpu %s\n", host.date,
            host.kernel, host.nproc, host.cpu);
    fprintf(out,
            "dir %s | runs %d%s | %s | fd limit %llu | "
            "loadavg %s -> %s\n",
            cfg.dir, cfg.runs, cfg.quick ? "" : " (+1 warm-up)",
            cfg.quick ? "QUICK (smoke sizes)" : "full",
            (unsigned long long)host.nofile, host.load0, host.load1);
    fprintf(out, "figures: median [min-max] over the runs; ratio = median / "
                 "floor median from the same run (peak memory: worst run / "
                 "limit)\n");
    int sec = -1;
    char t[256], a[32], b[32], c[32], d[32], tg[64], rt[16];
    for (int r = 0; r < R_COUNT; r++) {
        if (!s_section_on(rows[r].section)) continue;
        if (rows[r].section != sec) {
            sec = rows[r].section;
            fprintf(out, "\n== %s\n", s_section_title(sec, t, sizeof t));
            fprintf(out, "%-44s %8s %-17s %-6s %9s %6s  %-26s %s\n",
                    "benchmark", "median", "[min-max]", "unit", "floor",
                    "ratio", "target", "result");
        }
        s_stat s = s_stats(r);
        double f = s_floor_value(r);
        double q = s_ratio(r);
        char range[40];
        if (s.have)
            snprintf(range, sizeof range, "[%s-%s]",
                     s_fmt(s.min, rows[r].unit, b, sizeof b),
                     s_fmt(s.max, rows[r].unit, c, sizeof c));
        else
            snprintf(range, sizeof range, "-");
        if (q >= 0)
            snprintf(rt, sizeof rt, "%.2f", q);
        else
            snprintf(rt, sizeof rt, "-");
        fprintf(out, "%-44s %8s %-17s %-6s %9s %6s  %-26s %s\n", rows[r].name,
                s.have ? s_fmt(s.med, rows[r].unit, a, sizeof a) : "-", range,
                rows[r].unit, f > 0 ? s_fmt(f, rows[r].unit, d, sizeof d) : "-",
                rt, s_target_text(r, tg, sizeof tg), s_verdict(r));
        if (!s_ok(r)) fprintf(out, "    error: %s\n", rows[r].err);
        if (rows[r].note[0]) fprintf(out, "    %s\n", rows[r].note);
    }
    int miss = 0, err = 0;
    for (int r = 0; r < R_COUNT; r++) {
        const char *v = s_verdict(r);
        miss += strcmp(v, "FAIL") == 0;
        err += strcmp(v, "ERROR") == 0;
    }
    fprintf(out, "\nsummary: %d target(s) missed, %d benchmark(s) in error\n",
            miss, err);
}

static void s_json_str(FILE *fp, const char *s) {
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(fp, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(fp, "\\u%04x", ch);
        else
            fputc(ch, fp);
    }
    fputc('"', fp);
}

/* A number for CSV/JSON: %.6g, or an empty field / null when absent. */
static void s_num(FILE *fp, bool have, double x, bool json) {
    if (have)
        fprintf(fp, "%.6g", x);
    else if (json)
        fputs("null", fp);
}

static const char *s_tkind_name(s_tkind k) {
    switch (k) {
    case T_FLOOR: return "floor";
    case T_INFO: return "info";
    case T_RATIO_MIN: return "ratio_min";
    case T_ABS_MIN: return "abs_min";
    case T_LIMIT_MAX: return "limit_ratio_max";
    }
    return "";
}

static int s_write_csv(const char *path) {
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    fprintf(fp, "id,name,unit,runs,median,min,max,floor_id,floor_median,"
                "ratio,target_kind,target,result,error,note\n");
    for (int r = 0; r < R_COUNT; r++) {
        s_stat s = s_stats(r);
        double f = s_floor_value(r), q = s_ratio(r);
        /* The free-text fields, quoted (no quote or newline inside). */
        char errq[600], noteq[300];
        snprintf(errq, sizeof errq, "%s", rows[r].err);
        snprintf(noteq, sizeof noteq, "%s", rows[r].note);
        for (char *p = errq; *p; p++)
            if (*p == '"' || *p == '\n') *p = '\'';
        for (char *p = noteq; *p; p++)
            if (*p == '"' || *p == '\n') *p = '\'';
        fprintf(fp, "%s,\"%s\",%s,%d,", rows[r].id, rows[r].name, rows[r].unit,
                rows[r].n);
        s_num(fp, s.have, s.med, false);
        fputc(',', fp);
        s_num(fp, s.have, s.min, false);
        fputc(',', fp);
        s_num(fp, s.have, s.max, false);
        fprintf(fp, ",%s,",
                rows[r].floor >= 0             ? rows[rows[r].floor].id
                : rows[r].tkind == T_LIMIT_MAX ? "memory_limit_mib"
                                               : "");
        s_num(fp, f > 0, f, false);
        fputc(',', fp);
        s_num(fp, q >= 0, q, false);
        fprintf(fp, ",%s,", s_tkind_name(rows[r].tkind));
        s_num(fp, rows[r].tkind > T_INFO, rows[r].target, false);
        fprintf(fp, ",%s,\"%s\",\"%s\"\n", s_verdict(r), errq, noteq);
    }
    return fclose(fp) == 0 ? 0 : -1;
}

static int s_write_json(const char *path) {
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    fprintf(fp, "{\n  \"tool\": \"bench_core\",\n  \"version\": ");
    s_json_str(fp, pd_version_string());
    fprintf(fp, ",\n  \"date\": ");
    s_json_str(fp, host.date);
    fprintf(fp, ",\n  \"kernel\": ");
    s_json_str(fp, host.kernel);
    fprintf(fp, ",\n  \"nproc\": %ld,\n  \"cpu\": ", host.nproc);
    s_json_str(fp, host.cpu);
    fprintf(fp, ",\n  \"loadavg_start\": ");
    s_json_str(fp, host.load0);
    fprintf(fp, ",\n  \"loadavg_end\": ");
    s_json_str(fp, host.load1);
    fprintf(fp, ",\n  \"dir\": ");
    s_json_str(fp, cfg.dir);
    fprintf(fp,
            ",\n  \"runs\": %d,\n  \"quick\": %s,\n"
            "  \"workload\": {\"nkeys\": %zu, \"nvals\": %zu, \"vsize\": %zu, "
            "\"per_call\": %zu, \"buffer_limit\": %llu, \"spill_limit\": "
            "%llu, \"big_keys\": %zu, \"big_rounds\": %zu, \"big_size\": %zu, "
            "\"mem_limit\": %llu, \"mem_total\": %llu},\n  \"rows\": [\n",
            cfg.runs, cfg.quick ? "true" : "false", cfg.nkeys, cfg.nvals,
            cfg.vsize, cfg.per_call, (unsigned long long)cfg.buf_limit,
            (unsigned long long)cfg.spill_limit, cfg.big_keys, cfg.big_rounds,
            cfg.big_size, (unsigned long long)cfg.mem_limit,
            (unsigned long long)cfg.mem_total);
    char t[256];
    for (int r = 0; r < R_COUNT; r++) {
        s_stat s = s_stats(r);
        double f = s_floor_value(r), q = s_ratio(r);
        fprintf(fp, "    {\"id\": \"%s\", \"section\": ", rows[r].id);
        s_json_str(fp, s_section_title(rows[r].section, t, sizeof t));
        fprintf(fp, ", \"name\": ");
        s_json_str(fp, rows[r].name);
        fprintf(fp, ", \"unit\": \"%s\", \"median\": ", rows[r].unit);
        s_num(fp, s.have, s.med, true);
        fprintf(fp, ", \"min\": ");
        s_num(fp, s.have, s.min, true);
        fprintf(fp, ", \"max\": ");
        s_num(fp, s.have, s.max, true);
        fprintf(fp, ", \"samples\": [");
        for (int i = 0; i < rows[r].n; i++)
            fprintf(fp, "%s%.6g", i ? ", " : "", rows[r].v[i]);
        fprintf(fp, "], \"floor_id\": ");
        if (rows[r].floor >= 0)
            s_json_str(fp, rows[rows[r].floor].id);
        else
            fputs("null", fp);
        fprintf(fp, ", \"floor\": ");
        s_num(fp, f > 0, f, true);
        fprintf(fp, ", \"ratio\": ");
        s_num(fp, q >= 0, q, true);
        fprintf(fp, ", \"target_kind\": \"%s\", \"target\": ",
                s_tkind_name(rows[r].tkind));
        s_num(fp, rows[r].tkind > T_INFO, rows[r].target, true);
        fprintf(fp, ", \"result\": \"%s\", \"error\": ", s_verdict(r));
        s_json_str(fp, rows[r].err);
        fprintf(fp, ", \"note\": ");
        s_json_str(fp, rows[r].note);
        fprintf(fp, "}%s\n", r + 1 < R_COUNT ? "," : "");
    }
    fprintf(fp, "  ]\n}\n");
    return fclose(fp) == 0 ? 0 : -1;
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
            "big, mem\n"
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
    if (s_join(tmp, sizeof tmp, exe, "bench_core.csv") == 0)
        memcpy(cfg.csv, tmp, sizeof tmp);
}

/* --only: sections 0 small, 1 big, 2 mem.  0, or -1 for a bad list. */
static int s_parse_only(const char *list) {
    static const char *names[3] = {"small", "big", "mem"};
    unsigned bits = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < 3; i++)
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

int main(int argc, char **argv) {
    int runs = -1;
    cfg.sections = 7;
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
                fprintf(stderr, "bench_core: --only wants small, big, mem\n");
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
    s_host_info();
    for (int r = 0; r < R_COUNT; r++)
        rows[r].v = s_xmalloc((size_t)cfg.runs * sizeof(double));

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
    if (s_section_on(1)) {
        s_big_init();
        /* The warm-up is kept here even with --quick: it is cheap, and
         * without it whichever side runs first pays for the page cache's
         * first growth. */
        for (int run = 0; run <= cfg.runs; run++)
            s_big_round(run, run > 0, run == 0);
        s_big_free();
        printf("bench_core: 4 MiB values done (%.1f s)\n", bench_now() - t0);
        fflush(stdout);
    }

    /* Round 0 is the warm-up, discarded; --quick skips it (its first
     * measured round does the checks instead). */
    int first = cfg.quick ? 1 : 0;
    if (s_section_on(0)) {
        t0 = bench_now();
        s_small_init();
        for (int run = first; run <= cfg.runs; run++)
            s_small_round(run > 0, run == first);
        s_small_free();
        s_trash_empty();
        printf("bench_core: small values done (%.1f s)\n", bench_now() - t0);
        fflush(stdout);
    }

    /* No warm-up: every run is a fresh child. */
    if (s_section_on(2)) {
        t0 = bench_now();
        for (int run = 0; run < cfg.runs; run++) s_mem_round(true);
        printf("bench_core: peak memory done (%.1f s)\n", bench_now() - t0);
    }

    s_loadavg(host.load1, sizeof host.load1);
    s_finish_notes();
    s_print_table(stdout);
    int rc = 0;
    if (s_write_csv(cfg.csv)) {
        fprintf(stderr, "bench_core: cannot write %s: %s\n", cfg.csv,
                strerror(errno));
        rc = 2;
    } else {
        printf("csv: %s\n", cfg.csv);
    }
    if (cfg.json) {
        if (s_write_json(cfg.json)) {
            fprintf(stderr, "bench_core: cannot write %s: %s\n", cfg.json,
                    strerror(errno));
            rc = 2;
        } else {
            printf("json: %s\n", cfg.json);
        }
    }
    bool miss = false, err = false;
    for (int r = 0; r < R_COUNT; r++) {
        miss |= strcmp(s_verdict(r), "FAIL") == 0;
        err |= strcmp(s_verdict(r), "ERROR") == 0;
    }
    for (int r = 0; r < R_COUNT; r++) free(rows[r].v);
    if (err || rc) return 2;
    return cfg.strict && miss ? 1 : 0;
}
