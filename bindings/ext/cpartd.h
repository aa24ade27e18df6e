/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * _cpartd: CPython bindings for libpartd (the C types under the `cpartd`
 * package, which adds the Python-level classes and the partd-compatible
 * module layout).  The one private header of the extension's files:
 *
 *   store.c    errors, the call discipline (CP_CALL), argument parsing, the
 *              base type Store (close, lifecycle) and its Lock
 *   keys.c     Python keys and values to pd_key/pd_bytes (cp_batch)
 *   methods.c  Store's methods: append, get, _get, iget, delete, iset, keys
 *   stores.c   the store types Dict, File, Buffer, Compressed
 *   log.c      the store type Log
 *   attempt.c  Store.attempt and the Attempt type (retried writers)
 *   zmq.c      Client, Server and the CURVE helpers
 *   fanout.c   the store types Fanout and Namespace
 *   pickle.c   the pickle writer for object blocks (text_pickle)
 *   blocks.c   PandasBlocks/Numpy serialisation through libpartd's codecs
 *   strings.c  the compact encoding of object (string) blocks
 *   frames.c   frame and framesplit
 *   module.c   the module's functions and PyInit__cpartd
 *
 * One C type per store class (Dict, File, Log, Buffer, Compressed, Client), all
 * sharing one struct (cp_store) and the methods of the base type Store.
 *
 * Conventions:
 *   - Every libpartd call on a store goes through CP_CALL: the store is
 *     marked busy, the GIL released around the call, its error raised.
 *     While the GIL is released no Python API is used; the call only reads
 *     memory pinned before: key objects are held by reference (a dict
 *     passed to append may be changed by another thread meanwhile), values
 *     through Py_buffer (bytes through their reference).
 *   - Buffers and references taken for a call live in one cp_batch (on the
 *     caller's stack for a few keys), released by cp_batch_free on every
 *     path.
 *   - Errors from the library go through one function, cp_raise.
 *   - A store is closed by close(), by the File/Buffer __exit__ in Python,
 *     or when the object is collected.  Closing is refused while another
 *     thread is inside a call, holds the lock, or a Buffer borrows it.
 *   - Names shared between the files start with cp_ (CP_ for macros);
 *     each file's own are static and start with s_.
 */
#ifndef CPARTD_H
#define CPARTD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "partd/partd.h"

#include "core/buf.h" /* libpartd's growable byte buffer, pd__buf */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------- Store */

typedef struct cp_store {
    PyObject_HEAD pd_store *s;
    const char *kind;     /* "Dict", "File", ... for messages */
    Py_ssize_t busy;      /* calls in flight with the GIL released */
    Py_ssize_t borrowers; /* open wrappers that borrow s */
    unsigned long lock_owner;
    Py_ssize_t lock_depth; /* levels taken through the Lock object */
    PyObject *inner[2];    /* Buffer: fast, slow; Compressed: inner */
    PyObject *weakrefs;
    Py_ssize_t get_hint; /* size of the last single-key get (methods.c) */
} cp_store;

extern PyTypeObject cp_StoreType;  /* store.c */
extern PyTypeObject cp_LockType;   /* store.c */
extern PyTypeObject cp_ResultType; /* methods.c */
extern PyTypeObject cp_DictType;   /* stores.c */
extern PyTypeObject cp_FileType;
extern PyTypeObject cp_LogType;
extern PyTypeObject cp_BufferType;
extern PyTypeObject cp_CompressedType;
extern PyTypeObject cp_ClientType; /* zmq.c */
extern PyTypeObject cp_ServerType;
extern PyTypeObject cp_FanoutType; /* fanout.c */
extern PyTypeObject cp_NamespaceType;
extern PyMethodDef cp_store_methods[]; /* methods.c */

extern PyObject *cp_CorruptError; /* module.c */
extern PyObject *cp_ProtocolError;
extern PyObject *cp_AttemptConflict; /* attempt.c */
extern PyTypeObject cp_AttemptType;

#define CP_IS_STORE(o) PyObject_TypeCheck((o), &cp_StoreType)

/* The PyTypeObject of a store type: a subclass of Store (its object is a
 * cp_store) named cpartd._cpartd.<name>, with its own __init__, methods
 * (NULL: only Store's) and attributes (getset, NULL: only Store's). */
/* clang-format off */
#define CP_STORE_TYPE(name, doc, init, methods, getset)                        \
    {                                                                          \
        PyVarObject_HEAD_INIT(NULL, 0)                                         \
        .tp_name = "cpartd._cpartd." name,                                     \
        .tp_basicsize = sizeof(cp_store),                                      \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,                  \
        .tp_doc = (doc),                                                       \
        .tp_base = &cp_StoreType,                                              \
        .tp_init = (initproc)(init),                                           \
        .tp_methods = (methods),                                               \
        .tp_getset = (getset),                                                 \
    }
/* clang-format on */

/* Defines `name`, the getter of a store attribute read from the open
 * handle: conv(fn(self->s)), or a ValueError once the store is closed. */
#define CP_STORE_GETTER(name, conv, fn)                                        \
    static PyObject *name(cp_store *self, void *Py_UNUSED(c)) {                \
        if (cp_check_open(self) < 0) return NULL;                              \
        return conv(fn(self->s));                                              \
    }

/* A METH_FASTCALL | METH_KEYWORDS method's function and flags, for a
 * PyMethodDef: {"name", CP_FASTCALL(fn), "doc"}. */
#define CP_FASTCALL(fn)                                                        \
    (PyCFunction)(void (*)(void))(fn), METH_FASTCALL | METH_KEYWORDS

/* ------------------------------------------------------------ Errors */

/* Maps a libpartd error to a Python exception and returns NULL.  The
 * message is the store's (or the thread's, for s == NULL), read right after
 * the failed call by the thread that made it. */
PyObject *cp_raise(const pd_store *s, int rc);
PyObject *cp_raise_as(int code, int sys, const char *msg);

/* A store's error, copied (without the GIL) before a later call clears it. */
typedef struct cp_saved_err {
    int code, sys;
    char msg[1024];
} cp_saved_err;

void cp_save_err(const pd_store *s, int rc, cp_saved_err *e);

/* 0 when the store is open, else -1 with a ValueError. */
int cp_check_open(cp_store *self);

/* ------------------------------------------------------- Dispatching */

/* Marks a call in flight (close() is refused meanwhile): 0, or
 * PD_ERR_MISUSE with an exception when the store is closed. */
int cp_enter(cp_store *self);
/* Ends what cp_enter began, with the GIL held again: a failure (rc != 0)
 * raises the error saved in *saved, or (saved NULL) the store's, read by
 * the thread that made the call.  Returns rc. */
int cp_leave(cp_store *self, int rc, const cp_saved_err *saved);

/* Runs one statement with the GIL released: it uses no Python API, and
 * only memory pinned before (see the comment at the top). */
#define CP_NOGIL(stmt)                                                         \
    do {                                                                       \
        PyThreadState *cp_ts_ = PyEval_SaveThread();                           \
        stmt;                                                                  \
        PyEval_RestoreThread(cp_ts_);                                          \
    } while (0)

/* rc = call, an expression calling libpartd on self's store, evaluated
 * with the GIL released while the store is marked busy.  On rc != 0 (the
 * store closed, or the call failed) an exception is set: the error saved
 * in *saved when that is not NULL, else the store's.  Every call on an open
 * store goes through here. */
#define CP_CALL_SAVED(self, rc, call, saved)                                   \
    do {                                                                       \
        if (((rc) = cp_enter(self)) == 0) {                                    \
            CP_NOGIL((rc) = (call));                                           \
            (rc) = cp_leave((self), (rc), (saved));                            \
        }                                                                      \
    } while (0)
#define CP_CALL(self, rc, call) CP_CALL_SAVED(self, rc, call, NULL)

/* --------------------------------------------------------- Arguments */

/* Keyword parsing for METH_FASTCALL | METH_KEYWORDS methods: `names` are
 * the parameters in order (the first `npos` may be positional); out[i] is
 * set to the argument or left as it was.  Unknown keywords are a TypeError
 * unless `lenient` (partd's append and get take **kwargs and ignore them). */
int cp_parse(const char *fn, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames, const char *const *names, int nnames, int npos,
             int nreq, bool lenient, PyObject **out);

/* The signature of a store's or an Attempt's method (every parameter may be
 * given by position or by name). */
typedef struct cp_sig {
    const char *fn;
    const char *names[4]; /* the parameters in order */
    int nreq;             /* the first nreq are required */
    int lock, fsync;      /* the indexes of lock= and fsync= (-1: none) */
    bool lenient;         /* unknown keywords are ignored (partd's **kwargs) */
} cp_sig;

/* A method's arguments: a[i] (a slot per name) is the argument for
 * names[i] or NULL, *flags (PD_NOLOCK, PD_FSYNC) come from lock= and
 * fsync=.  0, or -1 with an exception. */
int cp_sig_args(const cp_sig *sig, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames, PyObject **a, unsigned *flags);
/* cp_sig_args for a store method, whose store must be open. */
int cp_args(cp_store *self, const cp_sig *sig, PyObject *const *args,
            Py_ssize_t nargs, PyObject *kwnames, PyObject **a, unsigned *flags);

/* -------------------------------------------------------- Lifecycle */

/* Takes the handle an open call gave (rc 0), or raises its error. */
int cp_adopt(cp_store *self, int rc, pd_store *s, const char *kind);
/* Reopening an object (calling __init__ twice) closes the old handle. */
int cp_reinit(cp_store *self);
/* The __init__ of a store over a directory, File or Log (path, fsync=False):
 * opens path with open(&s, path, create | (fsync ? fsync_flag : 0)) and
 * adopts the handle as `kind`.  0, or -1 with an exception. */
typedef int (*cp_dir_open_fn)(pd_store **out, const char *path, unsigned flags);
int cp_dir_store_init(cp_store *self, PyObject *args, PyObject *kwds,
                      const char *kind, cp_dir_open_fn open, unsigned create,
                      unsigned fsync_flag);
/* The tp_dealloc of a GC type with weak references (Store, Server): untracks
 * self, clears the weak references to it (weakrefs: its list), runs the
 * type's tp_clear and frees it. */
void cp_gc_dealloc(PyObject *self, PyObject *weakrefs, inquiry clear);
/* close(): release the handle (idempotent). */
PyObject *cp_store_close(cp_store *self, PyObject *ignored);
/* An inner store for a wrapper: an open cpartd store.  0, or -1 with a
 * TypeError (what names the argument) or ValueError. */
int cp_check_inner(PyObject *o, const char *what);

/* -------------------------------------------------------------- Keys */

#define CP_NUM 24 /* room for str() of any 64-bit integer */

/* A batch keeps up to CP_INLINE entries, and CP_INLINE_MEM bytes of the
 * tables after objs, in itself (on the caller's stack): a call with a few
 * keys allocates nothing. */
#define CP_INLINE 8
#define CP_INLINE_MEM 1024

typedef struct cp_batch {
    Py_ssize_t n;        /* entries */
    bool values;         /* objs holds values too */
    PyObject **objs;     /* n keys, then n values (owned references) */
    Py_ssize_t nobjs;    /* entries whose references objs holds */
    Py_ssize_t nparts;   /* total parts of the tuple keys */
    pd_key *keys;        /* n */
    pd_bytes *vals;      /* n (NULL without values) */
    Py_buffer *views;    /* n, made for the first value that is not bytes */
    pd_bytes *parts;     /* nparts */
    char (*num)[CP_NUM]; /* n + nparts: decimal text of int keys */
    PyObject **tmp;      /* n + nparts: str() results kept alive */
    Py_ssize_t ntmp;
    char *mem; /* keys, vals, parts, tmp, num: inline_mem or PyMem */
    /* Not zeroed by cp_batch_init: only the part keys.c's s_batch_begin
     * and s_batch_convert fill is read. */
    PyObject *inline_objs[2 * CP_INLINE];
    _Alignas(max_align_t) char inline_mem[CP_INLINE_MEM];
} cp_batch;

/* Readies b for the builders and cp_batch_free. */
void cp_batch_init(cp_batch *b);
/* Releases what the batch holds; b is empty again. */
void cp_batch_free(cp_batch *b);
/* A batch of the items of a mapping (append's data).  0, or -1 with an
 * exception (as the two below). */
int cp_batch_from_mapping(cp_batch *b, PyObject *data);
/* A batch of keys from a sequence (list, tuple of keys, set...). */
int cp_batch_from_keys(cp_batch *b, PyObject *seq);
/* A batch of one key (and value, when not NULL). */
int cp_batch_one(cp_batch *b, PyObject *key, PyObject *value);

/* ------------------------------------------------ Module functions */

/* zmq.c */
PyObject *cp_shutdown(PyObject *mod, PyObject *ignored);
PyObject *cp_curve_public_py(PyObject *mod, PyObject *arg);
PyObject *cp_curve_keypair_py(PyObject *mod, PyObject *ignored);

/* fanout.c */
PyObject *cp_fanout_index(PyObject *mod, PyObject *args);

/* attempt.c: Store.attempt(writer, attempt), and the module's additions
 * (Attempt, AttemptConflict); 0 or -1. */
PyObject *cp_store_attempt(cp_store *self, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames);
int cp_attempt_init(PyObject *m);

/* pickle.c */
/* Pickles `list` (protocol 4, no memo) into b, after an 8-byte frame
 * header with its length (partd frames the pickle before compressing it).
 * 0; 1 when an item is of a type not handled here (no exception set); -1
 * with an exception. */
int cp_text_pickle(PyObject *list, pd__buf *b);
PyObject *cp_text_pickle_py(PyObject *mod, PyObject *arg);

/* blocks.c: how one part of a block is coded, the ids shared with
 * cpartd/blocks.py. */
enum {
    CP_CODEC_RAW = 0,
    CP_CODEC_BLOSC = 1,
    CP_CODEC_SNAPPY = 2,
};
/* Makes the codecs blocks.c runs; 0, or -1 with an exception. */
int cp_blocks_init(void);
PyObject *cp_blocks_frames(PyObject *mod, PyObject *args);
PyObject *cp_decompress_py(PyObject *mod, PyObject *args, PyObject *kwds);
PyObject *cp_concat_into(PyObject *mod, PyObject *args);

/* strings.c: the compact encoding of object blocks (docs/pandas-blocks.md) */
PyObject *cp_strings_pack(PyObject *mod, PyObject *arr);
PyObject *cp_strings_into(PyObject *mod, PyObject *args);

/* frames.c */
PyObject *cp_frame(PyObject *mod, PyObject *arg);
PyObject *cp_framesplit(PyObject *mod, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames);

#endif /* CPARTD_H */
