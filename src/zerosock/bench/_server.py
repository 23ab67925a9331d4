"""One contender's server, run in its own process by the benchmark.

``python -m zerosock.bench._server '{"contender": ..., "workload": ..., "host": ..., "port": ...}'``
binds, prints ``READY <port>`` (or ``ERROR <message>``) on stdout, serves,
and exits when its standard input reaches end of file: the parent closes it
to stop the server, and a parent that dies stops it the same way.

Every server is written the way a careful user of that library would write
it, with the same buffer size (256 KiB reads) and TCP_NODELAY everywhere.
The ``http`` workload's servers are the frameworks' own hello worlds
(aiohttp, uvicorn with httptools) on the loop under test, set up as their
documentation shows.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import signal
import socket
import sys
import threading
from typing import Any, Awaitable, Callable, Dict, List, Optional

BUF = 256 * 1024
STOP_FD = 0
CRASH_AFTER = 300  # echoes before ``selftest-crash`` exits


def _nodelay(sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # Unix sockets have no Nagle to turn off


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _is_unix(host: str) -> bool:
    """A host that is a path names a Unix socket."""
    return host.startswith("/")


def _ready(sock: Any) -> None:
    name = sock.getsockname()
    port = name[1] if isinstance(name, tuple) else 0
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


def _wait_for_stop() -> None:
    while True:
        try:
            if not os.read(STOP_FD, 4096):
                return
        except InterruptedError:
            continue
        except OSError:
            return


def _exit() -> None:
    # Straight out: connections may still be open and threads blocked in
    # recv; a tool under valgrind or strace still writes its report.
    sys.stdout.flush()
    os._exit(0)


class _Net:
    """The socket library a synchronous server is written against."""

    def __init__(self, name: str) -> None:
        if name == "zerosock":
            import zerosock
            self.Socket: Callable[..., Any] = zerosock.Socket
            self.create_server: Callable[..., Any] = zerosock.create_server
        else:
            self.Socket = socket.socket
            self.create_server = socket.create_server

    def listener(self, workload: str, host: str, port: int) -> Any:
        if _is_unix(host):
            if workload == "udp":
                raise OSError(f"UDP runs over IP loopback only, not a Unix socket ({host})")
            sock = self.Socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(host)
                sock.listen(1024)
            except BaseException:
                sock.close()
                raise
            return sock
        if workload == "udp":
            sock = self.Socket(_family(host), socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except BaseException:
                sock.close()
                raise
            return sock
        return self.create_server((host, port), family=_family(host), backlog=1024)


# ------------------------------------------------------------ threads


def serve_threads(net: _Net, workload: str, host: str, port: int,
                  crash_after: Optional[int] = None) -> None:
    listener = net.listener(workload, host, port)
    served = [0]

    def echo(conn: Any) -> None:
        buf = bytearray(BUF)
        view = memoryview(buf)
        recv_into = conn.recv_into
        sendall = conn.sendall
        try:
            while True:
                n = recv_into(buf)
                if not n:
                    break
                if workload == "echo":
                    sendall(view[:n])
                    if crash_after is not None:
                        served[0] += 1
                        if served[0] >= crash_after:
                            os._exit(3)
        except OSError:
            pass
        finally:
            conn.close()

    def accept_loop() -> None:
        while True:
            conn, _ = listener.accept()
            _nodelay(conn)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def udp_loop() -> None:
        buf = bytearray(65536)
        view = memoryview(buf)
        recvfrom_into = listener.recvfrom_into
        sendto = listener.sendto
        while True:
            n, address = recvfrom_into(buf)
            sendto(view[:n], address)

    _ready(listener)
    threading.Thread(target=udp_loop if workload == "udp" else accept_loop, daemon=True).start()
    _wait_for_stop()
    _exit()


# ------------------------------------------------------------ selectors


class _ConnState:
    __slots__ = ("conn", "pending")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pending = b""


def serve_selectors(net: _Net, selectors_module: Any, workload: str, host: str,
                    port: int) -> None:
    EVENT_READ = selectors_module.EVENT_READ
    EVENT_WRITE = selectors_module.EVENT_WRITE
    listener = net.listener(workload, host, port)
    listener.setblocking(False)
    sel = selectors_module.DefaultSelector()
    accept_tag, stop_tag, udp_tag = "accept", "stop", "udp"
    sel.register(listener, EVENT_READ, udp_tag if workload == "udp" else accept_tag)
    sel.register(STOP_FD, EVENT_READ, stop_tag)
    buf = bytearray(BUF)
    view = memoryview(buf)
    echo = workload == "echo"
    _ready(listener)

    def drop(state: _ConnState) -> None:
        sel.unregister(state.conn)
        state.conn.close()

    while True:
        for key, events in sel.select():
            state = key.data
            if state is accept_tag:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                _nodelay(conn)
                sel.register(conn, EVENT_READ, _ConnState(conn))
            elif state is udp_tag:
                try:
                    n, address = listener.recvfrom_into(buf)
                    listener.sendto(view[:n], address)
                except (BlockingIOError, InterruptedError):
                    pass
            elif state is stop_tag:
                if not os.read(STOP_FD, 4096):
                    _exit()
            elif events & EVENT_WRITE:
                try:
                    sent = state.conn.send(state.pending)
                except BlockingIOError:
                    continue
                except OSError:
                    drop(state)
                    continue
                state.pending = state.pending[sent:]
                if not state.pending:
                    sel.modify(state.conn, EVENT_READ, state)
            else:
                conn = state.conn
                try:
                    n = conn.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    drop(state)
                    continue
                if not n:
                    drop(state)
                elif echo:
                    try:
                        sent = conn.send(view[:n])
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        drop(state)
                        continue
                    if sent < n:
                        state.pending = bytes(view[sent:n])
                        sel.modify(conn, EVENT_WRITE, state)


# ------------------------------------------------------------ asyncio family

# What a loop contender serves: a coroutine function that starts serving (and
# has said READY) and returns the coroutine function that shuts it down.
Cleanup = Callable[[], Awaitable[None]]
Starter = Callable[[], Awaitable[Cleanup]]


async def _no_cleanup() -> None:
    """The sockets' servers need nothing at exit: the process ends at once."""


