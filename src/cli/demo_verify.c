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
#include <sys/wait.h>

/* For the server to flush its Buffer to disk and exit after `close`. */
#define S_SERVER_STOP_S 300.0

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
        if (key % d->o.parts != p || g >= d->o.records)
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

/* Reads every partition back and compares it with what the workers wrote;
 * with the server, then asks it to stop (it flushes its Buffer to DIR). */
int pd_demo_read_back(pd_demo *d, pd_demo_phase *ph, uint64_t *nkeys) {
    pd_store *s = NULL, *client = NULL;
    char why[768];
    double t0 = pd_demo_now();
    const unsigned P = d->o.parts;
    ph->bytes = ph->records = 0;
    d->last_shown = t0;
    if (pd_demo_open_store(d, &s, &client, why, sizeof why))
        return pd_demo_fail(d, "read: %s", why);
    int rc = 0;
    for (unsigned p = 0; p < P && rc == 0; p++) {
        if (pd_demo_stop) {
            rc = PD_CLI_EXIT_INTR;
            break;
        }
        if ((rc = pd_demo_check_exits(d))) break;
        char name[8];
        pd_demo_part_name(p, name);
        pd_key k = PD_KEY(name, 6);
        pd_result *r = NULL;
        if (pd_get(s, 1, &k, &r, 0) != 0) {
            rc = pd_demo_fail(d, "read: get %s: %s", name, pd_errmsg(s));
            break;
        }
        pd_bytes v = pd_result_value(r, 0);
        pd_demo_sum got = {0, 0}, want = {0, 0};
        rc = s_check_part(d, p, v, &got);
        pd_result_free(&r);
        if (rc) break;
        for (unsigned w = 0; w < d->o.workers; w++) {
            want.count += d->expect[(size_t)w * P + p].count;
            want.sum += d->expect[(size_t)w * P + p].sum;
        }
        if (got.count != want.count)
            rc = pd_demo_fail(d,
                              "verify: partition %s holds %" PRIu64
                              " records, %" PRIu64 " were written to it",
                              name, got.count, want.count);
        else if (got.sum != want.sum)
            rc = pd_demo_fail(d,
                              "verify: partition %s: checksum %#" PRIx64
                              ", expected %#" PRIx64
                              ": its records are not those written",
                              name, got.sum, want.sum);
        ph->records += got.count;
        ph->bytes += v.size;
        pd_demo_progress(d, "read", p + 1, P, "partitions", ph->bytes, t0,
                         false);
    }
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
