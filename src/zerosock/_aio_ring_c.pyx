# cython: language_level=3
"""The event loop's io_uring (csrc/zs_uring_poll.c): readiness of the loop's
descriptors through a ring, as the poller of a selector, so that the loop
core, add_reader/add_writer, TLS and Unix datagram transports run on it
unchanged; and plain stream transports on completions in the same ring (UDP
ones too: _aio_datagram_c's RingDatagramCore) -- a multishot
recv into provided buffers the streams share, sends submitted with the next
wait -- so that the wait, which takes the loop's timer timeout, is the one
system call of an iteration.  The loop that waits is the only thread that
touches it."""

from cpython.buffer cimport PyBuffer_Release
from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize,
                           PyBytes_GET_SIZE)
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_REFCNT
from libc.errno cimport EBADF, EINVAL, EOPNOTSUPP, errno
from libc.stdint cimport int32_t, uint64_t
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import collections
import os
from asyncio.log import logger

from zerosock._aio_transport_c cimport (IOHandle, ReadSink, ReadTarget, TransportCore,
                                       new_io_handle)
from zerosock._selectors_c cimport Poller, Selector, zs_event
from zerosock._shim cimport zs_iov_set, zs_iovec, zs_send, zs_sock_t
from zerosock._wire cimport zs_wire, zs_wire_lend_memory, zs_wire_to_report
from zerosock._selectors_shared import BaseSelector, CLOSED_MESSAGE
from zerosock._cpython_c cimport zs_bytes_refill
from zerosock._cpython_c import enabled

cdef enum:
    MAX_IOV = 64              # chunks per send
    MAX_SEND = 1 << 30        # bytes per send (the submission's length is 32 bits)
    MAX_COALESCE = 64         # receives joined into one data_received()
    READ_CHUNK = 256 * 1024   # at most what one stdlib read hands a Protocol


# A sent chunk nobody else references becomes the stream's next read's bytes
# (as the readiness read refills its last one): see zs_bytes_refill.
cdef bint BYTES_REFILL = enabled("bytes_refill")


cdef double _monotonic_ms() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6


cdef int _raise_errno() except -1:
    PyErr_SetFromErrno(OSError)
    return -1


cdef object _os_error(int err):
    # OSError(errno, text) is the subclass the socket module would raise.
    return OSError(err, os.strerror(err))


