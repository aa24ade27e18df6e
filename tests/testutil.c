/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* Shared helpers for the Check suites. */
#include "testutil.h"
#ifndef PARTD_TEST_PYTHON
#define PARTD_TEST_PYTHON "/usr/bin/python3"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *tu_mkdtemp(void) {
    const char *t = getenv("TMPDIR");
    char *p = NULL;
    if (asprintf(&p, "%s/pdtest-XXXXXX", t && *t ? t : "/tmp") < 0) return NULL;
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static int s_rm(const char *path, const struct stat *sb, int flag,
                struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D) {
        chmod(path, 0700);
        return rmdir(path) == 0 || errno == ENOENT ? 0 : 0;
    }
    unlink(path);
    return 0;
}

int tu_rmtree(const char *path) {
    if (!path) return 0;
    /* Make every directory writable first so a test that removed
     * permissions can still clean up. */
    tu_system("chmod -R u+rwx '%s' 2>/dev/null", path);
    return nftw(path, s_rm, 64, FTW_DEPTH | FTW_PHYS);
}

void tu_tmp_make(tu_tmp *t) {
    t->dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(t->dir);
    int n = snprintf(t->root, sizeof t->root, "%s/store", t->dir);
    ck_assert_msg(n > 0 && (size_t)n < sizeof t->root, "path too long: %s",
                  t->dir);
}

void tu_tmp_remove(tu_tmp *t) {
    tu_rmtree(t->dir);
    free(t->dir);
    t->dir = NULL;
}

char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    size_t r;
    while ((r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap + 1);
        }
    }
    fclose(f);
    b[n] = 0;
    if (len) *len = n;
    return b;
}

int tu_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

int tu_system(const char *fmt, ...) {
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    if (rc < 0) return -1;
    rc = system(cmd);
    free(cmd);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

bool tu_have_python_partd(void) {
    static int have = -1;
    if (have < 0)
        have = access(PARTD_TEST_PYTHON, X_OK) == 0 &&
               tu_system("%s -c 'import partd' 2>/dev/null",
                         PARTD_TEST_PYTHON) == 0;
    return have == 1;
}

pd_store *tu_dict(void) {
    pd_store *d = NULL;
    int rc = pd_dict_open(&d);
    ck_assert_msg(rc == 0, "pd_dict_open -> %d: %s", rc, pd_errmsg(NULL));
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(pd_store_kind(d), "dict");
    return d;
}

pd_store *tu_codec_file(const char *root, unsigned file_flags,
                        const char *codec, int level) {
    pd_store *f = NULL, *s = NULL;
    int rc = pd_file_open(&f, root, file_flags);
    ck_assert_msg(rc == 0, "file open %s -> %d: %s", root, rc, pd_errmsg(NULL));
    rc = pd_compress_open(&s, &f, codec, level, 0);
    ck_assert_msg(rc == 0, "%s open over %s -> %d: %s", codec, root, rc,
                  pd_errmsg(NULL));
    ck_assert_ptr_null(f);
    return s;
}

char *tu_get1(pd_store *s, const pd_key *k, size_t *len) {
    char *out = NULL;
    int rc = tu_fetch1(s, *k, &out, len);
    ck_assert_msg(rc == 0, "get: %s", pd_errmsg(s));
    return out;
}

void tu_append1(pd_store *s, pd_key k, const void *v, size_t n) {
    pd_bytes b = {v, n};
    int rc = pd_append(s, 1, &k, &b, 0);
    ck_assert_msg(rc == 0, "append: %s", pd_errmsg(s));
}

int tu_run_cases(const char *suite, const tu_case *cases, size_t n,
                 double timeout, int loop) {
    return tu_run_cases_fixture(suite, cases, n, timeout, loop, NULL, NULL);
}

int tu_run_cases_fixture(const char *suite, const tu_case *cases, size_t n,
                         double timeout, int loop, SFun setup, SFun teardown) {
    Suite *s = suite_create(suite);
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(cases[i].name);
        if (setup || teardown) tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, timeout);
        int times = cases[i].loop > 0 ? cases[i].loop : loop;
        if (times > 0)
            tcase_add_loop_test(tc, cases[i].fn, 0, times);
        else
            tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return tu_run(s);
}

