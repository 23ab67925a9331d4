# cython: language_level=3
"""The C TLS layer of zerosock.aio, as the loop uses it: which engine runs,
the protocol a TLS connection puts on its socket transport (the stdlib's
``sslproto.SSLProtocol``) and the transport its application writes to.

The layer is split by responsibility: the state machine
(zerosock._aio_tls_protocol_c) over the engine interface
(zerosock._aio_tls_engine_c) and its two engines, OpenSSL driven directly
(zerosock._aio_tls_openssl_c) and the stdlib's MemoryBIO
(zerosock._aio_tls_memorybio_c).  ``ZEROSOCK_TLS_ENGINE`` picks ``openssl``
(the default where its import checks pass), ``memorybio``, or ``stdlib``:
the stdlib's own SSLProtocol, always used before 3.11, whose TLS protocol
has other semantics."""

import os
import socket
import sys
import warnings
from asyncio import constants, protocols, sslproto, transports
from asyncio.log import logger

try:
    import ssl
    import _ssl
except ImportError:  # pragma: no cover - an interpreter without ssl
    ssl = None

from zerosock import _cpython_c
from zerosock._aio_tls_engine_c cimport IO_CHUNK
from zerosock._aio_tls_protocol_c cimport TLSProtocolCore

from zerosock._aio_tls_memorybio_c import MemoryBIOEngine
from zerosock._aio_tls_openssl_c import OpenSSLEngine, unavailable_reason

cdef double SSL_HANDSHAKE_TIMEOUT = constants.SSL_HANDSHAKE_TIMEOUT
cdef double SSL_SHUTDOWN_TIMEOUT = getattr(constants, "SSL_SHUTDOWN_TIMEOUT", 30.0)


# -- kernel TLS ------------------------------------------------------------------------

# OpenSSL's SSL_OP_ENABLE_KTLS (3.0+); the ssl module names it from 3.12 on.
_OP_ENABLE_KTLS = getattr(ssl, "OP_ENABLE_KTLS", 1 << 3) if ssl is not None else 0
# A context's options as the int _ssl keeps (ssl.SSLContext.options makes an
# enum member of it each time it is read).
_context_options = _ssl._SSLContext.options.__get__ if ssl is not None else None
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


cdef str _ktls_state(object sslcontext, object transport):
    """Kernel TLS for one connection: "off" (the context did not ask for
    ``OP_ENABLE_KTLS``), "unavailable" (the host cannot), "refused" (the
    kernel would not attach TLS to the socket) or "attached".  Every state
    runs the records through the user-space engine: zerosock hands no keys
    to the kernel, so an attached socket passes the records through as TCP."""
    if not _context_options(sslcontext) & _OP_ENABLE_KTLS:
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


# -- which engine runs --------------------------------------------------------------

cdef bint _c_engine_ready = False


cdef str _choose_engine():
    global _c_engine_ready
    wanted = os.environ.get("ZEROSOCK_TLS_ENGINE", "").strip().lower()
    if ssl is None or wanted == "stdlib" or sys.version_info < (3, 11):
        # Before 3.11 the stdlib's TLS protocol has other semantics: keep it.
        return "stdlib"
    if wanted == "memorybio":
        return "memorybio"
    why = _cpython_c.check("ssl_object_layout", unavailable_reason)
    if why is not None:
        logger.debug("zerosock.aio: TLS over ssl.MemoryBIO (%s)", why)
        return "memorybio"
    _c_engine_ready = True
    return "openssl"


TLS_ENGINE = _choose_engine()


def _c_engine_available():
    """Whether this interpreter's OpenSSL passed the import checks."""
    return _c_engine_ready


def _force_engine(str name):
    """Run new TLS connections on engine ``name``; the previous one.  For tests."""
    global TLS_ENGINE
    if name not in ("openssl", "memorybio", "stdlib"):
        raise ValueError(f"unknown TLS engine {name!r}")
    if name == "openssl" and not _c_engine_ready:
        raise RuntimeError("the OpenSSL engine is not available here")
    previous = TLS_ENGINE
    TLS_ENGINE = name
    return previous


# What ssl.SSLContext.wrap_bio() does for a context of the stdlib's classes,
# done here without its two Python frames (see _wrap_bio_directly).
if ssl is not None:
    _SSLObject = ssl.SSLObject
    _std_wrap_bio = ssl.SSLContext.wrap_bio
    _std_create = ssl.SSLObject.__dict__["_create"]
    _STD_WRAP_BIO_NAMES = (_std_wrap_bio.__code__.co_names == ("sslobject_class", "_create", "_encode_hostname")
                           and _std_create.__func__.__code__.co_names == ("__new__", "_wrap_bio", "_sslobj"))


cdef object _wrap_bio_directly(object sslcontext, object incoming, object outgoing, bint server_side):
    """A server-side SSLObject as the stdlib's wrap_bio() and SSLObject._create()
    make it (a bare SSLObject owning _ssl's session), or None where the
    context's class, its sslobject_class or those methods are not the stdlib's."""
    if not (_STD_WRAP_BIO_NAMES and server_side and type(sslcontext).wrap_bio is _std_wrap_bio
            and sslcontext.sslobject_class is _SSLObject
            and _SSLObject.__dict__.get("_create") is _std_create):
        return None
    sslobj = _SSLObject.__new__(_SSLObject)
    sslobj._sslobj = sslcontext._wrap_bio(incoming, outgoing, server_side=True,
                                          server_hostname=None, owner=sslobj, session=None)
    return sslobj


