/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The ZeroMQ Client's connection (see client.c for the store): the socket,
 * the requests in flight, and reading their replies.
 *
 * Protocol state: `q` holds the requests sent whose final reply is still
 * due, oldest first, each described for messages.  Every call but append
 * first reads them all (pd__client_settle), then sends its own request;
 * append, iset, delete and drop leave their reply pending unless
 * PD_CLIENT_SYNC; get and keys read everything.  With a Python server one
 * request is in flight, as the reference client does.  With ours, append
 * only reads replies until fewer than `window` appends (and
 * PD__CLIENT_WINDOW_BYTES of them) are in flight (s_room), so a stream of
 * appends is not paced by the round trip: the server runs requests in the
 * order sent, one at a time.
 *
 * Every wait is bounded (zmq_poll with the time left).  When a wait times
 * out or a reply breaks the protocol, the socket is closed and a new one
 * connected (s_reset): a late reply to the old socket can never be taken
 * for the answer to a later request, since the server routes replies to
 * the socket that asked.  The new socket sends `syn` like a new client.
 *
 * Each handle has its own ZeroMQ context.  A handle used in a forked child
 * leaves the parent's context alone (its threads do not exist in the child;
 * closing it there could hang) and opens a new one.
 */
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ In flight */

static pd__creq *s_oldest(pd__client *c) { return &c->q[c->qhead]; }

pd__creq *pd__client_newest(pd__client *c) {
    return &c->q[(c->qhead + c->nq - 1) % PD_CLIENT_WINDOW_MAX];
}

/* Records a request just sent (described next, in pd__client_newest). */
static void s_push(pd__client *c, uint64_t bytes) {
    pd__creq *r = &c->q[(c->qhead + c->nq) % PD_CLIENT_WINDOW_MAX];
    r->what[0] = 0;
    r->bytes = bytes;
    c->nq++;
    c->qbytes += bytes;
}

/* Forgets the oldest request: its final reply has been read. */
void pd__client_pop(pd__client *c) {
    c->qbytes -= s_oldest(c)->bytes;
    c->qhead = (c->qhead + 1) % PD_CLIENT_WINDOW_MAX;
    c->nq--;
    c->pending_syn = false;
}

static void s_forget_all(pd__client *c) {
    c->qhead = c->nq = 0;
    c->qbytes = 0;
    c->pending_syn = false;
}

/* ------------------------------------------------------------ Sockets */

void pd__client_drop_msgs(pd__client *c) {
    for (size_t i = 0; i < c->nmsgs; i++) zmq_msg_close(&c->msgs[i]);
    c->nmsgs = 0;
}

/* A new socket, connected, with `syn` sent (as the reference client does).
 * 0 or an error recorded on the handle (or the thread, when opening). */
int pd__client_connect(pd__client *c, pd_store *errs) {
    void *sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!sock)
        return pd__err(errs, PD_ERR_IO, zmq_errno(), "connect %s: zmq_socket",
                       c->address);
    int64_t maxmsg = c->max_message > INT64_MAX ? -1 : (int64_t)c->max_message;
    int rc = 0;
    if (pd__sockopt_int(sock, ZMQ_LINGER, 0) ||
        pd__sockopt_int(sock, ZMQ_SNDTIMEO, c->timeout_ms) ||
        zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg))
        rc = pd__err(errs, PD_ERR_IO, zmq_errno(), "connect %s: zmq_setsockopt",
                     c->address);
    if (rc == 0 && c->curve &&
        (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, c->curve_server, 40) ||
         zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, c->curve_public, 40) ||
         zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->curve_secret, 40)))
        rc = pd__err(errs, PD_ERR_MISUSE, zmq_errno(), "connect %s: CURVE keys",
                     c->address);
    if (rc == 0 && zmq_connect(sock, c->address) != 0) {
        int e = zmq_errno();
        rc = pd__err(errs,
                     e == EINVAL || e == EPROTONOSUPPORT || e == ENOCOMPATPROTO
                         ? PD_ERR_MISUSE
                         : PD_ERR_IO,
                     e, "connect %s", c->address);
    }
    if (rc == 0 && zmq_send(sock, "syn", 3, ZMQ_DONTWAIT) != 3)
        rc = pd__err(errs, PD_ERR_IO, zmq_errno(), "connect %s: send syn",
                     c->address);
    if (rc) {
        zmq_close(sock);
        return rc;
    }
    c->sock = sock;
    c->gen++;
    s_forget_all(c);
    s_push(c, 0);
    c->pending_syn = true;
    snprintf(pd__client_newest(c)->what, sizeof pd__client_newest(c)->what,
             "syn (connecting)");
    return 0;
}

