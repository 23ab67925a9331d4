"""The Socket API on both backends, with the standard library as the reference
(the ``impl`` fixture adds it) wherever the behaviour overlaps."""

import array
import errno
import gc
import mmap
import os
import socket
import sys
import tempfile
import threading
import time

import pytest
from _kernel import datagram_peers, pin_buffers, shuffled_batches

HAS_IPV6 = socket.has_ipv6
try:
    socket.socket(socket.AF_INET6).close()
except OSError:
    HAS_IPV6 = False

needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 on this host")
needs_unix = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux behaviour")


def drain(sock, n):
    """Read exactly n bytes with recv_into."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:])
        assert r, "unexpected end of stream"
        got += r
    return bytes(buf)


# ------------------------------------------------------------- construction


def test_defaults(impl):
    with impl.Socket() as s:
        assert s.family == socket.AF_INET
        assert s.type == socket.SOCK_STREAM
        assert s.proto == 0
        assert s.fileno() >= 0
        assert s.gettimeout() is None and s.timeout is None
        assert s.getblocking()
        assert isinstance(s.family, socket.AddressFamily)
        assert isinstance(s.type, socket.SocketKind)


def test_fileno_adoption_detects_kind(impl):
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with impl.Socket(fileno=raw.detach()) as s:
        assert s.family == socket.AF_INET
        assert s.type == socket.SOCK_DGRAM


def test_fileno_must_be_valid(impl):
    with pytest.raises(ValueError):
        impl.Socket(fileno=-5)
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as info:
            impl.Socket(fileno=r)
        assert info.value.errno == errno.ENOTSOCK
    finally:
        os.close(r)
        os.close(w)


def test_sock_nonblock_flag(impl):
    if not hasattr(socket, "SOCK_NONBLOCK"):
        pytest.skip("no SOCK_NONBLOCK")
    with impl.Socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as s:
        assert s.type == socket.SOCK_STREAM
        assert s.gettimeout() == 0.0


def test_unsupported_family(impl):
    with pytest.raises(OSError) as info:
        impl.Socket(12345, socket.SOCK_STREAM)
    assert info.value.errno in (errno.EAFNOSUPPORT, errno.EINVAL)


def test_close_is_idempotent_and_fileno_minus_one(impl):
    s = impl.Socket()
    s.close()
    s.close()
    assert s.fileno() == -1
    assert "[closed]" in repr(s)


def test_detach(impl):
    s = impl.Socket()
    fd = s.detach()
    assert fd >= 0 and s.fileno() == -1
    os.close(fd)
    s.close()


def test_context_manager_closes(impl):
    with impl.Socket() as s:
        pass
    assert s.fileno() == -1


def test_repr_names_addresses(zs):
    with zs.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        text = repr(srv)
    assert text.startswith("<zerosock.Socket fd=")
    assert f"laddr=('127.0.0.1', {port})" in text


def test_from_socket_takes_over(zs):
    a, b = socket.socketpair()
    a.settimeout(2.5)
    za = zs.Socket.from_socket(a)
    assert a.fileno() == -1
    assert za.gettimeout() == 2.5
    with za, b:
        za.sendall(b"ping")
        assert b.recv(4) == b"ping"
    with pytest.raises(TypeError):
        zs.Socket.from_socket(42)


def test_fromfd_duplicates(impl):
    raw = socket.socket()
    try:
        with impl.fromfd(raw.fileno(), socket.AF_INET, socket.SOCK_STREAM) as s:
            assert s.fileno() != raw.fileno()
    finally:
        raw.close()


def test_unclosed_socket_warns(zs):
    s = zs.Socket()
    with pytest.warns(ResourceWarning):
        del s
        import gc
        gc.collect()


def test_not_picklable(impl):
    import pickle
    with impl.Socket() as s, pytest.raises(TypeError):
        pickle.dumps(s)


def test_close_clears_fd_before_reuse(zs):
    # A closed Socket never touches its old descriptor number again, even
    # when the number has been reused by a new descriptor.
    s = zs.Socket()
    old = s.fileno()
    s.close()
    other = socket.socket()
    try:
        assert other.fileno() == old
        with pytest.raises(OSError) as info:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        assert info.value.errno == errno.EBADF
        other.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        assert other.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    finally:
        other.close()


# ------------------------------------------------------------ TCP transfers


def test_tcp_roundtrip(tcp_pair):
    client, server = tcp_pair
    client.sendall(b"hello")
    assert server.recv(5) == b"hello"
    assert server.send(b"world") == 5
    assert drain(client, 5) == b"world"


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "array", "mmap", "slice"])
def test_recv_into_any_writable_buffer(tcp_pair, kind):
    client, server = tcp_pair
    payload = bytes(range(64))
    client.sendall(payload)
    if kind == "bytearray":
        buf = bytearray(64)
        target = buf
    elif kind == "memoryview":
        buf = bytearray(64)
        target = memoryview(buf)
    elif kind == "array":
        buf = array.array("B", bytes(64))
        target = buf
    elif kind == "mmap":
        buf = mmap.mmap(-1, 64)
        target = buf
    else:
        buf = bytearray(80)
        target = memoryview(buf)[16:]
    got = 0
    while got < 64:
        got += server.recv_into(memoryview(target)[got:])
    data = bytes(buf)[16:] if kind == "slice" else bytes(buf)
    assert data == payload
    if kind == "mmap":
        buf.close()


def test_recv_into_nbytes(tcp_pair):
    client, server = tcp_pair
    client.sendall(b"abcdef")
    buf = bytearray(10)
    n = server.recv_into(buf, 3)
    assert n == 3 and buf[:3] == b"abc"


@pytest.mark.parametrize("data", [b"bytes", bytearray(b"bytearray"), memoryview(b"view"),
                                  array.array("B", b"array")])
def test_send_any_buffer(tcp_pair, data):
    client, server = tcp_pair
    client.sendall(data)
    expected = bytes(data)
    assert drain(server, len(expected)) == expected


def test_sendall_large_with_concurrent_reader(tcp_pair):
    client, server = tcp_pair
    payload = os.urandom(4 << 20)
    received = []

    def reader():
        received.append(drain(server, len(payload)))

    t = threading.Thread(target=reader)
    t.start()
    client.sendall(payload)
    t.join(30)
    assert received == [payload]


@linux_only
def test_blocking_send_and_sendmsg_queue_everything(impl):
    # A blocking stream send returns once the kernel took every byte, even
    # when that is more than its buffer holds and the reader is slow.
    payload = os.urandom(4 << 20)
    parts = [payload[:1000], payload[1000:3 << 20], payload[3 << 20:]]
    a, b = impl.socketpair()
    with a, b:
        for send in (lambda: a.send(payload), lambda: a.sendmsg(parts)):
            received = []
            t = threading.Thread(target=lambda: received.append(drain(b, len(payload))))
            t.start()
            assert send() == len(payload)
            t.join(30)
            assert received == [payload]


def test_end_of_stream(tcp_pair):
    client, server = tcp_pair
    client.shutdown(socket.SHUT_WR)
    assert server.recv(10) == b""
    assert server.recv_into(bytearray(10)) == 0


def test_peer_and_sock_names(tcp_pair):
    client, server = tcp_pair
    assert client.getpeername() == server.getsockname()
    assert server.getpeername() == client.getsockname()


def test_recv_flags_peek(tcp_pair):
    client, server = tcp_pair
    client.sendall(b"peek")
    assert server.recv(4, socket.MSG_PEEK) == b"peek"
    assert drain(server, 4) == b"peek"


def test_sendmsg_gathers_and_recvmsg_into_scatters(impl):
    if not hasattr(socket.socket, "sendmsg"):
        pytest.skip("no sendmsg")
    a, b = impl.socketpair()
    with a, b:
        parts = [b"one", bytearray(b"-two-"), memoryview(b"three")]
        assert a.sendmsg(parts) == 13
        first, second = bytearray(4), bytearray(20)
        n, anc, flags, addr = b.recvmsg_into([first, memoryview(second)])
        assert n == 13 and anc == [] and flags == 0
        assert bytes(first) + bytes(second[:9]) == b"one-two-three"
        assert a.sendmsg(p for p in [b"gen", b"erator"]) == 9
        data, anc, flags, addr = b.recvmsg(64)
        assert data == b"generator"


def test_sendmsg_many_parts(impl):
    if not hasattr(socket.socket, "sendmsg"):
        pytest.skip("no sendmsg")
    a, b = impl.socketpair()
    with a, b:
        parts = [bytes([i]) * 3 for i in range(40)]  # more than the stack fast path
        assert a.sendmsg(parts) == 120
        assert drain(b, 120) == b"".join(parts)


@needs_unix
def test_pass_file_descriptor(impl):
    if not hasattr(socket, "SCM_RIGHTS"):
        pytest.skip("no SCM_RIGHTS")
    a, b = impl.socketpair()
    r, w = os.pipe()
    try:
        with a, b:
            fds = array.array("i", [w])
            a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            msg, anc, flags, addr = b.recvmsg(1, socket.CMSG_SPACE(fds.itemsize))
            assert msg == b"x"
            level, kind, data = anc[0]
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            passed = array.array("i", data[:fds.itemsize])[0]
            os.write(passed, b"!")
            os.close(passed)
            assert os.read(r, 1) == b"!"
    finally:
        os.close(r)
        os.close(w)


def test_sendfile(impl, tmp_path):
    payload = os.urandom(300_000)
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    a, b = impl.socketpair()
    received = []
    t = threading.Thread(target=lambda: received.append(drain(b, 100_000)))
    t.start()
    with a, b, open(path, "rb") as f:
        assert a.sendfile(f, offset=1000, count=100_000) == 100_000
        assert f.tell() == 101_000
        t.join(30)
    assert received == [payload[1000:101_000]]


def test_sendfile_rejects_text_and_nonblocking(impl, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hi")
    a, b = impl.socketpair()
    with a, b:
        with open(path, "r") as f, pytest.raises(ValueError):
            a.sendfile(f)
        a.setblocking(False)
        with open(path, "rb") as f, pytest.raises(ValueError):
            a.sendfile(f)


# ----------------------------------------------------------- families


@needs_ipv6
def test_tcp_ipv6(impl):
    with impl.create_server(("::1", 0), family=socket.AF_INET6) as srv:
        host, port, flow, scope = srv.getsockname()
        assert host == "::1"
        with impl.create_connection(("::1", port)) as c:
            conn, addr = srv.accept()
            with conn:
                assert addr[0] == "::1" and len(addr) == 4
                c.sendall(b"six")
                assert drain(conn, 3) == b"six"


# -- makefile, dup, inheritance: socket.socket's own, on every backend -----------------

def test_makefile_binary_and_text(impl):
    a, b = impl.socketpair()
    with a, b:
        writer = a.makefile("wb")
        reader = b.makefile("r", encoding="utf-8", newline="")
        writer.write(b"first line\r\nsecond\n")
        writer.flush()
        assert reader.readline() == "first line\r\n"
        assert reader.readline() == "second\n"
        assert reader.mode == "r"
        both = b.makefile("rwb")
        both.write(b"back")
        both.flush()
        assert a.recv(4) == b"back"
        a.sendall(b"more")
        a.shutdown(socket.SHUT_WR)
        assert both.read() == b"more"  # up to the end of the stream
        for f in (writer, reader, both):
            f.close()


def test_makefile_arguments_as_the_stdlib_checks_them(impl):
    a, b = impl.socketpair()
    with a, b:
        with pytest.raises(ValueError):
            a.makefile("x")
        with pytest.raises(ValueError):
            a.makefile("r", buffering=0)  # unbuffered must be binary
        raw = a.makefile("rwb", buffering=0)
        assert isinstance(raw, socket.SocketIO) and raw.mode == "rwb"
        assert raw.fileno() == a.fileno() and raw.name == a.fileno()
        b.sendall(b"raw")
        assert raw.read(3) == b"raw"
        raw.close()
        assert raw.name == -1


def test_close_waits_for_the_files_makefile_made(impl):
    """As the standard library's: close() with a file open leaves the
    descriptor to that file, and the last file's close closes it."""
    a, b = impl.socketpair()
    with b:
        first, second = a.makefile("rb"), a.makefile("wb")
        fd = a.fileno()
        a.close()
        assert a.fileno() == fd and "[closed]" in repr(a)
        second.write(b"still open")
        second.flush()
        assert b.recv(10) == b"still open"
        second.close()
        assert a.fileno() == fd  # one file left
        b.sendall(b"in")
        assert first.read(2) == b"in"
        first.close()
        assert a.fileno() == -1
        if sys.platform != "win32":  # (a socket is no C runtime descriptor there)
            with pytest.raises(OSError) as info:
                os.fstat(fd)  # the descriptor itself is gone
            assert info.value.errno == errno.EBADF
        a.close()  # twice: nothing


