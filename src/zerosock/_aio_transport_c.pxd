cimport cython
from cpython.object cimport PyObject
from zerosock._selectors_c cimport Selector
from zerosock._shim cimport zs_sock_t
from zerosock._wire cimport zs_wire, zs_wire_lend_socket


cdef class ReadSink:
    """A C reader that a transport fills without calling its protocol: the
    transport copies each read into it before any Python code runs
    (zerosock._aio_streams_c's StreamReader state is one).  feed() returns
    1 when it ran no Python code and did nothing that can make a descriptor
    ready (at most it completed a Future whose loop's call_soon is C), else 0:
    see LoopCore.run_once."""
    cdef int feed(self, const char *data, Py_ssize_t size) except -1


cdef class ReadTarget:
    """A protocol that takes its reads off the socket itself (the TLS layer:
    straight into OpenSSL's record buffer).  For each readiness event the
    transport lends it the socket as a zs_wire (zs_wire.h) good for one
    receive, and after the call acts on the end of the stream or the error
    that receive met, as its own read would."""
    cdef int wire_readable(self, zs_wire *wire) except -1


cdef class TransportCore:
    cdef public object owner         # the SocketTransport the protocol sees
    cdef public object _loop
    cdef public object _protocol
    cdef object _sock_obj            # the socket.socket, made on first need for an accepted fd
    cdef int _sock_family            # what that socket is made with
    cdef int _sock_type
    cdef int _sock_proto
    cdef bint _fd_closed             # the descriptor is closed: _sock reads None
    cdef PyObject *_table            # the TransportTable it was entered in (owned), or NULL
    cdef public object _server
    cdef object _extra_made          # the extra-info dict, made on first need (see _extra)
    cdef object _sockname            # its entries until then
    cdef object _peername            # (None while held raw, below)
    cdef unsigned int _peer_ipv4     # an accepted IPv4 peer's address (network order) and port,
    cdef unsigned short _peer_port   # until its peername is asked for (port 0: none held)
    cdef bint _peername_given        # the caller's extra named the peer: its key comes first
    cdef object _closed_sock         # the socket once closed, while no extra dict was made
    cdef public object _empty_waiter
    cdef public object _context      # what the protocol's callbacks run in (3.15), or None
    cdef readonly int _sock_fd
    cdef zs_sock_t _fd
    cdef public bint _closing        # close() or a fatal error began
    cdef public bint _paused         # pause_reading()
    cdef public bint _eof            # write_eof()
    cdef public bint _protocol_connected
    cdef public bint _protocol_paused  # pause_writing() was called
    cdef public int _conn_lost
    cdef public Py_ssize_t _high_water
    cdef public Py_ssize_t _low_water
    cdef bint _buffered              # the protocol is a BufferedProtocol
    cdef object _get_buffer          # the protocol's methods that reads call: the
    cdef object _buffer_updated      # functions of its class (called with it) where
    cdef object _data_received       # they are its bound methods, see _unbound
    cdef unsigned char _unbound      # which of them are its class's functions
    cdef ReadSink _sink              # reads bypass the protocol into this, when set
    cdef ReadTarget _target          # reads land in this protocol's memory, when set
    # Queued output: bytes objects, the first one sent from _head_offset on.
    cdef object _queue               # collections.deque while output is queued, else None
    cdef Py_ssize_t _head_offset
    cdef Py_ssize_t _buffer_size
    cdef object _spare               # a bytes of the last read, referenced by nobody else
    cdef object __weakref__

    cdef int _attach(self, owner, loop, sock, protocol, extra) except -1
    cdef int _enter_in_table(self, object loop) except -1
    cdef int _bind_protocol(self, object protocol) except -1
    cdef int _close_fd(self) except -1
    cdef int c_close(self) except -1
    cdef int _remove_io(self, bint writing) except -1
    cdef int _attach_fd(self) except -1
    cdef int _begin_reading(self, object context) except -1
    cdef Selector _native_selector(self, object loop)
    cdef object extra_dict(self)
    cdef object _peer(self)
    cdef object _method_of(self, object protocol, str name, int unbound)
    cdef object _closed_socket(self)
    cdef object unmade_extra(self, str name, object default)
    cdef int c_write(self, object data) except -1
    cdef int write_mem(self, const char *ptr, Py_ssize_t length) except -1
    cdef inline void lend_wire(self, zs_wire *wire) noexcept:
        """The socket lent for sending (zs_wire.h): sends go straight out
        while nothing is queued before them.  What a send met is acted on by
        wire_returned(), when zs_wire_to_report() says there is anything."""
        zs_wire_lend_socket(wire, self._fd, 0, self._buffer_size == 0 and not self._conn_lost)
    cdef int wire_returned(self, zs_wire *wire) except -1
    cdef object _send_now(self, const char *ptr, Py_ssize_t length, object data)
    cdef int _queue_rest(self, object rest) except -1
    cdef int read_ready(self) except -1
    cdef int write_ready(self) except -1
    # On a loop's io_uring: settle the completions of the core's slot that need
    # no Python code; whether nothing is left to run (see RingPoller).
    cdef bint settle_ring(self) except -1
    cdef object protocol_buffer(self, Py_buffer *view, char **ptr, Py_ssize_t *length)
    # Shared by the readiness and completion reads, never overridden: final
    # and inline, so that the readiness read costs no call for it.
    @cython.final
    cdef inline int hand_data(self, object data) except -1
    cdef inline int hand_filled(self, Py_ssize_t n) except -1
    cdef int _read_into_buffer(self) except -1
    cdef long _recv_scratch(self) except -2
    cdef int _read_bytes(self) except -1
    cdef int _read_into_sink(self) except -1
    cdef int _read_into_target(self) except -1
    cdef int _on_eof(self) except -1
    cdef int _consume(self, Py_ssize_t n) except -1
    cdef int _write_failed(self, object exc) except -1
    cdef int _clear_queue(self) except -1
    cdef int _add_io(self, bint writing, object context=*) except -1
    cdef int _pause_check(self) except -1
    cdef int _resume_check(self) except -1
    cdef int _tell_protocol(self, str method) except -1
    cdef bint _drop_queued(self) except -1
    cdef int _failed(self, BaseException exc, str message, object reported=*) except -1


