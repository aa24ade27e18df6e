/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Log store type (pd_log): a directory of append-only segments, one
 * per writer, for shuffles with many keys.  Its Python class (cpartd.Log)
 * adds the temporary directory and pickling by path.
 */
#include "cpartd.h"

static int s_log_init(cp_store *self, PyObject *args, PyObject *kwds) {
    return cp_dir_store_init(self, args, kwds, "Log", pd_log_open,
                             PD_LOG_CREATE, PD_LOG_FSYNC);
}

/* The store's directory as libpartd holds it. */
CP_STORE_GETTER(s_log_root, PyUnicode_DecodeFSDefault, pd_log_path)

CP_STORE_GETTER(s_log_torn, PyLong_FromUnsignedLongLong, pd_log_torn)

CP_STORE_GETTER(s_log_notice, PyUnicode_FromString, pd_log_notice)

/* compact(salvage=False): rewrite the live data grouped by key. */
static PyObject *s_log_compact(cp_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"salvage", NULL};
    int salvage = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:compact", kwlist,
                                     &salvage))
        return NULL;
    if (cp_check_open(self) < 0) return NULL;
    int rc;
    CP_CALL(self, rc, pd_log_compact(self->s, salvage ? PD_LOG_SALVAGE : 0));
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef s_log_methods[] = {
    {"compact", (PyCFunction)(void (*)(void))s_log_compact,
     METH_VARARGS | METH_KEYWORDS,
     "compact(salvage=False): rewrite the live data grouped by key, "
     "reclaiming dead space (salvage: drop damaged data instead of "
     "failing)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_log_getset[] = {
    {"_root", (getter)s_log_root, NULL, "the store's directory", NULL},
    {"torn", (getter)s_log_torn, NULL,
     "torn records (left by writers that died) left out by this handle", NULL},
    {"notice", (getter)s_log_notice, NULL,
     "the last torn record left out, or ''", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject cp_LogType = CP_STORE_TYPE(
    "Log",
    "Log(path, fsync=False): a directory of append-only segments, "
    "one per writer (pd_log).",
    s_log_init, s_log_methods, s_log_getset);
