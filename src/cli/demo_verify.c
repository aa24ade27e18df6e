/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * `partd demo`: reading every partition back (see demo.c).  Each holds
 * whole records of its own, as many as the workers wrote to it, whose
 * hashes add up to the sum the workers counted; the store holds nothing
 * else.
 */
#include "demo_int.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>

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
    for (size_t off = 0; off < v.size; off += B) {
        const unsigned char *rec = data + off;
        uint64_t key = pd_demo_load64(rec), g = pd_demo_load64(rec + 8);
        if (pd_demo_part_of(key, d->o.parts) != p || g >= d->o.records)
            return pd_demo_fail(
                d,
                "verify: partition p%05u, record %zu (offset %zu): "
                "not a record of this partition (key %#" PRIx64
                ", index %" PRIu64 ")",
                p, off / B, off, key, g);
        got->count++;
        got->sum += pd_demo_hash(rec, B);
    }
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

/* Partitions [p, end) of a get: as many as hold (by the workers' counts)
 * S_READ_BUDGET bytes in all, at least one; *bytes: how many. */
static unsigned s_read_batch(const pd_demo *d, unsigned p, uint64_t *bytesp) {
    const unsigned P = d->o.parts;
    uint64_t bytes = 0;
    unsigned q = p;
    while (q < P) {
        uint64_t n = 0;
        for (unsigned w = 0; w < d->o.workers; w++)
            n += d->expect[(size_t)w * P + q].count;
        n *= d->o.recsize;
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

/* Reads every partition back and compares it with what the workers wrote;
 * with the server, then asks it to stop (it flushes its Buffer to DIR).
 * One get holds as many partitions as fit in S_READ_BUDGET bytes, as the
 * workers' appends hold every partition: at 65,536 partitions a get per
 * partition through the server costs a round trip per 6 KB. */
int pd_demo_read_back(pd_demo *d, pd_demo_phase *ph, uint64_t *nkeys) {
    pd_store *s = NULL, *client = NULL;
    char why[768];
    double t0 = pd_demo_now();
    const unsigned P = d->o.parts;
    ph->bytes = ph->records = 0;
    d->last_shown = t0;
    pd_key *keys = calloc(P, sizeof *keys);
    char(*names)[8] = calloc(P, sizeof *names);
    if (!keys || !names) {
        free(keys);
        free(names);
        return pd_demo_fail(d, "read: out of memory");
    }
    for (unsigned p = 0; p < P; p++) {
        pd_demo_part_name(p, names[p]);
        keys[p] = PD_KEY(names[p], 6);
    }
    if (pd_demo_open_store(d, &s, &client, why, sizeof why)) {
        free(keys);
        free(names);
        return pd_demo_fail(d, "read: %s", why);
    }
    int rc = 0;
    void *buf = NULL;
    size_t cap = 0;
    for (unsigned p = 0; p < P && rc == 0;) {
        if (pd_demo_stop) {
            rc = PD_CLI_EXIT_INTR;
            break;
        }
        if ((rc = pd_demo_check_exits(d))) break;
        uint64_t want;
        unsigned q = s_read_batch(d, p, &want);
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
            rc = s_verify_part(d, ph, i, pd_result_value(r, i - p));
        pd_result_free(&r);
        p = q;
        pd_demo_progress(d, "read", p, P, "partitions", ph->bytes, t0, false);
    }
    free(buf);
    free(keys);
    free(names);
    /* Nothing but the partitions. */
    pd_keylist *kl = NULL;
    if (rc == 0 && pd_keys(s, &kl, 0) != 0)
        rc = pd_demo_fail(d, "read: keys: %s", pd_errmsg(s));
    if (rc == 0) {
        *nkeys = pd_keylist_count(kl);
        for (size_t i = 0; i < *nkeys && rc == 0; i++) {
            pd_key k;
            if (pd_keylist_key(kl, i, &k) == 0 && pd_demo_is_part_key(&k, P))
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
    pd_demo_clear_line(d);
    if (client && rc == 0 && pd_client_close_server(client) != 0)
        rc = pd_demo_fail(d, "stop the server: %s", pd_errmsg(client));
    if (pd_close(&s) != 0 && rc == 0)
        rc = pd_demo_fail(d, "read: close: %s", pd_errmsg(NULL));
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
