/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * `partd demo`: its processes (see demo.c): the server (`partd serve` in a
 * forked child), the workers that generate records and append them, and
 * the shuffle phase that waits for them; progress and messages on stderr.
 */
#include "demo_int.h"
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define S_BATCH 65536u             /* bytes per partition per call */
#define S_BATCH_BUDGET (16u << 20) /* most bytes per call */
#define S_CLIENT_TIMEOUT_MS 60000
#define S_SERVER_START_S 30.0 /* for the server to print its address */
#define S_GRACE_S 5.0         /* between SIGTERM and SIGKILL */

static void s_report_workers(const pd_demo *d);

double pd_demo_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void pd_demo_sleep_ms(int ms) { (void)poll(NULL, 0, ms); }

/* ---------------------------------------------------------- Output */

void pd_demo_clear_line(pd_demo *d) {
    if (d && d->line_open) {
        fputs("\r\033[K", stderr);
        d->line_open = false;
    }
}

/* "partd: demo: ..." on stderr. */
void pd_demo_errf(pd_demo *d, const char *fmt, ...) {
    pd_demo_clear_line(d);
    va_list ap;
    va_start(ap, fmt);
    fputs("partd: demo: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

/* Records the first failure (later ones are consequences); returns 1. */
int pd_demo_fail(pd_demo *d, const char *fmt, ...) {
    if (d->failed) return d->failed;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->failure, sizeof d->failure, fmt, ap);
    va_end(ap);
    d->failed = PD_CLI_EXIT_FAIL;
    return d->failed;
}

/* 1234567 -> "1.23M" (for the progress line). */
static const char *s_count_str(uint64_t n, char buf[16]) {
    if (n >= 1000000000)
        snprintf(buf, 16, "%.2fG", (double)n / 1e9);
    else if (n >= 1000000)
        snprintf(buf, 16, "%.2fM", (double)n / 1e6);
    else if (n >= 10000)
        snprintf(buf, 16, "%.1fk", (double)n / 1e3);
    else
        snprintf(buf, 16, "%" PRIu64, n);
    return buf;
}

/* The progress of a phase: on a terminal a bar redrawn 5 times a second,
 * else a line every 5 seconds.  `final` draws it whatever the time. */
void pd_demo_progress(pd_demo *d, const char *phase, uint64_t done,
                      uint64_t total, const char *unit, uint64_t bytes,
                      double t_start, bool final) {
    if (d->o.quiet) return;
    double now = pd_demo_now();
    if (!final && now - d->last_shown < (d->tty ? 0.2 : 5.0)) return;
    d->last_shown = now;
    double el = now - t_start;
    double mbs = el > 0 ? (double)bytes / 1e6 / el : 0;
    unsigned pct = total ? (unsigned)(done * 100 / total) : 100;
    char a[16], b[16];
    if (d->tty) {
        char bar[21];
        unsigned fill = pct / 5;
        for (unsigned i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '-';
        bar[20] = '\0';
        fprintf(stderr, "\r\033[K%-7s [%s] %3u%%  %s/%s %s  %.1f MB/s  %.0f s",
                phase, bar, pct, s_count_str(done, a), s_count_str(total, b),
                unit, mbs, el);
        d->line_open = true;
    } else if (!final) {
        fprintf(stderr,
                "partd demo: %s: %u%% (%" PRIu64 "/%" PRIu64
                " %s, %.1f MB/s, %.1f s)\n",
                phase, pct, done, total, unit, mbs, el);
    }
    fflush(stderr);
}

/* ---------------------------------------------------------- Children */

/* In a new child: default signal handling, into the children's process
 * group, and dies with the coordinator. */
static void s_child_setup(pd_demo *d, int deathsig) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    /* A file size limit (ulimit -f) then fails the write with EFBIG, which
     * the store reports, instead of killing the process. */
    signal(SIGXFSZ, SIG_IGN);
    (void)setpgid(0, d->pgid);
#ifdef __linux__
    (void)prctl(PR_SET_PDEATHSIG, deathsig);
#else
    (void)deathsig;
#endif
}

/* Reaps c if it exited (block: wait for it).  Returns true if it is gone. */
bool pd_demo_reap(pd_demo_child *c, bool block) {
    if (!c->pid || !c->live) return true;
    for (;;) {
        pid_t r = wait4(c->pid, &c->status, block ? 0 : WNOHANG, &c->ru);
        if (r == c->pid) {
            c->live = false;
            return true;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { /* ECHILD: not ours any more; nothing to reap */
            c->live = false;
            c->status = 0;
            memset(&c->ru, 0, sizeof c->ru);
            return true;
        }
        return false;
    }
}

/* "exited with status 1", "was killed by signal 9 (Killed)". */
const char *pd_demo_status_str(int st, char *buf, size_t cap) {
    if (WIFEXITED(st))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    else
        snprintf(buf, cap, "ended with wait status %#x", (unsigned)st);
    return buf;
}

/* The live workers and readers: sends them sig (0: none); reaps them
 * (block: waits for each).  Returns true if none is left. */
static bool s_signal_reap(pd_demo *d, int sig, bool block) {
    pd_demo_child *lists[2] = {d->workers, d->readers};
    unsigned counts[2] = {d->o.workers, d->nreaders};
    bool gone = true;
    for (int l = 0; l < 2; l++)
        for (unsigned i = 0; lists[l] && i < counts[l]; i++) {
            pd_demo_child *c = &lists[l][i];
            if (sig && c->live) kill(c->pid, sig);
            if (!sig && !pd_demo_reap(c, block)) gone = false;
        }
    return gone;
}

/* Stops every live child: SIGTERM to the workers and readers, then the
 * server (which stops cleanly), SIGKILL to whatever is left after the grace
 * time; reaps them all. */
void pd_demo_stop_children(pd_demo *d) {
    s_signal_reap(d, SIGTERM, false);
    if (d->server.live) kill(d->server.pid, SIGTERM);
    double until = pd_demo_now() + S_GRACE_S;
    for (;;) {
        bool gone = s_signal_reap(d, 0, false);
        if (pd_demo_reap(&d->server, false) && gone) return;
        if (pd_demo_now() > until) break;
        pd_demo_sleep_ms(10);
    }
    s_signal_reap(d, SIGKILL, false);
    if (d->server.live) kill(d->server.pid, SIGKILL);
    s_signal_reap(d, 0, true);
    pd_demo_reap(&d->server, true);
}

/* The server: `partd serve --path DIR --store K --memory M -q` in a child, its
 * standard output (where it prints its address) a pipe read here. */
int pd_demo_start_server(pd_demo *d) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC))
        return pd_demo_fail(d, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return pd_demo_fail(d, "fork (server): %s", strerror(e));
    }
    if (pid == 0) {
        d->pgid = 0; /* leads the children's group */
        s_child_setup(d, SIGTERM);
        if (dup2(fds[1], STDOUT_FILENO) < 0) _exit(PD_CLI_EXIT_FAIL);
        char mem[32], a0[] = "serve", a1[] = "--path", a3[] = "--memory",
                      a5[] = "-q", a6[] = "--bind", a8[] = "--store", a9[8];
        snprintf(mem, sizeof mem, "%" PRIu64,
                 d->o.have_memory ? d->o.memory : PD_DEMO_DEF_MEMORY);
        snprintf(a9, sizeof a9, "%s", pd_cli_store_kind_name(d->o.kind));
        /* serve --path DIR [--path DIR2]... --memory M -q --store K
         * [--bind B] */
        char *argv[2 * PD_DEMO_MAX_DIRS + 10];
        int argc = 0;
        argv[argc++] = a0;
        argv[argc++] = a1;
        argv[argc++] = (char *)d->dir;
        for (unsigned i = 1; i < d->o.ndirs; i++) {
            argv[argc++] = a1;
            argv[argc++] = (char *)d->o.dirs[i];
        }
        argv[argc++] = a3;
        argv[argc++] = mem;
        argv[argc++] = a5;
        argv[argc++] = a8;
        argv[argc++] = a9;
        /* Without --bind (a path too long for ipc) the server makes its
         * own private socket directory. */
        if (d->bind[0]) {
            argv[argc++] = a6;
            argv[argc++] = (char *)d->bind;
        }
        argv[argc] = NULL;
        int rc = pd_cli_serve(argc, argv);
        fflush(NULL);
        _exit(rc);
    }
    close(fds[1]);
    d->server.pid = pid;
    d->server.live = true;
    d->pgid = pid;
    (void)setpgid(pid, pid); /* also here: whichever runs first */

    /* Its first line is the address. */
    size_t len = 0;
    double until = pd_demo_now() + S_SERVER_START_S;
    int rc = 0;
    bool eof = false;
    while (rc == 0) {
        if (pd_demo_stop) {
            rc = PD_CLI_EXIT_INTR;
            break;
        }
        if (pd_demo_now() > until) {
            rc = pd_demo_fail(d, "server (pid %d) printed no address in %.0f s",
                              (int)pid, S_SERVER_START_S);
            break;
        }
        struct pollfd pf = {fds[0], POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0) continue;
        ssize_t r = read(fds[0], d->addr + len, sizeof d->addr - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            eof = true;
            break;
        }
        len += (size_t)r;
        d->addr[len] = '\0';
        char *nl = strchr(d->addr, '\n');
        if (nl) {
            *nl = '\0';
            break;
        }
        if (len == sizeof d->addr - 1) {
            rc = pd_demo_fail(d, "server (pid %d) printed an address too long",
                              (int)pid);
            break;
        }
    }
    close(fds[0]);
    if (eof) {
        /* It closed its output: it is exiting; say how. */
        for (int i = 0; i < 200 && !pd_demo_reap(&d->server, false); i++)
            pd_demo_sleep_ms(10);
        char st[96];
        if (d->server.live)
            rc = pd_demo_fail(d,
                              "server (pid %d) closed its output before it "
                              "printed its address",
                              (int)pid);
        else
            rc = pd_demo_fail(
                d, "server (pid %d) %s before it printed its address", (int)pid,
                pd_demo_status_str(d->server.status, st, sizeof st));
    }
    return rc;
}

