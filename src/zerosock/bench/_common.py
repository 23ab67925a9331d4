"""Pieces both load generators share: the error they raise and the result they return."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

MODES = ("echo", "stream", "udp", "http")
UDP_HEADER = 8          # UDP requests carry their sequence number in front
UDP_MAX = 65507         # the largest UDP payload over IPv4
UDP_LOSS_SECONDS = 0.2  # a UDP request with no reply by then counts as lost

Address = Union[Tuple[str, int], str]


class LoadGenError(RuntimeError):
    """The run could not go on: the server closed, reset or answered wrongly."""


def http_request(address: Address, path: str = "/") -> bytes:
    """The canned HTTP/1.1 keep-alive request the ``http`` mode sends, as wrk
    sends it: a GET with a Host header and nothing else."""
    host = "localhost" if isinstance(address, str) else (
        f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}")
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii")


def request_for(mode: str, address: Address, request: Optional[bytes]) -> bytes:
    """The ``http`` mode's request: the one given, else :func:`http_request`."""
    if mode != "http":
        if request is not None:
            raise ValueError(f"a request is sent only in the http mode, not {mode!r}")
        return b""
    data = http_request(address) if request is None else bytes(request)
    if not data.endswith(b"\r\n\r\n"):
        raise ValueError("an HTTP request ends with a blank line (CRLF CRLF) and has no body")
    return data


def check_request(mode: str, connections: int, size: int) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if not 1 <= connections <= 65536:
        raise ValueError(f"connections must be 1..65536, not {connections}")
    if not 1 <= size <= 1 << 30:
        raise ValueError(f"size must be 1 byte..1 GiB, not {size}")
    if mode == "udp" and not UDP_HEADER <= size <= UDP_MAX:
        raise ValueError(f"a UDP request is {UDP_HEADER}..{UDP_MAX} bytes, not {size}")


def make_result(*, ops: int, nbytes: int, seconds: float, gen_cpu: Optional[float],
                lost: int = 0, stale: int = 0, inflight: int = 0,
                latency_us: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """One run's figures, the same keys from both generators."""
    return {
        "ops": ops,
        "bytes": nbytes,
        "seconds": seconds,
        "ops_per_s": ops / seconds if seconds > 0 else 0.0,
        "mib_per_s": nbytes / seconds / (1 << 20) if seconds > 0 else 0.0,
        "lost": lost,
        "stale": stale,
        "inflight_left": inflight,
        "gen_cpu_seconds": gen_cpu,
        "latency_us": latency_us or {},
    }
