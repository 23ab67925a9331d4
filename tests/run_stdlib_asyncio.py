"""Run the interpreter's own ``Lib/test/test_asyncio`` modules on zerosock's loop.

    python tests/run_stdlib_asyncio.py                      # C and Python backends vs stock
    python tests/run_stdlib_asyncio.py --backend c test_streams test_server
    python tests/run_stdlib_asyncio.py --all                # every test_asyncio module

Each (module, loop) pair runs in its own subprocess.  For zerosock the loop is
installed the ways asyncio's tests make loops: the policy (``asyncio.new_event_loop()``,
``asyncio.run()``), ``asyncio.SelectorEventLoop`` and 3.13's ``asyncio.EventLoop`` (the ``create_event_loop()``
of test_events and friends) and the test module's ``selectors`` (so
``SelectorEventLoop(selectors.EpollSelector())`` gets zerosock's selector).
Prints passed/failed/errors/skipped per module and loop, then every test that
passes on stock asyncio but not on zerosock.  Tests listed in EXCLUDED are not
run on zerosock; each has its reason.  Exits non-zero on any such regression.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import os
import signal
import subprocess
import sys
import unittest
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Tuple

DEFAULT_MODULES = [
    "test_events", "test_streams", "test_server", "test_sock_lowlevel",
    "test_buffered_proto", "test_sendfile", "test_subprocess", "test_sslproto",
]

# Test-id patterns (fnmatch, relative to test.test_asyncio) not run on zerosock,
# with the reason.  Only tests of the stdlib's internals belong here, never of behaviour.
EXCLUDED: Dict[str, str] = {
}

LOOPS_MADE = [0]  # zerosock loops the child made: proof that the tests ran on them

HERE = os.path.dirname(os.path.abspath(__file__))


def _install(backend_name: str, module: object) -> None:
    """Make every loop the test module creates a zerosock loop of ``backend_name``."""
    import asyncio

    from zerosock import _compat

    backend = _compat.load_backend(backend_name)

    class CountedLoop(backend.aio.EventLoop):  # type: ignore[name-defined,misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            LOOPS_MADE[0] += 1
            super().__init__(*args, **kwargs)

    class Policy(backend.aio.EventLoopPolicy):  # type: ignore[name-defined,misc]
        _loop_factory = CountedLoop

    asyncio.set_event_loop_policy(Policy())
    # tearDownModule() and the policy tests reset the policy to the default: make that ours.
    asyncio.DefaultEventLoopPolicy = Policy  # type: ignore[misc]
    asyncio.SelectorEventLoop = CountedLoop  # type: ignore[misc]
    if hasattr(asyncio, "EventLoop"):  # 3.13: the platform's default loop class
        asyncio.EventLoop = CountedLoop  # type: ignore[misc]
    if hasattr(module, "selectors"):
        module.selectors = backend.selectors  # type: ignore[attr-defined]


def _iter_tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def _short_id(test_id: str) -> str:
    return test_id.replace("test.test_asyncio.", "", 1)


def excluded_reason(test_id: str) -> "str | None":
    short = _short_id(test_id)
    for pattern, reason in EXCLUDED.items():
        if fnmatch.fnmatchcase(short, pattern):
            return reason
    return None


class _Recorder(unittest.TextTestResult):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.outcomes: Dict[str, str] = {}

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self.outcomes.setdefault(test.id(), "passed")

    def addFailure(self, test: unittest.TestCase, err: object) -> None:
        super().addFailure(test, err)  # type: ignore[arg-type]
        self.outcomes[test.id()] = "failed"

    def addError(self, test: unittest.TestCase, err: object) -> None:
        super().addError(test, err)  # type: ignore[arg-type]
        self.outcomes[test.id()] = "error"

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self.outcomes[test.id()] = "skipped"

    def addExpectedFailure(self, test: unittest.TestCase, err: object) -> None:
        super().addExpectedFailure(test, err)  # type: ignore[arg-type]
        self.outcomes[test.id()] = "passed"

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self.outcomes[test.id()] = "failed"

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase,
                   err: object) -> None:
        super().addSubTest(test, subtest, err)  # type: ignore[arg-type]
        if err is not None:
            self.outcomes[test.id()] = "failed"


def run_one(module_name: str, loop: str, verbose: bool) -> Dict[str, str]:
    """In this process: run one module on ``loop`` ("c", "python" or "stdlib")."""
    try:
        module = importlib.import_module(f"test.test_asyncio.{module_name}")
    except unittest.SkipTest as exc:  # e.g. Windows-only modules
        return {f"<module skipped: {exc}>": "skipped"}
    if loop != "stdlib":
        _install(loop, module)
    suite = unittest.TestSuite()
    outcomes: Dict[str, str] = {}
    for test in _iter_tests(unittest.defaultTestLoader.loadTestsFromModule(module)):
        if loop != "stdlib" and excluded_reason(test.id()):
            outcomes[test.id()] = "excluded"
        else:
            suite.addTest(test)
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2 if verbose else 0,
                                     resultclass=_Recorder)
    result = runner.run(suite)
    tear_down = getattr(module, "tearDownModule", None)
    if tear_down is not None:
        tear_down()
    outcomes.update(result.outcomes)  # type: ignore[attr-defined]
    if loop != "stdlib":
        outcomes["<zerosock loops made>"] = str(LOOPS_MADE[0])
    return outcomes


def run_in_subprocess(module_name: str, loop: str, verbose: bool,
                      timeout: float) -> Tuple[str, str, Dict[str, str]]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", module_name, "--loop", loop]
    if verbose:
        cmd.append("-v")
    env = dict(os.environ)
    env.pop("ZEROSOCK_PURE_PYTHON", None)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return module_name, loop, {"<timeout>": "error"}
    if verbose:
        sys.stderr.write(proc.stderr)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return module_name, loop, json.loads(line)
    sys.stderr.write(proc.stderr[-4000:])
    return module_name, loop, {f"<crash rc={proc.returncode}>": "error"}


def count(outcomes: Dict[str, str]) -> Dict[str, int]:
    totals = {k: 0 for k in ("passed", "failed", "error", "skipped", "excluded")}
    for test_id, outcome in outcomes.items():
        if not test_id.startswith("<zerosock"):
            totals[outcome] += 1
    return totals


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="test_asyncio modules (default: the core set)")
    parser.add_argument("--backend", action="append", choices=["c", "python"],
                        help="zerosock backend(s) to test (default: both)")
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
        print(json.dumps(run_one(args.child, args.loop, args.verbose)))
        return 0

    try:
        import test.test_asyncio  # noqa: F401
    except ImportError as exc:
        print(f"skipped: the interpreter's test package is missing ({exc})")
        return 0
    modules = args.modules or DEFAULT_MODULES
    if args.all:
        pkg = os.path.dirname(test.test_asyncio.__file__)
        modules = sorted(f[:-3] for f in os.listdir(pkg)
                         if f.startswith("test_") and f.endswith(".py"))
    backends = args.backend or ["c", "python"]
    loops = backends + ([] if args.no_reference else ["stdlib"])

    jobs = [(m, loop) for m in modules for loop in loops]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda j: run_in_subprocess(j[0], j[1], args.verbose,
                                                            args.timeout), jobs))
    by_key = {(m, loop): outcomes for m, loop, outcomes in results}

    print(f"{'module':22} {'loop':7} {'passed':>7} {'failed':>7} {'errors':>7} "
          f"{'skipped':>8} {'excluded':>9} {'loops':>6}")
    regressions: List[str] = []
    notes: List[str] = []
    for m in modules:
        for loop in loops:
            t = count(by_key[(m, loop)])
            print(f"{m:22} {loop:7} {t['passed']:7} {t['failed']:7} {t['error']:7} "
                  f"{t['skipped']:8} {t['excluded']:9} "
                  f"{by_key[(m, loop)].get('<zerosock loops made>', '-'):>6}")
        reference = by_key.get((m, "stdlib"))
        for loop in backends:
            if by_key[(m, loop)].get("<zerosock loops made>") == "0":
                # The core modules must run on our loop; others may use only mock loops.
                (regressions if m in DEFAULT_MODULES else notes).append(
                    f"{loop:7} {m}: no zerosock loop was made")
            for test_id, outcome in sorted(by_key[(m, loop)].items()):
                if outcome in ("failed", "error") and (
                        reference is None or reference.get(test_id) == "passed"
                        or test_id.startswith("<")):
                    regressions.append(f"{loop:7} {_short_id(test_id)}: {outcome}")
    if EXCLUDED:
        print("\nexcluded on zerosock:")
        for pattern, reason in EXCLUDED.items():
            print(f"  {pattern}: {reason}")
    if notes:
        print("\nmodules whose tests made no zerosock loop (mock or test loops only):")
        for line in notes:
            print("  " + line)
    if regressions:
        print("\npass on stock asyncio, not on zerosock:")
        for line in regressions:
            print("  " + line)
        return 1
    print("\nno regressions against stock asyncio")
    return 0


if __name__ == "__main__":
    try:
        import zerosock  # noqa: F401  (the installed package, when there is one)
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    sys.exit(main())
