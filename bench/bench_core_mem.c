/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_core, section 2: the peak memory of a Buffer(Dict, File, L) fed
 * much more than L, measured in a forked child so that every run starts
 * from a fresh heap.
 */
#include "bench_core.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
    unsigned char *pool = bc_xmalloc(pool_size);
    bc_fill(pool, pool_size, 7);
    pd_key keys[256];
    pd_bytes vals[256];
    size_t per_call = cfg.mem_per_call < 256 ? cfg.mem_per_call : 256;
    char(*names)[16] = bc_xmalloc(1000 * sizeof *names);
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
            size_t oct = (size_t)(bc_rand(&st) % 10); /* 100 * 2^oct */
            size_t lo = cfg.mem_min << oct, hi = lo * 2;
            if (hi > cfg.mem_max) hi = cfg.mem_max;
            if (lo > hi) lo = hi;
            size_t len = lo + (size_t)(bc_rand(&st) % (hi - lo + 1));
            size_t off = (size_t)(bc_rand(&st) % (pool_size - len));
            const char *nm = names[bc_rand(&st) % 1000];
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
void bc_mem_round(bool record) {
    if (!bc_ok(R_BUFFER_PEAK_RSS)) return;
    int p[2];
    if (pipe(p)) {
        bc_fail(R_BUFFER_PEAK_RSS, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        bc_fail(R_BUFFER_PEAK_RSS, "fork: %s", strerror(errno));
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
        bc_fail(R_BUFFER_PEAK_RSS, "child died (status 0x%x)", status);
        return;
    }
    if (res.err[0]) {
        bc_fail(R_BUFFER_PEAK_RSS, "%s", res.err);
        return;
    }
    if (res.rss_before_kb < 0 || res.hwm_close_kb < 0) {
        bc_fail(R_BUFFER_PEAK_RSS, "/proc/self/status unreadable");
        return;
    }
    double grow = (res.hwm_close_kb - res.rss_before_kb) / 1024.0;
    if (!record) return;
    bc_add(R_BUFFER_PEAK_RSS, grow);
    /* Keep the details of the worst run for the report. */
    bc_stat s = bc_stats(R_BUFFER_PEAK_RSS);
    if (grow >= s.max)
        snprintf(rows[R_BUFFER_PEAK_RSS].note,
                 sizeof rows[R_BUFFER_PEAK_RSS].note,
                 "worst run: peak during appends %.1f MiB, incl. close %.1f "
                 "MiB; counted usage max %.1f MiB; %.0f MiB in %.2f s",
                 (res.hwm_append_kb - res.rss_before_kb) / 1024.0, grow,
                 res.max_usage / MIB, res.bytes / MIB, res.seconds);
}