/* Drops the connection and makes a new one: nothing received on the old
 * socket can reach later calls.  Keeps the current error message. */
static void s_reset(pd__client *c) {
    pd__client_drop_msgs(c);
    if (c->sock) zmq_close(c->sock);
    c->sock = NULL;
    s_forget_all(c);
    pd__errsave sv;
    pd__err_save(&c->base, &sv);
    if (pd__client_connect(c, &c->base) != 0) c->sock = NULL;
    /* Restore the error that caused the reset: it is the one to report.
     * (A failed reconnect is found again by the next call.) */
    pd__err_restore(&c->base, &sv);
}

/* The parents' contexts and sockets that forked children left alone: kept
 * in a global list for the life of the process, so they stay reachable
 * (memory checkers do not report them) and are never closed. */
static pthread_mutex_t s_orphan_mu = PTHREAD_MUTEX_INITIALIZER;
static void **s_orphans;
static size_t s_norphans;

/* Keeps the parent's context, socket and messages (the table: the
 * messages are not ours to close) in the list.  False when out of memory. */
static bool s_orphan(pd__client *c) {
    pthread_mutex_lock(&s_orphan_mu);
    void **no = realloc(s_orphans, (s_norphans + 3) * sizeof *no);
    if (no) {
        s_orphans = no;
        s_orphans[s_norphans++] = c->ctx;
        s_orphans[s_norphans++] = c->sock;
        s_orphans[s_norphans++] = c->msgs;
        c->msgs = NULL;
        c->msgcap = 0;
    }
    pthread_mutex_unlock(&s_orphan_mu);
    return no != NULL;
}

/* In a forked child: leave the parent's context and socket alone and make
 * new ones. */
static int s_after_fork(pd__client *c) {
    if (!s_orphan(c))
        return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "fork: reopen");
    c->ctx = NULL;
    c->sock = NULL;
    c->nmsgs = 0; /* the parent's messages: not ours to close */
    s_forget_all(c);
    c->pid = pd__getpid();
    c->ctx = zmq_ctx_new();
    if (!c->ctx)
        return pd__err(&c->base, PD_ERR_IO, zmq_errno(),
                       "fork: reopen %s: zmq_ctx_new", c->address);
    return pd__client_connect(c, &c->base);
}

int pd__client_ready(pd__client *c) {
    if (c->pid != pd__getpid()) {
        int rc = s_after_fork(c);
        if (rc) return rc;
    }
    if (!c->sock) return pd__client_connect(c, &c->base);
    return 0;
}

void pd__client_hangup(pd__client *c) {
    if (c->pid == pd__getpid()) {
        pd__client_drop_msgs(c);
        if (c->sock) zmq_close(c->sock);
        if (c->ctx) zmq_ctx_term(c->ctx);
    } else {
        /* A context made by the parent (this handle was never used in this
         * child) belongs to it: never closed here. */
        s_orphan(c);
    }
    c->sock = c->ctx = NULL;
}

/* ------------------------------------------------------------ Waiting */

/* Receives the next frame of the message being read into m (initialised
 * here; closed on failure): libzmq hands a message over whole, so it is
 * here already.  0 or PD_ERR_IO (recorded). */
int pd__client_recv_frame(pd__client *c, const char *op, zmq_msg_t *m) {
    zmq_msg_init(m);
    for (;;) {
        if (zmq_msg_recv(m, c->sock, ZMQ_DONTWAIT) >= 0) return 0;
        int e = zmq_errno();
        if (e == EINTR) continue;
        zmq_msg_close(m);
        return pd__err(&c->base, PD_ERR_IO, e, "%s: receive from %s", op,
                       c->address);
    }
}

