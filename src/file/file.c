/*
 * File: a store in a directory, one file per key, compatible with the
 * Python reference's layout and lock file.
 *
 * Names (docs/file-layout.md).  A key part made only of the characters
 * [A-Za-z0-9-_.() ], 1..255 bytes, not "." or ".." (and not ".lock" at the
 * top level) is its own file name: the reference's layout.  Any other part
 * is named '%' + the part with every other byte written %HH.  A name longer
 * than 255 bytes is cut into directories "%~<piece>" ending in "%<piece>".
 * A tuple key is a directory per part but the last.  '%' is outside the
 * plain set, and '~' and '#' are outside what %-encoding emits, so plain
 * names, encoded names, continuation directories ("%~") and our temporary
 * files ("%#") never collide: the mapping is injective.
 *
 * Safety.  Everything is opened relative to the root descriptor, one
 * component at a time, with O_NOFOLLOW: no symlink inside the store is ever
 * followed, and no name can contain '/', so nothing is created, written or
 * read outside the root.  Files must be regular with one link.
 *
 * Locking.  flock(LOCK_EX) on <root>/.lock, exactly what Python partd's
 * locket does, so C and Python processes exclude each other.  One lock
 * object per directory per process (shared by every handle on it, with a
 * recursive mutex), since flock belongs to the open file description.  At
 * each acquisition the lock file's identity is checked against the path: if
 * the directory was removed and recreated (Python's drop), the lock file and
 * root are reopened.
 *
 * Descriptor cache.  Appends and gets keep descriptors open (LRU, bounded
 * by the fd limit; a get's is read-only, and an append replaces it).  A
 * descriptor is only used inside a locked session and only while it is
 * known to be current: at the first use of its directory in a session, the
 * directory's ctime is compared with the one this handle recorded (at the
 * end of a session that changed the directory, or when it last found it
 * changed); an unlink or rename by anyone changes it.  If it changed, or
 * was recorded too close to the clock tick to be trusted ("racy", as in
 * git's index), the directory's epoch is bumped and the new ctime recorded;
 * a descriptor not verified (fstat: st_nlink == 0 means the file was
 * deleted) since its directory's last epoch bump is verified before use.
 * So a descriptor whose file another process deleted or dropped is never
 * written through or read from.  The root's ctime comes from the fstat that
 * checks its identity when the lock is taken.  A get reads to the end of
 * the file, reserving the size the entry remembers (last read or stat,
 * plus our appends) plus slack: a short read there is the end, so a get of
 * a cached key is flock, fstat(root), pread, unlock (plus the verifying
 * fstat after an epoch bump, a second pread when the file shrank, and
 * fstat + pread when it grew past the slack).  A get of an uncached key
 * adds openat and fstat (its type and size), and caches the descriptor.  An
 * append that misses the cache costs openat(O_CREAT|O_EXCL) for a new file,
 * openat + fstat (type, links, size) for an existing one: which to try first is
 * guessed from the recent misses, so either workload (new keys; keys reopened
 * after eviction) pays one openat.
 */
#include "core/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/hash.h"
#include <utlist.h>

#define S_NAME_MAX 255
#define S_PIECE_MAX 253      /* "%~" + piece <= 255 */
#define S_RACY_NS 50000000LL /* 50 ms: well above any kernel clock tick */
#define S_OPEN_FLAGS (O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)

/* ----------------------------------------------------------- Lock object */

typedef struct s_lockobj {
    UT_hash_handle hh;
    char *root; /* realpath of the store directory: hash key */
    int fd;     /* <root>/.lock */
    dev_t dev;  /* identity of the lock file we hold */
    ino_t ino;
    dev_t rdev; /* identity of the directory it is in */
    ino_t rino;
    pid_t pid;          /* process that opened fd */
    pthread_mutex_t mu; /* recursive; held for a whole session */
    unsigned depth;     /* sessions open on it (flock held when > 0) */
    uint64_t gen;       /* bumped when a handle unlinks or renames */
    uint64_t epoch;     /* bumped when the directory was replaced */
    unsigned refs;
} s_lockobj;

static pthread_mutex_t g_locks_mu = PTHREAD_MUTEX_INITIALIZER;
static s_lockobj *g_locks;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

/* In a forked child only the forking thread survives: forget the parent's
 * lock objects (their descriptors share the parent's flock). */
static void s_atfork_child(void) {
    pthread_mutex_init(&g_locks_mu, NULL);
    /* Frees the registry's table (not the lock objects: the handles that
     * hold them release them when they notice the fork). */
    HASH_CLEAR(hh, g_locks);
}

static void s_atfork_init(void) { pthread_atfork(NULL, NULL, s_atfork_child); }

/* ------------------------------------------------------------ The handle */

typedef struct s_dir {
    UT_hash_handle hh;
    struct timespec ctime_rec; /* ctime at the end of our last session */
    struct timespec rec_at;    /* wall time when it was recorded */
    bool have_rec;
    bool suspect;     /* in session `checked`: verify entries before use */
    uint64_t epoch;   /* bumped when found changed: entries verified before
                       * are checked again before use */
    uint64_t checked; /* session of the last check */
    uint64_t queued;  /* session in which it is queued for re-recording */
    unsigned nent;    /* cache entries in this directory */
    size_t rellen;
    char rel[]; /* "" for the root; hash key */
} s_dir;

typedef struct s_fd {
    UT_hash_handle hh;
    struct s_fd *prev, *next; /* LRU: head is most recent */
    int fd;
    s_dir *dir;
    uint64_t verified; /* session in which it was last known current */
    uint64_t epoch;    /* its directory's epoch then */
    uint64_t size;     /* file size as last seen: read, stat, our appends */
    bool rdonly;       /* opened by a get: an append reopens it */
    size_t klen;
    unsigned char key[]; /* packed key: hash key */
} s_fd;

typedef struct s_file {
    pd_store base;
    char *path; /* realpath of the root */
    int rootfd;
    bool temp, keep, fsync_all;
    pid_t pid;
    s_lockobj *lk;
    uint64_t epoch_seen; /* lk->epoch when rootfd was opened */
    uint64_t gen_seen;
    uint64_t session;           /* incremented at each lock; 0: none yet */
    struct stat root_st;        /* fstat of rootfd taken when locking ... */
    struct timespec root_st_at; /* (wall time just before it) ... */
    uint64_t root_st_session;   /* ... in this session */
    bool in_session;
    uint64_t verify_all; /* session in which every entry must be verified */
    s_fd *cache;         /* hash by packed key */
    s_fd *lru;
    size_t ncache, max_fds;
    s_dir *dirs;
    s_dir **requeue; /* dirs to re-record at the end of the session */
    size_t nrequeue, caprequeue;
    unsigned exist_bias; /* 0..3: >= 2 when recent append opens that missed
                          * the cache mostly found the file existing */
} s_file;

static const pd_store_ops s_file_ops;
static void s_cache_clear(s_file *f);

/* ------------------------------------------------------------- Syscalls */

#define SYS pd__sys_table

static int s_close(int fd) {
    if (fd < 0) return 0;
    return SYS.close(fd);
}

