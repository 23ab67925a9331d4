# cython: language_level=3
"""The event loop's io_uring: readiness of the loop's descriptors through a
ring (csrc/zs_uring_poll.c), as the poller of a selector, so that the loop
core, add_reader/add_writer and every transport run on it unchanged; the wait
takes the loop's timer timeout.  The loop that waits is the only thread that
touches it."""

from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from libc.errno cimport errno

from zerosock._selectors_c cimport Poller, Selector, zs_event
from zerosock._shim cimport zs_sock_t
from zerosock._selectors_shared import BaseSelector, CLOSED_MESSAGE

cdef extern from "zs_uring_poll.h" nogil:
    ctypedef struct zs_upoll:
        pass
    zs_upoll *zs_upoll_new(char *reason, size_t reason_len)
    void zs_upoll_free(zs_upoll *p)
    int zs_upoll_fileno(const zs_upoll *p)
    int zs_upoll_add(zs_upoll *p, int fd, int events)
    int zs_upoll_mod(zs_upoll *p, int fd, int events)
    int zs_upoll_del(zs_upoll *p, int fd)
    int zs_upoll_prepare(zs_upoll *p)
    int zs_upoll_wait(zs_upoll *p, zs_event *out, int max, int timeout_ms)


cdef int _raise_errno() except -1:
    PyErr_SetFromErrno(OSError)
    return -1


cdef class RingPoller(Poller):
    """A ring's readiness, behind the Poller interface of the C selectors."""

    cdef zs_upoll *ring
    cdef int count  # descriptors registered

    def __init__(self):
        cdef char reason[512]
        reason[0] = 0
        self.ring = zs_upoll_new(reason, sizeof(reason))
        if self.ring == NULL:
            raise OSError(errno, reason.decode())

    def __dealloc__(self):
        zs_upoll_free(self.ring)
        self.ring = NULL

    @property
    def closed(self):
        return self.ring == NULL

    def fileno(self):
        if self.ring == NULL:
            raise ValueError(CLOSED_MESSAGE)
        return zs_upoll_fileno(self.ring)

    def close(self):
        """Release the ring (the kernel cancels what is in flight); idempotent."""
        zs_upoll_free(self.ring)
        self.ring = NULL

    cdef int add(self, zs_sock_t fd, int events) except -1:
        if self.ring == NULL:
            raise ValueError(CLOSED_MESSAGE)
        if zs_upoll_add(self.ring, <int>fd, events) < 0:
            _raise_errno()
        self.count += 1
        return 0

    cdef int modify(self, zs_sock_t fd, int old, int events) except -1:
        if self.ring == NULL:
            raise ValueError(CLOSED_MESSAGE)
        if zs_upoll_mod(self.ring, <int>fd, events) < 0:
            _raise_errno()
        return 0

    cdef void remove(self, zs_sock_t fd, int old) noexcept:
        if self.ring != NULL:
            zs_upoll_del(self.ring, <int>fd)
            self.count -= 1

    cdef int wait(self, int timeout_ms) except -1:
        """Arm what is due, wait up to ``timeout_ms`` (-1: no limit) in one
        system call; the ready events land in ``self.ready``."""
        cdef int cap = self.count if self.count > 0 else 1
        cdef int n
        if self.ring == NULL:
            raise ValueError(CLOSED_MESSAGE)
        self.begin_wait(cap)
        if zs_upoll_prepare(self.ring) < 0:
            _raise_errno()
        self.waiting = True
        try:
            if timeout_ms == 0:
                n = zs_upoll_wait(self.ring, self.ready, cap, 0)
            else:
                with nogil:
                    n = zs_upoll_wait(self.ring, self.ready, cap, timeout_ms)
        finally:
            self.waiting = False
        if n < 0:
            _raise_errno()
        # A signal ends the wait early, as a timeout does; its handler runs
        # now, as after an epoll_wait's EINTR (PEP 475).
        PyErr_CheckSignals()
        return n


class RingSelector(Selector, BaseSelector):
    """The C selector over a ring: what a loop on io_uring polls with."""
    _selector_cls = RingPoller

    def fileno(self):
        """The ring's descriptor."""
        return self._fileno()
