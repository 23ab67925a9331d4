"""uvicorn's gunicorn worker on zerosock.aio (see :mod:`zerosock.workers`)."""

from __future__ import annotations

import warnings
from typing import Any, Dict

from uvicorn.config import Config

try:  # the maintained home of the worker since uvicorn 0.30
    from uvicorn_worker import UvicornWorker as _BaseWorker
except ImportError:
    with warnings.catch_warnings():
        # uvicorn.workers asks users to move to uvicorn-worker on import;
        # whoever chose zerosock's worker gets the same class either way.
        warnings.simplefilter("ignore", DeprecationWarning)
        from uvicorn.workers import UvicornWorker as _BaseWorker

from . import _aio_shared, aio

__all__ = ["UvicornWorker"]

# uvicorn 0.36+ takes "module:callable" as the loop factory; older versions
# take only their own names, and "none" leaves the loop to the policy.
LOOP = "zerosock.aio:new_event_loop" if hasattr(Config, "get_loop_factory") else "none"


class UvicornWorker(_BaseWorker):  # type: ignore[misc,unused-ignore]
    """uvicorn's ``UvicornWorker`` with every worker process on zerosock.aio.

    uvicorn makes its loop from the ``loop`` setting: here zerosock's
    ``new_event_loop``.  Before Python 3.12 (and with a uvicorn before 0.36,
    which takes no loop factory) zerosock's policy is installed too, so a loop
    the application makes with ``asyncio.new_event_loop()`` is zerosock's as
    well; from 3.12 on the (deprecated) policy is left alone.
    """

    CONFIG_KWARGS: Dict[str, Any] = {"loop": LOOP, "http": "auto"}

    def init_process(self) -> None:
        if LOOP == "none" or not _aio_shared.LOOP_FACTORY_RUNS:
            aio.install()
        super().init_process()
