/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The base type Store: libpartd errors as Python exceptions, the call
 * discipline (cp_enter/cp_leave under CP_CALL), argument parsing, closing
 * and the object's lifecycle, and the Lock object of `store.lock`.
 */
#include "cpartd.h"

#include <string.h>

/* ------------------------------------------------------------ Errors */

PyObject *cp_raise(const pd_store *s, int rc) {
    const char *msg = pd_errmsg(s);
    int code = pd_errcode(s);
    int sys = pd_errno(s);
    if (code == 0) {
        code = rc;
        msg = pd_strerror(rc);
    }
    return cp_raise_as(code, sys, msg);
}

void cp_save_err(const pd_store *s, int rc, cp_saved_err *e) {
    e->code = pd_errcode(s);
    e->sys = pd_errno(s);
    const char *m = pd_errmsg(s);
    if (e->code == 0) {
        e->code = rc;
        m = pd_strerror(rc);
    }
    snprintf(e->msg, sizeof e->msg, "%s", m);
}

PyObject *cp_raise_as(int code, int sys, const char *msg) {
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
    case PD_ERR_CORRUPT: PyErr_SetString(cp_CorruptError, msg); break;
    case PD_ERR_PROTOCOL: PyErr_SetString(cp_ProtocolError, msg); break;
    case PD_ERR_CONFLICT: PyErr_SetString(cp_AttemptConflict, msg); break;
    case PD_ERR_UNSUPPORTED:
        PyErr_SetString(PyExc_NotImplementedError, msg);
        break;
    default: /* MISUSE, KEY, LIMIT: the arguments do not fit */
        PyErr_SetString(PyExc_ValueError, msg);
        break;
    }
    return NULL;
}

int cp_check_open(cp_store *self) {
    if (self->s) return 0;
    PyErr_Format(PyExc_ValueError, "cpartd: %s store is closed",
                 self->kind ? self->kind : Py_TYPE(self)->tp_name);
    return -1;
}

/* ---------------------------------------------------------- Dispatching */

/* Marks a call in flight (close() is refused meanwhile): 0, or
 * PD_ERR_MISUSE with an exception when the store is closed. */
int cp_enter(cp_store *self) {
    if (cp_check_open(self) < 0) return PD_ERR_MISUSE;
    self->busy++;
    return 0;
}

/* Ends what cp_enter began, with the GIL held again: a failure (rc != 0)
 * raises the error saved in *saved, or (saved NULL) the store's, read by
 * the thread that made the call.  Returns rc. */
int cp_leave(cp_store *self, int rc, const cp_saved_err *saved) {
    if (rc && saved)
        cp_raise_as(saved->code, saved->sys, saved->msg);
    else if (rc)
        cp_raise(self->s, rc);
    self->busy--;
    return rc;
}

/* ------------------------------------------------------------ Arguments */

/* Keyword parsing for METH_FASTCALL | METH_KEYWORDS methods: `names` are
 * the parameters in order (the first `npos` may be positional); out[i] is
 * set to the argument or left as it was.  Unknown keywords are a TypeError
 * unless `lenient` (partd's append and get take **kwargs and ignore them). */
