/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The fixture shared by the Concurrency suites (tests/test_concurrency_*.c):
 * C and Python (tests/py) child processes, clocks, key names, and parsing
 * the records writers append.
 *
 * Several processes and threads on one File store: batches are atomic for
 * every reader, appends from every writer land exactly once, descriptors
 * cached by one process survive what other processes do to the directory,
 * and the lock excludes processes (C and Python) and threads.
 */
#ifndef PARTD_TESTS_CONCFIX_H
#define PARTD_TESTS_CONCFIX_H

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PARTD_SOURCE_DIR
#define PARTD_SOURCE_DIR "."
#endif
#define PY_DIR PARTD_SOURCE_DIR "/tests/py"

/* ------------------------------------------------------- Child processes */

/* Descriptors a forked child must close first (e.g. the write ends of the
 * pipes whose EOF it waits for). */
static PD__UNUSED int g_child_close[8];
static PD__UNUSED int g_nchild_close;

static PD__UNUSED tu_child s_spawn(tu_child_fn fn, void *arg) {
    return tu_child_spawn(fn, arg, g_child_close, g_nchild_close);
}

static PD__UNUSED void s_wait_ok(tu_child c, const char *what) {
    char msg[4096];
    int st = tu_child_wait(c, msg, sizeof msg);
    ck_assert_msg(st == 0, "%s: exit status %d: %s", what, st, msg);
}

/* Starts /usr/bin/python3 tests/py/<script> with args (NULL-terminated);
 * its stdout goes to `outfd` if >= 0; `keepfd` stays open in it. */
static PD__UNUSED pid_t s_spawn_py(int outfd, int keepfd, const char *script,
                                   ...) {
    const char *argv[16];
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", PY_DIR, script);
    int n = 0;
    argv[n++] = PARTD_TEST_PYTHON;
    argv[n++] = path;
    va_list ap;
    va_start(ap, script);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 15) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (outfd >= 0) dup2(outfd, 1);
        /* Close everything else so the child holds no store descriptor. */
        for (int fd = 3; fd < 1024; fd++)
            if (fd != keepfd) close(fd);
        execv(PARTD_TEST_PYTHON, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Runs tests/py/op.py ROOT args... and returns its exit status; stdout is
 * captured into out (NUL-terminated) when out != NULL. */
static PD__UNUSED int s_py_op(char *out, size_t cap, const char *root,
                              const char *a1, const char *a2, const char *a3) {
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = s_spawn_py(p[1], -1, "op.py", root, a1, a2, a3, (char *)NULL);
    close(p[1]);
    size_t len = 0;
    ssize_t r;
    char sink[256];
    for (;;) {
        if (out && len + 1 < cap)
            r = read(p[0], out + len, cap - 1 - len);
        else
            r = read(p[0], sink, sizeof sink);
        if (r <= 0) break;
        if (out && len + 1 < cap) len += (size_t)r;
    }
    if (out) out[len] = 0;
    close(p[0]);
    return tu_waitpid(pid);
}

static PD__UNUSED double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static PD__UNUSED void s_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* The keys k0..k{n-1}: keys[k] points at names[k]. */
static PD__UNUSED void s_knames(int n, char names[][8], pd_key *keys) {
    for (int k = 0; k < n; k++) {
        snprintf(names[k], sizeof names[k], "k%d", k);
        keys[k] = PD_KEY_STR(names[k]);
    }
}

/* ------------------------------------------------------------ Records */

/* A key's content is a sequence of records "<w>:<b>:<k>;".  s_parse checks
 * the syntax (so a torn or interleaved record is caught), that k matches,
 * and fills recs[] with (w, b) pairs.  Returns the count or -1 with a
 * reason in why. */
typedef struct rec {
    int w, b;
} rec;

static PD__UNUSED long s_parse(const char *p, size_t len, int key, rec *recs,
                               size_t cap, char *why, size_t whycap) {
    size_t i = 0, n = 0;
    while (i < len) {
        long f[3];
        for (int j = 0; j < 3; j++) {
            if (i >= len || p[i] < '0' || p[i] > '9') {
                snprintf(why, whycap, "bad record at byte %zu: '%.40s'", i,
                         p + (i > 20 ? i - 20 : 0));
                return -1;
            }
            long v = 0;
            while (i < len && p[i] >= '0' && p[i] <= '9' && v < 100000000)
                v = v * 10 + (p[i++] - '0');
            f[j] = v;
            char want = j < 2 ? ':' : ';';
            if (i >= len || p[i] != want) {
                snprintf(why, whycap, "bad separator at byte %zu: '%.40s'", i,
                         p + (i > 20 ? i - 20 : 0));
                return -1;
            }
            i++;
        }
        if (f[2] != key) {
            snprintf(why, whycap, "record %ld:%ld:%ld in key k%d", f[0], f[1],
                     f[2], key);
            return -1;
        }
        if (n >= cap) {
            snprintf(why, whycap, "more than %zu records", cap);
            return -1;
        }
        recs[n++] = (rec){(int)f[0], (int)f[1]};
    }
    return (long)n;
}

#endif
