/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * File store reads: growth and truncation by others, stale read
 * descriptors, large values and empty files, and system call counts.
 */
#include "filefix.h"

/* ------------------------------------------------------------ Reads */

/* A get reads to the end of the file, from a size it remembers for the
 * cached descriptor: growth by anyone else must still be read in full. */

/* Deterministic bytes: byte i of a value built by s_fill(..., seed). */
static void s_fill(char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + seed * 13 + i / 251) % 26);
}

/* Appends n bytes to <root>/<rel> as a writer that ignores the lock would,
 * without changing the directory. */
static void s_outside_append(const char *rel, const char *p, size_t n) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    int fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

/* The handle that reads: g_f (its descriptor is the append's) or a fresh
 * handle that only reads (a read-only cached descriptor). */
static pd_store *s_reader(bool fresh) {
    if (!fresh) return g_f;
    pd_store *h = NULL;
    TU_OK(pd_file_open(&h, g_root, 0), NULL);
    return h;
}

static void s_reader_done(pd_store **h) {
    if (*h != g_f) pd_close(h);
}

/* Reads k until h trusts its cached descriptor without an fstat: past the
 * time the directory's recorded ctime is "racy" (a session that finds it
 * racy verifies the descriptor, and the verifying fstat gives the size). */
static void s_settle(pd_store *h, pd_key k, const char *want, size_t len) {
    tu_expect(h, k, want, len);
    usleep(120000);
    tu_expect(h, k, want, len);
    tu_expect(h, k, want, len);
}

/* how: 0 another handle appends a little (within the slack), 1 another
 * handle appends megabytes, 2 another process appends, 3 a writer ignoring
 * the lock appends; reader: _i / 4. */
START_TEST(get_reads_past_remembered_size) {
    int how = _i % 4;
    bool fresh = _i / 4;
    pd_key k = PD_KEY_STR("k");
    size_t cap = 3 << 20, len = 0;
    char *want = malloc(cap);
    ck_assert_ptr_nonnull(want);
    s_fill(want, cap, 1);
    size_t n0 = 1000;
    tu_append1(g_f, k, want, n0);
    len = n0;
    pd_store *h = s_reader(fresh);
    s_settle(h, k, want, len); /* cached, size remembered */
    size_t grow = how == 0 ? 100 : how == 1 ? cap - n0 - 5000 : 70000;
    if (how <= 1) {
        pd_store *h2 = NULL;
        TU_OK(pd_file_open(&h2, g_root, 0), NULL);
        tu_append1(h2, k, want + len, grow);
        pd_close(&h2);
    } else if (how == 2) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            pd_store *h2 = NULL;
            pd_bytes v = {want + len, grow};
            int rc =
                pd_file_open(&h2, g_root, 0) || pd_append(h2, 1, &k, &v, 0);
            rc = rc || pd_close(&h2);
            free(want);
            if (h != g_f) pd_close(&h);
            _exit(rc ? 1 : 0);
        }
        ck_assert_int_eq(tu_waitpid(pid), 0);
    } else {
        s_outside_append("k", want + len, grow);
    }
    len += grow;
    tu_expect(h, k, want, len);
    /* the remembered size follows: a small append, then a get */
    tu_append1(h, k, want + len, 10);
    len += 10;
    tu_expect(h, k, want, len);
    tu_expect(g_f, k, want, len);
    s_reader_done(&h);
    free(want);
}
END_TEST

/* Truncated behind the handle's back (no directory change), then grown
 * again past the size the handle remembers. */
START_TEST(get_after_truncate_and_regrow) {
    pd_key k = PD_KEY_STR("k");
    char buf[9000];
    s_fill(buf, sizeof buf, 2);
    tu_append1(g_f, k, buf, 5000);
    pd_store *h = s_reader(_i);
    s_settle(h, k, buf, 5000);
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    ck_assert_int_eq(truncate(p, 10), 0);
    tu_expect(h, k, buf, 10);
    ck_assert_int_eq(truncate(p, 0), 0);
    s_settle(h, k, buf, 0);
    s_outside_append("k", buf, sizeof buf);
    tu_expect(h, k, buf, sizeof buf);
    ck_assert_int_eq(truncate(p, 300), 0);
    tu_expect(h, k, buf, 300);
    s_reader_done(&h);
}
END_TEST