static int s_openat(int dirfd, const char *name, int flags, mode_t mode) {
    int fd;
    do fd = SYS.openat(dirfd, name, flags, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* Writes all n bytes; returns bytes written before an error (errno set)
 * or n. */
static size_t s_write_all(int fd, const char *p, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = SYS.write(fd, p + done, n - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            return done;
        }
        if (w == 0) {
            errno = EIO;
            return done;
        }
        done += (size_t)w;
    }
    return done;
}

static int s_fsync(int fd) {
    int rc;
    do rc = SYS.fsync(fd);
    while (rc < 0 && errno == EINTR);
    return rc;
}

static int s_flock(int fd, int op) {
    int rc;
    do rc = SYS.flock(fd, op);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* ----------------------------------------------------------------- Names */

static inline bool s_plain_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '(' || c == ')' || c == ' ';
}

static bool s_is_plain(const unsigned char *p, size_t n, bool top) {
    if (n == 0 || n > S_NAME_MAX) return false;
    if (n == 1 && p[0] == '.') return false;
    if (n == 2 && p[0] == '.' && p[1] == '.') return false;
    if (top && n == 5 && memcmp(p, ".lock", 5) == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!s_plain_char(p[i])) return false;
    return true;
}

/* A growing string. */
typedef struct s_str {
    char *p;
    size_t len, cap;
    char inl[512];
} s_str;

static void s_str_init(s_str *s) {
    s->p = s->inl;
    s->len = 0;
    s->cap = sizeof s->inl;
    s->p[0] = 0;
}

static void s_str_free(s_str *s) {
    if (s->p != s->inl) free(s->p);
    s_str_init(s);
}

static int s_str_reserve(s_str *s, size_t extra) {
    if (s->len + extra + 1 <= s->cap) return 0;
    size_t ncap = s->cap * 2;
    while (ncap < s->len + extra + 1) ncap *= 2;
    char *np = s->p == s->inl ? malloc(ncap) : realloc(s->p, ncap);
    if (!np) return -1;
    if (s->p == s->inl) memcpy(np, s->inl, s->len + 1);
    s->p = np;
    s->cap = ncap;
    return 0;
}

static int s_str_add(s_str *s, const char *p, size_t n) {
    if (s_str_reserve(s, n)) return -1;
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = 0;
    return 0;
}

static const char s_hex[] = "0123456789ABCDEF";

/* Appends the name(s) of one part to rel ("/"-separated). */
static int s_encode_part(s_str *rel, const unsigned char *p, size_t n,
                         bool top) {
    if (rel->len && s_str_add(rel, "/", 1)) return -1;
    if (s_is_plain(p, n, top)) return s_str_add(rel, (const char *)p, n);
    /* %-encode into a scratch buffer, then cut into pieces. */
    size_t elen = 0;
    for (size_t i = 0; i < n; i++) elen += s_plain_char(p[i]) ? 1 : 3;
    char *e = malloc(elen + 1);
    if (!e) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s_plain_char(p[i])) {
            e[k++] = (char)p[i];
        } else {
            e[k++] = '%';
            e[k++] = s_hex[p[i] >> 4];
            e[k++] = s_hex[p[i] & 15];
        }
    }
    int rc = 0;
    size_t at = 0;
    while (rc == 0 && elen - at + 1 > S_NAME_MAX) {
        size_t cut = S_PIECE_MAX;
        /* never split a %HH triplet */
        if (e[at + cut - 1] == '%')
            cut -= 1;
        else if (e[at + cut - 2] == '%')
            cut -= 2;
        rc = s_str_add(rel, "%~", 2);
        if (!rc) rc = s_str_add(rel, e + at, cut);
        if (!rc) rc = s_str_add(rel, "/", 1);
        at += cut;
    }
    if (!rc) rc = s_str_add(rel, "%", 1);
    if (!rc) rc = s_str_add(rel, e + at, elen - at);
    free(e);
    return rc;
}

/* The relative path of key's file. */
static int s_relpath(const pd_key *key, s_str *rel) {
    pd__parts pp;
    pd__key_parts(key, &pp);
    s_str_init(rel);
    for (size_t i = 0; i < pp.n; i++)
        if (s_encode_part(rel, pp.p[i].data, pp.p[i].size, i == 0)) return -1;
    return 0;
}

static int s_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes the body of an encoded name (after '%' or "%~") into out;
 * returns -1 if it is not canonical %-encoding. */
