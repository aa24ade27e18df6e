/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The ZeroMQ Server and Client: protocol, faults, security, CLI, interop. */
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

/* The CLI verb, tested in forked children without the CLI's main(). */
#include "cli/opts.c"
#include "cli/out.c"
#include "cli/serve.c"
#include "cli/store.c"

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

static void t_log_fn(void *arg, int level, const char *line) {
    t_log *l = arg;
    pthread_mutex_lock(&l->mu);
    int w = snprintf(l->buf + l->len, sizeof l->buf - l->len, "%d %s\n", level,
                     line);
    if (w > 0 && l->len + (size_t)w < sizeof l->buf) l->len += (size_t)w;
    pthread_mutex_unlock(&l->mu);
}

static bool t_log_has(t_log *l, const char *what) {
    pthread_mutex_lock(&l->mu);
    bool r = strstr(l->buf, what) != NULL;
    pthread_mutex_unlock(&l->mu);
    return r;
}

static t_log *t_log_new(void) {
    t_log *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

static void t_log_free(t_log *l) {
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* A server over *store (NULL: the default store), started in a thread,
 * logging into lg (may be NULL: quiet). */
static pd_server *t_server(pd_store **store, pd_server_opts *o, t_log *lg) {
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
    TU_OK(pd_server_start(srv), NULL);
    return srv;
}

static pd_store *t_client_w(const char *addr, int timeout_ms, unsigned flags,
                            unsigned window) {
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

static pd_store *t_client(const char *addr, int timeout_ms, unsigned flags) {
    return t_client_w(addr, timeout_ms, flags, 0);
}

static void t_close_server(pd_server **srv) {
    int rc = pd_server_close(srv);
    ck_assert_msg(rc == 0, "server close: %s", pd_errmsg(NULL));
    ck_assert_ptr_null(*srv);
}

static void t_close(pd_store **s) {
    int rc = pd_close(s);
    ck_assert_msg(rc == 0, "close: %s", pd_errmsg(NULL));
}

static int64_t t_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A raw DEALER for sending what a real client never would. */
typedef struct t_raw {
    void *ctx, *sock;
} t_raw;

static t_raw t_raw_open(const char *addr) {
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

static void t_raw_close(t_raw *r) {
    zmq_close(r->sock);
    zmq_ctx_term(r->ctx);
}

/* Sends n frames (strings, or with lens when lens != NULL). */
static void t_raw_send(t_raw *r, size_t n, const char *const *f,
                       const size_t *lens) {
    for (size_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(f[i]);
        int rc = zmq_send(r->sock, f[i], l, i + 1 < n ? ZMQ_SNDMORE : 0);
        ck_assert_int_eq(rc, (int)l);
    }
}

/* Receives one message: returns its frame count (0 on timeout); frames are
 * copied NUL-terminated into out[0..cap). */
static size_t t_raw_recv(t_raw *r, int timeout_ms, char out[][256],
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
static void t_raw_expect_error(t_raw *r, int code, const char *what) {
    char f[4][256];
    size_t n = t_raw_recv(r, 5000, f, 4);
    ck_assert_msg(n == 3 && strcmp(f[0], "error") == 0,
                  "%s: want an error reply, got %zu frames '%s'", what, n,
                  n ? f[0] : "");
    ck_assert_msg(atoi(f[1]) == code, "%s: code %s, want %d (%s)", what, f[1],
                  code, f[2]);
    ck_assert_msg(strlen(f[2]) > 0, "%s: empty message", what);
}

static void t_raw_expect_ack(t_raw *r, const char *what) {
    char f[4][256];
    size_t n = t_raw_recv(r, 5000, f, 4);
    ck_assert_msg(n == 1 && strcmp(f[0], "ack") == 0,
                  "%s: want [ack], got %zu frames '%s' '%s'", what, n,
                  n ? f[0] : "", n > 2 ? f[2] : "");
}

/* Appends one value to k and checks a round trip through the client. */
static void t_roundtrip(pd_store *c, const char *key, const char *val) {
    pd_key k = PD_KEY_STR(key);
    TU_OK(pd_delete(c, 1, &k, 0), c);
    tu_append1(c, k, val, strlen(val));
    tu_expect_str(c, k, val);
}

/* ------------------------------------------------------------ Protocol */

START_TEST(commands) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    const char *addr = pd_server_address(srv, 0);
    ck_assert_ptr_nonnull(addr);
    ck_assert_ptr_null(pd_server_address(srv, 1));
    pd_store *c = t_client(addr, 5000, 0);
    ck_assert_str_eq(pd_client_address(c), addr);

    /* Batches, a key repeated inside one batch, binary and empty keys. */
    pd_bytes tp[2] = {PD_BYTES("x", 1), PD_BYTES("y", 1)};
    pd_key keys[5] = {PD_KEY_STR("a"), PD_KEY("b\0\xff", 3),
                      PD_KEY_TUPLE(tp, 2), PD_KEY("", 0), PD_KEY_STR("a")};
    pd_bytes vals[5] = {PD_BYTES("1", 1), PD_BYTES("2", 1), PD_BYTES("3", 1),
                        PD_BYTES("4", 1), PD_BYTES("5", 1)};
    TU_OK(pd_append(c, 5, keys, vals, 0), c);
    TU_OK(pd_append(c, 5, keys, vals, 0), c);
    tu_expect_str(c, keys[0], "1515");
    tu_expect(c, keys[1], "22", 2);
    tu_expect_str(c, keys[2], "33");
    tu_expect_str(c, keys[3], "44");
    ck_assert_int_eq(pd_client_server_is_ours(c), 1);

    /* PD_FSYNC cannot cross the wire: refused, nothing sent. */
    ck_assert_int_eq(pd_append(c, 1, keys, vals, PD_FSYNC), PD_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(pd_errmsg(c), "PD_FSYNC") &&
                      strstr(pd_errmsg(c), addr),
                  "%s", pd_errmsg(c));
    ck_assert_int_eq(pd_iset(c, 1, keys, vals, PD_FSYNC), PD_ERR_UNSUPPORTED);
    tu_expect_str(c, keys[0], "1515");

    /* A get of several keys, some missing, in order. */
    pd_key g[4] = {PD_KEY_STR("missing"), keys[2], PD_KEY_STR("a"),
                   PD_KEY_STR("nope")};
    pd_result *r = NULL;
    TU_OK(pd_get(c, 4, g, &r, 0), c);
    ck_assert_uint_eq(pd_result_count(r), 4);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 0);
    ck_assert_int_eq(memcmp(pd_result_value(r, 1).data, "33", 2), 0);
    ck_assert_int_eq(memcmp(pd_result_value(r, 2).data, "1515", 4), 0);
    ck_assert_uint_eq(pd_result_value(r, 3).size, 0);
    pd_result_free(&r);
    /* Zero keys: answered locally. */
    TU_OK(pd_get(c, 0, NULL, &r, 0), c);
    ck_assert_uint_eq(pd_result_count(r), 0);
    pd_result_free(&r);

    /* keys: every key and its size, tuple included. */
    ck_assert_uint_eq(tu_nkeys(c), 4);
    ck_assert_int_eq(tu_listed_size(c, keys[0]), 4);
    ck_assert_int_eq(tu_listed_size(c, keys[2]), 2);
    ck_assert_int_eq(tu_listed_size(c, keys[1]), 2);

    /* delete: present and missing keys. */
    pd_key d[2] = {PD_KEY_STR("a"), PD_KEY_STR("never")};
    TU_OK(pd_delete(c, 2, d, 0), c);
    tu_expect_str(c, d[0], "");
    ck_assert_uint_eq(tu_nkeys(c), 3);

    /* iset: idempotent for this handle, and across clients (the server's
     * store remembers too, as the reference's does). */
    pd_key ik[2] = {PD_KEY_STR("i1"), PD_KEY_STR("i2")};
    pd_bytes iv1[2] = {PD_BYTES("one", 3), PD_BYTES("two", 3)};
    pd_bytes iv2[2] = {PD_BYTES("uno", 3), PD_BYTES("dos", 3)};
    TU_OK(pd_iset(c, 2, ik, iv1, 0), c);
    TU_OK(pd_iset(c, 2, ik, iv2, 0), c);
    tu_expect_str(c, ik[0], "one");
    tu_expect_str(c, ik[1], "two");
    pd_store *c2 = t_client(addr, 5000, PD_CLIENT_SYNC);
    TU_OK(pd_iset(c2, 2, ik, iv2, 0), c2);
    tu_expect_str(c2, ik[1], "two");

    /* drop: everything gone, the store usable, iset memo forgotten.  (Its
     * reply is read by the next call on c: sync before asking c2.) */
    TU_OK(pd_drop(c, 0), c);
    TU_OK(pd_client_sync(c), c);
    ck_assert_uint_eq(tu_nkeys(c2), 0);
    tu_expect_str(c2, keys[2], "");
    TU_OK(pd_iset(c, 1, ik, iv2, 0), c);
    tu_expect_str(c, ik[0], "uno");
    TU_OK(pd_client_sync(c), c);
    t_close(&c2);
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

START_TEST(large_values) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    pd_store *c = t_client(pd_server_address(srv, 0), 20000, 0);
    size_t big = 10u << 20;
    unsigned char *v = malloc(big);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < big; i++) v[i] = (unsigned char)(i * 7 + (i >> 13));
    pd_key k[2] = {PD_KEY_STR("big"), PD_KEY_STR("small")};
    pd_bytes vals[2] = {PD_BYTES(v, big), PD_BYTES("s", 1)};
    TU_OK(pd_append(c, 2, k, vals, 0), c);
    TU_OK(pd_append(c, 1, k, vals, 0), c);
    pd_result *r = NULL;
    TU_OK(pd_get(c, 2, k, &r, 0), c);
    pd_bytes got = pd_result_value(r, 0);
    ck_assert_uint_eq(got.size, 2 * big);
    ck_assert_int_eq(memcmp(got.data, v, big), 0);
    ck_assert_int_eq(memcmp((const char *)got.data + big, v, big), 0);
    ck_assert_uint_eq(pd_result_value(r, 1).size, 1);
    pd_result_free(&r);
    free(v);
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

/* Keys whose wire form would not decode to themselves are refused before
 * anything is sent; the others round-trip exactly. */
START_TEST(wire_keys) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    pd_store *c = t_client(pd_server_address(srv, 0), 5000, PD_CLIENT_SYNC);
    pd_bytes v = PD_BYTES("v", 1);
    pd_bytes p1[2] = {PD_BYTES("a-|", 3), PD_BYTES("b", 1)};
    pd_bytes p2[1] = {PD_BYTES("x-|-y", 5)};
    pd_bytes p3[2] = {PD_BYTES("a", 1), PD_BYTES("-|-", 3)};
    pd_key bad[4] = {PD_KEY_STR("a-|-b"), PD_KEY_TUPLE(p1, 2),
                     PD_KEY_TUPLE(p2, 1), PD_KEY_TUPLE(p3, 2)};
    for (int i = 0; i < 4; i++) {
        pd_key two[2] = {PD_KEY_STR("fine"), bad[i]};
        pd_bytes vv[2] = {v, v};
        int rc = pd_append(c, 2, two, vv, 0);
        ck_assert_int_eq(rc, PD_ERR_KEY);
        ck_assert_msg(strstr(pd_errmsg(c), "-|-") &&
                          strstr(pd_errmsg(c), "cannot cross the wire"),
                      "%s", pd_errmsg(c));
        pd_result *r = NULL;
        ck_assert_int_eq(pd_get(c, 1, &bad[i], &r, 0), PD_ERR_KEY);
        ck_assert_int_eq(pd_delete(c, 1, &bad[i], 0), PD_ERR_KEY);
    }
    /* Nothing of the refused batches arrived. */
    ck_assert_uint_eq(tu_nkeys(c), 0);
    /* Look-alikes that do cross. */
    pd_bytes q1[2] = {PD_BYTES("a-", 2), PD_BYTES("|b", 2)};
    pd_bytes q2[3] = {PD_BYTES("", 0), PD_BYTES("|-", 2), PD_BYTES("-", 1)};
    pd_bytes q3[2] = {PD_BYTES("a", 1), PD_BYTES("|-b", 3)};
    pd_key good[5] = {PD_KEY_TUPLE(q1, 2), PD_KEY_TUPLE(q2, 3),
                      PD_KEY_TUPLE(q3, 2), PD_KEY_STR("-|"), PD_KEY_STR("|-|")};
    for (int i = 0; i < 5; i++) {
        TU_OK(pd_append(c, 1, &good[i], &v, 0), c);
        ck_assert_int_eq(tu_listed_size(c, good[i]), 1);
    }
    ck_assert_uint_eq(tu_nkeys(c), 5);
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

/* The wire codec alone: every key accepted decodes back to itself. */
START_TEST(wire_codec) {
    unsigned seed = 12345;
    const char alpha[] = "-|ab";
    pd__buf wb = {0};
    pd__wkeys wk = {0};
    int accepted = 0, refused = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char store[8][8];
        pd_bytes parts[8];
        size_t np = 1 + (size_t)(rand_r(&seed) % 4);
        for (size_t i = 0; i < np; i++) {
            size_t len = (size_t)(rand_r(&seed) % 6);
            for (size_t j = 0; j < len; j++)
                store[i][j] = alpha[rand_r(&seed) % 4];
            parts[i] = (pd_bytes){store[i], len};
        }
        pd_key k =
            np == 1 ? PD_KEY(store[0], parts[0].size) : PD_KEY_TUPLE(parts, np);
        char why[64];
        wb.len = 0;
        size_t off, len;
        int rc = pd__wire_key_put(&wb, &k, &off, &len, why);
        if (rc) {
            ck_assert_int_eq(rc, PD_ERR_KEY);
            ck_assert_uint_eq(wb.len, 0);
            refused++;
            continue;
        }
        accepted++;
        pd_bytes f = {wb.p + off, len};
        size_t bad;
        ck_assert_int_eq(pd__wire_keys_decode(&wk, 1, &f, 1, &bad), 0);
        pd__pkey a, b;
        ck_assert_int_eq(pd__pkey_set(&a, &k), 0);
        ck_assert_int_eq(pd__pkey_set(&b, &wk.keys[0]), 0);
        ck_assert_msg(a.len == b.len && memcmp(a.p, b.p, a.len) == 0,
                      "key %d changed on the wire", iter);
        pd__pkey_free(&a);
        pd__pkey_free(&b);
    }
    ck_assert_int_gt(accepted, 1000);
    ck_assert_int_gt(refused, 1000);
    /* 65 parts: refused by the decoder. */
    char many[65 * 4];
    size_t l = 0;
    for (int i = 0; i < 65; i++) {
        if (i) {
            memcpy(many + l, "-|-", 3);
            l += 3;
        }
        many[l++] = 'p';
    }
    pd_bytes f[2] = {{"ok", 2}, {many, l}};
    size_t bad = 0;
    ck_assert_int_eq(pd__wire_keys_decode(&wk, 2, f, 1, &bad), PD_ERR_LIMIT);
    ck_assert_uint_eq(bad, 1);
    /* 64 parts: fine. */
    f[1].size = l - 4;
    ck_assert_int_eq(pd__wire_keys_decode(&wk, 2, f, 1, &bad), 0);
    ck_assert_uint_eq(wk.keys[1].nparts, 64);
    pd__wkeys_free(&wk);
    pd__buf_free(&wb);

    /* Final replies. */
    int code = 0;
    pd_bytes msg;
    pd_bytes ack = {"ack", 3};
    ck_assert_int_eq(pd__wire_final(1, &ack, &code, &msg), 0);
    pd_bytes er[3] = {{"error", 5}, {"-4", 2}, {"why", 3}};
    ck_assert_int_eq(pd__wire_final(3, er, &code, &msg), 1);
    ck_assert_int_eq(code, PD_ERR_KEY);
    er[1] = (pd_bytes){"-999", 4};
    ck_assert_int_eq(pd__wire_final(3, er, &code, &msg), 1);
    ck_assert_int_eq(code, PD_ERR_PROTOCOL);
    er[1] = (pd_bytes){"4", 1};
    ck_assert_int_eq(pd__wire_final(3, er, &code, &msg), -1);
    er[1] = (pd_bytes){"-4x", 3};
    ck_assert_int_eq(pd__wire_final(3, er, &code, &msg), -1);
    ck_assert_int_eq(pd__wire_final(2, er, &code, &msg), -1);
    pd_bytes nack = {"ack!", 4};
    ck_assert_int_eq(pd__wire_final(1, &nack, &code, &msg), -1);
}
END_TEST

/* Errors the server reports: immediately with PD_CLIENT_SYNC, by the next
 * call with window 1 (the reference's pacing), and the handle stays
 * usable.  (Pipelined appends: server_pipeline.) */
/* Appends to our server are pipelined: up to `window` in flight, applied in
 * the order sent; an error is reported by the append `window` calls later or
 * by the next call that is not an append, the appends behind it applied. */
START_TEST(server_pipeline) {
    char *dir = tu_mkdtemp();
    pd_store *file = NULL;
    TU_OK(pd_file_open(&file, dir, 0), NULL);
    pd_server *srv = t_server(&file, NULL, NULL);
    const char *addr = pd_server_address(srv, 0);
    pd_client_opts bad = {0};
    bad.window = PD_CLIENT_WINDOW_MAX + 1;
    pd_store *none = NULL;
    ck_assert_int_eq(pd_client_open(&none, addr, &bad), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(NULL), "window"), "%s", pd_errmsg(NULL));
    ck_assert_ptr_null(none);

    /* Order: 2000 pipelined appends to one key read back in order. */
    pd_store *c = t_client_w(addr, 5000, 0, 4);
    pd_key k = PD_KEY_STR("k");
    char want[2000 * 6 + 1], *w = want;
    for (int i = 0; i < 2000; i++) {
        char num[8];
        int len = snprintf(num, sizeof num, "%d,", i);
        pd_bytes v = PD_BYTES(num, (size_t)len);
        TU_OK(pd_append(c, 1, &k, &v, 0), c);
        memcpy(w, num, (size_t)len);
        w += len;
    }
    *w = 0;
    ck_assert_int_eq(pd_client_server_is_ours(c), 1);
    tu_expect_str(c, k, want);

    /* Errors: File cannot hold ('a', 'b') beside 'a'. */
    pd_bytes tp[2] = {PD_BYTES("a", 1), PD_BYTES("b", 1)};
    pd_key flat = PD_KEY_STR("a"), tuple = PD_KEY_TUPLE(tp, 2);
    pd_bytes x = PD_BYTES("x", 1);
    TU_OK(pd_append(c, 1, &flat, &x, 0), c);
    TU_OK(pd_client_sync(c), c);
    TU_OK(pd_append(c, 1, &tuple, &x, 0), c); /* fails on the server */
    pd_key after[3] = {PD_KEY_STR("p1"), PD_KEY_STR("p2"), PD_KEY_STR("p3")};
    for (int i = 0; i < 3; i++) TU_OK(pd_append(c, 1, &after[i], &x, 0), c);
    /* Four in flight: the next append reads the failed one's reply. */
    pd_key p4 = PD_KEY_STR("p4");
    ck_assert_int_eq(pd_append(c, 1, &p4, &x, 0), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(c), "previous request, append of 1 key") &&
                      strstr(pd_errmsg(c), "not sent") &&
                      strstr(pd_errmsg(c), addr),
                  "%s", pd_errmsg(c));
    TU_OK(pd_client_sync(c), c);
    for (int i = 0; i < 3; i++) tu_expect_str(c, after[i], "x");
    tu_expect_str(c, p4, ""); /* not sent */

    /* Several failures: the first reported, the count of the others. */
    for (int i = 0; i < 3; i++) TU_OK(pd_append(c, 1, &tuple, &x, 0), c);
    ck_assert_int_eq(pd_client_sync(c), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(c), "and 2 later requests failed too"), "%s",
                  pd_errmsg(c));
    TU_OK(pd_client_sync(c), c);
    /* A get reads the failed append's reply first, and is not sent. */
    TU_OK(pd_append(c, 1, &tuple, &x, 0), c);
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(c, 1, &flat, &r, 0), PD_ERR_KEY);
    ck_assert_ptr_null(r);
    tu_expect_str(c, flat, "x");

    /* pd_close waits for every append in flight. */
    pd_key last = PD_KEY_STR("last");
    for (int i = 0; i < 4; i++) TU_OK(pd_append(c, 1, &last, &x, 0), c);
    TU_OK(pd_close(&c), NULL);
    /* A long timeout: under valgrind the big get below is slow. */
    pd_store *c2 = t_client(addr, 120000, 0);
    tu_expect_str(c2, last, "xxxx");

    /* The byte bound: appends of 12 MiB, at most 32 MiB in flight. */
    size_t big = (size_t)12 << 20;
    int nbig = tu_under_valgrind() ? 3 : 5;
    char *buf = malloc(big);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 'b', big);
    pd_bytes bv = PD_BYTES(buf, big);
    pd_key bk = PD_KEY_STR("big");
    for (int i = 0; i < nbig; i++) TU_OK(pd_append(c2, 1, &bk, &bv, 0), c2);
    TU_OK(pd_client_sync(c2), c2);
    r = NULL;
    TU_OK(pd_get(c2, 1, &bk, &r, 0), c2);
    ck_assert_uint_eq(pd_result_value(r, 0).size, (size_t)nbig * big);
    pd_result_free(&r);
    free(buf);
    t_close(&c2);
    t_close_server(&srv);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(server_errors) {
    char *dir = tu_mkdtemp();
    pd_store *file = NULL;
    TU_OK(pd_file_open(&file, dir, 0), NULL);
    pd_server *srv = t_server(&file, NULL, NULL);
    ck_assert_ptr_null(file);
    const char *addr = pd_server_address(srv, 0);
    pd_bytes tp[2] = {PD_BYTES("a", 1), PD_BYTES("b", 1)};
    pd_key flat = PD_KEY_STR("a"), tuple = PD_KEY_TUPLE(tp, 2);

    pd_store *s = t_client(addr, 5000, PD_CLIENT_SYNC);
    tu_append1(s, flat, "x", 1);
    /* File cannot hold ('a', 'b') beside 'a': PD_ERR_KEY from the server. */
    pd_bytes v = PD_BYTES("y", 1);
    ck_assert_int_eq(pd_append(s, 1, &tuple, &v, 0), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(s), addr), "%s", pd_errmsg(s));
    tu_expect_str(s, flat, "x");

    pd_store *l = t_client_w(addr, 5000, 0, 1);
    TU_OK(pd_append(l, 1, &tuple, &v, 0), l); /* reply still in flight */
    pd_key other = PD_KEY_STR("other");
    ck_assert_int_eq(pd_append(l, 1, &other, &v, 0), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(l), "previous request, append of 1 key") &&
                      strstr(pd_errmsg(l), "not sent"),
                  "%s", pd_errmsg(l));
    tu_expect_str(l, other, ""); /* the second append was not sent */
    TU_OK(pd_append(l, 1, &tuple, &v, 0), l);
    ck_assert_int_eq(pd_client_sync(l), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(l), "sync: the previous request") &&
                      !strstr(pd_errmsg(l), "not sent"),
                  "%s", pd_errmsg(l));
    TU_OK(pd_client_sync(l), l); /* nothing in flight any more */
    /* A get that fails on the server reports its own failure. */

    /* pd_close reports the last reply too. */
    TU_OK(pd_append(l, 1, &tuple, &v, 0), l);
    ck_assert_int_eq(pd_close(&l), PD_ERR_KEY);
    ck_assert_ptr_null(l);
    t_close(&s);
    t_close_server(&srv);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* "failget": a Dict whose get fails for the key "boom" (PD_ERR_IO). */
