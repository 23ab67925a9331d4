"""The public contract: names every backend must export, checked by the tests."""

# Module-level names of ``zerosock`` that come from the chosen backend.
BACKEND_NAMES: "tuple[str, ...]" = (
    "Socket",
    "socketpair",
    "create_connection",
    "create_server",
    "fromfd",
)

# Receive buffers (issue 3): the classes and the exceptions their calls raise.
RECVBUFFER_NAMES = (
    "RecvBuffer", "BufferPool",
    "IncompleteReadError", "LimitOverrunError", "BufferFullError", "PoolExhaustedError",
)
BACKEND_NAMES += RECVBUFFER_NAMES

RECVBUFFER_MEMBERS = (
    "capacity", "max_size", "eof", "at_eof", "__len__", "__enter__", "__exit__",
    "fill", "feed", "feed_eof", "get_buffer", "buffer_updated",
    "readexactly", "readexactly_view", "readuntil", "readuntil_view", "readline", "readline_view",
    "readprefixed", "readprefixed_view",
    "peek", "view", "consume", "find", "clear", "release",
)
BUFFERPOOL_MEMBERS = (
    "size", "count", "max_size", "overflow", "in_use", "available", "acquire", "release",
)

# Methods and properties of ``zerosock.Socket`` on every backend.
SOCKET_MEMBERS = (
    # lifecycle and identity
    "from_socket", "close", "detach", "fileno", "family", "type", "proto",
    "__enter__", "__exit__",
    # connection set-up
    "bind", "listen", "accept", "connect", "connect_ex", "shutdown",
    "getsockname", "getpeername",
    # options and modes
    "setsockopt", "getsockopt", "setblocking", "getblocking",
    "settimeout", "gettimeout", "timeout",
    # receiving
    "recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into",
    "try_recv", "try_recv_into",
    # sending
    "send", "sendall", "sendto", "sendmsg", "sendfile", "try_send",
    # batch datagrams
    "recv_many", "send_many",
)

# Names of ``zerosock.selectors`` on every backend and platform; the classes
# ``PollSelector``, ``EpollSelector``, ``KqueueSelector`` and ``DevpollSelector``
# exist exactly where the standard library's selectors module has them.
SELECTORS_NAMES = (
    "EVENT_READ", "EVENT_WRITE", "SelectorKey", "BaseSelector",
    "SelectSelector", "DefaultSelector",
)

# Names of ``zerosock.aio`` on every backend.
AIO_NAMES = ("EventLoop", "EventLoopPolicy", "IO_BACKEND", "IO_BACKEND_REASON", "TLS_ENGINE",
             "install", "new_event_loop", "run")
