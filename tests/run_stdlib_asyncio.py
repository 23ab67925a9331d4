"""Run the interpreter's own ``Lib/test/test_asyncio`` modules on zerosock's loop.

    python tests/run_stdlib_asyncio.py                      # C and Python backends vs stock
    python tests/run_stdlib_asyncio.py --backend c test_streams test_server
    python tests/run_stdlib_asyncio.py --all                # every test_asyncio module
    python tests/run_stdlib_asyncio.py --backend c-uring    # the C loop on io_uring

Each (module, loop) pair runs in its own subprocess.  For zerosock the loop is
installed the ways asyncio's tests make loops: the policy (``asyncio.new_event_loop()``,
``asyncio.run()``), ``asyncio.SelectorEventLoop`` and 3.13's ``asyncio.EventLoop`` (the ``create_event_loop()``
of test_events and friends) and the test module's ``selectors`` (so
``SelectorEventLoop(selectors.EpollSelector())`` gets zerosock's selector; on
``c-uring``, the C loop on io_uring, that selector polls through the ring, and
``ZEROSOCK_AIO_IO=uring`` in the caller's environment makes ``c`` mean ``c-uring``).
Prints passed/failed/errors/skipped per module and loop, then every test that
passes on stock asyncio but not on zerosock.  Tests listed in EXCLUDED are not
run on zerosock; each has its reason.  Exits non-zero on any such regression.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import os
import signal
import sys
import tempfile
import unittest
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Tuple

import _suite_compare as compare

DEFAULT_MODULES = [
    "test_events", "test_streams", "test_server", "test_sock_lowlevel",
    "test_buffered_proto", "test_sendfile", "test_subprocess", "test_sslproto",
    "test_server_context",  # 3.15: the context protocol callbacks run in
]

# Test-id patterns (fnmatch, relative to test.test_asyncio) not run on zerosock,
# with the reason.  Only tests of the stdlib's internals belong here, never of behaviour.
EXCLUDED: Dict[str, str] = {
    "test_sslproto.SelectorStartTLSTests.test_create_connection_ssl_failed_certificate_no_cycles":
        "patches sslproto.SSLProtocol.connection_made, which the C loop's TLS protocol is not; "
        "tests/test_aio_tls.py checks the same on every loop",
}


def _short_id(test_id: str) -> str:
    return test_id.replace("test.test_asyncio.", "", 1)


def excluded_reason(test_id: str) -> "str | None":
    return compare.excluded_reason(EXCLUDED, _short_id(test_id))


def run_one(module_name: str, loop: str, verbose: bool) -> Dict[str, str]:
    """In this process: run one module on ``loop`` (one of compare.TESTED_LOOPS, or "stdlib")."""
    try:
        module = importlib.import_module(f"test.test_asyncio.{module_name}")
    except unittest.SkipTest as exc:  # e.g. Windows-only modules
        return {f"<module skipped: {exc}>": "skipped"}
    except ModuleNotFoundError as exc:
        if exc.name != f"test.test_asyncio.{module_name}":
            raise
        return {"<module skipped: not in this Python's test_asyncio>": "skipped"}
    if loop != "stdlib":
        compare.install_zerosock_loop(loop)
        if hasattr(module, "selectors"):  # SelectorEventLoop(selectors.EpollSelector())
            module.selectors = compare.selectors_for(loop)  # type: ignore[attr-defined]
    tests: List[unittest.TestCase] = []
    outcomes: Dict[str, str] = {}
    for test in compare.iter_tests(unittest.defaultTestLoader.loadTestsFromModule(module)):
        if loop != "stdlib" and excluded_reason(test.id()):
            outcomes[test.id()] = "excluded"
        else:
            tests.append(test)
    outcomes.update(compare.run_tests(module, tests, verbosity=2 if verbose else 0))
    if loop != "stdlib":
        outcomes[compare.LOOPS_MADE] = str(compare.loops_made())
        if loop == "c-uring":
            outcomes[compare.RING_LOOPS_MADE] = str(compare.ring_loops_made())
    return outcomes


def run_in_subprocess(module_name: str, loop: str, verbose: bool,
                      timeout: float) -> Tuple[str, str, Dict[str, str]]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", module_name, "--loop", loop,
           "--timeout", str(timeout)]
    if verbose:
        cmd.append("-v")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        rc, _ = compare.run_child(cmd, timeout, out, err, env=compare.loop_env(loop))
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if rc is None:
        # What each thread was doing shortly before the end (the child's faulthandler).
        sys.stderr.write(f"{module_name} on {loop}: timed out after {timeout:.0f} s\n{stderr[-6000:]}")
        return module_name, loop, {"<timeout>": "error"}
    if verbose:
        sys.stderr.write(stderr)
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return module_name, loop, json.loads(line)
    sys.stderr.write(stderr[-4000:])
    return module_name, loop, {f"<crash rc={rc}>": "error"}


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="test_asyncio modules (default: the core set)")
    parser.add_argument("--backend", action="append", choices=compare.TESTED_LOOPS,
                        help="zerosock backend(s) to test (default: c and python; "
                             "c-uring: the C loop on io_uring)")
    parser.add_argument("--all", action="store_true", help="every test_asyncio module")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the stock asyncio run (every non-pass is then reported)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per module run")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--loop", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        # A shell starts background jobs with SIGINT ignored; the tests of
        # KeyboardInterrupt handling need Python's own handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # A hang shows where it is: every thread's stack, just before the parent kills it.
        faulthandler.dump_traceback_later(max(args.timeout - 10, args.timeout * 0.9))
        print(json.dumps(run_one(args.child, args.loop, args.verbose)))
        return 0

    missing = compare.missing_test_package("test_asyncio")
    if missing:
        print(missing)
        return 0
    import test.test_asyncio

    modules = args.modules or DEFAULT_MODULES
    if args.all:
        pkg = os.path.dirname(test.test_asyncio.__file__)
        modules = sorted(f[:-3] for f in os.listdir(pkg)
                         if f.startswith("test_") and f.endswith(".py"))
    backends = compare.zerosock_loops(args.backend or ["c", "python"])
    loops = backends + ([] if args.no_reference else ["stdlib"])

    jobs = [(m, loop) for m in modules for loop in loops]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda j: run_in_subprocess(j[0], j[1], args.verbose,
                                                            args.timeout), jobs))
    by_key = {(m, loop): outcomes for m, loop, outcomes in results}

    rows = []
    regressions: List[str] = []
    notes: List[str] = []
    for m in modules:
        for loop in loops:
            t = compare.tally(by_key[(m, loop)])
            rows.append([m, loop, t["passed"], t["failed"], t["error"], t["skipped"],
                         t["excluded"], compare.loops_column(by_key[(m, loop)])])
        reference = by_key.get((m, "stdlib"))
        for loop in backends:
            outcomes = by_key[(m, loop)]
            module_skipped = any(test_id.startswith("<module skipped") for test_id in outcomes)
            missing = compare.made_no_loop(outcomes, loop)
            if missing and not module_skipped:
                # The core modules must run on our loop; others may use only mock loops.
                (regressions if m in DEFAULT_MODULES else notes).append(
                    f"{loop:7} {m}: no {missing} loop was made")
            for test_id in compare.suspects(outcomes, reference):
                regressions.append(f"{loop:7} {_short_id(test_id)}: {outcomes[test_id]}")
    compare.print_table(["module", "loop", "passed", "failed", "errors", "skipped", "excluded",
                         "loops"], [22, 7, 7, 7, 7, 8, 9, 7], rows)
    return compare.verdict([
        ("excluded on zerosock", [f"{p}: {r}" for p, r in EXCLUDED.items()]),
        ("modules whose tests made no zerosock loop (mock or test loops only)", notes),
    ], regressions)


if __name__ == "__main__":
    compare.use_source_tree_unless_installed()
    sys.exit(main())
