# cython: language_level=3
"""The TLS engine interface: what the TLS state machine (zerosock._aio_tls_c)
asks of a session's record layer, with the two steps both engines share.

A session is always the stdlib's ``ssl.SSLObject`` from ``context.wrap_bio()``,
so the user's context, callbacks and the ``ssl_object`` extra are the stdlib's;
its handshake and shutdown are that object's methods, with their exceptions.
An engine moves the records: ``OpenSSLEngine`` (zerosock._aio_tls_openssl_c)
by direct calls into OpenSSL, ``MemoryBIOEngine`` (zerosock._aio_tls_memorybio_c)
through the SSLObject's and MemoryBIOs' Python methods.

Ciphertext reaches an engine by one path: a ``zs_wire`` (zs_wire.h) plugged
in around the steps that use it -- the socket its transport lends for a
readiness event, or memory another kind of transport handed over.  The
``def`` methods below drive an engine by hand, without a loop: the tests do."""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING

try:
    import ssl
except ImportError:  # pragma: no cover - an interpreter without ssl
    ssl = None

# What a step raises when it needs more ciphertext first (both engines).
_AgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError) if ssl is not None else ()

from zerosock._wire cimport zs_wire_lend_memory, zs_wire_lend_socket

# A stdlib SSLObject's methods only call _ssl's session's of the same name:
# called on the session, they cost no Python frame.
_SSLObject = ssl.SSLObject if ssl is not None else None


cdef inline object _session(object sslobj):
    return sslobj._sslobj if type(sslobj) is _SSLObject else sslobj


class _Collector:
    """A transport stand-in that keeps what is written to it."""

    def __init__(self):
        self.chunks = []

    def write(self, data):
        self.chunks.append(bytes(data))


cdef class TLSEngine:

    def __init__(self, sslobj, incoming, outgoing):
        self.sslobj = sslobj
        self._incoming = incoming
        self._outgoing = outgoing

    def __repr__(self):
        return f"<{type(self).__name__} of {self.sslobj!r}>"

    cdef int plug(self, zs_wire *wire) except -1:
        raise NotImplementedError

    cdef Py_ssize_t unplug(self) except -1:
        raise NotImplementedError

    cdef Py_ssize_t incoming_size(self) except -1:
        raise NotImplementedError

    cdef Py_ssize_t read_hint(self) except -2:
        raise NotImplementedError

    cdef bint handshake(self) except -1:
        try:
            _session(self.sslobj).do_handshake()
        except _AgainErrors:
            return False
        return True

    cdef bint renegotiable(self) except -1:
        return True

    cdef bint shutdown(self) except -1:
        try:
            # SSLObject.unwrap() is _ssl's shutdown(), which has that name there.
            if type(self.sslobj) is _SSLObject:
                self.sslobj._sslobj.shutdown()
            else:
                self.sslobj.unwrap()
        except _AgainErrors:
            return False
        return True

    cdef Py_ssize_t read_into(self, char *buf, Py_ssize_t size) except -2:
        raise NotImplementedError

    cdef bint drained(self) except -1:
        raise NotImplementedError

    cdef object read_all(self, bint *closed):
        raise NotImplementedError

    cdef Py_ssize_t write(self, object data, zs_wire *wire) except -1:
        raise NotImplementedError

    cdef Py_ssize_t outgoing_size(self) except -1:
        raise NotImplementedError

    cdef Py_ssize_t flush(self, TransportCore core, object transport) except -1:
        raise NotImplementedError

    cdef int discard_outgoing(self) except -1:
        raise NotImplementedError

    # -- by hand ------------------------------------------------------------------

    def feed(self, data):
        """Hand the engine ciphertext, as a BufferedProtocol's transport would."""
        cdef Py_buffer view
        cdef zs_wire wire
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            zs_wire_lend_memory(&wire, <const char *>view.buf, <size_t>view.len)
            self.plug(&wire)
            self.unplug()
        finally:
            PyBuffer_Release(&view)

    def receive_from(self, long fd):
        """One readiness event of socket ``fd`` with no step to ask for its
        bytes: (bytes the engine holds of its own afterwards, end of stream, errno)."""
        cdef zs_wire wire
        zs_wire_lend_socket(&wire, fd, 1, 0)
        self.plug(&wire)
        held = self.unplug()
        return held, bool(wire.eof), wire.recv_err

    def do_handshake(self):
        """One handshake step: True when the handshake is complete."""
        return self.handshake()

    def unwrap(self):
        """One shutdown step: True when both close_notify alerts have passed."""
        return self.shutdown()

    def send(self, data, long fd=-1):
        """Encrypt ``data``: the byte count not taken.  With ``fd``, the
        records leave through that socket, lent as a transport with nothing
        queued lends it; the error a send met, if any, is raised as an OSError."""
        cdef zs_wire wire
        if fd < 0:
            return self.write(data, NULL)
        zs_wire_lend_socket(&wire, fd, 0, 1)
        left = self.write(data, &wire)
        if wire.send_err:
            raise OSError(wire.send_err, "send failed")
        return left

    def recv(self, Py_ssize_t size, long fd=-1):
        """Decrypt up to ``size`` bytes: the plaintext, b"" at close_notify,
        None when more ciphertext is needed.  With ``fd``, one readiness event
        of that socket first lends it (one receive) around the read; then the
        result is (plaintext, bytes held after the read, end of stream, errno)."""
        cdef zs_wire wire
        cdef Py_ssize_t count, held = 0
        out = bytearray(size)
        if fd >= 0:
            zs_wire_lend_socket(&wire, fd, 1, 0)
            self.plug(&wire)
        try:
            count = self.read_into(PyByteArray_AS_STRING(out), size)
        finally:
            if fd >= 0:
                held = self.unplug()
        data = None if count < 0 else bytes(out[:count])
        if fd < 0:
            return data
        return data, held, bool(wire.eof), wire.recv_err

    def recv_all(self):
        """All plaintext decrypted now (None if none), and whether close_notify came."""
        cdef bint closed = False
        data = self.read_all(&closed)
        return data, closed

    def take_output(self):
        """The records waiting in the engine, taken out as one bytes."""
        collector = _Collector()
        self.flush(None, collector)
        return b"".join(collector.chunks)

    def pending(self):
        """(ciphertext held, records waiting, read_hint, drained)."""
        return self.incoming_size(), self.outgoing_size(), self.read_hint(), self.drained()
