/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_core, section 3: the Log store against File and against the page
 * cache's sequential floors.
 *
 * Small values: the small-value workload of section 0 (same sizes, same
 * call shape) appended to a new Log and to a new File, beside a floor that
 * writes each call's values with one writev() to one open file (the least
 * a store that keeps a call's bytes together can pay); then one get per key
 * from each, reopened (the Log compacted by its close).  The same appends
 * through one attempt (begun and committed in the timing) to another new
 * Log, beside the plain ones.
 *
 * Partitions: P partitions filled as a shuffle's map side fills them (calls
 * of 16 keys x 4 KiB), the Log closed (compacted) and reopened, then every
 * partition read back with one pd_get each, beside a floor reading the same
 * bytes from one cached file with one read() per partition; the same for a
 * File.  Then the same appends from T threads (one handle each, one
 * directory, one process) against one thread, each beside a floor: the
 * same calls written with writev() by as many threads, a new file each, the
 * scaling the kernel gives this pattern (the ceiling of the Log's); and the
 * one-thread appends through an attempt, beside the plain ones.
 */
#include "bench_core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define S_PVAL 4096u  /* partition workload: bytes per value */
#define S_PCALL 16u   /* values per call */
#define S_PARTS 1024u /* partitions */

typedef struct s_log {
    bc_input in; /* small workload */
    /* Partition workload. */
    unsigned char *ppool;
    char (*pnames)[16];
    pd_key *pkeys;   /* one per value */
    pd_bytes *pvals; /* one per value */
    size_t pvals_n, ppart_bytes;
} s_log;

static s_log lg;

static size_t s_pbytes(void) { return cfg.quick ? 32u << 20 : 256u << 20; }

void bc_log_init(void) {
    bc_input_make(&lg.in);

    /* Partition p gets values v with v % S_PARTS == p; values are slices of
     * a 16 MiB pool, so the input costs no page faults. */
    lg.pvals_n = s_pbytes() / S_PVAL;
    lg.ppart_bytes = lg.pvals_n / S_PARTS * S_PVAL;
    size_t pool = 16u << 20;
    lg.ppool = bc_xmalloc(pool);
    bc_fill(lg.ppool, pool, 7);
    lg.pnames = bc_xmalloc(S_PARTS * sizeof *lg.pnames);
    lg.pkeys = bc_xmalloc(lg.pvals_n * sizeof *lg.pkeys);
    lg.pvals = bc_xmalloc(lg.pvals_n * sizeof *lg.pvals);
    for (unsigned p = 0; p < S_PARTS; p++)
        snprintf(lg.pnames[p], sizeof lg.pnames[p], "p%05u", p);
    for (size_t v = 0; v < lg.pvals_n; v++) {
        /* Calls of S_PCALL distinct partitions, scattered. */
        unsigned p = (unsigned)((v * 37u) % S_PARTS);
        lg.pkeys[v] = PD_KEY(lg.pnames[p], 6);
        lg.pvals[v] = PD_BYTES(lg.ppool + (v * S_PVAL) % pool, S_PVAL);
    }
}

void bc_log_free(void) {
    bc_input_free(&lg.in);
    free(lg.ppool);
    free(lg.pnames);
    free(lg.pkeys);
    free(lg.pvals);
}

/* The Log in dir, or (dir NULL) in a new directory under cfg.dir, removed
 * with the trash.  Not pd_log_open_temp: a temporary Log is never
 * compacted by its close, and the gets below read a compacted one. */
static pd_store *s_open_log(int r, const char *dir) {
    pd_store *s = NULL;
    char tmp[PATH_MAX];
    if (!dir) {
        if (bc_mkdtemp(tmp, sizeof tmp)) {
            bc_fail(r, "mkdtemp in %s: %s", cfg.dir, strerror(errno));
            return NULL;
        }
        bc_trash_add(tmp);
        dir = tmp;
    }
    if (pd_log_open(&s, dir, 0)) {
        bc_fail(r, "pd_log_open(%s): %s", dir, pd_errmsg(NULL));
        return NULL;
    }
    return s;
}

/* Appends the whole small workload to s; seconds, or -1 after bc_fail. */
static double s_small_append(pd_store *s, int r) {
    double t0 = bench_now();
    for (size_t i = 0; i < cfg.nvals; i += cfg.per_call)
        if (pd_append(s, cfg.per_call, &lg.in.keys[i], &lg.in.vals[i], 0)) {
            bc_fail(r, "append: %s", pd_errmsg(s));
            return -1;
        }
    return bench_now() - t0;
}

/* The same calls through one attempt of a writer, begun and committed
 * within the timing; seconds, or -1 after bc_fail. */
static double s_small_attempt(pd_store *s, int r) {
    pd_key w = PD_KEY_STR("bench");
    pd_attempt *a = NULL;
    double t0 = bench_now();
    if (pd_attempt_begin(s, &w, 0, &a, 0)) {
        bc_fail(r, "attempt begin: %s", pd_errmsg(s));
        return -1;
    }
    for (size_t i = 0; i < cfg.nvals; i += cfg.per_call)
        if (pd_attempt_append(a, cfg.per_call, &lg.in.keys[i], &lg.in.vals[i],
                              0)) {
            bc_fail(r, "attempt append: %s", pd_errmsg(s));
            pd_attempt_abort(&a);
            return -1;
        }
    if (pd_attempt_commit(&a, 0)) {
        bc_fail(r, "attempt commit: %s", pd_errmsg(s));
        return -1;
    }
    return bench_now() - t0;
}

/* One get per key; seconds, or -1.  `check`: compare every key's bytes. */
static double s_small_get(pd_store *s, int r, bool check) {
    double t0 = bench_now();
    for (size_t k = 0; k < cfg.nkeys; k++) {
        pd_result *res = NULL;
        if (pd_get(s, 1, &lg.in.keys1[k], &res, 0)) {
            bc_fail(r, "get %s: %s", lg.in.names[k], pd_errmsg(s));
            return -1;
        }
        pd_bytes b = pd_result_value(res, 0);
        bool bad = b.size != lg.in.per_key ||
                   (check &&
                    memcmp(b.data, lg.in.pool + k * cfg.vsize, cfg.vsize) != 0);
        pd_result_free(&res);
        if (bad) {
            bc_fail(r, "get %s: %zu bytes, not the %zu appended",
                    lg.in.names[k], b.size, lg.in.per_key);
            return -1;
        }
    }
    return bench_now() - t0;
}

/* Floor: one writev() per call of its values, to one open file. */
static void s_floor_writev(bool record) {
    char dir[PATH_MAX], path[PATH_MAX];
    if (bc_mkdtemp(dir, sizeof dir) || bc_join(path, sizeof path, dir, "f")) {
        bc_fail(R_FLOOR_LOG_WRITEV, "mkdtemp in %s: %s", cfg.dir,
                strerror(errno));
        return;
    }
    bc_trash_add(dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct iovec *iov = bc_xmalloc(cfg.per_call * sizeof *iov);
    double t0 = bench_now();
    for (size_t i = 0; fd >= 0 && i < cfg.nvals; i += cfg.per_call) {
        for (size_t j = 0; j < cfg.per_call; j++)
            iov[j] = (struct iovec){(void *)lg.in.vals[i + j].data, cfg.vsize};
        if (writev(fd, iov, (int)cfg.per_call) !=
            (ssize_t)(cfg.per_call * cfg.vsize)) {
            bc_fail(R_FLOOR_LOG_WRITEV, "writev(%s): %s", path,
                    strerror(errno));
            break;
        }
    }
    double t = bench_now() - t0;
    if (fd < 0)
        bc_fail(R_FLOOR_LOG_WRITEV, "open(%s): %s", path, strerror(errno));
    if (record && bc_ok(R_FLOOR_LOG_WRITEV))
        bc_add(R_FLOOR_LOG_WRITEV, (double)cfg.nvals / t);
    if (fd >= 0) close(fd);
    free(iov);
}

static void s_small(bool record, bool check) {
    s_floor_writev(record);
    pd_store *s = s_open_log(R_LOG_APPEND, NULL);
    if (!s) return;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", pd_log_path(s));
    double t = s_small_append(s, R_LOG_APPEND);
    if (t > 0 && record) bc_add(R_LOG_APPEND, (double)cfg.nvals / t);
    pd_close(&s); /* compacts: the last handle wrote */
    s = s_open_log(R_LOG_GET, dir);
    if (s) {
        t = s_small_get(s, R_LOG_GET, check);
        if (t > 0 && record) bc_add(R_LOG_GET, (double)cfg.nkeys / t);
        pd_close(&s);
    }
    if (bc_ok(R_LOG_ATT_APPEND) && (s = s_open_log(R_LOG_ATT_APPEND, NULL))) {
        t = s_small_attempt(s, R_LOG_ATT_APPEND);
        if (t > 0 && record) bc_add(R_LOG_ATT_APPEND, (double)cfg.nvals / t);
        pd_drop(s, 0);
        pd_close(&s);
    }
    s = bc_open_file(R_LOG_FILE_APPEND, true);
    if (!s) return;
    t = s_small_append(s, R_LOG_FILE_APPEND);
    if (t > 0 && record) bc_add(R_LOG_FILE_APPEND, (double)cfg.nvals / t);
    t = s_small_get(s, R_LOG_FILE_GET, check);
    if (t > 0 && record) bc_add(R_LOG_FILE_GET, (double)cfg.nkeys / t);
    pd_close(&s);
}

/* ------------------------------------------------------------ Partitions */

/* Appends values [lo, hi) of the partition workload, S_PCALL per call. */
static int s_part_append(pd_store *s, size_t lo, size_t hi) {
    for (size_t v = lo; v < hi; v += S_PCALL) {
        size_t n = hi - v < S_PCALL ? hi - v : S_PCALL;
        if (pd_append(s, n, &lg.pkeys[v], &lg.pvals[v], 0)) return -1;
    }
    return 0;
}

/* Reads every partition back, `per` partitions per get (neighbours, as a
 * shuffle's reader asks for its range; more than one: with pd_get_into and
 * one reused buffer, as such a reader would, so that a new result's page
 * faults are not what is timed); bytes/s, or -1 after bc_fail. */
static double s_part_read(pd_store *s, int r, unsigned per) {
    uint64_t total = 0;
    pd_key k[S_PARTS];
    for (unsigned p = 0; p < S_PARTS; p++) k[p] = PD_KEY(lg.pnames[p], 6);
    size_t cap = per > 1 ? (size_t)per * lg.ppart_bytes : 0;
    void *buf = cap ? bc_xmalloc(cap) : NULL;
    if (buf) memset(buf, 0, cap);
    double t0 = bench_now();
    for (unsigned p = 0; p < S_PARTS; p += per) {
        unsigned n = S_PARTS - p < per ? S_PARTS - p : per;
        pd_result *res = NULL;
        if (buf ? pd_get_into(s, n, &k[p], buf, cap, &res, 0)
                : pd_get(s, n, &k[p], &res, 0)) {
            bc_fail(r, "get %s (%u keys): %s", lg.pnames[p], n, pd_errmsg(s));
            free(buf);
            return -1;
        }
        total += pd_result_total(res);
        pd_result_free(&res);
    }
    free(buf);
    double t = bench_now() - t0;
    if (total != (uint64_t)lg.ppart_bytes * S_PARTS) {
        bc_fail(r, "read back %llu bytes, not %llu", (unsigned long long)total,
                (unsigned long long)lg.ppart_bytes * S_PARTS);
        return -1;
    }
    return (double)total / t;
}

/* Floor: the same bytes in one file (written, so cached), then one pread()
 * per partition's worth into a reused buffer. */
static void s_floor_seqread(bool record) {
    char dir[PATH_MAX], path[PATH_MAX];
    if (bc_mkdtemp(dir, sizeof dir) || bc_join(path, sizeof path, dir, "f")) {
        bc_fail(R_FLOOR_SEQREAD, "mkdtemp in %s: %s", cfg.dir, strerror(errno));
        return;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    for (size_t v = 0; fd >= 0 && v < lg.pvals_n; v++)
        if (write(fd, lg.pvals[v].data, S_PVAL) != (ssize_t)S_PVAL) {
            bc_fail(R_FLOOR_SEQREAD, "write(%s): %s", path, strerror(errno));
            break;
        }
    unsigned char *buf = bc_xmalloc(lg.ppart_bytes);
    memset(buf, 0, lg.ppart_bytes);
    /* The best of three passes: the floor is what the cache can give. */
    uint64_t total = 0;
    double t = 1e30;
    for (int pass = 0; pass < 3 && bc_ok(R_FLOOR_SEQREAD); pass++) {
        total = 0;
        double t0 = bench_now();
        for (unsigned p = 0; fd >= 0 && p < S_PARTS; p++) {
            ssize_t n =
                pread(fd, buf, lg.ppart_bytes, (off_t)p * lg.ppart_bytes);
            if (n != (ssize_t)lg.ppart_bytes) {
                bc_fail(R_FLOOR_SEQREAD, "pread(%s): %s", path,
                        strerror(errno));
                break;
            }
            total += (uint64_t)n;
        }
        double el = bench_now() - t0;
        if (el < t) t = el;
    }
    if (fd < 0) bc_fail(R_FLOOR_SEQREAD, "open(%s): %s", path, strerror(errno));
    if (record && bc_ok(R_FLOOR_SEQREAD))
        bc_add(R_FLOOR_SEQREAD, (double)total / t / 1e9);
    if (fd >= 0) close(fd);
    free(buf);
    bc_rmtree(dir);
}

/* One thread of the thread rows: values [lo, hi) of the partition workload
 * in calls of S_PCALL, to a Log handle of its own on dir, or (raw, the
 * floor) with one writev() per call to a new file of its own in dir: the
 * same bytes from the same memory, as the Log's record gathers them. */
typedef struct s_thr {
    const char *dir;
    unsigned idx;
    bool raw, att; /* att: the Log's calls through one attempt */
    size_t lo, hi;
    int rc, fd;
    pd_store *s;
    char err[PATH_MAX + 128];
} s_thr;

static void s_thr_raw(s_thr *t) {
    char path[PATH_MAX], name[16];
    snprintf(name, sizeof name, "t%u", t->idx);
    if (bc_join(path, sizeof path, t->dir, name) ||
        (t->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) <
            0) {
        t->rc = -1;
        snprintf(t->err, sizeof t->err, "open(%s/%s): %s", t->dir, name,
                 strerror(errno));
        return;
    }
    struct iovec iov[S_PCALL];
    for (size_t v = t->lo; v < t->hi; v += S_PCALL) {
        size_t n = t->hi - v < S_PCALL ? t->hi - v : S_PCALL;
        for (size_t j = 0; j < n; j++)
            iov[j] = (struct iovec){(void *)lg.pvals[v + j].data, S_PVAL};
        ssize_t w = writev(t->fd, iov, (int)n);
        if (w != (ssize_t)(n * S_PVAL)) {
            t->rc = -1;
            snprintf(t->err, sizeof t->err, "writev(%s): %s", path,
                     w < 0 ? strerror(errno) : "short write");
            return;
        }
    }
}

static void *s_thr_main(void *arg) {
    s_thr *t = arg;
    if (t->raw) {
        s_thr_raw(t);
        return NULL;
    }
    t->rc = pd_log_open(&t->s, t->dir, 0);
    if (t->rc == 0 && t->att) {
        pd_key w = PD_KEY_STR("bench");
        pd_attempt *a = NULL;
        t->rc = pd_attempt_begin(t->s, &w, t->idx, &a, 0);
        for (size_t v = t->lo; t->rc == 0 && v < t->hi; v += S_PCALL)
            t->rc =
                pd_attempt_append(a, t->hi - v < S_PCALL ? t->hi - v : S_PCALL,
                                  &lg.pkeys[v], &lg.pvals[v], 0);
        if (t->rc == 0) t->rc = pd_attempt_commit(&a, 0);
        pd_attempt_abort(&a);
    } else if (t->rc == 0 && s_part_append(t->s, t->lo, t->hi)) {
        t->rc = -1;
    }
    if (t->rc) snprintf(t->err, sizeof t->err, "%s", pd_errmsg(t->s));
    return NULL;
}

/* The partition workload split into whole calls over nt threads writing
 * into dir; records/s, or -1 after bc_fail(r).  The closes are outside the
 * timing, as in the other rows. */
static double s_run_threads(int r, unsigned nt, bool raw, bool att,
                            const char *dir) {
    s_thr t[8];
    pthread_t id[8];
    size_t calls = (lg.pvals_n + S_PCALL - 1) / S_PCALL;
    double t0 = bench_now();
    for (unsigned i = 0; i < nt; i++) {
        t[i] = (s_thr){dir,
                       i,
                       raw,
                       att,
                       calls * i / nt * S_PCALL,
                       calls * (i + 1) / nt * S_PCALL,
                       0,
                       -1,
                       NULL,
                       ""};
        if (t[i].hi > lg.pvals_n) t[i].hi = lg.pvals_n;
        pthread_create(&id[i], NULL, s_thr_main, &t[i]);
    }
    for (unsigned i = 0; i < nt; i++) pthread_join(id[i], NULL);
    double el = bench_now() - t0;
    bool ok = true;
    for (unsigned i = 0; i < nt; i++) {
        if (t[i].rc) {
            bc_fail(r, "thread %u: %s", i, t[i].err);
            ok = false;
        }
        if (t[i].fd >= 0) close(t[i].fd);
        pd_close(&t[i].s);
    }
    return ok ? (double)lg.pvals_n / el : -1;
}

/* The Log rows: nt threads, one Log handle each, one directory.  A handle
 * kept open meanwhile stops the writers' closes from compacting. */
static double s_threads(int r, unsigned nt, bool record) {
    if (!bc_ok(r)) return -1;
    pd_store *hold = s_open_log(r, NULL);
    if (!hold) return -1;
    double rate = s_run_threads(r, nt, false, r == R_LOG_ATT_APPEND_1T,
                                pd_log_path(hold));
    pd_drop(hold, 0);
    pd_close(&hold);
    if (record && rate > 0) bc_add(r, rate);
    return rate;
}

/* Their floor: the same calls from nt threads, each writev()ing them to a
 * new file of its own in one new directory, removed after. */
static double s_floor_threads(int r, unsigned nt, bool record) {
    if (!bc_ok(r)) return -1;
    char dir[PATH_MAX];
    if (bc_mkdtemp(dir, sizeof dir)) {
        bc_fail(r, "mkdtemp in %s: %s", cfg.dir, strerror(errno));
        return -1;
    }
    double rate = s_run_threads(r, nt, true, false, dir);
    bc_rmtree(dir);
    if (record && rate > 0) bc_add(r, rate);
    return rate;
}

static void s_parts(bool record, bool check) {
    (void)check;
    s_floor_seqread(record);
    pd_store *s = s_open_log(R_LOG_READBACK, NULL);
    if (!s) return;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", pd_log_path(s));
    if (s_part_append(s, 0, lg.pvals_n)) {
        bc_fail(R_LOG_READBACK, "append: %s", pd_errmsg(s));
        pd_close(&s);
        return;
    }
    /* As the writer left it (its handle still open), then compacted. */
    double bps0 = s_part_read(s, R_LOG_READBACK_RAW, 1);
    if (bps0 > 0 && record) bc_add(R_LOG_READBACK_RAW, bps0 / 1e9);
    bps0 = s_part_read(s, R_LOG_READBACK_RAW_BATCH, 64);
    if (bps0 > 0 && record) bc_add(R_LOG_READBACK_RAW_BATCH, bps0 / 1e9);
    pd_close(&s); /* compacts: every partition one range */
    s = s_open_log(R_LOG_READBACK, dir);
    if (!s) return;
    double bps = s_part_read(s, R_LOG_READBACK, 1);
    if (bps > 0 && record) bc_add(R_LOG_READBACK, bps / 1e9);
    pd_drop(s, 0);
    pd_close(&s);

    s = bc_open_file(R_FILE_READBACK, true);
    if (!s) return;
    if (s_part_append(s, 0, lg.pvals_n)) {
        bc_fail(R_FILE_READBACK, "append: %s", pd_errmsg(s));
    } else {
        bps = s_part_read(s, R_FILE_READBACK, 1);
        if (bps > 0 && record) bc_add(R_FILE_READBACK, bps / 1e9);
    }
    pd_drop(s, 0);
    pd_close(&s);

    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned nt = nproc < 2 ? 2 : nproc > 8 ? 8 : (unsigned)nproc;
    /* Each Log row right after its floor; the last row is this round's
     * Log T/1 over the floor's T/1. */
    double f1 = s_floor_threads(R_FLOOR_THR_1T, 1, record);
    double l1 = s_threads(R_LOG_APPEND_1T, 1, record);
    s_threads(R_LOG_ATT_APPEND_1T, 1, record);
    double fn = s_floor_threads(R_FLOOR_THR_NT, nt, record);
    double ln = s_threads(R_LOG_APPEND_NT, nt, record);
    if (f1 > 0 && l1 > 0 && fn > 0 && ln > 0) {
        if (record) bc_add(R_LOG_THR_SCALING, (ln / l1) / (fn / f1));
    } else {
        bc_fail(R_LOG_THR_SCALING, "a thread row above failed");
    }
    snprintf(rows[R_LOG_APPEND_NT].note, sizeof rows[R_LOG_APPEND_NT].note,
             "%u threads", nt);
    snprintf(rows[R_FLOOR_THR_NT].note, sizeof rows[R_FLOOR_THR_NT].note,
             "%u threads", nt);
}

void bc_log_round(bool record, bool check) {
    s_small(record, check);
    s_parts(record, check);
}

double bc_log_part_bytes(void) { return (double)s_pbytes(); }
