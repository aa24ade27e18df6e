/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Private declarations of the ZeroMQ transport (src/zmq/):
 *   wire.c         the wire forms of keys and replies; helpers both ends use
 *   handler.c      the server's socket-free request handler (pd__handle),
 *                  also the fuzz target's entry point (tests/fuzz/
 *                  fuzz_server.c)
 *   server.c       the serving loop: receive, reply, run/start/stop
 *   server_open.c  opening (binds, the default store) and closing a server
 *   lease_srv.c    the handler's namespace leases: the lease request, the
 *                  table, expiry
 *   attempt_srv.c  the handler's writer attempts: the attempt_* requests
 *                  and the table of open attempts
 *   curve.c        CURVE keys, z85 checks, the ZAP allow-list handler
 *   client_pipe.c  the Client's connection: requests in flight, replies
 *   client.c       the Client's store ops and public calls
 *   client_attempt.c  the Client's attempt ops
 */
#ifndef PARTD_ZMQ_INTERNAL_H
#define PARTD_ZMQ_INTERNAL_H

#include "core/buf.h"
#include "core/internal.h"

#include <stdatomic.h>
#include <zmq.h>

/* The tuple separator of Python partd's wire keys. */
#define PD__WIRE_SEP "-|-"
#define PD__WIRE_SEP_LEN 3

/* Most keys in one request: a request has at most 2 * PD__WIRE_MAX_KEYS + 1
 * frames (append: command, then key and value per key).  Bounds what the
 * server allocates per request beside the frames' bytes. */
#define PD__WIRE_MAX_KEYS ((size_t)1 << 19)
#define PD__WIRE_MAX_FRAMES (2 * PD__WIRE_MAX_KEYS + 1)

/* ------------------------------------------------------------ Shared */

/* A monotonic clock in milliseconds, for deadlines and rate limits. */
int64_t pd__now_ms(void);
/* zmq_setsockopt of an int option.  0 or -1 (zmq_errno says why). */
int pd__sockopt_int(void *sock, int opt, int v);
/* True when key is 40 z85 characters encoding 32 bytes (a CURVE key). */
bool pd__z85_ok(const char *key);

/* ------------------------------------------------------------ Keys */

/*
 * Appends key's wire form to b (a flat key: its bytes; a tuple: its parts
 * joined by "-|-").  *off and *len (may be NULL) get where it landed.
 * Returns 0, PD_ERR_KEY when the form would not decode back to the same key
 * (it contains "-|-" where the server would split it differently), with the
 * reason in why (64 bytes), or PD_ERR_NOMEM.  On error b->len is unchanged.
 */
int pd__wire_key_put(pd__buf *b, const pd_key *key, size_t *off, size_t *len,
                     char why[64]);

/* True when frame f is exactly the C string s (a command, a reply word). */
int pd__wire_is(const pd_bytes *f, const char *s);

/* True when a flat key's bytes contain the separator. */
int pd__wire_has_sep(const void *data, size_t n);

/* Decoded keys of one request: keys[i] points into the frames and parts[]. */
typedef struct pd__wkeys {
    pd_key *keys;
    size_t keycap;
    pd_bytes *parts;
    size_t partcap;
} pd__wkeys;

/*
 * Decodes n wire keys, frames[0], frames[stride], ... (the server's
 * deserialize_key: a key containing "-|-" is the tuple of the pieces between
 * separators, else flat) into w->keys[0..n).  The keys point into the
 * frames.  Returns 0, PD_ERR_LIMIT when a key has more than
 * PD_KEY_MAX_PARTS parts (*bad = its index), PD_ERR_NOMEM.
 */
int pd__wire_keys_decode(pd__wkeys *w, size_t n, const pd_bytes *frames,
                         size_t stride, size_t *bad);
void pd__wkeys_free(pd__wkeys *w);

/* ------------------------------------------------------------ Replies */

/* The final reply to a request: [ack], or [error, CODE, MESSAGE]. */
#define PD__WIRE_ACK "ack"
#define PD__WIRE_ERROR "error"

