"""A real link for fault tests: two network namespaces joined by a veth pair,
with nftables rules between them that drop, reset, black-hole or rate-cap.

The namespaces are anonymous, held only by descriptors of this process, so the
kernel removes them, the veth pair and every rule with them when the last
descriptor closes: at ``Link.close()``, or when the process ends, however it
ends (a killed run leaves nothing behind, and parallel runs never share a name).
Sockets belong to the namespace of the thread that creates them; each end of a
test runs in a thread that has entered its namespace (``Link.start``)."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import threading
from typing import Any, Callable, Optional

CLONE_NEWNET = 0x40000000
# TEST-NET-1 (RFC 5737): never routed anywhere; here it exists only on the veth pair.
SERVER_ADDR = "192.0.2.1"
CLIENT_ADDR = "192.0.2.2"
TOOLS = ("ip", "ss", "nft", "ethtool", "nsenter")
TABLE = "zerosock_faults"
# One table per namespace; a fault is rules in its input chain, so every drop
# happens on arrival, as on a lossy wire (a drop on output would fail the
# sender's own syscall with EPERM instead).
BASE_RULESET = f"""
table inet {TABLE} {{
    chain input {{
        type filter hook input priority 0; policy accept;
    }}
}}
"""

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unavailable() -> Optional[str]:
    """Why this machine cannot build a link, or None when it can."""
    if sys.platform != "linux":
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return "missing " + ", ".join(missing) + " (Debian: iproute2 nftables ethtool util-linux)"
    try:
        Namespace().close()
    except OSError as exc:
        return f"cannot make a network namespace: {exc}"
    return None


class Namespace:
    """An anonymous network namespace, alive while this object is open."""

    def __init__(self) -> None:
        made: dict = {}

        def unshare() -> None:  # in a thread of its own, which then ends
            try:
                _check(_libc.unshare(CLONE_NEWNET), "unshare")  # type: ignore[union-attr]
                made["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                made["error"] = exc

        thread = threading.Thread(target=unshare)
        thread.start()
        thread.join()
        if "error" in made:
            raise made["error"]
        self.fd: int = made["fd"]
        self.path = f"/proc/{os.getpid()}/fd/{self.fd}"

    def run(self, *cmd: str, stdin: str = "", pass_fds: tuple = ()) -> str:
        """Run a command inside the namespace; its output, or an error with it."""
        proc = subprocess.run(["nsenter", f"--net={self.path}", *cmd], input=stdin,
                              capture_output=True, text=True, timeout=30,
                              pass_fds=(self.fd, *pass_fds))
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def enter(self) -> None:
        """Move the calling thread (only it) into this namespace."""
        _check(_libc.setns(self.fd, CLONE_NEWNET), "setns")  # type: ignore[union-attr]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Hang(AssertionError):
    """An end of a test did not finish within its bound."""


class End:
    """A function running in a thread inside a namespace: one end of a test."""

    def __init__(self, ns: Namespace, fn: Callable[..., Any], *args: Any) -> None:
        self._fn, self._args = fn, args
        self._ns = ns
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._ns.enter()
            self.result = self._fn(*self._args)
        except BaseException as exc:  # handed to the test's thread by join()
            self.error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise Hang(f"{getattr(self._fn, '__name__', self._fn)} is still running")
        if self.error is not None:
            raise self.error
        return self.result


class Link:
    """Two namespaces, ``server`` (SERVER_ADDR) and ``client`` (CLIENT_ADDR),
    joined by a veth pair with its offloads off, so that one dropped packet is
    one wire-sized segment, as on a real link."""

    def __init__(self) -> None:
        self.server = Namespace()
        try:
            self.client = Namespace()
            self.server.run("ip", "link", "add", "veth0", "type", "veth",
                            "peer", "name", "veth0", "netns", self.client.path,
                            pass_fds=(self.client.fd,))
            for ns, addr in ((self.server, SERVER_ADDR), (self.client, CLIENT_ADDR)):
                ns.run("ip", "-batch", "-", stdin=f"addr add {addr}/30 dev veth0\n"
                                                  "link set veth0 up\nlink set lo up\n")
                ns.run("ethtool", "-K", "veth0", "tso", "off", "gso", "off", "gro", "off")
                ns.run("nft", "-f", "-", stdin=BASE_RULESET)
        except BaseException:
            self.close()
            raise
        self.faults = 0

    def start(self, side: str, fn: Callable[..., Any], *args: Any) -> End:
        """Run ``fn(*args)`` in a new thread inside the ``side`` namespace."""
        return End(self._ns(side), fn, *args)

    def _ns(self, side: str) -> Namespace:
        return {"server": self.server, "client": self.client}[side]

    def add(self, side: str, *rules: str) -> None:
        """Add rules to what arrives at ``side`` (nft syntax, e.g. ``tcp sport 80 drop``)."""
        self._ns(side).run("nft", "-f", "-", stdin="".join(
            f"add rule inet {TABLE} input {rule}\n" for rule in rules))
        self.faults += 1

    def clear(self) -> None:
        """Remove every fault: the link is clean again."""
        for ns in (self.server, self.client):
            ns.run("nft", "flush", "chain", "inet", TABLE, "input")

    def matched(self) -> int:
        """Packets the fault rules have dropped or reset since the last ``clear``."""
        total = 0
        for ns in (self.server, self.client):
            out = ns.run("nft", "list", "chain", "inet", TABLE, "input")
            total += sum(int(n) for n in re.findall(r"counter packets (\d+)", out))
        return total

    def sockets(self, side: str, port: int) -> list:
        """The TCP states (as ``ss`` names them) of ``side``'s sockets on local ``port``."""
        out = self._ns(side).run("ss", "-tanH", f"sport = :{port}")
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def close(self) -> None:
        for ns in (getattr(self, "client", None), self.server):
            if ns is not None:
                ns.close()
