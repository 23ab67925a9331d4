"""TLS on zerosock.aio: the C loop with each TLS engine, the Python backend and
stock asyncio (the reference) run the same tests through ``tls_loop_factory``."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading
from typing import Any, Callable, List, Optional, Tuple

import pytest

from _aio_loops import fastpath_on, run, stdlib_loop
from _hardening import fuzz_examples
from _kernel import pin_buffers

trustme = pytest.importorskip("trustme")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NEW_SSLPROTO = sys.version_info >= (3, 11)  # the TLS protocol zerosock's engines follow

# zerosock's TLS layer runs on 3.11+; before, every loop here uses the stdlib's
# older SSLProtocol, whose different closing and error behaviour CPython's own
# test_sslproto covers (tests/run_stdlib_asyncio.py runs it on zerosock).
pytestmark = pytest.mark.skipif(sys.version_info < (3, 11),
                                reason="zerosock's TLS layer needs 3.11+; older loops keep the stdlib's")


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca: Any) -> Any:
    return ca.issue_cert("localhost", "127.0.0.1")


def server_context(ca: Any, cert: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def client_context(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class Peer(asyncio.Protocol):
    """Records what a TLS connection's protocol is told, in order."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.events: List[str] = []
        self.chunks: List[bytes] = []
        self.transport: Optional[asyncio.Transport] = None
        loop = asyncio.get_running_loop()
        self.made = loop.create_future()
        self.done = loop.create_future()
        self.paused = 0
        self.resumed = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes
        self.chunks.append(data)
        if self.echo:
            assert self.transport is not None
            self.transport.write(data)

    def eof_received(self) -> None:
        self.events.append("eof")

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.events.append(f"lost:{type(exc).__name__ if exc else None}")
        if not self.done.done():
            self.done.set_result(exc)

    def data(self) -> bytes:
        return b"".join(self.chunks)

    async def received(self, n: int) -> bytes:
        while len(self.data()) < n:
            if self.done.done():
                raise AssertionError(f"connection lost after {len(self.data())} of {n} bytes")
            await asyncio.sleep(0.001)
        return self.data()


class BufferedPeer(Peer, asyncio.BufferedProtocol):
    """A BufferedProtocol that echoes, through a small buffer so reads split."""

    def __init__(self, echo: bool = False, size: int = 1000) -> None:
        Peer.__init__(self, echo)
        self.buf = bytearray(size)
        self.sizes: List[int] = []

    def get_buffer(self, sizehint: int) -> memoryview:
        self.sizes.append(sizehint)
        # A view: the stdlib's TLS protocol fills a bytearray past its first
        # record through a copy (buf[offset:]) and loses those bytes.
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.buf[:nbytes]))


async def tls_pair(ca: Any, cert: Any, server_proto: Callable[[], Peer] = Peer,
                   client_proto: Callable[[], Peer] = Peer,
                   sctx: Optional[ssl.SSLContext] = None, cctx: Optional[ssl.SSLContext] = None,
                   **client_kwargs: Any) -> Tuple[Any, Peer, Peer]:
    """A TLS server and a client connected to it: (server, server side, client side)."""
    loop = asyncio.get_running_loop()
    sides: List[Peer] = []

    def make() -> Peer:
        sides.append(server_proto())
        return sides[-1]

    server = await loop.create_server(make, "127.0.0.1", 0, ssl=sctx or server_context(ca, cert))
    port = server.sockets[0].getsockname()[1]
    client_kwargs.setdefault("server_hostname", "localhost")
    _, client = await loop.create_connection(client_proto, "127.0.0.1", port,
                                             ssl=cctx or client_context(ca), **client_kwargs)
    await client.made
    while not sides:
        await asyncio.sleep(0.001)
    await sides[0].made
    return server, sides[0], client


async def close_all(server: Any, *peers: Peer) -> None:
    for peer in peers:
        if peer.transport is not None and not peer.transport.is_closing():
            peer.transport.close()
    for peer in peers:
        await peer.done
    server.close()
    await server.wait_closed()


def is_c_loop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__ == "zerosock._aio_c"


# -- engines -------------------------------------------------------------------------

def test_tls_engine_is_exported(zs):
    if zs.BACKEND == "python":
        assert zs.aio.TLS_ENGINE == "stdlib"
    elif NEW_SSLPROTO:
        assert zs.aio.TLS_ENGINE in ("openssl", "memorybio")
    else:
        assert zs.aio.TLS_ENGINE == "stdlib"


@pytest.mark.c_extension
@pytest.mark.parametrize("wanted", ["memorybio", "stdlib"])
def test_engine_forced_by_the_environment(c_backend, wanted):
    code = ("import zerosock._compat as c; aio = c.load_backend('c').aio; "
            "print(aio.TLS_ENGINE)")
    env = {**os.environ, "ZEROSOCK_TLS_ENGINE": wanted}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == (wanted if NEW_SSLPROTO else "stdlib")


@pytest.mark.c_extension
def test_openssl_engine_runs_where_the_checks_pass(c_backend):
    from zerosock import _aio_tls_c
    if not NEW_SSLPROTO or os.environ.get("ZEROSOCK_TLS_ENGINE"):
        pytest.skip("engine chosen by the interpreter version or the environment")
    import _ssl
    if not fastpath_on("ssl_object_layout"):
        # Its reliance on _ssl's layout turned off: the generic engine.
        assert _aio_tls_c.TLS_ENGINE == "memorybio"
        assert not _aio_tls_c._c_engine_available()
    elif sys.platform.startswith("linux") and getattr(_ssl, "__file__", None):
        # A shared _ssl over a shared libssl, the common Linux build: the C engine runs.
        assert _aio_tls_c.TLS_ENGINE == "openssl"
        assert _aio_tls_c._c_engine_available()


# -- kernel TLS ----------------------------------------------------------------------------

