/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Keys and values from Python to libpartd (cp_batch).
 *
 * Keys are converted as partd's token() names files: str is its UTF-8
 * bytes, an int (or anything with __index__) is str(key), bytes are
 * themselves, and a tuple is a tuple key whose parts are its items, nested
 * tuples flattened (token(('a', ('b', 'c'))) is 'a/b/c').  Other types are a
 * TypeError.
 */
#include "cpartd.h"

#include <math.h>
#include <string.h>

void cp_batch_init(cp_batch *b) {
    memset(b, 0, offsetof(cp_batch, inline_objs));
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

static const char s_d2[] = "00010203040506070809"
                           "10111213141516171819"
                           "20212223242526272829"
                           "30313233343536373839"
                           "40414243444546474849"
                           "50515253545556575859"
                           "60616263646566676869"
                           "70717273747576777879"
                           "80818283848586878889"
                           "90919293949596979899";

/* The decimal text of v, written at the end of num (CP_NUM bytes), two
 * digits per step; the partition numbers most keys are (0..9999) without a
 * loop. */
static inline pd_bytes s_int_text(long long v, char *num) {
    char *end = num + CP_NUM, *p = end;
    unsigned long long u =
        v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    if (u < 10000) {
        unsigned w = (unsigned)u;
        if (w >= 100) {
            p -= 2;
            memcpy(p, s_d2 + 2 * (w % 100), 2);
            w /= 100;
        }
        if (w >= 10) {
            p -= 2;
            memcpy(p, s_d2 + 2 * w, 2);
        } else if (w || p == end) {
            *--p = (char)('0' + w);
        }
        if (v < 0) *--p = '-';
        return (pd_bytes){p, (size_t)(end - p)};
    }
    while (u >= 100) {
        size_t r = (size_t)(u % 100) * 2;
        u /= 100;
        p -= 2;
        memcpy(p, s_d2 + r, 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, s_d2 + 2 * u, 2);
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
static int s_str_key(cp_batch *b, PyObject *o, PyObject *s, pd_bytes *out) {
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
static int s_float_key(cp_batch *b, PyObject *o, pd_bytes *out) {
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
static int s_scalar_slow(cp_batch *b, PyObject *o, char *num, pd_bytes *out) {
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
static inline int s_scalar(cp_batch *b, PyObject *o, char *num, pd_bytes *out) {
    return s_quick_key(o, num, out) ? 0 : s_scalar_slow(b, o, num, out);
}

static int s_fill_parts(cp_batch *b, PyObject *t, Py_ssize_t *j) {
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

void cp_batch_free(cp_batch *b) {
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
    cp_batch_init(b);
}

/* Sizes b (after cp_batch_init) for n entries whose objs[] the caller
 * fills, counting them in nobjs. */
static int s_batch_begin(cp_batch *b, Py_ssize_t n, bool values) {
    b->n = n;
    b->values = values;
    size_t m = (size_t)n * (values ? 2 : 1);
    if (m <= 2 * CP_INLINE) {
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
static int s_batch_view(cp_batch *b, Py_ssize_t i, PyObject *v) {
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
static int s_batch_convert(cp_batch *b) {
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
                (nn + npp) * (CP_NUM + sizeof(PyObject *));
    if (b->values) sz += nn * sizeof(pd_bytes);
    char *mem = b->inline_mem;
    if (sz > CP_INLINE_MEM && !(mem = PyMem_Malloc(sz))) {
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
    b->num = (char(*)[CP_NUM])mem;

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
int cp_batch_from_mapping(cp_batch *b, PyObject *data) {
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
int cp_batch_from_keys(cp_batch *b, PyObject *seq) {
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
int cp_batch_one(cp_batch *b, PyObject *key, PyObject *value) {
    if (s_batch_begin(b, 1, value != NULL) < 0) return -1;
    b->objs[0] = Py_NewRef(key);
    if (value) b->objs[1] = Py_NewRef(value);
    b->nobjs = 1;
    return s_batch_convert(b);
}
