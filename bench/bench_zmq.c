/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_zmq: throughput of libpartd's ZeroMQ Client and Server, each figure
 * beside a raw libzmq loop measured in the same run.
 *
 * The raw loop is the floor: a DEALER and a ROUTER exchanging exactly the
 * messages of the protocol (the same frames, the same acknowledgements, the
 * same pipelining as our client: up to PD_CLIENT_WINDOW_DEFAULT appends and
 * 32 MiB in flight, one get), with nothing a real server does (keys, store,
 * results, checks).  A ratio of 1.0 is the ceiling.  One more row runs our
 * client with window 1 (the reference's pacing: one request in flight).
 *
 * The server (ours or the raw ROUTER) runs in a forked child, the client in
 * this process, over ipc in a private directory (and tcp on 127.0.0.1 for
 * one row).  Each round starts a fresh server child; rounds alternate
 * between raw and ours, so both see the same machine state.
 *
 * Workloads:
 *   small  200k appends of 100-byte values over 1000 keys (k0000..k0999),
 *          100 keys per request (2000 requests), append i to key i % 1000
 *          (bench_core's small-value workload), through to the last
 *          acknowledgement; then one single-key get per key (1000 gets of
 *          20000 bytes)
 *   big    20k appends of 10 KB values (200 MB), 100 per request
 * Targets: small appends >= 0.70 x raw; big >= 1 GB/s; gets >= 50k/s.
 * The Python reference (bench/ref_zmq.py, partd.Server/Client over tcp,
 * the only transport it has) runs the same workloads, when
 * /usr/bin/python3 can import partd.
 *
 *   bench_zmq [--runs N] [--quick] [--csv FILE] [--no-python]
 *
 * Reported: median of N runs (default 5) and min-max.  Exit status 0 (a
 * report), 2 when something could not run or read back wrong data.
 */
#include "partd/partd.h"

#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#ifndef PARTD_SOURCE_DIR
#define PARTD_SOURCE_DIR "."
#endif

typedef struct s_cfg {
    int runs;
    bool quick, python;
    const char *csv;
    size_t nkeys, nvals, vsize, per_call; /* small */
    size_t big_vals, big_size;            /* big */
} s_cfg;

static void s_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_zmq: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ------------------------------------------------------------ Servers */

enum { S_RAW, S_OURS };

/* The raw ROUTER: receives whole requests, answers as the protocol does
 * (get: one results message of `gsize`-byte frames, then the ack). */
static int s_raw_router(const char *addr, int ready, size_t gsize) {
    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    if (zmq_bind(r, addr)) return 1;
    if (write(ready, "r", 1) != 1) return 1;
    char *gv = calloc(1, gsize ? gsize : 1);
    zmq_msg_t id, m;
    zmq_msg_init(&id);
    zmq_msg_init(&m);
    for (;;) {
        if (zmq_msg_recv(&id, r, 0) < 0) continue;
        char cmd[16] = "";
        size_t nf = 0;
        while (zmq_msg_more(nf ? &m : &id)) {
            zmq_msg_recv(&m, r, 0);
            if (nf == 0) {
                size_t l = zmq_msg_size(&m) < 15 ? zmq_msg_size(&m) : 15;
                memcpy(cmd, zmq_msg_data(&m), l);
                cmd[l] = 0;
            }
            nf++;
        }
        if (strcmp(cmd, "get") == 0) {
            zmq_send(r, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE);
            for (size_t i = 1; i < nf; i++)
                zmq_send(r, gv, gsize, i + 1 < nf ? ZMQ_SNDMORE : 0);
        }
        zmq_send(r, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE);
        zmq_send(r, "ack", 3, 0);
        if (strcmp(cmd, "close") == 0) break;
    }
    zmq_msg_close(&id);
    zmq_msg_close(&m);
    free(gv);
    zmq_close(r);
    zmq_ctx_term(ctx);
    return 0;
}

static int s_our_server(const char *addr, int ready) {
    pd_server_opts o = {0};
    o.bind = &addr;
    o.nbind = 1;
    o.log_level = PD_LOG_WARN;
    pd_server *srv = NULL;
    if (pd_server_open(&srv, NULL, &o)) {
        fprintf(stderr, "bench_zmq: server: %s\n", pd_errmsg(NULL));
        return 1;
    }
    if (write(ready, "r", 1) != 1) return 1;
    int rc = pd_server_run(srv);
    if (pd_server_close(&srv)) rc = 1;
    return rc ? 1 : 0;
}

static pid_t s_spawn(int kind, const char *addr, size_t gsize) {
    int p[2];
    if (pipe(p)) s_die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) s_die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        _exit(kind == S_RAW ? s_raw_router(addr, p[1], gsize)
                            : s_our_server(addr, p[1]));
    }
    close(p[1]);
    char c;
    if (read(p[0], &c, 1) != 1) s_die("server child did not start");
    close(p[0]);
    return pid;
}

