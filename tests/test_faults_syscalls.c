/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Faults: failing, short and interrupted writes, opens, fsyncs, locks and
 * renames during batches; a failed batch rolls every key back.
 */
#include "faultfix.h"

typedef void (*installer)(void);
static void i_write(void) { pd__sys_table.write = f_write_nth; }
static void i_openat(void) { pd__sys_table.openat = f_openat_nth; }

/* Injects `err` at the 1st, 2nd, ... call of one system call during one
 * batch append, until a run completes without reaching the injection.  Each
 * run either fails (PD_ERR_IO or PD_ERR_NOMEM, errno err, message naming a
 * key of the batch and the store path, every key as before) or, if the store
 * absorbed the fault (e.g. EMFILE: evict cached descriptors and retry),
 * succeeds with the whole batch applied. */
static void s_fault_loop(installer inst, int err, const char *what,
                         unsigned flags) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"),
                   K("b"),
                   K("c"),
                   K("a"),
                   PD_KEY_TUPLE(g_tu, 2),
                   PD_KEY_TUPLE(g_nm, 2)};
    pd_bytes vs[] = {V("1"), V("22"), V("333"), V("xxxx"), V("5"), V("6")};
    const char *errs = strerror(err);
    int failures = 0, absorbed = 0, at;
    for (at = 1; at < 200; at++) {
        s_baseline(f.s);
        /* Let the store cache descriptors in some runs, not in others. */
        if (at % 2)
            TU_OK(pd_file_set_max_fds(f.s, 0), f.s);
        else
            TU_OK(pd_file_set_max_fds(f.s, 64), f.s);
        s_counters(at, err);
        inst();
        int rc = pd_append(f.s, 6, ks, vs, flags);
        pd__sys_reset();
        char msg[PD__MSG_MAX];
        snprintf(msg, sizeof msg, "%s", pd_errmsg(f.s));
        if (!g_injected) {
            ck_assert_msg(rc == 0, "%s: clean run failed: %s", what, msg);
            s_check_applied(f.s, what, at);
            break;
        }
        if (rc == 0) {
            absorbed++;
            s_check_applied(f.s, what, at);
            continue;
        }
        failures++;
        ck_assert_msg(rc == PD_ERR_IO || rc == PD_ERR_NOMEM,
                      "%s at call %d: rc %d: %s", what, at, rc, msg);
        ck_assert_msg(pd_errno(f.s) == err,
                      "%s at call %d: pd_errno %d, want %d: %s", what, at,
                      pd_errno(f.s), err, msg);
        bool names_key = strstr(msg, "'a'") || strstr(msg, "'b'") ||
                         strstr(msg, "'c'") || strstr(msg, "('t', 'u')") ||
                         strstr(msg, "('n', 'm')");
        ck_assert_msg(names_key && s_msg_has(msg, "file: append", f.root, errs,
                                             (char *)NULL),
                      "%s at call %d: message lacks key, path or reason: %s",
                      what, at, msg);
        ck_assert_msg(!strstr(msg, "rollback"),
                      "%s at call %d: rollback failed though only one call "
                      "was failed: %s",
                      what, at, msg);
        s_check_baseline(f.s, what, at);
    }
    ck_assert_msg(at < 200, "%s: never completed", what);
    ck_assert_msg(failures + absorbed > 0, "%s: the fault was never reached",
                  what);
    fprintf(stderr, "%s: %d injection points, %d failed cleanly, %d absorbed\n",
            what, at - 1, failures, absorbed);
    /* No temporary files left behind. */
    char *tmp = s_find_prefix(f.root, "%#");
    ck_assert_msg(tmp == NULL || !*tmp, "%s: temporary files left: %s", what,
                  tmp);
    free(tmp);
    s_fx_close(&f);
}

START_TEST(write_enospc_nth) {
    s_fault_loop(i_write, ENOSPC, "write ENOSPC", 0);
}
END_TEST

START_TEST(write_eio_nth) { s_fault_loop(i_write, EIO, "write EIO", 0); }
END_TEST

