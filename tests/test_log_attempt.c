/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Attempts on a Log (partd.h "Attempts", docs/log-format.md): visibility
 * only at commit, abort, first commit wins (within a process, across
 * processes, after compaction and reopen), writers killed mid-attempt and
 * retried (exact every round), open attempts across compactions, fsync,
 * faults, damaged attempt and commit records, stores without attempts.
 */
#include "logfix.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static pd_attempt *s_begin(pd_store *s, const char *writer, uint64_t n) {
    pd_attempt *a = NULL;
    pd_key w = PD_KEY_STR(writer);
    TU_OK(pd_attempt_begin(s, &w, n, &a, 0), s);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_eq(pd_attempt_store(a), s);
    return a;
}

static void s_add(pd_attempt *a, const char *key, const char *val) {
    pd_key k = PD_KEY_STR(key);
    pd_bytes v = V(val);
    TU_OK(pd_attempt_append(a, 1, &k, &v, 0), pd_attempt_store(a));
}

static void s_commit(pd_attempt **a) {
    pd_store *s = pd_attempt_store(*a);
    TU_OK(pd_attempt_commit(a, 0), s);
    ck_assert_ptr_null(*a);
}

START_TEST(commit_makes_visible) {
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    tu_append1(s, K("a"), "x;", 2);
    pd_attempt *a = s_begin(s, "w", 0);
    s_add(a, "a", "A1;");
    pd_key ks[3] = {K("a"), K("b"), PD_KEY_TUPLE(NULL, 0)};
    pd_bytes parts[2] = {V("t"), V("u")};
    ks[2] = (pd_key)PD_KEY_TUPLE(parts, 2);
    pd_bytes vs[3] = {V("A2;"), V("B1;"), V("T1;")};
    TU_OK(pd_attempt_append(a, 3, ks, vs, 0), s);
    tu_append1(s, K("a"), "y;", 2);
    /* Invisible until the commit, to this handle and another. */
    tu_expect_str(s, K("a"), "x;y;");
    tu_expect_str(r, K("b"), "");
    tu_expect_str(r, ks[2], "");
    ck_assert_int_eq(tu_listed_size(r, K("b")), -1);
    ck_assert_int_eq(tu_nkeys(r), 1);
    s_commit(&a);
    tu_append1(s, K("a"), "z;", 2);
    /* The attempt's values at the commit's place, in append order. */
    tu_expect_str(r, K("a"), "x;y;A1;A2;z;");
    tu_expect_str(s, K("b"), "B1;");
    tu_expect_str(r, ks[2], "T1;");
    ck_assert_int_eq(tu_nkeys(r), 3);
    /* A delete between the appends and the commit: the commit comes after. */
    a = s_begin(s, "w2", 7);
    s_add(a, "d", "D1;");
    tu_append1(r, K("d"), "old;", 4);
    pd_key kd = K("d");
    TU_OK(pd_delete(r, 1, &kd, 0), r);
    s_commit(&a);
    tu_expect_str(r, K("d"), "D1;");
    /* An empty attempt commits (the writer is done) and conflicts later. */
    a = s_begin(s, "empty", 1);
    s_commit(&a);
    pd_key we = K("empty");
    ck_assert_int_eq(pd_attempt_begin(r, &we, 2, &a, 0), PD_ERR_CONFLICT);
    ck_assert_ptr_null(a);
    TU_OK(pd_close(&r), NULL);
    TU_OK(pd_close(&s), NULL);
    /* After the close's compaction and a reopen. */
    s = fx_open(&f);
    tu_expect_str(s, K("a"), "x;y;A1;A2;z;");
    tu_expect_str(s, ks[2], "T1;");
    tu_expect_str(s, K("d"), "D1;");
    fx_end(&f, &s);
}
END_TEST

START_TEST(abort_leaves_nothing) {
    fx f;
    pd_store *s = fx_start(&f);
    pd_attempt *a = s_begin(s, "w", 1);
    s_add(a, "k", "lost");
    TU_OK(pd_attempt_abort(&a), s);
    ck_assert_ptr_null(a);
    TU_OK(pd_attempt_abort(&a), s); /* NULL: fine */
    tu_expect_str(s, K("k"), "");
    /* The writer may try again: an aborted attempt never committed. */
    a = s_begin(s, "w", 1);
    s_add(a, "k", "kept");
    s_commit(&a);
    tu_expect_str(s, K("k"), "kept");
    TU_OK(pd_log_compact(s, 0), s);
    tu_expect_str(s, K("k"), "kept");
    /* The aborted attempt's bytes are gone after the compaction. */
    ck_assert_int_eq(s_count(f.root, "w-"), 0);
    fx_end_reopened(&f, &s, "k", "kept");
}
END_TEST

