# cython: language_level=3
"""The C selectors: the standard library's ``selectors`` API over the pollers
of ``csrc/zs_poller.h``, with events polled into a preallocated array and a
fd-indexed key table.  Same API as ``_selectors_py``; the C-level API for the
event loop is declared in ``_selectors_c.pxd``."""

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLong, PyLong_CheckExact, PyLong_FromLongLong
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_SET_ITEM
from cpython.float cimport PyFloat_AsDouble
from libc.limits cimport INT_MAX
from libc.math cimport ceil
from libc.string cimport memset

from types import MappingProxyType

import selectors as _std

from zerosock._shim cimport (
    ZS_EINTR, raise_os_error, zs_last_error, zs_monotonic, zs_sock_t, zs_startup,
)
from zerosock._selectors_shared import (
    CLOSED_MESSAGE, EVENT_READ, EVENT_WRITE, BaseSelector, SelectorKey, SelectorMapping,
)

cdef extern from "Python.h":
    object PyType_GenericAlloc(PyTypeObject *type, Py_ssize_t nitems)
    PyObject *PyDict_GetItemWithError(object d, object key) except? NULL


# Descriptors below this index the slot table directly; larger ones (rare on
# POSIX, possible for Windows socket handles) go through the key dict.
cdef enum:
    SLOT_DIRECT_MAX = 1 << 20

cdef object _SelectorKey = SelectorKey
cdef PyTypeObject *_SelectorKey_type = <PyTypeObject *>SelectorKey

zs_startup()


cdef object _make_key(object fileobj, object fd, object events, object data):
    """A SelectorKey, built as the tuple subclass it is without the Python-level __new__."""
    # SelectorKey is a namedtuple: a tuple subclass without __dict__, so a
    # 4-item allocation filled in place is exactly what its __new__ makes.
    cdef object key = PyType_GenericAlloc(_SelectorKey_type, 4)
    Py_INCREF(fileobj)
    PyTuple_SET_ITEM(key, 0, fileobj)
    Py_INCREF(fd)
    PyTuple_SET_ITEM(key, 1, fd)
    Py_INCREF(events)
    PyTuple_SET_ITEM(key, 2, events)
    Py_INCREF(data)
    PyTuple_SET_ITEM(key, 3, data)
    return key


cdef int _raise_os_error(int err) except -1:
    if err == ZS_ENOMEM:
        raise MemoryError()
    if err == ZS_EFDRANGE:
        raise ValueError("filedescriptor out of range in select()")
    return raise_os_error(err)


cdef int timeout_to_ms(object timeout) except? -2:
    cdef double seconds, ms
    cdef long long whole
    if timeout is None:
        return -1
    if PyLong_CheckExact(timeout):
        if timeout <= 0:
            return 0
        if timeout > INT_MAX // 1000:
            raise OverflowError("timeout is too large")
        whole = PyLong_AsLongLong(timeout)
        return <int>(whole * 1000)
    seconds = PyFloat_AsDouble(timeout)  # TypeError for what is not a number
    if seconds != seconds:
        raise ValueError("Invalid value NaN (not a number)")
    if seconds <= 0:
        return 0
    # Round up: wait at least as long as asked, as the standard library does.
    ms = ceil(seconds * 1000.0)
    if ms > INT_MAX:
        raise OverflowError("timeout is too large")
    return <int>ms


cdef long long _fileobj_to_fd(object fileobj) except -1:
    """The standard library's ``_fileobj_to_fd``: an int, or ``int(fileobj.fileno())``."""
    cdef long long fd
    if isinstance(fileobj, int):
        number = fileobj
    else:
        try:
            number = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    fd = _fd_value(number)
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {number}")
    return fd


cdef inline long long _fd_value(object number) except? -2:
    # Out of range either way: a huge negative is invalid, a huge positive is
    # simply never registered.
    try:
        return PyLong_AsLongLong(number)
    except OverflowError:
        return -2 if number < 0 else (1LL << 62)


cdef inline zs_sock_t _as_sock(long long fd) except? -1:
    if fd > INT_MAX:
        raise OverflowError("file descriptor is too large")
    return <zs_sock_t>fd


