"""Soak: 10,000 concurrent loopback connections against a synchronous
selectors echo server and an echo server on every asyncio loop (zerosock.aio
on both backends, the standard library's, uvloop's when installed), every
connection echoing after all are open, every byte checked, p99 latency
reported, the server's RSS flat after warm-up; the synchronous server on the
standard library is the reference.  Plus one socket used by two threads at
once.

``ZEROSOCK_SOAK_SECONDS`` sets the load time per server (default 8;
``tools/soak.sh`` runs minutes, the synchronous server on the Python backend
too); ``ZEROSOCK_SOAK_CONNECTIONS`` the connection count (default 10,000,
fewer when the descriptor limit's hard cap is lower).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import threading

import pytest

import _kernel
from _hardening import HERE, subprocess_env, under_sanitizer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="rlimits and /proc")

SECONDS = float(os.environ.get("ZEROSOCK_SOAK_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("ZEROSOCK_SOAK_CONNECTIONS", "10000"))
LONG = "ZEROSOCK_SOAK_SECONDS" in os.environ

# Each side holds one descriptor per connection, plus a few of its own.
FD_MARGIN = 64
FEWEST_CONNECTIONS = 1000

SERVER = r"""
import errno, os, resource, sys
sys.path.insert(0, sys.argv[1])
from _hardening import load
zs = load(sys.argv[2])
import selectors as std
sel_mod = std if zs.BACKEND == "stdlib" else zs.selectors
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[3]), hard))

listener = zs.create_server(("127.0.0.1", 0), backlog=4096)
listener.setblocking(False)
sel = sel_mod.DefaultSelector()
sel.register(listener, std.EVENT_READ, None)
print(listener.getsockname()[1], flush=True)
buf = bytearray(65536)
view = memoryview(buf)
pending = {}  # conn -> bytes not yet sent
while True:
    for key, events in sel.select():
        conn = key.fileobj
        if key.data is None:
            for _ in range(512):
                try:
                    c, _ = conn.accept()
                except BlockingIOError:
                    break
                c.setblocking(False)
                sel.register(c, std.EVENT_READ, "c")
            continue
        if events & std.EVENT_WRITE:
            rest = pending[conn]
            n = conn.send(rest)
            if n < len(rest):
                pending[conn] = rest[n:]
            else:
                del pending[conn]
                sel.modify(conn, std.EVENT_READ, "c")
            continue
        try:
            n = conn.recv_into(buf)
        except ConnectionResetError:
            n = 0
        if n == 0:
            sel.unregister(conn)
            pending.pop(conn, None)
            conn.close()
            continue
        if conn in pending:
            pending[conn] += view[:n]
            continue
        try:
            sent = conn.send(view[:n])
        except BlockingIOError:
            sent = 0
        if sent < n:
            pending[conn] = bytes(view[sent:n])
            sel.modify(conn, std.EVENT_READ | std.EVENT_WRITE, "c")
"""

# The same echo server on an asyncio loop: zerosock.aio's (argv[2] "aio-c",
# "aio-c-uring", the C loop on io_uring, or "aio-python"), the standard
# library's ("asyncio") or uvloop's ("uvloop").
AIO_SERVER = r"""
import asyncio, resource, sys
sys.path.insert(0, sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[3]), hard))
kind = sys.argv[2]
if kind == "asyncio":
    new_loop = asyncio.new_event_loop
elif kind == "uvloop":
    import uvloop
    new_loop = uvloop.new_event_loop
else:
    from _hardening import load
    aio = load(kind.split("-")[1]).aio
    if kind.endswith("-uring") and aio.IO_BACKEND != "uring":  # never pass on epoll instead
        sys.exit(aio.IO_BACKEND_REASON)
    new_loop = aio.new_event_loop

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

loop = new_loop()
loop.run_until_complete(main())
"""

# The load: stdlib epoll, non-blocking, one request in flight per connection;
# each request a random-length slice of random bytes, checked by a running
# CRC per direction.  Prints WARM after the warm-up, then a JSON summary.
CLIENT = r"""
import errno, json, os, random, resource, selectors, socket, sys, time, zlib
port, n_conns, seconds, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
from _kernel import bind_source, loopback_sources, somaxconn
sources = loopback_sources(n_conns)  # enough that the ephemeral ports do not run out
batch_size = min(500, somaxconn())  # connects in flight: what the server's accept queue holds
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
rng = random.Random(7)
block = os.urandom(1 << 16)
sel = selectors.EpollSelector()

