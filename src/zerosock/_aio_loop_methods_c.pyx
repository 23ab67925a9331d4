# cython: language_level=3
"""The event loop methods called for every request, as C method descriptors
of :class:`zerosock.aio.EventLoop`.

The C ``_asyncio`` module asks ``loop.get_debug()`` for every Future and Task
it makes and calls ``loop.call_soon(callback, future, context=context)`` for
every callback it schedules; frameworks call ``create_task``, ``create_future``,
``time`` and ``call_later`` per request.  As Python
methods each call costs a frame, or, compiled, an argument tuple and a keyword
dict.  Here each is a method descriptor of the kind builtin types have
(vectorcall, no frame) that does the common case -- a loop outside debug
mode -- in C and hands every other case to the stdlib's method, which keeps
the stdlib's checks, messages and debug-mode behaviour.

Being non-data descriptors on the class, they give way to a subclass's
methods and to attributes set on the loop itself (mocks), as the stdlib's do.
``time`` reads the clock ``time.monotonic()`` reads, without calling it.
``create_future`` and ``create_task`` make asyncio's C Future and Task with a
keyword dict the loop keeps, where a call with keywords builds one each time
(a patched ``asyncio.futures.Future`` or ``asyncio.tasks.Task`` is called as
the stdlib calls it).  Before Python 3.12, the C Futures and Tasks look
``call_soon`` up as an attribute, which binds a new method per callback: each
loop keeps its own binding in its ``__dict__`` (see ``bind_loop_methods``).

Each is declared in the class body of :class:`zerosock.aio.EventLoop` as
``call_soon = loop_methods.call_soon``: a :class:`LoopMethod`, which makes the
class's method descriptor as the class is created.  What the C paths leave
goes to the method the class inherits from the stdlib (``call_at`` in debug
mode excepted: the loop's timers are on its C heap, not a list)."""

from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject, PyObject_Call
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

import inspect
import sys
from asyncio import base_events, events, futures, tasks

from zerosock._aio_core_c cimport LoopCore, timer_scheduled
from zerosock._aio_transport_c cimport lend_loop_methods
from zerosock._aio_core_c import treat_as_stdlib_time
from zerosock._cmethod_c cimport (
    CMethod, METH_FASTCALL, METH_KEYWORDS, METH_NOARGS, METH_O, c_method,
)
from zerosock._cpython_c cimport (
    class_keeps, zs_loop_clock, zs_remember_type, zs_slot_get, zs_slot_offset, zs_type_lookup,
    zs_type_memo, zs_type_unchanged, zs_version_tags_on,
)
from zerosock._cpython_c import enabled

__all__ = ["bind_loop_methods", "call_at", "call_later", "call_soon", "create_future",
           "create_task", "get_debug", "run_once", "time", "timer_handle_cancelled"]

zs_version_tags_on = enabled("type_version_tags")


cdef extern from "Python.h":
    # The singletons themselves (a cast of True or False would give 1 or 0).
    PyObject *Py_True
    PyObject *Py_False
    ctypedef struct PyTypeObject:
        pass
    PyTypeObject *Py_TYPE(object o)
    bint PyObject_TypeCheck(object o, PyTypeObject *kind)