static int s_pct_decode(const char *s, size_t n, s_str *out) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3) return -1;
            int h = s_hexval(s[i + 1]), l = s_hexval(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            unsigned char b = (unsigned char)(h * 16 + l);
            if (s_plain_char(b)) return -1; /* not canonical */
            if (s_str_add(out, (const char *)&b, 1)) return -1;
            i += 2;
        } else if (s_plain_char(c)) {
            if (s_str_add(out, (const char *)&c, 1)) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* --------------------------------------------------------------- Errors */

static int s_err_key(s_file *f, int code, int sys, const char *op,
                     const pd_key *key, const char *call, const char *rel) {
    char kb[PD__KEYSHORT_MAX];
    if (rel)
        return pd__err(&f->base, code, sys, "%s %s: %s(%s/%.300s)", op,
                       pd__key_short(key, kb), call, f->path, rel);
    return pd__err(&f->base, code, sys, "%s %s: %s", op, pd__key_short(key, kb),
                   call);
}

/* A key's path holds something that is not a plain file of ours. */
static int s_err_type(s_file *f, const char *op, const pd_key *key,
                      const char *rel, int e) {
    const char *why = e == ELOOP    ? "is a symlink, and symlinks inside the "
                                      "store are never followed"
                      : e == EMLINK ? "has several hard links (refused: it "
                                      "may be a file outside the store)"
                      : e == EISDIR ? "is a directory (it holds tuple keys "
                                      "that start with this key)"
                                    : "is not a regular file (refused)";
    char kb[PD__KEYSHORT_MAX];
    return pd__err(&f->base, PD_ERR_KEY, 0, "%s %s: %s/%.300s %s", op,
                   pd__key_short(key, kb), f->path, rel, why);
}

/* A directory on key's path is a file (another key) or a symlink. */
static int s_err_conflict(s_file *f, const char *op, const pd_key *key,
                          const char *rel) {
    char kb[PD__KEYSHORT_MAX];
    return pd__err(&f->base, PD_ERR_KEY, 0,
                   "%s %s: %s/%.300s: a directory on its path is a file "
                   "(another key holds that name) or a symlink",
                   op, pd__key_short(key, kb), f->path, rel);
}

static int s_io_code(int e) { return e == ENOMEM ? PD_ERR_NOMEM : PD_ERR_IO; }

/* ------------------------------------------------------------- Path walk */

/* Opens the directory holding the last component of rel, creating missing
 * directories when `create`.  *dirfd is f->rootfd (do not close) or a new
 * descriptor; *name points at the last component inside rel.  Returns 0, or
 * -1 with errno (ENOENT/ENOTDIR when a directory is missing and !create;
 * ENOTDIR/ELOOP when a component is a file or a symlink). */
static int s_walk(s_file *f, char *rel, bool create, int *dirfd,
                  const char **name, const char **failed) {
    int cur = f->rootfd;
    char *p = rel;
    *failed = rel;
    for (;;) {
        char *slash = strchr(p, '/');
        if (!slash) break;
        *slash = 0;
        int nfd = s_openat(cur, p, O_RDONLY | O_DIRECTORY | S_OPEN_FLAGS, 0);
        if (nfd < 0 && errno == ENOENT && create) {
            if (SYS.mkdirat(cur, p, 0777) < 0 && errno != EEXIST) {
                int e = errno;
                *slash = '/';
                if (cur != f->rootfd) s_close(cur);
                *failed = "mkdir";
                errno = e;
                return -1;
            }
            nfd = s_openat(cur, p, O_RDONLY | O_DIRECTORY | S_OPEN_FLAGS, 0);
        }
        int e = errno;
        *slash = '/';
        if (cur != f->rootfd) s_close(cur);
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

/* ------------------------------------------------------------ Lock object */

static int s_lockfile_open(int rootfd, struct stat *st) {
    int fd = s_openat(rootfd, ".lock", O_RDWR | O_CREAT | S_OPEN_FLAGS, 0666);
    if (fd < 0 && (errno == EROFS || errno == EACCES)) {
        /* A read-only store can still be read: flock works on a read-only
         * descriptor of an existing lock file. */
        int e = errno;
        fd = s_openat(rootfd, ".lock", O_RDONLY | S_OPEN_FLAGS, 0);
        if (fd < 0) errno = e;
    }
    if (fd < 0) return -1;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        int e = S_ISREG(st->st_mode) ? errno : EINVAL;
        s_close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static s_lockobj *s_lockobj_get(s_file *f) {
    pthread_once(&g_atfork_once, s_atfork_init);
    pthread_mutex_lock(&g_locks_mu);
    s_lockobj *lk = NULL;
    HASH_FIND_STR(g_locks, f->path, lk);
    if (lk && lk->pid == pd__getpid()) {
        lk->refs++;
        pthread_mutex_unlock(&g_locks_mu);
        return lk;
    }
    lk = calloc(1, sizeof *lk);
    struct stat st;
    if (!lk || !(lk->root = strdup(f->path)) ||
        pd__mutex_init_recursive(&lk->mu)) {
        int e = ENOMEM;
        if (lk) free(lk->root);
        free(lk);
        pthread_mutex_unlock(&g_locks_mu);
        pd__err(NULL, PD_ERR_NOMEM, e, "file: open %s: lock object", f->path);
        return NULL;
    }
    lk->fd = s_lockfile_open(f->rootfd, &st);
    if (lk->fd < 0) {
        int e = errno;
        pthread_mutex_destroy(&lk->mu);
        free(lk->root);
        free(lk);
        pthread_mutex_unlock(&g_locks_mu);
        pd__err(NULL, PD_ERR_IO, e, "file: open %s/.lock", f->path);
        return NULL;
    }
    lk->dev = st.st_dev;
    lk->ino = st.st_ino;
    struct stat rst;
    if (fstat(f->rootfd, &rst) == 0) {
        lk->rdev = rst.st_dev;
        lk->rino = rst.st_ino;
    }
    lk->pid = pd__getpid();
    lk->refs = 1;
    HASH_ADD_KEYPTR(hh, g_locks, lk->root, strlen(lk->root), lk);
    /* Not in the registry (no memory for its table): the handle still
     * works with a lock object of its own. */
    pthread_mutex_unlock(&g_locks_mu);
    return lk;
}

static void s_lockobj_put(s_lockobj *lk) {
    if (!lk) return;
    pthread_mutex_lock(&g_locks_mu);
    bool last = --lk->refs == 0;
    if (last) {
        s_lockobj *cur = NULL;
        HASH_FIND_STR(g_locks, lk->root, cur);
        if (cur == lk) HASH_DEL(g_locks, lk);
    }
    pthread_mutex_unlock(&g_locks_mu);
    if (last) {
        if (lk->pid == pd__getpid()) {
            s_close(lk->fd);
            pthread_mutex_destroy(&lk->mu);
        } else {
            close(lk->fd); /* inherited copy; the parent keeps its lock */
        }
        free(lk->root);
        free(lk);
    }
}

/* Takes the flock on lk (depth 0 -> 1).  The store directory may have been
 * removed and recreated meanwhile (Python partd's drop does that, without
 * locking): then our lock file is not the one others lock.  One fstat of the
 * root descriptor tells (a removed directory has no links; a handle opened
 * on the new directory has another inode than the lock's); in that case the
 * directory and its lock file are reopened by path.  Called with lk->mu. */
static int s_lockobj_flock(s_file *f, s_lockobj *lk) {
    for (int tries = 0;; tries++) {
        if (s_flock(lk->fd, LOCK_EX) < 0)
            return pd__err(&f->base, PD_ERR_IO, errno, "lock: flock(%s/.lock)",
                           lk->root);
        struct stat st;
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        if (fstat(f->rootfd, &st) == 0 && st.st_nlink > 0 &&
            st.st_dev == lk->rdev && st.st_ino == lk->rino) {
            f->root_st = st;
            f->root_st_at = at;
            f->root_st_session = f->session + 1; /* the one starting */
            return 0;
        }
        s_flock(lk->fd, LOCK_UN);
        if (tries >= 8)
            return pd__err(&f->base, PD_ERR_IO, 0,
                           "lock: %s keeps being replaced under us", lk->root);
        int rfd = open(lk->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rfd < 0)
            return pd__err(&f->base, PD_ERR_IO, errno,
                           "lock: store directory %s", lk->root);
        struct stat rst;
        int nfd = fstat(rfd, &rst) == 0 ? s_lockfile_open(rfd, &st) : -1;
        int e = errno;
        if (nfd < 0) {
            close(rfd);
            return pd__err(&f->base, PD_ERR_IO, e, "lock: open(%s/.lock)",
                           lk->root);
        }
        s_close(lk->fd);
        lk->fd = nfd;
        lk->dev = st.st_dev;
        lk->ino = st.st_ino;
        lk->rdev = rst.st_dev;
        lk->rino = rst.st_ino;
        lk->epoch++;
        /* this handle's root: the new directory */
        s_cache_clear(f);
        s_close(f->rootfd);
        f->rootfd = rfd;
        f->epoch_seen = lk->epoch;
    }
}

/* -------------------------------------------------------- The fd cache */

static void s_cache_evict(s_file *f, s_fd *e) {
    HASH_DEL(f->cache, e);
    DL_DELETE(f->lru, e);
    s_close(e->fd);
    if (e->dir) e->dir->nent--;
    f->ncache--;
    free(e);
}

static void s_cache_clear(s_file *f) {
    s_fd *e, *tmp;
    HASH_ITER(hh, f->cache, e, tmp) s_cache_evict(f, e);
    s_dir *d, *dt;
    HASH_ITER(hh, f->dirs, d, dt) {
        HASH_DEL(f->dirs, d);
        free(d);
    }
    f->nrequeue = 0;
}

static s_dir *s_dir_get(s_file *f, const char *rel, size_t rellen) {
    s_dir *d = NULL;
    HASH_FIND(hh, f->dirs, rel, rellen, d);
    if (d) return d;
    d = calloc(1, sizeof *d + rellen + 1);
    if (!d) return NULL;
    memcpy(d->rel, rel, rellen);
    d->rel[rellen] = 0;
    d->rellen = rellen;
    HASH_ADD(hh, f->dirs, rel, rellen, d);
    if (!d->hh.tbl) {
        free(d);
        return NULL;
    }
    return d;
}

/* Queues d to have its ctime recorded at the end of this session. */
static void s_dir_touch(s_file *f, s_dir *d) {
    if (!d || d->queued == f->session) return;
    if (f->nrequeue == f->caprequeue) {
        size_t nc = f->caprequeue ? f->caprequeue * 2 : 16;
        s_dir **nq = realloc(f->requeue, nc * sizeof *nq);
        if (!nq) {
            d->have_rec = false; /* can't record: distrust it next time */
            return;
        }
        f->requeue = nq;
        f->caprequeue = nc;
    }
    f->requeue[f->nrequeue++] = d;
    d->queued = f->session;
}

static int s_dir_stat(s_file *f, const s_dir *d, struct stat *st) {
    if (d->rellen == 0) return fstat(f->rootfd, st);
    return fstatat(f->rootfd, d->rel, st, AT_SYMLINK_NOFOLLOW);
}

/* As s_dir_stat, but the root's fstat from the lock acquisition serves
 * when nothing can have changed since (start of the session).  *at: a wall
 * time no later than the stat. */
static int s_dir_stat_start(s_file *f, const s_dir *d, struct stat *st,
                            struct timespec *at) {
    if (d->rellen == 0 && f->root_st_session == f->session) {
        *st = f->root_st;
        *at = f->root_st_at;
        return 0;
    }
    clock_gettime(CLOCK_REALTIME, at);
    return s_dir_stat(f, d, st);
}

static int64_t s_ts_ns(struct timespec t) {
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* First use of d in this session: compares its ctime with the record.  If
 * it changed (or the record is racy or missing), bumps d's epoch, so every
 * entry in d is verified before its next use (this session or a later
 * one), and records the ctime just read: entries verified after this stat
 * and in a directory whose ctime still matches it later are current.
 * Recording here, not at the end of the session, spares a second stat. */
static void s_dir_check(s_file *f, s_dir *d) {
    struct stat st;
    struct timespec at;
    d->checked = f->session;
    int src = s_dir_stat_start(f, d, &st, &at);
    d->suspect =
        !(d->have_rec && src == 0 && st.st_ctim.tv_sec == d->ctime_rec.tv_sec &&
          st.st_ctim.tv_nsec == d->ctime_rec.tv_nsec &&
          s_ts_ns(d->rec_at) - s_ts_ns(d->ctime_rec) >= S_RACY_NS);
    if (!d->suspect) return;
    d->epoch++;
    d->have_rec = src == 0;
    if (src == 0) {
        d->ctime_rec = st.st_ctim;
        d->rec_at = at;
    }
}

/* End of session: record the ctime of every directory we changed or found
 * changed, then forget directories with no cached entries. */
static void s_session_end(s_file *f) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (size_t i = 0; i < f->nrequeue; i++) {
        s_dir *d = f->requeue[i];
        struct stat st;
        if (s_dir_stat(f, d, &st) == 0) {
            d->ctime_rec = st.st_ctim;
            d->rec_at = now;
            d->have_rec = true;
        } else {
            d->have_rec = false;
        }
    }
    f->nrequeue = 0;
    s_dir *d, *dt;
    HASH_ITER(hh, f->dirs, d, dt) {
        if (d->nent == 0) {
            HASH_DEL(f->dirs, d);
            free(d);
        }
    }
}

/* Returns the current cached descriptor for pk, or NULL.  When it had to
 * fstat the descriptor and vst is not NULL, stores that stat in *vst and
 * sets *have_vst. */
static s_fd *s_cache_find(s_file *f, const pd__pkey *pk, struct stat *vst,
                          bool *have_vst) {
    s_fd *e = NULL;
    HASH_FIND(hh, f->cache, pk->p, pk->len, e);
    if (!e) return NULL;
    s_lockobj *lk = f->lk;
    uint64_t gen = __atomic_load_n(&lk->gen, __ATOMIC_SEQ_CST);
    if (gen != f->gen_seen) {
        f->gen_seen = gen;
        f->verify_all = f->session;
    }
    if (e->dir->checked != f->session) s_dir_check(f, e->dir);
    if ((e->epoch != e->dir->epoch || f->verify_all == f->session) &&
        e->verified != f->session) {
        struct stat st;
        if (fstat(e->fd, &st) < 0 || st.st_nlink == 0) {
            s_cache_evict(f, e);
            return NULL;
        }
        e->verified = f->session;
        e->epoch = e->dir->epoch;
        e->size = (uint64_t)st.st_size;
        if (vst) { /* the caller needs it (a get: the size) */
            *vst = st;
            *have_vst = true;
        }
    }
    if (f->lru != e) {
        DL_DELETE(f->lru, e);
        DL_PREPEND(f->lru, e);
    }
    return e;
}

static void s_cache_trim(s_file *f, size_t target) {
    while (f->ncache > target && f->lru) s_cache_evict(f, f->lru->prev);
}

/* Caches fd (just opened under the lock: current) for pk, whose file, of
 * `size` bytes, is rel (directory part: dirlen bytes).  NULL when not
 * cached (no cache, no memory): the caller closes fd after use. */
static s_fd *s_cache_add(s_file *f, const pd__pkey *pk, int fd, const char *rel,
                         size_t dirlen, uint64_t size, bool rdonly) {
    if (f->max_fds == 0) return NULL;
    s_dir *d = s_dir_get(f, rel, dirlen);
    if (!d) return NULL;
    s_fd *e = malloc(sizeof *e + pk->len);
    if (!e) return NULL;
    s_cache_trim(f, f->max_fds - 1);
    if (d->checked != f->session && d->nent > 0) {
        /* Its other entries may be stale: check it as s_cache_find would,
         * before marking it checked for this session. */
        s_dir_check(f, d);
    }
    e->fd = fd;
    e->dir = d;
    e->size = size;
    e->rdonly = rdonly;
    e->verified = f->session;
    e->klen = pk->len;
    memcpy(e->key, pk->p, pk->len);
    HASH_ADD(hh, f->cache, key, e->klen, e);
    if (!e->hh.tbl) { /* not cached: the caller closes fd after use */
        free(e);
        return NULL;
    }
    DL_PREPEND(f->lru, e);
    f->ncache++;
    d->nent++;
    if (d->checked != f->session) {
        /* A directory first seen now: its entries are fresh. */
        d->checked = f->session;
        d->suspect = !d->have_rec;
        if (d->suspect) s_dir_touch(f, d);
    }
    e->epoch = d->epoch; /* just opened: current */
    return e;
}

static void s_cache_drop_key(s_file *f, const pd__pkey *pk) {
    s_fd *e = NULL;
    HASH_FIND(hh, f->cache, pk->p, pk->len, e);
    if (e) s_cache_evict(f, e);
}

/* ------------------------------------------------------------- Sessions */

/* Forked child: drop inherited descriptors and lock. */
static int s_check_fork(s_file *f) {
    if (PD__LIKELY(f->pid == pd__getpid())) return 0;
    /* Closing the child's copies leaves the parent's descriptors open. */
    s_cache_clear(f);
    s_lockobj *old = f->lk;
    f->lk = NULL;
    f->pid = pd__getpid();
    s_lockobj_put(old);
    f->lk = s_lockobj_get(f);
    if (!f->lk) return pd__err_inner(&f->base, NULL, PD_ERR_IO);
    f->epoch_seen = f->lk->epoch;
    f->gen_seen = f->lk->gen;
    return 0;
}

static int s_reopen_root(s_file *f) {
    int fd = open(f->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pd__err(&f->base, PD_ERR_IO, errno, "lock: reopen %s", f->path);
    s_cache_clear(f);
    s_close(f->rootfd);
    f->rootfd = fd;
    return 0;
}

static int s_lock(pd_store *s) {
    s_file *f = (s_file *)s;
    int rc = s_check_fork(f);
    if (rc) return rc;
    s_lockobj *lk = f->lk;
    pthread_mutex_lock(&lk->mu);
    if (lk->depth == 0) {
        rc = s_lockobj_flock(f, lk);
        if (rc) {
            pthread_mutex_unlock(&lk->mu);
            return rc;
        }
    }
    lk->depth++;
    if (f->epoch_seen != lk->epoch) {
        rc = s_reopen_root(f);
        if (rc) {
            if (--lk->depth == 0) s_flock(lk->fd, LOCK_UN);
            pthread_mutex_unlock(&lk->mu);
            return rc;
        }
        f->epoch_seen = lk->epoch;
    }
    f->session++;
    f->in_session = true;
    return 0;
}

static int s_unlock(pd_store *s) {
    s_file *f = (s_file *)s;
    s_lockobj *lk = f->lk;
    s_session_end(f);
    f->in_session = false;
    int rc = 0;
    if (--lk->depth == 0 && s_flock(lk->fd, LOCK_UN) < 0)
        rc = pd__err(&f->base, PD_ERR_IO, errno, "unlock: flock(%s/.lock)",
                     f->path);
    pthread_mutex_unlock(&lk->mu);
    return rc;
}

/* -------------------------------------------------------------- Opening */

/* Checks a freshly opened descriptor: a regular file with one link. */
static int s_check_regular(int fd, struct stat *st) {
    if (fstat(fd, st) < 0) return -1;
    if (!S_ISREG(st->st_mode)) {
        errno = S_ISDIR(st->st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    if (st->st_nlink > 1) {
        errno = EMLINK;
        return -1;
    }
    return 0;
}

typedef struct s_target {
    const pd_key *key;
    pd__pkey pk;
    bool have_rel;
    s_str rel;
    size_t dirlen;  /* length of the directory part of rel */
    bool have_st;   /* st: a stat of the descriptor taken this session */
    struct stat st; /* (a get reads its expected size from it) */
    s_fd *ent;      /* the cache entry of the descriptor in use, or NULL */
    bool exists;    /* the file is known to exist (append: open it first) */
} s_target;

/* Packs the key (for the cache); the file name is built by s_target_rel
 * only when the cache misses. */
static int s_target_pk(s_target *t, const pd_key *key) {
    t->key = key;
    t->have_rel = false;
    t->have_st = false;
    t->ent = NULL;
    t->exists = false;
    t->pk.p = NULL;
    s_str_init(&t->rel);
    return pd__pkey_set(&t->pk, key) ? -1 : 0;
}

static int s_target_rel(s_target *t) {
    if (t->have_rel) return 0;
    if (s_relpath(t->key, &t->rel)) return -1;
    char *slash = strrchr(t->rel.p, '/');
    t->dirlen = slash ? (size_t)(slash - t->rel.p) : 0;
    t->have_rel = true;
    return 0;
}

/* The relative file name, built on demand (for messages). */
static const char *s_target_relp(s_target *t) {
    return s_target_rel(t) == 0 ? t->rel.p : "(name unavailable)";
}

static int s_target_init(s_target *t, const pd_key *key) {
    if (s_target_pk(t, key)) return -1;
    return s_target_rel(t);
}

static void s_target_free(s_target *t) {
    if (t->pk.p) pd__pkey_free(&t->pk);
    s_str_free(&t->rel);
}

/* The key's cached descriptor (*cached set, t->ent its entry), or S_MISS
 * with the file name built for opening it, or -1 with an error set.  For
 * `write`, a read-only descriptor (a get's) is closed and missed, with
 * t->exists set: its file was there a moment ago. */
#define S_MISS (-3)
static int s_cached_fd(s_file *f, const pd_key *key, s_target *t,
                       const char *op, bool write, bool *cached) {
    *cached = false;
    if (f->in_session) {
        s_fd *e = s_cache_find(f, &t->pk, &t->st, &t->have_st);
        if (e && write && e->rdonly) {
            s_cache_evict(f, e);
            t->have_st = false;
            t->exists = true;
        } else if (e) {
            *cached = true;
            t->ent = e;
            return e->fd;
        }
    }
    if (s_target_rel(t))
        return s_err_key(f, PD_ERR_NOMEM, ENOMEM, op, key,
                         "building its file name", NULL),
               -1;
    return S_MISS;
}

/* Opens key's file for appending (creating it and its directories).
 * Returns fd (cached: *cached set, don't close) or -1 with an error set.
 * *created tells whether the file is new. */
static int s_open_append(s_file *f, const pd_key *key, s_target *t,
                         const char *op, bool *cached, bool *created) {
    *created = false;
    int fd = s_cached_fd(f, key, t, op, true, cached);
    if (fd != S_MISS) return fd;
    int dfd;
    const char *name, *failed;
    if (s_walk(f, t->rel.p, true, &dfd, &name, &failed) < 0) {
        int e = errno;
        if (e == ENOTDIR || e == EEXIST || e == ELOOP)
            return s_err_conflict(f, op, key, t->rel.p), -1;
        return s_err_key(f, s_io_code(e), e, op, key, failed, t->rel.p), -1;
    }
    /* A new file costs one call with O_CREAT|O_EXCL (and a file this call
     * created exclusively is surely regular with one link); an existing one
     * one plain open (plus the fstat that checks it).  Whichever fails is
     * followed by the other, so guess: an existing file when the cache just
     * held it, or when the recent misses mostly found their files (keys
     * reopened after eviction), else a new one (keys' first appends). */
    int flags = O_RDWR | O_APPEND | S_OPEN_FLAGS;
    bool excl = !(t->exists || f->exist_bias >= 2);
    fd = -1;
    for (int tries = 0; tries < 6; tries++) {
        fd = s_openat(dfd, name, excl ? flags | O_CREAT | O_EXCL : flags, 0666);
        if (fd >= 0) {
            *created = excl;
            break;
        }
        if (excl && errno == EEXIST) {
            excl = false; /* there (maybe created meanwhile): open it */
        } else if (!excl && errno == ENOENT) {
            excl = true; /* not there (maybe removed meanwhile): create it */
        } else if ((errno == EMFILE || errno == ENFILE) && f->ncache > 0) {
            s_cache_trim(f, f->ncache / 2);
        } else {
            break;
        }
    }
    int e = errno;
    struct stat st;
    st.st_size = 0;
    if (fd >= 0 && !*created && s_check_regular(fd, &st) < 0) {
        e = errno;
        s_close(fd);
        fd = -1;
    }
    if (fd >= 0 && !t->exists) {
        if (*created && f->exist_bias > 0) f->exist_bias--;
        if (!*created && f->exist_bias < 3) f->exist_bias++;
    }
    if (dfd != f->rootfd) s_close(dfd);
    if (fd < 0) {
        if (e == ELOOP || e == EISDIR || e == EINVAL || e == EMLINK ||
            e == ENXIO)
            return s_err_type(f, op, key, t->rel.p, e), -1;
        return s_err_key(f, s_io_code(e), e, op, key, "open", t->rel.p), -1;
    }
    if (f->in_session) {
        s_dir *d = NULL;
        t->ent = s_cache_add(f, &t->pk, fd, t->rel.p, t->dirlen,
                             (uint64_t)st.st_size, false);
        if (t->ent) {
            *cached = true;
            d = t->ent->dir;
        }
        if (*created) {
            if (!d) d = s_dir_get(f, t->rel.p, t->dirlen);
            s_dir_touch(f, d);
        }
    }
    return fd;
}

/* Opens key's file for reading.  Returns fd (to close unless *cached), or
 * -2 when the key has no file, or -1 with an error set.  A descriptor
 * opened here is cached too (read-only): a key read again costs no open,
 * and caching costs nothing (the close just comes later, at eviction). */
static int s_open_read(s_file *f, const pd_key *key, s_target *t,
                       const char *op, bool *cached) {
    int fd = s_cached_fd(f, key, t, op, false, cached);
    if (fd != S_MISS) return fd;
    int dfd;
    const char *name, *failed;
    if (s_walk(f, t->rel.p, false, &dfd, &name, &failed) < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR || e == ELOOP) return -2;
        return s_err_key(f, s_io_code(e), e, op, key, failed, t->rel.p), -1;
    }
    for (int tries = 0;; tries++) {
        fd = s_openat(dfd, name, O_RDONLY | S_OPEN_FLAGS, 0);
        if (fd >= 0 || tries == 2 || (errno != EMFILE && errno != ENFILE) ||
            f->ncache == 0)
            break;
        s_cache_trim(f, f->ncache / 2); /* our cache holds the descriptors */
    }
    int e = errno;
    if (dfd != f->rootfd) s_close(dfd);
    if (fd < 0) {
        if (e == ENOENT || e == ENOTDIR) return -2;
        if (e == ELOOP) return s_err_type(f, op, key, t->rel.p, e), -1;
        return s_err_key(f, s_io_code(e), e, op, key, "open", t->rel.p), -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        e = errno;
        s_close(fd);
        return s_err_key(f, PD_ERR_IO, e, op, key, "fstat", t->rel.p), -1;
    }
    t->st = st; /* the read's expected size: no second fstat */
    t->have_st = true;
    if (S_ISDIR(st.st_mode)) { /* the prefix of tuple keys: no value */
        s_close(fd);
        return -2;
    }
    if (!S_ISREG(st.st_mode)) {
        s_close(fd);
        return s_err_key(f, PD_ERR_KEY, 0, op, key,
                         "not a regular file (refusing to read it)", t->rel.p),
               -1;
    }
    if (f->in_session) {
        t->ent = s_cache_add(f, &t->pk, fd, t->rel.p, t->dirlen,
                             (uint64_t)st.st_size, true);
        *cached = t->ent != NULL;
    }
    return fd;
}

/* ---------------------------------------------------------------- Append */

typedef struct s_undo {
    size_t key; /* index into keys */
    size_t len; /* bytes this batch wrote */
    bool created;
} s_undo;

/* Undoes one write of the batch: a file the batch created is removed, any
 * other is truncated by the bytes written.  0 or -1 with errno. */
static int s_undo_one(s_file *f, const pd_key *key, const s_undo *u) {
    s_target t;
    if (s_target_init(&t, key)) {
        s_target_free(&t);
        errno = ENOMEM;
        return -1;
    }
    int rc = 0, dfd = -1, fd = -1;
    const char *name, *failed;
    bool cached = false;
    s_fd *ent = NULL;
    if (u->created) {
        s_cache_drop_key(f, &t.pk);
    } else if (f->in_session) {
        HASH_FIND(hh, f->cache, t.pk.p, t.pk.len, ent);
        if (ent && !ent->rdonly) {
            fd = ent->fd;
            cached = true;
        } else {
            ent = NULL;
        }
    }
    if (fd < 0) {
        if (s_walk(f, t.rel.p, false, &dfd, &name, &failed) < 0) {
            rc = -1;
            goto out;
        }
        if (u->created) {
            rc = SYS.unlinkat(dfd, name, 0);
            goto out;
        }
        fd = s_openat(dfd, name, O_RDWR | S_OPEN_FLAGS, 0);
        if (fd < 0) {
            rc = -1;
            goto out;
        }
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -1;
    } else if ((uint64_t)st.st_size < u->len) {
        errno = ESPIPE;
        rc = -1;
    } else {
        rc = SYS.ftruncate(fd, st.st_size - (off_t)u->len);
        if (rc == 0 && ent) ent->size = (uint64_t)st.st_size - u->len;
    }
out:;
    int e = errno;
    if (fd >= 0 && !cached) s_close(fd);
    if (dfd >= 0 && dfd != f->rootfd) s_close(dfd);
    s_target_free(&t);
    errno = e;
    return rc < 0 ? -1 : 0;
}

/* Undoes the batch's writes in reverse order, after an error already set on
 * f; a failure to undo is added to that message. */
static void s_rollback(s_file *f, const pd_key *keys, const s_undo *u,
                       size_t nu) {
    for (size_t i = nu; i-- > 0;) {
        if (u[i].len == 0 && !u[i].created) continue;
        if (s_undo_one(f, &keys[u[i].key], &u[i]) == 0) continue;
        int e = errno, code = pd_errcode(&f->base), sys = pd_errno(&f->base);
        char first[PD__MSG_MAX], kb[PD__KEYSHORT_MAX];
        snprintf(first, sizeof first, "%s",
                 pd_errmsg(&f->base) + strlen(f->base.ops->kind) + 2);
        pd__err(&f->base, code, 0,
                "%.700s; and the rollback of %s failed (%s): %zu bytes of "
                "this batch remain at its end",
                first, pd__key_short(&keys[u[i].key], kb), strerror(e),
                u[i].len);
        pd__err_set_sys(&f->base, sys);
    }
}

static int s_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags) {
    s_file *f = (s_file *)s;
    int rc = s_check_fork(f);
    if (rc) return rc;
    bool dosync = (flags & PD_FSYNC) || f->fsync_all;
    s_undo *undo = malloc(n * sizeof *undo);
    if (!undo) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "append: undo log");
    size_t nu = 0;
    for (size_t i = 0; i < n; i++) {
        s_target t;
        if (s_target_pk(&t, &keys[i])) {
            s_target_free(&t);
            rc = s_err_key(f, PD_ERR_NOMEM, ENOMEM, "append", &keys[i],
                           "building its file name", NULL);
            break;
        }
        bool cached, created;
        int fd = s_open_append(f, &keys[i], &t, "append", &cached, &created);
        if (fd < 0) {
            s_target_free(&t);
            rc = pd_errcode(s);
            break;
        }
        undo[nu] = (s_undo){i, 0, created};
        size_t w = s_write_all(fd, vals[i].data, vals[i].size);
        int e = errno;
        if (t.ent) t.ent->size += w; /* a get's expected size */
        undo[nu].len = w;
        nu++;
        if (w < vals[i].size) {
            rc = s_err_key(f, s_io_code(e), e, "append", &keys[i], "write",
                           s_target_relp(&t));
        } else if (dosync && s_fsync(fd) < 0) {
            e = errno;
            rc = s_err_key(f, PD_ERR_IO, e, "append", &keys[i], "fsync",
                           s_target_relp(&t));
        } else if (dosync && created) {
            int dfd;
            const char *name, *failed;
            char *relcopy = strdup(s_target_relp(&t));
            if (relcopy &&
                s_walk(f, relcopy, false, &dfd, &name, &failed) == 0) {
                if (s_fsync(dfd) < 0) {
                    e = errno;
                    rc = s_err_key(f, PD_ERR_IO, e, "append", &keys[i],
                                   "fsync(directory of)", s_target_relp(&t));
                }
                if (dfd != f->rootfd) s_close(dfd);
            }
            free(relcopy);
        }
        if (!cached) s_close(fd);
        s_target_free(&t);
        if (rc) break;
    }
    if (rc) s_rollback(f, keys, undo, nu);
    free(undo);
    return rc;
}

/* ------------------------------------------------------------------- Get */

/* Slack reserved beyond a value's expected size: a read that comes back
 * short inside it finds the end of the file in one call, even when the file
 * grew a little (another handle appended).  Bounded, so that reserving it
 * wastes little memory however large the value. */
#define S_SLACK_MIN 256
#define S_SLACK_MAX 4096
#define S_GROW_MAX 8         /* fstats for a file growing while we read it */
#define S_READ_MAX (1 << 30) /* bytes per pread (Linux's own cap: 2 GiB) */

static size_t s_slack(uint64_t expect) {
    uint64_t s = expect / 16;
    return s < S_SLACK_MIN   ? S_SLACK_MIN
           : s > S_SLACK_MAX ? S_SLACK_MAX
                             : (size_t)s;
}

/* Reads fd's file to its end as the current value.  The expected size is
 * the stat taken under this lock (open or verification) or else the size
 * the cache remembers for the descriptor (as last read, plus our appends):
 * one pread of it plus slack, and a read that comes back short at or past
 * the expected size is the end of the file (a regular file's reads are
 * short only there), so a cached get needs no fstat.  A short read before
 * it (the file was truncated, or the file system splits reads) reads on
 * until a read returns 0.  A read that fills the reservation means the
 * file grew (another handle or process appended): one fstat sizes the
 * rest.  A file that keeps growing (only a writer ignoring the lock can do
 * that) is read up to its size at the last of S_GROW_MAX fstats. */
static int s_read_into(s_file *f, const pd_key *key, s_target *t, int fd,
                       pd_result *r) {
    struct stat st;
    uint64_t expect;
    if (t->have_st)
        expect = (uint64_t)t->st.st_size;
    else if (t->ent)
        expect = t->ent->size;
    else if (fstat(fd, &st) < 0)
        return s_err_key(f, PD_ERR_IO, errno, "get", key, "fstat",
                         s_target_relp(t));
    else
        expect = (uint64_t)st.st_size;
    size_t got = 0;
    int rc = 0;
    for (int grows = 0;;) {
        if (expect > (uint64_t)SIZE_MAX / 2) {
            rc = s_err_key(f, PD_ERR_LIMIT, 0, "get", key,
                           "value larger than this machine's address space",
                           NULL);
            break;
        }
        size_t want =
            ((size_t)expect > got ? (size_t)expect - got : 0) + s_slack(expect);
        char *p = pd__result_reserve(r, want);
        if (!p) {
            char kb[PD__KEYSHORT_MAX];
            rc = pd__err(&f->base, PD_ERR_NOMEM, ENOMEM,
                         "get %s: no memory for its %llu bytes",
                         pd__key_short(key, kb), (unsigned long long)expect);
            break;
        }
        size_t ask = want < S_READ_MAX ? want : S_READ_MAX;
        ssize_t k = SYS.pread(fd, p, ask, (off_t)got);
        if (k < 0) {
            if (errno == EINTR) continue;
            rc = s_err_key(f, PD_ERR_IO, errno, "get", key, "read",
                           s_target_relp(t));
            break;
        }
        /* committed at once: growing the reservation keeps only what is
         * committed */
        pd__result_commit(r, (size_t)k);
        got += (size_t)k;
        if (k == 0 || ((size_t)k < ask && got >= expect)) break; /* EOF */
        if ((size_t)k < want) continue;
        /* filled: the file is longer than expected */
        if (++grows > S_GROW_MAX) break;
        if (fstat(fd, &st) < 0) {
            rc = s_err_key(f, PD_ERR_IO, errno, "get", key, "fstat",
                           s_target_relp(t));
            break;
        }
        if ((uint64_t)st.st_size <= got) break; /* exactly filled */
        expect = (uint64_t)st.st_size;
    }
    if (rc) {
        pd__result_discard_current(r);
        return rc;
    }
    if (t->ent) t->ent->size = got;
    return 0;
}

static int s_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags) {
    (void)flags;
    s_file *f = (s_file *)s;
    int rc = s_check_fork(f);
    if (rc) return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        s_target t;
        if (s_target_pk(&t, &keys[i])) {
            s_target_free(&t);
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: key name");
        }
        bool cached;
        int fd = s_open_read(f, &keys[i], &t, "get", &cached);
        if (fd == -1)
            rc = pd_errcode(s);
        else if (fd >= 0) {
            rc = s_read_into(f, &keys[i], &t, fd, r);
            if (!cached) s_close(fd);
        }
        if (rc == 0 && pd__result_next(r))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get: result table");
        s_target_free(&t);
    }
    return rc;
}

/* ---------------------------------------------------------------- Delete */

/* Removes empty "%~" continuation directories left above rel's file. */
static void s_prune_pieces(s_file *f, char *rel) {
    for (;;) {
        char *slash = strrchr(rel, '/');
        if (!slash) return;
        *slash = 0;
        char *last = strrchr(rel, '/');
        const char *name = last ? last + 1 : rel;
        if (strncmp(name, "%~", 2) != 0) return;
        int dfd;
        const char *nm, *failed;
        if (s_walk(f, rel, false, &dfd, &nm, &failed) < 0) return;
        int rc = SYS.unlinkat(dfd, nm, AT_REMOVEDIR);
        if (dfd != f->rootfd) s_close(dfd);
        if (rc < 0) return;
    }
}

static int s_delete_one(s_file *f, const pd_key *key, const char *op) {
    s_target t;
    if (s_target_init(&t, key)) {
        s_target_free(&t);
        return pd__err(&f->base, PD_ERR_NOMEM, ENOMEM, "%s: key name", op);
    }
    s_cache_drop_key(f, &t.pk);
    int dfd, rc = 0;
    const char *name, *failed;
    if (s_walk(f, t.rel.p, false, &dfd, &name, &failed) == 0) {
        if (SYS.unlinkat(dfd, name, 0) == 0) {
            f->gen_seen = __atomic_add_fetch(&f->lk->gen, 1, __ATOMIC_SEQ_CST);
            if (f->in_session) {
                s_dir *d = NULL;
                HASH_FIND(hh, f->dirs, t.rel.p, t.dirlen, d);
                if (d) s_dir_touch(f, d);
            }
            if (strstr(t.rel.p, "%~")) s_prune_pieces(f, t.rel.p);
        } else if (errno != ENOENT && errno != ENOTDIR && errno != EISDIR) {
            rc = s_err_key(f, PD_ERR_IO, errno, op, key, "unlink", t.rel.p);
        }
        if (dfd != f->rootfd) s_close(dfd);
    } else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP) {
        rc = s_err_key(f, PD_ERR_IO, errno, op, key, failed, t.rel.p);
    }
    s_target_free(&t);
    return rc;
}

static int s_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags) {
    (void)flags;
    s_file *f = (s_file *)s;
    int rc = s_check_fork(f);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = s_delete_one(f, &keys[i], "delete");
    return rc;
}

