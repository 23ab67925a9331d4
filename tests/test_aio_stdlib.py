"""CPython's own asyncio tests on zerosock's loop (a subset; the script runs them all)."""

import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_stdlib_asyncio.py")
SUBSET = ["test_sock_lowlevel", "test_buffered_proto", "test_server", "test_streams",
          "test_server_context"]  # (3.15 on)


@pytest.mark.slow
@pytest.mark.parametrize("backend", [
    pytest.param("c", marks=pytest.mark.c_extension),
    pytest.param("python"),
])
def test_stdlib_asyncio_tests_pass_on_zerosock(backend, request):
    if backend == "c" and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    proc = subprocess.run([sys.executable, SCRIPT, "--backend", backend, "--timeout", "120", *SUBSET],
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "no regressions" in proc.stdout