/*
 * Classifies a message received where a final reply is due.  Returns 0 for
 * [ack]; 1 for a well-formed error reply, with *code (a negative PD_ERR_*
 * value; codes this library does not know become PD_ERR_PROTOCOL) and *msg
 * (pointing into the frames) set; -1 for anything else.
 */
int pd__wire_final(size_t n, const pd_bytes *frames, int *code, pd_bytes *msg);

/* Writes code as the ASCII decimal of an error reply; returns its length
 * (buf holds at least 12 bytes). */
size_t pd__wire_code(int code, char buf[12]);

/* Little-endian u64 (the keys reply, packed requests) and u32 (packed
 * requests); inline, since a packed index has a few per key. */
static inline void pd__wire_put_u64(unsigned char out[8], uint64_t v) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(v >> (8 * i));
}
static inline uint64_t pd__wire_get_u64(const unsigned char in[8]) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)in[i] << (8 * i);
    return v;
}
static inline void pd__wire_put_u32(unsigned char out[4], uint32_t v) {
    for (int i = 0; i < 4; i++) out[i] = (unsigned char)(v >> (8 * i));
}
static inline uint32_t pd__wire_get_u32(const unsigned char in[4]) {
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
           (uint32_t)in[3] << 24;
}

/* ------------------------------------------------------------ Packed */

/* The packed forms of append and get, which only our client sends to our
 * server (docs/zmq.md, "Packed append and get"):
 *   [append_packed, INDEX, DATA]   INDEX: u32 count, then per key u32 key
 *                                  length, u64 value length, key bytes;
 *                                  DATA: the values, concatenated
 *   [get_packed, INDEX, LIMIT]     INDEX: u32 count, then per key u32 key
 *                                  length, key bytes; LIMIT: u64, the
 *                                  largest reply frame the client takes
 * and a packed get's results message [LENGTHS, DATA...]: LENGTHS a u32
 * count, then a u64 length per value; DATA the values, concatenated, cut
 * into frames of at most LIMIT bytes (one frame, empty when there are no
 * bytes, if they fit).  All integers little-endian. */
#define PD__WIRE_APPEND_PACKED "append_packed"
#define PD__WIRE_GET_PACKED "get_packed"
/* The smallest frame limit with which our client sends get_packed (a
 * smaller max_message: the per-key get), so a reply is never cut into
 * more than a few frames per key. */
#define PD__WIRE_PACKED_MIN_FRAME ((uint64_t)1 << 16)

/* ------------------------------------------------------------ Stats */

/* The commands counted per name in pd_server_stats (req_*). */
enum {
    PD__CMD_SYN,
    PD__CMD_APPEND,
    PD__CMD_GET,
    PD__CMD_ISET,
    PD__CMD_DELETE,
    PD__CMD_DROP,
    PD__CMD_KEYS,
    PD__CMD_STATS,
    PD__CMD_CLOSE,
    PD__CMD_ATTEMPT, /* the four attempt_* requests */
    PD__CMD_OTHER,
    PD__CMD_N
};

/* A member of pd_server_stats as the stats reply names it: the reply is
 * [name, 8-byte little-endian value] per member (docs/zmq.md). */
typedef struct pd__stat_field {
    const char *name;
    size_t off; /* offsetof(pd_server_stats, member) */
} pd__stat_field;
extern const pd__stat_field pd__stat_fields[];
extern const size_t pd__nstat_fields;

/* This process's resident set size in bytes (/proc/self/statm), 0 if it
 * cannot be read. */
uint64_t pd__rss_bytes(void);

/* ------------------------------------------------------------ Handler */

/* Sends one reply message of n frames to the peer that sent the request.
 * Returns 0, or nonzero when the reply could not be queued (the caller's
 * own business: logged, never fatal). */
typedef int (*pd__emit_fn)(void *arg, size_t n, const pd_bytes *frames);
/* The same, with `own` a malloc'd block of len bytes the callee takes: the
 * frames of PD__SERVER_SHARE_MIN bytes or more that lie in it are sent
 * without a copy (the others are copied), and it is freed once the last of
 * them is sent or dropped (at once when none is). */
