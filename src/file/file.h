/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The File store's private header, shared by the files of src/file/: a store
 * in a directory, one file per key, compatible with the Python reference's
 * layout and lock file (docs/file-layout.md).
 *
 *   names.c    key <-> file name (the %-escape, long names cut in pieces)
 *   lock.c     the process-wide lock registry (flock on <root>/.lock, fork
 *              handling) and the lock/unlock ops that open sessions
 *   fdcache.c  the descriptor cache and the directory ctime checks
 *   walk.c     walking a key's path, and the one directory-listing loop
 *              that drop, keys and close use
 *   keyfile.c  opening a key's file (cached or not) and the error messages
 *   ops.c      append (with rollback), get, delete, iset
 *   file.c     open, close, the ops table and the pd_file_* functions
 *
 * Safety.  Everything is opened relative to the root descriptor, one
 * component at a time, with O_NOFOLLOW: no symlink inside the store is ever
 * followed, and no name can contain '/', so nothing is created, written or
 * read outside the root.  Files must be regular with one link.  Every system
 * call goes through pd__sys_table (core/internal.h), for the fault tests.
 */
#ifndef PARTD_FILE_H
#define PARTD_FILE_H

#include "core/internal.h"

#include "core/buf.h"
#include "core/hash.h"

#include <errno.h>
#include <fcntl.h>

#define SYS pd__sys_table
#define PD__FILE_OPEN_FLAGS (O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)

/* ------------------------------------------------------------ The handle */

/* One lock object per store directory per process (lock.c). */
typedef struct pd__file_lockobj {
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
} pd__file_lockobj;

typedef struct pd__file_dir {
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
} pd__file_dir;

typedef struct pd__file_fd {
    UT_hash_handle hh;
    struct pd__file_fd *prev, *next; /* LRU: head is most recent */
    int fd;
    pd__file_dir *dir;
    uint64_t verified; /* session in which it was last known current */
    uint64_t epoch;    /* its directory's epoch then */
    uint64_t size;     /* file size as last seen: read, stat, our appends */
    bool rdonly;       /* opened by a get: an append reopens it */
    size_t klen;
    unsigned char key[]; /* packed key: hash key */
} pd__file_fd;

typedef struct pd__file {
    pd_store base;
    char *path; /* realpath of the root */
    int rootfd;
    bool temp, keep, fsync_all;
    pid_t pid;
    pd__file_lockobj *lk;
    uint64_t epoch_seen; /* lk->epoch when rootfd was opened */
    uint64_t gen_seen;
    uint64_t session;           /* incremented at each lock; 0: none yet */
    struct stat root_st;        /* fstat of rootfd taken when locking ... */
    struct timespec root_st_at; /* (wall time just before it) ... */
    uint64_t root_st_session;   /* ... in this session */
    bool in_session;
    uint64_t verify_all; /* session in which every entry must be verified */
    pd__file_fd *cache;  /* hash by packed key */
    pd__file_fd *lru;
    size_t ncache, max_fds;
    pd__file_dir *dirs;
    pd__file_dir **requeue; /* dirs to re-record at the end of the session */
    size_t nrequeue, caprequeue;
    unsigned exist_bias; /* 0..3: >= 2 when recent append opens that missed
                          * the cache mostly found the file existing */
} pd__file;

/* A key being opened: its packed form (the cache's key) and, built only
 * when needed, its file name relative to the root. */
typedef struct pd__file_target {
    const pd_key *key;
    pd__pkey pk;
    bool have_rel;
    pd__buf rel;      /* the relative file name (a C string) */
    size_t dirlen;    /* length of the directory part of rel */
    bool have_st;     /* st: a stat of the descriptor taken this session */
    struct stat st;   /* (a get reads its expected size from it) */
    pd__file_fd *ent; /* the cache entry of the descriptor in use, or NULL */
    bool exists;      /* the file is known to exist (append: open it first) */
    char relinl[512];
} pd__file_target;

/* ------------------------------------------------------------- Syscalls */

static inline int pd__file_close(int fd) {
    if (fd < 0) return 0;
    return SYS.close(fd);
}

