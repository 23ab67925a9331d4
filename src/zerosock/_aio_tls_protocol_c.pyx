# cython: language_level=3
"""The TLS state machine of zerosock.aio: the standard library's
``SSLProtocol`` (CPython's Lib/asyncio/sslproto.py, 3.11 on) -- its states
UNWRAPPED, DO_HANDSHAKE, WRAPPED, FLUSHING and SHUTDOWN, its handshake and
shutdown timeouts, flow control both ways, its errors -- over a TLS engine
(zerosock._aio_tls_engine_c) that moves the records.  It sits on a socket
transport as its protocol.

Only the transport touches the socket.  For each readiness event it lends
this protocol the socket as a ``zs_wire`` (zs_wire.h) good for one receive,
and ciphertext comes in by one path in every state, handshake and data
alike: :meth:`TLSProtocolCore.wire_readable` plugs the wire into the engine,
runs the state's step and unplugs it.  The end of the stream or an error
that receive met stays in the wire; the transport reports it when the call
returns, as its own read would (``eof_received()``, ``connection_lost()``).
Another kind of transport hands ciphertext over (``buffer_updated()``): a
wire over that memory, the same path.  For each encryption the protocol
borrows the socket for sending (``lend_wire()``/``wire_returned()``), so
records leave as they are made while the transport has nothing queued.

Why lend the socket rather than hand the engine bytes: the OpenSSL engine
then receives only when OpenSSL asks, straight into its record buffer -- one
receive a readiness event and no ciphertext copy -- and sends from the buffer
OpenSSL made a record in.  Bytes received by the transport first would cost
a copy each way.  The wire keeps the socket and its errors the transport's:
the engine only receives and sends through it, within the lending call."""

import collections
from asyncio import constants, exceptions, protocols
from asyncio.log import logger

try:
    import ssl
except ImportError:  # pragma: no cover - an interpreter without ssl
    ssl = None

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING

from zerosock._aio_tls_engine_c cimport IO_CHUNK
from zerosock._wire cimport zs_wire_lend_memory, zs_wire_to_report


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

cdef object _BufferedProtocol = protocols.BufferedProtocol
cdef int LOG_THRESHOLD = constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
cdef Py_ssize_t HIGH_WATER_READ = getattr(constants, "FLOW_CONTROL_HIGH_WATER_SSL_READ", 256)
cdef Py_ssize_t HIGH_WATER_WRITE = getattr(constants, "FLOW_CONTROL_HIGH_WATER_SSL_WRITE", 512)

if ssl is not None:
    _SSLError = ssl.SSLError
    # Whose getpeercert(), cipher() and compression() call _ssl's alone.
    _SSLObject = ssl.SSLObject
    _CertificateError = ssl.CertificateError


def _flow_limits(high, low, kb):
    """The stdlib's add_flowcontrol_defaults: limits in bytes from a default in KiB."""
    if high is None:
        high = kb * 1024 if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


cdef Py_ssize_t DEFAULT_READ_HIGH, DEFAULT_READ_LOW, DEFAULT_WRITE_HIGH, DEFAULT_WRITE_LOW
DEFAULT_READ_HIGH, DEFAULT_READ_LOW = _flow_limits(None, None, HIGH_WATER_READ)
DEFAULT_WRITE_HIGH, DEFAULT_WRITE_LOW = _flow_limits(None, None, HIGH_WATER_WRITE)


