/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The File store's descriptor cache: stale descriptors after another actor
 * unlinks, deletes, replaces or renames over a file, and descriptor limits.
 */
#include "filefix.h"

/* ------------------------------------------------- Descriptor cache */

/* Another actor removes a file behind a handle that caches its
 * descriptor: the next append must land in a new, visible file. */
static void stale_case(int how, bool wait_past_racy) {
    pd_key k = PD_KEY_STR("k");
    tu_append1(g_f, k, "old", 3);
    tu_append1(g_f, k, "+", 1); /* now surely cached */
    if (wait_past_racy) usleep(120000);
    tu_append1(g_f, PD_KEY_STR("other"), "o", 1);
    if (wait_past_racy) usleep(120000);
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    if (how == 0) {
        ck_assert_int_eq(unlink(p), 0);
    } else if (how == 1) {
        pd_store *h2 = NULL;
        TU_OK(pd_file_open(&h2, g_root, 0), NULL);
        TU_OK(pd_delete(h2, 1, &k, 0), h2);
        pd_close(&h2);
    } else if (how == 2) {
        /* Python partd's drop: rmtree the directory and recreate it */
        ck_assert_int_eq(tu_system("rm -rf '%s' && mkdir '%s'", g_root, g_root),
                         0);
    } else {
        /* replaced by a new file with other content */
        char tmp[8192];
        snprintf(tmp, sizeof tmp, "%s/newk", g_tmp);
        tu_write_file(tmp, "X", 1);
        ck_assert_int_eq(rename(tmp, p), 0);
    }
    tu_append1(g_f, k, "new", 3);
    tu_file_is(p, how == 3 ? "Xnew" : "new");
    tu_expect_str(g_f, k, how == 3 ? "Xnew" : "new");
}

START_TEST(stale_descriptor_after_unlink) { stale_case(0, _i); }
END_TEST
START_TEST(stale_descriptor_after_other_handle_delete) { stale_case(1, _i); }
END_TEST
START_TEST(stale_descriptor_after_directory_replaced) { stale_case(2, _i); }
END_TEST
START_TEST(stale_descriptor_after_rename_over) { stale_case(3, _i); }
END_TEST

/* A session that finds a directory changed verifies only the descriptors it
 * uses; the others must still be verified later, even once the directory's
 * new ctime is recorded and no longer racy. */
START_TEST(stale_descriptor_unused_in_suspect_session) {
    pd_key x = PD_KEY_STR("x"), y = PD_KEY_STR("y");
    tu_append1(g_f, x, "old", 3);
    tu_append1(g_f, y, "y", 1);
    tu_append1(g_f, x, "+", 1); /* both cached */
    usleep(120000);
    replace_behind("x");
    usleep(120000);
    tu_expect_str(g_f, y, "y"); /* sees the change, uses only y */
    usleep(120000);
    tu_expect_str(g_f, x, "X"); /* not the deleted file's "old+" */
    tu_append1(g_f, x, "new", 3);
    char p[8192];
    snprintf(p, sizeof p, "%s/x", g_root);
    tu_file_is(p, "Xnew");
}
END_TEST

/* A session whose first use of a tuple directory is opening a new key in
 * it must still check the directory before trusting its other cached
 * descriptors. */
START_TEST(stale_descriptor_after_new_key_in_same_directory) {
    pd_bytes pa[2] = {{"d", 1}, {"a", 1}}, pb[2] = {{"d", 1}, {"b", 1}},
             pc[2] = {{"d", 1}, {"c", 1}};
    pd_key a = PD_KEY_TUPLE(pa, 2), b = PD_KEY_TUPLE(pb, 2),
           c = PD_KEY_TUPLE(pc, 2);
    tu_append1(g_f, a, "old", 3);
    tu_append1(g_f, b, "b", 1);
    tu_append1(g_f, a, "+", 1);
    usleep(120000);
    replace_behind("d/a");
    usleep(120000);
    /* one call: c's file is opened (and cached) first, then a's */
    pd_key ks[2] = {c, a};
    pd_bytes vs[2] = {{"c", 1}, {"new", 3}};
    TU_OK(pd_append(g_f, 2, ks, vs, 0), g_f);
    char p[8192];
    snprintf(p, sizeof p, "%s/d/a", g_root);
    tu_file_is(p, "Xnew");
    tu_expect_str(g_f, a, "Xnew");
}
END_TEST

/* A batch get reads every key under one lock, each from its current file,
 * and gives empty values for missing keys. */
