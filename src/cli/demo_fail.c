/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * `partd demo --attempts` and `--fail-workers K`: retried writers.
 *
 * With attempts, worker w writes its share as one attempt of writer "w"
 * (its index in decimal), attempt 1: nothing of it is visible until it
 * commits, at the end.  With --fail-workers K, K workers picked at random
 * (from the seed) each get a kill point, a random count of records within
 * their share: on reaching it the worker stops and waits, and the
 * coordinator kills it with SIGKILL (its appends in flight and its open
 * attempt are left as a crash leaves them) and forks it again as attempt
 * 2, which writes the whole share.  The killed attempt never committed, so
 * the store must discard it; the read-back then checks that every
 * partition holds exactly what the last attempts wrote.  A commit that
 * finds another attempt of its writer committed first (PD_ERR_CONFLICT)
 * leaves that one's records, which are the same: the worker counts the
 * conflict and exits 0.
 */
#include "demo_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/wait.h>

void pd_demo_writer(unsigned w, char buf[16]) { snprintf(buf, 16, "%u", w); }

int pd_demo_sink_begin(const pd_demo *d, unsigned w, pd_demo_sink *k,
                       pd_store *s, char *why, size_t cap) {
    k->s = s;
    k->a = NULL;
    if (!d->o.attempts) return 0;
    char wn[16];
    pd_demo_writer(w, wn);
    pd_key writer = PD_KEY(wn, strlen(wn));
    unsigned att = d->slots[w].attempt;
    if (pd_attempt_begin(s, &writer, att, &k->a, 0) != 0) {
        snprintf(why, cap, "begin attempt %u of writer %s: %s", att, wn,
                 pd_errmsg(s));
        return -1;
    }
    return 0;
}

int pd_demo_sink_append(pd_demo_sink *k, size_t n, const pd_key *keys,
                        const pd_bytes *vals) {
    return k->a ? pd_attempt_append(k->a, n, keys, vals, 0)
                : pd_append(k->s, n, keys, vals, 0);
}

int pd_demo_sink_end(const pd_demo *d, unsigned w, pd_demo_sink *k, char *why,
                     size_t cap) {
    if (!k->a) return 0;
    unsigned att = d->slots[w].attempt;
    int rc = pd_attempt_commit(&k->a, 0);
    if (rc == PD_ERR_CONFLICT) {
        atomic_fetch_add(&d->slots[w].conflicts, 1);
        return 0;
    }
    if (rc) {
        snprintf(why, cap, "commit attempt %u of writer %u: %s", att, w,
                 pd_errmsg(k->s));
        return -1;
    }
    return 0;
}

void pd_demo_kill_point(pd_demo *d, unsigned w, uint64_t sent) {
    pd_demo_slot *slot = &d->slots[w];
    if (!slot->kill_at || sent < slot->kill_at) return;
    atomic_store(&slot->at_kill, 1);
    for (;;) pd_demo_sleep_ms(1000); /* until the SIGKILL */
}

void pd_demo_fail_plan(pd_demo *d) {
    for (unsigned w = 0; w < d->o.workers; w++) {
        d->slots[w].attempt = 1;
        d->slots[w].kill_at = 0;
    }
    /* K distinct workers: a partial Fisher-Yates shuffle of the indexes. */
    unsigned idx[PD_DEMO_MAX_WORKERS];
    for (unsigned w = 0; w < d->o.workers; w++) idx[w] = w;
    uint64_t x = d->o.seed ^ 0x6a09e667f3bcc909u;
    for (unsigned i = 0; i < d->o.fail_workers; i++) {
        x = pd_demo_mix(x + 0x9e3779b97f4a7c15u);
        unsigned j = i + (unsigned)(x % (d->o.workers - i));
        unsigned t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        unsigned w = idx[i];
        uint64_t lo = d->o.records * w / d->o.workers;
        uint64_t hi = d->o.records * (w + 1) / d->o.workers;
        /* A point within the share, past its first record: the worker
         * stops at the first batch that reaches it (at the latest, at the
         * end of its share, before its commit). */
        x = pd_demo_mix(x + 0x9e3779b97f4a7c15u);
        uint64_t share = hi - lo;
        d->slots[w].kill_at = share > 1 ? 1 + x % (share - 1) : 1;
    }
}

int pd_demo_fail_tick(pd_demo *d) {
    for (unsigned w = 0; w < d->o.workers; w++) {
        pd_demo_slot *slot = &d->slots[w];
        pd_demo_child *c = &d->workers[w];
        if (!c->live || !atomic_load(&slot->at_kill)) continue;
        if (kill(c->pid, SIGKILL) != 0 && errno != ESRCH)
            return pd_demo_fail(d, "kill worker %u (pid %d): %s", w,
                                (int)c->pid, strerror(errno));
        pd_demo_reap(c, true);
        if (!WIFSIGNALED(c->status) || WTERMSIG(c->status) != SIGKILL) {
            char st[96];
            return pd_demo_fail(
                d, "worker %u (pid %d) %s before it could be killed", w,
                (int)c->pid, pd_demo_status_str(c->status, st, sizeof st));
        }
        d->killed++;
        if (!d->o.quiet) {
            pd_demo_clear_line(d);
            fprintf(stderr,
                    "partd: demo: killed worker %u (pid %d, attempt %u) "
                    "with SIGKILL after %" PRIu64
                    " records; running its share again as attempt %u\n",
                    w, (int)c->pid, slot->attempt, atomic_load(&slot->sent),
                    slot->attempt + 1);
        }
        slot->attempt++;
        slot->kill_at = 0;
        atomic_store(&slot->at_kill, 0);
        atomic_store(&slot->sent, 0);
        int rc = pd_demo_start_worker(d, w);
        if (rc) return rc;
    }
    return 0;
}

void pd_demo_fail_report(const pd_demo *d) {
    if (!d->o.attempts) return;
    unsigned conflicts = 0;
    for (unsigned w = 0; w < d->o.workers; w++)
        conflicts += (unsigned)atomic_load(&d->slots[w].conflicts);
    unsigned n = d->o.workers + d->killed;
    printf("attempts: %u (one per worker, %u run again after SIGKILL); %u "
           "discarded: %u killed before their commit, %u commits refused "
           "(an earlier attempt of the writer committed first)\n",
           n, d->killed, d->killed + conflicts, d->killed, conflicts);
}
