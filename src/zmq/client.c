/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The ZeroMQ Client: a pd_store whose calls run on a Server (ours or
 * Python partd's), over a DEALER socket.  See partd/zmq.h.  This file has
 * its store ops and public calls; the connection, the requests in flight
 * and the reading of their replies are in client_pipe.c.
 */
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const pd_store_ops s_client_ops;

/* The wire has no flags: a client cannot make the server fsync, and must
 * not pretend it did. */
static int s_no_fsync(pd__client *c, const char *op, unsigned flags) {
    if (!(flags & PD_FSYNC)) return 0;
    return pd__err(&c->base, PD_ERR_UNSUPPORTED, 0,
                   "%s: PD_FSYNC cannot be forwarded to the server at %s (the "
                   "protocol has no flags): serve a File opened with "
                   "PD_FILE_FSYNC instead",
                   op, c->address);
}

/* Checks and sends a keyed request (op names the command too; vals NULL:
 * keys only): 0 or the error. */
static int s_request(pd__client *c, const char *op, size_t n,
                     const pd_key *keys, const pd_bytes *vals, bool pipelined) {
    int rc = pd__client_prepare(c, op, n, keys, vals, pipelined);
    return rc ? rc : pd__client_send(c, op, op, keys, vals, 0, n);
}

static int s_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    pd__client *c = (pd__client *)s;
    int rc = s_no_fsync(c, "append", flags);
    if (rc) return rc;
    rc = pd__client_prepare(c, "append", n, keys, vals, true);
    if (!rc)
        rc = pd__client_packs(c, n, vals)
                 ? pd__client_send_packed(c, "append", keys, vals, n)
                 : pd__client_send(c, "append", "append", keys, vals, 0, n);
    if (rc) return rc;
    return pd__client_maybe_sync(c, "append");
}

/* A packed get's values being copied into the result: the lengths (in
 * the LENGTHS frame), the values finished, the bytes left of the next. */
typedef struct s_unpack {
    const unsigned char *len;
    size_t n, done;
    uint64_t left;
} s_unpack;

/* Ends the values that are complete (empty ones too).  0 or NOMEM. */
static int s_unpack_ends(s_unpack *u, pd_result *r) {
    while (u->left == 0 && u->done < u->n) {
        if (pd__result_next(r)) return PD_ERR_NOMEM;
        if (++u->done < u->n)
            u->left = pd__wire_get_u64(u->len + 4 + 8 * u->done);
    }
    return 0;
}

/* Copies the sz bytes at p, the next of the values, into r.  The caller
 * checked that they do not run past the lengths. */
static int s_unpack_put(s_unpack *u, pd_result *r, const char *p, size_t sz) {
    while (sz > 0) {
        int rc = s_unpack_ends(u, r);
        if (rc) return rc;
        if (u->done == u->n) break;
        size_t take = u->left < sz ? (size_t)u->left : sz;
        if (pd__result_put(r, p, take)) return PD_ERR_NOMEM;
        p += take;
        sz -= take;
        u->left -= take;
    }
    return 0;
}

/* A packed get's results message that breaks the protocol: the
 * connection is reset (the rest of the message goes with it). */
static int s_get_malformed(pd__client *c, size_t n, const char *fmt, ...)
    PD__PRINTF(3, 4);
static int s_get_malformed(pd__client *c, size_t n, const char *fmt, ...) {
    char w[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w, sizeof w, fmt, ap);
    va_end(ap);
    pd__err(&c->base, PD_ERR_PROTOCOL, 0,
            "get: the server at %s sent a malformed packed results message "
            "for %zu keys: %s; connection reset",
            c->address, n, w);
    return pd__client_broken(c, PD_ERR_PROTOCOL);
}

/* The first frame of a packed get's reply is not LENGTHS: the error reply
 * (a failed get_packed gets it alone), or a malformed message. */