typedef struct t_fg {
    pd_store base;
    pd_store *inner;
} t_fg;

static int t_fg_append(pd_store *s, size_t n, const pd_key *k,
                       const pd_bytes *v, unsigned f) {
    (void)f;
    t_fg *g = (t_fg *)s;
    int rc = pd_append(g->inner, n, k, v, 0);
    return rc ? pd__err_inner(s, g->inner, rc) : 0;
}

static int t_fg_get(pd_store *s, size_t n, const pd_key *k, pd_result *r,
                    unsigned f) {
    (void)f;
    t_fg *g = (t_fg *)s;
    for (size_t i = 0; i < n; i++)
        if (k[i].nparts == 0 && k[i].size == 4 && !memcmp(k[i].data, "boom", 4))
            return pd__err(s, PD_ERR_IO, EIO, "get 'boom': read(/fake)");
    pd_result *ir = NULL;
    int rc = pd_get(g->inner, n, k, &ir, 0);
    if (rc) return pd__err_inner(s, g->inner, rc);
    for (size_t i = 0; i < n && rc == 0; i++) {
        pd_bytes v = pd_result_value(ir, i);
        if (pd__result_put(r, v.data, v.size) || pd__result_next(r))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get");
    }
    pd_result_free(&ir);
    return rc;
}

