"""The clients of the connection-scale workloads: many connections held open
(``conns``) and connections opened, used once and closed (``churn``).

They run on a private event loop in the benchmark's process (uvloop when it
is installed), and speak TLS through an ``SSLObject`` of their own so that a
session can be offered for resumption, which ``create_connection`` cannot do.
Sources are spread over loopback addresses so that ports never run out, and every
connection's echo is checked byte for byte.
"""

from __future__ import annotations

import asyncio
import random
import resource
import socket
import ssl
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from ._common import LoadGenError, make_result
from ._loadgen_tls import _new_loop, client_context

# Linux's IP_BIND_ADDRESS_NO_PORT (the socket module names it from 3.12):
# connect() picks the port, so a port is reused towards other destinations.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT",
                                  24 if sys.platform.startswith("linux") else None)
CONNECTS_IN_FLIGHT = 128  # the listeners' backlog is 1024: stay well under it
MAX_CONNECTIONS = 100_000
SERVER_NAME = "localhost"  # the name in the benchmark's certificate


def ephemeral_port_count(default: int = 16384) -> int:
    """How many local ports connect() can pick from, read from the kernel."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
        return high - low + 1
    except (OSError, ValueError):
        return default


def loopback_sources(connections: int) -> List[str]:
    """Enough loopback source addresses for ``connections`` concurrent
    connections to one listener (each address has the whole port range).

    On Linux they are taken from a /24 of 127.0.0.0/8 picked at random for
    each call.  A listener may get the port of one closed a moment ago, and
    the connections to that one sit in TIME_WAIT, which the kernel lets a
    new connection reuse only after a second: from the same addresses, the
    new connections would find every port taken."""
    per_address = max(1, ephemeral_port_count() * 3 // 4)  # a margin for other sockets
    needed = -(-connections // per_address)
    if not sys.platform.startswith("linux"):
        if needed > 1:
            raise LoadGenError(f"{connections} connections need {needed} loopback source "
                               "addresses; only Linux answers on all of 127.0.0.0/8")
        return ["127.0.0.1"]
    if needed > 250:
        raise LoadGenError(f"{connections} connections need {needed} loopback addresses")
    pick = random.SystemRandom()
    block = f"127.{pick.randrange(1, 255)}.{pick.randrange(0, 256)}"
    return [f"{block}.{i}" for i in range(1, needed + 1)]


def raise_fd_limit(needed: int) -> int:
    """Raise this process's descriptor limit to at least ``needed`` (the hard
    limit too when we may); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    want_hard = hard if hard == resource.RLIM_INFINITY or hard >= needed else needed
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, want_hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        raise LoadGenError(f"{needed} descriptors are needed and the limit is {hard} "
                           "(raise it with ulimit -n, or run as a user who may)") from None
    return needed


class _Conn(asyncio.Protocol):
    """One client connection: sends ``payload`` once connected (after the TLS
    handshake when ``tls``), and resolves ``echoed`` when it has all come back."""

    def __init__(self, payload: bytes, tls: Optional[ssl.SSLContext],
                 session: Optional[ssl.SSLSession], echoed: "asyncio.Future[None]") -> None:
        self.payload = payload
        self.echoed = echoed
        self.received = bytearray()
        self.transport: Any = None
        self.sslobj: Optional[ssl.SSLObject] = None
        self.handshaken = False
        if tls is not None:
            self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.sslobj = tls.wrap_bio(self.incoming, self.outgoing,
                                       server_hostname=SERVER_NAME, session=session)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.sslobj is None:
            transport.write(self.payload)
        else:
            self._handshake()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.transport.write(data)

    def _handshake(self) -> None:
        assert self.sslobj is not None
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        self.handshaken = True
        self.sslobj.write(self.payload)
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.echoed.done():
            return
        try:
            if self.sslobj is None:
                self.received += data
            else:
                self.incoming.write(data)
                if not self.handshaken:
                    self._handshake()
                while self.handshaken:
                    try:
                        self.received += self.sslobj.read(65536)
                    except ssl.SSLWantReadError:
                        break
                self._flush()
        except ssl.SSLError as exc:
            self.echoed.set_exception(LoadGenError(f"TLS failed: {exc!r}"))
            return
        if len(self.received) >= len(self.payload):
            if bytes(self.received) != self.payload:
                self.echoed.set_exception(LoadGenError("the echo differs from what was sent"))
            else:
                self.echoed.set_result(None)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if not self.echoed.done():
            self.echoed.set_exception(LoadGenError(
                f"the server closed a connection before its echo ({exc!r})"))

    def close(self) -> None:
        """Close as a client should: TLS's close_notify first, then FIN."""
        if self.sslobj is not None and self.handshaken:
            try:
                self.sslobj.unwrap()
            except ssl.SSLError:
                pass  # the peer's close_notify is not waited for
            self._flush()
        self.transport.close()


