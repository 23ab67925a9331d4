"""The TLS echo load generator: TLS 1.3 clients on a private event loop.

Each connection keeps one request in flight, as the plain echo generators
do.  The clients run on uvloop when it is installed (its TLS is the quickest
client at hand), else on asyncio, in the benchmark's own process; the server
is always another process.  The benchmark's certificate and key, under
``tls/``, exist for loopback benchmarks only.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import Any, List, Optional, Tuple

from ._common import LoadGenError, make_result

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls")
CERT = os.path.join(HERE, "server.pem")
KEY = os.path.join(HERE, "server.key")
CA = os.path.join(HERE, "ca.pem")


def server_context() -> ssl.SSLContext:
    """The servers' context: TLS 1.3 with the benchmark's certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(CERT, KEY)
    return ctx


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=CA)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class _Client(asyncio.Protocol):
    """One connection: sends a request when told, counts the echo back."""

    def __init__(self, gen: "TLSLoadGenerator") -> None:
        self.gen = gen
        self.transport: Any = None
        self.pending = 0      # bytes of the request in flight still to come back
        self.sent_at = 0.0
        self.lost: Optional[BaseException] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send(self) -> None:
        self.pending = self.gen.size
        self.sent_at = time.perf_counter()
        self.transport.write(self.gen.payload)

    def data_received(self, data: bytes) -> None:
        self.pending -= len(data)
        if self.pending < 0:
            self.lost = LoadGenError("the server sent more than it was sent")
            self.gen.wake()
        elif self.pending == 0:
            self.gen.completed(self)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.lost is None:
            self.lost = exc or LoadGenError("the server closed the connection")
        self.gen.wake()


class TLSLoadGenerator:
    """The load generators' interface (see ``_loadgen_py.LoadGenerator``) for
    the ``tls`` workload: echo over TLS, ``connections`` clients."""

    def __init__(self, mode: str, address: Any, connections: int = 1, size: int = 1) -> None:
        if mode != "tls":
            raise LoadGenError(f"the TLS generator runs the tls workload, not {mode!r}")
        if not isinstance(address, tuple):
            raise LoadGenError("TLS runs over IP loopback only, not a Unix socket")
        if connections < 1 or size < 1:
            raise LoadGenError("connections and size must be at least 1")
        self.address: Tuple[str, int] = address
        self.connections = connections
        self.size = size
        self.payload = b"x" * size
        self.loss_timeout = 5.0
        self._loop = _new_loop()
        self._clients: List[_Client] = []
        self._issuing = False
        self._max_ops: Optional[int] = None
        self._issued = 0
        self._ops = 0
        self._latencies: List[float] = []
        self._event: Optional[asyncio.Event] = None

    def connect(self, timeout: float = 5.0) -> None:
        async def one() -> _Client:
            _, client = await self._loop.create_connection(
                lambda: _Client(self), self.address[0], self.address[1], ssl=client_context(),
                server_hostname="localhost", ssl_handshake_timeout=max(timeout, 1.0))
            return client

        async def all_of_them() -> List[_Client]:
            return list(await asyncio.wait_for(
                asyncio.gather(*(one() for _ in range(self.connections))), timeout))

        try:
            self._clients = self._loop.run_until_complete(all_of_them())
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            raise LoadGenError(f"TLS connect to {self.address} failed: {exc!r}") from None

    def set_loss_timeout(self, seconds: float) -> None:
        self.loss_timeout = seconds

    def wake(self) -> None:
        if self._event is not None:
            self._event.set()

    def _may_issue(self) -> bool:
        return self._issuing and (self._max_ops is None or self._issued < self._max_ops)

    def completed(self, client: _Client) -> None:
        self._ops += 1
        self._latencies.append(time.perf_counter() - client.sent_at)
        if self._may_issue():
            self._issued += 1
            client.send()
        elif self._event is not None:
            self._event.set()

    def run(self, duration: float, max_ops: Optional[int] = None, drain: bool = True,
            drain_timeout: float = 5.0) -> Any:
        if not self._clients:
            raise LoadGenError("connect() first")
        self._ops = self._issued = 0
        self._latencies = []
        self._max_ops = max_ops

        async def measure() -> float:
            draining = drain
            self._event = asyncio.Event()
            self._issuing = True
            start = time.perf_counter()
            for client in self._clients:
                if client.pending == 0 and self._may_issue():
                    self._issued += 1
                    client.send()
            deadline = start + duration
            while self._may_issue() or (draining and self._in_flight()):
                failed = next((c.lost for c in self._clients if c.lost is not None), None)
                if failed is not None:
                    raise LoadGenError(f"a connection failed: {failed!r}")
                now = time.perf_counter()
                if now >= deadline:
                    self._issuing = False
                    if not draining or not self._in_flight():
                        break
                    deadline = now + drain_timeout
                    draining = False  # one grace period, then whatever came back
                self._event.clear()
                try:
                    await asyncio.wait_for(self._event.wait(), min(deadline - now, 0.05))
                except asyncio.TimeoutError:
                    pass
            self._issuing = False
            return time.perf_counter() - start

        cpu0 = time.process_time()
        seconds = self._loop.run_until_complete(measure())
        lat = sorted(self._latencies)
        latency = {}
        if lat:
            for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
                latency[name] = lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6
            latency["max"] = lat[-1] * 1e6
            latency["mean"] = sum(lat) / len(lat) * 1e6
        return make_result(ops=self._ops, nbytes=self._ops * self.size, seconds=seconds,
                           gen_cpu=time.process_time() - cpu0, inflight=self._in_flight(),
                           latency_us=latency)

    def _in_flight(self) -> int:
        return sum(1 for c in self._clients if c.pending)

    def close(self) -> None:
        for client in self._clients:
            if client.transport is not None:
                client.transport.abort()
        self._clients = []
        if not self._loop.is_closed():
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def __enter__(self) -> "TLSLoadGenerator":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
