"""Datagram endpoints of zerosock.aio, with the standard library's loop as the reference.

Every test runs on three loops: zerosock's C loop (``c``), its Python loop
(``py``) and stock asyncio (``std``).  Loopback only, bounded, no timing assertions.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import socket
import sys
import tempfile
import warnings
from typing import Any, Awaitable, Callable, Iterator, List, Optional, Tuple

import pytest
from _aio_loops import run
from _kernel import datagram_peers, receive_buffer_of, shuffled_batches


EMPTY_DATAGRAMS_SENT = sys.version_info >= (3, 13)
CAN_PAUSE_READING = sys.version_info >= (3, 11)
HAVE_UNIX = hasattr(socket, "AF_UNIX")


def _stdlib_buffer_size_drifts() -> bool:
    """3.13.0 to 3.13.5 count 8 header bytes in per queued datagram but never
    out (CPython gh-135444): the size stays above zero once anything queued.
    zerosock's C transport counts them out too."""
    from asyncio import selector_events
    source = inspect.getsource(selector_events._SelectorDatagramTransport)
    return "len(data) + 8" in source and "-= len(data) + 8" not in source


STDLIB_SIZE_DRIFTS = _stdlib_buffer_size_drifts()


@pytest.fixture
def unix_dir() -> Iterator[str]:
    if not HAVE_UNIX:
        pytest.skip("no AF_UNIX")
    with tempfile.TemporaryDirectory() as path:
        yield path


def _have_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


class Recorder(asyncio.DatagramProtocol):
    """Records what arrives; ``wait_for(n)`` resolves once n datagrams are in."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.datagrams: List[Tuple[bytes, Any]] = []
        self.errors: List[Exception] = []
        self.made = self.loop.create_future()
        self.lost = self.loop.create_future()
        self.lost_calls = 0
        self.paused = 0
        self.resumed = 0
        self._waiters: List[Tuple[int, asyncio.Future]] = []
        self.error_future = self.loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.made.set_result(None)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))
        self._wake()

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        if not self.error_future.done():
            self.error_future.set_result(exc)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost_calls += 1
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def _wake(self) -> None:
        for n, fut in self._waiters:
            if len(self.datagrams) >= n and not fut.done():
                fut.set_result(None)

    def wait_for(self, n: int) -> Awaitable[None]:
        fut = self.loop.create_future()
        self._waiters.append((n, fut))
        self._wake()
        return fut

    def data(self) -> List[bytes]:
        return [d for d, _ in self.datagrams]


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


def _is_c_loop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("zerosock._aio_c")


async def _yield_until(predicate: Callable[[], bool], limit: int = 10000) -> None:
    """Let the loop run until ``predicate()``; bounded by iterations, not time."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


# -- round trips ------------------------------------------------------------------

