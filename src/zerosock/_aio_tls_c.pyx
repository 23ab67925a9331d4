# cython: language_level=3
"""The C TLS layer of zerosock.aio: the standard library's ``SSLProtocol``
(same states, flow control, errors and timeouts) with its record path in C.

A :class:`TLSProtocol` sits on a C socket transport as its protocol, as the
stdlib's sits on a selector transport, and gives the application a
:class:`SSLProtocolTransport`.  Its TLS session is the stdlib's own ``ssl.SSLObject``
from ``context.wrap_bio()`` -- so the user's context, ``sni_callback``,
keylog, hostname checks and the ``ssl_object`` extra are exactly the stdlib's
-- and the engine decides who moves the records:

* ``"openssl"``: ciphertext goes in and out through BIOs of our own, and
  plaintext through ``SSL_read``/``SSL_write``, by direct calls into the
  OpenSSL that ``_ssl`` loaded (``zs_openssl.h``).  Once the connection is
  established OpenSSL receives from the socket itself, into its record
  buffer (read-ahead: one recv per readiness event, as the transport's own);
  encrypted output leaves from OpenSSL's buffer, or through the socket
  transport's C queue.  No Python object is made per record beyond what the
  application receives.
* ``"memorybio"``: the same layer calling the SSLObject's and MemoryBIOs'
  Python methods, for interpreters where the C engine's checks fail.

Handshakes and shutdowns always go through the SSLObject's methods, so their
exceptions are the stdlib's own."""

cimport cython
from cpython.buffer cimport PyBUF_READ, PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.ref cimport Py_XDECREF
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

import collections
import os
import socket
import sys
import warnings
from asyncio import constants, exceptions, protocols, sslproto, transports
from asyncio.log import logger

try:
    import ssl
    import _ssl
except ImportError:  # pragma: no cover - an interpreter without ssl
    ssl = None
    _ssl = None

from zerosock import _cpython_c
from zerosock._aio_transport_c cimport ReadTarget, TransportCore
from zerosock._buffers cimport zs_borrow_memory
from zerosock._shim cimport ZS_INVALID_SOCKET, zs_sock_t, zs_strerror

cdef extern from "Python.h":
    # Bytes filled in place: made unfinished, then cut to what was written.
    PyObject *zs_bytes_new "PyBytes_FromStringAndSize"(const char *, Py_ssize_t) except NULL
    char *zs_bytes_ptr "PyBytes_AS_STRING"(PyObject *)
    int zs_bytes_resize "_PyBytes_Resize"(PyObject **, Py_ssize_t) except -1

cdef extern from "zs_openssl.h":
    ctypedef struct ZS_SSL
    ctypedef struct ZS_SSL_CTX
    ctypedef struct ZS_BIO
    ctypedef struct zs_openssl_table:
        unsigned long version
        int (*SSL_read)(ZS_SSL *, void *, int)
        int (*SSL_write)(ZS_SSL *, const void *, int)
        int (*SSL_get_error)(const ZS_SSL *, int)
        int (*SSL_pending)(const ZS_SSL *)
        int (*SSL_has_pending)(const ZS_SSL *)
        ZS_BIO *(*SSL_get_rbio)(const ZS_SSL *)
        ZS_BIO *(*SSL_get_wbio)(const ZS_SSL *)
        ZS_SSL_CTX *(*SSL_get_SSL_CTX)(const ZS_SSL *)
        void *(*SSL_get_ex_data)(const ZS_SSL *, int)
        uint64_t (*SSL_CTX_get_options)(const ZS_SSL_CTX *)
        int (*SSL_CTX_get_verify_mode)(const ZS_SSL_CTX *)
        int (*BIO_read)(ZS_BIO *, void *, int)
        int (*BIO_write)(ZS_BIO *, const void *, int)
        unsigned long (*ERR_peek_last_error)()
        void (*ERR_clear_error)()
        void (*SSL_set0_wbio)(ZS_SSL *, ZS_BIO *)
        void (*SSL_set0_rbio)(ZS_SSL *, ZS_BIO *)
        long (*SSL_ctrl)(ZS_SSL *, int, long, void *)
        void (*SSL_set_default_read_buffer_len)(ZS_SSL *, size_t)
        const char *(*ERR_reason_error_string)(unsigned long)
    zs_openssl_table zs_ossl
    int ZS_SSL_ERROR_SSL, ZS_SSL_ERROR_WANT_READ, ZS_SSL_ERROR_WANT_WRITE
    int ZS_SSL_ERROR_SYSCALL, ZS_SSL_ERROR_ZERO_RETURN
    int ZS_SSL_CTRL_SET_READ_AHEAD
    int zs_openssl_load(const char *ssl_module_path, const char **missing)
    int zs_ossl_err_lib(unsigned long e)
    int zs_ossl_err_reason(unsigned long e)
    size_t zs_bio_pending(ZS_BIO *bio)
    ctypedef struct zs_outbuf:
        char *buf
        size_t len
        zs_sock_t fd
        int err
    ZS_BIO *zs_outbio_new(zs_outbuf **out)
    ctypedef struct zs_inbuf:
        const char *data
        size_t len
        zs_sock_t fd
        int eof
        int err
    ZS_BIO *zs_inbio_new(zs_inbuf **inp)
    char *zs_inbuf_room(zs_inbuf *inp, size_t want, size_t *room)
    int zs_inbuf_keep(zs_inbuf *inp, const char *shared, size_t size)
    void *zs_object_slot(object o, int slot)


cdef enum:
    IO_CHUNK = 256 * 1024  # ciphertext read per socket read, plaintext per data_received
    # Decrypted data up to this size is copied out of a stack buffer into its
    # bytes: cheaper than making the bytes first and shrinking it to fit.
    SMALL_READ = 2048
    # OpenSSL's record buffer when it receives from the socket itself: room
    # for several full records (16 KiB and their overhead) per recv.
    RECORD_BUFFER = 64 * 1024


# The states of the stdlib's SSLProtocol and of its application protocol.
cdef enum:
    UNWRAPPED
    DO_HANDSHAKE
    WRAPPED
    FLUSHING
    SHUTDOWN

cdef enum:
    APP_INIT
    APP_CON_MADE
    APP_EOF
    APP_CON_LOST

_STATE_NAMES = {UNWRAPPED: "UNWRAPPED", DO_HANDSHAKE: "DO_HANDSHAKE", WRAPPED: "WRAPPED",
                FLUSHING: "FLUSHING", SHUTDOWN: "SHUTDOWN"}

# Ciphertext from our socket transports lands in _rx, and OpenSSL reads it
# there; what a read leaves unread moves to the connection's own memory before
# the read returns, so one buffer serves every connection of the process.
# While a read_done() uses it, _rx is busy: OpenSSL may read it with the GIL
# released (_ssl's do_handshake() and unwrap() release it, and so may the
# application's callbacks), and a loop in another thread then receives into
# memory of its own connection instead.
cdef char _rx[IO_CHUNK]
cdef bint _rx_busy = False

