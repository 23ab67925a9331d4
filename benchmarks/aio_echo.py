"""Echo comparison of zerosock.aio with stock asyncio and uvloop.

    python benchmarks/aio_echo.py                 # timed: requests/s, latency, server CPU/request
    python benchmarks/aio_echo.py --instructions  # also callgrind instructions and syscalls/request

A thin front end to ``python -m zerosock.bench`` (servers in subprocesses, the
C load generator, contenders interleaved, medians of repeats) with the matrix
of issue 5: Protocol, BufferedProtocol and streams echo at 64 B and 1 KiB with
10 and 100 connections, plus the minimal C epoll server as the floor.
Extra arguments go to the tool (e.g. ``-r 5``, ``--json out.json``).
"""

from __future__ import annotations

import subprocess
import sys
from typing import List

CONTENDERS = ",".join([
    "asyncio-proto", "uvloop-proto", "zerosock-aio-proto",
    "asyncio-buffered", "uvloop-buffered", "zerosock-aio-buffered",
    "asyncio-streams", "uvloop-streams", "zerosock-aio-streams",
    "c-epoll",
])


def main(argv: List[str]) -> int:
    instructions = "--instructions" in argv
    rest = [a for a in argv if a != "--instructions"]
    cmd = [sys.executable, "-m", "zerosock.bench", "-c", CONTENDERS, "-w", "echo",
           "-s", "64,1k", "-n", "10,100"]
    if instructions:
        cmd.append("--only-instructions")
    return subprocess.call(cmd + rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