START_TEST(first_commit_wins) {
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    pd_attempt *a1 = s_begin(s, "w", 1), *a2 = s_begin(r, "w", 2);
    /* The same (writer, attempt) twice: separate attempts. */
    pd_attempt *a1b = s_begin(r, "w", 1);
    s_add(a1, "k", "one;");
    s_add(a2, "k", "two;");
    s_add(a1b, "k", "one-again;");
    s_commit(&a1);
    ck_assert_int_eq(pd_attempt_commit(&a2, 0), PD_ERR_CONFLICT);
    ck_assert_ptr_null(a2);
    const char *m = pd_errmsg(r);
    ck_assert_msg(strstr(m, "'w'") && strstr(m, "attempt 2") &&
                      strstr(m, "attempt 1 of this writer") &&
                      strstr(m, "discarded"),
                  "%s", m);
    ck_assert_int_eq(pd_errcode(r), PD_ERR_CONFLICT);
    ck_assert_int_eq(pd_attempt_commit(&a1b, 0), PD_ERR_CONFLICT);
    tu_expect_str(s, K("k"), "one;");
    tu_expect_str(r, K("k"), "one;");
    ck_assert_str_eq(pd_strerror(PD_ERR_CONFLICT),
                     "another attempt of this writer committed first");
    /* Begin refuses a writer that committed, whatever the attempt. */
    pd_key w = K("w");
    pd_attempt *a = NULL;
    ck_assert_int_eq(pd_attempt_begin(s, &w, 1, &a, 0), PD_ERR_CONFLICT);
    ck_assert_int_eq(pd_attempt_begin(s, &w, 3, &a, 0), PD_ERR_CONFLICT);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "attempt 1 of this writer"));
    /* Still after a compaction, and after every handle closed. */
    TU_OK(pd_log_compact(r, 0), r);
    ck_assert_int_eq(pd_attempt_begin(s, &w, 4, &a, 0), PD_ERR_CONFLICT);
    TU_OK(pd_close(&r), NULL);
    TU_OK(pd_close(&s), NULL);
    s = fx_open(&f);
    ck_assert_int_eq(pd_attempt_begin(s, &w, 5, &a, 0), PD_ERR_CONFLICT);
    tu_expect_str(s, K("k"), "one;");
    /* A drop forgets the data and the commits. */
    TU_OK(pd_drop(s, 0), s);
    a = s_begin(s, "w", 6);
    s_add(a, "k", "six;");
    s_commit(&a);
    tu_expect_str(s, K("k"), "six;");
    fx_end(&f, &s);
}
END_TEST

/* Children race to commit attempts of one writer: exactly one wins. */
typedef struct race_arg {
    const char *root;
    int id;
    int ready_fd, go_fd;
} race_arg;

static int s_race_child(void *arg) {
    race_arg *ra = arg;
    pd_store *s = fx_child_open(ra->root);
    pd_key w = K("w"), k = K("k");
    pd_attempt *a = NULL;
    int rc = pd_attempt_begin(s, &w, (uint64_t)ra->id, &a, 0);
    TU_CHECK(rc == 0, "begin: %s", pd_errmsg(s));
    char v[32];
    int n = snprintf(v, sizeof v, "child%d;", ra->id);
    for (int i = 0; i < 20; i++) {
        pd_bytes b = PD_BYTES(v, (size_t)n);
        TU_CHECK(pd_attempt_append(a, 1, &k, &b, 0) == 0, "append: %s",
                 pd_errmsg(s));
    }
    char c = 1, g;
    TU_CHECK(write(ra->ready_fd, &c, 1) == 1, "ready");
    TU_CHECK(read(ra->go_fd, &g, 1) >= 0, "go");
    rc = pd_attempt_commit(&a, 0);
    TU_CHECK(rc == 0 || rc == PD_ERR_CONFLICT, "commit: %d %s", rc,
             pd_errmsg(s));
    pd_close(&s);
    return rc == 0 ? 10 : 11;
}

