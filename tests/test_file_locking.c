/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * File store locking (recursive, shared per directory, across processes and
 * fork) and interop with the Python reference.
 */
#include "filefix.h"

/* --------------------------------------------------------- Locking */

START_TEST(lock_is_recursive_and_shared_per_directory) {
    pd_store *h2 = NULL;
    TU_OK(pd_file_open(&h2, g_root, 0), NULL);
    TU_OK(pd_lock(g_f), g_f);
    TU_OK(pd_lock(g_f), g_f);
    /* same thread, second handle on the same directory: no deadlock */
    tu_append1(h2, PD_KEY_STR("k"), "a", 1);
    tu_append1(g_f, PD_KEY_STR("k"), "b", 1);
    pd_key k = PD_KEY_STR("k");
    pd_bytes v = PD_BYTES("c", 1);
    TU_OK(pd_append(g_f, 1, &k, &v, PD_NOLOCK), g_f);
    TU_OK(pd_unlock(g_f), g_f);
    TU_OK(pd_unlock(g_f), g_f);
    ck_assert_int_eq(pd_unlock(g_f), PD_ERR_MISUSE);
    tu_expect_str(h2, k, "abc");
    /* closing while locked releases the lock */
    TU_OK(pd_lock(h2), h2);
    pd_close(&h2);
    tu_append1(g_f, k, "d", 1);
}
END_TEST

/* A child process holding the lock blocks our append until it lets go. */
START_TEST(flock_excludes_other_processes) {
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        pd_store *s = NULL;
        if (pd_file_open(&s, g_root, 0) || pd_lock(s)) _exit(2);
        if (write(pfd[1], "L", 1) != 1) _exit(3);
        usleep(300000);
        pd_key k = PD_KEY_STR("k");
        pd_bytes v = PD_BYTES("child", 5);
        if (pd_append(s, 1, &k, &v, PD_NOLOCK)) _exit(4);
        pd_unlock(s);
        pd_close(&s);
        _exit(0);
    }
    char c;
    ck_assert_int_eq(read(pfd[0], &c, 1), 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tu_append1(g_f, PD_KEY_STR("k"), "parent", 6);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) +
                    (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    ck_assert_msg(waited > 0.15, "append did not wait for the lock (%.3f s)",
                  waited);
    ck_assert_int_eq(tu_waitpid(pid), 0);
    tu_expect_str(g_f, PD_KEY_STR("k"), "childparent");
    close(pfd[0]);
    close(pfd[1]);
}
END_TEST

/* A handle inherited through fork takes its own lock in the child. */
START_TEST(handle_survives_fork) {
    tu_append1(g_f, PD_KEY_STR("k"), "p1,", 3);
    TU_OK(pd_lock(g_f), g_f);
    pid_t pid = fork();
    if (pid == 0) {
        /* parent holds the lock: our append must wait for it */
        pd_key k = PD_KEY_STR("k");
        pd_bytes v = PD_BYTES("c,", 2);
        _exit(pd_append(g_f, 1, &k, &v, 0) ? 1 : 0);
    }
    usleep(200000);
    tu_append1(g_f, PD_KEY_STR("k"), "p2,", 3);
    TU_OK(pd_unlock(g_f), g_f);
    ck_assert_int_eq(tu_waitpid(pid), 0);
    tu_expect_str(g_f, PD_KEY_STR("k"), "p1,p2,c,");
}
END_TEST

/* ------------------------------------------------- Python interop */

START_TEST(python_reference_interop) {
    if (!tu_have_python_partd()) {
        fprintf(stderr, "SKIP python_reference_interop: no partd in %s\n",
                PARTD_TEST_PYTHON);
        return;
    }
    int rc =
        tu_system("%s -c \"import partd; p = partd.File('%s'); "
                  "p.append({'x': b'py-x', ('a', 'b'): b'py-ab', 7: b'seven', "
                  "'part-1': b'\\x00\\x01'})\"",
                  PARTD_TEST_PYTHON, g_root);
    ck_assert_int_eq(rc, 0);
    pd_bytes parts[2] = {{"a", 1}, {"b", 1}};
    pd_key keys[4] = {PD_KEY_STR("x"), PD_KEY_TUPLE(parts, 2), PD_KEY_STR("7"),
                      PD_KEY_STR("part-1")};
    pd_result *r = NULL;
    TU_OK(pd_get(g_f, 4, keys, &r, 0), g_f);
    ck_assert(pd_result_value(r, 0).size == 4 &&
              !memcmp(pd_result_value(r, 0).data, "py-x", 4));
    ck_assert(pd_result_value(r, 1).size == 5 &&
              !memcmp(pd_result_value(r, 1).data, "py-ab", 5));
    ck_assert(pd_result_value(r, 2).size == 5);
    ck_assert(pd_result_value(r, 3).size == 2 &&
              !memcmp(pd_result_value(r, 3).data, "\x00\x01", 2));
    pd_result_free(&r);
    pd_bytes vals[4] = {{"+c", 2}, {"+c", 2}, {"+c", 2}, {"+c", 2}};
    TU_OK(pd_append(g_f, 4, keys, vals, 0), g_f);
    rc = tu_system("%s -c \"import partd, sys; p = partd.File('%s'); "
                   "got = p.get(['x', ('a', 'b'), 7, 'part-1']); "
                   "sys.exit(0 if got == [b'py-x+c', b'py-ab+c', b'seven+c', "
                   "b'\\x00\\x01+c'] else 1)\"",
                   PARTD_TEST_PYTHON, g_root);
    ck_assert_int_eq(rc, 0);
    /* the Python reference holding the lock excludes us */
    pid_t pid = fork();
    if (pid == 0) {
        execl(PARTD_TEST_PYTHON, PARTD_TEST_PYTHON, "-c",
              "import partd, sys, time\n"
              "p = partd.File(sys.argv[1])\n"
              "with p.lock:\n"
              "    open(sys.argv[1] + '/../held', 'w').close()\n"
              "    time.sleep(0.4)\n"
              "    p.append({'x': b'+py'}, lock=False)\n",
              g_root, (char *)NULL);
        _exit(127);
    }
    char held[8192];
    snprintf(held, sizeof held, "%s/held", g_tmp);
    for (int i = 0; i < 500 && access(held, F_OK) != 0; i++) usleep(10000);
    ck_assert_int_eq(access(held, F_OK), 0);
    tu_append1(g_f, PD_KEY_STR("x"), "+c2", 3);
    ck_assert_int_eq(tu_waitpid(pid), 0);
    tu_expect_str(g_f, PD_KEY_STR("x"), "py-x+c+py+c2");
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"lock_is_recursive_and_shared_per_directory",
         lock_is_recursive_and_shared_per_directory},
        {"flock_excludes_other_processes", flock_excludes_other_processes},
        {"handle_survives_fork", handle_survives_fork},
        {"python_reference_interop", python_reference_interop},
    };
    return TU_RUN_CASES_FIXTURE("test_file_locking", cases, 60, 0, setup,
                                teardown);
}
