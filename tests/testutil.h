/* Shared helpers for the Check suites. */
#ifndef PARTD_TESTUTIL_H
#define PARTD_TESTUTIL_H

#include "internal.h"
#include <check.h>
#include <stdbool.h>
#include <string.h>

/* A fresh directory under $TMPDIR (or /tmp); returns a malloc'd path. */
char *tu_mkdtemp(void);
/* rm -rf path (no symlinks followed).  0 on success. */
int tu_rmtree(const char *path);
/* Reads a whole file into a malloc'd buffer; NULL if missing. */
char *tu_read_file(const char *path, size_t *len);
/* Writes a file (creating/truncating).  0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);
/* True when /usr/bin/python3 can import partd. */
bool tu_have_python_partd(void);
/* Runs a shell command; returns its exit status (or -1). */
int tu_system(const char *fmt, ...) PD__PRINTF(1, 2);

/* Gets one key as a malloc'd NUL-terminated copy (len in *len). */
char *tu_get1(pd_store *s, const pd_key *k, size_t *len);
/* Appends one value to one key; aborts the test on error. */
void tu_append1(pd_store *s, pd_key k, const void *v, size_t n);

/* Runs a suite with the CK_RUN_SUITE/CK_RUN_CASE environment respected;
 * returns the process exit status. */
int tu_run(Suite *s);

#define TU_OK(expr, store)                                                     \
    do {                                                                       \
        int tu_rc_ = (expr);                                                   \
        ck_assert_msg(tu_rc_ == 0, "%s -> %d: %s", #expr, tu_rc_,              \
                      pd_errmsg(store));                                       \
    } while (0)

#endif
