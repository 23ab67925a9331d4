# cython: language_level=3
"""The MemoryBIO engine: a TLS session's records through the ``SSLObject``'s
and ``MemoryBIO``'s own Python methods, as the stdlib's SSLProtocol moves
them -- for interpreters where the OpenSSL engine's checks fail, and for
sessions of a context's own ``sslobject_class``.  Received ciphertext is
copied into the incoming MemoryBIO as soon as the wire is plugged in."""

cimport cython
from cpython.buffer cimport PyBUF_READ, PyBUF_WRITE
from cpython.bytes cimport PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.memoryview cimport PyMemoryView_FromMemory

from zerosock._aio_tls_engine_c import _AgainErrors, ssl

if ssl is not None:
    _ZeroReturnError = ssl.SSLZeroReturnError

from zerosock._aio_tls_engine_c cimport IO_CHUNK, TLSEngine
from zerosock._aio_transport_c cimport TransportCore
from zerosock._wire cimport zs_wire, zs_wire_recv

# One receive's landing place for every connection of the process: the
# MemoryBIO copies it at once, and the GIL is held from the receive to the
# copy, so no other thread's connection can use it meanwhile.
cdef char _landing[IO_CHUNK]


@cython.final
cdef class MemoryBIOEngine(TLSEngine):
    """A session's records through Python calls (see the module)."""

    # -- ciphertext in ------------------------------------------------------------

    cdef int plug(self, zs_wire *wire) except -1:
        cdef size_t n = zs_wire_recv(wire, _landing, IO_CHUNK)
        while n:
            self._incoming.write(PyMemoryView_FromMemory(_landing, <Py_ssize_t>n, PyBUF_READ))
            n = zs_wire_recv(wire, _landing, IO_CHUNK)
        return 0

    cdef Py_ssize_t unplug(self) except -1:
        return 0

    cdef Py_ssize_t incoming_size(self) except -1:
        return self._incoming.pending

    cdef Py_ssize_t read_hint(self) except -2:
        return self._incoming.pending

    # -- plaintext in -------------------------------------------------------------

    cdef Py_ssize_t read_into(self, char *buf, Py_ssize_t size) except -2:
        try:
            return self.sslobj.read(size, PyMemoryView_FromMemory(buf, size, PyBUF_WRITE))
        except _AgainErrors:
            return -1
        except _ZeroReturnError:  # close_notify after our own: _ssl raises, SSL_read says 0
            return 0

    cdef bint drained(self) except -1:
        return False  # a read says so itself, cheaper than asking the session first

    cdef object read_all(self, bint *closed):
        chunks = []
        closed[0] = False
        try:
            while True:
                chunk = self.sslobj.read(IO_CHUNK)
                if not chunk:
                    closed[0] = True
                    break
                chunks.append(chunk)
        except _AgainErrors:
            pass
        except _ZeroReturnError:
            closed[0] = True
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks) if chunks else None

    # -- plaintext out ------------------------------------------------------------

    cdef Py_ssize_t write(self, object data, zs_wire *wire) except -1:
        cdef Py_ssize_t size = (PyBytes_GET_SIZE(data) if PyBytes_CheckExact(data)
                                else memoryview(data).nbytes)
        try:
            return size - self.sslobj.write(data)
        except _AgainErrors:
            return size

    # -- records out --------------------------------------------------------------

    cdef Py_ssize_t outgoing_size(self) except -1:
        return self._outgoing.pending

    cdef Py_ssize_t flush(self, TransportCore core, object transport) except -1:
        data = self._outgoing.read()
        if data:
            transport.write(data)
        return self._outgoing.pending

    cdef int discard_outgoing(self) except -1:
        self._outgoing.read()
        return 0
