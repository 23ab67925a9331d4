# cython: language_level=3
"""asyncio streams in C for zerosock.aio: the standard library's StreamReader,
StreamReaderProtocol and StreamWriter with their hot paths in C.

The loop adopts the stdlib's stream objects when it makes a socket transport
for a ``StreamReaderProtocol`` (what ``asyncio.open_connection``,
``start_server``, their Unix twins and ``connect_accepted_socket`` build):
their classes become the subclasses below, same layout, same attributes, and
the reader's state moves into a C :class:`ReaderCore`.  The transport then
copies each read into the reader's buffer without a ``bytes`` object or a
``data_received`` call, and a read whose data is buffered completes without a
Future.  Anything off the fast paths runs the stdlib's own methods, so the
behaviour is the running Python's, version by version."""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_CheckExact, PyByteArray_GET_SIZE
from cpython.object cimport PyObject, PyObject_Call, PyTypeObject, Py_TYPE
from cpython.ref cimport Py_INCREF
from cpython.weakref cimport PyWeakref_NewRef

import collections
import os
import sys
from types import BuiltinMethodType
from asyncio import base_events, exceptions, format_helpers, futures, streams

from zerosock._aio_transport_c cimport ReadSink, TransportCore, direct_core
from zerosock._cpython_c cimport (
    zs_bytearray_append, zs_bytearray_consume, zs_forget_type, zs_install_op_slots, zs_remember_type,
    zs_step_fn, zs_type_memo, zs_type_unchanged, zs_version_tags_on,
)
from zerosock._cpython_c import (
    STREAM_PROTOCOL_STATE, STREAM_READER_STATE, STREAM_WRITER_STATE, enabled,
)

cdef extern from *:
    """
    /* An int as a Py_ssize_t: 1, or 0 when it does not fit (-1: another error). */
    static int zs_as_ssize(PyObject *n, Py_ssize_t *out)
    {
        *out = PyLong_AsSsize_t(n);
        if (*out == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return -1;
            PyErr_Clear();
            return 0;
        }
        return 1;
    }
    /* Whether a weak reference's object is still alive. */
    static int zs_weakref_alive(PyObject *ref)
    {
    #if PY_VERSION_HEX >= 0x030D0000
        PyObject *obj;
        int alive = PyWeakref_GetRef(ref, &obj);
        Py_XDECREF(obj);
        return alive;
    #else
        PyObject *obj = PyWeakref_GetObject(ref);
        return obj == NULL ? -1 : obj != Py_None;
    #endif
    }
    static Py_ssize_t zs_find(const char *hay, Py_ssize_t haylen, const char *needle,
                              Py_ssize_t nlen, Py_ssize_t start)
    {
        const char *p = hay + start, *end = hay + haylen, *q;
        if (start < 0 || nlen <= 0 || haylen - start < nlen)
            return -1;
        while (end - p >= nlen) {
            q = (const char *)memchr(p, needle[0], (size_t)((end - p) - nlen + 1));
            if (q == NULL)
                return -1;
            if (memcmp(q, needle, (size_t)nlen) == 0)
                return q - hay;
            p = q + 1;
        }
        return -1;
    }

    """
    int zs_weakref_alive(object ref) except -1
    int zs_as_ssize(object n, Py_ssize_t *out) except -1
    Py_ssize_t zs_find(const char *hay, Py_ssize_t haylen, const char *needle,
                       Py_ssize_t nlen, Py_ssize_t start)

cdef extern from "Python.h":
    object PyObject_GenericGetDict(object o, void *context)
    PyObject *PyDict_GetItemWithError(object d, object key) except? NULL