@pytest.mark.parametrize("family", ["v4", "v6"])
@pytest.mark.parametrize("connected", [True, False], ids=["connected", "unconnected"])
def test_echo_round_trip(loop_factory, family, connected):
    if family == "v6" and not _have_ipv6():
        pytest.skip("no IPv6 loopback")
    host = "127.0.0.1" if family == "v4" else "::1"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, 0))
        addr = server.get_extra_info("sockname")
        if connected:
            client, proto = await loop.create_datagram_endpoint(Recorder, remote_addr=addr[:2])
        else:
            client, proto = await loop.create_datagram_endpoint(Recorder, local_addr=(host, 0))
        payloads = [b"one", b"two" * 100, bytes(range(256)) * 4]
        for p in payloads:
            client.sendto(p, None if connected else addr)
        await proto.wait_for(len(payloads))
        assert proto.data() == payloads  # loopback keeps order
        assert all(a[:2] == addr[:2] for _, a in proto.datagrams)
        if not connected:
            # The reply's address is the sender's as the socket module gives it.
            assert proto.datagrams[0][1] == addr
        client.close()
        server.close()
        assert await proto.lost is None

    run(loop_factory, main())


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_replies_reach_each_of_many_peers(loop_factory, family):
    """An echo server answering more peers than zerosock's C transport
    remembers addresses of: every reply reaches the peer that asked, in every
    round and in any order, and so do replies to address objects kept from
    the first round, which the transport has long replaced."""
    if family == "v6" and not _have_ipv6():
        pytest.skip("no IPv6 loopback")
    host, af = ("127.0.0.1", socket.AF_INET) if family == "v4" else ("::1", socket.AF_INET6)
    first: dict = {}

    class Remembering(Echo):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            first.setdefault(int(data.split(b":")[0]), addr)
            super().datagram_received(data, addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(Remembering, local_addr=(host, 0))
        address = server.get_extra_info("sockname")
        try:
            with datagram_peers(af, host, 400, timeout=0) as peers:
                for round_, asked in shuffled_batches(len(peers), rounds=3):
                    for i in asked:
                        peers[i].sendto(b"%d:%d" % (i, round_), address)
                    replies = await asyncio.wait_for(asyncio.gather(
                        *(loop.sock_recv(peers[i], 64) for i in asked)), 10)
                    assert replies == [b"%d:%d" % (i, round_) for i in asked]
                assert {i: a[:2] for i, a in first.items()} == {
                    i: p.getsockname()[:2] for i, p in enumerate(peers)}
                for _, asked in shuffled_batches(len(peers), rounds=1):
                    for i in asked:
                        server.sendto(b"late %d" % i, first[i])
                    replies = await asyncio.wait_for(asyncio.gather(
                        *(loop.sock_recv(peers[i], 64) for i in asked)), 10)
                    assert replies == [b"late %d" % i for i in asked]
        finally:
            server.close()

    run(loop_factory, main())


def test_a_c_transports_core_replaced_by_something_else_raises(loop_factory):
    """The C transport's methods read its ``_core`` slot directly: anything
    put there but a core is a TypeError, never a crash."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        if not _is_c_loop(loop):
            transport.close()
            pytest.skip("the C loop's transports only")
        core = transport._core
        transport._core = None
        try:
            for call in (lambda: transport.sendto(b"x", ("127.0.0.1", 9)), transport.is_closing,
                         transport.get_protocol, transport.get_write_buffer_size):
                with pytest.raises(TypeError, match="_core"):
                    call()
        finally:
            transport._core = core
            transport.close()

    run(loop_factory, main())


def test_transport_kind(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        assert isinstance(transport, asyncio.BaseTransport)
        if sys.version_info >= (3, 12) or _is_c_loop(loop):
            assert isinstance(transport, asyncio.DatagramTransport)
        assert "fd=" in repr(transport)
        transport.close()

    run(loop_factory, main())


def test_burst_delivered_complete_and_in_order(loop_factory):
    """Datagrams queued before the loop looks arrive in one readiness event."""
    rounds, per_round = 5, 100

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        rx.bind(("127.0.0.1", 0))
        addr = rx.getsockname()
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.bind(("127.0.0.1", 0))
        try:
            seq = 0
            for _ in range(per_round):  # before the transport exists
                tx.sendto(seq.to_bytes(4, "big") * 16, addr)
                seq += 1
            transport, proto = await loop.create_datagram_endpoint(Recorder, sock=rx)
            await proto.wait_for(seq)
            for _ in range(rounds - 1):
                for _ in range(per_round):  # with no await between: one event
                    tx.sendto(seq.to_bytes(4, "big") * 16, addr)
                    seq += 1
                await proto.wait_for(seq)
            assert proto.data() == [i.to_bytes(4, "big") * 16 for i in range(seq)]
            sender = tx.getsockname()
            assert all(a == sender for _, a in proto.datagrams)
            transport.close()
        finally:
            tx.close()

    run(loop_factory, main())


def test_largest_udp_datagrams_arrive_whole(loop_factory):
    big = 65507
    payloads = [bytes([i]) * big for i in range(3)] + [b"small", bytes([9]) * big]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        # Every datagram must wait whole in the kernel until the loop reads:
        # the kernel charges each about twice its size at most.
        if receive_buffer_of(rx, 4 << 20) < 2 * big * len(payloads):
            rx.close()
            pytest.skip("net.core.rmem_max is too small to queue the datagrams (and not root)")
        addr = rx.getsockname()
        transport, proto = await loop.create_datagram_endpoint(Recorder, sock=rx)
        client, _ = await loop.create_datagram_endpoint(Recorder, remote_addr=addr)
        for p in payloads:  # queued together: several big ones in one batch
            client.sendto(p)
        await proto.wait_for(len(payloads))
        assert [len(d) for d in proto.data()] == [len(p) for p in payloads]
        assert proto.data() == payloads
        client.close()
        transport.close()

    run(loop_factory, main())


def test_unix_datagrams_larger_than_ip_allows_arrive_whole(loop_factory, unix_dir):
    size = 100_000
    path = os.path.join(unix_dir, "rx")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        rx.bind(path)
        tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        try:
            payloads = [bytes([i]) * size for i in range(3)]
            queued = 0
            tx.setblocking(False)
            for p in payloads:  # as many as fit before the transport reads
                try:
                    tx.sendto(p, path)
                    queued += 1
                except BlockingIOError:
                    break
            assert queued >= 1
            transport, proto = await loop.create_datagram_endpoint(Recorder, sock=rx)
            for i in range(queued, len(payloads)):
                for _ in range(100000):  # room comes as the transport reads
                    try:
                        tx.sendto(payloads[i], path)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(0)
            await proto.wait_for(len(payloads))
            assert proto.data() == payloads
            transport.close()
        finally:
            tx.close()

    run(loop_factory, main())


# -- errors ------------------------------------------------------------------------------

def test_exception_in_datagram_received_loses_nothing_after_it(loop_factory):
    errors: List[dict] = []

    class Fragile(Recorder):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            if data == b"boom":
                raise ZeroDivisionError("protocol bug")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        addr = rx.getsockname()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            sent = [b"a", b"boom", b"c", b"boom", b"e"]
            for d in sent:  # all waiting when the transport first reads
                tx.sendto(d, addr)
            transport, proto = await loop.create_datagram_endpoint(Fragile, sock=rx)
            await proto.wait_for(len(sent))
            assert proto.data() == sent
            assert not transport.is_closing()
            tx.sendto(b"after", addr)
            await proto.wait_for(len(sent) + 1)
            transport.close()
            await proto.lost

    run(loop_factory, main(), handler=lambda loop, ctx: errors.append(ctx))
    assert len(errors) == 2
    for ctx in errors:
        assert isinstance(ctx["exception"], ZeroDivisionError)
        assert ctx["message"].startswith("Exception in callback")


def test_connection_refused_goes_to_error_received(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
            gone.bind(("127.0.0.1", 0))
            addr = gone.getsockname()
        transport, proto = await loop.create_datagram_endpoint(Recorder, remote_addr=addr)
        for _ in range(100):  # the ICMP error comes back asynchronously
            transport.sendto(b"anyone?")
            if proto.errors:
                break
            await asyncio.sleep(0.01)
        exc = await proto.error_future
        assert isinstance(exc, ConnectionRefusedError)
        assert not transport.is_closing()
        transport.close()
        assert await proto.lost is None

    run(loop_factory, main())


def test_sendto_argument_errors(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        addr = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Recorder, remote_addr=addr)
        with pytest.raises(TypeError, match="bytes-like object"):
            client.sendto("text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="bytes-like object"):
            client.sendto(12)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="Invalid address"):
            client.sendto(b"x", ("127.0.0.1", addr[1] + 1 if addr[1] < 65535 else 1))
        client.sendto(b"x", addr)  # its own peer is fine
        client.sendto(bytearray(b"y"))
        client.sendto(memoryview(b"zz"))
        # Keywords, and a wrong count, as a Python method takes them.
        client.sendto(data=b"kw", addr=addr)
        client.sendto(b"kw2", addr=None)
        with pytest.raises(TypeError):
            client.sendto()  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            client.sendto(b"x", addr, 0)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            client.sendto(b"x", address=addr)  # type: ignore[call-arg]
        await proto.wait_for(5)
        assert proto.data() == [b"x", b"y", b"zz", b"kw", b"kw2"]
        client.close()
        server.close()

    run(loop_factory, main())


def test_sendto_without_address_on_unconnected_transport_is_fatal(loop_factory):
    errors: List[dict] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        transport.sendto(b"nowhere")
        assert transport.is_closing()
        exc = await proto.lost
        assert isinstance(exc, TypeError)

    run(loop_factory, main(), handler=lambda loop, ctx: errors.append(ctx))
    assert len(errors) == 1 and isinstance(errors[0]["exception"], TypeError)
    assert errors[0]["message"] == "Fatal write error on datagram transport"


def test_empty_datagrams_as_the_stdlib_of_this_version(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        addr = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Recorder, remote_addr=addr)
        client.sendto(b"")
        client.sendto(memoryview(b""))
        client.sendto(b"end")
        await proto.wait_for(3 if EMPTY_DATAGRAMS_SENT else 1)
        expected = [b"", b"", b"end"] if EMPTY_DATAGRAMS_SENT else [b"end"]
        assert proto.data() == expected
        client.close()
        server.close()

    run(loop_factory, main())


def test_sendto_after_close_counts_and_warns(loop_factory, caplog):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        addr = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Recorder, remote_addr=addr[:2])
        client.close()
        await proto.lost
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(10):
                client.sendto(b"late")  # no exception on a connected transport
        warned = [r for r in caplog.records if "socket.send() raised exception." in r.getMessage()]
        assert len(warned) == 10 - 4  # counted from the 5th on, as stream transports do
        server.close()

    run(loop_factory, main())


# -- flow control, closing ---------------------------------------------------------------

async def _unix_pair(loop: asyncio.AbstractEventLoop, unix_dir: str,
                     protocol: Callable[[], Recorder] = Recorder) -> Tuple[Any, Recorder, socket.socket]:
    """An endpoint connected to a Unix datagram socket that does not read yet."""
    path = os.path.join(unix_dir, "peer")
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.bind(path)
    peer.setblocking(False)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.connect(path)
    sock.setblocking(False)
    transport, proto = await loop.create_datagram_endpoint(protocol, sock=sock)
    return transport, proto, peer


async def _fill(transport: Any, proto: Recorder, stop: Callable[[], bool],
                limit: int = 10000) -> List[bytes]:
    sent = []
    for i in range(limit):
        data = b"%06d" % i + b"." * 500
        transport.sendto(data)
        sent.append(data)
        if stop():
            return sent
    raise AssertionError("the send buffer never filled")


async def _drain(peer: socket.socket, count: int) -> List[bytes]:
    got: List[bytes] = []
    for _ in range(100000):
        try:
            while len(got) < count:
                got.append(peer.recv(4096))
        except BlockingIOError:
            await asyncio.sleep(0)
        if len(got) == count:
            return got
    raise AssertionError(f"only {len(got)} of {count} datagrams arrived")


def test_write_flow_control(loop_factory, unix_dir):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _unix_pair(loop, unix_dir)
        try:
            transport.set_write_buffer_limits(high=4000, low=1000)
            assert transport.get_write_buffer_limits() == (1000, 4000)
            sent = await _fill(transport, proto, lambda: proto.paused > 0)
            assert proto.paused == 1 and proto.resumed == 0
            queued = transport.get_write_buffer_size()
            assert queued > 4000
            got = await _drain(peer, len(sent))
            assert got == sent
            await _yield_until(lambda: not transport._buffer)
            if STDLIB_SIZE_DRIFTS and not _is_c_loop(loop):
                assert transport.get_write_buffer_size() > 0  # the drift
            else:
                assert transport.get_write_buffer_size() == 0
                assert proto.paused == 1 and proto.resumed == 1
            transport.close()
            assert await proto.lost is None
        finally:
            peer.close()

    run(loop_factory, main())


def test_resume_writing_that_closes_the_transport_ends_it_once(loop_factory, unix_dir):
    """resume_writing() closing its transport: connection_lost once, nothing
    logged.  Stock asyncio before CPython gh-156512 also calls the transport's
    _call_connection_lost from the write path, and the call that close()
    scheduled then fails."""
    errors: List[dict] = []

    class Closer(Recorder):
        def resume_writing(self) -> None:
            super().resume_writing()
            self.transport.close()

    async def main() -> Optional[Tuple[int, bool]]:
        loop = asyncio.get_running_loop()
        if STDLIB_SIZE_DRIFTS and not _is_c_loop(loop):
            return None  # such a loop never resumes a datagram writer
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        transport, proto, peer = await _unix_pair(loop, unix_dir, Closer)
        try:
            transport.set_write_buffer_limits(high=4000, low=0)  # resumed when empty
            sent = await _fill(transport, proto, lambda: proto.paused > 0)
            assert await _drain(peer, len(sent)) == sent
            assert await proto.lost is None
            for _ in range(5):
                await asyncio.sleep(0)
            return proto.lost_calls, _is_c_loop(loop)
        finally:
            peer.close()

    outcome = run(loop_factory, main())
    if outcome is None:
        pytest.skip("this stock asyncio never resumes a datagram writer (CPython gh-135444)")
    lost_calls, c_loop = outcome
    assert lost_calls == 1
    if errors and not c_loop:
        pytest.xfail("stock asyncio's transports: CPython gh-156512")
    assert errors == []


def test_write_buffer_size_counts_queued_datagrams(loop_factory, unix_dir):
    header = 8 if sys.version_info >= (3, 13) else 0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _unix_pair(loop, unix_dir)
        try:
            transport.set_write_buffer_limits(high=1 << 30)
            await _fill(transport, proto, lambda: transport.get_write_buffer_size() > 0)
            assert transport.get_write_buffer_size() == 506 + header
            transport.sendto(b"x" * 10)
            transport.sendto(bytearray(b"y" * 20))
            assert transport.get_write_buffer_size() == 506 + 10 + 20 + 3 * header
            transport.abort()
            assert await proto.lost is None
        finally:
            peer.close()

    run(loop_factory, main())


def test_close_with_queued_data_flushes_first(loop_factory, unix_dir):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _unix_pair(loop, unix_dir)
        try:
            sent = await _fill(transport, proto, lambda: transport.get_write_buffer_size() > 0)
            sent += [b"last-1", b"last-2"]
            transport.sendto(b"last-1")
            transport.sendto(b"last-2")
            transport.close()
            assert transport.is_closing()
            transport.close()  # twice: nothing more
            for _ in range(5):
                await asyncio.sleep(0)
            assert not proto.lost.done()  # not before the queue is out
            got = await _drain(peer, len(sent))
            assert got == sent
            assert await proto.lost is None
            await asyncio.sleep(0)
            assert proto.lost_calls == 1
            assert transport.get_extra_info("socket") is not None
        finally:
            peer.close()

    run(loop_factory, main())


def test_abort_drops_queued_data(loop_factory, unix_dir):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto, peer = await _unix_pair(loop, unix_dir)
        try:
            sent = await _fill(transport, proto, lambda: transport.get_write_buffer_size() > 0)
            transport.sendto(b"dropped")
            transport.abort()
            assert transport.is_closing()
            assert await proto.lost is None
            transport.abort()
            transport.close()
            await asyncio.sleep(0)
            assert proto.lost_calls == 1
            got: List[bytes] = []
            try:
                while True:
                    got.append(peer.recv(4096))
            except BlockingIOError:
                pass
            assert got == sent[:-1]  # what the kernel took; the queued one never left
        finally:
            peer.close()

    run(loop_factory, main())


def test_close_twice_and_after_close(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        assert not transport.is_closing()
        transport.close()
        transport.close()
        assert transport.is_closing()
        assert await proto.lost is None
        transport.close()
        transport.abort()
        await asyncio.sleep(0)
        assert proto.lost_calls == 1

    run(loop_factory, main())


def test_close_from_datagram_received_stops_delivery(loop_factory):
    class Closer(Recorder):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            if data == b"3":
                self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(10):
                tx.sendto(b"%d" % i, rx.getsockname())
            transport, proto = await loop.create_datagram_endpoint(Closer, sock=rx)
            assert await proto.lost is None
            assert proto.data() == [b"0", b"1", b"2", b"3"]

    run(loop_factory, main())


@pytest.mark.skipif(not CAN_PAUSE_READING, reason="datagram pause_reading is new in 3.11")
def test_pause_reading_mid_batch_keeps_order(loop_factory):
    class Pauser(Recorder):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            if data == b"2":
                self.transport.pause_reading()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(8):
                tx.sendto(b"%d" % i, rx.getsockname())
            transport, proto = await loop.create_datagram_endpoint(Pauser, sock=rx)
            await proto.wait_for(3)
            for _ in range(20):
                await asyncio.sleep(0)
            assert proto.data() == [b"0", b"1", b"2"]
            assert not transport.is_reading()
            transport.resume_reading()
            assert transport.is_reading()
            await proto.wait_for(8)
            assert proto.data() == [b"%d" % i for i in range(8)]
            transport.close()

    run(loop_factory, main())


@pytest.mark.skipif(CAN_PAUSE_READING, reason="datagram pause_reading exists from 3.11")
def test_pause_reading_not_implemented_before_311(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        with pytest.raises(NotImplementedError):
            transport.pause_reading()
        transport.close()

    run(loop_factory, main())


# -- the rest of the transport API ---------------------------------------------------------

def test_extra_info_and_protocol(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, first = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        addr = server.get_extra_info("sockname")
        client, _ = await loop.create_datagram_endpoint(Recorder, remote_addr=addr)
        sock = server.get_extra_info("socket")
        assert sock.fileno() >= 0 and sock.getsockname() == addr
        assert server.get_extra_info("peername") is None
        assert server.get_extra_info("nothing", "default") == "default"
        assert client.get_extra_info("peername") == addr
        assert client._address == addr
        assert server._address is None
        assert server.max_size == 256 * 1024
        assert server.get_protocol() is first
        client.sendto(b"to first")
        await first.wait_for(1)
        second = Recorder()
        server.set_protocol(second)
        assert server.get_protocol() is second
        client.sendto(b"to second")
        await second.wait_for(1)
        assert first.data() == [b"to first"] and second.data() == [b"to second"]
        assert server.get_write_buffer_size() == 0
        client.close()
        server.close()

    run(loop_factory, main())


def test_waiter_and_connection_made_order(loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        # The endpoint's waiter resolves only after connection_made().
        assert proto.made.done() and proto.transport is transport
        transport.close()
        await proto.lost

    run(loop_factory, main())


def test_unclosed_transport_warns(loop_factory):
    loop = loop_factory()
    try:
        async def main() -> None:
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                local_addr=("127.0.0.1", 0))

        loop.run_until_complete(main())
    finally:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loop.close()
            gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and "unclosed transport" in str(w.message)
               for w in caught)


def test_unix_datagram_endpoints(loop_factory, unix_dir):
    server_path = os.path.join(unix_dir, "server")
    client_path = os.path.join(unix_dir, "client")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(
            Echo, local_addr=server_path, family=socket.AF_UNIX)
        client, proto = await loop.create_datagram_endpoint(
            Recorder, local_addr=client_path, remote_addr=server_path, family=socket.AF_UNIX)
        assert client.get_extra_info("peername") == server_path
        for p in [b"a", b"bb" * 1000, b"ccc"]:
            client.sendto(p)
        await proto.wait_for(3)
        assert proto.data() == [b"a", b"bb" * 1000, b"ccc"]
        assert all(a == server_path for _, a in proto.datagrams)
        # An unconnected one names its peer each time.
        other_path = os.path.join(unix_dir, "other")
        other, other_proto = await loop.create_datagram_endpoint(
            Recorder, local_addr=other_path, family=socket.AF_UNIX)
        other.sendto(b"hello", server_path)
        await other_proto.wait_for(1)
        assert other_proto.datagrams == [(b"hello", server_path)]
        for t in (client, server, other):
            t.close()
        await proto.lost

    run(loop_factory, main())
