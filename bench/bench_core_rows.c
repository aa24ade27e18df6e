/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_core's rows (one per figure reported) and the helpers its workloads
 * share: data, temporary directories, statistics and number formatting.
 */
#include "bench_core.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bc_row rows[R_COUNT] = {
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
    /* A Fanout over one inner store against the store alone, run back to
     * back in each round (in alternating order): the Fanout's own cost
     * (splitting the batch, reassembling a get) on top of the store's. */
    [R_FANOUT_FILE_APPEND] = {"fanout_file_append", 0,
                              "Fanout(File) append, new store", "rec/s",
                              R_FILE_APPEND, T_RATIO_MIN, 0.95},
    [R_FANOUT_FILE_GET] = {"fanout_file_get", 0,
                           "Fanout(File) get (1 key per call)", "keys/s",
                           R_FILE_GET, T_RATIO_MIN, 0.95},
    [R_FANOUT_DICT_APPEND] = {"fanout_dict_append", 0, "Fanout(Dict) append",
                              "rec/s", R_DICT_APPEND, T_RATIO_MIN, 0.95},
    [R_FANOUT_DICT_GET] = {"fanout_dict_get", 0,
                           "Fanout(Dict) get (1 key per call)", "keys/s",
                           R_DICT_GET, T_RATIO_MIN, 0.95},
    [R_FLOOR_SEQWRITE] = {"floor_seq_write", 1,
                          "floor: write() 4 MiB blocks, one open file", "GB/s",
                          -1, T_FLOOR, 0},
    [R_FILE_APPEND_4M] = {"file_append_4m", 1, "File append 4 MiB values",
                          "GB/s", R_FLOOR_SEQWRITE, T_RATIO_MIN, 0.80},
    [R_BUFFER_PEAK_RSS] = {"buffer_peak_rss", 2,
                           "Buffer peak RSS growth (worst run)", "MiB", -1,
                           T_LIMIT_MAX, 1.10},
    [R_FLOOR_LOG_WRITEV] = {"floor_log_writev", 3,
                            "floor: one writev() per call, one open file",
                            "rec/s", -1, T_FLOOR, 0},
    [R_LOG_APPEND] = {"log_append", 3, "Log append, new store", "rec/s",
                      R_FLOOR_LOG_WRITEV, T_INFO, 0},
    /* The same calls through one attempt (begin and commit timed), beside
     * the plain appends of the same round. */
    [R_LOG_ATT_APPEND] = {"log_attempt_append", 3,
                          "Log attempt append, new store (and commit)", "rec/s",
                          R_LOG_APPEND, T_INFO, 0},
    [R_LOG_FILE_APPEND] = {"log_file_append", 3,
                           "File append, new store (same round)", "rec/s",
                           R_FLOOR_LOG_WRITEV, T_INFO, 0},
    [R_LOG_GET] = {"log_get", 3, "Log get (1 key per call, compacted)",
                   "keys/s", R_LOG_FILE_GET, T_INFO, 0},
    [R_LOG_FILE_GET] = {"log_file_get", 3, "File get (1 key per call)",
                        "keys/s", -1, T_FLOOR, 0},
    [R_FLOOR_SEQREAD] = {"floor_seq_read", 3,
                         "floor: pread() of each partition, one cached file",
                         "GB/s", -1, T_FLOOR, 0},
    [R_LOG_READBACK_RAW] = {"log_readback_raw", 3,
                            "Log read-back, not compacted (writer open)",
                            "GB/s", R_FLOOR_SEQREAD, T_INFO, 0},
    [R_LOG_READBACK_RAW_BATCH] = {"log_readback_raw_batch", 3,
                                  "Log read-back, not compacted, 64 "
                                  "partitions per pd_get",
                                  "GB/s", R_FLOOR_SEQREAD, T_INFO, 0},
    [R_LOG_READBACK] = {"log_readback", 3,
                        "Log read-back, compacted, 1 pd_get per partition",
                        "GB/s", R_FLOOR_SEQREAD, T_RATIO_MIN, 0.50},
    [R_FILE_READBACK] = {"file_readback", 3,
                         "File read-back, 1 pd_get per partition", "GB/s",
                         R_FLOOR_SEQREAD, T_INFO, 0},
    /* The thread rows' floors: the Log's calls written with one writev()
     * each by 1 and T threads, a new file per thread in one directory.  The
     * T-thread floor is an info row so that its ratio (the kernel's own
     * scaling of the pattern) reaches bench/report.py, which skips floors. */
    [R_FLOOR_THR_1T] = {"floor_thr_writev_1t", 3,
                        "floor: write() of the partition calls, 1 thread, "
                        "one file each",
                        "rec/s", -1, T_FLOOR, 0},
    [R_FLOOR_THR_NT] = {"floor_thr_writev_nt", 3,
                        "floor: write() of the partition calls, T threads, "
                        "one file each",
                        "rec/s", R_FLOOR_THR_1T, T_INFO, 0},
    [R_LOG_APPEND_1T] = {"log_append_1t", 3, "Log append, partitions, 1 thread",
                         "rec/s", -1, T_FLOOR, 0},
    [R_LOG_APPEND_NT] = {"log_append_nt", 3,
                         "Log append, partitions, T threads (a handle each)",
                         "rec/s", R_LOG_APPEND_1T, T_RATIO_MIN, 1.70},
    [R_LOG_ATT_APPEND_1T] = {"log_attempt_append_1t", 3,
                             "Log attempt append, partitions, 1 thread",
                             "rec/s", R_LOG_APPEND_1T, T_INFO, 0},
    /* Per round: (Log T threads / Log 1 thread) / (floor T / floor 1). */
    [R_LOG_THR_SCALING] = {"log_thr_scaling_vs_floor", 3,
                           "Log T-thread scaling / floor T-thread scaling", "x",
                           -1, T_INFO, 0},
};