cdef object _StdReader = streams.StreamReader
cdef object _StdProtocol = streams.StreamReaderProtocol
cdef object _StdWriter = streams.StreamWriter
cdef object _std_drain_helper = streams.FlowControlMixin._drain_helper
cdef object IncompleteReadError = exceptions.IncompleteReadError
cdef object InvalidStateError = exceptions.InvalidStateError
cdef object LimitOverrunError = exceptions.LimitOverrunError
cdef object _DEFAULT_LIMIT = streams._DEFAULT_LIMIT
cdef object _extract_stack = format_helpers.extract_stack
cdef bytes NEWLINE = b"\n"
cdef dict _futures_globals = futures.__dict__
# The Future the C _asyncio module makes, and two of its methods, called
# unbound on exactly that type: no method lookup on the instance.
cdef type _CFuture = futures.Future
cdef object _future_set_result = _CFuture.set_result
cdef object _future_result = _CFuture.result
cdef object _stdlib_create_future = base_events.BaseEventLoop.create_future
cdef object _c_loop_create_future = None  # zerosock.aio's C create_future, once looked up
cdef object _c_loop_call_soon = None  # and its C call_soon

cdef extern from "Python.h":
    Py_ssize_t PyDict_GET_SIZE(object d)


cdef bint _makes_plain_futures(object create_future) except -1:
    """Whether a loop class's create_future is the stdlib's or zerosock.aio's
    C one: both make ``futures.Future(loop=loop)`` (outside debug mode, where
    they differ only in the frames of its source traceback)."""
    if create_future is None:
        return False
    if create_future is _stdlib_create_future:
        return True
    _look_up_c_loop()
    return create_future is _c_loop_create_future


cdef int _look_up_c_loop() except -1:
    global _c_loop_create_future, _c_loop_call_soon
    if _c_loop_create_future is None:
        # Imported here: the C loop imports this module.
        from zerosock._aio_c import EventLoop
        _c_loop_create_future = EventLoop.__dict__["create_future"]
        _c_loop_call_soon = EventLoop.__dict__["call_soon"]
    return 0

# The fast paths of zerosock._cpython_c that this module takes when they are on.
cdef bint BYTEARRAY_INTERNALS = enabled("bytearray_internals")
zs_version_tags_on = enabled("type_version_tags")

# The stdlib streams when set to "0": a switch for comparing and for bisecting.
# The C streams take over the stdlib's objects in place: not while that is off.
c_streams = (os.environ.get("ZEROSOCK_C_STREAMS", "1") not in ("0", "")
             and enabled("stream_class_switch"))


cdef enum Kind:
    READ
    READEXACTLY
    READUNTIL
    READLINE
    DONE


