/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * File: a store in a directory, one file per key (file.h lists the files
 * of this folder).  Here: opening and closing a store, its ops table and
 * the pd_file_* functions.
 */
#include "file/file.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------- Close */

static int s_destroy(pd_store *s) {
    pd__file *f = (pd__file *)s;
    int rc = 0;
    pd__file_cache_clear(f); /* in a forked child: its copies only */
    if (f->temp && !f->keep && f->pid == pd__getpid()) {
        int dfd = pd__file_openat(f->rootfd, ".",
                                  O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        const char *failed = "openat";
        if (dfd < 0 || pd__file_rmtree(dfd, false, &failed, 0) < 0)
            rc = pd__err(s, PD_ERR_IO, errno, "close: %s(%s)", failed, f->path);
        else if (SYS.rmdir(f->path) < 0)
            rc = pd__err(s, PD_ERR_IO, errno, "close: rmdir(%s)", f->path);
    }
    pd__file_lockobj_put(f->lk);
    f->lk = NULL;
    pd__file_close(f->rootfd);
    free(f->requeue);
    free(f->path);
    return rc;
}

/* ------------------------------------------------------------------ Open */

static const pd_store_ops s_file_ops = {
    .kind = "file",
    .append = pd__file_append,
    .get = pd__file_get,
    .del = pd__file_del,
    .set = pd__file_set,
    .drop = pd__file_drop,
    .keys = pd__file_keys,
    .lock = pd__file_lock,
    .unlock = pd__file_unlock,
    .destroy = s_destroy,
};

static size_t s_default_max_fds(void) {
    struct rlimit rl;
    size_t lim = 1024;
    if (SYS.getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_cur != RLIM_INFINITY) {
        size_t q = (size_t)(rl.rlim_cur / 4);
        if (q < lim) lim = q;
    }
    return lim;
}

static int s_mkdirs(const char *path) {
    char *p = strdup(path);
    if (!p) return -1;
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (SYS.mkdir(p, 0777) < 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            errno = e;
            return -1;
        }
        *q = '/';
    }
    int rc = SYS.mkdir(p, 0777) < 0 && errno != EEXIST ? -1 : 0;
    int e = errno;
    free(p);
    errno = e;
    return rc;
}

static int s_open(pd_store **out, const char *path, unsigned flags, bool temp) {
    pd__file *f = calloc(1, sizeof *f);
    if (!f) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "file: open %s", path);
    int rc = pd__store_init(&f->base, &s_file_ops);
    if (rc) {
        free(f);
        return rc;
    }
    f->rootfd = -1;
    f->temp = temp;
    f->keep = flags & PD_FILE_KEEP;
    f->fsync_all = flags & PD_FILE_FSYNC;
    f->pid = pd__getpid();
    f->max_fds = s_default_max_fds();
    if ((flags & PD_FILE_CREATE) && s_mkdirs(path) < 0) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "file: open: mkdir(%s)", path);
        goto fail;
    }
    f->rootfd = SYS.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (f->rootfd < 0) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "file: open %s", path);
        goto fail;
    }
    f->path = SYS.realpath(path, NULL);
    if (!f->path) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "file: open: realpath(%s)", path);
        goto fail;
    }
    if (strlen(f->path) > PATH_MAX - 16) {
        rc = pd__err(NULL, PD_ERR_LIMIT, ENAMETOOLONG, "file: open %s", path);
        goto fail;
    }
    f->lk = pd__file_lockobj_get(f);
    if (!f->lk) {
        rc = pd_errcode(NULL);
        goto fail;
    }
    f->epoch_seen = f->lk->epoch;
    f->gen_seen = f->lk->gen;
    *out = &f->base;
    pd__err_clear(NULL);
    return 0;
fail:
    pd__file_close(f->rootfd);
    free(f->path);
    pd__store_fini(&f->base);
    free(f);
    return rc;
}

int pd_file_open(pd_store **out, const char *path, unsigned flags) {
    if (out) *out = NULL;
    if (!out || !path || !*path)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "file: open: %s",
                       !out ? "NULL out pointer" : "NULL or empty path");
    if (flags & ~(PD_FILE_CREATE | PD_FILE_FSYNC | PD_FILE_KEEP))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "file: open %s: unknown flags 0x%x", path, flags);
    return s_open(out, path, flags & ~PD_FILE_KEEP, false);
}

int pd_file_open_temp(pd_store **out, const char *parent, unsigned flags) {
    if (out) *out = NULL;
    if (!out)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "file: open temp: NULL out");
    if (flags & ~(PD_FILE_FSYNC | PD_FILE_KEEP))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "file: open temp: unknown flags 0x%x", flags);
    if (!parent || !*parent) {
        parent = getenv("TMPDIR");
        if (!parent || !*parent) parent = "/tmp";
    }
    size_t n = strlen(parent) + 32;
    char *tmpl = malloc(n);
    if (!tmpl) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "file: open temp");
    snprintf(tmpl, n, "%s/partd-XXXXXX", parent);
    if (!SYS.mkdtemp(tmpl)) {
        int e = errno;
        pd__err(NULL, PD_ERR_IO, e, "file: open temp: mkdtemp(%s)", tmpl);
        free(tmpl);
        return PD_ERR_IO;
    }
    int rc = s_open(out, tmpl, flags, true);
    if (rc) SYS.rmdir(tmpl);
    free(tmpl);
    return rc;
}

const char *pd_file_path(const pd_store *s) {
    if (!s || s->ops != &s_file_ops) return NULL;
    return ((const pd__file *)s)->path;
}

size_t pd_file_filename(const pd_store *s, const pd_key *key, char *buf,
                        size_t cap) {
    char why[64];
    if (!buf) cap = 0;
    if (cap) buf[0] = 0;
    if (!s || s->ops != &s_file_ops || !key || pd__key_check(key, why))
        return 0;
    char inl[512];
    pd__buf rel;
    pd__buf_init(&rel, inl, sizeof inl);
    if (pd__file_relpath(key, &rel)) {
        pd__buf_free(&rel);
        return 0;
    }
    int n = snprintf(buf, cap, "%s/%s", ((const pd__file *)s)->path,
                     pd__file_str(&rel));
    pd__buf_free(&rel);
    return n < 0 ? 0 : (size_t)n;
}

int pd_file_set_max_fds(pd_store *s, size_t max_fds) {
    if (!s || s->ops != &s_file_ops)
        return pd__err(s, PD_ERR_MISUSE, 0, "set_max_fds: not a file store");
    pd__file *f = (pd__file *)s;
    pthread_mutex_lock(&s->mu);
    f->max_fds = max_fds;
    pd__file_cache_trim(f, max_fds);
    pthread_mutex_unlock(&s->mu);
    pd__err_clear(s);
    return 0;
}
