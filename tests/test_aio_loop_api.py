"""The loop methods called per request (call_soon, call_later, call_at,
TimerHandle.cancel, get_debug, time, create_future, create_task), as the C
``_asyncio`` Futures and Tasks and the frameworks call them: the same
behaviour on zerosock's C loop (where they are C methods), its Python loop and
stock asyncio, debug mode and methods replaced on the loop itself included."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
import threading
import time
import types
from typing import Any, Callable, List
from unittest import mock

import pytest
from _aio_loops import fastpath_on

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def _context_with(value: str) -> contextvars.Context:
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, value)
    return ctx


@pytest.fixture
def loop(loop_factory: Callable[[], asyncio.AbstractEventLoop]):  # type: ignore[no-untyped-def]
    lp = loop_factory()
    asyncio.set_event_loop(lp)
    yield lp
    asyncio.set_event_loop(None)
    if not lp.is_closed():
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.close()


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))
    loop.run_until_complete(asyncio.sleep(0))


# -- call_soon --------------------------------------------------------------------------

def test_call_soon_order_args_and_context(loop):
    seen: List[Any] = []
    loop.call_soon(seen.append, 1)
    loop.call_soon(lambda *a: seen.append(a), 2, 3)
    loop.call_soon(lambda: seen.append(VAR.get()), context=_context_with("a"))
    loop.call_soon(lambda: seen.append(VAR.get()), context=None)
    h = loop.call_soon(seen.append, "cancelled")
    h.cancel()
    loop.call_soon(seen.append, 4)
    _drain(loop)
    assert seen == [1, (2, 3), "a", "unset", 4]
    assert isinstance(h, asyncio.Handle) and h.cancelled()


def test_future_callbacks_reach_call_soon_with_their_context(loop):
    # A C Future schedules each done callback by loop.call_soon(cb, fut, context=ctx).
    seen: List[Any] = []
    fut = loop.create_future()
    fut.add_done_callback(lambda f: seen.append(("a", VAR.get(), f.result())),
                          context=_context_with("x"))
    fut.add_done_callback(lambda f: seen.append(("b", VAR.get())))
    loop.call_soon(fut.set_result, 7)
    _drain(loop)
    assert seen == [("a", "x", 7), ("b", "unset")]


def test_call_soon_argument_errors_as_stdlib(loop):
    cases = [(lambda: loop.call_soon(), "callback"),
             (lambda: loop.call_soon(print, bogus=1), "bogus"),
             (lambda: loop.call_later(1), "callback"),
             (lambda: loop.call_at(1.0, print, context=None, extra=2), "extra")]
    if sys.version_info >= (3, 11):  # before, the stdlib let a None time through
        cases += [(lambda: loop.call_later(None, print), "delay must not be None"),
                  (lambda: loop.call_at(None, print), "when cannot be None")]
    for call, words in cases:
        with pytest.raises(TypeError) as info:
            call()
        if words != "callback":  # the interpreters word a missing argument differently
            assert words in str(info.value)
    assert not loop._ready and not loop._scheduled


def test_closed_loop_refuses_callbacks(loop):
    loop.close()
    for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print),
                 lambda: loop.call_at(1.0, print)):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            call()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.create_task(coro)
    coro.close()


def test_call_soon_replaced_on_the_loop_is_what_futures_call(loop):
    calls: List[Any] = []
    original = loop.call_soon

    def spy(*args: Any, **kwargs: Any) -> asyncio.Handle:
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    loop.call_soon = spy
    fut = loop.create_future()
    fut.add_done_callback(lambda f: None)
    fut.set_result(1)
    assert len(calls) == 1
    args, kwargs = calls[0]
    assert args[1] is fut and set(kwargs) == {"context"}
    del loop.call_soon
    _drain(loop)


def test_subclass_call_soon_is_what_futures_call(loop_factory):
    calls: List[Any] = []
    probe = loop_factory()
    base = type(probe)
    probe.close()

    class Sub(base):  # type: ignore[misc, valid-type]
        def call_soon(self, callback, *args, context=None):  # type: ignore[no-untyped-def]
            calls.append(callback)
            return super().call_soon(callback, *args, context=context)

    lp = Sub()
    try:
        assert lp.run_until_complete(asyncio.sleep(0, "done")) == "done"
        assert calls  # the Task's steps came through it
    finally:
        lp.close()



def test_call_soon_patched_on_the_class_later_is_what_futures_call(loop_factory):
    calls: List[Any] = []
    lp = _subclass_loop(loop_factory, {})
    cls = type(lp)
    original = cls.call_soon

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((self, args, kwargs))
        return original(self, *args, **kwargs)

    try:
        cls.call_soon = spy  # after the loop was made
        fut = lp.create_future()
        fut.add_done_callback(lambda f: None)
        fut.set_result(1)
        assert len(calls) == 1 and calls[0][0] is lp and calls[0][1][1] is fut
        assert set(calls[0][2]) == {"context"}
        lp.call_soon(print, "x", context=None).cancel()
        assert len(calls) == 2 and calls[1][1] == (print, "x")
        del cls.call_soon  # the base class's again
        fut = lp.create_future()
        fut.add_done_callback(lambda f: None)
        fut.set_result(2)
        assert len(calls) == 2
        lp.run_until_complete(asyncio.sleep(0))
    finally:
        lp.close()


def test_call_soon_of_the_loop_is_a_bound_method(loop):
    bound = loop.call_soon
    assert bound.__self__ is loop and bound.__name__ == "call_soon"
    assert list(inspect.signature(bound).parameters)[:2] == ["callback", "args"]
    handle = bound(print, "y")
    assert isinstance(handle, asyncio.Handle) and handle._args == ("y",)
    handle.cancel()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.close()
        bound(print)

# -- debug mode ------------------------------------------------------------------------------

def test_debug_mode_checks_callbacks_and_threads(loop):
    loop.call_soon(1).cancel()  # accepted outside debug mode, as by the stdlib
    loop.set_debug(True)
    assert loop.get_debug() is True
    with pytest.raises(TypeError, match="a callable object was expected by call_soon"):
        loop.call_soon(1)
    with pytest.raises(TypeError, match="a callable object was expected by call_at"):
        loop.call_later(1, 1)
    errors: List[BaseException] = []

    async def main() -> None:
        def other_thread() -> None:
            try:
                loop.call_soon(print)
            except RuntimeError as exc:
                errors.append(exc)
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()

    loop.run_until_complete(main())
    assert len(errors) == 1 and "thread" in str(errors[0])
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_debug_mode_tracebacks_start_at_the_caller(loop):
    loop.set_debug(True)
    handle = loop.call_soon(print)
    timer = loop.call_later(10, print)
    fut = loop.create_future()
    coro = asyncio.sleep(0)
    task = loop.create_task(coro)
    for made in (handle, timer, task):
        assert made._source_traceback[-1].filename == __file__, made
    # The stdlib's create_future leaves its own frame last.
    assert fut._source_traceback[-1].name == "create_future"
    assert fut._source_traceback[-2].filename == __file__
    timer.cancel()
    loop.run_until_complete(task)


def test_get_debug_replaced_on_the_loop(loop):
    loop.get_debug = lambda: True
    try:
        # A C Future asks the loop's get_debug() when it is made.
        assert loop.create_future()._source_traceback is not None
    finally:
        del loop.get_debug
    assert loop.create_future()._source_traceback is None


# -- timers -----------------------------------------------------------------------------------

def test_time_is_the_monotonic_clock(loop):
    before = time.monotonic()
    now = loop.time()
    assert before <= now <= time.monotonic()
    assert isinstance(now, float)


def test_time_replaced_on_the_loop_drives_call_later(loop):
    loop.time = lambda: 1000.0
    try:
        handle = loop.call_later(5, print)
        assert handle.when() == 1005.0
        handle.cancel()
    finally:
        del loop.time



def _subclass_loop(loop_factory: Callable[[], asyncio.AbstractEventLoop],
                   namespace: dict) -> asyncio.AbstractEventLoop:
    """A loop of a subclass (with ``namespace``) of ``loop_factory``'s loop class."""
    probe = loop_factory()
    base = type(probe)
    probe.close()
    return types.new_class("Sub", (base,), exec_body=lambda ns: ns.update(namespace))()