@cython.final
cdef class ReaderCore(ReadSink):
    """The state of one adopted StreamReader: the stdlib's attributes, typed."""
    cdef object buffer       # the reader's _buffer bytearray
    cdef object limit        # _limit as given
    cdef Py_ssize_t climit   # and as a C integer when ``fast``
    cdef bint fast           # buffer a bytearray, limit an int: the C paths apply
    cdef object loop
    cdef bint eof
    cdef object waiter
    cdef object exception
    cdef object transport
    cdef bint paused
    cdef object owner_ref    # weak: the StreamReader whose state this is
    cdef bint stdlib_future  # the loop's create_future() is the stdlib's
    cdef dict future_kwargs  # {"loop": loop}, kept rather than built per Future
    # Completing the waiter runs no Python code (see wakeup): it is a
    # futures.Future made by create_future for ``loop``, whose call_soon
    # (the C Future calls it per done-callback) is the C loop's.
    cdef bint plain_made     # create_future's last Future is futures.Future(loop=loop)
    cdef bint plain_waiter   # the waiter is such a Future
    cdef dict loop_dict      # the loop's instance __dict__, where a patch of call_soon lands
    cdef bint loop_dict_known  # loop_dict is it (None: the loop has none)
    cdef Py_ssize_t loop_dict_size  # its size when own_call_soon was found
    cdef bint own_call_soon  # loop_dict holds a call_soon
    cdef zs_type_memo loop_type_memo  # its type, when its call_soon was found C

    def __cinit__(self, owner, limit, loop, buffer):
        self.owner_ref = PyWeakref_NewRef(owner, None)
        self.set_loop(loop)
        self.buffer = buffer
        self.set_limit(limit)

    cdef int set_loop(self, loop) except -1:
        self.loop = loop
        self.stdlib_future = _makes_plain_futures(getattr(type(loop), "create_future", None))
        self.future_kwargs = {"loop": loop}
        self.plain_waiter = False
        state = getattr(loop, "__dict__", None)
        self.loop_dict_known = state is None or type(state) is dict
        self.loop_dict = state if type(state) is dict else None
        self.loop_dict_size = -1
        zs_forget_type(&self.loop_type_memo)
        return 0

    cdef bint loop_calls_c(self) except -1:
        """Whether ``loop.call_soon`` is the C loop's, as the type's version
        tag tells cheaply once the type was checked."""
        cdef object found
        if not zs_type_unchanged(&self.loop_type_memo, Py_TYPE(self.loop)):
            _look_up_c_loop()
            found = getattr(type(self.loop), "call_soon", None)
            if found is not _c_loop_call_soon:
                return False
            zs_remember_type(&self.loop_type_memo, Py_TYPE(self.loop))
        if not self.loop_dict_known:
            return False
        if self.loop_dict is None:
            return True
        if PyDict_GET_SIZE(self.loop_dict) != self.loop_dict_size:
            # An attribute came or went on the loop itself: a patched call_soon may be one.
            self.loop_dict_size = PyDict_GET_SIZE(self.loop_dict)
            found = self.loop_dict.get("call_soon")
            # Before 3.12 the loop keeps its own binding of the C call_soon
            # there (bind_loop_methods); anything else is a patch.
            self.own_call_soon = found is not None and not (
                type(found) is BuiltinMethodType and found.__self__ is self.loop
                and found.__name__ == "call_soon")
        return not self.own_call_soon

    cdef object create_future(self):
        cdef PyObject *future_type
        if self.stdlib_future:
            # What the loop's create_future() does, without its frame or a
            # keyword dict per call: futures.Future(loop=loop), the name
            # looked up where the stdlib looks it up (so a patch of it holds).
            future_type = PyDict_GetItemWithError(_futures_globals, "Future")
            if future_type != NULL:
                self.plain_made = future_type == <PyObject *>_CFuture
                return PyObject_Call(<object>future_type, (), self.future_kwargs)
        self.plain_made = False
        return self.loop.create_future()

    cdef int set_limit(self, limit) except -1:
        self.limit = limit
        self._refresh()
        return 0

    cdef int _refresh(self) except -1:
        cdef Py_ssize_t value = 0
        ok = type(self.limit) is int and PyByteArray_CheckExact(self.buffer)
        if ok:
            try:
                value = self.limit
            except OverflowError:
                ok = False
        self.climit = value
        self.fast = ok and 0 < value < (<Py_ssize_t>1 << 60)
        return 0

    cdef inline Py_ssize_t size(self):
        return PyByteArray_GET_SIZE(self.buffer)

    # -- what the stdlib's StreamReader methods do -------------------------------

    cdef int wakeup(self) except -1:
        """Complete the waiter: 1 when that ran no Python code, else 0."""
        cdef bint quiet = True
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            quiet = self.plain_waiter and self.loop_calls_c()
            try:
                if type(waiter) is _CFuture:
                    _future_set_result(waiter, None)
                else:
                    waiter.set_result(None)
            except InvalidStateError:
                # The stdlib skips a cancelled waiter; asked first, that costs every wake-up.
                if not waiter.cancelled():
                    raise
        return quiet

    cdef int maybe_resume(self) except -1:
        if self.paused and (self.size() <= self.climit if self.fast
                            else len(self.buffer) <= self.limit):
            self.paused = False
            self.transport.resume_reading()
        return 0

    cdef int after_feed(self) except -1:
        """Wake the reader, pause the transport past the limit: 1 when that
        ran no Python code, else 0."""
        cdef int quiet = self.wakeup()
        if (self.transport is not None and not self.paused and
                (self.size() > 2 * self.climit if self.fast else len(self.buffer) > 2 * self.limit)):
            quiet = 0
            try:
                self.transport.pause_reading()
            except NotImplementedError:
                self.transport = None
            else:
                self.paused = True
        return quiet

    cdef int feed(self, const char *data, Py_ssize_t size) except -1:
        """The transport's read, as the stdlib protocol's data_received would feed it."""
        if not zs_weakref_alive(self.owner_ref):
            return 0  # the protocol drops data for a reader that is gone
        if self.eof:
            raise AssertionError("feed_data after feed_eof")
        if size <= 0:
            return 0
        if self.fast:
            zs_bytearray_append(self.buffer, data, size, BYTEARRAY_INTERNALS)  # copied before any Python runs
        else:
            self.buffer.extend(PyBytes_FromStringAndSize(data, size))
            self.after_feed()
            return 0  # a bytearray subclass's extend() may be Python code
        return self.after_feed()

    cdef int feed_object(self, data) except -1:
        if self.eof:
            raise AssertionError("feed_data after feed_eof")
        if not data:
            return 0
        if self.fast and PyBytes_CheckExact(data):
            zs_bytearray_append(self.buffer, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                                BYTEARRAY_INTERNALS)
        else:
            self.buffer.extend(data)
        return self.after_feed()

    cdef bytes take(self, Py_ssize_t n):
        """The first n bytes (or fewer), removed from the buffer."""
        cdef Py_ssize_t size = self.size()
        if n > size:
            n = size
        data = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self.buffer), n)
        zs_bytearray_consume(self.buffer, n, BYTEARRAY_INTERNALS)
        return data

    cdef bytes take_all(self):
        data = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self.buffer), self.size())
        self.buffer.clear()
        return data