cdef class RingPoller(Poller):
    """A ring's readiness and its streams' completions, behind the Poller
    interface of the C selectors."""

    def __init__(self):
        cdef char reason[512]
        reason[0] = 0
        self.handles = []
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
        """Release the ring, once the writes queued are submitted and every
        stream operation has ended (the kernel may write into the provided
        buffers and read what sends were given until then); idempotent."""
        if self.ring == NULL:
            return
        try:
            self.flush_writes()
        finally:
            zs_upoll_free(self.ring)
            self.ring = NULL
            self.handles = []  # (what sends were given may go only now)

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

    def accept_on(self, int fd):
        """Accept the connections of listener ``fd`` (watched for reading)
        through a multishot accept in place of its poll: False, and its poll
        kept, when this kernel has no multishot accept or the ring does not
        watch ``fd`` for reading alone."""
        if self.ring == NULL:
            raise ValueError(CLOSED_MESSAGE)
        if zs_upoll_accept(self.ring, fd) == 0:
            return True
        if errno in (EOPNOTSUPP, EBADF, EINVAL):
            return False
        _raise_errno()

    def accepting(self, int fd):
        """Whether the ring accepts listener ``fd``'s connections (or holds some)."""
        return self.accepts(fd)

    def accept_counts(self):
        """Connections the ring accepted and handed to the loop, and those
        it closed because nobody could take them any more."""
        cdef uint64_t accepted = 0, dropped = 0
        if self.ring != NULL:
            zs_upoll_accept_counts(self.ring, &accepted, &dropped)
        return accepted, dropped

    cdef bint accepts(self, int fd) noexcept:
        return self.ring != NULL and zs_upoll_accepting(self.ring, fd)

    cdef bint take_accepted(self, int fd, int *res) noexcept:
        return self.ring != NULL and zs_upoll_take_accepted(self.ring, fd, res)

    cdef int accepted_peer(self, int fd, int family, sockaddr *addr, zs_socklen_t *len) noexcept:
        return zs_accepted_peer(fd, family, addr, len)

    cdef int completed(self, const int **slots) noexcept:
        # (all handed over: the caller runs them as I/O handles)
        cdef int n = zs_upoll_completed(self.ring, slots)
        zs_upoll_dispatched(self.ring)
        return n

    cdef int run_completions(self) except -1:
        """Run the streams' completions of the last wait, each in its
        transport's context as its IOHandle runs a readiness event, with no
        object made or queued per event: how many ran.  An exception that
        escapes (SystemExit, KeyboardInterrupt) leaves the streams not run
        yet for the next iteration."""
        cdef int slot, count = 0
        cdef list handles
        while self.ring != NULL:
            slot = zs_upoll_next_completed(self.ring)
            if slot < 0:
                return count
            handles = self.handles
            if slot >= PyList_GET_SIZE(handles):
                continue
            handle = <object>PyList_GET_ITEM(handles, slot)
            if handle is None or (<IOHandle>handle)._cancelled or _settled(<IOHandle>handle):
                continue
            count += 1
            (<IOHandle>handle).run()
        return count

    cdef object handle_of(self, int slot):
        if slot >= PyList_GET_SIZE(self.handles):
            return None
        return <object>PyList_GET_ITEM(self.handles, slot)

    cdef object handle_to_run(self, int slot):
        """The IOHandle to run for a stream's completions, or None when
        there is nothing it must do (a send completed whole and nothing
        waits on it: settled here, running no Python code)."""
        handle = self.handle_of(slot)
        if handle is None:
            return None
        if _settled(<IOHandle>handle):
            return None
        return handle

    cdef int flush_writes(self) except -1:
        """Submit the sends of the streams that wrote since the last wait."""
        cdef int slots[64]
        cdef int n, i
        while True:
            n = zs_upoll_take_flushes(self.ring, slots, 64)
            if n == 0:
                return 0
            for i in range(n):
                handle = self.handle_of(slots[i])
                if handle is None:
                    continue
                core = (<IOHandle>handle).transport
                if type(core) is RingTransportCore:
                    (<RingTransportCore>core).flush()
                else:  # a datagram transport's (_aio_datagram_c): its queue's next batch
                    (<TransportCore>core).write_ready()

    cdef int wait(self, int timeout_ms) except -1:
        """Submit what is due, wait up to ``timeout_ms`` (-1: no limit) in one
        system call; the ready events land in ``self.ready``, the streams
        with completions in the ring's list (zs_upoll_completed)."""
        cdef int cap = self.count if self.count > 0 else 1
        cdef int n, left
        cdef double start = 0
        if self.ring == NULL:
            raise ValueError(CLOSED_MESSAGE)
        self.begin_wait(cap)
        self.flush_writes()
        if zs_upoll_prepare(self.ring) < 0:
            _raise_errno()
        if timeout_ms > 0:
            start = _monotonic_ms()
        n = self._wait_once(cap, timeout_ms)
        # The sends leave with the wait and mostly complete in it, so a wait
        # often ends at once with their completions alone.  When all of them
        # settle here, with no Python code, the iteration would run nothing:
        # wait again, for the rest of the timeout.
        while n == 0 and timeout_ms != 0 and self._settled_all():
            if timeout_ms > 0:
                left = timeout_ms - <int>(_monotonic_ms() - start)
                if left <= 0:
                    break
                n = self._wait_once(cap, left)
            else:
                n = self._wait_once(cap, -1)
        return n

    cdef int _wait_once(self, int cap, int timeout_ms) except -1:
        cdef int n
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

    cdef bint _settled_all(self) except -1:
        """Whether the last wait brought stream completions and all of them
        settled with nothing to run (then they count as dispatched)."""
        cdef const int *slots
        cdef int n = zs_upoll_completed(self.ring, &slots), i
        cdef list handles = self.handles
        if n == 0:
            return False
        for i in range(n):
            if slots[i] >= PyList_GET_SIZE(handles):
                continue
            handle = <object>PyList_GET_ITEM(handles, slots[i])
            if (handle is not None and not (<IOHandle>handle)._cancelled
                    and not _settled(<IOHandle>handle)):
                zs_upoll_skip_completed(self.ring, i)  # (the first i have nothing to run)
                return False
        zs_upoll_dispatched(self.ring)
        return True


