"""The io_uring layer in csrc/ (zs_uring.[ch]): its probe, its view of the
kernel's ABI, the reasons it gives when io_uring is refused, and the C
io_uring echo server over loopback, every byte checked."""

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import _kernel

pytestmark = pytest.mark.c_extension

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "csrc" / "zs_uring.h"
SYSTEM_HEADER = Path("/usr/include/linux/io_uring.h")


@pytest.fixture(scope="module")
def uring():
    from zerosock import _uring_c  # a missing extension fails here: a broken build must not pass
    return _uring_c


@pytest.fixture(scope="module")
def usable(uring):
    found = uring.probe()
    if not found["available"]:
        pytest.skip(f"io_uring is not usable here: {found['reason']}")
    return uring


def test_probe_answers(uring):
    found = uring.probe()
    assert set(found) == {"available", "reason", "caps", "required"}
    assert found["reason"]
    if found["available"]:
        assert found["reason"] == "available"
        assert set(found["required"]) <= set(found["caps"])
    elif sys.platform.startswith("linux"):
        assert "io_uring" in found["reason"]
    else:
        assert found["reason"] == "io_uring is Linux-only"
    assert uring.unavailable_reason() == (None if found["available"] else found["reason"])


# ------------------------------------------------------------ the kernel's ABI

# (our name, the kernel's name) for every field and constant zs_uring.h declares
_FIELDS = {
    ("zs_uring_sqe", "struct io_uring_sqe"): [
        ("opcode", "opcode"), ("flags", "flags"), ("ioprio", "ioprio"), ("fd", "fd"),
        ("off", "off"), ("addr", "addr"), ("len", "len"), ("op_flags", "msg_flags"),
        ("user_data", "user_data"), ("buf_group", "buf_group"),
        ("personality", "personality"), ("file_index", "file_index"), ("addr3", "addr3")],
    ("zs_uring_cqe", "struct io_uring_cqe"): [
        ("user_data", "user_data"), ("res", "res"), ("flags", "flags")],
    ("zs_uring_params", "struct io_uring_params"): [
        (f, f) for f in ("sq_entries", "cq_entries", "flags", "sq_thread_cpu",
                         "sq_thread_idle", "features", "wq_fd", "sq_off", "cq_off")],
    ("zs_uring_sq_offsets", "struct io_sqring_offsets"): [
        (f, f) for f in ("head", "tail", "ring_mask", "ring_entries", "flags", "dropped",
                         "array")],
    ("zs_uring_cq_offsets", "struct io_cqring_offsets"): [
        (f, f) for f in ("head", "tail", "ring_mask", "ring_entries", "overflow", "cqes",
                         "flags")],
    ("zs_uring_buf", "struct io_uring_buf"): [
        ("addr", "addr"), ("len", "len"), ("bid", "bid"), ("resv", "resv")],
    ("zs_uring_buf_reg", "struct io_uring_buf_reg"): [
        ("ring_addr", "ring_addr"), ("ring_entries", "ring_entries"), ("bgid", "bgid")],
    ("zs_uring_getevents_arg", "struct io_uring_getevents_arg"): [
        ("sigmask", "sigmask"), ("sigmask_sz", "sigmask_sz"), ("ts", "ts")],
    ("zs_udgram_header", "struct io_uring_recvmsg_out"): [  # (zs_uring_poll.h)
        (f, f) for f in ("namelen", "controllen", "payloadlen", "flags")],
}
_CONSTANTS = [
    (f"ZS_OP_{op}", f"IORING_OP_{op}") for op in (
        "NOP", "POLL_ADD", "POLL_REMOVE", "SENDMSG", "RECVMSG", "ACCEPT", "ASYNC_CANCEL",
        "CONNECT", "CLOSE", "SEND", "RECV", "SHUTDOWN", "SOCKET", "SEND_ZC", "SENDMSG_ZC")
] + [
    ("ZS_IOSQE_IO_LINK", "IOSQE_IO_LINK"),
    ("ZS_IOSQE_BUFFER_SELECT", "IOSQE_BUFFER_SELECT"),
    ("ZS_IOSQE_CQE_SKIP_SUCCESS", "IOSQE_CQE_SKIP_SUCCESS"),
] + [(f"ZS_SETUP_{f}", f"IORING_SETUP_{f}") for f in (
    "CQSIZE", "SUBMIT_ALL", "COOP_TASKRUN", "SINGLE_ISSUER", "DEFER_TASKRUN")
] + [(f"ZS_ENTER_{f}", f"IORING_ENTER_{f}") for f in ("GETEVENTS", "EXT_ARG")
] + [(f"ZS_FEAT_{f}", f"IORING_FEAT_{f}") for f in (
    "SINGLE_MMAP", "NODROP", "EXT_ARG", "RSRC_TAGS")
] + [(f"ZS_CQE_{f}", f"IORING_CQE_{f}") for f in (
    "F_BUFFER", "F_MORE", "F_NOTIF", "BUFFER_SHIFT")
] + [(f"ZS_{f}", f"IORING_{f}") for f in (
    "POLL_ADD_MULTI", "RECVSEND_POLL_FIRST", "RECV_MULTISHOT", "ACCEPT_MULTISHOT",
    "ASYNC_CANCEL_ALL", "ASYNC_CANCEL_FD", "ASYNC_CANCEL_ANY", "REGISTER_PROBE",
    "REGISTER_PBUF_RING", "UNREGISTER_PBUF_RING", "OFF_SQ_RING", "OFF_CQ_RING", "OFF_SQES")]


