/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The server's writer attempts (docs/zmq.md, "Attempts"): the four
 * requests attempt_begin, attempt_append, attempt_commit and attempt_abort,
 * and the table of open attempts (pd_attempt handles on the served store).
 * Each open attempt has a token, a 64-bit id this server gave it at the
 * begin (random at the first, then counting); every later request names
 * it by (writer, attempt, token) and the table is keyed by the token, so
 * the same (writer, attempt) begun twice (a retry that cannot know the
 * first run is dead) is two attempts, as on the store itself, and a
 * restarted server knows none of its predecessor's.
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
#include <unistd.h>

struct pd__hatt {
    UT_hash_handle hh;
    uint64_t token; /* the table key: this server's id of the attempt */
    pd_attempt *a;
    int64_t last_ms;         /* its last request */
    uint64_t records, bytes; /* appended, counted in stats at commit */
    uint64_t attempt;
    size_t wlen;
    unsigned char w[]; /* the writer's wire form */
};

/* The bounds: the handler's, or the defaults when it set none. */
static size_t s_max(const pd__handler *h) {
    return h->att_max ? h->att_max : PD__ATTEMPTS_MAX;
}
static int64_t s_idle(const pd__handler *h) {
    return h->att_idle_ms ? h->att_idle_ms : PD__ATTEMPT_IDLE_MS;
}

/* A new token: random at the first, then counting, so a restarted server
 * (or another one at the address) does not know an earlier one's. */
