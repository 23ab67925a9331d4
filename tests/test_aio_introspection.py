"""CPython 3.14's task introspection on zerosock.aio, as on stock asyncio: the
running task and the per-thread task list that ``asyncio.capture_call_graph``
reads in the process, and that ``python -m asyncio ps``/``pstree`` read from
outside it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from typing import Any, List

import pytest

from _aio_loops import run

pytestmark = pytest.mark.skipif(sys.version_info < (3, 14),
                                reason="call graphs and asyncio ps are new in 3.14")


def test_capture_call_graph_sees_the_awaiting_tasks(loop_factory):
    async def leaf() -> Any:
        current = asyncio.current_task()
        assert current is not None and current.get_name() == "leaf"
        names = {task.get_name() for task in asyncio.all_tasks()}
        return asyncio.capture_call_graph(), names

    async def middle() -> Any:
        return await asyncio.create_task(leaf(), name="leaf")

    async def main() -> Any:
        return await asyncio.create_task(middle(), name="middle")

    graph, names = run(loop_factory, main())
    assert {"leaf", "middle"} <= names
    assert graph.future.get_name() == "leaf"
    chain: List[str] = []
    awaited_by = graph.awaited_by
    while awaited_by:
        chain.append(awaited_by[0].future.get_name())
        awaited_by = awaited_by[0].awaited_by
    assert chain[:1] == ["middle"] and len(chain) == 2  # middle, then the main task
    assert [frame.frame.f_code.co_name for frame in graph.call_stack][:1] == ["leaf"]


PROGRAM = """
    import asyncio, sys
    import zerosock.aio

    async def leaf():
        await asyncio.sleep(60)

    async def middle():
        await asyncio.create_task(leaf(), name="leaf-task")

    async def main():
        task = asyncio.create_task(middle(), name="middle-task")
        await asyncio.sleep(0.05)
        print(type(asyncio.get_running_loop()).__module__, flush=True)
        await task

    zerosock.aio.run(main())
"""


def test_asyncio_ps_sees_the_tasks_of_a_zerosock_process(zs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROSOCK_")}
    if zs.BACKEND == "python":
        env["ZEROSOCK_PURE_PYTHON"] = "1"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PROGRAM)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        module = proc.stdout.readline().strip()
        assert module == zs.aio.EventLoop.__module__
        deadline = time.monotonic() + 30
        while True:  # the leaf task is made in the iteration after the line
            ps = subprocess.run([sys.executable, "-m", "asyncio", "ps", str(proc.pid)],
                                capture_output=True, text=True, timeout=60)
            if ps.returncode != 0 and "ermission" in ps.stderr + ps.stdout:
                pytest.skip(f"reading another process is not permitted here: {ps.stderr[-300:]}")
            assert ps.returncode == 0, ps.stderr
            if "leaf-task" in ps.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        rows = {line.split()[2]: line for line in ps.stdout.splitlines()[2:] if line.strip()}
        assert "middle-task" in rows and "leaf-task" in rows, ps.stdout
        assert "middle-task" in rows["leaf-task"]  # its awaiter
        tree = subprocess.run([sys.executable, "-m", "asyncio", "pstree", str(proc.pid)],
                              capture_output=True, text=True, timeout=60)
        assert tree.returncode == 0, tree.stderr
        lines = tree.stdout.splitlines()
        middle = next(i for i, line in enumerate(lines) if "(T) middle-task" in line)
        leaf = next(i for i, line in enumerate(lines) if "(T) leaf-task" in line)
        assert middle < leaf
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