cdef object _BufferedProtocol = protocols.BufferedProtocol
cdef int LOG_THRESHOLD = constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
cdef double SSL_HANDSHAKE_TIMEOUT = constants.SSL_HANDSHAKE_TIMEOUT
cdef double SSL_SHUTDOWN_TIMEOUT = getattr(constants, "SSL_SHUTDOWN_TIMEOUT", 30.0)
cdef Py_ssize_t HIGH_WATER_READ = getattr(constants, "FLOW_CONTROL_HIGH_WATER_SSL_READ", 256)
cdef Py_ssize_t HIGH_WATER_WRITE = getattr(constants, "FLOW_CONTROL_HIGH_WATER_SSL_WRITE", 512)

if ssl is not None:
    _AgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError)
    _SSLError = ssl.SSLError
    _CertificateError = ssl.CertificateError
    _MemoryBIO = ssl.MemoryBIO
    _SSLObject = ssl.SSLObject
    _SSLSocketType = _ssl._SSLSocket
    _LIB_NAMES = getattr(_ssl, "lib_codes_to_names", {})
    _REASON_NAMES = getattr(_ssl, "err_codes_to_names", {})


# -- which engine runs ----------------------------------------------------------------

cdef bint _c_engine_ready = False


# -- kernel TLS ------------------------------------------------------------------------

# OpenSSL's SSL_OP_ENABLE_KTLS (3.0+); the ssl module names it from 3.12 on.
_OP_ENABLE_KTLS = getattr(ssl, "OP_ENABLE_KTLS", 1 << 3) if ssl is not None else 0
_TCP_ULP = 31  # linux/tcp.h: attach an upper-layer protocol ("tls") to a socket


