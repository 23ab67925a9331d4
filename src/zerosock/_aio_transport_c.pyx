# cython: language_level=3
"""The C socket transport of zerosock.aio: the standard library's selector
socket transport, same semantics, with its read and write paths in C.

Reads go straight into a ``BufferedProtocol``'s buffer, or into a scratch
buffer copied into one ``bytes`` per read for a plain Protocol; ``write``
sends at once and queues only what the kernel did not take; queued chunks
leave in one gather call.  Syscalls are non-blocking and keep the GIL."""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_CheckExact, PyDict_GetItemWithError, PyDict_SetItem
from cpython.list cimport PyList_CheckExact, PyList_GET_SIZE
from cpython.set cimport PySet_Add, PySet_Discard, PySet_GET_SIZE
from cpython.weakref cimport PyWeakref_NewRef
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_CheckExact
from cpython.contextvars cimport PyContext_CopyCurrent
from libc.string cimport memset
from cpython.object cimport PyObject, PyObject_TypeCheck, PyTypeObject, Py_TYPE
from cpython.ref cimport Py_REFCNT, Py_XDECREF, Py_XINCREF
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.string cimport memset as _zero

import collections
import inspect
import socket
import weakref
import warnings
import sys
from asyncio import (base_events, constants, format_helpers, futures, protocols, selector_events,
                     transports, trsock)
from asyncio.log import logger
from asyncio.selector_events import _test_selector_event
from selectors import EVENT_READ, EVENT_WRITE

from zerosock._buffers cimport zs_borrow_memory
from zerosock._cmethod_c cimport METH_FASTCALL, METH_KEYWORDS, METH_NOARGS, METH_O, c_method
from zerosock._cpython_c cimport (
    class_keeps, instance_keeps, keeps_methods, zs_bytes_refill, zs_remember_type, zs_slot_get, zs_slot_offset,
    zs_slot_set, zs_type_lookup, zs_type_memo, zs_type_unchanged, zs_version_tags_on,
)
from zerosock._cpython_c import enabled
from zerosock._selectors_c cimport Selector, ZS_EV_READ, ZS_EV_WRITE
from zerosock._shim cimport (
    ZS_EINTR, ZS_HAVE_MSG, zs_close, zs_iov_set, zs_iovec, zs_is_would_block, zs_last_error,
    zs_msghdr, zs_recv, zs_send, zs_sendmsg, zs_strerror,
)
from zerosock._wire cimport zs_wire, zs_wire_lend_socket, zs_wire_to_report

cdef extern from "Python.h":
    # The singletons themselves (a cast of True or False would give 1 or 0).
    PyObject *Py_True
    PyObject *Py_False
    bint PyLong_CheckExact(object o)
    bint PyMethod_Check(object o)
    PyObject *PyMethod_GET_SELF(object o)
    PyObject *PyMethod_GET_FUNCTION(object o)
    bint PyType_IsSubtype(PyTypeObject *a, PyTypeObject *b)
    object PyObject_GenericGetDict(object o, void *context)
    Py_ssize_t PyDict_GET_SIZE(object d)
    int PyDict_Contains(object d, object key) except -1
    # (Taking the pointer: no reference is taken to pass it.)
    int _context_enter "PyContext_Enter"(PyObject *context) except -1
    int _context_exit "PyContext_Exit"(PyObject *context) except -1

cdef extern from *:
    """
    /* callable(arg), holding the callable for the call (the caller holds it
     * in a field that the call may clear).  A bound Python method is called
     * as its function with its self, without the bound method's own call,
     * through the function's vectorcall slot where it has one. */
    static PyObject *zs_call_held(PyObject *callable, PyObject *arg)
    {
        PyObject *args[3], *target = callable, *result;
        Py_ssize_t nargs = 1;
        vectorcallfunc call;
        Py_INCREF(callable);
        args[1] = arg;
        if (PyMethod_Check(callable)) {
            target = PyMethod_GET_FUNCTION(callable);
            args[1] = PyMethod_GET_SELF(callable);
            args[2] = arg;
            nargs = 2;
        }
        call = PyVectorcall_Function(target);
        if (call != NULL)
            result = call(target, args + 1, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        else
            result = PyObject_Vectorcall(target, args + 1, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                         NULL);
        Py_DECREF(callable);
        return result;
    }

    /* callable(self, arg), holding both for the call (the caller holds them
     * in fields that the call may clear), through its vectorcall slot where
     * it has one. */
    static PyObject *zs_call_held_with(PyObject *callable, PyObject *self, PyObject *arg)
    {
        PyObject *args[3], *result;
        vectorcallfunc call = PyVectorcall_Function(callable);
        Py_INCREF(callable);
        Py_INCREF(self);
        args[1] = self;
        args[2] = arg;
        if (call != NULL)
            result = call(callable, args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        else
            result = PyObject_Vectorcall(callable, args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                         NULL);
        Py_DECREF(self);
        Py_DECREF(callable);
        return result;
    }

    /* The dotted-quad text of an IPv4 address (network order), as inet_ntop
       writes it, without its formatting machinery. */
    static PyObject *zs_ipv4_text(const unsigned char *quad)
    {
        char text[16];
        int n = 0, i, v;
        for (i = 0; i < 4; i++) {
            v = quad[i];
            if (v >= 100) text[n++] = (char)('0' + v / 100);
            if (v >= 10) text[n++] = (char)('0' + v / 10 % 10);
            text[n++] = (char)('0' + v % 10);
            if (i < 3) text[n++] = '.';
        }
        return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, text, n);
    }
    """
    object zs_call_held(PyObject *callable, object arg)
    object zs_call_held_with(PyObject *callable, PyObject *self, object arg)
    object zs_ipv4_text(const unsigned char *quad)

cdef extern from *:
    """
    /* Whether a class's instances find their attributes as object's do. */
    static inline int zs_finds_attributes_as_object(PyTypeObject *kind)
    {
        return kind->tp_getattro == PyObject_GenericGetAttr;
    }
    """
    bint zs_finds_attributes_as_object(PyTypeObject *kind)

cdef enum:
    # Which of a protocol's methods a transport holds as its class's function.
    UNBOUND_GET_BUFFER = 1
    UNBOUND_BUFFER_UPDATED = 2
    UNBOUND_DATA_RECEIVED = 4

cdef enum:
    READ_CHUNK = 256 * 1024   # what one read of a plain Protocol takes, as the stdlib's max_size
    MAX_IOV = 64              # chunks per gather call (well under every IOV_MAX)

# The fast paths of zerosock._cpython_c that this module takes when they are on.
cdef bint BYTES_REFILL = enabled("bytes_refill")
zs_version_tags_on = enabled("type_version_tags")

# Plain Protocols read here first; the bytes object is made before any Python
# code runs, so one buffer serves every transport of the process.
cdef char _scratch[READ_CHUNK]

cdef type _BufferedProtocol = protocols.BufferedProtocol
# A protocol class whose instances' attributes are found as object's
# (no __getattr__ or __getattribute__ of its own), whose __class__ is their
# type and that has no _read_sink (the C streams' protocols have one).
cdef dict _plain_protocol_state = {"_read_sink": None, "__class__": object.__dict__["__class__"]}
cdef zs_type_memo _plain_protocol_memo  # the protocol class last found so


cdef inline bint _plain_protocol_class(PyTypeObject *kind) except -1:
    return (zs_finds_attributes_as_object(kind)
            and class_keeps(kind, &_plain_protocol_memo, _plain_protocol_state))
cdef object _getframe = sys._getframe
cdef object _set_result_unless_cancelled = futures._set_result_unless_cancelled
cdef object _set_nodelay = base_events._set_nodelay
cdef object _TransportSocket = trsock.TransportSocket
cdef object _last_sockname = None  # the last transport's, shared by the next that has the same
cdef object _last_peer_host = None  # the last accepted peer's host, likewise


cdef object _shared_host(object address):
    """An IP peer address whose host string is the last peer's when equal:
    connections from one client host hold that string once."""
    global _last_peer_host
    if not (PyTuple_CheckExact(address) and PyTuple_GET_SIZE(address) in (2, 4)):
        return address
    host = <object>PyTuple_GET_ITEM(address, 0)
    if host is _last_peer_host:
        return address
    if not (PyUnicode_CheckExact(host) and host == _last_peer_host):
        _last_peer_host = host
        return address
    if PyTuple_GET_SIZE(address) == 2:
        return (_last_peer_host, <object>PyTuple_GET_ITEM(address, 1))
    return (_last_peer_host, <object>PyTuple_GET_ITEM(address, 1),
            <object>PyTuple_GET_ITEM(address, 2), <object>PyTuple_GET_ITEM(address, 3))
cdef int LOG_THRESHOLD = constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
cdef object SHUT_WR = socket.SHUT_WR
# The stdlib's socket transport has its own writelines() from 3.12 on;
# before, WriteTransport's, which calls self.write().
cdef bint WRITELINES_OWN = sys.version_info >= (3, 12)
# Python 3.13 tells its Server which transport attaches and detaches.
cdef bint SERVER_TRACKS_TRANSPORTS = len(
    inspect.signature(base_events.Server._attach).parameters) > 1


