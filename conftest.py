"""Fixtures shared by tests/ and benchmarks/: every behavioural test runs on both backends."""

from __future__ import annotations

import asyncio
import socket
import sys
import types
from typing import Callable, Iterator

import pytest

from zerosock import _compat


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-c-extensions", action="store_true", default=False,
                     help="skip the C backend (for installs without the extension)")
    parser.addoption("--full", action="store_true", default=False,
                     help="also run the tests marked full (long variants, left out by default)")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if config.getoption("--full"):
        return
    left_out = [item for item in items if item.get_closest_marker("full")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("full")]


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    figures = sys.modules.get("_fault_figures")  # loaded only when the link fault tests ran
    table = figures.table() if figures is not None else ""
    if table:
        terminalreporter.write_sep("=", "link faults: what each loop went through")
        terminalreporter.write(table)


def _backend_params() -> list:
    return [
        pytest.param("c", id="c", marks=pytest.mark.c_extension),
        pytest.param("python", id="py"),
    ]


def _load(request: pytest.FixtureRequest, name: str) -> types.ModuleType:
    if name == "c" and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    # A missing C backend is a failure here, never a skip: a broken build must not pass.
    return _compat.load_backend(name)


@pytest.fixture(scope="session", params=_backend_params())
def zs(request: pytest.FixtureRequest) -> types.ModuleType:
    """One zerosock backend's namespace: ``zs.Socket``, ``zs.socketpair``, ..."""
    return _load(request, request.param)


# The standard library as a third implementation, for behaviour zerosock shares with it.
STDLIB = types.SimpleNamespace(
    BACKEND="stdlib",
    Socket=socket.socket,
    socketpair=socket.socketpair,
    create_connection=socket.create_connection,
    create_server=socket.create_server,
    fromfd=socket.fromfd,
)


@pytest.fixture(scope="session", params=_backend_params() + [pytest.param("stdlib", id="std")])
def impl(request: pytest.FixtureRequest) -> types.SimpleNamespace | types.ModuleType:
    """Like ``zs``, plus the standard library as the reference implementation."""
    if request.param == "stdlib":
        return STDLIB
    return _load(request, request.param)


@pytest.fixture
def tcp_pair(impl) -> Iterator[tuple]:
    """A connected TCP pair over IPv4 loopback built by ``impl``: (client, server side)."""
    with impl.create_server(("127.0.0.1", 0)) as listener:
        client = impl.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server


@pytest.fixture(scope="session")
def c_backend(request: pytest.FixtureRequest) -> types.ModuleType:
    """The C backend alone, for tests about the extension itself."""
    return _load(request, "c")


@pytest.fixture(scope="session")
def py_backend(request: pytest.FixtureRequest) -> types.ModuleType:
    """The pure-Python backend alone."""
    return _load(request, "python")


@pytest.fixture(scope="module", params=_backend_params() + [pytest.param("stdlib", id="std")])
def loop_factory(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new event loop: zerosock.aio's on one backend, or stock asyncio's."""
    if request.param == "stdlib":
        return asyncio.SelectorEventLoop
    return _load(request, request.param).aio.new_event_loop


@pytest.fixture(params=[
    pytest.param(("c", "openssl"), id="c-openssl", marks=pytest.mark.c_extension),
    pytest.param(("c", "memorybio"), id="c-memorybio", marks=pytest.mark.c_extension),
    pytest.param(("python", None), id="py"),
    pytest.param(("stdlib", None), id="std"),
])
def tls_loop_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], asyncio.AbstractEventLoop]]:
    """``loop_factory`` for TLS: the C loop runs once per TLS engine it can use."""
    backend, engine = request.param
    if backend == "stdlib":
        yield asyncio.SelectorEventLoop
        return
    zs = _load(request, backend)
    if engine is None:
        yield zs.aio.new_event_loop
        return
    from zerosock import _aio_tls_c
    if _aio_tls_c.TLS_ENGINE == "stdlib":
        pytest.skip("this interpreter keeps the stdlib's TLS protocol")
    if engine == "openssl" and not _aio_tls_c._c_engine_available():
        pytest.skip("the OpenSSL engine is not available here")
    previous = _aio_tls_c._force_engine(engine)
    try:
        yield zs.aio.new_event_loop
    finally:
        _aio_tls_c._force_engine(previous)
