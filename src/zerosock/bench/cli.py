"""``python -m zerosock.bench``: the command line of the comparison benchmark."""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from . import report, runner, scale
from .contenders import CONTENDERS, GROUPS, WORKLOADS, resolve, unavailable_reason
from .machine import busy_before, describe
from .runner import SCALE_VARIANTS, Cell, Settings, format_size

DEFAULT_ECHO_CELLS = [(64, 10), (1024, 10), (16384, 10), (102400, 10), (1024, 1), (1024, 100)]
QUICK_ECHO_CELLS = [(1024, 10), (64, 100)]
FULL_SIZES = [64, 1024, 16384, 102400]
FULL_CONNECTIONS = [1, 10, 100]
STREAM_SIZE = 65536
UDP_CELL = (1024, 10)
TLS_CELLS = [(256, 10), (8192, 10)]
DEFAULT_WORKLOADS = ("echo", "stream", "udp", "http")
HTTP_CONNECTIONS = 50  # as wrk is usually run against a hello world
DEFAULT_INSTRUCTION_COUNTS = (2000, 12000)

EPILOG = """\
contenders (groups: %s):
%s

examples:
  python -m zerosock.bench                       the default matrix, a few minutes
  python -m zerosock.bench --quick               under a minute
  python -m zerosock.bench -c uvloop,zerosock -w echo -s 64,1k -n 10,100 -r 5
  python -m zerosock.bench -w echo -s 1k -n 10 --instructions    needs valgrind, strace
  python -m zerosock.bench -c apps -w http --instructions       aiohttp and uvicorn: .[apps]
  python -m zerosock.bench -c tls -w tls --instructions         TLS echo, 256 B and 8 KiB
  python -m zerosock.bench -c aio -w conns                      memory per open connection
  python -m zerosock.bench -c aio -w churn --instructions       connect, echo, close
  python -m zerosock.bench -c zerosock-aio-proto -w conns --variants plain --open 100000
  python -m zerosock.bench --json out.json --plot out.png
"""


def parse_size(text: str) -> int:
    raw = text.strip().lower().replace("ib", "").replace("b", "")
    scale = 1
    if raw.endswith("k"):
        scale, raw = 1024, raw[:-1]
    elif raw.endswith("m"):
        scale, raw = 1 << 20, raw[:-1]
    try:
        value = int(float(raw) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 64, 1k, 16KiB, 1M)")
    if not 1 <= value <= 1 << 30:
        raise argparse.ArgumentTypeError(f"size out of range (1 B..1 GiB): {text!r}")
    return value


def _int_list(text: str, what: str, low: int, high: int) -> List[int]:
    values = []
    for item in text.split(","):
        try:
            value = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of {what}: {item!r}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {low}..{high}, not {value}")
        values.append(value)
    return values


def _size_list(text: str) -> List[int]:
    return [parse_size(item) for item in text.split(",") if item.strip()]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600: {text!r}")
    return value


def _non_negative(text: str) -> float:
    if text.strip() in ("0", "0.0"):
        return 0.0
    return _positive(text)


