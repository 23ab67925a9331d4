"""Datagram transports at the edges where a loop on io_uring completions
could differ from one on readiness: UDP transports must run on the ring
(not fall back silently), a failed send in the middle of a batch, datagrams
cut to ``max_size``, IPv6 addresses, an ICMP error on a connected socket,
and close or abort with sends the kernel holds.  Every loop of
``io_loop_factory`` (each I/O backend, the Python backend, stock asyncio)
must behave alike."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import tempfile
import threading
from typing import Any, List, Optional, Tuple

import pytest

import _netns
from test_aio_datagram import _have_ipv6
from test_aio_io_backend import _run, io_loop_factory  # noqa: F401 (a fixture)

UDP_MAX = 65507  # the largest IPv4 UDP payload


def _on_ring(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        from zerosock._aio_ring_c import ring_of
    except ImportError:
        return False
    return type(loop).__module__.startswith("zerosock._aio_c") and ring_of(loop) is not None


def _core_kind(transport: Any) -> str:
    return type(getattr(transport, "_core", None)).__name__


class Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.datagrams: List[Tuple[bytes, Any]] = []
        self.errors: List[Exception] = []
        self.lost_calls = 0
        self.lost = self.loop.create_future()
        self.arrived = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))
        self.arrived.set()

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        self.arrived.set()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost_calls += 1
        if not self.lost.done():
            self.lost.set_result(exc)

    async def wait_for(self, count: int) -> None:
        for _ in range(1000):
            if len(self.datagrams) + len(self.errors) >= count:
                return
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        raise AssertionError("never arrived")


def test_udp_transports_of_a_ring_loop_run_on_its_completions(io_loop_factory):
    """What a silent fall back to readiness would change: the socket is never
    watched by the ring's poller, and the core is the completions' one; Unix
    datagrams (longer than any buffer of the ring) stay on readiness."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        tx, _ = await loop.create_datagram_endpoint(Recorder,
                                                    remote_addr=rx.get_extra_info("sockname"))
        tx.sendto(b"ping")
        await proto.wait_for(1)
        assert proto.datagrams == [(b"ping", tx.get_extra_info("sockname"))]
        if _on_ring(loop):
            for transport in (rx, tx):
                assert _core_kind(transport) == "RingDatagramCore"
                with pytest.raises(KeyError):  # reading, yet not watched for readiness
                    loop._selector.get_key(transport.get_extra_info("socket").fileno())
            with tempfile.TemporaryDirectory() as path:
                unix, _ = await loop.create_datagram_endpoint(
                    Recorder, local_addr=os.path.join(path, "sock"), family=socket.AF_UNIX)
                await asyncio.sleep(0)
                assert _core_kind(unix) == "DatagramCore"
                loop._selector.get_key(unix.get_extra_info("socket").fileno())
                unix.close()
        tx.close()
        rx.close()
        assert await proto.lost is None

    _run(io_loop_factory, main)