/* The worker's store: a client of the server, or the File or Log in DIR; with
 * --codec, an Encode layer over it.  *client: the client, borrowed. */
int pd_demo_open_store(const pd_demo *d, pd_store **out, pd_store **client,
                       char *why, size_t cap) {
    pd_store *inner = NULL;
    *out = NULL;
    *client = NULL;
    int rc;
    if (d->o.direct && d->o.ndirs > 1) {
        /* A Fanout of the stores, in the order of the --dir options. */
        rc = pd_cli_open_dirs(&inner, d->o.dirs, d->o.ndirs, d->o.kind, false,
                              "--dir", why, cap);
        if (rc) return rc;
    } else if (d->o.direct) {
        rc = pd_cli_open_dir(&inner, d->dir, d->o.kind, false, why, cap);
        if (rc) return rc;
    } else {
        pd_client_opts co = {0};
        co.timeout_ms = S_CLIENT_TIMEOUT_MS;
        rc = pd_client_open(&inner, d->addr, &co);
        *client = inner;
    }
    if (rc == 0 && d->o.codec) {
        rc = pd_compress_open(out, &inner, d->o.codec, d->o.level, 0);
        if (rc) pd_close(&inner);
    } else {
        *out = inner;
    }
    if (rc) {
        *client = NULL;
        snprintf(why, cap, "open the store: %s", pd_errmsg(NULL));
    }
    return rc;
}

