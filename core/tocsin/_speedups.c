/* tocsin._speedups: the C twin of tocsin._send.SendCore.
 *
 * Only Signal.send and send_robust live here.  In pure Python a send pays for an interpreter frame
 * of its own, a dict for its **named arguments, and for every receiver a second dict
 * merged from signal=, sender= and **named: most of what a send with few receivers
 * costs beyond the receivers themselves.  Here a send reads its arguments where the
 * caller left them and hands every receiver one argument array (signal, sender, then
 * the named values) with one tuple of keyword names, so no dict is built at all.
 *
 * The logic is exactly that of PureSendCore.send and send_robust in _send.py, which
 * are the reference: the sender positional or by keyword (Django's own spelling), and
 * anything off the fast path (no cached tuple, a named argument called "signal") goes
 * to the same Python slow path (Signal._send_slow) with the same dict.  send_robust
 * logs a receiver's failure through Signal._log_robust_failure.
 * Built only where a C compiler is at hand; tocsin works the same without it, and
 * TOCSIN_PURE_PYTHON=1 ignores it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* PyMemberDef and T_OBJECT_EX before Python 3.12 */

#ifndef Py_T_OBJECT_EX
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif

typedef struct {
    PyObject_HEAD
    PyObject *connections; /* dict: lookup key -> connection (only its size is read) */
    PyObject *send_cache;  /* dict: id(sender) -> tuple of zero-argument holders */
} SendCore;

/* Interned once at import: keyword names and method names. */
static PyObject *str_signal;
static PyObject *str_sender;
static PyObject *str_self;
static PyObject *str_send_slow;
static PyObject *str_log_robust_failure;
static PyObject *kwnames_robust;       /* ("robust",) */
static PyObject *kwnames_signal_sender; /* ("signal", "sender") */

/* -- attributes -------------------------------------------------------------------- */

/* Plain member slots, as __slots__ would make them, so that Signal's Python code reads
 * and writes them as fast as any slot.  Python only ever stores dicts there; the send
 * checks, and takes the slow path for anything else. */
static PyMemberDef SendCore_members[] = {
    {"_connections", Py_T_OBJECT_EX, offsetof(SendCore, connections), 0,
     "lookup key -> connection"},
    {"_send_cache", Py_T_OBJECT_EX, offsetof(SendCore, send_cache), 0,
     "id(sender) -> tuple of receiver holders, in dispatch order"},
    {NULL},
};

/* -- sending ----------------------------------------------------------------------- */

/* The slow path: self._send_slow(sender, named, robust=...), with named built from the
 * keyword arguments (values[i] named kwnames[i]), leaving out index `skip` (the sender
 * given by keyword), or none when skip is -1. */
static PyObject *
send_slow(SendCore *self, PyObject *sender, PyObject *const *values, PyObject *kwnames,
          Py_ssize_t skip, int robust)
{
    PyObject *named = PyDict_New();
    if (named == NULL) {
        return NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (i != skip && PyDict_SetItem(named, PyTuple_GET_ITEM(kwnames, i), values[i]) < 0) {
            Py_DECREF(named);
            return NULL;
        }
    }
    PyObject *call[4] = {(PyObject *)self, sender, named, robust ? Py_True : Py_False};
    PyObject *result = PyObject_VectorcallMethod(
        str_send_slow, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames_robust);
    Py_DECREF(named);
    return result;
}

/* weakref.ref's own __call__, read off a real reference at import. */
static ternaryfunc weakref_call;

/* One holder's receiver as a new reference, or Py_None (new) once it is gone.  A
 * weak reference whose call is weakref.ref's own (the plain type, or a subclass such as
 * ReceiverRef that keeps it) is read directly; anything else (a WeakMethod, a strong
 * holder) is called. */
static inline PyObject *
receiver_of(PyObject *holder)
{
    if (PyWeakref_CheckRef(holder) && Py_TYPE(holder)->tp_call == weakref_call) {
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *receiver;
        if (PyWeakref_GetRef(holder, &receiver) < 0) {
            return NULL;
        }
        return receiver == NULL ? Py_NewRef(Py_None) : receiver;
#else
        return Py_NewRef(PyWeakref_GET_OBJECT(holder));
#endif
    }
    return PyObject_CallNoArgs(holder);
}