static uint64_t s_token(pd__handler *h) {
    if (!h->att_next) {
        uint64_t seed = 0;
        if (getentropy(&seed, sizeof seed) != 0)
            seed = (uint64_t)pd__now_ms() ^ ((uint64_t)getpid() << 32);
        h->att_next = seed | 1;
    }
    return h->att_next++;
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

/* Aborts every attempt idle for s_idle (all of them with `all`). */
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

static int s_failed(pd__handler *h, int code, const char *cmd, const char *name,
                    const char *why) {
    snprintf(h->msg, sizeof h->msg, "%s %s: %s", cmd, name, why);
    h->code = code;
    h->malformed = 0;
    pd__handler_emit_error(h);
    return code;
}

/* A store error: its message, in reply. */
static int s_store_failed(pd__handler *h, pd_store *st, int code) {
    snprintf(h->msg, sizeof h->msg, "%s", st ? pd_errmsg(st) : pd_errmsg(NULL));
    h->code = code;
    h->malformed = 0;
    pd__handler_emit_error(h);
    return code;
}

static void s_ack(pd__handler *h) {
    pd_bytes f = {PD__WIRE_ACK, 3};
    h->emit(h->emit_arg, 1, &f);
}

/* The open attempt named by (w, att, token), or NULL after answering that
 * this server has none. */
static struct pd__hatt *s_find(pd__handler *h, const char *cmd,
                               const pd_bytes *w, uint64_t att,
                               uint64_t token) {
    struct pd__hatt *e = NULL;
    HASH_FIND(hh, h->att, &token, sizeof token, e);
    if (e && e->attempt == att && e->wlen == w->size &&
        (w->size == 0 || memcmp(e->w, w->data, w->size) == 0)) {
        e->last_ms = pd__now_ms();
        return e;
    }
    char nm[96];
    s_failed(h, PD_ERR_MISUSE, cmd, s_name(w, att, nm),
             "is not open on this server (" PD__ATTEMPT_LOST_WHY ")");
    return NULL;
}

/* attempt_begin W A: [token] then [ack]. */
static int s_begin(pd__handler *h, const pd_bytes *w, uint64_t att) {
    char nm[96];
    s_name(w, att, nm);
    if (h->natt >= s_max(h)) s_sweep(h, false);
    if (h->natt >= s_max(h)) {
        char why[192];
        snprintf(why, sizeof why,
                 "%zu attempts are open, the most this server keeps: commit "
                 "or abort some (an idle one is aborted after %lld s)",
                 h->natt, (long long)(s_idle(h) / 1000));
        return s_failed(h, PD_ERR_LIMIT, "attempt_begin", nm, why);
    }
    size_t bad = 0;
    int rc = pd__wire_keys_decode(&h->wk, 1, w, 1, &bad);
    if (rc == PD_ERR_NOMEM)
        return s_refuse(h, rc, "attempt_begin: out of memory");
    if (rc)
        return s_refuse(h, rc,
                        "attempt_begin %s: the writer has more than %d parts",
                        nm, PD_KEY_MAX_PARTS);
    struct pd__hatt *e = calloc(1, sizeof *e + w->size);
    if (!e) return s_refuse(h, PD_ERR_NOMEM, "attempt_begin: out of memory");
    rc = pd_attempt_begin(h->store, &h->wk.keys[0], att, &e->a, PD_NOLOCK);
    if (rc) {
        free(e);
        return s_store_failed(h, h->store, rc);
    }
    e->attempt = att;
    e->wlen = w->size;
    if (w->size) memcpy(e->w, w->data, w->size);
    e->last_ms = pd__now_ms();
    e->token = s_token(h);
    HASH_ADD(hh, h->att, token, sizeof e->token, e);
    if (!e->hh.tbl) { /* HASH_NONFATAL_OOM: left out */
        pd_attempt_abort(&e->a);
        free(e);
        return s_refuse(h, PD_ERR_NOMEM, "attempt_begin: out of memory");
    }
    h->natt++;
    unsigned char t8[8];
    pd__wire_put_u64(t8, e->token);
    pd_bytes f = {t8, 8};
    h->emit(h->emit_arg, 1, &f);
    s_ack(h);
    return 0;
}

static int s_append(pd__handler *h, struct pd__hatt *e, size_t np,
                    const pd_bytes *pl) {
    size_t n = np / 2;
    size_t bad = 0;
    int rc = pd__wire_keys_decode(&h->wk, n, pl, 2, &bad);
    if (rc)
        return s_refuse(h, rc, "attempt_append: key %zu: %s", bad,
                        rc == PD_ERR_NOMEM ? "out of memory"
                                           : "more than PD_KEY_MAX_PARTS "
                                             "parts separated by \"-|-\"");
    if (pd__grow((void **)&h->vals, &h->valcap, n ? n : 1, sizeof *h->vals))
        return s_refuse(h, PD_ERR_NOMEM, "attempt_append: out of memory");
    for (size_t i = 0; i < n; i++) h->vals[i] = pl[2 * i + 1];
    rc = pd_attempt_append(e->a, n, h->wk.keys, h->vals, PD_NOLOCK);
    if (rc) return s_store_failed(h, h->store, rc);
    e->records += n;
    for (size_t i = 0; i < n; i++) e->bytes += h->vals[i].size;
    s_ack(h);
    return 0;
}

static int s_commit(pd__handler *h, struct pd__hatt *e, unsigned flags) {
    uint64_t records = e->records, bytes = e->bytes;
    int rc = pd_attempt_commit(&e->a, flags | PD_NOLOCK);
    s_remove(h, e); /* committed or not, the attempt is gone */
    if (rc == PD_ERR_CONFLICT) h->att_conflicted++;
    if (rc) return s_store_failed(h, h->store, rc);
    h->att_committed++;
    h->records += records;
    h->appended_bytes += bytes;
    s_ack(h);
    return 0;
}

int pd__handle_attempt(pd__handler *h, const char *cmd, size_t np,
                       const pd_bytes *pl) {
    bool begin = strcmp(cmd, "attempt_begin") == 0;
    size_t head = begin ? 2 : 3; /* writer, attempt[, token] */
    if (np < head)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: %zu payload frames (the writer, the 8-byte "
                        "attempt number%s come first)",
                        cmd, np, begin ? "" : " and the 8-byte token");
    if (pl[1].size != 8 || (!begin && pl[2].size != 8))
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "%s: the %s is a frame of %zu bytes (an 8-byte "
                        "little-endian integer)",
                        cmd, pl[1].size != 8 ? "attempt number" : "token",
                        pl[1].size != 8 ? pl[1].size : pl[2].size);
    uint64_t att = pd__wire_get_u64(pl[1].data);
    if (h->natt && pd__now_ms() - h->att_swept_ms >= 1000) s_sweep(h, false);
    if (begin) {
        if (np != 2)
            return s_refuse(h, PD_ERR_PROTOCOL,
                            "attempt_begin: %zu payload frames (the writer "
                            "and the attempt number)",
                            np);
        return s_begin(h, &pl[0], att);
    }
    uint64_t token = pd__wire_get_u64(pl[2].data);
    size_t rest = np - 3;
    const pd_bytes *more = pl + 3;
    if (strcmp(cmd, "attempt_append") == 0) {
        if (rest % 2)
            return s_refuse(h, PD_ERR_PROTOCOL,
                            "attempt_append: %zu frames after the writer, "
                            "attempt and token: keys and values must pair up",
                            rest);
        struct pd__hatt *e = s_find(h, cmd, &pl[0], att, token);
        return e ? s_append(h, e, rest, more) : h->code;
    }
    if (strcmp(cmd, "attempt_commit") == 0) {
        unsigned flags = 0;
        if (rest == 1 && pd__wire_is(&more[0], "fsync"))
            flags = PD_FSYNC;
        else if (rest != 0)
            return s_refuse(h, PD_ERR_PROTOCOL,
                            "attempt_commit: %zu payload frames (writer, "
                            "attempt, token and an optional \"fsync\")",
                            np);
        struct pd__hatt *e = s_find(h, cmd, &pl[0], att, token);
        return e ? s_commit(h, e, flags) : h->code;
    }
    /* attempt_abort: aborting what is not open (any more) is done. */
    if (rest != 0)
        return s_refuse(h, PD_ERR_PROTOCOL,
                        "attempt_abort: %zu payload frames (writer, attempt "
                        "and token)",
                        np);
    struct pd__hatt *e = NULL;
    HASH_FIND(hh, h->att, &token, sizeof token, e);
    if (e && e->attempt == att && e->wlen == pl[0].size &&
        (e->wlen == 0 || memcmp(e->w, pl[0].data, e->wlen) == 0)) {
        pd_attempt_abort(&e->a);
        s_remove(h, e);
        h->att_aborted++;
    }
    s_ack(h);
    return 0;
}