# Before 3.13 the Server's _attach and _detach count connections: done on
# its __dict__ in C while they are the stdlib's (the server_counts fast path).
# From 3.13 they keep the transports in a WeakSet, ``_clients``: added to and
# discarded from in C while those methods and WeakSet's add and discard are
# the stdlib's (the server_clients fast path).
cdef bint SERVER_COUNTS = enabled("server_counts")
cdef bint SERVER_CLIENTS = enabled("server_clients")
cdef type _ServerType = base_events.Server
cdef dict _std_server_state = {"_attach": _ServerType._attach, "_detach": _ServerType._detach,
                               "_sockets": None,
                               ("_clients" if SERVER_TRACKS_TRANSPORTS else "_active_count"): None}
cdef zs_type_memo _server_memo  # Server, when last found to keep them
cdef type _WeakSetType = weakref.WeakSet
cdef dict _std_weakset_methods = {"add": _WeakSetType.add, "discard": _WeakSetType.discard}
cdef dict _std_weakset_class = dict(_std_weakset_methods, __len__=_WeakSetType.__len__, data=None,
                                    _pending_removals=None, _remove=None)
cdef zs_type_memo _weakset_memo  # WeakSet, when last found to keep them


cdef object _server_state(object server, PyObject *table):
    """The __dict__ of a Server whose _attach and _detach are the stdlib's
    (none replaced on its class or on itself), else None.  The loop's
    transport table (or NULL) remembers the last one found so, while no
    attribute comes or goes on it (as the loop core watches its loop's)."""
    cdef TransportTable transports
    if not ((SERVER_COUNTS or SERVER_CLIENTS) and type(server) is _ServerType
            and class_keeps(<PyTypeObject *>_ServerType, &_server_memo, _std_server_state)):
        return None
    state = PyObject_GenericGetDict(server, NULL)
    if table != NULL:
        transports = <TransportTable>table
        if (transports.counting_server is server
                and PyDict_GET_SIZE(state) == transports.counting_server_size):
            return state
    if PyDict_Contains(state, "_attach") or PyDict_Contains(state, "_detach"):
        return None
    if table != NULL:
        transports.counting_server = server
        transports.counting_server_size = PyDict_GET_SIZE(state)
    return state


cdef object _clients_state(object state, PyObject *table):
    """The __dict__ of the Server's ``_clients`` when it is a WeakSet with the
    stdlib's add and discard, its ``data`` a set and no removal pending
    (which add and discard would make first; 3.14 has none), else None.
    The transport table (or NULL) remembers the last one found to keep the
    methods, as _server_state its Server."""
    cdef PyObject *clients = PyDict_GetItemWithError(state, "_clients")
    cdef PyObject *data
    cdef PyObject *pending
    cdef TransportTable transports = <TransportTable>table if table != NULL else None
    if (clients == NULL or type(<object>clients) is not _WeakSetType
            or not class_keeps(<PyTypeObject *>_WeakSetType, &_weakset_memo, _std_weakset_class)):
        return None
    weak_state = PyObject_GenericGetDict(<object>clients, NULL)
    if not (transports is not None and transports.counting_clients is <object>clients
            and PyDict_GET_SIZE(weak_state) == transports.counting_clients_size):
        if not instance_keeps(<object>clients, _std_weakset_methods):
            return None
        if transports is not None:
            transports.counting_clients = <object>clients
            transports.counting_clients_size = PyDict_GET_SIZE(weak_state)
    data = PyDict_GetItemWithError(weak_state, "data")
    pending = PyDict_GetItemWithError(weak_state, "_pending_removals")
    if (data == NULL or type(<object>data) is not set or pending != NULL and not (
            PyList_CheckExact(<object>pending) and PyList_GET_SIZE(<object>pending) == 0)):
        return None
    return weak_state


cdef int _server_attach(server, transport, PyObject *table) except -1:
    cdef PyObject *sockets
    cdef PyObject *count
    cdef PyObject *remove
    state = _server_state(server, table)
    if state is not None:
        sockets = PyDict_GetItemWithError(state, "_sockets")
        if sockets != NULL and sockets != <PyObject *>None:
            if SERVER_CLIENTS:
                weak_state = _clients_state(state, table)
                if weak_state is not None:
                    remove = PyDict_GetItemWithError(weak_state, "_remove")
                    if remove != NULL:
                        PySet_Add(<object>PyDict_GetItemWithError(weak_state, "data"),
                                  PyWeakref_NewRef(transport, <object>remove))
                        return 0
            else:
                count = PyDict_GetItemWithError(state, "_active_count")
                if count != NULL and PyLong_CheckExact(<object>count):
                    PyDict_SetItem(state, "_active_count", <object>count + 1)
                    return 0
    # Anything else (a failing assertion included) is the method's own.
    if SERVER_TRACKS_TRANSPORTS:
        server._attach(transport)
    else:
        server._attach()
    return 0


cdef int _server_detach(server, transport, PyObject *table) except -1:
    cdef PyObject *sockets
    cdef PyObject *count
    cdef bint closed = False
    state = _server_state(server, table)
    if state is None:
        return _std_detach(server, transport)
    if SERVER_CLIENTS:
        weak_state = _clients_state(state, table)
        sockets = PyDict_GetItemWithError(state, "_sockets")
        if weak_state is None or sockets == NULL:
            return _std_detach(server, transport)  # (with the method's AttributeError)
        data = <object>PyDict_GetItemWithError(weak_state, "data")
        PySet_Discard(data, PyWeakref_NewRef(transport, None))
        if PySet_GET_SIZE(data) == 0 and sockets == <PyObject *>None:
            server._wakeup()
        return 0
    count = PyDict_GetItemWithError(state, "_active_count")
    if count != NULL and PyLong_CheckExact(<object>count) and <object>count > 0:
        left = <object>count - 1
        if left == 0:
            # (Whether the server still serves matters only now.)
            sockets = PyDict_GetItemWithError(state, "_sockets")
            if sockets == NULL:
                return _std_detach(server, transport)  # the method's AttributeError
            closed = sockets == <PyObject *>None
        PyDict_SetItem(state, "_active_count", left)
        if left == 0 and closed:
            server._wakeup()
        return 0
    return _std_detach(server, transport)


cdef int _std_detach(server, transport) except -1:
    if SERVER_TRACKS_TRANSPORTS:
        server._detach(transport)
    else:
        server._detach()
    return 0


# The loop class (zerosock.aio's EventLoop, see use_loop_class): its debug
# flag and closed state read from its slots while get_debug() is its own.
cdef type _LoopType = None
cdef Py_ssize_t LOOP_DEBUG_OFFSET = -1, LOOP_CLOSED_OFFSET = -1
cdef dict _own_get_debug = {}
cdef zs_type_memo _get_debug_memo  # the loop class last found to keep it


def use_loop_class(cls):
    """Make ``cls`` (zerosock.aio's EventLoop, whose ``_debug`` and
    ``_closed`` are slots) the loop class whose state transports read directly."""
    global _LoopType, LOOP_DEBUG_OFFSET, LOOP_CLOSED_OFFSET
    LOOP_DEBUG_OFFSET = zs_slot_offset(cls.__dict__["_debug"])
    LOOP_CLOSED_OFFSET = zs_slot_offset(cls.__dict__["_closed"])
    _own_get_debug["get_debug"] = cls.__dict__["get_debug"]
    _LoopType = cls


cdef bint _loop_debug(object loop, PyObject *table) except -1:
    """``loop.get_debug()``, as a truth value; read from its slot while the
    loop's transport table (or NULL) says its get_debug() is EventLoop's."""
    cdef PyObject *flag
    if table != NULL and (<TransportTable>table).memo_holds(loop) and (<TransportTable>table).debug_in_slot:
        flag = zs_slot_get(loop, LOOP_DEBUG_OFFSET)
        if flag == Py_False:
            return False
        if flag == Py_True:
            return True
    return bool(loop.get_debug())


cdef keeps_call_soon_fn _keeps_c_call_soon = NULL  # see lend_loop_methods
cdef call_soon_fn _c_call_soon = NULL


cdef int lend_loop_methods(keeps_call_soon_fn keeps_call_soon, call_soon_fn call_soon) except -1:
    global _keeps_c_call_soon, _c_call_soon
    _keeps_c_call_soon = keeps_call_soon
    _c_call_soon = call_soon
    return 0


cdef object _call_soon(object loop, PyObject *table, object callback, tuple args, object context):
    """``loop.call_soon(callback, *args, context=context)``: the C method
    called directly while the loop's transport table (or NULL) says it is
    the loop's."""
    cdef TransportTable transports
    if table != NULL:
        transports = <TransportTable>table
        # (An attribute set on the loop in place of one it had keeps its
        # __dict__'s size: before 3.12 the loop holds its own call_soon.)
        if (transports.memo_holds(loop) and transports.c_call_soon
                and PyDict_GetItemWithError(transports.loop_state, "call_soon")
                == transports.call_soon_own):
            return _c_call_soon(loop, callback, args, context)
    return loop.call_soon(callback, *args, context=context)


cdef inline bint _loop_closed(object loop) except -1:
    """``loop._closed``, as a truth value."""
    cdef PyObject *flag
    if type(loop) is _LoopType:  # (a subclass may make it a property)
        flag = zs_slot_get(loop, LOOP_CLOSED_OFFSET)
        if flag == Py_False:
            return False
        if flag == Py_True:
            return True
    return bool(loop._closed)


