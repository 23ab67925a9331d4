# cython: language_level=3
"""CPython's internals in one place: the C backend's fast paths that rely on
CPython's private layout or behaviour, each with the CPython versions it was
verified on, a check at import against the running interpreter, and the
generic path the code takes while it is off (their C is ``csrc/zs_cpython.h``).

``ZEROSOCK_CPYTHON_FASTPATHS``: unset or ``1``, a fast path is on where the
running CPython is in its table and its check passes; ``0``, every one is
off; ``unverified``, the running CPython is taken as newer than the table, as
a CPython released after this zerosock would be.  :func:`fastpaths` tells
which are on, and why not."""

import contextvars
import logging
import os
import sys
import weakref
from asyncio import base_events, events, futures, streams

from cpython.object cimport PyTypeObject

__all__ = ["check", "enabled", "fastpaths", "verdict"]

logger = logging.getLogger("zerosock")

# name: (first and last CPython verified, what it does, what runs while it is off,
#        the fast path it needs, its check at import: None when the module using
#        it checks, through check())
TABLE = {
    "handle_slots": (
        (3, 9), (3, 15),
        "asyncio.Handle and TimerHandle made, run and cancelled through their "
        "__slots__, without their Python methods",
        "the classes' own __init__, _run, cancel, cancelled and when",
        None, "_check_handle_slots"),
    "handle_free_list": (
        (3, 9), (3, 15),
        "zerosock's Handle and TimerHandle freed to a free list by a "
        "deallocation of their own",
        "the interpreter's deallocation and allocator",
        "handle_slots", "_check_handle_free_list"),
    "type_version_tags": (
        (3, 9), (3, 15),
        "a class checked once (its methods still zerosock's C ones) until its "
        "version tag changes",
        "the check at every call",
        None, "_check_type_version_tags"),
    "bytearray_internals": (
        (3, 9), (3, 15),
        "a C stream reader's bytearray consumed and refilled in place",
        "del buffer[:n] and PyByteArray_Resize",
        None, "_check_bytearray"),
    "bytes_refill": (
        (3, 9), (3, 15),
        "a Protocol's bytes object, when nobody else holds it after "
        "data_received, refilled with the next read of the same length",
        "a new bytes object for every read",
        None, "_check_bytes_refill"),
    "stream_class_switch": (
        (3, 9), (3, 15),
        "asyncio's StreamReader, StreamReaderProtocol and StreamWriter adopted "
        "in place (__class__ and state) by the C streams",
        "the stdlib's streams",
        None, "_check_stream_layout"),
    "awaitable_slots": (
        (3, 9), (3, 15),
        "a C stream read awaited through iternext and am_send slots set on its type",
        "the type's __next__ and send methods",
        None, "_check_awaitable_slots"),
    "stop_iteration_reuse": (
        (3, 12), (3, 14),
        "a finished C stream read's value (bytes up to 16 KiB) handed to its await "
        "in one StopIteration raised again while nobody else holds it",
        "a new StopIteration for every finished read",
        "awaitable_slots", "_check_stop_iteration_reuse"),
    "server_counts": (
        (3, 9), (3, 12),
        "asyncio's Server counts the connections it serves in C, where its "
        "_attach and _detach are the stdlib's (a count, before 3.13)",
        "the Server's _attach and _detach",
        None, "_check_server_counts"),
    "server_clients": (
        (3, 13), (3, 15),
        "asyncio's Server keeps the transports it serves in its WeakSet in C, where "
        "its _attach and _detach and WeakSet's add and discard are the stdlib's (from 3.13)",
        "the Server's _attach and _detach",
        None, "_check_server_clients"),
    "ssl_object_layout": (
        (3, 11), (3, 15),
        "OpenSSL driven directly through the SSL, SSL_CTX and BIO pointers of "
        "_ssl's objects (the 'openssl' TLS engine)",
        "the 'memorybio' TLS engine (ssl.MemoryBIO)",
        None, None),
}

SWITCH = "ZEROSOCK_CPYTHON_FASTPATHS"
_mode = os.environ.get(SWITCH, "").strip().lower()
# The version the table is read for: None when taken as newer than any.
RUNNING = None if _mode == "unverified" else tuple(sys.version_info[:2])

