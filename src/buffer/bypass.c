/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Buffer: an append batch of at least b->bypass bytes (PD__BUFFER_BYPASS
 * when slow is a Log, else never: pd__buffer_bypass_for) goes
 * straight to the slow store, in one call, instead of through fast.
 * Holding it in fast would only copy it there and spill it later: the Dict's
 * per-key work and its memory buy nothing for a batch that large.
 *
 * Order: a get returns slow's bytes, then fast's.  Keys of the batch that
 * still hold bytes in fast are therefore moved too, in the same append to
 * slow, their fast bytes before the batch's values (pd__buffer_move_batch):
 * slow's append is atomic, so a failure leaves nothing of either applied.
 * Then those keys are deleted from fast and uncounted.  A bypass is not a
 * spill (pd_buffer_spills does not count it) and leaves usage unchanged but
 * for the keys it moved.
 */
#include "buffer/buffer.h"

#include <errno.h>
#include <string.h>

#include "core/hash.h"

uint64_t pd__buffer_bypass_for(const pd_store *slow) {
    /* A Log takes a batch in one write whatever its number of keys.  A File
     * writes each key's file, so small values per key cost it more than the
     * Dict saves: measured slower from 4,096 keys a batch
     * (docs/perf-log.md).  Over a Dict (partd's own Buffer(Dict, Dict))
     * placement stays partd's: the batch in fast, then the largest keys
     * spilled.  Other stores were not measured. */
    return strcmp(pd_store_kind(slow), "log") == 0 ? PD__BUFFER_BYPASS : 0;
}

bool pd__buffer_bypass_wants(const pd__buffer *b, uint64_t incoming) {
    return b->bypass > 0 && incoming >= b->bypass;
}

int pd__buffer_bypass(pd__buffer *b, size_t n, const pd_key *keys,
                      const pd_bytes *vals, unsigned fsync) {
    pd_store *s = &b->base;
    char ks[PD__KEYSHORT_MAX];
    int rc = pd__buffer_need_slow(b);
    if (rc)
        return pd__err_wrap(s, b->slow, rc,
                            "append %s (batch of %zu) straight to slow: lock "
                            "slow",
                            pd__key_short(&keys[0], ks), n);
    /* The batch's keys with bytes in fast, each once, in batch order. */
    size_t m = 0;
    if (b->counts.count > 0) {
        size_t cap = n < b->counts.count ? n : b->counts.count;
        if (pd__grow((void **)&b->selnode, &b->selnodecap, cap,
                     sizeof *b->selnode))
            return pd__err(s, PD_ERR_NOMEM, ENOMEM,
                           "append %s (batch of %zu) straight to slow: key "
                           "table",
                           pd__key_short(&keys[0], ks), n);
        uint64_t stamp = ++b->mark;
        for (size_t i = 0; i < n && m < cap; i++) {
            pd__bcount *e =
                pd__buffer_count_find(b, &keys[i], pd__khash(&keys[i]));
            if (!e || e->mark == stamp) continue;
            e->mark = stamp;
            b->selnode[m++] = e;
        }
    }
    if (m == 0) {
        rc = pd__append_inner(b->slow, n, keys, vals, PD_NOLOCK | fsync);
        if (rc)
            return pd__err_wrap(s, b->slow, rc,
                                "append %s (batch of %zu) straight to slow",
                                pd__key_short(&keys[0], ks), n);
        pd__buffer_spilled_note(b, n, keys);
        return 0;
    }
    pd__spill_batch batch = {n, keys, vals, NULL, 0};
    bool in_slow = false;
    rc =
        pd__buffer_move_batch(b, b->selnode, m, &batch, fsync, false, &in_slow);
    if (in_slow) pd__buffer_spilled_note(b, n, keys);
    if (rc) {
        /* move_batch's error says which key and store failed; say what the
         * batch left. */
        pd__errsave sv;
        pd__err_save(s, &sv);
        const char *inner = sv.msg; /* without its "buffer: " */
        if (strncmp(inner, "buffer: ", 8) == 0) inner += 8;
        rc = pd__err(s, sv.code, 0,
                     "append %s (batch of %zu) straight to slow, after "
                     "fast's bytes of %zu of its keys: %s: %s",
                     pd__key_short(&keys[0], ks), n, m,
                     in_slow ? "the batch IS APPLIED (in slow)"
                             : "nothing applied",
                     inner);
        pd__err_set_sys(s, sv.sys);
        return rc;
    }
    for (size_t j = 0; j < m; j++) pd__buffer_count_remove(b, b->selnode[j]);
    return 0;
}
