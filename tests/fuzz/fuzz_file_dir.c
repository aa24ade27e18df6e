/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * fuzz_file_dir: opening a hostile store directory.
 *
 * The input is a script that builds a directory tree inside a fresh
 * <scratch>/N/store: files with arbitrary names and contents, nested
 * directories, symlinks pointing inside and outside the store, hard links to
 * a file outside, FIFOs, unreadable entries, and names the store reserves or
 * decodes ("%zz", "%~x", ".lock", "%#tmp", ...).  Then the store is opened
 * with pd_file_open and exercised: pd_keys, pd_get of every listed key and of
 * made-up keys, pd_append to made-up keys named after the script's entries,
 * pd_drop, pd_keys again.  Errors are allowed but must carry a message; no
 * crash, no sanitizer report; after a successful drop no key is listed; and
 * nothing outside the store changes: <scratch>/N/outside (a file) and
 * <scratch>/N/outdir/ (a directory with one file) keep their content, and
 * nothing new appears next to them.  Everything is removed after each input.
 */
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_MAX_OPS 48
#define S_MAX_DEPTH 6
#define S_OUTSIDE "outside file: must not change\n"
#define S_OUTDIR_FILE "outdir file: must not change\n"

static char s_scratch[256]; /* per-process scratch root */
static unsigned long s_iter;

static void s_rm_scratch(void);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_scratch(s_scratch, sizeof s_scratch, "dir", s_rm_scratch);
    return 0;
}

/* rm -rf relative to dirfd, chmod'ing directories back first. */
static void s_rmtree_at(int dfd, const char *name) {
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return;
    if (S_ISDIR(st.st_mode)) {
        fchmodat(dfd, name, 0700, 0);
        int cfd =
            openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd >= 0) {
            DIR *d = fdopendir(cfd);
            if (d) {
                struct dirent *de;
                while ((de = readdir(d)) != NULL) {
                    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                    s_rmtree_at(dirfd(d), de->d_name);
                }
                closedir(d);
            } else {
                close(cfd);
            }
        }
        unlinkat(dfd, name, AT_REMOVEDIR);
    } else {
        unlinkat(dfd, name, 0);
    }
}

static void s_rm_scratch(void) {
    if (s_scratch[0]) s_rmtree_at(AT_FDCWD, s_scratch);
}

static void s_write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FZ_CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
    FZ_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write %s",
             path);
    close(fd);
}

static int s_file_is(const char *path, const char *text) {
    char buf[256];
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf);
    struct stat st;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
             (st.st_mode & 07777) == 0600 && n == (ssize_t)strlen(text) &&
             memcmp(buf, text, (size_t)n) == 0;
    close(fd);
    return ok;
}

/* Sorted names in a directory, joined by '/', into buf. */
static void s_list_names(const char *path, char *buf, size_t cap) {
    buf[0] = 0;
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *de;
    char *names[64];
    size_t n = 0;
    while ((de = readdir(d)) != NULL && n < 64) names[n++] = strdup(de->d_name);
    closedir(d);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s/", names[i]);
        free(names[i]);
    }
}

/* Names the store reserves or must refuse to decode. */
static const char *const s_names[] = {
    "%zz",  "%~x",  ".lock",  "%#tmp", "%",     "%~",     "%41",    "a",
    "b",    "%%2F", "%.",     "%..",   "x",     "%~%",    "%2",     "%~aa",
    "%a%2", "%#",   "A",      "%%",    "%a%ZZ", "%~%4",   "%x%21y", "ab",
    "%%00", "%~%~", "%.lock", "(x)",   "a b",   "%a%20b", "%-",     "-",
};
#define S_NNAMES (sizeof s_names / sizeof s_names[0])

/* Symlink targets, relative to an entry at depth d in store (d + 1 "../"
 * reach the scratch dir).  Only things inside this input's scratch dir. */