START_TEST(processes_race_to_commit) {
    fx f;
    pd_store *s = fx_start(&f);
    enum { N = 4 };
    for (int round = 0; round < 3; round++) {
        TU_OK(pd_drop(s, 0), s);
        int ready[2], go[2];
        ck_assert_int_eq(pipe(ready), 0);
        ck_assert_int_eq(pipe(go), 0);
        tu_child c[N];
        race_arg ra[N];
        for (int i = 0; i < N; i++) {
            ra[i] = (race_arg){f.root, i, ready[1], go[0]};
            int cl[1] = {go[1]};
            c[i] = tu_child_spawn(s_race_child, &ra[i], cl, 1);
        }
        for (int i = 0; i < N; i++) {
            char b;
            ck_assert_int_eq(read(ready[0], &b, 1), 1);
        }
        close(go[1]); /* all at once */
        int won = -1, nwon = 0;
        for (int i = 0; i < N; i++) {
            char msg[512];
            int st = tu_child_wait(c[i], msg, sizeof msg);
            ck_assert_msg(st == 10 || st == 11, "child %d: %d %s", i, st, msg);
            if (st == 10) {
                won = i;
                nwon++;
            }
        }
        ck_assert_int_eq(nwon, 1);
        char want[32 * 20 + 1] = "", v[32];
        snprintf(v, sizeof v, "child%d;", won);
        for (int i = 0; i < 20; i++) strcat(want, v);
        tu_expect_str(s, K("k"), want);
        close(ready[0]);
        close(ready[1]);
        close(go[0]);
    }
    fx_end(&f, &s);
}
END_TEST

/* One writer's share in a kill -9 round: key "k<j>" gets "r<round>.<j>.<i>;"
 * for i in [0, 10). */
static void s_share(int round, int j, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < 10; i++) {
        char v[48];
        snprintf(v, sizeof v, "r%d.%d.%d;", round, j, i);
        strncat(out, v, cap - strlen(out) - 1);
    }
}

typedef struct kill_arg {
    const char *root;
    int round;
} kill_arg;

/* Writes round's share under attempt 0 of writer "w<round>", one value per
 * batch with pauses, then commits. */
static int s_kill_child(void *arg) {
    kill_arg *ka = arg;
    pd_store *s = fx_child_open(ka->root);
    char wn[32];
    snprintf(wn, sizeof wn, "w%d", ka->round);
    pd_key w = PD_KEY_STR(wn);
    pd_attempt *a = NULL;
    TU_CHECK(pd_attempt_begin(s, &w, 0, &a, 0) == 0, "begin: %s", pd_errmsg(s));
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < 4; j++) {
            char kn[8], v[48];
            snprintf(kn, sizeof kn, "k%d", j);
            snprintf(v, sizeof v, "r%d.%d.%d;", ka->round, j, i);
            pd_key k = PD_KEY_STR(kn);
            pd_bytes b = V(v);
            TU_CHECK(pd_attempt_append(a, 1, &k, &b, 0) == 0, "append: %s",
                     pd_errmsg(s));
            usleep((useconds_t)(rand() % 300));
        }
    TU_CHECK(pd_attempt_commit(&a, 0) == 0, "commit: %s", pd_errmsg(s));
    pd_close(&s);
    return 0;
}

START_TEST(killed_writers_retried_exactly) {
    fx f;
    pd_store *s = fx_start(&f);
    enum { ROUNDS = 40 };
    static char want[4][ROUNDS * 200];
    for (int j = 0; j < 4; j++) want[j][0] = 0;
    srand(1234);
    int retried = 0;
    for (int round = 0; round < ROUNDS; round++) {
        kill_arg ka = {f.root, round};
        srand((unsigned)round * 7919u);
        tu_child c = tu_child_spawn(s_kill_child, &ka, NULL, 0);
        usleep((useconds_t)(rand() % 20000));
        kill(c.pid, SIGKILL);
        char msg[512];
        int st = tu_child_wait(c, msg, sizeof msg);
        ck_assert_msg(st == 0 || st == 128 + SIGKILL, "%d %s", st, msg);
        /* The retry: a new attempt, unless the first one committed. */
        char wn[32];
        snprintf(wn, sizeof wn, "w%d", round);
        pd_key w = PD_KEY_STR(wn);
        pd_attempt *a = NULL;
        int rc = pd_attempt_begin(s, &w, 1, &a, 0);
        ck_assert_msg(rc == 0 || rc == PD_ERR_CONFLICT, "%s", pd_errmsg(s));
        if (rc == 0) {
            retried++;
            for (int j = 0; j < 4; j++) {
                char kn[8], v[200];
                snprintf(kn, sizeof kn, "k%d", j);
                s_share(round, j, v, sizeof v);
                s_add(a, kn, v);
            }
            s_commit(&a);
        }
        for (int j = 0; j < 4; j++) {
            char v[200], kn[8];
            s_share(round, j, v, sizeof v);
            strcat(want[j], v);
            snprintf(kn, sizeof kn, "k%d", j);
            tu_expect_as(s, PD_KEY_STR(kn), want[j], "after a kill round");
        }
        if (round % 7 == 6) TU_OK(pd_log_compact(s, 0), s);
    }
    ck_assert_int_gt(retried, 0);
    TU_OK(pd_close(&s), NULL);
    s = fx_open(&f);
    for (int j = 0; j < 4; j++) {
        char kn[8];
        snprintf(kn, sizeof kn, "k%d", j);
        tu_expect_as(s, PD_KEY_STR(kn), want[j], "after reopen");
    }
    fx_end(&f, &s);
}
END_TEST

