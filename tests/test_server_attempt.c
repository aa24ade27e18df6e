/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* Writer attempts through the ZeroMQ Server and Client over a Log: commit,
 * abort, conflict, dead clients, restarted servers, the table's bounds and
 * bad requests (docs/zmq.md, "Attempts"). */
#include "srvfix.h"

#define K(s) PD_KEY_STR(s)
#define V(s) PD_BYTES((s), strlen(s))

/* ------------------------------------------------------------ Helpers */

static void t_quiet_log(void *arg, int level, const char *line) {
    (void)arg, (void)level, (void)line;
}

/* A new directory *dir (freed by the caller), the root of a Log in it and
 * the ipc address a server there binds. */
static void t_paths(char **dir, char root[512], char addr[600]) {
    *dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(*dir);
    snprintf(root, 512, "%s/log", *dir);
    snprintf(addr, 600, "ipc://%s/s.sock", *dir);
}

/* t_paths, and the Log created at root. */
static pd_store *t_logstore(char **dir, char root[512], char addr[600]) {
    t_paths(dir, root, addr);
    pd_store *s = NULL;
    TU_OK(pd_log_open(&s, root, PD_LOG_CREATE), NULL);
    return s;
}

/* A server over *store at the ipc address addr, not started yet. */
static pd_server *t_ipc_server(pd_store **store, const char *addr) {
    const char *b = addr;
    pd_server_opts o = {0};
    o.bind = &b;
    o.nbind = 1;
    return t_server_open(store, &o, NULL);
}

/* t_logstore and a server of that Log, not started yet: a test sets its
 * knobs first. */
static pd_server *t_log_server(char **dir, char root[512], char addr[600]) {
    pd_store *log = t_logstore(dir, root, addr);
    return t_ipc_server(&log, addr);
}

static pd_attempt *t_begin(pd_store *c, const char *w, uint64_t att) {
    pd_attempt *a = NULL;
    pd_key k = PD_KEY(w, strlen(w));
    TU_OK(pd_attempt_begin(c, &k, att, &a, 0), c);
    ck_assert_ptr_nonnull(a);
    return a;
}

static void t_add(pd_attempt *a, const char *key, const char *val) {
    pd_key k = PD_KEY(key, strlen(key));
    pd_bytes v = V(val);
    TU_OK(pd_attempt_append(a, 1, &k, &v, 0), pd_attempt_store(a));
}

static pd_server_stats t_stats(pd_store *c) {
    pd_server_stats st = {.size = sizeof st};
    TU_OK(pd_client_stats(c, &st), c);
    return st;
}

static void t_has(const char *msg, const char *want) {
    ck_assert_msg(strstr(msg, want), "'%s' not in: %s", want, msg);
}

/* ------------------------------------------------------------ Through */

