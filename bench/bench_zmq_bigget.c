/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_zmq_bigget: the memory and speed of one big get through libpartd's
 * Server and Client (docs/zmq.md, "Packed append and get").
 *
 * A server child serves a Log in a private directory over ipc; a writer
 * child appends one value of --mb MiB to one key in 4 MiB appends (so the
 * server's own peak comes from the get, not from a big append).  Then each
 * round a fresh reader child gets the value back (pd_get, or with --into
 * pd_get_into a fresh buffer of the value's size; --touched: a buffer
 * written first, as a reused one), checks every byte, and reports its
 * time and peak RSS; the server's peak RSS is reset before each round
 * (/proc/PID/clear_refs) and read after it (VmHWM).
 *
 *   bench_zmq_bigget [--mb N] [--rounds N] [--into] [--touched]
 *                    [--max-message BYTES]
 *
 * Prints one line per round and the medians.  Exit status 0, or 2 when
 * something could not run or read back wrong data.
 */
#include "partd/partd.h"
#include "partd/zmq.h"

#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK ((size_t)4 << 20)

typedef struct s_cfg {
    size_t bytes;
    int rounds;
    bool into, touched;
    uint64_t max_message;
    char dir[64], addr[128];
} s_cfg;

typedef struct s_report {
    double secs;
    long maxrss_kb;
    int ok;
} s_report;

static unsigned char s_byte(size_t i) {
    return (unsigned char)((i * 2654435761u) >> 13);
}

static void s_die(const char *what, const char *why) {
    fprintf(stderr, "bench_zmq_bigget: %s: %s\n", what, why);
    exit(2);
}

static pd_store *s_client(const s_cfg *c) {
    pd_client_opts o = {0};
    o.timeout_ms = 120000;
    o.max_message = c->max_message;
    pd_store *s = NULL;
    if (pd_client_open(&s, c->addr, &o) != 0) s_die("client", pd_errmsg(NULL));
    return s;
}

static void s_serve(const s_cfg *c) {
    char path[96];
    snprintf(path, sizeof path, "%s/log", c->dir);
    pd_store *log = NULL;
    if (pd_log_open(&log, path, PD_LOG_CREATE) != 0)
        s_die("log", pd_errmsg(NULL));
    const char *bind[1] = {c->addr};
    pd_server_opts o = {0};
    o.bind = bind;
    o.nbind = 1;
    o.max_message = c->max_message;
    pd_server *srv = NULL;
    if (pd_server_open(&srv, &log, &o) != 0) s_die("server", pd_errmsg(NULL));
    int rc = pd_server_run(srv);
    if (pd_server_close(&srv) != 0 || rc) s_die("server", pd_errmsg(NULL));
    _exit(0);
}

static void s_write(const s_cfg *c) {
    pd_store *s = s_client(c);
    /* Appends of at most half max_message (a request holds the key too). */
    size_t chunk = c->max_message && c->max_message / 2 < CHUNK
                       ? (size_t)c->max_message / 2
                       : CHUNK;
    unsigned char *b = malloc(chunk);
    if (!b) s_die("write", "out of memory");
    pd_key k = PD_KEY("big", 3);
    for (size_t at = 0; at < c->bytes; at += chunk) {
        size_t n = c->bytes - at < chunk ? c->bytes - at : chunk;
        for (size_t i = 0; i < n; i++) b[i] = s_byte(at + i);
        pd_bytes v = {b, n};
        if (pd_append(s, 1, &k, &v, 0) != 0) s_die("append", pd_errmsg(s));
    }
    if (pd_client_sync(s) != 0) s_die("sync", pd_errmsg(s));
    pd_close(&s);
    free(b);
    _exit(0);
}

static void s_read(const s_cfg *c, int fd) {
    s_report rep = {0, 0, 0};
    pd_store *s = s_client(c);
    pd_key k = PD_KEY("big", 3);
    void *buf = NULL;
    if (c->into) {
        buf = malloc(c->bytes);
        if (!buf) s_die("read", "out of memory");
        if (c->touched) memset(buf, 1, c->bytes);
    }
    pd_result *r = NULL;
    double t0 = bench_now();
    int rc = c->into ? pd_get_into(s, 1, &k, buf, c->bytes, &r, 0)
                     : pd_get(s, 1, &k, &r, 0);
    rep.secs = bench_now() - t0;
    if (rc) s_die("get", pd_errmsg(s));
    pd_bytes v = pd_result_value(r, 0);
    rep.ok = v.size == c->bytes;
    const unsigned char *p = v.data;
    for (size_t i = 0; rep.ok && i < v.size; i++) rep.ok = p[i] == s_byte(i);
    pd_result_free(&r);
    pd_close(&s);
    free(buf);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    rep.maxrss_kb = ru.ru_maxrss;
    if (write(fd, &rep, sizeof rep) != (ssize_t)sizeof rep) _exit(2);
    _exit(0);
}

static long s_hwm_kb(pid_t pid) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

static void s_reset_hwm(pid_t pid) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/clear_refs", (int)pid);
    int fd = open(p, O_WRONLY);
    if (fd < 0 || write(fd, "5", 1) != 1)
        fprintf(stderr, "bench_zmq_bigget: %s: %s (server peak not reset)\n", p,
                strerror(errno));
    if (fd >= 0) close(fd);
}

