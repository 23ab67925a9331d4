"""Running a test suite on zerosock and on the standard library, and comparing the two.

Shared by the runners beside it (``run_stdlib_asyncio.py``, ``run_stdlib_selectors.py``,
``run_third_party.py``): installing zerosock's loop the ways test suites make loops,
recording unittest outcomes, running a bounded child, counting outcomes, and the
report of what passes on stock asyncio but not on zerosock.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import signal
import sys
import time
import types
import unittest
import warnings
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Outcomes as the runners record them, by test id.  Ids in angle brackets are
# markers of a whole run (a crash, a timeout), never a test.
PASSING = ("passed", "xfailed")
FAILING = ("failed", "error", "crashed", "not run")
COLUMNS = ("passed", "failed", "error", "skipped", "excluded")
LOOPS_MADE = "<zerosock loops made>"  # its value: how many zerosock loops the run made
RING_LOOPS_MADE = "<io_uring loops made>"  # of those, how many polled through a ring
MARKERS = (LOOPS_MADE, RING_LOOPS_MADE)

# The zerosock loops a runner tests: a backend, and "c-uring", the C backend's
# loop on io_uring (ZEROSOCK_AIO_IO=uring in its run's environment).
TESTED_LOOPS = ("c", "c-uring", "python")
IO_VARIABLE = "ZEROSOCK_AIO_IO"

_loops_made = [0, 0]


def loops_made() -> int:
    """How many loops of :func:`install_zerosock_loop`'s class this process made."""
    return _loops_made[0]


def ring_loops_made() -> int:
    """How many of them poll through io_uring."""
    return _loops_made[1]


def zerosock_loops(asked: Sequence[str]) -> List[str]:
    """The loops a runner runs for ``asked``: ``c`` is ``c-uring`` when the
    caller's environment asks for io_uring (``ZEROSOCK_AIO_IO=uring``)."""
    uring = os.environ.get(IO_VARIABLE, "").strip().lower() == "uring"
    loops = ["c-uring" if uring and loop == "c" else loop for loop in asked]
    return list(dict.fromkeys(loops))


def loop_env(loop: str) -> Dict[str, str]:
    """The environment of a child run on ``loop``: the runner, not the caller's
    settings, picks the backend and the I/O backend."""
    env = child_env()
    env.pop(IO_VARIABLE, None)
    if loop == "c-uring":
        env[IO_VARIABLE] = "uring"
    return env


def install_zerosock_loop(loop: str) -> types.ModuleType:
    """Make every loop asyncio creates a (counted) zerosock loop of ``loop``
    (one of TESTED_LOOPS).

    Through the policy (``asyncio.new_event_loop()``, ``asyncio.run()``,
    ``asyncio.Runner``, and the default policy a test resets to),
    ``asyncio.SelectorEventLoop`` and 3.13's ``asyncio.EventLoop``.  Returns the
    backend.  On ``c-uring``, a loop that would fall back to epoll is an error:
    the run must not pass on the wrong loop.
    """
    import asyncio

    from zerosock import _compat

    backend = _compat.load_backend(loop.split("-")[0])
    ring_selector: Optional[type] = None
    if loop == "c-uring":
        if os.environ.get(IO_VARIABLE) != "uring" or backend.aio.IO_BACKEND != "uring":
            raise RuntimeError(f"a run on io_uring whose loops poll with "
                               f"{backend.aio.IO_BACKEND}: {backend.aio.IO_BACKEND_REASON}")
        from zerosock._aio_ring_c import RingSelector
        ring_selector = RingSelector

    class CountedLoop(backend.aio.EventLoop):  # type: ignore[name-defined,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            _loops_made[0] += 1
            super().__init__(*args, **kwargs)
            if ring_selector is not None and isinstance(self._selector, ring_selector):
                _loops_made[1] += 1

    class Policy(backend.aio.EventLoopPolicy):  # type: ignore[name-defined,misc]
        _loop_factory = CountedLoop

    with warnings.catch_warnings():  # 3.14 deprecates policies; the suites still use them
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(Policy())
    # tearDownModule() and the policy tests reset the policy to the default: make that ours.
    if sys.version_info >= (3, 14):
        # The default is the platform module's class; the public name stays
        # the deprecated alias that warns (which CPython's tests check).
        platform_events = getattr(asyncio, "windows_events" if sys.platform == "win32"
                                  else "unix_events")
        platform_events._DefaultEventLoopPolicy = Policy
    else:
        asyncio.DefaultEventLoopPolicy = Policy  # type: ignore[misc]
    asyncio.SelectorEventLoop = CountedLoop  # type: ignore[misc]
    if hasattr(asyncio, "EventLoop"):  # 3.13: the platform's default loop class
        asyncio.EventLoop = CountedLoop  # type: ignore[misc]
    return backend


def selectors_for(loop: str) -> types.ModuleType:
    """The ``selectors`` module a test module gets on ``loop``: zerosock's, and on
    io_uring one whose epoll selector (the loop the tests make on Linux) is the ring's."""
    from zerosock import _compat

    selectors: types.ModuleType = _compat.load_backend(loop.split("-")[0]).selectors
    if loop == "c-uring":
        from zerosock._aio_ring_c import RingSelector

        ring = types.ModuleType(selectors.__name__, selectors.__doc__)
        ring.__dict__.update(vars(selectors))
        ring.EpollSelector = ring.DefaultSelector = RingSelector  # type: ignore[attr-defined]
        selectors = ring
    return selectors