def _ktls_unavailable_reason():
    """Why this host cannot run kernel TLS, or None when it could: Linux with
    the ``tls`` module loaded and OpenSSL 3.0 or later."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if ssl is None or ssl.OPENSSL_VERSION_INFO < (3, 0):
        return "OpenSSL before 3.0"
    if not os.path.exists("/sys/module/tls"):
        return "the kernel has no tls module loaded"
    return None


def _ktls_state(sslcontext, transport):
    """Kernel TLS for one connection: "off" (the context did not ask for
    ``OP_ENABLE_KTLS``), "unavailable" (the host cannot), "refused" (the
    kernel would not attach TLS to the socket) or "attached".  Every state
    runs the records through the user-space engine: zerosock hands no keys
    to the kernel, so an attached socket passes the records through as TCP."""
    if not int(sslcontext.options) & _OP_ENABLE_KTLS:
        return "off"
    why = _ktls_unavailable_reason()
    if why is not None:
        logger.debug("zerosock.aio: no kernel TLS (%s)", why)
        return "unavailable"
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return "unavailable"
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_ULP, b"tls")
    except OSError as exc:
        logger.debug("zerosock.aio: the kernel refused TLS on %r (%s)", sock, exc)
        return "refused"
    return "attached"


cdef str _check_c_engine():
    """Why OpenSSL cannot be driven directly here, or None when it can.

    Resolves the functions from the library ``_ssl`` loaded, then checks on a
    probe context and session that the pointers read from CPython's objects
    are the ones OpenSSL reports (options, verify mode, SSL_CTX, BIOs and the
    session's owner), in two distinct settings each."""
    cdef const char *missing = NULL
    cdef ZS_SSL_CTX *ctx
    cdef ZS_SSL *s
    if ssl is None:
        return "no ssl module"
    path = getattr(_ssl, "__file__", None)
    if not path:
        return "_ssl is built into the interpreter"
    if zs_openssl_load(os.fsencode(path), &missing) != 0:
        return f"OpenSSL function not found: {(<bytes>missing).decode('utf-8', 'replace')}"
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx = <ZS_SSL_CTX *>zs_object_slot(probe, 0)
    for options, mode, expected_mode in (
            (ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION, ssl.CERT_REQUIRED, 3),
            (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE, ssl.CERT_OPTIONAL, 1)):
        probe.check_hostname = False
        probe.options = (int(probe.options) & ~int(ssl.OP_NO_TICKET | ssl.OP_CIPHER_SERVER_PREFERENCE)) | int(options)
        probe.verify_mode = mode
        if (zs_ossl.SSL_CTX_get_options(ctx) & 0xFFFFFFFF) != (int(probe.options) & 0xFFFFFFFF):
            return "SSLContext layout: options differ"
        if zs_ossl.SSL_CTX_get_verify_mode(ctx) != expected_mode:
            return "SSLContext layout: verify mode differs"
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = probe.wrap_bio(incoming, outgoing, server_side=False, server_hostname="probe.invalid")
    inner = getattr(sslobj, "_sslobj", None)
    if type(inner) is not _SSLSocketType:
        return "SSLObject layout: no _ssl._SSLSocket"
    s = <ZS_SSL *>zs_object_slot(inner, 1)
    if s == NULL or zs_ossl.SSL_get_SSL_CTX(s) != ctx:
        return "SSLObject layout: SSL differs"
    if zs_ossl.SSL_get_ex_data(s, 0) != <void *>inner:
        return "SSLObject layout: SSL is not the session's"
    if (zs_ossl.SSL_get_rbio(s) != <ZS_BIO *>zs_object_slot(incoming, 0)
            or zs_ossl.SSL_get_wbio(s) != <ZS_BIO *>zs_object_slot(outgoing, 0)):
        return "MemoryBIO layout: BIO differs"
    # A round trip through the BIO: what C writes, Python reads.
    if zs_ossl.BIO_write(<ZS_BIO *>zs_object_slot(outgoing, 0), b"zs", 2) != 2 or outgoing.read() != b"zs":
        return "MemoryBIO layout: BIO round trip failed"
    return None


cdef str _choose_engine():
    global _c_engine_ready
    wanted = os.environ.get("ZEROSOCK_TLS_ENGINE", "").strip().lower()
    if ssl is None or wanted == "stdlib" or sys.version_info < (3, 11):
        # Before 3.11 the stdlib's TLS protocol has other semantics: keep it.
        return "stdlib"
    if wanted == "memorybio":
        return "memorybio"
    why = _cpython_c.check("ssl_object_layout", lambda: _check_c_engine())
    if why is not None:
        logger.debug("zerosock.aio: TLS over ssl.MemoryBIO (%s)", why)
        return "memorybio"
    _c_engine_ready = True
    return "openssl"


TLS_ENGINE = _choose_engine()
cdef bint _use_c_engine = TLS_ENGINE == "openssl"


def _c_engine_available():
    """Whether this interpreter's OpenSSL passed the import checks."""
    return _c_engine_ready


def _force_engine(str name):
    """Run new TLS connections on engine ``name``; the previous one.  For tests."""
    global TLS_ENGINE, _use_c_engine
    if name not in ("openssl", "memorybio", "stdlib"):
        raise ValueError(f"unknown TLS engine {name!r}")
    if name == "openssl" and not _c_engine_ready:
        raise RuntimeError("the OpenSSL engine is not available here")
    previous = TLS_ENGINE
    TLS_ENGINE = name
    _use_c_engine = name == "openssl"
    return previous


cdef object _ssl_error(int code):
    """The exception _ssl raises for a failed SSL_read/SSL_write (its PySSL_SetError)."""
    cdef unsigned long e = zs_ossl.ERR_peek_last_error()
    cdef const char *text
    lib = zs_ossl_err_lib(e)
    reason = zs_ossl_err_reason(e)
    zs_ossl.ERR_clear_error()
    if code == ZS_SSL_ERROR_ZERO_RETURN:
        return ssl.SSLZeroReturnError(code, "TLS/SSL connection has been closed (EOF)")
    if e == 0:
        return ssl.SSLError(code, "A failure in the SSL library occurred")
    lib_name = _LIB_NAMES.get(lib)
    reason_name = _REASON_NAMES.get((lib, reason))
    text = zs_ossl.ERR_reason_error_string(e)
    message = text.decode("utf-8", "replace") if text != NULL else "unknown error"
    cls = ssl.SSLError
    if reason_name == "UNEXPECTED_EOF_WHILE_READING":
        cls, code, message = ssl.SSLEOFError, ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol"
    elif reason_name == "CERTIFICATE_VERIFY_FAILED":
        cls = ssl.SSLCertVerificationError
    if lib_name and reason_name:
        message = f"[{lib_name}: {reason_name}] {message}"
    elif lib_name:
        message = f"[{lib_name}] {message}"
    exc = cls(code, message)
    exc.library = lib_name
    exc.reason = reason_name
    return exc


def _flow_limits(high, low, kb):
    """The stdlib's add_flowcontrol_defaults: limits in bytes from a default in KiB."""
    if high is None:
        high = kb * 1024 if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


# -- the protocol on the socket transport --------------------------------------------

cdef class TLSProtocolCore(ReadTarget):
    """The state and the record path of one :class:`TLSProtocol`."""

    cdef object _loop
    cdef readonly object _app_protocol
    cdef readonly object _app_transport
    cdef bint _app_transport_created
    cdef readonly object _transport  # the socket transport under us
    cdef TransportCore _core         # its C core, when it is one of ours
    cdef readonly object _sslcontext
    cdef readonly object _sslobj
    cdef object _incoming
    cdef object _outgoing
    cdef ZS_SSL *_ssl                # the SSLObject's session and BIOs (C engine)
    cdef ZS_BIO *_rbio
    cdef ZS_BIO *_wbio
    cdef zs_outbuf *_out             # the output BIO's buffer (C engine; owned by the BIO)
    cdef zs_inbuf *_in               # the input BIO's ciphertext (C engine; owned by the BIO)
    cdef bint _c
    cdef object _waiter
    cdef readonly object _extra
    cdef object _server_hostname
    cdef bint _server_side
    cdef int _tls_state
    cdef int _app_state
    cdef object _write_backlog
    cdef Py_ssize_t _write_buffer_size
    cdef int _conn_lost
    cdef bint _ssl_writing_paused
    cdef readonly bint _app_reading_paused  # (read by CPython's own tests, as the stdlib's)
    cdef bint _ssl_reading_paused
    cdef bint _eof_received
    cdef bint _app_writing_paused
    cdef bint _app_is_buffer
    cdef bint _more                  # the last read filled the application's buffer
    cdef object _app_get_buffer
    cdef object _app_buffer_updated
    cdef Py_ssize_t _incoming_high_water
    cdef Py_ssize_t _incoming_low_water
    cdef Py_ssize_t _outgoing_high_water
    cdef Py_ssize_t _outgoing_low_water
    cdef double _ssl_handshake_timeout
    cdef double _ssl_shutdown_timeout
    cdef object _handshake_timeout_handle
    cdef object _shutdown_timeout_handle
    cdef object _handshake_start_time
    cdef readonly str _ktls          # see _ktls_state()
    cdef char *_area                 # where read_area() last said to receive
    cdef char *_own_rx               # the engine-less read's area while _rx is busy
    cdef object _lent                # what get_buffer() lends (a bytearray), made on first need
    cdef object _lent_view           # ... as a view, whose slices write through
    cdef object __weakref__

    def __init__(self, loop, app_protocol, sslcontext, waiter, server_side=False,
                 server_hostname=None, call_connection_made=True,
                 ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        if ssl is None:
            raise RuntimeError("stdlib ssl module not available")
        if ssl_handshake_timeout is None:
            ssl_handshake_timeout = SSL_HANDSHAKE_TIMEOUT
        elif ssl_handshake_timeout <= 0:
            raise ValueError(f"ssl_handshake_timeout should be a positive number, "
                             f"got {ssl_handshake_timeout}")
        if ssl_shutdown_timeout is None:
            ssl_shutdown_timeout = SSL_SHUTDOWN_TIMEOUT
        elif ssl_shutdown_timeout <= 0:
            raise ValueError(f"ssl_shutdown_timeout should be a positive number, "
                             f"got {ssl_shutdown_timeout}")
        if not sslcontext:
            sslcontext = sslproto._create_transport_context(server_side, server_hostname)
        self._server_side = server_side
        self._server_hostname = server_hostname if server_hostname and not server_side else None
        self._sslcontext = sslcontext
        self._extra = {"sslcontext": sslcontext}
        self._ktls = "off"
        self._write_backlog = collections.deque()
        self._waiter = waiter
        self._loop = loop
        self._set_app_protocol(app_protocol)
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._incoming = _MemoryBIO()
        self._outgoing = _MemoryBIO()
        self._tls_state = UNWRAPPED
        self._app_state = APP_INIT if call_connection_made else APP_CON_MADE
        self._sslobj = sslcontext.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                           server_hostname=self._server_hostname)
        self._c = _use_c_engine and self._bind_session()
        self._incoming_high_water, self._incoming_low_water = _flow_limits(
            None, None, HIGH_WATER_READ)
        self._outgoing_high_water, self._outgoing_low_water = _flow_limits(
            None, None, HIGH_WATER_WRITE)
        self._get_app_transport()

    def __dealloc__(self):
        PyMem_RawFree(self._own_rx)

    cdef bint _bind_session(self) except -1:
        """Reach the session's SSL and BIOs, if the SSLObject is the stdlib's kind."""
        inner = getattr(self._sslobj, "_sslobj", None)
        if (type(inner) is not _SSLSocketType or type(self._incoming) is not _MemoryBIO
                or type(self._outgoing) is not _MemoryBIO):
            return False
        self._ssl = <ZS_SSL *>zs_object_slot(inner, 1)
        self._rbio = <ZS_BIO *>zs_object_slot(self._incoming, 0)
        self._wbio = <ZS_BIO *>zs_object_slot(self._outgoing, 0)
        if (zs_ossl.SSL_get_rbio(self._ssl) != self._rbio
                or zs_ossl.SSL_get_wbio(self._ssl) != self._wbio):
            return False
        bio = zs_outbio_new(&self._out)
        if bio == NULL:
            return False
        # The session owns the BIOs from here on; the MemoryBIOs keep their own.
        zs_ossl.SSL_set0_wbio(self._ssl, bio)
        self._wbio = bio
        bio = zs_inbio_new(&self._in)
        if bio == NULL:
            raise MemoryError()
        zs_ossl.SSL_set0_rbio(self._ssl, bio)
        self._rbio = bio
        # Reading ahead, the session asks its input for whole buffers rather
        # than a header and then a body: what lets read_socket() receive
        # straight into OpenSSL's record buffer with one recv.  Set before the
        # handshake: OpenSSL 3.2+ fixes the buffer's size with its record layer.
        zs_ossl.SSL_ctrl(self._ssl, ZS_SSL_CTRL_SET_READ_AHEAD, 1, NULL)
        zs_ossl.SSL_set_default_read_buffer_len(self._ssl, RECORD_BUFFER)
        return True

    # -- the attributes the stdlib's SSLProtocol has ----------------------------

    @property
    def _state(self):
        return _STATE_NAMES[self._tls_state]

    @property
    def _engine(self):
        return "openssl" if self._c else "memorybio"

    def __repr__(self):
        return f"<TLSProtocol {_STATE_NAMES[self._tls_state]} engine={self._engine}>"

    def _set_app_protocol(self, app_protocol):
        self._app_protocol = app_protocol
        if hasattr(app_protocol, "get_buffer") and isinstance(app_protocol, _BufferedProtocol):
            self._app_get_buffer = app_protocol.get_buffer
            self._app_buffer_updated = app_protocol.buffer_updated
            self._app_is_buffer = True
        else:
            self._app_get_buffer = self._app_buffer_updated = None
            self._app_is_buffer = False

    cdef _wakeup_waiter(self, exc=None):
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if not waiter.cancelled():
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(None)

    def _get_app_transport(self):
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError("Creating _SSLProtocolTransport twice")
            self._app_transport = SSLProtocolTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport

    # -- the protocol the socket transport sees -------------------------------------

    def connection_made(self, transport):
        self._transport = transport
        core = getattr(transport, "_core", None)
        self._core = core if isinstance(core, TransportCore) else None
        self._ktls = _ktls_state(self._sslcontext, transport)
        self._start_handshake()

    def connection_lost(self, exc):
        self._write_backlog.clear()
        self._write_buffer_size = 0
        self._outgoing.read()
        self._conn_lost += 1
        if self._app_transport is not None:
            self._app_transport._closed = True
        if self._tls_state != DO_HANDSHAKE:
            if self._app_state == APP_CON_MADE or self._app_state == APP_EOF:
                self._app_state = APP_CON_LOST
                self._loop.call_soon(self._app_protocol.connection_lost, exc)
        self._tls_state = UNWRAPPED
        self._transport = None
        self._core = None
        self._app_transport = None
        self._app_protocol = None
        self._app_get_buffer = self._app_buffer_updated = None
        self._wakeup_waiter(exc)
        if self._shutdown_timeout_handle is not None:
            self._shutdown_timeout_handle.cancel()
            self._shutdown_timeout_handle = None
        if self._handshake_timeout_handle is not None:
            self._handshake_timeout_handle.cancel()
            self._handshake_timeout_handle = None

    cdef char *read_area(self, Py_ssize_t *size) except NULL:
        """Where our socket transport receives: the shared buffer, or after
        the ciphertext still unread when there is some, or the connection's
        own memory while another thread's read uses the shared buffer."""
        cdef size_t room = 0
        cdef char *area
        if not _rx_busy and (not self._c or self._in.len == 0):
            self._area = _rx
            size[0] = IO_CHUNK
            return _rx
        if self._c:
            area = zs_inbuf_room(self._in, IO_CHUNK, &room)
            if area == NULL:
                raise MemoryError()
            size[0] = <Py_ssize_t>room
        else:
            if self._own_rx == NULL:
                self._own_rx = <char *>PyMem_RawMalloc(IO_CHUNK)
                if self._own_rx == NULL:
                    raise MemoryError()
            area = self._own_rx
            size[0] = IO_CHUNK
        self._area = area
        return area

    cdef int read_done(self, Py_ssize_t nbytes) except -1:
        global _rx_busy
        if not self._c:
            # Copied into the MemoryBIO at once, with the GIL held.
            self._incoming.write(PyMemoryView_FromMemory(self._area, nbytes, PyBUF_READ))
            return self._on_ciphertext()
        if self._area != _rx:
            self._in.len += <size_t>nbytes  # after the ciphertext kept in our memory
            return self._on_ciphertext()
        self._in.data = _rx
        self._in.len = <size_t>nbytes
        _rx_busy = True
        try:
            self._on_ciphertext()
        finally:
            _rx_busy = False
            if zs_inbuf_keep(self._in, _rx, IO_CHUNK) != 0:
                self._in.len = 0  # never left pointing into the shared buffer
                raise MemoryError()
        return 0

    cdef int read_socket(self) except -1:
        """Application data received by OpenSSL itself, into its record
        buffer, and decrypted there: no ciphertext copy.  Only while the
        connection is established and the application reads; the handshake,
        the shutdown and a paused application take the transport's read."""
        cdef TransportCore core = self._core  # held: the application's code runs
        cdef int err
        if (not self._c or core is None or self._tls_state != WRAPPED
                or self._app_reading_paused):
            return 0
        self._in.fd = core._fd
        try:
            self._do_read()
        finally:
            consumed = self._in.fd == ZS_INVALID_SOCKET
            self._in.fd = ZS_INVALID_SOCKET
        if not consumed:
            return 0  # nothing asked for the socket: the transport reads it
        err = self._in.err
        self._in.err = 0
        if self._in.eof:
            self._in.eof = 0
            if not core._conn_lost:
                core._on_eof()
        elif err and not core._conn_lost:
            core._fatal_error(OSError(err, zs_strerror(err).decode("utf-8", "replace")),
                              "Fatal read error on socket transport")
        return 1

    def get_buffer(self, n):
        # The connection's own: a lender (a TLS layer under this one) may fill
        # it with the GIL released, while another thread's lender fills its own.
        if self._lent is None:
            self._lent = bytearray(IO_CHUNK)
            self._lent_view = memoryview(self._lent)
        return self._lent_view

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef size_t room = 0
        cdef char *area
        if self._lent is None or nbytes < 0 or nbytes > IO_CHUNK:
            raise ValueError("buffer_updated() beyond the buffer get_buffer() gave")
        if self._c:
            # Copied: the lender may decrypt its next record into the buffer while we read.
            area = zs_inbuf_room(self._in, <size_t>nbytes, &room)
            if area == NULL:
                raise MemoryError()
            memcpy(area, PyByteArray_AS_STRING(self._lent), <size_t>nbytes)
            self._in.len += <size_t>nbytes
        else:
            self._incoming.write(PyMemoryView_FromMemory(PyByteArray_AS_STRING(self._lent),
                                                         nbytes, PyBUF_READ))
        self._on_ciphertext()

    cdef int _on_ciphertext(self) except -1:
        if self._tls_state == WRAPPED:
            self._do_read()
        elif self._tls_state == DO_HANDSHAKE:
            self._do_handshake()
        elif self._tls_state == FLUSHING:
            self._do_flush()
        elif self._tls_state == SHUTDOWN:
            self._do_shutdown()
        return 0

    def eof_received(self):
        self._eof_received = True
        try:
            if self._loop.get_debug():
                logger.debug("%r received EOF", self)
            if self._tls_state == DO_HANDSHAKE:
                self._on_handshake_complete(ConnectionResetError)
            elif self._tls_state == WRAPPED:
                self._tls_state = FLUSHING
                if self._app_reading_paused:
                    return True
                self._do_flush()
            elif self._tls_state == FLUSHING:
                self._do_write()
                self._tls_state = SHUTDOWN
                self._do_shutdown()
            elif self._tls_state == SHUTDOWN:
                self._do_shutdown()
        except Exception:
            self._transport.close()
            raise

    def pause_writing(self):
        assert not self._ssl_writing_paused
        self._ssl_writing_paused = True

    def resume_writing(self):
        assert self._ssl_writing_paused
        self._ssl_writing_paused = False
        self._process_outgoing()

    def _get_extra_info(self, name, default=None):
        if name in self._extra:
            return self._extra[name]
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        return default

    # -- handshake -------------------------------------------------------------------

    cdef _start_handshake(self):
        if self._loop.get_debug():
            logger.debug("%r starts SSL handshake", self)
            self._handshake_start_time = self._loop.time()
        else:
            self._handshake_start_time = None
        if self._tls_state != UNWRAPPED:
            raise RuntimeError(f"cannot switch state from {_STATE_NAMES[self._tls_state]} to DO_HANDSHAKE")
        self._tls_state = DO_HANDSHAKE
        self._handshake_timeout_handle = self._loop.call_later(
            self._ssl_handshake_timeout, self._check_handshake_timeout)
        self._do_handshake()

    def _check_handshake_timeout(self):
        if self._tls_state == DO_HANDSHAKE:
            timeout = self._ssl_handshake_timeout
            if timeout == int(timeout):
                timeout = int(timeout)  # the stdlib prints the number it was given
            msg = (f"SSL handshake is taking longer than {timeout} seconds: "
                   f"aborting the connection")
            self._fatal_error(ConnectionAbortedError(msg))

    cdef _do_handshake(self):
        try:
            self._sslobj.do_handshake()
        except _AgainErrors:
            self._process_outgoing()
        except _SSLError as exc:
            self._on_handshake_complete(exc)
        else:
            self._on_handshake_complete(None)

    def _on_handshake_complete(self, handshake_exc):
        if self._handshake_timeout_handle is not None:
            self._handshake_timeout_handle.cancel()
            self._handshake_timeout_handle = None
        sslobj = self._sslobj
        try:
            if handshake_exc is not None:
                raise handshake_exc
            if self._tls_state != DO_HANDSHAKE:
                raise RuntimeError(f"cannot switch state from {_STATE_NAMES[self._tls_state]} to WRAPPED")
            self._tls_state = WRAPPED
            peercert = sslobj.getpeercert()
        except Exception as exc:
            self._tls_state = UNWRAPPED
            if isinstance(exc, _CertificateError):
                msg = "SSL handshake failed on verifying the certificate"
            else:
                msg = "SSL handshake failed"
            self._fatal_error(exc, msg)
            self._wakeup_waiter(exc)
            return
        if self._loop.get_debug():
            dt = self._loop.time() - self._handshake_start_time
            logger.debug("%r: SSL handshake took %.1f ms", self, dt * 1e3)
        self._extra.update(peercert=peercert, cipher=sslobj.cipher(),
                           compression=sslobj.compression(), ssl_object=sslobj)
        if self._app_state == APP_INIT:
            self._app_state = APP_CON_MADE
            self._app_protocol.connection_made(self._get_app_transport())
        self._wakeup_waiter()
        self._do_read()

    # -- shutdown ----------------------------------------------------------------------

    def _start_shutdown(self):
        if self._tls_state == FLUSHING or self._tls_state == SHUTDOWN or self._tls_state == UNWRAPPED:
            return
        if self._app_transport is not None:
            self._app_transport._closed = True
        if self._tls_state == DO_HANDSHAKE:
            self._abort()
        else:
            self._tls_state = FLUSHING
            self._shutdown_timeout_handle = self._loop.call_later(
                self._ssl_shutdown_timeout, self._check_shutdown_timeout)
            self._do_flush()

    def _check_shutdown_timeout(self):
        if self._tls_state == FLUSHING or self._tls_state == SHUTDOWN:
            self._transport._force_close(exceptions.TimeoutError("SSL shutdown timed out"))

    cdef _do_flush(self):
        # All plaintext already received reaches the application before the
        # shutdown (the stdlib reads one buffer's worth and drops the rest).
        self._more = True
        while self._more and self._tls_state == FLUSHING and not self._app_reading_paused:
            self._more = False
            self._do_read()
        if self._tls_state != FLUSHING:
            if self._tls_state == SHUTDOWN:
                return self._do_shutdown()
            return
        self._tls_state = SHUTDOWN
        self._do_shutdown()

    cdef _do_shutdown(self):
        try:
            if not self._eof_received:
                self._sslobj.unwrap()
        except _AgainErrors:
            self._process_outgoing()
        except _SSLError as exc:
            self._on_shutdown_complete(exc)
        else:
            self._process_outgoing()
            self._call_eof_received()
            self._on_shutdown_complete(None)

    cdef _on_shutdown_complete(self, shutdown_exc):
        if self._shutdown_timeout_handle is not None:
            self._shutdown_timeout_handle.cancel()
            self._shutdown_timeout_handle = None
        if shutdown_exc:
            self._fatal_error(shutdown_exc)
        else:
            self._loop.call_soon(self._transport.close)

    def _abort(self, exc=None):
        self._tls_state = UNWRAPPED
        if self._transport is not None:
            if exc is None:
                self._transport.abort()
            else:
                self._transport._force_close(exc)

    # -- outgoing ------------------------------------------------------------------------

    cdef int _write_one(self, object data) except -1:
        """The application transport's write(): encrypt now when nothing waits."""
        cdef Py_buffer view
        cdef char *ptr
        cdef Py_ssize_t length, total
        cdef int n = 0
        if self._tls_state != WRAPPED or not self._c or self._write_backlog:
            self._write_appdata((data,))
            return 0
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        ptr = <char *>view.buf
        length = total = view.len
        self._send_at_once()
        try:
            while length > 0:
                n = zs_ossl.SSL_write(self._ssl, ptr, <int>min(length, 1 << 30))
                if n <= 0:
                    break
                ptr += n
                length -= n
        finally:
            PyBuffer_Release(&view)
            self._out.fd = ZS_INVALID_SOCKET
        if self._out.err:
            self._report_send_error()
        if length > 0:
            # Not all went (a handshake message is due first): the rest waits, as in the stdlib.
            self._check_write_error(n)
            rest = memoryview(data).cast("B")[total - length:]
            self._write_backlog.append(rest)
            self._write_buffer_size += length
        self._process_outgoing()
        return 0

    cdef inline void _send_at_once(self):
        """Let the records SSL_write makes leave from OpenSSL's buffer as they
        are made, when the socket transport has nothing queued before them."""
        cdef TransportCore core = self._core
        if (core is not None and self._out.len == 0 and core._buffer_size == 0
                and not core._conn_lost and not self._ssl_writing_paused):
            self._out.fd = core._fd

    cdef int _report_send_error(self) except -1:
        cdef int err = self._out.err
        cdef TransportCore core = self._core
        self._out.err = 0
        if core is not None:
            # As the socket transport's own write() reports it.
            core._fatal_error(OSError(err, zs_strerror(err).decode("utf-8", "replace")),
                              "Fatal write error on socket transport")
        return 0

    cdef int _check_write_error(self, int ret) except -1:
        cdef int code = zs_ossl.SSL_get_error(self._ssl, ret)
        if code == ZS_SSL_ERROR_WANT_READ or code == ZS_SSL_ERROR_WANT_WRITE:
            return 0
        if code == ZS_SSL_ERROR_SYSCALL:
            zs_ossl.ERR_clear_error()
            return 0
        raise _ssl_error(code)

    def _write_appdata(self, list_of_data):
        if self._tls_state == FLUSHING or self._tls_state == SHUTDOWN or self._tls_state == UNWRAPPED:
            if self._conn_lost >= LOG_THRESHOLD:
                logger.warning("SSL connection is closed")
            self._conn_lost += 1
            return
        for data in list_of_data:
            self._write_backlog.append(data)
            self._write_buffer_size += len(data)
        try:
            if self._tls_state == WRAPPED:
                self._do_write()
        except Exception as ex:
            self._fatal_error(ex, "Fatal error on SSL protocol")

    cdef _do_write(self):
        cdef Py_buffer view
        cdef int n
        cdef Py_ssize_t data_len
        backlog = self._write_backlog
        if not self._c:
            try:
                while backlog:
                    data = backlog[0]
                    count = self._sslobj.write(data)
                    data_len = len(data)
                    if count < data_len:
                        backlog[0] = data[count:]
                        self._write_buffer_size -= count
                    else:
                        backlog.popleft()
                        self._write_buffer_size -= data_len
            except _AgainErrors:
                pass
            self._process_outgoing()
            return
        while backlog:
            data = backlog[0]
            data_len = len(data)
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            self._send_at_once()
            try:
                n = zs_ossl.SSL_write(self._ssl, view.buf, <int>min(view.len, 1 << 30)) if view.len else 0
            finally:
                PyBuffer_Release(&view)
                self._out.fd = ZS_INVALID_SOCKET
            if self._out.err:
                self._report_send_error()
            if n <= 0 and view.len:
                self._check_write_error(n)
                break
            if n < view.len:
                # Counted as the stdlib counts: len() of what is left.
                rest = memoryview(data).cast("B")[n:]
                backlog[0] = rest
                self._write_buffer_size -= data_len - len(rest)
            else:
                backlog.popleft()
                self._write_buffer_size -= data_len
        self._process_outgoing()

    cdef int _process_outgoing(self) except -1:
        cdef Py_ssize_t n
        cdef TransportCore core = self._core  # held: a write may run Python code
        if not self._ssl_writing_paused:
            if self._c:
                n = <Py_ssize_t>self._out.len
                if n:
                    # Emptied first: records a write() makes from Python code run
                    # by the send (an exception handler) start a new batch.  No
                    # Python runs before the send is done with the buffer.
                    self._out.len = 0
                    if core is not None:
                        core.write_mem(self._out.buf, n)
                    else:
                        self._transport.write(PyBytes_FromStringAndSize(self._out.buf, n))
                return self._control_app_writing_at(<Py_ssize_t>self._out.len + self._write_buffer_size)
            else:
                data = self._outgoing.read()
                if len(data):
                    self._transport.write(data)
        self._control_app_writing()
        return 0

    # -- incoming --------------------------------------------------------------------------

    def _do_read_soon(self):
        self._do_read()

    cdef _do_read(self):
        if self._tls_state != WRAPPED and self._tls_state != FLUSHING:
            return
        try:
            if not self._app_reading_paused:
                if self._app_is_buffer:
                    self._do_read_buffered()
                else:
                    self._do_read_copied()
                if self._write_backlog:
                    self._do_write()
                else:
                    self._process_outgoing()
            self._control_ssl_reading()
        except Exception as ex:
            self._fatal_error(ex, "Fatal error on SSL protocol")

    cdef Py_ssize_t _read_plain(self, char *ptr, Py_ssize_t length) except -2:
        """Decrypt into ptr: bytes read, 0 at close_notify, -1 when more ciphertext is needed."""
        cdef int n = zs_ossl.SSL_read(self._ssl, ptr, <int>min(length, 1 << 30))
        cdef int code
        if n > 0:
            return n
        code = zs_ossl.SSL_get_error(self._ssl, n)
        # SSL_get_error reports an empty error queue as WANT_*/ZERO_RETURN: nothing to clear.
        if code == ZS_SSL_ERROR_WANT_READ or code == ZS_SSL_ERROR_WANT_WRITE:
            return -1
        if code == ZS_SSL_ERROR_ZERO_RETURN:
            return 0
        if code == ZS_SSL_ERROR_SYSCALL:  # the stdlib retries these too
            zs_ossl.ERR_clear_error()
            return -1
        raise _ssl_error(code)

    cdef inline bint _drained(self):
        """No ciphertext left in the BIO nor in the session's record buffer
        (SSL_has_pending counts what it read ahead): a further SSL_read would
        only say WANT_READ, or receive from the socket once more."""
        return self._in.len == 0 and not zs_ossl.SSL_has_pending(self._ssl)

    cdef _do_read_buffered(self):
        cdef Py_buffer view
        cdef Py_ssize_t offset = 0, wants, count = 1
        # From the socket, the size is unknown until OpenSSL has received (-1).
        buf = self._app_get_buffer(-1 if self._c and self._in.fd != ZS_INVALID_SOCKET
                                   else self._get_read_buffer_size())
        if not self._c:
            return self._do_read_buffered_py(buf)
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        try:
            wants = view.len
            while offset < wants:
                count = self._read_plain(<char *>view.buf + offset, wants - offset)
                if count <= 0:
                    break
                offset += count
                if offset < wants and self._drained():
                    count = -1
                    break
            else:
                if wants > 0:
                    self._more = True
                    self._loop.call_soon(self._do_read_soon)
        finally:
            PyBuffer_Release(&view)
        if offset > 0:
            self._app_buffer_updated(offset)
        if count == 0:  # close_notify
            self._call_eof_received()
            self._start_shutdown()

    cdef _do_read_buffered_py(self, buf):
        buf = memoryview(buf)  # slices that write through (a bytearray's would copy)
        offset = 0
        count = 1
        wants = len(buf)
        try:
            count = self._sslobj.read(wants, buf)
            if count > 0:
                offset = count
                while offset < wants:
                    count = self._sslobj.read(wants - offset, buf[offset:])
                    if count > 0:
                        offset += count
                    else:
                        break
                else:
                    self._more = True
                    self._loop.call_soon(self._do_read_soon)
        except _AgainErrors:
            pass
        if offset > 0:
            self._app_buffer_updated(offset)
        if not count:
            self._call_eof_received()
            self._start_shutdown()

    cdef _do_read_copied(self):
        cdef Py_ssize_t filled = 0, size, count = 1
        cdef PyObject *raw = NULL  # the bytes being filled: ours alone until delivered
        # On the stack: OpenSSL's callbacks into _ssl (a keylog or message
        # callback) may release the GIL while another thread reads.
        cdef char plain[SMALL_READ]
        if not self._c:
            return self._do_read_copied_py()
        # Plaintext is shorter than the ciphertext it comes from (plus what
        # the session decrypted already): a bound for one bytes object.
        size = <Py_ssize_t>self._in.len + zs_ossl.SSL_pending(self._ssl)
        data = None
        try:
            if size <= SMALL_READ:
                count = self._read_plain(plain, SMALL_READ)
                if count > 0:
                    if count < SMALL_READ and self._drained():
                        data = PyBytes_FromStringAndSize(plain, count)
                        count = -1
                    else:
                        # The rest of this record is decrypted and pending
                        # (ciphertext OpenSSL received itself is counted nowhere).
                        size = count + <Py_ssize_t>self._in.len + zs_ossl.SSL_pending(self._ssl)
                        raw = zs_bytes_new(NULL, size)
                        memcpy(zs_bytes_ptr(raw), plain, <size_t>count)
                        filled = count
            else:
                raw = zs_bytes_new(NULL, size)
            if raw != NULL:
                # Decrypted in place; a record begun before this read, or more
                # records in OpenSSL's buffer, make the bound short: the bytes grows.
                while True:
                    if filled == size:
                        size = (filled + <Py_ssize_t>self._in.len
                                + zs_ossl.SSL_pending(self._ssl) + max(<Py_ssize_t>SMALL_READ, filled))
                        zs_bytes_resize(&raw, size)
                    count = self._read_plain(zs_bytes_ptr(raw) + filled, size - filled)
                    if count <= 0:
                        break
                    filled += count
                    if self._drained():
                        count = -1
                        break
                if filled:
                    if filled < size:
                        zs_bytes_resize(&raw, filled)
                    data = <object>raw
        finally:
            Py_XDECREF(raw)
        if data is not None:
            self._app_protocol.data_received(data)
        if count == 0:
            self._call_eof_received()
            self._start_shutdown()

    cdef _do_read_copied_py(self):
        chunk = b"1"
        chunks = []
        try:
            while True:
                chunk = self._sslobj.read(IO_CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
        except _AgainErrors:
            pass
        if len(chunks) == 1:
            self._app_protocol.data_received(chunks[0])
        elif chunks:
            self._app_protocol.data_received(b"".join(chunks))
        if not chunk:
            self._call_eof_received()
            self._start_shutdown()

    cdef _call_eof_received(self):
        try:
            if self._app_state == APP_CON_MADE:
                self._app_state = APP_EOF
                keep_open = self._app_protocol.eof_received()
                if keep_open:
                    logger.warning("returning true from eof_received() has no effect when using ssl")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as ex:
            self._fatal_error(ex, "Error calling eof_received()")

    # -- flow control ------------------------------------------------------------------------

    cdef Py_ssize_t _get_write_buffer_size(self) except -1:
        cdef Py_ssize_t pending = (<Py_ssize_t>self._out.len if self._c
                                   else self._outgoing.pending)
        return pending + self._write_buffer_size

    cdef Py_ssize_t _get_read_buffer_size(self) except -1:
        return <Py_ssize_t>self._in.len if self._c else self._incoming.pending

    cdef int _control_app_writing(self) except -1:
        return self._control_app_writing_at(self._get_write_buffer_size())

    cdef int _control_app_writing_at(self, Py_ssize_t size) except -1:
        if size >= self._outgoing_high_water and not self._app_writing_paused:
            self._app_writing_paused = True
            self._tell_app("pause_writing")
        elif size <= self._outgoing_low_water and self._app_writing_paused:
            self._app_writing_paused = False
            self._tell_app("resume_writing")
        return 0

    cdef _tell_app(self, str method):
        try:
            getattr(self._app_protocol, method)()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": f"protocol.{method}() failed",
                "exception": exc,
                "transport": self._app_transport,
                "protocol": self,
            })

    def _set_write_buffer_limits(self, high=None, low=None):
        self._outgoing_high_water, self._outgoing_low_water = _flow_limits(
            high, low, HIGH_WATER_WRITE)

    def _set_read_buffer_limits(self, high=None, low=None):
        self._incoming_high_water, self._incoming_low_water = _flow_limits(
            high, low, HIGH_WATER_READ)

    cdef int _control_ssl_reading(self) except -1:
        cdef Py_ssize_t size = self._get_read_buffer_size()
        if size >= self._incoming_high_water and not self._ssl_reading_paused:
            self._ssl_reading_paused = True
            self._transport.pause_reading()
        elif size <= self._incoming_low_water and self._ssl_reading_paused:
            self._ssl_reading_paused = False
            self._transport.resume_reading()
        return 0

    def _pause_reading(self):
        self._app_reading_paused = True

    def _resume_reading(self):
        if self._app_reading_paused:
            self._app_reading_paused = False
            self._loop.call_soon(self._resume)

    def _resume(self):
        if self._tls_state == WRAPPED:
            self._do_read()
        elif self._tls_state == FLUSHING:
            self._do_flush()
        elif self._tls_state == SHUTDOWN:
            self._do_shutdown()

    def _fatal_error(self, exc, message="Fatal error on transport"):
        if self._transport is not None:
            self._transport._force_close(exc)
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        elif not isinstance(exc, exceptions.CancelledError):
            self._loop.call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self._transport,
                "protocol": self,
            })


