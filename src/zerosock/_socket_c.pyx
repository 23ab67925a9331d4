# cython: language_level=3
"""The C Socket: thin wrappers over the BSD / Winsock calls of csrc/zs_shim.h.

Hot calls (``recv_into``, ``send`` and their non-raising twins) create no
Python object beyond the integer they return.  Non-blocking calls keep the
GIL (the syscall cannot block); blocking ones release it.  EINTR is retried
after running signal handlers (PEP 475); errors are the OSError subclasses
the standard library raises.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.sequence cimport PySequence_Check
from libc.limits cimport INT_MAX, INT_MIN
from libc.math cimport ceil, isnan
from libc.string cimport memcpy, memset

from zerosock._shim cimport *
from zerosock._sockaddr_c cimport AddressCache, make_address, parse_address, uint_format

import _socket
from operator import index as _index
import socket as _stdsocket
import sys as _sys
import warnings as _warnings

from zerosock import _socket_shared
from zerosock._socket_shared import (
    as_family, as_kind, bind_factories, sendfile as _sendfile, socket_repr, take_over,
)

cdef extern from "Python.h":
    # Declared without exception clauses: the internal helpers set exceptions
    # through the C API and return -1, so that an error path (would-block,
    # above all) adds one traceback entry, not one per helper frame.
    int _get_buffer "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags)
    int _check_signals "PyErr_CheckSignals"() noexcept
    void _set_string "PyErr_SetString"(object exc_type, const char *message) noexcept
    int PyErr_ExceptionMatches(object exc_type) noexcept
    void PyErr_Clear()

cdef object _timeout_error = _stdsocket.timeout
cdef object _getdefaulttimeout = _stdsocket.getdefaulttimeout
cdef int _SOCK_NONBLOCK = getattr(_stdsocket, "SOCK_NONBLOCK", 0)
cdef int _SOCK_CLOEXEC = getattr(_stdsocket, "SOCK_CLOEXEC", 0)
cdef int _DEFAULT_BACKLOG = min(_stdsocket.SOMAXCONN, 128)
cdef Py_ssize_t _STACK_PARTS = 16  # sendmsg/recvmsg_into vectors up to this size use the stack
cdef object _MISSING = object()
# From 3.15 setsockopt() takes any int as a C int, and says when it does not fit.
cdef bint INT_OPTION_OVERFLOWS = _sys.version_info >= (3, 15)

if zs_startup() != 0:
    raise ImportError("zerosock: socket library start-up failed")


cdef inline int _get_readable(object obj, Py_buffer *view) except -1:
    if _get_buffer(obj, view, PyBUF_SIMPLE) < 0:
        PyErr_Clear()
        raise TypeError(f"a bytes-like object is required, not '{type(obj).__name__}'")
    return 0


cdef inline int _get_writable(object obj, Py_buffer *view, str caller) except -1:
    if _get_buffer(obj, view, PyBUF_WRITABLE) < 0:
        PyErr_Clear()
        raise TypeError(f"{caller}() argument 'buffer' must be read-write bytes-like "
                        f"object, not {type(obj).__name__}")
    return 0


cdef inline Py_ssize_t _check_nbytes(Py_ssize_t nbytes, Py_ssize_t available,
                                     str caller) except -1:
    if nbytes < 0:
        raise ValueError(f"negative buffersize in {caller}")
    if nbytes == 0:
        return available
    if nbytes > available:
        raise ValueError(f"buffer too small for requested bytes")
    return nbytes


# The one-buffer calls of both kinds: a blocking or timed call, or (with
# try_only) one that returns -2 where it would wait.  Plain functions, so the
# compiler inlines them into each method.
cdef inline Py_ssize_t _recv_into(Socket sock, buffer, Py_ssize_t nbytes, int flags,
                                  bint try_only, str caller) except -1:
    cdef Py_buffer view
    cdef Py_ssize_t n
    _get_writable(buffer, &view, caller)
    try:
        nbytes = _check_nbytes(nbytes, view.len, caller)
        n = sock._transfer(0, view.buf, nbytes, flags, try_only)
    finally:
        PyBuffer_Release(&view)
    return n


cdef inline Py_ssize_t _send(Socket sock, data, int flags, bint try_only) except -1:
    cdef Py_buffer view
    cdef Py_ssize_t n
    _get_readable(data, &view)
    try:
        n = sock._transfer(1, view.buf, view.len, flags, try_only)
    finally:
        PyBuffer_Release(&view)
    return n


cdef double _timeout_from(object value) except? -2.0:
    """Seconds from a ``settimeout`` argument, -1.0 for None, checked as the
    standard library checks it."""
    cdef double seconds
    if value is None:
        return -1.0
    if isinstance(value, float):
        seconds = value
        if isnan(seconds):
            raise ValueError("Invalid value NaN (not a number)")
    else:
        seconds = _index(value)
    if seconds < 0:
        raise ValueError("Timeout value out of range")
    if seconds > 9.2e9:
        raise OverflowError("timeout doesn't fit into C timeval")
    return seconds


cdef int _propagate() except -1:
    """Hand an exception set through the C API to Cython's error handling."""
    return -1


cdef inline int _set_timeout_error() noexcept:
    _set_string(_timeout_error, "timed out")
    return -1