int tu_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ------------------------------------------------- Reading and listing */

int tu_fetch1(pd_store *s, pd_key k, char **out, size_t *len) {
    pd_result *r = NULL;
    int rc = pd_get(s, 1, &k, &r, 0);
    pd_bytes v = rc == 0 ? pd_result_value(r, 0) : (pd_bytes){NULL, 0};
    *out = malloc(v.size + 1);
    ck_assert_ptr_nonnull(*out);
    if (v.size) memcpy(*out, v.data, v.size);
    (*out)[v.size] = 0;
    if (len) *len = v.size;
    pd_result_free(&r);
    return rc;
}

void tu_hello_ab(pd_store *s, pd_key a, pd_key b) {
    tu_append1(s, a, "Hello ", 6);
    tu_append1(s, b, "x", 1);
    tu_append1(s, a, "World!", 6);
    tu_expect_str(s, a, "Hello World!");
    tu_expect_str(s, b, "x");
    tu_expect_str(s, PD_KEY_STR("none"), "");
}

void tu_expect(pd_store *s, pd_key k, const void *want, size_t wlen) {
    size_t len = 0;
    char *got = tu_get1(s, &k, &len);
    char ks[PD__KEYSHORT_MAX];
    ck_assert_msg(len == wlen && (wlen == 0 || memcmp(got, want, wlen) == 0),
                  "key %s: got %zu bytes '%.*s', want %zu bytes '%.*s'",
                  pd__key_short(&k, ks), len, (int)(len < 64 ? len : 64), got,
                  wlen, (int)(wlen < 64 ? wlen : 64),
                  wlen ? (const char *)want : "");
    free(got);
}

void tu_expect_str(pd_store *s, pd_key k, const char *want) {
    tu_expect(s, k, want, strlen(want));
}

void tu_expect_as(pd_store *s, pd_key k, const char *want, const char *what) {
    char *got;
    size_t len;
    int rc = tu_fetch1(s, k, &got, &len);
    ck_assert_msg(rc == 0, "%s: get failed: %s", what, pd_errmsg(s));
    ck_assert_msg(len == strlen(want) && !memcmp(got, want, len),
                  "%s: got '%s', want '%s'", what, got, want);
    free(got);
}

size_t tu_nkeys(pd_store *s) {
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(s, &kl, 0), s);
    size_t n = pd_keylist_count(kl);
    pd_keylist_free(&kl);
    return n;
}

long long tu_listed_size(pd_store *s, pd_key k) {
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(s, &kl, 0), s);
    pd__pkey want, got;
    ck_assert_int_eq(pd__pkey_set(&want, &k), 0);
    long long size = -1;
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key ki;
        ck_assert_int_eq(pd_keylist_key(kl, i, &ki), 0);
        ck_assert_int_eq(pd__pkey_set(&got, &ki), 0);
        if (got.len == want.len && memcmp(got.p, want.p, got.len) == 0) {
            ck_assert_int_eq(size, -1); /* listed once */
            size = (long long)pd_keylist_size(kl, i);
        }
        pd__pkey_free(&got);
    }
    pd__pkey_free(&want);
    pd_keylist_free(&kl);
    return size;
}

void tu_file_is(const char *path, const char *want) {
    size_t len;
    char *got = tu_read_file(path, &len);
    ck_assert_msg(got && len == strlen(want) && !memcmp(got, want, len),
                  "%s holds '%s', want '%s'", path, got ? got : "(missing)",
                  want);
    free(got);
}

/* --------------------------------------------------- Child processes */

int tu_child_errfd = -1;

