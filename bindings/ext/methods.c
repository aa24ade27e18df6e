/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The methods of the base type Store (cp_store_methods): append, get,
 * _get, _get_views, iget, delete, _delete, iset, _iset, drop, keys, close.
 * Each converts its arguments into a cp_batch and makes one libpartd call
 * through CP_CALL.
 */
#include "cpartd.h"

#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ Gets */

/* pd_get on a batch; returns a new list of bytes or NULL. */
static PyObject *s_get_list(cp_store *self, cp_batch *b, unsigned flags) {
    pd_result *r = NULL;
    int rc;
    if (b->n == 0) return PyList_New(0);
    CP_CALL(self, rc, pd_get(self->s, (size_t)b->n, b->keys, &r, flags));
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

/* Runs without the GIL: *out = the size of key's file in a File store (0
 * when unknown), from lstat of its path, without the store's lock.  Only a
 * guess for s_get_one's buffer: the read itself, under the lock, returns
 * what the file holds then; had it grown since, the read costs the copy
 * the guess would have saved, never a wrong value.  Always 0 (a failure
 * leaves the guess unknown). */
static int s_file_size_guess(pd_store *s, const pd_key *key, Py_ssize_t *out) {
    char path[4096];
    struct stat st;
    size_t n = pd_file_filename(s, key, path, sizeof path);
    *out = 0;
    if (n > 0 && n < sizeof path && lstat(path, &st) == 0 &&
        S_ISREG(st.st_mode) && st.st_size < PY_SSIZE_T_MAX / 4)
        *out = (Py_ssize_t)st.st_size;
    return 0;
}

/* pd_get of one key (get(key), iget): its value as bytes, or NULL.  A
 * large value is read straight into a bytes object of its expected size
 * plus some slack (pd_get_into), then shrunk: no copy, as partd's
 * f.read().  The expected size is the last single-key get's on this store
 * (get_hint); a File with no such size yet (get_hint 0: a fresh handle, or
 * the last large value did not fit its guess) asks its file's size first.
 * A wrong guess costs the copy it saves. */
static PyObject *s_get_one(cp_store *self, PyObject *key, unsigned flags) {
    cp_batch b;
    cp_batch_init(&b);
    PyObject *ret = NULL, *buf = NULL;
    if (cp_batch_one(&b, key, NULL) == 0) {
        Py_ssize_t hint = self->get_hint, cap = 0;
        bool file = pd_file_path(self->s) != NULL;
        if (hint == 0 && file) {
            int grc;
            CP_CALL(self, grc, s_file_size_guess(self->s, b.keys, &hint));
            if (grc) {
                cp_batch_free(&b);
                return NULL; /* closed meanwhile */
            }
        }
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
        CP_CALL(self, rc,
                pd_get_into(self->s, 1, b.keys, bp, (size_t)cap, &r, flags));
        if (!rc) {
            pd_bytes v = pd_result_value(r, 0);
            bool in = buf && pd_result_in(r, bp);
            /* 0 is "unknown": a File then asks its next value's size */
            self->get_hint = (file && !in && v.size >= S_INTO_MIN) ? 0
                             : v.size ? (Py_ssize_t)v.size
                                      : 1;
            if (in) {
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
    cp_batch_free(&b);
    return ret;
}

/* A pd_result exported through the buffer protocol: the values of one get,
 * back to back in one allocation, shared by the memoryviews over them. */
typedef struct s_result {
    PyObject_HEAD pd_result *r;
    char *base; /* start of the values */
    Py_ssize_t len;
} s_result;

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

PyTypeObject cp_ResultType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Result",
    .tp_basicsize = sizeof(s_result),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The bytes of one get, shared by memoryviews (read-only).",
    .tp_dealloc = (destructor)s_result_dealloc,
    .tp_as_buffer = &s_result_as_buffer,
};

/* pd_get on a batch; returns a list of read-only memoryviews over one
 * Result (no copy), or NULL. */
static PyObject *s_get_views(cp_store *self, cp_batch *b, unsigned flags) {
    pd_result *r = NULL;
    int rc;
    if (b->n == 0) return PyList_New(0);
    CP_CALL(self, rc, pd_get(self->s, (size_t)b->n, b->keys, &r, flags));
    if (rc) return NULL;
    s_result *res = PyObject_New(s_result, &cp_ResultType);
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

static PyObject *s_store_append(cp_store *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"append", {"data", "lock", "fsync"}, 1, 1, 2,
                               true};
    PyObject *a[3];
    unsigned flags;
    if (cp_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    cp_batch b;
    cp_batch_init(&b);
    int rc = cp_batch_from_mapping(&b, a[0]);
    if (rc == 0 && b.n > 0)
        CP_CALL(self, rc,
                pd_append(self->s, (size_t)b.n, b.keys, b.vals, flags));
    cp_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

/* Appends each value as one frame (8-byte little-endian length, then the
 * bytes) without copying it: the batch repeats each key, header then value
 * (an append batch is atomic and keeps array order). */
static PyObject *s_store_append_framed(cp_store *self, PyObject *const *args,
                                       Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {
        "_append_framed", {"data", "lock", "fsync"}, 1, 1, 2, true};
    PyObject *a[3];
    unsigned flags;
    if (cp_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    cp_batch b;
    cp_batch_init(&b);
    pd_key *keys = NULL;
    pd_bytes *vals = NULL;
    unsigned char(*hdr)[8] = NULL;
    int rc = cp_batch_from_mapping(&b, a[0]);
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
        CP_CALL(self, rc, pd_append(self->s, 2 * n, keys, vals, flags));
    }
out:
    PyMem_Free(keys);
    PyMem_Free(vals);
    PyMem_Free(hdr);
    cp_batch_free(&b);
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
static PyObject *s_get_flat(cp_store *self, PyObject *keys, unsigned flags,
                            bool views) {
    cp_batch b;
    cp_batch_init(&b);
    PyObject *ret = NULL;
    if (cp_batch_from_keys(&b, keys) == 0)
        ret =
            views ? s_get_views(self, &b, flags) : s_get_list(self, &b, flags);
    cp_batch_free(&b);
    return ret;
}

/* pd_get of a list of keys as a list of bytes, with the nesting of nested
 * lists. */
static PyObject *s_get_nested(cp_store *self, PyObject *keys, unsigned flags) {
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
static PyObject *s_store_get(cp_store *self, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"get", {"keys", "lock"}, 1, 1, -1, true};
    PyObject *a[2];
    unsigned flags;
    if (cp_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    if (!PyList_Check(a[0])) return s_get_one(self, a[0], flags);
    return s_get_nested(self, a[0], flags);
}

/* _get(keys, lock=True): a list, one value per key (no nesting). */
static PyObject *s_store__get(cp_store *self, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"_get", {"keys", "lock"}, 1, 1, -1, true};
    PyObject *a[2];
    unsigned flags;
    if (cp_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
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
static PyObject *s_store__get_views(cp_store *self, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"_get_views", {"keys", "lock"}, 1, 1, -1, true};
    PyObject *a[2];
    unsigned flags;
    if (cp_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    if (!PyList_Check(a[0]) && !PyTuple_Check(a[0])) {
        PyErr_Format(PyExc_TypeError,
                     "cpartd: _get_views takes a list of keys, not %.100s",
                     Py_TYPE(a[0])->tp_name);
        return NULL;
    }
    return s_get_flat(self, a[0], flags, true);
}

static PyObject *s_store_iget(cp_store *self, PyObject *key) {
    if (cp_check_open(self) < 0) return NULL;
    return s_get_one(self, key, PD_NOLOCK);
}

static PyObject *s_do_delete(cp_store *self, const cp_sig *sig,
                             PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, bool single_ok) {
    PyObject *a[2];
    unsigned flags;
    if (cp_args(self, sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    cp_batch b;
    cp_batch_init(&b);
    int rc = (single_ok && !PyList_Check(a[0])) ? cp_batch_one(&b, a[0], NULL)
                                                : cp_batch_from_keys(&b, a[0]);
    if (rc == 0 && b.n > 0)
        CP_CALL(self, rc, pd_delete(self->s, (size_t)b.n, b.keys, flags));
    cp_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_store_delete(cp_store *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"delete", {"keys", "lock"}, 1, 1, -1, false};
    return s_do_delete(self, &sig, args, nargs, kwnames, true);
}

static PyObject *s_store__delete(cp_store *self, PyObject *const *args,
                                 Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"_delete", {"keys", "lock"}, 1, 1, -1, false};
    return s_do_delete(self, &sig, args, nargs, kwnames, false);
}

/* Replaces key's content (delete, then append) under one hold of the
 * store's lock (none with PD_NOLOCK); runs without the GIL.  A failure's
 * error is saved in *err: unlocking clears the store's. */
static int s_replace(pd_store *s, const pd_key *key, const pd_bytes *val,
                     unsigned flags, cp_saved_err *err) {
    int rc = 0;
    bool have = false;
    if (!(flags & PD_NOLOCK)) {
        rc = pd_lock(s);
        have = rc == 0;
    }
    if (!rc) rc = pd_delete(s, 1, key, PD_NOLOCK);
    if (!rc) rc = pd_append(s, 1, key, val, (flags & PD_FSYNC) | PD_NOLOCK);
    if (rc) cp_save_err(s, rc, err);
    if (have) {
        int urc = pd_unlock(s);
        if (urc && !rc) {
            rc = urc;
            cp_save_err(s, rc, err);
        }
    }
    return rc;
}

/* iset(key, value, lock=True): pd_iset; _iset: replace the key's content,
 * every time (the raw set under partd's iset, which wrappers such as Numpy
 * call directly). */
static PyObject *s_do_iset(cp_store *self, const cp_sig *sig,
                           PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames, bool replace) {
    PyObject *a[4];
    unsigned flags;
    if (cp_args(self, sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    cp_batch b;
    cp_batch_init(&b);
    cp_saved_err err;
    int rc = cp_batch_one(&b, a[0], a[1]);
    if (rc == 0 && replace)
        CP_CALL_SAVED(self, rc, s_replace(self->s, b.keys, b.vals, flags, &err),
                      &err);
    else if (rc == 0)
        CP_CALL(self, rc, pd_iset(self->s, 1, b.keys, b.vals, flags));
    cp_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_store_iset(cp_store *self, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {
        "iset", {"key", "value", "lock", "fsync"}, 2, 2, 3, false};
    return s_do_iset(self, &sig, args, nargs, kwnames, false);
}

static PyObject *s_store__iset(cp_store *self, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {
        "_iset", {"key", "value", "lock", "fsync"}, 2, 2, 3, false};
    return s_do_iset(self, &sig, args, nargs, kwnames, true);
}

static PyObject *s_store_drop(cp_store *self, PyObject *Py_UNUSED(ignored)) {
    int rc;
    CP_CALL(self, rc, pd_drop(self->s, 0));
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
static PyObject *s_store_keys(cp_store *self, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"keys", {"lock"}, 0, 0, -1, false};
    PyObject *a[1];
    unsigned flags;
    if (cp_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    pd_keylist *kl = NULL;
    int rc;
    CP_CALL(self, rc, pd_keys(self->s, &kl, flags));
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

static PyObject *s_store_reduce(cp_store *self, PyObject *Py_UNUSED(ignored)) {
    PyErr_Format(PyExc_TypeError, "cannot pickle '%.100s' object",
                 Py_TYPE(self)->tp_name);
    return NULL;
}

PyMethodDef cp_store_methods[] = {
    {"append", CP_FASTCALL(s_store_append),
     "append(data, lock=True, fsync=False): append each value of the mapping "
     "to its key"},
    {"_append_framed", CP_FASTCALL(s_store_append_framed),
     "_append_framed(data, lock=True): append each value as one frame "
     "(8-byte little-endian length + bytes), without copying"},
    {"get", CP_FASTCALL(s_store_get),
     "get(keys, lock=True): bytes for a key, a list for a (nested) list"},
    {"_get", CP_FASTCALL(s_store__get), "_get(keys, lock=True): list of bytes"},
    {"_get_views", CP_FASTCALL(s_store__get_views),
     "_get_views(keys, lock=True): list of read-only memoryviews (no copy)"},
    {"iget", (PyCFunction)s_store_iget, METH_O,
     "iget(key): get one key without taking the lock"},
    {"delete", CP_FASTCALL(s_store_delete), "delete(keys, lock=True)"},
    {"_delete", CP_FASTCALL(s_store__delete), "_delete(keys, lock=True)"},
    {"iset", CP_FASTCALL(s_store_iset),
     "iset(key, value, lock=True): set a key once per handle"},
    {"_iset", CP_FASTCALL(s_store__iset),
     "_iset(key, value, lock=True): replace the key's content (not once)"},
    {"drop", (PyCFunction)s_store_drop, METH_NOARGS, "drop(): delete all"},
    {"keys", CP_FASTCALL(s_store_keys), "keys(lock=True): the stored keys"},
    {"close", (PyCFunction)cp_store_close, METH_NOARGS,
     "close(): release the handle (idempotent)"},
    {"attempt", CP_FASTCALL(cp_store_attempt),
     "attempt(writer, attempt): begin an Attempt (attempt.c)"},
    {"__reduce__", (PyCFunction)s_store_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};
