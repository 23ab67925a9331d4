# The C-level selector API, for the event loop (zerosock.aio) to poll and
# dispatch without Python objects:
#
#     cdef Selector sel = <Selector>zerosock.selectors.DefaultSelector()
#     n = sel.poll_ms(timeout_ms)            # EINTR-safe; GIL released if it may block
#     for i in range(n):
#         ev = sel.ready_event(i)           # zs_event: .fd, .events (ZS_EV_READ|ZS_EV_WRITE)
#         key = sel.key_for_fd(ev.fd)       # borrowed SelectorKey or NULL (unregistered since)
#         mask = ev.events & sel.interest_of(ev.fd)
#
# Ready events are valid until the next poll_ms().  A borrowed key is valid
# until its descriptor is unregistered or modified: take a reference before
# running code that may do either.  register_fd/modify_fd/unregister_fd skip
# the fileobj conversion (fd must be >= 0).  Level-triggered by default; a
# subclass whose _selector_cls is functools.partial(EpollPoller,
# edge_triggered=True) (or KqueuePoller) gets EPOLLET / EV_CLEAR.  One wait at
# a time per selector (RuntimeError otherwise).

from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from zerosock._shim cimport zs_sock_t

cdef extern from "zs_poller.h" nogil:
    ctypedef struct zs_event:
        zs_sock_t fd
        int events

    ctypedef struct zs_poller:
        int kind
        int flags
        int open
        int count

    const int ZS_POLLER_EPOLL
    const int ZS_POLLER_KQUEUE
    const int ZS_POLLER_POLL
    const int ZS_POLLER_SELECT
    const int ZS_POLLER_DEFAULT
    const int ZS_POLLER_EDGE
    const int ZS_HAVE_EPOLL
    const int ZS_HAVE_KQUEUE
    const int ZS_HAVE_POLL
    const int ZS_HAVE_SELECT
    const int ZS_PUBLIC_POLL
    const int ZS_EV_READ
    const int ZS_EV_WRITE
    const int ZS_EV_HUP
    const int ZS_ENOMEM
    const int ZS_EFDRANGE

    int zs_poller_available(int kind)
    int zs_poller_init(zs_poller *p, int kind, int flags)
    int zs_poller_fileno(const zs_poller *p)
    int zs_poller_close(zs_poller *p)
    void zs_poller_free(zs_poller *p)
    int zs_poller_add(zs_poller *p, zs_sock_t fd, int events)
    int zs_poller_mod(zs_poller *p, zs_sock_t fd, int old, int events)
    int zs_poller_del(zs_poller *p, zs_sock_t fd, int old)
    int zs_poller_capacity(const zs_poller *p)
    int zs_poller_prepare(zs_poller *p, int capacity)
    int zs_poller_wait(zs_poller *p, zs_event *out, int max, int timeout_ms)


# Per-descriptor record of a selector, indexed by fd for small descriptors.
cdef struct FdSlot:
    PyObject *key   # borrowed: the selector's key dict owns it; NULL when free
    int events      # registered interest, ZS_EV_READ | ZS_EV_WRITE


cdef class Poller:
    """One kernel poller (epoll, kqueue, poll or select) and its preallocated event array."""
    cdef zs_poller poller
    cdef zs_event *ready
    cdef int ready_cap
    cdef bint waiting

    # What a Selector calls, overridden by pollers that are not zs_poller's
    # (the io_uring one of zerosock._aio_ring_c).
    cdef int add(self, zs_sock_t fd, int events) except -1
    cdef int modify(self, zs_sock_t fd, int old, int events) except -1
    cdef void remove(self, zs_sock_t fd, int old) noexcept  # errors ignored, as the stdlib does
    # Before a wait: no other wait under way, room for `capacity` ready events.
    cdef int begin_wait(self, int capacity) except -1
    cdef int wait(self, int timeout_ms) except -1


cdef class Selector:
    cdef dict _keys             # fd (int) -> SelectorKey, in registration order
    cdef object _keys_view      # read-only view of _keys, exposed as _fd_to_key
    cdef object _mapping        # what get_map() returns; None once closed
    cdef object _selector       # the poller object made by _selector_cls
    cdef Poller _native         # _selector when it is a Poller, else None
    cdef FdSlot *_slots
    cdef Py_ssize_t _nslots
    cdef bint _closed
    cdef Py_ssize_t writers  # registrations whose interest includes writing (for the loop core)

    # -- registration without fileobj conversion (fd already an int >= 0) --
    cdef object register_fd(self, object fileobj, long long fd, int events, object data)
    cdef object unregister_fd(self, long long fd)
    cdef object modify_fd(self, long long fd, int events, object data)

    # -- polling --
    cdef int poll_ms(self, int timeout_ms) except -1

    cdef inline zs_event ready_event(self, int i):
        return self._native.ready[i]

    cdef inline zs_event *ready_events(self):
        return self._native.ready

    cdef inline PyObject *key_for_fd(self, zs_sock_t fd):
        if <unsigned long long>fd < <unsigned long long>self._nslots:
            return self._slots[fd].key
        return self._key_slow(fd)

    cdef inline PyObject *data_for_fd(self, zs_sock_t fd):
        """The registered data of ``fd`` (borrowed), or NULL when not registered."""
        cdef PyObject *key = self.key_for_fd(fd)
        if key == NULL:
            return NULL
        return PyTuple_GET_ITEM(<object>key, 3)

    cdef inline int interest_of(self, zs_sock_t fd):
        if <unsigned long long>fd < <unsigned long long>self._nslots:
            return self._slots[fd].events
        return self._interest_slow(fd)

    cdef PyObject *_key_slow(self, long long fd)
    cdef int _interest_slow(self, long long fd)
    cdef int _set_slot(self, long long fd, PyObject *key, int events) except -1
    cdef long long _lookup_fd(self, object fileobj) except -1
    cdef object _register(self, object fileobj, long long fd, object events_obj, int events,
                          object data)
    cdef object _modify(self, long long fd, object events_obj, int events, object data,
                        object fileobj)


# Seconds (None, int or float) to the milliseconds a wait takes: -1 forever,
# 0 no wait, rounded up; ValueError for NaN, OverflowError when too large.
cdef int timeout_to_ms(object timeout) except? -2
