"""Leak loops: each hot call, and each of its failures, run many times in a
subprocess of its own, with RSS and tracemalloc flat after a warm-up; and
connection churn against a zerosock.aio server, its RSS, allocated blocks
and open descriptors flat.

``ZEROSOCK_LEAK_ITERATIONS`` sets the count (default 200,000; the full run
is ``ZEROSOCK_LEAK_ITERATIONS=1000000``).  Connection cycles run a tenth as
many.  A new layer's hot calls join by adding a case to ``CASES``.  The loop's
cases run on its io_uring backend too (``c-uring``).
``ZEROSOCK_CHURN_CYCLES`` sets the churn's short count (default 4,000);
``--full`` adds 100,000 (``tools/churn.sh``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import _kernel
from _hardening import HERE, run_script, subprocess_env, under_sanitizer

pytestmark = [
    pytest.mark.leaks,
    pytest.mark.skipif(sys.platform == "win32", reason="AF_UNIX socketpairs and /proc"),
]
# AddressSanitizer's quarantine keeps freed memory resident: RSS means nothing there.
QUARANTINE = "AddressSanitizer's quarantine keeps freed memory resident"

ITERATIONS = int(os.environ.get("ZEROSOCK_LEAK_ITERATIONS", "200000"))
# Allowed growth over the measured loop: a leak of one small object per call
# would be tens of bytes times the iteration count, far above these.
MAX_TRACED = 64 * 1024
MAX_RSS = 2 * 1024 * 1024

# The child: builds the case's step function, warms up, then runs the loop
# with tracemalloc on and reports the growth of traced memory and of RSS.
CHILD = r"""
import errno, gc, json, socket, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
from _hardening import load, rss_bytes
zs = load(sys.argv[2].split("-")[0])
if sys.argv[2] == "c-uring" and zs.aio.IO_BACKEND != "uring":  # never pass on epoll instead
    sys.exit(zs.aio.IO_BACKEND_REASON)
case, iterations = sys.argv[3], int(sys.argv[4])
EV_READ = zs.selectors.EVENT_READ

def expect(exc_type, fn, *args, **kwargs):
    def step():
        try:
            fn(*args, **kwargs)
        except exc_type:
            return
        raise AssertionError(f"{fn} did not raise {exc_type}")
    return step

KEEP = []  # everything a case opens stays open (a collected peer would mean EOF)

def stream_pair():
    a, b = zs.socketpair()
    KEEP.extend((a, b))
    return a, b

def udp_pair():
    a = zs.Socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = zs.Socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
    a.connect(b.getsockname()); b.connect(a.getsockname())
    KEEP.extend((a, b))
    return a, b