def ktls_echo(c_backend: Any, engine: str, ca: Any, cert: Any, ask: bool) -> List[str]:
    """Echo 256 B and 100 kB over zerosock's TLS layer on ``engine``; the
    server's and the client's kernel TLS state."""
    from zerosock import _aio_tls_c
    if _aio_tls_c.TLS_ENGINE == "stdlib":
        pytest.skip("this interpreter keeps the stdlib's TLS protocol")
    if engine == "openssl" and not _aio_tls_c._c_engine_available():
        pytest.skip("the OpenSSL engine is not available here")
    sctx, cctx = server_context(ca, cert), client_context(ca)
    if ask:
        for ctx in (sctx, cctx):
            ctx.options |= _aio_tls_c._OP_ENABLE_KTLS

    async def main() -> List[str]:
        server, srv, cli = await tls_pair(ca, cert, lambda: Peer(echo=True), sctx=sctx, cctx=cctx)
        blob = os.urandom(100_000)
        cli.transport.write(b"x" * 256)
        assert await cli.received(256) == b"x" * 256
        cli.transport.write(blob)
        assert await cli.received(256 + len(blob)) == b"x" * 256 + blob
        states = [t._ssl_protocol._ktls for t in (srv.transport, cli.transport)]
        await close_all(server, cli, srv)
        return states

    previous = _aio_tls_c._force_engine(engine)
    try:
        return run(c_backend.aio.new_event_loop, main())
    finally:
        _aio_tls_c._force_engine(previous)


@pytest.mark.c_extension
@pytest.mark.parametrize("engine", ["openssl", "memorybio"])
def test_kernel_tls_is_off_unless_the_context_asks(c_backend, ca, server_cert, engine):
    assert ktls_echo(c_backend, engine, ca, server_cert, ask=False) == ["off", "off"]


@pytest.mark.c_extension
@pytest.mark.parametrize("engine", ["openssl", "memorybio"])
def test_kernel_tls_unavailable_runs_the_engine(c_backend, ca, server_cert, engine):
    from zerosock import _aio_tls_c
    if _aio_tls_c._ktls_unavailable_reason() is None:
        pytest.skip("this host has kernel TLS")
    assert ktls_echo(c_backend, engine, ca, server_cert, ask=True) == ["unavailable"] * 2


@pytest.mark.c_extension
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_ULP is Linux's")
@pytest.mark.parametrize("engine", ["openssl", "memorybio"])
def test_kernel_tls_refused_by_the_kernel_runs_the_engine(c_backend, ca, server_cert, engine,
                                                          monkeypatch):
    from zerosock import _aio_tls_c
    # Told the host has kernel TLS: the socket asks the kernel, which refuses
    # where the tls module is missing (and passes records through where not).
    monkeypatch.setattr(_aio_tls_c, "_ktls_unavailable_reason", lambda: None)
    states = ktls_echo(c_backend, engine, ca, server_cert, ask=True)
    if os.path.exists("/sys/module/tls"):
        assert states == ["attached"] * 2
    else:
        assert states == ["refused"] * 2


# -- data both ways ----------------------------------------------------------------------

def test_echo_both_directions_and_extra_info(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert, lambda: Peer(echo=True))
        assert cli.transport is not None and srv.transport is not None
        cli.transport.write(b"ping")
        assert await cli.received(4) == b"ping"
        srv.transport.write(b"from the server")
        assert (await cli.received(19))[4:] == b"from the server"
        for transport in (cli.transport, srv.transport):
            sslobj = transport.get_extra_info("ssl_object")
            assert isinstance(sslobj, ssl.SSLObject)
            assert sslobj.version() == "TLSv1.3"
            assert transport.get_extra_info("cipher") == sslobj.cipher()
            assert transport.get_extra_info("compression") is None
            assert isinstance(transport.get_extra_info("sslcontext"), ssl.SSLContext)
            assert transport.get_extra_info("peername")[0] == "127.0.0.1"
            assert transport.get_extra_info("socket") is not None
            assert transport.get_extra_info("no such key", "dflt") == "dflt"
            assert not transport.can_write_eof()
            with pytest.raises(NotImplementedError):
                transport.write_eof()
        peercert = cli.transport.get_extra_info("peercert")
        assert ("DNS", "localhost") in peercert["subjectAltName"]
        sslobj = cli.transport.get_extra_info("ssl_object")
        assert sslobj.getpeercert(True) == ssl.PEM_cert_to_DER_cert(
            server_cert.cert_chain_pems[0].bytes().decode())
        assert sslobj.server_hostname == "localhost" and not sslobj.server_side
        assert sslobj.session is not None and sslobj.session_reused is False
        assert srv.transport.get_extra_info("peercert") is None  # no client certificate asked
        with pytest.raises(TypeError, match="expecting a bytes-like instance"):
            cli.transport.write("text")  # type: ignore[arg-type]
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


def test_extra_info_from_the_handshake_to_after_the_close(tls_loop_factory, ca, server_cert):
    # The stdlib snapshots these at the handshake into its ``_extra`` dict and
    # answers from it until the end; zerosock makes that dict only if asked.
    names = ("sslcontext", "peercert", "cipher", "compression", "ssl_object")

    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert, lambda: Peer(echo=True))
        assert cli.transport is not None and srv.transport is not None
        before = {name: cli.transport.get_extra_info(name) for name in names}
        assert before["cipher"] == before["ssl_object"].cipher()
        proto = srv.transport._ssl_protocol  # type: ignore[attr-defined]
        assert {name: srv.transport.get_extra_info(name) for name in names} == {
            name: proto._extra[name] for name in names}
        proto._extra["cipher"] = "replaced"  # the dict, once made, is what is read
        assert srv.transport.get_extra_info("cipher") == "replaced"
        await close_all(server, cli, srv)
        assert {name: cli.transport.get_extra_info(name) for name in names} == before

    run(tls_loop_factory, main())


def test_extra_info_asked_for_first_after_the_close(tls_loop_factory, ca, server_cert):
    # zerosock reads a TLS 1.3 session's cipher on first ask, not at the
    # handshake: asked only once the connection is gone, it is still there.
    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert, lambda: Peer(echo=True))
        assert cli.transport is not None and srv.transport is not None
        cli.transport.write(b"ping")
        assert await cli.received(4) == b"ping"
        await close_all(server, cli, srv)
        for transport in (cli.transport, srv.transport):
            sslobj = transport.get_extra_info("ssl_object")
            cipher = transport.get_extra_info("cipher")
            assert cipher is not None and cipher == sslobj.cipher()
            assert transport.get_extra_info("cipher") is cipher  # one tuple, as the stdlib's dict keeps
            assert transport.get_extra_info("compression") is None
            assert transport._ssl_protocol._extra["cipher"] is cipher  # type: ignore[attr-defined]

    run(tls_loop_factory, main())


