"""Property tests on what converts Python values to C: socket addresses
(IPv4, IPv6, Unix; bad tuples, huge ports, embedded NULs, wrong types),
option values and ancillary data.  Each backend must do what the standard
library does: the same result, or the same exception type.

``ZEROSOCK_FUZZ_EXAMPLES`` sets the examples per property (default 300).
Hosts are literals, never names, so no example waits on DNS.
"""

from __future__ import annotations

import array
import os
import socket
import struct
import sys
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="AF_UNIX and SCM_RIGHTS")

EXAMPLES = int(os.environ.get("ZEROSOCK_FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def outcome(fn, *args):
    """What a call did: its result, or its exception's type (OSError by errno)."""
    try:
        return ("ok", fn(*args))
    except OSError as exc:
        return ("raised", type(exc).__name__, exc.errno)
    except Exception as exc:  # noqa: BLE001 - the type is the behaviour compared
        return ("raised", type(exc).__name__)


# ------------------------------------------------ operations compared

UNIX_DIR = tempfile.mkdtemp(prefix="zs-fuzz-")

def _connect_udp(mod_socket, family, address):
    with mod_socket(family, socket.SOCK_DGRAM) as s:
        s.connect(address)
        return s.getpeername()


def _sendto_unix(mod_socket, path):
    with mod_socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        return s.sendto(b"x", path)


def _bind_unix_and_name(mod_socket, path):
    with mod_socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        try:
            return s.getsockname()
        finally:
            if isinstance(path, str) and path and not path.startswith("\0"):
                os.unlink(path)


def _set_then_get(mod_socket, level, option, value, optlen, buflen):
    with mod_socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if optlen is None:
            s.setsockopt(level, option, value)
        else:
            s.setsockopt(level, option, value, optlen)
        # What the kernel kept, read back as the tests read it (sizes it
        # adjusts, like SO_RCVBUF doubling, are the same for both).
        return s.getsockopt(level, option) if buflen is None else s.getsockopt(level, option, buflen)


def _send_with_ancillary(impl_socketpair, items, ancbufsize):
    a, b = impl_socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        n = a.sendmsg([b"data"], items)
        data, anc, flags, _ = b.recvmsg(16, ancbufsize)
        for level, kind, payload in anc:  # never keep a passed descriptor
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for fd in array.array("i", payload[: len(payload) // 4 * 4]):
                    os.close(fd)
        return n, data, anc, flags


def _both(fn, zs_obj, std_obj, *args):
    got, expected = outcome(fn, zs_obj, *args), outcome(fn, std_obj, *args)
    assert got == expected
    return got


# ------------------------------------- regressions the properties first found


def test_host_idna_refuses_is_type_error(zs):
    """C backend: a host name IDNA cannot encode raised UnicodeError, where
    the standard library raises TypeError("encoding of hostname failed")."""
    assert _both(_connect_udp, zs.Socket, socket.socket, socket.AF_INET, ("\x80", 1)) == \
        ("raised", "TypeError")


@pytest.mark.parametrize("address", [
    ("::1", 0, -1.0, 0),        # a float flowinfo: TypeError, not OverflowError
    ("::1", 5, 0, -1),          # scope_id masked to 32 bits, as "I" does
    ("::1", 5, 0, 2**33),
    ("::1", 5, True, 0),
    ("127.0.0.1", 0, -1, 0),    # the host is resolved before flowinfo's range is checked
    ("127.0.0.1", 70000, 0, 0),  # ... and before the port's
    ("fe80::1%lo", 5),          # the tuple's scope, not the zone's
])
def test_ipv6_fields_as_the_stdlib(zs, address):
    """C backend: IPv6 addresses converted and checked in the standard
    library's order and with its integer conversions."""
    _both(_connect_udp, zs.Socket, socket.socket, socket.AF_INET6, address)


@pytest.mark.parametrize("address", [("1.2.3.4.5", 70000), ("::1", -1)])
def test_ipv4_host_resolved_before_the_port_is_checked(zs, address):
    _both(_connect_udp, zs.Socket, socket.socket, socket.AF_INET, address)


def test_unix_path_too_long_has_no_errno(zs):
    """C backend: errno ENAMETOOLONG where the standard library sets none."""
    path = os.path.join(UNIX_DIR, "p" * (108 - len(UNIX_DIR) - 1))
    assert _both(_sendto_unix, zs.Socket, socket.socket, path) == ("raised", "OSError", None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux abstract namespace")
def test_unix_bind_empty_autobinds(zs):
    """C backend: bind("") bound the abstract name "\\0" (so a second one
    failed with EADDRINUSE) instead of auto-binding a fresh name as Linux does
    for an empty address, and as the standard library asks for."""
    socks = [zs.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for s in socks:
            s.bind("")
        names = [s.getsockname() for s in socks]
        assert all(isinstance(n, bytes) and n.startswith(b"\0") and len(n) > 1 for n in names)
        assert names[0] != names[1]
    finally:
        for s in socks:
            s.close()
    assert _both(_sendto_unix, zs.Socket, socket.socket, "")[0] == "raised"


@pytest.mark.parametrize("items", [
    [(1, 1)], [(1, 1, b"", b"")], [b"abc"], [(1.0, 1, b"")], [(1, 1, 5)], [(1, 1, "str")],
    [("1", 1, b"")], [(2**40, 1, b"")], [None], [[socket.SOL_SOCKET, 0, b""]],
])
def test_ancillary_items_checked_as_the_stdlib(zs, items):
    """C backend: items were unpacked with int() and bytes(), so a pair
    raised ValueError, and a float level, a str level or an int as data
    (bytes(5): five zero bytes) were accepted where the stdlib refuses them."""
    _both(_send_with_ancillary, zs.socketpair, socket.socketpair, items, 0)


@pytest.mark.parametrize("value,optlen", [
    (2**40, None), (2**31, None), (-2**31 - 1, None),  # ints out of C int range: TypeError
    (None, 2**40), (None, -2), (None, 2**32 + 4),      # optlen masked to 32 bits
])
def test_setsockopt_values_as_the_stdlib(zs, value, optlen):
    """C backend: an int value beyond a C int raised OverflowError and an
    optlen outside 0..2**32-1 raised OverflowError, where the standard library
    raises TypeError and passes the masked length to the kernel."""
    _both(_set_then_get, zs.Socket, socket.socket, socket.SOL_SOCKET, socket.SO_RCVBUF,
          value, optlen, None)
