/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Walks: down a key's path (opening or creating its directories, one
 * component at a time, never following a symlink), and over a directory's
 * entries: the one readdir loop (core's pd__dir_each) for drop, close and keys.
 */
#include "file/file.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- Path walk */

/* Opens the directory holding the last component of rel, creating missing
 * directories when `create`.  *dirfd is f->rootfd (do not close) or a new
 * descriptor; *name points at the last component inside rel.  Returns 0, or
 * -1 with errno (ENOENT/ENOTDIR when a directory is missing and !create;
 * ENOTDIR/ELOOP when a component is a file or a symlink). */
int pd__file_walk(pd__file *f, char *rel, bool create, int *dirfd,
                  const char **name, const char **failed) {
    int cur = f->rootfd;
    char *p = rel;
    *failed = rel;
    for (;;) {
        char *slash = strchr(p, '/');
        if (!slash) break;
        *slash = 0;
        int nfd = pd__file_openat(
            cur, p, O_RDONLY | O_DIRECTORY | PD__FILE_OPEN_FLAGS, 0);
        if (nfd < 0 && errno == ENOENT && create) {
            if (SYS.mkdirat(cur, p, 0777) < 0 && errno != EEXIST) {
                int e = errno;
                *slash = '/';
                if (cur != f->rootfd) pd__file_close(cur);
                *failed = "mkdir";
                errno = e;
                return -1;
            }
            nfd = pd__file_openat(
                cur, p, O_RDONLY | O_DIRECTORY | PD__FILE_OPEN_FLAGS, 0);
        }
        int e = errno;
        *slash = '/';
        if (cur != f->rootfd) pd__file_close(cur);
        if (nfd < 0) {
            *failed = "openat";
            errno = e;
            return -1;
        }
        cur = nfd;
        p = slash + 1;
    }
    *dirfd = cur;
    *name = p;
    return 0;
}

/* ------------------------------------------------------------ Listings */

typedef struct s_each_ctx {
    pd__dirent_fn fn;
    void *arg;
} s_each_ctx;

static int s_skip_lock(void *arg, int dfd, const char *name,
                       unsigned char type) {
    const s_each_ctx *c = arg;
    if (!strcmp(name, ".lock")) return 0;
    return c->fn(c->arg, dfd, name, type);
}

/* pd__dir_each over directory dfd (consumed), leaving out the lock file
 * when `top` (the store's root). */
static int s_each(int dfd, bool top, pd__dirent_fn fn, void *arg,
                  const char **failed) {
    if (!top) return pd__dir_each(dfd, fn, arg, failed);
    s_each_ctx c = {fn, arg};
    return pd__dir_each(dfd, s_skip_lock, &c, failed);
}

/* ----------------------------------------------------------------- Drop */

typedef struct s_rmctx {
    const char **failed;
    int depth;
    int rc, err; /* -1 and the errno of the last failure */
} s_rmctx;

static int s_rm_entry(void *arg, int dfd, const char *nm, unsigned char type) {
    s_rmctx *c = arg;
    const char *what = NULL;
    if (type == DT_DIR) {
        if (c->depth > 4096) {
            errno = ELOOP;
            what = "descend";
        } else {
            int cfd = pd__file_openat(
                dfd, nm, O_RDONLY | O_DIRECTORY | PD__FILE_OPEN_FLAGS, 0);
            if (cfd < 0)
                what = "openat";
            else if (pd__file_rmtree(cfd, false, c->failed, c->depth + 1) < 0)
                what = *c->failed;
            else if (SYS.unlinkat(dfd, nm, AT_REMOVEDIR) < 0)
                what = "rmdir";
        }
    } else if (SYS.unlinkat(dfd, nm, 0) < 0 && errno != ENOENT) {
        what = "unlink";
    }
    if (what) { /* go on: remove as much as possible */
        *c->failed = what;
        c->err = errno;
        c->rc = -1;
    }
    return 0;
}

int pd__file_rmtree(int dfd, bool top, const char **failed, int depth) {
    s_rmctx c = {failed, depth, 0, 0};
    if (s_each(dfd, top, s_rm_entry, &c, failed) < 0) return -1;
    errno = c.err;
    return c.rc;
}

int pd__file_drop(pd_store *s, unsigned flags) {
    (void)flags;
    pd__file *f = (pd__file *)s;
    int rc = pd__file_check_fork(f);
    if (rc) return rc;
    pd__file_cache_clear(f);
    int dfd =
        pd__file_openat(f->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    const char *failed = "openat";
    if (dfd < 0 || pd__file_rmtree(dfd, true, &failed, 0) < 0)
        rc = pd__err(s, PD_ERR_IO, errno, "drop: %s(%s)", failed, f->path);
    f->gen_seen = __atomic_add_fetch(&f->lk->gen, 1, __ATOMIC_SEQ_CST);
    return rc;
}

/* ----------------------------------------------------------------- Keys */

typedef struct s_listctx {
    pd__file *f;
    pd_keylist *kl;
    pd_bytes parts[PD_KEY_MAX_PARTS];
    pd__buf partbuf[PD_KEY_MAX_PARTS + 1]; /* decoded parts */
    bool reported;                         /* the error is set on f already */
    int err;
    const char *failed;
} s_listctx;

/* Where s_list_dir is: the key part being listed (depth) and the "%~"
 * continuation directories walked through for it (acc). */
typedef struct s_listpos {
    s_listctx *c;
    size_t depth;
    const pd__buf *acc;
    int level;
} s_listpos;

static int s_list_dir(s_listctx *c, int dfd, size_t depth, const pd__buf *acc,
                      int level);

/* A key's file: lists it with its size. */
static int s_list_file(s_listctx *c, int dfd, const char *nm, size_t depth) {
    for (size_t i = 0; i <= depth; i++)
        c->parts[i] =
            (pd_bytes){pd__file_str(&c->partbuf[i]), c->partbuf[i].len};
    pd_key k = depth == 0 ? PD_KEY(c->parts[0].data, c->parts[0].size)
                          : PD_KEY_TUPLE(c->parts, depth + 1);
    char why[64];
    if (pd__key_check(&k, why)) return 0;
    struct stat st;
    if (SYS.fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        int e = errno;
        if (e == ENOENT) return 0; /* deleted meanwhile */
        pd__buf rel = PD__BUF_INIT;
        pd__file_relpath(&k, &rel);
        pd__file_err_key(c->f, pd__file_io_code(e), e, "keys", &k, "fstatat",
                         rel.len ? pd__file_str(&rel) : "(name unavailable)");
        pd__buf_free(&rel);
        c->reported = true;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) return 0;
    if (pd__keylist_add(c->kl, &k, (uint64_t)st.st_size)) {
        c->err = PD_ERR_NOMEM;
        return -1;
    }
    return 0;
}

static int s_list_entry(void *arg, int dfd, const char *nm,
                        unsigned char type) {
    s_listpos *pos = arg;
    s_listctx *c = pos->c;
    size_t depth = pos->depth;
    if (type != DT_DIR && type != DT_REG) return 0;
    bool isdir = type == DT_DIR;
    if (isdir && nm[0] == '%' && nm[1] == '~') {
        /* continuation of a long part */
        pd__buf more = PD__BUF_INIT;
        if (pd__buf_add(&more, pd__file_str(pos->acc), pos->acc->len) ||
            pd__buf_str(&more, nm) || pd__buf_add(&more, "/", 1)) {
            pd__buf_free(&more);
            c->err = PD_ERR_NOMEM;
            return 1;
        }
        int cfd = pd__file_openat(
            dfd, nm, O_RDONLY | O_DIRECTORY | PD__FILE_OPEN_FLAGS, 0);
        int rc = cfd < 0 ? 0 : s_list_dir(c, cfd, depth, &more, pos->level + 1);
        pd__buf_free(&more);
        return rc ? 1 : 0;
    }
    pd__buf *part = &c->partbuf[depth];
    if (pd__file_decode_name(nm, pos->acc, depth == 0, part) < 0)
        return 0; /* not ours */
    if (isdir) {
        if (depth + 1 >= PD_KEY_MAX_PARTS) return 0;
        int cfd = pd__file_openat(
            dfd, nm, O_RDONLY | O_DIRECTORY | PD__FILE_OPEN_FLAGS, 0);
        if (cfd < 0) return 0;
        pd__buf empty = PD__BUF_INIT;
        return s_list_dir(c, cfd, depth + 1, &empty, pos->level + 1) ? 1 : 0;
    }
    return s_list_file(c, dfd, nm, depth) ? 1 : 0;
}

/* Lists directory dfd (consumed): 0, or -1 with the error in c. */
static int s_list_dir(s_listctx *c, int dfd, size_t depth, const pd__buf *acc,
                      int level) {
    if (level >= 4096) {
        pd__file_close(dfd);
        return 0;
    }
    s_listpos pos = {c, depth, acc, level};
    const char *failed = NULL;
    int rc = s_each(dfd, level == 0, s_list_entry, &pos, &failed);
    if (rc < 0) {
        c->err = PD_ERR_IO;
        c->failed = failed;
    }
    return rc ? -1 : 0;
}

int pd__file_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    pd__file *f = (pd__file *)s;
    int rc = pd__file_check_fork(f);
    if (rc) return rc;
    s_listctx *c = calloc(1, sizeof *c);
    if (!c) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: walk state");
    c->f = f;
    c->kl = kl;
    for (size_t i = 0; i <= PD_KEY_MAX_PARTS; i++)
        pd__buf_init(&c->partbuf[i], NULL, 0);
    int dfd =
        pd__file_openat(f->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (dfd < 0) {
        rc = pd__err(s, PD_ERR_IO, errno, "keys: openat(%s)", f->path);
    } else {
        pd__buf acc = PD__BUF_INIT;
        if (s_list_dir(c, dfd, 0, &acc, 0) < 0)
            rc = c->reported ? pd_errcode(s)
                 : c->err == PD_ERR_NOMEM
                     ? pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: list")
                     : pd__err(s, PD_ERR_IO, errno, "keys: %s(%s)",
                               c->failed ? c->failed : "walk", f->path);
    }
    for (size_t i = 0; i <= PD_KEY_MAX_PARTS; i++) pd__buf_free(&c->partbuf[i]);
    free(c);
    return rc;
}
