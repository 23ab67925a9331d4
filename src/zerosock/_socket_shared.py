"""Socket helpers written once in Python and used by both backends.

Nothing here is on a hot path: construction helpers, ``sendfile``, ``repr``
and the conversions the standard library does in Python too.
"""

from __future__ import annotations

import io
import os
import select
import socket as _stdsocket
from typing import Any, Callable, Optional, Protocol, Tuple, TypeVar, Union

from socket import AF_INET, AF_INET6, AF_UNIX, SOCK_STREAM, SOL_SOCKET, SO_REUSEADDR

Address = Union[Tuple[Any, ...], str, bytes]
_GLOBAL_DEFAULT_TIMEOUT: Any = _stdsocket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
_SENDFILE_BLOCK = 1 << 30


class SocketLike(Protocol):
    """What the shared helpers need of a backend's Socket."""

    @property
    def family(self) -> int: ...
    @property
    def type(self) -> int: ...
    def fileno(self) -> int: ...
    def gettimeout(self) -> Optional[float]: ...
    def settimeout(self, value: Optional[float]) -> None: ...
    def setsockopt(self, level: int, option: int, value: Any) -> None: ...
    def bind(self, address: Address) -> None: ...
    def listen(self, backlog: int = ...) -> None: ...
    def connect(self, address: Address) -> None: ...
    def send(self, data: Any, flags: int = ...) -> int: ...
    def sendall(self, data: Any, flags: int = ...) -> None: ...
    def close(self) -> None: ...
    def detach(self) -> int: ...


S = TypeVar("S", bound=SocketLike)


def as_family(value: int) -> Union[_stdsocket.AddressFamily, int]:
    try:
        return _stdsocket.AddressFamily(value)
    except ValueError:
        return value


def as_kind(value: int) -> Union[_stdsocket.SocketKind, int]:
    try:
        return _stdsocket.SocketKind(value)
    except ValueError:
        return value


# socket.socket's methods that need of the object only the socket API (its
# descriptor, recv_into and send, and the _io_refs count with
# _decref_socketios that makefile() keeps): both backends take them as they
# are, so they behave as those of the running Python.
makefile = _stdsocket.socket.makefile
dup = _stdsocket.socket.dup
get_inheritable = _stdsocket.socket.get_inheritable
set_inheritable = _stdsocket.socket.set_inheritable


def socket_repr(sock: Any) -> str:
    """The standard library's repr, under zerosock's class name."""
    closed = getattr(sock, "_closed", False) or sock.fileno() == -1
    parts = [f"<zerosock.Socket{' [closed]' if closed else ''} fd={sock.fileno()}",
             f"family={sock.family}", f"type={sock.type}", f"proto={sock.proto}"]
    if not closed:
        for label, getter in (("laddr", sock.getsockname), ("raddr", sock.getpeername)):
            try:
                addr = getter()
            except OSError:
                continue
            if addr:
                parts.append(f"{label}={addr}")
    return ", ".join(parts) + ">"


def take_over(cls: Callable[..., S], sock: _stdsocket.socket) -> S:
    """Build a zerosock Socket on a stdlib socket's descriptor, which it detaches."""
    if not isinstance(sock, _stdsocket.socket):
        raise TypeError(f"expected a socket.socket, not {type(sock).__name__}")
    timeout = sock.gettimeout()
    new = cls(sock.family, sock.type, sock.proto, fileno=sock.fileno())
    sock.detach()
    new.settimeout(timeout)
    return new