cdef inline ReaderCore _core(reader):
    return <ReaderCore?>_attr(PyObject_GenericGetDict(reader, NULL), "_core")


cdef inline object _attr(object state, str name):
    """An instance attribute straight from the instance dict."""
    cdef PyObject *value = PyDict_GetItemWithError(state, name)
    if value == NULL:
        raise AttributeError(name)
    return <object>value


@cython.freelist(8)
@cython.final
cdef class StreamOp:
    """One read (or drain) of a C stream: awaitable, and a coroutine to
    ``create_task``/``wait_for``; it waits on at most one Future at a time."""
    cdef ReaderCore core
    cdef int kind
    cdef Py_ssize_t n
    cdef Py_ssize_t offset
    cdef bytes separator
    cdef object waiter
    cdef bint started
    cdef bint finished

    def __await__(self):
        return self

    def __next__(self):
        cdef int finished = 0
        value = _op_step(self, &finished)
        if finished:
            raise StopIteration(value)
        return value

    def send(self, value):
        return self.__next__()

    def throw(self, typ, val=None, tb=None):
        self._abandon()
        if val is None:
            raise typ
        if isinstance(val, BaseException):
            raise val.with_traceback(tb) if tb is not None else val
        raise typ(val)

    def close(self):
        self._abandon()

    cdef int _abandon(self) except -1:
        # What the stdlib's `finally: self._waiter = None` does when a waiting
        # read is cancelled or closed; the buffer stays as it is.
        self.finished = True
        if self.waiter is not None:
            self.waiter = None
            self.core.waiter = None
        return 0

    @property
    def __qualname__(self):
        return "StreamReader." + ("read", "readexactly", "readuntil", "readline",
                                  "drain")[self.kind]

    @property
    def __name__(self):
        return self.__qualname__.rpartition(".")[2]

    def __repr__(self):
        return f"<{self.__qualname__}() zerosock stream operation>"

    cdef object wait(self, str func_name):
        """The stdlib's _wait_for_data up to its await: the Future to wait on."""
        core = self.core
        if core.waiter is not None:
            raise RuntimeError(f"{func_name}() called while another coroutine is "
                               f"already waiting for incoming data")
        if core.eof:
            raise AssertionError("_wait_for_data after EOF")
        if core.paused:
            core.paused = False
            core.transport.resume_reading()
        waiter = core.create_future()
        core.waiter = waiter
        core.plain_waiter = core.plain_made
        self.waiter = waiter
        waiter._asyncio_future_blocking = True
        return waiter

    cdef object readuntil(self, bint resumed, bytes separator):
        cdef ReaderCore core = self.core
        cdef Py_ssize_t seplen = PyBytes_GET_SIZE(separator)
        cdef Py_ssize_t buflen, isep = -1, offset
        if not resumed:
            if seplen == 0:
                raise ValueError("Separator should be at least one-byte string")
            if core.exception is not None:
                raise core.exception
            self.offset = 0
        offset = self.offset
        while True:
            buflen = core.size()
            if buflen - offset >= seplen:
                isep = zs_find(PyByteArray_AS_STRING(core.buffer), buflen,
                               PyBytes_AS_STRING(separator), seplen, offset)
                if isep != -1:
                    break
                offset = buflen + 1 - seplen
                if offset > core.climit:
                    raise LimitOverrunError(
                        "Separator is not found, and chunk exceed the limit", offset)
            if core.eof:
                raise IncompleteReadError(core.take_all(), None)
            self.offset = offset
            return None
        if isep > core.climit:
            raise LimitOverrunError("Separator is found, but chunk is longer than limit", isep)
        chunk = core.take(isep + seplen)
        core.maybe_resume()
        return chunk


