"""What runs when around stream reads: the C loop spares the zero-timeout poll
after an iteration that only fed C stream readers, and no program may see it.

Each scenario runs on zerosock's C loop (``c``), its Python loop (``py``) and
stock asyncio (``std``), and its log must equal the stock loop's.  The logs
snapshot the streams' state at each of the next iterations after every read
(a short chain of call_soon callbacks), so an I/O callback that ran one
iteration late or early changes them.  Loopback only, bounded."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Callable, List

import pytest
from _aio_loops import TIMEOUT, fastpath_on, stdlib_loop

from zerosock import _compat


def _is_c_loop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__ == "zerosock._aio_c"


def _watch(log: List[Any], probe: Callable[[], Any], n: int = 3) -> None:
    """Log ``probe()`` at each of the next ``n`` iterations."""
    loop = asyncio.get_running_loop()

    def tick(i: int) -> None:
        log.append(("tick", i, probe()))
        if i + 1 < n:
            loop.call_soon(tick, i + 1)

    loop.call_soon(tick, 0)


async def _settle(n: int = 6) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _same_as_stock(loop_factory: Callable[[], asyncio.AbstractEventLoop],
                   scenario: Callable[[List[Any]], Any]) -> List[Any]:
    """Run ``scenario(log)`` on a loop of ``loop_factory`` and on a stock
    loop; the logs must be equal.  Returns the first loop's log."""
    logs = []
    for factory in (loop_factory, stdlib_loop):
        loop = factory()
        log: List[Any] = []
        try:
            loop.run_until_complete(asyncio.wait_for(scenario(log), TIMEOUT))
        finally:
            loop.close()
        logs.append(log)
    assert logs[0] == logs[1]
    return logs[0]


async def _stream_on(sock: socket.socket, **kwargs: Any) -> Any:
    return await asyncio.open_connection(sock=sock, **kwargs)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # the peer reset it


async def _large_write(log: List[Any]) -> None:
    # More than one read takes (256 KiB): the rest is read at the next
    # iteration, when the stdlib's poll finds the socket still readable.
    a, b = socket.socketpair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b.setblocking(False)
    reader, writer = await _stream_on(a, limit=1 << 20)  # (so that no read pauses it)

    def probe() -> Any:
        return len(reader._buffer), reader.at_eof()

    asyncio.get_running_loop().call_soon(lambda: log.append(("sent", b.send(b"x" * 300_000))))
    total = 0
    while total < 300_000:
        data = await reader.read(1 << 20)
        total += len(data)
        log.append(("got", len(data), probe()))
        _watch(log, probe)
    await _settle()
    await _close(writer)
    b.close()


def test_the_rest_of_a_long_write_is_read_when_the_stdlib_reads_it(loop_factory):
    log = _same_as_stock(loop_factory, _large_write)
    assert ("got", 262_144, (0, False)) in log


async def _data_then_end(log: List[Any]) -> None:
    # Data and the end of the stream arrive together: the stdlib reads the
    # data, then finds the end at the next iteration's poll.
    a, b = socket.socketpair()
    reader, writer = await _stream_on(a)

    def probe() -> Any:
        return len(reader._buffer), reader.at_eof()

    def send_and_close() -> None:
        b.send(b"hello")
        b.close()

    asyncio.get_running_loop().call_soon(send_and_close)
    while True:
        data = await reader.read(100)
        log.append(("got", data, probe()))
        _watch(log, probe)
        if not data:
            break
    await _settle()
    await _close(writer)


def test_an_end_that_came_with_the_data_is_seen_when_the_stdlib_sees_it(loop_factory):
    log = _same_as_stock(loop_factory, _data_then_end)
    assert ("got", b"", (0, True)) in log


async def _reset_after_data(log: List[Any]) -> None:
    # Data, then a reset (an abortive close): the error comes at the next poll.
    import struct
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        mine, _ = listener.accept()
    reader, writer = await _stream_on(mine)

    def probe() -> Any:
        return len(reader._buffer), reader.at_eof(), type(reader.exception()).__name__

    def send_and_reset() -> None:
        peer.send(b"hello")
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()

    asyncio.get_running_loop().call_soon(send_and_reset)
    for _ in range(3):
        try:
            data = await reader.read(100)
        except ConnectionError as exc:
            log.append(("error", type(exc).__name__, probe()))
            _watch(log, probe)
            break
        log.append(("got", data, probe()))
        _watch(log, probe)
        if not data:
            break
    await _settle()
    await _close(writer)


def test_a_reset_that_came_after_the_data_is_seen_when_the_stdlib_sees_it(loop_factory):
    log = _same_as_stock(loop_factory, _reset_after_data)
    assert log[0][:2] == ("got", b"hello")


