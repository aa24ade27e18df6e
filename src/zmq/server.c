/*
 * The ZeroMQ Server: a ROUTER socket in front of one store, wire-compatible
 * with Python partd's partd.zmq.Server (see partd/zmq.h).
 *
 * Structure: pd__handle (the request handler) turns one request's frames
 * into store calls and reply messages through an emit callback; it knows
 * nothing of sockets, so the fuzz target drives it directly.  The serving
 * loop (s_serve) polls the ROUTER socket, a self-pipe written by
 * pd_server_stop (so a signal handler can stop it) and a monitor socket
 * (connection events, for the log); it reads one request at a time,
 * bounded in frames and bytes, hands it to pd__handle, and sends the
 * replies with ZMQ_DONTWAIT to the peer that asked.
 *
 * The store's lock is taken by the serving thread for the whole run (the
 * reference holds it too): other handles on the same store, in this
 * process or others, wait until the server stops.  Ops are then called with
 * PD_NOLOCK.
 */
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* ============================================================ Handler */

static int s_is(const pd_bytes *f, const char *s) {
    size_t n = strlen(s);
    return f->size == n && memcmp(f->data, s, n) == 0;
}

static void s_emit_ack(pd__handler *h) {
    pd_bytes f = {PD__WIRE_ACK, 3};
    h->emit(h->emit_arg, 1, &f);
}

static void s_emit_error(pd__handler *h) {
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

/* Records a refusal of a malformed request and answers it. */
static int s_refuse(pd__handler *h, int code, const char *fmt, ...)
    PD__PRINTF(3, 4);
static int s_refuse(pd__handler *h, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->msg, sizeof h->msg, fmt, ap);
    va_end(ap);
    h->code = code;
    h->malformed = 1;
    s_emit_error(h);
    return code;
}

/* Records a store error (the store's own message) and answers it. */
static int s_store_failed(pd__handler *h, int code) {
    snprintf(h->msg, sizeof h->msg, "%s", pd_errmsg(h->store));
    h->code = code;
    s_emit_error(h);
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
    if (!quiet) s_emit_error(h);
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
    s_emit_ack(h);
    return 0;
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
        s_emit_error(h);
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
        s_emit_error(h);
        return PD_ERR_NOMEM;
    }
    if (rc) {
        snprintf(h->msg, sizeof h->msg, "%s", pd_errmsg(h->store));
        h->code = rc;
        s_emit_empty_results(h, n);
        s_emit_error(h);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        pd_bytes v = pd_result_value(r, i);
        h->out[i] = v.size ? v : (pd_bytes){"", 0};
    }
    h->emit(h->emit_arg, n, h->out);
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

int pd__handle(pd__handler *h, size_t n, const pd_bytes *frames) {
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
    if (s_is(cmd, "append")) return s_pairs(h, "append", np, pl, 0);
    if (s_is(cmd, "get")) return s_get(h, np, pl);
    if (s_is(cmd, "syn")) {
        s_emit_ack(h);
        return 0;
    }
    if (s_is(cmd, "iset")) return s_pairs(h, "iset", np, pl, 1);
    if (s_is(cmd, "delete")) {
        rc = s_keys(h, "delete", np, pl, 1, 0);
        if (rc) return rc;
        rc = pd_delete(h->store, np, h->wk.keys, PD_NOLOCK);
        if (rc) return s_store_failed(h, rc);
        s_emit_ack(h);
        return 0;
    }
    if (s_is(cmd, "drop")) {
        rc = pd_drop(h->store, PD_NOLOCK);
        if (rc) return s_store_failed(h, rc);
        s_emit_ack(h);
        return 0;
    }
    if (s_is(cmd, "keys")) return s_keys_cmd(h);
    if (s_is(cmd, "close")) {
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
    pd__wkeys_free(&h->wk);
    free(h->vals);
    free(h->out);
    free(h->nums);
    h->vals = h->out = NULL;
    h->nums = NULL;
    h->valcap = h->outcap = h->numcap = 0;
}

/* ============================================================ Server */

enum { S_NEW, S_RUNNING, S_DONE };

struct pd_server {
    void *ctx, *sock, *mon;
    pd_store *store;
    bool own_store, default_store;
    char **addrs;
    size_t naddrs;
    char *ipc_dir;  /* the default ipc directory, removed on close */
    char *ipc_path; /* its socket file */
    struct s_ipcfile {
        char *path;
        dev_t dev;
        ino_t ino;
    } * ipcs; /* ipc socket files made by bind: removed on close */
    size_t nipcs;
    int pipefd[2];
    atomic_int stop;
    atomic_int state;
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

    /* log rate limit: at most S_LOG_BURST warnings per second */
    int64_t log_sec;
    unsigned log_count;
    unsigned long log_dropped;
    uint64_t served, refused;
};

#define S_LOG_BURST 20
#define S_RCVHWM 8
#define S_SNDHWM 64
#define S_LINGER_MS 1000

static int64_t s_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_log_stderr(void *arg, int level, const char *line) {
    (void)arg;
    static const char *names[] = {"error", "warning", "info", "debug"};
    char buf[PD__MSG_MAX + 64];
    int n = snprintf(buf, sizeof buf, "partd server: %s: %s\n",
                     names[level < 0   ? 0
                           : level > 3 ? 3
                                       : level],
                     line);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    if (len && buf[len - 1] != '\n') buf[len - 1] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, len); /* one write: no interleaving */
    (void)w;
}

