/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * fuzz_log: opening a Log store whose segment and state files someone else
 * wrote (hostile bytes).
 *
 * Input: byte 0 = flags, bytes 1-2 = a split point (u16 LE), the rest = the
 * bytes of segment A (before the split) and B (after it).  Flags: bit 0: A
 * is the compacted segment c-0000000000000001 (else a writer segment); bit
 * 1: B is a second writer segment (else it is appended to A); bit 2: the
 * first 64 bytes of B are also written as the state file; bit 3: the
 * marker's version byte is B's first byte (else 1); bit 4: B is the commit
 * log `commits` (attempts) instead, and the marker says version 2.
 *
 * Then: pd_log_open, pd_keys, pd_get of every listed key and of made-up
 * keys, pd_append, pd_log_compact (plain, then PD_LOG_SALVAGE), pd_drop.
 * Properties: no crash or sanitizer report; every error carries a message;
 * a listed key reads back its listed size (or fails PD_ERR_CORRUPT); an
 * append succeeds unless the sequence counter is at its limit (a record
 * claims a number near 2^62: PD_ERR_CORRUPT saying so), and its value reads
 * back at the end of its key unless the store reports damage; a salvaging
 * compaction succeeds and leaves a store whose keys all read back their listed
 * sizes, the appended value included; nothing is listed after a drop.
 */
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char s_scratch[256];
static unsigned long s_iter;