class _Recorder(asyncio.Protocol):
    def __init__(self, log: List[Any], name: str) -> None:
        self.log = log
        self.name = name
        self.transport: Any = None
        self.paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Any) -> None:
        self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.log.append((self.name, "data", len(data)))

    def pause_writing(self) -> None:
        self.paused = True
        self.log.append((self.name, "pause_writing"))

    def resume_writing(self) -> None:
        self.paused = False
        self.log.append((self.name, "resume_writing"))


async def _write_then_schedule(log: List[Any]) -> None:
    # After each stream read, a callback writes to a socket pair read by a
    # Protocol of this loop and schedules C, which schedules D: the stdlib
    # runs C, then the read, then D.
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    c.setblocking(False)
    reader, writer = await _stream_on(a)
    _, proto = await loop.create_connection(lambda: _Recorder(log, "proto"), sock=d)

    def later(name: str, then: Any = None) -> None:
        log.append(name)
        if then is not None:
            loop.call_soon(*then)

    for i in range(3):
        loop.call_soon(b.send, b"ping")
        data = await reader.read(100)
        log.append(("got", data))
        c.send(b"x" * (i + 1))
        loop.call_soon(later, "C", (later, "D"))
        await _settle()
    await _close(writer)
    b.close()
    c.close()
    await proto.lost


def test_a_write_to_this_loop_after_a_stream_read_is_read_in_the_stdlib_order(loop_factory):
    log = _same_as_stock(loop_factory, _write_then_schedule)
    assert log[:5] == [("got", b"ping"), "C", ("proto", "data", 1), "D", ("got", b"ping")] \
        or log[:4] == [("got", b"ping"), "C", ("proto", "data", 1), "D"]


async def _paused_writer(log: List[Any]) -> None:
    # A Protocol of this loop writes more than its socket takes and pauses;
    # a stream of the same loop reads the other end, which lets it write again.
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    reader, writer = await _stream_on(a)
    transport, proto = await loop.create_connection(lambda: _Recorder(log, "writer"), sock=b)
    transport.set_write_buffer_limits(high=8192, low=1024)

    def probe() -> Any:
        return transport.get_write_buffer_size(), proto.paused

    transport.write(b"y" * 100_000)
    log.append(("queued", probe()))
    total = 0
    while total < 100_000:
        data = await reader.read(1 << 20)
        total += len(data)
        log.append(("got", len(data), probe()))
        _watch(log, probe)
    await _settle()
    assert not proto.paused
    transport.close()
    await proto.lost
    await _close(writer)


def test_a_paused_writer_resumed_by_a_reader_of_the_same_loop(loop_factory):
    log = _same_as_stock(loop_factory, _paused_writer)
    assert ("writer", "resume_writing") in log


async def _timers_around_reads(log: List[Any]) -> None:
    # A timer writes what the stream reads, while callbacks run each iteration.
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    reader, writer = await _stream_on(a)

    def probe() -> Any:
        return len(reader._buffer)

    for i in range(4):
        loop.call_later(0, b.send, b"%d" % i)
        loop.call_at(loop.time() - 1, log.append, ("past", i))
        _watch(log, probe, 4)
        data = await reader.read(100)
        log.append(("got", data))
        loop.call_soon(log.append, ("soon", i))
        loop.call_later(0, log.append, ("timer", i))
        await asyncio.sleep(0)
        log.append(("after-sleep", i))
        await _settle()
    await _close(writer)
    b.close()


def test_callbacks_and_timers_around_stream_reads_run_in_the_stdlib_order(loop_factory):
    log = _same_as_stock(loop_factory, _timers_around_reads)
    assert ("timer", 3) in log


async def _ping_pong(rounds: int) -> None:
    a, b = socket.socketpair()
    reader_a, writer_a = await _stream_on(a)
    reader_b, writer_b = await _stream_on(b)

    async def echo() -> None:
        while True:
            data = await reader_b.read(100)
            if not data:
                break
            writer_b.write(data)

    task = asyncio.ensure_future(echo())
    for i in range(rounds):
        writer_a.write(b"%d" % i)
        assert await reader_a.read(100) == b"%d" % i
    await _close(writer_a)
    await task
    await _close(writer_b)


