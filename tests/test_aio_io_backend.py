"""The choice of zerosock.aio's I/O backend: ``ZEROSOCK_AIO_IO`` and
``new_event_loop(io=...)`` ask for epoll or io_uring; ``IO_BACKEND`` says what
a new loop gets and ``IO_BACKEND_REASON`` why, a refused io_uring falling back
to epoll with one warning.  Imports that read the variable run in children."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import platform
import subprocess
import sys
import textwrap
import warnings

import pytest

import _kernel
from zerosock import _aio_shared

# A child's report, as JSON: what zerosock.aio chose at import and the
# RuntimeWarnings said meanwhile (and by two loops asking for io_uring).
_REPORT = textwrap.dedent("""
    import json, warnings
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", RuntimeWarning)
        import zerosock, zerosock.aio as aio
        for _ in range(2):
            aio.new_event_loop(io="uring").close()
    print(json.dumps({"backend": zerosock.BACKEND, "io": aio.IO_BACKEND,
                      "reason": aio.IO_BACKEND_REASON,
                      "warnings": [str(w.message) for w in said
                                   if issubclass(w.category, RuntimeWarning)]}))
""")


def _child(code: str, *args: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("ZEROSOCK_AIO_IO", "ZEROSOCK_PURE_PYTHON")}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", code, *args], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _uring_loop_here() -> bool:
    """Whether this machine runs the C loop on io_uring when asked."""
    from zerosock import _aio_c
    return _aio_c._uring_unavailable() is None


@pytest.fixture
def fresh_warnings():
    """Each fallback reason warns once per process: forget those said so far."""
    saved = set(_aio_shared._warned)
    _aio_shared._warned.clear()
    yield
    _aio_shared._warned.clear()
    _aio_shared._warned.update(saved)


def test_the_io_backend_is_named(zs):
    assert zs.aio.IO_BACKEND in ("epoll", "uring")
    assert isinstance(zs.aio.IO_BACKEND_REASON, str) and zs.aio.IO_BACKEND_REASON
    if zs.BACKEND == "python":
        assert zs.aio.IO_BACKEND == "epoll"


def test_an_unknown_io_backend_is_refused(zs):
    for wrong in ("kqueue", "URING", ""):
        with pytest.raises(ValueError, match="unknown I/O backend"):
            zs.aio.new_event_loop(io=wrong)


@pytest.mark.parametrize("io", ["epoll", "uring"])
def test_a_loop_asked_for_either_backend_runs(zs, io, fresh_warnings):
    async def main():
        await asyncio.sleep(0.001)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"ping")
        got = await reader.readexactly(4)
        writer.close()
        await writer.wait_closed()
        return got

    async def echo(reader, writer):
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a refused io_uring says so
        loop = zs.aio.new_event_loop(io=io)
    try:
        server = loop.run_until_complete(asyncio.start_server(echo, "127.0.0.1", 0))
        assert loop.run_until_complete(main()) == b"ping"
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()


def test_the_python_backend_falls_back_once_with_its_reason(py_backend, fresh_warnings):
    with pytest.warns(RuntimeWarning, match="the Python backend has no io_uring loop"):
        py_backend.aio.new_event_loop(io="uring").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        py_backend.aio.new_event_loop(io="uring").close()  # said once is enough


def test_the_default_is_epoll_without_a_word():
    found = _child(_REPORT.replace('io="uring"', 'io="epoll"'))
    assert found["io"] == "epoll"
    assert found["reason"] == _aio_shared.DEFAULT_IO_REASON
    assert found["warnings"] == []


@pytest.mark.parametrize("pure", ["0", "1"], ids=["c", "py"])
def test_the_variable_asks_for_io_uring(pure, request):
    if pure == "0" and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    found = _child(_REPORT, ZEROSOCK_AIO_IO="uring", ZEROSOCK_PURE_PYTHON=pure)
    if found["backend"] == "c" and _uring_loop_here():
        assert (found["io"], found["warnings"]) == ("uring", [])
        return
    assert found["io"] == "epoll"
    assert found["reason"].startswith("io_uring was asked for but is not available: ")
    if found["backend"] == "python":
        assert "the Python backend has no io_uring loop" in found["reason"]
    # Said once, at import, not again by the loops that asked for it.
    assert found["warnings"] == [found["reason"]]


def test_a_variable_naming_no_backend_warns_and_keeps_epoll():
    found = _child(_REPORT.replace('io="uring"', 'io="epoll"'), ZEROSOCK_AIO_IO="iouring")
    assert found["io"] == "epoll"
    assert len(found["warnings"]) == 1 and "names no I/O backend" in found["warnings"][0]


@pytest.mark.c_extension
@pytest.mark.skipif(platform.machine() not in _kernel.AUDIT_ARCH
                    or not sys.platform.startswith("linux"),
                    reason="the seccomp filter is written for x86_64 and aarch64 Linux")
@pytest.mark.parametrize("errno_name", ["EPERM", "ENOSYS"])
def test_a_seccomp_filter_makes_the_loop_fall_back(errno_name, request):
    """A container runtime's seccomp filter refusing io_uring_setup: the loop
    polls with epoll, and says why."""
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    if errno_name == "EPERM" and _kernel.sysctl("kernel.io_uring_disabled") not in (None, "0"):
        pytest.skip("kernel.io_uring_disabled is set: its own reason comes first")
    io_uring_setup = 425
    found = _child(_kernel.SECCOMP_REFUSAL + _REPORT, str(_kernel.AUDIT_ARCH[platform.machine()]),
                   str(io_uring_setup), str(getattr(errno, errno_name)), ZEROSOCK_AIO_IO="uring")
    assert found["backend"] == "c"
    assert found["io"] == "epoll"
    assert f"io_uring_setup failed with {errno_name}" in found["reason"]
    assert "seccomp" in found["reason"]
    assert found["warnings"] == [found["reason"]]


# -- the loop's behaviour on each I/O backend, stock asyncio the reference ----------------

@pytest.fixture(params=[
    pytest.param(("c", "epoll"), id="c-epoll", marks=pytest.mark.c_extension),
    pytest.param(("c", "uring"), id="c-uring", marks=pytest.mark.c_extension),
    pytest.param(("python", "epoll"), id="py"),
    pytest.param(("stdlib", None), id="std"),
])
def io_loop_factory(request):
    """What makes a loop on one backend and I/O backend (io_uring skipped where refused)."""
    backend, io = request.param
    if backend == "stdlib":
        return asyncio.SelectorEventLoop
    if backend == "c" and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    from zerosock import _compat
    aio = _compat.load_backend(backend).aio
    if io == "uring":
        from zerosock import _aio_c
        if _aio_c._uring_unavailable() is not None:
            pytest.skip(f"io_uring is not usable here: {_aio_c._uring_unavailable()}")
    return lambda: aio.new_event_loop(io=io)


def _run(factory, coro_fn):
    loop = factory()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro_fn(), 30))
    finally:
        loop.close()


def test_a_socket_closed_after_remove_reader_is_closed_at_once(io_loop_factory):
    """The ring holds a watched file while its poll is in flight: removing
    the reader must let it go before the socket's close, not at the next wait."""
    import socket
    mine, peer = socket.socketpair()
    peer.setblocking(False)

    async def main():
        loop = asyncio.get_running_loop()
        loop.add_reader(mine, lambda: None)
        await asyncio.sleep(0.01)  # a wait: the poll is in flight
        loop.remove_reader(mine)
        mine.close()
        return peer.recv(1)  # in the same callback: no wait between

    try:
        assert _run(io_loop_factory, main) == b""  # the end is there already
    finally:
        mine.close()
        peer.close()


