# cython: language_level=3
"""The loop core of zerosock.aio: the event loop's iteration, the runner of
its ready queue and its timers, in C.

An iteration is the stdlib's ``BaseEventLoop._run_once`` step for step, on the
same ``_ready`` deque, polling through the C selector's C-level API, with the
timers on a C heap (:mod:`zerosock._aio_timers_c`) and the transports' I/O
handles run without a Python call.  The handles ``call_soon`` and ``call_at``
make are asyncio's, with C methods (:class:`Handle`, :class:`TimerHandle`):
made, run and cancelled through their slots while the ``handle_slots`` fast
path of :mod:`zerosock._cpython_c` is on, through their own methods otherwise."""

cimport cython
from cpython.dict cimport PyDict_GetItemWithError
from cpython.contextvars cimport PyContext_CopyCurrent
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.object cimport PyObject, Py_TYPE
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.object cimport PyTypeObject

cdef extern from "Python.h":
    # The singletons themselves (a cast of True or False would give 1 or 0).
    PyObject *Py_True
    PyObject *Py_False

from libc.math cimport ceil

import inspect
from asyncio import base_events, events, format_helpers

from zerosock._aio_context cimport run_in_context
from zerosock._aio_timers_c cimport TimerHeap
from zerosock._cmethod_c cimport METH_NOARGS, METH_O, c_method
from zerosock._cpython_c cimport (
    class_keeps, zs_handle_alloc, zs_handle_dealloc_misfit, zs_handle_free_count, zs_loop_clock,
    zs_remember_type, zs_set_handle_dealloc, zs_slot_get, zs_slot_offset, zs_slot_set,
    zs_type_unchanged, zs_version_tags_on,
)
from zerosock._cpython_c import enabled
from zerosock._aio_ring_c cimport RingPoller
from zerosock._aio_transport_c cimport IOHandle
from zerosock._selectors_c cimport (Selector, zs_event, ZS_EV_HUP, ZS_EV_READ, ZS_EV_WRITE,
                                    ZS_POLLER_EPOLL)

from selectors import EVENT_READ, EVENT_WRITE
from types import MemberDescriptorType

cdef double MAX_TIMEOUT = base_events.MAXIMUM_SELECT_TIMEOUT
cdef Py_ssize_t MIN_SCHEDULED = base_events._MIN_SCHEDULED_TIMER_HANDLES
cdef double MIN_CANCELLED_FRACTION = base_events._MIN_CANCELLED_TIMER_HANDLES_FRACTION
cdef type IOHandleType = IOHandle
cdef type StdHandleType = events.Handle
cdef type StdTimerHandleType = events.TimerHandle


# The fast paths of zerosock._cpython_c that this module takes when they are on.
cdef bint SLOTS = enabled("handle_slots")
cdef bint FREE_LIST = enabled("handle_free_list")
zs_version_tags_on = enabled("type_version_tags")

# Where asyncio's Handle and TimerHandle keep their state (-1 while
# handle_slots is off): see zerosock._cpython_c.
cdef Py_ssize_t H_CALLBACK = -1, H_ARGS = -1, H_CANCELLED = -1, H_LOOP = -1
cdef Py_ssize_t H_TRACEBACK = -1, H_REPR = -1, H_CONTEXT = -1, T_WHEN = -1, T_SCHEDULED = -1
if SLOTS:
    H_CALLBACK = zs_slot_offset(StdHandleType.__dict__["_callback"])
    H_ARGS = zs_slot_offset(StdHandleType.__dict__["_args"])
    H_CANCELLED = zs_slot_offset(StdHandleType.__dict__["_cancelled"])
    H_LOOP = zs_slot_offset(StdHandleType.__dict__["_loop"])
    H_TRACEBACK = zs_slot_offset(StdHandleType.__dict__["_source_traceback"])
    H_REPR = zs_slot_offset(StdHandleType.__dict__["_repr"])
    H_CONTEXT = zs_slot_offset(StdHandleType.__dict__["_context"])
    T_WHEN = zs_slot_offset(StdTimerHandleType.__dict__["_when"])
    T_SCHEDULED = zs_slot_offset(StdTimerHandleType.__dict__["_scheduled"])


# -- the handles' C methods -----------------------------------------------------------
# Each does what the stdlib's method does, reading and writing the slots
# directly; a handle whose slots are not as __init__ leaves them (never set,
# or a flag that is not a bool) gets the stdlib's method, which says what is
# wrong or runs the flag's Python code in the stdlib's order.

