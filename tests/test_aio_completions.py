"""Stream transports at the edges where a loop on io_uring completions could
differ from one on readiness: reads paused while completions are pending,
close and abort with a send and a receive in flight, a descriptor reused
after a close, writes larger than the kernel takes at once, and a peer that
resets mid-write.  Every loop of ``io_loop_factory`` (each I/O backend, the
Python backend, stock asyncio) must behave alike."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
from typing import Any, List, Optional

from test_aio_io_backend import _run, io_loop_factory  # noqa: F401 (a fixture)


class Recorder(asyncio.Protocol):
    """Keeps what it is told, in order."""

    def __init__(self) -> None:
        self.events: List[Any] = []
        self.data = bytearray()
        self.lost: Optional[asyncio.Future] = None
        self.paused_writing = 0
        self.resumed_writing = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.events.append("data")
        self.data += data

    def eof_received(self) -> None:
        self.events.append("eof")

    def pause_writing(self) -> None:
        self.paused_writing += 1

    def resume_writing(self) -> None:
        self.resumed_writing += 1

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.events.append("lost")
        assert self.lost is not None
        self.lost.set_result(exc)


async def _transport(sock: socket.socket, proto: Any = None) -> tuple:
    loop = asyncio.get_running_loop()
    proto = proto or Recorder()
    transport, _ = await loop.connect_accepted_socket(lambda: proto, sock)
    return transport, proto


async def _read_all(sock: socket.socket, size: int) -> bytes:
    """What the peer receives, ``size`` bytes or up to the end, read by the loop."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    got = bytearray()
    while len(got) < size:
        chunk = await loop.sock_recv(sock, 1 << 16)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def test_paused_reading_delivers_nothing_then_everything_in_order(io_loop_factory):
    async def main() -> None:
        ours, peer = socket.socketpair()
        with peer:
            transport, proto = await _transport(ours)
            await asyncio.sleep(0)
            transport.pause_reading()
            for i in range(50):  # completions arrive while paused
                peer.sendall(struct.pack("!I", i) * 256)
                await asyncio.sleep(0)
            assert proto.data == b"" and not transport.is_reading()
            transport.resume_reading()
            transport.pause_reading()  # at once again: nothing may be lost or reordered
            for _ in range(3):
                await asyncio.sleep(0)
            transport.resume_reading()
            expected = b"".join(struct.pack("!I", i) * 256 for i in range(50))
            while len(proto.data) < len(expected):
                await asyncio.sleep(0.001)
            assert bytes(proto.data) == expected
            peer.shutdown(socket.SHUT_WR)
            await proto.lost
            assert proto.events[-2:] == ["eof", "lost"]

    _run(io_loop_factory, main)


def test_pause_and_resume_in_every_data_received_lose_nothing(io_loop_factory):
    class Flapping(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self.transport.resume_reading)

    async def main() -> None:
        ours, peer = socket.socketpair()
        with peer:
            transport, proto = await _transport(ours, Flapping())
            payload = bytes(range(256)) * 4096  # 1 MiB, in pieces
            peer.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(peer, payload)
            peer.shutdown(socket.SHUT_WR)
            assert await proto.lost is None
            assert bytes(proto.data) == payload

    _run(io_loop_factory, main)


def test_close_with_data_in_flight_sends_it_all_before_connection_lost(io_loop_factory):
    async def main() -> None:
        ours, peer = socket.socketpair()
        with peer:
            transport, proto = await _transport(ours)
            payload = bytes(range(251)) * 40_000  # ~10 MB: far more than the socket holds
            transport.write(payload)
            transport.close()  # a recv is in flight too
            assert transport.is_closing()
            await asyncio.sleep(0.01)
            assert not proto.lost.done()  # the data is still on its way
            got = await _read_all(peer, len(payload) + 1)
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
            assert await proto.lost is None

    _run(io_loop_factory, main)