# The data calls, as codes for Socket._perform.  Even codes receive and odd
# codes send: the low bit is the readiness to wait for.
cdef enum:
    OP_RECV = 0
    OP_SEND = 1
    OP_RECVFROM = 2
    OP_SENDTO = 3
    OP_RECVMSG = 4
    OP_SENDMSG = 5
    OP_RECVMMSG = 6
    OP_SENDMMSG = 7


cdef inline void _reset_recv_headers(Batch *b, unsigned int count) noexcept nogil:
    """Point each header at its own iovec and address slot, full size."""
    cdef unsigned int i
    for i in range(count):
        memset(&b.hdrs[i], 0, sizeof(zs_mmsghdr))
        b.hdrs[i].msg_hdr.msg_name = &b.addrs[i]
        b.hdrs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
        b.hdrs[i].msg_hdr.msg_iov = &b.iovs[i]
        b.hdrs[i].msg_hdr.msg_iovlen = 1


cdef inline long _call(zs_sock_t fd, int op, OpArgs *a, int flags,
                       bint blocking) noexcept nogil:
    """One attempt at ``op``'s syscall.  recv and send are dispatched here,
    small enough to inline into the retry loop, which keeps the hot path as
    short as a direct call; the others go through _call_other."""
    if op == OP_RECV:
        return zs_recv(fd, a.buf, a.length, flags)
    if op == OP_SEND:
        return zs_send(fd, a.buf, a.length, flags)
    return _call_other(fd, op, a, flags, blocking)


cdef long _call_other(zs_sock_t fd, int op, OpArgs *a, int flags,
                      bint blocking) noexcept nogil:
    """The syscalls of the address, message and batch ops.  The lengths the
    kernel writes back are reset first: an earlier, failed attempt may have
    changed them."""
    if op == OP_RECVFROM:
        a.addrlen = sizeof(sockaddr_storage)
        return zs_recvfrom(fd, a.buf, a.length, flags, <sockaddr *>a.addr, &a.addrlen)
    if op == OP_SENDTO:
        return zs_sendto(fd, a.buf, a.length, flags, <sockaddr *>a.addr, a.addrlen)
    if op == OP_RECVMSG:
        a.msg.msg_namelen = sizeof(sockaddr_storage)
        a.msg.msg_controllen = a.controllen
        a.msg.msg_flags = 0
        return zs_recvmsg(fd, a.msg, flags)
    if op == OP_SENDMSG:
        return zs_sendmsg(fd, a.msg, flags)
    if op == OP_RECVMMSG:
        _reset_recv_headers(a.batch, a.count)
        # Blocking, wait for the first datagram only, then take what is queued.
        return zs_recvmmsg(fd, a.batch.hdrs, a.count, flags, blocking)
    return zs_sendmmsg(fd, a.batch.hdrs, a.count, flags)


cdef inline void _skip_sent(int op, OpArgs *a, long sent) noexcept nogil:
    """Move a SEND or SENDMSG past the bytes already sent."""
    if op == OP_SEND:
        a.buf = <char *>a.buf + sent
        a.length -= sent
    else:
        a.msg.msg_iovlen = zs_iov_consume(a.msg.msg_iov, a.msg.msg_iovlen, sent)


cdef struct Vectors:
    # The buffers of one sendmsg/recvmsg_into call and their iovecs; up to
    # 16 live on the caller's stack, more are allocated for the call.
    Py_buffer stack_views[16]
    zs_iovec stack_iovs[16]
    Py_buffer *views
    zs_iovec *iovs
    Py_ssize_t count     # buffers exported so far (released by _vectors_release)
    Py_ssize_t total     # bytes they hold


cdef int _vectors_acquire(Vectors *v, object buffers, bint writable, str caller) except -1:
    """Export every buffer (kept alive until _vectors_release) and point an iovec at it."""
    cdef Py_ssize_t n, i
    v.views = v.stack_views
    v.iovs = v.stack_iovs
    v.count = 0
    v.total = 0
    parts = buffers if isinstance(buffers, (list, tuple)) else list(buffers)
    n = len(parts)
    if n > _STACK_PARTS:
        v.views = <Py_buffer *>PyMem_Malloc(n * sizeof(Py_buffer))
        v.iovs = <zs_iovec *>PyMem_Malloc(n * sizeof(zs_iovec))
        if v.views == NULL or v.iovs == NULL:
            raise MemoryError()
    for i in range(n):
        if writable:
            _get_writable(parts[i], &v.views[i], caller)
        else:
            _get_readable(parts[i], &v.views[i])
        v.count += 1
        zs_iov_set(&v.iovs[i], v.views[i].buf, v.views[i].len)
        v.total += v.views[i].len
    return 0


cdef void _vectors_release(Vectors *v) noexcept:
    cdef Py_ssize_t i
    for i in range(v.count):
        PyBuffer_Release(&v.views[i])
    if v.views != v.stack_views:
        PyMem_Free(v.views)
    if v.iovs != v.stack_iovs:
        PyMem_Free(v.iovs)
    v.count = 0
    v.views = v.stack_views
    v.iovs = v.stack_iovs


cdef Batch *_batch_new(Py_ssize_t n) except NULL:
    cdef Batch *b = <Batch *>PyMem_Malloc(sizeof(Batch))
    if b == NULL:
        raise MemoryError()
    memset(b, 0, sizeof(Batch))
    b.capacity = n
    b.hdrs = <zs_mmsghdr *>PyMem_Malloc(n * sizeof(zs_mmsghdr))
    b.iovs = <zs_iovec *>PyMem_Malloc(n * sizeof(zs_iovec))
    b.addrs = <sockaddr_storage *>PyMem_Malloc(n * sizeof(sockaddr_storage))
    b.views = <Py_buffer *>PyMem_Malloc(n * sizeof(Py_buffer))
    if b.hdrs == NULL or b.iovs == NULL or b.addrs == NULL or b.views == NULL:
        _batch_free(b)
        raise MemoryError()
    return b


