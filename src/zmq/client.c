/*
 * The ZeroMQ Client: a pd_store whose calls run on a Server (ours or
 * Python partd's), over a DEALER socket.  See partd/zmq.h.
 *
 * Protocol state: `q` holds the requests sent whose final reply is still
 * due, oldest first, each described for messages.  Every call but append
 * first reads them all (s_settle), then sends its own request; append,
 * iset, delete and drop leave their reply pending unless PD_CLIENT_SYNC;
 * get and keys read everything.  With a Python server one request is in
 * flight, as the reference client does.  With ours, append only reads
 * replies until fewer than `window` appends (and S_WINDOW_BYTES of them)
 * are in flight (s_room), so a stream of appends is not paced by the round
 * trip: the server runs requests in the order sent, one at a time.
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
#include <time.h>
#include <zmq.h>

/* Bounds on the appends in flight to our server (see s_room). */
#define S_WINDOW_MAX PD_CLIENT_WINDOW_MAX
#define S_WINDOW_BYTES ((uint64_t)32 << 20)

/* A request awaiting its final reply. */
typedef struct s_req {
    char what[192]; /* what it asked, for messages */
    uint64_t bytes; /* its payload */
} s_req;

typedef struct s_client {
    pd_store base;
    char *address;
    void *ctx, *sock;
    pid_t pid; /* process that made ctx */
    int timeout_ms;
    unsigned flags;
    uint64_t max_message;
    char curve_server[41], curve_public[41], curve_secret[41];
    bool curve;

    s_req q[S_WINDOW_MAX]; /* requests awaiting their final reply (ring) */
    unsigned qhead, nq;
    uint64_t qbytes;  /* payload bytes of the requests in q */
    bool pending_syn; /* q's oldest answers our own `syn` */
    unsigned window;  /* appends in flight allowed with our server */
    int ours;         /* -1 unknown, 0 another server, 1 libpartd */

    pd__wbuf wb;  /* wire keys */
    size_t *koff; /* their offsets in wb */
    size_t koffcap;
    zmq_msg_t *msgs; /* a received message */
    size_t nmsgs, msgcap;
    pd_bytes *frames;
    size_t framecap;
} s_client;

static const pd_store_ops s_client_ops;

static s_client *s_cl(const pd_store *s) {
    return s && s->ops == &s_client_ops ? (s_client *)s : NULL;
}

/* ------------------------------------------------------------ In flight */

static s_req *s_oldest(s_client *c) { return &c->q[c->qhead]; }

static s_req *s_newest(s_client *c) {
    return &c->q[(c->qhead + c->nq - 1) % S_WINDOW_MAX];
}

/* Records a request just sent (described next, in s_newest). */
static void s_push(s_client *c, uint64_t bytes) {
    s_req *r = &c->q[(c->qhead + c->nq) % S_WINDOW_MAX];
    r->what[0] = 0;
    r->bytes = bytes;
    c->nq++;
    c->qbytes += bytes;
}

/* Forgets the oldest request: its final reply has been read. */
static void s_pop(s_client *c) {
    c->qbytes -= s_oldest(c)->bytes;
    c->qhead = (c->qhead + 1) % S_WINDOW_MAX;
    c->nq--;
    c->pending_syn = false;
}

static void s_forget_all(s_client *c) {
    c->qhead = c->nq = 0;
    c->qbytes = 0;
    c->pending_syn = false;
}

static int64_t s_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ Sockets */

static void s_drop_msgs(s_client *c) {
    for (size_t i = 0; i < c->nmsgs; i++) zmq_msg_close(&c->msgs[i]);
    c->nmsgs = 0;
}

static int s_setopt_int(void *sock, int opt, int v) {
    return zmq_setsockopt(sock, opt, &v, sizeof v);
}

/* A new socket, connected, with `syn` sent (as the reference client does).
 * 0 or an error recorded on the handle (or the thread, when opening). */
static int s_connect(s_client *c, pd_store *errs) {
    void *sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!sock)
        return pd__err(errs, PD_ERR_IO, zmq_errno(), "connect %s: zmq_socket",
                       c->address);
    int64_t maxmsg = c->max_message > INT64_MAX ? -1 : (int64_t)c->max_message;
    int rc = 0;
    if (s_setopt_int(sock, ZMQ_LINGER, 0) ||
        s_setopt_int(sock, ZMQ_SNDTIMEO, c->timeout_ms) ||
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
    s_forget_all(c);
    s_push(c, 0);
    c->pending_syn = true;
    snprintf(s_newest(c)->what, sizeof s_newest(c)->what, "syn (connecting)");
    return 0;
}

