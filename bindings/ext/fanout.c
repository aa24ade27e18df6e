/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The store types Fanout (pd_fanout: one store spread over several) and
 * Namespace (pd_namespace: one shuffle's key space on a shared store).
 *
 * A Fanout takes its inner stores over: their handles move into the
 * Fanout (which runs them from threads of its own), and the Python objects
 * given read as closed afterwards.  A Namespace borrows its inner store,
 * as a Buffer does: the inner store stays open and usable.
 */
#include "cpartd.h"

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- Fanout */

/* An inner store the Fanout can take: open, and used by nothing else. */
static int s_takeable(PyObject *o, Py_ssize_t i, PyObject *seen) {
    if (!CP_IS_STORE(o)) {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: Fanout's store %zd must be a cpartd store, not "
                     "%.100s",
                     i, Py_TYPE(o)->tp_name);
        return -1;
    }
    cp_store *in = (cp_store *)o;
    if (cp_check_open(in) < 0) return -1;
    if (in->busy > 0 || in->borrowers > 0 || in->lock_depth > 0) {
        PyErr_Format(PyExc_ValueError,
                     "cpartd: Fanout's store %zd (%s) is in use (by another "
                     "thread, its lock, or a wrapper such as a Buffer); a "
                     "Fanout takes its stores over",
                     i, in->kind ? in->kind : "store");
        return -1;
    }
    if (in->inner[0] || in->inner[1]) {
        /* Its own inner stores stay borrowed by a handle it no longer
         * holds: they could never be closed. */
        PyErr_Format(PyExc_ValueError,
                     "cpartd: Fanout's store %zd (%s) wraps other stores; give "
                     "a Fanout plain stores (Client, File, Dict) and wrap the "
                     "Fanout instead",
                     i, in->kind ? in->kind : "store");
        return -1;
    }
    int dup = PySet_Contains(seen, o);
    if (dup < 0) return -1;
    if (dup) {
        PyErr_Format(PyExc_ValueError,
                     "cpartd: Fanout's store %zd is given twice", i);
        return -1;
    }
    return PySet_Add(seen, o);
}

static int s_fanout_init(cp_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"stores", NULL};
    PyObject *arg;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Fanout", kwlist, &arg))
        return -1;
    PyObject *seq = PySequence_Fast(arg, "cpartd: Fanout needs a sequence "
                                         "of stores");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *seen = PySet_New(NULL);
    pd_store **inners = NULL;
    int ret = -1;
    if (!seen) goto out;
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError,
                        "cpartd: Fanout needs at least one store");
        goto out;
    }
    inners = PyMem_Calloc((size_t)n, sizeof *inners);
    if (!inners) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        if (s_takeable(o, i, seen) < 0) goto out;
        inners[i] = ((cp_store *)o)->s;
    }
    if (cp_reinit(self) < 0) goto out;
    pd_store *s = NULL;
    int rc = pd_fanout_open(&s, inners, (size_t)n, 0);
    if (cp_adopt(self, rc, s, "Fanout") < 0) goto out;
    /* The handles are the Fanout's now: the objects given read as closed
     * (and never close them again). */
    for (Py_ssize_t i = 0; i < n; i++)
        ((cp_store *)PySequence_Fast_GET_ITEM(seq, i))->s = NULL;
    ret = 0;
out:
    PyMem_Free(inners);
    Py_XDECREF(seen);
    Py_DECREF(seq);
    return ret;
}

CP_STORE_GETTER(s_fanout_count, PyLong_FromSize_t, pd_fanout_count)

/* index(key, n=None): the inner store that holds key (pd_fanout_index). */
PyObject *cp_fanout_index(PyObject *Py_UNUSED(mod), PyObject *args) {
    PyObject *key;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On:fanout_index", &key, &n)) return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "cpartd: fanout_index needs n > 0");
        return NULL;
    }
    cp_batch b;
    cp_batch_init(&b);
    PyObject *ret = NULL;
    if (cp_batch_one(&b, key, NULL) == 0) {
        size_t i = pd_fanout_index(&b.keys[0], (size_t)n);
        if (i == SIZE_MAX)
            PyErr_SetString(PyExc_ValueError, "cpartd: invalid key");
        else
            ret = PyLong_FromSize_t(i);
    }
    cp_batch_free(&b);
    return ret;
}

