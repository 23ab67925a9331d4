cimport cython
from zerosock._aio_tls_engine_c cimport TLSEngine
from zerosock._aio_transport_c cimport ReadTarget, TransportCore
from zerosock._wire cimport zs_wire


cdef class TLSProtocolCore(ReadTarget):
    cdef object _loop
    cdef readonly object _app_protocol
    cdef readonly object _app_transport  # set once, by the class that makes it
    cdef readonly object _transport      # the socket transport under us
    cdef TransportCore _core             # its C core, when it is one of ours
    cdef readonly object _sslcontext
    cdef readonly object _sslobj
    cdef readonly TLSEngine _engine
    cdef object _waiter
    cdef object _extra_made              # the stdlib's _extra dict, made only when asked for
    cdef bint _handshake_extras          # the handshake's entries below are set
    cdef bint _session_info_due          # ... but cipher and compression are read on first ask
    cdef object _peercert
    cdef object _cipher
    cdef object _compression
    cdef int _tls_state
    cdef int _app_state
    cdef object _write_backlog           # a deque while plaintext waits, else None
    cdef Py_ssize_t _write_buffer_size
    cdef int _conn_lost
    cdef bint _ssl_writing_paused
    cdef readonly bint _app_reading_paused  # (read by CPython's own tests, as the stdlib's)
    cdef bint _ssl_reading_paused
    cdef bint _eof_received
    cdef bint _app_writing_paused
    cdef bint _app_is_buffer
    cdef bint _more                      # the last read filled the application's buffer
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
    cdef bint _shutdown_completed        # _on_shutdown_complete() ran
    cdef object _handshake_start_time
    cdef object _lent                    # what get_buffer() lends (a bytearray), made on first need
    cdef object _lent_view               # ... as a view, whose slices write through
    cdef object __weakref__

    # None is overridden: final, so calls within the module go direct.
    @cython.final
    cdef int _init_core(self, TLSEngine engine, object loop, object app_protocol,
                        object sslcontext, object waiter, bint call_connection_made,
                        double ssl_handshake_timeout, double ssl_shutdown_timeout) except -1
    @cython.final
    cdef int _connection_made(self, object transport) except -1
    @cython.final
    cdef int _handshake_complete(self, object handshake_exc) except -1
    @cython.final
    cdef int _wakeup_waiter(self, exc=*) except -1
    @cython.final
    cdef inline int _on_ciphertext(self) except -1
    @cython.final
    cdef int _start_handshake(self) except -1
    @cython.final
    cdef int _do_handshake(self) except -1
    @cython.final
    cdef int _do_flush(self) except -1
    @cython.final
    cdef int _do_shutdown(self) except -1
    @cython.final
    cdef int _on_shutdown_complete(self, shutdown_exc) except -1
    @cython.final
    cdef inline Py_ssize_t _encrypt(self, object data) except -1
    @cython.final
    cdef int _write_one(self, object data) except -1
    @cython.final
    cdef int _backlog_append(self, object data) except -1
    @cython.final
    cdef int _do_write(self) except -1
    @cython.final
    cdef inline int _process_outgoing(self) except -1
    @cython.final
    cdef int _do_read(self) except -1
    @cython.final
    cdef int _do_read_buffered(self) except -1
    @cython.final
    cdef inline int _do_read_copied(self) except -1
    @cython.final
    cdef int _call_eof_received(self) except -1
    @cython.final
    cdef inline Py_ssize_t _get_write_buffer_size(self) except -1
    @cython.final
    cdef inline Py_ssize_t _get_read_buffer_size(self) except -1
    @cython.final
    cdef int _control_app_writing(self) except -1
    @cython.final
    cdef inline int _control_app_writing_at(self, Py_ssize_t size) except -1
    @cython.final
    cdef int _tell_app(self, str method) except -1
    @cython.final
    cdef inline int _control_ssl_reading(self) except -1
