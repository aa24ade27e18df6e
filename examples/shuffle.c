/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * A multiprocess shuffle through a libpartd server, in two pages: what
 * `partd demo` does, with the public API only.
 *
 * The parent forks WORKERS processes, then opens a server (by default a
 * Buffer over a Dict and a File in a temporary directory) listening on an
 * ipc socket in a private directory.  Each worker generates its share of the
 * records, sends each to partition key % PARTS through its own client, in
 * batches, and records, per partition, how many records it sent and the sum of
 * their hashes.  The parent then reads every partition back through a client
 * and checks both.  Built and run by CTest as example_shuffle; exits non-zero
 * if anything is not as expected.
 *
 *   example_shuffle [RECORDS]      (default 200000 records of 100 bytes)
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1 /* MAP_ANONYMOUS and kill() under -std=c11 */
#endif
#include <partd/partd.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 4
#define PARTS 16
#define RECSIZE 100 /* bytes per record: 8-byte key, 8-byte index, payload */
#define BATCH 640   /* records per append: 64000 bytes */

/* What the workers sent to each partition; in memory shared with them. */
typedef struct expect {
    uint64_t count[WORKERS][PARTS];
    uint64_t sum[WORKERS][PARTS];
} expect;

static uint64_t mix(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* Record number i: a random key, the index, then bytes made from the key. */
static void make_record(uint64_t i, unsigned char *rec) {
    uint64_t key = mix(i + 1);
    memcpy(rec, &key, 8);
    memcpy(rec + 8, &i, 8);
    for (int j = 16; j < RECSIZE; j++) rec[j] = (unsigned char)(key >> j % 64);
}

static uint64_t record_key(const unsigned char *rec) {
    uint64_t key;
    memcpy(&key, rec, 8);
    return key;
}

/* A hash of a whole record; a partition's checksum is the sum of its
 * records' hashes, so it does not depend on the order they arrived in. */
static uint64_t record_hash(const unsigned char *rec) {
    uint64_t h = 0;
    for (int j = 0; j < RECSIZE; j++) h = mix(h ^ rec[j]);
    return h;
}

/* One worker: records [lo, hi) into per-partition batches, each sent in
 * one pd_append when full; the rest in one last append of all keys. */
static int worker(const char *address, int w, uint64_t lo, uint64_t hi,
                  expect *e) {
    static unsigned char buf[PARTS][BATCH * RECSIZE];
    size_t len[PARTS] = {0};
    char names[PARTS][8];
    pd_key keys[PARTS];
    pd_bytes vals[PARTS];
    pd_store *client = NULL;

    for (int p = 0; p < PARTS; p++) {
        snprintf(names[p], sizeof names[p], "p%02d", p);
        keys[p] = PD_KEY(names[p], strlen(names[p]));
    }
    /* A client made in this process: its own connection to the server. */
    if (pd_client_open(&client, address, NULL) != 0) {
        fprintf(stderr, "worker %d: %s\n", w, pd_errmsg(NULL));
        return 1;
    }
    for (uint64_t i = lo; i < hi; i++) {
        unsigned char rec[RECSIZE];
        make_record(i, rec);
        int p = (int)(record_key(rec) % PARTS);
        memcpy(buf[p] + len[p], rec, RECSIZE);
        len[p] += RECSIZE;
        e->count[w][p]++;
        e->sum[w][p] += record_hash(rec);
        if (len[p] == sizeof buf[p]) {
            vals[0] = PD_BYTES(buf[p], len[p]);
            /* Returns once sent; the next call reads the server's reply. */
            if (pd_append(client, 1, &keys[p], vals, 0) != 0) goto fail;
            len[p] = 0;
        }
    }
    int n = 0;
    pd_key rest[PARTS];
    for (int p = 0; p < PARTS; p++) {
        if (!len[p]) continue;
        rest[n] = keys[p];
        vals[n++] = PD_BYTES(buf[p], len[p]);
    }
    if (n && pd_append(client, (size_t)n, rest, vals, 0) != 0) goto fail;
    /* Waits for the last reply: a failed append is reported here. */
    if (pd_client_sync(client) != 0) goto fail;
    return pd_close(&client) == 0 ? 0 : 1;
fail:
    fprintf(stderr, "worker %d: %s\n", w, pd_errmsg(client));
    pd_close(&client);
    return 1;
}

/* Reads every partition back and checks it against what was sent. */
static int verify(const char *address, const expect *e, uint64_t records) {
    pd_store *client = NULL;
    uint64_t total = 0;
    int bad = 0;
    if (pd_client_open(&client, address, NULL) != 0) {
        fprintf(stderr, "reader: %s\n", pd_errmsg(NULL));
        return 1;
    }
    for (int p = 0; p < PARTS && !bad; p++) {
        char name[8];
        snprintf(name, sizeof name, "p%02d", p);
        pd_key key = PD_KEY(name, strlen(name));
        pd_result *r = NULL;
        if (pd_get(client, 1, &key, &r, 0) != 0) {
            fprintf(stderr, "get %s: %s\n", name, pd_errmsg(client));
            bad = 1;
            break;
        }
        pd_bytes v = pd_result_value(r, 0);
        const unsigned char *data = v.data;
        uint64_t count = 0, sum = 0, want_count = 0, want_sum = 0;
        for (size_t off = 0; off + RECSIZE <= v.size; off += RECSIZE) {
            count++;
            sum += record_hash(data + off);
            if (record_key(data + off) % PARTS != (uint64_t)p) bad = 1;
        }
        for (int w = 0; w < WORKERS; w++) {
            want_count += e->count[w][p];
            want_sum += e->sum[w][p];
        }
        if (v.size % RECSIZE || count != want_count || sum != want_sum) bad = 1;
        printf("%s: %6llu records, checksum %016llx%s\n", name,
               (unsigned long long)count, (unsigned long long)sum,
               bad ? "  WRONG" : "");
        total += count;
        pd_result_free(&r);
    }
    if (!bad && total != records) bad = 1;
    pd_close(&client);
    return bad;
}

int main(int argc, char **argv) {
    uint64_t records = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    pd_server *srv = NULL;
    pid_t pids[WORKERS];
    int bad = 0;

    /* Anonymous shared memory: the workers write, the parent reads. */
    expect *e = mmap(NULL, sizeof *e, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (e == MAP_FAILED) return 1;
    memset(e, 0, sizeof *e);

    /* The workers are forked first, before this process has any ZeroMQ
     * thread (a child of a multithreaded process may only make
     * async-signal-safe calls), so the address is chosen up front: an ipc
     * socket in a new private directory.  Their requests wait until the
     * server listens. */
    char dir[] = "/tmp/partd-shuffle-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char address[64];
    snprintf(address, sizeof address, "ipc://%s/sock", dir);
    printf("server at %s\n", address);
    fflush(stdout);
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        if (pids[w] == 0)
            _exit(worker(address, w, records * (uint64_t)w / WORKERS,
                         records * (uint64_t)(w + 1) / WORKERS, e));
        if (pids[w] < 0) {
            perror("fork");
            bad = 1;
        }
    }

    const char *binds[1] = {address};
    pd_server_opts opts = {0};
    opts.bind = binds;
    opts.nbind = 1;
    opts.log_level = PD_LOG_WARN; /* no "listening" and "stopped" lines */
    if (pd_server_open(&srv, NULL, &opts) != 0) {
        fprintf(stderr, "server: %s\n", pd_errmsg(NULL));
        for (int w = 0; w < WORKERS; w++)
            if (pids[w] > 0) kill(pids[w], SIGKILL);
        for (int w = 0; w < WORKERS; w++)
            if (pids[w] > 0) waitpid(pids[w], NULL, 0);
        rmdir(dir);
        return 1;
    }
    /* Requests wait in the socket until the server runs. */
    if (pd_server_start(srv) != 0) {
        fprintf(stderr, "server: %s\n", pd_errmsg(NULL));
        for (int w = 0; w < WORKERS; w++)
            if (pids[w] > 0) kill(pids[w], SIGKILL); /* else they wait */
        bad = 1;
    }
    for (int w = 0; w < WORKERS; w++) {
        int status;
        if (pids[w] > 0 && (waitpid(pids[w], &status, 0) != pids[w] ||
                            !WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
            fprintf(stderr, "worker %d failed\n", w);
            bad = 1;
        }
    }
    if (!bad) bad = verify(address, e, records);
    printf("%llu records through %d workers into %d partitions: %s\n",
           (unsigned long long)records, WORKERS, PARTS, bad ? "FAILED" : "OK");

    /* Stops the server (which removes its socket file), then closes its
     * store: the store's temporary directory goes with it. */
    if (pd_server_close(&srv) != 0) {
        fprintf(stderr, "server: %s\n", pd_errmsg(NULL));
        bad = 1;
    }
    if (rmdir(dir) != 0) {
        perror(dir);
        bad = 1;
    }
    munmap(e, sizeof *e);
    return bad;
}