static void s_reap(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        s_die("server child failed");
}

/* ------------------------------------------------------------ Clients */

typedef struct s_data {
    char (*names)[8];
    char *vals;   /* nvals * vsize, small */
    char *bigval; /* big_size */
} s_data;

/* A raw DEALER doing what our client does with our server: an append
 * first reads the oldest acks while PD_CLIENT_WINDOW_DEFAULT requests or
 * 32 MiB of appends are in flight; a get reads every ack first. */
#define S_RAW_WINDOW_BYTES ((size_t)32 << 20)
typedef struct s_rawc {
    void *ctx, *sock;
    size_t bytes[PD_CLIENT_WINDOW_DEFAULT]; /* in flight, a ring */
    unsigned head, n;
    size_t inflight;
} s_rawc;

static void s_rawc_open(s_rawc *c, const char *addr) {
    c->ctx = zmq_ctx_new();
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (zmq_connect(c->sock, addr)) s_die("connect %s", addr);
    zmq_send(c->sock, "syn", 3, 0);
    c->head = 0;
    c->n = 1;
    c->bytes[0] = 0;
    c->inflight = 0;
}

static size_t s_rawc_recv(s_rawc *c, size_t *bytes) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    size_t n = 0;
    do {
        if (zmq_msg_recv(&m, c->sock, 0) < 0) s_die("raw recv");
        if (bytes) *bytes += zmq_msg_size(&m);
        n++;
    } while (zmq_msg_more(&m));
    zmq_msg_close(&m);
    return n;
}

static void s_rawc_pop(s_rawc *c) {
    s_rawc_recv(c, NULL);
    c->inflight -= c->bytes[c->head];
    c->head = (c->head + 1) % PD_CLIENT_WINDOW_DEFAULT;
    c->n--;
}

static void s_rawc_settle(s_rawc *c) {
    while (c->n > 0) s_rawc_pop(c);
}

static void s_rawc_room(s_rawc *c, size_t bytes) {
    while (c->n > 0 && (c->n >= PD_CLIENT_WINDOW_DEFAULT ||
                        c->inflight + bytes > S_RAW_WINDOW_BYTES))
        s_rawc_pop(c);
}

static void s_rawc_push(s_rawc *c, size_t bytes) {
    c->bytes[(c->head + c->n) % PD_CLIENT_WINDOW_DEFAULT] = bytes;
    c->n++;
    c->inflight += bytes;
}

static void s_rawc_close(s_rawc *c) {
    s_rawc_settle(c);
    zmq_send(c->sock, "close", 5, 0);
    s_rawc_recv(c, NULL);
    zmq_close(c->sock);
    zmq_ctx_term(c->ctx);
}

/* Appends: n values of vsize from vals, to key (i + off) % nkeys. */
static double s_raw_appends(s_rawc *c, const s_cfg *cfg, const s_data *d,
                            size_t nvals, size_t vsize, const char *vals,
                            bool same_val) {
    double t0 = bench_now();
    for (size_t i = 0; i < nvals; i += cfg->per_call) {
        size_t m = nvals - i < cfg->per_call ? nvals - i : cfg->per_call;
        s_rawc_room(c, m * (5 + vsize));
        zmq_send(c->sock, "append", 6, ZMQ_SNDMORE);
        for (size_t j = 0; j < m; j++) {
            size_t k = (i + j) % cfg->nkeys;
            const char *v = same_val ? vals : vals + (i + j) * vsize;
            zmq_send(c->sock, d->names[k], 5, ZMQ_SNDMORE);
            zmq_send(c->sock, v, vsize, j + 1 < m ? ZMQ_SNDMORE : 0);
        }
        s_rawc_push(c, m * (5 + vsize));
    }
    s_rawc_settle(c);
    return bench_now() - t0;
}

static double s_raw_gets(s_rawc *c, const s_cfg *cfg, const s_data *d) {
    double t0 = bench_now();
    for (size_t k = 0; k < cfg->nkeys; k++) {
        s_rawc_settle(c);
        zmq_send(c->sock, "get", 3, ZMQ_SNDMORE);
        zmq_send(c->sock, d->names[k], 5, 0);
        size_t bytes = 0;
        s_rawc_recv(c, &bytes);
        s_rawc_recv(c, NULL);
    }
    return bench_now() - t0;
}

