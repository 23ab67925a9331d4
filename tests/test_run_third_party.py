"""tests/run_third_party.py's plugin and comparison, on a small suite of our own (no network)."""

import json
import os
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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


@pytest.mark.parametrize("backend", [
    pytest.param("c", marks=pytest.mark.c_extension),
    pytest.param("python"),
])
# Named as uvicorn's module with a test EXCLUDED lists, to see the exclusion at work.
def test_plugin_runs_the_suite_on_zerosock(backend, tmp_path, request):
    if backend == "c" and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
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