void bc_add(int r, double x) {
    if (rows[r].n < cfg.runs) rows[r].v[rows[r].n++] = x;
}

/* Records why row r could not be measured (first reason only); the row is
 * skipped in later rounds. */
void bc_fail(int r, const char *fmt, ...) {
    if (rows[r].err[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rows[r].err, sizeof rows[r].err, fmt, ap);
    va_end(ap);
}

bool bc_ok(int r) { return rows[r].err[0] == '\0'; }

/* --------------------------------------------------------------- Utilities */

void bc_fill(unsigned char *p, size_t n, uint64_t seed) {
    uint64_t st = seed | 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x = bc_rand(&st);
        memcpy(p + i, &x, 8);
    }
    for (; i < n; i++) p[i] = (unsigned char)bc_rand(&st);
}

void *bc_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_core: out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

/* dir + "/" + name into out.  0, or -1 with errno ENAMETOOLONG if it does
 * not fit. */
int bc_join(char *out, size_t cap, const char *dir, const char *name) {
    int w = snprintf(out, cap, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* A new directory under cfg.dir (the floors' counterpart of
 * pd_file_open_temp).  Returns 0 or -1 with errno. */
int bc_mkdtemp(char *out, size_t cap) {
    if (bc_join(out, cap, cfg.dir, "bench_core.XXXXXX")) return -1;
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

/* rm -rf of a directory this program made (bc_mkdtemp, or a File store
 * opened with PD_FILE_KEEP). */
void bc_rmtree(const char *path) {
    nftw(path, s_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Directories whose removal is deferred to the end of the small-value
 * section.  Why: on ext4, creating a file right after many were deleted is
 * many times slower (the inode allocator reads and skips every recently
 * deleted inode: recently_deleted() in perf), so removing each round's
 * files before the next round's creates would make the benchmark measure
 * its own deletions.  The 4 MiB section still drops its few files every
 * round, to drop their page cache.  Figures: bench/README.md.
 */
static char **s_trash;
static size_t s_ntrash;

void bc_trash_add(const char *path) {
    char **t = realloc(s_trash, (s_ntrash + 1) * sizeof *t);
    char *c = strdup(path);
    if (!t || !c) {
        fprintf(stderr, "bench_core: out of memory\n");
        exit(2);
    }
    s_trash = t;
    s_trash[s_ntrash++] = c;
}

void bc_trash_empty(void) {
    for (size_t i = 0; i < s_ntrash; i++) {
        bc_rmtree(s_trash[i]);
        free(s_trash[i]);
    }
    free(s_trash);
    s_trash = NULL;
    s_ntrash = 0;
}

bc_stat bc_stats(int r) {
    if (rows[r].n == 0) return (bc_stat){0, 0, 0, false};
    bench_stat b = bench_stats(rows[r].v, rows[r].n);
    return (bc_stat){b.med, b.min, b.max, true};
}

/* "1.52M", "185k", "2.31": three significant figures with an SI suffix for
 * rates; plain figures for GB/s and MiB. */
const char *bc_fmt(double x, const char *unit, char *buf, size_t cap) {
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

/* A File store in a new directory under cfg.dir.  `defer`: keep the
 * directory on close and remove it with the section's trash instead. */
pd_store *bc_open_file(int r, bool defer) {
    pd_store *f = NULL;
    if (pd_file_open_temp(&f, cfg.dir, defer ? PD_FILE_KEEP : 0)) {
        bc_fail(r, "pd_file_open_temp(%s): %s", cfg.dir, pd_errmsg(NULL));
        return NULL;
    }
    if (defer) bc_trash_add(pd_file_path(f));
    return f;
}

void bc_input_make(bc_input *in) {
    in->pool = bc_xmalloc(cfg.nvals * cfg.vsize);
    bc_fill(in->pool, cfg.nvals * cfg.vsize, 42);
    in->names = bc_xmalloc(cfg.nkeys * sizeof *in->names);
    in->keys1 = bc_xmalloc(cfg.nkeys * sizeof *in->keys1);
    for (size_t k = 0; k < cfg.nkeys; k++) {
        int w = snprintf(in->names[k], sizeof in->names[k], "k%04zu", k);
        in->keys1[k] = PD_KEY(in->names[k], (size_t)w);
    }
    in->keys = bc_xmalloc(cfg.nvals * sizeof *in->keys);
    in->vals = bc_xmalloc(cfg.nvals * sizeof *in->vals);
    for (size_t i = 0; i < cfg.nvals; i++) {
        in->keys[i] = in->keys1[i % cfg.nkeys];
        in->vals[i] = PD_BYTES(in->pool + i * cfg.vsize, cfg.vsize);
    }
    in->per_key = (cfg.nvals / cfg.nkeys) * cfg.vsize;
}

void bc_input_free(bc_input *in) {
    free(in->pool);
    free(in->names);
    free(in->keys1);
    free(in->keys);
    free(in->vals);
}