/* c->frames[i] for each message in c->msgs.  0 or PD_ERR_NOMEM. */
static int s_frames(pd__client *c, const char *op) {
    if (pd__grow((void **)&c->frames, &c->framecap, c->nmsgs,
                 sizeof *c->frames))
        return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "%s: receive from %s",
                       op, c->address);
    for (size_t i = 0; i < c->nmsgs; i++)
        c->frames[i] =
            (pd_bytes){zmq_msg_data(&c->msgs[i]), zmq_msg_size(&c->msgs[i])};
    return 0;
}

int pd__client_recv_head(pd__client *c, const char *op,
                         const char *waiting_for) {
    pd__client_drop_msgs(c);
    if (pd__grow((void **)&c->msgs, &c->msgcap, 1, sizeof *c->msgs))
        return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "%s: receive from %s",
                       op, c->address);
    int64_t deadline = pd__now_ms() + c->timeout_ms;
    zmq_msg_t *m = &c->msgs[0];
    for (;;) {
        zmq_msg_init(m);
        if (zmq_msg_recv(m, c->sock, ZMQ_DONTWAIT) >= 0) break;
        zmq_msg_close(m);
        int e = zmq_errno();
        if (e == EINTR) continue;
        if (e != EAGAIN)
            return pd__err(&c->base, PD_ERR_IO, e, "%s: receive from %s", op,
                           c->address);
        int64_t left = deadline - pd__now_ms();
        if (left <= 0)
            return pd__err(&c->base, PD_ERR_TIMEOUT, 0,
                           "%s: no reply from the server at %s within %d ms "
                           "(waiting for the reply to %s); connection reset",
                           op, c->address, c->timeout_ms, waiting_for);
        zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)left) < 0 && zmq_errno() != EINTR)
            return pd__err(&c->base, PD_ERR_IO, zmq_errno(),
                           "%s: zmq_poll on %s", op, c->address);
    }
    c->nmsgs = 1;
    /* Which server is it?  Ours shows its routing id (see partd/zmq.h). */
    const char *id = zmq_msg_gets(m, "Identity");
    c->ours = id && strcmp(id, PD_SERVER_IDENTITY) == 0 ? 1 : 0;
    return s_frames(c, op);
}

int pd__client_recv_rest(pd__client *c, const char *op) {
    while (c->nmsgs > 0 && zmq_msg_more(&c->msgs[c->nmsgs - 1])) {
        if (pd__grow((void **)&c->msgs, &c->msgcap, c->nmsgs + 1,
                     sizeof *c->msgs))
            return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM,
                           "%s: receive from %s", op, c->address);
        int rc = pd__client_recv_frame(c, op, &c->msgs[c->nmsgs]);
        if (rc) return rc;
        c->nmsgs++;
    }
    return s_frames(c, op);
}

int pd__client_recv(pd__client *c, const char *op, const char *waiting_for) {
    int rc = pd__client_recv_head(c, op, waiting_for);
    return rc ? rc : pd__client_recv_rest(c, op);
}

/* A failure that leaves the stream out of step: reset, then return. */
int pd__client_broken(pd__client *c, int rc) {
    s_reset(c);
    return rc;
}

/* Interprets the final reply just received for request `what`.  `prev`:
 * it answers an earlier call's request (so the message says so). */