cdef object _op_step(object target, int *finished):
    """Advance a stream operation: the value it finishes with (finished set),
    or the Future it now waits on."""
    cdef StreamOp op = <StreamOp>target
    cdef ReaderCore core = op.core
    cdef bint resumed = False
    cdef Py_ssize_t n
    if op.finished:
        raise RuntimeError("cannot reuse already awaited coroutine")
    if op.waiter is not None:
        waiter = op.waiter
        op.waiter = None
        core.waiter = None  # the stdlib's finally
        try:
            # raises as the Future's own await would
            if type(waiter) is _CFuture:
                _future_result(waiter)
            else:
                waiter.result()
        except BaseException:
            op.finished = True
            raise
        resumed = True
    elif op.started:
        raise RuntimeError("coroutine is being awaited already")
    op.started = True
    try:
        kind = op.kind
        n = op.n
        if kind == READ:
            if not resumed:
                if core.exception is not None:
                    raise core.exception
                if n == 0:
                    value = b""
                elif core.size() == 0 and not core.eof:
                    return op.wait("read")
            if n:
                value = core.take(n)
                core.maybe_resume()
        elif kind == READEXACTLY:
            if not resumed:
                if n < 0:
                    raise ValueError("readexactly size can not be less than zero")
                if core.exception is not None:
                    raise core.exception
            if n == 0:
                value = b""
            else:
                if core.size() < n:
                    if core.eof:
                        raise IncompleteReadError(core.take_all(), n)
                    return op.wait("readexactly")
                value = core.take(n)
                core.maybe_resume()
        elif kind == READUNTIL:
            value = op.readuntil(resumed, op.separator)
            if value is None:
                return op.wait("readuntil")
        elif kind == READLINE:
            try:
                value = op.readuntil(resumed, NEWLINE)
            except IncompleteReadError as e:
                value = e.partial
            except LimitOverrunError as e:
                buffer = core.buffer
                if buffer.startswith(NEWLINE, e.consumed):
                    del buffer[:e.consumed + 1]
                else:
                    buffer.clear()
                core.maybe_resume()
                raise ValueError(e.args[0])
            if value is None:
                return op.wait("readuntil")
        else:
            value = None
    except BaseException:
        op.finished = True
        raise
    op.finished = True
    finished[0] = 1
    return value


if enabled("awaitable_slots"):
    zs_install_op_slots(StreamOp, <zs_step_fn>_op_step, enabled("stop_iteration_reuse"))


cdef inline StreamOp _new_op(ReaderCore core, int kind, Py_ssize_t n):
    cdef StreamOp op = StreamOp.__new__(StreamOp)
    op.core = core
    op.kind = kind
    op.n = n
    return op


cdef inline bint _as_size(object n, Py_ssize_t *out) except -1:
    """Whether n is an int that the C paths take (into out); others go to the stdlib."""
    if type(n) is not int:
        return False
    return zs_as_ssize(n, out)


