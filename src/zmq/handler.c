/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The server's request handler: one request's frames in, store calls and
 * reply messages out through an emit callback (see WIRE PROTOCOL in
 * partd/zmq.h).  It knows nothing of sockets, so the fuzz target
 * (tests/fuzz/fuzz_server.c) drives it directly; server.c feeds it what
 * the ROUTER socket receives.
 */
#include "zmq/zmq_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void s_emit_ack(pd__handler *h) {
    pd_bytes f = {PD__WIRE_ACK, 3};
    h->emit(h->emit_arg, 1, &f);
}

void pd__handler_emit_error(pd__handler *h) {
    char code[12];
    size_t cl = pd__wire_code(h->code, code);
    pd_bytes f[3] = {{PD__WIRE_ERROR, 5}, {code, cl}, {h->msg, strlen(h->msg)}};
    h->emit(h->emit_arg, 3, f);
}

/* A get that cannot answer still sends its results message (one empty frame
 * per key, at least one) before the error, so the stream stays in step for
 * clients that read the results before the final reply. */
static void s_emit_empty_results(pd__handler *h, size_t n) {
    if (n == 0) n = 1;
    if (pd__grow((void **)&h->out, &h->outcap, n, sizeof *h->out)) {
        pd_bytes one = {"", 0};
        h->emit(h->emit_arg, 1, &one);
        return;
    }
    for (size_t i = 0; i < n; i++) h->out[i] = (pd_bytes){"", 0};
    h->emit(h->emit_arg, n, h->out);
}

/* Records the outcome of a failed request and sends its error reply. */
static int s_vfail(pd__handler *h, int code, int malformed, const char *fmt,
                   va_list ap) {
    vsnprintf(h->msg, sizeof h->msg, fmt, ap);
    h->code = code;
    h->malformed = malformed;
    pd__handler_emit_error(h);
    return code;
}

int pd__handle_fail(pd__handler *h, int code, int malformed, const char *fmt,
                    ...) {
    h->requests++;
    h->req[PD__CMD_OTHER]++;
    h->failed++;
    va_list ap;
    va_start(ap, fmt);
    s_vfail(h, code, malformed, fmt, ap);
    va_end(ap);
    return code;
}

/* Records a refusal of a malformed request and answers it. */
static int s_refuse(pd__handler *h, int code, const char *fmt, ...)
    PD__PRINTF(3, 4);
static int s_refuse(pd__handler *h, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    s_vfail(h, code, 1, fmt, ap);
    va_end(ap);
    return code;
}

/* Records a store error (the store's own message) and answers it. */
static int s_store_failed(pd__handler *h, int code) {
    snprintf(h->msg, sizeof h->msg, "%s", pd_errmsg(h->store));
    h->code = code;
    pd__handler_emit_error(h);
    return code;
}

int pd__handler_ack(pd__handler *h) {
    s_emit_ack(h);
    return 0;
}

int pd__handler_refuse(pd__handler *h, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    s_vfail(h, code, 1, fmt, ap);
    va_end(ap);
    return code;
}

static int s_no_memory(pd__handler *h, const char *cmd) {
    return s_refuse(h, PD_ERR_NOMEM, "%s: out of memory for the request", cmd);
}

/* Decodes n keys at frames[0], frames[stride], ...  0, or the refusal
 * (already answered unless `quiet`). */
static int s_keys(pd__handler *h, const char *cmd, size_t n,
                  const pd_bytes *frames, size_t stride, int quiet) {
    size_t bad = 0;
    int rc = pd__wire_keys_decode(&h->wk, n, frames, stride, &bad);
    if (rc == 0) return 0;
    if (rc == PD_ERR_NOMEM) {
        snprintf(h->msg, sizeof h->msg, "%s: out of memory for %zu keys", cmd,
                 n);
    } else {
        pd_bytes f = frames[bad * stride];
        pd_key k = PD_KEY(f.data, f.size);
        char ks[PD__KEYSHORT_MAX];
        snprintf(h->msg, sizeof h->msg,
                 "%s: key %zu %s: more than %d parts separated by \"-|-\"", cmd,
                 bad, pd__key_short(&k, ks), PD_KEY_MAX_PARTS);
    }
    h->code = rc;
    h->malformed = 1;
    if (!quiet) pd__handler_emit_error(h);
    return rc;
}

