"""What the running kernel allows, read rather than assumed: socket buffer
sizes, the listen backlog's cap and the ephemeral port range.  Tests size
their loads from these, or pin buffers on their own sockets, so they hold on
any machine's tunables."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Optional

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
