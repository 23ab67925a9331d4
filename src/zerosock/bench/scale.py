"""The connection-scale workloads: memory per open connection (``conns``)
and connections opened, used once and closed (``churn``).

``conns`` reads the server's resident memory from ``/proc`` before and after
``N`` connections have each echoed once (no forced collection) and reports
the growth per connection.  ``churn`` counts connections per second, each a
connect, one echo and a close, and under ``--instructions`` the server's
instructions per connection.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ._common import LoadGenError
from ._loadgen_scale import Churner, ConnectionHolder
from .runner import (Cell, ServerError, ServerProcess, Settings, _explain, generator_address,
                     record_run)

DEFAULT_OPEN = {"plain": 5000, "tls": 2000, "streams": 5000}
DEFAULT_CHURN_CLIENTS = 10
REQUEST_SIZE = 64
# Connections opened, echoed and closed before the baseline is read, so that
# what any first connection brings (lazy imports, caches, the first TLS
# handshake's tables) is not counted per connection.
WARMUP_CONNECTIONS = 32
FD_MARGIN = 256


def rss_bytes(pid: int) -> Optional[int]:
    """A process's resident set size from /proc, None where there is none."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def open_timeout(cell: Cell) -> float:
    """A bound on opening a cell's connections that no working server reaches."""
    return 30.0 + cell.connections * (0.1 if cell.server_workload == "tls" else 0.02)


def run_one(contender: str, cell: Cell, settings: Settings) -> Dict[str, Any]:
    """One run of a ``conns`` or ``churn`` cell; a failure is returned as
    ``status: failed``, as :func:`runner.run_one` does."""
    result: Dict[str, Any] = {"contender": contender, "status": "ok", "error": None}
    server = ServerProcess(contender, cell.server_workload, settings.server_host(contender),
                           settings.port, cpu=settings.server_cpu,
                           max_fds=cell.connections + FD_MARGIN)
    try:
        server.start()
        if cell.workload == "conns":
            _measure_memory(cell, server, result)
        else:
            _measure_churn(cell, server, settings, result)
    except (ServerError, LoadGenError, OSError) as exc:
        result["status"] = "failed"
        result["error"] = _explain(exc, server)
    finally:
        server.close()
    return result


def _measure_memory(cell: Cell, server: ServerProcess, result: Dict[str, Any]) -> None:
    address = generator_address(server)
    tls = cell.server_workload == "tls"
    with ConnectionHolder(address, REQUEST_SIZE, tls) as warm:
        warm.open(WARMUP_CONNECTIONS, open_timeout(cell))
    with ConnectionHolder(address, REQUEST_SIZE, tls) as settle:
        settle.open(1, open_timeout(cell))  # the warm-up's closes are behind this echo
    before = rss_bytes(server.pid)
    with ConnectionHolder(address, REQUEST_SIZE, tls) as holder:
        seconds = holder.open(cell.connections, open_timeout(cell))
        after = rss_bytes(server.pid)
        still = holder.still_open()
        if still != cell.connections:
            raise LoadGenError(f"the server closed {cell.connections - still} of "
                               f"{cell.connections} idle connections")
    if before is None or after is None:
        raise LoadGenError("the server's memory cannot be read here (no /proc)")
    result.update(rate=(after - before) / cell.connections, rss_before=before,
                  rss_after=after, open_seconds=seconds)


def _churner(cell: Cell, address: Any) -> Churner:
    return Churner(address, cell.connections, cell.size, tls=cell.server_workload == "tls",
                   resume=cell.variant == "tls-resume")


def _measure_churn(cell: Cell, server: ServerProcess, settings: Settings,
                   result: Dict[str, Any]) -> None:
    churner = _churner(cell, generator_address(server))
    try:
        if settings.warmup > 0:
            churner.run(settings.warmup)
        before = server.cpu_snapshot()
        stats = churner.run(settings.duration, settings.requests)
        record_run(result, cell, stats, before, server.cpu_snapshot())
    finally:
        churner.close()
    if cell.variant == "tls-resume" and stats["resumed"] < stats["ops"]:
        raise LoadGenError(f"only {stats['resumed']} of {stats['ops']} sessions were resumed")
    if cell.variant == "tls" and stats["resumed"]:
        raise LoadGenError(f"{stats['resumed']} sessions were resumed unasked")


def churn_exactly(cell: Cell, address: Any, connections: int) -> None:
    """Churn exactly ``connections`` connections, however slow the server
    (one under valgrind): for the instruction counts."""
    churner = _churner(cell, address)
    try:
        stats = churner.run(3600.0, connections)
    finally:
        churner.close()
    if stats["ops"] != connections:
        raise LoadGenError(f"{stats['ops']} of {connections} connections completed")


def default_instruction_counts(cell: Cell) -> Tuple[int, int]:
    """Connections in the two counted churn runs: fewer for TLS, whose
    handshakes valgrind makes slow."""
    return (100, 600) if cell.server_workload == "tls" else (300, 1800)
