/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The compact encoding of object blocks (cpartd's own PandasBlocks frames,
 * docs/pandas-blocks.md): the items of an object array that are all str,
 * bytes, float or None, as a count, a tag byte per item, a 32-bit length
 * per item and the items' bytes back to back.  No pickle: written from the
 * objects' own memory, read back straight into the slots of the result's
 * object array.
 *
 * Object arrays do not export buffers, so their slots are reached through
 * numpy's __array_interface__ (the data address, typestr '|O', C order);
 * only an exact numpy.ndarray is accepted.  Reading validates every piece
 * (sizes, tags, ASCII) without the GIL before any object is made; making
 * the objects and reading them to write needs the GIL.
 */
#include "cpartd.h"

#include "encode/codec.h" /* pd__le64, pd__put_le64 */

#include <string.h>

/* Item tags. */
enum {
    S_NONE = 0,
    S_ASCII = 1, /* str, every byte < 0x80 */
    S_UTF8 = 2,  /* str, UTF-8 */
    S_BYTES = 3,
    S_FLOAT = 4, /* a Python float: 8 bytes, IEEE 754 binary64 LE */
    S_NTAGS
};

static const unsigned char s_magic[4] = {'C', 'P', 'S', 1};
#define S_HEAD 12  /* magic, then the 8-byte little-endian count */
#define S_AHEAD 16 /* items prefetched ahead when packing */

/* The PyObject slots of an exact numpy object ndarray in C order: 0 with
 * *slots and *n, or -1 with an exception (what names the argument). */
static int s_slots(PyObject *arr, bool writable, const char *what,
                   PyObject ***slots, Py_ssize_t *n) {
    if (strcmp(Py_TYPE(arr)->tp_name, "numpy.ndarray") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy object array", what);
        return -1;
    }
    PyObject *ai = PyObject_GetAttrString(arr, "__array_interface__");
    if (!ai) return -1;
    int rc = -1;
    PyObject *typestr =
        PyDict_Check(ai) ? PyDict_GetItemString(ai, "typestr") : NULL;
    PyObject *strides =
        PyDict_Check(ai) ? PyDict_GetItemString(ai, "strides") : NULL;
    PyObject *data = PyDict_Check(ai) ? PyDict_GetItemString(ai, "data") : NULL;
    PyObject *shape =
        PyDict_Check(ai) ? PyDict_GetItemString(ai, "shape") : NULL;
    if (!typestr || !PyUnicode_Check(typestr) ||
        PyUnicode_CompareWithASCIIString(typestr, "|O") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy object array", what);
        goto done;
    }
    if (strides && strides != Py_None) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous", what);
        goto done;
    }
    if (!data || !PyTuple_Check(data) || PyTuple_GET_SIZE(data) != 2 ||
        !shape || !PyTuple_Check(shape)) {
        PyErr_Format(PyExc_TypeError, "%s: an unexpected __array_interface__",
                     what);
        goto done;
    }
    if (writable && PyObject_IsTrue(PyTuple_GET_ITEM(data, 1))) {
        PyErr_Format(PyExc_ValueError, "%s is read-only", what);
        goto done;
    }
    Py_ssize_t count = 1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(shape); i++) {
        Py_ssize_t d = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, i));
        if (d < 0 && PyErr_Occurred()) goto done;
        if (d < 0 || (d && count > PY_SSIZE_T_MAX / d)) {
            PyErr_Format(PyExc_ValueError, "%s: a bad shape", what);
            goto done;
        }
        count *= d;
    }
    void *p = PyLong_AsVoidPtr(PyTuple_GET_ITEM(data, 0));
    if (!p && PyErr_Occurred()) goto done;
    *slots = p;
    *n = count;
    rc = 0;
done:
    Py_DECREF(ai);
    return rc;
}

/* An item's tag and bytes: 0, or 1 when it is of a type not encoded here
 * (or a str with lone surrogates, or longer than a 32-bit length). */
static inline int s_item(PyObject *o, unsigned char *tag, const char **data,
                         size_t *len, unsigned char fbuf[8]) {
    if (PyUnicode_CheckExact(o)) {
        if (PyUnicode_IS_ASCII(o)) {
            *tag = S_ASCII;
            *data = (const char *)PyUnicode_DATA(o);
            *len = (size_t)PyUnicode_GET_LENGTH(o);
        } else {
            Py_ssize_t n;
            *data = PyUnicode_AsUTF8AndSize(o, &n);
            if (!*data) { /* lone surrogates: left to pickle */
                PyErr_Clear();
                return 1;
            }
            *tag = S_UTF8;
            *len = (size_t)n;
        }
    } else if (o == Py_None) {
        *tag = S_NONE;
        *data = NULL;
        *len = 0;
    } else if (PyBytes_CheckExact(o)) {
        *tag = S_BYTES;
        *data = PyBytes_AS_STRING(o);
        *len = (size_t)PyBytes_GET_SIZE(o);
    } else if (PyFloat_CheckExact(o)) {
        if (PyFloat_Pack8(PyFloat_AS_DOUBLE(o), (char *)fbuf, 1) < 0) {
            PyErr_Clear();
            return 1;
        }
        *tag = S_FLOAT;
        *data = (const char *)fbuf;
        *len = 8;
    } else {
        return 1;
    }
    return *len > UINT32_MAX ? 1 : 0;
}

