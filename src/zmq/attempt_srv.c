/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The server's writer attempts (docs/zmq.md, "Attempts"): the four
 * requests attempt_begin, attempt_append, attempt_commit and attempt_abort,
 * and the table of open attempts (pd_attempt handles on the served store)
 * keyed by (writer, attempt).
 *
 * The table is bounded (PD__ATTEMPTS_MAX; a begin past it is refused with
 * PD_ERR_LIMIT).  ZeroMQ's stable API does not tell the server which peer
 * left, so an attempt whose client vanished is aborted when no request of
 * it came for h->att_idle_ms (PD__ATTEMPT_IDLE_MS), and every attempt still
 * open is aborted when the server stops.  Either way nothing of it is
 * committed: a client that comes back gets "not open on this server" and
 * must run the attempt again.
 */
#include "zmq/zmq_internal.h"

#include "core/hash.h"

#include <stdlib.h>
#include <string.h>

struct pd__hatt {
    UT_hash_handle hh;
    pd_attempt *a;
    int64_t last_ms;        /* its last request */
    uint64_t records, bytes; /* appended, counted in stats at commit */
    size_t klen;
    unsigned char key[]; /* 8-byte attempt, then the writer's wire form */
};

/* The bounds: the handler's, or the defaults when it set none. */
static size_t s_max(const pd__handler *h) {
    return h->att_max ? h->att_max : PD__ATTEMPTS_MAX;
}
static int64_t s_idle(const pd__handler *h) {
    return h->att_idle_ms ? h->att_idle_ms : PD__ATTEMPT_IDLE_MS;
}

/* The table key of (writer frame, attempt frame) into h->akey. */
static int s_akey(pd__handler *h, const pd_bytes *w, const pd_bytes *att,
                  size_t *len) {
    *len = 8 + w->size;
    if (pd__grow((void **)&h->akey, &h->akeycap, *len, 1)) return -1;
    memcpy(h->akey, att->data, 8);
    if (w->size) memcpy(h->akey + 8, w->data, w->size);
    return 0;
}

/* "writer 'w' attempt 3" for messages. */
static const char *s_name(const pd_bytes *w, uint64_t att, char buf[96]) {
    char wn[48];
    snprintf(buf, 96, "writer %s attempt %llu", pd__wire_cmd_name(w, wn),
             (unsigned long long)att);
    return buf;
}

static void s_remove(pd__handler *h, struct pd__hatt *e) {
    HASH_DEL(h->att, e);
    h->natt--;
    free(e);
}

/* Aborts every attempt idle for att_idle_ms (all of them with `all`). */
static void s_sweep(pd__handler *h, bool all) {
    int64_t now = pd__now_ms();
    h->att_swept_ms = now;
    struct pd__hatt *e, *tmp;
    HASH_ITER(hh, h->att, e, tmp) {
        if (!all && now - e->last_ms < s_idle(h)) continue;
        pd_attempt_abort(&e->a);
        if (all)
            h->att_aborted++;
        else
            h->att_expired++;
        s_remove(h, e);
    }
}

void pd__handler_attempts_close(pd__handler *h) { s_sweep(h, true); }

uint64_t pd__handler_attempts_open(const pd__handler *h) { return h->natt; }

static int s_refuse(pd__handler *h, int code, const char *fmt, ...)
    PD__PRINTF(3, 4);
static int s_refuse(pd__handler *h, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->msg, sizeof h->msg, fmt, ap);
    va_end(ap);
    h->code = code;
    h->malformed = 1;
    pd__handler_emit_error(h);
    return code;
}

static int s_failed(pd__handler *h, int code, const char *cmd,
                    const char *name, const char *why) {
    snprintf(h->msg, sizeof h->msg, "%s %s: %s", cmd, name, why);
    h->code = code;
    h->malformed = 0;
    pd__handler_emit_error(h);
    return code;
}

static void s_ack(pd__handler *h) {
    pd_bytes f = {PD__WIRE_ACK, 3};
    h->emit(h->emit_arg, 1, &f);
}

