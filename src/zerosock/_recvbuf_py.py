"""The pure-Python RecvBuffer and BufferPool: a bytearray store searched with
``bytearray.find``.  Same API and behaviour as ``_recvbuf_c``."""

from __future__ import annotations

import _socket
import errno
import struct
from operator import index
from typing import Any, List, Literal, Optional, Union

from ._recvbuf_shared import (
    BUSY_MESSAGE, BYTEORDER_MESSAGE, EXPORTED_MESSAGE, PREFIX_SIZE_MESSAGE, IncompleteReadError,
    PoolExhaustedError, full_error, limit_error, os_error, pool_sizes, prefix_limit_error, sizes,
)

Buffer = Any  # any object with the buffer protocol
Readable = Any  # a zerosock or stdlib socket, or anything with fileno(), or a descriptor
ByteOrder = Literal["big", "little"]


# (prefix_size, byteorder) -> the prefix's struct; anything else is refused by _prefix_struct.
_PREFIXES = {(size, order): struct.Struct(("<" if order == "little" else ">") + code)
             for size, code in ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))
             for order in ("big", "little")}


def _prefix_struct(prefix_size: Any, byteorder: Any) -> struct.Struct:
    if type(prefix_size) is int:  # 4.0 hashes like 4 but is no index
        try:
            return _PREFIXES[prefix_size, byteorder]
        except (KeyError, TypeError):  # TypeError: an unhashable byteorder
            pass
    size = index(prefix_size)
    if size not in (1, 2, 4, 8):
        raise ValueError(PREFIX_SIZE_MESSAGE)
    if byteorder != "big" and byteorder != "little":
        raise ValueError(BYTEORDER_MESSAGE)
    return _PREFIXES[size, byteorder]


def _count(value: Any, what: str = "n") -> int:
    """A byte count argument: an integer that is not negative."""
    count: int = index(value)
    if count < 0:
        raise ValueError(f"{what} must not be negative")
    if count > 0x7FFFFFFFFFFFFFFF:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return count


def _bytes_arg(obj: Any) -> Union[bytes, memoryview]:
    """The bytes of a buffer argument, refused as the C backend's
    ``PyObject_GetBuffer(PyBUF_SIMPLE)`` refuses them."""
    if type(obj) is bytes:
        return obj
    try:
        view = memoryview(obj)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(obj).__name__}'") from None
    if not view.c_contiguous:
        view.release()
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    if view.ndim != 1 or view.itemsize != 1:
        return view.cast("B")
    return view


def _separator(obj: Any) -> bytes:
    data = _bytes_arg(obj)
    sep = data if type(data) is bytes else bytes(data)
    if not sep:
        raise ValueError("separator must not be empty")
    return sep


def _recv_from_descriptor(source: Any, tail: memoryview) -> Optional[int]:
    """One recv into ``tail`` from a raw descriptor (or an object with
    ``fileno()``), in whatever blocking mode the descriptor is in."""
    fd = source if isinstance(source, int) else source.fileno()
    fd = index(fd)
    if fd < 0:
        raise os_error(errno.EBADF)
    sock = _socket.socket(fileno=fd)
    try:
        return sock.recv_into(tail)
    except BlockingIOError:
        return None
    finally:
        sock.detach()


def _exported(store: bytearray) -> bool:
    """True while a view of ``store`` is exported: bytearray then refuses to resize."""
    try:
        if store:
            store.append(store.pop())
        else:
            store.append(0)
            store.pop()
    except BufferError:
        return True
    return False


