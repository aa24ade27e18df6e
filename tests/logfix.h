/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The fixture shared by the Log suites (test_log*.c). */
#ifndef PARTD_TESTS_LOGFIX_H
#define PARTD_TESTS_LOGFIX_H

#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define K(s) PD_KEY_STR(s)
#define V(s) PD_BYTES((s), strlen(s))

typedef struct fx {
    char *dir;
    char root[PATH_MAX];
} fx;

static PD__UNUSED void fx_init(fx *f) {
    f->dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->dir);
    snprintf(f->root, sizeof f->root, "%s/log", f->dir);
}

static PD__UNUSED pd_store *fx_open(fx *f) {
    pd_store *s = NULL;
    TU_OK(pd_log_open(&s, f->root, PD_LOG_CREATE), NULL);
    ck_assert_str_eq(pd_store_kind(s), "log");
    return s;
}

static PD__UNUSED void fx_done(fx *f) {
    pd__sys_reset();
    tu_rmtree(f->dir);
    free(f->dir);
}

/* fx_init, then the first handle on f's Log, which it creates. */
static PD__UNUSED pd_store *fx_start(fx *f) {
    fx_init(f);
    return fx_open(f);
}

/* Closes the last handle *s, then ends f (fx_done). */
static PD__UNUSED void fx_end(fx *f, pd_store **s) {
    TU_OK(pd_close(s), NULL);
    fx_done(f);
}

/* In a child of tu_child_spawn: a handle on the Log at root, or the child
 * fails, naming the root and why. */
static PD__UNUSED pd_store *fx_child_open(const char *root) {
    pd_store *s = NULL;
    TU_CHECK(pd_log_open(&s, root, 0) == 0, "open %s: %s", root,
             pd_errmsg(NULL));
    return s;
}

/* Names in f's root starting with prefix. */
static PD__UNUSED int s_count(const char *root, const char *prefix) {
    DIR *d = opendir(root);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    if (d) closedir(d);
    return n;
}

/* Sum of the sizes of the segment files. */
static PD__UNUSED long long s_seg_bytes(const char *root) {
    DIR *d = opendir(root);
    long long n = 0;
    struct dirent *e;
    char p[PATH_MAX + 300];
    struct stat st;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "w-", 2) && strncmp(e->d_name, "c-", 2))
            continue;
        snprintf(p, sizeof p, "%s/%s", root, e->d_name);
        if (stat(p, &st) == 0) n += st.st_size;
    }
    if (d) closedir(d);
    return n;
}

/* The only file in root starting with prefix. */
static PD__UNUSED void s_only(const char *root, const char *prefix, char *out,
                              size_t cap) {
    DIR *d = opendir(root);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            snprintf(out, cap, "%s/%s", root, e->d_name);
            n++;
        }
    if (d) closedir(d);
    ck_assert_int_eq(n, 1);
}

/* Flips bit `bit` (0 to 7) of byte off of path. */
static PD__UNUSED void fx_flip(const char *path, long off, long bit) {
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char c;
    ck_assert_int_eq(pread(fd, &c, 1, off), 1);
    c ^= (unsigned char)(1u << bit);
    ck_assert_int_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* After a bit flip at off (-1: none) in the Log at root, whose handle is
 * s: key reads exactly want, or fails with PD_ERR_CORRUPT naming root.
 * Returns whether it read. */
static PD__UNUSED bool fx_exact_or_corrupt(pd_store *s, const char *root,
                                           const char *key, const char *want,
                                           long off) {
    char *got = NULL;
    size_t len = 0;
    int rc = tu_fetch1(s, K(key), &got, &len);
    if (rc == 0) {
        ck_assert_msg(len == strlen(want) && !memcmp(got, want, len),
                      "flip at %ld: '%s' read '%.*s', not '%s'", off, key,
                      (int)len, got, want);
    } else {
        ck_assert_msg(rc == PD_ERR_CORRUPT, "flip at %ld: %d %s", off, rc,
                      pd_errmsg(s));
        ck_assert_ptr_nonnull(strstr(pd_errmsg(s), root));
    }
    free(got);
    return rc == 0;
}

/* Opens f's store again, checks that key holds want, closes that handle and
 * ends f. */
static PD__UNUSED void fx_end_check(fx *f, const char *key, const char *want) {
    pd_store *s = fx_open(f);
    tu_expect_str(s, K(key), want);
    fx_end(f, &s);
}

/* Closes *s, then fx_end_check. */
static PD__UNUSED void fx_end_reopened(fx *f, pd_store **s, const char *key,
                                       const char *want) {
    TU_OK(pd_close(s), NULL);
    fx_end_check(f, key, want);
}

/* Holds the state file's shared flock as an open handle does, so closing
 * every real handle does not compact.  Returns the descriptor. */
static PD__UNUSED int s_hold_state(const char *root) {
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/state", root);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_SH), 0);
    return fd;
}

#endif /* PARTD_TESTS_LOGFIX_H */