/* stale_case for a descriptor a get cached (read-only, in a handle that
 * never appended before): the file deleted, dropped or renamed over. */
static void stale_read_case(int how, bool wait_past_racy) {
    pd_key k = PD_KEY_STR("k");
    tu_append1(g_f, k, "old", 3);
    tu_append1(g_f, PD_KEY_STR("other"), "o", 1);
    pd_store *h = s_reader(true);
    tu_expect_str(h, k, "old"); /* cached read-only */
    tu_expect_str(h, k, "old");
    if (wait_past_racy) usleep(120000);
    tu_expect_str(h, PD_KEY_STR("other"), "o");
    if (wait_past_racy) usleep(120000);
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    if (how == 0) {
        ck_assert_int_eq(unlink(p), 0);
    } else if (how == 1) {
        TU_OK(pd_delete(g_f, 1, &k, 0), g_f);
    } else if (how == 2) {
        ck_assert_int_eq(tu_system("rm -rf '%s' && mkdir '%s'", g_root, g_root),
                         0);
    } else {
        replace_behind("k");
    }
    tu_expect_str(h, k, how == 3 ? "X" : "");
    tu_append1(h, k, "new", 3); /* through a descriptor opened for it */
    tu_file_is(p, how == 3 ? "Xnew" : "new");
    tu_expect_str(h, k, how == 3 ? "Xnew" : "new");
    s_reader_done(&h);
}

START_TEST(stale_read_descriptor_after_unlink) { stale_read_case(0, _i); }
END_TEST
START_TEST(stale_read_descriptor_after_other_handle_delete) {
    stale_read_case(1, _i);
}
END_TEST
START_TEST(stale_read_descriptor_after_directory_replaced) {
    stale_read_case(2, _i);
}
END_TEST
START_TEST(stale_read_descriptor_after_rename_over) { stale_read_case(3, _i); }
END_TEST

/* Values far larger than the slack, empty files, missing keys and files
 * that grow from empty, in one batch and one by one. */
START_TEST(large_values_and_empty_files) {
    size_t big = (1 << 20) + 17;
    char *want = malloc(big);
    ck_assert_ptr_nonnull(want);
    s_fill(want, big, 3);
    pd_key kb = PD_KEY_STR("big"), ke = PD_KEY_STR("empty"),
           km = PD_KEY_STR("missing"), ks = PD_KEY_STR("small");
    for (size_t at = 0; at < big; at += 65536)
        tu_append1(g_f, kb, want + at, big - at < 65536 ? big - at : 65536);
    tu_append1(g_f, ke, "", 0);
    ck_assert(exists("%s/empty", g_root));
    tu_append1(g_f, ks, "s", 1);
    for (int round = 0; round < 2; round++) {
        pd_store *h = s_reader(round);
        pd_key ks4[5] = {ke, kb, km, ks, kb};
        pd_result *r = NULL;
        TU_OK(pd_get(h, 5, ks4, &r, 0), h);
        ck_assert_uint_eq(pd_result_count(r), 5);
        pd_bytes v[5];
        for (int i = 0; i < 5; i++) v[i] = pd_result_value(r, (size_t)i);
        ck_assert_uint_eq(v[0].size, 0);
        ck_assert(v[1].size == big && memcmp(v[1].data, want, big) == 0);
        ck_assert_uint_eq(v[2].size, 0);
        ck_assert(v[3].size == 1 && memcmp(v[3].data, "s", 1) == 0);
        ck_assert(v[4].size == big && memcmp(v[4].data, want, big) == 0);
        ck_assert_uint_eq(pd_result_total(r), 2 * big + 1);
        pd_result_free(&r);
        tu_expect(h, kb, want, big);
        tu_expect(h, ke, "", 0);
        s_reader_done(&h);
    }
    /* the empty file grows behind the handles' backs, past the slack */
    pd_store *h = s_reader(true);
    s_settle(h, ke, "", 0);
    s_settle(g_f, ke, "", 0);
    s_outside_append("empty", want, 300);
    tu_expect(h, ke, want, 300);
    tu_expect(g_f, ke, want, 300);
    s_outside_append("empty", want + 300, 70000);
    tu_expect(h, ke, want, 70300);
    tu_expect(g_f, ke, want, 70300);
    s_reader_done(&h);
    free(want);
}
END_TEST