static int t_fg_del(pd_store *s, size_t n, const pd_key *k, unsigned f) {
    (void)f;
    t_fg *g = (t_fg *)s;
    int rc = pd_delete(g->inner, n, k, 0);
    return rc ? pd__err_inner(s, g->inner, rc) : 0;
}

static int t_fg_drop(pd_store *s, unsigned f) {
    (void)f;
    t_fg *g = (t_fg *)s;
    int rc = pd_drop(g->inner, 0);
    return rc ? pd__err_inner(s, g->inner, rc) : 0;
}

static int t_fg_set(pd_store *s, size_t n, const pd_key *k, const pd_bytes *v,
                    unsigned f) {
    (void)f;
    t_fg *g = (t_fg *)s;
    int rc = pd__set_inner(g->inner, n, k, v, 0);
    return rc ? pd__err_inner(s, g->inner, rc) : 0;
}

static int t_fg_keys(pd_store *s, pd_keylist *kl, unsigned f) {
    (void)kl;
    (void)f;
    return pd__err(s, PD_ERR_IO, EIO, "keys: readdir(/fake)");
}

static int t_fg_destroy(pd_store *s) {
    t_fg *g = (t_fg *)s;
    return pd_close(&g->inner);
}

static const pd_store_ops t_fg_ops = {.kind = "failget",
                                      .append = t_fg_append,
                                      .get = t_fg_get,
                                      .del = t_fg_del,
                                      .set = t_fg_set,
                                      .drop = t_fg_drop,
                                      .keys = t_fg_keys,
                                      .destroy = t_fg_destroy};

static pd_store *t_failget(void) {
    t_fg *g = calloc(1, sizeof *g);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(pd__store_init(&g->base, &t_fg_ops), 0);
    TU_OK(pd_dict_open(&g->inner), NULL);
    return &g->base;
}

/* A get that fails on the server: its own error, named; the connection
 * stays in step (later calls work). */
START_TEST(failed_get) {
    pd_store *fg = t_failget();
    pd_server *srv = t_server(&fg, NULL, NULL);
    pd_store *c = t_client(pd_server_address(srv, 0), 5000, 0);
    tu_append1(c, PD_KEY_STR("ok"), "fine", 4);
    pd_key k[2] = {PD_KEY_STR("ok"), PD_KEY_STR("boom")};
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(c, 2, k, &r, 0), PD_ERR_IO);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(pd_errmsg(c), "get: the server at ") &&
                      strstr(pd_errmsg(c), "read(/fake)") &&
                      !strstr(pd_errmsg(c), "previous"),
                  "%s", pd_errmsg(c));
    tu_expect_str(c, k[0], "fine");
    ck_assert_int_eq(pd_keys(c, &(pd_keylist *){NULL}, 0), PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(c), "keys: the server at") &&
                      strstr(pd_errmsg(c), "readdir(/fake)"),
                  "%s", pd_errmsg(c));
    tu_append1(c, PD_KEY_STR("ok"), "!", 1);
    tu_expect_str(c, k[0], "fine!");
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

/* ------------------------------------------------------------ Handler */

typedef struct t_cap {
    size_t nmsg;
    size_t nframes[8];
    char first[8][64];
} t_cap;

static int t_cap_emit(void *arg, size_t n, const pd_bytes *f) {
    t_cap *c = arg;
    if (c->nmsg < 8) {
        c->nframes[c->nmsg] = n;
        size_t l = n && f[0].size < 63 ? f[0].size : (n ? 63 : 0);
        memcpy(c->first[c->nmsg], n ? f[0].data : "", l);
        c->first[c->nmsg][l] = 0;
    }
    c->nmsg++;
    return 0;
}

static int t_handle(pd__handler *h, t_cap *cap, size_t n,
                    const char *const *f) {
    pd_bytes fr[16];
    for (size_t i = 0; i < n; i++) fr[i] = (pd_bytes){f[i], strlen(f[i])};
    memset(cap, 0, sizeof *cap);
    return pd__handle(h, n, fr);
}

START_TEST(handler) {
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    TU_OK(pd_lock(d), d);
    t_cap cap;
    pd__handler h = {0};
    h.store = d;
    h.emit = t_cap_emit;
    h.emit_arg = &cap;
    const char *app[] = {"append", "k", "v", "k2", "w"};
    ck_assert_int_eq(t_handle(&h, &cap, 5, app), 0);
    ck_assert_uint_eq(cap.nmsg, 1);
    ck_assert_str_eq(cap.first[0], "ack");
    const char *get[] = {"get", "k", "zz", "k2"};
    ck_assert_int_eq(t_handle(&h, &cap, 4, get), 0);
    ck_assert_uint_eq(cap.nmsg, 2);
    ck_assert_uint_eq(cap.nframes[0], 3);
    ck_assert_str_eq(cap.first[0], "v");
    ck_assert_str_eq(cap.first[1], "ack");
    /* Refusals: exactly one error message. */
    const char *const bad[][4] = {
        {"append", "k"}, {"bogus", "x"},  {"", ""},    {"iset", "k"},
        {"iset", NULL},  {"APPEND", "k"}, {"GET", "k"}};
    size_t nb[] = {2, 2, 1, 2, 1, 2, 2};
    for (size_t i = 0; i < sizeof nb / sizeof nb[0]; i++) {
        int rc = t_handle(&h, &cap, nb[i], bad[i]);
        ck_assert_msg(rc < 0, "bad request %zu accepted", i);
        ck_assert_int_eq(h.malformed, 1);
        ck_assert_uint_eq(cap.nmsg, 1);
        ck_assert_uint_eq(cap.nframes[0], 3);
        ck_assert_str_eq(cap.first[0], "error");
    }
    ck_assert_int_lt(pd__handle(&h, 0, NULL), 0);
    ck_assert_str_eq(cap.first[0], "error");
    /* A get that fails still sends its results first. */
    char many[65 * 4];
    size_t l = 0;
    for (int i = 0; i < 65; i++) {
        if (i) {
            memcpy(many + l, "-|-", 3);
            l += 3;
        }
        many[l++] = 'p';
    }
    many[l] = 0;
    const char *g2[] = {"get", "k", many};
    ck_assert_int_eq(t_handle(&h, &cap, 3, g2), PD_ERR_LIMIT);
    ck_assert_uint_eq(cap.nmsg, 2);
    ck_assert_uint_eq(cap.nframes[0], 2);
    ck_assert_str_eq(cap.first[1], "error");
    const char *g0[] = {"get"};
    ck_assert_int_lt(t_handle(&h, &cap, 1, g0), 0);
    ck_assert_str_eq(cap.first[cap.nmsg - 1], "error");
    /* close: acknowledged, or refused with PD_SERVER_NO_CLOSE. */
    const char *cl[] = {"close"};
    ck_assert_int_eq(t_handle(&h, &cap, 1, cl), PD__HANDLE_CLOSE);
    ck_assert_str_eq(cap.first[0], "ack");
    h.flags = PD_SERVER_NO_CLOSE;
    ck_assert_int_eq(t_handle(&h, &cap, 1, cl), PD_ERR_UNSUPPORTED);
    ck_assert_str_eq(cap.first[0], "error");
    /* The store is unharmed. */
    tu_expect_str(d, PD_KEY_STR("k"), "v");
    pd__handler_fini(&h);
    TU_OK(pd_unlock(d), d);
    t_close(&d);
}
END_TEST

