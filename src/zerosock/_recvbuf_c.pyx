# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The C RecvBuffer and BufferPool: a malloc'd store the kernel fills in place,
searched with memchr/memmem.  Same API and behaviour as ``_recvbuf_py``."""

cimport cython
from cpython.buffer cimport (
    PyBUF_FORMAT, PyBUF_ND, PyBUF_SIMPLE, PyBUF_STRIDES, PyBuffer_Release, PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.memoryview cimport PyMemoryView_FromObject
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove

from zerosock._shim cimport (
    ZS_EBADF, ZS_EINTR, ZS_HAVE_MSG_DONTWAIT, ZS_MSG_DONTWAIT, zs_is_would_block, zs_last_error,
    zs_recv, zs_sock_t, zs_wait,
)

from operator import index as _index
from time import monotonic as _monotonic
from socket import timeout as _socket_timeout  # TimeoutError from 3.10, as the stdlib raises

from zerosock._recvbuf_shared import (
    BUSY_MESSAGE, BYTEORDER_MESSAGE, EXPORTED_MESSAGE, PREFIX_SIZE_MESSAGE, IncompleteReadError,
    PoolExhaustedError, full_error, limit_error, os_error, pool_sizes, prefix_limit_error, sizes,
)

cdef extern from "zs_bytes.h" nogil:
    const char *zs_memmem(const char *hay, size_t n, const char *needle, size_t k)

cdef char _EMPTY[1]
cdef char *_FORMAT_B = "B"
cdef char _TAIL_MARK[1]  # Py_buffer.internal of a get_buffer() view
cdef Py_ssize_t _SSIZE_MAX = <Py_ssize_t>(<size_t>-1 >> 1)


cdef inline Py_ssize_t _count(object value, str what) except -1:
    """A byte count argument: an integer that is not negative."""
    cdef Py_ssize_t n = value
    if n < 0:
        raise ValueError(f"{what} must not be negative")
    return n


cdef struct _Bytes:
    # The bytes of a buffer argument: bytes objects directly, anything else
    # through PyObject_GetBuffer (then `held` says to release `view`).
    const char *data
    Py_ssize_t size
    bint held
    Py_buffer view


cdef inline int _get_bytes(object obj, _Bytes *out) except -1:
    if type(obj) is bytes:
        out.data = PyBytes_AS_STRING(obj)
        out.size = PyBytes_GET_SIZE(obj)
        out.held = False
        return 0
    PyObject_GetBuffer(obj, &out.view, PyBUF_SIMPLE)
    out.data = <const char *>out.view.buf
    out.size = out.view.len
    out.held = True
    return 0


cdef inline void _put_bytes(_Bytes *b) noexcept:
    if b.held:
        b.held = False
        PyBuffer_Release(&b.view)


@cython.no_gc_clear  # _drop_store needs _pool in __dealloc__; nothing here can form a cycle
cdef class RecvBuffer:
    """A receive buffer the kernel fills in place, parsed without extra copies.

    ``RecvBuffer(capacity=65536, *, max_size=None)`` holds one contiguous store
    of ``capacity`` bytes with a read and a write position.  :meth:`fill`
    receives straight into the free tail and :meth:`feed` appends bytes from
    elsewhere; the readers (:meth:`readline`, :meth:`readuntil`,
    :meth:`readexactly`, :meth:`readprefixed`, each with a ``_view`` twin)
    take frames off the front.  A reader returns ``None`` while its frame is
    incomplete: it never blocks and never drops what is buffered.  The store grows (doubling) as a frame needs, up to
    ``max_size`` bytes (default: 16 MiB, or ``capacity`` if larger); beyond
    that :class:`BufferFullError` is raised and nothing is lost.

    End of stream: once :meth:`fill` has returned ``0`` (or :meth:`feed_eof`
    was called), ``readexactly``/``readuntil`` raise
    :class:`IncompleteReadError` for a frame that can no longer complete, and
    ``readline`` returns the unterminated rest (``b""`` when nothing is left),
    as :class:`asyncio.StreamReader` does.

    Views and their lifetime: :meth:`view` and the ``*_view`` readers return
    memoryviews into the store instead of copies (``memoryview(buf)`` is
    ``buf.view()``).  While any such view (or one sliced from it) is alive
    and not released, the store is pinned: it is never moved, compacted,
    grown, shrunk or released, and its bytes under the view are never
    overwritten, so a view keeps reading the bytes it was given even after
    they are consumed.  An operation that would need to move the store raises
    :class:`BufferError` instead, as ``bytearray`` does, and leaves the
    buffer unchanged.  Release views (``with buf.view() as v:`` or
    ``v.release()``) as soon as the frame is handled.

    Threads: a buffer belongs to one connection and one reader at a time.
    While :meth:`fill` waits in one thread, calls from another that would
    write or move the store (``fill``, ``feed``, ``release``) raise
    ``RuntimeError`` instead of racing the kernel's write.
    """

    cdef char *_store
    cdef Py_ssize_t _cap, _start, _end, _initial, _max_size
    cdef Py_ssize_t _exports
    cdef Py_ssize_t _tail_exports  # of which get_buffer() views of the free tail
    cdef bint _view_tail
    cdef Py_ssize_t _view_start, _view_stop  # range of the next export; -1: the unread bytes
    cdef bint _eof, _filling, _pool_block
    cdef BufferPool _pool
    # A separator search that failed: no occurrence of _scan_sep starts before
    # _scan_pos, so the next search for it resumes there instead of rescanning
    # a long partial frame (which would make a slowly arriving frame quadratic).
    # Kept only while nothing is exported, since a writable view could change
    # scanned bytes; forgotten whenever the store moves.
    cdef object _scan_sep
    cdef Py_ssize_t _scan_pos
    cdef object __weakref__

    def __cinit__(self):
        self._view_start = -1

    def __init__(self, capacity=65536, *, max_size=None):
        cdef Py_ssize_t cap, limit
        cap, limit = sizes(capacity, max_size)
        if self._filling:
            raise RuntimeError(BUSY_MESSAGE)
        if self._exports:
            raise BufferError(EXPORTED_MESSAGE)
        cdef char *store = <char *>malloc(<size_t>cap)
        if store == NULL:
            raise MemoryError()
        self._drop_store()
        self._adopt(store, cap, limit, None, False)

    cdef void _adopt(self, char *store, Py_ssize_t cap, Py_ssize_t max_size,
                     BufferPool pool, bint pool_block) noexcept:
        self._store = store
        self._cap = cap
        self._start = self._end = 0
        self._scan_sep = None
        self._initial = cap
        self._max_size = max_size
        self._eof = False
        self._pool = pool
        self._pool_block = pool_block

    cdef void _drop_store(self) noexcept:
        """Free the store, or give it back to its pool."""
        cdef char *store = self._store
        cdef Py_ssize_t cap = self._cap
        cdef BufferPool pool = self._pool
        cdef bint pool_block = self._pool_block
        self._store = NULL
        self._scan_sep = None
        self._cap = self._start = self._end = 0
        self._pool = None
        self._pool_block = False
        if pool is not None:
            pool._reclaim(store, cap, pool_block)
        else:
            free(store)

    def __dealloc__(self):
        self._drop_store()

    # -- state --

    @property
    def capacity(self):
        """Bytes the store holds now (0 after :meth:`release`)."""
        return self._cap

    @property
    def max_size(self):
        """The most bytes the buffer will hold unread."""
        return self._max_size

    @property
    def eof(self):
        """True once end of stream was seen (``fill`` returned 0, or ``feed_eof``)."""
        return self._eof

    def at_eof(self):
        """True when end of stream was seen and every byte has been read."""
        return self._eof and self._start == self._end

    def __len__(self):
        """The number of unread bytes."""
        return self._end - self._start

    def __repr__(self):
        return (f"<zerosock.RecvBuffer len={self._end - self._start} "
                f"capacity={self._cap} max_size={self._max_size}"
                f"{' eof' if self._eof else ''}>")

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()

    # -- the buffer protocol: exports pin the store --

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        cdef Py_ssize_t a = self._start
        cdef Py_ssize_t b = self._end
        cdef bint tail = self._view_tail
        if self._view_start >= 0:
            a = self._view_start
            b = self._view_stop
            self._view_start = -1
            self._view_tail = False
        buffer.buf = <void *>(self._store + a) if self._store != NULL else <void *>_EMPTY
        buffer.obj = self
        buffer.len = b - a
        buffer.readonly = 0
        buffer.itemsize = 1
        buffer.format = _FORMAT_B if (flags & PyBUF_FORMAT) == PyBUF_FORMAT else NULL
        buffer.ndim = 1
        buffer.shape = &buffer.len if (flags & PyBUF_ND) == PyBUF_ND else NULL
        buffer.strides = &buffer.itemsize if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        buffer.suboffsets = NULL
        self._exports += 1
        if tail:
            # Written by the kernel only, before buffer_updated(): a search
            # may still remember how far it got.
            buffer.internal = <void *>_TAIL_MARK
            self._tail_exports += 1
        else:
            buffer.internal = NULL
            self._scan_sep = None

    def __releasebuffer__(self, Py_buffer *buffer):
        self._exports -= 1
        if buffer.internal == <void *>_TAIL_MARK:
            self._tail_exports -= 1

    cdef object _export(self, Py_ssize_t a, Py_ssize_t b):
        """A memoryview of store[a:b], counted as an export."""
        self._view_start = a
        self._view_stop = b
        try:
            return PyMemoryView_FromObject(self)
        finally:
            self._view_start = -1

    # -- making room --

    cdef int _move_to(self, Py_ssize_t new_cap) except -1:
        """Move the unread bytes to the front of a store of ``new_cap`` bytes."""
        cdef Py_ssize_t readable = self._end - self._start
        cdef char *new
        if new_cap == self._cap:
            if self._start:
                memmove(self._store, self._store + self._start, <size_t>readable)
        elif self._start == 0 and self._store != NULL:
            new = <char *>realloc(self._store, <size_t>new_cap)
            if new == NULL:
                raise MemoryError()
            self._store = new
        else:
            new = <char *>malloc(<size_t>new_cap)
            if new == NULL:
                raise MemoryError()
            if readable:
                memcpy(new, self._store + self._start, <size_t>readable)
            free(self._store)
            self._store = new
        self._cap = new_cap
        self._scan_sep = None
        self._start = 0
        self._end = readable
        return 0

    cdef int _ready_to_fill(self) except -1:
        # Refuse a read inside a read; make room when less than a quarter of
        # the store is free at the tail, or when it is empty but not at the start.
        cdef Py_ssize_t want = self._cap >> 2
        if self._filling:
            raise RuntimeError(BUSY_MESSAGE)
        if want < 1:
            want = 1
        if self._cap - self._end < want or (self._start == self._end and self._start):
            self._room_for_fill()
        return 0

    cdef int _room_for_fill(self) except -1:
        cdef Py_ssize_t cap = self._cap
        cdef Py_ssize_t readable = self._end - self._start
        cdef Py_ssize_t want = cap >> 2
        cdef Py_ssize_t grown
        if want < 1:
            want = 1
        if readable >= self._max_size:
            raise full_error(self._max_size)
        if self._exports:
            if self._end == cap:
                raise BufferError(EXPORTED_MESSAGE)
            return 0
        if readable == 0 and cap:
            self._start = self._end = 0
            self._scan_sep = None
        elif self._start and readable <= cap - want:
            self._move_to(cap)
        elif cap < self._max_size:
            grown = cap * 2 if cap <= self._max_size // 2 else self._max_size
            if grown < self._initial:
                grown = self._initial
            if grown > self._max_size:
                grown = self._max_size
            self._move_to(grown)
        elif self._start:
            self._move_to(cap)
        return 0

    cdef int _room_for_feed(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t readable = self._end - self._start
        cdef Py_ssize_t new_cap
        if n > self._max_size - readable:
            raise full_error(self._max_size)
        if self._exports:
            raise BufferError(EXPORTED_MESSAGE)
        cdef Py_ssize_t need = readable + n
        if need <= self._cap:
            self._move_to(self._cap)
            return 0
        new_cap = self._cap if self._cap > self._initial else self._initial
        while new_cap < need:
            if new_cap > self._max_size - new_cap:
                new_cap = self._max_size
                break
            new_cap *= 2
        if new_cap > self._max_size:
            new_cap = self._max_size
        self._move_to(new_cap)
        return 0

    # -- filling --

    def fill(self, sock):
        """Receive once from ``sock`` straight into the free tail of the store.

        ``sock`` is a zerosock or stdlib socket, an object with ``fileno()``
        or a raw descriptor.  Returns the number of bytes received, ``0`` at
        end of stream (and from then on :attr:`eof` is true), or ``None``
        when a non-blocking socket has nothing to read.  A blocking socket
        waits, honouring its timeout (``TimeoutError``); a raw descriptor is
        read in whatever mode it is in.  Other errors raise the ``OSError``
        subclass the standard library raises.  Before reading, the store is
        compacted or grown when less than a quarter of it is free at the
        tail; when that is impossible because a view is exported it reads
        into what is left, or raises :class:`BufferError` if nothing is.
        Raises :class:`BufferFullError` when ``max_size`` bytes are unread.
        """
        self._ready_to_fill()
        self._filling = True
        try:
            return self._recv(sock)
        finally:
            self._filling = False

    cdef object _recv(self, object sock):
        # Only fill() calls this, with _filling set: no other call can move the
        # store meanwhile, even while the GIL is released or a signal handler runs.
        cdef bint has_timeout = not isinstance(sock, int)
        cdef object fileno = sock.fileno() if has_timeout else sock
        cdef zs_sock_t fd = fileno
        cdef char *tail = self._store + self._end
        cdef size_t size = <size_t>(self._cap - self._end)
        cdef long n
        cdef int err, ready, wait_ms
        cdef object timeout = None, deadline = None
        cdef bint timeout_known = False
        cdef bint in_own_mode = False  # a raw descriptor's recv without MSG_DONTWAIT
        if fd < 0:
            raise os_error(ZS_EBADF)
        if has_timeout:
            has_timeout = hasattr(sock, "gettimeout")
        while True:
            if ZS_HAVE_MSG_DONTWAIT and not in_own_mode:
                n = zs_recv(fd, tail, size, ZS_MSG_DONTWAIT)  # never waits: keep the GIL
            else:
                with nogil:
                    n = zs_recv(fd, tail, size, 0)
            if n >= 0:
                break
            err = zs_last_error()
            if err == ZS_EINTR:
                PyErr_CheckSignals()
                continue
            if not zs_is_would_block(err):
                raise os_error(err)
            # Nothing ready: wait as the socket's own mode says.
            if not has_timeout:
                if in_own_mode or not ZS_HAVE_MSG_DONTWAIT:
                    return None
                # a blocking descriptor waits in the next recv; a non-blocking one returns at once
                in_own_mode = True
                continue
            if not timeout_known:
                timeout = sock.gettimeout()
                timeout_known = True
                if timeout is not None:
                    if timeout <= 0:
                        return None
                    deadline = _monotonic() + timeout
            if timeout is None:
                wait_ms = -1
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    raise _socket_timeout("timed out")
                wait_ms = <int>(remaining * 1000.0) + 1 if remaining < 2000000.0 else 2000000000
            with nogil:
                ready = zs_wait(fd, 0, wait_ms)
            if ready < 0:
                err = zs_last_error()
                if err == ZS_EINTR:
                    PyErr_CheckSignals()
                    continue
                raise os_error(err)
            if ready == 0:
                raise _socket_timeout("timed out")
        self._end += n
        if n == 0:
            self._eof = True
        return n

    def get_buffer(self, sizehint=-1):
        """A writable memoryview of the free tail, for :meth:`buffer_updated`.

        With these two methods a buffer serves an
        :class:`asyncio.BufferedProtocol` as is (``get_buffer =
        buf.get_buffer``): the transport receives straight into the store.
        Room is made as :meth:`fill` makes it; ``sizehint`` is advisory and
        ignored.  The view pins the store like any other: write into it once,
        call :meth:`buffer_updated`, and drop it.
        """
        _index(sizehint)
        self._ready_to_fill()
        self._view_tail = True
        try:
            return self._export(self._end, self._cap)
        finally:
            self._view_tail = False

    def buffer_updated(self, nbytes):
        """Make ``nbytes`` written at the start of the last :meth:`get_buffer`
        view readable."""
        cdef Py_ssize_t n = _count(nbytes, "nbytes")
        if n > self._cap - self._end:
            raise ValueError(f"nbytes={n} is more than the {self._cap - self._end} free bytes")
        self._end += n

    def feed(self, data):
        """Append ``data`` (any bytes-like object) to the unread bytes.

        Grows the store as needed; raises :class:`BufferFullError` when the
        result would exceed ``max_size``, and :class:`BufferError` when room
        can only be made by moving the store while a view is exported.  On
        error nothing is appended.
        """
        cdef _Bytes chunk
        _get_bytes(data, &chunk)
        try:
            if chunk.size == 0:
                return
            if self._filling:
                raise RuntimeError(BUSY_MESSAGE)
            if chunk.size > self._cap - self._end:
                self._room_for_feed(chunk.size)
            memcpy(self._store + self._end, chunk.data, <size_t>chunk.size)
            self._end += chunk.size
        finally:
            _put_bytes(&chunk)

    def feed_eof(self):
        """Mark end of stream, for bytes that arrive through :meth:`feed`."""
        self._eof = True

    # -- reading --

    cdef object _short(self, Py_ssize_t n):
        if self._eof:
            raise IncompleteReadError(
                PyBytes_FromStringAndSize(self._store + self._start, self._end - self._start), n)
        return None

    def readexactly(self, n):
        """Take exactly ``n`` bytes, or return ``None`` until that many are
        buffered.  At end of stream with fewer, raise :class:`IncompleteReadError`."""
        cdef Py_ssize_t count = _count(n, "n")
        cdef Py_ssize_t start = self._start
        if self._end - start >= count:
            self._start = start + count
            return PyBytes_FromStringAndSize(self._store + start, count)
        return self._short(count)

    def readexactly_view(self, n):
        """:meth:`readexactly` returning a memoryview into the store (zero copy;
        see the class docstring for the view's lifetime rule)."""
        cdef Py_ssize_t count = _count(n, "n")
        cdef Py_ssize_t start = self._start
        if self._end - start >= count:
            view = self._export(start, start + count)
            self._start = start + count
            return view
        return self._short(count)

    cdef Py_ssize_t _frame_end(self, object separator, object max_length,
                               Py_ssize_t *stop) except -2:
        """Index of the separator ending the first frame (setting ``stop`` past
        it), or -1 while the frame is incomplete."""
        cdef _Bytes sep
        cdef Py_ssize_t limit = -1, avail, span_end, scan_from
        cdef const char *hit
        _get_bytes(separator, &sep)
        try:
            if sep.size == 0:
                raise ValueError("separator must not be empty")
            if max_length is not None:
                limit = _count(max_length, "max_length")
            avail = self._end - self._start
            span_end = self._start + (limit if 0 <= limit < avail else avail)
            scan_from = self._start
            if (separator is self._scan_sep and self._scan_pos > scan_from
                    and self._exports == self._tail_exports):
                scan_from = self._scan_pos
            hit = NULL
            if span_end - scan_from >= sep.size:
                hit = zs_memmem(self._store + scan_from, <size_t>(span_end - scan_from),
                                sep.data, <size_t>sep.size)
            if hit != NULL:
                self._scan_sep = None
                stop[0] = (hit - self._store) + sep.size
                return hit - self._store
            if self._exports == self._tail_exports and type(separator) is bytes:
                self._scan_sep = separator
                self._scan_pos = span_end - sep.size + 1
            if limit >= 0 and avail >= limit:
                raise limit_error(limit)
            return -1
        finally:
            _put_bytes(&sep)

    cdef object _incomplete_frame(self):
        if self._eof:
            raise IncompleteReadError(
                PyBytes_FromStringAndSize(self._store + self._start, self._end - self._start), None)
        return None

    def readuntil(self, separator=b"\n", *, max_length=None, bint keep_separator=True):
        """Take the bytes up to and including the first ``separator``, or
        return ``None`` until a separator is buffered.

        ``keep_separator=False`` drops the separator from the result (it is
        consumed either way).  ``max_length`` bounds the frame, separator
        included: when the separator does not end within the first
        ``max_length`` bytes, raise :class:`LimitOverrunError` and leave the
        buffer as it was.  At end of stream without a separator, raise
        :class:`IncompleteReadError`.  An empty separator is a ``ValueError``.
        """
        cdef Py_ssize_t stop = 0
        cdef Py_ssize_t at = self._frame_end(separator, max_length, &stop)
        cdef Py_ssize_t start = self._start
        if at < 0:
            return self._incomplete_frame()
        self._start = stop
        return PyBytes_FromStringAndSize(self._store + start, (stop if keep_separator else at) - start)

    def readuntil_view(self, separator=b"\n", *, max_length=None, bint keep_separator=True):
        """:meth:`readuntil` returning a memoryview into the store (zero copy;
        see the class docstring for the view's lifetime rule)."""
        cdef Py_ssize_t stop = 0
        cdef Py_ssize_t at = self._frame_end(separator, max_length, &stop)
        cdef Py_ssize_t start = self._start
        if at < 0:
            return self._incomplete_frame()
        view = self._export(start, stop if keep_separator else at)
        self._start = stop
        return view

    cdef Py_ssize_t _line_stop(self, object max_length) except -2:
        """Where the first line ends (past its newline, or at the end of the
        data at end of stream), or -1 while it is incomplete."""
        cdef Py_ssize_t stop = 0
        if self._frame_end(b"\n", max_length, &stop) >= 0:
            return stop
        return self._end if self._eof else -1

    def readline(self, *, max_length=None):
        """Take one line, ``b"\\n"`` included, or ``None`` until one is buffered.

        At end of stream, return what is left without a newline, then ``b""``
        (as files and :meth:`asyncio.StreamReader.readline` do).  ``max_length``
        is as for :meth:`readuntil`.
        """
        cdef Py_ssize_t start = self._start
        cdef Py_ssize_t stop = self._line_stop(max_length)
        if stop < 0:
            return None
        self._start = stop
        return PyBytes_FromStringAndSize(self._store + start, stop - start)

    def readline_view(self, *, max_length=None):
        """:meth:`readline` returning a memoryview into the store."""
        cdef Py_ssize_t start = self._start
        cdef Py_ssize_t stop = self._line_stop(max_length)
        if stop < 0:
            return None
        view = self._export(start, stop)
        self._start = stop
        return view

    cdef Py_ssize_t _prefixed_frame(self, object prefix_size, object byteorder,
                                    object max_length, Py_ssize_t *stop) except -2:
        """Where the payload of the first length-prefixed frame starts (setting
        ``stop`` to its end), or -1 while it is incomplete."""
        cdef Py_ssize_t size, limit = -1, avail, i
        cdef unsigned long long length = 0
        cdef const unsigned char *p
        cdef bint big
        try:
            size = prefix_size
        except OverflowError:
            size = 0
        if size != 1 and size != 2 and size != 4 and size != 8:
            raise ValueError(PREFIX_SIZE_MESSAGE)
        if byteorder == "big":
            big = True
        elif byteorder == "little":
            big = False
        else:
            raise ValueError(BYTEORDER_MESSAGE)
        if max_length is not None:
            limit = _count(max_length, "max_length")
        avail = self._end - self._start
        if avail < size:
            if self._eof:
                raise IncompleteReadError(
                    PyBytes_FromStringAndSize(self._store + self._start, avail), size)
            return -1
        p = <const unsigned char *>(self._store + self._start)
        if big:
            for i in range(size):
                length = (length << 8) | p[i]
        else:
            for i in range(size - 1, -1, -1):
                length = (length << 8) | p[i]
        if limit >= 0 and length > <unsigned long long>limit:
            raise prefix_limit_error(length, limit)
        if length > <unsigned long long>(avail - size):
            if self._eof:
                raise IncompleteReadError(
                    PyBytes_FromStringAndSize(self._store + self._start, avail), size + <object>length)
            return -1
        stop[0] = self._start + size + <Py_ssize_t>length
        return self._start + size

    def readprefixed(self, prefix_size=4, *, byteorder="big", max_length=None):
        """Take one length-prefixed frame and return its payload, or ``None``
        until the whole frame is buffered.

        The frame is an unsigned ``prefix_size``-byte integer (1, 2, 4 or 8;
        ``byteorder`` ``"big"``, network order, or ``"little"``) followed by
        that many bytes.  ``max_length`` bounds the payload: a larger length
        raises :class:`LimitOverrunError` as soon as the prefix is in, with
        the buffer left as it was.  At end of stream mid-frame, raise
        :class:`IncompleteReadError` (``expected`` is the whole frame's size,
        prefix included).
        """
        cdef Py_ssize_t stop = 0
        cdef Py_ssize_t payload = self._prefixed_frame(prefix_size, byteorder, max_length, &stop)
        if payload < 0:
            return None
        self._start = stop
        return PyBytes_FromStringAndSize(self._store + payload, stop - payload)

    def readprefixed_view(self, prefix_size=4, *, byteorder="big", max_length=None):
        """:meth:`readprefixed` returning a memoryview into the store (zero
        copy; see the class docstring for the view's lifetime rule)."""
        cdef Py_ssize_t stop = 0
        cdef Py_ssize_t payload = self._prefixed_frame(prefix_size, byteorder, max_length, &stop)
        if payload < 0:
            return None
        view = self._export(payload, stop)
        self._start = stop
        return view

    def peek(self, n):
        """Up to ``n`` unread bytes, without consuming them."""
        cdef Py_ssize_t count = _count(n, "n")
        cdef Py_ssize_t avail = self._end - self._start
        return PyBytes_FromStringAndSize(self._store + self._start, count if count < avail else avail)

    def view(self):
        """A memoryview of every unread byte, without consuming them (zero
        copy; see the class docstring for the view's lifetime rule)."""
        return self._export(self._start, self._end)

    def consume(self, n):
        """Drop ``n`` unread bytes; a ``ValueError`` if fewer are buffered."""
        cdef Py_ssize_t count = _count(n, "n")
        if count > self._end - self._start:
            raise ValueError(f"cannot consume {count} bytes: only {self._end - self._start} buffered")
        self._start += count

    def find(self, sub, start=0):
        """Offset of the first ``sub`` in the unread bytes at or after
        ``start``, or ``-1`` (the semantics of :meth:`bytes.find`)."""
        cdef _Bytes needle
        cdef Py_ssize_t offset, avail
        cdef const char *hit
        _get_bytes(sub, &needle)
        try:
            offset = _count(start, "start")
            avail = self._end - self._start
            if offset > avail:
                return -1
            hit = zs_memmem(self._store + self._start + offset, <size_t>(avail - offset),
                            needle.data, <size_t>needle.size)
            return (hit - (self._store + self._start)) if hit != NULL else -1
        finally:
            _put_bytes(&needle)

    def clear(self):
        """Drop every unread byte (the store keeps its memory)."""
        self._start = self._end

    def release(self):
        """Drop every unread byte and free the store (or give it back to the
        :class:`BufferPool` it came from).  The buffer stays usable and
        allocates again on the next ``fill``/``feed``.  Raises
        :class:`BufferError` while a view is exported."""
        if self._filling:
            raise RuntimeError(BUSY_MESSAGE)
        if self._exports:
            raise BufferError(EXPORTED_MESSAGE)
        self._drop_store()


cdef class BufferPool:
    """A bounded pool of receive buffers that reuses their memory.

    ``BufferPool(size, count, *, max_size=None, overflow=False)`` hands out
    up to ``count`` :class:`RecvBuffer` objects of capacity ``size`` whose
    stores are kept and reused: a server with many mostly idle connections
    acquires a buffer when a connection has data and releases it once the
    buffer is drained, so memory follows activity, not connection count.

    :meth:`acquire` raises :class:`PoolExhaustedError` when ``count`` buffers
    are out, unless ``overflow=True``: then it returns a fresh buffer whose
    memory is freed, not kept, on release.  A buffer grows up to ``max_size``
    as a frame needs (the :class:`RecvBuffer` default when ``None``) and is
    cut back to ``size`` when it returns to the pool.  Release with
    :meth:`release`, ``buf.release()``, or ``with pool.acquire() as buf:``;
    a buffer that is garbage collected returns its memory as well.
    """

    cdef Py_ssize_t _size, _count, _max_size, _in_use, _nfree
    cdef char **_free
    cdef bint _overflow

    def __init__(self, size, count, *, max_size=None, overflow=False):
        cdef Py_ssize_t block_size, blocks, limit
        block_size, blocks = pool_sizes(size, count)
        limit = sizes(block_size, max_size)[1]
        if self._free != NULL:
            raise RuntimeError("BufferPool is already initialised")
        self._free = <char **>malloc(sizeof(char *) * <size_t>(blocks if blocks > 0 else 1))
        if self._free == NULL:
            raise MemoryError()
        self._size = block_size
        self._count = blocks
        self._max_size = limit
        self._overflow = bool(overflow)

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._free != NULL:
            for i in range(self._nfree):
                free(self._free[i])
            free(self._free)
            self._free = NULL

    cdef void _reclaim(self, char *block, Py_ssize_t cap, bint pool_block) noexcept:
        """Take a buffer's store back (never raises: __dealloc__ calls this)."""
        cdef char *smaller
        if not pool_block:
            free(block)
            return
        self._in_use -= 1
        if block != NULL and cap != self._size:
            smaller = <char *>realloc(block, <size_t>self._size)
            if smaller == NULL:
                free(block)
                return
            block = smaller
        if block != NULL and self._free != NULL and self._nfree < self._count:
            self._free[self._nfree] = block
            self._nfree += 1
        else:
            free(block)

    @property
    def size(self):
        """Capacity of each buffer."""
        return self._size

    @property
    def count(self):
        """The most buffers out at once (overflow buffers aside)."""
        return self._count

    @property
    def max_size(self):
        """``max_size`` of each buffer."""
        return self._max_size

    @property
    def overflow(self):
        """Whether ``acquire`` allocates beyond ``count`` instead of raising."""
        return self._overflow

    @property
    def in_use(self):
        """Pool buffers acquired and not yet released."""
        return self._in_use

    @property
    def available(self):
        """How many more buffers ``acquire`` gives from the pool."""
        return self._count - self._in_use

    def __repr__(self):
        return (f"<zerosock.BufferPool size={self._size} count={self._count} "
                f"in_use={self._in_use}>")

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def acquire(self):
        """An empty :class:`RecvBuffer` of capacity ``size``, reusing memory
        a released buffer gave back."""
        cdef RecvBuffer buf = RecvBuffer.__new__(RecvBuffer)
        cdef char *block
        cdef bint pool_block = self._in_use < self._count
        if self._free == NULL:
            raise RuntimeError("BufferPool is not initialised")
        if not pool_block and not self._overflow:
            raise PoolExhaustedError(f"all {self._count} buffers of the pool are in use")
        if pool_block and self._nfree:
            self._nfree -= 1
            block = self._free[self._nfree]
        else:
            block = <char *>malloc(<size_t>self._size)
            if block == NULL:
                raise MemoryError()
        if pool_block:
            self._in_use += 1
        buf._adopt(block, self._size, self._max_size, self, pool_block)
        return buf

    def release(self, buf):
        """Give ``buf`` back: its unread bytes are dropped and its memory kept
        for the next :meth:`acquire`.  ``ValueError`` if ``buf`` is not out
        from this pool; :class:`BufferError` while a view of it is exported."""
        if not isinstance(buf, RecvBuffer):
            raise TypeError(f"expected a RecvBuffer, not {type(buf).__name__}")
        if (<RecvBuffer>buf)._pool is not self:
            raise ValueError("this buffer is not out from this pool")
        buf.release()
