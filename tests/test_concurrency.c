/*
 * Several processes and threads on one File store: batches are atomic for
 * every reader, appends from every writer land exactly once, descriptors
 * cached by one process survive what other processes do to the directory,
 * and the lock excludes processes (C and Python) and threads.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PARTD_SOURCE_DIR
#define PARTD_SOURCE_DIR "."
#endif
#define PY_DIR PARTD_SOURCE_DIR "/tests/py"

/* ------------------------------------------------------- Child processes */

/* Descriptors a forked child must close first (e.g. the write ends of the
 * pipes whose EOF it waits for). */
static int g_child_close[8];
static int g_nchild_close;

static tu_child s_spawn(tu_child_fn fn, void *arg) {
    return tu_child_spawn(fn, arg, g_child_close, g_nchild_close);
}

static void s_wait_ok(tu_child c, const char *what) {
    char msg[4096];
    int st = tu_child_wait(c, msg, sizeof msg);
    ck_assert_msg(st == 0, "%s: exit status %d: %s", what, st, msg);
}

/* Starts /usr/bin/python3 tests/py/<script> with args (NULL-terminated);
 * its stdout goes to `outfd` if >= 0; `keepfd` stays open in it. */
static pid_t s_spawn_py(int outfd, int keepfd, const char *script, ...) {
    const char *argv[16];
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", PY_DIR, script);
    int n = 0;
    argv[n++] = PARTD_TEST_PYTHON;
    argv[n++] = path;
    va_list ap;
    va_start(ap, script);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 15) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (outfd >= 0) dup2(outfd, 1);
        /* Close everything else so the child holds no store descriptor. */
        for (int fd = 3; fd < 1024; fd++)
            if (fd != keepfd) close(fd);
        execv(PARTD_TEST_PYTHON, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Runs tests/py/op.py ROOT args... and returns its exit status; stdout is
 * captured into out (NUL-terminated) when out != NULL. */
static int s_py_op(char *out, size_t cap, const char *root, const char *a1,
                   const char *a2, const char *a3) {
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = s_spawn_py(p[1], -1, "op.py", root, a1, a2, a3, (char *)NULL);
    close(p[1]);
    size_t len = 0;
    ssize_t r;
    char sink[256];
    for (;;) {
        if (out && len + 1 < cap)
            r = read(p[0], out + len, cap - 1 - len);
        else
            r = read(p[0], sink, sizeof sink);
        if (r <= 0) break;
        if (out && len + 1 < cap) len += (size_t)r;
    }
    if (out) out[len] = 0;
    close(p[0]);
    return tu_waitpid(pid);
}

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void s_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* The keys k0..k{n-1}: keys[k] points at names[k]. */
static void s_knames(int n, char names[][8], pd_key *keys) {
    for (int k = 0; k < n; k++) {
        snprintf(names[k], sizeof names[k], "k%d", k);
        keys[k] = PD_KEY_STR(names[k]);
    }
}

/* ------------------------------------------------------------ Records */

/* A key's content is a sequence of records "<w>:<b>:<k>;".  s_parse checks
 * the syntax (so a torn or interleaved record is caught), that k matches,
 * and fills recs[] with (w, b) pairs.  Returns the count or -1 with a
 * reason in why. */
typedef struct rec {
    int w, b;
} rec;

static long s_parse(const char *p, size_t len, int key, rec *recs, size_t cap,
                    char *why, size_t whycap) {
    size_t i = 0, n = 0;
    while (i < len) {
        long f[3];
        for (int j = 0; j < 3; j++) {
            if (i >= len || p[i] < '0' || p[i] > '9') {
                snprintf(why, whycap, "bad record at byte %zu: '%.40s'", i,
                         p + (i > 20 ? i - 20 : 0));
                return -1;
            }
            long v = 0;
            while (i < len && p[i] >= '0' && p[i] <= '9' && v < 100000000)
                v = v * 10 + (p[i++] - '0');
            f[j] = v;
            char want = j < 2 ? ':' : ';';
            if (i >= len || p[i] != want) {
                snprintf(why, whycap, "bad separator at byte %zu: '%.40s'", i,
                         p + (i > 20 ? i - 20 : 0));
                return -1;
            }
            i++;
        }
        if (f[2] != key) {
            snprintf(why, whycap, "record %ld:%ld:%ld in key k%d", f[0], f[1],
                     f[2], key);
            return -1;
        }
        if (n >= cap) {
            snprintf(why, whycap, "more than %zu records", cap);
            return -1;
        }
        recs[n++] = (rec){(int)f[0], (int)f[1]};
    }
    return (long)n;
}

/* ------------------------------------------------------- Many writers */

enum { NW = 8, NB = 400, NK = 16, MAXREC = NW * NB };

typedef struct wargs {
    const char *root;
    int w;
    int gofd; /* read end: EOF means go */
} wargs;

static void s_wait_go(int fd) {
    char c;
    while (read(fd, &c, 1) > 0) {}
}

static int s_c_writer(void *arg) {
    wargs *a = arg;
    s_wait_go(a->gofd);
    pd_store *s = NULL;
    int rc = pd_file_open(&s, a->root, 0);
    TU_CHECK(rc == 0, "open: %s", pd_errmsg(NULL));
    /* Writers differ: some split each record into two values of the same
     * key within the batch, some hold pd_lock around the batch. */
    bool split = a->w % 3 == 1, locked = a->w % 2 == 1;
    pd_key keys[2 * NK];
    pd_bytes vals[2 * NK];
    char names[NK][8], recs[NK][48];
    for (int b = 0; b < NB; b++) {
        size_t n = 0;
        for (int k = 0; k < NK; k++) {
            snprintf(names[k], sizeof names[k], "k%d", k);
            int len =
                snprintf(recs[k], sizeof recs[k], "%d:%d:%d;", a->w, b, k);
            if (split) {
                keys[n] = PD_KEY_STR(names[k]);
                vals[n++] = PD_BYTES(recs[k], 2);
                keys[n] = PD_KEY_STR(names[k]);
                vals[n++] = PD_BYTES(recs[k] + 2, (size_t)len - 2);
            } else {
                keys[n] = PD_KEY_STR(names[k]);
                vals[n++] = PD_BYTES(recs[k], (size_t)len);
            }
        }
        if (locked) {
            TU_CHECK(pd_lock(s) == 0, "lock: %s", pd_errmsg(s));
            rc = pd_append(s, n, keys, vals, PD_NOLOCK);
            TU_CHECK(rc == 0, "append: %s", pd_errmsg(s));
            TU_CHECK(pd_unlock(s) == 0, "unlock: %s", pd_errmsg(s));
        } else {
            rc = pd_append(s, n, keys, vals, 0);
            TU_CHECK(rc == 0, "append: %s", pd_errmsg(s));
        }
    }
    TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

typedef struct rargs {
    const char *root;
    int stopfd; /* readable (EOF) when writers are done */
    int gofd;
} rargs;

/* Checks one snapshot of all keys: every key holds the same sequence of
 * (writer, batch) pairs, each writer's batches in order.  prev (the last
 * snapshot's sequence) must be a prefix of this one.  Returns the length. */
static long s_check_snapshot(pd_result *r, rec *seq, rec *tmp, long prevn,
                             char *why, size_t whycap) {
    long n0 = -1;
    for (int k = 0; k < NK; k++) {
        pd_bytes v = pd_result_value(r, (size_t)k);
        rec *dst = k == 0 ? seq : tmp;
        long n = s_parse(v.data, v.size, k, dst, MAXREC, why, whycap);
        if (n < 0) return -1;
        if (k == 0) {
            n0 = n;
            continue;
        }
        if (n != n0 || memcmp(seq, tmp, (size_t)n * sizeof *seq) != 0) {
            long i = 0;
            while (i < n && i < n0 && seq[i].w == tmp[i].w &&
                   seq[i].b == tmp[i].b)
                i++;
            snprintf(why, whycap,
                     "key k%d holds %ld records, k0 %ld; first difference at "
                     "record %ld: a get saw part of a batch",
                     k, n, n0, i);
            return -1;
        }
    }
    int last[NW];
    for (int w = 0; w < NW; w++) last[w] = -1;
    for (long i = 0; i < n0; i++) {
        rec x = seq[i];
        if (x.w < 0 || x.w >= NW || x.b != last[x.w] + 1) {
            snprintf(why, whycap, "record %ld is %d:%d, writer's last was %d",
                     i, x.w, x.b, x.w >= 0 && x.w < NW ? last[x.w] : -9);
            return -1;
        }
        last[x.w] = x.b;
    }
    if (n0 < prevn) {
        snprintf(why, whycap, "snapshot shrank from %ld to %ld records", prevn,
                 n0);
        return -1;
    }
    return n0;
}

static int s_reader(void *arg) {
    rargs *a = arg;
    s_wait_go(a->gofd);
    pd_store *s = NULL;
    int rc = pd_file_open(&s, a->root, 0);
    TU_CHECK(rc == 0, "open: %s", pd_errmsg(NULL));
    rec *seq = calloc(MAXREC, sizeof *seq), *tmp = calloc(MAXREC, sizeof *tmp),
        *prev = calloc(MAXREC, sizeof *prev);
    pd_key keys[NK];
    char names[NK][8];
    s_knames(NK, names, keys);
    long prevn = 0, snaps = 0, nonempty = 0;
    char why[512];
    for (;;) {
        struct pollfd pf = {a->stopfd, POLLIN, 0};
        bool last = poll(&pf, 1, 0) > 0;
        pd_result *r = NULL;
        rc = pd_get(s, NK, keys, &r, 0);
        TU_CHECK(rc == 0, "get: %s", pd_errmsg(s));
        long n = s_check_snapshot(r, seq, tmp, prevn, why, sizeof why);
        TU_CHECK(n >= 0, "snapshot %ld: %s", snaps, why);
        TU_CHECK(memcmp(prev, seq, (size_t)prevn * sizeof *seq) == 0,
                 "snapshot %ld does not extend the previous one", snaps);
        memcpy(prev, seq, (size_t)n * sizeof *seq);
        prevn = n;
        snaps++;
        nonempty += n > 0 && n < MAXREC;
        pd_result_free(&r);
        if (last) break;
    }
    TU_CHECK(prevn == MAXREC, "final snapshot has %ld records, want %d", prevn,
             MAXREC);
    fprintf(stderr, "reader: %ld snapshots, %ld taken mid-run\n", snaps,
            nonempty);
    free(seq);
    free(tmp);
    free(prev);
    pd_close(&s);
    return 0;
}

START_TEST(many_writers) {
    char *dir = tu_mkdtemp();
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/store", dir);
    pd_store *s = NULL;
    TU_OK(pd_file_open(&s, root, PD_FILE_CREATE), NULL);

    bool py = tu_have_python_partd();
    if (!py)
        fprintf(stderr,
                "many_writers: SKIP python writers (/usr/bin/python3 "
                "cannot import partd); using %d C writers\n",
                NW);
    int go[2], stop[2];
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(stop), 0);
    g_child_close[0] = go[1];
    g_child_close[1] = stop[1];
    g_nchild_close = 2;
    tu_child kids[NW + 1];
    pid_t pyk[NW];
    int npy = 0;
    wargs wa[NW];
    for (int w = 0; w < NW; w++) {
        wa[w] = (wargs){root, w, go[0]};
        if (py && w >= NW - 2) {
            char ws[16], nb[16], nk[16], gfd[16];
            snprintf(ws, sizeof ws, "%d", w);
            snprintf(nb, sizeof nb, "%d", NB);
            snprintf(nk, sizeof nk, "%d", NK);
            snprintf(gfd, sizeof gfd, "%d", go[0]);
            pyk[npy++] = s_spawn_py(-1, go[0], "writer.py", root, ws, nb, nk,
                                    gfd, (char *)NULL);
            kids[w].pid = -1;
        } else {
            kids[w] = s_spawn(s_c_writer, &wa[w]);
        }
    }
    rargs ra = {root, stop[0], go[0]};
    kids[NW] = s_spawn(s_reader, &ra);
    close(stop[0]);
    close(go[0]);
    double t0 = s_now();
    g_nchild_close = 0;
    close(go[1]); /* go */
    for (int w = 0; w < NW; w++)
        if (kids[w].pid > 0) s_wait_ok(kids[w], "C writer");
    for (int i = 0; i < npy; i++) {
        int st = tu_waitpid(pyk[i]);
        ck_assert_msg(st == 0, "python writer exited with %d", st);
    }
    double t1 = s_now();
    close(stop[1]);
    s_wait_ok(kids[NW], "reader");
    fprintf(stderr,
            "many_writers: %d writers x %d batches x %d keys in %.2fs\n", NW,
            NB, NK, t1 - t0);

    /* Final content: every record exactly once, contiguous, in order. */
    pd_key keys[NK];
    char names[NK][8];
    s_knames(NK, names, keys);
    pd_result *r = NULL;
    TU_OK(pd_get(s, NK, keys, &r, 0), s);
    rec *seq = calloc(MAXREC, sizeof *seq), *tmp = calloc(MAXREC, sizeof *tmp);
    char why[512];
    long n = s_check_snapshot(r, seq, tmp, 0, why, sizeof why);
    ck_assert_msg(n >= 0, "final: %s", why);
    ck_assert_int_eq(n, MAXREC);
    int count[NW] = {0};
    for (long i = 0; i < n; i++) count[seq[i].w]++;
    for (int w = 0; w < NW; w++)
        ck_assert_msg(count[w] == NB, "writer %d: %d records, want %d", w,
                      count[w], NB);
    pd_result_free(&r);
    free(seq);
    free(tmp);
    pd_close(&s);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ---------------------------------------------------------- fd limits */

enum { FD_NKEYS = 100000, FD_BATCH = 1000 };

typedef struct fdargs {
    const char *root;
    bool lower_after_open;
    int nkeys; /* a multiple of FD_BATCH */
} fdargs;

static int s_fd_child(void *arg) {
    fdargs *a = arg;
    pd_store *s = NULL;
    if (!a->lower_after_open)
        TU_CHECK(tu_limit_nofile(256) == 0, "setrlimit: %s", strerror(errno));
    int rc = pd_file_open(&s, a->root, PD_FILE_CREATE);
    TU_CHECK(rc == 0, "open: %s", pd_errmsg(NULL));
    if (a->lower_after_open)
        TU_CHECK(tu_limit_nofile(256) == 0, "setrlimit: %s", strerror(errno));
    pd_key *keys = calloc(FD_BATCH, sizeof *keys);
    pd_bytes *vals = calloc(FD_BATCH, sizeof *vals);
    char(*names)[16] = calloc(FD_BATCH, 16);
    char(*vb)[16] = calloc(FD_BATCH, 16);
    for (int round = 0; round < 2; round++) {
        for (int base = 0; base < a->nkeys; base += FD_BATCH) {
            for (int j = 0; j < FD_BATCH; j++) {
                int i = base + j;
                snprintf(names[j], 16, "f%06d", i);
                snprintf(vb[j], 16, "%c%d;", round ? 'b' : 'a', i);
                keys[j] = PD_KEY_STR(names[j]);
                vals[j] = PD_BYTES(vb[j], strlen(vb[j]));
            }
            rc = pd_append(s, FD_BATCH, keys, vals, 0);
            TU_CHECK(rc == 0, "round %d batch at %d: %s", round, base,
                     pd_errmsg(s));
        }
    }
    /* Sample. */
    for (int i = 0; i < a->nkeys; i += 997) {
        char name[16], want[40];
        snprintf(name, sizeof name, "f%06d", i);
        snprintf(want, sizeof want, "a%d;b%d;", i, i);
        pd_key k = PD_KEY_STR(name);
        pd_result *r = NULL;
        rc = pd_get(s, 1, &k, &r, 0);
        TU_CHECK(rc == 0, "get %s: %s", name, pd_errmsg(s));
        pd_bytes v = pd_result_value(r, 0);
        TU_CHECK(v.size == strlen(want) && !memcmp(v.data, want, v.size),
                 "key %s holds '%.*s', want '%s'", name, (int)v.size,
                 (const char *)v.data, want);
        pd_result_free(&r);
    }
    pd_keylist *kl = NULL;
    rc = pd_keys(s, &kl, 0);
    TU_CHECK(rc == 0, "keys: %s", pd_errmsg(s));
    TU_CHECK(pd_keylist_count(kl) == (size_t)a->nkeys,
             "keys lists %zu, want %d", pd_keylist_count(kl), a->nkeys);
    uint64_t total = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++)
        total += pd_keylist_size(kl, i);
    uint64_t want = 0;
    for (int i = 0; i < a->nkeys; i++) {
        char t[16];
        want += 2 * (uint64_t)snprintf(t, sizeof t, "a%d;", i);
    }
    TU_CHECK(total == want, "keys sizes sum to %llu, want %llu",
             (unsigned long long)total, (unsigned long long)want);
    pd_keylist_free(&kl);
    /* Still within the limit: a descriptor can be opened. */
    int fd = open("/dev/null", O_RDONLY);
    TU_CHECK(fd >= 0 && fd < 256, "open /dev/null -> %d", fd);
    close(fd);
    TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    free(keys);
    free(vals);
    free(names);
    free(vb);
    return 0;
}

/* Creating 100k files takes ~10 s on this machine's ext4 (the file system,
 * not the library: Python's os.open loop takes as long), so the variant
 * that only needs to overflow the descriptor cache uses fewer keys. */
static void s_fd_test(bool lower_after_open, int nkeys) {
    char *dir = tu_mkdtemp();
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/store", dir);
    fdargs a = {root, lower_after_open, nkeys};
    double t0 = s_now();
    s_wait_ok(s_spawn(s_fd_child, &a), "fd-limit child");
    fprintf(stderr, "fd_limit%s: 2 x %d keys in %.2fs\n",
            lower_after_open ? " (lowered after open)" : "", nkeys,
            s_now() - t0);
    tu_rmtree(dir);
    free(dir);
}

START_TEST(fd_limit) { s_fd_test(false, FD_NKEYS); }
END_TEST

START_TEST(fd_limit_lowered_after_open) { s_fd_test(true, 10000); }
END_TEST

/* ------------------------------------------------- Stale descriptors */

enum {
    STALE_C_DELETE,
    STALE_PY_DELETE,
    STALE_C_DROP,
    STALE_PY_DROP,
    STALE_C_DELETE_REAPPEND,
    STALE_C_ISET,
    STALE_PY_ISET,
    STALE_NVARIANTS
};
static const char *s_stale_names[] = {"C delete",
                                      "Python delete",
                                      "C drop",
                                      "Python drop (rmtree + mkdir)",
                                      "C delete then append",
                                      "C iset (rename over)",
                                      "Python iset (truncate)"};

typedef struct bargs {
    const char *root;
    int variant;
} bargs;

static int s_stale_b(void *arg) {
    bargs *a = arg;
    pd_store *s = NULL;
    int rc = pd_file_open(&s, a->root, 0);
    TU_CHECK(rc == 0, "open: %s", pd_errmsg(NULL));
    pd_bytes tp[] = {PD_BYTES("d", 1), PD_BYTES("k", 1)};
    pd_key keys[] = {PD_KEY_STR("k"), PD_KEY_TUPLE(tp, 2)};
    if (a->variant == STALE_C_DROP) {
        rc = pd_drop(s, 0);
        TU_CHECK(rc == 0, "drop: %s", pd_errmsg(s));
    } else if (a->variant == STALE_C_ISET) {
        pd_bytes v[] = {PD_BYTES("other", 5), PD_BYTES("other", 5)};
        rc = pd_iset(s, 2, keys, v, 0);
        TU_CHECK(rc == 0, "iset: %s", pd_errmsg(s));
    } else {
        rc = pd_delete(s, 2, keys, 0);
        TU_CHECK(rc == 0, "delete: %s", pd_errmsg(s));
    }
    if (a->variant == STALE_C_DELETE_REAPPEND) {
        pd_bytes v[] = {PD_BYTES("other", 5), PD_BYTES("other", 5)};
        rc = pd_append(s, 2, keys, v, 0);
        TU_CHECK(rc == 0, "append: %s", pd_errmsg(s));
    }
    TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

/* Process A (this one) keeps a handle with cached descriptors while
 * process B changes the directory; A's next append must land in the
 * store's current file, not in an unlinked one. */
START_TEST(stale_descriptors) {
    int v = _i;
    const char *name = s_stale_names[v];
    bool py = v == STALE_PY_DELETE || v == STALE_PY_DROP || v == STALE_PY_ISET;
    if (py && !tu_have_python_partd()) {
        fprintf(stderr, "stale_descriptors[%s]: SKIP: no python partd\n", name);
        return;
    }
    char *dir = tu_mkdtemp();
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/store", dir);
    pd_store *a = NULL;
    TU_OK(pd_file_open(&a, root, PD_FILE_CREATE), NULL);
    pd_bytes tp[] = {PD_BYTES("d", 1), PD_BYTES("k", 1)};
    pd_key keys[] = {PD_KEY_STR("k"), PD_KEY_TUPLE(tp, 2),
                     PD_KEY_STR("bystander")};
    pd_bytes old[] = {PD_BYTES("old", 3), PD_BYTES("old", 3),
                      PD_BYTES("by", 2)};
    TU_OK(pd_append(a, 3, keys, old, 0), a);
    TU_OK(pd_append(a, 2, keys, old, 0), a); /* descriptors now cached */
    tu_expect_as(a, keys[0], "oldold", name);

    /* B acts while A's handle stays open. */
    if (py) {
        int st = v == STALE_PY_DROP ? s_py_op(NULL, 0, root, "drop", NULL, NULL)
                 : v == STALE_PY_ISET
                     ? s_py_op(NULL, 0, root, "iset", "k", "other") |
                           s_py_op(NULL, 0, root, "iset", "d,k", "other")
                     : s_py_op(NULL, 0, root, "delete", "k", "d,k");
        ck_assert_msg(st == 0, "python %s exited %d", name, st);
    } else {
        bargs b = {root, v};
        s_wait_ok(s_spawn(s_stale_b, &b), name);
    }

    bool dropped = v == STALE_C_DROP || v == STALE_PY_DROP;
    const char *base =
        v == STALE_C_DELETE_REAPPEND || v == STALE_C_ISET || v == STALE_PY_ISET
            ? "other"
            : "";
    char want[32];
    snprintf(want, sizeof want, "%snew", base);
    tu_expect_as(a, keys[0], base, name);
    pd_bytes nv[] = {PD_BYTES("new", 3), PD_BYTES("new", 3)};
    TU_OK(pd_append(a, 2, keys, nv, 0), a);
    tu_expect_as(a, keys[0], want, name);
    tu_expect_as(a, keys[1], want, name);
    tu_expect_as(a, keys[2], dropped ? "" : "by", name);

    /* What another process sees: a fresh C handle and Python. */
    pd_store *c = NULL;
    TU_OK(pd_file_open(&c, root, 0), NULL);
    tu_expect_as(c, keys[0], want, "fresh handle");
    tu_expect_as(c, keys[1], want, "fresh handle");
    pd_close(&c);
    if (tu_have_python_partd()) {
        char out[64];
        ck_assert_int_eq(s_py_op(out, sizeof out, root, "get", "k", NULL), 0);
        ck_assert_msg(!strcmp(out, want), "%s: python reads '%s', want '%s'",
                      name, out, want);
        ck_assert_int_eq(s_py_op(out, sizeof out, root, "get", "d,k", NULL), 0);
        ck_assert_msg(!strcmp(out, want), "%s: python reads '%s', want '%s'",
                      name, out, want);
    }

    /* After Python's drop, the lock file is a new one: A's lock must still
     * exclude Python, i.e. A must lock the file that is there now. */
    if (v == STALE_PY_DROP || v == STALE_C_DROP) {
        TU_OK(pd_lock(a), a);
        pid_t pid = -1;
        bool pyl = tu_have_python_partd();
        tu_child ck = {-1, -1};
        bargs b = {root, STALE_C_DELETE_REAPPEND};
        if (pyl)
            pid = s_spawn_py(-1, -1, "op.py", root, "append", "z", "py",
                             (char *)NULL);
        else
            ck = s_spawn(s_stale_b, &b);
        s_sleep_ms(400);
        char zpath[PATH_MAX + 8];
        snprintf(zpath, sizeof zpath, "%s/%s", root, pyl ? "z" : "k");
        size_t zl = 0;
        char *z = tu_read_file(zpath, &zl);
        bool early = pyl ? z != NULL : (z && strcmp(z, want) != 0);
        free(z);
        TU_OK(pd_unlock(a), a);
        if (pyl)
            ck_assert_int_eq(tu_waitpid(pid), 0);
        else
            s_wait_ok(ck, "locked writer");
        ck_assert_msg(!early,
                      "%s: another process wrote while A held pd_lock (A "
                      "locks a stale .lock?)",
                      name);
    }
    TU_OK(pd_close(&a), NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------ Threads */

enum { TH_N = 4, TH_B = 300, TH_K = 8 };

typedef struct targ {
    pd_store *s;
    int t;
    int failed;
    char why[512];
} targ;

static void *s_thread_writer(void *arg) {
    targ *a = arg;
    pd_key keys[TH_K];
    pd_bytes vals[TH_K];
    char names[TH_K][8], recs[TH_K][32];
    s_knames(TH_K, names, keys);
    for (int b = 0; b < TH_B && !a->failed; b++) {
        for (int k = 0; k < TH_K; k++) {
            int len =
                snprintf(recs[k], sizeof recs[k], "%d:%d:%d;", a->t, b, k);
            vals[k] = PD_BYTES(recs[k], (size_t)len);
        }
        int rc = pd_append(a->s, TH_K, keys, vals, 0);
        if (rc) {
            a->failed = 1;
            snprintf(a->why, sizeof a->why, "append: %s", pd_errmsg(a->s));
        }
        if (b % 50 == 0) { /* reads interleaved with writes */
            pd_result *r = NULL;
            rc = pd_get(a->s, TH_K, keys, &r, 0);
            if (rc) {
                a->failed = 1;
                snprintf(a->why, sizeof a->why, "get: %s", pd_errmsg(a->s));
            }
            pd_result_free(&r);
        }
    }
    return NULL;
}

/* Every key holds every record once, the same sequence in every key. */
static void s_check_threads(pd_store *s) {
    pd_key keys[TH_K];
    char names[TH_K][8];
    s_knames(TH_K, names, keys);
    pd_result *r = NULL;
    TU_OK(pd_get(s, TH_K, keys, &r, 0), s);
    rec *seq = calloc(TH_N * TH_B, sizeof *seq);
    rec *tmp = calloc(TH_N * TH_B, sizeof *tmp);
    char why[256];
    long n0 = 0;
    for (int k = 0; k < TH_K; k++) {
        pd_bytes v = pd_result_value(r, (size_t)k);
        long n = s_parse(v.data, v.size, k, k ? tmp : seq, TH_N * TH_B, why,
                         sizeof why);
        ck_assert_msg(n >= 0, "key k%d: %s", k, why);
        if (k == 0)
            n0 = n;
        else
            ck_assert_msg(n == n0 && !memcmp(seq, tmp, (size_t)n * sizeof *seq),
                          "key k%d differs from k0: a batch was split", k);
    }
    ck_assert_int_eq(n0, TH_N * TH_B);
    int last[TH_N];
    for (int t = 0; t < TH_N; t++) last[t] = -1;
    for (long i = 0; i < n0; i++) {
        ck_assert(seq[i].w >= 0 && seq[i].w < TH_N);
        ck_assert_int_eq(seq[i].b, last[seq[i].w] + 1);
        last[seq[i].w] = seq[i].b;
    }
    pd_result_free(&r);
    free(seq);
    free(tmp);
}

static void s_run_threads(pd_store **handles, int nh) {
    pthread_t th[TH_N];
    targ ta[TH_N];
    for (int t = 0; t < TH_N; t++) {
        ta[t] = (targ){handles[t % nh], t, 0, ""};
        ck_assert_int_eq(pthread_create(&th[t], NULL, s_thread_writer, &ta[t]),
                         0);
    }
    for (int t = 0; t < TH_N; t++) {
        pthread_join(th[t], NULL);
        ck_assert_msg(!ta[t].failed, "thread %d: %s", t, ta[t].why);
    }
}

START_TEST(threads_one_handle) {
    char *dir = tu_mkdtemp();
    pd_store *s = NULL;
    TU_OK(pd_file_open(&s, dir, 0), NULL);
    s_run_threads(&s, 1);
    s_check_threads(s);
    pd_close(&s);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(threads_two_handles) {
    char *dir = tu_mkdtemp();
    pd_store *h[2] = {NULL, NULL};
    TU_OK(pd_file_open(&h[0], dir, 0), NULL);
    TU_OK(pd_file_open(&h[1], dir, 0), NULL);
    s_run_threads(h, 2);
    s_check_threads(h[0]);
    s_check_threads(h[1]);
    pd_close(&h[0]);
    pd_close(&h[1]);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

typedef struct lockargs {
    pd_store *h1, *h2;
    volatile int stage; /* for the holder: 1 = locked, 2 = release */
    volatile int done;
    int rc;
    char why[512];
} lockargs;

/* Holds pd_lock on h1 and appends through h2 in the same thread. */
static void *s_lock_then_other(void *arg) {
    lockargs *a = arg;
    pd_key k = PD_KEY_STR("cross");
    pd_bytes v = PD_BYTES("x", 1);
    a->rc = pd_lock(a->h1);
    if (a->rc == 0) {
        a->rc = pd_append(a->h2, 1, &k, &v, 0);
        if (a->rc) snprintf(a->why, sizeof a->why, "%s", pd_errmsg(a->h2));
        pd_result *r = NULL;
        if (a->rc == 0) a->rc = pd_get(a->h2, 1, &k, &r, 0);
        pd_result_free(&r);
        if (a->rc == 0) a->rc = pd_append(a->h1, 1, &k, &v, PD_NOLOCK);
        int urc = pd_unlock(a->h1);
        if (a->rc == 0) a->rc = urc;
    }
    a->done = 1;
    return NULL;
}

static void *s_holder(void *arg) {
    lockargs *a = arg;
    a->rc = pd_lock(a->h1);
    a->stage = 1;
    while (a->stage != 2) s_sleep_ms(5);
    pd_unlock(a->h1);
    return NULL;
}

static void *s_blocked_writer(void *arg) {
    lockargs *a = arg;
    pd_key k = PD_KEY_STR("blocked");
    pd_bytes v = PD_BYTES("y", 1);
    a->rc = pd_append(a->h2, 1, &k, &v, 0);
    a->done = 1;
    return NULL;
}

static int s_child_append(void *arg) {
    const char *root = arg;
    pd_store *s = NULL;
    TU_CHECK(pd_file_open(&s, root, 0) == 0, "open: %s", pd_errmsg(NULL));
    pd_key k = PD_KEY_STR("proc");
    pd_bytes v = PD_BYTES("p", 1);
    TU_CHECK(pd_append(s, 1, &k, &v, 0) == 0, "append: %s", pd_errmsg(s));
    pd_close(&s);
    return 0;
}

START_TEST(lock_across_handles) {
    char *dir = tu_mkdtemp();
    pd_store *h1 = NULL, *h2 = NULL;
    TU_OK(pd_file_open(&h1, dir, 0), NULL);
    TU_OK(pd_file_open(&h2, dir, 0), NULL);

    /* 1. One thread holds the lock through h1 and calls h2: no deadlock. */
    lockargs a = {h1, h2, 0, 0, 0, ""};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, s_lock_then_other, &a), 0);
    double t0 = s_now();
    while (!a.done && s_now() - t0 < 10) s_sleep_ms(10);
    ck_assert_msg(a.done, "deadlock: pd_append on handle 2 while this thread "
                          "holds pd_lock on handle 1 (waited 10 s)");
    pthread_join(t, NULL);
    ck_assert_msg(a.rc == 0, "rc %d: %s", a.rc, a.why);
    tu_expect_as(h1, PD_KEY_STR("cross"), "xx", "cross-handle appends");

    /* 2. While one thread holds h1's lock, another thread's append through
     * h2 waits for it. */
    lockargs b = {h1, h2, 0, 0, 0, ""};
    lockargs c = {h1, h2, 0, 0, 0, ""};
    pthread_t th, tw;
    ck_assert_int_eq(pthread_create(&th, NULL, s_holder, &b), 0);
    while (b.stage != 1) s_sleep_ms(5);
    ck_assert_int_eq(b.rc, 0);
    ck_assert_int_eq(pthread_create(&tw, NULL, s_blocked_writer, &c), 0);
    s_sleep_ms(300);
    int early = c.done;
    b.stage = 2;
    pthread_join(th, NULL);
    pthread_join(tw, NULL);
    ck_assert_msg(!early, "a thread appended through handle 2 while another "
                          "thread held pd_lock on handle 1");
    ck_assert_int_eq(c.rc, 0);

    /* 3. While this process holds the lock, another process waits. */
    TU_OK(pd_lock(h2), h2);
    tu_child ck = s_spawn(s_child_append, dir);
    s_sleep_ms(300);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/proc", dir);
    bool landed = access(path, F_OK) == 0;
    TU_OK(pd_unlock(h2), h2);
    s_wait_ok(ck, "child append");
    ck_assert_msg(!landed, "another process appended while pd_lock was held");
    tu_expect_as(h1, PD_KEY_STR("proc"), "p", "child append");

    pd_close(&h1);
    pd_close(&h2);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A handle inherited through fork is usable in the child (the header says
 * the child re-opens its lock and descriptors). */
static pd_store *g_inherited;
static int s_fork_child(void *arg) {
    (void)arg;
    pd_key k = PD_KEY_STR("inh");
    pd_bytes v = PD_BYTES("child;", 6);
    for (int i = 0; i < 50; i++)
        TU_CHECK(pd_append(g_inherited, 1, &k, &v, 0) == 0, "append: %s",
                 pd_errmsg(g_inherited));
    TU_CHECK(pd_close(&g_inherited) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

START_TEST(fork_inherited_handle) {
    char *dir = tu_mkdtemp();
    TU_OK(pd_file_open(&g_inherited, dir, 0), NULL);
    pd_key k = PD_KEY_STR("inh");
    tu_append1(g_inherited, k, "parent;", 7);
    tu_child ck = s_spawn(s_fork_child, NULL);
    pd_bytes v = PD_BYTES("parent;", 7);
    for (int i = 0; i < 50; i++)
        TU_OK(pd_append(g_inherited, 1, &k, &v, 0), g_inherited);
    s_wait_ok(ck, "child using the inherited handle");
    size_t len;
    char *got = tu_get1(g_inherited, &k, &len);
    ck_assert_uint_eq(len, 51 * 7 + 50 * 6);
    free(got);
    pd_close(&g_inherited);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

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
    char *dir = tu_mkdtemp();
    char root[4096];
    snprintf(root, sizeof root, "%s/store", dir);
    pd_store *s = NULL;
    TU_OK(pd_file_open(&s, root, PD_FILE_CREATE), NULL);
    long acked[KILL_ROUNDS];
    srand(4242);
    for (int round = 0; round < KILL_ROUNDS; round++) {
        int pfd[2];
        ck_assert_int_eq(pipe(pfd), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(pfd[0]);
            s_kill_writer(root, round, pfd[1]);
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
    TU_OK(pd_file_open(&s, root, 0), NULL);
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
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("test_concurrency");
    TCase *tc = tcase_create("processes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, many_writers);
    tcase_add_test(tc, fd_limit);
    tcase_add_test(tc, fd_limit_lowered_after_open);
    tcase_add_loop_test(tc, stale_descriptors, 0, STALE_NVARIANTS);
    tcase_add_test(tc, fork_inherited_handle);
    tcase_add_test(tc, kill9_loses_nothing_acknowledged);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, threads_one_handle);
    tcase_add_test(tc, threads_two_handles);
    tcase_add_test(tc, lock_across_handles);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
