/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The store types over libpartd's stores: Dict (pd_dict), File (pd_file),
 * Buffer (pd_buffer over two cpartd stores) and Compressed (the Encode
 * layer with a built-in codec over a cpartd store).
 */
#include "cpartd.h"

#include <string.h>

/* ------------------------------------------------------------------ Dict */

static int s_dict_init(cp_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Dict", kwlist)) return -1;
    if (cp_reinit(self) < 0) return -1;
    pd_store *s = NULL;
    int rc = pd_dict_open(&s);
    return cp_adopt(self, rc, s, "Dict");
}

CP_STORE_GETTER(s_dict_nbytes, PyLong_FromUnsignedLongLong, pd_dict_nbytes)

static PyGetSetDef s_dict_getset[] = {
    {"nbytes", (getter)s_dict_nbytes, NULL, "bytes of values held", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject cp_DictType =
    CP_STORE_TYPE("Dict", "Dict(): an in-memory store (libpartd pd_dict).",
                  s_dict_init, NULL, s_dict_getset);

/* ------------------------------------------------------------------ File */

static int s_file_init(cp_store *self, PyObject *args, PyObject *kwds) {
    return cp_dir_store_init(self, args, kwds, "File", pd_file_open,
                             PD_FILE_CREATE, PD_FILE_FSYNC);
}

/* The store's root as libpartd resolved it (realpath). */
CP_STORE_GETTER(s_file_root, PyUnicode_DecodeFSDefault, pd_file_path)

/* _relname(key): the path of key's file relative to the root. */
static PyObject *s_file_relname(cp_store *self, PyObject *key) {
    if (cp_check_open(self) < 0) return NULL;
    cp_batch b = {0};
    PyObject *ret = NULL;
    char stackbuf[512], *buf = stackbuf;
    if (cp_batch_one(&b, key, NULL) < 0) goto out;
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
    cp_batch_free(&b);
    return ret;
}

static PyObject *s_file_set_max_fds(cp_store *self, PyObject *arg) {
    if (cp_check_open(self) < 0) return NULL;
    size_t n = PyLong_AsSize_t(arg);
    if (n == (size_t)-1 && PyErr_Occurred()) return NULL;
    int rc = pd_file_set_max_fds(self->s, n);
    if (rc) return cp_raise(self->s, rc);
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

PyTypeObject cp_FileType = CP_STORE_TYPE(
    "File", "File(path, fsync=False): a directory store (pd_file).",
    s_file_init, s_file_methods, s_file_getset);

/* ---------------------------------------------------------------- Buffer */

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

static int s_buffer_init(cp_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fast", "slow", "available_memory", NULL};
    PyObject *fast, *slow, *mem = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:Buffer", kwlist, &fast,
                                     &slow, &mem))
        return -1;
    uint64_t limit = 1000000000;
    if (mem && s_memory_arg(mem, &limit) < 0) return -1;
    if (cp_check_inner(fast, "fast") < 0 || cp_check_inner(slow, "slow") < 0)
        return -1;
    if (fast == slow) {
        PyErr_SetString(PyExc_ValueError,
                        "cpartd: Buffer's fast and slow must be different "
                        "stores");
        return -1;
    }
    if (cp_reinit(self) < 0) return -1;
    Py_CLEAR(self->inner[0]);
    Py_CLEAR(self->inner[1]);
    cp_store *f = (cp_store *)fast, *sl = (cp_store *)slow;
    pd_store *s = NULL, *fs = f->s, *ss = sl->s;
    int rc = pd_buffer_open(&s, &fs, &ss, limit, PD_BORROW);
    if (cp_adopt(self, rc, s, "Buffer") < 0) return -1;
    self->inner[0] = Py_NewRef(fast);
    self->inner[1] = Py_NewRef(slow);
    f->borrowers++;
    sl->borrowers++;
    return 0;
}

CP_STORE_GETTER(s_buffer_usage, PyLong_FromUnsignedLongLong,
                pd_buffer_memory_usage)

CP_STORE_GETTER(s_buffer_limit, PyLong_FromUnsignedLongLong,
                pd_buffer_memory_limit)

static PyObject *s_buffer_inner(cp_store *self, void *c) {
    PyObject *o = self->inner[c ? 1 : 0];
    if (!o) {
        PyErr_SetString(PyExc_AttributeError, "cpartd: Buffer not open");
        return NULL;
    }
    return Py_NewRef(o);
}

/* flush(keys=None, block=None): move keys (all when None) to slow. */
static PyObject *s_buffer_flush(cp_store *self, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *kwnames) {
    static const cp_sig sig = {"flush", {"keys", "block", "lock"}, 0, 2, -1,
                               false};
    PyObject *a[3];
    unsigned flags;
    if (cp_args(self, &sig, args, nargs, kwnames, a, &flags) < 0) return NULL;
    cp_batch b;
    cp_batch_init(&b);
    bool all = !a[0] || a[0] == Py_None;
    int rc = all ? 0 : cp_batch_from_keys(&b, a[0]);
    if (rc == 0)
        CP_CALL(self, rc, pd_buffer_flush(self->s, (size_t)b.n, b.keys, flags));
    cp_batch_free(&b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef s_buffer_methods[] = {
    {"flush", CP_FASTCALL(s_buffer_flush),
     "flush(keys=None): move keys (default: all) from fast to slow"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_buffer_getset[] = {
    {"memory_usage", (getter)s_buffer_usage, NULL, "bytes held in fast", NULL},
    {"available_memory", (getter)s_buffer_limit, NULL,
     "the limit past which keys spill to slow", NULL},
    {"fast", (getter)s_buffer_inner, NULL, "the fast store", NULL},
    {"slow", (getter)s_buffer_inner, NULL, "the slow store", (void *)1},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject cp_BufferType = CP_STORE_TYPE(
    "Buffer",
    "Buffer(fast, slow, available_memory=1e9): spills the largest "
    "keys from fast to slow past the memory limit (pd_buffer).",
    s_buffer_init, s_buffer_methods, s_buffer_getset);

/* ------------------------------------------------------------ Compressed */

static int s_compressed_init(cp_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"codec", "partd", "level", NULL};
    const char *codec;
    PyObject *inner;
    int level = PD_LEVEL_DEFAULT;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sO|i:Compressed", kwlist,
                                     &codec, &inner, &level))
        return -1;
    if (cp_check_inner(inner, "partd") < 0) return -1;
    if (cp_reinit(self) < 0) return -1;
    Py_CLEAR(self->inner[0]);
    cp_store *in = (cp_store *)inner;
    pd_store *s = NULL, *is = in->s;
    int rc = pd_compress_open(&s, &is, codec, level, PD_BORROW);
    if (cp_adopt(self, rc, s, "Compressed") < 0) return -1;
    self->inner[0] = Py_NewRef(inner);
    in->borrowers++;
    return 0;
}

CP_STORE_GETTER(s_compressed_torn, PyLong_FromUnsignedLongLong, pd_encode_torn)

CP_STORE_GETTER(s_compressed_notice, PyUnicode_FromString, pd_encode_notice)

static PyGetSetDef s_compressed_getset[] = {
    {"partd", (getter)s_buffer_inner, NULL, "the inner store", NULL},
    {"torn", (getter)s_compressed_torn, NULL,
     "torn frames left out by gets on this handle", NULL},
    {"notice", (getter)s_compressed_notice, NULL,
     "the last torn frame left out, or ''", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject cp_CompressedType =
    CP_STORE_TYPE("Compressed",
                  "Compressed(codec, partd, level=default): libpartd's Encode "
                  "layer with a built-in codec over a cpartd store.",
                  s_compressed_init, NULL, s_compressed_getset);
