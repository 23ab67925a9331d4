"""Run other projects' test suites on zerosock's loop, against stock asyncio.

    python tests/run_third_party.py                         # every suite, both backends vs stock
    python tests/run_third_party.py --suite anyio --backend c
    python tests/run_third_party.py --cache /tmp/zs-third-party -v
    python tests/run_third_party.py --backend c-uring       # the C loop on io_uring

Each suite is a pinned release: its tests come from its sdist on PyPI (never
committed here), the package and its test dependencies are installed by this
script into a venv of the suite's own under the cache directory (made from this
interpreter, so zerosock's build of this interpreter is what the suite imports).
Every suite runs once on stock asyncio and once per zerosock backend, each in
its own pytest process.  For zerosock this file is loaded into that pytest as a
plugin (``-p run_third_party``) that installs zerosock's loop the ways the
suites make loops: the event loop policy (``asyncio.new_event_loop()``,
``asyncio.run()``, ``asyncio.Runner``: anyio's and uvicorn's test runner,
aiohttp's ``pyloop``) and ``asyncio.SelectorEventLoop`` (uvicorn's
``loop="asyncio"``).  It counts the zerosock loops made: proof that the tests
ran on them (and on ``c-uring``, the C loop on io_uring, those polling through
a ring; ``ZEROSOCK_AIO_IO=uring`` in the caller's environment makes ``c`` mean
``c-uring``).  A test that passes on stock asyncio and fails on zerosock is run
once more on its own; it is a regression if it fails again.  Tests listed in
EXCLUDED are not run on zerosock; each has its reason.  Exits non-zero on any
regression, or when a zerosock run made no zerosock loop.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import _suite_compare as compare
from _suite_compare import HERE, PASSING, ROOT

PLUGIN = os.path.splitext(os.path.basename(__file__))[0]


class Suite(NamedTuple):
    sdist: str                # the pinned release whose sdist carries the tests
    install: List[str]        # the package and its test dependencies, pinned
    options: List[str]        # pytest options
    paths: List[str]          # test files, relative to the unpacked sdist
    timeout: float            # seconds for one whole pytest run


# Test dependencies as each project declares them for its tests (uvicorn's dev
# group, anyio's test group, aiohttp's requirements/test.txt), minus linters,
# coverage, xdist, benchmarks and loops other than asyncio's; pinned so CI is
# reproducible.
COMMON = ["pytest==9.0.3", "pytest-mock==3.15.1", "pytest-timeout==2.4.0", "trustme==1.2.1"]
SUITES: Dict[str, Suite] = {
    "anyio": Suite(
        sdist="anyio==4.16.0",
        install=COMMON + ["anyio==4.16.0", "blockbuster==1.5.29", "hypothesis==6.170.17",
                          "psutil==7.2.2", "truststore==0.10.5"],
        options=[],
        paths=["tests"],
        timeout=900,
    ),
    "uvicorn": Suite(
        sdist="uvicorn==0.54.0",
        # uvicorn[standard] without uvloop: its loop="auto" must mean asyncio's loop.
        install=COMMON + ["uvicorn==0.54.0", "httptools==0.9.0", "python-dotenv==1.2.1",
                          "PyYAML==6.0.3", "watchfiles==1.1.1", "websockets==16.0",
                          "wsproto==1.3.2", "a2wsgi==1.10.10", "httpx2==2.16.2", "zttp==0.0.35",
                          "cryptography==50.0.2", "psutil==7.2.2"],
        # its addopts ask for xdist (-n 8); one process here.
        options=["-o", "addopts=-rfE", "--timeout=120"],
        # its benchmarks need pytest-codspeed and measure speed, not behaviour.
        paths=["tests", "--ignore=tests/benchmarks"],
        timeout=900,
    ),
    "aiohttp": Suite(
        sdist="aiohttp==3.14.5",
        # what the four modules and conftest.py import (aiohttp[speedups] and the
        # zlib backends its conftest parametrizes), at aiohttp's requirements/test.txt pins.
        install=COMMON + ["aiohttp==3.14.5", "blockbuster==1.5.26", "aiodns==4.0.4",
                          "Brotli==1.2.0", "backports.zstd==1.3.0; python_version < '3.14'",
                          "isal==1.8.0; python_version < '3.14'", "zlib-ng==1.0.0",
                          "coverage==7.14.1"],  # its pytest.ini filters a coverage warning
        # its addopts ask for xdist, coverage and doctests of the whole tree: the
        # markers are what its CI deselects by default.
        options=["-o", "addopts=-rfE", "--strict-markers",
                 "-m", "not dev_mode and not autobahn and not internal"],
        paths=["tests/test_web_functional.py", "tests/test_client_functional.py",
               "tests/test_web_server.py", "tests/test_client_request.py"],
        timeout=900,
    ),
}

# Tests not run on zerosock, by suite: node-id patterns (fnmatch) with the reason.
# Only tests of what asyncio never promised (a loop's class, thread timing) belong
# here, never a difference in behaviour.
EXCLUDED: Dict[str, Dict[str, str]] = {
    "uvicorn": {
        "tests/test_auto_detection.py::test_loop_auto":
            "asserts that the loop uvicorn's loop=\"auto\" makes without uvloop has a class "
            "defined in the asyncio package (its __module__): false of any loop installed "
            "in asyncio's place",
    },
    "anyio": {
        "tests/test_to_thread.py::test_asyncio_run_does_not_leak_event_loop":
            "races thread scheduling: anyio's idle worker thread holds the loop until it "
            "exits, nothing joins it, and the test expects it gone at the gc.collect() right "
            "after anyio.run(), 0.4 ms after the thread was told to stop; outside pytest it "
            "loses on stock asyncio too (7 runs of 12 here), and passes once the thread is "
            "joined",
    },
    "aiohttp": {},
}

# Loops other than asyncio's own that a suite parametrizes over: not what is
# compared here, so deselected on every run (stock included).
OTHER_LOOPS = ("uvloop", "winloop", "trio")


# ---------------------------------------------------------------- the plugin
# Loaded into the suite's pytest with ``-p run_third_party``; configured by the
# environment: ZEROSOCK_THIRD_PARTY_LOOP ("stdlib" or one of compare.TESTED_LOOPS),
# ZEROSOCK_THIRD_PARTY_SUITE and ZEROSOCK_THIRD_PARTY_LOG (a JSON-lines file).

# Suites parametrize tests by ``asyncio.SelectorEventLoop``, which names the test
# after the class: the counting class is logged under the stock class's name so
# the runs' node ids compare.
STOCK_LOOP_NAME = __import__("asyncio").SelectorEventLoop.__name__


class _Log:
    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1)

    def write(self, nodeid: str, outcome: str) -> None:
        nodeid = nodeid.replace("CountedLoop", STOCK_LOOP_NAME)
        self._file.write(json.dumps({"nodeid": nodeid, "outcome": outcome}) + "\n")

    def close(self) -> None:
        self._file.close()


_LOG: List[_Log] = []


def pytest_configure(config: Any) -> None:
    loop = os.environ.get("ZEROSOCK_THIRD_PARTY_LOOP")
    if loop is None:
        return
    _LOG.append(_Log(os.environ["ZEROSOCK_THIRD_PARTY_LOG"]))
    if loop != "stdlib":
        compare.install_zerosock_loop(loop)


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    if not _LOG:
        return
    loop = os.environ["ZEROSOCK_THIRD_PARTY_LOOP"]
    suite = os.environ["ZEROSOCK_THIRD_PARTY_SUITE"]
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        param_ids = callspec.id.split("-") if callspec is not None else []
        if any(part.split("+")[-1] in OTHER_LOOPS for part in param_ids):
            drop.append(item)
        elif loop != "stdlib" and compare.excluded_reason(EXCLUDED.get(suite, {}), item.nodeid):
            _LOG[0].write(nodeid=item.nodeid, outcome="excluded")
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    if _LOG:
        _LOG[0].write(nodeid=nodeid, outcome="started")


def pytest_runtest_logreport(report: Any) -> None:
    if not _LOG:
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "failed"  # a strict xpass fails
    elif report.when == "call":
        outcome = report.outcome
    elif report.failed:
        outcome = "error"  # a fixture failed in setup or teardown
    elif report.skipped:
        outcome = "skipped"
    else:
        return
    _LOG[0].write(nodeid=report.nodeid, outcome=outcome)


def pytest_unconfigure(config: Any) -> None:
    if _LOG:
        _LOG[0].write(nodeid=compare.LOOPS_MADE, outcome=str(compare.loops_made()))
        if os.environ["ZEROSOCK_THIRD_PARTY_LOOP"] == "c-uring":
            _LOG[0].write(nodeid=compare.RING_LOOPS_MADE, outcome=str(compare.ring_loops_made()))
        _LOG.pop().close()


# ---------------------------------------------------------------- the driver

def _run(cmd: List[str], **kwargs: Any) -> None:
    subprocess.run(cmd, check=True, **kwargs)


def _zerosock_path(cache: str) -> str:
    """A directory holding only this interpreter's zerosock, for the suites' venvs."""
    import zerosock

    shim = os.path.join(cache, "zerosock-path")
    os.makedirs(shim, exist_ok=True)
    link = os.path.join(shim, "zerosock")
    target = os.path.dirname(os.path.abspath(zerosock.__file__))
    if os.path.islink(link) and os.readlink(link) != target:
        os.unlink(link)
    if not os.path.islink(link):
        os.symlink(target, link)
    return shim


def prepare(name: str, suite: Suite, cache: str, log: Any) -> Tuple[str, str]:
    """Unpack the suite's sdist and install its venv (both cached); return (python, tests root)."""
    sdists = os.path.join(cache, "sdists")
    os.makedirs(sdists, exist_ok=True)
    project, version = suite.sdist.split("==")
    src = os.path.join(cache, "src", f"{project}-{version}")
    if not os.path.isdir(src):
        archive = [f for f in os.listdir(sdists)
                   if f.lower().startswith(f"{project}-{version}".lower()) and f.endswith(".tar.gz")]
        if not archive:
            _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
                  "--no-deps", "--dest", sdists, suite.sdist], stdout=log, stderr=log)
            archive = [f for f in os.listdir(sdists)
                       if f.lower().startswith(f"{project}-{version}".lower())]
        with tarfile.open(os.path.join(sdists, archive[0])) as tar:
            top = tar.getnames()[0].split("/")[0]
            if sys.version_info >= (3, 12):
                tar.extractall(os.path.join(cache, "src"), filter="data")
            else:
                tar.extractall(os.path.join(cache, "src"))
        if os.path.join(cache, "src", top) != src:
            os.rename(os.path.join(cache, "src", top), src)
    if not os.path.isdir(os.path.join(src, "tests")):
        raise SystemExit(f"{suite.sdist}: the sdist carries no tests/")

    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
    venv = os.path.join(cache, f"venv-{name}-{tag}")
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, "installed.json")
    wanted = json.dumps(suite.install)
    if not (os.path.exists(stamp) and open(stamp).read() == wanted):
        _run([sys.executable, "-m", "venv", "--clear", venv], stdout=log, stderr=log)
        _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "--cache-dir", os.path.join(cache, "pip")] + suite.install,
             stdout=log, stderr=log)
        with open(stamp, "w") as f:
            f.write(wanted)
    return python, src