static int s_get_not_lengths(pd__client *c, size_t n, const char *what) {
    int rc = pd__client_recv_rest(c, "get");
    if (rc) return pd__client_broken(c, rc);
    int code;
    pd_bytes msg;
    if (pd__wire_final(c->nmsgs, c->frames, &code, &msg) == 1) {
        pd__client_pop(c);
        rc = pd__client_final(c, "get", what, false);
        pd__client_drop_msgs(c);
        return rc;
    }
    return s_get_malformed(
        c, n, "its lengths frame has %zu bytes, %" PRIu64 " expected",
        c->frames[0].size, 4 + 8 * (uint64_t)n);
}

/* Reads a packed get's results message, [LENGTHS, DATA...], whose first
 * frame is in c->msgs, into r: each data frame is copied as it is taken
 * from the socket and released at once, so the client holds the values
 * once (plus a frame) rather than all the frames and the result.  Then
 * reads the final reply.  0 or the error (the connection is reset on a
 * malformed message). */
static int s_get_packed_reply(pd__client *c, size_t n, pd_result *r,
                              const char *what) {
    const unsigned char *lf = c->frames[0].data;
    if (c->frames[0].size != 4 + 8 * (uint64_t)n)
        return s_get_not_lengths(c, n, what);
    if (pd__wire_get_u32(lf) != n)
        return s_get_malformed(c, n,
                               "its lengths frame counts %" PRIu32 " values",
                               pd__wire_get_u32(lf));
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t l = pd__wire_get_u64(lf + 4 + 8 * i);
        if (l > UINT64_MAX - sum)
            return s_get_malformed(c, n,
                                   "its value lengths add up past 2^64 (at "
                                   "value %zu)",
                                   i);
        sum += l;
    }
    if (!zmq_msg_more(&c->msgs[0]))
        return s_get_malformed(c, n,
                               "no data frame after the lengths (%" PRIu64
                               " bytes of values)",
                               sum);
    int err = 0;
    if (sum > SIZE_MAX || !pd__result_reserve(r, (size_t)sum))
        err = PD_ERR_NOMEM;
    s_unpack u = {lf, n, 0, pd__wire_get_u64(lf + 4)};
    uint64_t data = 0;
    for (bool more = true; more;) {
        zmq_msg_t m;
        int rc = pd__client_recv_frame(c, "get", &m);
        if (rc) return pd__client_broken(c, rc);
        size_t sz = zmq_msg_size(&m);
        more = zmq_msg_more(&m);
        if (sz > sum - data) {
            zmq_msg_close(&m);
            return s_get_malformed(
                c, n,
                "its data frames carry more than the %" PRIu64
                " bytes of its value lengths",
                sum);
        }
        data += sz;
        if (!err) err = s_unpack_put(&u, r, zmq_msg_data(&m), sz);
        zmq_msg_close(&m);
    }
    if (data != sum)
        return s_get_malformed(c, n,
                               "its data frames carry %" PRIu64
                               " bytes, its value lengths %" PRIu64,
                               data, sum);
    if (!err) err = s_unpack_ends(&u, r);
    pd__client_drop_msgs(c);
    /* The final reply follows the values at once. */
    int rc = pd__client_settle(c, "get", true);
    if (rc == 0 && err)
        rc = pd__err(&c->base, err, ENOMEM, "get: %" PRIu64 " bytes from %s",
                     sum, c->address);
    return rc;
}

