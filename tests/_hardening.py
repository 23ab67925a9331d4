"""Helpers shared by the hardening tests (faults, leaks, soak, fuzz): running
a script in a subprocess on a named backend, and reading memory figures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Optional

import zerosock

HERE = Path(__file__).resolve().parent
# The directory holding the zerosock under test (installed, or built in place in src/).
SRC = Path(zerosock.__file__).resolve().parent.parent


def subprocess_env(**extra: str) -> Dict[str, str]:
    """The environment for a child interpreter that imports this tree's zerosock."""
    paths = [str(SRC)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    env.update(extra)
    return env


def run_script(code: str, *args: str, timeout: float = 120.0,
               env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; raises with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=env or subprocess_env(),
    )
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n"
                             f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


# Imported by the child scripts (as ``from _hardening import load``): the
# namespace of a backend by name, the standard library included.
def load(name: str):  # type: ignore[no-untyped-def]
    if name == "stdlib":
        import selectors
        import socket
        import types
        return types.SimpleNamespace(
            BACKEND="stdlib", Socket=socket.socket, socketpair=socket.socketpair,
            create_connection=socket.create_connection, create_server=socket.create_server,
            selectors=selectors,
        )
    from zerosock import _compat
    return _compat.load_backend(name)


def rss_bytes() -> int:
    """Resident set size of this process now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil  # not Linux
        return int(psutil.Process().memory_info().rss)


def under_sanitizer() -> bool:
    return "asan" in os.environ.get("LD_PRELOAD", "")


def fuzz_examples(default: int) -> int:
    """A property test's example count, capped by ``ZEROSOCK_FUZZ_EXAMPLES``
    (which the valgrind run sets low: each example there costs seconds)."""
    return min(default, int(os.environ.get("ZEROSOCK_FUZZ_EXAMPLES", default)))
