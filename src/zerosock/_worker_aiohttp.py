"""aiohttp's gunicorn worker on zerosock.aio (see :mod:`zerosock.workers`)."""

from __future__ import annotations

import asyncio

from aiohttp import worker as _aiohttp_worker

from . import aio

__all__ = ["GunicornWebWorker"]


class GunicornWebWorker(_aiohttp_worker.GunicornWebWorker):  # type: ignore[misc,unused-ignore]
    """``aiohttp.worker.GunicornWebWorker`` with every worker process on zerosock.aio.

    As aiohttp's ``GunicornUVLoopWebWorker`` does for uvloop, it installs
    zerosock's event loop policy in the worker before aiohttp makes its loop,
    so that loop, and any the application makes with ``asyncio.new_event_loop()``,
    is zerosock's.
    """

    def init_process(self) -> None:
        # The loop inherited across fork from the arbiter is not ours to keep.
        try:
            asyncio.get_event_loop().close()
        except RuntimeError:
            pass
        aio.install()
        super().init_process()