def excluded_reason(excluded: Dict[str, str], test_id: str) -> Optional[str]:
    """The reason ``test_id`` is not run on zerosock: ``excluded`` maps fnmatch patterns to reasons."""
    for pattern, reason in excluded.items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None


def missing_test_package(name: str) -> Optional[str]:
    """Why the interpreter's ``test.<name>`` cannot be imported (None when it can):
    distributions may leave the test package out."""
    try:
        importlib.import_module(f"test.{name}")
    except ImportError as exc:
        return f"skipped: the interpreter's test package is missing ({exc})"
    return None


# ---------------------------------------------------------------- unittest suites

class Recorder(unittest.TextTestResult):
    """A result that keeps every test's outcome by id (``self.outcomes``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: Dict[str, str] = {}

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self.outcomes.setdefault(test.id(), "passed")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self.outcomes[test.id()] = "failed"

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self.outcomes[test.id()] = "error"

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self.outcomes[test.id()] = "skipped"

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self.outcomes[test.id()] = "passed"

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self.outcomes[test.id()] = "failed"

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase,
                   err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.outcomes[test.id()] = "failed"


def iter_tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    """The test cases of ``suite``, flattened."""
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def run_tests(module: types.ModuleType, tests: Iterable[unittest.TestCase],
              verbosity: int) -> Dict[str, str]:
    """Run ``tests`` of ``module`` (then its ``tearDownModule``); every outcome by test id."""
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=verbosity,
                                     resultclass=Recorder)
    result = runner.run(unittest.TestSuite(tests))
    tear_down = getattr(module, "tearDownModule", None)
    if tear_down is not None:
        tear_down()
    outcomes: Dict[str, str] = result.outcomes  # type: ignore[attr-defined]
    return outcomes


# ---------------------------------------------------------------- child runs

def child_env() -> Dict[str, str]:
    """The environment of a child run: the runner, not the caller's setting, picks the backend."""
    env = dict(os.environ)
    env.pop("ZEROSOCK_PURE_PYTHON", None)
    return env


def run_child(cmd: List[str], timeout: float, stdout: Any, stderr: Any,
              **popen: Any) -> Tuple[Optional[int], float]:
    """Run ``cmd`` in a session of its own, killing its whole process group after
    ``timeout`` (a suite's own children included): its exit code (None on a
    timeout) and the CPU seconds it and its children used."""
    import subprocess

    proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, start_new_session=True, **popen)
    deadline = time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if done:
            rc: Optional[int] = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            rc = None
            break
        time.sleep(0.2)
    proc.returncode = -9 if rc is None else rc  # reaped here, not by Popen
    return rc, usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- comparison and report

def tally(outcomes: Dict[str, str]) -> Dict[str, int]:
    """How many tests of a run fall in each of COLUMNS."""
    totals = dict.fromkeys(COLUMNS, 0)
    for test_id, outcome in outcomes.items():
        if test_id in MARKERS:
            continue
        if outcome in PASSING:
            totals["passed"] += 1
        elif outcome in FAILING:
            totals["failed" if outcome == "failed" else "error"] += 1
        else:
            totals[outcome] += 1
    return totals


def made_no_loop(outcomes: Dict[str, str], loop: str) -> Optional[str]:
    """What kind of loop a zerosock run on ``loop`` made none of (None when it
    did): its tests ran on something else."""
    if outcomes.get(LOOPS_MADE, "0") == "0":
        return "zerosock"
    if loop == "c-uring" and outcomes.get(RING_LOOPS_MADE, "0") == "0":
        return "io_uring"
    return None


def loops_column(outcomes: Dict[str, str]) -> str:
    """The report's count of a run's loops: ``made`` or, on io_uring, ``made/ring``."""
    made = outcomes.get(LOOPS_MADE, "-")
    return made if RING_LOOPS_MADE not in outcomes else f"{made}/{outcomes[RING_LOOPS_MADE]}"


def suspects(outcomes: Dict[str, str], reference: Optional[Dict[str, str]],
             unrun: bool = False) -> List[str]:
    """Ids that fail on zerosock but pass on stock (every failure without a
    reference; a run's markers always); with ``unrun``, then the tests that pass
    on stock and never ran on zerosock (a crash or timeout before them)."""
    found = sorted(n for n, o in outcomes.items() if o in FAILING and (
        reference is None or reference.get(n) in PASSING or n.startswith("<")))
    if unrun and reference is not None:
        found += sorted(n for n, o in reference.items() if o in PASSING and n not in outcomes)
    return found


def print_table(header: Sequence[str], widths: Sequence[int], rows: Iterable[Sequence[Any]],
                left: int = 2) -> None:
    """Rows of a report: the first ``left`` columns left-aligned, the rest right-aligned."""
    def line(cells: Sequence[Any]) -> str:
        return " ".join(f"{cell:{'<' if i < left else '>'}{width}}"
                        for i, (cell, width) in enumerate(zip(cells, widths)))

    print(line(header))
    for row in rows:
        print(line(row))


def verdict(sections: Sequence[Tuple[str, List[str]]], regressions: List[str]) -> int:
    """Print the report's non-empty ``sections`` (title, lines), then the regressions;
    the runner's exit status: 1 when there is any regression."""
    for title, lines in list(sections) + [("pass on stock asyncio, not on zerosock", regressions)]:
        if lines:
            print(f"\n{title}:")
            for line in lines:
                print("  " + line)
    if regressions:
        return 1
    print("\nno regressions against stock asyncio")
    return 0


def use_source_tree_unless_installed() -> None:
    """Run on the installed zerosock when there is one, else on this tree's ``src/``."""
    try:
        import zerosock  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.join(ROOT, "src"))
