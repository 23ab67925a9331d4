"""Noise-free per-call costs: user-space instructions (callgrind) and syscalls
(strace) per operation, as the difference of two runs of different lengths.

    python benchmarks/instructions.py [--ops recv_into,would_block] [--impls c,py,std]

Wall-clock timings on a shared machine drift by 2x; instruction counts repeat
to a fraction of a percent, so they decide.  In every operation the peer side
is a plain stdlib socket, identical for all contenders, so differences are the
contender's own.  Needs valgrind (and strace for syscalls).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

SETUP = {
    "c": "from zerosock import _compat; zs = _compat.load_backend('c')",
    "py": "from zerosock import _compat; zs = _compat.load_backend('python')",
    "std": "import socket as _s, types; zs = types.SimpleNamespace(Socket=_s.socket)",
}

# name -> (setup, one operation, description); `peer`/`sock` are the stream pair,
# `upeer`/`usock` a UDP pair; `zs.Socket` is the contender's class.
OPS = {
    "recv_into": ("payload = b'x' * 64; buf = bytearray(64)",
                  "peer.send(payload); sock.recv_into(buf)",
                  "peer sends 64 B, contender recv_into"),
    "would_block": ("sock.setblocking(False); buf = bytearray(64)\n"
                    "def op():\n"
                    "    if TRY:\n"
                    "        sock.try_recv_into(buf)\n"
                    "    else:\n"
                    "        try:\n"
                    "            sock.recv_into(buf)\n"
                    "        except BlockingIOError:\n"
                    "            pass",
                    "op()",
                    "nothing waiting: try_recv_into (stdlib: raising recv_into)"),
    "would_block_raising": ("sock.setblocking(False); buf = bytearray(64)\n"
                            "def op():\n"
                            "    try:\n"
                            "        sock.recv_into(buf)\n"
                            "    except BlockingIOError:\n"
                            "        pass",
                            "op()",
                            "nothing waiting: raising recv_into"),
    "send": ("payload = b'x' * 64; sink = bytearray(65536)",
             "sock.send(payload); peer.recv_into(sink)",
             "contender sends 64 B, peer receives"),
    "datagrams": ("bufs = [bytearray(256) for _ in range(32)]; d = b'd' * 64\n"
                  "def op():\n"
                  "    for _ in range(32):\n"
                  "        upeer.send(d)\n"
                  "    if TRY:\n"
                  "        got = 0\n"
                  "        while got < 32:\n"
                  "            got += len(usock.recv_many(bufs[got:]))\n"
                  "    else:\n"
                  "        for i in range(32):\n"
                  "            usock.recvfrom_into(bufs[i])",
                  "op()",
                  "32 datagrams: recv_many (stdlib: recvfrom_into loop); per 32"),
}

CHILD = """
import socket, sys
{setup_impl}
TRY = {try_calls}
a, b = socket.socketpair()
peer = a
sock = zs.Socket(fileno=b.detach()) if hasattr(zs, 'Socket') else b
u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u1.bind(('127.0.0.1', 0))
u1.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
usock = zs.Socket(fileno=u1.detach())
upeer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); upeer.connect(usock.getsockname())
{setup_op}
for _ in range({count}):
    {op}
"""


def child_script(impl: str, op: str, count: int) -> str:
    setup_op, one, _ = OPS[op]
    return CHILD.format(setup_impl=SETUP[impl], try_calls=impl != "std", setup_op=setup_op,
                        op=one, count=count)


def run_counted(tool: list[str], script: str, pattern: str) -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        out = subprocess.run(tool + [sys.executable, path], capture_output=True, text=True,
                             timeout=600, env={**os.environ, "PYTHONHASHSEED": "0"})
    finally:
        os.unlink(path)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    match = re.search(pattern, out.stderr, re.M)
    if not match:
        raise RuntimeError("could not read the count:\n" + out.stderr[-2000:])
    return int(match.group(1).replace(",", ""))


def instructions(script: str) -> int:
    return run_counted(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"],
                       script, r"Collected : (\d+)")


def syscalls(script: str) -> int:
    return run_counted(["strace", "-f", "-c", "-q"], script, r"^\s*100\.00\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+total\s*$")


def per_op(measure, impl: str, op: str, short: int, long: int) -> float:
    return (measure(child_script(impl, op, long)) - measure(child_script(impl, op, short))) / (long - short)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default=",".join(OPS))
    parser.add_argument("--impls", default="std,c,py")
    parser.add_argument("--short", type=int, default=2000)
    parser.add_argument("--long", type=int, default=12000)
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed")
    have_strace = bool(shutil.which("strace"))
    impls = args.impls.split(",")
    print(f"{'operation':<22}{'impl':>6}{'instr/op':>12}{'vs std':>8}{'syscalls/op':>13}")
    for op in args.ops.split(","):
        base = None
        for impl in impls:
            ins = per_op(instructions, impl, op, args.short, args.long)
            sc = per_op(syscalls, impl, op, args.short, args.long) if have_strace else float("nan")
            if impl == "std":
                base = ins
            ratio = f"{ins / base:8.2f}" if base else f"{'':8}"
            print(f"{op:<22}{impl:>6}{ins:12.0f}{ratio}{sc:13.2f}", flush=True)
        print(f"  ({OPS[op][2]})")


if __name__ == "__main__":
    main()