cdef extern from *:
    """
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

    /* Whether `method` is the binding zs_new_bound_call_soon made for `self`. */
    static int zs_is_bound_call_soon(PyObject *method, PyObject *self)
    {
        return PyCFunction_Check(method)
            && ((PyCFunctionObject *)method)->m_ml == &zs_bound_call_soon_def
            && PyCFunction_GET_SELF(method) == self;
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
    object zs_new_bound_call_soon(object self, void *impl, int flags, const char *doc)
    bint zs_is_bound_call_soon(object method, object self)
    bint zs_same_str(object name, object known)
    tuple zs_tuple_from_array(PyObject **items, Py_ssize_t n)
    object PyObject_Vectorcall(object callable, PyObject **args, size_t nargsf, object kwnames)


# Set when the class these methods are declared in is created (see LoopMethod).
cdef type LoopType = None
cdef LoopMethod _declared_call_soon, _declared_time  # two of the methods below
cdef Py_ssize_t CORE_OFFSET = -1     # where an EventLoop keeps its LoopCore
# Where it keeps the state these methods read at each call (slots: a load, where
# its __dict__ would cost a lookup).
cdef Py_ssize_t DEBUG_OFFSET = -1, CLOSED_OFFSET = -1, FACTORY_OFFSET = -1
cdef dict _DEBUG_SLOT = None  # {"_debug": the loop class's slot}: what a loop's class must keep
cdef zs_type_memo _debug_slot_memo
# The methods the class inherits from the stdlib: they take every uncommon case.
cdef object _std_call_soon, _std_call_later, _std_call_at, _std_timer_handle_cancelled
cdef object _std_get_debug, _std_create_future, _std_create_task
cdef object _TimerHandle = events.TimerHandle
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


cdef int _use_loop_class(type cls) except -1:
    """Take ``cls`` as the class whose methods these are: its slots and the
    stdlib methods it inherits."""
    global LoopType, CORE_OFFSET, DEBUG_OFFSET, CLOSED_OFFSET, FACTORY_OFFSET, _DEBUG_SLOT
    global _std_call_soon, _std_call_later, _std_call_at, _std_timer_handle_cancelled
    global _std_get_debug, _std_create_future, _std_create_task
    if LoopType is cls:
        return 0
    if LoopType is not None:
        raise RuntimeError(f"the loop methods belong to {LoopType.__name__} already")
    CORE_OFFSET = zs_slot_offset(cls.__dict__["_core"])
    DEBUG_OFFSET = zs_slot_offset(cls.__dict__["_debug"])
    _DEBUG_SLOT = {"_debug": cls.__dict__["_debug"]}
    CLOSED_OFFSET = zs_slot_offset(cls.__dict__["_closed"])
    FACTORY_OFFSET = zs_slot_offset(cls.__dict__["_task_factory"])
    base = cls.__base__
    _std_call_soon = base.call_soon
    _std_call_later = base.call_later
    _std_call_at = base.call_at
    _std_timer_handle_cancelled = base._timer_handle_cancelled
    _std_get_debug = base.get_debug
    _std_create_future = base.create_future
    _std_create_task = base.create_task
    LoopType = cls
    return 0


cdef class LoopMethod(CMethod):
    """A C method of the loop class it is declared in, which keeps its
    LoopCore in a ``_core`` slot, and ``_debug``, ``_closed`` and
    ``_task_factory`` in slots."""

    def __set_name__(self, owner, name):
        _use_loop_class(owner)
        CMethod.__set_name__(self, owner, name)
        if self is _declared_time:
            treat_as_stdlib_time(self.descriptor)  # the loop core reads the clock itself


cdef inline LoopMethod _loop_method(void *impl, int flags, bytes doc):
    return <LoopMethod>c_method(impl, flags, doc, LoopMethod)


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


cdef inline PyObject *_debug_slot(object loop) noexcept:
    """The loop's ``_debug`` (borrowed) from its slot; NULL when unset, or when
    its class was given another ``_debug`` since (then only the attribute says)."""
    if not class_keeps(Py_TYPE(loop), &_debug_slot_memo, _DEBUG_SLOT):
        return NULL
    return zs_slot_get(loop, DEBUG_OFFSET)


cdef inline LoopCore _fast_core(object loop):
    """The LoopCore when the loop is open and outside debug mode (what every
    fast path asks), else None."""
    cdef LoopCore core = _core_of(loop)
    if (core is None or _debug_slot(loop) != Py_False
            or zs_slot_get(loop, CLOSED_OFFSET) != Py_False):
        return None
    return core


cdef zs_type_memo _keeps_c_call_soon_memo


cdef bint _class_keeps_c_call_soon(PyTypeObject *kind):
    """Whether ``call_soon`` of the loop class ``kind`` is the C one declared here."""
    if zs_type_unchanged(&_keeps_c_call_soon_memo, kind):
        return True
    if zs_type_lookup(kind, "call_soon") != <PyObject *>_declared_call_soon.descriptor:
        return False
    zs_remember_type(&_keeps_c_call_soon_memo, kind)
    return True


cdef object _forward(object method, object loop, PyObject **args, Py_ssize_t nargs,
                     PyObject *kwnames):
    """Call the stdlib's method with the arguments as they came (``loop``
    first, unless None: ``method`` is bound)."""
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
    mode called with ``context=`` as its only keyword, else the stdlib's."""
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
        if kind == AT:
            core = _core_of(loop)
            if core is not None and zs_slot_get(loop, CLOSED_OFFSET) == Py_False:
                return _call_at_debug(core, loop, <object>args[0], <object>args[1],
                                      zs_tuple_from_array(args + 2, nargs - 2), <object>context)
    fallback = _std_call_soon if kind == SOON else _std_call_later if kind == LATER else _std_call_at
    return _forward(fallback, loop, args, nargs, kwnames)