START_TEST(batch_get_reads_current_files) {
    pd_key ks[3] = {PD_KEY_STR("p"), PD_KEY_STR("missing"), PD_KEY_STR("q")};
    tu_append1(g_f, ks[0], "pp", 2);
    tu_append1(g_f, ks[2], "q", 1);
    replace_behind("q");
    pd_result *r = NULL;
    TU_OK(pd_get(g_f, 3, ks, &r, 0), g_f);
    ck_assert_uint_eq(pd_result_count(r), 3);
    pd_bytes v0 = pd_result_value(r, 0), v1 = pd_result_value(r, 1),
             v2 = pd_result_value(r, 2);
    ck_assert(v0.size == 2 && memcmp(v0.data, "pp", 2) == 0);
    ck_assert_uint_eq(v1.size, 0);
    ck_assert(v2.size == 1 && memcmp(v2.data, "X", 1) == 0);
    pd_result_free(&r);
}
END_TEST

START_TEST(few_descriptors_many_keys) {
    TU_OK(pd_file_set_max_fds(g_f, 4), g_f);
    enum { N = 300 };
    static char names[N][16];
    pd_key keys[N];
    pd_bytes vals[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        keys[i] = PD_KEY_STR(names[i]);
        vals[i] = PD_BYTES(names[i], strlen(names[i]));
    }
    for (int round = 0; round < 3; round++)
        TU_OK(pd_append(g_f, N, keys, vals, 0), g_f);
    pd_result *r = NULL;
    TU_OK(pd_get(g_f, N, keys, &r, 0), g_f);
    for (int i = 0; i < N; i++) {
        pd_bytes v = pd_result_value(r, (size_t)i);
        ck_assert_uint_eq(v.size, 3 * strlen(names[i]));
    }
    pd_result_free(&r);
    TU_OK(pd_file_set_max_fds(g_f, 0), g_f); /* no cache at all */
    TU_OK(pd_append(g_f, N, keys, vals, 0), g_f);
    ck_assert_int_eq(pd_file_set_max_fds(NULL, 3), PD_ERR_MISUSE);
}
END_TEST

/* RLIMIT_NOFILE of 256 in a child, 20k keys appended twice, then read
 * twice through a second handle. */
START_TEST(fd_limit_256) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (tu_limit_nofile(256)) _exit(3);
        pd_store *s = NULL;
        if (pd_file_open(&s, g_root, 0)) _exit(4);
        enum { N = 20000, B = 1000 };
        static char names[N][12];
        static pd_key keys[N];
        static pd_bytes vals[N];
        for (int i = 0; i < N; i++) {
            snprintf(names[i], sizeof names[i], "%d", i);
            keys[i] = PD_KEY_STR(names[i]);
            vals[i] = PD_BYTES("ab", 2);
        }
        for (int round = 0; round < 2; round++)
            for (int i = 0; i < N; i += B)
                if (pd_append(s, B, keys + i, vals + i, 0)) {
                    fprintf(stderr, "%s\n", pd_errmsg(s));
                    _exit(5);
                }
        pd_keylist *kl = NULL;
        if (pd_keys(s, &kl, 0) || pd_keylist_count(kl) != N) _exit(6);
        for (size_t i = 0; i < N; i++)
            if (pd_keylist_size(kl, i) != 4) _exit(7);
        pd_keylist_free(&kl);
        /* gets cache their descriptors too: a second handle reads every
         * key, twice, within the same limit */
        pd_store *s2 = NULL;
        if (pd_file_open(&s2, g_root, 0)) _exit(9);
        for (int round = 0; round < 2; round++)
            for (int i = 0; i < N; i += B) {
                pd_result *r = NULL;
                if (pd_get(s2, B, keys + i, &r, 0)) {
                    fprintf(stderr, "%s\n", pd_errmsg(s2));
                    _exit(10);
                }
                for (size_t j = 0; j < B; j++)
                    if (pd_result_value(r, j).size != 4) _exit(11);
                pd_result_free(&r);
            }
        if (pd_close(&s2)) _exit(12);
        _exit(pd_close(&s) ? 8 : 0);
    }
    int st = tu_waitpid(pid);
    ck_assert_msg(st == 0, "child status %d", st);
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"stale_descriptor_after_unlink", stale_descriptor_after_unlink, 2},
        {"stale_descriptor_after_other_handle_delete",
         stale_descriptor_after_other_handle_delete, 2},
        {"stale_descriptor_after_directory_replaced",
         stale_descriptor_after_directory_replaced, 2},
        {"stale_descriptor_after_rename_over",
         stale_descriptor_after_rename_over, 2},
        {"stale_descriptor_unused_in_suspect_session",
         stale_descriptor_unused_in_suspect_session},
        {"stale_descriptor_after_new_key_in_same_directory",
         stale_descriptor_after_new_key_in_same_directory},
        {"batch_get_reads_current_files", batch_get_reads_current_files},
        {"few_descriptors_many_keys", few_descriptors_many_keys},
        {"fd_limit_256", fd_limit_256},
    };
    return TU_RUN_CASES_FIXTURE("test_file_cache", cases, 120, 0, setup,
                                teardown);
}
