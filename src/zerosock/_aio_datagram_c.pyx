# cython: language_level=3
"""The C datagram transport of zerosock.aio: the standard library's selector
datagram transport, same semantics on each Python version, with its read and
write paths in C.

A readiness event reads a batch of datagrams with one ``recvmmsg`` and hands
them to ``datagram_received`` one by one, in order; ``sendto`` sends at once
when nothing is queued, and the queue leaves in one ``sendmmsg`` call.

On a loop's io_uring, UDP transports run on its completions instead
(``RingDatagramCore``): a multishot ``recvmsg`` into provided buffers and
``sendmsg`` batches submitted with the loop's next wait."""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.contextvars cimport PyContext_Enter, PyContext_Exit
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.errno cimport errno
cdef extern from "<errno.h>":
    enum: ECANCELED
from libc.stdint cimport int32_t, uint32_t
from libc.string cimport memcpy, memset

import collections
import sys
from asyncio import constants, futures, transports, trsock
from asyncio.log import logger

from zerosock._aio_ring_c cimport (RingPoller, give_back_slot, zs_upoll, zs_urecv,
                                  zs_ustream_busy, zs_ustream_flush_later, zs_ustream_pending,
                                  zs_ustream_receiving, zs_ustream_recv_start,
                                  zs_ustream_recv_stop, zs_ustream_release,
                                  zs_ustream_send_cancel, zs_ustream_take)
from zerosock._aio_ring_c import ring_of
from zerosock._aio_transport_c cimport IOHandle, TransportCore, facade_core, new_io_handle
from zerosock._aio_transport_c import close_unclosed, core_facade
from zerosock._cmethod_c cimport METH_FASTCALL, METH_KEYWORDS, c_method
from zerosock._cpython_c cimport zs_slot_offset
from zerosock._shim cimport (
    AF_INET, AF_INET6, ZS_EINTR, sockaddr, sockaddr_storage, zs_iov_set, zs_iovec,
    zs_is_would_block, zs_last_error, zs_mmsghdr, zs_recvmmsg, zs_send, zs_sendmmsg,
    zs_sendto, zs_socklen_t, zs_strerror,
)
from zerosock._sockaddr_c cimport AddressCache, parse_address

cdef enum:
    MAX_SIZE = 256 * 1024     # the stdlib's max_size: what one datagram read takes
    IP_SLOT = 64 * 1024       # an IP datagram's length field is 16 bits: none is longer
    BATCH = 32                # datagrams per readiness event, and per sendmmsg
    # One read slot of MAX_SIZE and BATCH - 1 of IP_SLOT.
    SCRATCH = MAX_SIZE + (BATCH - 1) * IP_SLOT

cdef extern from "zs_uring_poll.h" nogil:
    enum:
        ZS_UDGRAM_ROOM
        ZS_UDGRAM_NAME_ROOM
        ZS_UDGRAM_BATCH
        ZS_UDGRAM_NAME_AT
        ZS_UDGRAM_DATA_AT
    ctypedef struct zs_udgram_header:
        uint32_t namelen
        uint32_t payloadlen
    ctypedef struct zs_udgram_out:
        const void *buf
        size_t len
        const void *name
        uint32_t namelen
    int zs_udgram_open(zs_upoll *p, int fd)
    int zs_udgram_send(zs_upoll *p, int slot, const zs_udgram_out *out, int n)
    int zs_udgram_results(const zs_upoll *p, int slot, const int32_t **res)
    void zs_udgram_results_taken(zs_upoll *p, int slot)
    int zs_udgram_recv_restart(zs_upoll *p, int slot)
    const char *zs_udgram_data(const zs_upoll *p, int32_t bid)
    void zs_udgram_put(zs_upoll *p, int32_t bid)

cdef object _IGNORED = object()  # sendto()'s datagram goes nowhere
cdef object _TransportSocket = trsock.TransportSocket
cdef object _set_result_unless_cancelled = futures._set_result_unless_cancelled
cdef int LOG_THRESHOLD = constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
# Versions differ: 3.13 sends empty datagrams (older ones drop them) and counts
# 8 header bytes per queued datagram; 3.11 added pause_reading() and a
# running _buffer_size (3.9/3.10 sum the queue, which is the same number).
cdef bint DROPS_EMPTY = sys.version_info < (3, 13)
cdef Py_ssize_t HEADER_SIZE = 8 if sys.version_info >= (3, 13) else 0
cdef bint CAN_PAUSE_READING = sys.version_info >= (3, 11)
cdef bint LEN_OF_ARGUMENT = sys.version_info >= (3, 11)

# Datagrams are copied out into bytes before any Python code runs, so one
# scratch area serves every transport of the process; a second thread that
# finds it in use (a finalizer may run Python code) takes a private one.
cdef char *_scratch = NULL
cdef bint _scratch_busy = False