typedef int (*pd__emit_own_fn)(void *arg, size_t n, const pd_bytes *frames,
                               void *own, size_t len);

/* Namespaces a server leases at once (a new one past it: PD_ERR_LIMIT), and
 * the longest lease (about 24 days): docs/zmq.md, "Leases". */
#define PD__LEASES_MAX 4096
#define PD__LEASE_MAX_MS 2147483647u

struct pd__lease; /* a leased namespace (lease_srv.c) */
/* Open attempts a server keeps (a begin past it: PD_ERR_LIMIT), and how
 * long one may go without a request before the server aborts it (its
 * client is taken for gone: docs/zmq.md, "Attempts"). */
#define PD__ATTEMPTS_MAX 4096
#define PD__ATTEMPT_IDLE_MS ((int64_t)600 * 1000)
/* Why a server may not know an attempt, in its error reply; the client
 * tells the caller the attempt was lost when it reads this. */
#define PD__ATTEMPT_LOST_WHY                                                   \
    "never begun, already committed or aborted, aborted after going idle, "    \
    "or begun before the server restarted"

struct pd__hatt; /* an open attempt (attempt_srv.c) */

/* The server's request handler: state and scratch reused across requests. */
typedef struct pd__handler {
    pd_store *store; /* locked by the serving thread: calls use PD_NOLOCK */
    unsigned flags;  /* PD_SERVER_NO_CLOSE */
    pd__emit_fn emit;
    pd__emit_own_fn emit_own; /* NULL: emit copies every reply */
    void *emit_arg;

    /* Outcome of the last request: code 0 or its error, and a message
     * naming the command and why ("" when fine). */
    int code;
    int malformed; /* the request could not be parsed (not a store error) */
    char msg[PD__MSG_MAX];

    /* scratch */
    pd__wkeys wk;
    pd_bytes *kf; /* the keys of a packed request, in its index frame */
    size_t kfcap;
    pd_bytes *vals;
    size_t valcap;
    pd_bytes *out;
    size_t outcap;
    unsigned char *nums; /* 8-byte sizes of a keys reply */
    size_t numcap;

    /* Figures for the stats command, counted by pd__handle. */
    uint64_t req[PD__CMD_N];
    uint64_t requests, failed, records, appended_bytes;
    uint64_t connections; /* kept by the server from its monitor */
    int64_t start_ms;     /* pd__now_ms when serving started; 0: never */

    /* Namespace leases (lease_srv.c). */
    struct pd__lease *leases;
    size_t nleases, leasecap;
    uint64_t leases_expired;
    /* Writer attempts (attempt_srv.c): the table, its bounds (set by
     * whoever makes the handler; the tests lower them), and counts. */
    struct pd__hatt *att;
    size_t natt, att_max;
    int64_t att_idle_ms, att_swept_ms;
    uint64_t att_next; /* the next token (0: not seeded yet) */
    uint64_t att_committed, att_aborted, att_conflicted, att_expired;
} pd__handler;

/* Results of pd__handle besides the error codes. */
#define PD__HANDLE_OK 0
#define PD__HANDLE_CLOSE 1 /* `close` acknowledged: stop serving */

/*
 * Handles one request: frames[0] is the command, the rest its payload
 * (without the peer's routing id).  Runs it on h->store and emits the
 * replies (see WIRE PROTOCOL in partd/zmq.h): every request gets exactly
 * one final reply.  Returns PD__HANDLE_OK, PD__HANDLE_CLOSE, or the
 * negative code of a request that failed or was refused (h->msg says why;
 * h->malformed tells a refusal from a store error).  Never aborts on any
 * input.  n may be 0 (an empty request: refused).
 */
int pd__handle(pd__handler *h, size_t n, const pd_bytes *frames);

