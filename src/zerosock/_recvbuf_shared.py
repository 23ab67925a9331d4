"""Pieces of RecvBuffer written once and used by both backends: the
exceptions, the size constants and the argument checks of the slow paths."""

from __future__ import annotations

import os
import sys
from operator import index
from typing import Any, Optional

#: ``max_size`` when none is given: 16 MiB, or the capacity if that is larger.
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
DEFAULT_CAPACITY = 65536


class IncompleteReadError(EOFError):
    """The stream ended in the middle of a frame.

    Raised by ``readexactly`` and ``readuntil`` (and their ``_view`` variants)
    once end of stream has been seen and the buffered bytes cannot make the
    frame.  As :class:`asyncio.IncompleteReadError`: ``partial`` holds a copy
    of the bytes buffered, ``expected`` the byte count asked for (``None``
    for a separator search).  Unlike asyncio, the buffer keeps those bytes.
    """

    def __init__(self, partial: bytes, expected: Optional[int]) -> None:
        what = "undefined" if expected is None else repr(expected)
        super().__init__(f"{len(partial)} bytes read on a total of {what} expected bytes")
        self.partial = partial
        self.expected = expected

    def __reduce__(self) -> Any:
        return type(self), (self.partial, self.expected)


class LimitOverrunError(Exception):
    """A frame is longer than the ``max_length`` given to a reader.

    For ``readuntil`` the separator does not end within the first ``limit``
    bytes buffered; for ``readprefixed`` the length prefix announces more
    than ``limit`` bytes.  No amount of further data can make a frame that
    fits.  The buffer is left
    exactly as it was: the caller decides whether to close the connection or
    to ``consume`` and resynchronise.
    """

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit

    def __reduce__(self) -> Any:
        return type(self), (self.args[0], self.limit)


class BufferFullError(Exception):
    """The buffer holds ``max_size`` unread bytes (or a ``feed`` would take it
    past that); nothing was read or appended."""


class PoolExhaustedError(Exception):
    """``BufferPool.acquire`` found every buffer of the pool in use."""


def sizes(capacity: Any, max_size: Any) -> "tuple[int, int]":
    """Check RecvBuffer's constructor arguments; return ``(capacity, max_size)``."""
    capacity = index(capacity)
    if capacity < 1:
        raise ValueError("capacity must be at least 1")
    if max_size is None:
        max_size = max(capacity, DEFAULT_MAX_SIZE)
    else:
        max_size = index(max_size)
        if max_size < capacity:
            raise ValueError("max_size must be at least capacity")
    if max_size > sys.maxsize:
        raise OverflowError("max_size is too large")
    return capacity, max_size


def pool_sizes(size: Any, count: Any) -> "tuple[int, int]":
    """Check BufferPool's constructor arguments; return ``(size, count)``."""
    size = index(size)
    count = index(count)
    if size < 1:
        raise ValueError("size must be at least 1")
    if count < 0:
        raise ValueError("count must not be negative")
    return size, count


def limit_error(limit: int) -> LimitOverrunError:
    return LimitOverrunError(f"separator is not found within the first {limit} bytes", limit)


def prefix_limit_error(length: int, limit: int) -> LimitOverrunError:
    return LimitOverrunError(f"frame length {length} exceeds max_length={limit}", limit)


PREFIX_SIZE_MESSAGE = "prefix_size must be 1, 2, 4 or 8"
BYTEORDER_MESSAGE = "byteorder must be 'big' or 'little'"


def full_error(max_size: int) -> BufferFullError:
    return BufferFullError(f"RecvBuffer would hold more than max_size={max_size} bytes")


def os_error(code: int) -> OSError:
    """The OSError subclass the standard library raises for ``code``."""
    return OSError(code, os.strerror(code))


EXPORTED_MESSAGE = "cannot move or resize a RecvBuffer while a view of it is exported"
BUSY_MESSAGE = "another thread is filling this RecvBuffer"


for _error in (IncompleteReadError, LimitOverrunError, BufferFullError, PoolExhaustedError):
    _error.__module__ = "zerosock"  # where users import them from
