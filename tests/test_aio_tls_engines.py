"""The C TLS layer's engines driven alone, without a loop or a transport:
what the state machine asks of each (zerosock._aio_tls_engine_c), on both the
OpenSSL engine and the MemoryBIO engine, with pairs of any two engines."""

from __future__ import annotations

import errno
import os
import socket
import ssl
import struct
import sys
from typing import Any, Iterator, Tuple

import pytest

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.c_extension

ENGINES = ["openssl", "memorybio"]


@pytest.fixture(scope="module")
def tls(c_backend: Any) -> Any:
    from zerosock import _aio_tls_c
    return _aio_tls_c


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def contexts(ca: Any) -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def engine(tls: Any, kind: str, ctx: ssl.SSLContext, server_side: bool) -> Any:
    if kind == "openssl":
        from zerosock import _aio_tls_openssl_c, _cpython_c
        # The fast-path switch (or a CPython newer than its table) turns it off too.
        why = _cpython_c.verdict("ssl_object_layout") or _aio_tls_openssl_c.unavailable_reason()
        if why is not None:
            pytest.skip(f"the OpenSSL engine is not available here: {why}")
    made = tls.new_engine(kind, ctx, server_side, None if server_side else "localhost")
    assert type(made).__name__ == {"openssl": "OpenSSLEngine", "memorybio": "MemoryBIOEngine"}[kind]
    return made


def pump(src: Any, dst: Any) -> int:
    """Move the records ``src`` made into ``dst``: their byte count."""
    data = src.take_output()
    if data:
        dst.feed(data)
    return len(data)


def handshake(client: Any, server: Any) -> None:
    done_c = done_s = False
    for _ in range(10):
        done_c = done_c or client.do_handshake()
        pump(client, server)
        done_s = done_s or server.do_handshake()
        pump(server, client)
        if done_c and done_s:
            return
    raise AssertionError("the handshake did not complete")


@pytest.fixture(params=[(c, s) for c in ENGINES for s in ENGINES], ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request: pytest.FixtureRequest, tls: Any, contexts: Any) -> Iterator[Tuple[Any, Any]]:
    """A client engine and a server engine of the kinds named, handshaken."""
    sctx, cctx = contexts
    client = engine(tls, request.param[0], cctx, False)
    server = engine(tls, request.param[1], sctx, True)
    handshake(client, server)
    yield client, server


@pytest.fixture(params=ENGINES)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def fresh_pair(tls: Any, contexts: Any, kind: str) -> Tuple[Any, Any]:
    sctx, cctx = contexts
    client, server = engine(tls, kind, cctx, False), engine(tls, kind, sctx, True)
    handshake(client, server)
    return client, server


# -- any two engines speak TLS to each other ---------------------------------------------

def test_the_session_is_the_stdlibs(pair):
    client, server = pair
    for e in pair:
        assert isinstance(e.sslobj, ssl.SSLObject)
        assert e.sslobj.version() == "TLSv1.3"
    assert client.sslobj.server_hostname == "localhost" and server.sslobj.server_side


def test_data_both_ways(pair):
    client, server = pair
    assert client.send(b"hello") == 0
    pump(client, server)
    assert server.recv(100) == b"hello"
    assert server.recv(100) is None  # needs more ciphertext
    blob = os.urandom(100_000)  # several records
    assert server.send(blob) == 0
    pump(server, client)
    got, closed = client.recv_all()
    assert got == blob and not closed
    assert client.recv_all() == (None, False)


def test_reads_split_as_asked(pair):
    client, server = pair
    client.send(b"0123456789" * 100)
    pump(client, server)
    parts = []
    while (part := server.recv(333)) is not None:
        parts.append(part)
    assert [len(p) for p in parts] == [333, 333, 333, 1]
    assert b"".join(parts) == b"0123456789" * 100


def test_records_fed_a_byte_at_a_time(pair):
    client, server = pair
    client.send(b"dribbled")
    data = client.take_output()
    for i in range(len(data) - 1):
        server.feed(data[i:i + 1])
        assert server.recv(100) is None
    server.feed(data[-1:])
    assert server.recv(100) == b"dribbled"