/* The keyword names every receiver is called with: ("signal", "sender", *kwnames),
 * without kwnames[skip].  A call site passes the same kwnames tuple (a constant of its
 * code) on every call, so the last answer is kept: a loop of sends from one place
 * builds it once.  cached_kwnames is held, so its address cannot be reused meanwhile. */
static PyObject *cached_kwnames;
static Py_ssize_t cached_skip;
static PyObject *cached_names;

static PyObject *
names_for(PyObject *kwnames, Py_ssize_t skip)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nkw - (skip >= 0) == 0) {
        return Py_NewRef(kwnames_signal_sender);
    }
    if (kwnames == cached_kwnames && skip == cached_skip) {
        return Py_NewRef(cached_names);
    }
    PyObject *names = PyTuple_New(2 + nkw - (skip >= 0));
    if (names == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(names, 0, Py_NewRef(str_signal));
    PyTuple_SET_ITEM(names, 1, Py_NewRef(str_sender));
    for (Py_ssize_t i = 0, j = 2; i < nkw; i++) {
        if (i != skip) {
            PyTuple_SET_ITEM(names, j++, Py_NewRef(PyTuple_GET_ITEM(kwnames, i)));
        }
    }
    Py_XSETREF(cached_kwnames, Py_NewRef(kwnames));
    cached_skip = skip;
    Py_XSETREF(cached_names, Py_NewRef(names));
    return names;
}

/* The exception being raised, taken (normalized, with its traceback), as a new
 * reference; as ``except Exception as error`` would bind it. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* Call every live receiver of *holders* as receiver(signal=self, sender=sender,
 * **named), named being the keyword arguments but kwnames[skip]; with *robust*, an
 * Exception becomes the response, after self._log_robust_failure(receiver, error). */
static PyObject *
call_receivers(SendCore *self, PyObject *holders, PyObject *sender, PyObject *const *values,
               PyObject *kwnames, Py_ssize_t skip, int robust)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *names = names_for(kwnames, skip);
    if (names == NULL) {
        return NULL;
    }
    /* One slot in front of the arguments, so a bound-method receiver can be called
     * without copying them (PY_VECTORCALL_ARGUMENTS_OFFSET). */
    PyObject *small[10] = {NULL};
    PyObject **stack = small;
    Py_ssize_t size = 3 + nkw;
    if (size > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
        stack = PyMem_Malloc(size * sizeof(PyObject *));
        if (stack == NULL) {
            Py_DECREF(names);
            return PyErr_NoMemory();
        }
    }
    PyObject **callargs = stack + 1;
    callargs[0] = (PyObject *)self;
    callargs[1] = sender;
    for (Py_ssize_t i = 0, j = 2; i < nkw; i++) {
        if (i != skip) {
            callargs[j++] = values[i];
        }
    }

    PyObject *responses = PyList_New(0);
    Py_ssize_t count = PyTuple_GET_SIZE(holders);
    for (Py_ssize_t i = 0; responses != NULL && i < count; i++) {
        PyObject *receiver = receiver_of(PyTuple_GET_ITEM(holders, i));
        if (receiver == NULL) {
            Py_CLEAR(responses);
            break;
        }
        if (receiver == Py_None) {
            Py_DECREF(receiver);
            continue;
        }
        PyObject *response = PyObject_Vectorcall(
            receiver, callargs, PY_VECTORCALL_ARGUMENTS_OFFSET, names);
        /* A callee may have borrowed the slot in front; the arguments are intact. */
        if (response == NULL && robust && PyErr_ExceptionMatches(PyExc_Exception)) {
            PyObject *error = take_exception();
            PyObject *call[3] = {(PyObject *)self, receiver, error};
            PyObject *logged = PyObject_VectorcallMethod(
                str_log_robust_failure, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (logged == NULL) {
                Py_DECREF(error);
            }
            else {
                Py_DECREF(logged);
                response = error;
            }
        }
        if (response == NULL) {
            Py_DECREF(receiver);
            Py_CLEAR(responses);
            break;
        }
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(receiver);
            Py_DECREF(response);
            Py_CLEAR(responses);
            break;
        }
        PyTuple_SET_ITEM(pair, 0, receiver);
        PyTuple_SET_ITEM(pair, 1, response);
        if (PyList_Append(responses, pair) < 0) {
            Py_CLEAR(responses);
        }
        Py_DECREF(pair);
    }
    if (stack != small) {
        PyMem_Free(stack);
    }
    Py_DECREF(names);
    return responses;
}

