/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * ZeroMQ: Client (a store whose calls run on a server), Server (serves a
 * cpartd store) and the CURVE key helpers.
 */
#include "cpartd.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- Client */

/* Seconds (None: the library's default) to a client's timeout_ms. */
static int s_timeout_arg(PyObject *o, int *ms) {
    *ms = 0;
    if (!o || o == Py_None) return 0;
    double t = PyFloat_AsDouble(o);
    if (t == -1.0 && PyErr_Occurred()) return -1;
    if (!(t > 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "cpartd: timeout must be a number of seconds > 0, or "
                        "None for the default");
        return -1;
    }
    double m = t * 1000.0;
    /* At least 1 ms; past INT_MAX ms (~24 days, or inf) means "that long". */
    *ms = m >= (double)INT_MAX ? INT_MAX : m < 1.0 ? 1 : (int)(m + 0.999);
    return 0;
}

/* An address argument: str (UTF-8) or bytes, as new bytes without NUL. */
static PyObject *s_address_arg(PyObject *o, const char *what) {
    PyObject *b = NULL;
    if (PyUnicode_Check(o))
        b = PyUnicode_AsUTF8String(o);
    else if (PyBytes_Check(o))
        b = Py_NewRef(o);
    else
        PyErr_Format(PyExc_TypeError,
                     "cpartd: %s must be str or bytes, not "
                     "%.100s",
                     what, Py_TYPE(o)->tp_name);
    if (b && strlen(PyBytes_AS_STRING(b)) != (size_t)PyBytes_GET_SIZE(b)) {
        PyErr_Format(PyExc_ValueError, "cpartd: embedded NUL in %s", what);
        Py_CLEAR(b);
    }
    return b;
}

/* An optional z85 CURVE key argument (str or bytes) into buf[41]. */
static int s_curve_arg(PyObject *o, char buf[41], const char **out) {
    *out = NULL;
    if (!o || o == Py_None) return 0;
    PyObject *b = s_address_arg(o, "a CURVE key");
    if (!b) return -1;
    if (PyBytes_GET_SIZE(b) != PD_CURVE_KEY_LEN) {
        Py_DECREF(b);
        PyErr_SetString(PyExc_ValueError,
                        "cpartd: a CURVE key is 40 z85 characters");
        return -1;
    }
    memcpy(buf, PyBytes_AS_STRING(b), 41);
    Py_DECREF(b);
    *out = buf;
    return 0;
}

static int s_client_init(cp_store *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"address",          "timeout",      "sync",
                             "curve_server_key", "curve_public", "curve_secret",
                             "max_message",      "window",       NULL};
    PyObject *addr, *timeout = NULL, *skey = NULL, *pub = NULL, *sec = NULL;
    int sync = 0, window = 0;
    unsigned long long maxmsg = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OpOOOKi:Client", kwlist,
                                     &addr, &timeout, &sync, &skey, &pub, &sec,
                                     &maxmsg, &window))
        return -1;
    if (window < 0 || window > (int)PD_CLIENT_WINDOW_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "cpartd: Client window must be 1 to %u (0: the "
                     "default, %u), not %d",
                     PD_CLIENT_WINDOW_MAX, PD_CLIENT_WINDOW_DEFAULT, window);
        return -1;
    }
    pd_client_opts o = {0};
    char kbuf[3][41];
    if (s_timeout_arg(timeout, &o.timeout_ms) < 0 ||
        s_curve_arg(skey, kbuf[0], &o.curve_server_key) < 0 ||
        s_curve_arg(pub, kbuf[1], &o.curve_public) < 0 ||
        s_curve_arg(sec, kbuf[2], &o.curve_secret) < 0)
        return -1;
    o.max_message = maxmsg;
    o.window = (unsigned)window;
    o.flags = sync ? PD_CLIENT_SYNC : 0;
    PyObject *a = s_address_arg(addr, "address");
    if (!a) return -1;
    if (cp_reinit(self) < 0) {
        Py_DECREF(a);
        return -1;
    }
    pd_store *s = NULL;
    int rc;
    const char *ap = PyBytes_AS_STRING(a);
    CP_NOGIL(rc = pd_client_open(&s, ap, &o));
    Py_DECREF(a);
    return cp_adopt(self, rc, s, "Client");
}