cdef object _std_handle_cancel = StdHandleType.cancel
cdef object _std_timer_cancel = StdTimerHandleType.cancel
cdef object _std_cancelled = StdHandleType.cancelled
cdef object _std_when = StdTimerHandleType.when


cdef object _cancel(object handle, object std_cancel, bint timer):
    """Handle.cancel, or TimerHandle.cancel when ``timer`` (which tells the
    loop first), on the slots; ``std_cancel`` takes a handle whose slots are
    not as __init__ leaves them."""
    cdef PyObject *flag = zs_slot_get(handle, H_CANCELLED)
    cdef PyObject *loop_slot = zs_slot_get(handle, H_LOOP)
    if flag == Py_True:
        return None
    if flag != Py_False or loop_slot == NULL:
        return std_cancel(handle)
    loop = <object>loop_slot  # owned: the loop's methods may run Python code
    if timer:
        loop._timer_handle_cancelled(handle)
        # Then Handle.cancel, which reads the flag again.
        return _cancel(handle, _std_handle_cancel, False)
    zs_slot_set(handle, H_CANCELLED, True)
    if loop.get_debug():
        # Debug mode keeps the repr, callback and arguments included, for
        # the log of a slow callback.
        zs_slot_set(handle, H_REPR, repr(handle))
    zs_slot_set(handle, H_CALLBACK, None)
    zs_slot_set(handle, H_ARGS, None)
    return None


cdef object _handle_cancel(object handle, PyObject *unused):
    return _cancel(handle, _std_handle_cancel, False)


cdef object _timer_cancel(object handle, PyObject *unused):
    return _cancel(handle, _std_timer_cancel, True)


cdef object _cancelled(object handle, PyObject *unused):
    cdef PyObject *flag = zs_slot_get(handle, H_CANCELLED)
    if flag == NULL:
        return _std_cancelled(handle)
    return <object>flag


cdef object _when(object handle, PyObject *unused):
    cdef PyObject *when = zs_slot_get(handle, T_WHEN)
    if when == NULL:
        return _std_when(handle)
    return <object>when


# TimerHandle's comparisons and hash, the stdlib's expressions compiled: the
# same attribute reads and comparisons (a NaN time included), no frame.
# ``TimerHandle`` is looked up in asyncio.events at each call, as there.

cdef dict _events_globals = events.__dict__


cdef inline bint _is_timer_handle(object other) except -1:
    cdef PyObject *kind = PyDict_GetItemWithError(_events_globals, "TimerHandle")
    return isinstance(other, <object>kind if kind != NULL else StdTimerHandleType)


cdef object _timer_eq(object self, object other):
    if _is_timer_handle(other):
        return (self._when == other._when and self._callback == other._callback
                and self._args == other._args and self._cancelled == other._cancelled)
    return NotImplemented


cdef object _timer_lt(object self, object other):
    if _is_timer_handle(other):
        return self._when < other._when
    return NotImplemented


cdef object _timer_le(object self, object other):
    if _is_timer_handle(other):
        return self._when < other._when or self.__eq__(other)
    return NotImplemented


cdef object _timer_gt(object self, object other):
    if _is_timer_handle(other):
        return self._when > other._when
    return NotImplemented


cdef object _timer_ge(object self, object other):
    if _is_timer_handle(other):
        return self._when > other._when or self.__eq__(other)
    return NotImplemented


cdef object _timer_hash(object self, PyObject *unused):
    return hash(self._when)


class Handle(events.Handle):
    """What ``call_soon`` returns outside debug mode: an ``asyncio.Handle``
    whose ``cancel`` and ``cancelled`` are C (the stdlib's while the
    handle_slots fast path is off): frameworks set a timer and cancel it per
    request (uvicorn's keep-alive), which on the stdlib's classes runs two
    Python frames."""

    __slots__ = ()

    if SLOTS:
        cancel = c_method(<void *>_handle_cancel, METH_NOARGS, b"cancel($self, /)\n--\n\n")
        cancelled = c_method(<void *>_cancelled, METH_NOARGS, b"cancelled($self, /)\n--\n\n")


