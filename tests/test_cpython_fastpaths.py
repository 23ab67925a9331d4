"""The C backend's fast paths that rely on CPython's internals (zerosock._cpython_c):
their table, their checks at import, the switch that turns them off and the
one that takes the running CPython as unverified, and the generic paths the
loop then runs on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from asyncio import events
from typing import Any, Dict

import pytest

SWITCH = "ZEROSOCK_CPYTHON_FASTPATHS"

# Run in a fresh interpreter under a given switch: the table as fastpaths()
# reports it, and what the loop did on the paths that switch leaves.
PROBE = r"""
import asyncio, json, socket, sys
import zerosock.aio
from zerosock import _aio_core_c, _aio_tls_c, _cpython_c

async def main():
    loop = asyncio.get_running_loop()
    seen = {}

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
        def data_received(self, data):
            self.transport.write(data)

    a, b = socket.socketpair()
    transport, _ = await loop.create_connection(Echo, sock=a)
    reader, writer = await asyncio.open_connection(sock=b)
    for n in (1, 100, 100000):
        writer.write(b"x" * n)
        seen[n] = len(await reader.readexactly(n))
    seen["reader"] = type(reader).__module__
    timer = loop.call_later(60, print)
    timer.cancel()
    seen["cancelled"] = timer.cancelled() and loop._scheduled.cancelled_count
    seen["cancel"] = type(type(timer).cancel).__name__
    writer.close()
    transport.close()
    await writer.wait_closed()
    return seen