cdef class TLSProtocolCore(ReadTarget):
    """The state machine of one TLS connection over its engine; the stdlib's
    ``SSLProtocol`` but for its constructor (zerosock._aio_tls_c.TLSProtocol)."""

    def __init__(self, TLSEngine engine, loop, app_protocol, sslcontext, waiter,
                 bint call_connection_made, double ssl_handshake_timeout,
                 double ssl_shutdown_timeout):
        self._init_core(engine, loop, app_protocol, sslcontext, waiter, call_connection_made,
                        ssl_handshake_timeout, ssl_shutdown_timeout)

    cdef int _init_core(self, TLSEngine engine, object loop, object app_protocol,
                        object sslcontext, object waiter, bint call_connection_made,
                        double ssl_handshake_timeout, double ssl_shutdown_timeout) except -1:
        # __init__'s work, for a constructor in C (zerosock._aio_tls_c's for accepted connections).
        self._engine = engine
        self._sslobj = engine.sslobj
        self._sslcontext = sslcontext
        self._waiter = waiter
        self._loop = loop
        self._set_app_protocol(app_protocol)
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._tls_state = UNWRAPPED
        self._app_state = APP_INIT if call_connection_made else APP_CON_MADE
        self._incoming_high_water = DEFAULT_READ_HIGH
        self._incoming_low_water = DEFAULT_READ_LOW
        self._outgoing_high_water = DEFAULT_WRITE_HIGH
        self._outgoing_low_water = DEFAULT_WRITE_LOW
        return 0

    # -- the attributes the stdlib's SSLProtocol has ----------------------------

    @property
    def _state(self):
        return _STATE_NAMES[self._tls_state]

    def __repr__(self):
        return f"<TLSProtocol {_STATE_NAMES[self._tls_state]} engine={type(self._engine).__name__}>"

    def _set_app_protocol(self, app_protocol):
        self._app_protocol = app_protocol
        if hasattr(app_protocol, "get_buffer") and isinstance(app_protocol, _BufferedProtocol):
            self._app_get_buffer = app_protocol.get_buffer
            self._app_buffer_updated = app_protocol.buffer_updated
            self._app_is_buffer = True
        else:
            self._app_get_buffer = self._app_buffer_updated = None
            self._app_is_buffer = False

    cdef int _wakeup_waiter(self, exc=None) except -1:
        waiter = self._waiter
        if waiter is None:
            return 0
        self._waiter = None
        if not waiter.cancelled():
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(None)
        return 0

    def _get_app_transport(self):
        if self._app_transport is None:
            raise RuntimeError("Creating _SSLProtocolTransport twice")
        return self._app_transport

    # -- the protocol the socket transport sees -------------------------------------

    def connection_made(self, transport):
        self._connection_made(transport)

    cdef int _connection_made(self, object transport) except -1:
        self._transport = transport
        core = getattr(transport, "_core", None)
        self._core = core if isinstance(core, TransportCore) else None
        self._start_handshake()
        return 0

    def connection_lost(self, exc):
        self._write_backlog = None
        self._write_buffer_size = 0
        self._engine.discard_outgoing()
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

    cdef int wire_readable(self, zs_wire *wire) except -1:
        """Ciphertext waits on ``wire``: the one way it comes in, in every
        state, from our socket transport and from buffer_updated() alike.
        The engine takes it as the state's step asks; what the step did not
        ask for it keeps, and the step runs again for that."""
        cdef Py_ssize_t held
        self._engine.plug(wire)
        try:
            self._on_ciphertext()
        finally:
            held = self._engine.unplug()
        if held:
            self._on_ciphertext()
        return 0

    def get_buffer(self, n):
        # The connection's own: a lender (a TLS layer under this one) may fill
        # it with the GIL released, while another thread's lender fills its own.
        if self._lent is None:
            self._lent = bytearray(IO_CHUNK)
            self._lent_view = memoryview(self._lent)
        return self._lent_view

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef zs_wire wire
        if self._lent is None or nbytes < 0 or nbytes > IO_CHUNK:
            raise ValueError("buffer_updated() beyond the buffer get_buffer() gave")
        zs_wire_lend_memory(&wire, PyByteArray_AS_STRING(self._lent), <size_t>nbytes)
        self.wire_readable(&wire)

    cdef inline int _on_ciphertext(self) except -1:
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

    # The stdlib keeps its extra info in a dict; the same entries live in
    # fields here, and the dict is made only for code that asks for it.
    @property
    def _extra(self):
        if self._extra_made is None:
            self._extra_made = {"sslcontext": self._sslcontext}
            if self._handshake_extras:
                self._extra_made.update(self._handshake_extra())
        return self._extra_made

    def _handshake_extra(self):
        if self._session_info_due:
            # Read now: a session that cannot renegotiate reports what it
            # reported at the end of its handshake, and an idle connection
            # holds no tuple nobody asked for.
            self._session_info_due = False
            sslobj = self._sslobj
            session = sslobj._sslobj if type(sslobj) is _SSLObject else sslobj
            self._cipher = session.cipher()
            self._compression = session.compression()
        return {"peercert": self._peercert, "cipher": self._cipher,
                "compression": self._compression, "ssl_object": self._sslobj}

    def _get_extra_info(self, name, default=None):
        extra = self._extra_made
        if extra is not None:
            if name in extra:
                return extra[name]
        elif name == "sslcontext":
            return self._sslcontext
        elif self._handshake_extras and name in ("peercert", "cipher", "compression", "ssl_object"):
            return self._handshake_extra()[name]
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        return default

    # -- handshake -------------------------------------------------------------------

    cdef int _start_handshake(self) except -1:
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
        return 0

    def _check_handshake_timeout(self):
        if self._tls_state == DO_HANDSHAKE:
            timeout = self._ssl_handshake_timeout
            if timeout == int(timeout):
                timeout = int(timeout)  # the stdlib prints the number it was given
            msg = (f"SSL handshake is taking longer than {timeout} seconds: "
                   f"aborting the connection")
            self._fatal_error(ConnectionAbortedError(msg))

    cdef int _do_handshake(self) except -1:
        try:
            done = self._engine.handshake()
        except _SSLError as exc:
            self._handshake_complete(exc)
            return 0
        if done:
            self._handshake_complete(None)
        else:
            self._process_outgoing()
        return 0

    def _on_handshake_complete(self, handshake_exc):
        self._handshake_complete(handshake_exc)

    cdef int _handshake_complete(self, object handshake_exc) except -1:
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
            session = sslobj._sslobj if type(sslobj) is _SSLObject else sslobj  # _ssl's, for its methods
            peercert = session.getpeercert()
        except Exception as exc:
            self._tls_state = UNWRAPPED
            if isinstance(exc, _CertificateError):
                msg = "SSL handshake failed on verifying the certificate"
            else:
                msg = "SSL handshake failed"
            self._fatal_error(exc, msg)
            self._wakeup_waiter(exc)
            return 0
        if self._loop.get_debug():
            dt = self._loop.time() - self._handshake_start_time
            logger.debug("%r: SSL handshake took %.1f ms", self, dt * 1e3)
        self._peercert = peercert
        if self._engine.renegotiable():
            self._cipher = session.cipher()
            self._compression = session.compression()
        else:
            self._session_info_due = True
        self._handshake_extras = True
        if self._extra_made is not None:
            self._extra_made.update(self._handshake_extra())
        if self._app_state == APP_INIT:
            self._app_state = APP_CON_MADE
            if self._app_transport is None:
                raise RuntimeError("Creating _SSLProtocolTransport twice")
            self._app_protocol.connection_made(self._app_transport)
        self._wakeup_waiter()
        self._do_read()
        return 0

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
            self._do_flush()
            # The stdlib arms the timeout first; armed only now, it is not
            # made at all when the shutdown completed at once (the peer's
            # close_notify came first, as a client that hangs up sends it),
            # and is the same timeout otherwise.
            if (not self._shutdown_completed
                    and (self._tls_state == FLUSHING or self._tls_state == SHUTDOWN)):
                self._shutdown_timeout_handle = self._loop.call_later(
                    self._ssl_shutdown_timeout, self._check_shutdown_timeout)

    def _check_shutdown_timeout(self):
        if self._tls_state == FLUSHING or self._tls_state == SHUTDOWN:
            self._transport._force_close(exceptions.TimeoutError("SSL shutdown timed out"))

    cdef int _do_flush(self) except -1:
        # All plaintext already received reaches the application before the
        # shutdown (the stdlib reads one buffer's worth and drops the rest).
        self._more = True
        while self._more and self._tls_state == FLUSHING and not self._app_reading_paused:
            self._more = False
            self._do_read()
        if self._tls_state != FLUSHING:
            if self._tls_state == SHUTDOWN:
                return self._do_shutdown()
            return 0
        self._tls_state = SHUTDOWN
        self._do_shutdown()
        return 0

    cdef int _do_shutdown(self) except -1:
        try:
            done = self._eof_received or self._engine.shutdown()
        except _SSLError as exc:
            self._on_shutdown_complete(exc)
            return 0
        self._process_outgoing()
        if done:
            self._call_eof_received()
            self._on_shutdown_complete(None)
        return 0

    cdef int _on_shutdown_complete(self, shutdown_exc) except -1:
        self._shutdown_completed = True
        if self._shutdown_timeout_handle is not None:
            self._shutdown_timeout_handle.cancel()
            self._shutdown_timeout_handle = None
        if shutdown_exc:
            self._fatal_error(shutdown_exc)
        else:
            self._loop.call_soon(self._transport.close)
        return 0

    def _abort(self, exc=None):
        self._tls_state = UNWRAPPED
        if self._transport is not None:
            if exc is None:
                self._transport.abort()
            else:
                self._transport._force_close(exc)

    # -- outgoing ------------------------------------------------------------------------

    cdef inline Py_ssize_t _encrypt(self, object data) except -1:
        """``data`` to the engine: the byte count it did not take.  While the
        socket transport has nothing queued, the records leave as they are
        made.  (An exception from the engine fails the connection: what a
        send met before it goes unreported.)"""
        cdef TransportCore core = self._core  # held: reporting a send error runs Python code
        cdef zs_wire wire
        cdef Py_ssize_t left
        if core is None or self._ssl_writing_paused:
            return self._engine.write(data, NULL)
        core.lend_wire(&wire)
        left = self._engine.write(data, &wire)
        if zs_wire_to_report(&wire):
            core.wire_returned(&wire)
        return left

    cdef int _write_one(self, object data) except -1:
        """The application transport's write(): encrypted now when nothing waits."""
        cdef Py_ssize_t left
        if self._tls_state != WRAPPED or self._write_backlog:
            self._write_appdata((data,))
            return 0
        try:
            left = self._encrypt(data)
            if left:
                # Not all went (a handshake message is due first): the rest waits, as in the stdlib.
                view = memoryview(data).cast("B")
                self._backlog_append(view[len(view) - left:])
                self._write_buffer_size += left
            self._process_outgoing()
        except Exception as ex:
            self._fatal_error(ex, "Fatal error on SSL protocol")
        return 0

    def _write_appdata(self, list_of_data):
        if self._tls_state == FLUSHING or self._tls_state == SHUTDOWN or self._tls_state == UNWRAPPED:
            if self._conn_lost >= LOG_THRESHOLD:
                logger.warning("SSL connection is closed")
            self._conn_lost += 1
            return
        for data in list_of_data:
            self._backlog_append(data)
            self._write_buffer_size += len(data)
        try:
            if self._tls_state == WRAPPED:
                self._do_write()
        except Exception as ex:
            self._fatal_error(ex, "Fatal error on SSL protocol")

    cdef int _backlog_append(self, object data) except -1:
        # The deque is made when plaintext first has to wait, and dropped
        # when it is empty again: an idle connection holds none.
        if self._write_backlog is None:
            self._write_backlog = collections.deque()
        self._write_backlog.append(data)
        return 0

    cdef int _do_write(self) except -1:
        cdef Py_ssize_t left, data_len
        backlog = self._write_backlog
        while backlog:
            data = backlog[0]
            data_len = len(data)
            left = self._encrypt(data)
            if not left:
                backlog.popleft()
                self._write_buffer_size -= data_len
                continue
            view = memoryview(data).cast("B")
            if left < len(view):
                # Counted as the stdlib counts: len() of what is left.
                backlog[0] = view[len(view) - left:]
                self._write_buffer_size -= data_len - left
            break  # the session waits for the peer
        if backlog is not None and not backlog and self._write_backlog is backlog:
            self._write_backlog = None
        self._process_outgoing()
        return 0

    cdef inline int _process_outgoing(self) except -1:
        cdef TransportCore core = self._core  # held: a write may run Python code
        cdef Py_ssize_t waiting
        if self._ssl_writing_paused:
            waiting = self._engine.outgoing_size()
        else:
            waiting = self._engine.flush(core, self._transport)
        return self._control_app_writing_at(waiting + self._write_buffer_size)

    # -- incoming --------------------------------------------------------------------------

    def _do_read_soon(self):
        self._do_read()

    cdef int _do_read(self) except -1:
        if self._tls_state != WRAPPED and self._tls_state != FLUSHING:
            return 0
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
        return 0

    cdef int _do_read_buffered(self) except -1:
        cdef Py_buffer view
        cdef Py_ssize_t offset = 0, wants, count = 1
        cdef TLSEngine engine = self._engine
        buf = self._app_get_buffer(engine.read_hint())
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        try:
            wants = view.len
            while offset < wants:
                count = engine.read_into(<char *>view.buf + offset, wants - offset)
                if count <= 0:
                    break
                offset += count
                if offset < wants and engine.drained():
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
        return 0

    cdef inline int _do_read_copied(self) except -1:
        cdef bint closed = False
        data = self._engine.read_all(&closed)
        if data is not None:
            self._app_protocol.data_received(data)
        if closed:  # close_notify
            self._call_eof_received()
            self._start_shutdown()
        return 0

    cdef int _call_eof_received(self) except -1:
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
        return 0

    # -- flow control ------------------------------------------------------------------------

    cdef inline Py_ssize_t _get_write_buffer_size(self) except -1:
        return self._engine.outgoing_size() + self._write_buffer_size

    cdef inline Py_ssize_t _get_read_buffer_size(self) except -1:
        return self._engine.incoming_size()

    cdef int _control_app_writing(self) except -1:
        return self._control_app_writing_at(self._get_write_buffer_size())

    cdef inline int _control_app_writing_at(self, Py_ssize_t size) except -1:
        if size >= self._outgoing_high_water and not self._app_writing_paused:
            self._app_writing_paused = True
            self._tell_app("pause_writing")
        elif size <= self._outgoing_low_water and self._app_writing_paused:
            self._app_writing_paused = False
            self._tell_app("resume_writing")
        return 0

    cdef int _tell_app(self, str method) except -1:
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
        return 0

    def _set_write_buffer_limits(self, high=None, low=None):
        self._outgoing_high_water, self._outgoing_low_water = _flow_limits(
            high, low, HIGH_WATER_WRITE)

    def _set_read_buffer_limits(self, high=None, low=None):
        self._incoming_high_water, self._incoming_low_water = _flow_limits(
            high, low, HIGH_WATER_READ)

    cdef inline int _control_ssl_reading(self) except -1:
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
