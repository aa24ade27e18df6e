/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * partd's framing (utils.frame and framesplit): an 8-byte little-endian
 * length, then that many bytes; split by libpartd's pd_frame_split, the
 * Encode layer's.
 */
#include "cpartd.h"

#include "encode/codec.h" /* pd__put_le64 */

#include <string.h>

/* frame(b): the 8-byte little-endian length of b, then b. */
PyObject *cp_frame(PyObject *Py_UNUSED(mod), PyObject *arg) {
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
    pd__put_le64(p, (uint64_t)v.len);
    memcpy(p + 8, v.buf, (size_t)v.len);
done:
    PyBuffer_Release(&v);
    return out;
}

typedef struct s_split {
    PyObject *mv;   /* the memoryview split */
    PyObject *list; /* the payloads so far */
} s_split;

/* pd_frame_split's callback: appends the payload's slice of mv; 1 (with
 * an exception) stops the split. */
static int s_slice(void *arg, const void *payload, size_t size,
                   uint64_t offset) {
    (void)payload;
    s_split *sp = arg;
    Py_ssize_t at = (Py_ssize_t)offset + PD_FRAME_HEADER;
    PyObject *slice = PySequence_GetSlice(sp->mv, at, at + (Py_ssize_t)size);
    int rc = slice ? PyList_Append(sp->list, slice) : -1;
    Py_XDECREF(slice);
    return rc < 0 ? 1 : 0;
}

/* framesplit(b, torn='error'): the payloads of the frames in b, as
 * memoryviews over b (no copy).  A last frame that runs past the end is a
 * torn tail: CorruptError, or left out with torn='drop'. */
PyObject *cp_framesplit(PyObject *Py_UNUSED(mod), PyObject *const *args,
                        Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"data", "torn"};
    PyObject *a[2] = {NULL, NULL};
    if (cp_parse("framesplit", args, nargs, kwnames, names, 2, 2, 1, false, a) <
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
    list = PyList_New(0);
    if (!list) goto fail;
    s_split sp = {mv, list};
    size_t n = (size_t)v->len, off = n;
    int rc = pd_frame_split(v->buf, n, s_slice, &sp, &off);
    if (rc == 0 || (rc == PD_ERR_CORRUPT && drop)) {
        Py_DECREF(mv);
        return list;
    }
    if (rc == PD_ERR_CORRUPT)
        PyErr_Format(cp_CorruptError,
                     "framesplit: frame at offset %zu runs past the end of the "
                     "%zu bytes (torn tail)",
                     off, n);
fail:
    Py_XDECREF(list);
    Py_DECREF(mv);
    return NULL;
}