def test_an_idle_connection_then_a_megabyte_both_ways(tls_loop_factory, ca, server_cert):
    # Idle, a connection holds no record buffers: they come back for a bulk
    # transfer, in both directions, after the loop sat idle between.
    blob = os.urandom(1 << 20)

    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert, lambda: Peer(echo=True))
        assert cli.transport is not None and srv.transport is not None
        cli.transport.write(b"x")
        assert await cli.received(1) == b"x"
        for _ in range(3):
            await asyncio.sleep(0.02)
        cli.transport.write(blob)
        got = await cli.received(1 + len(blob))
        assert hashlib.sha256(got).digest() == hashlib.sha256(b"x" + blob).digest()
        await asyncio.sleep(0.02)
        srv.transport.write(blob[:100_000])
        assert (await cli.received(1 + len(blob) + 100_000))[1 + len(blob):] == blob[:100_000]
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


def test_a_session_is_resumed(tls_loop_factory, ca, server_cert):
    # TLS 1.3 resumption with the server's context as the user made it: the
    # second connection presents the first one's ticket and is resumed.
    cctx = client_context(ca)

    def connect(port: int, session: Optional[ssl.SSLSession]) -> Tuple[ssl.SSLSession, bool]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            with cctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                s.sendall(b"ping")
                assert s.recv(4) == b"ping"  # the tickets came before the echo
                return s.session, s.session_reused

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sides: List[Peer] = []

        def make() -> Peer:
            sides.append(Peer(echo=True))
            return sides[-1]

        server = await loop.create_server(make, "127.0.0.1", 0, ssl=server_context(ca, server_cert))
        port = server.sockets[0].getsockname()[1]
        session, reused = await loop.run_in_executor(None, connect, port, None)
        assert not reused and session is not None and session.has_ticket
        _, reused = await loop.run_in_executor(None, connect, port, session)
        assert reused
        assert len(sides) == 2
        flags = []
        for side in sides:
            await side.done
            assert side.transport is not None
            flags.append(side.transport.get_extra_info("ssl_object").session_reused)
        assert flags == [False, True]
        server.close()
        await server.wait_closed()

    run(tls_loop_factory, main())


def test_buffered_protocol_both_sides(tls_loop_factory, ca, server_cert):
    blob = os.urandom(300_000)

    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert, lambda: BufferedPeer(echo=True),
                                          lambda: BufferedPeer(size=777))
        assert cli.transport is not None
        cli.transport.write(blob)
        assert await cli.received(len(blob)) == blob
        assert max(len(c) for c in cli.chunks) <= 777
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


@pytest.mark.parametrize("size", [1 << 20, 3 * (1 << 20) + 17])
def test_large_transfers_arrive_whole(tls_loop_factory, ca, server_cert, size):
    blob = os.urandom(size)

    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert, lambda: Peer(echo=True))
        assert cli.transport is not None
        cli.transport.writelines([blob[:1000], blob[1000:]])
        got = await cli.received(size)
        assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


def test_many_small_writes_keep_their_order(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert, lambda: Peer(echo=True))
        assert cli.transport is not None
        parts = [str(i).encode() * (i % 7 + 1) for i in range(2000)]
        for part in parts:
            cli.transport.write(part)
        total = b"".join(parts)
        assert await cli.received(len(total)) == total
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


# -- what the context decides ------------------------------------------------------------

def test_alpn_and_sni_callback(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        sctx = server_context(ca, server_cert)
        sctx.set_alpn_protocols(["h2", "http/1.1"])
        seen: List[Any] = []

        def on_sni(sslobj: Any, name: Optional[str], ctx: ssl.SSLContext) -> None:
            seen.append((type(sslobj), name, ctx is sctx))

        sctx.sni_callback = on_sni
        cctx = client_context(ca)
        cctx.set_alpn_protocols(["h2"])
        server, srv, cli = await tls_pair(ca, server_cert, sctx=sctx, cctx=cctx)
        assert seen == [(ssl.SSLObject, "localhost", True)]
        for peer in (srv, cli):
            assert peer.transport is not None
            assert peer.transport.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


def test_a_server_contexts_key_log_is_written(tls_loop_factory, ca, server_cert, tmp_path):
    """A context with a key log file has _ssl's callback write each
    handshake's secrets (the C engine then hands the handshake to _ssl)."""
    keylog = tmp_path / "keys.log"

    async def main() -> None:
        sctx = server_context(ca, server_cert)
        sctx.keylog_filename = str(keylog)
        server, srv, cli = await tls_pair(ca, server_cert, lambda: Peer(echo=True), sctx=sctx)
        assert cli.transport is not None
        cli.transport.write(b"ping")
        assert await cli.received(4) == b"ping"
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())
    assert "SERVER_HANDSHAKE_TRAFFIC_SECRET" in keylog.read_text()


def test_client_certificate_reaches_the_server(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        sctx = server_context(ca, server_cert)
        sctx.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(sctx)
        cctx = client_context(ca)
        ca.issue_cert("client.example").configure_cert(cctx)
        server, srv, cli = await tls_pair(ca, server_cert, sctx=sctx, cctx=cctx)
        assert srv.transport is not None
        peercert = srv.transport.get_extra_info("peercert")
        assert ("DNS", "client.example") in peercert["subjectAltName"]
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


def test_untrusted_certificate_fails_verification(tls_loop_factory, ca, server_cert):
    # Made before the loop runs: a key pair takes seconds under valgrind, not
    # the loop's time to count.
    stranger = ssl.create_default_context(cafile=None)
    stranger.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Peer, "127.0.0.1", 0, ssl=server_context(ca, server_cert))
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await loop.create_connection(Peer, "127.0.0.1", port, ssl=stranger,
                                             server_hostname="localhost")
            wrong_name = client_context(ca)
            with pytest.raises(ssl.SSLCertVerificationError) as mismatch:
                await loop.create_connection(Peer, "127.0.0.1", port, ssl=wrong_name,
                                             server_hostname="other.example")
        finally:
            server.close()
            await server.wait_closed()
        return info.value, mismatch.value

    handled: List[dict] = []
    exc, mismatch = run(tls_loop_factory, main(), lambda loop, ctx: handled.append(ctx))
    assert exc.verify_code == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert "certificate verify failed" in str(exc) and exc.reason == "CERTIFICATE_VERIFY_FAILED"
    assert mismatch.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    assert "other.example" in mismatch.verify_message


# -- bad peers ---------------------------------------------------------------------------