enum {
    T_OUTSIDE,
    T_OUTDIR,
    T_NEW_OUTSIDE,
    T_ABS_OUTSIDE,
    T_ABS_OUTDIR,
    T_DOT,
    T_DOTDOT,
    T_NAME,
    T_SELF_LOOP,
    T_STORE_ROOT,
    T_NTARGETS
};

typedef struct s_ctx {
    char base[320];            /* <scratch>/N */
    char store[352];           /* base/store */
    int dirs[S_MAX_DEPTH + 1]; /* fds of the current directory chain */
    int depth;
    char made[8][300]; /* names created, for made-up keys */
    size_t nmade;
} s_ctx;

/* A name from the script: a table entry or raw bytes (made legal). */
static void s_read_name(fz_reader *r, char *out, size_t cap) {
    uint8_t b = fz_byte(r);
    if (b < 0x80) {
        snprintf(out, cap, "%s", s_names[b % S_NNAMES]);
        return;
    }
    size_t len = (size_t)(b & 0x7f) + 1;
    if (b == 0xff) len = 200 + fz_byte(r) % 56; /* 200..255 */
    const uint8_t *p;
    len = fz_take(r, len, &p);
    if (len >= cap) len = cap - 1;
    for (size_t i = 0; i < len; i++)
        out[i] = (p[i] == '/' || p[i] == 0) ? '%' : (char)p[i];
    out[len] = 0;
    if (!len || !strcmp(out, ".") || !strcmp(out, ".."))
        snprintf(out, cap, "%%");
}

static void s_remember(s_ctx *c, const char *name) {
    if (c->nmade < 8)
        snprintf(c->made[c->nmade++], sizeof c->made[0], "%s", name);
}

static void s_symlink(s_ctx *c, fz_reader *r, const char *name) {
    char target[700], up[64] = "";
    for (int i = 0; i <= c->depth; i++) strcat(up, "../");
    switch (fz_byte(r) % T_NTARGETS) {
    case T_OUTSIDE: snprintf(target, sizeof target, "%soutside", up); break;
    case T_OUTDIR: snprintf(target, sizeof target, "%soutdir", up); break;
    case T_NEW_OUTSIDE: snprintf(target, sizeof target, "%snew", up); break;
    case T_ABS_OUTSIDE:
        snprintf(target, sizeof target, "%s/outside", c->base);
        break;
    case T_ABS_OUTDIR:
        snprintf(target, sizeof target, "%s/outdir", c->base);
        break;
    case T_DOT: snprintf(target, sizeof target, "."); break;
    case T_DOTDOT: snprintf(target, sizeof target, ".."); break;
    case T_NAME: s_read_name(r, target, sizeof target); break;
    case T_SELF_LOOP: snprintf(target, sizeof target, "%s", name); break;
    default: snprintf(target, sizeof target, "%s", c->store); break;
    }
    symlinkat(target, c->dirs[c->depth], name);
}

static void s_build(s_ctx *c, fz_reader *r) {
    char name[300];
    int ops = 0;
    while (r->n && ops++ < S_MAX_OPS) {
        int dfd = c->dirs[c->depth];
        uint8_t op = fz_byte(r);
        switch (op % 10) {
        case 0: /* file with content */
        case 1: {
            s_read_name(r, name, sizeof name);
            const uint8_t *p;
            size_t len = fz_take(r, fz_byte(r), &p);
            /* O_EXCL: never write through an existing hard link */
            int fd = openat(dfd, name,
                            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                                O_NONBLOCK | O_CLOEXEC,
                            0600);
            if (fd >= 0) {
                if (len && write(fd, p, len) < 0) { /* fine */
                }
                close(fd);
                s_remember(c, name);
            }
            break;
        }
        case 2: /* mkdir and enter */
        case 3:
            s_read_name(r, name, sizeof name);
            mkdirat(dfd, name, 0700);
            s_remember(c, name);
            if (c->depth < S_MAX_DEPTH) {
                int cfd = openat(
                    dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (cfd >= 0) c->dirs[++c->depth] = cfd;
            }
            break;
        case 4: /* leave a directory */
            if (c->depth > 0) close(c->dirs[c->depth--]);
            break;
        case 5: /* symlink */
        case 6:
            s_read_name(r, name, sizeof name);
            s_symlink(c, r, name);
            s_remember(c, name);
            break;
        case 7: { /* hard link to the outside file */
            char out[400];
            snprintf(out, sizeof out, "%s/outside", c->base);
            s_read_name(r, name, sizeof name);
            linkat(AT_FDCWD, out, dfd, name, 0);
            s_remember(c, name);
            break;
        }
        case 8: /* FIFO */
            s_read_name(r, name, sizeof name);
            mkfifoat(dfd, name, 0600);
            s_remember(c, name);
            break;
        default: { /* chmod an entry (not one hard-linked outside) */
            struct stat st;
            s_read_name(r, name, sizeof name);
            mode_t mode = (mode_t)(fz_byte(r) & 0700);
            if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                !S_ISLNK(st.st_mode) && st.st_nlink == 1)
                fchmodat(dfd, name, mode, 0);
            break;
        }
        }
    }
    while (c->depth > 0) close(c->dirs[c->depth--]);
}