/* append / iset: payload is key, value pairs. */
static int s_pairs(pd__handler *h, const char *cmd, size_t np,
                   const pd_bytes *payload, int iset) {
    if (np % 2)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: %zu payload frames: keys and values must pair up",
                        cmd, np);
    if (iset && np == 0)
        return s_refuse(h, PD_ERR_PROTOCOL, "iset: no key and value");
    size_t n = np / 2;
    int rc = s_keys(h, cmd, n, payload, 2, 0);
    if (rc) return rc;
    if (pd__grow((void **)&h->vals, &h->valcap, n ? n : 1, sizeof *h->vals))
        return s_no_memory(h, cmd);
    for (size_t i = 0; i < n; i++) h->vals[i] = payload[2 * i + 1];
    rc = iset ? pd_iset(h->store, n, h->wk.keys, h->vals, PD_NOLOCK)
              : pd_append(h->store, n, h->wk.keys, h->vals, PD_NOLOCK);
    if (rc) return s_store_failed(h, rc);
    if (!iset) {
        h->records += n;
        for (size_t i = 0; i < n; i++) h->appended_bytes += h->vals[i].size;
    }
    s_emit_ack(h);
    return 0;
}

/* Sends h->out[0..n), whose values lie in r's buffer: its large frames
 * without a copy (the buffer goes to emit_own, r keeps none), so the
 * server holds a big value once, not twice, while it goes out. */
static void s_emit_result(pd__handler *h, size_t n, pd_result *r) {
    bool large = false;
    for (size_t i = 0; i < n && !large; i++)
        large = h->out[i].size >= PD__SERVER_SHARE_MIN;
    if (large && h->emit_own && !r->ext && r->buf) {
        void *own = r->buf;
        size_t len = r->len;
        r->buf = NULL;
        r->cap = 0;
        h->emit_own(h->emit_arg, n, h->out, own, len);
    } else {
        h->emit(h->emit_arg, n, h->out);
    }
}

static int s_get(pd__handler *h, size_t n, const pd_bytes *keys) {
    int rc;
    if (n == 0) {
        rc = s_refuse(h, PD_ERR_PROTOCOL, "get: no key");
        return rc; /* no results message: see below */
    }
    rc = s_keys(h, "get", n, keys, 1, 1);
    if (rc) {
        s_emit_empty_results(h, n);
        pd__handler_emit_error(h);
        return rc;
    }
    pd_result *r = NULL;
    rc = pd_get(h->store, n, h->wk.keys, &r, PD_NOLOCK);
    if (rc == 0 &&
        pd__grow((void **)&h->out, &h->outcap, n, sizeof *h->out) != 0) {
        pd_result_free(&r);
        snprintf(h->msg, sizeof h->msg, "get: out of memory for %zu values", n);
        h->code = PD_ERR_NOMEM;
        s_emit_empty_results(h, n);
        pd__handler_emit_error(h);
        return PD_ERR_NOMEM;
    }
    if (rc) {
        snprintf(h->msg, sizeof h->msg, "%s", pd_errmsg(h->store));
        h->code = rc;
        s_emit_empty_results(h, n);
        pd__handler_emit_error(h);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        pd_bytes v = pd_result_value(r, i);
        h->out[i] = v.size ? v : (pd_bytes){"", 0};
    }
    s_emit_result(h, n, r);
    pd_result_free(&r);
    s_emit_ack(h);
    return 0;
}

/* ------------------------------------------------------------ Packed */

/*
 * Parses the INDEX frame of a packed request (see PD__WIRE_APPEND_PACKED):
 * the keys into h->kf (pointing into the frame) and, with `data` (append),
 * the values into h->vals (pointing into the data frame), whose lengths
 * must add up to exactly its size.  Strict: every byte of the index is
 * accounted for.  *np gets the count.  0, or the refusal (answered).
 */
