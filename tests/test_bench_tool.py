"""The comparison benchmark as a tool: arguments, results, failures, both load generators.

Fast (tiny runs, few requests) and never asserts on a timing.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from zerosock.bench import cli, report, runner
from zerosock.bench._common import LoadGenError
from zerosock.bench._loadgen_py import LoadGenerator as PyLoadGenerator
from zerosock.bench.runner import Cell

# valgrind cannot start a program with the sanitizer build's ASan runtime preloaded
needs_valgrind_startable = pytest.mark.skipif(
    "asan" in os.environ.get("LD_PRELOAD", ""),
    reason="valgrind cannot run under a preloaded AddressSanitizer runtime")

TINY = ["-d", "0.1", "--warmup", "0.02", "-r", "1", "--no-pin", "--no-progress"]


def run_cli(*args: str) -> tuple:
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(args), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def rows_of(doc: Dict[str, Any], workload: str) -> Dict[str, Dict[str, Any]]:
    cell = next(c for c in doc["cells"] if c["workload"] == workload)
    return {r["contender"]: r for r in cell["rows"]}


# ------------------------------------------------------------ arguments


@pytest.mark.parametrize("text, value", [("64", 64), ("1k", 1024), ("16KiB", 16384),
                                         ("100k", 102400), ("1M", 1 << 20), ("1.5k", 1536)])
def test_parse_size(text: str, value: int) -> None:
    assert cli.parse_size(text) == value


@pytest.mark.parametrize("args", [
    ["-s", "abc"], ["-s", "0"], ["-n", "0"], ["-n", "x"], ["-d", "-1"], ["-d", "0"],
    ["--host", "8.8.8.8"], ["--host", "example.org"], ["--port", "70000"], ["-r", "0"],
    ["--generator", "fortran"],
])
def test_bad_arguments_exit_2(args: List[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_nothing_known_to_run_exits_2() -> None:
    status, _, err = run_cli("-c", "nosuch", *TINY)
    assert status == 2
    assert "unknown contender 'nosuch'" in err
    status, _, err = run_cli("-w", "nope", *TINY)
    assert status == 2
    assert "unknown workload 'nope'" in err


@pytest.mark.parametrize("args, message", [
    (["--instr-requests", "5000,1000"], "smaller first"),
    (["--instr-requests", "1000"], "two counts"),
    (["--json", "/no/such/dir/out.json"], "no such directory"),
    (["--plot", "/no/such/dir/out.png"], "no such directory"),
    (["--cpus", "0"], "two different CPU numbers"),
    (["--cpus", "0,0"], "two different CPU numbers"),
    (["--cpus", "0,4096"], "not available"),
    (["--cpus", "0,1", "--no-pin"], "contradict"),
])
def test_bad_combinations_exit_2_before_running(args: List[str], message: str) -> None:
    # none of these gets as far as pinning or measuring
    status, _, err = run_cli("-c", "stdlib-threads", *args, "-d", "0.1", "--no-progress")
    assert status == 2 and message in err


def test_cpu_plan_picks_two_cpus_or_says_why_not() -> None:
    gen, server, text = runner.plan_cpus(False)
    assert gen is None and server is None and "not pinned" in text
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2:
        gen, server, text = runner.plan_cpus(True)
        assert gen is not None and server is not None and gen != server
        assert f"server on CPU {server}" in text


def test_groups_and_unknown_names_resolve() -> None:
    from zerosock.bench.contenders import GROUPS, resolve
    known, unknown = resolve(["uvloop", "c-epoll", "bogus", "uvloop-proto"])
    assert known == list(GROUPS["uvloop"]) + ["c-epoll"]
    assert unknown == ["bogus"]
    assert "selftest-crash" not in GROUPS["all"]


def test_list_shows_every_contender() -> None:
    status, out, _ = run_cli("--list")
    assert status == 0
    for name in ("stdlib-threads", "asyncio-proto", "uvloop-streams", "zerosock-aio-proto",
                 "c-epoll"):
        assert name in out


def test_cells_follow_the_options() -> None:
    args = cli.build_parser().parse_args(["-w", "echo,udp", "-s", "64,100k", "-n", "1,10"])
    cells = cli.build_cells(args, ["echo", "udp"])
    assert [c for c in cells if c.workload == "echo"] == [
        Cell("echo", 64, 1), Cell("echo", 64, 10), Cell("echo", 102400, 1),
        Cell("echo", 102400, 10)]
    # 100 KiB does not fit in a datagram: UDP keeps the sizes that do
    assert [c for c in cells if c.workload == "udp"] == [Cell("udp", 64, 1), Cell("udp", 64, 10)]


# ------------------------------------------------------------ tiny runs


def test_tiny_run_json_structure(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    status, out, err = run_cli("-c", "stdlib-selectors,asyncio-proto,nosuch",
                               "-w", "echo,stream,udp", "-s", "1k", "-n", "2",
                               "--stream-size", "16k", "-r", "2", "-d", "0.1",
                               "--warmup", "0.02", "--no-pin", "--no-progress",
                               "--json", str(path))
    assert status == 0, err
    assert "unknown contender 'nosuch'" in err
    doc = json.loads(path.read_text())
    assert doc["tool"] == "zerosock.bench" and doc["schema"] == report.SCHEMA
    for key in ("cpu", "logical_cpus", "kernel", "python", "zerosock", "load_generator", "date"):
        assert doc["machine"][key]
    assert [c["workload"] for c in doc["cells"]] == ["echo", "stream", "udp"]
    for workload in ("echo", "stream", "udp"):
        rows = rows_of(doc, workload)
        for name in ("stdlib-selectors", "asyncio-proto"):
            row = rows[name]
            assert row["status"] == "ok", row
            assert row["runs"] == 2 and len(row["rates"]) == 2
            assert row["rate"] > 0 and row["cpu_per_op_us"] is not None
        assert rows["asyncio-proto"]["vs_asyncio"] == pytest.approx(1.0)
        assert rows["stdlib-selectors"]["vs_uvloop"] is None  # uvloop not in this run
    assert rows_of(doc, "echo")["nosuch"]["status"] == "unknown"
    assert any(line.startswith("nosuch") and "UNKNOWN" in line for line in out.splitlines())
    echo = rows_of(doc, "echo")["stdlib-selectors"]
    assert 0 < echo["p50_us"] <= echo["p99_us"]
    # every run is kept, with its figures, for later analysis
    runs = doc["cells"][0]["runs"]["asyncio-proto"]
    assert len(runs) == 2 and all(r["ops"] > 0 for r in runs)
    # the table went to stdout, with the machine description
    assert "echo 1 KiB, 2 connections" in out and doc["machine"]["cpu"] in out


def test_json_to_stdout_keeps_the_table_on_stderr() -> None:
    status, out, err = run_cli("-c", "stdlib-threads", "-w", "echo", "-s", "64", "-n", "1",
                               *TINY, "--json", "-")
    assert status == 0
    doc = json.loads(out)
    assert rows_of(doc, "echo")["stdlib-threads"]["status"] == "ok"
    assert "stdlib-threads" in err


def test_unix_sockets(tmp_path: Path) -> None:
    path = tmp_path / "unix.json"
    status, out, err = run_cli("--host", "unix", "-c", "stdlib-selectors,asyncio-streams",
                               "-w", "echo,stream,udp", "-s", "1k", "-n", "2",
                               *TINY, "--json", str(path))
    assert status == 0, err
    doc = json.loads(path.read_text())
    assert [c["workload"] for c in doc["cells"]] == ["echo", "stream"]  # no UDP over Unix
    for cell in doc["cells"]:
        assert all(r["status"] == "ok" for r in cell["rows"]), cell["rows"]
    assert "Unix sockets" in out


def test_crashing_contender_is_shown_and_the_run_goes_on() -> None:
    status, out, _ = run_cli("-c", "selftest-crash,stdlib-threads", "-w", "echo",
                             "-s", "64", "-n", "1", "-d", "0.3", "--warmup", "0.02", "-r", "1",
                             "--no-pin", "--no-progress")
    assert status == 0
    crash_line = next(line for line in out.splitlines() if line.startswith("selftest-crash"))
    assert "FAILED" in crash_line and "exited with status 3" in crash_line
    threads_line = next(line for line in out.splitlines() if line.startswith("stdlib-threads"))
    assert "FAILED" not in threads_line


def test_a_server_that_never_answers_is_a_failure() -> None:
    status, out, _ = run_cli("-c", "selftest-silent", "-w", "echo", "-s", "64", "-n", "2",
                             *TINY)
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith("selftest-silent"))
    assert "FAILED" in line and "no request completed" in line


def test_port_in_use_is_a_failure_in_the_table() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        status, out, _ = run_cli("-c", "stdlib-threads,asyncio-streams", "-w", "echo",
                                 "-s", "64", "-n", "1", "--port", str(port), *TINY)
    assert status == 0
    for name in ("stdlib-threads", "asyncio-streams"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert "FAILED" in line and "port in use" in line


def test_unavailable_contender_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from zerosock.bench import contenders
    real = contenders.unavailable_reason
    monkeypatch.setattr(contenders, "unavailable_reason",
                        lambda n: "uvloop is not installed" if n.startswith("uvloop") else real(n))
    monkeypatch.setattr(runner, "unavailable_reason", contenders.unavailable_reason)
    status, out, _ = run_cli("-c", "uvloop-proto,stdlib-threads", "-w", "echo", "-s", "64",
                             "-n", "1", *TINY)
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith("uvloop-proto"))
    assert "skipped" in line and "uvloop is not installed" in line


def test_ctrl_c_stops_every_server(tmp_path: Path) -> None:
    # A port nobody else uses marks this run's servers in the process table.
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "zerosock.bench", "-c", "stdlib-threads", "-w", "echo",
         "-s", "64", "-n", "1", "-d", "30", "--warmup", "0", "-r", "1", "--no-pin",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        preexec_fn=_default_sigint)
    marker = f'"port": {port}'
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _servers_with(marker):
            time.sleep(0.05)
        assert _servers_with(marker), "the server never started"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert b"interrupted" in err
    assert b"Interrupted" in out
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _servers_with(marker):
        time.sleep(0.05)
    assert not _servers_with(marker)


def _default_sigint() -> None:
    # What a terminal's Ctrl-C meets.  A shell starts background jobs (a CI step,
    # ``pytest &``) with SIGINT ignored, children inherit that, and an
    # interpreter started so never installs its KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _servers_with(marker: str) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if "zerosock.bench._server" in cmdline and marker in cmdline:
            found.append(int(entry))
    return found


# ------------------------------------------------------------ load generators


@pytest.fixture(params=[pytest.param("c", marks=pytest.mark.c_extension), "python"],
                ids=["c", "py"])
def generator(request: pytest.FixtureRequest) -> Any:
    if request.param == "python":
        return PyLoadGenerator
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    from zerosock import _loadgen_c  # a missing extension fails here: a broken build must not pass
    if not _loadgen_c.SUPPORTED:
        pytest.skip("the C load generator needs epoll")
    return _loadgen_c.LoadGenerator


@pytest.mark.parametrize("mode, size, connections", [
    ("echo", 64, 1), ("echo", 100 * 1024, 3), ("echo", 1024, 20),
    ("stream", 16 * 1024, 2), ("udp", 512, 4),
])
def test_generator_counts_exactly_and_verifies_bytes(generator: Any, mode: str, size: int,
                                                     connections: int) -> None:
    server = runner.ServerProcess("stdlib-selectors", mode, "127.0.0.1").start()
    try:
        with generator(mode, ("127.0.0.1", server.port), connections, size) as gen:
            gen.connect(5.0)
            result = gen.run(30.0, max_ops=300, drain=True)
            again = gen.run(30.0, max_ops=50, drain=True)
    finally:
        server.close()
    assert result["ops"] == 300 and again["ops"] == 50
    assert result["bytes"] == 300 * size
    assert result["inflight_left"] == 0 and result["lost"] == 0
    if mode != "stream":
        lat = result["latency_us"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]


def test_generator_stops_at_the_deadline(generator: Any) -> None:
    server = runner.ServerProcess("stdlib-threads", "echo", "127.0.0.1").start()
    try:
        with generator("echo", ("127.0.0.1", server.port), 2, 64) as gen:
            gen.connect()
            result = gen.run(0.2, drain=False)
    finally:
        server.close()
    assert result["ops"] > 0
    assert result["seconds"] < 5  # bounded by time, not by a count


def test_generator_works_over_ipv6(generator: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    server = runner.ServerProcess("stdlib-selectors", "echo", "::1").start()
    try:
        with generator("echo", ("::1", server.port), 2, 1024) as gen:
            gen.connect()
            assert gen.run(10.0, max_ops=100)["ops"] == 100
    finally:
        server.close()


class _BadServer:
    """A TCP server in a thread that answers wrongly: flips a byte, or hangs up."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple:
        return self.listener.getsockname()[:2]

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                if self.behaviour == "hang-up":
                    conn.recv(65536)
                    return
                served = 0
                while True:
                    data = bytearray(conn.recv(65536))
                    if not data:
                        return
                    served += 1
                    if served == 5:
                        data[len(data) // 2] ^= 0xFF
                    conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=10)


