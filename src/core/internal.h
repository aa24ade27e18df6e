/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Private declarations shared by libpartd's modules.  Nothing here is part of
 * the public API; only a module's own .c file knows its store struct.
 *
 * A store is a struct whose first member is `pd_store` (below), with an ops
 * table.  Public calls go through the dispatchers in store.c, which validate
 * arguments, clear the thread's last error, take the store's lock (unless
 * PD_NOLOCK), call the op, and record the result.  Ops always run with the
 * store's recursive mutex held (`mu`), so an op never needs to lock again;
 * a wrapper calls its inner stores through the public functions with
 * PD_NOLOCK, after its own lock hook has locked them once.
 */
#ifndef PARTD_INTERNAL_H
#define PARTD_INTERNAL_H

#include "partd/partd.h"
#include "core/buf.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#define PD__MSG_MAX 1024
#define PD__ALL_CALL_FLAGS (PD_NOLOCK | PD_FSYNC)

#if defined(__GNUC__)
#define PD__PRINTF(a, b) __attribute__((format(printf, a, b)))
#define PD__UNUSED __attribute__((unused))
#define PD__LIKELY(x) __builtin_expect(!!(x), 1)
#define PD__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define PD__PRINTF(a, b)
#define PD__UNUSED
#define PD__LIKELY(x) (x)
#define PD__UNLIKELY(x) (x)
#endif

/* ------------------------------------------------------------ Store base */

typedef struct pd_store_ops {
    const char *kind; /* "dict", "file", "buffer", ... */
    /* The table this one is a copy of (an Encode layer copies its template
     * to name itself after its codec), for pd__store_as; NULL otherwise. */
    const struct pd_store_ops *base;

    /* Required.  Each runs with `mu` held; flags has PD_NOLOCK set when the
     * dispatcher (or the caller) holds the full lock, clear otherwise. */
    int (*append)(pd_store *s, size_t n, const pd_key *keys,
                  const pd_bytes *vals, unsigned flags);
    /* Appends n values (one per key, in order) to r with pd__result_*. */
    int (*get)(pd_store *s, size_t n, const pd_key *keys, pd_result *r,
               unsigned flags);
    int (*del)(pd_store *s, size_t n, const pd_key *keys, unsigned flags);
    /* Replace each key's content (iset without the idempotence, which the
     * dispatcher keeps). */
    int (*set)(pd_store *s, size_t n, const pd_key *keys, const pd_bytes *vals,
               unsigned flags);
    int (*drop)(pd_store *s, unsigned flags);
    /* Adds every key and its size with pd__keylist_add. */
    int (*keys)(pd_store *s, pd_keylist *kl, unsigned flags);

    /* Optional (NULL: nothing to do).  lock runs when the store's lock depth
     * goes 0 -> 1, unlock when it goes 1 -> 0; both with mu held. */
    int (*lock)(pd_store *s);
    int (*unlock)(pd_store *s);
    /* Push buffered data into inner stores (close calls it first). */
    int (*flush)(pd_store *s);
    /* Required: release everything, close owned inner stores; every step
     * runs even if one fails; returns the first error (with a message set
     * on s).  Must not free s itself. */
    int (*destroy)(pd_store *s);

    /* Optional fast path: the chunks holding `key`'s bytes, in order, pointing
     * into the store.  *chunks is an array owned by the store; both stay
     * valid until the next call on the store (another peek included). */
    int (*peek)(pd_store *s, const pd_key *key, const pd_bytes **chunks,
                size_t *nchunks);

    /* Optional (NULL: refuses nothing locally): everything the write `op`
     * ("append", "iset" or "delete"; vals NULL for a delete) would check
     * before applying anything, without applying it: a Client's keys the
     * wire cannot carry, a batch past a request's limits, PD_FSYNC, the
     * replies of earlier requests it would read first.  0, or the error
     * the op would give, recorded on s.  Runs with mu held, through
     * pd__check_inner; a layer that spreads one batch over several stores
     * (the Fanout) checks every part before sending any. */
    int (*check)(pd_store *s, const char *op, size_t n, const pd_key *keys,
                 const pd_bytes *vals, unsigned flags);

    /* Optional: attempts (partd.h, "Attempts"); NULL gives
     * PD_ERR_UNSUPPORTED.  Run like the other ops (mu held; flags carry
     * PD_NOLOCK).  att_begin makes the store's state of an attempt in
     * *impl (the writer and keys are validated); att_append adds a batch to
     * it; att_commit and att_abort end it and free impl whatever the
     * outcome.  att_abort also runs in a forked child, where it must only
     * free (no I/O on the parent's behalf) and from pd_close. */
    int (*att_begin)(pd_store *s, const pd_key *writer, uint64_t attempt,
                     void **impl, unsigned flags);
    int (*att_append)(pd_store *s, void *impl, size_t n, const pd_key *keys,
                      const pd_bytes *vals, unsigned flags);
    int (*att_commit)(pd_store *s, void *impl, unsigned flags);
    int (*att_abort)(pd_store *s, void *impl);
} pd_store_ops;