def test_time_of_a_subclass_drives_the_loop(loop_factory):
    clock = [1000.0]
    lp = _subclass_loop(loop_factory, {"time": lambda self: clock[0]})
    seen: List[Any] = []
    try:
        assert lp.time() == 1000.0
        timer = lp.call_later(5, seen.append, "late")
        assert timer.when() == 1005.0
        lp.call_at(999.0, seen.append, "due")
        lp.run_until_complete(asyncio.sleep(0))
        assert seen == ["due"]
        clock[0] = 1005.0  # due now by the loop's own clock, whatever time.monotonic says
        lp.run_until_complete(asyncio.sleep(0))
        assert seen == ["due", "late"]
    finally:
        lp.close()


def test_time_follows_the_monotonic_clock_between_calls(loop):
    readings = []
    for _ in range(3):
        readings.append((time.monotonic(), loop.time()))
    readings.append((time.monotonic(), 0.0))
    for (before, now), (after, _) in zip(readings, readings[1:]):
        assert before <= now <= after

def test_timer_cancel_and_order(loop):
    seen: List[Any] = []
    now = loop.time()
    loop.call_at(now + 0.002, seen.append, "b")
    loop.call_at(now + 0.001, seen.append, "a", context=_context_with("unused"))
    gone = loop.call_later(0.0015, seen.append, "gone")
    gone.cancel()
    gone.cancel()  # twice: counted once
    many = [loop.call_later(100, print) for _ in range(200)]
    for h in many:
        h.cancel()
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == ["a", "b"]
    assert gone.cancelled()
    # Most cancelled timers are dropped from the heap, as by the stdlib.
    assert len(loop._scheduled) < 200