def _abi_check_source() -> str:
    lines = ["#include <stddef.h>", "#include <linux/io_uring.h>", '#include "zs_uring.h"',
             '#include "zs_uring_poll.h"']
    for (ours, theirs), fields in _FIELDS.items():
        lines.append(f"_Static_assert(sizeof({ours}) == sizeof({theirs}), \"{ours}\");")
        for mine, kernel in fields:
            lines.append(f"_Static_assert(offsetof({ours}, {mine}) == offsetof({theirs}, "
                         f"{kernel}), \"{ours}.{mine}\");")
    for mine, kernel in _CONSTANTS:
        lines.append(f"_Static_assert((long long){mine} == (long long){kernel}, \"{mine}\");")
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not sys.platform.startswith("linux") or not SYSTEM_HEADER.exists(),
                    reason="needs Linux and its <linux/io_uring.h>")
def test_abi_matches_the_kernel_header(tmp_path):
    """zs_uring.h declares the kernel's structures itself (wheels build
    against headers without them): every field and constant it names must
    sit where the system's UAPI header puts it."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        pytest.skip("no C compiler")
    source = tmp_path / "abi.c"
    source.write_text(_abi_check_source())
    done = subprocess.run([cc, "-std=c11", "-fsyntax-only", "-Wall", "-Werror",
                           f"-I{HEADER.parent}", str(source)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------ refused io_uring

# In a child: a seccomp filter that answers one system call with an errno, as
# container runtimes do for io_uring, then the probe's answer as JSON.
_SECCOMP_CHILD = _kernel.SECCOMP_REFUSAL + textwrap.dedent("""
    from zerosock import _uring_c
    print(json.dumps(_uring_c.probe()))
