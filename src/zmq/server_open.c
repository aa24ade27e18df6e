/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Opening and closing a ZeroMQ Server: the ROUTER socket and its options,
 * the binds (an ipc path is checked first, so a live server's socket or a
 * file is never replaced), the default store (a Buffer over a Dict and a
 * private File), the CURVE setup (curve.c), and the teardown.
 */
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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
        srv->ipcs[srv->nipcs++] = (pd__ipcfile){p, st.st_dev, st.st_ino};
    }
    if (s_wildcard(addr) && !srv->curve)
        pd__server_log(
            srv, PD_LOG_WARN,
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
    free(srv->outm);
    pd__handler_fini(&srv->h);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}

static int s_open_default_store(pd_server *srv, const pd_server_opts *o) {
    pd_store *fast = NULL, *slow = NULL, *b = NULL;
    int rc = pd_dict_open(&fast);
    if (rc == 0) rc = pd_log_open_temp(&slow, o ? o->dir : NULL, 0);
    uint64_t mem = o && o->memory ? o->memory : PD_SERVER_MEMORY_DEFAULT;
    if (rc == 0) rc = pd_buffer_open(&b, &fast, &slow, mem, PD_BUFFER_PRIVATE);
    if (rc) {
        pd__errsave sv;
        pd__err_save(NULL, &sv);
        pd_close(&fast);
        pd_close(&slow);
        pd__err_restore(NULL, &sv);
        return pd__err_wrap(NULL, NULL, rc, "server: open: default store");
    }
    srv->store = b;
    srv->own_store = true;
    srv->default_store = true;
    return 0;
}

int pd_server_open(pd_server **out, pd_store **store, const pd_server_opts *o) {
    if (!out) return pd__err(NULL, PD_ERR_MISUSE, 0, "server: open: NULL out");
    *out = NULL;
    if (o && o->struct_version > PD_SERVER_OPTS_VERSION)
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "server: open: pd_server_opts.struct_version %u "
                       "(this library knows up to %u)",
                       o->struct_version, PD_SERVER_OPTS_VERSION);
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
        if (!pd__z85_ok(o->curve_secret))
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
        if (!pd__z85_ok(o->curve_clients[i]))
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
    atomic_init(&srv->state, PD__SERVER_NEW);
    srv->log = o && o->log ? o->log : pd__server_log_stderr;
    srv->log_arg = o && o->log ? o->log_arg : NULL;
    srv->log_level = o && o->log_level ? o->log_level : PD_LOG_INFO;
    srv->max_message =
        o && o->max_message ? o->max_message : PD_ZMQ_MAX_MESSAGE_DEFAULT;
    srv->idle_ms = o ? o->idle_timeout_ms : 0;
    srv->flags = flags;
    srv->curve = o && o->curve_secret;
    srv->h.flags = flags;
    srv->h.emit = pd__server_emit;
    srv->h.emit_own = pd__server_emit_own;
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
            pd__sockopt_int(srv->sock, ZMQ_RCVHWM, PD__SERVER_RCVHWM) ||
            pd__sockopt_int(srv->sock, ZMQ_SNDHWM, PD__SERVER_SNDHWM) ||
            pd__sockopt_int(srv->sock, ZMQ_LINGER, PD__SERVER_LINGER_MS) ||
            zmq_setsockopt(srv->sock, ZMQ_ROUTER_MANDATORY, &mandatory,
                           sizeof mandatory))
            rc = pd__err(NULL, PD_ERR_IO, zmq_errno(),
                         "server: open: zmq_setsockopt");
    }
    /* The ZAP handler is bound before the server socket, so no client can
     * slip in before it. */
    if (rc == 0 && o && o->ncurve_clients)
        rc = pd__zap_open(srv, o->ncurve_clients, o->curve_clients);
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
            if (srv->mon && (pd__sockopt_int(srv->mon, ZMQ_LINGER, 0) ||
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
        pd__errsave sv; /* the teardown must not replace it */
        pd__err_save(NULL, &sv);
        if (srv->default_store) pd_close(&srv->store);
        if (srv->sock) pd__sockopt_int(srv->sock, ZMQ_LINGER, 0);
        s_free(srv);
        return pd__err_restore(NULL, &sv);
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
        while (atomic_load(&srv->state) == PD__SERVER_RUNNING)
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
        if (crc && !rc) return pd__err_wrap(NULL, NULL, crc, "server: close");
    }
    if (rc) return pd__err(NULL, rc, 0, "%s", msg);
    pd__err_clear(NULL);
    return 0;
}