/* Records msg (a message read back from this handle, "client: ...") as the
 * handle's error again, after calls that may have replaced it. */
static void s_rerecord(s_client *c, int code, int sys, const char *msg) {
    const char *p = msg;
    if (strncmp(p, "client: ", 8) == 0) p += 8;
    pd__err(&c->base, code, sys, "%s", p);
}

/* Drops the connection and makes a new one: nothing received on the old
 * socket can reach later calls.  Keeps the current error message. */
static void s_reset(s_client *c) {
    s_drop_msgs(c);
    if (c->sock) zmq_close(c->sock);
    c->sock = NULL;
    s_forget_all(c);
    char keep[PD__MSG_MAX];
    int code = pd_errcode(&c->base), sys = pd_errno(&c->base);
    snprintf(keep, sizeof keep, "%s", pd_errmsg(&c->base));
    if (s_connect(c, &c->base) != 0) c->sock = NULL;
    /* Restore the error that caused the reset: it is the one to report.
     * (A failed reconnect is found again by the next call.) */
    s_rerecord(c, code, sys, keep);
}

/* The parents' contexts and sockets that forked children left alone: kept
 * in a global list for the life of the process, so they stay reachable
 * (memory checkers do not report them) and are never closed. */
static pthread_mutex_t s_orphan_mu = PTHREAD_MUTEX_INITIALIZER;
static void **s_orphans;
static size_t s_norphans;

/* In a forked child: leave the parent's context and socket alone and make
 * new ones. */
static int s_after_fork(s_client *c) {
    pthread_mutex_lock(&s_orphan_mu);
    void **no = realloc(s_orphans, (s_norphans + 3) * sizeof *no);
    if (no) {
        s_orphans = no;
        s_orphans[s_norphans++] = c->ctx;
        s_orphans[s_norphans++] = c->sock;
        s_orphans[s_norphans++] = c->msgs; /* the parent's messages */
        c->msgs = NULL;
        c->msgcap = 0;
    }
    pthread_mutex_unlock(&s_orphan_mu);
    if (!no) return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "fork: reopen");
    c->ctx = NULL;
    c->sock = NULL;
    c->nmsgs = 0; /* the parent's messages: not ours to close */
    s_forget_all(c);
    c->pid = pd__getpid();
    c->ctx = zmq_ctx_new();
    if (!c->ctx)
        return pd__err(&c->base, PD_ERR_IO, zmq_errno(),
                       "fork: reopen %s: zmq_ctx_new", c->address);
    return s_connect(c, &c->base);
}

/* Every op starts here: a forked child gets its own connection; a handle
 * whose reconnect failed tries again. */
static int s_ready(s_client *c) {
    if (c->pid != pd__getpid()) {
        int rc = s_after_fork(c);
        if (rc) return rc;
    }
    if (!c->sock) return s_connect(c, &c->base);
    return 0;
}

/* ------------------------------------------------------------ Waiting */

/* Receives one whole message into c->msgs / c->frames.  0, PD_ERR_TIMEOUT,
 * or PD_ERR_IO (recorded; `op` names the call). */
static int s_recv(s_client *c, const char *op, const char *waiting_for) {
    s_drop_msgs(c);
    int64_t deadline = s_now_ms() + c->timeout_ms;
    for (;;) {
        if (pd__grow((void **)&c->msgs, &c->msgcap, c->nmsgs + 1,
                     sizeof *c->msgs))
            return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM,
                           "%s: receive from %s", op, c->address);
        zmq_msg_t *m = &c->msgs[c->nmsgs];
        zmq_msg_init(m);
        int r = zmq_msg_recv(m, c->sock, ZMQ_DONTWAIT);
        if (r >= 0) {
            c->nmsgs++;
            if (!zmq_msg_more(m)) break;
            continue; /* the rest of the message is here already */
        }
        zmq_msg_close(m);
        int e = zmq_errno();
        if (e == EINTR) continue;
        if (e != EAGAIN || c->nmsgs > 0)
            return pd__err(&c->base, PD_ERR_IO, e, "%s: receive from %s", op,
                           c->address);
        int64_t left = deadline - s_now_ms();
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
    if (pd__grow((void **)&c->frames, &c->framecap, c->nmsgs,
                 sizeof *c->frames))
        return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "%s: receive from %s",
                       op, c->address);
    for (size_t i = 0; i < c->nmsgs; i++)
        c->frames[i] =
            (pd_bytes){zmq_msg_data(&c->msgs[i]), zmq_msg_size(&c->msgs[i])};
    /* Which server is it?  Ours shows its routing id (see partd/zmq.h). */
    const char *id = zmq_msg_gets(&c->msgs[0], "Identity");
    c->ours = id && strcmp(id, PD_SERVER_IDENTITY) == 0 ? 1 : 0;
    return 0;
}