/* Answers the current request with an error reply of its own (a request
 * refused before pd__handle saw it: too large, no memory for its frames)
 * and records it as pd__handle would; `malformed` as in the handler.
 * Returns code. */
int pd__handle_fail(pd__handler *h, int code, int malformed, const char *fmt,
                    ...) PD__PRINTF(4, 5);

/* Fills st (the whole struct; st->size is left alone) with the handler's
 * counts and the store's figures, calling pd_keys with `flags`.  0, or the
 * store's error (its message on h->store). */
int pd__handler_stats(pd__handler *h, pd_server_stats *st, unsigned flags);

/* Answers the current request with [ack] (returns 0), or refuses it as
 * malformed with an error reply (returns code). */
int pd__handler_ack(pd__handler *h);
int pd__handler_refuse(pd__handler *h, int code, const char *fmt, ...)
    PD__PRINTF(3, 4);

/* lease_srv.c: the lease request ([lease, name, milliseconds]; pl: the
 * frames after the command); the earliest deadline of the leases
 * (pd__now_ms), -1 when there is none; drops the namespace of every lease
 * past its deadline at `now`, telling `log` (a line per lease); frees the
 * table. */
typedef void (*pd__lease_log_fn)(void *arg, int level, const char *line);
int pd__handle_lease(pd__handler *h, size_t np, const pd_bytes *pl);
int64_t pd__handler_lease_next(const pd__handler *h);
void pd__handler_leases_expire(pd__handler *h, int64_t now,
                               pd__lease_log_fn log, void *arg);
void pd__handler_leases_free(pd__handler *h);
/* Frees the handler's scratch and leases and aborts the attempts still
 * open (not the store, which must still be open). */
void pd__handler_fini(pd__handler *h);

/* Sends the error reply of h->code and h->msg. */
void pd__handler_emit_error(pd__handler *h);

/* attempt_srv.c: handles attempt_begin/append/commit/abort (cmd names
 * which; pl the frames after the command); aborts every open attempt; how
 * many are open. */
int pd__handle_attempt(pd__handler *h, const char *cmd, size_t np,
                       const pd_bytes *pl);
void pd__handler_attempts_close(pd__handler *h);
uint64_t pd__handler_attempts_open(const pd__handler *h);

/* A command's printable name for messages: its bytes, escaped and cut. */
const char *pd__wire_cmd_name(const pd_bytes *cmd, char buf[48]);

/* ------------------------------------------------------------ Server */

#define PD__SERVER_LOG_BURST 20 /* warnings per second, then suppressed */
#define PD__SERVER_RCVHWM 8
#define PD__SERVER_SNDHWM 64 /* replies queued for one peer */
#define PD__SERVER_LINGER_MS 1000
/* A reply frame at least this large is sent from the store's result
 * without a copy (pd__server_emit_own); smaller ones are copied. */
#define PD__SERVER_SHARE_MIN ((size_t)64 << 10)

enum { PD__SERVER_NEW, PD__SERVER_RUNNING, PD__SERVER_DONE };

/* An ipc socket file made by bind, removed on close if it is still the
 * same file. */
typedef struct pd__ipcfile {
    char *path;
    dev_t dev;
    ino_t ino;
} pd__ipcfile;

/* A Server: server.c runs it, server_open.c makes and frees it, curve.c
 * answers its ZAP requests. */
struct pd_server {
    void *ctx, *sock, *mon;
    pd_store *store;
    bool own_store, default_store;
    char **addrs;
    size_t naddrs;
    char *ipc_dir;  /* the default ipc directory, removed on close */
    char *ipc_path; /* its socket file */
    pd__ipcfile *ipcs;
    size_t nipcs;
    int pipefd[2]; /* written by pd_server_stop, polled by the loop */
    atomic_int stop;
    atomic_int state;   /* PD__SERVER_* */
    pthread_mutex_t mu; /* guards done-waiting */
    pthread_cond_t cv;
    pthread_t thread;
    bool have_thread;
    int run_rc;
    char run_msg[PD__MSG_MAX];