cdef inline object _os_error(int err):
    # OSError(errno, text) is the subclass the socket module would raise.
    return OSError(err, zs_strerror(err).decode("utf-8", "replace"))


cdef object _extract_stack = format_helpers.extract_stack
cdef object _format_callback_source = format_helpers._format_callback_source
cdef bint FORMAT_TAKES_DEBUG = "debug" in inspect.signature(_format_callback_source).parameters


cdef inline object _format_callback(object callback, object args, object loop):
    if FORMAT_TAKES_DEBUG:
        return _format_callback_source(callback, args, debug=loop.get_debug())
    return _format_callback_source(callback, args)


@cython.final
@cython.freelist(64)  # (a connection's reads make one and free it when the connection goes)
cdef class IOHandle:
    """What the selector's key data holds for a transport's reads or writes.

    The whole interface the stdlib's loop code and exception handler read
    from an ``asyncio.Handle`` (``_callback``, ``_args``, ``_source_traceback``,
    ``_repr``, ``cancel``, ``get_context``, ``_run``), with a C call to run."""

    def __init__(self, TransportCore transport, bint writing, context=None):
        self._bind(transport, writing, context)

    cdef int _bind(self, TransportCore transport, bint writing, object context) except -1:
        loop = transport._loop
        self.transport = transport
        self.writing = writing
        self._loop = loop
        self._cancelled = False
        # The context given; else the transport's when it has one (3.15), else
        # the caller's copied.
        if context is None:
            context = transport._context
        self._context = PyContext_CopyCurrent() if context is None else context
        self._repr = None
        if loop is not None and _loop_debug(loop, transport._table):
            self._source_traceback = _extract_stack(_getframe(0))
        else:
            self._source_traceback = None
        return 0

    def cancel(self):
        self.c_cancel()

    cdef int c_cancel(self) except -1:
        if not self._cancelled:
            self._cancelled = True
            if self._loop is not None and _loop_debug(self._loop, self.transport._table):
                # As events.Handle: the repr, callback included, outlives the
                # transport, for the slow-callback warning.
                self._repr = "<{}>".format(" ".join(self._repr_info(self._bound_callback())))
        return 0

    def cancelled(self):
        return self._cancelled

    def get_context(self):
        return self._context

    @property
    def _callback(self):
        """The transport's bound ``_read_ready``/``_write_ready``; None once
        cancelled, as the stdlib's handle drops its callback."""
        return None if self._cancelled else self._bound_callback()

    cdef object _bound_callback(self):
        owner = self.transport.owner
        target = self.transport if owner is None else owner
        return target._write_ready if self.writing else target._read_ready

    @property
    def _args(self):
        return None if self._cancelled else ()

    def _repr_info(self, callback=None):
        info = [type(self).__name__]
        if self._cancelled:
            info.append("cancelled")
        if callback is None:
            callback = self._callback
        if callback is not None:
            info.append(_format_callback(callback, (), self._loop))
        if self._source_traceback:
            frame = self._source_traceback[-1]
            info.append(f"created at {frame[0]}:{frame[1]}")
        return info

    def __repr__(self):
        if self._repr is not None:
            return self._repr
        return "<{}>".format(" ".join(self._repr_info()))

    def _run(self):
        self.run()

    cdef int run(self) except -1:
        """Run the transport's read or write step as a Handle would, in its
        context: 1 when it was a quiet read (see read_ready), else 0.

        run_in_context's work, with no reference taken per event: the handle
        holds its context and transport for its life, and the loop holds the
        handle while it runs."""
        cdef int quiet = 0
        cdef PyObject *context = <PyObject *>self._context
        cdef PyObject *core = <PyObject *>self.transport
        _context_enter(context)
        try:
            if self.writing:
                (<TransportCore>core).write_ready()
            else:
                quiet = (<TransportCore>core).read_ready()
        except (SystemExit, KeyboardInterrupt):
            _context_exit(context)
            raise
        except BaseException as exc:
            _context_exit(context)
            # Reported outside the handle's context, as context.run() would leave it.
            self.report(exc)
            return 0
        _context_exit(context)
        return quiet

    cdef int report(self, object exc) except -1:
        """Report an exception that escaped the callback, as events.Handle._run does."""
        context = {
            "message": f"Exception in callback {_format_callback(self._callback, self._args, self._loop)}",
            "exception": exc,
            "handle": self,
        }
        if self._source_traceback:
            context["source_traceback"] = self._source_traceback
        self._loop.call_exception_handler(context)
        return 0


cdef IOHandle new_io_handle(TransportCore transport, bint writing, object context):
    cdef IOHandle handle = IOHandle.__new__(IOHandle)
    handle._bind(transport, writing, context)
    return handle


cdef class ReadSink:

    cdef int feed(self, const char *data, Py_ssize_t size) except -1:
        raise NotImplementedError


cdef class ReadTarget:

    cdef int wire_readable(self, zs_wire *wire) except -1:
        raise NotImplementedError


cpdef type stream_core_type(object loop, object protocol):
    """The TransportCore class of a new plain stream transport of ``loop``
    for ``protocol``: the loop's own (``loop._stream_core``: the io_uring
    loop's completions), but readiness for a protocol that reads the socket
    itself (TLS)."""
    if isinstance(protocol, ReadTarget):
        return TransportCore
    return getattr(loop, "_stream_core", TransportCore)


# -- the loop's registrations, in C where they are the stdlib's ----------------------------

cdef tuple _SELECTOR_METHODS = ("get_key", "register", "modify", "unregister")
cdef dict _own_selector_methods = {name: Selector.__dict__[name] for name in _SELECTOR_METHODS}
cdef zs_type_memo _selector_memo  # the selector class last found to keep them
cdef object _std_loop = selector_events.BaseSelectorEventLoop
cdef dict _std_loop_methods = {name: getattr(_std_loop, name)
                               for name in ("_remove_reader", "_remove_writer", "is_closed",
                                            "_check_closed")}
cdef zs_type_memo _loop_memo      # the loop class last found to keep them


cdef inline object _instance_dict(object o):
    """``o.__dict__`` without the attribute lookup; None for an object without one."""
    cdef PyTypeObject *kind = <PyTypeObject *>Py_TYPE(o)
    if kind.tp_dictoffset == 0:
        return None
    return PyObject_GenericGetDict(o, NULL)


cdef bint _registers_natively(object selector) except -1:
    """Whether ``selector`` is zerosock's C selector with its own
    registration methods (none replaced on its class or on itself): then its
    C registration API does what those methods would."""
    return (isinstance(selector, Selector)
            and keeps_methods(selector, &_selector_memo, _own_selector_methods))


cdef bint _removes_natively(object loop) except -1:
    """Whether the loop's _remove_reader/_remove_writer are the stdlib's
    (none replaced on its class or on itself) over a selector that
    registers natively: then what they do can be done in C."""
    cdef PyObject *found = NULL
    if not keeps_methods(loop, &_loop_memo, _std_loop_methods):
        return False
    state = _instance_dict(loop)
    if state is not None:
        found = PyDict_GetItemWithError(state, "_selector")
    return _registers_natively(<object>found if found != NULL else loop._selector)