/* strings_pack(arr): the compact encoding of the items of arr (an exact,
 * C-contiguous numpy object array) in C order, as bytes; None when an item
 * is not a str, bytes, float or None (the caller pickles those). */
PyObject *cp_strings_pack(PyObject *Py_UNUSED(mod), PyObject *arr) {
    PyObject **slots;
    Py_ssize_t n;
    if (s_slots(arr, false, "strings_pack: arr", &slots, &n) < 0) return NULL;
    /* Pass 1: the size (and every item's type checked). */
    size_t total = 0, head;
    if (__builtin_mul_overflow((size_t)n, 5, &head) ||
        __builtin_add_overflow(head, S_HEAD, &head))
        return PyErr_NoMemory();
    total = head;
    unsigned char tag, fbuf[8];
    const char *data;
    size_t len;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* The items are scattered on the heap (a groupby's take): fetch
         * ahead, the loop is bound by those misses. */
        if (i + S_AHEAD < n) __builtin_prefetch(slots[i + S_AHEAD]);
        if (s_item(slots[i], &tag, &data, &len, fbuf)) Py_RETURN_NONE;
        if (__builtin_add_overflow(total, len, &total)) return PyErr_NoMemory();
    }
    if (total > PY_SSIZE_T_MAX) return PyErr_NoMemory();
    /* Pass 2: the bytes.  Nothing between the passes runs Python code
     * (no object allocated is tracked by the GC), but the sizes are
     * checked again all the same. */
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!out) return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(o, s_magic, 4);
    pd__put_le64(o + 4, (uint64_t)n);
    unsigned char *tags = o + S_HEAD, *lens = tags + n, *dst = o + head;
    size_t left = total - head;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s_item(slots[i], &tag, &data, &len, fbuf) || len > left) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_RuntimeError,
                            "strings_pack: the array changed while it was "
                            "encoded");
            return NULL;
        }
        tags[i] = tag;
        for (int k = 0; k < 4; k++)
            lens[4 * i + k] = (unsigned char)(len >> (8 * k));
        if (len) memcpy(dst, data, len);
        dst += len;
        left -= len;
    }
    return out;
}

/* One piece to decode, checked without the GIL. */
typedef struct s_piece {
    Py_buffer view;
    size_t want; /* items its header must say */
    const unsigned char *tags, *lens, *data;
} s_piece;

static uint32_t s_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Checks that p is a whole, valid encoding of p->want items: NULL, or the
 * reason (a static string).  No Python API. */
static const char *s_check(s_piece *p) {
    const unsigned char *b = p->view.buf;
    size_t size = (size_t)p->view.len;
    if (size < S_HEAD || memcmp(b, s_magic, 4) != 0)
        return "not a cpartd string block (bad magic)";
    uint64_t n = pd__le64(b + 4);
    if (n != p->want) return "its item count is not its header's";
    if (n > (size - S_HEAD) / 5) return "its lengths run past its end";
    p->tags = b + S_HEAD;
    p->lens = p->tags + n;
    p->data = p->lens + 4 * n;
    size_t left = size - S_HEAD - 5 * (size_t)n;
    const unsigned char *d = p->data;
    for (size_t i = 0; i < n; i++) {
        uint32_t len = s_le32(p->lens + 4 * i);
        unsigned char tag = p->tags[i];
        if (tag >= S_NTAGS) return "an unknown item tag";
        if ((tag == S_NONE && len) || (tag == S_FLOAT && len != 8))
            return "a length its tag does not allow";
        if (len > left) return "an item runs past its end";
        if (tag == S_ASCII) {
            unsigned char any = 0;
            for (uint32_t k = 0; k < len; k++) any |= d[k];
            if (any & 0x80) return "an ASCII item that is not ASCII";
        }
        d += len;
        left -= len;
    }
    if (left) return "bytes after its last item";
    return NULL;
}

/* The object an item stands for (a new reference), or NULL with an
 * exception. */