static void s_errcheck(pd_store *s, const char *op, int rc) {
    const char *msg = pd_errmsg(s);
    FZ_CHECK(msg && msg[0] && strcmp(msg, "ok") != 0,
             "%s failed (%d) with no message", op, rc);
    FZ_CHECK(rc < 0 && rc >= PD_ERR_LIMIT, "%s: unknown error code %d", op, rc);
}

static void s_exercise(s_ctx *c, pd_store *s) {
    pd_keylist *kl = NULL;
    int rc = pd_keys(s, &kl, 0);
    if (rc) {
        s_errcheck(s, "keys", rc);
        FZ_CHECK(kl == NULL, "keys failed but set *out");
    } else {
        size_t n = pd_keylist_count(kl);
        for (size_t i = 0; i < n; i++) {
            pd_key k;
            FZ_CHECK(pd_keylist_key(kl, i, &k) == 0, "keylist_key %zu", i);
            for (size_t j = 0; j < i; j++) {
                pd_key kj;
                FZ_CHECK(pd_keylist_key(kl, j, &kj) == 0, "keylist_key %zu", j);
                FZ_CHECK(!fz_same_key(&k, &kj), "keys lists %s twice",
                         fz_short(&k));
            }
            pd_result *res = NULL;
            rc = pd_get(s, 1, &k, &res, 0);
            if (rc) {
                s_errcheck(s, "get listed key", rc);
            } else {
                FZ_CHECK(pd_result_value(res, 0).size == pd_keylist_size(kl, i),
                         "get %s: %zu bytes but keys said %llu", fz_short(&k),
                         pd_result_value(res, 0).size,
                         (unsigned long long)pd_keylist_size(kl, i));
            }
            pd_result_free(&res);
        }
        pd_keylist_free(&kl);
    }
    /* made-up keys: fixed ones and the script's names, flat and as tuples */
    pd_bytes tp[3] = {PD_BYTES("a", 1), PD_BYTES("b", 1), PD_BYTES("x", 1)};
    pd_key keys[4 + 2 * 8];
    size_t nk = 0;
    keys[nk++] = PD_KEY("a", 1);
    keys[nk++] = PD_KEY("", 0);
    keys[nk++] = PD_KEY(".lock", 5);
    keys[nk++] = PD_KEY_TUPLE(tp, 3);
    pd_bytes mp[8][2];
    for (size_t i = 0; i < c->nmade; i++) {
        keys[nk++] = PD_KEY(c->made[i], strlen(c->made[i]));
        mp[i][0] = PD_BYTES(c->made[i], strlen(c->made[i]));
        mp[i][1] = PD_BYTES("x", 1);
        keys[nk++] = PD_KEY_TUPLE(mp[i], 2);
    }
    for (size_t i = 0; i < nk; i++) {
        pd_result *res = NULL;
        rc = pd_get(s, 1, &keys[i], &res, 0);
        if (rc) s_errcheck(s, "get made-up key", rc);
        pd_result_free(&res);
        pd_bytes v = PD_BYTES("ZZ", 2);
        rc = pd_append(s, 1, &keys[i], &v, 0);
        if (rc) s_errcheck(s, "append made-up key", rc);
        if (i % 3 == 0) {
            rc = pd_iset(s, 1, &keys[i], &v, 0);
            if (rc) s_errcheck(s, "iset made-up key", rc);
        }
    }
    rc = pd_drop(s, 0);
    if (rc) {
        s_errcheck(s, "drop", rc);
        return;
    }
    rc = pd_keys(s, &kl, 0);
    if (rc) {
        s_errcheck(s, "keys after drop", rc);
        return;
    }
    FZ_CHECK(pd_keylist_count(kl) == 0, "%zu keys listed after drop",
             pd_keylist_count(kl));
    pd_keylist_free(&kl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    s_ctx c;
    memset(&c, 0, sizeof c);
    snprintf(c.base, sizeof c.base, "%s/%lu", s_scratch, s_iter++);
    snprintf(c.store, sizeof c.store, "%s/store", c.base);
    char path[400];
    FZ_CHECK(mkdir(c.base, 0700) == 0, "mkdir %s: %s", c.base, strerror(errno));
    FZ_CHECK(mkdir(c.store, 0700) == 0, "mkdir store");
    snprintf(path, sizeof path, "%s/outside", c.base);
    s_write_file(path, S_OUTSIDE);
    snprintf(path, sizeof path, "%s/outdir", c.base);
    FZ_CHECK(mkdir(path, 0700) == 0, "mkdir outdir");
    snprintf(path, sizeof path, "%s/outdir/f", c.base);
    s_write_file(path, S_OUTDIR_FILE);
    char before_base[512], before_outdir[512];
    s_list_names(c.base, before_base, sizeof before_base);
    snprintf(path, sizeof path, "%s/outdir", c.base);
    s_list_names(path, before_outdir, sizeof before_outdir);

    c.dirs[0] = open(c.store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FZ_CHECK(c.dirs[0] >= 0, "open store dir");
    fz_reader r = {data, size};
    s_build(&c, &r);
    close(c.dirs[0]);
    if (getenv("PARTD_FUZZ_BUILD_ONLY")) {
        /* debugging: build the tree, leave it, say where */
        fprintf(stderr, "tree built in %s (not removed)\n", c.store);
        s_scratch[0] = 0;
        return 0;
    }

    pd_store *s = NULL;
    int rc = pd_file_open(&s, c.store, 0);
    if (rc) {
        const char *msg = pd_errmsg(NULL);
        FZ_CHECK(s == NULL, "open failed but set *out");
        FZ_CHECK(msg && msg[0] && strcmp(msg, "ok") != 0,
                 "open failed (%d) with no message", rc);
    } else {
        s_exercise(&c, s);
        rc = pd_close(&s);
        if (rc) {
            const char *msg = pd_errmsg(NULL);
            FZ_CHECK(msg && msg[0] && strcmp(msg, "ok") != 0,
                     "close failed (%d) with no message", rc);
        }
    }

    /* nothing outside the store changed */
    snprintf(path, sizeof path, "%s/outside", c.base);
    FZ_CHECK(s_file_is(path, S_OUTSIDE), "%s changed", path);
    snprintf(path, sizeof path, "%s/outdir/f", c.base);
    FZ_CHECK(s_file_is(path, S_OUTDIR_FILE), "%s changed", path);
    char after[512];
    s_list_names(c.base, after, sizeof after);
    FZ_CHECK(!strcmp(before_base, after), "%s: entries were %s, now %s", c.base,
             before_base, after);
    snprintf(path, sizeof path, "%s/outdir", c.base);
    s_list_names(path, after, sizeof after);
    FZ_CHECK(!strcmp(before_outdir, after), "%s: entries were %s, now %s", path,
             before_outdir, after);

    s_rmtree_at(AT_FDCWD, c.base);
    return 0;
}
