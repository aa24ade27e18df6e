/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Attempts (partd.h "Attempts"): Store.attempt(writer, attempt) begins one
 * and returns an Attempt, whose append() writes invisibly until commit();
 * abort() discards.  As a context manager it commits when the block ends
 * normally and aborts (re-raising) when it raises.  A commit that loses to
 * another attempt of the same writer raises AttemptConflict.
 *
 * Writers are str or int: an int is its decimal text, as for keys (writer
 * 3 and writer '3' are one writer).  Attempt numbers are ints in
 * [0, 2**64).  Every library call goes through the store's CP_CALL (the
 * store stays open and is marked busy meanwhile); an Attempt holds its
 * store and refuses to be used by two threads at once.
 */
#include "cpartd.h"

PyObject *cp_AttemptConflict;

typedef struct cp_attempt {
    PyObject_HEAD cp_store *store; /* held */
    pd_attempt *a;                 /* NULL once committed or aborted */
    PyObject *writer;
    unsigned long long attempt;
    bool busy; /* a call is in flight (another thread: refused) */
} cp_attempt;

/* Adds writer= and attempt= to the AttemptConflict being raised. */
static void s_conflict_attrs(PyObject *writer, unsigned long long attempt) {
    if (!PyErr_ExceptionMatches(cp_AttemptConflict)) return;
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    PyObject *n = PyLong_FromUnsignedLongLong(attempt);
    if (v && n) {
        PyObject_SetAttrString(v, "writer", writer);
        PyObject_SetAttrString(v, "attempt", n);
    }
    Py_XDECREF(n);
    PyErr_Clear();
    PyErr_Restore(t, v, tb);
}

/* 0 when the attempt may be used now, else -1 with an exception. */
static int s_usable(cp_attempt *self, const char *op) {
    if (self->busy) {
        PyErr_Format(PyExc_RuntimeError,
                     "cpartd: Attempt.%s: another thread is using this "
                     "attempt",
                     op);
        return -1;
    }
    if (!self->a) {
        PyErr_Format(PyExc_ValueError,
                     "cpartd: Attempt.%s: attempt %llu of writer %R is "
                     "finished (committed or aborted)",
                     op, self->attempt, self->writer);
        return -1;
    }
    return 0;
}

static PyObject *s_append(cp_attempt *self, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"append", {"data", "fsync"}, 1, -1, 1, false};
    PyObject *a[2];
    unsigned flags;
    if (cp_sig_args(&sig, args, nargs, kwnames, a, &flags) < 0 ||
        s_usable(self, "append") < 0)
        return NULL;
    cp_batch b;
    cp_batch_init(&b);
    int rc = cp_batch_from_mapping(&b, a[0]);
    if (rc == 0 && b.n > 0) {
        pd_attempt *at = self->a;
        self->busy = true;
        CP_CALL(self->store, rc,
                pd_attempt_append(at, (size_t)b.n, b.keys, b.vals, flags));
        self->busy = false;
    }
    cp_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

/* Commits (ends the attempt whatever the outcome); 0 or -1. */
static int s_do_commit(cp_attempt *self, unsigned flags) {
    pd_attempt *at = self->a;
    self->a = NULL;
    int rc;
    self->busy = true;
    if (cp_check_open(self->store) < 0) {
        pd_attempt_abort(&at); /* the store closed it: only freed */
        rc = PD_ERR_MISUSE;
    } else {
        CP_CALL(self->store, rc, pd_attempt_commit(&at, flags));
    }
    self->busy = false;
    if (rc) s_conflict_attrs(self->writer, self->attempt);
    return rc ? -1 : 0;
}

static PyObject *s_commit(cp_attempt *self, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"commit", {"fsync"}, 0, -1, 0, false};
    PyObject *a[1];
    unsigned flags;
    if (cp_sig_args(&sig, args, nargs, kwnames, a, &flags) < 0 ||
        s_usable(self, "commit") < 0)
        return NULL;
    if (s_do_commit(self, flags) < 0) return NULL;
    Py_RETURN_NONE;
}

/* Aborts (idempotent); 0 or -1. */
static int s_do_abort(cp_attempt *self) {
    pd_attempt *at = self->a;
    self->a = NULL;
    if (!at) return 0;
    if (!self->store->s) {
        pd_attempt_abort(&at); /* the store closed it: only freed */
        return 0;
    }
    int rc;
    self->busy = true;
    CP_CALL(self->store, rc, pd_attempt_abort(&at));
    self->busy = false;
    return rc ? -1 : 0;
}