/* A failure that leaves the stream out of step: reset, then return. */
static int s_broken(s_client *c, int rc) {
    s_reset(c);
    return rc;
}

/* Interprets the final reply just received for request `what`.  `prev`:
 * it answers an earlier call's request (so the message says so). */
static int s_final(s_client *c, const char *op, const char *what, bool prev) {
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
    return s_broken(c, PD_ERR_PROTOCOL);
}

/* Reads the oldest final reply still due.  `own`: the newest request is
 * the current call's (get, keys, sync), not an earlier call's. */
static int s_settle_one(s_client *c, const char *op, bool own) {
    s_req r = *s_oldest(c);
    bool prev = !(own && c->nq == 1) && !c->pending_syn;
    int rc = s_recv(c, op, r.what);
    if (rc) return s_broken(c, rc);
    s_pop(c);
    rc = s_final(c, op, r.what, prev);
    s_drop_msgs(c);
    return rc;
}

/* Reads every final reply still due.  An error is the first failed
 * request's, noting how many later ones failed too: the replies after it
 * are read all the same, so the handle stays in step. */
static int s_settle_as(s_client *c, const char *op, bool own) {
    int first = 0, sys = 0, later = 0;
    char msg[PD__MSG_MAX];
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
            sys = pd_errno(&c->base);
            snprintf(msg, sizeof msg, "%s", pd_errmsg(&c->base));
        }
    }
    if (later) {
        char more[PD__MSG_MAX + 64];
        snprintf(more, sizeof more, "%s (and %d later request%s failed too)",
                 msg, later, later == 1 ? "" : "s");
        s_rerecord(c, first, sys, more);
    } else if (first) {
        s_rerecord(c, first, sys, msg);
    }
    return first;
}

static int s_settle(s_client *c, const char *op) {
    return s_settle_as(c, op, false);
}

/* ------------------------------------------------------------ Sending */

/* Sends one frame; `more`: frames follow. */
static int s_send_frame(s_client *c, const char *op, const void *data,
                        size_t size, bool more) {
    int fl = more ? ZMQ_SNDMORE : 0;
    for (;;) {
        if (zmq_send(c->sock, size ? data : "", size, fl) >= 0) return 0;
        int e = zmq_errno();
        if (e == EINTR) continue;
        if (e == EAGAIN)
            return pd__err(&c->base, PD_ERR_TIMEOUT, 0,
                           "%s: could not send to %s within %d ms (the "
                           "server does not read); connection reset",
                           op, c->address, c->timeout_ms);
        return pd__err(&c->base, PD_ERR_IO, e, "%s: send to %s", op,
                       c->address);
    }
}