@cython.final
cdef class TransportTable:

    def __cinit__(self):
        self.others = {}

    cdef bint native_io(self, object loop) except -1:
        """_removes_natively(loop), remembered while nothing it read has
        changed: the loop's and the selector's classes, the number of
        attributes set on each (as the loop core watches its loop's), the
        selector the loop holds."""
        cdef PyObject *selector
        if self.memo_holds(loop):
            selector = PyDict_GetItemWithError(self.loop_state, "_selector")
            if (selector == <PyObject *>self.selector
                    and zs_type_unchanged(&_selector_memo, Py_TYPE(<object>selector))
                    and (self.selector_state is None
                         or PyDict_GET_SIZE(self.selector_state) == self.selector_state_size)):
                return True
        self.memo_loop = NULL
        if not _removes_natively(loop):
            return False
        state = _instance_dict(loop)
        if state is None or not PyDict_CheckExact(state):
            return True  # (nothing to watch: asked again next time)
        self.loop_state = state
        self.loop_state_size = PyDict_GET_SIZE(state)
        self.selector = loop._selector
        self.selector_state = _instance_dict(self.selector)
        self.selector_state_size = (0 if self.selector_state is None
                                    else PyDict_GET_SIZE(self.selector_state))
        self.debug_in_slot = (_LoopType is not None
                              and PyObject_TypeCheck(loop, <PyTypeObject *>_LoopType)
                              and keeps_methods(loop, &_get_debug_memo, _own_get_debug))
        self.c_call_soon = _keeps_c_call_soon != NULL and _keeps_c_call_soon(loop)
        self.call_soon_own = PyDict_GetItemWithError(state, "call_soon")
        self.memo_loop = <PyObject *>loop
        return True

    cdef bint memo_holds(self, object loop) noexcept:
        """Whether what native_io() found of ``loop`` still holds, but for its selector."""
        return (self.memo_loop == <PyObject *>loop and zs_type_unchanged(&_loop_memo, Py_TYPE(loop))
                and PyDict_GET_SIZE(self.loop_state) == self.loop_state_size)

    def __dealloc__(self):
        # Every core entered holds a reference to the table: none is left.
        PyMem_Free(self.cores)

    cdef int enter(self, int fd, TransportCore core) except -1:
        cdef Py_ssize_t capacity
        cdef PyObject **grown
        cdef PyObject *old
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        if fd >= self.ncores:
            capacity = max(64, 2 * self.ncores, fd + 1)
            grown = <PyObject **>PyMem_Realloc(self.cores, <size_t>capacity * sizeof(PyObject *))
            if grown == NULL:
                raise MemoryError()
            _zero(grown + self.ncores, 0, <size_t>(capacity - self.ncores) * sizeof(PyObject *))
            self.cores = grown
            self.ncores = capacity
        if self.others:
            self.others.pop(fd, None)
        old = core._table
        if old != <PyObject *>self:
            # A core holds the table it is entered in (see forget).
            Py_XINCREF(<PyObject *>self)
            core._table = <PyObject *>self
            if old != NULL:
                (<TransportTable>old).forget(core._sock_fd, <PyObject *>core)
                Py_XDECREF(old)
        self.cores[fd] = <PyObject *>core
        return 0

    cdef void forget(self, int fd, PyObject *core) noexcept:
        """Take ``core`` out if it is still what ``fd`` maps to (as it is freed)."""
        if 0 <= fd < self.ncores and self.cores[fd] == core:
            self.cores[fd] = NULL

    cdef object lookup(self, object fd):
        """The transport entered for ``fd``, or None."""
        cdef Py_ssize_t n
        cdef PyObject *found
        if type(fd) is int and 0 <= fd < self.ncores:
            n = fd
            found = self.cores[n]
            if found != NULL:
                return (<TransportCore>found).owner  # None once its connection is over
        ref = self.others.get(fd) if self.others else None
        return None if ref is None else ref()

    def __getitem__(self, fd):
        transport = self.lookup(fd)
        if transport is None:
            raise KeyError(fd)
        return transport

    def __setitem__(self, fd, transport):
        core = getattr(transport, "_core", None) if type(transport) is _SocketTransportType else None
        if type(fd) is int and isinstance(core, TransportCore) and (<TransportCore>core).owner is transport:
            self.enter(fd, <TransportCore>core)
            return
        if type(fd) is int and 0 <= fd < self.ncores:
            self.cores[<Py_ssize_t>fd] = NULL
        self.others[fd] = weakref.ref(transport)

    def __delitem__(self, fd):
        if self.lookup(fd) is None:
            raise KeyError(fd)
        if type(fd) is int and 0 <= fd < self.ncores and self.cores[<Py_ssize_t>fd] != NULL:
            self.cores[<Py_ssize_t>fd] = NULL
        else:
            del self.others[fd]

    def __contains__(self, fd):
        return self.lookup(fd) is not None

    def get(self, fd, default=None):
        transport = self.lookup(fd)
        return default if transport is None else transport

    def keys(self):
        return [fd for fd, _ in self.items()]

    def values(self):
        return [transport for _, transport in self.items()]

    def items(self):
        """(fd, transport) pairs of the transports alive, by descriptor."""
        cdef Py_ssize_t fd
        found = {}
        for fd in range(self.ncores):
            if self.cores[fd] != NULL and (<TransportCore>self.cores[fd]).owner is not None:
                found[fd] = (<TransportCore>self.cores[fd]).owner
        for fd_obj, ref in list(self.others.items()):
            transport = ref()
            if transport is not None:
                found[fd_obj] = transport
        return list(found.items())

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.items())

    def __repr__(self):
        return f"<TransportTable {dict(self.items())!r}>"