def test_readers_and_writers_come_and_go_on_reused_descriptors(io_loop_factory):
    """Descriptors closed and reused, readers and writers added, swapped and
    removed: each callback runs for its own socket's readiness alone."""
    import socket

    async def main():
        loop = asyncio.get_running_loop()
        for round_ in range(20):
            a, b = socket.socketpair()
            a.setblocking(False)
            got = loop.create_future()
            writable = loop.create_future()
            loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(10)))
            loop.add_writer(a, lambda: writable.done() or writable.set_result(True))
            assert await writable
            loop.remove_writer(a)
            await asyncio.sleep(0)
            b.send(b"r%d" % round_)
            assert await got == b"r%d" % round_
            loop.remove_reader(a)
            b.send(b"unwatched")  # nobody reads it: no callback may run
            await asyncio.sleep(0.001)
            a.close()
            b.close()
        return True

    assert _run(io_loop_factory, main)


def test_a_loop_made_in_one_thread_runs_in_another(io_loop_factory):
    import threading
    loop = io_loop_factory()
    result = []

    async def main():
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"x")
        data = await reader.read(1)
        writer.close()
        await writer.wait_closed()
        return data

    async def echo(reader, writer):
        writer.write(await reader.read(1))
        await writer.drain()
        writer.close()

    try:
        server = loop.run_until_complete(asyncio.start_server(echo, "127.0.0.1", 0))
        thread = threading.Thread(
            target=lambda: result.append(loop.run_until_complete(asyncio.wait_for(main(), 30))))
        thread.start()
        thread.join(60)
        assert result == [b"x"]
        server.close()
        loop.run_until_complete(server.wait_closed())  # and back in this one
    finally:
        loop.close()