/* The entry of an open attempt, or NULL after answering that it is not. */
static struct pd__hatt *s_find(pd__handler *h, const char *cmd,
                               const pd_bytes *w, uint64_t att, char nm[96]) {
    size_t klen;
    struct pd__hatt *e = NULL;
    unsigned char a8[8];
    pd__wire_put_u64(a8, att);
    if (s_akey(h, w, &(pd_bytes){a8, 8}, &klen)) {
        s_refuse(h, PD_ERR_NOMEM, "%s: out of memory for the request", cmd);
        return NULL;
    }
    HASH_FIND(hh, h->att, h->akey, klen, e);
    if (e) {
        e->last_ms = pd__now_ms();
        return e;
    }
    s_failed(h, PD_ERR_MISUSE, cmd, s_name(w, att, nm),
             "is not open on this server (" PD__ATTEMPT_LOST_WHY ")");
    return NULL;
}

static int s_begin(pd__handler *h, const pd_bytes *w, uint64_t att,
                   unsigned flags) {
    char nm[96];
    s_name(w, att, nm);
    size_t klen;
    unsigned char a8[8];
    pd__wire_put_u64(a8, att);
    if (s_akey(h, w, &(pd_bytes){a8, 8}, &klen))
        return s_refuse(h, PD_ERR_NOMEM, "attempt_begin: out of memory");
    struct pd__hatt *e = NULL;
    HASH_FIND(hh, h->att, h->akey, klen, e);
    if (e)
        return s_failed(h, PD_ERR_MISUSE, "attempt_begin", nm,
                        "is open already (one process per attempt: a retry "
                        "takes a new attempt number)");
    if (h->natt >= s_max(h)) s_sweep(h, false);
    if (h->natt >= s_max(h)) {
        char why[160];
        snprintf(why, sizeof why,
                 "%zu attempts are open, the most this server keeps: commit "
                 "or abort some (an idle one is aborted after %lld s)",
                 h->natt, (long long)(s_idle(h) / 1000));
        return s_failed(h, PD_ERR_LIMIT, "attempt_begin", nm, why);
    }
    size_t bad = 0;
    int rc = pd__wire_keys_decode(&h->wk, 1, w, 1, &bad);
    if (rc)
        return s_failed(h, rc, "attempt_begin", nm,
                        rc == PD_ERR_NOMEM ? "out of memory"
                                           : "the writer key has too many "
                                             "parts");
    e = calloc(1, sizeof *e + klen);
    if (!e) return s_refuse(h, PD_ERR_NOMEM, "attempt_begin: out of memory");
    rc = pd_attempt_begin(h->store, &h->wk.keys[0], att, &e->a,
                          flags | PD_NOLOCK);
    if (rc) {
        free(e);
        snprintf(h->msg, sizeof h->msg, "%s", pd_errmsg(h->store));
        h->code = rc;
        pd__handler_emit_error(h);
        return rc;
    }
    e->klen = klen;
    memcpy(e->key, h->akey, klen);
    e->last_ms = pd__now_ms();
    HASH_ADD_KEYPTR(hh, h->att, e->key, e->klen, e);
    if (!e->hh.tbl) { /* HASH_NONFATAL_OOM: left out */
        pd_attempt_abort(&e->a);
        free(e);
        return s_refuse(h, PD_ERR_NOMEM, "attempt_begin: out of memory");
    }
    h->natt++;
    s_ack(h);
    return 0;
}