@cython.freelist(64)  # (servers make and free one per connection)
cdef class TransportCore:
    """The state and the C paths of one :class:`SocketTransport`."""

    def __cinit__(self):
        self._fd_closed = True  # no descriptor until one is attached

    def __init__(self, owner, loop, sock, protocol, waiter=None, extra=None, server=None,
                 context=None):
        self._attach(owner, loop, sock, protocol, extra)
        self._context = context
        self._server = server
        if server is not None:
            _server_attach(server, owner, NULL)
        self._enter_in_table(loop)

        _set_nodelay(sock)
        loop.call_soon(protocol.connection_made, owner, context=context)
        # Start reading only once connection_made() has run.
        loop.call_soon(self._start_reading, context=context)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None, context=context)

    cdef int _attach(self, owner, loop, sock, protocol, extra) except -1:
        """The stdlib's _SelectorTransport.__init__: the state every socket transport starts with."""
        global _last_sockname
        self.owner = owner
        self._loop = loop
        self._protocol_paused = False
        self._set_write_buffer_limits()
        # What the stdlib puts in the extra dict at once, kept without the
        # dict (made when asked for): an idle connection's bytes.
        try:
            sockname = sock.getsockname()
        except OSError:
            sockname = None
        # A server's connections share their address: hold it once.
        if sockname == _last_sockname:
            sockname = _last_sockname
        else:
            _last_sockname = sockname
        self._sockname = sockname
        if extra is not None and PyDict_CheckExact(extra) and len(extra) == 1 and "peername" in extra:
            self._peername = _shared_host(extra["peername"])  # the accept path's
            self._peername_given = True
        else:
            self._peername_given = False
            if extra is not None:
                self._extra_made = extra
            if extra is None or "peername" not in extra:
                try:
                    self._peername = sock.getpeername()
                except OSError:
                    self._peername = None
        self._sock_obj = sock
        self._sock_fd = sock.fileno()
        self._fd = <zs_sock_t>self._sock_fd
        self._fd_closed = False
        self._protocol_connected = False
        self._bind_protocol(protocol)
        return 0

    cdef int _enter_in_table(self, object loop) except -1:
        """``loop._transports[fd] = owner``, in C when it is the loop's TransportTable."""
        table = loop._transports
        if type(table) is TransportTable:
            (<TransportTable>table).enter(self._sock_fd, self)
        else:
            table[self._sock_fd] = self.owner
        return 0

    def __dealloc__(self):
        cdef PyObject *table = self._table
        if table != NULL:
            self._table = NULL
            (<TransportTable>table).forget(self._sock_fd, <PyObject *>self)
            Py_XDECREF(table)

    @property
    def _sock(self):
        """The socket.socket, None once closed; for an accepted descriptor
        made on first need, as accept() would have made it."""
        if self._fd_closed:
            return None
        if self._sock_obj is None:
            sock = socket.socket(self._sock_family, self._sock_type, self._sock_proto,
                                 fileno=self._sock_fd)
            sock.setblocking(False)
            self._sock_obj = sock
        return self._sock_obj

    cdef object _closed_socket(self):
        """The socket once closed (the extra dict's, made after the close)."""
        if self._closed_sock is None:
            # Never made while open: a closed socket of the same kind says the same.
            sock = socket.socket(self._sock_family, self._sock_type, self._sock_proto)
            sock.close()
            self._closed_sock = sock
        return self._closed_sock

    cdef int _close_fd(self) except -1:
        """Close the descriptor, through its socket object when one was made."""
        if self._fd_closed:
            return 0
        self._fd_closed = True
        sock = self._sock_obj
        if sock is not None:
            sock.close()
        else:
            zs_close(self._fd)
        return 0

    def __repr__(self):
        return self._describe("SocketTransport" if self.owner is None
                              else type(self.owner).__name__)

    def _describe(self, name):
        info = [name]
        if self._fd_closed:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._loop is not None and not self._loop.is_closed():
            reading, writing = self._polling()
            info.append("read=polling" if reading else "read=idle")
            state = "polling" if writing else "idle"
            info.append(f"write=<{state}, bufsize={self._buffer_size}>")
        return "<{}>".format(" ".join(info))

    def _polling(self):
        """Whether the transport waits to read, and to write (for its repr)."""
        selector = self._loop._selector
        return (_test_selector_event(selector, self._sock_fd, EVENT_READ),
                _test_selector_event(selector, self._sock_fd, EVENT_WRITE))

    # -- BaseTransport / ReadTransport ---------------------------------------

    def get_extra_info(self, name, default=None):
        if self._extra_made is None and PyUnicode_CheckExact(name) and name != "socket":
            return self.unmade_extra(name, default)
        return self.extra_dict().get(name, default)

    cdef object unmade_extra(self, str name, object default):
        """What the extra dict, not made yet, would answer for ``name``
        (other than "socket"): its other entries, or ``default``."""
        if name == "peername":
            return self._peer()
        if name == "sockname":
            return self._sockname
        return default

    @property
    def _extra(self):
        return self.extra_dict()

    @_extra.setter
    def _extra(self, value):
        self._extra_made = value

    cdef object extra_dict(self):
        """The extra-info dict, as the stdlib's transport holds it from the
        start (same keys, same order, the same objects every time)."""
        cdef dict extra
        if self._extra_made is not None:
            return self._extra_made
        extra = {"peername": self._peer()} if self._peername_given else {}
        # closed before anyone asked: the stdlib's wraps the closed socket
        extra["socket"] = _TransportSocket(self._sock if not self._fd_closed
                                           else self._closed_socket())
        extra["sockname"] = self._sockname
        if not self._peername_given:
            extra["peername"] = self._peer()
        self._extra_made = extra
        return extra

    cdef object _peer(self):
        """The peer's address, made from the raw one on first need."""
        if self._peer_port:
            host = zs_ipv4_text(<unsigned char *>&self._peer_ipv4)
            self._peername = _shared_host((host, self._peer_port))
            self._peer_port = 0
        return self._peername

    def set_protocol(self, protocol):
        self._bind_protocol(protocol)

    cdef int _bind_protocol(self, object protocol) except -1:
        cdef PyTypeObject *kind = Py_TYPE(protocol)
        self._unbound = 0
        if _plain_protocol_class(kind):
            # What isinstance() and getattr() below come to for such a class.
            self._buffered = PyType_IsSubtype(kind, <PyTypeObject *>_BufferedProtocol)
            self._sink = None
        else:
            self._buffered = isinstance(protocol, _BufferedProtocol)
            # A protocol may name a C reader that takes the bytes in its place.
            sink = getattr(protocol, "_read_sink", None)
            self._sink = sink if isinstance(sink, ReadSink) else None
        self._protocol = protocol
        self._target = protocol if isinstance(protocol, ReadTarget) else None
        if self._target is None:
            # Bound once, as uvloop does, so that a read calls them without a
            # lookup; one missing fails at the read that needs it, as in the stdlib.
            # (Only the kind of protocol's own: a read calls the others never.)
            if self._buffered:
                self._get_buffer = self._method_of(protocol, "get_buffer", UNBOUND_GET_BUFFER)
                self._buffer_updated = self._method_of(protocol, "buffer_updated",
                                                       UNBOUND_BUFFER_UPDATED)
                self._data_received = None
            else:
                self._get_buffer = self._buffer_updated = None
                self._data_received = self._method_of(protocol, "data_received",
                                                      UNBOUND_DATA_RECEIVED)
        else:  # reads go to the target's C method: nothing to hold per connection
            self._get_buffer = self._buffer_updated = self._data_received = None
        self._protocol_connected = True
        return 0

    cdef object _method_of(self, object protocol, str name, int unbound):
        """``protocol.<name>`` as a read calls it: the function of its class
        when it is the protocol's bound method (a bound method per
        connection is bytes an idle connection need not hold; ``unbound``
        marks it so), else itself, or None when it has none."""
        method = getattr(protocol, name, None)
        if PyMethod_Check(method) and PyMethod_GET_SELF(method) == <PyObject *>protocol:
            self._unbound |= unbound
            return <object>PyMethod_GET_FUNCTION(method)
        return method

    def get_protocol(self):
        return self._protocol

    def is_closing(self):
        return self._closing

    def is_reading(self):
        return not self._closing and not self._paused

    def pause_reading(self):
        if self._closing or self._paused:
            return
        self._paused = True
        self._remove_io(False)
        if _loop_debug(self._loop, self._table):
            logger.debug("%r pauses reading", self.owner)

    def resume_reading(self):
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()
        if _loop_debug(self._loop, self._table):
            logger.debug("%r resumes reading", self.owner)

    def close(self):
        self.c_close()

    cdef int c_close(self) except -1:
        if self._closing:
            return 0
        self._closing = True
        unregistered = self._remove_io(False)
        if not self._buffer_size:
            self._conn_lost += 1
            if not unregistered:
                self._remove_io(True)
            _call_soon(self._loop, self._table, self._call_connection_lost, (None,), self._context)
        return 0

    def abort(self):
        self._force_close(None)

    # -- WriteTransport -------------------------------------------------------

    def get_write_buffer_size(self):
        return self._buffer_size

    def get_write_buffer_limits(self):
        return (self._low_water, self._high_water)

    def _set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low

    def set_write_buffer_limits(self, high=None, low=None):
        self._set_write_buffer_limits(high=high, low=low)
        self._pause_check()

    def can_write_eof(self):
        return True

    def write_eof(self):
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer_size:
            self._sock.shutdown(SHUT_WR)

    def writelines(self, list_of_data):
        self.write(b"".join(list_of_data))

    def write(self, data):
        self.c_write(data)

    cdef int c_write(self, object data) except -1:
        cdef Py_buffer view
        cdef char *ptr
        cdef Py_ssize_t length
        cdef bint have_view = False
        cdef bint borrowed = zs_borrow_memory(data, False, &ptr, &length)
        if not borrowed and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not borrowed:
            if not data:  # as the stdlib asks: a released view raises here
                return 0
            try:
                PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            except BaseException as exc:
                return self._failed(exc, "Fatal write error on socket transport")
            have_view = True
            ptr = <char *>view.buf
            length = view.len
        # A borrowed pointer is used only until the rest is copied below,
        # before any call that could run Python code.
        try:
            if length == 0:
                return 0
            rest = self._send_now(ptr, length, data)
        finally:
            if have_view:
                PyBuffer_Release(&view)
        if rest is not None:
            self._queue_rest(rest)
        return 0

    cdef int write_mem(self, const char *ptr, Py_ssize_t length) except -1:
        """write() of memory the caller owns: sent at once, the rest copied and queued.

        For layers above the socket (TLS) that produce bytes in C buffers."""
        if length == 0:
            return 0
        rest = self._send_now(ptr, length, None)
        if rest is not None:
            self._queue_rest(rest)
        return 0

    cdef int wire_returned(self, zs_wire *wire) except -1:
        """Act on what a receive or a send through the lent socket met, as
        this transport's own read or write would (a wire that met nothing,
        zs_wire_to_report() false, needs no call)."""
        if self._conn_lost:
            return 0
        if wire.send_err:
            self._fatal_error(_os_error(wire.send_err), "Fatal write error on socket transport")
        elif wire.recv_err:
            self._fatal_error(_os_error(wire.recv_err), "Fatal read error on socket transport")
        elif wire.eof:
            return self._on_eof()
        return 0

    cdef object _send_now(self, const char *ptr, Py_ssize_t length, object data):
        """Send what the kernel takes if nothing is queued; what is left as a
        bytes to queue (``data`` itself when it is bytes and nothing went), or None."""
        cdef long n = 0
        cdef int err
        if self._conn_lost:
            if self._conn_lost >= LOG_THRESHOLD:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return None
        if self._buffer_size == 0:
            # Send now; queue only what the kernel does not take.
            n = zs_send(self._fd, ptr, <size_t>length, 0)
            if n < 0:
                err = zs_last_error()
                if not (zs_is_would_block(err) or err == ZS_EINTR):
                    self._fatal_error(_os_error(err), "Fatal write error on socket transport")
                    return None
                n = 0
            if n == length:
                return None
        if n == 0 and data is not None and PyBytes_CheckExact(data):
            return data  # immutable: no copy
        return PyBytes_FromStringAndSize(ptr + n, length - n)

    cdef int _queue_rest(self, object rest) except -1:
        if self._buffer_size == 0:
            self._add_io(True)
        if self._queue is None:
            self._queue = collections.deque()
        self._queue.append(rest)
        self._buffer_size += PyBytes_GET_SIZE(rest)
        self._pause_check()
        return 0

    # -- flow control (the stdlib's _FlowControlMixin) ---------------------------

    cdef int _pause_check(self) except -1:
        if self._buffer_size <= self._high_water or self._protocol_paused:
            return 0
        self._protocol_paused = True
        return self._tell_protocol("pause_writing")

    cdef int _resume_check(self) except -1:
        if not self._protocol_paused or self._buffer_size > self._low_water:
            return 0
        self._protocol_paused = False
        return self._tell_protocol("resume_writing")

    cdef int _tell_protocol(self, str method) except -1:
        """Call the protocol's pause_writing/resume_writing; a failure is reported, not raised."""
        try:
            getattr(self._protocol, method)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": f"protocol.{method}() failed",
                "exception": exc,
                "transport": self.owner,
                "protocol": self._protocol,
            })
        return 0

    def _maybe_pause_protocol(self):
        self._pause_check()

    def _maybe_resume_protocol(self):
        self._resume_check()

    # -- registration with the loop's selector ------------------------------------

    def _start_reading(self):
        if self._closing or self._paused:
            return
        self._add_io(False)

    cdef int _add_io(self, bint writing, object context=None) except -1:
        """The loop's _add_reader/_add_writer, with an IOHandle for the callback."""
        cdef Selector native
        cdef PyObject *found
        cdef int bit = ZS_EV_WRITE if writing else ZS_EV_READ
        loop = self._loop
        native = self._native_selector(loop)  # (the stdlib's _check_closed too)
        if native is not None:
            if _loop_closed(loop):
                raise RuntimeError("Event loop is closed")
        else:
            loop._check_closed()
        handle = new_io_handle(self, writing, context)
        if native is None:
            selector = loop._selector
            if _registers_natively(selector):
                native = <Selector>selector
        if native is not None:
            found = native.key_for_fd(self._fd)
            if found == NULL:
                native.register_fd(self._sock_fd, self._sock_fd, bit,
                                   (None, handle) if writing else (handle, None))
                return 0
            key = <object>found  # owned: the modify below drops the selector's
            reader, writer = <object>PyTuple_GET_ITEM(key, 3)
            if writing:
                native.modify_fd(self._sock_fd, native.interest_of(self._fd) | bit, (reader, handle))
                old = writer
            else:
                native.modify_fd(self._sock_fd, native.interest_of(self._fd) | bit, (handle, writer))
                old = reader
            if old is not None:
                old.cancel()
            return 0
        event = EVENT_WRITE if writing else EVENT_READ
        try:
            key = selector.get_key(self._sock_fd)
        except KeyError:
            selector.register(self._sock_fd, event, (None, handle) if writing else (handle, None))
            return 0
        mask, (reader, writer) = key.events, key.data
        if writing:
            selector.modify(self._sock_fd, mask | event, (reader, handle))
            old = writer
        else:
            selector.modify(self._sock_fd, mask | event, (handle, writer))
            old = reader
        if old is not None:
            old.cancel()
        return 0

    cdef int _attach_fd(self) except -1:
        """What the I/O backend needs for an accepted descriptor before the
        transport is entered anywhere: nothing on readiness (the io_uring
        core opens its stream slot)."""
        return 0

    cdef int _begin_reading(self, object context) except -1:
        """An accepted connection's reading starts now, its handle run in ``context``."""
        return self._add_io(False, context)

    cdef Selector _native_selector(self, object loop):
        """The loop's selector when the loop's registrations can be made on
        it in C (see _removes_natively), else None."""
        cdef TransportTable table
        if self._table != NULL:
            table = <TransportTable>self._table
            if not table.native_io(loop):
                return None
            if table.memo_loop == <PyObject *>loop:
                return <Selector>table.selector  # (what the loop holds, checked by native_io)
        elif not _removes_natively(loop):
            return None
        return <Selector>loop._selector

    cdef int _remove_io(self, bint writing) except -1:
        """The loop's _remove_reader/_remove_writer for this descriptor: in C
        while they are the stdlib's and the selector zerosock's own.  1 when
        that left the descriptor unregistered (the other removal has nothing
        to do), else 0."""
        cdef Selector native
        cdef PyObject *found
        cdef int mask
        loop = self._loop
        native = self._native_selector(loop)
        if native is None:
            if writing:
                loop._remove_writer(self._sock_fd)
            else:
                loop._remove_reader(self._sock_fd)
            return 0
        if _loop_closed(loop):
            return 0
        found = native.key_for_fd(self._fd)
        if found == NULL:
            return 1
        key = <object>found  # owned: unregistering drops the selector's
        reader, writer = <object>PyTuple_GET_ITEM(key, 3)
        mask = native.interest_of(self._fd) & ~(ZS_EV_WRITE if writing else ZS_EV_READ)
        if not mask:
            native.unregister_fd(self._sock_fd)
        elif writing:
            native.modify_fd(self._sock_fd, mask, (reader, None))
        else:
            native.modify_fd(self._sock_fd, mask, (None, writer))
        old = writer if writing else reader
        if type(old) is IOHandle:
            (<IOHandle>old).c_cancel()
        elif old is not None:
            old.cancel()
        return not mask

    # -- reading ------------------------------------------------------------------

    def _read_ready(self):
        self.read_ready()

    cdef bint settle_ring(self) except -1:
        return False  # (a UDP transport on completions settles its sends)

    cdef int read_ready(self) except -1:
        """One read: 1 when it was quiet (a C sink took the data, no Python
        code ran, the socket was left with nothing more to read), else 0."""
        if self._conn_lost:
            return 0
        if self._sink is not None:
            return self._read_into_sink()
        if self._target is not None:
            self._read_into_target()
        elif self._buffered:
            self._read_into_buffer()
        else:
            self._read_bytes()
        return 0

    cdef object protocol_buffer(self, Py_buffer *view, char **ptr, Py_ssize_t *length):
        """The protocol's ``get_buffer(-1)`` as writable memory at ``*ptr``:
        the buffer object (exported into ``*view`` unless borrowed, when
        ``view.obj`` is left NULL), or None when that failed (reported)."""
        cdef bint borrowed = False
        memset(view, 0, sizeof(Py_buffer))  # view.obj NULL: nothing exported
        try:
            protocol = self._protocol
            get_buffer = self._get_buffer
            if get_buffer is None:
                buf = protocol.get_buffer(-1)
            elif self._unbound & UNBOUND_GET_BUFFER:
                buf = get_buffer(protocol, -1)
            else:
                buf = get_buffer(-1)
            borrowed = zs_borrow_memory(buf, True, ptr, length)
            if not (length[0] if borrowed else len(buf)):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except BaseException as exc:
            self._failed(exc, "Fatal error: protocol.get_buffer() call failed.")
            return None
        if not borrowed:
            try:
                PyObject_GetBuffer(buf, view, PyBUF_WRITABLE)
            except BaseException as exc:
                # Reported as what socket.recv_into() raises for a buffer it cannot fill.
                self._failed(exc, "Fatal read error on socket transport", TypeError(
                    f"recv_into() argument 'buffer' must be read-write bytes-like object, "
                    f"not {type(buf).__name__}"))
                return None
            ptr[0] = <char *>view.buf
            length[0] = view.len
        return buf

    cdef inline int hand_data(self, object data) except -1:
        """``protocol.data_received(data)``, a failure a fatal error."""
        try:
            if self._unbound & UNBOUND_DATA_RECEIVED:
                zs_call_held_with(<PyObject *>self._data_received, <PyObject *>self._protocol, data)
            elif self._data_received is not None:
                zs_call_held(<PyObject *>self._data_received, data)
            else:
                self._protocol.data_received(data)
        except BaseException as exc:
            return self._failed(exc, "Fatal error: protocol.data_received() call failed.")
        return 0

    cdef inline int hand_filled(self, Py_ssize_t n) except -1:
        """``protocol.buffer_updated(n)``, a failure a fatal error."""
        try:
            protocol = self._protocol
            buffer_updated = self._buffer_updated
            if buffer_updated is None:
                protocol.buffer_updated(n)
            elif self._unbound & UNBOUND_BUFFER_UPDATED:
                buffer_updated(protocol, n)
            else:
                buffer_updated(n)
        except BaseException as exc:
            return self._failed(exc, "Fatal error: protocol.buffer_updated() call failed.")
        return 0

    cdef int _read_into_buffer(self) except -1:
        cdef Py_buffer view
        cdef char *ptr
        cdef Py_ssize_t length
        cdef long n
        cdef int err
        buf = self.protocol_buffer(&view, &ptr, &length)
        if buf is None:
            return 0
        # ``buf`` holds the memory; no Python code runs until the read is done.
        n = zs_recv(self._fd, ptr, <size_t>length, 0)
        err = zs_last_error() if n < 0 else 0
        if <PyObject *>view.obj != NULL:
            PyBuffer_Release(&view)
        buf = None
        if n < 0:
            if zs_is_would_block(err) or err == ZS_EINTR:
                return 0
            self._fatal_error(_os_error(err), "Fatal read error on socket transport")
            return 0
        if n == 0:
            return self._on_eof()
        return self.hand_filled(n)

    cdef long _recv_scratch(self) except -2:
        """One recv into the shared scratch buffer: the byte count (0 at end of
        stream), or -1 when there is nothing to deliver (it would block, or the
        error was reported and the transport is closing)."""
        cdef long n = zs_recv(self._fd, _scratch, READ_CHUNK, 0)
        cdef int err
        if n < 0:
            err = zs_last_error()
            if not (zs_is_would_block(err) or err == ZS_EINTR):
                self._fatal_error(_os_error(err), "Fatal read error on socket transport")
            return -1
        return n

    cdef int _read_bytes(self) except -1:
        cdef long n = self._recv_scratch()
        if n < 0:
            return 0
        if n == 0:
            return self._on_eof()
        data = self._spare
        if data is not None and PyBytes_GET_SIZE(data) == n:
            # Last read's bytes came back unreferenced: refill it, no allocation.
            self._spare = None
            zs_bytes_refill(data, _scratch, n)
        else:
            data = PyBytes_FromStringAndSize(_scratch, n)
        self.hand_data(data)
        if BYTES_REFILL and Py_REFCNT(data) == 1:  # only this frame holds it: nobody can see a refill
            self._spare = data
        return 0

    cdef int _read_into_sink(self) except -1:
        cdef ReadSink sink = self._sink  # held: feeding may run Python code that resets _sink
        cdef long n = self._recv_scratch()
        cdef int quiet
        if n < 0:
            return 0
        if n == 0:
            self._on_eof()
            return 0
        try:
            quiet = sink.feed(_scratch, n)
        except BaseException as exc:
            return self._failed(exc, "Fatal error: protocol.data_received() call failed.")
        # A full chunk may have left more to read: not quiet.
        return quiet == 1 and n < READ_CHUNK

    cdef int _read_into_target(self) except -1:
        cdef ReadTarget target = self._target  # held: the protocol's code may replace it
        cdef zs_wire wire
        zs_wire_lend_socket(&wire, self._fd, 1, 0)
        try:
            target.wire_readable(&wire)
        except BaseException as exc:
            return self._failed(exc, "Fatal error: protocol.buffer_updated() call failed.")
        if zs_wire_to_report(&wire):
            self.wire_returned(&wire)
        return 0

    cdef int _on_eof(self) except -1:
        if _loop_debug(self._loop, self._table):
            logger.debug("%r received EOF", self.owner)
        try:
            keep_open = self._protocol.eof_received()
        except BaseException as exc:
            return self._failed(exc, "Fatal error: protocol.eof_received() call failed.")
        if keep_open:
            # The protocol may still write; there is nothing more to read.
            self._remove_io(False)
        elif self.owner is not None and not _close_is_ours(self.owner):
            self.owner.close()  # as the stdlib's self.close(): a replaced close() is the one called
        elif self.owner is not None:
            self.c_close()
        else:
            self.close()
        return 0

    # -- writing queued data --------------------------------------------------------

    def _write_ready(self):
        self.write_ready()

    cdef int write_ready(self) except -1:
        cdef zs_iovec iov[MAX_IOV]
        cdef zs_msghdr msg
        cdef int count = 0, err
        cdef long n
        cdef Py_ssize_t offset = self._head_offset
        assert self._buffer_size, "Data should not be empty"
        if self._conn_lost:
            return 0
        for chunk in self._queue:
            zs_iov_set(&iov[count], PyBytes_AS_STRING(chunk) + offset,
                       <size_t>(PyBytes_GET_SIZE(chunk) - offset))
            offset = 0
            count += 1
            if count == MAX_IOV or not ZS_HAVE_MSG:
                break
        if count == 1:
            chunk = self._queue[0]
            n = zs_send(self._fd, PyBytes_AS_STRING(chunk) + self._head_offset,
                        <size_t>(PyBytes_GET_SIZE(chunk) - self._head_offset), 0)
        else:
            memset(&msg, 0, sizeof(msg))
            msg.msg_iov = iov
            msg.msg_iovlen = count
            n = zs_sendmsg(self._fd, &msg, 0)
        if n < 0:
            err = zs_last_error()
            if zs_is_would_block(err) or err == ZS_EINTR:
                return 0
            self._remove_io(True)
            return self._write_failed(_os_error(err))
        self._consume(n)
        self._resume_check()  # may write more
        if not self._buffer_size:
            self._queue = None  # an idle connection holds no queue
            self._remove_io(True)
            if self._conn_lost:
                # resume_writing closed the transport, or a write in it failed: the
                # connection_lost that scheduled carries the cause (CPython gh-156512).
                return 0
            if self._empty_waiter is not None:
                self._empty_waiter.set_result(None)
            if self._closing:
                self._call_connection_lost(None)
            elif self._eof:
                self._sock.shutdown(SHUT_WR)
        return 0

    cdef int _consume(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t left
        self._buffer_size -= n
        while n > 0:
            chunk = self._queue[0]
            left = PyBytes_GET_SIZE(chunk) - self._head_offset
            if n < left:
                self._head_offset += n
                return 0
            n -= left
            self._queue.popleft()
            self._head_offset = 0
        return 0

    cdef int _write_failed(self, object exc) except -1:
        """A send of the queue failed with ``exc``: the queue dropped, the
        transport's fatal error, and a waiter for an empty queue told.  0."""
        self._clear_queue()
        self._fatal_error(exc, "Fatal write error on socket transport")
        if self._empty_waiter is not None:
            self._empty_waiter.set_exception(exc)
        return 0

    cdef int _clear_queue(self) except -1:
        self._queue = None
        self._head_offset = 0
        self._buffer_size = 0
        return 0

    # -- closing ----------------------------------------------------------------------

    cdef int _failed(self, BaseException exc, str message, object reported=None) except -1:
        """A call into the protocol (or for a buffer of its) raised ``exc``: as
        in the stdlib, SystemExit and KeyboardInterrupt go on up, and anything
        else is a fatal error of the transport, reported as ``reported`` when
        given.  0: what the caller was doing is over."""
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise exc
        self._fatal_error(exc if reported is None else reported, message)
        return 0

    def _fatal_error(self, exc, message="Fatal error on transport"):
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self.owner, message, exc_info=exc)
        else:
            self._loop.call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self.owner,
                "protocol": self._protocol,
            })
        self._force_close(exc)

    cdef bint _drop_queued(self) except -1:
        """Drop unsent output for a forced close; whether there was any."""
        if not self._buffer_size:
            return False
        self._clear_queue()
        return True

    def _force_close(self, exc):
        if self._conn_lost:
            return
        if self._drop_queued():
            self._remove_io(True)
        if not self._closing:
            self._closing = True
            self._remove_io(False)
        self._conn_lost += 1
        _call_soon(self._loop, self._table, self._call_connection_lost, (exc,), self._context)

    def _call_connection_lost(self, exc):
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._close_fd()
            if self._extra_made is None:
                self._closed_sock = self._sock_obj
            self._sock_obj = None
            self._protocol = None
            self._get_buffer = self._buffer_updated = self._data_received = None
            self._unbound = 0
            self._sink = None
            self._target = None
            self._loop = None
            server = self._server
            if server is not None:
                _server_detach(server, self.owner, self._table)
                self._server = None
            self.owner = None  # the cycle through the facade ends with the connection
        if self._empty_waiter is not None:
            self._empty_waiter.set_exception(ConnectionError("Connection is closed by peer"))

    # -- sendfile support (the loop's _sendfile_native) ----------------------------------

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._buffer_size:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self):
        self._empty_waiter = None


