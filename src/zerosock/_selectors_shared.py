"""Selector pieces written once and used by both backends.

``SelectorKey``, ``BaseSelector`` and the event bits are the standard
library's own objects, so ``isinstance`` checks and code written against
:mod:`selectors` keep working with zerosock's selectors.
"""

from __future__ import annotations

import selectors as _std
from collections.abc import Mapping
from typing import Any, Iterator, Protocol

SelectorKey = _std.SelectorKey
BaseSelector = _std.BaseSelector
EVENT_READ: int = _std.EVENT_READ
EVENT_WRITE: int = _std.EVENT_WRITE

CLOSED_MESSAGE = "I/O operation on closed selector"


class _KeyedSelector(Protocol):
    @property
    def _fd_to_key(self) -> "Mapping[int, _std.SelectorKey]": ...
    def _fileobj_lookup(self, fileobj: Any) -> int: ...


class SelectorMapping(Mapping[Any, "_std.SelectorKey"]):
    """Read-only mapping of file objects to selector keys, as ``get_map()`` returns."""

    __slots__ = ("_selector",)

    def __init__(self, selector: _KeyedSelector) -> None:
        self._selector = selector

    def __len__(self) -> int:
        return len(self._selector._fd_to_key)

    def __getitem__(self, fileobj: Any) -> "_std.SelectorKey":
        try:
            fd = self._selector._fileobj_lookup(fileobj)
            return self._selector._fd_to_key[fd]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def __iter__(self) -> Iterator[int]:
        return iter(self._selector._fd_to_key)