int pd__client_final(pd__client *c, const char *op, const char *what,
                     bool prev) {
    int code = 0;
    pd_bytes msg;
    int k = pd__wire_final(c->nmsgs, c->frames, &code, &msg);
    if (k == 0) return 0;
    if (k > 0) {
        int ml = msg.size > 700 ? 700 : (int)msg.size;
        /* sync and close only read the reply; other calls were about to
         * send a request of their own, and did not. */
        bool asked = strcmp(op, "sync") != 0 && strcmp(op, "close") != 0;
        if (prev)
            return pd__err(&c->base, code, 0,
                           "%s: the previous request, %s, failed on the "
                           "server at %s: %.*s%s%s%s",
                           op, what, c->address, ml, (const char *)msg.data,
                           asked ? " (this " : "", asked ? op : "",
                           asked ? " was not sent)" : "");
        return pd__err(&c->base, code, 0, "%s: the server at %s: %.*s", op,
                       c->address, ml, (const char *)msg.data);
    }
    pd__err(&c->base, PD_ERR_PROTOCOL, 0,
            "%s: the server at %s answered %s with a message of %zu frames "
            "that is neither [ack] nor an error reply; connection reset",
            op, c->address, what, c->nmsgs);
    return pd__client_broken(c, PD_ERR_PROTOCOL);
}

/* Reads the oldest final reply still due.  `own`: the newest request is
 * the current call's (get, keys, sync), not an earlier call's. */
static int s_settle_one(pd__client *c, const char *op, bool own) {
    pd__creq r = *s_oldest(c);
    bool prev = !(own && c->nq == 1) && !c->pending_syn;
    int rc = pd__client_recv(c, op, r.what);
    if (rc) return pd__client_broken(c, rc);
    pd__client_pop(c);
    rc = pd__client_final(c, op, r.what, prev);
    pd__client_drop_msgs(c);
    return rc;
}

/* Reads every final reply still due.  An error is the first failed
 * request's, noting how many later ones failed too: the replies after it
 * are read all the same, so the handle stays in step. */
int pd__client_settle(pd__client *c, const char *op, bool own) {
    int first = 0, later = 0;
    pd__errsave sv;
    while (c->nq > 0) {
        int rc = s_settle_one(c, op, own);
        if (rc == 0) continue;
        /* A timeout or a broken reply reset the connection: nothing is
         * due any more but the new connection's syn. */
        if (c->pending_syn) return rc;
        if (first) {
            later++;
        } else {
            first = rc;
            pd__err_save(&c->base, &sv);
        }
    }
    if (!first) return 0;
    if (later) {
        size_t l = strlen(sv.msg);
        snprintf(sv.msg + l, sizeof sv.msg - l,
                 " (and %d later request%s failed too)", later,
                 later == 1 ? "" : "s");
    }
    pd__err_restore(&c->base, &sv);
    return first;
}

int pd__client_reply(pd__client *c, const char *op, const char *what,
                     bool *done) {
    *done = false;
    int rc = pd__client_recv(c, op, what);
    if (rc) return pd__client_broken(c, rc);
    int code;
    pd_bytes msg;
    if (pd__wire_final(c->nmsgs, c->frames, &code, &msg) != 1) return 0;
    *done = true;
    pd__client_pop(c);
    rc = pd__client_final(c, op, what, false);
    pd__client_drop_msgs(c);
    return rc;
}

int pd__client_ours(pd__client *c, const char *op, const char *what) {
    int rc = pd__client_ready(c);
    if (!rc) rc = pd__client_settle(c, op, false);
    if (rc) return rc;
    if (c->ours != 1)
        return pd__err(&c->base, PD_ERR_UNSUPPORTED, 0,
                       "%s: the server at %s is not libpartd's (Python "
                       "partd?): it has no %s",
                       op, c->address, what);
    return 0;
}

/* ------------------------------------------------------------ Sending */

/* Sends one frame; `more`: frames follow. */
/* The error of a send that failed with errno e (not EINTR). */
static int s_send_failed(pd__client *c, const char *op, int e) {
    if (e == EAGAIN)
        return pd__err(&c->base, PD_ERR_TIMEOUT, 0,
                       "%s: could not send to %s within %d ms (the "
                       "server does not read); connection reset",
                       op, c->address, c->timeout_ms);
    return pd__err(&c->base, PD_ERR_IO, e, "%s: send to %s", op, c->address);
}

static int s_send_frame(pd__client *c, const char *op, const void *data,
                        size_t size, bool more) {
    int fl = more ? ZMQ_SNDMORE : 0;
    for (;;) {
        if (zmq_send(c->sock, size ? data : "", size, fl) >= 0) return 0;
        int e = zmq_errno();
        if (e != EINTR) return s_send_failed(c, op, e);
    }
}

