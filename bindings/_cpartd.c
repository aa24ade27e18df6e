/*
 * _cpartd: CPython bindings for libpartd (the C types under the `cpartd`
 * package, which adds the Python-level classes and the partd-compatible
 * module layout).
 *
 * One C type per store class (Dict, File, Buffer, and Compressed when the
 * library has the Encode layer), all sharing one struct (s_store) and the
 * methods of the base type Store: append, get, _get, iget, delete, _delete,
 * iset, _iset, drop, keys, close, lock.
 *
 * Conventions (see STYLE.md, "Bindings"):
 *   - Every libpartd call on a store goes through S_CALL: the store is
 *     marked busy, the GIL released around the call, its error raised.
 *     While the GIL is released no Python API is used; the call only reads
 *     memory pinned before: key objects are held by reference (a dict
 *     passed to append may be changed by another thread meanwhile), values
 *     through Py_buffer (bytes through their reference).
 *   - Buffers and references taken for a call live in one s_batch (on the
 *     caller's stack for a few keys), released by s_batch_free on every
 *     path.
 *   - Errors from the library go through one function, s_raise.
 *   - A store is closed by close(), by the File/Buffer __exit__ in Python,
 *     or when the object is collected.  Closing is refused while another
 *     thread is inside a call, holds the lock, or a Buffer borrows it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "partd/partd.h"

#include <blosc.h>
#include <snappy-c.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Is the Encode layer (pd_compress_open) in the library?  CMake defines
 * CPARTD_HAVE_ENCODE when src/encode.c provides it. */
#ifndef CPARTD_HAVE_ENCODE
#define CPARTD_HAVE_ENCODE 0
#endif

static PyObject *s_CorruptError;
static PyObject *s_ProtocolError;

/* ----------------------------------------------------------------- Store */

typedef struct s_store {
    PyObject_HEAD pd_store *s;
    const char *kind;     /* "Dict", "File", ... for messages */
    Py_ssize_t busy;      /* calls in flight with the GIL released */
    Py_ssize_t borrowers; /* open wrappers that borrow s */
    unsigned long lock_owner;
    Py_ssize_t lock_depth; /* levels taken through the Lock object */
    PyObject *inner[2];    /* Buffer: fast, slow; Compressed: inner */
    PyObject *weakrefs;
    Py_ssize_t get_hint; /* size of the last single-key get (s_get_one) */
} s_store;

static PyTypeObject s_StoreType;
static PyTypeObject s_DictType;
static PyTypeObject s_FileType;
static PyTypeObject s_BufferType;
static PyTypeObject s_LockType;
#if CPARTD_HAVE_ENCODE
static PyTypeObject s_CompressedType;
#endif

#define S_IS_STORE(o) PyObject_TypeCheck((o), &s_StoreType)

/* Maps a libpartd error to a Python exception and returns NULL.  The
 * message is the store's (or the thread's, for s == NULL), read right after
 * the failed call by the thread that made it. */
static PyObject *s_raise_as(int code, int sys, const char *msg);

static PyObject *s_raise(const pd_store *s, int rc) {
    const char *msg = pd_errmsg(s);
    int code = pd_errcode(s);
    int sys = pd_errno(s);
    if (code == 0) {
        code = rc;
        msg = pd_strerror(rc);
    }
    return s_raise_as(code, sys, msg);
}

/* A store's error, copied (without the GIL) before a later call clears it. */
typedef struct s_saved_err {
    int code, sys;
    char msg[1024];
} s_saved_err;

static void s_save_err(const pd_store *s, int rc, s_saved_err *e) {
    e->code = pd_errcode(s);
    e->sys = pd_errno(s);
    const char *m = pd_errmsg(s);
    if (e->code == 0) {
        e->code = rc;
        m = pd_strerror(rc);
    }
    snprintf(e->msg, sizeof e->msg, "%s", m);
}

static PyObject *s_raise_as(int code, int sys, const char *msg) {
    switch (code) {
    case PD_ERR_IO:
        if (sys) {
            PyObject *args = Py_BuildValue("(is)", sys, msg);
            if (args) {
                PyErr_SetObject(PyExc_OSError, args);
                Py_DECREF(args);
            }
        } else {
            PyErr_SetString(PyExc_OSError, msg);
        }
        break;
    case PD_ERR_NOMEM: PyErr_SetString(PyExc_MemoryError, msg); break;
    case PD_ERR_TIMEOUT: PyErr_SetString(PyExc_TimeoutError, msg); break;
    case PD_ERR_CORRUPT: PyErr_SetString(s_CorruptError, msg); break;
    case PD_ERR_PROTOCOL: PyErr_SetString(s_ProtocolError, msg); break;
    case PD_ERR_UNSUPPORTED:
        PyErr_SetString(PyExc_NotImplementedError, msg);
        break;
    default: /* MISUSE, KEY, LIMIT: the arguments do not fit */
        PyErr_SetString(PyExc_ValueError, msg);
        break;
    }
    return NULL;
}

static int s_check_open(s_store *self) {
    if (self->s) return 0;
    PyErr_Format(PyExc_ValueError, "cpartd: %s store is closed",
                 self->kind ? self->kind : Py_TYPE(self)->tp_name);
    return -1;
}

/* ---------------------------------------------------------- Dispatching */

/* Marks a call in flight (close() is refused meanwhile): 0, or
 * PD_ERR_MISUSE with an exception when the store is closed. */
static int s_enter(s_store *self) {
    if (s_check_open(self) < 0) return PD_ERR_MISUSE;
    self->busy++;
    return 0;
}

/* Ends what s_enter began, with the GIL held again: a failure (rc != 0)
 * raises the error saved in *saved, or (saved NULL) the store's, read by
 * the thread that made the call.  Returns rc. */
static int s_leave(s_store *self, int rc, const s_saved_err *saved) {
    if (rc && saved)
        s_raise_as(saved->code, saved->sys, saved->msg);
    else if (rc)
        s_raise(self->s, rc);
    self->busy--;
    return rc;
}

/* Runs one statement with the GIL released: it uses no Python API, and
 * only memory pinned before (see the file comment). */
#define S_NOGIL(stmt)                                                          \
    do {                                                                       \
        PyThreadState *s_ts_ = PyEval_SaveThread();                            \
        stmt;                                                                  \
        PyEval_RestoreThread(s_ts_);                                           \
    } while (0)

/* rc = call, an expression calling libpartd on self's store, evaluated
 * with the GIL released while the store is marked busy.  On rc != 0 (the
 * store closed, or the call failed) an exception is set: the error saved
 * in *saved when that is not NULL, else the store's.  Every call on an open
 * store goes through here. */
#define S_CALL_SAVED(self, rc, call, saved)                                    \
    do {                                                                       \
        if (((rc) = s_enter(self)) == 0) {                                     \
            S_NOGIL((rc) = (call));                                            \
            (rc) = s_leave((self), (rc), (saved));                             \
        }                                                                      \
    } while (0)
#define S_CALL(self, rc, call) S_CALL_SAVED(self, rc, call, NULL)

/* ------------------------------------------------------------ Arguments */

/* Keyword parsing for METH_FASTCALL | METH_KEYWORDS methods: `names` are
 * the parameters in order (the first `npos` may be positional); out[i] is
 * set to the argument or left as it was.  Unknown keywords are a TypeError
 * unless `lenient` (partd's append and get take **kwargs and ignore them). */
static int s_parse(const char *fn, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames, const char *const *names, int nnames,
                   int npos, int nreq, bool lenient, PyObject **out) {
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d positional arguments (%zd given)",
                     fn, npos, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *kn = PyTuple_GET_ITEM(kwnames, j);
        int found = -1;
        for (int i = 0; i < nnames; i++) {
            if (PyUnicode_CompareWithASCIIString(kn, names[i]) == 0) {
                found = i;
                break;
            }
        }
        if (found < 0) {
            if (lenient) continue;
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument '%U'", fn,
                         kn);
            return -1;
        }
        if (found < nargs) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%s'", fn,
                         names[found]);
            return -1;
        }
        out[found] = args[nargs + j];
    }
    for (int i = 0; i < nreq; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'",
                         fn, names[i]);
            return -1;
        }
    }
    return 0;
}

/* flags from the lock= and fsync= arguments (NULL: the default). */
static int s_flags(PyObject *lock, PyObject *fsync, unsigned *flags) {
    *flags = 0;
    if (lock) {
        int t = PyObject_IsTrue(lock);
        if (t < 0) return -1;
        if (!t) *flags |= PD_NOLOCK;
    }
    if (fsync) {
        int t = PyObject_IsTrue(fsync);
        if (t < 0) return -1;
        if (t) *flags |= PD_FSYNC;
    }
    return 0;
}

/* The signature of a store method (every parameter may be given by
 * position or by name). */
typedef struct s_sig {
    const char *fn;
    const char *names[4]; /* the parameters in order */
    int nreq;             /* the first nreq are required */
    int lock, fsync;      /* the indexes of lock= and fsync= (-1: none) */
    bool lenient;         /* unknown keywords are ignored (partd's **kwargs) */
} s_sig;

/* A store method's arguments: a[i] (a slot per name) is the argument for
 * names[i] or NULL, *flags come from lock= and fsync=, and the store must
 * be open.  0, or -1 with an exception.  One positional argument, the
 * common call, needs no parsing. */
static int s_args(s_store *self, const s_sig *sig, PyObject *const *args,
                  Py_ssize_t nargs, PyObject *kwnames, PyObject **a,
                  unsigned *flags) {
    int n = 0;
    while (n < 4 && sig->names[n]) a[n++] = NULL;
    if (nargs == 1 && !kwnames && sig->nreq <= 1)
        a[0] = args[0];
    else if (s_parse(sig->fn, args, nargs, kwnames, sig->names, n, n, sig->nreq,
                     sig->lenient, a) < 0)
        return -1;
    if (s_flags(sig->lock >= 0 ? a[sig->lock] : NULL,
                sig->fsync >= 0 ? a[sig->fsync] : NULL, flags) < 0)
        return -1;
    return s_check_open(self);
}

/* ----------------------------------------------------------------- Keys */

/* Keys are converted as partd's token() names files: str is its UTF-8
 * bytes, an int (or anything with __index__) is str(key), bytes are
 * themselves, and a tuple is a tuple key whose parts are its items, nested
 * tuples flattened (token(('a', ('b', 'c'))) is 'a/b/c').  Other types are a
 * TypeError. */

#define S_NUM 24 /* room for str() of any 64-bit integer */

/* A batch keeps up to S_INLINE entries, and S_INLINE_MEM bytes of the
 * tables after objs, in itself (on the caller's stack): a call with a few
 * keys allocates nothing. */
#define S_INLINE 8
#define S_INLINE_MEM 1024

typedef struct s_batch {
    Py_ssize_t n;       /* entries */
    bool values;        /* objs holds values too */
    PyObject **objs;    /* n keys, then n values (owned references) */
    Py_ssize_t nobjs;   /* entries whose references objs holds */
    Py_ssize_t nparts;  /* total parts of the tuple keys */
    pd_key *keys;       /* n */
    pd_bytes *vals;     /* n (NULL without values) */
    Py_buffer *views;   /* n, made for the first value that is not bytes */
    pd_bytes *parts;    /* nparts */
    char (*num)[S_NUM]; /* n + nparts: decimal text of int keys */
    PyObject **tmp;     /* n + nparts: str() results kept alive */
    Py_ssize_t ntmp;
    char *mem; /* keys, vals, parts, tmp, num: inline_mem or PyMem */
    /* Not zeroed by s_batch_init: only the part s_batch_begin and
     * s_batch_convert fill is read. */
    PyObject *inline_objs[2 * S_INLINE];
    _Alignas(max_align_t) char inline_mem[S_INLINE_MEM];
} s_batch;

/* Readies b for the builders and s_batch_free. */
static void s_batch_init(s_batch *b) {
    memset(b, 0, offsetof(s_batch, inline_objs));
}

/* Parts a tuple key contributes, nested tuples flattened; -1 with an
 * exception for an empty tuple or one nested too deep. */
static Py_ssize_t s_count_parts(PyObject *t, int depth) {
    Py_ssize_t n = PyTuple_GET_SIZE(t), c = 0;
    if (n == 0) {
        PyErr_SetString(PyExc_TypeError, "cpartd: a key cannot be an empty "
                                         "tuple");
        return -1;
    }
    if (depth > PD_KEY_MAX_PARTS) {
        PyErr_SetString(PyExc_ValueError, "cpartd: key tuples nested too "
                                          "deep");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(t, i);
        if (PyTuple_Check(o)) {
            Py_ssize_t k = s_count_parts(o, depth + 1);
            if (k < 0) return -1;
            c += k;
        } else {
            c++;
        }
    }
    return c;
}

/* The decimal text of v, written at the end of num (S_NUM bytes), two
 * digits per step. */
