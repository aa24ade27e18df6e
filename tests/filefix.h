/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The fixture shared by the File suites (tests/test_file_*.c): a store in a
 * private parent directory per test (setup/teardown), and replacing a file
 * behind the store's back.
 */
#ifndef PARTD_TESTS_FILEFIX_H
#define PARTD_TESTS_FILEFIX_H

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static PD__UNUSED char *g_tmp; /* private parent directory for each test */
static PD__UNUSED char g_root[4096];
static PD__UNUSED pd_store *g_f;

static PD__UNUSED void setup(void) {
    g_tmp = tu_mkdtemp();
    ck_assert_ptr_nonnull(g_tmp);
    snprintf(g_root, sizeof g_root, "%s/store", g_tmp);
    int rc = pd_file_open(&g_f, g_root, PD_FILE_CREATE);
    ck_assert_msg(rc == 0, "%s", pd_errmsg(NULL));
}

static PD__UNUSED void teardown(void) {
    pd_close(&g_f);
    tu_rmtree(g_tmp);
    free(g_tmp);
    g_tmp = NULL;
}

static PD__UNUSED bool exists(const char *fmt, const char *arg) {
    char p[8192];
    snprintf(p, sizeof p, fmt, arg);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Entries in g_tmp other than "store" (things created outside the root). */
static PD__UNUSED int outside_entries(void) {
    return tu_system("test $(ls -A '%s' | grep -v '^store$' | wc -l) -eq 0",
                     g_tmp);
}

/* Replaces <root>/<rel> behind the store's back, as another process
 * would: a new file with content "X" renamed over it. */
static PD__UNUSED void replace_behind(const char *rel) {
    char tmp[8192], p[8192];
    snprintf(tmp, sizeof tmp, "%s/newfile", g_tmp);
    snprintf(p, sizeof p, "%s/%s", g_root, rel);
    ck_assert_int_eq(tu_write_file(tmp, "X", 1), 0);
    ck_assert_int_eq(rename(tmp, p), 0);
}

#endif
