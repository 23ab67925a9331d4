from zerosock._aio_transport_c cimport TransportCore
from zerosock._wire cimport zs_wire

cdef enum:
    IO_CHUNK = 256 * 1024  # ciphertext received per readiness event, plaintext per data_received


cdef class TLSEngine:
    """The record layer of one TLS session, as the state machine above
    (zerosock._aio_tls_c) drives it.  The session is the stdlib's
    ``ssl.SSLObject``; an engine moves its ciphertext and plaintext."""

    cdef readonly object sslobj      # the session: certificates, ALPN, the extra info
    cdef object _incoming            # the MemoryBIOs it was made with
    cdef object _outgoing

    # Ciphertext in.  plug() lends the engine a wire for the calls that
    # follow (the session receives from it as it needs); unplug() takes what
    # the session did not ask for into the engine's memory, so the wire's
    # readiness event is used up, and returns that byte count.
    cdef int plug(self, zs_wire *wire) except -1
    cdef Py_ssize_t unplug(self) except -1
    cdef Py_ssize_t incoming_size(self) except -1   # ciphertext held, not yet decrypted
    cdef Py_ssize_t read_hint(self) except -2       # get_buffer()'s size hint: -1 if unknown

    # The session's steps, with the stdlib's exceptions: True when complete,
    # False while they wait for the peer's records.
    cdef bint handshake(self) except -1
    cdef bint shutdown(self) except -1
    # Whether the session's cipher and compression may still change after
    # its handshake (a renegotiation before TLS 1.3); True when unknown.
    cdef bint renegotiable(self) except -1

    # Plaintext in: read_into() gives a count, 0 at close_notify, -1 when
    # it needs more ciphertext; drained() says a read now could only give -1
    # (an engine that cannot tell cheaply says False); read_all() gives all
    # that is decrypted now as one bytes (None if nothing), setting *closed
    # at close_notify.
    cdef Py_ssize_t read_into(self, char *buf, Py_ssize_t size) except -2
    cdef bint drained(self) except -1
    cdef object read_all(self, bint *closed)

    # Plaintext out: how many bytes of `data` the session did not take (0
    # unless it waits for the peer, as in a renegotiation); records leave
    # through `wire` while it lets them (NULL: they wait in the engine).
    cdef Py_ssize_t write(self, object data, zs_wire *wire) except -1

    # Records out, waiting in the engine: their size; handing them all to the
    # transport (its C core when it is one of ours), giving the size of what
    # still waits (records a send's error handler made); dropping them.
    cdef Py_ssize_t outgoing_size(self) except -1
    cdef Py_ssize_t flush(self, TransportCore core, object transport) except -1
    cdef int discard_outgoing(self) except -1
