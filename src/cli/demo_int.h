/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * `partd demo`, shared by its files: demo.c (options, directories, the
 * report, pd_cli_demo), demo_proc.c (the server and worker processes, the
 * shuffle phase), demo_fail.c (writer attempts: --attempts and
 * --fail-workers) and demo_verify.c (reading every partition back).  See
 * demo.c for how it works.
 */
#ifndef PARTD_CLI_DEMO_INT_H
#define PARTD_CLI_DEMO_INT_H

#include "partd/partd.h"
#include "exit.h"
#include "store.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>

/* Defaults: about 20 s on 2 cores (see the help text). */
#define PD_DEMO_DEF_RECORDS 10000000u
#define PD_DEMO_DEF_WORKERS 2u
#define PD_DEMO_DEF_PARTS 64u
#define PD_DEMO_DEF_RECSIZE 100u
#define PD_DEMO_DEF_MEMORY ((uint64_t)256 << 20)
#define PD_DEMO_DEF_SEED 42u

#define PD_DEMO_MAX_WORKERS 64u
#define PD_DEMO_MAX_PARTS 65536u
#define PD_DEMO_MIN_RECSIZE 16u /* key and index */
#define PD_DEMO_MAX_RECSIZE 65536u
#define PD_DEMO_MAX_RECORDS ((uint64_t)1 << 40)
#define PD_DEMO_MAX_DIRS 16u /* --dir: the store spread over them */

/* --------------------------------------------------------------- State */

typedef struct pd_demo_opts {
    uint64_t records, memory, seed;
    unsigned workers, parts;
    size_t recsize;
    const char *codec, *dir;            /* dir: the first --dir */
    const char *dirs[PD_DEMO_MAX_DIRS]; /* every --dir, in order */
    unsigned ndirs;
    pd_cli_store_kind kind; /* --store; resolved by demo.c before the run */
    int level;
    bool have_memory, keep, direct, quiet;
    bool attempts;         /* workers write through writer attempts */
    unsigned fail_workers; /* --fail-workers K (implies attempts) */
} pd_demo_opts;

/* A worker's corner of the shared mapping. */
typedef struct pd_demo_slot {
    _Atomic uint64_t sent; /* records handed to the store */
    char error[512];       /* why it failed, when it exits 1 */
    /* Attempts (demo_fail.c), set by the coordinator before the fork. */
    unsigned attempt;      /* the worker's attempt number (1, then 2, ...) */
    uint64_t kill_at;      /* records sent at which it waits to be killed; 0 */
    _Atomic int at_kill;   /* it waits there */
    _Atomic int conflicts; /* its commit found an earlier one committed */
} pd_demo_slot;

/* Per worker and partition, in the shared mapping after the slots. */
typedef struct pd_demo_sum {
    uint64_t count, sum;
} pd_demo_sum;

typedef struct pd_demo_child {
    pid_t pid; /* 0: never started */
    bool live;
    int status;
    struct rusage ru;
} pd_demo_child;

typedef struct pd_demo {
    pd_demo_opts o;
    char run[PATH_MAX]; /* private (0700): the socket, the temporary store */
    char dir[PATH_MAX]; /* the store: --dir (the first), or run/store */
    char bind[PATH_MAX + 16];
    bool temp; /* dir is run/store: removed at the end unless --keep */
    /* --direct --store log: a handle held from before the workers start
     * to after the read-back, as a shuffle's driver holds its store, so
     * the workers' closes leave the Log as they wrote it (the last close
     * of a Log compacts it) and the read-back reads it so. */
    pd_store *hold;
    char addr[1024];
    pd_demo_child server;
    pd_demo_child *workers;
    pd_demo_child *readers; /* the read phase's (demo_verify.c), W at most */
    unsigned nreaders;
    pid_t pgid; /* the children's process group */
    void *shm;
    size_t shm_size;
    pd_demo_slot *slots;
    pd_demo_sum *expect; /* [worker * parts + partition] */
    bool tty;
    double last_shown; /* progress, pd_demo_now() */
    bool line_open;    /* a progress line without its newline */
    char failure[1024];
    int failed;      /* PD_CLI_EXIT_FAIL or PD_CLI_EXIT_INTR once failed */
    unsigned killed; /* workers killed by --fail-workers (and run again) */
} pd_demo;

typedef struct pd_demo_phase {
    double secs;
    uint64_t bytes, records;
} pd_demo_phase;

/* The signal that asked the demo to stop (SIGINT, SIGTERM, SIGHUP), or 0. */
extern volatile sig_atomic_t pd_demo_stop;