cdef class Poller:
    """One kernel poller and the event array its waits fill.

    ``Poller(kind, edge_triggered=False)``: ``kind`` is one of the
    ``POLLER_*`` constants.  Opaque to Python; the selectors use it from C.
    """

    def __cinit__(self, *args, **kwargs):
        memset(&self.poller, 0, sizeof(self.poller))
        self.ready = NULL
        self.ready_cap = 0
        self.waiting = False

    def __init__(self, int kind=ZS_POLLER_DEFAULT, bint edge_triggered=False):
        if self.poller.open:
            raise RuntimeError("Poller is already initialised")
        if not zs_poller_available(kind):
            raise ValueError(f"poller kind {kind} is not available on this platform")
        if zs_poller_init(&self.poller, kind, ZS_POLLER_EDGE if edge_triggered else 0) < 0:
            err = zs_last_error()
            zs_poller_free(&self.poller)
            _raise_os_error(err)

    def __dealloc__(self):
        zs_poller_free(&self.poller)
        PyMem_Free(self.ready)
        self.ready = NULL

    @property
    def kind(self):
        return self.poller.kind

    @property
    def closed(self):
        return not self.poller.open

    def fileno(self):
        """The kernel object's descriptor (epoll, kqueue); -1 for poll and select."""
        if not self.poller.open:
            raise ValueError(CLOSED_MESSAGE)
        return zs_poller_fileno(&self.poller)

    def close(self):
        """Release the kernel object; idempotent.  The memory goes with the
        object: a wait in another thread, or a loop still dispatching the last
        events, may be using it."""
        zs_poller_close(&self.poller)

    cdef int add(self, zs_sock_t fd, int events) except -1:
        if zs_poller_add(&self.poller, fd, events) < 0:
            _raise_os_error(zs_last_error())
        return 0

    cdef int modify(self, zs_sock_t fd, int old, int events) except -1:
        if zs_poller_mod(&self.poller, fd, old, events) < 0:
            _raise_os_error(zs_last_error())
        return 0

    cdef void remove(self, zs_sock_t fd, int old) noexcept:
        # Fails harmlessly when the descriptor was closed since registration.
        zs_poller_del(&self.poller, fd, old)

    cdef int begin_wait(self, int capacity) except -1:
        if self.waiting:
            raise RuntimeError("concurrent select() calls on one selector")
        cdef zs_event *grown
        if capacity > self.ready_cap:
            grown = <zs_event *>PyMem_Realloc(self.ready, <size_t>capacity * sizeof(zs_event))
            if grown == NULL:
                raise MemoryError()
            self.ready = grown
            self.ready_cap = capacity
        return 0

    cdef int wait(self, int timeout_ms) except -1:
        """Wait up to `timeout_ms` (-1: forever); the ready events land in
        ``self.ready``.  Retries EINTR with the remaining time after running
        signal handlers (PEP 475); releases the GIL only when it may block."""
        cdef int cap, n, err
        cdef double deadline = 0.0
        if not self.poller.open:
            raise ValueError(CLOSED_MESSAGE)
        cap = zs_poller_capacity(&self.poller)
        self.begin_wait(cap)
        if timeout_ms > 0:
            deadline = zs_monotonic() + timeout_ms / 1000.0
        self.waiting = True
        try:
            while True:
                if zs_poller_prepare(&self.poller, cap) < 0:
                    _raise_os_error(zs_last_error())
                if timeout_ms == 0:
                    n = zs_poller_wait(&self.poller, self.ready, cap, 0)
                else:
                    with nogil:
                        n = zs_poller_wait(&self.poller, self.ready, cap, timeout_ms)
                if n >= 0:
                    break
                err = zs_last_error()
                if not self.poller.open:
                    return 0  # closed by another thread while waiting
                if err != ZS_EINTR:
                    _raise_os_error(err)
                PyErr_CheckSignals()
                if timeout_ms > 0:
                    # What is left, rounded up; 0 polls once more without waiting.
                    timeout_ms = <int>max(ceil((deadline - zs_monotonic()) * 1000.0), 0.0)
        finally:
            self.waiting = False
        if not self.poller.open:
            return 0  # closed by another thread during the wait
        return n


POLLER_EPOLL = ZS_POLLER_EPOLL
POLLER_KQUEUE = ZS_POLLER_KQUEUE
POLLER_POLL = ZS_POLLER_POLL
POLLER_SELECT = ZS_POLLER_SELECT