def test_abort_with_a_send_and_a_recv_in_flight(io_loop_factory):
    async def main() -> None:
        ours, peer = socket.socketpair()
        with peer:
            transport, proto = await _transport(ours)
            transport.write(b"x" * (8 << 20))
            for _ in range(3):
                await asyncio.sleep(0)  # the send is in the kernel's hands, blocked
            assert transport.get_write_buffer_size() > 0
            transport.abort()
            assert transport.get_write_buffer_size() == 0
            assert await proto.lost is None
            assert proto.events[-1:] == ["lost"] and proto.events.count("lost") == 1
            got = await _read_all(peer, 16 << 20)  # what had gone, then the end
            assert got == b"x" * len(got) and len(got) < (8 << 20)

    _run(io_loop_factory, main)


def test_a_reused_descriptor_gets_nothing_of_the_closed_transport(io_loop_factory):
    async def main() -> None:
        for _ in range(20):
            ours, peer = socket.socketpair()
            fd = ours.fileno()
            transport, proto = await _transport(ours)
            await asyncio.sleep(0)
            transport.write(b"old" * 100_000)
            transport.abort()  # a recv and a send in flight
            peer.sendall(b"late")  # may complete for the old transport
            peer.close()
            await proto.lost
            # Often the same descriptor again, with a transport of its own.
            new, new_peer = socket.socketpair()
            with new_peer:
                reused = new.fileno() == fd
                transport2, proto2 = await _transport(new)
                new_peer.sendall(b"fresh")
                while len(proto2.data) < 5:
                    await asyncio.sleep(0.001)
                assert bytes(proto2.data) == b"fresh", reused
                transport2.write(b"reply")
                assert await _read_all(new_peer, 5) == b"reply"
                transport2.close()
                await proto2.lost
            assert b"late" not in proto2.data

    _run(io_loop_factory, main)


def test_a_large_write_leaves_in_pieces_with_flow_control(io_loop_factory):
    async def main() -> None:
        ours, peer = socket.socketpair()
        with peer:
            transport, proto = await _transport(ours)
            transport.set_write_buffer_limits(high=256 * 1024)
            payload = hashlib.sha256(b"seed").digest() * (1 << 17)  # 4 MiB
            transport.write(payload[:1000])
            transport.write(memoryview(bytearray(payload[1000:]))[:])  # mutable: copied
            assert proto.paused_writing == 1
            got = await _read_all(peer, len(payload))
            assert got == payload
            while transport.get_write_buffer_size():
                await asyncio.sleep(0.001)
            assert proto.resumed_writing == 1
            transport.close()
            assert await proto.lost is None

    _run(io_loop_factory, main)


def test_a_peer_that_resets_mid_write(io_loop_factory):
    async def main() -> Optional[BaseException]:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        with listener:
            peer = socket.create_connection(listener.getsockname())
            ours, _ = listener.accept()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        transport, proto = await _transport(ours)
        transport.write(b"z" * (16 << 20))
        await asyncio.sleep(0.01)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # a reset, with our send blocked on a full window
        exc = await asyncio.wait_for(proto.lost, 10)
        assert transport.is_closing() and transport.get_write_buffer_size() == 0
        transport.write(b"more")  # ignored, as after any fatal error
        await asyncio.sleep(0)
        return exc

    exc = _run(io_loop_factory, main)
    assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc


def test_a_servers_connections_run_as_its_loop_does(io_loop_factory):
    """Connections a server accepts (zerosock's loop accepts them in C) get
    the transports its loop makes: on io_uring, completions; every loop
    echoes their pipelined requests in order."""

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    async def main() -> List[str]:
        loop = asyncio.get_running_loop()
        transports: List[Any] = []

        def factory() -> Echo:
            proto = Echo()
            transports.append(proto)
            return proto

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        for i, (_, writer) in enumerate(clients):
            for j in range(20):
                writer.write(b"%02d:%02d;" % (i, j))
        for i, (reader, _) in enumerate(clients):
            got = await reader.readexactly(6 * 20)
            assert got == b"".join(b"%02d:%02d;" % (i, j) for j in range(20))
        kinds = sorted({type(getattr(p.transport, "_core", None)).__name__ for p in transports})
        for _, writer in clients:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return kinds

    kinds = _run(io_loop_factory, main)
    loop = io_loop_factory()
    try:
        io = getattr(loop, "_stream_core", None)
    finally:
        loop.close()
    if io is not None:
        assert kinds == [io.__name__]