def make(case):
    payload = b"x" * 256
    buf = bytearray(256)
    view = memoryview(buf)
    if case == "recv_into":
        a, b = stream_pair()
        def step():
            a.send(payload); b.recv_into(view)
        return step, 1
    if case == "try_recv_into/try_send":
        a, b = stream_pair()
        def step():
            a.try_send(payload); b.try_recv_into(buf)
        return step, 1
    if case == "sendmsg/recvmsg_into":
        a, b = stream_pair()
        parts = [payload[:100], payload[100:]]
        into = [view[:128], view[128:]]
        def step():
            a.sendmsg(parts); b.recvmsg_into(into)
        return step, 1
    if case == "send_many/recv_many":
        a, b = udp_pair()
        out = [payload] * 4
        bufs = [bytearray(256) for _ in range(4)]
        def step():
            a.send_many(out); b.recv_many(bufs)
        return step, 1
    if case == "select":
        a, b = stream_pair()
        sel = zs.selectors.DefaultSelector()
        sel.register(a, zs.selectors.EVENT_WRITE)
        sel.register(b, EV_READ | zs.selectors.EVENT_WRITE, "data")
        def step():
            sel.select(0)
        return step, 1
    if case == "connect/accept/close":
        import os, tempfile
        path = os.path.join(tempfile.mkdtemp(), "s")
        listener = zs.Socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path); listener.listen(16)
        def step():
            c = zs.Socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(path)
            s, _ = listener.accept()
            c.close(); s.close()
        return step, 10
    if case == "fail:closed":
        a, b = stream_pair(); a.close()
        rec, snd, sel = expect(OSError, a.recv_into, buf), expect(OSError, a.send, payload), None
        many = expect(OSError, a.recv_many, [buf])
        def step():
            rec(); snd(); many()
        return step, 1
    if case == "fail:would-block":
        a, b = stream_pair(); b.setblocking(False)
        full_a, _ = stream_pair(); full_a.setblocking(False)
        while full_a.try_send(b"y" * 65536):
            pass
        rec = expect(BlockingIOError, b.recv_into, buf)
        snd = expect(BlockingIOError, full_a.send, payload)
        def step():
            rec(); snd(); b.try_recv_into(buf); full_a.try_send(payload)
        return step, 1
    if case == "fail:bad-argument":
        a, b = stream_pair()
        u = zs.Socket(socket.AF_INET, socket.SOCK_DGRAM)
        ro = expect(TypeError, a.recv_into, b"read-only")
        big = expect(ValueError, a.recv_into, buf, 1000)
        addr = expect(OverflowError, u.sendto, payload, ("127.0.0.1", 70000))
        host = expect(TypeError, u.sendto, payload, ("bad\0host", 1))
        kind = expect(TypeError, u.sendto, payload, ["127.0.0.1", 1])
        batch = expect(TypeError, u.send_many, [(payload, ("127.0.0.1", 1), 3)])
        def step():
            ro(); big(); addr(); host(); kind(); batch()
        return step, 1
    if case == "fail:selector":
        sel = zs.selectors.DefaultSelector()
        a, b = stream_pair()
        reg = expect(ValueError, sel.register, a, 0)
        missing = expect(KeyError, sel.unregister, b)
        closed = zs.selectors.DefaultSelector(); closed.close()
        sel_closed = expect((ValueError, RuntimeError), closed.select, 0)
        def step():
            reg(); missing(); sel_closed()
        return step, 1
    if case == "fail:connect-refused":
        import os, tempfile
        path = os.path.join(tempfile.mkdtemp(), "gone")
        def step():
            with zs.Socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                try:
                    c.connect(path)
                except FileNotFoundError:
                    pass
        return step, 10
    if case == "RecvBuffer fill/readuntil/readexactly":
        a, b = stream_pair()
        rb = zs.RecvBuffer(4096)
        message = b"x" * 40 + b"\n" + b"y" * 24
        def step():
            a.send(message); rb.fill(b); rb.readuntil(b"\n"); rb.readexactly(24)
        return step, 1
    if case == "fail:RecvBuffer":
        a, b = stream_pair(); b.setblocking(False)
        closed, _ = stream_pair(); closed.close()
        rb = zs.RecvBuffer(256)
        rb.feed(b"no separator here")
        empty = zs.RecvBuffer(256)
        from zerosock._recvbuf_shared import LimitOverrunError
        overrun = expect(LimitOverrunError, rb.readuntil, b"\n", max_length=4)
        negative = expect(ValueError, rb.readexactly, -1)
        no_sep = expect(ValueError, rb.readuntil, b"")
        bad_fd = expect(OSError, empty.fill, closed)
        def step():
            overrun(); negative(); no_sep(); bad_fd(); empty.fill(b)  # would block: None
        return step, 1
    if case == "aio call_soon":
        loop = zs.aio.new_event_loop()
        KEEP.append(loop)
        noop = lambda: None
        def step():
            for _ in range(10):
                loop.call_soon(noop)
            loop.call_soon(loop.stop)
            loop.run_forever()
        return step, 1
    if case == "aio transport write/read":
        import asyncio
        loop = zs.aio.new_event_loop()
        a, b = stream_pair()
        got = [0]
        class Counting(asyncio.Protocol):
            def data_received(self, data):
                got[0] += len(data)
        transport, _ = loop.run_until_complete(
            loop.create_connection(Counting, sock=socket.socket(fileno=a.detach())))
        KEEP.extend((loop, transport))
        def step():
            transport.write(payload)
            loop.call_soon(loop.stop)  # on io_uring completions the send leaves with the next wait
            loop.run_forever()
            b.recv_into(view)
            b.send(payload)
            want = got[0] + len(payload)
            while got[0] < want:
                loop.call_soon(loop.stop)
                loop.run_forever()
        return step, 1
    if case == "aio add_reader/add_writer/remove":
        # Each watch made, changed and dropped while the poller has it in flight
        # (on io_uring: polls armed, cancelled and replaced).
        loop = zs.aio.new_event_loop()
        a, b = stream_pair()
        KEEP.append(loop)
        noop = lambda: None
        def iterate():
            loop.call_soon(loop.stop)
            loop.run_forever()
        def step():
            loop.add_reader(a, noop)
            iterate()
            loop.add_writer(a, noop)  # writable at once: its callback runs
            iterate()
            loop.remove_writer(a)
            iterate()
            loop.remove_reader(a)
        return step, 10  # three loop iterations a step: a tenth as many steps
    if case == "aio timers":
        loop = zs.aio.new_event_loop()
        KEEP.append(loop)
        noop = lambda: None
        def step():
            kept = [loop.call_later(0, noop) for _ in range(5)]
            dropped = [loop.call_at(loop.time() + 3600, noop) for _ in range(5)]
            kept[0].cancel()
            for handle in dropped:
                handle.cancel()
            loop.call_later(0, loop.stop)
            loop.run_forever()
        return step, 1
    if case == "aio buffered read/memoryview write":
        import asyncio
        loop = zs.aio.new_event_loop()
        a, b = stream_pair()
        got = [0]
        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.view = memoryview(bytearray(4096))
            def connection_made(self, transport):
                self.transport = transport
            def get_buffer(self, hint):
                return self.view
            def buffer_updated(self, n):
                got[0] += n
                self.transport.write(self.view[:n])
        transport, _ = loop.run_until_complete(
            loop.create_connection(Buffered, sock=socket.socket(fileno=a.detach())))
        KEEP.extend((loop, transport))
        def step():
            b.send(payload)
            want = got[0] + len(payload)
            while got[0] < want:
                loop.call_soon(loop.stop)
                loop.run_forever()
            loop.call_soon(loop.stop)  # on io_uring completions the write leaves with the next wait
            loop.run_forever()
            b.recv_into(view)
        return step, 1
    if case in ("aio streams read/readline/readexactly/drain", "fail:aio streams"):
        import asyncio
        loop = zs.aio.new_event_loop()
        a, b = stream_pair()
        reader, writer = loop.run_until_complete(
            asyncio.open_connection(sock=socket.socket(fileno=a.detach()),
                                    limit=64 if case.startswith("fail") else 2 ** 16))
        KEEP.extend((loop, reader, writer))
        b.setblocking(False)
        if case == "fail:aio streams":
            async def failures():
                b.send(b"x" * 100)  # over the limit: LimitOverrunError, then ValueError
                try:
                    await reader.readuntil(b"!")
                except asyncio.LimitOverrunError:
                    pass
                try:
                    await reader.readline()
                except ValueError:
                    pass
                pending = asyncio.ensure_future(reader.readexactly(10))  # cancelled while waiting
                await asyncio.sleep(0)
                pending.cancel()
                try:
                    await pending
                except asyncio.CancelledError:
                    pass
                first = asyncio.ensure_future(reader.read(10))
                await asyncio.sleep(0)
                try:
                    await reader.read(1)  # a second reader at once
                except RuntimeError:
                    pass
                b.send(b"y")
                await first
        else:
            async def failures():
                b.send(payload + b"\n" + payload)
                await reader.readline()
                await reader.readexactly(len(payload) // 2)
                await reader.read(len(payload))
                writer.write(payload)
                await writer.drain()
                while not b.try_recv_into(view):  # on io_uring completions: sent with the next wait
                    await asyncio.sleep(0)
        def step():
            loop.run_until_complete(failures())
        return step, 20  # several reads and a task per step
    if case == "aio streams server connection/write/drain":
        # start_server's adopted reader, writer and protocol, made and dropped
        # with every connection; the writer's C write() and drain().
        import asyncio
        loop = zs.aio.new_event_loop()
        # Eight round trips, then the server closes first: the TIME_WAIT
        # that the first to close keeps holds no ephemeral port on this
        # side, so thousands of cycles fit any port range.
        async def echo(reader, writer):
            left = 8 * len(payload)
            while left:
                data = await reader.read(4096)
                assert data
                left -= len(data)
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()
        server = loop.run_until_complete(asyncio.start_server(echo, "127.0.0.1", 0))
        address = server.sockets[0].getsockname()[:2]
        KEEP.extend((loop, server))
        async def session():
            reader, writer = await asyncio.open_connection(*address)
            for _ in range(8):
                writer.write(payload)
                await reader.readexactly(len(payload))
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0)
        def step():
            loop.run_until_complete(session())
        return step, 200  # a connection and eight round trips per step
    raise SystemExit(f"unknown case {case}")