CPU_SECONDS: Dict[Tuple[str, str], float] = {}  # per run: what it costs a machine


RUN_PYTEST = "import sys; del sys.path[0]; import pytest; sys.exit(pytest.console_main())"


def run_suite(name: str, suite: Suite, python: str, src: str, loop: str, cache: str,
              extra: List[str], timeout: float, verbose: bool,
              log_name: str = "") -> Dict[str, str]:
    """One pytest run of ``suite`` on ``loop``; the outcome of every test by node id."""
    runs = os.path.join(cache, "runs")
    os.makedirs(runs, exist_ok=True)
    log_path = os.path.join(runs, f"{name}-{loop}{log_name}.jsonl")
    out_path = os.path.join(runs, f"{name}-{loop}{log_name}.out")
    for path in (log_path, out_path):
        if os.path.exists(path):
            os.unlink(path)
    env = compare.loop_env(loop)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.update(ZEROSOCK_THIRD_PARTY_LOOP=loop, ZEROSOCK_THIRD_PARTY_SUITE=name,
               ZEROSOCK_THIRD_PARTY_LOG=log_path, PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([_zerosock_path(cache), HERE]))
    # Not ``python -m pytest``: the sdist's root (the working directory) must not
    # shadow the installed package (aiohttp's compiled parsers).
    cmd = [python, "-c", RUN_PYTEST, "-p", PLUGIN, "-p", "no:cacheprovider", "-q"
           ] + suite.options + (extra or suite.paths)
    outcomes: Dict[str, str] = {}
    with open(out_path, "w") as out:
        rc, cpu = compare.run_child(cmd, timeout, out, subprocess.STDOUT, cwd=src, env=env)
    CPU_SECONDS[(name, loop + log_name)] = cpu
    started: List[str] = []
    if os.path.exists(log_path):
        with open(log_path) as f:
            for line in f:
                record = json.loads(line)
                if record["outcome"] == "started":
                    started.append(record["nodeid"])
                elif record["outcome"] != "skipped" or record["nodeid"] not in outcomes:
                    # a teardown error overrides the call's pass
                    if outcomes.get(record["nodeid"]) not in ("failed", "error"):
                        outcomes[record["nodeid"]] = record["outcome"]
    unfinished = [n for n in started if n not in outcomes]
    for nodeid in unfinished:
        outcomes[nodeid] = "crashed"
    if rc is None:
        outcomes["<timeout>"] = "error"
    elif rc not in (0, 1):  # interrupted, a collection error, a crash
        outcomes[f"<pytest exit {rc}: see {out_path}>"] = "error"
    if verbose or rc not in (0, 1):
        with open(out_path) as f:
            sys.stderr.write(f"--- {name} on {loop}{log_name} (exit {rc})\n" + f.read()[-6000:])
    return outcomes


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES),
                        help="suite(s) to run (default: all)")
    parser.add_argument("--backend", action="append", choices=compare.TESTED_LOOPS,
                        help="zerosock backend(s) to test (default: c and python; "
                             "c-uring: the C loop on io_uring)")
    parser.add_argument("--cache", default=os.path.join(ROOT, "build", "third_party"),
                        help="downloads, venvs and run logs (default: build/third_party)")
    # The runs mostly wait (on sockets, sleeps, subprocesses): anyio's uses 120 s of
    # CPU in 400 s, so three at once still leave a core's worth of headroom on two.
    parser.add_argument("--jobs", type=int, default=3, help="pytest runs at once")
    parser.add_argument("--timeout", type=float, help="seconds per pytest run (default: per suite)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the stock asyncio run (every failure is then reported)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    names = args.suite or list(SUITES)  # the longest first, for the pool's sake
    backends = compare.zerosock_loops(args.backend or ["c", "python"])
    loops = ([] if args.no_reference else ["stdlib"]) + backends
    cache = os.path.abspath(args.cache)
    os.makedirs(cache, exist_ok=True)

    started = time.monotonic()
    prepared: Dict[str, Tuple[str, str]] = {}
    with open(os.path.join(cache, "install.log"), "a") as log:
        for name in names:
            t0 = time.monotonic()
            try:
                prepared[name] = prepare(name, SUITES[name], cache, log)
            except subprocess.CalledProcessError as exc:
                print(f"{name}: installing failed ({exc}); see {log.name}")
                return 2
            print(f"{name}: ready in {time.monotonic() - t0:.0f} s", flush=True)

    def job(key: Tuple[str, str]) -> Tuple[str, str, Dict[str, str], float]:
        name, loop = key
        t0 = time.monotonic()
        suite = SUITES[name]
        outcomes = run_suite(name, suite, *prepared[name], loop, cache, [],
                             args.timeout or suite.timeout, args.verbose)
        return name, loop, outcomes, time.monotonic() - t0

    jobs = [(n, loop) for n in names for loop in loops]
    by_key: Dict[Tuple[str, str], Dict[str, str]] = {}
    seconds: Dict[Tuple[str, str], float] = {}
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for name, loop, outcomes, took in pool.map(job, jobs):
            by_key[(name, loop)] = outcomes
            seconds[(name, loop)] = took
            print(f"{name} on {loop}: {took:.0f} s", flush=True)

    # A test that passed on stock and failed on zerosock runs once more, alone
    # with the others like it; only a second failure is a regression.
    regressions: List[str] = []
    flaky: List[str] = []
    for name in names:
        reference = by_key.get((name, "stdlib"))
        if reference is not None:
            # a broken setup (collection error, missing dependency) shows on stock first
            broken = [n for n in reference if n.startswith("<") and not n.startswith("<zerosock")]
            if broken or compare.tally(reference)["passed"] == 0:
                regressions.append(f"{name} on stdlib: the suite did not run: {broken}")
        for loop in backends:
            outcomes = by_key[(name, loop)]
            missing = compare.made_no_loop(outcomes, loop)
            if missing:
                regressions.append(f"{name} on {loop}: no {missing} loop was made")
            suspects = compare.suspects(outcomes, reference, unrun=True)
            retry_ids = [n.replace(STOCK_LOOP_NAME, "CountedLoop")
                         for n in suspects if not n.startswith("<")]
            retried: Dict[str, str] = {}
            if retry_ids:
                retried = run_suite(name, SUITES[name], *prepared[name], loop, cache,
                                    retry_ids,
                                    args.timeout or SUITES[name].timeout, args.verbose,
                                    log_name="-retry")
            for nodeid in suspects:
                first = outcomes.get(nodeid, "not run")
                if nodeid.startswith("<"):
                    regressions.append(f"{name} on {loop}: {nodeid}: {first}")
                elif retried.get(nodeid) in PASSING:
                    flaky.append(f"{name} on {loop}: {nodeid}: {first}, then passed")
                else:
                    regressions.append(f"{name} on {loop}: {nodeid}: {first}, "
                                       f"again {retried.get(nodeid, 'not run')}")

    rows = []
    for name in names:
        for loop in loops:
            t = compare.tally(by_key[(name, loop)])
            rows.append([name, loop, t["passed"], t["failed"], t["error"], t["skipped"],
                         t["excluded"], compare.loops_column(by_key[(name, loop)]),
                         f"{seconds[(name, loop)]:.0f}", f"{CPU_SECONDS[(name, loop)]:.0f}"])
    print()
    compare.print_table(["suite", "loop", "passed", "failed", "errors", "skipped", "excluded",
                         "loops", "seconds", "cpu s"], [9, 7, 7, 7, 7, 8, 9, 9, 8, 6], rows)
    print(f"total: {time.monotonic() - started:.0f} s wall, "
          f"{sum(CPU_SECONDS.values()):.0f} s CPU in the suites' runs")
    return compare.verdict([
        ("excluded on zerosock", [f"{n} {p}: {r}" for n in names
                                  for p, r in EXCLUDED.get(n, {}).items()]),
        ("failed once on zerosock, passed when run again", flaky),
    ], regressions)


if __name__ == "__main__":
    compare.use_source_tree_unless_installed()
    sys.exit(main())
