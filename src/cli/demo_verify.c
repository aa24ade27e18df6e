/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * `partd demo`: reading every partition back (see demo.c).  Each holds
 * whole records of its own, as many as the workers wrote to it, whose
 * hashes add up to the sum the workers counted; the store holds nothing
 * else.  The reading is done by reader processes in parallel (a shuffle's
 * reducers), each a contiguous share of the partitions, forked with
 * pd_demo_fork as the workers are; each reports on a pipe of its own.
 */
#include "demo_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* For the server to flush its Buffer to disk and exit after `close`. */
#define S_SERVER_STOP_S 300.0
/* Most bytes of partitions per get of the read phase (the append budget). */
#define S_READ_BUDGET ((uint64_t)16 << 20)

static int s_check_part(pd_demo *d, unsigned p, pd_bytes v, pd_demo_sum *got) {
    const size_t B = d->o.recsize;
    const unsigned char *data = v.data;
    if (v.size % B)
        return pd_demo_fail(
            d,
            "verify: partition p%05u holds %zu bytes, not a whole "
            "number of %zu-byte records",
            p, v.size, B);
    /* Each record's key and index, and its hash, PD_DEMO_LANES records at
     * a time (demo_int.h). */
    enum { L = PD_DEMO_LANES };
    const size_t n = v.size / B;
    uint64_t h[L], sum = 0;
    for (size_t i = 0; i < n; i += L) {
        size_t lanes = n - i < L ? n - i : L;
        for (size_t j = i; j < i + lanes; j++) {
            const unsigned char *rec = data + j * B;
            uint64_t key = pd_demo_load64(rec), g = pd_demo_load64(rec + 8);
            if (pd_demo_part_of(key, d->o.parts) != p || g >= d->o.records)
                return pd_demo_fail(
                    d,
                    "verify: partition p%05u, record %zu (offset %zu): "
                    "not a record of this partition (key %#" PRIx64
                    ", index %" PRIu64 ")",
                    p, j, j * B, key, g);
        }
        if (lanes == L) {
            pd_demo_hash_lanes(data + i * B, B, h, L);
            for (unsigned l = 0; l < L; l++) sum += h[l];
        } else {
            for (size_t j = i; j < n; j++) {
                pd_demo_hash_lanes(data + j * B, B, h, 1);
                sum += h[0];
            }
        }
    }
    got->count += n;
    got->sum += sum;
    return 0;
}

/* Checks partition p's bytes v against what the workers wrote to it. */
static int s_verify_part(pd_demo *d, pd_demo_phase *ph, unsigned p,
                         pd_bytes v) {
    const unsigned P = d->o.parts;
    char name[8];
    pd_demo_part_name(p, name);
    pd_demo_sum got = {0, 0}, want = {0, 0};
    int rc = s_check_part(d, p, v, &got);
    if (rc) return rc;
    for (unsigned w = 0; w < d->o.workers; w++) {
        want.count += d->expect[(size_t)w * P + p].count;
        want.sum += d->expect[(size_t)w * P + p].sum;
    }
    if (got.count != want.count)
        return pd_demo_fail(d,
                            "verify: partition %s holds %" PRIu64
                            " records, %" PRIu64 " were written to it",
                            name, got.count, want.count);
    if (got.sum != want.sum)
        return pd_demo_fail(d,
                            "verify: partition %s: checksum %#" PRIx64
                            ", expected %#" PRIx64
                            ": its records are not those written",
                            name, got.sum, want.sum);
    ph->records += got.count;
    ph->bytes += v.size;
    return 0;
}

/* The bytes the workers wrote to partition p, by their counts. */
static uint64_t s_part_bytes(const pd_demo *d, unsigned p) {
    uint64_t n = 0;
    for (unsigned w = 0; w < d->o.workers; w++)
        n += d->expect[(size_t)w * d->o.parts + p].count;
    return n * d->o.recsize;
}

/* Partitions [p, q) of a get, q <= end: as many as hold (by the workers'
 * counts) S_READ_BUDGET bytes in all, at least one; *bytes: how many. */
static unsigned s_read_batch(const pd_demo *d, unsigned p, unsigned end,
                             uint64_t *bytesp) {
    uint64_t bytes = 0;
    unsigned q = p;
    while (q < end) {
        uint64_t n = s_part_bytes(d, q);
        if (q > p && bytes + n > S_READ_BUDGET) break;
        bytes += n;
        q++;
    }
    *bytesp = bytes;
    return q;
}