/* ------------------------------------------------------------------- Set */

static int s_set_one(s_file *f, const pd_key *key, pd_bytes val, bool dosync) {
    s_target t;
    if (s_target_init(&t, key)) {
        s_target_free(&t);
        return pd__err(&f->base, PD_ERR_NOMEM, ENOMEM, "iset: key name");
    }
    s_cache_drop_key(f, &t.pk);
    int dfd, rc = 0;
    const char *name, *failed;
    if (s_walk(f, t.rel.p, true, &dfd, &name, &failed) < 0) {
        int e = errno;
        if (e == ENOTDIR || e == EEXIST || e == ELOOP)
            rc = s_err_conflict(f, "iset", key, t.rel.p);
        else
            rc = s_err_key(f, s_io_code(e), e, "iset", key, failed, t.rel.p);
        s_target_free(&t);
        return rc;
    }
    char tmp[64];
    static unsigned counter;
    snprintf(tmp, sizeof tmp, "%%#%ld.%u.%lx", (long)pd__getpid(),
             __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED),
             (unsigned long)time(NULL));
    int fd =
        s_openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | S_OPEN_FLAGS, 0666);
    if (fd < 0) {
        rc = s_err_key(f, s_io_code(errno), errno, "iset", key,
                       "open(temporary for)", t.rel.p);
    } else {
        size_t w = s_write_all(fd, val.data, val.size);
        int e = errno;
        if (w < val.size)
            rc = s_err_key(f, s_io_code(e), e, "iset", key, "write", t.rel.p);
        else if (dosync && s_fsync(fd) < 0)
            rc = s_err_key(f, PD_ERR_IO, errno, "iset", key, "fsync", t.rel.p);
        s_close(fd);
        if (rc == 0 && SYS.renameat(dfd, tmp, dfd, name) < 0) {
            e = errno;
            rc = e == EISDIR || e == ENOTEMPTY
                     ? s_err_key(f, PD_ERR_KEY, e, "iset", key, "rename",
                                 t.rel.p)
                     : s_err_key(f, s_io_code(e), e, "iset", key, "rename",
                                 t.rel.p);
        }
        if (rc) SYS.unlinkat(dfd, tmp, 0);
        if (rc == 0) {
            f->gen_seen = __atomic_add_fetch(&f->lk->gen, 1, __ATOMIC_SEQ_CST);
            if (dosync && s_fsync(dfd) < 0)
                rc = s_err_key(f, PD_ERR_IO, errno, "iset", key,
                               "fsync(directory of)", t.rel.p);
        }
    }
    if (f->in_session) {
        s_dir *d = NULL;
        HASH_FIND(hh, f->dirs, t.rel.p, t.dirlen, d);
        if (d) s_dir_touch(f, d);
    }
    if (dfd != f->rootfd) s_close(dfd);
    s_target_free(&t);
    return rc;
}