/* The members of an ops table that every store module names alike: the
 * kind and the module's s_append, s_get, s_del, s_set, s_drop, s_keys and
 * s_destroy.  A table adds its optional members after it. */
#define PD__STORE_OPS(kind_)                                                   \
    .kind = kind_, .append = s_append, .get = s_get, .del = s_del,             \
    .set = s_set, .drop = s_drop, .keys = s_keys, .destroy = s_destroy

/* The four attempt ops of a module that names them <p>begin, <p>append,
 * <p>commit and <p>abort. */
#define PD__ATTEMPT_OPS(p)                                                     \
    .att_begin = p##begin, .att_append = p##append, .att_commit = p##commit,   \
    .att_abort = p##abort

/* Declares the four attempt ops <p>begin, <p>append, <p>commit and
 * <p>abort of a module that defines them in another file than its table. */
#define PD__ATTEMPT_DECLS(p)                                                   \
    int p##begin(pd_store *s, const pd_key *writer, uint64_t attempt,          \
                 void **impl, unsigned flags);                                 \
    int p##append(pd_store *s, void *impl, size_t n, const pd_key *keys,       \
                  const pd_bytes *vals, unsigned flags);                       \
    int p##commit(pd_store *s, void *impl, unsigned flags);                    \
    int p##abort(pd_store *s, void *impl)

typedef struct pd__seen pd__seen; /* keys seen by iset (uthash), store.c */

/* An attempt (core/attempt.c): the store's state of it (impl), and its
 * place in the store's list of open attempts, which pd_close aborts. */
struct pd_attempt {
    pd_store *store; /* NULL once the store is closed */
    void *impl;
    pid_t pid; /* the process that began it */
    uint64_t attempt;
    struct pd_attempt *next, *prev; /* store->attempts, under store->mu */
    pd_key writer;                  /* points into wpk / parts */
    pd_bytes parts[PD_KEY_MAX_PARTS];
    size_t wlen;
    unsigned char wpk[]; /* the writer, packed */
};

struct pd_store {
    const pd_store_ops *ops;
    pthread_mutex_t mu;   /* recursive; held by every op */
    pthread_t lock_owner; /* valid while lock_depth > 0 */
    unsigned lock_depth;  /* pd_lock nesting plus dispatcher locks */
    bool lock_explicit;   /* the session was opened by pd_lock: wrappers
                           * then lock every inner store at once, not
                           * lazily as an op needs it */
    pd__seen *iset_seen;  /* protected by mu */
    pd_attempt *attempts; /* open attempts, protected by mu */
    pid_t pid;            /* process that initialised the mutexes */

    pthread_mutex_t err_mu; /* protects the four below */
    int err_code;
    int err_sys;
    char err_msg[PD__MSG_MAX];
};

/* Initialises the base of a freshly allocated store.  Returns 0 or
 * PD_ERR_NOMEM (with the thread error set). */