/* ------------------------------------------------------------ Output */

double pd_demo_now(void); /* CLOCK_MONOTONIC, seconds */
void pd_demo_sleep_ms(int ms);
/* Ends a progress line on a terminal. */
void pd_demo_clear_line(pd_demo *d);
/* "partd: demo: ..." on stderr. */
void pd_demo_errf(pd_demo *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Records the first failure (later ones are consequences); returns 1. */
int pd_demo_fail(pd_demo *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The progress of a phase on stderr; `final` draws it whatever the time. */
void pd_demo_progress(pd_demo *d, const char *phase, uint64_t done,
                      uint64_t total, const char *unit, uint64_t bytes,
                      double t_start, bool final);

/* --------------------------------------------------------- Processes */

/* Reaps c if it exited (block: wait for it).  Returns true if it is gone. */
bool pd_demo_reap(pd_demo_child *c, bool block);
/* "exited with status 1", "was killed by signal 9 (Killed)". */
const char *pd_demo_status_str(int st, char *buf, size_t cap);
/* Stops and reaps every live child. */
void pd_demo_stop_children(pd_demo *d);
/* Forks a child of the demo into c: in the child (which returns 0) default
 * signals, the children's process group (a new one when d->pgid is 0) and
 * death with the coordinator; in the coordinator the child's pid, or -1
 * with errno. */
pid_t pd_demo_fork(pd_demo *d, pd_demo_child *c);
/* Forks the server and reads its address; 0, 1 or PD_CLI_EXIT_INTR. */
int pd_demo_start_server(pd_demo *d);
/* The store a worker or the read-back uses (see demo_proc.c). */
int pd_demo_open_store(const pd_demo *d, pd_store **out, pd_store **client,
                       char *why, size_t cap);
/* A child that ended: a failure unless it is a worker that exited 0. */
int pd_demo_check_exits(pd_demo *d);
/* Forks worker w (its slot's attempt set); 0 or 1. */
int pd_demo_start_worker(pd_demo *d, unsigned w);
/* Starts the workers and waits for them, drawing progress. */
int pd_demo_shuffle(pd_demo *d, pd_demo_phase *ph);

/* ------------------------------------------------------------ Attempts */

/* What a worker writes through: the store, or an attempt on it. */
typedef struct pd_demo_sink {
    pd_store *s;
    pd_attempt *a; /* with attempts: open until pd_demo_sink_end */
} pd_demo_sink;

/* The writer of worker w, as a key: its index in decimal. */
void pd_demo_writer(unsigned w, char buf[16]);
/* Begins worker w's attempt on s when the demo uses attempts.  0, or -1
 * with why filled. */
int pd_demo_sink_begin(const pd_demo *d, unsigned w, pd_demo_sink *k,
                       pd_store *s, char *why, size_t cap);
int pd_demo_sink_append(pd_demo_sink *k, size_t n, const pd_key *keys,
                        const pd_bytes *vals);
/* Commits the attempt (a conflict is counted in the slot: the earlier
 * attempt's records stand, the same as these); 0, or -1 with why. */
int pd_demo_sink_end(const pd_demo *d, unsigned w, pd_demo_sink *k, char *why,
                     size_t cap);
/* In worker w after `sent` records: at its kill point, waits there for the
 * coordinator's SIGKILL. */
void pd_demo_kill_point(pd_demo *d, unsigned w, uint64_t sent);
/* Coordinator: picks the workers to kill and their points (before the
 * workers start); kills the ones waiting at their point and runs their
 * share again as a new attempt (0, or 1 after a failure). */
void pd_demo_fail_plan(pd_demo *d);
int pd_demo_fail_tick(pd_demo *d);
/* The report's attempts line. */
void pd_demo_fail_report(const pd_demo *d);

/* ------------------------------------------------------------ Verify */

/* Reads every partition back and checks it; then stops the server. */
int pd_demo_read_back(pd_demo *d, pd_demo_phase *ph, uint64_t *nkeys);
/* Whether the read phase drops the served store before stopping the server:
 * a temporary Log that is not kept (the server would compact it at close
 * for nobody). */
bool pd_demo_drops_served(const pd_demo *d);
/* Waits for the server to exit after `close`. */
int pd_demo_wait_server(pd_demo *d, double *secs);

/* ------------------------------------------------------------- Records */

/* Inline here: the workers make and hash every record (demo_proc.c), the
 * read-back hashes them again (demo_verify.c). */

static inline uint64_t pd_demo_mix(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static inline uint64_t pd_demo_load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The key of record number g of the run with this seed. */
static inline uint64_t pd_demo_record_key(uint64_t seed, uint64_t g) {
    return pd_demo_mix(seed ^ pd_demo_mix(g + 0x9e3779b97f4a7c15u));
}

/* The partition of a record whose key is `key`: key % P (a mask when P
 * is a power of two: the same result without a division). */
static inline unsigned pd_demo_part_of(uint64_t key, unsigned P) {
    return (unsigned)((P & (P - 1)) == 0 ? key & (P - 1) : key % P);
}

/* Record number g, whose key is `key`, into rec[0..size). */
static inline void pd_demo_make_record(uint64_t key, uint64_t g,
                                       unsigned char *rec, size_t size) {
    memcpy(rec, &key, 8);
    memcpy(rec + 8, &g, 8);
    uint64_t x = key;
    size_t i = 16;
    /* 16 letters a-p from one 64-bit draw: its nibbles, low then high. */
    for (; i < size; i += 16) {
        x = pd_demo_mix(x + 0x9e3779b97f4a7c15u);
        uint64_t lo = (x & 0x0f0f0f0f0f0f0f0fu) + 0x6161616161616161u;
        uint64_t hi = ((x >> 4) & 0x0f0f0f0f0f0f0f0fu) + 0x6161616161616161u;
        if (size - i >= 16) { /* whole draws: fixed-size copies */
            memcpy(rec + i, &lo, 8);
            memcpy(rec + i + 8, &hi, 8);
        } else {
            unsigned char l[16];
            memcpy(l, &lo, 8);
            memcpy(l + 8, &hi, 8);
            memcpy(rec + i, l, size - i);
        }
    }
}

/* A 64-bit hash of one record, for the order-independent checksum. */
static inline uint64_t pd_demo_hash(const unsigned char *p, size_t n) {
    uint64_t h = 0x243f6a8885a308d3u ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h = (h ^ pd_demo_load64(p + i)) * 0x9fb21c651e98df25u;
        h ^= h >> 29;
    }
    if (i < n) { /* the last n - i bytes as the low bytes of w */
        uint64_t w = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* One load (no copy through memory) when 8 bytes end at p + n. */
        if (n >= 8)
            w = pd_demo_load64(p + n - 8) >> (8 * (8 - (n - i)));
        else
#endif
            memcpy(&w, p + i, n - i);
        h = (h ^ w) * 0x9fb21c651e98df25u;
    }
    return pd_demo_mix(h);
}

/* The records are made and hashed PD_DEMO_LANES at a time, in lockstep:
 * each one's draws and hash steps are a chain of dependent multiplies, and
 * several independent chains keep the core's multipliers busy (the same
 * bytes and hashes as pd_demo_make_record and pd_demo_hash). */
#define PD_DEMO_LANES 4

#define PD_DEMO_H_MUL 0x9fb21c651e98df25u
static inline uint64_t pd_demo_hash_step(uint64_t h, uint64_t w) {
    h = (h ^ w) * PD_DEMO_H_MUL;
    return h ^ (h >> 29);
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The first r (1-15) bytes of w[0], w[1] at p, in fixed-size stores (a
 * memcpy of a variable size is a call per record). */
static inline void pd_demo_store_tail(unsigned char *p, const uint64_t w[2],
                                      size_t r) {
    uint64_t t = w[0];
    if (r >= 8) {
        memcpy(p, &w[0], 8);
        p += 8;
        t = w[1];
    }
    if (r & 4) {
        uint32_t v = (uint32_t)t;
        memcpy(p, &v, 4);
        p += 4;
        t >>= 32;
    }
    if (r & 2) {
        uint16_t v = (uint16_t)t;
        memcpy(p, &v, 2);
        p += 2;
        t >>= 16;
    }
    if (r & 1) *p = (unsigned char)t;
}

/* Records g[l] (key key[l]) into rec + l * size for l < lanes, made and
 * hashed in one pass (their words hashed from registers): h[l] is
 * pd_demo_hash of record l.  lanes is a constant where it is called. */
static inline __attribute__((always_inline)) void
pd_demo_make_lanes(const uint64_t *key, const uint64_t *g, unsigned char *rec,
                   size_t size, uint64_t *h, const unsigned lanes) {
    uint64_t x[PD_DEMO_LANES], hh[PD_DEMO_LANES];
#pragma GCC unroll 4
    for (unsigned l = 0; l < lanes; l++) {
        memcpy(rec + l * size, &key[l], 8);
        memcpy(rec + l * size + 8, &g[l], 8);
        x[l] = key[l];
        hh[l] = pd_demo_hash_step(
            pd_demo_hash_step(0x243f6a8885a308d3u ^ size, key[l]), g[l]);
    }
    size_t i = 16;
    for (; i + 16 <= size; i += 16) {
#pragma GCC unroll 4
        for (unsigned l = 0; l < lanes; l++) {
            x[l] = pd_demo_mix(x[l] + 0x9e3779b97f4a7c15u);
            uint64_t lo = (x[l] & 0x0f0f0f0f0f0f0f0fu) + 0x6161616161616161u;
            uint64_t hi =
                ((x[l] >> 4) & 0x0f0f0f0f0f0f0f0fu) + 0x6161616161616161u;
            memcpy(rec + l * size + i, &lo, 8);
            memcpy(rec + l * size + i + 8, &hi, 8);
            hh[l] = pd_demo_hash_step(pd_demo_hash_step(hh[l], lo), hi);
        }
    }
    if (i < size) { /* 1-15 bytes: a prefix of the next draw */
        size_t r = size - i;
#pragma GCC unroll 4
        for (unsigned l = 0; l < lanes; l++) {
            x[l] = pd_demo_mix(x[l] + 0x9e3779b97f4a7c15u);
            uint64_t w[2] = {(x[l] & 0x0f0f0f0f0f0f0f0fu) + 0x6161616161616161u,
                             ((x[l] >> 4) & 0x0f0f0f0f0f0f0f0fu) +
                                 0x6161616161616161u};
            pd_demo_store_tail(rec + l * size + i, w, r);
            uint64_t t = w[0];
            if (r >= 8) {
                hh[l] = pd_demo_hash_step(hh[l], w[0]);
                t = w[1];
            }
            if (r & 7) /* the last r % 8 bytes, as pd_demo_hash's tail */
                hh[l] = (hh[l] ^ (t & ((UINT64_C(1) << (8 * (r & 7))) - 1))) *
                        PD_DEMO_H_MUL;
        }
    }
#pragma GCC unroll 4
    for (unsigned l = 0; l < lanes; l++) h[l] = pd_demo_mix(hh[l]);
}

/* pd_demo_hash of the lanes records at p + l * size. */
static inline __attribute__((always_inline)) void
pd_demo_hash_lanes(const unsigned char *p, size_t size, uint64_t *h,
                   const unsigned lanes) {
    uint64_t hh[PD_DEMO_LANES];
#pragma GCC unroll 4
    for (unsigned l = 0; l < lanes; l++) hh[l] = 0x243f6a8885a308d3u ^ size;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
#pragma GCC unroll 4
        for (unsigned l = 0; l < lanes; l++)
            hh[l] = pd_demo_hash_step(hh[l], pd_demo_load64(p + l * size + i));
    }
    if (i < size) { /* size >= 16: the last 8 bytes, shifted */
#pragma GCC unroll 4
        for (unsigned l = 0; l < lanes; l++)
            hh[l] = (hh[l] ^ (pd_demo_load64(p + l * size + size - 8) >>
                              (8 * (8 - (size - i))))) *
                    PD_DEMO_H_MUL;
    }
#pragma GCC unroll 4
    for (unsigned l = 0; l < lanes; l++) h[l] = pd_demo_mix(hh[l]);
}
#else
static inline void pd_demo_make_lanes(const uint64_t *key, const uint64_t *g,
                                      unsigned char *rec, size_t size,
                                      uint64_t *h, const unsigned lanes) {
    for (unsigned l = 0; l < lanes; l++) {
        pd_demo_make_record(key[l], g[l], rec + l * size, size);
        h[l] = pd_demo_hash(rec + l * size, size);
    }
}

static inline void pd_demo_hash_lanes(const unsigned char *p, size_t size,
                                      uint64_t *h, const unsigned lanes) {
    for (unsigned l = 0; l < lanes; l++)
        h[l] = pd_demo_hash(p + l * size, size);
}
#endif

static inline void pd_demo_part_name(unsigned p, char name[8]) {
    snprintf(name, 8, "p%05u", p % 100000); /* p < PD_DEMO_MAX_PARTS */
}

/* Whether k is the name of one of the P partitions. */
static inline bool pd_demo_is_part_key(const pd_key *k, unsigned P) {
    const char *c = k->data;
    if (k->nparts != 0 || k->size != 6 || c[0] != 'p') return false;
    unsigned p = 0;
    for (int i = 1; i < 6; i++) {
        if (c[i] < '0' || c[i] > '9') return false;
        p = p * 10 + (unsigned)(c[i] - '0');
    }
    return p < P;
}

#endif
