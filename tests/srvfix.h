/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The fixture shared by the ZeroMQ Server and Client suites
 * (test_server_*.c): servers with captured logs, clients, raw sockets. */
#ifndef PARTD_TESTS_SRVFIX_H
#define PARTD_TESTS_SRVFIX_H

#include "testutil.h"
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#ifndef PARTD_SOURCE_DIR
#define PARTD_SOURCE_DIR "."
#endif
#ifndef PARTD_TEST_PYTHON
#define PARTD_TEST_PYTHON "/usr/bin/python3"
#endif

/* ------------------------------------------------------------ Helpers */

/* Captured log lines of a server. */
typedef struct t_log {
    pthread_mutex_t mu;
    char buf[1 << 18];
    size_t len;
} t_log;

static PD__UNUSED void t_log_fn(void *arg, int level, const char *line) {
    t_log *l = arg;
    pthread_mutex_lock(&l->mu);
    int w = snprintf(l->buf + l->len, sizeof l->buf - l->len, "%d %s\n", level,
                     line);
    if (w > 0 && l->len + (size_t)w < sizeof l->buf) l->len += (size_t)w;
    pthread_mutex_unlock(&l->mu);
}

static PD__UNUSED bool t_log_has(t_log *l, const char *what) {
    pthread_mutex_lock(&l->mu);
    bool r = strstr(l->buf, what) != NULL;
    pthread_mutex_unlock(&l->mu);
    return r;
}

static PD__UNUSED t_log *t_log_new(void) {
    t_log *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

static PD__UNUSED void t_log_free(t_log *l) {
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* A server over *store (NULL: the default store), not started yet,
 * logging into lg (may be NULL: quiet). */
static PD__UNUSED pd_server *t_server_open(pd_store **store, pd_server_opts *o,
                                           t_log *lg) {
    pd_server_opts def = {0};
    if (!o) o = &def;
    o->log = t_log_fn;
    static t_log sink_log; /* a log nobody reads */
    static bool sink_init;
    if (!sink_init) {
        pthread_mutex_init(&sink_log.mu, NULL);
        sink_init = true;
    }
    if (!lg) {
        sink_log.len = 0;
        sink_log.buf[0] = 0;
    }
    o->log_arg = lg ? lg : &sink_log;
    if (!o->log_level) o->log_level = PD_LOG_DEBUG;
    pd_server *srv = NULL;
    int rc = pd_server_open(&srv, store, o);
    ck_assert_msg(rc == 0, "server open: %s", pd_errmsg(NULL));
    return srv;
}

/* The same, started in a thread. */
static PD__UNUSED pd_server *t_server(pd_store **store, pd_server_opts *o,
                                      t_log *lg) {
    pd_server *srv = t_server_open(store, o, lg);
    TU_OK(pd_server_start(srv), NULL);
    return srv;
}

static PD__UNUSED pd_store *t_client_w(const char *addr, int timeout_ms,
                                       unsigned flags, unsigned window) {
    pd_client_opts o = {0};
    o.timeout_ms = timeout_ms;
    o.flags = flags;
    o.window = window;
    pd_store *c = NULL;
    int rc = pd_client_open(&c, addr, &o);
    ck_assert_msg(rc == 0, "client open: %s", pd_errmsg(NULL));
    ck_assert_str_eq(pd_store_kind(c), "client");
    return c;
}

static PD__UNUSED pd_store *t_client(const char *addr, int timeout_ms,
                                     unsigned flags) {
    return t_client_w(addr, timeout_ms, flags, 0);
}

/* A client whose frames are at most max_message bytes (0: the default). */
static PD__UNUSED pd_store *t_client_max(const char *addr,
                                         uint64_t max_message) {
    pd_client_opts o = {0};
    o.timeout_ms = 10000;
    o.max_message = max_message;
    pd_store *c = NULL;
    TU_OK(pd_client_open(&c, addr, &o), NULL);
    return c;
}

static PD__UNUSED void t_close_server(pd_server **srv) {
    int rc = pd_server_close(srv);
    ck_assert_msg(rc == 0, "server close: %s", pd_errmsg(NULL));
    ck_assert_ptr_null(*srv);
}

static PD__UNUSED void t_close(pd_store **s) {
    int rc = pd_close(s);
    ck_assert_msg(rc == 0, "close: %s", pd_errmsg(NULL));
}

static PD__UNUSED int64_t t_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until something accepts connections on the ipc address addr. */
static PD__UNUSED void t_wait_listening(const char *addr) {
    for (int i = 0; i < 500; i++) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", addr + 6);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        int c = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        close(fd);
        if (c == 0) return;
        usleep(10000);
    }
    ck_abort_msg("nothing listens at %s", addr);
}

/* The replies a pd__handler emits: of the first 8, the frame count, the
 * first and last frames (NUL-terminated, cut short), and a lone 8-byte
 * frame of the first (a begin's token). */
typedef struct t_cap {
    size_t nmsg;
    size_t nframes[8];
    char first[8][64];
    char last[8][600];
    unsigned char tok[8];
} t_cap;

static PD__UNUSED int t_cap_emit(void *arg, size_t n, const pd_bytes *f) {
    t_cap *c = arg;
    if (c->nmsg < 8) {
        c->nframes[c->nmsg] = n;
        size_t l = n && f[0].size < 63 ? f[0].size : (n ? 63 : 0);
        memcpy(c->first[c->nmsg], n ? f[0].data : "", l);
        c->first[c->nmsg][l] = 0;
        l = n && f[n - 1].size < 599 ? f[n - 1].size : (n ? 599 : 0);
        memcpy(c->last[c->nmsg], n ? f[n - 1].data : "", l);
        c->last[c->nmsg][l] = 0;
        if (c->nmsg == 0 && n == 1 && f[0].size == 8)
            memcpy(c->tok, f[0].data, 8);
    }
    c->nmsg++;
    return 0;
}

/* A raw DEALER for sending what a real client never would. */
typedef struct t_raw {
    void *ctx, *sock;
} t_raw;

static PD__UNUSED t_raw t_raw_open(const char *addr) {
    t_raw r;
    r.ctx = zmq_ctx_new();
    r.sock = zmq_socket(r.ctx, ZMQ_DEALER);
    int zero = 0, one = 1, small = 4096;
    zmq_setsockopt(r.sock, ZMQ_LINGER, &zero, sizeof zero);
    /* Small queues: a socket that does not read fills up soon. */
    zmq_setsockopt(r.sock, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(r.sock, ZMQ_RCVBUF, &small, sizeof small);
    ck_assert_int_eq(zmq_connect(r.sock, addr), 0);
    return r;
}

static PD__UNUSED void t_raw_close(t_raw *r) {
    zmq_close(r->sock);
    zmq_ctx_term(r->ctx);
}

/* Sends n frames (strings, or with lens when lens != NULL). */
static PD__UNUSED void t_raw_send(t_raw *r, size_t n, const char *const *f,
                                  const size_t *lens) {
    for (size_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(f[i]);
        int rc = zmq_send(r->sock, f[i], l, i + 1 < n ? ZMQ_SNDMORE : 0);
        ck_assert_int_eq(rc, (int)l);
    }
}

/* Receives one message: returns its frame count (0 on timeout); frames are
 * copied NUL-terminated into out[0..cap). */
static PD__UNUSED size_t t_raw_recv(t_raw *r, int timeout_ms, char out[][256],
                                    size_t cap) {
    zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0) return 0;
    size_t n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, r->sock, 0), 0);
        if (n < cap) {
            size_t l = zmq_msg_size(&m) < 255 ? zmq_msg_size(&m) : 255;
            memcpy(out[n], zmq_msg_data(&m), l);
            out[n][l] = 0;
        }
        n++;
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return n;
}