static void s_rmdir_flat(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        char p[600];
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

static void s_rm_scratch(void) {
    if (s_scratch[0]) rmdir(s_scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_scratch(s_scratch, sizeof s_scratch, "log", s_rm_scratch);
    return 0;
}

static void s_put(const char *dir, const char *name, const void *p, size_t n) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FZ_CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
    FZ_CHECK(n == 0 || write(fd, p, n) == (ssize_t)n, "write %s", path);
    close(fd);
}

#define S_MSG(s)                                                               \
    FZ_CHECK(*pd_errmsg(s) && strcmp(pd_errmsg(s), "ok") != 0,                 \
             "an error without a message (line %d)", __LINE__)

/* Lists the keys and reads each: 0 on success (*n keys), else the error. */
static int s_check_keys(pd_store *s, size_t *n) {
    pd_keylist *kl = NULL;
    int rc = pd_keys(s, &kl, 0);
    *n = 0;
    if (rc) {
        FZ_CHECK(rc == PD_ERR_CORRUPT || rc == PD_ERR_IO || rc == PD_ERR_NOMEM,
                 "keys -> %d: %s", rc, pd_errmsg(s));
        S_MSG(s);
        return rc;
    }
    *n = pd_keylist_count(kl);
    for (size_t i = 0; i < *n; i++) {
        pd_key k;
        FZ_CHECK(pd_keylist_key(kl, i, &k) == 0, "keylist key %zu", i);
        pd_result *r = NULL;
        rc = pd_get(s, 1, &k, &r, 0);
        if (rc == 0) {
            FZ_CHECK(pd_result_value(r, 0).size == pd_keylist_size(kl, i),
                     "key %zu reads %zu bytes, listed %llu", i,
                     pd_result_value(r, 0).size,
                     (unsigned long long)pd_keylist_size(kl, i));
        } else {
            FZ_CHECK(rc == PD_ERR_CORRUPT || rc == PD_ERR_LIMIT ||
                         rc == PD_ERR_NOMEM,
                     "get -> %d: %s", rc, pd_errmsg(s));
            S_MSG(s);
        }
        pd_result_free(&r);
    }
    pd_keylist_free(&kl);
    return 0;
}

/* Reads "fz": 0 and ends with "tail", or an error (returned). */
static int s_check_tail(pd_store *s) {
    pd_key k = PD_KEY("fz", 2);
    pd_result *r = NULL;
    int rc = pd_get(s, 1, &k, &r, 0);
    if (rc == 0) {
        pd_bytes v = pd_result_value(r, 0);
        FZ_CHECK(v.size >= 4 &&
                     !memcmp((const char *)v.data + v.size - 4, "tail", 4),
                 "appended value not at the end of its key (%zu bytes)",
                 v.size);
    } else {
        S_MSG(s);
    }
    pd_result_free(&r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    unsigned flags = data[0];
    size_t split = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (split > size) split = size;
    const uint8_t *a = data, *b = data + split;
    size_t na = split, nb = size - split;

    char dir[400];
    snprintf(dir, sizeof dir, "%s/%lu", s_scratch, s_iter++);
    FZ_CHECK(mkdir(dir, 0700) == 0, "mkdir %s: %s", dir, strerror(errno));
    unsigned char marker[16] = "PARTDLOG";
    marker[8] = (flags & 8) && nb ? b[0] : (flags & 16) ? 2 : 1;
    s_put(dir, "partd-log", marker, sizeof marker);
    const char *na_name = flags & 1 ? "c-0000000000000001" : "w-1-0-a";
    if (flags & 16) {
        s_put(dir, na_name, a, na);
        s_put(dir, "commits", b, nb);
    } else if (flags & 2) {
        s_put(dir, na_name, a, na);
        s_put(dir, "w-2-0-b", b, nb);
    } else {
        uint8_t *ab = malloc(size + 1);
        memcpy(ab, data, size);
        s_put(dir, na_name, ab, size);
        free(ab);
    }
    if (flags & 4) s_put(dir, "state", b, nb < 64 ? nb : 64);

    pd_store *s = NULL;
    int rc = pd_log_open(&s, dir, 0);
    if (rc) {
        FZ_CHECK(!s, "open failed but set the store");
        S_MSG(NULL);
        s_rmdir_flat(dir);
        return 0;
    }
    size_t n;
    int krc = s_check_keys(s, &n);
    pd_key made[] = {PD_KEY("fz", 2), PD_KEY("", 0), PD_KEY("a", 1)};
    pd_result *r = NULL;
    rc = pd_get(s, 3, made, &r, 0);
    if (rc) S_MSG(s);
    pd_result_free(&r);
    pd_bytes v = {"tail", 4};
    rc = pd_append(s, 1, made, &v, 0);
    /* Only a sequence counter at its limit refuses an append. */
    bool appended = rc == 0;
    FZ_CHECK(appended || (rc == PD_ERR_CORRUPT &&
                          strstr(pd_errmsg(s), "sequence counter")),
             "append -> %d: %s", rc, pd_errmsg(s));
    rc = appended ? s_check_tail(s) : 0;
    FZ_CHECK(rc == 0 || krc != 0 || rc == PD_ERR_CORRUPT,
             "get of an appended key -> %d: %s", rc, pd_errmsg(s));
    rc = pd_log_compact(s, 0);
    if (rc) {
        FZ_CHECK(rc == PD_ERR_CORRUPT, "compact -> %d: %s", rc, pd_errmsg(s));
        S_MSG(s);
    }
    rc = pd_log_compact(s, PD_LOG_SALVAGE);
    FZ_CHECK(rc == 0, "salvage -> %d: %s", rc, pd_errmsg(s));
    FZ_CHECK(s_check_keys(s, &n) == 0, "keys after salvage: %s", pd_errmsg(s));
    FZ_CHECK(!appended || s_check_tail(s) == 0, "tail after salvage: %s",
             pd_errmsg(s));
    rc = pd_drop(s, 0);
    FZ_CHECK(rc == 0, "drop -> %d: %s", rc, pd_errmsg(s));
    FZ_CHECK(s_check_keys(s, &n) == 0 && n == 0, "%zu keys after drop", n);
    rc = pd_close(&s);
    FZ_CHECK(rc == 0, "close -> %d: %s", rc, pd_errmsg(NULL));
    s_rmdir_flat(dir);
    return 0;
}
