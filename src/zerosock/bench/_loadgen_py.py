"""The load generator in pure Python, for installs without the C extension.

The same behaviour and results as ``zerosock._loadgen_c.LoadGenerator`` (one
thread, non-blocking sockets, byte-verified echo), but it costs far more CPU
per request than any server it drives, so its figures measure itself: the
benchmark labels them as such.
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time
from typing import Any, Dict, List, Optional

from ._common import (UDP_HEADER, UDP_LOSS_SECONDS, Address, LoadGenError, check_request,
                      make_result, request_for)

_SLACK = 256
HTTP_HEAD_MAX = 16384  # the longest response head accepted, as in the C generator
_RBUF = 256 * 1024
_SEQ = struct.Struct("<Q")


def now() -> float:
    return time.monotonic()


def _pattern(length: int) -> bytes:
    # the same xorshift bytes as the C generator, so both send alike
    x = 2463534242
    out = bytearray(length)
    for i in range(length):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = x >> 24
    return bytes(out)


class _Conn:
    __slots__ = ("sock", "index", "active", "sent", "received", "offset", "seq", "start",
                 "request", "writing", "head", "in_body", "body_left")

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index
        self.active = False
        self.sent = 0
        self.received = 0
        self.offset = 0
        self.seq = 0
        self.start = 0.0
        self.request = memoryview(b"")
        self.writing = False
        self.head = bytearray()  # HTTP: a response head split across reads
        self.in_body = False
        self.body_left = 0


class LoadGenerator:
    """Pure-Python twin of the C ``LoadGenerator``: same arguments, same results."""

    kind = "python"

    def __init__(self, mode: str, address: Address, connections: int = 1,
                 size: int = 1024, request: Optional[bytes] = None) -> None:
        canned = request_for(mode, address, request)
        if mode == "http":
            size = len(canned)
        check_request(mode, connections, size)
        self.mode = mode
        self.address = address
        self.connections = connections
        self.size = size
        self._pattern = memoryview(canned if mode == "http" else _pattern(size + _SLACK))
        self._rbuf = bytearray(_RBUF)
        self._rview = memoryview(self._rbuf)
        self._sel: Optional[selectors.BaseSelector] = None
        self._conns: List[_Conn] = []
        self._issue = False
        self._max_ops = 0
        self._issued = 0
        self._inflight = 0
        self._seq = 0
        self._stats: Dict[str, Any] = {}
        self._latencies: List[float] = []
        self._loss_timeout = UDP_LOSS_SECONDS
        self.reset_stats()

    # -- set-up --

    def _family(self) -> int:
        if isinstance(self.address, str):
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET

    def connect(self, timeout: float = 5.0) -> None:
        if self._sel is not None:
            raise LoadGenError("already connected")
        self._sel = selectors.DefaultSelector()
        kind = socket.SOCK_DGRAM if self.mode == "udp" else socket.SOCK_STREAM
        family = self._family()
        deadline = time.monotonic() + timeout
        try:
            for i in range(self.connections):
                sock = socket.socket(family, kind)
                conn = _Conn(sock, i)
                self._conns.append(conn)
                if kind == socket.SOCK_STREAM and family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                sock.connect(self.address)
                sock.setblocking(False)
                self._sel.register(sock, selectors.EVENT_READ, conn)
        except socket.timeout:
            raise LoadGenError(f"connecting to {self.address!r}: timed out") from None
        except OSError as exc:
            raise LoadGenError(f"connecting to {self.address!r}: {exc}") from None

    def set_loss_timeout(self, seconds: float) -> None:
        """How long a UDP request waits for its reply before it counts as lost."""
        self._loss_timeout = seconds if seconds > 0 else UDP_LOSS_SECONDS

    def close(self) -> None:
        for conn in self._conns:
            conn.sock.close()
        self._conns = []
        if self._sel is not None:
            self._sel.close()
            self._sel = None

    def __enter__(self) -> "LoadGenerator":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the request cycle --

    def reset_stats(self) -> None:
        self._stats = {"ops": 0, "bytes": 0, "lost": 0, "stale": 0}
        self._latencies = []
        self._issued = 0

    def _may_issue(self) -> bool:
        return self._issue and self._issued < self._max_ops

    def _interest(self, conn: _Conn, writing: bool) -> None:
        if conn.writing != writing:
            assert self._sel is not None
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
            self._sel.modify(conn.sock, events, conn)
            conn.writing = writing

    def _start(self, conn: _Conn) -> None:
        self._seq += 1
        conn.active = True
        conn.sent = conn.received = 0
        conn.seq = self._seq
        conn.offset = 0 if self.mode == "http" else self._seq * 37 % _SLACK
        conn.head = bytearray()
        conn.in_body = False
        conn.body_left = 0
        self._issued += 1
        self._inflight += 1
        request = self._pattern[conn.offset:conn.offset + self.size]
        if self.mode == "udp":
            request = memoryview(_SEQ.pack(conn.seq) + bytes(request[UDP_HEADER:]))
        conn.request = request
        conn.start = time.monotonic()
        self._send_more(conn)

    def _send_more(self, conn: _Conn) -> None:
        sock = conn.sock
        budget = 256 * 1024
        while True:
            if conn.sent == self.size:
                if self.mode != "stream":
                    break
                conn.active = False
                self._inflight -= 1
                self._stats["ops"] += 1
                self._stats["bytes"] += self.size
                if not self._may_issue():
                    break
                # a fast reader keeps the socket writable: yield to the clock now and then
                yield_now = self.size >= budget
                budget = 0 if yield_now else budget - self.size
                self._start_quietly(conn)
                if yield_now:
                    break
            try:
                sent = sock.send(conn.request[conn.sent:])
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                raise LoadGenError("server not listening (ECONNREFUSED)") from None
            except (BrokenPipeError, ConnectionResetError):
                raise LoadGenError("the server closed the connection (send)") from None
            conn.sent += sent
        self._interest(conn, conn.active and conn.sent < self.size)

    def _start_quietly(self, conn: _Conn) -> None:
        # the next stream chunk, without writing it yet
        self._seq += 1
        conn.active = True
        conn.sent = 0
        conn.seq = self._seq
        conn.offset = self._seq * 37 % _SLACK
        conn.request = self._pattern[conn.offset:conn.offset + self.size]
        self._issued += 1
        self._inflight += 1

    def _record(self, conn: _Conn, nbytes: Optional[int] = None) -> None:
        self._latencies.append(time.monotonic() - conn.start)
        self._stats["ops"] += 1
        self._stats["bytes"] += self.size if nbytes is None else nbytes
        conn.active = False
        self._inflight -= 1

    def _on_readable(self, conn: _Conn) -> None:
        sock = conn.sock
        if self.mode == "udp":
            try:
                n = sock.recv_into(self._rbuf)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                raise LoadGenError("server not listening (ECONNREFUSED)") from None
            if n < UDP_HEADER:
                raise LoadGenError("reply datagram shorter than the request")
            (seq,) = _SEQ.unpack_from(self._rbuf)
            if not conn.active or seq != conn.seq:
                self._stats["stale"] += 1
                return
            if n != self.size or self._rview[:n] != conn.request:
                raise LoadGenError(f"reply datagram differs from the request "
                                   f"(connection {conn.index}, {n} of {self.size} bytes)")
            self._record(conn)
            if self._may_issue():
                self._start(conn)
            return
        want = _RBUF
        if self.mode == "echo" and conn.active:
            want = min(self.size - conn.received, _RBUF)
        try:
            n = sock.recv_into(self._rbuf, want)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            raise LoadGenError("the server reset the connection") from None
        if n == 0:
            raise LoadGenError("the server closed the connection")
        if self.mode == "http":
            self._http_input(conn, self._rview[:n])
            return
        if self.mode == "stream" or not conn.active:
            raise LoadGenError(f"the server sent {n} bytes nobody asked for "
                               f"(connection {conn.index})")
        if conn.received + n > conn.sent:
            raise LoadGenError(f"the server replied with bytes not yet sent "
                               f"(connection {conn.index})")
        expected = conn.request[conn.received:conn.received + n]
        if self._rview[:n] != expected:
            at = next(i for i in range(n) if self._rbuf[i] != expected[i])
            raise LoadGenError(f"reply differs from the request at byte {conn.received + at} "
                               f"of {self.size} (connection {conn.index})")
        conn.received += n
        if conn.received == self.size:
            self._record(conn)
            if self._may_issue():
                self._start(conn)

    # -- HTTP/1.1 keep-alive --

    def _http_fail(self, conn: _Conn, what: str) -> LoadGenError:
        return LoadGenError(f"HTTP response on connection {conn.index}: {what}")

    def _http_head(self, conn: _Conn, head: bytes) -> None:
        """Parse a response head and set the body's length from Content-Length."""
        lines = head.split(b"\n")
        status_line = lines[0].rstrip(b"\r")
        if (len(status_line) < 12 or not status_line.startswith(b"HTTP/1.")
                or status_line[8:9] != b" " or not status_line[9:12].isdigit()):
            raise self._http_fail(conn, "not an HTTP/1.x status line")
        status = int(status_line[9:12])
        if not 200 <= status <= 299:
            text = status_line[:60].decode("latin-1")
            raise self._http_fail(conn, f"status {text}, not a 2xx success")
        length: Optional[int] = None
        for raw in lines[1:]:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                break  # the blank line
            name, colon, value = line.partition(b":")
            if not colon:
                raise self._http_fail(conn, "a header line without a colon")
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                if not value:
                    raise self._http_fail(conn, "an empty Content-Length")
                if not value.isdigit() or len(value) > 19:
                    raise self._http_fail(conn, "a Content-Length that is not a number")
                if length is not None and int(value) != length:
                    raise self._http_fail(conn, "two different Content-Length headers")
                length = int(value)
            elif name == b"transfer-encoding":
                raise self._http_fail(conn, "Transfer-Encoding (chunked) is not supported: the "
                                            "generator needs responses framed by Content-Length")
            elif name == b"connection" and value.lower() == b"close":
                raise self._http_fail(conn, "Connection: close (the generator needs keep-alive)")
        if length is None and status != 204:
            raise self._http_fail(conn, "no Content-Length (the generator needs responses "
                                        "framed by Content-Length)")
        conn.in_body = True
        conn.body_left = length or 0

    @staticmethod
    def _head_end(data: bytes, start: int) -> int:
        """Where the head ends (just past its blank line), searching from ``start``; 0 if not."""
        ends = [i for i in (data.find(b"\n\n", start), data.find(b"\n\r\n", start)) if i >= 0]
        if not ends:
            return 0
        i = min(ends)
        return i + (2 if data[i + 1:i + 2] == b"\n" else 3)

    def _http_input(self, conn: _Conn, data: memoryview) -> None:
        """Take bytes read on an HTTP connection: the head, then Content-Length
        bytes of body; a complete response starts the next request."""
        pos, n = 0, len(data)
        while pos < n:
            if not conn.active:
                raise LoadGenError(f"the server sent {n - pos} bytes nobody asked for "
                                   f"(connection {conn.index})")
            if not conn.in_body:
                before = len(conn.head)
                room = HTTP_HEAD_MAX - before
                taken = bytes(data[pos:pos + room])
                conn.head += taken
                end = self._head_end(bytes(conn.head), max(0, before - 3))
                if not end:
                    if len(taken) == room:
                        raise self._http_fail(conn, "a head longer than 16 KiB")
                    return
                head = bytes(conn.head[:end])
                conn.head = bytearray()
                pos += end - before
                self._http_head(conn, head)
                conn.received += end
            take = min(conn.body_left, n - pos)
            conn.body_left -= take
            conn.received += take
            pos += take
            if conn.body_left == 0:
                if pos < n:
                    raise LoadGenError(f"the server sent {n - pos} bytes past the end of a "
                                       f"response (connection {conn.index})")
                self._record(conn, conn.received)
                if self._may_issue():
                    self._start(conn)
                return

    def _scan_losses(self, t: float) -> None:
        for conn in self._conns:
            if conn.active and conn.sent == self.size and t - conn.start > self._loss_timeout:
                self._stats["lost"] += 1
                conn.active = False
                self._inflight -= 1
                if self._may_issue():
                    self._start(conn)

    def _step(self, until: float) -> bool:
        """Run to ``until``; True when nothing may start and nothing is in flight."""
        assert self._sel is not None
        for conn in self._conns:
            if not conn.active and self._may_issue():
                self._start(conn)
        last_scan = time.monotonic()
        while True:
            if not self._may_issue() and self._inflight == 0:
                return True
            t = time.monotonic()
            if self.mode == "udp" and t - last_scan > 0.01:
                last_scan = t
                self._scan_losses(t)
                continue
            if t >= until:
                return False
            timeout = until - t
            if self.mode == "udp":
                timeout = min(timeout, 0.01)
            for key, events in self._sel.select(timeout):
                conn = key.data
                if events & selectors.EVENT_WRITE and conn.active and conn.sent < self.size:
                    self._send_more(conn)
                if events & selectors.EVENT_READ:
                    self._on_readable(conn)

    def run(self, duration: float, max_ops: Optional[int] = None, drain: bool = True,
            drain_timeout: float = 5.0) -> Dict[str, Any]:
        """As the C generator's ``run``."""
        if self._sel is None:
            raise LoadGenError("connect() first")
        self.reset_stats()
        self._max_ops = (1 << 64) - 1 if max_ops is None else max_ops
        cpu0 = time.thread_time()
        start = time.monotonic()
        deadline = start + duration
        drain_deadline = deadline + drain_timeout
        try:
            while True:
                t = time.monotonic()
                self._issue = t < deadline
                if not self._issue and not drain:
                    break
                if not self._issue and t >= drain_deadline:
                    raise LoadGenError(f"{self._inflight} replies still missing "
                                       f"{drain_timeout:g} s after the last request was sent")
                if self._step(min(t + 0.1, deadline if self._issue else drain_deadline)):
                    break
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                raise LoadGenError("the server reset the connection") from None
            raise LoadGenError(str(exc)) from None
        end = time.monotonic()
        latency: Dict[str, float] = {}
        lat = sorted(self._latencies)
        if lat:
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
                rank = max(1, int(q * len(lat) + 0.5))
                latency[name] = lat[rank - 1] * 1e6
            latency["max"] = lat[-1] * 1e6
            latency["mean"] = sum(lat) / len(lat) * 1e6
        return make_result(ops=self._stats["ops"], nbytes=self._stats["bytes"],
                           seconds=end - start, gen_cpu=time.thread_time() - cpu0,
                           lost=self._stats["lost"], stale=self._stats["stale"],
                           inflight=self._inflight, latency_us=latency)