/* Asserts that the next message on r is an error reply with `code`. */
static PD__UNUSED void t_raw_expect_error(t_raw *r, int code,
                                          const char *what) {
    char f[4][256];
    size_t n = t_raw_recv(r, 5000, f, 4);
    ck_assert_msg(n == 3 && strcmp(f[0], "error") == 0,
                  "%s: want an error reply, got %zu frames '%s'", what, n,
                  n ? f[0] : "");
    ck_assert_msg(atoi(f[1]) == code, "%s: code %s, want %d (%s)", what, f[1],
                  code, f[2]);
    ck_assert_msg(strlen(f[2]) > 0, "%s: empty message", what);
}

static PD__UNUSED void t_raw_expect_ack(t_raw *r, const char *what) {
    char f[4][256];
    size_t n = t_raw_recv(r, 5000, f, 4);
    ck_assert_msg(n == 1 && strcmp(f[0], "ack") == 0,
                  "%s: want [ack], got %zu frames '%s' '%s'", what, n,
                  n ? f[0] : "", n > 2 ? f[2] : "");
}

/* Appends one value to k and checks a round trip through the client. */
static PD__UNUSED void t_roundtrip(pd_store *c, const char *key,
                                   const char *val) {
    pd_key k = PD_KEY_STR(key);
    TU_OK(pd_delete(c, 1, &k, 0), c);
    tu_append1(c, k, val, strlen(val));
    tu_expect_str(c, k, val);
}

/* Check's fork mode leaves its SIGTERM/SIGINT handler (which signals the
 * whole process group) in forked children: restore the defaults. */
static PD__UNUSED void t_default_signals(void) {
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
}

/* A key of 65 parts, one more than the wire allows ("p-|-p-|-...p"),
 * NUL-terminated in out (T_MANY_PARTS_CAP bytes); returns its length. */
#define T_MANY_PARTS_CAP (65 * 4)
static PD__UNUSED size_t t_many_parts(char *out) {
    size_t l = 0;
    for (int i = 0; i < 65; i++) {
        if (i) {
            memcpy(out + l, "-|-", 3);
            l += 3;
        }
        out[l++] = 'p';
    }
    out[l] = 0;
    return l;
}

#endif