class TimerHandle(events.TimerHandle):
    """What ``call_later`` and ``call_at`` return outside debug mode: an
    ``asyncio.TimerHandle`` whose methods are C."""

    __slots__ = ()

    if SLOTS:
        cancel = c_method(<void *>_timer_cancel, METH_NOARGS, b"cancel($self, /)\n--\n\n")
        cancelled = c_method(<void *>_cancelled, METH_NOARGS, b"cancelled($self, /)\n--\n\n")
        when = c_method(<void *>_when, METH_NOARGS,
                        b"when($self, /)\n--\n\n"
                        b"Return a scheduled callback time, on the loop.time() clock.")
    __eq__ = c_method(<void *>_timer_eq, METH_O, b"Return self==value.")
    __lt__ = c_method(<void *>_timer_lt, METH_O, b"Return self<value.")
    __le__ = c_method(<void *>_timer_le, METH_O, b"Return self<=value.")
    __gt__ = c_method(<void *>_timer_gt, METH_O, b"Return self>value.")
    __ge__ = c_method(<void *>_timer_ge, METH_O, b"Return self>=value.")
    __hash__ = c_method(<void *>_timer_hash, METH_NOARGS, b"Return hash(self).")


cdef int _use_free_list(object kind, tuple owners) except -1:
    """Give ``kind`` the deallocation with a free list (zs_cpython.h)."""
    cdef Py_ssize_t offsets[9]
    cdef int count = 0
    for owner in owners:
        for name in owner.__slots__:
            if name != "__weakref__":
                offsets[count] = zs_slot_offset(owner.__dict__[name])
                count += 1
    if zs_handle_dealloc_misfit(<PyTypeObject *>kind, <PyTypeObject *>StdHandleType) != NULL:
        raise RuntimeError(f"the handle free list does not fit {kind.__name__}")
    return zs_set_handle_dealloc(kind, offsets, count)


if FREE_LIST:
    _use_free_list(Handle, (events.Handle,))  # (first: the one made most, found first)
    _use_free_list(TimerHandle, (events.TimerHandle, events.Handle))


def _free_handles(kind):
    """How many freed instances of ``kind`` wait for reuse (for tests)."""
    return zs_handle_free_count(kind)


cdef extern from "Python.h":
    Py_ssize_t PyDict_GET_SIZE(object d)

cdef type HandleType = Handle
cdef type TimerHandleType = TimerHandle
# The stdlib's BaseEventLoop.time, and its C twins (see treat_as_stdlib_time).
cdef set _stdlib_times = {base_events.BaseEventLoop.time}
cdef object _format_handle = base_events._format_handle
cdef object _format_callback_source = format_helpers._format_callback_source
cdef bint FORMAT_TAKES_DEBUG = "debug" in inspect.signature(_format_callback_source).parameters


# The handle classes whose slots are read and written directly: the stdlib's
# and ours, whose behaviour (``_run``, ``_cancelled``, ``_scheduled``) is the
# stdlib's -- none while handle_slots is off, so that the hot paths' type
# checks say no then, at no cost of their own.
cdef type _SlotHandle = HandleType if SLOTS else None
cdef type _SlotTimerHandle = TimerHandleType if SLOTS else None
cdef type _SlotStdHandle = StdHandleType if SLOTS else None
cdef type _SlotStdTimerHandle = StdTimerHandleType if SLOTS else None


cdef inline bint _is_stdlib_handle(object handle):
    """Whether ``handle``'s slots can be read and written directly."""
    cdef type kind = type(handle)
    return (kind is _SlotHandle or kind is _SlotTimerHandle
            or kind is _SlotStdHandle or kind is _SlotStdTimerHandle)


cdef inline bint is_timer_handle(object handle) noexcept:
    """Whether ``handle`` is a TimerHandle whose slots can be read and written directly."""
    cdef type kind = type(handle)
    return kind is _SlotTimerHandle or kind is _SlotStdTimerHandle


cdef object _new_handle(type kind, object loop, object callback, tuple args, object context):
    """A Handle or TimerHandle as ``__init__`` leaves it outside debug mode,
    made without its Python frames (a TimerHandle's _when and _scheduled
    left to the caller)."""
    handle = zs_handle_alloc(<PyTypeObject *>kind)
    zs_slot_set(handle, H_CONTEXT, PyContext_CopyCurrent() if context is None else context)
    zs_slot_set(handle, H_LOOP, loop)
    zs_slot_set(handle, H_CALLBACK, callback)
    zs_slot_set(handle, H_ARGS, args)
    zs_slot_set(handle, H_CANCELLED, False)
    zs_slot_set(handle, H_REPR, None)
    zs_slot_set(handle, H_TRACEBACK, None)
    return handle