step, divisor = make(case)
KEEP.append(step)
n = max(iterations // divisor, 1000)
for _ in range(max(n // 10, 1000)):  # warm-up: caches, free lists, interned objects
    step()
gc.collect()
rss0 = rss_bytes()
tracemalloc.start()
traced0 = tracemalloc.get_traced_memory()[0]
start = time.perf_counter()
for _ in range(n):
    step()
elapsed = time.perf_counter() - start
gc.collect()
traced = tracemalloc.get_traced_memory()[0] - traced0
tracemalloc.stop()
rss = rss_bytes() - rss0
print(json.dumps({"iterations": n, "traced": traced, "rss": rss, "seconds": round(elapsed, 2)}))
"""

CASES = [
    "recv_into", "try_recv_into/try_send", "sendmsg/recvmsg_into", "send_many/recv_many",
    "select", "connect/accept/close",
    "fail:closed", "fail:would-block", "fail:bad-argument", "fail:selector",
    "fail:connect-refused",
    "RecvBuffer fill/readuntil/readexactly", "fail:RecvBuffer",
    "aio call_soon", "aio add_reader/add_writer/remove", "aio transport write/read", "aio timers",
    "aio buffered read/memoryview write",
    "aio streams read/readline/readexactly/drain", "fail:aio streams",
    "aio streams server connection/write/drain",
]


def _runs():
    """(backend, case) pairs: every case on both backends, the loop's on io_uring too."""
    return [pytest.param(name, case, id=f"{name}-{case}",
                         marks=pytest.mark.c_extension if name.startswith("c") else ())
            for name in ("c", "c-uring", "python") for case in CASES
            if name != "c-uring" or "aio" in case]


@pytest.mark.skipif(under_sanitizer(), reason=QUARANTINE)
@pytest.mark.parametrize("name, case", _runs())
def test_no_leak(name, case, request):
    if name.startswith("c") and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled")
    if name == "c-uring" and _kernel.io_uring_refusal():
        pytest.skip(f"io_uring is not usable here: {_kernel.io_uring_refusal()}")
    env = subprocess_env(ZEROSOCK_AIO_IO="uring") if name == "c-uring" else None
    proc = run_script(CHILD, str(HERE), name, case, str(ITERATIONS), timeout=600, env=env)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{name} {case}: {result}")
    assert result["traced"] < MAX_TRACED, result
    assert result["rss"] < MAX_RSS, result


# Connection churn: connections that each connect, echo once and close, as
# HTTP/1.0 clients, health checks and short-lived RPC make them, against a
# zerosock.aio echo server in a process of its own.  Between batches the
# server reports its RSS, its open descriptors and its allocated blocks.
#
# The client closes first (after the echo; TLS sends close_notify first), so
# the TIME_WAIT is the client's, spread over 127.0.0.x sources so that ports
# never run out, and every server-side socket ends with the server's close:
# its descriptors must come back to exactly where they began.
CHURN_CYCLES = int(os.environ.get("ZEROSOCK_CHURN_CYCLES", "4000"))
CHURN_BATCHES = 10
CHURN_CLIENTS = 10
CHURN_PAYLOAD = 64
# Over the second half of the cycles, after the first half has warmed every
# cache and free list: a leak of 100 bytes per connection over 50,000 cycles
# is 4.8 MiB, one Python object per connection 50,000 blocks.
CHURN_MAX_RSS = 2 * 1024 * 1024
CHURN_MAX_BLOCKS_PER_CYCLE = 0.01
CHURN_SETTLE_SECONDS = 10.0

CHURN_SERVER = r"""
import asyncio, gc, json, os, sys
sys.path.insert(0, sys.argv[1])
from _hardening import load, rss_bytes
loop = load(sys.argv[2]).aio.new_event_loop()
context = None
if sys.argv[3] != "plain":
    from zerosock.bench._loadgen_tls import server_context
    context = server_context()

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

def report():
    if not sys.stdin.readline():
        loop.stop()
        return
    gc.collect()  # garbage the collector would free is no leak; RSS is read after it
    print(json.dumps({"rss": rss_bytes(), "fds": len(os.listdir("/proc/self/fd")),
                      "blocks": sys.getallocatedblocks()}), flush=True)

server = loop.run_until_complete(
    loop.create_server(Echo, "127.0.0.1", 0, backlog=1024, ssl=context))
loop.add_reader(sys.stdin.fileno(), report)
print(server.sockets[0].getsockname()[1], flush=True)
loop.run_forever()
server.close()
loop.run_until_complete(server.wait_closed())
loop.close()
"""


class _ChurnServer:
    """The echo server's process, asked for its figures over a pipe."""

    def __init__(self, backend: str, protocol: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHURN_SERVER, str(HERE), backend,
                                      protocol], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=subprocess_env())
        port = self.proc.stdout.readline().strip()
        assert port, "the server did not start"
        self.address = ("127.0.0.1", int(port))

    def stats(self) -> dict:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the server died"
        return json.loads(line)

    def settled(self, fds: int) -> dict:
        """Its figures once its descriptors are back to ``fds`` (the last
        closes may still be on their way), or when the time runs out."""
        deadline = time.monotonic() + CHURN_SETTLE_SECONDS
        while True:
            stats = self.stats()
            if stats["fds"] <= fds or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@pytest.mark.parametrize("cycles", [
    pytest.param(CHURN_CYCLES, id="short"),
    pytest.param(100_000, id="100k", marks=[pytest.mark.full, pytest.mark.slow,
                                            pytest.mark.timeout(3600)]),
])
@pytest.mark.parametrize("protocol", ["plain", "tls"])
@pytest.mark.parametrize("name", [pytest.param("c", marks=pytest.mark.c_extension), "python"])
def test_churn_flat(name, protocol, cycles, request):
    """Connect, one echo, close, ``cycles`` times: the server's descriptors
    come back to their start after every batch, and its RSS and allocated
    blocks stay flat over the second half."""
    if name == "c" and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled")
    from zerosock.bench._loadgen_scale import Churner
    server = _ChurnServer(name, protocol)
    churner = None
    try:
        start = server.stats()
        churner = Churner(server.address, CHURN_CLIENTS, CHURN_PAYLOAD, tls=protocol == "tls")
        batch = cycles // CHURN_BATCHES
        samples = []
        began = time.perf_counter()
        for _ in range(CHURN_BATCHES):
            done = churner.run(3600.0, batch)["ops"]
            assert done == batch, f"{done} of {batch} connections completed"
            samples.append(server.settled(start["fds"]))
            assert samples[-1]["fds"] == start["fds"], (start, samples)
        seconds = time.perf_counter() - began
    finally:
        if churner is not None:
            churner.close()
        server.close()
    # After the first half of the cycles, and at the end: the lower of the
    # last two readings, since a leak raises both and one burst of malloc's
    # fragmentation only one.
    half = samples[CHURN_BATCHES // 2 - 1]
    rss_growth = min(s["rss"] for s in samples[-2:]) - half["rss"]
    block_growth = samples[-1]["blocks"] - half["blocks"]
    figures = {"cycles": cycles, "seconds": round(seconds, 1), "fds": start["fds"],
               "rss_mib": [round(s["rss"] / 2**20, 2) for s in [start] + samples],
               "rss_growth_second_half_kib": rss_growth // 1024,
               "blocks_growth_second_half": block_growth}
    print(f"\nchurn {name} {protocol}: {json.dumps(figures)}")
    if under_sanitizer():
        return  # the descriptors are checked; the memory figures mean nothing there
    assert rss_growth < CHURN_MAX_RSS, figures
    assert block_growth < max(100, cycles // 2 * CHURN_MAX_BLOCKS_PER_CYCLE), figures
