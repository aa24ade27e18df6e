/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* Shared helpers for the Check suites. */
#ifndef PARTD_TESTUTIL_H
#define PARTD_TESTUTIL_H

#include "core/internal.h"
#include <check.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/types.h>

/* A fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
char *tu_mkdtemp(void);
/* rm -rf path (no symlinks followed).  0 on success. */
int tu_rmtree(const char *path);
/* A fresh directory (tu_mkdtemp) and the root of a store inside it, made
 * and removed (rm -rf, freed) by tu_tmp_make and tu_tmp_remove. */
typedef struct tu_tmp {
    char *dir;
    char root[PATH_MAX]; /* dir/store, not created */
} tu_tmp;
void tu_tmp_make(tu_tmp *t);
void tu_tmp_remove(tu_tmp *t);
/* Reads a whole file into a malloc'd buffer; NULL if missing. */
char *tu_read_file(const char *path, size_t *len);
/* Writes a file (creating/truncating).  0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);
/* True when /usr/bin/python3 can import partd. */
bool tu_have_python_partd(void);
/* Runs a shell command; returns its exit status (or -1). */
int tu_system(const char *fmt, ...) PD__PRINTF(1, 2);

/* Opens a new Dict; fails the test unless it opens as a "dict". */
pd_store *tu_dict(void);
/* A codec layer (codec, level) over the File store at root, opened with
 * file_flags; fails the test, naming root and codec, unless both open. */
pd_store *tu_codec_file(const char *root, unsigned file_flags,
                        const char *codec, int level);
/* Gets one key as a malloc'd NUL-terminated copy (len in *len). */
char *tu_get1(pd_store *s, const pd_key *k, size_t *len);
/* Appends one value to one key; aborts the test on error. */
void tu_append1(pd_store *s, pd_key k, const void *v, size_t n);

/* Runs a suite with the CK_RUN_SUITE/CK_RUN_CASE environment respected;
 * returns the process exit status. */
int tu_run(Suite *s);

/* One Check test, run as a case of its own (so CK_RUN_CASE can pick it);
 * loop > 0: run once for each _i in [0, loop), whatever tu_run_cases's
 * loop says. */
typedef struct tu_case {
    const char *name;
    const TTest *fn;
    int loop;
} tu_case;
/* Builds suite `suite` from cases[0..n), each with `timeout` seconds (and,
 * when loop > 0, run once for each _i in [0, loop) unless the case has a
 * loop of its own), and runs it (tu_run). */
int tu_run_cases(const char *suite, const tu_case *cases, size_t n,
                 double timeout, int loop);
/* tu_run_cases with a checked fixture: setup before and teardown after
 * each test, in its process (either may be NULL). */
int tu_run_cases_fixture(const char *suite, const tu_case *cases, size_t n,
                         double timeout, int loop, SFun setup, SFun teardown);
/* tu_run_cases and tu_run_cases_fixture over a whole array of cases (its
 * length computed here). */
#define TU_RUN_CASES(suite, cases, timeout, loop)                              \
    tu_run_cases(suite, cases, sizeof(cases) / sizeof((cases)[0]), timeout,    \
                 loop)
#define TU_RUN_CASES_FIXTURE(suite, cases, timeout, loop, setup, teardown)     \
    tu_run_cases_fixture(suite, cases, sizeof(cases) / sizeof((cases)[0]),     \
                         timeout, loop, setup, teardown)

/* Defines the sanitizers' default options (once per test program) so that
 * malloc returns NULL instead of aborting when a test asks for more than it
 * can have: the NOMEM tests ask for 2^62 bytes. */
#define TU_ALLOCATOR_MAY_RETURN_NULL()                                         \
    __attribute__((visibility("default"), used)) const char *                  \
    __asan_default_options(void);                                              \
    const char *__asan_default_options(void) {                                 \
        return "allocator_may_return_null=1";                                  \
    }                                                                          \
    __attribute__((visibility("default"), used)) const char *                  \
    __tsan_default_options(void);                                              \
    const char *__tsan_default_options(void) {                                 \
        return "allocator_may_return_null=1";                                  \
    }

#define TU_OK(expr, store)                                                     \
    do {                                                                       \
        int tu_rc_ = (expr);                                                   \
        ck_assert_msg(tu_rc_ == 0, "%s -> %d: %s", #expr, tu_rc_,              \
                      pd_errmsg(store));                                       \
    } while (0)