static int s_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    pd__client *c = (pd__client *)s;
    int rc = pd__client_prepare(c, "get", n, keys, NULL, false);
    if (rc) return rc;
    bool packed = pd__client_packs(c, n, NULL);
    rc = packed ? pd__client_send_packed(c, "get", keys, NULL, n)
                : pd__client_send(c, "get", "get", keys, NULL, 0, n);
    if (rc) return rc;
    char what[sizeof c->q[0].what];
    memcpy(what, pd__client_newest(c)->what, sizeof what);
    rc = packed ? pd__client_recv_head(c, "get", what)
                : pd__client_recv(c, "get", what);
    if (rc) return pd__client_broken(c, rc);
    if (packed) return s_get_packed_reply(c, n, r, what);
    if (c->nmsgs != n) {
        /* Only a request the server could not parse gets an error reply
         * alone; with n != 3 it cannot be mistaken for values. */
        int code;
        pd_bytes msg;
        if (pd__wire_final(c->nmsgs, c->frames, &code, &msg) == 1) {
            pd__client_pop(c);
            return pd__client_final(c, "get", what, false);
        }
        pd__err(&c->base, PD_ERR_PROTOCOL, 0,
                "get: the server at %s sent %zu values for %zu keys; "
                "connection reset",
                c->address, c->nmsgs, n);
        return pd__client_broken(c, PD_ERR_PROTOCOL);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += c->frames[i].size;
    int err = 0;
    if (total > SIZE_MAX || !pd__result_reserve(r, (size_t)total))
        err = PD_ERR_NOMEM;
    for (size_t i = 0; i < n && !err; i++)
        if (pd__result_put(r, c->frames[i].data, c->frames[i].size) ||
            pd__result_next(r))
            err = PD_ERR_NOMEM;
    pd__client_drop_msgs(c);
    /* The final reply follows the values at once. */
    rc = pd__client_settle(c, "get", true);
    if (rc == 0 && err)
        rc = pd__err(&c->base, err, ENOMEM, "get: %" PRIu64 " bytes from %s",
                     total, c->address);
    return rc;
}

static int s_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    (void)flags;
    pd__client *c = (pd__client *)s;
    int rc = s_request(c, "delete", n, keys, NULL, false);
    if (rc) return rc;
    return pd__client_maybe_sync(c, "delete");
}

static int s_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    pd__client *c = (pd__client *)s;
    int rc = s_no_fsync(c, "iset", flags);
    if (rc) return rc;
    rc = pd__client_prepare(c, "iset", n, keys, vals,
                            false); /* also: which server */
    if (rc) return rc;
    if (c->ours == 1) {
        rc = pd__client_send(c, "iset", "iset", keys, vals, 0, n);
        if (rc) return rc;
        return pd__client_maybe_sync(c, "iset");
    }
    /* Python's server takes one key per iset. */
    for (size_t i = 0; i < n; i++) {
        if (i) {
            rc = pd__client_settle(c, "iset", false);
            if (rc) return rc;
        }
        rc = pd__client_send(c, "iset", "iset", keys, vals, i, 1);
        if (rc) return rc;
    }
    return pd__client_maybe_sync(c, "iset");
}

static int s_drop(pd_store *s, unsigned flags) {
    (void)flags;
    pd__client *c = (pd__client *)s;
    int rc = pd__client_ready(c);
    if (!rc) rc = pd__client_settle(c, "drop", false);
    if (rc) return rc;
    rc = pd__client_send(c, "drop", "drop", NULL, NULL, 0, 0);
    if (rc) return rc;
    return pd__client_maybe_sync(c, "drop");
}

/* Sends op, a command only our server has, and reads its reply: see
 * pd__client_reply. */
static int s_ask(pd__client *c, const char *op, bool *done) {
    char what[32];
    snprintf(what, sizeof what, "%s command", op);
    int rc = pd__client_ours(c, op, what);
    if (!rc) rc = pd__client_send(c, op, op, NULL, NULL, 0, 0);
    return rc ? rc : pd__client_reply(c, op, op, done);
}