    pd_log_fn log;
    void *log_arg;
    int log_level;
    uint64_t max_message, idle_ms;
    unsigned flags;
    bool curve;
    void *zap;            /* the ZAP handler's socket, with an allow-list */
    uint8_t (*allow)[32]; /* the allowed clients' public keys */
    size_t nallow;

    pd__handler h;
    zmq_msg_t ident, scratch;
    zmq_msg_t *msgs;
    size_t msgcap;
    pd_bytes *frames;
    size_t framecap;
    zmq_msg_t *outm; /* the frames of a reply sent by pd__server_emit_own */
    size_t outmcap;

    /* log rate limit: at most PD__SERVER_LOG_BURST warnings per second */
    int64_t log_sec;
    unsigned log_count;
    unsigned long log_dropped;
    uint64_t served, refused;
    int64_t stopped_ms; /* when the run ended (pd_server_get_stats) */
};

/* server.c: a log line at `level` (rate-limited from warnings up), the
 * default log (stderr), and the handler's emit (a reply to the peer of the
 * current request; pd__server_emit_own: its large frames without a copy).
 */
void pd__server_log(pd_server *srv, int level, const char *fmt, ...)
    PD__PRINTF(3, 4);
void pd__server_log_stderr(void *arg, int level, const char *line);
int pd__server_emit(void *arg, size_t n, const pd_bytes *frames);
int pd__server_emit_own(void *arg, size_t n, const pd_bytes *frames, void *own,
                        size_t len);

/* curve.c: binds the ZAP handler that admits only the CURVE clients whose
 * public keys are in keys[0..n) (checked), before the server socket binds.
 * 0 or an error recorded on the thread. */
int pd__zap_open(pd_server *srv, size_t n, const char *const *keys);
/* Answers the ZAP requests waiting on srv->zap. */
void pd__zap_answer(pd_server *srv);

/* ------------------------------------------------------------ Client */

/* Bounds on the appends in flight to our server (see client_pipe.c). */
#define PD__CLIENT_WINDOW_BYTES ((uint64_t)32 << 20)
/* The largest frame our client asks a packed get's values in (LIMIT, when
 * max_message is larger): it copies each frame into the result and frees
 * it as it goes, so a get holds the values plus about one frame.  32 MiB
 * is over glibc's largest mmap threshold: each frame is its own mapping,
 * given back to the system when freed. */
#define PD__CLIENT_GET_FRAME ((uint64_t)32 << 20)

/* A request awaiting its final reply. */
typedef struct pd__creq {
    char what[192]; /* what it asked, for messages */
    uint64_t bytes; /* its payload */
} pd__creq;

typedef struct pd__client {
    pd_store base;
    char *address;
    void *ctx, *sock;
    pid_t pid; /* process that made ctx */
    int timeout_ms;
    unsigned flags;
    uint64_t max_message;
    char curve_server[41], curve_public[41], curve_secret[41];
    bool curve;

    pd__creq q[PD_CLIENT_WINDOW_MAX]; /* awaiting their final reply (ring) */
    unsigned qhead, nq;
    uint64_t qbytes;  /* payload bytes of the requests in q */
    bool pending_syn; /* q's oldest answers our own `syn` */
    unsigned window;  /* appends in flight allowed with our server */
    int ours;         /* -1 unknown, 0 another server, 1 libpartd */
    uint64_t gen;     /* connections made: an attempt begun on an earlier
                         one is lost (client_attempt.c) */

    pd__buf wb;   /* wire keys */
    size_t *koff; /* their offsets in wb */
    size_t koffcap;
    zmq_msg_t *msgs; /* a received message */
    size_t nmsgs, msgcap;
    pd_bytes *frames; /* its frames */
    size_t framecap;
} pd__client;

/* client_pipe.c.  Each records its error on the handle (pd__client_connect
 * on `errs`, NULL while opening), with `op` naming the public call. */

/* A new socket, connected, with `syn` sent. */
int pd__client_connect(pd__client *c, pd_store *errs);
/* Every op starts here: a forked child gets its own connection; a handle
 * whose reconnect failed tries again. */
