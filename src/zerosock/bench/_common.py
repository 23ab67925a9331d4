"""Pieces both load generators share: the error they raise and the result they return."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

MODES = ("echo", "stream", "udp")
UDP_HEADER = 8          # UDP requests carry their sequence number in front
UDP_MAX = 65507         # the largest UDP payload over IPv4
UDP_LOSS_SECONDS = 0.2  # a UDP request with no reply by then counts as lost

Address = Union[Tuple[str, int], str]


class LoadGenError(RuntimeError):
    """The run could not go on: the server closed, reset or answered wrongly."""


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