/* The next batch of worker records [g0, g1), sorted by partition into buf
 * (a counting sort): their partitions are drawn in order, then each record's
 * index is placed in its partition's run (4-byte stores into a table that
 * stays in cache), then the records are made in buffer order, so each is
 * written once, sequentially, PD_DEMO_LANES at a time and hashed as it is
 * made (its hash into hs); the expected counts and checksums are added per
 * partition.  Fills keys and vals (a key per partition that got records);
 * returns their count. */
typedef struct s_batch {
    unsigned char *buf;
    uint32_t *rpart; /* [i]: the partition of record g0 + i */
    uint32_t *idx;   /* [j]: the record at buf + j * B, as g - g0 */
    uint32_t *at;    /* [p]: partition p's first slot; [P]: the total */
    uint32_t *fill;
    uint64_t *hs; /* [j]: the hash of the record at buf + j * B */
    char (*names)[8];
} s_batch;

static size_t s_make_batch(const pd_demo *d, s_batch *t, pd_demo_sum *exp,
                           uint64_t g0, uint64_t g1, pd_key *keys,
                           pd_bytes *vals) {
    const unsigned P = d->o.parts;
    const size_t B = d->o.recsize;
    const uint64_t seed = d->o.seed;
    const size_t m = (size_t)(g1 - g0);
    uint32_t *at = t->at, *fill = t->fill;
    memset(at, 0, ((size_t)P + 1) * sizeof *at);
    for (size_t i = 0; i < m; i++) {
        unsigned p = pd_demo_part_of(pd_demo_record_key(seed, g0 + i), P);
        t->rpart[i] = p;
        at[p + 1]++;
    }
    for (unsigned p = 0; p < P; p++) {
        at[p + 1] += at[p];
        fill[p] = at[p];
    }
    for (size_t i = 0; i < m; i++) t->idx[fill[t->rpart[i]]++] = (uint32_t)i;
    /* The keys drawn again: cheaper than a cache miss. */
    enum { L = PD_DEMO_LANES };
    size_t j = 0;
    for (; j + L <= m; j += L) {
        uint64_t key[L], g[L];
        for (unsigned l = 0; l < L; l++) {
            g[l] = g0 + t->idx[j + l];
            key[l] = pd_demo_record_key(seed, g[l]);
        }
        pd_demo_make_lanes(key, g, t->buf + j * B, B, t->hs + j, L);
    }
    for (; j < m; j++) {
        uint64_t g = g0 + t->idx[j], key = pd_demo_record_key(seed, g);
        pd_demo_make_lanes(&key, &g, t->buf + j * B, B, t->hs + j, 1);
    }
    size_t n = 0;
    for (unsigned p = 0; p < P; p++) {
        uint32_t j0 = at[p], j1 = at[p + 1];
        if (j0 == j1) continue;
        uint64_t sum = 0;
        for (uint32_t k = j0; k < j1; k++) sum += t->hs[k];
        exp[p].count += j1 - j0;
        exp[p].sum += sum;
        keys[n] = PD_KEY(t->names[p], 6);
        vals[n] = PD_BYTES(t->buf + (size_t)j0 * B, (size_t)(j1 - j0) * B);
        n++;
    }
    return n;
}

