"""Bad input and failures: the same exception types as the standard library
(the ``impl`` fixture includes it as the reference), never a crash or a hang."""

import errno
import socket
import sys

import pytest


@pytest.fixture
def closed(impl):
    s = impl.Socket()
    s.close()
    return s


CLOSED_CALLS = [
    ("recv", (10,)), ("recv_into", (bytearray(10),)), ("recvfrom", (10,)),
    ("recvfrom_into", (bytearray(10),)), ("send", (b"x",)), ("sendall", (b"x",)),
    ("sendto", (b"x", ("127.0.0.1", 9))), ("bind", (("127.0.0.1", 0),)), ("listen", ()),
    ("accept", ()), ("connect", (("127.0.0.1", 9),)), ("shutdown", (socket.SHUT_RDWR,)),
    ("getsockname", ()), ("getpeername", ()), ("settimeout", (1,)),
    ("setsockopt", (socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)),
    ("getsockopt", (socket.SOL_SOCKET, socket.SO_REUSEADDR)),
]


# What a call on a closed socket fails with: Winsock names the invalid handle
# WSAENOTSOCK, which Python's errno module calls ENOTSOCK there.
CLOSED_ERRNO = errno.ENOTSOCK if sys.platform == "win32" else errno.EBADF


@pytest.mark.parametrize("name,args", CLOSED_CALLS, ids=[c[0] for c in CLOSED_CALLS])
def test_closed_socket_raises_ebadf(closed, name, args):
    with pytest.raises(OSError) as info:
        getattr(closed, name)(*args)
    assert info.value.errno == CLOSED_ERRNO


@pytest.mark.parametrize("name", ["try_recv_into", "try_send", "recv_many", "send_many"])
def test_closed_socket_raises_ebadf_zerosock_calls(zs, name):
    s = zs.Socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.close()
    arg = [bytearray(10)] if name == "recv_many" else (
        [(b"x", ("127.0.0.1", 9))] if name == "send_many" else bytearray(10))
    with pytest.raises(OSError) as info:
        getattr(s, name)(arg)
    assert info.value.errno == CLOSED_ERRNO


@pytest.mark.parametrize("buffer", [b"read-only", memoryview(b"ro"), "text", 42, None,
                                    memoryview(bytearray(8))[::2]])
def test_recv_into_rejects_non_writable(impl, buffer):
    a, b = impl.socketpair()
    with a, b:
        a.send(b"data")
        with pytest.raises(TypeError):
            b.recv_into(buffer)
        assert b.recv(4) == b"data"  # nothing was lost


def test_recv_into_nbytes_checks(impl):
    a, b = impl.socketpair()
    with a, b:
        with pytest.raises(ValueError):
            b.recv_into(bytearray(4), -1)
        with pytest.raises(ValueError):
            b.recv_into(bytearray(4), 5)
        with pytest.raises(ValueError):
            b.recvfrom_into(bytearray(4), 9)
        with pytest.raises(ValueError):
            b.recv(-1)


@pytest.mark.parametrize("data", ["text", 42, None, [b"list"]])
def test_send_rejects_non_buffers(impl, data):
    a, b = impl.socketpair()
    with a, b:
        for call in (a.send, a.sendall):
            with pytest.raises(TypeError):
                call(data)


@pytest.mark.parametrize("address,exc", [
    ("127.0.0.1", TypeError),            # not a tuple
    (("127.0.0.1",), TypeError),         # wrong length
    (("127.0.0.1", 1, 2), TypeError),
    ((42, 80), TypeError),               # host not a string
    (("127.0.0.1", "80"), TypeError),    # port not an int
    (("127.0.0.1", 70000), OverflowError),
    (("127.0.0.1", -1), OverflowError),
    (("bad\0host", 80), (TypeError, ValueError)),
    (("no-such-host.invalid", 80), socket.gaierror),
])
def test_bad_ipv4_addresses(impl, address, exc):
    with impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(exc):
            s.sendto(b"x", address)
        with pytest.raises(exc):
            s.connect(address)


@pytest.mark.parametrize("address,exc", [
    (("::1",), TypeError),
    (("::1", 80, 0, 0, 0), TypeError),
    (("::1", 80, 1 << 20), OverflowError),  # flowinfo out of range
    (("::1", 1 << 16), OverflowError),
])
def test_bad_ipv6_addresses(impl, address, exc):
    try:
        s = impl.Socket(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError:
        pytest.skip("no IPv6")
    with s, pytest.raises(exc):
        s.bind(address)


@pytest.mark.parametrize("address", [42, ("path",), None])
def test_bad_unix_addresses(impl, address):
    with impl.Socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, pytest.raises(TypeError):
        s.bind(address)


def test_send_to_closed_peer(impl):
    a, b = impl.socketpair()
    b.close()
    with a:
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                a.send(b"x" * 65536)


def test_reset_by_peer(impl):
    import struct
    with impl.create_server(("127.0.0.1", 0)) as srv:
        with impl.create_connection(srv.getsockname()) as c:
            conn, _ = srv.accept()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # RST instead of FIN
            with pytest.raises(ConnectionResetError):
                c.recv(10)


def test_listen_on_udp_fails(impl):
    with impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError) as info:
        s.listen()
    assert info.value.errno == errno.EOPNOTSUPP


def test_recv_on_unconnected_stream(impl):
    with impl.Socket() as s, pytest.raises(OSError) as info:
        s.recv(1)
    assert info.value.errno == errno.ENOTCONN
