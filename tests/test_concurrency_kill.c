/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Concurrency: a writer killed with SIGKILL at random moments loses nothing
 * it acknowledged and leaves the lock free.
 */
#include "concfix.h"

/* ------------------------------------------------------------ kill -9 */

/* A writer is killed with SIGKILL at a random moment, 30 times: afterwards
 * the store opens, its lock is free, and every append that returned is
 * there, whole, in order, exactly once; only the append in flight may have
 * left a tail (this File store is unframed; the codec layers detect torn
 * tails).  Each round uses its own keys; all rounds are checked at the end. */
enum { KILL_ROUNDS = 30, KILL_KEYS = 6 };

static void s_kill_writer(const char *root, int round, int ackfd) {
    pd_store *s = NULL;
    if (pd_file_open(&s, root, 0)) _exit(2);
    static char big[70000];
    memset(big, 'x', sizeof big);
    char names[KILL_KEYS][32], recs[KILL_KEYS][96];
    pd_key keys[KILL_KEYS];
    pd_bytes vals[KILL_KEYS * 2];
    pd_key keys2[KILL_KEYS * 2];
    for (int j = 0; j < KILL_KEYS; j++) {
        snprintf(names[j], sizeof names[j], "r%02d-k%d", round, j);
        keys[j] = PD_KEY_STR(names[j]);
    }
    for (uint32_t i = 0;; i++) {
        /* each key gets a record, and every 31st batch a 32 KiB filler
         * before it, so writes of many sizes are cut */
        size_t n = 0;
        for (int j = 0; j < KILL_KEYS; j++) {
            if (i % 31 == 3) {
                keys2[n] = keys[j];
                vals[n++] = PD_BYTES(big, 32768 + (size_t)j * 100);
            }
            int len =
                snprintf(recs[j], sizeof recs[j], "<%d:%u:%d>", round, i, j);
            keys2[n] = keys[j];
            vals[n++] = PD_BYTES(recs[j], (size_t)len);
        }
        if (pd_append(s, n, keys2, vals, 0)) _exit(3);
        if (write(ackfd, &i, sizeof i) != sizeof i) _exit(4);
    }
}

/* Checks key (round, j): the records <round:0:j> .. <round:acked:j> in
 * order, each once, fillers of 'x' allowed between them; after them at most
 * the torn remains of batch acked+1. */
static void s_kill_check(pd_store *s, int round, int j, long acked) {
    char name[32];
    snprintf(name, sizeof name, "r%02d-k%d", round, j);
    size_t len;
    char *v = tu_get1(s, &PD_KEY_STR(name), &len);
    size_t at = 0;
    for (long i = 0; i <= acked; i++) {
        while (at < len && v[at] == 'x') at++;
        char want[96];
        int wl = snprintf(want, sizeof want, "<%d:%ld:%d>", round, i, j);
        ck_assert_msg(len - at >= (size_t)wl &&
                          memcmp(v + at, want, (size_t)wl) == 0,
                      "round %d key %d: acknowledged record %ld missing at "
                      "offset %zu (acked up to %ld)",
                      round, j, i, at, acked);
        at += (size_t)wl;
    }
    /* the tail: only part of batch acked+1 (fillers and its record) */
    char next[96];
    int nl = snprintf(next, sizeof next, "<%d:%ld:%d>", round, acked + 1, j);
    while (at < len && v[at] == 'x') at++;
    ck_assert_msg(len - at <= (size_t)nl && memcmp(v + at, next, len - at) == 0,
                  "round %d key %d: %zu unexpected bytes after the last "
                  "acknowledged record",
                  round, j, len - at);
    free(v);
}

START_TEST(kill9_loses_nothing_acknowledged) {
    tu_tmp t;
    tu_tmp_make(&t);
    pd_store *s = NULL;
    TU_OK(pd_file_open(&s, t.root, PD_FILE_CREATE), NULL);
    long acked[KILL_ROUNDS];
    srand(4242);
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int pfd[2];
        ck_assert_int_eq(pipe(pfd), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(pfd[0]);
            s_kill_writer(t.root, round, pfd[1]);
        }
        close(pfd[1]);
        /* under valgrind the writer starts ~100x slower */
        useconds_t base = tu_under_valgrind() ? 150000 : 2000;
        usleep(base + (useconds_t)(rand() % 40000));
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                      "round %d: writer ended on its own (status %d)", round,
                      st);
        acked[round] = -1;
        uint32_t i;
        while (read(pfd[0], &i, sizeof i) == (ssize_t)sizeof i)
            acked[round] = (long)i;
        close(pfd[0]);
        /* the lock is free at once: the killed process held it at most */
        TU_OK(pd_lock(s), s);
        TU_OK(pd_unlock(s), s);
        for (int j = 0; j < KILL_KEYS; j++)
            s_kill_check(s, round, j, acked[round]);
    }
    /* a fresh handle sees every round intact */
    pd_close(&s);
    TU_OK(pd_file_open(&s, t.root, 0), NULL);
    long total = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        total += acked[round] + 1;
        for (int j = 0; j < KILL_KEYS; j++)
            s_kill_check(s, round, j, acked[round]);
    }
    fprintf(stderr, "kill9: %d rounds, %ld acknowledged batches checked\n",
            KILL_ROUNDS, total);
    ck_assert_int_gt(total, KILL_ROUNDS);
    pd_close(&s);
    tu_tmp_remove(&t);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"kill9_loses_nothing_acknowledged", kill9_loses_nothing_acknowledged},
    };
    return TU_RUN_CASES("test_concurrency_kill", cases, 120, 0);
}