@pytest.mark.parametrize("behaviour, message", [("corrupt", "differs"), ("hang-up", "closed")])
def test_generator_reports_a_wrong_server(generator: Any, behaviour: str, message: str) -> None:
    bad = _BadServer(behaviour)
    try:
        with generator("echo", bad.address, 1, 100) as gen:
            gen.connect()
            with pytest.raises(LoadGenError, match=message):
                gen.run(10.0, max_ops=100)
    finally:
        bad.close()


def test_generator_rejects_impossible_requests(generator: Any) -> None:
    with pytest.raises(ValueError):
        generator("udp", ("127.0.0.1", 9), 1, 100_000)
    with pytest.raises(ValueError):
        generator("ping", ("127.0.0.1", 9), 1, 64)
    with pytest.raises(ValueError):
        generator("echo", ("127.0.0.1", 9), 0, 64)


def test_generator_connect_refused(generator: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with generator("echo", ("127.0.0.1", port), 1, 64) as gen:
        with pytest.raises(LoadGenError, match="connect"):
            gen.connect(2.0)


# ------------------------------------------------------------ aggregation and output


def _run(rate: float, cpu: float, ok: bool = True) -> Dict[str, Any]:
    if not ok:
        return {"status": "failed", "error": "server exited with status 3 during the run"}
    return {"status": "ok", "rate": rate, "ops": 1000, "lost": 0, "cpu_per_op_us": cpu,
            "server_cpu_util": 0.5, "gen_cpu_util": 0.95, "gen_saturated": True,
            "latency_us": {"p50": 10.0, "p99": 20.0}}


def test_summarize_medians_spread_ratios_and_failures() -> None:
    cell = Cell("echo", 1024, 10)
    names = ["asyncio-proto", "stdlib-threads", "selftest-crash"]
    runs = {
        "asyncio-proto": [_run(100, 10), _run(110, 12), _run(90, 11)],
        "stdlib-threads": [_run(200, 5), _run(220, 4), _run(0, 0, ok=False)],
        "selftest-crash": [_run(0, 0, ok=False)],
    }
    rows = {r["contender"]: r for r in runner.summarize(cell, names, runs)}
    base = rows["asyncio-proto"]
    assert base["rate"] == 100 and base["cpu_per_op_us"] == 11
    assert base["spread"] == pytest.approx(0.10)
    threads = rows["stdlib-threads"]
    assert threads["rate"] == 210 and threads["vs_asyncio"] == pytest.approx(2.1)
    assert threads["cpu_vs_asyncio"] == pytest.approx(4.5 / 11)
    assert "1/3 runs failed" in threads["note"] and "generator busy" in threads["note"]
    assert rows["selftest-crash"]["status"] == "failed"
    text = report.format_cell(cell, list(rows.values()), repeats=3)
    assert "FAILED" in text and "exited with status 3" in text
    assert "2.10" in text  # the throughput ratio to asyncio


def test_report_and_plot_from_a_document(tmp_path: Path) -> None:
    from zerosock.bench.machine import describe
    cell = Cell("echo", 64, 10)
    runs = {"asyncio-proto": [_run(100, 10)], "uvloop-proto": [_run(300, 3)]}
    rows = runner.summarize(cell, list(runs), runs)
    doc = {"machine": describe("c", "not pinned"), "settings": {"repeats": 1},
           "cells": [report.cell_doc(cell, rows, runs)], "instructions": [
               {"workload": "echo", "size": 64, "connections": 10, "rows": [
                   {"contender": "asyncio-proto", "requests": [2000, 12000],
                    "instructions_per_op": 15000.0, "syscalls_per_op": 2.1,
                    "syscalls_by_name": {"sendto": 1.0, "recvfrom": 1.0, "epoll_wait": 0.1}},
                   {"contender": "uvloop-proto", "requests": [2000, 12000],
                    "instructions_per_op": 3800.0, "syscalls_per_op": 2.1}]}]}
    text = report.format_report(doc)
    assert "uvloop-proto" in text and "15,000" in text and "3.95" in text
    assert doc["machine"]["kernel"] in text
    pytest.importorskip("matplotlib")
    path = tmp_path / "plot.png"
    assert report.plot(doc, str(path)) is None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_instruction_and_syscall_parsers(tmp_path: Path) -> None:
    callgrind = tmp_path / "callgrind.out"
    callgrind.write_text("version: 1\ncmd: python\nevents: Ir\nsummary: 123456\ntotals: 123456\n")
    assert runner._callgrind_total(str(callgrind)) == 123456
    strace = tmp_path / "strace.out"
    strace.write_text(
        "% time     seconds  usecs/call     calls    errors syscall\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        " 40.00    0.000400           2       200           sendto\n"
        " 35.00    0.000350           1       210        10 recvfrom\n"
        " 25.00    0.000250          12        20           epoll_wait\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        "100.00    0.001000           2       430        10 total\n")
    assert runner._strace_counts(str(strace)) == {"sendto": 200, "recvfrom": 210,
                                                  "epoll_wait": 20}


@needs_valgrind_startable
def test_instructions_and_syscalls_per_request(tmp_path: Path) -> None:
    tools = runner.instruction_tools()
    if not any(tools.values()):
        pytest.skip("neither valgrind nor strace is installed")
    generator, _ = runner.generator_class("auto")
    # the C reference server when it is built: its count is small and known
    contender = "c-epoll" if not runner.unavailable_reason("c-epoll") else "stdlib-selectors"
    # One connection: two would let the machine's load decide how many
    # requests an epoll_wait returns, a difference larger than this server's
    # few dozen instructions a request.
    cell = Cell("echo", 256, 1)
    # 2,000 requests apart: a loaded machine moves the C server's start-up and
    # shutdown by some 40,000 instructions, which 500 requests did not outweigh
    result = runner.measure_instructions(contender, cell, runner.Settings(), generator,
                                         counts=(100, 2100))
    assert result["requests"] == [100, 2100]
    if tools["valgrind"]:
        assert "instructions_error" not in result, result
        limit = 2000 if contender == "c-epoll" else 200_000
        assert 0 < result["instructions_per_op"] < limit
    if tools["strace"]:
        assert "syscalls_error" not in result, result
        # at least a read and a write per request
        assert result["syscalls_per_op"] >= 2 - 0.2
        assert result["syscalls_by_name"]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_process_cpu_counts_this_process() -> None:
    before = runner.process_cpu(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    after = runner.process_cpu(os.getpid())
    spent = runner.cpu_between(before, after)
    assert spent is not None and spent >= 0.04
    assert runner.cpu_between(None, after) is None


def test_without_the_c_extension_the_python_generator_is_labelled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import zerosock
    monkeypatch.setitem(sys.modules, "zerosock._loadgen_c", None)  # as if never built
    monkeypatch.delattr(zerosock, "_loadgen_c", raising=False)
    from zerosock.bench.contenders import unavailable_reason
    generator, kind = runner.generator_class("auto")
    assert kind == "python" and generator is PyLoadGenerator
    assert unavailable_reason("c-epoll") == "the C extension is not built"
    with pytest.raises(SystemExit, match="C load generator is unavailable"):
        runner.generator_class("c")
    status, out, err = run_cli("-c", "stdlib-threads,c-epoll", "-w", "echo", "-s", "64",
                               "-n", "1", *TINY)
    assert status == 0
    assert "Python load generator" in err and "Python load generator" in out
    line = next(line for line in out.splitlines() if line.startswith("c-epoll"))
    assert "skipped" in line and "not built" in line


def test_process_cpu_without_proc_uses_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psutil")
    monkeypatch.setattr(runner.os.path, "exists", lambda path: False)
    snapshot = runner.process_cpu(os.getpid())
    assert snapshot is not None and snapshot.user + snapshot.system > 0


def test_from_json_prints_plots_and_writes_markdown(tmp_path: Path) -> None:
    first = tmp_path / "run.json"
    status, _, err = run_cli("-c", "stdlib-threads", "-w", "echo", "-s", "64", "-n", "1",
                             *TINY, "--json", str(first))
    assert status == 0, err
    markdown = tmp_path / "run.md"
    status, out, _ = run_cli("--from-json", str(first), "--markdown", str(markdown))
    assert status == 0
    assert "stdlib-threads" in out and "echo 64 B, 1 connection" in out
    text = markdown.read_text()
    assert "| stdlib-threads |" in text and "python -m zerosock.bench" in text
    status, _, err = run_cli("--from-json", str(tmp_path / "missing.json"))
    assert status == 2 and "cannot read" in err


# ------------------------------------------------------------ HTTP/1.1 keep-alive

_HELLO = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"


class _HttpServer:
    """HTTP/1.1 keep-alive in threads, answering every request with canned
    bytes sent in the pieces given (a pause between them, so heads and bodies
    arrive split across reads), or wrongly on purpose."""

    def __init__(self, pieces: List[bytes], wrong_at: int = 0) -> None:
        self.pieces = pieces
        self.wrong_at = wrong_at  # the request (1-based) answered with the last piece only
        self.requests: List[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.address = self.listener.getsockname()[:2]
        self.threads: List[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(10)
            pending = b""
            try:
                while True:
                    while b"\r\n\r\n" not in pending:
                        data = conn.recv(65536)
                        if not data:
                            return
                        pending += data
                    request, pending = pending.split(b"\r\n\r\n", 1)
                    self.requests.append(request + b"\r\n\r\n")
                    if len(self.requests) == self.wrong_at:
                        conn.sendall(self.pieces[-1])
                        continue
                    for i, piece in enumerate(self.pieces[:-1] if self.wrong_at else self.pieces):
                        if i:
                            time.sleep(0.002)
                        conn.sendall(piece)
            except OSError:
                return

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept on Linux
        except OSError:
            pass
        self.listener.close()
        self.accepter.join(timeout=10)
        for thread in self.threads:
            thread.join(timeout=10)


@pytest.mark.parametrize("pieces", [
    [_HELLO],
    # the head split inside a line, inside the blank line, then the body in two
    [_HELLO[:20], _HELLO[20:62], _HELLO[62:64], _HELLO[64:70], _HELLO[70:]],
    # bare LF line ends, and a 204 that has no body and needs no length
    [b"HTTP/1.1 204 No Content\nServer: x\n\n"],
    # a body far larger than one read
    [b"HTTP/1.1 200 OK\r\ncontent-length:  300000 \r\n\r\n" + b"x" * 300000],
], ids=["whole", "split", "lf-204", "large"])
def test_http_mode_reads_whole_responses(generator: Any, pieces: List[bytes]) -> None:
    server = _HttpServer(pieces)
    try:
        with generator("http", server.address, 3) as gen:
            gen.connect()
            result = gen.run(30.0, max_ops=40, drain=True)
            again = gen.run(30.0, max_ops=7, drain=True)
    finally:
        server.close()
    response = b"".join(pieces)
    assert result["ops"] == 40 and again["ops"] == 7
    assert result["bytes"] == 40 * len(response)
    assert result["inflight_left"] == 0
    lat = result["latency_us"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    host, port = server.address
    assert server.requests == [f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()] * 47


def test_http_mode_sends_the_request_given(generator: Any) -> None:
    server = _HttpServer([_HELLO])
    request = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\nAccept: */*\r\n\r\n"
    try:
        with generator("http", server.address, 2, request=request) as gen:
            gen.connect()
            assert gen.run(30.0, max_ops=10, drain=True)["ops"] == 10
    finally:
        server.close()
    assert server.requests == [request] * 10
    with pytest.raises(ValueError, match="blank line"):
        generator("http", server.address, 1, request=b"GET / HTTP/1.1\r\n")
    with pytest.raises(ValueError, match="only in the http mode"):
        generator("echo", server.address, 1, 64, request=request)


@pytest.mark.parametrize("pieces, wrong_at, message", [
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"], 0,
     "chunked"),
    ([b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"], 0, "no Content-Length"),
    ([b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"], 0,
     "status HTTP/1.1 404 Not Found, not a 2xx"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"], 0,
     "Connection: close"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"], 0,
     "two different Content-Length"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello"], 0, "not a number"),
    ([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"], 0, "not an HTTP/1.x status line"),
    ([b"HTTP/1.1 200 OK\r\nBroken header\r\n\r\n"], 0, "without a colon"),
    ([b"HTTP/1.1 200 OK\r\nX: " + b"y" * 17000 + b"\r\n\r\n"], 0, "longer than 16 KiB"),
    ([_HELLO, _HELLO + b"tail"], 5, "past the end of a response"),
])
def test_http_mode_rejects_what_it_cannot_frame(generator: Any, pieces: List[bytes],
                                                wrong_at: int, message: str) -> None:
    server = _HttpServer(pieces, wrong_at)
    try:
        with generator("http", server.address, 1) as gen:
            gen.connect()
            with pytest.raises(LoadGenError, match=message):
                gen.run(10.0, max_ops=20)
    finally:
        server.close()


def test_http_mode_reports_a_server_that_hangs_up(generator: Any) -> None:
    bad = _BadServer("hang-up")
    try:
        with generator("http", bad.address, 1) as gen:
            gen.connect()
            with pytest.raises(LoadGenError, match="closed"):
                gen.run(10.0, max_ops=5)
    finally:
        bad.close()


def test_http_cells_and_apps_group() -> None:
    from zerosock.bench.contenders import GROUPS
    args = cli.build_parser().parse_args(["-w", "http", "--http-connections", "1,50"])
    assert cli.build_cells(args, ["http"]) == [Cell("http", 0, 1), Cell("http", 0, 50)]
    assert Cell("http", 0, 50).label == "http hello world, 50 keep-alive connections"
    assert set(GROUPS["apps"]) == {f"{loop}-{app}" for loop in ("asyncio", "uvloop", "zerosock-aio",
                                                                 "zerosock-aio-uring")
                                   for app in ("aiohttp", "uvicorn")}
    assert runner.applicable("zerosock-aio-uvicorn", Cell("http", 0, 50))
    assert not runner.applicable("zerosock-aio-uvicorn", Cell("echo", 64, 10))
    assert not runner.applicable("zerosock-aio-proto", Cell("http", 0, 50))


def test_apps_run_on_every_loop_and_compare_with_their_own_framework() -> None:
    from zerosock.bench.contenders import GROUPS, unavailable_reason
    missing = {n: unavailable_reason(n) for n in GROUPS["apps"] if unavailable_reason(n)}
    if len(missing) == len(GROUPS["apps"]):
        pytest.skip(f"no framework installed: {next(iter(missing.values()))}")
    status, out, err = run_cli("-c", "apps", "-w", "http", "--http-connections", "4", *TINY,
                               "--json", "-")
    assert status == 0, err
    rows = rows_of(json.loads(out), "http")
    for name in GROUPS["apps"]:
        if name in missing:
            assert rows[name]["status"] == "skipped"
            continue
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["ops"] if "ops" in rows[name] else rows[name]["rate"] > 0
        framework = name.rsplit("-", 1)[1]
        if f"asyncio-{framework}" not in missing:
            # against the same framework on asyncio, never against a bare Protocol server
            assert rows[name]["vs_asyncio"] == pytest.approx(
                rows[name]["rate"] / rows[f"asyncio-{framework}"]["rate"])


def test_apps_missing_are_skipped_with_the_extra_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from zerosock.bench import contenders
    real = contenders._importable
    monkeypatch.setattr(contenders, "_importable",
                        lambda m: f"{m} is not installed" if m in ("aiohttp", "uvicorn")
                        else real(m))
    status, out, err = run_cli("-c", "all", "-w", "echo,http", "-s", "64", "-n", "1",
                               "--http-connections", "2", *TINY)
    assert status == 0, err
    for name in ("asyncio-aiohttp", "asyncio-uvicorn", "zerosock-aio-aiohttp"):
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert "skipped" in line and "is not installed (pip install 'zerosock[apps]')" in line
    line = next(line for line in out.splitlines() if line.startswith("zerosock-aio-proto "))
    assert "skipped" not in line and "FAILED" not in line


def test_http_report_compares_each_framework_with_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zerosock.bench.machine import describe
    # The report is under test, not which frameworks this interpreter has.
    monkeypatch.setattr(runner, "unavailable_reason", lambda name: None)
    cell = Cell("http", 0, 50)
    runs = {"asyncio-aiohttp": [_run(100, 10)], "zerosock-aio-aiohttp": [_run(150, 6)],
            "asyncio-uvicorn": [_run(200, 5)], "uvloop-uvicorn": [_run(300, 4)]}
    rows = runner.summarize(cell, list(runs), runs)
    by_name = {r["contender"]: r for r in rows}
    assert by_name["zerosock-aio-aiohttp"]["vs_asyncio"] == pytest.approx(1.5)
    assert by_name["uvloop-uvicorn"]["vs_asyncio"] == pytest.approx(1.5)
    doc = {"machine": describe("c", "not pinned"), "settings": {"repeats": 1},
           "cells": [report.cell_doc(cell, rows, runs)], "instructions": [
               {"workload": "http", "size": 0, "connections": 50, "rows": [
                   {"contender": "asyncio-uvicorn", "requests": [2000, 10000],
                    "instructions_per_op": 150000.0, "syscalls_per_op": 3.0},
                   {"contender": "uvloop-uvicorn", "requests": [2000, 10000],
                    "instructions_per_op": 100000.0, "syscalls_per_op": 2.5}]}]}
    text = report.format_report(doc)
    assert "http hello world, 50 keep-alive connections" in text
    assert "150,000" in text and "0.67" in text  # uvloop-uvicorn against asyncio-uvicorn
    assert "| uvloop-uvicorn | 100,000 | 2.50 |" in report.format_markdown(doc)
    pytest.importorskip("matplotlib")
    path = tmp_path / "plot.png"
    assert report.plot(doc, str(path)) is None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("server", ["aiohttp", "uvicorn"])
def test_app_profile_serves_over_tls_on_plain_and_aiofastnet_loops(server: str) -> None:
    """benchmarks/app_profile.py's TLS client and server, on the C loop and on
    stock asyncio patched by aiofastnet: every request is answered (the server
    checks the count) and the Python-level calls per request are reported."""
    for module in (server, "trustme", "aiofastnet"):
        pytest.importorskip(module)
    if server == "uvicorn":
        pytest.importorskip("httptools")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "app_profile.py"
    done = subprocess.run(
        [sys.executable, str(script), "--calls", "--tls", "--servers", server,
         "--loops", "zerosock,asyncio+aiofastnet", "--short", "10", "--long", "30",
         "-c", "5", "--top", "1000"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    header = next(line for line in done.stdout.splitlines() if "zerosock" in line)
    assert "asyncio+aiofastnet" in header
    assert "app_profile.py:" in done.stdout  # the handler, once per request


# ------------------------------------------------------------ TLS echo


def test_tls_cells_and_group() -> None:
    from zerosock.bench.contenders import GROUPS
    args = cli.build_parser().parse_args(["-w", "tls"])
    assert cli.build_cells(args, ["tls"]) == [Cell("tls", 256, 10), Cell("tls", 8192, 10)]
    args = cli.build_parser().parse_args(["-w", "tls", "-s", "1k", "-n", "2,3"])
    assert cli.build_cells(args, ["tls"]) == [Cell("tls", 1024, 2), Cell("tls", 1024, 3)]
    assert set(GROUPS["tls"]) == {"asyncio-proto", "uvloop-proto", "zerosock-aio-proto",
                                  "zerosock-aio-uring-proto",
                                  "asyncio+aiofastnet-proto", "uvloop+aiofastnet-proto"}
    # not part of the default workloads: TLS is asked for
    args = cli.build_parser().parse_args([])
    assert "tls" not in args.workloads.split(",")


def test_tls_tiny_run(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    status, out, err = run_cli("-c", "asyncio-proto,zerosock-aio-proto,stdlib-threads",
                               "-w", "tls", "-s", "256", "-n", "2", *TINY, "--json", str(path))
    assert status == 0, err
    rows = rows_of(json.loads(path.read_text()), "tls")
    for name in ("asyncio-proto", "zerosock-aio-proto"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["rate"] > 0
    assert "stdlib-threads" not in rows  # no TLS server of that kind
    assert "tls 256 B, 2 connections" in out


def test_tls_aiofastnet_missing_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from zerosock.bench import contenders
    real = contenders.unavailable_reason
    monkeypatch.setattr(contenders, "unavailable_reason",
                        lambda n: "aiofastnet is not installed" if "aiofastnet" in n else real(n))
    monkeypatch.setattr(runner, "unavailable_reason", contenders.unavailable_reason)
    status, out, _ = run_cli("-c", "uvloop+aiofastnet-proto,asyncio-proto", "-w", "tls",
                             "-s", "256", "-n", "1", *TINY)
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith("uvloop+aiofastnet-proto"))
    assert "skipped" in line and "aiofastnet is not installed" in line


def test_tls_generator_counts_exactly() -> None:
    from zerosock.bench._loadgen_tls import TLSLoadGenerator
    server = runner.ServerProcess("zerosock-aio-proto", "tls", "127.0.0.1")
    try:
        server.start()
        with TLSLoadGenerator("tls", runner.generator_address(server), 3, 5000) as gen:
            gen.connect(30.0)
            stats = gen.run(60.0, max_ops=40, drain=True)
        assert stats["ops"] == 40 and stats["bytes"] == 40 * 5000
        assert stats["inflight_left"] == 0
    finally:
        server.close()
    with pytest.raises(LoadGenError):
        TLSLoadGenerator("echo", ("127.0.0.1", 1), 1, 1)


@needs_valgrind_startable
def test_tls_instructions_per_request() -> None:
    if not runner.instruction_tools()["valgrind"]:
        pytest.skip("valgrind is not installed")
    generator, _ = runner.generator_class("auto")
    result = runner.measure_instructions("zerosock-aio-proto", Cell("tls", 256, 2),
                                         runner.Settings(), generator, counts=(50, 250))
    assert "instructions_error" not in result, result
    # a TLS record each way and the echo: thousands of instructions, not millions
    assert 2_000 < result["instructions_per_op"] < 200_000


# ------------------------------------------------------------ connection scale: conns, churn


def test_scale_cells_options_and_contenders() -> None:
    args = cli.build_parser().parse_args(["-w", "conns,churn"])
    cells = cli.build_cells(args, ["conns", "churn"])
    assert cells == [Cell("conns", 64, 5000, "plain"), Cell("conns", 64, 2000, "tls"),
                     Cell("conns", 64, 5000, "streams"), Cell("churn", 64, 10, "plain"),
                     Cell("churn", 64, 10, "tls"), Cell("churn", 64, 10, "tls-resume")]
    args = cli.build_parser().parse_args(["-w", "conns", "--open", "100000",
                                          "--variants", "plain"])
    assert cli.build_cells(args, ["conns"]) == [Cell("conns", 64, 100_000, "plain")]
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["-w", "conns", "--open", "100001"])
    assert exited.value.code == 2
    # streams are held by streams servers, the rest by Protocols on every loop
    plain, streams = Cell("conns", 64, 10, "plain"), Cell("conns", 64, 10, "streams")
    assert runner.applicable("uvloop+aiofastnet-proto", plain)
    assert runner.applicable("zerosock-aio-py-proto", plain)
    assert not runner.applicable("zerosock-aio-proto", streams)
    assert runner.applicable("asyncio-streams", streams)
    assert not runner.applicable("stdlib-threads", plain)
    assert "memory per open connection, TLS 1.3, 2,000 connections" == cells[1].label
    assert Cell.from_doc(report.cell_doc(cells[5], [], {})) == cells[5]


def test_holder_spreads_sources_and_checks_every_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    from zerosock.bench import _loadgen_scale
    if not sys.platform.startswith("linux"):
        pytest.skip("only Linux answers on all of 127.0.0.0/8")
    # a narrow port range as far as the holder knows: 120 connections need 3 sources
    monkeypatch.setattr(_loadgen_scale, "ephemeral_port_count", lambda: 60)
    server = runner.ServerProcess("zerosock-aio-proto", "echo", "127.0.0.1").start()
    try:
        with _loadgen_scale.ConnectionHolder(runner.generator_address(server)) as holder:
            holder.open(120, 60.0)
            assert holder.still_open() == 120
            sources = {c.transport.get_extra_info("sockname")[0] for c in holder.conns}
            blocks = {address.rsplit(".", 1)[0] for address in sources}
            assert len(blocks) == 1 and blocks.pop().startswith("127.")
            assert sorted(int(address.rsplit(".", 1)[1]) for address in sources) == [1, 2, 3]
    finally:
        server.close()
    # a server that answers wrongly or hangs up is an error, not a figure
    silent = runner.ServerProcess("selftest-crash", "echo", "127.0.0.1").start()
    try:
        with _loadgen_scale.ConnectionHolder(runner.generator_address(silent)) as holder:
            with pytest.raises(LoadGenError):
                holder.open(400, 30.0)  # it exits after 300 echoes
    finally:
        silent.close()


def test_sources_change_from_one_load_to_the_next() -> None:
    """A listener may get the port of one just closed, whose connections sit
    in TIME_WAIT: the next load's sources must not be the same addresses."""
    from zerosock.bench import _loadgen_scale
    if not sys.platform.startswith("linux"):
        pytest.skip("only Linux answers on all of 127.0.0.0/8")
    blocks = {_loadgen_scale.loopback_sources(1)[0].rsplit(".", 1)[0] for _ in range(5)}
    assert len(blocks) > 1


def test_conns_tiny_run(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    names = "asyncio-proto,zerosock-aio-proto,asyncio-streams,zerosock-aio-streams"
    status, out, err = run_cli("-c", names, "-w", "conns", "--open", "200", *TINY,
                               "--json", str(path), "--plot", str(tmp_path / "out.png"))
    assert status == 0, err
    doc = json.loads(path.read_text())
    by_variant = {c["variant"]: {r["contender"]: r for r in c["rows"]} for c in doc["cells"]}
    assert set(by_variant) == {"plain", "tls", "streams"}
    assert set(by_variant["streams"]) == {"asyncio-streams", "zerosock-aio-streams"}
    for rows in by_variant.values():
        for row in rows.values():
            assert row["status"] == "ok", row
            # 200 connections: a few hundred bytes each at least, not megabytes
            assert 0 < row["rate"] < 1 << 20
            assert row["rss_before"] > 0
    assert "memory per open connection, TLS 1.3, 200 connections" in out
    assert "KiB/conn" in out
    assert (tmp_path / "out.png").stat().st_size > 0


def test_churn_tiny_run(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    status, out, err = run_cli("-c", "asyncio-proto,zerosock-aio-proto,zerosock-aio-py-proto",
                               "-w", "churn", "--churn-clients", "3", *TINY,
                               "--json", str(path), "--markdown", str(tmp_path / "out.md"))
    assert status == 0, err
    doc = json.loads(path.read_text())
    assert [c["variant"] for c in doc["cells"]] == ["plain", "tls", "tls-resume"]
    for cell in doc["cells"]:
        for row in cell["rows"]:
            assert row["status"] == "ok", (cell["variant"], row)
            assert row["rate"] > 0 and row["cpu_per_op_us"] is not None
        for runs in cell["runs"].values():
            for run in runs:
                # a resumption asked for is checked on every connection
                resumed = run["ops"] if cell["variant"] == "tls-resume" else 0
                assert run["resumed"] == resumed
    assert "conn/s" in out
    assert "churn (connect, 64 B echo, close), TLS 1.3 resumed, 3 clients" in out


def test_callgrind_cost_outside_openssl(tmp_path: Path) -> None:
    # python3.11 calls SSL_read (libssl), which calls AES (libcrypto), which
    # calls qsort (libc), which calls back AES's compare (libcrypto): all of
    # that call is OpenSSL's, once (as is a call from code valgrind names no
    # object for); eval's own cost and its call to memcpy are not.
    callgrind = tmp_path / "callgrind.out"
    callgrind.write_text(
        "version: 1\npositions: line\nevents: Ir\nsummary: 1220\n"
        "ob=(1) /usr/lib/libssl.so.3\nfl=(1) ssl.c\nfn=(1) SSL_read\n10 100\n"
        "cob=(2) /usr/lib/libcrypto.so.3\ncfn=(2) AES\ncalls=1 0\n11 450\n"
        "ob=(2)\nfn=(2)\n5 400\ncob=(4) /usr/lib/libc.so.6\ncfn=(4) qsort\ncalls=1 0\n6 50\n"
        "fn=(7) compare\n1 20\n"
        "ob=(4)\nfn=(4)\n1 30\ncob=(2)\ncfn=(7)\ncalls=1 0\n2 20\nfn=(5) memcpy\n1 100\n"
        "ob=(3) /usr/bin/python3.11\nfn=(3) eval\n1 300\n+2 200\n"
        "cob=(1)\ncfn=(1)\ncalls=1 0\n+1 550\n"
        "cob=(4)\ncfn=(5)\ncalls=1 0\n+1 100\n"
        "fn=(6) helper\n1 0\ncfn=(3)\ncalls=1 0\n+1 0\n"
        "ob=(8) ???\nfn=(8) stub\n1 0\ncob=(2)\ncfn=(7)\ncalls=1 0\n1 20\n"
        "totals: 1200\n")
    assert runner._callgrind_outside_openssl(str(callgrind)) == 1200 - 550


@needs_valgrind_startable
def test_churn_instructions_per_connection() -> None:
    if not runner.instruction_tools()["valgrind"]:
        pytest.skip("valgrind is not installed")
    generator, _ = runner.generator_class("auto")
    result = runner.measure_instructions("zerosock-aio-proto", Cell("churn", 64, 2, "tls"),
                                         runner.Settings(), generator, counts=(10, 40))
    assert "instructions_error" not in result, result
    # a handshake is hundreds of thousands of instructions, most of them OpenSSL's
    assert 100_000 < result["instructions_per_op"] < 100_000_000
    assert 0 < result["outside_openssl_per_op"] < result["instructions_per_op"]


def test_echo_with_idle_connections_held_open(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    status, out, err = run_cli("-c", "zerosock-aio-proto", "-w", "echo", "-s", "64", "-n", "2",
                               "--idle", "150", *TINY, "--json", str(path))
    assert status == 0, err
    doc = json.loads(path.read_text())
    assert doc["settings"]["idle"] == 150
    assert rows_of(doc, "echo")["zerosock-aio-proto"]["status"] == "ok"
    assert "held 150 idle connections" in out


def test_counted_echo_runs_grow_with_idle_connections() -> None:
    # without idle connections the documented 2000,12000; with them the
    # difference of the two runs outgrows the cost of opening them
    assert cli._echo_instruction_counts(0) == (2000, 12000)
    small, large = cli._echo_instruction_counts(19_700)
    assert small == 2000 and large - small == 20 * 19_700
