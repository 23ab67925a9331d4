"""Run the matrix: start each contender's server in its own process, drive it
with the load generator, and measure the server's CPU time over the window.

Contenders are interleaved inside each cell (one run of each in turn, the
order rotated every repeat) so a slow period of the machine hits them alike.
Every child process is tracked and ended on every path out, Ctrl-C included.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, IO, Iterator, List, Optional, Sequence, Set, Tuple, TypeVar

from ._common import LoadGenError
from .contenders import CONTENDERS, backend_note, unavailable_reason

_R = TypeVar("_R")

SATURATED = 0.90  # generator busier than this: its own core may cap the figure
STARVED = 0.75    # server and generator both less busy: the machine was doing other work


# ------------------------------------------------------------ load generators


def generator_class(kind: str = "auto") -> Tuple[Any, str]:
    """The load generator class and its label: the C one unless absent or not asked for."""
    if kind in ("auto", "c"):
        from zerosock import _compat
        try:
            from zerosock import _loadgen_c
            if not _loadgen_c.SUPPORTED:
                reason = "needs epoll (Linux)"
            elif kind == "auto" and _compat.PURE_PYTHON_REQUESTED:
                reason = "ZEROSOCK_PURE_PYTHON is set"
            else:
                return _loadgen_c.LoadGenerator, "c"
        except ImportError:
            reason = "the C extension is not built"
        if kind == "c":
            raise SystemExit(f"zerosock.bench: the C load generator is unavailable: {reason}")
    from ._loadgen_py import LoadGenerator
    return LoadGenerator, "python"


def generator_for(cell: "Cell", generator: Any) -> Any:
    """The generator a cell runs with: TLS echo has its own."""
    if cell.workload == "tls":
        from ._loadgen_tls import TLSLoadGenerator
        return TLSLoadGenerator
    return generator


# ------------------------------------------------------------ cells


# The connection-scale workloads and their variants: what the server speaks
# and, for ``conns``, which asyncio style holds the connections.
SCALE_VARIANTS = {"conns": ("plain", "tls", "streams"), "churn": ("plain", "tls", "tls-resume")}
VARIANT_LABELS = {"plain": "plain TCP", "tls": "TLS 1.3", "streams": "plain TCP, asyncio streams",
                  "tls-resume": "TLS 1.3 resumed"}


@dataclass(frozen=True)
class Cell:
    workload: str
    size: int
    connections: int  # conns: connections held open; churn: clients at once
    variant: str = ""  # the scale workloads' kind of connection (SCALE_VARIANTS)

    @classmethod
    def from_doc(cls, doc: Dict[str, Any]) -> "Cell":
        return cls(doc["workload"], doc["size"], doc["connections"], doc.get("variant", ""))

    @property
    def label(self) -> str:
        who = "client" if self.workload in ("udp", "churn") else "connection"
        plural = "" if self.connections == 1 else "s"
        if self.workload == "http":  # a canned GET; the size is the server's to choose
            return f"http hello world, {self.connections} keep-alive {who}{plural}"
        if self.workload == "conns":
            return (f"memory per open connection, {VARIANT_LABELS[self.variant]}, "
                    f"{self.connections:,} {who}{plural}")
        if self.workload == "churn":
            return (f"churn (connect, {format_size(self.size)} echo, close), "
                    f"{VARIANT_LABELS[self.variant]}, {self.connections} {who}{plural}")
        return f"{self.workload} {format_size(self.size)}, {self.connections} {who}{plural}"

    @property
    def short(self) -> str:
        if self.workload == "http":
            return f"http x{self.connections}"
        if self.workload in SCALE_VARIANTS:
            return f"{self.workload} {self.variant} x{self.connections}"
        return f"{self.workload} {format_size(self.size)} x{self.connections}"

    @property
    def unit(self) -> str:
        return {"echo": "req", "stream": "MiB", "udp": "dgram", "http": "req",
                "tls": "req", "conns": "conn", "churn": "conn"}[self.workload]

    @property
    def server_workload(self) -> str:
        """What the contender's server is started to serve."""
        if self.workload in SCALE_VARIANTS:
            return "tls" if self.variant.startswith("tls") else "echo"
        return self.workload