# The state of asyncio's stream objects that the C streams move into C:
# attributes a fresh reader, protocol and writer have in their __dict__.
STREAM_READER_STATE = ("_buffer", "_limit", "_loop", "_eof", "_waiter", "_exception",
                       "_transport", "_paused")
STREAM_PROTOCOL_STATE = ("_paused", "_connection_lost")
STREAM_WRITER_STATE = ("_transport", "_protocol", "_reader")
# asyncio.Handle's and TimerHandle's slots, as the fast paths fill them.
HANDLE_SLOTS = ("_callback", "_args", "_cancelled", "_loop", "_source_traceback", "_repr",
                "_context")
TIMER_HANDLE_SLOTS = ("_scheduled", "_when")


def _version_text(version):
    return "%d.%d" % version


def verdict(str name, version=RUNNING):
    """Why fast path ``name`` may not be used on CPython ``version`` (a
    ``(major, minor)`` pair, None for one newer than the table) under the
    switch as set, or None when only its check remains."""
    first, last = TABLE[name][:2]
    if _mode == "0":
        return f"{SWITCH}=0"
    if _mode not in ("", "1", "unverified"):
        return f"{SWITCH}={_mode!r} is not 0, 1 or unverified: all off"
    span = f"{_version_text(first)}-{_version_text(last)}"
    if version is None:
        return f"not verified on this CPython ({SWITCH}=unverified: verified on {span})"
    if not first <= tuple(version) <= last:
        return f"not verified on CPython {_version_text(version)} (verified on {span})"
    return None


# name: None when on, else why it is off; an entry checked elsewhere is
# missing until then.
cdef dict _off = {}


def check(str name, probe):
    """Decide fast path ``name`` by its version and ``probe()`` (called only
    when the version allows; it returns why not, or None): the reason it is
    off, or None.  For the fast paths whose module checks them."""
    cdef object why = verdict(name)
    needs = TABLE[name][4]
    if why is None and needs is not None and not enabled(needs):
        why = f"needs {needs}, which is off"
    if why is None:
        try:
            why = probe()
        except Exception as exc:
            # A probe meeting an interpreter unlike the ones it knows turns
            # its fast path off, never the import.
            why = f"its check failed: {exc!r}"
    _off[name] = why
    if why is not None:
        logger.debug("zerosock: the %s fast path is off: %s", name, why)
    return why


def enabled(str name):
    """Whether fast path ``name`` is on (checked at this module's import,
    or by the module using it)."""
    if name not in _off:
        raise LookupError(f"the {name} fast path has not been checked yet")
    return _off[name] is None


def fastpaths():
    """Every fast path of the C backend that relies on CPython's internals:
    ``{name: {"on": bool, "reason": why it is off (or ""), "verified":
    "3.9-3.15", "what": what it does, "otherwise": what runs while it is off}}``."""
    import zerosock._aio_c  # (its modules check the rest of the fast paths)
    report = {}
    for name, (first, last, what, otherwise, needs, probe) in TABLE.items():
        why = _off.get(name, "not checked")
        report[name] = {"on": why is None, "reason": why or "",
                        "verified": f"{_version_text(first)}-{_version_text(last)}",
                        "what": what, "otherwise": otherwise}
    return report


# -- the checks at import -------------------------------------------------------------

class _ProbeLoop:
    """What asyncio's handles and streams ask of a loop they are made for."""

    cancelled = None

    def get_debug(self):
        return False

    def _timer_handle_cancelled(self, handle):
        self.cancelled = handle

    def create_future(self):
        return futures.Future(loop=self)


class _ProbeTransport:
    def is_closing(self):
        return True

    def close(self):
        pass


_MISSING = object()


def _slots_differ(obj, expected):
    for name, value in expected.items():
        found = getattr(obj, name, _MISSING)
        if found is not value and not (type(found) is type(value) and found == value):
            return name
    return None