/* The stats command through the handler: exact counts, refusals
 * included, and the reply's [name, 8-byte value] frames. */
START_TEST(handler_stats) {
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    TU_OK(pd_lock(d), d);
    t_cap cap;
    pd__handler h = {0};
    h.store = d;
    h.emit = t_cap_emit;
    h.emit_arg = &cap;
    const char *syn[] = {"syn"};
    const char *app[] = {"append", "k", "vv", "k2", "www"};
    const char *get[] = {"get", "k"};
    const char *bogus[] = {"bogus"};
    const char *odd[] = {"append", "k"};
    const char *st[] = {"stats"};
    ck_assert_int_eq(t_handle(&h, &cap, 1, syn), 0);
    ck_assert_int_eq(t_handle(&h, &cap, 5, app), 0);
    ck_assert_int_eq(t_handle(&h, &cap, 5, app), 0);
    ck_assert_int_eq(t_handle(&h, &cap, 2, get), 0);
    ck_assert_int_lt(t_handle(&h, &cap, 1, bogus), 0);
    ck_assert_int_lt(t_handle(&h, &cap, 2, odd), 0);
    ck_assert_int_lt(pd__handle(&h, 0, NULL), 0);
    ck_assert_int_eq(t_handle(&h, &cap, 1, st), 0);
    ck_assert_uint_eq(cap.nmsg, 2);
    ck_assert_uint_eq(cap.nframes[0], 2 * pd__nstat_fields);
    ck_assert_str_eq(cap.first[0], "keys");
    ck_assert_str_eq(cap.first[1], "ack");
    pd_server_stats s = {.size = sizeof s};
    TU_OK(pd__handler_stats(&h, &s, PD_NOLOCK), d);
    ck_assert_uint_eq(s.keys, 2);
    ck_assert_uint_eq(s.bytes, 10);
    ck_assert_uint_eq(s.records, 4);
    ck_assert_uint_eq(s.appended_bytes, 10);
    ck_assert_uint_eq(s.requests, 8);
    ck_assert_uint_eq(s.failed, 3);
    ck_assert_uint_eq(s.req_syn, 1);
    ck_assert_uint_eq(s.req_append, 3); /* the odd one too */
    ck_assert_uint_eq(s.req_get, 1);
    ck_assert_uint_eq(s.req_stats, 1);
    ck_assert_uint_eq(s.req_other, 2);
    ck_assert_uint_eq(
        s.req_iset + s.req_delete + s.req_drop + s.req_keys + s.req_close, 0);
    ck_assert_uint_eq(s.clients, 1);
    ck_assert_uint_eq(s.buffer, 0);    /* a Dict */
    ck_assert_uint_eq(s.uptime_ms, 0); /* never served */
    /* A request refused before the handler saw it counts too. */
    ck_assert_int_eq(pd__handle_fail(&h, PD_ERR_LIMIT, 1, "too large"),
                     PD_ERR_LIMIT);
    TU_OK(pd__handler_stats(&h, &s, PD_NOLOCK), d);
    ck_assert_uint_eq(s.requests, 9);
    ck_assert_uint_eq(s.failed, 4);
    ck_assert_uint_eq(s.req_other, 3);
    pd__handler_fini(&h);
    TU_OK(pd_unlock(d), d);
    t_close(&d);
}
END_TEST

/* pd_client_stats: a round trip with exact counts after known requests,
 * the size member, misuse; pd_server_get_stats before and after a run. */
START_TEST(stats) {
    pd_server_opts o = {0};
    o.memory = 8; /* the default Buffer spills at once */
    pd_server *srv = NULL;
    o.log = t_log_fn;
    t_log *lg = t_log_new();
    o.log_arg = lg;
    TU_OK(pd_server_open(&srv, NULL, &o), NULL);
    pd_server_stats s = {.size = sizeof s};
    TU_OK(pd_server_get_stats(srv, &s), NULL);
    ck_assert_uint_eq(s.requests, 0);
    ck_assert_uint_eq(s.keys, 0);
    ck_assert_uint_eq(s.buffer, 1);
    ck_assert_uint_eq(s.memory_limit, 8);
    TU_OK(pd_server_start(srv), NULL);
    ck_assert_int_eq(pd_server_get_stats(srv, &s), PD_ERR_MISUSE);
    pd_store *c = t_client(pd_server_address(srv, 0), 10000, PD_CLIENT_SYNC);
    pd_key k[3] = {PD_KEY_STR("a"), PD_KEY_STR("b"), PD_KEY_STR("c")};
    pd_bytes v[3] = {PD_BYTES("12345", 5), PD_BYTES("67890", 5),
                     PD_BYTES("xyz", 3)};
    TU_OK(pd_append(c, 2, k, v, 0), c);
    TU_OK(pd_append(c, 1, &k[2], &v[2], 0), c);
    TU_OK(pd_append(c, 1, &k[0], &v[0], 0), c);
    pd_result *r = NULL;
    TU_OK(pd_get(c, 3, k, &r, 0), c);
    pd_result_free(&r);
    pd_key zz = PD_KEY_STR("zz");
    TU_OK(pd_delete(c, 1, &zz, 0), c);
    memset(&s, 0xff, sizeof s);
    s.size = sizeof s;
    TU_OK(pd_client_stats(c, &s), c);
    ck_assert_uint_eq(s.size, sizeof s);
    ck_assert_uint_eq(s.keys, 3);
    ck_assert_uint_eq(s.bytes, 18);
    ck_assert_uint_eq(s.records, 4);
    ck_assert_uint_eq(s.appended_bytes, 18);
    ck_assert_uint_eq(s.req_syn, 1);
    ck_assert_uint_eq(s.req_append, 3);
    ck_assert_uint_eq(s.req_get, 1);
    ck_assert_uint_eq(s.req_delete, 1);
    ck_assert_uint_eq(s.req_stats, 1);
    ck_assert_uint_eq(
        s.req_iset + s.req_drop + s.req_keys + s.req_close + s.req_other, 0);
    ck_assert_uint_eq(s.requests, 7);
    ck_assert_uint_eq(s.failed, 0);
    ck_assert_uint_eq(s.buffer, 1);
    ck_assert_uint_eq(s.memory_limit, 8);
    ck_assert_uint_le(s.memory, 18);
    ck_assert_uint_ge(s.spills, 1);
    ck_assert_uint_gt(s.rss, 0);
    ck_assert_uint_eq(s.clients, 1);
    ck_assert_uint_le(s.connections, 1);
    ck_assert_uint_lt(s.uptime_ms, 600000);
    /* A second client; a second stats counts the first. */
    pd_store *c2 = t_client(pd_server_address(srv, 0), 10000, 0);
    TU_OK(pd_client_stats(c2, &s), c2);
    ck_assert_uint_eq(s.clients, 2);
    ck_assert_uint_eq(s.req_stats, 2);
    ck_assert_uint_eq(s.requests, 9);
    /* A smaller size: the members past it are left alone. */
    pd_server_stats small;
    memset(&small, 0xab, sizeof small);
    small.size = offsetof(pd_server_stats, bytes);
    TU_OK(pd_client_stats(c, &small), c);
    ck_assert_uint_eq(small.keys, 3);
    ck_assert_uint_eq(small.bytes, 0xababababababababull);
    small.size = sizeof(size_t);
    ck_assert_int_eq(pd_client_stats(c, &small), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_client_stats(c, NULL), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_client_stats(NULL, &s), PD_ERR_MISUSE);
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    ck_assert_int_eq(pd_client_stats(d, &s), PD_ERR_MISUSE);
    t_close(&d);
    /* The client still works after the refusals. */
    tu_expect_str(c, k[2], "xyz");
    t_close(&c2);
    t_close(&c);
    /* After the run: the same counts, read from the server itself. */
    pd_server_stop(srv);
    while (pd_server_running(srv)) usleep(1000);
    s.size = sizeof s;
    TU_OK(pd_server_get_stats(srv, &s), NULL);
    ck_assert_uint_eq(s.keys, 3);
    ck_assert_uint_eq(s.req_stats, 3);
    ck_assert_uint_eq(s.req_get, 2);
    ck_assert_uint_eq(s.clients, 2);
    ck_assert_uint_eq(s.connections, 0);
    t_close_server(&srv);
    t_log_free(lg);
}
END_TEST

/* ------------------------------------------------------------ Faults */

/* Garbage from a raw socket is answered with errors and logged; a good
 * client keeps working in between. */