/* The read buffer: at least `need` bytes (and a little slack: a store may
 * ask more room than the values' size), page-aligned (the kernel copies into
 * a buffer just past a page boundary several times slower:
 * docs/perf-notes.md).  Reused from get to get, so the pages are faulted in
 * once, not once per partition.  false when out of memory (then the get
 * allocates its own). */
static bool s_read_buf(void **buf, size_t *cap, uint64_t need) {
    if (need <= *cap) return true;
    if (need > SIZE_MAX / 2) return false;
    size_t want = ((size_t)need + need / 16 + 65535) & ~(size_t)65535;
    void *p = aligned_alloc(4096, want);
    if (!p) return false;
    free(*buf);
    *buf = p;
    *cap = want;
    return true;
}

/* A reader's report to the coordinator, on its pipe: its progress after
 * each get, then S_DONE, or S_FAIL followed by `len` bytes of its message.
 * Each is written in one write() of at most PIPE_BUF bytes. */
enum { S_PROGRESS = 1, S_DONE, S_FAIL };
typedef struct s_msg {
    uint32_t kind, len;
    uint64_t parts, records, bytes; /* so far */
} s_msg;
#define S_MSG_TEXT 1023 /* most bytes of a message: d->failure's */

/* The coordinator's side of reader r: partitions [p0, p1), the read end of
 * its pipe, what arrived on it. */
typedef struct s_rd {
    unsigned p0, p1;
    int fd; /* -1: closed */
    bool done;
    s_msg last;
    char text[S_MSG_TEXT + 1];
    unsigned char in[sizeof(s_msg) + S_MSG_TEXT];
    size_t len;
} s_rd;