def test_timer_handle_cancelled_replaced_on_the_loop(loop):
    told: List[asyncio.TimerHandle] = []
    loop._timer_handle_cancelled = told.append
    try:
        handle = loop.call_later(10, print)
        handle.cancel()
        assert told == [handle]
    finally:
        del loop._timer_handle_cancelled


# -- futures and tasks ---------------------------------------------------------------------------

def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future) and fut.get_loop() is loop
    with mock.patch("asyncio.futures.Future") as patched:
        assert loop.create_future() is patched.return_value
        patched.assert_called_once_with(loop=loop)



def test_create_future_makes_asyncio_futures_of_each_loop(loop_factory):
    loops = [loop_factory(), loop_factory()]
    try:
        for lp in loops:
            fut = lp.create_future()
            assert type(fut) is asyncio.Future and fut.get_loop() is lp
            assert not fut.done() and fut._source_traceback is None
            lp.call_soon(fut.set_result, lp)
            assert lp.run_until_complete(fut) is lp
    finally:
        for lp in loops:
            lp.close()


def test_create_future_uses_a_patched_future_class(loop):
    made: List[Any] = []

    class Recorded(asyncio.Future):  # type: ignore[type-arg]
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(**kwargs)

    with mock.patch("asyncio.futures.Future", Recorded):
        fut = loop.create_future()
    assert type(fut) is Recorded and made == [{"loop": loop}] and fut.get_loop() is loop
    again = loop.create_future()
    assert type(again) is asyncio.Future and made == [{"loop": loop}]
    fut.cancel()
    again.cancel()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is new in 3.11")