def format_size(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB" if size < 1 << 20 or size % (1 << 20) else f"{size >> 20} MiB"
    return f"{size} B"


# ------------------------------------------------------------ processes


_LIVE: Set["ServerProcess"] = set()


def cleanup_all() -> None:
    """End every server still running (also run at exit)."""
    for server in list(_LIVE):
        server.stop(timeout=1.0)


atexit.register(cleanup_all)


class ServerError(RuntimeError):
    """A server could not start, or died."""


class ServerProcess:
    """One contender's server in a child process, stopped by closing its stdin."""

    def __init__(self, contender: str, workload: str, host: str, port: int = 0,
                 cpu: Optional[int] = None, wrapper: Sequence[str] = (),
                 ready_timeout: float = 15.0, env: Optional[Dict[str, str]] = None,
                 max_fds: Optional[int] = None) -> None:
        self.contender = contender
        self.workload = workload
        self.host = host
        self.port = port
        self.cpu = cpu
        self.wrapper = list(wrapper)
        self.ready_timeout = ready_timeout
        self.env = env
        self.max_fds = max_fds
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self._stderr: Optional[IO[bytes]] = None

    def start(self) -> "ServerProcess":
        config = {"contender": self.contender, "workload": self.workload,
                  "host": self.host, "port": self.port, "cpu": self.cpu,
                  "max_fds": self.max_fds}
        cmd = self.wrapper + [sys.executable, "-m", "zerosock.bench._server", json.dumps(config)]
        env = dict(os.environ if self.env is None else self.env)
        env.update(CONTENDERS[self.contender].env)
        # the children must find this zerosock, installed or not
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=env, start_new_session=True)  # a terminal's Ctrl-C goes to us, not to them
        _LIVE.add(self)
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop(timeout=1.0)
            raise
        return self

    def _wait_ready(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.ready_timeout
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerError(f"did not start within {self.ready_timeout:g} s")
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if readable:
                chunk = os.read(fd, 1)
                if not chunk:
                    break
                line += chunk
        text = line.decode(errors="replace").strip()
        if text.startswith("READY "):
            return int(text.split()[1])
        if text.startswith("ERROR "):
            raise ServerError(text[6:])
        self.proc.wait(timeout=5)
        raise ServerError(f"{self.exit_description()} before it was ready{self.stderr_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_description(self) -> str:
        if self.proc is None or self.proc.returncode is None:
            return "still running"
        code = self.proc.returncode
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    def stderr_tail(self, limit: int = 300) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        if not text:
            return ""
        last = text.splitlines()[-1]
        return f": {last[-limit:]}"

    def cpu_snapshot(self) -> Optional[CpuSnapshot]:
        return process_cpu(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin and not proc.stdin.closed:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    proc.wait(timeout=2.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for stream in (proc.stdout,):
            if stream:
                stream.close()
        _LIVE.discard(self)

    def close(self) -> None:
        self.stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


@dataclass(frozen=True)
class CpuSnapshot:
    """A process's CPU time at one moment."""
    tids: Tuple[int, ...]   # its threads then
    sched_ns: int           # their schedstat run time summed, ns (-1: unreadable)
    user: float             # user seconds from /proc/PID/stat, clock-tick resolution,
    system: float           # which also keeps the time of threads gone since


def process_cpu(pid: int) -> Optional[CpuSnapshot]:
    """Read a process's CPU time from /proc, else through psutil when it is
    installed (macOS, the BSDs); None when neither can say."""
    if not os.path.exists(f"/proc/{pid}/stat"):
        try:
            import psutil  # type: ignore[import-untyped,unused-ignore]
            times = psutil.Process(pid).cpu_times()
            return CpuSnapshot((), -1, times.user, times.system)
        except Exception:  # not installed, or the process is gone
            return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        user, system = int(fields[11]) / ticks, int(fields[12]) / ticks
        tids = tuple(sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")))
        ns = 0
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                ns = -1
                break
        return CpuSnapshot(tids, ns, user, system)
    except (OSError, ValueError, IndexError):
        return None


def cpu_between(before: Optional[CpuSnapshot], after: Optional[CpuSnapshot]) -> Optional[float]:
    """Seconds of CPU between two snapshots: schedstat's nanoseconds when the
    same threads lived through the window, else the coarser stat figure."""
    if before is None or after is None:
        return None
    if before.tids == after.tids and before.sched_ns >= 0 and after.sched_ns >= 0:
        return (after.sched_ns - before.sched_ns) / 1e9
    return (after.user + after.system) - (before.user + before.system)


# ------------------------------------------------------------ CPU placement


def _core_of(cpu: int) -> Optional[Tuple[str, str]]:
    """(package, core) of a logical CPU, from sysfs; None when unknown."""
    try:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        with open(base + "physical_package_id") as f:
            package = f.read().strip()
        with open(base + "core_id") as f:
            return package, f.read().strip()
    except OSError:
        return None


def plan_cpus(pin: bool, wanted: Optional[Sequence[int]] = None
              ) -> Tuple[Optional[int], Optional[int], str]:
    """(generator CPU, server CPU, description): two different CPUs when we
    may, on different physical cores when the machine has SMT siblings, so
    the two do not share one core's execution units."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None, "not pinned" + ("" if pin else " (--no-pin)")
    cpus = sorted(os.sched_getaffinity(0))
    if wanted:
        missing = [c for c in wanted if c not in cpus]
        if missing:
            raise ValueError(f"CPU {missing[0]} is not available to this process "
                             f"(available: {', '.join(map(str, cpus))})")
        gen, server = wanted[0], wanted[1]
        return gen, server, f"generator on CPU {gen}, server on CPU {server}"
    if len(cpus) < 2:
        return None, None, "not pinned (one CPU available)"
    gen = cpus[0]
    gen_core = _core_of(gen)
    server = next((c for c in cpus[1:] if gen_core is None or _core_of(c) != gen_core), cpus[1])
    shared = gen_core is not None and _core_of(server) == gen_core
    return gen, server, (f"generator on CPU {gen}, server on CPU {server}"
                         + (" (SMT siblings: no two cores available)" if shared else ""))


# ------------------------------------------------------------ one run


@dataclass
class Settings:
    host: str = "127.0.0.1"   # or "unix": a Unix socket in a private directory
    port: int = 0
    duration: float = 0.5
    warmup: float = 0.2
    requests: Optional[int] = None
    connect_timeout: float = 5.0
    server_cpu: Optional[int] = None
    idle: int = 0  # connections held open, each echoed once, while a TCP cell runs

    def server_host(self, contender: str) -> str:
        """The address a server binds: the host, or a fresh Unix socket path."""
        if self.host != "unix":
            return self.host
        directory = _unix_directory()
        path = os.path.join(directory, f"{contender}.sock")
        if os.path.exists(path):
            os.unlink(path)
        return path


_UNIX_DIR: List[str] = []


def _unix_directory() -> str:
    if not _UNIX_DIR:
        _UNIX_DIR.append(tempfile.mkdtemp(prefix="zerosock-bench-"))
        atexit.register(shutil.rmtree, _UNIX_DIR[0], True)
    return _UNIX_DIR[0]


def generator_address(server: "ServerProcess") -> Any:
    """What the load generator connects to: (host, port), or a Unix socket path."""
    if server.host.startswith("/"):
        return server.host
    return (server.host, server.port)


@contextlib.contextmanager
def idle_connections(settings: Settings, cell: Cell, server: "ServerProcess",
                     timeout: float) -> Iterator[None]:
    """Hold ``settings.idle`` connections open to ``server`` (each echoed once)
    for the duration: a server's cost per request with many connections open."""
    if not settings.idle or cell.workload not in ("echo", "stream", "http"):
        yield
        return
    from ._loadgen_scale import ConnectionHolder
    with ConnectionHolder(generator_address(server)) as holder:
        holder.open(settings.idle, timeout)
        yield


def _max_fds(settings: Settings, cell: Cell) -> Optional[int]:
    return settings.idle + cell.connections + 256 if settings.idle else None


def run_one(contender: str, cell: Cell, settings: Settings, generator: Any) -> Dict[str, Any]:
    """One measured run of one contender in one cell; never raises for a
    server's failure, which is returned as ``status: failed``."""
    result: Dict[str, Any] = {"contender": contender, "status": "ok", "error": None}
    server = ServerProcess(contender, cell.server_workload, settings.server_host(contender),
                           settings.port, cpu=settings.server_cpu,
                           max_fds=_max_fds(settings, cell))
    gen = None
    idle = contextlib.ExitStack()
    try:
        server.start()
        idle.enter_context(idle_connections(settings, cell, server, 60.0 + settings.idle * 0.01))
        _warm_up(cell, generator, generator_address(server))
        mode = cell.workload
        gen = generator_for(cell, generator)(mode, generator_address(server), cell.connections,
                                             cell.size)
        gen.connect(settings.connect_timeout)
        if settings.warmup > 0:
            gen.run(settings.warmup, drain=False)
        before = server.cpu_snapshot()
        stats = gen.run(settings.duration, max_ops=settings.requests, drain=False)
        record_run(result, cell, stats, before, server.cpu_snapshot())
    except (ServerError, LoadGenError, OSError) as exc:
        result["status"] = "failed"
        result["error"] = _explain(exc, server)
    finally:
        if gen is not None:
            gen.close()
        idle.close()
        server.close()
    return result


def record_run(result: Dict[str, Any], cell: Cell, stats: Dict[str, Any],
               before: Optional[CpuSnapshot], after: Optional[CpuSnapshot]) -> None:
    """Put a timed run's figures into ``result``: the generator's ``stats``,
    and the server's CPU time between the two snapshots per operation."""
    server_cpu = cpu_between(before, after)
    result.update(stats)
    result["server_cpu_seconds"] = server_cpu
    if before is not None and after is not None:
        # the split is tick-resolution: for the reader's judgement, not for ratios
        result["server_user_seconds"] = after.user - before.user
        result["server_system_seconds"] = after.system - before.system
    seconds = stats["seconds"] or 1e-9
    per = stats["bytes"] / (1 << 20) if cell.workload == "stream" else stats["ops"]
    result["rate"] = stats["mib_per_s"] if cell.workload == "stream" else stats["ops_per_s"]
    result["cpu_per_op_us"] = server_cpu / per * 1e6 if server_cpu is not None and per else None
    result["server_cpu_util"] = server_cpu / seconds if server_cpu is not None else None
    gen_cpu = stats.get("gen_cpu_seconds")
    result["gen_cpu_util"] = gen_cpu / seconds if gen_cpu is not None else None
    result["gen_saturated"] = bool(gen_cpu is not None and gen_cpu / seconds > SATURATED)
    if stats["ops"] == 0:
        what = "connection" if cell.workload == "churn" else "request"
        raise LoadGenError(f"no {what} completed in the measured window")


def _explain(exc: BaseException, server: ServerProcess) -> str:
    if isinstance(exc, ServerError):
        return f"could not start: {exc}"
    # A generator error is usually the server dying: say that first.
    if server.proc is not None:
        try:
            server.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if not server.alive():
            return f"server {server.exit_description()} during the run{server.stderr_tail()}"
    return str(exc)


# ------------------------------------------------------------ the matrix


def applicable(contender: str, cell: Cell) -> bool:
    entry = CONTENDERS[contender]
    if cell.workload not in entry.workloads:
        return False
    if cell.workload in SCALE_VARIANTS:  # streams held by streams servers, the rest by Protocols
        return (entry.style == "streams") == (cell.variant == "streams")
    return True


def run_matrix(contenders: Sequence[str], cells: Sequence[Cell], settings: Settings,
               repeats: int, generator: Any,
               progress: Optional[Callable[[int, int, Cell, str], None]] = None,
               results: Optional[Dict[Cell, Dict[str, List[Dict[str, Any]]]]] = None,
               ) -> Dict[Cell, Dict[str, List[Dict[str, Any]]]]:
    """{cell: {contender: [run, ...]}}.  ``results`` is filled in place, so an
    interrupted run keeps what it measured."""
    if results is None:
        results = {}
    skipped = {name: unavailable_reason(name) for name in contenders}
    plan: List[Tuple[Cell, str]] = []
    for cell in cells:
        runnable = [n for n in contenders if applicable(n, cell) and not skipped[n]]
        for rep in range(repeats):
            shift = rep % len(runnable) if runnable else 0
            for name in runnable[shift:] + runnable[:shift]:
                plan.append((cell, name))
    for cell in cells:
        results.setdefault(cell, {n: [] for n in contenders if applicable(n, cell)})
    for index, (cell, name) in enumerate(plan):
        if progress:
            progress(index, len(plan), cell, name)
        if cell.workload in SCALE_VARIANTS:
            from . import scale
            results[cell][name].append(scale.run_one(name, cell, settings))
        else:
            results[cell][name].append(run_one(name, cell, settings, generator))
    if progress:
        progress(len(plan), len(plan), cells[-1] if cells else Cell("echo", 1, 1), "")
    return results


def summarize(cell: Cell, contenders: Sequence[str],
              runs: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One row per contender: medians over its successful runs, and its status."""
    rows: List[Dict[str, Any]] = []
    for name in contenders:
        if not applicable(name, cell):
            continue
        row: Dict[str, Any] = {"contender": name, "status": "ok", "note": None}
        reason = unavailable_reason(name)
        mine = runs.get(name, [])
        if reason:
            row.update(status="skipped", note=reason)
            rows.append(row)
            continue
        ok = [r for r in mine if r["status"] == "ok"]
        failed = [r for r in mine if r["status"] != "ok"]
        notes = []
        if not mine:
            row.update(status="not run", note="interrupted before this contender ran")
            rows.append(row)
            continue
        if not ok:
            row.update(status="failed", note=failed[0]["error"], runs=len(mine))
            rows.append(row)
            continue
        if failed:
            notes.append(f"{len(failed)}/{len(mine)} runs failed: {failed[0]['error']}")
        rates = [r["rate"] for r in ok]
        median_rate = statistics.median(rates)
        row["runs"] = len(mine)
        row["rate"] = median_rate
        row["rates"] = rates
        row["spread"] = (max(rates) - min(rates)) / 2 / median_rate if median_rate else 0.0
        for key in ("p50", "p99"):
            values = [r["latency_us"][key] for r in ok if key in r.get("latency_us", {})]
            row[f"{key}_us"] = statistics.median(values) if values else None
        for key in ("rss_before", "rss_after", "open_seconds"):  # the conns workload's
            values = [r[key] for r in ok if r.get(key) is not None]
            if values:
                row[key] = statistics.median(values)
        cpu = [r["cpu_per_op_us"] for r in ok if r.get("cpu_per_op_us") is not None]
        row["cpu_per_op_us"] = statistics.median(cpu) if cpu else None
        util = [r["server_cpu_util"] for r in ok if r.get("server_cpu_util") is not None]
        row["server_cpu_util"] = statistics.median(util) if util else None
        gen_util = [r["gen_cpu_util"] for r in ok if r.get("gen_cpu_util") is not None]
        row["gen_cpu_util"] = statistics.median(gen_util) if gen_util else None
        row["gen_saturated"] = any(r.get("gen_saturated") for r in ok)
        if row["gen_saturated"]:
            notes.append("generator busy")
        elif _both_idle(cell, row):
            row["starved"] = True
            notes.append("starved")
        lost = sum(r.get("lost", 0) for r in ok)
        if lost:
            total = sum(r["ops"] for r in ok) + lost
            notes.append(f"lost {lost / total:.2%}")
        extra = backend_note(name)
        if extra:
            notes.append(extra)
        row["note"] = "; ".join(notes) or None
        rows.append(row)
    _add_ratios(rows)
    return rows


def _both_idle(cell: Cell, row: Dict[str, Any]) -> bool:
    """With enough requests in flight one side of a closed loop is always
    busy; when neither was, something else had the CPUs."""
    if cell.workload != "stream" and cell.connections < 4:
        return False
    server, gen = row.get("server_cpu_util"), row.get("gen_cpu_util")
    return server is not None and gen is not None and server < STARVED and gen < STARVED


def _add_ratios(rows: List[Dict[str, Any]]) -> None:
    from .contenders import BASELINES, baseline_for
    by_name = {r["contender"]: r for r in rows}
    for label in BASELINES:
        for row in rows:
            base = by_name.get(baseline_for(row["contender"], label, by_name))
            ratio = cpu_ratio = None
            if base and base.get("rate") and row.get("rate") is not None:
                ratio = row["rate"] / base["rate"]
            if base and base.get("cpu_per_op_us") and row.get("cpu_per_op_us") is not None:
                cpu_ratio = row["cpu_per_op_us"] / base["cpu_per_op_us"]
            row[f"vs_{label}"] = ratio
            row[f"cpu_vs_{label}"] = cpu_ratio


# ------------------------------------------------------------ instructions and syscalls


def instruction_tools() -> Dict[str, Optional[str]]:
    """Which of valgrind and strace this machine has (None: missing)."""
    return {"valgrind": shutil.which("valgrind"), "strace": shutil.which("strace")}


def _callgrind_total(path: str) -> int:
    with open(path) as f:
        summary = None
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
            if line.startswith("summary:"):
                summary = int(line.split()[1])
    if summary is None:
        raise ValueError(f"no totals in {path}")
    return summary


OPENSSL_OBJECTS = ("libssl", "libcrypto")
# Callers that reach OpenSSL only on its behalf: the C library's qsort and
# pthread_once call back the functions OpenSSL gives them, the dynamic loader
# runs its constructors, and code valgrind names no object for ("???": the
# stubs OpenSSL calls itself through) sits within OpenSSL's calls.
NOT_THE_PROGRAM = OPENSSL_OBJECTS + ("libc.so", "libc-", "ld-linux", "libpthread", "???")


def _callgrind_outside_openssl(path: str) -> int:
    """Instructions run outside OpenSSL, from a callgrind output file: the
    total less the inclusive cost of every call made into libssl or
    libcrypto by the program (not by OpenSSL itself or the C library) -- so
    what OpenSSL has the C library do for it (malloc, memcpy, locks, the
    callbacks of qsort) counts once, as OpenSSL's."""
    names: Dict[str, str] = {}
    positions = 1
    caller = callee = "?"
    called = None  # the object a calls= line just called, its cost line next
    inside = 0
    with open(path) as f:
        for line in f:
            head = line[:1]
            if head.isdigit() or head in "+-*":
                if called is not None:
                    tokens = line.split()
                    if (called.startswith(OPENSSL_OBJECTS) and len(tokens) > positions
                            and not caller.startswith(NOT_THE_PROGRAM)):
                        inside += int(tokens[positions])
                    called = None
            elif line.startswith("calls="):
                called, callee = callee, caller  # a call without cob= stays in its object
            elif line.startswith(("ob=", "cob=")):  # either may name an object first
                key, _, rest = line.partition("=")
                ref, _, name = rest.strip().partition(" ")
                if name:
                    names[ref] = os.path.basename(name)
                if key == "ob":
                    caller = callee = names.get(ref, os.path.basename(ref))
                else:
                    callee = names.get(ref, os.path.basename(ref))
            elif line.startswith("positions:"):
                positions = len(line.split()) - 1
    return _callgrind_total(path) - inside


def _strace_counts(path: str) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    with open(path) as f:
        for line in f:
            tokens = line.split()
            if len(tokens) in (5, 6) and tokens[-1] != "total" and tokens[0][0].isdigit():
                try:
                    counts[tokens[-1]] = counts.get(tokens[-1], 0) + int(tokens[3])
                except ValueError:
                    continue
    return counts


# Requests an HTTP server answers on one connection before each run.
# CPython 3.11 to 3.13 fix the attribute layout a class's instances share
# after the first few dozen of them: when a burst of concurrent first
# requests makes that many before any is written to (aiohttp's StreamWriter
# gains four attributes at its first write), every later instance falls back
# to a dict of its own, for the life of the process, whatever the loop.  So
# that what is measured is the steady state rather than the start-up race,
# every run starts alike (in counted runs the warm-up cancels in their
# difference).
HTTP_WARMUP_REQUESTS = 64


def _serve_exactly(cell: Cell, generator: Any, address: Any, connections: int,
                   requests: int) -> None:
    """Have the server at ``address`` answer exactly ``requests`` over
    ``connections`` connections, waiting as long as a server under valgrind
    needs (slow, not lossy)."""
    gen = generator_for(cell, generator)(cell.workload, address, connections, cell.size)
    try:
        gen.connect(60.0)
        gen.set_loss_timeout(60.0)
        stats = gen.run(600.0, max_ops=requests, drain=True, drain_timeout=120.0)
        if stats["ops"] != requests:
            raise LoadGenError(f"{stats['ops']} of {requests} requests completed")
    finally:
        gen.close()


def _warm_up(cell: Cell, generator: Any, address: Any) -> None:
    if cell.workload == "http":
        _serve_exactly(cell, generator, address, 1, HTTP_WARMUP_REQUESTS)


def _counted_run(contender: str, cell: Cell, settings: Settings, generator: Any,
                 wrapper: List[str], requests: int) -> None:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"  # the same hashing, so the same work, in both runs
    server = ServerProcess(contender, cell.server_workload, settings.server_host(contender),
                           settings.port, wrapper=wrapper, ready_timeout=180.0, env=env,
                           max_fds=_max_fds(settings, cell))
    try:
        server.start()
        if cell.workload == "churn":
            from . import scale
            scale.churn_exactly(cell, generator_address(server), requests)
        else:
            # the server may be under valgrind: slow to accept
            with idle_connections(settings, cell, server, 600.0 + settings.idle * 0.5):
                _warm_up(cell, generator, generator_address(server))
                _serve_exactly(cell, generator, generator_address(server), cell.connections,
                               requests)
    except (ServerError, LoadGenError, OSError) as exc:
        raise LoadGenError(_explain(exc, server)) from None
    finally:
        server.stop(timeout=180.0)  # the tool writes its report as the server exits
        server.close()


def measure_instructions(contender: str, cell: Cell, settings: Settings, generator: Any,
                         counts: Tuple[int, int] = (2000, 12000)) -> Dict[str, Any]:
    """User-space instructions (callgrind) and syscalls (strace) per request:
    the difference of two runs of different lengths, so start-up cancels."""
    tools = instruction_tools()
    out: Dict[str, Any] = {"contender": contender, "requests": list(counts)}
    small, large = counts
    per = (large - small) if cell.workload != "stream" else (large - small) * cell.size / (1 << 20)
    with tempfile.TemporaryDirectory(prefix="zerosock-bench-") as tmp:
        def both_runs(tool: str, command: Callable[[str], List[str]],
                      parse: Callable[[str], _R]) -> List[_R]:
            """Run the contender under ``command(output path)`` for each count."""
            results = []
            for n in counts:
                path = os.path.join(tmp, f"{tool}.{n}")
                _counted_run(contender, cell, settings, generator, command(path), n)
                results.append(parse(path))
            return results

        valgrind, strace = tools["valgrind"], tools["strace"]
        if valgrind:
            try:
                def total_and_outside(path: str) -> Tuple[int, Optional[int]]:
                    outside = (_callgrind_outside_openssl(path)
                               if cell.server_workload == "tls" else None)
                    return _callgrind_total(path), outside

                counted = both_runs("callgrind", lambda path: [
                    valgrind, "--tool=callgrind", "--quiet",
                    f"--callgrind-out-file={path}"], total_and_outside)
                totals = [total for total, _ in counted]
                outside = [part for _, part in counted if part is not None]
                out["instructions_per_op"] = (totals[1] - totals[0]) / per
                out["instructions_totals"] = totals
                if outside:
                    out["outside_openssl_per_op"] = (outside[1] - outside[0]) / per
            except (LoadGenError, ValueError, OSError) as exc:
                out["instructions_error"] = str(exc)
        else:
            out["instructions_error"] = "valgrind is not installed"
        if strace:
            try:
                runs = both_runs("strace", lambda path: [strace, "-f", "-c", "-o", path],
                                 _strace_counts)
                names = sorted(set(runs[0]) | set(runs[1]))
                diff = {k: (runs[1].get(k, 0) - runs[0].get(k, 0)) / per for k in names}
                diff = {k: v for k, v in diff.items() if v > 0.005}
                out["syscalls_per_op"] = sum(diff.values())
                out["syscalls_by_name"] = dict(sorted(diff.items(), key=lambda kv: -kv[1]))
            except (LoadGenError, ValueError, OSError) as exc:
                out["syscalls_error"] = str(exc)
        else:
            out["syscalls_error"] = "strace is not installed"
    return out
