/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_core, section 0: small values.  The File, Dict and Buffer stores
 * run the append-then-get workload, each beside the floors that produce
 * the same end state with plain syscalls or memcpy, in the same round.
 */
#include "bench_core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct s_small {
    bc_input in;
    unsigned char *expect; /* key k's expected bytes, for the check */
} s_small;

static s_small sm;

void bc_small_init(void) {
    bc_input_make(&sm.in);
    sm.expect = bc_xmalloc(sm.in.per_key);
}

void bc_small_free(void) {
    bc_input_free(&sm.in);
    free(sm.expect);
}

/* The bytes key k must hold after the append workload. */
static const unsigned char *s_expected(size_t k) {
    size_t off = 0;
    for (size_t i = k; i < cfg.nvals; i += cfg.nkeys) {
        memcpy(sm.expect + off, sm.in.pool + i * cfg.vsize, cfg.vsize);
        off += cfg.vsize;
    }
    return sm.expect;
}

/* Checks every key of `s` against the workload (outside any timing).  0, or
 * -1 with a reason written to row r. */
static int s_verify(pd_store *s, int r) {
    for (size_t k = 0; k < cfg.nkeys; k++) {
        pd_result *res = NULL;
        int rc = pd_get(s, 1, &sm.in.keys1[k], &res, 0);
        if (rc) {
            bc_fail(r, "verify get %s: %s", sm.in.names[k], pd_errmsg(s));
            return -1;
        }
        pd_bytes b = pd_result_value(res, 0);
        bool good = b.size == sm.in.per_key &&
                    memcmp(b.data, s_expected(k), b.size) == 0;
        pd_result_free(&res);
        if (!good) {
            bc_fail(r,
                    "verify: key %s reads back %zu bytes, not the %zu "
                    "appended (or different bytes)",
                    sm.in.names[k], b.size, sm.in.per_key);
            return -1;
        }
    }
    return 0;
}

/* Opens directory `dir` for the *at() calls of the floors: names are
 * resolved relative to it, as the File store resolves them relative to its
 * root, so the floors pay no more path walking than the store does. */
/* The directory's descriptor, or -1 with the failure recorded on `row`. */
static int s_opendir(const char *dir, int row) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) bc_fail(row, "open(%s): %s", dir, strerror(errno));
    return dfd;
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
    int dfd = s_opendir(dir, R_FLOOR_WRITE);
    if (dfd < 0) return;
    int *fds = bc_xmalloc(cfg.nkeys * sizeof *fds);
    size_t opened = 0;
    double t0 = bench_now();
    for (; opened < cfg.nkeys; opened++) {
        fds[opened] = openat(dfd, sm.in.names[opened],
                             O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fds[opened] < 0) {
            bc_fail(R_FLOOR_WRITE, "open(%s/%s): %s", dir, sm.in.names[opened],
                    strerror(errno));
            goto done;
        }
    }
    double t1 = bench_now();
    for (size_t i = 0; i < cfg.nvals; i++) {
        ssize_t w = write(fds[i % cfg.nkeys], sm.in.vals[i].data, cfg.vsize);
        if (w != (ssize_t)cfg.vsize) {
            bc_fail(R_FLOOR_WRITE, "write(%s): %s", sm.in.names[i % cfg.nkeys],
                    w < 0 ? strerror(errno) : "short write");
            goto done;
        }
    }
    double t2 = bench_now();
    if (record) {
        bc_add(R_FLOOR_WRITE, (double)cfg.nvals / (t2 - t1));
        bc_add(R_FLOOR_CREATE_WRITE, (double)cfg.nvals / (t2 - t0));
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
    if (bc_mkdtemp(dir, sizeof dir)) {
        bc_fail(R_FLOOR_OWC, "mkdtemp in %s: %s", cfg.dir, strerror(errno));
        return;
    }
    int dfd = s_opendir(dir, R_FLOOR_OWC);
    if (dfd < 0) {
        bc_rmtree(dir);
        return;
    }
    double t0 = bench_now();
    for (size_t i = 0; i < cfg.nvals; i++) {
        const char *name = sm.in.names[i % cfg.nkeys];
        int fd =
            openat(dfd, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0 ||
            write(fd, sm.in.vals[i].data, cfg.vsize) != (ssize_t)cfg.vsize) {
            bc_fail(R_FLOOR_OWC, "open/write(%s/%s): %s", dir, name,
                    strerror(errno));
            if (fd >= 0) close(fd);
            break;
        }
        close(fd);
    }
    double t = bench_now() - t0;
    if (record && bc_ok(R_FLOOR_OWC))
        bc_add(R_FLOOR_OWC, (double)cfg.nvals / t);
    close(dfd);
    bc_trash_add(dir);
}

/*
 * Floor for File gets: for each key, open + fstat (to size the buffer, as a
 * get must) + read + close of its file, written by s_floor_write with the
 * same bytes as the store's.  The buffer is reused: allocation is not part
 * of the floor.
 */