cdef class TransportTable:
    """The loop's ``_transports``: fd -> the transport using it.  The C
    transports are entered by a borrowed pointer to their core, which leaves
    the table as it is freed; any other transport by a weak reference, as in
    the stdlib's WeakValueDictionary."""
    cdef PyObject **cores            # indexed by fd; borrowed TransportCore or NULL
    cdef Py_ssize_t ncores
    cdef dict others                 # fd -> weakref.ref of any other transport
    # What native_io() last found true, for the loop at memo_loop (borrowed, compared only).
    cdef PyObject *memo_loop
    cdef object loop_state
    cdef Py_ssize_t loop_state_size
    cdef object selector
    cdef object selector_state
    cdef Py_ssize_t selector_state_size
    cdef bint debug_in_slot          # and its get_debug() is EventLoop's: the flag is read from its slot
    cdef bint c_call_soon            # and its call_soon() the C one: called without a lookup
    cdef PyObject *call_soon_own     # what its __dict__ had for "call_soon" then (compared only), or NULL
    # The Server last found to count with the stdlib's methods, and the size of its __dict__ then.
    cdef object counting_server
    cdef Py_ssize_t counting_server_size
    cdef object counting_clients  # (its _clients WeakSet, checked likewise)
    cdef Py_ssize_t counting_clients_size
    # The listening socket the loop's C accept path last read (_aio_accept_c).
    cdef object accept_listener

    cdef bint native_io(self, object loop) except -1
    cdef bint memo_holds(self, object loop) noexcept

    cdef int enter(self, int fd, TransportCore core) except -1
    cdef void forget(self, int fd, PyObject *core) noexcept
    cdef object lookup(self, object fd)


cdef class IOHandle:
    """What the selector's key data holds for a transport: the stdlib's
    (reader, writer) Handle pair, with the callback a C call."""
    cdef TransportCore transport
    cdef readonly object _context
    cdef public object _loop
    cdef public bint _cancelled
    cdef public object _source_traceback  # where it was made, in debug mode, as events.Handle
    cdef public object _repr              # kept at cancel() in debug mode, as events.Handle
    cdef bint writing

    cdef int _bind(self, TransportCore transport, bint writing, object context) except -1
    cdef int c_cancel(self) except -1
    cdef int run(self) except -1
    cdef int report(self, object exc) except -1
    cdef object _bound_callback(self)


# The C core of a SocketTransport whose write() and is_closing() are its
# class's own C methods (none patched on the class or set on the instance),
# else None: a caller may then call c_write() and read _closing itself.
cdef TransportCore direct_core(object transport)

# An IOHandle for the transport's reads or writes, run in ``context`` (None:
# the transport's, else a copy of the current one).
cdef IOHandle new_io_handle(TransportCore transport, bint writing, object context)

# The TransportCore class of a new plain stream transport of ``loop`` for ``protocol``.
cpdef type stream_core_type(object loop, object protocol)

# A SocketTransport for a descriptor that accept() just gave (non-blocking,
# close-on-exec) of the given family, type and protocol: made in C, the
# socket object made only when asked for; reading starts at once, in
# ``context`` (None: a copy of the current one).  ``sockname`` None: asked of
# the kernel.  An IPv4 peer may be given raw (``peer_port`` not 0, ``peername``
# None): its address tuple is made when asked for.
cdef object new_accepted_transport(object loop, int fd, int family,
                                   int kind, int proto, object peername, object sockname,
                                   object protocol, object server, object context,
                                   bint context_is_the_transports,
                                   unsigned int peer_ipv4=*, unsigned short peer_port=*)


# What the loop's C methods (zerosock._aio_loop_methods_c, which this module
# cannot import) lend the transports: whether a loop's call_soon() is the C
# method, and a call of it without the method lookup and argument packing.
ctypedef bint (*keeps_call_soon_fn)(object loop) except -1
ctypedef object (*call_soon_fn)(object loop, object callback, tuple args, object context)
cdef int lend_loop_methods(keeps_call_soon_fn keeps_call_soon, call_soon_fn call_soon) except -1


# The core a facade class (``facade``: SocketTransport, DatagramSocketTransport)
# keeps in its ``_core`` slot at ``offset``, read without the attribute lookup:
# a TypeError for another object or for anything but a ``core_type`` there.
cdef object facade_core(object transport, type facade, Py_ssize_t offset, type core_type)