class StreamReader(streams.StreamReader):
    """``asyncio.StreamReader`` with its state and reads in C.

    Made by adoption (see :func:`adopt_stream_protocol`) or directly, with the
    stdlib's constructor; reads return awaitables that are also coroutines."""

    def __init__(self, limit=_DEFAULT_LIMIT, loop=None):
        if limit <= 0:
            raise ValueError("Limit cannot be <= 0")
        if loop is None:
            loop = streams.events.get_event_loop()
        self._core = ReaderCore(self, limit, loop, bytearray())
        if loop.get_debug():
            self._source_traceback = _extract_stack(sys._getframe(0))

    # The stdlib's attributes, so its methods and its tests' probes see the C state.
    @property
    def _buffer(self):
        return _core(self).buffer

    @_buffer.setter
    def _buffer(self, value):
        core = _core(self)
        core.buffer = value
        core._refresh()

    @property
    def _limit(self):
        return _core(self).limit

    @_limit.setter
    def _limit(self, value):
        _core(self).set_limit(value)

    @property
    def _loop(self):
        return _core(self).loop

    @_loop.setter
    def _loop(self, value):
        _core(self).set_loop(value)

    @property
    def _eof(self):
        return _core(self).eof

    @_eof.setter
    def _eof(self, value):
        _core(self).eof = value

    @property
    def _waiter(self):
        return _core(self).waiter

    @_waiter.setter
    def _waiter(self, value):
        core = _core(self)
        core.waiter = value
        core.plain_waiter = False

    @property
    def _exception(self):
        return _core(self).exception

    @_exception.setter
    def _exception(self, value):
        _core(self).exception = value

    @property
    def _transport(self):
        return _core(self).transport

    @_transport.setter
    def _transport(self, value):
        _core(self).transport = value

    @property
    def _paused(self):
        return _core(self).paused

    @_paused.setter
    def _paused(self, value):
        _core(self).paused = value

    def exception(self):
        return _core(self).exception

    def set_exception(self, exc):
        core = _core(self)
        core.exception = exc
        waiter = core.waiter
        if waiter is not None:
            core.waiter = None
            if not waiter.cancelled():
                waiter.set_exception(exc)

    def _wakeup_waiter(self):
        _core(self).wakeup()

    def set_transport(self, transport):
        core = _core(self)
        assert core.transport is None, "Transport already set"
        core.transport = transport

    def _maybe_resume_transport(self):
        _core(self).maybe_resume()

    def feed_eof(self):
        core = _core(self)
        core.eof = True
        core.wakeup()

    def at_eof(self):
        """Return True if the buffer is empty and 'feed_eof' was called."""
        core = _core(self)
        return core.eof and not core.buffer

    def feed_data(self, data):
        _core(self).feed_object(data)

    def read(self, n=-1):
        cdef Py_ssize_t size
        core = _core(self)
        if core.fast and _as_size(n, &size) and size >= 0:
            return _new_op(core, READ, size)
        return _StdReader.read(self, n)

    def readexactly(self, n):
        cdef Py_ssize_t size
        core = _core(self)
        if core.fast and _as_size(n, &size):
            return _new_op(core, READEXACTLY, size)
        return _StdReader.readexactly(self, n)

    def readline(self):
        core = _core(self)
        if core.fast:
            return _new_op(core, READLINE, 0)
        return _StdReader.readline(self)

    def readuntil(self, separator=b"\n"):
        cdef StreamOp op
        core = _core(self)
        if core.fast and PyBytes_CheckExact(separator):
            op = _new_op(core, READUNTIL, 0)
            op.separator = separator
            return op
        return _StdReader.readuntil(self, separator)

    read.__doc__ = _StdReader.read.__doc__
    readexactly.__doc__ = _StdReader.readexactly.__doc__
    readline.__doc__ = _StdReader.readline.__doc__
    readuntil.__doc__ = _StdReader.readuntil.__doc__


@cython.final
cdef class ProtocolCore:
    """The flow-control state of an adopted StreamReaderProtocol (the stdlib
    FlowControlMixin's ``_paused`` and ``_connection_lost``), read by drain(),
    and its ``_drain_waiters``, made when first asked for (None until then)."""
    cdef object paused
    cdef object connection_lost
    cdef object drain_waiters


@cython.final
cdef class WriterCore:
    """The state of an adopted StreamWriter: the stdlib's ``_transport``,
    ``_protocol`` and ``_reader``, and the C states drain() reads through them."""
    cdef object transport
    cdef object protocol
    cdef ProtocolCore protocol_core  # None: not an adopted protocol
    cdef object reader
    cdef ReaderCore reader_core      # None: not a C reader

    cdef int set_protocol(self, protocol) except -1:
        self.protocol = protocol
        self.protocol_core = None
        if type(protocol) is StreamReaderProtocol:
            self.protocol_core = _protocol_core(protocol)
        return 0

    cdef int set_reader(self, reader) except -1:
        self.reader = reader
        self.reader_core = _core(reader) if type(reader) is StreamReader else None
        return 0


