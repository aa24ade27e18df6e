/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Buffer bypass (src/buffer/bypass.c): an append batch of at least the
 * bypass threshold goes straight to slow, after what fast holds of its keys,
 * in one append to slow.  Large batches interleaved with small appends to
 * the same keys read back in append order over Buffer(Dict, Dict | File |
 * Log); a failing slow store applies nothing; the threshold's edges.
 */
#include "bufix.h"

#include <sys/uio.h>

#define S_NKEYS 6
#define S_CAP 65536

/* What each key must hold, in append order. */
typedef struct s_want {
    char v[S_NKEYS][S_CAP];
    size_t len[S_NKEYS];
} s_want;

static pd_key s_k(int i) {
    static char names[S_NKEYS][4];
    snprintf(names[i], sizeof names[i], "k%d", i);
    return (pd_key){names[i], strlen(names[i]), NULL, 0};
}

static void s_want_add(s_want *w, int k, const void *v, size_t n) {
    ck_assert_uint_le(w->len[k] + n, S_CAP);
    memcpy(w->v[k] + w->len[k], v, n);
    w->len[k] += n;
}

/* Every key of the Buffer reads back exactly as wanted, and fast holds
 * what the Buffer counts. */
static void s_check(pd_store *b, pd_store *fast, const s_want *w) {
    for (int k = 0; k < S_NKEYS; k++) tu_expect(b, s_k(k), w->v[k], w->len[k]);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), pd_dict_nbytes(fast));
    ck_assert_uint_le(pd_buffer_memory_usage(b), pd_buffer_memory_limit(b));
}

static void s_set_bypass(pd_store *b, uint64_t bytes) {
    ((pd__buffer *)b)->bypass = bytes;
}

/* Appends n values, all to model w too; asserts success. */
static void s_append_n(pd_store *b, s_want *w, size_t n, const int *ks,
                       const pd_bytes *vs) {
    pd_key keys[64];
    ck_assert_uint_le(n, 64);
    for (size_t i = 0; i < n; i++) keys[i] = s_k(ks[i]);
    TU_OK(pd_append(b, n, keys, vs, 0), b);
    for (size_t i = 0; i < n; i++) s_want_add(w, ks[i], vs[i].data, vs[i].size);
}

/* A slow store of kind i (0 Dict, 1 File, 2 Log), or NULL when the kind is
 * not available here. */
static pd_store *s_slow(int i) {
    pd_store *s = NULL;
    if (i == 0) return tu_dict();
    if (i == 1) return s_file_or_skip("bypass_order");
    TU_OK(pd_log_open_temp(&s, NULL, 0), NULL);
    return s;
}

