# cython: language_level=3
"""The OpenSSL engine: a TLS session's records moved by direct calls into the
OpenSSL that ``_ssl`` loaded (zs_openssl.h), with BIOs of our own in place
of the session's memory BIOs (zs_tls_bio.h).

How it reaches its figures: while the transport's wire is plugged in (one
readiness event), OpenSSL receives from the socket straight into its record
buffer -- one receive for as many records as fit, no ciphertext copy -- and
decrypts there; a record leaves from the buffer OpenSSL made it in while the
transport has nothing queued; plaintext is decrypted in place into the
bytes the application receives.  No Python object is made per record.

Everything that relies on ``_ssl``'s private object layout is the
``ssl_object_layout`` section of zs_openssl.h, used here only by
:func:`unavailable_reason` (checked once, before any engine is made, as that
fast path's probe in zerosock._cpython_c: its versions and its switch) and
:func:`_session_of`."""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_Occurred
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

import os

try:
    import ssl
    import _ssl
except ImportError:  # pragma: no cover - an interpreter without ssl
    ssl = None
    _ssl = None

from zerosock._aio_tls_engine_c cimport TLSEngine
from zerosock._aio_transport_c cimport TransportCore
from zerosock._wire cimport zs_wire, zs_wire_can_recv

cdef extern from "Python.h":
    # Bytes filled in place: made unfinished, then cut to what was written.
    PyObject *zs_bytes_new "PyBytes_FromStringAndSize"(const char *, Py_ssize_t) except NULL
    char *zs_bytes_ptr "PyBytes_AS_STRING"(PyObject *)
    int zs_bytes_resize "_PyBytes_Resize"(PyObject **, Py_ssize_t) except -1

cdef extern from "zs_tls_bio.h":
    ctypedef struct ZS_SSL
    ctypedef struct ZS_SSL_CTX
    ctypedef struct ZS_BIO
    ctypedef struct zs_openssl_table:
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
        int (*BIO_write)(ZS_BIO *, const void *, int)
        unsigned long (*ERR_peek_last_error)()
        void (*ERR_clear_error)()
        long (*SSL_ctrl)(ZS_SSL *, int, long, void *)
        void (*SSL_set_default_read_buffer_len)(ZS_SSL *, size_t)
        const char *(*ERR_reason_error_string)(unsigned long)
        int (*SSL_do_handshake)(ZS_SSL *) nogil
        int (*SSL_version)(const ZS_SSL *)
    zs_openssl_table zs_ossl
    int ZS_SSL_ERROR_WANT_READ, ZS_SSL_ERROR_WANT_WRITE
    int ZS_SSL_ERROR_SYSCALL, ZS_SSL_ERROR_ZERO_RETURN
    int ZS_SSL_CTRL_SET_READ_AHEAD
    int ZS_TLS1_3_VERSION
    int zs_openssl_load(const char *ssl_module_path, const char **missing)
    int zs_ossl_err_lib(unsigned long e)
    int zs_ossl_err_reason(unsigned long e)
    ZS_SSL_CTX *zs_pyssl_context_ctx(object context)
    ZS_SSL *zs_pyssl_socket_ssl(object sslsocket)
    ZS_BIO *zs_pyssl_memorybio_bio(object bio)
    ctypedef struct zs_inbuf:
        size_t len
        zs_wire *wire
    ctypedef struct zs_outbuf:
        char *buf
        size_t len
        zs_wire *wire
    long zs_inbuf_take(zs_inbuf *inp, zs_wire *wire)
    int zs_tls_bios_attach(ZS_SSL *session, zs_inbuf **inp, zs_outbuf **out)
    void zs_outbuf_release(zs_outbuf *out)


cdef enum:
    # Decrypted data up to this size is copied out of a stack buffer into its
    # bytes: cheaper than making the bytes first and shrinking it to fit.
    SMALL_READ = 2048
    # OpenSSL's record buffer, which it receives into from the socket: room
    # for several full records (16 KiB and their overhead) per receive.
    RECORD_BUFFER = 64 * 1024

cdef bint _big_buffer_after_handshake = False

