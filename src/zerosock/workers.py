"""Gunicorn worker classes that run every worker process on zerosock.aio::

    gunicorn app:app -k zerosock.workers.UvicornWorker       # an ASGI app, served by uvicorn
    gunicorn app:app -k zerosock.workers.GunicornWebWorker   # an aiohttp.web.Application

Each is the framework's own worker class with the event loop swapped, under
the framework's own name, so moving to zerosock changes only the module.  The
classes are built when first looked up: importing this module (or zerosock)
needs neither gunicorn nor the frameworks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:
    from ._worker_aiohttp import GunicornWebWorker as GunicornWebWorker
    from ._worker_uvicorn import UvicornWorker as UvicornWorker

__all__ = ["GunicornWebWorker", "UvicornWorker"]

# which private module defines each class; importing it imports its framework
_HOMES: Dict[str, str] = {
    "GunicornWebWorker": "zerosock._worker_aiohttp",
    "UvicornWorker": "zerosock._worker_uvicorn",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