/* Large batches (bypass 64 bytes) and small appends to the same keys. */
START_TEST(bypass_order) {
    pd_store *fast = tu_dict(), *slow = s_slow(_i);
    if (!slow) {
        pd_close(&fast);
        return;
    }
    pd_store *b = s_buf_borrow(fast, slow, 200);
    s_set_bypass(b, 64);
    s_want *w = calloc(1, sizeof *w);
    static char big[4][40];
    for (int j = 0; j < 4; j++) memset(big[j], 'A' + j, sizeof big[j]);
    /* Small: to fast. */
    int ks1[2] = {0, 1};
    pd_bytes vs1[2] = {{"a1", 2}, {"b1", 2}};
    s_append_n(b, w, 2, ks1, vs1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 4);
    ck_assert_uint_eq(tu_nkeys(slow), 0);
    s_check(b, fast, w);
    /* Large, repeating k0 and holding k1 (both in fast) and k2 (new):
     * fast's bytes go first, then the batch, all in slow. */
    int ks2[4] = {0, 2, 0, 1};
    pd_bytes vs2[4] = {{big[0], 40}, {big[1], 40}, {big[2], 10}, {big[3], 5}};
    s_append_n(b, w, 4, ks2, vs2);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    ck_assert_uint_eq(pd_buffer_spills(b), 0);
    ck_assert_int_eq(tu_listed_size(fast, s_k(0)), -1);
    ck_assert_int_eq(tu_listed_size(slow, s_k(0)), 2 + 40 + 10);
    ck_assert_int_eq(tu_listed_size(slow, s_k(1)), 2 + 5);
    s_check(b, fast, w);
    /* Small again to k0: fast, after slow's bytes. */
    int ks3[1] = {0};
    pd_bytes vs3[1] = {{"a3", 2}};
    s_append_n(b, w, 1, ks3, vs3);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 2);
    s_check(b, fast, w);
    /* Large on other keys: k0 stays in fast. */
    int ks4[2] = {3, 4};
    pd_bytes vs4[2] = {{big[1], 40}, {big[2], 30}};
    s_append_n(b, w, 2, ks4, vs4);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 2);
    ck_assert_int_eq(tu_listed_size(fast, s_k(0)), 2);
    s_check(b, fast, w);
    /* A random mix, checked after every step. */
    unsigned seed = 1234u + (unsigned)_i;
    static char src[256];
    for (size_t j = 0; j < sizeof src; j++) src[j] = (char)('a' + j % 26);
    for (int step = 0; step < 300; step++) {
        bool large = rand_r(&seed) % 3 == 0;
        size_t n = 1 + (size_t)rand_r(&seed) % (large ? 8 : 3);
        int ks[8];
        pd_bytes vs[8];
        for (size_t j = 0; j < n; j++) {
            ks[j] = rand_r(&seed) % S_NKEYS;
            size_t len = large ? 20 + (size_t)rand_r(&seed) % 60
                               : (size_t)rand_r(&seed) % 12;
            vs[j] = (pd_bytes){src + rand_r(&seed) % 128, len};
        }
        s_append_n(b, w, n, ks, vs);
        s_check(b, fast, w);
    }
    /* Flushed and closed: slow alone holds everything, in order. */
    TU_OK(pd_buffer_flush(b, 0, NULL, 0), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    s_check(b, fast, w);
    TU_OK(pd_close(&b), NULL);
    for (int k = 0; k < S_NKEYS; k++)
        tu_expect(slow, s_k(k), w->v[k], w->len[k]);
    pd_close(&fast);
    pd_close(&slow);
    free(w);
}
END_TEST

/* The default threshold, PD__BUFFER_BYPASS: one byte under it goes to
 * fast, exactly it goes to slow; over the limit but under it spills. */
START_TEST(bypass_threshold_edges) {
    size_t t = (size_t)PD__BUFFER_BYPASS;
    char *v = malloc(t);
    ck_assert_ptr_nonnull(v);
    memset(v, 'x', t);
    v[0] = 'F';
    pd_store *fast = tu_dict(), *slow = tu_dict();
    pd_store *b = s_buf_borrow(fast, slow, 4 * (uint64_t)t);
    ck_assert_uint_eq(((pd__buffer *)b)->bypass, 0); /* a Dict: never */
    s_set_bypass(b, PD__BUFFER_BYPASS);              /* as over a Log */
    /* Two values, t - 1 bytes in all: fast. */
    pd_key k2[2] = {s_k(0), s_k(1)};
    pd_bytes v2[2] = {{v, t / 2}, {v, t - 1 - t / 2}};
    TU_OK(pd_append(b, 2, k2, v2, 0), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), t - 1);
    ck_assert_uint_eq(tu_nkeys(slow), 0);
    /* Exactly t on k0 (held in fast): k0's fast bytes, then these, in
     * slow; k1 stays in fast. */
    pd_key k0 = s_k(0);
    pd_bytes vt = {v, t};
    TU_OK(pd_append(b, 1, &k0, &vt, 0), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), t - 1 - t / 2);
    ck_assert_int_eq(tu_listed_size(slow, k0), (long long)(t / 2 + t));
    ck_assert_int_eq(tu_listed_size(fast, k0), -1);
    ck_assert_uint_eq(pd_buffer_spills(b), 0);
    size_t len = 0;
    char *got = tu_get1(b, &k0, &len);
    ck_assert_uint_eq(len, t / 2 + t);
    ck_assert(memcmp(got, v, t / 2) == 0 && memcmp(got + t / 2, v, t) == 0);
    free(got);
    s_close3(&b, &fast, &slow);
    /* A limit below the threshold: a batch over the limit but under the
     * threshold is placed by spilling (counted), one at it bypasses (not
     * counted). */
    fast = tu_dict();
    slow = tu_dict();
    b = s_buf_borrow(fast, slow, 1000);
    s_set_bypass(b, 2000);
    pd_bytes v1999 = {v, 1999}, v2000 = {v, 2000};
    TU_OK(pd_append(b, 1, &k0, &v1999, 0), b);
    ck_assert_uint_eq(pd_buffer_spills(b), 1);
    TU_OK(pd_append(b, 1, &k0, &v2000, 0), b);
    ck_assert_uint_eq(pd_buffer_spills(b), 1);
    ck_assert_int_eq(tu_listed_size(slow, k0), 3999);
    /* 0 turns the bypass off: the same batch spills. */
    s_set_bypass(b, 0);
    TU_OK(pd_append(b, 1, &k0, &v2000, 0), b);
    ck_assert_uint_eq(pd_buffer_spills(b), 2);
    ck_assert_int_eq(tu_listed_size(slow, k0), 5999);
    /* Empty values and an empty batch never bypass. */
    s_set_bypass(b, 1);
    pd_bytes v0 = {v, 0};
    TU_OK(pd_append(b, 1, &k0, &v0, 0), b);
    TU_OK(pd_append(b, 0, NULL, NULL, 0), b);
    ck_assert_int_eq(tu_listed_size(slow, k0), 5999);
    s_close3(&b, &fast, &slow);
    free(v);
}
END_TEST