static int s_packed_index(pd__handler *h, const char *cmd, const pd_bytes *ix,
                          const pd_bytes *data, size_t *np) {
    const unsigned char *p = ix->data;
    size_t size = ix->size;
    size_t head = data ? 12 : 4; /* key length, [value length] */
    if (size < 4)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: the index frame has %zu bytes: truncated before "
                        "its 4-byte key count",
                        cmd, size);
    uint32_t n = pd__wire_get_u32(p);
    if (n > PD__WIRE_MAX_KEYS)
        return s_refuse(h, PD_ERR_LIMIT,
                        "%s: %" PRIu32 " keys in one request (at most %zu)",
                        cmd, n, PD__WIRE_MAX_KEYS);
    if ((size - 4) / head < n)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: the index frame has %zu bytes: truncated, too "
                        "short for %" PRIu32 " entries of at least %zu bytes",
                        cmd, size, n, head);
    if (pd__grow((void **)&h->kf, &h->kfcap, n ? n : 1, sizeof *h->kf) ||
        (data &&
         pd__grow((void **)&h->vals, &h->valcap, n ? n : 1, sizeof *h->vals)))
        return s_no_memory(h, cmd);
    const unsigned char *d = data ? data->data : NULL;
    size_t at = 4, used = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (size - at < head)
            return s_refuse(h, PD_ERR_PROTOCOL,
                            "%s: index entry %" PRIu32 " of %" PRIu32
                            " truncated at byte %zu of the %zu-byte index",
                            cmd, i, n, at, size);
        uint32_t kl = pd__wire_get_u32(p + at);
        uint64_t vl = data ? pd__wire_get_u64(p + at + 4) : 0;
        at += head;
        if (kl > size - at)
            return s_refuse(h, PD_ERR_PROTOCOL,
                            "%s: index entry %" PRIu32 " of %" PRIu32
                            ": a key of %" PRIu32
                            " bytes runs past the end of the %zu-byte index",
                            cmd, i, n, kl, size);
        h->kf[i] = (pd_bytes){kl ? p + at : (const void *)"", kl};
        at += kl;
        if (!data) continue;
        if (vl > data->size - used)
            return s_refuse(h, PD_ERR_PROTOCOL,
                            "%s: index entry %" PRIu32 " of %" PRIu32
                            ": a value of %" PRIu64 " bytes runs past the end "
                            "of the %zu-byte data frame (%zu bytes used)",
                            cmd, i, n, vl, data->size, used);
        h->vals[i] = (pd_bytes){vl ? d + used : (const void *)"", (size_t)vl};
        used += (size_t)vl;
    }
    if (at != size)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: %zu trailing bytes after the %" PRIu32
                        " entries of the index",
                        cmd, size - at, n);
    if (data && used != data->size)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: the value lengths add up to %zu bytes, the data "
                        "frame has %zu",
                        cmd, used, data->size);
    *np = n;
    return 0;
}

/* [append_packed, INDEX, DATA]: the same batch as append's. */
static int s_append_packed(pd__handler *h, size_t np, const pd_bytes *pl) {
    const char *cmd = PD__WIRE_APPEND_PACKED;
    if (np != 2)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: %zu payload frames (an index and a data frame "
                        "expected)",
                        cmd, np);
    size_t n = 0;
    int rc = s_packed_index(h, cmd, &pl[0], &pl[1], &n);
    if (!rc) rc = s_keys(h, cmd, n, h->kf, 1, 0);
    if (rc) return rc;
    rc = pd_append(h->store, n, h->wk.keys, h->vals, PD_NOLOCK);
    if (rc) return s_store_failed(h, rc);
    h->records += n;
    h->appended_bytes += pl[1].size;
    s_emit_ack(h);
    return 0;
}

/* [get_packed, INDEX, LIMIT]: results [LENGTHS, DATA...], then [ack]; a
 * failure gets its error reply alone (only our client sends it). */
