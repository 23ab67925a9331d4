# cython: language_level=3
"""The accept path of zerosock.aio: a listening socket's waiting connections
taken in one batch, each one's protocol and transport made in C.

The stdlib's ``_accept_connection`` makes a socket object, a coroutine and a
Task per connection (``_accept_connection2``), which makes the protocol and
the transport and waits for a Future the transport completes.  Here
``EventLoop._accept_connection`` is a C method that calls ``accept4()`` until
the queue is empty (at most ``backlog`` times, as the stdlib does) and, for
each descriptor, calls the protocol factory and makes the transport in a copy
of the context, as the Task would have run them; the socket object is made
only if asked for.  A TLS listener's connections get the engine's TLS
protocol on that transport with no waiter: the Task only waited for the
handshake to close the transport on failure, which the protocol does itself
(its errors logged as before; the application's connection_made once the
handshake is done).  What it cannot do as the stdlib would (the stdlib's
TLS protocol, debug mode, a listening socket of another class, a loop whose
transport-making methods were replaced) goes to the stdlib's method.

On the io_uring backend a listener's connections are accepted by the ring
(a multishot accept, see ``accept_on_ring``) and wait there; the batch takes
them from the ring instead of calling ``accept4()``, and is otherwise the
same, errors included.  The ring's completion has no peer address: it is
asked of the socket (as accept() answers it, even after a reset).  Should
the C path not apply to a connection (debug mode switched on meanwhile, a
method replaced), that one goes the stdlib's way, a Task per connection."""

cimport cython
from cpython.contextvars cimport PyContext_Copy, PyContext_CopyCurrent
from cpython.object cimport PyObject

import contextvars
import socket
import weakref
from asyncio import constants, streams, trsock
from asyncio.log import logger

from zerosock._aio_context cimport run_in_context
from zerosock._aio_ring_c cimport RingPoller
from zerosock._aio_ring_c import ring_of
from zerosock._aio_tls_c cimport new_server_tls_protocol, uses_own_tls_protocol
from zerosock._aio_transport_c cimport TransportTable, new_accepted_transport
from zerosock._cmethod_c cimport METH_FASTCALL, METH_KEYWORDS, c_method
from zerosock._cpython_c cimport keeps_methods, zs_type_memo, zs_version_tags_on
from zerosock._shim cimport (
    ZS_EINTR, ZS_ENOBUFS, ZS_INVALID_SOCKET, getsockname, sockaddr, sockaddr_storage,
    zs_accept_nonblocking, zs_close, zs_is_would_block, zs_last_error, zs_sock_t, zs_socklen_t,
    zs_strerror,
)
from zerosock._cpython_c import enabled
from zerosock._sockaddr_c cimport make_address

from zerosock._aio_streams_c import adopt_stream_protocol

import errno as _errno
import sys

__all__ = ["accept_connection", "accept_on_ring", "use_loop_class"]

zs_version_tags_on = enabled("type_version_tags")

cdef int ECONNABORTED = _errno.ECONNABORTED
# From 3.14 the stdlib's batch skips a connection aborted before accept()
# rather than ending there, and takes up to backlog + 1.
cdef bint ABORTED_SKIPPED = sys.version_info >= (3, 14)
# What the stdlib treats as running out of a resource: log, pause, retry.
cdef int EMFILE = _errno.EMFILE
cdef int ENFILE = _errno.ENFILE
cdef int ENOMEM = _errno.ENOMEM
cdef object ACCEPT_RETRY_DELAY = constants.ACCEPT_RETRY_DELAY
cdef object _TransportSocket = trsock.TransportSocket
cdef type _StreamReaderProtocol = streams.StreamReaderProtocol
cdef type _Socket = socket.socket
cdef type _Context = contextvars.Context
cdef int AF_INET = socket.AF_INET
cdef int AF_INET6 = socket.AF_INET6
cdef object _WILDCARDS = frozenset(("0.0.0.0", "::"))


# Set by use_loop_class(): the loop class whose method this is, what it
# inherits from the stdlib, and the methods the C path stands in for.
cdef type LoopType = None
cdef object _std_accept_connection = None
cdef dict _replaced = {}                 # name -> the method the C path does the work of
cdef zs_type_memo _loop_memo             # the loop class last found to keep them


def use_loop_class(cls):
    """Make ``cls`` (zerosock.aio's EventLoop) the class whose
    ``_accept_connection`` this module provides."""
    global LoopType, _std_accept_connection
    LoopType = cls
    _std_accept_connection = cls.__base__._accept_connection
    for name in ("_make_socket_transport", "_make_ssl_transport", "_accept_connection2"):
        _replaced[name] = getattr(cls, name)


