/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * libpartd: an appendable key-value shuffle store.
 *
 * OVERVIEW
 * ========
 * A store maps keys to byte strings.  Appending bytes to a key concatenates
 * them after what the key already holds; getting a key returns everything it
 * holds, in append order; a key that was never written reads as empty.  This
 * is the model of Python's `partd`, the buffer under dask's shuffles.
 *
 * Every store speaks the same interface (pd_append, pd_get, pd_delete,
 * pd_iset, pd_drop, pd_keys, pd_lock/pd_unlock, pd_close), and stores nest:
 *
 *   - Dict   (pd_dict_open)   in memory, safe to share between threads;
 *   - File   (pd_file_open)   a directory, one file per key, compatible with
 *                             the Python reference's layout and its lock file;
 *   - Log    (pd_log_open)    a directory of append-only segments, one per
 *                             writer: appends cost the same at any number
 *                             of keys (shuffles);
 *   - Buffer (pd_buffer_open) holds appends in a fast store and spills the
 *                             largest keys into a slow one past a memory limit.
 *
 * Every call is batch-first: it takes an array of n keys (and n values).
 *
 * A writer that may be run again (a shuffle task killed and retried) appends
 * through an *attempt* (pd_attempt_begin, "Attempts" below): invisible until
 * it commits, and only the first attempt of a writer to commit counts.
 *
 * KEYS
 * ====
 * A key is binary-safe: any bytes, of any length up to PD_KEY_MAX, including
 * the empty key, NUL bytes, '/', "..", and non-UTF-8 sequences.  A *tuple*
 * key (Python partd's ('a', 'b')) is a sequence of 1 to PD_KEY_MAX_PARTS
 * parts, each itself any bytes.  The tuple ('a', 'b') and the flat key "a/b"
 * are different keys.  A tuple of exactly one part is the same key as that
 * part alone (as in the reference, where ('a',) and 'a' name one file).
 *
 * VALUES AND RESULTS
 * ==================
 * Values are {data, size} pairs; the library never keeps a pointer into
 * caller memory after a call returns.  pd_get returns one pd_result: a single
 * allocation holding all values back to back, freed by pd_result_free.
 *
 * ERRORS
 * ======
 * Functions return 0 on success or a negative PD_ERR_* code.  The store
 * handle keeps a message naming the layer, operation, key, path and reason,
 * e.g. "file: append 'a\x00b': write(/tmp/s/%a%00b): No space left on
 * device", read with pd_errmsg(store).  Functions that create a store report
 * through pd_errmsg(NULL), the calling thread's last error.  Bad arguments
 * (NULL arrays, unknown flags, oversized keys) return PD_ERR_MISUSE; the
 * library never aborts the host process on bad input.
 *
 * LOCKING AND THREADS
 * ===================
 * Each call locks the store for its duration: a File takes flock(LOCK_EX) on
 * <root>/.lock, which excludes other processes (C ones and Python partd ones)
 * and, through a per-process mutex shared by every handle on that directory,
 * other threads.  pd_lock/pd_unlock hold the lock across several calls; calls
 * made inside such a section may pass PD_NOLOCK to skip re-locking (they are
 * also safe without it: the lock is recursive for the thread holding it).
 * Wrappers (Buffer) lock each inner store once per call, when the call first
 * needs it, and call it with PD_NOLOCK; pd_lock on a wrapper locks the whole
 * stack at once.  Every handle may be used from several threads.
 *
 * CAVEATS
 * =======
 *   - flock(2) is unreliable on network file systems (NFS, SMB): keep File
 *     stores on local disks when several processes share them.
 *   - A File's descriptor cache trusts that removing or renaming a file
 *     changes its directory's ctime, as on every local POSIX file system
 *     (ext4, xfs, btrfs, tmpfs).  Elsewhere, pd_file_set_max_fds(s, 0).
 *   - A handle inherited through fork() is detected and re-opens its lock and
 *     descriptors in the child, but a child must not use a handle that
 *     another thread of the parent was using at the moment of the fork.
 *   - Values are held whole in memory by pd_get; a store is a shuffle buffer,
 *     not a database for values larger than memory.
 */
#ifndef PARTD_PARTD_H
#define PARTD_PARTD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- Export */

#if defined(PARTD_STATIC)
#define PD_API
#elif defined(__GNUC__) && __GNUC__ >= 4
#define PD_API __attribute__((visibility("default")))
#else
#define PD_API
#endif

/* --------------------------------------------------------------- Version */

/* PARTD_VERSION_MAJOR, _MINOR, _PATCH, _NUMBER (MAJOR*10000 + MINOR*100 +
 * PATCH), PARTD_VERSION_STRING ("0.1.0") and PARTD_SOVERSION: generated from
 * the project version in CMakeLists.txt (cmake/version.h.in). */
#include "partd/version.h"

/** The version of the library linked at run time, as PARTD_VERSION_NUMBER. */
PD_API unsigned pd_version_number(void);
/** The same as a static string, e.g. "0.1.0".  Never NULL. */
PD_API const char *pd_version_string(void);

/* ---------------------------------------------------------------- Errors */

/* Return codes.  0 is success; every error is negative.  The numbers are
 * stable and never reused. */
#define PD_OK 0
#define PD_ERR_MISUSE (-1)      /* bad argument: NULL array, bad flag, ... */
#define PD_ERR_NOMEM (-2)       /* an allocation failed; nothing changed */
#define PD_ERR_IO (-3)          /* a system call failed; see pd_errno() */
#define PD_ERR_KEY (-4)         /* the key cannot be stored at that place */
#define PD_ERR_CORRUPT (-5)     /* stored data is malformed */
#define PD_ERR_PROTOCOL (-6)    /* a peer sent a malformed message */
#define PD_ERR_TIMEOUT (-7)     /* a peer did not answer in time */
#define PD_ERR_UNSUPPORTED (-8) /* this store does not offer the operation */
#define PD_ERR_LIMIT (-9)       /* a size or count exceeds a library limit */
#define PD_ERR_CONFLICT (-10)   /* another attempt of the writer committed */

/** A static description of a PD_ERR_* code (or "ok" for 0).  Never NULL. */
PD_API const char *pd_strerror(int code);

typedef struct pd_store pd_store;

/**
 * The message of the last failed call on `store` made by the calling thread,
 * or, if this thread made no call on it since, the last failure on the
 * handle by any thread.  With store == NULL: the calling thread's last error
 * from a function that creates a store (pd_*_open).  "ok" when the last call
 * succeeded.  The string stays valid until the next call on the same handle
 * from the same thread.  Never NULL.
 */
PD_API const char *pd_errmsg(const pd_store *store);
/** The PD_ERR_* code that goes with pd_errmsg(store). */
PD_API int pd_errcode(const pd_store *store);
/** The errno of the failed system call that goes with pd_errmsg(store), or 0
 *  when the error did not come from a system call. */
PD_API int pd_errno(const pd_store *store);

/* ------------------------------------------------------- Keys and values */

/** A byte string.  `data` may be NULL only when `size` is 0. */
typedef struct pd_bytes {
    const void *data;
    size_t size;
} pd_bytes;

/** A key: a flat byte string (nparts == 0: data/size) or a tuple of nparts
 *  byte strings (nparts >= 1: parts; data/size are ignored). */
typedef struct pd_key {
    const void *data;
    size_t size;
    const pd_bytes *parts;
    size_t nparts;
} pd_key;

/** Longest key, in bytes summed over its parts. */
#define PD_KEY_MAX 16384
/** Most parts in a tuple key. */
#define PD_KEY_MAX_PARTS 64

/** A flat key over `len` bytes at `ptr` (a compound literal, C99). */
#define PD_KEY(ptr, len) ((pd_key){(ptr), (len), NULL, 0})
/** A flat key over a NUL-terminated string (the NUL is not part of it). */
#define PD_KEY_STR(s) PD_KEY((s), strlen(s))
/** A tuple key over an array of `n` pd_bytes parts. */
#define PD_KEY_TUPLE(parts, n) ((pd_key){NULL, 0, (parts), (n)})
/** A value over `len` bytes at `ptr`. */
#define PD_BYTES(ptr, len) ((pd_bytes){(ptr), (len)})

/**
 * Writes an unambiguous, printable form of `key` into buf (at most cap bytes
 * including the terminating NUL; cap may be 0 with buf NULL to measure).
 * A flat key prints as a single-quoted string; a tuple as ('a', 'b').
 * Inside quotes, printable ASCII other than quote and backslash is itself;
 * \\, \', \t, \n, \r stand for themselves, and every other byte is \xHH.
 * Returns the length of the full form (excluding the NUL), as snprintf does,
 * or 0 for an invalid key.  Thread-safe; no allocation.
 */
PD_API size_t pd_key_repr(const pd_key *key, char *buf, size_t cap);

/**
 * Parses the form written by pd_key_repr (a quoted flat key or a tuple of
 * quoted parts; double quotes are accepted too) into a newly allocated key.
 * On success *out is set and must be released with pd_key_free; its parts
 * point into the same allocation.  Returns PD_ERR_MISUSE for text that is
 * not such a form, PD_ERR_LIMIT past PD_KEY_MAX/PD_KEY_MAX_PARTS,
 * PD_ERR_NOMEM.  On error *out is untouched.
 */
PD_API int pd_key_parse(const char *text, size_t len, pd_key **out);
/** Releases a key from pd_key_parse and sets *key to NULL.  Safe on NULL. */
PD_API void pd_key_free(pd_key **key);

/* --------------------------------------------------------------- Results */

/** The values returned by pd_get: one allocation, values back to back in
 *  the order of the keys asked for. */
typedef struct pd_result pd_result;

/** Number of values (the n given to pd_get). */
PD_API size_t pd_result_count(const pd_result *r);
/** Value i (i < count).  Points into r; valid until pd_result_free(r).
 *  An out-of-range i gives {NULL, 0}.  data is non-NULL whenever size > 0. */
PD_API pd_bytes pd_result_value(const pd_result *r, size_t i);
/** Total bytes of all values. */
PD_API uint64_t pd_result_total(const pd_result *r);
/** Releases r and sets *r to NULL.  Safe on NULL and twice. */
PD_API void pd_result_free(pd_result **r);

/** The keys of a store, from pd_keys. */
typedef struct pd_keylist pd_keylist;

/** Number of keys. */
PD_API size_t pd_keylist_count(const pd_keylist *kl);
/** Key i (i < count); the key's bytes and parts point into kl and stay valid
 *  until pd_keylist_free.  Returns PD_ERR_MISUSE for an out-of-range i. */
PD_API int pd_keylist_key(const pd_keylist *kl, size_t i, pd_key *out);
/** Bytes stored under key i as that store holds them (for an encoding layer,
 *  the encoded size).  0 for an out-of-range i. */
PD_API uint64_t pd_keylist_size(const pd_keylist *kl, size_t i);
/** Releases kl and sets *kl to NULL.  Safe on NULL and twice. */
PD_API void pd_keylist_free(pd_keylist **kl);

/* ----------------------------------------------------- The store interface */

/* Flags for the calls below.  Unknown bits give PD_ERR_MISUSE. */
/* PD_NOLOCK: the caller holds the lock (pd_lock), don't take it again.
 * PD_FSYNC: append, iset: fsync what was written before returning. */
#define PD_NOLOCK 0x1u
#define PD_FSYNC 0x2u

/**
 * Appends vals[i] to keys[i] for i in [0, n).  A key may appear several
 * times; its values are appended in array order.
 *
 * Atomicity: a batch is applied whole or not at all.  If any value fails
 * (e.g. ENOSPC), what the batch had already written is rolled back, every key
 * keeps its previous content, and the error names the key, path and reason.
 * Other processes and threads never see part of a batch.  (If the rollback
 * itself fails, the message says so and names the key left with a tail.)
 *
 * n may be 0.  keys and vals may be NULL only when n is 0.
 * Errors: PD_ERR_MISUSE, PD_ERR_NOMEM, PD_ERR_IO, PD_ERR_KEY, PD_ERR_LIMIT.
 */
PD_API int pd_append(pd_store *store, size_t n, const pd_key *keys,
                     const pd_bytes *vals, unsigned flags);

/**
 * Reads keys[0..n) into one new pd_result stored in *out, value i for key i;
 * a key never written (or deleted) reads as empty.  The caller frees *out with
 * pd_result_free.  On error *out is set to NULL.
 * Errors: PD_ERR_MISUSE, PD_ERR_NOMEM, PD_ERR_IO, PD_ERR_CORRUPT,
 * PD_ERR_LIMIT (a value too large for this machine's address space).
 */
PD_API int pd_get(pd_store *store, size_t n, const pd_key *keys,
                  pd_result **out, unsigned flags);

/**
 * pd_get reading into the caller's memory when the values fit: the result's
 * bytes start in buf (cap bytes, valid until pd_result_free(*out); never
 * freed by the library) and move to memory of the result's own only if the
 * store needs more room than cap (a store may ask a little more than the
 * values' size, e.g. File reads to the end of a file in one call with some
 * slack) or builds its bytes elsewhere.  pd_result_in(*out, buf) then tells
 * whether the values are in buf, back to back from its start, so a caller
 * that sized buf well (e.g. from the last get's size) uses them there
 * without a copy.  buf may be NULL with cap 0 (then as pd_get).
 * Errors: as pd_get.
 */
PD_API int pd_get_into(pd_store *store, size_t n, const pd_key *keys, void *buf,
                       size_t cap, pd_result **out, unsigned flags);
/** 1 when r's values are in buf (the buffer given to pd_get_into), back to
 *  back from its start; 0 otherwise (or for NULL). */
PD_API int pd_result_in(const pd_result *r, const void *buf);

/**
 * Forgets keys[0..n).  Missing keys are fine.  On error, keys before the one
 * named in the message are deleted, the rest untouched.
 * Errors: PD_ERR_MISUSE, PD_ERR_IO.
 */
PD_API int pd_delete(pd_store *store, size_t n, const pd_key *keys,
                     unsigned flags);

/**
 * Idempotent set: for each i, if this handle has already set keys[i] with
 * pd_iset (since it was opened or last dropped), does nothing; otherwise
 * replaces the key's content with vals[i].  A File replaces the file
 * atomically (write to a temporary, then rename), so readers see the old or
 * the new value, never a mix.  Errors: as pd_append.
 */
PD_API int pd_iset(pd_store *store, size_t n, const pd_key *keys,
                   const pd_bytes *vals, unsigned flags);

/**
 * Deletes every key.  The store stays usable (a File keeps its directory and
 * lock file) and forgets which keys pd_iset has seen.
 * Errors: PD_ERR_MISUSE, PD_ERR_IO.
 */
PD_API int pd_drop(pd_store *store, unsigned flags);

/**
 * Lists the keys that hold data, with their sizes, into a new *out freed with
 * pd_keylist_free.  The order is unspecified.  On error *out is NULL.
 * Errors: PD_ERR_MISUSE, PD_ERR_NOMEM, PD_ERR_IO.
 */
PD_API int pd_keys(pd_store *store, pd_keylist **out, unsigned flags);

/**
 * Takes the store's lock for a multi-call section, blocking until it is free.
 * Recursive for the calling thread: each pd_lock needs one pd_unlock.  A File
 * lock excludes other processes (flock) and other threads.
 * Errors: PD_ERR_MISUSE, PD_ERR_IO (the lock file could not be opened).
 */
PD_API int pd_lock(pd_store *store);
/** Releases one level of pd_lock.  PD_ERR_MISUSE if this thread does not
 *  hold the lock. */
PD_API int pd_unlock(pd_store *store);

/**
 * Closes the store: flushes what it buffers into its inner stores (a Buffer
 * spills everything it holds into its slow store), closes the inner stores
 * it owns, releases every resource, removes a temporary File's directory, and
 * sets *store to NULL.  Every step runs even if one fails; the first error is
 * returned and its message is available from pd_errmsg(NULL).  Safe on NULL.
 */
PD_API int pd_close(pd_store **store);

/** The kind of store: "dict", "file", "buffer", ... (static string). */
PD_API const char *pd_store_kind(const pd_store *store);

/* -------------------------------------------------------------- Attempts */

/*
 * Retried writers.  A shuffle task that dies mid-way is run again; its first
 * run's appends must not count twice.  So a task (a *writer*, named by a key:
 * bytes or a tuple) appends through an *attempt* (writer, attempt number):
 * the appends stay invisible to every pd_get and pd_keys, in every process,
 * until pd_attempt_commit makes all of them visible at once.  The first
 * attempt of a writer to commit wins; a later commit of any other attempt of
 * that writer fails with PD_ERR_CONFLICT and its data is discarded.  An
 * attempt aborted, or whose process dies before it commits, leaves nothing
 * visible (its bytes are reclaimed by a later compaction).  Appends outside
 * attempts (pd_append) are unaffected.
 *
 * Where: a Log (pd_log_open) and the layers that pass attempts on to one:
 * Encode (encodes the values), Namespace (prefixes the writer and the keys),
 * Buffer (sends an attempt's appends straight to its slow store: an
 * attempt's data must be in the store's files, not in a process's memory,
 * to survive a crash).  A Client passes them to its Server's store.  Dict,
 * File and Fanout (whose commit could not be atomic across its stores)
 * return PD_ERR_UNSUPPORTED, naming the store kind.  Details, on disk and
 * for compaction: docs/log-format.md.
 *
 * Order: a committed attempt's values of a key come at the commit's place
 * among the key's other appends (commit order), and within the attempt in
 * append order.
 *
 * An attempt belongs to the process that began it (calls from a forked
 * child fail with PD_ERR_MISUSE; pd_attempt_abort there only frees it).
 * pd_close on the store aborts the attempts still open on it; the caller
 * still frees each with pd_attempt_abort (or commit, which then fails with
 * PD_ERR_MISUSE).  An attempt may be used from several threads, one call at
 * a time per attempt (calls lock the store).
 */
typedef struct pd_attempt pd_attempt;

/**
 * Begins attempt `attempt` (any uint64) of writer `writer` on store.  Fails
 * with PD_ERR_CONFLICT when an attempt of that writer has already committed
 * (the message says which).  The same (writer, attempt) may be begun again
 * while an earlier begin is still open (a retry that cannot know the first
 * run is still alive): they are separate attempts, and the first of them to
 * commit wins.
 * flags: 0 or PD_NOLOCK.  Errors: PD_ERR_UNSUPPORTED (naming the store kind)
 * on stores without attempts, PD_ERR_CONFLICT, PD_ERR_MISUSE, PD_ERR_NOMEM,
 * PD_ERR_IO.  On error *out is NULL.
 */
PD_API int pd_attempt_begin(pd_store *store, const pd_key *writer,
                            uint64_t attempt, pd_attempt **out, unsigned flags);

/**
 * Appends vals[i] to keys[i] under the attempt: as pd_append (a batch is
 * written whole or not at all), but invisible until the commit.
 * flags: PD_NOLOCK, PD_FSYNC.  Errors: as pd_append.
 */
PD_API int pd_attempt_append(pd_attempt *a, size_t n, const pd_key *keys,
                             const pd_bytes *vals, unsigned flags);

/**
 * Makes every append of the attempt visible at once (atomic for readers in
 * any process), or returns PD_ERR_CONFLICT when another attempt of the same
 * writer committed first (this one's data is then discarded).  With
 * PD_FSYNC the attempt's data and the commit are durable against a power
 * cut before it returns; without it, against the crash of any process.
 * Frees *a and sets it to NULL whatever the outcome; the error is read with
 * pd_errmsg on the store (pd_errmsg(NULL) when the store was closed).
 * flags: PD_NOLOCK, PD_FSYNC.  Errors: PD_ERR_CONFLICT, PD_ERR_MISUSE,
 * PD_ERR_NOMEM, PD_ERR_IO, PD_ERR_CORRUPT.
 */
PD_API int pd_attempt_commit(pd_attempt **a, unsigned flags);

/** Discards the attempt's appends and frees *a (set to NULL).  Safe on NULL
 *  and on an attempt whose store was closed. */
PD_API int pd_attempt_abort(pd_attempt **a);

/** The store the attempt was begun on (its errors are read with pd_errmsg
 *  on it); NULL once that store is closed. */
PD_API pd_store *pd_attempt_store(const pd_attempt *a);

/** The writer and attempt number given to pd_attempt_begin (the key points
 *  into a's memory, valid until it is freed).  MISUSE on NULL. */
PD_API int pd_attempt_id(const pd_attempt *a, pd_key *writer,
                         uint64_t *attempt);

/* ------------------------------------------------------------------ Dict */

/**
 * Opens an empty in-memory store.  Errors: PD_ERR_NOMEM.
 */
PD_API int pd_dict_open(pd_store **out);

/** Bytes of values a Dict holds (not counting bookkeeping). */
PD_API uint64_t pd_dict_nbytes(const pd_store *dict);

/* ------------------------------------------------------------------ File */

/* Flags for pd_file_open / pd_file_open_temp. */
#define PD_FILE_CREATE                                                         \
    0x100u                   /* create the directory (and parents) if missing */
#define PD_FILE_FSYNC 0x200u /* fsync every append and iset (as PD_FSYNC) */
#define PD_FILE_KEEP 0x400u  /* temporary store: keep the directory on close */

/**
 * Opens the store in directory `path`.  Without PD_FILE_CREATE the directory
 * must exist.  Creates <path>/.lock if it is missing.
 *
 * Layout: a flat key made only of the characters A-Z a-z 0-9 - _ . ( ) and
 * space, at most 255 bytes, and neither "." nor ".." (nor ".lock" at the top)
 * is stored in a file named exactly as the key: the reference's layout.  A
 * tuple key is a path of one directory per part but the last.  Any other part
 * is named '%' followed by the part with each byte outside that set written
 * as %HH; a name longer than 255 bytes is cut into directories named "%~"
 * plus a piece.  See docs/file-layout.md.  Names beginning "%#" are the
 * store's temporary files.  Files and directories are opened relative to the
 * root with no symlink followed, so nothing is read or written outside it.
 *
 * A store on a read-only file system opens if its .lock exists (opened
 * read-only; flock works on it): gets and keys work, writes fail with
 * PD_ERR_IO and errno EROFS.
 *
 * Errors: PD_ERR_MISUSE (NULL path, bad flags), PD_ERR_IO (the directory is
 * missing or not a directory, not accessible, or .lock cannot be created),
 * PD_ERR_NOMEM.  On error *out is NULL and pd_errmsg(NULL) tells why.
 */
PD_API int pd_file_open(pd_store **out, const char *path, unsigned flags);

/**
 * Opens a store in a new private (0700) directory made with mkdtemp in
 * `parent` (NULL: $TMPDIR, else /tmp), removed with its content on close
 * unless flags has PD_FILE_KEEP.  Errors: as pd_file_open.
 */
PD_API int pd_file_open_temp(pd_store **out, const char *parent,
                             unsigned flags);

/** The store's root directory (owned by the store).  NULL if not a File. */
PD_API const char *pd_file_path(const pd_store *file);

/**
 * Writes the path of the file that holds `key` into buf (cap bytes with the
 * NUL).  Returns the full length as snprintf does, or 0 for a bad key or a
 * store that is not a File.  The file may not exist.
 */
PD_API size_t pd_file_filename(const pd_store *file, const pd_key *key,
                               char *buf, size_t cap);

/**
 * Caps how many descriptors the store keeps open for appends (default: a
 * quarter of RLIMIT_NOFILE, at most 1024; 0 disables the cache).
 */
PD_API int pd_file_set_max_fds(pd_store *file, size_t max_fds);

/* ------------------------------------------------------------------- Log */

/* Flags for pd_log_open / pd_log_open_temp / pd_log_compact. */
#define PD_LOG_CREATE 0x100u  /* create the directory (and parents) */
#define PD_LOG_FSYNC 0x200u   /* fsync every write (as PD_FSYNC) */
#define PD_LOG_KEEP 0x400u    /* temporary store: keep it on close */
#define PD_LOG_SALVAGE 0x800u /* compact: drop damaged data, keep the rest */

/**
 * Opens the Log store in directory `dir`: a store for shuffles whose cost
 * per append does not depend on the number of keys.  Each handle appends
 * its batches to a segment file of its own, one record per batch (written
 * with writev() in pieces of at most 1 MiB); a get
 * reads a key's extents from the segments (after pd_log_compact or the
 * close of the last handle, from one sequential range).  Handles in any
 * number of threads and processes may append and read at once; a get sees
 * every append that completed before it began, in completion order.
 * Without PD_LOG_CREATE the directory must exist; an empty directory
 * becomes a Log.  The directory must be writable (the shared counters are
 * a file there, mapped read-write).  A directory that is not a Log
 * (PD_ERR_CORRUPT), or a Log of a newer format version (PD_ERR_UNSUPPORTED), is
 * refused.  Format and guarantees: docs/log-format.md.
 *
 * Damage: a key whose data fails its checksum fails its get with
 * PD_ERR_CORRUPT (naming the key, segment and offset); other keys read
 * fine.  A damaged region whose keys cannot be told fails every get and
 * pd_keys until pd_log_compact(PD_LOG_SALVAGE).  A record torn by a writer
 * that died is left out and counted (pd_log_torn); it was never
 * acknowledged.  pd_lock excludes every other call on the directory,
 * including from other handles of this process (a thread holding it must
 * not open or call another handle of the same directory).
 *
 * Errors: PD_ERR_MISUSE, PD_ERR_IO, PD_ERR_NOMEM, PD_ERR_CORRUPT,
 * PD_ERR_UNSUPPORTED.  On error *out is NULL and pd_errmsg(NULL) says why.
 */
PD_API int pd_log_open(pd_store **out, const char *dir, unsigned flags);

/** A Log in a new private directory made with mkdtemp in `parent` (NULL:
 *  $TMPDIR, else /tmp), removed on close unless PD_LOG_KEEP.  flags:
 *  PD_LOG_FSYNC, PD_LOG_KEEP.  Errors: as pd_log_open. */
PD_API int pd_log_open_temp(pd_store **out, const char *parent, unsigned flags);

/**
 * Rewrites the live data grouped by key (each key one sequential range)
 * and reclaims the space of deleted, replaced and dropped data, atomically
 * for readers in any process.  Takes the store's lock (pd_lock).  Also
 * done by the last handle open on the directory when it closes, if
 * anything was written since the last compaction (best effort), and after
 * a delete or iset once dead bytes pass 64 MiB and the live bytes.  flags: 0,
 * or PD_LOG_SALVAGE to drop damaged regions and data failing its checksum
 * (otherwise such damage fails with PD_ERR_CORRUPT and nothing changes).
 * Errors: PD_ERR_MISUSE, PD_ERR_IO, PD_ERR_NOMEM, PD_ERR_CORRUPT.
 */
PD_API int pd_log_compact(pd_store *log, unsigned flags);

/** Torn records (left by writers that died mid-write) this handle has left
 *  out since it was opened; 0 for a store that is not a Log. */
PD_API uint64_t pd_log_torn(const pd_store *log);
/** The last torn record left out, described ("" if none, or not a Log).  A
 *  copy owned by the calling thread, valid until its next call. */
PD_API const char *pd_log_notice(const pd_store *log);
/** The store's directory (owned by the store).  NULL if not a Log. */
PD_API const char *pd_log_path(const pd_store *log);

/* ---------------------------------------------------------------- Buffer */

/* Flag for wrappers: the caller keeps ownership of the inner stores. */
#define PD_BORROW 0x1000u

/*
 * Flag for pd_buffer_open: slow is written only through this Buffer (e.g. a
 * File in a private temporary directory).  The Buffer then remembers which
 * keys it spilled to slow (since open, or the last drop), and pd_get,
 * pd_keys, pd_delete and pd_iset skip slow (no read, no lock) for keys it
 * never spilled.  Without the flag slow is always consulted, since another
 * handle or process may write it.  If slow holds keys at open, or a
 * spilled key's record cannot be allocated, slow is read as without the
 * flag until the next successful drop.  Wrong if anything else writes slow
 * while the Buffer is open: such writes may be invisible through it.
 */
#define PD_BUFFER_PRIVATE 0x2000u

/**
 * Opens a Buffer over `*fast` and `*slow`.  Appends go to fast; when the
 * bytes held in fast, the batch included, exceed `memory`, the largest keys
 * are moved to slow (the reference's policy and placement: after the
 * append, rounds each choosing, of the larger half of the keys, the biggest
 * whose sizes sum to about 10% of the held bytes, at least 1 and at most 20)
 * until the held bytes are within `memory` again.  So fast holds at most
 * `memory` after an append.  The rounds are chosen before anything is
 * written: the chosen keys, with the batch's values of them, go to slow in
 * one append, then the rest of the batch to fast; if slow fails nothing of
 * the batch is applied.  (If fast then fails, the error says the batch was
 * partly applied: the chosen keys are in slow.)  pd_get returns a key's
 * bytes in append order: what was spilled to slow, then what fast holds.
 *
 * Large batches bypass fast when slow is a Log: an append of at
 * least 1 MiB goes straight to slow, in one append that first carries what
 * fast holds of the batch's keys (so the order stays), then the batch;
 * those keys are then deleted from fast.  If slow fails nothing of it is
 * applied.  A bypass is not a spill (pd_buffer_spills does not count it).
 * Over a File (a write per key) batches always go through fast, which
 * gathers a key's small values into larger writes; over other stores too
 * (over a Dict, placement stays partd's).
 *
 * Locking: a call locks fast, and slow only if it touches slow (a spill,
 * get, delete, iset, drop, keys), so appends that spill nothing never wait
 * for another process holding slow's lock (a File's flock); pd_lock on the
 * Buffer locks both for the whole section.
 *
 * On success the Buffer owns both stores and sets *fast and *slow to NULL,
 * unless flags has PD_BORROW, in which case the caller keeps them and must
 * close them after the Buffer.  fast and slow must be different stores.
 * flags: PD_BORROW, PD_BUFFER_PRIVATE (which lists slow's keys once, at
 * open, locking it).
 * Errors: PD_ERR_MISUSE, PD_ERR_NOMEM; with PD_BUFFER_PRIVATE, what pd_keys
 * on slow returns.  On error nothing is taken.
 */
PD_API int pd_buffer_open(pd_store **out, pd_store **fast, pd_store **slow,
                          uint64_t memory, unsigned flags);

/** Bytes the Buffer counts as held in fast. */
PD_API uint64_t pd_buffer_memory_usage(const pd_store *buffer);
/** Spills so far: times the Buffer moved keys from fast to slow because its
 *  memory limit was reached (pd_buffer_flush and pd_close are not counted);
 *  0 if not a Buffer. */
PD_API uint64_t pd_buffer_spills(const pd_store *buffer);
/** The memory limit given to pd_buffer_open. */
PD_API uint64_t pd_buffer_memory_limit(const pd_store *buffer);
/** The inner stores (borrowed pointers, valid while the Buffer is open). */
PD_API pd_store *pd_buffer_fast(const pd_store *buffer);
PD_API pd_store *pd_buffer_slow(const pd_store *buffer);

/**
 * Moves keys[0..n) (all keys when keys is NULL) from fast to slow.
 * Errors: as pd_append on slow; on error the keys not moved stay in fast.
 */
PD_API int pd_buffer_flush(pd_store *buffer, size_t n, const pd_key *keys,
                           unsigned flags);

/**
 * Forgets everything the Buffer holds in fast without moving it to slow:
 * deletes those keys from fast and sets the memory usage to 0, so a following
 * pd_close spills nothing.  For a caller that no longer needs the data (e.g.
 * a Python Buffer garbage-collected after its reads).  What was already
 * spilled to slow stays there.  Locks fast only, never slow.
 * Errors: PD_ERR_MISUSE (NULL or not a Buffer); what pd_delete on fast
 * returns (never an error from a Dict), after which the keys not deleted
 * stay in fast and counted.
 */
PD_API int pd_buffer_discard(pd_store *buffer);

/* ---------------------------------------------------------------- Fanout */

/*
 * A Fanout spreads one store over n inner stores (e.g. Clients of several
 * servers, or Files on several disks): each key lives in exactly one of
 * them, inner store pd_fanout_index(key, n), so every process (C or Python)
 * that opens a Fanout over the same stores in the same order maps a key to
 * the same store.  The index is jump consistent hash (Lamping and Veach) of
 * pd_fanout_hash(key), the XXH64 (seed 0) of the key's packed form: a flat
 * key is the byte 0x00 then its bytes; a tuple (2 parts or more) is 0x01
 * then, per part, its length as 4 bytes little-endian and its bytes (a
 * 1-tuple is the flat key).  Growing n by one moves only the keys that go
 * to the new store.  See docs/fanout.md, with reference values.
 *
 * A batch is split per store, keeping each store's keys in batch order, and
 * each part sent to its store; Clients each get a thread of their own, so
 * their round trips overlap.  get reassembles the values in the order of
 * the keys; keys lists the union (each store's keys, disjoint); delete,
 * iset and drop go to every store concerned.
 *
 * Atomicity: each store applies its part whole or not at all (as its own
 * calls do).  A write (append, iset, delete) that goes to two stores or
 * more first has every part checked by its store, without applying it,
 * for what the store can tell locally: a Client refuses keys the wire
 * cannot carry, a batch past a request's limits, PD_FSYNC, and (before an
 * iset or a delete) reports the failure of an earlier request it reads
 * first; a Namespace the keys
 * its name makes too long, then its inner store's check.  If any part is
 * refused, nothing of the batch is sent and the call fails naming that
 * store ("refused before anything was sent").  What only a store itself
 * can find (a server's disk full, a File's colliding names, a server gone
 * mid-batch) is not atomic across stores and cannot be undone (an append
 * has no inverse): every part is tried, and the call returns the error of
 * the lowest failing store, with its code and errno, and a message naming
 * it (its index, kind and, for a Client, its address), which other stores
 * applied their part ("applied by store 0, 2") and which failed too.  Over
 * Clients without PD_CLIENT_SYNC an append's reply is read later: its
 * failure shows on a later call to that store, naming it and the request;
 * the other stores' parts of that batch were applied.
 *
 * Locking: pd_lock locks every inner store in index order (lock Fanouts
 * that share stores in the same order); a call outside pd_lock locks each
 * inner store for its own part only.  While a pd_lock session holds them,
 * the inner Clients are held by the Fanout's threads: do not call them
 * directly then.
 */

/**
 * Opens a Fanout over inners[0..n).  On success the Fanout owns them and
 * sets inners[i] to NULL, unless flags has PD_BORROW, in which case the
 * caller keeps them and closes them after the Fanout.
 * Errors: PD_ERR_MISUSE (n == 0, more than 1024 stores, a NULL or repeated
 * store, unknown flags), PD_ERR_NOMEM.  On error nothing is taken.
 */
PD_API int pd_fanout_open(pd_store **out, pd_store **inners, size_t n,
                          unsigned flags);
/** XXH64 (seed 0) of key's packed form (above); 0 for an invalid key. */
PD_API uint64_t pd_fanout_hash(const pd_key *key);
/** The inner store in [0, n) that holds key in a Fanout of n stores;
 *  SIZE_MAX for an invalid key, n == 0 or n > INT32_MAX. */
PD_API size_t pd_fanout_index(const pd_key *key, size_t n);
/** Number of inner stores; 0 if not a Fanout. */
PD_API size_t pd_fanout_count(const pd_store *fanout);
/** Inner store i (borrowed, valid while the Fanout is open); NULL if out of
 *  range or not a Fanout. */
PD_API pd_store *pd_fanout_inner(const pd_store *fanout, size_t i);

/* ------------------------------------------------------------- Namespace */

/*
 * A Namespace gives one shuffle its own key space on a shared store: its
 * key k is stored in the inner store as the tuple (name, k), and its tuple
 * key (a, b, ...) as (name, a, b, ...) (a 1-tuple is the flat key, so flat
 * keys map to 2 parts and tuples to 3 or more).  pd_keys lists only the
 * keys under `name`, without it; pd_drop deletes only those (listing them,
 * then deleting them in one batch on the locked inner store: over a Client,
 * another client's append between the two survives).  Namespaces with
 * different names over one store never see each other's keys.  A key that
 * no longer fits PD_KEY_MAX or PD_KEY_MAX_PARTS with the name part gives
 * PD_ERR_KEY naming it.  See docs/fanout.md.
 */

/**
 * Opens a Namespace named name[0..len) (any bytes, the empty name too, but
 * not containing "-|-" nor ending in "-|": it must cross a Client's wire)
 * over *inner, owned as by pd_buffer_open (PD_BORROW: the caller keeps it).
 * Errors: PD_ERR_MISUSE (NULL inner, bad name, unknown flags),
 * PD_ERR_NOMEM.  On error nothing is taken.
 */
PD_API int pd_namespace_open(pd_store **out, pd_store **inner, const void *name,
                             size_t len, unsigned flags);
/** The name (owned by the Namespace) and its length in *len; NULL if not a
 *  Namespace. */
PD_API const void *pd_namespace_name(const pd_store *ns, size_t *len);
/** The inner store (borrowed); NULL if not a Namespace. */
PD_API pd_store *pd_namespace_inner(const pd_store *ns);

#ifdef __cplusplus
}
#endif

/* The Encode layer and its codecs; the ZeroMQ Server and Client. */
#include "partd/encode.h"
#include "partd/zmq.h"

#endif /* PARTD_PARTD_H */