static int s_get_packed(pd__handler *h, size_t np, const pd_bytes *pl) {
    const char *cmd = PD__WIRE_GET_PACKED;
    if (np != 2)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: %zu payload frames (an index and a frame limit "
                        "expected)",
                        cmd, np);
    if (pl[1].size != 8)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: the frame limit has %zu bytes (8 expected)", cmd,
                        pl[1].size);
    uint64_t limit = pd__wire_get_u64(pl[1].data);
    if (limit == 0)
        return s_refuse(h, PD_ERR_PROTOCOL, "%s: a frame limit of 0 bytes",
                        cmd);
    size_t n = 0;
    int rc = s_packed_index(h, cmd, &pl[0], NULL, &n);
    if (rc) return rc;
    if (n == 0) return s_refuse(h, PD_ERR_PROTOCOL, "%s: no key", cmd);
    rc = s_keys(h, cmd, n, h->kf, 1, 0);
    if (rc) return rc;
    pd_result *r = NULL;
    rc = pd_get(h->store, n, h->wk.keys, &r, PD_NOLOCK);
    if (rc) return s_store_failed(h, rc);
    uint64_t total = r->off[r->count] - r->off[0];
    uint64_t nd = total ? (total - 1) / limit + 1 : 1;
    if (nd > PD__WIRE_MAX_FRAMES) {
        pd_result_free(&r);
        return s_refuse(h, PD_ERR_LIMIT,
                        "%s: %" PRIu64 " bytes of values in frames of at most "
                        "%" PRIu64 " bytes: over %zu frames",
                        cmd, total, limit, PD__WIRE_MAX_FRAMES);
    }
    if (pd__grow((void **)&h->out, &h->outcap, (size_t)nd + 1,
                 sizeof *h->out) ||
        pd__grow((void **)&h->nums, &h->numcap, 4 + 8 * n, 1)) {
        pd_result_free(&r);
        return s_no_memory(h, cmd);
    }
    pd__wire_put_u32(h->nums, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        pd__wire_put_u64(h->nums + 4 + 8 * i, pd_result_value(r, i).size);
    h->out[0] = (pd_bytes){h->nums, 4 + 8 * n};
    /* The values are one run of the result's buffer, in order. */
    const char *d = total ? r->buf + r->off[0] : "";
    for (uint64_t k = 0; k < nd; k++) {
        uint64_t off = k * limit;
        uint64_t len = total - off < limit ? total - off : limit;
        h->out[1 + k] = (pd_bytes){d + off, (size_t)len};
    }
    s_emit_result(h, (size_t)nd + 1, r);
    pd_result_free(&r);
    s_emit_ack(h);
    return 0;
}

static int s_keys_cmd(pd__handler *h) {
    pd_keylist *kl = NULL;
    int rc = pd_keys(h->store, &kl, PD_NOLOCK);
    if (rc) return s_store_failed(h, rc);
    size_t n = kl->count, nf, nb;
    /* frames: count, then packed key and size per key */
    if (pd__mul_ovf(n, 2, &nf) || pd__add_ovf(nf, 1, &nf) ||
        pd__mul_ovf(n + 1, 8, &nb) ||
        pd__grow((void **)&h->out, &h->outcap, nf, sizeof *h->out) ||
        pd__grow((void **)&h->nums, &h->numcap, nb, 1)) {
        pd_keylist_free(&kl);
        return s_no_memory(h, "keys");
    }
    pd__wire_put_u64(h->nums, n);
    h->out[0] = (pd_bytes){h->nums, 8};
    for (size_t i = 0; i < n; i++) {
        const pd__klent *e = &kl->ent[i];
        pd__wire_put_u64(h->nums + 8 * (i + 1), e->size);
        h->out[1 + 2 * i] = (pd_bytes){kl->buf + e->off, e->len};
        h->out[2 + 2 * i] = (pd_bytes){h->nums + 8 * (i + 1), 8};
    }
    h->emit(h->emit_arg, nf, h->out);
    pd_keylist_free(&kl);
    s_emit_ack(h);
    return 0;
}