static pd_bytes s_int_text(long long v, char *num) {
    static const char d2[] = "00010203040506070809"
                             "10111213141516171819"
                             "20212223242526272829"
                             "30313233343536373839"
                             "40414243444546474849"
                             "50515253545556575859"
                             "60616263646566676869"
                             "70717273747576777879"
                             "80818283848586878889"
                             "90919293949596979899";
    char *end = num + S_NUM, *p = end;
    unsigned long long u =
        v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    while (u >= 100) {
        size_t r = (size_t)(u % 100) * 2;
        u /= 100;
        p -= 2;
        memcpy(p, d2 + r, 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, d2 + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0) *--p = '-';
    return (pd_bytes){p, (size_t)(end - p)};
}

/* numpy.float32 and the like: a number with __float__ but no __index__. */
static bool s_floatlike(PyObject *o) {
    PyNumberMethods *nm = Py_TYPE(o)->tp_as_number;
    return nm && nm->nb_float && !PyComplex_Check(o);
}

/* *out = the UTF-8 of str(o) (s when not NULL, else computed), kept alive
 * in the batch.  0, or -1 with an exception. */
static int s_str_key(s_batch *b, PyObject *o, PyObject *s, pd_bytes *out) {
    if (!s) s = PyObject_Str(o);
    if (!s) return -1;
    b->tmp[b->ntmp++] = s;
    Py_ssize_t len;
    const char *p = PyUnicode_AsUTF8AndSize(s, &len);
    if (!p) return -1;
    *out = (pd_bytes){p, (size_t)len};
    return 0;
}

/* A float key (dask's shuffles use float partition keys): an integral value
 * is the text of the int it equals (1.0 and 1 are one key, as in a Python
 * dict, partd's Dict), any other is str(key), as partd's File names it. */
static int s_float_key(s_batch *b, PyObject *o, pd_bytes *out) {
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    if (!isfinite(d) || d != floor(d)) return s_str_key(b, o, NULL, out);
    PyObject *i = PyLong_FromDouble(d);
    if (!i) return -1;
    PyObject *s = PyObject_Str(i);
    Py_DECREF(i);
    return s ? s_str_key(b, o, s, out) : -1;
}

/* The keys most calls carry, converted without a call: an int of one
 * digit (a partition number), an ASCII str, bytes.  False for the others,
 * which s_scalar_slow converts. */
static inline bool s_quick_key(PyObject *o, char *num, pd_bytes *out) {
#if PY_VERSION_HEX >= 0x030B0000 /* before 3.11: s_scalar_slow */
    if (PyLong_CheckExact(o)) {
#if PY_VERSION_HEX >= 0x030C0000
        if (!PyUnstable_Long_IsCompact((PyLongObject *)o)) return false;
        long long v =
            (long long)PyUnstable_Long_CompactValue((PyLongObject *)o);
#else
        Py_ssize_t size = Py_SIZE(o);
        if (size < -1 || size > 1) return false;
        long long v =
            size ? size * (long long)((PyLongObject *)o)->ob_digit[0] : 0;
#endif
        *out = s_int_text(v, num);
        return true;
    }
#endif
    if (PyUnicode_CheckExact(o) && PyUnicode_IS_COMPACT_ASCII(o)) {
        *out = (pd_bytes){PyUnicode_DATA(o), (size_t)PyUnicode_GET_LENGTH(o)};
        return true;
    }
    if (PyBytes_CheckExact(o)) {
        *out = (pd_bytes){PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o)};
        return true;
    }
    return false;
}

/* Converts the keys s_quick_key leaves.  0, or -1 with an exception. */
static int s_scalar_slow(s_batch *b, PyObject *o, char *num, pd_bytes *out) {
    if (PyLong_CheckExact(o)) {
        int ovf = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &ovf);
        if (ovf) return s_str_key(b, o, NULL, out); /* a big int */
        if (v == -1 && PyErr_Occurred()) return -1;
        *out = s_int_text(v, num);
        return 0;
    }
    if (PyUnicode_Check(o)) {
        Py_ssize_t len;
        const char *p = PyUnicode_AsUTF8AndSize(o, &len);
        if (!p) return -1;
        *out = (pd_bytes){p, (size_t)len};
        return 0;
    }
    if (PyBytes_Check(o)) {
        *out = (pd_bytes){PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o)};
        return 0;
    }
    /* bool, IntEnum, numpy integers: str(key), as partd. */
    if (PyLong_Check(o) || PyIndex_Check(o)) return s_str_key(b, o, NULL, out);
    if (PyFloat_Check(o) || s_floatlike(o)) return s_float_key(b, o, out);
    PyErr_Format(PyExc_TypeError,
                 "cpartd: a key must be str, bytes, int, float or a tuple of "
                 "them, not %.100s",
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* Converts one non-tuple key (or part) to bytes; num is its scratch for an
 * int's text.  0, or -1 with an exception. */
static inline int s_scalar(s_batch *b, PyObject *o, char *num, pd_bytes *out) {
    return s_quick_key(o, num, out) ? 0 : s_scalar_slow(b, o, num, out);
}

static int s_fill_parts(s_batch *b, PyObject *t, Py_ssize_t *j) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
        PyObject *o = PyTuple_GET_ITEM(t, i);
        if (PyTuple_Check(o)) {
            if (s_fill_parts(b, o, j) < 0) return -1;
            continue;
        }
        if (s_scalar(b, o, b->num[b->n + *j], &b->parts[*j]) < 0) return -1;
        (*j)++;
    }
    return 0;
}

static void s_batch_free(s_batch *b) {
    if (b->views) {
        for (Py_ssize_t i = 0; i < b->n; i++)
            if (b->views[i].obj) PyBuffer_Release(&b->views[i]);
        PyMem_Free(b->views);
    }
    for (Py_ssize_t i = 0; i < b->ntmp; i++) Py_DECREF(b->tmp[i]);
    for (Py_ssize_t i = 0; i < b->nobjs; i++) {
        Py_DECREF(b->objs[i]);
        if (b->values) Py_DECREF(b->objs[b->n + i]);
    }
    if (b->mem != b->inline_mem) PyMem_Free(b->mem);
    if (b->objs != b->inline_objs) PyMem_Free(b->objs);
    s_batch_init(b);
}

/* Sizes b (after s_batch_init) for n entries whose objs[] the caller
 * fills, counting them in nobjs. */
static int s_batch_begin(s_batch *b, Py_ssize_t n, bool values) {
    b->n = n;
    b->values = values;
    size_t m = (size_t)n * (values ? 2 : 1);
    if (m <= 2 * S_INLINE) {
        b->objs = b->inline_objs;
        return 0;
    }
    b->objs = PyMem_Malloc(m * sizeof *b->objs);
    if (!b->objs) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Takes a buffer on value i, which is not bytes. */
static int s_batch_view(s_batch *b, Py_ssize_t i, PyObject *v) {
    if (!b->views) {
        b->views = PyMem_Calloc((size_t)b->n, sizeof *b->views);
        if (!b->views) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_buffer *view = &b->views[i];
    if (PyObject_GetBuffer(v, view, PyBUF_SIMPLE) < 0) {
        view->obj = NULL;
        return -1;
    }
    b->vals[i] = (pd_bytes){view->buf, (size_t)view->len};
    return 0;
}

/* With objs[0..n) (and values at objs[n..2n)) filled: converts the keys
 * and takes the values' bytes.  0, or -1 with an exception. */
static int s_batch_convert(s_batch *b) {
    Py_ssize_t n = b->n, np = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = b->objs[i];
        if (PyTuple_Check(k)) {
            Py_ssize_t c = s_count_parts(k, 0);
            if (c < 0) return -1;
            np += c;
        }
    }
    b->nparts = np;
    size_t nn = (size_t)n, npp = (size_t)np;
    size_t sz = nn * sizeof(pd_key) + npp * sizeof(pd_bytes) +
                (nn + npp) * (S_NUM + sizeof(PyObject *));
    if (b->values) sz += nn * sizeof(pd_bytes);
    char *mem = b->inline_mem;
    if (sz > S_INLINE_MEM && !(mem = PyMem_Malloc(sz))) {
        PyErr_NoMemory();
        return -1;
    }
    b->mem = mem;
    /* Pointers and sizes first, then the text. */
    b->keys = (pd_key *)mem;
    mem += nn * sizeof(pd_key);
    if (b->values) {
        b->vals = (pd_bytes *)mem;
        mem += nn * sizeof(pd_bytes);
    }
    b->parts = (pd_bytes *)mem;
    mem += npp * sizeof(pd_bytes);
    b->tmp = (PyObject **)mem;
    mem += (nn + npp) * sizeof(PyObject *);
    b->num = (char(*)[S_NUM])mem;

    Py_ssize_t j = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = b->objs[i];
        if (PyTuple_Check(k)) {
            Py_ssize_t j0 = j;
            if (s_fill_parts(b, k, &j) < 0) return -1;
            b->keys[i] = (pd_key){NULL, 0, b->parts + j0, (size_t)(j - j0)};
        } else {
            pd_bytes v;
            if (s_scalar(b, k, b->num[i], &v) < 0) return -1;
            b->keys[i] = (pd_key){v.data, v.size, NULL, 0};
        }
    }
    for (Py_ssize_t i = 0; b->values && i < n; i++) {
        PyObject *v = b->objs[n + i];
        if (PyBytes_CheckExact(v)) /* held through objs: no view needed */
            b->vals[i] =
                (pd_bytes){PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v)};
        else if (s_batch_view(b, i, v) < 0)
            return -1;
    }
    return 0;
}

/* A batch of the items of a mapping (append's data). */
static int s_batch_from_mapping(s_batch *b, PyObject *data) {
    if (PyDict_Check(data)) {
        Py_ssize_t pos = 0, i = 0, n = PyDict_GET_SIZE(data);
        if (s_batch_begin(b, n, true) < 0) return -1;
        PyObject *k, *v;
        /* No Python code runs in this loop, so the dict cannot change. */
        while (i < n && PyDict_Next(data, &pos, &k, &v)) {
            b->objs[i] = Py_NewRef(k);
            b->objs[n + i] = Py_NewRef(v);
            b->nobjs = ++i;
        }
        if (i < n) { /* cannot happen: nothing above runs Python code */
            PyErr_SetString(PyExc_RuntimeError,
                            "cpartd: append's dict changed size");
            return -1;
        }
        return s_batch_convert(b);
    }
    if (!PyMapping_Check(data) || PyUnicode_Check(data) ||
        PyBytes_Check(data) || PyList_Check(data) || PyTuple_Check(data)) {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: append takes a mapping of keys to bytes-like "
                     "values, not %.100s",
                     Py_TYPE(data)->tp_name);
        return -1;
    }
    PyObject *items = PyMapping_Items(data);
    if (!items) return -1;
    Py_ssize_t n = PyList_GET_SIZE(items);
    int rc = s_batch_begin(b, n, true);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        PyObject *it = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 2) {
            PyErr_SetString(PyExc_TypeError,
                            "cpartd: items() must give (key, value) pairs");
            rc = -1;
            break;
        }
        b->objs[i] = Py_NewRef(PyTuple_GET_ITEM(it, 0));
        b->objs[n + i] = Py_NewRef(PyTuple_GET_ITEM(it, 1));
        b->nobjs = i + 1;
    }
    Py_DECREF(items);
    return rc == 0 ? s_batch_convert(b) : -1;
}

/* A batch of keys from a sequence (list, tuple of keys, set...). */
static int s_batch_from_keys(s_batch *b, PyObject *seq) {
    PyObject *fast = PySequence_Fast(seq, "cpartd: keys must be a list");
    if (!fast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    int rc = s_batch_begin(b, n, false);
    if (rc == 0) {
        PyObject **items = PySequence_Fast_ITEMS(fast);
        for (Py_ssize_t i = 0; i < n; i++) b->objs[i] = Py_NewRef(items[i]);
        b->nobjs = n;
    }
    Py_DECREF(fast);
    return rc == 0 ? s_batch_convert(b) : -1;
}

/* A batch of one key (and value, when not NULL). */
static int s_batch_one(s_batch *b, PyObject *key, PyObject *value) {
    if (s_batch_begin(b, 1, value != NULL) < 0) return -1;
    b->objs[0] = Py_NewRef(key);
    if (value) b->objs[1] = Py_NewRef(value);
    b->nobjs = 1;
    return s_batch_convert(b);
}

/* ------------------------------------------------------------------ Gets */

/* pd_get on a batch; returns a new list of bytes or NULL. */
static PyObject *s_get_list(s_store *self, s_batch *b, unsigned flags) {
    pd_result *r = NULL;
    int rc;
    if (b->n == 0) return PyList_New(0);
    S_CALL(self, rc, pd_get(self->s, (size_t)b->n, b->keys, &r, flags));
    if (rc) return NULL;
    PyObject *list = PyList_New(b->n);
    for (Py_ssize_t i = 0; list && i < b->n; i++) {
        pd_bytes v = pd_result_value(r, (size_t)i);
        PyObject *o = PyBytes_FromStringAndSize(v.data, (Py_ssize_t)v.size);
        if (!o) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, o);
    }
    pd_result_free(&r);
    return list;
}

/* Values from this size up are read straight into a bytes object. */
#define S_INTO_MIN 4096

/* pd_get of one key (get(key), iget): its value as bytes, or NULL.  When
 * the last single-key get on this store was large, the value is read
 * straight into a bytes object of that size plus some slack (pd_get_into),
 * then shrunk: no copy, as partd's f.read().  A wrong guess costs the copy
 * it saves. */
static PyObject *s_get_one(s_store *self, PyObject *key, unsigned flags) {
    s_batch b;
    s_batch_init(&b);
    PyObject *ret = NULL, *buf = NULL;
    if (s_batch_one(&b, key, NULL) == 0) {
        Py_ssize_t hint = self->get_hint, cap = 0;
        if (hint >= S_INTO_MIN && hint < PY_SSIZE_T_MAX - 8192) {
            Py_ssize_t slack = hint / 16 > 4096 ? 4096 : hint / 16;
            cap = hint + slack + 1; /* File reads the size + up to 4 KiB */
            buf = PyBytes_FromStringAndSize(NULL, cap);
            if (!buf) {
                PyErr_Clear(); /* no room for the guess: read as usual */
                cap = 0;
            }
        }
        char *bp = buf ? PyBytes_AS_STRING(buf) : NULL;
        pd_result *r = NULL;
        int rc;
        S_CALL(self, rc,
               pd_get_into(self->s, 1, b.keys, bp, (size_t)cap, &r, flags));
        if (!rc) {
            pd_bytes v = pd_result_value(r, 0);
            self->get_hint = (Py_ssize_t)v.size;
            if (buf && pd_result_in(r, bp)) {
                pd_result_free(&r); /* buf stays */
                Py_ssize_t len = (Py_ssize_t)v.size;
                if (cap - len <= 8192) {
                    /* A few KiB over: keep the block (a realloc would make
                     * it one malloc cannot hand out again for the next get
                     * of this size); the object, fresh and unshared, just
                     * says it is shorter. */
                    Py_SET_SIZE(buf, len);
                    bp[len] = '\0';
                    ret = buf;
                    buf = NULL;
                } else if (_PyBytes_Resize(&buf, len) == 0) {
                    ret = buf;
                    buf = NULL;
                }
            } else {
                ret = PyBytes_FromStringAndSize(v.data, (Py_ssize_t)v.size);
                pd_result_free(&r);
            }
        }
    }
    Py_XDECREF(buf);
    s_batch_free(&b);
    return ret;
}