static inline int pd__file_openat(int dirfd, const char *name, int flags,
                                  mode_t mode) {
    int fd;
    do fd = SYS.openat(dirfd, name, flags, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

static inline int pd__file_fsync(int fd) {
    int rc;
    do rc = SYS.fsync(fd);
    while (rc < 0 && errno == EINTR);
    return rc;
}

static inline int pd__file_flock(int fd, int op) {
    int rc;
    do rc = SYS.flock(fd, op);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* The wall clock; zero when it can't be read (a zero time makes every
 * ctime record look racy, so nothing is trusted on it). */
static inline void pd__file_now(struct timespec *ts) {
    if (SYS.clock_gettime(CLOCK_REALTIME, ts) < 0) *ts = (struct timespec){0};
}

/* b's bytes as a C string ("" while b has no storage; never written). */
static inline char *pd__file_str(const pd__buf *b) {
    return b->p ? (char *)b->p : (char *)"";
}

/* ---------------------------------------------------------------- names.c */

/* Appends the name(s) of one part (the first part when `top`) to rel,
 * "/"-separated.  0 or -1 (no memory). */
int pd__file_encode_part(pd__buf *rel, const unsigned char *p, size_t n,
                         bool top);
/* Sets rel (emptied first) to the relative path of key's file.  0 or -1. */
int pd__file_relpath(const pd_key *key, pd__buf *rel);
/* Decodes the file name `name` of a part into out, `acc` holding the
 * "%~<piece>/" continuation directories walked through to reach it.  -1
 * for anything that is not exactly what pd__file_encode_part writes for
 * some part. */
int pd__file_decode_name(const char *name, const pd__buf *acc, bool top,
                         pd__buf *out);

/* ----------------------------------------------------------------- lock.c */

/* The lock object of f->path for this process (a reference).  NULL with
 * the thread's error set. */
pd__file_lockobj *pd__file_lockobj_get(pd__file *f);
void pd__file_lockobj_put(pd__file_lockobj *lk);
/* In a forked child: drops the inherited descriptors and lock object. */
int pd__file_check_fork(pd__file *f);
int pd__file_lock(pd_store *s);
int pd__file_unlock(pd_store *s);

/* -------------------------------------------------------------- fdcache.c */

void pd__file_cache_evict(pd__file *f, pd__file_fd *e);
void pd__file_cache_clear(pd__file *f);
void pd__file_cache_trim(pd__file *f, size_t target);
/* The directory record of rel[0..rellen), created if needed; NULL when out
 * of memory. */
pd__file_dir *pd__file_dir_get(pd__file *f, const char *rel, size_t rellen);
/* Queues d (may be NULL) to have its ctime recorded at the session's end. */
void pd__file_dir_touch(pd__file *f, pd__file_dir *d);
/* In a session: touches the directory record of rel[0..dirlen), if any. */
void pd__file_dir_touch_rel(pd__file *f, const char *rel, size_t dirlen);
/* The current cached descriptor for pk, or NULL.  When it had to fstat it
 * and vst is not NULL, stores that stat in *vst and sets *have_vst. */
pd__file_fd *pd__file_cache_find(pd__file *f, const pd__pkey *pk,
                                 struct stat *vst, bool *have_vst);
/* Caches fd (just opened under the lock) for pk, whose file of `size` bytes
 * is rel (directory part: dirlen bytes).  NULL when not cached: the caller
 * closes fd after use. */
pd__file_fd *pd__file_cache_add(pd__file *f, const pd__pkey *pk, int fd,
                                const char *rel, size_t dirlen, uint64_t size,
                                bool rdonly);
void pd__file_cache_drop_key(pd__file *f, const pd__pkey *pk);
/* End of a session: records the ctimes of the directories queued. */
void pd__file_session_end(pd__file *f);

/* ----------------------------------------------------------------- walk.c */

/* Opens the directory holding the last component of rel, creating missing
 * directories when `create`.  *dirfd is f->rootfd (do not close) or a new
 * descriptor; *name points at the last component inside rel.  Returns 0, or
 * -1 with errno and *failed (the call that failed). */
int pd__file_walk(pd__file *f, char *rel, bool create, int *dirfd,
                  const char **name, const char **failed);
/* Removes everything inside directory dfd (consumed; at the top level the
 * lock file stays).  Never follows a symlink.  0, or -1 with errno and
 * *failed. */
int pd__file_rmtree(int dfd, bool top, const char **failed, int depth);
int pd__file_drop(pd_store *s, unsigned flags);
int pd__file_keys(pd_store *s, pd_keylist *kl, unsigned flags);

/* -------------------------------------------------------------- keyfile.c */

/* Errors naming the key (and its file, when rel is not NULL). */
int pd__file_err_key(pd__file *f, int code, int sys, const char *op,
                     const pd_key *key, const char *call, const char *rel);
/* A key's path holds something that is not a plain file of ours. */
int pd__file_err_type(pd__file *f, const char *op, const pd_key *key,
                      const char *rel, int e);
/* A directory on key's path is a file (another key) or a symlink. */
int pd__file_err_conflict(pd__file *f, const char *op, const pd_key *key,
                          const char *rel);
int pd__file_io_code(int e);

/* Packs the key (for the cache); the file name is built by
 * pd__file_target_rel only when the cache misses.  0 or -1. */
int pd__file_target_pk(pd__file_target *t, const pd_key *key);
int pd__file_target_rel(pd__file_target *t);
/* The relative file name, built on demand (for messages). */
const char *pd__file_target_relp(pd__file_target *t);
/* Both of the above. */
int pd__file_target_init(pd__file_target *t, const pd_key *key);
void pd__file_target_free(pd__file_target *t);
/* Opens key's file for appending (creating it and its directories).
 * Returns fd (cached: *cached set, don't close) or -1 with an error set.
 * *created tells whether the file is new. */
int pd__file_open_append(pd__file *f, const pd_key *key, pd__file_target *t,
                         const char *op, bool *cached, bool *created);
/* Opens key's file for reading.  Returns fd (to close unless *cached), or
 * -2 when the key has no file, or -1 with an error set. */
int pd__file_open_read(pd__file *f, const pd_key *key, pd__file_target *t,
                       const char *op, bool *cached);

/* ------------------------------------------------------------------ ops.c */

int pd__file_append(pd_store *s, size_t n, const pd_key *keys,
                    const pd_bytes *vals, unsigned flags);
int pd__file_get(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
                 unsigned flags);
int pd__file_del(pd_store *s, size_t n, const pd_key *keys, unsigned flags);
int pd__file_set(pd_store *s, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags);

#endif /* PARTD_FILE_H */