def test_close_notify_both_ways(pair):
    client, server = pair
    client.send(b"last")
    assert client.unwrap() is False  # its close_notify sent, the peer's awaited
    pump(client, server)
    assert server.recv_all() == (b"last", True)
    assert server.unwrap() is True
    pump(server, client)
    assert client.recv(10) == b""
    assert client.unwrap() is True


def test_garbage_fails_the_handshake_with_the_stdlibs_error(tls, contexts, kind):
    server = engine(tls, kind, contexts[0], True)
    server.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ssl.SSLError):
        server.do_handshake()


def test_a_broken_record_fails_the_read(tls, contexts, kind):
    client, server = fresh_pair(tls, contexts, kind)
    client.send(b"x" * 100)
    data = bytearray(client.take_output())
    data[-1] ^= 1  # the tag no longer matches
    server.feed(bytes(data))
    with pytest.raises(ssl.SSLError):
        server.recv(1000)


def test_a_write_before_the_handshake_waits_for_it(tls, contexts, kind):
    client = engine(tls, kind, contexts[1], False)
    assert client.send(b"early") == 5  # nothing taken: the handshake comes first
    assert client.take_output()[:1] == b"\x16"  # the ClientHello it started


def test_what_waits_and_what_is_held(tls, contexts, kind):
    client, server = fresh_pair(tls, contexts, kind)
    assert server.pending()[:2] == (0, 0)
    client.send(b"y" * 1000)
    records = client.pending()[1]
    assert records > 1000
    server.feed(client.take_output())
    incoming, outgoing, hint, drained = server.pending()
    assert incoming == records and outgoing == 0 and hint == records
    assert not drained  # (the MemoryBIO engine never says it is)
    assert server.recv(5000) == b"y" * 1000
    assert server.pending()[0] == 0


def test_a_session_class_of_the_contexts_own(tls, contexts, ca):
    class Subclass(ssl.SSLObject):
        pass

    class Proxy:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    class Wrapped(ssl.SSLObject):
        @classmethod
        def _create(cls, *args: Any, **kwargs: Any) -> Any:
            made = super()._create(*args, **kwargs)
            made._sslobj = Proxy(made._sslobj)
            return made

    sctx = contexts[0]
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    # A subclass still wraps _ssl's own session: the OpenSSL engine drives it.
    ctx.sslobject_class = Subclass
    if tls._c_engine_available():
        assert type(tls.new_engine("openssl", ctx, False, "localhost")).__name__ == "OpenSSLEngine"
    # One whose pointers cannot be checked gets the MemoryBIO engine, which works.
    ctx.sslobject_class = Wrapped
    client = tls.new_engine("openssl", ctx, False, "localhost")
    assert type(client).__name__ == "MemoryBIOEngine" and type(client.sslobj) is Wrapped
    server = engine(tls, "memorybio", sctx, True)
    handshake(client, server)
    client.send(b"through the proxy")
    pump(client, server)
    assert server.recv(100) == b"through the proxy"


# -- through a socket lent as a transport lends it --------------------------------------------

