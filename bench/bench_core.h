/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * What the parts of bench_core share: the configuration, the table of rows
 * (one per figure reported), and the helpers the workloads and the report
 * call.  bench_core.c is the driver (options, order of the sections);
 * bench_core_rows.c the rows and helpers; bench_core_small.c,
 * bench_core_big.c and bench_core_mem.c one workload each, floors and
 * stores together; bench_core_report.c the table, CSV and JSON.
 */
#ifndef PARTD_BENCH_CORE_H
#define PARTD_BENCH_CORE_H

#include "partd/partd.h"

#include "bench.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>

#define MIB (1024.0 * 1024.0)

/* ------------------------------------------------------------ Configuration */

typedef struct bc_cfg {
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
} bc_cfg;

extern bc_cfg cfg;

/* ------------------------------------------------------------------- Rows */

/* How a row is judged.  FLOOR rows are the baselines themselves. */
typedef enum {
    T_FLOOR,     /* a floor: no verdict */
    T_INFO,      /* shown with its floor, no target */
    T_RATIO_MIN, /* median / floor median >= target */
    T_ABS_MIN,   /* median >= target (floor shown beside it) */
    T_LIMIT_MAX  /* worst (max) run / limit <= target */
} bc_tkind;

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
    R_FANOUT_FILE_APPEND,
    R_FANOUT_FILE_GET,
    R_FANOUT_DICT_APPEND,
    R_FANOUT_DICT_GET,
    R_FLOOR_SEQWRITE,
    R_FILE_APPEND_4M,
    R_BUFFER_PEAK_RSS,
    R_FLOOR_LOG_WRITEV,
    R_LOG_APPEND,
    R_LOG_ATT_APPEND,
    R_LOG_FILE_APPEND,
    R_LOG_GET,
    R_LOG_FILE_GET,
    R_FLOOR_SEQREAD,
    R_LOG_READBACK_RAW,
    R_LOG_READBACK_RAW_BATCH,
    R_LOG_READBACK,
    R_FILE_READBACK,
    R_FLOOR_THR_1T,
    R_FLOOR_THR_NT,
    R_LOG_APPEND_1T,
    R_LOG_APPEND_NT,
    R_LOG_ATT_APPEND_1T,
    R_LOG_THR_SCALING,
    R_COUNT
};

typedef struct bc_row {
    const char *id;   /* stable name used in CSV/JSON and by ref_core.py */
    int section;      /* 0 small values, 1 big values, 2 memory, 3 Log */
    const char *name; /* shown in the table */
    const char *unit; /* "rec/s", "keys/s", "GB/s", "MiB", "x" (a ratio) */
    int floor;        /* row index of its floor, or -1 */
    bc_tkind tkind;
    double target;
    double *v; /* one sample per run */
    int n;
    char err[512]; /* why the row could not be measured */
    char note[256];
} bc_row;

extern bc_row rows[R_COUNT];

/* Appends sample x to row r (at most cfg.runs of them). */
void bc_add(int r, double x);
/* Records why row r could not be measured (first reason only); the row is
 * skipped in later rounds. */
void bc_fail(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool bc_ok(int r);

typedef struct bc_stat {
    double med, min, max;
    bool have;
} bc_stat;

/* Median, min and max of row r's samples; .have false if it has none. */
bc_stat bc_stats(int r);
/* "1.52M", "185k", "2.31": three significant figures with an SI suffix for
 * rates; plain figures for GB/s and MiB. */
const char *bc_fmt(double x, const char *unit, char *buf, size_t cap);

/* ---------------------------------------------------------------- Helpers */

/* xorshift64*: deterministic data, the same in every run.  Inline: the
 * peak-memory child calls it inside its timed loop. */
static inline uint64_t bc_rand(uint64_t *st) {
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* n pseudo-random bytes from seed into p. */
void bc_fill(unsigned char *p, size_t n, uint64_t seed);
/* malloc that exits with status 2 when out of memory. */
void *bc_xmalloc(size_t n);

/* The small workload's input: one pool of nvals*vsize pseudo-random bytes
 * (seed 42); value i is pool[i*vsize .. (i+1)*vsize) and goes to key
 * i % nkeys.  keys[] and vals[] hold the whole sequence of pd_append
 * arguments, built before any timing. */
typedef struct bc_input {
    unsigned char *pool;
    char (*names)[16]; /* "k0000" ... : plain names, files named as the key */
    pd_key *keys1;     /* one key per key index, for gets */
    pd_key *keys;      /* one per append */
    pd_bytes *vals;    /* one per append */
    size_t per_key;    /* bytes each key ends with */
} bc_input;
/* Builds in for cfg's nkeys, nvals and vsize. */
void bc_input_make(bc_input *in);
/* Frees what bc_input_make allocated. */
void bc_input_free(bc_input *in);
/* dir + "/" + name into out.  0, or -1 with errno ENAMETOOLONG if it does
 * not fit. */
int bc_join(char *out, size_t cap, const char *dir, const char *name);
/* A new directory under cfg.dir (the floors' counterpart of
 * pd_file_open_temp).  Returns 0 or -1 with errno. */
int bc_mkdtemp(char *out, size_t cap);
/* rm -rf of a directory this program made (bc_mkdtemp, or a File store
 * opened with PD_FILE_KEEP). */
void bc_rmtree(const char *path);
/* Defers the removal of path to bc_trash_empty (see bench_core_rows.c for
 * why). */
void bc_trash_add(const char *path);
void bc_trash_empty(void);
/* A File store in a new directory under cfg.dir.  `defer`: keep the
 * directory on close and remove it with the section's trash instead. */
pd_store *bc_open_file(int r, bool defer);

/* -------------------------------------------------------------- Workloads */

/* Section 0, small values (bench_core_small.c).  A round runs every floor
 * and every store; `check` reads every key back and compares its bytes. */
void bc_small_init(void);
void bc_small_round(bool record, bool check);
void bc_small_free(void);

/* Section 1, 4 MiB values (bench_core_big.c). */
void bc_big_init(void);
void bc_big_round(int round, bool record, bool check);
void bc_big_free(void);
/* Bytes one round of the big workload appends. */
double bc_big_bytes(void);

/* Section 2, peak memory (bench_core_mem.c): one forked child per call. */
void bc_mem_round(bool record);

/* Section 3, the Log against File and the sequential floors
 * (bench_core_log.c). */
void bc_log_init(void);
void bc_log_round(bool record, bool check);
void bc_log_free(void);
/* Bytes the partition workload appends. */
double bc_log_part_bytes(void);

/* ----------------------------------------------------------------- Report */

typedef struct bc_host {
    char date[64], kernel[128], cpu[160];
    long nproc;
    char load0[64], load1[64];
    rlim_t nofile;
} bc_host;

extern bc_host host;

/* The 1-, 5- and 15-minute load averages as text ("" if unreadable). */
void bc_loadavg(char *out, size_t cap);
/* Fills host (but nofile) and its starting load average. */
void bc_host_info(void);
bool bc_section_on(int sec);
/* "PASS", "FAIL", "ERROR", "info", "floor", "skipped". */
const char *bc_verdict(int r);
/* Notes computed from several rows, once every run is done. */
void bc_finish_notes(void);
void bc_print_table(FILE *out);
/* 0, or -1 with errno. */
int bc_write_csv(const char *path);
int bc_write_json(const char *path);

#endif