cdef bint _handle_cancelled(object handle) except -1:
    cdef PyObject *value
    if type(handle) is IOHandleType:
        return (<IOHandle>handle)._cancelled
    if _is_stdlib_handle(handle):
        value = zs_slot_get(handle, H_CANCELLED)
        if value == Py_True:
            return True
        if value == Py_False:
            return False
        if value != NULL:
            # Owned: the value's __bool__ may replace the slot and free it.
            flag = <object>value
            return bool(flag)
    return handle._cancelled


cdef int timer_scheduled(object timer) except -1:
    cdef PyObject *value
    if is_timer_handle(timer):
        value = zs_slot_get(timer, T_SCHEDULED)
        if value == Py_True:
            return 1
        if value == Py_False:
            return 0
    return 1 if timer._scheduled else 0  # (a missing slot: the stdlib's error)


cdef inline int _set_scheduled(object timer, bint scheduled) except -1:
    if is_timer_handle(timer):
        zs_slot_set(timer, T_SCHEDULED, scheduled)
    else:
        timer._scheduled = scheduled
    return 0


cdef int _unschedule(object timer) except -1:
    return _set_scheduled(timer, False)


cdef inline int _call_with_args(object callback, object args) except -1:
    callback(*args)
    return 0


cdef int _run_stdlib_handle(object handle) except -1:
    """``events.Handle._run`` without its Python frame: the callback in the
    handle's context, an exception reported as the stdlib reports it."""
    cdef PyObject *context_slot = zs_slot_get(handle, H_CONTEXT)
    cdef PyObject *callback_slot = zs_slot_get(handle, H_CALLBACK)
    cdef PyObject *args_slot = zs_slot_get(handle, H_ARGS)
    if context_slot == NULL or callback_slot == NULL or args_slot == NULL:
        handle._run()  # not made by __init__: the stdlib's own method says what is wrong
        return 0
    # Strong references for the whole call, as Handle._run's frame holds: the
    # callback may cancel its own handle (clearing these slots) or drop the
    # last other reference to what is running.
    cdef object context = <object>context_slot
    cdef object callback = <object>callback_slot
    cdef object args = <object>args_slot
    cdef int unused
    failure = run_in_context(context, _call_with_args, callback, args, &unused)
    if failure is not None:
        # Reported outside the handle's context, as context.run() would leave it.
        loop = handle._loop
        if FORMAT_TAKES_DEBUG:
            cb = _format_callback_source(handle._callback, handle._args, debug=loop.get_debug())
        else:
            cb = _format_callback_source(handle._callback, handle._args)
        report = {"message": f"Exception in callback {cb}", "exception": failure,
                  "handle": handle}
        if handle._source_traceback:
            report["source_traceback"] = handle._source_traceback
        loop.call_exception_handler(report)
    return 0


cdef inline int _run_handle(object handle) except -1:
    if type(handle) is IOHandleType:
        if not (<IOHandle>handle)._cancelled:
            (<IOHandle>handle).run()
    elif _handle_cancelled(handle):
        pass
    elif _is_stdlib_handle(handle):
        _run_stdlib_handle(handle)
    else:
        handle._run()
    return 0


def treat_as_stdlib_time(method):
    """Read the clock directly for loops whose class's ``time`` is ``method``,
    a C twin of the stdlib's ``time.monotonic()``."""
    _stdlib_times.add(method)


