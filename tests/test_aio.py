"""zerosock.aio on both backends, with the standard library's loop as the reference.

Every test runs on three loops: zerosock's C loop (``c``), its Python loop
(``py``) and stock asyncio (``std``).  Loopback only, bounded, no timing assertions.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import hashlib
import os
import socket
import ssl
import struct
import sys
import tempfile
import threading
import warnings
from typing import Any, Callable, Coroutine, List, Optional, Tuple

import pytest
from _aio_loops import TIMEOUT, run, stdlib_loop
from _kernel import pin_buffers

from zerosock import _api



class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class BufferedEcho(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buf = bytearray(4096)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.transport.write(bytes(self.buf[:nbytes]))


class Collector(asyncio.Protocol):
    """Collects what it receives; ``done`` resolves at connection_lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.chunks: List[bytes] = []
        self.made = loop.create_future()
        self.done = loop.create_future()
        self.eof = False
        self.lost_calls = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> Optional[bool]:
        self.eof = True
        return None

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost_calls += 1
        if not self.done.done():
            self.done.set_result(exc)

    def data(self) -> bytes:
        return b"".join(self.chunks)


# -- the API ----------------------------------------------------------------

def test_aio_exports_the_contract(zs):
    for name in _api.AIO_NAMES:
        assert hasattr(zs.aio, name), f"{zs.BACKEND} aio lacks {name}"
    import zerosock.aio
    assert set(_api.AIO_NAMES) <= set(zerosock.aio.__all__)


def test_loop_is_a_selector_event_loop_on_our_selector(zs):
    loop = zs.aio.new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        if zs.aio.IO_BACKEND == "uring":  # the C selector over a ring
            assert type(loop._selector).__name__ == "RingSelector"
            assert isinstance(loop._selector, zs.selectors.BaseSelector)
        else:
            assert type(loop._selector).__module__.startswith("zerosock._selectors_")
            assert type(loop._selector).__module__ == zs.selectors.DefaultSelector.__module__
    finally:
        loop.close()


def test_run_and_policy(zs):
    async def main() -> type:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert zs.aio.run(main()) is zs.aio.EventLoop
    with warnings.catch_warnings():
        # install() is the policy mechanism, which 3.14 deprecates (tests/test_aio_warnings.py).
        warnings.simplefilter("ignore", DeprecationWarning)
        old = asyncio.get_event_loop_policy()
        try:
            zs.aio.install()
            assert isinstance(asyncio.get_event_loop_policy(), zs.aio.EventLoopPolicy)
            loop = asyncio.new_event_loop()
            try:
                assert isinstance(loop, zs.aio.EventLoop)
            finally:
                loop.close()
            assert asyncio.run(main()) is zs.aio.EventLoop
        finally:
            asyncio.set_event_loop_policy(old)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="loop_factory is new in 3.12")
def test_asyncio_run_loop_factory(zs):
    async def main() -> type:
        return type(asyncio.get_running_loop())

    assert asyncio.run(main(), loop_factory=zs.aio.new_event_loop) is zs.aio.EventLoop


def test_run_debug_flag(zs):
    async def main() -> bool:
        return asyncio.get_running_loop().get_debug()

    assert zs.aio.run(main(), debug=True) is True


# -- echo ---------------------------------------------------------------------

async def _echo_roundtrips(protocol_factory: Callable[[], asyncio.BaseProtocol],
                           family: str = "tcp") -> None:
    loop = asyncio.get_running_loop()
    tmp = None
    if family == "unix":
        tmp = tempfile.mkdtemp()
        path = os.path.join(tmp, "s")
        server = await loop.create_unix_server(protocol_factory, path)
        reader, writer = await asyncio.open_unix_connection(path)
    else:
        server = await loop.create_server(protocol_factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for size in (1, 64, 1024, 100_000):
            payload = os.urandom(size)
            writer.write(payload)
            assert await reader.readexactly(size) == payload
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        if tmp is not None:
            if os.path.exists(path):  # 3.13 servers remove their socket file
                os.unlink(path)
            os.rmdir(tmp)


def test_echo_protocol(loop_factory):
    run(loop_factory, _echo_roundtrips(Echo))


def test_echo_buffered_protocol(loop_factory):
    run(loop_factory, _echo_roundtrips(BufferedEcho))


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
def test_echo_unix(loop_factory):
    run(loop_factory, _echo_roundtrips(Echo, "unix"))


def test_echo_streams(loop_factory):
    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(100):
            writer.write(b"line %d\n" % i)
            await writer.drain()
            assert await reader.readline() == b"LINE %d\n" % i
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop_factory, main())


# -- flow control -------------------------------------------------------------

