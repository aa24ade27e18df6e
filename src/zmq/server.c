/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The ZeroMQ Server's serving loop: a ROUTER socket in front of one store,
 * wire-compatible with Python partd's partd.zmq.Server (see partd/zmq.h).
 *
 * The loop (s_serve) polls the ROUTER socket, a self-pipe written by
 * pd_server_stop (so a signal handler can stop it), a monitor socket
 * (connection events, for the log) and the ZAP handler's socket (curve.c);
 * it reads one request at a time, bounded in frames and bytes, hands it to
 * pd__handle (handler.c), and sends the replies with ZMQ_DONTWAIT to the
 * peer that asked.  Opening and closing a server: server_open.c.
 *
 * The store's lock is taken by the serving thread for the whole run (the
 * reference holds it too): other handles on the same store, in this
 * process or others, wait until the server stops.  Ops are then called with
 * PD_NOLOCK.
 */
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pd__server_log_stderr(void *arg, int level, const char *line) {
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

void pd__server_log(pd_server *srv, int level, const char *fmt, ...) {
    if (level > srv->log_level) return;
    if (level >= PD_LOG_WARN) {
        /* A flood of bad requests must not become a flood of lines. */
        int64_t sec = pd__now_ms() / 1000;
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
        if (++srv->log_count > PD__SERVER_LOG_BURST) {
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

/* Sends the routing frame of the current request's peer.  0 or -1
 * (logged). */
static int s_emit_ident(pd_server *srv) {
    if (zmq_send(srv->sock, zmq_msg_data(&srv->ident),
                 zmq_msg_size(&srv->ident), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        char pb[96];
        int e = zmq_errno();
        if (e == EAGAIN)
            pd__server_log(
                srv, PD_LOG_WARN,
                "reply to %s dropped: %d replies already wait for it "
                "(a client that does not read its replies)",
                s_peer(srv, pb), PD__SERVER_SNDHWM);
        else
            pd__server_log(srv, PD_LOG_DEBUG, "reply to %s dropped: %s",
                           s_peer(srv, pb), zmq_strerror(e));
        return -1;
    }
    return 0;
}

/* Sends frames[0..n) after the routing frame, with ZMQ_SNDMORE on the
 * last when `more` (a frame follows).  0 or -1 (logged). */
static int s_emit_frames(pd_server *srv, size_t n, const pd_bytes *frames,
                         bool more) {
    for (size_t i = 0; i < n; i++) {
        int fl = (i + 1 < n || more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT;
        const void *d = frames[i].size ? frames[i].data : "";
        if (zmq_send(srv->sock, d, frames[i].size, fl) < 0) {
            /* Only the routing frame can be refused; past it libzmq
             * queues the rest of the message whole or drops it whole. */
            char pb[96];
            pd__server_log(srv, PD_LOG_WARN, "reply to %s: frame %zu: %s",
                           s_peer(srv, pb), i, zmq_strerror(zmq_errno()));
            return -1;
        }
    }
    return 0;
}

int pd__server_emit(void *arg, size_t n, const pd_bytes *frames) {
    pd_server *srv = arg;
    if (s_emit_ident(srv)) return -1;
    return s_emit_frames(srv, n, frames, false);
}

/* A block of reply frames sent without a copy: freed when the last
 * reference goes (the serving thread's own, and one per frame in libzmq,
 * dropped from its I/O thread once the frame is sent or dropped). */
typedef struct s_share {
    atomic_size_t refs;
    void *own;
} s_share;

static void s_unshare(void *data, void *hint) {
    (void)data;
    s_share *sh = hint;
    if (atomic_fetch_sub(&sh->refs, 1) == 1) {
        free(sh->own);
        free(sh);
    }
}

/* Makes srv->outm[0..n) the frames: those of PD__SERVER_SHARE_MIN bytes
 * or more inside [own, own + len) refer to sh's block, the others are
 * copies.  True, or false (out of memory) with none left open. */
static bool s_share_init(pd_server *srv, size_t n, const pd_bytes *frames,
                         s_share *sh, size_t len) {
    if (pd__grow((void **)&srv->outm, &srv->outmcap, n, sizeof *srv->outm))
        return false;
    const char *lo = sh->own, *hi = lo + len;
    for (size_t k = 0; k < n; k++) {
        const char *d = frames[k].data;
        size_t sz = frames[k].size;
        zmq_msg_t *m = &srv->outm[k];
        int rc;
        if (sz >= PD__SERVER_SHARE_MIN && d >= lo && d < hi &&
            sz <= (size_t)(hi - d)) {
            atomic_fetch_add(&sh->refs, 1);
            rc = zmq_msg_init_data(m, (void *)d, sz, s_unshare, sh);
            if (rc) atomic_fetch_sub(&sh->refs, 1);
        } else {
            rc = zmq_msg_init_size(m, sz);
            if (rc == 0 && sz) memcpy(zmq_msg_data(m), d, sz);
        }
        if (rc) {
            while (k-- > 0) zmq_msg_close(&srv->outm[k]);
            return false;
        }
    }
    return true;
}

int pd__server_emit_own(void *arg, size_t n, const pd_bytes *frames, void *own,
                        size_t len) {
    pd_server *srv = arg;
    s_share *sh = malloc(sizeof *sh);
    if (sh) {
        atomic_init(&sh->refs, 1);
        sh->own = own;
    }
    /* Every frame is made before the first goes, so a failure leaves no
     * message half sent; out of memory, the reply goes by copy. */
    if (!sh || !s_share_init(srv, n, frames, sh, len)) {
        int rc = pd__server_emit(arg, n, frames);
        if (sh)
            s_unshare(NULL, sh);
        else
            free(own);
        return rc;
    }
    size_t k = 0;
    if (s_emit_ident(srv) == 0) {
        for (; k < n; k++) {
            int fl = (k + 1 < n ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT;
            if (zmq_msg_send(&srv->outm[k], srv->sock, fl) < 0) {
                char pb[96];
                pd__server_log(srv, PD_LOG_WARN, "reply to %s: frame %zu: %s",
                               s_peer(srv, pb), k, zmq_strerror(zmq_errno()));
                break;
            }
        }
    }
    int rc = k == n ? 0 : -1;
    for (; k < n; k++) zmq_msg_close(&srv->outm[k]);
    s_unshare(NULL, sh);
    if (srv->outmcap > 65536) {
        /* Give back the table of a reply of very many frames. */
        free(srv->outm);
        srv->outm = NULL;
        srv->outmcap = 0;
    }
    return rc;
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
                 sizeof *srv->frames))
        return pd__handle_fail(&srv->h, PD_ERR_NOMEM, 0,
                               "out of memory for a request of %zu frames", n);
    for (size_t i = 0; i < n; i++)
        srv->frames[i] = (pd_bytes){zmq_msg_data(&srv->msgs[i]),
                                    zmq_msg_size(&srv->msgs[i])};
    return pd__handle(&srv->h, n, srv->frames);
}

/* Drains the monitor: connection events go to the log. */
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
            srv->h.connections++;
            pd__server_log(srv, PD_LOG_DEBUG, "connection accepted on %s",
                           addr);
            break;
        case ZMQ_EVENT_DISCONNECTED:
            if (srv->h.connections) srv->h.connections--;
            pd__server_log(
                srv, PD_LOG_DEBUG,
                "a connection on %s closed (a client left, or sent a "
                "frame over the size limit)",
                addr);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            /* e.g. a bare connect-and-close (a port check) */
            pd__server_log(
                srv, PD_LOG_INFO,
                "a connection on %s closed before its handshake ended", addr);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            pd__server_log(
                srv, PD_LOG_WARN,
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

static void s_lease_log(void *arg, int level, const char *line) {
    pd__server_log(arg, level, "%s", line);
}

static int s_serve(pd_server *srv) {
    int rc = pd_lock(srv->store);
    if (rc) {
        snprintf(srv->run_msg, sizeof srv->run_msg,
                 "server: run: cannot lock the store: %s",
                 pd_errmsg(srv->store));
        pd__server_log(srv, PD_LOG_ERROR, "%s", srv->run_msg);
        return rc;
    }
    for (size_t i = 0; i < srv->naddrs; i++)
        pd__server_log(srv, PD_LOG_INFO, "serving a %s store at %s",
                       pd_store_kind(srv->store), srv->addrs[i]);
    int64_t last = pd__now_ms();
    srv->h.start_ms = last ? last : 1;
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
            int64_t left = last + (int64_t)srv->idle_ms - pd__now_ms();
            if (left <= 0) {
                why = "idle timeout";
                break;
            }
            wait = (long)left;
        }
        /* Namespace leases: wake for the next deadline, drop what is due. */
        int64_t due = pd__handler_lease_next(&srv->h);
        if (due >= 0) {
            int64_t now = pd__now_ms();
            if (due <= now) {
                pd__handler_leases_expire(&srv->h, now, s_lease_log, srv);
                continue;
            }
            if (wait < 0 || due - now < wait) wait = (long)(due - now);
        }
        int pr = zmq_poll(it, nit, wait);
        if (pr < 0) {
            if (zmq_errno() == EINTR) continue;
            rc = PD_ERR_IO;
            snprintf(srv->run_msg, sizeof srv->run_msg, "server: zmq_poll: %s",
                     zmq_strerror(zmq_errno()));
            pd__server_log(srv, PD_LOG_ERROR, "%s", srv->run_msg);
            break;
        }
        if (it[1].revents) {
            char b[64];
            while (read(srv->pipefd[0], b, sizeof b) > 0) {}
        }
        for (int j = 2; j < nit; j++) {
            if (!it[j].revents) continue;
            if (it[j].socket == srv->mon) s_monitor(srv);
            if (it[j].socket == srv->zap) pd__zap_answer(srv);
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
                pd__server_log(srv, PD_LOG_ERROR, "%s", srv->run_msg);
                goto out;
            }
            last = pd__now_ms();
            int hr;
            char pb[96];
            if (over) {
                hr = pd__handle_fail(&srv->h, PD_ERR_LIMIT, 1,
                                     "request too large: over %" PRIu64
                                     " bytes or %zu frames (refused unread)",
                                     srv->max_message, PD__WIRE_MAX_FRAMES);
            } else {
                hr = s_serve_one(srv, n);
            }
            srv->served++;
            if (hr < 0) {
                srv->refused++;
                /* A conflict is an outcome the protocol expects (a
                 * retried writer whose earlier run committed). */
                pd__server_log(
                    srv, hr == PD_ERR_CONFLICT ? PD_LOG_INFO : PD_LOG_WARN,
                    "%s %s: %s", s_peer(srv, pb),
                    srv->h.malformed ? "sent a bad request" : "request failed",
                    srv->h.msg);
            } else if (srv->log_level >= PD_LOG_DEBUG) {
                char cn[48];
                pd_bytes c = n ? srv->frames[0] : (pd_bytes){"", 0};
                pd__server_log(srv, PD_LOG_DEBUG, "%s: %s (%zu frames): ok",
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
    /* Attempts still open are aborted: their clients cannot go on with
     * them on another run (docs/zmq.md, "Attempts"). */
    if (pd__handler_attempts_open(&srv->h)) {
        pd__server_log(srv, PD_LOG_INFO,
                       "%" PRIu64 " attempts open at the stop: aborted",
                       pd__handler_attempts_open(&srv->h));
        pd__handler_attempts_close(&srv->h);
    }
    /* A default store (private temporary directory) is dropped on close:
     * flushing it to disk first would be wasted work. */
    int frc = srv->default_store ? 0 : s_flush_store(srv);
    if (frc) {
        pd__server_log(srv, PD_LOG_ERROR, "flush on stop: %s",
                       pd_errmsg(srv->store));
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
    pd__server_log(srv, PD_LOG_INFO,
                   "%s after %" PRIu64 " requests (%" PRIu64
                   " refused or failed)",
                   why, srv->served, srv->refused);
    srv->stopped_ms = pd__now_ms();
    srv->h.connections = 0;
    return rc;
}

/* Claims the server for one run: NEW -> RUNNING.  0 or PD_ERR_MISUSE. */
static int s_claim(pd_server *srv, const char *op) {
    int expect = PD__SERVER_NEW;
    if (!atomic_compare_exchange_strong(&srv->state, &expect,
                                        PD__SERVER_RUNNING))
        return pd__err(NULL, PD_ERR_MISUSE, 0, "server: %s: %s", op,
                       expect == PD__SERVER_RUNNING
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
    atomic_store(&srv->state, PD__SERVER_DONE);
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
        atomic_store(&srv->state, PD__SERVER_NEW);
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
    return srv && atomic_load(&((pd_server *)srv)->state) == PD__SERVER_RUNNING;
}

const char *pd_server_address(const pd_server *srv, size_t i) {
    return srv && i < srv->naddrs ? srv->addrs[i] : NULL;
}

int pd_server_get_stats(pd_server *srv, pd_server_stats *out) {
    if (!srv || !out)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "server: stats: NULL");
    if (out->size < offsetof(pd_server_stats, keys) + sizeof out->keys)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "server: stats: out->size %zu (set it to "
                       "sizeof(pd_server_stats))",
                       out->size);
    if (atomic_load(&srv->state) == PD__SERVER_RUNNING)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "server: stats: the server is running (ask it with "
                       "pd_client_stats)");
    pd_server_stats st = {.size = out->size};
    int rc = pd__handler_stats(&srv->h, &st, 0);
    if (rc)
        return pd__err(NULL, rc, pd_errno(srv->store), "server: stats: %s",
                       pd_errmsg(srv->store));
    /* After a run, uptime is the time it served. */
    if (srv->h.start_ms && srv->stopped_ms)
        st.uptime_ms = (uint64_t)(srv->stopped_ms - srv->h.start_ms);
    memcpy(out, &st, out->size < sizeof st ? out->size : sizeof st);
    pd__err_clear(NULL);
    return 0;
}
