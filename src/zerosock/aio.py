"""zerosock.aio: an asyncio event loop on zerosock's sockets and selectors.

``zerosock.aio.run(main())``, ``asyncio.run(main(), loop_factory=zerosock.aio.new_event_loop)``
(3.12+) or ``zerosock.aio.install()`` then plain asyncio.  On the C backend the
loop's transports and dispatch run in C; on the Python backend it is the
standard library's loop on zerosock's Python selectors.  Same API on both.
"""

from typing import TYPE_CHECKING, List

from ._compat import backend as _backend

if TYPE_CHECKING:
    from ._aio_py import EventLoop as EventLoop
    from ._aio_py import EventLoopPolicy as EventLoopPolicy
    from ._aio_py import IO_BACKEND as IO_BACKEND
    from ._aio_py import IO_BACKEND_REASON as IO_BACKEND_REASON
    from ._aio_py import TLS_ENGINE as TLS_ENGINE
    from ._aio_py import install as install
    from ._aio_py import new_event_loop as new_event_loop
    from ._aio_py import run as run

__all__: List[str] = list(_backend.aio.__all__)
if not TYPE_CHECKING:
    globals().update((name, getattr(_backend.aio, name)) for name in __all__)