def new_engine(str kind, sslcontext, bint server_side=False, server_hostname=None):
    """A new TLS session of ``sslcontext`` with its engine: the OpenSSL
    engine when ``kind`` asks for it and it can drive the session, else the
    MemoryBIO engine."""
    return _new_engine(kind, sslcontext, server_side, server_hostname)


cdef object _new_engine(str kind, object sslcontext, bint server_side, object server_hostname):
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = None
    if server_hostname is None:
        sslobj = _wrap_bio_directly(sslcontext, incoming, outgoing, server_side)
    if sslobj is None:
        sslobj = sslcontext.wrap_bio(incoming, outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
    if kind == "openssl":
        try:
            return OpenSSLEngine(sslobj, incoming, outgoing)
        except TypeError:
            pass  # not _ssl's session over these BIOs (a context's own sslobject_class)
    return MemoryBIOEngine(sslobj, incoming, outgoing)


# -- the protocol on the socket transport --------------------------------------------

class TLSProtocol(TLSProtocolCore, protocols.BufferedProtocol):
    """The TLS layer on a socket transport (the stdlib's ``sslproto.SSLProtocol``)."""

    __slots__ = ("_ktls",)  # kernel TLS: see _ktls_state()
    max_size = IO_CHUNK

    def __init__(self, loop, app_protocol, sslcontext, waiter, server_side=False,
                 server_hostname=None, call_connection_made=True,
                 ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        _set_up_tls_protocol(self, loop, app_protocol, sslcontext, waiter, server_side,
                             server_hostname, call_connection_made, ssl_handshake_timeout,
                             ssl_shutdown_timeout)

    def connection_made(self, transport):
        self._ktls = _ktls_state(self._sslcontext, transport)
        (<TLSProtocolCore>self)._connection_made(transport)


cdef int _set_up_tls_protocol(object protocol, object loop, object app_protocol, object sslcontext,
                              object waiter, bint server_side, object server_hostname,
                              bint call_connection_made, object ssl_handshake_timeout,
                              object ssl_shutdown_timeout) except -1:
    """TLSProtocol's constructor: the stdlib's SSLProtocol's checks and defaults,
    its session and engine, its application transport."""
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
    engine = _new_engine(TLS_ENGINE, sslcontext, server_side,
                        server_hostname if server_hostname and not server_side else None)
    (<TLSProtocolCore>protocol)._init_core(engine, loop, app_protocol, sslcontext, waiter,
                                           call_connection_made, ssl_handshake_timeout,
                                           ssl_shutdown_timeout)
    protocol._ktls = "off"
    (<TLSProtocolCore>protocol)._app_transport = SSLProtocolTransport(loop, protocol)
    return 0


# -- the transport the application sees ------------------------------------------------------

cdef TLSProtocolCore _ssl_protocol_of(object transport, str attribute):
    """``transport._ssl_protocol`` for a method that uses its ``attribute``:
    once a second close() let go of it (None), the AttributeError the
    stdlib's transport raises; anything else but our protocol, a TypeError."""
    protocol = transport._ssl_protocol
    if protocol is None:
        raise AttributeError(f"'NoneType' object has no attribute '{attribute}'")
    return <TLSProtocolCore?>protocol


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
        return not _ssl_protocol_of(self, "_app_reading_paused")._app_reading_paused

    def pause_reading(self):
        self._ssl_protocol._pause_reading()

    def resume_reading(self):
        self._ssl_protocol._resume_reading()

    def set_write_buffer_limits(self, high=None, low=None):
        self._ssl_protocol._set_write_buffer_limits(high, low)
        _ssl_protocol_of(self, "_control_app_writing")._control_app_writing()

    def get_write_buffer_limits(self):
        cdef TLSProtocolCore p = _ssl_protocol_of(self, "_outgoing_low_water")
        return (p._outgoing_low_water, p._outgoing_high_water)

    def get_write_buffer_size(self):
        return _ssl_protocol_of(self, "_get_write_buffer_size")._get_write_buffer_size()

    def set_read_buffer_limits(self, high=None, low=None):
        self._ssl_protocol._set_read_buffer_limits(high, low)
        _ssl_protocol_of(self, "_control_ssl_reading")._control_ssl_reading()

    def get_read_buffer_limits(self):
        cdef TLSProtocolCore p = _ssl_protocol_of(self, "_incoming_low_water")
        return (p._incoming_low_water, p._incoming_high_water)

    def get_read_buffer_size(self):
        return _ssl_protocol_of(self, "_get_read_buffer_size")._get_read_buffer_size()

    @property
    def _protocol_paused(self):
        # What the loop's sendfile fallback checks.
        return _ssl_protocol_of(self, "_app_writing_paused")._app_writing_paused

    def write(self, data):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, "
                            f"got {type(data).__name__}")
        if not data:
            return
        _ssl_protocol_of(self, "_write_appdata")._write_one(data)

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
        cdef TLSProtocolCore p = _ssl_protocol_of(self, "_write_backlog")
        p._backlog_append(data)
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


cdef bint uses_own_tls_protocol() except -1:
    """Whether new TLS connections get zerosock's TLS protocol (not the stdlib's)."""
    return TLS_ENGINE != "stdlib"


cdef object new_server_tls_protocol(object loop, object app_protocol, object sslcontext,
                                    object ssl_handshake_timeout, object ssl_shutdown_timeout):
    """The TLS protocol of a connection a TLS listener accepted, as the loop's
    _make_ssl_transport makes it, with no waiter (nothing awaits the handshake)."""
    protocol = TLSProtocol.__new__(TLSProtocol)
    _set_up_tls_protocol(protocol, loop, app_protocol, sslcontext, None, True, None, True,
                         ssl_handshake_timeout, ssl_shutdown_timeout)
    return protocol


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