def test_a_thread_s_call_soon_threadsafe_wakes_the_loop_among_stream_reads(loop_factory):
    async def main(log: List[Any]) -> None:
        loop = asyncio.get_running_loop()
        started = threading.Event()
        arrived = loop.create_future()

        def from_thread() -> None:
            started.wait(TIMEOUT)
            for i in range(50):
                loop.call_soon_threadsafe(log.append, ("thread", i))
            loop.call_soon_threadsafe(arrived.set_result, None)

        thread = threading.Thread(target=from_thread)
        thread.start()
        try:
            started.set()
            await _ping_pong(200)
            await arrived  # the loop waits in its poll: the thread's wake-up ends it
        finally:
            thread.join(TIMEOUT)

    for factory in (loop_factory, stdlib_loop):
        loop = factory()
        log: List[Any] = []
        try:
            loop.run_until_complete(asyncio.wait_for(main(log), TIMEOUT))
        finally:
            loop.close()
        assert log == [("thread", i) for i in range(50)]


# -- the C loop does spare the poll, and only where it may ----------------------

@pytest.fixture
def c_loop_class() -> Any:
    _compat.load_backend("c")
    from zerosock._aio_c import EventLoop
    from zerosock._selectors_c import DefaultSelector

    class EpollLoop(EventLoop):  # type: ignore[misc, valid-type]
        """The C loop on epoll whatever ZEROSOCK_AIO_IO asks: the loop that may spare polls."""

        def __init__(self) -> None:
            super().__init__(DefaultSelector())

    return EpollLoop


@pytest.mark.c_extension
def test_the_ring_loop_spares_no_poll() -> None:
    """A poll completion reports what the socket had when it fired: an end
    or a reset that came after the data is not in it, as it is in what
    epoll_wait reports, so an iteration after reads that looked quiet polls."""
    aio = _compat.load_backend("c").aio
    from zerosock import _aio_c
    if _aio_c._uring_unavailable() is not None:
        pytest.skip(f"io_uring is not usable here: {_aio_c._uring_unavailable()}")
    assert _spared(aio.new_event_loop(io="uring"), _ping_pong(20)) == 0


def _spared(loop: Any, coro: Any) -> int:
    try:
        before = loop._core.spared_polls
        loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))
        return loop._core.spared_polls - before
    finally:
        loop.close()


@pytest.mark.c_extension
def test_the_c_loop_spares_the_poll_after_quiet_stream_reads(c_loop_class):
    # Each round: a poll finds the one socket a task waits on; the next
    # iteration runs that task with no poll.
    spared = _spared(c_loop_class(), _ping_pong(100))
    if fastpath_on("stream_class_switch"):
        assert spared >= 150
    else:  # the stdlib's streams: every read runs Python code, nothing is quiet
        assert spared == 0


@pytest.mark.c_extension
def test_no_poll_is_spared_in_debug_mode(c_loop_class):
    loop = c_loop_class()
    loop.set_debug(True)
    assert _spared(loop, _ping_pong(20)) == 0


@pytest.mark.c_extension
def test_no_poll_is_spared_for_a_loop_with_its_own_iteration(c_loop_class):
    iterations = []

    class Counting(c_loop_class):  # type: ignore[misc, valid-type]
        def _run_once(self) -> None:
            iterations.append(None)
            super()._run_once()

    assert _spared(Counting(), _ping_pong(20)) == 0
    assert iterations

    loop = c_loop_class()
    original = loop._run_once
    loop._run_once = lambda: (iterations.append(None), original())
    assert _spared(loop, _ping_pong(20)) == 0

    # A class changed after the loop was made is seen too.
    class Later(c_loop_class):  # type: ignore[misc, valid-type]
        pass

    loop = Later()
    assert (_spared(loop, _ping_pong(20)) > 0) == fastpath_on("stream_class_switch")
    loop = Later()
    Later._run_once = lambda self: (iterations.append(None), c_loop_class._run_once(self))
    assert _spared(loop, _ping_pong(20)) == 0


@pytest.mark.c_extension
def test_no_poll_is_spared_while_a_descriptor_is_watched_for_writing(c_loop_class):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        full, peer = socket.socketpair()
        full.setblocking(False)
        try:
            while True:
                full.send(b"z" * 65536)
        except BlockingIOError:
            pass
        loop.add_writer(full, lambda: None)  # never writable: nobody reads the peer
        try:
            await _ping_pong(20)
        finally:
            loop.remove_writer(full)
            full.close()
            peer.close()

    assert _spared(c_loop_class(), main()) == 0


@pytest.mark.c_extension
def test_a_patched_call_soon_is_called_for_the_wake_up_and_spares_nothing(c_loop_class):
    loop = c_loop_class()
    calls = []
    original = loop.call_soon

    def call_soon(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return original(*args, **kwargs)

    loop.call_soon = call_soon
    assert _spared(loop, _ping_pong(20)) == 0
    assert calls