START_TEST(write_edquot_nth) {
    s_fault_loop(i_write, EDQUOT, "write EDQUOT", 0);
}
END_TEST

START_TEST(write_eio_nth_fsync) {
    s_fault_loop(i_write, EIO, "write EIO (PD_FSYNC)", PD_FSYNC);
}
END_TEST

START_TEST(openat_emfile_nth) {
    s_fault_loop(i_openat, EMFILE, "openat EMFILE", 0);
}
END_TEST

START_TEST(openat_eacces_nth) {
    s_fault_loop(i_openat, EACCES, "openat EACCES", 0);
}
END_TEST

/* iset (temporary file + rename): a failing write or rename leaves the old
 * value and no temporary file. */
static void i_write_iset(void) { pd__sys_table.write = f_write_nth; }

START_TEST(iset_faults) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b")};
    pd_bytes old[] = {V("old-a"), V("old-b")};
    pd_bytes nv[] = {V("new-a"), V("new-b")};
    TU_OK(pd_append(f.s, 2, ks, old, 0), f.s);
    int at;
    for (at = 1; at < 50; at++) {
        s_counters(at, ENOSPC);
        i_write_iset();
        int rc = pd_iset(f.s, 2, ks, nv, 0);
        pd__sys_reset();
        if (!g_injected) {
            TU_OK(rc, f.s);
            break;
        }
        ck_assert_int_eq(rc, PD_ERR_IO);
        ck_assert_int_eq(pd_errno(f.s), ENOSPC);
        ck_assert_msg(s_msg_has(pd_errmsg(f.s), "iset", f.root, (char *)NULL),
                      "message: %s", pd_errmsg(f.s));
        /* A failed iset is not remembered, and the values are the old ones
         * (an iset of several keys may have set the keys before the
         * failing one; those are remembered only if the call succeeds). */
        ck_assert(s_has(f.s, ks[1], "old-b") || s_has(f.s, ks[1], "new-b"));
        char *tmp = s_find_prefix(f.root, "%#");
        ck_assert_msg(tmp == NULL || !*tmp, "iset left temporary files: %s",
                      tmp);
        free(tmp);
        /* Restore for the next run: a fresh handle forgets isets. */
        pd_close(&f.s);
        TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
        TU_OK(pd_delete(f.s, 2, ks, 0), f.s);
        TU_OK(pd_append(f.s, 2, ks, old, 0), f.s);
    }
    ck_assert_int_gt(at, 1);
    tu_expect_as(f.s, ks[0], "new-a", "iset after faults");
    tu_expect_as(f.s, ks[1], "new-b", "iset after faults");

    /* rename fails: old values stay, message names the key. */
    pd_close(&f.s);
    TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
    s_counters(0, 0);
    pd__sys_table.renameat = f_renameat_fail;
    int rc = pd_iset(f.s, 1, ks, old, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f.s), EIO);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "'a'", f.root, (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    tu_expect_as(f.s, ks[0], "new-a", "rename failed");
    char *tmp = s_find_prefix(f.root, "%#");
    ck_assert_msg(tmp == NULL || !*tmp, "temporary files left: %s", tmp);
    free(tmp);
    /* Not remembered: the next iset sets. */
    TU_OK(pd_iset(f.s, 1, ks, old, 0), f.s);
    tu_expect_as(f.s, ks[0], "old-a", "iset after failed iset");
    s_fx_close(&f);
}
END_TEST

