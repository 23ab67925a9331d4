from cpython.buffer cimport Py_buffer

from zerosock._shim cimport sockaddr, sockaddr_storage, zs_sock_t, zs_socklen_t
from zerosock._shim cimport zs_iovec, zs_mmsghdr, zs_msghdr
from zerosock._sockaddr_c cimport AddressCache

ctypedef int (*_name_getter)(zs_sock_t, sockaddr *, zs_socklen_t *) noexcept nogil


ctypedef struct Batch:
    # Arrays for recv_many/send_many, kept between calls and grown on demand.
    Py_ssize_t capacity
    zs_mmsghdr *hdrs
    zs_iovec *iovs
    sockaddr_storage *addrs
    Py_buffer *views


ctypedef struct OpArgs:
    # The operands of one data call; each op reads only its own.
    void *buf                 # RECV, SEND, RECVFROM, SENDTO
    size_t length
    sockaddr_storage *addr    # RECVFROM (filled in), SENDTO
    zs_socklen_t addrlen
    zs_msghdr *msg            # RECVMSG, SENDMSG
    size_t controllen         # RECVMSG: the control buffer's size
    Batch *batch              # RECVMMSG, SENDMMSG
    unsigned int count
    # SEND, SENDMSG: a blocking send returns only once this many bytes are
    # queued, as the kernel's own blocking send would (0: one send).
    size_t total
    # When a timeout socket gives up (monotonic); < 0 until the first wait
    # starts the clock.  One timeout bounds the whole call, retries included.
    double deadline


cdef class Socket:
    # The OS handle, ZS_INVALID_SOCKET once closed or detached; set invalid
    # before the descriptor is released so it is never used twice.
    cdef zs_sock_t fd
    cdef int _family
    cdef int _type
    cdef int _proto
    # <0: blocking (waits in the kernel, GIL released); 0: non-blocking;
    # >0: seconds to wait with poll before TimeoutError.
    cdef double _timeout
    cdef AddressCache _peer_cache
    # The files makefile() made and still open, and whether close() was
    # called (the descriptor waits for those files), as the stdlib keeps them.
    cdef public int _io_refs
    cdef public bint _closed
    # Scratch reused by the batch calls so they allocate nothing per call.
    cdef Batch *_batch
    cdef bint _batch_busy
    cdef object __weakref__

    cdef bint _probe_first(self, int flags) noexcept
    cdef int _check_open(self) noexcept
    cdef int _retry_or_raise(self, int err, int writing, double *deadline) noexcept
    cdef int _wait(self, int writing, double deadline) noexcept
    cdef int _set_timeout(self, double timeout) except -1
    cdef int _apply_default_timeout(self) except -1
    cdef object _peer(self, sockaddr_storage *addr, zs_socklen_t addrlen)
    cdef Py_ssize_t _recvfrom(self, void *buf, size_t length, int flags,
                              sockaddr_storage *addr, zs_socklen_t *addrlen) except -1
    cdef object _recv_bytes(self, Py_ssize_t bufsize, int flags, bint try_only)
    cdef Batch *_take_batch(self, Py_ssize_t n) except NULL
    cdef void _give_back_batch(self, Batch *b) noexcept
    cdef int _connect(self, object address, bint raising, str caller) except -1
    cdef object _name(self, _name_getter getter)
    cdef Py_ssize_t _perform(self, int op, OpArgs *a, int flags, bint try_only) except -1
    cdef Py_ssize_t _transfer(self, int writing, void *buf, size_t length, int flags,
                              bint try_only) except -1