static int s_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags) {
    s_file *f = (s_file *)s;
    int rc = s_check_fork(f);
    bool dosync = (flags & PD_FSYNC) || f->fsync_all;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = s_set_one(f, &keys[i], vals[i], dosync);
    return rc;
}

/* ------------------------------------------------------------------ Drop */

/* Removes everything inside directory dfd (consumed).  Never follows a
 * symlink: unlinkat removes the link itself. */
static int s_rmtree_fd(int dfd, bool top, const char **failed, int depth) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        s_close(dfd);
        *failed = "opendir";
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (!de) {
            if (errno) {
                rc = -1;
                *failed = "readdir";
            }
            break;
        }
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        if (top && !strcmp(nm, ".lock")) continue;
        bool isdir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            isdir = fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISDIR(st.st_mode);
        }
        if (isdir) {
            if (depth > 4096) {
                errno = ELOOP;
                *failed = "descend";
                rc = -1;
                continue;
            }
            int cfd = s_openat(dirfd(d), nm,
                               O_RDONLY | O_DIRECTORY | S_OPEN_FLAGS, 0);
            if (cfd < 0 || s_rmtree_fd(cfd, false, failed, depth + 1) < 0) {
                if (cfd < 0) *failed = "openat";
                rc = -1;
                continue;
            }
            if (SYS.unlinkat(dirfd(d), nm, AT_REMOVEDIR) < 0) {
                *failed = "rmdir";
                rc = -1;
            }
        } else if (SYS.unlinkat(dirfd(d), nm, 0) < 0 && errno != ENOENT) {
            *failed = "unlink";
            rc = -1;
        }
    }
    int e = errno;
    closedir(d);
    errno = e;
    return rc;
}