/* Puts the wire forms of keys[0..n) in c->wb.  0 or PD_ERR_KEY/NOMEM. */
static int s_wire_keys(s_client *c, const char *op, size_t n,
                       const pd_key *keys) {
    c->wb.len = 0;
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

static pd_bytes s_wkey(s_client *c, size_t i) {
    return (pd_bytes){c->wb.p + c->koff[i], c->koff[i + 1] - c->koff[i]};
}

/* Describes the request just sent, for messages about its reply. */
static void s_describe(s_client *c, const char *cmd, size_t n,
                       const pd_key *keys) {
    s_req *r = s_newest(c);
    if (n == 0) {
        snprintf(r->what, sizeof r->what, "%s", cmd);
        return;
    }
    char ks[PD__KEYSHORT_MAX];
    snprintf(r->what, sizeof r->what, "%s of %zu key%s (%s%s)", cmd, n,
             n == 1 ? "" : "s", pd__key_short(&keys[0], ks),
             n > 1 ? ", ..." : "");
}

static int s_check_count(s_client *c, const char *op, size_t n) {
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
static int s_send(s_client *c, const char *op, const char *cmd,
                  const pd_key *keys, const pd_bytes *vals, size_t from,
                  size_t count) {
    int rc = s_send_frame(c, op, cmd, strlen(cmd), count > 0);
    uint64_t bytes = 0;
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
    if (rc) return s_broken(c, rc);
    s_push(c, bytes);
    s_describe(c, cmd, count, count ? keys + from : NULL);
    return 0;
}

/* After sending a request whose reply may stay pending. */
static int s_maybe_sync(s_client *c, const char *op) {
    if (c->flags & PD_CLIENT_SYNC) return s_settle_as(c, op, true);
    return 0;
}

/* Before an append of `bytes` is sent: reads the oldest replies until the
 * append fits the window (fewer than `window` requests and at most
 * S_WINDOW_BYTES in flight with it; none with a server that is not ours, or
 * with PD_CLIENT_SYNC).  Only a full window is read, so where an error is
 * reported does not depend on timing.  An error reply stops it: the append
 * is then not sent (later replies stay due). */
static int s_room(s_client *c, const char *op, uint64_t bytes) {
    unsigned w = c->ours == 1 && !(c->flags & PD_CLIENT_SYNC) ? c->window : 1;
    while (c->nq > 0 && (c->nq >= w || c->qbytes + bytes > S_WINDOW_BYTES)) {
        int rc = s_settle_one(c, op, false);
        if (rc) return rc;
    }
    return 0;
}

/* What every keyed request checks before it is sent: the handle works,
 * the batch fits a request, every key can cross the wire, the replies of
 * earlier requests have been read (for an append, `pipelined`: enough of
 * them), and a request with values (vals) fits our server's max_message,
 * which would drop it with the connection. */
static int s_prepare(s_client *c, const char *op, size_t n, const pd_key *keys,
                     const pd_bytes *vals, bool pipelined) {
    int rc = s_ready(c);
    if (!rc) rc = s_check_count(c, op, n);
    if (!rc) rc = s_wire_keys(c, op, n, keys);
    uint64_t bytes = c->wb.len + strlen(op);
    for (size_t i = 0; vals && i < n; i++) bytes += vals[i].size;
    if (!rc) rc = pipelined ? s_room(c, op, bytes) : s_settle(c, op);
    if (!rc && vals && c->ours != 0 && bytes > c->max_message)
        rc = pd__err(&c->base, PD_ERR_LIMIT, 0,
                     "%s: a request of %" PRIu64 " bytes to %s is over the "
                     "largest message, %" PRIu64
                     " bytes (max_message): split the batch",
                     op, bytes, c->address, c->max_message);
    return rc;
}

/* ------------------------------------------------------------ Ops */

/* The wire has no flags: a client cannot make the server fsync, and must
 * not pretend it did. */
static int s_no_fsync(s_client *c, const char *op, unsigned flags) {
    if (!(flags & PD_FSYNC)) return 0;
    return pd__err(&c->base, PD_ERR_UNSUPPORTED, 0,
                   "%s: PD_FSYNC cannot be forwarded to the server at %s (the "
                   "protocol has no flags): serve a File opened with "
                   "PD_FILE_FSYNC instead",
                   op, c->address);
}

static int s_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    s_client *c = (s_client *)s;
    int rc = s_no_fsync(c, "append", flags);
    if (rc) return rc;
    rc = s_prepare(c, "append", n, keys, vals, true);
    if (rc) return rc;
    rc = s_send(c, "append", "append", keys, vals, 0, n);
    if (rc) return rc;
    return s_maybe_sync(c, "append");
}

static int s_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    s_client *c = (s_client *)s;
    int rc = s_prepare(c, "get", n, keys, NULL, false);
    if (rc) return rc;
    rc = s_send(c, "get", "get", keys, NULL, 0, n);
    if (rc) return rc;
    char what[sizeof c->q[0].what];
    memcpy(what, s_newest(c)->what, sizeof what);
    rc = s_recv(c, "get", what);
    if (rc) return s_broken(c, rc);
    if (c->nmsgs != n) {
        /* Only a request the server could not parse gets an error reply
         * alone; with n != 3 it cannot be mistaken for values. */
        int code;
        pd_bytes msg;
        if (pd__wire_final(c->nmsgs, c->frames, &code, &msg) == 1) {
            s_pop(c);
            return s_final(c, "get", what, false);
        }
        pd__err(&c->base, PD_ERR_PROTOCOL, 0,
                "get: the server at %s sent %zu values for %zu keys; "
                "connection reset",
                c->address, c->nmsgs, n);
        return s_broken(c, PD_ERR_PROTOCOL);
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
    s_drop_msgs(c);
    /* The final reply follows the values at once. */
    rc = s_settle_as(c, "get", true);
    if (rc == 0 && err)
        rc = pd__err(&c->base, err, ENOMEM, "get: %" PRIu64 " bytes from %s",
                     total, c->address);
    return rc;
}

static int s_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    (void)flags;
    s_client *c = (s_client *)s;
    int rc = s_prepare(c, "delete", n, keys, NULL, false);
    if (rc) return rc;
    rc = s_send(c, "delete", "delete", keys, NULL, 0, n);
    if (rc) return rc;
    return s_maybe_sync(c, "delete");
}