/* A worker, in its child: generates its records, appends them; returns the
 * exit status (the reason in its slot).  The map side of a sort shuffle:
 * the next P x 64 KiB of records (at most 16 MiB) are sorted by partition
 * into one buffer (s_make_batch) and appended in one call, a key per
 * partition: each call carries every partition, so its size does not
 * shrink as the partitions multiply. */
static int s_worker(pd_demo *d, unsigned w) {
    pd_demo_slot *slot = &d->slots[w];
    pd_demo_sum *exp = d->expect + (size_t)w * d->o.parts;
    const unsigned P = d->o.parts;
    const size_t B = d->o.recsize;
    uint64_t lo = d->o.records * w / d->o.workers;
    uint64_t hi = d->o.records * (w + 1) / d->o.workers;

    /* Records per call: 64 KiB per partition, at most 16 MiB (so far
     * fewer than 2^32: idx and at hold them in 32 bits). */
    size_t per =
        (P < S_BATCH_BUDGET / S_BATCH ? P * S_BATCH : S_BATCH_BUDGET) / B;
    if (per == 0) per = 1;
    s_batch t;
    t.buf = malloc(per * B);
    t.rpart = malloc(per * sizeof *t.rpart);
    t.idx = malloc(per * sizeof *t.idx);
    t.hs = malloc(per * sizeof *t.hs);
    t.at = calloc((size_t)P + 1, sizeof *t.at);
    t.fill = calloc(P, sizeof *t.fill);
    t.names = calloc(P, sizeof *t.names);
    pd_key *keys = calloc(P, sizeof *keys);
    pd_bytes *vals = calloc(P, sizeof *vals);
    pd_store *s = NULL, *client = NULL;
    int rc = PD_CLI_EXIT_FAIL;
    if (!t.buf || !t.rpart || !t.idx || !t.hs || !t.at || !t.fill || !t.names ||
        !keys || !vals) {
        snprintf(slot->error, sizeof slot->error, "out of memory");
        goto out;
    }
    for (unsigned p = 0; p < P; p++) pd_demo_part_name(p, t.names[p]);
    /* A retried worker counts its share afresh. */
    memset(exp, 0, (size_t)P * sizeof *exp);
    if (pd_demo_open_store(d, &s, &client, slot->error, sizeof slot->error))
        goto out;
    pd_demo_sink k;
    if (pd_demo_sink_begin(d, w, &k, s, slot->error, sizeof slot->error))
        goto out;

    uint64_t sent = 0;
    for (uint64_t g0 = lo; g0 < hi; g0 += per) {
        uint64_t g1 = hi - g0 < per ? hi : g0 + per;
        size_t n = s_make_batch(d, &t, exp, g0, g1, keys, vals);
        if (pd_demo_sink_append(&k, n, keys, vals) != 0) {
            /* The store's message names the key that failed. */
            const char *k0 = keys[0].data, *k1 = keys[n - 1].data;
            if (n == 1)
                snprintf(slot->error, sizeof slot->error, "append %.6s: %s", k0,
                         pd_errmsg(s));
            else
                snprintf(slot->error, sizeof slot->error,
                         "append %.6s..%.6s (%zu partitions): %s", k0, k1, n,
                         pd_errmsg(s));
            goto out;
        }
        sent += g1 - g0;
        atomic_store_explicit(&slot->sent, sent, memory_order_relaxed);
        pd_demo_kill_point(d, w, sent);
    }
    pd_demo_kill_point(d, w, sent);
    if (pd_demo_sink_end(d, w, &k, slot->error, sizeof slot->error)) goto out;
    /* The client returns before the server's reply: wait for the last. */
    if (client && pd_client_sync(client) != 0) {
        snprintf(slot->error, sizeof slot->error, "append: %s",
                 pd_errmsg(client));
        goto out;
    }
    atomic_store_explicit(&slot->sent, sent, memory_order_relaxed);
    rc = PD_CLI_EXIT_OK;
out:
    if (s && pd_close(&s) != 0 && rc == PD_CLI_EXIT_OK) {
        snprintf(slot->error, sizeof slot->error, "close: %s", pd_errmsg(NULL));
        rc = PD_CLI_EXIT_FAIL;
    }
    free(t.buf);
    free(t.rpart);
    free(t.idx);
    free(t.hs);
    free(t.at);
    free(t.fill);
    free(t.names);
    free(keys);
    free(vals);
    return rc;
}