/* Puts the wire forms of keys[0..n) in c->wb.  0 or PD_ERR_KEY/NOMEM. */
static int s_wire_keys(pd__client *c, const char *op, size_t n,
                       const pd_key *keys) {
    pd__buf_clear(&c->wb);
    if (pd__grow((void **)&c->koff, &c->koffcap, n + 1, sizeof *c->koff))
        return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "%s: key table", op);
    for (size_t i = 0; i < n; i++) {
        char why[64];
        int rc = pd__wire_key_put(&c->wb, &keys[i], &c->koff[i], NULL, why);
        if (rc) {
            char ks[PD__KEYSHORT_MAX];
            return pd__err(&c->base, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                           "%s %s: cannot cross the wire: %s", op,
                           pd__key_short(&keys[i], ks), why);
        }
    }
    c->koff[n] = c->wb.len;
    return 0;
}

static pd_bytes s_wkey(pd__client *c, size_t i) {
    return (pd_bytes){c->wb.p + c->koff[i], c->koff[i + 1] - c->koff[i]};
}

/* Describes the request just sent, for messages about its reply. */
static void s_describe(pd__client *c, const char *cmd, size_t n,
                       const pd_key *keys) {
    pd__creq *r = pd__client_newest(c);
    if (n == 0) {
        snprintf(r->what, sizeof r->what, "%s", cmd);
        return;
    }
    char ks[PD__KEYSHORT_MAX];
    snprintf(r->what, sizeof r->what, "%s of %zu key%s (%s%s)", cmd, n,
             n == 1 ? "" : "s", pd__key_short(&keys[0], ks),
             n > 1 ? ", ..." : "");
}

static int s_check_count(pd__client *c, const char *op, size_t n) {
    if (n > PD__WIRE_MAX_KEYS)
        return pd__err(&c->base, PD_ERR_LIMIT, 0,
                       "%s: %zu keys in one request (at most %zu)", op, n,
                       PD__WIRE_MAX_KEYS);
    return 0;
}

/* Sends [cmd, (key, value)...] or [cmd, key...] (vals NULL) for keys[from ..
 * from + count), whose wire forms are in c->wb, and records the request as
 * in flight, described for messages about its reply.  On a send failure the
 * socket is reset (a message may be half sent). */
static int s_send(pd__client *c, const char *op, const char *cmd,
                  const pd_bytes *head, size_t nhead, const char *what,
                  const pd_key *keys, const pd_bytes *vals, size_t from,
                  size_t count) {
    int rc = s_send_frame(c, op, cmd, strlen(cmd), nhead + count > 0);
    uint64_t bytes = 0;
    for (size_t i = 0; rc == 0 && i < nhead; i++) {
        rc = s_send_frame(c, op, head[i].data, head[i].size,
                          i + 1 < nhead || count > 0);
        bytes += head[i].size;
    }
    for (size_t i = from; rc == 0 && i < from + count; i++) {
        pd_bytes k = s_wkey(c, i);
        bool last = i + 1 == from + count;
        rc = s_send_frame(c, op, k.data, k.size, vals || !last);
        bytes += k.size;
        if (rc == 0 && vals) {
            rc = s_send_frame(c, op, vals[i].data, vals[i].size, !last);
            bytes += vals[i].size;
        }
    }
    if (rc) return pd__client_broken(c, rc);
    s_push(c, bytes);
    if (what)
        snprintf(pd__client_newest(c)->what, sizeof c->q[0].what, "%s", what);
    else
        s_describe(c, cmd, count, count ? keys + from : NULL);
    return 0;
}

/* ------------------------------------------------------------ Packed */

/* Sends message m (closed here, sent or not); `more`: frames follow. */
static int s_send_msg(pd__client *c, const char *op, zmq_msg_t *m, bool more) {
    for (;;) {
        if (zmq_msg_send(m, c->sock, more ? ZMQ_SNDMORE : 0) >= 0) return 0;
        int e = zmq_errno();
        if (e == EINTR) continue;
        zmq_msg_close(m);
        return s_send_failed(c, op, e);
    }
}