static int s_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    pd__client *c = (pd__client *)s;
    bool done = false;
    int rc = s_ask(c, "keys", &done);
    if (rc || done) return rc;
    /* [count, (packed key, size)...]: checked before anything is kept. */
    size_t nf = c->nmsgs;
    bool ok = nf >= 1 && nf % 2 == 1 && c->frames[0].size == 8 &&
              pd__wire_get_u64(c->frames[0].data) == (nf - 1) / 2;
    for (size_t i = 1; ok && i < nf; i += 2) {
        pd_key k;
        pd_bytes parts[PD_KEY_MAX_PARTS];
        ok = c->frames[i + 1].size == 8 &&
             pd__key_unpack(c->frames[i].data, c->frames[i].size, &k, parts) ==
                 0;
        if (ok) {
            char why[64];
            ok = pd__key_check(&k, why) == 0;
        }
    }
    if (!ok) {
        pd__err(&c->base, PD_ERR_PROTOCOL, 0,
                "keys: the server at %s sent a malformed key list; "
                "connection reset",
                c->address);
        return pd__client_broken(c, PD_ERR_PROTOCOL);
    }
    int err = 0;
    for (size_t i = 1; i < nf && !err; i += 2)
        err = pd__keylist_add_packed(kl, c->frames[i].data, c->frames[i].size,
                                     pd__wire_get_u64(c->frames[i + 1].data));
    pd__client_drop_msgs(c);
    rc = pd__client_settle(c, "keys", true);
    if (rc == 0 && err)
        rc = pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "keys: list");
    return rc;
}

static int s_flush(pd_store *s) {
    pd__client *c = (pd__client *)s;
    /* Only a request of the caller's is worth waiting for: a `syn` still
     * unanswered (nothing was asked, or the server was unreachable and the
     * connection reset) is not. */
    if (c->pid != pd__getpid() || !c->sock || c->pending_syn) return 0;
    return pd__client_settle(c, "close", false);
}

static int s_destroy(pd_store *s) {
    pd__client *c = (pd__client *)s;
    pd__client_hangup(c);
    free(c->address);
    free(c->msgs);
    free(c->frames);
    free(c->koff);
    pd__buf_free(&c->wb);
    return 0;
}

/* What a write checks before it sends anything (pd_store_ops.check): the
 * fsync refusal, the keys and the request's size (pd__client_check); an
 * iset or a delete also reads the replies still due, as it would before
 * sending, so an earlier request's failure stops it here.  An append reads
 * nothing here: appends stream, and their replies are read when the
 * window is full. */
static int s_check(pd_store *s, const char *op, size_t n, const pd_key *keys,
                   const pd_bytes *vals, unsigned flags) {
    pd__client *c = (pd__client *)s;
    int rc = vals ? s_no_fsync(c, op, flags) : 0;
    if (rc) return rc;
    if (strcmp(op, "append") == 0)
        return pd__client_check(c, op, n, keys, vals);
    return pd__client_prepare(c, op, n, keys, vals, false);
}

static const pd_store_ops s_client_ops = {
    PD__STORE_OPS("client"),
    .flush = s_flush,
    .check = s_check,
    PD__ATTEMPT_OPS(pd__client_att_),
};

/* ------------------------------------------------------------ Public */

