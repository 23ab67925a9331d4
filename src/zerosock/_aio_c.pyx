# cython: language_level=3
"""zerosock.aio on the C backend: the standard library's selector event loop
(TLS, subprocesses, signals, executors, happy eyeballs unchanged) polling with
zerosock's C selector, with C socket transports and its iteration in C."""

import asyncio
import socket
import sys

from zerosock import _aio_shared, _aio_tls_c
from zerosock._aio_core_c cimport LoopCore
from zerosock import _aio_accept_c
from zerosock._aio_datagram_c import DatagramSocketTransport
from zerosock._aio_ring_c import RingSelector, RingTransportCore, ring_of
from zerosock import _aio_loop_methods_c as loop_methods
from zerosock._aio_loop_methods_c import bind_loop_methods
from zerosock._aio_streams_c import adopt_stream_protocol
from zerosock._aio_tls_c import TLS_ENGINE, new_ssl_protocol
from zerosock import _aio_transport_c
from zerosock._aio_transport_c import (SocketTransport, TransportCore, TransportTable,
                                      stream_core_type)
from zerosock._selectors_c import DefaultSelector

__all__ = ["EventLoop", "EventLoopPolicy", "IO_BACKEND", "IO_BACKEND_REASON", "TLS_ENGINE",
           "install", "new_event_loop", "run"]


_uring_verdict = []  # the probe's answer, asked once: the kernel's answer does not change


def _uring_unavailable():
    """None when a loop can run on io_uring here, else why not."""
    if not _uring_verdict:
        from zerosock import _uring_c
        _uring_verdict.append(_uring_c.unavailable_reason())
    return _uring_verdict[0]


# What a new loop polls with ("epoll" or "uring"), and why.
IO_BACKEND, IO_BACKEND_REASON = _aio_shared.resolve_io(_aio_shared.requested_io(),
                                                       _uring_unavailable)


# From 3.12 the interpreter specializes the stdlib's reads of a loop's
# attributes (self._stopping, self._ready, ...) on a class with __slots__ only
# when the instance's dict is its own, not one sharing the class's keys
# (3.11 specializes the method loads then, and the reads not).
_OWN_DICT_SPECIALIZES = sys.version_info >= (3, 12)


def _new_selector(str io):
    return RingSelector() if io == "uring" else DefaultSelector()

# The socket methods through which the stdlib's transports do their I/O.
_STREAM_IO = ("recv", "recv_into", "send", "sendmsg")
_DATAGRAM_IO = ("recv", "recvfrom", "recvfrom_into", "send", "sendto")


def _replaces_io(sock, names):
    """Whether ``sock`` (a socket subclass, or an instance given its own
    methods) replaces one of the methods the stdlib's transport calls for
    its I/O, where ours makes the system calls itself."""
    kind = type(sock)
    if kind is socket.socket:
        return False
    own = getattr(sock, "__dict__", {})
    return any(name in own or getattr(kind, name, None) is not getattr(socket.socket, name, None)
               for name in names)


def _given(**keywords):
    """The keywords that are not None: what a stdlib method before 3.15 takes."""
    return {name: value for name, value in keywords.items() if value is not None}


class EventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on zerosock's C selector, transports and loop core."""

    # Read from C by the loop's C methods at each call: slots, not __dict__ entries.
    __slots__ = ("_core", "_debug", "_closed", "_task_factory")

    # What asyncio's C Futures and Tasks and the frameworks call for every
    # request: C method descriptors (zerosock._aio_loop_methods_c) that do the
    # common case, an open loop outside debug mode, in C and hand every other
    # case to the stdlib's method.
    call_soon = loop_methods.call_soon
    call_later = loop_methods.call_later
    call_at = loop_methods.call_at
    _timer_handle_cancelled = loop_methods.timer_handle_cancelled
    get_debug = loop_methods.get_debug
    _run_once = loop_methods.run_once
    time = loop_methods.time
    create_future = loop_methods.create_future
    if loop_methods.create_task is not None:
        create_task = loop_methods.create_task
    # A listening socket's connections, accepted and given transports in C.
    _accept_connection = _aio_accept_c.accept_connection

    def __init__(self, selector=None):
        if selector is None:
            selector = _new_selector(IO_BACKEND)
        super().__init__(selector)
        # Plain stream transports on an io_uring run on its completions
        # (stream_core_type() decides, for accepted connections too).
        self._stream_core = TransportCore if ring_of(self) is None else RingTransportCore
        # fd -> transport, as the stdlib's WeakValueDictionary, the C transports entered in C.
        self._transports = TransportTable()
        if _OWN_DICT_SPECIALIZES:
            self.__dict__ = dict(self.__dict__)
        self._core = LoopCore(self)
        self._scheduled = self._core.timers
        bind_loop_methods(self)

    def _start_serving(self, protocol_factory, sock, *args, **kwargs):
        super()._start_serving(protocol_factory, sock, *args, **kwargs)
        # On io_uring the ring accepts the listener's connections itself.
        if self._stream_core is RingTransportCore:
            # (``context`` from 3.15, by keyword from the Server)
            context = kwargs.get("context", args[5] if len(args) > 5 else None)
            _aio_accept_c.accept_on_ring(self, sock, context)

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None,
                               context=None):
        # ``context``: from 3.15 the one the protocol's callbacks run in.
        if _replaces_io(sock, _STREAM_IO):
            # The caller watches or changes the socket's I/O: the stdlib's
            # transport calls those methods, as on stock asyncio.
            return super()._make_socket_transport(sock, protocol, waiter, extra=extra,
                                                  server=server, **_given(context=context))
        self._ensure_fd_no_transport(sock)  # as the stdlib does since 3.12
        adopt_stream_protocol(protocol, self)  # asyncio streams get the C ones
        return SocketTransport(self, sock, protocol, waiter, extra, server, context,
                               stream_core_type(self, protocol))

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        if (sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
                or _replaces_io(sock, _DATAGRAM_IO)):
            # Addresses of other families are the stdlib's to convert; a
            # socket with its own I/O methods gets them called.
            return super()._make_datagram_transport(sock, protocol, address, waiter, extra)
        self._ensure_fd_no_transport(sock)
        return DatagramSocketTransport(self, sock, protocol, address, waiter, extra)

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None,
                            server=None, context=None, **timeouts):
        # ``context``: from 3.15 the one the protocols' callbacks run in.
        if _replaces_io(rawsock, _STREAM_IO):
            return super()._make_ssl_transport(
                rawsock, protocol, sslcontext, waiter, server_side=server_side,
                server_hostname=server_hostname, extra=extra, server=server,
                **_given(context=context), **timeouts)
        # The TLS engine's protocol (zerosock's, or the stdlib's) over the C transport.
        self._ensure_fd_no_transport(rawsock)
        adopt_stream_protocol(protocol, self)
        ssl_protocol = new_ssl_protocol(self, protocol, sslcontext, waiter, server_side,
                                        server_hostname, **timeouts)
        SocketTransport(self, rawsock, ssl_protocol, None, extra, server, context)
        return ssl_protocol._app_transport

    async def start_tls(self, transport, protocol, sslcontext, **kwargs):
        # The stdlib's start_tls names its own TLS protocol: this one uses the engine's.
        if _aio_tls_c.TLS_ENGINE == "stdlib":
            return await super().start_tls(transport, protocol, sslcontext, **kwargs)
        return await _aio_tls_c.start_tls(self, transport, protocol, sslcontext, **kwargs)


_aio_accept_c.use_loop_class(EventLoop)
_aio_transport_c.use_loop_class(EventLoop)


class EventLoopPolicy(_aio_shared.BasePolicy):
    """An event loop policy whose loops are :class:`EventLoop`."""

    _loop_factory = EventLoop


def new_event_loop(io=None):
    """A new, unstarted zerosock event loop.

    ``io`` (``"epoll"`` or ``"uring"``; default :data:`IO_BACKEND`) is the I/O
    backend asked for: io_uring where the kernel allows it, else epoll,
    warning once with the reason."""
    if io is None:
        return EventLoop()
    return EventLoop(_new_selector(_aio_shared.resolve_io(io, _uring_unavailable)[0]))


def install():
    """Make zerosock's policy the current one: ``asyncio.new_event_loop()`` gives its loops."""
    _aio_shared.install_policy(EventLoopPolicy)


def run(main, *, debug=None):
    """Run a coroutine to completion on a new zerosock loop, as :func:`asyncio.run` does."""
    return _aio_shared.run_with(new_event_loop, EventLoopPolicy, main, debug)