class RecvBuffer:
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
    memoryviews into the store instead of copies.  While any such view (or
    one sliced from it) is alive and not released, the store is pinned: it
    is never moved, compacted, grown, shrunk or released, and its bytes under
    the view are never overwritten, so a view keeps reading the bytes it was
    given even after they are consumed.  An operation that would need to move
    the store raises :class:`BufferError` instead, as ``bytearray`` does, and
    leaves the buffer unchanged.  Release views (``with buf.view() as v:`` or
    ``v.release()``) as soon as the frame is handled.

    Threads: a buffer belongs to one connection and one reader at a time.
    While :meth:`fill` waits in one thread, calls from another that would
    write or move the store (``fill``, ``feed``, ``release``) raise
    ``RuntimeError`` instead of racing the kernel's write.
    """

    __slots__ = ("_store", "_start", "_end", "_initial", "_max_size", "_eof", "_filling",
                 "_pool", "_pool_block", "__weakref__")

    _store: bytearray
    _pool: "Optional[BufferPool]"

    def __init__(self, capacity: int = 65536, *, max_size: Optional[int] = None) -> None:
        capacity, max_size = sizes(capacity, max_size)
        if getattr(self, "_filling", False):
            raise RuntimeError(BUSY_MESSAGE)
        if hasattr(self, "_store"):  # initialised again: let go of the old store first
            self.release()
        self._setup(bytearray(capacity), capacity, max_size, None, False)

    def _setup(self, store: bytearray, capacity: int, max_size: int,
               pool: "Optional[BufferPool]", pool_block: bool) -> None:
        self._store = store
        self._start = self._end = 0
        self._initial = capacity
        self._max_size = max_size
        self._eof = False
        self._filling = False
        self._pool = pool
        self._pool_block = pool_block

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            self._pool = None
            pool._reclaim(self._store, self._pool_block)

    # -- state --

    @property
    def capacity(self) -> int:
        """Bytes the store holds now (0 after :meth:`release`)."""
        return len(self._store)

    @property
    def max_size(self) -> int:
        """The most bytes the buffer will hold unread."""
        return self._max_size

    @property
    def eof(self) -> bool:
        """True once end of stream was seen (``fill`` returned 0, or ``feed_eof``)."""
        return self._eof

    def at_eof(self) -> bool:
        """True when end of stream was seen and every byte has been read."""
        return self._eof and self._start == self._end

    def __len__(self) -> int:
        """The number of unread bytes."""
        return self._end - self._start

    def __repr__(self) -> str:
        return (f"<zerosock.RecvBuffer len={self._end - self._start} "
                f"capacity={len(self._store)} max_size={self._max_size}"
                f"{' eof' if self._eof else ''}>")

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __enter__(self) -> "RecvBuffer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _pinned(self) -> bool:
        """True while a view of the store is exported."""
        return _exported(self._store)

    def _move_to(self, new_capacity: int) -> None:
        """Move the unread bytes to the front of a store of ``new_capacity``."""
        store, start, end = self._store, self._start, self._end
        if new_capacity == len(store):
            if start:
                store[:end - start] = store[start:end]
        else:
            new = bytearray(new_capacity)
            with memoryview(store) as old:
                new[:end - start] = old[start:end]
            self._store = new
        self._start, self._end = 0, end - start

    # -- filling --

    def fill(self, sock: Readable) -> Optional[int]:
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
        end = self._end
        self._filling = True
        try:
            with memoryview(self._store) as whole, whole[end:] as tail:
                if isinstance(sock, _socket.socket):
                    try:
                        n: Optional[int] = sock.recv_into(tail)
                    except BlockingIOError:
                        n = None
                else:
                    n = _recv_from_descriptor(sock, tail)
        finally:
            self._filling = False
        if n is None:
            return None
        self._end = end + n
        if not n:
            self._eof = True
        return n

    def _ready_to_fill(self) -> None:
        """Refuse a read inside a read; make room when less than a quarter of
        the store is free at the tail, or when it is empty but not at the start."""
        if self._filling:
            raise RuntimeError(BUSY_MESSAGE)
        cap = len(self._store)
        start, end = self._start, self._end
        if cap - end < ((cap >> 2) or 1) or (start == end and start):
            self._room_for_fill()

    def _room_for_fill(self) -> None:
        cap = len(self._store)
        start, end = self._start, self._end
        readable = end - start
        want = (cap >> 2) or 1
        if readable >= self._max_size:
            raise full_error(self._max_size)
        if self._pinned():
            if end == cap:
                raise BufferError(EXPORTED_MESSAGE)
            return
        if readable == 0 and cap:
            self._start = self._end = 0
        elif start and readable <= cap - want:
            self._move_to(cap)
        elif cap < self._max_size:
            self._move_to(min(max(cap * 2, self._initial), self._max_size))
        elif start:
            self._move_to(cap)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A writable memoryview of the free tail, for :meth:`buffer_updated`.

        With these two methods a buffer serves an
        :class:`asyncio.BufferedProtocol` as is (``get_buffer =
        buf.get_buffer``): the transport receives straight into the store.
        Room is made as :meth:`fill` makes it; ``sizehint`` is advisory and
        ignored.  The view pins the store like any other: write into it once,
        call :meth:`buffer_updated`, and drop it.
        """
        index(sizehint)
        self._ready_to_fill()
        return memoryview(self._store)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        """Make ``nbytes`` written at the start of the last :meth:`get_buffer`
        view readable."""
        n = _count(nbytes, "nbytes")
        free = len(self._store) - self._end
        if n > free:
            raise ValueError(f"nbytes={n} is more than the {free} free bytes")
        self._end += n

    def feed(self, data: Buffer) -> None:
        """Append ``data`` (any bytes-like object) to the unread bytes.

        Grows the store as needed; raises :class:`BufferFullError` when the
        result would exceed ``max_size``, and :class:`BufferError` when room
        can only be made by moving the store while a view is exported.  On
        error nothing is appended.
        """
        chunk = _bytes_arg(data)
        n = len(chunk) if type(chunk) is bytes else chunk.nbytes  # type: ignore[union-attr]
        if not n:
            return
        if self._filling:
            raise RuntimeError(BUSY_MESSAGE)
        end = self._end
        if n > len(self._store) - end:
            self._room_for_feed(n)
            end = self._end
        self._store[end:end + n] = chunk
        self._end = end + n

    def _room_for_feed(self, n: int) -> None:
        cap = len(self._store)
        readable = self._end - self._start
        need = readable + n
        max_size = self._max_size
        if need > max_size:
            raise full_error(max_size)
        if self._pinned():
            raise BufferError(EXPORTED_MESSAGE)
        if need <= cap:
            self._move_to(cap)
            return
        new_capacity = max(cap, self._initial)
        while new_capacity < need:
            if new_capacity > max_size - new_capacity:
                new_capacity = max_size
                break
            new_capacity *= 2
        self._move_to(min(new_capacity, max_size))

    def feed_eof(self) -> None:
        """Mark end of stream, for bytes that arrive through :meth:`feed`."""
        self._eof = True

    # -- reading --

    def readexactly(self, n: int) -> Optional[bytes]:
        """Take exactly ``n`` bytes, or return ``None`` until that many are
        buffered.  At end of stream with fewer, raise :class:`IncompleteReadError`."""
        n = _count(n)
        start = self._start
        if self._end - start >= n:
            self._start = start + n
            return bytes(self._store[start:start + n])
        self._short(n)
        return None

    def readexactly_view(self, n: int) -> Optional[memoryview]:
        """:meth:`readexactly` returning a memoryview into the store (zero copy;
        see the class docstring for the view's lifetime rule)."""
        n = _count(n)
        start = self._start
        if self._end - start >= n:
            self._start = start + n
            return memoryview(self._store)[start:start + n]
        self._short(n)
        return None

    def _short(self, n: int) -> None:
        """Raise IncompleteReadError if no more bytes can come."""
        if self._eof:
            raise IncompleteReadError(bytes(self._store[self._start:self._end]), n)

    def _frame_end(self, separator: Any, max_length: Optional[int]) -> "tuple[int, int]":
        """Where the frame ending with ``separator`` ends: ``(index of the
        separator, index past it)``, or ``(-1, -1)`` while incomplete."""
        sep = _separator(separator)
        start, end = self._start, self._end
        if max_length is not None:
            limit = _count(max_length, "max_length")
            at = self._store.find(sep, start, min(end, start + limit))
            if at < 0 and end - start >= limit:
                raise limit_error(limit)
        else:
            at = self._store.find(sep, start, end)
        if at < 0:
            if self._eof:
                raise IncompleteReadError(bytes(self._store[start:end]), None)
            return -1, -1
        return at, at + len(sep)

    def readuntil(self, separator: Buffer = b"\n", *, max_length: Optional[int] = None,
                  keep_separator: bool = True) -> Optional[bytes]:
        """Take the bytes up to and including the first ``separator``, or
        return ``None`` until a separator is buffered.

        ``keep_separator=False`` drops the separator from the result (it is
        consumed either way).  ``max_length`` bounds the frame, separator
        included: when the separator does not end within the first
        ``max_length`` bytes, raise :class:`LimitOverrunError` and leave the
        buffer as it was.  At end of stream without a separator, raise
        :class:`IncompleteReadError`.  An empty separator is a ``ValueError``.
        """
        at, stop = self._frame_end(separator, max_length)
        if stop < 0:
            return None
        start = self._start
        self._start = stop
        return bytes(self._store[start:stop if keep_separator else at])

    def readuntil_view(self, separator: Buffer = b"\n", *, max_length: Optional[int] = None,
                       keep_separator: bool = True) -> Optional[memoryview]:
        """:meth:`readuntil` returning a memoryview into the store (zero copy;
        see the class docstring for the view's lifetime rule)."""
        at, stop = self._frame_end(separator, max_length)
        if stop < 0:
            return None
        start = self._start
        self._start = stop
        return memoryview(self._store)[start:stop if keep_separator else at]

    def readline(self, *, max_length: Optional[int] = None) -> Optional[bytes]:
        """Take one line, ``b"\\n"`` included, or ``None`` until one is buffered.

        At end of stream, return what is left without a newline, then ``b""``
        (as files and :meth:`asyncio.StreamReader.readline` do).  ``max_length``
        is as for :meth:`readuntil`.
        """
        try:
            return self.readuntil(b"\n", max_length=max_length)
        except IncompleteReadError as exc:
            self._start = self._end
            return exc.partial

    def readline_view(self, *, max_length: Optional[int] = None) -> Optional[memoryview]:
        """:meth:`readline` returning a memoryview into the store."""
        try:
            return self.readuntil_view(b"\n", max_length=max_length)
        except IncompleteReadError:
            start = self._start
            self._start = self._end
            return memoryview(self._store)[start:self._end]

    def _prefixed_frame(self, prefix_size: int, byteorder: ByteOrder,
                        max_length: Optional[int]) -> "tuple[int, int]":
        """Where the payload of the first length-prefixed frame starts and
        ends, or ``(-1, -1)`` while it is incomplete."""
        prefix = _prefix_struct(prefix_size, byteorder)
        size = prefix.size
        limit = None if max_length is None else _count(max_length, "max_length")
        store, start, end = self._store, self._start, self._end
        if end - start < size:
            if self._eof:
                raise IncompleteReadError(bytes(store[start:end]), size)
            return -1, -1
        length: int = prefix.unpack_from(store, start)[0]
        if limit is not None and length > limit:
            raise prefix_limit_error(length, limit)
        if end - start - size < length:
            if self._eof:
                raise IncompleteReadError(bytes(store[start:end]), size + length)
            return -1, -1
        return start + size, start + size + length

    def readprefixed(self, prefix_size: int = 4, *, byteorder: ByteOrder = "big",
                     max_length: Optional[int] = None) -> Optional[bytes]:
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
        payload, stop = self._prefixed_frame(prefix_size, byteorder, max_length)
        if stop < 0:
            return None
        self._start = stop
        return bytes(self._store[payload:stop])

    def readprefixed_view(self, prefix_size: int = 4, *, byteorder: ByteOrder = "big",
                          max_length: Optional[int] = None) -> Optional[memoryview]:
        """:meth:`readprefixed` returning a memoryview into the store (zero
        copy; see the class docstring for the view's lifetime rule)."""
        payload, stop = self._prefixed_frame(prefix_size, byteorder, max_length)
        if stop < 0:
            return None
        self._start = stop
        return memoryview(self._store)[payload:stop]

    def peek(self, n: int) -> bytes:
        """Up to ``n`` unread bytes, without consuming them."""
        n = _count(n)
        start = self._start
        return bytes(self._store[start:min(start + n, self._end)])

    def view(self) -> memoryview:
        """A memoryview of every unread byte, without consuming them (zero
        copy; see the class docstring for the view's lifetime rule)."""
        return memoryview(self._store)[self._start:self._end]

    def consume(self, n: int) -> None:
        """Drop ``n`` unread bytes; a ``ValueError`` if fewer are buffered."""
        n = _count(n)
        if n > self._end - self._start:
            raise ValueError(f"cannot consume {n} bytes: only {self._end - self._start} buffered")
        self._start += n

    def find(self, sub: Buffer, start: int = 0) -> int:
        """Offset of the first ``sub`` in the unread bytes at or after
        ``start``, or ``-1`` (the semantics of :meth:`bytes.find`)."""
        needle = _bytes_arg(sub)
        offset = _count(start, "start")
        base = self._start
        if offset > self._end - base:
            return -1
        at = self._store.find(needle, base + offset, self._end)
        return at - base if at >= 0 else -1

    def clear(self) -> None:
        """Drop every unread byte (the store keeps its memory)."""
        self._start = self._end

    def release(self) -> None:
        """Drop every unread byte and free the store (or give it back to the
        :class:`BufferPool` it came from).  The buffer stays usable and
        allocates again on the next ``fill``/``feed``.  Raises
        :class:`BufferError` while a view is exported."""
        if self._filling:
            raise RuntimeError(BUSY_MESSAGE)
        if self._pinned():
            raise BufferError(EXPORTED_MESSAGE)
        store, pool, pool_block = self._store, self._pool, self._pool_block
        self._store = bytearray()
        self._start = self._end = 0
        self._pool = None
        self._pool_block = False
        if pool is not None:
            pool._reclaim(store, pool_block)

    def __buffer__(self, flags: int) -> memoryview:  # the buffer protocol on 3.12+
        return self.view()

    def __bytes__(self) -> bytes:
        return bytes(self._store[self._start:self._end])


