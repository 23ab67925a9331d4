"""CPython's own asyncio tests on zerosock's loop (a subset; the script runs them all)."""

import os
import subprocess
import sys

import pytest

from _kernel import ephemeral_port_count

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_stdlib_asyncio.py")
# CPython's tests bind and connect thousands of loopback sockets in a few
# minutes; each closed one holds its port in TIME_WAIT for a minute, so a
# narrow ephemeral range runs dry (EADDRINUSE on bind to port 0), and a test
# whose server thread never started waits on it to its timeout, on stock
# asyncio as on ours.  These are CPython's assumptions, not ours to change.
PORTS_NEEDED = 10000
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
    ports = ephemeral_port_count()
    if ports < PORTS_NEEDED:
        pytest.skip(f"CPython's asyncio tests need more ephemeral ports than this kernel's "
                    f"{ports} (net.ipv4.ip_local_port_range)")
    proc = subprocess.run([sys.executable, SCRIPT, "--backend", backend, "--timeout", "120", *SUBSET],
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "no regressions" in proc.stdout
