"""The server's accept and close path on every loop: what a server's
connections see is stock asyncio's, however the loop accepts them (the C
loop in batches with its transports made in C)."""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import subprocess
import sys
import textwrap
import weakref
from typing import Any, Callable, List

import pytest
from _aio_loops import TIMEOUT, Echo, run, stdlib_loop

CONNECTIONS = 60  # churned per test: enough for several accept batches


class _Held(asyncio.Protocol):
    """Holds its connection: each one puts a future in ``lost``, which
    connection_lost sets to the name of its argument's type."""

    def __init__(self, lost: List[asyncio.Future]) -> None:
        self.lost = lost

    def connection_made(self, transport: Any) -> None:
        self.done = asyncio.get_running_loop().create_future()
        self.lost.append(self.done)

    def connection_lost(self, exc: Any) -> None:
        self.done.set_result(type(exc).__name__)


async def _open_and_echo(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    data = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    return data


def _served_transports(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    """Churn connections through an echo server and describe each server-side
    transport while open and after its connection is lost."""

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        seen: List[Any] = []
        lost: List[asyncio.Future] = []

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                self.done = loop.create_future()
                lost.append(self.done)
                sock = transport.get_extra_info("socket")
                seen.append([
                    transport.get_extra_info("peername")[0],
                    transport.get_extra_info("sockname") == server_address,
                    type(sock).__name__, sock.family, sock.type,
                    sock.fileno() == transport._sock_fd,
                    transport._sock.gettimeout(),   # non-blocking, as accept() then setblocking(False)
                    loop._transports[transport._sock_fd] is transport,
                    transport.is_reading(), transport.is_closing(),
                ])

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)

            def connection_lost(self, exc: Any) -> None:
                sock = self.transport.get_extra_info("socket")
                seen.append(["lost", exc, self.transport.is_closing(), sock.fileno() >= 0,
                             self.transport.get_extra_info("peername")[0]])
                self.done.set_result(None)

        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=100)
        server_address = server.sockets[0].getsockname()
        echoes = await asyncio.gather(*[_open_and_echo(server_address[1], b"%d" % i)
                                        for i in range(CONNECTIONS)])
        assert echoes == [b"%d" % i for i in range(CONNECTIONS)]
        await asyncio.gather(*lost)
        server.close()
        await server.wait_closed()
        return sorted(map(repr, seen))

    return run(factory, main())


def test_served_connections_are_the_stdlibs(loop_factory):
    """Every connection echoes; its transport answers peername, sockname,
    the socket extra (made when asked for on the C loop), the fd table and
    its state as the stdlib's transport does, open and once lost."""
    assert _served_transports(loop_factory) == _served_transports(stdlib_loop)


