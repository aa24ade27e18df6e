/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * What the C benchmarks share: a monotonic clock, and the median, min and
 * max of a set of runs.  Header-only: each benchmark is one program.
 */
#ifndef PARTD_BENCH_H
#define PARTD_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_stat {
    double med, min, max;
} bench_stat;

/* Median (the mean of the middle two for even n), min and max of v[0..n),
 * n >= 1; v is left as it is.  Exits with status 2 when out of memory. */
static inline bench_stat bench_stats(const double *v, int n) {
    double *c = malloc((size_t)n * sizeof *c);
    if (!c) {
        fprintf(stderr, "bench: out of memory\n");
        exit(2);
    }
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, bench_cmp_double);
    bench_stat s = {n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2, c[0],
                    c[n - 1]};
    free(c);
    return s;
}

#endif