/* Whether the signal has no connection at all; anything but a dict asks Python. */
static inline int
is_empty(PyObject *connections)
{
    return connections != NULL && PyDict_CheckExact(connections) &&
           PyDict_GET_SIZE(connections) == 0;
}

/* Whether keyword *key* is *name* ("sender" or "signal"; keywords from a call site
 * are interned, so the pointers usually settle it, and the length most of the rest). */
static inline int
is_named(PyObject *key, PyObject *name)
{
    return key == name || (PyUnicode_GET_LENGTH(key) == PyUnicode_GET_LENGTH(name) &&
                           PyUnicode_Compare(key, name) == 0);
}

/* The arguments of send(sender, **named) and send_robust, checked as Python checks
 * them for the pure methods: the sender (positional, or by keyword: then *skip* is its
 * index among the keywords, else -1), and whether a named argument is called
 * "signal" (which a receiver call would clash with).  -1 with an exception set on
 * error. */
static int
parse_send(const char *method, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           PyObject **sender, Py_ssize_t *skip, int *named_signal)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes 1 positional argument (the sender) but %zd were given; "
                     "pass the rest by name",
                     method, nargs);
        return -1;
    }
    *sender = nargs == 1 ? args[0] : NULL;
    *skip = -1;
    *named_signal = 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (is_named(name, str_self)) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument 'self'",
                         method);
            return -1;
        }
        if (is_named(name, str_sender)) {
            if (*sender != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got multiple values for argument 'sender'", method);
                return -1;
            }
            *sender = args[nargs + i];
            *skip = i;
        }
        else {
            *named_signal |= is_named(name, str_signal);
        }
    }
    if (*sender == NULL) {
        PyErr_Format(PyExc_TypeError,
                     "%s() missing 1 required positional argument: 'sender'", method);
        return -1;
    }
    return 0;
}

/* send and send_robust: the cached receivers of id(sender), called in order; anything
 * the cache cannot answer goes to the Python slow path with the same arguments. */
static PyObject *
dispatch(SendCore *self, const char *method, int robust, PyObject *const *args,
         Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *sender;
    Py_ssize_t skip;
    int named_signal;
    if (parse_send(method, args, nargs, kwnames, &sender, &skip, &named_signal) < 0) {
        return NULL;
    }
    if (is_empty(self->connections)) {
        return PyList_New(0);
    }
    PyObject *const *values = args + nargs;
    if (named_signal) {
        /* The receiver call would clash with the signal= it is given; the slow path
         * raises Python's own error for that, when a receiver is called. */
        return send_slow(self, sender, values, kwnames, skip, robust);
    }
    PyObject *key = PyLong_FromVoidPtr(sender);
    if (key == NULL) {
        return NULL;
    }
    PyObject *cache = self->send_cache;
    PyObject *holders =
        cache != NULL && PyDict_CheckExact(cache) ? PyDict_GetItemWithError(cache, key) : NULL;
    Py_DECREF(key);
    if (holders == NULL || !PyTuple_CheckExact(holders)) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        return send_slow(self, sender, values, kwnames, skip, robust);
    }
    /* A receiver may connect or disconnect, replacing the cache entry: keep ours. */
    Py_INCREF(holders);
    PyObject *responses = call_receivers(self, holders, sender, values, kwnames, skip, robust);
    Py_DECREF(holders);
    return responses;
}

static PyObject *
SendCore_send(SendCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return dispatch(self, "send", 0, args, nargs, kwnames);
}

static PyObject *
SendCore_send_robust(SendCore *self, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    return dispatch(self, "send_robust", 1, args, nargs, kwnames);
}

