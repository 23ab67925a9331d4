"""Running a coroutine on a loop the ``loop_factory`` fixture makes: shared by the aio tests."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Optional

TIMEOUT = 30.0


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