def _factory_failures(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        made = []

        def every_other() -> asyncio.Protocol:
            made.append(None)
            if len(made) % 2 == 0:
                raise RuntimeError("no protocol for you")
            return Echo()

        server = await loop.create_server(every_other, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        outcomes = []
        for i in range(6):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            try:
                outcomes.append(await reader.read(4))
            except ConnectionError:
                outcomes.append(b"")  # dropped: reset rather than closed
            writer.close()
        server.close()
        await server.wait_closed()
        return outcomes

    return run(factory, main())


# The stdlib leaves the dropped connection's socket to the garbage collector.
@pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failing_protocol_factory_drops_only_its_connection(loop_factory):
    """A protocol factory that raises closes that connection (reported in
    debug mode only, as in the stdlib) and the server goes on serving."""
    assert _factory_failures(loop_factory) == _factory_failures(stdlib_loop) == [
        b"ping", b"", b"ping", b"", b"ping", b""]


REQUEST = contextvars.ContextVar("REQUEST", default="unset")


def _contexts(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        seen: List[Any] = []
        count = [0]

        class Echo(asyncio.Protocol):
            def __init__(self) -> None:
                count[0] += 1
                self.number = count[0]
                seen.append(("factory saw", REQUEST.get()))
                REQUEST.set(f"made {self.number}")

            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                seen.append(("made", self.number, REQUEST.get()))
                REQUEST.set(f"connection_made {self.number}")

            def data_received(self, data: bytes) -> None:
                seen.append(("data", self.number, REQUEST.get()))
                REQUEST.set(f"data {self.number}")
                self.transport.write(data)

        REQUEST.set("server")
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(3):
            await _open_and_echo(port, b"x")
            await _open_and_echo(port, b"y")
        server.close()
        await server.wait_closed()
        seen.append(("server after", REQUEST.get()))
        return seen

    return run(factory, main())


def test_each_connection_runs_in_a_copy_of_the_servers_context(loop_factory):
    """The protocol factory runs in a copy of the context the server was
    made in, one per connection; what it sets is seen by the connection's
    callbacks, never by the next connection or the server."""
    assert _contexts(loop_factory) == _contexts(stdlib_loop)


def _accept_tasks(factory: Callable[[], asyncio.AbstractEventLoop]) -> int:
    """How many Tasks serving CONNECTIONS connections made to accept them."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        made = [0]

        def counting_factory(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task:
            if getattr(coro, "__qualname__", "").endswith("_accept_connection2"):
                made[0] += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop.set_task_factory(counting_factory)
        for i in range(CONNECTIONS):
            assert await _open_and_echo(port, b"%d" % i) == b"%d" % i
        loop.set_task_factory(None)
        server.close()
        await server.wait_closed()
        return made[0]

    return run(factory, main())


def test_the_c_loop_accepts_without_a_task_per_connection(loop_factory):
    """The C loop makes each connection's protocol and transport in C on
    every Python it supports (3.15 passes the server's context as one more
    argument); the other loops run the stdlib's Task per connection."""
    c_loop = "_aio_c" in getattr(loop_factory, "__module__", "")
    assert _accept_tasks(loop_factory) == (0 if c_loop else CONNECTIONS)


def test_a_descriptor_in_use_by_a_served_transport_is_refused(loop_factory):
    """add_reader and sock_recv on an accepted transport's descriptor raise
    as the stdlib's fd check says while it is open, and not once it is closed."""

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future = loop.create_future()

        class Accepted(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                accepted.set_result(transport)

        server = await loop.create_server(Accepted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        await accepted
        (fd, transport), = [(fd, t) for fd, t in loop._transports.items()
                            if t.get_extra_info("peername") == client.getsockname()]
        answers = []
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, lambda: None)
        answers.append(fd in loop._transports)
        transport.close()
        await asyncio.sleep(0.01)
        answers.append(loop.remove_reader(fd))
        client.close()
        server.close()
        await server.wait_closed()
        return answers

    assert run(loop_factory, main()) == [True, False]


def test_a_loop_that_makes_its_own_transports_is_asked(loop_factory):
    """A loop subclass with its own _make_socket_transport has it called for
    every accepted connection, whatever path the base class accepts on."""
    made = []
    probe = loop_factory()
    loop_class = type(probe)
    probe.close()

    class Counting(loop_class):  # type: ignore[misc, valid-type]
        def _make_socket_transport(self, sock, protocol, waiter=None, **kwargs):
            made.append(type(sock).__name__)
            return super()._make_socket_transport(sock, protocol, waiter, **kwargs)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        server = await loop.create_server(Echo, "127.0.0.1", 0)
        for i in range(3):
            assert await _open_and_echo(server.sockets[0].getsockname()[1], b"ok") == b"ok"
        server.close()
        await server.wait_closed()

    run(Counting, main())
    assert made.count("socket") >= 3  # the server's three; the clients' too


OUT_OF_DESCRIPTORS = textwrap.dedent("""
    import asyncio, os, resource, socket, sys
    sys.path.insert(0, {tests!r})
    from _aio_loops import Echo, connect_out_of_descriptors, run

    name = sys.argv[1]
    if name == "stdlib":
        factory = asyncio.SelectorEventLoop
    else:
        from zerosock import _compat
        factory = _compat.load_backend(name).aio.new_event_loop

    reports = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: reports.append(context["message"]))

        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        assert await echo(port) == b"first"
        # Use up every descriptor but a few, then connect from a thread's
        # socket made before: the server cannot accept it.
        client = socket.socket()
        client.setblocking(False)
        await connect_out_of_descriptors(loop, client, port, reports)
        # Accepting resumes after the pause: the waiting connection is served.
        await loop.sock_sendall(client, b"later")
        data = b""
        while len(data) < 5:
            data += await loop.sock_recv(client, 5)
        client.close()
        server.close()
        await server.wait_closed()
        return data

    async def echo(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"first")
        data = await reader.readexactly(5)
        writer.close()
        await writer.wait_closed()
        return data

    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    data = run(factory, main())
    print(data.decode(), sorted(set(reports)))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_NOFILE and EMFILE as on Linux")
def test_running_out_of_descriptors_pauses_accepting_then_resumes(loop_factory):
    """accept() failing with EMFILE is reported as the stdlib reports it, the
    listener is left alone for a while, and accepting resumes on its own."""
    name = {asyncio.SelectorEventLoop: "stdlib"}.get(loop_factory)
    if name is None:
        name = "c" if "_aio_c" in loop_factory.__module__ else "python"
    tests = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run([sys.executable, "-c", OUT_OF_DESCRIPTORS.format(tests=tests), name],
                            capture_output=True, text=True, timeout=TIMEOUT + 30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(None, 1) == [
        "later", "['socket.accept() out of system resource']\n"]


def _server_bookkeeping(factory: Callable[[], asyncio.AbstractEventLoop],
                        patch: str) -> List[Any]:
    """What a server counts of its connections while they are open and once
    they are gone, and what its _attach and _detach are asked, when they are
    its class's own or replaced on the class or on the server."""
    from asyncio import base_events

    calls: List[str] = []

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            calls.append(name)
            return method(*args)
        return wrapper

    def count(server: Any) -> int:
        clients = getattr(server, "_clients", None)  # 3.13 on: the transports themselves
        return server._active_count if clients is None else len(clients)

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        lost: List[asyncio.Future] = []
        server = await loop.create_server(lambda: _Held(lost), "127.0.0.1", 0)
        if patch == "server":
            server._attach = counted("attach", server._attach)
            server._detach = counted("detach", server._detach)
        port = server.sockets[0].getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        for _ in range(1000):
            if len(lost) == len(clients):
                break
            await asyncio.sleep(0.005)
        seen: List[Any] = [len(lost), count(server)]
        server.close()
        closed = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.01)
        seen.append(closed.done())  # (3.12 on: not before every connection is gone)
        for client in clients:
            client.close()
        await asyncio.gather(*lost)
        await closed
        seen.append(count(server))
        return seen

    original = (base_events.Server._attach, base_events.Server._detach)
    weak_set = (weakref.WeakSet.add, weakref.WeakSet.discard)
    if patch == "class":
        base_events.Server._attach = counted("attach", original[0])
        base_events.Server._detach = counted("detach", original[1])
    elif patch == "weakset":
        # (Counted for transports only: tasks are kept in WeakSets too.)
        def of_transports(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(weak: Any, item: Any) -> Any:
                if isinstance(item, asyncio.BaseTransport):
                    calls.append(name)
                return method(weak, item)
            return wrapper
        weakref.WeakSet.add = of_transports("attach", weak_set[0])  # type: ignore[method-assign]
        weakref.WeakSet.discard = of_transports("detach", weak_set[1])  # type: ignore[method-assign]
    try:
        seen = run(factory, main())
    finally:
        base_events.Server._attach, base_events.Server._detach = original
        weakref.WeakSet.add, weakref.WeakSet.discard = weak_set  # type: ignore[method-assign]
    return seen + [calls.count("attach"), calls.count("detach")]


@pytest.mark.parametrize("patch", ["none", "class", "server", "weakset"])
def test_a_server_counts_its_connections_as_the_stdlibs(loop_factory, patch):
    """The server counts each connection once and forgets it once (on the
    C loop in C while its methods, and from 3.13 its WeakSet's, are the
    stdlib's), and calls its own _attach and _detach, or WeakSet's add and
    discard, when they are replaced."""
    assert _server_bookkeeping(loop_factory, patch) == _server_bookkeeping(stdlib_loop, patch)


def _clients_patched(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    """What add and discard set on a Server's _clients after it served a
    connection are asked for the connections that come next."""

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        lost: List[asyncio.Future] = []
        calls: List[str] = []
        server = await loop.create_server(lambda: _Held(lost), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def one_connection() -> None:
            made = len(lost) + 1
            client = socket.create_connection(("127.0.0.1", port))
            for _ in range(1000):
                if len(lost) == made:
                    break
                await asyncio.sleep(0.005)
            client.close()
            await asyncio.gather(*lost)

        await one_connection()  # (the C path has now found the methods to be WeakSet's)
        clients = server._clients
        for name in ("add", "discard"):
            def recording(item: Any, name: str = name,
                          method: Callable[..., Any] = getattr(clients, name)) -> Any:
                calls.append(name)
                return method(item)
            setattr(clients, name, recording)
        await one_connection()
        await one_connection()
        server.close()
        await server.wait_closed()
        return [len(lost), sorted(calls), len(clients)]

    return run(factory, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="a Server keeps its transports from 3.13")
def test_weakset_methods_set_on_a_servers_clients_are_called(loop_factory):
    """add and discard set on the server's WeakSet itself, after the C path
    found them to be WeakSet's, are called for the connections after."""
    assert _clients_patched(loop_factory) == _clients_patched(stdlib_loop) == [
        3, ["add", "add", "discard", "discard"], 0]


def _clients_ended(factory: Callable[[], asyncio.AbstractEventLoop], how: str) -> List[Any]:
    """What the clients of a server read once its close_clients() or
    abort_clients() ran, and what the server holds of them then."""

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        lost: List[asyncio.Future] = []
        server = await loop.create_server(lambda: _Held(lost), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        for _ in range(1000):
            if len(lost) == len(clients):
                break
            await asyncio.sleep(0.005)
        held = len(server._clients)
        server.close()
        getattr(server, how)()
        ends = await asyncio.gather(*lost)
        reads = []
        for reader, writer in clients:
            try:
                reads.append(await reader.read(10))
            except ConnectionResetError:
                reads.append("reset")
            writer.close()
        await server.wait_closed()
        return [held, sorted(ends), reads, len(server._clients)]

    return run(factory, main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Server.close_clients() is new in 3.13")
@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
def test_close_clients_and_abort_clients_reach_every_served_connection(loop_factory, how):
    """A server's close_clients() and abort_clients() end every connection it
    serves, as the stdlib's: the C loop's accepted transports are in its
    _clients like the stdlib's."""
    assert _clients_ended(loop_factory, how) == _clients_ended(stdlib_loop, how)


def _scheduling(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    """The callbacks a served connection schedules through loop.call_soon
    once call_soon is replaced on the loop, after connections were served."""
    from collections import Counter

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        names: List[str] = []

        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await _open_and_echo(port, b"before")
        original = loop.call_soon

        def recording(callback: Any, *args: Any, **kwargs: Any) -> Any:
            names.append(getattr(callback, "__name__", ""))
            return original(callback, *args, **kwargs)

        loop.call_soon = recording  # type: ignore[method-assign]
        try:
            await _open_and_echo(port, b"during")
            await asyncio.sleep(0.01)
        finally:
            loop.call_soon = original  # type: ignore[method-assign]
        server.close()
        await server.wait_closed()
        counted = Counter(names)
        return [counted["connection_made"], counted["_call_connection_lost"]]

    return run(factory, main())


def test_a_call_soon_set_on_the_loop_schedules_the_connections_callbacks(loop_factory):
    """connection_made and connection_lost are scheduled through the loop's
    call_soon as the stdlib's transports call it, even when it is replaced
    on the loop after the C path found it to be the loop's own."""
    assert _scheduling(loop_factory) == _scheduling(stdlib_loop)


def _eof_logs(factory: Callable[[], asyncio.AbstractEventLoop]) -> int:
    """How many 'received EOF' debug records a served connection logs in
    debug mode switched on after connections were served, and off again."""
    import logging

    records: List[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    async def main() -> None:
        loop = asyncio.get_running_loop()

        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await _open_and_echo(port, b"quiet")
        await asyncio.sleep(0.01)
        loop.set_debug(True)
        await _open_and_echo(port, b"logged")
        await asyncio.sleep(0.01)
        loop.set_debug(False)
        await _open_and_echo(port, b"quiet again")
        await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()

    logger = logging.getLogger("asyncio")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        run(factory, main())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return sum("received EOF" in message for message in records)


def test_debug_mode_switched_while_serving_is_seen_by_the_transports(loop_factory):
    """A transport reads the loop's debug flag as it is at each event (on the
    C loop from the loop's slot while get_debug() is its own)."""
    assert _eof_logs(loop_factory) == _eof_logs(stdlib_loop) == 1


def _peer_names(factory: Callable[[], asyncio.AbstractEventLoop]) -> List[Any]:
    """A served connection's peername asked before and after its extra dict
    was made, and after the connection is lost: equal to the client's
    address, and the same object every time."""

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        seen: List[Any] = []
        done = loop.create_future()

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                first = self.transport.get_extra_info("peername")
                seen.append(first == client_address)
                seen.append(self.transport.get_extra_info("peername") is first)
                seen.append(self.transport._extra["peername"] is first)
                seen.append(self.transport.get_extra_info("peername", "default") is first)
                self.first = first
                self.transport.write(data)

            def connection_lost(self, exc: Any) -> None:
                seen.append(self.transport.get_extra_info("peername") is self.first)
                done.set_result(None)

        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client_address = writer.get_extra_info("sockname")
        writer.write(b"x")
        await reader.readexactly(1)
        writer.close()
        await done
        server.close()
        await server.wait_closed()
        return seen

    return run(factory, main())


def test_a_served_connections_peername_is_one_object(loop_factory):
    """The peer's address (on the C loop held raw until asked for) is the
    client's, and one object however and whenever it is asked for."""
    assert _peer_names(loop_factory) == _peer_names(stdlib_loop) == [True] * 5


def _reads_reach(factory: Callable[[], asyncio.AbstractEventLoop], kind: str) -> List[Any]:
    """What a served connection's reads call: the protocol's own methods, a
    function set on the protocol itself, or another object's bound method."""

    class Elsewhere:
        def __init__(self) -> None:
            self.got: List[Any] = []

        def data_received(self, data: bytes) -> None:
            self.got.append(("elsewhere", data))

        def buffer_updated(self, nbytes: int) -> None:
            self.got.append(("elsewhere", nbytes))

    async def main() -> List[Any]:
        loop = asyncio.get_running_loop()
        got: List[Any] = []
        elsewhere = Elsewhere()
        lost = loop.create_future()

        class Plain(asyncio.Protocol):
            def __init__(self) -> None:
                if kind == "own":
                    self.data_received = lambda data: got.append(("own", data))
                elif kind == "elsewhere":
                    self.data_received = elsewhere.data_received

            def data_received(self, data: bytes) -> None:
                got.append(("class", data))

            def connection_lost(self, exc: Any) -> None:
                lost.set_result(None)

        class Buffered(asyncio.BufferedProtocol):
            def __init__(self) -> None:
                self.buffer = bytearray(16)
                if kind == "own":
                    self.buffer_updated = lambda n: got.append(("own", n))
                elif kind == "elsewhere":
                    self.buffer_updated = elsewhere.buffer_updated

            def get_buffer(self, sizehint: int) -> bytearray:
                return self.buffer

            def buffer_updated(self, nbytes: int) -> None:
                got.append(("class", nbytes))

            def connection_lost(self, exc: Any) -> None:
                lost.set_result(None)

        for factory_ in (Plain, Buffered):
            server = await loop.create_server(factory_, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"abc")
            for _ in range(1000):
                if got or elsewhere.got:
                    break
                await asyncio.sleep(0.005)
            client.close()
            await lost
            lost = loop.create_future()
            server.close()
            await server.wait_closed()
        return got + elsewhere.got

    return run(factory, main())


@pytest.mark.parametrize("kind", ["class", "own", "elsewhere"])
def test_reads_call_what_the_protocol_has(loop_factory, kind):
    """A read calls the protocol's data_received or buffer_updated as found
    when the transport was made: its class's method (on the C loop held as
    the class's function), a function set on it, or another object's method."""
    assert _reads_reach(loop_factory, kind) == _reads_reach(stdlib_loop, kind)
