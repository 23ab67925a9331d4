"""Errors raised by protocol callbacks reach the exception handler as on stock
asyncio, in debug mode and out of it: the user's exception, the same context
keys, and a default handler that reports them instead of failing itself.

Every test runs on zerosock's C loop, its Python loop and stock asyncio, and
compares what the handler saw with what stock asyncio's handler sees.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from _aio_loops import run, stdlib_loop

STREAM_CALLBACKS = ["connection_made", "data_received", "eof_received", "get_buffer",
                    "buffer_updated"]
DATAGRAM_CALLBACKS = ["datagram_received", "error_received"]
HANDLER_FAILURES = ("Exception in default exception handler", "Unhandled error in exception handler")


class Boom(Exception):
    """What the protocol raises."""


def _protocol_class(failing: str, raised: List[BaseException],
                    lost: "asyncio.Future[Any]") -> type:
    def fail(name: str) -> None:
        if name == failing:
            exc = Boom(name)
            raised.append(exc)
            raise exc

    buffered = failing in ("get_buffer", "buffer_updated")

    class Failing(asyncio.BufferedProtocol if buffered else asyncio.Protocol):  # type: ignore[misc]
        buffer = bytearray(256)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            fail("connection_made")

        def data_received(self, data: bytes) -> None:
            fail("data_received")

        def eof_received(self) -> Optional[bool]:
            fail("eof_received")
            return None

        def get_buffer(self, sizehint: int) -> bytearray:
            fail("get_buffer")
            return self.buffer

        def buffer_updated(self, nbytes: int) -> None:
            fail("buffer_updated")

        def datagram_received(self, data: bytes, addr: Any) -> None:
            fail("datagram_received")

        def error_received(self, exc: Exception) -> None:
            fail("error_received")

        def connection_lost(self, exc: Optional[BaseException]) -> None:
            if not lost.done():
                lost.set_result(exc)

    return Failing


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _provoke(failing: str, debug: bool) -> Tuple[List[Dict[str, Any]], List[BaseException]]:
    """Make the protocol's ``failing`` method raise once; what the exception
    handler received (before and after the default handler ran), and what was raised."""
    loop = asyncio.get_running_loop()
    loop.set_debug(debug)
    reports: List[Dict[str, Any]] = []
    raised: List[BaseException] = []
    reported = loop.create_future()
    lost = loop.create_future()

    def handler(loop: asyncio.AbstractEventLoop, context: Dict[str, Any]) -> None:
        received = dict(context)
        # The default handler must cope with the context (and the current handle).
        loop.default_exception_handler(context)
        reports.append({"received": received, "after_default": dict(context)})
        if not reported.done():
            reported.set_result(None)

    loop.set_exception_handler(handler)
    factory = _protocol_class(failing, raised, lost)
    if failing in STREAM_CALLBACKS:
        ours, peer = socket.socketpair()
        with peer:
            transport, _ = await loop.create_connection(factory, sock=ours)
            if failing in ("data_received", "get_buffer", "buffer_updated"):
                peer.send(b"x")
            elif failing == "eof_received":
                peer.shutdown(socket.SHUT_WR)
            await reported
            transport.close()
            await lost
    elif failing == "datagram_received":
        transport, _ = await loop.create_datagram_endpoint(factory, local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"x", transport.get_extra_info("sockname"))
            await reported
        transport.close()
        await lost
    else:
        # A connected UDP socket learns from ICMP that nobody listens: the
        # next read fails, and the transport hands that to error_received().
        transport, _ = await loop.create_datagram_endpoint(
            factory, remote_addr=("127.0.0.1", _closed_udp_port()))
        transport.sendto(b"x")
        await reported
        transport.close()
        await lost
    return reports, raised


def _summary(reports: List[Dict[str, Any]], raised: List[BaseException]) -> List[Any]:
    """What must match stock asyncio: messages (a callback's name aside), keys, the exception."""
    summary = []
    for report in reports:
        received = report["received"]
        message = received["message"]
        if message.startswith("Exception in callback "):
            message = "Exception in callback ..."  # names the implementation's method
        assert received["exception"] is raised[0]
        summary.append((message, sorted(received), sorted(report["after_default"])))
    return summary


@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
@pytest.mark.parametrize("failing", STREAM_CALLBACKS + DATAGRAM_CALLBACKS)
def test_protocol_error_reaches_the_handler_as_on_stock_asyncio(loop_factory, failing, debug,
                                                                caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        reports, raised = run(loop_factory, _provoke(failing, debug))
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith(HANDLER_FAILURES)]
    assert failures == []
    # The default handler logged the user's exception itself.
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is raised[0]]
    assert len(logged) == len(reports) == 1
    if debug and failing not in ("connection_made",) and "handle" not in reports[0]["received"]:
        # An error reported by the transport in debug mode carries the
        # traceback of the I/O handle that was running.
        assert "handle_traceback" in reports[0]["after_default"]
    caplog.clear()
    expected = _summary(*run(stdlib_loop, _provoke(failing, debug)))
    assert _summary(reports, raised) == expected


def test_io_handle_answers_the_handle_interface(loop_factory):
    """The reader handle the loop keeps for a transport, as the stdlib code reads it."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        ours, peer = socket.socketpair()
        with peer:
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
            await asyncio.sleep(0)
            key = loop._selector.get_map().get(ours.fileno())  # type: ignore[attr-defined]
            if key is None:  # on io_uring completions: no readiness handle to read
                assert type(transport._core).__name__ == "RingTransportCore"
                transport.close()
                return
            handle = key.data[0]
            assert handle._source_traceback  # made in debug mode
            assert handle._args == ()
            assert handle._callback.__name__ == "_read_ready"
            assert handle._context is not None  # get_context() is new in 3.12
            assert not handle.cancelled()
            assert "_read_ready" in repr(handle) and "created at" in repr(handle)
            transport.pause_reading()
            assert handle.cancelled()
            assert handle._callback is None and handle._args is None  # dropped, as the stdlib does
            assert handle._repr is not None and "_read_ready" in repr(handle)
            transport.close()
            await asyncio.sleep(0)

    run(loop_factory, main())
