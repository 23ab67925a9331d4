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
methods and to attributes set on the loop itself (mocks), as the stdlib's do.
``time`` reads the clock ``time.monotonic()`` reads, without calling it.
``create_future`` and ``create_task`` make asyncio's C Future and Task with a
keyword dict the loop keeps, where a call with keywords builds one each time
(a patched ``asyncio.futures.Future`` or ``asyncio.tasks.Task`` is called as
the stdlib calls it).  Before Python 3.12, the C Futures and Tasks look
``call_soon`` up as an attribute, which binds a new method per callback: each
loop keeps its own binding in its ``__dict__`` (see ``bind_loop_methods``).

The handles these methods return are zerosock's subclasses of
``asyncio.Handle`` and ``asyncio.TimerHandle`` (same slots, same Python
methods otherwise) whose ``cancel``, ``cancelled`` and ``when`` are C method
descriptors too: frameworks set a timer and cancel it per request (uvicorn's
keep-alive), which on the stdlib's classes runs two Python frames.  A
handle's ``cancel`` tells its loop through ``loop._timer_handle_cancelled``
and asks ``loop.get_debug()`` as the stdlib's does; when these are the C
methods above (not replaced on a subclass or on the loop) it does their work
in place."""

from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject, PyObject_Call
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM

import inspect
import sys
from asyncio import base_events, events, futures, tasks

from zerosock._aio_core_c cimport LoopCore
from zerosock._aio_timers_c cimport zs_loop_clock
from zerosock._aio_core_c import Handle, TimerHandle, treat_as_stdlib_time
from zerosock._slots cimport zs_slot_get, zs_slot_offset, zs_slot_set

__all__ = ["bind_loop_methods", "install_loop_methods"]


cdef extern from "Python.h":
    # The singletons themselves (a cast of True or False would give 1 or 0).
    PyObject *Py_True
    PyObject *Py_False
    ctypedef struct PyTypeObject:
        pass
    PyTypeObject *Py_TYPE(object o)
    bint PyObject_TypeCheck(object o, PyTypeObject *kind)
    PyObject *_PyType_Lookup(PyTypeObject *kind, object name)

cdef extern from *:
    """
    #define ZS_MAX_LOOP_METHODS 24
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

    /* The method `impl` bound to `self`, as a method descriptor's __get__
       binds one (a builtin method whose __self__ is `self`); its PyMethodDef
       lives as long as the module. */
    static PyMethodDef zs_bound_call_soon_def;

    static PyObject *zs_new_bound_call_soon(PyObject *self, void *impl, int flags,
                                            const char *doc)
    {
        zs_bound_call_soon_def.ml_name = "call_soon";
        zs_bound_call_soon_def.ml_meth = (PyCFunction)(void (*)(void))impl;
        zs_bound_call_soon_def.ml_flags = flags;
        zs_bound_call_soon_def.ml_doc = doc;
        return PyCFunction_NewEx(&zs_bound_call_soon_def, self, NULL);
    }

    /* The last loop class found to keep some of the C methods, by its
       version tag: any change to the class or to one of its bases gives it
       a new tag (the interpreter's method cache relies on the same). */
    typedef struct {
        PyTypeObject *type;
        unsigned int tag;
    } zs_type_memo;

    static inline int zs_type_unchanged(zs_type_memo *memo, PyTypeObject *type)
    {
        return type == memo->type && memo->tag != 0
            && (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)
            && type->tp_version_tag == memo->tag;
    }

    static void zs_remember_type(zs_type_memo *memo, PyTypeObject *type)
    {
        if (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) {
            memo->type = type;
            memo->tag = type->tp_version_tag;
        }
    }

    /* Whether the str `name` (a keyword name) is the str `known`: identity
       first, then the characters -- where a str comparison calls
       PyUnicode_Compare. */
    static inline int zs_same_str(PyObject *name, PyObject *known)
    {
        Py_ssize_t n;
        if (name == known)
            return 1;
        if (!PyUnicode_IS_READY(name) || !PyUnicode_IS_READY(known))
            return PyUnicode_Compare(name, known) == 0;
        n = PyUnicode_GET_LENGTH(name);
        return n == PyUnicode_GET_LENGTH(known) && PyUnicode_KIND(name) == PyUnicode_KIND(known)
            && memcmp(PyUnicode_DATA(name), PyUnicode_DATA(known),
                      (size_t)n * PyUnicode_KIND(name)) == 0;
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
    object zs_new_bound_call_soon(object self, void *impl, int flags, const char *doc)
    ctypedef struct zs_type_memo:
        pass
    bint zs_type_unchanged(zs_type_memo *memo, PyTypeObject *kind)
    bint zs_same_str(object name, object known)
    void zs_remember_type(zs_type_memo *memo, PyTypeObject *kind)
    tuple zs_tuple_from_array(PyObject **items, Py_ssize_t n)
    object PyObject_Vectorcall(object callable, PyObject **args, size_t nargsf, object kwnames)
    int METH_O, METH_NOARGS, METH_FASTCALL, METH_KEYWORDS


cdef Py_ssize_t CORE_OFFSET = -1     # where an EventLoop keeps its LoopCore
# Where it keeps the state these methods read at each call (slots: a load, where
# its __dict__ would cost a lookup).
cdef Py_ssize_t DEBUG_OFFSET = -1, CLOSED_OFFSET = -1, FACTORY_OFFSET = -1
cdef type LoopType = None            # the class install_loop_methods was given
cdef type StdTimerHandleType = events.TimerHandle
cdef type TimerHandleType = TimerHandle
cdef Py_ssize_t H_CANCELLED = zs_slot_offset(events.Handle.__dict__["_cancelled"])
cdef Py_ssize_t H_LOOP = zs_slot_offset(events.Handle.__dict__["_loop"])
cdef Py_ssize_t H_CALLBACK = zs_slot_offset(events.Handle.__dict__["_callback"])
cdef Py_ssize_t H_ARGS = zs_slot_offset(events.Handle.__dict__["_args"])
cdef Py_ssize_t H_REPR = zs_slot_offset(events.Handle.__dict__["_repr"])
cdef Py_ssize_t T_SCHEDULED = zs_slot_offset(StdTimerHandleType.__dict__["_scheduled"])
cdef Py_ssize_t T_WHEN = zs_slot_offset(StdTimerHandleType.__dict__["_when"])
# Looked up at each call in the modules the stdlib's methods look them up in,
# so that what patches them (mocks) takes effect as it does for the stdlib.
cdef dict _futures_globals = futures.__dict__
cdef dict _tasks_globals = tasks.__dict__
cdef tuple LOOP_KWNAMES = ("loop",)
# asyncio's C Future and Task (None without the _asyncio module).
cdef object CFutureType = getattr(futures, "_CFuture", None)
cdef object CTaskType = getattr(tasks, "_CTask", None)
cdef tuple TASK_KWNAMES = ("loop", "name", "context")
cdef bint TASK_KEYWORDS_AS_GIVEN = False  # create_task(coro, **kwargs), 3.14 on

# The Python methods the descriptors replace: they take every uncommon case.
cdef object _py_call_soon, _py_call_later, _py_call_at, _py_timer_handle_cancelled
cdef object _py_get_debug, _py_create_future, _py_create_task
cdef object _py_handle_cancel = events.Handle.cancel
cdef object _py_timer_cancel = events.TimerHandle.cancel
cdef object _py_cancelled = events.Handle.cancelled
cdef object _py_when = events.TimerHandle.when
# The loop's C descriptors a handle's cancel looks for on its loop.
cdef object _c_timer_handle_cancelled = None
cdef object _c_call_soon = None
cdef object _c_get_debug = None


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
    if (core is None or zs_slot_get(loop, DEBUG_OFFSET) != Py_False
            or zs_slot_get(loop, CLOSED_OFFSET) != Py_False):
        return None
    return core


cdef zs_type_memo _keeps_c_methods_memo, _keeps_c_call_soon_memo


cdef bint _class_keeps_c_methods(PyTypeObject *kind):
    """Whether the loop class ``kind`` has the C _timer_handle_cancelled and
    get_debug installed here (neither it nor a base replaced them)."""
    if zs_type_unchanged(&_keeps_c_methods_memo, kind):
        return True
    if (_PyType_Lookup(kind, "_timer_handle_cancelled") != <PyObject *>_c_timer_handle_cancelled
            or _PyType_Lookup(kind, "get_debug") != <PyObject *>_c_get_debug):
        return False
    zs_remember_type(&_keeps_c_methods_memo, kind)
    return True


cdef bint _class_keeps_c_call_soon(PyTypeObject *kind):
    """Whether ``call_soon`` of the loop class ``kind`` is the C one installed here."""
    if zs_type_unchanged(&_keeps_c_call_soon_memo, kind):
        return True
    if _PyType_Lookup(kind, "call_soon") != <PyObject *>_c_call_soon:
        return False
    zs_remember_type(&_keeps_c_call_soon_memo, kind)
    return True


cdef LoopCore _own_core(object loop, str name):
    """The LoopCore of ``loop`` when ``loop.<name>`` (``_timer_handle_cancelled``
    or ``get_debug``) is the C method installed here, not replaced by a
    subclass or an attribute of the loop; else None."""
    cdef LoopCore core
    if LoopType is None or not PyObject_TypeCheck(loop, <PyTypeObject *>LoopType):
        return None
    core = _core_of(loop)
    if (core is None or not _class_keeps_c_methods(Py_TYPE(loop))
            or _lookup(core.state, name) != NULL):
        return None
    return core


cdef object _forward(object method, object loop, PyObject **args, Py_ssize_t nargs,
                     PyObject *kwnames):
    """Call the replaced Python method with the arguments as they came
    (``loop`` first, unless None: ``method`` is bound)."""
    cdef Py_ssize_t i, nkw = 0 if kwnames == NULL else PyTuple_GET_SIZE(<object>kwnames)
    positional = zs_tuple_from_array(args, nargs)
    if loop is not None:
        positional = (loop,) + positional
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
    if not zs_same_str(<object>PyTuple_GET_ITEM(<object>kwnames, 0), "context"):
        return False
    context[0] = args[nargs]
    return True


# -- scheduling callbacks ----------------------------------------------------------

cdef enum Schedule:
    SOON, LATER, AT


cdef object _schedule(Schedule kind, object loop, PyObject **args, Py_ssize_t nargs,
                      PyObject *kwnames):
    """call_soon, call_later or call_at in C for an open loop outside debug
    mode called with ``context=`` as its only keyword, else their Python method."""
    cdef PyObject *context
    cdef LoopCore core
    cdef Py_ssize_t fixed = 1 if kind == SOON else 2   # (delay or when,) callback
    if (nargs >= fixed and (kind == SOON or args[0] != <PyObject *>None)
            and _context_only(args, nargs, kwnames, &context)):
        core = _fast_core(loop)
        if core is not None:
            rest = zs_tuple_from_array(args + fixed, nargs - fixed)
            if kind == SOON:
                return core.call_soon(<object>args[0], rest, <object>context)
            if kind == LATER:
                return core.call_later(<object>args[0], <object>args[1], rest, <object>context)
            return core.call_at(<object>args[0], <object>args[1], rest, <object>context)
    fallback = _py_call_soon if kind == SOON else _py_call_later if kind == LATER else _py_call_at
    return _forward(fallback, loop, args, nargs, kwnames)


cdef object _call_soon(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _schedule(SOON, loop, args, nargs, kwnames)


cdef object _bound_call_soon(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    # The loop's own binding (see bind_loop_methods), found before its class's
    # attribute: while that is still the C call_soon, the same method; once
    # something replaced it on the class (a patch), what the class has now.
    cdef PyObject *current
    if _class_keeps_c_call_soon(Py_TYPE(loop)):
        return _schedule(SOON, loop, args, nargs, kwnames)
    current = _PyType_Lookup(Py_TYPE(loop), "call_soon")
    if current == NULL:
        raise AttributeError(f"'{type(loop).__name__}' object has no attribute 'call_soon'")
    method = <object>current  # owned: binding it may run Python code
    if hasattr(type(method), "__get__"):
        method = method.__get__(loop, type(loop))
    return _forward(method, None, args, nargs, kwnames)


cdef object _call_later(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _schedule(LATER, loop, args, nargs, kwnames)


cdef object _call_at(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _schedule(AT, loop, args, nargs, kwnames)


cdef object _count_cancelled(LoopCore core, object loop, object handle):
    # The loop counts the cancelled handles still in its heap to know when to compact it.
    cdef PyObject *scheduled
    cdef type kind = type(handle)
    if kind is not TimerHandleType and kind is not StdTimerHandleType:
        return _py_timer_handle_cancelled(loop, handle)
    scheduled = zs_slot_get(handle, T_SCHEDULED)
    if scheduled == NULL:
        return _py_timer_handle_cancelled(loop, handle)  # the stdlib says what is missing
    if scheduled == Py_True:
        core.timers.cancelled_count += 1
    elif scheduled != Py_False:
        flag = <object>scheduled  # owned: its __bool__ may replace the slot
        if flag:
            core.timers.cancelled_count += 1
    return None


cdef object _timer_handle_cancelled(object loop, object handle):
    # What TimerHandle.cancel() tells the loop.
    cdef LoopCore core = _core_of(loop)
    if core is None:
        return _py_timer_handle_cancelled(loop, handle)
    return _count_cancelled(core, loop, handle)


# -- state ---------------------------------------------------------------------------

cdef object _get_debug(object loop, PyObject *unused):
    cdef PyObject *debug = zs_slot_get(loop, DEBUG_OFFSET)
    if debug != NULL:
        return <object>debug
    return _py_get_debug(loop)  # (deleted: the stdlib's error)


cdef object _time(object loop, PyObject *unused):
    # The clock time.monotonic() reads, without the call (a subclass's or
    # the loop's own ``time`` is found before this method and used instead).
    return zs_loop_clock()


# -- futures and tasks ------------------------------------------------------------------

cdef inline dict _loop_keywords(object loop):
    """``{"loop": loop}``, kept by the loop's LoopCore, or None.  Made once:
    the C Future and Task read their keywords in ``__init__`` and keep
    nothing of the dict, where a call with keywords builds one per call."""
    cdef LoopCore core = _core_of(loop)
    if core is None or core.loop is not loop:
        return None
    return core.loop_keywords


cdef object _create_future(object loop, PyObject *unused):
    cdef PyObject *future_type = _lookup(_futures_globals, "Future")
    cdef PyObject *argv[1]
    cdef dict keywords
    if future_type == NULL or zs_slot_get(loop, DEBUG_OFFSET) != Py_False:
        # Debug mode: the Future's traceback ends in the stdlib's frame, as it does there.
        return _py_create_future(loop)
    if future_type == <PyObject *>CFutureType:
        keywords = _loop_keywords(loop)
        if keywords is not None:
            return PyObject_Call(<object>future_type, (), keywords)
    argv[0] = <PyObject *>loop
    return PyObject_Vectorcall(<object>future_type, argv, 0, LOOP_KWNAMES)


cdef object _create_task(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    cdef PyObject *argv[4]
    cdef PyObject *task_type
    cdef Py_ssize_t i, nkw = 0 if kwnames == NULL else PyTuple_GET_SIZE(<object>kwnames)
    cdef LoopCore core
    cdef dict keywords
    if nargs != 1:
        return _forward(_py_create_task, loop, args, nargs, kwnames)
    argv[0] = args[0]
    argv[1] = <PyObject *>loop
    argv[2] = argv[3] = <PyObject *>None
    for i in range(nkw):
        name = <object>PyTuple_GET_ITEM(<object>kwnames, i)
        if zs_same_str(name, "name"):
            argv[2] = args[1 + i]
        elif zs_same_str(name, "context"):
            argv[3] = args[1 + i]
        else:
            return _forward(_py_create_task, loop, args, nargs, kwnames)
    core = _fast_core(loop)
    task_type = _lookup(_tasks_globals, "Task")
    if core is None or task_type == NULL:
        return _forward(_py_create_task, loop, args, nargs, kwnames)
    if zs_slot_get(loop, FACTORY_OFFSET) != <PyObject *>None:
        return _forward(_py_create_task, loop, args, nargs, kwnames)
    if task_type == <PyObject *>CTaskType and argv[2] == <PyObject *>None and argv[3] == argv[2]:
        # The C Task takes name=None and context=None as left out.
        keywords = _loop_keywords(loop)
        if keywords is not None:
            return PyObject_Call(<object>task_type, (<object>argv[0],), keywords)
    if TASK_KEYWORDS_AS_GIVEN and task_type != <PyObject *>CTaskType:
        # 3.14's tasks.Task(coro, loop=self, **kwargs): another Task class
        # (a patch) sees only the keywords the caller gave.
        keywords = {"loop": loop}
        for i in range(nkw):
            keywords[<object>PyTuple_GET_ITEM(<object>kwnames, i)] = <object>args[1 + i]
        return PyObject_Call(<object>task_type, (<object>argv[0],), keywords)
    # The stdlib's tasks.Task(coro, loop=self, name=name, context=context).
    return PyObject_Vectorcall(<object>task_type, argv, 1, TASK_KWNAMES)


# -- the handles' methods ------------------------------------------------------------------
# Each does what the stdlib's method does, reading and writing the slots
# directly; a handle whose slots are not as __init__ leaves them (never set,
# or a flag that is not a bool) gets the stdlib's method, which says what is
# wrong or runs the flag's Python code in the stdlib's order.

cdef bint _loop_debug(object loop) except -1:
    """``loop.get_debug()``, as a truth value."""
    cdef LoopCore core = _own_core(loop, "get_debug")
    cdef PyObject *debug
    if core is not None:
        debug = zs_slot_get(loop, DEBUG_OFFSET)
        if debug == Py_False:
            return False
        if debug == Py_True:
            return True
    return bool(loop.get_debug())


cdef object _handle_cancel(object handle, PyObject *unused):
    cdef PyObject *flag = zs_slot_get(handle, H_CANCELLED)
    cdef PyObject *loop_slot = zs_slot_get(handle, H_LOOP)
    if flag == Py_True:
        return None
    if flag != Py_False or loop_slot == NULL:
        return _py_handle_cancel(handle)
    loop = <object>loop_slot  # owned: get_debug() may run Python code
    zs_slot_set(handle, H_CANCELLED, True)
    if _loop_debug(loop):
        # Debug mode keeps the repr, callback and arguments included, for
        # the log of a slow callback.
        zs_slot_set(handle, H_REPR, repr(handle))
    zs_slot_set(handle, H_CALLBACK, None)
    zs_slot_set(handle, H_ARGS, None)
    return None


cdef object _timer_cancel(object handle, PyObject *unused):
    cdef PyObject *flag = zs_slot_get(handle, H_CANCELLED)
    cdef PyObject *loop_slot = zs_slot_get(handle, H_LOOP)
    cdef LoopCore core
    if flag == Py_True:
        return None
    if flag != Py_False or loop_slot == NULL:
        return _py_timer_cancel(handle)
    loop = <object>loop_slot  # owned, through the loop's Python code
    core = _own_core(loop, "_timer_handle_cancelled")
    if core is not None:
        _count_cancelled(core, loop, handle)
    else:
        loop._timer_handle_cancelled(handle)
    return _handle_cancel(handle, NULL)  # Handle.cancel, which reads the flag again


cdef object _cancelled(object handle, PyObject *unused):
    cdef PyObject *flag = zs_slot_get(handle, H_CANCELLED)
    if flag == NULL:
        return _py_cancelled(handle)
    return <object>flag


cdef object _when(object handle, PyObject *unused):
    cdef PyObject *when = zs_slot_get(handle, T_WHEN)
    if when == NULL:
        return _py_when(handle)
    return <object>when


# TimerHandle's comparisons and hash, the stdlib's expressions compiled: the
# same attribute reads and comparisons (a NaN time included), no frame.
# ``TimerHandle`` is looked up in asyncio.events at each call, as there.

cdef dict _events_globals = events.__dict__


cdef inline bint _is_timer_handle(object other) except -1:
    cdef PyObject *kind = _lookup(_events_globals, "TimerHandle")
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


# -- installation ------------------------------------------------------------------------

cdef int _install(object cls, const char *name, void *impl, int flags, const char *doc) except -1:
    setattr(cls, name.decode("ascii"), zs_new_method(cls, name, impl, flags, doc))
    return 0


def install_loop_methods(cls):
    """Replace ``cls``'s hot methods by C method descriptors; ``cls`` keeps
    its LoopCore in a ``_core`` slot, and ``_debug``, ``_closed`` and
    ``_task_factory`` in slots.  Their Python methods, as ``cls`` has
    them now, take what the C paths leave."""
    global CORE_OFFSET, _py_call_soon, _py_call_later, _py_call_at, _py_timer_handle_cancelled
    global _py_get_debug, _py_create_future, _py_create_task
    global LoopType, _c_timer_handle_cancelled, _c_get_debug, _c_call_soon
    global DEBUG_OFFSET, CLOSED_OFFSET, FACTORY_OFFSET, TASK_KEYWORDS_AS_GIVEN
    if LoopType is not None:
        raise RuntimeError("the loop methods are installed already")
    LoopType = cls
    CORE_OFFSET = zs_slot_offset(cls.__dict__["_core"])
    DEBUG_OFFSET = zs_slot_offset(cls.__dict__["_debug"])
    CLOSED_OFFSET = zs_slot_offset(cls.__dict__["_closed"])
    FACTORY_OFFSET = zs_slot_offset(cls.__dict__["_task_factory"])
    _py_call_soon = cls.call_soon
    _py_call_later = cls.call_later
    _py_call_at = cls.call_at
    _py_timer_handle_cancelled = cls._timer_handle_cancelled
    _py_get_debug = cls.get_debug
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
    # Where create_task and Task take the same keywords: 3.11-3.13 name them,
    # 3.14 on pass every keyword (eager_start too) on to the factory or Task.
    # Earlier versions' Task has no context.
    create_task_parameters = list(inspect.signature(_py_create_task).parameters)
    if create_task_parameters == ["self", "coro", "name", "context"]:
        _install(cls, b"create_task", <void *>_create_task, fast,
                 b"create_task($self, coro, *, name=None, context=None)\n--\n\n"
                 b"Schedule a coroutine object. Return a task object.")
    elif create_task_parameters == ["self", "coro", "kwargs"]:
        TASK_KEYWORDS_AS_GIVEN = True
        _install(cls, b"create_task", <void *>_create_task, fast,
                 b"create_task($self, coro, **kwargs)\n--\n\n"
                 b"Schedule or begin executing a coroutine object. Return a task object.")
    treat_as_stdlib_time(cls.__dict__["time"])
    _c_timer_handle_cancelled = cls.__dict__["_timer_handle_cancelled"]
    _c_get_debug = cls.__dict__["get_debug"]
    _c_call_soon = cls.__dict__["call_soon"]
    _install_handle_methods()


# Before 3.12 the C Futures and Tasks look ``call_soon`` up as an attribute
# (a bound method made and freed per callback); from 3.12 they call it as a
# method, which makes none.
cdef bint BIND_CALL_SOON = sys.version_info < (3, 12)


def bind_loop_methods(loop):
    """Give ``loop`` (an EventLoop whose ``__init__`` made its LoopCore) its
    own bound ``call_soon``, kept in its ``__dict__``, where the C Futures and
    Tasks of Python 3.11 and earlier find it without making a bound method
    for every callback they schedule.  Only while its class's ``call_soon``
    is the C one; an attribute set on the loop replaces it as before, and a
    patch of the class later is still what the binding calls."""
    if BIND_CALL_SOON and _PyType_Lookup(Py_TYPE(loop), "call_soon") == <PyObject *>_c_call_soon:
        loop.__dict__["call_soon"] = zs_new_bound_call_soon(
            loop, <void *>_bound_call_soon, METH_FASTCALL | METH_KEYWORDS,
            b"call_soon($self, callback, /, *args, context=None)\n--\n\n"
            b"Arrange for a callback to be called as soon as possible.")


def _install_handle_methods():
    _install(Handle, b"cancel", <void *>_handle_cancel, METH_NOARGS, b"cancel($self, /)\n--\n\n")
    _install(TimerHandle, b"cancel", <void *>_timer_cancel, METH_NOARGS,
             b"cancel($self, /)\n--\n\n")
    for kind in (Handle, TimerHandle):
        _install(kind, b"cancelled", <void *>_cancelled, METH_NOARGS,
                 b"cancelled($self, /)\n--\n\n")
    _install(TimerHandle, b"__eq__", <void *>_timer_eq, METH_O, b"Return self==value.")
    _install(TimerHandle, b"__lt__", <void *>_timer_lt, METH_O, b"Return self<value.")
    _install(TimerHandle, b"__le__", <void *>_timer_le, METH_O, b"Return self<=value.")
    _install(TimerHandle, b"__gt__", <void *>_timer_gt, METH_O, b"Return self>value.")
    _install(TimerHandle, b"__ge__", <void *>_timer_ge, METH_O, b"Return self>=value.")
    _install(TimerHandle, b"__hash__", <void *>_timer_hash, METH_NOARGS, b"Return hash(self).")
    _install(TimerHandle, b"when", <void *>_when, METH_NOARGS,
             b"when($self, /)\n--\n\n"
             b"Return a scheduled callback time, on the loop.time() clock.")