/* A failing slow store, with none of the batch's keys in fast (the bypass
 * append alone) and with some (fast's bytes moved in the same append):
 * nothing applied, fast and the counts unchanged, reads in order. */
START_TEST(bypass_failing_slow) {
    t_fail *fs = t_fail_open();
    pd_store *fast = tu_dict(), *slow = &fs->base,
             *b = s_buf_borrow(fast, slow, 1000);
    s_set_bypass(b, 16);
    s_want *w = calloc(1, sizeof *w);
    int ks1[2] = {0, 1};
    pd_bytes vs1[2] = {{"a1", 2}, {"b1", 2}};
    s_append_n(b, w, 2, ks1, vs1);
    fs->fail = true;
    pd_key kb[2] = {s_k(2), s_k(3)};
    pd_bytes vb[2] = {{"0123456789", 10}, {"abcdefghij", 10}};
    ck_assert_int_eq(pd_append(b, 2, kb, vb, 0), PD_ERR_IO);
    const char *msg = pd_errmsg(b);
    ck_assert_msg(strstr(msg, "buffer: append 'k2' (batch of 2) straight to "
                              "slow: failing: append 'k2'") == msg,
                  "%s", msg);
    ck_assert_int_eq(pd_errno(b), ENOSPC);
    ck_assert_int_eq(fs->failures, 1);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 4);
    s_check(b, fast, w);
    /* During the move: k0 holds bytes in fast. */
    pd_key kc[2] = {s_k(3), s_k(0)};
    ck_assert_int_eq(pd_append(b, 2, kc, vb, 0), PD_ERR_IO);
    msg = pd_errmsg(b);
    ck_assert_msg(strstr(msg, "straight to slow, after fast's bytes of 1 of "
                              "its keys: nothing applied: spill 'k0' to "
                              "slow: failing: append") != NULL,
                  "%s", msg);
    ck_assert_int_eq(pd_errno(b), ENOSPC);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 4);
    ck_assert_int_eq(tu_listed_size(fast, s_k(0)), 2);
    ck_assert_uint_eq(tu_nkeys(fs->inner), 0);
    s_check(b, fast, w);
    /* Healed: the same batches apply, in order. */
    fs->fail = false;
    TU_OK(pd_append(b, 2, kb, vb, 0), b);
    s_want_add(w, 2, vb[0].data, 10);
    s_want_add(w, 3, vb[1].data, 10);
    TU_OK(pd_append(b, 2, kc, vb, 0), b);
    s_want_add(w, 3, vb[0].data, 10);
    s_want_add(w, 0, vb[1].data, 10);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 2);
    tu_expect_str(slow, s_k(0), "a1abcdefghij");
    s_check(b, fast, w);
    s_close3(&b, &fast, &slow);
    free(w);
}
END_TEST