static PyMethodDef SendCore_methods[] = {
    {"send", (PyCFunction)(void (*)(void))SendCore_send, METH_FASTCALL | METH_KEYWORDS,
     "send($self, sender, **named)\n--\n\n"
     "Call every receiver for *sender*; return ``[(receiver, response), ...]``.\n\n"
     "A receiver's exception propagates, and later receivers are not called.\n"
     "Synchronous receivers run first, then async ones: outside an event loop they\n"
     "are run to completion; inside one, use :meth:`asend` instead."},
    {"send_robust", (PyCFunction)(void (*)(void))SendCore_send_robust,
     METH_FASTCALL | METH_KEYWORDS,
     "send_robust($self, sender, **named)\n--\n\n"
     "Like :meth:`send`, but an ``Exception`` from a receiver becomes its response.\n\n"
     "Every receiver is called; each failure is logged at ERROR with its traceback\n"
     "under the ``tocsin.dispatch`` logger."},
    {NULL},
};

/* -- life cycle -------------------------------------------------------------------- */

static int
SendCore_traverse(SendCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->connections);
    Py_VISIT(self->send_cache);
    return 0;
}

static int
SendCore_clear(SendCore *self)
{
    Py_CLEAR(self->connections);
    Py_CLEAR(self->send_cache);
    return 0;
}

static void
SendCore_dealloc(SendCore *self)
{
    PyObject_GC_UnTrack(self);
    SendCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject SendCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tocsin._speedups.SendCore",
    .tp_doc = "The send path of tocsin.Signal, in C (see tocsin._send.SendCore).",
    .tp_basicsize = sizeof(SendCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew, /* both tables start unset, as the pure class's slots */
    .tp_dealloc = (destructor)SendCore_dealloc,
    .tp_traverse = (traverseproc)SendCore_traverse,
    .tp_clear = (inquiry)SendCore_clear,
    .tp_methods = SendCore_methods,
    .tp_members = SendCore_members,
};

/* -- module ------------------------------------------------------------------------ */

static int initialized; /* the statics above, once per process */

static int
init_statics(PyObject *module)
{
    str_signal = PyUnicode_InternFromString("signal");
    str_sender = PyUnicode_InternFromString("sender");
    str_self = PyUnicode_InternFromString("self");
    str_send_slow = PyUnicode_InternFromString("_send_slow");
    str_log_robust_failure = PyUnicode_InternFromString("_log_robust_failure");
    PyObject *str_robust = PyUnicode_InternFromString("robust");
    if (str_signal == NULL || str_sender == NULL || str_self == NULL || str_send_slow == NULL ||
        str_log_robust_failure == NULL || str_robust == NULL) {
        Py_XDECREF(str_robust);
        return -1;
    }
    kwnames_robust = PyTuple_Pack(1, str_robust);
    Py_DECREF(str_robust);
    kwnames_signal_sender = PyTuple_Pack(2, str_signal, str_sender);
    if (kwnames_robust == NULL || kwnames_signal_sender == NULL) {
        return -1;
    }
    PyObject *probe = PyWeakref_NewRef(module, NULL);
    if (probe == NULL) {
        return -1;
    }
    weakref_call = Py_TYPE(probe)->tp_call;
    Py_DECREF(probe);
    if (PyType_Ready(&SendCore_Type) < 0) {
        return -1;
    }
    /* Name the two members as __slots__, as the pure class does, so that copy and
     * pickle (copyreg._slotnames) account for them the same way. */
    PyObject *slots = Py_BuildValue("(ss)", "_connections", "_send_cache");
    if (slots == NULL || PyDict_SetItemString(SendCore_Type.tp_dict, "__slots__", slots) < 0) {
        Py_XDECREF(slots);
        return -1;
    }
    Py_DECREF(slots);
    PyType_Modified(&SendCore_Type);
    return 0;
}

static int
speedups_exec(PyObject *module)
{
    if (!initialized) {
        if (init_statics(module) < 0) {
            return -1;
        }
        initialized = 1;
    }
    return PyModule_AddObjectRef(module, "SendCore", (PyObject *)&SendCore_Type);
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tocsin._speedups",
    .m_doc = "Signal.send in C; tocsin._send holds the pure-Python reference.",
    .m_size = 0,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