cdef inline object _os_error(int err):
    # OSError(errno, text) is the subclass the socket module would raise.
    return OSError(err, zs_strerror(err).decode("utf-8", "replace"))


cdef class DatagramCore(TransportCore):
    """The state and the C paths of one :class:`DatagramSocketTransport`.

    It is a stream TransportCore for what the two share (the loop's I/O
    handles, flow control, closing); reading and writing are its own."""

    cdef public object _address
    cdef public Py_ssize_t max_size
    cdef int _family
    cdef bint _connected         # a peer name: send() rather than sendto()
    cdef bint _batch_writes      # flush the queue with sendmmsg
    cdef AddressCache _peers
    # Datagrams read but not yet delivered (the protocol paused reading
    # mid-batch): data and address alternating, [_next, _end) pending.
    cdef list _pending
    cdef Py_ssize_t _next
    cdef Py_ssize_t _end

    def __init__(self, owner, loop, sock, protocol, address=None, waiter=None, extra=None):
        self._queue = collections.deque()  # datagrams queue often: kept for the life of it
        self._attach(owner, loop, sock, protocol, extra)
        self._family = sock.family
        self._server = None
        loop._transports[self._sock_fd] = owner
        self._address = address
        self._connected = bool(self._extra["peername"])
        # sendmmsg() drops the error of a datagram after the first: fine where
        # errors are the datagram's own, not where a connected IP socket's
        # pending ICMP error (for error_received) could be the one dropped.
        self._batch_writes = not (self._connected and self._family in (AF_INET, AF_INET6))
        self.max_size = MAX_SIZE
        self._peers = AddressCache()
        self._pending = [None] * (2 * BATCH)
        loop.call_soon(protocol.connection_made, owner)
        # Start reading only once connection_made() has run.
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    # -- closing: the stdlib's checks are on the queue, not its size ---------------

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._drop_pending()
        self._loop._remove_reader(self._sock_fd)
        if not self._queue:
            self._conn_lost += 1
            self._loop._remove_writer(self._sock_fd)
            self._loop.call_soon(self._call_connection_lost, None)

    cdef bint _drop_queued(self) except -1:
        self._drop_pending()
        if not self._queue:
            return False
        # The stdlib leaves _buffer_size as it was (3.9/3.10 sum the now empty queue).
        self._queue.clear()
        if not LEN_OF_ARGUMENT:
            self._buffer_size = 0
        return True

    def _call_connection_lost(self, exc):
        self._drop_pending()
        TransportCore._call_connection_lost(self, exc)

    def _start_reading(self):
        if self._closing or self._paused:
            return
        self._add_io(False)
        if self._next < self._end:
            # Datagrams read before a pause come first; the socket may not signal again.
            self._loop.call_soon(self._deliver_pending)

    # -- reading ----------------------------------------------------------------------

    def _read_ready(self):
        self.read_ready()

    def _deliver_pending(self):
        if not self._conn_lost:
            self._deliver()

    cdef int read_ready(self) except -1:
        if self._conn_lost:
            return 0
        if self._next < self._end:
            return self._deliver()
        try:
            failure = self._receive()
        except BaseException as exc:
            return self._failed(exc, "Fatal read error on datagram transport")
        if failure is not None:
            # As the stdlib: an OSError of the read (an ICMP error) goes to the protocol.
            self._protocol.error_received(failure)
            return 0
        return self._deliver()

    cdef object _receive(self):
        """Read what one recvmmsg gives into _pending; the OSError of the read, if any."""
        global _scratch, _scratch_busy
        cdef zs_mmsghdr hdrs[BATCH]
        cdef zs_iovec iovs[BATCH]
        cdef sockaddr_storage names[BATCH]
        cdef Py_ssize_t big = self.max_size, small, count, i, offset
        cdef char *area
        cdef bint private = False
        cdef int got, err
        if big <= 0:
            raise ValueError("max_size must be positive")  # recvfrom()'s complaint
        # Slots after the first only where no datagram can be longer than
        # they are (or longer than max_size, which truncates as the stdlib does).
        small = min(big, <Py_ssize_t>IP_SLOT) if self._family in (AF_INET, AF_INET6) else big
        if big > SCRATCH:
            count = 1
        else:
            count = min(<Py_ssize_t>BATCH, 1 + (SCRATCH - big) // small)
        if _scratch_busy or big > SCRATCH:
            area = <char *>PyMem_RawMalloc(<size_t>(big if big > SCRATCH else SCRATCH))
            private = True
        else:
            if _scratch == NULL:
                _scratch = <char *>PyMem_RawMalloc(SCRATCH)
            area = _scratch
            _scratch_busy = True
        if area == NULL:
            if not private:
                _scratch_busy = False
            raise MemoryError()
        try:
            offset = 0
            for i in range(count):
                memset(&hdrs[i], 0, sizeof(zs_mmsghdr))
                zs_iov_set(&iovs[i], area + offset, <size_t>(big if i == 0 else small))
                offset += big if i == 0 else small
                hdrs[i].msg_hdr.msg_name = &names[i]
                hdrs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
                hdrs[i].msg_hdr.msg_iov = &iovs[i]
                hdrs[i].msg_hdr.msg_iovlen = 1
            got = zs_recvmmsg(self._fd, hdrs, <unsigned int>count, 0, 0)
            if got < 0:
                err = zs_last_error()
                if zs_is_would_block(err) or err == ZS_EINTR:
                    return None
                exc = _os_error(err)
            else:
                exc = None
                # Bytes first, while the scratch is ours; then the addresses.
                offset = 0
                for i in range(got):
                    self._pending[2 * i] = PyBytes_FromStringAndSize(area + offset, hdrs[i].msg_len)
                    offset += big if i == 0 else small
        finally:
            if private:
                PyMem_RawFree(area)
            else:
                _scratch_busy = False
        if exc is not None:
            return exc
        for i in range(got):
            self._pending[2 * i + 1] = self._peers.get(<sockaddr *>&names[i],
                                                        hdrs[i].msg_hdr.msg_namelen, self._family)
        self._next = 0
        self._end = got
        return None

    cdef int _deliver(self) except -1:
        """Hand pending datagrams to the protocol in order, as long as the
        stdlib would still be reading (one per event: nothing after close)."""
        cdef Py_ssize_t i
        cdef list pending = self._pending
        while self._next < self._end:
            if self._closing or self._paused or self._conn_lost:
                if not self._paused:
                    self._drop_pending()
                return 0
            i = self._next
            data = pending[2 * i]
            addr = pending[2 * i + 1]
            pending[2 * i] = None
            pending[2 * i + 1] = None
            self._next = i + 1
            try:
                self._protocol.datagram_received(data, addr)
            except (SystemExit, KeyboardInterrupt):
                if self._next < self._end:
                    self._loop.call_soon(self._deliver_pending)
                raise
            except BaseException as exc:
                # The stdlib's handle would report this one; the next datagrams still arrive.
                self._report(exc)
        self._next = self._end = 0
        return 0

    cdef int _drop_pending(self) except -1:
        cdef Py_ssize_t i
        for i in range(2 * self._next, 2 * self._end):
            self._pending[i] = None
        self._next = self._end = 0
        return 0

    cdef int _report(self, object exc) except -1:
        """Report an exception of the protocol as the loop reports one of a handle."""
        handle = self._reads_handle()
        if type(handle) is not IOHandle:
            handle = IOHandle(self, False)
        context = (<IOHandle>handle)._context
        try:
            # Outside the handle's context, as the loop reports it (3.13 runs
            # the handler in that context, which cannot be entered twice).
            PyContext_Exit(context)
        except (TypeError, RuntimeError):
            context = None  # not running in it: from _deliver_pending
        try:
            (<IOHandle>handle).report(exc)
        finally:
            if context is not None:
                PyContext_Enter(context)
        return 0

    cdef object _reads_handle(self):
        """The IOHandle that runs the reads, or None."""
        try:
            return self._loop._selector.get_key(self._sock_fd).data[0]
        except (KeyError, AttributeError, TypeError, IndexError):
            return None

    # -- writing --------------------------------------------------------------------------

    cdef object _sendto_address(self, object data, object addr):
        """sendto()'s checks, as the stdlib's: the address to send to, or
        _IGNORED when the datagram goes nowhere."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if DROPS_EMPTY and not data:
            return _IGNORED
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            if self._conn_lost >= LOG_THRESHOLD:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return _IGNORED
        return addr

    cdef int c_sendto(self, object data, object addr) except -1:
        addr = self._sendto_address(data, addr)
        if addr is not _IGNORED:
            self._sendto_checked(data, addr)
        return 0

    cdef int _sendto_checked(self, object data, object addr) except -1:
        cdef Py_buffer view
        cdef long n
        if not self._queue:
            if self._fd_closed:
                # What the stdlib's call on its closed-and-dropped socket gives.
                self._fatal_error(AttributeError(
                    f"'NoneType' object has no attribute '{'send' if self._connected else 'sendto'}'"),
                    "Fatal write error on datagram transport")
                return 0
            try:
                if PyBytes_CheckExact(data):
                    n = self._send_one(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), addr)
                else:
                    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
                    try:
                        n = self._send_one(<const char *>view.buf, view.len, addr)
                    finally:
                        PyBuffer_Release(&view)
            except OSError as exc:
                self._protocol.error_received(exc)
                return 0
            except BaseException as exc:
                return self._failed(exc, "Fatal write error on datagram transport")
            if n >= 0:
                return 0
            self._add_io(True)
        return self._enqueue(data, addr)

    cdef int _enqueue(self, object data, object addr) except -1:
        # Queued data must not change under us: a bytes object is kept as it is.
        held = data if PyBytes_CheckExact(data) else bytes(data)
        self._queue.append((held, addr))
        self._buffer_size += (len(data) if LEN_OF_ARGUMENT else PyBytes_GET_SIZE(held)) + HEADER_SIZE
        self._pause_check()
        return 0

    cdef long _send_one(self, const char *ptr, Py_ssize_t length, object addr) except -2:
        """Send one datagram now: its size, -1 if the socket would block, or
        raise the OSError the socket module would."""
        cdef sockaddr_storage name
        cdef zs_socklen_t namelen
        cdef long n
        cdef int err
        if self._connected:
            n = zs_send(self._fd, ptr, <size_t>length, 0)
        else:
            self._address_of(addr, &name, &namelen)
            n = zs_sendto(self._fd, ptr, <size_t>length, 0, <sockaddr *>&name, namelen)
        if n >= 0:
            return n
        err = zs_last_error()
        if zs_is_would_block(err) or err == ZS_EINTR:
            return -1
        raise _os_error(err)

    cdef int _address_of(self, object addr, sockaddr_storage *name, zs_socklen_t *namelen) except -1:
        if self._peers.find(addr, name, namelen):
            return 0  # a reply to a recent sender: the address it came from
        return parse_address(addr, self._family, name, namelen, "sendto")

    def _write_ready(self):
        self.write_ready()

    @property
    def queued_size(self):
        return self._buffer_size

    cdef int write_ready(self) except -1:
        """The stdlib's _sendto_ready: send queued datagrams in order until the
        socket would block; many with one sendmmsg."""
        cdef zs_mmsghdr hdrs[BATCH]
        cdef zs_iovec iovs[BATCH]
        cdef sockaddr_storage names[BATCH]
        cdef zs_socklen_t namelen
        cdef int count, sent, i, err
        cdef long n
        cdef list batch
        if self._fd_closed:
            return 0
        queue = self._queue
        while queue:
            # Hold the batch: the iovecs point into these bytes objects.
            batch = []
            failure = None
            for item in queue:
                data, addr = <tuple>item
                count = len(batch)
                memset(&hdrs[count], 0, sizeof(zs_mmsghdr))
                if not self._connected:
                    failure = self._queued_address(addr, &names[count], &namelen)
                    if failure is not None:
                        break  # met when this datagram's turn comes
                    hdrs[count].msg_hdr.msg_name = &names[count]
                    hdrs[count].msg_hdr.msg_namelen = namelen
                zs_iov_set(&iovs[count], PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
                hdrs[count].msg_hdr.msg_iov = &iovs[count]
                hdrs[count].msg_hdr.msg_iovlen = 1
                batch.append(item)
                if len(batch) == BATCH or not self._batch_writes:
                    break
            count = len(batch)
            if count == 0:
                return self._unsendable(failure)
            if count == 1:
                n = zs_send(self._fd, PyBytes_AS_STRING(batch[0][0]),
                            <size_t>PyBytes_GET_SIZE(batch[0][0]), 0) if self._connected else \
                    zs_sendto(self._fd, PyBytes_AS_STRING(batch[0][0]),
                              <size_t>PyBytes_GET_SIZE(batch[0][0]), 0,
                              <sockaddr *>&names[0], hdrs[0].msg_hdr.msg_namelen)
                sent = 1 if n >= 0 else -1
            else:
                sent = zs_sendmmsg(self._fd, hdrs, <unsigned int>count, 0)
            if sent < 0:
                err = zs_last_error()
                if zs_is_would_block(err) or err == ZS_EINTR:
                    break  # try again when writable
                self._pop_one()
                self._protocol.error_received(_os_error(err))
                return 0
            for i in range(sent):
                self._pop_one()
            # A short batch: the next call reports why (or would block).
        self._resume_check()  # may queue more
        if not queue:
            self._loop._remove_writer(self._sock_fd)
            if self._closing and not self._conn_lost:  # else resume_writing closed it
                self._call_connection_lost(None)
        return 0

    cdef object _queued_address(self, object addr, sockaddr_storage *name,
                                zs_socklen_t *namelen):
        """Convert a queued datagram's address: None, or what that raised."""
        try:
            self._address_of(addr, name, namelen)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            return exc
        return None

    cdef int _unsendable(self, object failure) except -1:
        """The queue's first datagram cannot go (its address raised
        ``failure``): dropped and reported as the stdlib's transport does."""
        self._pop_one()
        if isinstance(failure, OSError):
            self._protocol.error_received(failure)
        else:
            self._fatal_error(failure, "Fatal write error on datagram transport")
        return 0

    cdef int _pop_one(self) except -1:
        data, addr = self._queue.popleft()
        self._buffer_size -= PyBytes_GET_SIZE(data) + HEADER_SIZE
        return 0


cdef class RingDatagramCore(DatagramCore):
    """A UDP transport's core on its loop's io_uring completions
    (csrc/zs_uring_poll.c's datagram slots), with the readiness transport's
    semantics: a multishot recvmsg hands each datagram to datagram_received()
    with its address decoded as a read's, its buffer back in the ring at
    once; sendto() queues, and the queue leaves with the loop's next wait as
    one batch of sendmsg (linked, so in order), one batch in flight at a
    time, its bytes held until their completions.  Each result settles its
    datagram as a readiness send would (an OSError to error_received).
    connection_lost comes when the readiness transport's would; the slot is
    given back once the kernel has ended every operation of it."""

    cdef RingPoller ring
    cdef int slot                # the ring's slot, -1 once released
    cdef object handle           # the IOHandle in the ring's handles
    cdef Py_ssize_t in_flight    # the queue's first datagrams: sent, not completed
    cdef Py_ssize_t requeued     # before them: of the batch, cancelled when one failed
    cdef Py_ssize_t flying_size  # what those in flight count in _buffer_size
    cdef object kept             # the queue an abort dropped while sends were in flight
    cdef object held             # (data, addr), or an OSError, received while paused
    cdef bint release_pending    # the slot goes once nothing is in flight

    def __cinit__(self):
        self.slot = -1

    def __init__(self, owner, loop, sock, protocol, address, waiter, extra, RingPoller ring,
                 int slot):
        cdef list handles = ring.handles
        self.ring = ring
        self.slot = slot
        DatagramCore.__init__(self, owner, loop, sock, protocol, address, waiter, extra)
        # What runs the slot's completions, from the start: a sendto() in
        # connection_made() is flushed before reading starts.
        self.handle = new_io_handle(self, False, None)
        while len(handles) <= slot:
            handles.append(None)
        handles[slot] = self.handle

    def __dealloc__(self):
        # Its __init__ failed before its handle was entered: nothing of the slot is in flight.
        if self.handle is None and self._ring_open() and not zs_ustream_busy(self.ring.ring,
                                                                             self.slot):
            zs_ustream_release(self.ring.ring, self.slot)

    cdef inline bint _ring_open(self) noexcept:
        return self.slot >= 0 and self.ring is not None and self.ring.ring != NULL

    cdef object _reads_handle(self):
        return self.handle

    def _polling(self):
        receiving = self._ring_open() and zs_ustream_receiving(self.ring.ring, self.slot)
        return bool(receiving), bool(self._queue)

    # -- reading ------------------------------------------------------------------------

    cdef int _add_io(self, bint writing, object context=None) except -1:
        if not self._ring_open():
            return DatagramCore._add_io(self, writing, context)
        self._loop._check_closed()
        if writing:
            zs_ustream_flush_later(self.ring.ring, self.slot)
            return 0
        if zs_ustream_recv_start(self.ring.ring, self.slot) < 0:
            _raise_errno()
        return 0

    cdef int _remove_io(self, bint writing) except -1:
        if not self._ring_open():
            return DatagramCore._remove_io(self, writing)
        # What the cancelled recvmsg still brings is held (paused) or dropped (closing).
        if not writing and zs_ustream_recv_stop(self.ring.ring, self.slot) < 0:
            _raise_errno()
        return 0

    def _start_reading(self):
        if self._closing or self._paused:
            return
        self._add_io(False)
        if self.held or (self._ring_open() and zs_ustream_pending(self.ring.ring, self.slot)):
            # What arrived before a pause comes first, from the loop as a read would.
            self._loop.call_soon(self._read_ready)

    cdef int read_ready(self) except -1:
        """The slot's completions: the sends' results (what the queue holds
        then is what was sent), then the datagrams received."""
        cdef int32_t results[ZS_UDGRAM_BATCH]
        cdef const int32_t *done
        cdef int n
        if not self._ring_open():
            return 0
        n = zs_udgram_results(self.ring.ring, self.slot, &done)
        if n:
            memcpy(results, done, n * sizeof(int32_t))  # (what Python code runs may wait)
            zs_udgram_results_taken(self.ring.ring, self.slot)
            try:
                self._sent(results, n)
            except BaseException:
                self._read_later()
                raise
        self._deliver_ring()
        if (self.release_pending and self._ring_open()
                and not zs_ustream_busy(self.ring.ring, self.slot)):
            self.release_pending = False
            self._release()
        return 0

    cdef int _deliver_ring(self) except -1:
        cdef zs_urecv got
        cdef zs_upoll *ring
        while self.held and not (self._paused or self._closing or self._conn_lost):
            item = self.held.popleft()
            if isinstance(item, OSError):
                try:
                    self._protocol.error_received(item)
                except BaseException:
                    self._read_later()
                    raise
            else:
                self._give(item)
        item = None
        while self._ring_open():
            ring = self.ring.ring
            if not zs_ustream_take(ring, self.slot, &got):
                return 0
            if got.bid < 0:
                # An error ended the recvmsg: the readiness read's OSError,
                # and reading goes on.
                if zs_udgram_recv_restart(ring, self.slot) < 0:
                    _raise_errno()
                if self._closing or self._conn_lost:
                    continue
                if self._paused or self.held:
                    self._hold(_os_error(-got.res))
                    continue
                try:
                    self._protocol.error_received(_os_error(-got.res))
                except BaseException:
                    self._read_later()
                    raise
                continue
            if self._closing or self._conn_lost:
                zs_udgram_put(ring, got.bid)
                continue
            try:
                item = self._datagram_of(zs_udgram_data(ring, got.bid), got.res)
            except BaseException as exc:
                return self._failed(exc, "Fatal read error on datagram transport")
            finally:
                zs_udgram_put(ring, got.bid)
            if self._paused or self.held:
                self._hold(item)
            else:
                self._give(item)
            item = None
        return 0

    cdef object _datagram_of(self, const char *buf, int32_t used):
        """(data, addr) of a received datagram's buffer, cut to max_size as
        recvfrom(max_size) cuts it; the address as a read decodes it."""
        cdef const zs_udgram_header *header = <const zs_udgram_header *>buf
        cdef Py_ssize_t size = used - ZS_UDGRAM_DATA_AT
        cdef zs_socklen_t namelen = header.namelen
        if self.max_size <= 0:
            raise ValueError("max_size must be positive")  # recvfrom()'s complaint
        if size > self.max_size:
            size = self.max_size
        if namelen > ZS_UDGRAM_NAME_ROOM:
            namelen = ZS_UDGRAM_NAME_ROOM
        data = PyBytes_FromStringAndSize(buf + ZS_UDGRAM_DATA_AT, size)
        return data, self._peers.get(<const sockaddr *>(buf + ZS_UDGRAM_NAME_AT), namelen,
                                     self._family)

    cdef int _give(self, tuple item) except -1:
        try:
            self._protocol.datagram_received(<object>item[0], <object>item[1])
        except (SystemExit, KeyboardInterrupt):
            self._read_later()
            raise
        except BaseException as exc:
            # The stdlib's handle would report this one; the next datagrams still arrive.
            self._report(exc)
        return 0

    cdef int _read_later(self) except -1:
        """An exception stops the delivery: what is left comes from the loop
        (the slot may see no other completion to run it)."""
        if self._loop is not None and (self.held or (
                self._ring_open() and zs_ustream_pending(self.ring.ring, self.slot))):
            self._loop.call_soon(self._read_ready)
        return 0

    cdef int _hold(self, object item) except -1:
        if self.held is not None:
            self.held.append(item)
        else:
            self.held = collections.deque((item,))
        return 0

    # -- writing ------------------------------------------------------------------------

    cdef int c_sendto(self, object data, object addr) except -1:
        cdef sockaddr_storage name
        cdef zs_socklen_t namelen
        addr = self._sendto_address(data, addr)
        if addr is _IGNORED:
            return 0
        if self._conn_lost or not self._ring_open():
            return self._sendto_checked(data, addr)
        if len(self._queue) == self.in_flight and not self._connected:
            # The readiness transport would send it now: what its address
            # raises comes now too.
            try:
                self._address_of(addr, &name, &namelen)
            except OSError as exc:
                self._protocol.error_received(exc)
                return 0
            except BaseException as exc:
                return self._failed(exc, "Fatal write error on datagram transport")
        if not self.in_flight:
            zs_ustream_flush_later(self.ring.ring, self.slot)
        return self._enqueue(data, addr)

    cdef int write_ready(self) except -1:
        """Queue the next batch of the queue's datagrams for the loop's next
        wait (RingPoller.flush_writes), when none is in flight."""
        cdef zs_udgram_out out[ZS_UDGRAM_BATCH]
        cdef sockaddr_storage names[ZS_UDGRAM_BATCH]
        cdef Py_ssize_t sizes[ZS_UDGRAM_BATCH]
        cdef zs_socklen_t namelen
        cdef int count, n, i
        if not self._ring_open():
            return DatagramCore.write_ready(self)
        if self.in_flight or self._conn_lost or self._fd_closed:
            return 0
        queue = self._queue
        while queue:
            # The queue holds what the buffers point into (changing it while
            # the batch is built stops the iteration with an error).
            count = 0
            failure = None
            for item in queue:
                data = <object>PyTuple_GET_ITEM(item, 0)
                addr = <object>PyTuple_GET_ITEM(item, 1)
                if self._connected:
                    out[count].name = NULL
                    out[count].namelen = 0
                else:
                    failure = self._queued_address(addr, &names[count], &namelen)
                    if failure is not None:
                        break  # met when this datagram's turn comes
                    out[count].name = &names[count]
                    out[count].namelen = namelen
                out[count].buf = PyBytes_AS_STRING(data)
                out[count].len = <size_t>PyBytes_GET_SIZE(data)
                sizes[count] = PyBytes_GET_SIZE(data) + HEADER_SIZE
                count += 1
                if count == ZS_UDGRAM_BATCH:
                    break
            data = addr = item = None
            if count == 0:
                # As on readiness, and the rest at the next wait.
                zs_ustream_flush_later(self.ring.ring, self.slot)
                return self._unsendable(failure)
            n = zs_udgram_send(self.ring.ring, self.slot, out, count)
            if n < 0:
                self._fatal_error(_os_error(errno), "Fatal write error on datagram transport")
                return 0
            self.in_flight = n
            self.flying_size = 0
            for i in range(n):
                self.flying_size += sizes[i]
            return 0
        return 0

    cdef bint settle_ring(self) except -1:
        """Settle the sends' results here when every one went and nothing
        waits on them (no receive to deliver, no writer paused, no close, no
        failed one): what _sent does, running no Python code.  Whether the
        slot has nothing left to run (see RingPoller)."""
        cdef const int32_t *done
        cdef int n, i
        if (not self._ring_open() or self.release_pending or self.held or self._closing
                or self._protocol_paused or self.requeued
                or zs_ustream_pending(self.ring.ring, self.slot)):
            return False
        n = zs_udgram_results(self.ring.ring, self.slot, &done)
        for i in range(n):
            if done[i] < 0:
                return False
        zs_udgram_results_taken(self.ring.ring, self.slot)
        self._went(n)
        if not self.in_flight and self._queue:
            zs_ustream_flush_later(self.ring.ring, self.slot)
        return True

    cdef int _went(self, int n) except -1:
        """The queue's first ``n`` datagrams went: out of the queue (a bytes
        and its address each: dropping them runs no Python code)."""
        if n == self.in_flight and len(self._queue) == n:
            self._queue.clear()  # the whole batch, the common case
            self._buffer_size -= self.flying_size
        else:
            for _ in range(n):
                self._pop_one()
        self.in_flight -= n
        if not self.in_flight:
            self.flying_size = 0
        return 0

    cdef int _sent(self, const int32_t *results, int n) except -1:
        """Settle the datagrams of these send results, in order: the readiness
        send's outcome for each (an OSError to error_received); those the
        failure of one before them cancelled stay queued, to go again."""
        cdef int i
        cdef int32_t res
        failures = None
        for i in range(n):
            if results[i] < 0:
                break
        else:
            if self.kept is None:
                self._went(n)  # (all went: at once)
                n = 0
        for i in range(n):
            res = results[i]
            self.in_flight -= 1
            if self.kept is not None:  # aborted: the queue is gone
                continue
            if res == -ECANCELED:
                self.requeued += 1
                continue
            self._pop_one()
            if res < 0:
                if failures is None:
                    failures = []
                failures.append(_os_error(-res))
        # Each result counted first: what the protocol does or raises then
        # cannot leave the queue's count behind.
        try:
            if failures is not None:
                for exc in failures:
                    self._protocol.error_received(exc)
        finally:
            self._after_sends()
        return 0

    cdef int _after_sends(self) except -1:
        """What follows the results: the next batch, or the end of a close."""
        if self.in_flight:
            return 0
        self.kept = None
        self.flying_size = 0
        self.requeued = 0
        if self._conn_lost:
            return 0
        self._resume_check()  # may queue more
        if self._queue:
            if self._ring_open():
                zs_ustream_flush_later(self.ring.ring, self.slot)
        elif self._closing:
            self._call_connection_lost(None)
        return 0

    # -- closing ------------------------------------------------------------------------

    def close(self):
        if self._closing:
            return
        self._closing = True
        self.held = None
        self._remove_io(False)
        if not self._queue:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    cdef bint _drop_queued(self) except -1:
        self.held = None
        if self.in_flight:
            # The kernel reads these until their sends complete or are cancelled.
            self.kept = self._queue
            self._queue = collections.deque(self.kept)
            if self._ring_open() and zs_ustream_send_cancel(self.ring.ring, self.slot) < 0:
                _raise_errno()
        return DatagramCore._drop_queued(self)

    def _call_connection_lost(self, exc):
        try:
            DatagramCore._call_connection_lost(self, exc)
        finally:
            self._release()

    cdef int _release(self) except -1:
        """The slot back, as a stream's (RingTransportCore._release): now, or
        once the operations cancelled have ended."""
        self.held = None
        if self._ring_open() and not give_back_slot(self.ring, self.slot):
            self.release_pending = True  # (read_ready gives it back once they ended)
            return 0
        self.slot = -1
        self.kept = None
        return 0


cdef int _raise_errno() except -1:
    raise _os_error(errno)


cdef object _ring_slot(object loop, object sock):
    """(ring, slot) for a datagram transport of ``loop`` on ``sock`` on its
    io_uring's completions, or None: readiness (another kind of loop, a
    family whose datagrams may exceed the ring's buffers, or a ring that
    cannot take the socket)."""
    cdef RingPoller ring
    cdef int slot
    if sock.family not in (AF_INET, AF_INET6):
        return None  # (a Unix datagram may be longer than any IP one)
    ring = ring_of(loop)
    if ring is None or ring.ring == NULL:
        return None
    slot = zs_udgram_open(ring.ring, sock.fileno())
    if slot < 0:
        return None
    return ring, slot


cdef Py_ssize_t CORE_OFFSET  # where a DatagramSocketTransport keeps its _core
cdef type _DatagramTransportType


cdef inline DatagramCore _core_of(object transport):
    """``transport._core`` of a DatagramSocketTransport."""
    return <DatagramCore>facade_core(transport, _DatagramTransportType, CORE_OFFSET, DatagramCore)


def sendto(self, data, addr=None):
    """What the C method below hands the calls it does not take apart itself
    (keywords, a wrong count): Python's checks and messages."""
    _core_of(self).c_sendto(data, addr)


cdef object _sendto_with_arguments = sendto
del sendto


# sendto() as a C method of DatagramSocketTransport (see _cmethod_c): called
# for every datagram a protocol sends, without building arguments or looking
# up ``_core``.
cdef object _sendto(object transport, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    if kwnames == NULL and 1 <= nargs <= 2:
        _core_of(transport).c_sendto(<object>args[0], <object>args[1] if nargs == 2 else None)
        return None
    positional = tuple([<object>args[i] for i in range(nargs)])
    keywords = {}
    if kwnames != NULL:
        for i, key in enumerate(<tuple>kwnames):
            keywords[key] = <object>args[nargs + i]
    return _sendto_with_arguments(transport, *positional, **keywords)


@core_facade(
    methods=("_start_reading", "_read_ready", "_write_ready", "_fatal_error", "_force_close",
             "_call_connection_lost"),
    # The stdlib transport's attributes that the loop and tests read.
    states=("_loop", "_protocol", "_sock", "_sock_fd", "_server", "_extra", "_address",
            "_closing", "_paused", "_conn_lost", "_protocol_connected",
            "_protocol_paused", "_high_water", "_low_water"))
class DatagramSocketTransport(transports._FlowControlMixin, transports.Transport,
                              transports.DatagramTransport):
    """A datagram transport over a non-blocking socket: an
    ``asyncio.DatagramTransport`` whose state and I/O paths are a C :class:`DatagramCore`.

    What the stdlib's datagram transport inherits from ``asyncio.transports``
    (``get_extra_info``, the write buffer limits) it inherits too."""

    __slots__ = ("_core", "__weakref__", "__dict__")

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        on_ring = _ring_slot(loop, sock)
        if on_ring is None:
            self._core = DatagramCore(self, loop, sock, protocol, address, waiter, extra)
        else:
            self._core = RingDatagramCore(self, loop, sock, protocol, address, waiter, extra,
                                          *on_ring)

    sendto = c_method(<void *>_sendto, METH_FASTCALL | METH_KEYWORDS,
                      b"sendto($self, data, addr=None)\n--\n\n"
                      b"Send a datagram to addr (the connected peer when None): at once "
                      b"as far as the socket takes it, else queued.")

    def is_closing(self):
        return _core_of(self)._closing

    def get_write_buffer_size(self):
        cdef DatagramCore core = _core_of(self)
        if not LEN_OF_ARGUMENT:
            return sum(len(data) for data, _ in core._queue)
        return core._buffer_size

    def get_protocol(self):
        return _core_of(self)._protocol

    def set_protocol(self, protocol):
        _core_of(self).set_protocol(protocol)

    def close(self):
        self._core.close()

    def abort(self):
        self._core._force_close(None)

    @property
    def max_size(self):
        return _core_of(self).max_size

    @max_size.setter
    def max_size(self, value):
        _core_of(self).max_size = value

    @property
    def _buffer(self):
        return _core_of(self)._queue

    def __repr__(self):
        return self._core._describe(type(self).__name__)

    def __del__(self):
        close_unclosed(self)

    def _sendto_ready(self):
        self._core._write_ready()

    @property
    def _buffer_size(self):
        return _core_of(self).queued_size

    if CAN_PAUSE_READING:
        def is_reading(self):
            cdef DatagramCore core = _core_of(self)
            return not core._closing and not core._paused

        def pause_reading(self):
            self._core.pause_reading()

        def resume_reading(self):
            self._core.resume_reading()


_DatagramTransportType = DatagramSocketTransport
CORE_OFFSET = zs_slot_offset(DatagramSocketTransport.__dict__["_core"])
