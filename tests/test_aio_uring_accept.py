"""A server's listener on the io_uring loop: its connections are accepted by
the ring (a multishot accept), and what a server does around that -- close
while the accept is armed, connections the ring took that nobody can take
any more, serving started late, the loop closed under it, descriptors run
out -- behaves as on stock asyncio.  The public behaviour is checked on every
loop of ``io_loop_factory``; that the ring did the accepting, on io_uring."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import subprocess
import sys
import textwrap
from typing import Any, Callable, List, Optional, Tuple

import pytest
from test_aio_io_backend import _run, io_loop_factory  # noqa: F401 (a fixture)

from _aio_loops import TIMEOUT

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="/proc/self/fd and EMFILE as on Linux")


def _ring(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's RingPoller, None when it is not a C loop on io_uring."""
    try:
        from zerosock._aio_ring_c import ring_of
    except ImportError:
        return None
    return ring_of(loop) if hasattr(loop, "_stream_core") else None


@pytest.fixture
def uring_loop_factory(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    """A C loop on io_uring (skipped where the kernel or the options refuse it)."""
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    from zerosock import _aio_c
    if _aio_c._uring_unavailable() is not None:
        pytest.skip(f"io_uring is not usable here: {_aio_c._uring_unavailable()}")
    return lambda: _aio_c.new_event_loop(io="uring")


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _echo_once(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    data = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    return data


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _blocking_clients(port: int, count: int) -> List[socket.socket]:
    """Connected clients: the kernel completes each handshake into the
    listener's backlog without the server accepting."""
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        clients.append(client)
    return clients


def _what_clients_read(clients: List[socket.socket]) -> List[str]:
    """What each client of a server that dropped it reads: its end."""
    seen = []
    for client in clients:
        client.settimeout(5)
        try:
            seen.append("eof" if client.recv(1) == b"" else "data")
        except ConnectionResetError:
            seen.append("eof")  # (reset instead: the listener's close does that)
        except socket.timeout:
            seen.append("hang")
        client.close()
    return seen


# -- through the ring -------------------------------------------------------------------

def test_a_servers_connections_are_accepted_by_the_ring(uring_loop_factory):
    """Every connection of a plain and a TLS-less server comes from the ring's
    accept (not a readiness event and accept4): its count says so, and the
    listener is the ring's while served, in debug mode too (whose connections
    go the stdlib's way, a Task each), and no longer once the server closes."""

    async def main() -> Tuple[int, List[bool], List[bytes]]:
        loop = asyncio.get_running_loop()
        ring = _ring(loop)
        assert ring is not None
        before = ring.accept_counts()[0]
        server = await loop.create_server(_Echo, "127.0.0.1", 0)
        listener = server.sockets[0].fileno()
        port = server.sockets[0].getsockname()[1]
        states = [ring.accepting(listener)]
        echoed = [await _echo_once(port) for _ in range(20)]
        loop.set_debug(True)
        echoed += [await _echo_once(port, b"debug") for _ in range(3)]
        loop.set_debug(False)
        server.close()
        states.append(ring.accepting(listener))
        await server.wait_closed()
        return ring.accept_counts()[0] - before, states, echoed

    accepted, states, echoed = _run(uring_loop_factory, main)
    assert accepted == 23
    assert states == [True, False]
    assert echoed == [b"ping"] * 20 + [b"debug"] * 3


def test_a_unix_servers_connections_are_accepted_by_the_ring(uring_loop_factory, tmp_path):
    """A Unix listener too, with the peer's address accept() would give."""
    path = str(tmp_path / "sock")

    async def main() -> Tuple[int, List[Any]]:
        loop = asyncio.get_running_loop()
        ring = _ring(loop)
        before = ring.accept_counts()[0]
        peers: List[Any] = []

        class Peer(_Echo):
            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                peers.append(transport.get_extra_info("peername"))

        server = await loop.create_unix_server(Peer, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"u")
        await reader.readexactly(1)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return ring.accept_counts()[0] - before, peers

    assert _run(uring_loop_factory, main) == (1, [""])


def test_connections_the_ring_accepted_after_the_close_are_closed(uring_loop_factory):
    """Connections that reach the listener while the loop does not run are
    accepted by the kernel for the ring as they come (its work runs as the
    thread leaves each system call), their completions reaped only at the
    next wait.  The server closed meanwhile, they are late: the ring closes
    each one itself, and none reaches the loop."""

    async def main() -> Tuple[int, int, List[str]]:
        loop = asyncio.get_running_loop()
        ring = _ring(loop)
        server = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await asyncio.sleep(0)
        accepted, dropped = ring.accept_counts()
        clients = _blocking_clients(port, 8)
        server.close()
        await server.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0.01)
        after = ring.accept_counts()
        return after[0] - accepted, after[1] - dropped, _what_clients_read(clients)

    handed, closed, ends = _run(uring_loop_factory, main)
    assert (handed, ends) == (0, ["eof"] * 8)
    assert 1 <= closed <= 8  # (the last may come after the cancel: reset by the kernel)


# -- what a server does around its accept, on every loop ---------------------------------

def _closed_server_refuses(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    """A server closed while its accept is armed lets go of its listener at
    once (a connect is refused), and a connection it served before stays
    served until it ends."""

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"a")
        seen: List[Any] = [await reader.readexactly(1)]
        server.close()  # (wait_closed() would wait for the connection too, from 3.12.1)
        try:
            await asyncio.open_connection("127.0.0.1", port)
            seen.append("connected")
        except OSError as exc:
            seen.append(errno.errorcode.get(exc.errno or 0, str(exc)))
        writer.write(b"b")
        seen.append(await reader.readexactly(1))
        writer.close()
        await writer.wait_closed()
        await server.wait_closed()
        return seen

    return _run(factory, main)


def test_a_server_closed_while_accepting_lets_its_listener_go(io_loop_factory):
    assert _closed_server_refuses(io_loop_factory) == [b"a", "ECONNREFUSED", b"b"]


def _serving_started_late(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    """start_serving=False: not listening until start_serving(), which
    serves from then on; serving twice changes nothing."""

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Echo, "127.0.0.1", 0, start_serving=False)
        port = server.sockets[0].getsockname()[1]
        seen: List[Any] = [server.is_serving()]
        try:
            await asyncio.open_connection("127.0.0.1", port)
            seen.append("connected")
        except OSError as exc:
            seen.append(errno.errorcode.get(exc.errno or 0, str(exc)))
        await server.start_serving()
        await server.start_serving()
        seen += [server.is_serving(), await _echo_once(port), await _echo_once(port)]
        server.close()
        await server.wait_closed()
        return seen

    return _run(factory, main)


def test_serving_started_late_serves_from_then_on(io_loop_factory):
    assert _serving_started_late(io_loop_factory) == [False, "ECONNREFUSED", True, b"ping",
                                                      b"ping"]


def _connections_left_at_close(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    """Connections that reached the listener while the loop did not run, the
    server then closed: none is handed to the protocol, every client reads
    its end, and no descriptor is left open (on the ring, those it accepted
    and nobody can take any more are closed, the late ones included)."""
    made: List[Any] = []

    class Counted(_Echo):
        def connection_made(self, transport: Any) -> None:
            made.append(transport)
            super().connection_made(transport)

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Counted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await asyncio.sleep(0)
        opened = _open_descriptors()
        clients = _blocking_clients(port, 8)  # (the loop does not run meanwhile)
        server.close()
        await server.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0.01)  # (late completions reaped)
        seen: List[Any] = [len(made), _what_clients_read(clients)]
        seen.append(_open_descriptors() - opened)
        return seen

    return _run(factory, main)


@linux_only
def test_connections_left_when_a_server_closes_are_closed(io_loop_factory):
    assert _connections_left_at_close(io_loop_factory) == [0, ["eof"] * 8, -1]


@linux_only
def test_a_loop_closed_with_its_accept_armed_leaks_nothing(io_loop_factory):
    """The loop closed while a server's accept is armed and connections wait:
    whatever the ring accepted is closed with it, no descriptor leaks."""
    loop = io_loop_factory()
    try:
        server = loop.run_until_complete(loop.create_server(_Echo, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        loop.run_until_complete(asyncio.sleep(0))
        opened = _open_descriptors()
        clients = _blocking_clients(port, 8)
    finally:
        loop.close()
    server.close()  # (the loop is closed: only the listener's socket)
    assert _what_clients_read(clients) == ["eof"] * 8
    # The loop's selector (epoll or the ring) and self-pipe, and the listener, are gone.
    assert _open_descriptors() == opened - 4


def _peer_of_a_reset_connection(factory: Callable[[], asyncio.AbstractEventLoop]) -> bool:
    """A connection its client resets before the server reads anything:
    its transport still names the peer (accept() gave the address; the
    ring's accept gives none, and getpeername() would fail with ENOTCONN)."""

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        named = loop.create_future()

        class Peer(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                if not named.done():
                    named.set_result(transport.get_extra_info("peername"))

        server = await loop.create_server(Peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.settimeout(TIMEOUT)
        client.connect(("127.0.0.1", port))
        address = client.getsockname()
        client.close()  # (a reset, with SO_LINGER 0)
        peer = await asyncio.wait_for(named, TIMEOUT)
        server.close()
        await server.wait_closed()
        return bool(peer == address)

    return _run(factory, main)


def test_a_reset_connection_still_names_its_peer(io_loop_factory):
    assert _peer_of_a_reset_connection(io_loop_factory) is True


# -- out of descriptors -----------------------------------------------------------------

OUT_OF_DESCRIPTORS = textwrap.dedent("""
    import asyncio, os, resource, socket, sys
    sys.path.insert(0, {tests!r})
    from _aio_loops import Echo, connect_out_of_descriptors, run
    from zerosock import _aio_c
    from zerosock._aio_ring_c import ring_of

    reports = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: reports.append(context["message"]))
        ring = ring_of(loop)

        server = await loop.create_server(Echo, "127.0.0.1", 0)
        listener = server.sockets[0].fileno()
        port = server.sockets[0].getsockname()[1]
        states = [ring.accepting(listener)]
        client = socket.socket()
        client.setblocking(False)
        await connect_out_of_descriptors(loop, client, port, reports)
        states.append(ring.accepting(listener))  # paused: no accept armed
        await loop.sock_sendall(client, b"later")
        data = b""
        while len(data) < 5:
            data += await loop.sock_recv(client, 5)
        states.append(ring.accepting(listener))  # accepting again, on the ring
        client.close()
        server.close()
        await server.wait_closed()
        return data, states, ring.accept_counts()[0]

    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    data, states, accepted = run(lambda: _aio_c.new_event_loop(io="uring"), main())
    print(data.decode(), states, accepted, sorted(set(reports)))
""")


@linux_only
def test_running_out_of_descriptors_on_the_ring_pauses_then_resumes(uring_loop_factory):
    """The ring's accept failing with EMFILE: reported as the stdlib reports
    it, the listener left alone for a while (its accept not armed), then
    accepted on the ring again, where the waiting connection is served."""
    tests = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run([sys.executable, "-c", OUT_OF_DESCRIPTORS.format(tests=tests)],
                            capture_output=True, text=True, timeout=TIMEOUT + 30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(None, 4) == [
        "later", "[True,", "False,", "True]", "1 ['socket.accept() out of system resource']\n"]
