# cython: language_level=3
"""io_uring on this machine: whether a ring can be made and what it can do
(csrc/zs_uring.c), and the benchmark's io_uring echo server."""

from zerosock._uring cimport *
from zerosock._loadgen cimport ZS_LG_ECHO, ZS_LG_STREAM

_MODES = {"echo": ZS_LG_ECHO, "stream": ZS_LG_STREAM}


def _cap_names(unsigned caps):
    names = []
    cdef unsigned bit = 0
    cdef const char *name = zs_uring_cap_name(bit)
    while name is not NULL:
        if caps & (1u << bit):
            names.append(name.decode())
        bit += 1
        name = zs_uring_cap_name(bit)
    return names


def probe() -> dict:
    """Make a ring and report: ``available`` (everything an I/O backend
    needs is there), ``reason`` (why not, or ``"available"``), ``caps`` (what
    a ring here can do) and ``required`` (what a backend needs)."""
    cdef unsigned caps = 0
    cdef char reason[512]
    cdef int ok
    reason[0] = 0
    with nogil:
        ok = zs_uring_available(&caps, reason, sizeof(reason))
    return {"available": bool(ok), "reason": reason.decode(), "caps": _cap_names(caps),
            "required": _cap_names(ZS_URING_CAPS_REQUIRED)}


def unavailable_reason():
    """None when the io_uring echo server can run here, else why not."""
    found = probe()
    return None if found["available"] else found["reason"]


def serve(int listen_fd, str mode, int stop_fd) -> None:
    """Serve ``listen_fd`` (a listening TCP socket) with the io_uring echo
    server until ``stop_fd`` is readable: ``echo`` sends every byte back,
    ``stream`` reads and discards."""
    if mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}")
    cdef int c_mode = _MODES[mode]
    cdef char err[512]
    cdef int rc
    err[0] = 0
    with nogil:
        rc = zs_uring_echo_server_run(listen_fd, c_mode, stop_fd, err, sizeof(err))
    if rc != 0:
        raise OSError(err.decode())