cdef inline bint _settled(IOHandle handle) except -1:
    """Whether the slot's completions need no Python code: a stream's send
    settled (RingTransportCore.settle_send), a datagram transport's sends
    (its settle_ring)."""
    core = handle.transport
    if type(core) is RingTransportCore:
        return (<RingTransportCore>core).settle_send()
    return (<TransportCore>core).settle_ring()


class RingSelector(Selector, BaseSelector):
    """The C selector over a ring: what a loop on io_uring polls with."""
    _selector_cls = RingPoller

    def fileno(self):
        """The ring's descriptor."""
        return self._fileno()


# -- stream transports on completions ---------------------------------------------------

def ring_of(loop):
    """The RingPoller a loop polls with, or None."""
    selector = loop._selector
    if isinstance(selector, Selector):
        native = (<Selector>selector)._native
        if isinstance(native, RingPoller):
            return native
    return None


cdef inline object _data_of(RingTransportCore core, const char *ptr, Py_ssize_t n):
    """A bytes of ``n`` bytes, the first ``n`` of them from ``ptr`` (NULL: to
    be filled): the stream's spare one when it fits, else a new one."""
    data = core._spare
    if data is not None and PyBytes_GET_SIZE(data) == n:
        core._spare = None
        if ptr != NULL:
            zs_bytes_refill(data, ptr, n)
        else:
            zs_bytes_refill(data, PyBytes_AS_STRING(data), 0)  # (its hash goes)
        return data
    return PyBytes_FromStringAndSize(ptr, n)


cdef inline void _keep_spare(RingTransportCore core, PyObject *data) noexcept:
    # Referenced by the caller alone: nobody can see it refilled.
    if BYTES_REFILL and Py_REFCNT(<object>data) == 1 and PyBytes_CheckExact(<object>data):
        core._spare = <object>data


