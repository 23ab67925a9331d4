# cython: language_level=3
"""The event loop methods called for every request, as C method descriptors
of :class:`zerosock.aio.EventLoop`.

The C ``_asyncio`` module asks ``loop.get_debug()`` for every Future and Task
it makes and calls ``loop.call_soon(callback, future, context=context)`` for
every callback it schedules; frameworks call ``create_task``, ``create_future``,
``time``, ``call_later`` and ``TimerHandle.cancel()`` per request.  As Python
methods each call costs a frame, or, compiled, an argument tuple and a keyword
dict.  Here each is a method descriptor of the kind builtin types have
(vectorcall, no frame) that does the common case -- a loop outside debug
mode -- in C and hands every other case to the Python method it replaced,
which keeps the stdlib's checks, messages and debug-mode behaviour.

Being non-data descriptors on the class, they give way to a subclass's
methods and to attributes set on the loop itself (mocks), as the stdlib's do."""

from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM

import inspect
from asyncio import base_events, events, futures, tasks

from zerosock._aio_core_c cimport LoopCore
from zerosock._aio_core_c import treat_as_stdlib_time
from zerosock._slots cimport zs_slot_get, zs_slot_offset

__all__ = ["install_loop_methods"]


cdef extern from "Python.h":
    # The singletons themselves (a cast of True or False would give 1 or 0).
    PyObject *Py_True
    PyObject *Py_False

cdef extern from *:
    """
    #define ZS_MAX_LOOP_METHODS 16
    static PyMethodDef zs_loop_methods[ZS_MAX_LOOP_METHODS];
    static int zs_loop_method_count;

    /* A method descriptor of `type` named `name`, calling `impl` with the
       calling convention `flags` says; its PyMethodDef lives as long as the
       module, as a builtin type's do. */
    static PyObject *zs_new_method(PyObject *type, const char *name, void *impl, int flags,
                                   const char *doc)
    {
        PyMethodDef *def;
        if (zs_loop_method_count == ZS_MAX_LOOP_METHODS) {
            PyErr_SetString(PyExc_RuntimeError, "too many loop methods");
            return NULL;
        }
        def = &zs_loop_methods[zs_loop_method_count++];
        def->ml_name = name;
        def->ml_meth = (PyCFunction)(void (*)(void))impl;
        def->ml_flags = flags;
        def->ml_doc = doc;
        return PyDescr_NewMethod((PyTypeObject *)type, def);
    }

    static PyObject *zs_tuple_from_array(PyObject *const *items, Py_ssize_t n)
    {
        PyObject *tuple = PyTuple_New(n);
        Py_ssize_t i;
        if (tuple == NULL)
            return NULL;
        for (i = 0; i < n; i++) {
            Py_INCREF(items[i]);
            PyTuple_SET_ITEM(tuple, i, items[i]);
        }
        return tuple;
    }
    """
    object zs_new_method(object type, const char *name, void *impl, int flags, const char *doc)
    tuple zs_tuple_from_array(PyObject **items, Py_ssize_t n)
    object PyObject_Vectorcall(object callable, PyObject **args, size_t nargsf, object kwnames)
    int METH_O, METH_NOARGS, METH_FASTCALL, METH_KEYWORDS


cdef Py_ssize_t CORE_OFFSET = -1     # where an EventLoop keeps its LoopCore
cdef type TimerHandleType = events.TimerHandle
cdef Py_ssize_t T_SCHEDULED = zs_slot_offset(TimerHandleType.__dict__["_scheduled"])
# Looked up at each call in the modules the stdlib's methods look them up in,
# so that what patches them (mocks) takes effect as it does for the stdlib.
cdef dict _base_events_globals = base_events.__dict__
cdef dict _futures_globals = futures.__dict__
cdef dict _tasks_globals = tasks.__dict__
cdef tuple LOOP_KWNAMES = ("loop",)
cdef tuple TASK_KWNAMES = ("loop", "name", "context")

# The Python methods the descriptors replace: they take every uncommon case.
cdef object _py_call_soon, _py_call_later, _py_call_at, _py_timer_handle_cancelled
cdef object _py_get_debug, _py_time, _py_create_future, _py_create_task


cdef inline PyObject *_lookup(dict namespace, str name) except? NULL:
    # Borrowed, NULL when missing: without PyDict_GetItem's saving and
    # restoring of the error state (the keys are str, whose lookup cannot fail).
    return PyDict_GetItemWithError(namespace, name)


cdef inline LoopCore _core_of(object loop):
    """The loop's LoopCore; None before ``__init__`` made it.  ``loop`` is an
    EventLoop: a method descriptor checks its ``self``."""
    cdef PyObject *core = zs_slot_get(loop, CORE_OFFSET)
    if core == NULL or type(<object>core) is not LoopCore:
        return None
    return <LoopCore>core