int pd_client_open(pd_store **out, const char *address,
                   const pd_client_opts *o) {
    if (!out) return pd__err(NULL, PD_ERR_MISUSE, 0, "client: open: NULL out");
    *out = NULL;
    if (!address || !*address)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "client: open: no address");
    if (o && o->struct_version > PD_CLIENT_OPTS_VERSION)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "client: open %s: pd_client_opts.struct_version %u "
                       "(this library knows up to %u)",
                       address, o->struct_version, PD_CLIENT_OPTS_VERSION);
    if (o && o->timeout_ms < 0)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "client: open %s: timeout_ms %d (a client never "
                       "waits forever)",
                       address, o->timeout_ms);
    if (o && o->window > PD_CLIENT_WINDOW_MAX)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "client: open %s: window %u (at most %u)", address,
                       o->window, PD_CLIENT_WINDOW_MAX);
    if (o && (o->flags & ~PD_CLIENT_SYNC))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "client: open %s: unknown flags 0x%x", address,
                       o->flags & ~PD_CLIENT_SYNC);
    bool curve = o && o->curve_server_key;
    if (curve) {
        if (!zmq_has("curve"))
            return pd__err(NULL, PD_ERR_UNSUPPORTED, 0,
                           "client: open %s: CURVE asked for, but libzmq was "
                           "built without it",
                           address);
        if (!pd__z85_ok(o->curve_server_key) ||
            (o->curve_public && !pd__z85_ok(o->curve_public)) ||
            (o->curve_secret && !pd__z85_ok(o->curve_secret)) ||
            (!o->curve_public != !o->curve_secret))
            return pd__err(NULL, PD_ERR_MISUSE, 0,
                           "client: open %s: CURVE keys must be 40 z85 "
                           "characters, and the client's public and secret "
                           "key given together",
                           address);
    }
    int rc;
    pd__client *c = pd__store_new(sizeof *c, &s_client_ops, &rc);
    if (!c) return rc;
    c->timeout_ms =
        o && o->timeout_ms ? o->timeout_ms : PD_CLIENT_TIMEOUT_DEFAULT;
    c->flags = o ? o->flags : 0;
    c->max_message =
        o && o->max_message ? o->max_message : PD_ZMQ_MAX_MESSAGE_DEFAULT;
    c->ours = -1;
    c->window = o && o->window ? o->window : PD_CLIENT_WINDOW_DEFAULT;
    c->pid = pd__getpid();
    c->address = strdup(address);
    if (!c->address) rc = pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "client: open");
    if (rc == 0 && curve) {
        c->curve = true;
        memcpy(c->curve_server, o->curve_server_key, 41);
        if (o->curve_public) {
            memcpy(c->curve_public, o->curve_public, 41);
            memcpy(c->curve_secret, o->curve_secret, 41);
        } else if (zmq_curve_keypair(c->curve_public, c->curve_secret)) {
            rc = pd__err(NULL, PD_ERR_IO, zmq_errno(),
                         "client: open %s: zmq_curve_keypair", address);
        }
    }
    if (rc == 0 && !(c->ctx = zmq_ctx_new()))
        rc = pd__err(NULL, PD_ERR_IO, zmq_errno(),
                     "client: open %s: zmq_ctx_new", address);
    if (rc == 0) {
        rc = pd__client_connect(c, NULL);
        if (rc) rc = pd__err_wrap(NULL, NULL, rc, "client: open");
    }
    if (rc) {
        pd__errsave sv; /* the teardown must not replace it */
        pd__err_save(NULL, &sv);
        s_destroy(&c->base);
        pd__store_fini(&c->base);
        free(c);
        return pd__err_restore(NULL, &sv);
    }
    *out = &c->base;
    pd__err_clear(NULL);
    return 0;
}

static pd__client *s_cl(const pd_store *s) {
    return pd__store_as(s, &s_client_ops);
}

const char *pd_client_address(const pd_store *s) {
    pd__client *c = s_cl(s);
    return c ? c->address : NULL;
}

int pd_client_server_is_ours(const pd_store *s) {
    pd__client *c = s_cl(s);
    return c ? c->ours : -1;
}

static int s_sync_call(pd_store *s, void *arg, unsigned flags) {
    (void)arg, (void)flags;
    pd__client *c = (pd__client *)s;
    int rc = pd__client_ready(c);
    return rc ? rc : pd__client_settle(c, "sync", false);
}

static int s_close_call(pd_store *s, void *arg, unsigned flags) {
    (void)arg, (void)flags;
    pd__client *c = (pd__client *)s;
    int rc = pd__client_ready(c);
    if (!rc) rc = pd__client_settle(c, "close_server", false);
    if (!rc) rc = pd__client_send(c, "close_server", "close", NULL, NULL, 0, 0);
    return rc ? rc : pd__client_settle(c, "close_server", true);
}

/* A client-specific call, run under the handle's lock as an op. */
static int s_call(pd_store *s, const char *op, pd__call_fn fn) {
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "client: %s: NULL", op);
    pd__err_clear(s);
    if (!s_cl(s))
        return pd__err(s, PD_ERR_MISUSE, 0, "%s: not a client store", op);
    return pd__call(s, op, 0, 0, fn, NULL);
}

/* stats: [name, 8-byte value]... then [ack]; names this client does not
 * know are skipped, members the server did not send stay 0. */