cdef class RingTransportCore(TransportCore):
    """A stream transport's core on a ring's completions: the stdlib's
    selector transport semantics, reads delivered from a multishot recv,
    writes queued and submitted with the loop's next wait, one send in
    flight at a time (its bytes held until it completes).  The transport's
    connection_lost comes only once the kernel has finished every operation
    of it; its slot, and so a completion of it, never reaches a later
    transport on the same descriptor."""

    def __cinit__(self):
        self.slot = -1

    def __init__(self, owner, loop, sock, protocol, waiter=None, extra=None, server=None,
                 context=None):
        self._open_slot(loop, sock.fileno())
        try:
            TransportCore.__init__(self, owner, loop, sock, protocol, waiter, extra, server,
                                   context)
            self._enter_handle(None)
        except BaseException:
            self._release_unstarted()
            raise

    def __dealloc__(self):
        # Made and dropped before it started (an accepted connection whose
        # transport failed midway): nothing of the slot is in flight.
        self._release_unstarted()

    cdef int _open_slot(self, object loop, int fd) except -1:
        cdef RingPoller ring = ring_of(loop)
        cdef int slot
        if ring is None or ring.ring == NULL:
            raise ValueError("the loop does not poll with an open ring")
        slot = zs_ustream_open(ring.ring, fd)
        if slot < 0:
            _raise_errno()
        self.ring = ring
        self.slot = slot
        return 0

    cdef int _enter_handle(self, object context) except -1:
        """The IOHandle that runs the slot's completions (in ``context``, None:
        the transport's), entered in the ring's handles."""
        cdef list handles = self.ring.handles
        handle = new_io_handle(self, False, context)
        while len(handles) <= self.slot:
            handles.append(None)
        handles[self.slot] = handle
        self.handle = handle
        return 0

    cdef void _release_unstarted(self) noexcept:
        if (self.handle is None and self.ring is not None and self._ring_open()
                and not zs_ustream_busy(self.ring.ring, self.slot)):
            zs_ustream_release(self.ring.ring, self.slot)
            self.slot = -1

    cdef int _attach_fd(self) except -1:
        return self._open_slot(self._loop, self._sock_fd)

    cdef int _begin_reading(self, object context) except -1:
        self._enter_handle(context)
        if zs_ustream_recv_start(self.ring.ring, self.slot) < 0:
            _raise_errno()
        return 0

    def set_protocol(self, protocol):
        # The writer told to pause is the protocol replaced: start_tls swaps
        # it while its writes are still queued (here they leave with the next
        # wait, where a readiness write had sent them), and the new protocol
        # was never paused, so it is not told to resume.
        if protocol is not self._protocol:
            self._protocol_paused = False
        TransportCore.set_protocol(self, protocol)

    def _polling(self):
        receiving = self._ring_open() and zs_ustream_receiving(self.ring.ring, self.slot)
        return receiving, self._buffer_size != 0

    # -- reading ------------------------------------------------------------------

    def _start_reading(self):
        if self._closing or self._paused:
            return
        self._loop._check_closed()
        if self._ring_open() and zs_ustream_recv_start(self.ring.ring, self.slot) < 0:
            _raise_errno()

    cdef bint _reading_stopped(self):
        return self._paused or self._closing or self._conn_lost != 0

    def pause_reading(self):
        pausing = not (self._closing or self._paused)
        TransportCore.pause_reading(self)
        # What the cancelled recv had received still arrives: it is held, in order.
        if pausing and self._ring_open() and zs_ustream_recv_stop(self.ring.ring, self.slot) < 0:
            _raise_errno()

    def resume_reading(self):
        resuming = self._paused and not self._closing
        TransportCore.resume_reading(self)
        if resuming and (self.held or (self._ring_open()
                                       and zs_ustream_pending(self.ring.ring, self.slot))):
            # What was held is delivered by the loop, as a read would be.
            self._loop.call_soon(self._read_ready, context=self._context)

    cdef int read_ready(self) except -1:
        """The stream's completions: the send's, then what was received."""
        cdef int32_t res
        cdef zs_urecv got
        cdef zs_upoll *ring
        if not self._ring_open():
            return 0
        ring = self.ring.ring
        if self.send_result_taken:
            self.send_result_taken = False
            self._sent(self.taken_res)
        elif zs_ustream_send_result(ring, self.slot, &res):
            self._sent(res)
        # The common case first: one receive for a plain Protocol or a
        # BufferedProtocol reading, nothing held, no release due (else _deliver).
        if (self.held is None and self._sink is None and self._target is None
                and not (self._paused or self._closing or self._conn_lost or self.release_pending)
                and self._ring_open() and zs_ustream_pending(self.ring.ring, self.slot) == 1):
            ring = self.ring.ring
            zs_ustream_take(ring, self.slot, &got)
            if got.res > 0:
                if self._buffered:
                    try:
                        self._give(zs_ustream_data(ring, got.bid), got.res)
                    finally:
                        zs_ustream_put(ring, got.bid)
                    return 0
                try:
                    data = _data_of(self, zs_ustream_data(ring, got.bid), got.res)
                finally:
                    zs_ustream_put(ring, got.bid)
                self.hand_data(data)
                _keep_spare(self, <PyObject *>data)
                return 0
            self._end(got.res)
        self._deliver()
        if (self.release_pending and self._ring_open()
                and not zs_ustream_busy(self.ring.ring, self.slot)):
            self.release_pending = False
            self._release()
        return 0

    cdef int _deliver(self) except -1:
        cdef zs_urecv got, nxt
        cdef zs_urecv parts[MAX_COALESCE]
        cdef int count, i
        cdef Py_ssize_t total, offset
        cdef const char *ptr
        cdef zs_upoll *ring
        # What was held first, in order.
        while self.held and not self._reading_stopped():
            item = self.held.popleft()
            if PyBytes_CheckExact(item):
                self._give(PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item))
            else:
                self._end(item)
        item = None
        if self._closing or self._conn_lost:
            return self._drop_received()
        while self._ring_open():
            ring = self.ring.ring
            if not zs_ustream_take(ring, self.slot, &got):
                break
            if self._closing or self._conn_lost:
                if got.bid >= 0:
                    zs_ustream_put(ring, got.bid)
                continue
            if got.res <= 0:
                if self._paused or self.held:
                    self._hold(got.res)
                else:
                    self._end(got.res)
                continue
            ptr = zs_ustream_data(ring, got.bid)
            if self._paused or self.held:
                try:
                    self._hold(PyBytes_FromStringAndSize(ptr, got.res))
                finally:
                    zs_ustream_put(ring, got.bid)
                continue
            if (self._sink is None and self._target is None and not self._buffered
                    and zs_ustream_peek(ring, self.slot, &nxt) and nxt.res > 0
                    and got.res + nxt.res <= READ_CHUNK):
                # A plain Protocol gets what arrived together in one call.
                parts[0] = got
                count = 1
                total = got.res
                while (count < MAX_COALESCE and zs_ustream_peek(ring, self.slot, &nxt)
                       and nxt.res > 0 and total + nxt.res <= READ_CHUNK):
                    zs_ustream_take(ring, self.slot, &parts[count])
                    total += nxt.res
                    count += 1
                try:
                    data = _data_of(self, NULL, total)
                    offset = 0
                    for i in range(count):
                        memcpy(PyBytes_AS_STRING(data) + offset,
                               zs_ustream_data(ring, parts[i].bid), parts[i].res)
                        offset += parts[i].res
                finally:
                    for i in range(count):
                        zs_ustream_put(ring, parts[i].bid)
                self.hand_data(data)
                _keep_spare(self, <PyObject *>data)
                data = None
                continue
            try:
                self._give(ptr, got.res)
            finally:
                # (the ring cannot have been freed: the loop is running)
                zs_ustream_put(ring, got.bid)
        return 0

    cdef int _hold(self, object item) except -1:
        if self.held is None:
            self.held = collections.deque()
        self.held.append(item)
        return 0

    cdef int _drop_received(self) except -1:
        cdef zs_urecv got
        self.held = None
        if self._ring_open():
            while zs_ustream_take(self.ring.ring, self.slot, &got):
                if got.bid >= 0:
                    zs_ustream_put(self.ring.ring, got.bid)
        return 0

    cdef int _end(self, int32_t res) except -1:
        if res == 0:
            return self._on_eof()
        self._fatal_error(_os_error(-res), "Fatal read error on socket transport")
        return 0

    cdef int _give(self, const char *ptr, Py_ssize_t n) except -1:
        """Hand ``n`` received bytes to the protocol as its kind takes them;
        what it cannot take now (it paused reading midway) is held."""
        cdef ReadSink sink
        cdef ReadTarget target
        cdef zs_wire wire
        cdef Py_buffer view
        cdef char *dest
        cdef Py_ssize_t room, k
        if self._sink is not None:
            sink = self._sink  # held: feeding may run Python code that resets _sink
            try:
                sink.feed(ptr, n)
            except BaseException as exc:
                return self._failed(exc, "Fatal error: protocol.data_received() call failed.")
            return 0
        if self._target is not None:
            target = self._target
            zs_wire_lend_memory(&wire, ptr, <size_t>n)
            try:
                target.wire_readable(&wire)
            except BaseException as exc:
                return self._failed(exc, "Fatal error: protocol.buffer_updated() call failed.")
            if wire.mem_len and not (self._closing or self._conn_lost):
                self._hold(PyBytes_FromStringAndSize(wire.mem, <Py_ssize_t>wire.mem_len))
            return 0
        if not self._buffered:
            return self._give_bytes(ptr, n)
        while n > 0:
            if self._reading_stopped():
                if self._paused and not (self._closing or self._conn_lost):
                    self._hold(PyBytes_FromStringAndSize(ptr, n))
                return 0
            buf = self.protocol_buffer(&view, &dest, &room)
            if buf is None:
                return 0
            k = n if n < room else room
            memcpy(dest, ptr, k)
            if <PyObject *>view.obj != NULL:
                PyBuffer_Release(&view)
            buf = None
            ptr += k
            n -= k
            self.hand_filled(k)
        return 0

    cdef int _give_bytes(self, const char *ptr, Py_ssize_t n) except -1:
        data = _data_of(self, ptr, n)
        self.hand_data(data)
        _keep_spare(self, <PyObject *>data)
        return 0


    # -- writing ------------------------------------------------------------------

    cdef object _send_now(self, const char *ptr, Py_ssize_t length, object data):
        """Nothing goes out now: the send is submitted with the next wait.
        What to queue: ``data`` itself when it is bytes (immutable), else a copy."""
        if self._conn_lost:
            return TransportCore._send_now(self, ptr, length, data)
        if self._closing:
            # As the stdlib's, whose write before close() went out at once
            # and whose close() then counts the connection lost: ignored.
            return None
        if (data is not None and PyBytes_CheckExact(data) and PyBytes_GET_SIZE(data) == length
                and PyBytes_AS_STRING(data) == ptr):
            chunk = data
        else:
            chunk = _data_of(self, ptr, length)  # (the spare, when it fits)
        if self.head is not None or self.in_flight or length > MAX_SEND or not self._ring_open():
            return chunk  # queued (_queue_rest)
        # The common write, nothing queued: its send queued now, for the next wait.
        self.head = chunk
        self._buffer_size = length
        if zs_ustream_send(self.ring.ring, self.slot, PyBytes_AS_STRING(chunk), <size_t>length,
                           0) == 0:
            self.in_flight = length
        else:
            self._submitted(-1, length)
        if self._buffer_size > self._high_water:
            self._pause_check()
        return None

    cdef int _queue_rest(self, object rest) except -1:
        if self.head is None:
            self.head = rest
        else:
            if self._queue is None:
                self._queue = collections.deque()
            self._queue.append(rest)
        self._buffer_size += PyBytes_GET_SIZE(rest)
        if self._ring_open():
            if not self.in_flight:
                self.flush()  # queued now, submitted by the next wait
            elif zs_ustream_send_open(self.ring.ring, self.slot):
                # grown to take this too just before the wait (once, however many writes)
                zs_ustream_flush_later(self.ring.ring, self.slot)
        self._pause_check()
        return 0

    cdef int flush(self) except -1:
        """Queue a send of what is queued for the next wait (the chunks stay
        in the queue, alive, until its completion), or grow the one queued
        and not submitted yet to take everything."""
        cdef zs_iovec iov[MAX_IOV]
        cdef int count = 0, rc
        cdef Py_ssize_t offset = self._head_offset, size, total = 0
        cdef const char *first = NULL
        cdef Py_ssize_t i
        if not self._ring_open() or not self._buffer_size or self._conn_lost:
            return 0
        if self.in_flight and not zs_ustream_send_open(self.ring.ring, self.slot):
            return 0  # submitted: the rest goes once it completes
        if self._queue is None and PyBytes_GET_SIZE(self.head) - offset <= MAX_SEND:
            # one chunk (most writes): no iovec
            total = PyBytes_GET_SIZE(self.head) - offset
            rc = zs_ustream_send(self.ring.ring, self.slot, PyBytes_AS_STRING(self.head) + offset,
                                 <size_t>total, 0)
            return self._submitted(rc, total)
        chunk = self.head
        rest = self._queue
        i = 0
        while True:
            size = PyBytes_GET_SIZE(chunk) - offset
            if total + size > MAX_SEND:
                size = MAX_SEND - total
            if count == 0:
                first = PyBytes_AS_STRING(chunk) + offset
            zs_iov_set(&iov[count], PyBytes_AS_STRING(chunk) + offset, <size_t>size)
            total += size
            offset = 0
            count += 1
            if count == MAX_IOV or total == MAX_SEND or rest is None or i == len(rest):
                break
            chunk = rest[i]
            i += 1
        chunk = rest = None
        if count == 1:
            rc = zs_ustream_send(self.ring.ring, self.slot, first, <size_t>total, 0)
        else:
            rc = zs_ustream_send(self.ring.ring, self.slot, iov, <size_t>total, count)
        return self._submitted(rc, total)

    cdef int _submitted(self, int rc, Py_ssize_t total) except -1:
        if rc == 1:
            return 0  # the send to grow had to be submitted as it was
        if rc < 0:
            exc = _os_error(errno)
            self._clear_queue()
            self._fatal_error(exc, "Fatal write error on socket transport")
            return 0
        self.in_flight = total
        return 0

    cdef bint settle_send(self) except -1:
        """Take the result of a send that completed, and settle it here when
        it went whole and nothing waits on it (nothing queued behind it,
        nobody waiting for the queue to drain): what _sent would do, without
        Python code.  Whether the slot has nothing else to run (no receive
        to deliver, no result for _sent, no release due)."""
        cdef int32_t res
        cdef zs_upoll *ring = self.ring.ring
        if zs_ustream_send_result(ring, self.slot, &res):
            if (res == self.in_flight and self.in_flight == self._buffer_size
                    and not (self._closing or self._eof or self._protocol_paused
                             or self._conn_lost or self.send_result_taken
                             or self._empty_waiter is not None)):
                self.in_flight = 0
                if self._queue is None:  # one chunk (the rest as _clear_queue)
                    first = self.head
                    self.head = None
                    self._head_offset = 0
                    self._buffer_size = 0
                    _keep_spare(self, <PyObject *>first)
                else:
                    self._clear_queue()  # (dropping the sent bytes runs no Python code)
            else:
                self.send_result_taken = True  # for _sent, when read_ready runs
                self.taken_res = res
        return not (self.send_result_taken or self.release_pending
                    or zs_ustream_pending(ring, self.slot))

    cdef int _sent(self, int32_t res) except -1:
        """A send completed: what the stdlib's _write_ready does after its send."""
        self.in_flight = 0
        self.kept = None
        if self._conn_lost:
            return 0  # aborted: the queue is gone
        if res < 0:
            return self._write_failed(_os_error(-res))
        self._consume(res)
        self._resume_check()  # may write more
        if self._buffer_size:
            self.flush()  # the rest, or what came meanwhile
            return 0
        if self._conn_lost:
            return 0
        if self._empty_waiter is not None:
            self._empty_waiter.set_result(None)
        if self._closing:
            self._conn_lost += 1
            self._lose(None)
        elif self._eof:
            self._sock.shutdown(socket_SHUT_WR)
        return 0

    # -- closing --------------------------------------------------------------------

    cdef int c_close(self) except -1:
        if self._closing:
            return 0
        self._closing = True
        if self._ring_open() and zs_ustream_recv_stop(self.ring.ring, self.slot) < 0:
            _raise_errno()
        self._drop_received()
        if not self._buffer_size:
            self._conn_lost += 1
            self._lose(None)
        return 0

    cdef int _consume(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t left
        self._buffer_size -= n
        while n > 0:
            left = PyBytes_GET_SIZE(self.head) - self._head_offset
            if n < left:
                self._head_offset += n
                return 0
            n -= left
            self._head_offset = 0
            sent = self.head
            if self._queue:
                self.head = self._queue.popleft()
            else:
                self.head = self._queue = None  # an idle connection holds no queue
            _keep_spare(self, <PyObject *>sent)
        return 0

    cdef int _clear_queue(self) except -1:
        first = self.head
        self.head = self._queue = None
        self._head_offset = 0
        self._buffer_size = 0
        if first is not None:
            _keep_spare(self, <PyObject *>first)
        return 0

    cdef bint _drop_queued(self) except -1:
        if not self._buffer_size:
            return False
        if self.in_flight:
            # the kernel reads these until the send completes
            self.kept = (self.head, self._queue)
        self._clear_queue()
        return True

    cdef int _send_at_once(self) except -1:
        """What the socket takes now of what is queued and not submitted: the
        stdlib's transport sent it at write(), so that an abort or a fatal
        error after a write drops only what the kernel had no room for."""
        cdef long n
        if not self._buffer_size or not self._ring_open():
            return 0
        if self.in_flight:
            if not zs_ustream_send_withdraw(self.ring.ring, self.slot):
                return 0  # submitted: what it sends is out of our hands
            self.in_flight = 0
        while self.head is not None:
            chunk = self.head
            n = zs_send(self._fd, PyBytes_AS_STRING(chunk) + self._head_offset,
                        <size_t>(PyBytes_GET_SIZE(chunk) - self._head_offset), 0)
            if n <= 0:
                break
            self._consume(n)
        return 0

    def _force_close(self, exc):
        if self._conn_lost:
            return
        self._send_at_once()
        self._drop_queued()
        self._closing = True
        if self._ring_open():
            if zs_ustream_recv_stop(self.ring.ring, self.slot) < 0:
                _raise_errno()
            if zs_ustream_send_cancel(self.ring.ring, self.slot) < 0:
                _raise_errno()
        self._drop_received()
        self._conn_lost += 1
        self._lose(exc)

    cdef int _lose(self, object exc) except -1:
        """connection_lost(exc) from the loop, as the stdlib's transport
        schedules it.  What the kernel may still do for this stream touches
        no memory of the transport's but its send's bytes, which ``kept`` or
        the queue hold until the slot is released (see _release)."""
        self._loop.call_soon(self._call_connection_lost, exc, context=self._context)
        return 0

    def _call_connection_lost(self, exc):
        try:
            TransportCore._call_connection_lost(self, exc)
        finally:
            self._release()

    cdef int _release(self) except -1:
        """Give the slot back: now if nothing is in flight, else once the
        cancelled operations have ended (the socket is closed meanwhile: the
        ring holds its file, and the slot's generation keeps their
        completions from a later stream on the same descriptor)."""
        self.held = None
        if not self._ring_open():
            self.slot = -1
            return 0
        if not give_back_slot(self.ring, self.slot):
            self.release_pending = True
            return 0
        self.slot = -1
        self.kept = None
        return 0


cdef bint give_back_slot(RingPoller ring, int slot) except -1:
    """Free a transport's slot if nothing of it is in flight (True); else
    cancel what is (False: the transport gives it back once they ended)."""
    if zs_ustream_busy(ring.ring, slot):
        zs_ustream_recv_stop(ring.ring, slot)
        zs_ustream_send_cancel(ring.ring, slot)
        # Now: until its operations end the ring holds the socket's file,
        # and the socket's close would not close the connection.
        zs_upoll_submit(ring.ring)
        return False
    zs_ustream_release(ring.ring, slot)
    ring.handles[slot] = None
    return True


import socket as _socket
cdef object socket_SHUT_WR = _socket.SHUT_WR
