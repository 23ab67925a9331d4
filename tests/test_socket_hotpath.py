"""zerosock's own hot-path calls: non-raising variants, batch datagrams, and
the promise that the hot calls allocate nothing."""

import errno
import socket
import sys
import threading
import tracemalloc

import pytest


@pytest.fixture
def pair(zs):
    a, b = zs.socketpair()
    with a, b:
        yield a, b


@pytest.fixture
def udp(zs):
    a = zs.Socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = zs.Socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # no drops under load
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        yield a, b


@pytest.mark.parametrize("mode", ["blocking", "nonblocking", "timeout"])
def test_try_recv_into_never_waits(pair, mode):
    a, b = pair
    {"blocking": lambda: b.setblocking(True), "nonblocking": lambda: b.setblocking(False),
     "timeout": lambda: b.settimeout(5)}[mode]()
    buf = bytearray(16)
    assert b.try_recv_into(buf) is None
    assert b.try_recv(16) is None
    a.send(b"ready")
    assert b.try_recv_into(buf) == 5 and buf[:5] == b"ready"
    a.send(b"again")
    assert b.try_recv(16) == b"again"
    a.close()
    assert b.try_recv_into(buf) == 0  # end of stream is 0, not None


@pytest.mark.parametrize("mode", ["blocking", "nonblocking", "timeout"])
def test_try_send_returns_none_when_full(pair, mode):
    a, b = pair
    {"blocking": lambda: a.setblocking(True), "nonblocking": lambda: a.setblocking(False),
     "timeout": lambda: a.settimeout(5)}[mode]()
    chunk = b"x" * 65536
    sent = 0
    for _ in range(10_000):
        n = a.try_send(chunk)
        if n is None:
            break
        sent += n
    else:
        pytest.fail("the send buffer never filled")
    assert sent > 0


def test_try_calls_still_raise_real_errors(zs):
    s = zs.Socket()
    with s, pytest.raises(OSError) as info:
        s.try_recv_into(bytearray(4))
    assert info.value.errno == errno.ENOTCONN
    with zs.Socket() as s, pytest.raises(TypeError):
        s.try_recv_into(b"read-only")


def test_recv_many_and_send_many(udp):
    a, b = udp
    target = a.getsockname()
    assert b.send_many([(b"d%d" % i, target) for i in range(10)]) == 10
    buffers = [bytearray(64) for _ in range(16)]
    received = []
    while len(received) < 10:
        received += a.recv_many(buffers[: 10 - len(received)])
    assert all(addr == b.getsockname() for _, addr in received)
    assert sorted(n for n, _ in received) == [2] * 10


def test_recv_many_fills_each_buffer_in_order(udp):
    a, b = udp
    a.setblocking(False)
    for i in range(5):
        b.sendto(bytes([i]) * (i + 1), a.getsockname())
    buffers = [bytearray(8) for _ in range(8)]
    got = []
    import time
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        try:
            got += a.recv_many(buffers[len(got):])
        except BlockingIOError:
            time.sleep(0.01)
    assert [n for n, _ in got] == [1, 2, 3, 4, 5]
    for i in range(5):
        assert buffers[i][: i + 1] == bytes([i]) * (i + 1)


def test_recv_many_nonblocking_empty_raises(udp):
    a, _ = udp
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        a.recv_many([bytearray(8)])
    assert a.recv_many([]) == []


def test_recv_many_timeout(udp):
    a, _ = udp
    a.settimeout(0.05)
    with pytest.raises(socket.timeout):
        a.recv_many([bytearray(8)])


def test_send_many_connected(udp):
    a, b = udp
    b.connect(a.getsockname())
    assert b.send_many([b"one", bytearray(b"two"), memoryview(b"three")]) == 3
    assert [a.recv(10) for _ in range(3)] == [b"one", b"two", b"three"]
    assert b.send_many([]) == 0


def test_batch_bad_input(udp):
    a, b = udp
    with pytest.raises(TypeError):
        a.recv_many([b"read-only"])
    with pytest.raises(TypeError):
        a.recv_many([bytearray(4), "text"])
    with pytest.raises(TypeError):
        b.send_many(["text"])
    with pytest.raises(TypeError):
        b.send_many([(b"x", a.getsockname(), "extra")])
    with pytest.raises(OverflowError):
        b.send_many([(b"x", ("127.0.0.1", 99999))])
    # the socket is still fine afterwards, and no view stayed exported
    buf = bytearray(4)
    b.sendto(b"ok", a.getsockname())
    assert a.recv_many([buf])[0][0] == 2
    buf.extend(b"resizable")


def test_recv_many_buffer_released_after_call(udp):
    a, b = udp
    buf = bytearray(8)
    b.sendto(b"x", a.getsockname())
    a.recv_many([buf])
    buf.extend(b"more")  # would raise BufferError if still exported


def test_recv_many_from_two_threads(udp):
    a, b = udp
    a.settimeout(2.0)
    counts = []

    def reader():
        got = 0
        try:
            while True:
                got += len(a.recv_many([bytearray(16) for _ in range(4)]))
        except socket.timeout:
            counts.append(got)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(100):
        b.sendto(b"payload", a.getsockname())
    for t in threads:
        t.join(20)
    assert len(counts) == 2 and sum(counts) == 100


def _allocated_during(fn, calls):
    fn()  # warm up caches and interned objects
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(calls):
            fn()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before


def test_recv_into_and_try_calls_allocate_nothing(pair):
    a, b = pair
    buf = bytearray(64)
    view = memoryview(buf)
    payload = b"y" * 64

    def cycle():
        a.send(payload)
        b.recv_into(view)
        b.try_recv_into(view)  # would block: None
        a.try_send(payload)
        b.try_recv_into(buf)

    assert _allocated_during(cycle, 100_000) < 4096


def test_would_block_path_allocates_nothing(pair):
    _, b = pair
    b.setblocking(False)
    buf = bytearray(64)
    assert _allocated_during(lambda: b.try_recv_into(buf), 100_000) < 4096