START_TEST(open_attempt_survives_compaction) {
    fx f;
    pd_store *s = fx_start(&f), *r = fx_open(&f);
    pd_attempt *a = s_begin(s, "w", 0);
    s_add(a, "k", "A1;");
    tu_append1(r, K("k"), "p1;", 3);
    TU_OK(pd_log_compact(r, 0), r);
    s_add(a, "k", "A2;"); /* moves to a new segment; keeps the old one */
    TU_OK(pd_log_compact(r, 0), r);
    tu_append1(s, K("k"), "p2;", 3);
    TU_OK(pd_log_compact(r, 0), r);
    tu_expect_str(r, K("k"), "p1;p2;");
    s_commit(&a);
    tu_expect_str(r, K("k"), "p1;p2;A1;A2;");
    TU_OK(pd_log_compact(r, 0), r);
    tu_expect_str(r, K("k"), "p1;p2;A1;A2;");
    tu_expect_str(s, K("k"), "p1;p2;A1;A2;");
    /* Committed after a compaction that saw its records: kept until the
     * next one. */
    a = s_begin(s, "w2", 0);
    s_add(a, "j", "J1;");
    TU_OK(pd_log_compact(r, 0), r);
    s_commit(&a);
    tu_append1(s, K("x"), "x", 1); /* s moves to a new segment */
    tu_expect_str(r, K("j"), "J1;");
    TU_OK(pd_close(&r), NULL);
    TU_OK(pd_close(&s), NULL);
    s = fx_open(&f);
    tu_expect_str(s, K("k"), "p1;p2;A1;A2;");
    tu_expect_str(s, K("j"), "J1;");
    fx_end(&f, &s);
}
END_TEST