cdef inline bint _makes_connections_natively(object loop) except -1:
    """Whether the loop's class and the loop itself keep the methods whose
    work the C path does (a subclass or a patch that replaces one is called)."""
    return keeps_methods(loop, &_loop_memo, _replaced)


@cython.final
cdef class _Listener:
    """What one listening socket's batches need, read once: its descriptor,
    kind and (when it is bound to one address) the address every
    connection it accepts has.  It is the loop's (kept in its transport
    table), so no state is shared between loops or threads."""
    cdef object socket_ref
    cdef zs_sock_t fd
    cdef int family, kind, proto
    cdef object sockname  # None: asked of each connection
    cdef RingPoller ring  # the loop's ring, None on epoll


cdef _Listener _listener_of(object loop, object sock):
    """The loop's listener record for ``sock``: the last one it read, if it
    is still this socket's, else a new one."""
    table = loop._transports
    cdef TransportTable transports = table if type(table) is TransportTable else None
    cdef _Listener listener = transports.accept_listener if transports is not None else None
    if listener is not None:
        if (zs_weakref_refers_to(listener.socket_ref, sock)
                and listener.fd == <zs_sock_t>sock.fileno()):
            return listener
    listener = _Listener.__new__(_Listener)
    listener.socket_ref = weakref.ref(sock)
    listener.fd = <zs_sock_t>sock.fileno()
    listener.family = sock.family
    listener.kind = sock.type
    listener.proto = sock.proto
    listener.sockname = None
    listener.ring = ring_of(loop)
    if listener.family in (AF_INET, AF_INET6):
        # A TCP connection's local address is the one its listener is bound
        # to, unless that is a wildcard.
        address = sock.getsockname()
        if address[0] not in _WILDCARDS:
            listener.sockname = address
    if transports is not None:
        transports.accept_listener = listener
    return listener


@cython.final
@cython.freelist(8)
cdef class _Connection:
    """One accepted descriptor on its way to a transport."""
    cdef object loop
    cdef object protocol_factory
    cdef object server
    cdef _Listener listener
    cdef zs_sock_t fd
    cdef object peername          # None when an IPv4 peer is held raw:
    cdef unsigned int peer_ipv4   # its address (network order)
    cdef unsigned short peer_port # and port (0: not held)
    cdef object context
    cdef bint context_is_the_transports  # (3.15's: a copy of the server's)
    cdef bint owned   # the transport has the descriptor: it closes it
    cdef object sslcontext   # a TLS listener's: None for plain TCP
    cdef object ssl_handshake_timeout
    cdef object ssl_shutdown_timeout


cdef extern from *:
    """
    #ifdef _WIN32
    #include <ws2tcpip.h>
    #else
    #include <netinet/in.h>
    #endif
    """
    ctypedef struct zs_in_addr "struct in_addr":
        unsigned int s_addr
    ctypedef struct zs_sockaddr_in "struct sockaddr_in":
        unsigned short sin_family
        unsigned short sin_port
        zs_in_addr sin_addr
    unsigned short ntohs(unsigned short)

cdef extern from *:
    """
    /* Whether a weak reference still refers to obj (which the caller holds),
       without the weakref call's argument handling, and without
       PyWeakref_GetObject from 3.13, which deprecates it. */
    static int zs_weakref_refers_to(PyObject *ref, PyObject *obj)
    {
    #if PY_VERSION_HEX >= 0x030D0000
        PyObject *target;
        int alive = PyWeakref_GetRef(ref, &target);
        Py_XDECREF(target);
        return alive < 0 ? -1 : target == obj;
    #else
        PyObject *target = PyWeakref_GetObject(ref);
        return target == NULL ? -1 : target == obj;
    #endif
    }
    """
    int zs_weakref_refers_to(object ref, object obj) except -1


cdef int _take_peer(_Connection conn, sockaddr_storage *address, zs_socklen_t length) except -1:
    """What accept() returns as the peer's address, for the transport: an
    IPv4 one raw (its tuple made when asked for: an idle connection's bytes)."""
    cdef zs_sockaddr_in *sin = <zs_sockaddr_in *>address
    cdef int family = conn.listener.family
    if family == AF_INET and length >= sizeof(zs_sockaddr_in) and sin.sin_family == AF_INET:
        conn.peer_ipv4 = sin.sin_addr.s_addr
        conn.peer_port = ntohs(sin.sin_port)
        if conn.peer_port:
            conn.peername = None
            return 0
    conn.peer_port = 0
    conn.peername = make_address(<sockaddr *>address, length, family)
    return 0


cdef inline object _os_error(int err):
    return OSError(err, zs_strerror(err).decode("utf-8", "replace"))


cdef object _local_address(zs_sock_t fd, int family):
    cdef sockaddr_storage address
    cdef zs_socklen_t length = sizeof(address)
    if getsockname(fd, <sockaddr *>&address, &length) < 0:
        raise _os_error(zs_last_error())
    return make_address(<sockaddr *>&address, length, family)


