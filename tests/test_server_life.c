/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The ZeroMQ Server: CURVE, ipc files, the lifecycle and `partd serve`. */
#include "srvfix.h"

/* The CLI verb, tested in forked children without the CLI's main(). */
#include "cli/opts.c"
#include "cli/out.c"
#include "cli/serve.c"
#include "cli/store.c"

/* ------------------------------------------------------------ Security */

/* A client of addr over CURVE, trusting the server key srv_pub, with the
 * keypair pub/sec (NULLs: a fresh random one). */
static pd_store *t_curve_client(const char *addr, int timeout_ms,
                                const char *srv_pub, const char *pub,
                                const char *sec) {
    pd_client_opts co = {0};
    co.timeout_ms = timeout_ms;
    co.curve_server_key = srv_pub;
    co.curve_public = pub;
    co.curve_secret = sec;
    pd_store *c = NULL;
    TU_OK(pd_client_open(&c, addr, &co), NULL);
    return c;
}

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

    pd_store *good = t_curve_client(addr, 5000, pub, NULL, NULL);
    t_roundtrip(good, "secret", "s");

    /* Without CURVE, or with another server key: never connected. */
    pd_store *plain = t_client(addr, 300, 0);
    pd_bytes v = PD_BYTES("x", 1);
    pd_key k = PD_KEY_STR("secret");
    ck_assert_int_eq(pd_append(plain, 1, &k, &v, 0), PD_ERR_TIMEOUT);
    pd_store *wrong = t_curve_client(addr, 300, pub2, NULL, NULL);
    ck_assert_int_eq(pd_append(wrong, 1, &k, &v, 0), PD_ERR_TIMEOUT);
    tu_expect_str(good, k, "s");
    /* A client with its own fixed keypair works. */
    pd_store *mine = t_curve_client(addr, 5000, pub, pub2, sec2);
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
    pd_store *in = t_curve_client(addr, 5000, pub, cpub, csec);
    t_roundtrip(in, "listed", "yes");
    /* Right server key, but a client key not on the list: refused. */
    pd_store *out = t_curve_client(addr, 400, pub, opub, osec);
    pd_key k = PD_KEY_STR("listed");
    pd_bytes v = PD_BYTES("no", 2);
    ck_assert_int_eq(pd_append(out, 1, &k, &v, 0), PD_ERR_TIMEOUT);
    /* A fresh random keypair: refused too. */
    pd_store *anon = t_curve_client(addr, 400, pub, NULL, NULL);
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

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"curve", curve},
        {"curve_allow", curve_allow},
        {"ipc_files", ipc_files},
        {"lifecycle", lifecycle},
        {"stop_from_signal", stop_from_signal},
        {"cli_serve", cli_serve},
    };
    return TU_RUN_CASES("test_server_life", cases, 120, 0);
}