static pd_store *s_open_client(const char *addr, unsigned window) {
    pd_store *c = NULL;
    pd_client_opts o = {0};
    o.window = window;
    if (pd_client_open(&c, addr, &o)) s_die("client: %s", pd_errmsg(NULL));
    return c;
}

static double s_our_appends(pd_store *c, const s_cfg *cfg, const s_data *d,
                            size_t nvals, size_t vsize, const char *vals,
                            bool same_val) {
    pd_key *keys = malloc(cfg->per_call * sizeof *keys);
    pd_bytes *vs = malloc(cfg->per_call * sizeof *vs);
    double t0 = bench_now();
    for (size_t i = 0; i < nvals; i += cfg->per_call) {
        size_t m = nvals - i < cfg->per_call ? nvals - i : cfg->per_call;
        for (size_t j = 0; j < m; j++) {
            size_t k = (i + j) % cfg->nkeys;
            keys[j] = PD_KEY(d->names[k], 5);
            vs[j] = PD_BYTES(same_val ? vals : vals + (i + j) * vsize, vsize);
        }
        if (pd_append(c, m, keys, vs, 0)) s_die("append: %s", pd_errmsg(c));
    }
    if (pd_client_sync(c)) s_die("append: %s", pd_errmsg(c));
    double t = bench_now() - t0;
    free(keys);
    free(vs);
    return t;
}

static double s_our_gets(pd_store *c, const s_cfg *cfg, const s_data *d,
                         bool check) {
    size_t per_key = cfg->nvals / cfg->nkeys * cfg->vsize;
    double t0 = bench_now();
    for (size_t k = 0; k < cfg->nkeys; k++) {
        pd_key key = PD_KEY(d->names[k], 5);
        pd_result *r = NULL;
        if (pd_get(c, 1, &key, &r, 0)) s_die("get: %s", pd_errmsg(c));
        pd_bytes v = pd_result_value(r, 0);
        if (v.size != per_key)
            s_die("get %s: %zu bytes, want %zu", d->names[k], v.size, per_key);
        if (check) {
            /* value i went to key i % nkeys: the key's bytes are its
             * values in order */
            for (size_t j = 0; j < per_key / cfg->vsize; j++) {
                size_t i = k + j * cfg->nkeys;
                if (memcmp((const char *)v.data + j * cfg->vsize,
                           d->vals + i * cfg->vsize, cfg->vsize))
                    s_die("get %s: wrong bytes at value %zu", d->names[k], j);
            }
        }
        pd_result_free(&r);
    }
    return bench_now() - t0;
}

static void s_our_close_server(pd_store **c) {
    if (pd_client_close_server(*c)) s_die("close: %s", pd_errmsg(*c));
    pd_close(c);
}

/* A fresh server child of ours at addr, a client with `window`, appends
 * (as s_our_appends); returns their time. */
static double s_our_round(const char *addr, unsigned window, const s_cfg *cfg,
                          const s_data *d, size_t nvals, size_t vsize,
                          const char *vals, bool same_val) {
    pid_t pid = s_spawn(S_OURS, addr, 0);
    pd_store *c = s_open_client(addr, window);
    double t = s_our_appends(c, cfg, d, nvals, vsize, vals, same_val);
    s_our_close_server(&c);
    s_reap(pid);
    return t;
}

/* ------------------------------------------------------------ Rows */

enum {
    R_SMALL_RAW,
    R_SMALL_OURS,
    R_SMALL_OURS_TCP,
    R_SMALL_OURS_W1,
    R_GET_RAW,
    R_GET_OURS,
    R_BIG_RAW,
    R_BIG_OURS,
    R_N
};

static const char *const s_row_names[R_N] = {
    "small appends, raw zmq loop (ipc)",
    "small appends, libpartd (ipc)",
    "small appends, libpartd (tcp)",
    "small appends, libpartd window 1 (ipc)",
    "single-key gets, raw zmq loop (ipc)",
    "single-key gets, libpartd (ipc)",
    "10 KB appends, raw zmq loop (ipc)",
    "10 KB appends, libpartd (ipc)",
};

/* Python's figures, when run: small appends/s, gets/s, big MB/s. */
typedef struct s_py {
    bool have;
    double small, gets, big;
} s_py;

