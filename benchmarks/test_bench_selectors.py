"""Per-call costs of zerosock.selectors against the standard library's.

``pytest benchmarks/test_bench_selectors.py`` (pytest-benchmark).  Each group
compares the C backend, the Python backend and the stdlib ``DefaultSelector``
in the same run: ``select(0)`` with 1 to 10,000 registered descriptors and 0,
1 or 100 of them readable, ``register`` + ``unregister``, and ``modify``.
"""

from __future__ import annotations

import selectors as std_selectors
import socket

import pytest

try:
    import resource
except ImportError:  # Windows
    resource = None

EVENT_READ = std_selectors.EVENT_READ
EVENT_WRITE = std_selectors.EVENT_WRITE
# The first group measured would otherwise pay for the warm-up of the process.
pytestmark = pytest.mark.benchmark(warmup=True, warmup_iterations=20000)

READY_POOL = 100  # pairs whose first end is readable
IDLE_PAIRS = 5000  # 10,000 idle descriptors: both ends get registered


def _raise_fd_limit(wanted: int) -> None:
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@pytest.fixture(scope="module")
def pool():
    """Socket pairs shared by every benchmark: the first READY_POOL have a byte
    waiting on their first end, every other end is idle for reading."""
    _raise_fd_limit(2 * (IDLE_PAIRS + READY_POOL) + 256)
    pairs = []
    try:
        for _ in range(IDLE_PAIRS + READY_POOL):
            pairs.append(socket.socketpair())
    except OSError:  # a low descriptor limit: the largest sizes skip
        pass
    for a, b in pairs[:READY_POOL]:
        b.send(b"x")
    readable = [a for a, _ in pairs[:READY_POOL]]
    idle = [end for pair in pairs[READY_POOL:] for end in pair] + [b for _, b in pairs[:READY_POOL]]
    yield readable, idle
    for a, b in pairs:
        a.close()
        b.close()


@pytest.fixture
def selectors_module(impl):
    return getattr(impl, "selectors", std_selectors) if impl.BACKEND == "stdlib" else impl.selectors


@pytest.mark.parametrize("ready", [0, 1, 100])
@pytest.mark.parametrize("registered", [1, 100, 1000, 10000])
def test_select_zero(benchmark, pool, selectors_module, impl, registered, ready):
    if ready > registered:
        pytest.skip("more ready than registered")
    readable, idle = pool
    if registered - ready > len(idle):
        pytest.skip("not enough descriptors")
    benchmark.group = f"select(0): {registered} registered, {ready} ready"
    benchmark.name = impl.BACKEND
    with selectors_module.DefaultSelector() as sel:
        for sock in readable[:ready] + idle[:registered - ready]:
            sel.register(sock, EVENT_READ)
        assert len(sel.select(0)) == ready
        benchmark(sel.select, 0)


def test_register_unregister(benchmark, pool, selectors_module, impl):
    sock = pool[1][0]
    benchmark.group = "register + unregister"
    benchmark.name = impl.BACKEND
    with selectors_module.DefaultSelector() as sel:
        register, unregister = sel.register, sel.unregister

        def cycle():
            register(sock, EVENT_READ, None)
            unregister(sock)

        benchmark(cycle)


def test_modify(benchmark, pool, selectors_module, impl):
    sock = pool[1][0]
    benchmark.group = "modify (events change)"
    benchmark.name = impl.BACKEND
    with selectors_module.DefaultSelector() as sel:
        sel.register(sock, EVENT_READ)
        modify = sel.modify

        def toggle():
            modify(sock, EVENT_WRITE)
            modify(sock, EVENT_READ)

        benchmark(toggle)


def test_modify_data(benchmark, pool, selectors_module, impl):
    sock = pool[1][0]
    benchmark.group = "modify (data only)"
    benchmark.name = impl.BACKEND
    with selectors_module.DefaultSelector() as sel:
        sel.register(sock, EVENT_READ, 0)
        modify = sel.modify

        def toggle():
            modify(sock, EVENT_READ, 1)
            modify(sock, EVENT_READ, 0)

        benchmark(toggle)