static ssize_t f_writev_enospc(int fd, const struct iovec *iov, int cnt) {
    (void)fd;
    (void)iov;
    (void)cnt;
    errno = ENOSPC;
    return -1;
}

/* A real slow store failing: a Log whose writev fails with ENOSPC, during a
 * bypass that carries fast's bytes of a key.  Nothing of it is applied, in
 * the Log's files either: reopened, the Log holds exactly what was acked. */
START_TEST(bypass_failing_log) {
    tu_tmp t;
    tu_tmp_make(&t);
    pd_store *fast = tu_dict(), *slow = NULL;
    TU_OK(pd_log_open(&slow, t.root, PD_LOG_CREATE), NULL);
    pd_store *b = s_buf_borrow(fast, slow, 1000);
    s_set_bypass(b, 16);
    s_want *w = calloc(1, sizeof *w);
    int ks1[1] = {0};
    pd_bytes vs1[1] = {{"0123456789abcdef", 16}};
    s_append_n(b, w, 1, ks1, vs1); /* to slow */
    int ks2[2] = {1, 0};
    pd_bytes vs2[2] = {{"first", 5}, {"a2", 2}};
    s_append_n(b, w, 2, ks2, vs2); /* to fast: k0 in both */
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 7);
    pd__sys_table.writev = f_writev_enospc;
    pd_key kb[2] = {s_k(0), s_k(1)};
    pd_bytes vb[2] = {{"ABCDEFGHIJ", 10}, {"KLMNOPQRST", 10}};
    int rc = pd_append(b, 2, kb, vb, 0);
    pd__sys_reset();
    ck_assert_int_eq(rc, PD_ERR_IO);
    const char *msg = pd_errmsg(b);
    ck_assert_msg(strstr(msg, "straight to slow") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "nothing applied") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "log: ") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "No space left") != NULL, "%s", msg);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 7);
    s_check(b, fast, w);
    /* Healed: applied once, in order. */
    TU_OK(pd_append(b, 2, kb, vb, 0), b);
    s_want_add(w, 0, vb[0].data, 10);
    s_want_add(w, 1, vb[1].data, 10);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 0);
    s_check(b, fast, w);
    TU_OK(pd_close(&b), NULL);
    TU_OK(pd_close(&slow), NULL);
    TU_OK(pd_log_open(&slow, t.root, 0), NULL);
    for (int k = 0; k < S_NKEYS; k++)
        tu_expect(slow, s_k(k), w->v[k], w->len[k]);
    pd_close(&slow);
    pd_close(&fast);
    tu_tmp_remove(&t);
    free(w);
}
END_TEST

/* A fast store whose delete fails after slow took the batch: the error
 * says the batch is applied, and the keys stay counted in fast. */
START_TEST(bypass_failing_fast_delete_says_so) {
    t_fail *ff = t_fail_open();
    pd_store *fast = &ff->base, *slow = tu_dict(),
             *b = s_buf_borrow(fast, slow, 1000);
    s_set_bypass(b, 16);
    pd_key k0 = s_k(0);
    tu_append1(b, k0, "a1", 2);
    ff->fail_del = true;
    pd_bytes v = {"0123456789abcdef", 16};
    ck_assert_int_eq(pd_append(b, 1, &k0, &v, 0), PD_ERR_IO);
    const char *msg = pd_errmsg(b);
    ck_assert_msg(strstr(msg, "the batch IS APPLIED (in slow)") != NULL, "%s",
                  msg);
    ck_assert_msg(strstr(msg, "not deleted from fast") != NULL, "%s", msg);
    tu_expect_str(slow, k0, "a10123456789abcdef");
    ck_assert_uint_eq(pd_buffer_memory_usage(b), 2);
    ff->fail_del = false;
    s_close3(&b, &fast, &slow);
}
END_TEST

