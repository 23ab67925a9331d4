"""The pure-Python selectors: the standard library's classes, with the few
checks the C backend makes too.  Same API as ``_selectors_c``.

Both backends refuse ``register()`` and ``select()`` on a closed selector with
ValueError (the standard library does so for epoll, kqueue and /dev/poll
only), refuse descriptors too large for a C int at ``register()``, and
validate the events given to ``modify()`` before changing anything.
"""

from __future__ import annotations

import selectors as _std
from typing import Any, List, Optional, Tuple

from ._selectors_shared import (  # noqa: F401
    CLOSED_MESSAGE, EVENT_READ, EVENT_WRITE, BaseSelector, SelectorKey,
)

_BOTH = EVENT_READ | EVENT_WRITE

__all__ = [
    "EVENT_READ", "EVENT_WRITE", "SelectorKey", "BaseSelector",
    "SelectSelector", "DefaultSelector",
]


class _Checked:
    """Mixin over a standard-library selector class: events checked by modify()."""

    def modify(self, fileobj: Any, events: int, data: Any = None) -> SelectorKey:
        """Change a registered file object's events and/or data; returns the new key."""
        if (not events) or (events & ~_BOTH):  # no helper call: modify() is hot in event loops
            raise ValueError(f"Invalid events: {events!r}")
        return super().modify(fileobj, events, data)  # type: ignore[misc, no-any-return]


class _ClosedChecked(_Checked):
    """For the selectors without a kernel object, which the standard library
    lets register() and select() after close()."""

    _closed = False

    def register(self, fileobj: Any, events: int, data: Any = None) -> SelectorKey:
        """Register a file object (a descriptor or an object with ``fileno()``)
        for EVENT_READ and/or EVENT_WRITE; returns its SelectorKey."""
        if self._closed:
            raise ValueError(CLOSED_MESSAGE)
        return super().register(fileobj, events, data)  # type: ignore[misc, no-any-return]

    def select(self, timeout: Optional[float] = None) -> List[Tuple[SelectorKey, int]]:
        """Wait until a registered file object is ready or ``timeout`` seconds
        pass (None: no limit; <= 0: do not wait); returns ``[(key, events), ...]``."""
        if self._closed:
            raise ValueError(CLOSED_MESSAGE)
        return super().select(timeout)  # type: ignore[misc, no-any-return]

    def close(self) -> None:
        """Unregister everything; idempotent."""
        self._closed = True
        super().close()  # type: ignore[misc]


_FD_MAX = 2**31 - 1


class SelectSelector(_ClosedChecked, _std.SelectSelector):
    """Selector over select(2)."""

    def register(self, fileobj: Any, events: int, data: Any = None) -> SelectorKey:
        """Register a file object (a descriptor or an object with ``fileno()``)
        for EVENT_READ and/or EVENT_WRITE; returns its SelectorKey."""
        key = super().register(fileobj, events, data)
        if key.fd > _FD_MAX:
            # The other selectors refuse it here too (the stdlib's only at select()).
            super().unregister(fileobj)
            raise OverflowError("file descriptor is too large")
        return key


if hasattr(_std, "PollSelector"):
    class PollSelector(_ClosedChecked, _std.PollSelector):
        """Selector over poll(2)."""

    __all__.append("PollSelector")

if hasattr(_std, "EpollSelector"):
    class EpollSelector(_Checked, _std.EpollSelector):
        """Selector over Linux epoll(7)."""

    __all__.append("EpollSelector")

if hasattr(_std, "KqueueSelector"):
    class KqueueSelector(_Checked, _std.KqueueSelector):  # type: ignore[name-defined, misc, unused-ignore]
        """Selector over BSD kqueue(2)."""

    __all__.append("KqueueSelector")

if hasattr(_std, "DevpollSelector"):
    class DevpollSelector(_Checked, _std.DevpollSelector):  # type: ignore[name-defined, misc, unused-ignore]
        """Selector over Solaris /dev/poll."""

    __all__.append("DevpollSelector")

# The same choice as the standard library's (it tests what the kernel supports).
DefaultSelector: type = globals()[_std.DefaultSelector.__name__]