""")


def _io_uring_disabled() -> int:
    try:
        return int(Path("/proc/sys/kernel/io_uring_disabled").read_text())
    except (OSError, ValueError):
        return 0


@pytest.mark.skipif(platform.machine() not in _kernel.AUDIT_ARCH or not sys.platform.startswith("linux"),
                    reason="the seccomp filter is written for x86_64 and aarch64 Linux")
@pytest.mark.parametrize("syscall,errno_name,expected", [
    (425, "EPERM", "io_uring_setup failed with EPERM: a seccomp filter forbids io_uring"),
    (425, "ENOSYS", "io_uring_setup failed with ENOSYS"),
    (427, "EPERM", "io_uring_register failed with EPERM: a seccomp filter forbids it"),
], ids=["setup-EPERM", "setup-ENOSYS", "register-EPERM"])
def test_a_seccomp_filter_is_named(usable, syscall, errno_name, expected):
    """Container runtimes refuse io_uring with a seccomp filter answering
    EPERM or ENOSYS: the probe says so rather than failing vaguely."""
    if errno_name == "EPERM" and syscall == 425 and _io_uring_disabled():
        pytest.skip("kernel.io_uring_disabled is set: its own reason comes first")
    import errno
    done = subprocess.run(
        [sys.executable, "-c", _SECCOMP_CHILD, str(_kernel.AUDIT_ARCH[platform.machine()]),
         str(syscall), str(getattr(errno, errno_name))],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert not found["available"]
    assert found["reason"].startswith(expected), found["reason"]


# ------------------------------------------------------------ the echo server

def _open_fds() -> "set[str]":
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()


class _Server:
    """The io_uring echo server on a thread (it runs with the GIL released)."""

    def __init__(self, uring, mode):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.address = self.listener.getsockname()
        self.stop_r, self.stop_w = os.pipe()
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(uring, mode), daemon=True)
        self.thread.start()

    def _run(self, uring, mode):
        try:
            uring.serve(self.listener.fileno(), mode, self.stop_r)
        except Exception as exc:  # reported by stop()
            self.error = exc

    def stop(self):
        os.write(self.stop_w, b"x")
        self.thread.join(30)
        assert not self.thread.is_alive(), "the server did not stop"
        for fd in (self.stop_r, self.stop_w):
            os.close(fd)
        self.listener.close()
        assert self.error is None, self.error


def _echo(address, payload, chunk):
    """Send `payload` in `chunk`-sized writes from one thread while reading
    the echo on this one; return what came back."""
    with socket.create_connection(address, timeout=30) as sock:
        writer = threading.Thread(
            target=lambda: [sock.sendall(payload[i:i + chunk])
                            for i in range(0, len(payload), chunk)], daemon=True)
        writer.start()
        got = bytearray()
        while len(got) < len(payload):
            data = sock.recv(1 << 20)
            if not data:
                break
            got += data
        writer.join(30)
        return bytes(got)


def test_echo_server_returns_every_byte(usable):
    before = _open_fds()
    server = _Server(usable, "echo")
    try:
        # sizes around the ring's 16 KiB buffers, and far past them: one
        # connection's echoes queue behind its own send
        cases = [(os.urandom(n), chunk) for n, chunk in (
            (1, 1), (64, 64), (1024, 1024), (16384, 16384), (16385, 4096),
            (100_000, 65536), (3 * 1024 * 1024, 1 << 20))]
        results = [None] * len(cases)

        def client(k):
            results[k] = _echo(server.address, *cases[k])

        threads = [threading.Thread(target=client, args=(k,)) for k in range(len(cases))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for (payload, _), got in zip(cases, results):
            assert got == payload
    finally:
        server.stop()
    assert _open_fds() <= before  # the ring, its connections, nothing left open


def test_echo_server_survives_abrupt_clients(usable):
    """Peers that reset, or close with echoes still owed, cost the server
    nothing: later clients are served, the stop leaves nothing open."""
    before = _open_fds()
    server = _Server(usable, "echo")
    idle = None
    try:
        for k in range(20):
            sock = socket.create_connection(server.address, timeout=10)
            sock.sendall(os.urandom(200_000))
            if k % 2:  # a reset instead of a FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            sock.close()
        idle = socket.create_connection(server.address, timeout=10)  # open at the stop
        payload = os.urandom(50_000)
        assert _echo(server.address, payload, 7000) == payload
    finally:
        server.stop()
        if idle is not None:
            idle.close()
    assert _open_fds() <= before


def test_stream_mode_reads_and_discards(usable):
    server = _Server(usable, "stream")
    try:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(os.urandom(2 * 1024 * 1024))
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1) == b""  # the server read it all, sent nothing, closed
    finally:
        server.stop()


def test_echo_server_under_the_load_generator(usable):
    """The bench tool's C load generator, which compares every echoed byte,
    against the io_uring server: 64 B and 1 KiB over 10 and 100 connections."""
    from zerosock import _loadgen_c
    if not _loadgen_c.SUPPORTED:
        pytest.skip("the C load generator needs epoll")
    server = _Server(usable, "echo")
    try:
        for connections, size in ((10, 64), (100, 1024)):
            with _loadgen_c.LoadGenerator("echo", server.address, connections, size) as gen:
                gen.connect(10.0)
                stats = gen.run(30.0, max_ops=3000, drain=True, drain_timeout=10.0)
                assert stats["ops"] == 3000
                assert stats["bytes"] == 3000 * size
    finally:
        server.stop()


def test_serve_refuses_what_it_does_not_serve(uring):
    with pytest.raises(ValueError):
        uring.serve(-1, "udp", -1)


def test_bench_tool_runs_the_io_uring_server(usable):
    """``c-uring``, the bench tool's io_uring floor, serves echo and stream."""
    import io
    from zerosock.bench import cli
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["-c", "c-uring", "-w", "echo,stream", "-s", "64", "-n", "2",
                       "-d", "0.1", "--warmup", "0.02", "-r", "1", "--no-pin", "--no-progress",
                       "--json", "-"], stdout=out, stderr=err)
    assert status == 0, err.getvalue()
    rows = [row for cell in json.loads(out.getvalue())["cells"] for row in cell["rows"]]
    assert [(r["contender"], r["status"]) for r in rows] == [("c-uring", "ok")] * 2
    assert all(r["rate"] > 0 for r in rows)