/* A pd_result exported through the buffer protocol: the values of one get,
 * back to back in one allocation, shared by the memoryviews over them. */
typedef struct s_result {
    PyObject_HEAD pd_result *r;
    char *base; /* start of the values */
    Py_ssize_t len;
} s_result;

static PyTypeObject s_ResultType;

static int s_result_getbuffer(s_result *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, self->base, self->len, 1,
                             flags);
}

static void s_result_dealloc(s_result *self) {
    pd_result_free(&self->r);
    PyObject_Free(self);
}

static PyBufferProcs s_result_as_buffer = {
    .bf_getbuffer = (getbufferproc)s_result_getbuffer,
};

static PyTypeObject s_ResultType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Result",
    .tp_basicsize = sizeof(s_result),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The bytes of one get, shared by memoryviews (read-only).",
    .tp_dealloc = (destructor)s_result_dealloc,
    .tp_as_buffer = &s_result_as_buffer,
};

/* pd_get on a batch; returns a list of read-only memoryviews over one
 * Result (no copy), or NULL. */
static PyObject *s_get_views(s_store *self, s_batch *b, unsigned flags) {
    pd_result *r = NULL;
    int rc;
    if (b->n == 0) return PyList_New(0);
    S_CALL(self, rc, pd_get(self->s, (size_t)b->n, b->keys, &r, flags));
    if (rc) return NULL;
    s_result *res = PyObject_New(s_result, &s_ResultType);
    if (!res) {
        pd_result_free(&r);
        return NULL;
    }
    res->r = r;
    res->base = NULL;
    res->len = (Py_ssize_t)pd_result_total(r);
    for (Py_ssize_t i = 0; i < b->n && !res->base; i++) {
        pd_bytes v = pd_result_value(r, (size_t)i);
        if (v.size) res->base = (char *)v.data;
    }
    static char empty;
    if (!res->base) res->base = &empty;
    PyObject *list = NULL, *whole = PyMemoryView_FromObject((PyObject *)res);
    if (!whole) goto out;
    list = PyList_New(b->n);
    for (Py_ssize_t i = 0; list && i < b->n; i++) {
        pd_bytes v = pd_result_value(r, (size_t)i);
        Py_ssize_t off = v.size ? (Py_ssize_t)((char *)v.data - res->base) : 0;
        PyObject *o = PySequence_GetSlice(whole, off, off + (Py_ssize_t)v.size);
        if (!o) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, o);
    }
out:
    Py_XDECREF(whole);
    Py_DECREF(res);
    return list;
}

/* --------------------------------------------------------- Store methods */