int pd__client_ready(pd__client *c);
/* Closes the socket and context (leaves them alone in a forked child). */
void pd__client_hangup(pd__client *c);

/* The request just sent, the oldest one's reply read, a message released. */
pd__creq *pd__client_newest(pd__client *c);
void pd__client_pop(pd__client *c);
void pd__client_drop_msgs(pd__client *c);

/* Receives one whole message into c->msgs / c->frames within the timeout;
 * or in steps: its first frame (c->nmsgs 1; the one wait), then the rest
 * into c->msgs, or frame by frame into the caller's m (libzmq hands a
 * message over whole: no more waiting). */
int pd__client_recv(pd__client *c, const char *op, const char *waiting_for);
int pd__client_recv_head(pd__client *c, const char *op,
                         const char *waiting_for);
int pd__client_recv_rest(pd__client *c, const char *op);
int pd__client_recv_frame(pd__client *c, const char *op, zmq_msg_t *m);
/* A failure that leaves the stream out of step: reconnects (keeping the
 * error), returns rc. */
int pd__client_broken(pd__client *c, int rc);
/* Interprets the final reply just received for request `what`; `prev`: it
 * answers an earlier call's request. */
int pd__client_final(pd__client *c, const char *op, const char *what,
                     bool prev);
/* Reads every final reply still due; `own`: the newest request is the
 * current call's. */
int pd__client_settle(pd__client *c, const char *op, bool own);
/* Ready, earlier replies read, and a libpartd server (Python partd's has no
 * `what`, e.g. "keys command"): 0 or an error (recorded). */
int pd__client_ours(pd__client *c, const char *op, const char *what);
/* Reads the reply to the current call's request `what`: 0 with a data
 * reply in c->frames (*done false), or, for a final reply (*done true,
 * messages released), 0 or the error it names. */
int pd__client_reply(pd__client *c, const char *op, const char *what,
                     bool *done);

/* Checks a keyed request before it is sent (wire forms into c->wb, earlier
 * replies read: for an append, `pipelined`, only enough of them), sends
 * one, and reads its reply at once with PD_CLIENT_SYNC. */
int pd__client_prepare(pd__client *c, const char *op, size_t n,
                       const pd_key *keys, const pd_bytes *vals,
                       bool pipelined);
/* The part of pd__client_prepare that reads nothing from the server: the
 * handle works, the batch fits a request, every key can cross the wire,
 * a request with values fits max_message (when the server may be ours). */
int pd__client_check(pd__client *c, const char *op, size_t n,
                     const pd_key *keys, const pd_bytes *vals);
int pd__client_send(pd__client *c, const char *op, const char *cmd,
                    const pd_key *keys, const pd_bytes *vals, size_t from,
                    size_t count);
/* The same with nhead frames between the command and the keys (an
 * attempt's writer and number); `what` describes it for messages. */
int pd__client_send_head(pd__client *c, const char *op, const char *cmd,
                         const pd_bytes *head, size_t nhead, const char *what,
                         const pd_key *keys, const pd_bytes *vals, size_t n);
int pd__client_maybe_sync(pd__client *c, const char *op);
/* Whether a request of the n keys in c->wb (and vals: an append; NULL: a
 * get) goes in its packed form: to our server, known on this connection,
 * when its frames and its reply's pass max_message. */
bool pd__client_packs(pd__client *c, size_t n, const pd_bytes *vals);
/* Sends [append_packed, INDEX, DATA] (vals) or [get_packed, INDEX, LIMIT]
 * (vals NULL) of the n keys in c->wb, recorded like pd__client_send's
 * request `op` ("append" or "get"). */
int pd__client_send_packed(pd__client *c, const char *op, const pd_key *keys,
                           const pd_bytes *vals, size_t n);

/* client_attempt.c: the Client's attempt ops (pd_store_ops' att_*). */
PD__ATTEMPT_DECLS(pd__client_att_);

#endif /* PARTD_ZMQ_INTERNAL_H */
