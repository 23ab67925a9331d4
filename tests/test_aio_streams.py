"""asyncio streams on zerosock.aio: the C streams the C loop adopts, on every loop.

Each test runs on zerosock's C loop (``c``), its Python loop (``py``) and stock
asyncio (``std``, the reference); the model tests also compare zerosock's C
StreamReader with the stdlib's, feed by feed.  Loopback only, bounded."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import traceback
from typing import Any, AsyncIterator, Callable, List, Optional, Tuple

import pytest
from _aio_loops import TIMEOUT, fastpath_on, run, stdlib_loop
from _hardening import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerosock import _compat

HERE = os.path.dirname(os.path.abspath(__file__))


def _c_streams() -> Any:
    _compat.load_backend("c")  # fails loudly when the extension is missing
    import zerosock._aio_streams_c as streams_c
    return streams_c


def _has_c_streams(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether streams on ``loop`` are the C ones: zerosock's C loop, while
    the fast path they rely on is on."""
    return type(loop).__module__ == "zerosock._aio_c" and fastpath_on("stream_class_switch")


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close and wait, so that no transport outlives its loop."""
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


@contextlib.asynccontextmanager
async def _connected(**kwargs: Any) -> AsyncIterator[Tuple[asyncio.StreamReader,
                                                           asyncio.StreamWriter, socket.socket]]:
    """Streams over one end of a socketpair, the other end a blocking peer;
    both closed on the way out."""
    a, b = socket.socketpair()
    with b:
        reader, writer = await asyncio.open_connection(sock=a, **kwargs)
        try:
            yield reader, writer, b
        finally:
            b.close()
            await _close(writer)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


@contextlib.asynccontextmanager
async def _served(handler: Handler, *, server_ssl: Optional[ssl.SSLContext] = None,
                  **client: Any) -> AsyncIterator[Tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A start_server() server running ``handler`` and a client connected to
    it; the client is closed, then the server, on the way out."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ssl)
    try:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2],
                                                       **client)
        try:
            yield reader, writer
        finally:
            await _close(writer)
    finally:
        server.close()
        await server.wait_closed()


def _tls_contexts() -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client context that trusts it, for "localhost"."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def _settle(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# -- routing: who gets the C streams ------------------------------------------------

@pytest.mark.parametrize("route", ["tcp", "unix", "sock", "accepted"])
def test_streams_are_c_on_the_c_loop(loop_factory, route, tmp_path):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        served: "asyncio.Future[Tuple[Any, Any]]" = loop.create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            served.set_result((reader, writer))
            writer.write(await reader.readline())
            await writer.drain()
            await _close(writer)

        server = None
        if route == "tcp":
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        elif route == "unix":
            path = os.path.join(tempfile.mkdtemp(dir=tmp_path), "s")
            server = await asyncio.start_unix_server(handler, path)
            reader, writer = await asyncio.open_unix_connection(path)
        else:
            a, b = socket.socketpair()
            if route == "sock":
                reader, writer = await asyncio.open_connection(sock=a)
            else:
                reader = asyncio.StreamReader()
                protocol = asyncio.StreamReaderProtocol(reader)
                transport, _ = await loop.connect_accepted_socket(lambda: protocol, a)
                writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            sreader, swriter = await asyncio.open_connection(sock=b)
            asyncio.ensure_future(handler(sreader, swriter))
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        sreader, swriter = await served
        for r in (reader, sreader):
            assert isinstance(r, asyncio.StreamReader)
            assert (type(r).__module__ == "zerosock._aio_streams_c") == _has_c_streams(loop)
        if route in ("tcp", "unix"):
            assert isinstance(swriter, asyncio.StreamWriter)
            assert (type(swriter).__module__ == "zerosock._aio_streams_c") == _has_c_streams(loop)
        writer.close()
        await writer.wait_closed()
        if server is not None:
            server.close()
            await server.wait_closed()

    run(loop_factory, main())


async def _echo_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readline())
    await writer.drain()
    await _close(writer)


def test_subclasses_and_used_readers_stay_stdlib(loop_factory):
    class MyReader(asyncio.StreamReader):
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for reader in (MyReader(), asyncio.StreamReader()):
            reader.feed_data(b"x")  # the stdlib's one is not fresh any more
            a, b = socket.socketpair()
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.create_connection(lambda: protocol, sock=a)
            assert type(reader).__module__ != "zerosock._aio_streams_c"
            b.send(b"yz")
            assert await reader.readexactly(3) == b"xyz"
            transport.close()
            b.close()
        await _settle()

    run(loop_factory, main())


def test_switch_off_gives_the_stdlib_streams():
    code = ("import asyncio, socket, zerosock.aio as z\n"
            "async def main():\n"
            "    r, w = await asyncio.open_connection(sock=socket.socketpair()[0])\n"
            "    print(type(r).__module__); w.close()\n"
            "z.run(main())\n")
    env = dict(os.environ, ZEROSOCK_C_STREAMS="0", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "asyncio.streams", out.stderr


# -- reads over a real transport ------------------------------------------------------

def test_read_methods_over_the_transport(loop_factory):
    async def main() -> None:
        async with _connected(limit=64) as (reader, writer, peer):
            peer.sendall(b"line one\nexact" + b"until>>rest")
            assert await reader.readline() == b"line one\n"
            assert await reader.readexactly(5) == b"exact"
            assert await reader.readuntil(b">>") == b"until>>"
            assert await reader.read(2) == b"re"
            assert await reader.read(100) == b"st"
            assert await reader.read(0) == b""
            peer.sendall(b"tail")
            peer.shutdown(socket.SHUT_WR)
            assert await reader.read() == b"tail"
            assert reader.at_eof()
            assert await reader.read(5) == b""
            assert await reader.readline() == b""
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await reader.readexactly(1)
            assert (info.value.partial, info.value.expected) == (b"", 1)

    run(loop_factory, main())


def test_a_finished_reads_stop_iteration_is_its_own(loop_factory):
    # A read with its bytes already buffered finishes in one step, raising
    # StopIteration(value) from next(); an await drops it at once.  One kept
    # by whoever caught it keeps its value, and each carries only its own
    # value, arguments, context and traceback (the C loop reuses the
    # exception where nobody holds it: the stop_iteration_reuse fast path).
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            peer.sendall(b"-abcdefgh")
            assert await reader.readexactly(1) == b"-"  # the rest is buffered with it
            kept = []
            for _ in range(3):
                try:
                    next(reader.readexactly(2).__await__())
                except StopIteration as stop:
                    kept.append(stop)
            assert [(s.value, s.args) for s in kept] == [
                (b"ab", (b"ab",)), (b"cd", (b"cd",)), (b"ef", (b"ef",))]
            assert len({id(s) for s in kept}) == 3
            del kept
            for want in (b"g", b"h"):
                handled = KeyError("handled")
                try:
                    try:
                        raise handled
                    except KeyError:
                        next(reader.read(1).__await__())
                except StopIteration as stop:
                    assert (stop.value, stop.args) == (want, (want,))
                    # this raise's context (3.15's own coroutines set none), never an earlier one
                    assert stop.__context__ is None or stop.__context__ is handled
                    assert stop.__cause__ is None and not stop.__suppress_context__
                    assert len(traceback.extract_tb(stop.__traceback__)) == 1
                    assert not hasattr(stop, "__notes__")
                    stop.add_note("seen") if sys.version_info >= (3, 11) else None
            peer.sendall(b"xyz")
            assert await reader.readexactly(3) == b"xyz"  # and awaits still finish

    run(loop_factory, main())


def test_eof_mid_readexactly_and_mid_readuntil(loop_factory):
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            task = asyncio.ensure_future(reader.readexactly(10))
            peer.sendall(b"1234")
            await _settle()
            assert not task.done()
            peer.shutdown(socket.SHUT_WR)
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await task
            assert (info.value.partial, info.value.expected) == (b"1234", 10)
            assert reader._buffer == b""

        async with _connected() as (reader, writer, peer):
            peer.sendall(b"no separator")
            peer.shutdown(socket.SHUT_WR)
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await reader.readuntil(b"!")
            assert (info.value.partial, info.value.expected) == (b"no separator", None)

    run(loop_factory, main())


def test_peer_reset_mid_readexactly(loop_factory):
    async def main() -> str:
        async with _connected() as (reader, writer, peer):
            task = asyncio.ensure_future(reader.readexactly(100))
            peer.sendall(b"partial")
            await _settle()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()
            with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)) as info:
                await task
        return type(info.value).__name__

    # AF_UNIX has no reset: the peer's close is an EOF there, as on every loop.
    results = {run(f, main()) for f in (loop_factory, stdlib_loop)}
    assert len(results) == 1


def test_tcp_peer_reset_mid_readexactly(loop_factory):
    async def main() -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        peer, _ = listener.accept()
        listener.close()
        task = asyncio.ensure_future(reader.readexactly(100))
        peer.sendall(b"partial")
        await _settle()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        try:
            await task
        except (ConnectionResetError, asyncio.IncompleteReadError) as exc:
            outcome = type(exc).__name__
        if isinstance(reader.exception(), ConnectionResetError):
            with pytest.raises(ConnectionResetError):
                await reader.read(1)
            with pytest.raises(ConnectionResetError):
                await writer.drain()
        await _close(writer)
        return outcome

    assert run(loop_factory, main()) == run(stdlib_loop, main())


def test_over_limit_line_from_the_peer(loop_factory):
    async def main() -> None:
        async with _connected(limit=16) as (reader, writer, peer):
            peer.sendall(b"x" * 40 + b"\nshort\n")
            await _settle()
            with pytest.raises(ValueError) as info:
                await reader.readline()
            assert "limit" in str(info.value)
            assert await reader.readline() == b"short\n"
            peer.sendall(b"y" * 40)
            with pytest.raises(asyncio.LimitOverrunError) as overrun:
                await reader.readuntil(b"\n")
            assert overrun.value.consumed > 16
            assert len(reader._buffer) == 40  # left for the caller

    run(loop_factory, main())


def test_concurrent_reads_raise_runtime_error(loop_factory):
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            first = asyncio.ensure_future(reader.read(10))
            await _settle()
            for second in (reader.read(10), reader.readexactly(1), reader.readline(),
                           reader.readuntil(b"!")):
                with pytest.raises(RuntimeError, match="already waiting for incoming data"):
                    await second
            peer.sendall(b"data")
            assert await first == b"data"

    run(loop_factory, main())


@pytest.mark.parametrize("method", ["read", "readexactly", "readline", "readuntil"])
def test_cancelled_read_leaves_the_buffer_intact(loop_factory, method):
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            peer.sendall(b"abc")
            await _settle()
            args = {"read": (), "readexactly": (10,), "readline": (), "readuntil": (b"!",)}[method]
            if method == "read":
                assert await reader.read(3) == b"abc"
            task = asyncio.ensure_future(getattr(reader, method)(*args))
            await _settle()
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert reader._waiter is None
            peer.sendall(b"def\n!" + b"x" * 10)
            await _settle()
            expected = b"abcdef\n!" if method != "read" else b"def\n!"
            assert bytes(reader._buffer).startswith(expected)
            # The cancelled read consumed nothing: the next read sees it all.
            got = await reader.readexactly(len(expected))
            assert got == expected

    run(loop_factory, main())


def test_wait_for_timeout_on_a_read(loop_factory):
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.readline(), 0.01)
            peer.sendall(b"late\n")
            assert await asyncio.wait_for(reader.readline(), TIMEOUT) == b"late\n"
            task = asyncio.get_running_loop().create_task(reader.readexactly(2))
            peer.sendall(b"ok")
            assert await task == b"ok"

    run(loop_factory, main())


def test_line_iteration_and_exception_state(loop_factory):
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            peer.sendall(b"a\nbb\nccc")
            peer.shutdown(socket.SHUT_WR)
            assert [line async for line in reader] == [b"a\n", b"bb\n", b"ccc"]
            assert reader.exception() is None
            error = ValueError("boom")
            reader.set_exception(error)
            assert reader.exception() is error
            for read in (reader.read(1), reader.readline(), reader.readexactly(1),
                         reader.readuntil(b"x")):
                with pytest.raises(ValueError, match="boom"):
                    await read

    run(loop_factory, main())


def test_set_exception_wakes_a_pending_read(loop_factory):
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            task = asyncio.ensure_future(reader.readexactly(4))
            await _settle()
            reader.set_exception(OSError("gone"))
            with pytest.raises(OSError, match="gone"):
                await task

    run(loop_factory, main())


async def _sent(writer: asyncio.StreamWriter) -> None:
    """Until the transport has handed everything to the kernel: a loop on
    io_uring sends with its next wait, not inside write()."""
    for _ in range(1000):
        if not writer.transport.get_write_buffer_size():
            return
        await asyncio.sleep(0)
    raise AssertionError("the transport never sent what was written")


def test_writer_api(loop_factory):
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            assert writer.can_write_eof()
            assert writer.get_extra_info("socket") is not None
            assert writer.get_extra_info("nonexistent", 7) == 7
            assert writer.transport is not None
            writer.write(b"one ")
            writer.writelines([b"two ", bytearray(b"three")])
            await writer.drain()
            writer.write_eof()
            await _sent(writer)
            data = b""
            while len(data) < 13:
                data += peer.recv(100)
            assert data == b"one two three"
            assert peer.recv(100) == b""  # EOF after write_eof
            assert not writer.is_closing()
            await _close(writer)
            assert writer.is_closing()
            await writer.wait_closed()

    run(loop_factory, main())


def test_drain_back_pressure_with_a_peer_that_never_reads(loop_factory):
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            writer.transport.set_write_buffer_limits(high=64 * 1024)
            chunk = b"z" * 16384
            blocked = None
            for _ in range(10000):  # the kernel's buffers fill; then drain() must wait
                writer.write(chunk)
                blocked = asyncio.ensure_future(writer.drain())
                await _settle(2)
                if not blocked.done():
                    break
                await blocked
            assert blocked is not None and not blocked.done()
            # Memory stays bounded: nothing more was queued than one chunk past the mark.
            assert writer.transport.get_write_buffer_size() <= 64 * 1024 + len(chunk)
            peer.setblocking(False)
            while not blocked.done():
                try:
                    peer.recv(1 << 20)
                except BlockingIOError:
                    pass
                await asyncio.sleep(0.001)
            await blocked

    run(loop_factory, main())


def test_drain_after_the_connection_is_lost(loop_factory):
    async def main() -> str:
        async with _connected() as (reader, writer, peer):
            peer.close()
            assert await reader.read(10) == b""
        try:
            for _ in range(5):
                writer.write(b"x")
                await writer.drain()
        except ConnectionResetError as exc:
            return type(exc).__name__
        return "no error"

    assert run(loop_factory, main()) == run(stdlib_loop, main())


def test_client_connected_callback_function_and_coroutine(loop_factory):
    def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"plain\n")
        writer.close()

    async def coro(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def main() -> None:
        for cb, send, want in ((plain, b"", b"plain\n"), (coro, b"echo\n", b"echo\n")):
            async with _served(cb) as (reader, writer):
                writer.write(send)
                assert await reader.readline() == want

    run(loop_factory, main())


def test_client_connected_callback_errors_are_reported_as_the_stdlib_does(loop_factory):
    async def failing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        raise ZeroDivisionError("in callback")

    def scenario(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Tuple[str, str]]:
        contexts: List[dict] = []

        async def main() -> None:
            async with _served(failing) as (reader, writer):
                assert await reader.read() == b""
            await _settle(10)
            gc.collect()
            await _settle(2)

        run(factory, main(), lambda loop, context: contexts.append(context))
        gc.collect()
        return sorted((c["message"], type(c.get("exception")).__name__) for c in contexts)

    assert scenario(loop_factory) == scenario(stdlib_loop)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is new in 3.11")
def test_start_tls_on_a_writer(loop_factory):
    server_ctx, client_ctx = _tls_contexts()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        await _close(writer)

    async def main() -> None:
        async with _served(handler) as (reader, writer):
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"GO\n"
            await writer.start_tls(client_ctx, server_hostname="localhost")
            assert writer.get_extra_info("sslcontext") is client_ctx
            writer.write(b"secret\n")
            assert await reader.readline() == b"SECRET\n"

    run(loop_factory, main())


def test_tls_streams_read_in_c(loop_factory):
    server_ctx, client_ctx = _tls_contexts()

    async def main() -> None:
        async with _served(_echo_line, server_ssl=server_ctx, ssl=client_ctx,
                           server_hostname="localhost") as (reader, writer):
            assert (type(reader).__module__ == "zerosock._aio_streams_c") == _has_c_streams(
                asyncio.get_running_loop())
            writer.write(b"x" * 5000 + b"\n")
            assert await reader.readline() == b"x" * 5000 + b"\n"

    run(loop_factory, main())


def test_reader_pauses_and_resumes_the_transport(loop_factory):
    async def main() -> None:
        async with _connected(limit=1024) as (reader, writer, peer):
            peer.setblocking(False)
            sent = 0
            payload = b"p" * 65536
            for _ in range(200):
                try:
                    sent += peer.send(payload)
                except BlockingIOError:
                    break
                await _settle(2)
            await _settle()
            assert reader._paused  # more than twice the limit is buffered
            assert not writer.transport.is_reading()
            got = 0
            while got < sent:
                got += len(await reader.read(4096))
            assert not reader._paused

    run(loop_factory, main())


# -- the server's writer: drain(), write() and the state behind them ------------------------

async def _server_side(handler_body: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]
                       ) -> Any:
    """Run ``handler_body`` on the server's reader and writer, once the client's
    first line is read, while the client stays connected; its result is returned."""
    loop = asyncio.get_running_loop()
    result: "asyncio.Future[Any]" = loop.create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            assert await reader.readline() == b"hello\n"  # read: no reset at the close
            result.set_result(await handler_body(reader, writer))
        except BaseException as exc:  # handed to the test, not to the loop's handler
            result.set_exception(exc)
        finally:
            await _close(writer)

    async with _served(handler) as (reader, writer):
        writer.write(b"hello\n")
        outcome = await asyncio.wait_for(asyncio.shield(result), TIMEOUT)
        while await reader.read(1 << 16):  # what the server sent, up to its close
            pass
        return outcome


def test_drain_returns_at_once_unless_it_must_wait(loop_factory):
    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> List[Any]:
        seen = []
        writer.write(b"x")
        drain = writer.drain()
        # The C writer's needs no coroutine; the stdlib's is one.
        fast = _has_c_streams(asyncio.get_running_loop())
        seen.append(type(drain).__name__ == "StreamOp" if fast else asyncio.iscoroutine(drain))
        seen.append(await drain)
        protocol = writer._protocol
        seen.append((protocol._paused, protocol._connection_lost, writer._reader is reader))
        protocol.pause_writing()  # as the transport does at its high-water mark
        waiting = asyncio.ensure_future(writer.drain())
        await _settle()
        seen.append(waiting.done())
        protocol.resume_writing()
        seen.append(await waiting)
        protocol._paused = True  # set by hand: the stdlib's attribute, as the stdlib reads it
        waiting = asyncio.ensure_future(writer.drain())
        await _settle()
        seen.append(waiting.done())
        protocol._paused = False
        protocol.resume_writing = None  # not called: drain waits for its waiters only
        # One waiter before 3.11 (_drain_waiter), a deque of them since.
        if hasattr(protocol, "_drain_waiters"):
            waiters = list(protocol._drain_waiters)
        else:
            waiters = [protocol._drain_waiter]
        for waiter in waiters:
            waiter.set_result(None)
        seen.append(await waiting)
        return seen

    want = [True, None, (False, False, True), False, None, False, None]
    assert run(loop_factory, _server_side(body)) == want


def test_drain_waiters_are_the_stdlibs_when_asked_for(loop_factory):
    """The waiters' deque a connection's protocol has (from 3.10.6) may be
    made only when first used: it is one deque, empty, the same each time,
    and what is put in it or set in its place is what drain() later reads."""
    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> List[Any]:
        protocol = writer._protocol
        if not hasattr(type(protocol), "_drain_waiters") and "_drain_waiters" not in vars(
                protocol):
            return ["no waiters' deque"]
        seen: List[Any] = []
        waiters = protocol._drain_waiters
        seen.append((type(waiters).__name__, len(waiters), protocol._drain_waiters is waiters))
        replacement = collections.deque()
        protocol._drain_waiters = replacement
        seen.append(protocol._drain_waiters is replacement)
        protocol.pause_writing()
        waiting = asyncio.ensure_future(writer.drain())
        await _settle()
        seen.append(len(replacement))
        protocol.resume_writing()
        seen.append(await waiting)
        return seen

    stdlib = run(stdlib_loop, _server_side(body))
    assert run(loop_factory, _server_side(body)) == stdlib
    if stdlib != ["no waiters' deque"]:
        assert stdlib == [("deque", 0, True), True, 1, None]


def test_drain_and_write_take_what_is_set_on_the_writer(loop_factory):
    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> List[Any]:
        seen = []
        transport = writer._transport
        assert transport is writer.transport
        sent: List[bytes] = []

        class Recording:
            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

            def write(self, data: bytes) -> None:
                sent.append(data)
                transport.write(data)

        writer._transport = Recording()
        writer.write(b"through the replacement")
        await writer.drain()
        seen.append(sent)
        writer._transport = transport
        reader.set_exception(ValueError("reader failed"))
        try:
            await writer.drain()
        except ValueError as exc:
            seen.append(str(exc))
        writer._reader = None  # the stdlib skips the reader's check then
        await writer.drain()
        seen.append(writer._reader)
        return seen

    want = [[b"through the replacement"], "reader failed", None]
    assert run(loop_factory, _server_side(body)) == want


@pytest.mark.parametrize("where", ["instance", "class"])
def test_patched_transport_methods_are_called(loop_factory, where, monkeypatch):
    async def body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> List[Any]:
        calls: List[Any] = []
        transport = writer.transport
        owner: Any = transport if where == "instance" else type(transport)
        real_write, real_closing = type(transport).write, type(transport).is_closing

        def write(*args: Any) -> None:
            calls.append(("write", args[-1]))
            real_write(transport, args[-1])

        def is_closing(*args: Any) -> bool:
            calls.append("is_closing")
            return bool(real_closing(transport))

        monkeypatch.setattr(owner, "write", write)
        monkeypatch.setattr(owner, "is_closing", is_closing)
        writer.write(b"spied")
        await writer.drain()
        monkeypatch.undo()
        writer.write(b"plain")  # the transport's own methods again
        await writer.drain()
        return calls

    assert run(loop_factory, _server_side(body)) == [("write", b"spied"), "is_closing"]


def test_a_waiting_read_takes_the_loops_future(loop_factory, monkeypatch):
    made: List[Any] = []

    class CountedFuture(asyncio.Future):  # type: ignore[type-arg]
        def __init__(self, *, loop: Any = None) -> None:
            super().__init__(loop=loop)
            made.append(self)

    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            monkeypatch.setattr(asyncio.futures, "Future", CountedFuture)
            read = asyncio.ensure_future(reader.read(10))
            await _settle()
            assert type(reader._waiter) is CountedFuture
            assert reader._waiter._loop is asyncio.get_running_loop()
            monkeypatch.undo()
            peer.sendall(b"data")
            assert await read == b"data"

    run(loop_factory, main())
    assert len(made) == 1


@pytest.mark.c_extension
def test_a_loop_subclass_makes_the_waiting_reads_future(c_backend):
    if not fastpath_on("stream_class_switch"):
        pytest.skip("the C streams are off with the fast path they rely on")
    made: List[Any] = []

    class Loop(c_backend.aio.EventLoop):  # type: ignore[misc, name-defined]
        def create_future(self) -> "asyncio.Future[Any]":
            future = super().create_future()
            made.append(future)
            return future

    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            assert type(reader).__module__ == "zerosock._aio_streams_c"
            read = asyncio.ensure_future(reader.read(10))
            await _settle()
            assert made and reader._waiter is made[-1]
            peer.sendall(b"data")
            assert await read == b"data"

    run(Loop, main())


@pytest.mark.c_extension
def test_the_c_writer_and_protocol_classes_construct_as_the_stdlibs(c_backend):
    streams_c = _c_streams()

    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            protocol = streams_c.StreamReaderProtocol(reader)
            assert (protocol._paused, protocol._connection_lost) == (False, False)
            made = streams_c.StreamWriter(writer.transport, protocol, reader,
                                          asyncio.get_running_loop())
            assert (made._transport, made._protocol, made._reader) == (
                writer.transport, protocol, reader)
            made.write(b"built")
            await made.drain()
            await _sent(made)
            assert peer.recv(10) == b"built"

    run(c_backend.aio.new_event_loop, main())


@settings(max_examples=fuzz_examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(min_size=1, max_size=3000),
       cuts=st.lists(st.integers(min_value=1, max_value=700), max_size=8),
       size=st.integers(min_value=1, max_value=1024))
def test_server_echo_under_any_split(loop_factory, payload, cuts, size):
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(size)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        await _close(writer)

    async def main() -> bytes:
        async with _served(echo) as (reader, writer):
            rest = payload
            for cut in cuts:
                chunk, rest = rest[:cut], rest[cut:]
                writer.write(chunk)
                await writer.drain()
                await _settle(2)
            writer.write(rest)
            writer.write_eof()
            got = b""
            while True:
                part = await reader.read(4096)
                if not part:
                    return got
                got += part

    assert run(loop_factory, main()) == payload


# -- the C reader against the stdlib's, feed by feed (any loop) -------------------------

OPS = st.one_of(
    st.tuples(st.just("feed"), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("read"), st.integers(min_value=-1, max_value=12)),
    st.tuples(st.just("readexactly"), st.integers(min_value=-1, max_value=12)),
    st.tuples(st.just("readline"), st.none()),
    st.tuples(st.just("readuntil"), st.sampled_from([b"\n", b"ab", b"abc", b"", (b"a", b"bc")])),
    st.tuples(st.just("eof"), st.none()),
    st.tuples(st.just("exception"), st.none()),
)
NL_BYTES = st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"\x00", b"\n"))


async def _drive(reader: asyncio.StreamReader, ops: List[Tuple[str, Any]]) -> List[Any]:
    """Apply ops; reads run as tasks, and every outcome is logged in order."""
    log: List[Any] = []
    pending: List[Tuple[int, "asyncio.Task[Any]"]] = []

    def outcome(task: "asyncio.Task[Any]") -> Any:
        exc = task.exception()
        if exc is None:
            return ("ok", task.result())
        if isinstance(exc, asyncio.IncompleteReadError):
            return ("incomplete", exc.partial, exc.expected)
        if isinstance(exc, asyncio.LimitOverrunError):
            return ("overrun", exc.consumed, str(exc))
        return (type(exc).__name__, str(exc))

    async def collect() -> None:
        await _settle(3)
        for index, task in list(pending):
            if task.done():
                pending.remove((index, task))
                log.append((index, outcome(task)))

    for index, (op, arg) in enumerate(ops):
        if op == "feed":
            if reader.at_eof() or reader._eof:
                continue
            reader.feed_data(arg)
        elif op == "eof":
            reader.feed_eof()
        elif op == "exception":
            if index % 3 == 0:
                reader.set_exception(ConnectionResetError("reset"))
        else:
            call = getattr(reader, op)
            coro = call() if arg is None else call(arg)
            pending.append((index, asyncio.ensure_future(coro)))
        await collect()
        log.append(("buffer", bytes(reader._buffer), reader.at_eof(), reader._waiter is None))
    reader.feed_eof()
    await collect()
    for _, task in pending:
        task.cancel()
    await _settle()
    return log


@pytest.mark.c_extension
@settings(max_examples=fuzz_examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, max_size=25), limit=st.sampled_from([1, 3, 8, 64, 2 ** 16]))
def test_c_reader_matches_the_stdlib_reader(loop_factory, ops, limit):
    streams_c = _c_streams()

    def outcome(reader_class: Any) -> List[Any]:
        async def main() -> List[Any]:
            return await _drive(reader_class(limit=limit), ops)
        return run(loop_factory, main())

    if sys.version_info < (3, 13):
        ops = [(op, arg) for op, arg in ops if not isinstance(arg, tuple)]
    assert outcome(streams_c.StreamReader) == outcome(asyncio.StreamReader)


# -- how the bytes are split across reads, over a real transport -----------------------

@settings(max_examples=fuzz_examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=NL_BYTES.flatmap(lambda b: st.lists(NL_BYTES, max_size=20).map(lambda l: b + b"".join(l))),
       cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=10),
       method=st.sampled_from(["read", "readexactly", "readline", "readuntil"]),
       size=st.integers(min_value=1, max_value=17))
def test_any_split_reads_back_the_stream(loop_factory, payload, cuts, method, size):
    async def main() -> bytes:
        async with _connected() as (reader, writer, peer):
            async def feed() -> None:
                rest = payload
                for cut in cuts:
                    chunk, rest = rest[:cut], rest[cut:]
                    peer.sendall(chunk)
                    await _settle(2)
                peer.sendall(rest)
                peer.shutdown(socket.SHUT_WR)

            feeder = asyncio.ensure_future(feed())
            got = b""
            while True:
                try:
                    if method == "read":
                        part = await reader.read(size)
                        assert len(part) <= size
                    elif method == "readexactly":
                        part = await reader.readexactly(size)
                        assert len(part) == size
                    elif method == "readline":
                        part = await reader.readline()
                        assert part.count(b"\n") <= 1 and (part.endswith(b"\n") or reader.at_eof())
                    else:
                        part = await reader.readuntil(b"\n\n")
                        assert part.endswith(b"\n\n") and b"\n\n" not in part[:-1]
                except asyncio.IncompleteReadError as exc:
                    got += exc.partial
                    break
                if not part:
                    break
                got += part
            await feeder
        return got

    assert run(loop_factory, main()) == payload


# -- the stdlib's own StreamReader tests, on the C StreamReader -------------------------

@pytest.mark.c_extension
def test_stdlib_stream_tests_pass_on_the_c_reader():
    code = ("import asyncio, sys, unittest\n"
            "from zerosock import _aio_streams_c\n"
            "asyncio.StreamReader = _aio_streams_c.StreamReader\n"
            "from test.test_asyncio import test_streams\n"
            "result = unittest.main(module=test_streams, exit=False, argv=['x']).result\n"
            "sys.exit(0 if result.wasSuccessful() and result.testsRun > 40 else 1)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]


@pytest.mark.c_extension
def test_buffered_reads_finish_without_a_future(c_backend):
    if not fastpath_on("stream_class_switch"):
        pytest.skip("the C streams are off with the fast path they rely on")
    async def main() -> None:
        async with _connected() as (reader, writer, peer):
            assert type(reader).__module__ == "zerosock._aio_streams_c"
            peer.sendall(b"abcdef\n")
            await _settle()
            for op, want in ((reader.read(2), b"ab"), (reader.readexactly(2), b"cd"),
                             (reader.readline(), b"ef\n")):
                with pytest.raises(StopIteration) as stop:
                    op.send(None)  # done in one step: nothing to wait on
                assert stop.value.value == want
            op = reader.read(5)
            waiter = op.send(None)  # nothing buffered: one Future to wait on
            assert asyncio.isfuture(waiter) and reader._waiter is waiter
            assert waiter._asyncio_future_blocking  # as a Task expects of what it is handed
            waiter._asyncio_future_blocking = False  # what the Task would do
            peer.sendall(b"xyz")
            await waiter  # woken by the transport's read
            with pytest.raises(StopIteration) as stop:
                op.send(None)
            assert stop.value.value == b"xyz"
            with pytest.raises(RuntimeError, match="cannot reuse"):
                op.send(None)

    run(c_backend.aio.new_event_loop, main())