START_TEST(short_writes) {
    fx f;
    s_fx_open(&f, 0);
    size_t n = 200000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
    big[n] = 0;
    pd_key ks[] = {K("big"), K("small"), K("big")};
    pd_bytes vs[] = {{big, n}, V("tiny"), V("!")};
    for (int chunk = 1; chunk <= 4096; chunk *= 64) {
        TU_OK(pd_drop(f.s, 0), f.s);
        s_counters(0, 0);
        g_short = chunk == 1 ? 7 : chunk;
        pd__sys_table.write = f_write_short;
        int rc = pd_append(f.s, chunk == 1 ? 2 : 3, ks, vs, 0);
        TU_OK(pd_iset(f.s, 1, &ks[1], &vs[0], 0), f.s);
        pd__sys_reset();
        TU_OK(rc, f.s);
        ck_assert_int_gt(g_calls, 1);
        char *got;
        size_t len;
        TU_OK(tu_fetch1(f.s, ks[0], &got, &len), f.s);
        ck_assert_uint_eq(len, chunk == 1 ? n : n + 1);
        ck_assert(memcmp(got, big, n) == 0);
        free(got);
        TU_OK(tu_fetch1(f.s, ks[1], &got, &len), f.s);
        ck_assert_uint_eq(len, n);
        ck_assert(memcmp(got, big, n) == 0);
        free(got);
        /* A fresh handle forgets the iset for the next round. */
        pd_close(&f.s);
        TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
    }
    /* Short reads. */
    s_counters(0, 0);
    g_short = 1000;
    pd__sys_table.pread = f_pread_short;
    char *got;
    size_t len;
    int rc = tu_fetch1(f.s, ks[0], &got, &len);
    pd__sys_reset();
    TU_OK(rc, f.s);
    ck_assert_uint_eq(len, n + 1);
    ck_assert(memcmp(got, big, n) == 0);
    ck_assert_int_gt(g_calls, 100);
    free(got);
    free(big);
    s_fx_close(&f);
}
END_TEST

START_TEST(eintr_retried) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b"), K("a")};
    pd_bytes vs[] = {V("one"), V("two"), V("three")};
    s_counters(0, 0);
    pd__sys_table.write = f_write_eintr;
    int rc = pd_append(f.s, 3, ks, vs, 0);
    pd__sys_reset();
    TU_OK(rc, f.s);
    ck_assert_int_gt(g_injected, 0);
    tu_expect_as(f.s, ks[0], "onethree", "EINTR write");
    tu_expect_as(f.s, ks[1], "two", "EINTR write");
    s_counters(0, 0);
    pd__sys_table.pread = f_pread_eintr;
    char *got;
    rc = tu_fetch1(f.s, ks[0], &got, NULL);
    pd__sys_reset();
    TU_OK(rc, f.s);
    ck_assert_str_eq(got, "onethree");
    free(got);
    /* flock interrupted by a signal: retried. */
    s_counters(0, 0);
    pd__sys_table.flock = f_flock_eintr;
    pd_close(&f.s);
    rc = pd_file_open(&f.s, f.root, 0);
    ck_assert_msg(rc == 0, "open: %s", pd_errmsg(NULL));
    rc = pd_append(f.s, 1, ks, vs, 0);
    int lrc = pd_lock(f.s);
    if (lrc == 0) pd_unlock(f.s);
    pd__sys_reset();
    TU_OK(rc, f.s);
    TU_OK(lrc, f.s);
    ck_assert_int_gt(g_injected, 0);
    tu_expect_as(f.s, ks[0], "onethreeone", "EINTR flock");
    s_fx_close(&f);
}
END_TEST