cdef class EpollPoller(Poller):
    def __init__(self, bint edge_triggered=False):
        Poller.__init__(self, ZS_POLLER_EPOLL, edge_triggered)


cdef class KqueuePoller(Poller):
    def __init__(self, bint edge_triggered=False):
        Poller.__init__(self, ZS_POLLER_KQUEUE, edge_triggered)


cdef class PollPoller(Poller):
    def __init__(self):
        Poller.__init__(self, ZS_POLLER_POLL)


cdef class SelectPoller(Poller):
    def __init__(self):
        Poller.__init__(self, ZS_POLLER_SELECT)


cdef int _event_bits(object events) except -1:
    """The C interest mask of a validated ``events`` argument."""
    if (not events) or (events & ~(EVENT_READ | EVENT_WRITE)):
        raise ValueError(f"Invalid events: {events!r}")
    return <int>(events & (EVENT_READ | EVENT_WRITE))


cdef class Selector:
    """Base of the C selectors: registration, the key table and select().

    The poller comes from the class attribute ``_selector_cls``: a
    :class:`Poller` subclass normally.  Any other object with
    ``register(fd, events)``, ``modify(fd, events)``, ``unregister(fd)``,
    ``poll(timeout_ms)`` (returning ``[(fd, events), ...]``) and ``close()``
    works too, through Python calls, with events as EVENT_READ|EVENT_WRITE.
    """

    def __cinit__(self, *args, **kwargs):
        self._slots = NULL
        self._nslots = 0
        self._closed = False
        self._keys = {}
        self._keys_view = MappingProxyType(self._keys)
        self._mapping = SelectorMapping(self)
        self._selector = type(self)._selector_cls()
        self._native = self._selector if isinstance(self._selector, Poller) else None

    def __dealloc__(self):
        # The keys are borrowed from self._keys, which releases them itself.
        PyMem_Free(self._slots)
        self._slots = NULL
        self._nslots = 0

    # -- the key table --

    cdef PyObject *_key_slow(self, long long fd):
        cdef PyObject *key
        if fd < 0 or self._keys is None:
            return NULL
        try:
            key = PyDict_GetItemWithError(self._keys, fd)
        except Exception:
            return NULL  # unreachable for int keys; never fail a lookup
        return key

    cdef int _interest_slow(self, long long fd):
        cdef PyObject *found = self._key_slow(fd)
        if found == NULL:
            return 0
        # Owned: the registered events may be an int subclass whose __and__
        # runs Python code, which could unregister the key.
        key = <object>found
        return <int>((<tuple>key)[2] & (EVENT_READ | EVENT_WRITE))

    cdef int _set_slot(self, long long fd, PyObject *key, int events) except -1:
        cdef Py_ssize_t n
        cdef FdSlot *grown
        if fd >= SLOT_DIRECT_MAX:
            return 0
        if fd >= self._nslots:
            if key == NULL:
                return 0
            n = self._nslots if self._nslots else 64
            while n <= fd:
                n *= 2
            grown = <FdSlot *>PyMem_Realloc(self._slots, <size_t>n * sizeof(FdSlot))
            if grown == NULL:
                raise MemoryError()
            memset(&grown[self._nslots], 0, <size_t>(n - self._nslots) * sizeof(FdSlot))
            self._slots = grown
            self._nslots = n
        self._slots[fd].key = key
        self._slots[fd].events = events
        return 0

    @property
    def _fd_to_key(self):
        """Read-only view of the fd -> key table."""
        return self._keys_view

    @property
    def _map(self):
        return self._mapping

    def _fileobj_lookup(self, fileobj):
        """The descriptor of ``fileobj``; for a registered object whose
        ``fileno()`` fails (closed), the descriptor it was registered with."""
        return self._lookup_fd(fileobj)

    cdef long long _lookup_fd(self, object fileobj) except -1:
        try:
            return _fileobj_to_fd(fileobj)
        except ValueError:
            for key in self._keys.values():
                if (<tuple>key)[0] is fileobj:
                    return (<tuple>key)[1]
            raise

    def _key_from_fd(self, fd):
        """The key registered for ``fd``, or None."""
        return self._keys.get(fd)

    # -- registration --

    cdef object register_fd(self, object fileobj, long long fd, int events, object data):
        """Register a converted ``fd``; ``events`` is also stored as the key's events."""
        return self._register(fileobj, fd, events, events, data)

    cdef object _register(self, object fileobj, long long fd, object events_obj, int events,
                          object data):
        cdef object fd_obj, key
        cdef zs_sock_t sock
        if self._closed:
            raise ValueError(CLOSED_MESSAGE)
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        sock = _as_sock(fd)
        if self.key_for_fd(sock) != NULL:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        fd_obj = fileobj if PyLong_CheckExact(fileobj) else PyLong_FromLongLong(fd)
        key = _make_key(fileobj, fd_obj, events_obj, data)
        self._keys[fd_obj] = key
        try:
            self._set_slot(fd, <PyObject *>key, events)
            if self._native is not None:
                self._native.add(sock, events)
            else:
                self._selector.register(fd, events)
        except BaseException:
            self._set_slot(fd, NULL, 0)
            del self._keys[fd_obj]
            raise
        if events & ZS_EV_WRITE:
            self.writers += 1
        return key

    cdef object unregister_fd(self, long long fd):
        cdef PyObject *found = self.key_for_fd(<zs_sock_t>fd) if 0 <= fd <= INT_MAX else NULL
        cdef object key
        cdef int old
        if found == NULL:
            return None
        key = <object>found
        old = self.interest_of(<zs_sock_t>fd)
        self._set_slot(fd, NULL, 0)
        del self._keys[(<tuple>key)[1]]
        if old & ZS_EV_WRITE:
            self.writers -= 1
        if self._native is not None:
            self._native.remove(<zs_sock_t>fd, old)
        elif not self._closed:
            try:
                self._selector.unregister(fd)
            except OSError:
                pass
        return key

    cdef object modify_fd(self, long long fd, int events, object data):
        return self._modify(fd, events, events, data, None)

    cdef object _modify(self, long long fd, object events_obj, int events, object data,
                        object fileobj):
        cdef PyObject *found = self.key_for_fd(<zs_sock_t>fd) if 0 <= fd <= INT_MAX else NULL
        cdef object key, new_key
        cdef int old
        cdef bint data_changed
        if found == NULL:
            raise KeyError(f"{fd if fileobj is None else fileobj!r} is not registered")
        key = <object>found
        data_changed = data != key.data  # may run Python code: look the key up again after
        found = self.key_for_fd(<zs_sock_t>fd)
        if found == NULL:
            raise KeyError(f"{fd if fileobj is None else fileobj!r} is not registered")
        key = <object>found
        old = self.interest_of(<zs_sock_t>fd)
        if events != old:
            try:
                if self._native is not None:
                    self._native.modify(<zs_sock_t>fd, old, events)
                else:
                    self._selector.modify(fd, events)
            except BaseException:
                # As the standard library does (bpo-30014): a failed modify unregisters.
                self.unregister_fd(fd)
                raise
            self.writers += ((events & ZS_EV_WRITE) != 0) - ((old & ZS_EV_WRITE) != 0)
        elif not data_changed:
            return key
        new_key = _make_key(key.fileobj, key.fd, events_obj, data)
        self._keys[key.fd] = new_key
        self._set_slot(fd, <PyObject *>new_key, events)
        return new_key

    def register(self, fileobj, events, data=None):
        """Register a file object (a descriptor or an object with ``fileno()``)
        for EVENT_READ and/or EVENT_WRITE; returns its SelectorKey.

        ValueError for invalid events or descriptors, KeyError when already
        registered, OSError when the kernel refuses it."""
        cdef int bits = _event_bits(events)
        cdef long long fd = self._lookup_fd(fileobj)
        return self._register(fileobj, fd, events, bits, data)

    def unregister(self, fileobj):
        """Unregister a file object, even one closed since; returns its key."""
        cdef long long fd = self._lookup_fd(fileobj)
        key = self.unregister_fd(fd)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        return key

    def modify(self, fileobj, events, data=None):
        """Change a registered file object's events and/or data; returns the new key."""
        cdef int bits = _event_bits(events)
        cdef long long fd = self._lookup_fd(fileobj)
        return self._modify(fd, events, bits, data, fileobj)

    # -- polling --

    cdef int poll_ms(self, int timeout_ms) except -1:
        """Wait for events; returns how many ``ready_event(i)`` holds."""
        if self._native is None:
            raise TypeError("poll_ms() needs a native poller")
        if self._closed:
            raise ValueError(CLOSED_MESSAGE)
        return self._native.wait(timeout_ms)

    def select(self, timeout=None):
        """Wait until a registered file object is ready or ``timeout`` seconds
        pass (None: no limit; <= 0: do not wait); returns ``[(key, events), ...]``."""
        cdef int ms = timeout_to_ms(timeout)
        cdef int n, i, mask, count = 0
        cdef zs_event ev
        cdef PyObject *found
        cdef list result
        cdef Poller native = self._native
        if native is None:
            return self._select_foreign(ms)
        if self._closed:
            raise ValueError(CLOSED_MESSAGE)
        n = native.wait(ms)
        result = PyList_New(n)
        for i in range(n):
            # Re-read the array each time: code run by the garbage collector
            # could select() again and grow it.
            ev = native.ready[i]
            found = self.key_for_fd(ev.fd)
            if found == NULL:
                continue  # unregistered meanwhile
            mask = ev.events & self.interest_of(ev.fd)
            key = <object>found  # owned before the tuple allocation can run any code
            pair = (key, mask)
            Py_INCREF(pair)
            PyList_SET_ITEM(result, count, pair)
            count += 1
        if count < n:
            del result[count:]
        return result

    def _select_foreign(self, int ms):
        if self._closed:
            raise ValueError(CLOSED_MESSAGE)
        ready = []
        for fd, events in self._selector.poll(None if ms < 0 else ms):
            key = self._keys.get(fd)
            if key is not None:
                ready.append((key, events & key.events))
        return ready

    # -- the rest of the selector API --

    def close(self):
        """Unregister everything and release the kernel object; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._mapping = None
        if self._slots != NULL:
            memset(self._slots, 0, <size_t>self._nslots * sizeof(FdSlot))
        self._keys.clear()
        self.writers = 0
        if self._native is not None:
            self._native.close()
        else:
            self._selector.close()

    def get_map(self):
        """Read-only mapping of file objects to keys; None once closed."""
        return self._mapping

    def get_key(self, fileobj):
        """The key of a registered file object: KeyError when not registered,
        RuntimeError when the selector is closed."""
        mapping = self._mapping
        if mapping is None:
            raise RuntimeError("Selector is closed")
        try:
            return mapping[fileobj]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def _fileno(self):
        if self._closed:
            raise ValueError(CLOSED_MESSAGE)
        if self._native is not None:
            return self._native.fileno()
        return self._selector.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


class SelectSelector(Selector, BaseSelector):
    """Selector over select(2) (on Windows, Winsock select() without the 64-socket cap)."""
    _selector_cls = SelectPoller


DefaultSelector = SelectSelector

__all__ = ["EVENT_READ", "EVENT_WRITE", "SelectorKey", "BaseSelector", "SelectSelector"]

if ZS_PUBLIC_POLL:
    class PollSelector(Selector, BaseSelector):
        """Selector over poll(2)."""
        _selector_cls = PollPoller

    DefaultSelector = PollSelector
    __all__.append("PollSelector")

if ZS_HAVE_EPOLL:
    class EpollSelector(Selector, BaseSelector):
        """Selector over Linux epoll(7), level-triggered."""
        _selector_cls = EpollPoller

        def fileno(self):
            """The epoll descriptor."""
            return self._fileno()

    DefaultSelector = EpollSelector
    __all__.append("EpollSelector")

if ZS_HAVE_KQUEUE:
    class KqueueSelector(Selector, BaseSelector):
        """Selector over BSD/macOS kqueue(2), level-triggered."""
        _selector_cls = KqueuePoller

        def fileno(self):
            """The kqueue descriptor."""
            return self._fileno()

    DefaultSelector = KqueueSelector
    __all__.append("KqueueSelector")

if hasattr(_std, "DevpollSelector"):
    # Solaris only: the Python backend's class keeps the two APIs identical.
    from zerosock._selectors_py import DevpollSelector  # noqa: F401
    __all__.append("DevpollSelector")

# The standard library probes what the kernel supports (epoll may be missing
# under some emulation layers); follow its choice when we have that class.
DefaultSelector = globals().get(_std.DefaultSelector.__name__, DefaultSelector)
__all__.append("DefaultSelector")