START_TEST(commit_abort_conflict) {
    char *dir, root[512], addr[600];
    pd_server *srv = t_log_server(&dir, root, addr);
    TU_OK(pd_server_start(srv), NULL);
    pd_store *c = t_client(addr, 5000, 0);
    pd_store *r = t_client(addr, 5000, PD_CLIENT_SYNC);

    /* Appends, pipelined, invisible until the commit. */
    pd_attempt *a = t_begin(c, "w0", 1);
    for (int i = 0; i < 20; i++) t_add(a, "k", "x");
    t_add(a, "j", "y");
    TU_OK(pd_client_sync(c), c);
    tu_expect_str(r, K("k"), "");
    TU_OK(pd_attempt_commit(&a, 0), c);
    ck_assert_ptr_null(a);
    tu_expect_str(r, K("k"), "xxxxxxxxxxxxxxxxxxxx");
    tu_expect_str(r, K("j"), "y");

    /* A second attempt of the writer, begun before the first committed:
     * its commit is refused and its data discarded; one begun after is
     * refused at once. */
    a = t_begin(c, "w9", 1);
    pd_attempt *a2 = t_begin(c, "w9", 2);
    t_add(a, "n", "first");
    t_add(a2, "n", "second");
    TU_OK(pd_attempt_commit(&a, 0), c);
    ck_assert_int_eq(pd_attempt_commit(&a2, 0), PD_ERR_CONFLICT);
    ck_assert_ptr_null(a2);
    t_has(pd_errmsg(c), addr);
    tu_expect_str(r, K("n"), "first");
    pd_key w0 = K("w0");
    ck_assert_int_eq(pd_attempt_begin(c, &w0, 3, &a2, 0), PD_ERR_CONFLICT);
    ck_assert_ptr_null(a2);

    /* Abort leaves nothing; a later attempt of that writer commits. */
    a = t_begin(c, "w1", 1);
    t_add(a, "m", "gone");
    TU_OK(pd_attempt_abort(&a), c);
    ck_assert_ptr_null(a);
    tu_expect_str(r, K("m"), "");
    a = t_begin(c, "w1", 2);
    t_add(a, "m", "kept");
    TU_OK(pd_attempt_commit(&a, PD_FSYNC), c);
    tu_expect_str(r, K("m"), "kept");

    /* The same (writer, attempt) begun twice (a retry that cannot know
     * the first run is dead) is two attempts: the first commit wins. */
    a = t_begin(c, "w2", 7);
    pd_attempt *b = t_begin(r, "w2", 7);
    t_add(a, "o", "a");
    t_add(b, "o", "b");
    TU_OK(pd_client_sync(c), c);
    TU_OK(pd_attempt_commit(&b, 0), r);
    tu_expect_str(r, K("o"), "b");
    a2 = t_begin(c, "w3", 1); /* left open */
    /* Plain appends beside an open attempt keep today's behaviour. */
    TU_OK(pd_append(r, 1, &PD_KEY_STR("plain"), &PD_BYTES("p", 1), 0), r);
    tu_expect_str(r, K("plain"), "p");

    pd_server_stats st = t_stats(r);
    ck_assert_uint_eq(st.attempts_committed, 4);
    ck_assert_uint_eq(st.attempts_conflicted, 1);
    ck_assert_uint_eq(st.attempts_aborted, 1);
    ck_assert_uint_eq(st.attempts_open, 2);
    ck_assert_uint_ge(st.req_attempt, 35);
    /* records: the committed appends and the plain one only. */
    ck_assert_uint_eq(st.records, 21 + 1 + 1 + 1 + 1);
    ck_assert_int_eq(pd_attempt_commit(&a, 0), PD_ERR_CONFLICT);
    tu_expect_str(r, K("o"), "b");
    TU_OK(pd_attempt_abort(&a2), c);

    TU_OK(pd_close(&c), NULL);
    TU_OK(pd_close(&r), NULL);
    TU_OK(pd_server_close(&srv), NULL);
    /* Committed data is in the Log's files. */
    pd_store *again = NULL;
    TU_OK(pd_log_open(&again, root, 0), NULL);
    tu_expect_str(again, K("k"), "xxxxxxxxxxxxxxxxxxxx");
    tu_expect_str(again, K("m"), "kept");
    TU_OK(pd_close(&again), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A failed append in the pipeline fails the commit: the server forgot the
 * attempt (idle), the appends sent after are refused, and the commit that
 * follows reports it and commits nothing. */
START_TEST(pipelined_failure) {
    char *dir, root[512], addr[600];
    pd_server *srv = t_log_server(&dir, root, addr);
    srv->h.att_idle_ms = 100;
    TU_OK(pd_server_start(srv), NULL);
    pd_store *c = t_client(addr, 5000, 0);
    pd_attempt *a = t_begin(c, "w", 1);
    t_add(a, "k", "a");
    TU_OK(pd_client_sync(c), c);
    usleep(1200 * 1000); /* idle, and past the sweep's pace */
    pd_store *r = t_client(addr, 5000, PD_CLIENT_SYNC);
    /* Pipelined: these are sent; the first attempt request sweeps the
     * idle attempt away, so their replies are errors. */
    pd_key k = K("k");
    pd_bytes v = V("b");
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = pd_attempt_append(a, 1, &k, &v, 0);
    if (rc == 0) rc = pd_attempt_commit(&a, 0);
    char m[PD__MSG_MAX];
    snprintf(m, sizeof m, "%s", pd_errmsg(c));
    pd_attempt_abort(&a);
    ck_assert_int_lt(rc, 0);
    ck_assert_int_ne(rc, PD_ERR_CONFLICT);
    t_has(m, "not open on this server");
    t_has(m, "new attempt");
    t_has(m, addr);
    ck_assert_ptr_null(a);
    tu_expect_str(r, K("k"), "");
    pd_server_stats st = t_stats(r);
    ck_assert_uint_eq(st.attempts_expired, 1);
    ck_assert_uint_eq(st.attempts_open, 0);
    /* The writer runs again: that works. */
    a = t_begin(c, "w", 2);
    t_add(a, "k", "ok");
    TU_OK(pd_attempt_commit(&a, 0), c);
    tu_expect_str(r, K("k"), "ok");
    TU_OK(pd_close(&c), NULL);
    TU_OK(pd_close(&r), NULL);
    TU_OK(pd_server_close(&srv), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A client killed mid-attempt: nothing of it shows; its attempt stays open
 * on the server (which cannot tell a dead client from a slow one) until it
 * goes idle or the server stops; the retry commits. */
typedef struct t_kid {
    const char *addr;
    int ready[2];
} t_kid;

static int t_kid_fn(void *arg) {
    t_kid *k = arg;
    /* Generous: the server starts after the fork, and sanitizers are slow. */
    pd_client_opts o = {.timeout_ms = 30000};
    pd_store *c = NULL;
    TU_CHECK(pd_client_open(&c, k->addr, &o) == 0, "%s", pd_errmsg(NULL));
    pd_attempt *a = NULL;
    pd_key w = K("dead");
    TU_CHECK(pd_attempt_begin(c, &w, 1, &a, 0) == 0, "%s", pd_errmsg(c));
    pd_key key = K("k");
    pd_bytes v = V("half");
    for (int i = 0; i < 10; i++)
        TU_CHECK(pd_attempt_append(a, 1, &key, &v, 0) == 0, "%s", pd_errmsg(c));
    TU_CHECK(pd_client_sync(c) == 0, "%s", pd_errmsg(c));
    TU_CHECK(write(k->ready[1], "r", 1) == 1, "write");
    for (;;) pause(); /* until the SIGKILL */
}

START_TEST(client_killed) {
    char *dir, root[512], addr[600];
    pd_store *log = t_logstore(&dir, root, addr);
    /* The child is forked before the server's threads exist (a fork copies
     * a running ZeroMQ context mid-use) and connects once it listens. */
    t_kid k = {addr, {-1, -1}};
    ck_assert_int_eq(pipe(k.ready), 0);
    tu_child ch = tu_child_spawn(t_kid_fn, &k, &k.ready[0], 1);
    close(k.ready[1]);
    pd_server *srv = t_ipc_server(&log, addr);
    TU_OK(pd_server_start(srv), NULL);
    char b, msg[512];
    if (read(k.ready[0], &b, 1) != 1) {
        int st = tu_child_wait(ch, msg, sizeof msg);
        ck_abort_msg("the child ended (%d) before its attempt: %s", st, msg);
    }
    close(k.ready[0]);
    kill(ch.pid, SIGKILL);
    ck_assert_int_eq(tu_child_wait(ch, msg, sizeof msg), 128 + SIGKILL);

    pd_store *c = t_client(addr, 5000, PD_CLIENT_SYNC);
    tu_expect_str(c, K("k"), "");
    ck_assert_uint_eq(t_stats(c).attempts_open, 1);
    pd_attempt *a = t_begin(c, "dead", 2);
    t_add(a, "k", "whole");
    TU_OK(pd_attempt_commit(&a, 0), c);
    tu_expect_str(c, K("k"), "whole");
    TU_OK(pd_close(&c), NULL);
    /* Stopping the server aborts what is still open. */
    pd_server_stop(srv);
    while (pd_server_running(srv)) usleep(1000);
    pd_server_stats st = {.size = sizeof st};
    TU_OK(pd_server_get_stats(srv, &st), NULL);
    ck_assert_uint_eq(st.attempts_open, 0);
    ck_assert_uint_eq(st.attempts_aborted, 1);
    ck_assert_uint_eq(st.attempts_committed, 1);
    TU_OK(pd_server_close(&srv), NULL);
    pd_store *again = NULL;
    TU_OK(pd_log_open(&again, root, 0), NULL);
    tu_expect_str(again, K("k"), "whole");
    TU_OK(pd_close(&again), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------ Restarts */

typedef struct t_srvkid {
    const char *addr, *root;
} t_srvkid;

static int t_serve_fn(void *arg) {
    t_srvkid *a = arg;
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    pd_store *log = NULL;
    TU_CHECK(pd_log_open(&log, a->root, PD_LOG_CREATE) == 0, "%s",
             pd_errmsg(NULL));
    pd_server_opts o = {0};
    o.bind = &a->addr;
    o.nbind = 1;
    o.log = t_quiet_log;
    pd_server *srv = NULL;
    TU_CHECK(pd_server_open(&srv, &log, &o) == 0, "%s", pd_errmsg(NULL));
    TU_CHECK(pd_server_run(srv) == 0, "%s", pd_errmsg(NULL));
    pd_server_close(&srv);
    return 0;
}

static tu_child t_restart(t_srvkid *a, tu_child *old) {
    if (old) {
        char msg[256];
        kill(old->pid, SIGKILL);
        ck_assert_int_eq(tu_child_wait(*old, msg, sizeof msg), 128 + SIGKILL);
        unlink(a->addr + 6);
    }
    tu_child ch = tu_child_spawn(t_serve_fn, a, NULL, 0);
    t_wait_listening(a->addr);
    return ch;
}

START_TEST(server_restarted) {
    char *dir, root[512], addr[600];
    t_paths(&dir, root, addr);
    t_srvkid sk = {addr, root};
    tu_child ch = t_restart(&sk, NULL);
    pd_store *c = t_client(addr, 3000, PD_CLIENT_SYNC);

    /* Between attempts: what was committed stays. */
    pd_attempt *a = t_begin(c, "w", 1);
    t_add(a, "k", "one");
    TU_OK(pd_attempt_commit(&a, 0), c);
    ch = t_restart(&sk, &ch);
    int rc = -1;
    for (int i = 0; i < 10 && rc != 0; i++) { /* the handle reconnects */
        char *got = NULL;
        rc = tu_fetch1(c, K("k"), &got, NULL);
        if (rc == 0) ck_assert_str_eq(got, "one");
        free(got);
    }
    ck_assert_msg(rc == 0, "%s", pd_errmsg(c));
    /* The writer's first attempt committed before the restart: a retry
     * still conflicts. */
    pd_key wk = K("w");
    ck_assert_int_eq(pd_attempt_begin(c, &wk, 2, &a, 0), PD_ERR_CONFLICT);
    ck_assert_ptr_null(a);

    /* During an attempt: its next append fails, naming the server and
     * saying it was lost; so does the commit.  Never a success. */
    a = t_begin(c, "v", 1);
    t_add(a, "j", "lost");
    ch = t_restart(&sk, &ch);
    pd_key j = K("j");
    pd_bytes v = V("more");
    rc = pd_attempt_append(a, 1, &j, &v, 0);
    ck_assert_int_lt(rc, 0);
    t_has(pd_errmsg(c), addr);
    t_has(pd_errmsg(c), "lost");
    t_has(pd_errmsg(c), "new attempt");
    rc = pd_attempt_commit(&a, 0);
    ck_assert_int_lt(rc, 0);
    ck_assert_int_ne(rc, PD_ERR_CONFLICT);
    t_has(pd_errmsg(c), "lost");
    ck_assert_ptr_null(a);
    tu_expect_str(c, K("j"), "");

    /* The same during an attempt whose appends are pipelined. */
    pd_store *p = t_client(addr, 1000, 0);
    a = t_begin(p, "u", 1);
    t_add(a, "i", "x");
    ch = t_restart(&sk, &ch);
    rc = 0;
    pd_key ik = K("i");
    for (int i = 0; i < 12 && rc == 0; i++)
        rc = pd_attempt_append(a, 1, &ik, &v, 0);
    if (rc == 0) rc = pd_attempt_commit(&a, 0);
    char m[PD__MSG_MAX];
    snprintf(m, sizeof m, "%s", pd_errmsg(p));
    pd_attempt_abort(&a);
    ck_assert_int_lt(rc, 0);
    ck_assert_int_ne(rc, PD_ERR_CONFLICT);
    t_has(m, addr);
    t_has(m, "new attempt");
    tu_expect_str(c, K("i"), "");
    /* The retry works. */
    a = t_begin(p, "u", 2);
    t_add(a, "i", "y");
    TU_OK(pd_attempt_commit(&a, 0), p);
    tu_expect_str(c, K("i"), "y");
    tu_expect_str(c, K("k"), "one");

    TU_OK(pd_close(&p), NULL);
    TU_OK(pd_close(&c), NULL);
    char msg[256];
    kill(ch.pid, SIGTERM);
    tu_child_wait(ch, msg, sizeof msg);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------ Handler */

/* Frames: C strings, except "#N" is N as an 8-byte number and "@w" the
 * token of writer w's last begin (t_toks). */
static char t_names[8][8];
static unsigned char t_toks[8][8];

static int t_req(pd__handler *h, t_cap *cap, size_t n, const char *const *f) {
    pd_bytes fr[16] = {{0}};
    unsigned char nums[16][8];
    for (size_t i = 0; i < n; i++) {
        if (f[i][0] == '#') {
            pd__wire_put_u64(nums[i], strtoull(f[i] + 1, NULL, 10));
            fr[i] = (pd_bytes){nums[i], 8};
        } else if (f[i][0] == '@') {
            fr[i] = (pd_bytes){"", 0};
            for (int j = 0; j < 8; j++)
                if (!strcmp(t_names[j], f[i] + 1))
                    fr[i] = (pd_bytes){t_toks[j], 8};
        } else {
            fr[i] = (pd_bytes){f[i], strlen(f[i])};
        }
    }
    memset(cap, 0, sizeof *cap);
    int rc = pd__handle(h, n, fr);
    bool begun = rc == 0 && n && !strcmp(f[0], "attempt_begin");
    /* exactly one final reply, after the token of a begin */
    ck_assert_uint_eq(cap->nmsg, begun ? 2 : 1);
    if (begun) {
        ck_assert_str_eq(cap->first[1], "ack");
        for (int j = 0; j < 8; j++)
            if (!t_names[j][0] || !strcmp(t_names[j], f[1])) {
                snprintf(t_names[j], sizeof t_names[j], "%s", f[1]);
                memcpy(t_toks[j], cap->tok, 8);
                break;
            }
    }
    return rc;
}

#define T_REQ(h, cap, ...)                                                     \
    t_req(h, cap, sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *),      \
          (const char *[]){__VA_ARGS__})

START_TEST(handler_requests) {
    char *dir, root[512], addr[600];
    pd_store *log = t_logstore(&dir, root, addr);
    TU_OK(pd_lock(log), log);
    t_cap cap;
    pd__handler h = {0};
    h.store = log;
    h.emit = t_cap_emit;
    h.emit_arg = &cap;
    h.att_max = 2;
    h.att_idle_ms = 50;

    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_begin", "w", "#1"), 0);
    ck_assert_int_eq(
        T_REQ(&h, &cap, "attempt_append", "w", "#1", "@w", "k", "v"), 0);
    ck_assert_str_eq(cap.first[0], "ack");
    /* Malformed: refused, one error reply, the attempt untouched. */
    const char *const bad[][7] = {
        {"attempt_begin"},
        {"attempt_begin", "w"},
        {"attempt_begin", "w", "1"},
        {"attempt_begin", "w", "123456789"},
        {"attempt_begin", "w", "#1", "fsync"},
        {"attempt_append", "w", "#1"},
        {"attempt_append", "w", "#1", "short"},
        {"attempt_append", "w", "#1", "@w", "k"},
        {"attempt_append", "w", "#1", "@w", "k", "v", "k2"},
        {"attempt_commit", "w", "#1", "@w", "later"},
        {"attempt_commit", "w", "#1", "@w", "fsync", "x"},
        {"attempt_abort", "w", "#1", "@w", "x"},
        {"attempt_abort"},
        {"attempt_commit", "w", "abcdefg", "@w"},
    };
    size_t nb[] = {1, 2, 3, 3, 4, 3, 4, 5, 7, 5, 6, 5, 1, 4};
    for (size_t i = 0; i < sizeof nb / sizeof nb[0]; i++) {
        int rc = t_req(&h, &cap, nb[i], bad[i]);
        ck_assert_msg(rc == PD_ERR_PROTOCOL, "bad request %zu: %d (%s)", i, rc,
                      h.msg);
        ck_assert_int_eq(h.malformed, 1);
        ck_assert_str_eq(cap.first[0], "error");
        ck_assert_str_eq(cap.last[0], h.msg);
    }
    /* A key of too many parts. */
    char many[70 * 4] = "";
    for (int i = 0; i < 70; i++) strcat(many, i ? "-|-a" : "a");
    ck_assert_int_eq(
        T_REQ(&h, &cap, "attempt_append", "w", "#1", "@w", many, "v"),
        PD_ERR_LIMIT);
    /* Unknown attempts (another number, writer or token): refused, naming
     * why; an abort of one is done already. */
    ck_assert_int_eq(
        T_REQ(&h, &cap, "attempt_append", "w", "#2", "@w", "k", "v"),
        PD_ERR_MISUSE);
    t_has(cap.last[0], "not open on this server");
    t_has(cap.last[0], "attempt 2");
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_commit", "x", "#1", "@w"),
                     PD_ERR_MISUSE);
    t_has(cap.last[0], "not open on this server");
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_commit", "w", "#1", "#12345"),
                     PD_ERR_MISUSE);
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_abort", "x", "#1", "@w"), 0);
    ck_assert_uint_eq(h.natt, 1);

    /* The table is bounded: a clear refusal when full. */
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_begin", "w2", "#1"), 0);
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_begin", "w3", "#1"),
                     PD_ERR_LIMIT);
    t_has(cap.last[0], "2 attempts are open");
    /* Idle ones are aborted to make room. */
    usleep(100 * 1000);
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_begin", "w3", "#1"), 0);
    ck_assert_uint_eq(h.att_expired, 2);
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_commit", "w", "#1", "@w"),
                     PD_ERR_MISUSE);
    ck_assert_int_eq(
        T_REQ(&h, &cap, "attempt_append", "w3", "#1", "@w3", "a-|-b", "tuple"),
        0);
    ck_assert_int_eq(
        T_REQ(&h, &cap, "attempt_commit", "w3", "#1", "@w3", "fsync"), 0);
    ck_assert_uint_eq(h.att_committed, 1);
    pd_bytes parts[2] = {{"a", 1}, {"b", 1}};
    pd_key tk = {NULL, 0, parts, 2};
    tu_expect_str(log, tk, "tuple");
    tu_expect_str(log, K("k"), "");
    ck_assert_uint_eq(h.req[PD__CMD_ATTEMPT], h.requests);
    /* The writer committed: another begin of it conflicts. */
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_begin", "w3", "#2"),
                     PD_ERR_CONFLICT);

    /* A store without attempts says so. */
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    h.store = d;
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_begin", "w", "#5"),
                     PD_ERR_UNSUPPORTED);
    ck_assert_str_eq(cap.first[0], "error");
    h.store = log;
    ck_assert_int_eq(T_REQ(&h, &cap, "attempt_begin", "z", "#1"), 0);
    pd__handler_fini(&h); /* aborts it */
    ck_assert_uint_eq(h.natt, 0);
    TU_OK(pd_close(&d), NULL);
    TU_OK(pd_unlock(log), log);
    TU_OK(pd_close(&log), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* Through a Python-partd-like peer: not ours, so no attempt is sent. */
START_TEST(client_misuse) {
    char *dir, root[512], addr[600];
    pd_server *srv = t_log_server(&dir, root, addr);
    srv->h.att_max = 1;
    TU_OK(pd_server_start(srv), NULL);
    pd_store *c = t_client(addr, 5000, 0);
    /* The server's table is full: a clear refusal, naming the server. */
    pd_attempt *full = t_begin(c, "f", 1), *none = NULL;
    pd_key f2 = K("f2");
    ck_assert_int_eq(pd_attempt_begin(c, &f2, 1, &none, 0), PD_ERR_LIMIT);
    ck_assert_ptr_null(none);
    t_has(pd_errmsg(c), addr);
    t_has(pd_errmsg(c), "1 attempts are open, the most this server keeps");
    TU_OK(pd_attempt_abort(&full), c);
    /* A writer that cannot cross the wire. */
    pd_attempt *a = NULL;
    pd_key bad = K("a-|-b");
    ck_assert_int_eq(pd_attempt_begin(c, &bad, 1, &a, 0), PD_ERR_KEY);
    ck_assert_ptr_null(a);
    /* PD_FSYNC goes with the commit, not an append. */
    a = t_begin(c, "w", 1);
    pd_key k = K("k");
    pd_bytes v = V("v");
    ck_assert_int_eq(pd_attempt_append(a, 1, &k, &v, PD_FSYNC),
                     PD_ERR_UNSUPPORTED);
    TU_OK(pd_attempt_abort(&a), c);
    TU_OK(pd_close(&c), NULL);
    TU_OK(pd_server_close(&srv), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("server_attempt");
    TCase *tc = tcase_create("attempts");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, commit_abort_conflict);
    tcase_add_test(tc, pipelined_failure);
    tcase_add_test(tc, client_killed);
    tcase_add_test(tc, server_restarted);
    tcase_add_test(tc, handler_requests);
    tcase_add_test(tc, client_misuse);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