int pd__store_init(pd_store *s, const pd_store_ops *ops);
/* Allocates a zeroed store of `size` bytes (a struct whose first member is
 * its pd_store) and initialises its base with `ops`: the store, or NULL
 * with *rc set and the thread error recorded ("<kind>: open" when out of
 * memory). */
void *pd__store_new(size_t size, const pd_store_ops *ops, int *rc);
/* Frees the base's own resources (mutexes, seen-set).  Not the struct. */
void pd__store_fini(pd_store *s);

/* Returns s when it is a store of the kind whose ops table is `ops` (the
 * one kind check: each module passes its own table), NULL otherwise. */
static inline void *pd__store_as(const pd_store *s, const pd_store_ops *ops) {
    return s && (s->ops == ops || s->ops->base == ops) ? (void *)s : NULL;
}

/* *field, a counter of store s that its ops update under s->mu, read under
 * that mutex (what a getter such as pd_buffer_spills returns). */
static inline uint64_t pd__store_read(pd_store *s, const uint64_t *field) {
    pthread_mutex_lock(&s->mu);
    uint64_t v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ---------------------------------------------------------------- Errors */

/* Records an error on s (and as the calling thread's last error) and
 * returns `code`.  The message is "<kind>: " + fmt, then ": strerror(sys)"
 * when sys != 0.  s may be NULL (the thread's error only, kind omitted). */
int pd__err(pd_store *s, int code, int sys, const char *fmt, ...)
    PD__PRINTF(4, 5);
int pd__verr(pd_store *s, int code, int sys, const char *fmt, va_list ap);
/* Records on `s` the error `inner` just reported (its code, errno and
 * message), prefixed with "<kind of s>: ".  Returns the code. */
int pd__err_inner(pd_store *s, const pd_store *inner, int code);
/* Replaces the errno recorded with s's current error (message unchanged). */
void pd__err_set_sys(pd_store *s, int sys);
/* Copies s's current error to the thread's "no store" slot (pd_errmsg(NULL)).
 */
void pd__err_to_thread(const pd_store *s);
/* Sets the thread's error state to success for s. */
void pd__err_clear(const pd_store *s);
/* Whether the calling thread's last error is an error recorded on s. */
bool pd__err_is_current(const pd_store *s);
/* Detaches the thread's last error from s (s is being freed). */
void pd__err_forget(const pd_store *s);

/* Records on s the error `inner` just reported, in context: the message
 * becomes "<kind of s>: <ctx>: <inner's message>", keeping inner's code
 * (rc if it recorded none) and errno.  Returns the code. */
int pd__err_wrap(pd_store *s, const pd_store *inner, int rc, const char *fmt,
                 ...) PD__PRINTF(4, 5);

/* A store's current error, saved so it can be recorded again after calls
 * that replace it (a reconnect, a public call on the same handle). */
typedef struct pd__errsave {
    int code, sys;
    char msg[PD__MSG_MAX];
} pd__errsave;
void pd__err_save(const pd_store *s, pd__errsave *sv);
/* Records the saved error on s again, verbatim; returns its code. */
int pd__err_restore(pd_store *s, const pd__errsave *sv);

/* Writes a short printable form of key into buf (at most 96 visible chars
 * then "..."); returns buf.  For messages. */
#define PD__KEYSHORT_MAX 112
const char *pd__key_short(const pd_key *key, char buf[PD__KEYSHORT_MAX]);

/* The value of hex digit c (0-9, a-f, A-F), or -1 when c is none. */
int pd__hexval(int c);

/* ------------------------------------------------------------------ Keys */

/* A key's parts, normalised: a flat key is one part; a 1-tuple the same. */
typedef struct pd__parts {
    size_t n;
    const pd_bytes *p;
    pd_bytes one; /* storage for the flat case */
} pd__parts;

/* Validates key (sizes, NULL pointers, limits).  0 or PD_ERR_MISUSE /
 * PD_ERR_LIMIT; on error writes a reason into why (64 bytes). */
int pd__key_check(const pd_key *key, char why[64]);
/* Fills *pp with key's normalised parts (key already checked). */
void pd__key_parts(const pd_key *key, pd__parts *pp);

/* The packed form: injective, used for hashing and equality.
 * flat: 0x00 bytes...      tuple (n >= 2): 0x01 then per part u32le len, bytes
 * pd__key_packed_size gives the exact length. */
size_t pd__key_packed_size(const pd_key *key);
void pd__key_pack(const pd_key *key, unsigned char *out);
/* Decodes a packed key into a pd_key whose parts are written to parts[]
 * (capacity PD_KEY_MAX_PARTS) and point into pk.  0 or PD_ERR_CORRUPT. */
int pd__key_unpack(const unsigned char *pk, size_t len, pd_key *out,
                   pd_bytes *parts);

/* A packed key in a small inline buffer, heap beyond it. */
typedef struct pd__pkey {
    unsigned char *p;
    size_t len;
    unsigned char inl[256];
} pd__pkey;
/* 0 or PD_ERR_NOMEM.  Release with pd__pkey_free. */
int pd__pkey_set(pd__pkey *pk, const pd_key *key);
void pd__pkey_free_heap(pd__pkey *pk);
static inline void pd__pkey_free(pd__pkey *pk) {
    if (pk->p && pk->p != pk->inl) pd__pkey_free_heap(pk);
    pk->p = NULL;
    pk->len = 0;
}

/* -------------------------------------------------------------- Results */

#define PD__RESULT_INLINE 16 /* values whose offsets need no allocation */

struct pd_result {
    size_t count;  /* values completed */
    size_t ncap;   /* capacity of off[] minus one */
    uint64_t *off; /* value i is buf[off[i] .. off[i+1]); off0 or malloc'd */
    char *buf;
    size_t len; /* bytes used, including the value being built */
    size_t cap;
    bool ext; /* buf is the caller's (pd_get_into): never freed here */
    uint64_t off0[PD__RESULT_INLINE + 1];
};

/* A new empty result expecting about n values and `bytes` bytes. */
PD__API pd_result *pd__result_new(size_t n, size_t bytes);
/* Makes an empty result r (no buffer yet) fill the caller's buf first. */
PD__API void pd__result_use(pd_result *r, void *buf, size_t cap);
/* Ensures room for `extra` more bytes; returns a pointer to the end of the
 * buffer (where the current value continues) or NULL on overflow/ENOMEM. */
char *pd__result_reserve(pd_result *r, size_t extra);
/* Marks `n` bytes written at the pointer from pd__result_reserve. */
void pd__result_commit(pd_result *r, size_t n);
/* Appends bytes to the current value.  0 or PD_ERR_NOMEM. */
int pd__result_put(pd_result *r, const void *data, size_t n);
/* Ends the current value (possibly empty) and starts the next.  0 or
 * PD_ERR_NOMEM. */
int pd__result_next(pd_result *r);
/* Drops the bytes of the current unfinished value. */
void pd__result_discard_current(pd_result *r);
/* Appends every value of src to r, as values of their own.  An empty r
 * takes src's buffers (src is left empty), unless r fills the caller's
 * buffer (pd_get_into) and src's bytes fit there: then, as for a non-empty
 * r, they are copied.  0 or PD_ERR_NOMEM. */
int pd__result_move(pd_result *r, pd_result *src);
/* For i in [0, a->count): value i becomes a_i followed by b_i.  a and b must
 * have the same count.  b is left untouched.  0 or PD_ERR_NOMEM (a intact). */
int pd__result_concat_each(pd_result *a, const pd_result *b);

/* -------------------------------------------------------------- Keylists */

typedef struct pd__klent {
    size_t off, len; /* packed key in buf */
    uint64_t size;
} pd__klent;

struct pd_keylist {
    size_t count, cap;
    pd__klent *ent;
    unsigned char *buf;
    size_t blen, bcap;
    /* built by pd__keylist_finish */
    pd_bytes *parts; /* PD_KEY_MAX_PARTS-bounded per key, packed together */
    size_t *part0;   /* index of key i's first part */
    bool finished;
};

pd_keylist *pd__keylist_new(void);
/* Adds a key (packed form) with its size.  0 or PD_ERR_NOMEM. */
int pd__keylist_add_packed(pd_keylist *kl, const unsigned char *pk, size_t len,
                           uint64_t size);
int pd__keylist_add(pd_keylist *kl, const pd_key *key, uint64_t size);
/* Prepares the part arrays for pd_keylist_key.  0 or PD_ERR_NOMEM. */
int pd__keylist_finish(pd_keylist *kl);

/* ------------------------------------------------------------ Utilities */

/* Overflow-checked size arithmetic: 0 on success, -1 on overflow. */
static inline int pd__add_ovf(size_t a, size_t b, size_t *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}
static inline int pd__mul_ovf(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

/* Grows the array *p (of *cap elements of `elem` bytes) to hold at least
 * `need` elements, doubling from 16; *p and *cap change only on success.
 * 0 or PD_ERR_NOMEM (also on overflow). */
int pd__grow(void **p, size_t *cap, size_t need, size_t elem);

/* getpid(), cached and refreshed in forked children. */
pid_t pd__getpid(void);

/* Recursive mutex init helper.  0 or an errno value. */
int pd__mutex_init_recursive(pthread_mutex_t *mu);

/* ----------------------------------------------------------------- Layers */

/*
 * A layer is a store over inner stores (Buffer, Encode; the Client over a
 * socket).  One pattern for all: its lock hook locks the inner stores with
 * pd__lock_inner (its unlock hook releases them), every op calls them with
 * PD_NOLOCK through the pd__*_inner calls or the public ones, wraps their
 * errors with pd__err_wrap, and a store-specific call runs through
 * pd__call.  The dispatchers keep an op's error through the unlock hooks.
 */

/* pd_append / pd_get on an inner store, for wrappers whose own dispatcher
 * already validated the keys and values: the same locking and error
 * recording, without validating them again. */
int pd__append_inner(pd_store *inner, size_t n, const pd_key *keys,
                     const pd_bytes *vals, unsigned flags);
int pd__get_inner(pd_store *inner, size_t n, const pd_key *keys,
                  pd_result **out, unsigned flags);
/* Replaces the content of keys on an inner store: pd_iset without its
 * "seen" memo (a wrapper's own pd_iset keeps that) and without
 * re-validating. */
int pd__set_inner(pd_store *inner, size_t n, const pd_key *keys,
                  const pd_bytes *vals, unsigned flags);

/* The check op of an inner store (see pd_store_ops.check) for write `op`
 * of keys[0..n), run under its mutex (it may be locked by this thread's
 * session).  0 when it has none or finds nothing; else its error, recorded
 * on inner. */
int pd__check_inner(pd_store *inner, const char *op, size_t n,
                    const pd_key *keys, const pd_bytes *vals, unsigned flags);

/* A store-specific call (pd_buffer_flush, pd_encode_repair, ...) run the
 * way the dispatchers run an op: refuses flags outside `allowed`, clears
 * the error, locks s (only its mutex with PD_NOLOCK), calls fn, unlocks
 * keeping fn's error through the unlock hooks, and records the outcome
 * under `op`.  fn gets flags with PD_NOLOCK set.  s must be non-NULL. */
typedef int (*pd__call_fn)(pd_store *s, void *arg, unsigned flags);
int pd__call(pd_store *s, const char *op, unsigned flags, unsigned allowed,
             pd__call_fn fn, void *arg);

/* Calls pd_lock / pd_unlock on an inner store and, on failure, copies its
 * error onto `outer`. */
int pd__lock_inner(pd_store *outer, pd_store *inner);
int pd__unlock_inner(pd_store *outer, pd_store *inner);

/* Validates a batch's keys, values and flags as pd_append does (need_vals:
 * vals are required).  0 or the error, recorded on s under `op`. */
int pd__check_batch(pd_store *s, const char *op, size_t n, const pd_key *keys,
                    const pd_bytes *vals, bool need_vals, unsigned flags,
                    unsigned allowed);

/* pd_attempt_append on an inner attempt, for layers whose dispatcher
 * already validated the batch (no second validation). */
int pd__attempt_append_inner(pd_attempt *a, size_t n, const pd_key *keys,
                             const pd_bytes *vals, unsigned flags);
/* Aborts every attempt open on s (pd_close, before flush and destroy):
 * each is left for its owner to free, with no store. */
void pd__attempts_close(pd_store *s);

/* ------------------------------------------------------------ Directories */

/* Called for each entry of a directory: dfd is the directory, type a DT_*
 * (DT_UNKNOWN only when even fstatat could not tell).  Nonzero stops the
 * listing and is returned by pd__dir_each. */
typedef int (*pd__dirent_fn)(void *arg, int dfd, const char *name,
                             unsigned char type);
/* The one readdir loop: calls fn for every entry of directory dfd
 * (consumed: closed on return) but "." and "..", through the syscall
 * table.  Returns 0, fn's nonzero result, or -1 with errno and *failed
 * ("opendir" or "readdir") when the listing itself fails. */
int pd__dir_each(int dfd, pd__dirent_fn fn, void *arg, const char **failed);

/* ------------------------------------------------------ Syscall table */

/* Every system call (and libc directory or path call) the File and Log
 * stores make goes through this table, so tests can inject faults (EIO, ENOSPC,
 * short writes, EINTR).  Each member has the name and the signature of the libc
 * function it stands for (open and openat take their mode always).  A test
 * assigns members of pd__sys_table directly (pd__sys_table.fstat = fn) and
 * calls pd__sys_reset() to restore every default.  Not thread-safe to change
 * while stores are in use. */
typedef struct pd__sys {
    int (*openat)(int dirfd, const char *path, int flags, mode_t mode);
    ssize_t (*write)(int fd, const void *buf, size_t n);
    ssize_t (*writev)(int fd, const struct iovec *iov, int iovcnt);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    ssize_t (*preadv)(int fd, const struct iovec *iov, int iovcnt, off_t off);
    int (*fsync)(int fd);
    int (*ftruncate)(int fd, off_t len);
    int (*close)(int fd);
    int (*mkdirat)(int dirfd, const char *path, mode_t mode);
    int (*unlinkat)(int dirfd, const char *path, int flags);
    int (*renameat)(int olddirfd, const char *old, int newdirfd,
                    const char *new_);
    int (*flock)(int fd, int op);
    int (*fstat)(int fd, struct stat *st);
    int (*fstatat)(int dirfd, const char *path, struct stat *st, int flags);
    int (*open)(const char *path, int flags, mode_t mode);
    int (*mkdir)(const char *path, mode_t mode);
    int (*rmdir)(const char *path);
    char *(*realpath)(const char *path, char *resolved);
    char *(*mkdtemp)(char *tmpl);
    DIR *(*fdopendir)(int fd);
    struct dirent *(*readdir)(DIR *d);
    int (*closedir)(DIR *d);
    int (*getrlimit)(int resource, struct rlimit *rl);
    int (*clock_gettime)(clockid_t clk, struct timespec *ts);
} pd__sys;

extern pd__sys pd__sys_table;
/* Restores the default table. */
void pd__sys_reset(void);
/* Writes all n bytes of p to fd through the table's write, retrying on
 * EINTR; returns n, or the bytes written before an error (errno set; EIO
 * for a write that wrote nothing). */
size_t pd__write_all(int fd, const void *p, size_t n);
/* The same for the n buffers of iov through the table's writev, at most
 * IOV_MAX of them a call; consumes iov (a partly written buffer's entry is
 * advanced past what was written). */
size_t pd__writev_all(int fd, struct iovec *iov, size_t n);
/* Reads into the n buffers of iov from offset off through the table's
 * preadv, at most IOV_MAX of them a call, retrying on EINTR; consumes iov
 * as pd__writev_all does.  Returns the bytes read: fewer than asked at the
 * end of the file (errno 0) or on an error (errno set). */
size_t pd__preadv_all(int fd, struct iovec *iov, size_t n, uint64_t off);

#endif /* PARTD_INTERNAL_H */