static void s_floor_read(const char *dir, bool record) {
    int dfd = s_opendir(dir, R_FLOOR_READ);
    if (dfd < 0) return;
    unsigned char *buf = bc_xmalloc(sm.in.per_key + 1);
    memset(buf, 0, sm.in.per_key + 1);
    uint64_t total = 0;
    double t0 = bench_now();
    for (size_t k = 0; k < cfg.nkeys; k++) {
        int fd = openat(dfd, sm.in.names[k], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 ||
            (size_t)st.st_size > sm.in.per_key) {
            bc_fail(R_FLOOR_READ, "open/fstat(%s/%s): %s", dir, sm.in.names[k],
                    fd < 0 ? strerror(errno) : "unexpected size");
            if (fd >= 0) close(fd);
            break;
        }
        ssize_t got = read(fd, buf, (size_t)st.st_size);
        close(fd);
        if (got != st.st_size) {
            bc_fail(R_FLOOR_READ, "read(%s/%s): short read", dir,
                    sm.in.names[k]);
            break;
        }
        total += (uint64_t)got;
    }
    double t = bench_now() - t0;
    if (record && bc_ok(R_FLOOR_READ)) {
        if (total != (uint64_t)sm.in.per_key * cfg.nkeys)
            bc_fail(R_FLOOR_READ, "read %llu bytes, expected %llu",
                    (unsigned long long)total,
                    (unsigned long long)sm.in.per_key * cfg.nkeys);
        else
            bc_add(R_FLOOR_READ, (double)cfg.nkeys / t);
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
    unsigned char *mem = bc_xmalloc(cfg.nkeys * sm.in.per_key);
    memset(mem, 1, cfg.nkeys * sm.in.per_key);
    size_t *fill = calloc(cfg.nkeys, sizeof *fill);
    unsigned char *dst = bc_xmalloc(sm.in.per_key);
    memset(dst, 1, sm.in.per_key);
    if (!fill) exit(2);

    double t0 = bench_now();
    for (size_t i = 0; i < cfg.nvals; i++) {
        size_t k = i % cfg.nkeys;
        memcpy(mem + k * sm.in.per_key + fill[k], sm.in.vals[i].data,
               cfg.vsize);
        fill[k] += cfg.vsize;
    }
    double t1 = bench_now();
    unsigned sum = 0;
    for (size_t k = 0; k < cfg.nkeys; k++) {
        memcpy(dst, mem + k * sm.in.per_key, fill[k]);
        sum += dst[k % fill[k]]; /* keeps the copy observable */
    }
    double t2 = bench_now();
    if (record) {
        bc_add(R_FLOOR_MEMCPY_APPEND, (double)cfg.nvals / (t1 - t0));
        bc_add(R_FLOOR_MEMCPY_GET, (double)cfg.nkeys / (t2 - t1));
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
        int rc = pd_append(s, n, &sm.in.keys[i], &sm.in.vals[i], 0);
        if (rc) {
            bc_fail(r, "pd_append: %s", pd_errmsg(s));
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
        int rc = pd_get(s, 1, &sm.in.keys1[k], &res, 0);
        if (rc) {
            bc_fail(r, "pd_get: %s", pd_errmsg(s));
            return -1;
        }
        total += pd_result_total(res);
        pd_result_free(&res);
    }
    double t = bench_now() - t0;
    if (total != (uint64_t)sm.in.per_key * cfg.nkeys) {
        bc_fail(r, "gets returned %llu bytes, expected %llu",
                (unsigned long long)total,
                (unsigned long long)sm.in.per_key * cfg.nkeys);
        return -1;
    }
    return (double)cfg.nkeys / t;
}

/* Appends then gets on store s (closed here), recording into rows ra/rg
 * (either may be -1).  `check`: verify every key's bytes afterwards. */
static void s_store_round(pd_store *s, int ra, int rg, bool record,
                          bool check) {
    double a = s_run_appends(s, ra);
    if (a >= 0 && record) bc_add(ra, a);
    if (a < 0 && rg >= 0) bc_fail(rg, "not run: %s failed", rows[ra].id);
    if (a >= 0 && rg >= 0 && bc_ok(rg)) {
        double g = s_run_gets(s, rg);
        if (g >= 0 && record) bc_add(rg, g);
        if (g >= 0 && check) s_verify(s, rg);
    }
    if (pd_close(&s)) bc_fail(ra, "pd_close: %s", pd_errmsg(NULL));
}

static pd_store *s_open_buffer(int r, uint64_t limit) {
    pd_store *d = NULL, *f = NULL, *b = NULL;
    if (pd_dict_open(&d)) {
        bc_fail(r, "pd_dict_open: %s", pd_errmsg(NULL));
        return NULL;
    }
    f = bc_open_file(r, true);
    if (!f) {
        pd_close(&d);
        return NULL;
    }
    if (pd_buffer_open(&b, &d, &f, limit, 0)) {
        bc_fail(r, "pd_buffer_open: %s", pd_errmsg(NULL));
        pd_close(&d);
        pd_close(&f);
        return NULL;
    }
    return b;
}

/* Fanout over one inner store (a File in a new directory, or a Dict): the
 * workload of the store alone, on rows ra and rg. */
static void s_fanout_round(bool file, int ra, int rg, bool record, bool check) {
    if (!bc_ok(ra)) return;
    pd_store *in = NULL, *fo = NULL;
    if (file) {
        in = bc_open_file(ra, true);
        if (!in) return;
    } else if (pd_dict_open(&in)) {
        bc_fail(ra, "pd_dict_open: %s", pd_errmsg(NULL));
        return;
    }
    if (pd_fanout_open(&fo, &in, 1, 0)) {
        bc_fail(ra, "pd_fanout_open: %s", pd_errmsg(NULL));
        pd_close(&in);
        return;
    }
    s_store_round(fo, ra, rg, record, check);
}

/* One round of the small-value workload: every floor and every store.
 * `check`: read every key back and compare its bytes (first round). */
void bc_small_round(bool record, bool check) {
    char fdir[PATH_MAX];
    /* The Fanout rows run right before or right after their store, in
     * turn, so neither always sees the other's page-cache state. */
    static unsigned nround;
    bool fanout_first = nround++ & 1;

    /* Write floor, then (same files, warm cache) the read floor. */
    if (bc_ok(R_FLOOR_WRITE)) {
        if (bc_mkdtemp(fdir, sizeof fdir)) {
            bc_fail(R_FLOOR_WRITE, "mkdtemp in %s: %s", cfg.dir,
                    strerror(errno));
        } else {
            s_floor_write(fdir, record);
            if (!bc_ok(R_FLOOR_WRITE))
                bc_fail(R_FLOOR_READ, "not run: %s failed",
                        rows[R_FLOOR_WRITE].id);
            else if (bc_ok(R_FLOOR_READ))
                s_floor_read(fdir, record);
            bc_trash_add(fdir);
        }
    }
    if (fanout_first)
        s_fanout_round(true, R_FANOUT_FILE_APPEND, R_FANOUT_FILE_GET, record,
                       check);
    /* The File store right after, on the same file system. */
    if (bc_ok(R_FILE_APPEND)) {
        pd_store *f = bc_open_file(R_FILE_APPEND, true);
        if (f) {
            double a = s_run_appends(f, R_FILE_APPEND);
            if (a >= 0 && record) bc_add(R_FILE_APPEND, a);
            if (a >= 0 && bc_ok(R_FILE_GET)) {
                double g = s_run_gets(f, R_FILE_GET);
                if (g >= 0 && record) bc_add(R_FILE_GET, g);
                if (g >= 0 && check) s_verify(f, R_FILE_GET);
            }
            /* after the gets, so they read the workload's 20 KB per key */
            if (a >= 0 && bc_ok(R_FILE_APPEND_WARM)) {
                double w = s_run_appends(f, R_FILE_APPEND_WARM);
                if (w >= 0 && record) bc_add(R_FILE_APPEND_WARM, w);
            }
            if (pd_close(&f))
                bc_fail(R_FILE_APPEND, "pd_close: %s", pd_errmsg(NULL));
        }
    }
    if (!fanout_first)
        s_fanout_round(true, R_FANOUT_FILE_APPEND, R_FANOUT_FILE_GET, record,
                       check);
    if (bc_ok(R_FLOOR_OWC)) s_floor_owc(record);

    s_floor_memcpy(record);
    if (fanout_first)
        s_fanout_round(false, R_FANOUT_DICT_APPEND, R_FANOUT_DICT_GET, record,
                       check);
    if (bc_ok(R_DICT_APPEND)) {
        pd_store *d = NULL;
        if (pd_dict_open(&d))
            bc_fail(R_DICT_APPEND, "pd_dict_open: %s", pd_errmsg(NULL));
        else
            s_store_round(d, R_DICT_APPEND, R_DICT_GET, record, check);
    }
    if (!fanout_first)
        s_fanout_round(false, R_FANOUT_DICT_APPEND, R_FANOUT_DICT_GET, record,
                       check);
    if (bc_ok(R_BUFFER_APPEND)) {
        pd_store *b = s_open_buffer(R_BUFFER_APPEND, cfg.buf_limit);
        if (b) {
            s_append_faults = -1;
            s_store_round(b, R_BUFFER_APPEND, R_BUFFER_GET, record, check);
            if (record && s_append_faults >= 0)
                bc_add(R_BUFFER_APPEND_FAULTS,
                       (double)s_append_faults * 1000.0 / (double)cfg.nvals);
        }
    }
    if (bc_ok(R_BUFFER_SPILL_APPEND)) {
        pd_store *b = s_open_buffer(R_BUFFER_SPILL_APPEND, cfg.spill_limit);
        if (b)
            s_store_round(b, R_BUFFER_SPILL_APPEND, R_BUFFER_SPILL_GET, record,
                          check);
    }
}