def serve_on_loop(loop_factory: Callable[[], Any], start: Starter) -> None:
    """Run ``start`` on a loop from ``loop_factory`` until the parent closes our stdin."""
    import asyncio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()

        def on_stop() -> None:
            try:
                data = os.read(STOP_FD, 4096)
            except OSError:
                data = b""
            if not data and not stop.done():
                loop.remove_reader(STOP_FD)
                stop.set_result(None)

        loop.add_reader(STOP_FD, on_stop)
        cleanup = await start()
        await stop
        await cleanup()

    loop = loop_factory()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())
    _exit()


def asyncio_starter(style: str, workload: str, host: str, port: int) -> Starter:
    """The echo/stream/udp server in one of asyncio's styles: ``protocol``,
    ``buffered`` (a BufferedProtocol) or ``streams``."""
    import asyncio

    echo = workload in ("echo", "tls")

    class EchoProtocol(asyncio.Protocol):
        transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if echo:
                self.transport.write(data)

    class EchoBufferedProtocol(asyncio.BufferedProtocol):
        transport: Any = None

        def __init__(self) -> None:
            self.view = memoryview(bytearray(BUF))

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def get_buffer(self, sizehint: int) -> memoryview:
            if echo and self.transport.get_write_buffer_size():
                # The transport may keep a view of our buffer until it is
                # sent: read the next data into a fresh one.  (Asked here,
                # not right after the write: a transport on completions
                # sends with the loop's next wait, done by the next read.)
                self.view = memoryview(bytearray(BUF))
            return self.view

        def buffer_updated(self, nbytes: int) -> None:
            if echo:
                self.transport.write(self.view[:nbytes])

    class EchoDatagramProtocol(asyncio.DatagramProtocol):
        transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.transport.sendto(data, addr)

    async def stream_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(BUF)
                if not data:
                    break
                if echo:
                    writer.write(data)
                    await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def start() -> Cleanup:
        loop = asyncio.get_running_loop()
        if workload == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                EchoDatagramProtocol, local_addr=(host, port), family=_family(host))
            _ready(transport.get_extra_info("socket"))
        elif style == "streams":
            if _is_unix(host):
                server = await asyncio.start_unix_server(stream_handler, host, backlog=1024)
            else:
                server = await asyncio.start_server(stream_handler, host, port, backlog=1024)
            _ready(server.sockets[0])
        else:
            factory = EchoBufferedProtocol if style == "buffered" else EchoProtocol
            if workload == "tls":
                from ._loadgen_tls import server_context
                server = await loop.create_server(factory, host, port, backlog=1024,
                                                  ssl=server_context())
            elif _is_unix(host):
                server = await loop.create_unix_server(factory, host, backlog=1024)
            else:
                server = await loop.create_server(factory, host, port, backlog=1024)
            _ready(server.sockets[0])
        return _no_cleanup

    return start


# ------------------------------------------------------------ HTTP applications

HELLO = b"Hello, World!"
APP_FRAMEWORKS = ("aiohttp", "uvicorn")


def _app_listener(host: str, port: int) -> socket.socket:
    sock = _Net("stdlib").listener("echo", host, port)
    _nodelay(sock)  # inherited by accepted sockets on Linux; the frameworks set it too
    return sock  # type: ignore[no-any-return]


async def _start_aiohttp(sock: socket.socket) -> Cleanup:
    """Serve aiohttp's hello world on ``sock``; returns its clean-up coroutine function."""
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=HELLO, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    cleanup: Cleanup = runner.cleanup
    return cleanup