def test_large_write_to_slow_reader_is_bounded_and_complete(loop_factory):
    total = 8 * 1024 * 1024
    chunk = 256 * 1024
    high = 64 * 1024

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen_sizes: List[int] = []
        sent_digest = hashlib.sha256()

        async def produce(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.transport.set_write_buffer_limits(high=high)
            assert writer.transport.get_write_buffer_limits()[1] == high
            for i in range(total // chunk):
                block = bytes([i % 251]) * chunk
                sent_digest.update(block)
                writer.write(block)
                seen_sizes.append(writer.transport.get_write_buffer_size())
                await writer.drain()
                assert writer.transport.get_write_buffer_size() <= high
            writer.close()

        server = await asyncio.start_server(produce, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        got = hashlib.sha256()
        received = 0
        while True:
            await asyncio.sleep(0.001)  # a slow reader
            data = await loop.sock_recv(sock, 65536)
            if not data:
                break
            received += len(data)
            got.update(data)
        sock.close()
        assert received == total
        assert got.digest() == sent_digest.digest()
        # The write buffer never held more than what one write() added above the limit.
        assert max(seen_sizes) <= high + chunk
        server.close()
        await server.wait_closed()

    run(loop_factory, main())


def test_peer_that_never_reads_pauses_the_writer_and_loses_nothing(loop_factory):
    """A peer that stops reading: the writer is paused with bounded memory,
    and once the peer reads again every byte arrives, in order."""
    chunk = 64 * 1024
    high = 128 * 1024

    class Producer(asyncio.Protocol):
        def __init__(self) -> None:
            self.paused = asyncio.get_running_loop().create_future()
            self.digest = hashlib.sha256()
            self.sent = 0
            self.peak = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            transport.set_write_buffer_limits(high=high)  # type: ignore[attr-defined]
            for i in range(1000):  # bounded: stops at the first pause
                if self.paused.done():
                    break
                block = bytes([i % 251]) * chunk
                self.digest.update(block)
                self.sent += len(block)
                transport.write(block)  # type: ignore[attr-defined]
                self.peak = max(self.peak, transport.get_write_buffer_size())  # type: ignore[attr-defined]

        def pause_writing(self) -> None:
            if not self.paused.done():
                self.paused.set_result(None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        producers: List[Producer] = []

        def factory() -> Producer:
            producers.append(Producer())
            return producers[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sock = socket.create_connection(("127.0.0.1", port))
        try:
            while not producers:
                await asyncio.sleep(0.01)
            producer = producers[0]
            await asyncio.wait_for(producer.paused, 10)  # the peer has read nothing yet
            assert producer.peak <= high + chunk  # memory bounded by the limits
            producer.transport.close()  # close after flushing what is queued
            sock.setblocking(False)
            got = hashlib.sha256()
            received = 0
            while received < producer.sent:
                data = await loop.sock_recv(sock, 1 << 16)
                if not data:
                    break
                received += len(data)
                got.update(data)
            assert received == producer.sent
            assert got.digest() == producer.digest.digest()
        finally:
            sock.close()
            server.close()
            await server.wait_closed()

    run(loop_factory, main())


def test_pause_writing_and_resume_writing_are_called(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        events: List[str] = []
        resumed = loop.create_future()

        class Writer(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                transport.set_write_buffer_limits(high=16384, low=4096)
                while "pause" not in events:
                    transport.write(b"x" * 65536)

            def pause_writing(self) -> None:
                events.append("pause")

            def resume_writing(self) -> None:
                events.append("resume")
                assert self.transport.get_write_buffer_size() <= 4096
                if not resumed.done():
                    resumed.set_result(None)

        a, b = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(Writer, a)
        b.setblocking(False)
        while not resumed.done():
            try:
                await loop.sock_recv(b, 1 << 20)
            except BlockingIOError:
                pass
            await asyncio.sleep(0)
        assert events[:2] == ["pause", "resume"]
        transport.close()
        b.close()

    run(loop_factory, main())


@pytest.mark.parametrize("how", ["close", "abort", "failed_write"])
def test_resume_writing_that_closes_the_transport_ends_it_once(loop_factory, how):
    """resume_writing() closing or aborting its transport, or writing to a
    peer that is gone: connection_lost once, with the write's error if one
    ended it, nothing logged.  Stock asyncio before CPython gh-156512 also
    calls it from the write path, with None, and the call that close() or
    the failed write scheduled then fails: a reset peer (met over a real
    link in tests/test_link_faults.py) is reported as a clean close."""
    errors: List[dict] = []

    async def main() -> Tuple[List[Optional[BaseException]], bool]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        lost: List[Optional[BaseException]] = []

        class Closer(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                transport.set_write_buffer_limits(high=16384, low=0)  # resumed when empty
                while transport.get_write_buffer_size() <= 16384:
                    transport.write(b"x" * 65536)

            def resume_writing(self) -> None:
                if how == "failed_write":
                    b.shutdown(socket.SHUT_RD)  # the peer reads no more: EPIPE
                    self.transport.write(b"x")
                else:
                    getattr(self.transport, how)()

            def connection_lost(self, exc: Optional[BaseException]) -> None:
                lost.append(exc)

        a, b = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(Closer, a)
        stock = isinstance(transport, asyncio.selector_events._SelectorTransport)
        b.setblocking(False)
        while not lost:
            try:
                await loop.sock_recv(b, 1 << 20)
            except BlockingIOError:
                pass
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        b.close()
        return lost, stock

    lost, stock = run(loop_factory, main())
    if errors and stock:
        pytest.xfail("stock asyncio's transports: CPython gh-156512")
    assert [type(exc) for exc in lost] == [BrokenPipeError if how == "failed_write" else type(None)]
    assert errors == []


def test_pause_and_resume_reading(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        proto = Collector(loop)
        transport, _ = await loop.connect_accepted_socket(lambda: proto, a)
        assert transport.is_reading()
        transport.pause_reading()
        transport.pause_reading()  # idempotent
        assert not transport.is_reading()
        b.sendall(b"hello")
        for _ in range(20):
            await asyncio.sleep(0)
        assert proto.chunks == []
        transport.resume_reading()
        transport.resume_reading()
        assert transport.is_reading()
        while proto.data() != b"hello":
            await asyncio.sleep(0.001)
        transport.close()
        assert not transport.is_reading()
        assert await proto.done is None
        b.close()

    run(loop_factory, main())


# -- half-close, abort, errors -----------------------------------------------

def test_write_eof_half_close(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        proto = Collector(loop)
        transport, _ = await loop.connect_accepted_socket(lambda: proto, a)
        assert transport.can_write_eof()
        transport.write(b"request")
        transport.write_eof()
        transport.write_eof()  # idempotent
        with pytest.raises(RuntimeError):
            transport.write(b"more")
        b.setblocking(False)
        got = b""
        while True:
            data = await loop.sock_recv(b, 100)
            if not data:
                break
            got += data
        assert got == b"request"
        # The other direction still works after our EOF.
        await loop.sock_sendall(b, b"response")
        b.shutdown(socket.SHUT_WR)
        assert await proto.done is None
        assert proto.data() == b"response" and proto.eof
        b.close()

    run(loop_factory, main())


def test_abort_drops_pending_data_and_calls_connection_lost_once(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        proto = Collector(loop)
        transport, _ = await loop.connect_accepted_socket(lambda: proto, a)
        transport.set_write_buffer_limits(high=1 << 30)
        while transport.get_write_buffer_size() == 0:
            transport.write(b"y" * 65536)
        transport.abort()
        assert transport.is_closing()
        assert transport.get_write_buffer_size() == 0
        transport.close()
        transport.abort()
        assert await proto.done is None
        await asyncio.sleep(0)
        assert proto.lost_calls == 1
        b.close()

    run(loop_factory, main())


def test_close_twice_and_write_after_close(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        proto = Collector(loop)
        transport, _ = await loop.connect_accepted_socket(lambda: proto, a)
        transport.write(b"last words")
        transport.close()
        transport.close()
        assert transport.is_closing()
        transport.write(b"ignored")  # the stdlib ignores it silently (a warning after many)
        assert await proto.done is None
        await asyncio.sleep(0)
        assert proto.lost_calls == 1
        b.setblocking(False)
        assert await loop.sock_recv(b, 100) == b"last words"
        b.close()

    run(loop_factory, main())


def test_peer_reset_mid_write(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        proto = Collector(loop)
        transport, _ = await loop.create_connection(lambda: proto, "127.0.0.1", port)
        peer, _ = listener.accept()
        listener.close()
        held = pin_buffers(transport.get_extra_info("socket"), peer)
        transport.write(b"z" * (16 * held))  # more than the kernel buffers take
        assert transport.get_write_buffer_size() > 0
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # RST
        exc = await proto.done
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert proto.lost_calls == 1
        await asyncio.sleep(0)
        assert loop.is_running()

    errors: List[dict] = []
    run(loop_factory, main(), handler=lambda loop, ctx: errors.append(ctx))
    assert errors == []  # OSErrors are not reported through the handler, as in the stdlib


@pytest.mark.parametrize("method", ["data_received", "get_buffer", "buffer_updated",
                                    "eof_received"])
def test_protocol_method_that_raises_is_reported(loop_factory, method):
    class Boom(Exception):
        pass

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        lost = loop.create_future()
        buf = bytearray(100)

        base: Any = asyncio.BufferedProtocol if method in ("get_buffer", "buffer_updated") \
            else asyncio.Protocol

        class Faulty(base):
            def connection_lost(self, exc: Optional[BaseException]) -> None:
                lost.set_result(exc)

        def fail(*args: Any) -> Any:
            raise Boom()

        def give_buffer(self: Any, hint: int) -> bytearray:
            return buf

        if base is asyncio.BufferedProtocol:
            Faulty.get_buffer = give_buffer  # type: ignore[assignment]
            Faulty.buffer_updated = lambda self, n: None  # type: ignore[assignment]
        setattr(Faulty, method, fail)
        a, b = socket.socketpair()
        await loop.connect_accepted_socket(Faulty, a)
        if method == "eof_received":
            b.shutdown(socket.SHUT_WR)
        else:
            b.sendall(b"data")
        exc = await lost
        b.close()
        await asyncio.sleep(0)
        return exc

    errors: List[dict] = []
    exc = run(loop_factory, main(), handler=lambda loop, ctx: errors.append(ctx))
    assert isinstance(exc, Boom)
    assert len(errors) == 1
    assert isinstance(errors[0]["exception"], Boom)
    assert method in errors[0]["message"]
    assert "transport" in errors[0] and "protocol" in errors[0]


def test_write_rejects_non_bytes(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, proto = await loop.connect_accepted_socket(lambda: Collector(loop), a)
        with pytest.raises(TypeError):
            transport.write("text")
        transport.write(memoryview(b"abc"))
        transport.write(bytearray(b"def"))
        transport.write(b"")
        transport.close()
        await proto.done
        assert b.recv(10) == b"abcdef"
        b.close()

    run(loop_factory, main())


def test_write_of_unusable_buffers_is_checked_as_the_stdlib_does(loop_factory):
    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, proto = await loop.connect_accepted_socket(lambda: Collector(loop), a)
        released = memoryview(b"abc")
        released.release()
        with pytest.raises(ValueError):
            transport.write(released)
        transport.write(memoryview(b"\0" * 8).cast("I"))  # two 4-byte items
        transport.write(memoryview(bytearray(b"xy")).toreadonly())
        transport.write(memoryview(b"0123456789")[::2])  # not contiguous: fatal
        exc = await proto.done
        data = b.recv(100)
        b.close()
        return [type(exc), data]

    errors: List[dict] = []
    kind, data = run(loop_factory, main(), handler=lambda loop, ctx: errors.append(ctx))
    with socket.socket() as sock, pytest.raises(Exception) as raised:
        sock.send(memoryview(b"0123456789")[::2])  # what the stdlib transport meets
    assert kind is raised.type
    assert data == b"\0" * 8 + b"xy"
    assert len(errors) == 1 and type(errors[0]["exception"]) is raised.type


@pytest.mark.parametrize("make, error, message", [
    pytest.param(bytearray, RuntimeError, "Fatal error: protocol.get_buffer() call failed.",
                 id="empty"),
    pytest.param(lambda: bytes(16), TypeError, "Fatal read error on socket transport",
                 id="bytes"),
    pytest.param(lambda: memoryview(bytearray(16)).toreadonly(), TypeError,
                 "Fatal read error on socket transport", id="readonly-view"),
    pytest.param(lambda: memoryview(bytearray(32))[::2], TypeError,
                 "Fatal read error on socket transport", id="strided-view"),
])
def test_get_buffer_returning_an_unusable_buffer_is_an_error(loop_factory, make, error, message):
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        lost = loop.create_future()

        class Unusable(asyncio.BufferedProtocol):
            def get_buffer(self, hint: int) -> Any:
                return make()

            def buffer_updated(self, n: int) -> None:
                pass

            def connection_lost(self, exc: Optional[BaseException]) -> None:
                lost.set_result(exc)

        a, b = socket.socketpair()
        await loop.connect_accepted_socket(Unusable, a)
        b.sendall(b"x")
        exc = await lost
        b.close()
        return exc

    errors: List[dict] = []
    exc = run(loop_factory, main(), handler=lambda loop, ctx: errors.append(ctx))
    assert isinstance(exc, error)
    assert len(errors) == 1 and errors[0]["message"] == message


def test_buffered_protocol_reads_into_every_kind_of_writable_buffer(loop_factory):
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        got = bytearray()
        done = loop.create_future()
        kinds = [lambda: bytearray(3), lambda: memoryview(bytearray(5)),
                 lambda: memoryview(bytearray(8)).cast("I"), lambda: memoryview(bytearray(10))[2:6]]

        class Rotating(asyncio.BufferedProtocol):
            count = 0

            def get_buffer(self, hint: int) -> Any:
                self.buf = kinds[self.count % len(kinds)]()
                self.count += 1
                return self.buf

            def buffer_updated(self, n: int) -> None:
                got.extend(memoryview(self.buf).cast("B")[:n])

            def eof_received(self) -> None:
                done.set_result(bytes(got))

        a, b = socket.socketpair()
        await loop.connect_accepted_socket(Rotating, a)
        payload = bytes(range(256)) * 4
        for i in range(0, len(payload), 37):
            b.sendall(payload[i:i + 37])
            await asyncio.sleep(0)
        b.shutdown(socket.SHUT_WR)
        result = await done
        b.close()
        assert result == payload
        return result

    run(loop_factory, main())


def test_extra_info_and_protocol_swap(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        proto = Collector(loop)
        transport, _ = await loop.create_connection(lambda: proto, *addr)
        assert transport.get_extra_info("peername") == addr
        assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
        assert transport.get_extra_info("socket").fileno() >= 0
        assert transport.get_extra_info("nonexistent", 42) == 42
        assert transport.get_protocol() is proto
        other = Collector(loop)
        transport.set_protocol(other)
        assert transport.get_protocol() is other
        transport.write(b"ping")
        while other.data() != b"ping":
            await asyncio.sleep(0.001)
        assert proto.chunks == []
        transport.close()
        await other.done
        server.close()
        await server.wait_closed()

    run(loop_factory, main())


# -- loop behaviour -----------------------------------------------------------

def test_stop_from_another_thread(loop_factory):
    loop = loop_factory()
    try:
        started = threading.Event()
        loop.call_soon(started.set)

        def stopper() -> None:
            started.wait(TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)

        thread = threading.Thread(target=stopper)
        thread.start()
        loop.run_forever()
        thread.join()
        assert not loop.is_running()
    finally:
        loop.close()


def test_call_soon_threadsafe_from_many_threads(loop_factory):
    async def main() -> int:
        loop = asyncio.get_running_loop()
        count = 0
        done = loop.create_future()
        per_thread, threads = 2000, 8

        def bump() -> None:
            nonlocal count
            count += 1
            if count == per_thread * threads:
                done.set_result(None)

        def worker() -> None:
            for _ in range(per_thread):
                loop.call_soon_threadsafe(bump)

        workers = [threading.Thread(target=worker) for _ in range(threads)]
        for t in workers:
            t.start()
        await done
        for t in workers:
            t.join()
        return count

    assert run(loop_factory, main()) == 16000


def test_timers_run_in_order(loop_factory):
    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        order: List[Any] = []
        finished = loop.create_future()
        now = loop.time()
        for delay in (0.03, 0.01, 0.02, 0.0):
            loop.call_later(delay, order.append, delay)
        for i in range(3):
            loop.call_at(now + 0.04, order.append, f"same-{i}")
        cancelled = loop.call_later(0.015, order.append, "cancelled")
        cancelled.cancel()
        loop.call_soon(order.append, "soon")
        loop.call_at(now + 0.05, finished.set_result, None)
        await finished
        return order

    assert run(loop_factory, main()) == ["soon", 0.0, 0.01, 0.02, 0.03,
                                         "same-0", "same-1", "same-2"]


def _callback_order(loop: asyncio.AbstractEventLoop) -> List[Any]:
    """What runs when, in one loop: callbacks, zero-delay and past timers and
    I/O, each scheduling more of them from ready, timer and I/O callbacks."""
    log: List[Any] = []
    a, b = socket.socketpair()
    a.setblocking(False)

    def on_read() -> None:
        data = a.recv(16)
        log.append(("read", data))
        loop.call_soon(log.append, ("soon-from-read", data))
        loop.call_later(0, log.append, ("timer-from-read", data))
        if data == b"1":
            b.send(b"2")
        else:
            loop.call_later(0, loop.stop)

    def second() -> None:
        log.append("second")
        loop.call_soon(log.append, "soon-from-second")
        loop.call_later(0, log.append, "timer-from-second")

    def first() -> None:
        log.append("first")
        loop.call_soon(second)
        loop.call_later(0, log.append, "timer-from-first")
        loop.call_at(loop.time() - 1, log.append, "past-from-first")
        b.send(b"1")

    def from_timer() -> None:
        log.append("timer")
        loop.call_soon(log.append, "soon-from-timer")
        loop.call_later(0, log.append, "timer-from-timer")

    loop.add_reader(a, on_read)
    loop.call_soon(first)
    loop.call_later(0, from_timer)
    guard = loop.call_later(TIMEOUT, loop.stop)
    try:
        loop.run_forever()
    finally:
        guard.cancel()
        loop.remove_reader(a)
        a.close()
        b.close()
    return log


def test_callbacks_timers_and_io_run_in_the_stdlib_order(loop_factory):
    loop = loop_factory()
    try:
        got = _callback_order(loop)
    finally:
        loop.close()
    reference = stdlib_loop()
    try:
        expected = _callback_order(reference)
    finally:
        reference.close()
    assert got == expected
    assert ("read", b"2") in got


def test_ready_queue_is_the_loops_own_deque(loop_factory):
    """call_soon() queues on ``loop._ready`` and an iteration takes from it,
    so that code which edits the deque itself (as some libraries and the
    stdlib's tests do) sees and steers what runs next."""
    loop = loop_factory()
    log = []
    try:
        first = loop.call_soon(log.append, "first")
        second = loop.call_soon(log.append, "second")
        assert list(loop._ready) == [first, second]
        loop._ready.remove(second)
        front = asyncio.Handle(log.append, ("front",), loop)
        loop._ready.appendleft(front)
        loop.call_soon(log.append, "last")
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert log == ["front", "first", "last"]
        assert not loop._ready
    finally:
        loop.close()


def test_many_timers_with_ties_and_cancellations(loop_factory):
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        import random
        rng = random.Random(5)
        fired: List[Any] = []
        now = loop.time()
        handles = []
        for i in range(400):
            when = now + rng.randrange(20) * 0.001
            handles.append((when, i, loop.call_at(when, fired.append, (when, i))))
        cancelled = set(rng.sample(range(400), 150))
        for when, i, handle in handles:
            if i in cancelled:
                handle.cancel()
        assert all(h.when() == when for when, _, h in handles)
        done = loop.create_future()
        loop.call_at(now + 0.05, done.set_result, None)
        await done
        # Only wait_for's own timer may be left (and cancelled ones the stdlib keeps).
        return fired, cancelled, sum(1 for h in loop._scheduled
                                     if h.when() <= now + 1 and not h.cancelled())

    fired, cancelled, left = run(loop_factory, main())
    assert sorted(i for _, i in fired) == sorted(set(range(400)) - cancelled)
    assert [when for when, _ in fired] == sorted(when for when, _ in fired)
    assert left == 0


def test_cancelled_timers_are_dropped_from_a_large_heap(loop_factory):
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        far = [loop.call_later(3600, print, i) for i in range(200)]
        for handle in far[:150]:
            handle.cancel()
        before = len(loop._scheduled)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        after = len(loop._scheduled)
        for handle in far[150:]:
            handle.cancel()
        return before, after, [h.cancelled() for h in far[:3]]

    before, after, states = run(loop_factory, main())
    assert before - after == 150  # (wait_for's timer is there too)
    assert states == [True, True, True]


def test_call_later_and_call_at_check_arguments(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(TypeError):
            loop.call_later(None, print)
        with pytest.raises(TypeError):
            loop.call_later("1", print)
        if sys.version_info >= (3, 11):  # older asyncio accepts call_at(None)
            with pytest.raises(TypeError):
                loop.call_at(None, print)
        handle = loop.call_later(0, print)
        assert isinstance(handle, asyncio.TimerHandle) and handle.when() <= loop.time()
        handle.cancel()

    run(loop_factory, main())
    loop = loop_factory()
    loop.close()
    with pytest.raises(RuntimeError):
        loop.call_later(1, print)
    with pytest.raises(RuntimeError):
        loop.call_at(1, print)


def test_timers_follow_a_replaced_loop_time(loop_factory):
    loop = loop_factory()
    real = loop.time
    offset = [0.0]
    loop.time = lambda: real() + offset[0]  # type: ignore[method-assign]
    order: List[str] = []
    try:
        loop.call_later(1000, order.append, "far")
        handle = loop.call_later(2000, order.append, "farther")
        assert handle.when() > real() + 1500
        offset[0] = 1500.0  # the loop's clock jumps: the first timer is due, not the second
        loop.run_until_complete(asyncio.sleep(0.01))
        handle.cancel()
    finally:
        loop.close()
    assert order == ["far"]


def test_debug_mode_timers_and_slow_callback_warning(loop_factory, caplog):
    async def main() -> List[str]:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 0.0
        order: List[str] = []
        handle = loop.call_later(0.001, order.append, "later")
        assert handle._source_traceback
        loop.call_soon(order.append, "soon")
        await asyncio.sleep(0.01)
        return order

    loop = loop_factory()
    loop.set_debug(True)
    try:
        with caplog.at_level("WARNING", logger="asyncio"):
            order = loop.run_until_complete(main())
    finally:
        loop.close()
    assert order == ["soon", "later"]
    assert any("Executing" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kept_in", ["slot", "property"])
def test_debug_mode_set_while_running_is_followed_by_the_next_iteration(loop_factory, caplog,
                                                                        kept_in):
    # The iteration reads the loop's _debug as the stdlib's does, also when its
    # class is given another _debug after the loop was made (C reads the C
    # loop's slot only while the class keeps it).
    first = loop_factory()
    first.close()

    class Later(type(first)):  # type: ignore[misc]
        pass

    loop = Later()
    if kept_in == "property":
        def get(self: Any) -> bool:
            return bool(self.__dict__.get("debug_flag"))

        def put(self: Any, value: bool) -> None:
            self.__dict__["debug_flag"] = value  # the slot, if any, stays False

        Later._debug = property(get, put)  # type: ignore[attr-defined]

    async def main() -> None:
        running = asyncio.get_running_loop()
        running.slow_callback_duration = 0.0
        running.call_soon(lambda: None)
        await asyncio.sleep(0)
        assert not caplog.records
        running.set_debug(True)
        assert running.get_debug()
        running.call_soon(lambda: None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    try:
        with caplog.at_level("WARNING", logger="asyncio"):
            loop.run_until_complete(main())
    finally:
        loop.close()
    assert any("Executing" in r.getMessage() for r in caplog.records)


def test_exception_in_callback_keeps_loop_alive(loop_factory):
    async def main() -> str:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def bad() -> None:
            raise ValueError("boom")

        loop.call_soon(bad)
        loop.call_soon(fut.set_result, "alive")
        return await fut

    errors: List[dict] = []
    assert run(loop_factory, main(), handler=lambda loop, ctx: errors.append(ctx)) == "alive"
    assert len(errors) == 1 and isinstance(errors[0]["exception"], ValueError)


def test_udp_endpoint(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()

        class UdpEcho(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.transport.sendto(data.upper(), addr)

        got = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                got.set_result(data)

        server, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
        addr = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Client, remote_addr=addr)
        client.sendto(b"datagram")
        assert await got == b"DATAGRAM"
        client.close()
        server.close()

    run(loop_factory, main())


# -- TLS ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A self-signed certificate for localhost and its key, made for this test run."""
    x509 = pytest.importorskip("cryptography.x509")
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    cert_path, key_path = d / "cert.pem", d / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_contexts(tls_files: tuple) -> tuple:
    """A server context with that certificate and a client context that trusts it."""
    cert, key = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    return server_ctx, ssl.create_default_context(cafile=cert)


def test_tls_echo_and_start_tls(loop_factory, tls_contexts):
    server_ctx, client_ctx = tls_contexts

    async def main() -> None:
        server = await asyncio.start_server(_upper_handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname="localhost")
        big = os.urandom(20_000).hex().encode() + b"\n"
        for line in (b"hello\n", big):
            writer.write(line)
            await writer.drain()
            assert await reader.readline() == line.upper()
        assert writer.get_extra_info("ssl_object").version() is not None
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

        if not hasattr(asyncio.StreamWriter, "start_tls"):  # new in 3.11
            return
        # Upgrade a plain connection in place.
        plain = await asyncio.start_server(_starttls_handler(server_ctx), "127.0.0.1", 0)
        port = plain.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readline() == b"STARTTLS\n"
        await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(b"secret\n")
        assert await reader.readline() == b"SECRET\n"
        writer.close()
        await writer.wait_closed()
        plain.close()
        await plain.wait_closed()

    run(loop_factory, main())


async def _upper_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()


def _starttls_handler(ctx: ssl.SSLContext) -> Callable[..., Coroutine[Any, Any, None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"STARTTLS\n")
        await writer.drain()
        await writer.start_tls(ctx)
        await _upper_handler(reader, writer)
    return handle


def test_sendfile_on_transport(loop_factory, tmp_path):
    data = os.urandom(200_000)
    path = tmp_path / "blob"
    path.write_bytes(data)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        proto = Collector(loop)
        server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        with open(path, "rb") as f:
            assert await loop.sendfile(transport, f) == len(data)
        import io
        assert await loop.sendfile(transport, io.BytesIO(b"fallback")) == 8
        transport.close()
        await proto.done
        assert proto.data() == data + b"fallback"
        server.close()
        await server.wait_closed()

    run(loop_factory, main())


def test_subprocess_and_executor(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate(b"child")
        assert out == b"CHILD" and proc.returncode == 0
        assert await loop.run_in_executor(None, sum, [1, 2, 3]) == 6
        infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        assert infos[0][4] == ("127.0.0.1", 80)

    run(loop_factory, main())


def test_no_transport_leak(loop_factory):
    async def main() -> None:
        await _echo_roundtrips(Echo)

    run(loop_factory, main())
    gc.collect()
    leaked = [o for o in gc.get_objects()
              if type(o).__name__.endswith("SocketTransport") and getattr(o, "_sock", None)]
    assert leaked == []


@pytest.mark.c_extension
def test_c_loop_uses_c_transports_including_under_tls(c_backend, tls_contexts):
    server_ctx, client_ctx = tls_contexts

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server_sides: List[Collector] = []

        def tracked() -> Collector:
            server_sides.append(Collector(loop))
            return server_sides[-1]

        server = await loop.create_server(tracked, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        assert type(transport).__module__ == "zerosock._aio_transport_c"
        transport.close()
        tls_server = await loop.create_server(tracked, "127.0.0.1", 0, ssl=server_ctx)
        port = tls_server.sockets[0].getsockname()[1]
        tls, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port,
                                              ssl=client_ctx, server_hostname="localhost")
        raw = tls._ssl_protocol._transport
        assert type(raw).__module__ == "zerosock._aio_transport_c"
        tls.close()
        for side in server_sides:
            await side.made
            side.transport.close()  # 3.9's TLS transport warns unless closed by its user
            await side.done
        for s in (server, tls_server):
            s.close()
            await s.wait_closed()

    c_backend.aio.run(main())


def test_transport_is_an_asyncio_transport(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, proto = await loop.connect_accepted_socket(lambda: Collector(loop), a)
        assert isinstance(transport, asyncio.Transport)
        assert isinstance(transport, asyncio.WriteTransport)
        transport.close()
        await proto.done
        b.close()

    run(loop_factory, main())


def test_received_bytes_stay_intact_and_hash_right(loop_factory):
    # Equal-sized reads: a loop that reuses unreferenced bytes objects must never
    # touch one that a protocol kept, nor leave a stale cached hash.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        kept: List[bytes] = []
        sent: List[bytes] = []
        ack: "asyncio.Queue[None]" = asyncio.Queue()

        class Keeper(asyncio.Protocol):
            count = 0

            def data_received(self, data: bytes) -> None:
                assert hash(data) == hash(bytes(bytearray(data)))
                {data: 1}  # caches the hash
                Keeper.count += 1
                if Keeper.count % 2:
                    kept.append(data)
                else:
                    kept.append(bytes(bytearray(data)))
                ack.put_nowait(None)

        a, b = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(Keeper, a)
        b.setblocking(False)
        for i in range(50):
            msg = bytes([i]) * 100
            sent.append(msg)
            await loop.sock_sendall(b, msg)
            await ack.get()
        assert kept == sent
        transport.close()
        b.close()
        await asyncio.sleep(0)

    run(loop_factory, main())


def test_keyboard_interrupt_in_run_forever_keeps_pending_callbacks(loop_factory):
    loop = loop_factory()
    try:
        order: List[str] = []

        def interrupt() -> None:
            order.append("interrupt")
            raise KeyboardInterrupt

        a, b = socket.socketpair()
        b.send(b"x")  # makes a readable before the timers fire
        loop.add_reader(a, lambda: (order.append("io"), loop.remove_reader(a)))
        now = loop.time()
        loop.call_at(now, interrupt)
        loop.call_at(now, order.append, "timer after")
        loop.call_soon(order.append, "soon")
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
        assert not loop.is_running()
        loop.call_soon(loop.stop)
        loop.run_forever()  # the loop is still usable, and nothing was dropped
        assert order.count("timer after") == 1 and order.count("io") == 1
        assert order.index("interrupt") < order.index("timer after")
        a.close()
        b.close()
    finally:
        loop.close()


def test_write_buffer_limits_validation_and_failing_pause_writing(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()

        class BadPause(Collector):
            def pause_writing(self) -> None:
                raise ValueError("pause failed")

        a, b = socket.socketpair()
        transport, proto = await loop.connect_accepted_socket(lambda: BadPause(loop), a)
        with pytest.raises(ValueError):
            transport.set_write_buffer_limits(high=1, low=2)
        transport.set_write_buffer_limits(high=8, low=4)
        assert transport.get_write_buffer_limits() == (4, 8)
        transport.set_write_buffer_limits(low=100)
        assert transport.get_write_buffer_limits() == (100, 400)
        transport.set_write_buffer_limits(high=1024)
        while transport.get_write_buffer_size() <= 1024:
            transport.write(b"w" * 65536)
        assert not transport.is_closing()  # a failing pause_writing() is only reported
        transport.abort()
        await proto.done
        b.close()

    errors: List[dict] = []
    run(loop_factory, main(), handler=lambda loop, ctx: errors.append(ctx))
    assert [e["message"] for e in errors] == ["protocol.pause_writing() failed"]
    assert isinstance(errors[0]["exception"], ValueError)


def test_transport_repr_before_and_after_close(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, proto = await loop.connect_accepted_socket(lambda: Collector(loop), a)
        name = type(transport).__name__
        assert repr(transport).startswith(f"<{name} fd=")
        assert "read=polling" in repr(transport)
        transport.close()
        await proto.done
        assert repr(transport).startswith(f"<{name} closed fd=")
        b.close()

    run(loop_factory, main())


# -- what tests and instrumentation replace ------------------------------------------

async def _socketpair_transport(loop: asyncio.AbstractEventLoop) -> tuple:
    a, b = socket.socketpair()
    transport, proto = await loop.connect_accepted_socket(lambda: Collector(loop), a)
    return transport, proto, b


@pytest.mark.parametrize("base, name, args", [
    (asyncio.BaseTransport, "get_extra_info", ("sockname",)),
    (asyncio.transports._FlowControlMixin, "get_write_buffer_limits", ()),  # type: ignore[attr-defined]
    (asyncio.transports._FlowControlMixin, "set_write_buffer_limits", (1024,)),  # type: ignore[attr-defined]
])
def test_patched_base_transport_method_reaches_the_transport(loop_factory, base, name, args):
    """What the stdlib's transport inherits from asyncio.transports (a test
    may patch it there) is inherited here too."""
    from unittest import mock

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for make in (_socketpair_transport, _udp_transport):
            transport, proto, peer = await make(loop)
            with mock.patch.object(base, name, return_value="patched") as patched:
                assert getattr(transport, name)(*args) == "patched"
            patched.assert_called_once_with(*args)
            transport.close()
            await proto.done
            peer.close()

    run(loop_factory, main())


def _extra_info_answers(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    """What get_extra_info() answers, and raises, for each way of calling it."""

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _socketpair_transport(loop)
        calls: List[Callable[[], Any]] = [
            lambda: transport.get_extra_info("peername"),
            lambda: transport.get_extra_info("sockname"),
            lambda: type(transport.get_extra_info("socket")).__name__,
            lambda: transport.get_extra_info("missing"),
            lambda: transport.get_extra_info("missing", 42),
            lambda: transport.get_extra_info("missing", default=43),
            lambda: transport.get_extra_info(name="missing", default=44),
            lambda: transport.get_extra_info(["unhashable"]),
            lambda: transport.get_extra_info(),
            lambda: transport.get_extra_info("missing", 1, 2),
            lambda: transport.get_extra_info("missing", nodefault=1),
        ]
        answers: List[Any] = []
        for call in calls:
            try:
                answers.append(call())
            except TypeError as exc:
                answers.append(("TypeError", str(exc)))
        transport.close()
        await proto.done
        # What was gathered at the start stays readable once closed.
        answers.append(transport.get_extra_info("peername", "gone"))
        peer.close()
        return answers

    return list(run(factory, main()))


def test_extra_info_answers_as_the_stdlib(loop_factory):
    assert _extra_info_answers(loop_factory) == _extra_info_answers(stdlib_loop)


def test_extra_info_reads_a_replaced_extra_mapping(loop_factory):
    """The stdlib reads ``self._extra.get(name, default)`` at each call: a
    mapping set on the transport later is the one read, its own get() included."""

    class Extra(dict):  # type: ignore[type-arg]
        def get(self, name: Any, default: Any = None) -> Any:
            return ("custom", name, default)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _socketpair_transport(loop)
        transport._extra = {"peername": "replaced"}
        assert transport.get_extra_info("peername") == "replaced"
        assert transport.get_extra_info("sockname", 1) == 1
        transport._extra = Extra()
        assert transport.get_extra_info("peername", 2) == ("custom", "peername", 2)
        transport.close()
        await proto.done
        peer.close()

    run(loop_factory, main())


def _extra_info_of_tcp_transports(factory: Callable[[], asyncio.AbstractEventLoop],
                                  ask_first: bool) -> List[Any]:
    """A server's and a client's TCP transports: their extra info read while
    open (``ask_first``) or only once they are closed, as a list of what the
    dict holds (keys in order) and what get_extra_info() answers."""

    def summary(transport: Any, server_port: int) -> List[Any]:
        extra = transport._extra
        # the ports are the run's own: say which end is the server's
        ends = [name if not isinstance(name, tuple) else (name[0], name[1] == server_port)
                for name in (extra["sockname"], extra["peername"])]
        sock = transport.get_extra_info("socket")
        return [list(extra), ends, type(sock).__name__, sock.fileno() == -1,
                sock is transport.get_extra_info("socket"),
                transport.get_extra_info("sslcontext", "none")]

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        accepted: "asyncio.Future[Any]" = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                accepted.set_result(transport)

        server = await loop.create_server(Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        served = await accepted
        answers: List[Any] = []
        if ask_first:
            answers += [served.get_extra_info("peername")[0],
                        client.get_extra_info("sockname")[0]]
        for transport in (served, client):
            transport.close()
        await asyncio.sleep(0.01)
        answers += summary(served, port) + summary(client, port)
        server.close()
        await server.wait_closed()
        return answers

    return list(run(factory, main()))


@pytest.mark.parametrize("ask_first", [True, False])
def test_extra_info_made_late_is_the_stdlibs(loop_factory, ask_first):
    """Extra info a transport makes only when asked is what the stdlib's
    transport gathered at the start: the same keys in the same order, the
    same values, its socket wrapper the same object each time, after a close too."""
    assert (_extra_info_of_tcp_transports(loop_factory, ask_first)
            == _extra_info_of_tcp_transports(stdlib_loop, ask_first))


@pytest.mark.parametrize("base", [asyncio.BaseTransport, asyncio.Transport, asyncio.ReadTransport])
def test_extra_info_patched_on_a_base_class_and_restored(loop_factory, base):
    """A patch anywhere the stdlib transport would inherit get_extra_info from
    reaches the transport, positional and keyword calls alike; once undone,
    the transport answers from its own extra info again."""
    from unittest import mock

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _socketpair_transport(loop)
        expected = transport.get_extra_info("peername")
        with mock.patch.object(base, "get_extra_info", create=True,
                               return_value="patched") as patched:
            assert transport.get_extra_info("peername") == "patched"
            assert transport.get_extra_info("peername", default=None) == "patched"
        assert patched.call_count == 2
        assert transport.get_extra_info("peername") == expected
        assert transport.get_extra_info("missing", 3) == 3
        transport.close()
        await proto.done
        peer.close()

    run(loop_factory, main())


async def _udp_transport(loop: asyncio.AbstractEventLoop) -> tuple:
    done = loop.create_future()

    class Proto(asyncio.DatagramProtocol):
        def connection_lost(self, exc: Optional[BaseException]) -> None:
            done.set_result(exc)

    transport, proto = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    proto.done = done  # type: ignore[attr-defined]
    return transport, proto, socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


PUBLIC_METHODS = [
    ("get_extra_info", ("peername",)), ("write", (b"x",)), ("writelines", ([b"x"],)),
    ("is_closing", ()), ("is_reading", ()), ("pause_reading", ()), ("resume_reading", ()),
    ("get_write_buffer_size", ()), ("get_write_buffer_limits", ()),
    ("set_write_buffer_limits", (1024,)), ("can_write_eof", ()), ("write_eof", ()),
    ("get_protocol", ()), ("set_protocol", (None,)), ("close", ()), ("abort", ()),
]


@pytest.mark.parametrize("name, args", PUBLIC_METHODS, ids=[m for m, _ in PUBLIC_METHODS])
def test_method_replaced_on_the_instance_takes_effect(loop_factory, name, args):
    from unittest import mock

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _socketpair_transport(loop)
        with mock.patch.object(transport, name, return_value="replaced") as replaced:
            assert getattr(transport, name)(*args) == "replaced"
        replaced.assert_called_once_with(*args)
        # Restored: the transport's own method works again.
        transport.write(b"after")
        await asyncio.sleep(0)  # (a loop on io_uring sends with its next wait)
        assert peer.recv(16) == b"after"
        transport.close()
        await proto.done
        peer.close()

    run(loop_factory, main())


def _writelines_calls_write(factory: Callable[[], asyncio.AbstractEventLoop]) -> bool:
    from unittest import mock

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _socketpair_transport(loop)
        with mock.patch.object(transport, "write", wraps=transport.write) as write:
            transport.writelines([b"a", b"b"])
        await asyncio.sleep(0)  # (a loop on io_uring sends with its next wait)
        assert peer.recv(16) == b"ab"
        transport.close()
        await proto.done
        peer.close()
        return write.called

    return bool(run(factory, main()))


def test_writelines_calls_write_where_the_stdlib_does(loop_factory):
    # Before 3.12 the stdlib's writelines is WriteTransport's, which calls self.write().
    assert _writelines_calls_write(loop_factory) == _writelines_calls_write(stdlib_loop)
    assert _writelines_calls_write(stdlib_loop) == (sys.version_info < (3, 12))


def test_eof_closes_through_the_transports_close(loop_factory):
    from unittest import mock

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _socketpair_transport(loop)
        with mock.patch.object(transport, "close", wraps=transport.close) as close:
            peer.shutdown(socket.SHUT_WR)
            await proto.done
        close.assert_called_once_with()
        peer.close()

    run(loop_factory, main())


class _TrackedSocket(socket.socket):
    """A socket that records which of its I/O methods were called (as a test
    or an instrumentation library does): the transport must call them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.calls: set = set()
        super().__init__(*args, **kwargs)

    def recv(self, *args: Any) -> bytes:
        self.calls.add("recv")
        return super().recv(*args)

    def recv_into(self, *args: Any) -> int:
        self.calls.add("recv_into")
        return super().recv_into(*args)

    def send(self, *args: Any) -> int:
        self.calls.add("send")
        return super().send(*args)

    def sendto(self, *args: Any) -> int:
        self.calls.add("sendto")
        return super().sendto(*args)  # type: ignore[arg-type]

    def recvfrom(self, *args: Any) -> tuple:
        self.calls.add("recvfrom")
        return super().recvfrom(*args)


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
def test_caller_supplied_socket_subclass_does_the_io(loop_factory, tls_contexts, secure):
    """A socket given with sock= whose class replaces recv/send gets them
    called, as by the stdlib's transport; the transport closes it at the end."""
    server_ctx, client_ctx = tls_contexts

    async def main() -> set:
        server = await asyncio.start_server(_upper_handler, "127.0.0.1", 0,
                                            ssl=server_ctx if secure else None)
        sock = _TrackedSocket(socket.AF_INET, socket.SOCK_STREAM)
        sock.connect(server.sockets[0].getsockname())
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=client_ctx if secure else None,
            server_hostname="localhost" if secure else None)
        writer.write(b"hello\n")
        await writer.drain()
        assert await reader.readline() == b"HELLO\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        assert sock.fileno() == -1  # the transport owned it and closed it
        return sock.calls

    calls = run(loop_factory, main())
    assert calls == run(stdlib_loop, main())
    assert "send" in calls and calls & {"recv", "recv_into"}


def test_caller_supplied_datagram_socket_subclass_does_the_io(loop_factory):
    async def main() -> set:
        loop = asyncio.get_running_loop()
        received = loop.create_future()

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                received.set_result(data)

        sock = _TrackedSocket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        transport, _ = await loop.create_datagram_endpoint(Proto, sock=sock)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            transport.sendto(b"out", peer.getsockname())
            assert peer.recv(16) == b"out"
            peer.sendto(b"in", sock.getsockname())
            assert await received == b"in"
        transport.close()
        await asyncio.sleep(0)
        return sock.calls

    calls = run(loop_factory, main())
    assert calls == run(stdlib_loop, main())
    assert "sendto" in calls and "recvfrom" in calls


def test_socket_subclass_without_its_own_io_keeps_the_loops_transport(zs):
    """Only a socket that replaces its I/O methods leaves the loop's own transport."""
    class Labelled(socket.socket):
        label = "mine"

    async def main() -> tuple:
        loop = asyncio.get_running_loop()
        kinds = []
        for cls in (Labelled, _TrackedSocket):
            a, b = socket.socketpair()
            sock = cls(fileno=a.detach())
            transport, proto = await loop.connect_accepted_socket(lambda: Collector(loop), sock)
            kinds.append(type(transport).__name__)
            transport.close()
            await proto.done
            b.close()
        return tuple(kinds)

    labelled, tracked = run(zs.aio.new_event_loop, main())
    assert tracked == "_SelectorSocketTransport"
    assert labelled == ("SocketTransport" if zs.BACKEND == "c" else "_SelectorSocketTransport")


# -- 3.15: the context a transport's protocol callbacks run in ----------------------------

CONNECTION_VAR: "contextvars.ContextVar[str]" = contextvars.ContextVar("CONNECTION_VAR",
                                                                      default="default")


@pytest.mark.skipif(sys.version_info < (3, 15),
                    reason="3.15 runs protocol callbacks in the connection's context")
def test_protocol_callbacks_share_their_connections_context(loop_factory):
    # A server's connections start from the context the server was made in,
    # each with a copy of its own that every callback of the connection sees;
    # a client's callbacks run in a copy of the caller's.
    seen: List[Any] = []

    class Server(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            seen.append(("made", CONNECTION_VAR.get()))
            CONNECTION_VAR.set("connection")
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            seen.append(("data", CONNECTION_VAR.get()))
            self.transport.write(data)

        def connection_lost(self, exc: Optional[BaseException]) -> None:
            seen.append(("lost", CONNECTION_VAR.get()))

    class Client(asyncio.Protocol):
        def __init__(self) -> None:
            self.got = asyncio.get_running_loop().create_future()

        def connection_made(self, transport: Any) -> None:
            seen.append(("client made", CONNECTION_VAR.get()))

        def data_received(self, data: bytes) -> None:
            if not self.got.done():
                self.got.set_result(data)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        CONNECTION_VAR.set("at create_server")
        server = await loop.create_server(Server, "127.0.0.1", 0)
        CONNECTION_VAR.set("caller")
        for _ in range(2):
            transport, client = await loop.create_connection(
                Client, "127.0.0.1", server.sockets[0].getsockname()[1])
            transport.write(b"x")
            assert await client.got == b"x"
            transport.close()
            while not any(event == "lost" for event, _ in seen[-4:]):
                await asyncio.sleep(0.001)
        server.close()
        await server.wait_closed()
        return CONNECTION_VAR.get()

    assert run(loop_factory, main()) == "caller"
    server_side = [entry for entry in seen if not entry[0].startswith("client")]
    assert server_side == [("made", "at create_server"), ("data", "connection"),
                           ("lost", "connection")] * 2
    assert [value for event, value in seen if event == "client made"] == ["caller"] * 2