static int s_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    s_client *c = (s_client *)s;
    int rc = s_no_fsync(c, "iset", flags);
    if (rc) return rc;
    rc = s_prepare(c, "iset", n, keys, vals, false); /* also: which server */
    if (rc) return rc;
    if (c->ours == 1) {
        rc = s_send(c, "iset", "iset", keys, vals, 0, n);
        if (rc) return rc;
        return s_maybe_sync(c, "iset");
    }
    /* Python's server takes one key per iset. */
    for (size_t i = 0; i < n; i++) {
        if (i) {
            rc = s_settle(c, "iset");
            if (rc) return rc;
        }
        rc = s_send(c, "iset", "iset", keys, vals, i, 1);
        if (rc) return rc;
    }
    return s_maybe_sync(c, "iset");
}

static int s_drop(pd_store *s, unsigned flags) {
    (void)flags;
    s_client *c = (s_client *)s;
    int rc = s_ready(c);
    if (!rc) rc = s_settle(c, "drop");
    if (rc) return rc;
    rc = s_send(c, "drop", "drop", NULL, NULL, 0, 0);
    if (rc) return rc;
    return s_maybe_sync(c, "drop");
}

static int s_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    s_client *c = (s_client *)s;
    int rc = s_ready(c);
    if (!rc) rc = s_settle(c, "keys");
    if (rc) return rc;
    if (c->ours != 1)
        return pd__err(&c->base, PD_ERR_UNSUPPORTED, 0,
                       "keys: the server at %s is not libpartd's (Python "
                       "partd?): it has no keys command",
                       c->address);
    rc = s_send(c, "keys", "keys", NULL, NULL, 0, 0);
    if (rc) return rc;
    rc = s_recv(c, "keys", "keys");
    if (rc) return s_broken(c, rc);
    int code;
    pd_bytes msg;
    if (pd__wire_final(c->nmsgs, c->frames, &code, &msg) == 1) {
        s_pop(c);
        return s_final(c, "keys", "keys", false);
    }
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
        return s_broken(c, PD_ERR_PROTOCOL);
    }
    int err = 0;
    for (size_t i = 1; i < nf && !err; i += 2)
        err = pd__keylist_add_packed(kl, c->frames[i].data, c->frames[i].size,
                                     pd__wire_get_u64(c->frames[i + 1].data));
    s_drop_msgs(c);
    rc = s_settle_as(c, "keys", true);
    if (rc == 0 && err)
        rc = pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "keys: list");
    return rc;
}

static int s_flush(pd_store *s) {
    s_client *c = (s_client *)s;
    /* Only a request of the caller's is worth waiting for: a `syn` still
     * unanswered (nothing was asked, or the server was unreachable and the
     * connection reset) is not. */
    if (c->pid != pd__getpid() || !c->sock || c->pending_syn) return 0;
    return s_settle(c, "close");
}

static int s_destroy(pd_store *s) {
    s_client *c = (s_client *)s;
    if (c->pid == pd__getpid()) {
        s_drop_msgs(c);
        if (c->sock) zmq_close(c->sock);
        if (c->ctx) zmq_ctx_term(c->ctx);
    } else {
        pthread_mutex_lock(&s_orphan_mu);
        void **no = realloc(s_orphans, (s_norphans + 3) * sizeof *no);
        if (no) {
            s_orphans = no;
            s_orphans[s_norphans++] = c->ctx;
            s_orphans[s_norphans++] = c->sock;
            s_orphans[s_norphans++] = c->msgs;
            c->msgs = NULL;
        }
        pthread_mutex_unlock(&s_orphan_mu);
    }
    /* A context made by the parent (this handle was never used in this
     * child) belongs to it: never closed here. */
    free(c->address);
    free(c->msgs);
    free(c->frames);
    free(c->koff);
    pd__wbuf_free(&c->wb);
    return 0;
}

