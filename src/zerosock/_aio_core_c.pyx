# cython: language_level=3
"""The loop core of zerosock.aio: one iteration of the event loop in C.

The standard library's ``BaseEventLoop._run_once`` step for step, on the same
``_ready`` deque and ``_scheduled`` heap (so ``call_soon``, ``call_at`` and
cancellation work unchanged), polling through the C selector's C-level API
and running transports' I/O handles without a Python call."""

cimport cython
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.contextvars cimport PyContext_CopyCurrent, PyContext_Enter, PyContext_Exit
from libc.math cimport ceil

import heapq
import inspect
from asyncio import base_events, events, format_helpers
from selectors import EVENT_READ, EVENT_WRITE

from zerosock._aio_transport_c cimport IOHandle
from zerosock._selectors_c cimport Selector, zs_event, ZS_EV_READ, ZS_EV_WRITE

cdef object _heappop = heapq.heappop
cdef object _heapify = heapq.heapify
cdef double MAX_TIMEOUT = base_events.MAXIMUM_SELECT_TIMEOUT
cdef Py_ssize_t MIN_SCHEDULED = base_events._MIN_SCHEDULED_TIMER_HANDLES
cdef double MIN_CANCELLED_FRACTION = base_events._MIN_CANCELLED_TIMER_HANDLES_FRACTION
cdef type IOHandleType = IOHandle
cdef type HandleType = events.Handle
cdef type TimerHandleType = events.TimerHandle
cdef object _format_callback_source = format_helpers._format_callback_source
cdef bint FORMAT_TAKES_DEBUG = "debug" in inspect.signature(_format_callback_source).parameters


cdef inline int _dispatch(object loop, list io, object fileobj, object handle,
                          bint writing) except -1:
    # The stdlib's _process_events for one handle, collecting into ``io``.
    cdef bint cancelled
    if handle is None:
        return 0
    if type(handle) is IOHandleType:
        cancelled = (<IOHandle>handle)._cancelled
    else:
        cancelled = handle._cancelled
    if cancelled:
        if writing:
            loop._remove_writer(fileobj)
        else:
            loop._remove_reader(fileobj)
    else:
        io.append(handle)
    return 0


cdef int _poll_native(object loop, Selector sel, list io, double timeout) except -1:
    cdef int ms, n, i, mask
    cdef zs_event ev
    cdef PyObject *found
    if timeout < 0:
        ms = -1
    else:
        ms = <int>ceil(timeout * 1000.0)
    n = sel.poll_ms(ms)
    for i in range(n):
        ev = sel.ready_event(i)
        found = sel.key_for_fd(ev.fd)
        if found == NULL:
            continue  # unregistered since
        key = <object>found  # owned from here on: callbacks below may unregister it
        mask = ev.events & sel.interest_of(ev.fd)
        data = <object>PyTuple_GET_ITEM(key, 3)
        fileobj = <object>PyTuple_GET_ITEM(key, 0)
        reader, writer = data
        if mask & ZS_EV_READ:
            _dispatch(loop, io, fileobj, reader, False)
        if mask & ZS_EV_WRITE:
            _dispatch(loop, io, fileobj, writer, True)
    return 0


cdef int _run_stdlib_handle(object handle) except -1:
    """``events.Handle._run`` without its Python frame: the callback in the
    handle's context, an exception reported as the stdlib reports it."""
    callback = handle._callback
    args = handle._args
    context = handle._context
    failure = None
    PyContext_Enter(context)
    try:
        callback(*args)
    except (SystemExit, KeyboardInterrupt):
        PyContext_Exit(context)
        raise
    except BaseException as exc:
        failure = exc
    PyContext_Exit(context)
    if failure is not None:
        # Reported outside the handle's context, as context.run() would leave it.
        loop = handle._loop
        if FORMAT_TAKES_DEBUG:
            cb = _format_callback_source(callback, args, debug=loop.get_debug())
        else:
            cb = _format_callback_source(callback, args)
        report = {"message": f"Exception in callback {cb}", "exception": failure,
                  "handle": handle}
        if handle._source_traceback:
            report["source_traceback"] = handle._source_traceback
        loop.call_exception_handler(report)
    return 0


cdef inline int _run_handle(object handle) except -1:
    cdef type kind = type(handle)
    if kind is IOHandleType:
        if not (<IOHandle>handle)._cancelled:
            (<IOHandle>handle).run()
    elif handle._cancelled:
        pass
    elif kind is HandleType or kind is TimerHandleType:
        _run_stdlib_handle(handle)
    else:
        handle._run()
    return 0


def run_once(loop):
    """One iteration of ``loop`` (a BaseSelectorEventLoop not in debug mode).

    The order is the stdlib's: callbacks that were ready before the poll, then
    the I/O callbacks of this poll, then the timers now due; what these
    schedule runs next time.  I/O callbacks and due timers are kept in C lists
    rather than passed through ``_ready``, the same order without the deque."""
    cdef list scheduled = loop._scheduled
    cdef Py_ssize_t sched_count = len(scheduled), before, i, j, k
    cdef double timeout, end_time
    cdef object ready = loop._ready
    cdef object selector
    cdef list io = []
    cdef list timers = []

    if (sched_count > MIN_SCHEDULED and
            loop._timer_cancelled_count / sched_count > MIN_CANCELLED_FRACTION):
        # Drop cancelled timers when there are too many of them.
        new_scheduled = []
        for handle in scheduled:
            if handle._cancelled:
                handle._scheduled = False
            else:
                new_scheduled.append(handle)
        _heapify(new_scheduled)
        loop._scheduled = scheduled = new_scheduled
        loop._timer_cancelled_count = 0
    else:
        while scheduled and scheduled[0]._cancelled:
            loop._timer_cancelled_count -= 1
            handle = _heappop(scheduled)
            handle._scheduled = False

    if ready or loop._stopping:
        timeout = 0.0
    elif scheduled:
        timeout = min(max(0.0, <double>scheduled[0]._when - <double>loop.time()), MAX_TIMEOUT)
    else:
        timeout = -1.0

    selector = loop._selector
    if isinstance(selector, Selector) and (<Selector>selector)._native is not None:
        _poll_native(loop, <Selector>selector, io, timeout)
    else:
        loop._process_events(selector.select(None if timeout < 0 else timeout))
    before = len(ready)

    # Timers that are due.
    if scheduled:
        end_time = loop.time() + loop._clock_resolution
        while scheduled:
            handle = scheduled[0]
            if handle._when >= end_time:
                break
            handle = _heappop(scheduled)
            handle._scheduled = False
            timers.append(handle)

    i = j = k = 0
    try:
        while i < before:
            i += 1
            _run_handle(ready.popleft())
        while j < len(io):
            j += 1
            _run_handle(io[j - 1])
        while k < len(timers):
            k += 1
            _run_handle(timers[k - 1])
    except BaseException:
        # Leave what did not run at the head of _ready, in order, as the stdlib does.
        rest = io[j:] + timers[k:]
        if rest:
            for handle in reversed(rest):
                ready.insert(before - i, handle)
        raise
    handle = None


cdef object _new_object = object.__new__


def new_soon_handle(loop, callback, tuple args, context):
    """``loop.call_soon``'s Handle, made and queued without the Python
    ``Handle.__init__`` frame (for a loop not in debug mode: no traceback)."""
    handle = _new_object(HandleType)
    handle._context = PyContext_CopyCurrent() if context is None else context
    handle._loop = loop
    handle._callback = callback
    handle._args = args
    handle._cancelled = False
    handle._repr = None
    handle._source_traceback = None
    loop._ready.append(handle)
    return handle