def test_create_task_uses_a_patched_task_class(loop):
    made: List[Any] = []

    class Recorded(asyncio.Task):  # type: ignore[type-arg]
        def __init__(self, coro: Any, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(coro, **kwargs)

    with mock.patch("asyncio.tasks.Task", Recorded):
        task = loop.create_task(asyncio.sleep(0, "r"))
        named = loop.create_task(asyncio.sleep(0, "n"), name="n")
    assert type(task) is Recorded and task.get_loop() is loop
    # Before 3.14 create_task passes name and context; from 3.14 what the caller gave.
    if sys.version_info >= (3, 14):
        assert made == [{"loop": loop}, {"loop": loop, "name": "n"}]
    else:
        assert made == [{"loop": loop, "name": None, "context": None},
                        {"loop": loop, "name": "n", "context": None}]
    assert loop.run_until_complete(task) == "r" and loop.run_until_complete(named) == "n"
    plain = loop.create_task(asyncio.sleep(0, "p"))
    assert type(plain) is asyncio.Task and len(made) == 2
    assert loop.run_until_complete(plain) == "p"


def test_create_task_makes_asyncio_tasks_of_each_loop(loop_factory):
    loops = [loop_factory(), loop_factory()]

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    try:
        for lp in loops:
            task = lp.create_task(where())
            assert type(task) is asyncio.Task and task.get_loop() is lp
            assert task.get_name().startswith("Task-")
            assert task in asyncio.all_tasks(lp)
            assert lp.run_until_complete(task) is lp
    finally:
        for lp in loops:
            lp.close()

@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is new in 3.11")
def test_create_task_name_and_context(loop):
    async def read() -> str:
        return VAR.get()

    task = loop.create_task(read(), name="named", context=_context_with("ctx"))
    assert task.get_name() == "named"
    assert loop.run_until_complete(task) == "ctx"
    unnamed = loop.create_task(read())
    assert unnamed.get_name().startswith("Task-")
    assert loop.run_until_complete(unnamed) == "unset"
    coro = read()
    with pytest.raises(TypeError):
        loop.create_task(coro, bogus=1)
    coro.close()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is new in 3.11")
def test_create_task_uses_the_task_factory(loop):
    made: List[Any] = []

    def factory(lp, coro, **kwargs):  # type: ignore[no-untyped-def]
        made.append(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)
    task = loop.create_task(asyncio.sleep(0, 1), name="via-factory")
    assert loop.run_until_complete(task) == 1 and task.get_name() == "via-factory"
    ctx = _context_with("f")
    loop.run_until_complete(loop.create_task(asyncio.sleep(0), context=ctx))
    # Before 3.14 create_task names the task itself; from 3.14 the factory gets every keyword.
    named = {"name": "via-factory"} if sys.version_info >= (3, 14) else {}
    assert made == [named, {"context": ctx}]
    loop.set_task_factory(None)


@pytest.mark.skipif(sys.version_info < (3, 14), reason="create_task(eager_start=) is new in 3.14")
def test_create_task_eager_start(loop):
    steps: List[str] = []

    async def job() -> str:
        steps.append("started")
        await asyncio.sleep(0)
        return "done"

    async def main() -> None:
        eager = loop.create_task(job(), eager_start=True, name="eager")
        assert steps == ["started"] and eager.get_name() == "eager"  # ran to its first await
        lazy = loop.create_task(job(), eager_start=False)
        assert steps == ["started"]
        assert await eager == "done" and await lazy == "done"
        assert steps == ["started", "started"]
        # A coroutine that finishes without suspending gives a task already done.
        finished = loop.create_task(_value("now"), eager_start=True)
        assert finished.done() and finished.result() == "now"

    loop.run_until_complete(main())


async def _value(value: Any) -> Any:
    return value


@pytest.mark.skipif(sys.version_info < (3, 14), reason="create_task(eager_start=) is new in 3.14")
def test_create_task_passes_eager_start_to_the_task_factory(loop):
    made: List[Any] = []

    def factory(lp, coro, **kwargs):  # type: ignore[no-untyped-def]
        made.append(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def main() -> None:
        task = loop.create_task(_value(1), eager_start=True, name="e")
        assert task.done() and task.result() == 1

    loop.set_task_factory(factory)
    try:
        loop.run_until_complete(main())
    finally:
        loop.set_task_factory(None)
    assert {"eager_start": True, "name": "e"} in made


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_task_factory is new in 3.12")
def test_eager_task_factory(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    try:
        async def main() -> None:
            task = loop.create_task(_value("eager"))
            assert task.done() and task.result() == "eager"
            assert asyncio.current_task() is not task

        loop.run_until_complete(main())
    finally:
        loop.set_task_factory(None)


def test_create_task_patched_task_class(loop):
    coro = asyncio.sleep(0)
    with mock.patch("asyncio.tasks.Task") as patched:
        assert loop.create_task(coro) is patched.return_value
    assert patched.call_args[0] == (coro,) and patched.call_args[1]["loop"] is loop
    coro.close()


def test_c_loop_methods_are_method_descriptors(loop_factory):
    lp = loop_factory()
    try:
        if not type(lp).__module__.startswith("zerosock._aio_c"):
            pytest.skip("C methods only on zerosock's C loop")
        for name in ("call_soon", "call_later", "call_at", "_timer_handle_cancelled",
                     "get_debug", "time", "create_future"):
            assert type(type(lp).__dict__[name]).__name__ == "method_descriptor", name
            assert not isinstance(type(lp).__dict__[name], types.FunctionType)
        handle, timer = lp.call_soon(print), lp.call_later(1, print)
        for h, names in ((handle, ("cancel", "cancelled")), (timer, ("cancel", "cancelled", "when"))):
            for name in names:
                if fastpath_on("handle_slots"):
                    assert type(type(h).__dict__[name]).__name__ == "method_descriptor", name
                else:  # the generic path: the stdlib's methods
                    assert name not in type(h).__dict__
                    assert isinstance(getattr(type(h), name), types.FunctionType), name
            h.cancel()
    finally:
        lp.close()


def test_c_loop_methods_run_no_python_frame(loop_factory):
    # Outside debug mode the C methods do the work themselves: no Python
    # method (the fallback) runs.
    lp = loop_factory()
    frames: List[str] = []

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "call":
            frames.append(frame.f_code.co_name)

    async def nothing() -> None:
        pass

    try:
        if not type(lp).__module__.startswith("zerosock._aio_c"):
            pytest.skip("C methods only on zerosock's C loop")
        coro = nothing()
        sys.setprofile(profile)
        try:
            lp.call_soon(print, context=None).cancel()
            lp.call_later(5, print).cancel()
            lp.call_at(lp.time() + 5, print).cancel()
            lp.get_debug()
            lp.create_future()
            task = lp.create_task(coro)
        finally:
            sys.setprofile(None)
        # A new Task registers itself in a WeakSet.  Before 3.11, create_task
        # stays the stdlib's (its Task takes no context).
        allowed = {"add"}
        if not fastpath_on("handle_slots"):
            allowed |= {"__init__", "cancel"}  # the stdlib's handles, made and cancelled
        if sys.version_info < (3, 11):
            allowed |= {"create_task", "_check_closed"}
        assert set(frames) <= allowed, frames
        lp.run_until_complete(task)
    finally:
        lp.close()


# -- the handles call_soon, call_later and call_at return ------------------------------------

def _cancelled_count(loop: asyncio.AbstractEventLoop) -> int:
    # Cancelled timers still in the heap: the stdlib's counter, or the C heap's.
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    if isinstance(scheduled, list):
        return int(loop._timer_cancelled_count)  # type: ignore[attr-defined]
    return int(scheduled.cancelled_count)


def test_timer_handle_is_a_timer_handle(loop):
    when = loop.time() + 100
    for timer in (loop.call_at(when, print, 1), loop.call_later(100, print, 1)):
        assert isinstance(timer, asyncio.TimerHandle) and isinstance(timer, asyncio.Handle)
        assert type(timer).__name__ == "TimerHandle"
        assert timer._scheduled is True and timer.cancelled() is False
        assert timer._callback is print and timer._args == (1,)
        timer.cancel()
    timer = loop.call_at(when, print)
    assert timer.when() == when and type(timer.when()) is float
    assert loop.call_at(7, print).when() == 7  # kept as given, as the stdlib keeps it
    handle = loop.call_soon(print)
    assert isinstance(handle, asyncio.Handle) and not isinstance(handle, asyncio.TimerHandle)
    assert type(handle).__name__ == "Handle" and handle.cancelled() is False
    for h in (timer, handle):
        with pytest.raises(AttributeError):
            h.spare = 1  # type: ignore[union-attr]
    handle.cancel()
    _drain(loop)


def test_timer_cancel_twice_counts_once(loop):
    timer = loop.call_later(100, print, "x")
    before = _cancelled_count(loop)
    assert timer.cancel() is None
    assert timer.cancelled() is True
    assert timer._callback is None and timer._args is None
    assert _cancelled_count(loop) == before + 1
    timer.cancel()
    assert _cancelled_count(loop) == before + 1
    assert timer._scheduled is True  # dropped from the heap lazily
    _drain(loop)


def test_timer_cancel_after_it_ran_counts_nothing(loop):
    seen: List[Any] = []
    timer = loop.call_later(0, seen.append, "ran")
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == ["ran"] and timer._scheduled is False
    before = _cancelled_count(loop)
    timer.cancel()
    assert timer.cancelled() and _cancelled_count(loop) == before
    assert timer._callback is None


def test_handle_cancelled_from_its_own_callback(loop):
    seen: List[Any] = []
    holder: List[asyncio.Handle] = []

    def cancel_self(tag: str) -> None:
        holder[0].cancel()
        seen.append((tag, holder[0].cancelled(), holder[0]._callback))
        holder.pop()

    for schedule in (lambda: loop.call_soon(cancel_self, "soon"),
                     lambda: loop.call_later(0, cancel_self, "later")):
        before = _cancelled_count(loop)
        holder.append(schedule())
        loop.run_until_complete(asyncio.sleep(0.01))
        assert _cancelled_count(loop) == before  # no longer scheduled when it runs
    assert seen == [("soon", True, None), ("later", True, None)]


def test_timer_comparisons_and_hash(loop):
    now = loop.time()
    a = loop.call_at(now + 10, print)
    b = loop.call_at(now + 20, print)
    twin = loop.call_at(now + 10, print)
    assert a < b and a <= b and b > a and b >= a and not b < a
    assert a == twin and a <= twin and a >= twin and hash(a) == hash(now + 10)
    assert a != b and sorted([b, a]) == [a, b]
    assert a.__lt__(1) is NotImplemented
    with pytest.raises(TypeError):
        a < 1  # noqa: B015
    stdlib = asyncio.TimerHandle(now + 10, print, (), loop)
    assert stdlib == a and a == stdlib and not a < stdlib
    twin.cancel()
    assert a != twin  # the stdlib's equality includes the cancelled flag
    for h in (a, b):
        h.cancel()


def test_handle_repr_and_debug_cancel_keep_the_repr(loop):
    def callback(arg: Any) -> None:
        pass

    when = loop.time() + 100
    timer = loop.call_at(when, callback, 1)
    reference = asyncio.TimerHandle(when, callback, (1,), loop)
    assert repr(timer) == repr(reference)
    handle = loop.call_soon(callback, 2)
    assert repr(handle) == repr(asyncio.Handle(callback, (2,), loop))
    loop.set_debug(True)
    try:
        for h in (timer, handle, reference):
            shown = repr(h).replace("<Handle ", "<Handle cancelled ").replace(
                "<TimerHandle ", "<TimerHandle cancelled ")
            h.cancel()
            assert h._repr == shown and repr(h) == shown
            assert "callback" in repr(h) and h._callback is None
    finally:
        loop.set_debug(False)
    timer = loop.call_later(100, callback, 3)
    timer.cancel()
    assert timer._repr is None and "callback" not in repr(timer)
    _drain(loop)


def test_handle_cancel_asks_a_replaced_get_debug(loop):
    asked: List[int] = []

    def get_debug() -> bool:
        asked.append(1)
        return True

    handle = loop.call_soon(print, "x")
    loop.get_debug = get_debug
    try:
        handle.cancel()
    finally:
        del loop.get_debug
    # (Since 3.13 the repr the debug cancel keeps asks get_debug() again.)
    assert asked and handle._repr is not None and "print" in handle._repr
    _drain(loop)


def test_timer_cancel_tells_a_subclass(loop_factory):
    told: List[Any] = []
    probe = loop_factory()
    base = type(probe)
    probe.close()

    class Sub(base):  # type: ignore[misc, valid-type]
        def _timer_handle_cancelled(self, handle):  # type: ignore[no-untyped-def]
            told.append(handle)
            super()._timer_handle_cancelled(handle)

    lp = Sub()
    try:
        timer = lp.call_later(10, print)
        timer.cancel()
        timer.cancel()
        assert told == [timer] and _cancelled_count(lp) == 1
    finally:
        lp.close()


def test_timer_cancel_errors_as_stdlib(loop):
    def refuse(handle: asyncio.TimerHandle) -> None:
        raise ValueError("refused")

    timer = loop.call_later(10, print)
    loop._timer_handle_cancelled = refuse
    try:
        with pytest.raises(ValueError, match="refused"):
            timer.cancel()
    finally:
        del loop._timer_handle_cancelled
    # Told before the handle is marked: the stdlib leaves it uncancelled.
    assert not timer.cancelled() and timer._callback is print

    def broken_debug() -> bool:
        raise KeyError("debug")

    loop.get_debug = broken_debug
    try:
        with pytest.raises(KeyError):
            timer.cancel()
    finally:
        del loop.get_debug
    # Handle.cancel marks the handle before it asks get_debug().
    assert timer.cancelled() and timer._callback is print
    assert _cancelled_count(loop) == 1


def test_handles_with_unusual_state_take_the_stdlib_path(loop):
    timer = loop.call_later(10, print)
    timer._cancelled = 0  # falsy, not False
    timer.cancel()
    assert timer._cancelled is True and _cancelled_count(loop) == 1
    handle = loop.call_soon(print)
    del handle._loop
    with pytest.raises(AttributeError):
        handle.cancel()
    del timer._when
    with pytest.raises(AttributeError):
        timer.when()
    del handle._cancelled
    with pytest.raises(AttributeError):
        handle.cancelled()
    handle._cancelled = True  # (the loop drops it without running it)
    _drain(loop)


class _SchedulesWhenTested:
    """A ``_cancelled`` flag whose truth test schedules a timer, the first time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seen: List[Any]) -> None:
        self.loop, self.seen, self.done = loop, seen, False

    def __bool__(self) -> bool:
        if not self.done:
            self.done = True
            # Late, so that the stdlib's heappush leaves it last in the list
            # its compaction is iterating, where that loop still sees it.
            self.seen.append(self.loop.call_later(1000, print))
        return False


def test_timer_heap_compaction_keeps_what_a_flag_schedules(loop):
    seen: List[Any] = []
    odd = loop.call_later(100, print)
    odd._cancelled = _SchedulesWhenTested(loop, seen)
    cancelled = [loop.call_later(50 + i / 100, print) for i in range(150)]
    kept = [loop.call_later(60 + i / 100, print) for i in range(10)]
    for h in cancelled:
        h.cancel()
    loop.run_until_complete(asyncio.sleep(0.01))
    assert odd._cancelled.done and len(seen) == 1
    left = list(loop._scheduled)
    assert seen[0] in left and seen[0]._scheduled
    assert odd in left and all(h in left for h in kept)
    assert not any(h in left for h in cancelled)
    assert all(not h._scheduled for h in cancelled) and all(h._scheduled for h in kept)
    assert _cancelled_count(loop) == 0
    odd._cancelled = True
    for h in kept + seen:
        h.cancel()


def test_handles_release_what_they_hold(loop):
    import gc
    import weakref

    class Arg:
        pass

    died: List[str] = []
    for schedule in (lambda a: loop.call_soon(print, a), lambda a: loop.call_later(100, print, a)):
        arg = Arg()
        handle = schedule(arg)
        arg_ref = weakref.ref(arg)
        handle_ref = weakref.ref(handle, lambda r: died.append("handle"))
        del arg
        handle.cancel()  # the callback and arguments go at once
        assert arg_ref() is None
        arg = Arg()
        again = schedule(arg)
        cycle: List[Any] = [again]
        again._args = (cycle,)  # handle -> args -> list -> handle
        arg_ref = weakref.ref(arg)
        again_ref = weakref.ref(again)
        del arg, cycle
        again.cancel()
        del handle, again
        _drain(loop)
        gc.collect()
        assert handle_ref() is None and again_ref() is None and arg_ref() is None
    assert died == ["handle", "handle"]


def test_handles_made_again_start_fresh(loop):
    # The C loop reuses freed handles: one made again must be what a new one
    # is (cleared slots, no weak reference of the freed one reaching it), and
    # the classes' reference counts must balance over many rounds.
    import gc
    import weakref

    kinds = [type(loop.call_soon(len, ())), type(loop.call_later(0, len, ()))]
    _drain(loop)
    gc.collect()
    before = [sys.getrefcount(kind) for kind in kinds]
    for round_ in range(300):
        seen: List[Any] = []
        soon = loop.call_soon(seen.append, round_, context=_context_with(str(round_)))
        timer = loop.call_later(0, seen.append, -round_)  # due: dropped from the heap by the drain
        refs = [weakref.ref(soon), weakref.ref(timer)]
        repr(soon), repr(timer)  # fills the _repr slot where a loop caches it
        if round_ % 2:
            soon.cancel()
            timer.cancel()
        del soon, timer
        _drain(loop)
        assert all(ref() is None for ref in refs)
        fresh = loop.call_soon(seen.append, "fresh")
        fresh_timer = loop.call_at(loop.time(), seen.append, "later")
        assert not fresh.cancelled() and not fresh_timer.cancelled()
        assert fresh._args == ("fresh",) and fresh_timer._args == ("later",)
        assert fresh._source_traceback is None and fresh._repr is None
        assert fresh_timer._scheduled and fresh_timer.when() <= loop.time()
        assert weakref.ref(fresh)() is fresh
        assert gc.is_tracked(fresh) and gc.is_tracked(fresh_timer)
        del fresh, fresh_timer
        _drain(loop)
        assert seen == ([] if round_ % 2 else [round_, -round_]) + ["fresh", "later"]
    gc.collect()
    assert [sys.getrefcount(kind) for kind in kinds] == before
    if type(loop).__module__.startswith("zerosock._aio_c"):
        from zerosock import _aio_core_c
        reused = fastpath_on("handle_free_list")  # else the interpreter's allocator, no list
        assert all((_aio_core_c._free_handles(kind) > 0) == reused for kind in kinds)


def test_subclass_of_the_loop_handle_classes(loop):
    import weakref
    deleted: List[str] = []

    for made in (loop.call_soon(print), loop.call_later(100, print)):
        class Sub(type(made)):  # type: ignore[misc]
            __slots__ = ("extra",)

            def __del__(self) -> None:
                deleted.append(self.extra)

        sub = Sub(print, (), loop) if not isinstance(made, asyncio.TimerHandle) \
            else Sub(1.0, print, (), loop)
        sub.extra = type(made).__name__
        ref = weakref.ref(sub)
        sub.cancel()
        assert sub.cancelled()
        del sub
        assert ref() is None
        made.cancel()
    assert deleted == ["Handle", "TimerHandle"]
    _drain(loop)


def test_timer_cancel_sees_methods_patched_on_the_loop_class(loop):
    told: List[Any] = []
    loop.call_later(10, print).cancel()  # first, the class as it is

    def spy(self, handle):  # type: ignore[no-untyped-def]
        told.append(handle)

    def debug_on(self) -> bool:  # type: ignore[no-untyped-def]
        return True

    timer = loop.call_later(10, print)
    with mock.patch.object(type(loop), "_timer_handle_cancelled", spy):
        timer.cancel()
    assert told == [timer]
    other = loop.call_later(10, print)
    with mock.patch.object(type(loop), "get_debug", debug_on):
        other.cancel()
    assert other._repr is not None and "print" in other._repr
    third = loop.call_later(10, print)
    third.cancel()  # the class restored: the C methods again
    assert third._repr is None and told == [timer]


def test_context_keyword_given_by_an_unshared_or_subclassed_name(loop):
    class Name(str):
        pass

    seen: List[Any] = []
    ctx = _context_with("kw")
    for key in ("".join(["con", "text"]), Name("context")):
        loop.call_soon(lambda: seen.append(VAR.get()), **{key: ctx})
        loop.call_later(0, lambda: seen.append(VAR.get()), **{key: ctx})
    with pytest.raises(TypeError):
        loop.call_soon(print, **{"".join(["con", "texts"]): ctx})
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == ["kw"] * 4


def test_timer_comparisons_match_the_stdlib_methods(loop):
    std = asyncio.TimerHandle
    now = loop.time()
    nan = float("nan")
    made = [loop.call_at(now + 1, print), loop.call_at(now + 1, print),
            loop.call_at(now + 2, print, 1), loop.call_at(nan, print),
            std(now + 1, print, (), loop), std(nan, print, (), loop)]
    made[1].cancel()
    others = made + [1, "x", None]
    for a in made:
        assert hash(a) == std.__hash__(a)
        for b in others:
            for op, method in (("__eq__", std.__eq__), ("__lt__", std.__lt__),
                               ("__le__", std.__le__), ("__gt__", std.__gt__),
                               ("__ge__", std.__ge__)):
                assert getattr(a, op)(b) == method(a, b), (op, a, b)
    assert made[3] != made[3]  # a NaN time equals nothing, itself included
    for h in made:
        h.cancel()