class BufferPool:
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

    __slots__ = ("_size", "_count", "_max_size", "_overflow", "_free", "_in_use")

    def __init__(self, size: int, count: int, *, max_size: Optional[int] = None,
                 overflow: bool = False) -> None:
        self._size, self._count = pool_sizes(size, count)
        self._max_size = sizes(self._size, max_size)[1]
        self._overflow = bool(overflow)
        self._free: List[bytearray] = []
        self._in_use = 0

    @property
    def size(self) -> int:
        """Capacity of each buffer."""
        return self._size

    @property
    def count(self) -> int:
        """The most buffers out at once (overflow buffers aside)."""
        return self._count

    @property
    def max_size(self) -> int:
        """``max_size`` of each buffer."""
        return self._max_size

    @property
    def overflow(self) -> bool:
        """Whether ``acquire`` allocates beyond ``count`` instead of raising."""
        return self._overflow

    @property
    def in_use(self) -> int:
        """Pool buffers acquired and not yet released."""
        return self._in_use

    @property
    def available(self) -> int:
        """How many more buffers ``acquire`` gives from the pool."""
        return self._count - self._in_use

    def __repr__(self) -> str:
        return (f"<zerosock.BufferPool size={self._size} count={self._count} "
                f"in_use={self._in_use}>")

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def acquire(self) -> RecvBuffer:
        """An empty :class:`RecvBuffer` of capacity ``size``, reusing memory
        a released buffer gave back."""
        buf = RecvBuffer.__new__(RecvBuffer)
        if self._in_use < self._count:
            store = self._free.pop() if self._free else bytearray(self._size)
            self._in_use += 1
            buf._setup(store, self._size, self._max_size, self, True)
        elif self._overflow:
            buf._setup(bytearray(self._size), self._size, self._max_size, self, False)
        else:
            raise PoolExhaustedError(f"all {self._count} buffers of the pool are in use")
        return buf

    def release(self, buf: RecvBuffer) -> None:
        """Give ``buf`` back: its unread bytes are dropped and its memory kept
        for the next :meth:`acquire`.  ``ValueError`` if ``buf`` is not out
        from this pool; :class:`BufferError` while a view of it is exported."""
        if not isinstance(buf, RecvBuffer):
            raise TypeError(f"expected a RecvBuffer, not {type(buf).__name__}")
        if buf._pool is not self:
            raise ValueError("this buffer is not out from this pool")
        buf.release()

    def _reclaim(self, store: bytearray, pool_block: bool) -> None:
        if not pool_block:
            return
        self._in_use -= 1
        if _exported(store):  # still viewed: the views keep it, the pool forgets it
            return
        del store[self._size:]
        if len(store) == self._size:
            self._free.append(store)