int pd__handler_stats(pd__handler *h, pd_server_stats *st, unsigned flags) {
    size_t size = st->size;
    memset(st, 0, sizeof *st);
    st->size = size;
    pd_keylist *kl = NULL;
    int rc = pd_keys(h->store, &kl, flags);
    if (rc) return rc;
    st->keys = pd_keylist_count(kl);
    for (size_t i = 0; i < st->keys; i++) st->bytes += pd_keylist_size(kl, i);
    pd_keylist_free(&kl);
    st->records = h->records;
    st->appended_bytes = h->appended_bytes;
    st->requests = h->requests;
    st->failed = h->failed;
    uint64_t *req[PD__CMD_N] = {
        &st->req_syn,    &st->req_append,  &st->req_get,  &st->req_iset,
        &st->req_delete, &st->req_drop,    &st->req_keys, &st->req_stats,
        &st->req_close,  &st->req_attempt, &st->req_other};
    for (int i = 0; i < PD__CMD_N; i++) *req[i] = h->req[i];
    if (strcmp(pd_store_kind(h->store), "buffer") == 0) {
        st->buffer = 1;
        st->memory = pd_buffer_memory_usage(h->store);
        st->memory_limit = pd_buffer_memory_limit(h->store);
        st->spills = pd_buffer_spills(h->store);
    }
    st->rss = pd__rss_bytes();
    st->clients = h->req[PD__CMD_SYN];
    st->connections = h->connections;
    if (h->start_ms) st->uptime_ms = (uint64_t)(pd__now_ms() - h->start_ms);
    st->attempts_open = h->natt;
    st->attempts_committed = h->att_committed;
    st->attempts_aborted = h->att_aborted;
    st->attempts_conflicted = h->att_conflicted;
    st->attempts_expired = h->att_expired;
    return 0;
}

/* stats: [name, 8-byte value] per figure, then [ack]. */
static int s_stats_cmd(pd__handler *h) {
    pd_server_stats st = {.size = sizeof st};
    int rc = pd__handler_stats(h, &st, PD_NOLOCK);
    if (rc) return s_store_failed(h, rc);
    size_t nf = 2 * pd__nstat_fields;
    if (pd__grow((void **)&h->out, &h->outcap, nf, sizeof *h->out) ||
        pd__grow((void **)&h->nums, &h->numcap, 8 * pd__nstat_fields, 1))
        return s_no_memory(h, "stats");
    for (size_t i = 0; i < pd__nstat_fields; i++) {
        const pd__stat_field *f = &pd__stat_fields[i];
        uint64_t v;
        memcpy(&v, (const char *)&st + f->off, sizeof v);
        pd__wire_put_u64(h->nums + 8 * i, v);
        h->out[2 * i] = (pd_bytes){f->name, strlen(f->name)};
        h->out[2 * i + 1] = (pd_bytes){h->nums + 8 * i, 8};
    }
    h->emit(h->emit_arg, nf, h->out);
    s_emit_ack(h);
    return 0;
}