def bind_factories(cls: Callable[..., S]) -> Tuple[Callable[..., Tuple[S, S]], Callable[..., S],
                                                  Callable[..., S], Callable[..., S]]:
    """Make ``socketpair``, ``create_connection``, ``create_server`` and ``fromfd``
    that build instances of one backend's ``Socket``."""

    def socketpair(family: Optional[int] = None, type: int = SOCK_STREAM,
                   proto: int = 0) -> Tuple[S, S]:
        """A pair of connected sockets, as :func:`socket.socketpair`."""
        if family is None:
            family = AF_UNIX if hasattr(_stdsocket, "AF_UNIX") else AF_INET
        a, b = _stdsocket.socketpair(family, type, proto)
        return take_over(cls, a), take_over(cls, b)

    def fromfd(fd: int, family: int, type: int, proto: int = 0) -> S:
        """A Socket on a duplicate of ``fd``, as :func:`socket.fromfd`."""
        return cls(family, type, proto, fileno=os.dup(fd))

    def create_connection(address: Tuple[Any, int], timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
                          source_address: Optional[Tuple[Any, int]] = None) -> S:
        """Connect to a TCP ``(host, port)``, trying each resolved address in
        turn, as :func:`socket.create_connection`."""
        host, port = address
        error: Optional[OSError] = None
        for family, kind, proto, _, sockaddr in _stdsocket.getaddrinfo(host, port, 0, SOCK_STREAM):
            sock = None
            try:
                sock = cls(family, kind, proto)
                if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                error = exc
                if sock is not None:
                    sock.close()
        if error is not None:
            try:
                raise error
            finally:
                error = None  # break the traceback's reference cycle
        raise OSError("getaddrinfo returned an empty list")

    def create_server(address: Address, *, family: int = AF_INET, backlog: Optional[int] = None,
                      reuse_port: bool = False, dualstack_ipv6: bool = False) -> S:
        """A listening TCP socket bound to ``address``, as :func:`socket.create_server`."""
        if reuse_port and not hasattr(_stdsocket, "SO_REUSEPORT"):
            raise ValueError("SO_REUSEPORT not supported on this platform")
        if dualstack_ipv6:
            if not _stdsocket.has_dualstack_ipv6():
                raise ValueError("dualstack_ipv6 not supported on this platform")
            if family != AF_INET6:
                raise ValueError("dualstack_ipv6 requires AF_INET6 family")
        sock = cls(family, SOCK_STREAM)
        try:
            if os.name not in ("nt", "cygwin") and hasattr(_stdsocket, "SO_REUSEADDR"):
                try:
                    sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
                except OSError:
                    pass  # not every family has it (AF_UNIX on some systems)
            if reuse_port:
                sock.setsockopt(SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
            if family == AF_INET6 and hasattr(_stdsocket, "IPPROTO_IPV6"):
                sock.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY,
                                0 if dualstack_ipv6 else 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(exc.errno, f"{exc.strerror} (while attempting to bind on "
                                         f"address {address!r})") from None
            if backlog is None:
                sock.listen()
            else:
                sock.listen(backlog)
            return sock
        except BaseException:
            sock.close()
            raise

    return socketpair, create_connection, create_server, fromfd


# ---------------------------------------------------------------- sendfile


def _check_sendfile_args(sock: SocketLike, file: Any, offset: int, count: Optional[int]) -> None:
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if not sock.type & SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")


def _wait_writable(fd: int, timeout: Optional[float]) -> None:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        ready = bool(poller.poll(None if timeout is None else timeout * 1000.0))
    else:
        ready = bool(select.select([], [fd], [], timeout)[1])
    if not ready:
        raise _stdsocket.timeout("timed out")


def sendfile(sock: SocketLike, file: Any, offset: int = 0, count: Optional[int] = None) -> int:
    """Send a file with the kernel's zero-copy ``sendfile`` where the platform
    has it, else by reading and sending; the semantics of :meth:`socket.socket.sendfile`."""
    _check_sendfile_args(sock, file, offset, count)
    if sock.gettimeout() == 0:
        raise ValueError("non-blocking sockets are not supported")
    if offset:
        file.seek(offset)
    try:
        in_fd = file.fileno()
        size = os.fstat(in_fd).st_size
    except (AttributeError, io.UnsupportedOperation, OSError):
        in_fd = -1
    if in_fd < 0 or not hasattr(os, "sendfile"):
        return _sendfile_by_copy(sock, file, offset, count)
    if not size:
        return 0
    timeout = sock.gettimeout()
    block = min(count or size, _SENDFILE_BLOCK)
    total = 0
    try:
        while count is None or total < count:
            if count is not None:
                block = min(count - total, block)
            if timeout:
                _wait_writable(sock.fileno(), timeout)
            try:
                sent = os.sendfile(sock.fileno(), in_fd, offset, block)
            except BlockingIOError:
                if not timeout:
                    _wait_writable(sock.fileno(), None)
                continue
            except OSError:
                if total == 0:  # e.g. a file system without sendfile support
                    return _sendfile_by_copy(sock, file, offset, count)
                raise
            if sent == 0:
                break
            offset += sent
            total += sent
        return total
    finally:
        if total > 0 and hasattr(file, "seek"):
            file.seek(offset)


def _sendfile_by_copy(sock: SocketLike, file: Any, offset: int, count: Optional[int]) -> int:
    block = min(count, 8192) if count else 8192
    total = 0
    try:
        while count is None or total < count:
            if count is not None:
                block = min(count - total, block)
            data = memoryview(file.read(block))
            if not data:
                break
            sock.sendall(data)
            total += len(data)
        return total
    finally:
        if total > 0 and hasattr(file, "seek"):
            file.seek(offset + total)


# ---------------------------------------------------------------- addresses


def resolve_host(host: Union[str, bytes, bytearray], family: int) -> Tuple[str, int]:
    """Resolve a host name that is not a numeric address: ``(numeric, scope_id)``.

    The C backend parses numeric hosts itself and asks this only for names,
    so both backends resolve through the same getaddrinfo call.
    """
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("idna")
    if family == AF_INET6 and host == "":
        return "::", 0
    if host == "<broadcast>":
        raise _stdsocket.gaierror(_stdsocket.EAI_NONAME, "Name or service not known")
    infos = _stdsocket.getaddrinfo(host, None, family, _stdsocket.SOCK_DGRAM)
    sockaddr: Tuple[Any, ...] = infos[0][4]
    return str(sockaddr[0]), (int(sockaddr[3]) if family == AF_INET6 else 0)