/* Runs a client-only call (sync, close_server) with the GIL released. */
static PyObject *s_client_call(cp_store *self, int (*fn)(pd_store *)) {
    int rc;
    CP_CALL(self, rc, fn(self->s));
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_client_sync(cp_store *self, PyObject *Py_UNUSED(ignored)) {
    return s_client_call(self, pd_client_sync);
}

static PyObject *s_client_close_server(cp_store *self,
                                       PyObject *Py_UNUSED(ignored)) {
    return s_client_call(self, pd_client_close_server);
}

/* lease(name, seconds): pd_client_lease; name str (UTF-8) or bytes,
 * seconds a number >= 0 (0 releases). */
static PyObject *s_client_lease(cp_store *self, PyObject *args) {
    PyObject *name;
    double sec;
    if (!PyArg_ParseTuple(args, "Od:lease", &name, &sec)) return NULL;
    if (!(sec >= 0 && sec * 1000 <= 2147483647.0)) {
        PyErr_Format(PyExc_ValueError,
                     "lease: seconds must be 0 to 2147483.647, not %g", sec);
        return NULL;
    }
    PyObject *b = PyUnicode_Check(name) ? PyUnicode_AsUTF8String(name)
                                        : (Py_INCREF(name), name);
    if (!b) return NULL;
    if (!PyBytes_Check(b)) {
        Py_DECREF(b);
        PyErr_SetString(PyExc_TypeError, "lease: name must be str or bytes");
        return NULL;
    }
    uint32_t ms = (uint32_t)(sec * 1000 + 0.5);
    if (sec > 0 && ms == 0) ms = 1;
    int rc;
    CP_CALL(self, rc,
            pd_client_lease(self->s, PyBytes_AS_STRING(b),
                            (size_t)PyBytes_GET_SIZE(b), ms));
    Py_DECREF(b);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_client_ours(cp_store *self, void *Py_UNUSED(c)) {
    if (cp_check_open(self) < 0) return NULL;
    int r = pd_client_server_is_ours(self->s);
    if (r < 0) Py_RETURN_NONE;
    return PyBool_FromLong(r);
}

CP_STORE_GETTER(s_client_addr, PyUnicode_FromString, pd_client_address)

static PyMethodDef s_client_methods[] = {
    {"sync", (PyCFunction)s_client_sync, METH_NOARGS,
     "sync(): wait for the reply of the request in flight; raises its "
     "error"},
    {"close_server", (PyCFunction)s_client_close_server, METH_NOARGS,
     "close_server(): ask the server to stop, and wait for its answer"},
    {"lease", (PyCFunction)s_client_lease, METH_VARARGS,
     "lease(name, seconds): lease namespace `name` on the server (libpartd's "
     "only): unless renewed within `seconds`, the server drops its keys; 0 "
     "releases the lease"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_client_getset[] = {
    {"server_is_libpartd", (getter)s_client_ours, NULL,
     "True: the server is libpartd's; False: another (Python partd); None: "
     "no reply yet",
     NULL},
    {"_address", (getter)s_client_addr, NULL, "the address connected to", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject cp_ClientType =
    CP_STORE_TYPE("Client",
                  "Client(address, timeout=None, sync=False, ...): a store "
                  "whose calls run on a partd Server (pd_client_open).",
                  s_client_init, s_client_methods, s_client_getset);

/* ---------------------------------------------------------------- Server */

/* False once the interpreter is shutting down (cpartd.zmq's atexit hook):
 * the serving thread then logs to stderr instead of calling Python. */
static int s_py_alive = 1;

typedef struct s_server {
    PyObject_HEAD pd_server *srv;
    PyObject *store; /* the served cpartd store (borrowed by srv) */
    PyObject *log;   /* callable(level, line), or NULL: stderr */
    long pid;        /* the process that opened srv */
    PyObject *weakrefs;
} s_server;

/* pd_log_fn: from the serving thread (no GIL), or from the thread in
 * pd_server_open (GIL released around it). */
static void s_server_log(void *arg, int level, const char *line) {
    s_server *self = arg;
    if (!s_py_alive || _Py_IsFinalizing() || !self->log) {
        if (level <= PD_LOG_WARN) fprintf(stderr, "partd server: %s\n", line);
        return;
    }
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *text =
        PyUnicode_DecodeUTF8(line, (Py_ssize_t)strlen(line), "replace");
    PyObject *r =
        text ? PyObject_CallFunction(self->log, "iO", level, text) : NULL;
    if (r)
        Py_DECREF(r);
    else
        PyErr_WriteUnraisable(self->log);
    Py_XDECREF(text);
    PyGILState_Release(g);
}

static void s_server_release(s_server *self, bool raise) {
    /* Both taken with the GIL: a concurrent close() finds nothing to do,
     * and the store outlives the serving thread. */
    pd_server *srv = self->srv;
    PyObject *store = self->store;
    self->srv = NULL;
    self->store = NULL;
    int rc = 0;
    if (srv && self->pid == (long)getpid()) {
        CP_NOGIL(rc = pd_server_close(&srv));
    }
    /* In a forked child the parent's server (its thread, its sockets) is
     * not ours to close: it is left alone. */
    if (store) {
        ((cp_store *)store)->borrowers--;
        Py_DECREF(store);
    }
    if (rc && raise) cp_raise(NULL, rc);
}

static int s_server_init(s_server *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"store",        "bind",         "max_message",
                             "idle_timeout", "curve_secret", "no_close",
                             "log",          "log_level",    NULL};
    PyObject *store, *bind = Py_None, *sec = NULL, *log = Py_None;
    unsigned long long maxmsg = 0;
    double idle = 0;
    int no_close = 0, log_level = PD_LOG_INFO;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OKdOpOi:Server", kwlist,
                                     &store, &bind, &maxmsg, &idle, &sec,
                                     &no_close, &log, &log_level))
        return -1;
    if (cp_check_inner(store, "the served store") < 0) return -1;
    if (log != Py_None && !PyCallable_Check(log)) {
        PyErr_SetString(PyExc_TypeError, "cpartd: log must be callable");
        return -1;
    }
    if (!(idle >= 0)) {
        PyErr_SetString(PyExc_ValueError, "cpartd: idle_timeout must be >= 0");
        return -1;
    }
    if (self->srv) {
        PyErr_SetString(PyExc_ValueError, "cpartd: Server already open");
        return -1;
    }
    pd_server_opts o = {0};
    char kbuf[41];
    if (s_curve_arg(sec, kbuf, &o.curve_secret) < 0) return -1;
    PyObject *binds = NULL;
    const char **addrs = NULL;
    int ret = -1;
    if (bind != Py_None) {
        binds = PySequence_Fast(bind, "cpartd: bind must be a list of "
                                      "addresses");
        if (!binds) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(binds);
        addrs = PyMem_Calloc(n ? (size_t)n : 1, sizeof *addrs);
        if (!addrs) {
            PyErr_NoMemory();
            goto out;
        }
        /* Replace the items by their bytes (kept alive in a new list). */
        PyObject *conv = PyList_New(n);
        if (!conv) goto out;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *b = s_address_arg(PySequence_Fast_GET_ITEM(binds, i),
                                        "a bind address");
            if (!b) {
                Py_DECREF(conv);
                goto out;
            }
            PyList_SET_ITEM(conv, i, b);
            addrs[i] = PyBytes_AS_STRING(b);
        }
        Py_SETREF(binds, conv);
        o.bind = addrs;
        o.nbind = (size_t)n;
    }
    o.max_message = maxmsg;
    o.idle_timeout_ms = (uint64_t)(idle * 1000.0);
    o.flags = PD_BORROW | (no_close ? PD_SERVER_NO_CLOSE : 0);
    o.log = s_server_log;
    o.log_arg = self;
    o.log_level = log_level;
    Py_XSETREF(self->log, log == Py_None ? NULL : Py_NewRef(log));
    cp_store *st = (cp_store *)store;
    pd_store *ps = st->s;
    pd_server *srv = NULL;
    int rc;
    CP_NOGIL(rc = pd_server_open(&srv, &ps, &o));
    if (rc) {
        cp_raise(NULL, rc);
        goto out;
    }
    self->srv = srv;
    self->pid = (long)getpid();
    self->store = Py_NewRef(store);
    st->borrowers++;
    ret = 0;
out:
    PyMem_Free(addrs);
    Py_XDECREF(binds);
    return ret;
}

static int s_server_check(s_server *self) {
    if (self->srv) return 0;
    PyErr_SetString(PyExc_ValueError, "cpartd: Server is closed");
    return -1;
}

static PyObject *s_server_start(s_server *self, PyObject *Py_UNUSED(a)) {
    if (s_server_check(self) < 0) return NULL;
    int rc = pd_server_start(self->srv);
    if (rc) return cp_raise(NULL, rc);
    Py_RETURN_NONE;
}

static PyObject *s_server_stop(s_server *self, PyObject *Py_UNUSED(a)) {
    if (self->srv) pd_server_stop(self->srv);
    Py_RETURN_NONE;
}

/* wait(timeout=None): wait until the server stops serving (a `close`
 * command, stop(), the idle timeout) or timeout seconds pass, with the GIL
 * released; signals (KeyboardInterrupt) are checked every 10 ms.  Returns
 * True once it is not running. */
static PyObject *s_server_wait(s_server *self, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"timeout"};
    PyObject *a[1] = {NULL};
    if (cp_parse("wait", args, nargs, kwnames, names, 1, 1, 0, false, a) < 0)
        return NULL;
    double limit = -1;
    if (a[0] && a[0] != Py_None) {
        limit = PyFloat_AsDouble(a[0]);
        if (limit == -1.0 && PyErr_Occurred()) return NULL;
        if (limit < 0) limit = 0;
    }
    double waited = 0; /* a closed server has stopped: True at once */
    /* srv is only looked at with the GIL held: close() from another thread
     * sets self->srv to NULL (with the GIL) before it frees the server. */
    while (self->srv && pd_server_running(self->srv)) {
        if (limit >= 0 && waited >= limit) Py_RETURN_FALSE;
        Py_BEGIN_ALLOW_THREADS struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS waited += 0.01;
        if (PyErr_CheckSignals() < 0) return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *s_server_close(s_server *self, PyObject *Py_UNUSED(a)) {
    s_server_release(self, true);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *s_server_running(s_server *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->srv && pd_server_running(self->srv));
}

static PyObject *s_server_closed(s_server *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->srv == NULL);
}

static PyObject *s_server_addresses(s_server *self, void *Py_UNUSED(c)) {
    if (s_server_check(self) < 0) return NULL;
    PyObject *list = PyList_New(0);
    const char *a;
    for (size_t i = 0; list && (a = pd_server_address(self->srv, i)); i++) {
        PyObject *s = PyUnicode_FromString(a);
        if (!s || PyList_Append(list, s) < 0) Py_CLEAR(list);
        Py_XDECREF(s);
    }
    return list;
}

static PyObject *s_server_store(s_server *self, void *Py_UNUSED(c)) {
    return Py_NewRef(self->store ? self->store : Py_None);
}

static int s_server_traverse(s_server *self, visitproc visit, void *arg) {
    Py_VISIT(self->store);
    Py_VISIT(self->log);
    return 0;
}

static int s_server_clear(s_server *self) {
    s_server_release(self, false);
    Py_CLEAR(self->log);
    return 0;
}

static void s_server_dealloc(s_server *self) {
    cp_gc_dealloc((PyObject *)self, self->weakrefs, (inquiry)s_server_clear);
}

static PyMethodDef s_server_methods[] = {
    {"start", (PyCFunction)s_server_start, METH_NOARGS,
     "start(): serve in a new thread"},
    {"stop", (PyCFunction)s_server_stop, METH_NOARGS,
     "stop(): ask the server to stop after the request it is handling"},
    {"wait", CP_FASTCALL(s_server_wait),
     "wait(timeout=None): wait until it stops serving; True once stopped"},
    {"close", (PyCFunction)s_server_close, METH_NOARGS,
     "close(): stop, flush the store into its inner stores, release its "
     "lock, close the sockets (idempotent)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef s_server_getset[] = {
    {"running", (getter)s_server_running, NULL, "True while serving", NULL},
    {"closed", (getter)s_server_closed, NULL, "True once closed", NULL},
    {"addresses", (getter)s_server_addresses, NULL,
     "the addresses clients connect to (resolved: real ports, ipc paths)",
     NULL},
    {"store", (getter)s_server_store, NULL, "the served store", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject cp_ServerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cpartd._cpartd.Server",
    .tp_basicsize = sizeof(s_server),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Server(store, bind=None, ...): serves a cpartd store over "
              "ZeroMQ (pd_server_open).  bind: a list of addresses (None: a "
              "private ipc socket).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)s_server_init,
    .tp_dealloc = (destructor)s_server_dealloc,
    .tp_traverse = (traverseproc)s_server_traverse,
    .tp_clear = (inquiry)s_server_clear,
    .tp_weaklistoffset = offsetof(s_server, weakrefs),
    .tp_methods = s_server_methods,
    .tp_getset = s_server_getset,
};

/* _shutdown(): the interpreter is going down; servers log to stderr. */
PyObject *cp_shutdown(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(ignored)) {
    s_py_alive = 0;
    Py_RETURN_NONE;
}

PyObject *cp_curve_public_py(PyObject *Py_UNUSED(mod), PyObject *arg) {
    char sec[41], pub[41];
    const char *sp;
    if (s_curve_arg(arg, sec, &sp) < 0) return NULL;
    if (!sp) {
        PyErr_SetString(PyExc_TypeError, "cpartd: curve_public needs a key");
        return NULL;
    }
    if (pd_curve_public(pub, sp)) return cp_raise(NULL, pd_errcode(NULL));
    return PyUnicode_FromString(pub);
}

PyObject *cp_curve_keypair_py(PyObject *Py_UNUSED(mod),
                              PyObject *Py_UNUSED(ignored)) {
    char pub[41], sec[41];
    if (pd_curve_keypair(pub, sec)) return cp_raise(NULL, pd_errcode(NULL));
    return Py_BuildValue("(ss)", pub, sec);
}