cdef Py_ssize_t CORE_OFFSET  # where a SocketTransport keeps its _core
cdef zs_type_memo _close_memo  # SocketTransport, when last found to keep its close()
cdef dict _own_close = {}  # "close": SocketTransport's, set once the class is complete


cdef bint _close_is_ours(object transport) except -1:
    """Whether ``transport.close()`` is SocketTransport's own: its core's close."""
    return (type(transport) is _SocketTransportType
            and keeps_methods(transport, &_close_memo, _own_close))
cdef type _SocketTransportType


cdef object facade_core(object transport, type facade, Py_ssize_t offset, type core_type):
    if not PyObject_TypeCheck(transport, <PyTypeObject *>facade):
        raise TypeError(f"a {facade.__name__} is required, not {type(transport).__name__!r}")
    core = zs_slot_get(transport, offset)
    if core == NULL:
        raise AttributeError("_core")  # __init__ never ran
    if not PyObject_TypeCheck(<object>core, <PyTypeObject *>core_type):
        raise TypeError(f"_core is no {core_type.__name__}: {type(<object>core).__name__!r}")
    return <object>core


cdef inline TransportCore _core_of(object transport):
    """``transport._core`` of a SocketTransport."""
    return <TransportCore>facade_core(transport, _SocketTransportType, CORE_OFFSET, TransportCore)