static int s_stats_call(pd_store *s, void *arg, unsigned flags) {
    (void)flags;
    pd__client *c = (pd__client *)s;
    pd_server_stats *out = arg;
    bool done = false;
    int rc = s_ask(c, "stats", &done);
    if (rc || done) return rc;
    size_t nf = c->nmsgs;
    bool ok = nf % 2 == 0;
    for (size_t i = 0; ok && i < nf; i += 2)
        ok = c->frames[i].size > 0 && c->frames[i].size <= 64 &&
             c->frames[i + 1].size == 8;
    if (!ok) {
        pd__err(&c->base, PD_ERR_PROTOCOL, 0,
                "stats: the server at %s sent a malformed stats reply (%zu "
                "frames); connection reset",
                c->address, nf);
        return pd__client_broken(c, PD_ERR_PROTOCOL);
    }
    pd_server_stats st;
    memset(&st, 0, sizeof st);
    for (size_t i = 0; i < nf; i += 2)
        for (size_t j = 0; j < pd__nstat_fields; j++) {
            const pd__stat_field *f = &pd__stat_fields[j];
            if (!pd__wire_is(&c->frames[i], f->name)) continue;
            uint64_t v = pd__wire_get_u64(c->frames[i + 1].data);
            memcpy((char *)&st + f->off, &v, sizeof v);
        }
    pd__client_drop_msgs(c);
    rc = pd__client_settle(c, "stats", true);
    if (rc) return rc;
    size_t size = out->size;
    st.size = size;
    memcpy(out, &st, size < sizeof st ? size : sizeof st);
    return 0;
}

int pd_client_stats(pd_store *s, pd_server_stats *out) {
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "client: stats: NULL");
    pd__err_clear(s);
    if (!s_cl(s))
        return pd__err(s, PD_ERR_MISUSE, 0, "stats: not a client store");
    if (!out || out->size < offsetof(pd_server_stats, keys) + sizeof out->keys)
        return pd__err(s, PD_ERR_MISUSE, 0,
                       "stats: out is NULL or out->size is too small (set "
                       "it to sizeof(pd_server_stats))");
    return pd__call(s, "stats", 0, 0, s_stats_call, out);
}

typedef struct s_lease_arg {
    pd_key name;
    uint32_t ms;
} s_lease_arg;

/* lease: [lease, name, ms] then [ack] (ours only). */
static int s_lease_call(pd_store *s, void *arg, unsigned flags) {
    (void)flags;
    pd__client *c = (pd__client *)s;
    s_lease_arg *a = arg;
    char num[16];
    snprintf(num, sizeof num, "%" PRIu32, a->ms);
    pd_bytes v = PD_BYTES(num, strlen(num));
    int rc = pd__client_prepare(c, "lease", 1, &a->name, &v, false);
    if (rc) return rc;
    if (c->ours != 1)
        return pd__err(&c->base, PD_ERR_UNSUPPORTED, 0,
                       "lease: the server at %s is not libpartd's (Python "
                       "partd?): it has no lease command",
                       c->address);
    rc = pd__client_send(c, "lease", "lease", &a->name, &v, 0, 1);
    return rc ? rc : pd__client_settle(c, "lease", true);
}

int pd_client_lease(pd_store *s, const void *name, size_t len, uint32_t ms) {
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "client: lease: NULL");
    pd__err_clear(s);
    if (!s_cl(s))
        return pd__err(s, PD_ERR_MISUSE, 0, "lease: not a client store");
    if ((!name && len) || len > PD_KEY_MAX)
        return pd__err(s, PD_ERR_MISUSE, 0,
                       "lease: a NULL name of %zu bytes, or over %d bytes", len,
                       PD_KEY_MAX);
    s_lease_arg a = {PD_KEY(name, len), ms};
    return pd__call(s, "lease", 0, 0, s_lease_call, &a);
}

int pd_client_sync(pd_store *s) { return s_call(s, "sync", s_sync_call); }

int pd_client_close_server(pd_store *s) {
    return s_call(s, "close_server", s_close_call);
}