cdef int _make_connection(object target, object unused) except -1:
    """The stdlib's _accept_connection2 up to the transport: the protocol,
    then its transport (run in the connection's own context)."""
    cdef _Connection conn = <_Connection>target
    cdef _Listener listener = conn.listener
    loop = conn.loop
    protocol = conn.protocol_factory()
    # What the loop's _make_socket_transport does first: the descriptor must
    # not belong to a transport still open, and asyncio streams get C ones.
    table = loop._transports
    if type(table) is TransportTable:
        current = (<TransportTable>table).lookup(<int>conn.fd)
    else:
        current = table.get(<int>conn.fd)
    if current is not None and not current.is_closing():
        raise RuntimeError(f"File descriptor {<int>conn.fd} is used by transport {current!r}")
    if type(protocol) is _StreamReaderProtocol:  # (what adopt_stream_protocol asks first)
        adopt_stream_protocol(protocol, loop)
    if conn.sslcontext is not None:
        # What the loop's _make_ssl_transport puts on the socket transport.
        protocol = new_server_tls_protocol(loop, protocol, conn.sslcontext,
                                           conn.ssl_handshake_timeout, conn.ssl_shutdown_timeout)
    sockname = listener.sockname
    if sockname is None:
        sockname = _local_address(conn.fd, listener.family)
    conn.owned = True
    new_accepted_transport(loop, <int>conn.fd, listener.family, listener.kind,
                           listener.proto, conn.peername, sockname, protocol, conn.server,
                           conn.context, conn.context_is_the_transports,
                           conn.peer_ipv4, conn.peer_port)
    return 0


cdef int _resource_exhausted(object loop, object sock, _Listener listener, object exc,
                             tuple serving_args) except -1:
    """What the stdlib does when accept() runs out of a resource: report it
    and stop accepting for a while (the listener stays readable)."""
    loop.call_exception_handler({
        "message": "socket.accept() out of system resource",
        "exception": exc,
        "socket": _TransportSocket(sock),
    })
    loop._remove_reader(listener.fd)  # (on the ring: its accept cancelled)
    loop.call_later(ACCEPT_RETRY_DELAY, loop._start_serving, *serving_args)
    return 0


cdef int _accept_by_task(object loop, _Listener listener, zs_sock_t fd, object peername,
                         tuple serving_args) except -1:
    """The stdlib's way for a connection the ring accepted: its socket, and a
    Task running the loop's _accept_connection2 (the arguments of
    _accept_connection less the listener and the backlog)."""
    try:
        conn = _Socket(listener.family, listener.kind, listener.proto, fileno=<int>fd)
    except BaseException:
        zs_close(fd)
        raise
    conn.setblocking(False)
    server = serving_args[3] if len(serving_args) > 3 else None
    if loop._debug:
        logger.debug("%r got a new connection from %r: %r", server, peername, conn)
    extra = {"peername": peername}
    if len(serving_args) > 7:  # 3.15: the connection runs in a copy of the server's context
        context = serving_args[7]
        context = context.copy() if context is not None else None
        accept = loop._accept_connection2(serving_args[0], conn, extra, *serving_args[2:4],
                                          *serving_args[5:7], context=context)
        loop.create_task(accept, context=context)
    else:
        accept = loop._accept_connection2(serving_args[0], conn, extra, *serving_args[2:4],
                                          *serving_args[5:])
        loop.create_task(accept)
    return 0