cdef object _call_at_debug(LoopCore core, object loop, object when, object callback, tuple args,
                           object context):
    """The stdlib's call_at in debug mode (its checks, a handle that keeps
    its traceback), with the timer on the loop's C heap rather than a list."""
    loop._check_thread()
    loop._check_callback(callback, "call_at")
    timer = _TimerHandle(when, callback, args, loop, context)
    core.schedule(when, timer)  # (a compiled call_at leaves no frame to trim from its traceback)
    return timer


cdef object _call_soon(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _schedule(SOON, loop, args, nargs, kwnames)


cdef object _bound_call_soon(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    # The loop's own binding (see bind_loop_methods), found before its class's
    # attribute: while that is still the C call_soon, the same method; once
    # something replaced it on the class (a patch), what the class has now.
    cdef PyObject *current
    if _class_keeps_c_call_soon(Py_TYPE(loop)):
        return _schedule(SOON, loop, args, nargs, kwnames)
    current = zs_type_lookup(Py_TYPE(loop), "call_soon")
    if current == NULL:
        raise AttributeError(f"'{type(loop).__name__}' object has no attribute 'call_soon'")
    method = <object>current  # owned: binding it may run Python code
    if hasattr(type(method), "__get__"):
        method = method.__get__(loop, type(loop))
    return _forward(method, None, args, nargs, kwnames)


cdef bint _keeps_c_call_soon(object loop) except -1:
    """Whether ``loop.call_soon`` is this module's C method: its class's (an
    EventLoop's), not replaced on the loop itself (but for its own binding,
    see bind_loop_methods)."""
    cdef PyObject *own
    if LoopType is None or not PyObject_TypeCheck(loop, <PyTypeObject *>LoopType):
        return False
    if not _class_keeps_c_call_soon(Py_TYPE(loop)):
        return False
    own = PyDict_GetItemWithError(loop.__dict__, "call_soon")
    return own == NULL or zs_is_bound_call_soon(<object>own, loop)


cdef object _transport_call_soon(object loop, object callback, tuple args, object context):
    """call_soon for the C transports, where _keeps_c_call_soon(loop) holds."""
    cdef LoopCore core = _fast_core(loop)
    if core is not None:
        return core.call_soon(callback, args, context)
    return loop.call_soon(callback, *args, context=context)


lend_loop_methods(_keeps_c_call_soon, _transport_call_soon)


cdef object _call_later(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _schedule(LATER, loop, args, nargs, kwnames)


cdef object _call_at(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    return _schedule(AT, loop, args, nargs, kwnames)


cdef object _timer_handle_cancelled(object loop, object handle):
    # What TimerHandle.cancel() tells the loop: it counts the cancelled
    # handles still in its heap, to know when to compact it.
    cdef LoopCore core = _core_of(loop)
    if core is None:
        return _std_timer_handle_cancelled(loop, handle)
    if timer_scheduled(handle):
        core.timers.cancelled_count += 1
    return None


# -- the iteration -------------------------------------------------------------------

cdef object _run_once(object loop, PyObject *unused):
    # The core from the slot: an attribute looked up from C costs as much as
    # the rest of an iteration that finds nothing to do.
    cdef LoopCore core = _core_of(loop)
    if core is None:
        core = <LoopCore?>loop._core  # (raises as the attribute would)
    core.run_once()
    return None


# -- state ---------------------------------------------------------------------------

cdef object _get_debug(object loop, PyObject *unused):
    cdef PyObject *debug = _debug_slot(loop)
    if debug != NULL:
        return <object>debug
    return _std_get_debug(loop)  # (deleted: the stdlib's error)


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
    if future_type == NULL or _debug_slot(loop) != Py_False:
        # Debug mode: the Future's traceback ends in the stdlib's frame, as it does there.
        return _std_create_future(loop)
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
        return _forward(_std_create_task, loop, args, nargs, kwnames)
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
            return _forward(_std_create_task, loop, args, nargs, kwnames)
    core = _fast_core(loop)
    task_type = _lookup(_tasks_globals, "Task")
    if core is None or task_type == NULL:
        return _forward(_std_create_task, loop, args, nargs, kwnames)
    if zs_slot_get(loop, FACTORY_OFFSET) != <PyObject *>None:
        return _forward(_std_create_task, loop, args, nargs, kwnames)
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


# -- the methods, as the loop class declares them -------------------------------------------

cdef int FAST = METH_FASTCALL | METH_KEYWORDS

call_soon = _loop_method(<void *>_call_soon, FAST,
    b"call_soon($self, callback, /, *args, context=None)\n--\n\n"
    b"Arrange for a callback to be called as soon as possible.")
call_later = _loop_method(<void *>_call_later, FAST,
    b"call_later($self, delay, callback, /, *args, context=None)\n--\n\n"
    b"Arrange for a callback to be called after a given time.")
call_at = _loop_method(<void *>_call_at, FAST,
    b"call_at($self, when, callback, /, *args, context=None)\n--\n\n"
    b"Like call_later(), but uses an absolute time.")
timer_handle_cancelled = _loop_method(<void *>_timer_handle_cancelled, METH_O,
    b"_timer_handle_cancelled($self, handle, /)\n--\n\n"
    b"Notification that a TimerHandle has been cancelled.")
run_once = _loop_method(<void *>_run_once, METH_NOARGS,
    b"_run_once($self, /)\n--\n\nRun one full iteration of the event loop.")
get_debug = _loop_method(<void *>_get_debug, METH_NOARGS,
    b"get_debug($self, /)\n--\n\nWhether the loop is in debug mode.")
time = _loop_method(<void *>_time, METH_NOARGS,
    b"time($self, /)\n--\n\nReturn the time according to the event loop's clock.")
create_future = _loop_method(<void *>_create_future, METH_NOARGS,
    b"create_future($self, /)\n--\n\nCreate a Future object attached to the loop.")
# Where create_task and Task take the same keywords: 3.11-3.13 name them,
# 3.14 on pass every keyword (eager_start too) on to the factory or Task.
# Earlier versions' Task has no context, and their loops keep the stdlib's method.
create_task = None
cdef list _create_task_parameters = list(
    inspect.signature(base_events.BaseEventLoop.create_task).parameters)
if _create_task_parameters == ["self", "coro", "name", "context"]:
    create_task = _loop_method(<void *>_create_task, FAST,
        b"create_task($self, coro, *, name=None, context=None)\n--\n\n"
        b"Schedule a coroutine object. Return a task object.")
elif _create_task_parameters == ["self", "coro", "kwargs"]:
    TASK_KEYWORDS_AS_GIVEN = True
    create_task = _loop_method(<void *>_create_task, FAST,
        b"create_task($self, coro, **kwargs)\n--\n\n"
        b"Schedule or begin executing a coroutine object. Return a task object.")

_declared_call_soon = call_soon
_declared_time = time


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
    if BIND_CALL_SOON and zs_type_lookup(Py_TYPE(loop), "call_soon") == <PyObject *>_declared_call_soon.descriptor:
        loop.__dict__["call_soon"] = zs_new_bound_call_soon(
            loop, <void *>_bound_call_soon, METH_FASTCALL | METH_KEYWORDS,
            b"call_soon($self, callback, /, *args, context=None)\n--\n\n"
            b"Arrange for a callback to be called as soon as possible.")