class _Client:
    """What both workloads share: the loop, the sources, the TLS context."""

    def __init__(self, address: Tuple[str, int], size: int, tls: bool,
                 sources: List[str]) -> None:
        if not isinstance(address, tuple):
            raise LoadGenError("the connection workloads run over IP loopback, "
                               "not a Unix socket")
        self.address = address
        self.payload = bytes(i & 0xFF for i in range(size))
        self.tls = client_context() if tls else None
        self.family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sources = sources if self.family == socket.AF_INET else []
        self.loop = _new_loop()
        self._next_source = 0

    def _socket(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.sources:
                if IP_BIND_ADDRESS_NO_PORT is not None:
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self.sources[self._next_source], 0))
                self._next_source = (self._next_source + 1) % len(self.sources)
        except BaseException:
            sock.close()
            raise
        return sock

    async def open_one(self, session: Optional[ssl.SSLSession] = None) -> _Conn:
        """A connection that has echoed the payload once."""
        sock = self._socket()
        try:
            await self.loop.sock_connect(sock, self.address)
        except BaseException:
            sock.close()
            raise
        echoed: "asyncio.Future[None]" = self.loop.create_future()
        _, conn = await self.loop.create_connection(
            lambda: _Conn(self.payload, self.tls, session, echoed), sock=sock)
        try:
            await echoed
        except BaseException:
            conn.transport.abort()
            raise
        return conn

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()


class ConnectionHolder(_Client):
    """Opens ``count`` connections, each echoing once, and holds them open
    until :meth:`close`."""

    def __init__(self, address: Tuple[str, int], size: int = 64, tls: bool = False) -> None:
        super().__init__(address, size, tls, [])
        self.conns: List[_Conn] = []

    def open(self, count: int, timeout: float) -> float:
        """Open ``count`` more connections; returns the seconds it took.
        Raises LoadGenError if any connection fails or the time runs out."""
        if not 1 <= count <= MAX_CONNECTIONS:
            raise LoadGenError(f"connections must be 1..{MAX_CONNECTIONS:,}, not {count}")
        total = len(self.conns) + count
        raise_fd_limit(total + 256)
        self.sources = loopback_sources(total) if self.family == socket.AF_INET else []
        gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)

        async def one() -> None:
            async with gate:
                self.conns.append(await self.open_one())

        async def all_of_them() -> None:
            tasks = [self.loop.create_task(one()) for _ in range(count)]
            try:
                await asyncio.wait_for(asyncio.gather(*tasks), timeout)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        start = time.perf_counter()
        try:
            self.loop.run_until_complete(all_of_them())
        except asyncio.TimeoutError:
            raise LoadGenError(f"{len(self.conns)} of {total} connections open after "
                               f"{timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise LoadGenError(f"a connection failed after {len(self.conns)}: {exc!r}") from None
        return time.perf_counter() - start

    def still_open(self) -> int:
        """How many held connections the server has not closed."""
        self.loop.run_until_complete(asyncio.sleep(0))
        return sum(1 for c in self.conns if not c.transport.is_closing())

    def close(self) -> None:
        for conn in self.conns:
            conn.transport.abort()
        self.conns = []
        super().close()

    def __enter__(self) -> "ConnectionHolder":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Churner(_Client):
    """``clients`` loops, each connecting, echoing once and closing, again and again."""

    def __init__(self, address: Tuple[str, int], clients: int = 10, size: int = 64,
                 tls: bool = False, resume: bool = False) -> None:
        if resume and not tls:
            raise LoadGenError("session resumption needs TLS")
        # a wide spread: closed connections hold their ports in TIME_WAIT
        super().__init__(address, size, tls, [f"127.0.0.{i}" for i in range(2, 250)])
        self.clients = clients
        self.resume = resume
        self.session: Optional[ssl.SSLSession] = None
        self.resumed = 0

    def run(self, duration: float, max_conns: Optional[int] = None) -> Dict[str, Any]:
        """Churn for ``duration`` seconds or ``max_conns`` connections, whichever
        comes first; every connection started is finished and counted."""
        raise_fd_limit(self.clients + 256)
        latencies: List[float] = []
        started = [0]
        deadline = time.perf_counter() + duration

        async def one_client() -> None:
            while time.perf_counter() < deadline and (max_conns is None
                                                      or started[0] < max_conns):
                started[0] += 1
                t0 = time.perf_counter()
                conn = await self.open_one(self.session if self.resume else None)
                if conn.sslobj is not None:
                    if conn.sslobj.session_reused:
                        self.resumed += 1
                    if self.resume:
                        self.session = conn.sslobj.session
                conn.close()
                latencies.append(time.perf_counter() - t0)

        async def all_of_them() -> float:
            start = time.perf_counter()
            if self.resume and self.session is None:
                await one_client_once()
            await asyncio.gather(*(one_client() for _ in range(self.clients)))
            return time.perf_counter() - start

        async def one_client_once() -> None:
            conn = await self.open_one()
            assert conn.sslobj is not None
            self.session = conn.sslobj.session
            conn.close()

        cpu0 = time.process_time()
        try:
            seconds = self.loop.run_until_complete(
                asyncio.wait_for(all_of_them(), duration + 60.0))
        except asyncio.TimeoutError:
            raise LoadGenError("connections stopped completing") from None
        except (OSError, ssl.SSLError) as exc:
            raise LoadGenError(f"a connection failed after {len(latencies)}: {exc!r}") from None
        lat = sorted(latencies)
        latency = {}
        if lat:
            for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
                latency[name] = lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6
            latency["max"] = lat[-1] * 1e6
        result = make_result(ops=len(lat), nbytes=len(lat) * len(self.payload),
                             seconds=seconds, gen_cpu=time.process_time() - cpu0,
                             latency_us=latency)
        result["resumed"] = self.resumed
        self.resumed = 0
        return result
