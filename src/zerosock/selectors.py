"""zerosock.selectors: a drop-in for the standard library's :mod:`selectors`.

The same classes, functions and semantics, from the chosen backend: C pollers
with a preallocated event array, or the pure-Python classes.  ``SelectorKey``,
``BaseSelector`` and the event bits are the standard library's own objects.
``EpollSelector``, ``KqueueSelector``, ``PollSelector`` and
``DevpollSelector`` exist where the standard library has them.
"""

from typing import TYPE_CHECKING, List

from ._compat import backend as _backend

if TYPE_CHECKING:
    from ._selectors_py import (
        EVENT_READ, EVENT_WRITE, BaseSelector, DefaultSelector, SelectorKey, SelectSelector,
    )

__all__: List[str] = list(_backend.selectors.__all__)
if not TYPE_CHECKING:
    globals().update((name, getattr(_backend.selectors, name)) for name in __all__)