static int s_append(pd__handler *h, const pd_bytes *w, uint64_t att,
                    size_t np, const pd_bytes *pl) {
    char nm[96];
    if (np % 2)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "attempt_append: %zu payload frames after the writer "
                        "and attempt: keys and values must pair up",
                        np);
    struct pd__hatt *e = s_find(h, "attempt_append", w, att, nm);
    if (!e) return h->code;
    size_t n = np / 2;
    size_t bad = 0;
    int rc = pd__wire_keys_decode(&h->wk, n, pl, 2, &bad);
    if (rc)
        return s_refuse(h, rc, "attempt_append: key %zu: %s", bad,
                        rc == PD_ERR_NOMEM ? "out of memory"
                                           : "more than PD_KEY_MAX_PARTS parts");
    if (pd__grow((void **)&h->vals, &h->valcap, n ? n : 1, sizeof *h->vals))
        return s_refuse(h, PD_ERR_NOMEM, "attempt_append: out of memory");
    for (size_t i = 0; i < n; i++) h->vals[i] = pl[2 * i + 1];
    rc = pd_attempt_append(e->a, n, h->wk.keys, h->vals, PD_NOLOCK);
    if (rc) {
        snprintf(h->msg, sizeof h->msg, "%s", pd_errmsg(h->store));
        h->code = rc;
        pd__handler_emit_error(h);
        return rc;
    }
    e->records += n;
    for (size_t i = 0; i < n; i++) e->bytes += h->vals[i].size;
    s_ack(h);
    return 0;
}

static int s_commit(pd__handler *h, const pd_bytes *w, uint64_t att,
                    unsigned flags) {
    char nm[96];
    struct pd__hatt *e = s_find(h, "attempt_commit", w, att, nm);
    if (!e) return h->code;
    uint64_t records = e->records, bytes = e->bytes;
    pd_store *st = pd_attempt_store(e->a);
    int rc = pd_attempt_commit(&e->a, flags | PD_NOLOCK);
    s_remove(h, e); /* committed or not, the handle is gone */
    if (rc == PD_ERR_CONFLICT) h->att_conflicted++;
    if (rc) {
        snprintf(h->msg, sizeof h->msg, "%s", pd_errmsg(st));
        h->code = rc;
        pd__handler_emit_error(h);
        return rc;
    }
    h->att_committed++;
    h->records += records;
    h->appended_bytes += bytes;
    s_ack(h);
    return 0;
}

int pd__handle_attempt(pd__handler *h, const char *cmd, size_t np,
                       const pd_bytes *pl) {
    if (np < 2)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: %zu payload frames (the writer and the 8-byte "
                        "attempt number come first)",
                        cmd, np);
    if (pl[1].size != 8)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: the attempt number is a frame of %zu bytes (an "
                        "8-byte little-endian integer)",
                        cmd, pl[1].size);
    uint64_t att = pd__wire_get_u64(pl[1].data);
    if (h->natt && pd__now_ms() - h->att_swept_ms >= 1000) s_sweep(h, false);
    if (strcmp(cmd, "attempt_append") == 0)
        return s_append(h, &pl[0], att, np - 2, pl + 2);
    unsigned flags = 0;
    bool is_commit = strcmp(cmd, "attempt_commit") == 0;
    if (is_commit || strcmp(cmd, "attempt_begin") == 0) {
        /* An optional last frame "fsync" asks for PD_FSYNC. */
        if (np == 3 && pd__wire_is(&pl[2], "fsync"))
            flags = PD_FSYNC;
        else if (np != 2)
            return s_refuse(h, PD_ERR_PROTOCOL,
                            "%s: %zu payload frames (writer, attempt and "
                            "an optional \"fsync\")",
                            cmd, np);
        return is_commit ? s_commit(h, &pl[0], att, flags)
                         : s_begin(h, &pl[0], att, flags);
    }
    /* attempt_abort: aborting what is not open (any more) is done. */
    if (np != 2)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: %zu payload frames (writer and attempt)", cmd, np);
    size_t klen;
    if (s_akey(h, &pl[0], &pl[1], &klen))
        return s_refuse(h, PD_ERR_NOMEM, "%s: out of memory", cmd);
    struct pd__hatt *e = NULL;
    HASH_FIND(hh, h->att, h->akey, klen, e);
    if (e) {
        pd_attempt_abort(&e->a);
        s_remove(h, e);
        h->att_aborted++;
    }
    s_ack(h);
    return 0;
}