class TLSProtocol(TLSProtocolCore, protocols.BufferedProtocol):
    """The TLS layer on a socket transport (the stdlib's ``sslproto.SSLProtocol``)."""

    __slots__ = ()
    max_size = IO_CHUNK


# -- the transport the application sees ------------------------------------------------------

class SSLProtocolTransport(transports._FlowControlMixin, transports.Transport):
    """The transport a TLS connection's protocol writes to (the stdlib's
    ``_SSLProtocolTransport``, and named like it: code looks for "ssl" in
    the name): plaintext in, records out."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.FALLBACK

    def __init__(self, loop, ssl_protocol):
        self._loop = loop
        self._ssl_protocol = ssl_protocol
        self._closed = False

    def get_extra_info(self, name, default=None):
        return self._ssl_protocol._get_extra_info(name, default)

    def set_protocol(self, protocol):
        self._ssl_protocol._set_app_protocol(protocol)

    def get_protocol(self):
        return self._ssl_protocol._app_protocol

    def is_closing(self):
        return self._closed

    def close(self):
        if not self._closed:
            self._closed = True
            self._ssl_protocol._start_shutdown()
        else:
            self._ssl_protocol = None

    def __del__(self, _warnings=warnings):
        if not self._closed:
            self._closed = True
            _warnings.warn(f"unclosed transport {self!r}", ResourceWarning)

    def is_reading(self):
        return not (<TLSProtocolCore>self._ssl_protocol)._app_reading_paused

    def pause_reading(self):
        self._ssl_protocol._pause_reading()

    def resume_reading(self):
        self._ssl_protocol._resume_reading()

    def set_write_buffer_limits(self, high=None, low=None):
        self._ssl_protocol._set_write_buffer_limits(high, low)
        (<TLSProtocolCore>self._ssl_protocol)._control_app_writing()

    def get_write_buffer_limits(self):
        cdef TLSProtocolCore p = self._ssl_protocol
        return (p._outgoing_low_water, p._outgoing_high_water)

    def get_write_buffer_size(self):
        return (<TLSProtocolCore>self._ssl_protocol)._get_write_buffer_size()

    def set_read_buffer_limits(self, high=None, low=None):
        self._ssl_protocol._set_read_buffer_limits(high, low)
        (<TLSProtocolCore>self._ssl_protocol)._control_ssl_reading()

    def get_read_buffer_limits(self):
        cdef TLSProtocolCore p = self._ssl_protocol
        return (p._incoming_low_water, p._incoming_high_water)

    def get_read_buffer_size(self):
        return (<TLSProtocolCore>self._ssl_protocol)._get_read_buffer_size()

    @property
    def _protocol_paused(self):
        # What the loop's sendfile fallback checks.
        return (<TLSProtocolCore>self._ssl_protocol)._app_writing_paused

    def write(self, data):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, "
                            f"got {type(data).__name__}")
        if not data:
            return
        (<TLSProtocolCore>self._ssl_protocol)._write_one(data)

    def writelines(self, list_of_data):
        self._ssl_protocol._write_appdata(list_of_data)

    def write_eof(self):
        raise NotImplementedError

    def can_write_eof(self):
        return False

    def abort(self):
        self._closed = True
        if self._ssl_protocol is not None:
            self._ssl_protocol._abort()

    def _force_close(self, exc):
        self._closed = True
        self._ssl_protocol._abort(exc)

    def _test__append_write_backlog(self, data):
        cdef TLSProtocolCore p = self._ssl_protocol
        p._write_backlog.append(data)
        p._write_buffer_size += len(data)


# -- what the loop calls ------------------------------------------------------------------------

def new_ssl_protocol(loop, app_protocol, sslcontext, waiter, server_side=False,
                     server_hostname=None, **kwargs):
    """The TLS protocol of the running engine: ours, or the stdlib's."""
    if TLS_ENGINE == "stdlib":
        return sslproto.SSLProtocol(loop, app_protocol, sslcontext, waiter, server_side,
                                    server_hostname, **kwargs)
    return TLSProtocol(loop, app_protocol, sslcontext, waiter, server_side,
                       server_hostname, **kwargs)


