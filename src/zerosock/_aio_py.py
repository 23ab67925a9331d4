"""zerosock.aio on the Python backend: the standard library's loop on zerosock's Python selectors."""

from __future__ import annotations

import asyncio
import selectors
from typing import Any, Coroutine, Optional, TypeVar

from . import _aio_shared
from ._selectors_py import DefaultSelector

_T = TypeVar("_T")

__all__ = ["EventLoop", "EventLoopPolicy", "IO_BACKEND", "IO_BACKEND_REASON", "TLS_ENGINE",
           "install", "new_event_loop", "run"]

# Which TLS implementation runs: on this backend, the standard library's.
TLS_ENGINE: str = "stdlib"


def _uring_unavailable() -> Optional[str]:
    return "the Python backend has no io_uring loop"


# What a new loop polls with ("epoll", the selector, on this backend) and why.
IO_BACKEND: str
IO_BACKEND_REASON: str
IO_BACKEND, IO_BACKEND_REASON = _aio_shared.resolve_io(_aio_shared.requested_io(),
                                                       _uring_unavailable)


class EventLoop(asyncio.SelectorEventLoop):
    """The standard library's selector event loop, polling with zerosock's selector."""

    def __init__(self, selector: Optional[selectors.BaseSelector] = None) -> None:
        if selector is None:
            selector = DefaultSelector()
        super().__init__(selector)


class EventLoopPolicy(_aio_shared.BasePolicy):
    """An event loop policy whose loops are :class:`EventLoop`."""

    _loop_factory = EventLoop


def new_event_loop(io: Optional[str] = None) -> EventLoop:
    """A new, unstarted zerosock event loop.

    ``io`` (``"epoll"`` or ``"uring"``; default :data:`IO_BACKEND`) is the I/O
    backend asked for; this backend polls with its selector either way,
    warning once when io_uring was asked for."""
    if io is not None:
        _aio_shared.resolve_io(io, _uring_unavailable)
    return EventLoop()


def install() -> None:
    """Make zerosock's policy the current one: ``asyncio.new_event_loop()`` gives its loops."""
    _aio_shared.install_policy(EventLoopPolicy)


def run(main: Coroutine[Any, Any, _T], *, debug: Optional[bool] = None) -> _T:
    """Run a coroutine to completion on a new zerosock loop, as :func:`asyncio.run` does."""
    return _aio_shared.run_with(new_event_loop, EventLoopPolicy, main, debug)
