"""zerosock.aio under real servers, started for real on loopback: uvicorn's
``--loop``, aiohttp's ``run_app(loop=...)`` and ``loop_factory``, and the
gunicorn workers of ``zerosock.workers``; each serves one request (and gunicorn
proves every worker runs on zerosock), on both backends, with deprecation
warnings as errors.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
LOOP_MODULES = {"c": "zerosock._aio_c", "python": "zerosock._aio_py"}


@pytest.fixture(params=[pytest.param("c", marks=pytest.mark.c_extension), "python"],
                ids=["c", "py"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "c" and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    return str(request.param)


def _env(backend: str, **extra: str) -> Dict[str, str]:
    # Deprecation warnings are errors: none of these ways of adopting zerosock
    # may use an asyncio API that the running Python deprecates.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS] + sys.path),
           "PYTHONWARNINGS": "error::DeprecationWarning", **extra}
    if backend == "python":
        env["ZEROSOCK_PURE_PYTHON"] = "1"
    else:
        env.pop("ZEROSOCK_PURE_PYTHON", None)
    return env


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


class _Server:
    """A server command in its own process group, its output kept for failures."""

    def __init__(self, cmd: List[str], env: Dict[str, str]) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, env=env, cwd=TESTS, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def get(self, port: int, timeout: float = 30.0) -> str:
        """GET / once the server listens; the body, after checking the status."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}):\n"
                                     f"{self.output()}")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode()
                assert response.status == 200, (response.status, body)
                return body
            except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the server never answered:\n{self.output()}")
                time.sleep(0.1)
            finally:
                conn.close()

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the graceful stop of every one of them
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode


def test_uvicorn_loop_option_runs_on_zerosock(backend: str) -> None:
    pytest.importorskip("uvicorn")
    port = _free_port()
    server = _Server([sys.executable, "-m", "uvicorn", "_web_apps:asgi_app",
                      "--loop", "zerosock.aio:new_event_loop", "--host", "127.0.0.1",
                      "--port", str(port), "--log-level", "warning"], _env(backend))
    try:
        body = server.get(port)
    finally:
        status = server.stop()
    assert body == LOOP_MODULES[backend]
    # uvicorn shuts down gracefully, then re-raises the signal to end as it would have
    assert status == -signal.SIGTERM


@pytest.mark.parametrize("how", ["run_app", "loop_factory"])
def test_aiohttp_runs_on_zerosock(backend: str, how: str) -> None:
    pytest.importorskip("aiohttp")
    port = _free_port()
    server = _Server([sys.executable, os.path.join(TESTS, "_web_apps.py"), how, str(port)],
                     _env(backend))
    try:
        body = server.get(port)
    finally:
        server.stop()
    assert body == LOOP_MODULES[backend]


@pytest.mark.parametrize("worker, app, needs", [
    ("zerosock.workers.UvicornWorker", "_web_apps:asgi_app", "uvicorn"),
    ("zerosock.workers.GunicornWebWorker", "_web_apps:aiohttp_app", "aiohttp"),
], ids=["uvicorn", "aiohttp"])
def test_gunicorn_workers_run_on_zerosock(backend: str, tmp_path: Path, worker: str, app: str,
                                          needs: str) -> None:
    pytest.importorskip("gunicorn")
    pytest.importorskip(needs)
    port = _free_port()
    markers = tmp_path / "markers"
    markers.mkdir()
    server = _Server([sys.executable, "-m", "gunicorn", app, "-k", worker, "-w", "2",
                      "-b", f"127.0.0.1:{port}", "--chdir", TESTS, "--graceful-timeout", "5",
                      "--log-level", "warning"],
                     _env(backend, ZEROSOCK_TEST_MARKERS=str(markers)))
    try:
        body = server.get(port)
        deadline = time.monotonic() + 30
        while len(os.listdir(markers)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        log = server.output()
    finally:
        status = server.stop()
    assert body == LOOP_MODULES[backend]
    started = {name: (markers / name).read_text() for name in os.listdir(markers)}
    assert len(started) == 2, (started, log)  # two workers, each recorded its loop
    assert set(started.values()) == {LOOP_MODULES[backend]}
    assert status == 0


def test_importing_the_workers_needs_no_framework() -> None:
    code = ("import sys, zerosock, zerosock.workers as w\n"
            "loaded = {'gunicorn', 'aiohttp', 'uvicorn'} & set(sys.modules)\n"
            "assert not loaded, loaded\n"
            "assert sorted(w.__all__) == ['GunicornWebWorker', 'UvicornWorker']\n"
            "try:\n"
            "    w.NoSuchWorker\n"
            "except AttributeError as exc:\n"
            "    assert 'NoSuchWorker' in str(exc)\n"
            "else:\n"
            "    raise AssertionError('no AttributeError')\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env("c"), timeout=60)