/* The size of a packed index of the n keys in c->wb: the count, then per
 * key its length, `head` more bytes (a value length, or none), its bytes. */
static uint64_t s_index_size(pd__client *c, size_t n, size_t head) {
    return 4 + (uint64_t)n * (4 + head) + (c->koff[n] - c->koff[0]);
}

/* A new frame of the packed index of c->wb's n keys (with vals: each with
 * its value's length).  0 or PD_ERR_NOMEM (recorded). */
static int s_index_msg(pd__client *c, const char *op, size_t n,
                       const pd_bytes *vals, zmq_msg_t *m) {
    size_t head = vals ? 8 : 0;
    if (zmq_msg_init_size(m, (size_t)s_index_size(c, n, head)) != 0)
        return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "%s: index frame", op);
    unsigned char *o = zmq_msg_data(m);
    pd__wire_put_u32(o, (uint32_t)n);
    o += 4;
    for (size_t i = 0; i < n; i++) {
        pd_bytes k = s_wkey(c, i);
        pd__wire_put_u32(o, (uint32_t)k.size);
        if (vals) pd__wire_put_u64(o + 4, vals[i].size);
        o += 4 + head;
        if (k.size) memcpy(o, k.data, k.size);
        o += k.size;
    }
    return 0;
}

bool pd__client_packs(pd__client *c, size_t n, const pd_bytes *vals) {
    if (c->ours != 1 || c->pending_syn) return false;
    uint64_t req;
    if (vals) {
        req = strlen(PD__WIRE_APPEND_PACKED) + s_index_size(c, n, 8);
        for (size_t i = 0; i < n; i++) req += vals[i].size;
    } else {
        /* The reply's frames must pass this socket's max_message too. */
        if (c->max_message < PD__WIRE_PACKED_MIN_FRAME ||
            4 + 8 * (uint64_t)n > c->max_message)
            return false;
        req = strlen(PD__WIRE_GET_PACKED) + s_index_size(c, n, 0) + 8;
    }
    /* The server refuses a message over its max_message, taken to be the
     * client's; libzmq drops a frame over it: none is larger than req. */
    return req <= c->max_message;
}

int pd__client_send_packed(pd__client *c, const char *op, const pd_key *keys,
                           const pd_bytes *vals, size_t n) {
    const char *cmd = vals ? PD__WIRE_APPEND_PACKED : PD__WIRE_GET_PACKED;
    zmq_msg_t ix, tail;
    int rc = s_index_msg(c, op, n, vals, &ix);
    if (rc) return rc; /* nothing sent yet: the stream is in step */
    uint64_t bytes = zmq_msg_size(&ix);
    if (vals) {
        for (size_t i = 0; i < n; i++) bytes += vals[i].size;
        rc = zmq_msg_init_size(&tail, (size_t)(bytes - zmq_msg_size(&ix)));
        if (rc == 0) {
            char *o = zmq_msg_data(&tail);
            for (size_t i = 0; i < n; i++) {
                if (vals[i].size) memcpy(o, vals[i].data, vals[i].size);
                o += vals[i].size;
            }
        }
    } else {
        rc = zmq_msg_init_size(&tail, 8);
        if (rc == 0)
            pd__wire_put_u64(zmq_msg_data(&tail),
                             c->max_message < PD__CLIENT_GET_FRAME
                                 ? c->max_message
                                 : PD__CLIENT_GET_FRAME);
    }
    if (rc) {
        zmq_msg_close(&ix);
        return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM,
                       "%s: a frame of %" PRIu64 " bytes", op, bytes);
    }
    rc = s_send_frame(c, op, cmd, strlen(cmd), true);
    if (rc) {
        zmq_msg_close(&ix);
        zmq_msg_close(&tail);
        return pd__client_broken(c, rc);
    }
    rc = s_send_msg(c, op, &ix, true);
    if (rc) zmq_msg_close(&tail);
    if (!rc) rc = s_send_msg(c, op, &tail, false);
    if (rc) return pd__client_broken(c, rc);
    s_push(c, bytes);
    /* Described as the plain request, which it stands for. */
    s_describe(c, op, n, keys);
    return 0;
}