/* PD_BUFFER_PRIVATE: keys that only ever bypassed are read, listed and
 * deleted in slow. */
START_TEST(bypass_private_slow) {
    t_fail *fs = t_fail_open();
    pd_store *fast = tu_dict(), *slow = &fs->base, *b = NULL;
    ck_assert_int_eq(pd_buffer_open(&b, &fast, &slow, 1000, PD_BUFFER_PRIVATE),
                     0);
    s_set_bypass(b, 8);
    pd_key k0 = s_k(0), k1 = s_k(1);
    tu_append1(b, k1, "small", 5);
    tu_append1(b, k0, "0123456789", 10);
    tu_expect_str(b, k0, "0123456789");
    tu_expect_str(b, k1, "small");
    ck_assert_uint_eq(tu_nkeys(b), 2);
    TU_OK(pd_delete(b, 1, &k0, 0), b);
    tu_expect_str(b, k0, "");
    ck_assert_uint_eq(tu_nkeys(b), 1);
    pd_close(&b);
}
END_TEST

/* b never bypasses: a batch at the default threshold stays in fast. */
static void s_stays_in_fast(pd_store *b, pd_store *slow) {
    ck_assert_uint_eq(((pd__buffer *)b)->bypass, 0);
    size_t t = (size_t)PD__BUFFER_BYPASS;
    char *v = calloc(1, t);
    ck_assert_ptr_nonnull(v);
    pd_key k0 = s_k(0);
    pd_bytes vt = {v, t};
    TU_OK(pd_append(b, 1, &k0, &vt, 0), b);
    ck_assert_uint_eq(pd_buffer_memory_usage(b), t);
    ck_assert_int_eq(tu_listed_size(slow, k0), -1);
    free(v);
}

/* The default threshold by slow store: a Log's append is one write, so
 * large batches bypass; a File's is a write per key, so never (the File
 * keeps the Dict's coalescing); over a Dict placement stays partd's (the
 * batch in fast); nor over other stores. */
START_TEST(bypass_by_slow_kind) {
    pd_store *fast = tu_dict(), *slow = NULL, *b = NULL;
    TU_OK(pd_log_open_temp(&slow, NULL, 0), NULL);
    b = s_buf_borrow(fast, slow, 1000);
    ck_assert_uint_eq(((pd__buffer *)b)->bypass, PD__BUFFER_BYPASS);
    s_close3(&b, &fast, &slow);
    fast = tu_dict();
    slow = s_file_or_skip("bypass_by_slow_kind");
    if (slow) {
        b = s_buf_borrow(fast, slow, (uint64_t)64 << 20);
        s_stays_in_fast(b, slow);
        pd_close(&b);
        pd_close(&slow);
    }
    t_fail *fs = t_fail_open();
    slow = &fs->base;
    b = s_buf_borrow(fast, slow, 1000);
    ck_assert_uint_eq(((pd__buffer *)b)->bypass, 0);
    s_close3(&b, &fast, &slow);
    /* Buffer(Dict, Dict): a batch at the threshold stays in fast. */
    fast = tu_dict();
    slow = tu_dict();
    b = s_buf_borrow(fast, slow, (uint64_t)64 << 20);
    s_stays_in_fast(b, slow);
    s_close3(&b, &fast, &slow);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"bypass_order", bypass_order, 3},
        {"bypass_threshold_edges", bypass_threshold_edges, 0},
        {"bypass_failing_slow", bypass_failing_slow, 0},
        {"bypass_failing_log", bypass_failing_log, 0},
        {"bypass_failing_fast_delete_says_so",
         bypass_failing_fast_delete_says_so, 0},
        {"bypass_private_slow", bypass_private_slow, 0},
        {"bypass_by_slow_kind", bypass_by_slow_kind, 0},
    };
    return TU_RUN_CASES("test_buffer_bypass", cases, 300, 0);
}