/* ------------------------------------------------- Reading and listing */

/* Reads key k into a malloc'd NUL-terminated copy (*out; its length in *len
 * when len != NULL) without asserting; returns the pd_get code, with an
 * empty copy on error. */
int tu_fetch1(pd_store *s, pd_key k, char **out, size_t *len);
/* Appends "Hello " to key a, "x" to key b, then "World!" to a (three
 * calls, 13 bytes), and asserts that a, b and an absent key read back as
 * "Hello World!", "x" and "". */
void tu_hello_ab(pd_store *s, pd_key a, pd_key b);
/* Asserts that key k holds exactly (want, wlen). */
void tu_expect(pd_store *s, pd_key k, const void *want, size_t wlen);
/* Asserts that key k holds exactly the string want. */
void tu_expect_str(pd_store *s, pd_key k, const char *want);
/* Asserts that key k can be read and holds exactly the string want; the
 * failure message starts with `what` and shows both values. */
void tu_expect_as(pd_store *s, pd_key k, const char *want, const char *what);
/* Number of keys pd_keys lists for s. */
size_t tu_nkeys(pd_store *s);
/* Size pd_keys lists for key k, or -1 when absent; asserts that k is
 * listed at most once. */
long long tu_listed_size(pd_store *s, pd_key k);

/* Asserts that the file at path exists and holds exactly the string want. */
void tu_file_is(const char *path, const char *want);

/* --------------------------------------------------- Child processes */

/* A forked child reports a failure with TU_CHECK (or tu_child_fail): the
 * message, prefixed with its pid and the line, goes to tu_child_errfd (when
 * >= 0; tu_child_spawn sets it) and to stderr, and the child exits 1.  The
 * parent collects the message with tu_child_wait. */
extern int tu_child_errfd;
_Noreturn void tu_child_fail(int line, const char *fmt, ...) PD__PRINTF(2, 3);

#define TU_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond)) tu_child_fail(__LINE__, __VA_ARGS__);                     \
    } while (0)

typedef int (*tu_child_fn)(void *arg);

typedef struct tu_child {
    pid_t pid;
    int errfd; /* read end of the child's error pipe */
} tu_child;

/* Forks a child that first closes the nclose descriptors in close_fds
 * (e.g. write ends of pipes whose EOF it waits for), then runs fn(arg) with
 * tu_child_errfd set, and exits with what fn returns. */
tu_child tu_child_spawn(tu_child_fn fn, void *arg, const int *close_fds,
                        int nclose);
/* Reads the child's failure message into msg (NUL-terminated; cap >= 1),
 * then waits for it; returns its exit status, or 128+signal when killed. */
int tu_child_wait(tu_child c, char *msg, size_t cap);

/* Runs fn(arg), which caps its own address space (RLIMIT_AS), in a child;
 * fails the test unless it exits 0.  Returns false, running nothing, under
 * ASan or valgrind, whose memory does not live under RLIMIT_AS. */
bool tu_oom_child(tu_child_fn fn, void *arg);
/* waitpid, retried on EINTR: the exit status, 128+signal when killed, or
 * -1 when pid cannot be waited for. */
int tu_waitpid(pid_t pid);

/* ------------------------------------------------------------ Threads */

#define TU_THREADS_MAX 8

/* nthreads threads (at most TU_THREADS_MAX) share s: thread t appends the
 * 9-byte record "<t>:<i, 6 digits>;" for i = 0..rounds-1 (rounds < 10^6) to
 * its key "own<t>" and to "shared" in one batch, and reads both keys every
 * rounds/10 batches (its own key must hold exactly its records so far).
 * Then asserts that each own key holds its thread's records in order, and
 * that "shared" holds every record once, whole, each thread's in order. */
void tu_threads_own_shared(pd_store *s, int nthreads, int rounds);

/* ------------------------------------------------- Valgrind and scale */

/* True when the process runs under valgrind (its client request, when
 * <valgrind/valgrind.h> was available at build time, else the
 * PARTD_TEST_VALGRIND=1 environment variable that scripts/test sets). */
bool tu_under_valgrind(void);
/* Lowers RLIMIT_NOFILE to n descriptors: the soft and the hard limit, but
 * only the soft one under valgrind (which refuses to change the hard
 * limit; the library only reads the soft one).  0, or -1 with errno. */
int tu_limit_nofile(unsigned long n);

#endif