def _loopback(text: str) -> str:
    if text == "unix":
        return text
    host = "127.0.0.1" if text == "localhost" else text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--host takes a numeric loopback address, not {text!r}")
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(
            f"{text} is not a loopback address: this benchmark only ever talks to "
            "127.0.0.0/8 or ::1")
    return str(address)


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {c.name:<22} {c.description}"
                        for c in CONTENDERS.values() if not c.hidden)
    parser = argparse.ArgumentParser(
        prog="python -m zerosock.bench",
        description="Compare zerosock with the standard library and uvloop on this machine: "
                    "echo, one-way stream and UDP servers, and aiohttp and uvicorn hello worlds "
                    "over HTTP/1.1 keep-alive, each in its own process, driven by a C load "
                    "generator.",
        epilog=EPILOG % (", ".join(GROUPS), listing),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to run")
    what.add_argument("-c", "--contenders", default="all",
                      help="comma-separated contenders or groups (default: all)")
    what.add_argument("-w", "--workloads", default=",".join(DEFAULT_WORKLOADS),
                      help="comma-separated: echo, stream, udp, http, tls, conns, churn "
                           "(default: the first four; http needs the apps extra, else it is "
                           "skipped with a note; tls is TLS 1.3 echo, 256 B and 8 KiB unless "
                           "-s/-n say otherwise; conns is the server's memory per open "
                           "connection, churn connections per second, each a connect, one "
                           "echo and a close: both plain and TLS 1.3, see --variants)")
    what.add_argument("-s", "--sizes", type=_size_list,
                      help="echo/UDP message sizes, e.g. 64,1k,16k,100k")
    what.add_argument("-n", "--connections", type=lambda t: _int_list(t, "connections", 1, 10000),
                      help="echo/UDP connection counts, e.g. 1,10,100")
    what.add_argument("--open", type=lambda t: _int_list(t, "connections", 1, 100000),
                      help="conns: connections held open (default: %s)" % ", ".join(
                          f"{k} {v:,}" for k, v in scale.DEFAULT_OPEN.items()))
    what.add_argument("--churn-clients", type=lambda t: _int_list(t, "clients", 1, 1000),
                      default=[scale.DEFAULT_CHURN_CLIENTS],
                      help=f"churn: clients connecting at once (default "
                           f"{scale.DEFAULT_CHURN_CLIENTS})")
    what.add_argument("--variants",
                      help="conns and churn: which of %s (default: all)" % "; ".join(
                          f"{w}: {', '.join(v)}" for w, v in SCALE_VARIANTS.items()))
    what.add_argument("--stream-size", type=parse_size, default=STREAM_SIZE,
                      help="write size of the stream workload (default 64 KiB)")
    what.add_argument("--stream-connections", type=lambda t: _int_list(t, "connections", 1, 10000),
                      default=[1], help="stream connection counts (default 1)")
    what.add_argument("--http-connections", type=lambda t: _int_list(t, "connections", 1, 10000),
                      default=[HTTP_CONNECTIONS],
                      help=f"HTTP keep-alive connection counts (default {HTTP_CONNECTIONS})")
    what.add_argument("--quick", action="store_true",
                      help="a small matrix, short runs, one repeat: under a minute")
    what.add_argument("--full", action="store_true",
                      help="every echo size with every connection count")
    how = parser.add_argument_group("how to measure")
    how.add_argument("-d", "--duration", type=_positive,
                     help="measured seconds per run (default 0.5; --quick 0.3; --full 1)")
    how.add_argument("--warmup", type=_non_negative,
                     help="warm-up seconds before each run, on the same connections "
                          "(default 0.2; --quick 0.1)")
    how.add_argument("-r", "--repeats", type=lambda t: _int_list(t, "repeats", 1, 100)[0],
                     help="runs of each contender per cell (default 3; --quick 1)")
    how.add_argument("--requests", type=lambda t: _int_list(t, "requests", 1, 10**12)[0],
                     help="also stop each run after this many requests")
    how.add_argument("--generator", choices=("auto", "c", "python"), default="auto",
                     help="load generator (default: C when built)")
    how.add_argument("--no-pin", action="store_true",
                     help="do not pin the server and the generator to different CPUs")
    how.add_argument("--cpus", metavar="GEN,SERVER",
                     type=lambda t: _int_list(t, "CPU numbers", 0, 65535),
                     help="the CPUs to pin the generator and the server to (default: the "
                          "first two on different physical cores)")
    how.add_argument("--host", type=_loopback, default="127.0.0.1",
                     help="where to serve: 127.0.0.1 (default), ::1, or 'unix' for Unix "
                          "sockets in a private directory (no UDP then)")
    how.add_argument("--port", type=lambda t: _int_list(t, "port", 0, 65535)[0], default=0,
                     help="port for every server (default: a free one each time)")
    how.add_argument("--idle", type=lambda t: _int_list(t, "connections", 0, 100000)[0],
                     default=0,
                     help="hold this many more connections open to each echo, stream and "
                          "http server, each echoed once, while it is measured (default 0)")
    how.add_argument("--instructions", action="store_true",
                     help="also count each server's user-space instructions (valgrind) and "
                          "syscalls (strace) per request: slow, use with one or two cells")
    how.add_argument("--only-instructions", action="store_true",
                     help="count instructions and syscalls, skip the timed runs")
    how.add_argument("--instr-requests", type=lambda t: _int_list(t, "requests", 1, 10**9),
                     help="the two request counts whose difference is taken (default "
                          "2000,12000, the longer growing by 20 per --idle connection; "
                          "churn: connections, 300,1800 and TLS 100,600)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write results as JSON ('-' for stdout)")
    out.add_argument("--plot", metavar="FILE.png", help="write a grouped bar chart")
    out.add_argument("--markdown", metavar="FILE.md",
                     help="write the tables as Markdown with the machine and date (for a README)")
    out.add_argument("--from-json", metavar="FILE",
                     help="do not measure: print, plot or convert the results of an earlier --json")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--list", action="store_true",
                     help="list contenders and whether they can run here, then exit")
    return parser


