/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The ZeroMQ Server and Client against Python partd's. */
#include "srvfix.h"

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

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"python_client", python_client},
        {"python_server", python_server},
    };
    return TU_RUN_CASES("test_server_interop", cases, 300, 0);
}