static int s_drop(pd_store *s, unsigned flags) {
    (void)flags;
    s_file *f = (s_file *)s;
    int rc = s_check_fork(f);
    if (rc) return rc;
    s_cache_clear(f);
    int dfd = s_openat(f->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    const char *failed = "openat";
    if (dfd < 0 || s_rmtree_fd(dfd, true, &failed, 0) < 0)
        rc = pd__err(s, PD_ERR_IO, errno, "drop: %s(%s)", failed, f->path);
    f->gen_seen = __atomic_add_fetch(&f->lk->gen, 1, __ATOMIC_SEQ_CST);
    return rc;
}

/* ------------------------------------------------------------------ Keys */

typedef struct s_walkctx {
    s_file *f;
    pd_keylist *kl;
    pd_bytes parts[PD_KEY_MAX_PARTS];
    s_str partbuf[PD_KEY_MAX_PARTS + 1]; /* decoded parts */
    int err;
    const char *failed;
} s_walkctx;

/* Decodes the name of a part: `name`, preceded by the "%~<piece>/" names of
 * the continuation directories walked through to reach it (acc, raw, each
 * with its trailing '/').  Returns -1 for anything that is not exactly what
 * s_encode_part writes for some part (a foreign file, a non-canonical
 * escape, pieces cut where the encoder would not cut), so every listed key
 * reads back from the very file that was listed. */
static int s_decode_name(const char *name, const s_str *acc, bool top,
                         s_str *out) {
    size_t n = strlen(name);
    out->len = 0;
    if (name[0] == '%' && (name[1] == '#' || name[1] == '~')) return -1;
    s_str enc, full;
    s_str_init(&enc);
    s_str_init(&full);
    int rc = 0;
    /* the escaped text: every piece, then the final name */
    for (size_t i = 0; i < acc->len && rc == 0;) {
        const char *c = acc->p + i;
        const char *slash = memchr(c, '/', acc->len - i);
        size_t clen = slash ? (size_t)(slash - c) : acc->len - i;
        if (clen < 2 || c[0] != '%' || c[1] != '~')
            rc = -1;
        else
            rc = s_str_add(&enc, c + 2, clen - 2);
        i += clen + 1;
    }
    if (rc == 0 && name[0] == '%') {
        rc = s_str_add(&enc, name + 1, n - 1);
        if (rc == 0) rc = s_pct_decode(enc.p, enc.len, out);
    } else if (rc == 0) {
        rc = acc->len ? -1 : s_str_add(out, name, n);
    }
    /* canonical only: encoding the part again gives the same names */
    if (rc == 0)
        rc = s_encode_part(&full, (const unsigned char *)out->p, out->len, top);
    if (rc == 0 &&
        (full.len != acc->len + n || memcmp(full.p, acc->p, acc->len) != 0 ||
         memcmp(full.p + acc->len, name, n) != 0))
        rc = -1;
    s_str_free(&enc);
    s_str_free(&full);
    return rc;
}

static int s_list_dir(s_walkctx *c, int dfd, size_t depth, s_str *acc,
                      int level);

static int s_list_entry(s_walkctx *c, int dfd, const char *nm, bool isdir,
                        size_t depth, s_str *acc, int level) {
    bool top = depth == 0;
    if (isdir && nm[0] == '%' && nm[1] == '~') {
        /* continuation of a long part */
        s_str more;
        s_str_init(&more);
        if (s_str_add(&more, acc->p, acc->len) ||
            s_str_add(&more, nm, strlen(nm)) || s_str_add(&more, "/", 1)) {
            s_str_free(&more);
            return -1;
        }
        int cfd = s_openat(dfd, nm, O_RDONLY | O_DIRECTORY | S_OPEN_FLAGS, 0);
        int rc = cfd < 0 ? 0 : s_list_dir(c, cfd, depth, &more, level + 1);
        s_str_free(&more);
        return rc;
    }
    s_str *part = &c->partbuf[depth];
    if (s_decode_name(nm, acc, top, part) < 0) return 0; /* not ours */
    if (isdir) {
        if (depth + 1 >= PD_KEY_MAX_PARTS) return 0;
        int cfd = s_openat(dfd, nm, O_RDONLY | O_DIRECTORY | S_OPEN_FLAGS, 0);
        if (cfd < 0) return 0;
        s_str empty;
        s_str_init(&empty);
        return s_list_dir(c, cfd, depth + 1, &empty, level + 1);
    }
    struct stat st;
    if (fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return 0;
    for (size_t i = 0; i <= depth; i++)
        c->parts[i] = (pd_bytes){c->partbuf[i].p, c->partbuf[i].len};
    pd_key k = depth == 0 ? PD_KEY(c->parts[0].data, c->parts[0].size)
                          : PD_KEY_TUPLE(c->parts, depth + 1);
    char why[64];
    if (pd__key_check(&k, why)) return 0;
    if (pd__keylist_add(c->kl, &k, (uint64_t)st.st_size)) {
        c->err = PD_ERR_NOMEM;
        return -1;
    }
    return 0;
}

static int s_list_dir(s_walkctx *c, int dfd, size_t depth, s_str *acc,
                      int level) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        s_close(dfd);
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && level < 4096) {
        errno = 0;
        de = readdir(d);
        if (!de) {
            if (errno) {
                c->err = PD_ERR_IO;
                c->failed = "readdir";
                rc = -1;
            }
            break;
        }
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        if (level == 0 && !strcmp(nm, ".lock")) continue;
        bool isdir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            isdir = fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISDIR(st.st_mode);
        } else if (de->d_type != DT_DIR && de->d_type != DT_REG) {
            continue;
        }
        rc = s_list_entry(c, dirfd(d), nm, isdir, depth, acc, level);
    }
    closedir(d);
    return rc;
}

