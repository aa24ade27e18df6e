/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The module cpartd._cpartd: its functions, constants and exceptions, and
 * PyInit__cpartd, which readies the types of the other files.
 */
#include "cpartd.h"

PyObject *cp_CorruptError;
PyObject *cp_ProtocolError;

static PyObject *s_codecs(PyObject *Py_UNUSED(mod),
                          PyObject *Py_UNUSED(ignored)) {
    const char *const *names = pd_codec_names();
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && names && names[i]; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (!s || PyList_Append(list, s) < 0) Py_CLEAR(list);
        Py_XDECREF(s);
    }
    return list;
}

static PyMethodDef s_module_methods[] = {
    {"frame", (PyCFunction)cp_frame, METH_O,
     "frame(b): 8-byte little-endian length + b (partd.utils.frame)"},
    {"framesplit", CP_FASTCALL(cp_framesplit),
     "framesplit(b, torn='error'): list of memoryviews of the frames"},
    {"text_pickle", (PyCFunction)cp_text_pickle_py, METH_O,
     "text_pickle(list): its pickle (protocol 4), written in C, or None when "
     "an item is not str, bytes, int, float, bool or None"},
    {"blocks_frames", (PyCFunction)cp_blocks_frames, METH_VARARGS,
     "blocks_frames(header, parts): frame(header) + frame(codec(data)) for "
     "each (codec, data, typesize) part; None if an object list needs "
     "Python's pickle"},
    {"decompress", (PyCFunction)(void (*)(void))cp_decompress_py,
     METH_VARARGS | METH_KEYWORDS,
     "decompress(codec, data, out=None, offset=0): bytes, or the count "
     "written into out at offset"},
    {"concat_into", (PyCFunction)cp_concat_into, METH_VARARGS,
     "concat_into(codec, pieces, out, ncols, itemsize, rows): decompress "
     "the pieces into out, concatenated along their last axis"},
    {"strings_pack", (PyCFunction)cp_strings_pack, METH_O,
     "strings_pack(arr): the compact encoding of an object array of str, "
     "bytes, float and None, or None when it holds anything else"},
    {"strings_into", (PyCFunction)cp_strings_into, METH_VARARGS,
     "strings_into(pieces, out, ncols, rows, start=0): decode compact "
     "pieces into the object array out, concatenated along their last "
     "axis"},
    {"_shutdown", (PyCFunction)cp_shutdown, METH_NOARGS,
     "_shutdown(): servers stop calling Python to log (interpreter exit)"},
    {"curve_public", (PyCFunction)cp_curve_public_py, METH_O,
     "curve_public(secret): the CURVE public key of a z85 secret key"},
    {"curve_keypair", (PyCFunction)cp_curve_keypair_py, METH_NOARGS,
     "curve_keypair(): a new CURVE (public, secret) pair, z85 text"},
    {"fanout_index", (PyCFunction)cp_fanout_index, METH_VARARGS,
     "fanout_index(key, n): the store of n that a Fanout puts key in"},
    {"codecs", (PyCFunction)s_codecs, METH_NOARGS,
     "codecs(): libpartd's built-in codec names"},
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
    if (cp_blocks_init() < 0) return NULL;
    PyObject *m = PyModule_Create(&s_module);
    if (!m) return NULL;
    cp_CorruptError = PyErr_NewExceptionWithDoc(
        "cpartd.CorruptError",
        "Stored data is malformed (libpartd PD_ERR_CORRUPT).  A ValueError: "
        "the bytes read are not a valid value.",
        PyExc_ValueError, NULL);
    cp_ProtocolError = PyErr_NewExceptionWithDoc(
        "cpartd.ProtocolError",
        "A peer sent a malformed message (libpartd PD_ERR_PROTOCOL).",
        PyExc_ConnectionError, NULL);
    if (!cp_CorruptError || !cp_ProtocolError ||
        PyModule_AddObjectRef(m, "CorruptError", cp_CorruptError) < 0 ||
        PyModule_AddObjectRef(m, "ProtocolError", cp_ProtocolError) < 0 ||
        s_add_type(m, &cp_StoreType, "Store") < 0 ||
        s_add_type(m, &cp_LockType, "Lock") < 0 ||
        s_add_type(m, &cp_ResultType, "Result") < 0 ||
        s_add_type(m, &cp_DictType, "Dict") < 0 ||
        s_add_type(m, &cp_FileType, "File") < 0 ||
        s_add_type(m, &cp_LogType, "Log") < 0 ||
        s_add_type(m, &cp_BufferType, "Buffer") < 0 ||
        s_add_type(m, &cp_ClientType, "Client") < 0 ||
        s_add_type(m, &cp_ServerType, "Server") < 0 ||
        s_add_type(m, &cp_CompressedType, "Compressed") < 0 ||
        s_add_type(m, &cp_FanoutType, "Fanout") < 0 ||
        s_add_type(m, &cp_NamespaceType, "Namespace") < 0 ||
        cp_attempt_init(m) < 0 ||
        PyModule_AddStringConstant(m, "libpartd_version", pd_version_string()) <
            0 ||
        PyModule_AddIntConstant(m, "LEVEL_DEFAULT", -1000) < 0 ||
        PyModule_AddIntConstant(m, "CODEC_RAW", CP_CODEC_RAW) < 0 ||
        PyModule_AddIntConstant(m, "CODEC_BLOSC", CP_CODEC_BLOSC) < 0 ||
        PyModule_AddIntConstant(m, "CODEC_SNAPPY", CP_CODEC_SNAPPY) < 0 ||
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
