# cython: language_level=3
"""zerosock.aio on the C backend: the standard library's selector event loop
(TLS, subprocesses, signals, executors, happy eyeballs unchanged) polling
with zerosock's C selector."""

import asyncio

from zerosock import _aio_shared
from zerosock._selectors_c import DefaultSelector

__all__ = ["EventLoop", "EventLoopPolicy", "install", "new_event_loop", "run"]


class EventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop whose selector is zerosock's C selector."""

    def __init__(self, selector=None):
        if selector is None:
            selector = DefaultSelector()
        super().__init__(selector)


class EventLoopPolicy(_aio_shared.BasePolicy):
    """An event loop policy whose loops are :class:`EventLoop`."""

    _loop_factory = EventLoop


def new_event_loop():
    """A new, unstarted zerosock event loop."""
    return EventLoop()


def install():
    """Make zerosock's policy the current one: ``asyncio.new_event_loop()`` gives its loops."""
    _aio_shared.install_policy(EventLoopPolicy)


def run(main, *, debug=None):
    """Run a coroutine to completion on a new zerosock loop, as :func:`asyncio.run` does."""
    return _aio_shared.run_with(new_event_loop, EventLoopPolicy, main, debug)