cdef inline WriterCore _writer_core(writer):
    return <WriterCore?>_attr(PyObject_GenericGetDict(writer, NULL), "_core")


cdef inline ProtocolCore _protocol_core(protocol):
    return <ProtocolCore?>_attr(PyObject_GenericGetDict(protocol, NULL), "_core")


cdef object _core_to_set(object obj, type core_type):
    """The C state to store an attribute in; made when the object was built
    with its class's constructor rather than adopted."""
    state = PyObject_GenericGetDict(obj, NULL)
    cdef PyObject *core = PyDict_GetItemWithError(state, "_core")
    if core != NULL:
        return <object>core
    new = core_type.__new__(core_type)
    state["_core"] = new
    return new


cdef inline bint _is_false(object flag) except -1:
    """``not flag``, without a call for the bools the stdlib stores."""
    return True if flag is False else (False if flag is True else not flag)


class StreamWriter(streams.StreamWriter):
    """``asyncio.StreamWriter`` whose ``drain`` returns at once, without a
    coroutine, when there is nothing to wait for."""

    # The stdlib's attributes, so its methods and its tests' probes see the C state.
    @property
    def _transport(self):
        return _writer_core(self).transport

    @_transport.setter
    def _transport(self, value):
        (<WriterCore>_core_to_set(self, WriterCore)).transport = value

    @property
    def _protocol(self):
        return _writer_core(self).protocol

    @_protocol.setter
    def _protocol(self, value):
        (<WriterCore>_core_to_set(self, WriterCore)).set_protocol(value)

    @property
    def _reader(self):
        return _writer_core(self).reader

    @_reader.setter
    def _reader(self, value):
        (<WriterCore>_core_to_set(self, WriterCore)).set_reader(value)

    def write(self, data):
        transport = _writer_core(self).transport
        cdef TransportCore direct = direct_core(transport)
        if direct is not None:
            direct.c_write(data)  # what its write() does, without the call
        else:
            transport.write(data)

    write.__doc__ = _StdWriter.write.__doc__

    def drain(self):
        # The stdlib's checks, in its order; whatever would wait or raise is its own code.
        cdef WriterCore core = _writer_core(self)
        cdef ProtocolCore protocol_core
        cdef TransportCore direct
        if core.reader_core is not None:
            if core.reader_core.exception is not None:
                return _StdWriter.drain(self)
        elif core.reader is not None and core.reader.exception() is not None:
            return _StdWriter.drain(self)
        transport = core.transport
        direct = direct_core(transport)
        if direct._closing if direct is not None else transport.is_closing():
            return _StdWriter.drain(self)
        protocol_core = core.protocol_core
        if protocol_core is None:
            return _StdWriter.drain(self)
        if not (_is_false(protocol_core.connection_lost) and _is_false(protocol_core.paused)):
            return _StdWriter.drain(self)
        return _new_op(None, DONE, 0)

    drain.__doc__ = _StdWriter.drain.__doc__


# The stdlib's FlowControlMixin (3.10.6 on) makes a deque for drain()'s
# waiters with every protocol, some 600 bytes that a connection whose writes
# never wait does not need: an adopted protocol makes it on first use.
cdef bint DRAIN_WAITERS = "_drain_waiters" in streams.FlowControlMixin.__init__.__code__.co_names