/* The attempt_* command frame f names, or NULL. */
static const char *s_attempt_cmd(const pd_bytes *f) {
    static const char *const names[] = {"attempt_begin", "attempt_append",
                                        "attempt_commit", "attempt_abort"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (pd__wire_is(f, names[i])) return names[i];
    return NULL;
}

/* The counted command of a request. */
static int s_cmd_index(size_t n, const pd_bytes *frames) {
    static const char *const names[PD__CMD_ATTEMPT] = {
        "syn",  "append", "get",   "iset", "delete",
        "drop", "keys",   "stats", "close"};
    if (n == 0 || n > PD__WIRE_MAX_FRAMES) return PD__CMD_OTHER;
    for (int i = 0; i < PD__CMD_ATTEMPT; i++)
        if (pd__wire_is(&frames[0], names[i])) return i;
    if (s_attempt_cmd(&frames[0])) return PD__CMD_ATTEMPT;
    /* The packed forms count as the requests they stand for. */
    if (pd__wire_is(&frames[0], PD__WIRE_APPEND_PACKED)) return PD__CMD_APPEND;
    if (pd__wire_is(&frames[0], PD__WIRE_GET_PACKED)) return PD__CMD_GET;
    return PD__CMD_OTHER;
}

static int s_dispatch(pd__handler *h, size_t n, const pd_bytes *frames);

int pd__handle(pd__handler *h, size_t n, const pd_bytes *frames) {
    h->requests++;
    h->req[s_cmd_index(n, frames)]++;
    int rc = s_dispatch(h, n, frames);
    if (rc < 0) h->failed++;
    return rc;
}

static int s_dispatch(pd__handler *h, size_t n, const pd_bytes *frames) {
    h->code = 0;
    h->malformed = 0;
    h->msg[0] = '\0';
    if (n == 0) return s_refuse(h, PD_ERR_PROTOCOL, "empty request");
    const pd_bytes *cmd = &frames[0];
    const pd_bytes *pl = frames + 1;
    size_t np = n - 1;
    if (n > PD__WIRE_MAX_FRAMES)
        return s_refuse(h, PD_ERR_LIMIT,
                        "request of %zu frames (at most %zu: %zu keys)", n,
                        PD__WIRE_MAX_FRAMES, PD__WIRE_MAX_KEYS);
    int rc;
    if (pd__wire_is(cmd, "append")) return s_pairs(h, "append", np, pl, 0);
    if (pd__wire_is(cmd, "get")) return s_get(h, np, pl);
    if (pd__wire_is(cmd, PD__WIRE_APPEND_PACKED))
        return s_append_packed(h, np, pl);
    if (pd__wire_is(cmd, PD__WIRE_GET_PACKED)) return s_get_packed(h, np, pl);
    if (pd__wire_is(cmd, "syn")) {
        s_emit_ack(h);
        return 0;
    }
    if (pd__wire_is(cmd, "iset")) return s_pairs(h, "iset", np, pl, 1);
    if (pd__wire_is(cmd, "delete")) {
        rc = s_keys(h, "delete", np, pl, 1, 0);
        if (rc) return rc;
        rc = pd_delete(h->store, np, h->wk.keys, PD_NOLOCK);
        if (rc) return s_store_failed(h, rc);
        s_emit_ack(h);
        return 0;
    }
    if (pd__wire_is(cmd, "drop")) {
        rc = pd_drop(h->store, PD_NOLOCK);
        if (rc) return s_store_failed(h, rc);
        s_emit_ack(h);
        return 0;
    }
    const char *acmd = s_attempt_cmd(cmd);
    if (acmd) return pd__handle_attempt(h, acmd, np, pl);
    if (pd__wire_is(cmd, "keys")) return s_keys_cmd(h);
    if (pd__wire_is(cmd, "stats")) return s_stats_cmd(h);
    if (pd__wire_is(cmd, "lease")) return pd__handle_lease(h, np, pl);
    if (pd__wire_is(cmd, "close")) {
        if (h->flags & PD_SERVER_NO_CLOSE)
            return s_refuse(h, PD_ERR_UNSUPPORTED,
                            "close: this server does not take the close "
                            "command (PD_SERVER_NO_CLOSE)");
        s_emit_ack(h);
        return PD__HANDLE_CLOSE;
    }
    char cn[48];
    return s_refuse(h, PD_ERR_PROTOCOL, "unknown command %s",
                    pd__wire_cmd_name(cmd, cn));
}

void pd__handler_fini(pd__handler *h) {
    pd__handler_leases_free(h);
    pd__handler_attempts_close(h);
    pd__wkeys_free(&h->wk);
    free(h->kf);
    h->kf = NULL;
    h->kfcap = 0;
    free(h->vals);
    free(h->out);
    free(h->nums);
    h->vals = h->out = NULL;
    h->nums = NULL;
    h->valcap = h->outcap = h->numcap = 0;
}