START_TEST(garbage) {
    t_log *lg = t_log_new();
    pd_server_opts o = {0};
    o.max_message = 64 * 1024;
    o.log_level = PD_LOG_WARN;
    pd_server *srv = t_server(NULL, &o, lg);
    const char *addr = pd_server_address(srv, 0);
    pd_store *good = t_client(addr, 5000, PD_CLIENT_SYNC);
    t_raw r = t_raw_open(addr);

    const char *unk[] = {"frobnicate", "x"};
    t_raw_send(&r, 2, unk, NULL);
    t_raw_expect_error(&r, PD_ERR_PROTOCOL, "unknown command");
    t_roundtrip(good, "g", "1");

    const char *odd[] = {"append", "k", "v", "k2"};
    t_raw_send(&r, 4, odd, NULL);
    t_raw_expect_error(&r, PD_ERR_PROTOCOL, "odd append");
    tu_expect_str(good, PD_KEY_STR("k"), ""); /* nothing of it applied */

    const char *empty[] = {""};
    t_raw_send(&r, 1, empty, NULL);
    t_raw_expect_error(&r, PD_ERR_PROTOCOL, "empty frame");
    const char *iset1[] = {"iset", "k"};
    t_raw_send(&r, 2, iset1, NULL);
    t_raw_expect_error(&r, PD_ERR_PROTOCOL, "iset without value");
    t_roundtrip(good, "g", "2");

    /* Frames that sum past max_message: refused unread, with a reply. */
    static char chunk[40000];
    memset(chunk, 'c', sizeof chunk);
    const char *big[] = {"append", "k", chunk, "k2", chunk};
    size_t bl[] = {6, 1, sizeof chunk, 2, sizeof chunk};
    t_raw_send(&r, 5, big, bl);
    t_raw_expect_error(&r, PD_ERR_LIMIT, "over max_message");
    tu_expect_str(good, PD_KEY_STR("k"), "");
    /* Our client refuses such a request itself, before sending it. */
    pd_client_opts co = {0};
    co.timeout_ms = 5000;
    co.max_message = 64 * 1024;
    pd_store *lim = NULL;
    TU_OK(pd_client_open(&lim, addr, &co), NULL);
    pd_key bk[2] = {PD_KEY_STR("k"), PD_KEY_STR("k2")};
    pd_bytes bv[2] = {PD_BYTES(chunk, sizeof chunk),
                      PD_BYTES(chunk, sizeof chunk)};
    ck_assert_int_eq(pd_append(lim, 2, bk, bv, 0), PD_ERR_LIMIT);
    ck_assert_msg(strstr(pd_errmsg(lim), "split the batch") &&
                      strstr(pd_errmsg(lim), addr),
                  "%s", pd_errmsg(lim));
    ck_assert_int_eq(pd_iset(lim, 2, bk, bv, 0), PD_ERR_LIMIT);
    TU_OK(pd_append(lim, 1, bk, bv, 0), lim); /* one chunk fits */
    TU_OK(pd_client_sync(lim), lim);
    tu_expect(good, bk[0], chunk, sizeof chunk);
    TU_OK(pd_delete(lim, 1, bk, 0), lim);
    t_close(&lim);

    /* A get the server cannot parse still gets its results message. */
    char many[65 * 4];
    size_t l = 0;
    for (int i = 0; i < 65; i++) {
        if (i) {
            memcpy(many + l, "-|-", 3);
            l += 3;
        }
        many[l++] = 'p';
    }
    many[l] = 0;
    const char *g[] = {"get", "a", many};
    t_raw_send(&r, 3, g, NULL);
    char f[4][256];
    ck_assert_uint_eq(t_raw_recv(&r, 5000, f, 4), 2);
    t_raw_expect_error(&r, PD_ERR_LIMIT, "65 parts");

    /* A Python-style session on the same socket still works. */
    const char *syn[] = {"syn"};
    t_raw_send(&r, 1, syn, NULL);
    t_raw_expect_ack(&r, "syn");
    const char *ok[] = {"append", "raw", "r"};
    t_raw_send(&r, 3, ok, NULL);
    t_raw_expect_ack(&r, "append");
    tu_expect_str(good, PD_KEY_STR("raw"), "r");

    /* Random frames (last: they use up the log's rate limit). */
    unsigned seed = 7;
    for (int i = 0; i < 200; i++) {
        char fr[4][32];
        const char *fp[4];
        size_t lens[4];
        size_t n = 1 + (size_t)(rand_r(&seed) % 4);
        for (size_t j = 0; j < n; j++) {
            lens[j] = (size_t)(rand_r(&seed) % 32);
            for (size_t b = 0; b < lens[j]; b++) fr[j][b] = (char)rand_r(&seed);
            fp[j] = fr[j];
        }
        t_raw_send(&r, n, fp, lens);
        ck_assert_uint_eq(t_raw_recv(&r, 5000, f, 4), 3);
        ck_assert_str_eq(f[0], "error");
    }
    t_roundtrip(good, "g", "3");

    /* One frame over the limit: libzmq drops that connection; the server
     * goes on. */
    t_raw r2 = t_raw_open(addr);
    static char huge[70000];
    const char *hf[] = {"append", "h", huge};
    size_t hl[] = {6, 1, sizeof huge};
    t_raw_send(&r2, 3, hf, hl);
    ck_assert_uint_eq(t_raw_recv(&r2, 300, f, 4), 0);
    t_raw_close(&r2);
    t_roundtrip(good, "g", "4");
    tu_expect_str(good, PD_KEY_STR("h"), "");

    ck_assert(pd_server_running(srv));
    t_raw_close(&r);
    t_close(&good);
    t_close_server(&srv);
    ck_assert_msg(t_log_has(lg, "unknown command 'frobnicate'"), "log:\n%s",
                  lg->buf);
    ck_assert_msg(t_log_has(lg, "sent a bad request"), "log:\n%s", lg->buf);
    ck_assert_msg(t_log_has(lg, "request too large"), "log:\n%s", lg->buf);
    t_log_free(lg);
}
END_TEST

/* A client that sends without ever reading: its replies are dropped once
 * its queue is full; nobody else waits. */
