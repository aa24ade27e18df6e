/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The pickle writer of cpartd.pandas and cpartd.numpy.  An object block is
 * stored as partd stores it: the list of its items pickled, framed, then
 * compressed as text (blocks.c).  The pickle is written here for lists of
 * str, bytes, int, float, bool and None (what string columns hold), as
 * pickle.loads reads it; any other item makes the caller fall back to
 * Python's pickle.
 */
#include "cpartd.h"

#include <string.h>

static void s_le(unsigned char *p, uint64_t v, int n) {
    for (int k = 0; k < n; k++) p[k] = (unsigned char)(v >> (8 * k));
}

/* Appends the nh bytes at head, then the n bytes at data.  0 or -1 (no
 * memory). */
static int s_put(pd__buf *b, const unsigned char *head, size_t nh,
                 const void *data, size_t n) {
    if (n > SIZE_MAX - nh || pd__buf_reserve(b, nh + n)) return -1;
    unsigned char *p = b->p + b->len;
    memcpy(p, head, nh);
    if (n) memcpy(p + nh, data, n);
    b->len += nh + n;
    b->p[b->len] = 0;
    return 0;
}

/* Appends opcode `op` then the n bytes at raw (n <= 9). */
static int s_pk_op(pd__buf *b, unsigned char op, const void *raw, size_t n) {
    unsigned char h[10] = {op};
    if (n) memcpy(h + 1, raw, n);
    return s_put(b, h, 1 + n, NULL, 0);
}

/* Appends op + an nlen-byte little-endian length + the len bytes of data. */
static int s_pk_sized(pd__buf *b, unsigned char op, int nlen, const void *data,
                      size_t len) {
    unsigned char h[9] = {op};
    s_le(h + 1, (uint64_t)len, nlen);
    return s_put(b, h, 1 + (size_t)nlen, data, len);
}

static int s_pk_str_like(pd__buf *b, const char *data, size_t len,
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
int cp_text_pickle(PyObject *list, pd__buf *b) {
    Py_ssize_t n = PyList_GET_SIZE(list);
    size_t start = b->len;
    /* The frame header (filled in at the end), PROTO 4, EMPTY_LIST, and
     * MARK when there are items. */
    static const unsigned char head[12] = {0, 0, 0,    0, 0,   0,
                                           0, 0, 0x80, 4, ']', '('};
    if (s_put(b, head, n > 0 ? 12 : 11, NULL, 0) < 0) goto nomem;
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
    /* APPENDS (when there are items), STOP */
    const unsigned char *tail = (const unsigned char *)"e.";
    if (s_put(b, n > 0 ? tail : tail + 1, n > 0 ? 2 : 1, NULL, 0) < 0)
        goto nomem;
    s_le(b->p + start, b->len - start - 8, 8);
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* text_pickle(list): the pickle (protocol 4) of a list of str, bytes, int,
 * float, bool and None, as bytes; None for a list holding anything else. */
PyObject *cp_text_pickle_py(PyObject *Py_UNUSED(mod), PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "text_pickle takes a list");
        return NULL;
    }
    pd__buf b = PD__BUF_INIT;
    int rc = cp_text_pickle(arg, &b);
    PyObject *out = NULL;
    if (rc == 0)
        out = PyBytes_FromStringAndSize((const char *)b.p + 8,
                                        (Py_ssize_t)(b.len - 8));
    else if (rc == 1)
        out = Py_NewRef(Py_None);
    pd__buf_free(&b);
    return out;
}
