# cython: language_level=3
"""The loop core of zerosock.aio: the event loop's iteration, the runner of
its ready queue and its timers, in C.

An iteration is the stdlib's ``BaseEventLoop._run_once`` step for step, on the
same ``_ready`` deque, polling through the C selector's C-level API, with the
timers on a C heap (:mod:`zerosock._aio_timers_c`) and the transports' I/O
handles run without a Python call."""

cimport cython
from cpython.contextvars cimport PyContext_CopyCurrent, PyContext_Enter, PyContext_Exit
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

from zerosock._aio_timers_c cimport TimerHeap, zs_loop_clock
from zerosock._slots cimport zs_slot_get, zs_slot_offset, zs_slot_set
from zerosock._aio_transport_c cimport IOHandle
from zerosock._selectors_c cimport (Selector, zs_event, ZS_EV_HUP, ZS_EV_READ, ZS_EV_WRITE,
                                    ZS_POLLER_EPOLL)

from selectors import EVENT_READ, EVENT_WRITE

cdef double MAX_TIMEOUT = base_events.MAXIMUM_SELECT_TIMEOUT
cdef Py_ssize_t MIN_SCHEDULED = base_events._MIN_SCHEDULED_TIMER_HANDLES
cdef double MIN_CANCELLED_FRACTION = base_events._MIN_CANCELLED_TIMER_HANDLES_FRACTION
cdef type IOHandleType = IOHandle
cdef type StdHandleType = events.Handle
cdef type StdTimerHandleType = events.TimerHandle


class Handle(events.Handle):
    """What ``call_soon`` returns outside debug mode: an ``asyncio.Handle``
    whose methods are C (see :mod:`zerosock._aio_loop_methods_c`)."""

    __slots__ = ()


class TimerHandle(events.TimerHandle):
    """What ``call_later`` and ``call_at`` return outside debug mode: an
    ``asyncio.TimerHandle`` whose methods are C."""

    __slots__ = ()


