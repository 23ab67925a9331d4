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
import warnings

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="AF_UNIX and SCM_RIGHTS")

EXAMPLES = int(os.environ.get("ZEROSOCK_FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def outcome(fn, *args):
    """What a call did: its result, or its exception's type (OSError by errno),
    and the deprecation warnings it gave (3.15 warns of out-of-range ints)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        try:
            result = ("ok", fn(*args))
        except OSError as exc:
            result = ("raised", type(exc).__name__, exc.errno)
        except Exception as exc:  # noqa: BLE001 - the type is the behaviour compared
            result = ("raised", type(exc).__name__)
    deprecated = tuple(str(w.message) for w in caught if issubclass(w.category, DeprecationWarning))
    return result + ((deprecated,) if deprecated else ())


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


# ---------------------------------------------------------------- values

huge_ints = st.one_of(
    st.integers(-2**70, 2**70),
    st.sampled_from([-1, 0, 1, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63, -2**63 - 1]),
)
not_ints = st.one_of(st.none(), st.floats(allow_nan=True), st.text(max_size=3),
                     st.binary(max_size=3), st.booleans(), st.just([]))
ports = st.one_of(huge_ints, not_ints)

v4_hosts = st.one_of(
    st.builds(lambda a, b, c: f"127.{a}.{b}.{c}", st.integers(0, 255), st.integers(0, 255),
              st.integers(1, 254)),
    st.sampled_from(["", "<broadcast>", "0.0.0.0", "127.0.0.1", "localhost", "127.1",
                     "0x7f.1", "::1", "1.2.3.4.5", "127.0.0.1 ", "127.0.0.1\0",
                     "\0", "127.0.0.\u0661"]),
    st.text(max_size=8).map(lambda t: t + "\0"),  # a NUL anywhere fails before resolving
    st.binary(max_size=8).map(lambda b: b"\0" + b),
    st.builds(bytearray, st.sampled_from([b"127.0.0.1", b"", b"\0"])),
    st.one_of(st.integers(), st.none(), st.floats(), st.just(("127.0.0.1",))),
)
v6_hosts = st.one_of(
    st.sampled_from(["::1", "::", "", "::ffff:127.0.0.1", "fe80::1", "fe80::1%lo", "::1%1",
                     "127.0.0.1", ":::", "::1\0", "1:2:3:4:5:6:7:8:9", "localhost"]),
    st.text(max_size=8).map(lambda t: "::" + t + "\0"),
    st.one_of(st.integers(), st.none(), st.binary(max_size=4).map(lambda b: b + b"\0")),
)


def tuples_of(host, extra):
    return st.one_of(
        st.tuples(host, ports),
        st.tuples(host, ports, *extra),
        st.tuples(host),
        st.tuples(host, ports, ports, ports, ports, ports),
        st.lists(st.one_of(host, ports), max_size=3),  # a list is not an address
        host,
    )


v4_addresses = tuples_of(v4_hosts, [])
v6_addresses = st.one_of(
    tuples_of(v6_hosts, [huge_ints]),
    st.tuples(v6_hosts, st.integers(0, 65535), huge_ints, huge_ints),
    st.tuples(st.just("::1"), st.integers(0, 65535), not_ints, not_ints),
)


@fuzz
@given(address=v4_addresses)
def test_ipv4_address_conversion(zs, address):
    assert outcome(_connect_udp, zs.Socket, socket.AF_INET, address) == \
        outcome(_connect_udp, socket.socket, socket.AF_INET, address)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
@fuzz
@given(address=v6_addresses)
def test_ipv6_address_conversion(zs, address):
    assert outcome(_connect_udp, zs.Socket, socket.AF_INET6, address) == \
        outcome(_connect_udp, socket.socket, socket.AF_INET6, address)


unix_paths = st.one_of(
    st.text(max_size=120).map(lambda t: os.path.join(UNIX_DIR, t)),
    st.binary(max_size=120).map(lambda b: os.fsencode(UNIX_DIR) + b"/" + b),
    st.binary(min_size=1, max_size=110).map(lambda b: b"\0" + b),  # Linux abstract namespace
    st.integers(90, 120).map(lambda n: os.path.join(UNIX_DIR, "p" * (n - len(UNIX_DIR) - 1))),
    st.integers(100, 112).map(lambda n: b"\0" + b"a" * n),
    st.sampled_from(["", b"", "\0", b"\0", "a\0b", bytearray(b"x"), memoryview(b"x")]),
    st.one_of(st.integers(), st.none(), st.tuples(st.text(max_size=3))),
)


@fuzz
@given(path=unix_paths)
def test_unix_address_conversion(zs, path):
    assert outcome(_sendto_unix, zs.Socket, path) == outcome(_sendto_unix, socket.socket, path)


@fuzz
@given(name=st.one_of(st.text(min_size=1, max_size=40).filter(lambda t: "/" not in t and "\0" not in t),
                      st.binary(min_size=1, max_size=60).map(lambda b: b"\0zs-fuzz" + b)))
def test_unix_names_round_trip(zs, name):
    path = os.path.join(UNIX_DIR, name) if isinstance(name, str) else name
    assert outcome(_bind_unix_and_name, zs.Socket, path) == \
        outcome(_bind_unix_and_name, socket.socket, path)


# ---------------------------------------------------------------- options

OPTIONS = [
    (socket.SOL_SOCKET, socket.SO_REUSEADDR), (socket.SOL_SOCKET, socket.SO_RCVBUF),
    (socket.SOL_SOCKET, socket.SO_SNDBUF), (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    (socket.SOL_SOCKET, socket.SO_LINGER), (socket.SOL_SOCKET, socket.SO_RCVTIMEO),
    (socket.IPPROTO_TCP, socket.TCP_NODELAY), (socket.IPPROTO_IP, socket.IP_TTL),
    (socket.SOL_SOCKET, 9999), (9999, 1), (-1, -1),
]
option_values = st.one_of(
    huge_ints,
    st.binary(max_size=40),
    st.builds(bytearray, st.binary(max_size=16)),
    st.builds(lambda n: struct.pack("ii", 1, n), st.integers(0, 100)),
    st.none(), st.text(max_size=4), st.floats(), st.booleans(),
)


@fuzz
@given(opt=st.sampled_from(OPTIONS), value=option_values,
       optlen=st.one_of(st.none(), st.integers(-2, 64), st.just(2**40)),
       buflen=st.one_of(st.none(), st.integers(-2, 1100), st.just(2**40)))
def test_option_values(zs, opt, value, optlen, buflen):
    level, option = opt
    assert outcome(_set_then_get, zs.Socket, level, option, value, optlen, buflen) == \
        outcome(_set_then_get, socket.socket, level, option, value, optlen, buflen)


# ---------------------------------------------------------- ancillary data

def _fds(b: bytes) -> bytes:
    """Descriptor numbers that cannot be open: SCM_RIGHTS data that the
    kernel refuses rather than passing a real descriptor on."""
    count = len(b) // 4
    return array.array("i", [100000 + x for x in b[:count]]).tobytes()


anc_items = st.one_of(
    st.tuples(st.sampled_from([socket.SOL_SOCKET, 0, 9999, -1]),
              st.sampled_from([socket.SCM_RIGHTS, 0, 9999]),
              st.binary(max_size=32).map(_fds)),
    st.tuples(st.sampled_from([socket.SOL_SOCKET, 0, 9999]), st.sampled_from([0, 9999]),
              st.binary(max_size=32)),
    st.tuples(st.one_of(huge_ints, not_ints), st.one_of(huge_ints, not_ints),
              st.one_of(st.binary(max_size=8), st.builds(bytearray, st.binary(max_size=8)),
                        not_ints, st.integers(0, 8))),
    st.tuples(st.just(socket.SOL_SOCKET), st.just(socket.SCM_RIGHTS)),  # too short
    st.tuples(st.just(1), st.just(1), st.just(b""), st.just(b"")),       # too long
    st.one_of(st.none(), st.binary(max_size=4), st.integers()),
)
ancdata = st.one_of(st.lists(anc_items, max_size=3), st.just(()), anc_items.map(lambda x: [x]))


@fuzz
@given(items=ancdata, ancbufsize=st.one_of(st.just(0), st.integers(0, 256), st.just(-1)))
def test_ancillary_data(zs, items, ancbufsize):
    assert outcome(_send_with_ancillary, zs.socketpair, items, ancbufsize) == \
        outcome(_send_with_ancillary, socket.socketpair, items, ancbufsize)


@fuzz
@given(count=st.integers(0, 3), ancbufsize=st.integers(0, 200))
def test_received_descriptors(zs, count, ancbufsize):
    """Real descriptors passed and received with any control-buffer size:
    the same truncation (MSG_CTRUNC) and the same data as the stdlib."""
    def run(socketpair):
        a, b = socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with a, b:
            fds = [os.dup(0) for _ in range(count)]
            try:
                a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    array.array("i", fds).tobytes())] if count else [])
            finally:
                for fd in fds:
                    os.close(fd)
            data, anc, flags, _ = b.recvmsg(4, ancbufsize)
            shape = []
            for level, kind, payload in anc:
                got = array.array("i", payload[: len(payload) // 4 * 4])
                for fd in got:
                    os.close(fd)
                shape.append((level, kind, len(payload)))
            return data, shape, flags
    assert outcome(run, zs.socketpair) == outcome(run, socket.socketpair)


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
    # ints out of C int range: TypeError, OverflowError from 3.15
    (2**40, None), (2**31, None), (-2**31 - 1, None),
    (None, 2**40), (None, -2), (None, 2**32 + 4),      # optlen masked to 32 bits
])
def test_setsockopt_values_as_the_stdlib(zs, value, optlen):
    """C backend: an int value beyond a C int raised OverflowError and an
    optlen outside 0..2**32-1 raised OverflowError, where the standard library
    raises TypeError (OverflowError from 3.15) and passes the masked length
    to the kernel."""
    _both(_set_then_get, zs.Socket, socket.socket, socket.SOL_SOCKET, socket.SO_RCVBUF,
          value, optlen, None)
