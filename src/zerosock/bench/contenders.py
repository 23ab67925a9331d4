"""The servers the benchmark compares, by name, and which of them can run here.

Each contender is a small echo / discard / UDP echo server, or a framework's
HTTP hello world (aiohttp, uvicorn), in ``_server.py``, run in its own process.  Nothing here imports the libraries under test: the
parent only asks whether they are importable.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Container, Dict, List, Optional, Sequence, Tuple

WORKLOADS = ("echo", "stream", "udp", "http", "tls", "conns", "churn")
SOCKET_WORKLOADS = ("echo", "stream", "udp")
APP_INSTALL_HINT = "pip install 'zerosock[apps]'"


@dataclass(frozen=True)
class Contender:
    name: str
    library: str      # stdlib, uvloop, zerosock, c
    style: str        # threads, selectors, proto, buffered, streams, epoll; aiohttp, uvicorn
    description: str
    workloads: Tuple[str, ...] = SOCKET_WORKLOADS
    requires: Tuple[str, ...] = field(default=())   # modules that must import
    hidden: bool = False  # not part of "all": a contender for testing the tool itself
    env: Tuple[Tuple[str, str], ...] = ()  # set in its server's environment


_SCALE = ("conns", "churn")  # connections held open, connections opened and closed
_TCP = ("echo", "stream") + _SCALE
_HTTP = ("http",)
_WITH_TLS = SOCKET_WORKLOADS + ("tls",) + _SCALE
_TLS = ("tls",) + _SCALE
_PURE_PYTHON = (("ZEROSOCK_PURE_PYTHON", "1"),)
_URING = (("ZEROSOCK_AIO_IO", "uring"),)
_AIOHTTP = ("aiohttp",)
_UVICORN = ("uvicorn", "httptools")


def _on_each_loop(style: str, app: str, modules: Tuple[str, ...]) -> List[Contender]:
    """A framework's hello world on asyncio, uvloop and zerosock.aio."""
    loops = (("asyncio", "stdlib", "asyncio", ()),
             ("uvloop", "uvloop", "uvloop", ("uvloop",)),
             ("zerosock-aio", "zerosock", "the zerosock.aio loop", ("zerosock.aio",)))
    return [Contender(f"{prefix}-{style}", library, style, f"{app} on {loop}", _HTTP,
                      requires=requires + modules)
            for prefix, library, loop, requires in loops]


CONTENDERS: Dict[str, Contender] = {c.name: c for c in (
    Contender("stdlib-threads", "stdlib", "threads",
              "socket.socket, blocking, a thread per connection"),
    Contender("stdlib-selectors", "stdlib", "selectors",
              "socket.socket + selectors.DefaultSelector, non-blocking"),
    Contender("asyncio-proto", "stdlib", "proto", "asyncio, Protocol (data_received)",
              _WITH_TLS),
    Contender("asyncio-buffered", "stdlib", "buffered",
              "asyncio, BufferedProtocol (get_buffer)", ("echo", "stream")),
    Contender("asyncio-streams", "stdlib", "streams",
              "asyncio streams (StreamReader/StreamWriter)", _TCP),
    Contender("uvloop-proto", "uvloop", "proto", "uvloop, Protocol", _WITH_TLS,
              requires=("uvloop",)),
    Contender("uvloop-buffered", "uvloop", "buffered", "uvloop, BufferedProtocol",
              ("echo", "stream"),
              requires=("uvloop",)),
    Contender("uvloop-streams", "uvloop", "streams", "uvloop, asyncio streams", _TCP,
              requires=("uvloop",)),
    Contender("zerosock-threads", "zerosock", "threads",
              "zerosock.Socket, blocking, a thread per connection", requires=("zerosock",)),
    Contender("zerosock-selectors", "zerosock", "selectors",
              "zerosock.Socket + zerosock.selectors.DefaultSelector",
              requires=("zerosock", "zerosock.selectors")),
    Contender("zerosock-aio-proto", "zerosock", "proto", "zerosock.aio loop, Protocol",
              _WITH_TLS, requires=("zerosock.aio",)),
    Contender("asyncio+aiofastnet-proto", "stdlib", "proto",
              "asyncio with aiofastnet's transports and TLS, Protocol", _TLS,
              requires=("aiofastnet",)),
    Contender("uvloop+aiofastnet-proto", "uvloop", "proto",
              "uvloop with aiofastnet's transports and TLS, Protocol", _TLS,
              requires=("uvloop", "aiofastnet")),
    Contender("zerosock-aio-buffered", "zerosock", "buffered",
              "zerosock.aio loop, BufferedProtocol", ("echo", "stream"),
              requires=("zerosock.aio",)),
    Contender("zerosock-aio-streams", "zerosock", "streams", "zerosock.aio loop, streams", _TCP,
              requires=("zerosock.aio",)),
    Contender("zerosock-aio-uring-proto", "zerosock", "proto",
              "zerosock.aio loop on io_uring completions, Protocol", _WITH_TLS,
              requires=("zerosock.aio",), env=_URING),
    Contender("zerosock-aio-uring-buffered", "zerosock", "buffered",
              "zerosock.aio loop on io_uring completions, BufferedProtocol", ("echo", "stream"),
              requires=("zerosock.aio",), env=_URING),
    Contender("zerosock-aio-uring-streams", "zerosock", "streams",
              "zerosock.aio loop on io_uring completions, streams", _TCP,
              requires=("zerosock.aio",), env=_URING),
    Contender("zerosock-aio-py-proto", "zerosock", "proto",
              "zerosock.aio on its pure-Python backend, Protocol", _SCALE,
              requires=("zerosock.aio",), env=_PURE_PYTHON),
    Contender("zerosock-aio-py-streams", "zerosock", "streams",
              "zerosock.aio on its pure-Python backend, streams", _SCALE,
              requires=("zerosock.aio",), env=_PURE_PYTHON),
    *_on_each_loop("aiohttp", "aiohttp hello world", _AIOHTTP),
    *_on_each_loop("uvicorn", "uvicorn + httptools (bare ASGI hello world)", _UVICORN),
    *(Contender(f"zerosock-aio-uring-{app}", "zerosock", app,
                f"{app} on the zerosock.aio loop on io_uring completions", _HTTP,
                requires=("zerosock.aio",) + modules, env=_URING)
      for app, modules in (("aiohttp", _AIOHTTP), ("uvicorn", _UVICORN))),
    Contender("c-epoll", "c", "epoll",
              "minimal C epoll server (reference ceiling)", requires=("zerosock._loadgen_c",)),
    Contender("c-uring", "c", "uring", "minimal C io_uring server (below the epoll floor)",
              ("echo", "stream"), requires=("zerosock._uring_c",)),
    Contender("selftest-crash", "test", "threads",
              "stdlib-threads that exits after 300 echoes (tests the tool)", ("echo",),
              hidden=True),
    Contender("selftest-silent", "test", "threads",
              "a server that reads and never answers (tests the tool)", ("echo",), hidden=True),
)}