/* A key read first (read-only descriptor cached) and then appended to by
 * the same handle, including a batch that fails and is rolled back. */
START_TEST(read_descriptor_replaced_for_append) {
    pd_key k = PD_KEY_STR("k");
    tu_append1(g_f, k, "ab", 2);
    pd_store *h = s_reader(true);
    tu_expect_str(h, k, "ab");
    tu_append1(h, k, "c", 1);
    tu_expect_str(h, k, "abc");
    tu_expect_str(g_f, k, "abc");
    /* again read-only, then a batch whose second key conflicts: the
     * first append is undone through the descriptor opened for it */
    pd_close(&h);
    h = s_reader(true);
    tu_expect_str(h, k, "abc");
    pd_bytes parts[2] = {{"k", 1}, {"z", 1}};
    pd_key ks[2] = {k, PD_KEY_TUPLE(parts, 2)};
    pd_bytes vs[2] = {{"d", 1}, {"e", 1}};
    ck_assert_int_eq(pd_append(h, 2, ks, vs, 0), PD_ERR_KEY);
    tu_expect_str(h, k, "abc");
    tu_append1(h, k, "f", 1);
    tu_expect_str(h, k, "abcf");
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    tu_file_is(p, "abcf");
    s_reader_done(&h);
}
END_TEST