@pytest.fixture
def sockets() -> Iterator[Tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    for s in (a, b):
        s.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_records_leave_through_the_lent_socket(tls, contexts, kind, sockets):
    client, server = fresh_pair(tls, contexts, kind)
    a, b = sockets
    assert client.send(b"direct", a.fileno()) == 0
    waiting = client.take_output()
    if kind == "openssl":
        assert waiting == b""  # sent from OpenSSL's buffer as it was made
    else:
        assert waiting  # MemoryBIO records always go through the transport's write
        a.send(waiting)
    data, held, eof, err = server.recv(100, b.fileno())
    assert (data, eof, err) == (b"direct", False, 0)
    assert held == 0


def test_one_receive_a_readiness_event(tls, contexts, kind, sockets):
    client, server = fresh_pair(tls, contexts, kind)
    a, b = sockets
    for i in range(3):  # three records, in the kernel at once
        client.send(b"%d" % i * 10)
    a.send(client.take_output())
    data, held, eof, err = server.recv(5, b.fileno())
    assert data == b"00000" and (eof, err) == (False, 0)
    # All three records came in that one receive: no more from the socket.
    assert server.recv_all() == (b"00000" + b"1" * 10 + b"2" * 10, False)
    with pytest.raises(BlockingIOError):
        b.recv(1)


def test_full_records_after_the_handshake_come_in_one_receive(tls, contexts, kind, sockets):
    # The session's record buffer holds several full records once the
    # handshake is done (with OpenSSL before 3.2 it is made that big only then).
    client, server = fresh_pair(tls, contexts, kind)
    a, b = sockets
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    client.send(b"x" * 49_152)  # three full records
    records = client.take_output()
    assert len(records) > 49_152
    if a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < 2 * len(records):
        pytest.skip("this kernel keeps the socket buffers too small")
    a.sendall(records)
    data, held, eof, err = server.recv(5, b.fileno())
    assert data == b"xxxxx" and (eof, err) == (False, 0)
    assert held == 0  # every record went into the session in that one receive
    assert server.recv_all() == (b"x" * 49_147, False)


def test_ciphertext_no_step_asked_for_is_held(tls, contexts, kind, sockets):
    client, server = fresh_pair(tls, contexts, kind)
    a, b = sockets
    client.send(b"paused")
    records = client.take_output()
    a.send(records)
    held, eof, err = server.receive_from(b.fileno())
    assert (eof, err) == (False, 0)
    # The OpenSSL engine takes it into memory of its own; the MemoryBIO engine
    # had copied it into its MemoryBIO already.
    assert held == (len(records) if kind == "openssl" else 0)
    assert server.pending()[0] == len(records)
    assert server.recv(100) == b"paused"


def test_end_of_stream_is_kept_for_the_transport(tls, contexts, kind, sockets):
    client, server = fresh_pair(tls, contexts, kind)
    a, b = sockets
    a.shutdown(socket.SHUT_WR)
    assert server.recv(100, b.fileno()) == (None, 0, True, 0)


def test_a_receive_error_is_kept_for_the_transport(tls, contexts, kind):
    client, server = fresh_pair(tls, contexts, kind)
    listener = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(listener.getsockname())
    b, _ = listener.accept()
    listener.close()
    b.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    a.close()  # a reset
    try:
        assert server.recv(100, b.fileno()) == (None, 0, False, errno.ECONNRESET)
    finally:
        b.close()


def test_a_send_error_is_kept_for_the_transport(tls, contexts, kind, sockets):
    client, server = fresh_pair(tls, contexts, kind)
    a, b = sockets
    b.close()
    if kind == "openssl":
        with pytest.raises(OSError) as info:
            client.send(b"into the void", a.fileno())
        assert info.value.errno == errno.EPIPE
        assert client.take_output() == b""  # the connection is lost: the record goes nowhere
    else:
        assert client.send(b"into the void", a.fileno()) == 0
        assert client.take_output()


@pytest.mark.skipif(sys.platform == "win32", reason="socketpair buffer sizes")
def test_what_the_kernel_leaves_waits_in_order(tls, contexts, sockets):
    client, server = fresh_pair(tls, contexts, "openssl")
    a, b = sockets
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    blob = os.urandom(1 << 20)
    assert client.send(blob, a.fileno()) == 0
    rest = client.take_output()
    assert rest  # the kernel took some, the rest waits for the transport
    got = bytearray()
    a.setblocking(True)
    while rest or len(got) < len(blob):
        if rest:
            try:
                n = a.send(rest[:65536], socket.MSG_DONTWAIT)
                rest = rest[n:]
            except BlockingIOError:
                pass
        while True:
            data, _, eof, err = server.recv(1 << 20, b.fileno())
            assert not eof and not err
            if data is None:
                break
            got += data
    assert bytes(got) == blob