static int s_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    s_file *f = (s_file *)s;
    int rc = s_check_fork(f);
    if (rc) return rc;
    s_walkctx *c = calloc(1, sizeof *c);
    if (!c) return pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: walk state");
    c->f = f;
    c->kl = kl;
    for (size_t i = 0; i <= PD_KEY_MAX_PARTS; i++) s_str_init(&c->partbuf[i]);
    int dfd = s_openat(f->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (dfd < 0) {
        rc = pd__err(s, PD_ERR_IO, errno, "keys: openat(%s)", f->path);
    } else {
        s_str acc;
        s_str_init(&acc);
        if (s_list_dir(c, dfd, 0, &acc, 0) < 0)
            rc = c->err == PD_ERR_NOMEM
                     ? pd__err(s, PD_ERR_NOMEM, ENOMEM, "keys: list")
                     : pd__err(s, PD_ERR_IO, errno, "keys: %s(%s)",
                               c->failed ? c->failed : "walk", f->path);
    }
    for (size_t i = 0; i <= PD_KEY_MAX_PARTS; i++) s_str_free(&c->partbuf[i]);
    free(c);
    return rc;
}

/* ----------------------------------------------------------------- Close */

static int s_destroy(pd_store *s) {
    s_file *f = (s_file *)s;
    int rc = 0;
    s_cache_clear(f); /* in a forked child: its copies only */
    if (f->temp && !f->keep && f->pid == pd__getpid()) {
        int dfd =
            s_openat(f->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        const char *failed = "openat";
        if (dfd < 0 || s_rmtree_fd(dfd, false, &failed, 0) < 0)
            rc = pd__err(s, PD_ERR_IO, errno, "close: %s(%s)", failed, f->path);
        else if (rmdir(f->path) < 0)
            rc = pd__err(s, PD_ERR_IO, errno, "close: rmdir(%s)", f->path);
    }
    s_lockobj_put(f->lk);
    f->lk = NULL;
    if (f->rootfd >= 0) close(f->rootfd);
    free(f->requeue);
    free(f->path);
    return rc;
}

/* ------------------------------------------------------------------ Open */

static const pd_store_ops s_file_ops = {
    .kind = "file",
    .append = s_append,
    .get = s_get,
    .del = s_del,
    .set = s_set,
    .drop = s_drop,
    .keys = s_keys,
    .lock = s_lock,
    .unlock = s_unlock,
    .destroy = s_destroy,
};

static size_t s_default_max_fds(void) {
    struct rlimit rl;
    size_t lim = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
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
        if (mkdir(p, 0777) < 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            errno = e;
            return -1;
        }
        *q = '/';
    }
    int rc = mkdir(p, 0777) < 0 && errno != EEXIST ? -1 : 0;
    int e = errno;
    free(p);
    errno = e;
    return rc;
}