static void s_log(pd_server *srv, int level, const char *fmt, ...)
    PD__PRINTF(3, 4);
static void s_log(pd_server *srv, int level, const char *fmt, ...) {
    if (level > srv->log_level) return;
    if (level >= PD_LOG_WARN) {
        /* A flood of bad requests must not become a flood of lines. */
        int64_t sec = s_now_ms() / 1000;
        if (sec != srv->log_sec) {
            if (srv->log_dropped) {
                char note[96];
                snprintf(note, sizeof note,
                         "%lu more log lines suppressed (rate limit)",
                         srv->log_dropped);
                srv->log(srv->log_arg, PD_LOG_WARN, note);
            }
            srv->log_sec = sec;
            srv->log_count = 0;
            srv->log_dropped = 0;
        }
        if (++srv->log_count > S_LOG_BURST) {
            srv->log_dropped++;
            return;
        }
    }
    char line[PD__MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    srv->log(srv->log_arg, level, line);
}

/* The peer of the current request, for log lines. */
static const char *s_peer(pd_server *srv, char buf[96]) {
    const unsigned char *id = zmq_msg_data(&srv->ident);
    size_t n = zmq_msg_size(&srv->ident);
    int w = snprintf(buf, 96, "peer ");
    for (size_t i = 0; i < n && i < 16 && w < 80; i++)
        w += snprintf(buf + w, 96 - (size_t)w, "%02x", id[i]);
    const char *addr = zmq_msg_gets(&srv->ident, "Peer-Address");
    if (addr && *addr && w < 80)
        snprintf(buf + w, 96 - (size_t)w, " at %.40s", addr);
    return buf;
}

/* ------------------------------------------------------------ Replies */

static int s_emit(void *arg, size_t n, const pd_bytes *frames) {
    pd_server *srv = arg;
    if (zmq_send(srv->sock, zmq_msg_data(&srv->ident),
                 zmq_msg_size(&srv->ident), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        char pb[96];
        int e = zmq_errno();
        if (e == EAGAIN)
            s_log(srv, PD_LOG_WARN,
                  "reply to %s dropped: %d replies already wait for it "
                  "(a client that does not read its replies)",
                  s_peer(srv, pb), S_SNDHWM);
        else
            s_log(srv, PD_LOG_DEBUG, "reply to %s dropped: %s", s_peer(srv, pb),
                  zmq_strerror(e));
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int fl = (i + 1 < n ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT;
        const void *d = frames[i].size ? frames[i].data : "";
        if (zmq_send(srv->sock, d, frames[i].size, fl) < 0) {
            /* Only the routing frame can be refused; past it libzmq
             * queues the rest of the message whole or drops it whole. */
            char pb[96];
            s_log(srv, PD_LOG_WARN, "reply to %s: frame %zu: %s",
                  s_peer(srv, pb), i, zmq_strerror(zmq_errno()));
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ Receiving */

static void s_close_msgs(pd_server *srv, size_t n) {
    for (size_t i = 0; i < n; i++) zmq_msg_close(&srv->msgs[i]);
}

/* Receives one request into srv->msgs[0..*nframes).  Returns 1 when one
 * was read (*over set when it broke the size limits: its frames are then
 * already released), 0 when none is waiting, -1 on a socket error. */
static int s_recv(pd_server *srv, size_t *nframes, bool *over) {
    *nframes = 0;
    *over = false;
    if (zmq_msg_recv(&srv->ident, srv->sock, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        return e == EAGAIN || e == EINTR ? 0 : -1;
    }
    bool more = zmq_msg_more(&srv->ident);
    size_t n = 0;
    uint64_t bytes = 0;
    while (more) {
        zmq_msg_t *m = &srv->scratch;
        if (!*over) {
            if (n >= PD__WIRE_MAX_FRAMES ||
                pd__grow((void **)&srv->msgs, &srv->msgcap, n + 1,
                         sizeof *srv->msgs)) {
                *over = true;
            } else {
                m = &srv->msgs[n];
                zmq_msg_init(m);
            }
        }
        /* The rest of a multipart message is already here: libzmq
         * delivers messages whole. */
        while (zmq_msg_recv(m, srv->sock, 0) < 0) {
            if (zmq_errno() == EINTR) continue;
            if (m != &srv->scratch) zmq_msg_close(m);
            s_close_msgs(srv, n);
            return -1;
        }
        more = zmq_msg_more(m);
        bytes += zmq_msg_size(m);
        if (m != &srv->scratch) {
            n++;
            if (bytes > srv->max_message) *over = true;
            if (*over) { /* release what was kept: the rest is discarded */
                s_close_msgs(srv, n);
                n = 0;
            }
        }
    }
    *nframes = n;
    return 1;
}

/* Serves one request read into msgs.  Returns PD__HANDLE_* or an error. */
static int s_serve_one(pd_server *srv, size_t n) {
    if (pd__grow((void **)&srv->frames, &srv->framecap, n ? n : 1,
                 sizeof *srv->frames)) {
        srv->h.code = PD_ERR_NOMEM;
        snprintf(srv->h.msg, sizeof srv->h.msg,
                 "out of memory for a request of %zu frames", n);
        s_emit_error(&srv->h);
        return PD_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        srv->frames[i] = (pd_bytes){zmq_msg_data(&srv->msgs[i]),
                                    zmq_msg_size(&srv->msgs[i])};
    return pd__handle(&srv->h, n, srv->frames);
}

/* Drains the monitor: connection events go to the log. */
/* Answers one ZAP request (libzmq asking whether a CURVE client may in):
 * [version, id, domain, address, routing id, mechanism, client key] ->
 * [version, id, status, text, user id, metadata].  200 only for a CURVE
 * client whose key is on the allow-list. */
#define S_ZAP_FRAMES 8
static void s_zap(pd_server *srv) {
    zmq_msg_t f[S_ZAP_FRAMES];
    size_t n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t *m = n < S_ZAP_FRAMES ? &f[n] : &srv->scratch;
        if (n < S_ZAP_FRAMES) zmq_msg_init(m);
        if (zmq_msg_recv(m, srv->zap, ZMQ_DONTWAIT) < 0) {
            if (n < S_ZAP_FRAMES) zmq_msg_close(m);
            break; /* nothing (more) to read */
        }
        more = zmq_msg_more(m);
        if (n < S_ZAP_FRAMES) n++;
    }
    if (n == 0) return;
    const char *status = "400", *text = "not allowed";
    char peer[64] = "?", key[41] = "?";
    if (n >= 7 && zmq_msg_size(&f[0]) == 3 &&
        memcmp(zmq_msg_data(&f[0]), "1.0", 3) == 0 &&
        zmq_msg_size(&f[5]) == 5 &&
        memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&f[6]) == 32) {
        int al = (int)(zmq_msg_size(&f[3]) < 63 ? zmq_msg_size(&f[3]) : 63);
        snprintf(peer, sizeof peer, "%.*s", al,
                 (const char *)zmq_msg_data(&f[3]));
        zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
        for (size_t i = 0; i < srv->nallow; i++)
            if (memcmp(srv->allow[i], zmq_msg_data(&f[6]), 32) == 0) {
                status = "200";
                text = "OK";
                break;
            }
    } else {
        text = "not a CURVE request";
    }
    if (status[0] == '2')
        s_log(srv, PD_LOG_DEBUG, "CURVE client %s from %s allowed", key, peer);
    else
        s_log(srv, PD_LOG_WARN,
              "refused a CURVE client from %s: its public key %s is not on "
              "the allow-list",
              peer, key);
    /* A REP socket answers every request: echo the id (empty if absent). */
    const void *id = n >= 2 ? zmq_msg_data(&f[1]) : "";
    size_t idlen = n >= 2 ? zmq_msg_size(&f[1]) : 0;
    if (zmq_send(srv->zap, "1.0", 3, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(srv->zap, id, idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(srv->zap, status, 3, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(srv->zap, text, strlen(text), ZMQ_SNDMORE | ZMQ_DONTWAIT) <
            0 ||
        zmq_send(srv->zap, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(srv->zap, "", 0, ZMQ_DONTWAIT) < 0)
        s_log(srv, PD_LOG_ERROR, "ZAP reply: %s", zmq_strerror(zmq_errno()));
    for (size_t i = 0; i < n; i++) zmq_msg_close(&f[i]);
}

static void s_monitor(pd_server *srv) {
    for (;;) {
        zmq_msg_t ev, ad;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, srv->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t id = 0;
        uint32_t val = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&id, zmq_msg_data(&ev), 2);
            memcpy(&val, (char *)zmq_msg_data(&ev) + 2, 4);
        }
        int more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        char addr[256] = "";
        if (more) {
            zmq_msg_init(&ad);
            if (zmq_msg_recv(&ad, srv->mon, 0) >= 0) {
                size_t l = zmq_msg_size(&ad);
                if (l >= sizeof addr) l = sizeof addr - 1;
                memcpy(addr, zmq_msg_data(&ad), l);
                addr[l] = '\0';
            }
            zmq_msg_close(&ad);
        }
        switch (id) {
        case ZMQ_EVENT_ACCEPTED:
            s_log(srv, PD_LOG_DEBUG, "connection accepted on %s", addr);
            break;
        case ZMQ_EVENT_DISCONNECTED:
            s_log(srv, PD_LOG_DEBUG,
                  "a connection on %s closed (a client left, or sent a "
                  "frame over the size limit)",
                  addr);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            /* e.g. a bare connect-and-close (a port check) */
            s_log(srv, PD_LOG_INFO,
                  "a connection on %s closed before its handshake ended", addr);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            s_log(srv, PD_LOG_WARN,
                  "refused a connection on %s: handshake failed%s", addr,
                  srv->curve ? " (a client without this server's CURVE "
                               "public key?)"
                             : "");
            break;
        default: break;
        }
    }
}

static int s_flush_store(pd_server *srv) {
    pd_store *s = srv->store;
    if (!s->ops->flush) return 0;
    pthread_mutex_lock(&s->mu);
    int rc = s->ops->flush(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int s_serve(pd_server *srv) {
    int rc = pd_lock(srv->store);
    if (rc) {
        snprintf(srv->run_msg, sizeof srv->run_msg,
                 "server: run: cannot lock the store: %s",
                 pd_errmsg(srv->store));
        s_log(srv, PD_LOG_ERROR, "%s", srv->run_msg);
        return rc;
    }
    for (size_t i = 0; i < srv->naddrs; i++)
        s_log(srv, PD_LOG_INFO, "serving a %s store at %s",
              pd_store_kind(srv->store), srv->addrs[i]);
    int64_t last = s_now_ms();
    const char *why = "stopped";
    while (!atomic_load(&srv->stop)) {
        /* The monitor and the ZAP socket, when there are, come last. */
        zmq_pollitem_t it[4] = {{srv->sock, 0, ZMQ_POLLIN, 0},
                                {NULL, srv->pipefd[0], ZMQ_POLLIN, 0},
                                {srv->mon, 0, ZMQ_POLLIN, 0},
                                {srv->zap, 0, ZMQ_POLLIN, 0}};
        int nit = 2;
        if (srv->mon) it[nit++] = it[2];
        if (srv->zap) it[nit++] = it[3];
        long wait = -1;
        if (srv->idle_ms) {
            int64_t left = last + (int64_t)srv->idle_ms - s_now_ms();
            if (left <= 0) {
                why = "idle timeout";
                break;
            }
            wait = (long)left;
        }
        int pr = zmq_poll(it, nit, wait);
        if (pr < 0) {
            if (zmq_errno() == EINTR) continue;
            rc = PD_ERR_IO;
            snprintf(srv->run_msg, sizeof srv->run_msg, "server: zmq_poll: %s",
                     zmq_strerror(zmq_errno()));
            s_log(srv, PD_LOG_ERROR, "%s", srv->run_msg);
            break;
        }
        if (it[1].revents) {
            char b[64];
            while (read(srv->pipefd[0], b, sizeof b) > 0) {}
        }
        for (int j = 2; j < nit; j++) {
            if (!it[j].revents) continue;
            if (it[j].socket == srv->mon) s_monitor(srv);
            if (it[j].socket == srv->zap) s_zap(srv);
        }
        if (!(it[0].revents & ZMQ_POLLIN)) continue;
        /* A bounded batch, so a stop request is seen between batches. */
        for (int k = 0; k < 256 && !atomic_load(&srv->stop); k++) {
            size_t n;
            bool over;
            int r = s_recv(srv, &n, &over);
            if (r == 0) break;
            if (r < 0) {
                rc = PD_ERR_IO;
                snprintf(srv->run_msg, sizeof srv->run_msg,
                         "server: receive: %s", zmq_strerror(zmq_errno()));
                s_log(srv, PD_LOG_ERROR, "%s", srv->run_msg);
                goto out;
            }
            last = s_now_ms();
            int hr;
            char pb[96];
            if (over) {
                srv->h.code = PD_ERR_LIMIT;
                snprintf(srv->h.msg, sizeof srv->h.msg,
                         "request too large: over %" PRIu64
                         " bytes or %zu frames (refused unread)",
                         srv->max_message, PD__WIRE_MAX_FRAMES);
                srv->h.malformed = 1;
                s_emit_error(&srv->h);
                hr = PD_ERR_LIMIT;
            } else {
                hr = s_serve_one(srv, n);
            }
            srv->served++;
            if (hr < 0) {
                srv->refused++;
                s_log(srv, PD_LOG_WARN, "%s %s: %s", s_peer(srv, pb),
                      srv->h.malformed ? "sent a bad request"
                                       : "request failed",
                      srv->h.msg);
            } else if (srv->log_level >= PD_LOG_DEBUG) {
                char cn[48];
                pd_bytes c = n ? srv->frames[0] : (pd_bytes){"", 0};
                s_log(srv, PD_LOG_DEBUG, "%s: %s (%zu frames): ok",
                      s_peer(srv, pb), pd__wire_cmd_name(&c, cn), n);
            }
            if (!over) s_close_msgs(srv, n);
            if (srv->msgcap > 4096 && n < 1024) {
                /* Give back the table of a huge request. */
                free(srv->msgs);
                srv->msgs = NULL;
                srv->msgcap = 0;
            }
            if (hr == PD__HANDLE_CLOSE) {
                why = "close command";
                atomic_store(&srv->stop, 1);
            }
        }
    }
out:;
    /* A default store (private temporary directory) is dropped on close:
     * flushing it to disk first would be wasted work. */
    int frc = srv->default_store ? 0 : s_flush_store(srv);
    if (frc) {
        s_log(srv, PD_LOG_ERROR, "flush on stop: %s", pd_errmsg(srv->store));
        if (!rc) {
            rc = frc;
            snprintf(srv->run_msg, sizeof srv->run_msg,
                     "server: flush on stop: %s", pd_errmsg(srv->store));
        }
    }
    int urc = pd_unlock(srv->store);
    if (urc && !rc) {
        rc = urc;
        snprintf(srv->run_msg, sizeof srv->run_msg, "server: unlock: %s",
                 pd_errmsg(srv->store));
    }
    s_log(srv, PD_LOG_INFO,
          "%s after %" PRIu64 " requests (%" PRIu64 " refused or failed)", why,
          srv->served, srv->refused);
    return rc;
}

/* Claims the server for one run: NEW -> RUNNING.  0 or PD_ERR_MISUSE. */
static int s_claim(pd_server *srv, const char *op) {
    int expect = S_NEW;
    if (!atomic_compare_exchange_strong(&srv->state, &expect, S_RUNNING))
        return pd__err(NULL, PD_ERR_MISUSE, 0, "server: %s: %s", op,
                       expect == S_RUNNING
                           ? "already running"
                           : "already ran (a server runs once)");
    return 0;
}

/* The run itself, on a claimed server. */
static int s_run_claimed(pd_server *srv) {
    int rc = 0;
    srv->run_msg[0] = '\0';
    if (!atomic_load(&srv->stop)) rc = s_serve(srv);
    srv->run_rc = rc;
    pthread_mutex_lock(&srv->mu);
    atomic_store(&srv->state, S_DONE);
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    if (rc) return pd__err(NULL, rc, 0, "%s", srv->run_msg);
    pd__err_clear(NULL);
    return 0;
}

int pd_server_run(pd_server *srv) {
    if (!srv) return pd__err(NULL, PD_ERR_MISUSE, 0, "server: run: NULL");
    int rc = s_claim(srv, "run");
    return rc ? rc : s_run_claimed(srv);
}

static void *s_thread(void *arg) {
    s_run_claimed(arg);
    return NULL;
}

int pd_server_start(pd_server *srv) {
    if (!srv) return pd__err(NULL, PD_ERR_MISUSE, 0, "server: start: NULL");
    int rc = s_claim(srv, "start");
    if (rc) return rc;
    /* Signals go to other threads: the serving thread only polls. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(&srv->thread, NULL, s_thread, srv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        atomic_store(&srv->state, S_NEW);
        return pd__err(NULL, PD_ERR_IO, e, "server: start: pthread_create");
    }
    srv->have_thread = true;
    return 0;
}

void pd_server_stop(pd_server *srv) {
    if (!srv) return;
    int saved = errno; /* async-signal-safe: keep the interrupted errno */
    atomic_store(&srv->stop, 1);
    ssize_t w = write(srv->pipefd[1], "x", 1);
    (void)w; /* a full pipe already wakes the loop */
    errno = saved;
}

int pd_server_running(const pd_server *srv) {
    return srv && atomic_load(&((pd_server *)srv)->state) == S_RUNNING;
}

const char *pd_server_address(const pd_server *srv, size_t i) {
    return srv && i < srv->naddrs ? srv->addrs[i] : NULL;
}

/* ------------------------------------------------------------ Open */

static int s_z85_ok(const char *key) {
    uint8_t raw[32];
    return key && strlen(key) == PD_CURVE_KEY_LEN &&
           zmq_z85_decode(raw, key) != NULL;
}

int pd_curve_check(const char *key) {
    if (s_z85_ok(key)) return 0;
    return pd__err(NULL, PD_ERR_MISUSE, 0,
                   "curve: %s is not 40 z85 characters encoding 32 bytes",
                   key ? "the key" : "NULL");
}

int pd_curve_keypair(char public_key[41], char secret_key[41]) {
    if (!public_key || !secret_key)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "curve: keypair: NULL");
    if (!zmq_has("curve"))
        return pd__err(NULL, PD_ERR_UNSUPPORTED, 0,
                       "curve: keypair: libzmq was built without CURVE");
    if (zmq_curve_keypair(public_key, secret_key) != 0)
        return pd__err(NULL, PD_ERR_IO, zmq_errno(),
                       "curve: zmq_curve_keypair");
    pd__err_clear(NULL);
    return 0;
}

int pd_curve_public(char public_key[41], const char *secret_key) {
    if (!public_key || !s_z85_ok(secret_key))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "curve: public: the secret key is not 40 z85 "
                       "characters");
    if (!zmq_has("curve"))
        return pd__err(NULL, PD_ERR_UNSUPPORTED, 0,
                       "curve: public: libzmq was built without CURVE");
    if (zmq_curve_public(public_key, secret_key) != 0)
        return pd__err(NULL, PD_ERR_IO, zmq_errno(), "curve: zmq_curve_public");
    pd__err_clear(NULL);
    return 0;
}

/* An ipc path that exists must be a socket nobody listens on: libzmq would
 * otherwise unlink whatever is there (a file, or a live server's socket). */
static int s_check_ipc(const char *addr) {
    const char *path = addr + 6;
    if (strcmp(path, "*") == 0) return 0;
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (!S_ISSOCK(st.st_mode))
        return pd__err(NULL, PD_ERR_IO, EEXIST,
                       "server: open: bind %s: the path exists and is not a "
                       "socket",
                       addr);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return pd__err(NULL, PD_ERR_IO, ENAMETOOLONG,
                       "server: open: bind %s: path longer than %zu bytes",
                       addr, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int c = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    close(fd);
    if (c == 0)
        return pd__err(NULL, PD_ERR_IO, EADDRINUSE,
                       "server: open: bind %s: a server is listening there",
                       addr);
    return 0;
}

static bool s_wildcard(const char *addr) {
    if (strncmp(addr, "tcp://", 6) != 0) return false;
    const char *h = addr + 6;
    return strncmp(h, "*:", 2) == 0 || strncmp(h, "0.0.0.0:", 8) == 0 ||
           strncmp(h, "[::]:", 5) == 0 || strncmp(h, "::", 2) == 0;
}

static int s_bind(pd_server *srv, const char *addr) {
    if (strncmp(addr, "ipc://", 6) == 0) {
        int rc = s_check_ipc(addr);
        if (rc) return rc;
    }
    if (zmq_bind(srv->sock, addr) != 0) {
        int e = zmq_errno();
        int code = (e == EINVAL || e == EPROTONOSUPPORT || e == ENOCOMPATPROTO)
                       ? PD_ERR_MISUSE
                       : PD_ERR_IO;
        return pd__err(NULL, code, e, "server: open: bind %s", addr);
    }
    char ep[1024];
    size_t l = sizeof ep;
    if (zmq_getsockopt(srv->sock, ZMQ_LAST_ENDPOINT, ep, &l) != 0 || l < 1)
        snprintf(ep, sizeof ep, "%s", addr);
    char *dup = strdup(ep);
    if (!dup) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "server: open");
    srv->addrs[srv->naddrs++] = dup;
    struct stat st;
    if (strncmp(ep, "ipc://", 6) == 0 && lstat(ep + 6, &st) == 0 &&
        S_ISSOCK(st.st_mode)) {
        /* libzmq 4.3 leaves the file behind; remember which file it made,
         * so close removes that one and not a successor's. */
        char *p = strdup(ep + 6);
        if (!p) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "server: open");
        srv->ipcs[srv->nipcs++] = (struct s_ipcfile){p, st.st_dev, st.st_ino};
    }
    if (s_wildcard(addr) && !srv->curve)
        s_log(srv, PD_LOG_WARN,
              "%s listens on every network interface without CURVE: anyone "
              "who can reach it can read, write and drop the store",
              addr);
    return 0;
}

static int s_default_ipc(pd_server *srv, const char *parent) {
    if (!parent) parent = getenv("TMPDIR");
    if (!parent || !*parent) parent = "/tmp";
    char *dir = NULL;
    if (asprintf(&dir, "%s/partd-XXXXXX", parent) < 0)
        return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "server: open");
    if (!mkdtemp(dir)) { /* mkdtemp makes it 0700 */
        int e = errno;
        pd__err(NULL, PD_ERR_IO, e, "server: open: mkdtemp(%s)", dir);
        free(dir);
        return PD_ERR_IO;
    }
    srv->ipc_dir = dir;
    if (asprintf(&srv->ipc_path, "%s/sock", dir) < 0) {
        srv->ipc_path = NULL;
        return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "server: open");
    }
    struct sockaddr_un sa;
    if (strlen(srv->ipc_path) >= sizeof sa.sun_path)
        return pd__err(NULL, PD_ERR_IO, ENAMETOOLONG,
                       "server: open: ipc socket %s: path longer than %zu "
                       "bytes (set a shorter dir or TMPDIR)",
                       srv->ipc_path, sizeof sa.sun_path - 1);
    char *addr = NULL;
    if (asprintf(&addr, "ipc://%s", srv->ipc_path) < 0)
        return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "server: open");
    int rc = s_bind(srv, addr);
    free(addr);
    return rc;
}

static int s_sockopt_int(void *sock, int opt, int v) {
    return zmq_setsockopt(sock, opt, &v, sizeof v);
}

/* Frees everything but the store (the caller decides about it). */
static void s_free(pd_server *srv) {
    if (srv->mon) zmq_close(srv->mon);
    if (srv->zap) zmq_close(srv->zap);
    free(srv->allow);
    if (srv->sock) zmq_close(srv->sock);
    if (srv->ctx) zmq_ctx_term(srv->ctx);
    for (size_t i = 0; i < srv->nipcs; i++) {
        struct stat st;
        if (lstat(srv->ipcs[i].path, &st) == 0 &&
            st.st_dev == srv->ipcs[i].dev && st.st_ino == srv->ipcs[i].ino)
            unlink(srv->ipcs[i].path);
        free(srv->ipcs[i].path);
    }
    free(srv->ipcs);
    if (srv->ipc_path) unlink(srv->ipc_path);
    if (srv->ipc_dir) rmdir(srv->ipc_dir);
    free(srv->ipc_path);
    free(srv->ipc_dir);
    for (size_t i = 0; i < srv->naddrs; i++) free(srv->addrs[i]);
    free(srv->addrs);
    if (srv->pipefd[0] >= 0) close(srv->pipefd[0]);
    if (srv->pipefd[1] >= 0) close(srv->pipefd[1]);
    zmq_msg_close(&srv->ident);
    zmq_msg_close(&srv->scratch);
    free(srv->msgs);
    free(srv->frames);
    pd__handler_fini(&srv->h);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}

static int s_open_default_store(pd_server *srv, const pd_server_opts *o) {
    pd_store *fast = NULL, *slow = NULL, *b = NULL;
    int rc = pd_dict_open(&fast);
    if (rc == 0) rc = pd_file_open_temp(&slow, o ? o->dir : NULL, 0);
    uint64_t mem = o && o->memory ? o->memory : PD_SERVER_MEMORY_DEFAULT;
    if (rc == 0) rc = pd_buffer_open(&b, &fast, &slow, mem, PD_BUFFER_PRIVATE);
    if (rc) {
        char msg[PD__MSG_MAX];
        snprintf(msg, sizeof msg, "%s", pd_errmsg(NULL));
        pd_close(&fast);
        pd_close(&slow);
        return pd__err(NULL, rc, 0, "server: open: default store: %s", msg);
    }
    srv->store = b;
    srv->own_store = true;
    srv->default_store = true;
    return 0;
}

int pd_server_open(pd_server **out, pd_store **store, const pd_server_opts *o) {
    if (!out) return pd__err(NULL, PD_ERR_MISUSE, 0, "server: open: NULL out");
    *out = NULL;
    unsigned flags = o ? o->flags : 0;
    if (flags & ~(PD_BORROW | PD_SERVER_NO_CLOSE))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "server: open: unknown flags 0x%x",
                       flags & ~(PD_BORROW | PD_SERVER_NO_CLOSE));
    if (o && o->nbind && !o->bind)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "server: open: nbind %zu with a NULL bind array",
                       o->nbind);
    for (size_t i = 0; o && i < o->nbind; i++)
        if (!o->bind[i])
            return pd__err(NULL, PD_ERR_MISUSE, 0,
                           "server: open: bind address %zu is NULL", i);
    if (o && o->curve_secret) {
        if (!zmq_has("curve"))
            return pd__err(NULL, PD_ERR_UNSUPPORTED, 0,
                           "server: open: CURVE asked for, but libzmq was "
                           "built without it");
        if (!s_z85_ok(o->curve_secret))
            return pd__err(NULL, PD_ERR_MISUSE, 0,
                           "server: open: the CURVE secret key is not 40 z85 "
                           "characters");
    }
    if (o && o->ncurve_clients && (!o->curve_secret || !o->curve_clients))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "server: open: %zu CURVE client keys %s",
                       o->ncurve_clients,
                       o->curve_clients ? "without a CURVE secret key"
                                        : "in a NULL array");
    for (size_t i = 0; o && i < o->ncurve_clients; i++)
        if (!s_z85_ok(o->curve_clients[i]))
            return pd__err(NULL, PD_ERR_MISUSE, 0,
                           "server: open: CURVE client key %zu is not 40 z85 "
                           "characters",
                           i);
    if (o && o->log_level > PD_LOG_DEBUG)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "server: open: log_level %d (most is PD_LOG_DEBUG)",
                       o->log_level);

    pd_server *srv = calloc(1, sizeof *srv);
    if (!srv) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "server: open");
    srv->pipefd[0] = srv->pipefd[1] = -1;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    zmq_msg_init(&srv->ident);
    zmq_msg_init(&srv->scratch);
    atomic_init(&srv->stop, 0);
    atomic_init(&srv->state, S_NEW);
    srv->log = o && o->log ? o->log : s_log_stderr;
    srv->log_arg = o && o->log ? o->log_arg : NULL;
    srv->log_level = o && o->log_level ? o->log_level : PD_LOG_INFO;
    srv->max_message =
        o && o->max_message ? o->max_message : PD_ZMQ_MAX_MESSAGE_DEFAULT;
    srv->idle_ms = o ? o->idle_timeout_ms : 0;
    srv->flags = flags;
    srv->curve = o && o->curve_secret;
    srv->h.flags = flags;
    srv->h.emit = s_emit;
    srv->h.emit_arg = srv;
    size_t nb = o && o->nbind ? o->nbind : 1;
    srv->addrs = calloc(nb, sizeof *srv->addrs);
    srv->ipcs = calloc(nb, sizeof *srv->ipcs);

    int rc = 0;
    if (!srv->addrs || !srv->ipcs)
        rc = pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "server: open");
    if (rc == 0 && pipe2(srv->pipefd, O_CLOEXEC | O_NONBLOCK) != 0)
        rc = pd__err(NULL, PD_ERR_IO, errno, "server: open: pipe");
    if (rc == 0 && !(srv->ctx = zmq_ctx_new()))
        rc = pd__err(NULL, PD_ERR_IO, zmq_errno(), "server: open: zmq_ctx_new");
    if (rc == 0 && !(srv->sock = zmq_socket(srv->ctx, ZMQ_ROUTER)))
        rc = pd__err(NULL, PD_ERR_IO, zmq_errno(), "server: open: zmq_socket");
    if (rc == 0) {
        int64_t maxmsg =
            srv->max_message > INT64_MAX ? -1 : (int64_t)srv->max_message;
        int mandatory = 1;
        if (zmq_setsockopt(srv->sock, ZMQ_ROUTING_ID, PD_SERVER_IDENTITY,
                           strlen(PD_SERVER_IDENTITY)) ||
            zmq_setsockopt(srv->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) ||
            s_sockopt_int(srv->sock, ZMQ_RCVHWM, S_RCVHWM) ||
            s_sockopt_int(srv->sock, ZMQ_SNDHWM, S_SNDHWM) ||
            s_sockopt_int(srv->sock, ZMQ_LINGER, S_LINGER_MS) ||
            zmq_setsockopt(srv->sock, ZMQ_ROUTER_MANDATORY, &mandatory,
                           sizeof mandatory))
            rc = pd__err(NULL, PD_ERR_IO, zmq_errno(),
                         "server: open: zmq_setsockopt");
    }
    if (rc == 0 && o && o->ncurve_clients) {
        /* The ZAP handler is bound before the server socket, so no client
         * can slip in before it. */
        srv->allow = calloc(o->ncurve_clients, sizeof *srv->allow);
        srv->nallow = o->ncurve_clients;
        if (!srv->allow)
            rc = pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "server: open");
        for (size_t i = 0; rc == 0 && i < srv->nallow; i++)
            zmq_z85_decode(srv->allow[i], o->curve_clients[i]);
        if (rc == 0 && (!(srv->zap = zmq_socket(srv->ctx, ZMQ_REP)) ||
                        s_sockopt_int(srv->zap, ZMQ_LINGER, 0) ||
                        zmq_bind(srv->zap, "inproc://zeromq.zap.01") != 0))
            rc = pd__err(NULL, PD_ERR_IO, zmq_errno(),
                         "server: open: the CURVE allow-list's ZAP handler");
    }
    if (rc == 0 && srv->curve) {
        int on = 1;
        if (zmq_setsockopt(srv->sock, ZMQ_CURVE_SERVER, &on, sizeof on) ||
            zmq_setsockopt(srv->sock, ZMQ_CURVE_SECRETKEY, o->curve_secret,
                           PD_CURVE_KEY_LEN))
            rc = pd__err(NULL, PD_ERR_MISUSE, zmq_errno(),
                         "server: open: CURVE secret key");
    }
    if (rc == 0) {
        /* Connection events for the log (best effort: a server without
         * them still serves). */
        char ep[64];
        snprintf(ep, sizeof ep, "inproc://partd-monitor-%p", (void *)srv);
        if (zmq_socket_monitor(srv->sock, ep,
                               ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
            srv->mon = zmq_socket(srv->ctx, ZMQ_PAIR);
            if (srv->mon && (s_sockopt_int(srv->mon, ZMQ_LINGER, 0) ||
                             zmq_connect(srv->mon, ep) != 0)) {
                zmq_close(srv->mon);
                srv->mon = NULL;
            }
        }
    }
    if (rc == 0) {
        if (o && o->nbind) {
            for (size_t i = 0; i < o->nbind && rc == 0; i++)
                rc = s_bind(srv, o->bind[i]);
        } else {
            rc = s_default_ipc(srv, o ? o->dir : NULL);
        }
    }
    if (rc == 0) {
        if (store && *store) {
            srv->store = *store;
            srv->own_store = !(flags & PD_BORROW);
        } else {
            rc = s_open_default_store(srv, o);
        }
    }
    if (rc) {
        char msg[PD__MSG_MAX];
        int sys = pd_errno(NULL);
        snprintf(msg, sizeof msg, "%s", pd_errmsg(NULL));
        if (srv->default_store) pd_close(&srv->store);
        if (srv->sock) s_sockopt_int(srv->sock, ZMQ_LINGER, 0);
        s_free(srv);
        pd__err(NULL, rc, 0, "%s", msg);
        pd__err_set_sys(NULL, sys);
        return rc;
    }
    srv->h.store = srv->store;
    if (srv->own_store && store) *store = NULL;
    *out = srv;
    pd__err_clear(NULL);
    return 0;
}

int pd_server_close(pd_server **sp) {
    if (!sp || !*sp) return 0;
    pd_server *srv = *sp;
    *sp = NULL;
    pd_server_stop(srv);
    if (srv->have_thread) {
        pthread_join(srv->thread, NULL);
    } else {
        pthread_mutex_lock(&srv->mu);
        while (atomic_load(&srv->state) == S_RUNNING)
            pthread_cond_wait(&srv->cv, &srv->mu);
        pthread_mutex_unlock(&srv->mu);
    }
    int rc = srv->run_rc;
    char msg[PD__MSG_MAX];
    snprintf(msg, sizeof msg, "%s", srv->run_msg);
    pd_store *store = srv->store;
    bool own = srv->own_store, dflt = srv->default_store;
    s_free(srv);
    if (own) {
        if (dflt) pd_drop(store, 0); /* its data goes with its directory */
        int crc = pd_close(&store);
        if (crc && !rc) {
            rc = crc;
            snprintf(msg, sizeof msg, "server: close: %s", pd_errmsg(NULL));
        }
    }
    if (rc) return pd__err(NULL, rc, 0, "%s", msg);
    pd__err_clear(NULL);
    return 0;
}