@cython.final
cdef class LoopCore:
    """The C half of one :class:`~zerosock.aio.EventLoop`."""

    def __cinit__(self, loop):
        self.loop = loop
        self.state_size = -1
        self.state = loop.__dict__
        self.loop_keywords = {"loop": loop}
        self.ready = loop._ready
        # Bound once: a method call on the deque looks the name up each time,
        # a third of what queuing or taking a handle costs.
        self.ready_append = self.ready.append
        self.ready_popleft = self.ready.popleft
        self.timers = TimerHeap()
        self.stdlib_time = type(loop).time in _stdlib_times
        self.clock_resolution = loop._clock_resolution
        member = getattr(type(loop), "_debug", None)
        if isinstance(member, MemberDescriptorType):
            try:
                self.debug_offset = zs_slot_offset(member)
                self.debug_slot = {"_debug": member}
            except TypeError:  # a member, not of an object slot
                pass
        selector = loop._selector
        if isinstance(selector, Selector) and (<Selector>selector)._native is not None:
            self.native = <Selector>selector
            if isinstance(self.native._native, RingPoller):
                self.ring = <RingPoller>self.native._native

    def __dealloc__(self):
        self._release_pending(0)
        PyMem_Free(self.pending)

    cdef int _add_pending(self, object handle) except -1:
        cdef Py_ssize_t capacity
        cdef PyObject **grown
        if self.npending == self.pending_capacity:
            capacity = max(64, 2 * self.pending_capacity)
            grown = <PyObject **>PyMem_Realloc(self.pending, <size_t>capacity * sizeof(PyObject *))
            if grown == NULL:
                raise MemoryError()
            self.pending = grown
            self.pending_capacity = capacity
        Py_INCREF(handle)
        self.pending[self.npending] = <PyObject *>handle
        self.npending += 1
        return 0

    cdef void _release_pending(self, Py_ssize_t start) noexcept:
        """Drop the pending handles from ``start`` on, and empty the array."""
        cdef Py_ssize_t i, n = self.npending
        self.npending = 0
        for i in range(start, n):
            Py_XDECREF(self.pending[i])  # NULL: taken by run_once

    cdef double now(self) except? -1.0:
        # loop.time(), straight to the clock unless a subclass or this very
        # loop (as mocks do) replaced it.
        if self.stdlib_time and "time" not in self.state:
            return zs_loop_clock()
        self.disturbed = True  # Python code, maybe
        return self.loop.time()

    # -- scheduling -------------------------------------------------------------

    cpdef object call_soon(self, object callback, tuple args, object context):
        """``loop.call_soon``'s Handle, queued (a loop not in debug mode)."""
        if SLOTS:
            handle = _new_handle(HandleType, self.loop, callback, args, context)
        else:
            handle = HandleType(callback, args, self.loop, context)
        self.ready_append(handle)
        return handle

    cpdef object call_at(self, object when, object callback, tuple args, object context):
        """``loop.call_at``'s TimerHandle, pushed on the C heap (a loop not in debug mode)."""
        cdef double at
        if when is None:
            raise TypeError("when cannot be None")
        at = when
        if SLOTS:
            handle = _new_handle(TimerHandleType, self.loop, callback, args, context)
            zs_slot_set(handle, T_WHEN, when)
            zs_slot_set(handle, T_SCHEDULED, False)
        else:
            handle = TimerHandleType(when, callback, args, self.loop, context)
        self.schedule(at, handle)
        return handle

    cpdef object call_later(self, object delay, object callback, tuple args, object context):
        return self.call_at(self.now() + delay, callback, args, context)

    cpdef int schedule(self, double when, object handle) except -1:
        """Put a made TimerHandle on the heap, as ``heappush`` and ``_scheduled = True`` do."""
        self.timers.push(when, handle)
        _set_scheduled(handle, True)
        return 0

    # -- one iteration ----------------------------------------------------------

    cdef int _collect(self, object fileobj, object handle, bint writing) except -1:
        # The stdlib's _process_events for one handle.
        if handle is None:
            return 0
        if _handle_cancelled(handle):
            self.disturbed = True  # Python code, maybe
            if writing:
                self.loop._remove_writer(fileobj)
            else:
                self.loop._remove_reader(fileobj)
        else:
            self._add_pending(handle)
        return 0

    cdef int _poll(self, double timeout, bint debug) except -1:
        cdef Selector sel = self.native
        cdef int ms, n, i, mask
        cdef zs_event ev
        cdef PyObject *found
        cdef const int *slots
        if sel is None:
            for key, mask in self.loop._selector.select(None if timeout < 0 else timeout):
                reader, writer = key.data
                if mask & EVENT_READ:
                    self._collect(key.fileobj, reader, False)
                if mask & EVENT_WRITE:
                    self._collect(key.fileobj, writer, True)
            return 0
        ms = -1 if timeout < 0 else <int>ceil(timeout * 1000.0)
        n = sel.poll_ms(ms)
        for i in range(n):
            ev = sel.ready_event(i)
            found = sel.key_for_fd(ev.fd)
            if found == NULL:
                continue  # unregistered since
            key = <object>found  # owned from here on: a removal below may drop the selector's
            if ev.events & ZS_EV_HUP:
                self.disturbed = True  # what its reader reads may not be all there is
            mask = ev.events & sel.interest_of(ev.fd)
            data = <object>PyTuple_GET_ITEM(key, 3)
            if not (PyTuple_CheckExact(data) and PyTuple_GET_SIZE(data) == 2):
                reader, writer = data  # not the loop's (reader, writer): fail as the stdlib does
                data = (reader, writer)
            if mask & ZS_EV_READ:
                self._collect(<object>PyTuple_GET_ITEM(key, 0),
                              <object>PyTuple_GET_ITEM(data, 0), False)
            if mask & ZS_EV_WRITE:
                self._collect(<object>PyTuple_GET_ITEM(key, 0),
                              <object>PyTuple_GET_ITEM(data, 1), True)
        if self.ring is not None and debug:
            # The streams with completions, in debug mode: their handles run
            # as I/O handles do, timed and named as they are (else run_once
            # runs them at once: RingPoller.run_completions).
            n = self.ring.completed(&slots)
            for i in range(n):
                handle = self.ring.handle_to_run(slots[i])
                if handle is not None:
                    self._add_pending(handle)
        return 0

    cdef int _drop_cancelled_timers(self) except -1:
        cdef TimerHeap timers = self.timers
        cdef Py_ssize_t count = len(timers.handles)
        if count > MIN_SCHEDULED and timers.cancelled_count > MIN_CANCELLED_FRACTION * count:
            timers.compact(_handle_cancelled, _unschedule)
            return 0
        while timers.handles:
            handle = timers.handles[0]
            if not _handle_cancelled(handle):
                break
            if timers.handles and timers.handles[0] is handle:
                # (Unless the test, Python code, changed the heap: then test again.)
                timers.cancelled_count -= 1
                timers.pop(NULL)
                _set_scheduled(handle, False)
        return 0

    cdef int _collect_due(self) except -1:
        """Add the timers now due to the pending handles, after the I/O ones."""
        cdef TimerHeap timers = self.timers
        cdef double end_time
        if not timers.handles:
            return 0
        end_time = self.now() + self.clock_resolution
        while timers.handles and timers.keys[0].when < end_time:
            handle = timers.pop(NULL)
            _set_scheduled(handle, False)
            if _handle_cancelled(handle):
                timers.cancelled_count -= 1
            else:
                self._add_pending(handle)
        return 0

    cdef int _run_debug(self, object handle) except -1:
        # The stdlib's debug-mode accounting: the current handle, slow callbacks logged.
        loop = self.loop
        try:
            loop._current_handle = handle
            t0 = loop.time()
            _run_handle(handle)
            dt = loop.time() - t0
            if dt >= loop.slow_callback_duration:
                # base_events' own logger, looked up now: where the stdlib logs this.
                base_events.logger.warning("Executing %s took %.3f seconds",
                                           _format_handle(handle), dt)
        finally:
            loop._current_handle = None
        return 0

    cdef bint _may_spare_poll(self) except -1:
        """Whether this loop polls and iterates as the stdlib would but for
        the poll spared: zerosock's epoll selector, the loop's own iteration
        (no override on its class or instance), no descriptor watched for
        writing."""
        cdef Selector sel = self.native
        if sel is None or sel.writers:
            return False
        if not zs_type_unchanged(&self.may_spare_memo, Py_TYPE(self.loop)):
            # Checked again whenever the loop's class (or a base) changed.
            from zerosock._aio_c import EventLoop
            kind = type(self.loop)
            if not (sel._native.poller.kind == ZS_POLLER_EPOLL
                    and type(sel).select is Selector.select
                    and getattr(kind, "_run_once", None) is EventLoop._run_once
                    and getattr(kind, "_process_events", None) is EventLoop._process_events):
                return False
            zs_remember_type(&self.may_spare_memo, Py_TYPE(self.loop))
        if PyDict_GET_SIZE(self.state) != self.state_size:
            # An attribute came or went on the loop itself: an own _run_once may be one.
            self.state_size = PyDict_GET_SIZE(self.state)
            self.own_iteration = "_run_once" not in self.state
        return self.own_iteration

    cdef bint _loop_debug(self) except -1:
        """``loop._debug`` as a truth value, as the stdlib's iteration reads it;
        from the slot while the loop's class keeps it one (an attribute
        looked up from C costs more than the rest of an idle iteration)."""
        cdef PyObject *flag
        if self.debug_slot is not None and class_keeps(Py_TYPE(self.loop), &self.debug_memo,
                                                       self.debug_slot):
            flag = zs_slot_get(self.loop, self.debug_offset)
            if flag == Py_False:
                return False
            if flag == Py_True:
                return True
        return bool(self.loop._debug)

    cpdef int run_once(self) except -1:
        """One iteration of the loop: the stdlib's ``_run_once``, in its order."""
        cdef object ready = self.ready
        cdef TimerHeap timers = self.timers
        cdef Py_ssize_t todo, i = 0, j
        cdef PyObject *taken
        cdef double timeout
        cdef bint debug = self._loop_debug()
        cdef bint quiet, spare = self.skip_poll
        cdef bint have_ready = len(ready) != 0

        # The stdlib polls with no timeout when callbacks are ready, and runs
        # what that poll finds after them.  That poll can only find what (a)
        # this process did since the last poll, or (b) the outside world did:
        # data from another process or thread, a signal, a timer of the
        # kernel, whose timing no program can rely on (a few microseconds
        # later, and it is found by the next poll anyway).  So an iteration
        # may spare it when all that the last one ran after its poll was quiet:
        # transport reads whose data went to a C stream reader, waking its
        # waiter Future (whose done-callbacks the C call_soon queues) and
        # draining the socket (a short read, no end or error reported with
        # it), with no Python code run, no timer due, no callback ready
        # before.  Such reads make no descriptor of this process readable;
        # they can make one writable (a peer's send buffer drains), hence no
        # writer may be watched.  Nor can the next iteration spare its own
        # poll, as it runs the ready callbacks: I/O waits one iteration at
        # most.  (The garbage collector may run finalizers at any allocation,
        # at points no program can predict, and that differ from loop to loop.)
        self.skip_poll = False
        self.disturbed = False
        self._drop_cancelled_timers()
        if have_ready or self.state["_stopping"]:
            timeout = 0.0
        elif timers.handles:
            timeout = min(max(0.0, timers.keys[0].when - self.now()), MAX_TIMEOUT)
        else:
            timeout = -1.0
        spare = spare and have_ready and not debug and self._may_spare_poll()
        quiet = not debug and not have_ready

        try:
            if spare:
                self.spared_polls += 1
            else:
                self._poll(timeout, debug)
            self._collect_due()
        except BaseException:
            self._release_pending(0)
            raise
        # Run what was ready before the poll, then the I/O handles, then the
        # timers due; what these schedule runs next time.  uvloop polls after
        # running the ready callbacks instead, which spares a server such as
        # aiohttp one Future and one task wake-up per keep-alive request (its
        # handler resumes after the next request's data_received).  That order
        # is observable: a callback that writes to a socket pair and calls
        # call_soon(g) would see the pair's reader run before g, where the
        # stdlib guarantees g first (test_callbacks_timers_and_io_run_in_the_stdlib_order).
        todo = len(ready)
        try:
            while todo > 0:
                todo -= 1
                handle = self.ready_popleft()
                if debug:
                    self._run_debug(handle)
                else:
                    _run_handle(handle)
            # The streams' completions, then the I/O handles: run after what
            # was ready before the poll, before the timers due, as the stdlib
            # runs the poll's events.
            if self.ring is not None and not debug and self.ring.run_completions():
                quiet = False
            while i < self.npending:
                # The array's reference moves to ``handle``: a handle is
                # released when the next one is taken, as the stdlib's
                # _run_once frees the handles it pops from _ready.
                taken = self.pending[i]
                self.pending[i] = NULL
                handle = <object>taken
                Py_DECREF(handle)
                i += 1
                if debug:
                    self._run_debug(handle)
                elif type(handle) is IOHandleType:
                    if not (<IOHandle>handle)._cancelled:
                        if (<IOHandle>handle).run() != 1:
                            quiet = False
                else:
                    quiet = False
                    _run_handle(handle)
        except BaseException:
            # What did not run stays at the head of _ready, in order, as in the stdlib.
            for j in range(self.npending - 1, i - 1, -1):
                ready.insert(todo, <object>self.pending[j])
            raise
        finally:
            handle = None  # no cycle through an exception's frame
            self._release_pending(0)
        self.skip_poll = quiet and not self.disturbed
        return 0