GROUPS: Dict[str, Tuple[str, ...]] = {
    "all": tuple(n for n, c in CONTENDERS.items() if not c.hidden),
    "stdlib": tuple(n for n, c in CONTENDERS.items() if c.library == "stdlib"),
    "asyncio": ("asyncio-proto", "asyncio-buffered", "asyncio-streams"),
    "uvloop": tuple(n for n, c in CONTENDERS.items() if c.library == "uvloop"),
    "zerosock": tuple(n for n, c in CONTENDERS.items() if c.library == "zerosock"),
    "aio": tuple(n for n, c in CONTENDERS.items() if c.style in ("proto", "buffered", "streams")
                 and not c.hidden),
    "apps": tuple(n for n, c in CONTENDERS.items() if "http" in c.workloads and not c.hidden),
    "aiohttp": tuple(n for n, c in CONTENDERS.items() if c.style == "aiohttp"),
    "uvicorn": tuple(n for n, c in CONTENDERS.items() if c.style == "uvicorn"),
    "tls": tuple(n for n, c in CONTENDERS.items() if "tls" in c.workloads and not c.hidden),
    "sync": tuple(n for n, c in CONTENDERS.items() if c.style in ("threads", "selectors")
                  and not c.hidden),
}

# The references every cell's ratios are taken against.
BASELINES = {"asyncio": "asyncio-proto", "uvloop": "uvloop-proto"}
ASYNCIO_STYLES = ("proto", "buffered", "streams", "aiohttp", "uvicorn")


def baseline_for(contender: str, library: str, present: Container[str]) -> str:
    """The row a contender's ratio against ``library`` is taken from: that
    library's server of the same asyncio style (BufferedProtocol against
    BufferedProtocol) when it ran, else its Protocol server."""
    entry = CONTENDERS.get(contender)
    if entry is not None and entry.style in ASYNCIO_STYLES:
        same = f"{library}-{entry.style}"
        if same in present:
            return same
    return BASELINES[library]


def resolve(names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Expand group names; return (known contenders in order, unknown names)."""
    known: List[str] = []
    unknown: List[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        expanded = GROUPS.get(name, (name,) if name in CONTENDERS else ())
        if not expanded:
            unknown.append(name)
        for item in expanded:
            if item not in known:
                known.append(item)
    return known, unknown


def _importable(module: str) -> Optional[str]:
    """None when ``module`` imports, else why not."""
    try:
        if importlib.util.find_spec(module) is None:
            if module.endswith("_c"):
                return "the C extension is not built"
            if "." in module:
                return f"{module} is not part of this zerosock version yet"
            return f"{module} is not installed"
        importlib.import_module(module)
    except ImportError as exc:
        return f"{module} is not available ({exc})"
    except Exception as exc:  # a broken install: say so rather than crash the run
        return f"{module} failed to import ({type(exc).__name__}: {exc})"
    return None


def unavailable_reason(name: str) -> Optional[str]:
    """Why a contender cannot run here, or None when it can."""
    contender = CONTENDERS[name]
    for module in contender.requires:
        reason = _importable(module)
        if reason:
            if module in _AIOHTTP + _UVICORN and reason.endswith("is not installed"):
                reason += f" ({APP_INSTALL_HINT})"
            return reason
    if name == "c-epoll":
        from zerosock import _loadgen_c
        if not _loadgen_c.SUPPORTED:
            return "the C echo server needs epoll (Linux)"
    if name == "c-uring":
        from zerosock import _uring_c
        return _uring_c.unavailable_reason()
    return None


def backend_note(name: str) -> Optional[str]:
    """A note when a zerosock contender runs on the pure-Python backend."""
    if CONTENDERS[name].library != "zerosock":
        return None
    import zerosock
    if zerosock.BACKEND != "c":
        return "pure-Python backend (no C extension, or ZEROSOCK_PURE_PYTHON set)"
    return None