int cp_parse(const char *fn, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames, const char *const *names, int nnames, int npos,
             int nreq, bool lenient, PyObject **out) {
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

/* A method's arguments (cpartd.h).  One positional argument, the common
 * call, needs no parsing. */
int cp_sig_args(const cp_sig *sig, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames, PyObject **a, unsigned *flags) {
    int n = 0;
    while (n < 4 && sig->names[n]) a[n++] = NULL;
    if (nargs == 1 && !kwnames && sig->nreq <= 1)
        a[0] = args[0];
    else if (cp_parse(sig->fn, args, nargs, kwnames, sig->names, n, n,
                      sig->nreq, sig->lenient, a) < 0)
        return -1;
    return s_flags(sig->lock >= 0 ? a[sig->lock] : NULL,
                   sig->fsync >= 0 ? a[sig->fsync] : NULL, flags);
}

int cp_args(cp_store *self, const cp_sig *sig, PyObject *const *args,
            Py_ssize_t nargs, PyObject *kwnames, PyObject **a,
            unsigned *flags) {
    if (cp_sig_args(sig, args, nargs, kwnames, a, flags) < 0) return -1;
    return cp_check_open(self);
}

/* s_close's libpartd part, without the GIL: drop first drops `drop` (a
 * Buffer's fast Dict), and discard makes a Buffer forget its fast store. */
static int s_shut(pd_store **s, pd_store *drop, bool discard) {
    if (drop) pd_drop(drop, 0);
    if (discard) pd_buffer_discard(*s);
    return pd_close(s);
}

/* Closes the handle (and ends the borrow of inner stores).  Refused while
 * the store is in use; see cpartd.h. */
static int s_close(cp_store *self, bool dealloc) {
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
    bool discard = dealloc && PyObject_TypeCheck(self, &cp_BufferType);
    /* A fast Dict nothing else can see (dask's Buffer(Dict(), File())) is
     * dropped at once: cheaper than discard's deletes, key by key. */
    cp_store *fast = discard ? (cp_store *)self->inner[0] : NULL;
    pd_store *drop = fast && fast->s && Py_REFCNT(fast) == 1 &&
                             fast->borrowers == 1 &&
                             strcmp(pd_store_kind(fast->s), "dict") == 0
                         ? fast->s
                         : NULL;
    int rc;
    CP_NOGIL(rc = s_shut(&s, drop, discard));
    for (int i = 0; i < 2; i++) {
        cp_store *in = (cp_store *)self->inner[i];
        if (in) in->borrowers--;
    }
    if (rc && !dealloc) {
        cp_raise(NULL, rc);
        return -1;
    }
    return 0;
}

PyObject *cp_store_close(cp_store *self, PyObject *Py_UNUSED(ignored)) {
    if (s_close(self, false) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_store_closed(cp_store *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->s == NULL);
}

CP_STORE_GETTER(s_store_kind, PyUnicode_FromString, pd_store_kind)

static PyObject *s_store_lock(cp_store *self, void *Py_UNUSED(c));

static int s_store_traverse(cp_store *self, visitproc visit, void *arg) {
    Py_VISIT(self->inner[0]);
    Py_VISIT(self->inner[1]);
    return 0;
}

static int s_store_clear(cp_store *self) {
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

void cp_gc_dealloc(PyObject *self, PyObject *weakrefs, inquiry clear) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (weakrefs) PyObject_ClearWeakRefs(self);
    clear(self);
    tp->tp_free(self);
}

static void s_store_dealloc(cp_store *self) {
    /* A Python subclass's dealloc untracks the object and releases its
     * heap type around this call. */
    cp_gc_dealloc((PyObject *)self, self->weakrefs, (inquiry)s_store_clear);
}

static PyObject *s_store_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
                             PyObject *Py_UNUSED(kwds)) {
    cp_store *self = (cp_store *)type->tp_alloc(type, 0);
    return (PyObject *)self;
}

static int s_store_init(cp_store *self, PyObject *Py_UNUSED(args),
                        PyObject *Py_UNUSED(kwds)) {
    (void)self;
    PyErr_SetString(PyExc_TypeError, "cpartd: Store is abstract; use Dict, "
                                     "File or Buffer");
    return -1;
}

/* Takes the handle an open call gave (rc 0), or raises its error. */
int cp_adopt(cp_store *self, int rc, pd_store *s, const char *kind) {
    if (rc) {
        cp_raise(NULL, rc);
        return -1;
    }
    self->s = s;
    self->kind = kind;
    self->get_hint = 0; /* a new handle: no size known yet */
    return 0;
}

/* Reopening an object (calling __init__ twice) closes the old handle. */
int cp_reinit(cp_store *self) {
    if (!self->s) return 0;
    return s_close(self, false);
}

int cp_dir_store_init(cp_store *self, PyObject *args, PyObject *kwds,
                      const char *kind, cp_dir_open_fn open, unsigned create,
                      unsigned fsync_flag) {
    static char *kwlist[] = {"path", "fsync", NULL};
    char fmt[32];
    snprintf(fmt, sizeof fmt, "O&|p:%s", kind);
    PyObject *path = NULL;
    int fsync = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, fmt, kwlist,
                                     PyUnicode_FSConverter, &path, &fsync))
        return -1;
    if (cp_reinit(self) < 0) {
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
    unsigned flags = create | (fsync ? fsync_flag : 0);
    int rc;
    CP_NOGIL(rc = open(&s, p, flags));
    Py_DECREF(path);
    return cp_adopt(self, rc, s, kind);
}

