"""The pure-Python Socket: the standard library's socket object with zerosock's
additions (non-raising calls, batch datagrams).  Same API as ``_socket_c``."""

from __future__ import annotations

import _socket
import select
import socket as _stdsocket
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, TypeVar, Union

from . import _socket_shared
from ._socket_shared import (
    Address, as_family, as_kind, bind_factories, sendfile as _sendfile, socket_repr, take_over,
)

_DONTWAIT: int = getattr(_stdsocket, "MSG_DONTWAIT", 0)
_family_of = _socket.socket.family.__get__
_type_of = _socket.socket.type.__get__

Buffer = Any  # any object with the buffer protocol
Datagram = Union[Buffer, Tuple[Buffer, Address]]
_T = TypeVar("_T")


def _ready_now(fd: int, writing: bool) -> bool:
    """Poll one descriptor without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT if writing else select.POLLIN)
        return bool(poller.poll(0))
    ready = select.select([], [fd], [], 0) if writing else select.select([fd], [], [], 0)
    return any(ready)


class Socket(_socket.socket):
    """A socket with the standard library's API plus zero-copy hot-path calls.

    ``Socket(family=-1, type=-1, proto=-1, fileno=None)``: like
    :class:`socket.socket`, AF_INET/SOCK_STREAM by default, or the kind of an
    existing descriptor when ``fileno`` is given.
    """

    # _io_refs and _closed: the files makefile() made and still open, and
    # whether close() was called (the descriptor waits for those files).
    __slots__ = ("__weakref__", "_io_refs", "_closed")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: Optional[int] = None) -> None:
        self._io_refs = 0
        self._closed = False
        if fileno is None:
            family = _socket.AF_INET if family == -1 else family
            type = _socket.SOCK_STREAM if type == -1 else type
            proto = 0 if proto == -1 else proto
        super().__init__(family, type, proto, fileno)

    makefile = _socket_shared.makefile
    dup = _socket_shared.dup
    get_inheritable = _socket_shared.get_inheritable
    set_inheritable = _socket_shared.set_inheritable

    def close(self) -> None:
        """Close the descriptor; closing twice does nothing.  While files
        made by makefile() are open it stays open for them, until the last
        one closes, as the standard library's does."""
        self._closed = True
        if self._io_refs <= 0:
            super().close()

    def detach(self) -> int:
        """Give up the descriptor without closing it and return it."""
        self._closed = True
        return super().detach()

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    @classmethod
    def from_socket(cls, sock: _stdsocket.socket) -> "Socket":
        """Take over a stdlib socket's descriptor (the stdlib object is detached)."""
        return take_over(cls, sock)

    @property
    def family(self) -> Union[_stdsocket.AddressFamily, int]:
        """The address family, as :class:`socket.AddressFamily` when known."""
        return as_family(_family_of(self))

    @property
    def type(self) -> Union[_stdsocket.SocketKind, int]:
        """The socket type, as :class:`socket.SocketKind` when known."""
        return as_kind(_type_of(self))

    def __repr__(self) -> str:
        return socket_repr(self)

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> None:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def accept(self) -> Tuple["Socket", Address]:
        """Accept a connection: ``(Socket, address)``.  The new socket is
        blocking unless a default timeout is set, as in the standard library."""
        fd, address = self._accept()  # type: ignore[attr-defined]
        sock = Socket(_family_of(self), _type_of(self), self.proto, fileno=fd)
        if _stdsocket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, address

    def sendfile(self, file: Any, offset: int = 0, count: Optional[int] = None) -> int:
        """Send a file's bytes, with the kernel's sendfile where available."""
        return _sendfile(self, file, offset, count)

    # -- non-raising calls: None instead of BlockingIOError, never a wait --

    def _would_wait(self, writing: bool) -> bool:
        timeout = self.gettimeout()
        if timeout == 0 or (timeout is None and _DONTWAIT):
            return False
        return not _ready_now(self.fileno(), writing)

    def _try(self, writing: bool, call: Callable[..., _T], *args: Any) -> Optional[_T]:
        """``call(*args)`` unless it would wait or block: then ``None``."""
        if self._would_wait(writing):
            return None
        try:
            return call(*args)
        except BlockingIOError:
            return None

    def try_recv_into(self, buffer: Buffer, nbytes: int = 0, flags: int = 0) -> Optional[int]:
        """``recv_into`` that returns ``None`` instead of waiting or raising
        BlockingIOError when no data is ready."""
        return self._try(False, self.recv_into, buffer, nbytes, flags | _DONTWAIT)

    def try_recv(self, bufsize: int, flags: int = 0) -> Optional[bytes]:
        """``recv`` that returns ``None`` when no data is ready."""
        return self._try(False, self.recv, bufsize, flags | _DONTWAIT)

    def try_send(self, data: Buffer, flags: int = 0) -> Optional[int]:
        """``send`` that returns ``None`` when the send buffer is full."""
        return self._try(True, self.send, data, flags | _DONTWAIT)

    # -- batch datagrams --

    def recv_many(self, buffers: Sequence[Buffer], flags: int = 0) -> List[Tuple[int, Address]]:
        """Receive up to ``len(buffers)`` datagrams, one into each writable buffer.

        Waits (as ``recvfrom_into`` does) for the first datagram only, then
        takes what is already queued; returns ``[(nbytes, address), ...]``.
        Every buffer is checked before anything is received.
        """
        views = [_writable_view(buffer, "recv_many") for buffer in buffers]
        received: List[Tuple[int, Address]] = []
        try:
            for view in views:
                if not received:
                    received.append(self.recvfrom_into(view, 0, flags))
                    continue
                if self._would_wait(False):
                    break
                try:
                    received.append(self.recvfrom_into(view, 0, flags | _DONTWAIT))
                except (BlockingIOError, _stdsocket.timeout):
                    # Another reader took what the poll saw (a timeout socket
                    # waits before the call): keep what this call received.
                    break
            return received
        finally:
            for view in views:
                view.release()

    def send_many(self, datagrams: Iterable[Datagram], flags: int = 0) -> int:
        """Send datagrams, each a buffer (to the connected peer) or a
        ``(buffer, address)`` pair; returns how many were sent.

        Waits (as ``sendto`` does) for the first only; stops early when the
        send buffer fills.  Every item is checked before anything is sent.
        """
        items = [_datagram(item) for item in datagrams]
        sent = 0
        for data, address in items:
            extra = 0
            if sent:
                if self._would_wait(True):
                    break
                extra = _DONTWAIT
            try:
                if address is None:
                    self.send(data, flags | extra)
                else:
                    self.sendto(data, flags | extra, address)
            except (BlockingIOError, _stdsocket.timeout):
                # Another writer filled the buffer the poll saw room in: the
                # caller must learn how many went, or it sends them twice.
                if not sent:
                    raise
                break
            sent += 1
        return sent


def _writable_view(buffer: Buffer, caller: str) -> memoryview:
    try:
        view = memoryview(buffer)
    except TypeError:
        view = None
    if view is None or view.readonly or not view.contiguous:
        raise TypeError(f"{caller}() argument 'buffer' must be read-write bytes-like "
                        f"object, not {type(buffer).__name__}")
    return view


def _datagram(item: Datagram) -> Tuple[Buffer, Optional[Address]]:
    if isinstance(item, tuple):
        if len(item) != 2:
            raise TypeError("a datagram is a buffer or a (buffer, address) pair")
        data, address = item
    else:
        data, address = item, None
    memoryview(data)  # a TypeError now, before any datagram is sent
    return data, address


socketpair, create_connection, create_server, fromfd = bind_factories(Socket)