void tu_child_fail(int line, const char *fmt, ...) {
    char buf[2048];
    int n =
        snprintf(buf, sizeof buf, "[child %d, line %d] ", (int)getpid(), line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (tu_child_errfd >= 0 && write(tu_child_errfd, buf, strlen(buf)) < 0) {
        /* nothing more to do */
    }
    fprintf(stderr, "%s\n", buf);
    _exit(1);
}

#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif

#ifdef TU_ASAN
/* Whether thread `tid` of this process sleeps in the kernel: state S with
 * a system call under way (the first field of /proc/.../syscall is its
 * number; "running" when it runs in user space). */
static bool s_thread_asleep(const char *tid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) return true; /* gone */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *paren = strrchr(buf, ')');
    if (!paren || paren[1] != ' ' || paren[2] != 'S') return false;
    snprintf(path, sizeof path, "/proc/self/task/%s/syscall", tid);
    f = fopen(path, "r");
    if (!f) return true;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return n > 0 && buf[0] >= '0' && buf[0] <= '9';
}

/* ASan's allocator (GCC 12's libasan) takes no locks around fork(): a
 * child forked while another thread of the parent (a server's, or ZeroMQ's
 * I/O thread) holds one of its size-class locks deadlocks at its first
 * allocation of that class.  glibc's malloc is fork-safe, so only the ASan
 * build waits, for up to 2 s, until every other thread sleeps in a system
 * call (twice in a row, 1 ms apart) before forking. */
static void s_quiesce(void) {
    pid_t self = gettid();
    int calm = 0;
    for (int round = 0; round < 2000 && calm < 2; round++) {
        DIR *d = opendir("/proc/self/task");
        if (!d) return;
        bool all = true;
        struct dirent *de;
        while (all && (de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.' || atoi(de->d_name) == (int)self) continue;
            all = s_thread_asleep(de->d_name);
        }
        closedir(d);
        calm = all ? calm + 1 : 0;
        if (calm < 2) usleep(1000);
    }
}
#else
static void s_quiesce(void) {}
#endif

tu_child tu_child_spawn(tu_child_fn fn, void *arg, const int *close_fds,
                        int nclose) {
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    fflush(NULL);
    s_quiesce();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        for (int i = 0; i < nclose; i++) close(close_fds[i]);
        tu_child_errfd = p[1];
        _exit(fn(arg));
    }
    close(p[1]);
    return (tu_child){pid, p[0]};
}