/* Puts "fanout: sync: store i of n: " before msg (cut to fit). */
static void s_prefix(char *msg, size_t size, size_t i, size_t n) {
    char pre[80];
    int p = snprintf(pre, sizeof pre, "fanout: sync: store %zu of %zu: ", i, n);
    size_t pl = p < 0 ? 0 : (size_t)p, ml = strlen(msg);
    if (pl >= size) return;
    if (pl + ml >= size) ml = size - pl - 1;
    memmove(msg + pl, msg, ml);
    memcpy(msg, pre, pl);
    msg[pl + ml] = '\0';
}

/* s_fanout_sync's work, without the GIL: every inner Client is synced (all
 * of them, even after a failure); the first failure is saved, named by its
 * store's index. */
static int s_sync_all(pd_store *fan, cp_saved_err *saved) {
    size_t n = pd_fanout_count(fan);
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        pd_store *in = pd_fanout_inner(fan, i);
        if (!in || strcmp(pd_store_kind(in), "client") != 0) continue;
        int rc = pd_client_sync(in);
        if (rc && !first) {
            first = rc;
            cp_save_err(in, rc, saved);
            s_prefix(saved->msg, sizeof saved->msg, i, n);
        }
    }
    return first;
}

/* sync(): waits until every inner Client's requests in flight are answered
 * (pd_client_sync), raising the first failure. */
static PyObject *s_fanout_sync(cp_store *self, PyObject *Py_UNUSED(ignored)) {
    cp_saved_err saved;
    int rc;
    CP_CALL_SAVED(self, rc, s_sync_all(self->s, &saved), &saved);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef s_fanout_methods[] = {
    {"sync", (PyCFunction)s_fanout_sync, METH_NOARGS,
     "sync(): wait for the replies of every inner Client's requests in "
     "flight; raises the first failure"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_fanout_getset[] = {{"nstores", (getter)s_fanout_count,
                                         NULL, "the number of inner stores",
                                         NULL},
                                        {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject cp_FanoutType =
    CP_STORE_TYPE("Fanout",
                  "Fanout(stores): one store spread over several (pd_fanout); "
                  "takes the stores over (they read as closed afterwards).",
                  s_fanout_init, s_fanout_methods, s_fanout_getset);

/* ------------------------------------------------------------- Namespace */

static int s_namespace_init(cp_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"store", "name", NULL};
    PyObject *inner, *name;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Namespace", kwlist, &inner,
                                     &name))
        return -1;
    if (cp_check_inner(inner, "Namespace's store") < 0) return -1;
    const char *p;
    Py_ssize_t len;
    if (PyUnicode_Check(name)) {
        p = PyUnicode_AsUTF8AndSize(name, &len);
        if (!p) return -1;
    } else if (PyBytes_Check(name)) {
        p = PyBytes_AS_STRING(name);
        len = PyBytes_GET_SIZE(name);
    } else {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: Namespace's name must be str or bytes, not "
                     "%.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    if (cp_reinit(self) < 0) return -1;
    Py_CLEAR(self->inner[0]);
    cp_store *in = (cp_store *)inner;
    pd_store *s = NULL, *is = in->s;
    int rc = pd_namespace_open(&s, &is, p, (size_t)len, PD_BORROW);
    if (cp_adopt(self, rc, s, "Namespace") < 0) return -1;
    self->inner[0] = Py_NewRef(inner);
    in->borrowers++;
    return 0;
}

static PyObject *s_namespace_inner(cp_store *self, void *Py_UNUSED(c)) {
    if (!self->inner[0]) {
        PyErr_SetString(PyExc_AttributeError, "cpartd: Namespace not open");
        return NULL;
    }
    return Py_NewRef(self->inner[0]);
}

static PyObject *s_namespace_name(cp_store *self, void *Py_UNUSED(c)) {
    if (cp_check_open(self) < 0) return NULL;
    size_t len = 0;
    const void *p = pd_namespace_name(self->s, &len);
    return PyBytes_FromStringAndSize(p ? p : "", (Py_ssize_t)len);
}

static PyGetSetDef s_namespace_getset[] = {
    {"partd", (getter)s_namespace_inner, NULL, "the inner store", NULL},
    {"name_bytes", (getter)s_namespace_name, NULL, "the name, as bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject cp_NamespaceType =
    CP_STORE_TYPE("Namespace",
                  "Namespace(store, name): the keys under name (str or bytes) "
                  "on a shared store (pd_namespace); borrows store.",
                  s_namespace_init, NULL, s_namespace_getset);
