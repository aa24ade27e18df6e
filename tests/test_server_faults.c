/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The ZeroMQ Server and Client: garbage, dead peers, timeouts, many
 * processes and forks. */
#include "srvfix.h"

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
    char many[T_MANY_PARTS_CAP];
    t_many_parts(many);
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

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"garbage", garbage},
        {"no_reader", no_reader},
        {"killed_server", killed_server},
        {"timeouts", timeouts},
        {"many_processes", many_processes},
        {"fork_client", fork_client},
    };
    return TU_RUN_CASES("test_server_faults", cases, 120, 0);
}