class Conn:
    __slots__ = ("sock", "out", "expect", "crc_out", "crc_in", "sent", "got", "t0")

conns = []
t_connect = time.monotonic()
for start in range(0, n_conns, batch_size):
    batch = []
    for i in range(start, start + min(batch_size, n_conns - start)):
        s = socket.socket()
        s.setblocking(False)
        bind_source(s, sources[i % len(sources)])
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        c = Conn(); c.sock = s; c.crc_out = c.crc_in = 0; c.sent = c.got = 0; c.expect = 0
        batch.append(c)
    # Connected, then a one-byte hello echoed back: the server has accepted
    # the whole batch before the next one connects, so its accept queue
    # never overflows (a SYN dropped there waits a second for its retry).
    w = selectors.EpollSelector()
    for c in batch:
        w.register(c.sock, selectors.EVENT_WRITE, c)
    left = 2 * len(batch)
    deadline = time.monotonic() + 30
    while left and time.monotonic() < deadline:
        for key, events in w.select(1):
            c = key.data
            if events & selectors.EVENT_WRITE:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                c.sock.send(b"!")
                c.crc_out = zlib.crc32(b"!"); c.sent = 1
                w.modify(c.sock, selectors.EVENT_READ, c)
            elif c.sock.recv(1) == b"!":
                c.crc_in = zlib.crc32(b"!"); c.got = 1
                w.unregister(c.sock)
            else:
                raise SystemExit("the hello did not come back")
            left -= 1
    w.close()
    if left:
        raise SystemExit(f"{left} connections did not complete")
    conns.extend(batch)
connect_seconds = time.monotonic() - t_connect

latencies = []
def send_request(c):
    size = rng.randint(1, 4096)
    off = rng.randrange(0, len(block) - size)
    data = block[off:off + size]
    c.crc_out = zlib.crc32(data, c.crc_out)
    c.sent += size
    c.expect = size
    c.t0 = time.perf_counter()
    n = c.sock.send(data)
    c.out = data[n:]
    if c.out:
        sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

for c in conns:
    sel.register(c.sock, selectors.EVENT_READ, c)
    send_request(c)

buf = bytearray(65536)
view = memoryview(buf)
start = time.monotonic()
warm_at = start + min(2.0, seconds / 5)
warm = False
stop = start + seconds
requests = 0
while True:
    now = time.monotonic()
    if not warm and now >= warm_at:
        print("WARM", flush=True)
        warm = True
        latencies.clear()
    if now >= stop:
        break
    for key, events in sel.select(0.5):
        c = key.data
        if events & selectors.EVENT_WRITE and c.out:
            n = c.sock.send(c.out)
            c.out = c.out[n:]
            if not c.out:
                sel.modify(c.sock, selectors.EVENT_READ, c)
        if events & selectors.EVENT_READ:
            n = c.sock.recv_into(buf)
            if n == 0:
                raise SystemExit("server closed a connection")
            c.crc_in = zlib.crc32(view[:n], c.crc_in)
            c.got += n
            c.expect -= n
            if c.expect < 0:
                raise SystemExit("more bytes came back than were sent")
            if c.expect == 0:
                latencies.append(time.perf_counter() - c.t0)
                requests += 1
                send_request(c)

# Drain what is in flight, then compare every connection's streams.
sel_end = time.monotonic() + 30
busy = [c for c in conns if c.expect or c.out]
for c in busy:
    c.sock.setblocking(True)
    c.sock.settimeout(30)
    if c.out:
        c.sock.sendall(c.out)
    while c.expect:
        n = c.sock.recv_into(buf, min(c.expect, len(buf)))
        if n == 0:
            raise SystemExit("server closed a connection")
        c.crc_in = zlib.crc32(view[:n], c.crc_in)
        c.got += n
        c.expect -= n
bad = [i for i, c in enumerate(conns) if c.crc_in != c.crc_out or c.got != c.sent]
# Every connection's first request went out once all were open: more came
# back than its hello.
echoed = sum(1 for c in conns if c.got > 1)
total = sum(c.got for c in conns)
for c in conns:
    c.sock.close()