cdef inline LoopCore _fast_core(object loop):
    """The LoopCore when the loop is open and outside debug mode (what every
    fast path asks), else None."""
    cdef LoopCore core = _core_of(loop)
    if core is None:
        return None
    state = core.state
    if (_lookup(state, "_debug") != Py_False
            or _lookup(state, "_closed") != Py_False):
        return None
    return core


cdef object _forward(object method, object loop, PyObject **args, Py_ssize_t nargs,
                     PyObject *kwnames):
    """Call the replaced Python method with the arguments as they came."""
    cdef Py_ssize_t i, nkw = 0 if kwnames == NULL else PyTuple_GET_SIZE(<object>kwnames)
    positional = (loop,) + zs_tuple_from_array(args, nargs)
    keywords = {}
    for i in range(nkw):
        keywords[<object>PyTuple_GET_ITEM(<object>kwnames, i)] = <object>args[nargs + i]
    return method(*positional, **keywords)


cdef inline bint _context_only(PyObject **args, Py_ssize_t nargs, PyObject *kwnames,
                               PyObject **context) noexcept:
    """Whether the keywords are none or ``context=`` alone; ``context`` gets its value."""
    context[0] = <PyObject *>None
    if kwnames == NULL or PyTuple_GET_SIZE(<object>kwnames) == 0:
        return True
    if PyTuple_GET_SIZE(<object>kwnames) != 1:
        return False
    name = <object>PyTuple_GET_ITEM(<object>kwnames, 0)
    if name is not "context" and name != "context":
        return False
    context[0] = args[nargs]
    return True


# -- scheduling callbacks ----------------------------------------------------------

