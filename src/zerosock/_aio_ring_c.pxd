from cpython.object cimport PyObject
from libc.stdint cimport int32_t, uint64_t

from zerosock._aio_transport_c cimport TransportCore
from zerosock._selectors_c cimport Poller, zs_event
from zerosock._shim cimport sockaddr, zs_socklen_t

cdef extern from "zs_uring_poll.h" nogil:
    ctypedef struct zs_upoll:
        pass
    ctypedef struct zs_urecv:
        int32_t res
        int32_t bid
    zs_upoll *zs_upoll_new(char *reason, size_t reason_len)
    void zs_upoll_free(zs_upoll *p)
    int zs_upoll_fileno(const zs_upoll *p)
    int zs_upoll_add(zs_upoll *p, int fd, int events)
    int zs_upoll_mod(zs_upoll *p, int fd, int events)
    int zs_upoll_del(zs_upoll *p, int fd)
    int zs_upoll_prepare(zs_upoll *p)
    int zs_upoll_wait(zs_upoll *p, zs_event *out, int max, int timeout_ms)
    int zs_ustream_open(zs_upoll *p, int fd)
    int zs_ustream_busy(const zs_upoll *p, int slot)
    void zs_ustream_release(zs_upoll *p, int slot)
    int zs_ustream_recv_start(zs_upoll *p, int slot)
    int zs_ustream_recv_stop(zs_upoll *p, int slot)
    int zs_ustream_receiving(const zs_upoll *p, int slot)
    int zs_ustream_send(zs_upoll *p, int slot, const void *buf, size_t len, int iovcnt)
    int zs_ustream_send_open(const zs_upoll *p, int slot)
    int zs_ustream_send_withdraw(zs_upoll *p, int slot)
    int zs_ustream_send_cancel(zs_upoll *p, int slot)
    int zs_ustream_send_result(zs_upoll *p, int slot, int32_t *res)
    int zs_ustream_take(zs_upoll *p, int slot, zs_urecv *out)
    int zs_ustream_peek(const zs_upoll *p, int slot, zs_urecv *out)
    int zs_ustream_pending(const zs_upoll *p, int slot)
    const char *zs_ustream_data(const zs_upoll *p, int32_t bid)
    void zs_ustream_put(zs_upoll *p, int32_t bid)
    int zs_upoll_completed(const zs_upoll *p, const int **slots)
    int zs_upoll_next_completed(zs_upoll *p)
    void zs_upoll_dispatched(zs_upoll *p)
    void zs_upoll_skip_completed(zs_upoll *p, int n)
    void zs_ustream_flush_later(zs_upoll *p, int slot)
    int zs_upoll_take_flushes(zs_upoll *p, int *out, int max)
    int zs_upoll_submit(zs_upoll *p)
    int zs_upoll_accept(zs_upoll *p, int fd)
    int zs_upoll_accepting(const zs_upoll *p, int fd)
    int zs_upoll_take_accepted(zs_upoll *p, int fd, int *res)
    int zs_accepted_peer(int fd, int family, sockaddr *addr, zs_socklen_t *len)
    void zs_upoll_accept_counts(const zs_upoll *p, uint64_t *accepted, uint64_t *dropped)


cdef class RingPoller(Poller):
    cdef zs_upoll *ring
    cdef int count             # descriptors registered for readiness
    cdef list handles          # by stream slot: the IOHandle that runs its completions
    cdef int flush_writes(self) except -1
    # The streams with completions in the last wait, for the loop core (which
    # does not link the ring's C): run now, or (debug mode) as I/O handles.
    cdef int run_completions(self) except -1
    cdef int _wait_once(self, int cap, int timeout_ms) except -1
    cdef bint _settled_all(self) except -1
    cdef int completed(self, const int **slots) noexcept
    cdef object handle_of(self, int slot)
    cdef object handle_to_run(self, int slot)
    # A listener whose connections the ring accepts (zs_upoll_accept), for
    # the loop's C accept path (_aio_accept_c, which does not link the ring's C).
    cdef bint accepts(self, int fd) noexcept
    cdef bint take_accepted(self, int fd, int *res) noexcept
    cdef int accepted_peer(self, int fd, int family, sockaddr *addr, zs_socklen_t *len) noexcept


# Free a transport's slot if nothing of it is in flight (True), else cancel
# what is (False: give it back again once they ended).
cdef bint give_back_slot(RingPoller ring, int slot) except -1


cdef class RingTransportCore(TransportCore):
    cdef RingPoller ring
    cdef int slot                  # the ring's stream slot, -1 once released
    cdef object handle             # the IOHandle in the ring's handles
    cdef object held               # a deque of what was received while paused: bytes, or an end (0 or -errno)
    cdef Py_ssize_t in_flight      # bytes of the send in flight
    cdef object head               # the first chunk queued (the rest in _queue): most writes need no deque
    cdef object kept               # a dropped queue whose send is still in flight
    cdef bint release_pending      # the slot goes once nothing is in flight
    cdef bint send_result_taken    # settle_send took a send's result for _sent
    cdef int32_t taken_res

    cdef inline bint _ring_open(self) noexcept:
        return self.slot >= 0 and self.ring.ring != NULL
    cdef int _open_slot(self, object loop, int fd) except -1
    cdef int _enter_handle(self, object context) except -1
    cdef void _release_unstarted(self) noexcept
    cdef int flush(self) except -1
    cdef int _submitted(self, int rc, Py_ssize_t total) except -1
    cdef bint settle_send(self) except -1
    cdef int _sent(self, int32_t res) except -1
    cdef int _deliver(self) except -1
    cdef int _give(self, const char *ptr, Py_ssize_t n) except -1
    cdef int _give_bytes(self, const char *ptr, Py_ssize_t n) except -1
    cdef int _hold(self, object item) except -1
    cdef int _end(self, int32_t res) except -1
    cdef bint _reading_stopped(self)
    cdef int _drop_received(self) except -1
    cdef int _send_at_once(self) except -1
    cdef int _lose(self, object exc) except -1
    cdef int _release(self) except -1