static s_py s_run_python(const s_cfg *cfg) {
    s_py py = {0};
    if (!cfg->python || access("/usr/bin/python3", X_OK) != 0) return py;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/bench/ref_zmq.py --runs %d --nkeys %zu "
             "--nvals %zu --vsize %zu --per-call %zu --big-vals %zu "
             "--big-size %zu",
             PARTD_SOURCE_DIR, cfg->runs, cfg->nkeys, cfg->nvals, cfg->vsize,
             cfg->per_call, cfg->big_vals, cfg->big_size);
    FILE *p = popen(cmd, "r");
    if (!p) return py;
    char line[512];
    while (fgets(line, sizeof line, p)) {
        if (sscanf(line, "RESULT %lf %lf %lf", &py.small, &py.gets, &py.big) ==
            3)
            py.have = true;
        else
            fputs(line, stdout);
    }
    if (pclose(p) != 0) py.have = false;
    return py;
}

int main(int argc, char **argv) {
    s_cfg cfg = {5, false, true, NULL, 1000, 200000, 100, 100, 20000, 10240};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            cfg.runs = atoi(argv[++i]);
            if (cfg.runs < 1) s_die("--runs needs a positive number");
        } else if (!strcmp(argv[i], "--quick")) {
            cfg.quick = true;
        } else if (!strcmp(argv[i], "--csv") && i + 1 < argc) {
            cfg.csv = argv[++i];
        } else if (!strcmp(argv[i], "--no-python")) {
            cfg.python = false;
        } else {
            fprintf(stderr, "usage: bench_zmq [--runs N] [--quick] [--csv "
                            "FILE] [--no-python]\n");
            return 2;
        }
    }
    if (cfg.quick) {
        cfg.runs = 1;
        cfg.nkeys = 200;
        cfg.nvals = 20000;
        cfg.big_vals = 2000;
    }
    signal(SIGPIPE, SIG_IGN);

    s_data d;
    d.names = malloc(cfg.nkeys * sizeof *d.names);
    for (size_t k = 0; k < cfg.nkeys; k++)
        snprintf(d.names[k], sizeof d.names[k], "k%04u", (unsigned)(k % 10000));
    d.vals = malloc(cfg.nvals * cfg.vsize);
    for (size_t i = 0; i < cfg.nvals * cfg.vsize; i++)
        d.vals[i] = (char)('a' + (i * 7 + i / 97) % 26);
    d.bigval = malloc(cfg.big_size);
    memset(d.bigval, 'B', cfg.big_size);

    char dir[] = "/tmp/bench-zmq-XXXXXX";
    if (!mkdtemp(dir)) s_die("mkdtemp: %s", strerror(errno));
    char ipc[128], tcp[] = "tcp://127.0.0.1:47311";
    snprintf(ipc, sizeof ipc, "ipc://%s/s", dir);
    size_t per_key = cfg.nvals / cfg.nkeys * cfg.vsize;

    double *v[R_N];
    for (int r = 0; r < R_N; r++) v[r] = calloc((size_t)cfg.runs, sizeof *v[r]);
    /* One warm-up round (discarded, checks the bytes), then the runs. */
    for (int run = -1; run < cfg.runs; run++) {
        bool keep = run >= 0;
        s_rawc rc;
        pid_t pid = s_spawn(S_RAW, ipc, per_key);
        s_rawc_open(&rc, ipc);
        double t =
            s_raw_appends(&rc, &cfg, &d, cfg.nvals, cfg.vsize, d.vals, false);
        double tg = s_raw_gets(&rc, &cfg, &d);
        s_rawc_close(&rc);
        s_reap(pid);
        if (keep) {
            v[R_SMALL_RAW][run] = (double)cfg.nvals / t;
            v[R_GET_RAW][run] = (double)cfg.nkeys / tg;
        }

        pid = s_spawn(S_OURS, ipc, 0);
        pd_store *c = s_open_client(ipc, 0);
        t = s_our_appends(c, &cfg, &d, cfg.nvals, cfg.vsize, d.vals, false);
        tg = s_our_gets(c, &cfg, &d, !keep);
        s_our_close_server(&c);
        s_reap(pid);
        if (keep) {
            v[R_SMALL_OURS][run] = (double)cfg.nvals / t;
            v[R_GET_OURS][run] = (double)cfg.nkeys / tg;
        }

        t = s_our_round(tcp, 0, &cfg, &d, cfg.nvals, cfg.vsize, d.vals, false);
        if (keep) v[R_SMALL_OURS_TCP][run] = (double)cfg.nvals / t;
        t = s_our_round(ipc, 1, &cfg, &d, cfg.nvals, cfg.vsize, d.vals, false);
        if (keep) v[R_SMALL_OURS_W1][run] = (double)cfg.nvals / t;

        double mb = (double)cfg.big_vals * (double)cfg.big_size / 1e6;
        pid = s_spawn(S_RAW, ipc, 0);
        s_rawc_open(&rc, ipc);
        t = s_raw_appends(&rc, &cfg, &d, cfg.big_vals, cfg.big_size, d.bigval,
                          true);
        s_rawc_close(&rc);
        s_reap(pid);
        if (keep) v[R_BIG_RAW][run] = mb / t;

        t = s_our_round(ipc, 0, &cfg, &d, cfg.big_vals, cfg.big_size, d.bigval,
                        true);
        if (keep) v[R_BIG_OURS][run] = mb / t;
    }
    rmdir(dir);

    bench_stat st[R_N];
    for (int r = 0; r < R_N; r++) st[r] = bench_stats(v[r], cfg.runs);
    s_py py = s_run_python(&cfg);

    const char *unit[R_N] = {"appends/s", "appends/s", "appends/s", "appends/s",
                             "gets/s",    "gets/s",    "MB/s",      "MB/s"};
    printf("\nbench_zmq: median of %d run%s (min-max); libzmq %d.%d.%d\n",
           cfg.runs, cfg.runs == 1 ? "" : "s", ZMQ_VERSION_MAJOR,
           ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH);
    printf("%-38s %14s %25s  %s\n", "benchmark", "median", "min-max", "note");
    for (int r = 0; r < R_N; r++) {
        char note[128] = "";
        if (r == R_SMALL_OURS) {
            double ratio = st[r].med / st[R_SMALL_RAW].med;
            snprintf(note, sizeof note, "%.2f x raw (target >= 0.70) %s", ratio,
                     ratio >= 0.70 ? "PASS" : "FAIL");
            if (py.have)
                snprintf(note + strlen(note), sizeof note - strlen(note),
                         "; %.1f x Python (target >= 10) %s",
                         st[r].med / py.small,
                         st[r].med / py.small >= 10 ? "PASS" : "FAIL");
        } else if (r == R_SMALL_OURS_TCP && py.have) {
            snprintf(note, sizeof note, "%.1f x Python over tcp",
                     st[r].med / py.small);
        } else if (r == R_GET_OURS) {
            snprintf(note, sizeof note, "%.2f x raw; target >= 50000/s %s%s",
                     st[r].med / st[R_GET_RAW].med,
                     st[r].med >= 50000 ? "PASS" : "FAIL", "");
            if (py.have)
                snprintf(note + strlen(note), sizeof note - strlen(note),
                         "; %.1f x Python", st[r].med / py.gets);
        } else if (r == R_BIG_OURS) {
            snprintf(note, sizeof note, "%.2f x raw; target >= 1000 MB/s %s",
                     st[r].med / st[R_BIG_RAW].med,
                     st[r].med >= 1000 ? "PASS" : "FAIL");
            if (py.have)
                snprintf(note + strlen(note), sizeof note - strlen(note),
                         "; %.1f x Python", st[r].med / py.big);
        }
        char range[64];
        snprintf(range, sizeof range, "%.0f-%.0f", st[r].min, st[r].max);
        printf("%-38s %14.0f %25s  %s %s\n", s_row_names[r], st[r].med, range,
               unit[r], note);
    }
    if (py.have) {
        printf("%-38s %14.0f %25s  appends/s\n",
               "small appends, Python partd (tcp)", py.small, "");
        printf("%-38s %14.0f %25s  gets/s\n",
               "single-key gets, Python partd (tcp)", py.gets, "");
        printf("%-38s %14.0f %25s  MB/s\n", "10 KB appends, Python partd (tcp)",
               py.big, "");
    } else {
        printf("(Python partd not run: --no-python, or /usr/bin/python3 "
               "cannot import partd)\n");
    }
    if (cfg.csv) {
        FILE *f = fopen(cfg.csv, "w");
        if (!f) s_die("%s: %s", cfg.csv, strerror(errno));
        fprintf(f, "benchmark,unit,median,min,max\n");
        for (int r = 0; r < R_N; r++)
            fprintf(f, "%s,%s,%.1f,%.1f,%.1f\n", s_row_names[r], unit[r],
                    st[r].med, st[r].min, st[r].max);
        if (py.have) {
            fprintf(f, "small appends Python partd (tcp),appends/s,%.1f,,\n",
                    py.small);
            fprintf(f, "single-key gets Python partd (tcp),gets/s,%.1f,,\n",
                    py.gets);
            fprintf(f, "10 KB appends Python partd (tcp),MB/s,%.1f,,\n",
                    py.big);
        }
        fclose(f);
    }
    for (int r = 0; r < R_N; r++) free(v[r]);
    free(d.names);
    free(d.vals);
    free(d.bigval);
    return 0;
}