START_TEST(unsupported_stores) {
    pd_store *d = NULL, *fl = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    pd_key w = K("w");
    pd_attempt *a = (pd_attempt *)&w;
    ck_assert_int_eq(pd_attempt_begin(d, &w, 0, &a, 0), PD_ERR_UNSUPPORTED);
    ck_assert_ptr_null(a);
    ck_assert_msg(strstr(pd_errmsg(d), "dict") &&
                      strstr(pd_errmsg(d), "need a Log underneath"),
                  "%s", pd_errmsg(d));
    TU_OK(pd_file_open_temp(&fl, NULL, 0), NULL);
    ck_assert_int_eq(pd_attempt_begin(fl, &w, 0, &a, 0), PD_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(
        strstr(pd_errmsg(fl), "a file store has no attempts"));
    /* Misuse. */
    ck_assert_int_eq(pd_attempt_begin(NULL, &w, 0, &a, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_attempt_begin(d, NULL, 0, &a, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_attempt_begin(d, &w, 0, NULL, 0), PD_ERR_MISUSE);
    pd_key bad = {NULL, 3, NULL, 0};
    ck_assert_int_eq(pd_attempt_begin(d, &bad, 0, &a, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_attempt_append(NULL, 0, NULL, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_attempt_commit(NULL, 0), PD_ERR_MISUSE);
    ck_assert_ptr_null(pd_attempt_store(NULL));
    TU_OK(pd_close(&d), NULL);
    TU_OK(pd_close(&fl), NULL);
}
END_TEST

START_TEST(misuse_and_close) {
    fx f;
    pd_store *s = fx_start(&f);
    pd_key w = K("w");
    pd_attempt *a = NULL;
    ck_assert_int_eq(pd_attempt_begin(s, &w, 0, &a, 0x80), PD_ERR_MISUSE);
    a = s_begin(s, "w", UINT64_MAX);
    pd_key k = K("k");
    pd_bytes v = V("v");
    ck_assert_int_eq(pd_attempt_append(a, 1, &k, &v, 0x80), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_attempt_append(a, 1, NULL, &v, 0), PD_ERR_MISUSE);
    TU_OK(pd_attempt_append(a, 0, NULL, NULL, 0), s);
    pd_key wk;
    uint64_t an = 0;
    TU_OK(pd_attempt_id(a, &wk, &an), s);
    ck_assert_uint_eq(an, UINT64_MAX);
    ck_assert_uint_eq(wk.size, 1);
    ck_assert_int_eq(memcmp(wk.data, "w", 1), 0);
    s_add(a, "k", "v");
    /* Closing the store aborts the attempt; the caller still frees it. */
    pd_attempt *b = s_begin(s, "w2", 0);
    TU_OK(pd_close(&s), NULL);
    ck_assert_ptr_null(pd_attempt_store(a));
    ck_assert_int_eq(pd_attempt_append(a, 1, &k, &v, 0), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "closed"));
    ck_assert_int_eq(pd_attempt_commit(&a, 0), PD_ERR_MISUSE);
    ck_assert_ptr_null(a);
    TU_OK(pd_attempt_abort(&b), NULL);
    s = fx_open(&f);
    tu_expect_str(s, K("k"), "");
    a = s_begin(s, "w", 1); /* never committed */
    TU_OK(pd_attempt_abort(&a), s);
    fx_end(&f, &s);
}
END_TEST

static int s_fork_child(void *arg) {
    pd_attempt *a = arg;
    pd_key k = K("k");
    pd_bytes v = V("child");
    int rc = pd_attempt_append(a, 1, &k, &v, 0);
    TU_CHECK(rc == PD_ERR_MISUSE, "append in child: %d", rc);
    TU_CHECK(strstr(pd_errmsg(pd_attempt_store(a)), "forked child") != NULL,
             "%s", pd_errmsg(pd_attempt_store(a)));
    rc = pd_attempt_commit(&a, 0);
    TU_CHECK(rc == PD_ERR_MISUSE, "commit in child: %d", rc);
    return 0;
}

START_TEST(forked_child_cannot_use) {
    fx f;
    pd_store *s = fx_start(&f);
    pd_attempt *a = s_begin(s, "w", 0);
    s_add(a, "k", "parent;");
    tu_child c = tu_child_spawn(s_fork_child, a, NULL, 0);
    char msg[512];
    ck_assert_msg(tu_child_wait(c, msg, sizeof msg) == 0, "%s", msg);
    s_add(a, "k", "more;");
    s_commit(&a);
    tu_expect_str(s, K("k"), "parent;more;");
    fx_end(&f, &s);
}
END_TEST

START_TEST(format_version) {
    fx f;
    pd_store *s = fx_start(&f);
    tu_append1(s, K("k"), "v", 1);
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/partd-log", f.root);
    size_t len = 0;
    char *m = tu_read_file(p, &len);
    ck_assert_int_eq(len, 16);
    ck_assert_int_eq(m[8], 1); /* no attempt yet: readable by version 1 */
    free(m);
    pd_attempt *a = s_begin(s, "w", 0);
    m = tu_read_file(p, &len);
    ck_assert_int_eq(m[8], 2);
    free(m);
    s_commit(&a);
    fx_end(&f, &s);
}
END_TEST

/* Encode, Namespace and Buffer pass attempts on to a Log. */
START_TEST(layers) {
    fx f;
    pd_store *log = fx_start(&f), *z = NULL;
    TU_OK(pd_compress_open(&z, &log, "zlib", 1, 0), NULL);
    pd_attempt *a = s_begin(z, "w", 0);
    s_add(a, "k", "zipped;");
    tu_expect_str(z, K("k"), "");
    s_commit(&a);
    tu_expect_str(z, K("k"), "zipped;");
    pd_key w = K("w");
    ck_assert_int_eq(pd_attempt_begin(z, &w, 1, &a, 0), PD_ERR_CONFLICT);
    ck_assert_msg(strstr(pd_errmsg(z), "zlib: ") &&
                      strstr(pd_errmsg(z), "attempt 0 of this writer"),
                  "%s", pd_errmsg(z));
    TU_OK(pd_close(&z), NULL);

    /* Namespace: writers of different namespaces are different writers. */
    log = fx_open(&f);
    pd_store *n1 = NULL, *n2 = NULL;
    TU_OK(pd_namespace_open(&n1, &log, "one", 3, PD_BORROW), NULL);
    TU_OK(pd_namespace_open(&n2, &log, "two", 3, PD_BORROW), NULL);
    a = s_begin(n1, "w", 0);
    pd_attempt *b = s_begin(n2, "w", 0);
    s_add(a, "k", "n1;");
    s_add(b, "k", "n2;");
    s_commit(&a);
    s_commit(&b);
    tu_expect_str(n1, K("k"), "n1;");
    tu_expect_str(n2, K("k"), "n2;");
    pd_bytes parts[2] = {V("one"), V("k")};
    tu_expect_str(log, PD_KEY_TUPLE(parts, 2), "n1;");
    ck_assert_int_eq(pd_attempt_begin(n1, &w, 1, &a, 0), PD_ERR_CONFLICT);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(n1), "'one'"));
    TU_OK(pd_close(&n1), NULL);
    TU_OK(pd_close(&n2), NULL);
    TU_OK(pd_drop(log, 0), log);

    /* Buffer(Dict, Log), private or not: the attempt goes to slow, and
     * fast's earlier bytes of its keys come first. */
    for (int priv = 0; priv < 2; priv++) {
        pd_store *d = NULL, *buf = NULL, *slow = log;
        TU_OK(pd_dict_open(&d), NULL);
        TU_OK(pd_buffer_open(&buf, &d, &slow, 1 << 20,
                             priv ? PD_BUFFER_PRIVATE : 0),
              NULL);
        log = NULL;
        tu_append1(buf, K("k"), "f1;", 3);
        tu_append1(buf, K("o"), "o1;", 3);
        char wn[8];
        snprintf(wn, sizeof wn, "b%d", priv);
        a = s_begin(buf, wn, 0);
        s_add(a, "k", "A1;");
        s_add(a, "new", "N1;");
        tu_append1(buf, K("k"), "f2;", 3);
        tu_expect_str(buf, K("k"), "f1;f2;");
        ck_assert_uint_eq(pd_buffer_memory_usage(buf), 9);
        s_commit(&a);
        tu_append1(buf, K("k"), "f3;", 3);
        tu_expect_str(buf, K("k"), "f1;f2;A1;f3;");
        tu_expect_str(buf, K("new"), "N1;");
        tu_expect_str(buf, K("o"), "o1;");
        /* Aborted: nothing. */
        a = s_begin(buf, "gone", 0);
        s_add(a, "k", "lost;");
        TU_OK(pd_attempt_abort(&a), buf);
        tu_expect_str(buf, K("k"), "f1;f2;A1;f3;");
        TU_OK(pd_drop(buf, 0), buf);
        TU_OK(pd_close(&buf), NULL); /* and the Log under it */
        log = fx_open(&f);
    }
    fx_end(&f, &log);
}
END_TEST

START_TEST(fanout_unsupported) {
    pd_store *d1 = NULL, *d2 = NULL, *fo = NULL;
    TU_OK(pd_dict_open(&d1), NULL);
    TU_OK(pd_dict_open(&d2), NULL);
    pd_store *in[2] = {d1, d2};
    TU_OK(pd_fanout_open(&fo, in, 2, 0), NULL);
    pd_key w = K("w");
    pd_attempt *a = NULL;
    ck_assert_int_eq(pd_attempt_begin(fo, &w, 0, &a, 0), PD_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(pd_errmsg(fo), "fanout") &&
                      strstr(pd_errmsg(fo), "atomic"),
                  "%s", pd_errmsg(fo));
    TU_OK(pd_close(&fo), NULL);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"commit_makes_visible", commit_makes_visible},
        {"abort_leaves_nothing", abort_leaves_nothing},
        {"first_commit_wins", first_commit_wins},
        {"processes_race_to_commit", processes_race_to_commit},
        {"killed_writers_retried_exactly", killed_writers_retried_exactly},
        {"open_attempt_survives_compaction", open_attempt_survives_compaction},
        {"unsupported_stores", unsupported_stores},
        {"misuse_and_close", misuse_and_close},
        {"forked_child_cannot_use", forked_child_cannot_use},
        {"format_version", format_version},
        {"layers", layers},
        {"fanout_unsupported", fanout_unsupported},
    };
    return TU_RUN_CASES("test_log_attempt", cases, 180, 0);
}