cdef object _call_soon(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    cdef PyObject *context
    cdef LoopCore core
    if nargs >= 1 and _context_only(args, nargs, kwnames, &context):
        core = _fast_core(loop)
        if core is not None:
            return core.call_soon(<object>args[0], zs_tuple_from_array(args + 1, nargs - 1),
                                  <object>context)
    return _forward(_py_call_soon, loop, args, nargs, kwnames)


cdef object _call_later(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    cdef PyObject *context
    cdef LoopCore core
    if nargs >= 2 and args[0] != <PyObject *>None and _context_only(args, nargs, kwnames, &context):
        core = _fast_core(loop)
        if core is not None:
            return core.call_later(<object>args[0], <object>args[1],
                                   zs_tuple_from_array(args + 2, nargs - 2), <object>context)
    return _forward(_py_call_later, loop, args, nargs, kwnames)


cdef object _call_at(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    cdef PyObject *context
    cdef LoopCore core
    if nargs >= 2 and args[0] != <PyObject *>None and _context_only(args, nargs, kwnames, &context):
        core = _fast_core(loop)
        if core is not None:
            return core.call_at(<object>args[0], <object>args[1],
                                zs_tuple_from_array(args + 2, nargs - 2), <object>context)
    return _forward(_py_call_at, loop, args, nargs, kwnames)


cdef object _timer_handle_cancelled(object loop, object handle):
    # TimerHandle.cancel() tells the loop, which counts the cancelled handles
    # still in its heap to know when to compact it.
    cdef LoopCore core = _core_of(loop)
    cdef PyObject *scheduled
    if core is None or type(handle) is not TimerHandleType:
        return _py_timer_handle_cancelled(loop, handle)
    scheduled = zs_slot_get(handle, T_SCHEDULED)
    if scheduled == NULL:
        return _py_timer_handle_cancelled(loop, handle)  # the stdlib says what is missing
    if scheduled == Py_True or (scheduled != Py_False and <object>scheduled):
        core.timers.cancelled_count += 1
    return None


# -- state ---------------------------------------------------------------------------

cdef object _get_debug(object loop, PyObject *unused):
    cdef LoopCore core = _core_of(loop)
    cdef PyObject *debug
    if core is not None:
        debug = _lookup(core.state, "_debug")
        if debug != NULL:
            return <object>debug
    return _py_get_debug(loop)


cdef object _time(object loop, PyObject *unused):
    # The stdlib's time.monotonic(), through base_events' own ``time`` global.
    cdef PyObject *module = _lookup(_base_events_globals, "time")
    if module == NULL:
        return _py_time(loop)
    return (<object>module).monotonic()


# -- futures and tasks ------------------------------------------------------------------

cdef object _create_future(object loop, PyObject *unused):
    cdef PyObject *future_type = _lookup(_futures_globals, "Future")
    cdef PyObject *argv[1]
    cdef LoopCore core = _core_of(loop)
    if (future_type == NULL or core is None
            or _lookup(core.state, "_debug") != Py_False):
        # Debug mode: the Future's traceback ends in the stdlib's frame, as it does there.
        return _py_create_future(loop)
    argv[0] = <PyObject *>loop
    return PyObject_Vectorcall(<object>future_type, argv, 0, LOOP_KWNAMES)


cdef object _create_task(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    cdef PyObject *argv[4]
    cdef PyObject *task_type
    cdef PyObject *factory
    cdef Py_ssize_t i, nkw = 0 if kwnames == NULL else PyTuple_GET_SIZE(<object>kwnames)
    cdef LoopCore core
    if nargs != 1:
        return _forward(_py_create_task, loop, args, nargs, kwnames)
    argv[0] = args[0]
    argv[1] = <PyObject *>loop
    argv[2] = argv[3] = <PyObject *>None
    for i in range(nkw):
        name = <object>PyTuple_GET_ITEM(<object>kwnames, i)
        if name == "name":
            argv[2] = args[1 + i]
        elif name == "context":
            argv[3] = args[1 + i]
        else:
            return _forward(_py_create_task, loop, args, nargs, kwnames)
    core = _fast_core(loop)
    task_type = _lookup(_tasks_globals, "Task")
    if core is None or task_type == NULL:
        return _forward(_py_create_task, loop, args, nargs, kwnames)
    factory = _lookup(core.state, "_task_factory")
    if factory != <PyObject *>None:
        return _forward(_py_create_task, loop, args, nargs, kwnames)
    # The stdlib's tasks.Task(coro, loop=self, name=name, context=context).
    return PyObject_Vectorcall(<object>task_type, argv, 1, TASK_KWNAMES)


# -- installation ------------------------------------------------------------------------

cdef int _install(object cls, const char *name, void *impl, int flags, const char *doc) except -1:
    setattr(cls, name.decode("ascii"), zs_new_method(cls, name, impl, flags, doc))
    return 0


def install_loop_methods(cls):
    """Replace ``cls``'s hot methods by C method descriptors; ``cls`` keeps
    its LoopCore in a ``_core`` slot.  Their Python methods, as ``cls`` has
    them now, take what the C paths leave."""
    global CORE_OFFSET, _py_call_soon, _py_call_later, _py_call_at, _py_timer_handle_cancelled
    global _py_get_debug, _py_time, _py_create_future, _py_create_task
    CORE_OFFSET = zs_slot_offset(cls.__dict__["_core"])
    _py_call_soon = cls.call_soon
    _py_call_later = cls.call_later
    _py_call_at = cls.call_at
    _py_timer_handle_cancelled = cls._timer_handle_cancelled
    _py_get_debug = cls.get_debug
    _py_time = cls.time
    _py_create_future = cls.create_future
    _py_create_task = cls.create_task
    cdef int fast = METH_FASTCALL | METH_KEYWORDS
    _install(cls, b"call_soon", <void *>_call_soon, fast,
             b"call_soon($self, callback, /, *args, context=None)\n--\n\n"
             b"Arrange for a callback to be called as soon as possible.")
    _install(cls, b"call_later", <void *>_call_later, fast,
             b"call_later($self, delay, callback, /, *args, context=None)\n--\n\n"
             b"Arrange for a callback to be called after a given time.")
    _install(cls, b"call_at", <void *>_call_at, fast,
             b"call_at($self, when, callback, /, *args, context=None)\n--\n\n"
             b"Like call_later(), but uses an absolute time.")
    _install(cls, b"_timer_handle_cancelled", <void *>_timer_handle_cancelled, METH_O,
             b"_timer_handle_cancelled($self, handle, /)\n--\n\n"
             b"Notification that a TimerHandle has been cancelled.")
    _install(cls, b"get_debug", <void *>_get_debug, METH_NOARGS,
             b"get_debug($self, /)\n--\n\nWhether the loop is in debug mode.")
    _install(cls, b"time", <void *>_time, METH_NOARGS,
             b"time($self, /)\n--\n\nReturn the time according to the event loop's clock.")
    _install(cls, b"create_future", <void *>_create_future, METH_NOARGS,
             b"create_future($self, /)\n--\n\nCreate a Future object attached to the loop.")
    # Where create_task and Task take the same keywords (3.11 on): earlier
    # versions' Task has no context.
    if list(inspect.signature(_py_create_task).parameters) == ["self", "coro", "name", "context"]:
        _install(cls, b"create_task", <void *>_create_task, fast,
                 b"create_task($self, coro, *, name=None, context=None)\n--\n\n"
                 b"Schedule a coroutine object. Return a task object.")
    treat_as_stdlib_time(cls.__dict__["time"])