latencies.sort()
q = lambda p: latencies[min(int(p * len(latencies)), len(latencies) - 1)] * 1000 if latencies else None
print(json.dumps({"connections": len(conns), "bad": len(bad), "echoed_when_all_open": echoed,
                  "bytes_verified": total,
                  "requests": requests, "p50_ms": q(0.5), "p99_ms": q(0.99),
                  "connect_seconds": round(connect_seconds, 2), "load_seconds": seconds}), flush=True)
"""


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fd_budget() -> tuple:
    """The connections to hold and the soft descriptor limit each side sets:
    ``CONNECTIONS``, or fewer when the hard limit (which the soft one may be
    raised to, never past) does not hold that many."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    connections = CONNECTIONS
    if hard != resource.RLIM_INFINITY:
        connections = min(connections, hard - FD_MARGIN)
    if connections < FEWEST_CONNECTIONS:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} holds fewer than "
                    f"{FEWEST_CONNECTIONS} connections")
    return connections, connections + FD_MARGIN


def _servers():
    names = [pytest.param("c", marks=pytest.mark.c_extension), "stdlib",
             pytest.param("aio-c", marks=pytest.mark.c_extension),
             pytest.param("aio-c-uring", marks=pytest.mark.c_extension), "aio-python",
             "asyncio", "uvloop"]
    if LONG:
        names += ["python"]
    return names


@pytest.mark.parametrize("name", _servers())
def test_soak_echo(name, request):
    if "c" in name.split("-") and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled")
    if name == "uvloop":
        pytest.importorskip("uvloop")
    uring = name.endswith("-uring")
    if uring and _kernel.io_uring_refusal():
        pytest.skip(f"io_uring is not usable here: {_kernel.io_uring_refusal()}")
    connections, limit = _fd_budget()
    script = AIO_SERVER if name.startswith("aio") or name in ("asyncio", "uvloop") else SERVER
    env = subprocess_env(ZEROSOCK_AIO_IO="uring") if uring else subprocess_env()
    server = subprocess.Popen([sys.executable, "-c", script, str(HERE), name, str(limit)],
                              stdout=subprocess.PIPE, text=True, env=env)
    client = None
    try:
        port = server.stdout.readline().strip()
        assert port, "the server did not start"
        client = subprocess.Popen([sys.executable, "-c", CLIENT, port, str(connections),
                                   str(SECONDS), str(limit), str(HERE)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = client.stdout.readline().strip()
        assert line == "WARM", (line, client.stderr.read())
        rss_warm = _rss(server.pid)
        out, err = client.communicate(timeout=SECONDS + 180)
        assert client.returncode == 0, err
        rss_end = _rss(server.pid)
        result = json.loads(out.strip().splitlines()[-1])
        result.update(server=name, rss_warm_mib=round(rss_warm / 2**20, 1),
                      rss_growth_kib=round((rss_end - rss_warm) / 1024))
        print(f"\nsoak {json.dumps(result)}")
        assert result["connections"] == connections
        assert result["bad"] == 0
        assert result["echoed_when_all_open"] == connections
        assert result["requests"] > connections
        # Flat: the connection state is all allocated before the warm-up ends.
        # (Not under AddressSanitizer, whose quarantine keeps freed memory.)
        if not under_sanitizer():
            assert rss_end - rss_warm < max(4 << 20, rss_warm // 10), result
    finally:
        for p in (client, server):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                p.wait()
        server.stdout.close()
        if client is not None:  # communicate() closed them unless the test failed before
            client.stdout.close()
            client.stderr.close()


def test_one_socket_two_threads(impl):
    """One socket sending in one thread while another thread receives on it;
    the peer echoes.  Every byte comes back once, in order."""
    payload = os.urandom(1 << 20) * 8
    a, b = impl.socketpair()
    received = hashlib.sha256()
    count = [0]

    def echo():
        buf = bytearray(65536)
        while True:
            n = b.recv_into(buf)
            if not n:
                b.shutdown(2)
                return
            b.sendall(memoryview(buf)[:n])

    def receive():
        buf = bytearray(65536)
        while True:
            n = a.recv_into(buf)
            if not n:
                return
            received.update(memoryview(buf)[:n])
            count[0] += n

    with a, b:
        threads = [threading.Thread(target=echo), threading.Thread(target=receive)]
        for t in threads:
            t.start()
        view = memoryview(payload)
        for i in range(0, len(view), 100_000):
            a.sendall(view[i:i + 100_000])
        a.shutdown(1)
        for t in threads:
            t.join(60)
    assert count[0] == len(payload)
    assert received.digest() == hashlib.sha256(payload).digest()
