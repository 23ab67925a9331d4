"""RecvBuffer against the standard library's best idioms: 100,000 CRLF lines
and 100,000 length-prefixed frames arriving over a socketpair.

Run with ``PYTHONPATH=src python -m pytest benchmarks/test_bench_recvbuffer.py``.
Every contender runs the same single-threaded loop: send the next 64 KiB of
the stream, then receive and parse until the socket would block, so the
sending cost is the same for all and no thread switches add noise (the
asyncio cases run the stdlib event loop for both sides).  Each case is a
group of C, Python and one stdlib idiom, measured in the same run; the
summary prints the per-frame ratios.  Nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from typing import Any, Awaitable, Callable, Tuple

import pytest

FRAMES = 100_000
CHUNK = 65536
ROUNDS = 15


def _lines() -> bytes:
    rng = random.Random(1)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 :/-"
    return b"".join(bytes(rng.choices(alphabet, k=rng.randint(8, 60))) + b"\r\n"
                    for _ in range(FRAMES))


def _prefixed() -> bytes:
    rng = random.Random(2)
    out = []
    for _ in range(FRAMES):
        body = rng.randbytes(rng.randint(8, 60))
        out.append(struct.pack(">I", len(body)) + body)
    return b"".join(out)


LINES = _lines()
PREFIXED = _prefixed()


def _run(benchmark: Any, pair: Callable[[], Tuple[Any, Any]],
         parse: Callable[[Any, Any, bytes], int], stream: bytes) -> None:
    sockets = []

    def setup() -> Tuple[Tuple[Any, Any, bytes], dict]:
        for s in sockets:
            s.close()
        a, b = pair()
        sockets[:] = [a, b]
        a.setblocking(False)
        return (a, b, stream), {}

    try:
        count = benchmark.pedantic(parse, setup=setup, rounds=ROUNDS, iterations=1)
    finally:
        for s in sockets:
            s.close()
    assert count == FRAMES


# -- CRLF lines ------------------------------------------------------------

def lines_recvbuffer(zs: Any) -> Callable[[Any, Any, bytes], int]:
    def parse(a: Any, b: Any, stream: bytes) -> int:
        buf = zs.RecvBuffer(CHUNK)
        fill, readuntil = buf.fill, buf.readuntil
        data, sent, total, count = memoryview(stream), 0, len(stream), 0
        while sent < total:
            sent += b.send(data[sent:sent + CHUNK])
            while fill(a):
                while readuntil(b"\r\n", keep_separator=False) is not None:
                    count += 1
        return count
    return parse


def lines_bytearray(a: Any, b: Any, stream: bytes) -> int:
    """bytearray + find + slicing, recv_into a preallocated chunk."""
    buf = bytearray()
    chunk = bytearray(CHUNK)
    view = memoryview(chunk)
    recv_into, find = a.recv_into, buf.find
    data, sent, total, count = memoryview(stream), 0, len(stream), 0
    while sent < total:
        sent += b.send(data[sent:sent + CHUNK])
        while True:
            try:
                n = recv_into(chunk)
            except BlockingIOError:
                break
            buf += view[:n]
            start = 0
            while True:
                end = find(b"\r\n", start)
                if end < 0:
                    break
                line = bytes(buf[start:end])  # noqa: F841 - the frame a protocol gets
                start = end + 2
                count += 1
            del buf[:start]
    return count


def lines_split(a: Any, b: Any, stream: bytes) -> int:
    """recv + bytes.split: every line of a chunk made in one C call."""
    pending = b""
    recv = a.recv
    data, sent, total, count = memoryview(stream), 0, len(stream), 0
    while sent < total:
        sent += b.send(data[sent:sent + CHUNK])
        while True:
            try:
                chunk = recv(CHUNK)
            except BlockingIOError:
                break
            lines = (pending + chunk).split(b"\r\n")
            pending = lines.pop()
            for line in lines:
                count += 1
    return count


def _on_stdlib_loop(main: Awaitable[int]) -> int:
    """Run ``main`` on a new stdlib event loop (without asyncio.run's shutdown work)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


def _stdlib_streams(a: Any, b: Any, stream: bytes,
                    read_frames: Callable[[asyncio.StreamReader], Awaitable[int]]) -> int:
    """``read_frames`` (frames read) on a StreamReader over ``a`` while ``b`` sends ``stream``."""
    async def main() -> int:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection(sock=a, limit=CHUNK)
        b.setblocking(False)
        sending = loop.create_task(loop.sock_sendall(b, stream))
        count = await read_frames(reader)
        await sending
        writer.transport.abort()
        return count

    return _on_stdlib_loop(main())


def lines_asyncio(a: Any, b: Any, stream: bytes) -> int:
    """asyncio.StreamReader.readuntil on the stdlib event loop."""
    async def read_lines(reader: asyncio.StreamReader) -> int:
        count = 0
        readuntil = reader.readuntil
        while count < FRAMES:
            await readuntil(b"\r\n")
            count += 1
        return count

    return _stdlib_streams(a, b, stream, read_lines)


# -- length-prefixed frames ------------------------------------------------

def frames_recvbuffer(zs: Any) -> Callable[[Any, Any, bytes], int]:
    def parse(a: Any, b: Any, stream: bytes) -> int:
        buf = zs.RecvBuffer(CHUNK)
        fill, readexactly = buf.fill, buf.readexactly
        from_bytes = int.from_bytes
        data, sent, total, count = memoryview(stream), 0, len(stream), 0
        size = -1
        while sent < total:
            sent += b.send(data[sent:sent + CHUNK])
            while fill(a):
                while True:
                    if size < 0:
                        header = readexactly(4)
                        if header is None:
                            break
                        size = from_bytes(header, "big")
                    if readexactly(size) is None:
                        break
                    size = -1
                    count += 1
        return count
    return parse


def frames_readprefixed(zs: Any) -> Callable[[Any, Any, bytes], int]:
    def parse(a: Any, b: Any, stream: bytes) -> int:
        buf = zs.RecvBuffer(CHUNK)
        fill, readprefixed = buf.fill, buf.readprefixed
        data, sent, total, count = memoryview(stream), 0, len(stream), 0
        while sent < total:
            sent += b.send(data[sent:sent + CHUNK])
            while fill(a):
                while readprefixed() is not None:
                    count += 1
        return count
    return parse


def frames_bytearray(a: Any, b: Any, stream: bytes) -> int:
    """bytearray + struct.unpack_from + slicing."""
    buf = bytearray()
    chunk = bytearray(CHUNK)
    view = memoryview(chunk)
    recv_into = a.recv_into
    unpack_from = struct.Struct(">I").unpack_from
    data, sent, total, count = memoryview(stream), 0, len(stream), 0
    while sent < total:
        sent += b.send(data[sent:sent + CHUNK])
        while True:
            try:
                n = recv_into(chunk)
            except BlockingIOError:
                break
            buf += view[:n]
            pos, end = 0, len(buf)
            while end - pos >= 4:
                (size,) = unpack_from(buf, pos)
                if end - pos - 4 < size:
                    break
                frame = bytes(buf[pos + 4:pos + 4 + size])  # noqa: F841
                pos += 4 + size
                count += 1
            del buf[:pos]
    return count


def frames_asyncio(a: Any, b: Any, stream: bytes) -> int:
    """asyncio.StreamReader.readexactly on the stdlib event loop."""
    async def read_prefixed(reader: asyncio.StreamReader) -> int:
        count = 0
        readexactly = reader.readexactly
        from_bytes = int.from_bytes
        while count < FRAMES:
            await readexactly(from_bytes(await readexactly(4), "big"))
            count += 1
        return count

    return _stdlib_streams(a, b, stream, read_prefixed)


# -- asyncio: RecvBuffer as a BufferedProtocol's buffer -------------------

def _asyncio_recvbuffer(zs: Any, drain: Callable[[Any], int]) -> Callable[[Any, Any, bytes], int]:
    """Run ``drain(buf)`` (frames taken) after every receive, stdlib event loop."""
    def parse(a: Any, b: Any, stream: bytes) -> int:
        class Frames(asyncio.BufferedProtocol):
            def __init__(self, done: "asyncio.Future[int]") -> None:
                self.buf = zs.RecvBuffer(CHUNK)
                self.get_buffer = self.buf.get_buffer  # type: ignore[method-assign]
                self.count = 0
                self.done = done

            def buffer_updated(self, nbytes: int) -> None:
                self.buf.buffer_updated(nbytes)
                self.count += drain(self.buf)
                if self.count == FRAMES:
                    self.done.set_result(self.count)

        async def main() -> int:
            loop = asyncio.get_running_loop()
            done: "asyncio.Future[int]" = loop.create_future()
            transport, _ = await loop.connect_accepted_socket(lambda: Frames(done), a)
            b.setblocking(False)
            await loop.sock_sendall(b, stream)
            count = await done
            transport.abort()
            return count

        return _on_stdlib_loop(main())
    return parse


def _drain_lines(buf: Any) -> int:
    readuntil, count = buf.readuntil, 0
    while readuntil(b"\r\n", keep_separator=False) is not None:
        count += 1
    return count


def _drain_prefixed(buf: Any) -> int:
    readprefixed, count = buf.readprefixed, 0
    while readprefixed() is not None:
        count += 1
    return count


# -- the benchmarks --------------------------------------------------------
# Each case is one group: zerosock's C and Python backends (``impl`` c/py)
# against one standard-library idiom (``impl`` std), so the summary table of
# benchmarks/conftest.py gives the ratio to each idiom.

CASES = {
    # "frames/stdlib idiom": (stream, zerosock parser factory, stdlib parser,
    #                         whether every contender uses stdlib sockets)
    "lines/bytearray-find": (LINES, lines_recvbuffer, lines_bytearray, False),
    "lines/bytes-split": (LINES, lines_recvbuffer, lines_split, False),
    "lines/asyncio": (
        LINES, lambda zs: _asyncio_recvbuffer(zs, _drain_lines), lines_asyncio, True),
    "prefixed/bytearray": (PREFIXED, frames_readprefixed, frames_bytearray, False),
    "readexactly-pair/bytearray": (PREFIXED, frames_recvbuffer, frames_bytearray, False),
    "prefixed/asyncio": (
        PREFIXED, lambda zs: _asyncio_recvbuffer(zs, _drain_prefixed), frames_asyncio, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_recvbuffer(benchmark: Any, impl: Any, case: str) -> None:
    stream, zerosock_parser, stdlib_parser, stdlib_sockets = CASES[case]
    benchmark.group = f"RecvBuffer {case}"
    benchmark.extra_info["ops_per_round"] = FRAMES
    if impl.BACKEND == "stdlib":
        parse, pair = stdlib_parser, socket.socketpair
    else:
        parse, pair = zerosock_parser(impl), socket.socketpair if stdlib_sockets else impl.socketpair
    _run(benchmark, pair, parse, stream)
