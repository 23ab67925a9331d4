"""Per-call costs of the Socket layer: zerosock's C and Python backends against
the standard library (the ``impl`` fixture), in one run.  Never asserts on time.

Each round makes ``OPS`` calls against data that is already waiting, so the
figures are the cost of the call itself; the summary divides by ``OPS``.
"""

import socket

import pytest

OPS = 200
ROUNDS = 60


def run(benchmark, impl_name, fn, setup, ops=OPS):
    benchmark.extra_info["ops_per_round"] = ops
    benchmark.pedantic(fn, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=3)


@pytest.fixture
def pair(impl):
    a, b = impl.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    with a, b:
        yield a, b


def _drain(sock):
    sock.setblocking(False)
    buf = bytearray(1 << 16)
    try:
        while sock.recv_into(buf):
            pass
    except BlockingIOError:
        pass
    sock.setblocking(True)


@pytest.mark.parametrize("size", [64, 4096])
def test_recv_into(benchmark, impl, pair, size):
    a, b = pair
    benchmark.group = f"recv_into {size} B waiting"
    ops = OPS if size == 64 else 40
    payload = b"x" * size
    buf = bytearray(size)
    recv_into = b.recv_into

    def fill():
        for _ in range(ops):
            a.send(payload)

    def calls():
        for _ in range(ops):
            recv_into(buf, size)

    run(benchmark, impl, calls, fill, ops)


def test_would_block(benchmark, impl, pair):
    """The raising recv_into for the stdlib; zerosock's non-raising try_recv_into."""
    _, b = pair
    b.setblocking(False)
    benchmark.group = "would-block path"
    buf = bytearray(64)
    if impl.BACKEND == "stdlib":
        def calls():
            for _ in range(OPS):
                try:
                    b.recv_into(buf)
                except BlockingIOError:
                    pass
    else:
        try_recv_into = b.try_recv_into

        def calls():
            for _ in range(OPS):
                try_recv_into(buf)
    run(benchmark, impl, calls, lambda: None)


def test_would_block_raising(benchmark, impl, pair):
    _, b = pair
    b.setblocking(False)
    benchmark.group = "would-block path, raising recv_into"
    buf = bytearray(64)

    def calls():
        for _ in range(OPS):
            try:
                b.recv_into(buf)
            except BlockingIOError:
                pass
    run(benchmark, impl, calls, lambda: None)


@pytest.mark.parametrize("size", [64, 4096])
def test_send(benchmark, impl, pair, size):
    a, b = pair
    benchmark.group = f"send {size} B"
    ops = OPS if size == 64 else 40
    payload = b"x" * size
    send = a.send

    def calls():
        for _ in range(ops):
            send(payload)

    run(benchmark, impl, calls, lambda: _drain(b), ops)


def test_sendmsg_gather(benchmark, impl, pair):
    """sendmsg of 16 small buffers (one syscall, no join)."""
    a, b = pair
    benchmark.group = "16 x 32 B: sendmsg gather (std: sendall of join)"
    parts = [bytes([i]) * 32 for i in range(16)]
    if impl.BACKEND == "stdlib":
        def calls():
            for _ in range(OPS):
                a.sendall(b"".join(parts))
    else:
        def calls():
            for _ in range(OPS):
                a.sendmsg(parts)
    run(benchmark, impl, calls, lambda: _drain(b))


@pytest.fixture
def udp(impl):
    a = impl.Socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = impl.Socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        a.bind(("127.0.0.1", 0))
        b.connect(a.getsockname())
        yield a, b


def test_datagrams(benchmark, impl, udp):
    """Receiving 64 queued datagrams: recv_many (zerosock) vs a recvfrom_into loop."""
    a, b = udp
    benchmark.group = "receive 64 datagrams of 64 B (per datagram)"
    count = 64
    payload = b"d" * 64
    buffers = [bytearray(2048) for _ in range(count)]

    def fill():
        for _ in range(count):
            b.send(payload)

    if impl.BACKEND == "stdlib":
        buf = buffers[0]

        def calls():
            for _ in range(count):
                a.recvfrom_into(buf)
    else:
        def calls():
            got = 0
            while got < count:
                got += len(a.recv_many(buffers[: count - got]))
    run(benchmark, impl, calls, fill, count)


def test_accept_connect(benchmark, impl):
    benchmark.group = "connect + accept + close"
    with impl.create_server(("127.0.0.1", 0), backlog=128) as srv:
        address = srv.getsockname()

        def calls():
            for _ in range(20):
                c = impl.create_connection(address)
                conn, _ = srv.accept()
                conn.close()
                c.close()
        run(benchmark, impl, calls, lambda: None, 20)