cdef extern from *:
    """
    /* How zerosock's Handle and TimerHandle are made and freed: what the
       interpreter's generic allocation and deallocation for classes do for
       them (no __dict__, no finalizer), without the deallocation's walk of
       the bases' members, and with a free list.  A loop makes and frees a
       few handles per callback it schedules; reusing one skips the memory
       allocator and the collector's accounting.  A freed handle is kept
       untracked, its slots and weak references already cleared, owning no
       reference (its class's is dropped as for any freed instance). */
    #define ZS_HANDLE_SLOTS 9
    #define ZS_HANDLE_FREE_MAX 250
    typedef struct {
        PyTypeObject *type;
        destructor generic;             /* what the class had */
        Py_ssize_t offsets[ZS_HANDLE_SLOTS];
        int count;
        int nfree;
        PyObject *free[ZS_HANDLE_FREE_MAX];
    } zs_handle_layout;
    static zs_handle_layout zs_handle_layouts[2];
    static int zs_handle_layout_count;

    static void zs_handle_dealloc(PyObject *self)
    {
        PyTypeObject *type = Py_TYPE(self);
        zs_handle_layout *layout = NULL;
        int i;
        for (i = 0; i < zs_handle_layout_count && layout == NULL; i++) {
            if (type == zs_handle_layouts[i].type)
                layout = &zs_handle_layouts[i];
        }
        for (i = 0; i < zs_handle_layout_count && layout == NULL; i++) {
            /* A subclass's instance: the generic deallocation did its part. */
            if (PyType_IsSubtype(type, zs_handle_layouts[i].type))
                layout = &zs_handle_layouts[i];
        }
        if (type == layout->type && (type->tp_finalize != NULL || type->tp_del != NULL)) {
            layout->generic(self);  /* a finalizer given to the class itself since */
            return;
        }
        PyObject_GC_UnTrack(self);
        Py_TRASHCAN_BEGIN(self, zs_handle_dealloc)
        /* (Where the list is depends on the version: 3.12 on may manage it.) */
        if (type->tp_weaklistoffset != 0)
            PyObject_ClearWeakRefs(self);
        for (i = 0; i < layout->count; i++)
            Py_CLEAR(*(PyObject **)((char *)self + layout->offsets[i]));
        if (type == layout->type && layout->nfree < ZS_HANDLE_FREE_MAX
                && type->tp_free == PyObject_GC_Del)
            layout->free[layout->nfree++] = self;
        else
            type->tp_free(self);
        Py_DECREF(type);  /* a class's instances own a reference to it */
        Py_TRASHCAN_END
    }

    /* A new instance of `type` (one of the two classes) with every slot
       NULL, as PyType_GenericAlloc makes it. */
    static PyObject *zs_handle_alloc(PyTypeObject *type)
    {
        zs_handle_layout *layout = NULL;
        PyObject *self;
        if (zs_handle_layout_count == 2)
            layout = type == zs_handle_layouts[0].type ? &zs_handle_layouts[0]
                   : type == zs_handle_layouts[1].type ? &zs_handle_layouts[1] : NULL;
        if (layout == NULL || layout->nfree == 0 || type->tp_dealloc != zs_handle_dealloc)
            return PyType_GenericAlloc(type, 0);
        self = layout->free[--layout->nfree];
        (void)PyObject_Init(self, type);  /* the class's reference, a new refcount */
        PyObject_GC_Track(self);
        return self;
    }

    static int zs_set_handle_dealloc(PyObject *kind, Py_ssize_t *offsets, int count)
    {
        PyTypeObject *type = (PyTypeObject *)kind;
        zs_handle_layout *layout;
        if (zs_handle_layout_count == 2 || count > ZS_HANDLE_SLOTS
                || !(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || type->tp_dictoffset != 0) {
            PyErr_SetString(PyExc_RuntimeError, "not a handle class this deallocation fits");
            return -1;
        }
        layout = &zs_handle_layouts[zs_handle_layout_count++];
        layout->type = type;
        layout->generic = type->tp_dealloc;
        memcpy(layout->offsets, offsets, sizeof(Py_ssize_t) * (size_t)count);
        layout->count = count;
        layout->nfree = 0;
        type->tp_dealloc = zs_handle_dealloc;
        return 0;
    }

    static int zs_handle_free_count(PyObject *kind)
    {
        int i;
        for (i = 0; i < zs_handle_layout_count; i++) {
            if ((PyObject *)zs_handle_layouts[i].type == kind)
                return zs_handle_layouts[i].nfree;
        }
        return 0;
    }
    """
    object zs_handle_alloc(PyTypeObject *kind)
    int zs_set_handle_dealloc(object kind, Py_ssize_t *offsets, int count) except -1
    int zs_handle_free_count(object kind)


cdef int _set_dealloc(object kind, tuple owners) except -1:
    cdef Py_ssize_t offsets[9]
    cdef int count = 0
    for owner in owners:
        for name in owner.__slots__:
            if name != "__weakref__":
                offsets[count] = zs_slot_offset(owner.__dict__[name])
                count += 1
    return zs_set_handle_dealloc(kind, offsets, count)


_set_dealloc(Handle, (events.Handle,))
_set_dealloc(TimerHandle, (events.TimerHandle, events.Handle))


def _free_handles(kind):
    """How many freed instances of ``kind`` wait for reuse (for tests)."""
    return zs_handle_free_count(kind)


cdef extern from "Python.h":
    Py_ssize_t PyDict_GET_SIZE(object d)
    ctypedef struct zs_type_tag "PyTypeObject":
        # Reset whenever the type or one of its bases is assigned an
        # attribute; never reused (3.9 to 3.13).
        unsigned int tp_version_tag

cdef type HandleType = Handle
cdef type TimerHandleType = TimerHandle
# The stdlib's BaseEventLoop.time, and its C twins (see treat_as_stdlib_time).
cdef set _stdlib_times = {base_events.BaseEventLoop.time}
cdef object _format_handle = base_events._format_handle
cdef object _format_callback_source = format_helpers._format_callback_source
cdef bint FORMAT_TAKES_DEBUG = "debug" in inspect.signature(_format_callback_source).parameters