static const pd_store_ops s_client_ops = {
    .kind = "client",
    .append = s_append,
    .get = s_get,
    .del = s_del,
    .set = s_set,
    .drop = s_drop,
    .keys = s_keys,
    .flush = s_flush,
    .destroy = s_destroy,
};

/* ------------------------------------------------------------ Public */

static int s_key_ok(const char *k) {
    uint8_t raw[32];
    return k && strlen(k) == PD_CURVE_KEY_LEN && zmq_z85_decode(raw, k);
}

int pd_client_open(pd_store **out, const char *address,
                   const pd_client_opts *o) {
    if (!out) return pd__err(NULL, PD_ERR_MISUSE, 0, "client: open: NULL out");
    *out = NULL;
    if (!address || !*address)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "client: open: no address");
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
        if (!s_key_ok(o->curve_server_key) ||
            (o->curve_public && !s_key_ok(o->curve_public)) ||
            (o->curve_secret && !s_key_ok(o->curve_secret)) ||
            (!o->curve_public != !o->curve_secret))
            return pd__err(NULL, PD_ERR_MISUSE, 0,
                           "client: open %s: CURVE keys must be 40 z85 "
                           "characters, and the client's public and secret "
                           "key given together",
                           address);
    }
    s_client *c = calloc(1, sizeof *c);
    if (!c) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "client: open");
    int rc = pd__store_init(&c->base, &s_client_ops);
    if (rc) {
        free(c);
        return rc;
    }
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
        rc = s_connect(c, NULL);
        if (rc) {
            char msg[PD__MSG_MAX];
            snprintf(msg, sizeof msg, "%s", pd_errmsg(NULL));
            pd__err(NULL, rc, pd_errno(NULL), "client: open: %s", msg);
        }
    }
    if (rc) {
        char msg[PD__MSG_MAX];
        int sys = pd_errno(NULL);
        snprintf(msg, sizeof msg, "%s", pd_errmsg(NULL));
        s_destroy(&c->base);
        pd__store_fini(&c->base);
        free(c);
        pd__err(NULL, rc, 0, "%s", msg);
        pd__err_set_sys(NULL, sys);
        return rc;
    }
    *out = &c->base;
    pd__err_clear(NULL);
    return 0;
}

const char *pd_client_address(const pd_store *s) {
    s_client *c = s_cl(s);
    return c ? c->address : NULL;
}

int pd_client_server_is_ours(const pd_store *s) {
    s_client *c = s_cl(s);
    return c ? c->ours : -1;
}

/* Runs fn under the handle's lock, as the store dispatchers do. */
static int s_locked(pd_store *s, const char *op, int (*fn)(s_client *)) {
    s_client *c = s_cl(s);
    if (!c) return pd__err(s, PD_ERR_MISUSE, 0, "%s: not a client store", op);
    int rc = pd_lock(s);
    if (rc) return rc;
    pd__err_clear(s);
    rc = s_ready(c);
    if (rc == 0) rc = fn(c);
    if (rc) {
        /* pd_unlock clears the error on success: keep ours. */
        char msg[PD__MSG_MAX];
        int code = pd_errcode(s), sys = pd_errno(s);
        snprintf(msg, sizeof msg, "%s", pd_errmsg(s));
        pd_unlock(s);
        s_rerecord(c, code, sys, msg);
        return rc;
    }
    return pd_unlock(s);
}

static int s_sync_fn(s_client *c) { return s_settle(c, "sync"); }

static int s_close_fn(s_client *c) {
    int rc = s_settle(c, "close_server");
    if (rc) return rc;
    rc = s_send(c, "close_server", "close", NULL, NULL, 0, 0);
    if (rc) return rc;
    return s_settle_as(c, "close_server", true);
}

int pd_client_sync(pd_store *s) {
    if (!s) return pd__err(NULL, PD_ERR_MISUSE, 0, "client: sync: NULL");
    return s_locked(s, "sync", s_sync_fn);
}

int pd_client_close_server(pd_store *s) {
    if (!s)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "client: close_server: NULL");
    return s_locked(s, "close_server", s_close_fn);
}