def test_makefile_on_a_timed_out_or_non_blocking_socket(impl):
    a, b = impl.socketpair()
    with a, b:
        a.settimeout(0.01)
        reader = a.makefile("rb", buffering=0)
        with pytest.raises(TimeoutError):
            reader.read(1)
        with pytest.raises(OSError, match="timed out object"):
            reader.read(1)  # the stdlib refuses to read on after a timeout
        reader.close()
        a.setblocking(False)
        reader = a.makefile("rb", buffering=0)
        assert reader.read(1) is None  # would block
        b.sendall(b"!")
        assert _read_when_ready(reader, 1) == b"!"
        reader.close()


def _read_when_ready(raw, size):
    for _ in range(1000):
        data = raw.read(size)
        if data is not None:
            return data
        time.sleep(0.001)
    raise AssertionError("no data within the bound")


def test_dup_is_an_independent_socket_of_the_same_kind(impl):
    a, b = impl.socketpair()
    with b:
        a.settimeout(7.5)
        copy = a.dup()
        assert type(copy) is type(a)
        assert copy.fileno() != a.fileno()
        assert (copy.family, copy.type, copy.proto) == (a.family, a.type, a.proto)
        assert copy.gettimeout() == 7.5
        assert not copy.get_inheritable()  # as every new descriptor (PEP 446)
        a.close()
        copy.sendall(b"via the copy")
        assert b.recv(12) == b"via the copy"
        copy.close()
        assert b.recv(1) == b""  # the last descriptor is closed: end of stream