static void s_send(int fd, uint32_t kind, const pd_demo_phase *ph,
                   uint64_t parts, const char *text) {
    unsigned char m[sizeof(s_msg) + S_MSG_TEXT];
    s_msg h = {kind, 0, parts, ph->records, ph->bytes};
    if (text) {
        size_t n = strlen(text);
        h.len = (uint32_t)(n < S_MSG_TEXT ? n : S_MSG_TEXT);
        memcpy(m + sizeof h, text, h.len);
    }
    memcpy(m, &h, sizeof h);
    size_t n = sizeof h + h.len, off = 0;
    while (off < n) { /* a pipe takes it whole; a loop all the same */
        ssize_t w = write(fd, m + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(PD_CLI_EXIT_FAIL); /* the coordinator is gone */
        off += (size_t)w;
    }
}

/* A reader's store, in its child.  With --direct --store log, the Log the
 * coordinator holds, inherited through fork() with its index of every key
 * (the library gives the child lock and state descriptors of its own), and
 * an Encode layer over it with --codec: a Log opened anew would read every
 * segment's key tables to build that index again, in every reader (at
 * 65,536 partitions most of a reader's time, docs/perf-log.md).  Else
 * a store of its own: the File(s), or a client of the server. */
static int s_reader_store(pd_demo *d, pd_store **s) {
    char why[768];
    pd_store *client = NULL;
    if (!d->hold) {
        if (pd_demo_open_store(d, s, &client, why, sizeof why))
            return pd_demo_fail(d, "read: %s", why);
        return 0;
    }
    *s = d->hold;
    pd_store *inner = d->hold;
    if (d->o.codec &&
        pd_compress_open(s, &inner, d->o.codec, d->o.level, PD_BORROW) != 0)
        return pd_demo_fail(d, "read: open the store: %s", pd_errmsg(NULL));
    return 0;
}

/* A reader, in its child: reads partitions [p0, p1) through its store
 * (s_reader_store), as many per get as hold S_READ_BUDGET bytes, verifies
 * each and reports on fd; returns its exit status. */
static int s_reader(pd_demo *d, unsigned p0, unsigned p1, int fd) {
    pd_store *s = NULL;
    pd_demo_phase ph = {0, 0, 0};
    const unsigned P = d->o.parts;
    pd_key *keys = calloc(P, sizeof *keys);
    char(*names)[8] = calloc(P, sizeof *names);
    int rc = 0;
    if (!keys || !names) rc = pd_demo_fail(d, "read: out of memory");
    for (unsigned p = p0; rc == 0 && p < p1; p++) {
        pd_demo_part_name(p, names[p]);
        keys[p] = PD_KEY(names[p], 6);
    }
    if (rc == 0) rc = s_reader_store(d, &s);
    void *buf = NULL;
    size_t cap = 0;
    for (unsigned p = p0; p < p1 && rc == 0;) {
        uint64_t want;
        unsigned q = s_read_batch(d, p, p1, &want);
        if (!s_read_buf(&buf, &cap, want)) {
            free(buf);
            buf = NULL;
            cap = 0;
        }
        pd_result *r = NULL;
        if (pd_get_into(s, q - p, keys + p, buf, cap, &r, 0) != 0) {
            if (q - p == 1)
                rc =
                    pd_demo_fail(d, "read: get %s: %s", names[p], pd_errmsg(s));
            else
                rc = pd_demo_fail(d, "read: get %s..%s (%u partitions): %s",
                                  names[p], names[q - 1], q - p, pd_errmsg(s));
            break;
        }
        for (unsigned i = p; i < q && rc == 0; i++)
            rc = s_verify_part(d, &ph, i, pd_result_value(r, i - p));
        pd_result_free(&r);
        p = q;
        if (rc == 0) s_send(fd, S_PROGRESS, &ph, p - p0, NULL);
    }
    free(buf);
    free(keys);
    free(names);
    /* Not the coordinator's Log (its copy goes with this process). */
    if (s && s != d->hold && pd_close(&s) != 0 && rc == 0)
        rc = pd_demo_fail(d, "read: close: %s", pd_errmsg(NULL));
    if (rc)
        s_send(fd, S_FAIL, &ph, 0, d->failure);
    else
        s_send(fd, S_DONE, &ph, p1 - p0, NULL);
    return rc ? PD_CLI_EXIT_FAIL : PD_CLI_EXIT_OK;
}

/* Reads what reader r sent (its pipe is non-blocking); closes the pipe at
 * its end. */
static void s_drain(s_rd *rd) {
    while (rd->fd >= 0) {
        ssize_t n = read(rd->fd, rd->in + rd->len, sizeof rd->in - rd->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {
            close(rd->fd);
            rd->fd = -1;
            return;
        }
        rd->len += (size_t)n;
        for (;;) {
            s_msg h;
            if (rd->len < sizeof h) break;
            memcpy(&h, rd->in, sizeof h);
            if (h.len > S_MSG_TEXT) h.len = S_MSG_TEXT; /* cannot be sent */
            size_t whole = sizeof h + h.len;
            if (rd->len < whole) break;
            rd->last = h;
            if (h.kind == S_FAIL) {
                memcpy(rd->text, rd->in + sizeof h, h.len);
                rd->text[h.len] = '\0';
            }
            if (h.kind == S_DONE || h.kind == S_FAIL) rd->done = true;
            memmove(rd->in, rd->in + whole, rd->len - whole);
            rd->len -= whole;
        }
    }
}

/* Reader r ended (reaped): a failure unless it exited 0 after S_DONE. */
static int s_reader_ended(pd_demo *d, unsigned r, s_rd *rd) {
    const pd_demo_child *c = &d->readers[r];
    s_drain(rd); /* what it sent before it exited is in the pipe */
    bool exit0 = WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
    if (exit0 && rd->done && rd->last.kind == S_DONE) return 0;
    if (WIFEXITED(c->status) && rd->done && rd->last.kind == S_FAIL)
        return pd_demo_fail(d, "%s", rd->text); /* its message, as it is */
    char st[96], a[8], b[8];
    pd_demo_part_name(rd->p0, a);
    pd_demo_part_name(rd->p1 - 1, b);
    return pd_demo_fail(
        d, "reader %u (pid %d), reading partitions %s..%s, %s%s", r,
        (int)c->pid, a, b, pd_demo_status_str(c->status, st, sizeof st),
        exit0 ? " without its report" : "");
}

/* Splits the partitions into d->nreaders contiguous shares of about the
 * same weight, a partition's weight its expected bytes plus one record (so
 * that empty partitions are spread too); each share holds one at least. */
static void s_shares(const pd_demo *d, s_rd *rds) {
    const unsigned P = d->o.parts, R = d->nreaders;
    uint64_t total = 0;
    for (unsigned p = 0; p < P; p++) total += s_part_bytes(d, p) + d->o.recsize;
    uint64_t acc = 0;
    unsigned p = 0;
    for (unsigned r = 0; r < R; r++) {
        rds[r].p0 = p;
        if (r == R - 1) {
            p = P;
        } else {
            /* Up to the share's end, leaving a partition for each reader
             * after it. */
            uint64_t end = (uint64_t)((double)total * (r + 1) / R);
            do {
                acc += s_part_bytes(d, p) + d->o.recsize;
                p++;
            } while (p < P - (R - 1 - r) && acc < end);
        }
        rds[r].p1 = p;
    }
}

/* Prints the readers' pids, as the workers'. */
static void s_report_readers(const pd_demo *d) {
    printf("readers:");
    for (unsigned r = 0; r < d->nreaders; r++)
        printf(" %d", (int)d->readers[r].pid);
    printf(" (pids)\n");
    fflush(stdout);
}

/* Forks the readers, each with its share and its pipe; 0 or 1. */
static int s_start_readers(pd_demo *d, s_rd *rds) {
    for (unsigned r = 0; r < d->nreaders; r++) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            return pd_demo_fail(d, "read: pipe: %s", strerror(errno));
        rds[r].fd = fds[0];
        pid_t pid = pd_demo_fork(d, &d->readers[r]);
        if (pid < 0) {
            int e = errno;
            close(fds[1]);
            return pd_demo_fail(d, "fork (reader %u): %s", r, strerror(e));
        }
        if (pid == 0) {
            /* The other readers' pipes are theirs. */
            for (unsigned i = 0; i <= r; i++) close(rds[i].fd);
            int rc = s_reader(d, rds[r].p0, rds[r].p1, fds[1]);
            fflush(NULL);
            _exit(rc);
        }
        close(fds[1]);
        (void)fcntl(fds[0], F_SETFL, O_NONBLOCK);
    }
    return 0;
}

/* Waits for the readers, drawing progress; stops at the first failure. */
static int s_wait_readers(pd_demo *d, s_rd *rds, pd_demo_phase *ph, double t0) {
    const unsigned R = d->nreaders;
    struct pollfd pf[PD_DEMO_MAX_WORKERS];
    for (;;) {
        if (pd_demo_stop) return PD_CLI_EXIT_INTR;
        nfds_t n = 0;
        for (unsigned r = 0; r < R; r++)
            if (rds[r].fd >= 0) pf[n++] = (struct pollfd){rds[r].fd, POLLIN, 0};
        if (n)
            (void)poll(pf, n, 20);
        else
            pd_demo_sleep_ms(20);
        bool live = false;
        uint64_t parts = 0;
        ph->records = ph->bytes = 0;
        for (unsigned r = 0; r < R; r++) {
            s_drain(&rds[r]);
            pd_demo_child *c = &d->readers[r];
            if (c->live && pd_demo_reap(c, false)) {
                int rc = s_reader_ended(d, r, &rds[r]);
                if (rc) return rc;
            }
            live |= c->live;
            parts += rds[r].last.parts;
            ph->records += rds[r].last.records;
            ph->bytes += rds[r].last.bytes;
        }
        char st[96];
        if (d->server.live && pd_demo_reap(&d->server, false))
            return pd_demo_fail(
                d, "server (pid %d) %s while the demo ran", (int)d->server.pid,
                pd_demo_status_str(d->server.status, st, sizeof st));
        if (!live) return 0;
        pd_demo_progress(d, "read", parts, d->o.parts, "partitions", ph->bytes,
                         t0, false);
    }
}

/* Checks that the store holds nothing but the partitions: the Log the
 * coordinator holds (before the readers: they inherit the index this
 * builds), else a store opened here after the readers (a client of the
 * server: the readers are forked before this process touches ZeroMQ),
 * then asks the server to stop (it flushes its Buffer to DIR).  ph->secs:
 * the read phase's time, up to there. */
static int s_check_keys(pd_demo *d, uint64_t *nkeys, pd_demo_phase *ph,
                        double t0) {
    pd_store *s = d->hold, *client = NULL;
    char why[768];
    if (!s && pd_demo_open_store(d, &s, &client, why, sizeof why))
        return pd_demo_fail(d, "read: %s", why);
    int rc = 0;
    pd_keylist *kl = NULL;
    if (pd_keys(s, &kl, 0) != 0)
        rc = pd_demo_fail(d, "read: keys: %s", pd_errmsg(s));
    if (rc == 0) {
        *nkeys = pd_keylist_count(kl);
        for (size_t i = 0; i < *nkeys && rc == 0; i++) {
            pd_key k;
            if (pd_keylist_key(kl, i, &k) == 0 &&
                pd_demo_is_part_key(&k, d->o.parts))
                continue;
            char repr[64];
            pd_key_repr(&k, repr, sizeof repr);
            rc = pd_demo_fail(d,
                              "verify: the store holds a key %s that is no "
                              "partition's",
                              repr);
        }
    }
    pd_keylist_free(&kl);
    ph->secs = pd_demo_now() - t0;
    /* A temporary Log about to be removed is dropped first, as --direct
     * does: the server's close would compact it, as its last handle, for
     * nobody. */
    if (client && rc == 0 && pd_demo_drops_served(d) && pd_drop(client, 0))
        rc = pd_demo_fail(d, "drop the store: %s", pd_errmsg(client));
    if (client && rc == 0 && pd_client_close_server(client) != 0)
        rc = pd_demo_fail(d, "stop the server: %s", pd_errmsg(client));
    if (s != d->hold && pd_close(&s) != 0 && rc == 0)
        rc = pd_demo_fail(d, "read: close: %s", pd_errmsg(NULL));
    return rc;
}

/* Reads every partition back and compares it with what the workers wrote:
 * as many readers as workers (fewer when there are fewer partitions), each
 * a process with its own store handle (a File or Log, or a client of the
 * server) reading a contiguous share of the partitions, as a shuffle's
 * reducers do.  Then checks the store's keys from here and stops the
 * server.  The readers are forked before this process opens a client, so
 * none inherits a ZeroMQ context. */
int pd_demo_read_back(pd_demo *d, pd_demo_phase *ph, uint64_t *nkeys) {
    double t0 = pd_demo_now();
    ph->bytes = ph->records = 0;
    d->last_shown = t0;
    d->nreaders = d->o.workers < d->o.parts ? d->o.workers : d->o.parts;
    d->readers = calloc(d->nreaders, sizeof *d->readers);
    s_rd *rds = calloc(d->nreaders, sizeof *rds);
    if (!d->readers || !rds) {
        free(rds);
        d->nreaders = 0;
        return pd_demo_fail(d, "read: out of memory");
    }
    for (unsigned r = 0; r < d->nreaders; r++) rds[r].fd = -1;
    s_shares(d, rds);
    /* --direct: the workers' process group is gone with them. */
    if (!d->server.live) d->pgid = 0;
    int rc = d->hold ? s_check_keys(d, nkeys, ph, t0) : 0;
    if (rc == 0) rc = s_start_readers(d, rds);
    if (rc == 0) {
        s_report_readers(d);
        rc = s_wait_readers(d, rds, ph, t0);
    }
    for (unsigned r = 0; r < d->nreaders; r++)
        if (rds[r].fd >= 0) close(rds[r].fd);
    free(rds);
    pd_demo_clear_line(d);
    if (d->hold)
        ph->secs = pd_demo_now() - t0;
    else if (rc == 0)
        rc = s_check_keys(d, nkeys, ph, t0);
    return rc;
}

/* Waits for the server to exit after `close` (it flushes to disk). */
int pd_demo_wait_server(pd_demo *d, double *secs) {
    double t0 = pd_demo_now();
    while (!pd_demo_reap(&d->server, false)) {
        if (pd_demo_stop) return PD_CLI_EXIT_INTR;
        if (pd_demo_now() - t0 > S_SERVER_STOP_S)
            return pd_demo_fail(d,
                                "server (pid %d) did not exit %.0f s after "
                                "`close`",
                                (int)d->server.pid, S_SERVER_STOP_S);
        pd_demo_sleep_ms(10);
    }
    *secs = pd_demo_now() - t0;
    char st[96];
    if (!WIFEXITED(d->server.status) || WEXITSTATUS(d->server.status) != 0)
        return pd_demo_fail(
            d, "server (pid %d) %s", (int)d->server.pid,
            pd_demo_status_str(d->server.status, st, sizeof st));
    return 0;
}