def test_a_failed_send_amid_others_reports_it_and_sends_the_rest_in_order(io_loop_factory):
    """A datagram too long for UDP among others sent in one go: its error to
    error_received(), the others out in order (on the ring, those linked
    behind it are cancelled by its failure and go again)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        tx, tx_proto = await loop.create_datagram_endpoint(
            Recorder, remote_addr=rx.get_extra_info("sockname"))
        sent = [b"first", b"second", b"x" * (UDP_MAX + 1), b"third", b"fourth"]
        for data in sent:
            tx.sendto(data)
        await proto.wait_for(4)
        assert [d for d, _ in proto.datagrams] == [b"first", b"second", b"third", b"fourth"]
        assert len(tx_proto.errors) == 1
        assert isinstance(tx_proto.errors[0], OSError)
        assert tx_proto.errors[0].errno == errno.EMSGSIZE
        for _ in range(5):
            await asyncio.sleep(0)
        assert tx.get_write_buffer_size() == 0
        assert not tx.is_closing()
        tx.close()
        rx.close()
        assert await tx_proto.lost is None

    _run(io_loop_factory, main)


@pytest.mark.parametrize("max_size", [1, 10, 1000, UDP_MAX, 1 << 20])
def test_datagrams_longer_than_max_size_are_cut_as_recvfrom_cuts_them(io_loop_factory, max_size):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        rx.max_size = max_size
        sizes = [0, 5, 999, 1000, 1001, 40000, UDP_MAX]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for size in sizes:
                tx.sendto(bytes(range(256)) * (size // 256) + bytes(size % 256),
                          rx.get_extra_info("sockname"))
                await proto.wait_for(sizes.index(size) + 1)  # (a receive buffer's worth at most)
        got = [d for d, _ in proto.datagrams]
        assert [len(d) for d in got] == [min(size, max_size) for size in sizes]
        for size, data in zip(sizes, got):
            assert data == (bytes(range(256)) * (size // 256) + bytes(size % 256))[:max_size]
        rx.close()

    _run(io_loop_factory, main)


def test_ipv6_addresses_come_as_the_socket_module_gives_them(io_loop_factory):
    if not _have_ipv6():
        pytest.skip("no IPv6 loopback")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("::1", 0))
        addr = rx.get_extra_info("sockname")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as tx:
            tx.bind(("::1", 0))
            tx.sendto(b"hello", addr)
            await proto.wait_for(1)
            assert proto.datagrams == [(b"hello", tx.getsockname())]
            assert len(proto.datagrams[0][1]) == 4
            rx.sendto(b"back", proto.datagrams[0][1])  # a reply to the address received
            tx.settimeout(10)
            await asyncio.sleep(0)
            assert await loop.run_in_executor(None, tx.recvfrom, 100) == (b"back", addr)
        rx.close()

    _run(io_loop_factory, main)


def test_an_icmp_error_on_a_connected_socket_goes_to_error_received(io_loop_factory):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
            gone.bind(("127.0.0.1", 0))
            addr = gone.getsockname()
        tx, proto = await loop.create_datagram_endpoint(Recorder, remote_addr=addr)
        try:
            for _ in range(100):  # the ICMP error comes back asynchronously
                tx.sendto(b"anyone?")
                if proto.errors:
                    break
                await asyncio.sleep(0.01)
            assert proto.errors and isinstance(proto.errors[0], ConnectionRefusedError)
            assert not tx.is_closing()
            # Reading goes on after it: a datagram from the peer still arrives.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.bind(addr)
                peer.sendto(b"late", tx.get_extra_info("sockname"))
                # (ICMP errors of the other sends may still come in before it)
                for _ in range(200):
                    if proto.datagrams:
                        break
                    await proto.wait_for(len(proto.datagrams) + len(proto.errors) + 1)
            assert proto.datagrams == [(b"late", addr)]
            assert all(isinstance(exc, ConnectionRefusedError) for exc in proto.errors)
        finally:
            tx.close()
        assert await proto.lost is None

    _run(io_loop_factory, main)


# -- sends the kernel holds: a slow link in a network namespace ------------------------------

@pytest.fixture
def slow_link():
    """A sender and a receiver, connected UDP sockets on a loopback whose
    qdisc lets a burst through and then about 1 KB/s, so that a sender with a
    small send buffer has sends waiting for room; ``release()`` drops the
    qdisc and what it holds, and room comes back."""
    why = _netns.unavailable()
    if why is None and shutil.which("tc") is None:
        why = "no tc (Debian: iproute2)"
    if why is not None:
        pytest.skip(why)
    ns = _netns.Namespace()
    ns.run("ip", "link", "set", "lo", "up")
    ns.run("tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8kbit", "burst", "5000",
           "mtu", "70000", "limit", "1000000")
    made: dict = {}

    def make() -> None:  # sockets belong to the namespace of the thread that makes them
        ns.enter()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        tx.connect(rx.getsockname())
        made["socks"] = rx, tx

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    rx, tx = made["socks"]
    yield rx, tx, lambda: ns.run("tc", "qdisc", "del", "dev", "lo", "root")
    rx.close()
    tx.close()
    ns.close()


async def _held_sends(slow_link: Any) -> Tuple[Any, Recorder, Any, Recorder, List[bytes]]:
    loop = asyncio.get_running_loop()
    rx_sock, tx_sock, _ = slow_link
    rx, rx_proto = await loop.create_datagram_endpoint(Recorder, sock=rx_sock)
    tx, tx_proto = await loop.create_datagram_endpoint(Recorder, sock=tx_sock)
    sent = [bytes([65 + i]) * 3000 for i in range(8)]
    for data in sent:
        tx.sendto(data)
    for _ in range(10):
        await asyncio.sleep(0)
    assert tx.get_write_buffer_size() > 0  # the kernel has no room for some
    if _on_ring(loop):
        assert _core_kind(tx) == "RingDatagramCore"
    return rx, rx_proto, tx, tx_proto, sent


def test_close_with_sends_held_ends_once_they_went(io_loop_factory, slow_link):
    async def main() -> None:
        rx, rx_proto, tx, tx_proto, sent = await _held_sends(slow_link)
        tx.close()
        for _ in range(10):
            await asyncio.sleep(0)
        assert not tx_proto.lost.done()  # not before the queue is out
        slow_link[2]()  # room again
        assert await tx_proto.lost is None
        await rx_proto.wait_for(1)
        for _ in range(10):
            await asyncio.sleep(0.001)
        got = [d for d, _ in rx_proto.datagrams]
        # The burst's first, then (the qdisc's own dropped with it) the rest, in order.
        assert got[0] == sent[0] and got[1:] == sent[-len(got) + 1:]
        assert tx_proto.lost_calls == 1 and tx_proto.errors == []
        rx.close()

    _run(io_loop_factory, main)


def test_abort_with_sends_held_drops_them_and_ends_once(io_loop_factory, slow_link):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        rx, rx_proto, tx, tx_proto, sent = await _held_sends(slow_link)
        tx.abort()
        assert await tx_proto.lost is None
        slow_link[2]()
        for _ in range(10):
            await asyncio.sleep(0.001)
        assert tx_proto.lost_calls == 1 and tx_proto.errors == []
        assert [d for d, _ in rx_proto.datagrams] == sent[:1]  # none of those held
        # A next transport (on the descriptor, where the kernel gives it
        # again) gets nothing of the aborted one's.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        again, again_proto = await loop.create_datagram_endpoint(Recorder, sock=sock)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"new", sock.getsockname())
            await again_proto.wait_for(1)
        assert again_proto.datagrams[0][0] == b"new" and again_proto.errors == []
        again.close()
        rx.close()

    _run(io_loop_factory, main)