int pd__client_send(pd__client *c, const char *op, const char *cmd,
                    const pd_key *keys, const pd_bytes *vals, size_t from,
                    size_t count) {
    return s_send(c, op, cmd, NULL, 0, NULL, keys, vals, from, count);
}

int pd__client_send_head(pd__client *c, const char *op, const char *cmd,
                         const pd_bytes *head, size_t nhead, const char *what,
                         const pd_key *keys, const pd_bytes *vals, size_t n) {
    return s_send(c, op, cmd, head, nhead, what, keys, vals, 0, n);
}

/* After sending a request whose reply may stay pending. */
int pd__client_maybe_sync(pd__client *c, const char *op) {
    if (c->flags & PD_CLIENT_SYNC) return pd__client_settle(c, op, true);
    return 0;
}

/* Before an append of `bytes` is sent: reads the oldest replies until the
 * append fits the window (fewer than `window` requests and at most
 * PD__CLIENT_WINDOW_BYTES in flight with it; none with a server that is not
 * ours, or with PD_CLIENT_SYNC).  Only a full window is read, so where an error
 * is reported does not depend on timing.  An error reply stops it: the append
 * is then not sent (later replies stay due). */
static int s_room(pd__client *c, const char *op, uint64_t bytes) {
    unsigned w = c->ours == 1 && !(c->flags & PD_CLIENT_SYNC) ? c->window : 1;
    while (c->nq > 0 &&
           (c->nq >= w || c->qbytes + bytes > PD__CLIENT_WINDOW_BYTES)) {
        int rc = s_settle_one(c, op, false);
        if (rc) return rc;
    }
    return 0;
}

/* The handle works, the batch fits a request and every key can cross the
 * wire (its form into c->wb); *bytes: the request's size. */
static int s_check_keys(pd__client *c, const char *op, size_t n,
                        const pd_key *keys, const pd_bytes *vals,
                        uint64_t *bytes) {
    int rc = pd__client_ready(c);
    if (!rc) rc = s_check_count(c, op, n);
    if (!rc) rc = s_wire_keys(c, op, n, keys);
    *bytes = c->wb.len + strlen(op);
    for (size_t i = 0; vals && i < n; i++) *bytes += vals[i].size;
    return rc;
}

/* A request with values fits our server's max_message, which would drop
 * it with the connection. */
static int s_check_size(pd__client *c, const char *op, const pd_bytes *vals,
                        uint64_t bytes) {
    if (vals && c->ours != 0 && bytes > c->max_message)
        return pd__err(&c->base, PD_ERR_LIMIT, 0,
                       "%s: a request of %" PRIu64 " bytes to %s is over the "
                       "largest message, %" PRIu64
                       " bytes (max_message): split the batch",
                       op, bytes, c->address, c->max_message);
    return 0;
}

int pd__client_check(pd__client *c, const char *op, size_t n,
                     const pd_key *keys, const pd_bytes *vals) {
    uint64_t bytes;
    int rc = s_check_keys(c, op, n, keys, vals, &bytes);
    return rc ? rc : s_check_size(c, op, vals, bytes);
}

/* What every keyed request checks before it is sent: the handle works,
 * the batch fits a request, every key can cross the wire, the replies of
 * earlier requests have been read (for an append, `pipelined`: enough of
 * them), and a request with values (vals) fits our server's max_message,
 * which would drop it with the connection. */
int pd__client_prepare(pd__client *c, const char *op, size_t n,
                       const pd_key *keys, const pd_bytes *vals,
                       bool pipelined) {
    uint64_t bytes;
    int rc = s_check_keys(c, op, n, keys, vals, &bytes);
    if (!rc)
        rc = pipelined ? s_room(c, op, bytes) : pd__client_settle(c, op, false);
    return rc ? rc : s_check_size(c, op, vals, bytes);
}