async def raw_connect(port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    return sock


async def read_to_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    got = []
    while True:
        try:
            chunk = await loop.sock_recv(sock, 65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        got.append(chunk)
    return b"".join(got)


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",   # a ClientHello record with a broken body
    b"\x16\x03\x01\xff\xff" + b"\0" * 100,          # a record longer than the limit
])
def test_garbage_instead_of_a_client_hello(tls_loop_factory, ca, server_cert, garbage):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        made: List[Peer] = []
        server = await loop.create_server(lambda: made.append(Peer()) or made[-1], "127.0.0.1", 0,
                                          ssl=server_context(ca, server_cert))
        port = server.sockets[0].getsockname()[1]
        sock = await raw_connect(port)
        await loop.sock_sendall(sock, garbage)
        reply = await read_to_eof(sock)  # an alert at most, then the server hangs up
        assert len(reply) < 100
        sock.close()
        # The server lives on: a real client still gets served.
        _, cli = await loop.create_connection(Peer, "127.0.0.1", port, ssl=client_context(ca),
                                              server_hostname="localhost")
        await cli.made
        assert cli.transport is not None
        await made[-1].made
        cli.transport.close()
        await cli.done
        assert len(made) == 2 and made[0].events == []  # the garbage's protocol never connected
        server.close()
        await server.wait_closed()

    run(tls_loop_factory, main(), lambda loop, ctx: None)


def test_server_handshake_timeout_hangs_up_on_a_silent_client(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Peer, "127.0.0.1", 0, ssl=server_context(ca, server_cert),
                                          ssl_handshake_timeout=0.2)
        port = server.sockets[0].getsockname()[1]
        sock = await raw_connect(port)
        assert await read_to_eof(sock) == b""
        sock.close()
        server.close()
        await server.wait_closed()

    run(tls_loop_factory, main(), lambda loop, ctx: None)


# -- a TLS listener's connections (the C loop accepts them in C, with no Task each) --------

TLS_REQUEST = contextvars.ContextVar("TLS_REQUEST", default="unset")


def _tls_listener_sees(factory: Callable[[], asyncio.AbstractEventLoop], ca: Any,
                       cert: Any) -> List[Any]:
    """What a TLS server's protocols see over a few concurrent and sequential
    clients, the second one's protocol factory failing: the context each
    callback runs in, what the transport says by connection_made, the order
    of the events, and what each client got."""
    sctx, cctx = server_context(ca, cert), client_context(ca)

    async def client(port: int, payload: bytes) -> Any:
        loop = asyncio.get_running_loop()
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=cctx, server_hostname="localhost")
        except (OSError, ssl.SSLError) as exc:  # the connection whose factory failed
            return f"refused: {type(exc).__name__}"
        writer.write(payload)
        data = await reader.read(100)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        await asyncio.sleep(0)
        assert loop.is_running()
        return data

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        seen: List[Any] = []
        lost: List[asyncio.Future] = []
        count = [0]

        class Echo(asyncio.Protocol):
            def __init__(self) -> None:
                count[0] += 1
                self.number = count[0]
                if self.number == 2:
                    raise RuntimeError("no protocol for you")
                seen.append(("factory", self.number, TLS_REQUEST.get()))
                TLS_REQUEST.set(f"made {self.number}")
                self.done = loop.create_future()
                lost.append(self.done)

            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                seen.append(("made", self.number, TLS_REQUEST.get(),
                             transport.get_extra_info("ssl_object") is not None,
                             transport.get_extra_info("cipher") is not None,
                             transport.get_extra_info("peercert"),
                             transport.get_extra_info("peername")[0],
                             transport.get_extra_info("sockname") == address,
                             transport.get_extra_info("sslcontext") is sctx,
                             transport.is_closing()))
                TLS_REQUEST.set(f"connection_made {self.number}")

            def data_received(self, data: bytes) -> None:
                seen.append(("data", self.number, TLS_REQUEST.get()))
                self.transport.write(data)

            def eof_received(self) -> None:
                seen.append(("eof", self.number, TLS_REQUEST.get()))

            def connection_lost(self, exc: Any) -> None:
                seen.append(("lost", self.number, exc, self.transport.is_closing()))
                self.done.set_result(None)

        TLS_REQUEST.set("server")
        server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=sctx)
        address = server.sockets[0].getsockname()
        got = [await client(address[1], b"first"), await client(address[1], b"second")]
        got += await asyncio.gather(*[client(address[1], b"%d" % i) for i in range(8)])
        await asyncio.gather(*lost)
        server.close()
        await server.wait_closed()
        seen.append(("server after", TLS_REQUEST.get()))
        return [got, sorted(map(repr, seen))]

    return run(factory, main(), lambda loop, ctx: None)


@pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_tls_listeners_connections_are_the_stdlibs(tls_loop_factory, ca, server_cert):
    """Each connection's protocol is made in a copy of the server's context,
    told connection_made once its handshake is done (the handshake's extra
    info there), then its data, EOF and loss, as on stock asyncio; a failing
    protocol factory drops only its own connection."""
    mine = _tls_listener_sees(tls_loop_factory, ca, server_cert)
    assert mine == _tls_listener_sees(stdlib_loop, ca, server_cert)
    got = mine[0]
    assert got[0] == b"first" and got[1] in ("refused: ConnectionResetError", b"")
    assert got[2:] == [b"%d" % i for i in range(8)]


def test_a_loop_that_makes_its_own_tls_transports_is_asked(tls_loop_factory, ca, server_cert):
    """A loop whose _make_ssl_transport is replaced has it called for each
    connection a TLS listener accepts, as stock asyncio does."""
    calls: List[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        own = loop._make_ssl_transport

        def make_ssl_transport(*args: Any, **kwargs: Any) -> Any:
            calls.append((kwargs.get("server_side"), kwargs.get("ssl_handshake_timeout")))
            return own(*args, **kwargs)

        loop._make_ssl_transport = make_ssl_transport
        server, srv, cli = await tls_pair(ca, server_cert, lambda: Peer(echo=True))
        assert cli.transport is not None
        cli.transport.write(b"ping")
        assert await cli.received(4) == b"ping"
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())
    assert sorted(calls) == [(False, None), (True, None)]  # the client's, then the server's