START_TEST(no_reader) {
    t_log *lg = t_log_new();
    pd_server_opts o = {0};
    o.log_level = PD_LOG_WARN;
    pd_server *srv = t_server(NULL, &o, lg);
    const char *addr = pd_server_address(srv, 0);
    pd_store *good = t_client(addr, 5000, 0);
    t_raw r = t_raw_open(addr);
    int sent = 0;
    int64_t end = t_ms() + 8000;
    for (int i = 0; i < 40000 && t_ms() < end; i++) {
        const char *fr[] = {"append", "flood", "0123456789"};
        for (int j = 0; j < 3; j++) {
            if (zmq_send(r.sock, fr[j], strlen(fr[j]),
                         (j < 2 ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0) {
                ck_assert_int_eq(j, 0); /* parts go whole or not at all */
                usleep(1000);
                break;
            }
            if (j == 2) sent++;
        }
        if (i % 1000 == 0) t_roundtrip(good, "g", "x");
        if (i % 1000 == 0 && t_log_has(lg, "dropped")) break;
    }
    ck_assert_int_gt(sent, 100);
    t_roundtrip(good, "g", "y");
    pd_result *res = NULL;
    pd_key fk = PD_KEY_STR("flood");
    TU_OK(pd_get(good, 1, &fk, &res, 0), good);
    /* Every append that reached the server was applied whole. */
    ck_assert_uint_eq(pd_result_value(res, 0).size % 10, 0);
    pd_result_free(&res);
    t_raw_close(&r);
    t_close(&good);
    t_close_server(&srv);
    ck_assert_msg(t_log_has(lg, "dropped"), "log:\n%s", lg->buf);
    t_log_free(lg);
}
END_TEST

/* A server in a child process on a fixed ipc path. */
typedef struct t_child_srv {
    const char *addr;
    const char *dir; /* where its store goes (killed children leave it) */
} t_child_srv;

/* Check's fork mode leaves its SIGTERM/SIGINT handler (which signals the
 * whole process group) in forked children: restore the defaults. */
static void t_default_signals(void) {
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
}

static int t_serve_child(void *arg) {
    t_child_srv *a = arg;
    t_default_signals();
    pd_server_opts o = {0};
    o.bind = &a->addr;
    o.nbind = 1;
    o.dir = a->dir;
    o.log_level = PD_LOG_WARN;
    pd_server *srv = NULL;
    TU_CHECK(pd_server_open(&srv, NULL, &o) == 0, "open: %s", pd_errmsg(NULL));
    TU_CHECK(pd_server_run(srv) == 0, "run: %s", pd_errmsg(NULL));
    TU_CHECK(pd_server_close(&srv) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

/* Waits until something accepts connections on the ipc path. */
static void t_wait_listening(const char *addr) {
    const char *path = addr + 6;
    for (int i = 0; i < 500; i++) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        int c = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        close(fd);
        if (c == 0) return;
        usleep(10000);
    }
    ck_abort_msg("nothing listens at %s", addr);
}

START_TEST(killed_server) {
    char *dir = tu_mkdtemp();
    char addr[256];
    snprintf(addr, sizeof addr, "ipc://%s/s.sock", dir);
    t_child_srv a = {addr, dir};
    tu_child ch = tu_child_spawn(t_serve_child, &a, NULL, 0);
    t_wait_listening(addr);
    pd_store *c = t_client(addr, 400, 0);
    t_roundtrip(c, "k", "before");
    TU_OK(pd_append(c, 1, &PD_KEY_STR("k"), &PD_BYTES("+", 1), 0), c);

    kill(ch.pid, SIGKILL);
    char msg[512];
    ck_assert_int_eq(tu_child_wait(ch, msg, sizeof msg), 128 + SIGKILL);
    /* The append's reply never comes: the next call says so, naming the
     * address, and does not hang. */
    int64_t t0 = t_ms();
    pd_key k = PD_KEY_STR("k");
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(c, 1, &k, &r, 0), PD_ERR_TIMEOUT);
    ck_assert_int_lt(t_ms() - t0, 3000);
    ck_assert_msg(strstr(pd_errmsg(c), addr), "%s", pd_errmsg(c));
    ck_assert_int_eq(pd_errcode(c), PD_ERR_TIMEOUT);
    /* Still dead: still a timeout, not a hang or a stale reply. */
    ck_assert_int_eq(pd_get(c, 1, &k, &r, 0), PD_ERR_TIMEOUT);

    /* A new server at the same address (the dead one left its socket
     * file): the old handle and a fresh one both work. */
    ch = tu_child_spawn(t_serve_child, &a, NULL, 0);
    t_wait_listening(addr);
    pd_store *fresh = t_client(addr, 5000, 0);
    t_roundtrip(fresh, "k", "after");
    pd_client_opts o = {0};
    (void)o;
    int rc = -1;
    for (int i = 0; i < 20 && rc != 0; i++) { /* reconnects in the background */
        char *got = NULL;
        rc = tu_fetch1(c, k, &got, NULL);
        if (rc == 0) ck_assert_str_eq(got, "after");
        free(got);
    }
    ck_assert_msg(rc == 0, "old handle: %s", pd_errmsg(c));
    t_close(&fresh);
    t_close(&c);
    kill(ch.pid, SIGKILL);
    tu_child_wait(ch, msg, sizeof msg);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(timeouts) {
    /* Nothing listens: the first call times out, quickly, naming it. */
    char *dir = tu_mkdtemp();
    char addr[256];
    snprintf(addr, sizeof addr, "ipc://%s/none.sock", dir);
    pd_store *c = t_client(addr, 200, 0);
    int64_t t0 = t_ms();
    pd_bytes v = PD_BYTES("v", 1);
    pd_key k = PD_KEY_STR("k");
    ck_assert_int_eq(pd_append(c, 1, &k, &v, 0), PD_ERR_TIMEOUT);
    ck_assert_int_lt(t_ms() - t0, 2000);
    ck_assert_msg(strstr(pd_errmsg(c), addr) && strstr(pd_errmsg(c), "200 ms"),
                  "%s", pd_errmsg(c));
    ck_assert_int_eq(pd_keys(c, &(pd_keylist *){NULL}, 0), PD_ERR_TIMEOUT);
    t_close(&c);
    /* Bad options. */
    pd_client_opts o = {0};
    o.timeout_ms = -1;
    ck_assert_int_eq(pd_client_open(&c, addr, &o), PD_ERR_MISUSE);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(pd_client_open(&c, NULL, NULL), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_client_open(&c, "bogus://x", NULL), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(NULL), "bogus://x"), "%s", pd_errmsg(NULL));
    o.timeout_ms = 0;
    o.flags = 0x80;
    ck_assert_int_eq(pd_client_open(&c, addr, &o), PD_ERR_MISUSE);
    o.flags = 0;
    o.curve_server_key = "short";
    ck_assert_int_eq(pd_client_open(&c, addr, &o), PD_ERR_MISUSE);
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    ck_assert_int_eq(pd_client_sync(d), PD_ERR_MISUSE);
    ck_assert_ptr_null(pd_client_address(d));
    ck_assert_int_eq(pd_client_server_is_ours(d), -1);
    t_close(&d);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------ Processes */

/* The appenders are forked before the server exists and read its address
 * from a pipe: forking a process whose ZeroMQ threads are running can leave
 * the child's allocator or libzmq locks held by threads it does not have
 * (POSIX allows only async-signal-safe calls after such a fork; ASan's
 * allocator made the children hang here). */
typedef struct t_proc_arg {
    int rfd; /* the server's address arrives here */
    int id, rounds;
} t_proc_arg;

static int t_appender(void *p) {
    t_proc_arg *a = p;
    char addr[512];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(a->rfd, addr + got, sizeof addr - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    addr[got] = '\0';
    TU_CHECK(got > 0, "no server address on the pipe");
    close(a->rfd);
    pd_client_opts o = {0};
    o.timeout_ms = 20000;
    pd_store *c = NULL;
    TU_CHECK(pd_client_open(&c, addr, &o) == 0, "open: %s", pd_errmsg(NULL));
    char own[16];
    snprintf(own, sizeof own, "own%d", a->id);
    for (int i = 0; i < a->rounds; i++) {
        char rec[16];
        snprintf(rec, sizeof rec, "%d:%06d;", a->id, i);
        pd_key k[2] = {PD_KEY_STR(own), PD_KEY_STR("shared")};
        pd_bytes v[2] = {PD_BYTES(rec, 9), PD_BYTES(rec, 9)};
        TU_CHECK(pd_append(c, 2, k, v, 0) == 0, "append: %s", pd_errmsg(c));
    }
    TU_CHECK(pd_close(&c) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

START_TEST(many_processes) {
    int np = tu_under_valgrind() ? 3 : 8;
    int rounds = tu_under_valgrind() ? 100 : 500;
    tu_child ch[8];
    t_proc_arg args[8];
    int wfd[8];
    for (int p = 0; p < np; p++) {
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        args[p] = (t_proc_arg){fds[0], p, rounds};
        wfd[p] = fds[1];
        /* Each child closes every write end made so far. */
        ch[p] = tu_child_spawn(t_appender, &args[p], wfd, p + 1);
        close(fds[0]);
    }
    pd_server *srv = t_server(NULL, NULL, NULL);
    const char *addr = pd_server_address(srv, 0);
    for (int p = 0; p < np; p++) {
        size_t len = strlen(addr);
        ck_assert_int_eq(write(wfd[p], addr, len), (ssize_t)len);
        close(wfd[p]);
    }
    for (int p = 0; p < np; p++) {
        char msg[512];
        int st = tu_child_wait(ch[p], msg, sizeof msg);
        ck_assert_msg(st == 0, "child %d: %d %s", p, st, msg);
    }
    pd_store *c = t_client(addr, 10000, 0);
    size_t len = 0;
    pd_key sk = PD_KEY_STR("shared");
    char *shared = tu_get1(c, &sk, &len);
    ck_assert_uint_eq(len, (size_t)np * (size_t)rounds * 9);
    int next[8] = {0};
    for (size_t off = 0; off < len; off += 9) {
        int id = shared[off] - '0';
        ck_assert_int_ge(id, 0);
        ck_assert_int_lt(id, np);
        int i = atoi(shared + off + 2);
        ck_assert_int_eq(i, next[id]);
        next[id]++;
    }
    free(shared);
    for (int p = 0; p < np; p++) {
        char own[16];
        snprintf(own, sizeof own, "own%d", p);
        ck_assert_int_eq(tu_listed_size(c, PD_KEY_STR(own)), rounds * 9);
    }
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

typedef struct t_fork_arg {
    pd_store *c;
} t_fork_arg;

static int t_fork_child(void *p) {
    t_fork_arg *a = p;
    pd_key k = PD_KEY_STR("child");
    pd_bytes v = PD_BYTES("c", 1);
    TU_CHECK(pd_append(a->c, 1, &k, &v, 0) == 0, "append: %s", pd_errmsg(a->c));
    pd_result *r = NULL;
    TU_CHECK(pd_get(a->c, 1, &k, &r, 0) == 0, "get: %s", pd_errmsg(a->c));
    TU_CHECK(pd_result_value(r, 0).size == 1, "child got %zu bytes",
             pd_result_value(r, 0).size);
    pd_result_free(&r);
    TU_CHECK(pd_close(&a->c) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

/* A handle used in a forked child gets its own connection; the parent's
 * keeps working, with its reply still in flight. */
START_TEST(fork_client) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    pd_store *c = t_client(pd_server_address(srv, 0), 5000, 0);
    t_roundtrip(c, "parent", "p");
    TU_OK(pd_append(c, 1, &PD_KEY_STR("parent"), &PD_BYTES("q", 1), 0), c);
    t_fork_arg a = {c};
    tu_child ch = tu_child_spawn(t_fork_child, &a, NULL, 0);
    char msg[512];
    ck_assert_msg(tu_child_wait(ch, msg, sizeof msg) == 0, "%s", msg);
    tu_expect_str(c, PD_KEY_STR("parent"), "pq");
    tu_expect_str(c, PD_KEY_STR("child"), "c");
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

/* ------------------------------------------------------------ Security */

START_TEST(curve) {
    char pub[41], sec[41], pub2[41], sec2[41], derived[41];
    TU_OK(pd_curve_keypair(pub, sec), NULL);
    TU_OK(pd_curve_keypair(pub2, sec2), NULL);
    TU_OK(pd_curve_public(derived, sec), NULL);
    ck_assert_str_eq(derived, pub);
    ck_assert_int_eq(pd_curve_public(derived, "tooshort"), PD_ERR_MISUSE);

    t_log *lg = t_log_new();
    pd_server_opts o = {0};
    const char *bind[] = {"tcp://127.0.0.1:0"};
    o.bind = bind;
    o.nbind = 1;
    o.curve_secret = sec;
    pd_server *srv = t_server(NULL, &o, lg);
    const char *addr = pd_server_address(srv, 0);
    ck_assert_msg(strncmp(addr, "tcp://127.0.0.1:", 16) == 0 &&
                      strcmp(addr, "tcp://127.0.0.1:0") != 0,
                  "%s", addr);

    pd_client_opts co = {0};
    co.timeout_ms = 5000;
    co.curve_server_key = pub;
    pd_store *good = NULL;
    TU_OK(pd_client_open(&good, addr, &co), NULL);
    t_roundtrip(good, "secret", "s");

    /* Without CURVE, or with another server key: never connected. */
    pd_store *plain = t_client(addr, 300, 0);
    pd_bytes v = PD_BYTES("x", 1);
    pd_key k = PD_KEY_STR("secret");
    ck_assert_int_eq(pd_append(plain, 1, &k, &v, 0), PD_ERR_TIMEOUT);
    co.timeout_ms = 300;
    co.curve_server_key = pub2;
    pd_store *wrong = NULL;
    TU_OK(pd_client_open(&wrong, addr, &co), NULL);
    ck_assert_int_eq(pd_append(wrong, 1, &k, &v, 0), PD_ERR_TIMEOUT);
    tu_expect_str(good, k, "s");
    /* A client with its own fixed keypair works. */
    co.timeout_ms = 5000;
    co.curve_server_key = pub;
    co.curve_public = pub2;
    co.curve_secret = sec2;
    pd_store *mine = NULL;
    TU_OK(pd_client_open(&mine, addr, &co), NULL);
    tu_expect_str(mine, k, "s");
    t_close(&mine);
    t_close(&wrong);
    t_close(&plain);
    t_close(&good);
    t_close_server(&srv);
    ck_assert_msg(t_log_has(lg, "handshake failed"), "log:\n%s", lg->buf);
    t_log_free(lg);

    /* Bad keys are refused at open. */
    o.curve_secret = "not a key";
    pd_server *bad = NULL;
    ck_assert_int_eq(pd_server_open(&bad, NULL, &o), PD_ERR_MISUSE);
    ck_assert_ptr_null(bad);
}
END_TEST

/* With an allow-list, only the listed client keys get in. */
START_TEST(curve_allow) {
    char pub[41], sec[41], cpub[41], csec[41], opub[41], osec[41];
    TU_OK(pd_curve_keypair(pub, sec), NULL);
    TU_OK(pd_curve_keypair(cpub, csec), NULL);
    TU_OK(pd_curve_keypair(opub, osec), NULL);
    const char *bind[] = {"tcp://127.0.0.1:0"};
    const char *allowed[] = {opub, cpub}; /* opub removed below */
    pd_server_opts o = {0};
    o.bind = bind;
    o.nbind = 1;
    o.curve_clients = allowed + 1;
    o.ncurve_clients = 1;
    /* Misuse: a list without CURVE, a bad key, a NULL array. */
    pd_server *bad = NULL;
    ck_assert_int_eq(pd_server_open(&bad, NULL, &o), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(NULL), "without a CURVE secret key"), "%s",
                  pd_errmsg(NULL));
    o.curve_secret = sec;
    const char *junk[] = {cpub, "not a key"};
    o.curve_clients = junk;
    o.ncurve_clients = 2;
    ck_assert_int_eq(pd_server_open(&bad, NULL, &o), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(NULL), "client key 1"), "%s",
                  pd_errmsg(NULL));
    o.curve_clients = NULL;
    ck_assert_int_eq(pd_server_open(&bad, NULL, &o), PD_ERR_MISUSE);
    ck_assert_ptr_null(bad);

    t_log *lg = t_log_new();
    o.curve_clients = allowed + 1;
    o.ncurve_clients = 1;
    pd_server *srv = t_server(NULL, &o, lg);
    const char *addr = pd_server_address(srv, 0);
    pd_client_opts co = {0};
    co.timeout_ms = 5000;
    co.curve_server_key = pub;
    co.curve_public = cpub;
    co.curve_secret = csec;
    pd_store *in = NULL;
    TU_OK(pd_client_open(&in, addr, &co), NULL);
    t_roundtrip(in, "listed", "yes");
    /* Right server key, but a client key not on the list: refused. */
    co.timeout_ms = 400;
    co.curve_public = opub;
    co.curve_secret = osec;
    pd_store *out = NULL;
    TU_OK(pd_client_open(&out, addr, &co), NULL);
    pd_key k = PD_KEY_STR("listed");
    pd_bytes v = PD_BYTES("no", 2);
    ck_assert_int_eq(pd_append(out, 1, &k, &v, 0), PD_ERR_TIMEOUT);
    /* A fresh random keypair: refused too. */
    co.curve_public = co.curve_secret = NULL;
    pd_store *anon = NULL;
    TU_OK(pd_client_open(&anon, addr, &co), NULL);
    ck_assert_int_eq(pd_append(anon, 1, &k, &v, 0), PD_ERR_TIMEOUT);
    tu_expect_str(in, k, "yes"); /* the listed client still works */
    t_close(&anon);
    t_close(&out);
    t_close(&in);
    t_close_server(&srv);
    ck_assert_msg(t_log_has(lg, "not on the allow-list") &&
                      t_log_has(lg, opub) && t_log_has(lg, "127.0.0.1"),
                  "log:\n%s", lg->buf);
    t_log_free(lg);
}
END_TEST

START_TEST(ipc_files) {
    /* The default: a private directory, removed with its socket. */
    pd_server *srv = t_server(NULL, NULL, NULL);
    const char *addr = pd_server_address(srv, 0);
    ck_assert_msg(strncmp(addr, "ipc://", 6) == 0, "%s", addr);
    char path[256], dir[256];
    snprintf(path, sizeof path, "%s", addr + 6);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    struct stat st;
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0700);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    t_close_server(&srv);
    ck_assert_int_eq(stat(path, &st), -1);
    ck_assert_int_eq(stat(dir, &st), -1);

    /* An explicit path: removed on close; a path that is a file, or where
     * a server listens, is refused and left alone. */
    char *tmp = tu_mkdtemp();
    char a1[256], file[200], a2[256];
    snprintf(a1, sizeof a1, "ipc://%s/srv.sock", tmp);
    snprintf(file, sizeof file, "%s/precious", tmp);
    snprintf(a2, sizeof a2, "ipc://%s", file);
    ck_assert_int_eq(tu_write_file(file, "data", 4), 0);
    pd_server_opts o = {0};
    const char *b1[] = {a1};
    o.bind = b1;
    o.nbind = 1;
    srv = t_server(NULL, &o, NULL);
    ck_assert_str_eq(pd_server_address(srv, 0), a1);
    pd_server *second = NULL;
    o.log = NULL;
    o.log_level = PD_LOG_ERROR;
    ck_assert_int_eq(pd_server_open(&second, NULL, &o), PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(NULL), "a server is listening"), "%s",
                  pd_errmsg(NULL));
    const char *b2[] = {a2};
    o.bind = b2;
    ck_assert_int_eq(pd_server_open(&second, NULL, &o), PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(NULL), "not a socket"), "%s",
                  pd_errmsg(NULL));
    tu_file_is(file, "data");
    pd_store *c = t_client(a1, 5000, 0);
    t_roundtrip(c, "k", "v");
    t_close(&c);
    t_close_server(&srv);
    ck_assert_int_eq(stat(a1 + 6, &st), -1);

    /* Other open errors. */
    const char *b3[] = {"tcp://127.0.0.1:notaport"};
    o.bind = b3;
    ck_assert_int_eq(pd_server_open(&second, NULL, &o), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(NULL), "notaport"), "%s", pd_errmsg(NULL));
    o.bind = NULL;
    ck_assert_int_eq(pd_server_open(&second, NULL, &o), PD_ERR_MISUSE);
    o.nbind = 0;
    o.flags = 0x8000;
    ck_assert_int_eq(pd_server_open(&second, NULL, &o), PD_ERR_MISUSE);
    ck_assert_ptr_null(second);
    tu_rmtree(tmp);
    free(tmp);
}
END_TEST

/* ------------------------------------------------------------ Lifecycle */

START_TEST(lifecycle) {
    /* close command, and PD_SERVER_NO_CLOSE. */
    pd_server_opts o = {0};
    o.flags = PD_SERVER_NO_CLOSE;
    pd_server *srv = t_server(NULL, &o, NULL);
    pd_store *c = t_client(pd_server_address(srv, 0), 5000, 0);
    ck_assert_int_eq(pd_client_close_server(c), PD_ERR_UNSUPPORTED);
    ck_assert(pd_server_running(srv));
    t_close(&c);
    t_close_server(&srv);

    srv = t_server(NULL, NULL, NULL);
    c = t_client(pd_server_address(srv, 0), 5000, 0);
    t_roundtrip(c, "k", "v");
    TU_OK(pd_client_close_server(c), c);
    for (int i = 0; i < 500 && pd_server_running(srv); i++) usleep(10000);
    ck_assert(!pd_server_running(srv));
    ck_assert_int_eq(pd_server_run(srv), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_server_start(srv), PD_ERR_MISUSE);
    t_close(&c);
    t_close_server(&srv);

    /* A borrowed store: flushed, unlocked, left open for the caller. */
    pd_store *fast = NULL, *slow = NULL, *buf = NULL;
    TU_OK(pd_dict_open(&fast), NULL);
    TU_OK(pd_dict_open(&slow), NULL);
    TU_OK(pd_buffer_open(&buf, &fast, &slow, 1 << 20, 0), NULL);
    pd_server_opts bo = {0};
    bo.flags = PD_BORROW;
    srv = t_server(&buf, &bo, NULL);
    ck_assert_ptr_nonnull(buf);
    c = t_client(pd_server_address(srv, 0), 5000, 0);
    t_roundtrip(c, "kept", "yes");
    t_close(&c);
    t_close_server(&srv);
    tu_expect_str(buf, PD_KEY_STR("kept"), "yes");
    ck_assert_uint_eq(pd_buffer_memory_usage(buf), 0); /* flushed */
    t_close(&buf);

    /* Idle timeout. */
    pd_server_opts io = {0};
    io.idle_timeout_ms = 200;
    srv = t_server(NULL, &io, NULL);
    int64_t t0 = t_ms();
    for (int i = 0; i < 500 && pd_server_running(srv); i++) usleep(10000);
    ck_assert(!pd_server_running(srv));
    ck_assert_int_ge(t_ms() - t0, 150);
    t_close_server(&srv);

    /* stop before run: run returns at once. */
    ck_assert_int_eq(pd_server_open(&srv, NULL, NULL), 0);
    pd_server_stop(srv);
    pd_server_stop(srv);
    TU_OK(pd_server_run(srv), NULL);
    t_close_server(&srv);
    ck_assert_int_eq(pd_server_close(&srv), 0);
    ck_assert_int_eq(pd_server_run(NULL), PD_ERR_MISUSE);
}
END_TEST

static pd_server *t_alarm_srv;
static void t_on_alarm(int sig) {
    (void)sig;
    pd_server_stop(t_alarm_srv);
}

/* pd_server_stop from a signal handler stops pd_server_run in the main
 * thread. */
START_TEST(stop_from_signal) {
    pd_server_opts o = {0};
    o.log_level = PD_LOG_WARN;
    ck_assert_int_eq(pd_server_open(&t_alarm_srv, NULL, &o), 0);
    struct sigaction sa = {0}, old;
    sa.sa_handler = t_on_alarm;
    sigaction(SIGALRM, &sa, &old);
    struct itimerval it = {{0, 0}, {0, 200000}};
    setitimer(ITIMER_REAL, &it, NULL);
    int64_t t0 = t_ms();
    TU_OK(pd_server_run(t_alarm_srv), NULL);
    ck_assert_int_lt(t_ms() - t0, 5000);
    sigaction(SIGALRM, &old, NULL);
    t_close_server(&t_alarm_srv);
}
END_TEST

/* ------------------------------------------------------------ CLI */

typedef struct t_cli_arg {
    char *argv[16];
    int argc;
    int outfd;
} t_cli_arg;

static int t_cli_child(void *p) {
    t_cli_arg *a = p;
    t_default_signals();
    dup2(a->outfd, STDOUT_FILENO);
    close(a->outfd);
    /* The server's log is noise here; PARTD_TEST_CHILD_STDERR=1 keeps it
     * (and what valgrind says about the child) when debugging. */
    if (!getenv("PARTD_TEST_CHILD_STDERR")) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO);
        close(devnull);
    }
    return pd_cli_serve(a->argc, a->argv);
}

/* Starts `partd serve ARGS...` in a child; returns it and its first line. */
static tu_child t_cli_start(t_cli_arg *a, char *line, size_t cap) {
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    a->outfd = p[1];
    tu_child ch = tu_child_spawn(t_cli_child, a, &p[0], 1);
    close(p[1]);
    size_t len = 0;
    struct pollfd pf = {p[0], POLLIN, 0};
    while (len + 1 < cap && poll(&pf, 1, 10000) > 0) {
        ssize_t r = read(p[0], line + len, 1);
        if (r <= 0 || line[len] == '\n') break;
        len++;
    }
    line[len] = 0;
    close(p[0]);
    return ch;
}

START_TEST(cli_serve) {
    char *tmp = tu_mkdtemp();
    char addr[256], data[256];
    snprintf(addr, sizeof addr, "ipc://%s/cli.sock", tmp);
    snprintf(data, sizeof data, "%s/data", tmp);
    t_cli_arg a = {
        {"serve", "--bind", addr, "--path", data, "--memory", "1M", "-q"},
        8,
        -1};
    char line[512];
    tu_child ch = t_cli_start(&a, line, sizeof line);
    ck_assert_str_eq(line, addr);
    pd_store *c = t_client(addr, 5000, 0);
    t_roundtrip(c, "cli", "served");
    t_close(&c);
    kill(ch.pid, SIGTERM);
    char msg[512];
    ck_assert_msg(tu_child_wait(ch, msg, sizeof msg) == 0, "%s", msg);
    struct stat st;
    ck_assert_int_eq(stat(addr + 6, &st), -1); /* socket removed */
    /* The data was flushed to DIR, and its lock released. */
    pd_store *f = NULL;
    TU_OK(pd_file_open(&f, data, 0), NULL);
    tu_expect_str(f, PD_KEY_STR("cli"), "served");
    t_close(&f);

    /* --codec: what spills is compressed in DIR. */
    char zdata[256];
    snprintf(zdata, sizeof zdata, "%s/z", tmp);
    t_cli_arg z = {{"serve", "--bind", addr, "--path", zdata, "--codec", "zlib",
                    "--level", "1", "-q"},
                   10,
                   -1};
    ch = t_cli_start(&z, line, sizeof line);
    ck_assert_str_eq(line, addr);
    c = t_client(addr, 5000, 0);
    t_roundtrip(c, "zk", "compressed");
    /* the close command: exit 0 as well */
    TU_OK(pd_client_close_server(c), c);
    t_close(&c);
    ck_assert_msg(tu_child_wait(ch, msg, sizeof msg) == 0, "%s", msg);
    TU_OK(pd_file_open(&f, zdata, 0), NULL);
    pd_store *zf = NULL;
    TU_OK(pd_compress_open(&zf, &f, "zlib", PD_LEVEL_DEFAULT, 0), NULL);
    tu_expect_str(zf, PD_KEY_STR("zk"), "compressed");
    t_close(&zf);

    /* Default address, SIGINT. */
    t_cli_arg d = {{"serve", "-q"}, 2, -1};
    ch = t_cli_start(&d, line, sizeof line);
    ck_assert_msg(strncmp(line, "ipc://", 6) == 0, "%s", line);
    c = t_client(line, 5000, 0);
    t_roundtrip(c, "k", "v");
    t_close(&c);
    kill(ch.pid, SIGINT);
    ck_assert_msg(tu_child_wait(ch, msg, sizeof msg) == 0, "%s", msg);
    ck_assert_int_eq(stat(line + 6, &st), -1);

    /* Usage errors: exit 2. */
    const char *bad[][4] = {{"serve", "--bogus"},
                            {"serve", "--memory", "lots"},
                            {"serve", "--level", "3"},
                            {"serve", "extra"},
                            {"serve", "--bind"}};
    int nbad[] = {2, 3, 3, 2, 2};
    for (int i = 0; i < 5; i++) {
        t_cli_arg u = {{0}, nbad[i], -1};
        for (int j = 0; j < nbad[i]; j++) u.argv[j] = (char *)bad[i][j];
        ch = t_cli_start(&u, line, sizeof line);
        ck_assert_int_eq(tu_child_wait(ch, msg, sizeof msg), 2);
    }
    /* A failure: exit 1 (an unknown codec). */
    t_cli_arg f1 = {{"serve", "--codec", "nope", "--path", data}, 5, -1};
    ch = t_cli_start(&f1, line, sizeof line);
    ck_assert_int_eq(tu_child_wait(ch, msg, sizeof msg), 1);
    tu_rmtree(tmp);
    free(tmp);
}
END_TEST

/* ------------------------------------------------------------ Interop */

static void t_python_client_against_ours(const char *bind) {
    pd_server_opts o = {0};
    const char *b[] = {bind};
    o.bind = b;
    o.nbind = bind ? 1 : 0;
    t_log *lg = t_log_new();
    pd_server *srv = t_server(NULL, &o, lg);
    const char *addr = pd_server_address(srv, 0);
    const char *py = PARTD_SOURCE_DIR "/tests/py/zmq_client.py";
    int st = tu_system("%s %s '%s' basic", PARTD_TEST_PYTHON, py, addr);
    ck_assert_msg(st == 0, "python client basic on %s: %d\nlog:\n%s", addr, st,
                  lg->buf);
    pd_store *c = t_client(addr, 5000, 0);
    tu_expect_str(c, PD_KEY_STR("py-left"), "from-python");
    pd_bytes tp[2] = {PD_BYTES("tu", 2), PD_BYTES("ple", 3)};
    tu_expect_str(c, PD_KEY_TUPLE(tp, 2), "T");
    tu_expect_str(c, PD_KEY_STR("i"), "first");
    tu_append1(c, PD_KEY_STR("c-left"), "from-c", 6);
    pd_bytes ct[2] = {PD_BYTES("c", 1), PD_BYTES("tuple", 5)};
    tu_append1(c, PD_KEY_TUPLE(ct, 2), "ct", 2);
    char *z = malloc(1 << 20);
    memset(z, 'z', 1 << 20);
    tu_append1(c, PD_KEY_STR("big"), z, 1 << 20);
    free(z);
    TU_OK(pd_client_sync(c), c);
    st = tu_system("%s %s '%s' check", PARTD_TEST_PYTHON, py, addr);
    ck_assert_msg(st == 0, "python client check: %d", st);
    st = tu_system("%s %s '%s' drop", PARTD_TEST_PYTHON, py, addr);
    ck_assert_msg(st == 0, "python client drop: %d", st);
    ck_assert_uint_eq(tu_nkeys(c), 0);
    st = tu_system("%s %s '%s' close", PARTD_TEST_PYTHON, py, addr);
    ck_assert_msg(st == 0, "python client close: %d", st);
    for (int i = 0; i < 500 && pd_server_running(srv); i++) usleep(10000);
    ck_assert(!pd_server_running(srv));
    t_close(&c);
    t_close_server(&srv);
    ck_assert_msg(!t_log_has(lg, "bad request") &&
                      !t_log_has(lg, "request failed"),
                  "log:\n%s", lg->buf);
    t_log_free(lg);
}

START_TEST(python_client) {
    if (!tu_have_python_partd()) {
        fprintf(stderr, "SKIP python_client: no partd in %s\n",
                PARTD_TEST_PYTHON);
        return;
    }
    t_python_client_against_ours("tcp://127.0.0.1:0");
    t_python_client_against_ours(NULL); /* the default ipc socket */
}
END_TEST

START_TEST(python_server) {
    if (!tu_have_python_partd()) {
        fprintf(stderr, "SKIP python_server: no partd in %s\n",
                PARTD_TEST_PYTHON);
        return;
    }
    int in[2], out[2];
    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(out), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(PARTD_TEST_PYTHON, PARTD_TEST_PYTHON,
              PARTD_SOURCE_DIR "/tests/py/zmq_server.py", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    char addr[128];
    size_t len = 0;
    struct pollfd pf = {out[0], POLLIN, 0};
    while (len + 1 < sizeof addr && poll(&pf, 1, 20000) > 0) {
        if (read(out[0], addr + len, 1) <= 0 || addr[len] == '\n') break;
        len++;
    }
    addr[len] = 0;
    ck_assert_msg(strncmp(addr, "tcp://127.0.0.1:", 16) == 0, "address '%s'",
                  addr);

    pd_store *c = t_client(addr, 10000, 0);
    pd_bytes tp[2] = {PD_BYTES("x", 1), PD_BYTES("y", 1)};
    pd_key keys[3] = {PD_KEY_STR("a"), PD_KEY("bin\0", 4), PD_KEY_TUPLE(tp, 2)};
    pd_bytes vals[3] = {PD_BYTES("1", 1), PD_BYTES("2", 1), PD_BYTES("3", 1)};
    TU_OK(pd_append(c, 3, keys, vals, 0), c);
    TU_OK(pd_append(c, 3, keys, vals, 0), c);
    pd_result *r = NULL;
    TU_OK(pd_get(c, 3, keys, &r, 0), c);
    ck_assert_int_eq(memcmp(pd_result_value(r, 0).data, "11", 2), 0);
    ck_assert_int_eq(memcmp(pd_result_value(r, 1).data, "22", 2), 0);
    ck_assert_int_eq(memcmp(pd_result_value(r, 2).data, "33", 2), 0);
    pd_result_free(&r);
    ck_assert_int_eq(pd_client_server_is_ours(c), 0);
    /* keys is ours only: refused locally, the server is not told. */
    pd_keylist *kl = NULL;
    ck_assert_int_eq(pd_keys(c, &kl, 0), PD_ERR_UNSUPPORTED);
    /* So is stats. */
    pd_server_stats pst = {.size = sizeof pst};
    ck_assert_int_eq(pd_client_stats(c, &pst), PD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(c), "no stats command"));
    /* iset of several keys: one request each. */
    pd_key ik[2] = {PD_KEY_STR("i1"), PD_KEY_STR("i2")};
    pd_bytes iv[2] = {PD_BYTES("one", 3), PD_BYTES("two", 3)};
    TU_OK(pd_iset(c, 2, ik, iv, 0), c);
    pd_bytes iv2[2] = {PD_BYTES("uno", 3), PD_BYTES("dos", 3)};
    TU_OK(pd_iset(c, 2, ik, iv2, 0), c);
    tu_expect_str(c, ik[1], "two");
    TU_OK(pd_delete(c, 1, keys, 0), c);
    tu_expect_str(c, keys[0], "");
    size_t big = tu_under_valgrind() ? 1 << 20 : 10 << 20;
    char *v = malloc(big);
    for (size_t i = 0; i < big; i++) v[i] = (char)(i % 251);
    tu_append1(c, PD_KEY_STR("big"), v, big);
    tu_expect(c, PD_KEY_STR("big"), v, big);
    free(v);
    TU_OK(pd_drop(c, 0), c);
    tu_expect_str(c, keys[2], "");
    /* A fresh client and the first one, side by side. */
    pd_store *c2 = t_client(addr, 10000, PD_CLIENT_SYNC);
    t_roundtrip(c2, "k2", "v2");
    tu_expect_str(c, PD_KEY_STR("k2"), "v2");
    t_close(&c2);
    t_close(&c);
    close(in[1]); /* the script stops on end of input */
    close(out[0]);
    ck_assert_int_eq(tu_waitpid(pid), 0);
}
END_TEST

/* ------------------------------------------------------------ Suite */

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("server");
    TCase *tc = tcase_create("protocol");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, commands);
    tcase_add_test(tc, large_values);
    tcase_add_test(tc, wire_keys);
    tcase_add_test(tc, wire_codec);
    tcase_add_test(tc, server_errors);
    tcase_add_test(tc, server_pipeline);
    tcase_add_test(tc, failed_get);
    tcase_add_test(tc, handler);
    tcase_add_test(tc, handler_stats);
    tcase_add_test(tc, stats);
    suite_add_tcase(s, tc);
    tc = tcase_create("faults");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, garbage);
    tcase_add_test(tc, no_reader);
    tcase_add_test(tc, killed_server);
    tcase_add_test(tc, timeouts);
    tcase_add_test(tc, many_processes);
    tcase_add_test(tc, fork_client);
    suite_add_tcase(s, tc);
    tc = tcase_create("security");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, curve);
    tcase_add_test(tc, curve_allow);
    tcase_add_test(tc, ipc_files);
    suite_add_tcase(s, tc);
    tc = tcase_create("lifecycle");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, lifecycle);
    tcase_add_test(tc, stop_from_signal);
    tcase_add_test(tc, cli_serve);
    suite_add_tcase(s, tc);
    tc = tcase_create("interop");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, python_client);
    tcase_add_test(tc, python_server);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