static int s_open(pd_store **out, const char *path, unsigned flags, bool temp) {
    s_file *f = calloc(1, sizeof *f);
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
    f->rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->rootfd < 0) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "file: open %s", path);
        goto fail;
    }
    f->path = realpath(path, NULL);
    if (!f->path) {
        rc = pd__err(NULL, PD_ERR_IO, errno, "file: open: realpath(%s)", path);
        goto fail;
    }
    if (strlen(f->path) > PATH_MAX - 16) {
        rc = pd__err(NULL, PD_ERR_LIMIT, ENAMETOOLONG, "file: open %s", path);
        goto fail;
    }
    f->lk = s_lockobj_get(f);
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
    if (f->rootfd >= 0) close(f->rootfd);
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
    if (!mkdtemp(tmpl)) {
        int e = errno;
        pd__err(NULL, PD_ERR_IO, e, "file: open temp: mkdtemp(%s)", tmpl);
        free(tmpl);
        return PD_ERR_IO;
    }
    int rc = s_open(out, tmpl, flags, true);
    if (rc) rmdir(tmpl);
    free(tmpl);
    return rc;
}

const char *pd_file_path(const pd_store *s) {
    if (!s || s->ops != &s_file_ops) return NULL;
    return ((const s_file *)s)->path;
}

size_t pd_file_filename(const pd_store *s, const pd_key *key, char *buf,
                        size_t cap) {
    char why[64];
    if (!buf) cap = 0;
    if (cap) buf[0] = 0;
    if (!s || s->ops != &s_file_ops || !key || pd__key_check(key, why))
        return 0;
    s_str rel;
    if (s_relpath(key, &rel)) {
        s_str_free(&rel);
        return 0;
    }
    int n = snprintf(buf, cap, "%s/%s", ((const s_file *)s)->path, rel.p);
    s_str_free(&rel);
    return n < 0 ? 0 : (size_t)n;
}

int pd_file_set_max_fds(pd_store *s, size_t max_fds) {
    if (!s || s->ops != &s_file_ops)
        return pd__err(s, PD_ERR_MISUSE, 0, "set_max_fds: not a file store");
    s_file *f = (s_file *)s;
    pthread_mutex_lock(&s->mu);
    f->max_fds = max_fds;
    s_cache_trim(f, max_fds);
    pthread_mutex_unlock(&s->mu);
    pd__err_clear(s);
    return 0;
}
