"""What the running kernel allows, read rather than assumed: socket buffer
sizes, the listen backlog's cap and the ephemeral port range.  Tests size
their loads from these, or pin buffers on their own sockets, so they hold on
any machine's tunables."""

from __future__ import annotations

import contextlib
import random
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

# The benchmark's clients size their sources by the same reading.
from zerosock.bench._loadgen_scale import (IP_BIND_ADDRESS_NO_PORT, ephemeral_port_count,
                                           loopback_sources)

# A buffer size small enough that a few of them are quickly filled, and
# above every kernel's minimum (Linux doubles what it is given).
SMALL_BUFFER = 64 * 1024


def sysctl(name: str) -> Optional[str]:
    """A sysctl's value as /proc/sys shows it (this network namespace's own), or None."""
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def somaxconn(default: int = 128) -> int:
    """The cap the kernel puts on any listen backlog."""
    value = sysctl("net.core.somaxconn")
    return int(value) if value else default


def pin_buffers(sender: Any, receiver: Any, size: int = SMALL_BUFFER) -> int:
    """Pin the send buffer of ``sender`` and the receive buffer of ``receiver``
    (connected sockets, or objects with their ``setsockopt``/``getsockopt``) to
    ``size``, which also stops the kernel from growing them.  Returns how many
    bytes the two can hold between them at most, read back from the kernel: a
    writer that writes more than that is certain to meet back-pressure."""
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return (sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            + receiver.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def sockets_to_spare(wanted: int) -> int:
    """How many more sockets a test may open: ``wanted``, or a third of the
    descriptor limit when that is lower (the suite holds others)."""
    try:
        import resource
    except ImportError:  # Windows: no descriptor limit of this kind
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if soft == resource.RLIM_INFINITY else min(wanted, soft // 3)


# Datagrams a test has in flight towards one receiver: what any receive buffer holds.
DATAGRAM_BATCH = 32


@contextlib.contextmanager
def datagram_peers(family: int, host: str, wanted: int,
                   timeout: Optional[float]) -> Iterator[List[socket.socket]]:
    """``wanted`` UDP sockets bound on ``host`` (fewer where the descriptor
    limit is low), each with ``timeout`` as settimeout() takes it; closed after."""
    peers: List[socket.socket] = []
    try:
        for _ in range(sockets_to_spare(wanted)):
            peers.append(socket.socket(family, socket.SOCK_DGRAM))
            peers[-1].bind((host, 0))
            peers[-1].settimeout(timeout)
        yield peers
    finally:
        for peer in peers:
            peer.close()


def shuffled_batches(count: int, rounds: int) -> Iterator[Tuple[int, List[int]]]:
    """``(round, indices)``: every one of ``count`` peers once per round, in
    batches of DATAGRAM_BATCH, each round in another order (seeded: runs repeat)."""
    for round_ in range(rounds):
        order = list(range(count))
        random.Random(round_).shuffle(order)
        for start in range(0, count, DATAGRAM_BATCH):
            yield round_, order[start:start + DATAGRAM_BATCH]


def receive_buffer_of(sock: Any, size: int) -> int:
    """Ask for a receive buffer of ``size`` bytes and return what the kernel
    gave (read back).  Root may go past ``net.core.rmem_max``
    (``SO_RCVBUFFORCE``); anyone else gets at most that cap, so the caller
    compares the result with what it needs and skips when it falls short."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))




def bind_source(sock: Any, address: str) -> None:
    """Bind ``sock`` to a source address, leaving its port to connect(), so a
    port is reused towards other destinations instead of held for this one."""
    if IP_BIND_ADDRESS_NO_PORT is not None:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((address, 0))


# seccomp's audit architecture of the machines the refusal below is written for.
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# The start of a child's program (``python -c CODE ARCH NR ERRNO``): a seccomp
# filter that answers one system call with an errno, as container runtimes do
# for io_uring; the program goes on from there with json and sys imported.
SECCOMP_REFUSAL = textwrap.dedent("""
    import ctypes, json, sys
    arch, nr, err = (int(a) for a in sys.argv[1:4])
    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8),
                    ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]
    LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
    insns = (Insn * 6)(
        Insn(LD_W_ABS, 0, 0, 4),                # seccomp_data.arch
        Insn(JEQ_K, 0, 3, arch),
        Insn(LD_W_ABS, 0, 0, 0),                # seccomp_data.nr
        Insn(JEQ_K, 0, 1, nr),
        Insn(RET_K, 0, 0, 0x00050000 | err),    # SECCOMP_RET_ERRNO
        Insn(RET_K, 0, 0, 0x7FFF0000))          # SECCOMP_RET_ALLOW
    prog = Prog(6, insns)
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(
            PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0):
        sys.exit("prctl: errno %d" % ctypes.get_errno())
""")


def io_uring_refusal() -> Optional[str]:
    """Why the C loop cannot run on io_uring here (None when it can): the
    tests of a c-uring run skip with it."""
    from zerosock import _aio_c
    return _aio_c._uring_unavailable()