START_TEST(fsync_fails) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b")};
    pd_bytes vs[] = {V("1"), V("2")};
    TU_OK(pd_append(f.s, 2, ks, vs, 0), f.s);
    /* Without PD_FSYNC nothing is fsynced. */
    s_counters(0, 0);
    pd__sys_table.fsync = f_fsync_count;
    TU_OK(pd_append(f.s, 2, ks, vs, 0), f.s);
    ck_assert_int_eq(g_calls, 0);
    /* With it, something is. */
    TU_OK(pd_append(f.s, 2, ks, vs, PD_FSYNC), f.s);
    ck_assert_int_ge(g_calls, 1);
    pd__sys_reset();
    tu_expect_as(f.s, ks[0], "111", "fsync ok");
    /* fsync fails: error names the key, path and fsync; the batch is rolled
     * back (a batch is applied whole or not at all). */
    s_counters(0, 0);
    pd__sys_table.fsync = f_fsync_fail;
    int rc = pd_append(f.s, 2, ks, vs, PD_FSYNC);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f.s), EIO);
    const char *m = pd_errmsg(f.s);
    ck_assert_msg(
        s_msg_has(m, "fsync", f.root, "Input/output error", (char *)NULL) &&
            (strstr(m, "'a'") || strstr(m, "'b'")),
        "message: %s", m);
    ck_assert_msg(s_has(f.s, ks[0], "111") && s_has(f.s, ks[1], "222"),
                  "fsync failure: the batch was not rolled back");
    /* iset with PD_FSYNC: old value kept. */
    pd_key ik = K("i");
    tu_append1(f.s, ik, "old", 3);
    s_counters(0, 0);
    pd__sys_table.fsync = f_fsync_fail;
    rc = pd_iset(f.s, 1, &ik, &vs[0], PD_FSYNC);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "'i'", "fsync", (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    tu_expect_as(f.s, ik, "old", "iset with failed fsync");
    char *tmp = s_find_prefix(f.root, "%#");
    ck_assert_msg(tmp == NULL || !*tmp, "temporary files left: %s", tmp);
    free(tmp);
    /* PD_FILE_FSYNC at open: every append fsyncs. */
    pd_close(&f.s);
    TU_OK(pd_file_open(&f.s, f.root, PD_FILE_FSYNC), NULL);
    s_counters(0, 0);
    pd__sys_table.fsync = f_fsync_count;
    TU_OK(pd_append(f.s, 2, ks, vs, 0), f.s);
    pd__sys_reset();
    ck_assert_int_ge(g_calls, 1);
    s_fx_close(&f);
}
END_TEST

START_TEST(rollback_fails) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b")};
    pd_bytes old[] = {V("A0"), V("B0")};
    pd_bytes vs[] = {V("tail"), V("never")};
    TU_OK(pd_append(f.s, 2, ks, old, 0), f.s);
    int at, seen = 0;
    for (at = 2; at < 10; at++) {
        s_counters(at, ENOSPC);
        pd__sys_table.write = f_write_nth;
        pd__sys_table.ftruncate = f_ftruncate_fail;
        int rc = pd_append(f.s, 2, ks, vs, 0);
        pd__sys_reset();
        if (g_calls < at) break; /* the write was not reached */
        ck_assert_int_eq(rc, PD_ERR_IO);
        const char *m = pd_errmsg(f.s);
        if (g_injected < 2) continue; /* nothing to roll back at this call */
        seen++;
        ck_assert_msg(strstr(m, "rollback") || strstr(m, "roll back"),
                      "message does not say the rollback failed: %s", m);
        ck_assert_msg(strstr(m, "'a'"),
                      "message does not name the key left "
                      "with a tail ('a'): %s",
                      m);
        ck_assert_msg(strstr(m, "No space left on device"),
                      "message lacks the original reason: %s", m);
        break;
    }
    ck_assert_msg(seen, "no rollback was attempted (ftruncate never called)");
    /* 'b' is untouched whatever happened to 'a'. */
    tu_expect_as(f.s, ks[1], "B0", "rollback failure");
    s_fx_close(&f);
}
END_TEST

START_TEST(flock_fails) {
    fx f;
    s_fx_open(&f, 0);
    pd_key k = K("a");
    tu_append1(f.s, k, "A0", 2);
    s_counters(0, 0);
    pd__sys_table.flock = f_flock_fail;
    pd_bytes v = V("x");
    int rc = pd_append(f.s, 1, &k, &v, 0);
    char msg[PD__MSG_MAX];
    snprintf(msg, sizeof msg, "%s", pd_errmsg(f.s));
    int lrc = pd_lock(f.s);
    int urc = pd_unlock(f.s);
    pd_result *r = NULL;
    int grc = pd_get(f.s, 1, &k, &r, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f.s), ENOLCK); /* from the failed get */
    ck_assert_msg(s_msg_has(msg, "lock", f.root, (char *)NULL), "message: %s",
                  msg);
    ck_assert_int_eq(lrc, PD_ERR_IO);
    ck_assert_int_eq(urc, PD_ERR_MISUSE); /* the failed lock is not held */
    ck_assert_int_eq(grc, PD_ERR_IO);
    ck_assert_ptr_null(r);
    /* Works again afterwards, nothing changed. */
    tu_expect_as(f.s, k, "A0", "after flock failure");
    TU_OK(pd_append(f.s, 1, &k, &v, 0), f.s);
    tu_expect_as(f.s, k, "A0x", "after flock failure");
    s_fx_close(&f);
}
END_TEST