# The calls a protocol makes on every message, as C methods of SocketTransport
# (see _cmethod_c): the interpreter calls them without building arguments or
# looking up ``_core``.
cdef object _write(object transport, object data):
    _core_of(transport).c_write(data)
    return None


cdef object _get_write_buffer_size(object transport, object unused):
    return _core_of(transport)._buffer_size


cdef object _is_closing(object transport, object unused):
    return _core_of(transport)._closing


# get_extra_info() is BaseTransport's in the stdlib, ``self._extra.get(name,
# default)``: a Python call and a property read per call here.  In C while it
# is provably the same: the instance is a plain SocketTransport, the method it
# would inherit is still BaseTransport's own, and ``_extra`` still the facade's
# property.  Otherwise (a subclass, a patched base class) the inherited method
# runs, as it does on the stdlib's transport.
cdef object _base_get_extra_info = transports.BaseTransport.__dict__["get_extra_info"]
cdef object _extra_property  # the facade's ``_extra`` property, set once the class is complete
cdef zs_type_memo _extra_info_memo  # SocketTransport, when last found to keep it


cdef object _inherited_get_extra_info():
    for klass in _SocketTransportType.__mro__[1:]:
        if "get_extra_info" in klass.__dict__:
            return klass.__dict__["get_extra_info"]
    return None


cdef bint _extra_info_is_stdlib(object transport) except -1:
    cdef PyTypeObject *kind = <PyTypeObject *>_SocketTransportType
    if type(transport) is not _SocketTransportType:
        return False
    if not zs_type_unchanged(&_extra_info_memo, kind):
        if (_inherited_get_extra_info() is not _base_get_extra_info
                or zs_type_lookup(kind, "_extra") != <PyObject *>_extra_property):
            return False
        zs_remember_type(&_extra_info_memo, kind)
    return True


