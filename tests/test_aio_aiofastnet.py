"""aiofastnet over zerosock.aio: its own C transports and TLS engine drive the
loop's readers and writers from Cython callbacks that add and remove
themselves, which is what once crashed the C loop (aiohttp HTTPS served
through aiofastnet).  On the C loop, the Python loop and stock asyncio.

Skipped where aiofastnet (or, for TLS, trustme; for HTTP, aiohttp) is not
installed.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Callable, Iterator, Tuple

import pytest
from _aio_loops import TIMEOUT

aiofastnet = pytest.importorskip("aiofastnet")


@pytest.fixture
def patched_factory(loop_factory) -> Iterator[Callable[[], asyncio.AbstractEventLoop]]:
    """What makes a loop whose networking methods are aiofastnet's."""
    yield aiofastnet.loop_factory(loop_factory)
    asyncio.set_event_loop(None)  # aiofastnet's factory makes each loop the current one


@pytest.fixture(scope="module")
def tls_contexts() -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for localhost, from a throwaway CA."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def _run(factory: Callable[[], asyncio.AbstractEventLoop], coro) -> object:  # type: ignore[no-untyped-def]
    loop = factory()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))
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
        await server.wait_closed()


def test_echo_through_aiofastnet(patched_factory):
    _run(patched_factory, _echo(None, None))


def test_tls_echo_through_aiofastnet(patched_factory, tls_contexts):
    server_ctx, client_ctx = tls_contexts
    _run(patched_factory, _echo(server_ctx, client_ctx))


def test_aiohttp_https_through_aiofastnet(patched_factory, tls_contexts):
    """The program of the original crash report: aiohttp serving HTTPS with aiofastnet."""
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    server_ctx, client_ctx = tls_contexts

    async def hello(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=b"hello " + body)

    async def main() -> None:
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

    _run(patched_factory, main())