class StreamReaderProtocol(streams.StreamReaderProtocol):
    """``asyncio.StreamReaderProtocol`` whose transport feeds its C reader directly."""

    @property
    def _read_sink(self):
        reader = self._stream_reader
        return reader._core if type(reader) is StreamReader else None

    @property
    def _paused(self):
        return _protocol_core(self).paused

    @_paused.setter
    def _paused(self, value):
        (<ProtocolCore>_core_to_set(self, ProtocolCore)).paused = value

    @property
    def _connection_lost(self):
        return _protocol_core(self).connection_lost

    @_connection_lost.setter
    def _connection_lost(self, value):
        (<ProtocolCore>_core_to_set(self, ProtocolCore)).connection_lost = value

    if DRAIN_WAITERS:
        @property
        def _drain_waiters(self):
            cdef ProtocolCore core = _protocol_core(self)
            if core.drain_waiters is None:
                core.drain_waiters = collections.deque()
            return core.drain_waiters

        @_drain_waiters.setter
        def _drain_waiters(self, value):
            (<ProtocolCore>_core_to_set(self, ProtocolCore)).drain_waiters = value

    def _drain_helper(self):
        core = _protocol_core(self)
        if not (_is_false(core.connection_lost) and _is_false(core.paused)):
            return _std_drain_helper(self)
        return _new_op(None, DONE, 0)


cdef tuple _WRITER_STATE = STREAM_WRITER_STATE


cdef bint _adopt_writer(writer) except -1:
    """Give a stdlib StreamWriter of an adopted protocol the C writer, in place."""
    state = writer.__dict__
    if not all(name in state for name in _WRITER_STATE) or "_core" in state:
        return False
    core = WriterCore()
    core.transport = state["_transport"]
    core.set_protocol(state["_protocol"])
    core.set_reader(state["_reader"])
    state["_core"] = core
    try:
        writer.__class__ = StreamWriter
    except TypeError:  # a layout we do not know: stay with the stdlib
        del state["_core"]
        return False
    for name in _WRITER_STATE:
        del state[name]
    return True


@cython.final
cdef class _ClientConnected:
    """start_server's callback, handed the C StreamWriter: the stdlib's
    connection_made makes the writer and calls this before anything else sees it."""
    cdef object callback

    def __cinit__(self, callback):
        self.callback = callback

    def __call__(self, reader, writer):
        if type(writer) is _StdWriter:
            _adopt_writer(writer)
        return self.callback(reader, writer)

    def __repr__(self):
        return repr(self.callback)


cdef tuple _PROTOCOL_STATE = STREAM_PROTOCOL_STATE
cdef tuple _ADOPTED_PROTOCOL_STATE = _PROTOCOL_STATE + (("_drain_waiters",) if DRAIN_WAITERS else ())
cdef tuple _READER_STATE = STREAM_READER_STATE


def adopt_stream_protocol(protocol, loop):
    """Give a fresh stdlib stream protocol and its reader the C streams, in place.

    Only the exact stdlib classes are adopted, and only while nothing has
    happened on the reader yet; anything else is left as it is."""
    if not c_streams or type(protocol) is not _StdProtocol:
        return False
    reader = protocol._stream_reader
    if type(reader) is not _StdReader:
        return False
    state = reader.__dict__
    buffer = state.get("_buffer")
    if not (type(buffer) is bytearray and not buffer and state.get("_loop") is loop
            and state.get("_eof") is False and state.get("_waiter") is None
            and state.get("_exception") is None and state.get("_transport") is None
            and state.get("_paused") is False and "_core" not in state):
        return False
    protocol_state = protocol.__dict__
    if "_core" in protocol_state or not all(name in protocol_state
                                            for name in _ADOPTED_PROTOCOL_STATE):
        return False
    state["_core"] = ReaderCore(reader, state["_limit"], loop, buffer)
    try:
        reader.__class__ = StreamReader
    except TypeError:  # a layout we do not know: stay with the stdlib
        del state["_core"]
        return False
    for name in _READER_STATE:
        del state[name]
    protocol_core = ProtocolCore()
    protocol_core.paused = protocol_state.pop("_paused")
    protocol_core.connection_lost = protocol_state.pop("_connection_lost")
    if DRAIN_WAITERS:
        waiters = protocol_state.pop("_drain_waiters")
        if not (type(waiters) is collections.deque and not waiters):
            protocol_core.drain_waiters = waiters  # not the stdlib's own empty one: kept
    protocol_state["_core"] = protocol_core
    protocol.__class__ = StreamReaderProtocol
    callback = protocol.__dict__.get("_client_connected_cb")
    if callback is not None:
        protocol._client_connected_cb = _ClientConnected(callback)
    return True