static PyObject *s_object(unsigned char tag, const unsigned char *d,
                          uint32_t len) {
    switch (tag) {
    case S_ASCII: {
        PyObject *u = PyUnicode_New(len, 127);
        if (u && len) memcpy(PyUnicode_1BYTE_DATA(u), d, len);
        return u;
    }
    case S_UTF8: return PyUnicode_DecodeUTF8((const char *)d, len, "strict");
    case S_BYTES: return PyBytes_FromStringAndSize((const char *)d, len);
    case S_FLOAT: {
        double v = PyFloat_Unpack8((const char *)d, 1);
        if (v == -1.0 && PyErr_Occurred()) return NULL;
        return PyFloat_FromDouble(v);
    }
    default: return Py_NewRef(Py_None);
    }
}

/* strings_into(pieces, out, ncols, rows, start=0): decodes pieces[i], each
 * the compact encoding of an array of ncols rows of rows[i] items (C
 * order), into out, an object array of ncols rows of T items (C order,
 * made by np.empty), piece i at column start + rows[0] + ... + rows[i-1]:
 * the concatenation of the pieces along their last axis.  Every piece is
 * checked (without the GIL) before any item is made; a bad one raises
 * CorruptError naming it, and so does an item that is not valid UTF-8. */
PyObject *cp_strings_into(PyObject *Py_UNUSED(mod), PyObject *args) {
    PyObject *pieces, *outobj, *rows;
    Py_ssize_t ncols, start = 0;
    if (!PyArg_ParseTuple(args, "O!OnO!|n:strings_into", &PyList_Type, &pieces,
                          &outobj, &ncols, &PyList_Type, &rows, &start))
        return NULL;
    Py_ssize_t np = PyList_GET_SIZE(pieces);
    if (ncols < 1 || start < 0 || PyList_GET_SIZE(rows) != np) {
        PyErr_SetString(PyExc_ValueError,
                        "strings_into: ncols >= 1, start >= 0, one row count "
                        "per piece");
        return NULL;
    }
    PyObject **slots;
    Py_ssize_t nout;
    if (s_slots(outobj, true, "strings_into: out", &slots, &nout) < 0)
        return NULL;
    if (nout % ncols) {
        PyErr_SetString(PyExc_ValueError,
                        "strings_into: out does not hold ncols rows");
        return NULL;
    }
    size_t width = (size_t)(nout / ncols);
    s_piece *ps = PyMem_Calloc(np ? (size_t)np : 1, sizeof *ps);
    if (!ps) return PyErr_NoMemory();
    PyObject *ret = NULL;
    Py_ssize_t got = 0;
    size_t total = (size_t)start;
    for (; got < np; got++) {
        size_t r = PyLong_AsSize_t(PyList_GET_ITEM(rows, got));
        if (r == (size_t)-1 && PyErr_Occurred()) goto done;
        if (__builtin_add_overflow(total, r, &total) || total > width) {
            PyErr_SetString(PyExc_ValueError,
                            "strings_into: the pieces do not fit in out");
            goto done;
        }
        ps[got].want = r * (size_t)ncols; /* <= nout: no overflow */
        if (PyObject_GetBuffer(PyList_GET_ITEM(pieces, got), &ps[got].view,
                               PyBUF_SIMPLE) < 0)
            goto done;
    }
    Py_ssize_t bad = -1;
    const char *why = NULL;
    Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < np && !why; i++) {
        why = s_check(&ps[i]);
        if (why) bad = i;
    }
    Py_END_ALLOW_THREADS if (why) {
        PyErr_Format(cp_CorruptError,
                     "cpartd: PandasBlocks get: piece %zd of a string block "
                     "(%zd bytes): %s",
                     bad, ps[bad].view.len, why);
        goto done;
    }
    size_t off = (size_t)start;
    for (Py_ssize_t i = 0; i < np; i++) {
        s_piece *p = &ps[i];
        size_t nr = p->want / (size_t)ncols, k = 0;
        const unsigned char *d = p->data;
        for (Py_ssize_t c = 0; c < ncols; c++) {
            PyObject **dst = slots + (size_t)c * width + off;
            for (size_t r = 0; r < nr; r++, k++) {
                uint32_t len = s_le32(p->lens + 4 * k);
                PyObject *o = s_object(p->tags[k], d, len);
                if (!o) {
                    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                        PyErr_Clear();
                        PyErr_Format(cp_CorruptError,
                                     "cpartd: PandasBlocks get: piece %zd of "
                                     "a string block: item %zu is not valid "
                                     "UTF-8",
                                     i, k);
                    }
                    goto done;
                }
                PyObject *old = dst[r];
                dst[r] = o;
                Py_XDECREF(old);
                d += len;
            }
        }
        off += nr;
    }
    ret = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&ps[i].view);
    PyMem_Free(ps);
    return ret;
}
