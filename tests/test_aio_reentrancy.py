"""Re-entrant callbacks on zerosock.aio: what a callback may do to the loop,
its own handle and the objects that are running, with stock asyncio as the
reference for everything observable.

The C loop runs callbacks and protocol methods from C; whatever a callback
does (cancel its own handle, drop the last reference to what is running,
close its transport from inside a read) must neither free memory that is
still in use nor change what happens, compared with the stdlib's loop.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable, List, Optional

import pytest
from _aio_loops import run


class _Item:
    """A list element whose comparison runs Python code: ``on_compare``, once."""

    def __init__(self, rank: int, on_compare: Callable[[], None]) -> None:
        self.rank = rank
        self.on_compare: Optional[Callable[[], None]] = on_compare

    def __lt__(self, other: "_Item") -> bool:
        hook, self.on_compare = self.on_compare, None
        if hook is not None:
            hook()
        return self.rank < other.rank


class _Tracked(list):  # type: ignore[type-arg]
    """A list that records how it looked when it was freed."""

    log: List[Any]

    def __del__(self) -> None:
        self.log.append(("freed", [item.rank for item in self]))


def _self_cancelling_sort(log: List[Any], cancel: Callable[[], None]) -> Callable[[], None]:
    """A bound C method (``list.sort``) whose list nothing else references:
    the callback's own reference is what keeps ``self`` alive while it runs.
    Its first comparison cancels the handle that holds the callback."""
    pending = [cancel]

    def on_compare() -> None:
        if pending:
            log.append("cancel")
            pending.pop()()

    items = _Tracked([_Item(2, on_compare), _Item(1, on_compare)])
    items.log = log
    return items.sort


def _check_freed_after_return(log: List[Any]) -> None:
    # The list is freed only once sort() returned (sorted, as the caller left it);
    # freed inside sort(), it would be seen empty and sort() would then write to freed memory.
    assert log == ["cancel", ("freed", [1, 2]), "next"]


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
def test_call_soon_callback_cancels_its_own_handle(loop_factory, debug):
    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        log: List[Any] = []
        done = loop.create_future()
        handles: List[asyncio.Handle] = []
        handles.append(loop.call_soon(_self_cancelling_sort(log, lambda: handles.pop().cancel())))
        loop.call_soon(lambda: (log.append("next"), done.set_result(None)))
        await done
        return log

    async def debug_main() -> List[Any]:
        asyncio.get_running_loop().set_debug(debug)
        return await main()

    _check_freed_after_return(run(loop_factory, debug_main()))


def test_timer_callback_cancels_its_own_handle(loop_factory):
    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        log: List[Any] = []
        done = loop.create_future()
        handles: List[asyncio.TimerHandle] = []
        when = loop.time()
        handles.append(loop.call_at(when, _self_cancelling_sort(log, lambda: handles.pop().cancel())))
        loop.call_at(when, lambda: (log.append("next"), done.set_result(None)))
        await done
        return log

    _check_freed_after_return(run(loop_factory, main()))


@pytest.mark.parametrize("writing", [False, True], ids=["reader", "writer"])
def test_io_callback_removes_itself(loop_factory, writing):
    """remove_reader/remove_writer inside the callback cancels the running handle."""
    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        log: List[Any] = []
        done = loop.create_future()
        a, b = socket.socketpair()
        try:
            b.send(b"x")  # a is readable; it is writable anyway
            if writing:
                loop.add_writer(a, _self_cancelling_sort(log, lambda: loop.remove_writer(a)))
            else:
                loop.add_reader(a, _self_cancelling_sort(log, lambda: loop.remove_reader(a)))
            # Queued after the I/O callback: it runs in the next iteration.
            loop.call_later(0, lambda: loop.call_soon(
                lambda: (log.append("next"), done.set_result(None))))
            await done
        finally:
            loop.remove_reader(a)
            loop.remove_writer(a)
            a.close()
            b.close()
        return log

    _check_freed_after_return(run(loop_factory, main()))
