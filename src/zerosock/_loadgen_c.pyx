# cython: language_level=3
"""The benchmark's load generator and reference echo server, in C (csrc/zs_loadgen.c).

``LoadGenerator`` runs with the GIL released, in slices of at most 0.1 s so a
Ctrl-C is seen promptly.  ``serve`` runs the minimal epoll echo server that
the benchmark shows as the reference ceiling.  Both need epoll (Linux);
``SUPPORTED`` says whether this build has them.
"""

from libc.errno cimport errno
from libc.stdint cimport uint64_t, int64_t, UINT64_MAX
from cpython.exc cimport PyErr_CheckSignals

from zerosock._loadgen cimport *

import os

from zerosock.bench._common import LoadGenError, check_request, make_result, request_for

SUPPORTED = bool(zs_lg_supported())
_MODES = {"echo": ZS_LG_ECHO, "stream": ZS_LG_STREAM, "udp": ZS_LG_UDP, "http": ZS_LG_HTTP}
_SERVER_MODES = ("echo", "stream", "udp")
_SLICE_NS = 100_000_000
_QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))


def now() -> float:
    """CLOCK_MONOTONIC in seconds, the clock the generator times requests with."""
    return zs_lg_now_ns() / 1e9


cdef class LoadGenerator:
    """Drive a server over ``connections`` sockets: ``echo`` (request, then
    the same bytes back, compared), ``stream`` (write only), ``udp`` (echo
    of datagrams) or ``http`` (HTTP/1.1 keep-alive: ``request``, by default a
    ``GET /``, then a whole response framed by its Content-Length; ``size``
    is then ignored).  ``address`` is ``(host, port)`` with a numeric
    loopback host, or a Unix socket path."""

    cdef zs_lg *lg
    cdef readonly str mode
    cdef readonly int connections
    cdef readonly Py_ssize_t size
    cdef readonly object address
    cdef bint connected

    kind = "c"

    def __cinit__(self, str mode, address, int connections=1, Py_ssize_t size=1024,
                  request=None):
        cdef bytes canned = request_for(mode, address, request)
        if mode == "http":
            size = len(canned)
        check_request(mode, connections, size)
        if isinstance(address, str):
            host, port = address, -1
        else:
            host, port = address[0], int(address[1])
        encoded = str(host).encode()
        cdef const char *c_host = encoded
        self.lg = zs_lg_new_host(_MODES[mode], c_host, port, connections, <size_t>size)
        if self.lg is NULL:
            code = errno
            raise OSError(code, f"{os.strerror(code)}: cannot drive {address!r} ({mode})")
        if mode == "http" and zs_lg_set_request(self.lg, <const char *>canned, len(canned)) != 0:
            code = errno
            raise OSError(code, f"{os.strerror(code)}: cannot set the HTTP request")
        self.mode = mode
        self.connections = connections
        self.size = size
        self.address = address

    def __dealloc__(self):
        if self.lg is not NULL:
            zs_lg_free(self.lg)
            self.lg = NULL

    cdef zs_lg *_live(self) except NULL:
        if self.lg is NULL:
            raise ValueError("the load generator is closed")
        return self.lg

    def connect(self, double timeout=5.0) -> None:
        """Open every connection (UDP: connect the sockets to the server)."""
        cdef zs_lg *lg = self._live()
        cdef int ms = <int>(timeout * 1000)
        cdef int rc
        with nogil:
            rc = zs_lg_connect(lg, ms)
        if rc != 0:
            raise LoadGenError(f"connecting to {self.address!r}: {zs_lg_error(lg).decode()}")
        self.connected = True

    def run(self, double duration, max_ops=None, bint drain=True,
            double drain_timeout=5.0) -> dict:
        """Send requests for ``duration`` seconds or until ``max_ops`` have
        started, whichever comes first.  With ``drain`` the requests still in
        flight are then completed (an exact count for the server); without it
        they carry over into the next run, which keeps a server in steady
        state from one measured window to the next."""
        cdef zs_lg *lg = self._live()
        if not self.connected:
            raise LoadGenError("connect() first")
        cdef uint64_t limit = UINT64_MAX if max_ops is None else <uint64_t>max_ops
        cdef int64_t start, deadline, drain_deadline, t, slice_end
        cdef int64_t cpu0, cpu1
        cdef int rc = 0
        cdef int issue
        zs_lg_reset_stats(lg)
        cpu0 = zs_lg_thread_cpu_ns()
        start = zs_lg_now_ns()
        deadline = start + <int64_t>(duration * 1e9)
        drain_deadline = deadline + <int64_t>(drain_timeout * 1e9)
        while True:
            t = zs_lg_now_ns()
            issue = t < deadline
            if not issue and not drain:
                break
            if not issue and t >= drain_deadline:
                raise LoadGenError(
                    f"{zs_lg_inflight(lg)} replies still missing {drain_timeout:g} s "
                    "after the last request was sent")
            slice_end = min(t + _SLICE_NS, deadline if issue else drain_deadline)
            with nogil:
                rc = zs_lg_step(lg, slice_end, limit, issue)
            if rc < 0:
                raise LoadGenError(zs_lg_error(lg).decode())
            if rc == 1:
                break
            PyErr_CheckSignals()
        t = zs_lg_now_ns()
        cpu1 = zs_lg_thread_cpu_ns()
        cdef const zs_lg_stats *st = zs_lg_get_stats(lg)
        latency = {}
        if st.lat_count:
            for name, q in _QUANTILES:
                latency[name] = zs_lg_percentile(st, q) / 1000.0
            latency["max"] = st.lat_max_ns / 1000.0
            latency["mean"] = st.lat_sum_ns / st.lat_count / 1000.0
        return make_result(
            ops=st.ops, nbytes=st.bytes, seconds=(t - start) / 1e9,
            gen_cpu=(cpu1 - cpu0) / 1e9 if cpu0 >= 0 and cpu1 >= 0 else None,
            lost=st.lost, stale=st.stale, inflight=zs_lg_inflight(lg), latency_us=latency)

    def set_loss_timeout(self, double seconds) -> None:
        """How long a UDP request waits for its reply before it counts as lost."""
        zs_lg_set_loss_timeout(self._live(), <int64_t>(seconds * 1e9))

    def close(self) -> None:
        if self.lg is not NULL:
            zs_lg_free(self.lg)
            self.lg = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def serve(int listen_fd, str mode, int stop_fd) -> None:
    """Serve ``listen_fd`` (listening TCP for ``echo``/``stream``, bound UDP
    for ``udp``) with the reference epoll server until ``stop_fd`` is readable."""
    if mode not in _SERVER_MODES:
        raise ValueError(f"unknown mode {mode!r}")
    cdef int c_mode = _MODES[mode]
    cdef char err[256]
    cdef int rc
    err[0] = 0
    with nogil:
        rc = zs_echo_server_run(listen_fd, c_mode, stop_fd, err, sizeof(err))
    if rc != 0:
        raise OSError(err.decode())