cdef object _accept_batch(object loop, object protocol_factory, object sock, object sslcontext,
                          object server, Py_ssize_t backlog, object ssl_handshake_timeout,
                          object ssl_shutdown_timeout, object context, tuple serving_args,
                          bint native):
    """Up to ``backlog`` connections (from 3.14 one more), taken from the
    ring when it accepts for the listener, else by accept4(); each one's
    protocol and transport made in C (``native``), else (on the ring only)
    by a Task as the stdlib does."""
    cdef _Listener listener = _listener_of(loop, sock)
    cdef RingPoller ring = listener.ring
    cdef bint from_ring = ring is not None and ring.accepts(<int>listener.fd)
    cdef _Connection conn
    cdef sockaddr_storage address
    cdef zs_socklen_t length
    cdef zs_sock_t fd
    cdef Py_ssize_t i
    cdef int err, unused, res
    for i in range(backlog + 1 if ABORTED_SKIPPED else backlog):
        length = sizeof(address)
        if from_ring:
            if not ring.take_accepted(<int>listener.fd, &res):
                return None  # none waits
            fd = <zs_sock_t>res if res >= 0 else ZS_INVALID_SOCKET
            err = -res
            if res >= 0 and ring.accepted_peer(res, listener.family, <sockaddr *>&address,
                                               &length) < 0:
                length = 0  # (not a connected socket any more: no address)
        else:
            fd = zs_accept_nonblocking(listener.fd, <sockaddr *>&address, &length)
            err = zs_last_error() if fd == ZS_INVALID_SOCKET else 0
        if fd == ZS_INVALID_SOCKET:
            if err == ECONNABORTED and ABORTED_SKIPPED:
                continue
            if zs_is_would_block(err) or err == ZS_EINTR or err == ECONNABORTED:
                return None  # the queue is empty (or the connection gone)
            exc = _os_error(err)
            if err in (EMFILE, ENFILE, ZS_ENOBUFS, ENOMEM):
                _resource_exhausted(loop, sock, listener, exc, serving_args)
                return None
            raise exc  # the loop reports it, as for the stdlib's method
        if not native:
            _accept_by_task(loop, listener, fd, make_address(<sockaddr *>&address, length,
                                                            listener.family), serving_args)
            continue
        conn = _Connection.__new__(_Connection)
        conn.loop = loop
        conn.protocol_factory = protocol_factory
        conn.server = server
        conn.listener = listener
        conn.fd = fd
        conn.owned = False
        conn.sslcontext = sslcontext
        conn.ssl_handshake_timeout = ssl_handshake_timeout
        conn.ssl_shutdown_timeout = ssl_shutdown_timeout
        # A Task would have run this in a copy of the server's context (from
        # 3.15, which passes it) or else of the current one.
        conn.context_is_the_transports = context is not None
        conn.context = PyContext_Copy(context) if context is not None else PyContext_CopyCurrent()
        try:
            _take_peer(conn, &address, length)
            failure = run_in_context(conn.context, _make_connection, conn, None, &unused)
        except BaseException:
            if not conn.owned:
                zs_close(fd)
            raise
        if failure is not None and not conn.owned:
            # As the stdlib: reported in debug mode only (this path is not taken
            # then), the connection dropped.
            zs_close(fd)
    return None


cdef object _accept_connection(object loop, PyObject **args, Py_ssize_t nargs, PyObject *kwnames):
    # (protocol_factory, sock, sslcontext=None, server=None, backlog=100,
    #  ssl_handshake_timeout=None, ssl_shutdown_timeout=None, context=None),
    # the last from 3.15
    cdef Py_ssize_t backlog = 100
    cdef bint native
    sslcontext = <object>args[2] if nargs > 2 else None
    if (kwnames == NULL and 2 <= nargs <= 8 and type(<object>args[1]) is _Socket
            and (nargs < 8 or <object>args[7] is None or type(<object>args[7]) is _Context)):
        native = ((sslcontext is None or uses_own_tls_protocol())
                  and not loop._debug and _makes_connections_natively(loop))
        # (what the ring accepted waits there: taken by the batch either way)
        if native or _ring_accepts(loop, <object>args[1]):
            if nargs > 4:
                backlog = <object>args[4]
            return _accept_batch(loop, <object>args[0], <object>args[1],
                                 sslcontext if sslcontext else None,
                                 <object>args[3] if nargs > 3 else None, backlog,
                                 <object>args[5] if nargs > 5 else None,
                                 <object>args[6] if nargs > 6 else None,
                                 <object>args[7] if nargs > 7 else None,
                                 tuple([<object>args[i] for i in range(nargs)]), native)
    positional = tuple([<object>args[i] for i in range(nargs)])
    keywords = {}
    if kwnames != NULL:
        for i, name in enumerate(<tuple><object>kwnames):
            keywords[name] = <object>args[nargs + i]
    return _std_accept_connection(loop, *positional, **keywords)


cdef bint _ring_accepts(object loop, object sock) except -1:
    if ring_of(loop) is None:
        return False
    cdef _Listener listener = _listener_of(loop, sock)
    return listener.ring.accepts(<int>listener.fd)


def accept_on_ring(loop, sock, context):
    """Have the loop's ring accept ``sock``'s connections (a multishot accept
    in place of its poll) when the loop polls with one, the batch takes what
    its reader hands _accept_connection (a plain ``socket.socket``, the
    server's ``context`` None or a Context) and the kernel has multishot
    accept; else it stays on readiness and ``accept4()``.  Called once the
    loop watches the listener (``_start_serving``)."""
    ring = ring_of(loop)
    if ring is not None and type(sock) is _Socket and (context is None
                                                       or type(context) is _Context):
        ring.accept_on(sock.fileno())


accept_connection = c_method(
    <void *>_accept_connection, METH_FASTCALL | METH_KEYWORDS,
    b"_accept_connection($self, protocol_factory, sock, sslcontext=None, server=None, "
    b"backlog=100, *timeouts_and_context)\n--\n\n"
    b"Accept the connections waiting on a listening socket, each with its protocol "
    b"and transport.")