def test_inheritable_flag(impl):
    s = impl.Socket()
    with s:
        assert s.get_inheritable() is False
        s.set_inheritable(True)
        assert s.get_inheritable() is True
        s.set_inheritable(False)
        assert s.get_inheritable() is False
    for call in (s.get_inheritable, lambda: s.set_inheritable(True)):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF


def test_detach_counts_as_closed(impl):
    s = impl.Socket()
    with socket.socket(fileno=s.detach()) as owner:  # the caller's now, still open
        assert s.fileno() == -1 and "[closed]" in repr(s)
        s.close()  # nothing left to close
        assert owner.getsockname() is not None


def test_udp_ipv4(impl):
    with impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
            impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        assert b.sendto(b"dgram", a.getsockname()) == 5
        data, addr = a.recvfrom(100)
        assert data == b"dgram" and addr == b.getsockname()
        b.sendto(b"flags", 0, a.getsockname())
        buf = bytearray(100)
        n, addr = a.recvfrom_into(buf)
        assert buf[:n] == b"flags" and addr == b.getsockname()


def test_udp_connected_send(impl):
    with impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
            impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.connect(a.getsockname())
        b.send(b"connected")
        assert a.recv(100) == b"connected"


def test_udp_truncation(impl):
    with impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
            impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.sendto(b"0123456789", a.getsockname())
        assert a.recv(4) == b"0123"  # the rest of the datagram is discarded