START_TEST(other_calls_fail) {
    fx f;
    s_fx_open(&f, 0);
    pd_key ks[] = {K("a"), K("b"), K("c")};
    pd_bytes vs[] = {V("1"), V("2"), V("3")};
    TU_OK(pd_append(f.s, 3, ks, vs, 0), f.s);
    /* unlink fails on the 2nd key: keys before it deleted, rest untouched. */
    s_counters(2, EIO);
    pd__sys_table.unlinkat = f_unlinkat_nth;
    int rc = pd_delete(f.s, 3, ks, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    const char *m = pd_errmsg(f.s);
    ck_assert_msg(
        s_msg_has(m, "delete", f.root, "Input/output error", (char *)NULL),
        "message: %s", m);
    int named = strstr(m, "'a'")   ? 0
                : strstr(m, "'b'") ? 1
                : strstr(m, "'c'") ? 2
                                   : -1;
    ck_assert_msg(named >= 0, "message names no key: %s", m);
    for (int i = 0; i < 3; i++)
        if (i < named)
            ck_assert_msg(s_has(f.s, ks[i], ""),
                          "key %d before the failure "
                          "not deleted",
                          i);
        else
            ck_assert_msg(s_has(f.s, ks[i], (const char *)vs[i].data),
                          "key %d from the failure on changed", i);
    TU_OK(pd_append(f.s, 3, ks, vs, 0), f.s);
    /* mkdir fails for a tuple key: clear error, batch not applied. */
    char *before;
    TU_OK(tu_fetch1(f.s, ks[0], &before, NULL), f.s);
    pd_bytes tp[] = {V("dir"), V("x")};
    pd_key bk[] = {ks[0], PD_KEY_TUPLE(tp, 2)};
    s_counters(0, 0);
    pd__sys_table.mkdirat = f_mkdirat_fail;
    rc = pd_append(f.s, 2, bk, vs, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_int_eq(pd_errno(f.s), EACCES);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "('dir', 'x')", f.root,
                            "Permission denied", (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    tu_expect_as(f.s, ks[0], before, "mkdir failure");
    free(before);
    /* pread fails: get reports key and path. */
    s_counters(0, 0);
    pd__sys_table.pread = f_pread_fail;
    pd_result *r = NULL;
    rc = pd_get(f.s, 3, ks, &r, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(pd_errno(f.s), EIO);
    ck_assert_msg(s_msg_has(pd_errmsg(f.s), "get", "'a'", f.root, (char *)NULL),
                  "message: %s", pd_errmsg(f.s));
    s_fx_close(&f);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"write_enospc_nth", write_enospc_nth},
        {"write_eio_nth", write_eio_nth},
        {"write_edquot_nth", write_edquot_nth},
        {"write_eio_nth_fsync", write_eio_nth_fsync},
        {"openat_emfile_nth", openat_emfile_nth},
        {"openat_eacces_nth", openat_eacces_nth},
        {"iset_faults", iset_faults},
        {"short_writes", short_writes},
        {"eintr_retried", eintr_retried},
        {"fsync_fails", fsync_fails},
        {"rollback_fails", rollback_fails},
        {"flock_fails", flock_fails},
        {"other_calls_fail", other_calls_fail},
    };
    return TU_RUN_CASES("test_faults_syscalls", cases, 60, 0);
}
