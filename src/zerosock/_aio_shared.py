"""Pieces of zerosock.aio written once for both backends: the policy, install(),
run() and the choice of the loop's I/O backend (epoll or io_uring)."""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from typing import Any, Callable, Coroutine, Optional, Set, Tuple, TypeVar

_T = TypeVar("_T")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _default_policy_class() -> type:
    # From 3.14 reading asyncio.DefaultEventLoopPolicy warns (policies go in
    # 3.16); the class itself is the platform module's _DefaultEventLoopPolicy.
    if sys.version_info >= (3, 14):
        if sys.platform == "win32":
            from asyncio import windows_events as platform_events
        else:
            from asyncio import unix_events as platform_events
        return platform_events._DefaultEventLoopPolicy  # type: ignore[no-any-return]
    return asyncio.DefaultEventLoopPolicy


class BasePolicy(_default_policy_class()):  # type: ignore[misc]
    """The platform's default policy (its child watchers too, before 3.14), making our loops.

    Subclasses set ``_loop_factory`` to their loop class, as the standard
    library's own policies do.
    """


def install_policy(policy_cls: type) -> None:
    # The public call, so that 3.14+ gives its own deprecation warning: the
    # policy system is what install() uses, and it is going away.
    asyncio.set_event_loop_policy(policy_cls())


# From 3.12 a loop is made by asyncio.run(loop_factory=...)/asyncio.Runner, not a policy.
LOOP_FACTORY_RUNS = sys.version_info >= (3, 12)


def run_with(loop_factory: LoopFactory, policy_cls: type,
             main: Coroutine[Any, Any, _T], debug: Optional[bool]) -> _T:
    """``asyncio.run(main)`` on a loop made by ``loop_factory``, on every supported Python."""
    if sys.version_info >= (3, 12):
        return asyncio.run(main, debug=debug, loop_factory=loop_factory)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
            return runner.run(main)
    # 3.9 and 3.10 create the loop through the policy: swap it in for this run only.
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(policy_cls())
    try:
        if debug is None:  # keep the default (PYTHONASYNCIODEBUG, -X dev)
            return asyncio.run(main)
        return asyncio.run(main, debug=debug)
    finally:
        asyncio.set_event_loop_policy(previous)


# -- the I/O backend: readiness through epoll, or io_uring ----------------------------

IO_BACKENDS = ("epoll", "uring")
IO_VARIABLE = "ZEROSOCK_AIO_IO"
DEFAULT_IO_REASON = f"epoll is the default ({IO_VARIABLE}=uring asks for io_uring)"

# The fallback reasons already warned about: each is said once per process.
_warned: Set[str] = set()


def check_io(io: str) -> str:
    """``io`` when it names an I/O backend; ValueError otherwise, as for any bad argument."""
    if io not in IO_BACKENDS:
        raise ValueError(f"unknown I/O backend {io!r}; choose 'epoll' or 'uring'")
    return io


def requested_io() -> str:
    """What ``ZEROSOCK_AIO_IO`` asks for: ``"epoll"`` when unset or empty, and
    (with a warning) when it names no backend, so a typo never stops an import."""
    value = os.environ.get(IO_VARIABLE, "").strip().lower()
    if not value:
        return "epoll"
    if value not in IO_BACKENDS:
        warnings.warn(f"{IO_VARIABLE}={value!r} names no I/O backend ('epoll' or 'uring'): "
                      "using epoll", RuntimeWarning, stacklevel=3)
        return "epoll"
    return value


def resolve_io(io: str, uring_unavailable: Callable[[], Optional[str]],
               stacklevel: int = 3) -> Tuple[str, str]:
    """``(backend, reason)`` for a loop that asks for ``io``: io_uring when
    asked and ``uring_unavailable()`` has no objection, else epoll, with a
    RuntimeWarning (once per reason) when io_uring was asked for and refused."""
    if check_io(io) == "epoll":
        return "epoll", DEFAULT_IO_REASON
    why_not = uring_unavailable()
    if why_not is None:
        return "uring", "io_uring was asked for and is available"
    reason = f"io_uring was asked for but is not available: {why_not}; using epoll"
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(reason, RuntimeWarning, stacklevel=stacklevel)
    return "epoll", reason
