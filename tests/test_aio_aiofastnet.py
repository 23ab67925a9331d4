"""aiofastnet over zerosock.aio: its own C transports and TLS engine drive the
loop's readers and writers from Cython callbacks that add and remove
themselves, which is what once crashed the C loop (aiohttp HTTPS served
through aiofastnet).  On the C loop, the Python loop and stock asyncio.

Each scenario runs in a subprocess, each run bounded in time, first on stock
asyncio: where aiofastnet fails there too (its 1.2 stalls now and then echoing
over TLS on CPython 3.15), the test says so within seconds and skips, rather
than wait for a hang; a failure over zerosock's loop is checked against more
runs on stock, and must come again over zerosock's loop, before it counts.
Skipped where aiofastnet (or, for TLS, trustme; for HTTP, aiohttp) is not
installed.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from typing import Callable, Dict, Optional, Tuple

import pytest
from _aio_loops import TIMEOUT

aiofastnet = pytest.importorskip("aiofastnet")

HERE = os.path.dirname(os.path.abspath(__file__))
# Runs of a scenario over zerosock's loop, and on stock asyncio before trusting
# it (aiofastnet's stall on 3.15 hits about one run in ten).  A run takes well
# under a second; one that has not ended after RUN_SECONDS is stalled, not slow.
RUNS = 5
STOCK_RUNS = 20
RUN_SECONDS = 10.0
STALLED = 3  # the probe's exit status for a stalled run


def make_tls_contexts() -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for localhost, from a throwaway CA."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def _run(factory: Callable[[], asyncio.AbstractEventLoop], coro,  # type: ignore[no-untyped-def]
         timeout: float = TIMEOUT) -> object:
    loop = factory()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _echo(server_ctx: "ssl.SSLContext | None", client_ctx: "ssl.SSLContext | None") -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        for _ in range(3):  # several connections: each closes from both ends
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx,
                server_hostname="localhost" if client_ctx is not None else None)
            for size in (1, 1000, 100_000, 1_000_000):
                payload = os.urandom(size)

                async def send() -> None:
                    writer.write(payload)
                    await writer.drain()

                # Read while writing: an echo of more than the socket buffers
                # hold waits for this side to read before it reads more.
                echoed, _ = await asyncio.gather(reader.readexactly(size), send())
                assert echoed == payload
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        # Bounded: a connection stuck in aiofastnet would keep it waiting for good.
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)


async def _aiohttp_https(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    """The program of the original crash report: aiohttp serving HTTPS with aiofastnet."""
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=b"hello " + body)

    app = web.Application()
    app.router.add_route("*", "/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        connector = aiohttp.TCPConnector(ssl=client_ctx)
        async with aiohttp.ClientSession(connector=connector) as session:
            for i in range(20):  # kept-alive and fresh connections
                headers = {"Connection": "close"} if i % 5 == 4 else {}
                async with session.post(f"https://localhost:{port}/", data=b"x" * i,
                                        headers=headers) as response:
                    assert response.status == 200
                    assert await response.read() == b"hello " + b"x" * i
    finally:
        await runner.cleanup()


# name: (coroutine function of (server context, client context), uses TLS)
SCENARIOS = {
    "echo": (_echo, False),
    "tls_echo": (_echo, True),
    "aiohttp_https": (_aiohttp_https, True),
}


Contexts = Optional[Tuple[ssl.SSLContext, ssl.SSLContext]]


def _scenario(name: str, contexts: Contexts):  # type: ignore[no-untyped-def]
    run, tls = SCENARIOS[name]
    server_ctx, client_ctx = contexts if tls and contexts else (None, None)
    return run(server_ctx, client_ctx)


def _base_loop(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if loop == "stdlib":
        return asyncio.SelectorEventLoop
    from zerosock import _compat

    return _compat.load_backend(loop).aio.new_event_loop  # type: ignore[no-any-return]


def probe(loop: str, name: str, runs: int) -> None:
    """Run scenario ``name`` ``runs`` times with aiofastnet over ``loop``
    ("stdlib", "c" or "python"), each on a new loop: what the subprocess of
    :func:`failure` does."""
    contexts = make_tls_contexts() if SCENARIOS[name][1] else None
    factory = aiofastnet.loop_factory(_base_loop(loop))
    for _ in range(runs):
        try:
            _run(factory, _scenario(name, contexts), RUN_SECONDS)
        except asyncio.TimeoutError:
            sys.exit(STALLED)
        asyncio.set_event_loop(None)  # aiofastnet's factory makes each loop the current one


def failure(loop: str, name: str, runs: int) -> Optional[str]:
    """How scenario ``name`` fails over ``loop`` in ``runs`` runs, or None
    (in a subprocess, each run bounded by RUN_SECONDS)."""
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import test_aio_aiofastnet as t; "
            f"t.probe({loop!r}, {name!r}, {runs})")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=runs * RUN_SECONDS + 60)
    except subprocess.TimeoutExpired:
        return "it hangs outside any run"
    if out.returncode == STALLED:
        return f"a run stalled (no end within {RUN_SECONDS:.0f} s)"
    lines = out.stderr.strip().splitlines()
    return None if out.returncode == 0 else f"it fails: {lines[-1] if lines else out.returncode}"


_STOCK_FAILURES: Dict[Tuple[str, int], Optional[str]] = {}


def stock_failure(name: str, runs: int) -> Optional[str]:
    """How scenario ``name`` fails on stock asyncio with aiofastnet, or None (once per session)."""
    if (name, runs) not in _STOCK_FAILURES:
        _STOCK_FAILURES[(name, runs)] = failure("stdlib", name, runs)
    return _STOCK_FAILURES[(name, runs)]


def skip_when_stock_fails(name: str, runs: int) -> None:
    why = stock_failure(name, runs)
    if why is not None:
        pytest.skip(f"aiofastnet {getattr(aiofastnet, '__version__', '')} on stock asyncio of "
                    f"Python {sys.version.split()[0]}: {why}; not zerosock's to match")


@pytest.mark.parametrize("loop", [pytest.param("c", marks=pytest.mark.c_extension),
                                  "python"], ids=["c", "py"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_through_aiofastnet(loop, name, request):
    if loop == "c" and request.config.getoption("--no-c-extensions"):
        pytest.skip("C extensions disabled with --no-c-extensions")
    if name == "aiohttp_https":
        pytest.importorskip("aiohttp")
    skip_when_stock_fails(name, STOCK_RUNS)  # stock first
    why = failure(loop, name, RUNS)
    if why is not None:
        # aiofastnet's stall can miss the first look at stock: look longer,
        # and count it against zerosock only when it comes again here (a
        # rare stall comes once in five runs on either loop now and then).
        skip_when_stock_fails(name, 2 * STOCK_RUNS)
        again = failure(loop, name, 2 * RUNS)
        if again is not None:
            pytest.fail(f"{name} over zerosock.aio ({loop}): {why}, and again in "
                        f"{2 * RUNS} more runs: {again}; stock asyncio passed "
                        f"{3 * STOCK_RUNS} runs")