cdef object _get_extra_info(object transport, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    cdef PyObject *found
    cdef TransportCore core
    if kwnames == NULL and 1 <= nargs <= 2 and _extra_info_is_stdlib(transport):
        name = <object>args[0]
        default = <object>args[1] if nargs == 2 else None
        core = _core_of(transport)
        if core._extra_made is None and PyUnicode_CheckExact(name) and name != "socket":
            return core.unmade_extra(name, default)
        extra = core.extra_dict()
        if PyDict_CheckExact(extra):
            found = PyDict_GetItemWithError(extra, name)  # raises as dict.get for an unhashable name
            return default if found == NULL else <object>found
        return extra.get(name, default)
    # Any other call is the inherited method's, arguments and errors included.
    positional = tuple([<object>args[i] for i in range(nargs)])
    keywords = {}
    if kwnames != NULL:
        for i, key in enumerate(<tuple>kwnames):
            keywords[key] = <object>args[nargs + i]
    return super(SocketTransport, transport).get_extra_info(*positional, **keywords)


def close_unclosed(transport):
    """A transport's ``__del__``: warn as the stdlib does and close the socket
    when it is still open, and return the core it did it for (else None)."""
    return _close_unclosed(transport)


cdef object _close_unclosed(object transport):
    cdef PyObject *found
    if PyObject_TypeCheck(transport, <PyTypeObject *>_SocketTransportType):
        found = zs_slot_get(transport, CORE_OFFSET)
        core = <object>found if found != NULL else None  # None when __init__ failed
    else:
        core = getattr(transport, "_core", None)
    if not isinstance(core, TransportCore) or (<TransportCore>core)._fd_closed:
        return None
    warnings.warn(f"unclosed transport {transport!r}", ResourceWarning, source=transport)
    (<TransportCore>core)._close_fd()
    return core


def core_facade(methods=(), states=()):
    """A class decorator for a transport whose state and paths are its
    ``_core``'s: each name of ``methods`` calls the core's method of that
    name, each of ``states`` reads and writes the core's attribute -- what
    the stdlib's loop, sendfile, TLS and tests call and read on a transport."""
    def decorate(cls):
        for name in methods:
            setattr(cls, name, _forwarder(cls.__name__, name))
        for name in states:
            setattr(cls, name, _core_attribute(name))
        return cls
    return decorate


def _forwarder(owner, name):
    @cython.binding(True)
    def method(self, *args, **kwargs):
        return getattr(self._core, name)(*args, **kwargs)
    method.__name__ = name
    method.__qualname__ = f"{owner}.{name}"  # what handle reprs and reports show
    method.__doc__ = getattr(transports.Transport, name, method).__doc__
    return method


def _core_attribute(name):
    return property(lambda self: getattr(self._core, name),
                    lambda self, value: setattr(self._core, name, value))


@core_facade(
    methods=("_start_reading", "_read_ready", "_write_ready", "_fatal_error", "_force_close",
                 "_call_connection_lost", "_make_empty_waiter", "_reset_empty_waiter"),
    states=("_loop", "_protocol", "_sock", "_sock_fd", "_server", "_extra", "_empty_waiter",
            "_closing", "_paused", "_eof", "_conn_lost", "_protocol_connected",
            "_protocol_paused", "_high_water", "_low_water"))
class SocketTransport(transports._FlowControlMixin, transports.Transport):
    """A stream transport over a connected, non-blocking socket: an
    ``asyncio.Transport`` whose state and I/O paths are a C :class:`TransportCore`.

    What the stdlib's selector transport inherits from ``asyncio.transports``
    (``get_extra_info``, the write buffer limits, ``writelines`` before 3.12)
    it inherits too, so that a patch of those base classes reaches it as it
    reaches the stdlib's."""

    __slots__ = ("_core", "__weakref__", "__dict__")

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    max_size = READ_CHUNK

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None, context=None,
                 core_type=TransportCore):
        # ``core_type``: a TransportCore subclass doing the I/O another way
        # (the io_uring loop's completions, zerosock._aio_ring_c).
        self._core = core_type(self, loop, sock, protocol, waiter, extra, server, context)

    write = c_method(<void *>_write, METH_O,
                     b"write($self, data, /)\n--\n\n"
                     b"Send data: at once as far as the socket takes it, the rest queued.")
    get_write_buffer_size = c_method(<void *>_get_write_buffer_size, METH_NOARGS,
                                     b"get_write_buffer_size($self, /)\n--\n\n"
                                     b"Bytes queued and not yet sent.")
    is_closing = c_method(<void *>_is_closing, METH_NOARGS,
                          b"is_closing($self, /)\n--\n\n"
                          b"True once the transport is closing or closed.")
    get_extra_info = c_method(<void *>_get_extra_info, METH_FASTCALL | METH_KEYWORDS,
                              b"get_extra_info($self, name, default=None)\n--\n\n"
                              b"Optional transport information: 'peername', 'sockname', "
                              b"'socket', ...")

    if WRITELINES_OWN:
        def writelines(self, list_of_data):
            _core_of(self).c_write(b"".join(list_of_data))

    def is_reading(self):
        cdef TransportCore core = _core_of(self)
        return not core._closing and not core._paused

    def get_protocol(self):
        return _core_of(self)._protocol

    def set_protocol(self, protocol):
        _core_of(self).set_protocol(protocol)

    def pause_reading(self):
        _core_of(self).pause_reading()

    def resume_reading(self):
        _core_of(self).resume_reading()

    def close(self):
        _core_of(self).close()

    def abort(self):
        _core_of(self).abort()

    def can_write_eof(self):
        return True

    def write_eof(self):
        _core_of(self).write_eof()

    def __repr__(self):
        return self._core._describe(type(self).__name__)

    def __del__(self):
        core = _close_unclosed(self)
        if core is not None and SERVER_TRACKS_TRANSPORTS and core._server is not None:
            core._server._detach(self)


_SocketTransportType = SocketTransport
CORE_OFFSET = zs_slot_offset(SocketTransport.__dict__["_core"])
_own_close["close"] = SocketTransport.__dict__["close"]


# -- the accept path's transports ------------------------------------------------------------

cdef int AF_INET_FAMILY = socket.AF_INET
cdef int AF_INET6_FAMILY = socket.AF_INET6
cdef int SOCK_STREAM_TYPE = socket.SOCK_STREAM
cdef int TCP_NODELAY_OPT = socket.TCP_NODELAY
cdef int IPPROTO_TCP_LEVEL = socket.IPPROTO_TCP

cdef extern from *:
    """
    /* An instance of a Python class made by its tp_new, without __init__. */
    static PyObject *zs_new_instance(PyObject *kind)
    {
        PyObject *args = PyTuple_New(0);
        PyObject *made;
        if (args == NULL)
            return NULL;
        made = ((PyTypeObject *)kind)->tp_new((PyTypeObject *)kind, args, NULL);
        Py_DECREF(args);
        return made;
    }
    #ifdef _WIN32
    #define zs_set_tcp_nodelay(fd, level, opt) \\
        do { BOOL one_ = TRUE; (void)setsockopt((fd), (level), (opt), (const char *)&one_, sizeof(one_)); } while (0)
    #else
    #define zs_set_tcp_nodelay(fd, level, opt) \\
        do { int one_ = 1; (void)setsockopt((fd), (level), (opt), &one_, sizeof(one_)); } while (0)
    #endif
    """
    void zs_set_tcp_nodelay(zs_sock_t fd, int level, int opt)
    object zs_new_instance(object kind)


cdef object new_accepted_transport(object loop, int fd, int family,
                                   int kind, int proto, object peername, object sockname,
                                   object protocol, object server, object context,
                                   bint context_is_the_transports,
                                   unsigned int peer_ipv4=0, unsigned short peer_port=0):
    """The transport of an accepted connection, made while ``context`` is
    current.  ``context_is_the_transports``: it is the one every callback of
    the transport runs in (3.15's server context, copied per connection),
    else only its reads, as the stdlib's earlier versions copy the context
    for each of the others."""
    cdef TransportCore core
    cdef type core_type = stream_core_type(loop, protocol)
    owner = zs_new_instance(_SocketTransportType)
    core = core_type.__new__(core_type)
    zs_slot_set(owner, CORE_OFFSET, core)
    core.owner = owner
    core._loop = loop
    core._high_water = 64 * 1024
    core._low_water = 16 * 1024
    core._sock_fd = fd
    core._fd = <zs_sock_t>fd
    core._fd_closed = False
    core._attach_fd()
    core._sock_family = family
    core._sock_type = kind
    core._sock_proto = proto
    if sockname is None:
        sockname = core._sock.getsockname()
    core._sockname = sockname
    if peer_port:
        core._peer_ipv4 = peer_ipv4
        core._peer_port = peer_port
    else:
        core._peername = _shared_host(peername)
    core._peername_given = True
    core._bind_protocol(protocol)
    core._server = server
    core._enter_in_table(loop)
    if server is not None:
        _server_attach(server, owner, core._table)
    # The stdlib's _set_nodelay: for TCP sockets that say so.
    if family in (AF_INET_FAMILY, AF_INET6_FAMILY) and kind == SOCK_STREAM_TYPE and proto == IPPROTO_TCP_LEVEL:
        zs_set_tcp_nodelay(core._fd, IPPROTO_TCP_LEVEL, TCP_NODELAY_OPT)
    if context_is_the_transports:
        core._context = context
    _call_soon(loop, core._table, protocol.connection_made, (owner,), core._context)
    # Reading starts now: connection_made runs among the ready callbacks of
    # the next iteration, before the reads its poll finds.
    core._begin_reading(context)
    return owner

_extra_property = SocketTransport.__dict__["_extra"]


# -- for the C stream writer ------------------------------------------------------------

cdef dict _own_methods = {name: SocketTransport.__dict__[name] for name in ("write", "is_closing")}
cdef zs_type_memo _own_methods_memo  # SocketTransport, when last found to keep them


cdef TransportCore direct_core(object transport):
    if type(transport) is not _SocketTransportType:
        return None
    if not keeps_methods(transport, &_own_methods_memo, _own_methods):
        return None
    core = zs_slot_get(transport, CORE_OFFSET)
    if core == NULL:
        return None
    return <TransportCore>core