# ------------------------------------------------------------ progress


class Progress:
    """A one-line progress bar on a terminal; a line per cell elsewhere."""

    def __init__(self, stream: TextIO, enabled: bool, seconds_per_run: float = 0.0) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and stream.isatty()
        self.start = time.monotonic()
        self.last_cell: Optional[Cell] = None
        self.seconds_per_run = seconds_per_run
        self.announced = False

    def __call__(self, done: int, total: int, cell: Cell, contender: str) -> None:
        if not self.enabled:
            return
        if not self.announced and total:
            self.announced = True
            if self.seconds_per_run:
                left = total * self.seconds_per_run
                self.stream.write(f"zerosock.bench: {total} runs, about "
                                  f"{int(left // 60)}:{int(left % 60):02d}\n")
        if not self.tty:
            if contender and cell != self.last_cell:
                self.stream.write(f"[{done}/{total}] {cell.label}\n")
                self.stream.flush()
            self.last_cell = cell
            return
        width = 28
        filled = int(width * done / total) if total else width
        elapsed = time.monotonic() - self.start
        eta = ""
        if done and done < total:
            left = elapsed / done * (total - done)
            eta = f" ~{int(left // 60)}:{int(left % 60):02d} left"
        text = (f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                f"{cell.short if contender else 'done'} {contender}{eta}")
        self.stream.write(text[:120].ljust(100))
        if done >= total:
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.flush()


# ------------------------------------------------------------ the run


def build_cells(args: argparse.Namespace, workloads: Sequence[str]) -> List[Cell]:
    cells: List[Cell] = []
    explicit = args.sizes is not None or args.connections is not None
    if "echo" in workloads:
        if explicit or args.full:
            sizes = args.sizes or ([1024] if not args.full else FULL_SIZES)
            conns = args.connections or ([10] if not args.full else FULL_CONNECTIONS)
            pairs = list(itertools.product(sizes, conns))
        else:
            pairs = QUICK_ECHO_CELLS if args.quick else DEFAULT_ECHO_CELLS
        cells += [Cell("echo", s, n) for s, n in pairs]
    if "stream" in workloads:
        cells += [Cell("stream", args.stream_size, n) for n in args.stream_connections]
    if "udp" in workloads and args.host != "unix":
        sizes = [s for s in (args.sizes or [UDP_CELL[0]]) if 8 <= s <= 65507]
        conns = args.connections or [UDP_CELL[1]]
        cells += [Cell("udp", s, n) for s, n in itertools.product(sizes, conns)]
    if "http" in workloads:
        cells += [Cell("http", 0, n) for n in args.http_connections]
    if "tls" in workloads and args.host != "unix":
        if explicit:
            pairs = list(itertools.product(args.sizes or [s for s, _ in TLS_CELLS],
                                           args.connections or [TLS_CELLS[0][1]]))
        else:
            pairs = TLS_CELLS
        cells += [Cell("tls", s, n) for s, n in pairs]
    if args.host != "unix":
        wanted = args.variants.split(",") if args.variants else None
        if "conns" in workloads:
            for variant in SCALE_VARIANTS["conns"]:
                if wanted is None or variant in wanted:
                    cells += [Cell("conns", scale.REQUEST_SIZE, n, variant)
                              for n in args.open or [scale.DEFAULT_OPEN[variant]]]
        if "churn" in workloads:
            for variant in SCALE_VARIANTS["churn"]:
                if wanted is None or variant in wanted:
                    cells += [Cell("churn", scale.REQUEST_SIZE, n, variant)
                              for n in args.churn_clients]
    return cells


def list_contenders(stream: TextIO) -> None:
    for c in CONTENDERS.values():
        if c.hidden:
            continue
        reason = unavailable_reason(c.name)
        status = "ready" if not reason else f"unavailable: {reason}"
        stream.write(f"{c.name:<22} {'/'.join(c.workloads):<16} {status}\n")