pid_t pd_demo_fork(pd_demo *d, pd_demo_child *c) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid <= 0) {
        if (pid == 0) s_child_setup(d, SIGKILL);
        return pid;
    }
    memset(c, 0, sizeof *c);
    c->pid = pid;
    c->live = true;
    if (d->pgid == 0) d->pgid = pid; /* it leads the group */
    (void)setpgid(pid, d->pgid);     /* also here: whichever runs first */
    return pid;
}

int pd_demo_start_worker(pd_demo *d, unsigned w) {
    pid_t pid = pd_demo_fork(d, &d->workers[w]);
    if (pid < 0)
        return pd_demo_fail(d, "fork (worker %u): %s", w, strerror(errno));
    if (pid == 0) {
        int rc = s_worker(d, w);
        fflush(NULL);
        _exit(rc);
    }
    return 0;
}

static int s_start_workers(pd_demo *d) {
    pd_demo_fail_plan(d);
    for (unsigned w = 0; w < d->o.workers; w++) {
        int rc = pd_demo_start_worker(d, w);
        if (rc) return rc;
    }
    return 0;
}

/* A child that ended: a failure unless it is a worker that exited 0. */
int pd_demo_check_exits(pd_demo *d) {
    char st[96];
    for (unsigned w = 0; w < d->o.workers; w++) {
        pd_demo_child *c = &d->workers[w];
        if (c->live && pd_demo_reap(c, false) && c->pid) {
            if (WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0) continue;
            pd_demo_slot *slot = &d->slots[w];
            slot->error[sizeof slot->error - 1] = '\0';
            if (WIFEXITED(c->status) && slot->error[0])
                return pd_demo_fail(d, "worker %u (pid %d) failed: %s", w,
                                    (int)c->pid, slot->error);
            return pd_demo_fail(d, "worker %u (pid %d) %s", w, (int)c->pid,
                                pd_demo_status_str(c->status, st, sizeof st));
        }
    }
    if (d->server.live && pd_demo_reap(&d->server, false))
        return pd_demo_fail(
            d, "server (pid %d) %s while the demo ran", (int)d->server.pid,
            pd_demo_status_str(d->server.status, st, sizeof st));
    return 0;
}

/* ------------------------------------------------------------ Phases */

int pd_demo_shuffle(pd_demo *d, pd_demo_phase *ph) {
    double t0 = pd_demo_now();
    uint64_t total = d->o.records;
    int rc = s_start_workers(d);
    if (rc == 0) s_report_workers(d);
    d->last_shown = t0;
    while (rc == 0) {
        if (pd_demo_stop) return PD_CLI_EXIT_INTR;
        rc = pd_demo_fail_tick(d);
        if (rc) break;
        rc = pd_demo_check_exits(d);
        if (rc) break;
        uint64_t done = 0;
        bool live = false;
        for (unsigned w = 0; w < d->o.workers; w++) {
            done +=
                atomic_load_explicit(&d->slots[w].sent, memory_order_relaxed);
            live |= d->workers[w].live;
        }
        if (!live) break;
        pd_demo_progress(d, "shuffle", done, total, "records",
                         done * d->o.recsize, t0, false);
        pd_demo_sleep_ms(20);
    }
    ph->secs = pd_demo_now() - t0;
    ph->records = total;
    ph->bytes = total * d->o.recsize;
    pd_demo_clear_line(d);
    return rc;
}

/* Checks partition p's bytes; adds what it holds to *got. */
static void s_report_workers(const pd_demo *d) {
    printf("workers:");
    for (unsigned w = 0; w < d->o.workers; w++)
        printf(" %d", (int)d->workers[w].pid);
    printf(" (pids)\n");
    fflush(stdout);
}
