"""Hello-world applications the adoption tests serve under uvicorn, aiohttp and gunicorn.

Every response body is the module of the event loop that served it, and each
process writes that module to a file named after its pid in the directory
``ZEROSOCK_TEST_MARKERS`` names (when set) as it starts, so a test can check
every gunicorn worker, not only the one that answered.

``python _web_apps.py run_app|loop_factory PORT`` serves the aiohttp app the
two ways aiohttp documents a custom loop: ``web.run_app(app, loop=...)``, and
an ``AppRunner`` under ``asyncio.run(..., loop_factory=...)``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Callable, Dict


def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def record_startup() -> None:
    directory = os.environ.get("ZEROSOCK_TEST_MARKERS")
    if directory:
        with open(os.path.join(directory, str(os.getpid())), "w") as f:
            f.write(loop_module())


async def asgi_app(scope: Dict[str, Any], receive: Callable[[], Any],
                   send: Callable[[Dict[str, Any]], Any]) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                record_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = loop_module().encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def make_aiohttp_app() -> Any:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=loop_module())

    async def on_startup(app: web.Application) -> None:
        record_startup()

    app = web.Application()
    app.router.add_get("/", hello)
    app.on_startup.append(on_startup)
    return app


async def aiohttp_app() -> Any:
    """The app factory gunicorn's aiohttp workers call in each worker."""
    return make_aiohttp_app()


def main(how: str, port: int) -> None:
    import zerosock.aio
    from aiohttp import web

    if how == "run_app":
        web.run_app(make_aiohttp_app(), host="127.0.0.1", port=port, print=None,
                    loop=zerosock.aio.new_event_loop())
        return

    async def serve() -> None:
        runner = web.AppRunner(make_aiohttp_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await asyncio.Event().wait()  # until SIGTERM ends the process
        finally:
            await runner.cleanup()

    if sys.version_info >= (3, 12):
        asyncio.run(serve(), loop_factory=zerosock.aio.new_event_loop)
    elif sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=zerosock.aio.new_event_loop) as runner:
            runner.run(serve())
    else:
        zerosock.aio.run(serve())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