static pid_t s_fork(void (*fn)(const s_cfg *), const s_cfg *c) {
    pid_t pid = fork();
    if (pid < 0) s_die("fork", strerror(errno));
    if (pid == 0) fn(c);
    return pid;
}

static void s_wait_ok(pid_t pid, const char *what) {
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
        s_die(what, "child failed");
}

int main(int argc, char **argv) {
    s_cfg c = {400u << 20, 3, false, false, 0, "", ""};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc)
            c.bytes = (size_t)strtoull(argv[++i], NULL, 10) << 20;
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            c.rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-message") && i + 1 < argc)
            c.max_message = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--into"))
            c.into = true;
        else if (!strcmp(argv[i], "--touched"))
            c.into = c.touched = true;
        else
            s_die(argv[i], "unknown option (see the header of "
                           "bench/bench_zmq_bigget.c)");
    }
    if (c.rounds < 1 || c.rounds > 100 || c.bytes == 0)
        s_die("options", "--rounds 1..100, --mb >= 1");
    snprintf(c.dir, sizeof c.dir, "/tmp/bench_bigget.XXXXXX");
    if (!mkdtemp(c.dir)) s_die("mkdtemp", strerror(errno));
    snprintf(c.addr, sizeof c.addr, "ipc://%s/sock", c.dir);
    pid_t srv = s_fork(s_serve, &c);
    s_wait_ok(s_fork(s_write, &c), "writer");
    printf("value %.1f MB, get %s, max_message %" PRIu64 "\n",
           (double)c.bytes / 1e6,
           c.into ? (c.touched ? "into a written buffer" : "into a new buffer")
                  : "owned result",
           c.max_message ? c.max_message : PD_ZMQ_MAX_MESSAGE_DEFAULT);
    double mbs[100], srss[100], crss[100];
    for (int r = 0; r < c.rounds; r++) {
        int fds[2];
        if (pipe(fds)) s_die("pipe", strerror(errno));
        s_reset_hwm(srv);
        pid_t rd = fork();
        if (rd < 0) s_die("fork", strerror(errno));
        if (rd == 0) {
            close(fds[0]);
            s_read(&c, fds[1]);
        }
        close(fds[1]);
        s_report rep = {0, 0, 0};
        ssize_t got = read(fds[0], &rep, sizeof rep);
        close(fds[0]);
        s_wait_ok(rd, "reader");
        if (got != (ssize_t)sizeof rep || !rep.ok)
            s_die("reader", "the value read back differs");
        mbs[r] = (double)c.bytes / 1e6 / rep.secs;
        srss[r] = (double)s_hwm_kb(srv) / 1024;
        crss[r] = (double)rep.maxrss_kb / 1024;
        printf("round %d: get %.3f s, %.0f MB/s; peak RSS server %.0f MiB, "
               "client %.0f MiB\n",
               r + 1, rep.secs, mbs[r], srss[r], crss[r]);
    }
    bench_stat a = bench_stats(mbs, c.rounds), b = bench_stats(srss, c.rounds),
               d = bench_stats(crss, c.rounds);
    printf("median: get %.0f MB/s [%.0f-%.0f]; peak RSS server %.0f MiB, "
           "client %.0f MiB\n",
           a.med, a.min, a.max, b.med, d.med);
    pd_store *s = s_client(&c);
    if (pd_client_close_server(s) != 0) s_die("close", pd_errmsg(s));
    pd_close(&s);
    s_wait_ok(srv, "server");
    char rm[96];
    snprintf(rm, sizeof rm, "rm -rf '%s'", c.dir);
    if (system(rm) != 0) fprintf(stderr, "bench_zmq_bigget: %s failed\n", rm);
    return 0;
}