static PyObject *s_abort(cp_attempt *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) {
        s_usable(self, "abort");
        return NULL;
    }
    if (s_do_abort(self) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_enter(cp_attempt *self, PyObject *Py_UNUSED(ignored)) {
    if (s_usable(self, "__enter__") < 0) return NULL;
    return Py_NewRef(self);
}

/* Commits on a normal exit, aborts on an exception (which propagates). */
static PyObject *s_exit(cp_attempt *self, PyObject *args) {
    PyObject *t = Py_None, *v = Py_None, *tb = Py_None;
    if (!PyArg_UnpackTuple(args, "__exit__", 0, 3, &t, &v, &tb)) return NULL;
    if (!self->a) Py_RETURN_FALSE; /* committed or aborted in the block */
    if (self->busy) {
        s_usable(self, "__exit__");
        return NULL;
    }
    if (t == Py_None) {
        if (s_do_commit(self, 0) < 0) return NULL;
        Py_RETURN_FALSE;
    }
    /* The block's exception wins over an error of the abort. */
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    if (s_do_abort(self) < 0) PyErr_Clear();
    PyErr_Restore(et, ev, etb);
    Py_RETURN_FALSE;
}

static void s_dealloc(cp_attempt *self) {
    if (self->a) {
        /* Never committed: discarded.  No error can be raised here. */
        pd_attempt *at = self->a;
        self->a = NULL;
        if (self->store && self->store->s) {
            PyObject *et, *ev, *etb;
            PyErr_Fetch(&et, &ev, &etb);
            int rc;
            CP_CALL(self->store, rc, pd_attempt_abort(&at));
            if (rc) PyErr_Clear();
            PyErr_Restore(et, ev, etb);
        } else {
            pd_attempt_abort(&at);
        }
    }
    Py_CLEAR(self->store);
    Py_CLEAR(self->writer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *s_repr(cp_attempt *self) {
    return PyUnicode_FromFormat("<cpartd.Attempt writer=%R attempt=%llu %s>",
                                self->writer, self->attempt,
                                self->a ? "open" : "finished");
}

static PyObject *s_get_writer(cp_attempt *self, void *Py_UNUSED(c)) {
    return Py_NewRef(self->writer);
}
static PyObject *s_get_attempt(cp_attempt *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(self->attempt);
}
static PyObject *s_get_store(cp_attempt *self, void *Py_UNUSED(c)) {
    return Py_NewRef((PyObject *)self->store);
}
static PyObject *s_get_open(cp_attempt *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->a != NULL);
}

static PyGetSetDef s_getset[] = {
    {"writer", (getter)s_get_writer, NULL, "the writer (str or int)", NULL},
    {"attempt", (getter)s_get_attempt, NULL, "the attempt number", NULL},
    {"store", (getter)s_get_store, NULL, "the store it writes to", NULL},
    {"open", (getter)s_get_open, NULL, "True until committed or aborted", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef s_methods[] = {
    {"append", CP_FASTCALL(s_append),
     "append(data, fsync=False): append each value of the mapping to its "
     "key, invisibly until commit()"},
    {"commit", CP_FASTCALL(s_commit),
     "commit(fsync=False): make every append visible at once; raises "
     "AttemptConflict if another attempt of the writer committed first"},
    {"abort", (PyCFunction)s_abort, METH_NOARGS,
     "abort(): discard the appends (idempotent)"},
    {"__enter__", (PyCFunction)s_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)s_exit, METH_VARARGS,
     "commits on a normal exit, aborts on an exception"},
    {NULL, NULL, 0, NULL}};

PyTypeObject cp_AttemptType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd.Attempt",
    .tp_basicsize = sizeof(cp_attempt),
    .tp_dealloc = (destructor)s_dealloc,
    .tp_repr = (reprfunc)s_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An attempt of a writer (Store.attempt(writer, attempt)).",
    .tp_methods = s_methods,
    .tp_getset = s_getset,
};

/* ----------------------------------------------------- Store.attempt */

/* The attempt number: an int in [0, 2**64).  0, or -1 with an exception. */
static int s_attempt_number(PyObject *o, unsigned long long *out) {
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: attempt: an attempt number is an int, not "
                     "%.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    PyObject *zero = PyLong_FromLong(0);
    int neg = zero ? PyObject_RichCompareBool(o, zero, Py_LT) : -1;
    Py_XDECREF(zero);
    if (neg < 0) return -1;
    if (neg) {
        PyErr_Format(PyExc_ValueError,
                     "cpartd: attempt: the attempt number must be >= 0, "
                     "not %R",
                     o);
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(o);
    if (*out == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_OverflowError,
                     "cpartd: attempt: the attempt number %R does not fit "
                     "in 64 bits",
                     o);
        return -1;
    }
    return 0;
}

PyObject *cp_store_attempt(cp_store *self, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"writer", "attempt"};
    PyObject *a[2] = {NULL, NULL};
    if (cp_parse("attempt", args, nargs, kwnames, names, 2, 2, 2, false, a) < 0)
        return NULL;
    PyObject *writer = a[0];
    if (!(PyUnicode_Check(writer) ||
          (PyLong_Check(writer) && !PyBool_Check(writer)))) {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: attempt: a writer is a str or an int, not "
                     "%.100s",
                     Py_TYPE(writer)->tp_name);
        return NULL;
    }
    unsigned long long n;
    if (s_attempt_number(a[1], &n) < 0 || cp_check_open(self) < 0) return NULL;
    cp_batch b;
    cp_batch_init(&b);
    int rc = cp_batch_one(&b, writer, NULL);
    pd_attempt *at = NULL;
    if (rc == 0) {
        CP_CALL(self, rc, pd_attempt_begin(self->s, &b.keys[0], n, &at, 0));
        if (rc) s_conflict_attrs(writer, n);
    }
    cp_batch_free(&b);
    if (rc) return NULL;
    cp_attempt *o = PyObject_New(cp_attempt, &cp_AttemptType);
    if (!o) {
        pd_attempt_abort(&at);
        return NULL;
    }
    o->store = (cp_store *)Py_NewRef((PyObject *)self);
    o->a = at;
    o->writer = Py_NewRef(writer);
    o->attempt = n;
    o->busy = false;
    return (PyObject *)o;
}

int cp_attempt_init(PyObject *m) {
    cp_AttemptConflict = PyErr_NewExceptionWithDoc(
        "cpartd.AttemptConflict",
        "Another attempt of the same writer committed first (libpartd "
        "PD_ERR_CONFLICT); this attempt's data is discarded.  Attributes: "
        "writer, attempt (this one's).",
        PyExc_RuntimeError, NULL);
    if (!cp_AttemptConflict ||
        PyModule_AddObjectRef(m, "AttemptConflict", cp_AttemptConflict) < 0 ||
        PyType_Ready(&cp_AttemptType) < 0 ||
        PyModule_AddObjectRef(m, "Attempt", (PyObject *)&cp_AttemptType) < 0)
        return -1;
    return 0;
}
