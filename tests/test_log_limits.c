/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Log: counters at their limits (docs/log-format.md, "Records").  Only
 * damaged or hostile files get there: a valid record claiming sequence
 * number 2^62 - 1, or a state file whose generation is out of range.  The
 * store must fail loudly rather than write what no reader accepts, and
 * never wrap a counter into a number that hides data.
 */
#include "logfix.h"

#include "log/log.h"

#include <xxhash.h>

/* Rewrites every record header (and trailer) of the segment at path with
 * sequence number seq: valid records, checksums included. */
static int s_set_seqs(const char *path, uint64_t seq) {
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    unsigned char *b = malloc((size_t)st.st_size);
    ck_assert_int_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
    int n = 0;
    for (off_t at = 0; at + LG_HDR <= st.st_size; at++) {
        lg_hdr h;
        if (lg_hdr_parse(b + at, &h)) continue;
        h.seq = seq;
        lg_hdr_write(&h, b + at);
        n++;
    }
    ck_assert_int_eq(pwrite(fd, b, (size_t)st.st_size, 0), st.st_size);
    free(b);
    close(fd);
    return n;
}

static void s_has(pd_store *s, const char *what) {
    ck_assert_msg(strstr(pd_errmsg(s), what), "message does not say '%s': %s",
                  what, pd_errmsg(s));
}

START_TEST(sequence_at_limit) {
    fx f;
    fx_init(&f);
    pd_store *s = fx_open(&f);
    int hold = s_hold_state(f.root); /* no compaction at close */
    tu_append1(s, K("a"), "x", 1);
    TU_OK(pd_close(&s), NULL);
    close(hold);
    char seg[PATH_MAX + 300];
    s_only(f.root, "w-", seg, sizeof seg);
    ck_assert_int_eq(s_set_seqs(seg, LG_SEQ_MAX - 1), 2); /* and trailer */
    char state[PATH_MAX + 16];
    snprintf(state, sizeof state, "%s/%s", f.root, LG_STATE);
    ck_assert_int_eq(unlink(state), 0); /* rebuilt: counter at the limit */

    s = fx_open(&f);
    tu_expect_str(s, K("a"), "x");
    /* Every write is refused, naming the counter; nothing is written. */
    pd_key kb = K("b");
    pd_bytes vb = V("y");
    ck_assert_int_eq(pd_append(s, 1, &kb, &vb, 0), PD_ERR_CORRUPT);
    s_has(s, "sequence counter");
    s_has(s, f.root);
    ck_assert_int_eq(pd_iset(s, 1, &kb, &vb, 0), PD_ERR_CORRUPT);
    ck_assert_int_eq(pd_delete(s, 1, &kb, 0), PD_ERR_CORRUPT);
    pd_attempt *at = NULL;
    pd_key w = K("writer");
    ck_assert_int_eq(pd_attempt_begin(s, &w, 0, &at, 0), PD_ERR_CORRUPT);
    ck_assert_ptr_null(at);
    s_has(s, "sequence counter");
    ck_assert_uint_eq(tu_nkeys(s), 1);
    tu_expect_str(s, K("b"), "");
    /* Still readable and compactable; the data survives both. */
    TU_OK(pd_log_compact(s, 0), NULL);
    tu_expect_str(s, K("a"), "x");
    TU_OK(pd_log_compact(s, PD_LOG_SALVAGE), NULL);
    tu_expect_str(s, K("a"), "x");
    ck_assert_int_eq(pd_append(s, 1, &kb, &vb, 0), PD_ERR_CORRUPT);
    fx_end_reopened(&f, &s, "a", "x");
}
END_TEST

/* A state file whose generation is at UINT64_MAX: a compaction used to
 * wrap it to 0 and name its segment c-0000000000000000, which readers
 * ignore (the highest generation counts), losing its data. */
START_TEST(generation_out_of_range) {
    fx f;
    fx_init(&f);
    pd_store *s = fx_open(&f);
    tu_append1(s, K("a"), "x", 1);
    TU_OK(pd_close(&s), NULL);
    char state[PATH_MAX + 16];
    snprintf(state, sizeof state, "%s/%s", f.root, LG_STATE);
    int fd = open(state, O_RDWR);
    ck_assert_int_ge(fd, 0);
    lg_shared sh;
    ck_assert_int_eq(pread(fd, &sh, sizeof sh, 0), (ssize_t)sizeof sh);
    ck_assert_int_eq(memcmp(sh.magic, "PDLOGST1", 8), 0);
    sh.gen = UINT64_MAX;
    ck_assert_int_eq(pwrite(fd, &sh, sizeof sh, 0), (ssize_t)sizeof sh);
    close(fd);

    s = fx_open(&f);
    tu_append1(s, K("a"), "y", 1);
    TU_OK(pd_log_compact(s, 0), NULL);
    tu_expect_str(s, K("a"), "xy");
    TU_OK(pd_log_compact(s, PD_LOG_SALVAGE), NULL);
    tu_append1(s, K("a"), "z", 1);
    tu_expect_str(s, K("a"), "xyz");
    fx_end_reopened(&f, &s, "a", "xyz");
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"sequence_at_limit", sequence_at_limit},
        {"generation_out_of_range", generation_out_of_range},
    };
    return TU_RUN_CASES("test_log_limits", cases, 60, 0);
}