static PyGetSetDef s_store_getset[] = {
    {"closed", (getter)s_store_closed, NULL, "True once closed", NULL},
    {"lock", (getter)s_store_lock, NULL,
     "the store's lock: `with p.lock:` then calls with lock=False", NULL},
    {"_kind", (getter)s_store_kind, NULL, "libpartd's store kind", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject cp_StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Store",
    .tp_basicsize = sizeof(cp_store),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Base of the libpartd store types.",
    .tp_new = s_store_new,
    .tp_init = (initproc)s_store_init,
    .tp_dealloc = (destructor)s_store_dealloc,
    .tp_traverse = (traverseproc)s_store_traverse,
    .tp_clear = (inquiry)s_store_clear,
    .tp_weaklistoffset = offsetof(cp_store, weakrefs),
    .tp_methods = cp_store_methods,
    .tp_getset = s_store_getset,
};

/* ------------------------------------------------------------------ Lock */

typedef struct s_lock {
    PyObject_HEAD cp_store *store;
} s_lock;

static PyObject *s_store_lock(cp_store *self, void *Py_UNUSED(c)) {
    s_lock *l = PyObject_New(s_lock, &cp_LockType);
    if (!l) return NULL;
    l->store = (cp_store *)Py_NewRef(self);
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
    if (cp_parse("acquire", args, nargs, kwnames, names, 2, 2, 0, false, a) < 0)
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
    cp_store *st = self->store;
    int rc;
    CP_CALL(st, rc, pd_lock(st->s));
    if (rc) return NULL;
    st->lock_owner = PyThread_get_thread_ident();
    st->lock_depth++;
    Py_RETURN_TRUE;
}

static PyObject *s_lock_release(s_lock *self, PyObject *Py_UNUSED(ignored)) {
    cp_store *st = self->store;
    if (cp_check_open(st) < 0) return NULL;
    if (st->lock_depth == 0 || st->lock_owner != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "cpartd: release of a store lock "
                                            "this thread does not hold");
        return NULL;
    }
    int rc;
    /* pd_unlock may close a File's lock session (I/O): no GIL. */
    CP_CALL(st, rc, pd_unlock(st->s));
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
    {"acquire", CP_FASTCALL(s_lock_acquire),
     "acquire(): take the store's lock (recursive for this thread)"},
    {"release", (PyCFunction)s_lock_release, METH_NOARGS, "release()"},
    {"__enter__", CP_FASTCALL(s_lock_acquire), NULL},
    {"__exit__", (PyCFunction)s_lock_exit, METH_VARARGS, NULL},
    {"locked", (PyCFunction)s_lock_locked, METH_NOARGS,
     "True while a thread of this process holds the lock through cpartd"},
    {NULL, NULL, 0, NULL}};

PyTypeObject cp_LockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Lock",
    .tp_basicsize = sizeof(s_lock),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The lock of a store (flock on <root>/.lock for a File).",
    .tp_dealloc = (destructor)s_lock_dealloc,
    .tp_methods = s_lock_methods,
};

/* An inner store for a wrapper: an open cpartd store not already in use by
 * this wrapper. */
int cp_check_inner(PyObject *o, const char *what) {
    if (!CP_IS_STORE(o)) {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: %s must be a cpartd store, not %.100s", what,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    return cp_check_open((cp_store *)o);
}