def test_a_tls_listener_in_debug_mode_reports_a_failed_handshake(tls_loop_factory, ca, server_cert):
    """In debug mode (which the C loop serves through the stdlib's path) a
    client that is not TLS makes the server log the failed handshake, as
    stock asyncio does."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 60.0
        made: List[Peer] = []
        server = await loop.create_server(lambda: made.append(Peer()) or made[-1], "127.0.0.1", 0,
                                          ssl=server_context(ca, server_cert))
        sock = await raw_connect(server.sockets[0].getsockname()[1])
        await loop.sock_sendall(sock, b"GET / HTTP/1.0\r\n\r\n")
        await read_to_eof(sock)
        sock.close()
        server.close()
        await server.wait_closed()
        assert made[0].events == []

    run(tls_loop_factory, main(), lambda loop, ctx: None)


def test_client_handshake_timeout_raises_connection_aborted(tls_loop_factory, ca):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        silent: List[socket.socket] = []
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        try:
            with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer than"):
                await loop.create_connection(Peer, "127.0.0.1", port, ssl=client_context(ca),
                                             server_hostname="localhost", ssl_handshake_timeout=0.2)
        finally:
            listener.close()
            for s in silent:
                s.close()

    run(tls_loop_factory, main(), lambda loop, ctx: None)


def test_timeouts_must_be_positive(tls_loop_factory, ca):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        for name in ("ssl_handshake_timeout", "ssl_shutdown_timeout"):
            if name == "ssl_shutdown_timeout" and not NEW_SSLPROTO:
                continue
            with pytest.raises(ValueError, match=f"{name} should be a positive number"):
                await loop.start_tls(transport, asyncio.Protocol(), client_context(ca),
                                     server_hostname="localhost", **{name: 0})
        transport.close()
        b.close()

    run(tls_loop_factory, main())


def test_peer_gone_mid_handshake_fails_the_client(tls_loop_factory, ca):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.setblocking(False)

        async def accept_and_drop() -> None:
            conn, _ = await loop.sock_accept(listener)
            await loop.sock_recv(conn, 65536)  # the ClientHello
            conn.close()

        task = asyncio.ensure_future(accept_and_drop())
        with pytest.raises(ConnectionResetError):
            await loop.create_connection(Peer, "127.0.0.1", port, ssl=client_context(ca),
                                         server_hostname="localhost")
        await task
        listener.close()

    run(tls_loop_factory, main(), lambda loop, ctx: None)


# -- closing ----------------------------------------------------------------------------

def test_close_sends_close_notify_and_the_peer_sees_eof(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert)
        assert cli.transport is not None and srv.transport is not None
        cli.transport.write(b"last words")
        cli.transport.close()
        assert cli.transport.is_closing()
        cli.transport.write(b"dropped")  # after close: ignored, as the stdlib does
        assert await srv.done is None
        assert srv.data() == b"last words"
        assert srv.events == ["made", "eof", "lost:None"]
        assert await cli.done is None
        assert cli.events == ["made", "eof", "lost:None"]  # the server's close_notify came back
        server.close()
        await server.wait_closed()

    run(tls_loop_factory, main())


def test_a_transport_closed_twice_raises_as_the_stdlibs(tls_loop_factory, ca, server_cert):
    """A second close() lets go of the TLS protocol, as the stdlib's
    transport does: every call that needs it then raises AttributeError,
    never worse."""
    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert)
        transport = cli.transport
        assert transport is not None
        transport.close()
        transport.close()
        # (what this Python's stdlib transport has: before 3.11 fewer of them)
        calls = {"write": (b"x",), "writelines": ([b"x"],), "pause_reading": (),
                 "resume_reading": (), "is_reading": (), "get_write_buffer_size": (),
                 "get_write_buffer_limits": (), "set_write_buffer_limits": (),
                 "get_read_buffer_size": (), "get_read_buffer_limits": (),
                 "set_read_buffer_limits": (), "get_extra_info": ("peername",),
                 "get_protocol": ()}
        for name, args in calls.items():
            method = getattr(transport, name, None)
            if method is None:
                continue
            with pytest.raises(AttributeError, match="'NoneType' object has no attribute"):
                method(*args)
        if "_protocol_paused" in dir(type(transport)):
            with pytest.raises(AttributeError, match="'NoneType' object has no attribute"):
                transport._protocol_paused
        transport.abort()  # nothing left to abort: no error
        assert transport.is_closing()
        await cli.done
        server.close()
        await server.wait_closed()

    run(tls_loop_factory, main())


def test_server_closes_first(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert)
        assert srv.transport is not None
        srv.transport.write(b"bye")
        srv.transport.close()
        assert await cli.done is None
        assert cli.data() == b"bye"
        assert cli.events == ["made", "eof", "lost:None"]
        assert await srv.done is None
        server.close()
        await server.wait_closed()

    run(tls_loop_factory, main())


def test_abort_drops_everything_and_the_peer_sees_a_bare_eof(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert)
        assert cli.transport is not None
        cli.transport.abort()
        assert cli.transport.is_closing()
        assert await cli.done is None
        assert cli.events == ["made", "lost:None"]
        await srv.done
        assert srv.events[0] == "made" and srv.events[-1].startswith("lost:")
        server.close()
        await server.wait_closed()

    run(tls_loop_factory, main())


def test_shutdown_timeout_when_the_peer_never_answers_close_notify(tls_loop_factory, ca, server_cert):
    if not NEW_SSLPROTO:
        pytest.skip("ssl_shutdown_timeout is new in 3.11")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        sctx = server_context(ca, server_cert)
        peer_sock: List[socket.socket] = []

        async def tls_server_that_stops() -> None:
            # A TLS server driven by hand: handshakes, then never reads again.
            conn, _ = await loop.sock_accept(listener)
            peer_sock.append(conn)
            _, outgoing = await server_handshake_by_hand(conn, sctx)
            await loop.sock_sendall(conn, outgoing.read())

        task = asyncio.ensure_future(tls_server_that_stops())
        transport, cli = await loop.create_connection(Peer, "127.0.0.1", port, ssl=client_context(ca),
                                                      server_hostname="localhost",
                                                      ssl_shutdown_timeout=0.2)
        await task
        transport.close()
        exc = await cli.done
        assert exc is None or isinstance(exc, (TimeoutError, asyncio.TimeoutError))
        for s in peer_sock:
            s.close()
        listener.close()

    run(tls_loop_factory, main(), lambda loop, ctx: None)


# -- flow control --------------------------------------------------------------------------

def test_pause_and_resume_reading(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert)
        assert srv.transport is not None and cli.transport is not None
        srv.transport.pause_reading()
        assert not srv.transport.is_reading()
        cli.transport.write(b"held back")
        for _ in range(20):
            await asyncio.sleep(0)
        assert srv.data() == b""
        srv.transport.resume_reading()
        assert srv.transport.is_reading()
        assert await srv.received(9) == b"held back"
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


def test_write_flow_control_pauses_and_resumes_the_writer(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert)
        assert srv.transport is not None and cli.transport is not None
        # Small, fixed kernel buffers, and a blob many times what they hold:
        # back-pressure is certain whatever the machine's tunables.
        held = pin_buffers(srv.transport.get_extra_info("socket"),
                           cli.transport.get_extra_info("socket"))
        blob = os.urandom(max(4 << 20, 16 * held))
        srv.transport.set_write_buffer_limits(high=64 * 1024)
        assert srv.transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        cli.transport.pause_reading()
        # The first writes fill the socket transport; what follows waits as
        # records in the TLS layer until it passes the high-water mark.
        for i in range(0, len(blob), 65536):
            srv.transport.write(blob[i:i + 65536])
        assert srv.paused == 1
        assert srv.transport.get_write_buffer_size() > 0
        cli.transport.resume_reading()
        got = await cli.received(len(blob))
        assert got == blob
        while srv.resumed == 0:
            await asyncio.sleep(0.001)
        assert srv.resumed == 1 and srv.transport.get_write_buffer_size() == 0
        with pytest.raises(ValueError):
            srv.transport.set_write_buffer_limits(high=1, low=2)
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


def test_sendfile_falls_back_to_writes(tls_loop_factory, ca, server_cert, tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / "blob"
    path.write_bytes(data)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, srv, cli = await tls_pair(ca, server_cert)
        with open(path, "rb") as f:
            assert await loop.sendfile(cli.transport, f) == len(data)
        assert await srv.received(len(data)) == data
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


# -- start_tls -------------------------------------------------------------------------------

def test_start_tls_upgrades_both_sides(tls_loop_factory, ca, server_cert):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        upgraded = loop.create_future()

        class Plain(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                assert data == b"STARTTLS"
                self.transport.write(b"OK")
                app = Peer()
                task = loop.create_task(loop.start_tls(self.transport, app,
                                                       server_context(ca, server_cert),
                                                       server_side=True))
                task.add_done_callback(lambda t: upgraded.set_result((t.result(), app)))

        server = await loop.create_server(Plain, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, plain_client = await loop.create_connection(Peer, "127.0.0.1", port)
        transport.write(b"STARTTLS")
        assert await plain_client.received(2) == b"OK"  # the ClientHello must come after
        cli = BufferedPeer(size=100)
        tls = await loop.start_tls(transport, cli, client_context(ca), server_hostname="localhost")
        assert not cli.made.done()  # start_tls never calls connection_made
        cli.transport = tls
        tls.set_protocol(cli)
        assert tls.get_protocol() is cli
        tls.write(b"secret" * 100)
        srv_transport, srv = await upgraded
        assert await srv.received(600) == b"secret" * 100
        assert srv_transport.get_extra_info("ssl_object").server_side
        srv_transport.write(b"reply")
        assert await cli.received(5) == b"reply"
        tls.close()
        await cli.done
        server.close()
        await server.wait_closed()

    run(tls_loop_factory, main())


def _stock_start_tls_takes_buffered_data() -> bool:
    # gh-142352 (in 3.14.x and later): a server's start_tls hands what its
    # StreamReader buffered to the TLS protocol.  zerosock's engines always do.
    import inspect
    from asyncio import base_events

    return "_stream_reader" in inspect.getsource(base_events.BaseEventLoop.start_tls)


def test_start_tls_takes_the_hello_a_stream_reader_buffered(tls_loop_factory, ca, server_cert):
    probe = tls_loop_factory()
    c_engine = is_c_loop(probe)
    probe.close()
    if not c_engine and not _stock_start_tls_takes_buffered_data():
        pytest.skip("this Python's start_tls drops what the StreamReader buffered (gh-142352)")

    async def main() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # The client's hello is in the reader's buffer before the upgrade.
            await reader._wait_for_data("test")  # type: ignore[attr-defined]
            assert reader._buffer  # type: ignore[attr-defined]
            await writer.start_tls(server_context(ca, server_cert))
            assert await reader.readline() == b"ping\n"
            writer.write(b"pong\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await writer.start_tls(client_context(ca), server_hostname="localhost")
        writer.write(b"ping\n")
        assert await reader.readline() == b"pong\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    handled: List[dict] = []
    run(tls_loop_factory, main(), lambda loop, ctx: handled.append(ctx))
    assert handled == []


def _failed_verification_is_freed(factory: Callable[[], asyncio.AbstractEventLoop],
                                   ca: Any, server_cert: Any) -> bool:
    """Whether the TLS protocol of a connection whose certificate check
    failed is freed by reference counting alone (the garbage collector off)."""
    import gc
    import weakref

    stranger = ssl.create_default_context()
    stranger.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())
    protocols: List[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        make_ssl_transport = loop._make_ssl_transport  # type: ignore[attr-defined]

        def remember(*args: Any, **kwargs: Any) -> Any:
            app_transport = make_ssl_transport(*args, **kwargs)
            if not kwargs.get("server_side"):
                protocols.append(weakref.ref(app_transport._ssl_protocol))
            return app_transport

        loop._make_ssl_transport = remember  # type: ignore[attr-defined]
        server = await loop.create_server(Peer, "127.0.0.1", 0, ssl=server_context(ca, server_cert))
        port = server.sockets[0].getsockname()[1]
        try:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=stranger,
                                         server_hostname="localhost")
        except ssl.SSLCertVerificationError:
            pass
        finally:
            server.close()
            await server.wait_closed()

    gc.collect()
    gc.disable()
    try:
        run(factory, main())
        assert len(protocols) == 1
        return protocols[0]() is None
    finally:
        gc.enable()


def test_failed_verification_leaves_no_reference_cycle(tls_loop_factory, ca, server_cert):
    # As the stdlib's since gh-159049 (3.14.x, 3.15): where stock asyncio
    # still keeps the cycle, there is nothing to match.
    if not _failed_verification_is_freed(asyncio.SelectorEventLoop, ca, server_cert):
        pytest.skip("stock asyncio of this Python keeps the failed connection in a cycle")
    assert _failed_verification_is_freed(tls_loop_factory, ca, server_cert)


def test_start_tls_inside_tls(tls_loop_factory, ca, server_cert):
    # The outer layer decrypts into the buffer the inner one lends it
    # (get_buffer/buffer_updated), many records a read.
    up, down = os.urandom(100_000), os.urandom(50_000)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, srv, cli = await tls_pair(ca, server_cert)
        inner_srv, inner_cli = Peer(), BufferedPeer(size=5000)
        srv_tls, cli_tls = await asyncio.gather(
            loop.start_tls(srv.transport, inner_srv, server_context(ca, server_cert),
                           server_side=True),
            loop.start_tls(cli.transport, inner_cli, client_context(ca),
                           server_hostname="localhost"))
        inner_srv.transport, inner_cli.transport = srv_tls, cli_tls
        assert cli_tls.get_extra_info("ssl_object") is not cli.transport.get_extra_info("ssl_object")
        cli_tls.write(up)
        assert hashlib.sha256(await inner_srv.received(len(up))).digest() == hashlib.sha256(up).digest()
        srv_tls.write(down)
        assert hashlib.sha256(await inner_cli.received(len(down))).digest() == hashlib.sha256(down).digest()
        cli_tls.close()
        assert await inner_cli.done is None
        assert await inner_srv.done is None
        assert inner_srv.events == ["eof", "lost:None"]
        server.close()
        await server.wait_closed()

    run(tls_loop_factory, main())


def test_start_tls_checks_its_arguments(tls_loop_factory, ca):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        with pytest.raises(TypeError, match="sslcontext is expected to be an instance"):
            await loop.start_tls(transport, asyncio.Protocol(), object())  # type: ignore[arg-type]
        transport.close()
        b.close()

    run(tls_loop_factory, main())


# -- how ciphertext is cut into reads -------------------------------------------------------

async def dribbling_tls_server(listener: socket.socket, sctx: ssl.SSLContext, cuts: List[int],
                               payload: bytes) -> bytes:
    """A TLS echo server by hand that sends each flight of records in chunks of ``cuts``
    sizes (cycled) with a loop turn between chunks; returns what it received."""
    loop = asyncio.get_running_loop()
    conn, _ = await loop.sock_accept(listener)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = sctx.wrap_bio(incoming, outgoing, server_side=True)
    turn = 0

    async def flush() -> None:
        nonlocal turn
        data = outgoing.read()
        while data:
            # At most ~500 pieces a flight, so slow loops (sanitizers) keep up.
            n = max(cuts[turn % len(cuts)], len(data) // 500)
            turn += 1
            await loop.sock_sendall(conn, data[:n])
            await asyncio.sleep(0)
            data = data[n:]

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            await flush()
            incoming.write(await loop.sock_recv(conn, 65536))
    await flush()
    got = b""
    while len(got) < len(payload):
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            chunk = await loop.sock_recv(conn, 65536)
            if not chunk:
                break
            incoming.write(chunk)
    obj.write(got)
    await flush()
    try:
        obj.unwrap()
    except ssl.SSLWantReadError:
        pass
    await flush()
    # Hang up only after the client's close_notify (or its hang-up): the
    # stdlib's TLS protocol drops plaintext still queued when the socket
    # closes under it.
    while await loop.sock_recv(conn, 65536):
        pass
    conn.close()
    return got


@settings(max_examples=fuzz_examples(15), deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=8),
       size=st.integers(min_value=1, max_value=40_000))
@pytest.mark.parametrize("buffered", [False, True], ids=["Protocol", "BufferedProtocol"])
def test_records_cut_anywhere_decrypt_whole(tls_loop_factory, ca, server_cert, buffered, cuts, size):
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        task = asyncio.ensure_future(dribbling_tls_server(
            listener, server_context(ca, server_cert), cuts, payload))
        make = (lambda: BufferedPeer(size=333)) if buffered else Peer
        transport, cli = await loop.create_connection(make, "127.0.0.1", port,
                                                      ssl=client_context(ca),
                                                      server_hostname="localhost")
        transport.write(payload)
        assert await task == payload
        assert await cli.received(len(payload)) == payload
        assert await cli.done is None
        assert cli.events == ["made", "eof", "lost:None"]
        listener.close()

    run(tls_loop_factory, main())


# -- how an established connection ends at the socket ------------------------------------

async def server_handshake_by_hand(conn: socket.socket, sctx: ssl.SSLContext
                                   ) -> Tuple[ssl.SSLObject, ssl.MemoryBIO]:
    """The server side of a handshake over memory BIOs on ``conn``: the
    SSLObject and its outgoing BIO, which may still hold the last flight."""
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = sctx.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        try:
            obj.do_handshake()
            return obj, outgoing
        except ssl.SSLWantReadError:
            if outgoing.pending:
                await loop.sock_sendall(conn, outgoing.read())
            incoming.write(await loop.sock_recv(conn, 65536))


async def handshaken_by_hand(listener: socket.socket, sctx: ssl.SSLContext,
                             greeting: bytes) -> socket.socket:
    """Accept one connection, handshake on it by hand and send ``greeting`` in
    one record: the socket, for the test to end the connection as it likes."""
    loop = asyncio.get_running_loop()
    conn, _ = await loop.sock_accept(listener)
    obj, outgoing = await server_handshake_by_hand(conn, sctx)
    obj.write(greeting)
    await loop.sock_sendall(conn, outgoing.read())
    return conn


@pytest.mark.parametrize("ending", ["reset", "bare-fin"])
def test_established_connection_ended_under_tls(tls_loop_factory, ca, server_cert, ending):
    # Where OpenSSL receives from the socket itself, the end of the stream and
    # a read error still reach the protocol as the stdlib reports them.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        task = asyncio.ensure_future(handshaken_by_hand(
            listener, server_context(ca, server_cert), b"hello"))
        transport, cli = await loop.create_connection(Peer, "127.0.0.1", port,
                                                      ssl=client_context(ca),
                                                      server_hostname="localhost")
        conn = await task
        assert await cli.received(5) == b"hello"
        if ending == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            conn.close()
            assert isinstance(await cli.done, ConnectionResetError)
            assert cli.events == ["made", "lost:ConnectionResetError"]
        else:
            conn.shutdown(socket.SHUT_WR)  # FIN without close_notify
            assert await cli.done is None
            assert cli.events == ["made", "eof", "lost:None"]
            conn.close()
        assert transport.is_closing()
        listener.close()

    run(tls_loop_factory, main(), lambda loop, ctx: None)


@pytest.mark.parametrize("how", ["abort", "failed_write"])
def test_resume_writing_that_ends_the_connection_ends_it_once(tls_loop_factory, ca, server_cert,
                                                              how):
    """resume_writing() aborting its TLS transport, or writing to a peer that
    has just reset the connection: connection_lost once, with the reset if
    one ended it, nothing logged.  It runs inside the socket transport's write
    path, where stock asyncio before CPython gh-156512 calls connection_lost
    a second time, and with None first.  (close() waits for the peer's
    close_notify, which tests/test_aio.py's socket version needs not.)"""
    errors: List[dict] = []

    async def main() -> Tuple[List[Optional[BaseException]], bool]:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        task = asyncio.ensure_future(handshaken_by_hand(
            listener, server_context(ca, server_cert), b"hello"))
        lost: List[Optional[BaseException]] = []

        class Ender(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def resume_writing(self) -> None:
                if how == "failed_write":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                    conn.close()  # a reset, which loopback delivers at once
                    self.transport.write(b"x")
                else:
                    self.transport.abort()

            def connection_lost(self, exc: Optional[BaseException]) -> None:
                lost.append(exc)

        transport, _ = await loop.create_connection(Ender, "127.0.0.1",
                                                    listener.getsockname()[1],
                                                    ssl=client_context(ca),
                                                    server_hostname="localhost")
        conn = await task
        pin_buffers(transport.get_extra_info("socket"), conn)
        transport.set_write_buffer_limits(high=16384, low=0)  # resumed when empty
        while transport.get_write_buffer_size() <= 16384:
            transport.write(b"x" * 65536)
        while not lost:  # the peer takes the records in, undecrypted
            try:
                conn.recv(1 << 20)
            except OSError:  # would block, or conn is closed
                pass
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        conn.close()
        listener.close()
        return lost, is_c_loop(loop)

    lost, c_loop = run(tls_loop_factory, main(), lambda loop, context: errors.append(context))
    if errors and not c_loop:
        pytest.xfail("stock asyncio's transports: CPython gh-156512")
    assert [type(exc) for exc in lost] == [
        ConnectionResetError if how == "failed_write" else type(None)]
    assert errors == []


class PausingPeer(Peer):
    """Pauses reading in every data_received and resumes a loop turn later."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        assert self.transport is not None
        self.transport.pause_reading()
        asyncio.get_running_loop().call_soon(self.transport.resume_reading)


@pytest.mark.parametrize("size", [100, 20_000, 1 << 20])
def test_pausing_between_every_read_loses_nothing(tls_loop_factory, ca, server_cert, size):
    # Ciphertext received but not yet decrypted when the application pauses
    # (in the engine's buffer or in OpenSSL's) is decrypted after it resumes.
    blob = os.urandom(size)

    async def main() -> None:
        server, srv, cli = await tls_pair(ca, server_cert, lambda: Peer(echo=True), PausingPeer)
        assert cli.transport is not None
        for i in range(0, size, 7000):
            cli.transport.write(blob[i:i + 7000])
        got = await cli.received(size)
        assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
        assert len(got) == size
        await close_all(server, cli, srv)

    run(tls_loop_factory, main())


# -- loops in threads -----------------------------------------------------------------------

def test_loops_in_threads_keep_their_ciphertext_apart(tls_loop_factory, ca, server_cert):
    # OpenSSL reads received ciphertext with the GIL released (_ssl's
    # do_handshake() and unwrap() release it): a loop in another thread must
    # not receive its own into memory a handshake here is still reading.
    sctx, cctx = server_context(ca, server_cert), client_context(ca)
    failures: List[str] = []

    async def connections(n: int) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Peer(echo=True), "127.0.0.1", 0, ssl=sctx)
        port = server.sockets[0].getsockname()[1]
        for _ in range(n):
            try:
                _, cli = await loop.create_connection(Peer, "127.0.0.1", port, ssl=cctx,
                                                      server_hostname="localhost")
                assert cli.transport is not None
                cli.transport.write(b"x" * 100)
                assert await cli.received(100) == b"x" * 100
                cli.transport.close()
                await cli.done
            except Exception as exc:  # any failure is the finding; keep going to count them
                failures.append(repr(exc))
        server.close()
        await server.wait_closed()

    def work() -> None:
        try:
            run(tls_loop_factory, connections(100))
        except BaseException as exc:
            failures.append(f"loop: {exc!r}")

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# -- leaks -------------------------------------------------------------------------------------

LEAK_CHILD = r"""
import asyncio, gc, json, os, ssl, sys, tempfile
sys.path.insert(0, sys.argv[1])
from _hardening import rss_bytes
import trustme
engine, handshakes, records = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from zerosock import _compat
aio = _compat.load_backend("c").aio
from zerosock import _aio_tls_c
_aio_tls_c._force_engine(engine)
ca = trustme.CA(); cert = ca.issue_cert("localhost")
sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); cert.configure_cert(sctx)
cctx = ssl.create_default_context(); ca.configure_trust(cctx)

class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(d)

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=sctx)
    port = server.sockets[0].getsockname()[1]

    async def connect_and_close():
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=cctx, server_hostname="localhost")
        w.write(b"x"); await r.readexactly(1)
        w.close(); await w.wait_closed()

    async def echo_records(n):
        # Pipelined, a hundred records a turn: a million take seconds, not minutes.
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=cctx, server_hostname="localhost")
        record = b"y" * 256
        for _ in range(-(-n // 100)):
            for _ in range(100):
                w.write(record)
            await r.readexactly(100 * 256)
        w.close(); await w.wait_closed()

    for _ in range(max(handshakes // 10, 20)):   # warm-up
        await connect_and_close()
    await echo_records(max(records // 10, 1000))
    gc.collect(); before = rss_bytes()
    for _ in range(handshakes):
        await connect_and_close()
    gc.collect(); mid = rss_bytes()
    await echo_records(records)
    gc.collect(); after = rss_bytes()
    server.close(); await server.wait_closed()
    print(json.dumps({"handshakes": mid - before, "records": after - mid}))

aio.run(main())
"""


@pytest.mark.leaks
@pytest.mark.c_extension
@pytest.mark.timeout(900)  # ZEROSOCK_LEAK_ITERATIONS=1000000: ~3 min an engine on 2 busy cores
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS from /proc")
@pytest.mark.parametrize("engine", ["openssl", "memorybio"])
def test_handshakes_and_records_do_not_leak(c_backend, engine):
    from _hardening import HERE, run_script, under_sanitizer
    from zerosock import _aio_tls_c
    if under_sanitizer():
        pytest.skip("AddressSanitizer's quarantine keeps freed memory resident")
    if _aio_tls_c.TLS_ENGINE == "stdlib":
        pytest.skip("this interpreter keeps the stdlib's TLS protocol")
    if engine == "openssl" and not _aio_tls_c._c_engine_available():
        pytest.skip("the OpenSSL engine is not available here")
    scale = int(os.environ.get("ZEROSOCK_LEAK_ITERATIONS", "200000"))
    handshakes, records = max(scale // 100, 500), max(scale, 10000)
    import json
    out = run_script(LEAK_CHILD, str(HERE), engine, str(handshakes), str(records), timeout=600)
    growth = json.loads(out.stdout.strip().splitlines()[-1])
    # One leaked SSL session or BIO per handshake would be kilobytes each.
    assert growth["handshakes"] < 4 * 1024 * 1024, growth
    assert growth["records"] < 2 * 1024 * 1024, growth
