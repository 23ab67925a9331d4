# cython: language_level=3
"""zerosock.aio on the C backend: the standard library's selector event loop
(TLS, subprocesses, signals, executors, happy eyeballs unchanged) polling with
zerosock's C selector, with C socket transports and its iteration in C."""

import asyncio
from asyncio import base_events, sslproto

from zerosock import _aio_shared
from zerosock._aio_core_c import run_once
from zerosock._aio_transport_c import SocketTransport
from zerosock._selectors_c import DefaultSelector

__all__ = ["EventLoop", "EventLoopPolicy", "install", "new_event_loop", "run"]


class _SendfileFallbackProtocol(base_events._SendfileFallbackProtocol):
    """The stdlib's, accepting the C transport (its flow control is built in)."""

    def __init__(self, transp):
        self._transport = transp
        self._proto = transp.get_protocol()
        self._should_resume_reading = transp.is_reading()
        self._should_resume_writing = transp._protocol_paused
        transp.pause_reading()
        transp.set_protocol(self)
        if self._should_resume_writing:
            self._write_ready_fut = self._transport._loop.create_future()
        else:
            self._write_ready_fut = None


class EventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on zerosock's C selector, transports and loop core."""

    def __init__(self, selector=None):
        if selector is None:
            selector = DefaultSelector()
        super().__init__(selector)

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None,
                            server=None, **timeouts):
        # The stdlib's TLS protocol over the C transport.
        ssl_protocol = sslproto.SSLProtocol(self, protocol, sslcontext, waiter, server_side,
                                            server_hostname, **timeouts)
        SocketTransport(self, rawsock, ssl_protocol, None, extra, server)
        return ssl_protocol._app_transport

    async def _sendfile_fallback(self, transp, file, offset, count):
        if not isinstance(transp, SocketTransport):
            return await super()._sendfile_fallback(transp, file, offset, count)
        # The stdlib's fallback, with the protocol above.
        if offset:
            file.seek(offset)
        blocksize = min(count, 16384) if count else 16384
        buf = bytearray(blocksize)
        total_sent = 0
        proto = _SendfileFallbackProtocol(transp)
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        return total_sent
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    return total_sent
                await proto.drain()
                transp.write(view[:read])
                total_sent += read
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset + total_sent)
            await proto.restore()

    def _run_once(self):
        if self._debug:
            # Debug mode times callbacks and tracks the current handle: the stdlib does it.
            return super()._run_once()
        run_once(self)


class EventLoopPolicy(_aio_shared.BasePolicy):
    """An event loop policy whose loops are :class:`EventLoop`."""

    _loop_factory = EventLoop


def new_event_loop():
    """A new, unstarted zerosock event loop."""
    return EventLoop()


def install():
    """Make zerosock's policy the current one: ``asyncio.new_event_loop()`` gives its loops."""
    _aio_shared.install_policy(EventLoopPolicy)


def run(main, *, debug=None):
    """Run a coroutine to completion on a new zerosock loop, as :func:`asyncio.run` does."""
    return _aio_shared.run_with(new_event_loop, EventLoopPolicy, main, debug)
