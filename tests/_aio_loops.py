"""Running a coroutine on a loop the ``loop_factory`` fixture makes: shared by the aio tests."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable, Coroutine, List, Optional

# Bounds a hang, not a speed: the valgrind run (tools/memcheck.sh), where a
# TLS handshake takes seconds on a busy machine, raises it.
TIMEOUT = float(os.environ.get("ZEROSOCK_AIO_TIMEOUT", "30"))


def stdlib_loop() -> asyncio.AbstractEventLoop:
    """Stock asyncio's selector loop: the reference for zerosock.aio."""
    return asyncio.SelectorEventLoop()


def run(factory: Callable[[], asyncio.AbstractEventLoop], coro: Coroutine[Any, Any, Any],
        handler: Optional[Callable[..., None]] = None) -> Any:
    """Run ``coro`` to completion (bounded by TIMEOUT) on a new loop, then close it."""
    loop = factory()
    if handler is not None:
        loop.set_exception_handler(handler)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def fastpath_on(name: str) -> bool:
    """Whether the C backend's fast path ``name`` (zerosock._cpython_c) is on
    in this run (ZEROSOCK_CPYTHON_FASTPATHS may turn it off)."""
    from zerosock import _cpython_c
    return bool(_cpython_c.fastpaths()[name]["on"])


def on_readiness(factory: Callable[[], asyncio.AbstractEventLoop]) -> Callable[[], asyncio.AbstractEventLoop]:
    """``factory``, but a zerosock loop on readiness (epoll) whatever
    ZEROSOCK_AIO_IO asks: for tests that pin, read for read and iteration for
    iteration, the stdlib's order of socket reads and writes.  A loop on
    io_uring completions hands over what arrived together in one call and
    sends with its next wait (docs/architecture.md); its own tests cover it."""
    if getattr(factory, "__module__", "").startswith("zerosock."):
        return lambda: factory(io="epoll")  # type: ignore[call-arg]
    return factory


async def connect_out_of_descriptors(loop: asyncio.AbstractEventLoop, client: Any, port: int,
                                     reports: List[Any], wait: float = 5.0) -> None:
    """Connect the non-blocking ``client`` to 127.0.0.1:``port`` while this
    process can open no descriptor (its table filled with copies of stdin),
    so the server's accept fails with EMFILE; wait up to ``wait`` seconds
    for something in ``reports``, then close the copies."""
    hog = []
    try:
        try:
            while True:
                hog.append(os.dup(0))
        except OSError:
            pass
        try:
            await loop.sock_connect(client, ("127.0.0.1", port))
        except OSError:
            pass
        deadline = loop.time() + wait
        while not reports and loop.time() < deadline:
            await asyncio.sleep(0.02)
    finally:
        for fd in hog:
            os.close(fd)


class Echo(asyncio.Protocol):
    """Writes back what it receives."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