def _check_handle_slots(handle=events.Handle, timer=events.TimerHandle):
    """The slots are the ones the fast paths fill, and __init__ and cancel()
    leave in them what the fast paths would."""
    if set(handle.__dict__.get("__slots__", ())) != set(HANDLE_SLOTS + ("__weakref__",)):
        return f"{handle.__name__}'s __slots__ differ"
    if set(timer.__dict__.get("__slots__", ())) != set(TIMER_HANDLE_SLOTS):
        return f"{timer.__name__}'s __slots__ differ"
    try:
        for kind, names in ((handle, HANDLE_SLOTS), (timer, TIMER_HANDLE_SLOTS)):
            for name in names:
                zs_slot_offset(kind.__dict__[name])
    except (KeyError, TypeError):
        return f"{name} is not an object slot"
    loop = _ProbeLoop()
    context = contextvars.copy_context()
    made = timer(12.5, print, (1,), loop, context)
    differs = _slots_differ(made, {
        "_callback": print, "_args": (1,), "_cancelled": False, "_loop": loop,
        "_source_traceback": None, "_repr": None, "_context": context, "_when": 12.5,
        "_scheduled": False})
    if differs is not None:
        return f"__init__ leaves {differs} otherwise"
    made.cancel()
    differs = _slots_differ(made, {"_callback": None, "_args": None, "_cancelled": True,
                                   "_repr": None})
    if differs is not None or loop.cancelled is not made:
        return f"cancel() leaves {differs or 'the loop'} otherwise"
    return None


def _check_handle_free_list():
    class Probe(events.Handle):
        __slots__ = ()

    class Plain:
        __slots__ = ("a",)

    why = zs_handle_dealloc_misfit(<PyTypeObject *>Probe, <PyTypeObject *>Plain)
    return None if why == NULL else (<bytes>why).decode()


def _check_type_version_tags():
    class Base:
        def probe(self):
            pass

    class Derived(Base):
        pass

    why = zs_version_tags_misfit(Base, Derived, "probe")
    return None if why == NULL else (<bytes>why).decode()


def _check_bytearray():
    why = zs_bytearray_misfit()
    return None if why == NULL else (<bytes>why).decode()


def _check_bytes_refill():
    why = zs_bytes_refill_misfit()
    return None if why == NULL else (<bytes>why).decode()


def _check_stream_layout():
    """Fresh stdlib stream objects keep the state the C streams take over in
    their __dict__, and take a subclass's __class__."""
    loop = _ProbeLoop()
    reader = streams.StreamReader(loop=loop)
    protocol = streams.StreamReaderProtocol(reader, loop=loop)
    writer = streams.StreamWriter(_ProbeTransport(), protocol, reader, loop)
    for kind, obj, names in (("StreamReader", reader, STREAM_READER_STATE),
                             ("StreamReaderProtocol", protocol, STREAM_PROTOCOL_STATE),
                             ("StreamWriter", writer, STREAM_WRITER_STATE)):
        state = getattr(obj, "__dict__", {})
        for name in names:
            if name not in state:
                return f"a new {kind} has no {name} in its __dict__"
        try:
            obj.__class__ = type("Adopted", (type(obj),), {})
        except TypeError:
            return f"a {kind} does not take a subclass's __class__"
    if protocol._stream_reader is not reader:
        return "StreamReaderProtocol._stream_reader is not its reader"
    return None


def _check_server_counts():
    """Server._attach and _detach read and write the names the C count does,
    and count as it does."""
    server_type = base_events.Server
    if (server_type._attach.__code__.co_names != ("_sockets", "_active_count")
            or server_type._detach.__code__.co_names != ("_active_count", "_sockets", "_wakeup")):
        return "Server._attach or _detach use other attributes"
    server = server_type.__new__(server_type)
    server._sockets = []
    server._active_count = 0
    server._attach()
    server._attach()
    server._detach()
    if server._active_count != 1:
        return "Server._attach and _detach do not count"
    return None


class _Weakly:
    """Hashable and weakly referable, as a transport is."""


