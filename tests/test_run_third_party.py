"""tests/run_third_party.py's plugin and comparison, on a small suite of our own (no network),
and the loops the runners install (io_uring's among them)."""

import errno
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _kernel  # noqa: E402
import _suite_compare  # noqa: E402
import run_third_party  # noqa: E402

SUITE_TESTS = '''
import asyncio

import pytest


def test_new_event_loop_is_the_runs_loop():
    loop = asyncio.new_event_loop()
    try:
        assert type(loop).__module__ == {module!r}
    finally:
        loop.close()


def test_asyncio_run():
    async def main():
        return type(asyncio.get_running_loop()).__name__

    assert asyncio.run(main()) == {name!r}


def test_loop_auto():  # in EXCLUDED["uvicorn"]
    assert {module!r} == "asyncio.unix_events"


@pytest.mark.parametrize("factory", [asyncio.SelectorEventLoop])
def test_selector_event_loop(factory):
    loop = factory()
    loop.close()
'''


def _skip_unless_loop_here(loop, request):
    if loop.startswith("c") and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    if loop == "c-uring" and _kernel.io_uring_refusal():
        pytest.skip(f"io_uring is not usable here: {_kernel.io_uring_refusal()}")


@pytest.mark.parametrize("backend", [
    pytest.param("c", marks=pytest.mark.c_extension),
    pytest.param("c-uring", marks=pytest.mark.c_extension),
    pytest.param("python"),
])
# Named as uvicorn's module with a test EXCLUDED lists, to see the exclusion at work.
def test_plugin_runs_the_suite_on_zerosock(backend, tmp_path, request):
    _skip_unless_loop_here(backend, request)
    tests = tmp_path / "src" / "tests"
    tests.mkdir(parents=True)
    (tests / "test_auto_detection.py").write_text(textwrap.dedent(SUITE_TESTS).format(
        module="_suite_compare", name="CountedLoop"))
    suite = run_third_party.Suite(sdist="mini==0", install=[], options=[], paths=["tests"],
                                  timeout=120)
    outcomes = run_third_party.run_suite("uvicorn", suite, sys.executable, str(tmp_path / "src"),
                                         backend, str(tmp_path / "cache"), [], 120, False)
    assert outcomes == {
        "tests/test_auto_detection.py::test_new_event_loop_is_the_runs_loop": "passed",
        "tests/test_auto_detection.py::test_asyncio_run": "passed",
        "tests/test_auto_detection.py::test_loop_auto": "excluded",
        # logged under the stock class's name, so that it compares with the stock run
        f"tests/test_auto_detection.py::test_selector_event_loop[{run_third_party.STOCK_LOOP_NAME}]":
            "passed",
        "<zerosock loops made>": "3",
        # on io_uring, every one of them polls through a ring
        **({"<io_uring loops made>": "3"} if backend == "c-uring" else {}),
    }


def test_plugin_leaves_stock_asyncio_alone(tmp_path):
    tests = tmp_path / "src" / "tests"
    tests.mkdir(parents=True)
    (tests / "test_auto_detection.py").write_text(textwrap.dedent(SUITE_TESTS).format(
        module="asyncio.unix_events", name="_UnixSelectorEventLoop"))
    suite = run_third_party.Suite(sdist="mini==0", install=[], options=[], paths=["tests"],
                                  timeout=120)
    outcomes = run_third_party.run_suite("uvicorn", suite, sys.executable, str(tmp_path / "src"),
                                         "stdlib", str(tmp_path / "cache"), [], 120, False)
    assert set(outcomes.values()) == {"passed", "0"}
    assert len(outcomes) == 5
    log = (tmp_path / "cache" / "runs" / "uvicorn-stdlib.jsonl").read_text().splitlines()
    assert json.loads(log[-1]) == {"nodeid": "<zerosock loops made>", "outcome": "0"}


@pytest.mark.c_extension
@pytest.mark.skipif(platform.machine() not in _kernel.AUDIT_ARCH
                    or not sys.platform.startswith("linux"),
                    reason="the seccomp filter is written for x86_64 and aarch64 Linux")
def test_a_run_on_io_uring_fails_when_the_loop_would_fall_back(request):
    """A ring refused (here by a seccomp filter, as container runtimes do): the
    runners' c-uring loop must fail the run, never pass it on epoll."""
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    io_uring_setup = 425
    code = _kernel.SECCOMP_REFUSAL + textwrap.dedent("""
        sys.path.insert(0, sys.argv[4])
        import _suite_compare
        _suite_compare.install_zerosock_loop("c-uring")
    """)
    env = _suite_compare.loop_env("c-uring")
    done = subprocess.run([sys.executable, "-W", "ignore::RuntimeWarning", "-c", code,
                           str(_kernel.AUDIT_ARCH[platform.machine()]), str(io_uring_setup),
                           str(errno.EPERM), os.path.dirname(os.path.abspath(__file__))],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "a run on io_uring whose loops poll with epoll" in done.stderr
    assert "seccomp" in done.stderr