seen = zerosock.aio.run(main())
seen["free handles"] = _aio_core_c._free_handles(_aio_core_c.Handle)
seen["tls engine"] = _aio_tls_c.TLS_ENGINE
print(json.dumps({"table": _cpython_c.fastpaths(), "seen": seen}))
"""


def _probe(switch: str) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("ZEROSOCK_TLS_ENGINE", None)
    env.pop("ZEROSOCK_C_STREAMS", None)
    if switch:
        env[SWITCH] = switch
    else:
        env.pop(SWITCH, None)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _verified_here(table: Dict[str, Any], name: str) -> bool:
    first, last = table[name]["verified"].split("-")
    def version(text: str) -> tuple:
        return tuple(int(part) for part in text.split("."))
    return version(first) <= sys.version_info[:2] <= version(last)


def test_every_fast_path_is_reported_with_its_table(c_backend):
    from zerosock import _cpython_c
    report = _cpython_c.fastpaths()
    assert list(report) == list(_cpython_c.TABLE)
    for name, entry in report.items():
        assert set(entry) == {"on", "reason", "verified", "what", "otherwise"}, name
        assert entry["on"] == (entry["reason"] == ""), name
        assert entry["what"] and entry["otherwise"], name


def test_on_by_default_where_verified():
    # The checks pass on every CPython of the table: a check that rejects the
    # interpreter it was verified on is a bug in the check.
    probe = _probe("")
    table, seen = probe["table"], probe["seen"]
    import _ssl
    for name, entry in table.items():
        if name == "ssl_object_layout" and not getattr(_ssl, "__file__", None):
            continue  # an _ssl built into the interpreter: the engine cannot reach OpenSSL
        assert entry["on"] == _verified_here(table, name), (name, entry["reason"])
    if table["stream_class_switch"]["on"]:
        assert seen["reader"] == "zerosock._aio_streams_c"
    if table["handle_free_list"]["on"]:
        assert seen["free handles"] > 0
    if table["handle_slots"]["on"]:
        assert seen["cancel"] == "method_descriptor"


@pytest.mark.parametrize("switch, why", [
    ("0", f"{SWITCH}=0"),
    ("unverified", "not verified on this CPython"),
    ("banana", "is not 0, 1 or unverified"),
])
def test_the_switch_turns_every_fast_path_off_and_the_loop_runs_the_generic_paths(switch, why):
    probe = _probe(switch)
    table, seen = probe["table"], probe["seen"]
    for name, entry in table.items():
        assert not entry["on"], name
        assert why in entry["reason"], (name, entry["reason"])
    assert seen["1"] == 1 and seen["100"] == 100 and seen["100000"] == 100000
    assert seen["reader"] == "asyncio.streams"  # the stdlib's streams
    assert seen["cancelled"] == 1  # counted by the loop, through the stdlib's cancel()
    assert seen["cancel"] == "function"
    assert seen["free handles"] == 0
    if sys.version_info >= (3, 11):
        assert seen["tls engine"] == "memorybio"


def test_the_version_verdict(c_backend, monkeypatch):
    from zerosock import _cpython_c
    if os.environ.get(SWITCH, "1") != "1":
        pytest.skip(f"{SWITCH} is set for this run")
    for name, (first, last) in ((n, entry[:2]) for n, entry in _cpython_c.TABLE.items()):
        assert _cpython_c.verdict(name, first) is None
        assert _cpython_c.verdict(name, last) is None
        newer = (last[0], last[1] + 1)
        assert "not verified on CPython %d.%d" % newer in _cpython_c.verdict(name, newer)
        older = (first[0], first[1] - 1)
        assert "not verified on CPython" in _cpython_c.verdict(name, older)
        assert "not verified on this CPython" in _cpython_c.verdict(name, None)


def test_check_records_the_probe_and_honours_what_a_fast_path_needs(c_backend, caplog):
    from zerosock import _cpython_c
    if os.environ.get(SWITCH, "1") != "1":
        pytest.skip(f"{SWITCH} is set for this run")
    before = {name: entry["on"] for name, entry in _cpython_c.fastpaths().items()}
    try:
        with caplog.at_level("DEBUG", logger="zerosock"):
            assert _cpython_c.check("handle_slots", lambda: "a probe said no") == "a probe said no"
        assert not _cpython_c.enabled("handle_slots")
        assert "the handle_slots fast path is off: a probe said no" in caplog.text
        calls = []
        # What needs it is off too, without its probe being asked.
        assert "needs handle_slots" in _cpython_c.check("handle_free_list", calls.append)
        assert calls == []
        assert _cpython_c.check("handle_slots", lambda: None) is None
        assert _cpython_c.enabled("handle_slots")
        # A probe that fails on an interpreter it does not know turns its
        # fast path off rather than failing the import.
        assert "its check failed: TypeError('unlike')" in _cpython_c.check(
            "handle_slots", lambda: (_ for _ in ()).throw(TypeError("unlike")))
        assert not _cpython_c.enabled("handle_slots")
    finally:
        for name in ("handle_slots", "handle_free_list"):
            _cpython_c.check(name, lambda on=before[name]: None if on else "restored")
    assert {name: e["on"] for name, e in _cpython_c.fastpaths().items()} == before
    with pytest.raises(LookupError):
        _cpython_c.enabled("no_such_fast_path")


def test_the_handle_check_sees_a_changed_handle(c_backend):
    from zerosock import _cpython_c
    assert _cpython_c._check_handle_slots() is None

    class MoreSlots(events.Handle):
        __slots__ = ("_extra",)

    MoreSlots.__slots__ = events.Handle.__slots__ + ("_extra",)  # as a new CPython might
    assert "__slots__ differ" in _cpython_c._check_handle_slots(MoreSlots)

    class KeepsRepr(events.TimerHandle):
        __slots__ = events.TimerHandle.__slots__

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self._repr = "kept"

    assert "__init__ leaves _repr otherwise" in _cpython_c._check_handle_slots(
        events.Handle, KeepsRepr)

    class CancelsLate(events.TimerHandle):
        __slots__ = events.TimerHandle.__slots__

        def cancel(self) -> None:
            self._cancelled = True  # nothing cleared, the loop not told

    assert "cancel() leaves" in _cpython_c._check_handle_slots(events.Handle, CancelsLate)


def test_the_checks_pass_where_verified(c_backend):
    # Run again here: each one exercises what its fast path does and reads it
    # back through the public API.
    from zerosock import _cpython_c
    ran = 0
    for name, (first, last, *_, probe) in _cpython_c.TABLE.items():
        if probe is not None and first <= sys.version_info[:2] <= last:
            assert getattr(_cpython_c, probe)() is None, name
            ran += 1
    if not ran:
        pytest.skip("not a CPython of the table")


def test_the_bytearray_check_reads_each_layout(c_backend):
    # 3.15 keeps a bytearray's bytes in a bytes object of its own, whose size
    # is the allocation: the check reads that layout there, the older one before.
    from zerosock import _cpython_c
    assert _cpython_c._check_bytearray() is None
    assert _cpython_c.enabled("bytearray_internals") == (
        _cpython_c.verdict("bytearray_internals") is None)