async def _uvicorn_app(scope: Dict[str, Any], receive: Callable[[], Any],
                       send: Callable[[Dict[str, Any]], Any]) -> None:
    """A bare ASGI hello world."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(HELLO)).encode())]})
    await send({"type": "http.response.body", "body": HELLO})


async def _start_uvicorn(sock: socket.socket) -> Cleanup:
    """Serve the ASGI hello world with uvicorn (httptools) on ``sock``; returns its clean-up."""
    import asyncio

    import uvicorn

    config = uvicorn.Config(_uvicorn_app, http="httptools", lifespan="off",
                            access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise OSError("uvicorn stopped before it started")
        await asyncio.sleep(0.005)

    async def cleanup() -> None:
        server.should_exit = True
        await task

    return cleanup


def app_starter(framework: str, workload: str, host: str, port: int) -> Starter:
    """A framework's hello world (``aiohttp`` or ``uvicorn``) for the http workload."""
    if workload != "http":
        raise OSError(f"the {framework} server serves the http workload only, not {workload}")
    sock = _app_listener(host, port)
    start_framework = _start_aiohttp if framework == "aiohttp" else _start_uvicorn

    async def start() -> Cleanup:
        cleanup = await start_framework(sock)
        _ready(sock)
        return cleanup

    return start


# ------------------------------------------------------------ the C reference


def serve_c(workload: str, host: str, port: int, module: str = "_loadgen_c") -> None:
    server = importlib.import_module(f"zerosock.{module}")
    listener = _Net("stdlib").listener(workload, host, port)
    _ready(listener)
    server.serve(listener.fileno(), workload, STOP_FD)
    _exit()


# ------------------------------------------------------------ entry point


def serve(config: Dict[str, Any]) -> None:
    name = config["contender"]
    workload = config["workload"]
    host = config["host"]
    port = int(config.get("port", 0))
    if name in ("stdlib-threads", "zerosock-threads", "selftest-crash"):
        crash = CRASH_AFTER if name == "selftest-crash" else None
        serve_threads(_Net(name.split("-")[0] if name != "selftest-crash" else "stdlib"),
                      workload, host, port, crash)
    elif name == "selftest-silent":
        serve_threads(_Net("stdlib"), "stream", host, port)  # reads, never answers
    elif name == "stdlib-selectors":
        import selectors
        serve_selectors(_Net("stdlib"), selectors, workload, host, port)
    elif name == "zerosock-selectors":
        from zerosock import selectors as zs_selectors
        serve_selectors(_Net("zerosock"), zs_selectors, workload, host, port)
    elif name.startswith(("asyncio-", "uvloop-", "zerosock-aio-", "asyncio+", "uvloop+")):
        style = name.rsplit("-", 1)[1]
        starter = app_starter if style in APP_FRAMEWORKS else asyncio_starter
        serve_on_loop(_loop_factory(name), starter(style, workload, host, port))
    elif name in ("c-epoll", "c-uring"):
        serve_c(workload, host, port, "_uring_c" if name == "c-uring" else "_loadgen_c")
    else:
        raise SystemExit(f"ERROR unknown contender {name!r}")


def _loop_factory(name: str) -> Callable[[], Any]:
    """The loop a contender runs on, from its name's first part."""
    if "+aiofastnet" in name:
        import aiofastnet
        base = _loop_factory(name.replace("+aiofastnet", ""))
        return lambda: aiofastnet.patch_loop(base())
    if name.startswith("uvloop-"):
        import uvloop
        factory: Callable[[], Any] = uvloop.new_event_loop
        return factory
    if name.startswith("zerosock-aio-"):
        from zerosock import aio
        return aio.new_event_loop
    import asyncio
    return asyncio.new_event_loop


def main(argv: List[str]) -> None:
    config = json.loads(argv[1])
    if hasattr(signal, "alarm"):
        # A backstop: the parent closes our stdin long before this, but a
        # server must stop by itself even if that never comes.
        signal.alarm(int(config.get("max_seconds", 3600)))
    if config.get("max_fds"):
        from ._loadgen_scale import raise_fd_limit
        try:
            raise_fd_limit(int(config["max_fds"]))
        except RuntimeError as exc:
            sys.stdout.write(f"ERROR {exc}\n")
            sys.stdout.flush()
            raise SystemExit(2)
    cpu = config.get("cpu")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
    try:
        serve(config)
    except OSError as exc:
        host = config["host"]
        where = host if _is_unix(host) else f"{host}:{config.get('port', 0)}"
        if exc.errno == errno.EADDRINUSE or "in use" in str(exc):
            message = f"{'address' if _is_unix(host) else 'port'} in use ({where})"
        else:
            message = f"{exc} ({where})"
        sys.stdout.write(f"ERROR {message}\n")
        sys.stdout.flush()
        raise SystemExit(2)
    except ImportError as exc:
        sys.stdout.write(f"ERROR {exc}\n")
        sys.stdout.flush()
        raise SystemExit(2)


if __name__ == "__main__":
    main(sys.argv)