/* Counts of the calls that go through the system-call table. */
static int g_nopen, g_nread;
static int g_grow_fd = -1;
static int c_openat(int dfd, const char *p, int fl, mode_t m) {
    g_nopen++;
    return openat(dfd, p, fl, m);
}
static ssize_t c_pread(int fd, void *b, size_t n, off_t off) {
    g_nread++;
    if (g_grow_fd >= 0) { /* a writer ignoring the lock, always ahead */
        char chunk[8192];
        memset(chunk, 'g', sizeof chunk);
        if (write(g_grow_fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk)
            return -1;
    }
    return pread(fd, b, n, off);
}

static void s_count_start(void) {
    g_nopen = g_nread = 0;
    pd__sys_table.openat = c_openat;
    pd__sys_table.pread = c_pread;
}

/* The calls a get or an append costs: deterministic, so checked here
 * (their timing is bench/bench_core's). */
START_TEST(open_and_read_call_counts) {
    enum { N = 64 };
    static char names[2 * N][16];
    pd_key keys[2 * N];
    pd_bytes vals[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        keys[i] = PD_KEY_STR(names[i]);
        vals[i] = PD_BYTES(names[i], strlen(names[i]));
    }
    TU_OK(pd_file_set_max_fds(g_f, 8), g_f);
    /* new keys: one openat each */
    s_count_start();
    int rc = pd_append(g_f, N, keys, vals, 0);
    pd__sys_reset();
    TU_OK(rc, g_f);
    ck_assert_int_eq(g_nopen, N);
    /* reopened after eviction: after the first misses, one openat each */
    s_count_start();
    rc = pd_append(g_f, N, keys, vals, 0);
    int second = g_nopen;
    g_nopen = 0;
    if (rc == 0) rc = pd_append(g_f, N, keys, vals, 0);
    pd__sys_reset();
    TU_OK(rc, g_f);
    ck_assert_int_le(second, N + 2);
    ck_assert_int_eq(g_nopen, N);
    /* new keys again: the guess turns back within a few */
    s_count_start();
    rc = pd_append(g_f, N, keys + N, vals + N, 0);
    pd__sys_reset();
    TU_OK(rc, g_f);
    ck_assert_int_le(g_nopen, N + 2);
    /* a key removed meanwhile while existing files are expected */
    TU_OK(pd_append(g_f, N, keys, vals, 0), g_f);
    TU_OK(pd_delete(g_f, 1, &keys[5], 0), g_f);
    TU_OK(pd_append(g_f, N, keys, vals, 0), g_f);
    tu_expect_str(g_f, keys[5], names[5]);
    tu_expect(g_f, keys[6], "k6k6k6k6k6", 10);
    /* a cached get: one pread, no open */
    TU_OK(pd_file_set_max_fds(g_f, 1024), g_f);
    tu_append1(g_f, keys[0], "+", 1);
    s_count_start();
    char *got;
    size_t len;
    rc = tu_fetch1(g_f, keys[0], &got, &len);
    pd__sys_reset();
    TU_OK(rc, g_f);
    free(got);
    ck_assert_uint_eq(len, 5 * 2 + 1);
    ck_assert_int_eq(g_nopen, 0);
    ck_assert_int_eq(g_nread, 1);
    /* a fresh handle: the first get opens, the second does not */
    pd_store *h = s_reader(true);
    s_count_start();
    rc = tu_fetch1(h, keys[1], &got, NULL);
    free(got);
    int first_open = g_nopen;
    g_nopen = g_nread = 0;
    if (rc == 0) rc = tu_fetch1(h, keys[1], &got, NULL);
    pd__sys_reset();
    TU_OK(rc, h);
    ck_assert_str_eq(got, "k1k1k1k1k1");
    free(got);
    ck_assert_int_eq(first_open, 1);
    ck_assert_int_eq(g_nopen, 0);
    ck_assert_int_eq(g_nread, 1);
    pd_close(&h);
}
END_TEST

/* A file that grows at every read (a writer ignoring the lock): the get
 * ends, with a prefix of what was written. */
START_TEST(get_of_file_growing_under_it_ends) {
    pd_key k = PD_KEY_STR("k");
    tu_append1(g_f, k, "start", 5);
    pd_store *h = s_reader(_i);
    s_settle(h, k, "start", 5);
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    g_grow_fd = open(p, O_WRONLY | O_APPEND);
    ck_assert_int_ge(g_grow_fd, 0);
    s_count_start();
    char *got;
    size_t len;
    int rc = tu_fetch1(h, k, &got, &len);
    pd__sys_reset();
    close(g_grow_fd);
    g_grow_fd = -1;
    TU_OK(rc, h);
    ck_assert_int_le(g_nread, 40);
    ck_assert_uint_ge(len, 5);
    ck_assert_uint_le(len, 5 + (size_t)g_nread * 8192);
    ck_assert(memcmp(got, "start", 5) == 0);
    for (size_t i = 5; i < len; i++) ck_assert_int_eq(got[i], 'g');
    free(got);
    s_reader_done(&h);
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"get_reads_past_remembered_size", get_reads_past_remembered_size, 8},
        {"get_after_truncate_and_regrow", get_after_truncate_and_regrow, 2},
        {"stale_read_descriptor_after_unlink",
         stale_read_descriptor_after_unlink, 2},
        {"stale_read_descriptor_after_other_handle_delete",
         stale_read_descriptor_after_other_handle_delete, 2},
        {"stale_read_descriptor_after_directory_replaced",
         stale_read_descriptor_after_directory_replaced, 2},
        {"stale_read_descriptor_after_rename_over",
         stale_read_descriptor_after_rename_over, 2},
        {"large_values_and_empty_files", large_values_and_empty_files},
        {"read_descriptor_replaced_for_append",
         read_descriptor_replaced_for_append},
        {"open_and_read_call_counts", open_and_read_call_counts},
        {"get_of_file_growing_under_it_ends", get_of_file_growing_under_it_ends,
         2},
    };
    return TU_RUN_CASES_FIXTURE("test_file_reads", cases, 120, 0, setup,
                                teardown);
}