static PyObject *s_store_append(s_store *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {"append", {"data", "lock", "fsync"}, 1, 1, 2,
                              true};
    PyObject *a[3];
    unsigned flags;
    if (s_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    s_batch b;
    s_batch_init(&b);
    int rc = s_batch_from_mapping(&b, a[0]);
    if (rc == 0 && b.n > 0)
        S_CALL(self, rc,
               pd_append(self->s, (size_t)b.n, b.keys, b.vals, flags));
    s_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

/* Appends each value as one frame (8-byte little-endian length, then the
 * bytes) without copying it: the batch repeats each key, header then value
 * (an append batch is atomic and keeps array order). */
static PyObject *s_store_append_framed(s_store *self, PyObject *const *args,
                                       Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {
        "_append_framed", {"data", "lock", "fsync"}, 1, 1, 2, true};
    PyObject *a[3];
    unsigned flags;
    if (s_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    s_batch b;
    s_batch_init(&b);
    pd_key *keys = NULL;
    pd_bytes *vals = NULL;
    unsigned char(*hdr)[8] = NULL;
    int rc = s_batch_from_mapping(&b, a[0]);
    if (rc == 0 && b.n > 0) {
        size_t n = (size_t)b.n;
        keys = PyMem_Malloc(2 * n * sizeof *keys);
        vals = PyMem_Malloc(2 * n * sizeof *vals);
        hdr = PyMem_Malloc(n * sizeof *hdr);
        if (!keys || !vals || !hdr) {
            PyErr_NoMemory();
            rc = -1;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t len = b.vals[i].size;
            for (int k = 0; k < 8; k++)
                hdr[i][k] = (unsigned char)(len >> (8 * k));
            keys[2 * i] = keys[2 * i + 1] = b.keys[i];
            vals[2 * i] = (pd_bytes){hdr[i], 8};
            vals[2 * i + 1] = b.vals[i];
        }
        S_CALL(self, rc, pd_append(self->s, 2 * n, keys, vals, flags));
    }
out:
    PyMem_Free(keys);
    PyMem_Free(vals);
    PyMem_Free(hdr);
    s_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

/* Flattens nested lists of keys into `flat` (a list), as partd's flatten. */
static int s_flatten(PyObject *keys, PyObject *flat, int depth) {
    if (depth > 100) {
        PyErr_SetString(PyExc_RecursionError, "cpartd: key lists nested too "
                                              "deep");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        int rc = PyList_Check(k) ? s_flatten(k, flat, depth + 1)
                                 : PyList_Append(flat, k);
        if (rc < 0) return -1;
    }
    return 0;
}

/* A copy of nested lists of keys (lists copied, keys shared). */
static PyObject *s_shape_copy(PyObject *keys, int depth) {
    if (depth > 100) {
        PyErr_SetString(PyExc_RecursionError, "cpartd: key lists nested too "
                                              "deep");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        PyObject *c =
            PyList_Check(k) ? s_shape_copy(k, depth + 1) : Py_NewRef(k);
        if (!c) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, c);
    }
    return out;
}

/* Rebuilds the nesting of `keys` with the values of `flat` from *pos. */
static PyObject *s_unflatten(PyObject *keys, PyObject *flat, Py_ssize_t *pos) {
    Py_ssize_t n = PyList_GET_SIZE(keys);
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i), *v;
        if (PyList_Check(k)) {
            v = s_unflatten(k, flat, pos);
            if (!v) {
                Py_DECREF(out);
                return NULL;
            }
        } else {
            v = Py_NewRef(PyList_GET_ITEM(flat, *pos));
            (*pos)++;
        }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

/* pd_get of a sequence of keys: a list of bytes, or of memoryviews over
 * one Result. */
static PyObject *s_get_flat(s_store *self, PyObject *keys, unsigned flags,
                            bool views) {
    s_batch b;
    s_batch_init(&b);
    PyObject *ret = NULL;
    if (s_batch_from_keys(&b, keys) == 0)
        ret =
            views ? s_get_views(self, &b, flags) : s_get_list(self, &b, flags);
    s_batch_free(&b);
    return ret;
}

/* pd_get of a list of keys as a list of bytes, with the nesting of nested
 * lists. */
static PyObject *s_get_nested(s_store *self, PyObject *keys, unsigned flags) {
    bool nested = false;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys) && !nested; i++)
        nested = PyList_Check(PyList_GET_ITEM(keys, i));
    if (!nested) return s_get_flat(self, keys, flags, false);
    /* A private copy of the nesting: the caller's lists could change while
     * the GIL is released. */
    PyObject *shape = s_shape_copy(keys, 0), *flat = NULL, *vals = NULL;
    PyObject *ret = NULL;
    if (shape) flat = PyList_New(0);
    if (flat && s_flatten(shape, flat, 0) == 0)
        vals = s_get_flat(self, flat, flags, false);
    if (vals) {
        Py_ssize_t pos = 0;
        ret = s_unflatten(shape, vals, &pos);
    }
    Py_XDECREF(shape);
    Py_XDECREF(flat);
    Py_XDECREF(vals);
    return ret;
}

/* get(keys, lock=True): bytes for one key, a list for a list of keys, with
 * the same nesting for nested lists. */
static PyObject *s_store_get(s_store *self, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {"get", {"keys", "lock"}, 1, 1, -1, true};
    PyObject *a[2];
    unsigned flags;
    if (s_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    if (!PyList_Check(a[0])) return s_get_one(self, a[0], flags);
    return s_get_nested(self, a[0], flags);
}

/* _get(keys, lock=True): a list, one value per key (no nesting). */
static PyObject *s_store__get(s_store *self, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {"_get", {"keys", "lock"}, 1, 1, -1, true};
    PyObject *a[2];
    unsigned flags;
    if (s_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    if (PyUnicode_Check(a[0]) || PyBytes_Check(a[0]) || PyLong_Check(a[0]) ||
        PyDict_Check(a[0])) {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: _get takes a list of keys, not %.100s",
                     Py_TYPE(a[0])->tp_name);
        return NULL;
    }
    return s_get_flat(self, a[0], flags, false);
}

/* _get_views(keys, lock=True): as _get, but memoryviews (no copy). */
static PyObject *s_store__get_views(s_store *self, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {"_get_views", {"keys", "lock"}, 1, 1, -1, true};
    PyObject *a[2];
    unsigned flags;
    if (s_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    if (!PyList_Check(a[0]) && !PyTuple_Check(a[0])) {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: _get_views takes a list of keys, not %.100s",
                     Py_TYPE(a[0])->tp_name);
        return NULL;
    }
    return s_get_flat(self, a[0], flags, true);
}

static PyObject *s_store_iget(s_store *self, PyObject *key) {
    if (s_check_open(self) < 0) return NULL;
    return s_get_one(self, key, PD_NOLOCK);
}

static PyObject *s_do_delete(s_store *self, const s_sig *sig,
                             PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, bool single_ok) {
    PyObject *a[2];
    unsigned flags;
    if (s_args(self, sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    s_batch b;
    s_batch_init(&b);
    int rc = (single_ok && !PyList_Check(a[0])) ? s_batch_one(&b, a[0], NULL)
                                                : s_batch_from_keys(&b, a[0]);
    if (rc == 0 && b.n > 0)
        S_CALL(self, rc, pd_delete(self->s, (size_t)b.n, b.keys, flags));
    s_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_store_delete(s_store *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {"delete", {"keys", "lock"}, 1, 1, -1, false};
    return s_do_delete(self, &sig, args, nargs, kwnames, true);
}

static PyObject *s_store__delete(s_store *self, PyObject *const *args,
                                 Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {"_delete", {"keys", "lock"}, 1, 1, -1, false};
    return s_do_delete(self, &sig, args, nargs, kwnames, false);
}

/* Replaces key's content (delete, then append) under one hold of the
 * store's lock (none with PD_NOLOCK); runs without the GIL.  A failure's
 * error is saved in *err: unlocking clears the store's. */
static int s_replace(pd_store *s, const pd_key *key, const pd_bytes *val,
                     unsigned flags, s_saved_err *err) {
    int rc = 0;
    bool have = false;
    if (!(flags & PD_NOLOCK)) {
        rc = pd_lock(s);
        have = rc == 0;
    }
    if (!rc) rc = pd_delete(s, 1, key, PD_NOLOCK);
    if (!rc) rc = pd_append(s, 1, key, val, (flags & PD_FSYNC) | PD_NOLOCK);
    if (rc) s_save_err(s, rc, err);
    if (have) {
        int urc = pd_unlock(s);
        if (urc && !rc) {
            rc = urc;
            s_save_err(s, rc, err);
        }
    }
    return rc;
}

/* iset(key, value, lock=True): pd_iset; _iset: replace the key's content,
 * every time (the raw set under partd's iset, which wrappers such as Numpy
 * call directly). */
static PyObject *s_do_iset(s_store *self, const s_sig *sig,
                           PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames, bool replace) {
    PyObject *a[4];
    unsigned flags;
    if (s_args(self, sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    s_batch b;
    s_batch_init(&b);
    s_saved_err err;
    int rc = s_batch_one(&b, a[0], a[1]);
    if (rc == 0 && replace)
        S_CALL_SAVED(self, rc, s_replace(self->s, b.keys, b.vals, flags, &err),
                     &err);
    else if (rc == 0)
        S_CALL(self, rc, pd_iset(self->s, 1, b.keys, b.vals, flags));
    s_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_store_iset(s_store *self, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {
        "iset", {"key", "value", "lock", "fsync"}, 2, 2, 3, false};
    return s_do_iset(self, &sig, args, nargs, kwnames, false);
}

static PyObject *s_store__iset(s_store *self, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {
        "_iset", {"key", "value", "lock", "fsync"}, 2, 2, 3, false};
    return s_do_iset(self, &sig, args, nargs, kwnames, true);
}

static PyObject *s_store_drop(s_store *self, PyObject *Py_UNUSED(ignored)) {
    int rc;
    S_CALL(self, rc, pd_drop(self->s, 0));
    if (rc) return NULL;
    Py_RETURN_NONE;
}

/* A stored key part back as Python: str when it is UTF-8, else bytes. */
static PyObject *s_part_obj(const void *data, size_t size) {
    PyObject *o =
        PyUnicode_DecodeUTF8((const char *)data, (Py_ssize_t)size, "strict");
    if (o) return o;
    PyErr_Clear();
    return PyBytes_FromStringAndSize(data, (Py_ssize_t)size);
}

static PyObject *s_key_obj(const pd_key *k) {
    if (k->nparts == 0) return s_part_obj(k->data, k->size);
    PyObject *t = PyTuple_New((Py_ssize_t)k->nparts);
    if (!t) return NULL;
    for (size_t i = 0; i < k->nparts; i++) {
        PyObject *p = s_part_obj(k->parts[i].data, k->parts[i].size);
        if (!p) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, p);
    }
    return t;
}

/* keys(lock=True): the keys holding data (str parts when UTF-8, else
 * bytes; int keys come back as their str), in no particular order. */
static PyObject *s_store_keys(s_store *self, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {"keys", {"lock"}, 0, 0, -1, false};
    PyObject *a[1];
    unsigned flags;
    if (s_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    pd_keylist *kl = NULL;
    int rc;
    S_CALL(self, rc, pd_keys(self->s, &kl, flags));
    if (rc) return NULL;
    size_t n = pd_keylist_count(kl);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        pd_key k;
        PyObject *o = NULL;
        if (pd_keylist_key(kl, i, &k) == 0)
            o = s_key_obj(&k);
        else
            PyErr_SetString(PyExc_RuntimeError, "cpartd: bad key list");
        if (!o) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, o);
    }
    pd_keylist_free(&kl);
    return list;
}

/* s_close's libpartd part, without the GIL: drop first drops `drop` (a
 * Buffer's fast Dict), and discard makes a Buffer forget its fast store. */
static int s_shut(pd_store **s, pd_store *drop, bool discard) {
    if (drop) pd_drop(drop, 0);
    if (discard) pd_buffer_discard(*s);
    return pd_close(s);
}

/* Closes the handle (and ends the borrow of inner stores).  Refused while
 * the store is in use; see the file comment. */
static int s_close(s_store *self, bool dealloc) {
    if (!self->s) return 0;
    if (!dealloc) {
        if (self->busy > 0) {
            PyErr_SetString(PyExc_ValueError, "cpartd: cannot close a store "
                                              "while another thread uses it");
            return -1;
        }
        if (self->borrowers > 0) {
            PyErr_SetString(PyExc_ValueError,
                            "cpartd: cannot close a store that an open "
                            "Buffer or other wrapper uses; close that first");
            return -1;
        }
        if (self->lock_depth > 0 &&
            self->lock_owner != PyThread_get_thread_ident()) {
            PyErr_SetString(PyExc_ValueError, "cpartd: cannot close a store "
                                              "whose lock another thread "
                                              "holds");
            return -1;
        }
    }
    pd_store *s = self->s;
    self->s = NULL;
    self->lock_depth = 0;
    /* A Buffer collected without close() forgets what fast holds, as
     * partd's does: nothing can read it any more (its slow store is
     * usually the temporary File of a dask shuffle, about to be removed),
     * and moving it to slow would write it all to disk.  close() moves it
     * (pd_close). */
    bool discard = dealloc && PyObject_TypeCheck(self, &s_BufferType);
    /* A fast Dict nothing else can see (dask's Buffer(Dict(), File())) is
     * dropped at once: cheaper than discard's deletes, key by key. */
    s_store *fast = discard ? (s_store *)self->inner[0] : NULL;
    pd_store *drop = fast && fast->s && Py_REFCNT(fast) == 1 &&
                             fast->borrowers == 1 &&
                             strcmp(pd_store_kind(fast->s), "dict") == 0
                         ? fast->s
                         : NULL;
    int rc;
    S_NOGIL(rc = s_shut(&s, drop, discard));
    for (int i = 0; i < 2; i++) {
        s_store *in = (s_store *)self->inner[i];
        if (in) in->borrowers--;
    }
    if (rc && !dealloc) {
        s_raise(NULL, rc);
        return -1;
    }
    return 0;
}

static PyObject *s_store_close(s_store *self, PyObject *Py_UNUSED(ignored)) {
    if (s_close(self, false) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_store_closed(s_store *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->s == NULL);
}

static PyObject *s_store_kind(s_store *self, void *Py_UNUSED(c)) {
    if (s_check_open(self) < 0) return NULL;
    return PyUnicode_FromString(pd_store_kind(self->s));
}

static PyObject *s_store_lock(s_store *self, void *Py_UNUSED(c));

static PyObject *s_store_reduce(s_store *self, PyObject *Py_UNUSED(ignored)) {
    PyErr_Format(PyExc_TypeError, "cannot pickle '%.100s' object",
                 Py_TYPE(self)->tp_name);
    return NULL;
}

static int s_store_traverse(s_store *self, visitproc visit, void *arg) {
    Py_VISIT(self->inner[0]);
    Py_VISIT(self->inner[1]);
    return 0;
}

static int s_store_clear(s_store *self) {
    /* A store an open wrapper borrows stays open: the wrapper's own clear
     * (the GC clears every object of a cycle) closes the wrapper first and
     * then drops its reference, and the last reference closes this one. */
    if (self->borrowers > 0) return 0;
    /* The handle borrows the inner stores: close it before they can go. */
    s_close(self, true);
    Py_CLEAR(self->inner[0]);
    Py_CLEAR(self->inner[1]);
    return 0;
}

static void s_store_dealloc(s_store *self) {
    /* A Python subclass's dealloc untracks the object and releases its
     * heap type around this call. */
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakrefs) PyObject_ClearWeakRefs((PyObject *)self);
    s_store_clear(self);
    tp->tp_free((PyObject *)self);
}

static PyObject *s_store_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
                             PyObject *Py_UNUSED(kwds)) {
    s_store *self = (s_store *)type->tp_alloc(type, 0);
    return (PyObject *)self;
}

static int s_store_init(s_store *self, PyObject *Py_UNUSED(args),
                        PyObject *Py_UNUSED(kwds)) {
    (void)self;
    PyErr_SetString(PyExc_TypeError, "cpartd: Store is abstract; use Dict, "
                                     "File or Buffer");
    return -1;
}

/* Takes the handle an open call gave (rc 0), or raises its error. */
static int s_adopt(s_store *self, int rc, pd_store *s, const char *kind) {
    if (rc) {
        s_raise(NULL, rc);
        return -1;
    }
    self->s = s;
    self->kind = kind;
    return 0;
}

/* Reopening an object (calling __init__ twice) closes the old handle. */
static int s_reinit(s_store *self) {
    if (!self->s) return 0;
    return s_close(self, false);
}

static PyMethodDef s_store_methods[] = {
    {"append", (PyCFunction)(void (*)(void))s_store_append,
     METH_FASTCALL | METH_KEYWORDS,
     "append(data, lock=True, fsync=False): append each value of the mapping "
     "to its key"},
    {"_append_framed", (PyCFunction)(void (*)(void))s_store_append_framed,
     METH_FASTCALL | METH_KEYWORDS,
     "_append_framed(data, lock=True): append each value as one frame "
     "(8-byte little-endian length + bytes), without copying"},
    {"get", (PyCFunction)(void (*)(void))s_store_get,
     METH_FASTCALL | METH_KEYWORDS,
     "get(keys, lock=True): bytes for a key, a list for a (nested) list"},
    {"_get", (PyCFunction)(void (*)(void))s_store__get,
     METH_FASTCALL | METH_KEYWORDS, "_get(keys, lock=True): list of bytes"},
    {"_get_views", (PyCFunction)(void (*)(void))s_store__get_views,
     METH_FASTCALL | METH_KEYWORDS,
     "_get_views(keys, lock=True): list of read-only memoryviews (no copy)"},
    {"iget", (PyCFunction)s_store_iget, METH_O,
     "iget(key): get one key without taking the lock"},
    {"delete", (PyCFunction)(void (*)(void))s_store_delete,
     METH_FASTCALL | METH_KEYWORDS, "delete(keys, lock=True)"},
    {"_delete", (PyCFunction)(void (*)(void))s_store__delete,
     METH_FASTCALL | METH_KEYWORDS, "_delete(keys, lock=True)"},
    {"iset", (PyCFunction)(void (*)(void))s_store_iset,
     METH_FASTCALL | METH_KEYWORDS,
     "iset(key, value, lock=True): set a key once per handle"},
    {"_iset", (PyCFunction)(void (*)(void))s_store__iset,
     METH_FASTCALL | METH_KEYWORDS,
     "_iset(key, value, lock=True): replace the key's content (not once)"},
    {"drop", (PyCFunction)s_store_drop, METH_NOARGS, "drop(): delete all"},
    {"keys", (PyCFunction)(void (*)(void))s_store_keys,
     METH_FASTCALL | METH_KEYWORDS, "keys(lock=True): the stored keys"},
    {"close", (PyCFunction)s_store_close, METH_NOARGS,
     "close(): release the handle (idempotent)"},
    {"__reduce__", (PyCFunction)s_store_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_store_getset[] = {
    {"closed", (getter)s_store_closed, NULL, "True once closed", NULL},
    {"lock", (getter)s_store_lock, NULL,
     "the store's lock: `with p.lock:` then calls with lock=False", NULL},
    {"_kind", (getter)s_store_kind, NULL, "libpartd's store kind", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject s_StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Store",
    .tp_basicsize = sizeof(s_store),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Base of the libpartd store types.",
    .tp_new = s_store_new,
    .tp_init = (initproc)s_store_init,
    .tp_dealloc = (destructor)s_store_dealloc,
    .tp_traverse = (traverseproc)s_store_traverse,
    .tp_clear = (inquiry)s_store_clear,
    .tp_weaklistoffset = offsetof(s_store, weakrefs),
    .tp_methods = s_store_methods,
    .tp_getset = s_store_getset,
};

/* ------------------------------------------------------------------ Lock */

typedef struct s_lock {
    PyObject_HEAD s_store *store;
} s_lock;

static PyObject *s_store_lock(s_store *self, void *Py_UNUSED(c)) {
    s_lock *l = PyObject_New(s_lock, &s_LockType);
    if (!l) return NULL;
    l->store = (s_store *)Py_NewRef(self);
    return (PyObject *)l;
}

static void s_lock_dealloc(s_lock *self) {
    Py_XDECREF(self->store);
    PyObject_Free(self);
}

static PyObject *s_lock_acquire(s_lock *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"blocking", "timeout"};
    PyObject *a[2] = {NULL, NULL};
    if (s_parse("acquire", args, nargs, kwnames, names, 2, 2, 0, false, a) < 0)
        return NULL;
    if (a[0]) {
        int t = PyObject_IsTrue(a[0]);
        if (t < 0) return NULL;
        if (!t) {
            PyErr_SetString(PyExc_ValueError, "cpartd: a store lock can only "
                                              "be acquired blocking");
            return NULL;
        }
    }
    if (a[1] && a[1] != Py_None) {
        double t = PyFloat_AsDouble(a[1]);
        if (t == -1.0 && PyErr_Occurred()) return NULL;
        if (t >= 0) {
            PyErr_SetString(PyExc_ValueError, "cpartd: a store lock takes no "
                                              "timeout");
            return NULL;
        }
    }
    s_store *st = self->store;
    int rc;
    S_CALL(st, rc, pd_lock(st->s));
    if (rc) return NULL;
    st->lock_owner = PyThread_get_thread_ident();
    st->lock_depth++;
    Py_RETURN_TRUE;
}

static PyObject *s_lock_release(s_lock *self, PyObject *Py_UNUSED(ignored)) {
    s_store *st = self->store;
    if (s_check_open(st) < 0) return NULL;
    if (st->lock_depth == 0 || st->lock_owner != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "cpartd: release of a store lock "
                                            "this thread does not hold");
        return NULL;
    }
    int rc;
    /* pd_unlock may close a File's lock session (I/O): no GIL. */
    S_CALL(st, rc, pd_unlock(st->s));
    st->lock_depth--; /* the store was open: the call was made */
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_lock_exit(s_lock *self, PyObject *Py_UNUSED(args)) {
    return s_lock_release(self, NULL);
}

static PyObject *s_lock_locked(s_lock *self, PyObject *Py_UNUSED(ignored)) {
    return PyBool_FromLong(self->store->lock_depth > 0);
}

static PyMethodDef s_lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))s_lock_acquire,
     METH_FASTCALL | METH_KEYWORDS,
     "acquire(): take the store's lock (recursive for this thread)"},
    {"release", (PyCFunction)s_lock_release, METH_NOARGS, "release()"},
    {"__enter__", (PyCFunction)(void (*)(void))s_lock_acquire,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"__exit__", (PyCFunction)s_lock_exit, METH_VARARGS, NULL},
    {"locked", (PyCFunction)s_lock_locked, METH_NOARGS,
     "True while a thread of this process holds the lock through cpartd"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject s_LockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Lock",
    .tp_basicsize = sizeof(s_lock),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The lock of a store (flock on <root>/.lock for a File).",
    .tp_dealloc = (destructor)s_lock_dealloc,
    .tp_methods = s_lock_methods,
};

/* ------------------------------------------------------------------ Dict */

static int s_dict_init(s_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Dict", kwlist)) return -1;
    if (s_reinit(self) < 0) return -1;
    pd_store *s = NULL;
    int rc = pd_dict_open(&s);
    return s_adopt(self, rc, s, "Dict");
}

static PyObject *s_dict_nbytes(s_store *self, void *Py_UNUSED(c)) {
    if (s_check_open(self) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(pd_dict_nbytes(self->s));
}

static PyGetSetDef s_dict_getset[] = {
    {"nbytes", (getter)s_dict_nbytes, NULL, "bytes of values held", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject s_DictType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Dict",
    .tp_basicsize = sizeof(s_store),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Dict(): an in-memory store (libpartd pd_dict).",
    .tp_init = (initproc)s_dict_init,
    .tp_getset = s_dict_getset,
};

/* ------------------------------------------------------------------ File */

static int s_file_init(s_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", "fsync", NULL};
    PyObject *path = NULL;
    int fsync = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|p:File", kwlist,
                                     PyUnicode_FSConverter, &path, &fsync))
        return -1;
    if (s_reinit(self) < 0) {
        Py_DECREF(path);
        return -1;
    }
    const char *p = PyBytes_AS_STRING(path);
    if (strlen(p) != (size_t)PyBytes_GET_SIZE(path)) {
        PyErr_SetString(PyExc_ValueError, "cpartd: embedded NUL in path");
        Py_DECREF(path);
        return -1;
    }
    pd_store *s = NULL;
    unsigned flags = PD_FILE_CREATE | (fsync ? PD_FILE_FSYNC : 0);
    int rc;
    S_NOGIL(rc = pd_file_open(&s, p, flags));
    Py_DECREF(path);
    return s_adopt(self, rc, s, "File");
}

/* The store's root as libpartd resolved it (realpath). */
static PyObject *s_file_root(s_store *self, void *Py_UNUSED(c)) {
    if (s_check_open(self) < 0) return NULL;
    return PyUnicode_DecodeFSDefault(pd_file_path(self->s));
}

/* _relname(key): the path of key's file relative to the root. */
static PyObject *s_file_relname(s_store *self, PyObject *key) {
    if (s_check_open(self) < 0) return NULL;
    s_batch b = {0};
    PyObject *ret = NULL;
    char stackbuf[512], *buf = stackbuf;
    if (s_batch_one(&b, key, NULL) < 0) goto out;
    size_t len = pd_file_filename(self->s, &b.keys[0], buf, sizeof stackbuf);
    if (len == 0) {
        PyErr_SetString(PyExc_ValueError, "cpartd: key cannot name a file "
                                          "(too long or too many parts)");
        goto out;
    }
    if (len >= sizeof stackbuf) {
        buf = PyMem_Malloc(len + 1);
        if (!buf) {
            PyErr_NoMemory();
            goto out;
        }
        pd_file_filename(self->s, &b.keys[0], buf, len + 1);
    }
    size_t rl = strlen(pd_file_path(self->s));
    if (len <= rl + 1 || memcmp(buf, pd_file_path(self->s), rl) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cpartd: unexpected file name");
        goto out;
    }
    ret = PyUnicode_DecodeFSDefaultAndSize(buf + rl + 1,
                                           (Py_ssize_t)(len - rl - 1));
out:
    if (buf != stackbuf) PyMem_Free(buf);
    s_batch_free(&b);
    return ret;
}

static PyObject *s_file_set_max_fds(s_store *self, PyObject *arg) {
    if (s_check_open(self) < 0) return NULL;
    size_t n = PyLong_AsSize_t(arg);
    if (n == (size_t)-1 && PyErr_Occurred()) return NULL;
    int rc = pd_file_set_max_fds(self->s, n);
    if (rc) return s_raise(self->s, rc);
    Py_RETURN_NONE;
}

static PyMethodDef s_file_methods[] = {
    {"_relname", (PyCFunction)s_file_relname, METH_O,
     "_relname(key): the file holding key, relative to the root"},
    {"set_max_fds", (PyCFunction)s_file_set_max_fds, METH_O,
     "set_max_fds(n): cap the cached append descriptors (0: no cache)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_file_getset[] = {
    {"_root", (getter)s_file_root, NULL, "the resolved root directory", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject s_FileType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.File",
    .tp_basicsize = sizeof(s_store),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "File(path, fsync=False): a directory store (pd_file).",
    .tp_init = (initproc)s_file_init,
    .tp_methods = s_file_methods,
    .tp_getset = s_file_getset,
};

/* ---------------------------------------------------------------- Buffer */

/* An inner store for a wrapper: an open cpartd store not already in use by
 * this wrapper. */
static int s_check_inner(PyObject *o, const char *what) {
    if (!S_IS_STORE(o)) {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: %s must be a cpartd store, not %.100s", what,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    return s_check_open((s_store *)o);
}

static int s_memory_arg(PyObject *o, uint64_t *out) {
    if (PyFloat_Check(o)) {
        double d = PyFloat_AS_DOUBLE(o);
        if (!(d >= 0)) goto bad;
        *out = d >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)d;
        return 0;
    }
    PyObject *i = PyNumber_Index(o);
    if (!i) return -1;
    int ovf = 0;
    long long v = PyLong_AsLongLongAndOverflow(i, &ovf);
    Py_DECREF(i);
    if (v == -1 && !ovf && PyErr_Occurred()) return -1;
    if (ovf < 0 || (!ovf && v < 0)) goto bad;
    *out = ovf > 0 ? UINT64_MAX : (uint64_t)v;
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError,
                    "cpartd: available_memory must be a number >= 0");
    return -1;
}

static int s_buffer_init(s_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fast", "slow", "available_memory", NULL};
    PyObject *fast, *slow, *mem = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:Buffer", kwlist, &fast,
                                     &slow, &mem))
        return -1;
    uint64_t limit = 1000000000;
    if (mem && s_memory_arg(mem, &limit) < 0) return -1;
    if (s_check_inner(fast, "fast") < 0 || s_check_inner(slow, "slow") < 0)
        return -1;
    if (fast == slow) {
        PyErr_SetString(PyExc_ValueError,
                        "cpartd: Buffer's fast and slow must be different "
                        "stores");
        return -1;
    }
    if (s_reinit(self) < 0) return -1;
    Py_CLEAR(self->inner[0]);
    Py_CLEAR(self->inner[1]);
    s_store *f = (s_store *)fast, *sl = (s_store *)slow;
    pd_store *s = NULL, *fs = f->s, *ss = sl->s;
    int rc = pd_buffer_open(&s, &fs, &ss, limit, PD_BORROW);
    if (s_adopt(self, rc, s, "Buffer") < 0) return -1;
    self->inner[0] = Py_NewRef(fast);
    self->inner[1] = Py_NewRef(slow);
    f->borrowers++;
    sl->borrowers++;
    return 0;
}

static PyObject *s_buffer_usage(s_store *self, void *Py_UNUSED(c)) {
    if (s_check_open(self) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(pd_buffer_memory_usage(self->s));
}

static PyObject *s_buffer_limit(s_store *self, void *Py_UNUSED(c)) {
    if (s_check_open(self) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(pd_buffer_memory_limit(self->s));
}

static PyObject *s_buffer_inner(s_store *self, void *c) {
    PyObject *o = self->inner[c ? 1 : 0];
    if (!o) {
        PyErr_SetString(PyExc_AttributeError, "cpartd: Buffer not open");
        return NULL;
    }
    return Py_NewRef(o);
}

/* flush(keys=None, block=None): move keys (all when None) to slow. */
static PyObject *s_buffer_flush(s_store *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames) {
    static const s_sig sig = {"flush", {"keys", "block", "lock"}, 0, 2, -1,
                              false};
    PyObject *a[3];
    unsigned flags;
    if (s_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    s_batch b;
    s_batch_init(&b);
    bool all = !a[0] || a[0] == Py_None;
    int rc = all ? 0 : s_batch_from_keys(&b, a[0]);
    if (rc == 0)
        S_CALL(self, rc, pd_buffer_flush(self->s, (size_t)b.n, b.keys, flags));
    s_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef s_buffer_methods[] = {
    {"flush", (PyCFunction)(void (*)(void))s_buffer_flush,
     METH_FASTCALL | METH_KEYWORDS,
     "flush(keys=None): move keys (default: all) from fast to slow"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_buffer_getset[] = {
    {"memory_usage", (getter)s_buffer_usage, NULL, "bytes held in fast", NULL},
    {"available_memory", (getter)s_buffer_limit, NULL,
     "the limit past which keys spill to slow", NULL},
    {"fast", (getter)s_buffer_inner, NULL, "the fast store", NULL},
    {"slow", (getter)s_buffer_inner, NULL, "the slow store", (void *)1},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject s_BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Buffer",
    .tp_basicsize = sizeof(s_store),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Buffer(fast, slow, available_memory=1e9): spills the largest "
              "keys from fast to slow past the memory limit (pd_buffer).",
    .tp_init = (initproc)s_buffer_init,
    .tp_methods = s_buffer_methods,
    .tp_getset = s_buffer_getset,
};

/* ------------------------------------------------------------ Compressed */

#if CPARTD_HAVE_ENCODE
static int s_compressed_init(s_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"codec", "partd", "level", NULL};
    const char *codec;
    PyObject *inner;
    int level = PD_LEVEL_DEFAULT;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sO|i:Compressed", kwlist,
                                     &codec, &inner, &level))
        return -1;
    if (s_check_inner(inner, "partd") < 0) return -1;
    if (s_reinit(self) < 0) return -1;
    Py_CLEAR(self->inner[0]);
    s_store *in = (s_store *)inner;
    pd_store *s = NULL, *is = in->s;
    int rc = pd_compress_open(&s, &is, codec, level, PD_BORROW);
    if (s_adopt(self, rc, s, "Compressed") < 0) return -1;
    self->inner[0] = Py_NewRef(inner);
    in->borrowers++;
    return 0;
}

static PyObject *s_compressed_torn(s_store *self, void *Py_UNUSED(c)) {
    if (s_check_open(self) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(pd_encode_torn(self->s));
}

static PyObject *s_compressed_notice(s_store *self, void *Py_UNUSED(c)) {
    if (s_check_open(self) < 0) return NULL;
    return PyUnicode_FromString(pd_encode_notice(self->s));
}

static PyGetSetDef s_compressed_getset[] = {
    {"partd", (getter)s_buffer_inner, NULL, "the inner store", NULL},
    {"torn", (getter)s_compressed_torn, NULL,
     "torn frames left out by gets on this handle", NULL},
    {"notice", (getter)s_compressed_notice, NULL,
     "the last torn frame left out, or ''", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject s_CompressedType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Compressed",
    .tp_basicsize = sizeof(s_store),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Compressed(codec, partd, level=default): libpartd's Encode "
              "layer with a built-in codec over a cpartd store.",
    .tp_init = (initproc)s_compressed_init,
    .tp_getset = s_compressed_getset,
};
#endif

/* ---------------------------------------------------------------- Client */

/* Seconds (None: the library's default) to a client's timeout_ms. */
static int s_timeout_arg(PyObject *o, int *ms) {
    *ms = 0;
    if (!o || o == Py_None) return 0;
    double t = PyFloat_AsDouble(o);
    if (t == -1.0 && PyErr_Occurred()) return -1;
    if (!(t > 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "cpartd: timeout must be a number of seconds > 0, or "
                        "None for the default");
        return -1;
    }
    double m = t * 1000.0;
    /* At least 1 ms; past INT_MAX ms (~24 days, or inf) means "that long". */
    *ms = m >= (double)INT_MAX ? INT_MAX : m < 1.0 ? 1 : (int)(m + 0.999);
    return 0;
}

/* An address argument: str (UTF-8) or bytes, as new bytes without NUL. */
static PyObject *s_address_arg(PyObject *o, const char *what) {
    PyObject *b = NULL;
    if (PyUnicode_Check(o))
        b = PyUnicode_AsUTF8String(o);
    else if (PyBytes_Check(o))
        b = Py_NewRef(o);
    else
        PyErr_Format(PyExc_TypeError,
                     "cpartd: %s must be str or bytes, not "
                     "%.100s",
                     what, Py_TYPE(o)->tp_name);
    if (b && strlen(PyBytes_AS_STRING(b)) != (size_t)PyBytes_GET_SIZE(b)) {
        PyErr_Format(PyExc_ValueError, "cpartd: embedded NUL in %s", what);
        Py_CLEAR(b);
    }
    return b;
}

/* An optional z85 CURVE key argument (str or bytes) into buf[41]. */
static int s_curve_arg(PyObject *o, char buf[41], const char **out) {
    *out = NULL;
    if (!o || o == Py_None) return 0;
    PyObject *b = s_address_arg(o, "a CURVE key");
    if (!b) return -1;
    if (PyBytes_GET_SIZE(b) != PD_CURVE_KEY_LEN) {
        Py_DECREF(b);
        PyErr_SetString(PyExc_ValueError,
                        "cpartd: a CURVE key is 40 z85 characters");
        return -1;
    }
    memcpy(buf, PyBytes_AS_STRING(b), 41);
    Py_DECREF(b);
    *out = buf;
    return 0;
}

static int s_client_init(s_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"address",          "timeout",      "sync",
                             "curve_server_key", "curve_public", "curve_secret",
                             "max_message",      "window",       NULL};
    PyObject *addr, *timeout = NULL, *skey = NULL, *pub = NULL, *sec = NULL;
    int sync = 0, window = 0;
    unsigned long long maxmsg = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OpOOOKi:Client", kwlist,
                                     &addr, &timeout, &sync, &skey, &pub, &sec,
                                     &maxmsg, &window))
        return -1;
    if (window < 0 || window > (int)PD_CLIENT_WINDOW_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "cpartd: Client window must be 1 to %u (0: the "
                     "default, %u), not %d",
                     PD_CLIENT_WINDOW_MAX, PD_CLIENT_WINDOW_DEFAULT, window);
        return -1;
    }
    pd_client_opts o = {0};
    char kbuf[3][41];
    if (s_timeout_arg(timeout, &o.timeout_ms) < 0 ||
        s_curve_arg(skey, kbuf[0], &o.curve_server_key) < 0 ||
        s_curve_arg(pub, kbuf[1], &o.curve_public) < 0 ||
        s_curve_arg(sec, kbuf[2], &o.curve_secret) < 0)
        return -1;
    o.max_message = maxmsg;
    o.window = (unsigned)window;
    o.flags = sync ? PD_CLIENT_SYNC : 0;
    PyObject *a = s_address_arg(addr, "address");
    if (!a) return -1;
    if (s_reinit(self) < 0) {
        Py_DECREF(a);
        return -1;
    }
    pd_store *s = NULL;
    int rc;
    const char *ap = PyBytes_AS_STRING(a);
    S_NOGIL(rc = pd_client_open(&s, ap, &o));
    Py_DECREF(a);
    return s_adopt(self, rc, s, "Client");
}

/* Runs a client-only call (sync, close_server) with the GIL released. */
static PyObject *s_client_call(s_store *self, int (*fn)(pd_store *)) {
    int rc;
    S_CALL(self, rc, fn(self->s));
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_client_sync(s_store *self, PyObject *Py_UNUSED(ignored)) {
    return s_client_call(self, pd_client_sync);
}

static PyObject *s_client_close_server(s_store *self,
                                       PyObject *Py_UNUSED(ignored)) {
    return s_client_call(self, pd_client_close_server);
}

static PyObject *s_client_ours(s_store *self, void *Py_UNUSED(c)) {
    if (s_check_open(self) < 0) return NULL;
    int r = pd_client_server_is_ours(self->s);
    if (r < 0) Py_RETURN_NONE;
    return PyBool_FromLong(r);
}

static PyObject *s_client_addr(s_store *self, void *Py_UNUSED(c)) {
    if (s_check_open(self) < 0) return NULL;
    return PyUnicode_FromString(pd_client_address(self->s));
}

static PyMethodDef s_client_methods[] = {
    {"sync", (PyCFunction)s_client_sync, METH_NOARGS,
     "sync(): wait for the reply of the request in flight; raises its "
     "error"},
    {"close_server", (PyCFunction)s_client_close_server, METH_NOARGS,
     "close_server(): ask the server to stop, and wait for its answer"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_client_getset[] = {
    {"server_is_libpartd", (getter)s_client_ours, NULL,
     "True: the server is libpartd's; False: another (Python partd); None: "
     "no reply yet",
     NULL},
    {"_address", (getter)s_client_addr, NULL, "the address connected to", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject s_ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Client",
    .tp_basicsize = sizeof(s_store),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Client(address, timeout=None, sync=False, ...): a store "
              "whose calls run on a partd Server (pd_client_open).",
    .tp_init = (initproc)s_client_init,
    .tp_methods = s_client_methods,
    .tp_getset = s_client_getset,
};

/* ---------------------------------------------------------------- Server */

/* False once the interpreter is shutting down (cpartd.zmq's atexit hook):
 * the serving thread then logs to stderr instead of calling Python. */
static int s_py_alive = 1;

typedef struct s_server {
    PyObject_HEAD pd_server *srv;
    PyObject *store; /* the served cpartd store (borrowed by srv) */
    PyObject *log;   /* callable(level, line), or NULL: stderr */
    long pid;        /* the process that opened srv */
    PyObject *weakrefs;
} s_server;

static PyTypeObject s_ServerType;

/* pd_log_fn: from the serving thread (no GIL), or from the thread in
 * pd_server_open (GIL released around it). */
static void s_server_log(void *arg, int level, const char *line) {
    s_server *self = arg;
    if (!s_py_alive || _Py_IsFinalizing() || !self->log) {
        if (level <= PD_LOG_WARN) fprintf(stderr, "partd server: %s\n", line);
        return;
    }
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *text =
        PyUnicode_DecodeUTF8(line, (Py_ssize_t)strlen(line), "replace");
    PyObject *r =
        text ? PyObject_CallFunction(self->log, "iO", level, text) : NULL;
    if (r)
        Py_DECREF(r);
    else
        PyErr_WriteUnraisable(self->log);
    Py_XDECREF(text);
    PyGILState_Release(g);
}

static void s_server_release(s_server *self, bool raise) {
    /* Both taken with the GIL: a concurrent close() finds nothing to do,
     * and the store outlives the serving thread. */
    pd_server *srv = self->srv;
    PyObject *store = self->store;
    self->srv = NULL;
    self->store = NULL;
    int rc = 0;
    if (srv && self->pid == (long)getpid()) {
        S_NOGIL(rc = pd_server_close(&srv));
    }
    /* In a forked child the parent's server (its thread, its sockets) is
     * not ours to close: it is left alone. */
    if (store) {
        ((s_store *)store)->borrowers--;
        Py_DECREF(store);
    }
    if (rc && raise) s_raise(NULL, rc);
}

static int s_server_init(s_server *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"store",        "bind",         "max_message",
                             "idle_timeout", "curve_secret", "no_close",
                             "log",          "log_level",    NULL};
    PyObject *store, *bind = Py_None, *sec = NULL, *log = Py_None;
    unsigned long long maxmsg = 0;
    double idle = 0;
    int no_close = 0, log_level = PD_LOG_INFO;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OKdOpOi:Server", kwlist,
                                     &store, &bind, &maxmsg, &idle, &sec,
                                     &no_close, &log, &log_level))
        return -1;
    if (s_check_inner(store, "the served store") < 0) return -1;
    if (log != Py_None && !PyCallable_Check(log)) {
        PyErr_SetString(PyExc_TypeError, "cpartd: log must be callable");
        return -1;
    }
    if (!(idle >= 0)) {
        PyErr_SetString(PyExc_ValueError, "cpartd: idle_timeout must be >= 0");
        return -1;
    }
    if (self->srv) {
        PyErr_SetString(PyExc_ValueError, "cpartd: Server already open");
        return -1;
    }
    pd_server_opts o = {0};
    char kbuf[41];
    if (s_curve_arg(sec, kbuf, &o.curve_secret) < 0) return -1;
    PyObject *binds = NULL;
    const char **addrs = NULL;
    int ret = -1;
    if (bind != Py_None) {
        binds = PySequence_Fast(bind, "cpartd: bind must be a list of "
                                      "addresses");
        if (!binds) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(binds);
        addrs = PyMem_Calloc(n ? (size_t)n : 1, sizeof *addrs);
        if (!addrs) {
            PyErr_NoMemory();
            goto out;
        }
        /* Replace the items by their bytes (kept alive in a new list). */
        PyObject *conv = PyList_New(n);
        if (!conv) goto out;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *b = s_address_arg(PySequence_Fast_GET_ITEM(binds, i),
                                        "a bind address");
            if (!b) {
                Py_DECREF(conv);
                goto out;
            }
            PyList_SET_ITEM(conv, i, b);
            addrs[i] = PyBytes_AS_STRING(b);
        }
        Py_SETREF(binds, conv);
        o.bind = addrs;
        o.nbind = (size_t)n;
    }
    o.max_message = maxmsg;
    o.idle_timeout_ms = (uint64_t)(idle * 1000.0);
    o.flags = PD_BORROW | (no_close ? PD_SERVER_NO_CLOSE : 0);
    o.log = s_server_log;
    o.log_arg = self;
    o.log_level = log_level;
    Py_XSETREF(self->log, log == Py_None ? NULL : Py_NewRef(log));
    s_store *st = (s_store *)store;
    pd_store *ps = st->s;
    pd_server *srv = NULL;
    int rc;
    S_NOGIL(rc = pd_server_open(&srv, &ps, &o));
    if (rc) {
        s_raise(NULL, rc);
        goto out;
    }
    self->srv = srv;
    self->pid = (long)getpid();
    self->store = Py_NewRef(store);
    st->borrowers++;
    ret = 0;
out:
    PyMem_Free(addrs);
    Py_XDECREF(binds);
    return ret;
}

static int s_server_check(s_server *self) {
    if (self->srv) return 0;
    PyErr_SetString(PyExc_ValueError, "cpartd: Server is closed");
    return -1;
}

static PyObject *s_server_start(s_server *self, PyObject *Py_UNUSED(a)) {
    if (s_server_check(self) < 0) return NULL;
    int rc = pd_server_start(self->srv);
    if (rc) return s_raise(NULL, rc);
    Py_RETURN_NONE;
}

static PyObject *s_server_stop(s_server *self, PyObject *Py_UNUSED(a)) {
    if (self->srv) pd_server_stop(self->srv);
    Py_RETURN_NONE;
}

/* wait(timeout=None): wait until the server stops serving (a `close`
 * command, stop(), the idle timeout) or timeout seconds pass, with the GIL
 * released; signals (KeyboardInterrupt) are checked every 10 ms.  Returns
 * True once it is not running. */
static PyObject *s_server_wait(s_server *self, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"timeout"};
    PyObject *a[1] = {NULL};
    if (s_parse("wait", args, nargs, kwnames, names, 1, 1, 0, false, a) < 0)
        return NULL;
    double limit = -1;
    if (a[0] && a[0] != Py_None) {
        limit = PyFloat_AsDouble(a[0]);
        if (limit == -1.0 && PyErr_Occurred()) return NULL;
        if (limit < 0) limit = 0;
    }
    double waited = 0; /* a closed server has stopped: True at once */
    /* srv is only looked at with the GIL held: close() from another thread
     * sets self->srv to NULL (with the GIL) before it frees the server. */
    while (self->srv && pd_server_running(self->srv)) {
        if (limit >= 0 && waited >= limit) Py_RETURN_FALSE;
        Py_BEGIN_ALLOW_THREADS struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS waited += 0.01;
        if (PyErr_CheckSignals() < 0) return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *s_server_close(s_server *self, PyObject *Py_UNUSED(a)) {
    s_server_release(self, true);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_server_running(s_server *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->srv && pd_server_running(self->srv));
}

static PyObject *s_server_closed(s_server *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->srv == NULL);
}

static PyObject *s_server_addresses(s_server *self, void *Py_UNUSED(c)) {
    if (s_server_check(self) < 0) return NULL;
    PyObject *list = PyList_New(0);
    const char *a;
    for (size_t i = 0; list && (a = pd_server_address(self->srv, i)); i++) {
        PyObject *s = PyUnicode_FromString(a);
        if (!s || PyList_Append(list, s) < 0) Py_CLEAR(list);
        Py_XDECREF(s);
    }
    return list;
}

static PyObject *s_server_store(s_server *self, void *Py_UNUSED(c)) {
    return Py_NewRef(self->store ? self->store : Py_None);
}

static int s_server_traverse(s_server *self, visitproc visit, void *arg) {
    Py_VISIT(self->store);
    Py_VISIT(self->log);
    return 0;
}

static int s_server_clear(s_server *self) {
    s_server_release(self, false);
    Py_CLEAR(self->log);
    return 0;
}

static void s_server_dealloc(s_server *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakrefs) PyObject_ClearWeakRefs((PyObject *)self);
    s_server_clear(self);
    tp->tp_free((PyObject *)self);
}

static PyMethodDef s_server_methods[] = {
    {"start", (PyCFunction)s_server_start, METH_NOARGS,
     "start(): serve in a new thread"},
    {"stop", (PyCFunction)s_server_stop, METH_NOARGS,
     "stop(): ask the server to stop after the request it is handling"},
    {"wait", (PyCFunction)(void (*)(void))s_server_wait,
     METH_FASTCALL | METH_KEYWORDS,
     "wait(timeout=None): wait until it stops serving; True once stopped"},
    {"close", (PyCFunction)s_server_close, METH_NOARGS,
     "close(): stop, flush the store into its inner stores, release its "
     "lock, close the sockets (idempotent)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_server_getset[] = {
    {"running", (getter)s_server_running, NULL, "True while serving", NULL},
    {"closed", (getter)s_server_closed, NULL, "True once closed", NULL},
    {"addresses", (getter)s_server_addresses, NULL,
     "the addresses clients connect to (resolved: real ports, ipc paths)",
     NULL},
    {"store", (getter)s_server_store, NULL, "the served store", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject s_ServerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Server",
    .tp_basicsize = sizeof(s_server),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Server(store, bind=None, ...): serves a cpartd store over "
              "ZeroMQ (pd_server_open).  bind: a list of addresses (None: a "
              "private ipc socket).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)s_server_init,
    .tp_dealloc = (destructor)s_server_dealloc,
    .tp_traverse = (traverseproc)s_server_traverse,
    .tp_clear = (inquiry)s_server_clear,
    .tp_weaklistoffset = offsetof(s_server, weakrefs),
    .tp_methods = s_server_methods,
    .tp_getset = s_server_getset,
};

/* _shutdown(): the interpreter is going down; servers log to stderr. */
static PyObject *s_shutdown(PyObject *Py_UNUSED(mod),
                            PyObject *Py_UNUSED(ignored)) {
    s_py_alive = 0;
    Py_RETURN_NONE;
}

static PyObject *s_curve_public_py(PyObject *Py_UNUSED(mod), PyObject *arg) {
    char sec[41], pub[41];
    const char *sp;
    if (s_curve_arg(arg, sec, &sp) < 0) return NULL;
    if (!sp) {
        PyErr_SetString(PyExc_TypeError, "cpartd: curve_public needs a key");
        return NULL;
    }
    if (pd_curve_public(pub, sp)) return s_raise(NULL, pd_errcode(NULL));
    return PyUnicode_FromString(pub);
}

static PyObject *s_curve_keypair_py(PyObject *Py_UNUSED(mod),
                                    PyObject *Py_UNUSED(ignored)) {
    char pub[41], sec[41];
    if (pd_curve_keypair(pub, sec)) return s_raise(NULL, pd_errcode(NULL));
    return Py_BuildValue("(ss)", pub, sec);
}

/* ------------------------------------------------- PandasBlocks and Numpy */

/* The byte-level work of cpartd.pandas and cpartd.numpy, in the formats of
 * partd's (so either implementation reads what the other wrote):
 *   - a numeric block is its raw bytes compressed by blosc (python-blosc's
 *     defaults: blosclz, level 9, byte shuffle, typesize the item size, one
 *     thread), or stored raw when python-blosc is missing;
 *   - an object block is the list of its items pickled, framed, then
 *     compressed as text (snappy, else blosc with typesize 1, else raw).
 * The pickle is written here for lists of str, bytes, int, float, bool and
 * None (what string columns hold), as pickle.loads reads it; any other item
 * makes the caller fall back to Python's pickle. */

/* How one part is coded: the codec ids shared with cpartd/pandas.py. */
enum {
    S_CODEC_RAW = 0,
    S_CODEC_BLOSC = 1,
    S_CODEC_SNAPPY = 2,
};

/* A growable malloc'ed byte buffer (used without the GIL). */
typedef struct s_buf {
    char *p;
    size_t len, cap;
} s_buf;

static int s_buf_room(s_buf *b, size_t extra) {
    size_t need;
    if (__builtin_add_overflow(b->len, extra, &need)) return -1;
    if (need <= b->cap) return 0;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) return -1;
        ncap *= 2;
    }
    char *np = realloc(b->p, ncap);
    if (!np) return -1;
    b->p = np;
    b->cap = ncap;
    return 0;
}

static void s_le(unsigned char *p, uint64_t v, int n) {
    for (int k = 0; k < n; k++) p[k] = (unsigned char)(v >> (8 * k));
}

/* Appends opcode `op` then the n bytes at raw. */
static int s_pk_op(s_buf *b, unsigned char op, const void *raw, size_t n) {
    if (s_buf_room(b, 1 + n) < 0) return -1;
    b->p[b->len] = (char)op;
    if (n) memcpy(b->p + b->len + 1, raw, n);
    b->len += 1 + n;
    return 0;
}

/* Appends op + an nlen-byte little-endian length + the len bytes of data. */
static int s_pk_sized(s_buf *b, unsigned char op, int nlen, const void *data,
                      size_t len) {
    if (s_buf_room(b, 1 + (size_t)nlen + len) < 0) return -1;
    unsigned char *p = (unsigned char *)b->p + b->len;
    p[0] = op;
    s_le(p + 1, (uint64_t)len, nlen);
    if (len) memcpy(p + 1 + nlen, data, len);
    b->len += 1 + (size_t)nlen + len;
    return 0;
}

static int s_pk_str_like(s_buf *b, const char *data, size_t len,
                         unsigned char op1, unsigned char op4,
                         unsigned char op8) {
    if (len < 256) return s_pk_sized(b, op1, 1, data, len);
    if (len <= UINT32_MAX) return s_pk_sized(b, op4, 4, data, len);
    return s_pk_sized(b, op8, 8, data, len);
}

/* Pickles `list` (protocol 4, no memo) into b, after an 8-byte frame
 * header with its length (partd frames the pickle before compressing it).
 * 0; 1 when an item is of a type not handled here (no exception set); -1
 * with an exception. */
static int s_text_pickle(PyObject *list, s_buf *b) {
    Py_ssize_t n = PyList_GET_SIZE(list);
    size_t start = b->len;
    if (s_buf_room(b, 8 + 4) < 0) goto nomem;
    b->len += 8;
    memcpy(b->p + b->len, "\x80\x04]", 3); /* PROTO 4, EMPTY_LIST */
    b->len += 3;
    if (n > 0) b->p[b->len++] = '('; /* MARK */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyList_GET_ITEM(list, i);
        unsigned char raw[9];
        int rc;
        if (PyUnicode_CheckExact(o)) {
            Py_ssize_t len;
            const char *s = PyUnicode_AsUTF8AndSize(o, &len);
            if (!s) { /* lone surrogates: left to pickle */
                PyErr_Clear();
                return 1;
            }
            rc = s_pk_str_like(b, s, (size_t)len, 0x8c, 'X', 0x8d);
        } else if (o == Py_None) {
            rc = s_pk_op(b, 'N', NULL, 0);
        } else if (PyFloat_CheckExact(o)) {
            if (PyFloat_Pack8(PyFloat_AS_DOUBLE(o), (char *)raw, 0) < 0)
                return -1;
            rc = s_pk_op(b, 'G', raw, 8); /* BINFLOAT, big-endian */
        } else if (o == Py_True || o == Py_False) {
            rc = s_pk_op(b, o == Py_True ? 0x88 : 0x89, NULL, 0);
        } else if (PyLong_CheckExact(o)) {
            int ovf = 0;
            long long v = PyLong_AsLongLongAndOverflow(o, &ovf);
            if (ovf) return 1;
            if (v == -1 && PyErr_Occurred()) return -1;
            if (v >= INT32_MIN && v <= INT32_MAX) {
                s_le(raw, (uint64_t)(int64_t)v, 4);
                rc = s_pk_op(b, 'J', raw, 4); /* BININT */
            } else {
                raw[0] = 8; /* LONG1: 8 bytes, two's complement */
                s_le(raw + 1, (uint64_t)v, 8);
                rc = s_pk_op(b, 0x8a, raw, 9);
            }
        } else if (PyBytes_CheckExact(o)) {
            rc = s_pk_str_like(b, PyBytes_AS_STRING(o),
                               (size_t)PyBytes_GET_SIZE(o), 'C', 'B', 0x8e);
        } else {
            return 1;
        }
        if (rc < 0) goto nomem;
    }
    if (s_buf_room(b, 2) < 0) goto nomem;
    if (n > 0) b->p[b->len++] = 'e'; /* APPENDS */
    b->p[b->len++] = '.';            /* STOP */
    s_le((unsigned char *)b->p + start, b->len - start - 8, 8);
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* text_pickle(list): the pickle (protocol 4) of a list of str, bytes, int,
 * float, bool and None, as bytes; None for a list holding anything else. */
static PyObject *s_text_pickle_py(PyObject *Py_UNUSED(mod), PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "text_pickle takes a list");
        return NULL;
    }
    s_buf b = {0};
    int rc = s_text_pickle(arg, &b);
    PyObject *out = NULL;
    if (rc == 0)
        out = PyBytes_FromStringAndSize(b.p + 8, (Py_ssize_t)(b.len - 8));
    else if (rc == 1)
        out = Py_NewRef(Py_None);
    free(b.p);
    return out;
}

/* Compresses src[0..n) with codec into dst (room: s_codec_bound); returns
 * the compressed size, or 0 on failure (never for a correct bound). */
static size_t s_codec_bound(int codec, size_t n) {
    if (codec == S_CODEC_BLOSC) return n + BLOSC_MAX_OVERHEAD;
    if (codec == S_CODEC_SNAPPY) return snappy_max_compressed_length(n);
    return n;
}

static size_t s_codec_compress(int codec, size_t typesize, const void *src,
                               size_t n, void *dst, size_t room) {
    if (codec == S_CODEC_BLOSC) {
        int r = blosc_compress_ctx(9, BLOSC_SHUFFLE, typesize, n, src, dst,
                                   room, "blosclz", 0, 1);
        return r > 0 ? (size_t)r : 0;
    }
    if (codec == S_CODEC_SNAPPY) {
        size_t out = room;
        return snappy_compress(src, n, dst, &out) == SNAPPY_OK ? out : 0;
    }
    if (n) memcpy(dst, src, n);
    return n;
}

typedef struct s_part {
    int codec;
    size_t typesize;
    Py_buffer view; /* view.obj NULL when text is used */
    s_buf text;     /* a pickled, framed object list */
    const void *src;
    size_t n;
} s_part;

/* blocks_frames(header, parts): partd's serialize(df) (cpartd.pandas) in
 * one buffer: frame(header), then for each part (codec, data, typesize) the
 * frame of data compressed by codec (0 raw, 1 blosc, 2 snappy).  data is
 * any contiguous buffer, or a list (an object block: pickled and framed
 * first, as partd's numpy.serialize).  Compression runs without the GIL.
 * Returns bytes, or None when a list holds an item text_pickle does not
 * handle. */
static PyObject *s_blocks_frames(PyObject *Py_UNUSED(mod), PyObject *args) {
    PyObject *header, *parts;
    if (!PyArg_ParseTuple(args, "OO!:blocks_frames", &header, &PyList_Type,
                          &parts))
        return NULL;
    Py_buffer hv;
    if (PyObject_GetBuffer(header, &hv, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t np = PyList_GET_SIZE(parts);
    s_part *ps = PyMem_Calloc(np ? (size_t)np : 1, sizeof *ps);
    PyObject *out = NULL;
    Py_ssize_t done = 0;
    if (!ps) {
        PyErr_NoMemory();
        goto fail;
    }
    size_t bound = 8 + (size_t)hv.len;
    for (; done < np; done++) {
        s_part *p = &ps[done];
        PyObject *it = PyList_GET_ITEM(parts, done), *data;
        int codec;
        Py_ssize_t ts;
        if (!PyTuple_Check(it)) {
            PyErr_SetString(PyExc_TypeError,
                            "blocks_frames: a part is a tuple (codec, data, "
                            "typesize)");
            goto fail;
        }
        if (!PyArg_ParseTuple(it, "iOn:blocks_frames part", &codec, &data, &ts))
            goto fail;
        if (codec < S_CODEC_RAW || codec > S_CODEC_SNAPPY || ts < 1 ||
            ts > 255) {
            PyErr_SetString(PyExc_ValueError,
                            "blocks_frames: a part is (codec 0-2, data, "
                            "typesize 1-255)");
            goto fail;
        }
        p->codec = codec;
        p->typesize = (size_t)ts;
        if (PyList_Check(data)) {
            int rc = s_text_pickle(data, &p->text);
            if (rc < 0) goto fail;
            if (rc == 1) {
                out = Py_NewRef(Py_None);
                goto fail;
            }
            p->src = p->text.p;
            p->n = p->text.len;
        } else {
            if (PyObject_GetBuffer(data, &p->view, PyBUF_C_CONTIGUOUS) < 0)
                goto fail;
            p->src = p->view.buf;
            p->n = (size_t)p->view.len;
        }
        if (codec == S_CODEC_BLOSC && p->n > BLOSC_MAX_BUFFERSIZE) {
            PyErr_Format(PyExc_ValueError,
                         "cpartd: a block of %zu bytes is more than blosc "
                         "takes (%d)",
                         p->n, BLOSC_MAX_BUFFERSIZE);
            goto fail;
        }
        size_t b = s_codec_bound(codec, p->n);
        if (__builtin_add_overflow(bound, 8 + b, &bound) ||
            bound > PY_SSIZE_T_MAX) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)bound);
    if (!out) goto fail;
    size_t len = 0;
    bool ok = true;
    char *dst = PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS s_le((unsigned char *)dst, (uint64_t)hv.len, 8);
    memcpy(dst + 8, hv.buf, (size_t)hv.len);
    len = 8 + (size_t)hv.len;
    for (Py_ssize_t i = 0; i < np && ok; i++) {
        s_part *p = &ps[i];
        size_t c = s_codec_compress(p->codec, p->typesize, p->src, p->n,
                                    dst + len + 8, bound - len - 8);
        if (c == 0 && p->n > 0) ok = false;
        s_le((unsigned char *)dst + len, (uint64_t)c, 8);
        len += 8 + c;
    }
    Py_END_ALLOW_THREADS if (!ok) {
        Py_CLEAR(out);
        PyErr_SetString(PyExc_RuntimeError,
                        "cpartd: blocks_frames: compression failed");
        goto fail;
    }
    if (_PyBytes_Resize(&out, (Py_ssize_t)len) < 0) out = NULL;
fail:
    /* Every part: ps is zeroed, and a failing part may hold a text. */
    for (Py_ssize_t i = 0; i < np && ps; i++) {
        if (ps[i].view.obj) PyBuffer_Release(&ps[i].view);
        free(ps[i].text.p);
    }
    PyMem_Free(ps);
    PyBuffer_Release(&hv);
    return out;
}

/* Limit on what one decompressed piece may claim (blosc 1.x's own). */
#define S_DECOMPRESS_MAX ((size_t)INT32_MAX)

/* The decompressed size src claims under codec: 0 and a message in why
 * when it is not a valid piece. */
static size_t s_codec_size(int codec, const void *src, size_t n,
                           const char **why) {
    if (codec == S_CODEC_BLOSC) {
        size_t nbytes = 0;
        if (n < BLOSC_MIN_HEADER_LENGTH ||
            blosc_cbuffer_validate(src, n, &nbytes) != 0) {
            *why = "not a blosc chunk";
            return 0;
        }
        return nbytes;
    }
    if (codec == S_CODEC_SNAPPY) {
        size_t out = 0;
        if (snappy_uncompressed_length(src, n, &out) != SNAPPY_OK) {
            *why = "not a snappy block";
            return 0;
        }
        /* snappy cannot expand a byte past ~21 (a copy op per 3 bytes). */
        if (out / 32 > n + 1) {
            *why = "a snappy length the data cannot hold";
            return 0;
        }
        return out;
    }
    return n;
}

static bool s_codec_decompress(int codec, const void *src, size_t n, void *dst,
                               size_t size) {
    if (codec == S_CODEC_BLOSC)
        return blosc_decompress_ctx(src, dst, size, 1) == (int)size;
    if (codec == S_CODEC_SNAPPY) {
        size_t out = size;
        return snappy_uncompress(src, n, dst, &out) == SNAPPY_OK && out == size;
    }
    if (n) memcpy(dst, src, n);
    return n == size;
}

/* decompress(codec, data, out=None, offset=0): data decompressed (0 raw,
 * 1 blosc, 2 snappy).  Without out: new bytes.  With out (a writable
 * contiguous buffer, e.g. a numpy array): written at byte `offset`, which
 * must leave room for all of it; returns the number of bytes written.
 * Runs without the GIL.  A piece that does not decode raises CorruptError. */
static PyObject *s_decompress_py(PyObject *Py_UNUSED(mod), PyObject *args,
                                 PyObject *kwds) {
    static char *kwlist[] = {"codec", "data", "out", "offset", NULL};
    int codec;
    Py_buffer src, dv = {0};
    PyObject *outobj = Py_None, *ret = NULL;
    Py_ssize_t offset = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*|On:decompress", kwlist,
                                     &codec, &src, &outobj, &offset))
        return NULL;
    if (codec < S_CODEC_RAW || codec > S_CODEC_SNAPPY) {
        PyErr_SetString(PyExc_ValueError, "decompress: codec is 0-2");
        goto out;
    }
    const char *why = NULL;
    size_t size =
        src.len ? s_codec_size(codec, src.buf, (size_t)src.len, &why) : 0;
    if (why) {
        PyErr_Format(s_CorruptError, "cpartd: decompress: %s (%zd bytes)", why,
                     src.len);
        goto out;
    }
    if (size > S_DECOMPRESS_MAX) {
        PyErr_Format(s_CorruptError,
                     "cpartd: decompress: a piece claims %zu bytes", size);
        goto out;
    }
    char *dst;
    if (outobj == Py_None) {
        ret = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
        if (!ret) goto out;
        dst = PyBytes_AS_STRING(ret);
    } else {
        if (PyObject_GetBuffer(outobj, &dv,
                               PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
            goto out;
        if (offset < 0 || (size_t)offset > (size_t)dv.len ||
            size > (size_t)dv.len - (size_t)offset) {
            PyErr_Format(s_CorruptError,
                         "cpartd: decompress: %zu bytes do not fit at offset "
                         "%zd of %zd",
                         size, offset, dv.len);
            goto out;
        }
        dst = (char *)dv.buf + offset;
    }
    bool ok = true;
    if (size) {
        Py_BEGIN_ALLOW_THREADS ok =
            s_codec_decompress(codec, src.buf, (size_t)src.len, dst, size);
        Py_END_ALLOW_THREADS
    }
    if (!ok) {
        Py_CLEAR(ret);
        PyErr_Format(s_CorruptError,
                     "cpartd: decompress: a %s piece of %zd bytes does not "
                     "decode",
                     codec == S_CODEC_BLOSC ? "blosc" : "snappy", src.len);
        goto out;
    }
    if (outobj != Py_None) ret = PyLong_FromSize_t(size);
out:
    if (dv.obj) PyBuffer_Release(&dv);
    PyBuffer_Release(&src);
    return ret;
}

/* concat_into(codec, pieces, out, ncols, itemsize, rows): decompresses
 * pieces[i], each an array of ncols rows of rows[i] items (C order), into
 * out, an array of ncols rows of sum(rows) items, piece i at column offset
 * rows[0] + ... + rows[i-1]: the concatenation of the pieces along their
 * last axis.  One call per block of a get, without the GIL.  A piece that
 * does not decode to its size raises CorruptError. */
static PyObject *s_concat_into(PyObject *Py_UNUSED(mod), PyObject *args) {
    int codec;
    PyObject *pieces, *outobj, *rows;
    Py_ssize_t ncols, itemsize;
    if (!PyArg_ParseTuple(args, "iO!OnnO!:concat_into", &codec, &PyList_Type,
                          &pieces, &outobj, &ncols, &itemsize, &PyList_Type,
                          &rows))
        return NULL;
    Py_ssize_t np = PyList_GET_SIZE(pieces);
    if (codec < S_CODEC_RAW || codec > S_CODEC_SNAPPY || ncols < 1 ||
        itemsize < 1 || PyList_GET_SIZE(rows) != np) {
        PyErr_SetString(PyExc_ValueError,
                        "concat_into: codec 0-2, ncols and itemsize >= 1, "
                        "one row count per piece");
        return NULL;
    }
    Py_buffer out;
    if (PyObject_GetBuffer(outobj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) <
        0)
        return NULL;
    Py_buffer *views = PyMem_Calloc(np ? (size_t)np : 1, sizeof *views);
    size_t *nrow = PyMem_Calloc(np ? (size_t)np : 1, sizeof *nrow);
    PyObject *ret = NULL;
    Py_ssize_t got = 0;
    if (!views || !nrow) {
        PyErr_NoMemory();
        goto done;
    }
    size_t total = 0, row = (size_t)ncols * (size_t)itemsize, maxpiece = 0;
    for (; got < np; got++) {
        size_t n = PyLong_AsSize_t(PyList_GET_ITEM(rows, got));
        if (n == (size_t)-1 && PyErr_Occurred()) goto done;
        nrow[got] = n;
        if (__builtin_add_overflow(total, n, &total)) goto toobig;
        if (PyObject_GetBuffer(PyList_GET_ITEM(pieces, got), &views[got],
                               PyBUF_SIMPLE) < 0)
            goto done;
    }
    size_t need;
    if (__builtin_mul_overflow(total, row, &need) || need != (size_t)out.len)
        goto toobig;
    for (Py_ssize_t i = 0; i < np; i++)
        if (nrow[i] * (size_t)itemsize > maxpiece)
            maxpiece = nrow[i] * (size_t)itemsize;
    Py_ssize_t bad = -1;
    const char *why = NULL;
    size_t claimed = 0;
    Py_BEGIN_ALLOW_THREADS char *scratch = NULL;
    size_t off = 0;
    for (Py_ssize_t i = 0; i < np && bad < 0; i++) {
        size_t want = nrow[i] * row; /* cannot overflow: <= need */
        size_t size = views[i].len ? s_codec_size(codec, views[i].buf,
                                                  (size_t)views[i].len, &why)
                                   : 0;
        if (why || size != want) {
            claimed = size;
            bad = i;
            break;
        }
        char *dst = (char *)out.buf + off * (size_t)itemsize;
        if (ncols > 1) {
            if (!scratch && !(scratch = malloc(maxpiece * (size_t)ncols))) {
                why = "no memory";
                bad = i;
                break;
            }
            dst = scratch;
        }
        if (want && !s_codec_decompress(codec, views[i].buf,
                                        (size_t)views[i].len, dst, want)) {
            why = "does not decode";
            bad = i;
            break;
        }
        if (ncols > 1) {
            size_t len = nrow[i] * (size_t)itemsize;
            for (Py_ssize_t c = 0; c < ncols; c++)
                memcpy((char *)out.buf +
                           ((size_t)c * total + off) * (size_t)itemsize,
                       scratch + (size_t)c * len, len);
        }
        off += nrow[i];
    }
    free(scratch);
    Py_END_ALLOW_THREADS if (bad >= 0) {
        if (why && strcmp(why, "no memory") == 0)
            PyErr_NoMemory();
        else
            PyErr_Format(s_CorruptError,
                         "cpartd: PandasBlocks get: piece %zd of a block: %s "
                         "(%zu bytes where its header says %zu)",
                         bad, why ? why : "wrong size", claimed,
                         nrow[bad] * row);
        goto done;
    }
    ret = Py_NewRef(Py_None);
    goto done;
toobig:
    PyErr_SetString(PyExc_ValueError,
                    "concat_into: out does not have the size of the pieces");
done:
    for (Py_ssize_t i = 0; i < got && views; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(nrow);
    PyBuffer_Release(&out);
    return ret;
}

/* ---------------------------------------------------------------- Frames */

/* frame(b): the 8-byte little-endian length of b, then b. */
static PyObject *s_frame(PyObject *Py_UNUSED(mod), PyObject *arg) {
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = NULL;
    if (v.len > PY_SSIZE_T_MAX - 8) {
        PyErr_NoMemory();
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, v.len + 8);
    if (!out) goto done;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    uint64_t len = (uint64_t)v.len;
    for (int k = 0; k < 8; k++) p[k] = (unsigned char)(len >> (8 * k));
    memcpy(p + 8, v.buf, (size_t)v.len);
done:
    PyBuffer_Release(&v);
    return out;
}

/* framesplit(b, torn='error'): the payloads of the frames in b, as
 * memoryviews over b (no copy).  A last frame that runs past the end is a
 * torn tail: CorruptError, or left out with torn='drop'. */
static PyObject *s_framesplit(PyObject *Py_UNUSED(mod), PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"data", "torn"};
    PyObject *a[2] = {NULL, NULL};
    if (s_parse("framesplit", args, nargs, kwnames, names, 2, 2, 1, false, a) <
        0)
        return NULL;
    bool drop = false;
    if (a[1]) {
        if (!PyUnicode_Check(a[1])) {
            PyErr_SetString(PyExc_TypeError, "torn must be 'error' or 'drop'");
            return NULL;
        }
        if (PyUnicode_CompareWithASCIIString(a[1], "drop") == 0)
            drop = true;
        else if (PyUnicode_CompareWithASCIIString(a[1], "error") != 0) {
            PyErr_SetString(PyExc_ValueError, "torn must be 'error' or 'drop'");
            return NULL;
        }
    }
    PyObject *mv = PyMemoryView_FromObject(a[0]);
    if (!mv) return NULL;
    Py_buffer *v = PyMemoryView_GET_BUFFER(mv);
    PyObject *list = NULL, *flat = NULL;
    if (!PyBuffer_IsContiguous(v, 'C')) {
        PyErr_SetString(PyExc_BufferError, "framesplit: need contiguous data");
        goto fail;
    }
    if (v->ndim != 1 || v->itemsize != 1) {
        /* Any contiguous buffer is split as its raw bytes. */
        flat = PyObject_CallMethod(mv, "cast", "s", "B");
        if (!flat) goto fail;
        Py_DECREF(mv);
        mv = flat;
        flat = NULL;
        v = PyMemoryView_GET_BUFFER(mv);
    }
    const unsigned char *p = v->buf;
    size_t n = (size_t)v->len, off = 0;
    list = PyList_New(0);
    if (!list) goto fail;
    while (off < n) {
        if (n - off < 8) goto torn;
        uint64_t len = 0;
        for (int k = 7; k >= 0; k--) len = (len << 8) | p[off + k];
        if (len > n - off - 8) goto torn;
        PyObject *slice = PySequence_GetSlice(mv, (Py_ssize_t)(off + 8),
                                              (Py_ssize_t)(off + 8 + len));
        if (!slice || PyList_Append(list, slice) < 0) {
            Py_XDECREF(slice);
            goto fail;
        }
        Py_DECREF(slice);
        off += 8 + (size_t)len;
    }
    Py_DECREF(mv);
    return list;
torn:
    if (drop) {
        Py_DECREF(mv);
        return list;
    }
    PyErr_Format(s_CorruptError,
                 "framesplit: frame at offset %zu runs past the end of the "
                 "%zu bytes (torn tail)",
                 off, n);
fail:
    Py_XDECREF(list);
    Py_DECREF(mv);
    return NULL;
}

static PyObject *s_codecs(PyObject *Py_UNUSED(mod),
                          PyObject *Py_UNUSED(ignored)) {
#if CPARTD_HAVE_ENCODE
    const char *const *names = pd_codec_names();
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && names && names[i]; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s || PyList_Append(list, s) < 0) Py_CLEAR(list);
        Py_XDECREF(s);
    }
    return list;
#else
    return PyList_New(0);
#endif
}