@needs_ipv6
def test_udp_ipv6(impl):
    with impl.Socket(socket.AF_INET6, socket.SOCK_DGRAM) as a, \
            impl.Socket(socket.AF_INET6, socket.SOCK_DGRAM) as b:
        a.bind(("::1", 0))
        b.sendto(b"v6", a.getsockname())
        data, addr = a.recvfrom(10)
        assert data == b"v6" and addr[0] == "::1"


@pytest.mark.parametrize("family", [socket.AF_INET, pytest.param(socket.AF_INET6, marks=needs_ipv6)],
                         ids=["v4", "v6"])
def test_udp_replies_reach_each_of_many_peers(impl, family):
    """A server answering more peers than the C backend remembers addresses
    of, each with the address recvfrom gave it: every reply reaches the peer
    that asked, in every round, and so do replies to address objects kept
    from the first round, which the server has long replaced."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    first = {}
    with impl.Socket(family, socket.SOCK_DGRAM) as server, \
            datagram_peers(family, host, 400, timeout=10) as peers:
        server.bind((host, 0))
        server.settimeout(10)
        for round_, asked in shuffled_batches(len(peers), rounds=3):
            for i in asked:
                peers[i].sendto(b"%d:%d" % (i, round_), server.getsockname())
            for _ in asked:
                data, addr = server.recvfrom(64)
                i = int(data.split(b":")[0])
                assert addr == peers[i].getsockname()
                first.setdefault(i, addr)
                assert server.sendto(data, addr) == len(data)
            for i in asked:
                assert peers[i].recv(64) == b"%d:%d" % (i, round_)
        for _, asked in shuffled_batches(len(peers), rounds=1):
            for i in asked:
                server.sendto(b"late %d" % i, first[i])
            for i in asked:
                assert peers[i].recv(64) == b"late %d" % i
    # With the socket gone, nothing holds the addresses but this test: each
    # is referred to as often as a tuple only the dict holds.
    del server, addr
    gc.collect()
    first[-1] = tuple([host, 0])
    assert len({sys.getrefcount(a) for a in first.values()}) == 1


@needs_unix
def test_unix_stream(impl, tmp_path):
    path = str(tmp_path / "s.sock")
    with impl.Socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(path)
        srv.listen()
        assert srv.getsockname() == path
        with impl.Socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
            conn, addr = srv.accept()
            with conn:
                assert addr == ""
                c.sendall(b"unix")
                assert drain(conn, 4) == b"unix"
                assert conn.getpeername() == ""


@needs_unix
def test_unix_bytes_path_and_datagram(impl, tmp_path):
    path = os.fsencode(str(tmp_path / "d.sock"))
    with impl.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as a, \
            impl.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as b:
        a.bind(path)
        b.sendto(b"dgram", path)
        assert a.recv(10) == b"dgram"


@linux_only
def test_unix_abstract_namespace(impl):
    name = b"\0zerosock-test-%d" % os.getpid()
    with impl.Socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(name)
        srv.listen()
        assert srv.getsockname() == name
        with impl.Socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(name)
            conn, _ = srv.accept()
            conn.close()


def test_unix_path_too_long(impl):
    with impl.Socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        with pytest.raises(OSError, match="too long"):
            s.bind("/tmp/" + "x" * 200)


def test_hostname_resolution(impl):
    with impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("localhost", 0))
        assert s.getsockname()[0] == "127.0.0.1"
        s.connect(("127.0.0.1", 9))
    with impl.Socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("", 0))
        assert s.getsockname()[0] == "0.0.0.0"


# ------------------------------------------------------------ accept / connect


def test_accept_blocking_rules(impl):
    with impl.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(5)
        with impl.create_connection(srv.getsockname()):
            conn, addr = srv.accept()
            with conn:
                # no default timeout: the accepted socket is blocking
                assert conn.gettimeout() is None and conn.getblocking()
                assert addr[0] == "127.0.0.1"
        socket.setdefaulttimeout(3.0)
        try:
            with impl.create_connection(srv.getsockname()):
                conn, _ = srv.accept()
                with conn:
                    assert conn.gettimeout() == 3.0
        finally:
            socket.setdefaulttimeout(None)


@linux_only
def test_accepted_socket_is_close_on_exec(zs):
    import fcntl
    with zs.create_server(("127.0.0.1", 0)) as srv, zs.create_connection(srv.getsockname()):
        conn, _ = srv.accept()
        with conn:
            assert fcntl.fcntl(conn.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert not os.get_inheritable(conn.fileno())


def test_connect_refused(impl):
    with impl.Socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connects are refused
        with impl.Socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
        with impl.Socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
        with impl.Socket() as s:
            s.settimeout(5)
            with pytest.raises(ConnectionRefusedError):
                s.connect(("127.0.0.1", port))


def test_nonblocking_connect(impl):
    with impl.create_server(("127.0.0.1", 0)) as srv, impl.Socket() as s:
        s.setblocking(False)
        try:
            s.connect(srv.getsockname())
        except BlockingIOError as exc:
            assert exc.errno == errno.EINPROGRESS
        conn, _ = srv.accept()
        conn.close()


def test_create_server_options(impl):
    with impl.create_server(("127.0.0.1", 0), backlog=5, reuse_port=hasattr(socket, "SO_REUSEPORT")) as s:
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    with pytest.raises(ValueError):
        impl.create_server(("127.0.0.1", 0), dualstack_ipv6=True, family=socket.AF_INET)


def test_create_server_port_in_use(impl):
    with impl.create_server(("127.0.0.1", 0)) as s:
        with pytest.raises(OSError) as info:
            impl.create_server(s.getsockname())
        assert info.value.errno == errno.EADDRINUSE


def test_create_connection_with_source_and_timeout(impl):
    with impl.create_server(("127.0.0.1", 0)) as srv:
        with impl.create_connection(srv.getsockname(), timeout=4,
                                    source_address=("127.0.0.1", 0)) as c:
            assert c.gettimeout() == 4
            conn, addr = srv.accept()
            conn.close()
            assert addr == c.getsockname()


# --------------------------------------------------------- modes and timeouts


def test_nonblocking_recv_raises_blocking_io(tcp_pair):
    client, server = tcp_pair
    server.setblocking(False)
    assert not server.getblocking() and server.gettimeout() == 0.0
    with pytest.raises(BlockingIOError) as info:
        server.recv_into(bytearray(10))
    assert info.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    with pytest.raises(BlockingIOError):
        server.recv(10)


def test_timeout_recv(tcp_pair):
    client, server = tcp_pair
    server.settimeout(0.05)
    start = time.monotonic()
    with pytest.raises(socket.timeout):
        server.recv(10)
    assert time.monotonic() - start >= 0.04
    client.sendall(b"late")
    assert server.recv(10) == b"late"


def test_timeout_accept(impl):
    with impl.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(0.05)
        with pytest.raises(socket.timeout):
            srv.accept()


def test_timeout_sendall_when_peer_does_not_read(tcp_pair):
    client, server = tcp_pair
    held = pin_buffers(client, server)
    client.settimeout(0.1)
    with pytest.raises(socket.timeout):
        client.sendall(b"x" * (16 * held))


@pytest.mark.parametrize("value,exc", [(-1, ValueError), (float("nan"), ValueError),
                                       ("1", TypeError), (1e300, OverflowError)])
def test_bad_timeouts(impl, value, exc):
    with impl.Socket() as s, pytest.raises(exc):
        s.settimeout(value)


def test_timeout_modes(impl):
    with impl.Socket() as s:
        s.settimeout(1)
        assert s.gettimeout() == 1.0 and s.getblocking()
        s.setblocking(False)
        assert s.gettimeout() == 0.0
        s.setblocking(True)
        assert s.gettimeout() is None
        s.settimeout(None)
        assert s.timeout is None


def test_blocking_recv_releases_the_gil(tcp_pair):
    client, server = tcp_pair
    counter = [0]
    result = []
    t = threading.Thread(target=lambda: result.append(server.recv(4)))
    t.start()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # this thread keeps running meanwhile
        counter[0] += 1
    client.sendall(b"done")
    t.join(10)
    assert result == [b"done"]
    assert counter[0] > 1000


def test_signal_handler_exception_interrupts_blocking_recv(tcp_pair):
    import signal
    if not hasattr(signal, "setitimer"):
        pytest.skip("no setitimer")
    client, server = tcp_pair

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            server.recv(10)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_eintr_is_retried(tcp_pair):
    import signal
    if not hasattr(signal, "setitimer"):
        pytest.skip("no setitimer")
    client, server = tcp_pair
    calls = []
    old = signal.signal(signal.SIGALRM, lambda *a: calls.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        threading.Timer(0.2, lambda: client.sendall(b"after")).start()
        assert server.recv(5) == b"after"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert calls


# ------------------------------------------------------------------- options


def test_socket_options(impl):
    with impl.Socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        linger = s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
        assert isinstance(linger, bytes) and len(linger) == 8
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, bytes(8))
        with pytest.raises(OSError):
            s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 5000)
        with pytest.raises(OSError) as info:
            s.setsockopt(socket.SOL_SOCKET, 987654, 1)
        assert info.value.errno in (errno.ENOPROTOOPT, errno.EINVAL)
