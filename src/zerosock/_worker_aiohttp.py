"""aiohttp's gunicorn worker on zerosock.aio (see :mod:`zerosock.workers`)."""

from __future__ import annotations

import asyncio

from aiohttp import worker as _aiohttp_worker
from gunicorn.workers import base as _gunicorn_base

from . import _aio_shared, aio

__all__ = ["GunicornWebWorker"]


class GunicornWebWorker(_aiohttp_worker.GunicornWebWorker):  # type: ignore[misc,unused-ignore]
    """``aiohttp.worker.GunicornWebWorker`` with every worker process on zerosock.aio.

    It makes the worker's loop with :func:`zerosock.aio.new_event_loop` where
    aiohttp's worker calls ``asyncio.new_event_loop()``.  Before Python 3.12
    it also installs zerosock's event loop policy, as aiohttp's
    ``GunicornUVLoopWebWorker`` does for uvloop, so a loop the application
    makes with ``asyncio.new_event_loop()`` is zerosock's too; from 3.12 on
    it leaves the (deprecated) policy alone.
    """

    def init_process(self) -> None:
        if not _aio_shared.LOOP_FACTORY_RUNS:
            aio.install()
        # aiohttp's init_process without its get_event_loop() call (which
        # warns or fails outside a loop on 3.12+) and with zerosock's loop.
        self.loop = aio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        _gunicorn_base.Worker.init_process(self)