cdef void _batch_free(Batch *b) noexcept:
    if b != NULL:
        PyMem_Free(b.hdrs)
        PyMem_Free(b.iovs)
        PyMem_Free(b.addrs)
        PyMem_Free(b.views)
        PyMem_Free(b)


cdef class Socket:
    """A socket with the standard library's API plus zero-copy hot-path calls.

    ``Socket(family=-1, type=-1, proto=-1, fileno=None)``: like
    :class:`socket.socket`, AF_INET/SOCK_STREAM by default, or the kind of an
    existing descriptor when ``fileno`` is given.
    """

    def __cinit__(self):
        self.fd = ZS_INVALID_SOCKET
        self._timeout = -1.0

    def __init__(self, int family=-1, int type=-1, int proto=-1, fileno=None):
        cdef zs_sock_t fd
        cdef bint nonblocking = type != -1 and (type & _SOCK_NONBLOCK) != 0
        if self.fd != ZS_INVALID_SOCKET:
            raise RuntimeError("Socket is already initialized")
        if fileno is None:
            family = AF_INET if family == -1 else family
            type = _stdsocket.SOCK_STREAM if type == -1 else type
            proto = 0 if proto == -1 else proto
            type &= ~(_SOCK_NONBLOCK | _SOCK_CLOEXEC)
            fd = zs_socket(family, type, proto)
            if fd == ZS_INVALID_SOCKET:
                raise_os_error(zs_last_error())
        else:
            # The standard library validates the descriptor and reads its kind.
            probe = _socket.socket(family, type, proto, fileno)
            family, type, proto = probe.family, probe.type, probe.proto
            fd = probe.detach()
        self.fd = fd
        self._family = family
        self._type = type & ~(_SOCK_NONBLOCK | _SOCK_CLOEXEC)
        self._proto = proto
        if nonblocking:
            self._set_timeout(0.0)
        else:
            self._apply_default_timeout()

    cdef int _apply_default_timeout(self) except -1:
        default = _getdefaulttimeout()
        if default is None:
            self._timeout = -1.0  # a new descriptor is blocking already
        else:
            self._set_timeout(default)
        return 0

    def __dealloc__(self):
        cdef zs_sock_t fd = self.fd
        if fd != ZS_INVALID_SOCKET:
            self.fd = ZS_INVALID_SOCKET
            zs_close(fd)
        _batch_free(self._batch)

    def __del__(self):
        if self.fd != ZS_INVALID_SOCKET:
            _warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()

    @classmethod
    def from_socket(cls, sock):
        """Take over a stdlib socket's descriptor (the stdlib object is detached)."""
        return take_over(cls, sock)

    def __repr__(self):
        return socket_repr(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    # ------------------------------------------------------------ identity

    @property
    def family(self):
        """The address family, as :class:`socket.AddressFamily` when known."""
        return as_family(self._family)

    @property
    def type(self):
        """The socket type, as :class:`socket.SocketKind` when known."""
        return as_kind(self._type)

    @property
    def proto(self):
        """The protocol number."""
        return self._proto

    @property
    def timeout(self):
        """The timeout in seconds, ``None`` when blocking."""
        return None if self._timeout < 0 else self._timeout

    def fileno(self):
        """The descriptor, or -1 once closed."""
        return -1 if self.fd == ZS_INVALID_SOCKET else <long long>self.fd

    makefile = _socket_shared.makefile
    dup = _socket_shared.dup
    get_inheritable = _socket_shared.get_inheritable
    set_inheritable = _socket_shared.set_inheritable

    def close(self):
        """Close the descriptor; closing twice does nothing.  While files
        made by makefile() are open it stays open for them, until the last
        one closes, as the standard library's does."""
        cdef zs_sock_t fd = self.fd
        self._closed = True
        if fd == ZS_INVALID_SOCKET or self._io_refs > 0:
            return
        self.fd = ZS_INVALID_SOCKET  # never reachable again, even if close fails
        if zs_close(fd) != 0:
            err = zs_last_error()
            if err != ZS_ECONNRESET:
                raise_os_error(err)

    def detach(self):
        """Give up the descriptor without closing it and return it."""
        cdef zs_sock_t fd = self.fd
        self._closed = True
        self.fd = ZS_INVALID_SOCKET
        return -1 if fd == ZS_INVALID_SOCKET else <long long>fd

    def _decref_socketios(self):
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    cdef inline bint _probe_first(self, int flags) noexcept:
        """For a blocking socket: try the call without waiting (GIL held)
        before waiting in the kernel (GIL released).  Not with MSG_WAITALL,
        whose caller wants the whole length."""
        return ZS_HAVE_MSG_DONTWAIT and not (flags & ZS_MSG_WAITALL)

    cdef int _check_open(self) noexcept:
        if self.fd == ZS_INVALID_SOCKET:
            return set_os_error(ZS_EBADF)
        return 0

    # ------------------------------------------------------- modes and waits

    cdef int _set_timeout(self, double timeout) except -1:
        if self._check_open() < 0:
            return -1
        if zs_set_nonblocking(self.fd, timeout >= 0) != 0:
            raise_os_error(zs_last_error())
        self._timeout = timeout
        return 0

    def settimeout(self, value):
        """``None`` for blocking, ``0`` for non-blocking, else seconds to wait."""
        self._set_timeout(_timeout_from(value))

    def gettimeout(self):
        """The timeout in seconds, ``None`` when blocking."""
        return None if self._timeout < 0 else self._timeout

    def setblocking(self, flag):
        """``setblocking(True)`` is ``settimeout(None)``, ``False`` is ``settimeout(0)``."""
        self._set_timeout(-1.0 if flag else 0.0)

    def getblocking(self):
        """False only when the timeout is 0."""
        return self._timeout != 0.0

    cdef int _wait(self, int writing, double deadline) noexcept:
        """Wait in the kernel, GIL released, until ready; ``deadline`` < 0 waits
        forever, else TimeoutError at that monotonic time.  -1 with an
        exception set on failure."""
        cdef int rc, err, ms
        cdef double remaining
        cdef zs_sock_t fd
        while True:
            if self._check_open() < 0:
                return -1
            fd = self.fd
            if deadline < 0:
                ms = -1
            else:
                remaining = deadline - zs_monotonic()
                if remaining <= 0:
                    return _set_timeout_error()
                ms = <int>min(ceil(remaining * 1000.0), <double>INT_MAX)
            with nogil:
                rc = zs_wait(fd, writing, ms)
            if rc > 0:
                return 0
            if rc == 0:
                return _set_timeout_error()
            err = zs_last_error()
            if err != ZS_EINTR:
                return set_os_error(err)
            if _check_signals() < 0:
                return -1

    cdef int _retry_or_raise(self, int err, int writing, double *deadline) noexcept:
        """After a failed call: 0 to retry it (EINTR after the signal handlers
        ran, or would-block on a timeout socket once ready), else -1 with the
        exception set."""
        if err == ZS_EINTR:
            if _check_signals() < 0:
                return -1
            return self._check_open()  # a handler may have closed the socket
        if self._timeout > 0 and zs_is_would_block(err):
            if deadline[0] < 0:
                deadline[0] = zs_monotonic() + self._timeout
            return self._wait(writing, deadline[0])
        return set_os_error(err)

    cdef Py_ssize_t _perform(self, int op, OpArgs *a, int flags, bint try_only) except -1:
        """Run one data call to completion as the timeout says: the one retry
        loop behind every send and receive.  With ``try_only``, -2 instead of
        waiting or raising when it would block."""
        cdef long n, rest
        cdef int err
        cdef zs_sock_t fd
        cdef bint release_gil = self._timeout < 0 and not try_only
        if self._check_open() < 0:
            return -1
        if try_only and self._timeout != 0.0:
            if ZS_HAVE_MSG_DONTWAIT:
                flags |= ZS_MSG_DONTWAIT
            elif zs_wait(self.fd, op & 1, 0) == 0:
                return -2
        while True:
            fd = self.fd
            if not release_gil:
                n = _call(fd, op, a, flags, False)
            elif self._probe_first(flags):
                # Data (or room) is usually there: take it without handing the
                # GIL over; wait with the GIL released only for what is left.
                n = _call(fd, op, a, flags | ZS_MSG_DONTWAIT, False)
                if n < 0 and zs_is_would_block(zs_last_error()):
                    with nogil:
                        n = _call(fd, op, a, flags, True)
                elif (op == OP_SEND or op == OP_SENDMSG) and 0 <= n < <long>a.total:
                    # A blocking send queues everything, as the kernel would.
                    _skip_sent(op, a, n)
                    with nogil:
                        rest = _call(fd, op, a, flags, True)
                    return n + rest if rest > 0 else n
            else:
                with nogil:
                    n = _call(fd, op, a, flags, True)
            if n >= 0:
                return n
            err = zs_last_error()
            if try_only and zs_is_would_block(err):
                return -2
            if self._retry_or_raise(err, op & 1, &a.deadline) < 0:
                return -1

    cdef inline Py_ssize_t _transfer(self, int writing, void *buf, size_t length,
                                     int flags, bint try_only) except -1:
        """One send or recv of at most ``length`` bytes; with ``try_only``,
        -2 instead of waiting or raising when it would block."""
        cdef OpArgs a
        a.buf = buf
        a.length = length
        a.total = length
        a.deadline = -1.0
        return self._perform(OP_SEND if writing else OP_RECV, &a, flags, try_only)

    # ------------------------------------------------------------- receiving

    def recv_into(self, buffer, Py_ssize_t nbytes=0, int flags=0):
        """Receive into a writable buffer in place; returns the byte count (0 at
        end of stream).  Allocates nothing."""
        return _recv_into(self, buffer, nbytes, flags, False, "recv_into")

    def try_recv_into(self, buffer, Py_ssize_t nbytes=0, int flags=0):
        """``recv_into`` that returns ``None`` instead of waiting or raising
        BlockingIOError when no data is ready."""
        cdef Py_ssize_t n = _recv_into(self, buffer, nbytes, flags, True, "try_recv_into")
        return None if n == -2 else n

    cdef object _recv_bytes(self, Py_ssize_t bufsize, int flags, bint try_only):
        cdef char stack[4096]
        cdef Py_ssize_t n
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if bufsize <= <Py_ssize_t>sizeof(stack):
            n = self._transfer(0, stack, bufsize, flags, try_only)
            return None if n == -2 else PyBytes_FromStringAndSize(stack, n)
        data = PyBytes_FromStringAndSize(NULL, bufsize)
        n = self._transfer(0, PyBytes_AS_STRING(data), bufsize, flags, try_only)
        if n == -2:
            return None
        return data if n == bufsize else data[:n]

    def recv(self, Py_ssize_t bufsize, int flags=0):
        """Receive up to ``bufsize`` bytes; ``b""`` at end of stream."""
        return self._recv_bytes(bufsize, flags, False)

    def try_recv(self, Py_ssize_t bufsize, int flags=0):
        """``recv`` that returns ``None`` when no data is ready."""
        return self._recv_bytes(bufsize, flags, True)

    cdef Py_ssize_t _recvfrom(self, void *buf, size_t length, int flags,
                              sockaddr_storage *addr, zs_socklen_t *addrlen) except -1:
        cdef OpArgs a
        cdef Py_ssize_t n
        a.buf = buf
        a.length = length
        a.addr = addr
        a.deadline = -1.0
        n = self._perform(OP_RECVFROM, &a, flags, False)
        addrlen[0] = a.addrlen
        return n

    cdef object _peer(self, sockaddr_storage *addr, zs_socklen_t addrlen):
        if self._peer_cache is None:
            self._peer_cache = AddressCache()
        return self._peer_cache.get(<sockaddr *>addr, addrlen, self._family)

    def recvfrom_into(self, buffer, Py_ssize_t nbytes=0, int flags=0):
        """Receive into a writable buffer; returns ``(nbytes, address)``."""
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef sockaddr_storage addr
        cdef zs_socklen_t addrlen = 0
        _get_writable(buffer, &view, "recvfrom_into")
        try:
            nbytes = _check_nbytes(nbytes, view.len, "recvfrom_into")
            n = self._recvfrom(view.buf, nbytes, flags, &addr, &addrlen)
        finally:
            PyBuffer_Release(&view)
        return n, self._peer(&addr, addrlen)

    def recvfrom(self, Py_ssize_t bufsize, int flags=0):
        """Receive up to ``bufsize`` bytes; returns ``(bytes, address)``."""
        cdef Py_ssize_t n
        cdef sockaddr_storage addr
        cdef zs_socklen_t addrlen = 0
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        data = PyBytes_FromStringAndSize(NULL, bufsize)
        n = self._recvfrom(PyBytes_AS_STRING(data), bufsize, flags, &addr, &addrlen)
        return (data if n == bufsize else data[:n]), self._peer(&addr, addrlen)

    def recvmsg_into(self, buffers, Py_ssize_t ancbufsize=0, int flags=0):
        """Scatter one message into several writable buffers (one syscall);
        returns ``(nbytes, ancdata, msg_flags, address)`` as the standard library."""
        cdef Vectors vec
        cdef zs_msghdr msg
        cdef sockaddr_storage addr
        cdef char *control = NULL
        cdef Py_ssize_t n
        cdef OpArgs a
        if ancbufsize < 0:
            raise ValueError("negative buffer size in recvmsg_into()")
        vec.count = 0
        vec.views = vec.stack_views
        vec.iovs = vec.stack_iovs
        try:
            _vectors_acquire(&vec, buffers, True, "recvmsg_into")
            if ancbufsize:
                control = <char *>PyMem_Malloc(ancbufsize)
                if control == NULL:
                    raise MemoryError()
                memset(control, 0, ancbufsize)
            memset(&msg, 0, sizeof(msg))
            msg.msg_name = &addr
            msg.msg_iov = vec.iovs
            msg.msg_iovlen = vec.count
            msg.msg_control = control
            a.msg = &msg
            a.controllen = ancbufsize
            a.deadline = -1.0
            n = self._perform(OP_RECVMSG, &a, flags, False)
            return (n, _parse_ancillary(&msg), msg.msg_flags,
                    make_address(<sockaddr *>&addr, msg.msg_namelen, self._family))
        finally:
            _vectors_release(&vec)
            PyMem_Free(control)

    def recvmsg(self, Py_ssize_t bufsize, Py_ssize_t ancbufsize=0, int flags=0):
        """Receive one message: ``(data, ancdata, msg_flags, address)``."""
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        buf = bytearray(bufsize)
        n, ancdata, msg_flags, address = self.recvmsg_into((buf,), ancbufsize, flags)
        return bytes(buf[:n]), ancdata, msg_flags, address

    # --------------------------------------------------------------- sending

    def send(self, data, int flags=0):
        """Send bytes from any buffer, read in place; returns how many were sent."""
        return _send(self, data, flags, False)

    def try_send(self, data, int flags=0):
        """``send`` that returns ``None`` when the send buffer is full."""
        cdef Py_ssize_t n = _send(self, data, flags, True)
        return None if n == -2 else n

    def sendall(self, data, int flags=0):
        """Send every byte; the timeout bounds the whole call, as in the stdlib."""
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef OpArgs a
        _get_readable(data, &view)
        try:
            if self._check_open() < 0:  # even with nothing to send
                _propagate()
            a.buf = view.buf
            a.length = view.len
            a.total = 0  # one send at a time, so signal handlers run between them
            a.deadline = zs_monotonic() + self._timeout if self._timeout > 0 else -1.0
            while a.length > 0:
                n = self._perform(OP_SEND, &a, flags, False)
                _skip_sent(OP_SEND, &a, n)
                if _check_signals() < 0:  # a long send still runs signal handlers
                    _propagate()
        finally:
            PyBuffer_Release(&view)

    def sendto(self, data, flags_or_address, address=_MISSING):
        """``sendto(data, address)`` or ``sendto(data, flags, address)``."""
        cdef Py_buffer view
        cdef sockaddr_storage addr
        cdef int flags = 0
        cdef OpArgs a
        if address is _MISSING:
            address = flags_or_address
        else:
            flags = flags_or_address
        _get_readable(data, &view)
        try:
            if self._peer_cache is None or not self._peer_cache.find(address, &addr, &a.addrlen):
                parse_address(address, self._family, &addr, &a.addrlen, "sendto")
            a.buf = view.buf
            a.length = view.len
            a.addr = &addr
            a.deadline = -1.0
            return self._perform(OP_SENDTO, &a, flags, False)
        finally:
            PyBuffer_Release(&view)

    def sendmsg(self, buffers, ancdata=(), int flags=0, address=None):
        """Gather several buffers into one message with one syscall; returns
        the bytes sent.  ``ancdata`` is ``[(level, type, data), ...]``."""
        cdef Vectors vec
        cdef zs_msghdr msg
        cdef sockaddr_storage addr
        cdef zs_socklen_t addrlen = 0
        cdef char *control = NULL
        cdef size_t control_len = 0
        cdef OpArgs a
        vec.count = 0
        vec.views = vec.stack_views
        vec.iovs = vec.stack_iovs
        try:
            _vectors_acquire(&vec, buffers, False, "sendmsg")
            if address is not None:
                parse_address(address, self._family, &addr, &addrlen, "sendmsg")
            items = ancdata if isinstance(ancdata, (list, tuple)) else list(ancdata)
            if items:
                control = _build_ancillary(items, &control_len)
            memset(&msg, 0, sizeof(msg))
            msg.msg_name = &addr if address is not None else NULL
            msg.msg_namelen = addrlen
            msg.msg_iov = vec.iovs
            msg.msg_iovlen = vec.count
            msg.msg_control = control
            msg.msg_controllen = control_len
            a.msg = &msg
            a.total = vec.total
            a.deadline = -1.0
            return self._perform(OP_SENDMSG, &a, flags, False)
        finally:
            _vectors_release(&vec)
            PyMem_Free(control)

    def sendfile(self, file, offset=0, count=None):
        """Send a file's bytes, with the kernel's zero-copy sendfile where the
        platform has it; the semantics of :meth:`socket.socket.sendfile`."""
        return _sendfile(self, file, offset, count)

    # ------------------------------------------------------- batch datagrams

    cdef Batch *_take_batch(self, Py_ssize_t n) except NULL:
        """The per-socket scratch, or a private one while another thread uses it."""
        if self._batch_busy:
            return _batch_new(n)
        if self._batch == NULL or self._batch.capacity < n:
            _batch_free(self._batch)
            self._batch = NULL
            self._batch = _batch_new(max(n, 16))
        self._batch_busy = True
        return self._batch

    cdef void _give_back_batch(self, Batch *b) noexcept:
        if b == self._batch:
            self._batch_busy = False
        else:
            _batch_free(b)

    def recv_many(self, buffers, int flags=0):
        """Receive up to ``len(buffers)`` datagrams, one into each writable
        buffer, with one ``recvmmsg`` call where the platform has it.

        Waits (as ``recvfrom_into`` does) for the first datagram only, then
        takes what is already queued; returns ``[(nbytes, address), ...]``.
        A run of datagrams from one peer shares one address object.
        """
        cdef Py_ssize_t count, got = 0, i, received
        cdef Batch *b
        cdef OpArgs a
        parts = buffers if isinstance(buffers, (list, tuple)) else list(buffers)
        count = len(parts)
        if count == 0:
            return []
        if count > INT_MAX:
            raise ValueError("too many buffers")
        if self._check_open() < 0:
            _propagate()
        b = self._take_batch(count)
        try:
            for i in range(count):
                _get_writable(parts[i], &b.views[i], "recv_many")
                got += 1
                zs_iov_set(&b.iovs[i], b.views[i].buf, b.views[i].len)
            a.batch = b
            a.count = <unsigned int>count
            a.deadline = -1.0
            received = self._perform(OP_RECVMMSG, &a, flags, False)
            result = []
            for i in range(received):
                result.append((b.hdrs[i].msg_len,
                               self._peer(&b.addrs[i], b.hdrs[i].msg_hdr.msg_namelen)))
            return result
        finally:
            for i in range(got):
                PyBuffer_Release(&b.views[i])
            self._give_back_batch(b)

    def send_many(self, datagrams, int flags=0):
        """Send datagrams with one ``sendmmsg`` call where the platform has it;
        each is a buffer (to the connected peer) or a ``(buffer, address)``
        pair.  Returns how many were sent: fewer than given when the send
        buffer fills after the first."""
        cdef Py_ssize_t count, got = 0, i
        cdef zs_socklen_t addrlen
        cdef Batch *b
        cdef OpArgs a
        items = datagrams if isinstance(datagrams, (list, tuple)) else list(datagrams)
        count = len(items)
        if count == 0:
            return 0
        if count > INT_MAX:
            raise ValueError("too many datagrams")
        if self._check_open() < 0:
            _propagate()
        b = self._take_batch(count)
        try:
            for i in range(count):
                item = items[i]
                memset(&b.hdrs[i], 0, sizeof(zs_mmsghdr))
                if isinstance(item, tuple):
                    if len(<tuple>item) != 2:
                        raise TypeError("a datagram is a buffer or a (buffer, address) pair")
                    data, address = <tuple>item
                    if (self._peer_cache is None
                            or not self._peer_cache.find(address, &b.addrs[i], &addrlen)):
                        parse_address(address, self._family, &b.addrs[i], &addrlen, "send_many")
                    b.hdrs[i].msg_hdr.msg_name = &b.addrs[i]
                    b.hdrs[i].msg_hdr.msg_namelen = addrlen
                else:
                    data = item
                _get_readable(data, &b.views[i])
                got += 1
                zs_iov_set(&b.iovs[i], b.views[i].buf, b.views[i].len)
                b.hdrs[i].msg_hdr.msg_iov = &b.iovs[i]
                b.hdrs[i].msg_hdr.msg_iovlen = 1
            a.batch = b
            a.count = <unsigned int>count
            a.deadline = -1.0
            return self._perform(OP_SENDMMSG, &a, flags, False)
        finally:
            for i in range(got):
                PyBuffer_Release(&b.views[i])
            self._give_back_batch(b)

    # ------------------------------------------------------ connection set-up

    def bind(self, address):
        """Bind to a local address."""
        cdef sockaddr_storage addr
        cdef zs_socklen_t addrlen
        parse_address(address, self._family, &addr, &addrlen, "bind")
        if self._check_open() < 0:
            _propagate()
        if bind(self.fd, <sockaddr *>&addr, addrlen) != 0:
            raise_os_error(zs_last_error())

    def listen(self, backlog=None):
        """Accept connections; ``backlog`` defaults to min(SOMAXCONN, 128)."""
        cdef int n = _DEFAULT_BACKLOG if backlog is None else max(<int>backlog, 0)
        if self._check_open() < 0:
            _propagate()
        if listen(self.fd, n) != 0:
            raise_os_error(zs_last_error())

    def accept(self):
        """Accept a connection: ``(Socket, address)``.  The new socket is
        close-on-exec and blocking unless a default timeout is set, as in the
        standard library."""
        cdef sockaddr_storage addr
        cdef zs_socklen_t addrlen
        cdef zs_sock_t fd, conn
        cdef double deadline = -1.0
        cdef Socket sock
        if self._check_open() < 0:
            _propagate()
        while True:
            fd = self.fd
            addrlen = sizeof(addr)
            if self._timeout < 0:
                with nogil:
                    conn = zs_accept(fd, <sockaddr *>&addr, &addrlen)
            else:
                conn = zs_accept(fd, <sockaddr *>&addr, &addrlen)
            if conn != ZS_INVALID_SOCKET:
                break
            if self._retry_or_raise(zs_last_error(), 0, &deadline) < 0:
                _propagate()
        sock = Socket.__new__(Socket)
        sock.fd = conn  # owned from here: closed by dealloc if anything below fails
        sock._family = self._family
        sock._type = self._type
        sock._proto = self._proto
        sock._apply_default_timeout()
        return sock, make_address(<sockaddr *>&addr, addrlen, self._family)

    cdef int _connect(self, object address, bint raising, str caller) except -1:
        """connect(), or with ``raising`` false, connect_ex()'s error code."""
        cdef sockaddr_storage addr
        cdef zs_socklen_t addrlen
        cdef int rc, err = 0
        cdef zs_sock_t fd
        cdef bint wait
        parse_address(address, self._family, &addr, &addrlen, caller)
        if self._check_open() < 0:
            return -1
        fd = self.fd
        if self._timeout < 0:
            with nogil:
                rc = connect(fd, <sockaddr *>&addr, addrlen)
        else:
            rc = connect(fd, <sockaddr *>&addr, addrlen)
        if rc == 0:
            return 0
        err = zs_last_error()
        if err == ZS_EINTR:
            # PEP 475: an interrupted connect goes on in the background; wait for it.
            if _check_signals() < 0:
                return -1
            wait = self._timeout != 0
        else:
            wait = self._timeout > 0 and err == ZS_EINPROGRESS
        if wait:
            if self._wait(1, -1.0 if self._timeout < 0 else zs_monotonic() + self._timeout) < 0:
                if raising or not PyErr_ExceptionMatches(_timeout_error):
                    return -1
                PyErr_Clear()
                return ZS_EWOULDBLOCK
            if zs_connect_result(self.fd, &err) != 0:
                err = zs_last_error()
        if err and raising:
            raise_os_error(err)
        return err

    def connect(self, address):
        """Connect to a remote address (waits up to the timeout)."""
        self._connect(address, True, "connect")

    def connect_ex(self, address):
        """``connect`` that returns an error code instead of raising it."""
        return self._connect(address, False, "connect_ex")

    def shutdown(self, int how):
        """Shut down reading (SHUT_RD), writing (SHUT_WR) or both (SHUT_RDWR)."""
        if self._check_open() < 0:
            _propagate()
        if shutdown(self.fd, how) != 0:
            raise_os_error(zs_last_error())

    cdef object _name(self, _name_getter getter):
        cdef sockaddr_storage addr
        cdef zs_socklen_t addrlen = sizeof(addr)
        if self._check_open() < 0:
            _propagate()
        memset(&addr, 0, sizeof(addr))
        if getter(self.fd, <sockaddr *>&addr, &addrlen) != 0:
            raise_os_error(zs_last_error())
        return make_address(<sockaddr *>&addr, addrlen, self._family)

    def getsockname(self):
        """The local address."""
        return self._name(getsockname)

    def getpeername(self):
        """The remote address."""
        return self._name(getpeername)

    # ---------------------------------------------------------------- options

    def setsockopt(self, int level, int option, value, optlen=None):
        """Set an option from an int, a bytes-like value, or ``None`` with ``optlen``."""
        cdef int flag
        cdef Py_buffer view
        cdef int rc
        cdef unsigned int length
        if self._check_open() < 0:
            _propagate()
        if optlen is not None:
            # Any int, masked to 32 bits, as the standard library's "I" format
            # (which reads it, and warns on 3.15, before it looks at the value).
            length = uint_format(optlen)
            if value is not None:
                raise TypeError("setsockopt() with optlen takes None as the value")
            rc = setsockopt(self.fd, level, option, NULL, <zs_socklen_t>length)
        elif isinstance(value, int):
            if not INT_MIN <= value <= INT_MAX:
                if INT_OPTION_OVERFLOWS:
                    raise OverflowError("signed integer is greater than maximum" if value > 0
                                        else "signed integer is less than minimum")
                # The standard library tries an int, then a buffer: what it reports.
                raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'")
            flag = value
            rc = setsockopt(self.fd, level, option, &flag, sizeof(flag))
        else:
            _get_readable(value, &view)
            try:
                rc = setsockopt(self.fd, level, option, view.buf, <zs_socklen_t>view.len)
            finally:
                PyBuffer_Release(&view)
        if rc != 0:
            raise_os_error(zs_last_error())

    def getsockopt(self, int level, int option, int buflen=0):
        """An option as an int, or as bytes of at most ``buflen``."""
        cdef int flag = 0
        cdef zs_socklen_t length
        cdef char raw[1024]
        if self._check_open() < 0:
            _propagate()
        if buflen == 0:
            length = sizeof(flag)
            if getsockopt(self.fd, level, option, &flag, &length) != 0:
                raise_os_error(zs_last_error())
            return flag
        if buflen < 0 or buflen > 1024:
            raise OSError("getsockopt buflen out of range")
        length = buflen
        if getsockopt(self.fd, level, option, raw, &length) != 0:
            raise_os_error(zs_last_error())
        return PyBytes_FromStringAndSize(raw, length)


# ----------------------------------------------------------- ancillary data

cdef tuple _ancillary_item(object item):
    """``(level, type, data)`` checked as the standard library checks it: a
    sequence of three (not bytes), two C ints, a bytes-like object."""
    cdef int level, kind
    if isinstance(item, (bytes, bytearray)) or not PySequence_Check(item) or len(item) != 3:
        raise TypeError("[sendmsg() ancillary data items]() argument must be "
                        "a sequence of length 3")
    level = _index(item[0])
    kind = _index(item[1])
    return level, kind, bytes(memoryview(item[2]))


cdef char *_build_ancillary(list_or_tuple, size_t *out_len) except NULL:
    """A control buffer holding ``[(level, type, data), ...]``."""
    cdef size_t total = 0
    cdef Py_buffer view
    cdef zs_msghdr msg
    cdef cmsghdr *c
    cdef char *control
    items = [_ancillary_item(item) for item in list_or_tuple]
    for _, _, data in items:
        total += zs_cmsg_space(len(data))
    control = <char *>PyMem_Malloc(total)
    if control == NULL:
        raise MemoryError()
    memset(control, 0, total)
    memset(&msg, 0, sizeof(msg))
    msg.msg_control = control
    msg.msg_controllen = total
    c = zs_cmsg_first(&msg)
    for level, kind, data in items:
        if c == NULL:
            PyMem_Free(control)
            raise OSError(ZS_EINVAL, "ancillary data does not fit")
        c.cmsg_level = level
        c.cmsg_type = kind
        c.cmsg_len = zs_cmsg_len(len(data))
        memcpy(zs_cmsg_data(c), PyBytes_AS_STRING(data), len(data))
        c = zs_cmsg_next(&msg, c)
    out_len[0] = total
    return control


cdef list _parse_ancillary(zs_msghdr *msg):
    """``[(level, type, data), ...]`` from a received control buffer, with data
    clipped to what the kernel actually wrote (it truncates on MSG_CTRUNC)."""
    cdef list result = []
    cdef cmsghdr *c
    cdef char *end
    cdef char *data
    cdef Py_ssize_t length
    if msg.msg_control == NULL or msg.msg_controllen == 0:
        return result
    end = <char *>msg.msg_control + msg.msg_controllen
    c = zs_cmsg_first(msg)
    while c != NULL:
        data = <char *>zs_cmsg_data(c)
        if data > end:
            break
        length = <Py_ssize_t>c.cmsg_len - <Py_ssize_t>zs_cmsg_len(0)
        if length < 0:
            break
        if data + length > end:
            length = end - data
        result.append((c.cmsg_level, c.cmsg_type, PyBytes_FromStringAndSize(data, length)))
        c = zs_cmsg_next(msg, c)
    return result


socketpair, create_connection, create_server, fromfd = bind_factories(Socket)