int tu_child_wait(tu_child c, char *msg, size_t cap) {
    size_t len = 0;
    ssize_t r;
    while (len + 1 < cap && (r = read(c.errfd, msg + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    msg[len] = 0;
    close(c.errfd);
    return tu_waitpid(c.pid);
}

int tu_waitpid(pid_t pid) {
    int st;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {}
    if (r < 0) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

/* ------------------------------------------------------------ Threads */

typedef struct tu_targ {
    pd_store *s;
    int id, rounds;
    char why[512]; /* why the thread failed, "" when it did not */
} tu_targ;

static void *s_own_shared_worker(void *p) {
    tu_targ *a = p;
    char own[16];
    snprintf(own, sizeof own, "own%d", a->id);
    int every = a->rounds / 10 > 0 ? a->rounds / 10 : 1;
    for (int i = 0; i < a->rounds; i++) {
        char rec[16];
        /* Fixed-size record: thread id and sequence number. */
        snprintf(rec, sizeof rec, "%d:%06d;", a->id, i);
        pd_key ks[2] = {PD_KEY_STR(own), PD_KEY_STR("shared")};
        pd_bytes vs[2] = {{rec, 9}, {rec, 9}};
        if (pd_append(a->s, 2, ks, vs, 0) != 0) {
            snprintf(a->why, sizeof a->why, "append %d: %s", i,
                     pd_errmsg(a->s));
            return a;
        }
        if (i % every == 0) { /* reads interleaved with writes */
            pd_result *r = NULL;
            if (pd_get(a->s, 2, ks, &r, 0) != 0) {
                snprintf(a->why, sizeof a->why, "get %d: %s", i,
                         pd_errmsg(a->s));
                return a;
            }
            size_t got = pd_result_value(r, 0).size;
            pd_result_free(&r);
            if (got != (size_t)(i + 1) * 9) {
                snprintf(a->why, sizeof a->why,
                         "after append %d %s holds %zu bytes, want %zu", i, own,
                         got, (size_t)(i + 1) * 9);
                return a;
            }
        }
    }
    return NULL;
}

void tu_threads_own_shared(pd_store *s, int nthreads, int rounds) {
    ck_assert(nthreads > 0 && nthreads <= TU_THREADS_MAX);
    ck_assert(rounds > 0 && rounds < 1000000);
    pthread_t th[TU_THREADS_MAX];
    tu_targ args[TU_THREADS_MAX];
    for (int t = 0; t < nthreads; t++) {
        args[t] = (tu_targ){s, t, rounds, ""};
        ck_assert_int_eq(
            pthread_create(&th[t], NULL, s_own_shared_worker, &args[t]), 0);
    }
    for (int t = 0; t < nthreads; t++) {
        void *ret = NULL;
        pthread_join(th[t], &ret);
        ck_assert_msg(ret == NULL, "thread %d failed: %s", t, args[t].why);
    }
    /* Each thread's own key: its records in order. */
    for (int t = 0; t < nthreads; t++) {
        char own[16];
        snprintf(own, sizeof own, "own%d", t);
        size_t len = 0;
        char *got = tu_get1(s, &PD_KEY_STR(own), &len);
        ck_assert_uint_eq(len, (size_t)rounds * 9);
        for (int i = 0; i < rounds; i++) {
            char rec[16];
            snprintf(rec, sizeof rec, "%d:%06d;", t, i);
            ck_assert_msg(memcmp(got + (size_t)i * 9, rec, 9) == 0,
                          "%s: record %d is not '%s'", own, i, rec);
        }
        free(got);
    }
    /* The shared key: whole records, each thread's in its order. */
    size_t len = 0;
    char *got = tu_get1(s, &PD_KEY_STR("shared"), &len);
    ck_assert_uint_eq(len, (size_t)nthreads * rounds * 9);
    int next[TU_THREADS_MAX] = {0};
    for (size_t off = 0; off < len; off += 9) {
        int t = got[off] - '0';
        ck_assert(t >= 0 && t < nthreads);
        ck_assert_int_eq(atoi(got + off + 2), next[t]);
        ck_assert_int_eq(got[off + 8], ';');
        next[t]++;
    }
    for (int t = 0; t < nthreads; t++) ck_assert_int_eq(next[t], rounds);
    free(got);
}

/* ------------------------------------------------- Valgrind and scale */

#include <sys/resource.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TU_HAVE_VALGRIND_H 1
#endif
#endif

bool tu_under_valgrind(void) {
#ifdef TU_HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND) return true;
#endif
    const char *e = getenv("PARTD_TEST_VALGRIND");
    return e && strcmp(e, "1") == 0;
}

int tu_limit_nofile(unsigned long n) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    rl.rlim_cur = (rlim_t)n;
    if (!tu_under_valgrind()) rl.rlim_max = (rlim_t)n;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

bool tu_oom_child(tu_child_fn fn, void *arg) {
#if defined(__SANITIZE_ADDRESS__)
    (void)fn;
    (void)arg;
    return false;
#else
    if (tu_under_valgrind()) return false;
    tu_child c = tu_child_spawn(fn, arg, NULL, 0);
    char msg[1024];
    int st = tu_child_wait(c, msg, sizeof msg);
    ck_assert_msg(st == 0, "child exited %d: %s", st, msg);
    return true;
#endif
}
