"""Pieces of zerosock.aio written once for both backends: the policy, install() and run()."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable, Coroutine, Optional, TypeVar

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