# Where Handle and TimerHandle keep their state: see zerosock._slots.
cdef Py_ssize_t H_CALLBACK = zs_slot_offset(StdHandleType.__dict__["_callback"])
cdef Py_ssize_t H_ARGS = zs_slot_offset(StdHandleType.__dict__["_args"])
cdef Py_ssize_t H_CANCELLED = zs_slot_offset(StdHandleType.__dict__["_cancelled"])
cdef Py_ssize_t H_LOOP = zs_slot_offset(StdHandleType.__dict__["_loop"])
cdef Py_ssize_t H_TRACEBACK = zs_slot_offset(StdHandleType.__dict__["_source_traceback"])
cdef Py_ssize_t H_REPR = zs_slot_offset(StdHandleType.__dict__["_repr"])
cdef Py_ssize_t H_CONTEXT = zs_slot_offset(StdHandleType.__dict__["_context"])
cdef Py_ssize_t T_WHEN = zs_slot_offset(StdTimerHandleType.__dict__["_when"])
cdef Py_ssize_t T_SCHEDULED = zs_slot_offset(StdTimerHandleType.__dict__["_scheduled"])


cdef inline bint _is_stdlib_handle(object handle):
    """Whether ``handle`` is one of the stdlib's handles or ours, whose
    behaviour (``_run``, ``_cancelled``, ``_scheduled``) is the stdlib's:
    then its slots can be read and written directly."""
    cdef type kind = type(handle)
    return (kind is HandleType or kind is TimerHandleType
            or kind is StdHandleType or kind is StdTimerHandleType)


cdef inline bint is_timer_handle(object handle) noexcept:
    """Whether ``handle``'s type is the stdlib's TimerHandle or ours."""
    cdef type kind = type(handle)
    return kind is TimerHandleType or kind is StdTimerHandleType


cdef object _new_handle(type kind, object loop, object callback, tuple args, object context):
    """A Handle or TimerHandle as ``__init__`` leaves it outside debug mode,
    made without its Python frames."""
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


cdef inline int _set_scheduled(object timer, bint scheduled) except -1:
    if is_timer_handle(timer):
        zs_slot_set(timer, T_SCHEDULED, scheduled)
    else:
        timer._scheduled = scheduled
    return 0


cdef int _unschedule(object timer) except -1:
    return _set_scheduled(timer, False)


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
        selector = loop._selector
        if isinstance(selector, Selector) and (<Selector>selector)._native is not None:
            self.native = <Selector>selector

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
        handle = _new_handle(HandleType, self.loop, callback, args, context)
        self.ready_append(handle)
        return handle

    cpdef object call_at(self, object when, object callback, tuple args, object context):
        """``loop.call_at``'s TimerHandle, pushed on the C heap (a loop not in debug mode)."""
        cdef double at
        if when is None:
            raise TypeError("when cannot be None")
        at = when
        handle = _new_handle(TimerHandleType, self.loop, callback, args, context)
        zs_slot_set(handle, T_WHEN, when)
        zs_slot_set(handle, T_SCHEDULED, False)
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

    cdef int _poll(self, double timeout) except -1:
        cdef Selector sel = self.native
        cdef int ms, n, i, mask
        cdef zs_event ev
        cdef PyObject *found
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
        cdef unsigned int tag
        if sel is None or sel.writers:
            return False
        tag = (<zs_type_tag *>Py_TYPE(self.loop)).tp_version_tag
        if tag == 0 or tag != self.skip_type_tag:
            # Checked again whenever the loop's class (or a base) changed.
            from zerosock._aio_c import EventLoop
            kind = type(self.loop)
            ok = (sel._native.poller.kind == ZS_POLLER_EPOLL
                  and type(sel).select is Selector.select
                  and getattr(kind, "_run_once", None) is EventLoop._run_once
                  and getattr(kind, "_process_events", None) is EventLoop._process_events)
            tag = (<zs_type_tag *>Py_TYPE(self.loop)).tp_version_tag
            self.skip_type_tag = tag if ok else 0
            if self.skip_type_tag == 0:
                return False
        if PyDict_GET_SIZE(self.state) != self.state_size:
            # An attribute came or went on the loop itself: an own _run_once may be one.
            self.state_size = PyDict_GET_SIZE(self.state)
            self.own_iteration = "_run_once" not in self.state
        return self.own_iteration

    cpdef int run_once(self) except -1:
        """One iteration of the loop: the stdlib's ``_run_once``, in its order."""
        cdef object ready = self.ready
        cdef TimerHeap timers = self.timers
        cdef Py_ssize_t todo, i = 0, j
        cdef PyObject *taken
        cdef double timeout
        cdef bint debug = self.loop._debug
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
                self._poll(timeout)
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