def _check_server_clients():
    """Server._attach and _detach keep their transports in the WeakSet
    _clients, whose add and discard use the names the C path does."""
    server_type = base_events.Server
    weak_set = weakref.WeakSet
    pending = ("_pending_removals", "_commit_removals")  # (before 3.14)
    if (server_type._attach.__code__.co_names != ("_sockets", "_clients", "add")
            or server_type._detach.__code__.co_names
            != ("_clients", "discard", "len", "_sockets", "_wakeup")):
        return "Server._attach or _detach use other attributes"
    if (weak_set.add.__code__.co_names not in (pending + ("data", "add", "ref", "_remove"),
                                                ("data", "add", "ref", "_remove"))
            or weak_set.discard.__code__.co_names not in (pending + ("data", "discard", "ref"),
                                                          ("data", "discard", "ref"))):
        return "WeakSet.add or discard use other attributes"
    server = server_type.__new__(server_type)
    server._sockets = []
    server._clients = weak_set()
    first, second = _Weakly(), _Weakly()
    server._attach(first)
    server._attach(second)
    server._detach(first)
    if type(server._clients.data) is not set or len(server._clients.data) != 1:
        return "Server._clients does not hold weak references in a set"
    return None


cdef class _ProbeStep:
    """An awaitable that gives ``"step"`` once, then finishes with its
    ``result``."""
    cdef int calls
    cdef object result

    def __init__(self, result=b"42"):
        self.result = result

    def __await__(self):
        return self

    def __next__(self):
        raise AssertionError("the slots were not installed")


cdef object _probe_step(object op, int *finished):
    (<_ProbeStep>op).calls += 1
    if (<_ProbeStep>op).calls == 1:
        return "step"
    finished[0] = 1
    return (<_ProbeStep>op).result


# The interpreter's own await, as a user's coroutine runs it (an async def
# here would be compiled by Cython, whose await takes other paths).
_probe_namespace = {}
exec("async def await_probe(op):\n    return await op\n", _probe_namespace)
_await_probe = _probe_namespace["await_probe"]


def _check_awaitable_slots():
    """Slots set on a ready type are the ones the interpreter calls, through
    next() and through an await."""
    try:
        zs_install_op_slots(_ProbeStep, <zs_step_fn>_probe_step, False)
        probe = _ProbeStep()
        if next(probe) != "step":
            return "iternext is not what next() calls"
        coroutine = _await_probe(_ProbeStep())
        if coroutine.send(None) != "step":
            return "an await does not reach the type's step"
        try:
            coroutine.send(None)
        except StopIteration as stop:
            if stop.value != b"42":
                return "an await does not finish with the step's value"
        else:
            return "an await does not finish when the step does"
    except (AssertionError, TypeError) as exc:
        return f"the slots are not used ({exc})"
    return None


def _check_stop_iteration_reuse():
    """An await drops the StopIteration its step raised, so the next one
    reuses it; one that is kept elsewhere is left as it was."""
    zs_install_op_slots(_ProbeStep, <zs_step_fn>_probe_step, True)
    values = []
    made = []
    for value in (b"first", b"second"):
        coroutine = _await_probe(_ProbeStep(value))
        coroutine.send(None)
        try:
            coroutine.send(None)
        except StopIteration as stop:
            values.append(stop.value)
        if zs_stops_made_count() == 0:
            return "an await takes the value without a StopIteration: nothing to reuse"
        if not zs_stop_kept_alone():
            return "an await keeps its StopIteration"
        made.append(zs_stops_made_count())
    if values != [b"first", b"second"]:
        return "an await does not finish with the step's value"
    if made[0] == 0 or made[1] != made[0]:
        return "the kept StopIteration is not raised again"
    probe = _ProbeStep(b"third")
    next(probe)
    try:
        next(probe)
    except StopIteration as stop:
        held = stop
    probe = _ProbeStep(b"fourth")
    next(probe)
    try:
        next(probe)
    except StopIteration as stop:
        if stop is held or held.value != b"third" or stop.args != (b"fourth",):
            return "a StopIteration held elsewhere was raised again"
    return None


cdef int _check_all() except -1:
    for name, entry in TABLE.items():
        probe = entry[5]
        if probe is not None:
            check(name, globals()[probe])
    return 0


_check_all()