if ssl is not None:
    _MemoryBIO = ssl.MemoryBIO
    _SSLSocketType = _ssl._SSLSocket
    # The context's message callback (a private debugging aid of the ssl
    # module); where _ssl has none to read, no handshake is made directly.
    _msg_callback_of = getattr(getattr(_ssl._SSLContext, "_msg_callback", None), "__get__", None)
    # The direct handshake leaves a failure to _ssl's next call, which must
    # find it queued, as with OpenSSL 3.0 and 3.1; with 3.6 that call raised
    # nothing (a garbage ClientHello then went unreported).
    _FAILURE_REQUEUED = ssl.OPENSSL_VERSION_INFO[:2] < (3, 2)
    # Before 3.2 OpenSSL sizes the record buffer anew each time it takes one
    # (and gives it back when empty), so the big one is set once the
    # handshake is done: the handshake's small reads then leave the heap
    # with fewer holes between the connection's long-lived allocations.
    # From 3.2 on each record layer fixes its size when it is made, inside
    # the handshake: it is set before.
    _big_buffer_after_handshake = ssl.OPENSSL_VERSION_INFO[:2] < (3, 2)
    _LIB_NAMES = getattr(_ssl, "lib_codes_to_names", {})
    _REASON_NAMES = getattr(_ssl, "err_codes_to_names", {})

cdef bint _loaded = False  # zs_ossl is filled and the layout checks passed


def unavailable_reason():
    """Why OpenSSL cannot be driven directly here, or None when it can.

    Resolves the functions from the library ``_ssl`` loaded, then checks on a
    probe context and session that the pointers read from CPython's objects
    are the ones OpenSSL reports (options, verify mode, SSL_CTX, BIOs and the
    session's owner), in two distinct settings each."""
    global _loaded
    cdef const char *missing = NULL
    cdef ZS_SSL_CTX *ctx
    if _loaded:
        return None
    if ssl is None:
        return "no ssl module"
    path = getattr(_ssl, "__file__", None)
    if not path:
        return "_ssl is built into the interpreter"
    if zs_openssl_load(os.fsencode(path), &missing) != 0:
        return f"OpenSSL function not found: {(<bytes>missing).decode('utf-8', 'replace')}"
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx = zs_pyssl_context_ctx(probe)
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
    if type(getattr(sslobj, "_sslobj", None)) is not _SSLSocketType:
        return "SSLObject layout: no _ssl._SSLSocket"
    if zs_ossl.SSL_get_SSL_CTX(zs_pyssl_socket_ssl(sslobj._sslobj)) != ctx:
        return "SSLObject layout: SSL differs"
    if _session_of(sslobj, incoming, outgoing) == NULL:
        return "SSLObject or MemoryBIO layout: SSL or BIO differs"
    # A round trip through the BIO: what C writes, Python reads.
    if zs_ossl.BIO_write(zs_pyssl_memorybio_bio(outgoing), b"zs", 2) != 2 or outgoing.read() != b"zs":
        return "MemoryBIO layout: BIO round trip failed"
    _loaded = True
    return None


cdef ZS_SSL *_session_of(object sslobj, object incoming, object outgoing):
    """The SSL of an ``SSLObject`` that ``wrap_bio()`` made over these
    MemoryBIOs, or NULL when it is another kind (a context's own
    ``sslobject_class``) or OpenSSL reports other pointers."""
    cdef ZS_SSL *s
    inner = getattr(sslobj, "_sslobj", None)
    if (type(inner) is not _SSLSocketType or type(incoming) is not _MemoryBIO
            or type(outgoing) is not _MemoryBIO):
        return NULL
    s = zs_pyssl_socket_ssl(inner)
    if (s == NULL or zs_ossl.SSL_get_ex_data(s, 0) != <void *>inner
            or zs_ossl.SSL_get_rbio(s) != zs_pyssl_memorybio_bio(incoming)
            or zs_ossl.SSL_get_wbio(s) != zs_pyssl_memorybio_bio(outgoing)):
        return NULL
    return s


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


cdef inline Py_ssize_t _read_plain(ZS_SSL *s, char *buf, Py_ssize_t size) except -2:
    """SSL_read into buf: bytes read, 0 at close_notify, -1 when it needs more ciphertext."""
    cdef int n = zs_ossl.SSL_read(s, buf, <int>min(size, 1 << 30))
    cdef int code
    if n > 0:
        return n
    code = zs_ossl.SSL_get_error(s, n)
    # SSL_get_error reports an empty error queue as WANT_*/ZERO_RETURN: nothing to clear.
    if code == ZS_SSL_ERROR_WANT_READ or code == ZS_SSL_ERROR_WANT_WRITE:
        return -1
    if code == ZS_SSL_ERROR_ZERO_RETURN:
        return 0
    if code == ZS_SSL_ERROR_SYSCALL:  # the stdlib retries these too
        zs_ossl.ERR_clear_error()
        return -1
    raise _ssl_error(code)