static PyMethodDef s_module_methods[] = {
    {"frame", (PyCFunction)s_frame, METH_O,
     "frame(b): 8-byte little-endian length + b (partd.utils.frame)"},
    {"framesplit", (PyCFunction)(void (*)(void))s_framesplit,
     METH_FASTCALL | METH_KEYWORDS,
     "framesplit(b, torn='error'): list of memoryviews of the frames"},
    {"text_pickle", (PyCFunction)s_text_pickle_py, METH_O,
     "text_pickle(list): its pickle (protocol 4), written in C, or None when "
     "an item is not str, bytes, int, float, bool or None"},
    {"blocks_frames", (PyCFunction)s_blocks_frames, METH_VARARGS,
     "blocks_frames(header, parts): frame(header) + frame(codec(data)) for "
     "each (codec, data, typesize) part; None if an object list needs "
     "Python's pickle"},
    {"decompress", (PyCFunction)(void (*)(void))s_decompress_py,
     METH_VARARGS | METH_KEYWORDS,
     "decompress(codec, data, out=None, offset=0): bytes, or the count "
     "written into out at offset"},
    {"concat_into", (PyCFunction)s_concat_into, METH_VARARGS,
     "concat_into(codec, pieces, out, ncols, itemsize, rows): decompress "
     "the pieces into out, concatenated along their last axis"},
    {"_shutdown", (PyCFunction)s_shutdown, METH_NOARGS,
     "_shutdown(): servers stop calling Python to log (interpreter exit)"},
    {"curve_public", (PyCFunction)s_curve_public_py, METH_O,
     "curve_public(secret): the CURVE public key of a z85 secret key"},
    {"curve_keypair", (PyCFunction)s_curve_keypair_py, METH_NOARGS,
     "curve_keypair(): a new CURVE (public, secret) pair, z85 text"},
    {"codecs", (PyCFunction)s_codecs, METH_NOARGS,
     "codecs(): libpartd's built-in codec names ([] without the Encode "
     "layer)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef s_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cpartd._cpartd",
    .m_doc = "libpartd stores for Python; use the cpartd package.",
    .m_size = -1,
    .m_methods = s_module_methods,
};

static int s_add_type(PyObject *m, PyTypeObject *t, const char *name) {
    if (PyType_Ready(t) < 0) return -1;
    return PyModule_AddObjectRef(m, name, (PyObject *)t);
}

PyMODINIT_FUNC PyInit__cpartd(void);
PyMODINIT_FUNC PyInit__cpartd(void) {
    PyObject *m = PyModule_Create(&s_module);
    if (!m) return NULL;
    s_DictType.tp_base = &s_StoreType;
    s_FileType.tp_base = &s_StoreType;
    s_BufferType.tp_base = &s_StoreType;
    s_ClientType.tp_base = &s_StoreType;
#if CPARTD_HAVE_ENCODE
    s_CompressedType.tp_base = &s_StoreType;
#endif
    s_CorruptError = PyErr_NewExceptionWithDoc(
        "cpartd.CorruptError",
        "Stored data is malformed (libpartd PD_ERR_CORRUPT).  A ValueError: "
        "the bytes read are not a valid value.",
        PyExc_ValueError, NULL);
    s_ProtocolError = PyErr_NewExceptionWithDoc(
        "cpartd.ProtocolError",
        "A peer sent a malformed message (libpartd PD_ERR_PROTOCOL).",
        PyExc_ConnectionError, NULL);
    if (!s_CorruptError || !s_ProtocolError ||
        PyModule_AddObjectRef(m, "CorruptError", s_CorruptError) < 0 ||
        PyModule_AddObjectRef(m, "ProtocolError", s_ProtocolError) < 0 ||
        s_add_type(m, &s_StoreType, "Store") < 0 ||
        s_add_type(m, &s_LockType, "Lock") < 0 ||
        s_add_type(m, &s_ResultType, "Result") < 0 ||
        s_add_type(m, &s_DictType, "Dict") < 0 ||
        s_add_type(m, &s_FileType, "File") < 0 ||
        s_add_type(m, &s_BufferType, "Buffer") < 0 ||
        s_add_type(m, &s_ClientType, "Client") < 0 ||
        s_add_type(m, &s_ServerType, "Server") < 0 ||
#if CPARTD_HAVE_ENCODE
        s_add_type(m, &s_CompressedType, "Compressed") < 0 ||
#endif
        PyModule_AddStringConstant(m, "libpartd_version", pd_version_string()) <
            0 ||
        PyModule_AddIntConstant(m, "HAVE_ENCODE", CPARTD_HAVE_ENCODE) < 0 ||
        PyModule_AddIntConstant(m, "LEVEL_DEFAULT", -1000) < 0 ||
        PyModule_AddIntConstant(m, "CODEC_RAW", S_CODEC_RAW) < 0 ||
        PyModule_AddIntConstant(m, "CODEC_BLOSC", S_CODEC_BLOSC) < 0 ||
        PyModule_AddIntConstant(m, "CODEC_SNAPPY", S_CODEC_SNAPPY) < 0 ||
        PyModule_AddIntConstant(m, "LOG_ERROR", PD_LOG_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "LOG_WARN", PD_LOG_WARN) < 0 ||
        PyModule_AddIntConstant(m, "LOG_INFO", PD_LOG_INFO) < 0 ||
        PyModule_AddIntConstant(m, "LOG_DEBUG", PD_LOG_DEBUG) < 0 ||
        PyModule_AddIntConstant(m, "CLIENT_TIMEOUT_DEFAULT_MS",
                                PD_CLIENT_TIMEOUT_DEFAULT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