def _hand_over_buffered_stream_data(protocol, ssl_protocol):
    """What a server's StreamReader read before the upgrade (the client's
    first TLS records) goes to the TLS protocol first, as the stdlib's
    start_tls does since gh-142352."""
    from asyncio import streams

    reader = getattr(protocol, "_stream_reader", None)
    if not isinstance(protocol, streams.StreamReaderProtocol) or reader is None:
        return
    data = reader._buffer
    while data:
        area = ssl_protocol.get_buffer(len(data))
        n = min(len(area), len(data))
        area[:n] = data[:n]
        ssl_protocol.buffer_updated(n)  # kept until the handshake starts
        del data[:n]


async def start_tls(loop, transport, protocol, sslcontext, *, server_side=False,
                    server_hostname=None, ssl_handshake_timeout=None,
                    ssl_shutdown_timeout=None):
    """The stdlib's ``loop.start_tls`` with the engine's TLS protocol."""
    if ssl is None:
        raise RuntimeError("Python ssl module is not available")
    if not isinstance(sslcontext, ssl.SSLContext):
        raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, "
                        f"got {sslcontext!r}")
    if not getattr(transport, "_start_tls_compatible", False):
        raise TypeError(f"transport {transport!r} is not supported by start_tls()")
    waiter = loop.create_future()
    ssl_protocol = new_ssl_protocol(
        loop, protocol, sslcontext, waiter, server_side, server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout, call_connection_made=False)
    # Paused first, so no data reaches the TLS protocol before connection_made().
    transport.pause_reading()
    if server_side:
        _hand_over_buffered_stream_data(protocol, ssl_protocol)
    transport.set_protocol(ssl_protocol)
    conmade_cb = loop.call_soon(ssl_protocol.connection_made, transport)
    resume_cb = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        conmade_cb.cancel()
        resume_cb.cancel()
        raise
    return ssl_protocol._app_transport