cdef inline bint _drained(ZS_SSL *s, zs_inbuf *held):
    """No ciphertext held nor in the session's record buffer (SSL_has_pending
    counts what it read ahead): a read would only want more, or receive."""
    return held.len == 0 and not zs_ossl.SSL_has_pending(s)


@cython.final
cdef class OpenSSLEngine(TLSEngine):
    """A session's records through OpenSSL's own calls (see the module)."""

    cdef ZS_SSL *_ssl
    cdef zs_inbuf *_in    # the input BIO's state (owned by the BIO, which the session owns)
    cdef zs_outbuf *_out  # the output BIO's
    cdef bint _direct_handshake  # no Python callback can run in the handshake (see handshake())

    def __init__(self, sslobj, incoming, outgoing):
        """TypeError when the session cannot be driven directly (see _session_of)."""
        cdef ZS_SSL *s = _session_of(sslobj, incoming, outgoing) if _loaded else NULL
        if s == NULL:
            raise TypeError("not an SSLObject of _ssl over these MemoryBIOs")
        self.sslobj = sslobj  # (TLSEngine.__init__'s work, without its Python call)
        if zs_tls_bios_attach(s, &self._in, &self._out) != 0:
            raise MemoryError()
        self._ssl = s
        # The session no longer uses the MemoryBIOs (nor does anything else
        # hold them): dropping them frees their OpenSSL BIOs, 1 KiB a session.
        self._incoming = self._outgoing = None
        # Reading ahead, the session asks its input for whole buffers rather
        # than a header and then a body: what lets it receive from the socket
        # with one recv.
        zs_ossl.SSL_ctrl(s, ZS_SSL_CTRL_SET_READ_AHEAD, 1, NULL)
        if not _big_buffer_after_handshake:
            zs_ossl.SSL_set_default_read_buffer_len(s, RECORD_BUFFER)
        context = sslobj._sslobj.context
        self._direct_handshake = (_FAILURE_REQUEUED and _msg_callback_of is not None
                                  and context.sni_callback is None
                                  and getattr(context, "keylog_filename", None) is None
                                  and _msg_callback_of(context) is None)

    # -- the handshake ------------------------------------------------------------

    cdef bint handshake(self) except -1:
        """SSL_do_handshake called directly: no exception is made each time
        it waits for the peer.  Only where no Python callback of the context
        (SNI, keylog, message) can run in it: _ssl would raise what those
        raise.  A failure is left to _ssl's call, which finds the session in
        its error state with the same error queued and raises the stdlib's
        exception for it."""
        cdef int ret, code
        if self._direct_handshake:
            with nogil:  # as _ssl: a handshake's cryptography lets other threads run
                ret = zs_ossl.SSL_do_handshake(self._ssl)
            if PyErr_Occurred() != NULL:
                return -1  # what a callback of _ssl's left raised (none should)
            if ret == 1:
                return self._handshake_done()
            code = zs_ossl.SSL_get_error(self._ssl, ret)
            if code == ZS_SSL_ERROR_WANT_READ or code == ZS_SSL_ERROR_WANT_WRITE:
                return False
        if TLSEngine.handshake(self):
            return self._handshake_done()
        return False

    cdef inline bint _handshake_done(self) except -1:
        if _big_buffer_after_handshake:
            zs_ossl.SSL_set_default_read_buffer_len(self._ssl, RECORD_BUFFER)
        return True

    cdef bint renegotiable(self) except -1:
        return zs_ossl.SSL_version(self._ssl) < ZS_TLS1_3_VERSION

    # -- ciphertext in ------------------------------------------------------------

    cdef int plug(self, zs_wire *wire) except -1:
        if wire.mem_len:
            # Another transport's memory, which it may reuse once we return
            # (or, re-entered, while we read): taken at once.
            if zs_inbuf_take(self._in, wire) < 0:
                raise MemoryError()
        else:
            self._in.wire = wire
        return 0

    cdef Py_ssize_t unplug(self) except -1:
        cdef zs_wire *wire = self._in.wire
        cdef long got
        self._in.wire = NULL
        if wire == NULL or not zs_wire_can_recv(wire):
            return 0
        got = zs_inbuf_take(self._in, wire)
        if got < 0:
            raise MemoryError()
        return got

    cdef Py_ssize_t incoming_size(self) except -1:
        return <Py_ssize_t>self._in.len

    cdef Py_ssize_t read_hint(self) except -2:
        # Received straight from the socket, the size is unknown until it is.
        if self._in.wire != NULL and self._in.wire.recv_left:
            return -1
        return <Py_ssize_t>self._in.len

    # -- plaintext in -------------------------------------------------------------

    cdef Py_ssize_t read_into(self, char *buf, Py_ssize_t size) except -2:
        return _read_plain(self._ssl, buf, size)

    cdef bint drained(self) except -1:
        return _drained(self._ssl, self._in)

    cdef object read_all(self, bint *closed):
        cdef Py_ssize_t filled = 0, size, count = 1
        cdef PyObject *raw = NULL  # the bytes being filled: ours alone until returned
        # On the stack: OpenSSL's callbacks into _ssl (a keylog or message
        # callback) may release the GIL while another thread reads.
        cdef char plain[SMALL_READ]
        # Plaintext is shorter than the ciphertext it comes from (plus what
        # the session decrypted already): a bound for one bytes object.
        size = <Py_ssize_t>self._in.len + zs_ossl.SSL_pending(self._ssl)
        data = None
        try:
            if size <= SMALL_READ:
                count = _read_plain(self._ssl, plain, SMALL_READ)
                if count > 0:
                    if count < SMALL_READ and _drained(self._ssl, self._in):
                        data = PyBytes_FromStringAndSize(plain, count)
                        count = -1
                    else:
                        # The rest of this record is decrypted and pending
                        # (ciphertext the session received itself is counted nowhere).
                        size = count + <Py_ssize_t>self._in.len + zs_ossl.SSL_pending(self._ssl)
                        raw = zs_bytes_new(NULL, size)
                        memcpy(zs_bytes_ptr(raw), plain, <size_t>count)
                        filled = count
            else:
                raw = zs_bytes_new(NULL, size)
            if raw != NULL:
                # Decrypted in place; a record begun before this read, or more
                # records in the session's buffer, make the bound short: the bytes grows.
                while True:
                    if filled == size:
                        size = (filled + <Py_ssize_t>self._in.len
                                + zs_ossl.SSL_pending(self._ssl) + max(<Py_ssize_t>SMALL_READ, filled))
                        zs_bytes_resize(&raw, size)
                    count = _read_plain(self._ssl, zs_bytes_ptr(raw) + filled, size - filled)
                    if count <= 0:
                        break
                    filled += count
                    if _drained(self._ssl, self._in):
                        count = -1
                        break
                if filled:
                    if filled < size:
                        zs_bytes_resize(&raw, filled)
                    data = <object>raw
        finally:
            Py_XDECREF(raw)
        closed[0] = count == 0
        return data

    # -- plaintext out ------------------------------------------------------------

    cdef Py_ssize_t write(self, object data, zs_wire *wire) except -1:
        cdef Py_buffer view
        cdef const char *ptr
        cdef Py_ssize_t left
        cdef int n = 1
        cdef bint exported = not PyBytes_CheckExact(data)
        if exported:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            ptr = <const char *>view.buf
            left = view.len
        else:  # immutable, and the caller holds it: no export needed
            ptr = PyBytes_AS_STRING(data)
            left = PyBytes_GET_SIZE(data)
        self._out.wire = wire
        while left > 0:
            n = zs_ossl.SSL_write(self._ssl, ptr, <int>min(left, 1 << 30))
            if n <= 0:
                break
            ptr += n
            left -= n
        self._out.wire = NULL
        if exported:
            PyBuffer_Release(&view)
        if left > 0:
            self._check_write_error(n)
        return left

    cdef int _check_write_error(self, int ret) except -1:
        cdef int code = zs_ossl.SSL_get_error(self._ssl, ret)
        if code == ZS_SSL_ERROR_WANT_READ or code == ZS_SSL_ERROR_WANT_WRITE:
            return 0
        if code == ZS_SSL_ERROR_SYSCALL:
            zs_ossl.ERR_clear_error()
            return 0
        raise _ssl_error(code)

    # -- records out --------------------------------------------------------------

    cdef Py_ssize_t outgoing_size(self) except -1:
        return <Py_ssize_t>self._out.len

    cdef Py_ssize_t flush(self, TransportCore core, object transport) except -1:
        cdef Py_ssize_t n = <Py_ssize_t>self._out.len
        if n:
            # Emptied first: records a write() makes from Python code run by
            # the send (an exception handler) start a new batch.  No Python
            # runs before the send is done with the buffer.
            self._out.len = 0
            if core is not None:
                core.write_mem(self._out.buf, n)
            else:
                transport.write(PyBytes_FromStringAndSize(self._out.buf, n))
            zs_outbuf_release(self._out)
        return <Py_ssize_t>self._out.len

    cdef int discard_outgoing(self) except -1:
        self._out.len = 0
        zs_outbuf_release(self._out)
        return 0