def main(argv: Optional[Sequence[str]] = None, stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None) -> int:
    """Run the benchmark; returns the process exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.platform == "win32":
        stderr.write("zerosock.bench: the comparison runs on Linux and macOS; its servers "
                     "are stopped through pipes, which Windows cannot wait on\n")
        return 2
    if args.list:
        list_contenders(stdout)
        return 0
    if args.from_json:
        return from_json(args, stdout, stderr)

    names, unknown = resolve(args.contenders.split(","))
    for name in unknown:
        stderr.write(f"zerosock.bench: unknown contender {name!r} (known: "
                     f"{', '.join(n for n, c in CONTENDERS.items() if not c.hidden)}; "
                     f"groups: {', '.join(GROUPS)}); going on without it\n")
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in workloads if w not in WORKLOADS]
    for w in bad:
        stderr.write(f"zerosock.bench: unknown workload {w!r} (known: {', '.join(WORKLOADS)}); "
                     "going on without it\n")
    workloads = [w for w in workloads if w in WORKLOADS]
    if not names or not workloads:
        stderr.write("zerosock.bench: nothing to run: no known contender or workload\n")
        return 2
    cells = build_cells(args, workloads)
    if not cells:
        stderr.write("zerosock.bench: nothing to run: no size fits the chosen workloads\n")
        return 2

    counts = args.instr_requests
    if counts is not None and (len(counts) != 2 or counts[0] >= counts[1]):
        stderr.write("zerosock.bench: --instr-requests takes two counts, the smaller first "
                     f"(e.g. 2000,12000), not {','.join(map(str, counts))}\n")
        return 2
    for option in ("json", "plot", "markdown"):
        path = getattr(args, option)
        if path and path != "-" and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            stderr.write(f"zerosock.bench: --{option} {path}: no such directory\n")
            return 2

    quick = args.quick
    settings = Settings(
        host=args.host, port=args.port,
        duration=args.duration or (0.3 if quick else 1.0 if args.full else 0.5),
        warmup=args.warmup if args.warmup is not None else (0.1 if quick else 0.2),
        requests=args.requests, idle=args.idle)
    repeats = args.repeats or (1 if quick else 3)
    generator, generator_kind = runner.generator_class(args.generator)
    if generator_kind == "python":
        stderr.write("zerosock.bench: using the Python load generator (no C extension, or "
                     "ZEROSOCK_PURE_PYTHON set): its figures are capped by the generator "
                     "itself\n")

    if args.cpus is not None and args.no_pin:
        stderr.write("zerosock.bench: --cpus and --no-pin contradict each other\n")
        return 2
    if args.cpus is not None and (len(args.cpus) != 2 or args.cpus[0] == args.cpus[1]):
        stderr.write("zerosock.bench: --cpus takes two different CPU numbers: GEN,SERVER\n")
        return 2
    try:
        gen_cpu, server_cpu, pinning = runner.plan_cpus(not args.no_pin, args.cpus)
    except ValueError as exc:
        stderr.write(f"zerosock.bench: --cpus: {exc}\n")
        return 2
    settings.server_cpu = server_cpu
    machine = describe(generator_kind, pinning, settings.host)  # before pinning narrows what we see
    if not args.only_instructions and busy_before(machine):
        stderr.write(f"zerosock.bench: note: the machine is busy (load average "
                     f"{machine['load_average_before']}); throughput will be noisy\n")
    old_affinity = None
    if gen_cpu is not None:
        old_affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {gen_cpu})
    doc: Dict[str, Any] = {
        "tool": "zerosock.bench", "schema": report.SCHEMA, "machine": machine,
        "settings": {"contenders": names, "unknown_contenders": unknown,
                     "workloads": workloads, "duration": settings.duration,
                     "warmup": settings.warmup, "repeats": repeats,
                     "requests": settings.requests, "host": settings.host,
                     "idle": settings.idle,
                     "port": settings.port},
        "cells": [], "instructions": [], "interrupted": False,
    }
    results: Dict[Cell, Dict[str, List[Dict[str, Any]]]] = {}
    instructions: List[Dict[str, Any]] = []
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # the same orderly stop as Ctrl-C

    if in_main_thread:
        signal.signal(signal.SIGTERM, on_term)
    # each run also starts a server process and connects: about a third of a second
    progress = Progress(stderr, not args.no_progress,
                        settings.duration + settings.warmup + 0.35)
    try:
        if not args.only_instructions:
            runner.run_matrix(names, cells, settings, repeats, generator, progress, results)
        if args.instructions or args.only_instructions:
            run_instructions(names, cells, settings, generator,
                             (counts[0], counts[1]) if counts else None, stderr,
                             not args.no_progress, instructions)
    except KeyboardInterrupt:
        doc["interrupted"] = True
        stderr.write("\nzerosock.bench: interrupted; stopping the servers\n")
    finally:
        runner.cleanup_all()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_term)
        if old_affinity is not None:
            os.sched_setaffinity(0, old_affinity)

    for cell in cells:
        runs = results.get(cell, {})
        if not runs and args.only_instructions:
            continue
        rows = runner.summarize(cell, names, runs)
        rows += [{"contender": name, "status": "unknown",
                  "note": "no such contender (python -m zerosock.bench --list)"}
                 for name in unknown]
        doc["cells"].append(report.cell_doc(cell, rows, runs))
    doc["instructions"] = instructions

    to_stdout_json = args.json == "-"
    table_stream = stderr if to_stdout_json else stdout
    report.write_report(doc, table_stream)
    if args.json:
        if to_stdout_json:
            report.dump_json(doc, stdout)
        else:
            with open(args.json, "w") as f:
                report.dump_json(doc, f)
            table_stream.write(f"JSON written to {args.json}\n")
    write_extras(doc, args, table_stream)
    return 130 if doc["interrupted"] else 0


def write_extras(doc: Dict[str, Any], args: argparse.Namespace, stream: TextIO) -> None:
    if args.plot:
        note = report.plot(doc, args.plot)
        stream.write(f"{note}\n" if note else f"plot written to {args.plot}\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.format_markdown(doc))
        stream.write(f"Markdown written to {args.markdown}\n")


def from_json(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    try:
        with open(args.from_json) as f:
            doc = json.load(f)
        if doc.get("tool") != "zerosock.bench":
            raise ValueError("not a zerosock.bench result")
    except (OSError, ValueError) as exc:
        stderr.write(f"zerosock.bench: cannot read {args.from_json}: {exc}\n")
        return 2
    report.write_report(doc, stdout)
    write_extras(doc, args, stdout)
    return 0


def _echo_instruction_counts(idle: int) -> Tuple[int, int]:
    """The two echo run lengths. Opening ``idle`` connections costs each run
    about 180,000 instructions a connection, and that varies by about 1% run
    to run, so the longer run grows with them until the difference of the two
    runs is the requests' and not that noise (20 requests per idle connection
    keep it near 5%)."""
    small, large = DEFAULT_INSTRUCTION_COUNTS
    return small, max(large, small + 20 * idle)


def run_instructions(names: Sequence[str], cells: Sequence[Cell], settings: Settings,
                     generator: Any, asked: Optional[Tuple[int, int]], stderr: TextIO,
                     show: bool, out: List[Dict[str, Any]]) -> None:
    """Count instructions and syscalls per request for every cell, into ``out``
    (filled as it goes, so an interrupted run keeps what it counted); the
    two run lengths are ``asked``, else each workload's default."""
    tools = runner.instruction_tools()
    if not any(tools.values()):
        stderr.write("zerosock.bench: --instructions needs valgrind and strace; neither is "
                     "installed, skipping\n")
    plan_settings = Settings(host=settings.host, port=settings.port, idle=settings.idle)
    for cell in cells:
        if cell.workload == "conns":
            continue  # memory, not time: nothing to count
        counts = asked or (scale.default_instruction_counts(cell) if cell.workload == "churn"
                           else _echo_instruction_counts(settings.idle))
        rows: List[Dict[str, Any]] = []
        out.append({"workload": cell.workload, "size": cell.size,
                    "connections": cell.connections, "variant": cell.variant,
                    "label": cell.label, "rows": rows})
        for name in names:
            if not runner.applicable(name, cell):
                continue
            reason = unavailable_reason(name)
            if reason:
                rows.append({"contender": name, "requests": list(counts),
                             "error": f"skipped: {reason}"})
                continue
            if not any(tools.values()):
                rows.append({"contender": name, "requests": list(counts),
                             "error": "valgrind and strace are not installed"})
                continue
            if show:
                stderr.write(f"counting instructions: {cell.short} {name}\n")
                stderr.flush()
            rows.append(runner.measure_instructions(name, cell, plan_settings, generator, counts))


__all__ = ["main", "build_parser", "parse_size", "format_size"]
